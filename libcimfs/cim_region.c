/*
 * cim_region.c - region files being written, their object-ID files, and the
 * dedup index.
 *
 * A region is written under a temporary name through a write-behind buffer;
 * the open stream always sits at the region's tail, so dropping a stream that
 * turned out to be a duplicate is just moving the end back (rewind).  With a
 * writer (cim_writer.c) full buffers are written on its thread.
 */
#include "cim_internal.h"

#include <stdio.h>

#define CIM_REGION_BUFFER (1u << 20)
/* Writeback of the region file is started every this many bytes, so that
 * the disk works while the image is built and the commit's fsync waits for
 * little (0.46 s of a 1.4 GB layer build here without it). */
#define CIM_WRITEBACK_STEP (32u << 20)

static const uint8_t g_zeros[CIM_PAGE];

void cim_guid_text(const uint8_t g[16], char out[40])
{
    snprintf(out, 40, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", (unsigned)cim_get32(g),
             (unsigned)cim_get16(g + 4), (unsigned)cim_get16(g + 6), g[8], g[9], g[10], g[11], g[12], g[13],
             g[14], g[15]);
}

static cim_nchar *file_name(const cim_nchar *dir, const char *kind, const char *guid_text, uint16_t local_index)
{
    char name[96];
    snprintf(name, sizeof name, "%s_%s_%u", kind, guid_text, (unsigned)local_index);
    return cim_native_join(dir, name);
}

HRESULT cim_region_rename_set(cim_region *r, const cim_nchar *dir, const char *guid_text)
{
    cim_nchar *region = file_name(dir, "region", guid_text, r->local_index);
    cim_nchar *objid = file_name(dir, "objectid", guid_text, r->local_index);
    if (!region || !objid) {
        free(region);
        free(objid);
        return CIMFS_E_OUTOFMEMORY;
    }
    free(r->final_path);
    free(r->objid_final_path);
    r->final_path = region;
    r->objid_final_path = objid;
    return CIMFS_S_OK;
}

HRESULT cim_region_open(cim_region *r, const cim_nchar *dir, const char *guid_text, uint16_t local_index,
                        uint32_t global_index, uint8_t type)
{
    char name[96];
    uint8_t hdr[CIM_REGION_HEADER_SIZE];
    HRESULT hr;
    memset(r, 0, sizeof *r);
    r->local_index = local_index;
    r->global_index = global_index;
    r->type = type;
    snprintf(name, sizeof name, "region_%s_%u", guid_text, (unsigned)local_index);
    r->final_path = cim_native_join(dir, name);
    snprintf(name, sizeof name, CIM_TMP_PREFIX "region_%s_%u", guid_text, (unsigned)local_index);
    r->tmp_path = cim_native_join(dir, name);
    snprintf(name, sizeof name, "objectid_%s_%u", guid_text, (unsigned)local_index);
    r->objid_final_path = cim_native_join(dir, name);
    snprintf(name, sizeof name, CIM_TMP_PREFIX "objectid_%s_%u", guid_text, (unsigned)local_index);
    r->objid_tmp_path = cim_native_join(dir, name);
    r->buf_cap = CIM_REGION_BUFFER;
    r->buf = (uint8_t *)malloc(r->buf_cap);
    if (!r->final_path || !r->tmp_path || !r->objid_final_path || !r->objid_tmp_path || !r->buf)
        return CIMFS_E_OUTOFMEMORY;
    hr = cim_file_create_new(r->tmp_path, &r->file);
    if (hr < 0) return hr;
    /* The version is stamped by cim_region_finish: it may be chosen after this. */
    cim_put_common_header(hdr, CIM_REGION_HEADER_SIZE, CIM_FT_REGION, CIM_VERSION_MAJOR);
    cim_put16(hdr + 32, 0); /* Index: Microsoft writes 0 in every region file (docs/format.md §4) */
    hdr[34] = type;
    hdr[35] = 0;
    cim_put32(hdr + 36, 0);
    return cim_region_write(r, hdr, sizeof hdr);
}

/* Writes p[0..n) at buf_start, on the writer's thread when `owned` (p is
 * then the writer's, a buffer of owned_cap bytes), else here; then starts
 * writeback every step. */
static HRESULT put(cim_region *r, const uint8_t *p, size_t n, uint8_t *owned, size_t owned_cap)
{
    uint64_t end = r->buf_start + n, wb_from = 0, wb_len = 0;
    HRESULT hr;
    if (end - r->writeback_from >= CIM_WRITEBACK_STEP) {
        wb_from = r->writeback_from;
        wb_len = end - wb_from;
        r->writeback_from = end;
    }
    if (owned) {
        hr = cim_writer_submit(r->writer, r->file, owned, owned_cap, n, r->buf_start, wb_from, wb_len);
    } else {
        if (r->writer) hr = cim_writer_wait(r->writer); /* queued bytes first */
        else hr = CIMFS_S_OK;
        if (hr >= 0) hr = cim_file_pwrite(r->file, p, n, r->buf_start);
        if (hr >= 0 && wb_len) cim_file_start_writeback(r->file, wb_from, wb_len);
    }
    if (hr < 0) return hr;
    r->buf_start = end;
    return CIMFS_S_OK;
}

