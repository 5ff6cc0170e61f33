#include "kernels_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

// Products and sums stay separate roundings, exactly as in the engine's Swift code and in
// `BilinearUpsampler.value`: a fused multiply-add would move pixels across the threshold.
#pragma clang fp contract(off)

void hndd_geometry_free(hndd_geometry *g) {
    if (!g) return;
    free(g->rowBlocks); free(g->colBlocks); free(g->rowTouch); free(g->colTouch);
    free(g->rowLowerWeight); free(g->rowUpperWeight); free(g->colLowerWeight); free(g->colUpperWeight);
    free(g->touch);
    free(g);
}

static void *copied(const void *from, size_t bytes, size_t capacity) {
    void *to = calloc(1, capacity > bytes ? capacity : (bytes ? bytes : 1));
    if (to && bytes) memcpy(to, from, bytes);
    return to;
}

hndd_geometry *hndd_geometry_create(int32_t height, int32_t width, int32_t size,
                                    const int32_t *rowBlocks, int32_t rowBlockCount,
                                    const int32_t *colBlocks, int32_t colBlockCount,
                                    const int32_t *rowTouch, const int32_t *colTouch,
                                    const float *rowLowerWeight, const float *rowUpperWeight,
                                    const float *colLowerWeight, const float *colUpperWeight) {
    hndd_geometry *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->height = height; g->width = width; g->size = size;
    g->rowBlockCount = rowBlockCount; g->colBlockCount = colBlockCount;
    g->rowBlocks = copied(rowBlocks, sizeof(int32_t) * 4 * (size_t)rowBlockCount, 0);
    g->colBlocks = copied(colBlocks, sizeof(int32_t) * 4 * (size_t)colBlockCount, 0);
    g->rowTouch = copied(rowTouch, sizeof(int32_t) * 2 * (size_t)height, 0);
    g->colTouch = copied(colTouch, sizeof(int32_t) * 2 * (size_t)width, 0);
    size_t weights = sizeof(float) * (size_t)size, padded = sizeof(float) * ((size_t)size + 16);
    g->rowLowerWeight = copied(rowLowerWeight, weights, padded);
    g->rowUpperWeight = copied(rowUpperWeight, weights, padded);
    g->colLowerWeight = copied(colLowerWeight, weights, 0);
    g->colUpperWeight = copied(colUpperWeight, weights, 0);
    if (!g->rowBlocks || !g->colBlocks || !g->rowTouch || !g->colTouch || !g->rowLowerWeight
        || !g->rowUpperWeight || !g->colLowerWeight || !g->colUpperWeight) {
        hndd_geometry_free(g);
        return NULL;
    }
    g->path = hndd_vector_path();
    g->words = (rowBlockCount * colBlockCount + 63) / 64;
    if (g->words <= HNDD_TOUCH_WORDS) {
        g->touch = calloc((size_t)height * width * g->words, sizeof(uint64_t));
        if (!g->touch) { hndd_geometry_free(g); return NULL; }
        for (int32_t y = 0; y < height; y++)
            for (int32_t x = 0; x < width; x++) {
                uint64_t *bits = g->touch + (size_t)(y * width + x) * g->words;
                for (int32_t rb = rowTouch[2 * y]; rb < rowTouch[2 * y + 1]; rb++)
                    for (int32_t cb = colTouch[2 * x]; cb < colTouch[2 * x + 1]; cb++) {
                        int32_t b = rb * colBlockCount + cb;
                        bits[b >> 6] |= 1ull << (b & 63);
                    }
            }
    }
    return g;
}

int32_t hndd_geometry_row_blocks(const hndd_geometry *g) { return g->rowBlockCount; }
int32_t hndd_geometry_col_blocks(const hndd_geometry *g) { return g->colBlockCount; }

