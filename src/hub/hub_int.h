/* hub_int.h - internals shared by the files of src/hub/ (not for callers).
 *
 * http.c is the only libcurl user; api.c turns Hub JSON into struct
 * hub__file lists; cache.c owns paths, refs, links, locks, markers and the
 * directory walkers; download.c fetches one file into blobs/ while
 * hashfeed.c's thread hashes it; scan.c reads the cache back, rm.c removes
 * from it under the blob locks; hash.c and filter.c are pure.
 * Ownership: every char * in these structs is km_malloc'ed and freed by the
 * matching _free function. Thread-safety: a struct hub__http is used by one
 * thread at a time; a struct hub__hashfeed is shared by the writers and its
 * thread as its contract says; everything else is reentrant.
 */
#ifndef KM_HUB_INT_H
#define KM_HUB_INT_H

#include "base/buf.h"
#include "base/err.h"
#include "hub/hub.h"

#include <stdint.h>

/* ---- hash.c ---- */
enum hub__hash_kind { HUB_HASH_SHA256, HUB_HASH_GITSHA1 };
/* Kind implied by an etag: 64 hex -> sha256, 40 hex -> git sha1. */
int hub__hash_kind_of(const char *etag, enum hub__hash_kind *kind);
/* Hash a whole file (git sha1 prepends "blob <size>\0"); hex_out >= 65. */
int hub__hash_file(const char *path, enum hub__hash_kind kind, char *hex_out,
                   uint64_t *bytes, struct km_err *err);
int hub__hash_mem(const void *p, size_t n, enum hub__hash_kind kind,
                  char *hex_out);
int hub__is_hex(const char *s, size_t n);
/* Incremental: new (git sha1 needs the total size up front), update with
 * the bytes in order, final, free. */
struct hub__hasher;
int hub__hasher_new(enum hub__hash_kind kind, uint64_t size,
                    struct hub__hasher **out);
void hub__hasher_update(struct hub__hasher *h, const void *p, size_t n);
void hub__hasher_final(struct hub__hasher *h, char *hex_out);
void hub__hasher_free(struct hub__hasher *h);

/* ---- hashfeed.c: a hashing thread behind the write frontier ----
 * fd/size/chunk describe the file being written in chunks of `chunk` bytes
 * (the ranges-file chunks). Writers call hub__hashfeed_landed(f, i, n) from
 * any thread when the first n bytes of chunk i are written (pwrite done);
 * the thread hashes the contiguous prefix as it grows (from lent buffers,
 * else reading it back with pread) and, if writeback is set, starts the
 * kernel's writeback behind it (sync_file_range, no fsync).
 * A writer may lend the buffer it just wrote at file offset off
 * (hub__hashfeed_lend, after the pwrite and its landed call): if the thread
 * reaches off while the loan stands it hashes from p instead of reading back.
 * The writer must call hub__hashfeed_reclaim(f, p) before it changes or
 * frees p (it waits only while the thread is inside p); a rewrite of lent
 * offsets with other bytes also needs a reclaim first. Loans beyond a fixed
 * number are ignored.
 * Mark already-finished chunks before hub__hashfeed_start. end says "no
 * more writes": it waits for the thread to drain, then KM_OK with the hex
 * digest (hex_out >= 65), KM_EIO if reading back failed, KM_ECANCELED if
 * bytes are missing. stats (bytes hashed, of which from loans, seconds)
 * only after end. free cancels and joins (safe at any point, NULL too);
 * f does not own fd and never owns a lent buffer. */
struct hub__hashfeed;
int hub__hashfeed_new(enum hub__hash_kind kind, int fd, uint64_t size,
                      uint64_t chunk, int writeback, struct hub__hashfeed **out);
void hub__hashfeed_landed(struct hub__hashfeed *f, size_t i, uint64_t n);
void hub__hashfeed_lend(struct hub__hashfeed *f, uint64_t off,
                        const void *p, size_t n);
void hub__hashfeed_reclaim(struct hub__hashfeed *f, const void *p);
/* Flow control for writers: block while more than window bytes are
 * landed without a gap beyond the hashed prefix (the hash is what lags),
 * so that on a busy CPU receivers yield to the hash instead of leaving it
 * all for after the transfer. A gap (a slow or stalled piece) never makes
 * anyone wait; nor does a canceled feed or a stopped thread, nor the
 * prefix marked landed before start (a resumed download re-hashes it while
 * the rest downloads). */
