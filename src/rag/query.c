/* query.c - top-k retrieval: vector (HNSW cosine), text (ts_rank) and
 * hybrid (reciprocal rank fusion of both, computed here in C).
 *
 * Each query is one libpq pipeline (one round trip): the session's
 * hnsw.ef_search when it changes, hnsw.iterative_scan = strict_order when a
 * metadata filter may reject most index candidates (pgvector 0.8 iterative
 * scans still return k rows, in exact distance order), a check of the
 * cached collection row, and the candidate queries (vector mode without a
 * filter as a prepared statement). The ORDER BY uses the same expression as the
 * collection's partial index, `embedding::vector(N) <=> $1::vector(N)`.
 * Scores are 0..1 similarities: 1 - cosine distance clamped to [0,1]; in
 * text mode ts_rank/(1+ts_rank). Hybrid hits keep the cosine score and carry
 * the RRF value in rank_score.
 */
#include "rag/rag_int.h"

#include "base/mem.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_K 1000
#define HYBRID_MIN_CANDIDATES 40

/* ---- filters, modes, RRF ------------------------------------------------ */

void rag_filter_init(struct rag_filter *f)
{
    f->json = NULL;
    f->n = 0;
}

void rag_filter_free(struct rag_filter *f)
{
    km_free(f->json);
    f->json = NULL;
    f->n = 0;
}

int rag_filter_set(struct rag_filter *f, const char *key, const char *value,
                   struct km_err *err)
{
    if (!key[0])
        return km_fail(err, KM_EINVAL, "filter key must not be empty");
    json_t *o = f->json ? json_loads(f->json, 0, NULL) : json_object();
    json_t *old = o ? json_object_get(o, key) : NULL;
    int rc = KM_OK;
    if (!o)
        rc = km_fail(err, KM_ENOMEM, "out of memory parsing a filter");
    else if (old && strcmp(json_string_value(old), value) != 0)
        rc = km_fail(err, KM_EINVAL, "filter key '%s' given twice with different values", key);
    else if (json_object_set_new(o, key, json_string(value)) != 0)
        rc = km_fail(err, KM_EINVAL, "filter key and value must be UTF-8");
    char *s = rc == KM_OK ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (rc == KM_OK && !s)
        rc = km_fail(err, KM_ENOMEM, "out of memory parsing a filter");
    if (rc == KM_OK) {
        km_free(f->json);
        f->json = km_strdup(s);
        f->n = json_object_size(o);
        if (!f->json)
            rc = km_fail(err, KM_ENOMEM, "out of memory parsing a filter");
    }
    free(s);
    json_decref(o);
    return rc;
}

int rag_filter_add(struct rag_filter *f, const char *kv, struct km_err *err)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return km_fail(err, KM_EINVAL, "filter '%s': expected key=value", kv);
    char *key = km_strndup(kv, (size_t)(eq - kv));
    int rc = key ? rag_filter_set(f, key, eq + 1, err)
                 : km_fail(err, KM_ENOMEM, "out of memory parsing a filter");
    km_free(key);
    return rc;
}

int rag_parse_mode(const char *s, enum rag_mode *out)
{
    if (strcmp(s, "vector") == 0)
        *out = RAG_MODE_VECTOR;
    else if (strcmp(s, "text") == 0)
        *out = RAG_MODE_TEXT;
    else if (strcmp(s, "hybrid") == 0)
        *out = RAG_MODE_HYBRID;
    else
        return KM_EINVAL;
    return KM_OK;
}

const char *rag_mode_name(enum rag_mode m)
{
    return m == RAG_MODE_TEXT ? "text" : m == RAG_MODE_HYBRID ? "hybrid" : "vector";
}

double rag_rrf(int k, int rank_a, int rank_b)
{
    double s = 0.0;
    if (rank_a > 0)
        s += 1.0 / (double)(k + rank_a);
    if (rank_b > 0)
        s += 1.0 / (double)(k + rank_b);
    return s;
}

static void hit_free(struct rag_hit *h)
{
    km_free(h->text);
    km_free(h->source_uri);
    km_free(h->chunk_id);
    km_free(h->metadata);
    memset(h, 0, sizeof *h);
}