void hndd_mask_blocks(const hndd_geometry *g, const hndd_mask *masks, int64_t maskCount,
                      uint64_t *rowBits, uint64_t *colBits) {
    for (int32_t rb = 0; rb < g->rowBlockCount; rb++) rowBits[rb] = 0;
    for (int32_t cb = 0; cb < g->colBlockCount; cb++) colBits[cb] = 0;
    for (int64_t m = 0; m < maskCount && m < 64; m++) {
        const hndd_mask *mask = masks + m;
        for (int32_t rb = 0; rb < g->rowBlockCount; rb++) {
            const int32_t *block = g->rowBlocks + 4 * rb;
            if (block[0] < mask->firstRow + mask->rowCount && block[1] > mask->firstRow) rowBits[rb] |= 1ull << m;
        }
        for (int32_t cb = 0; cb < g->colBlockCount; cb++) {
            const int32_t *block = g->colBlocks + 4 * cb;
            if (block[0] < mask->columnHi && block[1] > mask->columnLo) colBits[cb] |= 1ull << m;
        }
    }
}

/// The vector path of every kernel below: the process's (see hndd_cpu.h), read once at load.
static hndd_path path;

__attribute__((constructor)) static void choosePath(void) { path = hndd_vector_path(); }

int hndd_count_kernel_available(void) { return path != HNDD_PATH_PORTABLE; }

int hndd_geometry_select(hndd_geometry *g, hndd_path chosen) {
    if (chosen == HNDD_PATH_PORTABLE || !hndd_cpu_supports(chosen)) return 0;
    g->path = chosen;
    return 1;
}

#if defined(__x86_64__)

#define HNDD_AVX512 __attribute__((target("avx512f,avx512bw")))

/// Runs of up to 16 rows of hot blocks, gathered before their overlaps with the masks.
enum { chunkCapacity = 64 };
struct chunks {
    __m512i lo[chunkCapacity], hi[chunkCapacity]; // columns [lo, hi) of rows row + lane
    int32_t row[chunkCapacity];
    __mmask16 runs[chunkCapacity];                // lanes with a run
    uint64_t masks[chunkCapacity];                // the masks the chunk's block meets
    int32_t count;
};

/// Adds the gathered chunks' overlaps with the masks to `overlapLanes` (lanes of mask m valid
/// when bit m of `met` is set).
HNDD_AVX512
static void add_overlaps(const struct chunks *gathered, const hndd_mask *masks, const uint16_t *runLo, const uint16_t *runHi,
                         __m512i *overlapLanes, uint64_t *met) {
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (int32_t c = 0; c < gathered->count; c++) {
        const __mmask16 withRun = gathered->runs[c];
        if (!withRun) continue;
        const int32_t chunk = gathered->row[c];
        const __m512i loI = gathered->lo[c], hiI = gathered->hi[c];
        // Rows chunk + i for i in withRun.
        const int32_t rowFirst = chunk + __builtin_ctz(withRun), rowEnd = chunk + 32 - __builtin_clz(withRun);
        for (uint64_t maskBits = gathered->masks[c]; maskBits; maskBits &= maskBits - 1) {
            const int m = __builtin_ctzll(maskBits);
            const hndd_mask *mask = masks + m;
            const int32_t maskEnd = mask->firstRow + mask->rowCount;
            if (maskEnd <= rowFirst || mask->firstRow >= rowEnd) continue;
            // Lanes whose rows lie inside the mask; the others are never loaded.
            const __m512i row = _mm512_add_epi32(_mm512_set1_epi32(chunk), lane);
            const __mmask16 inside = withRun
                & _mm512_cmpge_epi32_mask(row, _mm512_set1_epi32(mask->firstRow))
                & _mm512_cmplt_epi32_mask(row, _mm512_set1_epi32(maskEnd));
            // Lane i reads run (chunk + i − firstRow) of the mask: the address may lie before the
            // runs, but only lanes inside the mask are loaded.
            const int64_t offset = mask->runStart + chunk - mask->firstRow;
            const __m512i mLo = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(_mm512_maskz_loadu_epi16(inside, (const void *)((uintptr_t)runLo + 2 * offset))));
            const __m512i mHi = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(_mm512_maskz_loadu_epi16(inside, (const void *)((uintptr_t)runHi + 2 * offset))));
            const __m512i both = _mm512_sub_epi32(_mm512_min_epi32(hiI, mHi), _mm512_max_epi32(loI, mLo));
            const __m512i counted = _mm512_maskz_max_epi32(inside, both, _mm512_setzero_si512());
            if (*met >> m & 1) {
                overlapLanes[m] = _mm512_add_epi32(overlapLanes[m], counted);
            } else {
                overlapLanes[m] = counted;
                *met |= 1ull << m;
            }
        }
    }
}

