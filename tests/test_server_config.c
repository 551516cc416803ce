/* test_server_config.c - serve settings: defaults, YAML file, KANOA_* env and
 * flags with precedence flag > env > file > default, --print-config, and the
 * gateway's upstream-* tuning through the same layers. */
#include "base/mem.h"
#include "server/server.h"
#include "server/upstream.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(server_config, .timeout = 30);

static char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/km-cfg-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

Test(server_config, defaults)
{
    struct srv_config c;
    srv_config_init(&c);
    cr_assert_str_eq(c.host, "127.0.0.1");
    cr_assert_eq(c.port, 8000);
    cr_assert_eq(c.max_body, 32ull << 20);
    cr_assert_eq(c.api_keys.n, 0);
    srv_config_free(&c);
}

Test(server_config, precedence_flag_env_file_default)
{
    struct srv_config c;
    struct km_err e;
    const char *path = write_tmp("port: 9001\nhost: 0.0.0.0\nmax_queue: 7\n"
                                 "api-key: [fa, fb]\ncors-origin:\n  - http://a\n"
                                 "upstream: vllm=http://h:8000,models=a|b\n");
    srv_config_init(&c);
    cr_assert_eq(srv_config_load_yaml(&c, path, &e), KM_OK, "%s", e.msg);
    setenv("KANOA_PORT", "9002", 1);
    setenv("KANOA_MAX_QUEUE", "8", 1);
    setenv("KANOA_API_KEY", "ea eb ec", 1);
    cr_assert_eq(srv_config_load_env(&c, &e), KM_OK, "%s", e.msg);
    cr_assert_eq(srv_config_set(&c, SRV_LAYER_FLAG, "port", "9003", &e), KM_OK);
    /* a lower layer applied later never overrides */
    cr_assert_eq(srv_config_set(&c, SRV_LAYER_FILE, "port", "1", &e), KM_OK);
    cr_assert_eq(c.port, 9003);
    cr_assert_eq(c.max_queue, 8);
    cr_assert_str_eq(c.host, "0.0.0.0");
    cr_assert_eq(c.api_keys.n, 3);
    cr_assert_str_eq(c.api_keys.v[2], "ec");
    cr_assert_eq(c.cors_origins.n, 1);
    cr_assert_str_eq(c.upstreams.v[0], "vllm=http://h:8000,models=a|b");
    unsetenv("KANOA_PORT");
    unsetenv("KANOA_MAX_QUEUE");
    unsetenv("KANOA_API_KEY");
    srv_config_free(&c);
    unlink(path);
}

Test(server_config, bad_values_name_setting_and_value)
{
    struct srv_config c;
    struct km_err e;
    srv_config_init(&c);
    cr_assert_eq(srv_config_set(&c, SRV_LAYER_FLAG, "port", "70000", &e), KM_EINVAL);
    cr_assert_str_eq(e.msg, "setting port: '70000' is not a whole number in [0, 65535]");
    cr_assert_eq(srv_config_set(&c, SRV_LAYER_FLAG, "log-format", "xml", &e), KM_EINVAL);
    cr_assert_eq(srv_config_set(&c, SRV_LAYER_FLAG, "nope", "1", &e), KM_EINVAL);
    cr_assert_str_eq(e.msg, "unknown setting 'nope'");
    cr_assert_eq(srv_config_set(&c, SRV_LAYER_FLAG, "max-body", "1M", &e), KM_OK);
    cr_assert_eq(c.max_body, 1048576ull);
    /* strtod reads "nan" and "inf": neither is a size; the range is enforced */
    cr_assert_eq(srv_config_set(&c, SRV_LAYER_FLAG, "max-body", "nan", &e), KM_EINVAL);
    cr_assert_str_eq(e.msg, "setting max-body: 'nan' is not a size in [1024, 1000000000000] bytes");
    cr_assert_eq(srv_config_set(&c, SRV_LAYER_FLAG, "max-body", "infK", &e), KM_EINVAL);
    cr_assert_eq(srv_config_set(&c, SRV_LAYER_FLAG, "max-body", "2000G", &e), KM_EINVAL);
    cr_assert_eq(srv_config_set(&c, SRV_LAYER_FLAG, "max-body", "1e30", &e), KM_EINVAL);
    cr_assert_eq(c.max_body, 1048576ull);
    const char *path = write_tmp("port: [1, 2\n");
    cr_assert_eq(srv_config_load_yaml(&c, path, &e), KM_EFORMAT);
    cr_assert(strstr(e.msg, path));
    unlink(path);
    path = write_tmp("- a\n- b\n");
    cr_assert_eq(srv_config_load_yaml(&c, path, &e), KM_EFORMAT);
    cr_assert(strstr(e.msg, "must be a mapping"));
    unlink(path);
    srv_config_free(&c);
}

