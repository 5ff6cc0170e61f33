#ifndef HNDD_COPENBLAS_SHIM_H
#define HNDD_COPENBLAS_SHIM_H
#include <cblas.h>
/* The engine parallelises across units itself: OpenBLAS must not spawn threads of its own. */
static inline void copenblas_single_threaded(void) { openblas_set_num_threads(1); }
#endif
