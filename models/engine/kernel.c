/* Fused integer kernel of one crossbar layer: emulation steps 2-7 of
 * remeco.models.emulation, bit for bit, on AVX-512 VNNI or AMX-INT8.
 *
 * Input vectors (rows of the layer's im2col matrix, uint8; for conv layers the patches
 * are gathered here, VCHUNK output positions at a time) go through
 *   2. column accumulation per input bit plane: the 0/1 plane bits times the 10-bit
 *      cell codes, exact integer dot products: vpdpwssd (VNNI path: two rows of the
 *      tile per 32-bit lane, sixteen physical columns per instruction) or tdpbusd on
 *      codes split as (hi << split) + lo (AMX path);
 *   3. ADC: clamp((acc + 2^(s-1)) >> s, 0, adc_max);
 *   4. shift-and-add over bit planes and row tiles;
 *   5. copy averaging by column index (round half up by 2^k), 16 neurons at a time;
 *   6. slice recombination and offset correction;
 *   7. to accumulator units, then (mode) bias, int32 check, requantization + ReLU,
 *      and for conv layers the max pooling.
 * The bit planes are made here from the uint8 inputs and never stored as a matrix;
 * input pairs that are zero and bit planes above the highest set bit are skipped:
 * their accumulators are 0, and the ADC maps 0 to 0.
 *
 * Code layouts (remeco.models.engine.layout): VNNI, pack_codes with the AMX column
 * order: per row tile t from tile_off[t] int16 elements, [column block][row pair][16
 * lanes][2]; AMX, pack_codes_amx (see remeco_layer_t).
 *
 * Built by remeco.models.engine.native (gcc -O3 -shared); no Python headers, called
 * through ctypes, which releases the GIL for the call.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <immintrin.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PLANES 8
#define LANES 16

typedef struct {
    int32_t K;           /* fan-in */
    int32_t rows;        /* tile rows */
    int32_t row_tiles;
    int32_t PB;          /* column blocks of 16 physical columns */
    int32_t input_bits;  /* <= 8 */
    int32_t adc_shift;
    int32_t adc_max;
    int32_t N;           /* neurons */
    int32_t n_slices;
    int32_t slice_bits;
    int32_t code_frac;
    int32_t mode;        /* 0: int64 accumulators; 1: int32 logits (+bias); 2: uint8 (+bias, requant) */
    int64_t weight_offset;
    int64_t multiplier;
    int32_t shift;
    int32_t _pad;
    const int16_t *w;
    const int64_t *tile_off;
    const int32_t *grp_start; /* N * n_slices + 1 offsets into grp_cols */
    const int32_t *grp_cols;
    const int32_t *grp_k;     /* copies_log2 per (neuron, slice) */
    const int32_t *bias;      /* N, modes 1 and 2 */
    /* Convolution geometry (conv = 1): input (C, H, W), square kernel, output positions
     * (Ho, Wo) before a non-overlapping max pool of pool x pool. */
    int32_t conv, C, H, W, kernel, stride, padding, Ho, Wo, pool;
    /* AMX path (remeco_layer_images_amx): codes split as (hi << split) + lo, hi and lo
     * int8; per row tile t (kt rows) from byte wa_off[t] the 2 kt rows [hi of every row;
     * lo of every row], zero padded to nkc = ceil(2 kt / 64) chunks of 64, as
     * [column block][chunk][16 row quads][16 columns][4 rows]; columns in the order of layout.amx_columns:
     * copy 0 of (neuron j, slice s) is column s * N + j, the other copies follow. */
    int32_t split, Npad;
    const int8_t *wa;
    const int64_t *wa_off;
    const int32_t *ep_k;     /* n_slices x Npad: copies_log2 of (slice, neuron) */
    const int32_t *ep_half;  /* n_slices x Npad: its rounding constant (1 << k) >> 1 */
    int32_t n_extra, _pad2;
    const int32_t *ex_dst;   /* n_extra: s * Npad + j of an extra copy's column */
    const int32_t *ex_col;   /* n_extra: its column */
    /* VNNI path, optional: column-sum tables per group of 8 rows (lut_rows = 8; 0: none).
     * Per row tile t from lut_off[t] int32 elements, [group g][pattern 0..255][PB * 16
     * columns]: the sum of the codes of rows 8 g + i (i a set bit of the pattern) in the
     * column order of w; rows past the tile's last hold code 0. */
    int32_t lut_rows, lut_i16; /* lut_i16: entries are int16 (else int32); lut_off counts entries */
    const void *lut;
    const int64_t *lut_off;
} remeco_layer_t;

enum { OK = 0, ERR_INT32 = 1, ERR_ALLOC = 2, ERR_ARGS = 3, ERR_INPUT = 4 };

int remeco_kernel_abi(void) { return 5; }

int remeco_cpu_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
}

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

/* acc += w . broadcast(*p) (vpdpwssd with an embedded broadcast): written in assembly
 * because gcc otherwise copies every accumulator of the micro kernels through another
 * register (and the stack) on each iteration. */
