/* migrate.c - versioned schema migrations and collections.
 *
 * Migrations are numbered SQL scripts applied in order inside one
 * transaction each, serialized across processes with an advisory lock;
 * kanoa.schema_version records what is in place, so rerunning is a no-op.
 * Never edit a released step: append a new one.
 *
 * Why one typmod-less `vector` column: collection names are rows, not
 * identifiers (no dynamic DDL from user input), and pgvector can index an
 * expression `embedding::vector(N)` in a partial index per collection
 * (WHERE collection_id = id). The only DDL built at run time is that index,
 * from two integers read back from the database.
 */
#include "rag/rag_int.h"

#include "base/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIGRATE_LOCK "7203181911" /* advisory lock key: "rag migrate" */

static const char *const migrations[] = {
    /* 1: base schema */
    "CREATE EXTENSION IF NOT EXISTS vector;\n"
    "CREATE SCHEMA IF NOT EXISTS kanoa;\n"
    "CREATE TABLE kanoa.collections (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  name text NOT NULL UNIQUE,\n"
    "  embed_model text NOT NULL,\n"
    "  dim int NOT NULL CHECK (dim BETWEEN 1 AND 2000),\n"
    "  created_at timestamptz NOT NULL DEFAULT now());\n"
    "CREATE TABLE kanoa.documents (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  collection_id bigint NOT NULL REFERENCES kanoa.collections(id) ON DELETE CASCADE,\n"
    "  source_uri text NOT NULL,\n"
    "  content_hash text NOT NULL,\n"
    "  metadata jsonb NOT NULL DEFAULT '{}',\n"
    "  n_chunks int NOT NULL DEFAULT 0,\n"
    "  ingested_at timestamptz NOT NULL DEFAULT now(),\n"
    "  UNIQUE (collection_id, source_uri));\n"
    "CREATE TABLE kanoa.chunks (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  collection_id bigint NOT NULL REFERENCES kanoa.collections(id) ON DELETE CASCADE,\n"
    "  document_id bigint NOT NULL REFERENCES kanoa.documents(id) ON DELETE CASCADE,\n"
    "  chunk_id text NOT NULL,\n"
    "  position int NOT NULL,\n"
    "  token_count int NOT NULL,\n"
    "  text text NOT NULL,\n"
    "  metadata jsonb NOT NULL DEFAULT '{}',\n"
    "  embedding vector NOT NULL,\n"
    "  tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,\n"
    "  UNIQUE (collection_id, chunk_id));\n"
    "CREATE INDEX chunks_document_idx ON kanoa.chunks (document_id);\n"
    "CREATE INDEX chunks_tsv_idx ON kanoa.chunks USING gin (tsv);\n"
    "CREATE INDEX chunks_metadata_idx ON kanoa.chunks USING gin (metadata jsonb_path_ops);\n",
    /* 2: no per-row foreign key checks on chunks. PostgreSQL checks a
     * foreign key with one query per inserted row; schema 1's two (to the
     * collection and to the document) were about a fifth of ingest's
     * per-row cost (bench/rag BENCH_COSTS). Integrity holds by
     * construction: chunks are written only by ingest, in the transaction
     * that inserted their document, with that row's id and collection id
     * (rag__doc_begin). Deleting documents (replace, --prune, a collection's
     * cascade, plain SQL) deletes their chunks through one statement-level
     * trigger: one DELETE per statement, not one check per row. */
    "ALTER TABLE kanoa.chunks DROP CONSTRAINT chunks_collection_id_fkey,\n"
    "  DROP CONSTRAINT chunks_document_id_fkey;\n"
    "CREATE FUNCTION kanoa.documents_deleted() RETURNS trigger\n"
    "  LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  DELETE FROM kanoa.chunks c USING gone g WHERE c.document_id = g.id;\n"
    "  RETURN NULL;\n"
    "END $$;\n"
    "CREATE TRIGGER documents_delete_chunks AFTER DELETE ON kanoa.documents\n"
    "  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT\n"
    "  EXECUTE FUNCTION kanoa.documents_deleted();\n",
    /* 3: cheaper per-document and per-row bookkeeping for ingest (profile
     * of the COPY backend in docs/rag.md). Every document replacement runs
     * a DELETE on documents, usually deleting nothing (a new file); the
     * statement-level trigger ran its PL/pgSQL and its join against chunks
     * for each such statement, at a cost that grows with the table (2% of
     * the COPY backend in a fresh table, 46% after re-ingests). A
     * row-level trigger runs only for documents actually
     * deleted, one indexed DELETE of their chunks each. The chunk id
     * sequence hands out 100 values per backend instead of one at a time
     * (nextval was 1.6%): ids stay unique and increase within a session;
     * values a session did not use are skipped. */
    "DROP TRIGGER documents_delete_chunks ON kanoa.documents;\n"
    "DROP FUNCTION kanoa.documents_deleted();\n"
    "CREATE FUNCTION kanoa.document_deleted() RETURNS trigger\n"
    "  LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  DELETE FROM kanoa.chunks WHERE document_id = OLD.id;\n"
    "  RETURN NULL;\n"
    "END $$;\n"
    "CREATE TRIGGER documents_delete_chunks AFTER DELETE ON kanoa.documents\n"
    "  FOR EACH ROW EXECUTE FUNCTION kanoa.document_deleted();\n"
    "ALTER SEQUENCE kanoa.chunks_id_seq CACHE 100;\n",
    /* 4: the tsvector may come from the client. to_tsvector('english',
     * text) in the generated column was 44% of the COPY backend's per-row
     * CPU; ingest now computes it in the client (tsv.c) and sends it in
     * the COPY. `tsv` becomes a plain column (values kept) that is never
     * NULL. A row inserted without one gets it from a BEFORE INSERT
     * trigger whose WHEN clause the executor checks without calling the
     * function, so rows that carry a tsvector pay only that test; the
     * function is PostgreSQL's built-in C tsvector_update_trigger (the
     * same parse as to_tsvector(config, text) for one column; a PL/pgSQL
     * function doing the same cost 25 us more per row). An UPDATE that
     * changes `text` or touches `tsv` recomputes it from the text
     * (PL/pgSQL: the built-in one skips rows whose text is unchanged), so
     * outside ingest's inserts `tsv` stays what the generated column held.
     * (A BEFORE ROW trigger makes COPY insert row by row instead of in
     * batches: measured in docs/rag.md.) */
    "ALTER TABLE kanoa.chunks ALTER COLUMN tsv DROP EXPRESSION;\n"
    "ALTER TABLE kanoa.chunks ALTER COLUMN tsv SET NOT NULL;\n"
    "CREATE TRIGGER chunks_tsv_insert BEFORE INSERT ON kanoa.chunks\n"
    "  FOR EACH ROW WHEN (NEW.tsv IS NULL)\n"
    "  EXECUTE FUNCTION tsvector_update_trigger(tsv, 'pg_catalog.english', text);\n"
    "CREATE FUNCTION kanoa.chunk_tsv() RETURNS trigger\n"
    "  LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  NEW.tsv := to_tsvector('pg_catalog.english', NEW.text);\n"
    "  RETURN NEW;\n"
    "END $$;\n"
    "CREATE TRIGGER chunks_tsv_update BEFORE UPDATE OF text, tsv ON kanoa.chunks\n"
    "  FOR EACH ROW WHEN (NEW.text IS DISTINCT FROM OLD.text OR NEW.tsv IS DISTINCT FROM OLD.tsv)\n"
    "  EXECUTE FUNCTION kanoa.chunk_tsv();\n",
};

