/* bench_rag.c - knowledge-base load and query benchmark (one process).
 *
 * usage: bench_rag URL [N] [DIM] [QUERIES] [PORT]   (defaults 100000 384 100)
 *
 * Vectors have a low intrinsic dimension like real embeddings: a 24-d
 * Gaussian latent times a fixed random 24 x DIM projection, plus 5% noise,
 * normalized. All rows are generated (and each COPY stream encoded) before
 * its clock starts. Measured in the same run, so the ratios are what matter:
 *  1. baseline: text COPY into a plain table, of a vector(DIM) column only
 *     (the reference) and of (id, text, vector);
 *  2. binary COPY (rag_copy_*) of (id, text, vector) into the same table;
 *  3. the rag ingest path without embeddings, what ingest.c does per
 *     100-chunk document (rag__doc_begin / rag__doc_commit: one pipelined
 *     round trip for BEGIN, lock, delete, insert; binary COPY into
 *     kanoa.chunks, each row encoded by rag__copy_chunk with its tsvector
 *     from rag__tsv_english, or NULL for the trigger (BENCH_TSV=server:
 *     all NULL); commit without waiting for the WAL flush; one flush at
 *     the end), over 1 connection (the first fifth of the rows) and over
 *     BENCH_JOBS connections (default: the online CPUs; the rest but 2000),
 *     then the HNSW build, then the last 2000 rows into the indexed
 *     collection. GIN pending lists are merged before each clock stops.
 *     Per load: rows/s, CPU per row of the backends doing the work and of
 *     the whole server (all its processes, /proc), WAL bytes per row;
 *  4. queries: recall@10 of HNSW (ef_search 40, 100, 150) against exact
 *     search, p50/p99 latency of rag_query_run and of the bare SQL.
 * BENCH_COSTS=M: steps 1-2, then where the per-row cost of kanoa.chunks
 * goes: M rows into a scratch table per variant (the schema-1 table, then
 * leaving out one part at a time: the tsvector column, each GIN index,
 * the btree, the UNIQUE, each FK; GIN tuning; asynchronous commit;
 * schema 3's generated tsv against schema 4's plain column with the tsv
 * sent (the server's own bytes, fetched before the clocks), computed by the
 * trigger, from rag__tsv_english, and without the trigger), and
 * stop; BENCH_COST_ONLY=",i,j," picks variants, BENCH_COST_REPEAT=R runs
 * the picked ones R times, interleaved.
 * BENCH_LOAD_ONLY=1: steps 1-3 up to the loads (no HNSW, no queries).
 * BENCH_REUSE=1 with a database that already holds the collection skips
 * steps 1-3 (queries only).
 *  5. (bench_retrieve.c) with PORT (a `kanoa-mlops serve --database-url URL` serving the
 *     collection's model "bench"): QUERIES texts through POST
 *     /v1/embeddings (keeping their vectors), the bare SQL with those
 *     vectors, and POST /v1/retrieve of the same texts (k 10, default
 *     ef_search), in interleaved blocks of 20. Wall-clock percentiles of each,
 *     and, with BENCH_SERVE_PID, CPU time per request from /proc (server
 *     process, its pooled backends, our backend): retrieve - embeddings -
 *     bare SQL is the work /v1/retrieve adds, which a loaded machine does
 *     not blur the way it blurs wall time, split into the server (its HTTP
 *     threads apart, from schedstat) and the database. The embeddings
 *     request's own HTTP hop counts as embedding time. Two more phases run
 *     retrieve's query and hits JSON here (rag_query_run +
 *     rag_hits_json_buf), alone and each right after a POST /v1/embeddings
 *     (the model's run in between, as in retrieve): this thread's CPU, our
 *     backend's against the bare SQL. Needs the loaded collection.
 */
#include "base/mem.h"
#include "rag/rag.h"
#include "rag/rag_int.h"

#include "bench_rag.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LATENT 24
#define DOC_CHUNKS 100

static unsigned long long rng_state = 88172645463325252ull;

static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static double gauss(void)
{
    double u = urand() + 1e-12, v = urand();
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static float *proj; /* LATENT x dim */

static void make_vec(float *out, int dim)
{
    double z[LATENT], n = 0;
    for (int i = 0; i < LATENT; i++)
        z[i] = gauss();
    for (int j = 0; j < dim; j++) {
        double s = 0.05 * gauss();
        for (int i = 0; i < LATENT; i++)
            s += z[i] * proj[i * dim + j];
        out[j] = (float)s;
        n += s * s;
    }
    for (int j = 0; j < dim; j++)
        out[j] = (float)(out[j] / sqrt(n));
}

static const char *const words[] = {"vector", "index", "query", "model", "token", "chunk",
                                    "postgres", "kanoa", "recall", "latency", "cosine", "plot"};

/* 24 words (about 170 bytes, a short paragraph), or words up to cap. */
static void make_text(char *out, size_t cap, long i, bool fill)
{
    int n = snprintf(out, cap, "chunk %ld:", i);
    for (int w = 0; (fill || w < 24) && n < (int)cap - 16; w++)
        n += snprintf(out + n, cap - (size_t)n, " %s", words[(size_t)(urand() * 12) % 12]);
}

void die(const struct km_err *e)
{
    fprintf(stderr, "bench_rag: %s\n", km_err_text(e));
    exit(1);
}

/* CPU seconds (user + system, all threads) used so far by process pid. */
double cpu_of(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* fields after the command name */
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                     &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds of the whole database server so far: the postmaster with
 * its reaped children (exited backends, autovacuum workers) and every live
 * child (backends, autovacuum, WAL writer, checkpointer). So work the
 * server defers (GIN pending lists, vacuum) counts too, when done. */
static double server_cpu(struct rag_db *db)
{
    struct km_err e;
    struct rag__res r;
    char path[96], buf[1024];
    if (rag__query(db, "SELECT pg_backend_pid()", 0, NULL, &r, &e) != KM_OK)
        die(&e);
    int me = atoi(rag__val(&r, 0, 0)), pm = 0;
    rag__res_free(&r);
    snprintf(path, sizeof path, "/proc/%d/stat", me);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0, cut = 0, cst = 0;
    if (!p || sscanf(p + 2, "%*c %d", &pm) != 1)
        return 0;
    snprintf(path, sizeof path, "/proc/%d/stat", pm);
    f = fopen(path, "r");
    n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
                     &ut, &st, &cut, &cst) != 4)
        return 0;
    double s = (double)(ut + st + cut + cst) / (double)sysconf(_SC_CLK_TCK);
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", pm, pm);
    f = fopen(path, "r");
    int child;
    while (f && fscanf(f, "%d", &child) == 1)
        s += cpu_of(child);
    if (f)
        fclose(f);
    return s;
}

