/* cim_sha512.c - SHA-512 (FIPS 180-4): a portable compression function and,
 * on x86-64, an AVX2 + BMI2 one picked at run time.
 *
 * The AVX2 path follows Intel's "Fast SHA-512 Implementations on Intel
 * Architecture Processors" (Gulley et al., 2012) and OpenSSL's sha512-x86_64
 * AVX2 code: the message schedule of two blocks is computed in the two
 * 128-bit lanes of ymm registers (a lane holds W[t], W[t+1] of one block; no
 * word of a pair depends on the other, so two words per lane is exact), W+K
 * goes to a small stack array, and the rounds stay scalar, where BMI2 rorx
 * gives the six rotates of a round without register copies.  The schedule
 * of both blocks is interleaved with the rounds of the first block, so the
 * vector units work while the integer ALUs do rounds; the second block's
 * rounds then only read W+K back.
 *
 * With AVX-512 (F and BW) there is a third path, for many messages at once:
 * cim_sha512_blocks_lanes() runs the blocks of eight independent messages
 * side by side, one message per 64-bit lane of zmm registers, where vprorq
 * and vpternlogq make each round's rotates and logic one instruction each.
 * An instruction does the work of eight scalar ones, so eight messages
 * hash about three times as fast as one after another (2.0-2.4 GB/s
 * against 0.8 here, benchmarks/bench_sha512.py); cim_objid.c feeds it.
 *
 * CIMFS_SHA512=portable or =avx2 in the environment forces that path (and
 * one message at a time), so the tests can cover every path on one
 * machine. */
#include "cim_sha512.h"

#include <stdlib.h>
#include <string.h>

/* ---- which paths exist in this build ---------------------------------- */
/* clang-cl's <immintrin.h> (clang < 18 at least) declares the AVX2
 * intrinsics only when compiling for AVX2: portable there otherwise. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && (!defined(_MSC_VER) || defined(__AVX2__))
#define CIM_SHA512_X86 1
#define CIM_TARGET_AVX2 __attribute__((target("avx2,bmi2")))
#elif defined(_MSC_VER) && !defined(__clang__) && defined(_M_X64) && !defined(_M_ARM64EC)
/* MSVC compiles AVX2 intrinsics anywhere; it needs no target attribute. */
#define CIM_SHA512_X86 1
#define CIM_TARGET_AVX2
#endif

/* The eight-lane path, likewise; clang-cl again only when compiling for it. */
#if defined(CIM_SHA512_X86) && !defined(_MSC_VER)
#define CIM_SHA512_LANES8 1
#define CIM_TARGET_AVX512 __attribute__((target("avx512f,avx512bw")))
#elif defined(CIM_SHA512_X86) && (!defined(__clang__) || (defined(__AVX512F__) && defined(__AVX512BW__)))
#define CIM_SHA512_LANES8 1
#define CIM_TARGET_AVX512
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CIM_ALIGN32_PRE
#define CIM_ALIGN32_POST __attribute__((aligned(32)))
#elif defined(_MSC_VER)
#define CIM_ALIGN32_PRE __declspec(align(32))
#define CIM_ALIGN32_POST
#else
#define CIM_ALIGN32_PRE
#define CIM_ALIGN32_POST
#endif

#if defined(CIM_SHA512_X86)
#include <immintrin.h>
#if defined(_MSC_VER)
#include <intrin.h>
#endif
#endif

enum { IMPL_UNKNOWN, IMPL_PORTABLE, IMPL_AVX2, IMPL_AVX512 };

/* The round constants K[t], each pair twice (K[2m], K[2m+1], K[2m], K[2m+1])
 * so that the two-block AVX2 code adds them with one 32-byte load; K[t] is
 * K2(t). */