#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

static int current_version(struct rag_db *db, int *v, struct km_err *err)
{
    struct rag__res r;
    int rc = rag__query(db,
                        "SELECT coalesce(max(version), 0) FROM kanoa.schema_version",
                        0, NULL, &r, err);
    if (rc == KM_OK)
        *v = atoi(rag__val(&r, 0, 0));
    rag__res_free(&r);
    return rc;
}

static int apply_step(struct rag_db *db, int step, struct km_err *err)
{
    char num[16];
    snprintf(num, sizeof num, "%d", step);
    const char *p[1] = {num};
    int rc = rag_exec(db, migrations[step - 1], err);
    if (rc == KM_OK)
        rc = rag__cmd(db, "INSERT INTO kanoa.schema_version (version) VALUES ($1::int)",
                      1, p, err);
    if (rc != KM_OK)
        km_err_prefix(err, "migration %d", step);
    return rc;
}

/* Iterative index scans (hnsw.iterative_scan) need pgvector 0.8. */
static int check_pgvector(struct rag_db *db, struct km_err *err)
{
    struct rag__res r;
    int rc = rag__query(db, "SELECT extversion, string_to_array(split_part(extversion, '-', 1),"
                            " '.')::int[] >= '{0,8}' FROM pg_extension WHERE extname = 'vector'",
                        0, NULL, &r, err);
    if (rc == KM_OK && r.ntuples == 1 && strcmp(rag__val(&r, 0, 1), "t") != 0)
        rc = km_fail(err, KM_EUNSUPPORTED, "pgvector %s is installed; kanoa-mlops needs 0.8 "
                     "or later (iterative index scans)", rag__val(&r, 0, 0));
    rag__res_free(&r);
    return rc;
}

