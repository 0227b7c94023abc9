/* cim_sha256_x86.c - SHA-256 block function on the x86 SHA extensions (SHA-NI).
 *
 * Dedup hashes every byte written, and the portable block function runs at
 * about 300 MB/s, slower than a disk; SHA-NI does about 2 GB/s.  Compiled
 * only where the compiler can target these instructions (GCC/Clang with a
 * target attribute, MSVC on x64); used only when CPUID reports them, and
 * never when CIMFS_SHA256=portable is set (how the tests drive both paths).
 */
#include "cim_sha256.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define CIM_SHA_NI 1
#define CIM_SHA_TARGET __attribute__((target("sha,sse4.1,ssse3")))
static int cpu_has_sha_ni(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 9)) || !(c & (1u << 19))) return 0; /* SSSE3, SSE4.1 */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 29) & 1;                                                                    /* SHA */
}
#elif defined(_MSC_VER) && defined(_M_X64)
#include <intrin.h>
#define CIM_SHA_NI 1
#define CIM_SHA_TARGET
static int cpu_has_sha_ni(void)
{
    int r[4];
    __cpuid(r, 1);
    if (!(r[2] & (1 << 9)) || !(r[2] & (1 << 19))) return 0;
    __cpuidex(r, 7, 0);
    return (r[1] >> 29) & 1;
}
#endif

#ifdef CIM_SHA_NI
#include <stdlib.h>
#include <string.h>

int cim_sha256_x86_available(void)
{
    const char *force = getenv("CIMFS_SHA256");
    if (force && strcmp(force, "portable") == 0) return 0;
    return cpu_has_sha_ni();
}

/* Message words t..t+3 of group k >= 4 from the previous four groups:
 * w[t] = s1(w[t-2]) + w[t-7] + s0(w[t-15]) + w[t-16]. */
#define SCHEDULE(w4, w3, w2, w1) \
    _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32((w4), (w3)), _mm_alignr_epi8((w1), (w2), 4)), (w1))

CIM_SHA_TARGET void cim_sha256_x86_blocks(uint32_t state[8], const uint8_t *p, size_t blocks)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i tmp = _mm_loadu_si128((const __m128i *)&state[0]);
    __m128i s1 = _mm_loadu_si128((const __m128i *)&state[4]);
    __m128i s0;
    tmp = _mm_shuffle_epi32(tmp, 0xB1);   /* CDAB */
    s1 = _mm_shuffle_epi32(s1, 0x1B);     /* EFGH */
    s0 = _mm_alignr_epi8(tmp, s1, 8);     /* ABEF */
    s1 = _mm_blend_epi16(s1, tmp, 0xF0);  /* CDGH */
    while (blocks--) {
        __m128i save0 = s0, save1 = s1, w[4], msg;
        int k;
        for (k = 0; k < 16; k++) {
            if (k < 4)
                w[k] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * k)), bswap);
            else
                w[k & 3] = SCHEDULE(w[k & 3], w[(k + 1) & 3], w[(k + 2) & 3], w[(k + 3) & 3]);
            msg = _mm_add_epi32(w[k & 3], _mm_loadu_si128((const __m128i *)&cim_sha256_k[4 * k]));
            s1 = _mm_sha256rnds2_epu32(s1, s0, msg);
            s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(msg, 0x0E));
        }
        s0 = _mm_add_epi32(s0, save0);
        s1 = _mm_add_epi32(s1, save1);
        p += 64;
    }
    tmp = _mm_shuffle_epi32(s0, 0x1B);    /* FEBA */
    s1 = _mm_shuffle_epi32(s1, 0xB1);     /* DCHG */
    s0 = _mm_blend_epi16(tmp, s1, 0xF0);  /* DCBA */
    s1 = _mm_alignr_epi8(s1, tmp, 8);     /* HGFE */
    _mm_storeu_si128((__m128i *)&state[0], s0);
    _mm_storeu_si128((__m128i *)&state[4], s1);
}
#else
int cim_sha256_x86_available(void) { return 0; }
void cim_sha256_x86_blocks(uint32_t state[8], const uint8_t *p, size_t blocks)
{
    (void)state; (void)p; (void)blocks;
}
#endif
