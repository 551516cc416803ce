/* auth.c - API keys: Bearer tokens compared in constant time.
 *
 * Keys are kept only as SHA-256 digests; a presented token is hashed and
 * compared with every key digest by CRYPTO_memcmp, without stopping early, so
 * the time taken does not depend on which key (or how much of one) matched. */
#include "server/server_int.h"

#include "base/mem.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

_Static_assert(sizeof ((struct srv_call *)0)->authorization >
                   SRV_MAX_API_KEY + sizeof "Bearer ",
               "a whole \"Bearer <key>\" header must fit srv_call.authorization");

static int sha256(const char *s, size_t n, unsigned char out[32])
{
    unsigned int len = 0;
    if (!EVP_Digest(s, n, out, &len, EVP_sha256(), NULL) || len != 32)
        return -1;
    return 0;
}

int srv__auth_init(struct srv_auth *a, const struct srv_strlist *keys,
                   struct km_err *err)
{
    memset(a, 0, sizeof *a);
    if (keys->n == 0)
        return KM_OK;
    a->digests = km_calloc(keys->n, sizeof *a->digests);
    if (!a->digests)
        return km_fail(err, KM_ENOMEM, "api keys: out of memory");
    for (size_t i = 0; i < keys->n; i++) {
        size_t len = strlen(keys->v[i]);
        if (len == 0 || len > SRV_MAX_API_KEY) {
            srv__auth_free(a);
            return km_fail(err, KM_EINVAL, "api key %zu is %zu bytes long (1 to "
                           "%d are accepted)", i + 1, len, SRV_MAX_API_KEY);
        }
        if (sha256(keys->v[i], len, a->digests[i])) {
            srv__auth_free(a);
            return km_fail(err, KM_EINVAL, "api key %zu: SHA-256 failed", i + 1);
        }
    }
    a->n = keys->n;
    return KM_OK;
}

void srv__auth_free(struct srv_auth *a)
{
    km_free(a->digests);
    a->digests = NULL;
    a->n = 0;
}

bool srv__auth_enabled(const struct srv_auth *a)
{
    return a->n > 0;
}

bool srv__auth_check(const struct srv_auth *a, const char *authorization)
{
    if (a->n == 0)
        return true;
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return false;
    const char *tok = authorization + 7;
    while (*tok == ' ')
        tok++;
    unsigned char d[32];
    if (sha256(tok, strlen(tok), d))
        return false;
    int match = 0;
    for (size_t i = 0; i < a->n; i++)
        match |= CRYPTO_memcmp(d, a->digests[i], sizeof d) == 0;
    return match != 0;
}
