/* cim_hostfiles.c - CimfsAddHostFiles and CimfsAddHostTreeFiles: files of the
 * host into an image, a batch per call.
 *
 * Built only from the public API (so it works with either backend) and the
 * platform layer's read calls.  A directory build spends most of its time per
 * file, not per byte; doing stat/open/read/create/write/close here, without
 * the Python interpreter in between, is what lets `cimfs build` keep up with
 * tar.  CimfsAddHostTreeFiles also takes each file's metadata from its handle
 * and keeps hard links, so a directory walk never stats a regular file itself.
 */
#include <stdlib.h>
#include <string.h>

#include "cim_platform.h"
#include "cim_portable.h"

#define HOST_CHUNK ((size_t)1 << 20)

/* Copies the first `size` bytes of open host file `f` into the open stream. */
static HRESULT copy_open_file(cim_file *f, uint64_t size, CIMFS_STREAM_HANDLE stream, void *buf)
{
    uint64_t done = 0;
    HRESULT hr = CIMFS_S_OK;
    while (hr >= 0 && done < size) {
        size_t n = size - done < HOST_CHUNK ? (size_t)(size - done) : HOST_CHUNK;
        hr = cim_file_pread(f, buf, n, done);
        if (hr == CIMFS_HR_FILE_CORRUPT) hr = CIMFS_HR_HANDLE_EOF; /* it shrank while we read */
        if (hr >= 0) hr = CimWriteStream(stream, buf, (UINT64)n);
        done += n;
    }
    return hr;
}

/* Copies host file `host` (exactly `size` bytes) into the open stream. */
static HRESULT copy_host_file(const WCHAR *host, uint64_t size, CIMFS_STREAM_HANDLE stream, void *buf)
{
    cim_nchar *native = NULL;
    cim_file *f = NULL;
    uint64_t actual;
    HRESULT hr = cim_native_from_utf16(host, 32767, &native);
    if (hr >= 0) hr = cim_file_open_read(native, &f);
    if (hr >= 0) hr = cim_file_size(f, &actual);
    if (hr >= 0 && actual != size) hr = CIMFS_HR_HANDLE_EOF;
    if (hr >= 0) hr = copy_open_file(f, size, stream, buf);
    if (f) cim_file_close(f);
    free(native);
    return hr;
}

HRESULT CimfsAddHostFiles(CIMFS_IMAGE_HANDLE h, const WCHAR *paths, size_t units, UINT32 count,
                          const CIMFS_FILE_METADATA *metadata, UINT32 *failed_index)
{
    void *buf = NULL;
    size_t pos = 0;
    UINT32 i;
    HRESULT hr = CIMFS_S_OK;
    if (!failed_index || (count && !metadata)) return CIMFS_E_INVALIDARG;
    *failed_index = 0;
    if (count == 0) return CIMFS_S_OK;
    if (!cim_pairs_buffer_ok(paths, units, count)) return CIMFS_E_INVALIDARG;
    for (i = 0; i < count; i++) {
        const WCHAR *image_path, *host;
        CIMFS_STREAM_HANDLE stream = NULL;
        cim_next_link_pair(paths, &pos, &image_path, &host);
        if (metadata[i].FileSize < 0) {
            hr = CIMFS_E_INVALIDARG;
        } else if (metadata[i].FileSize > 0 && !buf && !(buf = malloc(HOST_CHUNK))) {
            hr = CIMFS_E_OUTOFMEMORY;
        } else {
            hr = CimCreateFile(h, image_path, &metadata[i], &stream);
        }
        if (hr >= 0) {
            hr = copy_host_file(host, (uint64_t)metadata[i].FileSize, stream, buf);
            CimCloseStream(stream);
            if (hr < 0) CimDeletePath(h, image_path); /* never leave a half-copied file */
        }
        if (hr < 0) {
            *failed_index = i;
            break;
        }
    }
    free(buf);
    return hr;
}

/* ---- CimfsAddHostTreeFiles ------------------------------------------------ */

/* The host files (device, inode) with more than one link that a build has added, and the image
 * path each went to first: an open-addressing table, at most half full. */
struct host_link {
    uint64_t device, inode;
    WCHAR *image_path; /* NULL: an empty slot */
};

struct CIMFS_HOST_LINKS {
    struct host_link *slots;
    size_t cap, used; /* cap: 0 or a power of two */
};

HRESULT CimfsHostLinksCreate(CIMFS_HOST_LINKS **links)
{
    if (!links) return CIMFS_E_INVALIDARG;
    *links = (CIMFS_HOST_LINKS *)calloc(1, sizeof **links);
    return *links ? CIMFS_S_OK : CIMFS_E_OUTOFMEMORY;
}

