/* rag.h - the knowledge base: PostgreSQL + pgvector (libpq).
 *
 * Purpose: keep collections of documents cut into chunks with an embedding
 * and a tsvector each, and answer top-k queries by vector (HNSW, cosine),
 * text (ts_rank) or both fused by reciprocal rank fusion. Also runs the
 * private "embedded" PostgreSQL cluster (db_*) and embeds text through any
 * OpenAI `/v1/embeddings` endpoint (rag_embed) or the local engine
 * (rag_embedder_local).
 *
 * Schema (migrations in migrate.c, versioned in kanoa.schema_version): one
 * schema `kanoa` with `collections` (name, embedding model, dimension),
 * `documents` (source URI, content hash, JSONB metadata) and `chunks` (text,
 * token count, position, embedding, tsvector, metadata). Collection names
 * are data (rows), never SQL identifiers. The embedding column is a
 * typmod-less `vector` so collections of different dimensions share one
 * table; each collection gets its own partial HNSW index on
 * `(embedding::vector(N)) vector_cosine_ops WHERE collection_id = id`, and
 * queries use the same expression so the planner picks that index.
 *
 * Contract: every function returns KM_OK or a KM_E* code and fills the
 * caller's struct km_err (KM_EDB for SQL errors, KM_ENET when the database
 * connection is lost, KM_EINVAL for refused input such as mixing embedding
 * models in one collection). All SQL is parameterized; text from files,
 * filters and collection names is passed as parameters and stored verbatim.
 *
 * Ownership: rag_open returns a handle freed with rag_close. Results
 * (struct rag_hits, struct rag_chunk arrays, embeddings) are caller-owned and
 * freed with the matching *_free function or km_free as documented per call.
 *
 * Thread-safety: one struct rag_db per thread (a libpq connection is not
 * shared). The pure functions (copy encoder, chunker, RRF, filter parsing,
 * embedding client) are reentrant.
 */
#ifndef KM_RAG_H
#define KM_RAG_H

#include "base/buf.h"
#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAG_SCHEMA_VERSION 2
#define RAG_MAX_DIM 2000          /* HNSW limit for `vector` in pgvector 0.8 */
#define RAG_DEFAULT_EF_SEARCH 150 /* recall@10 0.998 at 100k x 384 (bench/rag) */
#define RAG_RRF_K 60              /* reciprocal rank fusion constant */

/* ---- connection (pg.c) ------------------------------------------------ */

struct rag_db; /* opaque: one libpq connection */

/* Connect to `url` (libpq URI or key=value string). */
int rag_open(const char *url, struct rag_db **out, struct km_err *err);
void rag_close(struct rag_db *db);
/* Run one or more SQL statements without parameters or results (admin
 * use: the cluster bootstrap, benchmarks). */
int rag_exec(struct rag_db *db, const char *sql, struct km_err *err);
/* The database URL to use: `given` if set, else $KANOA_DATABASE_URL, else
 * the URL file of the default embedded cluster (db_default_dir). Returns a
 * km_strdup'ed string or fails with KM_ENOTFOUND. */
int rag_resolve_url(const char *given, char **out, struct km_err *err);

/* ---- schema and collections (migrate.c) --------------------------------- */

/* Apply pending migrations (idempotent; serialized with an advisory lock).
 * *version gets the schema version now in place. */
int rag_migrate(struct rag_db *db, int *version, struct km_err *err);

struct rag_collection {
    long long id;
    char name[256];
    char embed_model[256];
    int dim;
    long long n_documents; /* rag_collection_list only; else -1 */
    long long n_chunks;    /* rag_collection_list only; else -1 */
};

/* Look a collection up by name: KM_ENOTFOUND when absent. */
int rag_collection_get(struct rag_db *db, const char *name,
                       struct rag_collection *out, struct km_err *err);
/* The same, answered from the connection's one-row cache when it holds
 * `name` (no round trip; the row may be stale: rag_query_run checks it
 * against the database in its own round trip, see rag_query.embed_model).
 * *cached tells whether it came from the cache; rag_collection_forget
 * empties the cache, so the next call reads the database. */
int rag_collection_get_cached(struct rag_db *db, const char *name,
                              struct rag_collection *out, bool *cached,
                              struct km_err *err);
