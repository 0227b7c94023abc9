/* cim_platform.c - POSIX and Windows implementations of cim_platform.h. */
#if !defined(_WIN32) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE 1 /* pread/pwrite/fsync/flock/ftruncate prototypes */
#endif

#include "cim_platform.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <bcrypt.h>
#else
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#endif

/* ---- fault injection ----------------------------------------------------- */

static struct {
    uint32_t ops;
    uint32_t remaining;
    HRESULT hr;
    int crash;
    int armed;
    int crashed;
    uint32_t counts[6];
} g_fault;

void CimfsTestInjectFault(uint32_t ops, uint32_t after, HRESULT hr, int crash)
{
    memset(&g_fault, 0, sizeof g_fault);
    g_fault.ops = ops;
    g_fault.remaining = after;
    g_fault.hr = hr < 0 ? hr : CIMFS_E_FAIL;
    g_fault.crash = crash;
    g_fault.armed = 1;
}

void CimfsTestClearFault(void) { memset(&g_fault, 0, sizeof g_fault); }

uint32_t CimfsTestFaultCount(uint32_t ops)
{
    uint32_t n = 0;
    for (int i = 0; i < 6; i++)
        if (ops & (1u << i)) n += g_fault.counts[i];
    return n;
}

static HRESULT fault_check_locked(uint32_t op)
{
    if (g_fault.crashed) return g_fault.hr;
    for (int i = 0; i < 6; i++)
        if (op & (1u << i)) g_fault.counts[i]++;
    if (!g_fault.armed || !(g_fault.ops & op)) return CIMFS_S_OK;
    if (g_fault.remaining > 0) {
        g_fault.remaining--;
        return CIMFS_S_OK;
    }
    g_fault.armed = 0;
    if (g_fault.crash) g_fault.crashed = 1;
    return g_fault.hr;
}

/* Returns the injected error for this operation, or S_OK to proceed.  Locked:
 * the region writer thread (cim_writer.c) writes while the caller works. */
static HRESULT fault_check(uint32_t op)
{
    HRESULT hr;
    cim_global_lock();
    hr = fault_check_locked(op);
    cim_global_unlock();
    return hr;
}

/* Cleanup operations (unlink, close) only fail after a simulated crash. */
static int crashed(void)
{
    int c;
    cim_global_lock();
    c = g_fault.crashed;
    cim_global_unlock();
    return c;
}

/* ======================================================================== */
#ifndef _WIN32

struct cim_file {
    int fd;
};

static HRESULT hr_from_errno(int e)
{
    switch (e) {
    case ENOENT: return CIMFS_HR_PATH_NOT_FOUND;
    case ENOTDIR: return CIMFS_HR_PATH_NOT_FOUND;
    case EACCES:
    case EPERM:
    case EROFS: return CIMFS_E_ACCESSDENIED;
    case EEXIST: return CIMFS_HR_FILE_EXISTS;
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
        return CIMFS_HR_DISK_FULL;
    case ENOMEM: return CIMFS_E_OUTOFMEMORY;
    case ENAMETOOLONG: return CIMFS_HR_FILENAME_EXCED_RANGE;
    case EWOULDBLOCK: return CIMFS_HR_SHARING_VIOLATION;
    default: return CIMFS_E_FAIL;
    }
}

