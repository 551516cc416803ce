/* cmd_models_cache.c - `kanoa-mlops models list|rm|verify|du`: read and
 * manage the Hugging Face cache that `pull` writes (HF_HUB_CACHE etc.). */
#include "cli/cli.h"

#include "base/mem.h"
#include "hub/hub.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#define PARSED (-1)

/* Options -h (and --files when files != NULL), then min..max positional
 * arguments, left at optind. PARSED to go on, else the exit code: help
 * printed (0) or usage error (2). */
static int parse_args(int argc, char **argv, const char *usage, int min,
                      int max, int *files)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"files", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    for (;;) {
        int c = getopt_long(argc, argv, "hf", opts, NULL);
        if (c == -1)
            break;
        if (c == 'h') {
            fputs(usage, stdout);
            return CLI_EXIT_OK;
        }
        if (c != 'f' || !files)
            return cli_usage_error(usage);
        *files = 1;
    }
    int n = argc - optind;
    return n < min || n > max ? cli_usage_error(usage) : PARSED;
}

static int load(const char *cmd, struct hub_env *env, struct hub_scan *s)
{
    struct km_err err = {0};
    if (hub_env_load(env, &err) != KM_OK)
        return cli_fail(cmd, &err);
    if (hub_cache_scan(env->cache, s, &err) != KM_OK) {
        hub_env_free(env);
        return cli_fail(cmd, &err);
    }
    return CLI_EXIT_OK;
}

static void print_rev(const struct hub_scan_repo *r, const struct hub_scan_rev *v,
                      int files)
{
    char sz[32], refs[512] = "";
    size_t w = 0;
    for (size_t k = 0; k < v->nrefs && w < sizeof refs - 2; k++)
        w += (size_t)snprintf(refs + w, sizeof refs - w, "%s%s", k ? "," : "",
                              v->refs[k]);
    hub_human_bytes(sz, sizeof sz, (double)v->size);
    char quants[256] = "";
    w = 0;
    for (size_t k = 0; k < v->nfiles && w < sizeof quants - 20; k++)
        if (v->files[k].quant[0] && !strstr(quants, v->files[k].quant))
            w += (size_t)snprintf(quants + w, sizeof quants - w, "%s%s",
                                  w ? "," : "", v->files[k].quant);
    printf("%s@%s refs=%s files=%zu size=%llu (%s) quants=%s %s\n", r->repo,
           v->commit, refs[0] ? refs : "-", v->nfiles,
           (unsigned long long)v->size, sz, quants[0] ? quants : "-",
           v->complete ? "complete" : "INCOMPLETE");
    for (size_t k = 0; files && k < v->nfiles; k++) {
        const struct hub_scan_file *f = &v->files[k];
        printf("  %s %llu%s%s%s\n", f->path, (unsigned long long)f->size,
               f->quant[0] ? " " : "", f->quant, f->present ? "" : " MISSING");
    }
}

static const char list_usage[] =
    "usage: kanoa-mlops models list [--files] [REPO]\n"
    "\n"
    "List the repositories in the Hugging Face cache: one line per cached\n"
    "revision (refs, file count, bytes, GGUF quant types, complete or not).\n"
    "  -f, --files  also list every file (path, bytes, quant)\n"
    "  -h, --help   show this help\n";

int cmd_models_list(int argc, char **argv)
{
    int files = 0;
    int pr = parse_args(argc, argv, list_usage, 0, 1, &files);
    if (pr != PARSED)
        return pr;
    const char *only = optind < argc ? argv[optind] : NULL;
    struct hub_env env;
    struct hub_scan s;
    int rc = load("models list", &env, &s);
    if (rc)
        return rc;
    size_t shown = 0;
    for (size_t i = 0; i < s.nrepos; i++) {
        const struct hub_scan_repo *r = &s.repos[i];
        if (only && strcmp(only, r->repo) != 0)
            continue;
        for (size_t j = 0; j < r->nrevs; j++, shown++)
            print_rev(r, &r->revs[j], files);
    }
    if (shown == 0 && only) {
        fprintf(stderr, "kanoa-mlops models list: %s is not in the cache %s\n",
                only, env.cache);
        rc = CLI_EXIT_FAIL;
    } else if (shown == 0) {
        printf("no models in %s\n", env.cache);
    }
    hub_scan_free(&s);
    hub_env_free(&env);
    return rc;
}

static const char rm_usage[] =
    "usage: kanoa-mlops models rm REPO[@REV]\n"
    "\n"
    "Remove a repository from the Hugging Face cache, or only one revision\n"
    "(branch, tag or commit): its snapshot, the refs naming it and the blobs\n"
    "no other revision uses. First it takes, without waiting, the blob locks\n"
    "(.locks/) that pull and huggingface_hub hold while they write: if one\n"
    "is held, it removes nothing and exits 1.\n"
    "  -h, --help   show this help\n";

