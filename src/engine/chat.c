/* chat.c - the chat template families of chat.h, rendered directly.
 *
 * Each renderer reproduces what the family's Jinja template prints for
 * messages of string content (no tools); see chat.h for the exact formats.
 * Rendering goes to a scratch position in the caller's buffer and is rolled
 * back on any error, so the buffer never holds half a prompt. */
#include "engine/chat.h"

#include "engine/tok.h"

#include <string.h>
#include <time.h>

static const struct {
    const char *name;
    enum chat_family f;
} names[] = {
    {"llama3", CHAT_LLAMA3},   {"llama-3", CHAT_LLAMA3},
    {"llama3.1", CHAT_LLAMA31}, {"llama3.2", CHAT_LLAMA32},
    {"gemma", CHAT_GEMMA},     {"gemma3", CHAT_GEMMA},
    {"chatml", CHAT_CHATML},   {"chat-ml", CHAT_CHATML},
    {"mistral", CHAT_MISTRAL}, {"mistral-v1", CHAT_MISTRAL},
};

#define VALID_NAMES "llama3, llama3.1, llama3.2, gemma, chatml, mistral"

const char *chat_family_name(enum chat_family f)
{
    switch (f) {
    case CHAT_LLAMA3: return "llama3";
    case CHAT_LLAMA31: return "llama3.1";
    case CHAT_LLAMA32: return "llama3.2";
    case CHAT_GEMMA: return "gemma";
    case CHAT_CHATML: return "chatml";
    case CHAT_MISTRAL: return "mistral";
    case CHAT_NONE: break;
    }
    return "none";
}

int chat_family_from_name(const char *name, enum chat_family *out,
                          struct km_err *err)
{
    for (size_t i = 0; name && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].f;
            return KM_OK;
        }
    }
    *out = CHAT_NONE;
    return km_fail(err, KM_ENOTFOUND, "chat template \"%s\" is unknown (valid names: " VALID_NAMES ")",
                   name ? name : "");
}

int chat_detect(const char *t, enum chat_family *out, struct km_err *err)
{
    *out = CHAT_NONE;
    if (!t || !*t)
        return km_fail(err, KM_ENOTFOUND, "the model has no chat template (tokenizer.chat_template); "
                       "choose one with --chat-template NAME (" VALID_NAMES ")");
    if (strstr(t, "<|start_header_id|>")) {
        *out = CHAT_LLAMA3;
        if (strstr(t, "Cutting Knowledge Date"))
            *out = strstr(t, "strftime_now") ? CHAT_LLAMA32 : CHAT_LLAMA31;
    } else if (strstr(t, "<start_of_turn>")) {
        *out = CHAT_GEMMA;
    } else if (strstr(t, "<|im_start|>")) {
        *out = CHAT_CHATML;
    } else if (strstr(t, "[INST]")) {
        *out = CHAT_MISTRAL;
    } else {
        return km_fail(err, KM_ENOTFOUND, "the model's chat template is not a known format; "
                       "choose one with --chat-template NAME (" VALID_NAMES ")");
    }
    return KM_OK;
}

int chat_select(const char *override_name, const char *template_text,
                enum chat_family *out, struct km_err *err)
{
    if (override_name && (strstr(override_name, "{{") || strstr(override_name, "{%")))
        return chat_detect(override_name, out, err); /* Jinja text given */
    if (override_name && *override_name)
        return chat_family_from_name(override_name, out, err);
    return chat_detect(template_text, out, err);
}

/* ---- rendering ---------------------------------------------------------- */

struct out {
    struct km_buf *b;
    int rc;  /* first append failure, KM_OK otherwise */
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->rc == KM_OK)
        o->rc = km_buf_append(o->b, s, n);
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Jinja's |trim: strip leading and trailing whitespace. */
static void put_trim(struct out *o, const char *s)
{
    const char *e = s + strlen(s);
    while (s < e && strchr(" \t\n\r\f\v", *s))
        s++;
    while (e > s && strchr(" \t\n\r\f\v", e[-1]))
        e--;
    put(o, s, (size_t)(e - s));
}

