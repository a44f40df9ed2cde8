/* spikebench's compiled time loops (native/__init__.py builds and loads this file).
 *
 * The feed-forward LIF scan, forward and backward, over a whole sequence: the Python loops
 * of neurons/lif_scan.py, kept beside it as the reference. Arrays are contiguous and
 * time-major, [T, N] with N = B n, so each step is one contiguous block. The operations are
 * written in the reference's order and built with -ffp-contract=off: the same float32 bits
 * (tests). Recurrent layers keep the Python loop: their V s[t-1] per step is a small GEMM,
 * which BLAS does better than a loop here (measured). Work can be split over samples
 * between `threads` POSIX threads.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
    void (*fn)(void *, int64_t, int64_t);
    void *args;
    int64_t lo, hi;
} Part;

static void *run_part(void *p) {
    Part *part = (Part *)p;
    part->fn(part->args, part->lo, part->hi);
    return NULL;
}

/* fn(args, lo, hi) over [0, n) in `threads` contiguous parts (the caller runs the first) */
static void parallel(void (*fn)(void *, int64_t, int64_t), void *args, int64_t n,
                     int threads) {
    if (threads > 16) threads = 16;
    if (threads < 2 || n < 2) {
        fn(args, 0, n);
        return;
    }
    if (threads > n) threads = (int)n;
    pthread_t ids[16];
    Part parts[16];
    int started[16] = {0};
    for (int k = 0; k < threads; k++) {
        parts[k] = (Part){fn, args, n * k / threads, n * (k + 1) / threads};
    }
    for (int k = 1; k < threads; k++) {
        started[k] = pthread_create(&ids[k], NULL, run_part, &parts[k]) == 0;
        if (!started[k]) run_part(&parts[k]);
    }
    run_part(&parts[0]);
    for (int k = 1; k < threads; k++) {
        if (started[k]) pthread_join(ids[k], NULL);
    }
}

#define DEFINE_KERNELS(REAL, SUFFIX, FABS, EXP)                                            \
                                                                                           \
/* spike'(x) of surrogate.py's forms, in its operations' order (1: fast_sigmoid, 2:        \
 * sigmoid, 3: triangle, 4: straight_through, 5: exponential, 6: pwl, 7: rect, 8:          \
 * exp_damped, 9: identity; 0: not here, the caller passes the derivatives) */             \
static inline REAL surrogate##SUFFIX(int kind, REAL x, REAL slope) {                       \
    switch (kind) {                                                                        \
    case 1: { REAL a = 1 + slope * FABS(x); return 1 / (a * a); }                          \
    case 2: { REAL sg = 1 / (1 + EXP(-(slope * x))); return slope * sg * (1 - sg); }       \
    case 3: { REAL a = 1 - slope * FABS(x); return a > 0 ? a : 0; }                        \
    case 4: return FABS(x) < 1 / slope ? 1 : 0;                                            \
    case 5: return EXP(-slope * FABS(x));                                                  \
    case 6: { REAL a = slope - FABS(x); return (a > 0 ? a : 0) / (slope * slope); }        \
    case 7: return (FABS(x) < slope / 2 ? 1 : 0) / slope;                                  \
    case 8: return (REAL)0.3 * EXP(-slope * FABS(x));                                      \
    default: return 1;                                                                     \
    }                                                                                      \
}                                                                                          \
                                                                                           \
typedef struct {                                                                           \
    const REAL *cur, *i0, *u0, *s0;                                                        \
    REAL *u_out, *s_out, *i_last, *u_last;                                                 \
    int64_t steps, batch, n;                                                               \
    REAL alpha, beta, gain, theta;                                                         \
    int subtract;                                                                          \
} Fwd##SUFFIX;                                                                             \
                                                                                           \
/* samples lo..hi, step by step: I = alpha I + cur; U by the reset; s = (U - theta > 0) */ \
static void fwd_part##SUFFIX(void *p, int64_t lo, int64_t hi) {                            \
    Fwd##SUFFIX *a = (Fwd##SUFFIX *)p;                                                     \
    const int64_t n = a->n, row = a->batch * n, e0 = lo * n, m = (hi - lo) * n;            \
    const REAL alpha = a->alpha, beta = a->beta, gain = a->gain, theta = a->theta;         \
    REAL *restrict i = a->i_last + e0, *restrict u = a->u_last + e0;                       \
    for (int64_t e = 0; e < m; e++) {                                                      \
        i[e] = a->i0 ? a->i0[e0 + e] : 0;                                                  \
        u[e] = a->u0 ? a->u0[e0 + e] : 0;                                                  \
    }                                                                                      \
    const REAL *sp = a->s0 ? a->s0 + e0 : NULL; /* s[t-1]; NULL: zero */                   \
    for (int64_t t = 0; t < a->steps; t++) {                                               \
        const REAL *restrict c = a->cur + t * row + e0;                                    \
        REAL *restrict uo = a->u_out + t * row + e0, *restrict so = a->s_out + t * row + e0;\
        for (int64_t e = 0; e < m; e++) i[e] = alpha * i[e] + c[e];                        \
        if (!sp) {                                                                         \
            for (int64_t e = 0; e < m; e++) u[e] = beta * u[e] + gain * i[e];              \
        } else if (a->subtract) {                                                          \
            for (int64_t e = 0; e < m; e++)                                                \
                u[e] = (beta * u[e] + gain * i[e]) - theta * sp[e];                        \
        } else {                                                                           \
            for (int64_t e = 0; e < m; e++)                                                \
                u[e] = beta * u[e] * (1 - sp[e]) + gain * i[e];                            \
        }                                                                                  \
        for (int64_t e = 0; e < m; e++) {                                                  \
            uo[e] = u[e];                                                                  \
            so[e] = (u[e] - theta) > 0 ? 1 : 0;                                            \
        }                                                                                  \
        sp = so;                                                                           \
    }                                                                                      \
}                                                                                          \
                                                                                           \
