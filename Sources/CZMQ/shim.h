#ifndef HNDD_CZMQ_SHIM_H
#define HNDD_CZMQ_SHIM_H
#include <zmq.h>
#endif