#define KP(x, y) x, y, x, y
static CIM_ALIGN32_PRE const uint64_t K4[160] CIM_ALIGN32_POST = {
    KP(0x428a2f98d728ae22ULL, 0x7137449123ef65cdULL), KP(0xb5c0fbcfec4d3b2fULL, 0xe9b5dba58189dbbcULL),
    KP(0x3956c25bf348b538ULL, 0x59f111f1b605d019ULL), KP(0x923f82a4af194f9bULL, 0xab1c5ed5da6d8118ULL),
    KP(0xd807aa98a3030242ULL, 0x12835b0145706fbeULL), KP(0x243185be4ee4b28cULL, 0x550c7dc3d5ffb4e2ULL),
    KP(0x72be5d74f27b896fULL, 0x80deb1fe3b1696b1ULL), KP(0x9bdc06a725c71235ULL, 0xc19bf174cf692694ULL),
    KP(0xe49b69c19ef14ad2ULL, 0xefbe4786384f25e3ULL), KP(0x0fc19dc68b8cd5b5ULL, 0x240ca1cc77ac9c65ULL),
    KP(0x2de92c6f592b0275ULL, 0x4a7484aa6ea6e483ULL), KP(0x5cb0a9dcbd41fbd4ULL, 0x76f988da831153b5ULL),
    KP(0x983e5152ee66dfabULL, 0xa831c66d2db43210ULL), KP(0xb00327c898fb213fULL, 0xbf597fc7beef0ee4ULL),
    KP(0xc6e00bf33da88fc2ULL, 0xd5a79147930aa725ULL), KP(0x06ca6351e003826fULL, 0x142929670a0e6e70ULL),
    KP(0x27b70a8546d22ffcULL, 0x2e1b21385c26c926ULL), KP(0x4d2c6dfc5ac42aedULL, 0x53380d139d95b3dfULL),
    KP(0x650a73548baf63deULL, 0x766a0abb3c77b2a8ULL), KP(0x81c2c92e47edaee6ULL, 0x92722c851482353bULL),
    KP(0xa2bfe8a14cf10364ULL, 0xa81a664bbc423001ULL), KP(0xc24b8b70d0f89791ULL, 0xc76c51a30654be30ULL),
    KP(0xd192e819d6ef5218ULL, 0xd69906245565a910ULL), KP(0xf40e35855771202aULL, 0x106aa07032bbd1b8ULL),
    KP(0x19a4c116b8d2d0c8ULL, 0x1e376c085141ab53ULL), KP(0x2748774cdf8eeb99ULL, 0x34b0bcb5e19b48a8ULL),
    KP(0x391c0cb3c5c95a63ULL, 0x4ed8aa4ae3418acbULL), KP(0x5b9cca4f7763e373ULL, 0x682e6ff3d6b2b8a3ULL),
    KP(0x748f82ee5defb2fcULL, 0x78a5636f43172f60ULL), KP(0x84c87814a1f0ab72ULL, 0x8cc702081a6439ecULL),
    KP(0x90befffa23631e28ULL, 0xa4506cebde82bde9ULL), KP(0xbef9a3f7b2c67915ULL, 0xc67178f2e372532bULL),
    KP(0xca273eceea26619cULL, 0xd186b8c721c0c207ULL), KP(0xeada7dd6cde0eb1eULL, 0xf57d4f7fee6ed178ULL),
    KP(0x06f067aa72176fbaULL, 0x0a637dc5a2c898a6ULL), KP(0x113f9804bef90daeULL, 0x1b710b35131c471bULL),
    KP(0x28db77f523047d84ULL, 0x32caab7b40c72493ULL), KP(0x3c9ebe0a15c9bebcULL, 0x431d67c49c100d4cULL),
    KP(0x4cc5d4becb3e42b6ULL, 0x597f299cfc657e2aULL), KP(0x5fcb6fab3ad6faecULL, 0x6c44198c4a475817ULL),
};
#define K2(t) K4[4 * ((t) >> 1) + ((t) & 1)]

