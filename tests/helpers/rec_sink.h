/* rec_sink.h - test helper (gateway): a srv_sink that records what the
 * upstream backend delivers (the head, the raw body bytes, the end or the
 * error) and lets the test thread wait for the end.
 *
 * The caller owns the struct rec: rec_init it (body_cap: the most body
 * bytes kept), hand rec_sink(r) to the backend, rec_wait for the end,
 * then rec_free it once no callback can run any more (the job ended or
 * was released). Callbacks may run on any thread; read the fields after
 * rec_wait returned true. */
#ifndef TESTS_REC_SINK_H
#define TESTS_REC_SINK_H

#include "base/buf.h"
#include "server/backend.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct rec {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool finished;      /* on_done or on_error came */
    int head_status;
    char ctype[64];
    int heads;
    struct km_buf body;
    bool done;
    int err_status;
    char err_type[64];
    char err_msg[512];
    int full_polls;     /* raw_full answers "full" this many times */
};

void rec_init(struct rec *r, size_t body_cap);
void rec_free(struct rec *r);
/* The sink whose callbacks record into r (r is its ud). */
struct srv_sink rec_sink(struct rec *r);
/* Wait at most ms for the end; true if it came. */
bool rec_wait(struct rec *r, int ms);

#endif