void CimfsHostLinksFree(CIMFS_HOST_LINKS *links)
{
    size_t i;
    if (!links) return;
    for (i = 0; i < links->cap; i++) free(links->slots[i].image_path);
    free(links->slots);
    free(links);
}

static size_t link_slot(const struct host_link *slots, size_t cap, uint64_t device, uint64_t inode)
{
    uint64_t mix = (inode ^ (device * 0x9E3779B97F4A7C15ull)) * 0xFF51AFD7ED558CCDull;
    size_t i = (size_t)(mix >> 32) & (cap - 1);
    while (slots[i].image_path && !(slots[i].inode == inode && slots[i].device == device)) i = (i + 1) & (cap - 1);
    return i;
}

/* Room for one more entry. */
static HRESULT links_reserve(CIMFS_HOST_LINKS *l)
{
    size_t cap = l->cap ? l->cap * 2 : 1024, i;
    struct host_link *slots;
    if ((l->used + 1) * 2 <= l->cap) return CIMFS_S_OK;
    slots = (struct host_link *)calloc(cap, sizeof *slots);
    if (!slots) return CIMFS_E_OUTOFMEMORY;
    for (i = 0; i < l->cap; i++)
        if (l->slots[i].image_path)
            slots[link_slot(slots, cap, l->slots[i].device, l->slots[i].inode)] = l->slots[i];
    free(l->slots);
    l->slots = slots;
    l->cap = cap;
    return CIMFS_S_OK;
}

static WCHAR *wide_copy(const WCHAR *s)
{
    size_t n = 0;
    WCHAR *copy;
    while (s[n]) n++;
    copy = (WCHAR *)malloc((n + 1) * sizeof *copy);
    if (copy) memcpy(copy, s, (n + 1) * sizeof *copy);
    return copy;
}

/* The metadata docs/api.md §9.4 describes, from the host file's handle. */
static void host_metadata(CIMFS_FILE_METADATA *md, const cim_host_info *info, const WCHAR *image_path,
                          UINT32 flags, INT64 latest)
{
    const WCHAR *name = image_path, *p;
    INT64 times[4]; /* creation, last write, change, last access */
    int i;
    for (p = image_path; *p; p++)
        if (*p == '\\' || *p == '/') name = p + 1;
    memset(md, 0, sizeof *md);
    md->Attributes = info->attributes & ~(CIMFS_FILE_ATTRIBUTE_REPARSE_POINT | CIMFS_FILE_ATTRIBUTE_DIRECTORY);
    if (!info->attributes_native && name[0] == '.') md->Attributes |= CIMFS_FILE_ATTRIBUTE_HIDDEN;
    md->FileSize = (INT64)info->size;
    times[1] = times[2] = info->last_write;
    times[0] = info->creation ? info->creation : info->last_write;
    times[3] = info->last_access;
    if (flags & CIMFS_HOST_REPRODUCIBLE) times[0] = times[3] = info->last_write;
    for (i = 0; i < 4; i++)
        if ((flags & CIMFS_HOST_LATEST_TIME) && times[i] > latest) times[i] = latest;
    md->CreationTime.QuadPart = times[0];
    md->LastWriteTime.QuadPart = times[1];
    md->ChangeTime.QuadPart = times[2];
    md->LastAccessTime.QuadPart = times[3];
}

/* A batch in two phases, so that they can run on two threads at once: CimfsHostBatchRead opens,
 * describes and reads the host files (system calls: no image lock), CimfsHostBatchAdd puts them
 * into the image in order.  Files up to HOST_INLINE_MAX are read into the batch's arena, up to
 * HOST_ARENA_MAX in all.  The add phase copies the others: through the handle the read phase
 * kept, for the first HOST_OPEN_MAX of a batch, else by opening the file again, which must then
 * still be the file described (several batches can wait at once; open handles are a scarce
 * resource, 256 per process by default on macOS). */
#define HOST_INLINE_MAX ((uint64_t)1 << 20)
#define HOST_ARENA_MAX ((size_t)16 << 20)
#define HOST_OPEN_MAX 16

struct host_entry {
    const WCHAR *image_path;  /* into the batch's copy of the image paths */
    const WCHAR *link_to;     /* a hard link to this image path (owned by the links table), or NULL */
    int in_arena;             /* its data is at arena + data */
    size_t data;
    cim_file *f;              /* else: kept open for the add phase, */
    cim_nchar *reopen;        /* or the path the add phase opens again */
    cim_host_info info;       /* as the read phase described it */
    CIMFS_FILE_METADATA md;
};

struct CIMFS_HOST_BATCH {
    WCHAR *images;
    struct host_entry *entries;
    UINT32 count;          /* entries read: those before a failure */
    HRESULT hr;            /* the read phase's failure (at index `count`), or S_OK */
    uint8_t *arena;
    size_t arena_used;
    unsigned open_files;   /* entries holding a handle */
};

