/* download.c - fetch one file into blobs/<etag>, in parallel, resumable,
 * verified before it gets its final name.
 *
 * State machine of one blob (all names under blobs/):
 *
 *   (nothing) --start--> <etag>.kanoa-partial + <etag>.kanoa-partial.ranges
 *        ranges = "kanoa-partial 1 <size> <chunk>\n" + one byte per chunk,
 *        '0' = to do, '1' = every byte of that chunk is in the partial file.
 *   workers take '0' chunks, GET them with Range into the partial (pwrite),
 *   and flip the byte to '1' only after the last byte of the chunk is written.
 *   meanwhile a hashing thread (hashfeed.c) hashes the contiguous written
 *   prefix as it grows (--fsync: and starts its writeback);
 *   all '1' --> the digest of the whole partial (sha256 or git sha1) == etag ?
 *        yes: fsync (--fsync only), rename -> <etag> (created 0666 & ~umask), unlink ranges
 *        no:  unlink both (KM_EINTEGRITY), nothing under the final name
 *
 * A kill -9 at any point leaves either no blob or a verified one; the next
 * run re-reads the ranges file and only fetches chunks still '0'. A partial
 * without a readable ranges file (or of another size) is discarded. Our
 * names never match huggingface_hub's "<etag>.incomplete" or
 * "<etag>.<8hex>.incomplete", so no Python client appends to them.
 * ENOSPC removes the partial and its ranges file.
 *
 * Threads: N workers (one libcurl handle each), the hashing thread of the
 * hashfeed, and the calling thread, which only reports progress. Shared
 * state is under `mu`, byte counters atomic. Write path: each worker gathers
 * libcurl's 16 KiB callbacks into 64 KiB, writes them with one pwrite into
 * the page cache (the file is fallocated up front) and lends the buffer to
 * the hashing thread, which hashes it from memory when it is at the hashed
 * front (every byte with one connection when the CPU allows) and reads
 * back from the page cache what landed ahead of it. Pieces go out in file
 * order; a worker waits while the hash lags more than HASH_WINDOW bytes of
 * gap-free data. With --fsync the hashing thread starts writeback behind
 * itself and the only fsync is the one before the rename (without it
 * nothing waits for the disk, as in huggingface_hub).
 */
#include "hub/hub_int.h"

#include "base/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_MIN (1ull << 20)
#define CHUNK_MAX (16ull << 20)      /* with several connections */
#define CHUNK_MAX_ONE (64ull << 20)  /* with one */
#define CHUNK_TRIES 6
/* Writers wait while more than this is written in one piece with the
 * hashed prefix and not hashed yet (hub__hashfeed_wait_behind): the hash
 * then ends right after the last byte even when the CPU is short. */
#define HASH_WINDOW (64ull << 20)
#define MAX_HOPS 10
#define REFRESH_MAX 3    /* re-resolutions of an expired CDN URL per file */
#define EXPIRED (-2)     /* attempt_result: CDN said 403, re-resolve */

struct ranges {
    int fd;
    uint64_t size, chunk;
    size_t n;
    char *done;       /* n bytes, '0'/'1' */
    size_t hdr;       /* header length in the file */
};

struct job {
    struct hub__dl *d;
    char *url;                /* final (post-redirect) URL, under mu */
    char *old_urls[REFRESH_MAX];  /* replaced URLs, freed at the end */
    int refreshed;
    int cdn;                  /* url is on another host than the Hub */
    const char *token;        /* NULL if the URL is on another host */
    int part_fd;
    int ranges;               /* server serves byte ranges */
    struct ranges *rg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t next;              /* next chunk index to consider */
    int running;              /* workers alive */
    int failed;               /* first fatal error recorded */
    struct km_err err;
    atomic_uint_fast64_t done_bytes;
    atomic_int retries;
    char retry_msg[256];
    struct hub__hashfeed *feed;   /* hashes behind the write frontier */
};

