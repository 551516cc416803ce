/* tok.h - tokenizers read from GGUF metadata: byte-level BPE (gpt2),
 * SentencePiece-BPE with byte fallback (llama) and WordPiece (bert).
 *
 * Purpose. Turn UTF-8 text into token ids and back exactly as llama.cpp does
 * for the same GGUF vocabulary (checked against the ggml-vocab-* vectors):
 *   - tokenizer.ggml.model "gpt2": pre-tokenizer from tokenizer.ggml.pre:
 *     "llama-bpe"/"llama3"/"llama-v3" (Llama 3 rules, ignore_merges) or
 *     "gpt-2" (GPT-2 rules) or "default"/absent (llama.cpp's default set:
 *     punctuation runs, GPT-2 rules, digit runs, 3-digit groups), then
 *     ranked merges;
 *   - "llama": SentencePiece BPE over scores, "<0xXX>" byte fallback,
 *     ' ' -> U+2581, dummy space prefix when add_space_prefix (Llama 2) and
 *     none for Gemma;
 *   - "bert": WordPiece over the U+2581-prefixed vocabulary with lower-casing,
 *     accent stripping and punctuation splitting.
 * Before the model tokenizer runs, special-token texts are cut out of the
 * input (longest first): USER_DEFINED always, CONTROL/UNKNOWN only with
 * parse_special.
 *
 * Contract.
 *   - tok_load reads only the tokenizer.* keys through gguf.h; it copies
 *     everything it needs, so the gguf_file may be closed afterwards.
 *   - Input text may be any bytes: invalid UTF-8 is never a crash. BPE
 *     replaces each invalid byte with U+FFFD and WordPiece drops it (as
 *     llama.cpp does); SentencePiece keeps it and emits its <0xXX> token.
 *   - Token ids out of range given to decoding functions fail with KM_ERANGE
 *     naming the id; attribute queries return 0/false for them.
 *   - Sizes are bounded: text longer than TOK_MAX_TEXT bytes fails with
 *     KM_ERANGE; vocabulary token texts longer than TOK_MAX_TOKEN_LEN bytes
 *     make tok_load fail with KM_EFORMAT.
 *
 * Ownership. tok_load returns a heap object freed with tok_free (accepts
 * NULL). tok_encode hands back a km_malloc'd id array the caller frees with
 * km_free. Decoding appends to a caller-owned struct km_buf. Strings returned
 * by getters (tok_text, tok_chat_template) live until tok_free.
 *
 * Thread-safety. A loaded struct tok_vocab is immutable: any number of threads
 * may encode/decode with it concurrently. A struct tok_stream belongs to one
 * sequence and one thread at a time.
 */
#ifndef ENG_TOK_H
#define ENG_TOK_H

#include "base/buf.h"
#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gguf_file;

#define TOK_NULL (-1)                      /* "no such token" */
#define TOK_MAX_TEXT ((size_t)64 << 20)    /* longest text tok_encode takes */
#define TOK_MAX_TOKEN_LEN 4096             /* longest vocabulary entry */

enum tok_model {
    TOK_MODEL_SPM = 1, /* "llama": SentencePiece BPE (Llama 2, Gemma) */
    TOK_MODEL_BPE = 2, /* "gpt2": byte-level BPE (Llama 3, GPT-2) */
    TOK_MODEL_WPM = 3, /* "bert": WordPiece (BERT, bge, MiniLM, nomic) */
};

enum tok_pre {
    TOK_PRE_NONE = 0,   /* SPM and WPM: no regex pre-tokenizer */
    TOK_PRE_GPT2 = 1,   /* "gpt-2" */
    TOK_PRE_LLAMA3 = 2, /* "llama-bpe", "llama3", "llama-v3" */
    TOK_PRE_DEFAULT = 3, /* "default" or absent: llama.cpp's default set */
};

/* Token attributes (bit set), from tokenizer.ggml.token_type, plus TOK_ATTR_EOG
 * for the end-of-generation set (see tok_is_eog). */
