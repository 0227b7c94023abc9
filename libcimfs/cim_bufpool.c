/*
 * cim_bufpool.c - large buffers used again instead of freed.
 *
 * A queued stream's bytes (cim_defer.c) and a region's write-behind buffer
 * live a short while, and with helper threads they are freed on another
 * thread than the one that allocated them (cim_writer.c).  Large blocks come
 * from the C library as fresh pages, and the first touch of each page costs
 * a page fault and a page cleared by the kernel: about 0.2 s of the caller's
 * time for a 1.4 GB layer here.  The pool keeps freed buffers, by size class,
 * up to CIM_BUFPOOL_KEEP bytes, and hands them out again.
 *
 * Classes run from CIM_BUFPOOL_MIN up to CIM_DEFER_MAX, four per doubling
 * (1, 1.25, 1.5, 1.75 times a power of two), so a buffer is at most 25%
 * larger than asked for.  Smaller and larger buffers are plain malloc/free.
 */
#include "cim_internal.h"

#define CIM_BUFPOOL_MIN (64u << 10)
#define CIM_BUFPOOL_KEEP (64u << 20)
#define NCLASSES 37 /* 64 KiB .. 32 MiB: 9 doublings of 4, and 32 MiB itself */

struct cim_bufpool {
    cim_mutex *lock;
    void *free[NCLASSES];       /* each buffer's first bytes point at the next */
    uint64_t kept;
};

static size_t class_size(unsigned c) { return ((size_t)CIM_BUFPOOL_MIN << (c / 4)) / 4 * (4 + c % 4); }

cim_bufpool *cim_bufpool_new(void)
{
    cim_bufpool *p = (cim_bufpool *)calloc(1, sizeof *p);
    if (!p) return NULL;
    p->lock = cim_mutex_new();
    if (p->lock) return p;
    free(p);
    return NULL;
}

void cim_bufpool_free(cim_bufpool *p)
{
    unsigned c;
    if (!p) return;
    for (c = 0; c < NCLASSES; c++)
        while (p->free[c]) {
            void *b = p->free[c];
            memcpy(&p->free[c], b, sizeof(void *));
            free(b);
        }
    cim_mutex_free(p->lock);
    free(p);
}

uint8_t *cim_bufpool_get(cim_bufpool *p, size_t n, size_t *cap)
{
    unsigned c = 0;
    void *b = NULL;
    *cap = n;
    if (!p || n < CIM_BUFPOOL_MIN || n > class_size(NCLASSES - 1)) return (uint8_t *)malloc(n ? n : 1);
    while (class_size(c) < n) c++;
    cim_mutex_lock(p->lock);
    if (p->free[c]) {
        b = p->free[c];
        memcpy(&p->free[c], b, sizeof(void *));
        p->kept -= class_size(c);
    }
    cim_mutex_unlock(p->lock);
    if (!b) b = malloc(class_size(c));
    if (b) *cap = class_size(c);
    return (uint8_t *)b;
}

void cim_bufpool_put(cim_bufpool *p, uint8_t *b, size_t cap)
{
    unsigned c = NCLASSES - 1;
    if (!b) return;
    if (!p || cap < CIM_BUFPOOL_MIN) {
        free(b);
        return;
    }
    while (class_size(c) > cap) c--; /* it holds at least that class's size */
    cim_mutex_lock(p->lock);
    if (p->kept + class_size(c) <= CIM_BUFPOOL_KEEP) {
        memcpy(b, &p->free[c], sizeof(void *));
        p->free[c] = b;
        p->kept += class_size(c);
        b = NULL;
    }
    cim_mutex_unlock(p->lock);
    free(b);
}
