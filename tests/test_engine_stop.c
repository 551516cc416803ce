/* test_engine_stop.c - engine/stop: stop strings across token boundaries. */
#include "engine/stop.h"

#include <criterion/criterion.h>
#include <string.h>

TestSuite(engine_stop, .timeout = 30);

/* Feed pieces; collect released text; return whether a stop matched. */
static bool run(const char *const *stops, size_t n, const char *const *pieces,
                char *out, bool flush)
{
    struct eng_stop s;
    struct km_err err;
    cr_assert_eq(eng_stop_init(&s, stops, n, &err), KM_OK);
    out[0] = '\0';
    bool matched = false;
    for (size_t i = 0; pieces[i]; i++) {
        const char *r;
        size_t rl;
        cr_assert_eq(eng_stop_feed(&s, pieces[i], strlen(pieces[i]), &r, &rl, &matched), KM_OK);
        strncat(out, r, rl);
    }
    if (flush && !matched) {
        const char *r;
        size_t rl;
        eng_stop_flush(&s, &r, &rl);
        strncat(out, r, rl);
    }
    eng_stop_free(&s);
    return matched;
}

Test(engine_stop, match_across_pieces_never_leaks)
{
    const char *stops[] = {"world"};
    const char *pieces[] = {"Hello", " wor", "ld", " more", NULL};
    char out[128];
    cr_assert(run(stops, 1, pieces, out, true));
    cr_assert_str_eq(out, "Hello ");
}

Test(engine_stop, held_prefix_is_released_when_it_diverges)
{
    const char *stops[] = {"abc"};
    const char *pieces[] = {"xab", "d", NULL};
    char out[128];
    struct eng_stop s;
    struct km_err err;
    cr_assert_eq(eng_stop_init(&s, stops, 1, &err), KM_OK);
    const char *r;
    size_t rl;
    bool m;
    eng_stop_feed(&s, "xab", 3, &r, &rl, &m);
    cr_assert_eq(rl, 1);
    cr_assert_eq(r[0], 'x');
    eng_stop_free(&s);
    cr_assert_not(run(stops, 1, pieces, out, false));
    cr_assert_str_eq(out, "xabd");
}

Test(engine_stop, flush_releases_a_held_tail)
{
    const char *stops[] = {"abc"};
    const char *pieces[] = {"zz", "ab", NULL};
    char out[128];
    cr_assert_not(run(stops, 1, pieces, out, false));
    cr_assert_str_eq(out, "zz");
    cr_assert_not(run(stops, 1, pieces, out, true));
    cr_assert_str_eq(out, "zzab");
}

Test(engine_stop, earliest_of_several_wins_and_rest_is_dropped)
{
    const char *stops[] = {"cd", "bcd", ""};
    const char *pieces[] = {"abcdef", "gh", NULL};
    char out[128];
    cr_assert(run(stops, 3, pieces, out, true));
    cr_assert_str_eq(out, "a");
}

Test(engine_stop, multibyte_stop_strings)
{
    const char *stops[] = {"\xc3\xa9t\xc3\xa9"};   /* "été" */
    const char *pieces[] = {"un \xc3\xa9", "t", "\xc3\xa9 chaud", NULL};
    char out[128];
    cr_assert(run(stops, 1, pieces, out, true));
    cr_assert_str_eq(out, "un ");
}

Test(engine_stop, no_stop_strings_passes_everything)
{
    const char *pieces[] = {"a", "b", NULL};
    char out[128];
    cr_assert_not(run(NULL, 0, pieces, out, true));
    cr_assert_str_eq(out, "ab");
}