TARGET static inline __m512i dpwssd_bcast(__m512i acc, __m512i w, const uint32_t *p)
{
    __asm__("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*p));
    return acc;
}

/* Bit planes b0 .. b0 + NP - 1 (NP = 4 or 8) of one row tile and one block of 16 columns:
 * the column sums of the m compacted row pairs (plane words p[b0 + k][i] at
 * pl + (b0 + k) * ps, pair indices idx[i], codes of pair kp at wcb + kp * 32), then ADC and
 * shift-and-add into y. NP independent accumulators hide vpdpwssd's latency; planes past
 * the vector's highest set bit hold zero words (an ADC of 0 adds 0). */
#define MICRO_PLANES(NP)                                                                          \
    TARGET static void micro_planes##NP(const uint32_t *const *p, const int32_t *idx, int m,         \
                                        const int16_t *wcb, __m512i half, __m128i sh, __m512i amax,   \
                                        int b0, int32_t *y)                                          \
    {                                                                                                \
        __m512i acc[NP];                                                                             \
        const uint32_t *q[NP];                                                                       \
        for (int k = 0; k < NP; k++) {                                                               \
            acc[k] = _mm512_setzero_si512();                                                         \
            q[k] = p[k];                                                                             \
        }                                                                                            \
        for (int i = 0; i < m; i++) {                                                                \
            const __m512i w = _mm512_loadu_si512(wcb + (int64_t)idx[i] * (2 * LANES));               \
            for (int k = 0; k < NP; k++) acc[k] = dpwssd_bcast(acc[k], w, q[k] + i);                 \
        }                                                                                            \
        const __m512i zero = _mm512_setzero_si512();                                                 \
        __m512i ys = _mm512_loadu_si512(y);                                                          \
        for (int k = 0; k < NP; k++) {                                                               \
            __m512i a = _mm512_sra_epi32(_mm512_add_epi32(acc[k], half), sh);                        \
            a = _mm512_min_epi32(_mm512_max_epi32(a, zero), amax);                                   \
            ys = _mm512_add_epi32(ys, _mm512_sll_epi32(a, _mm_cvtsi32_si128(b0 + k)));               \
        }                                                                                            \
        _mm512_storeu_si512(y, ys);                                                                  \
    }
MICRO_PLANES(4)
MICRO_PLANES(8)

static int check_layer(const remeco_layer_t *L)
{
    if (L->input_bits < 1 || L->input_bits > MAX_PLANES || L->adc_shift < 0 || L->adc_shift > 30 || L->K < 1 ||
        L->rows < 1 || L->PB < 1 || L->N < 1 || L->mode < 0 || L->mode > 2)
        return ERR_ARGS;
    if (L->conv && (L->kernel < 1 || L->stride < 1 || L->Ho < 1 || L->Wo < 1 || L->pool < 1 ||
                    L->C * L->kernel * L->kernel != L->K || L->mode != 2))
        return ERR_ARGS;
    return OK;
}

/* ------------------------------------------------------------------ AMX-INT8 path
 *
 * The same steps on the AMX tile unit, a chunk of up to VCHUNK input vectors at a time:
 * every (vector, plane) whose plane has a set bit in the row tile becomes one row of the
 * A matrix: its bits shifted left by split, then its bits (bytes, 2 kt of them, zero
 * padded to 64-byte chunks); against B = [hi; lo] (u8 x s8 -> s32, exact) each C element
 * is sum(bit * ((hi << split) + lo)) = sum(bit * code), the column sum in one product.
 * ADC and shift-and-add follow per C row; copy averaging, slice
 * recombination, offset, bias and requantization run over 16 neurons per vector
 * (int64 lanes where the contract's values need them). */

#define AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,amx-tile,amx-int8")))
/* The chunked driver and the vectorised steps 5-7 need no tile unit: shared with the
 * chunked VNNI path (remeco_layer_images_vnni). */
#define NEURON_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define VCHUNK 32
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) tile_config_t;

static int amx_state = 0; /* 0 unknown, 1 usable, -1 not */

int remeco_amx_supported(void)
{
    if (amx_state) return amx_state > 0;
    unsigned a, b, c, d;
    int ok = remeco_cpu_supported() && __builtin_cpu_supports("avx512dq") && __get_cpuid_count(7, 0, &a, &b, &c, &d) &&
             (d & (1u << 24)) && (d & (1u << 25));
    /* Linux hands out the tile data state only on request (per process). */
    if (ok) ok = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    amx_state = ok ? 1 : -1;
    return ok;
}

typedef struct {
    uint32_t *pl;    /* VNNI path: plane words of one tile's non-zero row pairs, [plane][ps] */
    int32_t *idx;    /* VNNI path: their row-pair indices */
    int64_t ps;      /* row stride of pl: the tile's row pairs + 16 (a compacted store spills <= 15) */
    uint32_t *zrow;  /* ps zero words: the plane rows past input_bits */
    uint8_t *zero_out; /* the outputs of an all-zero input vector, once zero_ready */
    int zero_ready;
    uint8_t *A;      /* VCHUNK * MAX_PLANES rows x kpad bytes */
    int32_t *rowv, *rowb;
    int32_t *y;      /* VCHUNK x PB * 16 */
    int32_t *cbuf;   /* 4 C tiles */
    int64_t *xsum;   /* VCHUNK */
    int32_t *sums;   /* n_slices x Npad */
    uint8_t *pat;    /* LUT path: [plane][gstride] the 8-row patterns of one tile */
    int32_t *gidx;   /* LUT path: the tile's groups with a non-zero input */
    int gstride;
} chunk_scratch_t;

static void chunk_free(chunk_scratch_t *S)
{
    free(S->A); free(S->rowv); free(S->rowb); free(S->y); free(S->cbuf); free(S->xsum); free(S->sums);
    free(S->pl); free(S->idx); free(S->zero_out); free(S->zrow); free(S->pat); free(S->gidx);
}

