/* access_log.c - one line per finished HTTP request, in the log format chosen
 * with --log-format: text
 *   2026-01-01T00:00:00.000Z INFO  127.0.0.1 "POST /v1/chat/completions" 200 812B 0.012s rid=... model=m
 * or one JSON object with ts, level, msg="request", remote, method, path,
 * status, bytes, duration_s, request_id and model. Written with one write(2)
 * through km_log_raw so lines from threads never interleave. */
#include "server/server_int.h"

#include "base/log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* The date and time to the second are formatted once per second and
 * thread (the same second's lines reuse them). */
static void timestamp(char *out, size_t cap)
{
    static __thread time_t last_sec = -1;
    static __thread char last[32];
    static __thread size_t last_len;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec != last_sec) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        last_len = strftime(last, sizeof last, "%Y-%m-%dT%H:%M:%S", &tm);
        last_sec = now.tv_sec;
    }
    snprintf(out, cap, "%.*s.%03ldZ", (int)last_len, last,
             now.tv_nsec / 1000000);
}

/* Copy s into out as JSON string content (quotes and controls escaped). */
static void json_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
}

void srv__access_log(const char *remote, const char *method, const char *path,
                     int status, size_t bytes, double seconds,
                     const char *request_id, const char *model)
{
    char ts[40], line[1400], epath[300], emodel[300];
    timestamp(ts, sizeof ts);
    json_escape(epath, sizeof epath, path);
    json_escape(emodel, sizeof emodel, model ? model : "");
    if (km_log_get_format() == KM_LOG_JSON)
        snprintf(line, sizeof line,
                 "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"request\","
                 "\"remote\":\"%s\",\"method\":\"%s\",\"path\":\"%s\","
                 "\"status\":%d,\"bytes\":%zu,\"duration_s\":%.6f,"
                 "\"request_id\":\"%s\",\"model\":\"%s\"}",
                 ts, remote, method, epath, status, bytes, seconds,
                 request_id, emodel);
    else
        snprintf(line, sizeof line,
                 "%s info  %s \"%s %s\" %d %zuB %.6fs rid=%s%s%s", ts, remote,
                 method, epath, status, bytes, seconds, request_id,
                 model && model[0] ? " model=" : "", model ? emodel : "");
    km_log_raw(line);
}
