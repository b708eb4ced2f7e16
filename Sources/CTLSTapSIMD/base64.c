// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Base64 encoding with AVX2, after Wojciech Muła and Daniel Lemire, "Faster
 * Base64 Encoding and Decoding Using AVX2 Instructions" (ACM TOW, 2018):
 * 24 input bytes per round become 32 characters. Each 32-bit lane gets 3
 * input bytes as [b1 b0 b2 b1]; two multiplies move the four 6-bit fields
 * into their own bytes; a 16-entry table turns each field into its letter
 * by adding the offset of its range (A-Z, a-z, 0-9, +, /).
 */
#include "tlstap_simd.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

__attribute__((target("xsave"))) static int detect_avx2(void)
{
	unsigned int eax, ebx, ecx, edx;

	if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE) || !(ecx & bit_AVX))
		return 0;
	/* The OS saves the YMM registers: XCR0 bits 1 (SSE) and 2 (AVX). */
	if ((_xgetbv(0) & 0x6) != 0x6)
		return 0;
	if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx))
		return 0;
	return (ebx & bit_AVX2) != 0;
}

/* cpuid traps to the hypervisor on a VM: asked once, at load. */
static int avx2_supported;

__attribute__((constructor)) static void probe_cpu(void)
{
	avx2_supported = detect_avx2();
}

int tlstap_simd_avx2(void)
{
	return avx2_supported;
}

__attribute__((target("avx2"))) static size_t encode_avx2(const uint8_t *src, size_t len, uint8_t *dst)
{
	/* Per 128-bit lane: 12 input bytes into four lanes of [b1 b0 b2 b1]. */
	const __m256i spread = _mm256_setr_epi8(1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10,
						1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10);
	/* Offset to add to a 6-bit value, by range: A-Z, a-z, 0-9 (ten entries), '+', '/'. */
	const __m256i offsets = _mm256_setr_epi8(65, 71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 0, 0,
						 65, 71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 0, 0);
	size_t done = 0;

	/* A round reads 28 bytes (16 at 0 and 16 at 12) and encodes the first 24. */
	while (len - done >= 28) {
		__m128i low = _mm_loadu_si128((const __m128i *)(src + done));
		__m128i high = _mm_loadu_si128((const __m128i *)(src + done + 12));
		__m256i in = _mm256_shuffle_epi8(_mm256_inserti128_si256(_mm256_castsi128_si256(low), high, 1), spread);
		/* Fields 0 and 2 by a high multiply, 1 and 3 by a low one. */
		__m256i first = _mm256_mulhi_epu16(_mm256_and_si256(in, _mm256_set1_epi32(0x0fc0fc00)),
						   _mm256_set1_epi32(0x04000040));
		__m256i second = _mm256_mullo_epi16(_mm256_and_si256(in, _mm256_set1_epi32(0x003f03f0)),
						    _mm256_set1_epi32(0x01000010));
		__m256i values = _mm256_or_si256(first, second);
		/* 0 for 0-25, 1 for 26-51, 2-11 for 52-61, 12 for 62, 13 for 63. */
		__m256i range = _mm256_sub_epi8(_mm256_subs_epu8(values, _mm256_set1_epi8(51)),
						_mm256_cmpgt_epi8(values, _mm256_set1_epi8(25)));
		__m256i text = _mm256_add_epi8(values, _mm256_shuffle_epi8(offsets, range));

		_mm256_storeu_si256((__m256i *)(dst + done / 3 * 4), text);
		done += 24;
	}
	return done;
}

size_t tlstap_base64_encode_blocks(const uint8_t *src, size_t len, uint8_t *dst)
{
	return avx2_supported ? encode_avx2(src, len, dst) : 0;
}

#else

int tlstap_simd_avx2(void)
{
	return 0;
}

size_t tlstap_base64_encode_blocks(const uint8_t *src, size_t len, uint8_t *dst)
{
	(void)src;
	(void)len;
	(void)dst;
	return 0;
}

#endif
