/* config.c - serve settings from defaults, a YAML file, KANOA_* variables and
 * flags (see server.h). One table names every setting once; each layer goes
 * through srv_config_set(), which remembers the layer that last set a field so
 * that a lower layer can never override a higher one. This is the libyaml
 * adapter: no other file includes yaml.h. */
#include "server/server.h"

#include "base/mem.h"
#include "server/upstream.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

enum kind { K_STR, K_LONG, K_DBL, K_BOOL, K_SIZE, K_LIST };

struct setting {
    const char *key;
    enum kind kind;
    size_t off;
    double min, max;
};

#define F(field) offsetof(struct srv_config, field)

static const struct setting settings[] = {
    {"host", K_STR, F(host), 0, 0},
    {"port", K_LONG, F(port), 0, 65535},
    {"http-threads", K_LONG, F(http_threads), 0, 256},
    {"max-connections", K_LONG, F(max_connections), 1, 1000000},
    {"conn-timeout", K_LONG, F(conn_timeout), 1, 86400},
    {"max-body", K_SIZE, F(max_body), 1024, 1e12},
    {"max-concurrent", K_LONG, F(max_concurrent), 1, 1000000},
    {"max-queue", K_LONG, F(max_queue), 0, 1000000},
    {"request-timeout", K_DBL, F(request_timeout), 0, 1e7},
    {"drain-timeout", K_DBL, F(drain_timeout), 0, 1e5},
    {"keepalive", K_DBL, F(keepalive), 0.05, 3600},
    {"api-key", K_LIST, F(api_keys), 0, 0},
    {"api-key-file", K_STR, F(api_key_file), 0, 0},
    {"protect-metrics", K_BOOL, F(protect_metrics), 0, 0},
    {"cors-origin", K_LIST, F(cors_origins), 0, 0},
    {"log-format", K_STR, F(log_format), 0, 0},
    {"log-level", K_STR, F(log_level), 0, 0},
    {"model", K_LIST, F(models), 0, 0},
    {"served-model-name", K_LIST, F(served_names), 0, 0},
    {"upstream", K_LIST, F(upstreams), 0, 0},
    {"database-url", K_STR, F(database_url), 0, 0},
    {"threads", K_LONG, F(threads), 0, 4096},
    {"ctx", K_LONG, F(ctx), 0, 1 << 24},
    {"chat-template", K_STR, F(chat_template), 0, 0},
    /* gateway tuning: KANOA_UPSTREAM_* in the environment */
    {"upstream-connect-timeout-ms", K_LONG, F(upstream_connect_timeout_ms), 1, 86400000},
    {"upstream-first-byte-timeout-ms", K_LONG, F(upstream_first_byte_timeout_ms), 1, 86400000},
    {"upstream-idle-timeout-ms", K_LONG, F(upstream_idle_timeout_ms), 1, 86400000},
    {"upstream-probe-interval-ms", K_LONG, F(upstream_probe_interval_ms), 1, 86400000},
    {"upstream-probe-timeout-ms", K_LONG, F(upstream_probe_timeout_ms), 1, 86400000},
    {"upstream-models-refresh-ms", K_LONG, F(upstream_models_refresh_ms), 1, 86400000},
    {"upstream-fall", K_LONG, F(upstream_fall), 1, 1000},
    {"upstream-rise", K_LONG, F(upstream_rise), 1, 1000},
    {"upstream-max-attempts", K_LONG, F(upstream_max_attempts), 1, UPS_MAX_UPSTREAMS},
};

#define N_SETTINGS (sizeof settings / sizeof settings[0])

static const char *keys[N_SETTINGS + 1];

const char *const *srv_config_keys(void)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        keys[i] = settings[i].key;
    keys[N_SETTINGS] = NULL;
    return keys;
}

