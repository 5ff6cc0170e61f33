// The kernels' AVX2 versions, for CPUs without AVX-512 (AMD Zen 2/3, many Intel parts): the same
// results as the AVX-512 and plain versions, bit for bit, with 8 lanes instead of 16 and without
// mask registers. AVX2 has no compress-store nor expand-load: a table gives, for each 8-bit lane
// mask, the permutation that packs the chosen lanes together (or spreads packed values out), and
// stores are full-width wherever the room past the values written is known to be free.

#include "kernels_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

// Products and sums stay separate roundings, exactly as in the engine's Swift code and in the
// AVX-512 kernel: a fused multiply-add would move pixels across the threshold. (The target below
// does not include FMA either.)
#pragma clang fp contract(off)

#if defined(__x86_64__)

#define HNDD_AVX2 __attribute__((target("avx2,f16c,popcnt,bmi")))

// MARK: lane tables

/// For lane mask m: lane j's rank among the set lanes below it (where an expand takes its value),
/// and the lane holding the i-th set bit (where a compress takes its i-th value), 0 where none.
#define HNDD_RANK(m, j) (((m) >> (j) & 1) ? __builtin_popcount((m) & ((1u << (j)) - 1)) : 0)
#define HNDD_IF_NTH(m, i, j) ((((m) >> (j) & 1) && __builtin_popcount((m) & ((1u << (j)) - 1)) == (i)) ? (j) : 0)
#define HNDD_NTH(m, i) (HNDD_IF_NTH(m, i, 0) + HNDD_IF_NTH(m, i, 1) + HNDD_IF_NTH(m, i, 2) + HNDD_IF_NTH(m, i, 3) \
                        + HNDD_IF_NTH(m, i, 4) + HNDD_IF_NTH(m, i, 5) + HNDD_IF_NTH(m, i, 6) + HNDD_IF_NTH(m, i, 7))
#define HNDD_EXPAND_ROW(m) { HNDD_RANK(m, 0), HNDD_RANK(m, 1), HNDD_RANK(m, 2), HNDD_RANK(m, 3), \
                             HNDD_RANK(m, 4), HNDD_RANK(m, 5), HNDD_RANK(m, 6), HNDD_RANK(m, 7) }
#define HNDD_COMPRESS_ROW(m) { HNDD_NTH(m, 0), HNDD_NTH(m, 1), HNDD_NTH(m, 2), HNDD_NTH(m, 3), \
                               HNDD_NTH(m, 4), HNDD_NTH(m, 5), HNDD_NTH(m, 6), HNDD_NTH(m, 7) }
#define HNDD_ROWS4(row, m) row((m)), row((m) + 1), row((m) + 2), row((m) + 3)
#define HNDD_ROWS16(row, m) HNDD_ROWS4(row, (m)), HNDD_ROWS4(row, (m) + 4), HNDD_ROWS4(row, (m) + 8), HNDD_ROWS4(row, (m) + 12)
#define HNDD_ROWS64(row, m) HNDD_ROWS16(row, (m)), HNDD_ROWS16(row, (m) + 16), HNDD_ROWS16(row, (m) + 32), HNDD_ROWS16(row, (m) + 48)
#define HNDD_ROWS256(row) HNDD_ROWS64(row, 0u), HNDD_ROWS64(row, 64u), HNDD_ROWS64(row, 128u), HNDD_ROWS64(row, 192u)

static const uint8_t expandLanes[256][8] __attribute__((aligned(8))) = { HNDD_ROWS256(HNDD_EXPAND_ROW) };
static const uint8_t compressLanes[256][8] __attribute__((aligned(8))) = { HNDD_ROWS256(HNDD_COMPRESS_ROW) };

/// All ones in the lanes i whose bit i of `bits` is set.
HNDD_AVX2 static inline __m256i lane_mask(unsigned bits) {
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)bits), bit), bit);
}

/// `v` with the lanes of `bits` packed, in order, into its first lanes (the rest meaningless).
HNDD_AVX2 static inline __m256 compress(__m256 v, unsigned bits) {
    return _mm256_permutevar8x32_ps(v, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)compressLanes[bits])));
}

