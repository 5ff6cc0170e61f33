#ifndef HNDD_CZLIB_SHIM_H
#define HNDD_CZLIB_SHIM_H
#include <zlib.h>
#endif
