/* router.c - the route table (built-in endpoints, then routes added with
 * srv_server_add_route) and the endpoints answered synchronously on the HTTP
 * thread: /health, /version, /v1/models, /metrics, /tokenize, /detokenize and
 * the added JSON routes. Generation and embedding routes go through call.c. */
#include "server/server_int.h"

#include "base/mem.h"
#include "base/version.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *method, *path;
} builtin[SRV_R_BUILTIN] = {
    [SRV_R_HEALTH] = {"GET", "/health"},
    [SRV_R_VERSION] = {"GET", "/version"},
    [SRV_R_MODELS] = {"GET", "/v1/models"},
    [SRV_R_METRICS] = {"GET", "/metrics"},
    [SRV_R_TOKENIZE] = {"POST", "/tokenize"},
    [SRV_R_DETOKENIZE] = {"POST", "/detokenize"},
    [SRV_R_CHAT] = {"POST", "/v1/chat/completions"},
    [SRV_R_COMPLETIONS] = {"POST", "/v1/completions"},
    [SRV_R_EMBEDDINGS] = {"POST", "/v1/embeddings"},
};

int srv__route_find(struct srv_server *s, const char *path)
{
    for (int i = 0; i < SRV_R_BUILTIN; i++)
        if (strcmp(builtin[i].path, path) == 0)
            return i;
    for (int i = 0; i < s->n_routes; i++)
        if (strcmp(s->routes[i].path, path) == 0)
            return SRV_R_BUILTIN + i;
    return -1;
}

const char *srv__route_path(struct srv_server *s, int route)
{
    if (route >= 0 && route < SRV_R_BUILTIN)
        return builtin[route].path;
    if (route >= SRV_R_BUILTIN && route - SRV_R_BUILTIN < s->n_routes)
        return s->routes[route - SRV_R_BUILTIN].path;
    if (route == SRV_MAX_ROUTES)
        return "none";
    return NULL;
}

const char *srv__route_method(struct srv_server *s, int route)
{
    if (route >= 0 && route < SRV_R_BUILTIN)
        return builtin[route].method;
    if (route >= SRV_R_BUILTIN && route - SRV_R_BUILTIN < s->n_routes)
        return s->routes[route - SRV_R_BUILTIN].method;
    return "GET";
}

bool srv__route_is_builtin_async(int route)
{
    return route == SRV_R_CHAT || route == SRV_R_COMPLETIONS ||
           route == SRV_R_EMBEDDINGS;
}

int srv_server_add_route(struct srv_server *s, const char *method,
                         const char *path, srv_route_fn fn, void *ud,
                         struct km_err *err)
{
    if (strcmp(method, "GET") && strcmp(method, "POST"))
        return km_fail(err, KM_EINVAL, "route %s: method %s is not GET or POST",
                       path, method);
    if (path[0] != '/' || strlen(path) >= sizeof s->routes[0].path)
        return km_fail(err, KM_EINVAL, "route '%s': not an absolute path of "
                       "at most %zu bytes", path, sizeof s->routes[0].path - 1);
    if (srv__route_find(s, path) >= 0)
        return km_fail(err, KM_EINVAL, "route %s is already registered", path);
    if (s->n_routes >= SRV_MAX_ROUTES - SRV_R_BUILTIN)
        return km_fail(err, KM_ERANGE, "route %s: too many routes", path);
    struct srv_route *r = &s->routes[s->n_routes];
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->path, sizeof r->path, "%s", path);
    r->fn = fn;
    r->ud = ud;
    s->n_routes++;
    return KM_OK;
}

/* ---- endpoints ---- */

static void health(struct srv_call *c, struct srv_reply *r)
{
    double progress = 1;
    if (srv__health(c->srv, &progress) == 0) {
        srv__reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
        return;
    }
    srv__reply_json(r, 503, json_pack("{s:s,s:f}", "status", "loading",
                                      "progress", progress));
}

static void models(struct srv_call *c, struct srv_reply *r)
{
    km_buf_reset(&r->body);
    if (srv__models_json(c->srv, &r->body)) {
        srv__reply_error(r, 500, NULL, "out of memory listing models");
        return;
    }
    r->status = 200;
    r->ctype = "application/json";
}

static void metrics(struct srv_call *c, struct srv_reply *r)
{
    struct srv_model_info info;
    /* make every served model appear, with zeros, before its first request */
    for (int i = 0;; i++) {
        char id[256];
        if (!srv__model_at(c->srv, i, id, sizeof id))
            break;
        srv__metrics_model(c->srv->metrics, id);
    }
    (void)info;
    km_buf_reset(&r->body);
    srv__metrics_render(c->srv->metrics, c->srv, &r->body);
    r->status = 200;
    r->ctype = "text/plain; version=0.0.4; charset=utf-8";
}

/* Backend for /tokenize and /detokenize: by model, else the only one. */
/* The model /tokenize uses when the request names none: the only generative
 * model, or, on a server with no generative model, the only embedder. */
static bool default_token_model(struct srv_call *c)
{
    c->model[0] = '\0';
    if (srv__default_model(c->srv, SRV_TASK_GENERATE, c->model, sizeof c->model))
        return true;
    if (c->model[0])    /* several generative models: ambiguous */
        return false;
    return srv__default_model(c->srv, SRV_TASK_EMBED, c->model, sizeof c->model);
}