static HRESULT flush(cim_region *r)
{
    HRESULT hr;
    uint8_t *fresh = NULL;
    size_t fresh_cap = 0;
    if (r->buf_len == 0) return CIMFS_S_OK;
    /* With a writer, the full buffer goes to it and a fresh one takes its place. */
    if (r->writer) fresh = cim_bufpool_get(r->pool, CIM_REGION_BUFFER, &fresh_cap);
    if (fresh) {
        uint8_t *full = r->buf;
        size_t full_cap = r->buf_cap;
        r->buf = fresh;
        r->buf_cap = fresh_cap;
        hr = put(r, full, r->buf_len, full, full_cap);
    } else {
        hr = put(r, r->buf, r->buf_len, NULL, 0);
    }
    if (hr < 0) return hr;
    r->buf_len = 0;
    return CIMFS_S_OK;
}

HRESULT cim_region_write(cim_region *r, const void *p, size_t n)
{
    const uint8_t *src = (const uint8_t *)p;
    HRESULT hr;
    if (r->end + n > CIM_OFFSET_MASK) return CIMFS_HR_DISK_FULL; /* a region holds 2^48 bytes */
    if (r->buf_len + n > r->buf_cap) {
        hr = flush(r);
        if (hr < 0) return hr;
        /* Without a writer thread large writes bypass the buffer.  With one
         * they go through its buffers: copying them costs the caller less
         * than the kernel's copy into the page cache (the plain layer's
         * files over 32 MiB: 0.2 s), and the caller no longer waits for the
         * writer to empty its queue first. */
        if (n >= r->buf_cap && !r->writer) {
            hr = put(r, src, n, NULL, 0);
            if (hr < 0) return hr;
            r->end += n;
            return CIMFS_S_OK;
        }
        while (n > r->buf_cap - r->buf_len) {
            size_t k = r->buf_cap - r->buf_len;
            memcpy(r->buf + r->buf_len, src, k);
            r->buf_len += k;
            r->end += k;
            src += k;
            n -= k;
            hr = flush(r);
            if (hr < 0) return hr;
        }
    }
    memcpy(r->buf + r->buf_len, src, n);
    r->buf_len += n;
    r->end += n;
    return CIMFS_S_OK;
}

HRESULT cim_region_write_owned(cim_region *r, uint8_t *p, size_t cap, size_t n, int *taken)
{
    HRESULT hr;
    *taken = 0;
    if (!r->writer || n < CIM_REGION_BUFFER) return cim_region_write(r, p, n);
    if (r->end + n > CIM_OFFSET_MASK) return CIMFS_HR_DISK_FULL;
    hr = flush(r);
    if (hr < 0) return hr;
    *taken = 1;
    hr = put(r, p, n, p, cap);
    if (hr < 0) return hr;
    r->end += n;
    return CIMFS_S_OK;
}

HRESULT cim_region_zeros(cim_region *r, uint64_t n)
{
    while (n > 0) {
        size_t k = n > sizeof g_zeros ? sizeof g_zeros : (size_t)n;
        HRESULT hr = cim_region_write(r, g_zeros, k);
        if (hr < 0) return hr;
        n -= k;
    }
    return CIMFS_S_OK;
}

HRESULT cim_region_align(cim_region *r, uint64_t alignment)
{
    uint64_t pad = (alignment - (r->end % alignment)) % alignment;
    return cim_region_zeros(r, pad);
}

void cim_region_rewind(cim_region *r, uint64_t to)
{
    if (to >= r->buf_start) {
        r->buf_len = (size_t)(to - r->buf_start);
    } else {
        /* Bytes already on disk past `to` are overwritten later or cut off by
         * the truncate in cim_region_finish. */
        r->buf_start = to;
        r->buf_len = 0;
        if (r->writeback_from > to) r->writeback_from = to;
    }
    r->end = to;
}

HRESULT cim_region_finish(cim_region *r, uint32_t major)
{
    HRESULT hr;
    if (r->type == CIM_RT_DATA) {
        hr = cim_region_align(r, CIM_PAGE);
        if (hr < 0) return hr;
    }
    hr = flush(r);
    if (hr >= 0 && r->writer) hr = cim_writer_wait(r->writer); /* before the stamp, truncate and fsync */
    if (hr < 0) return hr;
    {
        uint8_t version[4];
        cim_put32(version, major);
        hr = cim_file_pwrite(r->file, version, sizeof version, 16);
        if (hr < 0) return hr;
    }
    hr = cim_file_truncate(r->file, r->end);
    if (hr < 0) return hr;
    hr = cim_file_sync(r->file);
    if (hr < 0) return hr;
    cim_file_close(r->file);
    r->file = NULL;
    return CIMFS_S_OK;
}

