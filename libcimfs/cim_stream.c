/*
 * cim_stream.c - data streams.  A stream of up to CIM_DEFER_MAX bytes is
 * collected in memory and, at close, handed to cim_defer.c, which hashes it
 * on a helper thread and places it in call order.  A larger one (or any, with
 * one writer thread) goes straight to a region file and into a running
 * object-ID digest (SHA-512) as it is written.  Either way the stream is
 * zero-filled to its declared size and looked up by (length, digest), so
 * content the image (or a parent) already holds is stored once.
 *
 * A file's primary stream may instead become a PE-image stream (cim_pe.h),
 * as Windows' writer stores executables unless CIM_CREATE_DO_NOT_EXPAND_PE_IMAGES
 * is given: its first bytes are held back until the PE headers decide, then
 * every byte goes to its place in the mapped layout, zeros between runs.
 */
#include "cim_internal.h"

/* Streams up to this size go to the 8-aligned small-data region, larger ones
 * to the page-aligned data region.  Microsoft's images put 890 bytes in the
 * small region and 1046 in the data region (docs/format.md §17); 1024 is
 * the round number between. */
#define CIM_SMALL_DATA_MAX 1024

/* Writes this large are hashed on the image's helper thread while the caller
 * writes them out (cim_offload): below it, the hand-over costs more than it saves. */
#define CIM_OFFLOAD_MIN (256u << 10)

static const uint8_t g_zeros[CIM_PAGE];

uint64_t cim_empty_stream_offset(const cim_image *img)
{
    /* Zero-length and sparse streams still need a non-null offset (docs/format.md
     * §16 #12): the end of the small-data region's header. */
    const cim_region *small = &img->regions[CIM_RT_SMALL_DATA];
    return CIM_OFFSET(small->global_index, CIM_REGION_HEADER_SIZE);
}

HRESULT cim_stream_begin(cim_image *img, cim_node *node, cim_ads *ads, uint64_t capacity, int sparse_ok)
{
    cim_stream_state *s = &img->stream;
    HRESULT hr = CIMFS_S_OK;
    s->node = node;
    s->ads = ads;
    s->is_dir = node->is_dir && !ads;
    s->sparse_ok = sparse_ok;
    s->capacity = s->is_dir ? 0 : capacity;
    s->written = 0;
    s->region = NULL;
    s->pe_state = CIM_PE_OFF;
    s->deferred = 0;
    s->offload = NULL;
    cim_objid_init(&s->digest);
    if (s->capacity > 0) {
        int large = s->capacity > CIM_SMALL_DATA_MAX;
        s->large = large;
        if (s->capacity <= CIM_DEFER_MAX && cim_defer_enabled(img)) {
            /* Hashed and placed later (cim_defer.c): the bytes wait in memory. */
            s->buf_len = 0;
            s->buf = cim_bufpool_get(img->pool, (size_t)s->capacity, &s->buf_cap);
            if (!s->buf) return CIMFS_E_OUTOFMEMORY;
            s->deferred = 1;
        } else {
            cim_defer_drain(img); /* queued effects come first */
            if (capacity >= CIM_OFFLOAD_MIN && img->threads != 1 && !img->offload) img->offload = cim_offload_new();
            s->offload = img->offload;
            s->region = &img->regions[large ? CIM_RT_DATA : CIM_RT_SMALL_DATA];
            s->pre_align = s->region->end;
            hr = cim_region_align(s->region, large ? CIM_PAGE : 8);
            s->start = s->region->end;
        }
        if (large && !ads && img->expand_pe && s->capacity <= CIM_PE_MAX_FILE) {
            if (!s->probe) s->probe = (uint8_t *)malloc(CIM_PE_PROBE_MAX); /* without it: plain data */
            s->pe_state = s->probe ? CIM_PE_PROBING : CIM_PE_OFF;
            s->probe_len = 0;
            s->probe_need = 2; /* "MZ" first */
        }
    }
    s->open = 1;
    return hr;
}

struct hash_job {
    cim_objid_ctx *digest;
    const void *p;
    size_t n;
};

static void run_hash_job(void *arg)
{
    struct hash_job *job = (struct hash_job *)arg;
    cim_objid_update(job->digest, job->p, job->n);
}

