/*
 * bench_links.c - the C limit for hard-link throughput: a loop calling
 * CimCreateHardLink directly, on the workload of bench_links.py
 * (1,000 directories x 100 files, then 200,000 links into other directories).
 * bench_links.py builds it, with the libcimfs sources and the compiler flags
 * of the extension, into a shared library and calls bench_links_c() in its
 * own process, so the baseline and the Python figures share machine state.
 * Built as a program (-DBENCH_MAIN) it runs alone:
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

static WCHAR *news[LINKS], *targets[LINKS];

/* The timed part: the workload's links on a populated image; returns seconds. */
double bench_links_loop(CIMFS_IMAGE_HANDLE h)
{
    char buf[64];
    int d, f, i;
    double t0;
    if (!news[0]) {
        for (i = 0; i < LINKS; i++) {
            d = i % DIRS;
            f = (i / DIRS) % FILES;
            snprintf(buf, sizeof buf, "d%04d\\l%06d", (d + 1) % DIRS, i);
            news[i] = wide(buf);
            snprintf(buf, sizeof buf, "d%04d\\f%03d", d, f);
            targets[i] = wide(buf);
        }
    }
    t0 = now();
    for (i = 0; i < LINKS; i++) must(CimCreateHardLink(h, news[i], targets[i]), "CimCreateHardLink");
    return now() - t0;
}

/* Populates a new image `name` in `dir` in C, then times its links (the
 * standalone program's mode). */
double bench_links_c(const char *dir, const char *name)
{
    char buf[64];
    int d, f;
    CIMFS_IMAGE_HANDLE h;
    CIMFS_STREAM_HANDLE s;
    CIMFS_FILE_METADATA md;
    WCHAR *p, *q;
    double t;
    p = wide(dir);
    q = wide(name);
    must(CimCreateImage(p, NULL, q, &h), "CimCreateImage");
    free(p);
    free(q);
    memset(&md, 0, sizeof md);
    for (d = 0; d < DIRS; d++) {
        md.Attributes = CIMFS_FILE_ATTRIBUTE_DIRECTORY;
        snprintf(buf, sizeof buf, "d%04d", d);
        p = wide(buf);
        must(CimCreateFile(h, p, &md, &s), "mkdir");
        free(p);
        CimCloseStream(s);
        md.Attributes = 0;
        for (f = 0; f < FILES; f++) {
            snprintf(buf, sizeof buf, "d%04d\\f%03d", d, f);
            p = wide(buf);
            must(CimCreateFile(h, p, &md, &s), "file");
            free(p);
            CimCloseStream(s);
        }
    }
    t = bench_links_loop(h);
    CimCloseImage(h); /* not committed: only linking is measured */
    return t;
}

#ifdef BENCH_MAIN
int main(int argc, char **argv)
{
    int rounds = argc > 2 ? atoi(argv[2]) : 3, r;
    double best = 1e9;
    char name[32];
    if (argc < 2) return 2;
    for (r = 0; r < rounds; r++) {
        double t;
        snprintf(name, sizeof name, "c%d.cim", r);
        t = bench_links_c(argv[1], name);
        if (t < best) best = t;
    }
    printf("%d %.6f\n", LINKS, best);
    return 0;
}
#endif
