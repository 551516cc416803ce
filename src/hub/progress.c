/* progress.c - render hub_pull events for a terminal, a log, or a program.
 *
 * Modes: AUTO picks BARS on a TTY, else PLAIN. BARS redraws the current
 * file's bar and a total line (bytes, rate, ETA) in place; finished files
 * leave one line each. PLAIN prints one line per file start/finish and a
 * progress line at most every PLAIN_EVERY seconds. JSON prints one object
 * per event (NDJSON). QUIET prints nothing. Lines go to `out` (stderr for
 * the CLI), written whole per event.
 *
 * Thread-safety: events arrive from one thread (hub_pull's caller).
 */
#include "hub/hub.h"

#include "base/mem.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PLAIN_EVERY 2.0
#define BARS_EVERY 0.2

enum render { R_BARS, R_PLAIN, R_JSON, R_QUIET };

struct hub_progress {
    enum render mode;
    FILE *out;
    double last;       /* elapsed_s of the last periodic line */
    int drawn;         /* BARS: lines currently drawn below the cursor */
};

struct hub_progress *hub_progress_new(enum hub_progress_mode mode, FILE *out)
{
    struct hub_progress *p = km_calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->out = out;
    p->last = -1e9;
    switch (mode) {
    case HUB_PROGRESS_AUTO:
        p->mode = isatty(fileno(out)) ? R_BARS : R_PLAIN;
        break;
    case HUB_PROGRESS_PLAIN: p->mode = R_PLAIN; break;
    case HUB_PROGRESS_JSON: p->mode = R_JSON; break;
    default: p->mode = R_QUIET; break;
    }
    return p;
}

void hub_progress_free(struct hub_progress *p)
{
    km_free(p);
}

static const char *kind_name(enum hub_event_kind k)
{
    static const char *names[] = {"resolved", "start", "progress", "verify",
                                  "done", "cached", "retry", "wait", "finish"};
    return (unsigned)k < sizeof names / sizeof *names ? names[k] : "?";
}

void hub_human_bytes(char *b, size_t n, double v)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(b, n, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void json_event(struct hub_progress *p, const struct hub_event *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string(kind_name(e->kind)));
    json_object_set_new(o, "repo", json_string(e->repo ? e->repo : ""));
    if (e->commit)
        json_object_set_new(o, "commit", json_string(e->commit));
    if (e->path)
        json_object_set_new(o, "file", json_string(e->path));
    json_object_set_new(o, "done", json_integer((json_int_t)e->done));
    json_object_set_new(o, "total", json_integer((json_int_t)e->total));
    json_object_set_new(o, "all_done", json_integer((json_int_t)e->all_done));
    json_object_set_new(o, "all_total", json_integer((json_int_t)e->all_total));
    if (e->kind == HUB_EV_RESOLVED)
        json_object_set_new(o, "files", json_integer((json_int_t)e->files));
    if (e->rate > 0)
        json_object_set_new(o, "rate", json_real(e->rate));
    if (e->msg)
        json_object_set_new(o, "message", json_string(e->msg));
    if (e->kind == HUB_EV_FINISH) {
        json_object_set_new(o, "seconds", json_real(e->elapsed_s));
        json_object_set_new(o, "hash_rate", json_real(e->hash_rate));
        json_object_set_new(o, "hash_from_memory", json_real(e->hash_mem));
    }
    char *s = json_dumps(o, JSON_COMPACT);
    if (s)
        fprintf(p->out, "%s\n", s);
    free(s); /* jansson's allocator */
    json_decref(o);
    fflush(p->out);
}

static void total_text(char *b, size_t n, const struct hub_event *e)
{
    char d[32], t[32], r[32];
    hub_human_bytes(d, sizeof d, (double)e->all_done);
    hub_human_bytes(t, sizeof t, (double)e->all_total);
    double rate = e->elapsed_s > 0 ? (double)e->all_done / e->elapsed_s : 0;
    hub_human_bytes(r, sizeof r, rate);
    double eta = rate > 0 ? (double)(e->all_total - e->all_done) / rate : 0;
    snprintf(b, n, "total %s / %s  %s/s  ETA %02d:%02d", d, t, r,
             (int)eta / 60, (int)eta % 60);
}

