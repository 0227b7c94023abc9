/*
 * cim_backend.c - the public cimfs.h functions: route each call to the
 * portable writer or, on Windows, to cimfs.dll.
 *
 * cimfs.dll is loaded from System32 and every export is resolved with
 * GetProcAddress at run time (docs/api.md §7.29), so the module imports on
 * Windows builds whose cimfs.dll lacks newer functions, or has no CimFS at
 * all; a missing export returns HR(PROC_NOT_FOUND).  Handles are routed by
 * shape: portable handles carry a tag no real pointer has (cim_image.c).
 */
#include "cim_portable.h"

#ifdef _WIN32
typedef HRESULT(WINAPI *create_image_fn)(PCWSTR, PCWSTR, PCWSTR, CIMFS_IMAGE_HANDLE *);
typedef HRESULT(WINAPI *create_image2_fn)(PCWSTR, CIM_CREATE_IMAGE_FLAGS, PCWSTR, PCWSTR, CIMFS_IMAGE_HANDLE *);
typedef HRESULT(WINAPI *image_fn)(CIMFS_IMAGE_HANDLE);
typedef void(WINAPI *close_image_fn)(CIMFS_IMAGE_HANDLE);
typedef HRESULT(WINAPI *create_file_fn)(CIMFS_IMAGE_HANDLE, PCWSTR, const CIMFS_FILE_METADATA *, CIMFS_STREAM_HANDLE *);
typedef HRESULT(WINAPI *write_stream_fn)(CIMFS_STREAM_HANDLE, const void *, UINT32);
typedef void(WINAPI *close_stream_fn)(CIMFS_STREAM_HANDLE);
typedef HRESULT(WINAPI *create_ads_fn)(CIMFS_IMAGE_HANDLE, PCWSTR, UINT64, CIMFS_STREAM_HANDLE *);
typedef HRESULT(WINAPI *path2_fn)(CIMFS_IMAGE_HANDLE, PCWSTR, PCWSTR);
typedef HRESULT(WINAPI *path1_fn)(CIMFS_IMAGE_HANDLE, PCWSTR);
typedef HRESULT(WINAPI *mount_fn)(PCWSTR, PCWSTR, CIM_MOUNT_IMAGE_FLAGS, const GUID *);
typedef HRESULT(WINAPI *dismount_fn)(const GUID *);
typedef HRESULT(WINAPI *merge_mount_fn)(UINT32, CIMFS_IMAGE_PATH *, CIM_MOUNT_IMAGE_FLAGS, const GUID *);
typedef HRESULT(WINAPI *add_fs2_fn)(CIMFS_IMAGE_HANDLE, PCWSTR, UINT32);
typedef HRESULT(WINAPI *seal_fn)(PCWSTR, UINT64 *, UINT64 *, BYTE *);
typedef HRESULT(WINAPI *verif_info_fn)(PCWSTR, UINT32 *, UINT64 *, UINT64 *, UINT64 *, BYTE *, BYTE *);
typedef HRESULT(WINAPI *mount_verified_fn)(PCWSTR, PCWSTR, CIM_MOUNT_IMAGE_FLAGS, const GUID *, UINT16, const BYTE *);
typedef HRESULT(WINAPI *merge_mount_verified_fn)(UINT32, CIMFS_IMAGE_PATH *, CIM_MOUNT_IMAGE_FLAGS, const GUID *, UINT16,
                                                 const BYTE *);

static HMODULE g_dll;
static INIT_ONCE g_once = INIT_ONCE_STATIC_INIT;

static BOOL CALLBACK load_dll(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
    (void)once; (void)param; (void)ctx;
    g_dll = LoadLibraryExW(L"cimfs.dll", NULL, LOAD_LIBRARY_SEARCH_SYSTEM32);
    return TRUE;
}

static FARPROC sys_proc(const char *name)
{
    InitOnceExecuteOnce(&g_once, load_dll, NULL, NULL);
    return g_dll ? GetProcAddress(g_dll, name) : NULL;
}

#define SYS(type, name) ((type)(void *)sys_proc(name))

int CimfsSystemBackendAvailable(void) { return sys_proc("CimCreateImage") != NULL; }
#else
int CimfsSystemBackendAvailable(void) { return 0; }
#endif

