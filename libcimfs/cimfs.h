/*
 * cimfs.h - the CimFS writer API, portable edition.
 *
 * Same function names, signatures, types and HRESULTs as the Windows SDK's
 * cimfs.h (see docs/api.md), usable on any C99 compiler.  This
 * header is the single source of truth for the API that cimfs_cffi exposes:
 * every function documents its inputs, its return values and its errors.
 *
 * Two backends sit behind these names (cim_backend.c):
 *   - "portable": the writer in this folder, available everywhere;
 *   - "system":   Windows' cimfs.dll, resolved at run time (Windows only).
 * Image and stream handles remember which backend made them.
 *
 * Paths ("image relative paths") are NUL-terminated UTF-16 strings relative
 * to the image root, separated by '\'.  One leading '\' is accepted; a
 * trailing '\', empty, "." or ".." components, '/', NTFS-invalid characters
 * (< > : " | ? * and U+0001..U+001F), unpaired surrogates, components over
 * 255 units and paths over 32767 units are rejected with E_INVALIDARG.
 * Lookups are case-insensitive (simple uppercase of the BMP).
 */
#ifndef CIMFS_PORTABLE_CIMFS_H
#define CIMFS_PORTABLE_CIMFS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- basic Windows types (docs/api.md §2.1) -------------------- */

#ifdef _WIN32
/* Windows: the SDK's own definitions, exactly as the real cimfs.h uses them. */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
typedef int32_t HRESULT;        /* failure iff negative; not `long` (64-bit on LP64) */
typedef uint16_t WCHAR;         /* one UTF-16 code unit, not wchar_t (32-bit here) */
typedef const WCHAR *PCWSTR;
typedef uint8_t BYTE;
typedef uint16_t UINT16;
typedef uint32_t UINT32;
typedef uint64_t UINT64;
typedef int64_t INT64;

typedef union _LARGE_INTEGER {
    struct {
        uint32_t LowPart;
        int32_t HighPart;
    } u;
    int64_t QuadPart;
} LARGE_INTEGER;

typedef struct _GUID {
    uint32_t Data1;
    uint16_t Data2;
    uint16_t Data3;
    uint8_t Data4[8];
} GUID;
#endif

/* Opaque handles; NULL is never valid. */
typedef struct CIMFS_IMAGE_HANDLE__ *CIMFS_IMAGE_HANDLE;
typedef struct CIMFS_STREAM_HANDLE__ *CIMFS_STREAM_HANDLE;

/* ---- HRESULTs used by this API (section 2.7) --------------------------- */

#define CIMFS_HRESULT_FROM_WIN32(e) ((HRESULT)(0x80070000u | ((uint32_t)(e) & 0xFFFFu)))

#define CIMFS_S_OK                  ((HRESULT)0x00000000)
#define CIMFS_E_INVALIDARG          ((HRESULT)0x80070057u)
#define CIMFS_E_POINTER             ((HRESULT)0x80004003u)
#define CIMFS_E_ACCESSDENIED        ((HRESULT)0x80070005u)
#define CIMFS_E_OUTOFMEMORY         ((HRESULT)0x8007000Eu)
#define CIMFS_E_FAIL                ((HRESULT)0x80004005u)
#define CIMFS_E_NOTIMPL             ((HRESULT)0x80004001u)
#define CIMFS_HR_FILE_NOT_FOUND     ((HRESULT)0x80070002u)
#define CIMFS_HR_PATH_NOT_FOUND     ((HRESULT)0x80070003u)
#define CIMFS_HR_SHARING_VIOLATION  ((HRESULT)0x80070020u)
#define CIMFS_HR_HANDLE_EOF         ((HRESULT)0x80070026u)
#define CIMFS_HR_NOT_SUPPORTED      ((HRESULT)0x80070032u)
#define CIMFS_HR_FILE_EXISTS        ((HRESULT)0x80070050u)
#define CIMFS_HR_DISK_FULL          ((HRESULT)0x80070070u)
#define CIMFS_HR_PROC_NOT_FOUND     ((HRESULT)0x8007007Fu)
#define CIMFS_HR_ALREADY_EXISTS     ((HRESULT)0x800700B7u)
#define CIMFS_HR_FILENAME_EXCED_RANGE ((HRESULT)0x800700CEu)
#define CIMFS_HR_FILE_CORRUPT       ((HRESULT)0x80070570u) /* ERROR_FILE_CORRUPT: unreadable existing image */

