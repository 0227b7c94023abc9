/*
 * defer_stress.c - the queued-stream pipeline (cim_defer.c) under load: the
 * same random sequence of calls (files of many sizes, a third of them
 * duplicates, PE-like and sparse files, alternate streams, names replaced,
 * deleted and hard-linked, directories re-created) written once on the
 * caller's thread only and once with helper threads; the region and
 * objectid files must be byte-identical.  Run under ThreadSanitizer and
 * AddressSanitizer by .ci/sanitizers.sh.
 *
 *   cc -std=c11 -fsanitize=thread -Ilibcimfs tests/c/defer_stress.c (every .c file of libcimfs) \
 *      -lpthread -o defer_stress
 *   ./defer_stress DIR [FILES]   (exit 0 = identical; FILES defaults to 3000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cimfs.h"

static int files = 3000; /* argv[2] overrides: fewer under ThreadSanitizer, which is slow */

static uint64_t rng_state;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}

static PCWSTR W(const char *s)
{
    static WCHAR bufs[8][256];
    static int next;
    WCHAR *b = bufs[next++ % 8];
    size_t i;
    for (i = 0; s[i] && i < 255; i++) b[i] = (unsigned char)s[i];
    b[i] = 0;
    return b;
}

static int fail(const char *what, HRESULT hr)
{
    fprintf(stderr, "defer_stress: %s: 0x%08X\n", what, (unsigned)hr);
    return 1;
}

static int write_image(const char *dir, const char *name, UINT32 threads)
{
    static uint8_t data[3 << 20];
    CIMFS_IMAGE_HANDLE h;
    CIMFS_STREAM_HANDLE s;
    CIMFS_FILE_METADATA m;
    char path[64], other[64];
    HRESULT hr;
    int i;
    rng_state = 42;
    for (i = 0; i < (int)sizeof data; i++) data[i] = (uint8_t)rnd();
    if ((hr = CimCreateImage(W(dir), NULL, W(name), &h)) < 0) return fail("create image", hr);
    if ((hr = CimfsSetWriterThreads(h, threads)) < 0) return fail("threads", hr);
    memset(&m, 0, sizeof m);
    m.Attributes = CIMFS_FILE_ATTRIBUTE_DIRECTORY;
    if ((hr = CimCreateFile(h, W("d"), &m, &s)) < 0) return fail("mkdir", hr);
    CimCloseStream(s);
    for (i = 0; i < files; i++) {
        uint32_t r = rnd() % 100, size, at, dup = rnd() % 3 == 0;
        size = rnd() % 4 == 0 ? rnd() % (3 << 20) : rnd() % 20000;
        at = dup ? 0 : rnd() % (uint32_t)(sizeof data - size); /* duplicates: the same bytes again */
        snprintf(path, sizeof path, "d\\f%d", (int)(rnd() % (uint32_t)(files / 2 + 1))); /* names repeat: replacements */
        memset(&m, 0, sizeof m);
        m.FileSize = size;
        if (r < 3) m.Attributes = CIMFS_FILE_ATTRIBUTE_SPARSE_FILE;
        if ((hr = CimCreateFile(h, W(path), &m, &s)) < 0) return fail("create file", hr);
        if (r >= 3) {
            uint32_t done = 0;
            if (r < 8 && size >= 2) memcpy(data + at, "MZ", 2); /* the PE probe looks, stores plain */
            while (done < size) {
                uint32_t k = 1 + rnd() % 70000;
                if (k > size - done) k = size - done;
                if (r < 12 && done + k == size && k > 1) k--; /* a short write: zero tail */
                if ((hr = CimWriteStream(s, data + at + done, k)) < 0) return fail("write", hr);
                done += k;
                if (r < 12 && done == size - 1) break;
            }
        }
        CimCloseStream(s);
        if (r % 17 == 0) {
            if ((hr = CimCreateAlternateStream(h, W(strcat(strcpy(other, path), ":ads")), 5, &s)) < 0)
                return fail("ads", hr);
            CimWriteStream(s, "12345", 5);
            CimCloseStream(s);
        }
        if (r % 13 == 0) {
            snprintf(other, sizeof other, "d\\l%d", (int)(rnd() % 50));
            if ((hr = CimCreateHardLink(h, W(other), W(path))) < 0) return fail("link", hr);
        }
        if (r % 29 == 0 && (hr = CimDeletePath(h, W(path))) < 0) return fail("delete", hr);
        if (r % 97 == 0) { /* re-create the directory: its children stay */
            memset(&m, 0, sizeof m);
            m.Attributes = CIMFS_FILE_ATTRIBUTE_DIRECTORY;
            if ((hr = CimCreateFile(h, W("d"), &m, &s)) < 0) return fail("re-mkdir", hr);
            CimCloseStream(s);
        }
    }
    if ((hr = CimCommitImage(h)) < 0) return fail("commit", hr);
    CimCloseImage(h);
    return 0;
}

/* The bytes of every region/objectid file of the image set in `dir`, concatenated by kind and index. */
static int same_files(const char *a, const char *b)
{
    static const char *kinds[] = {"region", "objectid"};
    char pa[1100], pb[1100], cmd[2300];
    int k, i;
    for (k = 0; k < 2; k++)
        for (i = 0; i < 3; i++) {
            snprintf(pa, sizeof pa, "%s/%s_*_%d", a, kinds[k], i);
            snprintf(pb, sizeof pb, "%s/%s_*_%d", b, kinds[k], i);
            snprintf(cmd, sizeof cmd, "cmp %s %s", pa, pb);
            if (system(cmd) != 0) return 0;
        }
    return 1;
}

int main(int argc, char **argv)
{
    char one[512], two[512], cmd[1100];
    if (strlen(argc > 1 ? argv[1] : ".") > 400) return 1;
    const char *dir = argc > 1 ? argv[1] : ".";
    if (argc > 2) files = atoi(argv[2]) > 0 ? atoi(argv[2]) : files;
    snprintf(one, sizeof one, "%s/one", dir);
    snprintf(two, sizeof two, "%s/two", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s %s", one, two);
    if (system(cmd) != 0) return 1;
    if (write_image(one, "x.cim", 1) || write_image(two, "x.cim", 3)) return 1;
    if (!same_files(one, two)) {
        fprintf(stderr, "defer_stress: images differ\n");
        return 1;
    }
    printf("defer_stress: identical with and without helper threads\n");
    return 0;
}