/// The first lanes of `packed` spread, in order, to the lanes of `bits` (the rest meaningless).
HNDD_AVX2 static inline __m256 expand(__m256 packed, unsigned bits) {
    return _mm256_permutevar8x32_ps(packed, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)expandLanes[bits])));
}

/// Lanes of `v` as a bit mask.
HNDD_AVX2 static inline unsigned lane_bits(__m256 v) { return (unsigned)_mm256_movemask_ps(v); }

HNDD_AVX2 static inline float max_of_lanes(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}

HNDD_AVX2 static inline float min_of_lanes(__m256 v) {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_min_ss(m, _mm_shuffle_ps(m, m, 1)));
}

HNDD_AVX2 static inline int32_t sum_of_lanes(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1))));
}

// MARK: count

/// Runs of up to 8 rows of hot blocks, gathered before their overlaps with the masks.
enum { chunkCapacity = 64 };
struct chunks {
    __m256i lo[chunkCapacity], hi[chunkCapacity]; // columns [lo, hi) of rows row + lane
    int32_t row[chunkCapacity];
    uint8_t runs[chunkCapacity];                  // lanes with a run
    uint64_t masks[chunkCapacity];                // the masks the chunk's block meets
    int32_t count;
};

/// The 8 runs from `runs` (lane i: runs[i]). Lanes outside the mask's rows read its neighbours'
/// runs or the arrays' padding (HNDD_RUN_PADDING), never past the arrays; the caller discards them.
HNDD_AVX2 static inline __m256i mask_runs(const uint16_t *runs) {
    return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)runs));
}

/// Adds the gathered chunks' overlaps with the masks to `overlapLanes` (lanes of mask m valid
/// when bit m of `met` is set).
HNDD_AVX2
static void add_overlaps(const struct chunks *gathered, const hndd_mask *masks, const uint16_t *runLo, const uint16_t *runHi,
                         __m256i *overlapLanes, uint64_t *met) {
    const __m256i zero = _mm256_setzero_si256();
    for (int32_t c = 0; c < gathered->count; c++) {
        const unsigned withRun = gathered->runs[c];
        if (!withRun) continue;
        const int32_t chunk = gathered->row[c];
        const __m256i loI = gathered->lo[c], hiI = gathered->hi[c];
        for (uint64_t maskBits = gathered->masks[c]; maskBits; maskBits &= maskBits - 1) {
            const int m = __builtin_ctzll(maskBits);
            const hndd_mask *mask = masks + m;
            // The lanes whose rows lie inside the mask: [first, end).
            const int32_t maskEnd = mask->firstRow + mask->rowCount;
            const int32_t first = mask->firstRow > chunk ? mask->firstRow - chunk : 0;
            const int32_t end = maskEnd < chunk + 8 ? maskEnd - chunk : 8;
            if (end <= first) continue;
            const unsigned inside = withRun & ((1u << end) - 1) & ~((1u << first) - 1);
            if (!inside) continue;
            // Lane i reads run (chunk + i − firstRow) of the mask.
            const int64_t offset = mask->runStart + chunk - mask->firstRow;
            const __m256i mLo = mask_runs(runLo + offset), mHi = mask_runs(runHi + offset);
            const __m256i both = _mm256_sub_epi32(_mm256_min_epi32(hiI, mHi), _mm256_max_epi32(loI, mLo));
            const __m256i counted = _mm256_and_si256(_mm256_max_epi32(both, zero), lane_mask(inside));
            if (*met >> m & 1) {
                overlapLanes[m] = _mm256_add_epi32(overlapLanes[m], counted);
            } else {
                overlapLanes[m] = counted;
                *met |= 1ull << m;
            }
        }
    }
}