void rag_hits_free(struct rag_hits *h)
{
    for (size_t i = 0; h && i < h->n; i++)
        hit_free(&h->v[i]);
    if (h) {
        km_free(h->v);
        h->v = NULL;
        h->n = 0;
    }
}

/* ---- SQL building ------------------------------------------------------- */

struct sql {
    struct km_buf b;
    const char *p[8];
    int len[8];     /* bytes of a binary parameter, 0 for text */
    int fmt[8];     /* 1 = binary, 0 = text */
    int n;
};

static int param(struct sql *s, const char *v)
{
    s->len[s->n] = 0;
    s->fmt[s->n] = 0;
    s->p[s->n++] = v;
    return s->n;
}

static int param_bin(struct sql *s, const char *v, int len)
{
    s->len[s->n] = len;
    s->fmt[s->n] = 1;
    s->p[s->n++] = v;
    return s->n;
}

/* The query vector in pgvector's binary form (vector_recv: uint16 dim,
 * uint16 0, dim big-endian float4): 4 + 4 * dim bytes, no text to format
 * on our side nor to parse on the server's. */
static char *vector_binary(const float *v, int dim)
{
    unsigned char *b = km_malloc(4 + 4 * (size_t)dim);
    if (!b)
        return NULL;
    b[0] = (unsigned char)(dim >> 8);
    b[1] = (unsigned char)dim;
    b[2] = b[3] = 0;
    for (int i = 0; i < dim; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        b[4 + 4 * i] = (unsigned char)(u >> 24);
        b[5 + 4 * i] = (unsigned char)(u >> 16);
        b[6 + 4 * i] = (unsigned char)(u >> 8);
        b[7 + 4 * i] = (unsigned char)u;
    }
    return (char *)b;
}

/* Words of the query joined with " or " for websearch_to_tsquery: any hit
 * on one term counts (the ranking orders by how many and how often). */
static char *or_words(const char *q)
{
    struct km_buf b;
    km_buf_init(&b, strlen(q) * 4 + 8);
    int rc = KM_OK;
    for (const char *s = q; *s && rc == KM_OK;) {
        while (*s && !(isalnum((unsigned char)*s) || (unsigned char)*s >= 0x80))
            s++;
        const char *w = s;
        while (*s && (isalnum((unsigned char)*s) || (unsigned char)*s >= 0x80))
            s++;
        if (s > w)
            rc = km_buf_printf(&b, "%s%.*s", b.len ? " or " : "", (int)(s - w), w);
    }
    if (rc != KM_OK) {
        km_buf_free(&b);
        return NULL;
    }
    return b.len ? km_buf_take(&b, NULL) : (km_buf_free(&b), km_strdup(""));
}

/* Candidate query. With text: rank by ts_rank, else by distance. */
static int build(struct sql *s, const struct rag_collection *c, const char *vec,
                 const char *words, const char *filter, int limit)
{
    bool text = words != NULL;
    int rc = km_buf_printf(&s->b,
        "SELECT h.id, h.text, d.source_uri, h.chunk_id, h.metadata::text, h.dist, h.rank"
        " FROM (SELECT c.id, c.document_id, c.text, c.chunk_id, c.metadata, ");
    if (rc == KM_OK && vec)
        rc = km_buf_printf(&s->b, "c.embedding::vector(%d) <=> $%d::vector(%d) AS dist, ",
                           c->dim, param_bin(s, vec, 4 + 4 * c->dim), c->dim);
    else if (rc == KM_OK)
        rc = km_buf_puts(&s->b, "-1::float8 AS dist, ");
    if (rc == KM_OK && text)
        rc = km_buf_printf(&s->b, "ts_rank(c.tsv, q) AS rank FROM kanoa.chunks c,"
                           " websearch_to_tsquery('english', $%d) q WHERE c.tsv @@ q AND ",
                           param(s, words));
    else if (rc == KM_OK)
        rc = km_buf_puts(&s->b, "0::real AS rank FROM kanoa.chunks c WHERE ");
    if (rc == KM_OK)
        rc = km_buf_printf(&s->b, "c.collection_id = %lld", c->id);
    if (rc == KM_OK && filter)
        rc = km_buf_printf(&s->b, " AND c.metadata @> $%d::jsonb", param(s, filter));
    if (rc == KM_OK)
        rc = km_buf_printf(&s->b, " ORDER BY %s LIMIT %d) h"
                           " JOIN kanoa.documents d ON d.id = h.document_id ORDER BY %s",
                           /* ORDER BY the distance alone, so the HNSW index serves it */
                           text ? "rank DESC, c.id" : "dist", limit,
                           text ? "h.rank DESC, h.id" : "h.dist, h.id");
    return rc;
}