static void list_clear(struct srv_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        km_free(l->v[i]);
    km_free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int list_add(struct srv_strlist *l, const char *s)
{
    char **v = km_realloc(l->v, (l->n + 1) * sizeof *v);
    if (!v)
        return KM_ENOMEM;
    l->v = v;
    l->v[l->n] = km_strdup(s);
    if (!l->v[l->n])
        return KM_ENOMEM;
    l->n++;
    return KM_OK;
}

void srv_config_init(struct srv_config *c)
{
    memset(c, 0, sizeof *c);
    c->host = km_strdup("127.0.0.1");
    c->port = 8000;
    c->max_connections = 4096;
    c->conn_timeout = 60;
    c->max_body = 32ull << 20;
    c->max_concurrent = 64;
    c->max_queue = 256;
    c->request_timeout = 600;
    c->drain_timeout = 30;
    c->keepalive = 10;
    c->log_format = km_strdup("text");
    c->log_level = km_strdup("info");
    struct ups_options o;
    ups_options_default(&o);
    c->upstream_connect_timeout_ms = o.connect_timeout_ms;
    c->upstream_first_byte_timeout_ms = o.first_byte_timeout_ms;
    c->upstream_idle_timeout_ms = o.idle_timeout_ms;
    c->upstream_probe_interval_ms = o.probe_interval_ms;
    c->upstream_probe_timeout_ms = o.probe_timeout_ms;
    c->upstream_models_refresh_ms = o.models_refresh_ms;
    c->upstream_fall = o.fall;
    c->upstream_rise = o.rise;
    c->upstream_max_attempts = o.max_attempts;
}

void srv_config_free(struct srv_config *c)
{
    if (!c)
        return;
    km_free(c->config_file);
    c->config_file = NULL;
    for (size_t i = 0; i < N_SETTINGS; i++) {
        void *p = (char *)c + settings[i].off;
        if (settings[i].kind == K_STR) {
            km_free(*(char **)p);
            *(char **)p = NULL;
        } else if (settings[i].kind == K_LIST) {
            list_clear(p);
        }
    }
}

static const struct setting *find_setting(const char *key, size_t *idx)
{
    char norm[64];
    size_t n = strlen(key);
    if (n >= sizeof norm)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        norm[i] = key[i] == '_' ? '-' : (char)tolower((unsigned char)key[i]);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        if (strcmp(settings[i].key, norm) == 0) {
            *idx = i;
            return &settings[i];
        }
    }
    return NULL;
}

static int parse_bool(const char *v, bool *out)
{
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") ||
        !strcasecmp(v, "on")) {
        *out = true;
        return 0;
    }
    if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no") ||
        !strcasecmp(v, "off")) {
        *out = false;
        return 0;
    }
    return -1;
}

static int parse_number(const struct setting *s, const char *v, double *out)
{
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(d) || d < s->min || d > s->max)
        return -1;
    if (s->kind == K_LONG && d != floor(d))
        return -1;
    *out = d;
    return 0;
}

static int parse_size(const char *v, unsigned long long *out)
{
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || d < 0)
        return -1;
    double mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1024.0; end++; break;
    case 'm': case 'M': mult = 1048576.0; end++; break;
    case 'g': case 'G': mult = 1073741824.0; end++; break;
    default: break;
    }
    if (*end == 'i')
        end++;
    if (*end == 'B')
        end++;
    if (*end || !isfinite(d) || d * mult > 1.8e19) /* nan, inf: no size */
        return -1;
    *out = (unsigned long long)(d * mult);
    return 0;
}

static int check_choice(const char *key, const char *v, struct km_err *err)
{
    if (!strcmp(key, "log-format") && strcmp(v, "text") && strcmp(v, "json"))
        return km_fail(err, KM_EINVAL,
                       "setting log-format: '%s' is not text or json", v);
    if (!strcmp(key, "log-level") && strcmp(v, "debug") && strcmp(v, "info") &&
        strcmp(v, "warn") && strcmp(v, "error"))
        return km_fail(err, KM_EINVAL,
                       "setting log-level: '%s' is not debug, info, warn or "
                       "error", v);
    return KM_OK;
}

