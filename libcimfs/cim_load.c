/*
 * cim_load.c - read a committed image into a writer's namespace, to fork or
 * extend it (docs/format.md §7).
 *
 * The child lists the parent's parent region sets and then the parent's own
 * set, so every RegionOffset stored in the parent keeps its meaning: file
 * data, SDs, EAs and reparse buffers are referenced, never copied.  The
 * parent's objectid files seed the dedup index, so content the parent holds
 * is not stored again.
 *
 * The parent may be damaged or hostile: every count and offset is checked
 * against the real file sizes before use, allocations are bounded by those
 * sizes, and the directory walk is iterative; a bad image gives
 * HR(FILE_CORRUPT), never a crash.
 */
#include "cim_internal.h"

#include <stdio.h>

#define CORRUPT CIMFS_HR_FILE_CORRUPT

typedef struct loader {
    cim_image *img;
    cim_file **files;     /* every region of every set, global order */
    uint64_t *sizes;
    uint32_t nregions;
    uint64_t *table_off;  /* file tables */
    uint16_t *table_count;
    uint16_t *table_esize;
    uint32_t ntables;
    /* FileID -> node for files the walk has met.  A map, not an array: a
     * valid image may reuse one table's bytes for several tables (identical
     * tables deduplicate), so the ID range is not bounded by the file sizes,
     * but the number of names read is. */
    struct id_slot {
        uint32_t id;
        cim_node *node;
    } *ids;
    size_t ids_cap, ids_count;
    uint64_t max_id;
} loader;

static cim_node **id_find(loader *L, uint32_t id)
{
    size_t i = (size_t)(id * 2654435761u) & (L->ids_cap - 1);
    while (L->ids[i].id != 0) {
        if (L->ids[i].id == id) return &L->ids[i].node;
        i = (i + 1) & (L->ids_cap - 1);
    }
    return NULL;
}

static HRESULT id_add(loader *L, uint32_t id, cim_node *node)
{
    size_t i;
    if ((L->ids_count + 1) * 2 > L->ids_cap) {
        struct id_slot *old = L->ids;
        size_t old_cap = L->ids_cap, k;
        size_t cap = old_cap ? old_cap * 2 : 1024;
        L->ids = (struct id_slot *)calloc(cap, sizeof *L->ids);
        if (!L->ids) {
            L->ids = old;
            return CIMFS_E_OUTOFMEMORY;
        }
        L->ids_cap = cap;
        L->ids_count = 0;
        for (k = 0; k < old_cap; k++)
            if (old[k].id) (void)id_add(L, old[k].id, old[k].node);
        free(old);
    }
    i = (size_t)(id * 2654435761u) & (L->ids_cap - 1);
    while (L->ids[i].id != 0) i = (i + 1) & (L->ids_cap - 1);
    L->ids[i].id = id;
    L->ids[i].node = node;
    L->ids_count++;
    return CIMFS_S_OK;
}

static HRESULT read_at(loader *L, uint64_t off, void *buf, uint64_t len)
{
    uint32_t idx = CIM_OFFSET_INDEX(off);
    uint64_t b = CIM_OFFSET_BYTES(off);
    if (b == 0 || idx >= L->nregions || len > L->sizes[idx] || b > L->sizes[idx] - len) return CORRUPT;
    if (len == 0) return CIMFS_S_OK;
    return cim_file_pread(L->files[idx], buf, (size_t)len, b);
}

/* Reads a length-prefixed object (prefix of 2 or 4 bytes) into a new buffer. */
static HRESULT read_counted(loader *L, uint64_t off, int prefix, uint8_t **out, uint32_t *len)
{
    uint8_t p[4] = {0};
    uint32_t n;
    HRESULT hr = read_at(L, off, p, (uint64_t)prefix);
    *out = NULL;
    if (hr < 0) return hr;
    n = prefix == 2 ? cim_get16(p) : cim_get32(p);
    if (CIM_OFFSET_BYTES(off) + (uint64_t)prefix + n > L->sizes[CIM_OFFSET_INDEX(off)]) return CORRUPT;
    *out = (uint8_t *)malloc(n ? n : 1);
    if (!*out) return CIMFS_E_OUTOFMEMORY;
    hr = read_at(L, off + (uint64_t)prefix, *out, n);
    if (hr < 0) {
        free(*out);
        *out = NULL;
        return hr;
    }
    *len = n;
    return CIMFS_S_OK;
}