static bool is_role(const struct chat_msg *m, const char *role)
{
    return strcmp(m->role, role) == 0;
}

static void llama3_system_block(struct out *o, const struct chat_msg *sys,
                                enum chat_family f, const char *date)
{
    char today[32];
    if (!date && f == CHAT_LLAMA32) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(today, sizeof(today), "%d %b %Y", &tm);
        date = today;
    }
    puts_(o, "<|start_header_id|>system<|end_header_id|>\n\n");
    puts_(o, "Cutting Knowledge Date: December 2023\nToday Date: ");
    puts_(o, date ? date : "26 Jul 2024");
    puts_(o, "\n\n");
    if (sys)
        put_trim(o, sys->content);
    puts_(o, "<|eot_id|>");
}

static int render_llama3(enum chat_family f, const struct chat_msg *m,
                         size_t n, const struct chat_opts *op, struct out *o)
{
    size_t i = 0;
    if (op->with_bos && (n > 0 || f != CHAT_LLAMA3))
        puts_(o, "<|begin_of_text|>");
    if (f != CHAT_LLAMA3) {
        bool has_sys = n > 0 && is_role(&m[0], "system");
        llama3_system_block(o, has_sys ? &m[0] : NULL, f, op->date_string);
        i = has_sys ? 1 : 0;
    }
    for (; i < n; i++) {
        puts_(o, "<|start_header_id|>");
        puts_(o, m[i].role);
        puts_(o, "<|end_header_id|>\n\n");
        put_trim(o, m[i].content);
        puts_(o, "<|eot_id|>");
    }
    if (op->add_generation_prompt)
        puts_(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return KM_OK;
}

static int render_chatml(const struct chat_msg *m, size_t n,
                         const struct chat_opts *op, struct out *o)
{
    for (size_t i = 0; i < n; i++) {
        puts_(o, "<|im_start|>");
        puts_(o, m[i].role);
        puts_(o, "\n");
        puts_(o, m[i].content);
        puts_(o, "<|im_end|>\n");
    }
    if (op->add_generation_prompt)
        puts_(o, "<|im_start|>assistant\n");
    return KM_OK;
}

/* Gemma and Mistral: optional leading system message, then strictly
 * alternating user/assistant turns; *first is the index of the first turn. */
static int check_alternation(const struct chat_msg *m, size_t n, size_t *first,
                             struct km_err *err)
{
    size_t f = n > 0 && is_role(&m[0], "system") ? 1 : 0;
    *first = f;
    for (size_t i = f; i < n; i++) {
        bool want_user = (i - f) % 2 == 0;
        if (is_role(&m[i], want_user ? "user" : "assistant"))
            continue;
        return km_fail(err, KM_EINVAL, "chat: message %zu has role \"%s\" but this template needs "
                       "alternating user/assistant turns after an optional first system message "
                       "(expected \"%s\")", i, m[i].role, want_user ? "user" : "assistant");
    }
    return KM_OK;
}

/* Gemma and Mistral have no system turn: the system text opens turn 1. */
static void put_folded_system(struct out *o, const struct chat_msg *m, size_t i,
                              size_t first)
{
    if (i == first && first == 1) {
        puts_(o, m[0].content);
        puts_(o, "\n\n");
    }
}

/* Turns from index first on (after check_alternation). */
static void gemma_turns(const struct chat_msg *m, size_t n, size_t first,
                        const struct chat_opts *op, struct out *o)
{
    if (op->with_bos)
        puts_(o, "<bos>");
    for (size_t i = first; i < n; i++) {
        puts_(o, "<start_of_turn>");
        puts_(o, is_role(&m[i], "assistant") ? "model" : m[i].role);
        puts_(o, "\n");
        put_folded_system(o, m, i, first);
        put_trim(o, m[i].content);
        puts_(o, "<end_of_turn>\n");
    }
    if (op->add_generation_prompt)
        puts_(o, "<start_of_turn>model\n");
}

static void mistral_turns(const struct chat_msg *m, size_t n, size_t first,
                          const struct chat_opts *op, struct out *o)
{
    if (op->with_bos)
        puts_(o, "<s>");
    for (size_t i = first; i < n; i++) {
        if (is_role(&m[i], "assistant")) {
            puts_(o, m[i].content);
            puts_(o, "</s>");
            continue;
        }
        puts_(o, "[INST] ");
        put_folded_system(o, m, i, first);
        puts_(o, m[i].content);
        puts_(o, " [/INST]");
    }
}

static int render_alternating(enum chat_family f, const struct chat_msg *m, size_t n,
                              const struct chat_opts *op, struct out *o,
                              struct km_err *err)
{
    size_t first;
    int rc = check_alternation(m, n, &first, err);
    if (rc != KM_OK)
        return rc;
    if (f == CHAT_GEMMA)
        gemma_turns(m, n, first, op, o);
    else
        mistral_turns(m, n, first, op, o);
    return KM_OK;
}

static int check_msgs(const struct chat_msg *m, size_t n, struct km_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!m[i].role || !m[i].content)
            return km_fail(err, KM_EINVAL, "chat: message %zu has no %s", i,
                           m[i].role ? "content" : "role");
        if (i > 0 && is_role(&m[i], "system"))
            return km_fail(err, KM_EINVAL, "chat: message %zu is a system message; only the first message may be one", i);
    }
    return KM_OK;
}

