#include "hndd_cpu.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

// Half-precision floats to float32 in vector registers. F16C's (and AVX-512's) conversion is
// exact for every finite half and for infinities; for a NaN it sets the quiet bit, where the
// engine's portable conversion keeps the bits as they are. Blocks holding a half whose exponent is
// all ones (rare: the engine refuses non-finite batches anyway) get those lanes rebuilt from the
// half's bits: sign, all-ones exponent, the 10-bit payload moved up by 13 — exactly what the
// portable conversion gives a NaN and an infinity. The test is on the halves' bits, not on the
// floats: clang turns a NaN test of converted floats into a scalar loop over the lanes (ten times
// slower, measured).
//
// The other way, floats to halves, is only ever asked where nothing is lost: the conversion
// rounds, converts back and compares bits, and reports whether every value came back the same.

int hndd_decode_float16(const void *source, int64_t count, float *destination) {
    switch (hndd_vector_path()) {
    case HNDD_PATH_AVX512: hndd_decode_float16_avx512(source, count, destination); return 1;
    case HNDD_PATH_AVX2: hndd_decode_float16_avx2(source, count, destination); return 1;
    case HNDD_PATH_PORTABLE: return 0;
    }
    return 0;
}

int hndd_encode_float16_exact(const float *source, int64_t count, uint16_t *destination) {
    switch (hndd_vector_path()) {
    case HNDD_PATH_AVX512: return hndd_encode_float16_exact_avx512(source, count, destination);
    case HNDD_PATH_AVX2: return hndd_encode_float16_exact_avx2(source, count, destination);
    case HNDD_PATH_PORTABLE: return 0;
    }
    return 0;
}

int hndd_decode_bfloat16(const void *source, int64_t count, float *destination) {
    switch (hndd_vector_path()) {
    case HNDD_PATH_AVX512: hndd_decode_bfloat16_avx512(source, count, destination); return 1;
    case HNDD_PATH_AVX2: hndd_decode_bfloat16_avx2(source, count, destination); return 1;
    case HNDD_PATH_PORTABLE: return 0;
    }
    return 0;
}

#if defined(__x86_64__)

#define HNDD_AVX2 __attribute__((target("avx2,f16c")))
#define HNDD_AVX512 __attribute__((target("avx512f,avx512bw")))

/// Eight halves to floats.
HNDD_AVX2 static inline __m256 half8(__m128i half) {
    const __m256 f = _mm256_cvtph_ps(half);
    const __m128i top = _mm_set1_epi16(0x7C00);
    const __m128i special = _mm_cmpeq_epi16(_mm_and_si128(half, top), top);
    if (__builtin_expect(_mm_movemask_epi8(special) == 0, 1)) return f;
    const __m256i bits = _mm256_cvtepu16_epi32(half);
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x8000)), 16);
    const __m256i payload = _mm256_slli_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x3FF)), 13);
    const __m256i exact = _mm256_or_si256(_mm256_or_si256(sign, payload), _mm256_set1_epi32(0x7F800000));
    return _mm256_blendv_ps(f, _mm256_castsi256_ps(exact), _mm256_castsi256_ps(_mm256_cvtepi16_epi32(special)));
}

HNDD_AVX2 void hndd_decode_float16_avx2(const void *source, int64_t count, float *destination) {
    const uint8_t *in = source;
    int64_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(destination + i, half8(_mm_loadu_si128((const __m128i *)(in + 2 * i))));
    if (i < count) { // the last few, through a padded copy: no read or write past either end
        uint16_t halves[8] = {0};
        float floats[8];
        memcpy(halves, in + 2 * i, (size_t)(count - i) * 2);
        _mm256_storeu_ps(floats, half8(_mm_loadu_si128((const __m128i *)halves)));
        memcpy(destination + i, floats, (size_t)(count - i) * sizeof(float));
    }
}

HNDD_AVX2 void hndd_decode_bfloat16_avx2(const void *source, int64_t count, float *destination) {
    const uint8_t *in = source;
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) {
        const __m256i bits = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(in + 2 * i)));
        _mm256_storeu_si256((__m256i *)(destination + i), _mm256_slli_epi32(bits, 16));
    }
    for (; i < count; i++) {
        uint16_t half;
        memcpy(&half, in + 2 * i, 2);
        const uint32_t bits = (uint32_t)half << 16;
        memcpy(destination + i, &bits, 4);
    }
}

/// Eight floats to halves (nearest); `*exact` cleared when one of them is not a half exactly:
/// converted back, its bits differ (an infinity converts back to itself).
HNDD_AVX2 static inline __m128i exact_half8(__m256 v, int *exact) {
    const __m128i half = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256i back = _mm256_castps_si256(_mm256_cvtph_ps(half));
    if (_mm256_movemask_epi8(_mm256_cmpeq_epi32(back, _mm256_castps_si256(v))) != -1) *exact = 0;
    return half;
}

