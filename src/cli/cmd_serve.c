/* cmd_serve.c - `kanoa-mlops serve`: the OpenAI-compatible HTTP server.
 *
 * Settings come from flags, KANOA_* environment variables and a YAML file
 * (--config or KANOA_CONFIG), with precedence flag > env > file > default;
 * --print-config prints the effective settings and exits. HTTP answers from
 * the first millisecond; backends (models) are attached by attach_backends()
 * below, which is the hook the engine, gateway and rag code extend. SIGTERM or
 * SIGINT stops accepting, drains in-flight requests up to --drain-timeout,
 * and exits 0. */
#include "base/log.h"
#include "base/mem.h"
#include "cli/cli.h"
#include "hub/hub.h"
#include "server/backend_local.h"
#include "server/retrieve.h"
#include "server/server.h"
#include "server/upstream.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: kanoa-mlops serve [options]\n"
    "\n"
    "Serve models behind an OpenAI-compatible HTTP API (/v1/chat/completions,\n"
    "/v1/completions, /v1/embeddings, /v1/models, /tokenize, /detokenize,\n"
    "/health, /version, /metrics).\n"
    "\n"
    "Precedence: flag > KANOA_<NAME> environment variable > --config file >\n"
    "default. Every option below is also a YAML key and an environment\n"
    "variable (e.g. --max-body -> max-body: / KANOA_MAX_BODY; list variables\n"
    "are separated by spaces).\n"
    "\n"
    "options:\n"
    "  --config FILE            YAML settings file (also KANOA_CONFIG)\n"
    "  --print-config           print the effective settings and exit\n"
    "  --host ADDR              listen address (127.0.0.1)\n"
    "  --port N                 listen port (8000; 0 = any free port)\n"
    "  --http-threads N         HTTP thread pool size (0 = cores)\n"
    "  --max-connections N      open connections at most (4096)\n"
    "  --conn-timeout SEC       idle connection timeout (60)\n"
    "  --max-body SIZE          largest request body (32M); larger -> 413\n"
    "  --max-concurrent N       requests running in backends (64)\n"
    "  --max-queue N            requests waiting for a slot (256); beyond -> 429\n"
    "  --request-timeout SEC    give up on a request after SEC (600; 0 = never)\n"
    "  --drain-timeout SEC      on SIGTERM wait this long for requests (30)\n"
    "  --keepalive SEC          SSE keep-alive comment period (10)\n"
    "  --api-key KEY            require 'Authorization: Bearer KEY' (repeatable;\n"
    "                           also KANOA_API_KEY)\n"
    "  --api-key-file FILE      more keys, one per line\n"
    "  --protect-metrics        require the API key for /health and /metrics too\n"
    "  --cors-origin ORIGIN     allow browser requests from ORIGIN (repeatable;\n"
    "                           '*' = any)\n"
    "  --log-format text|json   request log format (text)\n"
    "  --log-level LEVEL        debug, info, warn or error (info)\n"
    "  --model SPEC             a model to serve: GGUF path or HF repo\n"
    "                           (repeatable)\n"
    "  --served-model-name NAME the id of the --model at the same position\n"
    "  --upstream NAME=URL[,models=a|b][,api-key-env=VAR]\n"
    "                           an OpenAI-compatible upstream (repeatable)\n"
    "  --database-url URL       PostgreSQL for /v1/retrieve\n"
    "  --threads N              engine threads (0 = auto)\n"
    "  --ctx N                  context length (0 = the model's)\n"
    "  --chat-template FILE     override the model's chat template\n"
    "  -h, --help               show this help\n"
    "\n"
    "gateway tuning (milliseconds; also upstream-*: / KANOA_UPSTREAM_*):\n"
    "  --upstream-connect-timeout-ms N     TCP/TLS connect (2000)\n"
    "  --upstream-first-byte-timeout-ms N  request sent -> first byte (120000)\n"
    "  --upstream-idle-timeout-ms N        longest gap between bytes (60000)\n"
    "  --upstream-probe-interval-ms N      health probe period (2000)\n"
    "  --upstream-probe-timeout-ms N       one probe (1000)\n"
    "  --upstream-models-refresh-ms N      /v1/models and /metrics refresh (10000)\n"
    "  --upstream-fall N          consecutive failures that eject (2)\n"
    "  --upstream-rise N          consecutive passed probes that recover (2)\n"
    "  --upstream-max-attempts N  replicas tried per request (3)\n"
    "  KANOA_UPSTREAM_CLIENT=curl  send http:// upstream requests through\n"
    "                           libcurl too (default: the own HTTP/1.1 client;\n"
    "                           https:// and proxies always use libcurl)\n";