static int chunk_alloc(const remeco_layer_t *L, chunk_scratch_t *S)
{
    const size_t kpad = (size_t)(2 * L->rows + 63) / 64 * 64, rows = VCHUNK * MAX_PLANES;
    S->A = aligned_alloc(64, rows * kpad);
    S->rowv = malloc(rows * sizeof(int32_t));
    S->rowb = malloc(rows * sizeof(int32_t));
    S->y = aligned_alloc(64, (size_t)VCHUNK * L->PB * LANES * sizeof(int32_t));
    S->cbuf = aligned_alloc(64, 4 * 256 * sizeof(int32_t)); /* 2 n blocks x 32 rows x 16 */
    S->xsum = malloc(VCHUNK * sizeof(int64_t));
    S->sums = aligned_alloc(64, (size_t)L->n_slices * L->Npad * sizeof(int32_t) + 64);
    S->ps = (L->rows + 1) / 2 + 16;
    S->pl = aligned_alloc(64, ((size_t)S->ps * MAX_PLANES * sizeof(uint32_t) + 63) / 64 * 64);
    S->idx = malloc((size_t)S->ps * sizeof(int32_t));
    S->zero_out = malloc((size_t)L->N * sizeof(int32_t));
    S->zrow = calloc((size_t)S->ps, sizeof(uint32_t));
    S->gstride = (L->rows + 63) / 64 * 8;
    S->pat = malloc((size_t)MAX_PLANES * S->gstride);
    S->gidx = malloc((size_t)S->gstride * sizeof(int32_t));
    if (!(S->A && S->rowv && S->rowb && S->y && S->cbuf && S->xsum && S->sums && S->pl && S->idx && S->zero_out &&
          S->zrow && S->pat && S->gidx))
        return ERR_ALLOC;
    memset(S->A, 0, rows * kpad); /* rows past a chunk's last are read, never used */
    return OK;
}

AMX_TARGET static void amx_configure(void)
{
    tile_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int i = 0; i < 8; i++) {
        cfg.rows[i] = 16;
        cfg.colsb[i] = 64;
    }
    _tile_loadconfig(&cfg);
}

/* Steps 2-4 (column sums, ADC, shift-and-add) of nv <= VCHUNK vectors x (nv x K
 * contiguous bytes) into S->y and S->xsum. Returns OK or ERR_INPUT (*bad = vector). */
AMX_TARGET static int amx_columns(const remeco_layer_t *L, const uint8_t *x, int nv, chunk_scratch_t *S, int *bad)
{
    const int K = L->K, rows = L->rows, PB = L->PB, W16 = PB * LANES;
    const __m512i half = _mm512_set1_epi32(L->adc_shift ? 1 << (L->adc_shift - 1) : 0);
    const __m128i sh = _mm_cvtsi32_si128(L->adc_shift);
    const __m512i amax = _mm512_set1_epi32(L->adc_max), zero = _mm512_setzero_si512();
    const __m512i one8 = _mm512_set1_epi8(1);
    memset(S->y, 0, (size_t)nv * W16 * sizeof(int32_t));
    for (int v = 0; v < nv; v++) S->xsum[v] = 0;
    for (int t = 0; t < L->row_tiles; t++) {
        const int k0 = t * rows, kt = K - k0 < rows ? K - k0 : rows;
        const int nkx = (kt + 63) / 64;                      /* 64-byte chunks of the input */
        const int nkc = (2 * kt + 63) / 64, kpad = nkc * 64; /* of an A row */
        int m = 0;
        for (int v = 0; v < nv; v++) {
            const uint8_t *xr = x + (int64_t)v * K + k0;
            __m512i orv = zero, sumv = zero;
            for (int kc = 0; kc < nkx; kc++) {
                const int n = kt - kc * 64 < 64 ? kt - kc * 64 : 64;
                const __m512i xc = _mm512_maskz_loadu_epi8(n == 64 ? ~0ULL : (1ULL << n) - 1, xr + kc * 64);
                orv = _mm512_or_si512(orv, xc);
                sumv = _mm512_add_epi64(sumv, _mm512_sad_epu8(xc, zero));
            }
            unsigned r = (unsigned)_mm512_reduce_or_epi32(orv);
            r = (r | r >> 8 | r >> 16 | r >> 24) & 0xff;
            if (!r) continue;
            if (r >> L->input_bits) {
                *bad = v;
                return ERR_INPUT;
            }
            S->xsum[v] += _mm512_reduce_add_epi64(sumv);
            for (unsigned planes = r; planes; planes &= planes - 1) {
                const int b = __builtin_ctz(planes);
                uint8_t *arow = S->A + (int64_t)m * kpad;
                /* [bits << split, bits]; whatever lies past 2 kt meets B's zero rows */
                for (int kc = 0; kc < nkx; kc++) {
                    const int n = kt - kc * 64 < 64 ? kt - kc * 64 : 64;
                    const __mmask64 mk = n == 64 ? ~0ULL : (1ULL << n) - 1;
                    const __m512i bits =
                        _mm512_and_si512(_mm512_srli_epi16(_mm512_maskz_loadu_epi8(mk, xr + kc * 64), b), one8);
                    _mm512_mask_storeu_epi8(arow + kc * 64, mk, _mm512_slli_epi16(bits, L->split));
                    _mm512_mask_storeu_epi8(arow + kt + kc * 64, mk, bits);
                }
                S->rowv[m] = v;
                S->rowb[m++] = b;
            }
        }
        if (!m) continue;
        const int8_t *wt = L->wa + L->wa_off[t];
        for (int mb = 0; mb < m; mb += 32) {
            const int two = m - mb > 16, nr = m - mb < 32 ? m - mb : 32;
            const uint8_t *a0 = S->A + (int64_t)mb * kpad, *a1 = a0 + 16 * (int64_t)kpad;
            for (int nb = 0; nb < PB; nb += 2) {
                const int pair = nb + 1 < PB;
                const int8_t *b0 = wt + (int64_t)nb * nkc * 1024, *b1 = b0 + (int64_t)nkc * 1024;
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                for (int kc = 0; kc < nkc; kc++) {
                    _tile_loadd(4, a0 + kc * 64, kpad);
                    _tile_loadd(6, b0 + kc * 1024, 64);
                    _tile_dpbusd(0, 4, 6);
                    if (pair) {
                        _tile_loadd(7, b1 + kc * 1024, 64);
                        _tile_dpbusd(1, 4, 7);
                    }
                    if (two) {
                        _tile_loadd(5, a1 + kc * 64, kpad);
                        _tile_dpbusd(2, 5, 6);
                        if (pair) _tile_dpbusd(3, 5, 7);
                    }
                }
                /* cbuf: [n block][32 rows][16 columns] */
                int32_t *cb = S->cbuf;
                _tile_stored(0, cb, 64);
                if (two) _tile_stored(2, cb + 256, 64);
                if (pair) {
                    _tile_stored(1, cb + 512, 64);
                    if (two) _tile_stored(3, cb + 768, 64);
                }
                for (int h = 0; h <= pair; h++)
                    for (int r = 0; r < nr; r++) {
                        const __m512i acc = _mm512_load_si512(cb + h * 512 + r * 16);
                        __m512i a = _mm512_sra_epi32(_mm512_add_epi32(acc, half), sh);
                        a = _mm512_min_epi32(_mm512_max_epi32(a, zero), amax);
                        int32_t *y = S->y + (int64_t)S->rowv[mb + r] * W16 + (nb + h) * LANES;
                        _mm512_store_si512(y, _mm512_add_epi32(_mm512_load_si512(y),
                                                               _mm512_sll_epi32(a, _mm_cvtsi32_si128(S->rowb[mb + r]))));
                    }
            }
        }
    }
    return OK;
}