/* ---- running ------------------------------------------------------------ */

static double clamp01(double x)
{
    return x < 0.0 ? 0.0 : x > 1.0 ? 1.0 : x;
}

static int fill_hits(const struct rag__res *r, bool text_rank, struct rag_hits *out)
{
    out->v = r->ntuples ? km_calloc((size_t)r->ntuples, sizeof *out->v) : NULL;
    out->n = 0;
    if (r->ntuples && !out->v)
        return KM_ENOMEM;
    for (int i = 0; i < r->ntuples; i++) {
        struct rag_hit *h = &out->v[out->n++];
        h->row = atoll(rag__val(r, i, 0));
        h->text = km_strdup(rag__val(r, i, 1));
        h->source_uri = km_strdup(rag__val(r, i, 2));
        h->chunk_id = km_strdup(rag__val(r, i, 3));
        h->metadata = km_strdup(rag__val(r, i, 4));
        h->distance = atof(rag__val(r, i, 5));
        double rank = atof(rag__val(r, i, 6));
        h->score = text_rank ? rank / (1.0 + rank) : clamp01(1.0 - h->distance);
        h->rank_score = h->score;
        if (!h->text || !h->source_uri || !h->chunk_id || !h->metadata)
            return KM_ENOMEM;
    }
    return KM_OK;
}

/* One candidate query, built but not yet run. */
struct cand {
    struct sql s;
    int limit;
    char *words;    /* text mode: the OR-ed words; "" = nothing to match */
    bool text;
};

static int cand_build(struct cand *cd, const struct rag_collection *c,
                      const struct rag_query *q, const char *vec, bool text, int limit)
{
    memset(cd, 0, sizeof *cd);
    km_buf_init(&cd->s.b, 8192);
    cd->text = text;
    cd->limit = limit;
    cd->words = text ? or_words(q->text) : NULL;
    if (text && !cd->words)
        return KM_ENOMEM;
    return build(&cd->s, c, vec, cd->words,
                 q->filter && q->filter->n ? q->filter->json : NULL, limit);
}

static bool cand_empty(const struct cand *cd)
{
    return cd->text && !cd->words[0];
}

static void cand_free(struct cand *cd)
{
    km_buf_free(&cd->s.b);
    km_free(cd->words);
}

