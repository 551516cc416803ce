/* pg.c - the only libpq adapter: connections, PGresult -> km_err,
 * transactions and COPY FROM STDIN. See rag_int.h for the contract. */
#include "rag/rag_int.h"

#include "base/mem.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rag_db {
    PGconn *conn;
    char *url;                       /* as given to rag_open (rag__db_clone) */
    bool cached;
    struct rag_collection cache;
    int ef_search;                   /* session hnsw.ef_search; 0 = unknown */
    int iterative;                   /* hnsw.iterative_scan: -1 unknown, 0 off, 1 strict */
    char *prepared[RAG__PREPARED];   /* SQL of statement kq<i>, NULL = free */
    int prep_next;                   /* slot to reuse next */
    bool prep_reset;                 /* DEALLOCATE ALL before the next pipeline */
};

double rag__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* libpq messages end in a newline; keep the first line only. */
static void first_line(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    while (src && src[n] && src[n] != '\n' && n + 1 < cap) {
        dst[n] = src[n];
        n++;
    }
    dst[n] = '\0';
}

static int conn_error(struct rag_db *db, const char *what, struct km_err *err)
{
    char line[400];
    first_line(line, sizeof line, PQerrorMessage(db->conn));
    if (PQstatus(db->conn) == CONNECTION_BAD)
        return km_fail(err, KM_ENET, "lost the database connection during %s: %s",
                       what, line[0] ? line : "server closed the connection");
    return km_fail(err, KM_EDB, "database error during %s: %s", what, line);
}

static int result_error(struct rag_db *db, PGresult *r, struct km_err *err)
{
    if (!r || PQstatus(db->conn) == CONNECTION_BAD)
        return conn_error(db, "a query", err);
    char line[400];
    first_line(line, sizeof line, PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    /* 08xxx connection exceptions, 57P0x server shutdown/termination */
    if (state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0))
        return km_fail(err, KM_ENET, "lost the database connection during a query: %s "
                       "(SQLSTATE %s)", line, state);
    return km_fail(err, KM_EDB, "database error: %s (SQLSTATE %s)", line,
                   state ? state : "?");
}

int rag_open(const char *url, struct rag_db **out, struct km_err *err)
{
    *out = NULL;
    struct rag_db *db = km_calloc(1, sizeof *db);
    if (!db)
        return km_fail(err, KM_ENOMEM, "out of memory opening a database connection");
    db->iterative = -1;
    db->url = km_strdup(url);
    db->conn = db->url ? PQconnectdb(url) : NULL;
    if (!db->conn) {
        km_free(db->url);
        km_free(db);
        return km_fail(err, KM_ENOMEM, "out of memory in libpq connecting");
    }
    if (PQstatus(db->conn) != CONNECTION_OK) {
        char line[400];
        first_line(line, sizeof line, PQerrorMessage(db->conn));
        km_fail(err, KM_ENET, "cannot connect to the database: %s", line);
        rag_close(db);
        return KM_ENET;
    }
    /* Quiet NOTICEs (e.g. "relation already exists, skipping"). */
    PQclear(PQexec(db->conn, "SET client_min_messages = warning"));
    *out = db;
    return KM_OK;
}

void rag_close(struct rag_db *db)
{
    if (!db)
        return;
    PQfinish(db->conn);
    km_free(db->url);
    for (int i = 0; i < RAG__PREPARED; i++)
        km_free(db->prepared[i]);
    km_free(db);
}

int rag__db_clone(struct rag_db *db, struct rag_db **out, struct km_err *err)
{
    return rag_open(db->url, out, err);
}

int rag_exec(struct rag_db *db, const char *sql, struct km_err *err)
{
    rag__settings_forget(db); /* it may SET anything */
    PGresult *r = PQexec(db->conn, sql);
    int st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    int rc = KM_OK;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = result_error(db, r, err);
    PQclear(r);
    return rc;
}

int rag__query(struct rag_db *db, const char *sql, int n_params,
               const char *const *params, struct rag__res *res,
               struct km_err *err)
{
    res->pg = NULL;
    res->ntuples = 0;
    PGresult *r = PQexecParams(db->conn, sql, n_params, NULL, params, NULL,
                               NULL, 0);
    int st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int rc = result_error(db, r, err);
        PQclear(r);
        return rc;
    }
    res->pg = r;
    res->ntuples = PQntuples(r);
    return KM_OK;
}

int rag__cmd(struct rag_db *db, const char *sql, int n_params,
             const char *const *params, struct km_err *err)
{
    struct rag__res r;
    int rc = rag__query(db, sql, n_params, params, &r, err);
    rag__res_free(&r);
    return rc;
}

const char *rag__val(const struct rag__res *r, int row, int col)
{
    return PQgetvalue(r->pg, row, col);
}

