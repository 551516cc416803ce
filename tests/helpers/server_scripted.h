/* server_scripted.h - a scripted backend for the server's tests (linked into
 * test binaries only; the shipped binary contains no fake model).
 *
 * Models: "scripted-chat" (generate, vision, max_model_len 4096) and
 * "scripted-embed" (embeddings), created 1700000000, owned_by "kanoa-test".
 * A generation replies "Hello", ",", " world", "!" (one token each) unless the
 * last user text holds a directive:
 *   [tokens:N]  reply N tokens "t0 ", "t1 ", ...
 *   [delay:MS]  sleep MS milliseconds before each token
 *   [error:NNN] fail with on_error(NNN) after the first token
 *   [reject]    submit() fails with KM_EINVAL "scripted rejection"
 *   [hang]      emit nothing until canceled (then on_done, "abort")
 * max_tokens caps the reply (finish "length"), else finish is "stop".
 * usage.prompt_tokens = whitespace-separated words of all text parts plus one
 * per image; completion_tokens = tokens emitted. Embeddings have dimension
 * `dimensions` (4 by default), vec[k] = (strlen(text) or n_ids) + k) / 10.
 * tokenize: one id per byte; detokenize: bytes back.
 * Thread-safety: as backend.h requires; counters are atomics. */
#ifndef SERVER_SCRIPTED_H
#define SERVER_SCRIPTED_H

#include "server/backend.h"

struct scripted_stats {
    long submitted, canceled, released, active;
};

struct srv_backend scripted_backend_new(void);
/* progress < 0: ready; else health() reports loading with this progress. */
void scripted_set_loading(struct srv_backend *b, double progress);
void scripted_get_stats(struct srv_backend *b, struct scripted_stats *out);

#endif
