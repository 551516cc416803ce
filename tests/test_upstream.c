/* test_upstream.c - the gateway's pure pieces: upstream specs, the balancer,
 * parsers of upstream answers (/metrics, /v1/models) and the SSE scanner. */
#include "server/upstream.h"

#include "base/mem.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(upstream_spec, full_spec)
{
    struct ups_spec s;
    struct km_err err = {0};
    cr_assert_eq(ups_spec_parse("gpu0=http://10.0.0.5:8000/,models=llama|qwen-7b,"
                                "api-key-env=VLLM_KEY", &s, &err), KM_OK);
    cr_assert_str_eq(s.name, "gpu0");
    cr_assert_str_eq(s.url, "http://10.0.0.5:8000");
    cr_assert_eq(s.n_models, 2);
    cr_assert_str_eq(s.models[0], "llama");
    cr_assert_str_eq(s.models[1], "qwen-7b");
    cr_assert_str_eq(s.api_key_env, "VLLM_KEY");
    cr_assert_eq(ups_spec_parse("e=http://h:1,embed=bge|e5,models=m", &s, &err), KM_OK);
    cr_assert_eq(s.n_embed, 2);
    cr_assert_str_eq(s.embed[1], "e5");
    cr_assert_eq(s.n_models, 1);
}

Test(upstream_spec, url_only_and_prefix)
{
    struct ups_spec s;
    struct km_err err = {0};
    cr_assert_eq(ups_spec_parse("a.b-c_1=https://h.example/v", &s, &err), KM_OK);
    cr_assert_str_eq(s.name, "a.b-c_1");
    cr_assert_str_eq(s.url, "https://h.example/v");
    cr_assert_eq(s.n_models, 0);
    cr_assert_str_eq(s.api_key_env, "");
}