bool rag__isnull(const struct rag__res *r, int row, int col)
{
    return PQgetisnull(r->pg, row, col) != 0;
}

void rag__res_free(struct rag__res *r)
{
    if (!r)
        return;
    PQclear(r->pg);
    r->pg = NULL;
    r->ntuples = 0;
}

int rag__begin(struct rag_db *db, struct km_err *err)
{
    return rag_exec(db, "BEGIN", err);
}

int rag__commit(struct rag_db *db, struct km_err *err)
{
    return rag_exec(db, "COMMIT", err);
}

void rag__rollback(struct rag_db *db)
{
    if (PQstatus(db->conn) != CONNECTION_OK)
        return;
    PQclear(PQexec(db->conn, "ROLLBACK"));
}

int rag__copy_begin(struct rag_db *db, const char *sql, struct km_err *err)
{
    PGresult *r = PQexec(db->conn, sql);
    int rc = KM_OK;
    if (!r || PQresultStatus(r) != PGRES_COPY_IN)
        rc = result_error(db, r, err);
    PQclear(r);
    return rc;
}

int rag__copy_put(struct rag_db *db, const char *p, size_t n,
                  struct km_err *err)
{
    while (n > 0) {
        int part = n > (1u << 30) ? (1 << 30) : (int)n;
        if (PQputCopyData(db->conn, p, part) != 1)
            return conn_error(db, "COPY", err);
        p += part;
        n -= (size_t)part;
    }
    return KM_OK;
}