int rag_migrate(struct rag_db *db, int *version, struct km_err *err)
{
    int v = 0;
    int rc = rag__begin(db, err);
    if (rc != KM_OK)
        return rc;
    rc = rag_exec(db,
                  "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ");\n"
                  "CREATE SCHEMA IF NOT EXISTS kanoa;\n"
                  "CREATE TABLE IF NOT EXISTS kanoa.schema_version (\n"
                  "  version int PRIMARY KEY,\n"
                  "  applied_at timestamptz NOT NULL DEFAULT now())",
                  err);
    if (rc == KM_OK)
        rc = current_version(db, &v, err);
    if (rc == KM_OK && v > N_MIGRATIONS)
        rc = km_fail(err, KM_EUNSUPPORTED,
                     "database schema version %d is newer than this kanoa-mlops "
                     "(knows up to %d)", v, N_MIGRATIONS);
    for (int step = v + 1; step <= N_MIGRATIONS && rc == KM_OK; step++)
        rc = apply_step(db, step, err);
    if (rc == KM_OK)
        rc = rag__commit(db, err);
    if (rc != KM_OK) {
        rag__rollback(db);
        return rc;
    }
    *version = N_MIGRATIONS;
    return check_pgvector(db, err);
}

/* ---- collections -------------------------------------------------------- */

#define COLLECTION_COLS                                                       \
    "c.id, c.name, c.embed_model, c.dim,"                                     \
    " (SELECT count(*) FROM kanoa.documents d WHERE d.collection_id = c.id)," \
    " (SELECT count(*) FROM kanoa.chunks k WHERE k.collection_id = c.id)"

static void fill_collection(const struct rag__res *r, int row,
                            struct rag_collection *c)
{
    memset(c, 0, sizeof *c);
    c->id = atoll(rag__val(r, row, 0));
    snprintf(c->name, sizeof c->name, "%s", rag__val(r, row, 1));
    snprintf(c->embed_model, sizeof c->embed_model, "%s", rag__val(r, row, 2));
    c->dim = atoi(rag__val(r, row, 3));
    c->n_documents = atoll(rag__val(r, row, 4));
    c->n_chunks = atoll(rag__val(r, row, 5));
}

static int check_name(const char *name, struct km_err *err)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= sizeof((struct rag_collection *)0)->name)
        return km_fail(err, KM_EINVAL, "collection name must be 1 to 255 bytes (got %zu)", n);
    return KM_OK;
}

