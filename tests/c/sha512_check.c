/*
 * sha512_check.c - SHA-512 (libcimfs/cim_sha512.c) on every compression path
 * that this build and CPU have ("portable" always, "avx2" on x86-64 with
 * AVX2 + BMI2, "avx512" with AVX-512 F and BW), all through the streaming
 * API (init / update / final):
 *   1. FIPS 180-4 known answers;
 *   2. digests made with Python's hashlib of slices of a fixed pseudo-random
 *      stream (splitmix64, see stream()), at odd offsets so that the data is
 *      misaligned, fed in random pieces;
 *   3. every length 0..3000 and a few of several MB, at random offsets of
 *      that stream, fed in random pieces (empty ones too): each path must
 *      give what the portable path gives when fed the whole slice at once;
 *   4. eight messages at once (cim_sha512_blocks_lanes) from random
 *      offsets, some lanes idle, in one call or two: each lane's state must
 *      be what the portable code computes for that message alone.
 * tests/test_sha512.py checks the same against hashlib through the Python
 * extension, with CIMFS_SHA512=portable and without.
 *
 * It includes cim_sha512.c itself to switch paths within one process, so it
 * is built alone, not with the other libcimfs sources:
 *
 *   cc -std=c99 -O2 -Wall -Wextra -Ilibcimfs tests/c/sha512_check.c -o sha512_check
 *   ./sha512_check [SEED]        (exit 0 = every check passed)
 *
 * It also builds with -fsanitize=address,undefined and for Windows
 * (x86_64-w64-mingw32-gcc), the same way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cim_sha512.c"

static int failures;

/* splitmix64: a fixed stream that the hashlib digests below were made from. */
static uint64_t mix_state;
static uint64_t splitmix64(void)
{
    uint64_t z = (mix_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void stream(uint8_t *buf, size_t n, uint64_t seed)
{
    size_t i;
    mix_state = seed;
    for (i = 0; i < n; i += 8) {
        uint64_t v = splitmix64();
        size_t j;
        for (j = 0; j < 8 && i + j < n; j++) buf[i + j] = (uint8_t)(v >> (8 * j)); /* little-endian */
    }
}

/* The split points and offsets: a separate generator, seeded from the command line. */
static uint64_t rng_state;
static uint64_t rnd(uint64_t bound)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return bound ? rng_state % bound : 0;
}

/* SHA-512 of p[0..len) fed to update() in random pieces: mostly short ones
 * around the 128-byte block and 112-byte padding boundaries, some empty,
 * some long (the multi-block path), and sometimes the rest in one go. */
static void digest_split(const uint8_t *p, size_t len, uint8_t out[64])
{
    cim_sha512_ctx ctx;
    cim_sha512_init(&ctx);
    while (len) {
        size_t take;
        switch (rnd(5)) {
        case 0: take = 0; break;
        case 1: take = (size_t)rnd(300); break;
        case 2: take = 128 * (size_t)rnd(40) + (size_t)rnd(3); break;
        case 3: take = (size_t)rnd(1 + len / 2); break;
        default: take = len; break;
        }
        if (take > len) take = len;
        cim_sha512_update(&ctx, p, take);
        p += take;
        len -= take;
    }
    if (rnd(2)) cim_sha512_update(&ctx, p, 0);
    cim_sha512_final(&ctx, out);
}

static void digest_whole(const uint8_t *p, size_t len, uint8_t out[64])
{
    cim_sha512_ctx ctx;
    cim_sha512_init(&ctx);
    cim_sha512_update(&ctx, p, len);
    cim_sha512_final(&ctx, out);
}

static void hex(const uint8_t d[64], char out[129])
{
    int i;
    for (i = 0; i < 64; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void expect(const char *what, size_t len, const uint8_t got[64], const char *want_hex)
{
    char h[129];
    hex(got, h);
    if (strcmp(h, want_hex) != 0) {
        fprintf(stderr, "FAIL %s [%s] length %lu:\n  got  %s\n  want %s\n", what, cim_sha512_impl(),
                (unsigned long)len, h, want_hex);
        failures++;
    }
}

static const struct { const char *msg; size_t repeat; const char *sha512; } fips[] = {
    {"", 1, "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"},
    {"abc", 1, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
    {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu", 1,
     "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"},
    {"a", 1000000, "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973ebde0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b"},
};

/* hashlib.sha512(stream(STREAM_SIZE, STREAM_SEED)[offset:offset + length]) */
#define STREAM_SEED 2024
#define STREAM_SIZE ((4u << 20) + 4096)
static const struct { size_t offset, length; const char *sha512; } hashlib_cases[] = {
    {0, 0, "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"},
    {1, 1, "12f2b6ec84a08ecf0dec17fd1f911569d2b989ff899dd90b7a0f8294575bf3084245230844543536ed4bb3a5bf17c13cdd254a3064ed66067205c2715a6cd075"},
    {3, 55, "4d0563d7f469baed95a478c32fb9bece2baa8dd5f09b329e33bb90cf150bdaf229d3b33623b80af3cb958d358b6663710bb7edecf8521e22dd88fa322895b890"},
    {0, 111, "0ac6d9d14499bb7650d87ab0a741ca2ad0779ddfecb79bc284ee5843d12605813698a87161a772948c14a6d6735f0619f8af1d5492898232448e1d0a5d775354"},
    {5, 112, "5ed768abfa1ba9d724dbcadb17cce291fbdd56672c555798af91182781d799ba309d858ea00086fdfc1ca5d4577aae0990a97c2513fa174a4141deb5568c3e3c"},
    {7, 113, "5a629573ede2054d5d87aad141edf89e6dfdede831a4eb20a9217e2d4242bdc85e257318eb96372be3f545a7487e8a70e6e97bbf83af8f1939514cc7bda41cad"},
    {0, 127, "c8623eda297be4f84c23899d86a837af330b2b5b7ea560cff6ac42ac776de40eba905b4f4c819c5cf5005383cefbe6e8648dffc4e4cd0990148a797c652c0480"},
    {9, 128, "1d2c4974ff642200ba02dbbef9ef575c602d6450d2fc7f9b0b54f5fcbf0ea606b1d968259b4e5d1403e1d5920c73e10151cb8296c62cdd5361dd24e30a588ff8"},
    {1, 129, "8ab2179fa22a442287e15a99e9c79893df2062c88c30dc6e722b82145c84e5df96dd475c8612b6739d9a23665f7fd00bf20dca9b5a52fc33c82a9060c6d9ef17"},
    {0, 239, "03e9c3c01b46228962dc8c410474737e6a22c04f5333fb94517af7f991c1d276cbaf569851b43833e545520f532f8c0db2f6de2a02b26ccc29299384ffea9788"},
    {2, 240, "c40b81d2e5ad8bf727d881cd5f3b4bd2d7c234f88d42aeb04cc475e76749424f814687d230b51ba239b4fd69e42c9aa8fdb88d9c86b970b41474930d3234ab62"},
    {0, 255, "73568c079753b16f50db98ad8c27ab0794989e6a420cd9a557228d1c300bb6e64f57e3ecb642edf26b660ea9476c92a0d91872633fc6f9fe0ee9f829235a8019"},
    {4, 256, "3e8b8f852b429b390c62087e5afa4aecee9b92b0991fc403c2a09ba52ec30e7ac7eeb27fa5ceb72fd6be084a09eb35da119fd2e0d812fdf3f229f8ecd1b41052"},
    {6, 257, "4e64b883867537062864295a0e1044067beed90a4904f1a1d4ccdd03f05923a180f18319ae2c4e93a5dfd07205690225894d21b44f16688d21ccfac503eccd9f"},
    {11, 383, "2037d02082f152b647edaac83744c908ce957f8fe9d7251f93ec565aa349cb496f01a863b36de440f6cc84af65f5022253f4374c5c02554388cc5733d7dd721c"},
    {0, 384, "a4f4d0dc76336fb55c55450b2995784f05fd8d9c6b78b794727f6cdebb14a2f1cf9c7cb1899c270c45f62332fc98194f99bac1a4ac3f522e721462065767989f"},
    {13, 1000, "e8ab0501956a28420dbb486a5142a6715f5fc72625d94d4bbfd88312375e2d46ac383ede79e58a70751d4f22c4a1f028fd4bdedb85956baac522887c93727119"},
    {17, 3000, "13b177ac4a3e4431029c880011f554ad3bb2be7a6aaa43d56a876a162e1dc12e944d1cf1b509d7ab84602a902f062becd52ef0da5f15350eaa43dd03d75122c5"},
    {0, 4095, "0782069bb999d4d7cf4b0a39f0e3ede072549afe54bdb31eade1ada98777f894ec2c47624e6b90db37e200cf6d31e7e077dcf352ce1914f07b774786863960f3"},
    {31, 65543, "48ca9dd25927d224acbe9711289c9f81414192f824a1057f202646694074267177bc41f37e27742ce4138b5adda7a398712291b4e807c9b645f0f5c2c6a5edb3"},
    {100, 1048579, "25b016ddffe095928cd04f69f0544219c04b97b3aaf7db39b9fc88936faf7838ccd9f29c7b8d9351ac290ef69330e89f44a260a2ec1b9b7a9fc6bb1f98db2ee9"},
    {4096, 4194303, "4b87bfb8d415c7a1b397d4b812d34fd8f109cc9f4ceff0b1af832b4e19693a62e278aeceada66c8813f0e1d6ec92c9ef64c329887cd51f93c96657b13f513337"},
};

static void check_path(const uint8_t *buf, uint8_t (*reference)[64], int write_reference)
{
    uint8_t d[64], *msg;
    size_t i, len;
    static const size_t big[] = {(1u << 20), (3u << 20) + 77, (4u << 20) - 1};

    for (i = 0; i < sizeof fips / sizeof fips[0]; i++) {
        size_t n = strlen(fips[i].msg) * fips[i].repeat, k;
        msg = (uint8_t *)malloc(n + 1);
        if (!msg) { fprintf(stderr, "out of memory\n"); exit(2); }
        for (k = 0; k < fips[i].repeat; k++) memcpy(msg + k * strlen(fips[i].msg), fips[i].msg, strlen(fips[i].msg));
        digest_whole(msg, n, d);
        expect("FIPS 180-4 vector", n, d, fips[i].sha512);
        digest_split(msg, n, d);
        expect("FIPS 180-4 vector, split", n, d, fips[i].sha512);
        free(msg);
    }
    for (i = 0; i < sizeof hashlib_cases / sizeof hashlib_cases[0]; i++) {
        const uint8_t *p = buf + hashlib_cases[i].offset;
        digest_whole(p, hashlib_cases[i].length, d);
        expect("hashlib case", hashlib_cases[i].length, d, hashlib_cases[i].sha512);
        digest_split(p, hashlib_cases[i].length, d);
        expect("hashlib case, split", hashlib_cases[i].length, d, hashlib_cases[i].sha512);
    }
    /* Random offsets and splits; the reference is the portable path's
     * digest of the whole slice (checked itself by the cases above). */
    for (len = 0; len <= 3000 + sizeof big / sizeof big[0]; len++) {
        size_t n = len <= 3000 ? len : big[len - 3001];
        size_t off = (size_t)rnd(4096);
        if (write_reference) digest_whole(buf + off, n, reference[len]);
        digest_split(buf + off, n, d);
        if (memcmp(d, reference[len], 64) != 0) {
            char h[129], w[129];
            hex(d, h);
            hex(reference[len], w);
            fprintf(stderr, "FAIL random split [%s] length %lu offset %lu:\n  got  %s\n  want %s\n",
                    cim_sha512_impl(), (unsigned long)n, (unsigned long)off, h, w);
            failures++;
        }
    }
}

static void check_lanes(const uint8_t *buf)
{
    int round;
    for (round = 0; round < 200; round++) {
        uint64_t st[8][8], want[8][8], *state[8];
        const uint8_t *p[8], *q[8];
        size_t n1 = (size_t)rnd(40), n2 = (size_t)rnd(3) ? (size_t)rnd(40) : 0;
        int l, idle = 0;
        for (l = 0; l < 8; l++) {
            int busy = rnd(4) != 0 || l == 0;
            size_t off = (size_t)rnd(STREAM_SIZE - 128 * 80);
            cim_sha512_ctx c;
            cim_sha512_init(&c);
            memcpy(st[l], c.state, sizeof st[l]);
            memcpy(want[l], c.state, sizeof want[l]);
            state[l] = st[l];
            p[l] = busy ? buf + off : NULL;
            q[l] = busy ? buf + off + 128 * n1 : NULL;
            if (busy) blocks_portable(want[l], buf + off, n1 + n2);
            else idle++;
        }
        cim_sha512_blocks_lanes(state, p, n1);
        if (n2) cim_sha512_blocks_lanes(state, q, n2);
        for (l = 0; l < 8; l++)
            if (p[l] && memcmp(st[l], want[l], sizeof st[l]) != 0) {
                fprintf(stderr, "FAIL lanes [%s] lane %d, %lu + %lu blocks, %d lanes idle\n", cim_sha512_impl(), l,
                        (unsigned long)n1, (unsigned long)n2, idle);
                failures++;
            }
    }
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoul(argv[1], NULL, 0) : 1;
    uint8_t *buf = (uint8_t *)malloc(STREAM_SIZE);
    static uint8_t reference[3001 + 3][64];
    int paths[3], npaths = 0, i;

    if (!buf) { fprintf(stderr, "out of memory\n"); return 2; }
    stream(buf, STREAM_SIZE, STREAM_SEED);
    paths[npaths++] = IMPL_PORTABLE;
#if defined(CIM_SHA512_X86)
    if (cpu_has_avx2()) paths[npaths++] = IMPL_AVX2;
#endif
#if defined(CIM_SHA512_LANES8)
    if (cpu_has_avx512()) paths[npaths++] = IMPL_AVX512;
#endif
    for (i = 0; i < npaths; i++) {
        /* the same offsets and splits on every path */
        rng_state = seed * 0x2545F4914F6CDD1DULL + 88172645463325252ULL;
        STORE_IMPL(paths[i]);
        check_path(buf, reference, i == 0);
        check_lanes(buf);
        printf("sha512_check: %s path checked\n", cim_sha512_impl());
    }
    free(buf);
    if (failures) {
        fprintf(stderr, "sha512_check: %d failures\n", failures);
        return 1;
    }
    printf("sha512_check: ok (%d path%s)\n", npaths, npaths == 1 ? "" : "s");
    return 0;
}
