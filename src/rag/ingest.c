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
 */
#include "rag/rag_int.h"

#include "base/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
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

struct run {
    struct rag_db *db;
    const struct rag_ingest_opts *o;
    struct rag_ingest_stats *st;
    struct rag_collection coll;
    bool have_coll;
    const char *model;
    struct km_buf copy;
};

static void progress(struct run *r)
{
    if (r->o->progress)
        r->o->progress(r->o->progress_ud, r->st);
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
    r->st->embed_s += rag__now() - t0;
    for (size_t i = 0; texts && i < n; i++)
        km_free((void *)texts[i]);
    km_free(texts);
    return rc;
}

/* Append the binary COPY rows of chunks [from, from+n) to r->copy. */
static int encode_rows(struct run *r, const struct doc *d, long long doc_id,
                       size_t from, size_t n, const float *vecs, int dim)
{
    int rc = KM_OK;
    for (size_t i = 0; i < n && rc == KM_OK; i++) {
        const struct rag_chunk *c = &d->chunks[from + i];
        char cid[32];
        int len = snprintf(cid, sizeof cid, "%s:%04zu", d->id_prefix, from + i);
        rc = rag_copy_tuple(&r->copy, 8);
        if (rc == KM_OK) rc = rag_copy_int8(&r->copy, r->coll.id);
        if (rc == KM_OK) rc = rag_copy_int8(&r->copy, doc_id);
        if (rc == KM_OK) rc = rag_copy_text(&r->copy, cid, (size_t)len);
        if (rc == KM_OK) rc = rag_copy_int4(&r->copy, (int32_t)(from + i));
        if (rc == KM_OK) rc = rag_copy_int4(&r->copy, c->tokens);
        if (rc == KM_OK) rc = rag_copy_text(&r->copy, d->text.data + c->off, c->len);
        if (rc == KM_OK) rc = rag_copy_jsonb(&r->copy, d->meta, strlen(d->meta));
        if (rc == KM_OK) rc = rag_copy_vector(&r->copy, vecs + i * (size_t)dim, (size_t)dim);
    }
    return rc;
}

