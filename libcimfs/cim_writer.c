/*
 * cim_writer.c - region file writes on a helper thread.
 *
 * Copying a layer's bytes into the page cache (pwrite) took about a third of
 * the caller's time in a build, and the caller's thread is the one a build
 * waits for.  With helper threads allowed (cim_defer_enabled), a writer
 * thread takes each full write-behind buffer of a region, and each queued
 * stream placed whole, and writes them in the order given, while the caller
 * goes on filling the next buffer.  The caller still decides every offset,
 * so the files are the same byte for byte.
 *
 * Writes of one file happen in submission order, so a region rewound over
 * bytes still queued gets its newer bytes last.  The caller's own writes to
 * a region (large writes from memory it keeps, the version stamp, truncate)
 * first wait until everything queued is written (cim_writer_wait).  The
 * first failure sticks: every later submit and wait returns it, so it fails
 * the commit like a failure on the caller's thread would.
 */
#include "cim_internal.h"

/* Bytes queued and not yet written, at most: past it, submit waits. */
#define CIM_WRITER_MAX_BYTES (64u << 20)

typedef struct write_job {
    struct write_job *next;
    cim_file *file;
    uint8_t *bytes;             /* owned: back to the pool once written */
    size_t cap;
    size_t length;
    uint64_t offset;
    uint64_t writeback_from, writeback_length; /* cim_file_start_writeback after the write, if length */
} write_job;

struct cim_writer {
    cim_mutex *lock;
    cim_cond *changed;          /* a job was queued or done, or the thread must quit */
    cim_thread *thread;
    write_job *head, *tail;
    uint64_t queued;            /* bytes in jobs not yet done (the running one included) */
    int running;                /* the thread is writing a job it took off the queue */
    int quit;
    HRESULT error;              /* the first failure, sticky */
    cim_bufpool *pool;
};

static void writer_main(void *arg)
{
    cim_writer *w = (cim_writer *)arg;
    cim_mutex_lock(w->lock);
    for (;;) {
        write_job *j;
        HRESULT hr = CIMFS_S_OK;
        while (!w->head && !w->quit) cim_cond_wait(w->changed, w->lock);
        if (!w->head) break; /* quit, with nothing left to write */
        j = w->head;
        w->head = j->next;
        if (!w->head) w->tail = NULL;
        w->running = 1;
        if (w->error >= 0) {
            cim_mutex_unlock(w->lock);
            hr = cim_file_pwrite(j->file, j->bytes, j->length, j->offset);
            if (hr >= 0 && j->writeback_length) cim_file_start_writeback(j->file, j->writeback_from, j->writeback_length);
            cim_mutex_lock(w->lock);
        }
        if (hr < 0 && w->error >= 0) w->error = hr;
        w->running = 0;
        w->queued -= j->length;
        cim_bufpool_put(w->pool, j->bytes, j->cap);
        free(j);
        cim_cond_broadcast(w->changed);
    }
    cim_mutex_unlock(w->lock);
}

cim_writer *cim_writer_new(cim_bufpool *pool)
{
    cim_writer *w = (cim_writer *)calloc(1, sizeof *w);
    if (!w) return NULL;
    w->pool = pool;
    if (cim_worker_start(&w->lock, &w->changed, &w->thread, writer_main, w)) return w;
    free(w);
    return NULL;
}

HRESULT cim_writer_submit(cim_writer *w, cim_file *f, uint8_t *bytes, size_t cap, size_t length, uint64_t offset,
                          uint64_t writeback_from, uint64_t writeback_length)
{
    HRESULT hr;
    write_job *j = (write_job *)malloc(sizeof *j);
    if (!j) {
        cim_bufpool_put(w->pool, bytes, cap);
        return CIMFS_E_OUTOFMEMORY;
    }
    j->next = NULL;
    j->file = f;
    j->bytes = bytes;
    j->cap = cap;
    j->length = length;
    j->offset = offset;
    j->writeback_from = writeback_from;
    j->writeback_length = writeback_length;
    cim_mutex_lock(w->lock);
    while (w->queued && w->queued + length > CIM_WRITER_MAX_BYTES && w->error >= 0)
        cim_cond_wait(w->changed, w->lock);
    hr = w->error;
    if (hr >= 0) {
        if (w->tail) w->tail->next = j;
        else w->head = j;
        w->tail = j;
        w->queued += length;
        cim_cond_broadcast(w->changed);
    }
    cim_mutex_unlock(w->lock);
    if (hr < 0) {
        cim_bufpool_put(w->pool, bytes, cap);
        free(j);
    }
    return hr;
}

HRESULT cim_writer_wait(cim_writer *w)
{
    HRESULT hr;
    cim_mutex_lock(w->lock);
    /* After a failure the thread drops what is left without writing it. */
    while (w->head || w->running) cim_cond_wait(w->changed, w->lock);
    hr = w->error;
    cim_mutex_unlock(w->lock);
    return hr;
}

HRESULT cim_writer_free(cim_writer *w)
{
    HRESULT hr;
    if (!w) return CIMFS_S_OK;
    hr = cim_writer_wait(w);
    cim_mutex_lock(w->lock);
    w->quit = 1;
    cim_cond_broadcast(w->changed);
    cim_mutex_unlock(w->lock);
    cim_worker_join(w->lock, w->changed, w->thread);
    free(w);
    return hr;
}

void cim_writer_start(cim_image *img)
{
    int i;
    if (img->writer || img->threads == 1) return;
    img->writer = cim_writer_new(img->pool); /* NULL: the caller writes, as with threads 1 */
    for (i = 0; i < CIM_REGIONS_PER_SET; i++) {
        img->regions[i].writer = img->writer;
        img->regions[i].pool = img->pool;
    }
}

HRESULT cim_writer_stop(cim_image *img)
{
    HRESULT hr;
    int i;
    if (!img->writer) return CIMFS_S_OK;
    hr = cim_writer_free(img->writer);
    img->writer = NULL;
    for (i = 0; i < CIM_REGIONS_PER_SET; i++) img->regions[i].writer = NULL;
    /* regions[i].pool stays: their buffers may have come from it, and it outlives them */
    return hr;
}
