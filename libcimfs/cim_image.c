/*
 * cim_image.c - the portable backend's API entry points: handle tokens,
 * per-image locking, argument and metadata validation, and the namespace
 * operations behind CimCreateFile, CimCreateHardLink, CimDeletePath, ...
 *
 * Handles are tokens, never pointers: a token names a slot in a table and
 * carries the slot's generation, so closed, stale and foreign handles are
 * recognised without touching freed memory.  On 64-bit targets every token
 * has a tag in its top bits that no real pointer can have, which is also how
 * cim_backend.c tells our handles from cimfs.dll's.
 */
#include "cim_internal.h"
#include "cim_portable.h"

#include <stdio.h>

/* ---- handle tokens ----------------------------------------------------------- */

#define KIND_IMAGE 1u
#define KIND_STREAM 2u

#if UINTPTR_MAX > 0xFFFFFFFFu
#define TOKEN_TAG UINT64_C(0x7C1)                  /* bits 52..63: non-canonical on x64/arm64 */
#define TOKEN(kind, gen, slot) \
    ((uintptr_t)((TOKEN_TAG << 52) | ((uint64_t)(kind) << 48) | ((uint64_t)((gen) & 0xFFFFFF) << 24) | (uint64_t)(slot)))
#define TOKEN_OK(t) (((uint64_t)(t) >> 52) == TOKEN_TAG)
#define TOKEN_KIND(t) ((unsigned)(((uint64_t)(t) >> 48) & 0xF))
#define TOKEN_GEN(t) ((uint32_t)(((uint64_t)(t) >> 24) & 0xFFFFFF))
#define TOKEN_SLOT(t) ((uint32_t)((uint64_t)(t) & 0xFFFFFF))
#define GEN_MASK 0xFFFFFFu
#define MAX_SLOTS 0xFFFFFFu
#else
#define TOKEN(kind, gen, slot) ((uintptr_t)(0x80000000u | ((uint32_t)(kind) << 29) | (((gen) & 0x1FF) << 20) | (slot)))
#define TOKEN_OK(t) (((uint32_t)(t) & 0x80000000u) != 0)
#define TOKEN_KIND(t) ((unsigned)(((uint32_t)(t) >> 29) & 0x3))
#define TOKEN_GEN(t) ((uint32_t)(((uint32_t)(t) >> 20) & 0x1FF))
#define TOKEN_SLOT(t) ((uint32_t)(t) & 0xFFFFF)
#define GEN_MASK 0x1FFu
#define MAX_SLOTS 0xFFFFFu
#endif

typedef struct handle_slot {
    uint32_t gen;
    uint32_t kind;    /* 0 = free */
    cim_image *img;
} handle_slot;

/* All guarded by the global lock. */
static handle_slot *g_slots;
static uint32_t g_nslots, g_cap;
static uint32_t *g_free;
static uint32_t g_nfree;

int cim_portable_handle_shape(const void *handle) { return handle && TOKEN_OK((uintptr_t)handle); }

/* Caller holds the global lock.  Slot 0 is never used, so no token is 0. */
static uintptr_t slot_alloc(unsigned kind, cim_image *img)
{
    uint32_t s;
    if (g_nfree > 0) {
        s = g_free[--g_nfree];
    } else {
        if (g_nslots == 0) g_nslots = 1;
        if (g_nslots >= MAX_SLOTS) return 0;
        if (g_nslots >= g_cap) {
            uint32_t cap = g_cap ? g_cap * 2 : 64;
            handle_slot *ns = (handle_slot *)realloc(g_slots, cap * sizeof *ns);
            uint32_t *nf;
            if (!ns) return 0;
            g_slots = ns;
            nf = (uint32_t *)realloc(g_free, cap * sizeof *nf);
            if (!nf) return 0;
            g_free = nf;
            memset(g_slots + g_cap, 0, (cap - g_cap) * sizeof *g_slots);
            g_cap = cap;
        }
        s = g_nslots++;
    }
    g_slots[s].kind = kind;
    g_slots[s].img = img;
    return TOKEN(kind, g_slots[s].gen, s);
}

/* Caller holds the global lock. */
static void slot_free(uintptr_t t)
{
    uint32_t s = TOKEN_SLOT(t);
    g_slots[s].kind = 0;
    g_slots[s].img = NULL;
    g_slots[s].gen = (g_slots[s].gen + 1) & GEN_MASK;
    g_free[g_nfree++] = s;
}

