"""Hard-link throughput: bulk and per-call Python against a C loop.

Workload: 1,000 directories x 100 files, then 200,000 hard links into other
directories.  Only the linking is timed.

The C baseline (bench_links.c: a loop calling CimCreateHardLink) is built
here from the same libcimfs sources with the extension's compiler flags into
a shared library and run in this process.  Every image, the baseline's
included, is populated by the same Python loop (one CimCreateFile per
entry), so all three start from the same memory and cache state and the
figures differ only in how the links are made.  The three methods run
back to back in each round; a shared VM's speed drifts by tens of percent
between rounds, so the ratios are taken within each round and the median
of those is reported (times are each method's best round).

Targets (issue 3): create_hard_links >= 0.8x the C loop; create_hard_link
per pair >= 0.25x.

    python benchmarks/bench_links.py [--rounds N] [--cc CC]
"""
import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time

import sysconfig

from cffi import FFI

from cimfs_cffi import Image, ffi, lib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DIRS, FILES, LINKS = 1000, 100, 200_000


def workload():
    pairs = []
    for i in range(LINKS):
        d, f = i % DIRS, (i // DIRS) % FILES
        pairs.append(("d%04d\\l%06d" % ((d + 1) % DIRS, i), "d%04d\\f%03d" % (d, f)))
    return pairs


def populate(api, handle):
    """The workload's tree: one CimCreateFile per entry, through `api`
    (the extension's lib, or the baseline library's copy)."""
    md = api.ffi.new("CIMFS_FILE_METADATA *")
    stream = api.ffi.new("CIMFS_STREAM_HANDLE *")
    for d in range(DIRS):
        md.Attributes = 0x10
        assert api.CimCreateFile(handle, "d%04d" % d, md, stream) == 0
        api.CimCloseStream(stream[0])
        md.Attributes = 0
        for f in range(FILES):
            assert api.CimCreateFile(handle, "d%04d\\f%03d" % (d, f), md, stream) == 0
            api.CimCloseStream(stream[0])


class _Ext:
    """The extension's functions, in the shape populate() wants."""
    ffi = ffi
    CimCreateFile = lib.CimCreateFile
    CimCloseStream = lib.CimCloseStream


def populated(directory, name):
    image = Image.create(directory, name, backend="portable")
    populate(_Ext, image._handle)
    return image


def build_baseline(tmp, cc):
    """bench_links.c + libcimfs as a shared library, with the extension's flags."""
    flags = (sysconfig.get_config_var("CFLAGS") or "-O2").split()
    lib_path = os.path.join(tmp, "bench_links" + (".dll" if sys.platform == "win32" else ".so"))
    sources = sorted(glob.glob(os.path.join(ROOT, "libcimfs", "*.c")))
    subprocess.check_call([cc] + flags + ["-std=c11", "-fPIC", "-shared", "-I" + os.path.join(ROOT, "libcimfs"),
                                          os.path.join(HERE, "bench_links.c")] + sources + ["-o", lib_path, "-lpthread"])
    cffi = FFI()
    with open(os.path.join(ROOT, "cimfs_cffi", "_cimfs_cdef.h")) as f:
        cdef = f.read().replace("typedef int... HRESULT;", "typedef int32_t HRESULT;")
    cdef = cdef.replace("typedef union { int64_t QuadPart; ...; } LARGE_INTEGER;",
                        "typedef union { int64_t QuadPart; } LARGE_INTEGER;")
    cdef = "\n".join(line for line in cdef.splitlines() if not line.startswith("#define"))
    cffi.cdef("typedef %s WCHAR;\n" % ("wchar_t" if sys.platform == "win32" else "char16_t") + cdef + "\ndouble bench_links_loop(CIMFS_IMAGE_HANDLE h);")
    return _Baseline(cffi, cffi.dlopen(lib_path))


class _Baseline:
    """The baseline library's functions and its ffi, in the shape populate() wants."""

    def __init__(self, cffi, library):
        self.ffi = cffi
        self._lib = library

    def __getattr__(self, name):
        return getattr(self._lib, name)


def c_loop(baseline, directory, name):
    """The baseline: populate with the library's own copy of the writer, then
    time its CimCreateHardLink loop."""
    handle = baseline.ffi.new("CIMFS_IMAGE_HANDLE *")
    assert baseline.CimCreateImage(directory, baseline.ffi.NULL, name, handle) == 0
    populate(baseline, handle[0])
    elapsed = baseline.bench_links_loop(handle[0])
    baseline.CimCloseImage(handle[0])
    return elapsed


def timed(directory, tag, run):
    image = populated(directory, "py-%s.cim" % tag)
    t0 = time.perf_counter()
    run(image)
    elapsed = time.perf_counter() - t0
    image.close()
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--verbose", action="store_true", help="print every round")
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
        baseline = build_baseline(tmp, args.cc)
        samples = {"c": [], "bulk": [], "call": []}
        for r in range(args.rounds):
            samples["c"].append(c_loop(baseline, tmp, "c%d.cim" % r))
            samples["bulk"].append(timed(tmp, "bulk%d" % r, bulk))
            samples["call"].append(timed(tmp, "call%d" % r, per_call))
            if args.verbose:
                print("round %d: C %.3f  bulk %.3f  per call %.3f" % (r, samples["c"][-1], samples["bulk"][-1],
                                                                     samples["call"][-1]))
        c_time, bulk_time, call_time = min(samples["c"]), min(samples["bulk"]), min(samples["call"])
        ratio = {k: statistics.median(c / t for c, t in zip(samples["c"], samples[k])) for k in ("bulk", "call")}
        ratio["c"] = 1.0

    rows = [("C loop, CimCreateHardLink", "c", c_time), ("create_hard_links (bulk)", "bulk", bulk_time),
            ("create_hard_link per pair", "call", call_time)]
    print("%d hard links into %d directories of %d files, %d rounds" % (LINKS, DIRS, FILES, args.rounds))
    print("%-28s %12s %14s %16s" % ("", "best (s)", "links/s", "vs C (median)"))
    for label, key, t in rows:
        print("%-28s %12.3f %14s %15.2fx" % (label, t, format(int(LINKS / t), ","), ratio[key]))
    print("targets: bulk >= 0.80x -> %s; per call >= 0.25x -> %s"
          % ("met" if ratio["bulk"] >= 0.8 else "MISSED", "met" if ratio["call"] >= 0.25 else "MISSED"))


if __name__ == "__main__":
    main()
