/* test_base.c - base/: errors, counted heap, bounded buffers. */
#include "base/buf.h"
#include "base/err.h"
#include "base/mem.h"

#include <criterion/criterion.h>
#include <string.h>

TestSuite(base, .timeout = 30);

Test(base, error_names_and_messages)
{
    cr_assert_str_eq(km_errname(KM_ENOMEM), "KM_ENOMEM");
    cr_assert_str_eq(km_strerror(KM_ENOMEM), "out of memory");
    cr_assert_str_eq(km_strerror(9999), "unknown error");
    struct km_err e;
    km_err_clear(&e);
    cr_assert_str_eq(km_err_text(&e), "success");
    int rc = km_fail(&e, KM_EFORMAT, "field %s at byte %d", "n_dims", 24);
    cr_assert_eq(rc, KM_EFORMAT);
    cr_assert_str_eq(e.msg, "field n_dims at byte 24");
    km_err_prefix(&e, "model.gguf");
    cr_assert_str_eq(e.msg, "model.gguf: field n_dims at byte 24");
}

Test(base, heap_counts_and_injected_failure)
{
    long before = km_mem_live();
    char *s = km_strdup("hello");
    cr_assert_str_eq(s, "hello");
    cr_assert_eq(km_mem_live(), before + 1);
    km_free(s);
    km_free(NULL);
    cr_assert_eq(km_mem_live(), before);
    cr_assert_null(km_calloc((size_t)-1, 16), "overflow must fail");
    km_mem_fail_after(0);
    cr_assert_null(km_malloc(8));
    void *p = km_malloc(8);
    cr_assert_not_null(p);
    km_free(p);
}

Test(base, buffer_respects_maximum)
{
    struct km_buf b;
    km_buf_init(&b, 10);
    cr_assert_eq(km_buf_puts(&b, "0123456789"), KM_OK);
    cr_assert_eq(km_buf_putc(&b, 'x'), KM_ERANGE);
    cr_assert_eq(b.len, 10);
    cr_assert_str_eq(km_buf_str(&b), "0123456789");
    km_buf_reset(&b);
    cr_assert_eq(km_buf_printf(&b, "%d-%s", 42, "ab"), KM_OK);
    cr_assert_str_eq(km_buf_str(&b), "42-ab");
    cr_assert_eq(km_buf_printf(&b, "%s", "too long!"), KM_ERANGE);
    cr_assert_str_eq(km_buf_str(&b), "42-ab");
    size_t n = 0;
    char *d = km_buf_take(&b, &n);
    cr_assert_eq(n, 5);
    km_free(d);
    km_buf_free(&b);
}