/* Caller holds the global lock. */
static cim_image *slot_lookup(uintptr_t t, unsigned kind)
{
    uint32_t s;
    if (!TOKEN_OK(t) || TOKEN_KIND(t) != kind) return NULL;
    s = TOKEN_SLOT(t);
    if (s == 0 || s >= g_nslots || g_slots[s].kind != kind || g_slots[s].gen != TOKEN_GEN(t)) return NULL;
    return g_slots[s].img;
}

/* ---- image lifetime -----------------------------------------------------------
 * img->refs counts the user's image handle, an open stream, and calls in
 * progress; the image is destroyed when it drops to 0. */

static void destroy(cim_image *img)
{
    int i;
    int committed = img->state == CIM_STATE_COMMITTED;
    (void)cim_writer_stop(img); /* before the region files it writes are closed */
    for (i = 0; i < CIM_REGIONS_PER_SET; i++) {
        if (committed) img->regions[i].renamed = 0; /* published: keep the final files */
        cim_region_discard(&img->regions[i]);
    }
    cim_ns_free(&img->ns);
    cim_dedup_free(&img->dedup);
    cim_defer_free(img); /* before anything its helpers could still be reading */
    free(img->stream.probe);
    free(img->stream.buf);
    cim_offload_free(img->offload);
    cim_bufpool_free(img->pool); /* after everything that puts buffers back */
    if (img->parent_files)
        for (i = 0; i < (int)img->parent_region_count; i++) cim_file_close(img->parent_files[i]);
    free(img->parent_files);
    free(img->parent_sizes);
    cim_dir_lock_release(img->lock);
    cim_mutex_free(img->mutex);
    free(img->parent_sets);
    free(img->dir);
    free(img->image_path);
    free(img->image_tmp_path);
    free(img);
}

static cim_image *acquire(const void *handle, unsigned kind)
{
    cim_image *img;
    cim_global_lock();
    img = slot_lookup((uintptr_t)handle, kind);
    if (img) img->refs++;
    cim_global_unlock();
    if (img) cim_mutex_lock(img->mutex);
    return img;
}

/* Drops `n` references (the call's, plus any the call gave up). */
static void release(cim_image *img, uint32_t n)
{
    int dead;
    cim_mutex_unlock(img->mutex);
    cim_global_lock();
    img->refs -= n;
    dead = img->refs == 0;
    cim_global_unlock();
    if (dead) destroy(img);
}

/* Checks shared by every image-level operation (docs/api.md §7.15). */
static HRESULT check_open(const cim_image *img)
{
    if (img->state != CIM_STATE_OPEN) return CIMFS_E_INVALIDARG;
    if (img->stream.open) return CIMFS_HR_SHARING_VIOLATION;
    return CIMFS_S_OK;
}

/* ---- CimCreateImage ---------------------------------------------------------- */

static HRESULT image_name_check(PCWSTR name)
{
    size_t n = 0;
    if (!name) return CIMFS_S_OK;
    while (n <= CIM_MAX_NAME_UNITS && name[n]) n++;
    if (!cim_name_valid(name, n)) return CIMFS_E_INVALIDARG;
    /* Our temporary files must never be mistaken for an image. */
    {
        size_t k, plen = strlen(CIM_TMP_PREFIX);
        for (k = 0; k < plen && k < n && name[k] == (WCHAR)CIM_TMP_PREFIX[k]; k++) {
        }
        if (k == plen) return CIMFS_E_INVALIDARG;
    }
    return CIMFS_S_OK;
}

static int same_units(PCWSTR a, PCWSTR b)
{
    size_t i = 0;
    while (a[i] && a[i] == b[i]) i++;
    return a[i] == b[i];
}