static struct srv_backend *token_backend(struct srv_call *c,
                                         const struct srv_parsed *p,
                                         struct srv_reply *r,
                                         struct srv_model_info *info)
{
    if (p->req.model) {
        snprintf(c->model, sizeof c->model, "%s", p->req.model);
    } else if (!default_token_model(c)) {
        srv__reply_error(r, 400, "model",
                         "model is required: this server has several models");
        return NULL;
    }
    struct srv_backend *be = srv__find_model(c->srv, c->model, info);
    if (!be)
        srv__reply_error(r, 404, "model", "The model `%s` does not exist.",
                         c->model);
    return be;
}

static void tokenize(struct srv_call *c, struct srv_reply *r)
{
    struct srv_parsed p;
    struct srv_perr pe = {0};
    bool add_special = true;
    if (srv__parse_tokenize(c->body.data ? c->body.data : "", c->body.len, &p,
                            &add_special, &pe)) {
        srv__reply_error(r, pe.status, pe.param, "%s", pe.msg);
        return;
    }
    struct srv_model_info info;
    struct srv_backend *be = token_backend(c, &p, r, &info);
    int32_t *ids = NULL;
    size_t n = 0;
    struct km_err err;
    km_err_clear(&err);
    if (be && !be->ops->tokenize) {
        srv__reply_error(r, 501, NULL, "model `%s` does not support /tokenize",
                         c->model);
    } else if (be && be->ops->tokenize(be->impl, c->model,
                                       p.req.messages ? NULL : p.req.inputs[0].text,
                                       p.req.messages, p.req.n_messages,
                                       add_special, p.req.add_generation_prompt,
                                       &ids, &n, &err)) {
        srv__reply_error(r, 400, NULL, "%s", km_err_text(&err));
    } else if (be) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n && arr; i++)
            json_array_append_new(arr, json_integer(ids[i]));
        srv__reply_json(r, 200, json_pack("{s:I,s:I,s:o,s:n}", "count",
                                          (json_int_t)n, "max_model_len",
                                          (json_int_t)info.max_model_len,
                                          "tokens", arr, "token_strs"));
    }
    km_free(ids);
    srv__parsed_free(&p);
}

static void detokenize(struct srv_call *c, struct srv_reply *r)
{
    struct srv_parsed p;
    struct srv_perr pe = {0};
    if (srv__parse_detokenize(c->body.data ? c->body.data : "", c->body.len, &p,
                              &pe)) {
        srv__reply_error(r, pe.status, pe.param, "%s", pe.msg);
        return;
    }
    struct srv_model_info info;
    struct srv_backend *be = token_backend(c, &p, r, &info);
    char *text = NULL;
    struct km_err err;
    km_err_clear(&err);
    if (be && !be->ops->detokenize) {
        srv__reply_error(r, 501, NULL, "model `%s` does not support /detokenize",
                         c->model);
    } else if (be && be->ops->detokenize(be->impl, c->model, p.req.inputs[0].ids,
                                         p.req.inputs[0].n_ids, &text, &err)) {
        srv__reply_error(r, 400, "tokens", "%s", km_err_text(&err));
    } else if (be) {
        json_t *t = json_string(text ? text : ""); /* valid UTF-8 (lossy) */
        if (!t) /* out of memory */
            t = json_string("");
        srv__reply_json(r, 200, json_pack("{s:o}", "prompt", t));
    }
    km_free(text);
    srv__parsed_free(&p);
}

static void custom(struct srv_call *c, struct srv_reply *r)
{
    struct srv_route *rt = &c->srv->routes[c->route - SRV_R_BUILTIN];
    json_t *body = NULL;
    struct srv_perr pe = {0};
    if (!strcmp(rt->method, "POST") &&
        srv__parse_object(c->body.data ? c->body.data : "", c->body.len, &body,
                          &pe)) {
        srv__reply_error(r, pe.status, pe.param, "%s", pe.msg);
        return;
    }
    struct srv_route_req req = {.body = body, .request_id = c->request_id};
    struct srv_route_resp resp = {.status = 200, .body = &r->body};
    km_buf_reset(&r->body);
    rt->fn(rt->ud, &req, &resp);
    if (resp.status < 400 && resp.raw) {
        r->status = resp.status;
        r->ctype = "application/json";
    } else if (resp.status >= 400) {
        if (resp.json)
            json_decref(resp.json);
        srv__reply_error(r, resp.status, resp.param, "%s",
                         resp.message[0] ? resp.message : "request failed");
    } else {
        srv__reply_json(r, resp.status, resp.json ? resp.json : json_object());
    }
    if (body)
        json_decref(body);
}

void srv__route_sync(struct srv_call *c, struct srv_reply *r)
{
    switch (c->route) {
    case SRV_R_HEALTH: health(c, r); break;
    case SRV_R_VERSION:
        srv__reply_json(r, 200, json_pack("{s:s}", "version", KM_VERSION));
        break;
    case SRV_R_MODELS: models(c, r); break;
    case SRV_R_METRICS: metrics(c, r); break;
    case SRV_R_TOKENIZE: tokenize(c, r); break;
    case SRV_R_DETOKENIZE: detokenize(c, r); break;
    default: custom(c, r); break;
    }
}