/// The dense map (−∞ where not kept), 8 positions per step, and the hot blocks (those with a
/// corner above the threshold). Returns whether any value is above it.
HNDD_AVX2
static int expand_map(const hndd_geometry *g, const void *kept, const float *values, float threshold, float *map, uint64_t *hot) {
    const int32_t n = g->height * g->width;
    const __m256 t = _mm256_set1_ps(threshold), unknown = _mm256_set1_ps(-INFINITY);
    int any = 0;
    const float *next = values;
    for (int32_t p = 0; p < n; p += 8) {
        uint64_t word;
        memcpy(&word, (const uint64_t *)kept + (p >> 6), sizeof word); // records are 4-byte aligned
        const unsigned valid = n - p >= 8 ? 0xFF : (1u << (n - p)) - 1;
        const unsigned present = (unsigned)(word >> (p & 63)) & valid;
        const int32_t count = __builtin_popcount(present);
        // The next `count` values (no other is read), spread to their positions.
        const __m256 packed = _mm256_maskload_ps(next, lane_mask((1u << count) - 1));
        next += count;
        const __m256 v = _mm256_blendv_ps(unknown, expand(packed, present), _mm256_castsi256_ps(lane_mask(present)));
        _mm256_storeu_ps(map + p, v); // within the map's padding past n
        unsigned above = lane_bits(_mm256_cmp_ps(v, t, _CMP_GT_OQ)) & present;
        if (above) any = 1;
        for (; above; above &= above - 1) hndd_mark_hot(g, p + __builtin_ctz(above), hot);
    }
    return any;
}

HNDD_AVX2
int64_t hndd_count_dense_avx2(const hndd_geometry *g, const void *kept, const float *values, float threshold,
                              const hndd_mask *masks, const uint64_t *rowBits, const uint64_t *colBits,
                              const uint16_t *runLo, const uint16_t *runHi, int64_t *overlap, float *map, uint64_t *hot) {
    if (!expand_map(g, kept, values, threshold, map, hot)) return 0;
    const int32_t w = g->width, colBlockCount = g->colBlockCount, words = g->words;
    const __m256 t = _mm256_set1_ps(threshold);

    // Per-lane sums, reduced once per map: the area, and the overlap of each mask met (`met`).
    __m256i areaLanes = _mm256_setzero_si256();
    __m256i overlapLanes[64];
    uint64_t met = 0;
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1);
    // Two phases, as in the AVX-512 kernel: every hot block's runs (no branch depends on them),
    // then their overlaps with the masks.
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
            const __m256 topFirst = _mm256_set1_ps(wxf0 * a00 + wxf1 * a01);
            const __m256 bottomFirst = _mm256_set1_ps(wxf0 * a10 + wxf1 * a11);
            const __m256 topLast = _mm256_set1_ps(wxl0 * a00 + wxl1 * a01);
            const __m256 bottomLast = _mm256_set1_ps(wxl0 * a10 + wxl1 * a11);
            const __m256 span = _mm256_set1_ps((float)(last - first));
            const __m256 start = _mm256_set1_ps((float)first), end = _mm256_set1_ps((float)block[1]);
            const __m256 length = _mm256_set1_ps((float)(block[1] - first));
            for (int32_t chunk = rowBlock[0]; chunk < rowBlock[1]; chunk += 8) {
                const int32_t count = rowBlock[1] - chunk < 8 ? rowBlock[1] - chunk : 8;
                const unsigned valid = (1u << count) - 1;
                const __m256 y0 = _mm256_loadu_ps(g->rowLowerWeight + chunk);
                const __m256 y1 = _mm256_loadu_ps(g->rowUpperWeight + chunk);
                const __m256 vFirst = _mm256_add_ps(_mm256_mul_ps(y0, topFirst), _mm256_mul_ps(y1, bottomFirst));
                const __m256 vLast = _mm256_add_ps(_mm256_mul_ps(y0, topLast), _mm256_mul_ps(y1, bottomLast));
                const __m256 firstAbove = _mm256_cmp_ps(vFirst, t, _CMP_GT_OQ);
                const __m256 lastAbove = _mm256_cmp_ps(vLast, t, _CMP_GT_OQ);
                // Where the row crosses t, as a fraction of the way from the first column to the
                // last; the run above t is ⌈distance⌉ columns from the end above. (max and min
                // return their second operand for a NaN, as AVX-512's do.)
                const __m256 x = _mm256_div_ps(_mm256_sub_ps(vFirst, t), _mm256_sub_ps(vFirst, vLast));
                const __m256 falling = _mm256_round_ps(
                    _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(x, span), zero), length), _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
                const __m256 rising = _mm256_round_ps(
                    _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_sub_ps(one, x), span), zero), length), _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
                __m256 hi = _mm256_blendv_ps(start, _mm256_add_ps(start, falling), firstAbove);
                const __m256 lo = _mm256_blendv_ps(start, _mm256_sub_ps(end, rising), _mm256_andnot_ps(firstAbove, lastAbove));
                hi = _mm256_blendv_ps(hi, end, lastAbove);
                const __m256i loI = _mm256_cvttps_epi32(lo), hiI = _mm256_cvttps_epi32(hi);
                const __m256i runLength = _mm256_and_si256(_mm256_sub_epi32(hiI, loI), lane_mask(valid));
                areaLanes = _mm256_add_epi32(areaLanes, runLength);
                const int32_t c = gathered.count++;
                gathered.lo[c] = loI; gathered.hi[c] = hiI; gathered.row[c] = chunk;
                gathered.runs[c] = (uint8_t)(lane_bits(_mm256_castsi256_ps(_mm256_cmpgt_epi32(runLength, _mm256_setzero_si256()))) & valid);
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
        overlap[m] += sum_of_lanes(overlapLanes[m]);
    }
    return sum_of_lanes(areaLanes);
}