void rag_collection_forget(struct rag_db *db);
/* Create the collection or check that it records the same model and
 * dimension (KM_EINVAL otherwise: one collection never mixes them). */
int rag_collection_ensure(struct rag_db *db, const char *name,
                          const char *model, int dim,
                          struct rag_collection *out, struct km_err *err);
/* All collections, by name; *out is km_free'd by the caller. */
int rag_collection_list(struct rag_db *db, struct rag_collection **out,
                        size_t *n, struct km_err *err);
/* Create the collection's HNSW index if missing (m=16, ef_construction=64). */
int rag_collection_index(struct rag_db *db, const struct rag_collection *c,
                         struct km_err *err);

/* ---- binary COPY encoder (copy_bin.c) ----------------------------------- */

/* PostgreSQL binary COPY: a 19-byte header, tuples (int16 field count, then
 * per field int32 length or -1 for NULL and the bytes), int16 -1 trailer;
 * all big-endian. Each call appends to `b` (KM_ERANGE/KM_ENOMEM from km_buf).
 * rag_copy_vector writes pgvector's vector_recv form: uint16 dim, uint16 0,
 * dim big-endian float4; it rejects NaN/Inf (KM_EINVAL). */
int rag_copy_header(struct km_buf *b);
int rag_copy_trailer(struct km_buf *b);
int rag_copy_tuple(struct km_buf *b, int n_fields);
int rag_copy_null(struct km_buf *b);
int rag_copy_int4(struct km_buf *b, int32_t v);
int rag_copy_int8(struct km_buf *b, int64_t v);
int rag_copy_text(struct km_buf *b, const char *s, size_t len);
int rag_copy_jsonb(struct km_buf *b, const char *json, size_t len);
int rag_copy_vector(struct km_buf *b, const float *v, size_t dim);

/* ---- chunking (chunk.c) ------------------------------------------------- */

enum rag_doc_kind { RAG_DOC_TEXT, RAG_DOC_MARKDOWN, RAG_DOC_RST, RAG_DOC_CODE };

/* A chunk is a slice [off, off+len) of the document text. */
struct rag_chunk {
    size_t off;
    size_t len;
    int tokens;
};

/* Token estimate: one token per 4 bytes of UTF-8, rounded up (the usual
 * rule of thumb for English BPE vocabularies; no tokenizer needed). */
int rag_token_estimate(const char *s, size_t len);
/* The document kind for a file name by extension; -1 when unsupported.
 * *is_pdf is set for .pdf (text comes from pdftotext). */
int rag_doc_kind_for(const char *path, bool *is_pdf);
/* Cut `text` into chunks of at most max_tokens (estimate) on structure:
 * headings start a new chunk, paragraphs and fenced code blocks are kept
 * whole when they fit, longer blocks are split at lines, then words. When a
 * chunk is closed because the budget is full, the next one starts with
 * about `overlap` tokens of its tail (at a word boundary). *out is km_free'd
 * by the caller; *n may be 0 for blank text. */
int rag_chunk_text(const char *text, size_t len, enum rag_doc_kind kind,
                   int max_tokens, int overlap, struct rag_chunk **out,
                   size_t *n, struct km_err *err);

/* ---- embeddings client (embed_client.c) --------------------------------- */

/* POST {model, input: texts} to `url` (a base like http://host:8000/v1 or
 * the full .../embeddings URL) and return n*dim floats in input order in
 * *vecs (km_free). api_key may be NULL. */
int rag_embed(const char *url, const char *model, const char *api_key,
              const char *const *texts, size_t n, float **vecs, int *dim,
              struct km_err *err);

/* ---- embedders (embedder.c) --------------------------------------------- */

/* Where embeddings come from: an OpenAI-compatible endpoint (rag_embed per
 * batch) or the local engine (a GGUF embedding model loaded into this
 * process, embedded with eng_embed on the calling thread). Ownership: the
 * rag_embedder_* constructors return an object freed with rag_embedder_free
 * (NULL-safe); vectors are km_free'd by the caller. Thread-safety:
 * rag_embedder_run may be called from several threads at once (local
 * calls are serialized on the embedder; HTTP and hash calls run in
 * parallel); create and free on one thread. */
struct rag_embedder;

/* HTTP: `url` as for rag_embed; api_key may be NULL. Copies both. */
int rag_embedder_http(const char *url, const char *api_key,
                      struct rag_embedder **out, struct km_err *err);
