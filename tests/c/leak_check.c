/*
 * leak_check.c - drives every portable API path (success and error) from C,
 * so that LeakSanitizer can prove the core frees everything.  Python's own
 * allocations make leak checking through pytest useless, hence this program.
 *
 *   cc -std=c11 -fsanitize=address,undefined -Ilibcimfs tests/c/leak_check.c \
 *      (every .c file of libcimfs) -o leak_check
 *   ./leak_check /tmp/somewhere     (exit 0 = every check passed, no leaks)
 *
 * It also builds for Windows (x86_64-w64-mingw32-gcc ... -lbcrypt), which
 * exercises the Windows half of cim_platform.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cimfs.h"
#include "cim_platform.h"

#ifdef _WIN32
#include <windows.h>
#define hard_link(existing, new_name) (CreateHardLinkA((new_name), (existing), NULL) ? 0 : -1)
#else
#include <unistd.h>
#define hard_link(existing, new_name) link((existing), (new_name))
#endif

static int failures;

#define CHECK(expr, want)                                                                       \
    do {                                                                                        \
        HRESULT got_ = (expr);                                                                  \
        if (got_ != (HRESULT)(want)) {                                                          \
            fprintf(stderr, "%s:%d: %s = 0x%08X, want 0x%08X\n", __FILE__, __LINE__, #expr,     \
                    (unsigned)got_, (unsigned)(want));                                          \
            failures++;                                                                         \
        }                                                                                       \
    } while (0)

/* A PCWSTR from an ASCII literal (static storage, enough for these tests). */
static PCWSTR W(const char *s)
{
    static WCHAR bufs[16][512];
    static int next;
    WCHAR *b = bufs[next++ % 16];
    size_t i;
    for (i = 0; s[i] && i < 511; i++) b[i] = (unsigned char)s[i];
    b[i] = 0;
    return b;
}

static CIMFS_FILE_METADATA md(uint32_t attributes, int64_t size)
{
    CIMFS_FILE_METADATA m;
    memset(&m, 0, sizeof m);
    m.Attributes = attributes;
    m.FileSize = size;
    return m;
}

static void add(CIMFS_IMAGE_HANDLE h, const char *path, const char *data)
{
    CIMFS_FILE_METADATA m = md(0, (int64_t)strlen(data));
    CIMFS_STREAM_HANDLE s;
    CHECK(CimCreateFile(h, W(path), &m, &s), CIMFS_S_OK);
    CHECK(CimWriteStream(s, data, (UINT32)strlen(data)), CIMFS_S_OK);
    CimCloseStream(s);
}

static void mkdir_(CIMFS_IMAGE_HANDLE h, const char *path)
{
    CIMFS_FILE_METADATA m = md(CIMFS_FILE_ATTRIBUTE_DIRECTORY, 0);
    CIMFS_STREAM_HANDLE s;
    CHECK(CimCreateFile(h, W(path), &m, &s), CIMFS_S_OK);
    CimCloseStream(s);
}

static void build_base(const char *dir)
{
    CIMFS_IMAGE_HANDLE h;
    CIMFS_STREAM_HANDLE s;
    CIMFS_FILE_METADATA m;
    static const uint8_t sd[20] = {1, 0, 4, 0x80};
    static const uint8_t ea[] = {0, 0, 0, 0, 0, 1, 1, 0, 'k', 0, 'v'};
    CHECK(CimCreateImage(W(dir), NULL, W("base.cim"), &h), CIMFS_S_OK);
    mkdir_(h, "d");
    mkdir_(h, "d\\e");
    add(h, "d\\e\\f", "hello");
    add(h, "d\\g", "hello"); /* deduplicated */
    m = md(0, 5000);
    m.SecurityDescriptorBuffer = sd;
    m.SecurityDescriptorSize = sizeof sd;
    m.EaBuffer = ea;
    m.EaBufferSize = sizeof ea;
    CHECK(CimCreateFile(h, W("big"), &m, &s), CIMFS_S_OK);
    CHECK(CimWriteStream(s, "abc", 3), CIMFS_S_OK); /* short write: zero tail */
    CimCloseStream(s);
    CHECK(CimCreateAlternateStream(h, W("big:zone:$DATA"), 4, &s), CIMFS_S_OK);
    CHECK(CimWriteStream(s, "zzzzz", 5), CIMFS_HR_HANDLE_EOF);
    CimCloseStream(s);
    CHECK(CimCreateHardLink(h, W("link"), W("d\\e\\F")), CIMFS_S_OK);
    CHECK(CimCreateHardLink(h, W("d\\g"), W("link")), CIMFS_S_OK); /* replaces d\g */
    CHECK(CimCreateHardLink(h, W("x"), W("missing")), CIMFS_HR_PATH_NOT_FOUND);
    CHECK(CimCreateHardLink(h, W("x"), W("d")), CIMFS_E_ACCESSDENIED);
    CHECK(CimCreateHardLink(h, W("x"), W("big:zone")), CIMFS_E_INVALIDARG);
    add(h, "gone", "bye");
    CHECK(CimDeletePath(h, W("gone")), CIMFS_S_OK);
    CHECK(CimDeletePath(h, W("gone")), CIMFS_HR_PATH_NOT_FOUND);
    mkdir_(h, "tree");
    mkdir_(h, "tree\\sub");
    add(h, "tree\\sub\\leaf", "leaf");
    CHECK(CimCreateHardLink(h, W("outside"), W("tree\\sub\\leaf")), CIMFS_S_OK);
    CHECK(CimDeletePath(h, W("tree")), CIMFS_S_OK);
    CHECK(CimCommitImage(h), CIMFS_S_OK);
    CHECK(CimCommitImage(h), CIMFS_E_INVALIDARG);
    CimCloseImage(h);
}