HRESULT cim_region_add_objid(cim_region *r, uint64_t length, const uint8_t *digest, uint64_t offset)
{
    if (r->nids == r->ids_cap) {
        size_t cap = r->ids_cap ? r->ids_cap * 2 : 256;
        cim_objid *ids = (cim_objid *)realloc(r->ids, cap * sizeof *ids);
        if (!ids) return CIMFS_E_OUTOFMEMORY;
        r->ids = ids;
        r->ids_cap = cap;
    }
    r->ids[r->nids].length = length;
    memcpy(r->ids[r->nids].digest, digest, CIM_DIGEST_SIZE);
    r->ids[r->nids].offset = offset;
    r->nids++;
    return CIMFS_S_OK;
}

static int objid_cmp(const void *a, const void *b)
{
    const cim_objid *x = (const cim_objid *)a, *y = (const cim_objid *)b;
    if (x->length != y->length) return x->length < y->length ? -1 : 1;
    return memcmp(x->digest, y->digest, CIM_DIGEST_SIZE);
}

HRESULT cim_region_write_objid_file(cim_region *r, uint32_t major)
{
    uint8_t hdr[CIM_OBJID_HEADER_SIZE], ent[CIM_OBJID_ENTRY_SIZE];
    cim_region w; /* a tiny writer reusing the region buffer logic */
    HRESULT hr;
    size_t i;
    if (r->nids > UINT32_MAX) return CIMFS_E_OUTOFMEMORY;
    if (r->nids > 1) qsort(r->ids, r->nids, sizeof *r->ids, objid_cmp);
    memset(&w, 0, sizeof w);
    w.buf_cap = CIM_REGION_BUFFER;
    w.buf = r->buf; /* the region is finished; its buffer is free */
    hr = cim_file_create_new(r->objid_tmp_path, &w.file);
    if (hr < 0) return hr;
    cim_put_common_header(hdr, CIM_OBJID_HEADER_SIZE, CIM_FT_OBJECTID, major);
    cim_put16(hdr + 32, r->local_index); /* here Microsoft writes the region's number */
    hdr[34] = r->type;
    hdr[35] = 0;
    cim_put32(hdr + 36, 0);
    cim_put32(hdr + 40, CIM_OBJID_HEADER_SIZE);
    cim_put32(hdr + 44, (uint32_t)r->nids);
    hr = cim_region_write(&w, hdr, sizeof hdr);
    for (i = 0; hr >= 0 && i < r->nids; i++) {
        cim_put64(ent, r->ids[i].length);
        memcpy(ent + 8, r->ids[i].digest, CIM_DIGEST_SIZE);
        cim_put64(ent + 32, r->ids[i].offset);
        hr = cim_region_write(&w, ent, sizeof ent);
    }
    if (hr >= 0) hr = flush(&w);
    if (hr >= 0) hr = cim_file_sync(w.file);
    cim_file_close(w.file);
    return hr;
}

static HRESULT publish_file(const cim_nchar *tmp, const cim_nchar *final, int keep_existing, int *ours)
{
    HRESULT hr;
    if (keep_existing && cim_path_file_exists(final) == 1) return cim_path_unlink(tmp);
    hr = cim_path_rename(tmp, final);
    if (hr >= 0) *ours = 1;
    return hr;
}

HRESULT cim_region_publish(cim_region *r, int keep_existing)
{
    int ours = 0;
    HRESULT hr = publish_file(r->tmp_path, r->final_path, keep_existing, &ours);
    if (ours) r->renamed |= RENAMED_REGION;
    if (hr < 0) return hr;
    ours = 0;
    hr = publish_file(r->objid_tmp_path, r->objid_final_path, keep_existing, &ours);
    if (ours) r->renamed |= RENAMED_OBJID;
    return hr;
}

void cim_region_discard(cim_region *r)
{
    if (r->file) cim_file_close(r->file);
    if (r->tmp_path) (void)cim_path_unlink(r->tmp_path);
    if (r->objid_tmp_path) (void)cim_path_unlink(r->objid_tmp_path);
    if ((r->renamed & RENAMED_REGION) && r->final_path) (void)cim_path_unlink(r->final_path);
    if ((r->renamed & RENAMED_OBJID) && r->objid_final_path) (void)cim_path_unlink(r->objid_final_path);
    free(r->tmp_path);
    free(r->final_path);
    free(r->objid_tmp_path);
    free(r->objid_final_path);
    free(r->buf);
    free(r->ids);
    memset(r, 0, sizeof *r);
}