/* ---- attributes the format can hold (docs/api.md §2.2, docs/format.md §9) ------- */

#define CIMFS_FILE_ATTRIBUTE_READONLY      0x00000001u
#define CIMFS_FILE_ATTRIBUTE_HIDDEN        0x00000002u
#define CIMFS_FILE_ATTRIBUTE_SYSTEM        0x00000004u
#define CIMFS_FILE_ATTRIBUTE_DIRECTORY     0x00000010u
#define CIMFS_FILE_ATTRIBUTE_ARCHIVE       0x00000020u
#define CIMFS_FILE_ATTRIBUTE_NORMAL        0x00000080u
#define CIMFS_FILE_ATTRIBUTE_SPARSE_FILE   0x00000200u
#define CIMFS_FILE_ATTRIBUTE_REPARSE_POINT 0x00000400u

/* ---- CIMFS_FILE_METADATA (section 2.2, Windows field order) ------------ */

typedef struct _CIMFS_FILE_METADATA {
    UINT32 Attributes;               /* FILE_ATTRIBUTE_*; DIRECTORY makes a directory */
    INT64 FileSize;                  /* primary stream size; >= 0; 0 for directories */
    LARGE_INTEGER CreationTime;      /* FILETIME: 100 ns ticks since 1601-01-01 UTC */
    LARGE_INTEGER LastWriteTime;
    LARGE_INTEGER ChangeTime;
    LARGE_INTEGER LastAccessTime;
    const void *SecurityDescriptorBuffer; /* self-relative SD, or NULL */
    UINT32 SecurityDescriptorSize;   /* bytes, <= 65535; 0 = default NULL-DACL SD */
    const void *ReparseDataBuffer;   /* whole REPARSE_DATA_BUFFER incl. 8-byte header */
    UINT32 ReparseDataSize;          /* bytes, <= 65535; must equal 8 + ReparseDataLength */
    const void *EaBuffer;            /* FILE_FULL_EA_INFORMATION chain */
    UINT32 EaBufferSize;             /* bytes (not a count), <= 65535 */
} CIMFS_FILE_METADATA;

typedef struct _CIMFS_IMAGE_PATH {
    PCWSTR ImageDir;
    PCWSTR ImageName;
} CIMFS_IMAGE_PATH;

/* CIM_MOUNT_IMAGE_FLAGS (section 2.4) */
typedef UINT32 CIM_MOUNT_IMAGE_FLAGS;
#define CIM_MOUNT_IMAGE_NONE     0x00000000u
#define CIM_MOUNT_CHILD_ONLY     0x00000001u
#define CIM_MOUNT_ENABLE_DAX     0x00000002u
#define CIM_MOUNT_CACHE_FILES    0x00000004u
#define CIM_MOUNT_CACHE_REGIONS  0x00000008u
#define CIM_MOUNT_BLOCK_CIM      0x00000010u

/* CIM_CREATE_IMAGE_FLAGS (section 2.5) */
typedef UINT32 CIM_CREATE_IMAGE_FLAGS;
#define CIM_CREATE_IMAGE_NONE               0x00000000u
#define CIM_CREATE_DO_NOT_EXPAND_PE_IMAGES  0x00000001u
#define CIM_CREATE_FIXED_SIZE_CHUNKS        0x00000002u
#define CIM_CREATE_IMAGE_BLOCK_CIM          0x00000004u
#define CIM_CREATE_IMAGE_SINGLE_FILE_CIM    0x00000008u /* hcsshim name; SDK name unknown */
#define CIM_CREATE_IMAGE_CONSISTENT_CIM     0x00000010u /* hcsshim name; SDK name unknown */
#define CIM_CREATE_IMAGE_VERIFIED_CIM       0x00000040u /* hcsshim name; SDK name unknown */

