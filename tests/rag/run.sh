#!/bin/bash
# tests/rag/run.sh - the knowledge base against a real throwaway cluster.
#
# Starts PostgreSQL 15 + pgvector with `kanoa-mlops db start` in a temp dir
# (loopback, free port), a deterministic fake /v1/embeddings server
# (fake_embed.py, Python stdlib), and checks: schema and migrations, ingest
# rows, idempotent re-ingest, replacement and --prune, model/dimension
# refusal, kill -9 and a terminated connection in the middle of ingesting a
# changed document (also with two jobs), schema 2 and the upgrade from 1,
# --jobs, --embed-hash, injection strings stored and returned verbatim, exact
# top-k against a numpy brute force, filtered queries with iterative scans,
# text and hybrid modes, the local engine (--embed-model FILE.gguf, a
# synthesized tiny BERT; the same vectors through serve --model), and CLI
# usage errors. Works as root (the server then
# runs as `postgres`) and as a normal user.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
BIN=${KM_BIN:-$top/build/asan/kanoa-mlops}
PY=/usr/bin/python3
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; }
check() { # check NAME COMMAND... : ok when the command succeeds
    local name=$1; shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}
eq() { # eq NAME GOT WANT
    if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got [$2] want [$3]"; fi
}

tmp=$(mktemp -d /tmp/kanoa-rag-test.XXXXXX)
chmod 755 "$tmp" # the server may run as `postgres` (when we are root)
pgdir=$tmp/pg
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    "$BIN" db stop --data-dir "$pgdir" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT

fake() { # fake NAME ARGS... : start a fake embeddings server, set $port
    local pf=$tmp/$1.port; shift
    "$PY" "$here/fake_embed.py" "$pf" "$@" 2>/dev/null &
    pids="$pids $!"
    for _ in $(seq 1 100); do [ -s "$pf" ] && break; sleep 0.1; done
    port=$(cat "$pf")
}

# ---- cluster ------------------------------------------------------------
if ! "$BIN" db start --data-dir "$pgdir" >"$tmp/start.out" 2>&1; then
    cat "$tmp/start.out"
    bad "db start"
    echo "$pass passed, $fail failed"
    exit 1
fi
ok "db start"
URL=$("$BIN" db status --data-dir "$pgdir" -q)
export KANOA_DATABASE_URL=$URL
sql() { psql "$URL" -X -At -v ON_ERROR_STOP=1 -c "$1"; }
check "url is loopback" grep -Eq '^postgresql://kanoa:[0-9a-f]{48}@127\.0\.0\.1:[0-9]+/kanoa$' <<<"$URL"
eq "vector extension" "$(sql "SELECT extname FROM pg_extension WHERE extname = 'vector'")" "vector"
"$BIN" db start --data-dir "$pgdir" >/dev/null 2>&1
eq "db start again keeps the URL" "$("$BIN" db status --data-dir "$pgdir" -q)" "$URL"

# ---- schema -------------------------------------------------------------
eq "rag init" "$("$BIN" rag init 2>&1)" "schema version 4"
eq "rag init is idempotent" "$("$BIN" rag init 2>&1)" "schema version 4"
eq "schema_version rows" "$(sql "SELECT string_agg(version::text, ',' ORDER BY version) FROM kanoa.schema_version")" "1,2,3,4"
fks() { sql "SELECT coalesce(string_agg(conname, ',' ORDER BY conname), 'none') FROM pg_constraint WHERE conrelid = 'kanoa.chunks'::regclass AND contype = 'f'"; }
# the delete trigger: its name and level (row / statement)
trig() { sql "SELECT coalesce(string_agg(tgname || CASE WHEN tgtype & 1 = 1 THEN ' row' ELSE ' statement' END, ','), 'none') FROM pg_trigger WHERE tgrelid = 'kanoa.documents'::regclass AND NOT tgisinternal"; }
seqcache() { sql "SELECT seqcache FROM pg_sequence WHERE seqrelid = 'kanoa.chunks_id_seq'::regclass"; }
eq "no per-row foreign keys on chunks (migration 2)" "$(fks)" "none"
eq "deleting documents deletes their chunks (row trigger, migration 3)" "$(trig)" "documents_delete_chunks row"
eq "chunk ids handed out 100 per backend (migration 3)" "$(seqcache)" "100"
# migration 4: tsv a plain NOT NULL column filled by triggers when missing
tsvcol() { sql "SELECT CASE attgenerated WHEN 's' THEN 'generated' ELSE 'plain' END || CASE WHEN attnotnull THEN ' not null' ELSE '' END FROM pg_attribute WHERE attrelid = 'kanoa.chunks'::regclass AND attname = 'tsv'"; }
tsvtrig() { sql "SELECT coalesce(string_agg(tgname, ',' ORDER BY tgname), 'none') FROM pg_trigger WHERE tgrelid = 'kanoa.chunks'::regclass AND NOT tgisinternal"; }
eq "tsv is a plain NOT NULL column (migration 4)" "$(tsvcol)" "plain not null"
eq "tsv triggers (migration 4)" "$(tsvtrig)" "chunks_tsv_insert,chunks_tsv_update"
# integrity by construction: every chunk belongs to a document of its collection
orphans() { sql "SELECT count(*) FROM kanoa.chunks c LEFT JOIN kanoa.documents d ON d.id = c.document_id AND d.collection_id = c.collection_id WHERE d.id IS NULL"; }

# ---- ingest -------------------------------------------------------------
fake emb --dim 32
EURL=http://127.0.0.1:$port/v1
export KANOA_EMBED_URL=$EURL
docs=$tmp/docs
mkdir -p "$docs/sub" "$docs/.hidden"
printf '# Title\n\nPostgres stores vectors.\n\n## Pets\n\nCats and dogs are animals.\n' >"$docs/a.md"
printf 'The quick brown fox jumps over the lazy dog.\n' >"$docs/b.txt"
printf "Robert'); DROP TABLE kanoa.chunks;--\n\\\\. \\\\N\t\$\$ quote' \"dq\"\n" >"$docs/evil.txt"
printf 'name,animal\nrex,dog\n' >"$docs/sub/c.csv"
printf 'def zebra():\n    return "stripes"\n' >"$docs/sub/d.py"
printf 'Title\n=====\n\nRestructured text body.\n' >"$docs/sub/e.rst"
printf '{"k": "json value"}\n' >"$docs/sub/f.json"
printf 'ignored\n' >"$docs/.hidden/h.txt"
printf 'ignored\n' >"$docs/sub/image.png"
"$PY" "$here/mkpdf.py" "$docs/sub/g.pdf" "Portable document about giraffes"
C="kb one"
out=$("$BIN" rag ingest "$docs" --collection "$C" --embed-model fake-embed 2>"$tmp/err")
eq "ingest exit" "$?" "0"
eq "ingest summary" "${out%%;*}" "ingested 8 files (9 chunks), 0 unchanged, 0 failed, 0 pruned"
check "ingest progress lines" grep -q "ingest: \[8/8\] $docs/sub/g.pdf" "$tmp/err"
eq "collection row" "$(sql "SELECT name || '|' || embed_model || '|' || dim FROM kanoa.collections")" "kb one|fake-embed|32"
eq "documents" "$(sql "SELECT string_agg(substr(source_uri, length('file://$docs/') + 1) || '=' || n_chunks, ',' ORDER BY source_uri) FROM kanoa.documents")" \
    "a.md=2,b.txt=1,evil.txt=1,sub/c.csv=1,sub/d.py=1,sub/e.rst=1,sub/f.json=1,sub/g.pdf=1"