/* Table path of steps 2-4 (L->lut_rows = 8): per row tile, the input bytes of every
 * group of 8 rows give, per bit plane b, an 8-bit pattern (bit i: bit b of row 8 g + i;
 * one vptestmb per plane and 64 rows); the column sums of a plane are the sums over the
 * groups of the table entries of their patterns (exact int32 sums of the same codes as
 * the vpdpwssd path, in another order). Groups whose 8 inputs are all zero are skipped;
 * planes above the vector's highest set bit have pattern 0, whose entry is 0. NP planes
 * (4 or 8) x NB column blocks (1 or 2) of accumulators, then ADC and shift-and-add into
 * y as micro_planes does. */
/* acc += 16 int32 at p (vpaddd with a memory operand, in assembly for the reason of
 * dpwssd_bcast). */
TARGET static inline __m512i add_mem(__m512i acc, const int32_t *p)
{
    __asm__("vpaddd %1, %0, %0" : "+v"(acc) : "m"(*(const __m512i *)p));
    return acc;
}

/* 16 int16 at p, sign-extended, added to acc (vpmovsxwd from memory, in assembly for the
 * reason of dpwssd_bcast). */
TARGET static inline __m512i add_mem16(__m512i acc, const int16_t *p)
{
    __m512i w;
    __asm__("vpmovsxwd %1, %0" : "=v"(w) : "m"(*(const __m256i *)p));
    __asm__("vpaddd %1, %0, %0" : "+v"(acc) : "v"(w));
    return acc;
}

#define LUT_PLANES(NP, NB, BITS)                                                                  \
    TARGET static void lut_planes##NP##_##NB##_##BITS(const char *tab, int64_t gstep, int64_t pstep, \
                                             const uint8_t *pat, int gstride, const int32_t *gidx, \
                                             int ng, __m512i half, __m128i sh, __m512i amax,       \
                                             int32_t *y)                                           \
    {                                                                                              \
        __m512i acc[NP][NB];                                                                       \
        _Pragma("GCC unroll 8") for (int k = 0; k < NP; k++)                                       \
            _Pragma("GCC unroll 2") for (int c = 0; c < NB; c++) acc[k][c] = _mm512_setzero_si512(); \
        for (int i = 0; i < ng; i++) {                                                             \
            const int g = gidx[i];                                                                 \
            const char *base = tab + (int64_t)g * gstep;                                           \
            _Pragma("GCC unroll 8") for (int k = 0; k < NP; k++) {                                 \
                const int##BITS##_t *e = (const int##BITS##_t *)(base + (int64_t)pat[k * gstride + g] * pstep); \
                _Pragma("GCC unroll 2") for (int c = 0; c < NB; c++)                               \
                    acc[k][c] = BITS == 32 ? add_mem(acc[k][c], (const int32_t *)(const void *)(e + c * LANES)) \
                                           : add_mem16(acc[k][c], (const int16_t *)(const void *)(e + c * LANES)); \
            }                                                                                      \
        }                                                                                          \
        const __m512i zero = _mm512_setzero_si512();                                               \
        _Pragma("GCC unroll 2") for (int c = 0; c < NB; c++) {                                     \
            __m512i ys = _mm512_loadu_si512(y + c * LANES);                                        \
            _Pragma("GCC unroll 8") for (int k = 0; k < NP; k++) {                                 \
                __m512i a = _mm512_sra_epi32(_mm512_add_epi32(acc[k][c], half), sh);               \
                a = _mm512_min_epi32(_mm512_max_epi32(a, zero), amax);                             \
                ys = _mm512_add_epi32(ys, _mm512_sll_epi32(a, _mm_cvtsi32_si128(k)));             \
            }                                                                                      \
            _mm512_storeu_si512(y + c * LANES, ys);                                                \
        }                                                                                          \
    }
