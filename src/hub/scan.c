/* scan.c - read the cache back: repos, revisions, files, sizes, quant types,
 * completeness (hub_cache_scan), and re-hash blobs (hub_verify_blob).
 * Removal (hub_cache_rm, under the blob locks) is in rm.c.
 *
 * A revision is complete when every entry of its snapshot resolves to a
 * regular file and no partial download belongs to one of its blobs. Blob
 * bytes are counted once per repo (snapshots share blobs). The scan takes no
 * locks: a pull running meanwhile shows as an INCOMPLETE revision.
 */
#include "hub/hub_int.h"

#include "base/mem.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const quants[] = {
    "IQ2_XXS", "IQ3_XXS", "IQ1_S", "IQ1_M", "IQ2_XS", "IQ2_S", "IQ2_M",
    "IQ3_XS", "IQ3_S", "IQ3_M", "IQ4_XS", "IQ4_NL", "Q2_K_S", "Q2_K_L",
    "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q4_K_L", "Q5_K_S",
    "Q5_K_M", "Q5_K_L", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K_L", "Q6_K",
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "TQ1_0", "TQ2_0", "BF16", "F16",
    "F32", NULL};

static int is_sep(char c)
{
    return c == '\0' || c == '-' || c == '.' || c == '_' || c == '/';
}

void hub__quant_of(const char *path, char *out)
{
    out[0] = '\0';
    size_t n = strlen(path);
    if (n < 5 || strcasecmp(path + n - 5, ".gguf") != 0)
        return;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (const char *p = base; *p; p++) {
        if (p != base && !is_sep(p[-1]))
            continue;
        for (int q = 0; quants[q]; q++) {
            size_t l = strlen(quants[q]);
            if (strncasecmp(p, quants[q], l) == 0 && is_sep(p[l])) {
                snprintf(out, 16, "%s", quants[q]);
                return;
            }
        }
    }
}

static int repo_of_folder(const char *name, char **type, char **repo)
{
    static const char *const kinds[][2] = {{"models--", "model"},
                                           {"datasets--", "dataset"},
                                           {"spaces--", "space"}};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(kinds[k][0]);
        if (strncmp(name, kinds[k][0], l) != 0 || !name[l])
            continue;
        const char *id = name + l;
        const char *sep = strstr(id, "--");
        *repo = km_malloc(strlen(id) + 1);
        *type = km_strdup(kinds[k][1]);
        if (!*repo || !*type)
            return KM_ENOMEM;
        if (sep)
            sprintf(*repo, "%.*s/%s", (int)(sep - id), id, sep + 2);
        else
            strcpy(*repo, id);
        return KM_OK;
    }
    return KM_ENOTFOUND;
}

/* Append `a` to the list; NULL strings are dropped. */
static int push_str(char ***list, size_t *n, const char *a)
{
    char **nl = km_realloc(*list, (*n + 1) * sizeof *nl);
    if (!nl)
        return KM_ENOMEM;
    *list = nl;
    nl[*n] = km_strdup(a);
    *n += nl[*n] != NULL;
    return KM_OK;
}

/* Every file below refs/ is a ref (name relative to refs/) -> commit. */
static int add_ref(void *ud, const char *rel, const char *full)
{
    struct hub_scan_repo *r = ud;
    char commit[41];
    struct km_err ignored;
    (void)full;
    if (rel[0] == '.' || strstr(rel, "/.") ||
        hub__ref_read(r->dir, rel, commit, &ignored) != KM_OK)
        return KM_OK;
    for (size_t i = 0; i < r->nrevs; i++)
        if (strcmp(r->revs[i].commit, commit) == 0)
            return push_str(&r->revs[i].refs, &r->revs[i].nrefs, rel);
    return KM_OK;
}

