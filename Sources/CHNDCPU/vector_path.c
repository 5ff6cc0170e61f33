#include "hndd_cpu.h"

#include <stdlib.h>

/// The decision, made by the first call (at load, by the constructor below, before any thread
/// exists) and never changed after.
static hndd_path chosen;
static int decided;

int hndd_cpu_supports(hndd_path path) {
#if defined(__x86_64__)
    __builtin_cpu_init(); // may run before the runtime's own initialiser (in a constructor)
    switch (path) {
    case HNDD_PATH_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    case HNDD_PATH_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")
            && __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("bmi");
    case HNDD_PATH_PORTABLE:
        return 1;
    }
    return 0;
#else
    return path == HNDD_PATH_PORTABLE;
#endif
}

static hndd_path decide(void) {
    if (getenv("HNDD_PORTABLE")) return HNDD_PATH_PORTABLE;
    if (!getenv("HNDD_NO_AVX512") && hndd_cpu_supports(HNDD_PATH_AVX512)) return HNDD_PATH_AVX512;
    if (hndd_cpu_supports(HNDD_PATH_AVX2)) return HNDD_PATH_AVX2;
    return HNDD_PATH_PORTABLE;
}

hndd_path hndd_vector_path(void) {
    if (!decided) {
        chosen = decide();
        decided = 1;
    }
    return chosen;
}

__attribute__((constructor)) static void decideAtLoad(void) { (void)hndd_vector_path(); }

const char *hndd_vector_path_name(void) {
    switch (hndd_vector_path()) {
    case HNDD_PATH_AVX512: return "avx512";
    case HNDD_PATH_AVX2: return "avx2";
    case HNDD_PATH_PORTABLE: return "portable";
    }
    return "portable";
}