static int set_value(struct srv_config *c, const struct setting *s,
                     const char *v, struct km_err *err)
{
    void *p = (char *)c + s->off;
    double d = 0;
    switch (s->kind) {
    case K_STR: {
        int rc = check_choice(s->key, v, err);
        if (rc)
            return rc;
        char *dup = km_strdup(v);
        if (!dup)
            return km_fail(err, KM_ENOMEM, "setting %s: out of memory", s->key);
        km_free(*(char **)p);
        *(char **)p = dup;
        return KM_OK;
    }
    case K_BOOL:
        if (parse_bool(v, p))
            return km_fail(err, KM_EINVAL,
                           "setting %s: '%s' is not true or false", s->key, v);
        return KM_OK;
    case K_SIZE: {
        unsigned long long size = 0; /* a rejected value leaves the old one */
        if (parse_size(v, &size) || size < (unsigned long long)s->min ||
            size > (unsigned long long)s->max)
            return km_fail(err, KM_EINVAL,
                           "setting %s: '%s' is not a size in [%.0f, %.0f] bytes",
                           s->key, v, s->min, s->max);
        *(unsigned long long *)p = size;
        return KM_OK;
    }
    case K_LIST:
        if (list_add(p, v))
            return km_fail(err, KM_ENOMEM, "setting %s: out of memory", s->key);
        return KM_OK;
    case K_LONG:
    case K_DBL:
        if (parse_number(s, v, &d))
            return km_fail(err, KM_EINVAL, s->kind == K_LONG
                           ? "setting %s: '%s' is not a %s in [%.0f, %.0f]"
                           : "setting %s: '%s' is not a %s in [%g, %g]", s->key,
                           v, s->kind == K_LONG ? "whole number" : "number",
                           s->min, s->max);
        if (s->kind == K_LONG)
            *(long *)p = (long)d;
        else
            *(double *)p = d;
        return KM_OK;
    }
    return KM_OK;
}

int srv_config_set(struct srv_config *c, enum srv_layer layer, const char *key,
                   const char *value, struct km_err *err)
{
    size_t idx = 0;
    const struct setting *s = find_setting(key, &idx);
    if (!s)
        return km_fail(err, KM_EINVAL, "unknown setting '%s'", key);
    if (!value)
        return km_fail(err, KM_EINVAL, "setting %s: missing value", s->key);
    if (c->layer_[idx] > layer)
        return KM_OK; /* a higher layer already decided */
    if (s->kind == K_LIST && c->layer_[idx] < layer)
        list_clear((struct srv_strlist *)((char *)c + s->off));
    c->layer_[idx] = (unsigned char)layer;
    return set_value(c, s, value, err);
}

static int env_list(struct srv_config *c, const char *key, const char *v,
                    struct km_err *err)
{
    char *dup = km_strdup(v);
    if (!dup)
        return km_fail(err, KM_ENOMEM, "environment: out of memory");
    int rc = KM_OK;
    char *save = NULL;
    for (char *t = strtok_r(dup, " \t\n", &save); t && !rc;
         t = strtok_r(NULL, " \t\n", &save))
        rc = srv_config_set(c, SRV_LAYER_ENV, key, t, err);
    km_free(dup);
    return rc;
}

int srv_config_load_env(struct srv_config *c, struct km_err *err)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        char name[80] = "KANOA_";
        size_t n = strlen(name);
        for (const char *k = settings[i].key; *k && n + 1 < sizeof name; k++)
            name[n++] = *k == '-' ? '_' : (char)toupper((unsigned char)*k);
        name[n] = '\0';
        const char *v = getenv(name);
        if (!v)
            continue;
        int rc = settings[i].kind == K_LIST
                     ? env_list(c, settings[i].key, v, err)
                     : srv_config_set(c, SRV_LAYER_ENV, settings[i].key, v, err);
        if (rc)
            return km_err_prefix(err, "environment variable %s", name);
    }
    return KM_OK;
}

/* ---- YAML: a flat mapping of key: scalar | [scalars] ---- */

struct yaml_state {
    yaml_parser_t p;
    const char *path;
};