HNDD_AVX512
static int64_t count_dense_avx512(const hndd_geometry *g, const void *kept, const float *values, float threshold,
                                  const hndd_mask *masks, const uint64_t *rowBits, const uint64_t *colBits,
                                  const uint16_t *runLo, const uint16_t *runHi, int64_t *overlap, float *map, uint64_t *hot) {
    const int32_t h = g->height, w = g->width, n = h * w;
    const int32_t colBlockCount = g->colBlockCount;
    const int32_t words = (g->rowBlockCount * colBlockCount + 63) / 64;

    // The dense map (−∞ where not kept), 16 positions per step; and the hot blocks: those with
    // a corner above the threshold (a bilinear value is a convex combination of its corners).
    // For each source value above it, mark the blocks it is a corner of.
    const __m512 t = _mm512_set1_ps(threshold), unknown = _mm512_set1_ps(-INFINITY);
    int any = 0;
    const float *next = values;
    for (int32_t p = 0; p < n; p += 16) {
        uint64_t word;
        memcpy(&word, (const uint64_t *)kept + (p >> 6), sizeof word); // records are 4-byte aligned
        const __mmask16 valid = n - p >= 16 ? 0xFFFF : (__mmask16)((1u << (n - p)) - 1);
        const __mmask16 present = (__mmask16)(word >> (p & 63)) & valid;
        const __m512 v = _mm512_mask_expandloadu_ps(unknown, present, next);
        next += __builtin_popcount(present);
        _mm512_mask_storeu_ps(map + p, valid, v);
        unsigned above = _mm512_mask_cmp_ps_mask(present, v, t, _CMP_GT_OQ);
        if (above) any = 1;
        for (; above; above &= above - 1) hndd_mark_hot(g, p + __builtin_ctz(above), hot);
    }
    if (!any) return 0;

    // Per-lane sums, reduced once per map: the area, and the overlap of each mask met (`met`).
    __m512i areaLanes = _mm512_setzero_si512();
    __m512i overlapLanes[64];
    uint64_t met = 0;
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1);
    // Two phases, over up to `chunkCapacity` chunks at a time: the runs of every hot block
    // (long chains of arithmetic, but no branch depends on them, so the CPU overlaps the
    // blocks), then their overlaps with the masks (short, branchy).
    struct chunks gathered;
    gathered.count = 0;
    for (int32_t word = 0; word < words; word++) {
        uint64_t bits = hot[word];
        while (bits) {
            const int32_t b = word << 6 | __builtin_ctzll(bits);
            bits &= bits - 1;
            const int32_t rb = b / colBlockCount, cb = b - rb * colBlockCount;
            const int32_t *rowBlock = g->rowBlocks + 4 * rb, *block = g->colBlocks + 4 * cb;
            // The masks this block can meet.
            const uint64_t blockMasks = rowBits[rb] & colBits[cb];
            const float *top = map + rowBlock[2] * w, *bottom = map + rowBlock[3] * w;
            const float a00 = top[block[2]], a01 = top[block[3]];
            const float a10 = bottom[block[2]], a11 = bottom[block[3]];
            // Horizontal blends at the block's two end columns, as `BilinearUpsampler.value`.
            const int32_t first = block[0], last = block[1] - 1;
            const float wxf0 = g->colLowerWeight[first], wxf1 = g->colUpperWeight[first];
            const float wxl0 = g->colLowerWeight[last], wxl1 = g->colUpperWeight[last];
            const __m512 topFirst = _mm512_set1_ps(wxf0 * a00 + wxf1 * a01);
            const __m512 bottomFirst = _mm512_set1_ps(wxf0 * a10 + wxf1 * a11);
            const __m512 topLast = _mm512_set1_ps(wxl0 * a00 + wxl1 * a01);
            const __m512 bottomLast = _mm512_set1_ps(wxl0 * a10 + wxl1 * a11);
            const __m512 span = _mm512_set1_ps((float)(last - first));
            const __m512 start = _mm512_set1_ps((float)first), end = _mm512_set1_ps((float)block[1]);
            const __m512 length = _mm512_set1_ps((float)(block[1] - first));
            for (int32_t chunk = rowBlock[0]; chunk < rowBlock[1]; chunk += 16) {
                const int32_t count = rowBlock[1] - chunk < 16 ? rowBlock[1] - chunk : 16;
                const __mmask16 valid = count == 16 ? 0xFFFF : (__mmask16)((1u << count) - 1);
                const __m512 y0 = _mm512_loadu_ps(g->rowLowerWeight + chunk);
                const __m512 y1 = _mm512_loadu_ps(g->rowUpperWeight + chunk);
                const __m512 vFirst = _mm512_add_ps(_mm512_mul_ps(y0, topFirst), _mm512_mul_ps(y1, bottomFirst));
                const __m512 vLast = _mm512_add_ps(_mm512_mul_ps(y0, topLast), _mm512_mul_ps(y1, bottomLast));
                const __mmask16 firstAbove = _mm512_cmp_ps_mask(vFirst, t, _CMP_GT_OQ);
                const __mmask16 lastAbove = _mm512_cmp_ps_mask(vLast, t, _CMP_GT_OQ);
                // Where the row crosses t, as a fraction of the way from the first column
                // to the last; the run above t is ⌈distance⌉ columns from the end above.
                const __m512 x = _mm512_div_ps(_mm512_sub_ps(vFirst, t), _mm512_sub_ps(vFirst, vLast));
                const __m512 falling = _mm512_roundscale_ps(
                    _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(x, span), zero), length), _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
                const __m512 rising = _mm512_roundscale_ps(
                    _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_sub_ps(one, x), span), zero), length), _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
                __m512 lo = start, hi = start;
                hi = _mm512_mask_mov_ps(hi, firstAbove, _mm512_add_ps(start, falling));
                lo = _mm512_mask_mov_ps(lo, lastAbove & (__mmask16)~firstAbove, _mm512_sub_ps(end, rising));
                hi = _mm512_mask_mov_ps(hi, lastAbove, end);
                const __m512i loI = _mm512_cvttps_epi32(lo), hiI = _mm512_cvttps_epi32(hi);
                const __m512i runLength = _mm512_maskz_sub_epi32(valid, hiI, loI);
                areaLanes = _mm512_add_epi32(areaLanes, runLength);
                const int32_t c = gathered.count++;
                gathered.lo[c] = loI; gathered.hi[c] = hiI; gathered.row[c] = chunk;
                gathered.runs[c] = _mm512_mask_cmpgt_epi32_mask(valid, runLength, _mm512_setzero_si512());
                gathered.masks[c] = blockMasks;
                if (gathered.count == chunkCapacity) {
                    add_overlaps(&gathered, masks, runLo, runHi, overlapLanes, &met);
                    gathered.count = 0;
                }
            }
        }
    }
    add_overlaps(&gathered, masks, runLo, runHi, overlapLanes, &met);
    for (uint64_t bits = met; bits; bits &= bits - 1) {
        const int m = __builtin_ctzll(bits);
        overlap[m] += _mm512_reduce_add_epi32(overlapLanes[m]);
    }
    return _mm512_reduce_add_epi32(areaLanes);
}