void hub__hashfeed_wait_behind(struct hub__hashfeed *f, uint64_t window);
/* Stop the thread early (the download failed); waiting writers return. */
void hub__hashfeed_cancel(struct hub__hashfeed *f);
int hub__hashfeed_start(struct hub__hashfeed *f);
int hub__hashfeed_end(struct hub__hashfeed *f, char *hex_out);
void hub__hashfeed_stats(const struct hub__hashfeed *f, uint64_t *bytes,
                         uint64_t *mem_bytes, double *seconds);
void hub__hashfeed_free(struct hub__hashfeed *f);

/* ---- filter.c ---- */
/* huggingface_hub filter_repo_objects: kept iff (no allow list or matches
 * one) and matches no ignore pattern. nallow == (size_t)-1 means "no list". */
int hub__filter_match(const char *path, const char *const *allow,
                      size_t nallow, const char *const *ignore,
                      size_t nignore);
int hub__fnmatch(const char *pattern, const char *path);
int hub__has_glob(const char *s);

/* ---- cache.c ---- */
/* Refuse absolute paths, "..", ".", empty parts, backslashes, drive
 * letters. KM_EFORMAT with the path in the message. */
int hub__path_safe(const char *path, struct km_err *err);
int hub__mkdirs(const char *dir, struct km_err *err);   /* mkdir -p */
/* Read refs/<rev> of repo dir into commit[41]; KM_ENOTFOUND if absent. */
int hub__ref_read(const char *repo_dir, const char *rev, char *commit,
                  struct km_err *err);
/* Atomically write refs/<rev> = commit (no newline) if it differs. */
int hub__ref_write(const char *repo_dir, const char *rev,
                   const char *commit, struct km_err *err);
/* snapshots/<commit>/<path> -> ../../(...)blobs/<etag>, replacing others. */
int hub__link_snapshot(const char *repo_dir, const char *commit,
                       const char *path, const char *etag,
                       struct km_err *err);
int hub__mark_no_exist(const char *repo_dir, const char *commit,
                       const char *path, struct km_err *err);
int hub__cachedir_tag(const char *cache, struct km_err *err);
/* flock(LOCK_EX) <cache>/.locks/<folder>/<etag>.lock, polling; *fd out. */
int hub__lock(const char *cache, const char *folder, const char *etag,
              const struct hub_pull_opts *o, int *fd, struct km_err *err);
void hub__unlock(int fd);
/* Remove temp files of dead processes from <cache>/.locks/<folder>/. */
void hub__tmp_sweep(const char *cache, const char *folder);
char *hub__path_join(const char *a, const char *b);     /* km_malloc'ed */
/* Call fn(ud, name, d_type) for each entry of dir except "." and "..",
 * stopping at (and returning) the first code that is not KM_OK.
 * KM_ENOTFOUND when dir does not exist, KM_EIO (errno set) when it cannot
 * be read. */
typedef int (*hub__dirent_fn)(void *ud, const char *name, unsigned char type);
int hub__dir_each(const char *dir, hub__dirent_fn fn, void *ud);
/* Call fn(ud, rel, full) for every entry below root that is not a directory
 * (symlinks are not followed), depth first; rel is the path below root.
 * Same return codes as hub__dir_each. */
typedef int (*hub__walk_fn)(void *ud, const char *rel, const char *full);
int hub__walk_files(const char *root, hub__walk_fn fn, void *ud);

/* ---- http.c (the only libcurl adapter) ---- */
struct hub__resp {
    long status;
    char error_code[64];       /* X-Error-Code */
    char error_message[256];   /* X-Error-Message */
    char repo_commit[64];      /* X-Repo-Commit */
    char etag[128];            /* ETag / X-Linked-Etag (normalized) */
    int64_t linked_size;       /* X-Linked-Size, -1 if none */
    int64_t content_length;    /* -1 if none */
    long retry_after;          /* seconds, -1 if none */
    int accept_ranges;         /* "Accept-Ranges: bytes" seen */
    char *location;            /* absolute redirect target or NULL */
    char *link_next;           /* Link rel="next" target or NULL */
};
void hub__resp_free(struct hub__resp *r);
/* Parse one raw header line ("Name: value\r\n", n bytes, not
 * NUL-terminated) into r; other lines are ignored (exposed for the fuzzer). */
void hub__resp_header(struct hub__resp *r, const char *line, size_t n);