enum { OPT_CONFIG = 1000, OPT_PRINT };

static const struct option long_opts[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"print-config", no_argument, NULL, OPT_PRINT},
    {"help", no_argument, NULL, 'h'},
    {"host", required_argument, NULL, 's'},
    {"port", required_argument, NULL, 's'},
    {"http-threads", required_argument, NULL, 's'},
    {"max-connections", required_argument, NULL, 's'},
    {"conn-timeout", required_argument, NULL, 's'},
    {"max-body", required_argument, NULL, 's'},
    {"max-concurrent", required_argument, NULL, 's'},
    {"max-queue", required_argument, NULL, 's'},
    {"request-timeout", required_argument, NULL, 's'},
    {"drain-timeout", required_argument, NULL, 's'},
    {"keepalive", required_argument, NULL, 's'},
    {"api-key", required_argument, NULL, 's'},
    {"api-key-file", required_argument, NULL, 's'},
    {"protect-metrics", no_argument, NULL, 'b'},
    {"cors-origin", required_argument, NULL, 's'},
    {"log-format", required_argument, NULL, 's'},
    {"log-level", required_argument, NULL, 's'},
    {"model", required_argument, NULL, 's'},
    {"served-model-name", required_argument, NULL, 's'},
    {"upstream", required_argument, NULL, 's'},
    {"database-url", required_argument, NULL, 's'},
    {"threads", required_argument, NULL, 's'},
    {"ctx", required_argument, NULL, 's'},
    {"chat-template", required_argument, NULL, 's'},
    {"upstream-connect-timeout-ms", required_argument, NULL, 's'},
    {"upstream-first-byte-timeout-ms", required_argument, NULL, 's'},
    {"upstream-idle-timeout-ms", required_argument, NULL, 's'},
    {"upstream-probe-interval-ms", required_argument, NULL, 's'},
    {"upstream-probe-timeout-ms", required_argument, NULL, 's'},
    {"upstream-models-refresh-ms", required_argument, NULL, 's'},
    {"upstream-fall", required_argument, NULL, 's'},
    {"upstream-rise", required_argument, NULL, 's'},
    {"upstream-max-attempts", required_argument, NULL, 's'},
    {NULL, 0, NULL, 0},
};

struct serve_opts {
    const char *config;
    bool print;
    bool help;
};

/* Pass 1: only --config, --print-config, --help; reject bad flags. */
static int scan_flags(int argc, char **argv, struct serve_opts *o)
{
    int ch, idx = 0;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "h", long_opts, &idx)) != -1) {
        if (ch == '?' || ch == ':')
            return -1;
        if (ch == OPT_CONFIG)
            o->config = optarg;
        else if (ch == OPT_PRINT)
            o->print = true;
        else if (ch == 'h')
            o->help = true;
    }
    if (cli_no_operands("serve", argc, argv))
        return -1;
    return 0;
}

/* Pass 2: every setting flag, at the flag layer. */
static int apply_flags(int argc, char **argv, struct srv_config *cfg,
                       struct km_err *err)
{
    int ch, idx = 0;
    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", long_opts, &idx)) != -1) {
        const char *name = long_opts[idx].name;
        int rc = KM_OK;
        if (ch == 's')
            rc = srv_config_set(cfg, SRV_LAYER_FLAG, name, optarg, err);
        else if (ch == 'b')
            rc = srv_config_set(cfg, SRV_LAYER_FLAG, name, "true", err);
        if (rc)
            return rc;
        idx = 0;
    }
    return KM_OK;
}

