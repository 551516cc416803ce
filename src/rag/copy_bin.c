/* copy_bin.c - PostgreSQL binary COPY encoder (format in rag.h) and the
 * row of kanoa.chunks that ingest sends (rag__copy_chunk, rag_int.h).
 *
 * Field payloads follow each type's *_recv function: int4/int8 big-endian,
 * text raw UTF-8 bytes, jsonb a version byte 1 then the JSON text,
 * pgvector's vector uint16 dim, uint16 unused (0), dim big-endian float4,
 * and tsvector what tsvectorrecv reads (tsv.c writes it).
 */
#include "rag/rag_int.h"

#include <arpa/inet.h>
#include <math.h>
#include <string.h>

static const char copy_signature[11] = "PGCOPY\n\377\r\n\0";

static int put_be16(struct km_buf *b, uint16_t v)
{
    unsigned char p[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    return km_buf_append(b, p, 2);
}

static int put_be32(struct km_buf *b, uint32_t v)
{
    unsigned char p[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    return km_buf_append(b, p, 4);
}

int rag_copy_header(struct km_buf *b)
{
    int rc = km_buf_append(b, copy_signature, sizeof copy_signature);
    if (rc == KM_OK)
        rc = put_be32(b, 0); /* flags: no OIDs */
    if (rc == KM_OK)
        rc = put_be32(b, 0); /* header extension length */
    return rc;
}

int rag_copy_trailer(struct km_buf *b)
{
    return put_be16(b, 0xffff);
}

int rag_copy_tuple(struct km_buf *b, int n_fields)
{
    if (n_fields < 0 || n_fields > 1600)
        return KM_EINVAL;
    return put_be16(b, (uint16_t)n_fields);
}

int rag_copy_null(struct km_buf *b)
{
    return put_be32(b, 0xffffffffu);
}

int rag_copy_int4(struct km_buf *b, int32_t v)
{
    int rc = put_be32(b, 4);
    return rc == KM_OK ? put_be32(b, (uint32_t)v) : rc;
}

int rag_copy_int8(struct km_buf *b, int64_t v)
{
    uint64_t u = (uint64_t)v;
    int rc = put_be32(b, 8);
    if (rc == KM_OK)
        rc = put_be32(b, (uint32_t)(u >> 32));
    return rc == KM_OK ? put_be32(b, (uint32_t)u) : rc;
}

int rag_copy_text(struct km_buf *b, const char *s, size_t len)
{
    if (len > 0x3fffffff)
        return KM_ERANGE;
    int rc = put_be32(b, (uint32_t)len);
    return rc == KM_OK ? km_buf_append(b, s, len) : rc;
}

int rag_copy_jsonb(struct km_buf *b, const char *json, size_t len)
{
    if (len > 0x3fffffff - 1)
        return KM_ERANGE;
    int rc = put_be32(b, (uint32_t)(len + 1));
    if (rc == KM_OK)
        rc = km_buf_append(b, "\1", 1); /* jsonb binary format version */
    return rc == KM_OK ? km_buf_append(b, json, len) : rc;
}

/* The big-endian bytes of u at p (no alignment needed). */
static void store_be32(char *p, uint32_t u)
{
    u = htonl(u);
    memcpy(p, &u, 4);
}

/* One reservation and the elements written in place: this runs for every
 * element of every row ingest sends (384 per chunk for bge-small). */
int rag_copy_vector(struct km_buf *b, const float *v, size_t dim)
{
    if (dim == 0 || dim > 16000)
        return KM_EINVAL;
    for (size_t i = 0; i < dim; i++)
        if (!isfinite(v[i]))
            return KM_EINVAL;
    size_t n = 8 + 4 * dim;
    int rc = km_buf_reserve(b, n);
    if (rc != KM_OK)
        return rc;
    char *p = b->data + b->len;
    store_be32(p, (uint32_t)(4 + 4 * dim));
    p[4] = (char)(dim >> 8);
    p[5] = (char)dim;
    p[6] = p[7] = 0;
    for (size_t i = 0; i < dim; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        store_be32(p + 8 + 4 * i, u);
    }
    b->len += n;
    b->data[b->len] = '\0';
    return KM_OK;
}

/* The tsv field: a length word, then rag__tsv_english's bytes written in
 * place behind it and the length patched in; when it does not handle the
 * text, the word becomes -1 (NULL) and nothing follows. */
static int copy_tsv(struct km_buf *b, const char *text, size_t len, bool *ok,
                    struct km_err *err)
{
    size_t at = b->len;
    *ok = false;
    int rc = put_be32(b, 0xffffffffu);
    if (rc == KM_OK)
        rc = rag__tsv_english(text, len, b, ok, err);
    if (rc != KM_OK || !*ok) {
        *ok = false;
        b->len = rc == KM_OK ? at + 4 : at; /* nothing of a refused text stays */
        if (b->data)
            b->data[b->len] = '\0';
        return rc;
    }
    size_t n = b->len - at - 4;
    if (n > 0x3fffffff)
        return KM_ERANGE;
    store_be32(b->data + at, (uint32_t)n);
    return KM_OK;
}

int rag__copy_chunk(struct km_buf *b, const struct rag__chunk_row *r, bool *client_tsv,
                    struct km_err *err)
{
    *client_tsv = false;
    int rc = rag_copy_tuple(b, RAG__CHUNKS_FIELDS);
    if (rc == KM_OK) rc = rag_copy_int8(b, r->collection_id);
    if (rc == KM_OK) rc = rag_copy_int8(b, r->document_id);
    if (rc == KM_OK) rc = rag_copy_text(b, r->chunk_id, r->chunk_id_len);
    if (rc == KM_OK) rc = rag_copy_int4(b, r->position);
    if (rc == KM_OK) rc = rag_copy_int4(b, r->tokens);
    if (rc == KM_OK) rc = rag_copy_text(b, r->text, r->text_len);
    if (rc == KM_OK) rc = rag_copy_jsonb(b, r->meta, r->meta_len);
    if (rc == KM_OK) rc = rag_copy_vector(b, r->vec, r->dim);
    if (rc == KM_OK && r->server_tsv)
        rc = rag_copy_null(b);
    else if (rc == KM_OK)
        rc = copy_tsv(b, r->text, r->text_len, client_tsv, err);
    return rc;
}
