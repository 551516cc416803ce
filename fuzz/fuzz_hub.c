/* fuzz_hub.c - what the Hub client parses from a server it does not trust
 * (src/hub/api.c, http.c headers, resolve.c, filter.c, cache.c paths).
 *
 * Byte 0 picks the surface; the rest is its input:
 *   0  a tree listing (JSON array of {type, path, oid, size, lfs}): every
 *      accepted path must be safe (no '..', absolute or control bytes) and
 *      every etag hex; each file then goes through the quant-name scanner,
 *      allow/ignore filters and model resolution.
 *   1  response header lines ("Name: value\r\n"...), fed one by one: the
 *      fixed-size fields stay NUL-terminated, Link/Location are freed.
 *   2  "SPEC\0TREE-JSON": resolve SPEC among the listed files.
 *   3  "PATTERN\nPATH": fnmatch with huggingface_hub's semantics, path
 *      safety, URL host and percent-encoding. */
#include "fuzz.h"

#include "base/mem.h"
#include "hub/hub_int.h"

#include <stdlib.h>
#include <string.h>

/* A NUL-terminated copy of data[0..n) (km_free). */
static char *fz_hub_str(const uint8_t *data, size_t n)
{
    char *s = km_malloc(n + 1);
    if (s) {
        memcpy(s, data, n);
        s[n] = '\0';
    }
    return s;
}

static void fz_hub_files(const struct hub__tree *t)
{
    static const char *const allow[] = {"*.gguf", "*Q4_K_M*", "sub/", "[^a]*"};
    static const char *const ignore[] = {"*mmproj*", "*.md"};
    struct km_err err;
    for (size_t i = 0; i < t->n; i++) {
        const struct hub__file *f = &t->files[i];
        char q[16];
        if (hub__path_safe(f->path, &err) != KM_OK)
            abort(); /* an unsafe path was accepted from the listing */
        if (strlen(f->etag) != (f->lfs ? 64u : 40u) ||
            !hub__is_hex(f->etag, strlen(f->etag)))
            abort(); /* an etag that is not a hash was accepted */
        hub__quant_of(f->path, q);
        if (strlen(q) >= sizeof q)
            abort();
        hub__filter_match(f->path, allow, 4, ignore, 2);
    }
}

static void fz_hub_resolve(const char *spec, const struct hub__tree *t)
{
    char *path = NULL;
    struct km_err err;
    if (hub__resolve_in(spec, "/snap", t, &path, &err) == KM_OK && !path)
        abort();
    km_free(path);
}

static void fz_hub_tree(const uint8_t *data, size_t n, const char *spec)
{
    struct hub__tree t = {0};
    struct km_err err;
    if (hub__tree_parse((const char *)data, n, &t, &err) == KM_OK) {
        fz_hub_files(&t);
        fz_hub_resolve(spec ? spec : "org/repo", &t);
        if (!spec)
            fz_hub_resolve("org/repo:Q4_K_M@main", &t);
    }
    hub__tree_free(&t);
}

static void fz_hub_headers(const uint8_t *data, size_t n)
{
    struct hub__resp r = {0};
    r.linked_size = r.content_length = r.retry_after = -1;
    for (size_t a = 0; a < n;) {
        const uint8_t *nl = memchr(data + a, '\n', n - a);
        size_t end = nl ? (size_t)(nl - data) + 1 : n;
        hub__resp_header(&r, (const char *)data + a, end - a);
        a = end;
    }
    if (strnlen(r.error_code, sizeof r.error_code) == sizeof r.error_code ||
        strnlen(r.error_message, sizeof r.error_message) == sizeof r.error_message ||
        strnlen(r.repo_commit, sizeof r.repo_commit) == sizeof r.repo_commit ||
        strnlen(r.etag, sizeof r.etag) == sizeof r.etag)
        abort(); /* a header field lost its NUL */
    if (r.link_next)
        (void)strlen(r.link_next);
    hub__resp_free(&r);
}

static void fz_hub_strings(const uint8_t *data, size_t n)
{
    const uint8_t *nl = memchr(data, '\n', n);
    size_t pn = nl ? (size_t)(nl - data) : n;
    char *pat = fz_hub_str(data, pn);
    char *path = fz_hub_str(nl ? nl + 1 : data + n, nl ? n - pn - 1 : 0);
    struct km_err err;
    if (pat && path) {
        const char *const one[] = {pat};
        hub__fnmatch(pat, path);
        hub__filter_match(path, one, 1, one, 1);
        hub__has_glob(pat);
        hub__path_safe(path, &err);
        km_free(hub__url_host(path));
        km_free(hub__url_encode(path, 0));
        km_free(hub__url_encode(pat, 1));
    }
    km_free(pat);
    km_free(path);
}

int fuzz_hub(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (data[0] & 3) {
    case 0:
        fz_hub_tree(p, n, NULL);
        break;
    case 1:
        fz_hub_headers(p, n);
        break;
    case 2: {
        const uint8_t *z = memchr(p, '\0', n);
        size_t sn = z ? (size_t)(z - p) : n;
        char *spec = fz_hub_str(p, sn);
        if (spec)
            fz_hub_tree(z ? z + 1 : p + n, z ? n - sn - 1 : 0, spec);
        km_free(spec);
        break;
    }
    default:
        fz_hub_strings(p, n);
        break;
    }
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_hub(data, size);
}
#endif
