/* Debian's libbpf (libbpf-dev), as a Swift module. */
#ifndef CLIBBPF_SHIM_H
#define CLIBBPF_SHIM_H
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#endif