/* Bytes of a deferred stream: into its buffer (a PE layout may outgrow the file). */
static HRESULT buffer_bytes(cim_stream_state *s, const void *p, size_t n)
{
    if (n > s->buf_cap - s->buf_len) {
        size_t cap = s->buf_cap * 2 > s->buf_len + n ? s->buf_cap * 2 : s->buf_len + n;
        uint8_t *bigger = (uint8_t *)realloc(s->buf, cap);
        if (!bigger) return CIMFS_E_OUTOFMEMORY;
        s->buf = bigger;
        s->buf_cap = cap;
    }
    memcpy(s->buf + s->buf_len, p, n);
    s->buf_len += n;
    return CIMFS_S_OK;
}

/* How many bytes the stream has stored so far. */
static uint64_t stored(const cim_stream_state *s)
{
    return s->deferred ? s->buf_len : s->region->end - s->start;
}

/* Bytes as stored: into the region and the digest (large ones on two threads at once). */
static HRESULT store_bytes(cim_stream_state *s, const void *p, size_t n)
{
    HRESULT hr;
    if (s->deferred) return buffer_bytes(s, p, n);
    if (s->offload && n >= CIM_OFFLOAD_MIN) {
        struct hash_job job;
        job.digest = &s->digest;
        job.p = p;
        job.n = n;
        cim_offload_post(s->offload, run_hash_job, &job);
        hr = cim_region_write(s->region, p, n);
        cim_offload_wait(s->offload); /* a failed write fails the stream: the digest is moot */
        return hr;
    }
    hr = cim_region_write(s->region, p, n);
    if (hr >= 0) cim_objid_update(&s->digest, p, n);
    return hr;
}

static HRESULT store_zeros(cim_stream_state *s, uint64_t n)
{
    HRESULT hr = CIMFS_S_OK;
    while (hr >= 0 && n > 0) {
        size_t k = n > sizeof g_zeros ? sizeof g_zeros : (size_t)n;
        hr = store_bytes(s, g_zeros, k);
        n -= k;
    }
    return hr;
}

/* File bytes of a PE-image stream: each run starts at its stored offset. */
static HRESULT store_pe_bytes(cim_stream_state *s, const uint8_t *p, size_t n)
{
    const cim_pe_layout *L = &s->pe;
    HRESULT hr = CIMFS_S_OK;
    while (hr >= 0 && n > 0) {
        const cim_pe_run *run = &L->runs[s->pe_run];
        uint64_t run_end = s->pe_run + 1 < L->nruns ? L->runs[s->pe_run + 1].file_offset : L->file_length;
        uint64_t have = stored(s);
        size_t k = run_end - s->pe_in < n ? (size_t)(run_end - s->pe_in) : n;
        if (have < run->stored_offset) hr = store_zeros(s, run->stored_offset - have);
        if (hr >= 0) hr = store_bytes(s, p, k);
        s->pe_in += k;
        p += k;
        n -= k;
        if (s->pe_in == run_end && s->pe_run + 1 < L->nruns) s->pe_run++;
    }
    return hr;
}

static HRESULT store_file_bytes(cim_stream_state *s, const uint8_t *p, size_t n)
{
    return s->pe_state == CIM_PE_ON ? store_pe_bytes(s, p, n) : store_bytes(s, p, n);
}

/* Once the probe holds what the headers need (or `final`): PE layout or plain, then the probe's bytes. */
static HRESULT decide(cim_stream_state *s, int final)
{
    size_t need = 0;
    enum cim_pe_verdict v = cim_pe_plan(s->probe, s->probe_len, s->capacity, &need, &s->pe);
    if (v == CIM_PE_NEED_MORE && !final && need > s->probe_len && need <= CIM_PE_PROBE_MAX) {
        s->probe_need = need;
        return CIMFS_S_OK;
    }
    s->pe_state = v == CIM_PE_IMAGE ? CIM_PE_ON : CIM_PE_OFF;
    s->pe_in = 0;
    s->pe_run = 0;
    return store_file_bytes(s, s->probe, s->probe_len);
}

/* The stream's next file bytes, whatever the mode. */
static HRESULT feed(cim_stream_state *s, const uint8_t *p, size_t n)
{
    HRESULT hr = CIMFS_S_OK;
    while (s->pe_state == CIM_PE_PROBING && n > 0 && hr >= 0) {
        size_t k = s->probe_need - s->probe_len < n ? s->probe_need - s->probe_len : n;
        memcpy(s->probe + s->probe_len, p, k);
        s->probe_len += k;
        p += k;
        n -= k;
        if (s->probe_len == s->probe_need) hr = decide(s, 0);
    }
    if (hr < 0 || n == 0) return hr;
    return store_file_bytes(s, p, n);
}

