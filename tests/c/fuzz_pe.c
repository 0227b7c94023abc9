/*
 * fuzz_pe.c - mutation fuzzing of the PE layout planner (libcimfs/cim_pe.c), meant to run under
 * AddressSanitizer + UBSan (.ci/sanitizers.sh): any read outside the bytes it is given, any
 * overflow, aborts.  Each round mutates a well-formed PE header (or a file given on the command
 * line) and offers the planner every prefix length, checking what a layout must satisfy:
 * runs ascending in both file and stored offsets, stored runs on page boundaries, no run
 * overlapping the next, a stored length covering the file, and a descriptor that fits.
 *
 *   fuzz_pe [ROUNDS] [SEED_FILE...]
 */
#include "cim_format.h"
#include "cim_pe.h"
#include "pe_invariants.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_state = 0x9E3779B97F4A7C15u;

static uint64_t next_random(void)
{
    g_state ^= g_state << 13;
    g_state ^= g_state >> 7;
    g_state ^= g_state << 17;
    return g_state;
}

/* A PE32+ header with three sections and trailing data, like a small DLL. */
static size_t make_seed(uint8_t *p, size_t cap)
{
    size_t len = 0x4000;
    uint32_t i;
    if (cap < len) return 0;
    memset(p, 0, len);
    p[0] = 'M';
    p[1] = 'Z';
    cim_put32(p + 0x3C, 0x80);
    memcpy(p + 0x80, "PE\0\0", 4);
    cim_put16(p + 0x84, 0x8664);
    cim_put16(p + 0x86, 3);
    cim_put16(p + 0x94, 0xF0);
    cim_put16(p + 0x98, 0x20B);
    cim_put32(p + 0x98 + 32, 0x1000);
    cim_put32(p + 0x98 + 36, 0x200);
    cim_put32(p + 0x98 + 56, 0x5000);
    cim_put32(p + 0x98 + 60, 0x400);
    for (i = 0; i < 3; i++) {
        uint8_t *s = p + 0x98 + 0xF0 + 40 * i;
        cim_put32(s + 8, 0x1000);
        cim_put32(s + 12, 0x1000 * (i + 1));
        cim_put32(s + 16, 0x1000);
        cim_put32(s + 20, 0x400 + 0x1000 * i);
    }
    return len;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 200000, r;
    static uint8_t seed[CIM_PE_PROBE_MAX], file[CIM_PE_PROBE_MAX];
    size_t seed_len = make_seed(seed, sizeof seed);
    uint64_t seed_file_length = seed_len; /* a real file may be longer than the headers we keep */
    long images = 0;
    if (argc > 2) { /* a real PE file as the seed instead */
        FILE *f = fopen(argv[2], "rb");
        if (!f) {
            perror(argv[2]);
            return 2;
        }
        seed_len = fread(seed, 1, sizeof seed, f);
        if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > 0) seed_file_length = (uint64_t)ftell(f);
        fclose(f);
    }
    for (r = 0; r < rounds; r++) {
        size_t len = seed_len, i;
        uint64_t file_length;
        int edits = 1 + (int)(next_random() % 8);
        memcpy(file, seed, len);
        for (i = 0; i < (size_t)edits; i++) {
            uint64_t x = next_random();
            size_t at = (size_t)(x % 0x400); /* the headers are where the planner looks */
            if (x & 0x10000) file[at] = (uint8_t)(x >> 24);
            else cim_put32(file + (at & ~(size_t)3), (uint32_t)(x >> 32)); /* whole fields: sizes, offsets */
        }
        file_length = seed_file_length;
        if (next_random() % 4 == 0) file_length = len = (size_t)(next_random() % (len + 1));
        if (next_random() % 8 == 0) file_length = next_random() % (UINT64_C(1) << 33);
        if (file_length < len) len = (size_t)file_length;
        {
            int qualified;
            if (!plan_behaves(file, len, file_length, &qualified)) {
                fprintf(stderr, "round %ld: the planner misbehaved\n", r);
                return 1;
            }
            images += qualified;
        }
    }
    printf("fuzz_pe: %ld rounds, %ld qualified as PE images, no fault\n", rounds, images);
    return 0;
}
