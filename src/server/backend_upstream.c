/* backend_upstream.c - the "upstream" srv_backend: routes a request to a
 * replica of the pool (upstream.h) and passes the upstream's answer through
 * on_raw_head/on_raw. Its health() is always ready (see ub_health). The
 * pool is owned by the backend and freed by destroy. */
#include "server/upstream.h"

#include <string.h>

static size_t ub_list_models(void *impl, struct srv_model_info *out, size_t cap)
{
    return ups_pool_models(impl, out, cap);
}

/* Always ready: an upstream outage shows in kanoa_upstream_healthy and as
 * 503s naming the upstream for its models, not as the gateway's own /health
 * failing (which would take local models and other upstreams out of a load
 * balancer too). The pool has run its first probe round before this
 * backend exists. */
static int ub_health(void *impl, double *progress)
{
    (void)impl;
    if (progress)
        *progress = 1.0;
    return 0;
}

static int ub_submit(void *impl, const struct srv_request *req,
                     const struct srv_sink *sink, struct srv_job **job,
                     struct km_err *err)
{
    return ups_job_submit(impl, req, sink, req->session, job, err);
}

static void ub_cancel(void *impl, struct srv_job *job)
{
    ups_job_cancel(impl, job);
}

static void ub_release(void *impl, struct srv_job *job)
{
    ups_job_release(impl, job);
}

static int ub_tokenize(void *impl, const char *model, const char *text,
                       const struct srv_message *messages, size_t n_messages,
                       bool add_special, bool add_generation_prompt,
                       int32_t **ids, size_t *n_ids, struct km_err *err)
{
    return ups_tokenize(impl, model, text, messages, n_messages, add_special,
                        add_generation_prompt, ids, n_ids, err);
}

static int ub_detokenize(void *impl, const char *model, const int32_t *ids,
                         size_t n_ids, char **text, struct km_err *err)
{
    return ups_detokenize(impl, model, ids, n_ids, text, err);
}

static int ub_metrics(void *impl, struct km_buf *out)
{
    return ups_pool_metrics(impl, out);
}

static void ub_destroy(void *impl)
{
    ups_pool_free(impl);
}

static const struct srv_backend_ops upstream_ops = {
    .kind = "upstream",
    .list_models = ub_list_models,
    .health = ub_health,
    .submit = ub_submit,
    .cancel = ub_cancel,
    .release = ub_release,
    .tokenize = ub_tokenize,
    .detokenize = ub_detokenize,
    .kv_cache_usage = NULL,
    .destroy = ub_destroy,
    .metrics = ub_metrics,
};

int srv_backend_upstream_new(struct ups_pool *pool, struct srv_backend *out,
                             struct km_err *err)
{
    if (!pool)
        return km_fail(err, KM_EINVAL, "upstream backend: no pool");
    memset(out, 0, sizeof *out);
    out->ops = &upstream_ops;
    out->impl = pool;
    return KM_OK;
}