eq "markdown chunks by heading" "$(sql "SELECT string_agg(replace(text, E'\n', '/'), ' | ' ORDER BY position) FROM kanoa.chunks c JOIN kanoa.documents d ON d.id = c.document_id WHERE d.source_uri LIKE '%/a.md'")" \
    "# Title//Postgres stores vectors. | ## Pets//Cats and dogs are animals."
eq "pdf text" "$(sql "SELECT text FROM kanoa.chunks WHERE metadata->>'ext' = 'pdf'")" "Portable document about giraffes"
eq "content hash is sha256 of the file" "$(sql "SELECT content_hash FROM kanoa.documents WHERE source_uri LIKE '%/b.txt'")" \
    "$(sha256sum "$docs/b.txt" | cut -d' ' -f1)"
eq "metadata" "$(sql "SELECT metadata::text FROM kanoa.chunks WHERE metadata->>'name' = 'c.csv'")" \
    "{\"ext\": \"csv\", \"name\": \"c.csv\", \"path\": \"$docs/sub/c.csv\"}"
eq "embedding dims" "$(sql "SELECT string_agg(DISTINCT vector_dims(embedding)::text, ',') FROM kanoa.chunks")" "32"
eq "hnsw index built" "$(sql "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'chunks_hnsw_%' AND indexdef LIKE '%vector(32)%vector_cosine_ops%'")" "1"
# the evil file's bytes come back exactly (psql -At prints text verbatim)
sql "SELECT text FROM kanoa.chunks WHERE metadata->>'name' = 'evil.txt'" >"$tmp/evil.out"
printf '%s\n' "$(cat "$docs/evil.txt")" >"$tmp/evil.want"
check "injection text stored verbatim" cmp -s "$tmp/evil.out" "$tmp/evil.want"
eq "tables intact" "$(sql "SELECT count(*) FROM kanoa.chunks")" "9"
eq "no orphan chunks after ingest" "$(orphans)" "0"

sql "SELECT id, chunk_id FROM kanoa.chunks ORDER BY id" >"$tmp/rows1"
out=$("$BIN" rag ingest "$docs" --collection "$C" 2>/dev/null)
eq "re-ingest skips unchanged" "${out%%;*}" "ingested 0 files (0 chunks), 8 unchanged, 0 failed, 0 pruned"
sql "SELECT id, chunk_id FROM kanoa.chunks ORDER BY id" >"$tmp/rows2"
check "re-ingest leaves rows as they were" cmp -s "$tmp/rows1" "$tmp/rows2"

# ---- refusals -----------------------------------------------------------
out=$("$BIN" rag ingest "$docs" --collection "$C" --embed-model other-model 2>&1)
eq "other model refused (exit)" "$?" "1"
eq "other model refused (message)" "$out" "kanoa-mlops rag ingest: collection 'kb one' holds embeddings of model 'fake-embed'; refusing to add model 'other-model'"
fake emb16 --dim 16
printf 'Changed text for b.\n' >"$docs/b.txt"
out=$("$BIN" rag ingest "$docs/b.txt" --collection "$C" --embed-url "http://127.0.0.1:$port/v1" 2>&1 >/dev/null)
eq "other dimension refused" "$(grep -v '^ingest:' <<<"$out")" "kanoa-mlops rag ingest: collection 'kb one' holds embeddings of model 'fake-embed' (dim 32); refusing to add model 'fake-embed' (dim 16)"
eq "refused ingest changed nothing" "$(sql "SELECT text FROM kanoa.chunks WHERE metadata->>'name' = 'b.txt'")" "The quick brown fox jumps over the lazy dog."

# ---- replace and prune --------------------------------------------------
out=$("$BIN" rag ingest "$docs" --collection "$C" 2>/dev/null)
eq "changed file re-ingested" "${out%%;*}" "ingested 1 files (1 chunks), 7 unchanged, 0 failed, 0 pruned"
eq "new text replaces old" "$(sql "SELECT string_agg(text, '|') FROM kanoa.chunks WHERE metadata->>'name' = 'b.txt'")" "Changed text for b."
rm "$docs/sub/f.json"
out=$("$BIN" rag ingest "$docs" --collection "$C" --prune 2>/dev/null)
eq "prune" "${out%%;*}" "ingested 0 files (0 chunks), 7 unchanged, 0 failed, 1 pruned"
eq "pruned document gone" "$(sql "SELECT count(*) FROM kanoa.documents WHERE source_uri LIKE '%f.json'"),$(sql "SELECT count(*) FROM kanoa.chunks WHERE metadata->>'name' = 'f.json'")" "0,0"
eq "no orphan chunks after replace and prune" "$(orphans)" "0"

# ---- bad files ------------------------------------------------------------
printf 'ok\n' >"$tmp/x.png"
out=$("$BIN" rag ingest "$tmp/x.png" --collection "$C" 2>&1)
eq "unsupported file" "$?:$out" "1:kanoa-mlops rag ingest: file $tmp/x.png: unsupported type (use .txt .md .rst .csv .json .pdf or source code)"
mkdir -p "$tmp/mixed"
printf 'bad \xff byte\n' >"$tmp/mixed/bad.txt"
printf 'good words here\n' >"$tmp/mixed/good.txt"
out=$("$BIN" rag ingest "$tmp/mixed" --collection "$C" 2>&1)
eq "invalid UTF-8 fails that file only (exit)" "$?" "1"
eq "invalid UTF-8 messages" "$(grep '^kanoa-mlops' <<<"$out")" "kanoa-mlops rag ingest: file $tmp/mixed/bad.txt: byte 4 is not valid UTF-8
kanoa-mlops rag ingest: 1 of 2 files failed (see above)"
eq "the good file went in" "$(sql "SELECT count(*) FROM kanoa.documents WHERE source_uri = 'file://$tmp/mixed/good.txt'")" "1"
rm -rf "$tmp/mixed"
mkdir "$tmp/mixed"
out=$("$BIN" rag ingest "$tmp/mixed" --collection "$C" --prune 2>/dev/null)
eq "prune an emptied folder" "${out%%;*}" "ingested 0 files (0 chunks), 0 unchanged, 0 failed, 1 pruned"

# ---- queries against a brute force ---------------------------------------
corpus=$tmp/corpus
"$PY" - "$corpus" <<'PYEOF'
import os, random, sys
root = sys.argv[1]
words = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee "
         "zulu amber basalt cobalt dune ember fjord glacier harbor island jungle").split()
rng = random.Random(7)
os.makedirs(root + "/common")
os.makedirs(root + "/rare")
for i in range(80):
    sub = "rare" if i % 20 == 0 else "common"
    with open("%s/%s/doc%02d.txt" % (root, sub, i), "w") as f:
        f.write(" ".join(rng.choice(words) for _ in range(12)) + ".\n")
