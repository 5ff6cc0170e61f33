#ifndef HNDD_CZMQ_SHIM_H
#define HNDD_CZMQ_SHIM_H
#include <zmq.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

/// libzmq allocates each received message with malloc. Messages of tens of megabytes are above
/// glibc's mmap threshold: each would be a fresh mapping whose pages fault in (zeroed) and are
/// unmapped on free. Raising the threshold to its maximum (32 MiB), and trimming the heap only
/// past 64 MiB of free space at its top, lets such buffers reuse the same pages message after
/// message while a daemon that finished a large pass still gives memory back. No-op elsewhere.
static inline void hndd_keep_large_allocations_in_heap(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
#endif
}

/// The heap's bytes in use by allocations, free but kept, and in separate mappings (glibc's
/// `mallinfo2`, which walks every arena's free lists: for logs, not hot paths). Zeros elsewhere.
static inline void hndd_heap_figures(size_t *inUse, size_t *kept, size_t *mapped) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 info = mallinfo2();
    *inUse = info.uordblks + info.hblkhd;
    *kept = info.fordblks;
    *mapped = info.hblkhd;
#else
    *inUse = 0; *kept = 0; *mapped = 0;
#endif
}

/// Returns free heap pages to the system in every arena (`malloc_trim`); 1 if any was released.
static inline int hndd_heap_trim(void) {
#if defined(__GLIBC__)
    return malloc_trim(0);
#else
    return 0;
#endif
}
#endif