Test(upstream_spec, errors_name_the_fault)
{
    struct ups_spec s;
    struct km_err err = {0};
    cr_assert_eq(ups_spec_parse("my gpu=http://x:1", &s, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "upstream spec 'my gpu=http://x:1': name must be 1-63 "
                     "characters of [A-Za-z0-9._-]");
    cr_assert_eq(ups_spec_parse("noeq", &s, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "upstream spec 'noeq': expected "
                     "NAME=URL[,models=a|b][,embed=x|y][,api-key-env=VAR]");
    cr_assert_eq(ups_spec_parse("a=ftp://x", &s, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "upstream 'a': URL 'ftp://x' must start with "
                     "http:// or https://");
    cr_assert_eq(ups_spec_parse("a=http://x,weight=3", &s, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "upstream 'a': unknown option 'weight=3' "
                     "(expected models=a|b, embed=x|y or api-key-env=VAR)");
    cr_assert_eq(ups_spec_parse("a=http://x,models=m||n", &s, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "upstream 'a': models= has an empty or over-long "
                     "model id");
    cr_assert_eq(ups_spec_parse("a=http://x y", &s, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "upstream 'a': URL has a space or control "
                     "character at byte 8");
}

Test(upstream_balance, least_outstanding_with_waiting)
{
    struct ups_cand c[3] = {
        {"a", true, 3, -1}, {"b", true, 1, 4}, {"c", true, 2, 0},
    };
    /* loads: a=3, b=1+4=5, c=2 */
    cr_assert_eq(ups_balance_pick(c, 3, NULL, 0), 2);
    c[2].eligible = false;
    cr_assert_eq(ups_balance_pick(c, 3, NULL, 0), 0);
    c[0].eligible = false;
    cr_assert_eq(ups_balance_pick(c, 3, NULL, 0), 1);
    c[1].eligible = false;
    cr_assert_eq(ups_balance_pick(c, 3, NULL, 0), -1);
}

Test(upstream_balance, ties_rotate)
{
    struct ups_cand c[3] = {
        {"a", true, 0, -1}, {"b", true, 0, -1}, {"c", true, 0, -1},
    };
    cr_assert_eq(ups_balance_pick(c, 3, NULL, 0), 0);
    cr_assert_eq(ups_balance_pick(c, 3, NULL, 1), 1);
    cr_assert_eq(ups_balance_pick(c, 3, NULL, 2), 2);
    cr_assert_eq(ups_balance_pick(c, 3, NULL, 3), 0);
}

Test(upstream_balance, affinity_is_sticky_and_moves_only_when_ejected)
{
    struct ups_cand c[4] = {
        {"r0", true, 0, -1}, {"r1", true, 9, -1}, {"r2", true, 0, -1},
        {"r3", true, 5, -1},
    };
    int counts[4] = {0};
    for (int s = 0; s < 400; s++) {
        char key[32];
        snprintf(key, sizeof key, "session-%d", s);
        int k = ups_balance_pick(c, 4, key, (unsigned)s);
        cr_assert(k >= 0 && k < 4);
        /* same key, other rotation and load: same replica */
        c[0].in_flight = s % 7;
        cr_assert_eq(ups_balance_pick(c, 4, key, (unsigned)s * 31 + 7), k);
        counts[k]++;
        /* ejecting another replica never moves this session */
        int other = (k + 1) % 4;
        c[other].eligible = false;
        cr_assert_eq(ups_balance_pick(c, 4, key, 0), k);
        c[other].eligible = true;
        /* ejecting its own replica moves it to a healthy one */
        c[k].eligible = false;
        int k2 = ups_balance_pick(c, 4, key, 0);
        cr_assert(k2 >= 0 && k2 != k);
        c[k].eligible = true;
    }
    for (int i = 0; i < 4; i++)
        cr_assert(counts[i] > 50, "replica %d got %d of 400 sessions", i, counts[i]);
}

Test(upstream_parse, waiting_sums_and_ignores_lookalikes)
{
    const char *t =
        "# HELP vllm:num_requests_waiting Number of requests waiting.\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        "vllm:num_requests_waiting{engine=\"0\",model_name=\"a}b\"} 3.0\n"
        "vllm:num_requests_waiting_by_reason{reason=\"capacity\"} 100.0\n"
        "vllm:num_requests_waiting{engine=\"1\",model_name=\"x\"} 4\n"
        "vllm:num_requests_running{engine=\"0\"} 7.0\n";
    double sum = -1;
    bool found = false;
    cr_assert_eq(ups_parse_waiting(t, strlen(t), &sum, &found), KM_OK);
    cr_assert(found);
    cr_assert_float_eq(sum, 7.0, 1e-9);
    const char *none = "vllm:num_requests_running 1\n";
    ups_parse_waiting(none, strlen(none), &sum, &found);
    cr_assert_not(found);
    cr_assert_float_eq(sum, 0.0, 1e-9);
    const char *bare = "vllm:num_requests_waiting 2";
    ups_parse_waiting(bare, strlen(bare), &sum, &found);
    cr_assert(found);
    cr_assert_float_eq(sum, 2.0, 1e-9);
}

Test(upstream_parse, models_list)
{
    const char *b = "{\"object\":\"list\",\"data\":[{\"id\":\"meta/llama\","
                    "\"owned_by\":\"vllm\",\"created\":17,\"max_model_len\":8192},"
                    "{\"id\":\"\"},{\"object\":\"model\"},{\"id\":\"e5\"}]}";
    struct srv_model_info m[4];
    struct km_err err = {0};
    cr_assert_eq(ups_parse_models(b, strlen(b), m, 4, &err), 2);
    cr_assert_str_eq(m[0].id, "meta/llama");
    cr_assert_str_eq(m[0].owned_by, "vllm");
    cr_assert_eq(m[0].created, 17);
    cr_assert_eq(m[0].max_model_len, 8192);
    cr_assert_str_eq(m[1].id, "e5");
    cr_assert_str_eq(m[1].owned_by, "upstream");
    const char *bad = "{\"object\":\"list\"}";
    cr_assert_eq(ups_parse_models(bad, strlen(bad), m, 4, &err), -1);
    cr_assert_eq(err.code, KM_EFORMAT);
    cr_assert_eq(ups_parse_models("[", 1, m, 4, &err), -1);
}

Test(upstream_parse, sse_events_across_splits)
{
    const char *s = "data: {\"a\":1}\n\n: comment\n\ndata:{\"b\":2}\r\n\r\n"
                    "event: x\ndata: {\"c\":\n\ndata: [DONE]\n\n";
    /* every split point gives the same 3 events ([DONE] and comments excluded) */
    size_t n = strlen(s);
    for (size_t cut = 0; cut <= n; cut++) {
        struct ups_sse_scan sc;
        ups_sse_scan_init(&sc);
        unsigned long k = ups_sse_scan_feed(&sc, s, cut);
        k += ups_sse_scan_feed(&sc, s + cut, n - cut);
        cr_assert_eq(k, 3, "cut at %zu gave %lu", cut, k);
        cr_assert_eq(sc.events, 3);
    }
    struct ups_sse_scan sc;
    ups_sse_scan_init(&sc);
    const char *d = "data: [DONE]x\n\n";
    cr_assert_eq(ups_sse_scan_feed(&sc, d, strlen(d)), 1);
}

Test(upstream_pool, rejects_bad_config)
{
    struct ups_spec s[2];
    struct km_err err = {0};
    struct ups_options o;
    ups_options_default(&o);
    struct ups_pool *p = (void *)1;
    cr_assert_eq(ups_spec_parse("a=http://127.0.0.1:9", &s[0], &err), KM_OK);
    cr_assert_eq(ups_spec_parse("a=http://127.0.0.1:10", &s[1], &err), KM_OK);
    long live = km_mem_live();
    cr_assert_eq(ups_pool_new(s, 2, &o, &p, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "upstream name 'a' is given twice");
    cr_assert_null(p);
    cr_assert_eq(ups_spec_parse("b=http://127.0.0.1:10,api-key-env=KM_TEST_UNSET_KEY",
                                &s[1], &err), KM_OK);
    unsetenv("KM_TEST_UNSET_KEY");
    cr_assert_eq(ups_pool_new(s, 2, &o, &p, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "upstream 'b': environment variable "
                     "KM_TEST_UNSET_KEY (api-key-env) is not set");
    o.fall = 0;
    cr_assert_eq(ups_pool_new(s, 1, &o, &p, &err), KM_EINVAL);
    cr_assert_eq(km_mem_live(), live);
}