static int yaml_next(struct yaml_state *y, yaml_event_t *ev, struct km_err *err)
{
    if (!yaml_parser_parse(&y->p, ev))
        return km_fail(err, KM_EFORMAT, "config %s: line %zu: %s", y->path,
                       y->p.problem_mark.line + 1,
                       y->p.problem ? y->p.problem : "YAML syntax error");
    return KM_OK;
}

static int yaml_value(struct yaml_state *y, struct srv_config *c,
                      const char *key, struct km_err *err)
{
    yaml_event_t ev;
    int rc = yaml_next(y, &ev, err);
    if (rc)
        return rc;
    if (ev.type == YAML_SCALAR_EVENT) {
        rc = srv_config_set(c, SRV_LAYER_FILE, key, (char *)ev.data.scalar.value, err);
        yaml_event_delete(&ev);
        return rc;
    }
    if (ev.type != YAML_SEQUENCE_START_EVENT) {
        size_t line = ev.start_mark.line + 1;
        yaml_event_delete(&ev);
        return km_fail(err, KM_EFORMAT,
                       "config %s: line %zu: setting %s must be a scalar or "
                       "a list of scalars", y->path, line, key);
    }
    yaml_event_delete(&ev);
    for (;;) {
        rc = yaml_next(y, &ev, err);
        if (rc)
            return rc;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return KM_OK;
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            yaml_event_delete(&ev);
            return km_fail(err, KM_EFORMAT,
                           "config %s: setting %s: list items must be scalars",
                           y->path, key);
        }
        rc = srv_config_set(c, SRV_LAYER_FILE, key, (char *)ev.data.scalar.value, err);
        yaml_event_delete(&ev);
        if (rc)
            return rc;
    }
}

static int yaml_mapping(struct yaml_state *y, struct srv_config *c,
                        struct km_err *err)
{
    for (;;) {
        yaml_event_t ev;
        int rc = yaml_next(y, &ev, err);
        if (rc)
            return rc;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return KM_OK;
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            yaml_event_delete(&ev);
            return km_fail(err, KM_EFORMAT, "config %s: keys must be scalars",
                           y->path);
        }
        char key[64];
        snprintf(key, sizeof key, "%s", (char *)ev.data.scalar.value);
        yaml_event_delete(&ev);
        rc = yaml_value(y, c, key, err);
        if (rc)
            return km_err_prefix(err, "config %s", y->path);
    }
}

int srv_config_load_yaml(struct srv_config *c, const char *path,
                         struct km_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return km_fail(err, KM_EIO, "config %s: %s", path, strerror(errno));
    struct yaml_state y = {.path = path};
    int rc = KM_OK;
    if (!yaml_parser_initialize(&y.p)) {
        fclose(f);
        return km_fail(err, KM_ENOMEM, "config %s: out of memory", path);
    }
    yaml_parser_set_input_file(&y.p, f);
    bool in_doc = false;
    for (;;) {
        yaml_event_t ev;
        rc = yaml_next(&y, &ev, err);
        if (rc)
            goto out;
        yaml_event_type_t t = ev.type;
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT)
            break;
        if (t == YAML_DOCUMENT_START_EVENT)
            in_doc = true;
        if (t == YAML_MAPPING_START_EVENT && in_doc) {
            rc = yaml_mapping(&y, c, err);
            if (rc)
                goto out;
        } else if (t == YAML_SCALAR_EVENT || t == YAML_SEQUENCE_START_EVENT) {
            rc = km_fail(err, KM_EFORMAT,
                         "config %s: the document must be a mapping of settings",
                         path);
            goto out;
        }
    }
    km_free(c->config_file);
    c->config_file = km_strdup(path);
out:
    yaml_parser_delete(&y.p);
    fclose(f);
    return rc;
}

