/* test_cli.c - the helpers shared by the subcommands (src/cli/cli.c): number
 * and size parsing with exact accepted values and exact rejections. */
#include "cli/cli.h"

#include <criterion/criterion.h>

TestSuite(cli, .timeout = 30);

Test(cli, parse_size_units)
{
    unsigned long long v = 0;
    cr_assert_eq(cli_parse_size("512", &v), 0);
    cr_assert_eq(v, 512ull);
    cr_assert_eq(cli_parse_size("1.5K", &v), 0);
    cr_assert_eq(v, 1536ull);
    cr_assert_eq(cli_parse_size("8GiB", &v), 0);
    cr_assert_eq(v, 8ull << 30);
    cr_assert_eq(cli_parse_size("2T", &v), 0);
    cr_assert_eq(v, 2ull << 40);
}

/* strtod accepts "nan" and "inf"; neither is a size (nan used to pass and be
 * cast to an integer, which is undefined). */
Test(cli, parse_size_rejects)
{
    unsigned long long v = 7;
    const char *bad[] = {"", "x", "-1", "1Q", "nan", "NaN", "nanG", "inf",
                         "infK", "1e300", "20000000T", "1KBx"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(cli_parse_size(bad[i], &v), -1, "accepted '%s'", bad[i]);
    cr_assert_eq(v, 7ull);
}

Test(cli, parse_long_range)
{
    long v = 0;
    cr_assert_eq(cli_parse_long("42", 0, 100, &v), 0);
    cr_assert_eq(v, 42);
    cr_assert_eq(cli_parse_long("101", 0, 100, &v), -1);
    cr_assert_eq(cli_parse_long("-1", 0, 100, &v), -1);
    cr_assert_eq(cli_parse_long("4x", 0, 100, &v), -1);
    cr_assert_eq(cli_parse_long("", 0, 100, &v), -1);
    cr_assert_eq(cli_parse_long("99999999999999999999", 0, 100, &v), -1);
    cr_assert_eq(v, 42);
}