/* Compilers turn this into one rotate (rorx where BMI2 is enabled). */
#if defined(_MSC_VER) && !defined(__clang__)
#define ROR(x, n) _rotr64((x), (n))
#else
#define ROR(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
#endif
#define S0(x) (ROR(x, 28) ^ ROR(x, 34) ^ ROR(x, 39))
#define S1(x) (ROR(x, 14) ^ ROR(x, 18) ^ ROR(x, 41))
#define G0(x) (ROR(x, 1) ^ ROR(x, 8) ^ ((x) >> 7))
#define G1(x) (ROR(x, 19) ^ ROR(x, 61) ^ ((x) >> 6))
#define CH(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
/* Written so that b ^ c is the previous round's a ^ b: compilers reuse it. */
#define MAJ(x, y, z) ((y) ^ (((x) ^ (y)) & ((y) ^ (z))))

/* One round with the working variables passed in rotated order, so the
 * eight-way shuffle of the textbook loop costs no moves.  h + W + K does not
 * wait for e, which keeps it off the critical path. */
#define ROUND(a, b, c, d, e, f, g, h, wk)              \
    do {                                               \
        uint64_t t1 = h + (wk) + CH(e, f, g) + S1(e);  \
        d += t1;                                       \
        h = t1 + S0(a) + MAJ(a, b, c);                 \
    } while (0)

/* Eight rounds of round macro R (ROUND here, ZROUND for eight lanes). */
#define ROUNDS8_OF(R, wk, i)                           \
    do {                                               \
        R(a, b, c, d, e, f, g, h, wk(i + 0));          \
        R(h, a, b, c, d, e, f, g, wk(i + 1));          \
        R(g, h, a, b, c, d, e, f, wk(i + 2));          \
        R(f, g, h, a, b, c, d, e, wk(i + 3));          \
        R(e, f, g, h, a, b, c, d, wk(i + 4));          \
        R(d, e, f, g, h, a, b, c, wk(i + 5));          \
        R(c, d, e, f, g, h, a, b, wk(i + 6));          \
        R(b, c, d, e, f, g, h, a, wk(i + 7));          \
    } while (0)
#define ROUNDS8(wk, i) ROUNDS8_OF(ROUND, wk, i)

/* All 80 rounds of a block, sixteen at a time, with R8 an eight-round
 * macro: wk0 gives W+K of rounds 0-15 (message words as loaded), wk those
 * after (the schedule extended in place); kp points at K2 of the sixteen. */
#define ROUNDS80(R8, wk0, wk)                          \
    do {                                               \
        R8(wk0, 0);                                    \
        R8(wk0, 8);                                    \
        for (i = 16; i < 80; i += 16) {                \
            kp = &K2(i);                               \
            R8(wk, 0);                                 \
            R8(wk, 8);                                 \
        }                                              \
    } while (0)

/* ---- portable path ------------------------------------------------------ */

static uint64_t get_be64(const uint8_t *p)
{
    return (uint64_t)p[0] << 56 | (uint64_t)p[1] << 48 | (uint64_t)p[2] << 40 | (uint64_t)p[3] << 32 |
           (uint64_t)p[4] << 24 | (uint64_t)p[5] << 16 | (uint64_t)p[6] << 8 | (uint64_t)p[7];
}

/* The schedule is extended in place: w[j & 15] holds w[j - 16] until then.
 * j is a constant in 0..15 after unrolling and kp points at K2 of round 0
 * of the sixteen, so every index is a constant. */
#define PW(j) (w[(j) & 15] += G1(w[((j) + 14) & 15]) + w[((j) + 9) & 15] + G0(w[((j) + 1) & 15]))
#define PK(j) kp[4 * ((j) >> 1) + ((j) & 1)]
#define PWK0(j) (PK(j) + w[j])
#define PWK(j) (PK(j) + PW(j))

/* Sixteen rounds unrolled (each w[] and K offset a constant, none computed):
 * about 1.3x the eight-round loop this replaced (gcc -O3, x86-64). */
static void blocks_portable(uint64_t s[8], const uint8_t *p, size_t n)
{
    for (; n; n--, p += 128) {
        uint64_t w[16], a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
        const uint64_t *kp = K4;
        int i;
        for (i = 0; i < 16; i++) w[i] = get_be64(p + 8 * i);
        ROUNDS80(ROUNDS8, PWK0, PWK);
        s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
    }
}

