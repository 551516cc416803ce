/* bench_retrieve.c - step 5 of bench_rag (see bench_rag.c's head): POST
 * /v1/retrieve of a running `kanoa-mlops serve` against the bare SQL with
 * the same query vectors, and where the CPU of the difference goes. */
#include "base/mem.h"
#include "rag/rag.h"
#include "rag/rag_int.h"

#include "bench_rag.h"

#include <curl/curl.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- POST /v1/retrieve against the bare SQL (step 5) -------------------- */

struct http {
    CURL *c;
    struct curl_slist *h;
    struct km_buf body;
    char base[64];
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    return km_buf_append(ud, p, size * n) == KM_OK ? size * n : 0;
}

static void http_init(struct http *h, int port)
{
    h->c = curl_easy_init();
    h->h = curl_slist_append(NULL, "Content-Type: application/json");
    km_buf_init(&h->body, 16u << 20);
    snprintf(h->base, sizeof h->base, "http://127.0.0.1:%d", port);
    curl_easy_setopt(h->c, CURLOPT_HTTPHEADER, h->h);
    curl_easy_setopt(h->c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h->c, CURLOPT_WRITEDATA, &h->body);
    curl_easy_setopt(h->c, CURLOPT_TCP_NODELAY, 1L);
}

static void http_free(struct http *h)
{
    curl_slist_free_all(h->h);
    curl_easy_cleanup(h->c);
    km_buf_free(&h->body);
}

/* POST json to path over the kept-alive connection; seconds taken. */
static double post(struct http *h, const char *path, const char *json)
{
    char url[128];
    long status = 0;
    snprintf(url, sizeof url, "%s%s", h->base, path);
    km_buf_reset(&h->body);
    curl_easy_setopt(h->c, CURLOPT_URL, url);
    curl_easy_setopt(h->c, CURLOPT_POSTFIELDS, json);
    double t0 = rag__now();
    CURLcode cc = curl_easy_perform(h->c);
    double t = rag__now() - t0;
    curl_easy_getinfo(h->c, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK || status != 200) {
        fprintf(stderr, "bench_rag: POST %s: %s, HTTP %ld: %.300s\n", url,
                curl_easy_strerror(cc), status, km_buf_str(&h->body));
        exit(1);
    }
    return t;
}

/* data[0].embedding of an embeddings reply into q (dim floats). */
static void reply_vector(const struct http *h, float *q, int dim)
{
    json_t *root = json_loads(km_buf_str(&h->body), 0, NULL);
    json_t *e = json_object_get(json_array_get(json_object_get(root, "data"), 0), "embedding");
    if (json_array_size(e) != (size_t)dim) {
        fprintf(stderr, "bench_rag: the embedding has %zu dims, not %d\n", json_array_size(e), dim);
        exit(1);
    }
    for (int j = 0; j < dim; j++)
        q[j] = (float)json_number_value(json_array_get(e, (size_t)j));
    json_decref(root);
}

static void print_pct(const char *what, double *v, int n)
{
    printf("  %-34s p50 %6.2f ms  p90 %6.2f ms  p99 %6.2f ms\n", what,
           1e3 * pct(v, n, 0.5), 1e3 * pct(v, n, 0.9), 1e3 * pct(v, n, 0.99));
}

#define MAX_POOL 16

/* The pids of every other client backend of this database: the server's
 * pooled connections (the cluster is the benchmark's own). Read once after
 * the warm-up, so connections that come and go later do not count. */
static int pool_pids(struct rag_db *db, int *pids)
{
    struct km_err e;
    struct rag__res r;
    if (rag__query(db, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
                       " AND pid <> pg_backend_pid() AND datname = current_database()",
                   0, NULL, &r, &e) != KM_OK)
        die(&e);
    int n = r.ntuples < MAX_POOL ? r.ntuples : MAX_POOL;
    for (int i = 0; i < n; i++)
        pids[i] = atoi(rag__val(&r, i, 0));
    rag__res_free(&r);
    return n;
}

static int pool_pid[MAX_POOL], n_pool;

/* CPU seconds of task tid of process pid from its schedstat (ns, not
 * clock ticks: one thread or one single-threaded backend). */
static double task_cpu(int pid, int tid)
{
    char path[96];
    unsigned long long ns = 0;
    snprintf(path, sizeof path, "/proc/%d/task/%d/schedstat", pid, tid);
    FILE *f = fopen(path, "r");
    if (f && fscanf(f, "%llu", &ns) != 1)
        ns = 0;
    if (f)
        fclose(f);
    return (double)ns / 1e9;
}

static double cpu_of_pool(void)
{
    double s = 0;
    for (int i = 0; i < n_pool; i++)
        s += task_cpu(pool_pid[i], pool_pid[i]);
    return s;
}