/* CPU seconds of this process, all threads. */
static double self_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double my_backend_cpu(struct rag_db *db)
{
    struct km_err e;
    struct rag__res r;
    if (rag__query(db, "SELECT pg_backend_pid()", 0, NULL, &r, &e) != KM_OK)
        die(&e);
    double s = cpu_of(atoi(rag__val(&r, 0, 0)));
    rag__res_free(&r);
    return s;
}

/* Rows are generated once, before any clock starts, so every load below
 * measures the client's encoding and the server's work, not the generator. */
/* BENCH_TEXT_BYTES=B: texts of about B bytes (default: 24 words, about
 * 170 bytes; 2048 is a default 512-token chunk, which TOAST would move). */
static size_t text_cap = 256;

struct data {
    long n;
    int dim;
    float *vecs;  /* n x dim */
    char *texts;  /* n x text_cap, NUL-terminated */
};

static void data_make(struct data *d, long n, int dim)
{
    d->n = n;
    d->dim = dim;
    d->vecs = km_malloc(sizeof(float) * (size_t)n * (size_t)dim);
    const char *tb = getenv("BENCH_TEXT_BYTES");
    bool fill = tb && atol(tb) > 0;
    if (fill)
        text_cap = (size_t)atol(tb) + 16;
    d->texts = km_malloc((size_t)n * text_cap);
    if (!d->vecs || !d->texts) {
        fprintf(stderr, "bench_rag: out of memory for %ld rows\n", n);
        exit(1);
    }
    rng_state = 12345;
    for (long i = 0; i < n; i++) {
        make_vec(d->vecs + (size_t)i * (size_t)dim, dim);
        make_text(d->texts + (size_t)i * text_cap, text_cap, i, fill);
    }
}

static void data_free(struct data *d)
{
    km_free(d->vecs);
    km_free(d->texts);
}

static const float *vec_of(const struct data *d, long i)
{
    return d->vecs + (size_t)i * (size_t)d->dim;
}

static const char *text_of(const struct data *d, long i)
{
    return d->texts + (size_t)i * text_cap;
}

/* Send a prepared COPY stream in 1 MiB pieces. */
static void copy_stream(struct rag_db *db, const char *sql, const struct km_buf *b)
{
    struct km_err e;
    if (rag__copy_begin(db, sql, &e) != KM_OK)
        die(&e);
    for (size_t off = 0; off < b->len; off += 1u << 20) {
        size_t part = b->len - off < (1u << 20) ? b->len - off : 1u << 20;
        if (rag__copy_put(db, b->data + off, part, &e) != KM_OK)
            die(&e);
    }
    if (rag__copy_end(db, &e) != KM_OK)
        die(&e);
}

enum plain { PLAIN_TEXT_VEC, PLAIN_TEXT_ROW, PLAIN_BINARY_ROW };

/* One COPY of every row into a fresh plain table (no index), the stream
 * encoded before the clock starts: the server's COPY rate. TEXT_VEC is
 * the reference (a vector(dim) column only), TEXT_ROW and
 * BINARY_ROW load (id, text, vector). Seconds of the COPY. */
static double load_plain(struct rag_db *db, const struct data *d, enum plain kind, double *cpu)
{
    struct km_err e;
    struct km_buf b;
    char sql[256];
    snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS bench_plain; CREATE TABLE bench_plain (%s"
             " embedding vector(%d))", kind == PLAIN_TEXT_VEC ? "" : "id bigint, text text,",
             d->dim);
    if (rag_exec(db, sql, &e) != KM_OK)
        die(&e);
    km_buf_init(&b, (size_t)8 << 30);
    if (kind == PLAIN_BINARY_ROW)
        rag_copy_header(&b);
    for (long i = 0; i < d->n; i++) {
        const float *v = vec_of(d, i);
        if (kind == PLAIN_BINARY_ROW) {
            rag_copy_tuple(&b, 3);
            rag_copy_int8(&b, i);
            rag_copy_text(&b, text_of(d, i), strlen(text_of(d, i)));
            rag_copy_vector(&b, v, (size_t)d->dim);
            continue;
        }
        if (kind == PLAIN_TEXT_ROW)
            km_buf_printf(&b, "%ld\t%s\t", i, text_of(d, i));
        km_buf_putc(&b, '[');
        for (int j = 0; j < d->dim; j++)
            km_buf_printf(&b, j ? ",%.9g" : "%.9g", (double)v[j]);
        km_buf_puts(&b, "]\n");
    }
    if (kind == PLAIN_BINARY_ROW)
        rag_copy_trailer(&b);
    double c0 = my_backend_cpu(db), t0 = rag__now();
    copy_stream(db, kind == PLAIN_BINARY_ROW ? "COPY bench_plain FROM STDIN WITH (FORMAT binary)"
                                             : "COPY bench_plain FROM STDIN", &b);
    double t = rag__now() - t0;
    *cpu = my_backend_cpu(db) - c0;
    km_buf_free(&b);
    return t;
}

