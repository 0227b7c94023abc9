/*
 * cim_commit.c - serialize the namespace into the metadata region and
 * publish the image atomically (docs/format.md §14), in the order
 * Microsoft's writer uses where its images show it:
 *
 *   1. upcase table
 *   2. dense FileIDs in creation order (root = 1), then each directory's
 *      link table, newest directory first, sorted by the image's own
 *      upcase table
 *   3. SDs, EAs, reparse buffers and stream tables as records need them,
 *      then the file tables, 1024 records each (88 bytes in format 1.0)
 *   4. the file table directory and the Filesystem object
 *   5. regions and objectid files finished and synced under temporary names,
 *      renamed to their final names, then the .cim written to a temporary
 *      name, synced, and renamed over the final name last.
 *
 * A failure or crash before step 5's last rename leaves no .cim naming the
 * new regions, and an image committed before is never modified.
 */
#include "cim_internal.h"
#include "cim_upcase.h"

/* Default SD when none is given: SDDL D:NO_ACCESS_CONTROL (docs/format.md §12). */
const uint8_t cim_null_dacl_sd[CIM_NULL_DACL_SD_SIZE] = {0x01, 0x00, 0x04, 0x80};

HRESULT cim_put_object(cim_image *img, cim_region *r, const void *p, size_t n, uint64_t alignment,
                       uint64_t *out)
{
    uint8_t digest[CIM_DIGEST_SIZE];
    uint64_t found, start;
    HRESULT hr;
    cim_objid_digest(p, n, digest);
    found = cim_dedup_lookup(img, n, digest);
    if (found) {
        *out = found;
        return CIMFS_S_OK;
    }
    hr = cim_region_align(r, alignment);
    if (hr < 0) return hr;
    start = r->end;
    hr = cim_region_write(r, p, n);
    if (hr >= 0) hr = cim_dedup_remember(img, r, n, digest, start);
    *out = CIM_OFFSET(r->global_index, start);
    return hr;
}

HRESULT cim_put_blob(cim_image *img, cim_blob *b, uint64_t *out)
{
    cim_region *meta = &img->regions[CIM_RT_METADATA];
    HRESULT hr;
    if (!b) {
        *out = 0;
        return CIMFS_S_OK;
    }
    if (!b->offset) {
        if (b->kind == CIM_BLOB_EA) {
            hr = cim_put_object(img, meta, b->data, b->len, 8, &b->offset);
        } else { /* u16-counted */
            uint8_t *tmp = (uint8_t *)malloc(2 + (size_t)b->len);
            if (!tmp) return CIMFS_E_OUTOFMEMORY;
            cim_put16(tmp, (uint16_t)b->len);
            memcpy(tmp + 2, b->data, b->len);
            hr = cim_put_object(img, meta, tmp, 2 + (size_t)b->len, 8, &b->offset);
            free(tmp);
        }
        if (hr < 0) {
            b->offset = 0;
            return hr;
        }
    }
    *out = b->offset;
    return CIMFS_S_OK;
}

/* Names compare through the image's upcase table, so sorting needs a context
 * argument, which qsort lacks (and qsort_r differs between platforms): a
 * small merge sort of pointers, stable and free of globals. */
typedef int (*cim_cmp_fn)(const void *a, const void *b, const uint16_t *up);

