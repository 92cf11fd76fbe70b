/* Fused integer kernel of one crossbar layer: emulation steps 2-7 of
 * remeco.models.emulation, bit for bit, on AVX-512 VNNI.
 *
 * Per input vector (one row of the layer's im2col matrix, uint8):
 *   2. column accumulation per input bit plane: the 0/1 plane bits times the 10-bit
 *      cell codes, as exact 16-bit x 16-bit -> 32-bit dot products (vpdpwssd: two
 *      rows of the tile per 32-bit lane, sixteen physical columns per instruction);
 *   3. ADC: clamp((acc + 2^(s-1)) >> s, 0, adc_max);
 *   4. shift-and-add over bit planes and row tiles;
 *   5. copy averaging by column index lists (round half up by 2^k);
 *   6. slice recombination and offset correction;
 *   7. to accumulator units, then (mode) bias, int32 check, requantization + ReLU.
 * The bit planes are made here from the uint8 inputs and never stored as a matrix;
 * input pairs that are zero and bit planes above the row's highest set bit are
 * skipped: their accumulators are 0, and the ADC maps 0 to 0.
 *
 * Weight layout (made by remeco.models.engine.native.pack_codes): per row tile t,
 * starting at tile_off[t] int16 elements, [column block cb][row pair kp][16 lanes][2].
 *
 * Built by remeco.models.engine.native (gcc -O3 -shared); no Python headers, called
 * through ctypes, which releases the GIL for the call.
 */
#include <immintrin.h>
#include <stdint.h>
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
} remeco_layer_t;

enum { OK = 0, ERR_INT32 = 1, ERR_ALLOC = 2, ERR_ARGS = 3, ERR_INPUT = 4 };

int remeco_kernel_abi(void) { return 2; }

int remeco_cpu_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
}

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

/* One (row, tile, group of NCB column blocks) with NPL planes: accumulate and add the
 * shifted ADC outputs into y. Constant NPL / NCB let the compiler keep every
 * accumulator in a register. */
#define MICRO(NPL, NCB)                                                                      \
    TARGET static void micro_##NPL##_##NCB(const uint32_t *pl, const int32_t *idx, int m,   \
                                           const int16_t *wbase, int64_t cb_stride,         \
                                           __m512i half, __m128i sh, __m512i amax,           \
                                           int32_t *y)                                       \
    {                                                                                        \
        __m512i acc[NPL][NCB];                                                               \
        for (int b = 0; b < NPL; b++)                                                        \
            for (int j = 0; j < NCB; j++) acc[b][j] = _mm512_setzero_si512();                \
        for (int i = 0; i < m; i++) {                                                        \
            const int16_t *wp = wbase + (int64_t)idx[i] * (2 * LANES);                       \
            __m512i wv[NCB];                                                                 \
            for (int j = 0; j < NCB; j++) wv[j] = _mm512_loadu_si512(wp + j * cb_stride);    \
            const uint32_t *pi = pl + (int64_t)i * MAX_PLANES;                               \
            for (int b = 0; b < NPL; b++) {                                                  \
                __m512i xb = _mm512_set1_epi32((int)pi[b]);                                  \
                for (int j = 0; j < NCB; j++) acc[b][j] = _mm512_dpwssd_epi32(acc[b][j], xb, wv[j]); \
            }                                                                                \
        }                                                                                    \
        for (int j = 0; j < NCB; j++) {                                                      \
            __m512i ys = _mm512_loadu_si512(y + j * LANES);                                  \
            for (int b = 0; b < NPL; b++) {                                                  \
                __m512i a = _mm512_sra_epi32(_mm512_add_epi32(acc[b][j], half), sh);         \
                a = _mm512_min_epi32(_mm512_max_epi32(a, _mm512_setzero_si512()), amax);     \
                ys = _mm512_add_epi32(ys, _mm512_slli_epi32(a, b));                          \
            }                                                                                \
            _mm512_storeu_si512(y + j * LANES, ys);                                          \
        }                                                                                    \
    }

#define MICRO_NCB(NPL) MICRO(NPL, 1) MICRO(NPL, 2) MICRO(NPL, 3)
MICRO_NCB(1) MICRO_NCB(2) MICRO_NCB(3) MICRO_NCB(4)
MICRO_NCB(5) MICRO_NCB(6) MICRO_NCB(7) MICRO_NCB(8)

typedef void (*micro_fn)(const uint32_t *, const int32_t *, int, const int16_t *, int64_t, __m512i,
                         __m128i, __m512i, int32_t *);

#define ROW3(NPL) {micro_##NPL##_1, micro_##NPL##_2, micro_##NPL##_3}
static const micro_fn MICROS[MAX_PLANES][3] = {ROW3(1), ROW3(2), ROW3(3), ROW3(4),
                                                ROW3(5), ROW3(6), ROW3(7), ROW3(8)};