LUT_PLANES(4, 1, 32)
LUT_PLANES(4, 2, 32)
LUT_PLANES(8, 1, 32)
LUT_PLANES(8, 2, 32)
LUT_PLANES(4, 1, 16)
LUT_PLANES(4, 2, 16)
LUT_PLANES(8, 1, 16)
LUT_PLANES(8, 2, 16)

typedef void (*lut_fn)(const char *, int64_t, int64_t, const uint8_t *, int, const int32_t *, int, __m512i, __m128i,
                       __m512i, int32_t *);

TARGET static int lut_columns(const remeco_layer_t *L, const uint8_t *x, int nv, chunk_scratch_t *S, int *bad)
{
    const int K = L->K, rows = L->rows, PB = L->PB, W16 = PB * LANES, nb = L->input_bits, gs = S->gstride;
    const __m512i half = _mm512_set1_epi32(L->adc_shift ? 1 << (L->adc_shift - 1) : 0);
    const __m128i sh = _mm_cvtsi32_si128(L->adc_shift);
    const __m512i amax = _mm512_set1_epi32(L->adc_max), zero = _mm512_setzero_si512();
    const int esz = L->lut_i16 ? 2 : 4; /* bytes per table entry */
    const int64_t pstep = (int64_t)W16 * esz, gstep = 256 * pstep;
    memset(S->y, 0, (size_t)nv * W16 * sizeof(int32_t));
    for (int v = 0; v < nv; v++) {
        const uint8_t *xr = x + (int64_t)v * K;
        int32_t *y = S->y + (int64_t)v * W16;
        int64_t xsum = 0;
        for (int t = 0; t < L->row_tiles; t++) {
            const int k0 = t * rows, kt = K - k0 < rows ? K - k0 : rows;
            __m512i orv = zero, sumv = zero;
            int ng = 0;
            for (int c = 0; c * 64 < kt; c++) {
                const int n = kt - c * 64 < 64 ? kt - c * 64 : 64;
                const __m512i xc = _mm512_maskz_loadu_epi8(n == 64 ? ~0ULL : (1ULL << n) - 1, xr + k0 + c * 64);
                const uint64_t nz = _mm512_test_epi8_mask(xc, xc);
                if (!nz) continue;
                orv = _mm512_or_si512(orv, xc);
                sumv = _mm512_add_epi64(sumv, _mm512_sad_epu8(xc, zero));
                for (int b = 0; b < MAX_PLANES; b++) {
                    const uint64_t m = _mm512_test_epi8_mask(xc, _mm512_set1_epi8((char)(1 << b)));
                    memcpy(S->pat + b * gs + c * 8, &m, 8);
                }
                for (int g = 0; g < 8; g++)
                    if ((nz >> (8 * g)) & 0xff) S->gidx[ng++] = c * 8 + g;
            }
            if (!ng) continue;
            unsigned any = (unsigned)_mm512_reduce_or_epi32(orv);
            any = (any | any >> 8 | any >> 16 | any >> 24) & 0xff;
            if (any >> nb) {
                *bad = v;
                return ERR_INPUT;
            }
            xsum += _mm512_reduce_add_epi64(sumv);
            const int np = 32 - __builtin_clz(any) > 4 ? 8 : 4;
            const char *tab = (const char *)L->lut + L->lut_off[t] * esz;
            const lut_fn two = np == 8 ? (L->lut_i16 ? lut_planes8_2_16 : lut_planes8_2_32)
                                       : (L->lut_i16 ? lut_planes4_2_16 : lut_planes4_2_32);
            const lut_fn one = np == 8 ? (L->lut_i16 ? lut_planes8_1_16 : lut_planes8_1_32)
                                       : (L->lut_i16 ? lut_planes4_1_16 : lut_planes4_1_32);
            int cb = 0;
            for (; cb + 1 < PB; cb += 2)
                two(tab + cb * LANES * esz, gstep, pstep, S->pat, gs, S->gidx, ng, half, sh, amax, y + cb * LANES);
            if (cb < PB) one(tab + cb * LANES * esz, gstep, pstep, S->pat, gs, S->gidx, ng, half, sh, amax, y + cb * LANES);
        }
        S->xsum[v] = xsum;
    }
    return OK;
}

/* Steps 2-4 of nv <= VCHUNK vectors on AVX-512 VNNI, into S->y and S->xsum as
 * amx_columns does, on codes packed by pack_codes in the AMX column order (L->w,
 * L->tile_off). Per vector and row tile, sixteen row pairs at a time: the pairs with a
 * non-zero input are compacted (no data-dependent branch per pair) with their plane
 * words, plane-major in S->pl (bit b of the even row in bit 0, of the odd row in bit 16;
 * row stride S->ps), then the micro kernels run over them. */