/* Read results until libpq has none left; report the first failure. */
static int drain(struct rag_db *db, struct km_err *err)
{
    int rc = KM_OK;
    for (;;) {
        PGresult *r = PQgetResult(db->conn);
        if (!r)
            break;
        if (rc == KM_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
            rc = result_error(db, r, err);
        PQclear(r);
    }
    if (rc == KM_OK && PQstatus(db->conn) == CONNECTION_BAD)
        rc = conn_error(db, "COPY", err);
    return rc;
}

int rag__copy_end(struct rag_db *db, struct km_err *err)
{
    if (PQputCopyEnd(db->conn, NULL) != 1)
        return conn_error(db, "COPY", err);
    return drain(db, err);
}

void rag__copy_abort(struct rag_db *db, const char *why)
{
    if (PQstatus(db->conn) != CONNECTION_OK)
        return;
    PQputCopyEnd(db->conn, why);
    struct km_err ignored;
    drain(db, &ignored);
}

int rag_resolve_url(const char *given, char **out, struct km_err *err)
{
    *out = NULL;
    const char *u = given && given[0] ? given : getenv("KANOA_DATABASE_URL");
    if (u && u[0]) {
        *out = km_strdup(u);
        return *out ? KM_OK : km_fail(err, KM_ENOMEM, "out of memory");
    }
    char dir[4096];
    struct db_status st;
    int rc = db_default_dir(dir, sizeof dir, err);
    if (rc == KM_OK)
        rc = db_status_get(dir, &st, err);
    if (rc != KM_OK || !st.running || !st.url[0])
        return km_fail(err, KM_ENOTFOUND,
                       "no database: pass --database-url, set KANOA_DATABASE_URL "
                       "or run 'kanoa-mlops db start'");
    *out = km_strdup(st.url);
    return *out ? KM_OK : km_fail(err, KM_ENOMEM, "out of memory");
}

bool rag__cache_get(struct rag_db *db, const char *name, struct rag_collection *out)
{
    if (!db->cached || strcmp(db->cache.name, name) != 0)
        return false;
    *out = db->cache;
    return true;
}

void rag__cache_put(struct rag_db *db, const struct rag_collection *c)
{
    db->cache = *c;
    db->cached = true;
}

void rag__cache_drop(struct rag_db *db)
{
    db->cached = false;
}

/* Results of statement i: rows or a command status, then a NULL. */
static int pipeline_read(struct rag_db *db, struct rag__res *res, int rc,
                         struct km_err *err)
{
    PGresult *r = PQgetResult(db->conn);
    int st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (rc == KM_OK && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = result_error(db, r, err);
    if (rc == KM_OK && st == PGRES_TUPLES_OK) {
        res->pg = r;
        res->ntuples = PQntuples(r);
        r = NULL;
    }
    PQclear(r);
    if (PQstatus(db->conn) == CONNECTION_BAD)
        return rc == KM_OK ? conn_error(db, "a query", err) : rc;
    PGresult *end = PQgetResult(db->conn); /* NULL after each statement */
    PQclear(end);
    return rc;
}

int rag__session_ef(const struct rag_db *db)
{
    return db->ef_search;
}

int rag__session_iterative(const struct rag_db *db)
{
    return db->iterative;
}

void rag__session_set(struct rag_db *db, int ef_search, int iterative)
{
    db->ef_search = ef_search;
    db->iterative = iterative;
}

void rag__settings_forget(struct rag_db *db)
{
    db->ef_search = 0;
    db->iterative = -1;
}

/* After a failed pipeline nothing is known: its SETs were rolled back and
 * a PREPARE after the failure never ran. */
static void forget_all(struct rag_db *db)
{
    rag__settings_forget(db);
    for (int i = 0; i < RAG__PREPARED; i++) {
        km_free(db->prepared[i]);
        db->prepared[i] = NULL;
    }
    db->prep_reset = true;
}

/* Queue what runs st as prepared statement kq<slot>: DEALLOCATE of the
 * slot's previous statement and PREPARE when new (each one result more:
 * *extra counts them), then the execution. 1 on success. */
static int send_prepared(struct rag_db *db, const struct rag__stmt *st, int *extra)
{
    int slot = -1;
    char name[16], dealloc[32];
    for (int i = 0; i < RAG__PREPARED && slot < 0; i++)
        if (db->prepared[i] && strcmp(db->prepared[i], st->sql) == 0)
            slot = i;
    if (slot < 0) {
        slot = db->prep_next;
        db->prep_next = (db->prep_next + 1) % RAG__PREPARED;
        snprintf(name, sizeof name, "kq%d", slot);
        snprintf(dealloc, sizeof dealloc, "DEALLOCATE kq%d", slot);
        if (db->prepared[slot] &&
            PQsendQueryParams(db->conn, dealloc, 0, NULL, NULL, NULL, NULL, 0) != 1)
            return 0;
        *extra += db->prepared[slot] != NULL;
        km_free(db->prepared[slot]);
        db->prepared[slot] = km_strdup(st->sql);
        if (!db->prepared[slot] ||
            PQsendPrepare(db->conn, name, st->sql, st->n_params, NULL) != 1)
            return 0;
        (*extra)++;
    }
    snprintf(name, sizeof name, "kq%d", slot);
    return PQsendQueryPrepared(db->conn, name, st->n_params, st->params, st->lengths,
                               st->formats, 0);
}

/* Queue the statements; owner[j] = the statement of the j-th result (-1
 * for DEALLOCATE / PREPARE results). Returns how many results to read. */
static int send_all(struct rag_db *db, const struct rag__stmt *st, int n, int *owner,
                    bool *ok)
{
    int m = 0;
    *ok = true;
    if (db->prep_reset) {
        *ok = PQsendQueryParams(db->conn, "DEALLOCATE ALL", 0, NULL, NULL, NULL, NULL, 0) == 1;
        owner[m++] = -1;
        db->prep_reset = !*ok;
    }
    for (int i = 0; i < n && *ok; i++) {
        int extra = 0;
        *ok = st[i].prepare
              ? send_prepared(db, &st[i], &extra) == 1
              : PQsendQueryParams(db->conn, st[i].sql, st[i].n_params, NULL,
                                  st[i].params, st[i].lengths, st[i].formats, 0) == 1;
        while (extra-- > 0)
            owner[m++] = -1;
        if (*ok)
            owner[m++] = i;
    }
    return m;
}

int rag__pipeline(struct rag_db *db, const struct rag__stmt *st, int n,
                  struct rag__res *res, struct km_err *err)
{
    int owner[3 * 16 + 1];
    for (int i = 0; i < n; i++)
        res[i] = (struct rag__res){NULL, 0};
    if (n > 16)
        return km_fail(err, KM_EINVAL, "a pipeline of %d statements (at most 16)", n);
    if (PQenterPipelineMode(db->conn) != 1)
        return conn_error(db, "a query pipeline", err);
    bool ok;
    int rc = KM_OK, m = send_all(db, st, n, owner, &ok);
    if (!ok || PQpipelineSync(db->conn) != 1)
        rc = conn_error(db, "a query pipeline", err);
    for (int j = 0; j < m && PQstatus(db->conn) != CONNECTION_BAD; j++) {
        struct rag__res scratch = {NULL, 0};
        rc = pipeline_read(db, owner[j] >= 0 ? &res[owner[j]] : &scratch, rc, err);
        rag__res_free(&scratch);
    }
    for (int guard = 0; guard < 4 && PQstatus(db->conn) != CONNECTION_BAD; guard++) {
        PGresult *r = PQgetResult(db->conn); /* the sync's PGRES_PIPELINE_SYNC */
        ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        PQclear(r);
        if (s == PGRES_PIPELINE_SYNC)
            break;
    }
    if (PQstatus(db->conn) != CONNECTION_BAD)
        PQexitPipelineMode(db->conn);
    if (rc == KM_OK && PQstatus(db->conn) == CONNECTION_BAD)
        rc = conn_error(db, "a query pipeline", err);
    if (rc != KM_OK) {
        forget_all(db);
        for (int i = 0; i < n; i++)
            rag__res_free(&res[i]);
    }
    return rc;
}
