/* bench_render.c - bench results as a text table, JSON and an SVG chart
 * (see bench.h). The SVG is self-contained: two panels side by side,
 * output tokens/s and requests/s against concurrency on the left, TTFT and
 * inter-token latency percentiles (ms) against concurrency on the right, with
 * axes, ticks, grid lines, axis titles and a legend. */
#include "ops/bench.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int bench_text(const struct bench_result *r, struct km_buf *out)
{
    km_buf_printf(out, "model %s at %s, prompt ~%ld tokens, max_tokens %ld\n",
                  r->model, r->url, r->prompt_tokens, r->max_tokens);
    km_buf_puts(out, " conc   reqs     ok  err    req/s    tok/s | "
                "ttft ms p50/p90/p99     | itl ms p50/p90/p99     | "
                "e2e s p50/p90/p99\n");
    for (size_t i = 0; i < r->n_levels; i++) {
        const struct bench_level *l = &r->levels[i];
        km_buf_printf(out, "%5d %6ld %6ld %4ld %8.2f %8.1f | %7.1f %7.1f %7.1f "
                      "| %6.2f %6.2f %7.2f | %5.2f %5.2f %5.2f\n",
                      l->concurrency, l->requests, l->ok, l->errors,
                      l->requests_per_s, l->tokens_per_s, l->ttft.p50 * 1e3,
                      l->ttft.p90 * 1e3, l->ttft.p99 * 1e3, l->itl.p50 * 1e3,
                      l->itl.p90 * 1e3, l->itl.p99 * 1e3, l->e2e.p50, l->e2e.p90,
                      l->e2e.p99);
        if (l->first_error[0])
            km_buf_printf(out, "      first error: %s\n", l->first_error);
    }
    return KM_OK;
}

static json_t *stats_json(const struct bench_stats *s, double scale)
{
    return json_pack("{s:I,s:f,s:f,s:f,s:f}", "n", (json_int_t)s->n,
                     "mean", s->mean * scale, "p50", s->p50 * scale,
                     "p90", s->p90 * scale, "p99", s->p99 * scale);
}

static json_t *level_json(const struct bench_level *l)
{
    return json_pack("{s:i,s:I,s:I,s:I,s:f,s:I,s:f,s:f,s:o,s:o,s:o,s:s?}",
                     "concurrency", l->concurrency,
                     "requests", (json_int_t)l->requests,
                     "ok", (json_int_t)l->ok, "errors", (json_int_t)l->errors,
                     "duration_s", l->wall,
                     "output_tokens", (json_int_t)l->output_tokens,
                     "output_tokens_per_s", l->tokens_per_s,
                     "requests_per_s", l->requests_per_s,
                     "ttft_ms", stats_json(&l->ttft, 1e3),
                     "itl_ms", stats_json(&l->itl, 1e3),
                     "e2e_ms", stats_json(&l->e2e, 1e3),
                     "first_error", l->first_error[0] ? l->first_error : NULL);
}

int bench_json(const struct bench_result *r, struct km_buf *out)
{
    json_t *levels = json_array();
    for (size_t i = 0; levels && i < r->n_levels; i++)
        json_array_append_new(levels, level_json(&r->levels[i]));
    json_t *j = json_pack("{s:s,s:s,s:I,s:I,s:o}", "url", r->url, "model",
                          r->model, "prompt_tokens", (json_int_t)r->prompt_tokens,
                          "max_tokens", (json_int_t)r->max_tokens, "levels", levels);
    char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    if (!s)
        return KM_ENOMEM;
    int rc = km_buf_puts(out, s);
    if (rc == KM_OK)
        rc = km_buf_putc(out, '\n');
    free(s);
    return rc;
}

/* ---- SVG ------------------------------------------------------------------ */

#define W 1000
#define H 480
#define PW 400          /* plot width and height of one panel */
#define PH 300
#define TOP 90

struct series {
    const char *name;
    const char *color;
    const char *dash;   /* stroke-dasharray or "" */
    double y[BENCH_MAX_LEVELS];
};

static void esc(struct km_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': km_buf_puts(b, "&lt;"); break;
        case '>': km_buf_puts(b, "&gt;"); break;
        case '&': km_buf_puts(b, "&amp;"); break;
        case '"': km_buf_puts(b, "&quot;"); break;
        default:
            if ((unsigned char)*s >= 0x20)
                km_buf_putc(b, *s);
        }
    }
}

/* A "nice" tick step (1, 2 or 5 times a power of ten) for about 5 ticks. */
static double nice_step(double max)
{
    if (max <= 0)
        return 1;
    double raw = max / 5, p = pow(10, floor(log10(raw)));
    double f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

static void y_axis(struct km_buf *b, int x0, double ymax, double step,
                   const char *title)
{
    for (double v = 0; v <= ymax + step * 1e-6; v += step) {
        double y = TOP + PH - v / ymax * PH;
        km_buf_printf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
                      "stroke=\"#e3e3e3\"/>\n<text x=\"%d\" y=\"%.1f\" "
                      "text-anchor=\"end\" font-size=\"12\">%g</text>\n",
                      x0, y, x0 + PW, y, x0 - 6, y + 4, v);
    }
    km_buf_printf(b, "<text transform=\"translate(%d,%d) rotate(-90)\" "
                  "text-anchor=\"middle\" font-size=\"13\">", x0 - 52, TOP + PH / 2);
    esc(b, title);
    km_buf_puts(b, "</text>\n");
}

