/* chat.h - chat templates: messages (role + text) -> prompt text.
 *
 * Purpose. Render a conversation exactly as the model's Jinja chat template
 * would, for the template families kanoa-mlops serves, without a Jinja
 * interpreter. The family is recognized from the text of
 * tokenizer.chat_template by a distinctive marker, or named explicitly
 * (`--chat-template NAME` overrides detection):
 *
 *   name       marker in the template         renders (msgs trimmed where noted)
 *   llama3     <|start_header_id|>            <|begin_of_text|> + per message
 *              "<|start_header_id|>ROLE<|end_header_id|>\n\nTRIM(TEXT)<|eot_id|>";
 *              generation prompt "<|start_header_id|>assistant<|end_header_id|>\n\n"
 *   llama3.1   ... + "Cutting Knowledge Date"   as llama3, but always a system
 *              block first: "Cutting Knowledge Date: December 2023\nToday Date:
 *              DATE\n\n" + TRIM(system text); DATE defaults to "26 Jul 2024"
 *   llama3.2   ... + "strftime_now"             as llama3.1, DATE defaults to
 *              today (UTC, "%d %b %Y")
 *   gemma      <start_of_turn>                <bos> + per message
 *              "<start_of_turn>{user|model}\nTRIM(TEXT)<end_of_turn>\n"; a leading
 *              system message's text + "\n\n" is prepended (untrimmed) to the
 *              first turn; roles must alternate user/model; generation prompt
 *              "<start_of_turn>model\n"
 *   chatml     <|im_start|>                   per message
 *              "<|im_start|>ROLE\nTEXT<|im_end|>\n" (no BOS, no trim);
 *              generation prompt "<|im_start|>assistant\n"
 *   mistral    [INST]                         <s> + "[INST] USER [/INST]" then
 *              "ASSISTANT</s>" per turn (Mistral-7B-Instruct v0.1/v0.2); a
 *              leading system message becomes "SYSTEM\n\nUSER" in the first
 *              user turn; roles must alternate; the prompt already ends with
 *              [/INST], so add_generation_prompt adds nothing
 *
 * Markers are tried in the order above (llama3 first). Detection of an
 * unknown template, or no template and no override, fails with KM_ENOTFOUND
 * and a message naming the fix (--chat-template llama3|gemma|chatml|mistral).
 *
 * BOS. Templates start with the BOS text; the tokenizer may add BOS too. Use
 * exactly one: either render with with_bos = false and encode with
 * add_special = true, or render with with_bos = true and encode with
 * add_special = false. Always encode prompts with parse_special = true.
 *
 * Ownership. chat_render appends to a caller-owned km_buf; strings returned
 * by chat_family_name / chat_stop_texts are static. Messages are borrowed.
 *
 * Thread-safety. All functions are reentrant.
 */
#ifndef ENG_CHAT_H
#define ENG_CHAT_H

#include "base/buf.h"
#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tok_vocab;

enum chat_family {
    CHAT_NONE = 0,
    CHAT_LLAMA3 = 1,
    CHAT_LLAMA31 = 2,
    CHAT_LLAMA32 = 3,
    CHAT_GEMMA = 4,
    CHAT_CHATML = 5,
    CHAT_MISTRAL = 6,
};

struct chat_msg {
    const char *role;    /* "system", "user", "assistant" (others verbatim
                            where the format allows: llama3, chatml) */
    const char *content; /* UTF-8 text, NUL-terminated */
};

struct chat_opts {
    bool add_generation_prompt; /* open the assistant turn at the end */
    bool with_bos;              /* start with the BOS text (see BOS above) */
    const char *date_string;    /* llama3.1/3.2 "Today Date"; NULL = default */
};

/* "llama3", "llama3.1", "llama3.2", "gemma", "chatml", "mistral"; "none". */
const char *chat_family_name(enum chat_family f);
/* Family by name (case-sensitive, names above; also "llama-3", "gemma3",
 * "chat-ml", "mistral-v1"). KM_ENOTFOUND lists the valid names. */
int chat_family_from_name(const char *name, enum chat_family *out,
                          struct km_err *err);
/* Family from a Jinja template's text (NULL = no template). */
int chat_detect(const char *template_text, enum chat_family *out,
                struct km_err *err);
/* override_name when not NULL/empty, else chat_detect(template_text). An
 * override that contains "{{" or "{%" is Jinja text and is detected like a
 * model template. */
int chat_select(const char *override_name, const char *template_text,
                enum chat_family *out, struct km_err *err);

/* Append the prompt for msgs[0..n) to out. KM_EINVAL names the message at
 * fault (NULL role/content, roles that do not alternate where the template
 * requires it, a system message that is not first); KM_ERANGE when out is
 * full. out is unchanged on failure. */
int chat_render(enum chat_family f, const struct chat_msg *msgs, size_t n,
                const struct chat_opts *opts, struct km_buf *out,
                struct km_err *err);

/* Texts of the tokens that end an assistant turn for the family, NULL-
 * terminated static array (e.g. llama3: <|eot_id|>, <|eom_id|>,
 * <|end_of_text|>; gemma: <end_of_turn>, <eos>). */
const char *const *chat_stop_texts(enum chat_family f);
/* The ids of chat_stop_texts present in v, written to ids[0..cap); *n gets
 * how many were found (at most cap). */
void chat_stop_ids(enum chat_family f, const struct tok_vocab *v,
                   int32_t *ids, size_t cap, size_t *n);

#endif