#endif

/// The number of kept positions of a record's `words` kept-position words (4-byte aligned).
static int64_t kept_count(const void *kept, int32_t words) {
    int64_t count = 0;
    for (int32_t j = 0; j < words; j++) {
        uint64_t word;
        memcpy(&word, (const uint64_t *)kept + j, sizeof word);
        count += __builtin_popcountll(word);
    }
    return count;
}

/// Counts with `g`'s path, giving its kernel the dense map and the hot-block bits — and the
/// values as floats, widened first with the same path's conversion when they are halves: on the
/// stack for the maps of real layers (up to 64×64), on the heap beyond, where a worker thread's
/// stack could not hold them.
int64_t hndd_count_map(const hndd_geometry *g, const void *kept, const void *values, int halfValues, float threshold,
                       const hndd_mask *masks, const uint64_t *rowBits, const uint64_t *colBits,
                       const uint16_t *runLo, const uint16_t *runHi, int64_t *overlap) {
    hndd_count_fn count = NULL;
    void (*widen)(const void *, int64_t, float *) = NULL;
#if defined(__x86_64__)
    if (g->path == HNDD_PATH_AVX512) { count = count_dense_avx512; widen = hndd_decode_float16_avx512; }
    if (g->path == HNDD_PATH_AVX2) { count = hndd_count_dense_avx2; widen = hndd_decode_float16_avx2; }
#endif
    if (!count) abort(); // never called on the portable path: the engine counts in Swift
    const int32_t n = g->height * g->width, words = g->words;
    enum { stackFloats = 4096 + HNDD_MAP_PADDING, stackWords = 128 };
    float stackMap[stackFloats], stackValues[stackFloats];
    uint64_t stackHot[stackWords];
    float *map = n + HNDD_MAP_PADDING <= stackFloats ? stackMap : malloc(sizeof(float) * ((size_t)n + HNDD_MAP_PADDING));
    uint64_t *hot = words <= stackWords ? stackHot : malloc(sizeof(uint64_t) * (size_t)words);
    float *widened = !halfValues ? NULL : n <= stackFloats ? stackValues : malloc(sizeof(float) * (size_t)n);
    if (!map || !hot || (halfValues && !widened)) abort(); // out of memory
    if (halfValues) widen(values, kept_count(kept, (n + 63) / 64), widened);
    memset(hot, 0, sizeof(uint64_t) * (size_t)words);
    int64_t result = count(g, kept, halfValues ? widened : values, threshold, masks, rowBits, colBits, runLo, runHi, overlap, map, hot);
    if (map != stackMap) free(map);
    if (hot != stackHot) free(hot);
    if (widened && widened != stackValues) free(widened);
    return result;
}