TARGET static int vnni_columns(const remeco_layer_t *L, const uint8_t *x, int nv, chunk_scratch_t *S, int *bad)
{
    if (L->lut_rows) return lut_columns(L, x, nv, S, bad);
    const int K = L->K, rows = L->rows, PB = L->PB, W16 = PB * LANES, nb = L->input_bits;
    const int64_t ps = S->ps;
    const __m512i half = _mm512_set1_epi32(L->adc_shift ? 1 << (L->adc_shift - 1) : 0);
    const __m128i sh = _mm_cvtsi32_si128(L->adc_shift);
    const __m512i amax = _mm512_set1_epi32(L->adc_max);
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i lo_bit = _mm512_set1_epi32(1), hi_bit = _mm512_set1_epi32(1 << 16);
    memset(S->y, 0, (size_t)nv * W16 * sizeof(int32_t));
    for (int v = 0; v < nv; v++) {
        const uint8_t *xr = x + (int64_t)v * K;
        int32_t *y = S->y + (int64_t)v * W16;
        __m256i sumv = _mm256_setzero_si256();
        for (int t = 0; t < L->row_tiles; t++) {
            const int k0 = t * rows;
            const int kt = K - k0 < rows ? K - k0 : rows;
            const int kp_tile = (kt + 1) / 2;
            int m = 0;
            __m512i orv = _mm512_setzero_si512();
            for (int p0 = 0; p0 < kp_tile; p0 += 16) {
                const int bytes = kt - 2 * p0 < 32 ? kt - 2 * p0 : 32;
                const __m256i w = _mm256_maskz_loadu_epi8(bytes == 32 ? ~0u : (1u << bytes) - 1, xr + k0 + 2 * p0);
                const __m512i d = _mm512_cvtepu16_epi32(w); /* even row in bits 0-7, odd in 8-15 */
                const __mmask16 nz = _mm512_test_epi32_mask(d, d);
                if (!nz) continue;
                orv = _mm512_or_si512(orv, d);
                sumv = _mm256_add_epi64(sumv, _mm256_sad_epu8(w, _mm256_setzero_si256()));
                _mm512_storeu_si512(S->idx + m, _mm512_maskz_compress_epi32(nz, _mm512_add_epi32(lanes, _mm512_set1_epi32(p0))));
                for (int b = 0; b < nb; b++) {
                    const __m512i pw = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(d, b), lo_bit),
                                                       _mm512_and_si512(_mm512_slli_epi32(d, 8 - b), hi_bit));
                    _mm512_storeu_si512(S->pl + b * ps + m, _mm512_maskz_compress_epi32(nz, pw));
                }
                m += __builtin_popcount(nz);
            }
            if (!m) continue;
            unsigned any = (unsigned)_mm512_reduce_or_epi32(orv);
            any = (any | any >> 8) & 0xff;
            if (any >> nb) {
                *bad = v;
                return ERR_INPUT;
            }
            const int npl = 32 - __builtin_clz(any);
            const int16_t *wt = L->w + L->tile_off[t];
            const int64_t cb_stride = (int64_t)kp_tile * 2 * LANES;
            /* eight planes per pass over the pairs where the vector has them, else four */
            const int np = npl > 4 ? 8 : 4;
            const uint32_t *pp[MAX_PLANES];
            for (int k = 0; k < MAX_PLANES; k++) pp[k] = k < nb ? S->pl + k * ps : S->zrow;
            for (int cb = 0; cb < PB; cb++) {
                if (np == 8)
                    micro_planes8(pp, S->idx, m, wt + cb * cb_stride, half, sh, amax, 0, y + cb * LANES);
                else
                    micro_planes4(pp, S->idx, m, wt + cb * cb_stride, half, sh, amax, 0, y + cb * LANES);
            }
        }
        const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(sumv), _mm256_extracti128_si256(sumv, 1));
        S->xsum[v] = _mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1);
    }
    return OK;
}

/* Steps 5-7 of vectors [0, nv) (their y and xsum in S) for all neurons, 16 at a time.
 * Vector v writes out[o + v * N + j] (int32 in mode 1, uint8 in mode 2). Returns OK or
 * ERR_INT32 (*bad = the vector). */
