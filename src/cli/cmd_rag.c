/* cmd_rag.c - `kanoa-mlops rag init|ingest|query|list`: the knowledge base
 * (rag/ does the work; this file parses flags and prints). */
#include "cli/cli.h"
#include "base/log.h"
#include "base/mem.h"
#include "hub/hub.h"
#include "rag/rag.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_EMBED_URL "http://127.0.0.1:8000/v1"
#define MAX_META 64

static const char usage[] =
    "usage: kanoa-mlops rag <init|ingest|query|list> [options]\n"
    "\n"
    "  rag init   [--database-url URL]\n"
    "      create or upgrade the schema (versioned migrations; idempotent)\n"
    "  rag ingest PATH... --collection C [--embed-url URL] [--embed-model M]\n"
    "             [--chunk-tokens 512] [--overlap 64] [--batch 32] [--prune]\n"
    "             [--meta key=value]... [--threads N] [--embed-name NAME]\n"
    "             [--jobs N] [--embed-hash DIM]\n"
    "      add files and folders (.txt .md .rst .csv .json .pdf, source code);\n"
    "      unchanged files are skipped, changed ones replaced atomically (each\n"
    "      document in its own transaction); --prune deletes documents under\n"
    "      PATH whose files are gone; --jobs N documents at once, each on its\n"
    "      own database connection (default: the online CPUs)\n"
    "  rag query \"TEXT\" --collection C [-k 5] [--mode vector|text|hybrid]\n"
    "             [--filter key=value]... [--json] [--ef-search 150] [--exact]\n"
    "      top-k chunks: text, score (0..1), source and chunk id; --json\n"
    "      prints {\"data\": [hits]} as POST /v1/retrieve does\n"
    "  rag list   collections with their model, dimension and sizes\n"
    "\n"
    "options:\n"
    "  -D, --database-url URL  PostgreSQL URL (default $KANOA_DATABASE_URL, else\n"
    "                          the cluster of 'kanoa-mlops db start')\n"
    "  -c, --collection C      collection name (any text)\n"
    "  -e, --embed-url URL     OpenAI-compatible embeddings base URL (default\n"
    "                          $KANOA_EMBED_URL, else " DEFAULT_EMBED_URL ");\n"
    "                          API key from $KANOA_EMBED_API_KEY\n"
    "  -m, --embed-model M     embedding model (default: the collection's;\n"
    "                          required to create a collection). Without\n"
    "                          --embed-url, a GGUF file or a cached org/repo[:FILE]\n"
    "                          (as serve --model) embeds in this process with the\n"
    "                          local engine; the collection records the name serve\n"
    "                          gives it (the file stem)\n"
    "      --embed-name NAME   record the local model under NAME instead (as\n"
    "                          serve --served-model-name)\n"
    "      --threads N         threads of the local engine (default: physical cores)\n"
    "      --embed-hash DIM    no model: each chunk gets a unit vector of DIM seeded\n"
    "                          by a hash of its text (meaningless similarity; to\n"
    "                          measure or test ingest alone); model 'hash-DIM'\n"
    "  -k N                    hits to return (default 5)\n"
    "  -f, --filter key=value  metadata equality filter (repeatable; AND);\n"
    "                          documents carry path, name and ext plus --meta\n"
    "  -h, --help              show this help\n"
    "Ingest computes each chunk's text-search vector (to_tsvector('english'))\n"
    "in the client when it can reproduce it exactly, else the database does;\n"
    "a database whose to_tsvector differs on a probe text (checked once per\n"
    "run: another locale or configuration) or KANOA_RAG_SERVER_TSV=1 leaves\n"
    "them all to the database.\n";

enum { O_CHUNK = 256, O_OVERLAP, O_BATCH, O_PRUNE, O_META, O_JSON, O_EF, O_EXACT, O_MODE,
       O_THREADS, O_EMBED_NAME, O_JOBS, O_EMBED_HASH };

struct rag_args {
    char *url;
    const char *collection, *embed_url, *embed_model, *embed_name;
    int chunk_tokens, overlap, batch, k, ef_search, threads, jobs, embed_hash;
    bool prune, json, exact;
    enum rag_mode mode;
    const char *meta_k[MAX_META], *meta_v[MAX_META];
    char *meta_buf[MAX_META];
    size_t n_meta;
    struct rag_filter filter;
};

