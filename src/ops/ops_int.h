/* ops_int.h - private helpers shared by the files of src/ops (not for other
 * modules). */
#ifndef OPS_OPS_INT_H
#define OPS_OPS_INT_H

#include "base/buf.h"
#include "base/err.h"

/* Run argv[0] (searched on PATH) with argv, stdin from /dev/null, capturing
 * stdout (and stderr when merge_stderr) into out (bounded by out's max);
 * kill it after timeout_ms. *status is the exit status (128+signal when
 * killed). KM_ENOTFOUND when the program cannot be executed. */
int ops__run_capture(const char *const *argv, struct km_buf *out,
                     int merge_stderr, long timeout_ms, int *status,
                     struct km_err *err);

/* argv[0] found on PATH (or containing '/', executable): 1, else 0. */
int ops__have_program(const char *prog);

#endif
