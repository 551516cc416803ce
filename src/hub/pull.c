/* pull.c - hub_pull: resolve, list, filter, reuse or download, link.
 *
 * Order of work (why): the commit is resolved and the whole tree listed and
 * validated before anything is written, so a hostile listing or a missing
 * file writes nothing; the free-space check runs before the first byte;
 * each blob is handled under its flock (the lock huggingface_hub takes), and
 * re-checked after the lock is granted because another process may have
 * finished it meanwhile; refs/<rev> is written last, once every selected
 * file is linked, so a reader that trusts the ref finds a whole snapshot.
 */
#include "hub/hub_int.h"

#include "base/mem.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define SPACE_MARGIN (16ull << 20)

struct plan {
    struct hub__tree tree;       /* selected files only */
    unsigned char *state;        /* per file: 0 fetch, 1 link only, 2 cached */
    uint64_t fetch_bytes;        /* bytes to download */
    uint64_t need_bytes;         /* bytes of disk still to allocate */
};

static int repo_id_valid(const char *r)
{
    size_t n = strlen(r), slashes = 0;
    if (n == 0 || n > 200 || r[0] == '/' || r[n - 1] == '/' ||
        strstr(r, "--") || strstr(r, ".."))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)r[i];
        slashes += c == '/';
        if (!isalnum(c) && c != '-' && c != '_' && c != '.' && c != '/')
            return 0;
    }
    return slashes <= 1;
}

static void emit0(const struct hub_pull_opts *o, enum hub_event_kind k,
                  const char *commit, const char *path, uint64_t size,
                  const struct plan *p, uint64_t all_done, double t0)
{
    if (!o->progress)
        return;
    struct hub_event ev = {.kind = k, .repo = o->repo, .commit = commit,
                           .path = path, .done = size, .total = size,
                           .all_done = all_done,
                           .all_total = p ? p->fetch_bytes : 0,
                           .files = p ? p->tree.n : 0,
                           .elapsed_s = hub__now() - t0};
    o->progress(&ev, o->progress_ud);
}

/* Move the files the options select from `all` into p->tree. */
static int select_files(const struct hub_pull_opts *o, struct hub__tree *all,
                        struct plan *p, const char *repo_dir,
                        const char *commit, const char *rev, struct km_err *err)
{
    size_t nallow = o->nfiles + o->ninclude;
    const char **allow = km_calloc(nallow + 1, sizeof *allow);
    if (!allow)
        return km_fail(err, KM_ENOMEM, "out of memory");
    for (size_t i = 0; i < o->nfiles; i++)
        allow[i] = o->files[i];
    for (size_t i = 0; i < o->ninclude; i++)
        allow[o->nfiles + i] = o->include[i];
    int rc = KM_OK;
    for (size_t k = 0; k < o->nfiles && rc == KM_OK; k++) {
        int hit = 0;
        for (size_t i = 0; i < all->n && !hit; i++)
            hit = hub__fnmatch(o->files[k], all->files[i].path);
        if (hit)
            continue;
        if (!hub__has_glob(o->files[k]) && hub__path_safe(o->files[k], NULL) == KM_OK)
            hub__mark_no_exist(repo_dir, commit, o->files[k], NULL);
        rc = km_fail(err, KM_ENOTFOUND, "%s '%s' not found in repository %s "
                     "at revision '%s' (commit %s)",
                     hub__has_glob(o->files[k]) ? "no file matching" : "file",
                     o->files[k], o->repo, rev, commit);
    }
    for (size_t i = 0; i < all->n && rc == KM_OK; i++) {
        if (!hub__filter_match(all->files[i].path, allow,
                               nallow ? nallow : (size_t)-1, o->exclude,
                               o->nexclude))
            continue;
        if (p->tree.n == p->tree.cap) {
            size_t cap = p->tree.cap ? p->tree.cap * 2 : 16;
            struct hub__file *f = km_realloc(p->tree.files, cap * sizeof *f);
            if (!f) {
                rc = km_fail(err, KM_ENOMEM, "out of memory");
                break;
            }
            p->tree.files = f;
            p->tree.cap = cap;
        }
        p->tree.files[p->tree.n++] = all->files[i];
        all->files[i].path = all->files[i].etag = NULL;
    }
    km_free(allow);
    if (rc == KM_OK && p->tree.n == 0)
        rc = km_fail(err, KM_ENOTFOUND, "no file of repository %s at revision "
                     "'%s' matches the given files and --include/--exclude "
                     "patterns", o->repo, rev);
    return rc;
}

