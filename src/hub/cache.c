/* cache.c - the huggingface_hub cache layout on disk (see hub.h).
 *
 * Invariants kept here:
 *  - refs/<rev> holds exactly 40 hex chars, no newline, written via a temp
 *    file + rename and only when the content changes (read-only caches).
 *  - snapshots/<commit>/<path> is a relative symlink "../" x (2 + slashes in
 *    path) + "blobs/<etag>", installed by rename so it is never missing or
 *    dangling halfway.
 *  - locks live outside the repo folder, in .locks/<folder>/<etag>.lock
 *    (mode 0664), and are flock(2) locks as Python's filelock takes them.
 *  - every repo path is validated before it is joined to a cache path.
 */
#include "hub/hub_int.h"

#include "base/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int hub__dir_each(const char *dir, hub__dirent_fn fn, void *ud)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? KM_ENOTFOUND : KM_EIO;
    int rc = KM_OK;
    for (;;) {
        struct dirent *e = readdir(d);
        if (!e || rc != KM_OK)
            break;
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            rc = fn(ud, e->d_name, e->d_type);
    }
    closedir(d);
    return rc;
}

struct walk {
    const char *root, *rel;
    hub__walk_fn fn;
    void *ud;
};

static int walk_entry(void *arg, const char *name, unsigned char type)
{
    const struct walk *w = arg;
    char sub[4096], full[8192];
    struct stat lst;
    (void)type;
    snprintf(sub, sizeof sub, "%s%s%s", w->rel, *w->rel ? "/" : "", name);
    snprintf(full, sizeof full, "%s/%s", w->root, sub);
    if (lstat(full, &lst) != 0)
        return KM_OK; /* vanished meanwhile */
    if (!S_ISDIR(lst.st_mode))
        return w->fn(w->ud, sub, full);
    struct walk inner = {.root = w->root, .rel = sub, .fn = w->fn, .ud = w->ud};
    int rc = hub__dir_each(full, walk_entry, &inner);
    return rc == KM_ENOTFOUND ? KM_OK : rc;
}

int hub__walk_files(const char *root, hub__walk_fn fn, void *ud)
{
    struct walk w = {.root = root, .rel = "", .fn = fn, .ud = ud};
    return hub__dir_each(root, walk_entry, &w);
}

char *hub__path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = km_malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", a, b);
    return s;
}

int hub__path_safe(const char *path, struct km_err *err)
{
    size_t n = strlen(path);
    if (n == 0 || n > 4096 || path[0] == '/' || strchr(path, '\\') ||
        (n >= 2 && path[1] == ':'))
        goto bad;
    const char *p = path;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') ||
            (len == 2 && p[0] == '.' && p[1] == '.'))
            goto bad;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)p[i] < 0x20)
                goto bad;
        p += len;
        if (*p == '/')
            p++;
    }
    if (path[n - 1] == '/')
        goto bad;
    return KM_OK;
bad:
    return km_fail(err, KM_EFORMAT,
                   "refusing unsafe path '%s' in the repository listing "
                   "(absolute, '..' or invalid component); nothing was written",
                   path);
}

int hub__mkdirs(const char *dir, struct km_err *err)
{
    char *d = km_strdup(dir);
    if (!d)
        return km_fail(err, KM_ENOMEM, "out of memory");
    int rc = KM_OK;
    for (char *p = d + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(d, 0777) != 0 && errno != EEXIST) {
            rc = km_fail(err, KM_EIO, "cannot create directory %s: %s", d,
                         strerror(errno));
            break;
        }
        *p = c;
        if (c == '\0')
            break;
    }
    km_free(d);
    return rc;
}

static int mkdirs_parent(const char *file, struct km_err *err)
{
    char *d = km_strdup(file);
    if (!d)
        return km_fail(err, KM_ENOMEM, "out of memory");
    char *slash = strrchr(d, '/');
    int rc = KM_OK;
    if (slash && slash != d) {
        *slash = '\0';
        rc = hub__mkdirs(d, err);
    }
    km_free(d);
    return rc;
}