static int loaded_name_ok(const uint8_t *p, uint16_t n)
{
    uint16_t i;
    if (n == 0 || n > CIM_MAX_NAME_UNITS) return 0;
    if (cim_get16(p) == '.' && (n == 1 || (n == 2 && cim_get16(p + 2) == '.'))) return 0;
    for (i = 0; i < n; i++) {
        uint16_t c = cim_get16(p + 2 * i);
        if (c == 0 || c == '\\' || c == '/' || c == ':') return 0;
    }
    return 1;
}

/*
 * Validates a LinkTable<T> of `size` bytes at t (docs/format.md §11.1) and
 * returns its entry count.  Names are checked for bounds and shape.
 */
static HRESULT check_link_table(const uint8_t *t, uint64_t size, size_t value_size, uint32_t *count)
{
    uint32_t length, n, i;
    if (size < 8) return CORRUPT;
    length = cim_get32(t);
    n = cim_get32(t + 4);
    if (length < 8 || length > size) return CORRUPT;
    if ((uint64_t)n * (value_size + 4) > length - 8) return CORRUPT;
    for (i = 0; i < n; i++) {
        uint32_t no = cim_get32(t + 8 + (size_t)n * value_size + 4 * (size_t)i);
        uint16_t nl;
        if (no > length || length - no < 2) return CORRUPT;
        nl = cim_get16(t + no);
        if ((uint64_t)no + 2 + 2 * (uint64_t)nl > length) return CORRUPT;
        if (!loaded_name_ok(t + no + 2, nl)) return CORRUPT;
    }
    *count = n;
    return CIMFS_S_OK;
}

static void name_units(const uint8_t *p, uint16_t n, WCHAR *out)
{
    uint16_t i;
    for (i = 0; i < n; i++) out[i] = cim_get16(p + 2 * i);
}

static HRESULT read_record(loader *L, uint32_t id, uint8_t rec[CIM_FILE_SIZE])
{
    uint32_t t, slot;
    uint16_t esize;
    if (id == 0) return CORRUPT;
    t = (id - 1) / CIM_FILES_PER_TABLE;
    slot = (id - 1) % CIM_FILES_PER_TABLE;
    if (t >= L->ntables || slot >= L->table_count[t]) return CORRUPT;
    esize = L->table_esize[t];
    memset(rec, 0, CIM_FILE_SIZE); /* shorter (v1) records are zero-extended */
    return read_at(L, L->table_off[t] + (uint64_t)slot * esize, rec, esize < CIM_FILE_SIZE ? esize : CIM_FILE_SIZE);
}

static HRESULT intern_counted(loader *L, uint64_t off, uint8_t kind, cim_blob **out)
{
    uint8_t *buf;
    uint32_t n;
    HRESULT hr;
    *out = NULL;
    if (!off) return CIMFS_S_OK;
    hr = read_counted(L, off, 2, &buf, &n);
    if (hr < 0) return hr;
    if (n > 0) hr = cim_ns_intern(&L->img->ns, kind, buf, n, out);
    free(buf);
    if (hr >= 0 && *out && !(*out)->offset) (*out)->offset = off; /* reuse the parent's object */
    return hr;
}

