/* Write-and-verify of devices from the reset state without read noise: the loop of
 * remeco.models.device._write_verify_flat, bit for bit, for the devices that never
 * enter a window of the Yakopcic window function.
 *
 * Every float64 operation is the one numpy performs, in the same order, rounded once
 * (no FMA: built with -ffp-contract=off, and the AVX-512 path has no FMA intrinsic; the
 * vector division, ceiling and comparisons are the IEEE operations of the scalar ones).
 * No transcendental function is called: inside a window the progress coordinate takes E1
 * and exp (scipy's exp1 and numpy's own exp, which need not match libm to the last bit),
 * so a device whose trajectory needs one (its read or true state inside a window where
 * its position is used, or a burst ending inside one) is not finished here: it is
 * flagged in `fallback` and Python programs it with the numpy loop. Devices do not
 * interact, so this gives every device the bits the numpy loop gives it among others.
 *
 * Devices go through in blocks whose state stays in cache; within a block, one pass per
 * verify iteration over the devices still active (struct of arrays, compacted in place),
 * eight devices per AVX-512 vector where the CPU has AVX-512F, one at a time otherwise.
 *
 * Built into the library of kernel.c by remeco.models.engine.native; called through ctypes.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t levels;
    int32_t vector;              /* 1: the AVX-512 pass where the CPU has it; 0: scalar */
    double g_off, g_on, g_span;  /* g_span = g_on - g_off, as Python computes it */
    double spacing, tolerance, max_pulses;
    double pulse_width, min_width;
    double rn_up, rn_down;       /* nominal progress per second of SET / RESET */
    double tol_progress;
    double y_lo, y_hi;           /* clip of the read-back state */
    double shrink;
    double k_min, k_max;
    double thr_up, thr_down;     /* window thresholds of the progress maps */
    const double *g_target, *aim_up, *aim_down;  /* per level */
    /* first pass from reset, per class (fault + 1) * levels + level */
    const int64_t *ok_c, *rising_c;
    const double *here_c, *count_c, *burst_c;
    /* devices that cannot move, per class */
    const int64_t *fz_pulses, *fz_reads;
    const double *fz_time;
    const uint8_t *fz_converged;
} remeco_wv_t;

typedef struct {
    double *conductance, *pulse_time;
    int64_t *pulses, *reads;
    uint8_t *converged, *fallback;
} outputs_t;

/* The state of the active devices of a block, one array per quantity, all 64-bit lanes. */
enum { IDX, FL, LR, X, RU, RD, KU, KD, CS, TS, LW, LF, GT, AU, AD, N_ARRAYS };
#define BLOCK 2048
#define PAD 8 /* a vector store at the compaction point may write up to 7 lanes beyond */

int remeco_write_verify_abi(void) { return 2; }

/* numpy's float maximum / minimum inside np.clip and np.maximum: NaN propagates from the
 * first argument; otherwise the larger (smaller) one, the first on ties. */
static inline double np_max(double a, double b) { return (isnan(a) || a >= b) ? a : b; }
static inline double np_min(double a, double b) { return (isnan(a) || a <= b) ? a : b; }
static inline double np_clip(double a, double lo, double hi) { return np_min(np_max(a, lo), hi); }

/* The true conductance of a device in state x (_read_true_fast). */
static inline double read_true(const remeco_wv_t *P, double x, int64_t fault)
{
    double g = x * P->g_span;
    g = P->g_off + g;
    return fault > 0 ? P->g_on : fault < 0 ? P->g_off : g;
}

static void finish(const remeco_wv_t *P, const outputs_t *o, int64_t i, double x, int64_t fault, double cs,
                   double ts, int64_t it, int ok)
{
    o->conductance[i] = read_true(P, x, fault); o->pulses[i] = (int64_t)cs; o->pulse_time[i] = ts;
    o->reads[i] = it; o->converged[i] = (uint8_t)ok;
}

