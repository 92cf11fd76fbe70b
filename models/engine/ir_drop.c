/* The element-wise steps and line solutions of remeco.models.crossbar.fast_transfer_stack,
 * bit for bit: the same float64 operations in the same order, each rounded once (built
 * with -ffp-contract=off; only +, -, *, / of IEEE doubles, which vectorize exactly).
 * The two reductions per tile (row sums of the device currents and their product with
 * the column means, a BLAS matrix-vector product) stay in numpy, between the two calls.
 *
 * Tiles are (m, n) C-contiguous float64 blocks of a (T, m, n) stack. Built into the
 * library of kernel.c by remeco.models.engine.native; called through ctypes. Each
 * function is compiled twice, for AVX-512F and for the baseline, the CPU picking one
 * when the library loads (the same IEEE operations, 8 or 2 to a vector).
 */
#define CLONES __attribute__((target_clones("avx512f", "default")))
#include <stdint.h>
#include <stdlib.h>

int remeco_ir_drop_abi(void) { return 1; }

/* Per-thread scratch of the tile being solved, kept between calls (fresh pages for every
 * call cost as much as the arithmetic). */
static double *scratch(size_t count)
{
    static __thread double *buf;
    static __thread size_t cap;
    if (count > cap) {
        free(buf);
        buf = malloc(sizeof(double) * count);
        cap = buf ? count : 0;
    }
    return buf;
}

/* Per tile: the bit lines (reach: the suffix products of the attenuations), the
 * driving-point factor g_z, the word lines (u); then transfer = G reach u,
 * device = g_eff u and leak = (1 - reach - g_z) (1 - u), the sneak-current factor
 * before its row's g_push. Returns 0, or 2 when out of memory. */
CLONES int remeco_fast_transfer_lines(int64_t T, int64_t m, int64_t n, const double *G, double r_w, double r_b,
                               double *transfer, double *device, double *leak)
{
    double *re = scratch((size_t)(4 * m * n));
    if (!re) return 2;
    double *gz = re + m * n, *uu = gz + m * n, *wl = uu + m * n; /* wl: (n, m), column j is row j */
    for (int64_t t = 0; t < T; t++) {
        const double *g = G + t * m * n;
        double *tr = transfer + t * m * n, *dv = device + t * m * n, *lk = leak + t * m * n;
        /* _bit_line_transmission: chains along the rows, one per column */
        for (int64_t k = 0; k < m * n; k++) { double v = g[k] * r_b; re[k] = v + 2.0; }
        for (int64_t j = 0; j < n; j++) re[j] = re[j] - 1.0;
        for (int64_t i = 1; i < m; i++)  /* dpttrf pivots, d[p] - 1 / d[p - 1] */
            for (int64_t j = 0; j < n; j++) { double inv = 1.0 / re[(i - 1) * n + j]; re[i * n + j] = re[i * n + j] - inv; }
        for (int64_t k = 0; k < m * n; k++) re[k] = 1.0 / re[k];
        for (int64_t i = m - 2; i >= 0; i--)
            for (int64_t j = 0; j < n; j++) re[i * n + j] = re[(i + 1) * n + j] * re[i * n + j];
        /* g_z = reach (r_b (m - i)) G; g_eff = (1 - g_z) G, held in dv for now */
        for (int64_t i = 0; i < m; i++) {
            double c = r_b * ((double)m - (double)i);
            for (int64_t j = 0; j < n; j++) {
                double z = re[i * n + j] * c;
                z = z * g[i * n + j];
                gz[i * n + j] = z;
                double e = 1.0 - z;
                dv[i * n + j] = e * g[i * n + j];
            }
        }
        /* _word_line_voltages: chains along the columns from the open far end (n - 1),
         * one per row, held transposed */
        for (int64_t ib = 0; ib < m; ib += 8)  /* in 8 x 8 blocks: strided stores in few lines */
            for (int64_t jb = 0; jb < n; jb += 8)
                for (int64_t j = jb; j < (jb + 8 < n ? jb + 8 : n); j++)
                    for (int64_t i = ib; i < (ib + 8 < m ? ib + 8 : m); i++) { double v = dv[i * n + j] * r_w; wl[j * m + i] = v + 2.0; }
        for (int64_t i = 0; i < m; i++) wl[(n - 1) * m + i] = wl[(n - 1) * m + i] - 1.0;
        for (int64_t j = n - 2; j >= 0; j--)
            for (int64_t i = 0; i < m; i++) { double inv = 1.0 / wl[(j + 1) * m + i]; wl[j * m + i] = wl[j * m + i] - inv; }
        for (int64_t k = 0; k < m * n; k++) wl[k] = 1.0 / wl[k];
        for (int64_t j = 1; j < n; j++)
            for (int64_t i = 0; i < m; i++) wl[j * m + i] = wl[(j - 1) * m + i] * wl[j * m + i];
        for (int64_t ib = 0; ib < m; ib += 8)
            for (int64_t jb = 0; jb < n; jb += 8)
                for (int64_t i = ib; i < (ib + 8 < m ? ib + 8 : m); i++)
                    for (int64_t j = jb; j < (jb + 8 < n ? jb + 8 : n); j++) uu[i * n + j] = wl[j * m + i];
        for (int64_t k = 0; k < m * n; k++) {
            double v = g[k] * re[k];
            tr[k] = v * uu[k];
            dv[k] = dv[k] * uu[k];
            double l = 1.0 - re[k];
            l = l - gz[k];
            lk[k] = l * (1.0 - uu[k]);
        }
    }
    return 0;
}

/* The first reflection of the sneak current: transfer += leak g_push, g_push (T, m) per row. */
CLONES void remeco_fast_transfer_leak(int64_t T, int64_t m, int64_t n, const double *leak, const double *g_push,
                               double *transfer)
{
    for (int64_t r = 0; r < T * m; r++) {
        double p = g_push[r];
        const double *lk = leak + r * n;
        double *tr = transfer + r * n;
        for (int64_t j = 0; j < n; j++) { double l = lk[j] * p; tr[j] = tr[j] + l; }
    }
}
