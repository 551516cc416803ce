/* hash.c - SHA-256 and git-blob SHA-1 through OpenSSL EVP (see hub_int.h).
 *
 * A blob's name says how to check it: 64 hex chars are the sha256 of the
 * content (LFS/Xet files), 40 hex chars are git's blob id,
 * sha1("blob <decimal size>\0" + content).
 */
#include "hub/hub_int.h"

#include "base/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HASH_CHUNK (4u << 20)

int hub__is_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return 1;
}

int hub__hash_kind_of(const char *etag, enum hub__hash_kind *kind)
{
    if (hub__is_hex(etag, 64)) {
        *kind = HUB_HASH_SHA256;
        return KM_OK;
    }
    if (hub__is_hex(etag, 40)) {
        *kind = HUB_HASH_GITSHA1;
        return KM_OK;
    }
    return KM_EFORMAT;
}

static void to_hex(const unsigned char *d, unsigned n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[2 * n] = '\0';
}

static EVP_MD_CTX *hash_begin(enum hub__hash_kind kind, uint64_t size)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return NULL;
    const EVP_MD *md = kind == HUB_HASH_SHA256 ? EVP_sha256() : EVP_sha1();
    if (EVP_DigestInit_ex(ctx, md, NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    if (kind == HUB_HASH_GITSHA1) {
        char hdr[48];
        int n = snprintf(hdr, sizeof hdr, "blob %llu", (unsigned long long)size);
        EVP_DigestUpdate(ctx, hdr, (size_t)n + 1); /* includes the NUL */
    }
    return ctx;
}

static void hash_end(EVP_MD_CTX *ctx, char *hex_out)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_DigestFinal_ex(ctx, d, &n);
    to_hex(d, n, hex_out);
}

int hub__hash_mem(const void *p, size_t n, enum hub__hash_kind kind,
                  char *hex_out)
{
    EVP_MD_CTX *ctx = hash_begin(kind, n);
    if (!ctx)
        return KM_ENOMEM;
    EVP_DigestUpdate(ctx, p, n);
    hash_end(ctx, hex_out);
    EVP_MD_CTX_free(ctx);
    return KM_OK;
}

int hub__hash_file(const char *path, enum hub__hash_kind kind, char *hex_out,
                   uint64_t *bytes, struct km_err *err)
{
    int rc = KM_OK;
    EVP_MD_CTX *ctx = NULL;
    unsigned char *buf = NULL;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = km_fail(err, KM_EIO, "cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    ctx = hash_begin(kind, (uint64_t)st.st_size);
    buf = km_malloc(HASH_CHUNK);
    if (!ctx || !buf) {
        rc = km_fail(err, KM_ENOMEM, "out of memory hashing %s", path);
        goto out;
    }
    uint64_t total = 0;
    for (;;) {
        ssize_t r = read(fd, buf, HASH_CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = km_fail(err, KM_EIO, "read %s at byte %llu: %s", path,
                         (unsigned long long)total, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        EVP_DigestUpdate(ctx, buf, (size_t)r);
        total += (uint64_t)r;
    }
    if (total != (uint64_t)st.st_size) {
        rc = km_fail(err, KM_EIO, "file %s changed size while hashing", path);
        goto out;
    }
    hash_end(ctx, hex_out);
    if (bytes)
        *bytes = total;
out:
    if (fd >= 0)
        close(fd);
    EVP_MD_CTX_free(ctx);
    km_free(buf);
    return rc;
}

/* ---- incremental hashing (hashfeed.c follows the write frontier) ---- */

struct hub__hasher {
    EVP_MD_CTX *ctx;
};

int hub__hasher_new(enum hub__hash_kind kind, uint64_t size,
                    struct hub__hasher **out)
{
    struct hub__hasher *h = km_calloc(1, sizeof *h);
    if (!h)
        return KM_ENOMEM;
    h->ctx = hash_begin(kind, size);
    if (!h->ctx) {
        km_free(h);
        return KM_ENOMEM;
    }
    *out = h;
    return KM_OK;
}

void hub__hasher_update(struct hub__hasher *h, const void *p, size_t n)
{
    EVP_DigestUpdate(h->ctx, p, n);
}

void hub__hasher_final(struct hub__hasher *h, char *hex_out)
{
    hash_end(h->ctx, hex_out);
}

void hub__hasher_free(struct hub__hasher *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    km_free(h);
}