static HRESULT check_data_stream(loader *L, uint64_t off, uint64_t lt, int allow_pe)
{
    unsigned type = CIM_STREAM_TYPE(lt);
    uint8_t probe[CIM_PEIMAGE_SIZE];
    if (lt >> 57) return CORRUPT; /* bits 57..63 are zero */
    if (type == CIM_STREAM_PE_IMAGE && allow_pe) return read_at(L, off, probe, sizeof probe);
    if (type != CIM_STREAM_DATA) return CORRUPT;
    if ((lt & CIM_STREAM_SPARSE) || CIM_STREAM_LEN(lt) == 0) return CIMFS_S_OK;
    {
        uint32_t idx = CIM_OFFSET_INDEX(off);
        uint64_t b = CIM_OFFSET_BYTES(off), len = CIM_STREAM_LEN(lt);
        if (b == 0 || idx >= L->nregions || len > L->sizes[idx] || b > L->sizes[idx] - len) return CORRUPT;
    }
    return CIMFS_S_OK;
}

static HRESULT load_streams(loader *L, cim_node *node, uint64_t off)
{
    uint8_t *t;
    uint32_t size, n, i;
    HRESULT hr;
    if (!off) return CIMFS_S_OK;
    hr = read_counted(L, off, 4, &t, &size);
    if (hr < 0) return hr;
    hr = check_link_table(t, size, CIM_STREAM_SIZE, &n);
    for (i = 0; hr >= 0 && i < n; i++) {
        const uint8_t *v = t + 8 + (size_t)i * CIM_STREAM_SIZE;
        uint32_t no = cim_get32(t + 8 + (size_t)n * CIM_STREAM_SIZE + 4 * (size_t)i);
        uint16_t nl = cim_get16(t + no);
        cim_ads *a;
        hr = check_data_stream(L, cim_get64(v), cim_get64(v + 8), 0);
        if (hr < 0) break;
        a = (cim_ads *)calloc(1, sizeof *a + nl * sizeof(WCHAR));
        if (!a) {
            hr = CIMFS_E_OUTOFMEMORY;
            break;
        }
        name_units(t + no + 2, nl, a->name);
        a->len = nl;
        a->stream.offset = cim_get64(v);
        a->stream.len_type = cim_get64(v + 8);
        a->next = node->ads;
        node->ads = a;
    }
    free(t);
    return hr;
}

/* Fills a node from its File record. */
static HRESULT load_node(loader *L, cim_node *node, const uint8_t *rec)
{
    uint64_t ea_off = cim_get64(rec + 0x40);
    uint16_t ea_len = cim_get16(rec + 0x02);
    HRESULT hr;
    int i;
    node->flags = (uint16_t)(cim_get16(rec) & 0x1F);
    for (i = 0; i < 4; i++) node->times[i] = (int64_t)cim_get64(rec + 0x08 + 8 * i);
    if (!node->is_dir) {
        node->data.offset = cim_get64(rec + 0x28);
        node->data.len_type = cim_get64(rec + 0x30);
        hr = check_data_stream(L, node->data.offset, node->data.len_type, 1);
        if (hr < 0) return hr;
    }
    hr = intern_counted(L, cim_get64(rec + 0x38), CIM_BLOB_SD, &node->sd);
    if (hr >= 0) hr = intern_counted(L, cim_get64(rec + 0x48), CIM_BLOB_REPARSE, &node->reparse);
    if (hr >= 0 && node->reparse) node->reparse_tag = cim_get32(rec + 0x04);
    if (hr >= 0 && ea_off && ea_len) {
        uint8_t *ea = (uint8_t *)malloc(ea_len);
        if (!ea) return CIMFS_E_OUTOFMEMORY;
        hr = read_at(L, ea_off, ea, ea_len);
        if (hr >= 0) hr = cim_ns_intern(&L->img->ns, CIM_BLOB_EA, ea, ea_len, &node->ea);
        if (hr >= 0 && !node->ea->offset) node->ea->offset = ea_off;
        free(ea);
    }
    if (hr >= 0) hr = load_streams(L, node, cim_get64(rec + 0x50));
    return hr;
}

/* Reads one directory's link table and links its entries; new directories
 * are appended to the work list. */