// MARK: ingest

HNDD_AVX2
int hndd_maxima_avx2(const float *maps, int64_t count, int32_t n, float *peaks) {
    const __m256 lowest = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps();
    // Every map ends with a block of up to 8 (a full one when n is a multiple of 8), loaded
    // through a mask: nothing past the maps is read.
    const __m256i tail = lane_mask((n & 7) ? (1u << (n & 7)) - 1 : 0xFF);
    const int32_t full = (n & 7) ? n & ~7 : n - 8;
    // x · 0 is 0 for every finite x and NaN otherwise: summed over the maps, 0 iff all finite.
    __m256 finite = zero;
    for (int64_t i = 0; i < count; i++) {
        const float *map = maps + i * n;
        __m256 m = lowest;
        for (int32_t p = 0; p < full; p += 8) {
            const __m256 v = _mm256_loadu_ps(map + p);
            m = _mm256_max_ps(m, v);
            finite = _mm256_add_ps(finite, _mm256_mul_ps(v, zero));
        }
        const __m256 v = _mm256_maskload_ps(map + full, tail);
        m = _mm256_max_ps(m, _mm256_blendv_ps(lowest, v, _mm256_castsi256_ps(tail)));
        finite = _mm256_add_ps(finite, _mm256_mul_ps(v, zero));
        peaks[i] = max_of_lanes(m);
    }
    return lane_bits(_mm256_cmp_ps(finite, zero, _CMP_EQ_OQ)) == 0xFF;
}

HNDD_AVX2
int32_t hndd_above_avx2(const float *map, int32_t n, float bound, float *out, uint64_t *bits) {
    const __m256 b = _mm256_set1_ps(bound);
    int32_t count = 0;
    for (int32_t p = 0; p < n; p += 8) {
        const int whole = n - p >= 8;
        const unsigned valid = whole ? 0xFF : (1u << (n - p)) - 1;
        const __m256 v = whole ? _mm256_loadu_ps(map + p) : _mm256_maskload_ps(map + p, lane_mask(valid));
        const unsigned above = lane_bits(_mm256_cmp_ps(v, b, _CMP_GT_OQ)) & valid;
        if (p % 64 == 0) bits[p >> 6] = 0;
        bits[p >> 6] |= (uint64_t)above << (p & 63);
        if (out) {
            // count ≤ p: a whole block's full-width store stays within out's n values.
            if (whole) {
                _mm256_storeu_ps(out + count, compress(v, above));
            } else {
                int32_t k = count;
                for (unsigned a = above; a; a &= a - 1) out[k++] = map[p + __builtin_ctz(a)];
            }
        }
        count += __builtin_popcount(above);
    }
    return count;
}

