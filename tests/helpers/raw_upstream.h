/* raw_upstream.h - test helper (gateway): a scripted raw HTTP/1.1
 * upstream. A loopback listener whose connection threads read each request
 * (head, then a Content-Length body), record it, and answer with the exact
 * bytes the test chose (struct act), in several writes, closing where the
 * test says, resetting, or answering before the body was read. GET
 * /health and /v1/models (model m1) are answered for the pool's probes.
 *
 * Ownership: the caller's struct up; up_start it (assertions fail the test
 * on a setup error), script answers with up_script, read what came with
 * up_posts / up_post / up_header, and up_stop it (joins every thread,
 * frees the recorded bodies). Only up_script, up_posts and the atomics are
 * for use while it runs; the records of a POST are written before its
 * answer, so read them after the job that sent it ended. */
#ifndef TESTS_RAW_UPSTREAM_H
#define TESTS_RAW_UPSTREAM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define UP_POSTS 16         /* POSTs recorded and scripted */
#define UP_CONNS 64         /* connections accepted (probes' too) */
#define UP_CUTS 8
#define UP_POLL_MS 50       /* the server threads look at `stop` this often */
#define UP_PIECE_MS 20      /* pause between the pieces of an answer */
#define UP_REQ_MAX (16u << 20)

enum act_kind {
    ACT_SEND,               /* the bytes below (NULL: UP_DEFAULT_ANSWER) */
    ACT_CLOSE,              /* close the connection without answering */
    ACT_RESET,              /* the same with a TCP reset */
};

/* How the upstream answers one POST. */
struct act {
    enum act_kind kind;
    const char *bytes;      /* the whole response, exact (the test's) */
    size_t len;             /* 0: strlen(bytes) */
    size_t cuts[UP_CUTS];   /* a write ends at each offset (ascending, 0 ends) */
    bool close_after;       /* close the connection once written */
    const char *late;       /* sent on the kept connection after the answer */
    bool drip;              /* one byte per write, 2 ms apart (no cuts) */
    bool early;             /* answer once the head is read; then close at
                             * once (close_after) or read the body once the
                             * test set `go` (10 s at most) */
};

/* One POST as the upstream read it. */
struct seen {
    int conn;               /* connection index, in accept order from 0 */
    char line[512];         /* request line, without CRLF */
    char head[4096];        /* the header lines after it, CRLF-separated */
    char *body;             /* malloc'd copy */
    size_t body_len;
};

struct up;

struct up_conn {
    struct up *u;
    int fd;
    int index;
    bool started;
    pthread_t th;
};

struct up {
    int lfd;
    int port;
    bool running;
    pthread_t th;
    atomic_bool stop;
    atomic_bool go;                     /* early answers: read the body now */
    atomic_int lates;                   /* `late` bytes sent */
    atomic_bool plugged;                /* accept nothing (the backlog fills) */
    atomic_int gate;                    /* a POST is answered (10 s at most)
                                         * once `gate` POSTs came */
    pthread_mutex_t mu;                 /* guards what follows */
    struct act acts[UP_POSTS];          /* the answer to POST k */
    struct seen posts[UP_POSTS];
    int n_posts;                        /* POSTs read (all, recorded or not) */
    struct up_conn conns[UP_CONNS];
    int n_conns;
};

/* The answer to a POST scripted with bytes NULL: 200, {"ok":true}. */
extern const char UP_DEFAULT_ANSWER[];

/* Listen on the loopback address of `family` (AF_INET or AF_INET6). */
void up_start(struct up *u, int family);
void up_stop(struct up *u);
/* Script the answer to POST k (from 0, in arrival order). */
void up_script(struct up *u, int k, struct act a);
/* POSTs read so far. */
int up_posts(struct up *u);
/* POST k as seen (asserts that it came). */
const struct seen *up_post(struct up *u, int k);
/* Value of header `name` in s (its first occurrence) into out, or NULL. */
const char *up_header(const struct seen *s, const char *name, char *out,
                      size_t cap);

#endif