int cmd_models_rm(int argc, char **argv)
{
    int pr = parse_args(argc, argv, rm_usage, 1, 1, NULL);
    if (pr != PARSED)
        return pr;
    char repo[512];
    snprintf(repo, sizeof repo, "%s", argv[optind]);
    char *at = strchr(repo, '@');
    const char *rev = NULL;
    if (at) {
        *at = '\0';
        rev = at + 1;
    }
    struct km_err err = {0};
    struct hub_env env;
    if (hub_env_load(&env, &err) != KM_OK)
        return cli_fail("models rm", &err);
    uint64_t freed = 0;
    int rc = hub_cache_rm(env.cache, repo, rev, &freed, &err);
    hub_env_free(&env);
    if (rc != KM_OK)
        return cli_fail("models rm", &err);
    char h[32];
    hub_human_bytes(h, sizeof h, (double)freed);
    printf("removed %s%s%s (%llu bytes, %s freed)\n", repo, rev ? "@" : "",
           rev ? rev : "", (unsigned long long)freed, h);
    return CLI_EXIT_OK;
}

static const char verify_usage[] =
    "usage: kanoa-mlops models verify [REPO]\n"
    "\n"
    "Re-hash every blob of the cache (or of REPO) against its name (sha256 for\n"
    "LFS files, git blob sha1 for the rest) and check that every snapshot\n"
    "entry resolves. Exit 1 if anything is wrong.\n"
    "  -h, --help   show this help\n";

/* Was the blob of revs[j].files[k] already met (blobs are shared)? */
static int seen_before(const struct hub_scan_repo *r, size_t j, size_t k)
{
    const char *b = r->revs[j].files[k].blob;
    for (size_t jj = 0; jj <= j; jj++) {
        size_t end = jj == j ? k : r->revs[jj].nfiles;
        for (size_t kk = 0; kk < end; kk++) {
            const char *o = r->revs[jj].files[kk].blob;
            if (o && strcmp(o, b) == 0)
                return 1;
        }
    }
    return 0;
}

static int verify_repo(const struct hub_scan_repo *r, uint64_t *bytes)
{
    int bad = 0;
    for (size_t j = 0; j < r->nrevs; j++) {
        const struct hub_scan_rev *v = &r->revs[j];
        for (size_t k = 0; k < v->nfiles; k++) {
            const struct hub_scan_file *f = &v->files[k];
            if (f->present)
                continue;
            printf("MISSING %s@%s %s\n", r->repo, v->commit, f->path);
            bad++;
        }
    }
    for (size_t j = 0; j < r->nrevs; j++) {
        const struct hub_scan_rev *v = &r->revs[j];
        for (size_t k = 0; k < v->nfiles; k++) {
            const struct hub_scan_file *f = &v->files[k];
            if (!f->present || !f->blob || seen_before(r, j, k))
                continue;
            char path[8192];
            snprintf(path, sizeof path, "%s/blobs/%s", r->dir, f->blob);
            struct km_err err = {0};
            uint64_t n = 0;
            if (hub_verify_blob(path, f->blob, &n, &err) == KM_OK) {
                printf("ok %s %s\n", r->repo, f->path);
                *bytes += n;
            } else {
                printf("BAD %s %s: %s\n", r->repo, f->path, km_err_text(&err));
                bad++;
            }
        }
    }
    return bad;
}

int cmd_models_verify(int argc, char **argv)
{
    int pr = parse_args(argc, argv, verify_usage, 0, 1, NULL);
    if (pr != PARSED)
        return pr;
    const char *only = optind < argc ? argv[optind] : NULL;
    struct hub_env env;
    struct hub_scan s;
    int rc = load("models verify", &env, &s);
    if (rc)
        return rc;
    int bad = 0, seen = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < s.nrepos; i++) {
        if (only && strcmp(only, s.repos[i].repo) != 0)
            continue;
        seen++;
        bad += verify_repo(&s.repos[i], &bytes);
    }
    if (only && !seen) {
        fprintf(stderr, "kanoa-mlops models verify: %s is not in the cache %s\n",
                only, env.cache);
        rc = CLI_EXIT_FAIL;
    } else {
        printf("%d problem(s), %llu bytes hashed\n", bad, (unsigned long long)bytes);
        rc = bad ? CLI_EXIT_FAIL : CLI_EXIT_OK;
    }
    hub_scan_free(&s);
    hub_env_free(&env);
    return rc;
}

static const char du_usage[] =
    "usage: kanoa-mlops models du\n"
    "\n"
    "Disk usage of the Hugging Face cache per repository: bytes of unique\n"
    "blobs, of partial downloads, and the number of revisions.\n"
    "  -h, --help   show this help\n";

int cmd_models_du(int argc, char **argv)
{
    int pr = parse_args(argc, argv, du_usage, 0, 0, NULL);
    if (pr != PARSED)
        return pr;
    struct hub_env env;
    struct hub_scan s;
    int rc = load("models du", &env, &s);
    if (rc)
        return rc;
    char h[32];
    for (size_t i = 0; i < s.nrepos; i++) {
        const struct hub_scan_repo *r = &s.repos[i];
        hub_human_bytes(h, sizeof h, (double)(r->blob_bytes + r->partial_bytes));
        printf("%-40s %12llu %10s  blobs=%zu partial=%llu revisions=%zu\n",
               r->repo, (unsigned long long)(r->blob_bytes + r->partial_bytes), h,
               r->nblobs, (unsigned long long)r->partial_bytes, r->nrevs);
    }
    hub_human_bytes(h, sizeof h, (double)s.total);
    printf("%-40s %12llu %10s  (%s)\n", "total", (unsigned long long)s.total, h,
           env.cache);
    hub_scan_free(&s);
    hub_env_free(&env);
    return rc;
}