HNDD_AVX2 int hndd_encode_float16_exact_avx2(const float *source, int64_t count, uint16_t *destination) {
    int exact = 1;
    int64_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm_storeu_si128((__m128i *)(destination + i), exact_half8(_mm256_loadu_ps(source + i), &exact));
    if (i < count) { // the last few, through padded copies (the padding is 1.0, a half)
        float floats[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        uint16_t halves[8];
        memcpy(floats, source + i, (size_t)(count - i) * sizeof(float));
        _mm_storeu_si128((__m128i *)halves, exact_half8(_mm256_loadu_ps(floats), &exact));
        memcpy(destination + i, halves, (size_t)(count - i) * 2);
    }
    return exact;
}

/// Sixteen halves to floats.
HNDD_AVX512 static inline __m512 half16(__m256i half) {
    const __m512 f = _mm512_cvtph_ps(half);
    const __m512i top = _mm512_set1_epi16(0x7C00);
    const __mmask32 special = _mm512_cmpeq_epi16_mask(_mm512_and_si512(_mm512_zextsi256_si512(half), top), top);
    if (__builtin_expect(special == 0, 1)) return f;
    const __m512i bits = _mm512_cvtepu16_epi32(half);
    const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(bits, _mm512_set1_epi32(0x8000)), 16);
    const __m512i payload = _mm512_slli_epi32(_mm512_and_si512(bits, _mm512_set1_epi32(0x3FF)), 13);
    const __m512i exact = _mm512_or_si512(_mm512_or_si512(sign, payload), _mm512_set1_epi32(0x7F800000));
    return _mm512_mask_mov_ps(f, (__mmask16)special, _mm512_castsi512_ps(exact));
}

/// The halves of the last block (`count` < 16 of them), the other lanes zero, read under a mask.
/// (Whole blocks take plain loads and stores: masked ones cost about twice as much on Zen 5.)
HNDD_AVX512 static inline __m256i last_halves(const uint8_t *in, int64_t count) {
    return _mm512_castsi512_si256(_mm512_maskz_loadu_epi16((__mmask32)((1u << count) - 1), in));
}

HNDD_AVX512 void hndd_decode_float16_avx512(const void *source, int64_t count, float *destination) {
    const uint8_t *in = source;
    int64_t i = 0;
    for (; i + 16 <= count; i += 16)
        _mm512_storeu_ps(destination + i, half16(_mm256_loadu_si256((const __m256i *)(in + 2 * i))));
    if (i < count)
        _mm512_mask_storeu_ps(destination + i, (__mmask16)((1u << (count - i)) - 1), half16(last_halves(in + 2 * i, count - i)));
}

/// Sixteen floats to halves, as `exact_half8`.
HNDD_AVX512 static inline __m256i exact_half16(__m512 v, int *exact) {
    const __m256i half = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512i back = _mm512_castps_si512(_mm512_cvtph_ps(half));
    if (_mm512_cmpneq_epi32_mask(back, _mm512_castps_si512(v))) *exact = 0;
    return half;
}

HNDD_AVX512 int hndd_encode_float16_exact_avx512(const float *source, int64_t count, uint16_t *destination) {
    int exact = 1;
    int64_t i = 0;
    for (; i + 16 <= count; i += 16)
        _mm256_storeu_si256((__m256i *)(destination + i), exact_half16(_mm512_loadu_ps(source + i), &exact));
    if (i < count) { // the last few: read under a mask (the other lanes 1.0, a half), stored through a copy
        const __mmask16 valid = (__mmask16)((1u << (count - i)) - 1);
        uint16_t halves[16];
        _mm256_storeu_si256((__m256i *)halves, exact_half16(_mm512_mask_loadu_ps(_mm512_set1_ps(1), valid, source + i), &exact));
        memcpy(destination + i, halves, (size_t)(count - i) * 2);
    }
    return exact;
}

HNDD_AVX512 void hndd_decode_bfloat16_avx512(const void *source, int64_t count, float *destination) {
    const uint8_t *in = source;
    int64_t i = 0;
    for (; i + 16 <= count; i += 16) {
        const __m256i half = _mm256_loadu_si256((const __m256i *)(in + 2 * i));
        _mm512_storeu_si512(destination + i, _mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
    }
    if (i < count)
        _mm512_mask_storeu_epi32(destination + i, (__mmask16)((1u << (count - i)) - 1),
                                 _mm512_slli_epi32(_mm512_cvtepu16_epi32(last_halves(in + 2 * i, count - i)), 16));
}

#else

// Never called off x86-64: hndd_vector_path() is then portable.
int hndd_encode_float16_exact_avx2(const float *s, int64_t c, uint16_t *d) { (void)s; (void)c; (void)d; abort(); }
int hndd_encode_float16_exact_avx512(const float *s, int64_t c, uint16_t *d) { (void)s; (void)c; (void)d; abort(); }
void hndd_decode_float16_avx2(const void *s, int64_t c, float *d) { (void)s; (void)c; (void)d; abort(); }
void hndd_decode_float16_avx512(const void *s, int64_t c, float *d) { (void)s; (void)c; (void)d; abort(); }
void hndd_decode_bfloat16_avx2(const void *s, int64_t c, float *d) { (void)s; (void)c; (void)d; abort(); }
void hndd_decode_bfloat16_avx512(const void *s, int64_t c, float *d) { (void)s; (void)c; (void)d; abort(); }

#endif
