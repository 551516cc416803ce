/* log.h - leveled logging to stderr, text or JSON lines.
 *
 * Contract: km_log writes one complete line per call (a single write(2), so
 * lines from threads never interleave). Messages below the current level are
 * dropped. In JSON mode each line is {"ts":..,"level":..,"msg":..}; fields
 * added with km_log_kv appear as extra members. Nothing is allocated on the
 * caller's behalf.
 *
 * Thread-safety: all functions are thread-safe; set the level and format
 * before starting threads.
 */
#ifndef KM_LOG_H
#define KM_LOG_H

enum km_log_level { KM_LOG_DEBUG, KM_LOG_INFO, KM_LOG_WARN, KM_LOG_ERROR };
enum km_log_format { KM_LOG_TEXT, KM_LOG_JSON };

void km_log_set_level(enum km_log_level lvl);
void km_log_set_format(enum km_log_format fmt);
enum km_log_format km_log_get_format(void);
/* Parse "debug|info|warn|error"; returns 0 on success. */
int km_log_parse_level(const char *s, enum km_log_level *out);

void km_log(enum km_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Write an already formatted line (no newline) as-is: used for access logs
 * whose text/JSON form is built by the caller. */
void km_log_raw(const char *line);

#endif
