/* rag_int.h - private to src/rag: the libpq adapter (pg.c) seen by the
 * other rag files, so that only pg.c includes libpq-fe.h.
 *
 * Results: struct rag__res wraps one PGresult; free it with rag__res_free
 * (NULL-safe). Values are text; pointers stay valid until the free.
 * Errors: a failed statement gives KM_EDB with the server's message and
 * SQLSTATE; a lost connection gives KM_ENET.
 */
#ifndef KM_RAG_INT_H
#define KM_RAG_INT_H

#include "rag/rag.h"

struct rag__res {
    void *pg;      /* PGresult * */
    int ntuples;
};

/* A new connection to the same database (the URL db was opened with);
 * rag_close it. */
int rag__db_clone(struct rag_db *db, struct rag_db **out, struct km_err *err);

/* Run `sql` with text parameters (NULL entries are SQL NULL). */
int rag__query(struct rag_db *db, const char *sql, int n_params,
               const char *const *params, struct rag__res *res,
               struct km_err *err);
/* Same, discarding any rows. */
int rag__cmd(struct rag_db *db, const char *sql, int n_params,
             const char *const *params, struct km_err *err);
const char *rag__val(const struct rag__res *r, int row, int col);
bool rag__isnull(const struct rag__res *r, int row, int col);
void rag__res_free(struct rag__res *r);

int rag__begin(struct rag_db *db, struct km_err *err);
int rag__commit(struct rag_db *db, struct km_err *err);
/* Best effort; ignores errors (the connection may be gone). */
void rag__rollback(struct rag_db *db);

/* One statement of a pipeline. `prepare`: run it as a named prepared
 * statement of this connection (parsed and planned once; PostgreSQL keeps
 * a generic plan after five runs), for hot statements whose plan does not
 * depend on the parameter values. */
struct rag__stmt {
    const char *sql;
    int n_params;
    const char *const *params;
    bool prepare;
    const int *lengths;   /* per parameter: bytes of a binary value */
    const int *formats;   /* per parameter: 1 binary, 0 text; NULL = all text */
};

/* Send every statement at once (libpq pipeline mode: one network round
 * trip; the statements share one implicit transaction), then read one
 * result per statement into res[i] (free each with rag__res_free). The
 * first failure is reported; statements after it are skipped by the
 * server. A connection keeps up to RAG__PREPARED statements (least
 * recently prepared ones are deallocated in the same pipeline); after a
 * failure it forgets them and deallocates all at its next pipeline. */
#define RAG__PREPARED 8
int rag__pipeline(struct rag_db *db, const struct rag__stmt *st, int n,
                  struct rag__res *res, struct km_err *err);

/* A per-connection cache of one collection row (by name), so a repeated
 * query skips the lookup; rag__cache_drop forgets it. */
bool rag__cache_get(struct rag_db *db, const char *name, struct rag_collection *out);
void rag__cache_put(struct rag_db *db, const struct rag_collection *c);
void rag__cache_drop(struct rag_db *db);

/* The session's hnsw settings as last set through these functions, so a
 * query sends a SET only when its value changes (0 / -1 = unknown, after
 * rag_exec or a failed pipeline). rag__settings_forget marks them unknown. */
int rag__session_ef(const struct rag_db *db);
int rag__session_iterative(const struct rag_db *db);
void rag__session_set(struct rag_db *db, int ef_search, int iterative);
void rag__settings_forget(struct rag_db *db);

/* COPY ... FROM STDIN: begin, put bytes (any split), end (waits for the
 * server's verdict). rag__copy_abort cancels a COPY in progress. */
int rag__copy_begin(struct rag_db *db, const char *sql, struct km_err *err);
int rag__copy_put(struct rag_db *db, const char *p, size_t n,
                  struct km_err *err);
int rag__copy_end(struct rag_db *db, struct km_err *err);
void rag__copy_abort(struct rag_db *db, const char *why);

/* The binary COPY of kanoa.chunks that ingest runs (rag__doc_begin's
 * default), its columns in the order rag__copy_chunk writes them. */