/* One snapshot entry (dangling links included). */
static int add_file(void *ud, const char *rel, const char *full)
{
    struct hub_scan_rev *v = ud;
    char target[4096];
    struct stat st;
    struct hub_scan_file *nf = km_realloc(v->files, (v->nfiles + 1) * sizeof *nf);
    if (!nf)
        return KM_ENOMEM;
    v->files = nf;
    struct hub_scan_file *f = &v->files[v->nfiles++];
    memset(f, 0, sizeof *f);
    f->path = km_strdup(rel);
    ssize_t n = readlink(full, target, sizeof target - 1);
    if (n > 0) {
        target[n] = '\0';
        const char *slash = strrchr(target, '/');
        f->blob = km_strdup(slash ? slash + 1 : target);
    }
    f->present = stat(full, &st) == 0 && S_ISREG(st.st_mode);
    f->size = f->present ? (uint64_t)st.st_size : 0;
    hub__quant_of(rel, f->quant);
    return f->path ? KM_OK : KM_ENOMEM;
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const struct hub_scan_file *)a)->path,
                  ((const struct hub_scan_file *)b)->path);
}

static int has_partial(const char *blobs, const char *etag)
{
    char p[8192];
    snprintf(p, sizeof p, "%s/%s.kanoa-partial", blobs, etag);
    if (access(p, F_OK) == 0)
        return 1;
    snprintf(p, sizeof p, "%s/%s.incomplete", blobs, etag);
    return access(p, F_OK) == 0;
}

static void rev_state(struct hub_scan_rev *v, const char *blobs)
{
    if (v->nfiles > 1)
        qsort(v->files, v->nfiles, sizeof *v->files, cmp_file);
    v->complete = 1;
    for (size_t i = 0; i < v->nfiles; i++) {
        v->size += v->files[i].size;
        if (!v->files[i].present ||
            (v->files[i].blob && has_partial(blobs, v->files[i].blob)))
            v->complete = 0;
    }
}

/* snapshots/<40 hex>: one revision. */
static int add_rev(void *ud, const char *name, unsigned char type)
{
    struct hub_scan_repo *r = ud;
    char root[8192], blobs[8192];
    (void)type;
    if (!hub__is_hex(name, 40))
        return KM_OK;
    struct hub_scan_rev *nv = km_realloc(r->revs, (r->nrevs + 1) * sizeof *nv);
    if (!nv)
        return KM_ENOMEM;
    r->revs = nv;
    struct hub_scan_rev *v = &r->revs[r->nrevs++];
    memset(v, 0, sizeof *v);
    memcpy(v->commit, name, 41);
    snprintf(root, sizeof root, "%s/snapshots/%s", r->dir, name);
    snprintf(blobs, sizeof blobs, "%s/blobs", r->dir);
    int rc = hub__walk_files(root, add_file, v);
    rev_state(v, blobs);
    return rc == KM_ENOMEM ? rc : KM_OK;
}

/* blobs/<name>: a blob, or a partial download if the name has a dot. */
static int add_blob(void *ud, const char *name, unsigned char type)
{
    struct hub_scan_repo *r = ud;
    char p[16384];
    struct stat st;
    (void)type;
    snprintf(p, sizeof p, "%s/blobs/%s", r->dir, name);
    if (name[0] == '.' || lstat(p, &st) != 0 || !S_ISREG(st.st_mode))
        return KM_OK;
    if (strchr(name, '.')) {
        r->partial_bytes += (uint64_t)st.st_blocks * 512;
    } else {
        r->blob_bytes += (uint64_t)st.st_size;
        r->nblobs++;
    }
    return KM_OK;
}

static int cmp_repo(const void *a, const void *b)
{
    return strcmp(((const struct hub_scan_repo *)a)->repo,
                  ((const struct hub_scan_repo *)b)->repo);
}

struct scan_ctx {
    struct hub_scan *s;
    const char *cache;
};

