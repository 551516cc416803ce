/* hashfeed.c - a hashing thread that follows the written prefix of a file
 * while it downloads (see hub_int.h), so verification overlaps the transfer.
 *
 * The file is cut into chunks of `chunk` bytes (the ranges-file chunks).
 * Writers report, per chunk, how many bytes from the chunk's start are on
 * disk (hub__hashfeed_landed). The thread hashes the contiguous prefix
 * [0, pos) of the file as it grows, from a writer's lent buffer when one
 * holds pos (below), else reading the bytes back with pread (they were
 * written moments ago and are still in the page cache), so writers never
 * wait for the hash and the hash never waits for more than one step of the
 * slowest chunk in front of it.
 *
 * Loans: a writer may lend the buffer it has just written
 * (hub__hashfeed_lend). When the thread reaches a lent range it hashes the
 * bytes from that memory instead of reading them back: with one connection
 * that is every byte (the thread runs a buffer or two behind the writer),
 * with N the range of the piece at the front. The writer takes the buffer
 * back before reusing it (hub__hashfeed_reclaim), waiting only while the
 * thread is inside it; a loan the thread did not reach is simply dropped and
 * those bytes are read back later. Loans never hold up a writer otherwise,
 * and their number is fixed (FEED_LOANS), so memory stays the writers'.
 *
 * Write-behind (only when asked: pull --fsync): every WB_STEP bytes of
 * hashed prefix the thread starts the kernel's writeback of that range
 * (sync_file_range WRITE, no wait), so the disk works while the network
 * does and the one fsync before the rename finds only the tail dirty.
 * Without --fsync nothing waits for the disk, and submitting writeback
 * here would only spend this process's CPU on what the kernel's flusher
 * does later anyway (as after curl -o). Nothing here fsyncs.
 *
 * States: running -> (end: every writer is done) -> drains what landed ->
 * stopped; or running -> (cancel) -> stopped at once. pos never moves back.
 * If a chunk is rewritten from its start (a server without ranges restarted
 * the body), its landed count drops below pos and the thread simply waits
 * until the rewrite passes pos again; a rewrite with other bytes shows up
 * as a hash mismatch, never as a wrong "ok".
 */
#include "hub/hub_int.h"

#include "base/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

/* One pread + digest update at most (128 KiB reads cost less CPU than
 * 1 MiB ones: bench/pull/cpu.sh, pull -c 8). */
#define FEED_BUF (128u << 10)
#define WB_STEP (32ull << 20)   /* start writeback every 32 MiB hashed */
#define FEED_LOANS 512          /* lent buffers tracked at once */

struct loan {
    const unsigned char *p;        /* NULL: free slot */
    uint64_t off;
    size_t n;
    int busy;                      /* the thread is hashing from p */
};

struct hub__hashfeed {
    struct hub__hasher *h;
    int fd;
    int writeback;                 /* start writeback behind the hash */
    uint64_t size, chunk;
    size_t n;
    atomic_uint_fast64_t *landed;  /* n counters: bytes from chunk start */
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* to the thread: bytes landed, end */
    pthread_cond_t loan_cv;        /* to writers: a loan is no longer busy */
    struct loan loans[FEED_LOANS]; /* under mu */
    int ended, canceled;           /* under mu */
    int stopped;                   /* under mu: the thread has returned */
    uint64_t front;                /* under mu: pos as the writers see it */
    uint64_t floor;                /* prefix landed before start (resume):
                                      writers never wait for its hash */
    int waiters;                   /* under mu: writers in wait_behind */
    pthread_t tid;
    int started, joined;
    /* thread-owned until joined */
    uint64_t pos, wb;
    unsigned char *buf;
    int read_failed;
    double seconds;
    uint64_t mem_bytes;            /* hashed from loans */
};

int hub__hashfeed_new(enum hub__hash_kind kind, int fd, uint64_t size,
                      uint64_t chunk, int writeback, struct hub__hashfeed **out)
{
    struct hub__hashfeed *f = km_calloc(1, sizeof *f);
    if (!f)
        return KM_ENOMEM;
    f->fd = fd;
    f->writeback = writeback;
    f->size = size;
    f->chunk = chunk ? chunk : 1;
    f->n = (size_t)((size + f->chunk - 1) / f->chunk);
    f->landed = km_calloc(f->n + 1, sizeof *f->landed);
    f->buf = km_malloc(FEED_BUF);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    pthread_cond_init(&f->loan_cv, NULL);
    if (!f->landed || !f->buf || hub__hasher_new(kind, size, &f->h) != KM_OK) {
        hub__hashfeed_free(f);
        return KM_ENOMEM;
    }
    *out = f;
    return KM_OK;
}

