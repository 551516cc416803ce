/* cli.h - shared helpers for the subcommands in src/cli/cmd_*.c.
 *
 * Contract: each subcommand is `int cmd_X(int argc, char **argv)` where
 * argv[0] is "kanoa-mlops <cmd>" (or "kanoa-mlops models <sub>"), the prefix
 * getopt gives its own messages; it returns the process exit code (0 ok,
 * 1 failure, 2 usage error) and never calls exit(). Subcommands parse with
 * getopt_long (optind is reset by the dispatcher), print results to stdout,
 * and errors to stderr as "kanoa-mlops <cmd>: <detail>". Every subcommand
 * accepts -h/--help and prints its usage to stdout with exit 0; an unknown
 * flag prints the usage to stderr with exit 2.
 */
#ifndef KM_CLI_H
#define KM_CLI_H

#include "base/err.h"

#include <stdio.h>

typedef int (*cli_cmd_fn)(int argc, char **argv);

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

#define X(name, fn, summary) int fn(int argc, char **argv);
#include "cli/commands.def"
#undef X

/* Print "kanoa-mlops <cmd>: <detail of e>" to stderr; returns CLI_EXIT_FAIL. */
int cli_fail(const char *cmd, const struct km_err *e);
/* Print `usage` to stderr after a bad flag or argument (getopt has already
 * named it); returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *usage);

/* After getopt: 0 when argv has no operand left (from optind on); else
 * print "kanoa-mlops <cmd>: unexpected argument '<it>'" and return -1. */
int cli_no_operands(const char *cmd, int argc, char **argv);

/* Parse a size with an optional K/M/G/T suffix (powers of 1024). */
int cli_parse_size(const char *s, unsigned long long *out);
/* Parse a whole number in [min, max]; returns 0 on success. */
int cli_parse_long(const char *s, long min, long max, long *out);

#endif
