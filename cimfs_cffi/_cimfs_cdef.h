/*
 * The cffi cdef of cimfs_cffi._cimfs: the API of ../libcimfs/cimfs.h as cffi
 * sees it, for both backends.  cffi checks it against the real header when
 * the module compiles (function types, struct offsets and constant values).
 * WCHAR is declared by build_ffi.py: char16_t (wchar_t on Windows), so a
 * Python str passes straight in as a PCWSTR.
 */
typedef int... HRESULT;
typedef const WCHAR *PCWSTR;
typedef uint8_t BYTE;
typedef uint16_t UINT16;
typedef uint32_t UINT32;
typedef uint64_t UINT64;
typedef int64_t INT64;
typedef union { int64_t QuadPart; ...; } LARGE_INTEGER;
typedef struct { uint32_t Data1; uint16_t Data2; uint16_t Data3; uint8_t Data4[8]; } GUID;

typedef struct CIMFS_IMAGE_HANDLE__ *CIMFS_IMAGE_HANDLE;
typedef struct CIMFS_STREAM_HANDLE__ *CIMFS_STREAM_HANDLE;

typedef struct _CIMFS_FILE_METADATA {
    UINT32 Attributes;
    INT64 FileSize;
    LARGE_INTEGER CreationTime;
    LARGE_INTEGER LastWriteTime;
    LARGE_INTEGER ChangeTime;
    LARGE_INTEGER LastAccessTime;
    const void *SecurityDescriptorBuffer;
    UINT32 SecurityDescriptorSize;
    const void *ReparseDataBuffer;
    UINT32 ReparseDataSize;
    const void *EaBuffer;
    UINT32 EaBufferSize;
} CIMFS_FILE_METADATA;

typedef struct _CIMFS_IMAGE_PATH {
    PCWSTR ImageDir;
    PCWSTR ImageName;
} CIMFS_IMAGE_PATH;

typedef UINT32 CIM_MOUNT_IMAGE_FLAGS;
typedef UINT32 CIM_CREATE_IMAGE_FLAGS;

#define CIMFS_S_OK ...
#define CIMFS_E_INVALIDARG ...
#define CIMFS_E_POINTER ...
#define CIMFS_E_ACCESSDENIED ...
#define CIMFS_E_OUTOFMEMORY ...
#define CIMFS_E_FAIL ...
#define CIMFS_E_NOTIMPL ...
#define CIMFS_HR_FILE_NOT_FOUND ...
#define CIMFS_HR_PATH_NOT_FOUND ...
#define CIMFS_HR_SHARING_VIOLATION ...
#define CIMFS_HR_HANDLE_EOF ...
#define CIMFS_HR_NOT_SUPPORTED ...
#define CIMFS_HR_FILE_EXISTS ...
#define CIMFS_HR_DISK_FULL ...
#define CIMFS_HR_PROC_NOT_FOUND ...
#define CIMFS_HR_ALREADY_EXISTS ...
#define CIMFS_HR_FILENAME_EXCED_RANGE ...
#define CIMFS_HR_FILE_CORRUPT ...

#define CIMFS_FILE_ATTRIBUTE_READONLY ...
#define CIMFS_FILE_ATTRIBUTE_HIDDEN ...
#define CIMFS_FILE_ATTRIBUTE_SYSTEM ...
#define CIMFS_FILE_ATTRIBUTE_DIRECTORY ...
#define CIMFS_FILE_ATTRIBUTE_ARCHIVE ...
#define CIMFS_FILE_ATTRIBUTE_NORMAL ...
#define CIMFS_FILE_ATTRIBUTE_SPARSE_FILE ...
#define CIMFS_FILE_ATTRIBUTE_REPARSE_POINT ...

#define CIM_MOUNT_IMAGE_NONE ...
#define CIM_MOUNT_CHILD_ONLY ...
#define CIM_MOUNT_ENABLE_DAX ...
#define CIM_MOUNT_CACHE_FILES ...
#define CIM_MOUNT_CACHE_REGIONS ...
#define CIM_MOUNT_BLOCK_CIM ...
#define CIM_CREATE_IMAGE_NONE ...
#define CIM_CREATE_DO_NOT_EXPAND_PE_IMAGES ...
#define CIM_CREATE_FIXED_SIZE_CHUNKS ...
#define CIM_CREATE_IMAGE_BLOCK_CIM ...
#define CIM_CREATE_IMAGE_SINGLE_FILE_CIM ...
#define CIM_CREATE_IMAGE_CONSISTENT_CIM ...
#define CIM_CREATE_IMAGE_VERIFIED_CIM ...

HRESULT CimCreateImage(PCWSTR imageContainingPath, PCWSTR existingImageName,
                       PCWSTR newImageName, CIMFS_IMAGE_HANDLE *cimImageHandle);
