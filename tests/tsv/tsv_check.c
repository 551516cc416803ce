/* tsv_check.c - tests/tsv/run.sh's helper: rag__tsv_english against a real
 * PostgreSQL 15 through libpq.
 *
 *   tsv_check vocab FILE.gguf...   print the ASCII alphabetic words of the
 *                                  GGUF vocabularies (tokenizer.ggml.tokens,
 *                                  word-start marks removed), one a line
 *   tsv_check words URL FILE       stem every word of FILE (one a line) and
 *                                  compare with ts_lexize('english_stem', w),
 *                                  2000 words a query (unnest of two arrays)
 *   tsv_check texts URL FILE       FILE: NUL-terminated records, first byte
 *                                  the category (R random, D document, S
 *                                  character soup), then
 *                                  the text. Every text the fast path accepts
 *                                  is sent as a binary tsvector parameter and
 *                                  $1::tsvector::text compared with
 *                                  to_tsvector('english', $2)::text.
 * Prints each mismatch and a summary line; exits 1 on any mismatch.
 */
#include "base/buf.h"
#include "base/mem.h"
#include "engine/gguf.h"
#include "rag/rag_int.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 2000

static int vocab(int argc, char **argv)
{
    for (int a = 0; a < argc; a++) {
        struct gguf_file *f = NULL;
        struct km_err err = {0};
        int64_t k;
        if (gguf_open(argv[a], &f, &err) != KM_OK) {
            fprintf(stderr, "%s: %s\n", argv[a], km_err_text(&err));
            return 1;
        }
        k = gguf_find_key(f, "tokenizer.ggml.tokens");
        for (uint64_t j = 0; k >= 0 && j < gguf_kv_arr_len(f, k); j++) {
            uint64_t n = 0;
            const char *s = gguf_kv_arr_str(f, k, j, &n);
            size_t i = 0;
            bool alpha = true;
            if (s == NULL)
                continue;
            if (n >= 2 && (unsigned char)s[0] == 0xc4 && (unsigned char)s[1] == 0xa0)
                i = 2; /* GPT-2 'G.' space mark */
            else if (n >= 3 && (unsigned char)s[0] == 0xe2 && (unsigned char)s[1] == 0x96 &&
                     (unsigned char)s[2] == 0x81)
                i = 3; /* SentencePiece space mark */
            else if (n >= 2 && s[0] == '#' && s[1] == '#')
                i = 2; /* WordPiece continuation */
            for (size_t c = i; c < n; c++)
                if (!((s[c] >= 'a' && s[c] <= 'z') || (s[c] >= 'A' && s[c] <= 'Z')))
                    alpha = false;
            if (alpha && i < n)
                printf("%.*s\n", (int)(n - i), s + i);
        }
        gguf_close(f);
    }
    return 0;
}

/* Our lexeme for a single word: "" for a stopword; NULL when not handled. */
static bool stem_of(const char *w, struct km_buf *b, const char **lex)
{
    bool ok = false;
    struct km_err err = {0};
    km_buf_reset(b);
    if (rag__tsv_english(w, strlen(w), b, &ok, &err) != KM_OK || !ok)
        return false;
    *lex = b->len > 4 ? b->data + 4 : "";
    return true;
}

static long check_batch(PGconn *c, struct km_buf *wa, struct km_buf *sa, long *mism)
{
    const char *sql =
        "SELECT w, s, coalesce((ts_lexize('english_stem', w))[1], '') "
        "FROM unnest($1::text[], $2::text[]) AS u(w, s) "
        "WHERE coalesce((ts_lexize('english_stem', w))[1], '') <> s";
    const char *vals[2];
    PGresult *r;
    long rows;
    km_buf_putc(wa, '}');
    km_buf_putc(sa, '}');
    vals[0] = wa->data;
    vals[1] = sa->data;
    r = PQexecParams(c, sql, 2, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "words query: %s", PQerrorMessage(c));
        PQclear(r);
        return -1;
    }
    rows = PQntuples(r);
    for (long i = 0; i < rows; i++)
        printf("stem mismatch: %s: ours [%s] server [%s]\n", PQgetvalue(r, (int)i, 0),
               PQgetvalue(r, (int)i, 1), PQgetvalue(r, (int)i, 2));
    *mism += rows;
    PQclear(r);
    km_buf_reset(wa);
    km_buf_reset(sa);
    return 0;
}

