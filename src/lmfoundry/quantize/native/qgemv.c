/* y = x @ W.T straight from blockwise-quantized codes, for decode-sized batches on CPU.
 *
 * W is [N, K] row-major, flattened and cut into blocks of `bs` values, one absmax per block;
 * the caller guarantees K % bs == 0 (a block never straddles two rows) and bs % 16 == 0.
 *   4-bit: two codes per byte, element 2i in the high nibble; value = codebook[code] * absmax
 *   int8:  value = code / 127 * absmax
 *   absmax: fp32 per block, or double-quantized: dq_map[code] * dq_scales[block / dq_block] + offset
 *           (dq_block a power of two)
 * x is [M, K] and y is [M, N], both contiguous fp32.
 *
 * Every block's weights are decoded once and multiplied into all M input rows, so no more than
 * one block of fp32 weights ever exists. The AVX2+FMA code is compiled for that target only
 * (function attributes) and chosen at run time, so one build also runs on CPUs without AVX2
 * through the plain C loops. Threads split the output rows (OpenMP; see the loader's docstring).
 */
#include <stdint.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(QG_NO_SIMD) /* -DQG_NO_SIMD: plain C only */
#include <immintrin.h>
#define QG_X86 1
#else
#define QG_X86 0
#endif

typedef int64_t i64;

#define MAX_BLOCK 4096
#define MAX_ROWS 128
#define MIN_PARALLEL_VALUES (1 << 16) /* smaller matrices are not worth waking a second thread */
/* Software prefetch this many bytes ahead in the code stream: measured on a 2-vCPU Xeon VM, a
 * decode-sized layer streamed from memory took 0.26 ms without it and 0.14 ms with it (the same
 * as with the codes already in cache); 1-4 KB ahead all worked. */
#define PREFETCH_BYTES 2048

enum { KIND_4BIT = 0, KIND_INT8 = 1 };

typedef struct {
    int kind;
    const uint8_t *q;          /* packed 4-bit codes, or int8 codes */
    const float *codebook;     /* 16 values (4-bit only) */
    const float *absmax;       /* fp32 per block, or NULL with double quantization: */
    const uint8_t *dq_codes;   /*   one code per block */
    const float *dq_map;       /*   256 values */
    const float *dq_scales;    /*   one per dq_block blocks */
    const float *dq_offset;    /*   one value */
    int dq_shift;              /*   log2(dq_block): blocks per dq scale */
    i64 K, bs;
} weights;

/* Start loading the codes PREFETCH_BYTES past the block that starts at flat index `first`. */
static inline void prefetch_codes(const weights *w, i64 first) {
    i64 byte = w->kind == KIND_INT8 ? first : first / 2;
    __builtin_prefetch(w->q + byte + PREFETCH_BYTES);
}

static inline float block_absmax(const weights *w, i64 b) {
    if (w->absmax) return w->absmax[b];
    return w->dq_map[w->dq_codes[b]] * w->dq_scales[b >> w->dq_shift] + *w->dq_offset;
}

/* ---- portable C ---- */

/* One block of weights, starting at flat index `first`, times its absmax. */
static void decode_block_c(const weights *w, i64 first, float *out) {
    float a = block_absmax(w, first / w->bs);
    prefetch_codes(w, first);
    if (w->kind == KIND_INT8) {
        const int8_t *c = (const int8_t *)w->q + first;
        for (i64 i = 0; i < w->bs; i++) out[i] = (float)c[i] * (1.0f / 127.0f) * a;
        return;
    }
    const uint8_t *b = w->q + first / 2;
    for (i64 i = 0; i < w->bs / 2; i++) {
        out[2 * i] = w->codebook[b[i] >> 4] * a;
        out[2 * i + 1] = w->codebook[b[i] & 15] * a;
    }
}

static void rows_c(const weights *w, const float *x, float *y, i64 M, i64 N, i64 r0, i64 r1) {
    float buf[MAX_BLOCK];
    i64 K = w->K, bs = w->bs;
    for (i64 r = r0; r < r1; r++) {
        for (i64 m = 0; m < M; m++) y[m * N + r] = 0.0f;
        for (i64 k0 = 0; k0 < K; k0 += bs) {
            decode_block_c(w, r * K + k0, buf);
            for (i64 m = 0; m < M; m++) {
                const float *xm = x + m * K + k0;
                float s = 0.0f;
                for (i64 i = 0; i < bs; i++) s += buf[i] * xm[i];
                y[m * N + r] += s;
            }
        }
    }
}

