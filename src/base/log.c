/* log.c - leveled logging (see log.h). */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static enum km_log_level cur_level = KM_LOG_INFO;
static enum km_log_format cur_format = KM_LOG_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void km_log_set_level(enum km_log_level lvl) { cur_level = lvl; }
void km_log_set_format(enum km_log_format fmt) { cur_format = fmt; }
enum km_log_format km_log_get_format(void) { return cur_format; }

int km_log_parse_level(const char *s, enum km_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum km_log_level)i;
            return 0;
        }
    }
    return -1;
}

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Append `s` to out[*pos..cap) as JSON string content. */
static void json_escape(char *out, size_t cap, size_t *pos, const char *s)
{
    for (; *s && *pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[(*pos)++] = '\\';
            out[(*pos)++] = (char)c;
        } else if (c < 0x20) {
            *pos += (size_t)snprintf(out + *pos, cap - *pos, "\\u%04x", c);
        } else {
            out[(*pos)++] = (char)c;
        }
    }
}

void km_log(enum km_log_level lvl, const char *fmt, ...)
{
    if (lvl < cur_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    char ts[40];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%03ldZ", now.tv_nsec / 1000000);

    char line[4608];
    size_t pos = 0;
    if (cur_format == KM_LOG_JSON) {
        pos = (size_t)snprintf(line, sizeof line,
                               "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"",
                               ts, level_names[lvl]);
        json_escape(line, sizeof line, &pos, msg);
        pos += (size_t)snprintf(line + pos, sizeof line - pos, "\"}\n");
    } else {
        pos = (size_t)snprintf(line, sizeof line, "%s %-5s %s\n", ts,
                               level_names[lvl], msg);
    }
    if (pos >= sizeof line) {
        pos = sizeof line - 1;
        line[pos - 1] = '\n';
    }
    write_all(line, pos);
}

void km_log_raw(const char *line)
{
    char buf[8192];
    size_t n = strlen(line);
    if (n + 1 <= sizeof buf) {   /* one write keeps the line whole */
        memcpy(buf, line, n);
        buf[n] = '\n';
        write_all(buf, n + 1);
        return;
    }
    write_all(line, n);
    write_all("\n", 1);
}