void CimfsHostBatchFree(CIMFS_HOST_BATCH *b)
{
    UINT32 i;
    if (!b) return;
    for (i = 0; i < b->count; i++) {
        if (b->entries[i].f) cim_file_close(b->entries[i].f);
        free(b->entries[i].reopen);
    }
    free(b->entries);
    free(b->images);
    free(b->arena);
    free(b);
}

/* Reads `size` bytes of `f` into `buf`; HANDLE_EOF when the file is shorter now. */
static HRESULT read_whole(cim_file *f, void *buf, uint64_t size)
{
    HRESULT hr = size ? cim_file_pread(f, buf, (size_t)size, 0) : CIMFS_S_OK;
    return hr == CIMFS_HR_FILE_CORRUPT ? CIMFS_HR_HANDLE_EOF : hr; /* it shrank since it was described */
}

/* Entry `e`: a hard link to where its (device, inode) went before, or a file, described and, when
 * small enough, read. */
static HRESULT read_entry(CIMFS_HOST_BATCH *b, CIMFS_HOST_LINKS *links, UINT32 flags, INT64 latest,
                          const cim_nchar *host, struct host_entry *e)
{
    cim_host_info info;
    cim_file *f = NULL;
    size_t host_len = 0;
    size_t slot = 0;
    WCHAR *first = NULL;
    HRESULT hr = cim_file_open_host(host, &f, &info);
    if (hr < 0) return hr;
    if (info.links > 1) {
        hr = links_reserve(links);
        if (hr >= 0) {
            slot = link_slot(links->slots, links->cap, info.device, info.inode);
            if (links->slots[slot].image_path) {
                cim_file_close(f);
                e->link_to = links->slots[slot].image_path;
                return CIMFS_S_OK;
            }
            if (!(first = wide_copy(e->image_path))) hr = CIMFS_E_OUTOFMEMORY;
        }
    }
    if (hr >= 0 && info.size > (uint64_t)INT64_MAX) hr = CIMFS_E_INVALIDARG;
    if (hr >= 0 && info.size <= HOST_INLINE_MAX && b->arena_used + (size_t)info.size <= HOST_ARENA_MAX) {
        if (!b->arena && !(b->arena = (uint8_t *)malloc(HOST_ARENA_MAX))) hr = CIMFS_E_OUTOFMEMORY;
        if (hr >= 0) hr = read_whole(f, b->arena + b->arena_used, info.size);
        if (hr >= 0) {
            e->in_arena = 1;
            e->data = b->arena_used;
            b->arena_used += (size_t)info.size;
        }
        cim_file_close(f);
    } else if (hr >= 0 && b->open_files < HOST_OPEN_MAX) {
        e->f = f; /* copied by the add phase through this handle */
        b->open_files++;
    } else if (hr >= 0) {
        cim_file_close(f); /* the add phase opens it again */
        while (host[host_len]) host_len++;
        e->reopen = (cim_nchar *)malloc((host_len + 1) * sizeof *host);
        if (e->reopen) memcpy(e->reopen, host, (host_len + 1) * sizeof *host);
        else hr = CIMFS_E_OUTOFMEMORY;
    } else {
        cim_file_close(f);
    }
    if (hr < 0) {
        free(first);
        return hr;
    }
    if (first) {
        links->slots[slot].device = info.device;
        links->slots[slot].inode = info.inode;
        links->slots[slot].image_path = first;
        links->used++;
    }
    e->info = info;
    host_metadata(&e->md, &info, e->image_path, flags, latest);
    return CIMFS_S_OK;
}

/* Copies entry `e`'s data into the open stream. */
static HRESULT copy_entry(const CIMFS_HOST_BATCH *b, const struct host_entry *e, CIMFS_STREAM_HANDLE stream,
                          void *buf)
{
    cim_file *f = e->f;
    cim_host_info now;
    HRESULT hr = CIMFS_S_OK;
    if (e->in_arena) return e->info.size ? CimWriteStream(stream, b->arena + e->data, (UINT32)e->info.size) : hr;
    if (!f) {
        hr = cim_file_open_host(e->reopen, &f, &now);
        if (hr >= 0 && (now.device != e->info.device || now.inode != e->info.inode || now.size != e->info.size))
            hr = CIMFS_HR_HANDLE_EOF; /* not the file described any more */
    }
    if (hr >= 0) hr = copy_open_file(f, e->info.size, stream, buf);
    if (f && !e->f) cim_file_close(f);
    return hr;
}

