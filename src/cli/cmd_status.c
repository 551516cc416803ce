/* cmd_status.c - `kanoa-mlops status`: check the gateway, upstreams, the
 * database, Prometheus and Grafana; print a table; exit 1 if any is down. */
#include "cli/cli.h"
#include "base/buf.h"
#include "base/mem.h"
#include "ops/ops.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHECKS 24

static const char usage[] =
    "usage: kanoa-mlops status [options]\n"
    "\n"
    "Check each configured service and print a table (SERVICE, STATE, TIME,\n"
    "TARGET, DETAIL). Exit status 1 if any service is down.\n"
    "Services come from DIR/.env (written by 'kanoa-mlops init': the gateway\n"
    "on BIND_ADDRESS:GATEWAY_PORT, Grafana when the monitoring profile is\n"
    "on, PROMETHEUS_URL, KANOA_DATABASE_URL) and from these options:\n"
    "\n"
    "options:\n"
    "  -d, --dir DIR          directory holding .env (default .)\n"
    "  -g, --gateway URL      gateway base URL (checks URL/health)\n"
    "  -u, --upstream N=URL   an upstream (checks URL/health); repeatable\n"
    "  -D, --database-url URL PostgreSQL URL or conninfo (PQping)\n"
    "  -p, --prometheus URL   Prometheus base URL (checks URL/-/ready)\n"
    "  -G, --grafana URL      Grafana base URL (checks URL/api/health)\n"
    "  -t, --timeout MS       per-check timeout (default 3000)\n"
    "      --no-env           ignore DIR/.env\n"
    "  -h, --help             show this help\n";

struct status_ctx {
    struct ops_check c[MAX_CHECKS];
    size_t n;
    int overflow;
    /* from .env */
    char bind[128], gw_port[16], graf_port[16], profiles[256];
    char prom[512], db[512];
};

static void add(struct status_ctx *s, const char *name,
                enum ops_check_kind kind, const char *base, const char *path)
{
    if (s->n >= MAX_CHECKS) {
        s->overflow = 1;
        return;
    }
    struct ops_check *c = &s->c[s->n++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->kind = kind;
    size_t len = strlen(base);
    while (len > 0 && base[len - 1] == '/')
        len--;
    snprintf(c->target, sizeof c->target, "%.*s%s", (int)len, base, path);
}

static void env_cb(void *ud, const char *key, const char *value)
{
    struct status_ctx *s = ud;
    struct { const char *k; char *dst; size_t cap; } map[] = {
        {"BIND_ADDRESS", s->bind, sizeof s->bind},
        {"GATEWAY_PORT", s->gw_port, sizeof s->gw_port},
        {"GRAFANA_PORT", s->graf_port, sizeof s->graf_port},
        {"COMPOSE_PROFILES", s->profiles, sizeof s->profiles},
        {"PROMETHEUS_URL", s->prom, sizeof s->prom},
        {"KANOA_DATABASE_URL", s->db, sizeof s->db},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(key, map[i].k) == 0)
            snprintf(map[i].dst, map[i].cap, "%s", value);
}

/* Add the checks that DIR/.env describes (flags given win: `have`). */
static int add_from_env(struct status_ctx *s, const char *dir,
                        const int have[3], struct km_err *err)
{
    char path[4096], url[700];
    snprintf(path, sizeof path, "%s/.env", dir);
    int rc = ops_env_read(path, env_cb, s, err);
    if (rc == KM_ENOTFOUND)
        return KM_OK;
    if (rc != KM_OK)
        return rc;
    const char *bind = s->bind[0] ? s->bind : "127.0.0.1";
    if (strcmp(bind, "0.0.0.0") == 0)
        bind = "127.0.0.1";
    if (!have[0] && s->gw_port[0]) {
        snprintf(url, sizeof url, "http://%s:%s", bind, s->gw_port);
        add(s, "gateway", OPS_CHECK_HTTP, url, "/health");
    }
    if (!have[1] && s->prom[0])
        add(s, "prometheus", OPS_CHECK_HTTP, s->prom, "/-/ready");
    if (!have[2] && s->graf_port[0] && strstr(s->profiles, "monitoring")) {
        snprintf(url, sizeof url, "http://%s:%s", bind, s->graf_port);
        add(s, "grafana", OPS_CHECK_HTTP, url, "/api/health");
    }
    if (s->db[0])
        add(s, "database", OPS_CHECK_PG, s->db, "");
    return KM_OK;
}

static int add_upstream(struct status_ctx *s, const char *spec)
{
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1] || eq - spec > 40) {
        fprintf(stderr, "kanoa-mlops status: --upstream '%s' is not "
                "NAME=URL\n", spec);
        return -1;
    }
    char name[64];
    snprintf(name, sizeof name, "upstream %.*s", (int)(eq - spec), spec);
    add(s, name, OPS_CHECK_HTTP, eq + 1, "/health");
    return 0;
}

