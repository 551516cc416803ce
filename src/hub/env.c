/* env.c - HF_* environment precedence and the token file (see hub.h).
 *
 * Order (huggingface_hub constants.py / _auth.py):
 *   endpoint: HF_ENDPOINT (trailing '/' stripped) else https://huggingface.co
 *   token:    HF_TOKEN > HUGGING_FACE_HUB_TOKEN > file HF_TOKEN_PATH
 *             (default $HF_HOME/token); value trimmed, "" = none
 *   cache:    HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > $HF_HOME/hub;
 *             HF_HOME > $XDG_CACHE_HOME/huggingface > ~/.cache/huggingface
 *   offline:  HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE in {1,ON,YES,TRUE}
 * A leading "~/" is expanded with $HOME.
 */
#include "hub/hub.h"
#include "hub/hub_int.h"

#include "base/mem.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

static int env_true(const char *name)
{
    const char *v = getenv(name);
    if (!v)
        return 0;
    return !strcasecmp(v, "1") || !strcasecmp(v, "on") ||
           !strcasecmp(v, "yes") || !strcasecmp(v, "true");
}

static char *expand_home(const char *p)
{
    const char *home = getenv("HOME");
    if (p[0] == '~' && (p[1] == '/' || p[1] == '\0') && home) {
        size_t n = strlen(home) + strlen(p);
        char *s = km_malloc(n + 1);
        if (s)
            snprintf(s, n + 1, "%s%s", home, p + 1);
        return s;
    }
    return km_strdup(p);
}

static char *hf_home(void)
{
    const char *v = env_nonempty("HF_HOME");
    if (v)
        return expand_home(v);
    v = env_nonempty("XDG_CACHE_HOME");
    if (v)
        return hub__path_join(v, "huggingface");
    return expand_home("~/.cache/huggingface");
}

/* Trim whitespace and CR/LF; empty result -> NULL. Takes ownership. */
static char *clean_token(char *t)
{
    if (!t)
        return NULL;
    size_t w = 0;
    for (size_t r = 0; t[r]; r++)
        if (t[r] != '\r' && t[r] != '\n')
            t[w++] = t[r];
    t[w] = '\0';
    while (w > 0 && isspace((unsigned char)t[w - 1]))
        t[--w] = '\0';
    size_t lead = strspn(t, " \t");
    memmove(t, t + lead, w - lead + 1);
    if (!*t) {
        km_free(t);
        return NULL;
    }
    return t;
}

static char *read_token_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char line[4096];
    char *tok = NULL;
    if (fgets(line, sizeof line, f))
        tok = km_strdup(line);
    fclose(f);
    return clean_token(tok);
}

static char *load_token(const char *home)
{
    const char *v = env_nonempty("HF_TOKEN");
    if (!v)
        v = env_nonempty("HUGGING_FACE_HUB_TOKEN");
    if (v)
        return clean_token(km_strdup(v));
    const char *tp = env_nonempty("HF_TOKEN_PATH");
    char *path = tp ? expand_home(tp) : hub__path_join(home, "token");
    char *tok = path ? read_token_file(path) : NULL;
    km_free(path);
    return tok;
}

static char *load_cache(const char *home)
{
    const char *v = env_nonempty("HF_HUB_CACHE");
    if (!v)
        v = env_nonempty("HUGGINGFACE_HUB_CACHE");
    if (v)
        return expand_home(v);
    return hub__path_join(home, "hub");
}

static char *load_endpoint(void)
{
    const char *v = env_nonempty("HF_ENDPOINT");
    char *ep = km_strdup(v ? v : "https://huggingface.co");
    if (!ep)
        return NULL;
    size_t n = strlen(ep);
    while (n > 0 && ep[n - 1] == '/')
        ep[--n] = '\0';
    return ep;
}

int hub_env_load(struct hub_env *env, struct km_err *err)
{
    memset(env, 0, sizeof *env);
    char *home = hf_home();
    int rc = KM_ENOMEM;
    if (!home)
        goto out;
    env->endpoint = load_endpoint();
    env->cache = load_cache(home);
    env->token = load_token(home);
    env->offline = env_true("HF_HUB_OFFLINE") || env_true("TRANSFORMERS_OFFLINE");
    env->timeout_s = 10;
    const char *t = env_nonempty("HF_HUB_DOWNLOAD_TIMEOUT");
    if (t && atol(t) > 0)
        env->timeout_s = atol(t);
    if (!env->endpoint || !env->cache)
        goto out;
    rc = KM_OK;
out:
    km_free(home);
    if (rc != KM_OK) {
        hub_env_free(env);
        return km_fail(err, rc, "out of memory reading the HF_* environment");
    }
    return KM_OK;
}

void hub_env_free(struct hub_env *env)
{
    km_free(env->endpoint);
    km_free(env->token);
    km_free(env->cache);
    env->endpoint = env->token = env->cache = NULL;
}

char *hub_repo_folder(const char *repo)
{
    size_t n = strlen(repo);
    size_t slashes = 0;
    for (size_t i = 0; i < n; i++)
        slashes += repo[i] == '/';
    char *s = km_malloc(strlen("models--") + n + slashes + 1);
    if (!s)
        return NULL;
    char *w = s + sprintf(s, "models--");
    for (size_t i = 0; i < n; i++) {
        if (repo[i] == '/') {
            *w++ = '-';
            *w++ = '-';
        } else {
            *w++ = repo[i];
        }
    }
    *w = '\0';
    return s;
}
