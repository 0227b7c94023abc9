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

/* ---- several messages at once ------------------------------------------ */

/* A slice of work: 64 KiB of each message between looks at free lanes. */
#define LANE_SLICE_BLOCKS 512
/* With fewer busy lanes than this, one message at a time is faster than
 * eight lanes mostly idle (a lane runs at about a third of the scalar code). */
#define LANES_MIN_VECTOR 3

void cim_objid_lanes_init(cim_objid_lanes *m)
{
    memset(m, 0, sizeof *m);
    m->width = cim_sha512_lanes();
}

int cim_objid_lanes_room(const cim_objid_lanes *m) { return m->busy < m->width; }

int cim_objid_lanes_efficient(const cim_objid_lanes *m)
{
    return m->busy >= (m->width == 8 ? LANES_MIN_VECTOR : 1);
}

void cim_objid_lanes_add(cim_objid_lanes *m, const void *data, size_t len, uint8_t digest[CIM_DIGEST_SIZE], void *tag)
{
    unsigned l = 0;
    cim_objid_lane *lane;
    while (m->lane[l].tag) l++; /* the caller checked for room */
    lane = &m->lane[l];
    lane->tag = tag;
    lane->next = (const uint8_t *)data;
    lane->blocks = len / 128;
    lane->tail = len % 128;
    lane->length = len;
    lane->digest = digest;
    cim_sha512_init(&lane->sha);
    m->busy++;
}

/* Messages whose whole blocks are done: their tails and padding, one at a
 * time; their tags go to done[] from *ndone on. */
static void finish_lanes(cim_objid_lanes *m, void *done[], unsigned *ndone)
{
    unsigned l;
    for (l = 0; l < CIM_OBJID_LANES; l++) {
        cim_objid_lane *lane = &m->lane[l];
        cim_objid_ctx ctx;
        if (!lane->tag || lane->blocks) continue;
        ctx.sha = lane->sha;
        ctx.sha.length = lane->length - lane->tail;
        cim_objid_update(&ctx, lane->next, lane->tail);
        cim_objid_final(&ctx, lane->digest);
        done[(*ndone)++] = lane->tag;
        lane->tag = NULL;
        m->busy--;
    }
}

unsigned cim_objid_lanes_run(cim_objid_lanes *m, void *done[CIM_OBJID_LANES])
{
    unsigned l, ndone = 0;
    finish_lanes(m, done, &ndone);
    if (ndone || !m->busy) return ndone;
    if (m->width == 8 && m->busy >= LANES_MIN_VECTOR) {
        /* All busy lanes the same number of blocks: until the shortest is done. */
        uint64_t *state[CIM_OBJID_LANES];
        const uint8_t *p[CIM_OBJID_LANES];
        size_t n = LANE_SLICE_BLOCKS;
        for (l = 0; l < CIM_OBJID_LANES; l++)
            if (m->lane[l].tag && m->lane[l].blocks < n) n = m->lane[l].blocks;
        for (l = 0; l < CIM_OBJID_LANES; l++) {
            state[l] = m->lane[l].sha.state;
            p[l] = m->lane[l].tag ? m->lane[l].next : NULL;
        }
        cim_sha512_blocks_lanes(state, p, n);
        for (l = 0; l < CIM_OBJID_LANES; l++)
            if (m->lane[l].tag) {
                m->lane[l].next += 128 * n;
                m->lane[l].blocks -= n;
            }
    } else {
        for (l = 0; l < CIM_OBJID_LANES; l++) {
            cim_objid_lane *lane = &m->lane[l];
            size_t n = lane->blocks < LANE_SLICE_BLOCKS ? lane->blocks : LANE_SLICE_BLOCKS;
            if (!lane->tag) continue;
            cim_sha512_blocks(lane->sha.state, lane->next, n);
            lane->next += 128 * n;
            lane->blocks -= n;
        }
    }
    finish_lanes(m, done, &ndone);
    return ndone;
}

void CimfsTestObjectIds(const void *data, const size_t *lengths, size_t count, uint8_t *digests24)
{
    cim_objid_lanes m;
    const uint8_t *p = (const uint8_t *)data;
    void *done[CIM_OBJID_LANES];
    size_t added = 0, finished = 0;
    cim_objid_lanes_init(&m);
    while (finished < count) {
        while (added < count && cim_objid_lanes_room(&m)) {
            /* a tag must not be NULL: the message's number plus one */
            cim_objid_lanes_add(&m, p, lengths[added], digests24 + CIM_DIGEST_SIZE * added, (void *)(uintptr_t)(added + 1));
            p += lengths[added++];
        }
        finished += cim_objid_lanes_run(&m, done);
    }
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
