/* tok_int.h - private to tok*.c: the loaded vocabulary and the helpers the
 * per-model tokenizers (tok_bpe.c, tok_spm.c, tok_wpm.c) share. */
#ifndef ENG_TOK_INT_H
#define ENG_TOK_INT_H

#include "engine/tok.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tok__entry {
    uint32_t off;   /* text at pool + off, NUL-terminated */
    uint32_t len;
    float score;    /* SPM merge priority */
    uint32_t attr;  /* enum tok_attr */
};

struct tok__merge {  /* one "left right" line of tokenizer.ggml.merges */
    uint32_t off;    /* "left right" at mpool + off */
    uint32_t llen;
    uint32_t rlen;
};

struct tok_vocab {
    enum tok_model model;
    enum tok_pre pre;
    int32_t n;
    struct tok__entry *tok;
    char *pool;
    int32_t *slots;           /* open addressing: text -> id, TOK_NULL empty */
    uint64_t mask;
    char *mpool;
    struct tok__merge *merges; /* rank = index */
    int32_t n_merges;
    int32_t *mslots;          /* "left right" -> rank */
    uint64_t mmask;
    int32_t byte_tok[256];    /* token of each byte (BPE alphabet / <0xXX>) */
    int32_t bos, eos, eot, eom, unk, pad, sep;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    int32_t *special;         /* CONTROL|USER_DEFINED|UNKNOWN, longest first */
    size_t n_special;
    uint32_t *special_lens;   /* distinct lengths of those, descending */
    size_t n_special_lens;
    bool special_first[256];  /* some special text starts with this byte */
    int32_t *eog;
    size_t n_eog;
    size_t max_token_len;
    char *chat_template;
};

/* Growable id array used while encoding. */
struct tok__ids {
    int32_t *v;
    size_t n;
    size_t cap;
};

int tok__push(struct tok__ids *ids, int32_t id, struct km_err *err);
/* Vocabulary lookup of raw text; TOK_NULL when absent. */
int32_t tok__find(const struct tok_vocab *v, const char *s, size_t len);
/* Merge rank of the pair (left, right), or -1. */
int32_t tok__rank(const struct tok_vocab *v, const char *l, size_t ll,
                  const char *r, size_t rl);

/* A merge candidate: adjacent symbols `left` and `right` (of lengths llen and
 * rlen when it was pushed), ordered by key (smaller first), then leftmost.
 * BPE keys by merge rank, SentencePiece by minus the merged token's score.
 * The heap's array is the caller's, sized for every push (tok_heap.c). */
struct tok__cand {
    double key;
    int32_t left, right;
    uint32_t llen, rlen;
};

struct tok__heap {
    struct tok__cand *v;
    size_t n;
};

void tok__heap_push(struct tok__heap *h, struct tok__cand c);
/* Remove and return the first candidate; h->n must be > 0. */
struct tok__cand tok__heap_pop(struct tok__heap *h);

/* A symbol of a word being merged: bytes [off, off + len) of the word, in a
 * doubly linked list (-1 ends it); len is 0 once merged into its left
 * neighbour. */
struct tok__sym {
    uint32_t off;
    uint32_t len;
    int32_t prev, next;
};

/* Push the candidate of symbols l and r (either may be -1: nothing) when
 * they may merge; work is the tokenizer's own state. */
typedef void (*tok__pair_fn)(const struct tok_vocab *v, void *work, int32_t l, int32_t r);

/* The merge loop of BPE and SentencePiece: offer every adjacent pair of
 * syms[0..n) (linked in order), then take the first candidate of heap until
 * none is left, skip it when stale, else merge its right symbol into the
 * left one and offer the two new pairs. */
void tok__merge(const struct tok_vocab *v, struct tok__sym *syms, int32_t n,
                struct tok__heap *heap, tok__pair_fn try_pair, void *work);

/* Per-model tokenizers of one raw-text fragment (no specials inside). */
int tok__bpe(const struct tok_vocab *v, const char *s, size_t len,
             struct tok__ids *out, struct km_err *err);
int tok__spm(const struct tok_vocab *v, const char *s, size_t len,
             struct tok__ids *out, struct km_err *err);
int tok__wpm(const struct tok_vocab *v, const char *s, size_t len,
             struct tok__ids *out, struct km_err *err);

/* Pre-tokenizer: split the code points cps[0..n) into words; ends[k] is the
 * end index (exclusive) of word k. Returns the word count. ends must hold n
 * entries. */
size_t tok__split_llama3(const uint32_t *cps, size_t n, size_t *ends);
size_t tok__split_gpt2(const uint32_t *cps, size_t n, size_t *ends);
/* llama.cpp's default set; tmp is scratch of n entries. */
size_t tok__split_default(const uint32_t *cps, size_t n, size_t *ends,
                          size_t *tmp);

/* GPT-2 byte alphabet: code point of byte b, and the byte of a code point
 * (-1 when cp is not in the alphabet). */
uint32_t tok__byte_to_cp(unsigned char b);
int tok__cp_to_byte(uint32_t cp);

#endif