static volatile int g_backend = CIMFS_BACKEND_AUTO;

/* What the portable backend answers for driver, block and merge functions;
 * variadic so that every argument counts as used. */
static HRESULT not_supported(int unused, ...)
{
    (void)unused;
    return CIMFS_HR_NOT_SUPPORTED;
}

HRESULT CimfsSelectBackend(int backend)
{
    if (backend != CIMFS_BACKEND_AUTO && backend != CIMFS_BACKEND_PORTABLE && backend != CIMFS_BACKEND_SYSTEM)
        return CIMFS_E_INVALIDARG;
    if (backend == CIMFS_BACKEND_SYSTEM && !CimfsSystemBackendAvailable()) return CIMFS_HR_NOT_SUPPORTED;
    g_backend = backend;
    return CIMFS_S_OK;
}

/* "auto" is the system backend where cimfs.dll is present, else the portable one. */
static int resolve_backend(int backend)
{
    if (backend != CIMFS_BACKEND_AUTO) return backend;
    return CimfsSystemBackendAvailable() ? CIMFS_BACKEND_SYSTEM : CIMFS_BACKEND_PORTABLE;
}

int CimfsActiveBackend(void) { return resolve_backend(g_backend); }

/* A handle goes to cimfs.dll only when it is not shaped like one of ours. */
#ifdef _WIN32
/* Without cimfs.dll no handle can be the system backend's: a stray value
 * then gets the portable answer, E_INVALIDARG. */
#define IS_SYSTEM(h) ((h) != NULL && !cim_portable_handle_shape(h) && CimfsSystemBackendAvailable())
#define ROUTE(h, type, name, ...)                                      \
    do {                                                               \
        if (IS_SYSTEM(h)) {                                            \
            type fn_ = SYS(type, name);                                \
            return fn_ ? fn_(__VA_ARGS__) : CIMFS_HR_PROC_NOT_FOUND;   \
        }                                                              \
    } while (0)
#define ROUTE_VOID(h, type, name, ...)                                 \
    do {                                                               \
        if (IS_SYSTEM(h)) {                                            \
            type fn_ = SYS(type, name);                                \
            if (fn_) fn_(__VA_ARGS__);                                 \
            return;                                                    \
        }                                                              \
    } while (0)
#define ROUTE_GLOBAL(type, name, ...)                                  \
    do {                                                               \
        type fn_ = SYS(type, name);                                    \
        return fn_ ? fn_(__VA_ARGS__) : CIMFS_HR_PROC_NOT_FOUND;       \
    } while (0)
#define SYSTEM_ACTIVE() (CimfsActiveBackend() == CIMFS_BACKEND_SYSTEM)
#else
#define ROUTE(h, type, name, ...) ((void)0)
#define ROUTE_VOID(h, type, name, ...) ((void)0)
#define ROUTE_GLOBAL(type, name, ...) return not_supported(0, __VA_ARGS__)
#define SYSTEM_ACTIVE() 0
#endif

HRESULT CimfsCreateImageWithBackend(int backend, PCWSTR dir, CIM_CREATE_IMAGE_FLAGS flags, PCWSTR existing,
                                    PCWSTR name, CIMFS_IMAGE_HANDLE *out)
{
    if (out) *out = NULL;
    backend = resolve_backend(backend);
    if (backend == CIMFS_BACKEND_PORTABLE) return cim_portable_create_image(dir, flags, existing, name, out);
    if (backend != CIMFS_BACKEND_SYSTEM) return CIMFS_E_INVALIDARG;
    if (!CimfsSystemBackendAvailable()) return CIMFS_HR_NOT_SUPPORTED;
#ifdef _WIN32
    if (flags == 0) ROUTE_GLOBAL(create_image_fn, "CimCreateImage", dir, existing, name, out);
    ROUTE_GLOBAL(create_image2_fn, "CimCreateImage2", dir, flags, existing, name, out);
#else
    return CIMFS_HR_NOT_SUPPORTED;
#endif
}

