/* test_chat.c - chat template families: detection, overrides and the exact
 * prompt text for system + multi-turn + add_generation_prompt. */
#include "base/buf.h"
#include "engine/chat.h"

#include <criterion/criterion.h>
#include <string.h>

TestSuite(chat, .timeout = 30);

static const struct chat_msg conv[] = {
    {"system", "  You are terse.\n"},
    {"user", " Hi there "},
    {"assistant", "Hello!"},
    {"user", "What is 2+2?"},
};
#define NCONV (sizeof(conv) / sizeof(conv[0]))

static void expect_render(enum chat_family f, const struct chat_msg *m, size_t n,
                          struct chat_opts o, const char *want)
{
    struct km_buf b;
    struct km_err err;
    km_buf_init(&b, 1 << 16);
    int rc = chat_render(f, m, n, &o, &b, &err);
    cr_assert_eq(rc, KM_OK, "%s: %s", chat_family_name(f), err.msg);
    cr_expect_str_eq(km_buf_str(&b), want, "%s rendered:\n%s\n--- want:\n%s",
                     chat_family_name(f), km_buf_str(&b), want);
    km_buf_free(&b);
}

Test(chat, detect_by_marker)
{
    struct { const char *tmpl; enum chat_family f; } cases[] = {
        {"{% set content = '<|start_header_id|>' + message['role'] %}", CHAT_LLAMA3},
        {"{{- \"<|start_header_id|>system\" }}{{- \"Cutting Knowledge Date: December 2023\\n\" }}", CHAT_LLAMA31},
        {"<|start_header_id|> Cutting Knowledge Date {% set date_string = strftime_now(\"%d %b %Y\") %}", CHAT_LLAMA32},
        {"{{ bos_token }}{{ '<start_of_turn>' + role + '\\n' }}", CHAT_GEMMA},
        {"{{'<|im_start|>' + message['role'] + '\\n'}}", CHAT_CHATML},
        {"{{ '[INST] ' + message['content'] + ' [/INST]' }}", CHAT_MISTRAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum chat_family f;
        struct km_err err;
        cr_assert_eq(chat_detect(cases[i].tmpl, &f, &err), KM_OK, "case %zu: %s", i, err.msg);
        cr_expect_eq(f, cases[i].f, "case %zu: got %s", i, chat_family_name(f));
    }
}

Test(chat, unknown_template_names_the_fix)
{
    enum chat_family f;
    struct km_err err;
    cr_assert_eq(chat_detect("{{ messages[0].content }}", &f, &err), KM_ENOTFOUND);
    cr_expect_str_eq(err.msg, "the model's chat template is not a known format; choose one with "
                     "--chat-template NAME (llama3, llama3.1, llama3.2, gemma, chatml, mistral)");
    cr_assert_eq(chat_detect(NULL, &f, &err), KM_ENOTFOUND);
    cr_expect(strstr(err.msg, "--chat-template") != NULL, "%s", err.msg);
    cr_assert_eq(chat_select("vicuna", "<|im_start|>", &f, &err), KM_ENOTFOUND);
    cr_expect_str_eq(err.msg, "chat template \"vicuna\" is unknown (valid names: llama3, llama3.1, "
                     "llama3.2, gemma, chatml, mistral)");
}

Test(chat, override_beats_detection)
{
    enum chat_family f;
    struct km_err err;
    cr_assert_eq(chat_select("chatml", "<start_of_turn>", &f, &err), KM_OK);
    cr_expect_eq(f, CHAT_CHATML);
    cr_assert_eq(chat_select(NULL, "<start_of_turn>", &f, &err), KM_OK);
    cr_expect_eq(f, CHAT_GEMMA);
    cr_assert_eq(chat_select("", "[INST]", &f, &err), KM_OK);
    cr_expect_eq(f, CHAT_MISTRAL);
    cr_assert_eq(chat_select("{{ '<|im_start|>' + role }}", "<start_of_turn>", &f, &err), KM_OK);
    cr_expect_eq(f, CHAT_CHATML);
    cr_assert_eq(chat_family_from_name("gemma3", &f, &err), KM_OK);
    cr_expect_eq(f, CHAT_GEMMA);
}

Test(chat, llama3_exact)
{
    expect_render(CHAT_LLAMA3, conv, NCONV, (struct chat_opts){.add_generation_prompt = true, .with_bos = true},
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect_render(CHAT_LLAMA3, conv + 1, 1, (struct chat_opts){0},
        "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>");
}

Test(chat, llama31_system_block)
{
    expect_render(CHAT_LLAMA31, conv, 2, (struct chat_opts){.add_generation_prompt = true, .with_bos = true},
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
    /* no system message: the block is still emitted, empty */
    expect_render(CHAT_LLAMA32, conv + 1, 1, (struct chat_opts){.date_string = "01 Jan 2026"},
        "<|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 01 Jan 2026\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>");
}

Test(chat, gemma_folds_system_into_first_user_turn)
{
    expect_render(CHAT_GEMMA, conv, NCONV, (struct chat_opts){.add_generation_prompt = true, .with_bos = true},
        "<bos><start_of_turn>user\n  You are terse.\n\n\nHi there<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
        "<start_of_turn>model\n");
    expect_render(CHAT_GEMMA, conv + 1, 1, (struct chat_opts){0},
        "<start_of_turn>user\nHi there<end_of_turn>\n");
}

Test(chat, chatml_exact)
{
    expect_render(CHAT_CHATML, conv, NCONV, (struct chat_opts){.add_generation_prompt = true, .with_bos = true},
        "<|im_start|>system\n  You are terse.\n<|im_end|>\n"
        "<|im_start|>user\n Hi there <|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n");
}

Test(chat, mistral_exact)
{
    expect_render(CHAT_MISTRAL, conv, NCONV, (struct chat_opts){.add_generation_prompt = true, .with_bos = true},
        "<s>[INST]   You are terse.\n\n\n Hi there  [/INST]Hello!</s>[INST] What is 2+2? [/INST]");
    expect_render(CHAT_MISTRAL, conv + 1, 1, (struct chat_opts){0}, "[INST]  Hi there  [/INST]");
}

Test(chat, roles_must_alternate_and_buffer_is_untouched)
{
    const struct chat_msg bad[] = {{"user", "a"}, {"user", "b"}};
    struct km_buf b;
    struct km_err err;
    km_buf_init(&b, 1 << 10);
    km_buf_puts(&b, "keep");
    cr_assert_eq(chat_render(CHAT_GEMMA, bad, 2, NULL, &b, &err), KM_EINVAL);
    cr_expect_str_eq(err.msg, "chat: message 1 has role \"user\" but this template needs alternating "
                     "user/assistant turns after an optional first system message (expected \"assistant\")");
    cr_assert_eq(chat_render(CHAT_MISTRAL, bad, 2, NULL, &b, &err), KM_EINVAL);
    const struct chat_msg late_sys[] = {{"user", "a"}, {"system", "b"}};
    cr_assert_eq(chat_render(CHAT_CHATML, late_sys, 2, NULL, &b, &err), KM_EINVAL);
    cr_expect_str_eq(err.msg, "chat: message 1 is a system message; only the first message may be one");
    /* llama3 and chatml accept any order of user/assistant */
    cr_assert_eq(chat_render(CHAT_LLAMA3, bad, 2, NULL, &b, &err), KM_OK);
    cr_expect_str_eq(km_buf_str(&b), "keep<|start_header_id|>user<|end_header_id|>\n\na<|eot_id|>"
                     "<|start_header_id|>user<|end_header_id|>\n\nb<|eot_id|>");
    km_buf_free(&b);
    km_buf_init(&b, 16);
    cr_assert_eq(chat_render(CHAT_CHATML, conv, NCONV, NULL, &b, &err), KM_ERANGE);
    cr_expect_eq(b.len, 0);
    km_buf_free(&b);
}

Test(chat, stop_texts)
{
    const char *const *t = chat_stop_texts(CHAT_GEMMA);
    cr_assert_str_eq(t[0], "<end_of_turn>");
    cr_assert_str_eq(t[1], "<eos>");
    cr_assert_null(t[2]);
    t = chat_stop_texts(CHAT_LLAMA31);
    cr_assert_str_eq(t[0], "<|eot_id|>");
    cr_assert_str_eq(t[1], "<|eom_id|>");
    cr_assert_str_eq(t[2], "<|end_of_text|>");
    cr_assert_null(chat_stop_texts(CHAT_NONE)[0]);
}