/* ---- the ingest path without embeddings --------------------------------- */

/* Where a row's tsvector comes from. */
enum tsv_src {
    TSV_OMIT,     /* no tsv in the COPY (a generated column, or none) */
    TSV_CLIENT,   /* rag__copy_chunk, as ingest: rag__tsv_english, else NULL */
    TSV_SERVER,   /* rag__copy_chunk with tsv NULL: the insert trigger computes it */
    TSV_PRE,      /* the server's own bytes, fetched before the clock starts */
};

struct load {
    const char *url;
    const struct data *d;
    long long coll;
    const char *copy_sql;   /* NULL = kanoa.chunks (rag__doc_begin's) */
    const char *tag;        /* source_uri prefix */
    long from, to;          /* rows [from, to) */
    int jobs;               /* connections, documents dealt round robin */
    bool sync_commit;       /* wait for the WAL flush at each commit */
    enum tsv_src tsv;
    const char *gin_flush;  /* SQL run before the clock stops (pending lists) */
    /* out */
    double secs, server_cpu, backend_cpu; /* server: all its processes */
    double client_cpu;                    /* this process (encoding, libpq) */
    long long wal_bytes;
    long tsv_client;                      /* rows whose tsvector the client sent */
};

struct worker {
    const struct load *l;
    int index;
    double cpu; /* its backend's CPU seconds */
    long tsv_client;
};

/* TSV_PRE: to_tsvector('english', text) of rows [0, pre_n) in tsvectorsend
 * form, row i at pre_bytes.data + pre_off[i], pre_off[i + 1] - pre_off[i]
 * bytes. */
static struct km_buf pre_bytes;
static size_t *pre_off;
static long pre_n;