/* One verify iteration over the m active devices, scalar; returns how many stay active. */
static int pass_scalar(const remeco_wv_t *P, double **A, int m, int64_t it, const outputs_t *o)
{
    int64_t *idx = (int64_t *)A[IDX], *fl = (int64_t *)A[FL], *lr = (int64_t *)A[LR];
    double *x = A[X], *ru = A[RU], *rd = A[RD], *ku = A[KU], *kd = A[KD], *cs = A[CS], *ts = A[TS],
           *lw = A[LW], *lf = A[LF], *gt = A[GT], *au = A[AU], *ad = A[AD];
    int k = 0;
    for (int j = 0; j < m; j++) {
        int64_t i = idx[j];
        double xj = x[j];
        double g = xj * P->g_span;
        g = g + P->g_off;
        if (fl[j] > 0) g = P->g_on;
        else if (fl[j] < 0) g = P->g_off;
        double err = g - gt[j];
        err = err / P->spacing;
        int ok = fabs(err) <= P->tolerance;
        if (ok || !(cs[j] < P->max_pulses)) {
            finish(P, o, i, xj, fl[j], cs[j], ts[j], it, ok);
            continue;
        }
        double xh = g - P->g_off;
        xh = xh / P->g_span;
        xh = np_clip(xh, P->y_lo, P->y_hi);
        int r = err < 0;
        double thr = r ? P->thr_up : P->thr_down;
        double here = r ? xh : 1.0 - xh;
        if (here >= thr) { o->fallback[i] = 1; continue; }
        int l = (int)lr[j];
        double observed = here;
        if (l != r) {
            observed = l ? xh : 1.0 - xh;
            if (observed >= (l ? P->thr_up : P->thr_down)) { o->fallback[i] = 1; continue; }
        }
        double nominal = (l ? P->rn_up : P->rn_down) * lw[j];
        double expected = nominal * (l ? ku[j] : kd[j]);
        observed = observed - lf[j];
        double k_obs = np_clip(observed / nominal, P->k_min, P->k_max);
        double kuj = ku[j], kdj = kd[j];
        if (expected > P->tol_progress) {
            if (l) kuj = k_obs; else kdj = k_obs;
        }
        double needed = (r ? au[j] : ad[j]) - here;
        needed = np_max(needed, 0.0);
        double kk = (r ? kuj : kdj) * (r ? P->rn_up : P->rn_down);
        double t_plan = needed / kk;
        double count = t_plan / P->pulse_width;
        count = count * P->shrink;
        count = ceil(count);
        double left = P->max_pulses - cs[j];
        count = np_clip(count, 1.0, left);
        double width = t_plan / count;
        width = np_clip(width, P->min_width, P->pulse_width);
        double burst = count * width;
        double prog = (r ? ru[j] : rd[j]) * burst;
        if (prog > 0) {
            double s = r ? xj : 1.0 - xj;
            if (s >= thr) { o->fallback[i] = 1; continue; }
            s = s + prog;
            if (s >= thr) { o->fallback[i] = 1; continue; }
            xj = r ? s : 1.0 - s;
        }
        idx[k] = i; fl[k] = fl[j]; ru[k] = ru[j]; rd[k] = rd[j]; gt[k] = gt[j]; au[k] = au[j]; ad[k] = ad[j];
        x[k] = xj; ku[k] = kuj; kd[k] = kdj;
        cs[k] = cs[j] + count; ts[k] = ts[j] + burst;
        lr[k] = r; lw[k] = burst; lf[k] = here;
        k++;
    }
    return k;
}

#define V512 __attribute__((target("avx512f")))

/* np_max / np_min / np_clip on eight lanes (the same selections as the scalar ones). */
V512 static inline __m512d v_max(__m512d a, __m512d b)
{
    __mmask8 keep = _mm512_cmp_pd_mask(a, b, _CMP_GE_OQ) | _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q);
    return _mm512_mask_blend_pd(keep, b, a);
}
V512 static inline __m512d v_min(__m512d a, __m512d b)
{
    __mmask8 keep = _mm512_cmp_pd_mask(a, b, _CMP_LE_OQ) | _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q);
    return _mm512_mask_blend_pd(keep, b, a);
}
V512 static inline __m512d v_clip(__m512d a, __m512d lo, __m512d hi) { return v_min(v_max(a, lo), hi); }

/* pass_scalar on eight devices per step. Lanes are selected with masks where the scalar
 * code branches; a lane's result is the scalar code's (the union of the fallback
 * conditions flags the same devices, as a flagged device's other values are unused). */
