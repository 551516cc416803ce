/* cmd_compose.c - `kanoa-mlops up|down|logs [PROFILE]`: thin wrappers over
 * `docker compose` with deploy/compose/compose.yaml and the .env written by
 * `kanoa-mlops init`. */
#include "cli/cli.h"
#include "ops/ops.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_FILE "deploy/compose/compose.yaml"

static const char *const profiles[] = {
    "vllm-molmo", "vllm-gemma3", "vllm-llama3", "embeddings", "gateway",
    "pgvector", "monitoring", NULL,
};

static const char usage_fmt[] =
    "usage: kanoa-mlops %s [options] [PROFILE]\n"
    "\n"
    "%s\n"
    "PROFILE is one of vllm-molmo, vllm-gemma3, vllm-llama3, embeddings,\n"
    "gateway, pgvector, monitoring; without it, COMPOSE_PROFILES from the\n"
    ".env written by 'kanoa-mlops init' applies.\n"
    "\n"
    "options:\n"
    "  -d, --dir DIR     directory holding .env (default .)\n"
    "  -f, --file FILE   compose file (default $KANOA_COMPOSE_FILE or\n"
    "                    " DEFAULT_FILE ")\n"
    "%s"
    "  -h, --help        show this help\n"
    "\n"
    "environment: KANOA_DOCKER (docker program, default docker).\n";

struct compose_cmd {
    const char *name;
    const char *summary;
    const char *extra_opts;
};

static const struct compose_cmd cmds[] = {
    {"up", "Start the services (docker compose up -d). Checks that Docker,\n"
           "Compose and, for GPU plans, the NVIDIA runtime are present.",
     "      --no-gpu-check  skip the NVIDIA runtime check\n"},
    {"down", "Stop and remove the services (docker compose down).", ""},
    {"logs", "Show the services' logs (docker compose logs).",
     "  -F, --follow      keep following the logs\n"
     "  -t, --tail N      only the last N lines per service\n"},
};

struct opts {
    const char *dir, *file, *profile, *tail;
    int follow, no_gpu_check;
};

static void print_usage(FILE *out, const struct compose_cmd *c)
{
    fprintf(out, usage_fmt, c->name, c->summary, c->extra_opts);
}

static int known_profile(const char *p)
{
    for (size_t i = 0; profiles[i]; i++)
        if (strcmp(profiles[i], p) == 0)
            return 1;
    return 0;
}

static int parse(int argc, char **argv, const struct compose_cmd *c,
                 struct opts *o)
{
    static const struct option longs[] = {
        {"dir", required_argument, NULL, 'd'},
        {"file", required_argument, NULL, 'f'},
        {"follow", no_argument, NULL, 'F'},
        {"tail", required_argument, NULL, 't'},
        {"no-gpu-check", no_argument, NULL, 'G'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long n;
    int is_logs = strcmp(c->name, "logs") == 0;
    for (;;) {
        int ch = getopt_long(argc, argv, "d:f:Ft:h", longs, NULL);
        if (ch == -1)
            break;
        if (ch == 'd')
            o->dir = optarg;
        else if (ch == 'f')
            o->file = optarg;
        else if (ch == 'F' && is_logs)
            o->follow = 1;
        else if (ch == 't' && is_logs &&
                 cli_parse_long(optarg, 0, 1000000, &n) == 0)
            o->tail = optarg;
        else if (ch == 'G' && strcmp(c->name, "up") == 0)
            o->no_gpu_check = 1;
        else if (ch == 'h') {
            print_usage(stdout, c);
            return 1;
        } else {
            if (ch == 't' && is_logs)
                fprintf(stderr, "kanoa-mlops logs: --tail '%s' is not a "
                        "number\n", optarg);
            else if (ch == 't' || ch == 'F' || ch == 'G')
                fprintf(stderr, "kanoa-mlops %s: option not valid here\n",
                        c->name);
            print_usage(stderr, c);
            return -CLI_EXIT_USAGE;
        }
    }
    if (optind < argc)
        o->profile = argv[optind++];
    if (optind < argc || (o->profile && !known_profile(o->profile))) {
        fprintf(stderr, "kanoa-mlops %s: unknown profile or extra argument "
                "'%s'\n", c->name, optind < argc ? argv[optind] : o->profile);
        print_usage(stderr, c);
        return -CLI_EXIT_USAGE;
    }
    return 0;
}

struct gpu_ud {
    int gpu_plan;
};

static void env_cb(void *ud, const char *key, const char *value)
{
    struct gpu_ud *g = ud;
    if (strcmp(key, "KANOA_PLAN") == 0)
        g->gpu_plan = strcmp(value, "gpu") == 0;
}

/* Does this `up` need the NVIDIA runtime? */
static int needs_gpu(const struct opts *o, const char *env_file)
{
    struct gpu_ud g = {0};
    struct km_err e;
    if (o->profile)
        return strncmp(o->profile, "vllm-", 5) == 0 ||
               strcmp(o->profile, "embeddings") == 0;
    ops_env_read(env_file, env_cb, &g, &e);
    return g.gpu_plan;
}

static int run(const struct compose_cmd *c, const struct opts *o)
{
    struct ops_compose oc;
    struct km_err err;
    char env_file[4096];
    int status = 0;
    const char *file = o->file ? o->file : getenv("KANOA_COMPOSE_FILE");
    if (!file || !*file)
        file = DEFAULT_FILE;
    km_err_clear(&err);
    snprintf(env_file, sizeof env_file, "%s/.env", o->dir);
    if (ops_compose_find(&oc, file, env_file, &err) != KM_OK)
        return cli_fail(c->name, &err);
    const char *args[8];
    int n = 0;
    args[n++] = c->name;
    if (strcmp(c->name, "up") == 0) {
        args[n++] = "-d";
        if (!o->no_gpu_check && needs_gpu(o, env_file) &&
            ops_compose_check_nvidia(&oc, &err) != KM_OK)
            return cli_fail(c->name, &err);
    } else if (strcmp(c->name, "logs") == 0) {
        if (o->follow)
            args[n++] = "--follow";
        if (o->tail) {
            args[n++] = "--tail";
            args[n++] = o->tail;
        }
    }
    args[n] = NULL;
    if (ops_compose_run(&oc, o->profile, args, &status, &err) != KM_OK)
        return cli_fail(c->name, &err);
    if (status != 0) {
        km_fail(&err, KM_EIO, "%s compose %s exited with status %d",
                oc.docker, c->name, status);
        return cli_fail(c->name, &err);
    }
    return CLI_EXIT_OK;
}

static int compose_main(const struct compose_cmd *c, int argc, char **argv)
{
    struct opts o = {.dir = "."};
    int p = parse(argc, argv, c, &o);
    if (p != 0)
        return p > 0 ? CLI_EXIT_OK : -p;
    return run(c, &o);
}

int cmd_up(int argc, char **argv)
{
    return compose_main(&cmds[0], argc, argv);
}

int cmd_down(int argc, char **argv)
{
    return compose_main(&cmds[1], argc, argv);
}

int cmd_logs(int argc, char **argv)
{
    return compose_main(&cmds[2], argc, argv);
}