static int words(PGconn *c, FILE *in)
{
    char line[512];
    struct km_buf wa, sa, b;
    long n = 0, inbatch = 0, mism = 0, skipped = 0;
    int rc = 0;
    km_buf_init(&wa, 1 << 24);
    km_buf_init(&sa, 1 << 24);
    km_buf_init(&b, 1 << 16);
    while (rc == 0 && fgets(line, sizeof line, in) != NULL) {
        const char *lex;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0')
            continue;
        if (!stem_of(line, &b, &lex)) {
            skipped++;
            continue;
        }
        km_buf_puts(&wa, inbatch ? ",\"" : "{\""); /* quoted: NULL is a word */
        km_buf_puts(&wa, line);
        km_buf_putc(&wa, '"');
        km_buf_puts(&sa, inbatch ? ",\"" : "{\"");
        km_buf_puts(&sa, lex);
        km_buf_putc(&sa, '"');
        n++;
        if (++inbatch == BATCH) {
            rc = check_batch(c, &wa, &sa, &mism) ? 1 : 0;
            inbatch = 0;
        }
    }
    if (rc == 0 && inbatch > 0)
        rc = check_batch(c, &wa, &sa, &mism) ? 1 : 0;
    printf("words: %ld compared, %ld mismatched, %ld not handled\n", n, mism, skipped);
    km_buf_free(&wa);
    km_buf_free(&sa);
    km_buf_free(&b);
    return rc != 0 || mism != 0 || n == 0;
}

/* Compare one accepted text; returns 1 on a mismatch, -1 on a query error. */
static int check_text(PGconn *c, const char *text, const struct km_buf *tsv)
{
    const char *vals[2] = {tsv->data, text};
    int lens[2] = {(int)tsv->len, 0};
    int fmts[2] = {1, 0};
    PGresult *r = PQexecParams(c,
                               "SELECT $1::tsvector::text, to_tsvector('english', $2)::text",
                               2, NULL, vals, lens, fmts, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "texts query: %s", PQerrorMessage(c));
        rc = -1;
    } else if (strcmp(PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1)) != 0) {
        printf("text mismatch: [%s]\n  ours   %s\n  server %s\n", text, PQgetvalue(r, 0, 0),
               PQgetvalue(r, 0, 1));
        rc = 1;
    }
    PQclear(r);
    return rc;
}

static int texts(PGconn *c, FILE *in)
{
    struct km_buf rec, tsv;
    long total[3] = {0, 0, 0}, acc[3] = {0, 0, 0}, mism = 0;
    int ch, rc = 0;
    km_buf_init(&rec, 1 << 24);
    km_buf_init(&tsv, 1 << 24);
    while (rc >= 0 && (ch = getc(in)) != EOF) {
        bool ok = false;
        struct km_err err = {0};
        int cat;
        if (ch != '\0') {
            km_buf_putc(&rec, (char)ch);
            continue;
        }
        if (rec.len == 0)
            continue;
        cat = rec.data[0] == 'R' ? 0 : rec.data[0] == 'D' ? 1 : 2;
        total[cat]++;
        km_buf_reset(&tsv);
        if (rag__tsv_english(rec.data + 1, rec.len - 1, &tsv, &ok, &err) != KM_OK) {
            fprintf(stderr, "rag__tsv_english: %s\n", km_err_text(&err));
            rc = -1;
        } else if (ok) {
            acc[cat]++;
            rc = check_text(c, rec.data + 1, &tsv);
            mism += rc > 0;
        }
        km_buf_reset(&rec);
    }
    printf("random texts: %ld of %ld accepted (%ld%%)\n", acc[0], total[0],
           total[0] ? acc[0] * 100 / total[0] : 0);
    printf("document texts: %ld of %ld accepted (%ld%%)\n", acc[1], total[1],
           total[1] ? acc[1] * 100 / total[1] : 0);
    printf("character soup: %ld of %ld accepted\n", acc[2], total[2]);
    printf("texts: %ld compared, %ld mismatched\n", acc[0] + acc[1] + acc[2], mism);
    km_buf_free(&rec);
    km_buf_free(&tsv);
    return rc < 0 || mism != 0;
}

int main(int argc, char **argv)
{
    PGconn *c = NULL;
    FILE *in = NULL;
    int rc = 2;
    if (argc >= 2 && strcmp(argv[1], "vocab") == 0)
        return vocab(argc - 2, argv + 2);
    if (argc != 4) {
        fprintf(stderr, "usage: tsv_check vocab FILE... | words URL FILE | texts URL FILE\n");
        return 2;
    }
    c = PQconnectdb(argv[2]);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "connect: %s", PQerrorMessage(c));
        goto out;
    }
    in = fopen(argv[3], "rb");
    if (in == NULL) {
        perror(argv[3]);
        goto out;
    }
    rc = strcmp(argv[1], "words") == 0 ? words(c, in) : texts(c, in);
out:
    if (in != NULL)
        fclose(in);
    PQfinish(c);
    return rc;
}