/* ---- AVX2 + FMA ---- */
#if QG_X86
#define AVX2 __attribute__((target("avx2,fma")))

/* The 16-entry table as two 8-lane halves, already multiplied by one block's absmax; for int8
 * both halves hold absmax / 127 in every lane. */
typedef struct {
    __m256 lo, hi;
} table;

AVX2 static inline table block_table(const weights *w, i64 block) {
    __m256 a = _mm256_set1_ps(block_absmax(w, block));
    table t;
    if (w->kind == KIND_INT8) {
        t.lo = t.hi = _mm256_mul_ps(_mm256_set1_ps(1.0f / 127.0f), a);
    } else {
        t.lo = _mm256_mul_ps(_mm256_loadu_ps(w->codebook), a);
        t.hi = _mm256_mul_ps(_mm256_loadu_ps(w->codebook + 8), a);
    }
    return t;
}

/* Eight 4-bit codes (4 bytes) -> eight floats. The 32-bit word is broadcast and shifted per lane
 * so lane i holds code i in its low bits (permutevar reads only the low 3) and the code's bit 3
 * in the sign bit (blendv's selector between the two table halves). */
AVX2 static inline __m256 lookup8(const uint8_t *p, table t) {
    const __m256i to_low = _mm256_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24);
    const __m256i to_sign = _mm256_setr_epi32(24, 28, 16, 20, 8, 12, 0, 4);
    uint32_t word;
    memcpy(&word, p, 4);
    __m256i v = _mm256_set1_epi32((int)word);
    __m256i idx = _mm256_srlv_epi32(v, to_low);
    __m256 sel = _mm256_castsi256_ps(_mm256_sllv_epi32(v, to_sign));
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t.lo, idx), _mm256_permutevar8x32_ps(t.hi, idx), sel);
}

/* Weights first+i .. first+i+7, scaled by their block's table. */
AVX2 static inline __m256 decode8(const weights *w, i64 first, i64 i, table t) {
    if (w->kind == KIND_INT8) {
        __m128i c = _mm_loadl_epi64((const __m128i *)((const int8_t *)w->q + first + i));
        return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c)), t.lo);
    }
    return lookup8(w->q + (first + i) / 2, t);
}

AVX2 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One input row: decode and multiply in registers, no weight buffer. */
AVX2 static void rows_avx2_m1(const weights *w, const float *x, float *y, i64 r0, i64 r1) {
    i64 K = w->K, bs = w->bs;
    for (i64 r = r0; r < r1; r++) {
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        for (i64 k0 = 0; k0 < K; k0 += bs) {
            i64 first = r * K + k0;
            table t = block_table(w, first / bs);
            prefetch_codes(w, first);
            for (i64 i = 0; i < bs; i += 16) {
                acc0 = _mm256_fmadd_ps(decode8(w, first, i, t), _mm256_loadu_ps(x + k0 + i), acc0);
                acc1 = _mm256_fmadd_ps(decode8(w, first, i + 8, t), _mm256_loadu_ps(x + k0 + i + 8), acc1);
            }
        }
        y[r] = hsum(_mm256_add_ps(acc0, acc1));
    }
}

/* acc[j] += wv . x[j*K ...] over one block, for input rows j < T (T <= 4, a constant after
 * inlining): each decoded weight vector is loaded once for T fused multiply-adds. */
AVX2 static inline void fma_rows(int T, const __m256 *wv, i64 nvec, const float *x, i64 K, __m256 *acc) {
    __m256 s0 = acc[0], s1 = T > 1 ? acc[1] : s0, s2 = T > 2 ? acc[2] : s0, s3 = T > 3 ? acc[3] : s0;
    for (i64 i = 0; i < nvec; i++) {
        __m256 wi = wv[i];
        s0 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(x + 8 * i), s0);
        if (T > 1) s1 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(x + K + 8 * i), s1);
        if (T > 2) s2 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(x + 2 * K + 8 * i), s2);
        if (T > 3) s3 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(x + 3 * K + 8 * i), s3);
    }
    acc[0] = s0;
    if (T > 1) acc[1] = s1;
    if (T > 2) acc[2] = s2;
    if (T > 3) acc[3] = s3;
}

