/* cmd_models.c - `kanoa-mlops models <sub>`: dispatch to the model
 * subcommands listed in models.def. */
#include "cli/cli.h"

#include <getopt.h>
#include <string.h>

#define X(name, fn, summary) int fn(int argc, char **argv);
#include "cli/models.def"
#undef X

struct models_sub {
    const char *name;
    cli_cmd_fn fn;
    const char *summary;
};

static const struct models_sub subs[] = {
#define X(name, fn, summary) {name, fn, summary},
#include "cli/models.def"
#undef X
    {NULL, NULL, NULL},
};

static void models_usage(FILE *out)
{
    fprintf(out, "usage: kanoa-mlops models <subcommand> [options]\n\n"
                 "Create, inspect and manage model files.\n\nsubcommands:\n");
    for (const struct models_sub *s = subs; s->name; s++)
        fprintf(out, "  %-8s %s\n", s->name, s->summary);
    fprintf(out, "\nRun 'kanoa-mlops models <subcommand> --help' for its options.\n");
}

int cmd_models(int argc, char **argv)
{
    if (argc < 2) {
        models_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        models_usage(stdout);
        return CLI_EXIT_OK;
    }
    for (const struct models_sub *s = subs; s->name; s++) {
        if (strcmp(s->name, argv[1]) == 0) {
            char name[64]; /* getopt's message prefix, as in main.c */
            snprintf(name, sizeof name, "kanoa-mlops models %s", s->name);
            argv[1] = name;
            optind = 0;
            return s->fn(argc - 1, argv + 1);
        }
    }
    if (argv[1][0] == '-')
        fprintf(stderr, "kanoa-mlops models: unrecognized option '%s'\n", argv[1]);
    else
        fprintf(stderr, "kanoa-mlops models: unknown subcommand '%s'\n\n", argv[1]);
    models_usage(stderr);
    return CLI_EXIT_USAGE;
}