/* Appends ASCII `s` and its NUL to a pairs buffer at *n. */
static void put(WCHAR *buf, size_t *n, const char *s)
{
    while (*s) buf[(*n)++] = (unsigned char)*s++;
    buf[(*n)++] = 0;
}

/* CimfsAddHostFiles: a good file, then a missing one (stops the batch, frees everything). */
static void host_files(const char *dir)
{
    CIMFS_IMAGE_HANDLE h;
    CIMFS_FILE_METADATA m[2];
    WCHAR pairs[2048];
    char host[1024], missing[1024];
    size_t n = 0;
    UINT32 failed = 7;
    FILE *f;
    snprintf(host, sizeof host, "%s/host.txt", dir);
    snprintf(missing, sizeof missing, "%s/no-such-host-file", dir);
    f = fopen(host, "wb");
    if (!f || fwrite("hosted", 1, 6, f) != 6 || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", host);
        failures++;
        return;
    }
    m[0] = md(0, 6);
    m[1] = md(0, 1);
    put(pairs, &n, "from-host");
    put(pairs, &n, host);
    put(pairs, &n, "from-nowhere");
    put(pairs, &n, missing);
    CHECK(CimCreateImage(W(dir), NULL, W("hosted.cim"), &h), CIMFS_S_OK);
    CHECK(CimfsAddHostFiles(h, pairs, n, 2, m, &failed), CIMFS_HR_FILE_NOT_FOUND);
    if (failed != 1) {
        fprintf(stderr, "CimfsAddHostFiles: failedIndex %u, want 1\n", (unsigned)failed);
        failures++;
    }
    CHECK(CimfsAddHostFiles(h, pairs, n - 1, 2, m, &failed), CIMFS_E_INVALIDARG);
    CHECK(CimCommitImage(h), CIMFS_S_OK);
    CimCloseImage(h);
}

/* Appends ASCII `s` and its NUL to a buffer of host paths at *n. */
static void put_native(cim_nchar *buf, size_t *n, const char *s)
{
    while (*s) buf[(*n)++] = (cim_nchar)(unsigned char)*s++;
    buf[(*n)++] = 0;
}

static int write_host_file(const char *path, size_t size)
{
    FILE *f = fopen(path, "wb");
    size_t i;
    if (!f) return -1;
    for (i = 0; i < size; i++) fputc((int)(i % 251), f);
    return fclose(f);
}

/* CimfsAddHostTreeFiles and its two phases: a small file (read into the batch), a large one (left
 * open for the add phase), a hard link to the small one, then a missing file; an add phase that
 * fails with a large file still open; and the links table and batches freed. */
