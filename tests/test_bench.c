/* test_bench.c - the bench library (ops/bench.h): percentiles, level
 * parsing, a real run against tests/gateway/fault_upstream.py with exact
 * counts, and the JSON and SVG renderings. */
#include "ops/bench.h"

#include "base/mem.h"
#include "helpers/gateway_fake.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* Criterion's runner (not the code under test) sometimes leaks 48 bytes. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libcriterion.so\n";
}

Test(bench, percentiles_interpolate_like_numpy)
{
    double v[] = {15, 20, 35, 40, 50};
    /* numpy.percentile([15,20,35,40,50], [50,90,99]) = 35, 46, 49.6 */
    cr_assert_float_eq(bench_percentile(v, 5, 0.50), 35.0, 1e-9);
    cr_assert_float_eq(bench_percentile(v, 5, 0.90), 46.0, 1e-9);
    cr_assert_float_eq(bench_percentile(v, 5, 0.99), 49.6, 1e-9);
    double w[] = {3, 1, 2, 4};     /* unsorted input is sorted in place */
    cr_assert_float_eq(bench_percentile(w, 4, 0.5), 2.5, 1e-9);
    cr_assert_float_eq(w[0], 1.0, 0);
    double one[] = {7};
    cr_assert_float_eq(bench_percentile(one, 1, 0.99), 7.0, 0);
    cr_assert_float_eq(bench_percentile(NULL, 0, 0.5), 0.0, 0);
    double s[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    struct bench_stats st;
    bench_stats_of(s, 10, &st);
    cr_assert_eq(st.n, 10);
    cr_assert_float_eq(st.mean, 5.5, 1e-9);
    cr_assert_float_eq(st.p50, 5.5, 1e-9);
    cr_assert_float_eq(st.p90, 9.1, 1e-9);
    cr_assert_float_eq(st.p99, 9.91, 1e-9);
}

Test(bench, levels_parse)
{
    struct bench_options o;
    struct km_err err = {0};
    bench_options_default(&o);
    cr_assert_eq(bench_parse_levels("1,4,16", &o, &err), KM_OK);
    cr_assert_eq(o.n_levels, 3);
    cr_assert_eq(o.concurrency[2], 16);
    cr_assert_eq(bench_parse_levels("1,,2", &o, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "--concurrency '1,,2': expected a comma-separated "
                     "list of numbers 1-4096");
    cr_assert_eq(bench_parse_levels("0", &o, &err), KM_EINVAL);
    cr_assert_eq(bench_parse_levels("2,", &o, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "--concurrency '2,': trailing comma");
    cr_assert_eq(bench_parse_levels("", &o, &err), KM_EINVAL);
}

static struct gw_fake fake;
static void stop(void)
{
    gw_fake_stop(&fake);
}

/* Options against the fake gateway: one level of conc clients. */
static void fake_options(struct bench_options *o, const char *model, int conc, long requests)
{
    bench_options_default(o);
    o->url = fake.url;
    o->model = model;
    o->concurrency[0] = conc;
    o->n_levels = 1;
    o->requests = requests;
}

Test(bench, run_counts_tokens_and_requests, .fini = stop, .timeout = 60)
{
    const char *args[] = {"--tokens", "6", "--token-delay", "0.002", NULL};
    cr_assert_eq(gw_fake_start(&fake, args), 0);
    struct bench_options o;
    fake_options(&o, "m1", 1, 9);
    o.concurrency[1] = 3;
    o.n_levels = 2;
    o.prompt_tokens = 20;
    o.max_tokens = 6;
    struct bench_result r;
    struct km_err err = {0};
    long live = km_mem_live();
    cr_assert_eq(bench_run(&o, &r, &err), KM_OK, "%s", err.msg);
    cr_assert_eq(km_mem_live(), live);
    cr_assert_eq(r.n_levels, 2);
    for (size_t i = 0; i < 2; i++) {
        const struct bench_level *l = &r.levels[i];
        cr_assert_eq(l->concurrency, i ? 3 : 1);
        cr_assert_eq(l->requests, 9);
        cr_assert_eq(l->ok, 9);
        cr_assert_eq(l->errors, 0);
        cr_assert_eq(l->output_tokens, 54, "usage chunk: 6 tokens x 9");
        cr_assert_eq(l->ttft.n, 9);
        cr_assert_eq(l->itl.n, 45, "5 gaps per 6-token stream");
        cr_assert_eq(l->e2e.n, 9);
        cr_assert(l->ttft.p50 > 0 && l->ttft.p50 <= l->ttft.p99);
        cr_assert(l->e2e.p50 >= l->ttft.p50);
        /* 5 gaps of >= 2 ms each */
        cr_assert(l->e2e.p50 - l->ttft.p50 >= 0.010, "%f", l->e2e.p50);
        cr_assert(l->tokens_per_s > 0 && l->requests_per_s > 0);
        cr_assert_str_eq(l->first_error, "");
    }
    struct km_buf b;
    km_buf_init(&b, 1 << 20);
    cr_assert_eq(bench_json(&r, &b), KM_OK);
    json_error_t je;
    json_t *j = json_loads(km_buf_str(&b), 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    cr_assert_str_eq(json_string_value(json_object_get(j, "model")), "m1");
    json_t *l1 = json_array_get(json_object_get(j, "levels"), 1);
    cr_assert_eq(json_integer_value(json_object_get(l1, "concurrency")), 3);
    cr_assert_eq(json_integer_value(json_object_get(l1, "output_tokens")), 54);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(l1, "itl_ms"),
                                                    "n")), 45);
    cr_assert_float_eq(json_real_value(json_object_get(json_object_get(l1, "ttft_ms"),
                                                       "p99")),
                       r.levels[1].ttft.p99 * 1e3, 1e-9);
    cr_assert(json_is_null(json_object_get(l1, "first_error")));
    json_decref(j);
    km_buf_free(&b);
    /* ignore_eos is sent unless --no-ignore-eos */
    char url[128], out[512];
    snprintf(url, sizeof url, "%s/stats", fake.url);
    cr_assert_eq(gw_http("GET", url, NULL, out, sizeof out), 200);
    cr_assert(strstr(out, "\"last_ignore_eos\":true"), "%s", out);
    o.no_ignore_eos = true;
    o.n_levels = 1;
    o.requests = 1;
    cr_assert_eq(bench_run(&o, &r, &err), KM_OK, "%s", err.msg);
    cr_assert_eq(gw_http("GET", url, NULL, out, sizeof out), 200);
    cr_assert(strstr(out, "\"last_ignore_eos\":null"), "%s", out);
}

Test(bench, failures_are_counted_with_the_reason, .fini = stop, .timeout = 60)
{
    cr_assert_eq(gw_fake_start(&fake, NULL), 0);
    struct bench_options o;
    fake_options(&o, "missing", 2, 4);
    struct bench_result r;
    struct km_err err = {0};
    cr_assert_eq(bench_run(&o, &r, &err), KM_OK);
    cr_assert_eq(r.levels[0].ok, 0);
    cr_assert_eq(r.levels[0].errors, 4);
    cr_assert_str_eq(r.levels[0].first_error, "HTTP 404: {\"error\":{\"message\":"
                     "\"The model `missing` does not exist.\",\"type\":"
                     "\"NotFoundError\",\"param\":null,\"code\":404}}");
    /* nothing listening: a connection error, not a hang */
    o.url = "http://127.0.0.1:1";
    o.model = "m1";
    cr_assert_eq(bench_run(&o, &r, &err), KM_OK);
    cr_assert_eq(r.levels[0].errors, 4);
    cr_assert_str_eq(r.levels[0].first_error, "Couldn't connect to server");
    o.url = "ftp://x";
    cr_assert_eq(bench_run(&o, &r, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "--url 'ftp://x' must start with http:// or https://");
}

Test(bench, svg_chart_has_axes_series_and_legend)
{
    struct bench_result r;
    memset(&r, 0, sizeof r);
    snprintf(r.url, sizeof r.url, "http://h:1");
    snprintf(r.model, sizeof r.model, "a<b&c");
    r.prompt_tokens = 10;
    r.max_tokens = 5;
    r.n_levels = 3;
    int conc[3] = {1, 4, 16};
    for (int i = 0; i < 3; i++) {
        r.levels[i].concurrency = conc[i];
        r.levels[i].tokens_per_s = 100.0 * (i + 1);
        r.levels[i].requests_per_s = 2.0 * (i + 1);
        r.levels[i].ttft.p50 = 0.010 * (i + 1);
        r.levels[i].ttft.p99 = 0.020 * (i + 1);
        r.levels[i].itl.p50 = 0.005;
        r.levels[i].itl.p99 = 0.008;
    }
    struct km_buf b;
    km_buf_init(&b, 1 << 20);
    cr_assert_eq(bench_svg(&r, &b), KM_OK);
    const char *s = km_buf_str(&b);
    cr_assert(strncmp(s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg ", 44) == 0);
    cr_assert(strstr(s, "kanoa-mlops bench: a&lt;b&amp;c</text>"));
    size_t polylines = 0, circles = 0;
    for (const char *p = s; (p = strstr(p, "<polyline")); p++)
        polylines++;
    for (const char *p = s; (p = strstr(p, "<circle")); p++)
        circles++;
    cr_assert_eq(polylines, 6, "2 throughput + 4 latency series");
    cr_assert_eq(circles, 18);
    cr_assert(strstr(s, ">output tokens/s</text>"));
    cr_assert(strstr(s, ">TTFT p99</text>"));
    cr_assert(strstr(s, ">inter-token p50</text>"));
    cr_assert(strstr(s, ">concurrent requests</text>"));
    cr_assert(strstr(s, ">16</text>"));
    /* throughput axis: max 300 * 1.1 -> step 100, top tick 400 */
    cr_assert(strstr(s, ">400</text>"));
    /* x = 80 + 20 + 360 * i / 2; the 300 tokens/s point at y = 390 - 300/400 * 300 */
    cr_assert(strstr(s, "points=\"100.0,315.0 280.0,240.0 460.0,165.0\""), "%s", s);
    cr_assert(strstr(s, "</svg>\n"));
    km_buf_free(&b);
}