/* ---- x86-64: AVX2 schedule, rorx rounds --------------------------------- */
#if defined(CIM_SHA512_X86)

/* wk[] holds W[t] + K[t] of two blocks, pair by pair as the ymm lanes give
 * them: W+K of rounds 2m, 2m+1 of block j (0 or 1) is at wk[4m + 2j], the
 * layout of K4.  wa points at round 0 of the current sixteen. */
#define WK_A(t) wa[4 * ((t) >> 1) + ((t) & 1)]
#define WK_B(t) wa[4 * ((t) >> 1) + 2 + ((t) & 1)]

/* AVX2 has no 64-bit vector rotate: two shifts and an or.  (AVX-512VL's
 * vprorq was tried as a separate path: the schedule is ~5% of the time,
 * and it gained 1-2%, not worth a third path to test.) */
#define VROR(x, n) _mm256_or_si256(_mm256_srli_epi64(x, n), _mm256_slli_epi64(x, 64 - (n)))
#define VG0(x) _mm256_xor_si256(_mm256_xor_si256(VROR(x, 1), VROR(x, 8)), _mm256_srli_epi64(x, 7))
#define VG1(x) _mm256_xor_si256(_mm256_xor_si256(VROR(x, 19), VROR(x, 61)), _mm256_srli_epi64(x, 6))

/* Message words 2k, 2k+1 of blocks p and q, byte-swapped, and their W+K. */
#define VLOAD(x, k)                                                                              \
    do {                                                                                         \
        __m128i lo_ = _mm_loadu_si128((const __m128i *)(p + 16 * (k)));                          \
        __m128i hi_ = _mm_loadu_si128((const __m128i *)(q + 16 * (k)));                          \
        x = _mm256_shuffle_epi8(_mm256_inserti128_si256(_mm256_castsi128_si256(lo_), hi_, 1), bswap); \
        _mm256_store_si256((__m256i *)(wk + 4 * (k)),                                           \
                           _mm256_add_epi64(x, _mm256_load_si256((const __m256i *)(K4 + 4 * (k))))); \
    } while (0)

/* W[t], W[t+1] of both blocks into x0, from x0 = W[t-16..t-15], x1 =
 * W[t-14..], x4 = W[t-8..], x5 = W[t-6..], x7 = W[t-2..t-1] (alignr works
 * within 128-bit lanes, just what two blocks side by side need); W+K goes
 * to pair k of the sixteen rounds after those at wa. */
#define VSCHED(x0, x1, x4, x5, x7, k)                                                            \
    do {                                                                                         \
        x0 = _mm256_add_epi64(_mm256_add_epi64(x0, VG0(_mm256_alignr_epi8(x1, x0, 8))),          \
                              _mm256_add_epi64(_mm256_alignr_epi8(x5, x4, 8), VG1(x7)));         \
        _mm256_store_si256((__m256i *)(wa + 32 + 4 * (k)),                                      \
                           _mm256_add_epi64(x0, _mm256_load_si256((const __m256i *)(kp + 4 * (k))))); \
    } while (0)

/* Sixteen rounds of block A with the schedule of the next sixteen rounds of
 * both blocks in between, as in Intel's and OpenSSL's code. */