/* Called with body bytes; return n to continue, anything else aborts. */
typedef size_t (*hub__sink_fn)(const void *p, size_t n, void *ud);

struct hub__req {
    const char *method;        /* "GET" or "HEAD" */
    const char *url;
    const char *token;         /* sent as Bearer only if non-NULL */
    int64_t range_from, range_to;  /* inclusive; from < 0: no Range */
    struct km_buf *body;       /* GET into memory (bounded), or */
    hub__sink_fn sink;         /* GET streamed to a sink */
    void *sink_ud;
    long timeout_s;            /* no byte for this long -> KM_ETIMEOUT */
};

struct hub__http;
int hub__http_new(struct hub__http **out, struct km_err *err);
void hub__http_free(struct hub__http *h);
/* Perform one request without following redirects. KM_OK whenever an HTTP
 * response arrived (any status, see resp->status); KM_ENET / KM_ETIMEOUT on
 * transport failure; KM_ECANCELED when the sink aborted. */
int hub__http_do(struct hub__http *h, const struct hub__req *req,
                 struct hub__resp *resp, struct km_err *err);
/* Host part of a URL ("127.0.0.1:8080"); km_malloc'ed, NULL on failure. */
char *hub__url_host(const char *url);
/* Percent-encode; keep_slash keeps '/'. km_malloc'ed. */
char *hub__url_encode(const char *s, int keep_slash);

/* ---- api.c ---- */
struct hub__file {
    char *path;
    char *etag;           /* lfs.oid if LFS, else oid */
    uint64_t size;
    int lfs;
};

struct hub__tree {
    struct hub__file *files;
    size_t n, cap;
};
void hub__tree_free(struct hub__tree *t);
int hub__tree_push(struct hub__tree *t, const char *path, const char *etag,
                    uint64_t size, int lfs);

/* Turn a non-2xx response into a user-facing error for repo/rev/path. */
int hub__http_error(const struct hub_env *env, const char *repo,
                    const char *rev, const char *path,
                    const struct hub__resp *r, struct km_err *err);
/* revision (branch, tag, commit) -> 40-hex commit. */
int hub__api_commit(struct hub__http *h, const struct hub_env *env,
                    const char *repo, const char *rev, char *commit,
                    struct km_err *err);
/* Recursive listing of every file at commit, all pages; paths validated. */
int hub__api_tree(struct hub__http *h, const struct hub_env *env,
                  const char *repo, const char *commit, struct hub__tree *t,
                  struct km_err *err);
/* Parse one tree page (exposed for tests). */
int hub__tree_parse(const char *json, size_t len, struct hub__tree *t,
                    struct km_err *err);
/* Sleep before retry `attempt` (0-based), honouring Retry-After. */
void hub__backoff(int attempt, long retry_after);
int hub__transient(const struct hub__resp *r);

/* ---- resolve.c ---- */
/* The file an org/name[:FILE][@REV] spec picks among the files t of the
 * snapshot directory snap, as hub_resolve_model does (no disk access;
 * exposed for tests and the fuzzer). *path_out is km_malloc'ed. */
int hub__resolve_in(const char *spec, const char *snap,
                    const struct hub__tree *t, char **path_out,
                    struct km_err *err);

/* ---- pull.c ---- */
/* Files of a snapshot dir that resolve to regular files (path, size, etag =
 * link target's basename or "local"); dangling links are skipped. */
int hub__snapshot_list(const char *snap, struct hub__tree *t, struct km_err *err);

/* ---- scan.c ---- */
/* GGUF quant type named in a file name ("tiny-Q4_K_M.gguf" -> "Q4_K_M"),
 * upper-case into out[16]; "" when none. */
void hub__quant_of(const char *path, char *out);

/* ---- download.c ---- */
struct hub__dl {
    const struct hub_env *env;
    const struct hub_pull_opts *opts;
    const char *repo;
    const char *commit;
    const char *blobs_dir;    /* <repo dir>/blobs */
    const struct hub__file *file;
    uint64_t *all_done;       /* shared total counter (progress) */
    uint64_t all_total;
    double t0;
    struct hub_pull_result *res;
};
/* Download file into blobs/<etag> (verified); caller holds the lock. */
int hub__download(struct hub__dl *d, struct km_err *err);
/* Bytes already finished in a partial (for the free-space check). */
uint64_t hub__partial_done(const char *blobs_dir, const char *etag,
                           uint64_t size);
double hub__now(void);

#endif
