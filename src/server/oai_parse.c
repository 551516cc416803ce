/* oai_parse.c - the only place that parses client JSON (jansson): an OpenAI
 * /v1/chat/completions, /v1/completions or /v1/embeddings body becomes a
 * struct srv_request, validated field by field with vLLM's rules.
 *
 * Contract: on success every pointer in out->req points into out->root or into
 * arrays owned by out; srv__parsed_free() releases all of it. On failure the
 * struct srv_perr holds the HTTP status (400), the field at fault in
 * OpenAI's `param` spelling ("messages[0].content[1].image_url.url") and one
 * sentence; nothing is left allocated. Unknown fields are ignored, as vLLM
 * does. Integer fields accept JSON integers (and reals with no fraction). */
#include "server/server_int.h"

#include "base/mem.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STOP 64
#define MAX_INPUTS 4096

static int bad(struct srv_perr *e, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(struct srv_perr *e, const char *param, const char *fmt, ...)
{
    va_list ap;
    e->status = 400;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return KM_EINVAL;
}

int srv__parse_object(const char *body, size_t len, json_t **root,
                      struct srv_perr *e)
{
    json_error_t je;
    *root = NULL;
    if (len == 0)
        return bad(e, NULL, "the request body is empty; a JSON object is "
                   "required");
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES * 0, &je);
    if (!j)
        return bad(e, NULL, "invalid JSON at line %d, column %d: %s", je.line,
                   je.column, je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return bad(e, NULL, "the request body must be a JSON object");
    }
    *root = j;
    return KM_OK;
}

/* ---- typed field readers: absent or null keeps the default ---- */

