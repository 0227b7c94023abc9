/*
 * cim_objid.h - object IDs: the (length, digest) key under which every stored
 * object is listed in its region's objectid file and deduplicated.  As
 * Microsoft's writer does it (docs/format.md §5): the digest of an object of
 * more than 24 bytes is the first 24 bytes of its SHA-512; an object of 24
 * bytes or fewer is its own digest, zero-padded.
 */
#ifndef CIM_OBJID_H
#define CIM_OBJID_H

#include "cim_sha512.h"

#define CIM_DIGEST_SIZE 24
#define CIM_INLINE_OBJECT_MAX CIM_DIGEST_SIZE

typedef struct cim_objid_ctx {
    cim_sha512_ctx sha;       /* its block buffer also holds a short object's bytes */
} cim_objid_ctx;

void cim_objid_init(cim_objid_ctx *ctx);
void cim_objid_update(cim_objid_ctx *ctx, const void *data, size_t len);
void cim_objid_final(cim_objid_ctx *ctx, uint8_t digest[CIM_DIGEST_SIZE]);
void cim_objid_digest(const void *data, size_t len, uint8_t digest[CIM_DIGEST_SIZE]);

/* Exposed for the test suite, which checks it against hashlib. */
void CimfsTestObjectId(const void *data, size_t len, uint8_t *digest24);
void CimfsTestSha512(const void *data, size_t len, uint8_t *digest64);
/* SHA-512 of data fed to cim_sha512_update in consecutive pieces of the given
   sizes (tests/test_sha512.py), and which compression code is in use ("avx2"
   or "portable", see cim_sha512_impl). */
void CimfsTestSha512Chunks(const void *data, const size_t *sizes, size_t count, uint8_t *digest64);
const char *CimfsSha512Impl(void);

#endif