/* Local: load the GGUF file at `path` (task embed: bert, nomic-bert; a
 * generation model is KM_EUNSUPPORTED). n_threads 0 = physical cores.
 * `name` is the model name to record (NULL = the file stem, the name
 * `serve --model PATH` gives it, so /v1/retrieve finds it there). Each text
 * is tokenized with the model's framing ([CLS] .. [SEP]); one longer than
 * the model's context keeps its first n_ctx-1 tokens and the final [SEP]
 * (counted by rag_embedder_truncated). */
int rag_embedder_local(const char *path, const char *name, int n_threads,
                       struct rag_embedder **out, struct km_err *err);
/* Hash: a unit vector of `dim` seeded by a hash of each text (equal texts,
 * equal vectors; similarity means nothing). Recorded as model "hash-DIM".
 * For measuring and testing ingest without an embedding model. */
int rag_embedder_hash(int dim, struct rag_embedder **out, struct km_err *err);
void rag_embedder_free(struct rag_embedder *e);
/* The local (or hash) model's name; NULL for HTTP (the caller names the
 * model). */
const char *rag_embedder_model(const struct rag_embedder *e);
/* Inputs cut to the local model's context so far (0 for HTTP). */
long rag_embedder_truncated(const struct rag_embedder *e);
/* Embed n texts: n*dim floats in input order in *vecs (km_free). `model` is
 * the name sent to an endpoint; a local embedder ignores it. */
int rag_embedder_run(struct rag_embedder *e, const char *model,
                     const char *const *texts, size_t n, float **vecs, int *dim,
                     struct km_err *err);

/* ---- ingest (ingest.c) -------------------------------------------------- */

struct rag_ingest_stats {
    long files_seen, files_done, files_skipped, files_failed;
    long docs_pruned;
    long long chunks;
    double embed_s, db_s, index_s; /* wall time in embedding and SQL (summed
                                       over the jobs), building the index */
    double files_s;                 /* wall time of the files (all jobs) */
    int jobs;                       /* jobs that ran */
    const char *current;            /* file just started, or NULL */
    long current_no;                /* its number (1-based) in the sorted list */
};

#define RAG_INGEST_MAX_JOBS 64

struct rag_ingest_opts {
    const char *collection;
    struct rag_embedder *embedder;  /* NULL = HTTP to embed_url */
    const char *embed_url;          /* used when embedder is NULL */
    const char *embed_model;        /* NULL = the collection's (or the
                                       local embedder's name) */
    const char *api_key;            /* NULL = none */
    int chunk_tokens;               /* 512 */
    int overlap;                    /* 64 */
    int batch;                      /* texts per embeddings request, 32 */
    int jobs;                       /* documents in flight, each on its own
                                       connection; 0 = online CPUs (at most
                                       RAG_INGEST_MAX_JOBS, the file count) */
    bool prune;
    const char *const *meta_keys;   /* extra metadata for every document */
    const char *const *meta_values;
    size_t n_meta;
    /* Callbacks, one at a time (under the run's lock, from any job's
     * thread): progress when a file is started and at the end, file_error
     * for each file that fails (the run goes on with the next). */
    void (*progress)(void *ud, const struct rag_ingest_stats *s);
    void *progress_ud;
    void (*file_error)(void *ud, const char *path, const struct km_err *e);
};

void rag_ingest_opts_init(struct rag_ingest_opts *o);
/* Ingest files and folders (recursively, supported extensions only). Each
 * document is replaced in one transaction; unchanged files (same SHA-256)
 * are skipped. o->jobs documents are in flight at once, each job on its
 * own database connection (`db` and clones of it) and thread; the
 * embedder is shared (see rag_embedder_run). Commits do not wait for the
 * WAL flush; one flush at the end makes the run durable before it
 * returns. Returns KM_OK when every file succeeded, otherwise the first
 * file error (after trying every file) or a fatal error (connection lost:
 * the jobs finish their current document and stop). */
int rag_ingest(struct rag_db *db, const char *const *paths, size_t n_paths,
               const struct rag_ingest_opts *o, struct rag_ingest_stats *st,
               struct km_err *err);

/* ---- queries (query.c) -------------------------------------------------- */

enum rag_mode { RAG_MODE_VECTOR, RAG_MODE_TEXT, RAG_MODE_HYBRID };

