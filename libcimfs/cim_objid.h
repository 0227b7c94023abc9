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

/* Object IDs of several messages at once.  With AVX-512 (cim_sha512_lanes()
 * is 8) the blocks of up to eight messages run side by side in one core's
 * vector lanes, about three times as fast as one after another; elsewhere
 * each message is hashed in turn.  A message's bytes must stay put until
 * its ID is out.  Used by the hashing helpers of cim_defer.c. */
#define CIM_OBJID_LANES 8

typedef struct cim_objid_lane {
    void *tag;                /* the caller's; NULL: lane free */
    const uint8_t *next;      /* the message's next whole block */
    size_t blocks;            /* whole blocks left */
    size_t tail;              /* bytes after them */
    uint64_t length;
    cim_sha512_ctx sha;
    uint8_t *digest;          /* where the ID goes */
} cim_objid_lane;

typedef struct cim_objid_lanes {
    cim_objid_lane lane[CIM_OBJID_LANES];
    unsigned busy;            /* lanes with a message */
    unsigned width;           /* how many are worth filling: cim_sha512_lanes() */
} cim_objid_lanes;

void cim_objid_lanes_init(cim_objid_lanes *m);
int cim_objid_lanes_room(const cim_objid_lanes *m);
/* Whether the lanes are full enough to be worth running (on AVX-512: three
 * or more messages; with fewer they run one at a time on the scalar code,
 * at a third of the eight-lane throughput, which a helper with time to
 * spare should not spend). */
int cim_objid_lanes_efficient(const cim_objid_lanes *m);
void cim_objid_lanes_add(cim_objid_lanes *m, const void *data, size_t len, uint8_t digest[CIM_DIGEST_SIZE], void *tag);
/* Hashes until at least one message has its ID or each has had a slice of
 * work (so that the caller can refill free lanes now and then); puts the
 * finished messages' tags in done[] and returns how many. */
unsigned cim_objid_lanes_run(cim_objid_lanes *m, void *done[CIM_OBJID_LANES]);

/* Exposed for the test suite, which checks it against hashlib. */
void CimfsTestObjectId(const void *data, size_t len, uint8_t *digest24);
void CimfsTestSha512(const void *data, size_t len, uint8_t *digest64);
/* SHA-512 of data fed to cim_sha512_update in consecutive pieces of the given
   sizes (tests/test_sha512.py), and which compression code is in use
   ("avx512", "avx2" or "portable", see cim_sha512_impl). */
void CimfsTestSha512Chunks(const void *data, const size_t *sizes, size_t count, uint8_t *digest64);
const char *CimfsSha512Impl(void);
/* The object IDs of count messages laid end to end in data, through
   cim_objid_lanes as the hashing helpers use it (tests/test_sha512.py). */
void CimfsTestObjectIds(const void *data, const size_t *lengths, size_t count, uint8_t *digests24);

#endif
