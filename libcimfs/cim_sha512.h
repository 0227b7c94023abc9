/* cim_sha512.h - SHA-512 (FIPS 180-4): Microsoft's writer names objects by
 * the first 24 bytes of it (docs/format.md §5), so ours does too. */
#ifndef CIM_SHA512_H
#define CIM_SHA512_H

#include <stddef.h>
#include <stdint.h>

typedef struct cim_sha512_ctx {
    uint64_t state[8];
    uint64_t length;      /* bytes hashed so far (objects stay far below 2^61 bytes) */
    uint8_t block[128];
    size_t fill;          /* bytes waiting in block */
} cim_sha512_ctx;

void cim_sha512_init(cim_sha512_ctx *ctx);
void cim_sha512_update(cim_sha512_ctx *ctx, const void *data, size_t len);
void cim_sha512_final(cim_sha512_ctx *ctx, uint8_t digest[64]);

/* The compression code in use, chosen once from the CPU: "avx2" (x86-64 with
 * AVX2 and BMI2) or "portable".  CIMFS_SHA512=portable in the environment
 * forces the portable one. */
const char *cim_sha512_impl(void);

#endif