// MARK: ingest

#if defined(__x86_64__)
/// What `_mm512_mask_compressstoreu_ps` does — the lanes of `lanes`, packed, written from `to` —
/// as a compress into a register and a masked store: the memory form is reported to be many times
/// slower on AMD Zen 4 (simdjson avoids it there); on this project's Zen 5 both cost the same.
HNDD_AVX512
static inline void compress_store(float *to, __mmask16 lanes, __m512 v) {
    _mm512_mask_storeu_ps(to, (__mmask16)((1u << __builtin_popcount(lanes)) - 1), _mm512_maskz_compress_ps(lanes, v));
}

HNDD_AVX512
static int maxima_avx512(const float *maps, int64_t count, int32_t n, float *peaks) {
    const __m512 lowest = _mm512_set1_ps(-INFINITY), zero = _mm512_setzero_ps();
    const __mmask16 tail = (n & 15) ? (__mmask16)((1u << (n & 15)) - 1) : 0xFFFF;
    const int32_t full = (n & 15) ? n & ~15 : n - 16;
    // x · 0 is 0 for every finite x and NaN otherwise: summed over the maps, 0 iff all finite.
    __m512 finite = zero;
    for (int64_t i = 0; i < count; i++) {
        const float *map = maps + i * n;
        __m512 m = lowest;
        for (int32_t p = 0; p < full; p += 16) {
            const __m512 v = _mm512_loadu_ps(map + p);
            m = _mm512_max_ps(m, v);
            finite = _mm512_add_ps(finite, _mm512_mul_ps(v, zero));
        }
        const __m512 v = _mm512_maskz_loadu_ps(tail, map + full);
        m = _mm512_max_ps(m, _mm512_mask_mov_ps(lowest, tail, v));
        finite = _mm512_add_ps(finite, _mm512_mul_ps(v, zero));
        peaks[i] = _mm512_reduce_max_ps(m);
    }
    return _mm512_cmp_ps_mask(finite, zero, _CMP_EQ_OQ) == 0xFFFF;
}