#define ROUNDS16_SCHED()                                                       \
    do {                                                                       \
        VSCHED(x0, x1, x4, x5, x7, 0);                                         \
        ROUND(a, b, c, d, e, f, g, h, WK_A(0));                                \
        ROUND(h, a, b, c, d, e, f, g, WK_A(1));                                \
        VSCHED(x1, x2, x5, x6, x0, 1);                                         \
        ROUND(g, h, a, b, c, d, e, f, WK_A(2));                                \
        ROUND(f, g, h, a, b, c, d, e, WK_A(3));                                \
        VSCHED(x2, x3, x6, x7, x1, 2);                                         \
        ROUND(e, f, g, h, a, b, c, d, WK_A(4));                                \
        ROUND(d, e, f, g, h, a, b, c, WK_A(5));                                \
        VSCHED(x3, x4, x7, x0, x2, 3);                                         \
        ROUND(c, d, e, f, g, h, a, b, WK_A(6));                                \
        ROUND(b, c, d, e, f, g, h, a, WK_A(7));                                \
        VSCHED(x4, x5, x0, x1, x3, 4);                                         \
        ROUND(a, b, c, d, e, f, g, h, WK_A(8));                                \
        ROUND(h, a, b, c, d, e, f, g, WK_A(9));                                \
        VSCHED(x5, x6, x1, x2, x4, 5);                                         \
        ROUND(g, h, a, b, c, d, e, f, WK_A(10));                               \
        ROUND(f, g, h, a, b, c, d, e, WK_A(11));                               \
        VSCHED(x6, x7, x2, x3, x5, 6);                                         \
        ROUND(e, f, g, h, a, b, c, d, WK_A(12));                               \
        ROUND(d, e, f, g, h, a, b, c, WK_A(13));                               \
        VSCHED(x7, x0, x3, x4, x6, 7);                                         \
        ROUND(c, d, e, f, g, h, a, b, WK_A(14));                               \
        ROUND(b, c, d, e, f, g, h, a, WK_A(15));                               \
    } while (0)

/* Two blocks per pass (A = p, B = q = p + 128); an odd last block fills
 * both lanes and its second pass of rounds is skipped.  The rounds loop over
 * sixteen at a time rather than being unrolled whole: each wk entry is then
 * written in one iteration and read in the next, so compilers load it from
 * the stack (a free memory operand of an add) instead of extracting it from
 * a ymm register with vpextrq and spilling vectors. */
static CIM_TARGET_AVX2 void blocks_avx2(uint64_t s[8], const uint8_t *p, size_t n)
{
    CIM_ALIGN32_PRE uint64_t wk[160] CIM_ALIGN32_POST;
    /* vpshufb: big-endian 64-bit words to little-endian, in each lane */
    const __m256i bswap = _mm256_setr_epi8(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8,
                                           7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8);
    while (n) {
        const uint8_t *q = n >= 2 ? p + 128 : p;
        uint64_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
        __m256i x0, x1, x2, x3, x4, x5, x6, x7;
        uint64_t *wa;
        const uint64_t *kp;
        VLOAD(x0, 0); VLOAD(x1, 1); VLOAD(x2, 2); VLOAD(x3, 3);
        VLOAD(x4, 4); VLOAD(x5, 5); VLOAD(x6, 6); VLOAD(x7, 7);
        /* rounds 0-63 of A, computing W+K of rounds 16-79 of A and B */
        for (wa = wk, kp = K4 + 32; wa < wk + 128; wa += 32, kp += 32) ROUNDS16_SCHED();
        ROUNDS8(WK_A, 0); /* rounds 64-79 of A */
        ROUNDS8(WK_A, 8);
        a = s[0] += a; b = s[1] += b; c = s[2] += c; d = s[3] += d;
        e = s[4] += e; f = s[5] += f; g = s[6] += g; h = s[7] += h;
        if (n == 1) break;
        for (wa = wk; wa < wk + 160; wa += 16) ROUNDS8(WK_B, 0); /* all of B */
        s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
        p += 256;
        n -= 2;
    }
}

#endif /* CIM_SHA512_X86 */

/* ---- x86-64: eight messages in the lanes of AVX-512 registers ------------ */
#if defined(CIM_SHA512_LANES8)

/* Vector a..h and w[] hold one message per 64-bit lane; these are the
 * scalar macros above with an instruction each for a rotate (vprorq) and a
 * three-input logic function (vpternlogq: 0x96 is x^y^z, 0xca x?y:z, 0xe8
 * majority). */
