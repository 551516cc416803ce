/* chunk.c - structure-aware chunker with a token-count estimate.
 *
 * The text is first cut into blocks: headings (Markdown `#` lines, reST
 * titles followed by an underline), fenced code blocks (``` or ~~~, kept
 * whole), and paragraphs (runs of non-blank lines). Blocks are then packed
 * into chunks up to the token budget. A heading closes the current chunk
 * (a section starts fresh, without overlap); a chunk closed because the
 * budget is full hands about `overlap` tokens of its tail to the next one.
 * A block larger than the budget is split at the last newline, else the last
 * blank, else the last UTF-8 character boundary that fits.
 *
 * The estimate is one token per 4 bytes (ceil), so budgets are byte counts
 * and every chunk is a contiguous slice of the input (overlap included).
 */
#include "rag/rag.h"

#include "base/mem.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define BYTES_PER_TOKEN 4

int rag_token_estimate(const char *s, size_t len)
{
    (void)s;
    size_t t = (len + BYTES_PER_TOKEN - 1) / BYTES_PER_TOKEN;
    return t > 0x7fffffff ? 0x7fffffff : (int)t;
}

int rag_doc_kind_for(const char *path, bool *is_pdf)
{
    static const char *const code_ext[] = {
        "c", "h", "cc", "cpp", "hpp", "py", "js", "ts", "go", "rs", "java",
        "sh", "sql", "rb", "r", "jl", "scala", "kt", "swift", "m", "lua",
        "yaml", "yml", "toml", NULL};
    *is_pdf = false;
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash + 1 : path, '.');
    if (!dot || !dot[1])
        return -1;
    const char *e = dot + 1;
    if (!strcasecmp(e, "md") || !strcasecmp(e, "markdown"))
        return RAG_DOC_MARKDOWN;
    if (!strcasecmp(e, "rst"))
        return RAG_DOC_RST;
    if (!strcasecmp(e, "txt") || !strcasecmp(e, "csv") || !strcasecmp(e, "json"))
        return RAG_DOC_TEXT;
    if (!strcasecmp(e, "pdf")) {
        *is_pdf = true;
        return RAG_DOC_TEXT;
    }
    for (int i = 0; code_ext[i]; i++)
        if (!strcasecmp(e, code_ext[i]))
            return RAG_DOC_CODE;
    return -1;
}

/* ---- lines and blocks --------------------------------------------------- */

struct span {
    size_t a, b;    /* [a, b) */
};

struct block {
    size_t a, b;
    bool heading;
};

struct blocks {
    struct block *v;
    size_t n, cap;
};

static int push_block(struct blocks *bl, size_t a, size_t b, bool heading)
{
    if (bl->n == bl->cap) {
        size_t cap = bl->cap ? bl->cap * 2 : 64;
        struct block *v = km_realloc(bl->v, cap * sizeof *v);
        if (!v)
            return KM_ENOMEM;
        bl->v = v;
        bl->cap = cap;
    }
    bl->v[bl->n++] = (struct block){a, b, heading};
    return KM_OK;
}

/* The line starting at `a`: [a, end) without the newline. */
static struct span line_at(const char *t, size_t len, size_t a)
{
    const char *nl = memchr(t + a, '\n', len - a);
    return (struct span){a, nl ? (size_t)(nl - t) : len};
}

static bool is_blank(const char *t, struct span l)
{
    for (size_t i = l.a; i < l.b; i++)
        if (!isspace((unsigned char)t[i]))
            return false;
    return true;
}

static bool starts_with(const char *t, struct span l, const char *p)
{
    size_t n = strlen(p);
    return l.b - l.a >= n && memcmp(t + l.a, p, n) == 0;
}

static bool md_heading(const char *t, struct span l)
{
    size_t i = l.a;
    while (i < l.b && i - l.a < 7 && t[i] == '#')
        i++;
    size_t hashes = i - l.a;
    return hashes >= 1 && hashes <= 6 && (i == l.b || t[i] == ' ' || t[i] == '\t');
}

