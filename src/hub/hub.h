/* hub.h - Hugging Face Hub client and the shared Hugging Face cache.
 *
 * Purpose: `kanoa-mlops pull` downloads a repository (or some of its files)
 * into the cache huggingface_hub, vLLM and llama.cpp read, byte-for-byte in
 * huggingface_hub's layout:
 *
 *   <cache>/CACHEDIR.TAG
 *   <cache>/.locks/models--org--name/<etag>.lock        flock(2)ed
 *   <cache>/models--org--name/blobs/<etag>               verified content
 *   <cache>/models--org--name/blobs/<etag>.kanoa-partial (+ .ranges sidecar)
 *   <cache>/models--org--name/refs/<rev>                 40 hex, no newline
 *   <cache>/models--org--name/snapshots/<commit>/<path>  relative symlink
 *   <cache>/models--org--name/.no_exist/<commit>/<path>  "absent" marker
 *
 * Contract
 *  - hub_env_load reads HF_ENDPOINT, HF_TOKEN / HUGGING_FACE_HUB_TOKEN /
 *    HF_TOKEN_PATH ($HF_HOME/token), HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE >
 *    $HF_HOME/hub (HF_HOME defaults to $XDG_CACHE_HOME/huggingface, then
 *    ~/.cache/huggingface), HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE and
 *    HF_HUB_DOWNLOAD_TIMEOUT. The strings belong to the struct; hub_env_free
 *    releases them (safe on a zeroed struct).
 *  - hub_pull resolves the revision, lists the tree once (all pages),
 *    filters it, and for each file either reuses what is in the cache or
 *    downloads it with parallel ranged requests into a partial file,
 *    verifies size and hash (sha256 for LFS files, git-blob sha1 for the
 *    rest) and only then renames it to blobs/<etag>. A killed pull leaves a
 *    partial file whose sidecar names the finished ranges; the next pull
 *    continues from them. Nothing ever appears under a final name unverified.
 *  - Errors are values: KM_EAUTH (gated/unauthorized), KM_ENOTFOUND (repo,
 *    revision or file), KM_ENOSPACE (free space; partial files removed),
 *    KM_EINTEGRITY (hash mismatch; partial removed), KM_EFORMAT (hostile
 *    path in a listing: nothing written), KM_ENET/KM_EHTTP/KM_ETIMEOUT.
 *    err->msg is one sentence a user can act on.
 *  - Progress events go to opts->progress from the calling thread only.
 *  - hub_cache_scan fills a caller-owned struct hub_scan; free it with
 *    hub_scan_free. hub_resolve_model writes a km_malloc'ed path the caller
 *    frees with km_free.
 *
 * Thread-safety: every function may be called from any thread; one
 * struct hub_env may be shared read-only. hub_pull itself runs worker
 * threads (opts->connections) and joins them before returning.
 */
#ifndef KM_HUB_H
#define KM_HUB_H

#include "base/err.h"

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct hub_env {
    char *endpoint;       /* no trailing '/', default https://huggingface.co */
    char *token;          /* NULL when there is none */
    char *cache;          /* hub cache root */
    int offline;          /* HF_HUB_OFFLINE: no network at all */
    long timeout_s;       /* seconds without a byte before a retry */
};

int hub_env_load(struct hub_env *env, struct km_err *err);
void hub_env_free(struct hub_env *env);

/* "models--org--name" for "org/name" (type "model"), km_malloc'ed. */
char *hub_repo_folder(const char *repo);

enum hub_event_kind {
    HUB_EV_RESOLVED,   /* commit known; total = bytes to fetch, files = count */
    HUB_EV_START,      /* one file starts (path, total = size, done = resumed) */
    HUB_EV_PROGRESS,   /* periodic: path, done/total, all_done/all_total */
    HUB_EV_VERIFY,     /* hashing the finished file */
    HUB_EV_DONE,       /* file verified and linked */
    HUB_EV_CACHED,     /* file already in the cache, nothing fetched */
    HUB_EV_RETRY,      /* transient failure, msg says why, retrying */
    HUB_EV_WAIT,       /* waiting for another process's lock */
    HUB_EV_FINISH,     /* pull finished successfully */
};

struct hub_event {
    enum hub_event_kind kind;
    const char *repo;
    const char *commit;       /* NULL before RESOLVED */
    const char *path;         /* file path in the repo, or NULL */
    uint64_t done, total;     /* bytes of this file */
    uint64_t all_done, all_total;  /* bytes of the whole pull (to fetch) */
    size_t files;             /* files selected */
    double elapsed_s;         /* since the pull started */
    double rate;              /* bytes/s of the current file (PROGRESS, DONE) */
    const char *msg;          /* RETRY/WAIT detail, else NULL */
    double hash_rate;         /* FINISH: bytes/s of verification hashing */
    double hash_mem;          /* FINISH: fraction hashed from memory */
};

typedef void (*hub_progress_fn)(const struct hub_event *ev, void *ud);

