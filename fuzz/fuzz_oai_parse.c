/* fuzz_oai_parse.c - the OpenAI request parser (src/server/oai_parse.c):
 * chat, completions and embeddings bodies, /tokenize and /detokenize.
 *
 * Property: every body either parses into a struct srv_request whose
 * strings and arrays can all be read (and whose logit_bias is sorted by id
 * with distinct ids, as backend.h promises), or fails with status 400 and a
 * message; nothing leaks. The gateway's scan (oai_scan.c, srv__scan_body,
 * built with KM_UNITTEST) must agree with jansson on model and stream. */
#include "fuzz.h"

#include "server/server_int.h"

#include <stdlib.h>
#include <string.h>

static void fz_oai_touch(const struct srv_request *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_messages; i++) {
        n += strlen(r->messages[i].role);
        for (size_t j = 0; j < r->messages[i].n_parts; j++) {
            const struct srv_part *p = &r->messages[i].parts[j];
            n += strlen(p->kind == SRV_PART_TEXT ? p->text : p->image_url);
        }
    }
    for (size_t i = 0; i < r->n_inputs; i++)
        n += r->inputs[i].text ? strlen(r->inputs[i].text) : r->inputs[i].n_ids;
    for (size_t i = 0; i < r->n_inputs; i++)
        for (size_t j = 0; !r->inputs[i].text && j < r->inputs[i].n_ids; j++)
            n += (size_t)(r->inputs[i].ids[j] & 1);
    for (size_t i = 0; i < r->sampling.n_stop; i++)
        n += strlen(r->sampling.stop[i]);
    for (size_t i = 0; i < r->sampling.n_stop_token_ids; i++)
        n += (size_t)(r->sampling.stop_token_ids[i] & 1);
    for (size_t i = 1; i < r->sampling.n_logit_bias; i++)
        if (r->sampling.logit_bias[i - 1].id >= r->sampling.logit_bias[i].id)
            abort(); /* logit_bias must be sorted with distinct ids */
    if (r->model)
        n += strlen(r->model);
    if (n == (size_t)-1)
        abort();
}

static void fz_oai_expect_400(const struct srv_perr *e)
{
    if (e->status != 400 || !e->msg[0])
        abort(); /* a refused body is a 400 with a message */
}

/* oai_scan.c's fast path: when it accepts a body, jansson must read the
 * same body as an object with the same model string and stream flag (the
 * gateway routes by the scan, the upstream server reads the JSON). */
static void fz_oai_scan(const char *body, size_t size)
{
    const char *model;
    size_t mlen;
    bool stream;
    json_error_t je;
    if (!srv__scan_body(body, size, &model, &mlen, &stream))
        return;
    json_t *j = json_loadb(body, size, 0, &je);
    json_t *m = json_object_get(j, "model");
    json_t *st = json_object_get(j, "stream");
    if (!json_is_object(j) || !json_is_string(m) || json_string_length(m) != mlen ||
        memcmp(json_string_value(m), model, mlen) != 0)
        abort(); /* the scan and the JSON disagree on the model */
    if (st ? !json_is_boolean(st) || json_is_true(st) != stream : stream)
        abort(); /* the scan and the JSON disagree on stream */
    json_decref(j);
}

int fuzz_oai_parse(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    fz_oai_scan(body, size);
    for (int ep = SRV_EP_CHAT; ep <= SRV_EP_EMBEDDING; ep++) {
        struct srv_parsed p;
        struct srv_perr e = {0};
        if (srv__parse_request((enum srv_endpoint)ep, body, size, &p, &e) == KM_OK) {
            fz_oai_touch(&p.req);
            srv__parsed_free(&p);
        } else {
            fz_oai_expect_400(&e);
        }
    }
    struct srv_parsed p;
    struct srv_perr e = {0};
    bool special = false;
    if (srv__parse_tokenize(body, size, &p, &special, &e) == KM_OK) {
        fz_oai_touch(&p.req);
        srv__parsed_free(&p);
    }
    struct srv_perr e2 = {0};
    if (srv__parse_detokenize(body, size, &p, &e2) == KM_OK) {
        fz_oai_touch(&p.req);
        srv__parsed_free(&p);
    }
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_oai_parse(data, size);
}
#endif
