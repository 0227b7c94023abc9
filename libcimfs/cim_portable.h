/*
 * cim_portable.h - the portable backend's entry points.  cim_backend.c maps
 * the public cimfs.h names onto these (or onto cimfs.dll on Windows).
 */
#ifndef CIM_PORTABLE_H
#define CIM_PORTABLE_H

#include "cimfs.h"

HRESULT cim_portable_create_image(PCWSTR dir, CIM_CREATE_IMAGE_FLAGS flags, PCWSTR existing_name,
                                  PCWSTR new_name, CIMFS_IMAGE_HANDLE *out);
HRESULT cim_portable_commit_image(CIMFS_IMAGE_HANDLE h);
void cim_portable_close_image(CIMFS_IMAGE_HANDLE h);
HRESULT cim_portable_create_file(CIMFS_IMAGE_HANDLE h, PCWSTR path, const CIMFS_FILE_METADATA *md,
                                 CIMFS_STREAM_HANDLE *out);
HRESULT cim_portable_write_stream(CIMFS_STREAM_HANDLE s, const void *buf, UINT32 n);
void cim_portable_close_stream(CIMFS_STREAM_HANDLE s);
HRESULT cim_portable_create_alternate_stream(CIMFS_IMAGE_HANDLE h, PCWSTR path, UINT64 size,
                                             CIMFS_STREAM_HANDLE *out);
HRESULT cim_portable_create_hard_link(CIMFS_IMAGE_HANDLE h, PCWSTR path, PCWSTR existing);
HRESULT cim_portable_delete_path(CIMFS_IMAGE_HANDLE h, PCWSTR path);
HRESULT cim_portable_set_format_version(CIMFS_IMAGE_HANDLE h, uint32_t major, uint32_t minor);
HRESULT cim_portable_set_writer_threads(CIMFS_IMAGE_HANDLE h, uint32_t threads);
/* The batch of CimfsCreateHardLinks; the buffer was checked by the caller. */
HRESULT cim_portable_create_hard_links(CIMFS_IMAGE_HANDLE h, const WCHAR *pairs, size_t units, uint32_t count,
                                       uint32_t flags, uint32_t *deferred, uint32_t *deferred_count,
                                       uint32_t *failed_index);

/* Sets `ok` to 1 when the `units` code units at `s` (of any character type) hold exactly
 * `count` NUL-terminated strings, the last NUL at units - 1; else to 0. */
#define CIM_STRINGS_FRAMED(s, units, count, ok)                      \
    do {                                                             \
        size_t i_, nuls_ = 0;                                        \
        (ok) = (s) != NULL && (units) > 0 && (s)[(units) - 1] == 0;  \
        for (i_ = 0; (ok) && i_ < (units); i_++)                     \
            if ((s)[i_] == 0) nuls_++;                               \
        (ok) = (ok) && nuls_ == (size_t)(count);                     \
    } while (0)

/* Checks that a pairs buffer (CimfsCreateHardLinks, CimfsAddHostFiles) holds exactly
 * 2 x count strings, the last NUL at units - 1. */
static inline int cim_pairs_buffer_ok(const WCHAR *pairs, size_t units, uint32_t count)
{
    int ok;
    CIM_STRINGS_FRAMED(pairs, units, 2 * (size_t)count, ok);
    return ok;
}

/* Steps through a CimfsCreateHardLinks buffer ("new\0existing\0..."):
 * sets the pair at *pos and moves *pos past it.  The buffer's NULs were
 * counted by the caller, so the scans stay inside it. */
static inline void cim_next_link_pair(const WCHAR *pairs, size_t *pos, const WCHAR **new_path,
                                      const WCHAR **existing)
{
    size_t p = *pos;
    *new_path = pairs + p;
    while (pairs[p]) p++;
    *existing = pairs + ++p;
    while (pairs[p]) p++;
    *pos = p + 1;
}

/* 1 when `handle` has the shape of a portable handle (live or stale). */
int cim_portable_handle_shape(const void *handle);

#endif
