/* rm.c - hub_cache_rm: remove a repo or one revision from the cache, under
 * the blob locks (see hub.h).
 *
 * Why the locks: a pull (ours or huggingface_hub's) holds
 * <cache>/.locks/<folder>/<etag>.lock (flock) for as long as it writes
 * blobs/<etag> and links it. rm takes, without waiting, every lock it needs
 * before it deletes anything:
 *   - a whole repo: every *.lock in .locks/<folder>/ (a pull in progress
 *     always holds one of them);
 *   - one revision: the lock of each blob it would delete (created if
 *     absent, as a pull would, so a pull arriving meanwhile waits for rm
 *     and then re-checks the blob).
 * If one is held, nothing is deleted and rm fails with KM_EBUSY naming the
 * lock. It never waits: a pull may take hours, and a script wants to know.
 * The locks are released after the deletion; a repo's lock files go last
 * with .locks/<folder>/ (hub__lock re-opens a lock file that was deleted
 * under it, so a waiting pull never ends up on an orphaned lock).
 */
#include "hub/hub_int.h"

#include "base/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct lockset {
    const char *repo;
    const char *dir;          /* <cache>/.locks/<folder> */
    int *fd;
    size_t n, cap;
    struct km_err *err;
};

/* flock(LOCK_EX|LOCK_NB) <dir>/<name>; KM_EBUSY if another process has it. */
static int lock_one(struct lockset *ls, const char *name, int create)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", ls->dir, name);
    int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0664);
    if (fd < 0 && errno == ENOENT && !create)
        return KM_OK; /* deleted meanwhile: nobody holds it */
    if (fd < 0)
        return km_fail(ls->err, KM_EIO, "cannot open lock %s: %s", path,
                       strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 && errno != ENOSYS &&
        errno != EOPNOTSUPP && errno != ENOLCK) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return km_fail(ls->err, KM_EBUSY, "%s is being downloaded by "
                           "another process (it holds the lock %s); nothing "
                           "was removed: try again when that pull finishes",
                           ls->repo, path);
        return km_fail(ls->err, KM_EIO, "flock %s: %s", path, strerror(e));
    }
    if (ls->n == ls->cap) {
        size_t cap = ls->cap ? ls->cap * 2 : 16;
        int *nfd = km_realloc(ls->fd, cap * sizeof *nfd);
        if (!nfd) {
            close(fd);
            return km_fail(ls->err, KM_ENOMEM, "out of memory");
        }
        ls->fd = nfd;
        ls->cap = cap;
    }
    ls->fd[ls->n++] = fd;
    return KM_OK;
}

static void unlock_all(struct lockset *ls)
{
    for (size_t i = 0; i < ls->n; i++)
        close(ls->fd[i]); /* closing the last descriptor drops the flock */
    km_free(ls->fd);
    ls->fd = NULL;
    ls->n = ls->cap = 0;
}

static int lock_entry(void *ud, const char *name, unsigned char type)
{
    size_t n = strlen(name);
    if (type == DT_DIR || n < 5 || strcmp(name + n - 5, ".lock") != 0)
        return KM_OK;
    return lock_one(ud, name, 0);
}

static int lock_blob(struct lockset *ls, const char *etag)
{
    char name[512];
    snprintf(name, sizeof name, "%s.lock", etag);
    return lock_one(ls, name, 1);
}

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

/* The blob of file k of revision vi, if no other revision uses it. */
static const char *own_blob(const struct hub_scan_repo *r, size_t vi, size_t k)
{
    const char *blob = r->revs[vi].files[k].blob;
    if (!blob || strchr(blob, '/'))
        return NULL;
    for (size_t i = 0; i < r->nrevs; i++) {
        for (size_t j = 0; i != vi && j < r->revs[i].nfiles; j++) {
            const char *b = r->revs[i].files[j].blob;
            if (b && strcmp(b, blob) == 0)
                return NULL;
        }
    }
    return blob;
}

static int rm_rev(const struct hub_scan_repo *r, size_t vi,
                  struct lockset *ls, uint64_t *freed, struct km_err *err)
{
    const struct hub_scan_rev *v = &r->revs[vi];
    char p[16384];
    int rc = hub__mkdirs(ls->dir, err);
    for (size_t k = 0; k < v->nfiles && rc == KM_OK; k++) {
        const char *b = own_blob(r, vi, k);
        if (b)
            rc = lock_blob(ls, b);
    }
    for (size_t k = 0; k < v->nfiles && rc == KM_OK; k++) {
        const char *b = own_blob(r, vi, k);
        struct stat st;
        snprintf(p, sizeof p, "%s/blobs/%s", r->dir, b ? b : "");
        if (b && stat(p, &st) == 0 && unlink(p) == 0)
            *freed += (uint64_t)st.st_size;
    }
    for (size_t k = 0; k < v->nrefs && rc == KM_OK; k++) {
        snprintf(p, sizeof p, "%s/refs/%s", r->dir, v->refs[k]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/.no_exist/%s", r->dir, v->commit);
    if (rc == KM_OK)
        rc = rm_tree(p, err);
    snprintf(p, sizeof p, "%s/snapshots/%s", r->dir, v->commit);
    if (rc == KM_OK)
        rc = rm_tree(p, err);
    return rc;
}

static int rm_repo(const struct hub_scan_repo *r, struct lockset *ls,
                   uint64_t *freed, struct km_err *err)
{
    int rc = hub__dir_each(ls->dir, lock_entry, ls);
    if (rc == KM_EIO && errno == ENOENT)
        rc = KM_OK; /* no .locks/<folder>: nothing was ever pulled here */
    else if (rc == KM_EIO)
        rc = km_fail(err, KM_EIO, "cannot read %s: %s", ls->dir, strerror(errno));
    if (rc != KM_OK)
        return rc;
    *freed = r->blob_bytes + r->partial_bytes;
    rc = rm_tree(r->dir, err);
    if (rc == KM_OK)
        rc = rm_tree(ls->dir, err);
    return rc;
}

int hub_cache_rm(const char *cache, const char *repo, const char *rev,
                 uint64_t *freed, struct km_err *err)
{
    struct hub_scan s;
    char locks[8192];
    char *folder = hub_repo_folder(repo);
    struct lockset ls = {.repo = repo, .dir = locks, .err = err};
    *freed = 0;
    if (!folder)
        return km_fail(err, KM_ENOMEM, "out of memory");
    snprintf(locks, sizeof locks, "%s/.locks/%s", cache, folder);
    km_free(folder);
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
        rc = rm_repo(r, &ls, freed, err);
    else
        rc = rm_rev(r, vi, &ls, freed, err);
    unlock_all(&ls);
    hub_scan_free(&s);
    return rc;
}