/* Several input rows: decode a block once into a small buffer, then multiply it into the input
 * rows four at a time. */
AVX2 static void rows_avx2(const weights *w, const float *x, float *y, i64 M, i64 N, i64 r0, i64 r1) {
    __m256 wv[MAX_BLOCK / 8];
    __m256 acc[MAX_ROWS];
    i64 K = w->K, bs = w->bs, nvec = bs / 8;
    for (i64 r = r0; r < r1; r++) {
        for (i64 m = 0; m < M; m++) acc[m] = _mm256_setzero_ps();
        for (i64 k0 = 0; k0 < K; k0 += bs) {
            i64 first = r * K + k0;
            table t = block_table(w, first / bs);
            prefetch_codes(w, first);
            for (i64 i = 0; i < bs; i += 8) wv[i / 8] = decode8(w, first, i, t);
            i64 m = 0;
            for (; m + 4 <= M; m += 4) fma_rows(4, wv, nvec, x + m * K + k0, K, acc + m);
            switch (M - m) {
            case 3: fma_rows(3, wv, nvec, x + m * K + k0, K, acc + m); break;
            case 2: fma_rows(2, wv, nvec, x + m * K + k0, K, acc + m); break;
            case 1: fma_rows(1, wv, nvec, x + m * K + k0, K, acc + m); break;
            }
        }
        for (i64 m = 0; m < M; m++) y[m * N + r] = hsum(acc[m]);
    }
}

static int cpu_has_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}
#endif

/* Rows [r0, r1) of y with the fastest code this CPU runs (unless `simd` is 0). */
static void rows(const weights *w, const float *x, float *y, i64 M, i64 N, i64 r0, i64 r1, int simd) {
#if QG_X86
    if (simd && cpu_has_avx2()) {
        if (M == 1)
            rows_avx2_m1(w, x, y, r0, r1);
        else
            rows_avx2(w, x, y, M, N, r0, r1);
        return;
    }
#else
    (void)simd;
#endif
    rows_c(w, x, y, M, N, r0, r1);
}

/* y = x @ W.T. `kind`: 0 = 4-bit (nf4/fp4 through `codebook`), 1 = int8. Pass `absmax` (fp32 per
 * block), or NULL and the four double-quantization arrays. Returns 0, or -1 when the shapes are
 * outside what this kernel handles (the caller then uses another path). */
int qgemv(int kind, const uint8_t *q, const float *codebook, const float *absmax, const uint8_t *dq_codes,
          const float *dq_map, const float *dq_scales, const float *dq_offset, i64 dq_block, const float *x,
          float *y, i64 M, i64 N, i64 K, i64 bs, int nthreads, int simd) {
    if (M < 1 || M > MAX_ROWS || bs < 16 || bs > MAX_BLOCK || bs % 16 || K % bs) return -1;
    if ((kind != KIND_4BIT && kind != KIND_INT8) || (kind == KIND_4BIT && !codebook)) return -1;
    int dq_shift = 0;
    while (dq_shift < 62 && ((i64)1 << dq_shift) < dq_block) dq_shift++;
    if (!absmax && (!dq_codes || !dq_map || !dq_scales || !dq_offset || ((i64)1 << dq_shift) != dq_block))
        return -1;
    weights w = {kind, q, codebook, absmax, dq_codes, dq_map, dq_scales, dq_offset, dq_shift, K, bs};
    int parallel = nthreads > 1 && N * K >= MIN_PARALLEL_VALUES;
    i64 parts = parallel ? nthreads : 1;
#pragma omp parallel for num_threads(nthreads) schedule(static) if (parallel)
    for (i64 t = 0; t < parts; t++) rows(&w, x, y, M, N, N * t / parts, N * (t + 1) / parts, simd);
    return 0;
}

/* Which code `simd=1` runs on this CPU: 1 for AVX2+FMA, 0 for portable C. */
int qgemv_simd_available(void) {
#if QG_X86
    return cpu_has_avx2();
#else
    return 0;
#endif
}
