/* oai_render.c - OpenAI/vLLM response bodies: the error envelope, model
 * lists, whole chat/completion/embedding responses, and the SSE chunk
 * objects of a stream. Everything is built with jansson and serialized
 * compactly; callers own the json_t they receive. */
#include "server/server_int.h"

#include "base/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *srv__error_type(int status)
{
    switch (status) {
    case 400: return "BadRequestError";
    case 401: return "AuthenticationError";
    case 403: return "PermissionDeniedError";
    case 404: return "NotFoundError";
    case 405: return "MethodNotAllowedError";
    case 408: return "RequestTimeoutError";
    case 413: return "RequestEntityTooLargeError";
    case 415: return "UnsupportedMediaTypeError";
    case 429: return "RateLimitError";
    case 499: return "ClientClosedRequest";
    case 501: return "NotImplementedError";
    case 502: return "BadGatewayError";
    case 503: return "ServiceUnavailableError";
    case 504: return "GatewayTimeoutError";
    default: return status >= 500 ? "InternalServerError" : "BadRequestError";
    }
}

static void set_body(struct srv_reply *r, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    km_buf_reset(&r->body);
    if (s) {
        km_buf_puts(&r->body, s);
        free(s); /* jansson's allocator */
    }
}

void srv__reply_json(struct srv_reply *r, int status, json_t *j)
{
    r->status = status;
    r->ctype = "application/json";
    if (!j) {
        r->status = 500;
        km_buf_reset(&r->body);
        km_buf_puts(&r->body, "{\"error\":{\"message\":\"out of memory\","
                    "\"type\":\"InternalServerError\",\"param\":null,"
                    "\"code\":500}}");
        return;
    }
    set_body(r, j);
    json_decref(j);
}

static json_t *error_json(int status, const char *type, const char *param,
                          const char *msg)
{
    return json_pack("{s:{s:s,s:s,s:o,s:i}}", "error", "message", msg, "type",
                     type, "param",
                     param && param[0] ? json_string(param) : json_null(),
                     "code", status);
}

void srv__reply_error(struct srv_reply *r, int status, const char *param,
                      const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* jansson rejects invalid UTF-8; messages may quote client bytes */
    json_t *j = error_json(status, srv__error_type(status), param, msg);
    if (!j)
        j = error_json(status, srv__error_type(status), param,
                       "the request was rejected");
    srv__reply_json(r, status, j);
}

json_t *srv__render_usage(const struct srv_usage *u)
{
    return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)u->prompt_tokens,
                     "total_tokens",
                     (json_int_t)(u->prompt_tokens + u->completion_tokens),
                     "completion_tokens", (json_int_t)u->completion_tokens);
}

json_t *srv__render_models(const struct srv_model_info *m, size_t n)
{
    json_t *data = json_array();
    for (size_t i = 0; i < n && data; i++) {
        json_t *it = json_pack("{s:s,s:s,s:I,s:s,s:s,s:o,s:I,s:[]}", "id",
                               m[i].id, "object", "model", "created",
                               (json_int_t)m[i].created, "owned_by",
                               m[i].owned_by[0] ? m[i].owned_by : "kanoa-mlops",
                               "root", m[i].id, "parent", json_null(),
                               "max_model_len", (json_int_t)m[i].max_model_len,
                               "permission");
        if (it)   /* the model's task (arch): "generate" or "embed" */
            json_object_set_new(it, "task", json_string(m[i].task == SRV_TASK_EMBED
                                                        ? "embed" : "generate"));
        if (it)
            json_array_append_new(data, it);
    }
    return json_pack("{s:s,s:o}", "object", "list", "data", data);
}

/* bytes: the UTF-8 bytes of a token as an array of ints (OpenAI logprobs). */
static json_t *bytes_array(const char *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n && a; i++)
        json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

static json_t *token_string(const char *s, size_t n)
{
    json_t *t = json_stringn(s, n);
    return t ? t : json_string("");
}

json_t *srv__logprob_entry(const struct srv_logprobs *lp)
{
    json_t *top = json_array();
    for (size_t i = 0; i < lp->n_top && top; i++) {
        const struct srv_top_logprob *t = &lp->top[i];
        json_array_append_new(top, json_pack("{s:o,s:f,s:o}", "token",
                                             token_string(t->token, t->token_len),
                                             "logprob", (double)t->logprob,
                                             "bytes",
                                             bytes_array(t->token, t->token_len)));
    }
    return json_pack("{s:o,s:f,s:o,s:o}", "token",
                     token_string(lp->token, lp->token_len), "logprob",
                     (double)lp->logprob, "bytes",
                     bytes_array(lp->token, lp->token_len), "top_logprobs", top);
}

/* Chat logprobs {"content":[...]}; completion logprobs in the legacy form. */
static json_t *choice_logprobs(const struct srv_call *c, json_t *entries)
{
    if (!entries)
        return json_null();
    if (c->parsed.req.ep == SRV_EP_CHAT)
        return json_pack("{s:O}", "content", entries);
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array();
    json_t *offs = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e) {
        json_array_append(tokens, json_object_get(e, "token"));
        json_array_append(lps, json_object_get(e, "logprob"));
        json_t *off = json_object_get(e, "text_offset");
        json_array_append_new(offs, off ? json_incref(off) : json_integer(0));
        json_t *m = json_object(), *t;
        size_t k;
        json_array_foreach(json_object_get(e, "top_logprobs"), k, t)
            json_object_set(m, json_string_value(json_object_get(t, "token")),
                            json_object_get(t, "logprob"));
        json_array_append_new(tops, m);
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs",
                     lps, "top_logprobs", tops, "text_offset", offs);
}