int chat_render(enum chat_family f, const struct chat_msg *msgs, size_t n,
                const struct chat_opts *opts, struct km_buf *b,
                struct km_err *err)
{
    static const struct chat_opts defaults = {0};
    const struct chat_opts *op = opts ? opts : &defaults;
    struct out o = {b, KM_OK};
    size_t len0 = b->len;
    int rc = check_msgs(msgs, n, err);
    if (rc != KM_OK)
        return rc;
    switch (f) {
    case CHAT_LLAMA3:
    case CHAT_LLAMA31:
    case CHAT_LLAMA32:
        rc = render_llama3(f, msgs, n, op, &o);
        break;
    case CHAT_GEMMA:
    case CHAT_MISTRAL:
        rc = render_alternating(f, msgs, n, op, &o, err);
        break;
    case CHAT_CHATML:
        rc = render_chatml(msgs, n, op, &o);
        break;
    default:
        return km_fail(err, KM_EINVAL, "chat: no template family chosen; use --chat-template NAME (" VALID_NAMES ")");
    }
    if (rc == KM_OK && o.rc != KM_OK)
        rc = km_fail(err, o.rc, "chat: the prompt does not fit in %zu bytes", b->max);
    if (rc != KM_OK) {
        b->len = len0;
        if (b->data)
            b->data[len0] = '\0';
    }
    return rc;
}

/* ---- stop tokens -------------------------------------------------------- */

const char *const *chat_stop_texts(enum chat_family f)
{
    static const char *const llama3[] = {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", NULL};
    static const char *const gemma[] = {"<end_of_turn>", "<eos>", NULL};
    static const char *const chatml[] = {"<|im_end|>", "<|endoftext|>", NULL};
    static const char *const mistral[] = {"</s>", NULL};
    static const char *const none[] = {NULL};
    switch (f) {
    case CHAT_LLAMA3:
    case CHAT_LLAMA31:
    case CHAT_LLAMA32:
        return llama3;
    case CHAT_GEMMA:
        return gemma;
    case CHAT_CHATML:
        return chatml;
    case CHAT_MISTRAL:
        return mistral;
    case CHAT_NONE:
        break;
    }
    return none;
}

void chat_stop_ids(enum chat_family f, const struct tok_vocab *v,
                   int32_t *ids, size_t cap, size_t *n)
{
    const char *const *t = chat_stop_texts(f);
    *n = 0;
    for (size_t i = 0; t[i] && *n < cap; i++) {
        int32_t id = tok_find(v, t[i], strlen(t[i]));
        if (id != TOK_NULL)
            ids[(*n)++] = id;
    }
}