static HRESULT load_directory(loader *L, cim_node *dir, uint64_t off, uint64_t lt, cim_node **tail)
{
    uint64_t len = CIM_STREAM_LEN(lt);
    uint8_t *t, rec[CIM_FILE_SIZE];
    uint32_t n, i;
    HRESULT hr;
    if (CIM_STREAM_TYPE(lt) != CIM_STREAM_LINK_TABLE || (lt >> 56)) return CORRUPT;
    if (len == 0) return CIMFS_S_OK;
    {
        uint32_t idx = CIM_OFFSET_INDEX(off);
        if (idx >= L->nregions || len > L->sizes[idx]) return CORRUPT;
    }
    t = (uint8_t *)malloc((size_t)len);
    if (!t) return CIMFS_E_OUTOFMEMORY;
    hr = read_at(L, off, t, len);
    if (hr >= 0) hr = check_link_table(t, len, 4, &n);
    for (i = 0; hr >= 0 && i < n; i++) {
        uint32_t id = cim_get32(t + 8 + 4 * (size_t)i);
        uint32_t no = cim_get32(t + 8 + (size_t)n * 4 + 4 * (size_t)i);
        uint16_t nl = cim_get16(t + no);
        WCHAR name[CIM_MAX_NAME_UNITS];
        cim_node *child;
        name_units(t + no + 2, nl, name);
        if (cim_ns_lookup(&L->img->ns, dir, name, nl)) {
            hr = CORRUPT; /* two names that compare equal */
            break;
        }
        if (id == 0 || id > L->max_id) {
            hr = CORRUPT;
            break;
        }
        {
            cim_node **known = id_find(L, id);
            child = known ? *known : NULL;
        }
        if (!child) {
            hr = read_record(L, id, rec);
            if (hr < 0) break;
            child = cim_ns_node_new(&L->img->ns, CIM_STREAM_TYPE(cim_get64(rec + 0x30)) == CIM_STREAM_LINK_TABLE);
            if (!child) {
                hr = CIMFS_E_OUTOFMEMORY;
                break;
            }
            hr = load_node(L, child, rec);
            if (hr >= 0 && child->is_dir) {
                /* Remember the directory's table in its data stream until it is read. */
                child->data.offset = cim_get64(rec + 0x28);
                child->data.len_type = cim_get64(rec + 0x30);
                child->work_next = NULL;
                (*tail)->work_next = child;
                *tail = child;
            }
            if (hr >= 0) hr = id_add(L, id, child);
            if (hr < 0) {
                /* Not linked yet: the namespace cannot free it, so do it here. */
                cim_ns_free_node(&L->img->ns, child);
                break;
            }
        } else if (child->is_dir || child == L->img->ns.root) {
            hr = CORRUPT; /* a directory reached twice: a loop or a directory hard link */
            break;
        }
        hr = cim_ns_link(&L->img->ns, dir, name, nl, child);
    }
    free(t);
    return hr;
}

static HRESULT open_region_set(loader *L, const uint8_t guid[16], uint16_t count, uint32_t first)
{
    char text[40], name[96];
    uint16_t n;
    cim_guid_text(guid, text);
    for (n = 0; n < count; n++) {
        uint8_t hdr[CIM_REGION_HEADER_SIZE];
        cim_nchar *path;
        HRESULT hr;
        snprintf(name, sizeof name, "region_%s_%u", text, (unsigned)n);
        path = cim_native_join(L->img->dir, name);
        if (!path) return CIMFS_E_OUTOFMEMORY;
        hr = cim_file_open_read(path, &L->files[first + n]);
        free(path);
        if (hr == CIMFS_HR_FILE_NOT_FOUND) hr = CORRUPT; /* a parent region is missing */
        if (hr < 0) return hr;
        hr = cim_file_size(L->files[first + n], &L->sizes[first + n]);
        if (hr >= 0 && L->sizes[first + n] < CIM_REGION_HEADER_SIZE) hr = CORRUPT;
        if (hr >= 0) hr = cim_file_pread(L->files[first + n], hdr, sizeof hdr, 0);
        if (hr >= 0 && (memcmp(hdr, CIM_MAGIC, 8) != 0 || cim_get32(hdr + 16) < CIM_VERSION_MAJOR_MIN || cim_get32(hdr + 16) > CIM_VERSION_MAJOR_MAX))
            hr = CORRUPT;
        if (hr < 0) return hr;
    }
    return CIMFS_S_OK;
}