V512 static int pass_avx512(const remeco_wv_t *P, double **A_, int m, int64_t it, const outputs_t *o)
{
    double *A[N_ARRAYS];  /* a local copy: stores through double * cannot change it */
    for (int k = 0; k < N_ARRAYS; k++) A[k] = A_[k];
    const __m512d g_span = _mm512_set1_pd(P->g_span), g_off = _mm512_set1_pd(P->g_off),
                  g_on = _mm512_set1_pd(P->g_on), spacing = _mm512_set1_pd(P->spacing),
                  tol = _mm512_set1_pd(P->tolerance), maxp = _mm512_set1_pd(P->max_pulses),
                  y_lo = _mm512_set1_pd(P->y_lo), y_hi = _mm512_set1_pd(P->y_hi), one = _mm512_set1_pd(1.0),
                  zero = _mm512_setzero_pd(), thr_up = _mm512_set1_pd(P->thr_up),
                  thr_down = _mm512_set1_pd(P->thr_down), rn_up = _mm512_set1_pd(P->rn_up),
                  rn_down = _mm512_set1_pd(P->rn_down), tolp = _mm512_set1_pd(P->tol_progress),
                  k_min = _mm512_set1_pd(P->k_min), k_max = _mm512_set1_pd(P->k_max),
                  pw = _mm512_set1_pd(P->pulse_width), minw = _mm512_set1_pd(P->min_width),
                  shrink = _mm512_set1_pd(P->shrink);
    const __m512i izero = _mm512_setzero_si512();
    int k = 0;
    for (int j = 0; j < m; j += 8) {
        __mmask8 live = m - j >= 8 ? 0xff : (__mmask8)((1u << (m - j)) - 1);
        __m512d v[N_ARRAYS];
        for (int a = 0; a < N_ARRAYS; a++) v[a] = _mm512_maskz_loadu_pd(live, A[a] + j);
        __m512i fl = _mm512_castpd_si512(v[FL]), lri = _mm512_castpd_si512(v[LR]);
        __m512d x = v[X];
        __m512d g = _mm512_mul_pd(x, g_span);
        g = _mm512_add_pd(g, g_off);
        g = _mm512_mask_blend_pd(_mm512_cmpgt_epi64_mask(fl, izero), g, g_on);
        g = _mm512_mask_blend_pd(_mm512_cmplt_epi64_mask(fl, izero), g, g_off);
        __m512d err = _mm512_sub_pd(g, v[GT]);
        err = _mm512_div_pd(err, spacing);
        __mmask8 ok = _mm512_cmp_pd_mask(_mm512_abs_pd(err), tol, _CMP_LE_OQ);
        __mmask8 done = (ok | ~_mm512_cmp_pd_mask(v[CS], maxp, _CMP_LT_OQ)) & live;
        if (done) {
            double xs[8], css[8], tss[8];
            int64_t ids[8], fls[8];
            _mm512_storeu_pd(xs, x); _mm512_storeu_pd(css, v[CS]); _mm512_storeu_pd(tss, v[TS]);
            _mm512_storeu_si512(ids, _mm512_castpd_si512(v[IDX]));
            _mm512_storeu_si512(fls, fl);
            for (unsigned bits = done; bits; bits &= bits - 1) {
                int l = __builtin_ctz(bits);
                finish(P, o, ids[l], xs[l], fls[l], css[l], tss[l], it, (ok >> l) & 1);
            }
        }
        __m512d xh = _mm512_sub_pd(g, g_off);
        xh = _mm512_div_pd(xh, g_span);
        xh = v_clip(xh, y_lo, y_hi);
        __mmask8 r = _mm512_cmp_pd_mask(err, zero, _CMP_LT_OQ);
        __m512d thr = _mm512_mask_blend_pd(r, thr_down, thr_up);
        __m512d xh_down = _mm512_sub_pd(one, xh);
        __m512d here = _mm512_mask_blend_pd(r, xh_down, xh);
        __mmask8 fb = _mm512_cmp_pd_mask(here, thr, _CMP_GE_OQ);
        __mmask8 l = _mm512_cmpneq_epi64_mask(lri, izero);
        __mmask8 changed = l ^ r;
        __m512d q = _mm512_mask_blend_pd(l, xh_down, xh);
        fb |= changed & _mm512_cmp_pd_mask(q, _mm512_mask_blend_pd(l, thr_down, thr_up), _CMP_GE_OQ);
        __m512d observed = _mm512_mask_blend_pd(changed, here, q);
        __m512d nominal = _mm512_mul_pd(_mm512_mask_blend_pd(l, rn_down, rn_up), v[LW]);
        __m512d expected = _mm512_mul_pd(nominal, _mm512_mask_blend_pd(l, v[KD], v[KU]));
        observed = _mm512_sub_pd(observed, v[LF]);
        __m512d k_obs = v_clip(_mm512_div_pd(observed, nominal), k_min, k_max);
        __mmask8 learn = _mm512_cmp_pd_mask(expected, tolp, _CMP_GT_OQ);
        __m512d ku = _mm512_mask_blend_pd(learn & l, v[KU], k_obs);
        __m512d kd = _mm512_mask_blend_pd(learn & ~l, v[KD], k_obs);
        __m512d needed = _mm512_sub_pd(_mm512_mask_blend_pd(r, v[AD], v[AU]), here);
        needed = v_max(needed, zero);
        __m512d kk = _mm512_mul_pd(_mm512_mask_blend_pd(r, kd, ku), _mm512_mask_blend_pd(r, rn_down, rn_up));
        __m512d t_plan = _mm512_div_pd(needed, kk);
        __m512d count = _mm512_div_pd(t_plan, pw);
        count = _mm512_mul_pd(count, shrink);
        count = _mm512_roundscale_pd(count, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
        __m512d left = _mm512_sub_pd(maxp, v[CS]);
        count = v_clip(count, one, left);
        __m512d width = _mm512_div_pd(t_plan, count);
        width = v_clip(width, minw, pw);
        __m512d burst = _mm512_mul_pd(count, width);
        __m512d prog = _mm512_mul_pd(_mm512_mask_blend_pd(r, v[RD], v[RU]), burst);
        __mmask8 moving = _mm512_cmp_pd_mask(prog, zero, _CMP_GT_OQ);
        __m512d s = _mm512_mask_blend_pd(r, _mm512_sub_pd(one, x), x);
        fb |= moving & _mm512_cmp_pd_mask(s, thr, _CMP_GE_OQ);
        s = _mm512_add_pd(s, prog);
        fb |= moving & _mm512_cmp_pd_mask(s, thr, _CMP_GE_OQ);
        x = _mm512_mask_blend_pd(moving, x, _mm512_mask_blend_pd(r, _mm512_sub_pd(one, s), s));
        fb &= live & ~done;
        if (fb) {
            int64_t ids[8];
            _mm512_storeu_si512(ids, _mm512_castpd_si512(v[IDX]));
            for (unsigned bits = fb; bits; bits &= bits - 1) o->fallback[ids[__builtin_ctz(bits)]] = 1;
        }
        __mmask8 keep = live & ~done & ~fb;
        if (!keep) continue;
        v[X] = x; v[KU] = ku; v[KD] = kd;
        v[CS] = _mm512_add_pd(v[CS], count);
        v[TS] = _mm512_add_pd(v[TS], burst);
        v[LR] = _mm512_castsi512_pd(_mm512_maskz_set1_epi64(r, 1));
        v[LW] = burst; v[LF] = here;
        /* Compact: the kept lanes to positions k, k + 1, ... (k <= j, so nothing unread is
         * overwritten; the lanes stored beyond the kept ones land below j + 8). */
        for (int a = 0; a < N_ARRAYS; a++) _mm512_storeu_pd(A[a] + k, _mm512_maskz_compress_pd(keep, v[a]));
        k += __builtin_popcount(keep);
    }
    return k;
}

/* Iteration 1 of device i from the reset state, per class (_first_pass_from_reset and
 * the by_class shortcut of _write_verify_flat): writes its outputs if it is finished or
 * handed back, else appends it to the active state at position m; returns 1 if appended. */
static inline int first_one(const remeco_wv_t *P, double **A, int m, int64_t i, const int64_t *level,
                            const int8_t *fault, const double *r_up, const double *r_down, const outputs_t *o)
{
    const int L = P->levels;
    int64_t c = ((int64_t)fault[i] + 1) * L + level[i];
    o->fallback[i] = 0;
    o->conductance[i] = read_true(P, 0.0, fault[i]);
    if (P->ok_c[c]) {
        o->pulses[i] = 0; o->pulse_time[i] = 0.0; o->reads[i] = 1; o->converged[i] = 1;
        return 0;
    }
    if (r_up[i] == 0.0 && r_down[i] == 0.0) {
        o->pulses[i] = P->fz_pulses[c]; o->pulse_time[i] = P->fz_time[c];
        o->reads[i] = P->fz_reads[c]; o->converged[i] = (uint8_t)P->fz_converged[c];
        return 0;
    }
    int r = (int)P->rising_c[c];
    double burst = P->burst_c[c];
    double prog = (r ? r_up[i] : r_down[i]) * burst;
    double xi = 0.0;
    if (prog > 0) {
        /* rising from x = 0 below the window: the position is the state itself */
        if (!r || !(P->thr_up > 0)) { o->fallback[i] = 1; return 0; }
        double s = xi + prog;
        if (s >= P->thr_up) { o->fallback[i] = 1; return 0; }
        xi = s;
    }
    ((int64_t *)A[IDX])[m] = i; ((int64_t *)A[FL])[m] = fault[i]; ((int64_t *)A[LR])[m] = r;
    A[X][m] = xi; A[RU][m] = r_up[i]; A[RD][m] = r_down[i];
    A[KU][m] = 1.0; A[KD][m] = 1.0;
    A[CS][m] = P->count_c[c]; A[TS][m] = burst;
    A[LW][m] = burst; A[LF][m] = P->here_c[c];
    A[GT][m] = P->g_target[level[i]]; A[AU][m] = P->aim_up[level[i]]; A[AD][m] = P->aim_down[level[i]];
    return 1;
}

/* first_one for the devices a .. b - 1, eight at a time where all eight are healthy and
 * can move (the per-class values are then those of healthy devices, looked up by level);
 * returns the number of devices appended to the active state. */
V512 static int first_avx512(const remeco_wv_t *P, double **A_, int64_t a, int64_t b, const int64_t *level,
                             const int8_t *fault, const double *r_up, const double *r_down, const outputs_t *o)
{
    const int L = P->levels;
    double *A[N_ARRAYS];  /* a local copy: stores through double * cannot change it */
    for (int k = 0; k < N_ARRAYS; k++) A[k] = A_[k];
    double *conductance = o->conductance, *pulse_time = o->pulse_time;
    int64_t *pulses = o->pulses, *reads = o->reads;
    uint8_t *converged = o->converged, *fallback = o->fallback;
    const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0), thr_up = _mm512_set1_pd(P->thr_up);
    const int thr_pos = P->thr_up > 0;
    const __m512d g_reset = _mm512_set1_pd(read_true(P, 0.0, 0));  /* healthy devices at x = 0 */
    /* the class of a healthy device is (0 + 1) * L + level: the tables from L on, by level
     * (up to 16 levels a two-register permutation, else a gather) */
    const int perm = L <= 16;
#define TABLE(name, t) const __m512d name##_lo = _mm512_loadu_pd((const double *)(t)), \
                                     name##_hi = _mm512_loadu_pd((const double *)(t) + 8); \
                       const double *name##_p = (const double *)(t)
    TABLE(ok, P->ok_c + L); TABLE(ri, P->rising_c + L); TABLE(bu, P->burst_c + L); TABLE(co, P->count_c + L);
    TABLE(he, P->here_c + L); TABLE(gt, P->g_target); TABLE(au, P->aim_up); TABLE(ad, P->aim_down);
#undef TABLE
#define LOOKUP(name) (perm ? _mm512_permutex2var_pd(name##_lo, lv, name##_hi) : _mm512_i64gather_pd(lv, name##_p, 8))
    int m = 0;
    int64_t i = a;
    for (; i + 8 <= b; i += 8) {
        uint64_t faults8;
        memcpy(&faults8, fault + i, 8);
        __m512d ru = _mm512_loadu_pd(r_up + i), rd = _mm512_loadu_pd(r_down + i);
        __mmask8 frozen = _mm512_cmp_pd_mask(ru, zero, _CMP_EQ_OQ) & _mm512_cmp_pd_mask(rd, zero, _CMP_EQ_OQ);
        if (faults8 || frozen) {
            for (int64_t k = i; k < i + 8; k++) m += first_one(P, A, m, k, level, fault, r_up, r_down, o);
            continue;
        }
        __m512i lv = _mm512_loadu_si512(level + i);
        __mmask8 ok = _mm512_cmpneq_epi64_mask(_mm512_castpd_si512(LOOKUP(ok)), _mm512_setzero_si512());
        __mmask8 r = _mm512_cmpneq_epi64_mask(_mm512_castpd_si512(LOOKUP(ri)), _mm512_setzero_si512());
        __m512d burst = LOOKUP(bu);
        __m512d prog = _mm512_mul_pd(_mm512_mask_blend_pd(r, rd, ru), burst);
        __mmask8 moving = _mm512_cmp_pd_mask(prog, zero, _CMP_GT_OQ);
        __m512d s = _mm512_add_pd(zero, prog);
        __mmask8 fb = moving & ~ok & (thr_pos ? (~r | _mm512_cmp_pd_mask(s, thr_up, _CMP_GE_OQ)) : 0xff);
        __mmask8 keep = ~ok & ~fb;
        _mm512_storeu_pd(conductance + i, g_reset);
        _mm512_storeu_pd(pulse_time + i, zero);
        _mm512_storeu_si512(pulses + i, _mm512_setzero_si512());
        _mm512_storeu_si512(reads + i, _mm512_set1_epi64(1));
        _mm_storel_epi64((__m128i *)(converged + i), _mm512_cvtepi64_epi8(_mm512_maskz_set1_epi64(ok, 1)));
        _mm_storel_epi64((__m128i *)(fallback + i), _mm512_cvtepi64_epi8(_mm512_maskz_set1_epi64(fb, 1)));
        if (!keep) continue;
        __m512d v[N_ARRAYS];
        v[IDX] = _mm512_castsi512_pd(_mm512_add_epi64(_mm512_set1_epi64(i), _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0)));
        v[FL] = zero;
        v[LR] = _mm512_castsi512_pd(_mm512_maskz_set1_epi64(r, 1));
        v[X] = _mm512_mask_blend_pd(moving, zero, s);
        v[RU] = ru; v[RD] = rd; v[KU] = one; v[KD] = one;
        v[CS] = LOOKUP(co); v[TS] = burst; v[LW] = burst; v[LF] = LOOKUP(he);
        v[GT] = LOOKUP(gt); v[AU] = LOOKUP(au); v[AD] = LOOKUP(ad);
        for (int k = 0; k < N_ARRAYS; k++) _mm512_storeu_pd(A[k] + m, _mm512_maskz_compress_pd(keep, v[k]));
        m += __builtin_popcount(keep);
    }
