/*
 * cim_defer.c - streams hashed on helper threads, placed in API order.
 *
 * Every stored byte needs its object ID (SHA-512) before it can be placed:
 * a duplicate is not stored, so where the next object goes depends on it.
 * Hashing one file after another keeps one core busy.  Instead, a closed
 * stream of up to CIM_DEFER_MAX bytes waits in memory (its stored bytes,
 * PE layout applied) while helper threads hash it, and every region effect
 * from then on (the stream's data, PE descriptor and EA, and each SD,
 * reparse buffer or EA put after it) joins one queue that the caller's
 * thread replays in API order once the digests are known.  Hashing of
 * different files so runs on several cores while the caller goes on, and
 * the image is byte-identical to one written on a single thread.
 *
 * The queue holds at most CIM_DEFER_BYTES bytes and CIM_DEFER_ITEMS items; the
 * caller hashes the oldest item itself rather than wait idle.  Whatever
 * could read or free what a queued item points at (commit, links, deletes,
 * alternate streams, replacing a name, a large stream) drains the queue
 * first (cim_defer_drain).
 */
#include "cim_internal.h"

#define CIM_DEFER_BYTES (96u << 20)
#define CIM_DEFER_ITEMS 4096u
#define CIM_DEFER_WORKERS_MAX 16u

enum { ITEM_BLOB, ITEM_STREAM };
enum { HASH_WAITING, HASH_RUNNING, HASH_DONE };

struct cim_deferred {
    struct cim_deferred *next;   /* placement order */
    struct cim_deferred *hnext;  /* streams not yet claimed for hashing, in order */
    int kind;
    int hash_state;
    cim_blob *blob;              /* ITEM_BLOB */
    cim_deferred_stream s;       /* ITEM_STREAM */
    uint8_t digest[CIM_DIGEST_SIZE];
};

struct cim_defer {
    cim_mutex *lock;
    cim_cond *changed;           /* an item was hashed, queued, or the workers must quit */
    cim_thread *workers[CIM_DEFER_WORKERS_MAX];
    unsigned nworkers;
    cim_deferred *head, *tail;
    cim_deferred *hash_head, *hash_tail;
    uint64_t bytes;
    uint32_t items;
    unsigned waiting;            /* callers waiting for a claimed stream's digest */
    int quit;
};

/* Takes the oldest stream no thread has claimed off the unclaimed list and
 * marks it running; q->lock held, q->hash_head not NULL. */
static cim_deferred *claim_oldest(cim_defer *q)
{
    cim_deferred *d = q->hash_head;
    q->hash_head = d->hnext;
    if (!q->hash_head) q->hash_tail = NULL;
    d->hash_state = HASH_RUNNING;
    return d;
}

/* Claims the oldest unclaimed stream and hashes it; called and returns with
 * q->lock held (released while hashing). */
static void hash_oldest(cim_defer *q)
{
    cim_deferred *d = claim_oldest(q);
    cim_mutex_unlock(q->lock);
    cim_objid_digest(d->s.bytes, (size_t)d->s.length, d->digest);
    cim_mutex_lock(q->lock);
    d->hash_state = HASH_DONE;
    cim_cond_broadcast(q->changed);
}

/* A helper claims the oldest unclaimed streams, as many as its hashing
 * lanes take (eight with AVX-512, see cim_objid.h), and hashes them side by
 * side, filling a lane again as soon as its stream is done.  With too few
 * streams to fill the lanes well it waits for more, unless the caller waits
 * for one of them (a drain, or a full queue): when the source is the slow
 * part (decompression), the CPU that saves goes to it. */
static void worker_main(void *arg)
{
    cim_defer *q = (cim_defer *)arg;
    cim_objid_lanes lanes;
    void *done[CIM_OBJID_LANES];
    unsigned i, ndone;
    cim_objid_lanes_init(&lanes);
    cim_mutex_lock(q->lock);
    for (;;) {
        while (q->hash_head && cim_objid_lanes_room(&lanes)) {
            cim_deferred *d = claim_oldest(q);
            cim_objid_lanes_add(&lanes, d->s.bytes, (size_t)d->s.length, d->digest, d);
        }
        if (q->quit) break;
        if (!lanes.busy || (!cim_objid_lanes_efficient(&lanes) && !q->waiting)) {
            cim_cond_wait(q->changed, q->lock);
            continue;
        }
        cim_mutex_unlock(q->lock);
        ndone = cim_objid_lanes_run(&lanes, done);
        cim_mutex_lock(q->lock);
        for (i = 0; i < ndone; i++) ((cim_deferred *)done[i])->hash_state = HASH_DONE;
        if (ndone) cim_cond_broadcast(q->changed);
    }
    cim_mutex_unlock(q->lock);
}

int cim_defer_enabled(cim_image *img)
{
    cim_defer *q;
    unsigned want, i;
    if (img->threads == 1) return 0;
    if (img->defer) return 1;
    want = img->threads == 0 ? 1 : img->threads - 1;
    if (want > CIM_DEFER_WORKERS_MAX) want = CIM_DEFER_WORKERS_MAX;
    q = (cim_defer *)calloc(1, sizeof *q);
    if (!q) return 0;
    q->lock = cim_mutex_new();
    q->changed = cim_cond_new();
    if (q->lock && q->changed)
        for (i = 0; i < want; i++) {
            q->workers[q->nworkers] = cim_thread_start(worker_main, q);
            if (q->workers[q->nworkers]) q->nworkers++;
        }
    if (q->nworkers) cim_writer_start(img);
    if (!q->nworkers) { /* no threads here: stay synchronous */
        cim_cond_free(q->changed);
        cim_mutex_free(q->lock);
        free(q);
        img->threads = 1;
        return 0;
    }
    img->defer = q;
    return 1;
}