HRESULT CimfsHostBatchRead(CIMFS_HOST_LINKS *links, UINT32 flags, INT64 latestTime, const WCHAR *imagePaths,
                           size_t imageUnits, const void *hostPaths, size_t hostBytes, UINT32 count,
                           CIMFS_HOST_BATCH **batch)
{
    const cim_nchar *hosts = (const cim_nchar *)hostPaths;
    size_t ipos = 0, hpos = 0;
    int framed_images = 1, framed_hosts = 1;
    CIMFS_HOST_BATCH *b;
    if (!batch) return CIMFS_E_INVALIDARG;
    *batch = NULL;
    if (!links || (flags & ~(CIMFS_HOST_REPRODUCIBLE | CIMFS_HOST_LATEST_TIME))) return CIMFS_E_INVALIDARG;
    if (count) {
        CIM_STRINGS_FRAMED(imagePaths, imageUnits, count, framed_images);
        CIM_STRINGS_FRAMED(hosts, hostBytes / sizeof *hosts, count, framed_hosts);
    }
    if (!framed_images || !framed_hosts || hostBytes % sizeof *hosts) return CIMFS_E_INVALIDARG;
    b = (CIMFS_HOST_BATCH *)calloc(1, sizeof *b);
    if (!b) return CIMFS_E_OUTOFMEMORY;
    if (count) {
        b->images = (WCHAR *)malloc(imageUnits * sizeof *b->images);
        b->entries = (struct host_entry *)calloc(count, sizeof *b->entries);
        if (!b->images || !b->entries) {
            CimfsHostBatchFree(b);
            return CIMFS_E_OUTOFMEMORY;
        }
        memcpy(b->images, imagePaths, imageUnits * sizeof *b->images);
    }
    while (b->count < count) {
        struct host_entry *e = &b->entries[b->count];
        const cim_nchar *host = hosts + hpos;
        e->image_path = b->images + ipos;
        while (b->images[ipos]) ipos++;
        while (hosts[hpos]) hpos++;
        ipos++;
        hpos++;
        b->hr = read_entry(b, links, flags, latestTime, host, e);
        if (b->hr < 0) break;
        b->count++;
    }
    *batch = b;
    return CIMFS_S_OK;
}

HRESULT CimfsHostBatchAdd(CIMFS_IMAGE_HANDLE h, const CIMFS_HOST_BATCH *b, UINT32 *failedIndex,
                          CIMFS_HOST_FILES_RESULT *result)
{
    void *buf = NULL;
    UINT32 i;
    HRESULT hr = CIMFS_S_OK;
    if (!b || !failedIndex || !result) return CIMFS_E_INVALIDARG;
    *failedIndex = 0;
    memset(result, 0, sizeof *result);
    for (i = 0; i < b->count && hr >= 0; i++) {
        const struct host_entry *e = &b->entries[i];
        CIMFS_STREAM_HANDLE stream = NULL;
        if (e->link_to) {
            hr = CimCreateHardLink(h, e->image_path, e->link_to);
            if (hr >= 0) result->links++;
            continue;
        }
        if (!e->in_arena && !buf && !(buf = malloc(HOST_CHUNK))) hr = CIMFS_E_OUTOFMEMORY;
        if (hr >= 0) hr = CimCreateFile(h, e->image_path, &e->md, &stream);
        if (hr < 0) continue;
        hr = copy_entry(b, e, stream, buf);
        CimCloseStream(stream);
        if (hr < 0) {
            CimDeletePath(h, e->image_path); /* never leave a half-copied file */
            continue;
        }
        result->files++;
        result->bytes += (UINT64)e->md.FileSize;
    }
    free(buf);
    if (hr < 0) {
        *failedIndex = i - 1;
        return hr;
    }
    if (b->hr < 0) *failedIndex = b->count; /* the read phase stopped there */
    return b->hr;
}

HRESULT CimfsAddHostTreeFiles(CIMFS_IMAGE_HANDLE h, CIMFS_HOST_LINKS *links, UINT32 flags, INT64 latestTime,
                              const WCHAR *imagePaths, size_t imageUnits, const void *hostPaths, size_t hostBytes,
                              UINT32 count, UINT32 *failedIndex, CIMFS_HOST_FILES_RESULT *result)
{
    CIMFS_HOST_BATCH *b = NULL;
    HRESULT hr;
    if (!failedIndex || !result) return CIMFS_E_INVALIDARG;
    hr = CimfsHostBatchRead(links, flags, latestTime, imagePaths, imageUnits, hostPaths, hostBytes, count, &b);
    if (hr < 0) {
        *failedIndex = 0;
        memset(result, 0, sizeof *result);
        return hr;
    }
    hr = CimfsHostBatchAdd(h, b, failedIndex, result);
    CimfsHostBatchFree(b);
    return hr;
}
