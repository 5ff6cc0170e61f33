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
#endif