static int file_is(const char *path, uint64_t size)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
           (uint64_t)st.st_size == size;
}

/* Decide per file: cached, link only, or fetch; sum bytes and disk need. */
static int plan_state(struct plan *p, const char *repo_dir, const char *commit,
                      struct km_err *err)
{
    p->state = km_calloc(p->tree.n + 1, 1);
    if (!p->state)
        return km_fail(err, KM_ENOMEM, "out of memory");
    char path[8192];
    for (size_t i = 0; i < p->tree.n; i++) {
        const struct hub__file *f = &p->tree.files[i];
        snprintf(path, sizeof path, "%s/snapshots/%s/%s", repo_dir, commit, f->path);
        if (file_is(path, f->size)) {
            p->state[i] = 2;
            continue;
        }
        snprintf(path, sizeof path, "%s/blobs/%s", repo_dir, f->etag);
        if (file_is(path, f->size)) {
            p->state[i] = 1;
            continue;
        }
        char blobs[4200];
        snprintf(blobs, sizeof blobs, "%s/blobs", repo_dir);
        p->fetch_bytes += f->size - hub__partial_done(blobs, f->etag, f->size);
        struct stat st;
        uint64_t have = 0;
        snprintf(path, sizeof path, "%s/blobs/%s.kanoa-partial", repo_dir, f->etag);
        if (stat(path, &st) == 0)
            have = (uint64_t)st.st_blocks * 512;
        p->need_bytes += have >= f->size ? 0 : f->size - have;
    }
    return KM_OK;
}

static int check_space(const char *dir, const struct plan *p, struct km_err *err)
{
    struct statvfs vs;
    if (p->need_bytes == 0 || statvfs(dir, &vs) != 0)
        return KM_OK;
    uint64_t avail = (uint64_t)vs.f_bavail * vs.f_frsize;
    if (avail >= p->need_bytes + SPACE_MARGIN)
        return KM_OK;
    return km_fail(err, KM_ENOSPACE, "not enough free space in %s: the pull "
                   "needs %llu bytes (plus a %llu-byte margin), %llu are "
                   "available", dir, (unsigned long long)p->need_bytes,
                   (unsigned long long)SPACE_MARGIN, (unsigned long long)avail);
}

static void drop_partial(const char *blobs, const char *etag)
{
    char p[8192];
    snprintf(p, sizeof p, "%s/%s.kanoa-partial", blobs, etag);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s.kanoa-partial.ranges", blobs, etag);
    unlink(p);
}

/* One file under its lock: re-check, download if needed, link. */
static int do_file(const struct hub_env *env, const struct hub_pull_opts *o,
                   struct plan *p, size_t i, const char *folder,
                   const char *repo_dir, const char *commit,
                   struct hub__dl *dl, struct km_err *err)
{
    const struct hub__file *f = &p->tree.files[i];
    char path[8192], blobs[4200];
    snprintf(blobs, sizeof blobs, "%s/blobs", repo_dir);
    if (p->state[i] == 2) {
        emit0(o, HUB_EV_CACHED, commit, f->path, f->size, p, *dl->all_done, dl->t0);
        return KM_OK;
    }
    int fd = -1;
    int rc = hub__lock(env->cache, folder, f->etag, o, &fd, err);
    if (rc == KM_OK) /* `models rm` may have removed the repo while we waited */
        rc = hub__mkdirs(blobs, err);
    if (rc) {
        hub__unlock(fd);
        return rc;
    }
    snprintf(path, sizeof path, "%s/%s", blobs, f->etag);
    int fetched = 0;
    if (file_is(path, f->size)) {
        drop_partial(blobs, f->etag); /* killed between rename and cleanup */
    } else {
        dl->file = f;
        rc = hub__download(dl, err);
        fetched = 1;
    }
    if (rc == KM_OK)
        rc = hub__link_snapshot(repo_dir, commit, f->path, f->etag, err);
    hub__unlock(fd);
    if (rc == KM_OK && !fetched)
        emit0(o, HUB_EV_CACHED, commit, f->path, f->size, p, *dl->all_done, dl->t0);
    dl->res->fetched += fetched && rc == KM_OK;
    return rc;
}