enum tok_attr {
    TOK_ATTR_NORMAL = 1u << 0,       /* token_type 1 (also 0/undefined) */
    TOK_ATTR_UNKNOWN = 1u << 1,      /* token_type 2 */
    TOK_ATTR_CONTROL = 1u << 2,      /* token_type 3 */
    TOK_ATTR_USER_DEFINED = 1u << 3, /* token_type 4 */
    TOK_ATTR_UNUSED = 1u << 4,       /* token_type 5 */
    TOK_ATTR_BYTE = 1u << 5,         /* token_type 6 */
    TOK_ATTR_EOG = 1u << 8,          /* stops generation */
};

struct tok_vocab; /* opaque, immutable after tok_load */

/* ---- loading ------------------------------------------------------------ */

/* Build the tokenizer from the tokenizer.* metadata of an open GGUF file.
 * KM_EUNSUPPORTED names an unknown tokenizer.ggml.model; an unknown
 * tokenizer.ggml.pre is logged as a warning and the default set is used (as
 * llama.cpp does);
 * KM_EFORMAT names a missing/mistyped key or a bad entry (e.g. merge 12 has
 * no space, token_type array length differs from tokens). */
int tok_load(const struct gguf_file *f, struct tok_vocab **out,
             struct km_err *err);
void tok_free(struct tok_vocab *v);

/* ---- properties --------------------------------------------------------- */

enum tok_model tok_model(const struct tok_vocab *v);
enum tok_pre tok_pre(const struct tok_vocab *v);
int32_t tok_n_vocab(const struct tok_vocab *v);
/* Special ids from metadata (defaults per model as in llama.cpp); TOK_NULL
 * when the vocabulary has none. For WordPiece, tok_bos is [CLS] and tok_sep
 * is [SEP]. tok_eot is <|eot_id|>/<end_of_turn>/<|im_end|>... when present. */
int32_t tok_bos(const struct tok_vocab *v);
int32_t tok_eos(const struct tok_vocab *v);
int32_t tok_eot(const struct tok_vocab *v);
int32_t tok_unk(const struct tok_vocab *v);
int32_t tok_pad(const struct tok_vocab *v);
int32_t tok_sep(const struct tok_vocab *v);
/* Whether tok_encode with add_special puts BOS first / EOS last. */
bool tok_add_bos(const struct tok_vocab *v);
bool tok_add_eos(const struct tok_vocab *v);
bool tok_add_space_prefix(const struct tok_vocab *v);

/* Attribute bits of `id` (enum tok_attr); 0 when id is out of range. */
uint32_t tok_attr(const struct tok_vocab *v, int32_t id);
/* End of generation: eos, eot, eom and every token whose text is one of
 * <|eot_id|> <|eom_id|> <|end_of_text|> <end_of_turn> <|endoftext|>
 * <|im_end|> <|end|> </s> <eos> (when present). False when out of range. */
bool tok_is_eog(const struct tok_vocab *v, int32_t id);
/* All EOG ids, ascending; *n gets the count. Valid until tok_free. */
const int32_t *tok_eog_ids(const struct tok_vocab *v, size_t *n);
/* Raw vocabulary text of `id` (as stored: GPT-2 byte alphabet, U+2581 for
 * spaces in SPM/WPM) and its length; NULL when out of range. NUL-terminated. */
const char *tok_text(const struct tok_vocab *v, int32_t id, size_t *len);
/* Id of the vocabulary entry whose raw text is exactly text[0..len), or
 * TOK_NULL. Use for special tokens: tok_find(v, "<|eot_id|>", 10). */
int32_t tok_find(const struct tok_vocab *v, const char *text, size_t len);
/* tokenizer.chat_template (NUL-terminated copy) or NULL when absent. */
const char *tok_chat_template(const struct tok_vocab *v);

/* ---- encoding ----------------------------------------------------------- */

