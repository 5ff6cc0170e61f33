#ifndef HNDD_KERNELS_H
#define HNDD_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "hndd_cpu.h"

/// Native helpers of the engine: vector kernels for its hottest loops — Stage II's exact count of
/// one map's upsampled pixels above a threshold and of their overlap with the image's concept
/// masks; the ingest scans (maxima, values above a bound, a record's gather); the top-k's
/// selection — and the memory of the candidate-map arena.
///
/// Written in C because Swift cannot select instructions per function: its SIMD types compile to
/// the baseline x86-64 (SSE2), while these loops are several times shorter in AVX-512 or AVX2.
/// Each kernel has an AVX-512 version (kernels.c), an AVX2 one (kernels_avx2.c) and a plain C
/// one, and runs the process's vector path (`hndd_vector_path`, hndd_cpu.h: AVX-512, else AVX2,
/// else portable; HNDD_NO_AVX512 and HNDD_PORTABLE rule paths out). On the portable path the
/// scans and the selection take their plain C versions, and the engine counts with its Swift
/// path, which computes the same numbers. Every path gives the same results, bit for bit.

/// One present concept's mask on one image: its rows `firstRow ..< firstRow + rowCount`, whose
/// column runs [runLo, runHi) start at index `runStart` of the run arrays, all within the columns
/// `columnLo ..< columnHi`.
typedef struct {
    int32_t concept;
    int32_t firstRow;
    int32_t rowCount;
    int32_t columnLo;
    int32_t columnHi;
    int32_t reserved;
    int64_t runStart;
} hndd_mask;

/// The run arrays (runLo, runHi) hold this many unused runs before the first mask's and after the
/// last one's, so that a kernel may load a whole vector of 8 runs around any rows a mask has,
/// discarding the lanes outside it, instead of gathering the runs one by one.
#define HNDD_RUN_PADDING 8

/// The bilinear upsampler's tables (see BilinearUpsampler in the engine), copied in by
/// `hndd_geometry_create`.
typedef struct hndd_geometry hndd_geometry;

/// `rowBlocks` and `colBlocks` hold four int32 per block: start, end (output indices, half open),
/// lower, upper (source indices). `rowTouch`/`colTouch` hold two int32 per source index: the
/// range of blocks using it as a corner. Weights are per output index (`size` of them).
/// Returns NULL when out of memory.
hndd_geometry *hndd_geometry_create(int32_t height, int32_t width, int32_t size,
                                    const int32_t *rowBlocks, int32_t rowBlockCount,
                                    const int32_t *colBlocks, int32_t colBlockCount,
                                    const int32_t *rowTouch, const int32_t *colTouch,
                                    const float *rowLowerWeight, const float *rowUpperWeight,
                                    const float *colLowerWeight, const float *colUpperWeight);
void hndd_geometry_free(hndd_geometry *geometry);

/// 1 when `hndd_count_map` runs (the vector path is AVX-512 or AVX2), else 0 (portable: the
/// engine counts in Swift).
int hndd_count_kernel_available(void);

/// Makes `hndd_count_map` count `geometry`'s maps with `path`'s kernel instead of the process's
/// (for tests comparing the paths in one process). Returns 0, changing nothing, when the path
/// has no count kernel (portable) or this CPU cannot run it; else 1.
int hndd_geometry_select(hndd_geometry *geometry, hndd_path path);

/// Number of row blocks and of column blocks.
int32_t hndd_geometry_row_blocks(const hndd_geometry *geometry);
int32_t hndd_geometry_col_blocks(const hndd_geometry *geometry);

/// Which of an image's masks (at most 64) each row block and each column block meets: bit m of
/// `rowBits[rb]` (`colBits[cb]`) is set when mask m has a row (column) in that block.
void hndd_mask_blocks(const hndd_geometry *geometry, const hndd_mask *masks, int64_t maskCount,
                      uint64_t *rowBits, uint64_t *colBits);