static double x_at(int x0, size_t i, size_t n)
{
    return n == 1 ? x0 + PW / 2.0 : x0 + 20 + (PW - 40) * (double)i / (double)(n - 1);
}

static void x_axis(struct km_buf *b, int x0, const struct bench_result *r)
{
    for (size_t i = 0; i < r->n_levels; i++) {
        double x = x_at(x0, i, r->n_levels);
        km_buf_printf(b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" "
                      "stroke=\"#333\"/>\n<text x=\"%.1f\" y=\"%d\" "
                      "text-anchor=\"middle\" font-size=\"12\">%d</text>\n",
                      x, TOP + PH, x, TOP + PH + 5, x, TOP + PH + 20,
                      r->levels[i].concurrency);
    }
    km_buf_printf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n"
                  "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n"
                  "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"13\">"
                  "concurrent requests</text>\n", x0, TOP + PH, x0 + PW, TOP + PH,
                  x0, TOP, x0, TOP + PH, x0 + PW / 2, TOP + PH + 42);
}

static void plot_series(struct km_buf *b, int x0, double ymax,
                        const struct series *s, size_t n, size_t k)
{
    km_buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s%s%s "
                  "points=\"", s->color, s->dash[0] ? " stroke-dasharray=\"" : "",
                  s->dash, s->dash[0] ? "\"" : "");
    for (size_t i = 0; i < n; i++)
        km_buf_printf(b, "%s%.1f,%.1f", i ? " " : "", x_at(x0, i, n),
                      TOP + PH - s->y[i] / ymax * PH);
    km_buf_puts(b, "\"/>\n");
    for (size_t i = 0; i < n; i++)
        km_buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n",
                      x_at(x0, i, n), TOP + PH - s->y[i] / ymax * PH, s->color);
    /* legend entry, top left inside the panel */
    double ly = TOP + 14 + 18.0 * (double)k;
    km_buf_printf(b, "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"16\" "
                  "fill=\"white\" fill-opacity=\"0.85\"/>\n<line x1=\"%d\" "
                  "y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\""
                  "%s%s%s/>\n<text x=\"%d\" y=\"%.1f\" font-size=\"12\">",
                  x0 + 8, ly - 12, 170, x0 + 12, ly - 4, x0 + 36, ly - 4, s->color,
                  s->dash[0] ? " stroke-dasharray=\"" : "", s->dash,
                  s->dash[0] ? "\"" : "", x0 + 42, ly);
    esc(b, s->name);
    km_buf_puts(b, "</text>\n");
}

static void panel(struct km_buf *b, int x0, const char *title, const char *ytitle,
                  const struct series *s, size_t ns, size_t n,
                  const struct bench_result *r)
{
    double max = 0;
    for (size_t k = 0; k < ns; k++)
        for (size_t i = 0; i < n; i++)
            max = s[k].y[i] > max ? s[k].y[i] : max;
    double step = nice_step(max * 1.1);
    double ymax = ceil(max * 1.1 / step) * step;
    if (ymax <= 0)
        ymax = step;
    km_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" "
                  "font-size=\"15\" font-weight=\"bold\">", x0 + PW / 2, TOP - 12);
    esc(b, title);
    km_buf_puts(b, "</text>\n");
    y_axis(b, x0, ymax, step, ytitle);
    x_axis(b, x0, r);
    for (size_t k = 0; k < ns; k++)
        plot_series(b, x0, ymax, &s[k], n, k);
}

int bench_svg(const struct bench_result *r, struct km_buf *out)
{
    size_t n = r->n_levels;
    struct series thr[2] = {
        {"output tokens/s", "#1f77b4", "", {0}},
        {"requests/s x 10", "#2ca02c", "6,4", {0}},
    };
    struct series lat[4] = {
        {"TTFT p50", "#d62728", "", {0}},
        {"TTFT p99", "#d62728", "6,4", {0}},
        {"inter-token p50", "#9467bd", "", {0}},
        {"inter-token p99", "#9467bd", "6,4", {0}},
    };
    for (size_t i = 0; i < n; i++) {
        const struct bench_level *l = &r->levels[i];
        thr[0].y[i] = l->tokens_per_s;
        thr[1].y[i] = l->requests_per_s * 10;
        lat[0].y[i] = l->ttft.p50 * 1e3;
        lat[1].y[i] = l->ttft.p99 * 1e3;
        lat[2].y[i] = l->itl.p50 * 1e3;
        lat[3].y[i] = l->itl.p99 * 1e3;
    }
    km_buf_printf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg "
                  "xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                  "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n<rect "
                  "width=\"%d\" height=\"%d\" fill=\"white\"/>\n<text x=\"%d\" "
                  "y=\"30\" text-anchor=\"middle\" font-size=\"17\" "
                  "font-weight=\"bold\">kanoa-mlops bench: ", W, H, W, H, W, H, W / 2);
    esc(out, r->model);
    km_buf_puts(out, "</text>\n<text x=\"500\" y=\"52\" text-anchor=\"middle\" "
                "font-size=\"12\" fill=\"#555\">");
    esc(out, r->url);
    km_buf_printf(out, " - prompt ~%ld tokens, max_tokens %ld, streamed</text>\n",
                  r->prompt_tokens, r->max_tokens);
    panel(out, 80, "Throughput", "per second", thr, 2, n, r);
    panel(out, 570, "Latency", "milliseconds", lat, 4, n, r);
    return km_buf_puts(out, "</svg>\n");
}