static json_t *finish_value(const char *f)
{
    return f && f[0] ? json_string(f) : json_null();
}

static json_t *final_choice(struct srv_call *c, int i)
{
    struct srv_choice *ch = &c->choice[i];
    json_t *text = json_stringn(km_buf_str(&ch->text), ch->text.len);
    if (!text)
        text = json_string("");
    json_t *lp = choice_logprobs(c, ch->lp);
    if (c->parsed.req.ep == SRV_EP_CHAT)
        return json_pack("{s:i,s:{s:s,s:o,s:[]},s:o,s:o,s:n}", "index", i,
                         "message", "role", "assistant", "content", text,
                         "tool_calls", "logprobs", lp, "finish_reason",
                         finish_value(ch->finish), "stop_reason");
    return json_pack("{s:i,s:o,s:o,s:o,s:n}", "index", i, "text", text,
                     "logprobs", lp, "finish_reason", finish_value(ch->finish),
                     "stop_reason");
}

static json_t *render_embeddings(struct srv_call *c)
{
    json_t *data = json_array();
    size_t n = c->parsed.req.n_inputs;
    for (size_t i = 0; i < n && data; i++) {
        const float *v = c->emb + i * c->emb_dim;
        json_t *vec;
        if (c->parsed.emb_base64) {
            size_t blen = c->emb_dim * 4;
            char *b64 = km_malloc(blen / 3 * 4 + 8);
            static const char tab[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            const unsigned char *src = (const unsigned char *)v;
            size_t o = 0;
            for (size_t k = 0; b64 && k < blen; k += 3) {
                unsigned x = (unsigned)src[k] << 16;
                if (k + 1 < blen) x |= (unsigned)src[k + 1] << 8;
                if (k + 2 < blen) x |= src[k + 2];
                b64[o++] = tab[(x >> 18) & 63];
                b64[o++] = tab[(x >> 12) & 63];
                b64[o++] = k + 1 < blen ? tab[(x >> 6) & 63] : '=';
                b64[o++] = k + 2 < blen ? tab[x & 63] : '=';
            }
            vec = b64 ? json_stringn(b64, o) : NULL;
            km_free(b64);
        } else {
            vec = json_array();
            for (size_t k = 0; k < c->emb_dim && vec; k++)
                json_array_append_new(vec, json_real(v[k]));
        }
        json_array_append_new(data, json_pack("{s:s,s:I,s:o}", "object",
                                              "embedding", "index",
                                              (json_int_t)i, "embedding", vec));
    }
    struct srv_usage u = c->usage;
    u.completion_tokens = 0;
    return json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", c->id, "object", "list",
                     "created", (json_int_t)c->created, "model", c->model,
                     "data", data, "usage", srv__render_usage(&u));
}

json_t *srv__render_final(struct srv_call *c)
{
    enum srv_endpoint ep = c->parsed.req.ep;
    if (ep == SRV_EP_EMBEDDING)
        return render_embeddings(c);
    json_t *choices = json_array();
    for (int i = 0; i < c->parsed.req.n && choices; i++)
        json_array_append_new(choices, final_choice(c, i));
    return json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", c->id, "object",
                     ep == SRV_EP_CHAT ? "chat.completion" : "text_completion",
                     "created", (json_int_t)c->created, "model", c->model,
                     "choices", choices, "usage", srv__render_usage(&c->usage));
}

int srv__sse_event(struct km_buf *out, json_t *j)
{
    if (!j)
        return KM_ENOMEM;
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s)
        return KM_ENOMEM;
    int rc = km_buf_puts(out, "data: ");
    if (!rc)
        rc = km_buf_puts(out, s);
    if (!rc)
        rc = km_buf_puts(out, "\n\n");
    free(s);
    return rc;
}

json_t *srv__chunk(struct srv_call *c, int index, const char *text, size_t len,
                   bool role, json_t *lp, const char *finish)
{
    bool chat = c->parsed.req.ep == SRV_EP_CHAT;
    json_t *t = json_stringn(text ? text : "", text ? len : 0);
    if (!t)
        t = json_string("");
    json_t *lpv = lp ? choice_logprobs(c, lp) : json_null();
    json_t *choice;
    if (chat) {
        json_t *delta = json_object();
        if (role)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (role || len || !finish)
            json_object_set_new(delta, "content", t);
        else
            json_decref(t);
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", index, "delta", delta,
                           "logprobs", lpv, "finish_reason", finish_value(finish));
    } else {
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", index, "text", t,
                           "logprobs", lpv, "finish_reason", finish_value(finish));
    }
    return json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", c->id, "object",
                     chat ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)c->created, "model", c->model,
                     "choices", choice);
}

json_t *srv__usage_chunk(struct srv_call *c)
{
    bool chat = c->parsed.req.ep == SRV_EP_CHAT;
    return json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", c->id, "object",
                     chat ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)c->created, "model", c->model,
                     "choices", "usage", srv__render_usage(&c->usage));
}
