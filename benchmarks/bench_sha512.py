"""SHA-512 throughput of the C core's compression paths against hashlib (OpenSSL).

Object IDs are SHA-512 digests (libcimfs/cim_sha512.c), so hashing bounds how fast an image
is built.  Each path is chosen once per process ("avx512" where the CPU has AVX-512 F and BW,
"avx2" where it has AVX2 + BMI2, else "portable"; CIMFS_SHA512=avx2 or =portable forces that
one), so each runs in a child process, which also times hashlib on the same buffers, in the
same conditions.  Calls go through the extension: "one at a time" is CimfsTestSha512, one call
per message; "many at once" is CimfsTestObjectIds, all messages through the hashing helpers'
lanes (eight side by side with AVX-512).  A shared VM's speed drifts between rounds: the
figures are medians over rounds of each child's best repetition.

    python benchmarks/bench_sha512.py [--rounds N] [--seconds S]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SIZES = [("4 KiB objects", 4096, 256), ("1 MiB objects", 1 << 20, 8)]  # (label, size, messages per pass)


def child(seconds):
    import hashlib

    from cimfs_cffi import ffi, lib

    out = ffi.new("uint8_t[64]")
    result = {"impl": ffi.string(lib.CimfsSha512Impl()).decode()}
    for label, size, count in SIZES:
        msgs = [os.urandom(size) for _ in range(count)]
        joined, lengths, ids = b"".join(msgs), [size] * count, ffi.new("uint8_t[]", 24 * count)

        def ours():
            for m in msgs:
                lib.CimfsTestSha512(m, size, out)

        def ours_at_once():
            lib.CimfsTestObjectIds(joined, lengths, count, ids)

        def theirs():
            for m in msgs:
                hashlib.sha512(m).digest()

        for name, fn in (("c", ours), ("lanes", ours_at_once), ("hashlib", theirs)):
            fn()  # warm up
            best, spent = float("inf"), 0.0
            while spent < seconds:
                t = time.perf_counter()
                fn()
                t = time.perf_counter() - t
                best, spent = min(best, t), spent + t
            result["%s %s" % (name, label)] = size * count / best / 1e6
    print(json.dumps(result))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=0.15, help="time per path, size and round")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.seconds)

    runs = {}  # impl -> list of results
    for _ in range(args.rounds):
        for force in (None, "avx2", "portable"):
            env = dict(os.environ)
            env.pop("CIMFS_SHA512", None)
            if force:
                env["CIMFS_SHA512"] = force
            done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--seconds",
                                   str(args.seconds)], capture_output=True, text=True, env=env, check=True)
            r = json.loads(done.stdout)
            runs.setdefault(r["impl"], []).append(r)  # a forced path the CPU lacks falls back: same key
    print("SHA-512, MB/s on one core (median of %d rounds)" % args.rounds)
    print("%-10s %-15s %12s %12s %8s %10s" % ("path", "messages", "one at a time", "many at once", "hashlib",
                                               "best/hashlib"))
    for impl, rs in runs.items():
        for label, _, _ in SIZES:
            c = statistics.median(r["c " + label] for r in rs)
            lanes = statistics.median(r["lanes " + label] for r in rs)
            h = statistics.median(r["hashlib " + label] for r in rs)
            ratio = statistics.median(max(r["c " + label], r["lanes " + label]) / r["hashlib " + label] for r in rs)
            print("%-10s %-15s %12.0f %12.0f %8.0f %9.2fx" % (impl, label, c, lanes, h, ratio))


if __name__ == "__main__":
    main()