/* CPU seconds of the server's HTTP threads (the event loops named
 * kanoa-http: they parse, submit, run retrieve's query and write the
 * replies; a local model runs on a thread of its own). */
static double cpu_of_http(int pid)
{
    char path[96], comm[32];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = pid ? opendir(path) : NULL;
    double s = 0;
    for (struct dirent *t = d ? readdir(d) : NULL; t; t = readdir(d)) {
        int tid = atoi(t->d_name);
        snprintf(path, sizeof path, "/proc/%d/task/%d/comm", pid, tid);
        FILE *f = tid > 0 ? fopen(path, "r") : NULL;
        bool http = f && fgets(comm, sizeof comm, f) && strcmp(comm, "kanoa-http\n") == 0;
        if (f)
            fclose(f);
        s += http ? task_cpu(pid, tid) : 0;
    }
    if (d)
        closedir(d);
    return s;
}

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* embeddings, bare SQL, retrieve, retrieve's query here, the same right
 * after a POST /v1/embeddings (the model's run between two queries, as in
 * retrieve) */
enum { PH_EMB, PH_SQL, PH_RET, PH_LIB, PH_LIBM, N_PH };

struct phase {
    double wall[N_PH][4096]; /* per query */
    /* CPU seconds summed per phase: the server process (clock ticks), its
     * HTTP threads, its pooled backends, our backend, this thread */
    double serve[N_PH], http[N_PH], pool[N_PH], self[N_PH], here[N_PH];
    int serve_pid, my_pid;
};

static char *json_body(const struct rag_collection *c, const char *text, bool retrieve)
{
    json_t *o = retrieve ? json_pack("{s:s, s:s, s:i}", "collection", c->name, "query", text, "k", 10)
                         : json_pack("{s:s, s:s}", "model", c->embed_model, "input", text);
    char *b = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return b;
}

/* What retrieve runs after the embedding, here on our connection: the
 * query's pipeline and the hits as JSON; *cpu += this thread's CPU. */
static double lib_query(struct rag_db *db, const struct rag_collection *c, const float *q,
                        double *cpu)
{
    struct km_err e;
    struct rag_hits h;
    struct km_buf b;
    km_buf_init(&b, 1u << 20);
    struct rag_query rq = {.collection = c->name, .text = "", .vec = q, .dim = c->dim,
                           .k = 10, .mode = RAG_MODE_VECTOR, .embed_model = c->embed_model};
    double t0 = rag__now(), c0 = thread_cpu();
    if (rag_query_run(db, &rq, &h, &e) != KM_OK || rag_hits_json_buf(&h, &b, &e) != KM_OK)
        die(&e);
    double t = rag__now() - t0;
    *cpu += thread_cpu() - c0;
    rag_hits_free(&h);
    km_buf_free(&b);
    return t;
}

/* One phase for queries [from, to): embeddings (keeps the vectors), the
 * bare SQL with them, retrieve, lib_query, or an embeddings request then
 * lib_query; the CPU counters are read around it and added up per phase
 * (this thread's: around lib_query only). */
static void run_phase(int ph, struct rag_db *db, const struct rag_collection *c, struct http *h,
                      int from, int to, float *vecs, struct phase *out)
{
    int sp = out->serve_pid;
    double s0 = sp ? cpu_of(sp) : 0, h0 = cpu_of_http(sp), p0 = cpu_of_pool();
    double m0 = task_cpu(out->my_pid, out->my_pid);
    char text[128];
    for (int i = from; i < to; i++) {
        snprintf(text, sizeof text, "query %d about vector index recall latency", i);
        float *q = vecs + (size_t)i * (size_t)c->dim;
        char *b = ph == PH_SQL || ph == PH_LIB ? NULL : json_body(c, text, ph == PH_RET);
        if (ph == PH_LIBM)
            post(h, "/v1/embeddings", b);
        if (ph == PH_SQL || ph == PH_LIB || ph == PH_LIBM) {
            out->wall[ph][i] = ph == PH_SQL ? raw_query(db, c, q) : lib_query(db, c, q, &out->here[ph]);
            free(b);
            continue;
        }
        out->wall[ph][i] = post(h, ph == PH_RET ? "/v1/retrieve" : "/v1/embeddings", b);
        free(b);
        if (ph == PH_EMB)
            reply_vector(h, q, c->dim);
    }
    out->serve[ph] += sp ? cpu_of(sp) - s0 : 0;
    out->http[ph] += cpu_of_http(sp) - h0;
    out->pool[ph] += cpu_of_pool() - p0;
    out->self[ph] += task_cpu(out->my_pid, out->my_pid) - m0;
}