static int hexval(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

static void fetch_pre(struct rag_db *db, const struct data *d, long m)
{
    struct km_err e;
    struct km_buf arr;
    km_buf_init(&pre_bytes, (size_t)1 << 32);
    km_buf_init(&arr, (size_t)1 << 30);
    pre_off = km_calloc((size_t)m + 1, sizeof *pre_off);
    for (long i = 0; i < m; i += 1000) {
        long n = m - i < 1000 ? m - i : 1000;
        km_buf_reset(&arr);
        km_buf_putc(&arr, '{');
        for (long j = i; j < i + n; j++) {
            km_buf_puts(&arr, j > i ? ",\"" : "\"");
            for (const char *t = text_of(d, j); *t; t++) {
                if (*t == '"' || *t == '\\')
                    km_buf_putc(&arr, '\\');
                km_buf_putc(&arr, *t);
            }
            km_buf_putc(&arr, '"');
        }
        km_buf_putc(&arr, '}');
        const char *p[1] = {arr.data};
        struct rag__res r;
        if (rag__query(db, "SELECT tsvectorsend(to_tsvector('english', t)) FROM"
                           " unnest($1::text[]) WITH ORDINALITY u(t, o) ORDER BY o",
                       1, p, &r, &e) != KM_OK)
            die(&e);
        for (long j = 0; j < n; j++) {
            const char *h = rag__val(&r, (int)j, 0) + 2; /* \x... */
            for (; h[0] && h[1]; h += 2)
                km_buf_putc(&pre_bytes, (char)(hexval(h[0]) << 4 | hexval(h[1])));
            pre_off[i + j + 1] = pre_bytes.len;
        }
        rag__res_free(&r);
    }
    pre_n = m;
    km_buf_free(&arr);
}

/* A row as ingest sends it (rag__copy_chunk), or for TSV_OMIT / TSV_PRE
 * the same fields written here. */
static bool encode_row(const struct load *l, const struct rag__chunk_row *row, long j,
                       struct km_buf *b)
{
    struct km_err e;
    bool client = false;
    if (l->tsv == TSV_CLIENT || l->tsv == TSV_SERVER) {
        if (rag__copy_chunk(b, row, &client, &e) != KM_OK)
            die(&e);
        return client;
    }
    rag_copy_tuple(b, l->tsv == TSV_PRE ? 9 : 8);
    rag_copy_int8(b, row->collection_id);
    rag_copy_int8(b, row->document_id);
    rag_copy_text(b, row->chunk_id, row->chunk_id_len);
    rag_copy_int4(b, row->position);
    rag_copy_int4(b, row->tokens);
    rag_copy_text(b, row->text, row->text_len);
    rag_copy_jsonb(b, row->meta, row->meta_len);
    rag_copy_vector(b, row->vec, row->dim);
    if (l->tsv == TSV_PRE) {
        if (j >= pre_n) {
            fprintf(stderr, "bench_rag: no precomputed tsvector for row %ld\n", j);
            exit(1);
        }
        rag_copy_text(b, pre_bytes.data + pre_off[j], pre_off[j + 1] - pre_off[j]);
    }
    return false;
}

/* The rows of one document; the number whose tsvector the client sent. */
static long encode_doc(const struct load *l, long first, long n, long long doc,
                       struct km_buf *b)
{
    char cid[32];
    long client = 0;
    km_buf_reset(b);
    rag_copy_header(b);
    for (long j = first; j < first + n; j++) {
        const char *text = text_of(l->d, j);
        size_t len = strlen(text);
        int cl = snprintf(cid, sizeof cid, "b%07ld:%04ld", first / DOC_CHUNKS, j - first);
        const struct rag__chunk_row row = {
            .collection_id = l->coll, .document_id = doc,
            .chunk_id = cid, .chunk_id_len = (size_t)cl,
            .position = (int32_t)(j - first), .tokens = rag_token_estimate(text, len),
            .text = text, .text_len = len, .meta = "{\"bench\": \"1\"}", .meta_len = 14,
            .vec = vec_of(l->d, j), .dim = (size_t)l->d->dim,
            .server_tsv = l->tsv == TSV_SERVER};
        client += encode_row(l, &row, j, b);
    }
    rag_copy_trailer(b);
    return client;
}

/* Documents index, index + jobs, ... of the range: per document what
 * ingest does (rag__doc_begin: one pipelined round trip for BEGIN, lock,
 * delete, insert; then the COPY and the commit, rag__doc_commit). */
static void *load_worker(void *arg)
{
    struct worker *w = arg;
    const struct load *l = w->l;
    struct km_err e;
    struct km_buf b;
    struct rag_db *db;
    char uri[96];
    if (rag_open(l->url, &db, &e) != KM_OK)
        die(&e);
    km_buf_init(&b, 64u << 20);
    double c0 = my_backend_cpu(db);
    long step = (long)l->jobs * DOC_CHUNKS;
    for (long i = l->from + (long)w->index * DOC_CHUNKS; i < l->to; i += step) {
        long n = l->to - i < DOC_CHUNKS ? l->to - i : DOC_CHUNKS;
        long long doc = 0;
        snprintf(uri, sizeof uri, "%s/%ld", l->tag, i / DOC_CHUNKS);
        struct rag__doc rd = {.collection_id = l->coll, .uri = uri, .hash = "x",
                              .meta = "{}", .n_chunks = n, .sync_commit = l->sync_commit,
                              .copy_sql = l->copy_sql};
        if (rag__doc_begin(db, &rd, &doc, &e) != KM_OK)
            die(&e);
        w->tsv_client += encode_doc(l, i, n, doc, &b);
        if (rag__copy_put(db, b.data, b.len, &e) != KM_OK || rag__doc_commit(db, &e) != KM_OK)
            die(&e);
    }
    w->cpu = my_backend_cpu(db) - c0;
    km_buf_free(&b);
    rag_close(db);
    return NULL;
}

static long long wal_lsn(struct rag_db *db)
{
    struct km_err e;
    struct rag__res r;
    if (rag__query(db, "SELECT pg_current_wal_lsn() - '0/0'", 0, NULL, &r, &e) != KM_OK)
        die(&e);
    long long v = atoll(rag__val(&r, 0, 0));
    rag__res_free(&r);
    return v;
}

/* Run l->jobs workers; l->secs, l->server_cpu (the backends' CPU seconds)
 * and l->wal_bytes are filled in. Ends with a flushed (synchronous)
 * commit, so asynchronous commits are durable when the clock stops. */
static void load_docs(struct rag_db *db, struct load *l)
{
    struct km_err e;
    pthread_t th[64];
    struct worker w[64];
    int jobs = l->jobs < 1 ? 1 : l->jobs > 64 ? 64 : l->jobs;
    l->jobs = jobs;
    long long w0 = wal_lsn(db);
    double c0 = server_cpu(db), m0 = my_backend_cpu(db), s0 = self_cpu();
    double t0 = rag__now();
    for (int i = 0; i < jobs; i++) {
        w[i] = (struct worker){.l = l, .index = i};
        pthread_create(&th[i], NULL, load_worker, &w[i]);
    }
    l->backend_cpu = 0;
    l->tsv_client = 0;
    for (int i = 0; i < jobs; i++) {
        pthread_join(th[i], NULL);
        l->backend_cpu += w[i].cpu;
        l->tsv_client += w[i].tsv_client;
    }
    if ((l->gin_flush && rag_exec(db, l->gin_flush, &e) != KM_OK) ||
        rag__wal_flush(db, &e) != KM_OK)
        die(&e);
    l->secs = rag__now() - t0;
    l->client_cpu = self_cpu() - s0;
    l->server_cpu = server_cpu(db) - c0;
    l->backend_cpu += my_backend_cpu(db) - m0;
    l->wal_bytes = wal_lsn(db) - w0;
}

/* Rates against `ref`, the faster of the two text COPY rates. */
static void print_load(const char *what, const struct load *l, double ref)
{
    long rows = l->to - l->from;
    char tsv[64];
    if (l->tsv == TSV_CLIENT)
        snprintf(tsv, sizeof tsv, "client %ld, trigger %ld", l->tsv_client, rows - l->tsv_client);
    else
        snprintf(tsv, sizeof tsv, "%s", l->tsv == TSV_OMIT ? "generated or none"
                 : l->tsv == TSV_PRE ? "sent (server's bytes)" : "trigger");
    printf("%-46s %7.0f rows/s (%5.1f s) = %.2fx text COPY; CPU us/row: backends %5.1f,"
           " server %5.1f, client %4.1f; WAL %5.0f B/row; tsv: %s\n", what, rows / l->secs,
           l->secs, rows / l->secs / ref, 1e6 * l->backend_cpu / (double)rows,
           1e6 * l->server_cpu / (double)rows, 1e6 * l->client_cpu / (double)rows,
           (double)l->wal_bytes / (double)rows, tsv);
}

/* ---- where the per-row cost goes (BENCH_COSTS=M rows) ------------------- */

enum {
    C_TSV = 1 << 0,       /* tsv tsvector GENERATED ... STORED */
    C_GIN_TSV = 1 << 1,   /* GIN index on tsv */
    C_GIN_META = 1 << 2,  /* GIN jsonb_path_ops index on metadata */
    C_DOC_IDX = 1 << 3,   /* btree on document_id */
    C_FK_COLL = 1 << 4,   /* FK collection_id -> collections */
    C_FK_DOC = 1 << 5,    /* FK document_id -> documents */
    C_UNIQUE = 1 << 6,    /* UNIQUE (collection_id, chunk_id) */
    C_NO_FASTUPDATE = 1 << 8,
    C_PENDING_BIG = 1 << 9, /* gin_pending_list_limit 64 MB */
    C_ASYNC = 1 << 10,    /* synchronous_commit off per transaction */
    C_TOAST_8K = 1 << 11, /* toast_tuple_target 8160: no compression below 8 kB */
    C_SEQ_CACHE = 1 << 12, /* the id sequence hands out 1000 values per backend */
    C_TSV_COL = 1 << 13,  /* tsv tsvector NOT NULL, a plain column (schema 4) */
    C_TSV_TRIG = 1 << 14, /* schema 4's BEFORE INSERT trigger WHEN (NEW.tsv IS NULL) */
    C_TSV_PLPGSQL = 1 << 15, /* that trigger with a PL/pgSQL function instead */
    C_V1 = C_TSV | C_GIN_TSV | C_GIN_META | C_DOC_IDX | C_FK_COLL | C_FK_DOC | C_UNIQUE,
};

static void cost_table(struct rag_db *db, int f)
{
    struct km_err e;
    struct km_buf s;
    const char *gin_with = f & C_NO_FASTUPDATE ? " WITH (fastupdate = off)"
                           : f & C_PENDING_BIG ? " WITH (gin_pending_list_limit = 65536)" : "";
    km_buf_init(&s, 1u << 16);
    km_buf_printf(&s, "DROP TABLE IF EXISTS bench_cost; CREATE TABLE bench_cost ("
                  " id bigserial PRIMARY KEY, collection_id bigint NOT NULL%s,"
                  " document_id bigint NOT NULL%s, chunk_id text NOT NULL,"
                  " position int NOT NULL, token_count int NOT NULL, text text NOT NULL,"
                  " metadata jsonb NOT NULL DEFAULT '{}', embedding vector NOT NULL%s%s)"
                  " WITH (autovacuum_enabled = off%s);",
                  f & C_FK_COLL ? " REFERENCES kanoa.collections(id) ON DELETE CASCADE" : "",
                  f & C_FK_DOC ? " REFERENCES kanoa.documents(id) ON DELETE CASCADE" : "",
                  f & C_TSV ? ", tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text))"
                              " STORED" : f & C_TSV_COL ? ", tsv tsvector NOT NULL" : "",
                  f & C_UNIQUE ? ", UNIQUE (collection_id, chunk_id)" : "",
                  f & C_TOAST_8K ? ", toast_tuple_target = 8160" : "");
    if (f & C_DOC_IDX)
        km_buf_puts(&s, "CREATE INDEX ON bench_cost (document_id);");
    if (f & C_SEQ_CACHE)
        km_buf_puts(&s, "ALTER SEQUENCE bench_cost_id_seq CACHE 1000;");
    if (f & C_TSV_TRIG) /* migration 4's insert trigger */
        km_buf_puts(&s, "CREATE TRIGGER bench_cost_tsv BEFORE INSERT ON bench_cost FOR EACH ROW"
                        " WHEN (NEW.tsv IS NULL) EXECUTE FUNCTION"
                        " tsvector_update_trigger(tsv, 'pg_catalog.english', text);");
    if (f & C_TSV_PLPGSQL) /* the same in PL/pgSQL (kanoa.chunk_tsv, the update trigger's) */
        km_buf_puts(&s, "CREATE TRIGGER bench_cost_tsv BEFORE INSERT ON bench_cost FOR EACH ROW"
                        " WHEN (NEW.tsv IS NULL) EXECUTE FUNCTION kanoa.chunk_tsv();");
    if (f & C_GIN_TSV)
        km_buf_printf(&s, "CREATE INDEX ON bench_cost USING gin (tsv)%s;", gin_with);
    if (f & C_GIN_META)
        km_buf_printf(&s, "CREATE INDEX ON bench_cost USING gin (metadata jsonb_path_ops)%s;",
                      gin_with);
    if (rag_exec(db, s.data, &e) != KM_OK)
        die(&e);
    km_buf_free(&s);
}

/* Schema 3 and 4 as ingest writes them (asynchronous commits). */
#define C_S3 ((C_V1 & ~(C_FK_COLL | C_FK_DOC)) | C_ASYNC | C_SEQ_CACHE)
#define C_S4 ((C_S3 & ~C_TSV) | C_TSV_COL | C_TSV_TRIG)

static const struct {
    const char *name;
    int flags;
    enum tsv_src tsv;
} cost_variants[] = {
    {"schema 1 (all of kanoa.chunks v1)", C_V1, TSV_OMIT},
    {"  without the tsv column (and its GIN)", C_V1 & ~(C_TSV | C_GIN_TSV), TSV_OMIT},
    {"  without the GIN on tsv", C_V1 & ~C_GIN_TSV, TSV_OMIT},
    {"  without the GIN on metadata", C_V1 & ~C_GIN_META, TSV_OMIT},
    {"  without the btree on document_id", C_V1 & ~C_DOC_IDX, TSV_OMIT},
    {"  without the UNIQUE (collection_id, chunk_id)", C_V1 & ~C_UNIQUE, TSV_OMIT},
    {"  without the FK on collection_id", C_V1 & ~C_FK_COLL, TSV_OMIT},
    {"  without the FK on document_id", C_V1 & ~C_FK_DOC, TSV_OMIT},
    {"  without either FK", C_V1 & ~(C_FK_COLL | C_FK_DOC), TSV_OMIT},
    {"  GINs with fastupdate off", C_V1 | C_NO_FASTUPDATE, TSV_OMIT},
    {"  GINs with a 64 MB pending list", C_V1 | C_PENDING_BIG, TSV_OMIT},
    {"  asynchronous commit", C_V1 | C_ASYNC, TSV_OMIT},
    {"  toast_tuple_target 8160", C_V1 | C_TOAST_8K, TSV_OMIT},
    {"  asynchronous, no FK on collection_id", (C_V1 & ~C_FK_COLL) | C_ASYNC, TSV_OMIT},
    {"  asynchronous, no FKs (schema 2)", (C_V1 & ~(C_FK_COLL | C_FK_DOC)) | C_ASYNC, TSV_OMIT},
    {"  asynchronous, no FKs, 64 MB pending lists", (C_V1 & ~(C_FK_COLL | C_FK_DOC)) | C_ASYNC
                                                     | C_PENDING_BIG, TSV_OMIT},
    {"  asynchronous, no FKs, id sequence CACHE 1000", (C_V1 & ~(C_FK_COLL | C_FK_DOC)) | C_ASYNC
                                                       | C_SEQ_CACHE, TSV_OMIT},
    {"bare table (PK only)", 0, TSV_OMIT},
    {"bare table, asynchronous commit", C_ASYNC, TSV_OMIT},
    {"schema 2 without the tsv column (and its GIN)", (C_V1 & ~(C_FK_COLL | C_FK_DOC | C_TSV
                                                        | C_GIN_TSV)) | C_ASYNC, TSV_OMIT},
    {"schema 2 without the GIN on tsv", (C_V1 & ~(C_FK_COLL | C_FK_DOC | C_GIN_TSV)) | C_ASYNC, TSV_OMIT},
    {"schema 2, toast_tuple_target 8160", (C_V1 & ~(C_FK_COLL | C_FK_DOC)) | C_ASYNC | C_TOAST_8K, TSV_OMIT},
    {"schema 3 (the generated tsv)", C_S3, TSV_OMIT},
    {"schema 4, tsv sent (the server's bytes)", C_S4, TSV_PRE},
    {"schema 4, tsv NULL: the trigger computes it", C_S4, TSV_SERVER},
    {"schema 4, tsv as ingest (rag__tsv_english)", C_S4, TSV_CLIENT},
    {"schema 4 without the trigger, tsv sent", C_S4 & ~C_TSV_TRIG, TSV_PRE},
    {"schema 4, PL/pgSQL trigger computes it", (C_S4 & ~C_TSV_TRIG) | C_TSV_PLPGSQL, TSV_SERVER},
};

/* Merge the GIN pending lists of a table (work fastupdate defers). */
#define GIN_FLUSH(table) "SELECT gin_clean_pending_list(i.indexrelid::regclass) FROM pg_index i" \
    " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam" \
    " WHERE a.amname = 'gin' AND i.indrelid = '" table "'::regclass"

/* Leave-one-out: each variant loads the same rows, 100 per transaction. */
static void costs(struct rag_db *db, const struct data *d, long long coll, long m,
                  double ref, const char *url)
{
    struct km_err e;
    const char *only = getenv("BENCH_COST_ONLY"); /* e.g. ",0,9," (indexes) */
    const char *rep = getenv("BENCH_COST_REPEAT");  /* rounds over the variants */
    int rounds = rep && atoi(rep) > 0 ? atoi(rep) : 1;
    size_t nv = sizeof cost_variants / sizeof cost_variants[0];
    fetch_pre(db, d, m);
    printf("costs, %ld rows per variant, 1 connection, 100 rows per transaction:\n", m);
    for (size_t k = 0; k < (size_t)rounds * nv; k++) {
        size_t i = k % nv;
        char key[16];
        snprintf(key, sizeof key, ",%zu,", i);
        if (only && !strstr(only, key))
            continue;
        int f = cost_variants[i].flags;
        enum tsv_src tsv = cost_variants[i].tsv;
        cost_table(db, f);
        struct load l = {.url = url, .d = d, .coll = coll, .tag = "bench://cost",
                         .copy_sql = tsv == TSV_OMIT
                             ? "COPY bench_cost (collection_id, document_id, chunk_id,"
                               " position, token_count, text, metadata, embedding)"
                               " FROM STDIN WITH (FORMAT binary)"
                             : "COPY bench_cost (collection_id, document_id, chunk_id,"
                               " position, token_count, text, metadata, embedding, tsv)"
                               " FROM STDIN WITH (FORMAT binary)",
                         .from = 0, .to = m, .jobs = 1, .sync_commit = !(f & C_ASYNC),
                         .tsv = tsv, .gin_flush = GIN_FLUSH("bench_cost")};
        load_docs(db, &l);
        print_load(cost_variants[i].name, &l, ref);
        if (rag_exec(db, "DROP TABLE bench_cost; DELETE FROM kanoa.documents"
                         " WHERE source_uri LIKE 'bench://cost/%'", &e) != KM_OK)
            die(&e);
    }
    km_buf_free(&pre_bytes);
    km_free(pre_off);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int i = (int)ceil(p * n) - 1;
    return v[i < 0 ? 0 : i];
}

static int overlap(const struct rag_hits *a, const struct rag_hits *b)
{
    int m = 0;
    for (size_t i = 0; i < a->n; i++)
        for (size_t j = 0; j < b->n; j++)
            m += a->v[i].row == b->v[j].row;
    return m;
}

/* The bare SQL: the ORDER BY ... LIMIT 10 of the partial index, no
 * transaction, no join (hnsw.ef_search as set on the session). */
double raw_query(struct rag_db *db, const struct rag_collection *c, const float *q)
{
    struct km_err e;
    struct km_buf b, s;
    km_buf_init(&b, 1u << 20);
    km_buf_init(&s, 4096);
    km_buf_putc(&b, '[');
    for (int j = 0; j < c->dim; j++)
        km_buf_printf(&b, j ? ",%.9g" : "%.9g", (double)q[j]);
    km_buf_putc(&b, ']');
    km_buf_printf(&s, "SELECT id, text FROM kanoa.chunks WHERE collection_id = %lld ORDER BY"
                  " embedding::vector(%d) <=> $1::vector(%d) LIMIT 10", c->id, c->dim, c->dim);
    const char *p[1] = {b.data};
    struct rag__res r;
    double t0 = rag__now();
    if (rag__query(db, s.data, 1, p, &r, &e) != KM_OK)
        die(&e);
    double t = rag__now() - t0;
    rag__res_free(&r);
    km_buf_free(&b);
    km_buf_free(&s);
    return t;
}

static const int efs[] = {40, 100, 150};
#define N_EF 3

static void queries(struct rag_db *db, const struct rag_collection *c, int nq)
{
    struct km_err e;
    float *q = km_malloc(sizeof(float) * (size_t)c->dim);
    double *lat[N_EF], *raw = km_calloc((size_t)nq, sizeof *raw);
    int hits[N_EF] = {0};
    for (int f = 0; f < N_EF; f++)
        lat[f] = km_calloc((size_t)nq, sizeof(double));
    char sql_ef[64];
    rng_state = 999;
    snprintf(sql_ef, sizeof sql_ef, "SET hnsw.ef_search = %d", RAG_DEFAULT_EF_SEARCH);
    if (rag_exec(db, sql_ef, &e) != KM_OK)
        die(&e);
    for (int i = 0; i < nq; i++) {
        make_vec(q, c->dim);
        struct rag_hits ex, h;
        struct rag_query rq = {.collection = c->name, .text = "", .vec = q, .dim = c->dim,
                               .k = 10, .mode = RAG_MODE_VECTOR, .exact = true};
        if (rag_query_run(db, &rq, &ex, &e) != KM_OK)
            die(&e);
        rq.exact = false;
        raw[i] = raw_query(db, c, q); /* first after exact: no warmer than ours */
        for (int f = 0; f < N_EF; f++) {
            rq.ef_search = efs[f];
            double t0 = rag__now();
            if (rag_query_run(db, &rq, &h, &e) != KM_OK)
                die(&e);
            lat[f][i] = rag__now() - t0;
            hits[f] += overlap(&ex, &h);
            rag_hits_free(&h);
        }
        rag_hits_free(&ex);
    }
    double r50 = pct(raw, nq, 0.5), r99 = pct(raw, nq, 0.99);
    for (int f = 0; f < N_EF; f++) {
        double p50 = pct(lat[f], nq, 0.5), p99 = pct(lat[f], nq, 0.99);
        printf("ef_search %3d: recall@10 %.4f, rag_query_run p50 %.2f ms p99 %.2f ms%s\n",
               efs[f], hits[f] / (10.0 * nq), 1e3 * p50, 1e3 * p99,
               efs[f] == RAG_DEFAULT_EF_SEARCH ? " (default)" : "");
        km_free(lat[f]);
    }
    printf("bare SQL (ef_search %d, ORDER BY ... LIMIT 10): p50 %.2f ms, p99 %.2f ms\n",
           RAG_DEFAULT_EF_SEARCH, 1e3 * r50, 1e3 * r99);
    km_free(q);
    km_free(raw);
}

static long long count_rows(struct rag_db *db, const struct rag_collection *c)
{
    struct km_err e;
    struct rag__res r;
    char id[24];
    snprintf(id, sizeof id, "%lld", c->id);
    const char *p[1] = {id};
    if (rag__query(db, "SELECT count(*) FROM kanoa.chunks WHERE collection_id = $1::bigint",
                   1, p, &r, &e) != KM_OK)
        die(&e);
    long long n = atoll(rag__val(&r, 0, 0));
    rag__res_free(&r);
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_rag URL [N] [DIM] [QUERIES] [PORT]\n");
        return 2;
    }
    long n = argc > 2 ? atol(argv[2]) : 100000;
    int dim = argc > 3 ? atoi(argv[3]) : 384, nq = argc > 4 ? atoi(argv[4]) : 100;
    int port = argc > 5 ? atoi(argv[5]) : 0;
    struct km_err e;
    struct rag_db *db;
    struct rag_collection c;
    int v;
    char name[64];
    proj = km_malloc(sizeof(float) * LATENT * (size_t)dim);
    for (int i = 0; i < LATENT * dim; i++)
        proj[i] = (float)gauss();
    snprintf(name, sizeof name, "bench-%ld-%d", n, dim);
    bool reuse = getenv("BENCH_REUSE") != NULL;
    if (rag_open(argv[1], &db, &e) != KM_OK || rag_migrate(db, &v, &e) != KM_OK ||
        rag_collection_ensure(db, name, "bench", dim, &c, &e) != KM_OK)
        die(&e);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (port > 0) {
        if (count_rows(db, &c) != n) {
            fprintf(stderr, "bench_rag: collection %s is not loaded; run without PORT first\n", name);
            return 1;
        }
        retrieve_vs_sql(db, &c, nq, port);
        rag_close(db);
        km_free(proj);
        return 0;
    }
    if (reuse && count_rows(db, &c) == n) {
        printf("rows %ld x %d dims (reusing the loaded collection: queries only)\n", n, dim);
        queries(db, &c, nq);
        rag_close(db);
        return 0;
    }
    if (rag_exec(db, "DELETE FROM kanoa.collections WHERE name LIKE 'bench-%'", &e) != KM_OK ||
        rag_collection_ensure(db, name, "bench", dim, &c, &e) != KM_OK)
        die(&e);
    struct data d;
    data_make(&d, n, dim);
    printf("rows %ld x %d dims (generated before the clocks start)\n", n, dim);
    double cpu;
    double t_vec = load_plain(db, &d, PLAIN_TEXT_VEC, &cpu);
    printf("text COPY, vector(%d) only (the issue's):   %7.0f rows/s (%.1f s); backend CPU"
           " %5.1f us/row\n", dim, n / t_vec, t_vec, 1e6 * cpu / n);
    double t_text = load_plain(db, &d, PLAIN_TEXT_ROW, &cpu);
    printf("text COPY, (id, text, vector):            %7.0f rows/s (%.1f s); backend CPU"
           " %5.1f us/row\n", n / t_text, t_text, 1e6 * cpu / n);
    double ref = n / (t_vec < t_text ? t_vec : t_text);
    double t_bin = load_plain(db, &d, PLAIN_BINARY_ROW, &cpu);
    printf("binary COPY, (id, text, vector):          %7.0f rows/s (%.1f s) = %.2fx text COPY;"
           " backend CPU %5.1f us/row\n", n / t_bin, t_bin, n / t_bin / ref, 1e6 * cpu / n);
    rag_exec(db, "DROP TABLE bench_plain", &e);
    printf("(ratios below: against the faster text COPY, %.0f rows/s)\n", ref);
    const char *cm = getenv("BENCH_COSTS");
    if (cm && atol(cm) > 0) { /* the baselines and the variants only */
        costs(db, &d, c.id, atol(cm) < n ? atol(cm) : n, ref, argv[1]);
        data_free(&d);
        rag_close(db);
        km_free(proj);
        return 0;
    }
    const char *jv = getenv("BENCH_JOBS");
    int jobs = jv && atoi(jv) > 0 ? atoi(jv) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    long incr = n >= 10000 ? 2000 : n / 5, n1 = (n - incr) / 5;
    n1 -= n1 % DOC_CHUNKS;
    const char *tv = getenv("BENCH_TSV"); /* server: every tsvector by the trigger */
    struct load l1 = {.url = argv[1], .d = &d, .coll = c.id, .tag = "bench://doc",
                      .from = 0, .to = n1, .jobs = 1, .gin_flush = GIN_FLUSH("kanoa.chunks"),
                      .tsv = tv && strcmp(tv, "server") == 0 ? TSV_SERVER : TSV_CLIENT};
    load_docs(db, &l1);
    print_load("rag load into kanoa.chunks, 1 connection", &l1, ref);
    struct load lj = l1;
    lj.from = n1;
    lj.to = n - incr;
    lj.jobs = jobs;
    load_docs(db, &lj);
    char what[96];
    snprintf(what, sizeof what, "rag load into kanoa.chunks, %d connections", lj.jobs);
    print_load(what, &lj, ref);
    if (getenv("BENCH_LOAD_ONLY")) { /* the loads only: no index, no queries */
        data_free(&d);
        rag_close(db);
        km_free(proj);
        return 0;
    }
    double t0 = rag__now();
    if (rag_collection_index(db, &c, &e) != KM_OK)
        die(&e);
    double t_idx = rag__now() - t0;
    printf("HNSW build of %ld rows (m 16, ef_construction 64): %.1f s\n", n - incr, t_idx);
    struct load li = lj;
    li.from = n - incr;
    li.to = n;
    load_docs(db, &li);
    snprintf(what, sizeof what, "incremental load into the HNSW, %d connections", li.jobs);
    print_load(what, &li, ref);
    data_free(&d);
    rag_exec(db, "ANALYZE kanoa.chunks", &e);
    queries(db, &c, nq);
    rag_close(db);
    km_free(proj);
    return 0;
}