HRESULT cim_stream_write(cim_image *img, const void *buf, uint32_t n)
{
    cim_stream_state *s = &img->stream;
    uint64_t room = s->capacity - s->written;
    size_t take = n < room ? n : (size_t)room;
    HRESULT hr;
    if (take > 0) {
        hr = feed(s, (const uint8_t *)buf, take);
        if (hr < 0) return hr;
        s->written += take;
    }
    return take < n ? CIMFS_HR_HANDLE_EOF : CIMFS_S_OK;
}

static void store_at(cim_node *node, cim_ads *ads, uint64_t offset, uint64_t len_type)
{
    cim_dstream *d = ads ? &ads->stream : &node->data;
    d->offset = offset;
    d->len_type = len_type;
}

static void store(cim_stream_state *s, uint64_t offset, uint64_t len_type)
{
    store_at(s->node, s->ads, offset, len_type);
}

static void drop_buffer(cim_image *img, cim_stream_state *s)
{
    cim_bufpool_put(img->pool, s->buf, s->buf_cap);
    s->buf = NULL;
    s->buf_len = s->buf_cap = 0;
}

void cim_stream_abort(cim_image *img)
{
    cim_stream_state *s = &img->stream;
    s->open = 0;
    if (s->is_dir) return;
    if (s->deferred) drop_buffer(img, s);
    else if (s->region) cim_region_rewind(s->region, s->pre_align);
    store(s, cim_empty_stream_offset(img), CIM_STREAM_LT(s->capacity, CIM_STREAM_DATA) | CIM_STREAM_SPARSE);
}

void cim_stream_store_empty(cim_image *img, const cim_deferred_stream *d)
{
    store_at(d->node, d->ads, cim_empty_stream_offset(img),
             CIM_STREAM_LT(d->capacity, CIM_STREAM_DATA) | CIM_STREAM_SPARSE);
}

/* A deferred stream's bytes are complete: queue them, with their PE layout. */
static HRESULT defer(cim_image *img)
{
    cim_stream_state *s = &img->stream;
    cim_deferred_stream d;
    HRESULT hr;
    d.node = s->node;
    d.ads = s->ads;
    d.large = s->large;
    d.bytes = s->buf;
    d.bytes_cap = s->buf_cap;
    d.length = s->buf_len;
    d.capacity = s->capacity;
    d.pe = NULL;
    if (s->pe_state == CIM_PE_ON) {
        d.pe = (cim_pe_layout *)malloc(sizeof *d.pe);
        if (!d.pe) return CIMFS_E_OUTOFMEMORY;
        *d.pe = s->pe;
    }
    hr = cim_defer_stream(img, &d);
    if (hr < 0) {
        free(d.pe);
        return hr;
    }
    s->buf = NULL; /* the queue owns it now */
    s->buf_len = s->buf_cap = 0;
    return CIMFS_S_OK;
}

/* A stream's stored bytes are at data_offset: record it in its node or ADS, a
 * PE-image stream through its descriptor in region 0. */
static HRESULT record_placed(cim_image *img, cim_node *node, cim_ads *ads, const cim_pe_layout *pe,
                             uint64_t capacity, uint64_t data_offset)
{
    uint8_t descriptor[CIM_PEIMAGE_SIZE + CIM_PEMAPPING_SIZE * CIM_PE_MAX_RUNS];
    uint64_t descriptor_offset = 0;
    size_t size;
    HRESULT hr;
    if (!pe) {
        store_at(node, ads, data_offset, CIM_STREAM_LT(capacity, CIM_STREAM_DATA));
        return CIMFS_S_OK;
    }
    size = cim_pe_descriptor(pe, data_offset, descriptor);
    hr = cim_put_object(img, &img->regions[CIM_RT_METADATA], descriptor, size, 8, &descriptor_offset);
    if (hr >= 0) store_at(node, ads, descriptor_offset, CIM_STREAM_LT(capacity, CIM_STREAM_PE_IMAGE));
    return hr;
}