int rag_collection_get(struct rag_db *db, const char *name,
                       struct rag_collection *out, struct km_err *err)
{
    int rc = check_name(name, err);
    if (rc != KM_OK)
        return rc;
    const char *p[1] = {name};
    struct rag__res r;
    /* No counts here: this runs before every query. */
    rc = rag__query(db, "SELECT c.id, c.name, c.embed_model, c.dim, -1, -1"
                        " FROM kanoa.collections c WHERE c.name = $1",
                    1, p, &r, err);
    if (rc == KM_OK && r.ntuples == 0)
        rc = km_fail(err, KM_ENOTFOUND, "collection '%s' does not exist", name);
    if (rc == KM_OK)
        fill_collection(&r, 0, out);
    rag__res_free(&r);
    return rc;
}

int rag_collection_get_cached(struct rag_db *db, const char *name,
                              struct rag_collection *out, bool *cached,
                              struct km_err *err)
{
    *cached = rag__cache_get(db, name, out);
    if (*cached)
        return KM_OK;
    int rc = rag_collection_get(db, name, out, err);
    if (rc == KM_OK)
        rag__cache_put(db, out);
    return rc;
}

void rag_collection_forget(struct rag_db *db)
{
    rag__cache_drop(db);
}

int rag_collection_ensure(struct rag_db *db, const char *name,
                          const char *model, int dim,
                          struct rag_collection *out, struct km_err *err)
{
    int rc = check_name(name, err);
    if (rc != KM_OK)
        return rc;
    if (dim < 1 || dim > RAG_MAX_DIM)
        return km_fail(err, KM_EINVAL,
                       "embedding dimension %d is outside 1..%d (the HNSW limit)",
                       dim, RAG_MAX_DIM);
    char d[16];
    snprintf(d, sizeof d, "%d", dim);
    const char *p[3] = {name, model, d};
    rc = rag__cmd(db, "INSERT INTO kanoa.collections (name, embed_model, dim)"
                      " VALUES ($1, $2, $3::int) ON CONFLICT (name) DO NOTHING",
                  3, p, err);
    if (rc == KM_OK)
        rc = rag_collection_get(db, name, out, err);
    if (rc != KM_OK)
        return rc;
    if (strcmp(out->embed_model, model) != 0 || out->dim != dim)
        return km_fail(err, KM_EINVAL,
                       "collection '%s' holds embeddings of model '%s' (dim %d); "
                       "refusing to add model '%s' (dim %d)",
                       name, out->embed_model, out->dim, model, dim);
    return KM_OK;
}

int rag_collection_list(struct rag_db *db, struct rag_collection **out,
                        size_t *n, struct km_err *err)
{
    *out = NULL;
    *n = 0;
    struct rag__res r;
    int rc = rag__query(db, "SELECT " COLLECTION_COLS
                            " FROM kanoa.collections c ORDER BY c.name",
                        0, NULL, &r, err);
    if (rc == KM_OK && r.ntuples > 0) {
        *out = km_calloc((size_t)r.ntuples, sizeof **out);
        if (!*out)
            rc = km_fail(err, KM_ENOMEM, "out of memory listing collections");
    }
    for (int i = 0; rc == KM_OK && i < r.ntuples; i++)
        fill_collection(&r, i, &(*out)[i]);
    if (rc == KM_OK)
        *n = (size_t)r.ntuples;
    rag__res_free(&r);
    return rc;
}

int rag_collection_index(struct rag_db *db, const struct rag_collection *c,
                         struct km_err *err)
{
    char sql[512];
    /* Both numbers come from kanoa.collections (bigint, checked int). */
    snprintf(sql, sizeof sql,
             "CREATE INDEX IF NOT EXISTS chunks_hnsw_%lld ON kanoa.chunks USING hnsw"
             " ((embedding::vector(%d)) vector_cosine_ops)"
             " WITH (m = 16, ef_construction = 64) WHERE collection_id = %lld",
             c->id, c->dim, c->id);
    int rc = rag_exec(db, sql, err);
    if (rc != KM_OK)
        km_err_prefix(err, "building the HNSW index of collection '%s'", c->name);
    return rc;
}