static json_t *field(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

static int get_bool(const json_t *o, const char *key, bool *out,
                    struct srv_perr *e)
{
    json_t *v = field(o, key);
    if (!v)
        return KM_OK;
    if (!json_is_boolean(v))
        return bad(e, key, "%s must be a boolean", key);
    *out = json_is_true(v);
    return KM_OK;
}

static int get_num(const json_t *o, const char *key, double lo, double hi,
                   bool lo_open, double *out, struct srv_perr *e)
{
    json_t *v = field(o, key);
    if (!v)
        return KM_OK;
    if (!json_is_number(v))
        return bad(e, key, "%s must be a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi || (lo_open && d == lo))
        return bad(e, key, "%s must be %s %g and at most %g (got %g)", key,
                   lo_open ? "greater than" : "at least", lo, hi, d);
    *out = d;
    return KM_OK;
}

static int int_value(const json_t *v, const char *param, long long lo,
                     long long hi, long long *out, struct srv_perr *e)
{
    long long x = 0;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9.2e18) {
        x = (long long)json_real_value(v);
    } else {
        return bad(e, param, "%s must be an integer", param);
    }
    if (x < lo || x > hi)
        return bad(e, param, "%s must be between %lld and %lld (got %lld)",
                   param, lo, hi, x);
    *out = x;
    return KM_OK;
}

static int get_int(const json_t *o, const char *key, long long lo,
                   long long hi, long long *out, struct srv_perr *e)
{
    json_t *v = field(o, key);
    if (!v)
        return KM_OK;
    return int_value(v, key, lo, hi, out, e);
}

static int get_str(const json_t *o, const char *key, const char **out,
                   struct srv_perr *e)
{
    json_t *v = field(o, key);
    if (!v)
        return KM_OK;
    if (!json_is_string(v))
        return bad(e, key, "%s must be a string", key);
    *out = json_string_value(v);
    return KM_OK;
}

/* Fields vLLM accepts that the server checks only for type. */
struct typed { const char *key; int type; };

static const struct typed typed_fields[] = {
    {"user", JSON_STRING}, {"reasoning_effort", JSON_STRING},
    {"parallel_tool_calls", JSON_TRUE}, {"continue_final_message", JSON_TRUE},
    {"add_special_tokens", JSON_TRUE}, {"skip_special_tokens", JSON_TRUE},
    {"spaces_between_special_tokens", JSON_TRUE},
    {"include_stop_str_in_output", JSON_TRUE}, {"use_beam_search", JSON_TRUE},
    {"return_tokens_as_token_ids", JSON_TRUE}, {"length_penalty", JSON_REAL},
    {"logit_bias", JSON_OBJECT}, {"chat_template_kwargs", JSON_OBJECT},
    {"metadata", JSON_OBJECT}, {"tools", JSON_ARRAY},
    {"mm_processor_kwargs", JSON_OBJECT}, {"chat_template", JSON_STRING},
    {"request_id", JSON_STRING}, {"priority", JSON_INTEGER},
};

static bool type_ok(const json_t *v, int type)
{
    switch (type) {
    case JSON_TRUE: return json_is_boolean(v);
    case JSON_REAL: return json_is_number(v);
    case JSON_INTEGER: return json_is_integer(v);
    default: return json_typeof(v) == (json_type)type;
    }
}

static const char *type_name(int type)
{
    switch (type) {
    case JSON_TRUE: return "a boolean";
    case JSON_REAL: return "a number";
    case JSON_INTEGER: return "an integer";
    case JSON_STRING: return "a string";
    case JSON_ARRAY: return "an array";
    default: return "an object";
    }
}

static int check_typed(const json_t *o, struct srv_perr *e)
{
    for (size_t i = 0; i < sizeof typed_fields / sizeof typed_fields[0]; i++) {
        json_t *v = field(o, typed_fields[i].key);
        if (v && !type_ok(v, typed_fields[i].type))
            return bad(e, typed_fields[i].key, "%s must be %s",
                       typed_fields[i].key, type_name(typed_fields[i].type));
    }
    json_t *lb = field(o, "logit_bias");
    const char *k;
    json_t *v;
    json_object_foreach(lb, k, v) {
        if (!json_is_number(v) || fabs(json_number_value(v)) > 100)
            return bad(e, "logit_bias", "logit_bias values must be numbers "
                       "between -100 and 100 (token %s)", k);
    }
    json_t *rf = field(o, "response_format");
    if (rf) {
        json_t *t = json_is_object(rf) ? json_object_get(rf, "type") : NULL;
        const char *ts = json_string_value(t);
        if (!ts || (strcmp(ts, "text") && strcmp(ts, "json_object") &&
                    strcmp(ts, "json_schema") && strcmp(ts, "structural_tag")))
            return bad(e, "response_format.type", "response_format.type must "
                       "be text, json_object, json_schema or structural_tag");
    }
    json_t *tc = field(o, "tool_choice");
    if (tc && !json_is_string(tc) && !json_is_object(tc))
        return bad(e, "tool_choice", "tool_choice must be a string or an "
                   "object");
    return KM_OK;
}

/* ---- sampling ---- */

static void sampling_defaults(struct srv_sampling *s, enum srv_endpoint ep)
{
    memset(s, 0, sizeof *s);
    s->temperature = 1.0;
    s->top_p = 1.0;
    s->repetition_penalty = 1.0;
    s->max_tokens = ep == SRV_EP_COMPLETION ? 16 : -1;
    s->logprobs = -1;
}

static int parse_stop(const json_t *o, struct srv_parsed *p, struct srv_perr *e)
{
    struct srv_sampling *s = &p->req.sampling;
    json_t *v = field(o, "stop");
    if (v && !json_is_string(v) && !json_is_array(v))
        return bad(e, "stop", "stop must be a string or an array of strings");
    size_t n = json_is_string(v) ? 1 : json_array_size(v);
    if (n > MAX_STOP)
        return bad(e, "stop", "stop may hold at most %d strings", MAX_STOP);
    if (n) {
        p->stop = km_calloc(n, sizeof *p->stop);
        if (!p->stop)
            return bad(e, "stop", "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_is_string(v) ? v : json_array_get(v, i);
        if (!json_is_string(it))
            return bad(e, "stop", "stop[%zu] must be a string", i);
        p->stop[i] = json_string_value(it);
    }
    s->stop = p->stop;
    s->n_stop = n;
    json_t *ids = field(o, "stop_token_ids");
    if (ids && !json_is_array(ids))
        return bad(e, "stop_token_ids", "stop_token_ids must be an array of "
                   "integers");
    n = json_array_size(ids);
    if (n) {
        p->stop_ids = km_calloc(n, sizeof *p->stop_ids);
        if (!p->stop_ids)
            return bad(e, "stop_token_ids", "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        long long x = 0;
        if (int_value(json_array_get(ids, i), "stop_token_ids", 0, INT32_MAX,
                      &x, e))
            return KM_EINVAL;
        p->stop_ids[i] = (int32_t)x;
    }
    s->stop_token_ids = p->stop_ids;
    s->n_stop_token_ids = n;
    return KM_OK;
}

static int bias_cmp(const void *a, const void *b)
{
    const struct srv_logit_bias *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/* logit_bias: {"<token id>": value}; values were range-checked in
 * check_typed. Sorted by id for the sampler's lookup. */
static int parse_logit_bias(const json_t *o, struct srv_parsed *p,
                            struct srv_perr *e)
{
    json_t *lb = field(o, "logit_bias");
    size_t n = json_object_size(lb), i = 0;
    if (n == 0)
        return KM_OK;
    p->bias = km_calloc(n, sizeof *p->bias);
    if (!p->bias)
        return bad(e, "logit_bias", "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)lb, k, v) {
        char *end;
        errno = 0;
        long long id = strtoll(k, &end, 10);
        if (!*k || *end || errno || id < 0 || id > INT32_MAX)
            return bad(e, "logit_bias", "logit_bias keys must be token ids "
                       "(non-negative integers), not \"%s\"", k);
        p->bias[i].id = (int32_t)id;
        p->bias[i].bias = (float)json_number_value(v);
        i++;
    }
    qsort(p->bias, n, sizeof *p->bias, bias_cmp);
    for (i = 1; i < n; i++) {
        if (p->bias[i].id == p->bias[i - 1].id)
            return bad(e, "logit_bias", "logit_bias names token %d twice",
                       (int)p->bias[i].id);
    }
    p->req.sampling.logit_bias = p->bias;
    p->req.sampling.n_logit_bias = n;
    return KM_OK;
}

static int parse_max_tokens(const json_t *o, struct srv_sampling *s,
                            struct srv_perr *e)
{
    long long mt = -1, mct = -1, mn = 0;
    if (get_int(o, "max_tokens", 1, INT32_MAX, &mt, e) ||
        get_int(o, "max_completion_tokens", 1, INT32_MAX, &mct, e) ||
        get_int(o, "min_tokens", 0, INT32_MAX, &mn, e))
        return KM_EINVAL;
    if (mct > 0)
        s->max_tokens = mct;
    else if (mt > 0)
        s->max_tokens = mt;
    s->min_tokens = mn;
    if (s->max_tokens > 0 && mn > s->max_tokens)
        return bad(e, "min_tokens", "min_tokens (%lld) must be less than or "
                   "equal to max_tokens (%ld)", mn, s->max_tokens);
    return KM_OK;
}

static int parse_sampling(const json_t *o, struct srv_parsed *p,
                          struct srv_perr *e)
{
    struct srv_sampling *s = &p->req.sampling;
    long long top_k = 0, seed = 0;
    if (get_num(o, "temperature", 0, 1e6, false, &s->temperature, e) ||
        get_num(o, "top_p", 0, 1, true, &s->top_p, e) ||
        get_int(o, "top_k", -1, INT32_MAX, &top_k, e) ||
        get_num(o, "min_p", 0, 1, false, &s->min_p, e) ||
        get_num(o, "repetition_penalty", 0, 1e6, true, &s->repetition_penalty, e) ||
        get_num(o, "frequency_penalty", -2, 2, false, &s->frequency_penalty, e) ||
        get_num(o, "presence_penalty", -2, 2, false, &s->presence_penalty, e) ||
        get_bool(o, "ignore_eos", &s->ignore_eos, e) ||
        parse_max_tokens(o, s, e) || parse_stop(o, p, e))
        return KM_EINVAL;
    s->top_k = (int)top_k;
    if (parse_logit_bias(o, p, e))
        return KM_EINVAL;
    if (field(o, "seed")) {
        if (get_int(o, "seed", INT64_MIN, INT64_MAX, &seed, e))
            return KM_EINVAL;
        s->has_seed = true;
        s->seed = (uint64_t)seed;
    }
    return KM_OK;
}

/* n, stream, stream_options; common to chat and completions */
static int parse_stream(const json_t *o, struct srv_parsed *p,
                        struct srv_perr *e)
{
    struct srv_request *r = &p->req;
    long long n = 1, best_of = 0;
    if (get_int(o, "n", 1, SRV_MAX_CHOICES, &n, e) ||
        get_int(o, "best_of", 1, SRV_MAX_CHOICES, &best_of, e) ||
        get_bool(o, "stream", &r->stream, e))
        return KM_EINVAL;
    r->n = (int)n;
    json_t *so = field(o, "stream_options");
    if (!so)
        return KM_OK;
    if (!json_is_object(so))
        return bad(e, "stream_options", "stream_options must be an object");
    if (!r->stream)
        return bad(e, "stream_options", "stream_options can only be defined "
                   "when stream is true");
    bool cont = false;
    r->include_usage = true; /* vLLM: default true when the object is present */
    json_t *iu = json_object_get(so, "include_usage");
    if (iu && !json_is_null(iu) && !json_is_boolean(iu))
        return bad(e, "stream_options.include_usage",
                   "stream_options.include_usage must be a boolean");
    if (json_is_boolean(iu))
        r->include_usage = json_is_true(iu);
    json_t *cu = json_object_get(so, "continuous_usage_stats");
    if (cu && !json_is_null(cu) && !json_is_boolean(cu))
        return bad(e, "stream_options.continuous_usage_stats",
                   "stream_options.continuous_usage_stats must be a boolean");
    (void)cont;
    return KM_OK;
}

static int parse_model(const json_t *o, struct srv_parsed *p,
                       struct srv_perr *e)
{
    const char *m = NULL;
    if (get_str(o, "model", &m, e))
        return KM_EINVAL;
    p->req.model = m;
    p->model_given = m != NULL;
    return KM_OK;
}

/* ---- chat messages ---- */

static int check_data_url(const char *url, const char *param, struct srv_perr *e)
{
    if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0)
        return bad(e, param, "%s: remote image URLs are not fetched by this "
                   "server; send the image as a data: URL", param);
    if (strncmp(url, "data:", 5) != 0)
        return bad(e, param, "%s must be a data: URL", param);
    const char *comma = strchr(url, ',');
    if (!comma)
        return bad(e, param, "%s: a data: URL needs a ',' before its payload",
                   param);
    if (comma - url < 12 || strncmp(comma - 7, ";base64", 7) != 0)
        return bad(e, param, "%s: only base64 data: URLs are supported", param);
    for (const char *q = comma + 1; *q; q++) {
        char ch = *q;
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '+' || ch == '/' ||
                  ch == '=' || ch == '-' || ch == '_' || ch == '\n' || ch == '\r';
        if (!ok)
            return bad(e, param, "%s: invalid base64 character at offset %zu",
                       param, (size_t)(q - comma - 1));
    }
    return KM_OK;
}

static int parse_part(const json_t *it, struct srv_part *out, const char *param,
                      struct srv_perr *e)
{
    char sub[96];
    if (!json_is_object(it))
        return bad(e, param, "%s must be an object", param);
    const char *type = json_string_value(json_object_get(it, "type"));
    snprintf(sub, sizeof sub, "%s.type", param);
    if (!type)
        return bad(e, sub, "%s must be a string", sub);
    if (strcmp(type, "text") == 0) {
        json_t *t = json_object_get(it, "text");
        snprintf(sub, sizeof sub, "%s.text", param);
        if (!json_is_string(t))
            return bad(e, sub, "%s must be a string", sub);
        out->kind = SRV_PART_TEXT;
        out->text = json_string_value(t);
        return KM_OK;
    }
    if (strcmp(type, "image_url") != 0)
        return bad(e, sub, "%s '%s' is not supported (text or image_url)", sub,
                   type);
    json_t *iu = json_object_get(it, "image_url");
    json_t *url = json_is_object(iu) ? json_object_get(iu, "url") : iu;
    snprintf(sub, sizeof sub, "%s.image_url.url", param);
    if (!json_is_string(url))
        return bad(e, sub, "%s must be a string", sub);
    out->kind = SRV_PART_IMAGE;
    out->image_url = json_string_value(url);
    return check_data_url(out->image_url, sub, e);
}

static size_t count_parts(const json_t *msgs)
{
    size_t total = 0, i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        json_t *c = json_object_get(m, "content");
        total += json_is_array(c) ? json_array_size(c) : 1;
    }
    return total;
}

static int parse_message(const json_t *m, size_t i, struct srv_message *out,
                         struct srv_part **parts, struct srv_perr *e)
{
    char param[96];
    snprintf(param, sizeof param, "messages[%zu]", i);
    if (!json_is_object(m))
        return bad(e, param, "%s must be an object", param);
    snprintf(param, sizeof param, "messages[%zu].role", i);
    out->role = json_string_value(json_object_get(m, "role"));
    if (!out->role || !out->role[0])
        return bad(e, param, "%s must be a non-empty string", param);
    json_t *c = json_object_get(m, "content");
    snprintf(param, sizeof param, "messages[%zu].content", i);
    out->parts = *parts;
    out->n_parts = 0;
    if (!c || json_is_null(c))
        return KM_OK;
    if (json_is_string(c)) {
        (*parts)->kind = SRV_PART_TEXT;
        (*parts)->text = json_string_value(c);
        (*parts)++;
        out->n_parts = 1;
        return KM_OK;
    }
    if (!json_is_array(c))
        return bad(e, param, "%s must be a string or an array of content parts",
                   param);
    size_t j;
    json_t *it;
    json_array_foreach(c, j, it) {
        char pp[96];
        snprintf(pp, sizeof pp, "messages[%zu].content[%zu]", i, j);
        if (parse_part(it, *parts, pp, e))
            return KM_EINVAL;
        (*parts)++;
        out->n_parts++;
    }
    return KM_OK;
}

static int parse_messages(const json_t *o, struct srv_parsed *p,
                          struct srv_perr *e)
{
    json_t *msgs = json_object_get(o, "messages");
    if (!msgs || json_is_null(msgs))
        return bad(e, "messages", "messages is required");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return bad(e, "messages", "messages must be a non-empty array");
    size_t n = json_array_size(msgs), np = count_parts(msgs);
    p->msgs = km_calloc(n, sizeof *p->msgs);
    p->parts = km_calloc(np ? np : 1, sizeof *p->parts);
    if (!p->msgs || !p->parts)
        return bad(e, "messages", "out of memory");
    struct srv_part *cursor = p->parts;
    for (size_t i = 0; i < n; i++)
        if (parse_message(json_array_get(msgs, i), i, &p->msgs[i], &cursor, e))
            return KM_EINVAL;
    p->req.messages = p->msgs;
    p->req.n_messages = n;
    return KM_OK;
}

static int parse_chat_logprobs(const json_t *o, struct srv_parsed *p,
                               struct srv_perr *e)
{
    bool lp = false;
    long long top = -1;
    json_t *v = field(o, "logprobs");
    if (v && !json_is_boolean(v))
        return bad(e, "logprobs", "logprobs must be a boolean");
    lp = json_is_true(v);
    if (get_int(o, "top_logprobs", 0, 20, &top, e))
        return KM_EINVAL;
    if (top >= 0 && !lp)
        return bad(e, "top_logprobs", "when using top_logprobs, logprobs must "
                   "be set to true");
    p->chat_logprobs = lp;
    p->req.sampling.logprobs = lp ? (int)(top < 0 ? 0 : top) : -1;
    return KM_OK;
}

/* ---- prompts and inputs: string | [string] | [int] | [[int]] ---- */

static int parse_ids(const json_t *arr, const char *param, struct srv_input *in,
                     int32_t **cursor, struct srv_perr *e)
{
    size_t i;
    json_t *v;
    in->ids = *cursor;
    in->n_ids = json_array_size(arr);
    if (in->n_ids == 0)
        return bad(e, param, "%s must not be an empty list of token ids", param);
    json_array_foreach(arr, i, v) {
        long long x = 0;
        if (int_value(v, param, 0, INT32_MAX, &x, e))
            return KM_EINVAL;
        *(*cursor)++ = (int32_t)x;
    }
    return KM_OK;
}

static size_t count_ids(const json_t *v)
{
    if (!json_is_array(v))
        return 0;
    size_t n = 0, i;
    json_t *it;
    json_array_foreach(v, i, it) n += json_is_array(it) ? json_array_size(it) : 1;
    return n;
}

static int input_kind(const json_t *v, const char *key, size_t *n_inputs,
                      struct srv_perr *e)
{
    if (json_is_string(v)) {
        *n_inputs = 1;
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) == 0)
        return bad(e, key, "%s must be a string, a non-empty array of strings, "
                   "of token ids, or of token id arrays", key), -1;
    json_t *first = json_array_get(v, 0);
    if (json_is_string(first) || json_is_array(first)) {
        *n_inputs = json_array_size(v);
        return json_is_string(first) ? 1 : 2;
    }
    *n_inputs = 1;
    return 3; /* one list of ids */
}

static int parse_inputs(const json_t *o, const char *key, struct srv_parsed *p,
                        struct srv_perr *e)
{
    json_t *v = field(o, key);
    size_t n = 0;
    if (!v)
        return bad(e, key, "%s is required", key);
    int kind = input_kind(v, key, &n, e);
    if (kind < 0)
        return KM_EINVAL;
    if (n > MAX_INPUTS)
        return bad(e, key, "%s may hold at most %d inputs", key, MAX_INPUTS);
    p->inputs = km_calloc(n, sizeof *p->inputs);
    size_t nid = count_ids(v);
    p->ids = km_calloc(nid ? nid : 1, sizeof *p->ids);
    if (!p->inputs || !p->ids)
        return bad(e, key, "out of memory");
    int32_t *cursor = p->ids;
    char param[64];
    if (kind == 0)
        p->inputs[0].text = json_string_value(v);
    if (kind == 3 && parse_ids(v, key, &p->inputs[0], &cursor, e))
        return KM_EINVAL;
    for (size_t i = 0; (kind == 1 || kind == 2) && i < n; i++) {
        json_t *it = json_array_get(v, i);
        snprintf(param, sizeof param, "%s[%zu]", key, i);
        if (kind == 1 && !json_is_string(it))
            return bad(e, param, "%s must be a string", param);
        if (kind == 2 && !json_is_array(it))
            return bad(e, param, "%s must be an array of token ids", param);
        if (kind == 1)
            p->inputs[i].text = json_string_value(it);
        else if (parse_ids(it, param, &p->inputs[i], &cursor, e))
            return KM_EINVAL;
    }
    p->req.inputs = p->inputs;
    p->req.n_inputs = n;
    return KM_OK;
}

/* ---- endpoints ---- */

static int parse_chat(const json_t *o, struct srv_parsed *p, struct srv_perr *e)
{
    p->req.add_generation_prompt = true;
    if (parse_messages(o, p, e) || parse_sampling(o, p, e) ||
        parse_stream(o, p, e) || parse_chat_logprobs(o, p, e) ||
        get_bool(o, "add_generation_prompt", &p->req.add_generation_prompt, e) ||
        get_bool(o, "echo", &p->req.sampling.echo, e))
        return KM_EINVAL;
    return KM_OK;
}

static int parse_completion(const json_t *o, struct srv_parsed *p,
                            struct srv_perr *e)
{
    long long lp = -1;
    if (field(o, "suffix"))
        return bad(e, "suffix", "suffix is not currently supported");
    if (parse_inputs(o, "prompt", p, e) || parse_sampling(o, p, e) ||
        parse_stream(o, p, e) || get_int(o, "logprobs", 0, 20, &lp, e) ||
        get_bool(o, "echo", &p->req.sampling.echo, e))
        return KM_EINVAL;
    p->req.sampling.logprobs = (int)lp;
    return KM_OK;
}

static int parse_embedding(const json_t *o, struct srv_parsed *p,
                           struct srv_perr *e)
{
    const char *fmt = NULL;
    long long dims = 0;
    if (parse_inputs(o, "input", p, e) ||
        get_str(o, "encoding_format", &fmt, e) ||
        get_int(o, "dimensions", 1, 1 << 20, &dims, e))
        return KM_EINVAL;
    if (fmt && strcmp(fmt, "float") && strcmp(fmt, "base64"))
        return bad(e, "encoding_format", "encoding_format must be float or "
                   "base64 (got '%s')", fmt);
    p->emb_base64 = fmt && strcmp(fmt, "base64") == 0;
    p->req.dimensions = (int)dims;
    return KM_OK;
}

int srv__parse_request(enum srv_endpoint ep, const char *body, size_t len,
                       struct srv_parsed *out, struct srv_perr *e)
{
    memset(out, 0, sizeof *out);
    int rc = srv__parse_object(body, len, &out->root, e);
    if (rc)
        return rc;
    struct srv_request *r = &out->req;
    r->ep = ep;
    r->n = 1;
    r->truncate_prompt_tokens = -1;
    r->body = body;
    r->body_len = len;
    sampling_defaults(&r->sampling, ep);
    long long trunc = -1;
    rc = parse_model(out->root, out, e);
    if (!rc)
        rc = check_typed(out->root, e);
    if (!rc)
        rc = get_int(out->root, "truncate_prompt_tokens", -1, INT32_MAX,
                     &trunc, e);
    r->truncate_prompt_tokens = (long)trunc;
    if (!rc && ep == SRV_EP_CHAT)
        rc = parse_chat(out->root, out, e);
    else if (!rc && ep == SRV_EP_COMPLETION)
        rc = parse_completion(out->root, out, e);
    else if (!rc)
        rc = parse_embedding(out->root, out, e);
    if (rc)
        srv__parsed_free(out);
    return rc;
}

void srv__parsed_free(struct srv_parsed *p)
{
    km_free(p->msgs);
    km_free(p->parts);
    km_free(p->inputs);
    km_free(p->ids);
    km_free(p->stop);
    km_free(p->stop_ids);
    km_free(p->bias);
    if (p->root)
        json_decref(p->root);
    memset(p, 0, sizeof *p);
}

int srv__parse_tokenize(const char *body, size_t len, struct srv_parsed *out,
                        bool *add_special, struct srv_perr *e)
{
    memset(out, 0, sizeof *out);
    int rc = srv__parse_object(body, len, &out->root, e);
    if (rc)
        return rc;
    out->req.add_generation_prompt = true;
    *add_special = true;
    rc = parse_model(out->root, out, e);
    if (!rc)
        rc = get_bool(out->root, "add_special_tokens", add_special, e);
    if (!rc)
        rc = get_bool(out->root, "add_generation_prompt",
                      &out->req.add_generation_prompt, e);
    if (!rc && field(out->root, "messages"))
        rc = parse_messages(out->root, out, e);
    else if (!rc && !json_is_string(field(out->root, "prompt")))
        rc = bad(e, "prompt", "prompt must be a string (or give messages)");
    else if (!rc)
        rc = parse_inputs(out->root, "prompt", out, e);
    if (rc)
        srv__parsed_free(out);
    return rc;
}

int srv__parse_detokenize(const char *body, size_t len,
                          struct srv_parsed *out, struct srv_perr *e)
{
    memset(out, 0, sizeof *out);
    int rc = srv__parse_object(body, len, &out->root, e);
    if (rc)
        return rc;
    json_t *t = field(out->root, "tokens");
    rc = parse_model(out->root, out, e);
    if (!rc && !json_is_array(t))
        rc = bad(e, "tokens", "tokens must be an array of integers");
    if (!rc && json_array_size(t) && !json_is_integer(json_array_get(t, 0)))
        rc = bad(e, "tokens", "tokens must be an array of integers");
    if (!rc && json_array_size(t) == 0) {
        out->inputs = km_calloc(1, sizeof *out->inputs);
        out->req.inputs = out->inputs;
        out->req.n_inputs = out->inputs ? 1 : 0;
    } else if (!rc) {
        rc = parse_inputs(out->root, "tokens", out, e);
    }
    if (rc)
        srv__parsed_free(out);
    return rc;
}