/* Where a worker's body bytes go. libcurl hands the write callback at most
 * 16 KiB at a time (CURL_MAX_WRITE_SIZE) whatever its receive buffer, so
 * bytes are gathered in buf and written with one pwrite per SINK_BUF. Each
 * written buffer is then lent to the hashing thread (which hashes it from
 * memory if it is at the hashed front) and the worker moves on to the next
 * buffer of its ring, reclaiming it first. 64 KiB writes cost much less
 * CPU than 1 MiB ones here (bench/pull/cpu.sh: pull -c 1 at 1.8-1.9 s of
 * task-clock per GiB against 2.8-3.5 s with 1 MiB). The ring is 16 MiB
 * with one connection (the hash may lag that much and still read from
 * memory), 4 MiB per connection up to 8, 2 MiB above. */
#define SINK_BUF (64u << 10)
#define SINK_RING 64         /* buffers per worker with 2-8 connections */
#define SINK_RING_ONE 256    /* with one */
#define SINK_RING_MANY 32    /* with more than 8 */

struct sinkpos {
    struct job *j;
    size_t idx;               /* chunk index */
    uint64_t base;            /* first offset of the chunk */
    uint64_t pos, end;        /* next offset to accept, last offset + 1 */
    unsigned char *ring;      /* nring * SINK_BUF bytes, owned by the worker */
    int nring, slot;
    unsigned char *buf;       /* ring slot being filled: [pos - fill, pos) */
    size_t fill;
    int enospc;
};

/* ---------------- ranges sidecar ---------------- */

static void ranges_close(struct ranges *r)
{
    if (r->fd >= 0)
        close(r->fd);
    km_free(r->done);
    r->fd = -1;
    r->done = NULL;
}

static int ranges_load(struct ranges *r, const char *path, uint64_t size)
{
    r->fd = open(path, O_RDWR | O_CLOEXEC);
    if (r->fd < 0)
        return -1;
    char hdr[128] = {0};
    ssize_t n = pread(r->fd, hdr, sizeof hdr - 1, 0);
    unsigned long long sz = 0, ch = 0;
    char *nl = n > 0 ? strchr(hdr, '\n') : NULL;
    if (!nl || sscanf(hdr, "kanoa-partial 1 %llu %llu", &sz, &ch) != 2 ||
        sz != size || ch == 0)
        goto bad;
    r->size = sz;
    r->chunk = ch;
    r->n = (size_t)((sz + ch - 1) / ch);
    r->hdr = (size_t)(nl - hdr + 1);
    r->done = km_malloc(r->n + 1);
    if (!r->done || pread(r->fd, r->done, r->n, (off_t)r->hdr) != (ssize_t)r->n)
        goto bad;
    for (size_t i = 0; i < r->n; i++)
        if (r->done[i] != '0' && r->done[i] != '1')
            goto bad;
    return 0;
bad:
    ranges_close(r);
    return -1;
}

static int ranges_create(struct ranges *r, const char *path, uint64_t size,
                         uint64_t chunk, struct km_err *err)
{
    r->size = size;
    r->chunk = chunk;
    r->n = (size_t)((size + chunk - 1) / chunk);
    r->done = km_malloc(r->n + 1);
    r->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (!r->done || r->fd < 0) {
        ranges_close(r);
        return km_fail(err, KM_EIO, "cannot create %s: %s", path, strerror(errno));
    }
    memset(r->done, '0', r->n);
    char hdr[128];
    int hl = snprintf(hdr, sizeof hdr, "kanoa-partial 1 %llu %llu\n",
                      (unsigned long long)size, (unsigned long long)chunk);
    r->hdr = (size_t)hl;
    if (pwrite(r->fd, hdr, (size_t)hl, 0) != hl ||
        pwrite(r->fd, r->done, r->n, hl) != (ssize_t)r->n) {
        int e = errno;
        ranges_close(r);
        return km_fail(err, e == ENOSPC ? KM_ENOSPACE : KM_EIO,
                       "cannot write %s: %s", path, strerror(e));
    }
    return KM_OK;
}

static int ranges_mark(struct ranges *r, size_t i)
{
    r->done[i] = '1';
    return pwrite(r->fd, "1", 1, (off_t)(r->hdr + i)) == 1 ? 0 : -1;
}

