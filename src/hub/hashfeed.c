/* hashfeed.c - a hashing thread that follows the written prefix of a file
 * while it downloads (see hub_int.h), so verification overlaps the transfer.
 *
 * The file is cut into chunks of `chunk` bytes (the ranges-file chunks).
 * Writers report, per chunk, how many bytes from the chunk's start are on
 * disk (hub__hashfeed_landed). The thread hashes the contiguous prefix
 * [0, pos) of the file as it grows: it reads the bytes back with pread (they
 * were written moments ago and are still in the page cache, usually in the
 * CPU cache too), so writers never wait for the hash and the hash never
 * waits for more than one step of the slowest chunk in front of it.
 *
 * Write-behind: every WB_STEP bytes of hashed prefix the thread starts the
 * kernel's writeback of that range (sync_file_range WRITE, no wait), so the
 * disk works while the network does and the one fsync before the rename
 * finds only the tail dirty. Nothing here fsyncs.
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

#define FEED_BUF (1u << 20)     /* one pread + digest update at most */
#define WB_STEP (32ull << 20)   /* start writeback every 32 MiB hashed */

struct hub__hashfeed {
    struct hub__hasher *h;
    int fd;
    uint64_t size, chunk;
    size_t n;
    atomic_uint_fast64_t *landed;  /* n counters: bytes from chunk start */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ended, canceled;           /* under mu */
    pthread_t tid;
    int started, joined;
    /* thread-owned until joined */
    uint64_t pos, wb;
    unsigned char *buf;
    int read_failed;
    double seconds;
};

int hub__hashfeed_new(enum hub__hash_kind kind, int fd, uint64_t size,
                      uint64_t chunk, struct hub__hashfeed **out)
{
    struct hub__hashfeed *f = km_calloc(1, sizeof *f);
    if (!f)
        return KM_ENOMEM;
    f->fd = fd;
    f->size = size;
    f->chunk = chunk ? chunk : 1;
    f->n = (size_t)((size + f->chunk - 1) / f->chunk);
    f->landed = km_calloc(f->n + 1, sizeof *f->landed);
    f->buf = km_malloc(FEED_BUF);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
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
    /* Wake the thread once per MiB crossed and when the chunk completes;
     * the signal under mu cannot be lost (the thread re-checks under mu). */
    if (old / FEED_BUF == n / FEED_BUF && n != chunk_len(f, i))
        return;
    pthread_mutex_lock(&f->mu);
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
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

/* Wait until bytes are ready or the feed is over; 0 means stop. */
static uint64_t wait_ready(struct hub__hashfeed *f)
{
    uint64_t r;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        r = f->canceled ? 0 : ready_at_pos(f);
        if (r > 0 || f->canceled || f->ended)
            break;
        pthread_cond_wait(&f->cv, &f->mu);
    }
    pthread_mutex_unlock(&f->mu);
    return r;
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
        uint64_t r = wait_ready(f);
        if (r == 0)
            break;
        double t = hub__now();
        int rc = hash_range(f, r < FEED_BUF ? r : FEED_BUF);
        f->seconds += hub__now() - t;
        if (rc != KM_OK) {
            f->read_failed = 1;
            break;
        }
        write_behind(f);
    }
    return NULL;
}

int hub__hashfeed_start(struct hub__hashfeed *f)
{
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
                         double *seconds)
{
    *bytes = f->pos;
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
    km_free(f);
}