int srv_config_load_key_file(struct srv_config *c, struct km_err *err)
{
    if (!c->api_key_file)
        return KM_OK;
    FILE *f = fopen(c->api_key_file, "r");
    if (!f)
        return km_fail(err, KM_EIO, "api-key-file %s: %s", c->api_key_file,
                       strerror(errno));
    char line[1024];
    int rc = KM_OK;
    while (!rc && fgets(line, sizeof line, f)) {
        char *s = line;
        while (isspace((unsigned char)*s))
            s++;
        size_t n = strlen(s);
        while (n && isspace((unsigned char)s[n - 1]))
            s[--n] = '\0';
        if (n == 0 || *s == '#')
            continue;
        if (list_add(&c->api_keys, s))
            rc = km_fail(err, KM_ENOMEM, "api-key-file: out of memory");
    }
    fclose(f);
    return rc;
}

/* Length of the UTF-8 character at p (1-4) and its code point, or 0 when
 * the bytes are not valid UTF-8 (overlong, surrogate, above U+10FFFF). */
static int utf8_char(const unsigned char *p, uint32_t *cp)
{
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    int k = p[0] < 0x80 ? 1 : (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3
          : (p[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (k == 0)
        return 0;
    uint32_t c = k == 1 ? p[0] : p[0] & (0x7F >> k);
    for (int i = 1; i < k; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (p[i] & 0x3F);
    }
    if (c < min[k] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return k;
}

/* Characters YAML lets stand as they are inside a double-quoted scalar:
 * printable, and neither a line break (NEL, LS, PS) nor a BOM. */
static bool yaml_plain_char(uint32_t c)
{
    return (c >= 0x20 && c <= 0x7E) || (c >= 0xA0 && c <= 0xD7FF && c != 0x2028 &&
                                        c != 0x2029) ||
           (c >= 0xE000 && c <= 0xFFFD && c != 0xFEFF) || (c >= 0x10000 && c <= 0x10FFFF);
}

/* A YAML double-quoted scalar that loads back to v: controls, line breaks
 * and bytes that are not UTF-8 are written as escapes. */
static void print_quoted(FILE *out, const char *v)
{
    const unsigned char *p = (const unsigned char *)v;
    fputc('"', out);
    while (*p) {
        uint32_t c = 0;
        int k = utf8_char(p, &c);
        if (k == 0) {
            fprintf(out, "\\x%02X", *p); /* not UTF-8: the byte as U+00XX */
            k = 1;
        } else if (c == '"' || c == '\\') {
            fprintf(out, "\\%c", (char)c);
        } else if (yaml_plain_char(c)) {
            fwrite(p, 1, (size_t)k, out);
        } else if (c == '\n') {
            fputs("\\n", out);
        } else if (c <= 0xFF) {
            fprintf(out, "\\x%02X", (unsigned)c);
        } else {
            fprintf(out, "\\u%04X", (unsigned)c);
        }
        p += k;
    }
    fputs("\"\n", out);
}

static void print_str(FILE *out, const char *key, const char *v)
{
    fprintf(out, "%s: ", key);
    if (!v)
        fputs("null\n", out);
    else
        print_quoted(out, v);
}

void srv_config_print(const struct srv_config *c, FILE *out)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        const void *p = (const char *)c + s->off;
        bool secret = !strcmp(s->key, "api-key");
        switch (s->kind) {
        case K_STR: print_str(out, s->key, *(char *const *)p); break;
        case K_LONG: fprintf(out, "%s: %ld\n", s->key, *(const long *)p); break;
        case K_DBL: fprintf(out, "%s: %g\n", s->key, *(const double *)p); break;
        case K_BOOL:
            fprintf(out, "%s: %s\n", s->key, *(const bool *)p ? "true" : "false");
            break;
        case K_SIZE:
            fprintf(out, "%s: %llu\n", s->key, *(const unsigned long long *)p);
            break;
        case K_LIST: {
            const struct srv_strlist *l = p;
            fprintf(out, "%s:%s\n", s->key, l->n ? "" : " []");
            for (size_t j = 0; j < l->n; j++) {
                fputs("  - ", out);
                if (secret)
                    fputs("\"***\"\n", out);
                else
                    print_quoted(out, l->v[j]);
            }
            break;
        }
        }
    }
}
