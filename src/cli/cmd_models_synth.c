/* cmd_models_synth.c - `kanoa-mlops models synth`: write a GGUF model with
 * random weights (engine/synth.h). */
#include "cli/cli.h"

#include "engine/cpu.h"
#include "engine/synth.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char synth_usage[] =
    "usage: kanoa-mlops models synth [options] -o FILE\n\n"
    "Write a GGUF model with random weights, laid out as llama.cpp writes it.\n\n"
    "  --arch ARCH          llama (default), gemma3, bert, nomic-bert\n"
    "  --shape NAME         tiny (default, every arch); llama-3.2-1b, llama-3.1-8b;\n"
    "                       gemma-3-1b, gemma-3-4b, gemma-3-12b; bge-small, minilm-l6;\n"
    "                       nomic-embed\n"
    "  --dim N --layers N --heads N --kv-heads N --ffn N --ctx N --vocab N --head-dim N\n"
    "                       override the preset's shape\n"
    "  --type T             F32 F16 BF16 Q8_0 Q4_0 Q4_K_M Q5_K_M Q6_K (default F16)\n"
    "  --vocab-from FILE    copy the tokenizer (tokenizer.* keys) of a GGUF file\n"
    "  --tied | --untied    share token_embd as the output head (llama)\n"
    "  --rope-scaling S     llama3 (write rope_freqs.weight) or none\n"
    "  --seed N             random seed (default 1)\n"
    "  --threads N          quantization threads (default: physical cores)\n"
    "  --name NAME          general.name\n"
    "  -o, --output FILE    where to write (required)\n"
    "  -q, --quiet          no progress on stderr\n"
    "  -h, --help           this help\n";

enum { O_ARCH = 256, O_SHAPE, O_DIM, O_LAYERS, O_HEADS, O_KV, O_FFN, O_CTX, O_VOCAB,
       O_HEADDIM, O_TYPE, O_VFROM, O_TIED, O_UNTIED, O_ROPE, O_SEED, O_THREADS, O_NAME };