static uint64_t chunk_len(const struct hub__hashfeed *f, size_t i)
{
    uint64_t a = (uint64_t)i * f->chunk;
    return a + f->chunk > f->size ? f->size - a : f->chunk;
}

void hub__hashfeed_landed(struct hub__hashfeed *f, size_t i, uint64_t n)
{
    if (i >= f->n)
        return;
    uint64_t old = atomic_exchange(&f->landed[i], n);
    /* Wake the thread once per FEED_BUF crossed and when the chunk completes;
     * the signal under mu cannot be lost (the thread re-checks under mu). */
    if (old / FEED_BUF == n / FEED_BUF && n != chunk_len(f, i))
        return;
    pthread_mutex_lock(&f->mu);
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

void hub__hashfeed_lend(struct hub__hashfeed *f, uint64_t off,
                        const void *p, size_t n)
{
    pthread_mutex_lock(&f->mu);
    for (size_t k = 0; k < FEED_LOANS && n > 0; k++) {
        if (f->loans[k].p)
            continue;
        f->loans[k] = (struct loan){.p = p, .off = off, .n = n};
        pthread_cond_signal(&f->cv);
        break;
    }
    pthread_mutex_unlock(&f->mu);
}

void hub__hashfeed_reclaim(struct hub__hashfeed *f, const void *p)
{
    pthread_mutex_lock(&f->mu);
    for (size_t k = 0; k < FEED_LOANS; k++) {
        while (f->loans[k].p == p && f->loans[k].busy)
            pthread_cond_wait(&f->loan_cv, &f->mu);
        if (f->loans[k].p == p)
            f->loans[k].p = NULL;
    }
    pthread_mutex_unlock(&f->mu);
}

/* The loan holding the byte at pos, marked busy, or NULL; then *r is cut
 * so that reading back stops where the next loan starts (under mu). */
static struct loan *loan_at_pos(struct hub__hashfeed *f, uint64_t *r)
{
    for (size_t k = 0; k < FEED_LOANS; k++) {
        struct loan *l = &f->loans[k];
        if (l->p && l->off <= f->pos && f->pos < l->off + l->n) {
            l->busy = 1;
            return l;
        }
    }
    for (size_t k = 0; k < FEED_LOANS; k++) {
        const struct loan *l = &f->loans[k];
        if (l->p && l->off > f->pos && l->off - f->pos < *r)
            *r = l->off - f->pos;
    }
    return NULL;
}

/* Bytes readable at f->pos without waiting (0 if none). */
static uint64_t ready_at_pos(const struct hub__hashfeed *f)
{
    size_t i = (size_t)(f->pos / f->chunk);
    if (i >= f->n)
        return 0;
    uint64_t start = (uint64_t)i * f->chunk;
    uint64_t have = atomic_load(&f->landed[i]);
    return start + have > f->pos ? start + have - f->pos : 0;
}

/* Wait until bytes are ready or the feed is over; 0 means stop. *loan is
 * the (busy) loan holding the next bytes, or NULL: read them back. */
static uint64_t wait_ready(struct hub__hashfeed *f, struct loan **loan)
{
    uint64_t r;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        r = f->canceled ? 0 : ready_at_pos(f);
        if (r > 0 || f->canceled || f->ended)
            break;
        if (f->waiters > 0) /* nothing to hash: no writer should wait */
            pthread_cond_broadcast(&f->loan_cv);
        pthread_cond_wait(&f->cv, &f->mu);
    }
    *loan = r > 0 ? loan_at_pos(f, &r) : NULL;
    pthread_mutex_unlock(&f->mu);
    return r;
}

/* Hash up to r ready bytes from the loan l holding pos, then give it back. */
static void hash_loan(struct hub__hashfeed *f, struct loan *l, uint64_t r)
{
    uint64_t avail = l->off + l->n - f->pos;
    size_t n = (size_t)(r < avail ? r : avail);
    hub__hasher_update(f->h, l->p + (f->pos - l->off), n);
    f->pos += n;
    f->mem_bytes += n;
    pthread_mutex_lock(&f->mu);
    l->busy = 0;
    if (f->pos >= l->off + l->n)
        l->p = NULL; /* fully used: free the slot for the next loan */
    f->front = f->pos;
    pthread_cond_broadcast(&f->loan_cv);
    pthread_mutex_unlock(&f->mu);
}

/* Publish pos to writers waiting in hub__hashfeed_wait_behind. */
static void publish(struct hub__hashfeed *f)
{
    pthread_mutex_lock(&f->mu);
    f->front = f->pos;
    if (f->waiters > 0)
        pthread_cond_broadcast(&f->loan_cv);
    pthread_mutex_unlock(&f->mu);
}