static int load_config(int argc, char **argv, const struct serve_opts *o,
                       struct srv_config *cfg, struct km_err *err)
{
    const char *file = o->config ? o->config : getenv("KANOA_CONFIG");
    int rc = KM_OK;
    if (file)
        rc = srv_config_load_yaml(cfg, file, err);
    if (!rc)
        rc = srv_config_load_env(cfg, err);
    if (!rc)
        rc = apply_flags(argc, argv, cfg, err);
    return rc;
}

/* Things the attach hooks create that must outlive the server (a route's
 * context, a model pool...): released by run_server() in reverse order after
 * srv_server_free(). */
#define SERVE_MAX_CLEANUPS 16

struct serve_ctx {
    struct {
        void (*fn)(void *);
        void *p;
    } cleanup[SERVE_MAX_CLEANUPS];
    int n;
};

/* Register `fn(p)` to run after the server is freed; returns KM_OK. */
static int serve_defer(struct serve_ctx *ctx, void (*fn)(void *), void *p,
                       struct km_err *err)
{
    if (ctx->n >= SERVE_MAX_CLEANUPS)
        return km_fail(err, KM_ERANGE, "serve: too many cleanups");
    ctx->cleanup[ctx->n].fn = fn;
    ctx->cleanup[ctx->n].p = p;
    ctx->n++;
    return KM_OK;
}

static void serve_cleanup(struct serve_ctx *ctx)
{
    while (ctx->n > 0) {
        ctx->n--;
        ctx->cleanup[ctx->n].fn(ctx->cleanup[ctx->n].p);
    }
}

static void retrieve_cleanup(void *p)
{
    srv_retrieve_free(p);
}

/* Hook: routes, before srv_server_start(). rag: /v1/retrieve when a
 * database URL is set (its context is freed after the server). */
static int attach_routes(struct srv_server *srv, const struct srv_config *cfg,
                         struct serve_ctx *ctx, struct km_err *err)
{
    if (!cfg->database_url || !cfg->database_url[0])
        return KM_OK;
    struct srv_retrieve *r = NULL;
    int rc = srv_retrieve_new(srv, cfg->database_url, &r, err);
    if (!rc)
        rc = serve_defer(ctx, retrieve_cleanup, r, err);
    return rc;
}

static int add_or_destroy(struct srv_server *srv, struct srv_backend b,
                          struct km_err *err)
{
    int rc = srv_server_add_backend(srv, b, err);
    if (rc && b.ops->destroy)
        b.ops->destroy(b.impl);
    return rc;
}

static void models_changed(void *ud)
{
    srv_server_models_changed(ud);
}

/* gateway: one pool over every --upstream spec, behind one backend. */
static int attach_upstreams(struct srv_server *srv, const struct srv_config *cfg,
                            struct km_err *err)
{
    struct ups_spec *specs = km_calloc(cfg->upstreams.n, sizeof *specs);
    struct ups_pool *pool = NULL;
    struct srv_backend b;
    struct ups_options opts;
    int rc = specs ? KM_OK : km_fail(err, KM_ENOMEM, "serve: out of memory");
    for (size_t i = 0; !rc && i < cfg->upstreams.n; i++)
        rc = ups_spec_parse(cfg->upstreams.v[i], &specs[i], err);
    ups_options_from_config(&opts, cfg);
    if (!rc)
        rc = ups_pool_new(specs, cfg->upstreams.n, &opts, &pool, err);
    km_free(specs);
    if (rc)
        return rc;
    ups_pool_set_notify(pool, models_changed, srv);
    rc = srv_backend_upstream_new(pool, &b, err);
    if (rc) {
        ups_pool_free(pool);
        return rc;
    }
    rc = add_or_destroy(srv, b, err);
    srv_server_models_changed(srv);
    return rc;
}

/* Nothing to serve: say how to get a model (the server still runs, with an
 * empty /v1/models, so the API can be explored). */
static void no_model_hint(void)
{
    km_log(KM_LOG_WARN,
           "serve: no model given. Download one into the Hugging Face cache "
           "with 'kanoa-mlops pull bartowski/Llama-3.2-1B-Instruct-GGUF "
           "--include \"*Q4_K_M.gguf\"' and serve it with '--model "
           "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M'; offline, try a "
           "model with random weights: 'kanoa-mlops models synth --shape "
           "tiny -o tiny.gguf' then '--model tiny.gguf'; or front a vLLM "
           "server with '--upstream NAME=URL'");
}