/// For one h×w map, given sparsely as a candidate record holds it (bit p of the `kept` words —
/// 4-byte aligned — set when position p's value is among `values`, in position order; −∞
/// elsewhere; the values are floats, or binary16 halves when `halfValues` is 1): returns |M|, the number of upsampled pixels above `threshold`, and adds
/// |M ∩ mask m| to `overlap[m]` for each mask of the image (`rowBits`, `colBits` from
/// `hndd_mask_blocks`). Same arithmetic, in the same order, as the engine's `forEachBlockRun` (no
/// fused multiply-add); a block with a corner above the threshold must have all four corners
/// kept. `runLo` and `runHi` are padded by HNDD_RUN_PADDING runs at both ends. Only where
/// `hndd_count_kernel_available()` (or a path was selected).
int64_t hndd_count_map(const hndd_geometry *geometry, const void *kept, const void *values, int halfValues, float threshold,
                       const hndd_mask *masks, const uint64_t *rowBits, const uint64_t *colBits,
                       const uint16_t *runLo, const uint16_t *runHi, int64_t *overlap);

/// The maximum of each of `count` maps of `n` (≥ 1) values, stored one after another, into
/// `peaks`; returns 1 when every value is finite, else 0 (and the maxima mean nothing).
int hndd_maxima(const float *maps, int64_t count, int32_t n, float *peaks);

/// The values of `map` (n values) above `bound`: sets bit p of `bits` ((n + 63) / 64 words) for
/// each, writes them in position order to `out` unless it is NULL, and returns how many. `out`
/// needs room for n values: those past the count returned may be overwritten.
int32_t hndd_above(const float *map, int32_t n, float bound, float *out, uint64_t *bits);

/// Writes the values of `map` (n values) at the positions set in `kept` to `out`, in position
/// order; returns the smallest of them above `bound` (+∞ if none). Bits past n must be clear.
float hndd_gather(const float *map, int32_t n, const uint64_t *kept, float bound, float *out);

/// Rearranges `values` (n finite floats, 1 ≤ k ≤ n) so that the first k are the k largest (in
/// no order) and returns the smallest of those, the k-th largest. `spare`: room for n floats.
/// A quickselect whose partitions are branch-free (compress-stores under AVX-512, permutations
/// from a table under AVX2). Which k values are kept is the same on every path; their order is
/// not.
float hndd_keep_largest(float *values, int64_t n, int64_t k, float *spare);

/// The AVX2 versions of the four above, exported for tests (call only where
/// `hndd_cpu_supports(HNDD_PATH_AVX2)`; the count's is chosen with `hndd_geometry_select`).
int hndd_maxima_avx2(const float *maps, int64_t count, int32_t n, float *peaks);
int32_t hndd_above_avx2(const float *map, int32_t n, float bound, float *out, uint64_t *bits);
float hndd_gather_avx2(const float *map, int32_t n, const uint64_t *kept, float bound, float *out);
float hndd_keep_largest_avx2(float *values, int64_t n, int64_t k, float *spare);

/// The plain C versions the four scans above fall back to (exported for tests).
float hndd_keep_largest_portable(float *values, int64_t n, int64_t k, float *spare);
float hndd_gather_portable(const float *map, int32_t n, const uint64_t *kept, float bound, float *out);
int hndd_maxima_portable(const float *maps, int64_t count, int32_t n, float *peaks);
int32_t hndd_above_portable(const float *map, int32_t n, float bound, float *out, uint64_t *bits);

/// The candidate-map arena's memory: its own mapping on Linux, resized with `mremap` (pages
/// move, nothing is copied, and there are never two copies); `realloc` elsewhere. Resizing
/// (`base` NULL: creating) returns NULL when out of memory.
void *hndd_arena_resize(void *base, size_t oldSize, size_t newSize);
/// Gives back the pages of [keep, size) (page-aligned `keep`); they read as zeros afterwards.
void hndd_arena_release(void *base, size_t keep, size_t size);
void hndd_arena_free(void *base, size_t size);

#endif