static void host_tree_files(const char *dir)
{
    CIMFS_IMAGE_HANDLE h;
    CIMFS_HOST_LINKS *links = NULL;
    CIMFS_HOST_BATCH *batch = NULL;
    CIMFS_HOST_FILES_RESULT result;
    WCHAR images[512];
    cim_nchar hosts[4096];
    char small[1024], large[1024], linked[1024], missing[1024];
    size_t ni = 0, nh = 0;
    UINT32 failed = 7;
    snprintf(small, sizeof small, "%s/tree-small", dir);
    snprintf(large, sizeof large, "%s/tree-large", dir);
    snprintf(linked, sizeof linked, "%s/tree-linked", dir);
    snprintf(missing, sizeof missing, "%s/tree-missing", dir);
    if (write_host_file(small, 6) != 0 || write_host_file(large, (3u << 20) / 2) != 0 || hard_link(small, linked) != 0) {
        fprintf(stderr, "cannot make the host files in %s\n", dir);
        failures++;
        return;
    }
    put(images, &ni, "small");
    put_native(hosts, &nh, small);
    put(images, &ni, "large");
    put_native(hosts, &nh, large);
    put(images, &ni, "linked");
    put_native(hosts, &nh, linked);
    put(images, &ni, "missing");
    put_native(hosts, &nh, missing);
    CHECK(CimfsHostLinksCreate(&links), CIMFS_S_OK);
    CHECK(CimCreateImage(W(dir), NULL, W("tree.cim"), &h), CIMFS_S_OK);
    CHECK(CimfsAddHostTreeFiles(h, links, 0, 0, images, ni, hosts, nh * sizeof *hosts, 4, &failed, &result),
          CIMFS_HR_FILE_NOT_FOUND);
    if (failed != 3 || result.files != 2 || result.links != 1 || result.bytes != 6 + (3u << 20) / 2) {
        fprintf(stderr, "CimfsAddHostTreeFiles: failedIndex %u, %u files, %u links, %u bytes\n", (unsigned)failed,
                (unsigned)result.files, (unsigned)result.links, (unsigned)result.bytes);
        failures++;
    }
    /* An add phase that fails first: the large file's handle is still open when the batch is freed. */
    ni = nh = 0;
    put(images, &ni, "no\\parent");
    put_native(hosts, &nh, small);
    put(images, &ni, "large2");
    put_native(hosts, &nh, large);
    CHECK(CimfsHostBatchRead(links, 0, 0, images, ni, hosts, nh * sizeof *hosts, 2, &batch), CIMFS_S_OK);
    CHECK(CimfsHostBatchAdd(h, batch, &failed, &result), CIMFS_HR_PATH_NOT_FOUND);
    CimfsHostBatchFree(batch);
    CHECK(CimfsHostBatchRead(links, 0, 0, images, ni - 1, hosts, nh * sizeof *hosts, 2, &batch), CIMFS_E_INVALIDARG);
    CHECK(CimfsHostBatchRead(links, 8, 0, images, ni, hosts, nh * sizeof *hosts, 2, &batch), CIMFS_E_INVALIDARG);
    CHECK(CimfsHostBatchAdd(h, NULL, &failed, &result), CIMFS_E_INVALIDARG);
    CHECK(CimCommitImage(h), CIMFS_S_OK);
    CimCloseImage(h);
    CimfsHostLinksFree(links);
}