/* Hook: backends, right after HTTP is up. engine: the local backend loads
 * cfg->models in the background (/health says loading meanwhile); gateway:
 * the upstream pool. The server owns and destroys both. */
static int attach_backends(struct srv_server *srv, const struct srv_config *cfg,
                           struct serve_ctx *ctx, struct km_err *err)
{
    (void)ctx;
    int rc = KM_OK;
    if (cfg->models.n) {
        struct srv_backend b;
        rc = srv_backend_local_new(cfg, &b, err);
        if (!rc)
            rc = add_or_destroy(srv, b, err);
    }
    if (!rc && cfg->upstreams.n)
        rc = attach_upstreams(srv, cfg, err);
    if (!rc && !cfg->models.n && !cfg->upstreams.n)
        no_model_hint();
    return rc;
}

static void setup_logging(const struct srv_config *cfg)
{
    enum km_log_level lvl = KM_LOG_INFO;
    km_log_parse_level(cfg->log_level, &lvl);
    km_log_set_level(lvl);
    km_log_set_format(strcmp(cfg->log_format, "json") == 0 ? KM_LOG_JSON
                                                           : KM_LOG_TEXT);
}

static int run_server(struct srv_config *cfg, struct km_err *err)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread inherits this */
    signal(SIGPIPE, SIG_IGN);
    struct srv_server *srv = NULL;
    struct serve_ctx ctx = {.n = 0};
    int rc = srv_server_new(cfg, &srv, err);
    if (!rc)
        rc = attach_routes(srv, cfg, &ctx, err);
    if (!rc)
        rc = srv_server_start(srv, err);
    if (!rc) {
        km_log(KM_LOG_INFO, "serve: listening on http://%s:%d", cfg->host,
               srv_server_port(srv));
        rc = attach_backends(srv, cfg, &ctx, err);
    }
    if (!rc) {
        int sig = 0;
        sigwait(&set, &sig);
        km_log(KM_LOG_INFO, "serve: %s received; draining (up to %g s)",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg->drain_timeout);
        srv_server_drain(srv, cfg->drain_timeout);
        km_log(KM_LOG_INFO, "serve: stopped");
    }
    srv_server_free(srv);
    serve_cleanup(&ctx);
    return rc;
}

/* hub: --model org/repo[:FILE|QUANT][@REV] -> the file in the Hugging Face
 * cache (hub_resolve_model); plain paths pass through unchanged. */
static int resolve_models(struct srv_config *cfg, struct km_err *err)
{
    for (size_t i = 0; i < cfg->models.n; i++) {
        char *path = NULL;
        if (hub_resolve_model(cfg->models.v[i], &path, err) != KM_OK)
            return km_err_prefix(err, "--model %s", cfg->models.v[i]);
        km_free(cfg->models.v[i]);
        cfg->models.v[i] = path;
    }
    return KM_OK;
}

int cmd_serve(int argc, char **argv)
{
    struct serve_opts o = {0};
    if (scan_flags(argc, argv, &o))
        return cli_usage_error(usage_text);
    if (o.help) {
        fputs(usage_text, stdout);
        return CLI_EXIT_OK;
    }
    struct srv_config cfg;
    struct km_err err;
    km_err_clear(&err);
    srv_config_init(&cfg);
    int rc = load_config(argc, argv, &o, &cfg, &err);
    if (!rc)
        rc = srv_config_load_key_file(&cfg, &err);
    if (!rc && o.print) {
        srv_config_print(&cfg, stdout);
        srv_config_free(&cfg);
        return CLI_EXIT_OK;
    }
    if (!rc)
        rc = resolve_models(&cfg, &err);
    if (!rc) {
        setup_logging(&cfg);
        rc = run_server(&cfg, &err);
    }
    srv_config_free(&cfg);
    return rc ? cli_fail("serve", &err) : CLI_EXIT_OK;
}
