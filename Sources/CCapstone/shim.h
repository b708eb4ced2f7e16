/* Debian's capstone disassembler (libcapstone-dev), to find RET instructions in Go functions. */
#ifndef CCAPSTONE_SHIM_H
#define CCAPSTONE_SHIM_H
#include <capstone/capstone.h>
#endif