/* ---- image lifecycle ---------------------------------------------------- */

/*
 * CimCreateImage: open a writer for a new image in imageContainingPath.
 *   existingImageName NULL, newImageName set: new empty image.
 *   both set, different: fork (child lists the parent's regions as parents).
 *   both set and equal, or newImageName NULL: extend the existing image; the
 *     committed result replaces it (the old regions stay, as parents).
 * Nothing is written until CimCommitImage.  One handle per directory at a
 * time, across processes (an flock/share-mode lock on the directory).
 * Returns S_OK; E_INVALIDARG (NULL path or handle pointer, both names NULL,
 * empty name, name with '\' or '/'); HR(PATH_NOT_FOUND) (directory missing);
 * HR(FILE_NOT_FOUND) (existing image missing); HR(FILE_EXISTS) (new name
 * exists and is not the existing name); HR(SHARING_VIOLATION) (directory
 * locked); E_ACCESSDENIED; HR(FILE_CORRUPT) (existing image unreadable);
 * E_OUTOFMEMORY.
 */
HRESULT CimCreateImage(PCWSTR imageContainingPath, PCWSTR existingImageName,
                       PCWSTR newImageName, CIMFS_IMAGE_HANDLE *cimImageHandle);

/*
 * CimCreateImage2: CimCreateImage with flags.  Portable backend: 0 and
 * CONSISTENT_CIM (its layout is deterministic anyway) store qualifying PE
 * files as PeImage streams, as Windows does (docs/format.md §10);
 * DO_NOT_EXPAND_PE_IMAGES stores every file as plain data; block,
 * single-file, verified and fixed-chunk images return HR(NOT_SUPPORTED);
 * unknown bits return E_INVALIDARG.
 */
HRESULT CimCreateImage2(PCWSTR imageContainingPath, CIM_CREATE_IMAGE_FLAGS createImageFlags,
                        PCWSTR existingImageName, PCWSTR newImageName,
                        CIMFS_IMAGE_HANDLE *cimImageHandle);

/*
 * CimCommitImage: write the image (regions, objectid files, then the image
 * file, atomically by rename).  Returns E_INVALIDARG (bad, closed or already
 * committed handle), HR(SHARING_VIOLATION) (a stream is open), HR(DISK_FULL)
 * or another I/O error; on failure nothing under the image name changes and
 * the handle accepts no more operations (close it).
 */
HRESULT CimCommitImage(CIMFS_IMAGE_HANDLE cimImageHandle);

/*
 * CimCloseImage: release the handle and the directory lock; uncommitted work
 * and its temporary files are discarded.  With a stream still open, the
 * image lives on until that stream is closed.  NULL and stale handles are
 * ignored.
 */
void CimCloseImage(CIMFS_IMAGE_HANDLE cimImageHandle);

/* ---- content ------------------------------------------------------------ */

/*
 * CimCreateFile: add a file or directory and return a stream handle for its
 * primary stream (directories too; close it before the next call).  Parents
 * must exist.  An existing file at the path is replaced (only that name, if
 * it is one of several hard links); an existing directory given directory
 * metadata keeps its children and takes the new metadata; a different type
 * replaces the old entry (recursively).  The root ("" or "\") can only be
 * given directory metadata.  All metadata buffers are copied.
 * FileSize is ignored for directories.
 * Returns E_INVALIDARG (handle, path, cimStreamHandle NULL, metadata: NULL,
 * FileSize < 0 or over 2^48-1, a negative time, NULL buffer with size > 0,
 * REPARSE attribute and reparse data disagreeing, malformed SD, reparse
 * buffer or EA chain, buffers over 65535 bytes);
 * HR(PATH_NOT_FOUND) (a parent missing or not a directory);
 * HR(SHARING_VIOLATION) (a stream is open on the image).
 */