/* The CPU table and where retrieve's added work goes (ms per request). */
static void print_breakdown(const struct phase *p, int nq)
{
    double k = 1e3 / nq;
    double emb = p->serve[PH_EMB] * k, ret = p->serve[PH_RET] * k, sql = p->self[PH_SQL] * k;
    double he = p->http[PH_EMB] * k, hr = p->http[PH_RET] * k, pool = p->pool[PH_RET] * k;
    printf("  CPU per request, ms (server process: /proc clock ticks; threads, backends: ns):\n"
           "    embeddings: server %.3f = HTTP threads %.3f + other threads (the model) %.3f\n"
           "    bare SQL:   our backend %.3f\n"
           "    retrieve:   server %.3f = HTTP threads (the model runs there) %.3f + other"
           " threads %.3f; pooled backend %.3f\n",
           emb, he, emb - he, sql, ret, hr, ret - hr, pool);
    printf("  CPU retrieve - embeddings - bare SQL = %.3f ms per request = server %.3f +"
           " database %.3f (pooled backend - ours; clock tick %.0f ms / %d requests)\n",
           ret + pool - emb - sql, ret - emb, pool - sql, 1e3 / (double)sysconf(_SC_CLK_TCK), nq);
    printf("  retrieve's query + hits JSON run here (rag_query_run + rag_hits_json_buf): client"
           " %.3f ms (libpq pipeline, hits, JSON); our backend %.3f ms = bare SQL %+.3f"
           " (collection check, JOIN documents, metadata; prepared with a binary vector vs"
           " planned with a text one)\n", p->here[PH_LIB] * k, p->self[PH_LIB] * k,
           (p->self[PH_LIB] - p->self[PH_SQL]) * k);
    printf("  the same, each right after a POST /v1/embeddings (the model runs between two"
           " queries, as in retrieve): our backend %.3f ms = bare SQL %+.3f (caches the"
           " model took)\n", p->self[PH_LIBM] * k, (p->self[PH_LIBM] - p->self[PH_SQL]) * k);
    printf("  so the database part %+.3f = that cache effect %+.3f + pooled backend - the same"
           " SQL after the model here %+.3f\n", pool - sql, (p->self[PH_LIBM] - p->self[PH_SQL]) * k,
           pool - p->self[PH_LIBM] * k);
}

void retrieve_vs_sql(struct rag_db *db, const struct rag_collection *c, int nq, int port)
{
    struct km_err e;
    struct rag__res r;
    struct http h;
    char sql_ef[64];
    const char *sp = getenv("BENCH_SERVE_PID");
    nq = nq > 4096 ? 4096 : nq;
    float *vecs = km_calloc((size_t)nq * (size_t)c->dim, sizeof(float));
    struct phase *p = km_calloc(1, sizeof *p);
    p->serve_pid = sp ? atoi(sp) : 0;
    snprintf(sql_ef, sizeof sql_ef, "SET hnsw.ef_search = %d", RAG_DEFAULT_EF_SEARCH);
    if (rag_exec(db, sql_ef, &e) != KM_OK ||
        rag__query(db, "SELECT pg_backend_pid()", 0, NULL, &r, &e) != KM_OK)
        die(&e);
    p->my_pid = atoi(rag__val(&r, 0, 0));
    rag__res_free(&r);
    http_init(&h, port);
    char *warm = json_body(c, "warm up: open the server's pooled connection", true);
    for (int i = 0; i < 10; i++) /* and past the 5 custom plans */
        post(&h, "/v1/retrieve", warm);
    free(warm);
    n_pool = pool_pids(db, pool_pid);
    /* blocks of 20 queries, the phases interleaved (SQL, retrieve and the
     * library's query take turns going first), so a machine whose load
     * drifts weighs on all */
    for (int from = 0, round = 0; from < nq; from += 20, round++) {
        int to = from + 20 < nq ? from + 20 : nq;
        run_phase(PH_EMB, db, c, &h, from, to, vecs, p);
        for (int j = 0; j < 4; j++)
            run_phase(PH_SQL + (round + j) % 4, db, c, &h, from, to, vecs, p);
    }
    printf("POST /v1/retrieve vs the bare SQL, the same %d query vectors, k 10, ef_search %d:\n",
           nq, RAG_DEFAULT_EF_SEARCH);
    print_pct("POST /v1/embeddings (model bench)", p->wall[PH_EMB], nq);
    print_pct("bare SQL", p->wall[PH_SQL], nq);
    print_pct("POST /v1/retrieve", p->wall[PH_RET], nq);
    print_pct("rag_query_run + JSON, here", p->wall[PH_LIB], nq);
    printf("  wall p50: retrieve - embeddings - bare SQL = %.2f ms\n",
           1e3 * (pct(p->wall[PH_RET], nq, 0.5) - pct(p->wall[PH_EMB], nq, 0.5) -
                  pct(p->wall[PH_SQL], nq, 0.5)));
    if (p->serve_pid)
        print_breakdown(p, nq);
    http_free(&h);
    km_free(vecs);
    km_free(p);
}
