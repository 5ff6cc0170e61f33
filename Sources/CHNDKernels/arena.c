#define _GNU_SOURCE
#include "hndd_kernels.h"

#include <stdlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

void *hndd_arena_resize(void *base, size_t oldSize, size_t newSize) {
#if defined(__linux__)
    void *mapped = base ? mremap(base, oldSize, newSize, MREMAP_MAYMOVE)
                        : mmap(NULL, newSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return mapped == MAP_FAILED ? NULL : mapped;
#else
    (void)oldSize;
    return realloc(base, newSize);
#endif
}

void hndd_arena_release(void *base, size_t keep, size_t size) {
#if defined(__linux__)
    if (size > keep) madvise((char *)base + keep, size - keep, MADV_DONTNEED);
#else
    (void)base; (void)keep; (void)size;
#endif
}

void hndd_arena_free(void *base, size_t size) {
    if (!base) return;
#if defined(__linux__)
    munmap(base, size);
#else
    (void)size;
    free(base);
#endif
}