HRESULT CimCreateFile(CIMFS_IMAGE_HANDLE cimImageHandle, PCWSTR imageRelativePath,
                      const CIMFS_FILE_METADATA *fileMetadata,
                      CIMFS_STREAM_HANDLE *cimStreamHandle);

/*
 * CimWriteStream: append bytes at the stream's position.  Data is streamed to
 * the region files and hashed as it arrives (never held whole in memory).
 * Returns E_INVALIDARG (bad handle, directory stream), E_POINTER (NULL buffer
 * with bufferSize > 0; size 0 is S_OK), HR(HANDLE_EOF) (the write crosses the
 * declared size: what fits is kept, the rest dropped), or an I/O error.
 */
HRESULT CimWriteStream(CIMFS_STREAM_HANDLE cimStreamHandle, const void *buffer, UINT32 bufferSize);

/*
 * CimCloseStream: finish the stream.  Unwritten bytes read back as zeros (a
 * never-written stream of a SPARSE_FILE file is stored sparse).  Identical
 * content already in the image (or its parents) is shared, not stored twice.
 * NULL and stale handles are ignored.
 */
void CimCloseStream(CIMFS_STREAM_HANDLE cimStreamHandle);

/*
 * CimCreateAlternateStream: add the named stream "path:name" or
 * "path:name:$DATA" of streamSize bytes to an existing file or directory;
 * an existing stream of that name is replaced.  Returns E_INVALIDARG (handle,
 * path without a stream name, other stream types, bad name, size over
 * 2^48-1, cimStreamHandle NULL), HR(PATH_NOT_FOUND),
 * HR(SHARING_VIOLATION).
 */
HRESULT CimCreateAlternateStream(CIMFS_IMAGE_HANDLE cimImageHandle, PCWSTR imageRelativePath,
                                 UINT64 streamSize, CIMFS_STREAM_HANDLE *cimStreamHandle);

/*
 * CimCreateHardLink: make imageRelativePath another name of the file at
 * existingImageRelativePath (links to links resolve to the file; the target
 * may come from a parent image).  An existing file at the new name is
 * replaced.  Returns E_INVALIDARG (handle, either path invalid, root, or an
 * alternate stream), HR(PATH_NOT_FOUND) (target or new name's parent
 * missing), E_ACCESSDENIED (target or new name is a directory),
 * HR(SHARING_VIOLATION) (a stream is open; nothing changes).
 */
HRESULT CimCreateHardLink(CIMFS_IMAGE_HANDLE cimImageHandle, PCWSTR imageRelativePath,
                          PCWSTR existingImageRelativePath);

/*
 * CimDeletePath: remove a name (the file goes with its last name), a whole
 * directory tree, or an alternate stream ("path:name").  Returns E_INVALIDARG
 * (handle, path, root), HR(PATH_NOT_FOUND), HR(SHARING_VIOLATION).
 */
HRESULT CimDeletePath(CIMFS_IMAGE_HANDLE cimImageHandle, PCWSTR imageRelativePath);

/* ---- declared for completeness: need the Windows driver, block or merged
 *      CIMs.  The portable backend returns HR(NOT_SUPPORTED) 0x80070032. --- */

HRESULT CimMountImage(PCWSTR imageContainingPath, PCWSTR imageName,
                      CIM_MOUNT_IMAGE_FLAGS mountImageFlags, const GUID *volumeId);
HRESULT CimDismountImage(const GUID *volumeId);
HRESULT CimMergeMountImage(UINT32 numCimPaths, CIMFS_IMAGE_PATH *backingImagePaths,
                           CIM_MOUNT_IMAGE_FLAGS mountImageFlags, const GUID *volumeId);