NEURON_TARGET static int chunk_neurons(const remeco_layer_t *L, chunk_scratch_t *S, int nv, void *out, int64_t o, int *bad)
{
    const int N = L->N, NP = L->Npad, W16 = L->PB * LANES;
    const __m512i cf_half = _mm512_set1_epi64(L->code_frac ? (int64_t)1 << (L->code_frac - 1) : 0);
    const __m128i cf = _mm_cvtsi32_si128(L->code_frac), as = _mm_cvtsi32_si128(L->adc_shift);
    const __m512i mult = _mm512_set1_epi64(L->multiplier);
    const __m512i q_half = _mm512_set1_epi64(L->shift ? (int64_t)1 << (L->shift - 1) : 0);
    const __m128i qs = _mm_cvtsi32_si128(L->shift);
    const __m512i i32max = _mm512_set1_epi64(INT32_MAX), i32min = _mm512_set1_epi64(INT32_MIN);
    const __m512i zero = _mm512_setzero_si512(), u8max = _mm512_set1_epi64(255);
    const size_t osz = L->mode == 1 ? sizeof(int32_t) : 1;
    for (int v = 0; v < nv; v++) {
        /* An all-zero input vector (xsum 0: its y is all zero) has the same outputs as
         * every other: computed once per call, then copied (border patches of images). */
        uint8_t *dst_row = (uint8_t *)out + (o + (int64_t)v * N) * osz;
        if (S->xsum[v] == 0 && S->zero_ready) {
            memcpy(dst_row, S->zero_out, N * osz);
            continue;
        }
        const int32_t *y = S->y + (int64_t)v * W16;
        /* copy 0 of every (slice, neuron) is y[s * N + j]; extra copies are added into a
         * copy of it laid out s * Npad + j */
        const int32_t *sums = y;
        int stride = N;
        if (L->n_extra) {
            for (int sl = 0; sl < L->n_slices; sl++) memcpy(S->sums + sl * NP, y + sl * N, N * sizeof(int32_t));
            for (int e = 0; e < L->n_extra; e++) S->sums[L->ex_dst[e]] += y[L->ex_col[e]];
            sums = S->sums;
            stride = NP;
        }
        const __m512i off = _mm512_set1_epi64((L->weight_offset * S->xsum[v]) << L->code_frac);
        for (int jb = 0; jb < N; jb += LANES) {
            const int left = N - jb;
            const __mmask16 km = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
            __m512i comb[2] = {zero, zero};
            for (int sl = 0; sl < L->n_slices; sl++) {
                const int at = sl * NP + jb;
                const __m512i sum = _mm512_maskz_loadu_epi32(km, sums + sl * stride + jb);
                const __m512i rs = _mm512_srav_epi32(_mm512_add_epi32(sum, _mm512_loadu_si512(L->ep_half + at)),
                                                     _mm512_loadu_si512(L->ep_k + at));
                const __m128i sb = _mm_cvtsi32_si128(L->slice_bits * sl);
                comb[0] = _mm512_add_epi64(comb[0],
                                           _mm512_sll_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(rs)), sb));
                comb[1] = _mm512_add_epi64(comb[1],
                                           _mm512_sll_epi64(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(rs, 1)), sb));
            }
            for (int h = 0; h < 2; h++) {
                const __mmask8 hm = (__mmask8)(km >> (8 * h));
                if (!hm) break;
                const int j0 = jb + 8 * h;
                const __m512i z = _mm512_sub_epi64(_mm512_sll_epi64(comb[h], as), off);
                const __m512i acc = _mm512_sra_epi64(_mm512_add_epi64(z, cf_half), cf);
                const __m512i tv =
                    _mm512_add_epi64(acc, _mm512_cvtepi32_epi64(_mm256_maskz_loadu_epi32(hm, L->bias + j0)));
                if (_mm512_mask_cmpgt_epi64_mask(hm, tv, i32max) | _mm512_mask_cmplt_epi64_mask(hm, tv, i32min)) {
                    *bad = v;
                    return ERR_INT32;
                }
                const int64_t at = o + (int64_t)v * N + j0;
                if (L->mode == 1) {
                    _mm512_mask_cvtepi64_storeu_epi32((int32_t *)out + at, hm, tv);
                } else {
                    __m512i q = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mullo_epi64(tv, mult), q_half), qs);
                    q = _mm512_min_epi64(_mm512_max_epi64(q, zero), u8max);
                    _mm512_mask_cvtepi64_storeu_epi8((uint8_t *)out + at, hm, q);
                }
            }
        }
        if (S->xsum[v] == 0) {
            memcpy(S->zero_out, dst_row, N * osz);
            S->zero_ready = 1;
        }
    }
    return OK;
}

static int check_amx(const remeco_layer_t *L)
{
    if (check_layer(L) || L->mode < 1 || L->split < 0 || L->split > 7 || L->Npad < L->N || L->Npad % LANES ||
        L->n_extra < 0 || !L->wa || !L->wa_off || !L->ep_k || !L->ep_half)
        return ERR_ARGS;
    return OK;
}

/* Max pooling of one image's output codes, (Ho, Wo, N) position-major, into (N, hp, wp):
 * per pooled row the P rows' elementwise maximum (64 bytes per instruction), then per
 * pooled column the maximum of P groups of N codes (N <= 64 per masked load, wider
 * layers in 64-code slices). rowmax holds Wo * N bytes. */
NEURON_TARGET static void max_pool(const uint8_t *codes, int Wo, int N, int P, int hp, int wp, uint8_t *rowmax,
                                   uint8_t *dst)
{
    const int64_t row = (int64_t)Wo * N, plane = (int64_t)hp * wp;
    for (int a = 0; a < hp; a++) {
        const uint8_t *r0 = codes + (int64_t)a * P * row;
        for (int64_t k = 0; k < row; k += 64) {
            const int64_t left = row - k;
            const __mmask64 mk = left >= 64 ? ~0ULL : (1ULL << left) - 1;
            __m512i mx = _mm512_maskz_loadu_epi8(mk, r0 + k);
            for (int u = 1; u < P; u++) mx = _mm512_max_epu8(mx, _mm512_maskz_loadu_epi8(mk, r0 + u * row + k));
            _mm512_mask_storeu_epi8(rowmax + k, mk, mx);
        }
        for (int b = 0; b < wp; b++) {
            for (int j0 = 0; j0 < N; j0 += 64) {
                const int left = N - j0;
                const __mmask64 mk = left >= 64 ? ~0ULL : (1ULL << left) - 1;
                const uint8_t *g = rowmax + (int64_t)b * P * N + j0;
                __m512i mx = _mm512_maskz_loadu_epi8(mk, g);
                for (int v = 1; v < P; v++) mx = _mm512_max_epu8(mx, _mm512_maskz_loadu_epi8(mk, g + (int64_t)v * N));
                uint8_t best[64];
                _mm512_storeu_si512(best, mx);
                const int n = left < 64 ? left : 64;
                for (int j = 0; j < n; j++) dst[(j0 + j) * plane + (int64_t)a * wp + b] = best[j];
            }
        }
    }
}

typedef int (*columns_fn)(const remeco_layer_t *, const uint8_t *, int, chunk_scratch_t *, int *);

AMX_TARGET static void amx_columns_begin(void) { amx_configure(); }
AMX_TARGET static void amx_columns_end(void) { _tile_release(); }

/* The chunked path: VCHUNK vectors (im2col rows made here for conv layers) through
 * `columns` (steps 2-4: AMX tiles or VNNI) and chunk_neurons (steps 5-7), then max pooling.
 * Same arguments and results as remeco_layer_images. */
