/* cmd_bench.c - `kanoa-mlops bench --url URL --model M [...]`: load an
 * OpenAI-compatible endpoint with streamed chat completions at several
 * concurrency levels and report TTFT, inter-token latency, end-to-end
 * latency percentiles, tokens/s and requests/s (ops/bench.h). */
#include "cli/cli.h"

#include "base/buf.h"
#include "ops/bench.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char bench_usage[] =
    "usage: kanoa-mlops bench --url URL --model M [options]\n"
    "\n"
    "Benchmark any OpenAI-compatible endpoint (kanoa-mlops serve, vLLM, ...)\n"
    "with streamed /v1/chat/completions requests: time to first token (TTFT),\n"
    "inter-token latency (ITL) and end-to-end latency p50/p90/p99, output\n"
    "tokens/s and requests/s for each concurrency level.\n"
    "\n"
    "options:\n"
    "  -u, --url URL             server base URL, e.g. http://127.0.0.1:8000\n"
    "  -m, --model M             model id to request\n"
    "  -c, --concurrency LIST    concurrent requests per level (default 1,4,16)\n"
    "  -n, --requests N          requests per level (default 4 x concurrency,\n"
    "                            at least 16)\n"
    "  -p, --prompt-tokens P     prompt length in words, ~tokens (default 128)\n"
    "  -t, --max-tokens T        tokens to generate, with ignore_eos (default 64)\n"
    "      --no-ignore-eos       do not send ignore_eos (servers that reject it)\n"
    "      --timeout S           seconds per request (default 300)\n"
    "      --json                print the results as JSON\n"
    "      --svg FILE            write a chart of the sweep (SVG)\n"
    "  -q, --quiet               no progress on stderr\n"
    "  -h, --help                show this help\n"
    "\n"
    "environment: KANOA_API_KEY or OPENAI_API_KEY is sent as the bearer token.\n";

struct bench_args {
    struct bench_options o;
    const char *svg;
    int json, quiet, help;
};

static int parse_num(const char *flag, const char *v, long min, long max, long *out)
{
    if (cli_parse_long(v, min, max, out) == 0)
        return 0;
    fprintf(stderr, "kanoa-mlops bench: %s must be %ld-%ld, not '%s'\n", flag,
            min, max, v);
    return -1;
}

static int parse_opt(int c, struct bench_args *a)
{
    struct km_err err = {0};
    long v = 0;
    switch (c) {
    case 'u': a->o.url = optarg; return 0;
    case 'm': a->o.model = optarg; return 0;
    case 'c':
        if (bench_parse_levels(optarg, &a->o, &err) == KM_OK)
            return 0;
        fprintf(stderr, "kanoa-mlops bench: %s\n", err.msg);
        return -1;
    case 'n': return parse_num("--requests", optarg, 1, 1000000, &a->o.requests);
    case 'p': return parse_num("--prompt-tokens", optarg, 1, 1000000, &a->o.prompt_tokens);
    case 't': return parse_num("--max-tokens", optarg, 1, 1000000, &a->o.max_tokens);
    case 'T':
        if (parse_num("--timeout", optarg, 1, 86400, &v))
            return -1;
        a->o.timeout = (double)v;
        return 0;
    case 'J': a->json = 1; return 0;
    case 'E': a->o.no_ignore_eos = true; return 0;
    case 'S': a->svg = optarg; return 0;
    case 'q': a->quiet = 1; return 0;
    case 'h': a->help = 1; return 0;
    default: return -1;
    }
}

static int parse(int argc, char **argv, struct bench_args *a)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},
        {"model", required_argument, NULL, 'm'},
        {"concurrency", required_argument, NULL, 'c'},
        {"requests", required_argument, NULL, 'n'},
        {"prompt-tokens", required_argument, NULL, 'p'},
        {"max-tokens", required_argument, NULL, 't'},
        {"timeout", required_argument, NULL, 'T'},
        {"json", no_argument, NULL, 'J'},
        {"no-ignore-eos", no_argument, NULL, 'E'},
        {"svg", required_argument, NULL, 'S'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    for (;;) {
        int c = getopt_long(argc, argv, "u:m:c:n:p:t:qh", opts, NULL);
        if (c == -1)
            break;
        if (parse_opt(c, a))
            return -1;
    }
    if (cli_no_operands("bench", argc, argv))
        return -1;
    if (!a->help && (!a->o.url || !a->o.model)) {
        fprintf(stderr, "kanoa-mlops bench: --url and --model are required\n");
        return -1;
    }
    return 0;
}

/* On a terminal a live counter; otherwise one line per finished level. */
static void progress(void *ud, int conc, long done, long total)
{
    bool tty = *(const bool *)ud;
    if (tty)
        fprintf(stderr, "\rconcurrency %d: %ld/%ld requests", conc, done, total);
    if (done == total)
        fprintf(stderr, "%sconcurrency %d: %ld requests done\n", tty ? "\r" : "",
                conc, total);
}

static int write_svg(const char *path, const struct bench_result *r,
                     struct km_err *err)
{
    struct km_buf b;
    km_buf_init(&b, 1u << 20);
    int rc = bench_svg(r, &b);
    FILE *f = rc == KM_OK ? fopen(path, "w") : NULL;
    if (rc == KM_OK && !f)
        rc = km_fail(err, KM_EIO, "cannot write %s", path);
    if (f && fwrite(b.data, 1, b.len, f) != b.len)
        rc = km_fail(err, KM_EIO, "short write to %s", path);
    if (f && fclose(f) != 0 && rc == KM_OK)
        rc = km_fail(err, KM_EIO, "cannot close %s", path);
    km_buf_free(&b);
    return rc;
}

static int report(const struct bench_args *a, const struct bench_result *r,
                  struct km_err *err)
{
    struct km_buf out;
    km_buf_init(&out, 4u << 20);
    int rc = a->json ? bench_json(r, &out) : bench_text(r, &out);
    if (rc == KM_OK)
        fwrite(out.data, 1, out.len, stdout);
    km_buf_free(&out);
    if (rc == KM_OK && a->svg)
        rc = write_svg(a->svg, r, err);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    struct bench_args a;
    memset(&a, 0, sizeof a);
    bench_options_default(&a.o);
    if (parse(argc, argv, &a))
        return cli_usage_error(bench_usage);
    if (a.help) {
        fputs(bench_usage, stdout);
        return CLI_EXIT_OK;
    }
    a.o.api_key = getenv("KANOA_API_KEY");
    if (!a.o.api_key)
        a.o.api_key = getenv("OPENAI_API_KEY");
    bool tty = isatty(2);
    if (!a.quiet) {
        a.o.progress = progress;
        a.o.ud = &tty;
    }
    struct bench_result r;
    struct km_err err = {0};
    int rc = bench_run(&a.o, &r, &err);
    if (rc == KM_OK)
        rc = report(&a, &r, &err);
    bench_result_free(&r);
    if (rc != KM_OK)
        return cli_fail("bench", &err);
    for (size_t i = 0; i < r.n_levels; i++)
        if (r.levels[i].ok == 0) {
            fprintf(stderr, "kanoa-mlops bench: every request failed at "
                    "concurrency %d: %s\n", r.levels[i].concurrency,
                    r.levels[i].first_error);
            return CLI_EXIT_FAIL;
        }
    return CLI_EXIT_OK;
}
