/* backend_local.h - the "local" srv_backend: models run by the embedded CPU
 * engine (engine/engine.h) behind the server's backend interface.
 *
 * srv_backend_local_new opens every cfg->models entry (a .gguf path) in the
 * background, named by the cfg->served_names entry at the same position or
 * the file stem, with cfg->threads / cfg->ctx / cfg->chat_template. It
 * returns at once: list_models shows the models while they load, health()
 * reports loading with the average progress, submit() answers KM_ESTATE
 * (HTTP 503) until a model is ready. A model that fails to load is logged
 * and stays unavailable (health stays "loading": the operator must act).
 *
 * Requests: chat messages go through the model's chat template (image parts
 * are rejected with KM_EUNSUPPORTED: the models are text-only); completions
 * take one prompt as text or token ids; n > 1 runs n sequences (seeds
 * seed, seed+1, ...). prompt + max_tokens over the context is KM_ERANGE
 * naming the three numbers. /v1/embeddings is KM_EUNSUPPORTED.
 *
 * Ownership: the backend owns its engine models; destroy() closes them
 * (aborting generations still running). Thread-safety: as backend.h.
 */
#ifndef SRV_BACKEND_LOCAL_H
#define SRV_BACKEND_LOCAL_H

#include "server/backend.h"
#include "server/server.h"

int srv_backend_local_new(const struct srv_config *cfg, struct srv_backend *out,
                          struct km_err *err);

#endif