/* ---- dedup index: open addressing on the digest ---------------------------- */

HRESULT cim_dedup_init(cim_dedup *d)
{
    d->cap = 1024;
    d->count = 0;
    d->slots = (cim_dedup_slot *)calloc(d->cap, sizeof *d->slots);
    return d->slots ? CIMFS_S_OK : CIMFS_E_OUTOFMEMORY;
}

void cim_dedup_free(cim_dedup *d)
{
    free(d->slots);
    memset(d, 0, sizeof *d);
}

static size_t slot_of(const cim_dedup *d, uint64_t length, const uint8_t *digest)
{
    return (size_t)((cim_get64(digest) ^ length * UINT64_C(0x9E3779B97F4A7C15)) & (d->cap - 1));
}

cim_dedup_slot *cim_dedup_find(const cim_dedup *d, uint64_t length, const uint8_t *digest)
{
    size_t i = slot_of(d, length, digest);
    while (d->slots[i].offset != 0) {
        cim_dedup_slot *s = &d->slots[i];
        if (s->state != CIM_DEDUP_DEAD && s->length == length && memcmp(s->digest, digest, CIM_DIGEST_SIZE) == 0)
            return s;
        i = (i + 1) & (d->cap - 1);
    }
    return NULL;
}

static void insert(cim_dedup *d, const cim_dedup_slot *src)
{
    size_t i = slot_of(d, src->length, src->digest);
    while (d->slots[i].offset != 0) i = (i + 1) & (d->cap - 1);
    d->slots[i] = *src;
    d->count++;
}

HRESULT cim_dedup_add(cim_dedup *d, uint64_t length, const uint8_t *digest, uint64_t region_offset,
                      enum cim_dedup_state state)
{
    cim_dedup_slot slot;
    if (region_offset == 0 || cim_dedup_find(d, length, digest)) return CIMFS_S_OK;
    if ((d->count + 1) * 2 > d->cap) {
        cim_dedup bigger;
        size_t i;
        bigger.cap = d->cap * 2;
        bigger.count = 0;
        bigger.slots = (cim_dedup_slot *)calloc(bigger.cap, sizeof *bigger.slots);
        if (!bigger.slots) return CIMFS_E_OUTOFMEMORY;
        for (i = 0; i < d->cap; i++)
            if (d->slots[i].offset && d->slots[i].state != CIM_DEDUP_DEAD) insert(&bigger, &d->slots[i]);
        free(d->slots);
        *d = bigger;
    }
    memset(&slot, 0, sizeof slot);
    slot.length = length;
    memcpy(slot.digest, digest, CIM_DIGEST_SIZE);
    slot.offset = region_offset;
    slot.state = (uint8_t)state;
    insert(d, &slot);
    return CIMFS_S_OK;
}

/* Reads a parent's object back and compares its digest. */
static int parent_object_matches(cim_image *img, uint64_t offset, uint64_t length, const uint8_t *digest)
{
    uint32_t idx = CIM_OFFSET_INDEX(offset);
    uint64_t pos = CIM_OFFSET_BYTES(offset), done = 0;
    uint8_t buf[64 * 1024], got[CIM_DIGEST_SIZE];
    cim_objid_ctx ctx;
    if (idx >= img->parent_region_count || !img->parent_files || !img->parent_files[idx]) return 0;
    if (length > img->parent_sizes[idx] || pos > img->parent_sizes[idx] - length) return 0;
    cim_objid_init(&ctx);
    while (done < length) {
        size_t k = length - done > sizeof buf ? sizeof buf : (size_t)(length - done);
        if (cim_file_pread(img->parent_files[idx], buf, k, pos + done) < 0) return 0;
        cim_objid_update(&ctx, buf, k);
        done += k;
    }
    cim_objid_final(&ctx, got);
    return memcmp(got, digest, CIM_DIGEST_SIZE) == 0;
}

uint64_t cim_dedup_lookup(cim_image *img, uint64_t length, const uint8_t *digest)
{
    cim_dedup_slot *s = cim_dedup_find(&img->dedup, length, digest);
    if (!s) return 0;
    if (s->state == CIM_DEDUP_UNVERIFIED)
        s->state = (uint8_t)(parent_object_matches(img, s->offset, length, digest) ? CIM_DEDUP_TRUSTED : CIM_DEDUP_DEAD);
    return s->state == CIM_DEDUP_TRUSTED ? s->offset : 0;
}

HRESULT cim_dedup_remember(cim_image *img, cim_region *r, uint64_t length, const uint8_t *digest, uint64_t start)
{
    HRESULT hr = cim_region_add_objid(r, length, digest, start);
    if (hr >= 0) hr = cim_dedup_add(&img->dedup, length, digest, CIM_OFFSET(r->global_index, start), CIM_DEDUP_TRUSTED);
    return hr;
}