struct rag_hit {
    long long row;      /* chunks.id */
    char *text;
    double score;       /* 0..1: cosine similarity (text mode: ts_rank/(1+ts_rank)) */
    double rank_score;  /* hybrid: the RRF value; else equal to score */
    double distance;    /* cosine distance, or -1 in text mode */
    char *source_uri;
    char *chunk_id;
    char *metadata;     /* JSON object text */
};

struct rag_hits {
    struct rag_hit *v;
    size_t n;
};

/* Metadata equality filters as one JSON object for `metadata @> $n`. */
struct rag_filter {
    char *json; /* "{}" when empty; km_free */
    size_t n;
};

/* Parse "key=value" (key non-empty; value may be empty or contain '=');
 * adding the same key with another value fails with KM_EINVAL. */
void rag_filter_init(struct rag_filter *f);
int rag_filter_add(struct rag_filter *f, const char *kv, struct km_err *err);
/* The same from a key and a value (the key may contain '='). */
int rag_filter_set(struct rag_filter *f, const char *key, const char *value,
                   struct km_err *err);
void rag_filter_free(struct rag_filter *f);

struct rag_query {
    const char *collection;
    const char *text;
    const float *vec;   /* query embedding (NULL only in text mode) */
    int dim;
    int k;
    enum rag_mode mode;
    const struct rag_filter *filter; /* may be NULL */
    int ef_search;      /* 0 = RAG_DEFAULT_EF_SEARCH */
    bool exact;         /* brute force (index scans off) */
    /* The model `vec` was made with (optional). When the collection turns
     * out to have been dropped and recreated with another model or
     * dimension since the caller read it, the query fails with KM_ESTATE
     * instead of running with a vector of the wrong model: read the
     * collection again, re-embed, rerun. */
    const char *embed_model;
};

int rag_parse_mode(const char *s, enum rag_mode *out);
const char *rag_mode_name(enum rag_mode m);

/* Run a query; hits are sorted best first. */
int rag_query_run(struct rag_db *db, const struct rag_query *q,
                  struct rag_hits *out, struct km_err *err);
void rag_hits_free(struct rag_hits *h);
/* {"data":[{"text","score","source_uri","chunk_id","metadata"}...]} as the
 * retrieve endpoint sends it; the string is km_free'd by the caller.
 * Written directly, byte for byte what jansson's compact dump of the same
 * objects gives (metadata: the stored jsonb text without its blanks).
 * KM_EFORMAT for a field that is not valid UTF-8 or a non-finite score. */
int rag_hits_json(const struct rag_hits *h, char **out, struct km_err *err);
/* The same, appended to `b` (KM_ERANGE / KM_ENOMEM from km_buf). */
int rag_hits_json_buf(const struct rag_hits *h, struct km_buf *b, struct km_err *err);
/* Append `s` as a JSON string as jansson writes it: ", \ and control
 * characters escaped (\b \f \n \r \t, else \u00XX), UTF-8 as is.
 * KM_EINVAL (b partly written) when s is not valid UTF-8. */
int rag_json_str(struct km_buf *b, const char *s);

/* Reciprocal rank fusion: for candidates ranked in list a (rank_a, 1-based,
 * 0 = absent) and list b, score = 1/(k+rank_a) + 1/(k+rank_b). */
double rag_rrf(int k, int rank_a, int rank_b);

/* ---- embedded cluster (db.c) -------------------------------------------- */

struct db_status {
    bool running;
    int port;
    char url[512];      /* postgresql://kanoa:...@127.0.0.1:port/kanoa */
    char data_dir[4096];
};

/* Default data dir: $KANOA_DB_DIR, else /var/lib/kanoa-mlops/pgdata as root,
 * else $XDG_DATA_HOME (or ~/.local/share)/kanoa-mlops/pgdata. */
int db_default_dir(char *out, size_t cap, struct km_err *err);
/* initdb on first use, then start on a free loopback port and create the
 * `kanoa` database with the vector extension. As root the server runs as
 * the `postgres` user (PostgreSQL refuses root). */
int db_start(const char *data_dir, struct db_status *st, struct km_err *err);
int db_stop(const char *data_dir, struct km_err *err);
int db_status_get(const char *data_dir, struct db_status *st,
                  struct km_err *err);

#endif