#define ZADD _mm512_add_epi64
#define ZROR(x, n) _mm512_ror_epi64(x, n)
#define ZXOR3(x, y, z) _mm512_ternarylogic_epi64(x, y, z, 0x96)
#define ZS0(x) ZXOR3(ZROR(x, 28), ZROR(x, 34), ZROR(x, 39))
#define ZS1(x) ZXOR3(ZROR(x, 14), ZROR(x, 18), ZROR(x, 41))
#define ZG0(x) ZXOR3(ZROR(x, 1), ZROR(x, 8), _mm512_srli_epi64(x, 7))
#define ZG1(x) ZXOR3(ZROR(x, 19), ZROR(x, 61), _mm512_srli_epi64(x, 6))
#define ZCH(e, f, g) _mm512_ternarylogic_epi64(e, f, g, 0xca)
#define ZMAJ(a, b, c) _mm512_ternarylogic_epi64(a, b, c, 0xe8)

#define ZROUND(a, b, c, d, e, f, g, h, wk)                              \
    do {                                                                \
        __m512i t1 = ZADD(ZADD(h, wk), ZADD(ZCH(e, f, g), ZS1(e)));     \
        d = ZADD(d, t1);                                                \
        h = ZADD(t1, ZADD(ZS0(a), ZMAJ(a, b, c)));                      \
    } while (0)

#define ZROUNDS8(wk, i) ROUNDS8_OF(ZROUND, wk, i)

/* As PW/PK above, sixteen rounds unrolled so that every index is a constant
 * and w[] stays in registers (16 of the 32 zmm). */
#define ZK(j) _mm512_set1_epi64((long long)PK(j))
#define ZWK0(j) ZADD(ZK(j), w[j])
#define ZW(j)                                                                                   \
    (w[(j) & 15] = ZADD(ZADD(w[(j) & 15], ZG1(w[((j) + 14) & 15])),                             \
                        ZADD(w[((j) + 9) & 15], ZG0(w[((j) + 1) & 15]))))
#define ZWK(j) ZADD(ZK(j), ZW(j))

/* What an idle lane (p[l] NULL) reads and computes, thrown away. */
static const uint8_t idle_block[128];

/* n blocks of each message p[l] (NULL: lane idle) into state s[l].  The
 * message words are gathered (a lane's address plus the word's offset, so a
 * NULL base) and byte-swapped; the states are transposed in and out once
 * per call, not per block. */
static CIM_TARGET_AVX512 void blocks_lanes8(uint64_t *const s[8], const uint8_t *const p[8], size_t n)
{
    const __m512i bswap = _mm512_set_epi64(0x08090a0b0c0d0e0fLL, 0x0001020304050607LL, 0x08090a0b0c0d0e0fLL,
                                           0x0001020304050607LL, 0x08090a0b0c0d0e0fLL, 0x0001020304050607LL,
                                           0x08090a0b0c0d0e0fLL, 0x0001020304050607LL);
    uint64_t st[8][8], addr[8], step[8];
    __m512i a, b, c, d, e, f, g, h, ad, stepv;
    int l, i;
    for (l = 0; l < 8; l++) {
        for (i = 0; i < 8; i++) st[i][l] = p[l] ? s[l][i] : 0;
        addr[l] = (uint64_t)(uintptr_t)(p[l] ? p[l] : idle_block);
        step[l] = p[l] ? 128 : 0;
    }
    a = _mm512_loadu_si512(st[0]); b = _mm512_loadu_si512(st[1]);
    c = _mm512_loadu_si512(st[2]); d = _mm512_loadu_si512(st[3]);
    e = _mm512_loadu_si512(st[4]); f = _mm512_loadu_si512(st[5]);
    g = _mm512_loadu_si512(st[6]); h = _mm512_loadu_si512(st[7]);
    ad = _mm512_loadu_si512(addr);
    stepv = _mm512_loadu_si512(step);
    for (; n; n--) {
        __m512i w[16];
        const __m512i a0 = a, b0 = b, c0 = c, d0 = d, e0 = e, f0 = f, g0 = g, h0 = h;
        const uint64_t *kp = K4;
        for (i = 0; i < 16; i++)
            w[i] = _mm512_shuffle_epi8(_mm512_i64gather_epi64(ZADD(ad, _mm512_set1_epi64(8 * i)), NULL, 1), bswap);
        ROUNDS80(ZROUNDS8, ZWK0, ZWK);
        a = ZADD(a, a0); b = ZADD(b, b0); c = ZADD(c, c0); d = ZADD(d, d0);
        e = ZADD(e, e0); f = ZADD(f, f0); g = ZADD(g, g0); h = ZADD(h, h0);
        ad = ZADD(ad, stepv);
    }
    _mm512_storeu_si512(st[0], a); _mm512_storeu_si512(st[1], b);
    _mm512_storeu_si512(st[2], c); _mm512_storeu_si512(st[3], d);
    _mm512_storeu_si512(st[4], e); _mm512_storeu_si512(st[5], f);
    _mm512_storeu_si512(st[6], g); _mm512_storeu_si512(st[7], h);
    for (l = 0; l < 8; l++)
        if (p[l])
            for (i = 0; i < 8; i++) s[l][i] = st[i][l];
}