static void bars(struct hub_progress *p, const struct hub_event *e, int force)
{
    if (!force && e->elapsed_s - p->last < BARS_EVERY)
        return;
    p->last = e->elapsed_s;
    char line[512], tot[160], d[32], t[32], r[32];
    int width = 30;
    int fill = e->total ? (int)((double)e->done / (double)e->total * width) : width;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    hub_human_bytes(d, sizeof d, (double)e->done);
    hub_human_bytes(t, sizeof t, (double)e->total);
    hub_human_bytes(r, sizeof r, e->rate);
    snprintf(line, sizeof line, "%-32.32s [%s] %s / %s  %s/s", e->path ? e->path : "",
             bar, d, t, r);
    total_text(tot, sizeof tot, e);
    if (p->drawn)
        fprintf(p->out, "\033[%dA", p->drawn);
    fprintf(p->out, "\r\033[K%s\n\033[K%s\n", line, tot);
    p->drawn = 2;
    fflush(p->out);
}

static void line_event(struct hub_progress *p, const struct hub_event *e)
{
    char d[32], r[32], tot[160];
    if (p->mode == R_BARS && p->drawn) {
        fprintf(p->out, "\033[%dA\r\033[J", p->drawn);
        p->drawn = 0;
    }
    switch (e->kind) {
    case HUB_EV_RESOLVED:
        hub_human_bytes(d, sizeof d, (double)e->all_total);
        fprintf(p->out, "%s: commit %s, %zu file(s), %s to download\n", e->repo,
                e->commit, e->files, d);
        break;
    case HUB_EV_START:
        hub_human_bytes(d, sizeof d, (double)e->total);
        fprintf(p->out, "downloading %s (%s)%s\n", e->path, d,
                e->done ? ", resuming" : "");
        break;
    case HUB_EV_DONE:
        hub_human_bytes(d, sizeof d, (double)e->total);
        hub_human_bytes(r, sizeof r, e->rate);
        fprintf(p->out, "done %s (%s, %s/s, verified)\n", e->path, d, r);
        break;
    case HUB_EV_CACHED:
        fprintf(p->out, "cached %s\n", e->path);
        break;
    case HUB_EV_RETRY:
        fprintf(p->out, "retrying %s: %s\n", e->path ? e->path : "", e->msg ? e->msg : "");
        break;
    case HUB_EV_WAIT:
        fprintf(p->out, "waiting for lock %s (another download is running)\n",
                e->msg ? e->msg : "");
        break;
    case HUB_EV_VERIFY:
        if (p->mode == R_PLAIN)
            fprintf(p->out, "verifying %s\n", e->path);
        break;
    case HUB_EV_FINISH:
        total_text(tot, sizeof tot, e);
        fprintf(p->out, "finished %s@%s: %s\n", e->repo, e->commit, tot);
        break;
    default:
        break;
    }
    fflush(p->out);
}

void hub_progress_event(const struct hub_event *e, void *ud)
{
    struct hub_progress *p = ud;
    if (!p || p->mode == R_QUIET)
        return;
    if (p->mode == R_JSON) {
        json_event(p, e);
        return;
    }
    if (e->kind == HUB_EV_PROGRESS) {
        if (p->mode == R_BARS) {
            bars(p, e, 0);
        } else if (e->elapsed_s - p->last >= PLAIN_EVERY) {
            char d[32], t[32], tot[160];
            p->last = e->elapsed_s;
            hub_human_bytes(d, sizeof d, (double)e->done);
            hub_human_bytes(t, sizeof t, (double)e->total);
            total_text(tot, sizeof tot, e);
            fprintf(p->out, "%s: %s / %s; %s\n", e->path, d, t, tot);
            fflush(p->out);
        }
        return;
    }
    line_event(p, e);
}

void hub_progress_error(struct hub_progress *p, const struct km_err *e)
{
    if (!p || p->mode != R_JSON)
        return;
    json_t *o = json_pack("{s:s, s:s, s:s}", "event", "error", "code",
                          km_errname(e->code), "message", km_err_text(e));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s)
        fprintf(p->out, "%s\n", s);
    free(s); /* jansson's allocator */
    json_decref(o);
    fflush(p->out);
}
