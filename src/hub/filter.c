/* filter.c - allow/ignore patterns with huggingface_hub's semantics.
 *
 * Python fnmatchcase: whole-string match, '*' crosses '/', '?' one char,
 * [seq] and [!seq] sets, no escapes, leading dots not special. That is
 * glibc fnmatch(pattern, path, FNM_NOESCAPE) except that Python reads
 * "[^" literally, so a '^' right after '[' is escaped before matching.
 * Backslashes become '/' in both; a pattern ending in '/' gets '*'.
 */
#include "hub/hub_int.h"

#include "base/mem.h"

#include <fnmatch.h>
#include <string.h>

static char *normalize(const char *s, int is_pattern)
{
    size_t n = strlen(s);
    char *o = km_malloc(2 * n + 2);
    if (!o)
        return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i] == '\\' ? '/' : s[i];
        if (is_pattern && c == '^' && i > 0 && s[i - 1] == '[') {
            /* Python: "[^x]" is a set containing '^' and 'x'. Reorder so
             * glibc does not read it as negation: "[x^]" is equivalent. */
            size_t j = i + 1;
            while (j < n && s[j] != ']')
                o[w++] = s[j++];
            o[w++] = '^';
            i = j - 1;
            continue;
        }
        o[w++] = c;
    }
    if (is_pattern && w > 0 && o[w - 1] == '/')
        o[w++] = '*';
    o[w] = '\0';
    return o;
}

int hub__fnmatch(const char *pattern, const char *path)
{
    char *p = normalize(pattern, 1);
    char *s = normalize(path, 0);
    int ok = p && s && fnmatch(p, s, FNM_NOESCAPE) == 0;
    km_free(p);
    km_free(s);
    return ok;
}

int hub__has_glob(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

int hub__filter_match(const char *path, const char *const *allow,
                      size_t nallow, const char *const *ignore,
                      size_t nignore)
{
    if (nallow != (size_t)-1) {
        int any = 0;
        for (size_t i = 0; i < nallow && !any; i++)
            any = hub__fnmatch(allow[i], path);
        if (!any)
            return 0;
    }
    for (size_t i = 0; i < nignore; i++)
        if (hub__fnmatch(ignore[i], path))
            return 0;
    return 1;
}