HRESULT CimCreateImage2(PCWSTR imageContainingPath, CIM_CREATE_IMAGE_FLAGS createImageFlags,
                        PCWSTR existingImageName, PCWSTR newImageName,
                        CIMFS_IMAGE_HANDLE *cimImageHandle);
HRESULT CimCommitImage(CIMFS_IMAGE_HANDLE cimImageHandle);
void CimCloseImage(CIMFS_IMAGE_HANDLE cimImageHandle);
HRESULT CimCreateFile(CIMFS_IMAGE_HANDLE cimImageHandle, PCWSTR imageRelativePath,
                      const CIMFS_FILE_METADATA *fileMetadata, CIMFS_STREAM_HANDLE *cimStreamHandle);
HRESULT CimWriteStream(CIMFS_STREAM_HANDLE cimStreamHandle, const void *buffer, UINT32 bufferSize);
void CimCloseStream(CIMFS_STREAM_HANDLE cimStreamHandle);
HRESULT CimCreateAlternateStream(CIMFS_IMAGE_HANDLE cimImageHandle, PCWSTR imageRelativePath,
                                 UINT64 streamSize, CIMFS_STREAM_HANDLE *cimStreamHandle);
HRESULT CimCreateHardLink(CIMFS_IMAGE_HANDLE cimImageHandle, PCWSTR imageRelativePath,
                          PCWSTR existingImageRelativePath);
HRESULT CimDeletePath(CIMFS_IMAGE_HANDLE cimImageHandle, PCWSTR imageRelativePath);

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

/* Backend selection (cimfs_cffi extension). */
#define CIMFS_BACKEND_AUTO ...
#define CIMFS_BACKEND_PORTABLE ...
#define CIMFS_BACKEND_SYSTEM ...
HRESULT CimfsSelectBackend(int backend);
int CimfsActiveBackend(void);
int CimfsSystemBackendAvailable(void);
HRESULT CimfsCreateImageWithBackend(int backend, PCWSTR imageContainingPath, CIM_CREATE_IMAGE_FLAGS flags,
                                    PCWSTR existingImageName, PCWSTR newImageName,
                                    CIMFS_IMAGE_HANDLE *cimImageHandle);

/* Bulk hard links (cimfs_cffi extension). */
#define CIMFS_LINKS_DEFER_MISSING ...
HRESULT CimfsSetFormatVersion(CIMFS_IMAGE_HANDLE cimImageHandle, UINT32 majorVersion, UINT32 minorVersion);
HRESULT CimfsSetWriterThreads(CIMFS_IMAGE_HANDLE cimImageHandle, UINT32 threads);
HRESULT CimfsCreateHardLinks(CIMFS_IMAGE_HANDLE cimImageHandle, const WCHAR *pairs, size_t units, UINT32 count,
                             UINT32 flags, UINT32 *deferred, UINT32 *deferredCount, UINT32 *failedIndex);
HRESULT CimfsAddHostFiles(CIMFS_IMAGE_HANDLE cimImageHandle, const WCHAR *paths, size_t units, UINT32 count,
                          const CIMFS_FILE_METADATA *metadata, UINT32 *failedIndex);
#define CIMFS_HOST_REPRODUCIBLE ...
#define CIMFS_HOST_LATEST_TIME ...
typedef struct CIMFS_HOST_LINKS CIMFS_HOST_LINKS;
typedef struct {
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

/* Test hooks of the portable writer: fault injection, SHA-512, upcase. */
#define CIM_FAULT_CREATE ...
#define CIM_FAULT_WRITE ...
#define CIM_FAULT_SYNC ...
#define CIM_FAULT_RENAME ...
#define CIM_FAULT_TRUNCATE ...
#define CIM_FAULT_SHORT_WRITE ...
void CimfsTestInjectFault(uint32_t ops, uint32_t after, HRESULT hr, int crash);
void CimfsTestClearFault(void);
uint32_t CimfsTestFaultCount(uint32_t ops);
void CimfsTestSha512(const void *data, size_t len, uint8_t *digest64);
void CimfsTestSha512Chunks(const void *data, const size_t *sizes, size_t count, uint8_t *digest64);
const char *CimfsSha512Impl(void);
void CimfsTestObjectId(const void *data, size_t len, uint8_t *digest24);
void CimfsTestObjectIds(const void *data, const size_t *lengths, size_t count, uint8_t *digests24);
int CimfsTestPeLayout(const uint8_t *file, size_t length, uint64_t *stored_length, uint32_t *mapping_count);
const uint16_t *CimfsUpcaseTable(void);
uint16_t CimfsTestUpcase(uint16_t unit);
const char *CimfsUpcaseDescription(void);
