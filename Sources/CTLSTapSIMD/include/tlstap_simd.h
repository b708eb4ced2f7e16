/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Vector kernels for tlstap's hottest loops, each with a portable fallback
 * in Swift. Only what profiles showed: base64 of captured payloads was half
 * of tlstap's CPU time with 64 KiB responses.
 */
#ifndef TLSTAP_SIMD_H
#define TLSTAP_SIMD_H

#include <stddef.h>
#include <stdint.h>

/* Whether this CPU runs the AVX2 kernels (x86-64 with AVX2 and OS support for its registers). */
int tlstap_simd_avx2(void);

/*
 * Encodes a prefix of `src` as standard base64 into `dst`: whole 24-byte
 * blocks, as many as can be read without passing the end of `src`.
 * Returns the input bytes encoded (a multiple of 3; 0 without AVX2); the
 * output is 4/3 of that. The caller encodes the rest, which continues the
 * same base64 text.
 */
size_t tlstap_base64_encode_blocks(const uint8_t *src, size_t len, uint8_t *dst);

#endif /* TLSTAP_SIMD_H */