static const struct option synth_opts[] = {
    {"arch", required_argument, NULL, O_ARCH}, {"shape", required_argument, NULL, O_SHAPE},
    {"dim", required_argument, NULL, O_DIM}, {"layers", required_argument, NULL, O_LAYERS},
    {"heads", required_argument, NULL, O_HEADS}, {"kv-heads", required_argument, NULL, O_KV},
    {"ffn", required_argument, NULL, O_FFN}, {"ctx", required_argument, NULL, O_CTX},
    {"vocab", required_argument, NULL, O_VOCAB}, {"head-dim", required_argument, NULL, O_HEADDIM},
    {"type", required_argument, NULL, O_TYPE}, {"vocab-from", required_argument, NULL, O_VFROM},
    {"tied", no_argument, NULL, O_TIED}, {"untied", no_argument, NULL, O_UNTIED},
    {"rope-scaling", required_argument, NULL, O_ROPE}, {"seed", required_argument, NULL, O_SEED},
    {"threads", required_argument, NULL, O_THREADS}, {"name", required_argument, NULL, O_NAME},
    {"output", required_argument, NULL, 'o'}, {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
};

struct synth_cli {
    const char *arch, *shape, *out, *type, *vocab_from, *rope, *name;
    long dims[8]; /* dim layers heads kv ffn ctx vocab head-dim; -1 = preset */
    int tied;     /* -1 preset, 0, 1 */
    long seed, threads;
    bool quiet, help;
};

static int parse_num(const char *flag, const char *s, long min, long max, long *out)
{
    if (cli_parse_long(s, min, max, out) == 0)
        return 0;
    fprintf(stderr, "kanoa-mlops models synth: %s: '%s' is not a number in %ld..%ld\n", flag, s, min, max);
    return -1;
}

static int parse_synth(int argc, char **argv, struct synth_cli *c)
{
    static const char *const dim_names[8] = {"--dim", "--layers", "--heads", "--kv-heads",
                                             "--ffn", "--ctx", "--vocab", "--head-dim"};
    int opt;
    while ((opt = getopt_long(argc, argv, "o:qh", synth_opts, NULL)) != -1) {
        int rc = 0;
        switch (opt) {
        case O_ARCH: c->arch = optarg; break;
        case O_SHAPE: c->shape = optarg; break;
        case O_DIM: case O_LAYERS: case O_HEADS: case O_KV: case O_FFN: case O_CTX:
        case O_VOCAB: case O_HEADDIM:
            rc = parse_num(dim_names[opt - O_DIM], optarg, 1, 1L << 24, &c->dims[opt - O_DIM]);
            break;
        case O_TYPE: c->type = optarg; break;
        case O_VFROM: c->vocab_from = optarg; break;
        case O_TIED: c->tied = 1; break;
        case O_UNTIED: c->tied = 0; break;
        case O_ROPE: c->rope = optarg; break;
        case O_SEED: rc = parse_num("--seed", optarg, 0, 0x7fffffffffffffffL, &c->seed); break;
        case O_THREADS: rc = parse_num("--threads", optarg, 1, 64, &c->threads); break;
        case O_NAME: c->name = optarg; break;
        case 'o': c->out = optarg; break;
        case 'q': c->quiet = true; break;
        case 'h': c->help = true; break;
        default: return -1;
        }
        if (rc)
            return -1;
    }
    return optind < argc ? -1 : 0;
}

static int apply(const struct synth_cli *c, struct synth_params *p, struct km_err *err)
{
    int rc = synth_preset(c->arch, c->shape, p, err);
    if (rc)
        return rc;
    int64_t *fields[8] = {&p->n_embd, &p->n_layer, &p->n_head, &p->n_head_kv, &p->n_ff,
                          &p->n_ctx, &p->n_vocab, &p->head_dim};
    for (int i = 0; i < 8; i++) {
        if (c->dims[i] > 0)
            *fields[i] = c->dims[i];
    }
    if (c->dims[2] > 0 && c->dims[3] <= 0)
        p->n_head_kv = p->n_head;
    if (c->type)
        snprintf(p->ftype, sizeof p->ftype, "%s", c->type);
    if (c->name)
        snprintf(p->name, sizeof p->name, "%s", c->name);
    if (c->tied >= 0)
        p->tied = c->tied;
    if (c->rope && strcmp(c->rope, "llama3") == 0) {
        p->rope_llama3 = true;
        if (p->rope_factor <= 0)
            p->rope_factor = 8;
    } else if (c->rope && strcmp(c->rope, "none") == 0) {
        p->rope_llama3 = false;
    } else if (c->rope) {
        return km_fail(err, KM_EINVAL, "--rope-scaling '%s': expected llama3 or none", c->rope);
    }
    if (p->rope_llama3 && strcmp(p->arch, "llama"))
        return km_fail(err, KM_EINVAL, "--rope-scaling llama3 is for --arch llama only");
    p->seed = (uint64_t)c->seed;
    p->n_threads = (int)c->threads;
    p->vocab_from = c->vocab_from;
    return synth_validate(p, err);
}

struct progress {
    bool quiet;
    int last;
};

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct progress *pr = ctx;
    int pct = total ? (int)(done * 100 / total) : 100;
    if (pr->quiet || pct / 10 == pr->last / 10)
        return;
    pr->last = pct;
    fprintf(stderr, "synth: %3d%% (%.1f of %.1f MiB)\n", pct, (double)done / 1048576.0,
            (double)total / 1048576.0);
}

int cmd_models_synth(int argc, char **argv)
{
    struct synth_cli c = {.arch = "llama", .shape = "tiny", .tied = -1, .seed = 1,
                          .threads = cpu_physical_cores()};
    for (int i = 0; i < 8; i++)
        c.dims[i] = -1;
    if (parse_synth(argc, argv, &c))
        return cli_usage_error(synth_usage);
    if (c.help) {
        fputs(synth_usage, stdout);
        return CLI_EXIT_OK;
    }
    if (!c.out) {
        fprintf(stderr, "kanoa-mlops models synth: -o FILE is required\n");
        return cli_usage_error(synth_usage);
    }
    struct km_err err;
    struct synth_params p;
    km_err_clear(&err);
    if (apply(&c, &p, &err))
        return cli_fail("models synth", &err);
    struct progress pr = {.quiet = c.quiet, .last = -10};
    struct synth_stats st;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (synth_write(&p, c.out, on_progress, &pr, &st, &err))
        return cli_fail("models synth", &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("wrote %s: %s %s, %llu parameters, %lld tensors, %lld-token vocab, %.1f MiB in %.2f s\n",
           c.out, p.arch, p.ftype, (unsigned long long)st.n_params, (long long)st.n_tensors,
           (long long)st.n_vocab, (double)st.file_bytes / 1048576.0, secs);
    return CLI_EXIT_OK;
}
