/* scan.c - read the cache back: repos, revisions, files, sizes, quant types,
 * completeness (hub_cache_scan), remove repos or revisions (hub_cache_rm),
 * and re-hash blobs (hub_verify_blob).
 *
 * A revision is complete when every entry of its snapshot resolves to a
 * regular file and no partial download belongs to one of its blobs. Blob
 * bytes are counted once per repo (snapshots share blobs). rm does not take
 * the per-blob locks: run it when no pull of that repo is in progress.
 */
#include "hub/hub_int.h"

#include "base/mem.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
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

/* refs/ walked recursively: name relative to refs/ -> commit. */
static void add_refs(struct hub_scan_repo *r, const char *refs, const char *rel)
{
    char dir[8192];
    snprintf(dir, sizeof dir, "%s%s%s", refs, *rel ? "/" : "", rel);
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (;;) {
        struct dirent *e = readdir(d);
        if (!e)
            break;
        if (e->d_name[0] == '.')
            continue;
        char sub[8192], commit[41];
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        struct km_err ignored;
        char repo_dir[8192];
        snprintf(repo_dir, sizeof repo_dir, "%s/..", refs);
        if (e->d_type == DT_DIR) {
            add_refs(r, refs, sub);
            continue;
        }
        if (hub__ref_read(repo_dir, sub, commit, &ignored) != KM_OK)
            continue;
        for (size_t i = 0; i < r->nrevs; i++) {
            struct hub_scan_rev *v = &r->revs[i];
            if (strcmp(v->commit, commit) != 0)
                continue;
            char **nr = km_realloc(v->refs, (v->nrefs + 1) * sizeof *nr);
            if (!nr)
                break;
            v->refs = nr;
            v->refs[v->nrefs] = km_strdup(sub);
            v->nrefs += v->refs[v->nrefs] != NULL;
        }
    }
    closedir(d);
}