#undef LOOKUP
    for (; i < b; i++) m += first_one(P, A, m, i, level, fault, r_up, r_down, o);
    return m;
}

/* Returns 0, or 2 when out of memory. */
int remeco_write_verify(const remeco_wv_t *P, int64_t n, const int64_t *level, const int8_t *fault,
                        const double *r_up, const double *r_down, double *conductance, int64_t *pulses,
                        double *pulse_time, uint8_t *converged, int64_t *reads, uint8_t *fallback)
{
    outputs_t o = {conductance, pulse_time, pulses, reads, converged, fallback};
    /* the block state, kept per thread (a fresh ~250 kB allocation per call was mapped
     * and zeroed by the kernel every time) */
    static __thread double *mem;
    if (!mem && !(mem = malloc(sizeof(double) * N_ARRAYS * (BLOCK + PAD)))) return 2;
    double *A[N_ARRAYS];
    for (int a = 0; a < N_ARRAYS; a++) A[a] = mem + (size_t)a * (BLOCK + PAD);
    __builtin_cpu_init();
    int vector = P->vector && __builtin_cpu_supports("avx512f");

    for (int64_t a = 0; a < n; a += BLOCK) {
        int64_t b = a + BLOCK < n ? a + BLOCK : n;
        /* Iteration 1, per class. */
        int m = 0;
        if (vector)
            m = first_avx512(P, A, a, b, level, fault, r_up, r_down, &o);
        else
            for (int64_t i = a; i < b; i++) m += first_one(P, A, m, i, level, fault, r_up, r_down, &o);
        /* Iterations 2, 3, ...: read, verify, learn, plan and apply the next burst. */
        for (int64_t it = 2; m > 0; it++)
            m = vector ? pass_avx512(P, A, m, it, &o) : pass_scalar(P, A, m, it, &o);
    }
    return 0;
}