// Whole blocks are read with plain loads, only the last one under a mask: on this project's Zen 5
// a masked 512-bit load costs about twice a plain one here (perf, the paper pass's above-bound
// scan).

HNDD_AVX512
static int32_t above_avx512(const float *map, int32_t n, float bound, float *out, uint64_t *bits) {
    const __m512 b = _mm512_set1_ps(bound);
    int32_t count = 0;
    for (int32_t p = 0; p < n; p += 16) {
        const int whole = n - p >= 16;
        const __mmask16 valid = whole ? 0xFFFF : (__mmask16)((1u << (n - p)) - 1);
        const __m512 v = whole ? _mm512_loadu_ps(map + p) : _mm512_maskz_loadu_ps(valid, map + p);
        const __mmask16 above = _mm512_mask_cmp_ps_mask(valid, v, b, _CMP_GT_OQ);
        if (p % 64 == 0) bits[p >> 6] = 0;
        bits[p >> 6] |= (uint64_t)above << (p & 63);
        if (out) compress_store(out + count, above, v);
        count += __builtin_popcount(above);
    }
    return count;
}

HNDD_AVX512
static float gather_avx512(const float *map, int32_t n, const uint64_t *kept, float bound, float *out) {
    const __m512 b = _mm512_set1_ps(bound);
    __m512 smallest = _mm512_set1_ps(INFINITY);
    for (int32_t p = 0; p < n; p += 16) {
        const __mmask16 take = (__mmask16)(kept[p >> 6] >> (p & 63));
        const __m512 v = n - p >= 16 ? _mm512_loadu_ps(map + p) : _mm512_maskz_loadu_ps(take, map + p);
        compress_store(out, take, v);
        out += __builtin_popcount(take);
        smallest = _mm512_mask_min_ps(smallest, _mm512_mask_cmp_ps_mask(take, v, b, _CMP_GT_OQ), smallest, v);
    }
    return _mm512_reduce_min_ps(smallest);
}
#endif

float hndd_gather(const float *map, int32_t n, const uint64_t *kept, float bound, float *out) {
#if defined(__x86_64__)
    if (path == HNDD_PATH_AVX512) return gather_avx512(map, n, kept, bound, out);
    if (path == HNDD_PATH_AVX2) return hndd_gather_avx2(map, n, kept, bound, out);
#endif
    return hndd_gather_portable(map, n, kept, bound, out);
}

float hndd_gather_portable(const float *map, int32_t n, const uint64_t *kept, float bound, float *out) {
    float smallest = INFINITY;
    for (int32_t p = 0; p < n; p++) {
        if (!(kept[p >> 6] >> (p & 63) & 1)) continue;
        *out++ = map[p];
        if (map[p] > bound && map[p] < smallest) smallest = map[p];
    }
    return smallest;
}

int hndd_maxima(const float *maps, int64_t count, int32_t n, float *peaks) {
#if defined(__x86_64__)
    if (path == HNDD_PATH_AVX512) return maxima_avx512(maps, count, n, peaks);
    if (path == HNDD_PATH_AVX2) return hndd_maxima_avx2(maps, count, n, peaks);
#endif
    return hndd_maxima_portable(maps, count, n, peaks);
}

int hndd_maxima_portable(const float *maps, int64_t count, int32_t n, float *peaks) {
    float finite = 0;
    for (int64_t i = 0; i < count; i++) {
        const float *map = maps + i * n;
        float m = map[0];
        for (int32_t p = 0; p < n; p++) {
            m = map[p] > m ? map[p] : m;
            finite += map[p] * 0;
        }
        peaks[i] = m;
    }
    return finite == 0;
}

int32_t hndd_above(const float *map, int32_t n, float bound, float *out, uint64_t *bits) {
#if defined(__x86_64__)
    if (path == HNDD_PATH_AVX512) return above_avx512(map, n, bound, out, bits);
    if (path == HNDD_PATH_AVX2) return hndd_above_avx2(map, n, bound, out, bits);
#endif
    return hndd_above_portable(map, n, bound, out, bits);
}