uint64_t hub__partial_done(const char *blobs_dir, const char *etag,
                           uint64_t size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.kanoa-partial.ranges", blobs_dir, etag);
    struct ranges r = {.fd = -1};
    if (ranges_load(&r, path, size) != 0)
        return 0;
    uint64_t done = 0;
    for (size_t i = 0; i < r.n; i++) {
        if (r.done[i] != '1')
            continue;
        uint64_t a = i * r.chunk;
        done += (a + r.chunk > size ? size - a : r.chunk);
    }
    ranges_close(&r);
    return done;
}

/* Pieces are handed out in file order, each connection taking the next one
 * when it finishes one (keep-alive), so the written prefix grows at the
 * total rate and the hash follows right behind; small pieces keep the part
 * written out of order (at most about conns pieces) small. One connection
 * gets larger pieces (fewer requests; its bytes arrive in order anyway). */
static uint64_t choose_chunk(uint64_t size, int conns)
{
    uint64_t c = size / ((uint64_t)conns * 4);
    uint64_t max = conns > 1 ? CHUNK_MAX : CHUNK_MAX_ONE;
    if (c < CHUNK_MIN)
        c = CHUNK_MIN;
    if (c > max)
        c = max;
    return c;
}

/* ---------------- redirects ---------------- */

/* HEAD the resolve URL, following redirects by hand so the token is only
 * sent to the Hub's own host. Out: km_malloc'ed final URL, whether the token
 * applies there, and whether it serves byte ranges. */
static int resolve_url(struct hub__dl *d, struct hub__http *h, char **final,
                       int *use_token, int *ranges, struct km_err *err)
{
    const struct hub_env *env = d->env;
    char *epath = hub__url_encode(d->file->path, 1);
    char *url = km_malloc(8192);
    char *host0 = hub__url_host(env->endpoint);
    struct hub__resp resp = {0};
    int rc = KM_ENOMEM;
    if (!epath || !url || !host0) {
        km_fail(err, rc, "out of memory");
        goto out;
    }
    snprintf(url, 8192, "%s/%s/resolve/%s/%s", env->endpoint, d->repo,
             d->commit, epath);
    for (int hop = 0, attempt = 0; hop < MAX_HOPS;) {
        char *host = hub__url_host(url);
        int same = host && strcmp(host, host0) == 0;
        km_free(host);
        struct hub__req req = {.method = "HEAD", .url = url,
                               .token = same ? env->token : NULL,
                               .range_from = -1, .timeout_s = env->timeout_s};
        rc = hub__http_do(h, &req, &resp, err);
        int transient = rc == KM_ENET || rc == KM_ETIMEOUT ||
                        (rc == KM_OK && hub__transient(&resp));
        if (transient && ++attempt < CHUNK_TRIES) {
            hub__backoff(attempt - 1, resp.retry_after);
            continue;
        }
        if (rc)
            goto out;
        if (resp.status >= 300 && resp.status < 400 && resp.location) {
            snprintf(url, 8192, "%s", resp.location);
            hop++;
            continue;
        }
        if (resp.status < 200 || resp.status > 299) {
            rc = hub__http_error(env, d->repo, d->opts->revision ? d->opts->revision
                                 : "main", d->file->path, &resp, err);
            goto out;
        }
        *use_token = same;
        *ranges = resp.accept_ranges;
        *final = url;
        url = NULL;
        rc = KM_OK;
        goto out;
    }
    rc = km_fail(err, KM_EHTTP, "too many redirects resolving %s", d->file->path);
out:
    hub__resp_free(&resp);
    km_free(epath);
    km_free(url);
    km_free(host0);
    return rc;
}

/* ---------------- workers ---------------- */

/* Write the gathered bytes; on failure pos falls back to what is on disk
 * (where a retry resumes). 0 or -1. */