HRESULT CimfsCreateHardLinks(CIMFS_IMAGE_HANDLE h, const WCHAR *pairs, size_t units, UINT32 count, UINT32 flags,
                             UINT32 *deferred, UINT32 *deferred_count, UINT32 *failed_index)
{
    if (!failed_index || (flags & ~CIMFS_LINKS_DEFER_MISSING) ||
        ((flags & CIMFS_LINKS_DEFER_MISSING) && (!deferred || !deferred_count)))
        return CIMFS_E_INVALIDARG;
    *failed_index = 0;
    if (count == 0) return CIMFS_S_OK;
    if (!cim_pairs_buffer_ok(pairs, units, count)) return CIMFS_E_INVALIDARG;
#ifdef _WIN32
    if (IS_SYSTEM(h)) {
        path2_fn link = SYS(path2_fn, "CimCreateHardLink");
        size_t pos = 0;
        UINT32 i;
        if (!link) return CIMFS_HR_PROC_NOT_FOUND;
        for (i = 0; i < count; i++) {
            const WCHAR *new_path, *existing;
            HRESULT hr;
            cim_next_link_pair(pairs, &pos, &new_path, &existing);
            hr = link(h, new_path, existing);
            if (hr >= 0) continue;
            /* cimfs.dll cannot tell a missing target from a missing parent of the
             * new name; both are deferred, and reported when they still fail. */
            if (hr == CIMFS_HR_PATH_NOT_FOUND && (flags & CIMFS_LINKS_DEFER_MISSING)) {
                deferred[(*deferred_count)++] = i;
                continue;
            }
            *failed_index = i;
            return hr;
        }
        return CIMFS_S_OK;
    }
#endif
    return cim_portable_create_hard_links(h, pairs, units, count, flags, deferred, deferred_count, failed_index);
}

HRESULT CimCreateImage(PCWSTR dir, PCWSTR existing, PCWSTR name, CIMFS_IMAGE_HANDLE *out)
{
#ifdef _WIN32
    if (SYSTEM_ACTIVE()) ROUTE_GLOBAL(create_image_fn, "CimCreateImage", dir, existing, name, out);
#endif
    return cim_portable_create_image(dir, 0, existing, name, out);
}

HRESULT CimCreateImage2(PCWSTR dir, CIM_CREATE_IMAGE_FLAGS flags, PCWSTR existing, PCWSTR name,
                        CIMFS_IMAGE_HANDLE *out)
{
#ifdef _WIN32
    if (SYSTEM_ACTIVE()) ROUTE_GLOBAL(create_image2_fn, "CimCreateImage2", dir, flags, existing, name, out);
#endif
    return cim_portable_create_image(dir, flags, existing, name, out);
}

HRESULT CimCommitImage(CIMFS_IMAGE_HANDLE h)
{
    ROUTE(h, image_fn, "CimCommitImage", h);
    return cim_portable_commit_image(h);
}

void CimCloseImage(CIMFS_IMAGE_HANDLE h)
{
    ROUTE_VOID(h, close_image_fn, "CimCloseImage", h);
    cim_portable_close_image(h);
}

HRESULT CimCreateFile(CIMFS_IMAGE_HANDLE h, PCWSTR path, const CIMFS_FILE_METADATA *md, CIMFS_STREAM_HANDLE *out)
{
    ROUTE(h, create_file_fn, "CimCreateFile", h, path, md, out);
    return cim_portable_create_file(h, path, md, out);
}

HRESULT CimWriteStream(CIMFS_STREAM_HANDLE s, const void *buf, UINT32 n)
{
    ROUTE(s, write_stream_fn, "CimWriteStream", s, buf, n);
    return cim_portable_write_stream(s, buf, n);
}

void CimCloseStream(CIMFS_STREAM_HANDLE s)
{
    ROUTE_VOID(s, close_stream_fn, "CimCloseStream", s);
    cim_portable_close_stream(s);
}

HRESULT CimCreateAlternateStream(CIMFS_IMAGE_HANDLE h, PCWSTR path, UINT64 size, CIMFS_STREAM_HANDLE *out)
{
    ROUTE(h, create_ads_fn, "CimCreateAlternateStream", h, path, size, out);
    return cim_portable_create_alternate_stream(h, path, size, out);
}

HRESULT CimCreateHardLink(CIMFS_IMAGE_HANDLE h, PCWSTR path, PCWSTR existing)
{
    ROUTE(h, path2_fn, "CimCreateHardLink", h, path, existing);
    return cim_portable_create_hard_link(h, path, existing);
}