static int resolve_online(const struct hub_env *env,
                          const struct hub_pull_opts *o, const char *rev,
                          char *commit, struct hub__tree *all,
                          struct km_err *err)
{
    struct hub__http *h = NULL;
    int rc = hub__http_new(&h, err);
    if (rc)
        return rc;
    if (hub__is_hex(rev, 40))
        memcpy(commit, rev, 41);
    else
        rc = hub__api_commit(h, env, o->repo, rev, commit, err);
    if (rc == KM_OK)
        rc = hub__api_tree(h, env, o->repo, commit, all, err);
    if (rc == KM_ENOTFOUND && hub__is_hex(rev, 40))
        km_fail(err, KM_ENOTFOUND, "revision '%s' not found in repository %s",
                rev, o->repo);
    hub__http_free(h);
    return rc;
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(((const struct hub__file *)a)->path,
                  ((const struct hub__file *)b)->path);
}

/* A snapshot entry that resolves to a regular file; etag = link target's
 * basename, "local" for a plain file. Dangling links are not usable. */
static int list_entry(void *ud, const char *rel, const char *full)
{
    char target[4096];
    struct stat st;
    if (stat(full, &st) != 0 || !S_ISREG(st.st_mode))
        return KM_OK;
    const char *etag = "local";
    ssize_t n = readlink(full, target, sizeof target - 1);
    if (n > 0) {
        target[n] = '\0';
        const char *slash = strrchr(target, '/');
        etag = slash ? slash + 1 : target;
    }
    return hub__tree_push(ud, rel, etag, (uint64_t)st.st_size, 0);
}

int hub__snapshot_list(const char *snap, struct hub__tree *t, struct km_err *err)
{
    int rc = hub__walk_files(snap, list_entry, t);
    if (rc == KM_ENOMEM)
        return km_fail(err, rc, "out of memory");
    if (rc != KM_OK)
        return km_fail(err, KM_EIO, "cannot read %s: %s", snap,
                       rc == KM_ENOTFOUND ? "no such directory" : strerror(errno));
    if (t->n > 1)
        qsort(t->files, t->n, sizeof *t->files, cmp_path);
    return KM_OK;
}

static int resolve_offline(const struct hub_env *env,
                           const struct hub_pull_opts *o, const char *repo_dir,
                           const char *rev, char *commit, struct hub__tree *all,
                           struct km_err *err)
{
    if (hub__is_hex(rev, 40)) {
        memcpy(commit, rev, 41);
    } else if (hub__ref_read(repo_dir, rev, commit, err) != KM_OK) {
        return km_fail(err, KM_ENOTFOUND, "HF_HUB_OFFLINE is set and %s at "
                       "revision '%s' is not in the cache %s", o->repo, rev,
                       env->cache);
    }
    char snap[8192];
    snprintf(snap, sizeof snap, "%s/snapshots/%s", repo_dir, commit);
    struct stat st;
    if (stat(snap, &st) != 0)
        return km_fail(err, KM_ENOTFOUND, "HF_HUB_OFFLINE is set and snapshot "
                       "%s of %s is not in the cache", commit, o->repo);
    return hub__snapshot_list(snap, all, err);
}

static void finish_event(const struct hub_pull_opts *o,
                         const struct hub_pull_result *res, const struct plan *p,
                         double t0)
{
    if (!o->progress)
        return;
    struct hub_event ev = {.kind = HUB_EV_FINISH, .repo = o->repo,
                           .commit = res->commit, .done = res->bytes,
                           .total = res->bytes, .all_done = res->bytes,
                           .all_total = p->fetch_bytes, .files = p->tree.n,
                           .elapsed_s = hub__now() - t0,
                           .hash_rate = res->hash_seconds > 0 ?
                               (double)res->hashed / res->hash_seconds : 0,
                           .hash_mem = res->hashed > 0 ?
                               (double)res->hashed_mem / (double)res->hashed : 0};
    o->progress(&ev, o->progress_ud);
}