int32_t hndd_above_portable(const float *map, int32_t n, float bound, float *out, uint64_t *bits) {
    int32_t count = 0;
    for (int32_t w = 0; w < (n + 63) / 64; w++) bits[w] = 0;
    for (int32_t p = 0; p < n; p++) {
        if (map[p] > bound) {
            bits[p >> 6] |= 1ull << (p & 63);
            if (out) out[count] = map[p];
            count++;
        }
    }
    return count;
}

// MARK: top-k

#if defined(__x86_64__)
HNDD_AVX512
static void partition_avx512(float *values, int64_t n, float pivot, float *spare, int64_t *above, int64_t *equal) {
    const __m512 p = _mm512_set1_ps(pivot);
    int64_t high = 0, low = n; // spare: above from the front, below from the back
    for (int64_t i = 0; i < n; i += 16) {
        const int whole = n - i >= 16;
        const __mmask16 valid = whole ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = whole ? _mm512_loadu_ps(values + i) : _mm512_maskz_loadu_ps(valid, values + i);
        const __mmask16 gt = _mm512_mask_cmp_ps_mask(valid, v, p, _CMP_GT_OQ);
        const __mmask16 lt = _mm512_mask_cmp_ps_mask(valid, v, p, _CMP_LT_OQ);
        compress_store(spare + high, gt, v);
        high += __builtin_popcount(gt);
        low -= __builtin_popcount(lt);
        compress_store(spare + low, lt, v);
    }
    memcpy(values, spare, sizeof(float) * (size_t)high);
    for (int64_t i = high; i < low; i++) values[i] = pivot;
    memcpy(values + low, spare + low, sizeof(float) * (size_t)(n - low));
    *above = high;
    *equal = low - high;
}
#endif

static void partition_portable(float *values, int64_t n, float pivot, float *spare, int64_t *above, int64_t *equal) {
    int64_t high = 0, low = n;
    for (int64_t i = 0; i < n; i++) {
        const float v = values[i];
        if (v > pivot) spare[high++] = v;
        else if (v < pivot) spare[--low] = v;
    }
    memcpy(values, spare, sizeof(float) * (size_t)high);
    for (int64_t i = high; i < low; i++) values[i] = pivot;
    memcpy(values + low, spare + low, sizeof(float) * (size_t)(n - low));
    *above = high;
    *equal = low - high;
}

float hndd_select_largest(float *values, int64_t n, int64_t k, float *spare, hndd_partition_fn partition) {
    // The k-th largest lies in [lo, hi): everything before lo is among the k largest.
    int64_t lo = 0, hi = n;
    while (hi - lo > 1) {
        const int64_t count = hi - lo, mid = lo + count / 2;
        const float a = values[lo], b = values[mid], c = values[hi - 1];
        const float pivot = fmaxf(fminf(a, b), fminf(fmaxf(a, b), c)); // median of three
        int64_t above, equal;
        partition(values + lo, count, pivot, spare, &above, &equal);
        const int64_t need = k - lo;
        if (need <= above) hi = lo + above;
        else if (need <= above + equal) break; // the k-th largest is the pivot
        else lo += above + equal;
    }
    float smallest = values[0];
    for (int64_t i = 1; i < k; i++) smallest = fminf(smallest, values[i]);
    return smallest;
}

float hndd_keep_largest(float *values, int64_t n, int64_t k, float *spare) {
#if defined(__x86_64__)
    if (path == HNDD_PATH_AVX512) return hndd_select_largest(values, n, k, spare, partition_avx512);
    if (path == HNDD_PATH_AVX2) return hndd_select_largest(values, n, k, spare, hndd_partition_avx2);
#endif
    return hndd_select_largest(values, n, k, spare, partition_portable);
}

float hndd_keep_largest_portable(float *values, int64_t n, int64_t k, float *spare) {
    return hndd_select_largest(values, n, k, spare, partition_portable);
}