struct status_opts {
    const char *dir;
    long timeout;
    int no_env;
    int have[3]; /* gateway, prometheus, grafana given as flags */
};

static int parse(int argc, char **argv, struct status_ctx *s,
                 struct status_opts *o)
{
    static const struct option longs[] = {
        {"dir", required_argument, NULL, 'd'},
        {"gateway", required_argument, NULL, 'g'},
        {"upstream", required_argument, NULL, 'u'},
        {"database-url", required_argument, NULL, 'D'},
        {"prometheus", required_argument, NULL, 'p'},
        {"grafana", required_argument, NULL, 'G'},
        {"timeout", required_argument, NULL, 't'},
        {"no-env", no_argument, NULL, 'E'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    for (;;) {
        int ch = getopt_long(argc, argv, "d:g:u:D:p:G:t:h", longs, NULL);
        if (ch == -1)
            break;
        int bad = 0;
        switch (ch) {
        case 'd': o->dir = optarg; break;
        case 'g': add(s, "gateway", OPS_CHECK_HTTP, optarg, "/health");
                  o->have[0] = 1; break;
        case 'u': bad = add_upstream(s, optarg); break;
        case 'D': add(s, "database", OPS_CHECK_PG, optarg, ""); break;
        case 'p': add(s, "prometheus", OPS_CHECK_HTTP, optarg, "/-/ready");
                  o->have[1] = 1; break;
        case 'G': add(s, "grafana", OPS_CHECK_HTTP, optarg, "/api/health");
                  o->have[2] = 1; break;
        case 't':
            bad = cli_parse_long(optarg, 100, 600000, &o->timeout);
            if (bad)
                fprintf(stderr, "kanoa-mlops status: --timeout '%s' is not "
                        "in 100..600000 ms\n", optarg);
            break;
        case 'E': o->no_env = 1; break;
        case 'h': fputs(usage, stdout); return 1;
        default: bad = 1; break;
        }
        if (bad)
            return -cli_usage_error(usage);
    }
    if (cli_no_operands("status", argc, argv))
        return -cli_usage_error(usage);
    return 0;
}

static int report(struct status_ctx *s)
{
    struct km_buf out;
    size_t down = 0;
    km_buf_init(&out, 1 << 20);
    ops_status_table(s->c, s->n, &out);
    fputs(km_buf_str(&out), stdout);
    km_buf_free(&out);
    for (size_t i = 0; i < s->n; i++)
        down += !s->c[i].up;
    if (!down)
        return CLI_EXIT_OK;
    fprintf(stderr, "kanoa-mlops status: %zu of %zu services down:", down,
            s->n);
    for (size_t i = 0; i < s->n; i++)
        if (!s->c[i].up)
            fprintf(stderr, " %s", s->c[i].name);
    fputc('\n', stderr);
    return CLI_EXIT_FAIL;
}

int cmd_status(int argc, char **argv)
{
    struct status_opts o = {.dir = ".", .timeout = 3000};
    struct km_err err;
    km_err_clear(&err);
    struct status_ctx *s = km_calloc(1, sizeof *s);
    if (!s) {
        km_fail(&err, KM_ENOMEM, "out of memory");
        return cli_fail("status", &err);
    }
    int ret = parse(argc, argv, s, &o);
    if (ret != 0) {
        ret = ret > 0 ? CLI_EXIT_OK : -ret;
        goto out;
    }
    if (!o.no_env && add_from_env(s, o.dir, o.have, &err) != KM_OK) {
        ret = cli_fail("status", &err);
        goto out;
    }
    if (s->overflow || s->n == 0) {
        km_fail(&err, KM_EINVAL, s->n ? "more than %d services to check" :
                "nothing to check: run 'kanoa-mlops init' in --dir or pass "
                "--gateway/--upstream/--database-url/--prometheus (max %d)",
                MAX_CHECKS);
        ret = cli_fail("status", &err);
        goto out;
    }
    for (size_t i = 0; i < s->n; i++)
        ops_status_check(&s->c[i], o.timeout);
    ret = report(s);
out:
    km_free(s);
    return ret;
}
