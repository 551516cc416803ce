/* cli.c - helpers shared by the subcommands (see cli.h). */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>

int cli_fail(const char *cmd, const struct km_err *e)
{
    fprintf(stderr, "kanoa-mlops %s: %s\n", cmd, km_err_text(e));
    return CLI_EXIT_FAIL;
}

int cli_usage_error(const char *usage)
{
    fputs(usage, stderr);
    return CLI_EXIT_USAGE;
}

int cli_no_operands(const char *cmd, int argc, char **argv)
{
    if (optind >= argc)
        return 0;
    fprintf(stderr, "kanoa-mlops %s: unexpected argument '%s'\n", cmd, argv[optind]);
    return -1;
}

int cli_parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_size(const char *s, unsigned long long *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0) /* "nan" parses */
        return -1;
    double mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1024.0; end++; break;
    case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B')
        end++;
    if (*end == 'B')
        end++;
    if (*end)
        return -1;
    v *= mult;
    if (v > 1.8e19)
        return -1;
    *out = (unsigned long long)v;
    return 0;
}