/* Temp names live in <cache>/.locks/<folder>/ (every reader skips .locks),
 * never beside refs or snapshot entries, so a kill -9 between create and
 * rename cannot leave a stray ref or snapshot file. Same filesystem as the
 * repo folder, so rename(2) is atomic. "<tag>.kanoa-tmp.<pid>". */
static int tmp_path(const char *repo_dir, const char *tag, char *out, size_t cap,
                    struct km_err *err)
{
    const char *slash = strrchr(repo_dir, '/');
    if (!slash)
        return km_fail(err, KM_EINVAL, "repo dir %s has no parent", repo_dir);
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s/.locks/%s", (int)(slash - repo_dir), repo_dir,
             slash + 1);
    int rc = hub__mkdirs(dir, err);
    if (rc == KM_OK)
        snprintf(out, cap, "%s/%s.kanoa-tmp.%d", dir, tag, (int)getpid());
    return rc;
}

/* Unlink <dir>/<name> if it is the temp file of a process that is gone. */
static int sweep_entry(void *dir, const char *name, unsigned char type)
{
    const char *t = strstr(name, ".kanoa-tmp.");
    int pid = t ? atoi(t + strlen(".kanoa-tmp.")) : 0;
    (void)type;
    if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) {
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", (const char *)dir, name);
        unlink(p); /* left by a killed process */
    }
    return KM_OK;
}

void hub__tmp_sweep(const char *cache, const char *folder)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/.locks/%s", cache, folder);
    hub__dir_each(dir, sweep_entry, dir);
}

int hub__ref_read(const char *repo_dir, const char *rev, char *commit,
                  struct km_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/refs/%s", repo_dir, rev);
    FILE *f = fopen(path, "r");
    if (!f)
        return km_fail(err, KM_ENOTFOUND, "revision '%s' is not in the cache "
                       "(no %s)", rev, path);
    char buf[64] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    if (!hub__is_hex(buf, 40))
        return km_fail(err, KM_EFORMAT, "ref file %s does not hold a 40-hex "
                       "commit", path);
    memcpy(commit, buf, 41);
    return KM_OK;
}

int hub__ref_write(const char *repo_dir, const char *rev,
                   const char *commit, struct km_err *err)
{
    char cur[41];
    struct km_err ignored;
    if (hub__ref_read(repo_dir, rev, cur, &ignored) == KM_OK &&
        strcmp(cur, commit) == 0)
        return KM_OK;
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/refs/%s", repo_dir, rev);
    int rc = tmp_path(repo_dir, "ref", tmp, sizeof tmp, err);
    if (rc == KM_OK)
        rc = mkdirs_parent(path, err);
    if (rc)
        return rc;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return km_fail(err, KM_EIO, "cannot write %s: %s", tmp, strerror(errno));
    ssize_t w = write(fd, commit, 40);
    int ok = w == 40 && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return km_fail(err, KM_EIO, "cannot write ref %s: %s", path, strerror(e));
    }
    return KM_OK;
}

static char *link_target(const char *path, const char *etag)
{
    size_t ups = 2;
    for (const char *p = path; *p; p++)
        ups += *p == '/';
    size_t n = ups * 3 + strlen("blobs/") + strlen(etag) + 1;
    char *t = km_malloc(n);
    if (!t)
        return NULL;
    char *w = t;
    for (size_t i = 0; i < ups; i++)
        w += sprintf(w, "../");
    sprintf(w, "blobs/%s", etag);
    return t;
}