#define RAG__CHUNKS_COPY                                                      \
    "COPY kanoa.chunks (collection_id, document_id, chunk_id, position,"      \
    " token_count, text, metadata, embedding, tsv) FROM STDIN WITH (FORMAT binary)"
#define RAG__CHUNKS_FIELDS 9

/* One row of RAG__CHUNKS_COPY. The pointers are only read during the call. */
struct rag__chunk_row {
    long long collection_id, document_id;
    const char *chunk_id, *text, *meta; /* meta: a JSON object */
    size_t chunk_id_len, text_len, meta_len;
    int32_t position, tokens;
    const float *vec;
    size_t dim;
    bool server_tsv; /* send tsv NULL without trying the client (measuring) */
};

/* Append the row's tuple to b (copy_bin.c). The tsv field is
 * rag__tsv_english's tsvector when it handles the text (*client_tsv
 * true), else NULL, and the chunks table's insert trigger computes it on
 * the server (*client_tsv false). No allocation beyond b's growth (and
 * whatever rag__tsv_english needs). Errors: KM_EINVAL for a NaN or
 * infinite vector element, the buffer's KM_ERANGE / KM_ENOMEM; b then ends
 * somewhere inside the row (the caller abandons the COPY). */
int rag__copy_chunk(struct km_buf *b, const struct rag__chunk_row *r, bool *client_tsv,
                    struct km_err *err);

/* The per-document transaction of ingest (ingest.c), also driven by
 * bench/rag: rag__doc_begin sends BEGIN, the transaction's settings
 * (work_mem for the GIN merges; synchronous_commit), the advisory lock on
 * (collection, source_uri), the DELETE of the old version and the INSERT of the document
 * row (with n_chunks) in one pipelined round trip, then starts `copy_sql`
 * (NULL = RAG__CHUNKS_COPY, rows from rag__copy_chunk); *doc_id gets
 * the new row's id. The caller rag__copy_put's the rows, then
 * rag__doc_commit ends the COPY and commits. On failure the caller calls
 * rag__copy_abort (when the COPY had started) and rag__rollback. With
 * sync_commit false the COMMIT does not wait for the WAL flush (the data
 * stays atomic; a server crash may lose the last commits, not tear them):
 * call rag__wal_flush before reporting the run as done. */
struct rag__doc {
    long long collection_id;
    const char *uri, *hash, *meta; /* meta: a JSON object */
    long n_chunks;
    bool sync_commit;
    const char *copy_sql;
};
int rag__doc_begin(struct rag_db *db, const struct rag__doc *d, long long *doc_id,
                   struct km_err *err);
int rag__doc_commit(struct rag_db *db, struct km_err *err);
/* Flush the WAL up to now (a synchronous commit of a transaction with an
 * id): every commit before it is durable when this returns. */
int rag__wal_flush(struct rag_db *db, struct km_err *err);

/* ---- text-search vectors on the client (tsv.c) ----
 * to_tsvector('english', text) computed in the client, byte for byte what
 * PostgreSQL 15 stores (its default parser; the english configuration:
 * words through the english stopword list and the Snowball English stemmer,
 * numbers through `simple`), for the texts whose every token it handles.
 * On KM_OK with *ok true it has appended the tsvector in its binary send
 * format (what COPY BINARY hands to tsvectorrecv: int32 lexeme count, then
 * per lexeme in tsvector order its bytes, a NUL, an int16 position count
 * and the int16 positions) to out. For a text with anything it does not
 * handle it appends nothing and sets *ok false: the server computes that
 * chunk's tsvector (the chunks table's insert trigger). Errors: only the
 * buffer's (KM_ENOMEM, KM_ERANGE). */
int rag__tsv_english(const char *text, size_t len, struct km_buf *out,
                     bool *ok, struct km_err *err);

/* Monotonic seconds (for the stats). */
double rag__now(void);

#ifdef KM_UNITTEST
/* query.c's reciprocal rank fusion of two best-first lists (moves hits). */
int rag__fuse(struct rag_hits *v, struct rag_hits *t, int k, struct rag_hits *out);
/* query.c's binary query-vector parameter (4 + 4 * dim bytes, km_free). */
char *rag__vector_binary(const float *v, int dim);
#endif

#endif
