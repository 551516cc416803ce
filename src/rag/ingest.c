/* ingest.c - files -> chunks -> embeddings -> binary COPY, one document per
 * transaction.
 *
 * Per document: read (PDF through `pdftotext`), check UTF-8, hash (SHA-256
 * of the file bytes), skip when the stored hash is equal, chunk, embed the
 * first batch (this fixes the dimension and creates the collection on first
 * use), then BEGIN; take an advisory lock on (collection, source); delete
 * the old version; insert the document; COPY its chunks in binary while the
 * remaining batches are embedded; COMMIT. A crash or a lost connection
 * anywhere before COMMIT leaves the old version as it was (PostgreSQL rolls
 * the transaction back), and a rerun redoes that document. Batches of
 * o->batch chunks are embedded by an OpenAI-compatible endpoint (rag_embed)
 * or by the local engine (o->embedder, embedder.c).
 *
 * The collection's HNSW index is created at the end of a run when missing,
 * so the first bulk load into a new collection does not pay for
 * incremental index inserts.
 *
 * o->jobs workers (threads, one connection each; the first is the caller's)
 * take the sorted files in turn. A document's COMMIT does not wait for the
 * WAL flush; one synchronous commit after the files makes the run durable
 * before it is reported. With schema 2 chunks carry no foreign keys: their
 * document and collection ids come from the INSERT of the same transaction
 * (rag__doc_begin), and a trigger deletes them with their document.
 * With schema 4 each row carries its tsvector when the client computes it
 * (tsv.c, the same bytes as the server's to_tsvector('english', text));
 * a chunk it does not handle goes with tsv NULL and the table's insert
 * trigger computes it (every chunk, with KANOA_RAG_SERVER_TSV=1).
 */
#include "rag/rag_int.h"

#include "base/log.h"
#include "base/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define INGEST_MAX_FILE (64u << 20)  /* bytes of text per document */
#define INGEST_MAX_DEPTH 32
#define COPY_FLUSH (1u << 20)

void rag_ingest_opts_init(struct rag_ingest_opts *o)
{
    memset(o, 0, sizeof *o);
    o->chunk_tokens = 512;
    o->overlap = 64;
    o->batch = 32;
}

/* ---- file list ---------------------------------------------------------- */

struct files {
    char **v;
    size_t n, cap;
};

static int files_push(struct files *f, const char *path)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        char **v = km_realloc(f->v, cap * sizeof *v);
        if (!v)
            return KM_ENOMEM;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n] = km_strdup(path);
    return f->v[f->n++] ? KM_OK : KM_ENOMEM;
}