HRESULT cim_native_from_utf16(PCWSTR s, size_t max_units, cim_nchar **out)
{
    size_t n = 0, cap, o = 0;
    char *buf;
    *out = NULL;
    while (n <= max_units && s[n]) n++;
    if (n == 0 || n > max_units) return CIMFS_E_INVALIDARG;
    cap = n * 3 + 1;
    buf = (char *)malloc(cap);
    if (!buf) return CIMFS_E_OUTOFMEMORY;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c >= 0xD800 && c <= 0xDBFF) {
            if (i + 1 >= n || s[i + 1] < 0xDC00 || s[i + 1] > 0xDFFF) goto bad;
            c = 0x10000 + ((c - 0xD800) << 10) + (s[i + 1] - 0xDC00);
            i++;
        } else if (c >= 0xDC00 && c <= 0xDFFF) {
            goto bad;
        }
        if (c < 0x80) {
            buf[o++] = (char)c;
        } else if (c < 0x800) {
            buf[o++] = (char)(0xC0 | (c >> 6));
            buf[o++] = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            buf[o++] = (char)(0xE0 | (c >> 12));
            buf[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            buf[o++] = (char)(0x80 | (c & 0x3F));
        } else {
            buf[o++] = (char)(0xF0 | (c >> 18));
            buf[o++] = (char)(0x80 | ((c >> 12) & 0x3F));
            buf[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            buf[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    buf[o] = 0;
    *out = buf;
    return CIMFS_S_OK;
bad:
    free(buf);
    return CIMFS_E_INVALIDARG;
}

cim_nchar *cim_native_join_native(const cim_nchar *dir, const cim_nchar *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = (char *)malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

cim_nchar *cim_native_join(const cim_nchar *dir, const char *name)
{
    return cim_native_join_native(dir, name);
}

int cim_native_equal(const cim_nchar *a, const cim_nchar *b) { return strcmp(a, b) == 0; }

HRESULT cim_file_create_new(const cim_nchar *path, cim_file **out)
{
    HRESULT hr = fault_check(CIM_FAULT_CREATE);
    cim_file *f;
    int fd;
    *out = NULL;
    if (hr < 0) return hr;
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return hr_from_errno(errno);
    f = (cim_file *)malloc(sizeof *f);
    if (!f) {
        close(fd);
        unlink(path);
        return CIMFS_E_OUTOFMEMORY;
    }
    f->fd = fd;
    *out = f;
    return CIMFS_S_OK;
}

/* Opens `path` for reading with `flags` added; 0x80070002 unless it is a regular file. */
static HRESULT open_regular(const cim_nchar *path, int flags, struct stat *st, cim_file **out)
{
    cim_file *f;
    int fd;
    *out = NULL;
    if (crashed()) return g_fault.hr;
    fd = open(path, O_RDONLY | O_CLOEXEC | flags);
    if (fd < 0) return errno == ENOENT || errno == ELOOP ? CIMFS_HR_FILE_NOT_FOUND : hr_from_errno(errno);
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return CIMFS_HR_FILE_NOT_FOUND;
    }
    f = (cim_file *)malloc(sizeof *f);
    if (!f) {
        close(fd);
        return CIMFS_E_OUTOFMEMORY;
    }
    f->fd = fd;
    *out = f;
    return CIMFS_S_OK;
}

HRESULT cim_file_open_read(const cim_nchar *path, cim_file **out)
{
    struct stat st;
    return open_regular(path, 0, &st, out);
}

/* FILETIME ticks of a POSIX time, saturating (no host keeps times that far out). */
static int64_t filetime_of(int64_t sec, long nsec)
{
    const int64_t epoch = 116444736000000000LL, per_sec = 10000000LL;
    if (sec > (INT64_MAX - epoch) / per_sec - 1) return INT64_MAX;
    if (sec < (INT64_MIN + epoch) / per_sec + 1) return INT64_MIN;
    return epoch + sec * per_sec + nsec / 100; /* nsec is in [0, 1e9): floor, as Python's // 100 */
}

HRESULT cim_file_open_host(const cim_nchar *path, cim_file **out, cim_host_info *info)
{
    struct stat st;
    /* O_NOFOLLOW: the walk saw a regular file, not a symlink; O_NONBLOCK: a FIFO swapped in since
     * must not hang the build (it is refused).  Neither changes reading a regular file. */
    HRESULT hr = open_regular(path, O_NOFOLLOW | O_NONBLOCK, &st, out);
    if (hr < 0) return hr;
    memset(info, 0, sizeof *info);
    info->size = (uint64_t)st.st_size;
    info->links = (uint64_t)st.st_nlink;
    info->device = (uint64_t)st.st_dev;
    info->inode = (uint64_t)st.st_ino;
#if defined(__APPLE__)
    info->last_write = filetime_of((int64_t)st.st_mtimespec.tv_sec, st.st_mtimespec.tv_nsec);
    info->last_access = filetime_of((int64_t)st.st_atimespec.tv_sec, st.st_atimespec.tv_nsec);
    info->creation = filetime_of((int64_t)st.st_birthtimespec.tv_sec, st.st_birthtimespec.tv_nsec);
#else
    info->last_write = filetime_of((int64_t)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    info->last_access = filetime_of((int64_t)st.st_atim.tv_sec, st.st_atim.tv_nsec);
#if defined(__FreeBSD__) || defined(__NetBSD__)
    info->creation = filetime_of((int64_t)st.st_birthtim.tv_sec, st.st_birthtim.tv_nsec);
#endif
#endif
    info->attributes = (st.st_mode & 0222) ? 0 : CIMFS_FILE_ATTRIBUTE_READONLY;
    return CIMFS_S_OK;
}


HRESULT cim_file_pwrite(cim_file *f, const void *buf, size_t len, uint64_t offset)
{
    const char *p = (const char *)buf;
    HRESULT hr = fault_check(CIM_FAULT_WRITE | CIM_FAULT_SHORT_WRITE);
    if (hr < 0) {
        /* A short write stores a prefix before failing, like a disk filling up. */
        if (!g_fault.crashed && (g_fault.ops & CIM_FAULT_SHORT_WRITE) && len > 1)
            (void)!pwrite(f->fd, p, len / 2, (off_t)offset);
        return hr;
    }
    while (len > 0) {
        ssize_t n = pwrite(f->fd, p, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR) continue;
            return hr_from_errno(errno);
        }
        if (n == 0) return CIMFS_HR_DISK_FULL;
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return CIMFS_S_OK;
}

HRESULT cim_file_pread(cim_file *f, void *buf, size_t len, uint64_t offset)
{
    char *p = (char *)buf;
    if (crashed()) return g_fault.hr;
    while (len > 0) {
        ssize_t n = pread(f->fd, p, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR) continue;
            return hr_from_errno(errno);
        }
        if (n == 0) return CIMFS_HR_FILE_CORRUPT; /* short file */
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return CIMFS_S_OK;
}

HRESULT cim_file_size(cim_file *f, uint64_t *size)
{
    struct stat st;
    if (fstat(f->fd, &st) != 0) return hr_from_errno(errno);
    *size = (uint64_t)st.st_size;
    return CIMFS_S_OK;
}

HRESULT cim_file_truncate(cim_file *f, uint64_t size)
{
    HRESULT hr = fault_check(CIM_FAULT_TRUNCATE);
    if (hr < 0) return hr;
    if (ftruncate(f->fd, (off_t)size) != 0) return hr_from_errno(errno);
    return CIMFS_S_OK;
}

HRESULT cim_file_sync(cim_file *f)
{
    HRESULT hr = fault_check(CIM_FAULT_SYNC);
    if (hr < 0) return hr;
#if defined(__APPLE__) && defined(F_FULLFSYNC)
    if (fcntl(f->fd, F_FULLFSYNC) == 0) return CIMFS_S_OK;
#endif
    if (fsync(f->fd) != 0) return hr_from_errno(errno);
    return CIMFS_S_OK;
}

void cim_file_start_writeback(cim_file *f, uint64_t offset, uint64_t len)
{
#if defined(__linux__) && defined(SYNC_FILE_RANGE_WRITE)
    /* Only a hint: a failure here shows up again at the fsync that counts. */
    (void)sync_file_range(f->fd, (off_t)offset, (off_t)len, SYNC_FILE_RANGE_WRITE);
#else
    (void)f;
    (void)offset;
    (void)len;
#endif
}

void cim_file_close(cim_file *f)
{
    if (!f) return;
    close(f->fd);
    free(f);
}

HRESULT cim_path_rename(const cim_nchar *from, const cim_nchar *to)
{
    HRESULT hr = fault_check(CIM_FAULT_RENAME);
    if (hr < 0) return hr;
    if (rename(from, to) != 0) return hr_from_errno(errno);
    return CIMFS_S_OK;
}

HRESULT cim_path_unlink(const cim_nchar *path)
{
    if (crashed()) return g_fault.hr;
    if (unlink(path) != 0 && errno != ENOENT) return hr_from_errno(errno);
    return CIMFS_S_OK;
}

int cim_path_file_exists(const cim_nchar *path)
{
    struct stat st;
    if (stat(path, &st) == 0) return 1;
    if (errno == ENOENT || errno == ENOTDIR) return 0;
    return hr_from_errno(errno);
}

HRESULT cim_path_check_directory(const cim_nchar *path)
{
    struct stat st;
    if (stat(path, &st) != 0) return hr_from_errno(errno);
    if (!S_ISDIR(st.st_mode)) return CIMFS_HR_PATH_NOT_FOUND;
    return CIMFS_S_OK;
}

HRESULT cim_dir_sync(const cim_nchar *dir)
{
    HRESULT hr = fault_check(CIM_FAULT_SYNC);
    int fd;
    if (hr < 0) return hr;
    fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return hr_from_errno(errno);
    /* Some file systems refuse fsync on directories (EINVAL); the rename is
     * still ordered after the file syncs, which is what atomicity needs. */
    if (fsync(fd) != 0 && errno != EINVAL && errno != EBADF) {
        int e = errno;
        close(fd);
        return hr_from_errno(e);
    }
    close(fd);
    return CIMFS_S_OK;
}

void cim_dir_remove_prefixed(const cim_nchar *dir, const char *prefix)
{
    DIR *d;
    struct dirent *e;
    size_t n = strlen(prefix);
    if (crashed()) return;
    d = opendir(dir);
    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, n) == 0) {
            char *p = cim_native_join(dir, e->d_name);
            if (p) unlink(p);
            free(p);
        }
    }
    closedir(d);
}

struct cim_dir_lock {
    int fd;
};

HRESULT cim_dir_lock_acquire(const cim_nchar *dir, cim_dir_lock **out)
{
    cim_dir_lock *l;
    int fd;
    *out = NULL;
    fd = open(dir, O_RDONLY | O_CLOEXEC
#ifdef O_DIRECTORY
                       | O_DIRECTORY
#endif
    );
    if (fd < 0) return hr_from_errno(errno);
    /* flock locks belong to the open file description, so a second open of
     * the directory conflicts within one process as well as across them. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        return e == EWOULDBLOCK ? CIMFS_HR_SHARING_VIOLATION : hr_from_errno(e);
    }
    l = (cim_dir_lock *)malloc(sizeof *l);
    if (!l) {
        close(fd);
        return CIMFS_E_OUTOFMEMORY;
    }
    l->fd = fd;
    *out = l;
    return CIMFS_S_OK;
}

void cim_dir_lock_release(cim_dir_lock *l)
{
    if (!l) return;
    flock(l->fd, LOCK_UN);
    close(l->fd);
    free(l);
}

HRESULT cim_random_bytes(void *buf, size_t len)
{
    unsigned char *p = (unsigned char *)buf;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return hr_from_errno(errno);
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            close(fd);
            return CIMFS_E_FAIL;
        }
        p += n;
        len -= (size_t)n;
    }
    close(fd);
    return CIMFS_S_OK;
}

struct cim_mutex {
    pthread_mutex_t m;
};

cim_mutex *cim_mutex_new(void)
{
    cim_mutex *m = (cim_mutex *)malloc(sizeof *m);
    if (m && pthread_mutex_init(&m->m, NULL) != 0) {
        free(m);
        m = NULL;
    }
    return m;
}

void cim_mutex_free(cim_mutex *m)
{
    if (!m) return;
    pthread_mutex_destroy(&m->m);
    free(m);
}

void cim_mutex_lock(cim_mutex *m) { pthread_mutex_lock(&m->m); }
void cim_mutex_unlock(cim_mutex *m) { pthread_mutex_unlock(&m->m); }


struct cim_cond {
    pthread_cond_t c;
};

cim_cond *cim_cond_new(void)
{
    cim_cond *c = (cim_cond *)malloc(sizeof *c);
    if (c && pthread_cond_init(&c->c, NULL) != 0) {
        free(c);
        c = NULL;
    }
    return c;
}

void cim_cond_free(cim_cond *c)
{
    if (!c) return;
    pthread_cond_destroy(&c->c);
    free(c);
}

void cim_cond_wait(cim_cond *c, cim_mutex *m) { pthread_cond_wait(&c->c, &m->m); }
void cim_cond_broadcast(cim_cond *c) { pthread_cond_broadcast(&c->c); }

struct cim_thread {
    pthread_t t;
    void (*fn)(void *);
    void *arg;
};

static void *thread_main(void *p)
{
    cim_thread *t = (cim_thread *)p;
    t->fn(t->arg);
    return NULL;
}

cim_thread *cim_thread_start(void (*fn)(void *), void *arg)
{
    cim_thread *t = (cim_thread *)malloc(sizeof *t);
    if (!t) return NULL;
    t->fn = fn;
    t->arg = arg;
    if (pthread_create(&t->t, NULL, thread_main, t) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

void cim_thread_join(cim_thread *t)
{
    pthread_join(t->t, NULL);
    free(t);
}

static pthread_mutex_t g_global = PTHREAD_MUTEX_INITIALIZER;
void cim_global_lock(void) { pthread_mutex_lock(&g_global); }
void cim_global_unlock(void) { pthread_mutex_unlock(&g_global); }

/* ======================================================================== */
#else /* _WIN32 */

struct cim_file {
    HANDLE h;
};

static HRESULT hr_from_win32(DWORD e)
{
    switch (e) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_DIRECTORY: return CIMFS_HR_PATH_NOT_FOUND;
    case ERROR_ACCESS_DENIED: return CIMFS_E_ACCESSDENIED;
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS: return CIMFS_HR_FILE_EXISTS;
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL: return CIMFS_HR_DISK_FULL;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY: return CIMFS_E_OUTOFMEMORY;
    case ERROR_SHARING_VIOLATION: return CIMFS_HR_SHARING_VIOLATION;
    default: return e ? CIMFS_HRESULT_FROM_WIN32(e) : CIMFS_E_FAIL;
    }
}

HRESULT cim_native_from_utf16(PCWSTR s, size_t max_units, cim_nchar **out)
{
    size_t n = 0;
    wchar_t *buf;
    *out = NULL;
    while (n <= max_units && s[n]) n++;
    if (n == 0 || n > max_units) return CIMFS_E_INVALIDARG;
    for (size_t i = 0; i < n; i++) {
        if (s[i] >= 0xD800 && s[i] <= 0xDBFF) {
            if (i + 1 >= n || s[i + 1] < 0xDC00 || s[i + 1] > 0xDFFF) return CIMFS_E_INVALIDARG;
            i++;
        } else if (s[i] >= 0xDC00 && s[i] <= 0xDFFF) {
            return CIMFS_E_INVALIDARG;
        }
    }
    buf = (wchar_t *)malloc((n + 1) * sizeof(wchar_t));
    if (!buf) return CIMFS_E_OUTOFMEMORY;
    memcpy(buf, s, n * sizeof(wchar_t));
    buf[n] = 0;
    *out = buf;
    return CIMFS_S_OK;
}

cim_nchar *cim_native_join_native(const cim_nchar *dir, const cim_nchar *name)
{
    size_t a = wcslen(dir), b = wcslen(name);
    wchar_t *p = (wchar_t *)malloc((a + b + 2) * sizeof(wchar_t));
    if (!p) return NULL;
    memcpy(p, dir, a * sizeof(wchar_t));
    p[a] = L'\\';
    memcpy(p + a + 1, name, (b + 1) * sizeof(wchar_t));
    return p;
}

cim_nchar *cim_native_join(const cim_nchar *dir, const char *name)
{
    size_t b = strlen(name);
    wchar_t *w = (wchar_t *)malloc((b + 1) * sizeof(wchar_t)), *r;
    if (!w) return NULL;
    for (size_t i = 0; i <= b; i++) w[i] = (unsigned char)name[i];
    r = cim_native_join_native(dir, w);
    free(w);
    return r;
}

int cim_native_equal(const cim_nchar *a, const cim_nchar *b) { return wcscmp(a, b) == 0; }

HRESULT cim_file_create_new(const cim_nchar *path, cim_file **out)
{
    HRESULT hr = fault_check(CIM_FAULT_CREATE);
    HANDLE h;
    cim_file *f;
    *out = NULL;
    if (hr < 0) return hr;
    h = CreateFileW(path, GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_DELETE, NULL,
                    CREATE_NEW, FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE) return hr_from_win32(GetLastError());
    f = (cim_file *)malloc(sizeof *f);
    if (!f) {
        CloseHandle(h);
        DeleteFileW(path);
        return CIMFS_E_OUTOFMEMORY;
    }
    f->h = h;
    *out = f;
    return CIMFS_S_OK;
}

HRESULT cim_file_open_read(const cim_nchar *path, cim_file **out)
{
    HANDLE h;
    cim_file *f;
    *out = NULL;
    if (crashed()) return g_fault.hr;
    h = CreateFileW(path, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                    FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE) {
        DWORD e = GetLastError();
        return e == ERROR_FILE_NOT_FOUND ? CIMFS_HR_FILE_NOT_FOUND : hr_from_win32(e);
    }
    f = (cim_file *)malloc(sizeof *f);
    if (!f) {
        CloseHandle(h);
        return CIMFS_E_OUTOFMEMORY;
    }
    f->h = h;
    *out = f;
    return CIMFS_S_OK;
}

static int64_t filetime_ticks(FILETIME t)
{
    return (int64_t)(((uint64_t)t.dwHighDateTime << 32) | t.dwLowDateTime);
}

HRESULT cim_file_open_host(const cim_nchar *path, cim_file **out, cim_host_info *info)
{
    BY_HANDLE_FILE_INFORMATION bh;
    cim_file *f = NULL;
    HRESULT hr = cim_file_open_read(path, &f);
    *out = NULL;
    if (hr < 0) return hr;
    if (!GetFileInformationByHandle(f->h, &bh)) {
        hr = hr_from_win32(GetLastError());
    } else if (bh.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) {
        hr = CIMFS_HR_FILE_NOT_FOUND;
    }
    if (hr < 0) {
        cim_file_close(f);
        return hr;
    }
    memset(info, 0, sizeof *info);
    info->size = ((uint64_t)bh.nFileSizeHigh << 32) | bh.nFileSizeLow;
    info->links = bh.nNumberOfLinks;
    info->device = bh.dwVolumeSerialNumber;
    info->inode = ((uint64_t)bh.nFileIndexHigh << 32) | bh.nFileIndexLow;
    info->creation = filetime_ticks(bh.ftCreationTime);
    info->last_write = filetime_ticks(bh.ftLastWriteTime);
    info->last_access = filetime_ticks(bh.ftLastAccessTime);
    info->attributes = bh.dwFileAttributes;
    info->attributes_native = 1;
    *out = f;
    return CIMFS_S_OK;
}

static HRESULT win_io(cim_file *f, void *buf, size_t len, uint64_t offset, int write)
{
    char *p = (char *)buf;
    while (len > 0) {
        DWORD chunk = len > 0x40000000u ? 0x40000000u : (DWORD)len, done = 0;
        OVERLAPPED ov;
        BOOL ok;
        memset(&ov, 0, sizeof ov);
        ov.Offset = (DWORD)offset;
        ov.OffsetHigh = (DWORD)(offset >> 32);
        ok = write ? WriteFile(f->h, p, chunk, &done, &ov) : ReadFile(f->h, p, chunk, &done, &ov);
        if (!ok) {
            DWORD e = GetLastError();
            return (!write && e == ERROR_HANDLE_EOF) ? CIMFS_HR_FILE_CORRUPT : hr_from_win32(e);
        }
        if (done == 0) return write ? CIMFS_HR_DISK_FULL : CIMFS_HR_FILE_CORRUPT;
        p += done;
        len -= done;
        offset += done;
    }
    return CIMFS_S_OK;
}

HRESULT cim_file_pwrite(cim_file *f, const void *buf, size_t len, uint64_t offset)
{
    HRESULT hr = fault_check(CIM_FAULT_WRITE | CIM_FAULT_SHORT_WRITE);
    if (hr < 0) {
        if (!g_fault.crashed && (g_fault.ops & CIM_FAULT_SHORT_WRITE) && len > 1)
            (void)win_io(f, (void *)buf, len / 2, offset, 1);
        return hr;
    }
    return win_io(f, (void *)buf, len, offset, 1);
}

HRESULT cim_file_pread(cim_file *f, void *buf, size_t len, uint64_t offset)
{
    if (crashed()) return g_fault.hr;
    return win_io(f, buf, len, offset, 0);
}

HRESULT cim_file_size(cim_file *f, uint64_t *size)
{
    LARGE_INTEGER sz;
    if (!GetFileSizeEx(f->h, &sz)) return hr_from_win32(GetLastError());
    *size = (uint64_t)sz.QuadPart;
    return CIMFS_S_OK;
}

HRESULT cim_file_truncate(cim_file *f, uint64_t size)
{
    FILE_END_OF_FILE_INFO info;
    HRESULT hr = fault_check(CIM_FAULT_TRUNCATE);
    if (hr < 0) return hr;
    info.EndOfFile.QuadPart = (LONGLONG)size;
    if (!SetFileInformationByHandle(f->h, FileEndOfFileInfo, &info, sizeof info))
        return hr_from_win32(GetLastError());
    return CIMFS_S_OK;
}

HRESULT cim_file_sync(cim_file *f)
{
    HRESULT hr = fault_check(CIM_FAULT_SYNC);
    if (hr < 0) return hr;
    if (!FlushFileBuffers(f->h)) return hr_from_win32(GetLastError());
    return CIMFS_S_OK;
}

void cim_file_start_writeback(cim_file *f, uint64_t offset, uint64_t len)
{
    /* Windows has no call that starts writeback without waiting for it. */
    (void)f;
    (void)offset;
    (void)len;
}

void cim_file_close(cim_file *f)
{
    if (!f) return;
    CloseHandle(f->h);
    free(f);
}

HRESULT cim_path_rename(const cim_nchar *from, const cim_nchar *to)
{
    HRESULT hr = fault_check(CIM_FAULT_RENAME);
    if (hr < 0) return hr;
    if (!MoveFileExW(from, to, MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH))
        return hr_from_win32(GetLastError());
    return CIMFS_S_OK;
}

HRESULT cim_path_unlink(const cim_nchar *path)
{
    if (crashed()) return g_fault.hr;
    if (!DeleteFileW(path)) {
        DWORD e = GetLastError();
        if (e != ERROR_FILE_NOT_FOUND && e != ERROR_PATH_NOT_FOUND) return hr_from_win32(e);
    }
    return CIMFS_S_OK;
}

int cim_path_file_exists(const cim_nchar *path)
{
    DWORD a = GetFileAttributesW(path);
    if (a != INVALID_FILE_ATTRIBUTES) return 1;
    {
        DWORD e = GetLastError();
        if (e == ERROR_FILE_NOT_FOUND || e == ERROR_PATH_NOT_FOUND) return 0;
        return hr_from_win32(e);
    }
}

HRESULT cim_path_check_directory(const cim_nchar *path)
{
    DWORD a = GetFileAttributesW(path);
    if (a == INVALID_FILE_ATTRIBUTES) return hr_from_win32(GetLastError());
    if (!(a & FILE_ATTRIBUTE_DIRECTORY)) return CIMFS_HR_PATH_NOT_FOUND;
    return CIMFS_S_OK;
}

/* NTFS orders metadata operations itself; MOVEFILE_WRITE_THROUGH covers the rename. */
HRESULT cim_dir_sync(const cim_nchar *dir)
{
    (void)dir;
    return fault_check(CIM_FAULT_SYNC);
}

void cim_dir_remove_prefixed(const cim_nchar *dir, const char *prefix)
{
    WIN32_FIND_DATAW fd;
    HANDLE h;
    wchar_t *pattern;
    char star[80];
    if (crashed()) return;
    snprintf(star, sizeof star, "%s*", prefix);
    pattern = cim_native_join(dir, star);
    if (!pattern) return;
    h = FindFirstFileW(pattern, &fd);
    free(pattern);
    if (h == INVALID_HANDLE_VALUE) return;
    do {
        wchar_t *p = cim_native_join_native(dir, fd.cFileName);
        if (p) DeleteFileW(p);
        free(p);
    } while (FindNextFileW(h, &fd));
    FindClose(h);
}

struct cim_dir_lock {
    HANDLE h;
};

HRESULT cim_dir_lock_acquire(const cim_nchar *dir, cim_dir_lock **out)
{
    /* Like cimfs.dll: open the directory with write-data access while denying
     * shared write, so a second writer's open fails with a sharing violation. */
    HANDLE h = CreateFileW(dir, FILE_LIST_DIRECTORY | FILE_ADD_FILE, FILE_SHARE_READ | FILE_SHARE_DELETE,
                           NULL, OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
    cim_dir_lock *l;
    *out = NULL;
    if (h == INVALID_HANDLE_VALUE) return hr_from_win32(GetLastError());
    l = (cim_dir_lock *)malloc(sizeof *l);
    if (!l) {
        CloseHandle(h);
        return CIMFS_E_OUTOFMEMORY;
    }
    l->h = h;
    *out = l;
    return CIMFS_S_OK;
}

void cim_dir_lock_release(cim_dir_lock *l)
{
    if (!l) return;
    CloseHandle(l->h);
    free(l);
}

HRESULT cim_random_bytes(void *buf, size_t len)
{
    if (BCryptGenRandom(NULL, (PUCHAR)buf, (ULONG)len, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
        return CIMFS_E_FAIL;
    return CIMFS_S_OK;
}

struct cim_mutex {
    SRWLOCK l;
};

cim_mutex *cim_mutex_new(void)
{
    cim_mutex *m = (cim_mutex *)malloc(sizeof *m);
    if (m) InitializeSRWLock(&m->l);
    return m;
}

void cim_mutex_free(cim_mutex *m) { free(m); }
void cim_mutex_lock(cim_mutex *m) { AcquireSRWLockExclusive(&m->l); }
void cim_mutex_unlock(cim_mutex *m) { ReleaseSRWLockExclusive(&m->l); }


struct cim_cond {
    CONDITION_VARIABLE c;
};

cim_cond *cim_cond_new(void)
{
    cim_cond *c = (cim_cond *)malloc(sizeof *c);
    if (c) InitializeConditionVariable(&c->c);
    return c;
}

void cim_cond_free(cim_cond *c) { free(c); }
void cim_cond_wait(cim_cond *c, cim_mutex *m) { SleepConditionVariableSRW(&c->c, &m->l, INFINITE, 0); }
void cim_cond_broadcast(cim_cond *c) { WakeAllConditionVariable(&c->c); }

struct cim_thread {
    HANDLE h;
    void (*fn)(void *);
    void *arg;
};

static DWORD WINAPI thread_main(LPVOID p)
{
    cim_thread *t = (cim_thread *)p;
    t->fn(t->arg);
    return 0;
}

cim_thread *cim_thread_start(void (*fn)(void *), void *arg)
{
    cim_thread *t = (cim_thread *)malloc(sizeof *t);
    if (!t) return NULL;
    t->fn = fn;
    t->arg = arg;
    t->h = CreateThread(NULL, 0, thread_main, t, 0, NULL);
    if (!t->h) {
        free(t);
        return NULL;
    }
    return t;
}

void cim_thread_join(cim_thread *t)
{
    WaitForSingleObject(t->h, INFINITE);
    CloseHandle(t->h);
    free(t);
}

static SRWLOCK g_global = SRWLOCK_INIT;
void cim_global_lock(void) { AcquireSRWLockExclusive(&g_global); }
void cim_global_unlock(void) { ReleaseSRWLockExclusive(&g_global); }

#endif

/* ---- cim_offload: one helper thread, built on the primitives above ------------- */

enum { OFFLOAD_IDLE, OFFLOAD_POSTED, OFFLOAD_QUIT };

struct cim_offload {
    cim_thread *thread;
    cim_mutex *lock;
    cim_cond *changed;
    void (*fn)(void *);
    void *arg;
    int state; /* OFFLOAD_IDLE, OFFLOAD_POSTED or OFFLOAD_QUIT */
};

static void offload_main(void *p)
{
    cim_offload *o = (cim_offload *)p;
    cim_mutex_lock(o->lock);
    for (;;) {
        while (o->state == OFFLOAD_IDLE) cim_cond_wait(o->changed, o->lock);
        if (o->state == OFFLOAD_QUIT) break;
        cim_mutex_unlock(o->lock);
        o->fn(o->arg);
        cim_mutex_lock(o->lock);
        o->state = OFFLOAD_IDLE;
        cim_cond_broadcast(o->changed);
    }
    cim_mutex_unlock(o->lock);
}

int cim_worker_start(cim_mutex **lock, cim_cond **changed, cim_thread **thread, void (*fn)(void *), void *arg)
{
    *lock = cim_mutex_new();
    *changed = cim_cond_new();
    *thread = *lock && *changed ? cim_thread_start(fn, arg) : NULL;
    if (*thread) return 1;
    cim_cond_free(*changed);
    cim_mutex_free(*lock);
    *changed = NULL;
    *lock = NULL;
    return 0;
}

void cim_worker_join(cim_mutex *lock, cim_cond *changed, cim_thread *thread)
{
    cim_thread_join(thread);
    cim_cond_free(changed);
    cim_mutex_free(lock);
}

cim_offload *cim_offload_new(void)
{
    cim_offload *o = (cim_offload *)calloc(1, sizeof *o);
    if (!o) return NULL;
    if (cim_worker_start(&o->lock, &o->changed, &o->thread, offload_main, o)) return o;
    free(o);
    return NULL;
}

void cim_offload_free(cim_offload *o)
{
    if (!o) return;
    cim_mutex_lock(o->lock);
    o->state = OFFLOAD_QUIT;
    cim_cond_broadcast(o->changed);
    cim_mutex_unlock(o->lock);
    cim_worker_join(o->lock, o->changed, o->thread);
    free(o);
}

void cim_offload_post(cim_offload *o, void (*fn)(void *), void *arg)
{
    cim_mutex_lock(o->lock);
    o->fn = fn;
    o->arg = arg;
    o->state = OFFLOAD_POSTED;
    cim_cond_broadcast(o->changed);
    cim_mutex_unlock(o->lock);
}

void cim_offload_wait(cim_offload *o)
{
    cim_mutex_lock(o->lock);
    while (o->state == OFFLOAD_POSTED) cim_cond_wait(o->changed, o->lock);
    cim_mutex_unlock(o->lock);
}