/* One entry of the cache root: a repo folder or something to skip. */
static int scan_one(void *ud, const char *name, unsigned char dtype)
{
    struct scan_ctx *c = ud;
    struct hub_scan *s = c->s;
    char *type = NULL, *repo = NULL;
    char d[8192];
    (void)dtype;
    int rc = repo_of_folder(name, &type, &repo);
    if (rc != KM_OK) {
        km_free(type);
        km_free(repo);
        return rc == KM_ENOTFOUND ? KM_OK : rc;
    }
    struct hub_scan_repo *nr = km_realloc(s->repos, (s->nrepos + 1) * sizeof *nr);
    if (!nr) {
        km_free(type);
        km_free(repo);
        return KM_ENOMEM;
    }
    s->repos = nr;
    struct hub_scan_repo *r = &s->repos[s->nrepos++];
    memset(r, 0, sizeof *r);
    r->type = type;
    r->repo = repo;
    r->dir = hub__path_join(c->cache, name);
    if (!r->dir)
        return KM_ENOMEM;
    snprintf(d, sizeof d, "%s/snapshots", r->dir);
    rc = hub__dir_each(d, add_rev, r);
    snprintf(d, sizeof d, "%s/refs", r->dir);
    if (rc != KM_ENOMEM)
        rc = hub__walk_files(d, add_ref, r);
    snprintf(d, sizeof d, "%s/blobs", r->dir);
    if (rc != KM_ENOMEM)
        rc = hub__dir_each(d, add_blob, r);
    s->total += r->blob_bytes + r->partial_bytes;
    return rc == KM_ENOMEM ? rc : KM_OK; /* unreadable parts: skipped */
}

int hub_cache_scan(const char *cache, struct hub_scan *out, struct km_err *err)
{
    memset(out, 0, sizeof *out);
    struct scan_ctx c = {.s = out, .cache = cache};
    int rc = hub__dir_each(cache, scan_one, &c);
    if (rc == KM_ENOTFOUND)
        return KM_OK;
    if (rc == KM_EIO)
        return km_fail(err, KM_EIO, "cannot read cache %s: %s", cache,
                       strerror(errno));
    if (rc != KM_OK) {
        hub_scan_free(out);
        return km_fail(err, rc, "out of memory scanning %s", cache);
    }
    if (out->nrepos > 1)
        qsort(out->repos, out->nrepos, sizeof *out->repos, cmp_repo);
    return KM_OK;
}

void hub_scan_free(struct hub_scan *s)
{
    for (size_t i = 0; i < s->nrepos; i++) {
        struct hub_scan_repo *r = &s->repos[i];
        for (size_t j = 0; j < r->nrevs; j++) {
            struct hub_scan_rev *v = &r->revs[j];
            for (size_t k = 0; k < v->nrefs; k++)
                km_free(v->refs[k]);
            for (size_t k = 0; k < v->nfiles; k++) {
                km_free(v->files[k].path);
                km_free(v->files[k].blob);
            }
            km_free(v->refs);
            km_free(v->files);
        }
        km_free(r->revs);
        km_free(r->repo);
        km_free(r->type);
        km_free(r->dir);
    }
    km_free(s->repos);
    memset(s, 0, sizeof *s);
}

/* ---------------- verify ---------------- */

int hub_verify_blob(const char *blob_path, const char *etag, uint64_t *bytes,
                    struct km_err *err)
{
    enum hub__hash_kind kind;
    char hex[130];
    if (hub__hash_kind_of(etag, &kind) != KM_OK)
        return km_fail(err, KM_EFORMAT, "blob name %s is not a sha256 or git "
                       "sha1", etag);
    int rc = hub__hash_file(blob_path, kind, hex, bytes, err);
    if (rc)
        return rc;
    if (strcmp(hex, etag) != 0)
        return km_fail(err, KM_EINTEGRITY, "blob %s: content hashes to %s "
                       "(%s)", blob_path, hex,
                       kind == HUB_HASH_SHA256 ? "sha256" : "git sha1");
    return KM_OK;
}
