"""Peak memory and time of an image of N empty files (default 1,000,000).

Target (issue 2): commit with under 1 GiB of peak RSS.  The work runs in a
child process so its peak RSS is its own; the same child first measures
Python's baseline RSS, so the writer's share is printed as well.

    python benchmarks/bench_million_files.py [--files N] [--dirs D]
"""
import argparse
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import sys, time
directory, files, dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, sys.argv[4])
from peak_memory import peak_rss_kib
from cimfs_cffi import ffi, lib
base_kib = peak_rss_kib()
h = ffi.new("CIMFS_IMAGE_HANDLE *"); s = ffi.new("CIMFS_STREAM_HANDLE *")
assert lib.CimCreateImage(directory, ffi.NULL, "million.cim", h) == 0
md = ffi.new("CIMFS_FILE_METADATA *")
t0 = time.perf_counter()
per_dir = files // dirs
for d in range(dirs):
    md.Attributes = 0x10
    assert lib.CimCreateFile(h[0], "dir%04d" % d, md, s) == 0
    lib.CimCloseStream(s[0])
    md.Attributes = 0
    for f in range(per_dir):
        assert lib.CimCreateFile(h[0], "dir%04d\\file%07d.txt" % (d, f), md, s) == 0
        lib.CimCloseStream(s[0])
t1 = time.perf_counter()
assert lib.CimCommitImage(h[0]) == 0
t2 = time.perf_counter()
lib.CimCloseImage(h[0])
peak_kib = peak_rss_kib()
print(base_kib, peak_kib, t1 - t0, t2 - t1, per_dir * dirs)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--dirs", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        # cwd: a "-c" child puts it on sys.path; keep the source tree out of it.
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.check_output([sys.executable, "-c", CHILD, d, str(args.files), str(args.dirs), here],
                                      text=True, cwd=d)
        base, peak, t_add, t_commit, n = out.split()
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    base, peak, n = int(base), int(peak), int(n)
    print("files                 %d in %d directories" % (n, args.dirs))
    print("add (Python loop)     %.2f s  (%.0f files/s)" % (float(t_add), n / float(t_add)))
    print("commit                %.2f s" % float(t_commit))
    print("peak RSS              %.1f MiB (Python baseline %.1f MiB, writer %.1f MiB, %.0f bytes/file)"
          % (peak / 1024, base / 1024, (peak - base) / 1024, (peak - base) * 1024 / n))
    print("image size on disk    %.1f MiB" % (size / 2**20))
    print("target: peak RSS < 1024 MiB -> %s" % ("met" if peak < 1024 * 1024 else "MISSED"))


if __name__ == "__main__":
    main()