HRESULT CimDeletePath(CIMFS_IMAGE_HANDLE h, PCWSTR path)
{
    ROUTE(h, path1_fn, "CimDeletePath", h, path);
    return cim_portable_delete_path(h, path);
}

HRESULT CimfsSetFormatVersion(CIMFS_IMAGE_HANDLE h, UINT32 major, UINT32 minor)
{
#ifdef _WIN32
    if (IS_SYSTEM(h)) return CIMFS_HR_NOT_SUPPORTED; /* cimfs.dll writes the version of its Windows */
#endif
    return cim_portable_set_format_version(h, major, minor);
}

HRESULT CimfsSetWriterThreads(CIMFS_IMAGE_HANDLE h, UINT32 threads)
{
#ifdef _WIN32
    if (IS_SYSTEM(h)) return CIMFS_S_OK; /* cimfs.dll schedules its own work */
#endif
    return cim_portable_set_writer_threads(h, threads);
}

/* ---- driver, block and merge functions: system backend only ---------------- */

HRESULT CimTombstoneFile(CIMFS_IMAGE_HANDLE h, PCWSTR path)
{
    ROUTE(h, path1_fn, "CimTombstoneFile", h, path);
    return not_supported(0, h, path);
}

HRESULT CimCreateMergeLink(CIMFS_IMAGE_HANDLE h, PCWSTR path, PCWSTR existing)
{
    ROUTE(h, path2_fn, "CimCreateMergeLink", h, path, existing);
    return not_supported(0, h, path, existing);
}

HRESULT CimAddFsToMergedImage(CIMFS_IMAGE_HANDLE h, PCWSTR existing)
{
    ROUTE(h, path1_fn, "CimAddFsToMergedImage", h, existing);
    return not_supported(0, h, existing);
}

HRESULT CimAddFsToMergedImage2(CIMFS_IMAGE_HANDLE h, PCWSTR existing, UINT32 flags)
{
    ROUTE(h, add_fs2_fn, "CimAddFsToMergedImage2", h, existing, flags);
    return not_supported(0, h, existing, flags);
}

HRESULT CimMountImage(PCWSTR dir, PCWSTR name, CIM_MOUNT_IMAGE_FLAGS flags, const GUID *volume)
{
    ROUTE_GLOBAL(mount_fn, "CimMountImage", dir, name, flags, volume);
}

HRESULT CimDismountImage(const GUID *volume) { ROUTE_GLOBAL(dismount_fn, "CimDismountImage", volume); }

HRESULT CimMergeMountImage(UINT32 n, CIMFS_IMAGE_PATH *paths, CIM_MOUNT_IMAGE_FLAGS flags, const GUID *volume)
{
    ROUTE_GLOBAL(merge_mount_fn, "CimMergeMountImage", n, paths, flags, volume);
}

HRESULT CimSealImage(PCWSTR path, UINT64 *hash_size, UINT64 *header_size, BYTE *hash)
{
    ROUTE_GLOBAL(seal_fn, "CimSealImage", path, hash_size, header_size, hash);
}

HRESULT CimGetVerificationInformation(PCWSTR path, UINT32 *sealed, UINT64 *hash_size, UINT64 *sig_size,
                                      UINT64 *header_size, BYTE *hash, BYTE *sig)
{
    ROUTE_GLOBAL(verif_info_fn, "CimGetVerificationInformation", path, sealed, hash_size, sig_size, header_size, hash,
                 sig);
}

HRESULT CimMountVerifiedImage(PCWSTR dir, PCWSTR name, CIM_MOUNT_IMAGE_FLAGS flags, const GUID *volume,
                              UINT16 hash_size, const BYTE *hash)
{
    ROUTE_GLOBAL(mount_verified_fn, "CimMountVerifiedImage", dir, name, flags, volume, hash_size, hash);
}

HRESULT CimMergeMountVerifiedImage(UINT32 n, CIMFS_IMAGE_PATH *paths, CIM_MOUNT_IMAGE_FLAGS flags,
                                   const GUID *volume, UINT16 hash_size, const BYTE *hash)
{
    ROUTE_GLOBAL(merge_mount_verified_fn, "CimMergeMountVerifiedImage", n, paths, flags, volume, hash_size, hash);
}