int main(int argc, char **argv)
{
    CIMFS_IMAGE_HANDLE h, h2;
    CIMFS_STREAM_HANDLE s;
    CIMFS_FILE_METADATA m = md(0, 10);
    const char *dir = argc > 1 ? argv[1] : ".";
    char sub[1024];

    build_base(dir);
    host_files(dir);
    host_tree_files(dir);

    /* Fork: load, change, commit. */
    CHECK(CimCreateImage(W(dir), W("base.cim"), W("child.cim"), &h), CIMFS_S_OK);
    CHECK(CimCreateImage(W(dir), NULL, W("other.cim"), &h2), CIMFS_HR_SHARING_VIOLATION);
    CHECK(CimDeletePath(h, W("d\\e")), CIMFS_S_OK);
    add(h, "d\\new", "new");
    CHECK(CimCreateHardLink(h, W("l2"), W("link")), CIMFS_S_OK);
    CHECK(CimCommitImage(h), CIMFS_S_OK);
    CimCloseImage(h);

    /* Format versions: a 1.0 fork of a 2.0 image, a sparse file zero-filled; a bad version. */
    CHECK(CimCreateImage(W(dir), W("child.cim"), W("v1.cim"), &h), CIMFS_S_OK);
    CHECK(CimfsSetFormatVersion(h, 4, 0), CIMFS_E_INVALIDARG);
    CHECK(CimfsSetFormatVersion(h, 1, 0), CIMFS_S_OK);
    {
        CIMFS_FILE_METADATA sparse = md(CIMFS_FILE_ATTRIBUTE_SPARSE_FILE, 5000);
        CHECK(CimCreateFile(h, W("sparse"), &sparse, &s), CIMFS_S_OK);
        CimCloseStream(s);
    }
    CHECK(CimCommitImage(h), CIMFS_S_OK);
    CimCloseImage(h);
    CHECK(CimCreateImage(W(dir), W("v1.cim"), W("v3.cim"), &h), CIMFS_S_OK);
    CHECK(CimfsSetFormatVersion(h, 3, 0), CIMFS_S_OK);
    add(h, "three", "3");
    CHECK(CimCommitImage(h), CIMFS_S_OK);
    CimCloseImage(h);

    /* Writer threads: large writes hashed on the helper thread, which the image frees;
     * closed without commit while the helper exists; and switched off again. */
    {
        static char big[1 << 20];
        CIMFS_FILE_METADATA mb = md(0, sizeof big);
        CHECK(CimCreateImage(W(dir), NULL, W("threads.cim"), &h), CIMFS_S_OK);
        CHECK(CimfsSetWriterThreads(h, 2), CIMFS_S_OK);
        memset(big, 'b', sizeof big);
        CHECK(CimCreateFile(h, W("big"), &mb, &s), CIMFS_S_OK);
        CHECK(CimWriteStream(s, big, sizeof big), CIMFS_S_OK);
        CimCloseStream(s);
        CHECK(CimCommitImage(h), CIMFS_S_OK);
        CimCloseImage(h);
        CHECK(CimCreateImage(W(dir), W("threads.cim"), W("threads2.cim"), &h), CIMFS_S_OK);
        CHECK(CimCreateFile(h, W("big2"), &mb, &s), CIMFS_S_OK);
        CHECK(CimWriteStream(s, big, sizeof big / 2), CIMFS_S_OK);
        CimCloseStream(s);
        CHECK(CimfsSetWriterThreads(h, 1), CIMFS_S_OK);
        CHECK(CimCreateFile(h, W("big3"), &mb, &s), CIMFS_S_OK);
        CHECK(CimWriteStream(s, big, sizeof big), CIMFS_S_OK);
        CimCloseStream(s);
        CHECK(CimfsSetWriterThreads(h, 0), CIMFS_S_OK);
        CHECK(CimCreateFile(h, W("big4"), &mb, &s), CIMFS_S_OK);
        CHECK(CimWriteStream(s, big, sizeof big), CIMFS_S_OK);
        CimCloseStream(s);
        CimCloseImage(h); /* no commit */
    }

    /* Close without commit, and with a stream still open. */
    CHECK(CimCreateImage(W(dir), W("child.cim"), W("discard.cim"), &h), CIMFS_S_OK);
    add(h, "tmp", "tmp");
    CHECK(CimCreateFile(h, W("open"), &m, &s), CIMFS_S_OK);
    CimCloseImage(h);
    CHECK(CimWriteStream(s, "x", 1), CIMFS_S_OK);
    CimCloseStream(s);
    CHECK(CimWriteStream(s, "x", 1), CIMFS_E_INVALIDARG);

    /* Failed commits (disk full, crash) free everything too. */
    CHECK(CimCreateImage(W(dir), W("child.cim"), W("fail.cim"), &h), CIMFS_S_OK);
    add(h, "x", "x");
    CimfsTestInjectFault(CIM_FAULT_RENAME, 2, CIMFS_HR_DISK_FULL, 0);
    CHECK(CimCommitImage(h), CIMFS_HR_DISK_FULL);
    CimfsTestClearFault();
    CimCloseImage(h);
    CHECK(CimCreateImage(W(dir), W("child.cim"), W("crash.cim"), &h), CIMFS_S_OK);
    CimfsTestInjectFault(CIM_FAULT_SYNC, 1, CIMFS_HR_DISK_FULL, 1);
    CHECK(CimCommitImage(h), CIMFS_HR_DISK_FULL);
    CimCloseImage(h);
    CimfsTestClearFault();

    /* Error paths of creation, including a corrupt parent. */
    CHECK(CimCreateImage(W(dir), W("nope.cim"), W("x.cim"), &h), CIMFS_HR_FILE_NOT_FOUND);
    CHECK(CimCreateImage(W(dir), NULL, W("base.cim"), &h), CIMFS_HR_FILE_EXISTS);
    snprintf(sub, sizeof sub, "%s/bad.cim", dir);
    {
        FILE *f = fopen(sub, "wb");
        static const char junk[100] = "cimfile0";
        fwrite(junk, 1, sizeof junk, f);
        fclose(f);
    }
    CHECK(CimCreateImage(W(dir), W("bad.cim"), W("y.cim"), &h), CIMFS_HR_FILE_CORRUPT);

    /* Bad handles. */
    CHECK(CimCommitImage((CIMFS_IMAGE_HANDLE)(uintptr_t)0x1234), CIMFS_E_INVALIDARG);
    CimCloseImage(NULL);
    CimCloseStream(NULL);

    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("leak_check: all checks passed\n");
    return 0;
}