/* Seeds dedup with the objects listed in one objectid file (a missing file is fine). */
static HRESULT load_objids(loader *L, const uint8_t guid[16], uint16_t n, uint32_t global)
{
    char text[40], name[96];
    cim_nchar *path;
    cim_file *f = NULL;
    uint8_t hdr[CIM_OBJID_HEADER_SIZE], ent[CIM_OBJID_ENTRY_SIZE];
    uint64_t size, table, count, i;
    HRESULT hr;
    cim_guid_text(guid, text);
    snprintf(name, sizeof name, "objectid_%s_%u", text, (unsigned)n);
    path = cim_native_join(L->img->dir, name);
    if (!path) return CIMFS_E_OUTOFMEMORY;
    hr = cim_file_open_read(path, &f);
    free(path);
    if (hr < 0) return CIMFS_S_OK; /* objectid files only help dedup */
    hr = cim_file_size(f, &size);
    if (hr >= 0 && size >= sizeof hdr) hr = cim_file_pread(f, hdr, sizeof hdr, 0);
    else hr = CORRUPT;
    if (hr >= 0 && memcmp(hdr, CIM_MAGIC, 8) == 0) {
        table = cim_get32(hdr + 40);
        count = cim_get32(hdr + 44);
        if (table <= size && count <= (size - table) / CIM_OBJID_ENTRY_SIZE) {
            for (i = 0; hr >= 0 && i < count; i++) {
                uint64_t len, off;
                hr = cim_file_pread(f, ent, sizeof ent, table + i * CIM_OBJID_ENTRY_SIZE);
                if (hr < 0) break;
                len = cim_get64(ent);
                off = cim_get64(ent + 32);
                if (len == 0 || off < CIM_REGION_HEADER_SIZE || len > L->sizes[global] || off > L->sizes[global] - len)
                    continue; /* an entry we cannot trust is simply not used */
                hr = cim_dedup_add(&L->img->dedup, len, ent + 8, CIM_OFFSET(global, off), CIM_DEDUP_UNVERIFIED);
            }
        }
    }
    cim_file_close(f);
    return hr == CORRUPT ? CIMFS_S_OK : hr;
}

static HRESULT load_file_tables(loader *L, uint64_t fs_off)
{
    uint8_t fs[CIM_FILESYSTEM_SIZE], *ftd = NULL;
    uint32_t t;
    uint64_t total = 0;
    HRESULT hr = read_at(L, fs_off, fs, sizeof fs);
    if (hr < 0) return hr;
    L->ntables = cim_get32(fs + 16);
    {
        uint32_t idx = CIM_OFFSET_INDEX(cim_get64(fs + 8));
        if (idx >= L->nregions || (uint64_t)L->ntables * CIM_FTDE_SIZE > L->sizes[idx]) return CORRUPT;
    }
    ftd = (uint8_t *)malloc((size_t)L->ntables * CIM_FTDE_SIZE + 1);
    L->table_off = (uint64_t *)calloc((size_t)L->ntables + 1, sizeof *L->table_off);
    L->table_count = (uint16_t *)calloc((size_t)L->ntables + 1, sizeof *L->table_count);
    L->table_esize = (uint16_t *)calloc((size_t)L->ntables + 1, sizeof *L->table_esize);
    if (!ftd || !L->table_off || !L->table_count || !L->table_esize) {
        free(ftd);
        return CIMFS_E_OUTOFMEMORY;
    }
    hr = read_at(L, cim_get64(fs + 8), ftd, (uint64_t)L->ntables * CIM_FTDE_SIZE);
    for (t = 0; hr >= 0 && t < L->ntables; t++) {
        uint64_t off = cim_get64(ftd + t * CIM_FTDE_SIZE);
        uint16_t count = cim_get16(ftd + t * CIM_FTDE_SIZE + 8), esize = cim_get16(ftd + t * CIM_FTDE_SIZE + 10);
        uint32_t idx = CIM_OFFSET_INDEX(off);
        uint64_t b = CIM_OFFSET_BYTES(off), bytes = (uint64_t)count * esize;
        if (count > CIM_FILES_PER_TABLE || esize < CIM_FILE_SIZE_V1 || b == 0 || idx >= L->nregions ||
            bytes > L->sizes[idx] || b > L->sizes[idx] - bytes) {
            hr = CORRUPT;
            break;
        }
        L->table_off[t] = off;
        L->table_count[t] = count;
        L->table_esize[t] = esize;
        total = (uint64_t)t * CIM_FILES_PER_TABLE + count; /* highest FileID so far */
    }
    free(ftd);
    if (hr < 0) return hr;
    L->max_id = total; /* highest FileID a table can hold */
    return CIMFS_S_OK;
}