/* Bytes landed without a gap from offset p on, counted up to just past
 * cap. */
static uint64_t gapless(const struct hub__hashfeed *f, uint64_t p, uint64_t cap)
{
    uint64_t b = 0;
    for (size_t i = (size_t)(p / f->chunk); i < f->n && b <= cap; i++) {
        uint64_t start = (uint64_t)i * f->chunk;
        uint64_t have = atomic_load(&f->landed[i]);
        if (start + have <= p)
            break;
        b += start + have - p;
        if (have < chunk_len(f, i))
            break;
        p = start + have;
    }
    return b;
}

void hub__hashfeed_wait_behind(struct hub__hashfeed *f, uint64_t window)
{
    pthread_mutex_lock(&f->mu);
    uint64_t from = f->front > f->floor ? f->front : f->floor;
    while (gapless(f, from, window) > window && !f->canceled && !f->stopped) {
        f->waiters++;
        pthread_cond_wait(&f->loan_cv, &f->mu);
        f->waiters--;
        from = f->front > f->floor ? f->front : f->floor;
    }
    pthread_mutex_unlock(&f->mu);
}

void hub__hashfeed_cancel(struct hub__hashfeed *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->canceled = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_cond_broadcast(&f->loan_cv);
    pthread_mutex_unlock(&f->mu);
}

static int hash_range(struct hub__hashfeed *f, uint64_t len)
{
    while (len > 0) {
        size_t want = len < FEED_BUF ? (size_t)len : FEED_BUF;
        ssize_t r = pread(f->fd, f->buf, want, (off_t)f->pos);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return KM_EIO;
        hub__hasher_update(f->h, f->buf, (size_t)r);
        f->pos += (uint64_t)r;
        len -= (uint64_t)r;
    }
    return KM_OK;
}

static void write_behind(struct hub__hashfeed *f)
{
    if (!f->writeback)
        return;
    if (f->pos == f->wb || (f->pos - f->wb < WB_STEP && f->pos < f->size))
        return;
    /* Best effort: where unsupported (tmpfs), the final fsync does it all. */
    (void)sync_file_range(f->fd, (off_t)f->wb, (off_t)(f->pos - f->wb),
                          SYNC_FILE_RANGE_WRITE);
    f->wb = f->pos;
}

static void *feed_thread(void *arg)
{
    struct hub__hashfeed *f = arg;
    for (;;) {
        struct loan *l = NULL;
        uint64_t r = wait_ready(f, &l);
        if (r == 0)
            break;
        double t = hub__now();
        int rc = KM_OK;
        if (l) {
            hash_loan(f, l, r);
        } else {
            rc = hash_range(f, r < FEED_BUF ? r : FEED_BUF);
            publish(f);
        }
        f->seconds += hub__now() - t;
        if (rc != KM_OK) {
            f->read_failed = 1;
            break;
        }
        write_behind(f);
    }
    pthread_mutex_lock(&f->mu);
    f->stopped = 1; /* writers waiting for the hash must not wait longer */
    pthread_cond_broadcast(&f->loan_cv);
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

int hub__hashfeed_start(struct hub__hashfeed *f)
{
    f->floor = gapless(f, 0, f->size); /* landed before: never waited for */
    if (pthread_create(&f->tid, NULL, feed_thread, f) != 0)
        return KM_ENOMEM;
    f->started = 1;
    return KM_OK;
}

static void stop(struct hub__hashfeed *f, int cancel)
{
    pthread_mutex_lock(&f->mu);
    f->ended = 1;
    f->canceled |= cancel;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    if (f->started && !f->joined) {
        pthread_join(f->tid, NULL);
        f->joined = 1;
    }
}

int hub__hashfeed_end(struct hub__hashfeed *f, char *hex_out)
{
    stop(f, 0);
    if (f->read_failed)
        return KM_EIO;
    if (f->pos != f->size)
        return KM_ECANCELED;
    hub__hasher_final(f->h, hex_out);
    return KM_OK;
}

void hub__hashfeed_stats(const struct hub__hashfeed *f, uint64_t *bytes,
                         uint64_t *mem_bytes, double *seconds)
{
    *bytes = f->pos;
    *mem_bytes = f->mem_bytes;
    *seconds = f->seconds;
}

void hub__hashfeed_free(struct hub__hashfeed *f)
{
    if (!f)
        return;
    stop(f, 1);
    hub__hasher_free(f->h);
    km_free(f->landed);
    km_free(f->buf);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    pthread_cond_destroy(&f->loan_cv);
    km_free(f);
}
