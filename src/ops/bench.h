/* bench.h - load generator for any OpenAI-compatible endpoint
 * (`kanoa-mlops bench`): streamed chat completions at several concurrency
 * levels, measuring time to first token (TTFT), inter-token latency (ITL,
 * the gap between successive streamed content events), end-to-end latency,
 * output tokens/s and requests/s; results as a text table, JSON, or an SVG
 * chart.
 *
 * Contract: bench_run fills a caller-owned struct bench_result (free with
 * bench_result_free; freeing a zeroed result is fine). Requests that fail
 * (connection error, HTTP status other than 200, an error event in the
 * stream) are counted in `errors` and excluded from the latency figures; the
 * first failure's reason is kept. One libcurl multi handle drives all
 * transfers of a level from the calling thread; nothing else is started.
 * Output tokens come from the final `usage` chunk when the server sends one
 * (stream_options.include_usage), else from the number of content events.
 *
 * Thread-safety: bench_run blocks its caller; independent runs may proceed
 * in parallel threads. The render functions are pure.
 */
#ifndef OPS_BENCH_H
#define OPS_BENCH_H

#include "base/buf.h"
#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>

#define BENCH_MAX_LEVELS 16

struct bench_options {
    const char *url;            /* http://host:port (a trailing /v1 is fine) */
    const char *model;
    int concurrency[BENCH_MAX_LEVELS];
    size_t n_levels;            /* 0 = {1, 4, 16} */
    long requests;              /* per level; 0 = 4 x concurrency, at least 16 */
    long prompt_tokens;         /* prompt length in words (~tokens), 128 */
    long max_tokens;            /* 64 */
    bool no_ignore_eos;         /* omit ignore_eos (strict OpenAI servers) */
    const char *api_key;        /* bearer token or NULL */
    double timeout;             /* seconds per request, 300 */
    /* Optional progress: called after each finished request. */
    void (*progress)(void *ud, int concurrency, long done, long total);
    void *ud;
};

void bench_options_default(struct bench_options *o);

struct bench_stats {
    size_t n;
    double mean, p50, p90, p99;     /* seconds */
};

struct bench_level {
    int concurrency;
    long requests, ok, errors;
    double wall;                    /* seconds for the whole level */
    long output_tokens;
    double tokens_per_s;            /* output tokens / wall */
    double requests_per_s;          /* ok / wall */
    struct bench_stats ttft, itl, e2e;
    char first_error[256];          /* "" when none */
};

struct bench_result {
    char url[512];
    char model[256];
    long prompt_tokens, max_tokens;
    struct bench_level levels[BENCH_MAX_LEVELS];
    size_t n_levels;
};

int bench_run(const struct bench_options *o, struct bench_result *out,
              struct km_err *err);
void bench_result_free(struct bench_result *r);

/* Parse "1,4,16" into o->concurrency (each 1..4096, at most 16 levels). */
int bench_parse_levels(const char *s, struct bench_options *o, struct km_err *err);

/* Percentile q in [0,1] of v[0..n) by linear interpolation between closest
 * ranks (numpy's default); sorts v in place. 0 when n == 0. */
double bench_percentile(double *v, size_t n, double q);
/* Fill s from v[0..n) (sorts v). */
void bench_stats_of(double *v, size_t n, struct bench_stats *s);

/* Renderings appended to out. */
int bench_text(const struct bench_result *r, struct km_buf *out);
int bench_json(const struct bench_result *r, struct km_buf *out);
int bench_svg(const struct bench_result *r, struct km_buf *out);

#endif
