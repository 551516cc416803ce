/* cmd_pull.c - `kanoa-mlops pull REPO [FILE|GLOB ...]`: download a
 * repository (or some of its files) into the Hugging Face cache. */
#include "cli/cli.h"

#include "base/mem.h"
#include "hub/hub.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#define PATTERNS_MAX 256

static const char pull_usage[] =
    "usage: kanoa-mlops pull REPO [FILE|GLOB ...] [options]\n"
    "\n"
    "Download REPO (org/name) from the Hugging Face Hub into the shared\n"
    "Hugging Face cache (the one transformers, vLLM and llama.cpp read).\n"
    "FILE|GLOB and --include select files (fnmatch, '*' crosses '/');\n"
    "--exclude drops files. Files already in the cache are reused.\n"
    "\n"
    "options:\n"
    "  -r, --revision R      branch, tag or commit (default: main)\n"
    "  -i, --include GLOB    keep files matching GLOB (repeatable)\n"
    "  -x, --exclude GLOB    drop files matching GLOB (repeatable)\n"
    "  -c, --connections N   parallel ranged requests per file (1-64, default 8)\n"
    "      --fsync           flush each file to disk before it is named in the\n"
    "                        cache (survives a power loss; slower on slow disks)\n"
    "  -q, --quiet           no progress output\n"
    "      --json            one JSON object per event on stdout\n"
    "  -h, --help            show this help\n"
    "\n"
    "environment: HF_ENDPOINT, HF_TOKEN (or $HF_HOME/token, HF_TOKEN_PATH),\n"
    "HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > $HF_HOME/hub, HF_HUB_OFFLINE=1,\n"
    "HF_HUB_DOWNLOAD_TIMEOUT (seconds without data before a retry, default 10).\n"
    "On success the snapshot directory is printed on stdout.\n";

struct pull_args {
    struct hub_pull_opts o;
    const char *inc[PATTERNS_MAX], *exc[PATTERNS_MAX];
    int quiet, json;
};

static int parse(int argc, char **argv, struct pull_args *a)
{
    static const struct option opts[] = {
        {"revision", required_argument, NULL, 'r'},
        {"include", required_argument, NULL, 'i'},
        {"exclude", required_argument, NULL, 'x'},
        {"connections", required_argument, NULL, 'c'},
        {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, 'J'},
        {"fsync", no_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long conns = 8;
    for (;;) {
        int c = getopt_long(argc, argv, "r:i:x:c:qh", opts, NULL);
        if (c == -1)
            break;
        switch (c) {
        case 'r': a->o.revision = optarg; break;
        case 'i':
            if (a->o.ninclude == PATTERNS_MAX)
                return -1;
            a->inc[a->o.ninclude++] = optarg;
            break;
        case 'x':
            if (a->o.nexclude == PATTERNS_MAX)
                return -1;
            a->exc[a->o.nexclude++] = optarg;
            break;
        case 'c':
            if (cli_parse_long(optarg, 1, 64, &conns) != 0) {
                fprintf(stderr, "kanoa-mlops pull: --connections must be 1-64, "
                        "not '%s'\n", optarg);
                return -1;
            }
            break;
        case 'q': a->quiet = 1; break;
        case 'J': a->json = 1; break;
        case 'F': a->o.durable = true; break;
        case 'h': return 1;
        default: return -1;
        }
    }
    if (optind >= argc)
        return -1;
    a->o.repo = argv[optind];
    a->o.files = (const char *const *)argv + optind + 1;
    a->o.nfiles = (size_t)(argc - optind - 1);
    a->o.include = a->inc;
    a->o.exclude = a->exc;
    a->o.connections = (int)conns;
    return 0;
}

int cmd_pull(int argc, char **argv)
{
    struct pull_args a = {0};
    int pr = parse(argc, argv, &a);
    if (pr == 1) {
        fputs(pull_usage, stdout);
        return CLI_EXIT_OK;
    }
    if (pr != 0)
        return cli_usage_error(pull_usage);
    struct km_err err = {0};
    struct hub_env env;
    if (hub_env_load(&env, &err) != KM_OK)
        return cli_fail("pull", &err);
    enum hub_progress_mode mode = a.json ? HUB_PROGRESS_JSON
                                : a.quiet ? HUB_PROGRESS_QUIET : HUB_PROGRESS_AUTO;
    struct hub_progress *prog = hub_progress_new(mode, a.json ? stdout : stderr);
    a.o.progress = hub_progress_event;
    a.o.progress_ud = prog;
    struct hub_pull_result res;
    int rc = hub_pull(&env, &a.o, &res, &err);
    int code = CLI_EXIT_OK;
    if (rc != KM_OK) {
        hub_progress_error(prog, &err);
        code = cli_fail("pull", &err);
    } else if (!a.json) {
        printf("%s\n", res.snapshot);
    }
    hub_pull_result_free(&res);
    hub_progress_free(prog);
    hub_env_free(&env);
    return code;
}
