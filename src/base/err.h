/* err.h - error codes and the per-call error detail.
 *
 * Contract: every fallible function in kanoa-mlops returns an `int` that is
 * KM_OK (0) on success or one of the KM_E* codes below, and fills a
 * caller-owned `struct km_err` with the code and one human sentence naming
 * the file, field or value at fault. Codes are stable: never renumber, only
 * append. The message has no trailing newline. Nothing is allocated.
 *
 * Thread-safety: a struct km_err belongs to one call chain; the functions here
 * are reentrant.
 */
#ifndef KM_ERR_H
#define KM_ERR_H

#include <stddef.h>

#define KM_ERR_LEN 512

/* X-macro: code name, number, generic message. */
#define KM_ERR_MAP(X)                                              \
    X(KM_OK,           0,  "success")                              \
    X(KM_ENOMEM,       1,  "out of memory")                        \
    X(KM_EIO,          2,  "input/output error")                   \
    X(KM_EFORMAT,      3,  "malformed input")                      \
    X(KM_EINVAL,       4,  "invalid argument")                     \
    X(KM_ENOTFOUND,    5,  "not found")                            \
    X(KM_EUNSUPPORTED, 6,  "not supported")                        \
    X(KM_ERANGE,       7,  "value out of range")                   \
    X(KM_ENET,         8,  "network error")                        \
    X(KM_ECANCELED,    9,  "canceled")                             \
    X(KM_ETIMEOUT,     10, "timed out")                            \
    X(KM_EBUSY,        11, "resource busy")                        \
    X(KM_EAUTH,        12, "authentication failed")                \
    X(KM_EDB,          13, "database error")                       \
    X(KM_EHTTP,        14, "HTTP error")                           \
    X(KM_ENOSPACE,     15, "no space left on device")              \
    X(KM_EINTEGRITY,   16, "integrity check failed")               \
    X(KM_ESTATE,       17, "invalid state")

enum km_code {
#define KM_ERR_ENUM(name, num, msg) name = num,
    KM_ERR_MAP(KM_ERR_ENUM)
#undef KM_ERR_ENUM
};

struct km_err {
    int code;               /* one of enum km_code */
    char msg[KM_ERR_LEN];   /* detail sentence, "" when none */
};

/* Generic sentence for a code ("out of memory"); never NULL. */
const char *km_strerror(int code);
/* Symbolic name for a code ("KM_ENOMEM"); never NULL. */
const char *km_errname(int code);

/* Fill `e` (may be NULL) with `code` and a printf-style detail; returns code,
 * so callers write `return km_fail(e, KM_EINVAL, "...", ...)`. */
int km_fail(struct km_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the existing detail with more context: "ctx: old detail". */
int km_err_prefix(struct km_err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Reset to KM_OK with an empty message. */
void km_err_clear(struct km_err *e);

/* The detail if set, else the generic sentence. */
const char *km_err_text(const struct km_err *e);

#endif