static inline int64_t round_shift64(int64_t v, int s)
{
    return s ? (v + ((int64_t)1 << (s - 1))) >> s : v;
}

/* T[v][b] = bit b of v: the eight plane words of one input byte. */
static uint32_t PLANE_TABLE[256][MAX_PLANES] __attribute__((aligned(32)));
static int plane_table_ready = 0;

static void init_plane_table(void)
{
    if (plane_table_ready) return;
    for (int v = 0; v < 256; v++)
        for (int b = 0; b < MAX_PLANES; b++) PLANE_TABLE[v][b] = (uint32_t)((v >> b) & 1);
    plane_table_ready = 1;
}

typedef struct {
    int32_t *y;     /* PB * 16 shift-and-added column values */
    uint32_t *pl;   /* plane words of the non-zero row pairs, MAX_PLANES each */
    int32_t *idx;   /* their row-pair indices */
} scratch_t;

/* One input vector xr (K bytes) through steps 2-7; writes N outputs at out (element
 * offset o of the mode's type). Returns 0, ERR_INPUT (an input >= 2^input_bits) or
 * ERR_INT32 (bias-added accumulator outside int32). */
TARGET static int process_row(const remeco_layer_t *L, const uint8_t *xr, scratch_t *S, void *out, int64_t o)
{
    const int K = L->K, rows = L->rows, PB = L->PB;
    const __m512i half = _mm512_set1_epi32(L->adc_shift ? 1 << (L->adc_shift - 1) : 0);
    const __m128i sh = _mm_cvtsi32_si128(L->adc_shift);
    const __m512i amax = _mm512_set1_epi32(L->adc_max);
    int32_t *y = S->y;
    memset(y, 0, (size_t)PB * LANES * sizeof(int32_t));
    int64_t xsum = 0;
    for (int t = 0; t < L->row_tiles; t++) {
        const int k0 = t * rows;
        const int kt = K - k0 < rows ? K - k0 : rows;
        const int kp_tile = (kt + 1) / 2;
        /* Non-zero row pairs of this tile and their plane words (bit of the even row in
         * the low half, of the odd row in the high half). */
        int m = 0;
        unsigned any = 0;
        for (int kp = 0; kp < kp_tile; kp++) {
            const unsigned v0 = xr[k0 + 2 * kp];
            const unsigned v1 = (2 * kp + 1 < kt) ? xr[k0 + 2 * kp + 1] : 0u;
            if (!(v0 | v1)) continue;
            xsum += v0 + v1;
            any |= v0 | v1;
            const __m256i p0 = _mm256_load_si256((const __m256i *)PLANE_TABLE[v0]);
            const __m256i p1 = _mm256_load_si256((const __m256i *)PLANE_TABLE[v1]);
            _mm256_storeu_si256((__m256i *)(S->pl + (int64_t)m * MAX_PLANES),
                                _mm256_or_si256(p0, _mm256_slli_epi32(p1, 16)));
            S->idx[m++] = kp;
        }
        if (!m) continue;
        if (any >> L->input_bits) return ERR_INPUT;
        const int npl = 32 - __builtin_clz(any);
        const int16_t *wt = L->w + L->tile_off[t];
        const int64_t cb_stride = (int64_t)kp_tile * 2 * LANES;
        for (int cb = 0; cb < PB; cb += 3) {
            const int ncb = PB - cb < 3 ? PB - cb : 3;
            MICROS[npl - 1][ncb - 1](S->pl, S->idx, m, wt + cb * cb_stride, cb_stride, half, sh, amax, y + cb * LANES);
        }
    }
    /* Steps 5-7 per neuron. */
    for (int j = 0; j < L->N; j++) {
        int64_t combined = 0;
        for (int s = 0; s < L->n_slices; s++) {
            const int g = j * L->n_slices + s;
            int64_t sum = 0;
            for (int c = L->grp_start[g]; c < L->grp_start[g + 1]; c++) sum += y[L->grp_cols[c]];
            combined += round_shift64(sum, L->grp_k[g]) << (L->slice_bits * s);
        }
        const int64_t z = (combined << L->adc_shift) - ((L->weight_offset * xsum) << L->code_frac);
        const int64_t acc = round_shift64(z, L->code_frac);
        if (L->mode == 0) {
            ((int64_t *)out)[o + j] = acc;
            continue;
        }
        const int64_t tv = acc + L->bias[j];
        if (tv > INT32_MAX || tv < INT32_MIN) return ERR_INT32;
        if (L->mode == 1) {
            ((int32_t *)out)[o + j] = (int32_t)tv;
        } else {
            const int64_t q = round_shift64(tv * L->multiplier, L->shift);
            ((uint8_t *)out)[o + j] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
        }
    }
    return OK;
}

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