#endif /* CIM_SHA512_LANES8 */

/* ---- run-time dispatch --------------------------------------------------- */

typedef void (*blocks_fn)(uint64_t s[8], const uint8_t *p, size_t n);

/* The chosen path, computed on first use.  Threads racing there all compute
 * and store the same value; the relaxed atomics only keep that race defined
 * (aligned int accesses are atomic on x86 anyway, hence volatile for MSVC). */
#if defined(__GNUC__) || defined(__clang__)
static int impl_chosen;
#define LOAD_IMPL() __atomic_load_n(&impl_chosen, __ATOMIC_RELAXED)
#define STORE_IMPL(v) __atomic_store_n(&impl_chosen, (v), __ATOMIC_RELAXED)
#else
static volatile int impl_chosen;
#define LOAD_IMPL() (impl_chosen)
#define STORE_IMPL(v) (impl_chosen = (v))
#endif

#if defined(CIM_SHA512_X86) && defined(_MSC_VER)
/* cpuid leaf 7 for AVX2 and BMI2; leaf 1 and xgetbv for the OS saving the
 * ymm registers (XCR0 bits 1-2) across context switches. */
#if defined(__clang__)
__attribute__((target("xsave"))) /* clang-cl: _xgetbv needs it */
#endif
static int cpu_has_avx2(void)
{
    int r[4];
    __cpuid(r, 0);
    if (r[0] < 7) return 0;
    __cpuid(r, 1);
    if (!(r[2] & (1 << 27)) || !(r[2] & (1 << 28))) return 0; /* OSXSAVE, AVX */
    if ((_xgetbv(0) & 6) != 6) return 0;
    __cpuidex(r, 7, 0);
    return (r[1] & (1 << 5)) && (r[1] & (1 << 8));          /* AVX2, BMI2 */
}

/* AVX-512 F and BW (cpuid leaf 7), and the OS saving the opmask and zmm
 * registers (XCR0 bits 5-7) as well as the ymm ones. */
#if defined(CIM_SHA512_LANES8)
#if defined(__clang__)
__attribute__((target("xsave")))
#endif
static int cpu_has_avx512(void)
{
    int r[4];
    if (!cpu_has_avx2()) return 0;
    if ((_xgetbv(0) & 0xe6) != 0xe6) return 0;
    __cpuidex(r, 7, 0);
    return (r[1] & (1 << 16)) && (r[1] & (1 << 30));        /* AVX512F, AVX512BW */
}
#endif
#elif defined(CIM_SHA512_X86)
/* libgcc's checks include the OS's ymm support (xgetbv). */
static int cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2");
}

#if defined(CIM_SHA512_LANES8)
static int cpu_has_avx512(void)
{
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}
#endif
#endif

