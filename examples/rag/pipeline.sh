#!/bin/bash
# examples/rag/pipeline.sh - the knowledge base end to end:
#   1. start the embedded PostgreSQL + pgvector   (kanoa-mlops db start)
#   2. serve the embedding and chat models with /v1/retrieve
#   3. ingest a folder                             (kanoa-mlops rag ingest)
#   4. query it from the CLI and over HTTP         (rag query, POST /v1/retrieve)
#   5. ask the chat model with the retrieved context (curl; ask.mjs: openai SDK)
#
# Configure with environment variables (defaults in brackets):
#   KANOA          the binary                          [kanoa-mlops]
#   DOCS           folder to ingest                    [examples/rag/docs]
#   COLLECTION     collection name                     [example]
#   EMBED_GGUF     a GGUF embedding model for the local engine: a file or a
#                  cached org/repo[:FILE] (kanoa-mlops pull). When set, ingest
#                  and query embed in-process and serve loads it with --model;
#                  EMBED_BASE/EMBED_MODEL are not used      []
#   EMBED_BASE     else: OpenAI-compatible server with the embedding model,
#                  without /v1 (vLLM --runner pooling, TEI, Ollama, llama.cpp)
#                                                      [http://127.0.0.1:8001]
#   EMBED_MODEL    its model id                        [BAAI/bge-small-en-v1.5]
#   CHAT_BASE      server with the chat model          [http://127.0.0.1:8002]
#   CHAT_MODEL     its model id; empty = skip step 5   []
#   PORT           port of kanoa-mlops serve           [8000]
#   QUESTION       the question                        [What does ROC AUC measure?]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
KANOA=${KANOA:-kanoa-mlops}
DOCS=${DOCS:-$here/docs}
COLLECTION=${COLLECTION:-example}
EMBED_GGUF=${EMBED_GGUF:-}
EMBED_BASE=${EMBED_BASE:-http://127.0.0.1:8001}
EMBED_MODEL=${EMBED_MODEL:-BAAI/bge-small-en-v1.5}
CHAT_BASE=${CHAT_BASE:-http://127.0.0.1:8002}
CHAT_MODEL=${CHAT_MODEL:-}
PORT=${PORT:-8000}
QUESTION=${QUESTION:-What does ROC AUC measure?}

echo "== 1. database"
export KANOA_DATABASE_URL=$("$KANOA" db start -q)
echo "$KANOA_DATABASE_URL"

echo "== 2. serve (embeddings${CHAT_MODEL:+ and chat}, /v1/retrieve)"
if [ -n "$EMBED_GGUF" ]; then
    models=(--model "$EMBED_GGUF")             # the local engine, in serve
else
    models=(--upstream "embed=$EMBED_BASE,embed=$EMBED_MODEL")
fi
[ -n "$CHAT_MODEL" ] && models+=(--upstream "chat=$CHAT_BASE,models=$CHAT_MODEL")
"$KANOA" serve --host 127.0.0.1 --port "$PORT" --database-url "$KANOA_DATABASE_URL" "${models[@]}" &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null' EXIT
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
    sleep 0.2
done
API=http://127.0.0.1:$PORT/v1

if [ -n "$EMBED_GGUF" ]; then
    # in-process; the collection records the name serve gives the file (its stem)
    embed=(--embed-model "$EMBED_GGUF")
    echo "== 3. ingest $DOCS (embeddings from $EMBED_GGUF in this process)"
    "$KANOA" rag ingest "$DOCS" --collection "$COLLECTION" "${embed[@]}"
else
    embed=(--embed-url "$API")
    echo "== 3. ingest $DOCS (embeddings from $EMBED_MODEL through serve)"
    "$KANOA" rag ingest "$DOCS" --collection "$COLLECTION" "${embed[@]}" --embed-model "$EMBED_MODEL"
fi

echo "== 4. query"
"$KANOA" rag query "$QUESTION" --collection "$COLLECTION" "${embed[@]}" -k 3 --mode hybrid
hits=$(curl -s "$API/retrieve" -H 'Content-Type: application/json' \
    -d "$(jq -n --arg c "$COLLECTION" --arg q "$QUESTION" '{collection: $c, query: $q, k: 3, mode: "hybrid"}')")
echo "$hits" | jq .

[ -n "$CHAT_MODEL" ] || { echo "(CHAT_MODEL not set: skipping step 5)"; exit 0; }
echo "== 5. ask $CHAT_MODEL with the retrieved context (curl)"
context=$(echo "$hits" | jq -r '.data[] | "[Source: \(.source_uri) (score: \(.score*100|round/100))]\n\(.text)\n"')
curl -s "$API/chat/completions" -H 'Content-Type: application/json' -d "$(jq -n \
    --arg m "$CHAT_MODEL" --arg ctx "$context" --arg q "$QUESTION" '{model: $m, messages: [
      {role: "system", content: ("Answer from this context and cite the sources.\n\n" + $ctx)},
      {role: "user", content: $q}]}')" | jq -r '.choices[0].message.content'

echo "== 5b. the same with the official openai SDK (node)"
OPENAI_BASE_URL=$API OPENAI_API_KEY=none CHAT_MODEL=$CHAT_MODEL COLLECTION=$COLLECTION \
    node "$here/ask.mjs" "$QUESTION"
