/* cim_sha256.h - SHA-256 (FIPS 180-4), used for object IDs and deduplication. */
#ifndef CIM_SHA256_H
#define CIM_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct cim_sha256_ctx {
    uint32_t state[8];
    uint64_t length;      /* bytes hashed so far */
    uint8_t block[64];
    size_t fill;          /* bytes waiting in block */
} cim_sha256_ctx;

/* The 64 round constants (shared with the accelerated block function). */
extern const uint32_t cim_sha256_k[64];

/* x86 SHA extensions (cim_sha256_x86.c): whether they can be used here, and the block function. */
int cim_sha256_x86_available(void);
void cim_sha256_x86_blocks(uint32_t state[8], const uint8_t *p, size_t blocks);

void cim_sha256_init(cim_sha256_ctx *ctx);
void cim_sha256_update(cim_sha256_ctx *ctx, const void *data, size_t len);
void cim_sha256_final(cim_sha256_ctx *ctx, uint8_t digest[32]);
void cim_sha256(const void *data, size_t len, uint8_t digest[32]);

/* Exposed for the test suite, which checks it against hashlib. */
void CimfsTestSha256(const void *data, size_t len, uint8_t *digest32);

#endif