HRESULT CimTombstoneFile(CIMFS_IMAGE_HANDLE cimImageHandle, PCWSTR imageRelativePath);
HRESULT CimCreateMergeLink(CIMFS_IMAGE_HANDLE cimImageHandle, PCWSTR imageRelativePath,
                           PCWSTR existingImageRelativePath);
HRESULT CimAddFsToMergedImage(CIMFS_IMAGE_HANDLE cimImageHandle, PCWSTR existingImageName);
HRESULT CimAddFsToMergedImage2(CIMFS_IMAGE_HANDLE cimImageHandle, PCWSTR existingImagePath,
                               UINT32 mergeFlags);
HRESULT CimSealImage(PCWSTR blockCimPath, UINT64 *hashSize, UINT64 *fixedHeaderSize, BYTE *hash);
HRESULT CimGetVerificationInformation(PCWSTR blockCimPath, UINT32 *isSealed, UINT64 *hashSize,
                                      UINT64 *signatureSize, UINT64 *fixedHeaderSize,
                                      BYTE *hash, BYTE *signature);
HRESULT CimMountVerifiedImage(PCWSTR imageContainingPath, PCWSTR imageName,
                              CIM_MOUNT_IMAGE_FLAGS mountImageFlags, const GUID *volumeId,
                              UINT16 hashSize, const BYTE *hash);
HRESULT CimMergeMountVerifiedImage(UINT32 numCimPaths, CIMFS_IMAGE_PATH *backingImagePaths,
                                   CIM_MOUNT_IMAGE_FLAGS mountImageFlags, const GUID *volumeId,
                                   UINT16 hashSize, const BYTE *hash);

/* ---- backend selection (cimfs_cffi extension, not in Windows' header) --- */

#define CIMFS_BACKEND_AUTO     0  /* system when cimfs.dll is present, else portable */
#define CIMFS_BACKEND_PORTABLE 1
#define CIMFS_BACKEND_SYSTEM   2

/*
 * CimfsSelectBackend: choose the backend for images created from now on
 * (handles already open keep theirs).  Returns S_OK, E_INVALIDARG (unknown
 * value) or HR(NOT_SUPPORTED) (system asked for, but there is no cimfs.dll;
 * the selection is unchanged).
 */
HRESULT CimfsSelectBackend(int backend);
/* CimfsActiveBackend: CIMFS_BACKEND_PORTABLE or CIMFS_BACKEND_SYSTEM. */
int CimfsActiveBackend(void);
/* CimfsSystemBackendAvailable: 1 when cimfs.dll was found and loaded. */
int CimfsSystemBackendAvailable(void);

/*
 * CimfsCreateImageWithBackend: CimCreateImage2 on an explicit backend,
 * whatever CimfsSelectBackend chose.  Returns HR(NOT_SUPPORTED) for the
 * system backend without cimfs.dll, E_INVALIDARG for an unknown backend,
 * else what CimCreateImage2 returns.
 */
HRESULT CimfsCreateImageWithBackend(int backend, PCWSTR imageContainingPath, CIM_CREATE_IMAGE_FLAGS flags,
                                    PCWSTR existingImageName, PCWSTR newImageName,
                                    CIMFS_IMAGE_HANDLE *cimImageHandle);

/* ---- format version (cimfs_cffi extension) ------------------------------ */

/*
 * CimfsSetFormatVersion: the format version the portable writer gives this
 * image at commit: 1.0, 2.0 or 3.0 (docs/format.md §18).  Default: 2.0 for
 * a new image, the parent's version for a fork or an extension.
 * 1.0 has 88-byte File records without ParentFileId and no sparse streams:
 * call it before creating files, so that sparse files are stored
 * zero-filled (a 1.0 commit holding a sparse stream, e.g. one inherited
 * from a parent, fails with HR(NOT_SUPPORTED)).  Returns S_OK;
 * E_INVALIDARG for another version, a closed/committed handle or an open
 * stream (0x80070020 as for every image call); HR(NOT_SUPPORTED) for a
 * cimfs.dll handle (Windows chooses its own version).
 */
