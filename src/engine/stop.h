/* stop.h - stop strings matched across token boundaries, never leaked.
 *
 * The generated text arrives in pieces (one per token). eng_stop_feed
 * appends a piece and releases only the text that can no longer be the start
 * of a stop string: a suffix that is a prefix of some stop string is held
 * back until the next piece decides it. When a stop string is complete, the
 * text before its first occurrence is released and everything from the stop
 * string on is dropped. eng_stop_flush releases what is held at the end of
 * the generation (no stop string matched). Stop strings are whole UTF-8, so
 * the released text never splits a character the caller gave whole.
 *
 * Ownership: struct eng_stop is caller-owned; eng_stop_init copies the stop
 * strings; released text points into the object and is valid until the next
 * call; eng_stop_free releases everything (safe on a zeroed struct).
 * Thread-safety: one object per sequence, one thread at a time.
 */
#ifndef ENG_STOP_H
#define ENG_STOP_H

#include "base/buf.h"
#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>

struct eng_stop {
    char **strs;          /* copies; empty strings are ignored */
    size_t *lens;
    size_t n;
    size_t max_len;
    struct km_buf pending;
    size_t released;      /* bytes at the front of pending already handed out */
    bool stopped;
};

int eng_stop_init(struct eng_stop *s, const char *const *stops, size_t n,
                  struct km_err *err);
/* Append `len` bytes; returns true once a stop string has matched (then
 * later feeds release nothing). *out and *out_len: text released now. KM_ERANGE
 * if the held text would pass 1 MiB (a piece that long is a bug upstream). */
int eng_stop_feed(struct eng_stop *s, const char *text, size_t len,
                  const char **out, size_t *out_len, bool *matched);
/* Release everything still held (call at the end when no stop matched). */
void eng_stop_flush(struct eng_stop *s, const char **out, size_t *out_len);
void eng_stop_free(struct eng_stop *s);

#endif