PYEOF
K="corpus"
"$BIN" rag ingest "$corpus/common" --collection "$K" --embed-model fake-embed >/dev/null 2>&1
out=$("$BIN" rag ingest "$corpus/rare" --collection "$K" --meta group=rare 2>/dev/null)
eq "corpus ingested" "${out%%;*}" "ingested 4 files (4 chunks), 0 unchanged, 0 failed, 0 pruned"
cid=$(sql "SELECT id FROM kanoa.collections WHERE name = 'corpus'")
sql "SELECT chunk_id || '|' || embedding::text FROM kanoa.chunks WHERE collection_id = $cid" >"$tmp/vecs"
topk() { "$BIN" rag query "$1" --collection "$K" -k "$2" --json "${@:3}" |
         "$PY" -c 'import json,sys; [print("%s %.6f" % (h["chunk_id"], h["score"])) for h in json.load(sys.stdin)["data"]]'; }
hnsw_scans() { sql "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'chunks_hnsw_$cid'"; }
before=$(hnsw_scans)
topk "alpha" 3 >/dev/null
for _ in $(seq 1 50); do [ "$(hnsw_scans)" != "$before" ] && break; sleep 0.1; done
check "vector query uses the collection's HNSW index" test "$(hnsw_scans)" -gt "$before"
for q in "alpha bravo charlie" "glacier harbor island jungle" "zulu"; do
    want=$("$PY" "$here/brute.py" 10 32 "$q" <"$tmp/vecs")
    eq "exact top-10 = brute force: $q" "$(topk "$q" 10 --exact)" "$want"
    eq "hnsw top-10 = brute force: $q" "$(topk "$q" 10)" "$want"
done
# filtered: only 4 of 80 rows match; ef_search 2 alone would find ~0 of them
sql "SELECT c.chunk_id || '|' || c.embedding::text FROM kanoa.chunks c WHERE collection_id = $cid AND metadata @> '{\"group\":\"rare\"}'" >"$tmp/rare"
want=$("$PY" "$here/brute.py" 3 32 "delta echo" <"$tmp/rare")
eq "filtered query returns k rows (iterative scan)" "$(topk "delta echo" 3 --filter group=rare --ef-search 2)" "$want"
eq "filter matching nothing" "$(topk "delta" 3 --filter "group=rare'); DROP TABLE kanoa.chunks;--")" ""
eq "filter with a hostile key" "$(topk "delta" 3 --filter "x') OR 1=1;--=1")" ""
eq "tables intact after hostile filters" "$(sql "SELECT count(*) FROM kanoa.chunks WHERE collection_id = $cid")" "80"
out=$("$BIN" rag query "delta" --collection "$K" --filter group=rare --filter group=other 2>&1)
eq "conflicting filters" "$?:$(head -n 1 <<<"$out")" "2:kanoa-mlops rag: filter key 'group' given twice with different values"

# text and hybrid modes on the first collection
out=$("$BIN" rag query "giraffes" --collection "$C" --mode text --json)
eq "text mode" "$("$PY" -c 'import json,sys; d=json.load(sys.stdin)["data"]; print(len(d), d[0]["metadata"]["name"], 0 < d[0]["score"] < 1)' <<<"$out")" "1 g.pdf True"
out=$("$BIN" rag query "zebra stripes" --collection "$C" --mode hybrid -k 3 --json)
eq "hybrid mode: keyword hit first, scores in 0..1" "$("$PY" -c '
import json,sys
d = json.load(sys.stdin)["data"]
print(len(d), d[0]["metadata"]["name"], all(0 <= h["score"] <= 1 for h in d),
      sorted(d[0]) == ["chunk_id", "metadata", "score", "source_uri", "text"])' <<<"$out")" "3 d.py True True"
out=$("$BIN" rag query "Robert'); DROP TABLE kanoa.chunks;--" --collection "$C" --mode text -k 1 --json)
eq "injection text returned verbatim" "$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["text"] == open(sys.argv[1]).read().strip())' "$docs/evil.txt" <<<"$out")" "True"
HC="c'); DROP TABLE kanoa.collections;--"
"$BIN" rag ingest "$docs/b.txt" --collection "$HC" --embed-model fake-embed >/dev/null 2>&1
eq "hostile collection name stored verbatim" "$(sql "SELECT count(*) FROM kanoa.collections WHERE name = \$\$$HC\$\$")" "1"
eq "hostile collection queryable" "$("$BIN" rag query "changed" --collection "$HC" -k 1 --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["text"])')" "Changed text for b."
out=$("$BIN" rag query "x" --collection "missing" 2>&1)
eq "unknown collection" "$?:$out" "1:kanoa-mlops rag query: collection 'missing' does not exist"