static int node_id_cmp(const void *a, const void *b)
{
    uint32_t x = (*(cim_node *const *)a)->id, y = (*(cim_node *const *)b)->id;
    return x < y ? -1 : x > y;
}

/* Puts the loaded nodes in the parent's FileID order, so that the child
 * numbers inherited files as the parent did and new files after them. */
static HRESULT order_by_parent_ids(loader *L)
{
    cim_namespace *ns = &L->img->ns;
    cim_node **nodes, *n;
    size_t i, count = 0;
    for (i = 0; i < L->ids_cap; i++)
        if (L->ids[i].id) L->ids[i].node->id = L->ids[i].id;
    nodes = (cim_node **)malloc((ns->nnodes ? ns->nnodes : 1) * sizeof *nodes);
    if (!nodes) return CIMFS_E_OUTOFMEMORY;
    for (n = ns->first; n; n = n->order_next) nodes[count++] = n;
    qsort(nodes, count, sizeof *nodes, node_id_cmp);
    ns->first = ns->last = NULL;
    for (i = 0; i < count; i++) {
        nodes[i]->order_prev = ns->last;
        nodes[i]->order_next = NULL;
        if (ns->last) ns->last->order_next = nodes[i];
        else ns->first = nodes[i];
        ns->last = nodes[i];
    }
    free(nodes);
    return CIMFS_S_OK;
}

