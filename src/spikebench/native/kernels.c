/* spikebench's compiled time loops (native/__init__.py builds and loads this file).
 *
 * The LIF scan (lif.inc), the Python loops of neurons/lif_scan.py kept beside it as the
 * reference. Arrays are contiguous and time-major, [T, N] with N = B n, so each step is
 * one contiguous block. The element-wise operations are written in the reference's order
 * and built with -ffp-contract=off: the same float32 bits (tests).
 * - feed-forward layers: forward and backward over the whole sequence;
 * - recurrent layers: one step at a time, the caller forming V s[t-1] (forward) and
 *   gI[t+1] V (backward) between the steps with the reference's own BLAS products, so
 *   these too give the reference's float32 bits.
 * Work can be split over samples between `threads` POSIX threads. And the event batch's
 * assembly (events.inc), by counting.
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

#define REAL float
#define NAME(x) x##_f32
#define FABS fabsf
#define EXP expf
#include "lif.inc"
#undef REAL
#undef NAME
#undef FABS
#undef EXP

#define REAL double
#define NAME(x) x##_f64
#define FABS fabs
#define EXP exp
#include "lif.inc"

#include "events.inc"

int spikebench_native_version(void) { return 3; }
