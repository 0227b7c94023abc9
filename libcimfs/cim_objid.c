/* cim_objid.c - object-ID digests (see cim_objid.h). */
#include "cim_objid.h"

#include <string.h>

void cim_objid_init(cim_objid_ctx *ctx) { cim_sha512_init(&ctx->sha); }

void cim_objid_update(cim_objid_ctx *ctx, const void *data, size_t len) { cim_sha512_update(&ctx->sha, data, len); }

void cim_objid_final(cim_objid_ctx *ctx, uint8_t digest[CIM_DIGEST_SIZE])
{
    uint8_t full[64];
    if (ctx->sha.length <= CIM_INLINE_OBJECT_MAX) {
        /* Fewer bytes than a block: they are all still in the block buffer. */
        memset(digest, 0, CIM_DIGEST_SIZE);
        memcpy(digest, ctx->sha.block, (size_t)ctx->sha.length);
        return;
    }
    cim_sha512_final(&ctx->sha, full);
    memcpy(digest, full, CIM_DIGEST_SIZE);
}

void cim_objid_digest(const void *data, size_t len, uint8_t digest[CIM_DIGEST_SIZE])
{
    cim_objid_ctx ctx;
    cim_objid_init(&ctx);
    cim_objid_update(&ctx, data, len);
    cim_objid_final(&ctx, digest);
}

void CimfsTestObjectId(const void *data, size_t len, uint8_t *digest24) { cim_objid_digest(data, len, digest24); }

void CimfsTestSha512(const void *data, size_t len, uint8_t *digest64)
{
    cim_sha512_ctx ctx;
    cim_sha512_init(&ctx);
    cim_sha512_update(&ctx, data, len);
    cim_sha512_final(&ctx, digest64);
}

void CimfsTestSha512Chunks(const void *data, const size_t *sizes, size_t count, uint8_t *digest64)
{
    const uint8_t *p = (const uint8_t *)data;
    cim_sha512_ctx ctx;
    size_t i;
    cim_sha512_init(&ctx);
    for (i = 0; i < count; p += sizes[i], i++) cim_sha512_update(&ctx, p, sizes[i]);
    cim_sha512_final(&ctx, digest64);
}

const char *CimfsSha512Impl(void) { return cim_sha512_impl(); }