static int choose_impl(void)
{
    const char *force;
#if defined(_MSC_VER)
#pragma warning(push)
#pragma warning(disable : 4996) /* getenv: read once, not kept */
#endif
    force = getenv("CIMFS_SHA512");
#if defined(_MSC_VER)
#pragma warning(pop)
#endif
    if (force && strcmp(force, "portable") == 0) return IMPL_PORTABLE;
#if defined(CIM_SHA512_LANES8)
    if (!(force && strcmp(force, "avx2") == 0) && cpu_has_avx512()) return IMPL_AVX512;
#endif
#if defined(CIM_SHA512_X86)
    if (cpu_has_avx2()) return IMPL_AVX2;
#endif
    return IMPL_PORTABLE;
}

static int current_impl(void)
{
    int impl = LOAD_IMPL();
    if (impl == IMPL_UNKNOWN) {
        impl = choose_impl();
        STORE_IMPL(impl);
    }
    return impl;
}

static blocks_fn current_blocks(void)
{
#if defined(CIM_SHA512_X86)
    if (current_impl() >= IMPL_AVX2) return blocks_avx2; /* one message: the same with AVX-512 */
#endif
    return blocks_portable;
}

const char *cim_sha512_impl(void)
{
    static const char *const names[] = {"portable", "portable", "avx2", "avx512"};
    return names[current_impl()];
}

unsigned cim_sha512_lanes(void) { return current_impl() == IMPL_AVX512 ? 8 : 1; }

void cim_sha512_blocks(uint64_t state[8], const uint8_t *p, size_t nblocks) { current_blocks()(state, p, nblocks); }

void cim_sha512_blocks_lanes(uint64_t *const state[8], const uint8_t *const p[8], size_t nblocks)
{
    unsigned l;
#if defined(CIM_SHA512_LANES8)
    if (current_impl() == IMPL_AVX512) {
        blocks_lanes8(state, p, nblocks);
        return;
    }
#endif
    for (l = 0; l < 8; l++)
        if (p[l]) current_blocks()(state[l], p[l], nblocks);
}

/* ---- streaming interface ------------------------------------------------ */

void cim_sha512_init(cim_sha512_ctx *ctx)
{
    static const uint64_t iv[8] = {0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
                                   0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
                                   0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};
    memcpy(ctx->state, iv, sizeof iv);
    ctx->length = 0;
    ctx->fill = 0;
}

void cim_sha512_update(cim_sha512_ctx *ctx, const void *data, size_t len)
{
    const uint8_t *p = (const uint8_t *)data;
    blocks_fn blocks;
    if (len == 0) return;
    blocks = current_blocks();
    ctx->length += len;
    if (ctx->fill) {
        size_t take = 128 - ctx->fill < len ? 128 - ctx->fill : len;
        memcpy(ctx->block + ctx->fill, p, take);
        ctx->fill += take;
        p += take;
        len -= take;
        if (ctx->fill < 128) return;
        blocks(ctx->state, ctx->block, 1);
        ctx->fill = 0;
    }
    if (len >= 128) {
        blocks(ctx->state, p, len / 128);
        p += len & ~(size_t)127;
        len &= 127;
    }
    memcpy(ctx->block, p, len);
    ctx->fill = len;
}

void cim_sha512_final(cim_sha512_ctx *ctx, uint8_t digest[64])
{
    blocks_fn blocks = current_blocks();
    uint64_t bits = ctx->length * 8;
    int i;
    ctx->block[ctx->fill++] = 0x80;
    if (ctx->fill > 112) {
        memset(ctx->block + ctx->fill, 0, 128 - ctx->fill);
        blocks(ctx->state, ctx->block, 1);
        ctx->fill = 0;
    }
    memset(ctx->block + ctx->fill, 0, 128 - ctx->fill);
    /* The length field is 128 bits; its high half is zero for any real object. */
    for (i = 0; i < 8; i++) ctx->block[127 - i] = (uint8_t)(bits >> (8 * i));
    blocks(ctx->state, ctx->block, 1);
    for (i = 0; i < 64; i++) digest[i] = (uint8_t)(ctx->state[i / 8] >> (56 - 8 * (i % 8)));
}