static void merge_sort(void **a, void **tmp, size_t n, cim_cmp_fn cmp, const uint16_t *up)
{
    size_t half = n / 2, i = 0, j, k = 0;
    if (n < 2) return;
    merge_sort(a, tmp, half, cmp, up);
    merge_sort(a + half, tmp, n - half, cmp, up);
    j = half;
    while (i < half && j < n) tmp[k++] = cmp(a[j], a[i], up) < 0 ? a[j++] : a[i++];
    while (i < half) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

/* Sorts n pointers; returns E_OUTOFMEMORY if no scratch space could be had. */
static HRESULT sort_ptrs(void **a, size_t n, cim_cmp_fn cmp, const uint16_t *up)
{
    void **tmp;
    if (n < 2) return CIMFS_S_OK;
    tmp = (void **)malloc(n * sizeof *tmp);
    if (!tmp) return CIMFS_E_OUTOFMEMORY;
    merge_sort(a, tmp, n, cmp, up);
    free(tmp);
    return CIMFS_S_OK;
}

static int entry_cmp(const void *a, const void *b, const uint16_t *up)
{
    const cim_entry *x = (const cim_entry *)a, *y = (const cim_entry *)b;
    return cim_name_compare(up, x->name, x->len, y->name, y->len);
}

static int ads_cmp(const void *a, const void *b, const uint16_t *up)
{
    const cim_ads *x = (const cim_ads *)a, *y = (const cim_ads *)b;
    return cim_name_compare(up, x->name, x->len, y->name, y->len);
}

/*
 * LinkTable<T>: u32 Length, u32 LinkCount, T values[n], u32 NameOffsets[n],
 * names (u16 count + units), all offsets relative to the table start.
 * `prefix` reserves bytes before the table (the u32 of stream tables).
 */
static uint8_t *link_table_alloc(size_t prefix, size_t n, size_t value_size, size_t names_bytes, size_t *total)
{
    uint64_t len = 8 + (uint64_t)n * (value_size + 4) + names_bytes;
    uint8_t *t;
    if (len > UINT32_MAX) return NULL;
    t = (uint8_t *)calloc(1, prefix + (size_t)len);
    if (!t) return NULL;
    cim_put32(t + prefix, (uint32_t)len);
    cim_put32(t + prefix + 4, (uint32_t)n);
    *total = prefix + (size_t)len;
    return t;
}

static void put_name(uint8_t *table, size_t n, size_t value_size, size_t i, size_t *name_pos, const WCHAR *name,
                     uint16_t len)
{
    uint8_t *p = table + *name_pos;
    uint16_t k;
    cim_put32(table + 8 + n * value_size + i * 4, (uint32_t)*name_pos);
    cim_put16(p, len);
    for (k = 0; k < len; k++) cim_put16(p + 2 + 2 * k, name[k]);
    *name_pos += 2 + 2 * (size_t)len;
}

#define ENTRY(p) ((const cim_entry *)(p))
#define ADS(p) ((const cim_ads *)(p))

static HRESULT write_directory(cim_image *img, cim_node *d, void *const *sorted, size_t n)
{
    size_t names = 0, total, i, pos;
    uint8_t *t;
    uint64_t off = 0;
    HRESULT hr;
    for (i = 0; i < n; i++) names += 2 + 2 * (size_t)ENTRY(sorted[i])->len;
    t = link_table_alloc(0, n, 4, names, &total);
    if (!t) return CIMFS_E_OUTOFMEMORY;
    pos = 8 + n * 8;
    for (i = 0; i < n; i++) {
        cim_put32(t + 8 + i * 4, ENTRY(sorted[i])->node->id);
        put_name(t, n, 4, i, &pos, ENTRY(sorted[i])->name, ENTRY(sorted[i])->len);
    }
    hr = cim_put_object(img, &img->regions[CIM_RT_METADATA], t, total, 8, &off);
    free(t);
    d->data.offset = off;
    d->data.len_type = CIM_STREAM_LT(total, CIM_STREAM_LINK_TABLE);
    return hr;
}

/* FileIDs in creation order, root first, as Microsoft's writer numbers them
 * (docs/format.md §14); dense, since deleted nodes left the order list. */
static void assign_ids(cim_image *img, cim_node **by_id, uint32_t *count)
{
    cim_node *n;
    uint32_t next = 0;
    for (n = img->ns.first; n; n = n->order_next) {
        n->id = ++next;
        n->parent_id = 0;
        by_id[next] = n;
    }
    *count = next;
}

/* Every directory's link table, newest directory first (so children's
 * tables precede their parents', as in Microsoft's images).  A file's
 * ParentFileId becomes the oldest directory holding one of its names. */
static HRESULT write_directories(cim_image *img)
{
    cim_node *d;
    void **sorted = NULL;
    size_t sorted_cap = 0;
    HRESULT hr = CIMFS_S_OK;
    for (d = img->ns.last; d && hr >= 0; d = d->order_prev) {
        cim_entry *e;
        size_t n = 0, i;
        if (!d->is_dir) continue;
        if (d->nchildren > sorted_cap) {
            void **grown = (void **)realloc(sorted, d->nchildren * sizeof *grown);
            if (!grown) {
                hr = CIMFS_E_OUTOFMEMORY;
                break;
            }
            sorted = grown;
            sorted_cap = d->nchildren;
        }
        for (e = d->children; e; e = e->next) sorted[n++] = e;
        hr = sort_ptrs(sorted, n, entry_cmp, img->ns.up);
        if (hr < 0) break;
        for (i = 0; i < n; i++) ENTRY(sorted[i])->node->parent_id = d->id;
        hr = write_directory(img, d, sorted, n);
    }
    free(sorted);
    return hr;
}

/* u32 N, then LinkTable<Stream> of N bytes (docs/format.md §11.4). */
static HRESULT write_stream_table(cim_image *img, cim_node *node, uint64_t *out)
{
    cim_ads *a;
    void **sorted;
    size_t n = 0, names = 0, total, i, pos;
    uint8_t *t;
    HRESULT hr;
    *out = 0;
    for (a = node->ads; a; a = a->next) {
        n++;
        names += 2 + 2 * (size_t)a->len;
    }
    if (n == 0) return CIMFS_S_OK;
    sorted = (void **)malloc(n * sizeof *sorted);
    if (!sorted) return CIMFS_E_OUTOFMEMORY;
    for (i = 0, a = node->ads; a; a = a->next) sorted[i++] = a;
    hr = sort_ptrs(sorted, n, ads_cmp, img->ns.up);
    if (hr < 0) {
        free(sorted);
        return hr;
    }
    t = link_table_alloc(4, n, CIM_STREAM_SIZE, names, &total);
    if (!t) {
        free(sorted);
        return CIMFS_E_OUTOFMEMORY;
    }
    cim_put32(t, (uint32_t)(total - 4));
    pos = 8 + n * (CIM_STREAM_SIZE + 4);
    for (i = 0; i < n; i++) {
        cim_put64(t + 4 + 8 + i * CIM_STREAM_SIZE, ADS(sorted[i])->stream.offset);
        cim_put64(t + 4 + 8 + i * CIM_STREAM_SIZE + 8, ADS(sorted[i])->stream.len_type);
        put_name(t + 4, n, CIM_STREAM_SIZE, i, &pos, ADS(sorted[i])->name, ADS(sorted[i])->len);
    }
    hr = cim_put_object(img, &img->regions[CIM_RT_METADATA], t, total, 8, out);
    free(t);
    free(sorted);
    return hr;
}

/* Whether a stream would need the sparse bit, which format 1.0 lacks. */
static int has_sparse_stream(const cim_node *node)
{
    const cim_ads *a;
    if (node->data.len_type & CIM_STREAM_SPARSE) return 1;
    for (a = node->ads; a; a = a->next)
        if (a->stream.len_type & CIM_STREAM_SPARSE) return 1;
    return 0;
}

static HRESULT write_record(cim_image *img, cim_node *node, cim_blob *default_sd, uint8_t *rec)
{
    uint64_t sd, ea, reparse, streams;
    cim_blob *own_sd = node->sd;
    uint16_t flags = node->flags;
    HRESULT hr;
    int i;
    /* A root the caller never created has no SD, times or flags, as in
     * Microsoft's images; any other file without an SD gets the NULL-DACL SD. */
    if (!own_sd && !(node == img->ns.root && !img->ns.root_created)) own_sd = default_sd;
    if (img->format_major == 1) {
        if (has_sparse_stream(node)) return CIMFS_HR_NOT_SUPPORTED;
        flags &= (uint16_t)~CIM_FF_SPARSE;
    }
    hr = cim_put_blob(img, own_sd, &sd);
    if (hr >= 0) hr = cim_put_blob(img, node->ea, &ea);
    if (hr >= 0) hr = cim_put_blob(img, node->reparse, &reparse);
    if (hr >= 0) hr = write_stream_table(img, node, &streams);
    if (hr < 0) return hr;
    memset(rec, 0, cim_file_record_size(img->format_major));
    cim_put16(rec + 0x00, flags);
    cim_put16(rec + 0x02, (uint16_t)(node->ea ? node->ea->len : 0));
    cim_put32(rec + 0x04, node->reparse ? node->reparse_tag : 0);
    for (i = 0; i < 4; i++) cim_put64(rec + 0x08 + 8 * i, (uint64_t)node->times[i]);
    cim_put64(rec + 0x28, node->data.offset);
    cim_put64(rec + 0x30, node->data.len_type);
    cim_put64(rec + 0x38, sd);
    cim_put64(rec + 0x40, ea);
    cim_put64(rec + 0x48, reparse);
    cim_put64(rec + 0x50, streams);
    if (img->format_major > 1) cim_put32(rec + 0x58, node->parent_id); /* 1.0 records end at 0x58 */
    return CIMFS_S_OK;
}

static HRESULT write_file_tables(cim_image *img, cim_node **by_id, uint32_t count, uint64_t *ftd_off,
                                 uint32_t *ntables_out)
{
    cim_region *meta = &img->regions[CIM_RT_METADATA];
    uint32_t ntables = (count + CIM_FILES_PER_TABLE - 1) / CIM_FILES_PER_TABLE, t;
    uint32_t rsize = cim_file_record_size(img->format_major);
    uint8_t *table = (uint8_t *)malloc((size_t)CIM_FILES_PER_TABLE * CIM_FILE_SIZE);
    uint8_t *ftd = (uint8_t *)calloc(ntables, CIM_FTDE_SIZE);
    cim_blob *default_sd = NULL;
    HRESULT hr = (table && ftd) ? CIMFS_S_OK : CIMFS_E_OUTOFMEMORY;
    if (hr >= 0) hr = cim_ns_intern(&img->ns, CIM_BLOB_SD, cim_null_dacl_sd, sizeof cim_null_dacl_sd, &default_sd);
    for (t = 0; hr >= 0 && t < ntables; t++) {
        uint32_t first = t * CIM_FILES_PER_TABLE + 1, n = count - first + 1, i;
        uint64_t off;
        if (n > CIM_FILES_PER_TABLE) n = CIM_FILES_PER_TABLE;
        for (i = 0; hr >= 0 && i < n; i++) hr = write_record(img, by_id[first + i], default_sd, table + i * rsize);
        if (hr >= 0) hr = cim_put_object(img, meta, table, (size_t)n * rsize, 8, &off);
        if (hr >= 0) {
            cim_put64(ftd + t * CIM_FTDE_SIZE, off);
            cim_put16(ftd + t * CIM_FTDE_SIZE + 8, (uint16_t)n);
            cim_put16(ftd + t * CIM_FTDE_SIZE + 10, (uint16_t)rsize);
        }
    }
    if (hr >= 0) hr = cim_put_object(img, meta, ftd, (size_t)ntables * CIM_FTDE_SIZE, 8, ftd_off);
    *ntables_out = ntables;
    free(table);
    free(ftd);
    return hr;
}

static HRESULT write_image_file(cim_image *img, uint64_t fs_off)
{
    size_t size = CIM_FS_HEADER_SIZE + (size_t)img->nparent_sets * CIM_REGION_SET_SIZE, i;
    uint8_t *h = (uint8_t *)calloc(1, size);
    cim_file *f = NULL;
    HRESULT hr;
    if (!h) return CIMFS_E_OUTOFMEMORY;
    cim_put_common_header(h, CIM_FS_HEADER_SIZE, CIM_FT_IMAGE, img->format_major);
    h[0x0D] = CIM_IMAGE_RESERVED_0D;
    cim_put64(h + 0x18, CIM_IMAGE_RESERVED_18);
    memcpy(h + 0x20, img->guid, 16);
    cim_put16(h + 0x30, CIM_REGIONS_PER_SET);
    cim_put64(h + 0x38, fs_off);
    cim_put32(h + 0x40, CIM_IMAGE_RESERVED_40);
    cim_put16(h + 0x46, img->nparent_sets);
    for (i = 0; i < img->nparent_sets; i++) {
        memcpy(h + CIM_FS_HEADER_SIZE + i * CIM_REGION_SET_SIZE, img->parent_sets[i].guid, 16);
        cim_put16(h + CIM_FS_HEADER_SIZE + i * CIM_REGION_SET_SIZE + 16, img->parent_sets[i].count);
    }
    (void)cim_path_unlink(img->image_tmp_path); /* a leftover of an earlier crash */
    hr = cim_file_create_new(img->image_tmp_path, &f);
    if (hr >= 0) hr = cim_file_pwrite(f, h, size, 0);
    if (hr >= 0) hr = cim_file_sync(f);
    cim_file_close(f);
    free(h);
    if (hr >= 0) hr = cim_path_rename(img->image_tmp_path, img->image_path);
    if (hr < 0) {
        (void)cim_path_unlink(img->image_tmp_path);
        return hr;
    }
    /* The image is committed; a failed directory sync only weakens durability. */
    (void)cim_dir_sync(img->dir);
    return CIMFS_S_OK;
}

/* CIM_CREATE_IMAGE_CONSISTENT_CIM: the region set's GUID is a digest of what
 * the image holds, so identical input gives identical files, names included.
 * Every byte of the regions is an indexed object (length, digest, offset) or
 * zero padding, so the objectid entries, the region sizes and the parents'
 * GUIDs determine the content.  The GUID is marked RFC 9562 version 8 (a
 * custom, name-based value). */
static HRESULT consistent_guid(cim_image *img)
{
    cim_sha512_ctx h;
    uint8_t digest[64], buf[48];
    size_t i, j;
    HRESULT hr = CIMFS_S_OK;
    cim_sha512_init(&h);
    cim_sha512_update(&h, "cimfs_cffi consistent region set 1", 34);
    cim_put32(buf, img->format_major);
    cim_put32(buf + 4, img->nparent_sets);
    cim_sha512_update(&h, buf, 8);
    for (i = 0; i < img->nparent_sets; i++) {
        memcpy(buf, img->parent_sets[i].guid, 16);
        cim_put16(buf + 16, img->parent_sets[i].count);
        cim_sha512_update(&h, buf, 18);
    }
    for (i = 0; i < CIM_REGIONS_PER_SET; i++) {
        const cim_region *r = &img->regions[i];
        cim_put64(buf, r->end);
        cim_put64(buf + 8, r->nids);
        buf[16] = r->type;
        cim_sha512_update(&h, buf, 17);
        for (j = 0; j < r->nids; j++) { /* sorted by cim_region_write_objid_file */
            cim_put64(buf, r->ids[j].length);
            memcpy(buf + 8, r->ids[j].digest, CIM_DIGEST_SIZE);
            cim_put64(buf + 32, r->ids[j].offset);
            cim_sha512_update(&h, buf, 40);
        }
    }
    cim_sha512_final(&h, digest);
    memcpy(img->guid, digest, 16);
    img->guid[7] = (uint8_t)((img->guid[7] & 0x0F) | 0x80); /* version 8 (Data3 high nibble) */
    img->guid[8] = (uint8_t)((img->guid[8] & 0x3F) | 0x80); /* RFC 4122/9562 variant */
    cim_guid_text(img->guid, img->guid_text);
    for (i = 0; hr >= 0 && i < CIM_REGIONS_PER_SET; i++)
        hr = cim_region_rename_set(&img->regions[i], img->dir, img->guid_text);
    return hr;
}

HRESULT cim_commit(cim_image *img)
{
    cim_region *meta = &img->regions[CIM_RT_METADATA];
    const uint16_t *up = img->ns.up;
    uint8_t *upcase = NULL, fs[CIM_FILESYSTEM_SIZE];
    cim_node **by_id = NULL;
    uint32_t count = 0, ntables = 0, i;
    uint64_t upcase_off = 0, ftd_off = 0, fs_off = 0;
    HRESULT hr = CIMFS_S_OK;

    if (img->ns.nnodes >= UINT32_MAX) return CIMFS_E_INVALIDARG; /* FileIDs are 32-bit */
    upcase = (uint8_t *)malloc(CIM_UPCASE_TABLE_SIZE);
    by_id = (cim_node **)calloc(img->ns.nnodes + 1, sizeof *by_id);
    if (!upcase || !by_id) hr = CIMFS_E_OUTOFMEMORY;
    if (hr >= 0) {
        for (i = 0; i < 0x10000; i++) cim_put16(upcase + 2 * i, up[i]);
        hr = cim_put_object(img, meta, upcase, CIM_UPCASE_TABLE_SIZE, 8, &upcase_off);
    }
    if (hr >= 0) {
        assign_ids(img, by_id, &count);
        hr = write_directories(img);
    }
    if (hr >= 0) hr = write_file_tables(img, by_id, count, &ftd_off, &ntables);
    if (hr >= 0) {
        cim_put64(fs, upcase_off);
        cim_put64(fs + 8, ftd_off);
        cim_put32(fs + 16, ntables);
        cim_put32(fs + 20, img->ns.root->id);
        hr = cim_put_object(img, meta, fs, sizeof fs, 8, &fs_off);
    }
    for (i = 0; hr >= 0 && i < CIM_REGIONS_PER_SET; i++) hr = cim_region_finish(&img->regions[i], img->format_major);
    for (i = 0; hr >= 0 && i < CIM_REGIONS_PER_SET; i++) hr = cim_region_write_objid_file(&img->regions[i], img->format_major);
    if (hr >= 0 && img->consistent) hr = consistent_guid(img);
    for (i = 0; hr >= 0 && i < CIM_REGIONS_PER_SET; i++) hr = cim_region_publish(&img->regions[i], img->consistent);
    if (hr >= 0) hr = write_image_file(img, fs_off);
    free(upcase);
    free(by_id);
    return hr;
}
