/* local_embed.h - /v1/embeddings for the "local" backend (owned by "arch").
 *
 * local_embed_start validates and tokenizes a request's inputs for an
 * embedding model (engine task ENG_TASK_EMBED) and runs eng_embed for all of
 * them on a thread of its own (one forward pass packs as many whole inputs
 * as fit), or on the calling thread before it returns when req->blocking.
 * That thread then calls sink->on_embedding once per input in
 * order and exactly one terminal callback: on_done with usage.prompt_tokens
 * = all input tokens, or on_error(500, ...) on an engine failure.
 *
 * Inputs: text is tokenized with the model's special framing ([CLS] ..
 * [SEP]); token-id arrays are used as given. An input longer than the
 * model's context is KM_ERANGE (HTTP 400) unless truncate_prompt_tokens k
 * is given: text keeps its first k-1 tokens and its final [SEP], id arrays
 * their first k. dimensions d: nomic-bert (Matryoshka-trained) accepts
 * 1 <= d <= n_embd (the vector is cut to d and L2-normalized again); other
 * models accept only d = n_embd; anything else is KM_EINVAL (HTTP 400).
 * A generation model is KM_EUNSUPPORTED naming the model and its task.
 *
 * Ownership: the request and sink must outlive the terminal callback (as
 * backend.h); local_embed_free joins the thread (call it after the terminal
 * callback) and frees the job. Thread-safety: one job per call; the engine
 * serializes forward passes per model.
 */
#ifndef SRV_LOCAL_EMBED_H
#define SRV_LOCAL_EMBED_H

#include "base/err.h"
#include "engine/engine.h"
#include "server/backend.h"

struct local_embed;

/* Task of a GGUF file from general.architecture (bert, nomic-bert -> embed);
 * SRV_TASK_GENERATE when unreadable (the load then reports the error). */
enum srv_task local_embed_file_task(const char *path);

int local_embed_start(struct eng_model *m, const char *name,
                      const struct srv_request *req, const struct srv_sink *sink,
                      struct local_embed **out, struct km_err *err);
void local_embed_free(struct local_embed *e);   /* accepts NULL */

#endif
