/* retrieve.h - POST /v1/retrieve: the knowledge base behind `serve`.
 *
 * Request: {"collection": C, "query": Q, "k": 5, "mode": "vector"|"text"|
 * "hybrid", "filter": {"key": "value", ...}} (k, mode and filter optional;
 * filter values are strings, numbers or booleans, compared as text).
 * Reply: {"data": [{"text", "score" (0..1), "source_uri", "chunk_id",
 * "metadata"}...]}, best first. Errors use the OpenAI envelope: 400 for a bad
 * field or an embedding model this server does not serve, 404 for an unknown
 * collection, 502/503 when the embedding backend or the database fails.
 *
 * The query is embedded with the collection's embedding model, looked up
 * among the models this server serves (local engine or upstream), by
 * submitting an embeddings request to that backend and waiting for it (a
 * local model runs on the handler's thread: srv_request.blocking).
 * Database connections are pooled (one per concurrent request, kept open).
 *
 * Ownership: srv_retrieve_new registers the route on `s` (before
 * srv_server_start) and returns a context; free it with srv_retrieve_free
 * only after srv_server_free (the route handler uses it until then).
 * Thread-safety: the handler runs on any HTTP thread concurrently.
 */
#ifndef SRV_RETRIEVE_H
#define SRV_RETRIEVE_H

#include "base/err.h"
#include "server/server.h"

struct srv_retrieve;

int srv_retrieve_new(struct srv_server *s, const char *database_url,
                     struct srv_retrieve **out, struct km_err *err);
void srv_retrieve_free(struct srv_retrieve *r);

#endif