static int prepare_dirs(const struct hub_env *env, const char *repo_dir,
                        struct km_err *err)
{
    char d[8192];
    int rc = hub__mkdirs(env->cache, err);
    struct km_err ignored;
    if (rc == KM_OK) /* best effort: a read-only, fully cached pull works */
        hub__cachedir_tag(env->cache, &ignored);
    snprintf(d, sizeof d, "%s/blobs", repo_dir);
    if (rc == KM_OK)
        rc = hub__mkdirs(d, err);
    snprintf(d, sizeof d, "%s/refs", repo_dir);
    if (rc == KM_OK)
        rc = hub__mkdirs(d, err);
    return rc;
}

static int fetch_all(const struct hub_env *env, const struct hub_pull_opts *o,
                     struct plan *p, const char *folder, const char *repo_dir,
                     const char *commit, struct hub_pull_result *res,
                     double t0, struct km_err *err)
{
    char blobs[4200];
    snprintf(blobs, sizeof blobs, "%s/blobs", repo_dir);
    hub__tmp_sweep(env->cache, folder);
    uint64_t all_done = 0;
    struct hub__dl dl = {.env = env, .opts = o, .repo = o->repo,
                         .commit = commit, .blobs_dir = blobs,
                         .all_done = &all_done, .all_total = p->fetch_bytes,
                         .t0 = t0, .res = res};
    emit0(o, HUB_EV_RESOLVED, commit, NULL, 0, p, 0, t0);
    int rc = KM_OK;
    for (size_t i = 0; i < p->tree.n && rc == KM_OK; i++)
        rc = do_file(env, o, p, i, folder, repo_dir, commit, &dl, err);
    return rc;
}

/* Online tail: decide per file, check space, fetch, then write the ref. */
static int fetch_plan(const struct hub_env *env, const struct hub_pull_opts *o,
                      struct plan *p, const char *folder, const char *repo_dir,
                      const char *rev, struct hub_pull_result *res, double t0,
                      struct km_err *err)
{
    int rc = plan_state(p, repo_dir, res->commit, err);
    if (rc == KM_OK)
        rc = prepare_dirs(env, repo_dir, err);
    if (rc == KM_OK)
        rc = check_space(env->cache, p, err);
    if (rc == KM_OK)
        rc = fetch_all(env, o, p, folder, repo_dir, res->commit, res, t0, err);
    if (rc == KM_OK && strcmp(rev, res->commit) != 0)
        rc = hub__ref_write(repo_dir, rev, res->commit, err);
    return rc;
}

int hub_pull(const struct hub_env *env, const struct hub_pull_opts *o,
             struct hub_pull_result *res, struct km_err *err)
{
    memset(res, 0, sizeof *res);
    const char *rev = o->revision ? o->revision : "main";
    double t0 = hub__now();
    struct hub__tree all = {0};
    struct plan p = {0};
    char *folder = NULL, *repo_dir = NULL;
    int rc;
    if (!repo_id_valid(o->repo))
        return km_fail(err, KM_EINVAL, "'%s' is not a repository id of the "
                       "form org/name", o->repo);
    if (hub__path_safe(rev, NULL) != KM_OK)
        return km_fail(err, KM_EINVAL, "'%s' is not a valid revision", rev);
    folder = hub_repo_folder(o->repo);
    repo_dir = folder ? hub__path_join(env->cache, folder) : NULL;
    if (!repo_dir) {
        rc = km_fail(err, KM_ENOMEM, "out of memory");
        goto out;
    }
    rc = env->offline ? resolve_offline(env, o, repo_dir, rev, res->commit, &all, err)
                      : resolve_online(env, o, rev, res->commit, &all, err);
    if (rc == KM_OK)
        rc = select_files(o, &all, &p, repo_dir, res->commit, rev, err);
    res->files = p.tree.n;
    if (rc == KM_OK && !env->offline)
        rc = fetch_plan(env, o, &p, folder, repo_dir, rev, res, t0, err);
    if (rc == KM_OK) {
        char snap[8192];
        snprintf(snap, sizeof snap, "%s/snapshots/%s", repo_dir, res->commit);
        res->snapshot = km_strdup(snap);
        res->seconds = hub__now() - t0;
        finish_event(o, res, &p, t0);
    }
out:
    hub__tree_free(&all);
    hub__tree_free(&p.tree);
    km_free(p.state);
    km_free(folder);
    km_free(repo_dir);
    return rc;
}

void hub_pull_result_free(struct hub_pull_result *res)
{
    km_free(res->snapshot);
    res->snapshot = NULL;
}
