/* tsv.c - to_tsvector('english', text) in the client (contract in
 * rag_int.h). Work in progress: handles no text yet, so every chunk's
 * tsvector is computed by the server. */
#include "rag/rag_int.h"

int rag__tsv_english(const char *text, size_t len, struct km_buf *out,
                     bool *ok, struct km_err *err)
{
    (void)text;
    (void)len;
    (void)out;
    (void)err;
    *ok = false;
    return KM_OK;
}