# ---- text-search vectors: from the client or the trigger, never NULL -------
# Ingest sends the tsvector when tsv.c computes it and NULL otherwise (the
# insert trigger computes it); KANOA_RAG_SERVER_TSV=1 sends NULL for every
# chunk. Both must store exactly to_tsvector('english', text).
badtsv() { sql "SELECT count(*) FILTER (WHERE tsv IS NULL) || ',' || count(*) FILTER (WHERE tsv IS DISTINCT FROM to_tsvector('english', text)) FROM kanoa.chunks"; }
eq "every tsv = to_tsvector(text) after the ingests" "$(badtsv)" "0,0"
tv=$tmp/tsvdocs
mkdir -p "$tv"
printf 'Chunk 7: the vector index answers queries; postgres stores 384 floats.\n\nRunning runners ran quickly: cosine recall at 10 of 12 queries.\n' >"$tv/ascii.txt"
printf 'Caf\xc3\xa9 na\xc3\xafve r\xc3\xa9sum\xc3\xa9 \xe2\x80\x94 "quotes", e-mail a@b.com, http://x.org/p?q=1, 1.5e3, -7, v1.2.3, foo_bar, <b>tags</b> &amp; AT&T.\n' >"$tv/mixed.txt"
# paragraph p: "runners" p + 1 times, "stemmed" 6 - p times, so no two
# chunks tie on either word (hybrid fusion ranks ties by storage order)
"$PY" -c 'print("\n\n".join(" ".join(["runners"] * (p + 1) + ["stemmed"] * (6 - p) + ["of", "the", "words", str(p)]) for p in range(6)))' >"$tv/words.txt"
"$BIN" rag ingest "$tv" --collection "tsv client" --embed-hash 16 --chunk-tokens 32 --overlap 0 --jobs 1 >/dev/null 2>&1
KANOA_RAG_SERVER_TSV=1 "$BIN" rag ingest "$tv" --collection "tsv server" --embed-hash 16 --chunk-tokens 32 --overlap 0 --jobs 1 >/dev/null 2>&1
tsvs() { sql "SELECT count(*) || E'\n' || string_agg(c.chunk_id || '=' || c.tsv::text, E'\n' ORDER BY c.chunk_id) FROM kanoa.chunks c JOIN kanoa.collections k ON k.id = c.collection_id WHERE k.name = '$1'"; }
check "tsv collections ingested" test "$(tsvs "tsv client" | head -n 1)" -gt 5
eq "client-path tsv::text = server-path tsv::text" "$(tsvs "tsv client")" "$(tsvs "tsv server")"
# the client path is live: with the insert trigger off, plain ASCII words
# go in only if the client sent every chunk's tsvector (tsv is NOT NULL)
mkdir -p "$tmp/tsvplain"
printf 'the running runners ran quickly over generously stemmed words\n' >"$tmp/tsvplain/p.txt"
sql "ALTER TABLE kanoa.chunks DISABLE TRIGGER chunks_tsv_insert" >/dev/null
out=$("$BIN" rag ingest "$tmp/tsvplain" --collection "tsv plain" --embed-hash 16 2>/dev/null)
sql "ALTER TABLE kanoa.chunks ENABLE TRIGGER chunks_tsv_insert" >/dev/null
eq "ASCII words: the client computes the tsvector (trigger off)" "${out%%;*}" "ingested 1 files (1 chunks), 0 unchanged, 0 failed, 0 pruned"
# a server whose english configuration differs from the stock one (here:
# numbers and words with digits no longer indexed): ingest notices on its
# probe text and lets the server compute every tsv
mkdir -p "$tmp/tsvalt"
printf 'the x86 runners ran 2nd\n' >"$tmp/tsvalt/a.txt"
sql "ALTER TEXT SEARCH CONFIGURATION pg_catalog.english DROP MAPPING FOR numword" >/dev/null
out=$("$BIN" rag ingest "$tmp/tsvalt" --collection "tsv altered" --embed-hash 16 2>&1)
alt=$(sql "SELECT count(*) || ',' || bool_and(c.tsv = to_tsvector('english', c.text) AND c.tsv::text NOT LIKE '%x86%' AND c.tsv::text LIKE '%runner%') FROM kanoa.chunks c JOIN kanoa.collections k ON k.id = c.collection_id WHERE k.name = 'tsv altered'")
sql "ALTER TEXT SEARCH CONFIGURATION pg_catalog.english ADD MAPPING FOR numword WITH simple" >/dev/null
sql "DELETE FROM kanoa.collections WHERE name = 'tsv altered'" >/dev/null # its tsv follow the altered configuration
check "altered english configuration: ingest warns and uses the server's tsv" grep -q "differs from the client's" <<<"$out"
eq "altered english configuration: stored tsv is the server's (no x86)" "$alt" "1,true"
eq "stock english configuration restored" "$(sql "SELECT to_tsvector('english', 'x86')::text")" "'x86':1"
tq() { "$BIN" rag query "$1" --collection "$2" --embed-hash 16 -k 10 --json "${@:3}"; }
# every hit of a text query with its score, in chunk_id order (ties in any order)
hits() { tq "$1" "$2" --mode text -k 100 | "$PY" -c 'import json,sys; [print(h["chunk_id"], repr(h["score"])) for h in sorted(json.load(sys.stdin)["data"], key=lambda h: h["chunk_id"])]'; }
for q in "runners" "stemmed" "runners or stemmed" "running or recall" "postgres floats"; do
    eq "text query hits and scores, client tsv = server tsv: $q" "$(hits "$q" "tsv client")" "$(hits "$q" "tsv server")"
done
for q in "runners" "stemmed"; do
    eq "text query, client tsv = server tsv: $q" "$(tq "$q" "tsv client" --mode text)" "$(tq "$q" "tsv server" --mode text)"
    eq "hybrid query, client tsv = server tsv: $q" "$(tq "$q" "tsv client" --mode hybrid)" "$(tq "$q" "tsv server" --mode hybrid)"
done
check "text query finds the stemmed words" grep -q '"chunk_id"' <<<"$(tq "runners" "tsv client" --mode text)"
# rows written by hand: INSERT and text COPY without tsv, an explicit tsv
kid=$(sql "SELECT id FROM kanoa.collections WHERE name = 'tsv server'")
did=$(sql "SELECT min(id) FROM kanoa.documents WHERE collection_id = $kid")
vec=$(sql "SELECT array_fill(0.25, ARRAY[16])::vector::text")
sql "INSERT INTO kanoa.chunks (collection_id, document_id, chunk_id, position, token_count, text, embedding)
     VALUES ($kid, $did, 'hand:1', 100, 5, 'Hand-written rows get their vectors', '$vec')" >/dev/null
printf '%s\t%s\thand:2\t101\t5\tCopied rows are searchable, giraffes too\t%s\n' "$kid" "$did" "$vec" |
    psql "$URL" -X -q -v ON_ERROR_STOP=1 -c "COPY kanoa.chunks (collection_id, document_id, chunk_id, position, token_count, text, embedding) FROM STDIN"
sql "INSERT INTO kanoa.chunks (collection_id, document_id, chunk_id, position, token_count, text, embedding, tsv)
     VALUES ($kid, $did, 'hand:3', 102, 5, 'Given vectors are kept', '$vec', 'given:1')" >/dev/null
