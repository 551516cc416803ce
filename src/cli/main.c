/* main.c - kanoa-mlops entry point: dispatch to one subcommand.
 *
 * `kanoa-mlops <command> [options]`, `kanoa-mlops help <command>`,
 * `kanoa-mlops --help`, `kanoa-mlops --version`. An unknown command prints
 * the usage to stderr and exits 2. This is the only file that may end the
 * process with a status of its own choosing.
 */
#include "cli/cli.h"
#include "base/version.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    cli_cmd_fn fn;
    const char *summary;
};

static const struct command commands[] = {
#define X(name, fn, summary) {name, fn, summary},
#include "cli/commands.def"
#undef X
    {NULL, NULL, NULL},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kanoa-mlops <command> [options]\n"
            "\n"
            "Local inference infrastructure for kanoa: an OpenAI-compatible\n"
            "server, a CPU engine for GGUF models, and the tools around it.\n"
            "\n"
            "commands:\n");
    for (const struct command *c = commands; c->name; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fprintf(out,
            "  %-10s %s\n"
            "\n"
            "options:\n"
            "  -h, --help     show this help\n"
            "  -V, --version  print the version\n"
            "\n"
            "Run 'kanoa-mlops <command> --help' for a command's options.\n",
            "help", "show help for a command");
}

static const struct command *find_command(const char *name)
{
    for (const struct command *c = commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

static int run_command(const struct command *c, int argc, char **argv)
{
    char name[64];
    /* getopt names argv[0] in its messages: "kanoa-mlops serve: ..." */
    snprintf(name, sizeof name, "kanoa-mlops %s", c->name);
    argv[0] = name;
    optind = 0; /* full getopt reset for the subcommand */
    opterr = 1;
    return c->fn(argc, argv);
}

static int help_command(int argc, char **argv)
{
    if (argc < 2) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    const struct command *c = find_command(argv[1]);
    if (!c) {
        fprintf(stderr, "kanoa-mlops help: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    char *sub_argv[] = {argv[1], "--help", NULL};
    return run_command(c, 2, sub_argv);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("kanoa-mlops %s\n", KM_VERSION);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "help") == 0)
        return help_command(argc - 1, argv + 1);
    const struct command *c = find_command(cmd);
    if (!c) {
        fprintf(stderr, "kanoa-mlops: unknown command '%s'\n\n", cmd);
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    return run_command(c, argc - 1, argv + 1);
}