HRESULT cim_stream_place(cim_image *img, cim_deferred_stream *d, const uint8_t *digest)
{
    cim_region *r = &img->regions[d->large ? CIM_RT_DATA : CIM_RT_SMALL_DATA];
    uint64_t data_offset = cim_dedup_lookup(img, d->length, digest);
    HRESULT hr = CIMFS_S_OK;
    if (!data_offset) { /* new content: aligned as the writer aligns every object */
        uint64_t start;
        int taken = 0;
        hr = cim_region_align(r, d->large ? CIM_PAGE : 8);
        start = r->end;
        if (hr >= 0) hr = cim_region_write_owned(r, d->bytes, d->bytes_cap, (size_t)d->length, &taken);
        if (taken) d->bytes = NULL; /* the region writer's now */
        if (hr >= 0) hr = cim_dedup_remember(img, r, d->length, digest, start);
        if (hr < 0) return hr;
        data_offset = CIM_OFFSET(r->global_index, start);
    }
    return record_placed(img, d->node, d->ads, d->pe, d->capacity, data_offset);
}

/* The stored bytes are complete: deduplicate them and record where they are. */
static HRESULT place(cim_image *img, uint64_t length, uint64_t *data_offset)
{
    cim_stream_state *s = &img->stream;
    uint8_t digest[CIM_DIGEST_SIZE];
    uint64_t found;
    cim_objid_final(&s->digest, digest);
    found = cim_dedup_lookup(img, length, digest);
    if (found) {
        cim_region_rewind(s->region, s->pre_align);
        *data_offset = found;
        return CIMFS_S_OK;
    }
    *data_offset = CIM_OFFSET(s->region->global_index, s->start);
    return cim_dedup_remember(img, s->region, length, digest, s->start);
}

/* A PE-image stream: pad the layout to its length, store it, then its descriptor in region 0. */
static HRESULT finish_pe(cim_image *img)
{
    cim_stream_state *s = &img->stream;
    uint64_t data_offset;
    HRESULT hr = store_zeros(s, s->pe.stored_length - stored(s));
    if (hr >= 0 && s->deferred) return defer(img);
    if (hr >= 0) hr = place(img, s->pe.stored_length, &data_offset);
    if (hr < 0) return hr;
    return record_placed(img, s->node, s->ads, &s->pe, s->capacity, data_offset);
}

static HRESULT finish_data(cim_image *img)
{
    cim_stream_state *s = &img->stream;
    HRESULT hr = CIMFS_S_OK;
    uint64_t tail;
    /* Short write: the unwritten tail reads back as zeros (docs/api.md §7.13). */
    for (tail = s->capacity - s->written; hr >= 0 && tail > 0;) {
        size_t k = tail > sizeof g_zeros ? sizeof g_zeros : (size_t)tail;
        hr = feed(s, g_zeros, k);
        tail -= k;
    }
    if (hr >= 0 && s->pe_state == CIM_PE_PROBING) hr = decide(s, 1);
    if (hr >= 0 && s->pe_state == CIM_PE_ON) return finish_pe(img);
    if (hr >= 0 && s->deferred) return defer(img);
    if (hr >= 0) {
        uint64_t data_offset;
        hr = place(img, s->capacity, &data_offset);
        if (hr >= 0) hr = record_placed(img, s->node, s->ads, NULL, s->capacity, data_offset);
    }
    return hr;
}

HRESULT cim_stream_finish(cim_image *img)
{
    cim_stream_state *s = &img->stream;
    HRESULT hr = CIMFS_S_OK;
    s->open = 0;
    if (!s->is_dir) {
        if (s->capacity == 0) {
            store(s, cim_empty_stream_offset(img), CIM_STREAM_LT(0, CIM_STREAM_DATA));
        } else if (s->written == 0 && s->sparse_ok) {
            /* A sparse file never written: the whole stream reads as zeros, no data. */
            if (s->deferred) drop_buffer(img, s);
            else cim_region_rewind(s->region, s->pre_align);
            store(s, cim_empty_stream_offset(img), CIM_STREAM_LT(s->capacity, CIM_STREAM_DATA) | CIM_STREAM_SPARSE);
        } else {
            hr = finish_data(img);
            if (hr < 0) {
                cim_stream_abort(img); /* keep the image consistent; the error fails the commit */
                return hr;
            }
        }
    }
    /* The file's EA buffer follows its data's metadata, as in Microsoft's images. */
    if (!s->ads) hr = cim_defer_blob(img, s->node->ea);
    return hr;
}