/* All entries of a snapshot, including dangling links. */
static int scan_snapshot(struct hub_scan_rev *v, const char *root, const char *rel)
{
    char dir[8192];
    snprintf(dir, sizeof dir, "%s%s%s", root, *rel ? "/" : "", rel);
    DIR *d = opendir(dir);
    if (!d)
        return KM_OK;
    int rc = KM_OK;
    for (;;) {
        struct dirent *e = readdir(d);
        if (!e || rc != KM_OK)
            break;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char sub[8192], full[16384], target[4096];
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat lst, st;
        if (lstat(full, &lst) != 0)
            continue;
        if (S_ISDIR(lst.st_mode)) {
            rc = scan_snapshot(v, root, sub);
            continue;
        }
        struct hub_scan_file *nf = km_realloc(v->files, (v->nfiles + 1) * sizeof *nf);
        if (!nf) {
            rc = KM_ENOMEM;
            break;
        }
        v->files = nf;
        struct hub_scan_file *f = &v->files[v->nfiles++];
        memset(f, 0, sizeof *f);
        f->path = km_strdup(sub);
        ssize_t n = readlink(full, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            const char *slash = strrchr(target, '/');
            f->blob = km_strdup(slash ? slash + 1 : target);
        }
        f->present = stat(full, &st) == 0 && S_ISREG(st.st_mode);
        f->size = f->present ? (uint64_t)st.st_size : 0;
        hub__quant_of(sub, f->quant);
        if (!f->path)
            rc = KM_ENOMEM;
    }
    closedir(d);
    return rc;
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

static int scan_revs(struct hub_scan_repo *r)
{
    char snaps[8192], blobs[8192];
    snprintf(snaps, sizeof snaps, "%s/snapshots", r->dir);
    snprintf(blobs, sizeof blobs, "%s/blobs", r->dir);
    DIR *d = opendir(snaps);
    if (!d)
        return KM_OK;
    int rc = KM_OK;
    for (;;) {
        struct dirent *e = readdir(d);
        if (!e || rc != KM_OK)
            break;
        if (!hub__is_hex(e->d_name, 40))
            continue;
        struct hub_scan_rev *nv = km_realloc(r->revs, (r->nrevs + 1) * sizeof *nv);
        if (!nv) {
            rc = KM_ENOMEM;
            break;
        }
        r->revs = nv;
        struct hub_scan_rev *v = &r->revs[r->nrevs++];
        memset(v, 0, sizeof *v);
        memcpy(v->commit, e->d_name, 41);
        char root[16384];
        snprintf(root, sizeof root, "%s/%s", snaps, e->d_name);
        rc = scan_snapshot(v, root, "");
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
    closedir(d);
    return rc;
}

static void scan_blobs(struct hub_scan_repo *r)
{
    char blobs[8192];
    snprintf(blobs, sizeof blobs, "%s/blobs", r->dir);
    DIR *d = opendir(blobs);
    if (!d)
        return;
    for (;;) {
        struct dirent *e = readdir(d);
        if (!e)
            break;
        if (e->d_name[0] == '.')
            continue;
        char p[16384];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", blobs, e->d_name);
        if (lstat(p, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (strchr(e->d_name, '.')) {
            r->partial_bytes += (uint64_t)st.st_blocks * 512;
        } else {
            r->blob_bytes += (uint64_t)st.st_size;
            r->nblobs++;
        }
    }
    closedir(d);
}

static int cmp_repo(const void *a, const void *b)
{
    return strcmp(((const struct hub_scan_repo *)a)->repo,
                  ((const struct hub_scan_repo *)b)->repo);
}

static int scan_one(struct hub_scan *s, const char *cache, const char *name)
{
    char *type = NULL, *repo = NULL;
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
    r->dir = hub__path_join(cache, name);
    if (!r->dir)
        return KM_ENOMEM;
    rc = scan_revs(r);
    char refs[8192];
    snprintf(refs, sizeof refs, "%s/refs", r->dir);
    add_refs(r, refs, "");
    scan_blobs(r);
    s->total += r->blob_bytes + r->partial_bytes;
    return rc;
}

int hub_cache_scan(const char *cache, struct hub_scan *out, struct km_err *err)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(cache);
    if (!d)
        return errno == ENOENT ? KM_OK
                               : km_fail(err, KM_EIO, "cannot read cache %s: %s",
                                         cache, strerror(errno));
    int rc = KM_OK;
    for (;;) {
        struct dirent *e = readdir(d);
        if (!e || rc != KM_OK)
            break;
        rc = scan_one(out, cache, e->d_name);
    }
    closedir(d);
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

/* ---------------- rm ---------------- */

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)f;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static int rm_tree(const char *dir, struct km_err *err)
{
    struct stat st;
    if (lstat(dir, &st) != 0)
        return KM_OK;
    if (nftw(dir, rm_entry, 32, FTW_DEPTH | FTW_PHYS) != 0)
        return km_fail(err, KM_EIO, "cannot remove %s: %s", dir, strerror(errno));
    return KM_OK;
}

static const struct hub_scan_repo *find_repo(const struct hub_scan *s,
                                             const char *repo)
{
    for (size_t i = 0; i < s->nrepos; i++)
        if (strcmp(s->repos[i].repo, repo) == 0 &&
            strcmp(s->repos[i].type, "model") == 0)
            return &s->repos[i];
    return NULL;
}

static int blob_used_elsewhere(const struct hub_scan_repo *r, size_t skip,
                               const char *blob)
{
    for (size_t i = 0; i < r->nrevs; i++) {
        if (i == skip)
            continue;
        for (size_t k = 0; k < r->revs[i].nfiles; k++) {
            const char *b = r->revs[i].files[k].blob;
            if (b && strcmp(b, blob) == 0)
                return 1;
        }
    }
    return 0;
}

static int rm_rev(const struct hub_scan_repo *r, size_t vi, uint64_t *freed,
                  struct km_err *err)
{
    const struct hub_scan_rev *v = &r->revs[vi];
    char p[16384];
    for (size_t k = 0; k < v->nfiles; k++) {
        const char *b = v->files[k].blob;
        if (!b || blob_used_elsewhere(r, vi, b) || strchr(b, '/'))
            continue;
        snprintf(p, sizeof p, "%s/blobs/%s", r->dir, b);
        struct stat st;
        if (stat(p, &st) == 0 && unlink(p) == 0)
            *freed += (uint64_t)st.st_size;
    }
    for (size_t k = 0; k < v->nrefs; k++) {
        snprintf(p, sizeof p, "%s/refs/%s", r->dir, v->refs[k]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/.no_exist/%s", r->dir, v->commit);
    int rc = rm_tree(p, err);
    snprintf(p, sizeof p, "%s/snapshots/%s", r->dir, v->commit);
    if (rc == KM_OK)
        rc = rm_tree(p, err);
    return rc;
}

static size_t find_rev(const struct hub_scan_repo *r, const char *rev)
{
    for (size_t i = 0; i < r->nrevs; i++) {
        if (strcmp(r->revs[i].commit, rev) == 0)
            return i;
        for (size_t k = 0; k < r->revs[i].nrefs; k++)
            if (strcmp(r->revs[i].refs[k], rev) == 0)
                return i;
    }
    return (size_t)-1;
}

static int rm_repo(const char *cache, const struct hub_scan_repo *r,
                   uint64_t *freed, struct km_err *err)
{
    char *folder = hub_repo_folder(r->repo);
    if (!folder)
        return km_fail(err, KM_ENOMEM, "out of memory");
    char locks[8192];
    snprintf(locks, sizeof locks, "%s/.locks/%s", cache, folder);
    *freed = r->blob_bytes + r->partial_bytes;
    int rc = rm_tree(r->dir, err);
    if (rc == KM_OK)
        rc = rm_tree(locks, err);
    km_free(folder);
    return rc;
}

int hub_cache_rm(const char *cache, const char *repo, const char *rev,
                 uint64_t *freed, struct km_err *err)
{
    struct hub_scan s;
    *freed = 0;
    int rc = hub_cache_scan(cache, &s, err);
    if (rc)
        return rc;
    const struct hub_scan_repo *r = find_repo(&s, repo);
    size_t vi = r && rev ? find_rev(r, rev) : 0;
    if (!r)
        rc = km_fail(err, KM_ENOTFOUND, "repository %s is not in the cache %s",
                     repo, cache);
    else if (vi == (size_t)-1)
        rc = km_fail(err, KM_ENOTFOUND, "revision '%s' of %s is not in the "
                     "cache", rev, repo);
    else if (!rev || r->nrevs <= 1)
        rc = rm_repo(cache, r, freed, err);
    else
        rc = rm_rev(r, vi, freed, err);
    hub_scan_free(&s);
    return rc;
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
