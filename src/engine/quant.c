/* quant.c - type table, f16/bf16 conversion, kernel dispatch (see quant.h).
 * The kernels themselves are in quant_ref.c (scalar reference) and
 * quant_avx2.c (AVX2+FMA+F16C; float weights in quant_avx2_float.c, batched
 * int8 matmuls in quant_avx2_tile.c). */
#include "engine/quant.h"

#include "engine/cpu.h"
#include "engine/quant_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct type_info {
    const char *name;
    uint32_t block; /* elements per block */
    uint32_t size;  /* bytes per block */
};

/* Facts §1.6 and §2 (sizes of the types we do not compute come from ggml's
 * block structs so that any real file validates). */
static const struct type_info types[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {"F32", 1, 4},
    [GGML_TYPE_F16] = {"F16", 1, 2},
    [GGML_TYPE_Q4_0] = {"Q4_0", 32, 18},
    [GGML_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [GGML_TYPE_Q5_0] = {"Q5_0", 32, 22},
    [GGML_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [GGML_TYPE_Q8_0] = {"Q8_0", 32, 34},
    [GGML_TYPE_Q8_1] = {"Q8_1", 32, 36},
    [GGML_TYPE_Q2_K] = {"Q2_K", 256, 84},
    [GGML_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [GGML_TYPE_Q4_K] = {"Q4_K", 256, 144},
    [GGML_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [GGML_TYPE_Q6_K] = {"Q6_K", 256, 210},
    [GGML_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [GGML_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [GGML_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [GGML_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [GGML_TYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [GGML_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18},
    [GGML_TYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [GGML_TYPE_IQ2_S] = {"IQ2_S", 256, 82},
    [GGML_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [GGML_TYPE_I8] = {"I8", 1, 1},
    [GGML_TYPE_I16] = {"I16", 1, 2},
    [GGML_TYPE_I32] = {"I32", 1, 4},
    [GGML_TYPE_I64] = {"I64", 1, 8},
    [GGML_TYPE_F64] = {"F64", 1, 8},
    [GGML_TYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [GGML_TYPE_BF16] = {"BF16", 1, 2},
    [GGML_TYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [GGML_TYPE_TQ2_0] = {"TQ2_0", 256, 66},
    [GGML_TYPE_MXFP4] = {"MXFP4", 32, 17},
};

const char *quant_type_name(uint32_t t)
{
    return t < GGML_TYPE_COUNT ? types[t].name : NULL;
}

int quant_type_from_name(const char *name)
{
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        if (types[t].name && strcasecmp(types[t].name, name) == 0)
            return t;
    }
    return -1;
}

uint32_t quant_block_size(uint32_t t)
{
    return t < GGML_TYPE_COUNT ? types[t].block : 0;
}

uint32_t quant_type_size(uint32_t t)
{
    return t < GGML_TYPE_COUNT ? types[t].size : 0;
}

size_t quant_row_size(uint32_t t, int64_t n)
{
    if (t >= GGML_TYPE_COUNT || !types[t].block)
        return 0;
    return (size_t)(n / types[t].block) * types[t].size;
}

bool quant_supported(uint32_t t)
{
    switch (t) {
    case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16:
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0:
    case GGML_TYPE_Q5_1: case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

bool quant_can_quantize(uint32_t t)
{
    return quant_supported(t) || t == GGML_TYPE_Q8_1 || t == GGML_TYPE_Q8_K;
}

/* ---- scalar conversions ------------------------------------------------ */

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float quant_f16_to_f32(uint16_t h)
{
    uint32_t s = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f;
    uint32_t m = h & 0x3ff;
    if (e == 0) {
        float v = (float)m * 0x1p-24f;
        return s ? -v : v;
    }
    if (e == 31)
        return u2f(s | 0x7f800000u | (m << 13));
    return u2f(s | ((e + 112) << 23) | (m << 13));
}

static uint16_t f16_subnormal(uint32_t sign, uint32_t ax)
{
    if (ax < 0x33000000u) /* below 2^-25: rounds to zero */
        return (uint16_t)sign;
    uint32_t e = ax >> 23;
    uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1)))
        r++;
    return (uint16_t)(sign | r);
}

uint16_t quant_f32_to_f16(float f)
{
    uint32_t x = f2u(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u)
        return f16_subnormal(sign, ax);
    uint32_t r = (ax >> 13) - (112u << 10);
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1)))
        r++;
    return (uint16_t)(sign | r);
}

float quant_bf16_to_f32(uint16_t h)
{
    return u2f((uint32_t)h << 16);
}

uint16_t quant_f32_to_bf16(float f)
{
    uint32_t x = f2u(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

/* ---- dispatch ---------------------------------------------------------- */

static struct quant_kernels kern;
static enum quant_isa active_isa;
static pthread_once_t kern_once = PTHREAD_ONCE_INIT;

static bool cpu_can(enum quant_isa isa)
{
    return isa == QUANT_ISA_SCALAR || (isa == QUANT_ISA_AVX2 && cpu_has_avx2_fma_f16c());
}

static void set_isa(enum quant_isa isa)
{
    struct quant_kernels k;
    memset(&k, 0, sizeof k);
    quant__ref_kernels(&k);
    if (isa == QUANT_ISA_AVX2)
        quant__avx2_kernels(&k);
    kern = k;
    active_isa = isa;
}

static void init_once(void)
{
    const char *env = getenv("KANOA_KERNELS");
    enum quant_isa isa = QUANT_ISA_SCALAR;
    if (cpu_can(QUANT_ISA_AVX2) && !(env && strcmp(env, "scalar") == 0))
        isa = QUANT_ISA_AVX2;
    set_isa(isa);
}

enum quant_isa quant_kernels_init(void)
{
    pthread_once(&kern_once, init_once);
    return active_isa;
}

bool quant_kernels_force(enum quant_isa isa)
{
    quant_kernels_init();
    if (!cpu_can(isa))
        return false;
    set_isa(isa);
    return true;
}

enum quant_isa quant_kernels_active(void)
{
    quant_kernels_init();
    return active_isa;
}

const char *quant_isa_name(enum quant_isa isa)
{
    return isa == QUANT_ISA_AVX2 ? "avx2" : "scalar";
}

/* ---- public row operations --------------------------------------------- */

void quant_dequantize_row(uint32_t t, const void *src, float *dst, int64_t n)
{
    quant_kernels_init();
    if (t < GGML_TYPE_COUNT && kern.dequant[t])
        kern.dequant[t](src, dst, n);
}

void quant_quantize_row(uint32_t t, const float *src, void *dst, int64_t n)
{
    quant__quantize_ref(t, src, dst, n);
}

uint32_t quant_vec_dot_type(uint32_t t)
{
    switch (t) {
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0: case GGML_TYPE_Q8_0:
        return GGML_TYPE_Q8_0;
    case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1:
        return GGML_TYPE_Q8_1;
    case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
        return GGML_TYPE_Q8_K;
    default:
        return GGML_TYPE_F32;
    }
}

size_t quant_act_row_size(uint32_t weight_type, int64_t n)
{
    return quant_row_size(quant_vec_dot_type(weight_type), n);
}

void quant_quantize_act(uint32_t weight_type, const float *x, void *dst,
                        int64_t n)
{
    quant_kernels_init();
    uint32_t at = quant_vec_dot_type(weight_type);
    if (kern.act[at])
        kern.act[at](x, dst, n);
}

float quant_vec_dot(uint32_t t, int64_t n, const void *w, const void *a)
{
    quant_kernels_init();
    if (t >= GGML_TYPE_COUNT || !kern.dot[t])
        return 0.0f;
    return kern.dot[t](n, w, a);
}

void quant_matmul(uint32_t t, const void *W, int64_t n_rows, int64_t k,
                  const void *act, int64_t n_act, float *out,
                  int64_t out_stride)
{
    quant_kernels_init();
    if (t >= GGML_TYPE_COUNT || !kern.dot[t])
        return;
    size_t rs = quant_row_size(t, k);
    size_t as = quant_act_row_size(t, k);
    if (n_act == 1 && kern.mv[t]) {
        kern.mv[t](k, W, rs, n_rows, act, out);
        return;
    }
    /* One activation (decode): the streaming dot kernels are the fastest. */
    if (kern.mm[t] && n_act > 1) {
        kern.mm[t](k, W, rs, n_rows, act, as, n_act, out, out_stride);
        return;
    }
    const uint8_t *w = W;
    const uint8_t *a = act;
    for (int64_t j = 0; j < n_act; j++) {
        for (int64_t r = 0; r < n_rows; r++)
            out[j * out_stride + r] = kern.dot[t](k, w + (size_t)r * rs, a + (size_t)j * as);
    }
}