static int sink_flush(struct sinkpos *s)
{
    uint64_t off = s->pos - s->fill;
    size_t done = 0;
    while (done < s->fill) {
        ssize_t w = pwrite(s->j->part_fd, s->buf + done, s->fill - done,
                           (off_t)(off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            s->enospc = errno == ENOSPC || errno == EDQUOT || errno == EFBIG;
            atomic_fetch_sub(&s->j->done_bytes, s->fill - done);
            s->pos = off + done;
            s->fill = 0;
            return -1;
        }
        done += (size_t)w;
    }
    hub__hashfeed_landed(s->j->feed, s->idx, s->pos - s->base);
    if (s->fill > 0) {
        hub__hashfeed_lend(s->j->feed, off, s->buf, s->fill);
        s->slot = (s->slot + 1) % s->nring;
        s->buf = s->ring + (size_t)s->slot * SINK_BUF;
        hub__hashfeed_reclaim(s->j->feed, s->buf);
        hub__hashfeed_wait_behind(s->j->feed, HASH_WINDOW);
    }
    s->fill = 0;
    return 0;
}

/* Take every lent buffer back (before the bytes are rewritten or freed). */
static void sink_reclaim_all(struct sinkpos *s)
{
    for (int k = 0; k < s->nring; k++)
        hub__hashfeed_reclaim(s->j->feed, s->ring + (size_t)k * SINK_BUF);
}

static size_t sink_write(const void *p, size_t n, void *ud)
{
    struct sinkpos *s = ud;
    const unsigned char *b = p;
    if (s->pos + n > s->end)
        return 0; /* more bytes than the range: refuse */
    for (size_t k = 0; k < n;) {
        if (s->fill == SINK_BUF && sink_flush(s) != 0)
            return 0;
        size_t m = n - k < SINK_BUF - s->fill ? n - k : SINK_BUF - s->fill;
        memcpy(s->buf + s->fill, b + k, m);
        s->fill += m;
        s->pos += m;
        k += m;
        atomic_fetch_add(&s->j->done_bytes, (uint64_t)m);
    }
    return n;
}

static void job_fail(struct job *j, const struct km_err *e)
{
    pthread_mutex_lock(&j->mu);
    if (!j->failed) {
        j->failed = 1;
        j->err = *e;
    }
    pthread_mutex_unlock(&j->mu);
    hub__hashfeed_cancel(j->feed); /* no use now; frees waiting workers */
}

static int job_stopped(struct job *j)
{
    pthread_mutex_lock(&j->mu);
    int f = j->failed;
    pthread_mutex_unlock(&j->mu);
    return f;
}

/* Next chunk still to do, or -1. */
static long take_chunk(struct job *j)
{
    long i = -1;
    pthread_mutex_lock(&j->mu);
    while (!j->failed && j->next < j->rg->n) {
        size_t k = j->next++;
        if (j->rg->done[k] == '0') {
            i = (long)k;
            break;
        }
    }
    pthread_mutex_unlock(&j->mu);
    return i;
}

static void note_retry(struct job *j, const struct km_err *e)
{
    atomic_fetch_add(&j->retries, 1);
    pthread_mutex_lock(&j->mu);
    snprintf(j->retry_msg, sizeof j->retry_msg, "%s", km_err_text(e));
    pthread_mutex_unlock(&j->mu);
}

#define RETRY (-1)   /* attempt_result: transient, e says why */

/* One attempt's outcome: KM_OK, RETRY, or a fatal code. Fills e. */
static int attempt_result(struct job *j, int rc, const struct hub__resp *resp,
                          const struct sinkpos *s, struct km_err *e)
{
    struct hub__dl *d = j->d;
    const char *rev = d->opts->revision ? d->opts->revision : "main";
    if (s->enospc)
        return km_fail(e, KM_ENOSPACE, "disk full writing %s: it needs %llu "
                       "bytes in %s", d->file->path,
                       (unsigned long long)d->file->size, d->blobs_dir);
    if (rc == KM_ENET || rc == KM_ETIMEOUT || rc == KM_ECANCELED ||
        rc == KM_EHTTP) /* EHTTP here: a 200 to a Range request */
        return RETRY;
    if (rc != KM_OK)
        return rc;
    if (resp->status == 403 && j->cdn && j->refreshed < REFRESH_MAX) {
        km_fail(e, KM_EAUTH, "%s: the CDN answered 403 (presigned URL expired?)",
                d->file->path);
        return EXPIRED;
    }
    if (resp->status != 206 && resp->status != 200) {
        if (!hub__transient(resp))
            return hub__http_error(d->env, d->repo, rev, d->file->path, resp, e);
        km_fail(e, KM_EHTTP, "%s: HTTP %ld from the server", d->file->path,
                resp->status);
        return RETRY;
    }
    if (s->pos != s->end) {
        km_fail(e, KM_ENET, "%s: connection ended after byte %llu of a range "
                "ending at %llu", d->file->path, (unsigned long long)s->pos,
                (unsigned long long)s->end);
        return RETRY;
    }
    return KM_OK;
}

static int resolve_url(struct hub__dl *d, struct hub__http *h, char **final,
                       int *use_token, int *ranges, struct km_err *err);

/* The CDN refused a presigned URL (expired): resolve the file again, once
 * for all workers (the first to notice does it), then retry. */
static int refresh_url(struct job *j, struct hub__http *h, const char *used,
                       struct km_err *e)
{
    int rc = RETRY;
    pthread_mutex_lock(&j->mu);
    if (j->url == used && j->refreshed < REFRESH_MAX) {
        char *url = NULL;
        int tok = 0, rng = 0;
        if (resolve_url(j->d, h, &url, &tok, &rng, e) != KM_OK || tok) {
            km_free(url);
            rc = e->code ? e->code : KM_EHTTP;
        } else {
            j->old_urls[j->refreshed++] = j->url;
            j->url = url;
        }
    }
    pthread_mutex_unlock(&j->mu);
    return rc;
}

/* Fetch chunk i completely (resuming inside it after each failure). */
static int fetch_chunk(struct job *j, struct hub__http *h, size_t i,
                       struct sinkpos *sp, struct km_err *e)
{
    struct ranges *rg = j->rg;
    uint64_t a = i * rg->chunk;
    uint64_t end = a + rg->chunk > rg->size ? rg->size : a + rg->chunk;
    struct sinkpos s = *sp;
    s.idx = i;
    s.base = s.pos = a;
    s.end = end;
    s.fill = 0;
    struct hub__resp resp = {0};
    int rc = KM_OK, fails = 0;
    while (s.pos < end && !job_stopped(j)) {
        uint64_t before = s.pos;
        int whole = !j->ranges || (s.pos == 0 && end == rg->size);
        pthread_mutex_lock(&j->mu);
        const char *url = j->url; /* stays allocated until the job ends */
        pthread_mutex_unlock(&j->mu);
        struct hub__req req = {.method = "GET", .url = url,
                               .token = j->token,
                               .range_from = whole ? -1 : (int64_t)s.pos,
                               .range_to = (int64_t)end - 1,
                               .sink = sink_write, .sink_ud = &s,
                               .timeout_s = j->d->env->timeout_s};
        rc = hub__http_do(h, &req, &resp, e);
        sink_flush(&s); /* on failure: enospc set, or pos back to the disk's */
        rc = attempt_result(j, rc, &resp, &s, e);
        if (rc == EXPIRED)
            rc = refresh_url(j, h, url, e);
        if (rc != RETRY)
            break;
        if (!j->ranges && s.pos > 0) {
            atomic_fetch_sub(&j->done_bytes, s.pos); /* restart from 0 */
            s.pos = 0;
            sink_reclaim_all(&s); /* lent bytes are about to be rewritten */
        }
        fails = s.pos > before ? 1 : fails + 1; /* progress resets */
        if (fails >= CHUNK_TRIES)
            break;
        note_retry(j, e);
        hub__backoff(fails - 1, resp.retry_after);
    }
    hub__resp_free(&resp);
    sp->slot = s.slot; /* the ring position carries over to the next chunk */
    sp->buf = s.buf;
    if (rc == RETRY && s.pos == end)
        rc = KM_OK; /* every byte of the range arrived; the surplus was refused */
    if (rc == KM_OK && s.pos != end)   /* another worker failed: stop, unmarked */
        return km_fail(e, KM_ECANCELED, "download of %s canceled", j->d->file->path);
    if (rc == RETRY) {
        km_err_prefix(e, "giving up after %d failed attempts", fails);
        rc = e->code != KM_OK ? e->code : KM_ENET;
    }
    return rc;
}

static void *worker(void *arg)
{
    struct job *j = arg;
    struct hub__http *h = NULL;
    struct km_err e = {0};
    int conns = j->d->opts->connections;
    struct sinkpos s = {.j = j, .nring = conns <= 1 ? SINK_RING_ONE
                        : conns > 8 ? SINK_RING_MANY : SINK_RING};
    s.ring = km_malloc((size_t)s.nring * SINK_BUF);
    s.buf = s.ring;
    int rc = s.ring ? hub__http_new(&h, &e) : km_fail(&e, KM_ENOMEM, "out of memory");
    while (rc == KM_OK) {
        long i = take_chunk(j);
        if (i < 0)
            break;
        rc = fetch_chunk(j, h, (size_t)i, &s, &e);
        if (rc != KM_OK)
            break;
        pthread_mutex_lock(&j->mu);
        int mrc = ranges_mark(j->rg, (size_t)i);
        pthread_mutex_unlock(&j->mu);
        if (mrc != 0)
            rc = km_fail(&e, KM_EIO, "cannot update the ranges file of %s: %s",
                         j->d->file->path, strerror(errno));
    }
    if (rc != KM_OK)
        job_fail(j, &e);
    hub__http_free(h);
    if (s.ring)
        sink_reclaim_all(&s);
    km_free(s.ring);
    pthread_mutex_lock(&j->mu);
    j->running--;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* ---------------- progress ---------------- */

static void emit(struct hub__dl *d, enum hub_event_kind k, uint64_t done,
                 double rate, const char *msg)
{
    const struct hub_pull_opts *o = d->opts;
    if (!o->progress)
        return;
    struct hub_event ev = {
        .kind = k, .repo = d->repo, .commit = d->commit,
        .path = d->file->path, .done = done, .total = d->file->size,
        .all_done = *d->all_done, .all_total = d->all_total,
        .elapsed_s = hub__now() - d->t0, .rate = rate, .msg = msg};
    o->progress(&ev, o->progress_ud);
}

static void deadline(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_nsec += ms * 1000 * 1000;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Wait for the workers and report progress about four times a second. */
static void watch(struct job *j, uint64_t base, double t_start)
{
    struct hub__dl *d = j->d;
    int seen_retries = 0;
    double last = 0;
    for (;;) {
        struct timespec ts;
        char msg[256];
        pthread_mutex_lock(&j->mu);
        if (j->running > 0) {
            deadline(&ts, 250);
            pthread_cond_timedwait(&j->cv, &j->mu, &ts);
        }
        int running = j->running;
        int r = atomic_load(&j->retries);
        snprintf(msg, sizeof msg, "%s", j->retry_msg);
        pthread_mutex_unlock(&j->mu);
        uint64_t now = atomic_load(&j->done_bytes);
        double t = hub__now();
        *d->all_done = base + now;
        if (r != seen_retries)
            emit(d, HUB_EV_RETRY, now, 0, msg);
        seen_retries = r;
        if (t - last >= 0.25 || running == 0) {
            last = t;
            emit(d, HUB_EV_PROGRESS, now, t > t_start ? (double)now / (t - t_start) : 0,
                 NULL);
        }
        if (running == 0)
            break;
    }
}

/* ---------------- one file ---------------- */

static void unlink_partial(const char *part, const char *side)
{
    unlink(part);
    unlink(side);
}

/* Open (resume) or create the partial and its ranges file. */
static int open_partial(struct hub__dl *d, const char *part, const char *side,
                        int ranges_ok, int conns, int *fd, struct ranges *rg,
                        struct km_err *err)
{
    uint64_t size = d->file->size;
    int resumed = ranges_load(rg, side, size) == 0;
    if (resumed && !ranges_ok && rg->n != 1) {
        ranges_close(rg); /* chunked partial, but no ranges now: restart */
        resumed = 0;
    }
    *fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC | (resumed ? 0 : O_TRUNC), 0666);
    if (*fd < 0) {
        ranges_close(rg);
        return km_fail(err, KM_EIO, "cannot open %s: %s", part, strerror(errno));
    }
    if (!resumed) {
        uint64_t chunk = ranges_ok ? choose_chunk(size, conns) : (size ? size : 1);
        int rc = ranges_create(rg, side, size, chunk, err);
        if (rc)
            return rc;
    }
    if (size > 0 && fallocate(*fd, 0, 0, (off_t)size) != 0) {
        if (errno == ENOSPC || errno == EDQUOT)
            return km_fail(err, KM_ENOSPACE, "no space for %s: it needs %llu "
                           "bytes in %s", d->file->path,
                           (unsigned long long)size, d->blobs_dir);
        if (ftruncate(*fd, (off_t)size) != 0)
            return km_fail(err, KM_EIO, "cannot size %s: %s", part, strerror(errno));
    }
    return KM_OK;
}

static int run_workers(struct job *j, int conns, uint64_t base)
{
    size_t todo = 0;
    for (size_t i = 0; i < j->rg->n; i++)
        todo += j->rg->done[i] == '0';
    int n = (size_t)conns < todo ? conns : (int)todo;
    pthread_t tid[64];
    double t = hub__now();
    j->running = 0;
    for (int i = 0; i < n && i < 64; i++) {
        pthread_mutex_lock(&j->mu);
        j->running++;
        pthread_mutex_unlock(&j->mu);
        if (pthread_create(&tid[i], NULL, worker, j) != 0) {
            pthread_mutex_lock(&j->mu);
            j->running--;
            pthread_mutex_unlock(&j->mu);
            n = i;
            break;
        }
    }
    watch(j, base, t);
    for (int i = 0; i < n; i++)
        pthread_join(tid[i], NULL);
    if (j->failed)
        return j->err.code;
    for (size_t i = 0; i < j->rg->n; i++)
        if (j->rg->done[i] != '1')
            return km_fail(&j->err, KM_EIO, "download of %s stopped before "
                           "every range was fetched", j->d->file->path);
    return KM_OK;
}

/* Let the hashing thread finish the tail, compare, rename if equal. */
static int finalize(struct job *j, const char *part, const char *final,
                    struct km_err *err)
{
    struct hub__dl *d = j->d;
    enum hub__hash_kind kind;
    char hex[130];
    hub__hash_kind_of(d->file->etag, &kind);
    emit(d, HUB_EV_VERIFY, d->file->size, 0, NULL);
    int hrc = hub__hashfeed_end(j->feed, hex);
    uint64_t hashed = 0, mem = 0;
    double secs = 0;
    hub__hashfeed_stats(j->feed, &hashed, &mem, &secs);
    d->res->hashed += hashed;
    d->res->hashed_mem += mem;
    d->res->hash_seconds += secs;
    struct stat st;
    if (hrc != KM_OK || fstat(j->part_fd, &st) != 0)
        return km_fail(err, KM_EIO, "cannot read back %s to verify it (%llu of "
                       "%llu bytes hashed): %s", part, (unsigned long long)hashed,
                       (unsigned long long)d->file->size,
                       hrc == KM_EIO ? strerror(errno) : "bytes missing");
    uint64_t n = (uint64_t)st.st_size;
    if (n != d->file->size || strcmp(hex, d->file->etag) != 0)
        return km_fail(err, KM_EINTEGRITY, "%s: %s mismatch: the listing says "
                       "%s (%llu bytes), the download is %s (%llu bytes); the "
                       "partial file was removed", d->file->path,
                       kind == HUB_HASH_SHA256 ? "sha256" : "git sha1",
                       d->file->etag, (unsigned long long)d->file->size, hex,
                       (unsigned long long)n);
    /* The partial was created 0666 minus the umask: already the mode a
     * fresh file gets in blobs/ (huggingface_hub's _chmod_and_move). */
    if (d->opts->durable && fsync(j->part_fd) != 0)
        return km_fail(err, KM_EIO, "cannot flush %s to disk: %s", part,
                       strerror(errno));
    if (rename(part, final) != 0)
        return km_fail(err, KM_EIO, "cannot move %s to %s: %s", part, final,
                       strerror(errno));
    int dfd = d->opts->durable ? open(d->blobs_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return KM_OK;
}

/* Start the hashing thread; chunks finished by an earlier run are hashed
 * from disk while the missing ones download. */
static int start_feed(struct hub__dl *d, struct job *j, struct km_err *err)
{
    enum hub__hash_kind kind;
    struct ranges *rg = j->rg;
    if (hub__hash_kind_of(d->file->etag, &kind) != KM_OK)
        return km_fail(err, KM_EFORMAT, "etag %s of %s is not a hash",
                       d->file->etag, d->file->path);
    if (hub__hashfeed_new(kind, j->part_fd, rg->size, rg->chunk,
                          d->opts->durable, &j->feed) != KM_OK)
        return km_fail(err, KM_ENOMEM, "out of memory");
    for (size_t i = 0; i < rg->n; i++)
        if (rg->done[i] == '1')
            hub__hashfeed_landed(j->feed, i, i * rg->chunk + rg->chunk > rg->size
                                 ? rg->size - i * rg->chunk : rg->chunk);
    if (hub__hashfeed_start(j->feed) != KM_OK)
        return km_fail(err, KM_ENOMEM, "cannot start the hashing thread");
    return KM_OK;
}

/* Release what a job holds (the hashing thread is joined before part_fd
 * closes). */
static void job_release(struct job *j)
{
    hub__hashfeed_free(j->feed);
    if (j->part_fd >= 0)
        close(j->part_fd);
    ranges_close(j->rg);
    km_free(j->url);
    for (int k = 0; k < j->refreshed; k++)
        km_free(j->old_urls[k]);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
}

int hub__download(struct hub__dl *d, struct km_err *err)
{
    char part[4096], side[4200], final[4096];
    const char *etag = d->file->etag;
    snprintf(final, sizeof final, "%s/%s", d->blobs_dir, etag);
    snprintf(part, sizeof part, "%s/%s.kanoa-partial", d->blobs_dir, etag);
    snprintf(side, sizeof side, "%s.ranges", part);
    struct hub__http *h = NULL;
    struct ranges rg = {.fd = -1};
    struct job j = {.d = d, .part_fd = -1, .rg = &rg};
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv, NULL);
    char *url = NULL;
    int use_token = 0, ranges_ok = 0;
    int conns = d->opts->connections > 0 ? d->opts->connections : 1;
    uint64_t base = *d->all_done;
    int rc = hub__http_new(&h, err);
    if (rc == KM_OK)
        rc = resolve_url(d, h, &url, &use_token, &ranges_ok, err);
    if (rc == KM_OK)
        rc = open_partial(d, part, side, ranges_ok, conns, &j.part_fd, &rg, err);
    if (rc == KM_OK)
        rc = start_feed(d, &j, err);
    if (rc != KM_OK)
        goto out;
    j.url = url;
    url = NULL; /* owned by the job now */
    j.token = use_token ? d->env->token : NULL;
    j.cdn = !use_token;
    j.ranges = ranges_ok;
    uint64_t resumed = hub__partial_done(d->blobs_dir, etag, d->file->size);
    *d->all_done = base;
    emit(d, HUB_EV_START, resumed, 0, NULL);
    *d->all_done = base + resumed;
    atomic_store(&j.done_bytes, resumed);
    double t = hub__now();
    rc = run_workers(&j, conns, base);
    d->res->bytes += atomic_load(&j.done_bytes) - resumed;
    if (rc != KM_OK) {
        *err = j.err;
        goto out;
    }
    rc = finalize(&j, part, final, err);
    double dt = hub__now() - t;
    if (rc == KM_OK) {
        unlink(side);
        emit(d, HUB_EV_DONE, d->file->size,
             dt > 0 ? (double)(d->file->size - resumed) / dt : 0, NULL);
    }
out:
    job_release(&j);
    if (rc == KM_ENOSPACE || rc == KM_EINTEGRITY)
        unlink_partial(part, side);
    km_free(url);
    hub__http_free(h);
    return rc;
}