HRESULT CimfsSetFormatVersion(CIMFS_IMAGE_HANDLE cimImageHandle, UINT32 majorVersion, UINT32 minorVersion);

/* ---- writer threads (cimfs_cffi extension) ----------------------------- */

/*
 * CimfsSetWriterThreads: how many threads the portable writer may use for
 * this image.  1: only the caller's.  0 (default): one helper; N >= 2: N - 1
 * helpers.  With helpers, a closed stream of up to 32 MiB waits in memory
 * while a helper hashes it, and the caller's thread places every object in
 * call order once its digest is known (docs/api.md §9.5); a larger stream's
 * big writes are hashed beside their region write.  The image is
 * byte-identical whatever the setting.  Returns S_OK (also for a cimfs.dll
 * handle, which schedules its own work); E_INVALIDARG for a closed or
 * committed handle; 0x80070020 while a stream is open.
 */
HRESULT CimfsSetWriterThreads(CIMFS_IMAGE_HANDLE cimImageHandle, UINT32 threads);

/* ---- bulk hard links (cimfs_cffi extension) ------------------------------ */

/* Flag: pairs whose target does not exist are skipped and reported. */
#define CIMFS_LINKS_DEFER_MISSING 0x1u

/*
 * CimfsCreateHardLinks: CimCreateHardLink for `count` pairs in one call.
 * `pairs` holds count x (new path, NUL, existing path, NUL), `units` code
 * units in all; it must contain exactly 2 x count NULs, the last at
 * units - 1 (else E_INVALIDARG, nothing done).  Pairs are linked in order,
 * each exactly as CimCreateHardLink would; the first failure stops the
 * batch: its HRESULT is returned and *failedIndex set, and the links before
 * it remain.  With CIMFS_LINKS_DEFER_MISSING, a pair whose target (or the
 * target's directory) does not exist is not a failure: its index is
 * appended to deferred[] (room for `count`) and *deferredCount incremented
 * (set it to 0 first).  The portable backend takes the image lock once per
 * batch; the system backend loops over cimfs.dll's CimCreateHardLink.
 */
HRESULT CimfsCreateHardLinks(CIMFS_IMAGE_HANDLE cimImageHandle, const WCHAR *pairs, size_t units, UINT32 count,
                             UINT32 flags, UINT32 *deferred, UINT32 *deferredCount, UINT32 *failedIndex);

/*
 * CimfsAddHostFiles: add `count` regular files whose data are files of the
 * host, each as CimCreateFile + CimWriteStream (all of it) + CimCloseStream
 * would, in one call (the GIL-free hot path of `cimfs build`).
 * `paths` holds count x (image path, NUL, host path, NUL) in UTF-16, `units`
 * code units in all, framed like CimfsCreateHardLinks (else E_INVALIDARG,
 * nothing done).  metadata[i] describes file i; its FileSize must be the host
 * file's size.  Host paths are opened for reading as given (UTF-8 on POSIX).
 * The first failure stops the batch: its HRESULT is returned, *failedIndex
 * set, the files before it remain, and the failing file is not left in the
 * image.  Errors: those of CimCreateFile/CimWriteStream; the host file's
 * open/read error as an HRESULT (0x80070002 when it is missing or not a
 * regular file); 0x80070026 (HANDLE_EOF) when its size is not FileSize.
 */
HRESULT CimfsAddHostFiles(CIMFS_IMAGE_HANDLE cimImageHandle, const WCHAR *paths, size_t units, UINT32 count,
                          const CIMFS_FILE_METADATA *metadata, UINT32 *failedIndex);