static void files_free(struct files *f)
{
    for (size_t i = 0; i < f->n; i++)
        km_free(f->v[i]);
    km_free(f->v);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int walk(const char *dir, int depth, struct files *f, struct km_err *err)
{
    if (depth > INGEST_MAX_DEPTH)
        return km_fail(err, KM_ERANGE, "folder %s: nested deeper than %d levels", dir, INGEST_MAX_DEPTH);
    DIR *d = opendir(dir);
    if (!d)
        return km_fail(err, KM_EIO, "folder %s: %s", dir, strerror(errno));
    int rc = KM_OK;
    for (struct dirent *e = readdir(d); e && rc == KM_OK; e = readdir(d)) {
        if (e->d_name[0] == '.')
            continue; /* ., .., and hidden files and folders (.git) */
        char path[PATH_MAX];
        struct stat st;
        bool pdf;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path)
            continue;
        if (stat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            rc = walk(path, depth + 1, f, err);
        else if (S_ISREG(st.st_mode) && rag_doc_kind_for(path, &pdf) >= 0)
            rc = files_push(f, path) == KM_OK ? KM_OK
                 : km_fail(err, KM_ENOMEM, "out of memory listing files");
    }
    closedir(d);
    return rc;
}

/* Absolute, symlink-free paths of every supported file under `paths`. */
static int collect(const char *const *paths, size_t n, struct files *f,
                   struct km_err *err)
{
    int rc = KM_OK;
    for (size_t i = 0; i < n && rc == KM_OK; i++) {
        char real[PATH_MAX];
        struct stat st;
        bool pdf;
        if (!realpath(paths[i], real) || stat(real, &st) != 0)
            rc = km_fail(err, KM_ENOTFOUND, "path %s: %s", paths[i], strerror(errno));
        else if (S_ISDIR(st.st_mode))
            rc = walk(real, 0, f, err);
        else if (rag_doc_kind_for(real, &pdf) < 0)
            rc = km_fail(err, KM_EUNSUPPORTED, "file %s: unsupported type (use .txt .md "
                         ".rst .csv .json .pdf or source code)", paths[i]);
        else
            rc = files_push(f, real) == KM_OK ? KM_OK
                 : km_fail(err, KM_ENOMEM, "out of memory listing files");
    }
    if (rc == KM_OK && f->n > 1)
        qsort(f->v, f->n, sizeof *f->v, cmp_str);
    return rc;
}

/* ---- reading ------------------------------------------------------------ */

static int read_fd(int fd, const char *path, struct km_buf *out, struct km_err *err)
{
    char tmp[65536];
    for (;;) {
        ssize_t r = read(fd, tmp, sizeof tmp);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return km_fail(err, KM_EIO, "file %s: read: %s", path, strerror(errno));
        if (r == 0)
            return KM_OK;
        if (km_buf_append(out, tmp, (size_t)r) != KM_OK)
            return km_fail(err, KM_ERANGE, "file %s: larger than %u MiB of text",
                           path, INGEST_MAX_FILE >> 20);
    }
}

/* Run `pdftotext -enc UTF-8 -q FILE -` (no shell) and read its output. */
static int read_pdf(const char *path, struct km_buf *out, struct km_err *err)
{
    int p[2];
    if (pipe(p) != 0)
        return km_fail(err, KM_EIO, "file %s: pipe: %s", path, strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return km_fail(err, KM_EIO, "file %s: fork: %s", path, strerror(errno));
    }
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execlp("pdftotext", "pdftotext", "-enc", "UTF-8", "-q", path, "-", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    int rc = read_fd(p[0], path, out, err);
    close(p[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (rc == KM_OK && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        rc = km_fail(err, KM_EFORMAT, "file %s: pdftotext failed (exit %d%s)", path,
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                     WIFEXITED(status) && WEXITSTATUS(status) == 127
                         ? ": install poppler-utils" : "");
    return rc;
}

static int read_raw(const char *path, struct km_buf *out, struct km_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return km_fail(err, KM_EIO, "file %s: %s", path, strerror(errno));
    int rc = read_fd(fd, path, out, err);
    close(fd);
    return rc;
}

/* Length of the UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t left)
{
    size_t n = s[0] < 0x80 ? 1 : s[0] >= 0xC2 && s[0] <= 0xDF ? 2
             : s[0] >= 0xE0 && s[0] <= 0xEF ? 3 : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 0;
    if (n == 0 || n > left)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((n == 3 && s[0] == 0xE0 && s[1] < 0xA0) || (n == 3 && s[0] == 0xED && s[1] > 0x9F) ||
        (n == 4 && s[0] == 0xF0 && s[1] < 0x90) || (n == 4 && s[0] == 0xF4 && s[1] > 0x8F))
        return 0;
    return n;
}

static int check_text(const char *path, const struct km_buf *b, struct km_err *err)
{
    const unsigned char *s = (const unsigned char *)b->data;
    for (size_t i = 0; i < b->len;) {
        size_t n = s[i] ? utf8_len(s + i, b->len - i) : 0;
        if (n == 0)
            return km_fail(err, KM_EFORMAT, "file %s: byte %zu is %s", path, i,
                           s[i] ? "not valid UTF-8" : "NUL (binary file?)");
        i += n;
    }
    return KM_OK;
}

static void hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int sha256_hex(const void *p, size_t n, char out[65], struct km_err *err)
{
    unsigned char md[32];
    unsigned int len = 0;
    if (!EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) || len != 32)
        return km_fail(err, KM_EIO, "SHA-256 failed");
    hex(md, 32, out);
    return KM_OK;
}

/* ---- one document ------------------------------------------------------- */

struct doc {
    const char *path;
    char uri[PATH_MAX + 8];
    char hash[65];
    char id_prefix[13];     /* chunk ids: <id_prefix>:<position> */
    struct km_buf text;     /* raw bytes, then the extracted text */
    enum rag_doc_kind kind;
    struct rag_chunk *chunks;
    size_t n_chunks;
    char *meta;             /* JSON object (jansson allocator) */
};

static int doc_meta(struct doc *d, const struct rag_ingest_opts *o, struct km_err *err)
{
    const char *slash = strrchr(d->path, '/');
    const char *name = slash ? slash + 1 : d->path;
    const char *dot = strrchr(name, '.');
    json_t *m = json_pack("{s:s, s:s, s:s}", "path", d->path, "name", name,
                          "ext", dot ? dot + 1 : "");
    for (size_t i = 0; m && i < o->n_meta; i++)
        json_object_set_new(m, o->meta_keys[i], json_string(o->meta_values[i]));
    d->meta = m ? json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(m);
    return d->meta ? KM_OK : km_fail(err, KM_EINVAL, "file %s: metadata is not "
                                     "valid UTF-8 JSON", d->path);
}

/* Read, validate, hash and name the document. */
static int doc_load(struct doc *d, const struct rag_ingest_opts *o, struct km_err *err)
{
    bool pdf = false;
    d->kind = (enum rag_doc_kind)rag_doc_kind_for(d->path, &pdf);
    snprintf(d->uri, sizeof d->uri, "file://%s", d->path);
    km_buf_init(&d->text, INGEST_MAX_FILE);
    int rc = read_raw(d->path, &d->text, err);
    if (rc == KM_OK)
        rc = sha256_hex(d->text.data ? d->text.data : "", d->text.len, d->hash, err);
    if (rc == KM_OK && pdf) {
        km_buf_reset(&d->text);
        rc = read_pdf(d->path, &d->text, err);
    }
    if (rc == KM_OK)
        rc = check_text(d->path, &d->text, err);
    char idsrc[PATH_MAX + 80], idhex[65];
    snprintf(idsrc, sizeof idsrc, "%s\n%s", d->uri, d->hash);
    if (rc == KM_OK)
        rc = sha256_hex(idsrc, strlen(idsrc), idhex, err);
    snprintf(d->id_prefix, sizeof d->id_prefix, "%.12s", idhex);
    if (rc == KM_OK)
        rc = doc_meta(d, o, err);
    return rc;
}

static void doc_free(struct doc *d)
{
    km_buf_free(&d->text);
    km_free(d->chunks);
    free(d->meta);
}

/* ---- the run ------------------------------------------------------------ */

/* The files are dealt to o->jobs workers, each with its own connection
 * (struct run); what they share is in struct pool, under its mutex: the
 * next file, the stats, the callbacks, the first errors. */
struct pool {
    const struct files *f;
    const struct rag_ingest_opts *o;
    struct rag_ingest_stats *st;
    pthread_mutex_t mu;
    size_t next;             /* the next file to take */
    bool stop;               /* a fatal error: take no more files */
    int fatal_rc, file_rc;   /* the first fatal and per-file error codes */
    struct km_err fatal;
};

struct run {
    struct rag_db *db;
    const struct rag_ingest_opts *o;
    struct rag_ingest_stats *st; /* shared: only under pool->mu, or alone */
    struct pool *pool;
    struct rag_collection coll;
    bool have_coll;
    const char *model;
    struct km_buf copy;
    bool server_tsv;         /* KANOA_RAG_SERVER_TSV=1: every tsv by the trigger */
    double embed_s, db_s;    /* this document's, added to st when done */
    bool skipped;            /* this document was unchanged */
};

static void progress(const struct rag_ingest_opts *o, const struct rag_ingest_stats *st)
{
    if (o->progress)
        o->progress(o->progress_ud, st);
}

/* Embed chunks [from, from+n) of d; *vecs is km_free'd by the caller. */
static int embed_batch(struct run *r, const struct doc *d, size_t from, size_t n,
                       float **vecs, int *dim, struct km_err *err)
{
    const char **texts = km_calloc(n, sizeof *texts);
    int rc = texts ? KM_OK : km_fail(err, KM_ENOMEM, "out of memory");
    for (size_t i = 0; rc == KM_OK && i < n; i++) {
        const struct rag_chunk *c = &d->chunks[from + i];
        texts[i] = km_strndup(d->text.data + c->off, c->len);
        if (!texts[i])
            rc = km_fail(err, KM_ENOMEM, "out of memory");
    }
    double t0 = rag__now();
    if (rc == KM_OK)
        rc = r->o->embedder
             ? rag_embedder_run(r->o->embedder, r->model, texts, n, vecs, dim, err)
             : rag_embed(r->o->embed_url, r->model, r->o->api_key, texts, n, vecs, dim, err);
    r->embed_s += rag__now() - t0;
    for (size_t i = 0; texts && i < n; i++)
        km_free((void *)texts[i]);
    km_free(texts);
    return rc;
}

/* Append the binary COPY rows of chunks [from, from+n) to r->copy, each
 * with its tsvector when the client computes it (rag__copy_chunk). */
static int encode_rows(struct run *r, const struct doc *d, long long doc_id,
                       size_t from, size_t n, const float *vecs, int dim,
                       struct km_err *err)
{
    int rc = KM_OK;
    size_t meta_len = strlen(d->meta);
    for (size_t i = 0; i < n && rc == KM_OK; i++) {
        const struct rag_chunk *c = &d->chunks[from + i];
        char cid[32];
        int len = snprintf(cid, sizeof cid, "%s:%04zu", d->id_prefix, from + i);
        const struct rag__chunk_row row = {
            .collection_id = r->coll.id, .document_id = doc_id,
            .chunk_id = cid, .chunk_id_len = (size_t)len,
            .position = (int32_t)(from + i), .tokens = c->tokens,
            .text = d->text.data + c->off, .text_len = c->len,
            .meta = d->meta, .meta_len = meta_len,
            .vec = vecs + i * (size_t)dim, .dim = (size_t)dim, .server_tsv = r->server_tsv};
        bool client_tsv;
        rc = rag__copy_chunk(&r->copy, &row, &client_tsv, err);
    }
    if (rc == KM_EINVAL)
        return km_fail(err, rc, "file %s: an embedding has a NaN or infinite element", d->path);
    if (rc == KM_ERANGE || rc == KM_ENOMEM)
        return km_fail(err, rc, "file %s: its rows do not fit the COPY buffer", d->path);
    return rc;
}

static int flush_copy(struct run *r, bool force, struct km_err *err)
{
    if (!force && r->copy.len < COPY_FLUSH)
        return KM_OK;
    double t0 = rag__now();
    int rc = rag__copy_put(r->db, r->copy.data, r->copy.len, err);
    r->db_s += rag__now() - t0;
    km_buf_reset(&r->copy);
    return rc;
}

/* The collection for vectors of `dim` from r->model; created on first use. */
static int need_collection(struct run *r, int dim, struct km_err *err)
{
    if (r->have_coll && r->coll.dim == dim)
        return KM_OK;
    int rc = rag_collection_ensure(r->db, r->o->collection, r->model, dim, &r->coll, err);
    r->have_coll = rc == KM_OK;
    return rc;
}

/* ---- the per-document transaction (rag_int.h) --------------------------- */

/* work_mem of a document's transaction. When the GIN pending list of
 * chunks' indexes passes its limit (4 MB), the inserting backend merges it
 * into the index, gathering entries in memory up to work_mem before each
 * pass over the index: with the default 4 MB it takes several passes per
 * merge, with 64 MB one (the merge's share of the COPY backend's profile:
 * 8.4% -> 5.8%). The memory is used only during those merges. */
#define DOC_WORK_MEM "64MB"

int rag__doc_begin(struct rag_db *db, const struct rag__doc *d, long long *doc_id,
                   struct km_err *err)
{
    char cid[24], n[24];
    snprintf(cid, sizeof cid, "%lld", d->collection_id);
    snprintf(n, sizeof n, "%ld", d->n_chunks);
    const char *p[5] = {cid, d->uri, d->hash, d->meta, n};
    const struct rag__stmt st[] = {
        {.sql = "BEGIN"},
        {.sql = d->sync_commit ? "SELECT set_config('work_mem', '" DOC_WORK_MEM "', true)"
                               : "SELECT set_config('work_mem', '" DOC_WORK_MEM "', true),"
                                 " set_config('synchronous_commit', 'off', true)",
         .prepare = true},
        {.sql = "SELECT pg_advisory_xact_lock($1::int, hashtext($2))", .n_params = 2,
         .params = p, .prepare = true},
        {.sql = "DELETE FROM kanoa.documents WHERE collection_id = $1::bigint"
                " AND source_uri = $2", .n_params = 2, .params = p, .prepare = true},
        {.sql = "INSERT INTO kanoa.documents (collection_id, source_uri, content_hash,"
                " metadata, n_chunks) VALUES ($1::bigint, $2, $3, $4::jsonb, $5::int)"
                " RETURNING id", .n_params = 5, .params = p, .prepare = true},
    };
    struct rag__res res[5];
    int rc = rag__pipeline(db, st, 5, res, err);
    if (rc == KM_OK && res[4].ntuples == 1)
        *doc_id = atoll(rag__val(&res[4], 0, 0));
    for (int i = 0; i < 5; i++)
        rag__res_free(&res[i]);
    if (rc == KM_OK)
        rc = rag__copy_begin(db, d->copy_sql ? d->copy_sql : RAG__CHUNKS_COPY, err);
    return rc;
}

int rag__doc_commit(struct rag_db *db, struct km_err *err)
{
    int rc = rag__copy_end(db, err);
    return rc == KM_OK ? rag__commit(db, err) : rc;
}

int rag__wal_flush(struct rag_db *db, struct km_err *err)
{
    return rag_exec(db, "SET synchronous_commit = on; SELECT txid_current()", err);
}

static int start_doc_tx(struct run *r, const struct doc *d, long long *doc_id,
                        struct km_err *err)
{
    const struct rag__doc rd = {.collection_id = r->coll.id, .uri = d->uri, .hash = d->hash,
                                .meta = d->meta, .n_chunks = (long)d->n_chunks};
    int rc = rag__doc_begin(r->db, &rd, doc_id, err);
    km_buf_reset(&r->copy);
    if (rc == KM_OK)
        rc = rag_copy_header(&r->copy);
    return rc;
}

static int finish_doc_tx(struct run *r, struct km_err *err)
{
    int rc = rag_copy_trailer(&r->copy);
    if (rc == KM_OK)
        rc = flush_copy(r, true, err);
    double t0 = rag__now();
    if (rc == KM_OK)
        rc = rag__doc_commit(r->db, err);
    r->db_s += rag__now() - t0;
    return rc;
}

/* Embed the remaining batches and stream every row, then commit. */
static int store_doc(struct run *r, const struct doc *d, float *first, int dim,
                     struct km_err *err)
{
    long long doc_id = 0;
    size_t batch = (size_t)r->o->batch;
    float *vecs = first;
    int rc = start_doc_tx(r, d, &doc_id, err);
    bool in_copy = rc == KM_OK;
    for (size_t from = 0; rc == KM_OK && from < d->n_chunks; from += batch) {
        size_t n = d->n_chunks - from < batch ? d->n_chunks - from : batch;
        int vdim = dim;
        if (from > 0)
            rc = embed_batch(r, d, from, n, &vecs, &vdim, err);
        if (rc == KM_OK && vdim != dim)
            rc = km_fail(err, KM_EFORMAT, "file %s: the embeddings server changed the "
                         "dimension from %d to %d mid-document", d->path, dim, vdim);
        if (rc == KM_OK)
            rc = encode_rows(r, d, doc_id, from, n, vecs, dim, err);
        if (rc == KM_OK)
            rc = flush_copy(r, false, err);
        km_free(vecs);
        vecs = NULL;
    }
    if (rc == KM_OK)
        rc = finish_doc_tx(r, err);
    if (rc != KM_OK && in_copy)
        rag__copy_abort(r->db, "ingest failed");
    if (rc != KM_OK)
        rag__rollback(r->db);
    km_free(vecs);
    return rc;
}

/* 1 when the stored version of d has the same hash (nothing to do). */
static int unchanged(struct run *r, const struct doc *d, bool *same, struct km_err *err)
{
    *same = false;
    if (!r->have_coll)
        return KM_OK;
    char cid[24];
    snprintf(cid, sizeof cid, "%lld", r->coll.id);
    const char *p[2] = {cid, d->uri};
    struct rag__res res;
    int rc = rag__query(r->db, "SELECT content_hash FROM kanoa.documents"
                               " WHERE collection_id = $1::bigint AND source_uri = $2",
                        2, p, &res, err);
    if (rc == KM_OK && res.ntuples == 1)
        *same = strcmp(rag__val(&res, 0, 0), d->hash) == 0;
    rag__res_free(&res);
    return rc;
}

static int ingest_one(struct run *r, struct doc *d, struct km_err *err)
{
    bool same = false;
    float *first = NULL;
    int dim = 0;
    int rc = doc_load(d, r->o, err);
    if (rc == KM_OK)
        rc = unchanged(r, d, &same, err);
    r->skipped = rc == KM_OK && same;
    if (rc != KM_OK || same)
        return rc;
    rc = rag_chunk_text(d->text.data ? d->text.data : "", d->text.len, d->kind,
                        r->o->chunk_tokens, r->o->overlap, &d->chunks, &d->n_chunks, err);
    size_t n0 = d->n_chunks < (size_t)r->o->batch ? d->n_chunks : (size_t)r->o->batch;
    if (rc == KM_OK && n0 > 0)
        rc = embed_batch(r, d, 0, n0, &first, &dim, err);
    if (rc == KM_OK && n0 > 0)
        rc = need_collection(r, dim, err);
    if (rc == KM_OK && n0 == 0 && !r->have_coll)
        rc = km_fail(err, KM_EINVAL, "file %s has no text and collection '%s' does not "
                     "exist yet", d->path, r->o->collection);
    if (rc == KM_OK)
        rc = store_doc(r, d, first, dim, err);
    else
        km_free(first);
    return rc;
}

/* Errors that concern one file; anything else (connection, embeddings
 * server, a refused collection) stops the run. */
static bool per_file_error(int code)
{
    return code == KM_EFORMAT || code == KM_EIO || code == KM_ERANGE ||
           code == KM_EUNSUPPORTED || code == KM_ENOTFOUND || code == KM_EDB;
}

static bool under_root(const char *path, const char *const *roots, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char real[PATH_MAX];
        if (!realpath(roots[i], real))
            continue;
        size_t len = strlen(real);
        if (strncmp(path, real, len) == 0 && (path[len] == '/' || path[len] == '\0' ||
                                              (len == 1 && real[0] == '/')))
            return true;
    }
    return false;
}

/* Delete documents under the given roots whose files no longer exist. */
static int prune(struct run *r, const char *const *paths, size_t n_paths,
                 struct km_err *err)
{
    char cid[24];
    snprintf(cid, sizeof cid, "%lld", r->coll.id);
    const char *p[1] = {cid};
    struct rag__res res;
    int rc = rag__query(r->db, "SELECT id, source_uri FROM kanoa.documents"
                               " WHERE collection_id = $1::bigint ORDER BY id", 1, p, &res, err);
    for (int i = 0; rc == KM_OK && i < res.ntuples; i++) {
        const char *uri = rag__val(&res, i, 1);
        const char *path = strncmp(uri, "file://", 7) == 0 ? uri + 7 : NULL;
        struct stat st;
        if (!path || !under_root(path, paths, n_paths) || lstat(path, &st) == 0 ||
            errno != ENOENT)
            continue;
        const char *q[1] = {rag__val(&res, i, 0)};
        rc = rag__cmd(r->db, "DELETE FROM kanoa.documents WHERE id = $1::bigint", 1, q, err);
        r->st->docs_pruned += rc == KM_OK;
    }
    rag__res_free(&res);
    return rc;
}

/* Take the next file (its index in *i) and report it as started; false
 * when there is none left or the run is stopping. */
static bool take_file(struct pool *p, size_t *i)
{
    pthread_mutex_lock(&p->mu);
    bool ok = !p->stop && p->next < p->f->n;
    if (ok) {
        *i = p->next++;
        p->st->current = p->f->v[*i];
        p->st->current_no = (long)*i + 1;
        progress(p->o, p->st);
    }
    pthread_mutex_unlock(&p->mu);
    return ok;
}

/* Count one finished file; report a per-file error, keep the first fatal. */
static void file_done(struct pool *p, struct run *r, size_t i, const struct doc *d, int rc,
                      const struct km_err *ferr)
{
    pthread_mutex_lock(&p->mu);
    p->st->embed_s += r->embed_s;
    p->st->db_s += r->db_s;
    if (rc == KM_OK && r->skipped) {
        p->st->files_skipped++;
    } else if (rc == KM_OK) {
        p->st->files_done++;
        p->st->chunks += (long long)d->n_chunks;
    } else if (per_file_error(rc)) {
        p->st->files_failed++;
        if (p->o->file_error)
            p->o->file_error(p->o->progress_ud, p->f->v[i], ferr);
        if (p->file_rc == KM_OK)
            p->file_rc = rc;
    } else if (!p->stop) {
        p->stop = true;
        p->fatal_rc = rc;
        p->fatal = *ferr;
    }
    pthread_mutex_unlock(&p->mu);
}

static void *worker(void *arg)
{
    struct run *r = arg;
    size_t i;
    while (take_file(r->pool, &i)) {
        struct doc d = {.path = r->pool->f->v[i]};
        struct km_err ferr;
        km_err_clear(&ferr);
        r->embed_s = r->db_s = 0;
        r->skipped = false;
        int rc = ingest_one(r, &d, &ferr);
        file_done(r->pool, r, i, &d, rc, &ferr);
        doc_free(&d);
    }
    return NULL;
}

static int jobs_for(const struct rag_ingest_opts *o, size_t n_files)
{
    long j = o->jobs > 0 ? o->jobs : sysconf(_SC_NPROCESSORS_ONLN);
    if (j < 1)
        j = 1;
    if ((size_t)j > n_files)
        j = n_files > 0 ? (long)n_files : 1;
    return j > RAG_INGEST_MAX_JOBS ? RAG_INGEST_MAX_JOBS : (int)j;
}

/* Run the files on r[0] (the caller's connection, this thread) and
 * jobs - 1 more workers on their own connections and threads. */
static int run_files(struct run *r0, const struct files *f, struct km_err *err)
{
    struct pool p = {.f = f, .o = r0->o, .st = r0->st};
    struct run r[RAG_INGEST_MAX_JOBS];
    pthread_t th[RAG_INGEST_MAX_JOBS];
    int jobs = jobs_for(r0->o, f->n), started = 1, rc = KM_OK;
    r0->st->jobs = jobs;
    pthread_mutex_init(&p.mu, NULL);
    r0->pool = &p;
    r[0] = *r0;
    for (int j = 1; j < jobs && rc == KM_OK; j++) {
        r[j] = *r0;
        km_buf_init(&r[j].copy, 256u << 20);
        rc = rag__db_clone(r0->db, &r[j].db, err);
        if (rc == KM_OK && pthread_create(&th[j], NULL, worker, &r[j]) != 0)
            rc = km_fail(err, KM_ENOMEM, "cannot start ingest job %d", j + 1);
        if (rc != KM_OK) {
            rag_close(r[j].db);
            km_buf_free(&r[j].copy);
            pthread_mutex_lock(&p.mu);
            p.stop = true;
            pthread_mutex_unlock(&p.mu);
            break;
        }
        started++;
    }
    if (rc == KM_OK)
        worker(&r[0]);
    for (int j = 1; j < started; j++) {
        pthread_join(th[j], NULL);
        rag_close(r[j].db);
        km_buf_free(&r[j].copy);
    }
    r0->copy = r[0].copy;
    for (int j = 0; j < started; j++)
        if (r[j].have_coll) { /* a worker may have created the collection */
            r0->coll = r[j].coll;
            r0->have_coll = true;
        }
    pthread_mutex_destroy(&p.mu);
    r0->st->current = NULL;
    r0->st->current_no = 0;
    if (rc != KM_OK)
        return rc;
    if (p.fatal_rc != KM_OK) {
        *err = p.fatal;
        return p.fatal_rc;
    }
    if (p.file_rc != KM_OK)
        km_fail(err, p.file_rc, "%ld of %zu files failed (see above)", r0->st->files_failed, f->n);
    return p.file_rc;
}

static int open_collection(struct run *r, struct km_err *err)
{
    int rc = rag_collection_get(r->db, r->o->collection, &r->coll, err);
    if (rc == KM_ENOTFOUND) {
        km_err_clear(err);
        if (!r->model || !r->model[0])
            return km_fail(err, KM_EINVAL, "collection '%s' does not exist: give "
                           "--embed-model to create it", r->o->collection);
        return KM_OK;
    }
    if (rc != KM_OK)
        return rc;
    r->have_coll = true;
    if (!r->model || !r->model[0])
        r->model = r->coll.embed_model;
    else if (strcmp(r->model, r->coll.embed_model) != 0)
        return km_fail(err, KM_EINVAL, "collection '%s' holds embeddings of model '%s'; "
                       "refusing to add model '%s'", r->o->collection,
                       r->coll.embed_model, r->model);
    return KM_OK;
}

/* The client's tsvectors are what PostgreSQL's stock english configuration
 * stores under a locale that lowercases ASCII as ASCII. A server where that
 * does not hold (a Turkish ctype lowercases 'I' to dotless i; an altered
 * pg_catalog.english) must compute every tsv itself: ask it once per run
 * whether it agrees on a probe text. */
#define TSV_PROBE "In INSIDE the Runners' well-known x86 filings: 2nd generalizations, " \
                  "I1 dying skies; IIIrd ties"
static int tsv_agrees(struct rag_db *db, bool *agrees, struct km_err *err)
{
    struct km_buf b;
    bool ok = false;
    km_buf_init(&b, 4096);
    int rc = rag__tsv_english(TSV_PROBE, strlen(TSV_PROBE), &b, &ok, err);
    *agrees = false;
    if (rc == KM_OK && ok) {
        const char *params[] = {TSV_PROBE, b.data};
        const int lengths[] = {0, (int)b.len}, formats[] = {0, 1};
        struct rag__stmt st = {"SELECT $2::tsvector = to_tsvector('pg_catalog.english', $1)",
                               2, params, false, lengths, formats};
        struct rag__res res = {0};
        rc = rag__pipeline(db, &st, 1, &res, err);
        *agrees = rc == KM_OK && res.ntuples == 1 && strcmp(rag__val(&res, 0, 0), "t") == 0;
        rag__res_free(&res);
    }
    km_buf_free(&b);
    return rc;
}

int rag_ingest(struct rag_db *db, const char *const *paths, size_t n_paths,
               const struct rag_ingest_opts *o, struct rag_ingest_stats *st,
               struct km_err *err)
{
    memset(st, 0, sizeof *st);
    const char *stsv = getenv("KANOA_RAG_SERVER_TSV");
    struct run r = {.db = db, .o = o, .st = st, .model = o->embed_model,
                    .server_tsv = stsv && strcmp(stsv, "1") == 0};
    struct files f = {0};
    km_buf_init(&r.copy, 256u << 20);
    if (!r.model)
        r.model = rag_embedder_model(o->embedder); /* NULL for HTTP */
    if (o->batch < 1 || !o->collection || (!o->embed_url && !o->embedder))
        return km_fail(err, KM_EINVAL, "ingest needs a collection, an embeddings URL "
                       "or local model, and a batch size >= 1");
    int rc = open_collection(&r, err);
    bool agrees = true;
    if (rc == KM_OK && !r.server_tsv)
        rc = tsv_agrees(db, &agrees, err);
    if (rc == KM_OK && !agrees) {
        km_log(KM_LOG_WARN, "rag ingest: this server's to_tsvector('english') differs from "
               "the client's (locale or text-search configuration): every chunk's tsv "
               "is computed by the server");
        r.server_tsv = true;
    }
    if (rc == KM_OK)
        rc = collect(paths, n_paths, &f, err);
    st->files_seen = (long)f.n;
    double t0 = rag__now();
    if (rc == KM_OK)
        rc = run_files(&r, &f, err);
    int fatal = rc != KM_OK && !per_file_error(rc);
    /* The documents were committed without waiting for the WAL flush:
     * make them durable before the run is reported (best effort after a
     * fatal error, whose connection may be gone). */
    struct km_err ferr;
    int frc = st->files_done > 0 ? rag__wal_flush(db, &ferr) : KM_OK;
    if (frc != KM_OK && !fatal) {
        rc = frc;
        *err = ferr;
        fatal = 1;
    }
    st->files_s = rag__now() - t0;
    if (!fatal && r.have_coll && o->prune) {
        struct km_err perr;
        int prc = prune(&r, paths, n_paths, &perr);
        if (prc != KM_OK && rc == KM_OK) {
            rc = prc;
            *err = perr;
        }
    }
    if (!fatal && r.have_coll && st->chunks > 0) {
        t0 = rag__now();
        struct km_err ierr;
        int irc = rag_collection_index(db, &r.coll, &ierr);
        st->index_s = rag__now() - t0;
        if (irc != KM_OK && rc == KM_OK) {
            rc = irc;
            *err = ierr;
        }
    }
    progress(o, st);
    files_free(&f);
    km_buf_free(&r.copy);
    return rc;
}
