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

/* The compression code in use, chosen once from the CPU: "avx512" (x86-64
 * with AVX-512 F and BW: eight messages at once, and "avx2" for one),
 * "avx2" (AVX2 and BMI2) or "portable".  CIMFS_SHA512=portable or =avx2 in
 * the environment forces that one. */
const char *cim_sha512_impl(void);

/* Raw compression of whole 128-byte blocks, for callers that keep their own
 * buffers (cim_objid.c's lanes).  cim_sha512_blocks_lanes runs message l's
 * n blocks at p[l] into state[l] for each l with p[l] not NULL, eight side
 * by side when cim_sha512_lanes() is 8, one after another when it is 1. */
unsigned cim_sha512_lanes(void);
void cim_sha512_blocks(uint64_t state[8], const uint8_t *p, size_t nblocks);
void cim_sha512_blocks_lanes(uint64_t *const state[8], const uint8_t *const p[8], size_t nblocks);

#endif