int hub__link_snapshot(const char *repo_dir, const char *commit,
                       const char *path, const char *etag,
                       struct km_err *err)
{
    char link[4096 * 2], tmp[4096 * 2 + 64], cur[4096];
    snprintf(link, sizeof link, "%s/snapshots/%s/%s", repo_dir, commit, path);
    char *target = link_target(path, etag);
    if (!target)
        return km_fail(err, KM_ENOMEM, "out of memory");
    int rc = mkdirs_parent(link, err);
    if (rc)
        goto out;
    ssize_t n = readlink(link, cur, sizeof cur - 1);
    if (n > 0) {
        cur[n] = '\0';
        if (strcmp(cur, target) == 0)
            goto out;
    }
    rc = tmp_path(repo_dir, "link", tmp, sizeof tmp, err);
    if (rc)
        goto out;
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, link) != 0) {
        int e = errno;
        unlink(tmp);
        rc = km_fail(err, KM_EIO, "cannot link %s -> %s: %s", link, target,
                     strerror(e));
    }
out:
    km_free(target);
    return rc;
}

int hub__mark_no_exist(const char *repo_dir, const char *commit,
                       const char *path, struct km_err *err)
{
    char p[4096 * 2];
    snprintf(p, sizeof p, "%s/.no_exist/%s/%s", repo_dir, commit, path);
    int rc = mkdirs_parent(p, err);
    if (rc)
        return rc;
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return km_fail(err, KM_EIO, "cannot create %s: %s", p, strerror(errno));
    close(fd);
    return KM_OK;
}

int hub__cachedir_tag(const char *cache, struct km_err *err)
{
    static const char tag[] =
        "Signature: 8a477f597d28d172789f06886806bc55\n"
        "# This file is a cache directory tag created by kanoa-mlops for the\n"
        "# Hugging Face hub cache.\n"
        "# For information about cache directory tags, see:\n"
        "#\thttps://bford.info/cachedir/\n";
    char p[4096];
    snprintf(p, sizeof p, "%s/CACHEDIR.TAG", cache);
    if (access(p, F_OK) == 0)
        return KM_OK;
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0)
        return errno == EEXIST ? KM_OK
                               : km_fail(err, KM_EIO, "cannot create %s: %s", p,
                                         strerror(errno));
    ssize_t w = write(fd, tag, sizeof tag - 1);
    close(fd);
    return w == (ssize_t)(sizeof tag - 1) ? KM_OK
                                          : km_fail(err, KM_EIO, "cannot write %s", p);
}

static void emit_wait(const struct hub_pull_opts *o, const char *path)
{
    if (!o || !o->progress)
        return;
    struct hub_event ev = {.kind = HUB_EV_WAIT, .repo = o->repo, .msg = path};
    o->progress(&ev, o->progress_ud);
}

/* Is fd still the file at path? (`models rm` may delete a lock file while
 * we wait on it; a lock on the deleted inode would exclude nobody.) */
static int same_file(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* Poll like Python's filelock so a crash of the holder (the kernel drops
 * its flock) lets us in at once; say so every 10 s. 1 = locked (or no
 * locks on this filesystem: correctness then rests on unique temp names),
 * 0 = the file was replaced (open it again), <0 = error (errno). */
static int lock_poll(int fd, const char *path, const struct hub_pull_opts *o)
{
    for (long i = 0;; i++) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return same_file(fd, path);
        if (errno == ENOSYS || errno == EOPNOTSUPP || errno == ENOLCK)
            return 1;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        if (i % 100 == 0)
            emit_wait(o, path);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int hub__lock(const char *cache, const char *folder, const char *etag,
              const struct hub_pull_opts *o, int *fd_out, struct km_err *err)
{
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/.locks/%s", cache, folder);
    snprintf(path, sizeof path, "%s/%s.lock", dir, etag);
    for (;;) {
        int rc = hub__mkdirs(dir, err);
        if (rc)
            return rc;
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0664);
        if (fd < 0)
            return km_fail(err, KM_EIO, "cannot open lock %s: %s", path,
                           strerror(errno));
        (void)!fchmod(fd, 0664); /* group-shared caches; fails harmlessly if not ours */
        int got = lock_poll(fd, path, o);
        if (got > 0) {
            *fd_out = fd;
            return KM_OK;
        }
        int e = errno;
        close(fd);
        if (got < 0)
            return km_fail(err, KM_EIO, "flock %s: %s", path, strerror(e));
    }
}

void hub__unlock(int fd)
{
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
}