HRESULT cim_load_image(cim_image *img, const cim_nchar *image_path)
{
    loader L;
    cim_file *f = NULL;
    uint8_t hdr[CIM_FS_HEADER_SIZE], fs[CIM_FILESYSTEM_SIZE], rec[CIM_FILE_SIZE];
    uint8_t *sets = NULL;
    uint64_t size;
    uint16_t pc, i;
    uint32_t total = 0, own_count;
    HRESULT hr;
    cim_node *work, *tail;

    memset(&L, 0, sizeof L);
    L.img = img;
    hr = cim_file_open_read(image_path, &f);
    if (hr < 0) return hr == CIMFS_HR_PATH_NOT_FOUND ? CIMFS_HR_FILE_NOT_FOUND : hr;
    hr = cim_file_size(f, &size);
    if (hr >= 0 && size < CIM_FS_HEADER_SIZE) hr = CORRUPT;
    if (hr >= 0) hr = cim_file_pread(f, hdr, sizeof hdr, 0);
    if (hr >= 0 && (memcmp(hdr, CIM_MAGIC, 8) != 0 || cim_get32(hdr + 16) < CIM_VERSION_MAJOR_MIN || cim_get32(hdr + 16) > CIM_VERSION_MAJOR_MAX))
        hr = CORRUPT;
    /* A fork is written in its parent's version unless the caller chooses another:
     * whether a driver takes a chain of mixed versions is unknown (docs/format.md §14.6). */
    if (hr >= 0) img->format_major = cim_get32(hdr + 16);
    pc = hr >= 0 ? cim_get16(hdr + 0x46) : 0;
    if (hr >= 0 && (pc >= 0xFFFF || size < CIM_FS_HEADER_SIZE + (uint64_t)pc * CIM_REGION_SET_SIZE)) hr = CORRUPT;
    if (hr >= 0) {
        sets = (uint8_t *)malloc(((size_t)pc + 1) * CIM_REGION_SET_SIZE);
        if (!sets) hr = CIMFS_E_OUTOFMEMORY;
    }
    if (hr >= 0 && pc) hr = cim_file_pread(f, sets, (size_t)pc * CIM_REGION_SET_SIZE, CIM_FS_HEADER_SIZE);
    cim_file_close(f);
    if (hr < 0) goto done;
    /* The parent's own set becomes the child's last parent set. */
    memcpy(sets + (size_t)pc * CIM_REGION_SET_SIZE, hdr + 0x20, CIM_REGION_SET_SIZE);
    own_count = cim_get16(hdr + 0x30);
    if (own_count == 0) {
        hr = CORRUPT;
        goto done;
    }
    for (i = 0; i <= pc; i++) total += cim_get16(sets + (size_t)i * CIM_REGION_SET_SIZE + 16);
    if (total > 0x10000) {
        hr = CORRUPT;
        goto done;
    }
    img->parent_sets = (cim_region_set *)calloc((size_t)pc + 1, sizeof *img->parent_sets);
    L.files = (cim_file **)calloc(total ? total : 1, sizeof *L.files);
    L.sizes = (uint64_t *)calloc(total ? total : 1, sizeof *L.sizes);
    if (!img->parent_sets || !L.files || !L.sizes) {
        hr = CIMFS_E_OUTOFMEMORY;
        goto done;
    }
    L.nregions = total;
    img->nparent_sets = (uint16_t)(pc + 1);
    img->parent_region_count = total;
    total = 0;
    for (i = 0; hr >= 0 && i <= pc; i++) {
        const uint8_t *s = sets + (size_t)i * CIM_REGION_SET_SIZE;
        memcpy(img->parent_sets[i].guid, s, 16);
        img->parent_sets[i].count = cim_get16(s + 16);
        hr = open_region_set(&L, s, img->parent_sets[i].count, total);
        total += img->parent_sets[i].count;
    }
    if (hr >= 0) hr = load_file_tables(&L, cim_get64(hdr + 0x38));
    if (hr >= 0) hr = read_at(&L, cim_get64(hdr + 0x38), fs, sizeof fs);
    if (hr >= 0) {
        uint32_t root = cim_get32(fs + 20);
        hr = (root == 0 || root > L.max_id) ? CORRUPT : read_record(&L, root, rec);
        if (hr >= 0 && CIM_STREAM_TYPE(cim_get64(rec + 0x30)) != CIM_STREAM_LINK_TABLE) hr = CORRUPT;
        if (hr >= 0) hr = id_add(&L, root, img->ns.root);
        if (hr >= 0) {
            hr = load_node(&L, img->ns.root, rec);
            img->ns.root->data.offset = cim_get64(rec + 0x28);
            img->ns.root->data.len_type = cim_get64(rec + 0x30);
        }
    }
    /* Breadth-first over directories, without recursion. */
    work = tail = img->ns.root;
    img->ns.root->work_next = NULL;
    while (hr >= 0 && work) {
        cim_node *d = work;
        hr = load_directory(&L, d, d->data.offset, d->data.len_type, &tail);
        work = d->work_next;
    }
    if (hr >= 0) hr = order_by_parent_ids(&L);
    total = 0;
    for (i = 0; hr >= 0 && i <= pc; i++) {
        uint16_t n;
        for (n = 0; hr >= 0 && n < img->parent_sets[i].count; n++) hr = load_objids(&L, img->parent_sets[i].guid, n, total + n);
        total += img->parent_sets[i].count;
    }
done:
    if (hr >= 0) {
        /* Kept open: inherited dedup entries are checked against these files. */
        img->parent_files = L.files;
        img->parent_sizes = L.sizes;
    } else {
        if (L.files)
            for (total = 0; total < L.nregions; total++) cim_file_close(L.files[total]);
        free(L.files);
        free(L.sizes);
        img->parent_region_count = 0; /* nothing of the parent is kept */
    }
    free(L.table_off);
    free(L.table_count);
    free(L.table_esize);
    free(L.ids);
    free(sets);
    return hr;
}
