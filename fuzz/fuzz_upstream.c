/* fuzz_upstream.c - the gateway's parsers of upstream answers and specs
 * (src/server/upstream.c): the SSE event scanner, the Prometheus
 * `vllm:num_requests_waiting` reader, /v1/models bodies and --upstream
 * specs.
 *
 * Byte 0 picks the surface (bits 0-1); for SSE byte 1 is the piece size the
 * stream is cut into. Properties: the scanner counts the same events and
 * [DONE] however the bytes are split; the other parsers fill only what they
 * return and fail with a message. */
#include "fuzz.h"

#include "base/mem.h"
#include "server/upstream.h"

#include <stdlib.h>
#include <string.h>

static void fz_ups_sse(const uint8_t *data, size_t n)
{
    if (n < 1)
        return;
    size_t piece = 1 + data[0] % 17;
    const char *p = (const char *)data + 1;
    n--;
    struct ups_sse_scan whole, cut;
    ups_sse_scan_init(&whole);
    ups_sse_scan_init(&cut);
    unsigned long a = ups_sse_scan_feed(&whole, p, n), b = 0;
    for (size_t off = 0; off < n; off += piece)
        b += ups_sse_scan_feed(&cut, p + off, n - off < piece ? n - off : piece);
    if (a != b || a != whole.events || whole.events != cut.events)
        abort(); /* the split changed what was seen */
}

static void fz_ups_models(const uint8_t *data, size_t n)
{
    struct srv_model_info m[4];
    struct km_err err;
    int k = ups_parse_models((const char *)data, n, m, 4, &err);
    if (k < -1 || k > 4)
        abort();
    for (int i = 0; i < k; i++)
        if (!m[i].id[0] || strnlen(m[i].id, sizeof m[i].id) == sizeof m[i].id ||
            strnlen(m[i].owned_by, sizeof m[i].owned_by) == sizeof m[i].owned_by)
            abort();
}

static void fz_ups_spec(const uint8_t *data, size_t n)
{
    char *s = km_malloc(n + 1);
    struct ups_spec spec;
    struct km_err err;
    if (!s)
        return;
    memcpy(s, data, n);
    s[n] = '\0';
    if (ups_spec_parse(s, &spec, &err) != KM_OK && !err.msg[0])
        abort();
    km_free(s);
}

int fuzz_upstream(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    double sum;
    bool found;
    switch (data[0] & 3) {
    case 0:
        fz_ups_sse(p, n);
        break;
    case 1:
        ups_parse_waiting((const char *)p, n, &sum, &found);
        break;
    case 2:
        fz_ups_models(p, n);
        break;
    default:
        fz_ups_spec(p, n);
        break;
    }
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_upstream(data, size);
}
#endif