/*
 * CimfsAddHostTreeFiles: CimfsAddHostFiles for a directory build, with the
 * metadata taken from each host file and its hard links kept (docs/api.md
 * §9.4).  `imagePaths` holds `count` NUL-terminated UTF-16 image paths
 * (`imageUnits` units in all), `hostPaths` the `count` matching host paths,
 * NUL-terminated, in the host's encoding (POSIX: bytes as the OS gives them;
 * Windows: UTF-16), `hostBytes` bytes in all; a buffer with other framing is
 * E_INVALIDARG, nothing done.  Each host file is opened (POSIX: not through
 * a symlink) and described by the handle: size; times (creation: the birth
 * time where the host keeps one, else the last write time; change: the last
 * write time; with CIMFS_HOST_REPRODUCIBLE all four are the last write time;
 * with CIMFS_HOST_LATEST_TIME none is later than `latestTime`); attributes
 * (Windows: the file's own, without REPARSE_POINT; POSIX: READONLY when no
 * write bit is set, HIDDEN when the image name starts with ".").  A host
 * file with more than one link that `links` has seen before (same device
 * and inode) becomes a hard link to the image path it went to first.
 * `*result` counts the files, bytes and links of this call, up to a failure.
 * The first failure stops the batch as in CimfsAddHostFiles: *failedIndex
 * set, the entries before it remain, a half-copied file does not.
 *
 * It is CimfsHostBatchRead + CimfsHostBatchAdd + CimfsHostBatchFree, which
 * a caller can run on two threads at once: the read phase (open, describe,
 * read up to 16 MiB of files of up to 1 MiB) touches no image, so it can
 * read the next batch while the add phase of the one before puts it into
 * the image.  The add phase copies larger files: the first 16 of a batch
 * through handles the read phase kept, the others by opening them again,
 * which must find the file described (device, inode, size), else
 * 0x80070026.  Read phases of one `links` run one at a
 * time, in order, and add phases in the same order.  A read failure is not
 * returned by the read phase (only bad arguments and E_OUTOFMEMORY are): the
 * add phase adds the entries before it and then returns it.  After any
 * failure, `links` may name files that were not added: start a new one.
 */
#define CIMFS_HOST_REPRODUCIBLE 0x1u
#define CIMFS_HOST_LATEST_TIME  0x2u
typedef struct CIMFS_HOST_LINKS CIMFS_HOST_LINKS; /* the host files a build has added, by device and inode */
typedef struct CIMFS_HOST_FILES_RESULT {
    UINT64 files;
    UINT64 bytes;
    UINT64 links;
} CIMFS_HOST_FILES_RESULT;
HRESULT CimfsHostLinksCreate(CIMFS_HOST_LINKS **links);
void CimfsHostLinksFree(CIMFS_HOST_LINKS *links);
typedef struct CIMFS_HOST_BATCH CIMFS_HOST_BATCH;
HRESULT CimfsHostBatchRead(CIMFS_HOST_LINKS *links, UINT32 flags, INT64 latestTime, const WCHAR *imagePaths,
                           size_t imageUnits, const void *hostPaths, size_t hostBytes, UINT32 count,
                           CIMFS_HOST_BATCH **batch);
HRESULT CimfsHostBatchAdd(CIMFS_IMAGE_HANDLE cimImageHandle, const CIMFS_HOST_BATCH *batch, UINT32 *failedIndex,
                          CIMFS_HOST_FILES_RESULT *result);
void CimfsHostBatchFree(CIMFS_HOST_BATCH *batch);
HRESULT CimfsAddHostTreeFiles(CIMFS_IMAGE_HANDLE cimImageHandle, CIMFS_HOST_LINKS *links, UINT32 flags,
                              INT64 latestTime, const WCHAR *imagePaths, size_t imageUnits, const void *hostPaths,
                              size_t hostBytes, UINT32 count, UINT32 *failedIndex, CIMFS_HOST_FILES_RESULT *result);

#ifdef __cplusplus
}
#endif

#endif /* CIMFS_PORTABLE_CIMFS_H */