static int cmp_fused(const void *a, const void *b)
{
    const struct rag_hit *x = a, *y = b;
    if (x->rank_score != y->rank_score)
        return x->rank_score > y->rank_score ? -1 : 1;
    if (x->distance != y->distance)
        return x->distance < y->distance ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

/* Fuse vector list `v` and text list `t` (both best first) into `out`:
 * every distinct row once, rank_score = RRF, best first, at most k. The
 * hits are moved out of v and t. */
static int fuse(struct rag_hits *v, struct rag_hits *t, int k, struct rag_hits *out)
{
    out->v = km_calloc(v->n + t->n + 1, sizeof *out->v);
    out->n = 0;
    if (!out->v)
        return KM_ENOMEM;
    for (size_t i = 0; i < v->n; i++) {
        v->v[i].rank_score = rag_rrf(RAG_RRF_K, (int)i + 1, 0);
        out->v[out->n++] = v->v[i];
    }
    v->n = 0;
    for (size_t j = 0; j < t->n; j++) {
        size_t i = 0;
        while (i < out->n && out->v[i].row != t->v[j].row)
            i++;
        if (i < out->n) {
            out->v[i].rank_score += rag_rrf(RAG_RRF_K, 0, (int)j + 1);
            hit_free(&t->v[j]);
            continue;
        }
        t->v[j].rank_score = rag_rrf(RAG_RRF_K, 0, (int)j + 1);
        out->v[out->n++] = t->v[j];
    }
    t->n = 0;
    qsort(out->v, out->n, sizeof *out->v, cmp_fused);
    while (out->n > (size_t)k)
        hit_free(&out->v[--out->n]);
    return KM_OK;
}

#ifdef KM_UNITTEST
int rag__fuse(struct rag_hits *v, struct rag_hits *t, int k, struct rag_hits *out)
{
    return fuse(v, t, k, out);
}

char *rag__vector_binary(const float *v, int dim)
{
    return vector_binary(v, dim);
}
#endif

static int check_query(const struct rag_query *q, const struct rag_collection *c,
                       struct km_err *err)
{
    if (q->embed_model && q->mode != RAG_MODE_TEXT &&
        (strcmp(q->embed_model, c->embed_model) != 0 || q->dim != c->dim))
        return km_fail(err, KM_ESTATE, "collection '%s' now holds embeddings of model "
                       "'%s' (dim %d), not '%s' (dim %d)", c->name, c->embed_model, c->dim,
                       q->embed_model, q->dim);
    if (q->k < 1 || q->k > MAX_K)
        return km_fail(err, KM_EINVAL, "k must be 1..%d (got %d)", MAX_K, q->k);
    if (q->mode != RAG_MODE_TEXT && !q->vec)
        return km_fail(err, KM_EINVAL, "%s mode needs a query embedding", rag_mode_name(q->mode));
    if (q->mode != RAG_MODE_TEXT && q->dim != c->dim)
        return km_fail(err, KM_EINVAL, "query embedding has dimension %d but collection "
                       "'%s' has %d (model '%s')", q->dim, c->name, c->dim, c->embed_model);
    return KM_OK;
}

#define MAX_STMTS 10

/* The SETs a query needs on the session (hnsw.ef_search, and iterative
 * scans only when a filter may reject index candidates or more rows than
 * ef_search are asked for: otherwise the first ef_search candidates hold
 * the answer and the scan's bookkeeping is wasted). A pooled connection
 * keeps them, so most queries send none. */
static void session_sets(struct rag_db *db, const struct rag_query *q, int most,
                         char *ef_sql, size_t cap, struct rag__stmt *st, int *n,
                         int *ef, int *iter)
{
    int e = q->ef_search > 0 ? q->ef_search : RAG_DEFAULT_EF_SEARCH;
    *ef = e > 1000 ? 1000 : e;
    *iter = (q->filter && q->filter->n) || most > *ef;
    if (rag__session_ef(db) != *ef) {
        snprintf(ef_sql, cap, "SET hnsw.ef_search = %d", *ef);
        st[(*n)++] = (struct rag__stmt){ef_sql, 0, NULL, false, NULL, NULL};
    }
    if (rag__session_iterative(db) != *iter)
        st[(*n)++] = (struct rag__stmt){*iter ? "SET hnsw.iterative_scan = strict_order"
                                              : "SET hnsw.iterative_scan = off", 0, NULL, false, NULL, NULL};
}

/* The session knobs, a check that collection c is still what we think it
 * is, and the candidate queries: one pipeline, one round trip. --exact
 * wraps them in BEGIN .. COMMIT with SET LOCALs that turn index scans off.
 * The candidate query of vector mode without a filter is a prepared
 * statement (its plan does not depend on the vector); with text or a
 * filter the plan depends on the values (selectivity), so those are
 * planned per query. res[i] gets candidate i's rows; *stale is set when
 * the check failed. */
static int run_pipeline(struct rag_db *db, const struct rag_collection *c,
                        const struct rag_query *q, struct cand *cd, int n_cd,
                        struct rag__res *res, bool *stale, struct km_err *err)
{
    char ef_sql[64], id[24], dim[16];
    snprintf(id, sizeof id, "%lld", c->id);
    snprintf(dim, sizeof dim, "%d", c->dim);
    const char *chk[2] = {id, dim};
    struct rag__stmt st[MAX_STMTS];
    struct rag__res r[MAX_STMTS];
    int n = 0, check_at, at[2] = {-1, -1}, most = 0, ef, iter;
    bool filtered = q->filter && q->filter->n;
    for (int i = 0; i < n_cd; i++)
        most = cd[i].limit > most ? cd[i].limit : most;
    session_sets(db, q, most, ef_sql, sizeof ef_sql, st, &n, &ef, &iter);
    if (q->exact) {
        st[n++] = (struct rag__stmt){"BEGIN", 0, NULL, false, NULL, NULL};
        st[n++] = (struct rag__stmt){"SET LOCAL enable_indexscan = off", 0, NULL, false, NULL, NULL};
        st[n++] = (struct rag__stmt){"SET LOCAL enable_bitmapscan = off", 0, NULL, false, NULL, NULL};
    }
    check_at = n;
    st[n++] = (struct rag__stmt){"SELECT 1 FROM kanoa.collections WHERE id = $1::bigint"
                                 " AND dim = $2::int", 2, chk, true, NULL, NULL};
    for (int i = 0; i < n_cd; i++) {
        if (cand_empty(&cd[i]))
            continue;
        at[i] = n;
        st[n++] = (struct rag__stmt){km_buf_str(&cd[i].s.b), cd[i].s.n, cd[i].s.p,
                                     !cd[i].text && !filtered && !q->exact,
                                     cd[i].s.len, cd[i].s.fmt};
    }
    if (q->exact)
        st[n++] = (struct rag__stmt){"COMMIT", 0, NULL, false, NULL, NULL};
    int rc = rag__pipeline(db, st, n, r, err);
    if (rc != KM_OK)
        return rc;
    rag__session_set(db, ef, iter);
    *stale = r[check_at].ntuples != 1;
    for (int i = 0; i < n; i++) {
        bool keep = i == at[0] || i == at[1];
        if (keep)
            res[i == at[0] ? 0 : 1] = r[i];
        else
            rag__res_free(&r[i]);
    }
    return KM_OK;
}

/* Build, run and turn into hits (fused in hybrid mode). */
static int run_all(struct rag_db *db, const struct rag_collection *c,
                   const struct rag_query *q, const char *vec, struct rag_hits *out,
                   bool *stale, struct km_err *err)
{
    bool hybrid = q->mode == RAG_MODE_HYBRID;
    int cand = q->k * 2 < HYBRID_MIN_CANDIDATES ? HYBRID_MIN_CANDIDATES : q->k * 2;
    struct cand cd[2];
    struct rag__res res[2] = {{0}, {0}};
    struct rag_hits h[2] = {{0}, {0}};
    int n_cd = hybrid ? 2 : 1, rc = KM_OK;
    for (int i = 0; i < n_cd; i++) {
        bool text = hybrid ? i == 1 : q->mode == RAG_MODE_TEXT;
        int r2 = cand_build(&cd[i], c, q, vec, text, hybrid ? cand : q->k);
        rc = rc == KM_OK ? r2 : rc;
    }
    if (rc != KM_OK)
        rc = km_fail(err, KM_ENOMEM, "out of memory building a query");
    if (rc == KM_OK)
        rc = run_pipeline(db, c, q, cd, n_cd, res, stale, err);
    for (int i = 0; rc == KM_OK && i < n_cd; i++)
        if (fill_hits(&res[i], cd[i].text && !vec, &h[i]) != KM_OK)
            rc = km_fail(err, KM_ENOMEM, "out of memory reading hits");
    if (rc == KM_OK && hybrid && fuse(&h[0], &h[1], q->k, out) != KM_OK)
        rc = km_fail(err, KM_ENOMEM, "out of memory fusing hits");
    if (rc == KM_OK && !hybrid) {
        *out = h[0];
        h[0] = (struct rag_hits){0};
    }
    for (int i = 0; i < n_cd; i++) {
        rag_hits_free(&h[i]);
        rag__res_free(&res[i]);
        cand_free(&cd[i]);
    }
    return rc;
}

/* The collection row: from the connection's cache, else looked up. */
static int lookup(struct rag_db *db, const struct rag_query *q, bool use_cache,
                  struct rag_collection *c, struct km_err *err)
{
    if (use_cache && rag__cache_get(db, q->collection, c))
        return KM_OK;
    km_err_clear(err);
    int rc = rag_collection_get(db, q->collection, c, err);
    if (rc == KM_OK)
        rag__cache_put(db, c);
    return rc;
}

int rag_query_run(struct rag_db *db, const struct rag_query *q,
                  struct rag_hits *out, struct km_err *err)
{
    out->v = NULL;
    out->n = 0;
    struct rag_collection c;
    bool stale = false;
    char *vec = NULL;
    int rc = KM_OK;
    if (q->mode != RAG_MODE_TEXT && q->vec) {
        vec = vector_binary(q->vec, q->dim);
        if (!vec)
            return km_fail(err, KM_ENOMEM, "out of memory formatting the query vector");
    }
    /* Pass 1 may use the cached row; when the check finds it stale (the
     * collection was dropped or recreated) pass 2 looks it up again. */
    bool ran = false;
    for (int pass = 0; pass < 2 && rc == KM_OK; pass++) {
        bool cached = pass == 0 && rag__cache_get(db, q->collection, &c);
        rc = cached ? KM_OK : lookup(db, q, false, &c, err);
        if (rc == KM_OK)
            rc = check_query(q, &c, err);
        if (rc != KM_OK && cached) { /* maybe the cached row is stale */
            rc = KM_OK;
            rag__cache_drop(db);
            continue;
        }
        ran = rc == KM_OK;
        if (rc == KM_OK)
            rc = run_all(db, &c, q, vec, out, &stale, err);
        if (rc == KM_OK && !stale)
            break;
        rag__cache_drop(db);
        if (rc == KM_OK)
            rag_hits_free(out);
        if (rc == KM_OK && pass == 1)
            rc = km_fail(err, KM_ENOTFOUND, "collection '%s' does not exist", q->collection);
    }
    if (rc != KM_OK && ran && q->exact)
        rag__rollback(db); /* a failed --exact pipeline leaves BEGIN open */
    km_free(vec);
    return rc;
}

/* ---- hits as JSON (written directly, byte for byte what jansson's
 * compact dump of the same objects gives) ---------------------------------- */

/* Bytes of the valid UTF-8 sequence at p (1-4), 0 when invalid (overlong
 * forms, surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *p)
{
    unsigned c = p[0];
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
             : (c & 0xF8) == 0xF0 ? 4 : 0;
    unsigned cp = n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    bool bad = (n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
               (n == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF);
    return n > 1 && bad ? 0 : n;
}

/* The escape of byte c (a quote, a backslash or a control character). */
static void escape_of(unsigned char c, char out[8])
{
    static const char hex[] = "0123456789ABCDEF";
    const char *named = c ? strchr("\"\\\b\f\n\r\t", c) : NULL;
    out[0] = '\\';
    if (named) {
        out[1] = "\"\\bfnrt"[named - "\"\\\b\f\n\r\t"];
        out[2] = '\0';
        return;
    }
    snprintf(out + 1, 7, "u00%c%c", hex[c >> 4], hex[c & 15]);
}

int rag_json_str(struct km_buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *run = p;
    int rc = km_buf_putc(b, '"');
    while (rc == KM_OK && *p) {
        if (*p >= 0x20 && *p != '"' && *p != '\\') {
            size_t n = *p < 0x80 ? 1 : utf8_seq(p);
            if (n == 0)
                return KM_EINVAL;
            p += n;
            continue;
        }
        char esc[8];
        escape_of(*p, esc);
        rc = km_buf_append(b, run, (size_t)(p - run));
        if (rc == KM_OK)
            rc = km_buf_puts(b, esc);
        run = ++p;
    }
    if (rc == KM_OK)
        rc = km_buf_append(b, run, (size_t)(p - run));
    return rc == KM_OK ? km_buf_putc(b, '"') : rc;
}

/* A finite double as jansson writes a real: %.17g, ".0" when it looks
 * like an integer, no '+' nor leading zeros in the exponent. */
static int put_real(struct km_buf *b, double v)
{
    char t[48];
    int n = snprintf(t, sizeof t - 3, "%.17g", v);
    if (!strchr(t, '.') && !strchr(t, 'e'))
        memcpy(t + n, ".0", 3);
    char *e = strchr(t, 'e');
    if (e) {
        char *from = e + 1 + (e[1] == '-'), *to = from;
        while (*to == '+' || *to == '0')
            to++;
        memmove(from, to, strlen(to) + 1);
    }
    return km_buf_puts(b, t);
}

/* A metadata object as stored (PostgreSQL's jsonb text: valid JSON, keys
 * in its order) without the blanks between tokens and with \u escapes in
 * capitals: what parsing it and writing it compactly gives, without the
 * parse. Anything but an object -> {}. */
static int put_compact(struct km_buf *b, const char *j)
{
    if (!j || j[0] != '{')
        return km_buf_puts(b, "{}");
    int rc = km_buf_reserve(b, strlen(j));
    bool in_str = false;
    for (const char *p = j; rc == KM_OK && *p; p++) {
        char c = *p;
        if (!in_str && (c == ' ' || c == '\n' || c == '\t' || c == '\r'))
            continue;
        in_str = c == '"' ? !in_str : in_str;
        b->data[b->len++] = c;
        if (!in_str || c != '\\' || !p[1])
            continue;
        c = *++p; /* the escaped character */
        b->data[b->len++] = c;
        for (int i = 0, u = c == 'u'; u && i < 4 && p[1]; i++) {
            c = *++p;
            b->data[b->len++] = c >= 'a' && c <= 'f' ? (char)(c - 'a' + 'A') : c;
        }
    }
    if (rc == KM_OK)
        b->data[b->len] = '\0';
    return rc;
}

static int hit_json(struct km_buf *b, const struct rag_hit *x)
{
    int rc = km_buf_puts(b, "{\"text\":");
    if (rc == KM_OK)
        rc = rag_json_str(b, x->text);
    if (rc == KM_OK)
        rc = km_buf_puts(b, ",\"score\":");
    if (rc == KM_OK)
        rc = put_real(b, x->score);
    if (rc == KM_OK)
        rc = km_buf_puts(b, ",\"source_uri\":");
    if (rc == KM_OK)
        rc = rag_json_str(b, x->source_uri);
    if (rc == KM_OK)
        rc = km_buf_puts(b, ",\"chunk_id\":");
    if (rc == KM_OK)
        rc = rag_json_str(b, x->chunk_id);
    if (rc == KM_OK)
        rc = km_buf_puts(b, ",\"metadata\":");
    if (rc == KM_OK)
        rc = put_compact(b, x->metadata);
    return rc == KM_OK ? km_buf_putc(b, '}') : rc;
}

int rag_hits_json_buf(const struct rag_hits *h, struct km_buf *b, struct km_err *err)
{
    int rc = km_buf_puts(b, "{\"data\":[");
    for (size_t i = 0; rc == KM_OK && i < h->n; i++) {
        if (!isfinite(h->v[i].score))
            return km_fail(err, KM_EFORMAT, "hit %zu has no score (%g)", i + 1, h->v[i].score);
        rc = i ? km_buf_putc(b, ',') : KM_OK;
        if (rc == KM_OK)
            rc = hit_json(b, &h->v[i]);
        if (rc == KM_EINVAL)
            return km_fail(err, KM_EFORMAT, "hit %zu: a field is not valid UTF-8", i + 1);
    }
    if (rc == KM_OK)
        rc = km_buf_puts(b, "]}");
    if (rc != KM_OK)
        return km_fail(err, rc, "no room writing hits as JSON (%zu bytes so far)", b->len);
    return KM_OK;
}

int rag_hits_json(const struct rag_hits *h, char **out, struct km_err *err)
{
    struct km_buf b;
    km_buf_init(&b, (size_t)1 << 30);
    *out = NULL;
    int rc = rag_hits_json_buf(h, &b, err);
    if (rc == KM_OK)
        *out = km_buf_take(&b, NULL);
    km_buf_free(&b);
    return rc;
}
