/* test_upstream_scan.c - the gateway's request scan (oai_scan.c): which
 * bodies it takes (one valid JSON object, plain string model, boolean or
 * absent stream) and what it reads from them; everything else goes to the
 * full parser. */
#include "server/server_int.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static bool scan(const char *body, char *model, size_t cap, bool *stream)
{
    const char *m = NULL;
    size_t n = 0;
    bool ok = srv__scan_body(body, strlen(body), &m, &n, stream);
    model[0] = '\0';
    if (ok && n < cap) {
        memcpy(model, m, n);
        model[n] = '\0';
    }
    return ok;
}

Test(upstream_scan, reads_model_and_stream)
{
    char m[64];
    bool st = true;
    cr_assert(scan("{\"model\":\"m1\",\"messages\":[{\"role\":\"user\","
                   "\"content\":\"hi\"}]}", m, sizeof m, &st));
    cr_assert_str_eq(m, "m1");
    cr_assert_not(st);
    cr_assert(scan(" {\n\t\"stream\" : true , \"model\" : \"org/Llama-3.1 8B\" }\r\n",
                   m, sizeof m, &st));
    cr_assert_str_eq(m, "org/Llama-3.1 8B");
    cr_assert(st);
    cr_assert(scan("{\"model\":\"a\",\"stream\":false}", m, sizeof m, &st));
    cr_assert_not(st);
}

Test(upstream_scan, takes_any_valid_json_around_them)
{
    char m[64];
    bool st;
    cr_assert(scan("{\"model\":\"x\",\"n\":[-0,1.5e3,2E-2,0.25,-12],\"o\":{\"a\":"
                   "{\"b\":[[],{}]},\"model\":3},\"s\":\"q\\\"\\\\\\/\\b\\f\\n\\r\\t"
                   "\\u00e9\\ud83d\\ude00 \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\",\"t\":true,"
                   "\"f\":false,\"z\":null,\"temperature\":-1}", m, sizeof m, &st));
    cr_assert_str_eq(m, "x");   /* nested "model" keys are not the model */
    /* duplicate keys: the last one wins, as in jansson */
    cr_assert(scan("{\"model\":\"a\",\"model\":\"b\"}", m, sizeof m, &st));
    cr_assert_str_eq(m, "b");
}

Test(upstream_scan, leaves_the_unsure_to_the_full_parser)
{
    static const char *const no[] = {
        "", "   ", "[]", "\"m\"", "{}", "{\"messages\":[]}",
        "{\"model\":\"m\\u0031\"}",             /* escaped model */
        /* a key spelled with escapes: jansson reads "model" / "stream" */
        "{\"model\":\"a\",\"mod\\u0065l\":\"b\"}",
        "{\"model\":\"a\",\"str\\u0065am\":true}",
        "{\"model\":\"a\",\"x\\n\":1}",
        "{\"model\":\"\"}", "{\"model\":null}", "{\"model\":7}",
        "{\"model\":\"m\",\"stream\":null}", "{\"model\":\"m\",\"stream\":1}",
        "{\"model\":\"m\",\"stream\":\"true\"}",
        "{\"model\":\"m\",}", "{\"model\":\"m\" \"x\":1}", "{\"model\":\"m\"",
        "{\"model\":\"m\"}x", "{\"model\":\"m\"}{}", "{\"model\":\"m\",\"a\":01}",
        "{\"model\":\"m\",\"a\":1.}", "{\"model\":\"m\",\"a\":-}",
        "{\"model\":\"m\",\"a\":.5}", "{\"model\":\"m\",\"a\":1e}",
        "{\"model\":\"m\",\"a\":tru}", "{\"model\":\"m\",\"a\":nul}",
        "{\"model\":\"m\",\"a\":[1,]}", "{\"model\":\"m\",\"a\":\"\\x\"}",
        "{\"model\":\"m\",\"a\":\"\\u12g4\"}", "{\"model\":\"m\",\"a\":\"\t\"}",
        "{\"model\":\"m\",\"a\":\"\xc3\"}", "{\"model\":\"m\",\"a\":\"\xc0\xaf\"}",
        "{\"model\":\"m\",\"a\":\"\xed\xa0\x80\"}", "{\"model\":\"m\",\"a\":\"\xff\"}",
        "{model:\"m\"}", "{'model':'m'}",
        /* valid JSON past jansson's limits: the full parser decides */
        "{\"model\":\"m\",\"a\":\"\\u0000\"}", "{\"model\":\"m\",\"a\":\"\\ud800\"}",
        "{\"model\":\"m\",\"a\":\"\\udc00\\ud800\"}",
        "{\"model\":\"m\",\"seed\":18446744073709551615}",
        "{\"model\":\"m\",\"a\":1e999}",
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        char m[64];
        bool st;
        cr_assert_not(scan(no[i], m, sizeof m, &st), "took <%s>", no[i]);
    }
}

Test(upstream_scan, nesting_limit_and_embedded_nul)
{
    size_t depth = 3000;
    char *b = malloc(2 * depth + 32);
    cr_assert_not_null(b);
    size_t n = (size_t)sprintf(b, "{\"model\":\"m\",\"a\":");
    for (size_t i = 0; i < depth; i++)
        b[n++] = '[';
    for (size_t i = 0; i < depth; i++)
        b[n++] = ']';
    b[n++] = '}';
    const char *m;
    size_t ml;
    bool st;
    cr_assert_not(srv__scan_body(b, n, &m, &ml, &st));
    free(b);
    static const char nul[] = "{\"model\":\"m\"}\0";
    cr_assert_not(srv__scan_body(nul, sizeof nul - 1, &m, &ml, &st));
    cr_assert(srv__scan_body(nul, sizeof nul - 2, &m, &ml, &st));
    cr_assert_eq(ml, 1);
}