HRESULT cim_portable_create_image(PCWSTR dir, CIM_CREATE_IMAGE_FLAGS flags, PCWSTR existing_name,
                                  PCWSTR new_name, CIMFS_IMAGE_HANDLE *out)
{
    const uint32_t accepted = CIM_CREATE_DO_NOT_EXPAND_PE_IMAGES | CIM_CREATE_IMAGE_CONSISTENT_CIM;
    const uint32_t unsupported = CIM_CREATE_FIXED_SIZE_CHUNKS | CIM_CREATE_IMAGE_BLOCK_CIM |
                                 CIM_CREATE_IMAGE_SINGLE_FILE_CIM | CIM_CREATE_IMAGE_VERIFIED_CIM;
    cim_nchar *ndir = NULL, *nexisting = NULL, *nnew = NULL, *existing_path = NULL;
    cim_image *img = NULL;
    PCWSTR target;
    HRESULT hr;
    int i;

    if (!out) return CIMFS_E_INVALIDARG;
    *out = NULL;
    if (flags & ~(accepted | unsupported)) return CIMFS_E_INVALIDARG;
    if (flags & unsupported) return CIMFS_HR_NOT_SUPPORTED;
    if (!dir || (!existing_name && !new_name)) return CIMFS_E_INVALIDARG;
    if (image_name_check(existing_name) < 0 || image_name_check(new_name) < 0) return CIMFS_E_INVALIDARG;
    target = new_name ? new_name : existing_name;

    hr = cim_native_from_utf16(dir, CIM_MAX_PATH_UNITS, &ndir);
    if (hr >= 0) hr = cim_native_from_utf16(target, CIM_MAX_NAME_UNITS, &nnew);
    if (hr >= 0 && existing_name) hr = cim_native_from_utf16(existing_name, CIM_MAX_NAME_UNITS, &nexisting);
    if (hr < 0) goto fail;
    hr = cim_path_check_directory(ndir);
    if (hr < 0) goto fail;

    img = (cim_image *)calloc(1, sizeof *img);
    if (!img) {
        hr = CIMFS_E_OUTOFMEMORY;
        goto fail;
    }
    img->mutex = cim_mutex_new();
    img->dir = ndir;
    ndir = NULL;
    img->image_path = cim_native_join_native(img->dir, nnew);
    if (!img->mutex || !img->image_path) {
        hr = CIMFS_E_OUTOFMEMORY;
        goto fail;
    }
    hr = cim_dir_lock_acquire(img->dir, &img->lock);
    if (hr < 0) goto fail;
    /* We hold the directory: temporary files here belong to writers that
     * died before commit or close, and nothing refers to them. */
    cim_dir_remove_prefixed(img->dir, CIM_TMP_PREFIX);

    if (existing_name) {
        existing_path = cim_native_join_native(img->dir, nexisting);
        if (!existing_path) {
            hr = CIMFS_E_OUTOFMEMORY;
            goto fail;
        }
        i = cim_path_file_exists(existing_path);
        if (i <= 0) {
            hr = i < 0 ? i : CIMFS_HR_FILE_NOT_FOUND;
            goto fail;
        }
    }
    if (!existing_name || (new_name && !same_units(existing_name, new_name))) {
        i = cim_path_file_exists(img->image_path);
        if (i != 0) {
            hr = i < 0 ? i : CIMFS_HR_FILE_EXISTS;
            goto fail;
        }
    }

    hr = cim_random_bytes(img->guid, sizeof img->guid);
    if (hr < 0) goto fail;
    img->guid[7] = (uint8_t)((img->guid[7] & 0x0F) | 0x40); /* version 4 (Data3 high nibble) */
    img->guid[8] = (uint8_t)((img->guid[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    cim_guid_text(img->guid, img->guid_text);
    {
        char tmpname[64];
        snprintf(tmpname, sizeof tmpname, CIM_TMP_PREFIX "image_%s", img->guid_text);
        img->image_tmp_path = cim_native_join(img->dir, tmpname);
        if (!img->image_tmp_path) {
            hr = CIMFS_E_OUTOFMEMORY;
            goto fail;
        }
    }
    img->format_major = CIM_VERSION_MAJOR;
    img->expand_pe = !(flags & CIM_CREATE_DO_NOT_EXPAND_PE_IMAGES);
    img->consistent = (flags & CIM_CREATE_IMAGE_CONSISTENT_CIM) != 0;
    hr = cim_ns_init(&img->ns);
    if (hr >= 0) hr = cim_dedup_init(&img->dedup);
    if (hr >= 0 && existing_path) hr = cim_load_image(img, existing_path);
    if (hr < 0) goto fail;
    if (img->parent_region_count + CIM_REGIONS_PER_SET > 0x10000) {
        hr = CIMFS_HR_NOT_SUPPORTED; /* the format addresses at most 65536 regions */
        goto fail;
    }
    img->pool = cim_bufpool_new(); /* NULL: plain malloc and free */
    for (i = 0; i < CIM_REGIONS_PER_SET; i++) {
        hr = cim_region_open(&img->regions[i], img->dir, img->guid_text, (uint16_t)i,
                             img->parent_region_count + (uint32_t)i, (uint8_t)i);
        if (hr < 0) goto fail;
    }
    img->state = CIM_STATE_OPEN;
    img->refs = 1;
    cim_global_lock();
    img->token = slot_alloc(KIND_IMAGE, img);
    cim_global_unlock();
    if (!img->token) {
        hr = CIMFS_E_OUTOFMEMORY;
        goto fail;
    }
    *out = (CIMFS_IMAGE_HANDLE)img->token;
    free(nexisting);
    free(nnew);
    free(existing_path);
    return CIMFS_S_OK;

fail:
    if (img) {
        img->state = CIM_STATE_FAILED;
        destroy(img);
    }
    free(ndir);
    free(nexisting);
    free(nnew);
    free(existing_path);
    return hr;
}

HRESULT cim_portable_set_format_version(CIMFS_IMAGE_HANDLE h, uint32_t major, uint32_t minor)
{
    cim_image *img = acquire(h, KIND_IMAGE);
    HRESULT hr;
    if (!img) return CIMFS_E_INVALIDARG;
    hr = check_open(img);
    if (hr >= 0 && (major < CIM_VERSION_MAJOR_MIN || major > CIM_VERSION_MAJOR_MAX || minor != 0))
        hr = CIMFS_E_INVALIDARG;
    if (hr >= 0) cim_defer_drain(img);
    if (hr >= 0) img->format_major = major;
    release(img, 1);
    return hr;
}

HRESULT cim_portable_set_writer_threads(CIMFS_IMAGE_HANDLE h, uint32_t threads)
{
    cim_image *img = acquire(h, KIND_IMAGE);
    HRESULT hr;
    if (!img) return CIMFS_E_INVALIDARG;
    hr = check_open(img);
    if (hr >= 0) {
        cim_defer_drain(img);
        cim_defer_free(img); /* started again, with the new count, by the next stream that can use it */
        hr = cim_writer_stop(img); /* likewise */
        if (hr < 0 && img->io_error >= 0) img->io_error = hr; /* the commit reports it */
        hr = CIMFS_S_OK;
        img->threads = threads;
    }
    if (hr >= 0 && threads == 1) {
        cim_offload_free(img->offload);
        img->offload = NULL;
    }
    release(img, 1);
    return hr;
}

HRESULT cim_portable_commit_image(CIMFS_IMAGE_HANDLE h)
{
    cim_image *img = acquire(h, KIND_IMAGE);
    HRESULT hr;
    int i;
    if (!img) return CIMFS_E_INVALIDARG;
    hr = check_open(img);
    if (hr >= 0) cim_defer_drain(img);
    if (hr >= 0) {
        HRESULT writer_hr;
        hr = img->io_error < 0 ? img->io_error : cim_commit(img);
        writer_hr = cim_writer_stop(img); /* idle after a commit; after a failure, before the discard */
        if (hr >= 0 && writer_hr < 0) hr = writer_hr;
        if (hr < 0) {
            /* Remove what this commit wrote; an older image stays as it was. */
            for (i = 0; i < CIM_REGIONS_PER_SET; i++) cim_region_discard(&img->regions[i]);
            (void)cim_path_unlink(img->image_tmp_path);
            img->state = CIM_STATE_FAILED;
        } else {
            img->state = CIM_STATE_COMMITTED;
            for (i = 0; i < CIM_REGIONS_PER_SET; i++) img->regions[i].renamed = 0;
        }
        cim_ns_free(&img->ns); /* no further operations: release the memory now */
    }
    release(img, 1);
    return hr;
}

void cim_portable_close_image(CIMFS_IMAGE_HANDLE h)
{
    cim_image *img = acquire(h, KIND_IMAGE);
    if (!img) return;
    cim_global_lock();
    slot_free(img->token);
    cim_global_unlock();
    img->user_closed = 1;
    release(img, 2); /* the call's reference and the user handle's */
}

/* ---- metadata validation ------------------------------------------------------ */

static int sd_valid(const uint8_t *sd, uint32_t n)
{
    int i;
    /* Self-relative SECURITY_DESCRIPTOR: revision 1, SE_SELF_RELATIVE set, and
     * owner/group/SACL/DACL offsets 0 or inside the buffer. */
    if (n < 20 || sd[0] != 1 || !(cim_get16(sd + 2) & 0x8000)) return 0;
    for (i = 0; i < 4; i++) {
        uint32_t off = cim_get32(sd + 4 + 4 * i);
        if (off != 0 && (off < 20 || off >= n)) return 0;
    }
    return 1;
}

static int ea_valid(const uint8_t *ea, uint32_t n)
{
    uint32_t o = 0;
    for (;;) {
        uint32_t next, entry;
        uint8_t name_len;
        uint16_t value_len;
        uint32_t k;
        if (n - o < 8) return 0;
        next = cim_get32(ea + o);
        name_len = ea[o + 5];
        value_len = cim_get16(ea + o + 6);
        entry = 8u + name_len + 1u + value_len;
        if (name_len == 0 || name_len > CIM_MAX_EA_NAME || entry > n - o) return 0;
        if (ea[o + 8 + name_len] != 0) return 0; /* the name's NUL terminator */
        for (k = 0; k < name_len; k++)
            if (ea[o + 8 + k] == 0) return 0;
        if (next == 0) return 1;
        if (next < entry || (next & 3) != 0 || next >= n - o) return 0;
        o += next;
    }
}

typedef struct validated_md {
    cim_blob *sd, *ea, *reparse;
    uint32_t reparse_tag;
    uint16_t flags;
    int is_dir;
    int sparse;
} validated_md;

static HRESULT validate_metadata(cim_image *img, const CIMFS_FILE_METADATA *md, validated_md *v)
{
    uint32_t a;
    int has_reparse;
    HRESULT hr = CIMFS_S_OK;
    memset(v, 0, sizeof *v);
    if (!md) return CIMFS_E_INVALIDARG;
    a = md->Attributes;
    v->is_dir = (a & CIMFS_FILE_ATTRIBUTE_DIRECTORY) != 0;
    if (!v->is_dir && (md->FileSize < 0 || (uint64_t)md->FileSize > CIM_MAX_STREAM_LENGTH)) return CIMFS_E_INVALIDARG;
    if (md->CreationTime.QuadPart < 0 || md->LastWriteTime.QuadPart < 0 || md->ChangeTime.QuadPart < 0 ||
        md->LastAccessTime.QuadPart < 0)
        return CIMFS_E_INVALIDARG;
    if ((md->SecurityDescriptorSize && !md->SecurityDescriptorBuffer) ||
        (md->ReparseDataSize && !md->ReparseDataBuffer) || (md->EaBufferSize && !md->EaBuffer))
        return CIMFS_E_INVALIDARG;
    if (md->SecurityDescriptorSize > CIM_MAX_COUNTED_BLOB || md->ReparseDataSize > CIM_MAX_COUNTED_BLOB ||
        md->EaBufferSize > CIM_MAX_COUNTED_BLOB)
        return CIMFS_E_INVALIDARG;
    has_reparse = md->ReparseDataSize > 0;
    if (has_reparse != ((a & CIMFS_FILE_ATTRIBUTE_REPARSE_POINT) != 0)) return CIMFS_E_INVALIDARG;
    if (has_reparse) {
        const uint8_t *r = (const uint8_t *)md->ReparseDataBuffer;
        if (md->ReparseDataSize < 8 || cim_get16(r + 4) + 8u != md->ReparseDataSize || cim_get32(r) == 0)
            return CIMFS_E_INVALIDARG;
        v->reparse_tag = cim_get32(r);
    }
    if (md->SecurityDescriptorSize && !sd_valid((const uint8_t *)md->SecurityDescriptorBuffer, md->SecurityDescriptorSize))
        return CIMFS_E_INVALIDARG;
    if (md->EaBufferSize && !ea_valid((const uint8_t *)md->EaBuffer, md->EaBufferSize)) return CIMFS_E_INVALIDARG;
    if (md->SecurityDescriptorSize)
        hr = cim_ns_intern(&img->ns, CIM_BLOB_SD, md->SecurityDescriptorBuffer, md->SecurityDescriptorSize, &v->sd);
    if (hr >= 0 && has_reparse)
        hr = cim_ns_intern(&img->ns, CIM_BLOB_REPARSE, md->ReparseDataBuffer, md->ReparseDataSize, &v->reparse);
    if (hr >= 0 && md->EaBufferSize) hr = cim_ns_intern(&img->ns, CIM_BLOB_EA, md->EaBuffer, md->EaBufferSize, &v->ea);
    if (a & CIMFS_FILE_ATTRIBUTE_READONLY) v->flags |= CIM_FF_READONLY;
    if (a & CIMFS_FILE_ATTRIBUTE_HIDDEN) v->flags |= CIM_FF_HIDDEN;
    if (a & CIMFS_FILE_ATTRIBUTE_SYSTEM) v->flags |= CIM_FF_SYSTEM;
    if (a & CIMFS_FILE_ATTRIBUTE_ARCHIVE) v->flags |= CIM_FF_ARCHIVE;
    /* Format 1.0 has neither the sparse flag nor sparse streams: such files are stored zero-filled. */
    if ((a & CIMFS_FILE_ATTRIBUTE_SPARSE_FILE) && img->format_major > 1) {
        v->flags |= CIM_FF_SPARSE;
        v->sparse = 1;
    }
    return hr;
}

/*
 * Writes a new file's SD (and reparse buffer) to the metadata region now, so
 * that region 0 holds them in the order files were added, as in Microsoft's
 * images (docs/format.md §17); its EA buffer follows when its stream closes
 * (after a PE descriptor, as there).  Commit then finds them written.
 * A file without an SD gets the NULL-DACL SD (docs/api.md §7.18); so does the
 * root when the caller creates it (left alone, it has none, as Microsoft's).
 */
static HRESULT store_metadata_objects(cim_image *img, validated_md *v)
{
    HRESULT hr = CIMFS_S_OK;
    if (!v->sd) hr = cim_ns_intern(&img->ns, CIM_BLOB_SD, cim_null_dacl_sd, CIM_NULL_DACL_SD_SIZE, &v->sd);
    if (hr >= 0) hr = cim_defer_blob(img, v->sd);
    if (hr >= 0) hr = cim_defer_blob(img, v->reparse);
    if (hr < 0 && hr != CIMFS_E_OUTOFMEMORY && img->io_error >= 0) img->io_error = hr; /* fails the commit */
    return hr;
}

static void apply_metadata(cim_node *n, const CIMFS_FILE_METADATA *md, const validated_md *v)
{
    n->times[0] = md->CreationTime.QuadPart;
    n->times[1] = md->LastWriteTime.QuadPart;
    n->times[2] = md->ChangeTime.QuadPart;
    n->times[3] = md->LastAccessTime.QuadPart;
    n->sd = v->sd;
    n->ea = v->ea;
    n->reparse = v->reparse;
    n->reparse_tag = v->reparse_tag;
    n->flags = v->flags;
}

/* Starts the image's one stream on node (or its ADS) and hands out a token
 * for it, which holds a reference to the image.  On failure the stream is
 * closed again; an I/O failure also fails the commit later. */
static HRESULT begin_stream(cim_image *img, cim_node *node, cim_ads *ads, uint64_t capacity, int sparse,
                            CIMFS_STREAM_HANDLE *out)
{
    uintptr_t t = 0;
    HRESULT hr = cim_stream_begin(img, node, ads, capacity, sparse);
    if (hr >= 0) {
        cim_global_lock();
        t = slot_alloc(KIND_STREAM, img);
        if (t) img->refs++;
        cim_global_unlock();
        if (!t) hr = CIMFS_E_OUTOFMEMORY;
    }
    if (hr < 0) {
        if (img->stream.open) cim_stream_abort(img);
        if (hr != CIMFS_E_OUTOFMEMORY && img->io_error >= 0) img->io_error = hr;
        return hr;
    }
    img->stream.token = t;
    *out = (CIMFS_STREAM_HANDLE)t;
    return CIMFS_S_OK;
}

/* ---- CimCreateFile ---------------------------------------------------------------- */

HRESULT cim_portable_create_file(CIMFS_IMAGE_HANDLE h, PCWSTR path, const CIMFS_FILE_METADATA *md,
                                 CIMFS_STREAM_HANDLE *out)
{
    cim_image *img;
    cim_path p;
    validated_md v;
    cim_node *parent, *node = NULL;
    cim_entry *entry;
    const WCHAR *name;
    size_t name_len;
    HRESULT hr;

    if (out) *out = NULL;
    img = acquire(h, KIND_IMAGE);
    if (!img) return CIMFS_E_INVALIDARG;
    hr = check_open(img);
    if (hr >= 0 && !out) hr = CIMFS_E_INVALIDARG;
    if (hr >= 0) hr = cim_path_parse(path, CIM_PATH_ALLOW_ROOT, &p);
    if (hr >= 0) hr = validate_metadata(img, md, &v);
    if (hr >= 0) hr = cim_ns_resolve(&img->ns, &p, &parent, &entry, &name, &name_len);
    if (hr >= 0 && entry) cim_defer_drain(img); /* a name replaced or re-created: nothing queued may point there */
    if (hr >= 0) hr = store_metadata_objects(img, &v);
    if (hr < 0) goto done;

    if (!parent) { /* the root: only new directory metadata */
        if (!v.is_dir) {
            hr = CIMFS_E_INVALIDARG;
            goto done;
        }
        node = img->ns.root;
        apply_metadata(node, md, &v);
        img->ns.root_created = 1;
    } else if (entry && entry->node->is_dir && v.is_dir) {
        /* Re-creating a directory keeps its children (docs/api.md §7.2) and takes
         * the new metadata and spelling. */
        node = entry->node;
        apply_metadata(node, md, &v);
        memcpy(entry->name, name, name_len * sizeof(WCHAR));
    } else {
        cim_entry *e = cim_ns_entry_new(name, name_len);
        node = e ? cim_ns_node_new(&img->ns, v.is_dir) : NULL;
        if (!node) {
            free(e);
            hr = CIMFS_E_OUTOFMEMORY;
            goto done;
        }
        apply_metadata(node, md, &v);
        node->data.offset = cim_empty_stream_offset(img);
        /* Replacing a name affects only that name (docs/api.md §7.3, §7.4). */
        if (entry) cim_ns_unlink(&img->ns, entry);
        cim_ns_insert(&img->ns, parent, e, node);
    }
    hr = begin_stream(img, node, NULL, v.is_dir ? 0 : (uint64_t)md->FileSize, v.sparse, out);
done:
    release(img, 1);
    return hr;
}

/* ---- streams ---------------------------------------------------------------------- */

static cim_image *acquire_stream(CIMFS_STREAM_HANDLE s)
{
    cim_image *img = acquire(s, KIND_STREAM);
    if (img && !(img->stream.open && img->stream.token == (uintptr_t)s)) {
        release(img, 1);
        return NULL;
    }
    return img;
}

HRESULT cim_portable_write_stream(CIMFS_STREAM_HANDLE s, const void *buf, UINT32 n)
{
    cim_image *img = acquire_stream(s);
    HRESULT hr;
    if (!img) return CIMFS_E_INVALIDARG;
    if (img->stream.is_dir) hr = CIMFS_E_INVALIDARG;
    else if (n == 0) hr = CIMFS_S_OK;
    else if (!buf) hr = CIMFS_E_POINTER;
    else {
        hr = cim_stream_write(img, buf, n);
        if (hr < 0 && hr != CIMFS_HR_HANDLE_EOF && img->io_error >= 0) img->io_error = hr;
    }
    release(img, 1);
    return hr;
}

void cim_portable_close_stream(CIMFS_STREAM_HANDLE s)
{
    cim_image *img = acquire_stream(s);
    if (!img) return;
    if (img->user_closed || img->state != CIM_STATE_OPEN) {
        img->stream.open = 0; /* the image is being discarded anyway */
    } else {
        HRESULT hr = cim_stream_finish(img);
        if (hr < 0 && img->io_error >= 0) img->io_error = hr;
    }
    cim_global_lock();
    slot_free(img->stream.token);
    cim_global_unlock();
    img->stream.token = 0;
    release(img, 2); /* the call's reference and the stream's */
}

/* ---- CimCreateAlternateStream -------------------------------------------------------- */

static cim_ads **find_ads(cim_image *img, cim_node *node, const WCHAR *name, size_t len)
{
    cim_ads **pp;
    for (pp = &node->ads; *pp; pp = &(*pp)->next)
        if (cim_name_equal(img->ns.up, (*pp)->name, (*pp)->len, name, len)) return pp;
    return NULL;
}

HRESULT cim_portable_create_alternate_stream(CIMFS_IMAGE_HANDLE h, PCWSTR path, UINT64 size,
                                             CIMFS_STREAM_HANDLE *out)
{
    cim_image *img;
    cim_path p;
    cim_node *parent;
    cim_entry *entry;
    const WCHAR *name;
    size_t name_len;
    cim_ads *ads, **old;
    HRESULT hr;

    if (out) *out = NULL;
    img = acquire(h, KIND_IMAGE);
    if (!img) return CIMFS_E_INVALIDARG;
    hr = check_open(img);
    if (hr >= 0 && (!out || size > CIM_MAX_STREAM_LENGTH)) hr = CIMFS_E_INVALIDARG;
    if (hr >= 0) hr = cim_path_parse(path, CIM_PATH_ALLOW_STREAM | CIM_PATH_REQUIRE_STREAM, &p);
    if (hr >= 0) hr = cim_ns_resolve(&img->ns, &p, &parent, &entry, &name, &name_len);
    if (hr >= 0 && !entry) hr = CIMFS_HR_PATH_NOT_FOUND;
    if (hr < 0) goto done;
    cim_defer_drain(img); /* a replaced stream may be queued */
    ads = (cim_ads *)calloc(1, sizeof *ads + p.stream_len * sizeof(WCHAR));
    if (!ads) {
        hr = CIMFS_E_OUTOFMEMORY;
        goto done;
    }
    memcpy(ads->name, p.stream, p.stream_len * sizeof(WCHAR));
    ads->len = (uint16_t)p.stream_len;
    ads->stream.offset = cim_empty_stream_offset(img);
    old = find_ads(img, entry->node, p.stream, p.stream_len);
    if (old) { /* replace the stream of that name */
        cim_ads *dead = *old;
        *old = dead->next;
        free(dead);
    }
    ads->next = entry->node->ads;
    entry->node->ads = ads;
    hr = begin_stream(img, entry->node, ads, size, 0, out);
done:
    release(img, 1);
    return hr;
}

/* ---- CimCreateHardLink ----------------------------------------------------------------- */

/* *target_missing tells a missing target (which a later pair may create)
 * from every other failure. */
static HRESULT hard_link_locked(cim_image *img, PCWSTR path, PCWSTR existing, int *target_missing)
{
    cim_path np, tp;
    cim_node *tparent, *nparent;
    cim_entry *target, *current;
    const WCHAR *tname, *nname;
    size_t tlen, nlen;
    HRESULT hr = cim_path_parse(path, 0, &np);
    *target_missing = 0;
    if (hr >= 0) hr = cim_path_parse(existing, 0, &tp);
    if (hr < 0) return hr;
    hr = cim_ns_resolve(&img->ns, &tp, &tparent, &target, &tname, &tlen);
    if (hr >= 0 && !target) hr = CIMFS_HR_PATH_NOT_FOUND;
    if (hr < 0) {
        *target_missing = 1;
        return hr;
    }
    if (target->node->is_dir) return CIMFS_E_ACCESSDENIED;
    hr = cim_ns_resolve(&img->ns, &np, &nparent, &current, &nname, &nlen);
    if (hr < 0) return hr;
    if (current) {
        if (current->node->is_dir) return CIMFS_E_ACCESSDENIED;
        if (current->node == target->node) { /* already this file: keep the new spelling */
            memcpy(current->name, nname, nlen * sizeof(WCHAR));
            return CIMFS_S_OK;
        }
    }
    {
        /* Allocate first, so that running out of memory changes nothing. */
        cim_entry *e = cim_ns_entry_new(nname, nlen);
        if (!e) return CIMFS_E_OUTOFMEMORY;
        if (current) {
            cim_defer_drain(img); /* the old file may go, and may be queued */
            cim_ns_unlink(&img->ns, current); /* only this name of the old file */
        }
        cim_ns_insert(&img->ns, nparent, e, target->node);
    }
    return CIMFS_S_OK;
}

HRESULT cim_portable_create_hard_link(CIMFS_IMAGE_HANDLE h, PCWSTR path, PCWSTR existing)
{
    cim_image *img = acquire(h, KIND_IMAGE);
    int missing;
    HRESULT hr;
    if (!img) return CIMFS_E_INVALIDARG;
    hr = check_open(img);
    if (hr >= 0) hr = hard_link_locked(img, path, existing, &missing);
    release(img, 1);
    return hr;
}

HRESULT cim_portable_create_hard_links(CIMFS_IMAGE_HANDLE h, const WCHAR *pairs, size_t units, uint32_t count,
                                       uint32_t flags, uint32_t *deferred, uint32_t *deferred_count,
                                       uint32_t *failed_index)
{
    cim_image *img = acquire(h, KIND_IMAGE);
    HRESULT hr;
    uint32_t i;
    size_t pos = 0;
    if (!img) return CIMFS_E_INVALIDARG;
    hr = check_open(img);
    /* One lock for the whole batch; each pair as CimCreateHardLink would do it. */
    for (i = 0; hr >= 0 && i < count; i++) {
        const WCHAR *new_path, *existing;
        int missing;
        HRESULT one;
        cim_next_link_pair(pairs, &pos, &new_path, &existing);
        one = hard_link_locked(img, new_path, existing, &missing);
        if (one >= 0) continue;
        if (missing && (flags & CIMFS_LINKS_DEFER_MISSING)) {
            deferred[(*deferred_count)++] = i;
            continue;
        }
        *failed_index = i;
        hr = one;
    }
    (void)units;
    release(img, 1);
    return hr;
}

/* ---- CimDeletePath ---------------------------------------------------------------------- */

HRESULT cim_portable_delete_path(CIMFS_IMAGE_HANDLE h, PCWSTR path)
{
    cim_image *img = acquire(h, KIND_IMAGE);
    cim_path p;
    cim_node *parent;
    cim_entry *entry;
    const WCHAR *name;
    size_t name_len;
    HRESULT hr;
    if (!img) return CIMFS_E_INVALIDARG;
    hr = check_open(img);
    if (hr >= 0) hr = cim_path_parse(path, CIM_PATH_ALLOW_STREAM, &p);
    if (hr >= 0) hr = cim_ns_resolve(&img->ns, &p, &parent, &entry, &name, &name_len);
    if (hr >= 0 && !entry) hr = CIMFS_HR_PATH_NOT_FOUND;
    if (hr >= 0) cim_defer_drain(img); /* what goes may be queued */
    if (hr >= 0) {
        if (p.stream) {
            cim_ads **pp = find_ads(img, entry->node, p.stream, p.stream_len);
            if (!pp) {
                hr = CIMFS_HR_PATH_NOT_FOUND;
            } else {
                cim_ads *dead = *pp;
                *pp = dead->next;
                free(dead);
            }
        } else {
            cim_ns_unlink(&img->ns, entry);
        }
    }
    release(img, 1);
    return hr;
}