/* Rows [0, n) of x (n x K uint8, contiguous, e.g. im2col rows) through the layer; out
 * is int64 (mode 0), int32 (mode 1) or uint8 (mode 2), n x N. Returns 0 or an error
 * code; on ERR_INT32 the offending row is written to *bad_row. */
TARGET int remeco_layer_rows(const remeco_layer_t *L, const uint8_t *x, int64_t n, void *out, int64_t *bad_row)
{
    if (check_layer(L)) return ERR_ARGS;
    init_plane_table();
    const int max_pairs = (L->rows + 1) / 2;
    scratch_t S = {aligned_alloc(64, (size_t)L->PB * LANES * sizeof(int32_t)),
                   aligned_alloc(32, (size_t)max_pairs * MAX_PLANES * sizeof(uint32_t)),
                   malloc((size_t)max_pairs * sizeof(int32_t))};
    int status = (S.y && S.pl && S.idx) ? OK : ERR_ALLOC;
    for (int64_t r = 0; r < n && status == OK; r++) {
        status = process_row(L, x + r * L->K, &S, out, r * L->N);
        if (status) *bad_row = r;
    }
    free(S.y); free(S.pl); free(S.idx);
    return status;
}

/* Whole images through the layer. Dense: x is n x K (an image's activations, flattened
 * C, H, W), out as remeco_layer_rows. Conv: x is n x (C, H, W) uint8; every output
 * position's patch is gathered in im2col order (channel, kernel row, kernel column; zero
 * padding), run through steps 2-7 with requantization, and the uint8 codes are max
 * pooled into out, n x (N, Ho / pool, Wo / pool): what QuantizedLayer.input_rows and
 * arrange_outputs do, without materialising the im2col matrix. */
TARGET int remeco_layer_images(const remeco_layer_t *L, const uint8_t *x, int64_t n, void *out, int64_t *bad_row)
{
    if (!L->conv) return remeco_layer_rows(L, x, n, out, bad_row);
    if (check_layer(L)) return ERR_ARGS;
    init_plane_table();
    const int max_pairs = (L->rows + 1) / 2;
    const int positions = L->Ho * L->Wo, N = L->N, P = L->pool;
    const int hp = L->Ho / P, wp = L->Wo / P;
    const int64_t in_size = (int64_t)L->C * L->H * L->W, out_size = (int64_t)N * hp * wp;
    scratch_t S = {aligned_alloc(64, (size_t)L->PB * LANES * sizeof(int32_t)),
                   aligned_alloc(32, (size_t)max_pairs * MAX_PLANES * sizeof(uint32_t)),
                   malloc((size_t)max_pairs * sizeof(int32_t))};
    uint8_t *patch = malloc((size_t)L->K);
    uint8_t *codes = malloc((size_t)positions * N);
    int status = (S.y && S.pl && S.idx && patch && codes) ? OK : ERR_ALLOC;
    for (int64_t i = 0; i < n && status == OK; i++) {
        const uint8_t *img = x + i * in_size;
        for (int oh = 0; oh < L->Ho && status == OK; oh++) {
            for (int ow = 0; ow < L->Wo; ow++) {
                int k = 0;
                for (int c = 0; c < L->C; c++) {
                    for (int ki = 0; ki < L->kernel; ki++) {
                        const int ih = oh * L->stride - L->padding + ki;
                        const int row_in = ih >= 0 && ih < L->H;
                        const uint8_t *src = img + ((int64_t)c * L->H + ih) * L->W;
                        for (int kj = 0; kj < L->kernel; kj++) {
                            const int iw = ow * L->stride - L->padding + kj;
                            patch[k++] = (row_in && iw >= 0 && iw < L->W) ? src[iw] : 0;
                        }
                    }
                }
                const int64_t pos = (int64_t)oh * L->Wo + ow;
                status = process_row(L, patch, &S, codes, pos * N);
                if (status) {
                    *bad_row = i * positions + pos;
                    break;
                }
            }
        }
        if (status) break;
        uint8_t *dst = (uint8_t *)out + i * out_size;
        for (int j = 0; j < N; j++)
            for (int a = 0; a < hp; a++)
                for (int b = 0; b < wp; b++) {
                    uint8_t best = 0;
                    for (int u = 0; u < P; u++)
                        for (int v = 0; v < P; v++) {
                            const uint8_t c = codes[((int64_t)(a * P + u) * L->Wo + (b * P + v)) * N + j];
                            best = c > best ? c : best;
                        }
                    dst[((int64_t)j * hp + a) * wp + b] = best;
                }
    }
    free(S.y); free(S.pl); free(S.idx); free(patch); free(codes);
    return status;
}