/* Tokenize text[0..len) (len may be 0). add_special: prepend BOS / append EOS
 * as tok_add_bos/tok_add_eos say (WordPiece: [CLS] ... [SEP]).
 * parse_special: match CONTROL tokens written as text (e.g. "<|eot_id|>");
 * chat prompts are encoded with parse_special = true. On success *ids is a
 * km_malloc'd array of *n ids (NULL when *n == 0), freed by the caller. */
int tok_encode(const struct tok_vocab *v, const char *text, size_t len,
               bool add_special, bool parse_special, int32_t **ids, size_t *n,
               struct km_err *err);

/* ---- decoding ----------------------------------------------------------- */

/* Append the bytes of one token (its "piece") to out: BPE maps the byte
 * alphabet back to bytes, SPM/WPM turn U+2581 into ' ' and <0xXX> into the
 * byte. CONTROL and UNKNOWN tokens append nothing unless `special` (then
 * their text). A piece may end inside a UTF-8 character: use tok_stream to
 * emit text incrementally. KM_ERANGE for an out-of-range id or a full buffer. */
int tok_piece(const struct tok_vocab *v, int32_t id, bool special,
              struct km_buf *out, struct km_err *err);

/* Append the text of ids[0..n) to out, as llama.cpp's detokenize: with
 * add_space_prefix (Llama-2 SPM) the leading space of the first piece is
 * dropped, so tok_decode(tok_encode(x)) == x for valid UTF-8 x under BPE and
 * SPM. remove_special: skip a leading BOS (then keep the space) and a
 * trailing EOS when the vocabulary adds them. special: render CONTROL text. */
int tok_decode(const struct tok_vocab *v, const int32_t *ids, size_t n,
               bool remove_special, bool special, struct km_buf *out,
               struct km_err *err);

/* Make b valid UTF-8 the way the streaming detokenizer would: each byte
 * that cannot start or continue a character becomes U+FFFD, an incomplete
 * character at the end one U+FFFD (as Hugging Face's lossy decode). Valid
 * text is left untouched; otherwise b's storage is replaced (its max tripled,
 * so the replacement always fits). */
int tok_utf8_lossy(struct km_buf *b, struct km_err *err);

/* ---- streaming detokenizer ---------------------------------------------- */

/* Turns generated tokens into text one token at a time and never emits part
 * of a UTF-8 character: bytes of an incomplete character are held until the
 * token(s) completing it arrive. Output is always valid UTF-8 (RFC 3629):
 * a byte that cannot be part of a valid character is replaced by U+FFFD, and
 * tok_stream_flush turns a held incomplete tail into one U+FFFD. Pieces are
 * not space-stripped (generated text, as llama.cpp's server streams it).
 *
 * Ownership: caller-owned struct; the text returned by feed/flush points into
 * it and stays valid until the next call on the same stream. tok_stream_free
 * releases its buffers (safe on a zeroed or freed struct). After the first
 * few tokens feed allocates nothing (the scratch buffers are reused). */
struct tok_stream {
    const struct tok_vocab *v;
    bool special;             /* render CONTROL/UNKNOWN token text */
    unsigned char held[4];    /* bytes of an incomplete character */
    size_t n_held;
    struct km_buf out;        /* scratch holding the last returned text */
    struct km_buf raw;        /* scratch: held bytes + the new piece */
};

void tok_stream_init(struct tok_stream *s, const struct tok_vocab *v,
                     bool special);
/* Feed one id; *text and *len get the complete characters now available
 * (possibly empty). KM_ERANGE for an out-of-range id (stream unchanged). */
int tok_stream_feed(struct tok_stream *s, int32_t id, const char **text,
                    size_t *len, struct km_err *err);
/* End of generation: *text and *len get U+FFFD if a partial character was held,
 * else empty; the stream is then reset and may be reused. */
void tok_stream_flush(struct tok_stream *s, const char **text, size_t *len);
void tok_stream_free(struct tok_stream *s);

#endif
