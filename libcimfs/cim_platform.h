/*
 * cim_platform.h - the operating-system seam of the portable writer.
 *
 * Every file-system call the writer makes goes through here, so that
 *   - POSIX and Windows differences live in one file (cim_platform.c), and
 *   - tests can inject failures (short writes, ENOSPC, a crash) into exactly
 *     the operation they want, the way SQLite's test VFS does.
 * Native paths are UTF-8 on POSIX and UTF-16 (wchar_t) on Windows.
 */
#ifndef CIM_PLATFORM_H
#define CIM_PLATFORM_H

#include "cimfs.h"

#ifdef _WIN32
typedef wchar_t cim_nchar;
#else
typedef char cim_nchar;
#endif

/* ---- native path strings ------------------------------------------------ */

/* Converts a NUL-terminated UTF-16 string to a newly allocated native string.
 * Returns E_INVALIDARG for unpaired surrogates or an empty string, E_OUTOFMEMORY. */
HRESULT cim_native_from_utf16(PCWSTR s, size_t max_units, cim_nchar **out);
/* dir + separator + name (name is ASCII), newly allocated; NULL on OOM. */
cim_nchar *cim_native_join(const cim_nchar *dir, const char *name);
/* dir + separator + native name, newly allocated; NULL on OOM. */
cim_nchar *cim_native_join_native(const cim_nchar *dir, const cim_nchar *name);
int cim_native_equal(const cim_nchar *a, const cim_nchar *b);

/* ---- files --------------------------------------------------------------- */

typedef struct cim_file cim_file;

HRESULT cim_file_create_new(const cim_nchar *path, cim_file **out);  /* exclusive create, read/write */
HRESULT cim_file_open_read(const cim_nchar *path, cim_file **out);

/* What a directory build takes from a host file (docs/api.md §9.4). */
typedef struct cim_host_info {
    uint64_t size, links, device, inode;
    int64_t creation, last_write, last_access; /* FILETIME ticks; creation 0: the host keeps no birth time */
    uint32_t attributes;   /* Windows: the file's own FILE_ATTRIBUTE_*; POSIX: READONLY when no write bit */
    int attributes_native; /* 1 on Windows; 0: the caller adds HIDDEN for a name starting with "." */
} cim_host_info;
/* Opens a regular host file for reading, not through a symlink (POSIX), without blocking on a FIFO
 * swapped in, and describes it.  0x80070002 when it is missing or not a regular file. */
HRESULT cim_file_open_host(const cim_nchar *path, cim_file **out, cim_host_info *info);
HRESULT cim_file_pwrite(cim_file *f, const void *buf, size_t len, uint64_t offset);
HRESULT cim_file_pread(cim_file *f, void *buf, size_t len, uint64_t offset); /* exact or error */
HRESULT cim_file_size(cim_file *f, uint64_t *size);
HRESULT cim_file_truncate(cim_file *f, uint64_t size);
HRESULT cim_file_sync(cim_file *f);
/* Asks the OS to start writing [offset, offset + len) to disk without
 * waiting (Linux: sync_file_range), so that the final cim_file_sync has
 * little left to do; a no-op where there is no such call. */
void cim_file_start_writeback(cim_file *f, uint64_t offset, uint64_t len);
void cim_file_close(cim_file *f);

HRESULT cim_path_rename(const cim_nchar *from, const cim_nchar *to); /* replaces `to` */
HRESULT cim_path_unlink(const cim_nchar *path);
/* 1 regular file exists, 0 missing, <0 HRESULT error. */
int cim_path_file_exists(const cim_nchar *path);
/* S_OK directory; HR(PATH_NOT_FOUND) missing or not a directory; other errors. */
HRESULT cim_path_check_directory(const cim_nchar *path);
HRESULT cim_dir_sync(const cim_nchar *dir);
/* Deletes files in `dir` whose names start with `prefix` (ASCII); best effort. */
void cim_dir_remove_prefixed(const cim_nchar *dir, const char *prefix);

/* An exclusive, non-blocking lock on a directory, shared by processes and
 * threads: HR(SHARING_VIOLATION) when someone else holds it. */
typedef struct cim_dir_lock cim_dir_lock;
HRESULT cim_dir_lock_acquire(const cim_nchar *dir, cim_dir_lock **out);
void cim_dir_lock_release(cim_dir_lock *lock);

/* ---- misc ---------------------------------------------------------------- */

HRESULT cim_random_bytes(void *buf, size_t len);

typedef struct cim_mutex cim_mutex;
cim_mutex *cim_mutex_new(void);
void cim_mutex_free(cim_mutex *m);
void cim_mutex_lock(cim_mutex *m);
void cim_mutex_unlock(cim_mutex *m);
/* A process-wide mutex, initialised on first use (thread-safe). */
void cim_global_lock(void);
void cim_global_unlock(void);

/* A condition variable used with a cim_mutex, and a joinable thread.  NULL
 * from the constructors: out of memory or no threads (callers then do the
 * work themselves). */
typedef struct cim_cond cim_cond;
cim_cond *cim_cond_new(void);
void cim_cond_free(cim_cond *c);
void cim_cond_wait(cim_cond *c, cim_mutex *m);   /* m held; released while waiting */
void cim_cond_broadcast(cim_cond *c);
typedef struct cim_thread cim_thread;
cim_thread *cim_thread_start(void (*fn)(void *), void *arg);
void cim_thread_join(cim_thread *t);             /* frees t */
/* A helper thread with a lock and a condition of its own (cim_offload, cim_writer): makes the
 * two, then starts fn(arg); 0, with neither left made, when any of it fails. */
int cim_worker_start(cim_mutex **lock, cim_cond **changed, cim_thread **thread, void (*fn)(void *), void *arg);
/* Joins the thread, which its owner has told to stop, and frees the lock and condition. */
void cim_worker_join(cim_mutex *lock, cim_cond *changed, cim_thread *thread);

/* A helper thread that runs one job at a time beside the caller: post a job,
 * do other work, wait for it.  NULL from cim_offload_new (no threads, or out
 * of memory) means: run the work inline. */
typedef struct cim_offload cim_offload;
cim_offload *cim_offload_new(void);
void cim_offload_free(cim_offload *o);                          /* NULL is fine */
void cim_offload_post(cim_offload *o, void (*fn)(void *), void *arg);
void cim_offload_wait(cim_offload *o);

/* ---- fault injection (tests only) --------------------------------------- */

/* Operations that can be made to fail; bits for CimfsTestInjectFault. */
#define CIM_FAULT_CREATE   0x01u
#define CIM_FAULT_WRITE    0x02u
#define CIM_FAULT_SYNC     0x04u
#define CIM_FAULT_RENAME   0x08u
#define CIM_FAULT_TRUNCATE 0x10u
#define CIM_FAULT_SHORT_WRITE 0x20u /* a write stores only half its bytes, then fails */

/*
 * Arm a fault: the (after+1)-th call of any operation in `ops` fails with
 * `hr`.  With `crash` set, every later file-system operation fails as well,
 * cleanup included, as if the process had died at that point.  Global and
 * not thread-safe: for single-threaded tests.
 */
void CimfsTestInjectFault(uint32_t ops, uint32_t after, HRESULT hr, int crash);
void CimfsTestClearFault(void);
/* Number of operations in `ops` performed since the last arm/clear. */
uint32_t CimfsTestFaultCount(uint32_t ops);

#endif /* CIM_PLATFORM_H */