NEURON_TARGET static int chunked_images(const remeco_layer_t *L, const uint8_t *x, int64_t n, void *out,
                                        int64_t *bad_row, int use_amx)
{
    const columns_fn columns = use_amx ? amx_columns : vnni_columns;
    chunk_scratch_t S = {0};
    int status = chunk_alloc(L, &S);
    uint8_t *patch = NULL, *codes = NULL, *padded = NULL, *rowmax = NULL;
    int64_t *offs = NULL;
    const int N = L->N;
    if (status == OK && L->conv) {
        const int P = L->pool, Hp = L->H + 2 * L->padding, Wp = L->W + 2 * L->padding;
        patch = malloc((size_t)VCHUNK * L->K + 8);
        codes = malloc((size_t)L->Ho * L->Wo * N);
        rowmax = malloc((size_t)L->Wo * N + 64);
        padded = calloc((size_t)L->C * Hp * Wp + 8, 1);
        offs = malloc((size_t)L->K * sizeof(int64_t));
        if (!(patch && codes && padded && offs && rowmax)) status = ERR_ALLOC;
        else
            for (int c = 0, k = 0; c < L->C; c++)
                for (int ki = 0; ki < L->kernel; ki++)
                    for (int kj = 0; kj < L->kernel; kj++) offs[k++] = ((int64_t)c * Hp + ki) * Wp + kj;
        (void)P;
    }
    if (status == OK && use_amx) amx_columns_begin();
    if (!L->conv) {
        /* rows (dense layers, or im2col rows made by the caller) */
        for (int64_t r0 = 0; r0 < n && status == OK; r0 += VCHUNK) {
            const int nv = n - r0 < VCHUNK ? (int)(n - r0) : VCHUNK;
            int bad = 0;
            status = columns(L, x + r0 * L->K, nv, &S, &bad);
            if (status == OK) status = chunk_neurons(L, &S, nv, out, r0 * N, &bad);
            if (status) *bad_row = r0 + bad;
        }
    } else {
        const int P = L->pool, Hp = L->H + 2 * L->padding, Wp = L->W + 2 * L->padding;
        const int positions = L->Ho * L->Wo, hp = L->Ho / P, wp = L->Wo / P;
        const int64_t in_size = (int64_t)L->C * L->H * L->W, out_size = (int64_t)N * hp * wp;
        for (int64_t i = 0; i < n && status == OK; i++) {
            const uint8_t *img = x + i * in_size;
            for (int c = 0; c < L->C; c++)
                for (int h = 0; h < L->H; h++)
                    memcpy(padded + ((int64_t)c * Hp + h + L->padding) * Wp + L->padding,
                           img + ((int64_t)c * L->H + h) * L->W, L->W);
            for (int p0 = 0; p0 < positions && status == OK; p0 += VCHUNK) {
                const int nv = positions - p0 < VCHUNK ? positions - p0 : VCHUNK;
                for (int v = 0; v < nv; v++) {
                    const int pos = p0 + v, oh = pos / L->Wo, ow = pos % L->Wo;
                    const uint8_t *origin = padded + (int64_t)oh * L->stride * Wp + (int64_t)ow * L->stride;
                    uint8_t *dst = patch + (int64_t)v * L->K;
                    if (L->kernel <= 8) {
                        /* one 8-byte copy per (channel, kernel row); each overwrites the
                         * previous one's spill, the buffers have 8 bytes of slack */
                        for (int seg = 0; seg < L->C * L->kernel; seg++) {
                            uint64_t w8;
                            memcpy(&w8, origin + offs[seg * L->kernel], 8);
                            memcpy(dst + seg * L->kernel, &w8, 8);
                        }
                    } else {
                        for (int k = 0; k < L->K; k++) dst[k] = origin[offs[k]];
                    }
                }
                int bad = 0;
                status = columns(L, patch, nv, &S, &bad);
                if (status == OK) status = chunk_neurons(L, &S, nv, codes, (int64_t)p0 * N, &bad);
                if (status) *bad_row = i * positions + p0 + bad;
            }
            if (status) break;
            max_pool(codes, L->Wo, N, P, hp, wp, rowmax, (uint8_t *)out + i * out_size);
        }
    }
    if (use_amx) amx_columns_end();
    chunk_free(&S);
    free(patch); free(codes); free(padded); free(offs); free(rowmax);
    return status;
}

/* remeco_layer_images on the AMX path: same arguments, same results. */
int remeco_layer_images_amx(const remeco_layer_t *L, const uint8_t *x, int64_t n, void *out, int64_t *bad_row)
{
    if (check_amx(L) || !remeco_amx_supported()) return ERR_ARGS;
    return chunked_images(L, x, n, out, bad_row, 1);
}

/* remeco_layer_images on the chunked VNNI path: codes packed by pack_codes in the AMX
 * column order (L->w, L->tile_off), the AMX path's copy tables; same results. */
int remeco_layer_images_vnni(const remeco_layer_t *L, const uint8_t *x, int64_t n, void *out, int64_t *bad_row)
{
    if (check_layer(L) || L->mode < 1 || L->Npad < L->N || L->Npad % LANES || L->n_extra < 0 || !L->w ||
        !L->tile_off || !L->ep_k || !L->ep_half || !remeco_cpu_supported() ||
        (L->lut_rows && (L->lut_rows != 8 || !L->lut || !L->lut_off)))
        return ERR_ARGS;
    return chunked_images(L, x, n, out, bad_row, 0);
}
