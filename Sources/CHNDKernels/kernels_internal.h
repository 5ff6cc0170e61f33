#ifndef HNDD_KERNELS_INTERNAL_H
#define HNDD_KERNELS_INTERNAL_H

// What the kernels' files share: the geometry's layout, the hot-block marking, the quickselect
// around each path's partition. Not part of the module's interface.

#include "hndd_cpu.h"
#include "hndd_kernels.h"

struct hndd_geometry {
    int32_t height, width, size;
    int32_t rowBlockCount, colBlockCount;
    int32_t *rowBlocks, *colBlocks;    // 4 per block
    int32_t *rowTouch, *colTouch;      // 2 per source index
    float *rowLowerWeight, *rowUpperWeight; // size + 16, zero padded: a 16-lane load never leaves them
    float *colLowerWeight, *colUpperWeight; // size
    /// For each source position, the hot-block bits it sets (`words` words), when the blocks
    /// fit in HNDD_TOUCH_WORDS words; else NULL and the ranges above are walked.
    uint64_t *touch;
    int32_t words;
    /// The vector path that counts (`hndd_count_map`): the process's, or one a test selected.
    hndd_path path;
};

#define HNDD_TOUCH_WORDS 8

/// The dense map the count kernels write holds this many floats past the map, so that a vector
/// store never leaves it.
#define HNDD_MAP_PADDING 16

/// Marks, in `hot`, the blocks of which source position `p` is a corner (a value above the
/// threshold there makes them hot).
static inline void hndd_mark_hot(const hndd_geometry *g, int32_t p, uint64_t *hot) {
    if (g->touch) {
        const uint64_t *bits = g->touch + (size_t)p * g->words;
        for (int32_t i = 0; i < g->words; i++) hot[i] |= bits[i];
        return;
    }
    const int32_t y = p / g->width, x = p % g->width;
    for (int32_t rb = g->rowTouch[2 * y]; rb < g->rowTouch[2 * y + 1]; rb++)
        for (int32_t cb = g->colTouch[2 * x]; cb < g->colTouch[2 * x + 1]; cb++) {
            const int32_t b = rb * g->colBlockCount + cb;
            hot[b >> 6] |= 1ull << (b & 63);
        }
}

/// One path's count of a map (see `hndd_count_map`), given scratch: `map` holds h·w +
/// HNDD_MAP_PADDING floats, `hot` (one bit per block) is zeroed.
typedef int64_t (*hndd_count_fn)(const hndd_geometry *g, const void *kept, const float *values, float threshold,
                                 const hndd_mask *masks, const uint64_t *rowBits, const uint64_t *colBits,
                                 const uint16_t *runLo, const uint16_t *runHi, int64_t *overlap, float *map, uint64_t *hot);

int64_t hndd_count_dense_avx2(const hndd_geometry *g, const void *kept, const float *values, float threshold,
                              const hndd_mask *masks, const uint64_t *rowBits, const uint64_t *colBits,
                              const uint16_t *runLo, const uint16_t *runHi, int64_t *overlap, float *map, uint64_t *hot);

/// Splits values[0, n) around `pivot` into those above it (first), equal, and below (last),
/// through `spare` (n floats); returns the counts above and equal.
typedef void (*hndd_partition_fn)(float *values, int64_t n, float pivot, float *spare, int64_t *above, int64_t *equal);

/// The quickselect of `hndd_keep_largest`, around one path's partition.
float hndd_select_largest(float *values, int64_t n, int64_t k, float *spare, hndd_partition_fn partition);

void hndd_partition_avx2(float *values, int64_t n, float pivot, float *spare, int64_t *above, int64_t *equal);

#endif