Test(server_config, print_redacts_keys)
{
    struct srv_config c;
    struct km_err e;
    srv_config_init(&c);
    srv_config_set(&c, SRV_LAYER_FLAG, "api-key", "secret", &e);
    srv_config_set(&c, SRV_LAYER_FLAG, "model", "m.gguf", &e);
    srv_config_set(&c, SRV_LAYER_FLAG, "database-url", "postgres://x", &e);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    srv_config_print(&c, f);
    fclose(f);
    cr_assert_null(strstr(buf, "secret"));
    cr_assert(strstr(buf, "api-key:\n  - \"***\"\n"));
    cr_assert(strstr(buf, "model:\n  - \"m.gguf\"\n"));
    cr_assert(strstr(buf, "database-url: \"postgres://x\"\n"));
    cr_assert(strstr(buf, "port: 8000\n"));
    free(buf);
    srv_config_free(&c);
}

Test(server_config, upstream_tuning_layers)
{
    struct srv_config c;
    struct km_err e;
    struct ups_options o, d;
    ups_options_default(&d);
    srv_config_init(&c);
    ups_options_from_config(&o, &c);
    /* the settings' defaults are the pool's (field by field: padding) */
    cr_assert_eq(o.connect_timeout_ms, d.connect_timeout_ms);
    cr_assert_eq(o.first_byte_timeout_ms, d.first_byte_timeout_ms);
    cr_assert_eq(o.idle_timeout_ms, d.idle_timeout_ms);
    cr_assert_eq(o.probe_interval_ms, d.probe_interval_ms);
    cr_assert_eq(o.probe_timeout_ms, d.probe_timeout_ms);
    cr_assert_eq(o.models_refresh_ms, d.models_refresh_ms);
    cr_assert_eq(o.fall, d.fall);
    cr_assert_eq(o.rise, d.rise);
    cr_assert_eq(o.max_attempts, d.max_attempts);
    const char *path = write_tmp("upstream-fall: 4\nupstream_rise: 3\n"
                                 "upstream-probe-interval-ms: 500\n"
                                 "upstream-max-attempts: 2\n");
    cr_assert_eq(srv_config_load_yaml(&c, path, &e), KM_OK, "%s", e.msg);
    setenv("KANOA_UPSTREAM_FALL", "5", 1);
    setenv("KANOA_UPSTREAM_IDLE_TIMEOUT_MS", "7000", 1);
    cr_assert_eq(srv_config_load_env(&c, &e), KM_OK, "%s", e.msg);
    cr_assert_eq(srv_config_set(&c, SRV_LAYER_FLAG, "upstream-idle-timeout-ms",
                                "9000", &e), KM_OK);
    ups_options_from_config(&o, &c);
    cr_assert_eq(o.fall, 5);                    /* env over YAML */
    cr_assert_eq(o.rise, 3);                    /* YAML over default */
    cr_assert_eq(o.probe_interval_ms, 500);
    cr_assert_eq(o.max_attempts, 2);
    cr_assert_eq(o.idle_timeout_ms, 9000);      /* flag over env */
    cr_assert_eq(o.connect_timeout_ms, 2000);   /* default */
    cr_assert_eq(o.error_body_max, d.error_body_max);
    setenv("KANOA_UPSTREAM_RISE", "2x", 1);
    cr_assert_eq(srv_config_load_env(&c, &e), KM_EINVAL);
    cr_assert_str_eq(e.msg, "environment variable KANOA_UPSTREAM_RISE: setting "
                     "upstream-rise: '2x' is not a whole number in [1, 1000]");
    cr_assert_eq(srv_config_set(&c, SRV_LAYER_FLAG, "upstream-max-attempts",
                                "65", &e), KM_EINVAL);
    cr_assert_str_eq(e.msg, "setting upstream-max-attempts: '65' is not a whole "
                     "number in [1, 64]");
    cr_assert_eq(srv_config_set(&c, SRV_LAYER_FLAG, "upstream-connect-timeout-ms",
                                "0", &e), KM_EINVAL);
    cr_assert_str_eq(e.msg, "setting upstream-connect-timeout-ms: '0' is not a "
                     "whole number in [1, 86400000]");
    unsetenv("KANOA_UPSTREAM_FALL");
    unsetenv("KANOA_UPSTREAM_IDLE_TIMEOUT_MS");
    unsetenv("KANOA_UPSTREAM_RISE");
    srv_config_free(&c);
    unlink(path);
}

/* Found by fuzz/fuzz_config.c (fuzz/corpus/config/print-newline-in-value.yaml):
 * a value holding a newline or a control character was printed raw inside
 * the double quotes, so --print-config's YAML loaded back different (or
 * not at all). */
Test(server_config, print_escapes_what_yaml_would_change)
{
    struct srv_config c;
    struct km_err err;
    char *buf = NULL;
    size_t len = 0;
    srv_config_init(&c);
    cr_assert_eq(srv_config_set(&c, SRV_LAYER_FLAG, "host", "a\nb\t\x01\"c\\ \xc3\xa9\xc2\x85\xff",
                                &err), KM_OK);
    FILE *f = open_memstream(&buf, &len);
    srv_config_print(&c, f);
    fclose(f);
    cr_assert_not_null(strstr(buf, "host: \"a\\nb\\x09\\x01\\\"c\\\\ \xc3\xa9\\x85\\xFF\"\n"),
                       "%s", buf);
    free(buf);
    srv_config_free(&c);
}
