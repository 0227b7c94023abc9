/*
 * bufpool_check.c - cim_bufpool (libcimfs/cim_bufpool.c), built with
 * AddressSanitizer in .ci/sanitizers.sh: every buffer handed out is written
 * over the size asked for (an overflow if a class were too small), for sizes
 * around every class boundary, the pool's own limits, buffers put back with
 * sizes that are no class (after a realloc), and buffers kept past the
 * pool's limit; LeakSanitizer then checks that the pool frees what it keeps.
 *
 *   cc -std=c11 -fsanitize=address,undefined -g -Ilibcimfs tests/c/bufpool_check.c \
 *      libcimfs/cim_bufpool.c libcimfs/cim_platform.c -o bufpool_check && ./bufpool_check
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cim_internal.h"

static int failures;

static void check(cim_bufpool *p, size_t n)
{
    size_t cap = 0;
    uint8_t *b = cim_bufpool_get(p, n, &cap);
    if (!b || cap < n) {
        fprintf(stderr, "FAIL get(%lu): %p, cap %lu\n", (unsigned long)n, (void *)b, (unsigned long)cap);
        failures++;
        free(b);
        return;
    }
    memset(b, 0xa5, n);
    if (cap > n) memset(b + n, 0x5a, cap - n); /* the whole buffer is usable */
    if (n >= (64u << 10) && n <= (32u << 20) && cap > n + n / 4 + 1) {
        fprintf(stderr, "FAIL get(%lu): cap %lu is more than a quarter larger\n", (unsigned long)n, (unsigned long)cap);
        failures++;
    }
    cim_bufpool_put(p, b, cap);
}

int main(void)
{
    cim_bufpool *p = cim_bufpool_new();
    size_t base, n;
    int round, i;
    if (!p) return 2;
    for (round = 0; round < 2; round++) /* the second round gets kept buffers back */
        for (base = 32u << 10; base <= (64u << 20); base *= 2)
            for (i = 0; i < 4; i++) {
                size_t edge = base / 4 * (size_t)(4 + i);
                for (n = edge - 2; n <= edge + 2; n++) check(p, n);
            }
    check(p, 0);
    check(p, 1);
    /* A buffer one byte short of a class, put back (as after a realloc), must not be handed
     * out as that class: it is asked for again, and all of what comes back is written. */
    for (base = 64u << 10; base <= (16u << 20); base *= 2)
        for (i = 0; i < 4; i++) {
            size_t edge = base / 4 * (size_t)(4 + i), got;
            uint8_t *b = (uint8_t *)malloc(edge - 1);
            if (!b) return 2;
            cim_bufpool_put(p, b, edge - 1);
            b = cim_bufpool_get(p, edge - 1, &got);
            if (!b) return 2;
            memset(b, 2, got);
            cim_bufpool_put(p, b, got);
        }
    /* A buffer put back with a size that is no class: what is handed out of it must fit. */
    for (i = 0; i < 50; i++) {
        size_t cap = (64u << 10) + (size_t)rand() % (40u << 20), got;
        uint8_t *b = (uint8_t *)malloc(cap);
        if (!b) return 2;
        cim_bufpool_put(p, b, cap);
        n = (size_t)rand() % (cap + 1);
        b = cim_bufpool_get(p, n, &got);
        if (!b || got < n) {
            fprintf(stderr, "FAIL get(%lu) after put(%lu)\n", (unsigned long)n, (unsigned long)cap);
            failures++;
        } else {
            memset(b, 1, got);
        }
        cim_bufpool_put(p, b, got);
    }
    /* More buffers than the pool keeps (64 MiB): the rest is freed, nothing leaks. */
    {
        uint8_t *many[40];
        size_t caps[40];
        for (i = 0; i < 40; i++) many[i] = cim_bufpool_get(p, 3u << 20, &caps[i]);
        for (i = 0; i < 40; i++) cim_bufpool_put(p, many[i], caps[i]);
    }
    cim_bufpool_put(NULL, (uint8_t *)malloc(100), 100); /* no pool: plain free */
    cim_bufpool_free(p);
    if (failures) {
        fprintf(stderr, "bufpool_check: %d failures\n", failures);
        return 1;
    }
    printf("bufpool_check: ok\n");
    return 0;
}