static void free_item(cim_image *img, cim_deferred *d)
{
    if (d->kind == ITEM_STREAM) {
        cim_bufpool_put(img->pool, d->s.bytes, d->s.bytes_cap);
        free(d->s.pe);
    }
    free(d);
}

void cim_defer_free(cim_image *img)
{
    cim_defer *q = img->defer;
    unsigned i;
    if (!q) return;
    cim_mutex_lock(q->lock);
    q->quit = 1;
    cim_cond_broadcast(q->changed);
    cim_mutex_unlock(q->lock);
    for (i = 0; i < q->nworkers; i++) cim_thread_join(q->workers[i]);
    while (q->head) {
        cim_deferred *d = q->head;
        q->head = d->next;
        free_item(img, d);
    }
    cim_cond_free(q->changed);
    cim_mutex_free(q->lock);
    free(q);
    img->defer = NULL;
}

/* Places one item as the synchronous writer would have at that point.  A
 * failure fails the commit (io_error); the stream then reads as zeros. */
static void place_item(cim_image *img, cim_deferred *d)
{
    uint64_t ignored;
    HRESULT hr = img->io_error;
    if (d->kind == ITEM_BLOB) {
        if (hr >= 0) hr = cim_put_blob(img, d->blob, &ignored);
    } else {
        if (hr >= 0) hr = cim_stream_place(img, &d->s, d->digest);
        if (hr < 0) cim_stream_store_empty(img, &d->s);
    }
    if (hr < 0 && img->io_error >= 0) img->io_error = hr;
}

/* Places what is ready; then, while more than `keep` bytes or too many items
 * wait (keep 0: anything), hashes or waits for the oldest and places it. */
static void settle(cim_image *img, uint64_t keep)
{
    cim_defer *q = img->defer;
    cim_mutex_lock(q->lock);
    while (q->head) {
        cim_deferred *d = q->head;
        int must = keep == 0 || q->bytes > keep || q->items > CIM_DEFER_ITEMS;
        if (d->kind == ITEM_STREAM && d->hash_state != HASH_DONE) {
            if (!must) break;
            if (d->hash_state == HASH_WAITING) { /* d heads the unclaimed streams too: hash it here */
                hash_oldest(q);
            } else {
                q->waiting++;
                cim_cond_broadcast(q->changed); /* a helper waiting for fuller lanes: go on */
                cim_cond_wait(q->changed, q->lock);
                q->waiting--;
            }
            continue;
        }
        q->head = d->next;
        if (!q->head) q->tail = NULL;
        if (d->kind == ITEM_STREAM) q->bytes -= d->s.length;
        q->items--;
        cim_mutex_unlock(q->lock);
        place_item(img, d);
        free_item(img, d);
        cim_mutex_lock(q->lock);
    }
    cim_mutex_unlock(q->lock);
}

void cim_defer_drain(cim_image *img)
{
    if (img->defer) settle(img, 0);
}

static void append(cim_image *img, cim_deferred *d)
{
    cim_defer *q = img->defer;
    cim_mutex_lock(q->lock);
    if (q->tail) q->tail->next = d;
    else q->head = d;
    q->tail = d;
    q->items++;
    if (d->kind == ITEM_STREAM) {
        d->hash_state = HASH_WAITING;
        if (q->hash_tail) q->hash_tail->hnext = d;
        else q->hash_head = d;
        q->hash_tail = d;
        q->bytes += d->s.length;
        cim_cond_broadcast(q->changed);
    }
    cim_mutex_unlock(q->lock);
    settle(img, CIM_DEFER_BYTES);
}

int cim_defer_pending(const cim_image *img)
{
    int any;
    if (!img->defer) return 0;
    cim_mutex_lock(img->defer->lock);
    any = img->defer->head != NULL;
    cim_mutex_unlock(img->defer->lock);
    return any;
}

HRESULT cim_defer_blob(cim_image *img, cim_blob *b)
{
    uint64_t ignored;
    cim_deferred *d;
    if (!b) return CIMFS_S_OK;
    if (!cim_defer_pending(img)) return cim_put_blob(img, b, &ignored);
    d = (cim_deferred *)calloc(1, sizeof *d);
    if (!d) return CIMFS_E_OUTOFMEMORY;
    d->kind = ITEM_BLOB;
    d->blob = b;
    append(img, d);
    return CIMFS_S_OK;
}

HRESULT cim_defer_stream(cim_image *img, const cim_deferred_stream *s)
{
    cim_deferred *d = (cim_deferred *)calloc(1, sizeof *d);
    if (!d) return CIMFS_E_OUTOFMEMORY;
    d->kind = ITEM_STREAM;
    d->s = *s; /* takes over s->bytes and s->pe */
    append(img, d);
    return CIMFS_S_OK;
}