struct hub_pull_opts {
    const char *repo;             /* "org/name" */
    const char *revision;         /* NULL = "main" */
    const char *const *files;     /* names or globs (positional arguments) */
    size_t nfiles;
    const char *const *include;   /* fnmatch patterns, huggingface-cli style */
    size_t ninclude;
    const char *const *exclude;
    size_t nexclude;
    int connections;              /* parallel ranged requests per file, >= 1 */
    bool durable;                 /* fsync each blob before naming it (--fsync);
                                     off: like huggingface_hub, the rename waits
                                     for no disk (writeback is already started);
                                     a killed process never leaves a bad blob,
                                     a power loss may (models verify finds it) */
    hub_progress_fn progress;     /* may be NULL */
    void *progress_ud;
};

struct hub_pull_result {
    char commit[41];
    char *snapshot;               /* km_malloc'ed snapshots/<commit> dir */
    size_t files;                 /* files selected */
    size_t fetched;               /* files downloaded by this run */
    uint64_t bytes;               /* bytes downloaded by this run */
    double seconds;               /* wall time of the pull */
    double hash_seconds;          /* time spent hashing */
    uint64_t hashed;              /* bytes hashed */
    uint64_t hashed_mem;          /* of which hashed from memory as they
                                     arrived (the rest was read back) */
};

int hub_pull(const struct hub_env *env, const struct hub_pull_opts *opts,
             struct hub_pull_result *res, struct km_err *err);
void hub_pull_result_free(struct hub_pull_result *res);

/* Progress renderers for the CLI: bars on a TTY, plain periodic lines,
 * JSON lines (one object per event), or nothing. */
enum hub_progress_mode { HUB_PROGRESS_AUTO, HUB_PROGRESS_PLAIN,
                         HUB_PROGRESS_JSON, HUB_PROGRESS_QUIET };
struct hub_progress;
struct hub_progress *hub_progress_new(enum hub_progress_mode mode, FILE *out);
void hub_progress_free(struct hub_progress *p);
void hub_progress_event(const struct hub_event *ev, void *ud); /* ud = p */
/* JSON mode: {"event":"error","code":"KM_E...","message":...}; else no-op. */
void hub_progress_error(struct hub_progress *p, const struct km_err *e);
/* "512 B", "1.5 KiB", "2.0 GiB" (1024-based) into b[n]. */
void hub_human_bytes(char *b, size_t n, double v);

/* ---- the cache as it is on disk (models list / rm / verify / du) ---- */

struct hub_scan_file {
    char *path;          /* path in the repo */
    char *blob;          /* etag the link points to, or NULL (plain file) */
    uint64_t size;       /* 0 when missing */
    int present;         /* link resolves to a regular file */
    char quant[16];      /* GGUF quant type from the name ("Q4_K_M"), or "" */
};

struct hub_scan_rev {
    char commit[41];
    char **refs;         /* ref names pointing at it ("main", "v1") */
    size_t nrefs;
    struct hub_scan_file *files;
    size_t nfiles;
    uint64_t size;       /* sum of present files */
    int complete;        /* every entry resolves and no partial belongs to it */
};

struct hub_scan_repo {
    char *repo;          /* "org/name" */
    char *type;          /* "model", "dataset", "space" */
    char *dir;           /* absolute repo folder */
    struct hub_scan_rev *revs;
    size_t nrevs;
    uint64_t blob_bytes; /* unique blobs on disk */
    uint64_t partial_bytes;  /* .kanoa-partial / .incomplete files */
    size_t nblobs;
};

struct hub_scan {
    struct hub_scan_repo *repos;
    size_t nrepos;
    uint64_t total;      /* blob + partial bytes of all repos */
};

/* Read every repo folder of `cache`; a missing cache gives an empty scan. */
int hub_cache_scan(const char *cache, struct hub_scan *out, struct km_err *err);
void hub_scan_free(struct hub_scan *s);

/* Remove a repo (rev NULL) or one revision: its snapshot, refs naming it
 * and blobs no other snapshot uses. *freed = bytes removed. Takes the blob
 * locks a pull holds (.locks/<folder>/<etag>.lock) without waiting: if one
 * is held, nothing is removed and it returns KM_EBUSY naming the lock. */
int hub_cache_rm(const char *cache, const char *repo, const char *rev,
                 uint64_t *freed, struct km_err *err);

/* Re-hash one blob against its name; KM_EINTEGRITY on mismatch. */
int hub_verify_blob(const char *blob_path, const char *etag, uint64_t *bytes,
                    struct km_err *err);

/* "org/repo[:FILE|GLOB|QUANT][@REV]" -> absolute path of a cached file;
 * an existing local path (or one with no ':' that is not in the cache) passes
 * through unchanged. A repo with several .gguf files needs the FILE part.
 * *path_out is km_malloc'ed. Offline: only reads the cache. */
int hub_resolve_model(const char *spec, char **path_out, struct km_err *err);

#endif