HNDD_AVX2
float hndd_gather_avx2(const float *map, int32_t n, const uint64_t *kept, float bound, float *out) {
    // `out` has room for exactly the kept values: full-width stores only while 8 more fit.
    int32_t total = 0;
    for (int32_t i = 0; i < (n + 63) / 64; i++) total += __builtin_popcountll(kept[i]);
    const __m256 b = _mm256_set1_ps(bound);
    __m256 smallest = _mm256_set1_ps(INFINITY);
    int32_t written = 0;
    for (int32_t p = 0; p < n; p += 8) {
        const unsigned take = (unsigned)(kept[p >> 6] >> (p & 63)) & 0xFF; // bits past n are clear
        const __m256i taken = lane_mask(take);
        const __m256 v = _mm256_maskload_ps(map + p, taken);
        const __m256 packed = compress(v, take);
        const int32_t count = __builtin_popcount(take);
        if (written + 8 <= total) {
            _mm256_storeu_ps(out + written, packed);
        } else {
            float last[8];
            _mm256_storeu_ps(last, packed);
            for (int32_t i = 0; i < count; i++) out[written + i] = last[i];
        }
        written += count;
        const __m256 above = _mm256_and_ps(_mm256_cmp_ps(v, b, _CMP_GT_OQ), _mm256_castsi256_ps(taken));
        smallest = _mm256_blendv_ps(smallest, _mm256_min_ps(smallest, v), above);
    }
    return min_of_lanes(smallest);
}

// MARK: top-k

/// Those above the pivot go to `spare` from the front, those below to `values` from the front
/// (behind the block being read: a full-width store there overwrites only values already read),
/// then into place at the back.
HNDD_AVX2
void hndd_partition_avx2(float *values, int64_t n, float pivot, float *spare, int64_t *above, int64_t *equal) {
    const __m256 p = _mm256_set1_ps(pivot);
    int64_t high = 0, low = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(values + i);
        const unsigned gt = lane_bits(_mm256_cmp_ps(v, p, _CMP_GT_OQ));
        const unsigned lt = lane_bits(_mm256_cmp_ps(v, p, _CMP_LT_OQ));
        _mm256_storeu_ps(spare + high, compress(v, gt)); // high ≤ i: within spare's n
        _mm256_storeu_ps(values + low, compress(v, lt));  // low ≤ i: within what was read
        high += __builtin_popcount(gt);
        low += __builtin_popcount(lt);
    }
    for (; i < n; i++) {
        const float v = values[i];
        if (v > pivot) spare[high++] = v;
        else if (v < pivot) values[low++] = v;
    }
    memmove(values + n - low, values, sizeof(float) * (size_t)low);
    memcpy(values, spare, sizeof(float) * (size_t)high);
    for (int64_t j = high; j < n - low; j++) values[j] = pivot;
    *above = high;
    *equal = n - low - high;
}

float hndd_keep_largest_avx2(float *values, int64_t n, int64_t k, float *spare) {
    return hndd_select_largest(values, n, k, spare, hndd_partition_avx2);
}

#else

// Never called off x86-64: hndd_vector_path() is then portable.
int64_t hndd_count_dense_avx2(const hndd_geometry *g, const void *kept, const float *values, float threshold,
                              const hndd_mask *masks, const uint64_t *rowBits, const uint64_t *colBits,
                              const uint16_t *runLo, const uint16_t *runHi, int64_t *overlap, float *map, uint64_t *hot) {
    (void)g; (void)kept; (void)values; (void)threshold; (void)masks; (void)rowBits; (void)colBits;
    (void)runLo; (void)runHi; (void)overlap; (void)map; (void)hot;
    abort();
}
int hndd_maxima_avx2(const float *maps, int64_t count, int32_t n, float *peaks) { (void)maps; (void)count; (void)n; (void)peaks; abort(); }
int32_t hndd_above_avx2(const float *map, int32_t n, float bound, float *out, uint64_t *bits) { (void)map; (void)n; (void)bound; (void)out; (void)bits; abort(); }
float hndd_gather_avx2(const float *map, int32_t n, const uint64_t *kept, float bound, float *out) { (void)map; (void)n; (void)kept; (void)bound; (void)out; abort(); }
void hndd_partition_avx2(float *values, int64_t n, float pivot, float *spare, int64_t *above, int64_t *equal) {
    (void)values; (void)n; (void)pivot; (void)spare; (void)above; (void)equal;
    abort();
}
float hndd_keep_largest_avx2(float *values, int64_t n, int64_t k, float *spare) { (void)values; (void)n; (void)k; (void)spare; abort(); }

#endif