/* reST section underline: one repeated punctuation character, >= 3 long. */
static bool rst_underline(const char *t, struct span l)
{
    size_t n = l.b - l.a;
    while (n > 0 && isspace((unsigned char)t[l.a + n - 1]))
        n--;
    if (n < 3 || !strchr("=-~^\"'`#*+:.", t[l.a]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (t[l.a + i] != t[l.a])
            return false;
    return true;
}

/* A fenced code block from the fence line at `l` to the closing fence (or
 * the end of the text); returns the offset just past it. */
static size_t fence_end(const char *t, size_t len, struct span l)
{
    const char *fence = starts_with(t, l, "```") ? "```" : "~~~";
    size_t at = l.b < len ? l.b + 1 : len;
    while (at < len) {
        struct span x = line_at(t, len, at);
        if (starts_with(t, x, fence))
            return x.b;
        at = x.b < len ? x.b + 1 : len;
    }
    return len;
}

static int scan_blocks(const char *t, size_t len, enum rag_doc_kind kind,
                       struct blocks *bl)
{
    size_t at = 0, para = (size_t)-1, para_end = 0;
    int rc = KM_OK;
    while (at < len && rc == KM_OK) {
        struct span l = line_at(t, len, at);
        size_t next = l.b < len ? l.b + 1 : len;
        bool fence = kind == RAG_DOC_MARKDOWN &&
                     (starts_with(t, l, "```") || starts_with(t, l, "~~~"));
        bool head = kind == RAG_DOC_MARKDOWN && md_heading(t, l);
        bool blank = is_blank(t, l);
        bool page = t[l.a] == '\f'; /* pdftotext page break: ends a paragraph */
        bool rst_title = false;
        if (kind == RAG_DOC_RST && !blank && next < len) {
            struct span u = line_at(t, len, next);
            rst_title = rst_underline(t, u) && !rst_underline(t, l);
        }
        if ((fence || head || blank || page || rst_title) && para != (size_t)-1) {
            rc = push_block(bl, para, para_end, false);
            para = (size_t)-1;
        }
        if (rc != KM_OK)
            break;
        if (fence) {
            size_t end = fence_end(t, len, l);
            rc = push_block(bl, l.a, end, false);
            next = end < len ? end + 1 : len;
        } else if (head) {
            rc = push_block(bl, l.a, l.b, true);
        } else if (rst_title) {
            struct span u = line_at(t, len, next);
            rc = push_block(bl, l.a, u.b, true);
            next = u.b < len ? u.b + 1 : len;
        } else if (!blank) {
            if (para == (size_t)-1)
                para = l.a;
            para_end = l.b;
        }
        at = next;
    }
    if (rc == KM_OK && para != (size_t)-1)
        rc = push_block(bl, para, para_end, false);
    return rc;
}

/* ---- packing ------------------------------------------------------------ */

struct packer {
    const char *t;
    size_t max_bytes, overlap_bytes;
    struct rag_chunk *v;
    size_t n, cap;
    bool open;          /* a chunk [a, b) is being filled */
    size_t a, b;
};

static int emit(struct packer *p, size_t a, size_t b)
{
    while (a < b && isspace((unsigned char)p->t[a]))
        a++;
    while (b > a && isspace((unsigned char)p->t[b - 1]))
        b--;
    if (a == b)
        return KM_OK;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        struct rag_chunk *v = km_realloc(p->v, cap * sizeof *v);
        if (!v)
            return KM_ENOMEM;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = (struct rag_chunk){a, b - a, rag_token_estimate(p->t + a, b - a)};
    return KM_OK;
}

/* Start of the overlap taken from the tail of [a, b): a word start about
 * overlap_bytes before b, or b when there is no room for overlap. The
 * overlap is always shorter than the chunk emit() cut from [a, b) (blanks
 * trimmed), so the next chunk starts after this one and never repeats it
 * whole. */
static size_t overlap_start(const struct packer *p, size_t a, size_t b)
{
    while (a < b && isspace((unsigned char)p->t[a]))
        a++;
    if (p->overlap_bytes == 0 || b - a <= p->overlap_bytes)
        return b;
    size_t o = b - p->overlap_bytes;
    while (o < b && !isspace((unsigned char)p->t[o - 1]))
        o++;
    return o;
}

/* Where to cut a range [a, b) longer than the budget: after the last
 * newline, else the last blank, else at a UTF-8 boundary. */
static size_t cut_point(const struct packer *p, size_t a, size_t b)
{
    size_t lim = a + p->max_bytes < b ? a + p->max_bytes : b;
    for (size_t i = lim; i > a + 1; i--)
        if (p->t[i - 1] == '\n')
            return i;
    for (size_t i = lim; i > a + 1; i--)
        if (p->t[i - 1] == ' ' || p->t[i - 1] == '\t')
            return i;
    size_t i = lim;
    while (i > a + 1 && ((unsigned char)p->t[i] & 0xC0) == 0x80)
        i--;
    return i;
}

/* Add block [a, b) to the chunk being filled, closing chunks as needed. */
static int add_block(struct packer *p, size_t a, size_t b)
{
    int rc = KM_OK;
    if (p->open && b - p->a <= p->max_bytes) {
        p->b = b;
        return KM_OK;
    }
    if (p->open) {
        rc = emit(p, p->a, p->b);
        size_t o = overlap_start(p, p->a, p->b);
        a = (o < p->b && b - o <= p->max_bytes) ? o : a;
        p->open = false;
    }
    while (rc == KM_OK && b - a > p->max_bytes) {
        size_t cut = cut_point(p, a, b);
        rc = emit(p, a, cut);
        size_t o = overlap_start(p, a, cut);
        a = (o > a && o < cut) ? o : cut;
    }
    if (rc == KM_OK) {
        p->open = true;
        p->a = a;
        p->b = b;
    }
    return rc;
}

int rag_chunk_text(const char *text, size_t len, enum rag_doc_kind kind,
                   int max_tokens, int overlap, struct rag_chunk **out,
                   size_t *n, struct km_err *err)
{
    *out = NULL;
    *n = 0;
    if (max_tokens < 8 || overlap < 0 || overlap * 2 > max_tokens)
        return km_fail(err, KM_EINVAL,
                       "chunk budget %d tokens with overlap %d: need a budget >= 8 "
                       "and an overlap of at most half of it", max_tokens, overlap);
    struct blocks bl = {0};
    struct packer p = {.t = text,
                       .max_bytes = (size_t)max_tokens * BYTES_PER_TOKEN,
                       .overlap_bytes = (size_t)overlap * BYTES_PER_TOKEN};
    int rc = scan_blocks(text, len, kind, &bl);
    for (size_t i = 0; i < bl.n && rc == KM_OK; i++) {
        if (bl.v[i].heading && p.open) {
            rc = emit(&p, p.a, p.b);
            p.open = false;
        }
        if (rc == KM_OK)
            rc = add_block(&p, bl.v[i].a, bl.v[i].b);
    }
    if (rc == KM_OK && p.open)
        rc = emit(&p, p.a, p.b);
    km_free(bl.v);
    if (rc != KM_OK) {
        km_free(p.v);
        return km_fail(err, rc, "out of memory chunking %zu bytes", len);
    }
    *out = p.v;
    *n = p.n;
    return KM_OK;
}
