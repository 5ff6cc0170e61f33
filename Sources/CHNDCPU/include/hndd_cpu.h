#ifndef HNDD_CPU_H
#define HNDD_CPU_H

#include <stdint.h>

/// Which vector instructions this process's native code uses, decided once when the library
/// loads, and the vector conversions of half-precision floats that follow that decision.
///
/// Written in C because Swift cannot select instructions per function (its SIMD types compile to
/// the baseline x86-64, SSE2). Each vector path is compiled for its instructions only and called
/// only on a CPU that has them.

/// The vector paths, fastest first.
typedef enum {
    HNDD_PATH_PORTABLE = 0, ///< plain C and Swift
    HNDD_PATH_AVX2 = 1,     ///< AVX2 with F16C, POPCNT and BMI1; never FMA (see the kernels)
    HNDD_PATH_AVX512 = 2,   ///< AVX-512 F and BW
} hndd_path;

/// The path this process runs: AVX-512 where the CPU has it, else AVX2 where it has AVX2 and
/// F16C, else portable. HNDD_NO_AVX512 (set to anything) rules out AVX-512, HNDD_PORTABLE (set to
/// anything) every vector path. Decided when the library loads; the same all along.
hndd_path hndd_vector_path(void);

/// "avx512", "avx2" or "portable": `hndd_vector_path()` for logs.
const char *hndd_vector_path_name(void);

/// 1 when this CPU can run `path`'s code, whatever the environment says (tests call each vector
/// path directly against its portable twin); else 0. The portable path always runs.
int hndd_cpu_supports(hndd_path path);

/// Converts `count` little-endian IEEE binary16 values at `source` (any alignment) into floats at
/// `destination`, exactly, with the bits of the engine's portable conversion (Swift's
/// `TensorConversion.float(fromHalfBits:)`): subnormals exact, a NaN keeps its sign and payload
/// and stays signalling or quiet as it was (F16C's conversion would quiet it). Returns 1; 0 when
/// the path is portable, having converted nothing (the caller converts).
int hndd_decode_float16(const void *source, int64_t count, float *destination);

/// The same for bfloat16 (the upper 16 bits of a float, every bit kept).
int hndd_decode_bfloat16(const void *source, int64_t count, float *destination);

/// Writes `count` floats at `source` as binary16 values to `destination` (2-byte aligned) and
/// returns 1 when every one of them is a half exactly (finite, or an infinity; the halves are
/// then exactly the values); returns 0 when one is not, or when the path is portable, and what
/// `destination` then holds means nothing. For stores that keep values as halves only while
/// that loses nothing (the engine's candidate maps, when a layer's messages are float16).
int hndd_encode_float16_exact(const float *source, int64_t count, uint16_t *destination);

/// Each vector path's conversions, for tests (call only where `hndd_cpu_supports` says so).
int hndd_encode_float16_exact_avx2(const float *source, int64_t count, uint16_t *destination);
int hndd_encode_float16_exact_avx512(const float *source, int64_t count, uint16_t *destination);
void hndd_decode_float16_avx2(const void *source, int64_t count, float *destination);
void hndd_decode_float16_avx512(const void *source, int64_t count, float *destination);
void hndd_decode_bfloat16_avx2(const void *source, int64_t count, float *destination);
void hndd_decode_bfloat16_avx512(const void *source, int64_t count, float *destination);

#endif
