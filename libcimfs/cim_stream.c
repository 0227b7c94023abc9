/*
 * cim_stream.c - data streams: bytes go straight to a region file and into a
 * running object-ID digest (SHA-512) as they are written; at close the stream is zero-filled to
 * its declared size and looked up by (length, digest), so content the image
 * (or a parent) already holds is stored once.
 */
#include "cim_internal.h"

/* Streams up to this size go to the 8-aligned small-data region, larger ones
 * to the page-aligned data region.  Microsoft's images put 890 bytes in the
 * small region and 1046 in the data region (docs/format.md §17); 1024 is
 * the round number between. */
#define CIM_SMALL_DATA_MAX 1024

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
    cim_objid_init(&s->digest);
    if (s->capacity > 0) {
        int large = s->capacity > CIM_SMALL_DATA_MAX;
        s->region = &img->regions[large ? CIM_RT_DATA : CIM_RT_SMALL_DATA];
        s->pre_align = s->region->end;
        hr = cim_region_align(s->region, large ? CIM_PAGE : 8);
        s->start = s->region->end;
    }
    s->open = 1;
    return hr;
}

HRESULT cim_stream_write(cim_image *img, const void *buf, uint32_t n)
{
    cim_stream_state *s = &img->stream;
    uint64_t room = s->capacity - s->written;
    size_t take = n < room ? n : (size_t)room;
    HRESULT hr;
    if (take > 0) {
        hr = cim_region_write(s->region, buf, take);
        if (hr < 0) return hr;
        cim_objid_update(&s->digest, buf, take);
        s->written += take;
    }
    return take < n ? CIMFS_HR_HANDLE_EOF : CIMFS_S_OK;
}

static void store(cim_stream_state *s, uint64_t offset, uint64_t len_type)
{
    cim_dstream *d = s->ads ? &s->ads->stream : &s->node->data;
    d->offset = offset;
    d->len_type = len_type;
}

void cim_stream_abort(cim_image *img)
{
    cim_stream_state *s = &img->stream;
    s->open = 0;
    if (s->is_dir) return;
    if (s->region) cim_region_rewind(s->region, s->pre_align);
    store(s, cim_empty_stream_offset(img), CIM_STREAM_LT(s->capacity, CIM_STREAM_DATA) | CIM_STREAM_SPARSE);
}

HRESULT cim_stream_finish(cim_image *img)
{
    static const uint8_t zeros[CIM_PAGE];
    cim_stream_state *s = &img->stream;
    uint8_t digest[CIM_DIGEST_SIZE];
    uint64_t found, tail;
    HRESULT hr = CIMFS_S_OK;
    s->open = 0;
    if (s->is_dir) return CIMFS_S_OK;
    if (s->capacity == 0) {
        store(s, cim_empty_stream_offset(img), CIM_STREAM_LT(0, CIM_STREAM_DATA));
        return CIMFS_S_OK;
    }
    if (s->written == 0 && s->sparse_ok) {
        /* A sparse file never written: the whole stream reads as zeros, no data. */
        cim_region_rewind(s->region, s->pre_align);
        store(s, cim_empty_stream_offset(img), CIM_STREAM_LT(s->capacity, CIM_STREAM_DATA) | CIM_STREAM_SPARSE);
        return CIMFS_S_OK;
    }
    /* Short write: the unwritten tail reads back as zeros (docs/api.md §7.13). */
    for (tail = s->capacity - s->written; tail > 0;) {
        size_t k = tail > sizeof zeros ? sizeof zeros : (size_t)tail;
        hr = cim_region_write(s->region, zeros, k);
        if (hr < 0) break;
        cim_objid_update(&s->digest, zeros, k);
        tail -= k;
    }
    if (hr < 0) {
        cim_stream_abort(img); /* keep the image consistent; the error fails the commit */
        return hr;
    }
    cim_objid_final(&s->digest, digest);
    found = cim_dedup_lookup(img, s->capacity, digest);
    if (found) {
        cim_region_rewind(s->region, s->pre_align);
        store(s, found, CIM_STREAM_LT(s->capacity, CIM_STREAM_DATA));
        return CIMFS_S_OK;
    }
    hr = cim_dedup_remember(img, s->region, s->capacity, digest, s->start);
    if (hr < 0) {
        cim_stream_abort(img);
        return hr;
    }
    store(s, CIM_OFFSET(s->region->global_index, s->start), CIM_STREAM_LT(s->capacity, CIM_STREAM_DATA));
    return CIMFS_S_OK;
}
