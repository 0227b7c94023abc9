/*
 * bench_links.c - the C limit for hard-link throughput: a loop calling
 * CimCreateHardLink directly, on the workload of bench_links.py
 * (1,000 directories x 100 files, then 200,000 links into other directories).
 * Built and run by bench_links.py against the same libcimfs sources.
 *
 *   bench_links DIR [ROUNDS]   prints: "<links> <best seconds>"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cimfs.h"

#define DIRS 1000
#define FILES 100
#define LINKS 200000

static double now(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static WCHAR *wide(const char *s)
{
    size_t n = strlen(s), i;
    WCHAR *w = (WCHAR *)malloc((n + 1) * sizeof *w);
    for (i = 0; i <= n; i++) w[i] = (unsigned char)s[i];
    return w;
}

static void must(HRESULT hr, const char *what)
{
    if (hr < 0) {
        fprintf(stderr, "%s failed: 0x%08X\n", what, (unsigned)hr);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    static WCHAR *news[LINKS], *targets[LINKS];
    char buf[64];
    int rounds = argc > 2 ? atoi(argv[2]) : 3, r, d, f, i;
    double best = 1e9;
    if (argc < 2) return 2;
    for (i = 0; i < LINKS; i++) {
        d = i % DIRS;
        f = (i / DIRS) % FILES;
        snprintf(buf, sizeof buf, "d%04d\\l%06d", (d + 1) % DIRS, i);
        news[i] = wide(buf);
        snprintf(buf, sizeof buf, "d%04d\\f%03d", d, f);
        targets[i] = wide(buf);
    }
    for (r = 0; r < rounds; r++) {
        CIMFS_IMAGE_HANDLE h;
        CIMFS_STREAM_HANDLE s;
        CIMFS_FILE_METADATA md;
        double t0, t;
        char name[32];
        snprintf(name, sizeof name, "c%d.cim", r);
        must(CimCreateImage(wide(argv[1]), NULL, wide(name), &h), "CimCreateImage");
        memset(&md, 0, sizeof md);
        for (d = 0; d < DIRS; d++) {
            md.Attributes = CIMFS_FILE_ATTRIBUTE_DIRECTORY;
            snprintf(buf, sizeof buf, "d%04d", d);
            must(CimCreateFile(h, wide(buf), &md, &s), "mkdir");
            CimCloseStream(s);
            md.Attributes = 0;
            for (f = 0; f < FILES; f++) {
                snprintf(buf, sizeof buf, "d%04d\\f%03d", d, f);
                must(CimCreateFile(h, wide(buf), &md, &s), "file");
                CimCloseStream(s);
            }
        }
        t0 = now();
        for (i = 0; i < LINKS; i++) must(CimCreateHardLink(h, news[i], targets[i]), "CimCreateHardLink");
        t = now() - t0;
        if (t < best) best = t;
        CimCloseImage(h); /* not committed: only linking is measured */
    }
    printf("%d %.6f\n", LINKS, best);
    return 0;
}