hand() { sql "SELECT tsv::text FROM kanoa.chunks WHERE collection_id = $kid AND chunk_id = '$1'"; }
tsv_of() { sql "SELECT to_tsvector('english', \$\$$1\$\$)::text"; }
eq "INSERT without tsv: the trigger computes it" "$(hand hand:1)" "$(tsv_of 'Hand-written rows get their vectors')"
eq "COPY without tsv: the trigger computes it" "$(hand hand:2)" "$(tsv_of 'Copied rows are searchable, giraffes too')"
eq "INSERT with a tsv keeps it (what ingest relies on)" "$(hand hand:3)" "'given':1"
eq "text query finds a copied row" "$(tq "giraffes" "tsv server" --mode text | "$PY" -c 'import json,sys; print([h["chunk_id"] for h in json.load(sys.stdin)["data"]])')" "['hand:2']"
# UPDATE by hand: a changed text or a touched tsv is recomputed from the text
sql "UPDATE kanoa.chunks SET text = 'Edited by hand: zebras' WHERE collection_id = $kid AND chunk_id = 'hand:1'" >/dev/null
eq "UPDATE of text recomputes tsv" "$(hand hand:1)" "$(tsv_of 'Edited by hand: zebras')"
sql "UPDATE kanoa.chunks SET tsv = NULL WHERE collection_id = $kid AND chunk_id = 'hand:2'" >/dev/null
eq "UPDATE tsv = NULL recomputes it" "$(hand hand:2)" "$(tsv_of 'Copied rows are searchable, giraffes too')"
sql "UPDATE kanoa.chunks SET tsv = 'bogus' WHERE collection_id = $kid AND chunk_id = 'hand:3'" >/dev/null
eq "UPDATE of tsv recomputes it from the text" "$(hand hand:3)" "$(tsv_of 'Given vectors are kept')"
sql "UPDATE kanoa.chunks SET text = 'Both given', tsv = 'other' WHERE collection_id = $kid AND chunk_id = 'hand:3'" >/dev/null
eq "UPDATE of text and tsv: tsv from the new text" "$(hand hand:3)" "$(tsv_of 'Both given')"
out=$(psql "$URL" -X -At -c "ALTER TABLE kanoa.chunks DISABLE TRIGGER chunks_tsv_insert; INSERT INTO kanoa.chunks (collection_id, document_id, chunk_id, position, token_count, text, embedding) VALUES ($kid, $did, 'hand:4', 103, 1, 'x', '$vec')" 2>&1)
check "no trigger: a row without tsv is refused (NOT NULL)" grep -q 'null value in column "tsv"' <<<"$out"
sql "ALTER TABLE kanoa.chunks ENABLE TRIGGER chunks_tsv_insert" >/dev/null
eq "tsv triggers enabled" "$(sql "SELECT string_agg(tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'kanoa.chunks'::regclass AND NOT tgisinternal")" "O,O"
eq "no NULL tsv, every tsv = to_tsvector(text)" "$(badtsv)" "0,0"
sql "DELETE FROM kanoa.collections WHERE name IN ('tsv client', 'tsv server', 'tsv plain')" >/dev/null

# ---- jobs, hash embeddings, the upgrades from schemas 1, 2 and 3 -------------
rows_of() { sql "SELECT d.n_chunks || '|' || c.chunk_id || '|' || md5(c.text) || '|' || md5(c.embedding::text) FROM kanoa.chunks c JOIN kanoa.documents d ON d.id = c.document_id JOIN kanoa.collections k ON k.id = c.collection_id WHERE k.name = '$1' ORDER BY c.chunk_id" | md5sum; }
"$BIN" rag ingest "$corpus" --collection "jobs one" --embed-model fake-embed --jobs 1 >/dev/null 2>&1
out=$("$BIN" rag ingest "$corpus" --collection "jobs four" --embed-model fake-embed --jobs 4 2>"$tmp/jerr")
eq "ingest --jobs 4" "${out%%;*}" "ingested 80 files (80 chunks), 0 unchanged, 0 failed, 0 pruned"
check "ingest --jobs 4 summary" grep -q "with 4 jobs" <<<"$out"
eq "--jobs 4 progress: each file once, numbered in order" \
    "$(sed -n 's/^ingest: \[\([0-9]*\)\/80\] .*/\1/p' "$tmp/jerr" | sort -n | uniq | tr '\n' ' ')" "$(seq 1 80 | tr '\n' ' ')"
eq "--jobs 4 stores what --jobs 1 stores" "$(rows_of "jobs four")" "$(rows_of "jobs one")"
out=$("$BIN" rag ingest "$corpus" --collection "jobs four" --jobs 4 2>/dev/null)
eq "--jobs 4 re-ingest skips unchanged" "${out%%;*}" "ingested 0 files (0 chunks), 80 unchanged, 0 failed, 0 pruned"
jid=$(sql "SELECT id FROM kanoa.collections WHERE name = 'jobs one'")
sql "DELETE FROM kanoa.collections WHERE id = $jid" >/dev/null
eq "deleting a collection cascades to its documents and chunks" \
    "$(sql "SELECT (SELECT count(*) FROM kanoa.documents WHERE collection_id = $jid) || ',' || (SELECT count(*) FROM kanoa.chunks WHERE collection_id = $jid)")" "0,0"
eq "no orphan chunks after --jobs runs and a collection delete" "$(orphans)" "0"
out=$("$BIN" rag ingest "$docs" --collection "hashed" --embed-hash 24 2>/dev/null)
eq "--embed-hash ingest" "${out%%;*}" "ingested 7 files (8 chunks), 0 unchanged, 0 failed, 0 pruned"
eq "--embed-hash collection and unit vectors" "$(sql "SELECT k.embed_model || '|' || k.dim || '|' || bool_and(abs(vector_norm(c.embedding) - 1) < 1e-5) FROM kanoa.chunks c JOIN kanoa.collections k ON k.id = c.collection_id WHERE k.name = 'hashed' GROUP BY k.embed_model, k.dim")" "hash-24|24|true"
t=$(sql "SELECT c.text FROM kanoa.chunks c JOIN kanoa.collections k ON k.id = c.collection_id WHERE k.name = 'hashed' AND c.metadata->>'name' = 'd.py'")
eq "--embed-hash query finds a chunk by its text" "$("$BIN" rag query "$t" --collection hashed --embed-hash 24 -k 1 --json | "$PY" -c 'import json,sys; h=json.load(sys.stdin)["data"][0]; print(h["metadata"]["name"], "%.4f" % h["score"])')" "d.py 1.0000"
out=$("$BIN" rag ingest "$docs" --collection "hashed" --embed-hash 24 --embed-model m 2>&1)
eq "--embed-hash with --embed-model refused" "$?:$out" "1:kanoa-mlops rag ingest: --embed-hash replaces the embedding model: give no --embed-url, --embed-model or --embed-name with it"
# Older schemas as they were, restored on the populated database: rag init
# upgrades each in place, keeping the rows, their tsvectors and what text
# queries return.
to_schema3() { # the generated tsv column
    sql "DROP TRIGGER chunks_tsv_insert ON kanoa.chunks;
         DROP TRIGGER chunks_tsv_update ON kanoa.chunks;
         DROP FUNCTION kanoa.chunk_tsv();
         ALTER TABLE kanoa.chunks DROP COLUMN tsv;
         ALTER TABLE kanoa.chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED;
         CREATE INDEX chunks_tsv_idx ON kanoa.chunks USING gin (tsv);
         DELETE FROM kanoa.schema_version WHERE version = 4" >/dev/null
}
to_schema2() { # and the statement-level delete trigger, no sequence cache
    to_schema3
    sql "DROP TRIGGER documents_delete_chunks ON kanoa.documents;
         DROP FUNCTION kanoa.document_deleted();
         CREATE FUNCTION kanoa.documents_deleted() RETURNS trigger LANGUAGE plpgsql AS \$\$
         BEGIN DELETE FROM kanoa.chunks c USING gone g WHERE c.document_id = g.id; RETURN NULL; END \$\$;
         CREATE TRIGGER documents_delete_chunks AFTER DELETE ON kanoa.documents
           REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION kanoa.documents_deleted();
         ALTER SEQUENCE kanoa.chunks_id_seq CACHE 1;
         DELETE FROM kanoa.schema_version WHERE version = 3" >/dev/null
}
to_schema1() { # and two foreign keys per chunk instead of the trigger
    to_schema2
    sql "ALTER TABLE kanoa.chunks
           ADD CONSTRAINT chunks_collection_id_fkey FOREIGN KEY (collection_id) REFERENCES kanoa.collections(id) ON DELETE CASCADE,
           ADD CONSTRAINT chunks_document_id_fkey FOREIGN KEY (document_id) REFERENCES kanoa.documents(id) ON DELETE CASCADE;
         DROP TRIGGER documents_delete_chunks ON kanoa.documents;
         DROP FUNCTION kanoa.documents_deleted();
         DELETE FROM kanoa.schema_version WHERE version = 2" >/dev/null
}
n_chunks=$(sql "SELECT count(*) FROM kanoa.chunks")
all_tsv() { sql "SELECT md5(string_agg(id || '=' || tsv::text, ',' ORDER BY id)) FROM kanoa.chunks"; }
tsv_before=$(all_tsv)
text_before=$("$BIN" rag query "giraffes or stripes or animals or fox or changed" --collection "$C" --mode text -k 20 --json)
check "the text query compared across upgrades has hits" grep -q '"chunk_id"' <<<"$text_before"
upgraded() { # upgraded FROM: the schema-4 objects, rows, tsvectors, queries
    eq "upgrade from $1: no foreign keys, the row trigger, the sequence cache" "$(fks)|$(trig)|$(seqcache)" "none|documents_delete_chunks row|100"
    eq "upgrade from $1: tsv plain, its triggers" "$(tsvcol)|$(tsvtrig)" "plain not null|chunks_tsv_insert,chunks_tsv_update"
    eq "upgrade from $1: rows kept" "$(sql "SELECT count(*) FROM kanoa.chunks")" "$n_chunks"
    eq "upgrade from $1: tsvectors kept" "$(all_tsv)" "$tsv_before"
    eq "upgrade from $1: text query unchanged" "$("$BIN" rag query "giraffes or stripes or animals or fox or changed" --collection "$C" --mode text -k 20 --json)" "$text_before"
    eq "upgrade from $1: vector queries work" "$(topk "zulu" 3 | wc -l)" "3"
}
to_schema3
eq "schema 3 restored" "$(tsvcol)|$(tsvtrig)" "generated|none"
eq "rag init upgrades schema 3 to 4" "$("$BIN" rag init 2>&1)" "schema version 4"
upgraded 3
to_schema2
eq "schema 2 restored" "$(fks)|$(trig)|$(seqcache)|$(tsvcol)" "none|documents_delete_chunks statement|1|generated"
eq "rag init upgrades schema 2 to 4" "$("$BIN" rag init 2>&1)" "schema version 4"
upgraded 2
to_schema1
eq "schema 1 restored" "$(fks)|$(trig)|$(seqcache)|$(tsvcol)" "chunks_collection_id_fkey,chunks_document_id_fkey|none|1|generated"
eq "rag init upgrades schema 1 to 4" "$("$BIN" rag init 2>&1)" "schema version 4"
upgraded 1
eq "schema_version rows after the upgrades" "$(sql "SELECT string_agg(version::text, ',' ORDER BY version) FROM kanoa.schema_version")" "1,2,3,4"

# ---- the local engine: --embed-model FILE.gguf ------------------------------
# A synthesized tiny BERT (random weights, 128 dims, 128-token context) with
# the bge WordPiece vocabulary. Embedding a chunk's exact text gives its
# exact vector, so that query must return the chunk first with score 1.
SYN=${KM_BIN_RELEASE:-$top/build/kanoa-mlops}
[ -x "$SYN" ] || SYN=$BIN
SHARED=${KM_SHARED:-$top/../shared}
TB=$tmp/tinybert.gguf
"$SYN" models synth --arch bert --shape tiny --seed 3 -q \
    --vocab-from "$SHARED/data/tokenizer/ggml-vocab-bert-bge.gguf" -o "$TB" >/dev/null
L="local kb"
# an unreachable endpoint in the environment: the local engine must not use it
out=$(KANOA_EMBED_URL=http://127.0.0.1:1/v1 "$BIN" rag ingest "$docs" --collection "$L" \
      --embed-model "$TB" --batch 3 --threads 2 2>"$tmp/lerr")
eq "local ingest exit" "$?" "0"
eq "local ingest summary" "${out%%;*}" "ingested 7 files (8 chunks), 0 unchanged, 0 failed, 0 pruned"
lcid=$(sql "SELECT id FROM kanoa.collections WHERE name = 'local kb'")
eq "local collection records the file stem and n_embd" \
    "$(sql "SELECT embed_model || '|' || dim FROM kanoa.collections WHERE id = $lcid")" "tinybert|128"
eq "local chunk count and dims" "$(sql "SELECT count(*) || '|' || string_agg(DISTINCT vector_dims(embedding)::text, ',') FROM kanoa.chunks WHERE collection_id = $lcid")" "8|128"
eq "local vectors are unit length" "$(sql "SELECT bool_and(abs(vector_norm(embedding) - 1) < 1e-5) FROM kanoa.chunks WHERE collection_id = $lcid")" "t"
eq "local chunks = the HTTP collection's chunks" \
    "$(sql "SELECT string_agg(chunk_id, ',' ORDER BY chunk_id) FROM kanoa.chunks WHERE collection_id = $lcid")" \
    "$(sql "SELECT string_agg(c.chunk_id, ',' ORDER BY c.chunk_id) FROM kanoa.chunks c JOIN kanoa.collections k ON k.id = c.collection_id WHERE k.name = 'kb one' AND c.metadata->>'path' LIKE '$docs/%'")"
names() { "$PY" -c 'import json,sys; [print(h["metadata"]["name"], "%.4f" % h["score"]) for h in json.load(sys.stdin)["data"]]'; }
ltop() { KANOA_EMBED_URL=http://127.0.0.1:1/v1 "$BIN" rag query "$1" --collection "$L" \
             --embed-model "$TB" --threads 2 -k "$2" --json "${@:3}" | names; }
for f in b.txt d.py g.pdf; do
    t=$(sql "SELECT text FROM kanoa.chunks WHERE collection_id = $lcid AND metadata->>'name' = '$f'")
    eq "local query finds $f by its text" "$(ltop "$t" 1)" "$f 1.0000"
done
eq "local hnsw top-5 = exact top-5" "$(ltop "animals and pets" 5)" "$(ltop "animals and pets" 5 --exact)"
out=$("$BIN" rag ingest "$docs" --collection "$L" --embed-model "$TB" 2>/dev/null)
eq "local re-ingest skips unchanged" "${out%%;*}" "ingested 0 files (0 chunks), 7 unchanged, 0 failed, 0 pruned"
mkdir -p "$tmp/long"
"$PY" -c 'print(" ".join("word%d" % i for i in range(200)))' >"$tmp/long/long.txt"
out=$("$BIN" rag ingest "$tmp/long" --collection "$L" --embed-model "$TB" 2>&1 >/dev/null)
eq "a chunk over the context is cut, with a note" "$(grep '^kanoa' <<<"$out")" \
    "kanoa-mlops rag ingest: note: 1 text was longer than model 'tinybert' allows and was cut to its context (use a smaller --chunk-tokens)"
eq "the cut chunk is stored whole" "$(sql "SELECT length(text) FROM kanoa.chunks WHERE collection_id = $lcid AND metadata->>'name' = 'long.txt'")" \
    "$(($(wc -c <"$tmp/long/long.txt") - 1))"
"$BIN" rag ingest "$docs/b.txt" --collection "named" --embed-model "$TB" --embed-name my-bert >/dev/null 2>&1
eq "--embed-name is recorded" "$(sql "SELECT embed_model || '|' || dim FROM kanoa.collections WHERE name = 'named'")" "my-bert|128"
out=$("$BIN" rag query "x" --collection "$C" --embed-model "$TB" 2>&1)
eq "local model other than the collection's refused" "$?:$out" \
    "1:kanoa-mlops rag query: collection 'kb one' holds embeddings of model 'fake-embed', not of model 'tinybert' ($TB); give --embed-name 'fake-embed' if that file is the same model"
out=$("$BIN" rag ingest "$docs/b.txt" --collection "$L" --embed-name x 2>&1)
eq "--embed-name without a local model" "$?:$out" \
    "1:kanoa-mlops rag ingest: --embed-name names a local model: give --embed-model FILE.gguf (and no --embed-url)"
out=$("$BIN" rag ingest "$docs/b.txt" --collection "$L" --embed-model "$tmp/missing.gguf" 2>&1)
eq "missing GGUF file (exit)" "$?" "1"
check "missing GGUF file (message)" grep -q "^kanoa-mlops rag ingest: .*missing.gguf" <<<"$out"
"$SYN" models synth --arch llama --shape tiny --seed 5 -q --dim 64 --ffn 128 \
    --vocab-from "$SHARED/data/tokenizer/ggml-vocab-gpt-2.gguf" -o "$tmp/tinyllama.gguf" >/dev/null
out=$("$BIN" rag ingest "$docs/b.txt" --collection "gen" --embed-model "$tmp/tinyllama.gguf" 2>&1)
eq "generation model refused" "$?:$(grep '^kanoa-mlops' <<<"$out")" \
    "1:kanoa-mlops rag ingest: model file $tmp/tinyllama.gguf is a llama text-generation model; embeddings need an embedding model (bert, nomic-bert)"

# ---- crash and connection loss in the middle of a changed document --------
big=$tmp/big
mkdir -p "$big"
"$PY" -c 'import sys; [print("Paragraph %d about lakes and rivers number %d.\n" % (i, i)) for i in range(40)]' >"$big/long.txt"
"$BIN" rag ingest "$big" --collection "$C" --chunk-tokens 16 --overlap 0 >/dev/null 2>&1
old=$(sql "SELECT d.content_hash || ':' || count(c.id) || ':' || md5(string_agg(c.text, '|' ORDER BY c.position)) FROM kanoa.documents d JOIN kanoa.chunks c ON c.document_id = d.id WHERE d.source_uri = 'file://$big/long.txt' GROUP BY d.content_hash")
total=$(sql "SELECT count(*) FROM kanoa.chunks")
"$PY" -c 'import sys; [print("Changed paragraph %d about the seas and oceans.\n" % i) for i in range(40)]' >"$big/long.txt"
fake slow --dim 32 --delay 0.3
SLOW=http://127.0.0.1:$port/v1
wait_copy() { # until an ingest COPY is running (bounded)
    for _ in $(seq 1 100); do
        [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY kanoa.chunks%' AND pid <> pg_backend_pid()")" = 1 ] && return 0
        sleep 0.1
    done
    return 1
}
no_copy() {
    for _ in $(seq 1 100); do
        [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY kanoa.chunks%' AND state <> 'idle' AND pid <> pg_backend_pid()")" = 0 ] && return 0
        sleep 0.1
    done
    return 1
}
state() {
    sql "SELECT d.content_hash || ':' || count(c.id) || ':' || md5(string_agg(c.text, '|' ORDER BY c.position)) FROM kanoa.documents d JOIN kanoa.chunks c ON c.document_id = d.id WHERE d.source_uri = 'file://$big/long.txt' GROUP BY d.content_hash"
}
"$BIN" rag ingest "$big" --collection "$C" --embed-url "$SLOW" --batch 2 --chunk-tokens 16 --overlap 0 >/dev/null 2>&1 &
ing=$!
check "ingest reached COPY" wait_copy
kill -9 "$ing"
wait "$ing" 2>/dev/null
check "server ended the dead COPY" no_copy
eq "kill -9 mid-document keeps the old version" "$(state)" "$old"
eq "kill -9 leaves no stray rows" "$(sql "SELECT count(*) FROM kanoa.chunks")" "$total"

"$BIN" rag ingest "$big" --collection "$C" --embed-url "$SLOW" --batch 2 --chunk-tokens 16 --overlap 0 >/dev/null 2>"$tmp/lost.err" &
ing=$!
check "ingest reached COPY again" wait_copy
sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'COPY kanoa.chunks%' AND pid <> pg_backend_pid()" >/dev/null
wait "$ing"
eq "connection loss exits 1" "$?" "1"
check "connection loss message" grep -q "^kanoa-mlops rag ingest: lost the database connection during" "$tmp/lost.err"
sed 's/^/# /' "$tmp/lost.err"
eq "connection loss keeps the old version" "$(state)" "$old"
out=$("$BIN" rag ingest "$big" --collection "$C" --chunk-tokens 16 --overlap 0 2>/dev/null)
eq "rerun completes" "${out%%;*}" "ingested 1 files (40 chunks), 0 unchanged, 0 failed, 0 pruned"
eq "new version in place" "$(sql "SELECT count(*) || ':' || sum((text LIKE 'Changed paragraph%')::int) FROM kanoa.chunks c JOIN kanoa.documents d ON d.id = c.document_id WHERE d.source_uri = 'file://$big/long.txt'")" "40:40"
eq "no orphan chunks after kill -9 and a lost connection" "$(orphans)" "0"
# two documents in flight (--jobs 2), one connection lost mid-COPY: that
# document keeps its old version, the other job finishes its own, the run
# exits 1, and a rerun completes the lost one
two=$tmp/two
mkdir -p "$two"
para() { "$PY" -c 'import sys; [print("%s %s paragraph %d about the seas and oceans.\n" % (sys.argv[1], sys.argv[2], i)) for i in range(40)]' "$@"; }
for f in p q; do para Old $f >"$two/$f.txt"; done
"$BIN" rag ingest "$two" --collection "$C" --chunk-tokens 16 --overlap 0 >/dev/null 2>&1
for f in p q; do para New $f >"$two/$f.txt"; done
copies() { sql "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY kanoa.chunks%' AND state <> 'idle' AND pid <> pg_backend_pid()"; }
wait_copies() { for _ in $(seq 1 100); do [ "$(copies)" = 2 ] && return 0; sleep 0.1; done; return 1; }
versions() { sql "SELECT sum((c.text LIKE 'New%')::int) || '/' || count(*) FROM kanoa.chunks c JOIN kanoa.documents d ON d.id = c.document_id WHERE d.source_uri LIKE 'file://$two/%' GROUP BY d.id" | sort | tr '\n' ' '; }
eq "two documents, old versions" "$(versions)" "0/40 0/40 "
"$BIN" rag ingest "$two" --collection "$C" --embed-url "$SLOW" --batch 2 --chunk-tokens 16 --overlap 0 --jobs 2 >/dev/null 2>"$tmp/lost2.err" &
ing=$!
check "two jobs reached COPY" wait_copies
sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'COPY kanoa.chunks%' AND pid <> pg_backend_pid() ORDER BY pid LIMIT 1" >/dev/null
wait "$ing"
eq "--jobs 2, one connection lost: exit 1" "$?" "1"
check "--jobs 2, one connection lost: message" grep -q "^kanoa-mlops rag ingest: lost the database connection during" "$tmp/lost2.err"
eq "--jobs 2, one connection lost: one document old, the other new, none torn" "$(versions)" "0/40 40/40 "
out=$("$BIN" rag ingest "$two" --collection "$C" --chunk-tokens 16 --overlap 0 2>/dev/null)
eq "--jobs 2, rerun completes the lost document" "${out%%;*}" "ingested 1 files (40 chunks), 1 unchanged, 0 failed, 0 pruned"
eq "--jobs 2, both new" "$(versions)" "40/40 40/40 "
eq "no orphan chunks after a lost job" "$(orphans)" "0"

# ---- POST /v1/retrieve in serve ---------------------------------------------
fake other --dim 8 --model other8
"$BIN" rag ingest "$docs/b.txt" --collection "other" --embed-model other8 --embed-url "http://127.0.0.1:$port/v1" >/dev/null 2>&1
"$BIN" serve --host 127.0.0.1 --port 0 --database-url "$URL" --model "$TB" --threads 2 \
    --upstream "fake=http://127.0.0.1:$(cat "$tmp/emb.port"),embed=fake-embed" >"$tmp/serve.log" 2>&1 &
pids="$pids $!"
SP=""
for _ in $(seq 1 100); do
    SP=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$tmp/serve.log" 2>/dev/null | grep -o '[0-9]*$')
    [ -n "$SP" ] && grep -q "upstream fake .* is healthy" "$tmp/serve.log" &&
        curl -sf "http://127.0.0.1:$SP/health" >/dev/null && break
    sleep 0.1
done
retrieve() { curl -s -w '\n%{http_code}' -H 'Content-Type: application/json' -X POST \
                  "http://127.0.0.1:$SP/v1/retrieve" -d "$1"; }
want=$("$BIN" rag query "alpha bravo" --collection "$K" -k 4 --json)
eq "retrieve vector = rag query --json" "$(retrieve '{"collection":"corpus","query":"alpha bravo","k":4}')" "$want"$'\n200'
want=$("$BIN" rag query "delta echo" --collection "$K" -k 3 --mode hybrid --filter group=rare --json)
eq "retrieve hybrid + filter = rag query --json" \
    "$(retrieve '{"collection":"corpus","query":"delta echo","k":3,"mode":"hybrid","filter":{"group":"rare"}}')" "$want"$'\n200'
want=$("$BIN" rag query "giraffes" --collection "$C" --mode text --json)
eq "retrieve text mode" "$(retrieve '{"collection":"kb one","query":"giraffes","mode":"text"}')" "$want"$'\n200'
eq "retrieve hostile collection name" "$(retrieve "{\"collection\":\"$HC\",\"query\":\"changed\",\"k\":1}" | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["data"][0]["text"])')" "Changed text for b."
eq "retrieve unknown collection" "$(retrieve '{"collection":"nope","query":"x"}')" \
    '{"error":{"message":"collection '"'nope'"' does not exist","type":"NotFoundError","param":"collection","code":404}}'$'\n404'
eq "retrieve bad k" "$(retrieve '{"collection":"corpus","query":"x","k":0}')" \
    '{"error":{"message":"k must be an integer in 1..1000","type":"BadRequestError","param":"k","code":400}}'$'\n400'
eq "retrieve model not served" "$(retrieve '{"collection":"other","query":"x"}' | tail -n 1)" "400"
eq "retrieve missing query" "$(retrieve '{"collection":"corpus"}' | tail -n 1)" "400"
# the local-engine collection through serve --model (same name, same vectors)
t=$(sql "SELECT text FROM kanoa.chunks WHERE collection_id = $lcid AND metadata->>'name' = 'd.py'")
body=$("$PY" -c 'import json,sys; print(json.dumps({"collection": "local kb", "query": sys.argv[1], "k": 3}))' "$t")
eq "retrieve on serve --model = local rag query" "$(retrieve "$body")" \
    "$("$BIN" rag query "$t" --collection "$L" --embed-model "$TB" --threads 2 -k 3 --json)"$'\n200'
cp "$docs/b.txt" "$tmp/b-copy.txt"
"$BIN" rag ingest "$tmp/b-copy.txt" --collection "$L" --embed-url "http://127.0.0.1:$SP/v1" --embed-model tinybert >/dev/null 2>&1
eq "HTTP ingest through serve --model: same vector as local" \
    "$(sql "SELECT (a.embedding = b.embedding)::text FROM kanoa.chunks a, kanoa.chunks b WHERE a.collection_id = $lcid AND b.collection_id = $lcid AND a.metadata->>'name' = 'b.txt' AND b.metadata->>'name' = 'b-copy.txt'")" "true"
# a pooled connection caches the collection row: drop and recreate it
eq "retrieve text before recreate" "$(retrieve '{"collection":"other","query":"changed","mode":"text"}' | tail -n 1)" "200"
sql "DELETE FROM kanoa.collections WHERE name = 'other'" >/dev/null
"$BIN" rag ingest "$docs/a.md" --collection "other" --embed-model fake-embed >/dev/null 2>&1
eq "retrieve after the collection was recreated" "$(retrieve '{"collection":"other","query":"pets","k":1}' | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["data"][0]["text"])')" "## Pets

Cats and dogs are animals."

# recreated with the same model and dimension (a new id), then dropped: the
# pooled connection's cached row is never served
sql "DELETE FROM kanoa.collections WHERE name = 'other'" >/dev/null
"$BIN" rag ingest "$docs/b.txt" --collection "other" --embed-model fake-embed \
    --meta 'note=say "hi" \ caf'$'\xc3\xa9' >/dev/null 2>&1
eq "retrieve after a same-model recreate" "$(retrieve '{"collection":"other","query":"pets","k":5}' | "$PY" -c 'import json,sys; d=json.loads(sys.stdin.readline())["data"]; print("|".join(h["text"] for h in d), d[0]["metadata"]["note"])')" \
    'Changed text for b. say "hi" \ caf'$'\xc3\xa9'
eq "retrieve metadata = rag query --json" "$(retrieve '{"collection":"other","query":"pets","k":5}')" \
    "$("$BIN" rag query "pets" --collection other -k 5 --json)"$'\n200'
sql "DELETE FROM kanoa.collections WHERE name = 'other'" >/dev/null
eq "retrieve after the collection was dropped" "$(retrieve '{"collection":"other","query":"pets"}')" \
    '{"error":{"message":"collection '"'other'"' does not exist","type":"NotFoundError","param":"collection","code":404}}'$'\n404'

# ---- CLI usage -------------------------------------------------------------
"$BIN" rag --bogus >/dev/null 2>&1; eq "rag bad flag exits 2" "$?" "2"
"$BIN" rag query "x" >/dev/null 2>&1; eq "query without --collection exits 2" "$?" "2"
"$BIN" rag query "x" -c "$C" --mode fuzzy >/dev/null 2>&1; eq "bad mode exits 2" "$?" "2"
"$BIN" rag ingest "$docs" -c "$C" --chunk-tokens 100 --overlap 60 >/dev/null 2>&1; eq "overlap over half exits 2" "$?" "2"
"$BIN" db --help | grep -q "run as the 'postgres' user"; eq "db --help mentions root" "$?" "0"
"$BIN" rag --help >/dev/null; eq "rag --help exits 0" "$?" "0"
out=$("$BIN" rag list)
check "rag list" grep -Eq '^corpus +fake-embed +32 +80 +80$' <<<"$out"
out=$("$BIN" rag query "x" -c "$C" --database-url "postgresql://kanoa:wrong@127.0.0.1:1/kanoa" 2>&1)
eq "unreachable database exits 1" "$?" "1"
check "unreachable database message" grep -q "^kanoa-mlops rag query: cannot connect to the database:" <<<"$out"

# ---- stop ------------------------------------------------------------------
"$BIN" db stop --data-dir "$pgdir" >/dev/null 2>&1; eq "db stop" "$?" "0"
"$BIN" db status --data-dir "$pgdir" >/dev/null 2>&1; eq "db status after stop exits 3" "$?" "3"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
