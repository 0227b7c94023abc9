/* cim_hostfiles.c - CimfsAddHostFiles: files of the host into an image, a batch per call.
 *
 * Built only from the public API (so it works with either backend) and the
 * platform layer's read calls.  A directory build spends most of its time per
 * file, not per byte; doing open/read/create/write/close here, without the
 * Python interpreter in between, is what lets `cimfs build` keep up with tar.
 */
#include <stdlib.h>

#include "cim_platform.h"
#include "cim_portable.h"

#define HOST_CHUNK ((size_t)1 << 20)

/* Copies host file `host` (exactly `size` bytes) into the open stream. */
static HRESULT copy_host_file(const WCHAR *host, uint64_t size, CIMFS_STREAM_HANDLE stream, void *buf)
{
    cim_nchar *native = NULL;
    cim_file *f = NULL;
    uint64_t actual, done = 0;
    HRESULT hr = cim_native_from_utf16(host, 32767, &native);
    if (hr >= 0) hr = cim_file_open_read(native, &f);
    if (hr >= 0) hr = cim_file_size(f, &actual);
    if (hr >= 0 && actual != size) hr = CIMFS_HR_HANDLE_EOF;
    while (hr >= 0 && done < size) {
        size_t n = size - done < HOST_CHUNK ? (size_t)(size - done) : HOST_CHUNK;
        hr = cim_file_pread(f, buf, n, done);
        if (hr == CIMFS_HR_FILE_CORRUPT) hr = CIMFS_HR_HANDLE_EOF; /* it shrank while we read */
        if (hr >= 0) hr = CimWriteStream(stream, buf, (UINT64)n);
        done += n;
    }
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
