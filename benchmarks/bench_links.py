"""Hard-link throughput: bulk and per-call Python against a C loop.

Workload: 1,000 directories x 100 files, then 200,000 hard links into other
directories.  Only the linking is timed; each figure is the best of
--rounds runs.  The C baseline (bench_links.c, a loop calling
CimCreateHardLink) is compiled here against the same libcimfs sources with
the same optimization the extension gets (-O2).

Targets (issue 3): create_hard_links >= 0.8x the C loop; create_hard_link
per pair >= 0.25x.

    python benchmarks/bench_links.py [--rounds N] [--cc CC]
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

from cimfs_cffi import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DIRS, FILES, LINKS = 1000, 100, 200_000


def workload():
    pairs = []
    for i in range(LINKS):
        d, f = i % DIRS, (i // DIRS) % FILES
        pairs.append(("d%04d\\l%06d" % ((d + 1) % DIRS, i), "d%04d\\f%03d" % (d, f)))
    return pairs


def populated(directory, name):
    image = Image.create(directory, name, backend="portable")
    for d in range(DIRS):
        image.add_directory("d%04d" % d)
        for f in range(FILES):
            image.open_file("d%04d\\f%03d" % (d, f), 0).close()
    return image


def best_of(rounds, directory, run):
    best = float("inf")
    for r in range(rounds):
        image = populated(directory, "py%d-%s.cim" % (r, run.__name__))
        t0 = time.perf_counter()
        run(image)
        best = min(best, time.perf_counter() - t0)
        image.close()
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    args = ap.parse_args()
    pairs = workload()

    def bulk(image):
        assert image.create_hard_links(pairs) == LINKS

    def per_call(image):
        link = image.create_hard_link
        for new, old in pairs:
            link(new, old)

    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "bench_links")
        sources = sorted(glob.glob(os.path.join(ROOT, "libcimfs", "*.c")))
        subprocess.check_call([args.cc, "-O2", "-std=c11", "-I" + os.path.join(ROOT, "libcimfs"),
                               os.path.join(HERE, "bench_links.c")] + sources + ["-o", exe, "-lpthread"])
        out = subprocess.check_output([exe, tmp, str(args.rounds)], text=True).split()
        c_time = float(out[1])
        bulk_time = best_of(args.rounds, tmp, bulk)
        call_time = best_of(args.rounds, tmp, per_call)

    rows = [("C loop, CimCreateHardLink", c_time), ("create_hard_links (bulk)", bulk_time),
            ("create_hard_link per pair", call_time)]
    print("%d hard links into %d directories of %d files (best of %d)" % (LINKS, DIRS, FILES, args.rounds))
    print("%-28s %10s %14s %9s" % ("", "seconds", "links/s", "vs C"))
    for label, t in rows:
        print("%-28s %10.3f %14s %8.2fx" % (label, t, format(int(LINKS / t), ","), c_time / t))
    print("targets: bulk >= 0.80x -> %s; per call >= 0.25x -> %s"
          % ("met" if c_time / bulk_time >= 0.8 else "MISSED", "met" if c_time / call_time >= 0.25 else "MISSED"))


if __name__ == "__main__":
    main()
