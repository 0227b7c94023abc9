/*
 * fuzz_load.c - libFuzzer harness for the fork loader (libcimfs/cim_load.c): the C code that
 * reads an existing image, possibly made by anyone, to fork or extend it.
 *
 * The input is a container of the image's files: for each of the .cim, region 0..2 and
 * objectid 0..2 in turn, a u32 length and that many bytes (a missing tail means missing
 * files).  The harness writes them into a scratch directory, named by the GUID the .cim
 * holds, and forks the image: CimCreateImage, then a file whose bytes may deduplicate
 * against the parent's, then CimCloseImage.  Any out-of-bounds read or leak aborts (ASan).
 * tests/fuzz/make_corpus.py writes the seed corpus from real images.  See .ci/fuzz.sh.
 */
#include "cimfs.h"
#include "cim_format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[256];

static PCWSTR W(const char *s)
{
    static WCHAR bufs[4][512];
    static int next;
    WCHAR *b = bufs[next++ % 4];
    size_t i;
    for (i = 0; s[i] && i < 511; i++) b[i] = (unsigned char)s[i];
    b[i] = 0;
    return b;
}

static void put_file(const char *name, const uint8_t *p, size_t n)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(p, 1, n, f) != n) abort();
    fclose(f);
}

static void clear_dir(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", g_dir, g_dir);
    if (system(cmd) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *kinds[] = {"region", "region", "region", "objectid", "objectid", "objectid"};
    char guid[40] = "00000000-0000-0000-0000-000000000000", name[96];
    const uint8_t *cim = NULL;
    size_t pos = 0, cim_len = 0;
    int part;
    CIMFS_IMAGE_HANDLE h = NULL;
    if (!g_dir[0]) snprintf(g_dir, sizeof g_dir, "/dev/shm/cimfs-fuzz-load-%d", (int)getpid());
    clear_dir();
    for (part = 0; part < 7 && pos + 4 <= size; part++) {
        size_t n = cim_get32(data + pos);
        pos += 4;
        if (n > size - pos) n = size - pos;
        if (part == 0) {
            cim = data + pos;
            cim_len = n;
            put_file("p.cim", cim, n);
            if (n >= 0x30) {
                const uint8_t *g = cim + 0x20;
                snprintf(guid, sizeof guid, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", (unsigned)cim_get32(g),
                         (unsigned)cim_get16(g + 4), (unsigned)cim_get16(g + 6), g[8], g[9], g[10], g[11], g[12],
                         g[13], g[14], g[15]);
            }
        } else {
            snprintf(name, sizeof name, "%s_%s_%d", kinds[part - 1], guid, (part - 1) % 3);
            put_file(name, data + pos, n);
        }
        pos += n;
    }
    if (cim && cim_len && CimCreateImage(W(g_dir), W("p.cim"), W("c.cim"), &h) == CIMFS_S_OK) {
        static const char payload[] = "fuzz";
        CIMFS_FILE_METADATA md;
        CIMFS_STREAM_HANDLE s;
        memset(&md, 0, sizeof md);
        md.FileSize = sizeof payload;
        if (CimCreateFile(h, W("new"), &md, &s) == CIMFS_S_OK) {
            (void)CimWriteStream(s, payload, sizeof payload);
            CimCloseStream(s);
        }
        CimCloseImage(h);
    }
    return 0;
}