static int flush_copy(struct run *r, bool force, struct km_err *err)
{
    if (!force && r->copy.len < COPY_FLUSH)
        return KM_OK;
    double t0 = rag__now();
    int rc = rag__copy_put(r->db, r->copy.data, r->copy.len, err);
    r->st->db_s += rag__now() - t0;
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

static int start_doc_tx(struct run *r, const struct doc *d, long long *doc_id,
                        struct km_err *err)
{
    char cid[24];
    snprintf(cid, sizeof cid, "%lld", r->coll.id);
    const char *p[4] = {cid, d->uri, d->hash, d->meta};
    struct rag__res res = {0};
    int rc = rag__begin(r->db, err);
    if (rc == KM_OK)
        rc = rag__cmd(r->db, "SELECT pg_advisory_xact_lock($1::int, hashtext($2))", 2, p, err);
    if (rc == KM_OK)
        rc = rag__cmd(r->db, "DELETE FROM kanoa.documents WHERE collection_id = $1::bigint"
                             " AND source_uri = $2", 2, p, err);
    if (rc == KM_OK)
        rc = rag__query(r->db, "INSERT INTO kanoa.documents (collection_id, source_uri,"
                               " content_hash, metadata) VALUES ($1::bigint, $2, $3, $4::jsonb)"
                               " RETURNING id", 4, p, &res, err);
    if (rc == KM_OK)
        *doc_id = atoll(rag__val(&res, 0, 0));
    rag__res_free(&res);
    if (rc == KM_OK)
        rc = rag__copy_begin(r->db, "COPY kanoa.chunks (collection_id, document_id, chunk_id,"
                                    " position, token_count, text, metadata, embedding)"
                                    " FROM STDIN WITH (FORMAT binary)", err);
    km_buf_reset(&r->copy);
    if (rc == KM_OK)
        rc = rag_copy_header(&r->copy);
    return rc;
}

static int finish_doc_tx(struct run *r, const struct doc *d, long long doc_id,
                         struct km_err *err)
{
    char id[24], n[24];
    snprintf(id, sizeof id, "%lld", doc_id);
    snprintf(n, sizeof n, "%zu", d->n_chunks);
    const char *p[2] = {id, n};
    int rc = rag_copy_trailer(&r->copy);
    if (rc == KM_OK)
        rc = flush_copy(r, true, err);
    double t0 = rag__now();
    if (rc == KM_OK)
        rc = rag__copy_end(r->db, err);
    if (rc == KM_OK)
        rc = rag__cmd(r->db, "UPDATE kanoa.documents SET n_chunks = $2::int WHERE id = $1::bigint",
                      2, p, err);
    if (rc == KM_OK)
        rc = rag__commit(r->db, err);
    r->st->db_s += rag__now() - t0;
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
        if (rc == KM_OK && encode_rows(r, d, doc_id, from, n, vecs, dim) != KM_OK)
            rc = km_fail(err, KM_EINVAL, "file %s: an embedding has a NaN or infinite "
                         "element, or a row is too large", d->path);
        if (rc == KM_OK)
            rc = flush_copy(r, false, err);
        km_free(vecs);
        vecs = NULL;
    }
    if (rc == KM_OK)
        rc = finish_doc_tx(r, d, doc_id, err);
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
    if (rc != KM_OK || same) {
        r->st->files_skipped += same;
        return rc;
    }
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
    if (rc == KM_OK) {
        r->st->chunks += (long long)d->n_chunks;
        r->st->files_done++;
    }
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

static int run_files(struct run *r, const struct files *f, struct km_err *err)
{
    int first_rc = KM_OK;
    for (size_t i = 0; i < f->n; i++) {
        struct doc d = {.path = f->v[i]};
        struct km_err ferr;
        km_err_clear(&ferr);
        r->st->current = f->v[i];
        progress(r);
        int rc = ingest_one(r, &d, &ferr);
        doc_free(&d);
        if (rc == KM_OK)
            continue;
        if (!per_file_error(rc)) {
            *err = ferr;
            r->st->current = NULL;
            return rc;
        }
        r->st->files_failed++;
        if (r->o->file_error)
            r->o->file_error(r->o->progress_ud, f->v[i], &ferr);
        if (first_rc == KM_OK)
            first_rc = rc;
    }
    r->st->current = NULL;
    if (first_rc != KM_OK)
        km_fail(err, first_rc, "%ld of %zu files failed (see above)", r->st->files_failed, f->n);
    return first_rc;
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

int rag_ingest(struct rag_db *db, const char *const *paths, size_t n_paths,
               const struct rag_ingest_opts *o, struct rag_ingest_stats *st,
               struct km_err *err)
{
    memset(st, 0, sizeof *st);
    struct run r = {.db = db, .o = o, .st = st, .model = o->embed_model};
    struct files f = {0};
    km_buf_init(&r.copy, 256u << 20);
    if (!r.model)
        r.model = rag_embedder_model(o->embedder); /* NULL for HTTP */
    if (o->batch < 1 || !o->collection || (!o->embed_url && !o->embedder))
        return km_fail(err, KM_EINVAL, "ingest needs a collection, an embeddings URL "
                       "or local model, and a batch size >= 1");
    int rc = open_collection(&r, err);
    if (rc == KM_OK)
        rc = collect(paths, n_paths, &f, err);
    st->files_seen = (long)f.n;
    if (rc == KM_OK)
        rc = run_files(&r, &f, err);
    int fatal = rc != KM_OK && !per_file_error(rc);
    if (!fatal && r.have_coll && o->prune) {
        struct km_err perr;
        int prc = prune(&r, paths, n_paths, &perr);
        if (prc != KM_OK && rc == KM_OK) {
            rc = prc;
            *err = perr;
        }
    }
    if (!fatal && r.have_coll && st->chunks > 0) {
        double t0 = rag__now();
        struct km_err ierr;
        int irc = rag_collection_index(db, &r.coll, &ierr);
        st->index_s = rag__now() - t0;
        if (irc != KM_OK && rc == KM_OK) {
            rc = irc;
            *err = ierr;
        }
    }
    progress(&r);
    files_free(&f);
    km_buf_free(&r.copy);
    return rc;
}