void lif_forward##SUFFIX(const REAL *cur, const REAL *i0, const REAL *u0, const REAL *s0,  \
                         REAL *u_out, REAL *s_out, REAL *i_last, REAL *u_last,             \
                         int64_t steps, int64_t batch, int64_t n, double alpha,            \
                         double beta, double gain, double theta, int subtract,             \
                         int threads) {                                                    \
    Fwd##SUFFIX a = {cur, i0, u0, s0, u_out, s_out, i_last, u_last, steps, batch, n,       \
                     (REAL)alpha, (REAL)beta, (REAL)gain, (REAL)theta, subtract};          \
    parallel(fwd_part##SUFFIX, &a, batch, threads);                                        \
}                                                                                          \
                                                                                           \
typedef struct {                                                                           \
    const REAL *grad_s, *u_all, *s_all, *deriv;                                            \
    REAL *grad_cur;                                                                        \
    int64_t steps, batch, n;                                                               \
    REAL alpha, beta, gain, theta, slope;                                                  \
    int subtract, detach, kind, failed;                                                    \
} Bwd##SUFFIX;                                                                             \
                                                                                           \
/* the reverse scan of the adjoints (lif_scan.py's module doc), samples lo..hi, step by    \
 * step; gu, gi hold the adjoints of step t+1 (work: 4 (hi - lo) n numbers) */             \
static void bwd_part##SUFFIX(void *p, int64_t lo, int64_t hi) {                            \
    Bwd##SUFFIX *a = (Bwd##SUFFIX *)p;                                                     \
    const int64_t n = a->n, row = a->batch * n, e0 = lo * n, m = (hi - lo) * n;            \
    const REAL alpha = a->alpha, beta = a->beta, gain = a->gain, theta = a->theta;         \
    REAL *work = malloc(4 * (size_t)m * sizeof(REAL));                                     \
    if (!work) { a->failed = 1; return; }                                                  \
    REAL *restrict gu = work, *restrict gi = work + m, *restrict gs = work + 2 * m;        \
    REAL *restrict dk = work + 3 * m; /* the step's surrogate derivatives */               \
    for (int64_t t = a->steps - 1; t >= 0; t--) {                                          \
        const int64_t at = t * row + e0;                                                   \
        const REAL *restrict g = a->grad_s + at, *restrict u = a->u_all + at;              \
        const REAL *restrict s = a->s_all + at;                                            \
        REAL *restrict gc = a->grad_cur + at;                                              \
        const REAL *restrict d = a->kind ? dk : a->deriv + at;                             \
        if (a->kind) {                                                                     \
            for (int64_t e = 0; e < m; e++)                                                \
                dk[e] = surrogate##SUFFIX(a->kind, u[e] - theta, a->slope);                \
        }                                                                                  \
        if (t == a->steps - 1) {                                                           \
            for (int64_t e = 0; e < m; e++) {                                              \
                gu[e] = g[e] * d[e];                                                       \
                gi[e] = gain * gu[e];                                                      \
                gc[e] = gi[e];                                                             \
            }                                                                              \
            continue;                                                                      \
        }                                                                                  \
        if (a->detach) {                                                                   \
            for (int64_t e = 0; e < m; e++) gs[e] = g[e];                                  \
        } else if (a->subtract) {                                                          \
            for (int64_t e = 0; e < m; e++) gs[e] = g[e] - gu[e] * theta;                  \
        } else {                                                                           \
            for (int64_t e = 0; e < m; e++) gs[e] = g[e] - gu[e] * (beta * u[e]);          \
        }                                                                                  \
        if (a->subtract) {                                                                 \
            for (int64_t e = 0; e < m; e++) {                                              \
                gu[e] = gs[e] * d[e] + gu[e] * beta;                                       \
                gi[e] = gain * gu[e] + alpha * gi[e];                                      \
                gc[e] = gi[e];                                                             \
            }                                                                              \
        } else {                                                                           \
            for (int64_t e = 0; e < m; e++) {                                              \
                gu[e] = gs[e] * d[e] + gu[e] * (beta * (1 - s[e]));                        \
                gi[e] = gain * gu[e] + alpha * gi[e];                                      \
                gc[e] = gi[e];                                                             \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
    free(work);                                                                            \
}                                                                                          \
                                                                                           \
int lif_backward##SUFFIX(const REAL *grad_s, const REAL *u_all, const REAL *s_all,         \
                         const REAL *deriv, REAL *grad_cur, int64_t steps, int64_t batch,  \
                         int64_t n, double alpha, double beta, double gain, double theta,  \
                         double slope, int subtract, int detach, int kind, int threads) {  \
    Bwd##SUFFIX a = {grad_s, u_all, s_all, deriv, grad_cur, steps, batch, n, (REAL)alpha,  \
                     (REAL)beta, (REAL)gain, (REAL)theta, (REAL)slope, subtract, detach,   \
                     kind, 0};                                                             \
    parallel(bwd_part##SUFFIX, &a, batch, threads);                                        \
    return a.failed; /* 1: out of memory for the work arrays */                            \
}                                                                                          \


DEFINE_KERNELS(float, _f32, fabsf, expf)
DEFINE_KERNELS(double, _f64, fabs, exp)

int spikebench_native_version(void) { return 1; }