static int parse_int(const char *flag, const char *s, long lo, long hi, int *out)
{
    long v;
    if (cli_parse_long(s, lo, hi, &v) != 0) {
        fprintf(stderr, "kanoa-mlops rag: %s must be a whole number in %ld..%ld (got '%s')\n",
                flag, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int add_meta(struct rag_args *a, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv || a->n_meta == MAX_META) {
        fprintf(stderr, "kanoa-mlops rag: --meta '%s': expected key=value (at most %d)\n",
                kv, MAX_META);
        return -1;
    }
    char *k = km_strndup(kv, (size_t)(eq - kv));
    if (!k)
        return -1;
    a->meta_buf[a->n_meta] = k;
    a->meta_k[a->n_meta] = k;
    a->meta_v[a->n_meta++] = eq + 1;
    return 0;
}

/* One option; returns 0, or -1 after printing why. */
static int take_opt(struct rag_args *a, int c, const char *arg)
{
    struct km_err err;
    switch (c) {
    case 'D': km_free(a->url); a->url = km_strdup(arg); return a->url ? 0 : -1;
    case 'c': a->collection = arg; return 0;
    case 'e': a->embed_url = arg; return 0;
    case 'm': a->embed_model = arg; return 0;
    case 'k': return parse_int("-k", arg, 1, 1000, &a->k);
    case O_CHUNK: return parse_int("--chunk-tokens", arg, 16, 8192, &a->chunk_tokens);
    case O_OVERLAP: return parse_int("--overlap", arg, 0, 4096, &a->overlap);
    case O_BATCH: return parse_int("--batch", arg, 1, 2048, &a->batch);
    case O_EF: return parse_int("--ef-search", arg, 1, 1000, &a->ef_search);
    case O_THREADS: return parse_int("--threads", arg, 1, 1024, &a->threads);
    case O_EMBED_NAME: a->embed_name = arg; return 0;
    case O_JOBS: return parse_int("--jobs", arg, 1, RAG_INGEST_MAX_JOBS, &a->jobs);
    case O_EMBED_HASH: return parse_int("--embed-hash", arg, 1, RAG_MAX_DIM, &a->embed_hash);
    case O_PRUNE: a->prune = true; return 0;
    case O_JSON: a->json = true; return 0;
    case O_EXACT: a->exact = true; return 0;
    case O_META: return add_meta(a, arg);
    case O_MODE:
        if (rag_parse_mode(arg, &a->mode) == KM_OK)
            return 0;
        fprintf(stderr, "kanoa-mlops rag: --mode must be vector, text or hybrid (got '%s')\n", arg);
        return -1;
    case 'f':
        if (rag_filter_add(&a->filter, arg, &err) == KM_OK)
            return 0;
        fprintf(stderr, "kanoa-mlops rag: %s\n", km_err_text(&err));
        return -1;
    default:
        return -1;
    }
}

/* Returns -1 for --help, 0 ok, >0 exit code for a usage error. */
static int parse(int argc, char **argv, struct rag_args *a)
{
    static const struct option opts[] = {
        {"database-url", required_argument, NULL, 'D'},
        {"collection", required_argument, NULL, 'c'},
        {"embed-url", required_argument, NULL, 'e'},
        {"embed-model", required_argument, NULL, 'm'},
        {"filter", required_argument, NULL, 'f'},
        {"chunk-tokens", required_argument, NULL, O_CHUNK},
        {"overlap", required_argument, NULL, O_OVERLAP},
        {"batch", required_argument, NULL, O_BATCH},
        {"ef-search", required_argument, NULL, O_EF},
        {"threads", required_argument, NULL, O_THREADS},
        {"embed-name", required_argument, NULL, O_EMBED_NAME},
        {"jobs", required_argument, NULL, O_JOBS},
        {"embed-hash", required_argument, NULL, O_EMBED_HASH},
        {"mode", required_argument, NULL, O_MODE},
        {"meta", required_argument, NULL, O_META},
        {"prune", no_argument, NULL, O_PRUNE},
        {"json", no_argument, NULL, O_JSON},
        {"exact", no_argument, NULL, O_EXACT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    for (;;) {
        int c = getopt_long(argc, argv, "D:c:e:m:f:k:h", opts, NULL);
        if (c == -1)
            break;
        if (c == 'h') {
            fputs(usage, stdout);
            return -1;
        }
        if (c == '?' || take_opt(a, c, optarg) != 0)
            return cli_usage_error(usage);
    }
    return 0;
}

static void args_free(struct rag_args *a)
{
    km_free(a->url);
    for (size_t i = 0; i < a->n_meta; i++)
        km_free(a->meta_buf[i]);
    rag_filter_free(&a->filter);
}

static int connect_db(struct rag_args *a, struct rag_db **db, struct km_err *err)
{
    char *url = NULL;
    int rc = rag_resolve_url(a->url, &url, err);
    if (rc == KM_OK)
        rc = rag_open(url, db, err);
    km_free(url);
    return rc;
}

/* ---- init, list --------------------------------------------------------- */

static int do_init(struct rag_args *a, struct rag_db *db, struct km_err *err)
{
    int v = 0;
    int rc = rag_migrate(db, &v, err);
    if (rc == KM_OK)
        printf("schema version %d\n", v);
    return rc;
}

static int do_list(struct rag_args *a, struct rag_db *db, struct km_err *err)
{
    struct rag_collection *c = NULL;
    size_t n = 0;
    int rc = rag_collection_list(db, &c, &n, err);
    if (rc == KM_OK)
        printf("%-24s %-40s %5s %9s %9s\n", "COLLECTION", "MODEL", "DIM", "DOCUMENTS", "CHUNKS");
    for (size_t i = 0; rc == KM_OK && i < n; i++)
        printf("%-24s %-40s %5d %9lld %9lld\n", c[i].name, c[i].embed_model, c[i].dim,
               c[i].n_documents, c[i].n_chunks);
    km_free(c);
    return rc;
}

/* ---- embeddings: an endpoint or the local engine ------------------------ */

static const char *env_or(const char *given, const char *env, const char *dflt)
{
    const char *e = getenv(env);
    return given ? given : (e && e[0]) ? e : dflt;
}

/* *path = the GGUF file when --embed-model means the local engine: no
 * --embed-url, and the spec is a file, mentions .gguf, or is a repo that
 * resolves in the hub cache (as serve --model). Else NULL: a model name
 * for an endpoint. *path is km_free'd by the caller. */
static int local_model_path(const struct rag_args *a, char **path, struct km_err *err)
{
    *path = NULL;
    if (a->embed_url || !a->embed_model)
        return KM_OK;
    struct km_err herr;
    struct stat st;
    int rc = hub_resolve_model(a->embed_model, path, &herr);
    bool file = rc == KM_OK && stat(*path, &st) == 0 && S_ISREG(st.st_mode);
    if (!file && !strcasestr(a->embed_model, ".gguf")) {
        km_free(*path);
        *path = NULL;
        return KM_OK;
    }
    if (rc != KM_OK) {
        *err = herr;
        return km_err_prefix(err, "--embed-model %s", a->embed_model);
    }
    return KM_OK;
}

/* The local engine when --embed-model is a GGUF, else an endpoint
 * (--embed-url, $KANOA_EMBED_URL or the default). */
static int open_embedder(const struct rag_args *a, struct rag_embedder **e,
                         struct km_err *err)
{
    char *path = NULL;
    if (a->embed_hash > 0 && (a->embed_url || a->embed_model || a->embed_name))
        return km_fail(err, KM_EINVAL, "--embed-hash replaces the embedding model: give no "
                       "--embed-url, --embed-model or --embed-name with it");
    if (a->embed_hash > 0)
        return rag_embedder_hash(a->embed_hash, e, err);
    int rc = local_model_path(a, &path, err);
    if (rc == KM_OK && path)
        rc = rag_embedder_local(path, a->embed_name, a->threads, e, err);
    else if (rc == KM_OK && a->embed_name)
        rc = km_fail(err, KM_EINVAL, "--embed-name names a local model: give "
                     "--embed-model FILE.gguf (and no --embed-url)");
    else if (rc == KM_OK)
        rc = rag_embedder_http(env_or(a->embed_url, "KANOA_EMBED_URL", DEFAULT_EMBED_URL),
                               getenv("KANOA_EMBED_API_KEY"), e, err);
    km_free(path);
    return rc;
}

static void note_truncated(const char *cmd, const struct rag_embedder *e)
{
    long n = rag_embedder_truncated(e);
    if (n > 0)
        fprintf(stderr, "kanoa-mlops %s: note: %ld %s longer than model '%s' allows "
                "and %s cut to its context (use a smaller --chunk-tokens)\n", cmd, n,
                n == 1 ? "text was" : "texts were", rag_embedder_model(e),
                n == 1 ? "was" : "were");
}

/* ---- ingest ------------------------------------------------------------- */

static void on_progress(void *ud, const struct rag_ingest_stats *s)
{
    bool tty = isatty(2);
    long done = s->files_done + s->files_skipped + s->files_failed;
    if (tty) {
        int w = 30, fill = s->files_seen ? (int)(w * done / s->files_seen) : w;
        fprintf(stderr, "\r[%.*s%*s] %ld/%ld files, %lld chunks ", fill,
                "##############################", w - fill, "", done, s->files_seen, s->chunks);
        if (!s->current)
            fputc('\n', stderr);
    } else if (s->current) {
        fprintf(stderr, "ingest: [%ld/%ld] %s\n", s->current_no, s->files_seen, s->current);
    }
}

static void on_file_error(void *ud, const char *path, const struct km_err *e)
{
    fprintf(stderr, "%skanoa-mlops rag ingest: %s\n", isatty(2) ? "\n" : "", km_err_text(e));
}

static int do_ingest(struct rag_args *a, char **paths, int n, struct rag_db *db,
                     struct km_err *err)
{
    struct rag_ingest_opts o;
    struct rag_embedder *emb = NULL;
    rag_ingest_opts_init(&o);
    o.collection = a->collection;
    o.embed_model = a->embed_model;
    o.chunk_tokens = a->chunk_tokens ? a->chunk_tokens : o.chunk_tokens;
    o.overlap = a->overlap >= 0 ? a->overlap : o.overlap;
    o.batch = a->batch ? a->batch : o.batch;
    o.jobs = a->jobs;
    o.prune = a->prune;
    o.meta_keys = a->meta_k;
    o.meta_values = a->meta_v;
    o.n_meta = a->n_meta;
    o.progress = on_progress;
    o.file_error = on_file_error;
    struct rag_ingest_stats st = {0};
    int v = 0;
    int rc = open_embedder(a, &emb, err);
    o.embedder = emb;
    if (rag_embedder_model(emb))
        o.embed_model = rag_embedder_model(emb);
    if (rc == KM_OK)
        rc = rag_migrate(db, &v, err);
    if (rc == KM_OK)
        rc = rag_ingest(db, (const char *const *)paths, (size_t)n, &o, &st, err);
    if (rc == KM_OK || st.files_failed > 0) /* not after a fatal error */
        printf("ingested %ld files (%lld chunks), %ld unchanged, %ld failed, %ld pruned; "
               "files %.2f s with %d %s (embedding %.2f s, database %.2f s, summed), "
               "index %.2f s\n", st.files_done, st.chunks, st.files_skipped, st.files_failed,
               st.docs_pruned, st.files_s, st.jobs, st.jobs == 1 ? "job" : "jobs", st.embed_s,
               st.db_s, st.index_s);
    note_truncated("rag ingest", emb);
    rag_embedder_free(emb);
    return rc;
}

/* ---- query -------------------------------------------------------------- */

static void print_hits(const struct rag_hits *h)
{
    for (size_t i = 0; i < h->n; i++) {
        const struct rag_hit *x = &h->v[i];
        printf("[%zu] score %.4f  %s  %s\n%s\n\n", i + 1, x->score, x->chunk_id,
               x->source_uri, x->text);
    }
    if (h->n == 0)
        printf("no hits\n");
}

static int do_query(struct rag_args *a, const char *text, struct rag_db *db,
                    struct km_err *err)
{
    struct rag_collection c;
    struct rag_embedder *emb = NULL;
    float *vec = NULL;
    int dim = 0;
    struct rag_hits hits = {0};
    int rc = rag_collection_get(db, a->collection, &c, err);
    km_log_set_level(KM_LOG_WARN); /* no "model ready" line before the hits */
    if (rc == KM_OK && a->mode != RAG_MODE_TEXT)
        rc = open_embedder(a, &emb, err);
    const char *local = rag_embedder_model(emb);
    if (rc == KM_OK && local && strcmp(local, c.embed_model) != 0)
        rc = km_fail(err, KM_EINVAL, "collection '%s' holds embeddings of model '%s', not "
                     "of model '%s' (%s); give --embed-name '%s' if that file is the same "
                     "model", c.name, c.embed_model, local, a->embed_model, c.embed_model);
    if (rc == KM_OK && emb) {
        const char *model = a->embed_model && !local ? a->embed_model : c.embed_model;
        rc = rag_embedder_run(emb, model, &text, 1, &vec, &dim, err);
    }
    struct rag_query q = {.collection = a->collection, .text = text, .vec = vec,
                          .dim = dim, .k = a->k ? a->k : 5, .mode = a->mode,
                          .filter = &a->filter, .ef_search = a->ef_search,
                          .exact = a->exact};
    if (rc == KM_OK)
        rc = rag_query_run(db, &q, &hits, err);
    char *json = NULL;
    if (rc == KM_OK && a->json)
        rc = rag_hits_json(&hits, &json, err);
    if (rc == KM_OK && json)
        printf("%s\n", json);
    else if (rc == KM_OK)
        print_hits(&hits);
    km_free(json);
    rag_hits_free(&hits);
    km_free(vec);
    rag_embedder_free(emb);
    return rc;
}

/* ---- dispatch ----------------------------------------------------------- */

static int need(const char *what, const char *flag, bool ok)
{
    if (!ok)
        fprintf(stderr, "kanoa-mlops rag %s: %s is required\n", what, flag);
    return ok ? 0 : -1;
}

static int check_args(const char *sub, struct rag_args *a, int n_pos)
{
    bool ing = strcmp(sub, "ingest") == 0, qry = strcmp(sub, "query") == 0;
    if ((ing || qry) && need(sub, "--collection", a->collection != NULL) != 0)
        return -1;
    if (ing && need(sub, "at least one PATH", n_pos > 0) != 0)
        return -1;
    if (qry && need(sub, "exactly one query TEXT", n_pos == 1) != 0)
        return -1;
    if (!ing && !qry && n_pos != 0) {
        fprintf(stderr, "kanoa-mlops rag %s: unexpected argument\n", sub);
        return -1;
    }
    if (ing && a->overlap >= 0 && a->overlap * 2 > (a->chunk_tokens ? a->chunk_tokens : 512)) {
        fprintf(stderr, "kanoa-mlops rag ingest: --overlap must be at most half of --chunk-tokens\n");
        return -1;
    }
    return 0;
}

static int run_sub(const char *sub, struct rag_args *a, char **pos, int n_pos)
{
    struct km_err err;
    km_err_clear(&err);
    struct rag_db *db = NULL;
    int rc = connect_db(a, &db, &err);
    if (rc == KM_OK && strcmp(sub, "init") == 0)
        rc = do_init(a, db, &err);
    else if (rc == KM_OK && strcmp(sub, "list") == 0)
        rc = do_list(a, db, &err);
    else if (rc == KM_OK && strcmp(sub, "ingest") == 0)
        rc = do_ingest(a, pos, n_pos, db, &err);
    else if (rc == KM_OK)
        rc = do_query(a, pos[0], db, &err);
    rag_close(db);
    if (rc == KM_OK)
        return CLI_EXIT_OK;
    char cmd[32];
    snprintf(cmd, sizeof cmd, "rag %s", sub);
    return cli_fail(cmd, &err);
}

int cmd_rag(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
        fputs(usage, stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(sub, "init") && strcmp(sub, "ingest") && strcmp(sub, "query") &&
        strcmp(sub, "list")) {
        fprintf(stderr, "kanoa-mlops rag: unknown subcommand '%s'\n", sub);
        return cli_usage_error(usage);
    }
    struct rag_args a = {.overlap = -1, .mode = RAG_MODE_VECTOR};
    rag_filter_init(&a.filter);
    optind = 0;
    int rc = parse(argc - 1, argv + 1, &a);
    if (rc == 0)
        rc = check_args(sub, &a, argc - 1 - optind) == 0 ? 0 : cli_usage_error(usage);
    if (rc == 0)
        rc = run_sub(sub, &a, argv + 1 + optind, argc - 1 - optind);
    args_free(&a);
    return rc < 0 ? CLI_EXIT_OK : rc;
}
