"""SHA-512 of the C core (libcimfs/cim_sha512.c) against hashlib, on each compression path.

The path ("avx512" on x86-64 with AVX-512 F and BW, which also hashes eight messages at once,
"avx2" with AVX2 + BMI2, else "portable") is chosen once per process, and CIMFS_SHA512=portable
or =avx2 forces that one, so each path runs in a subprocess of its own.  Messages hashed side by
side (cim_objid_lanes, as the hashing helpers use it) are checked on every path too.
Data and the split points of the update() calls are random (the seed is printed on failure).
tests/c/sha512_check.c checks the same paths from C.
"""
import hashlib
import json
import os
import platform
import random
import subprocess
import sys

import pytest

import cimfs_cffi
from conftest import ffi, lib

# Run in the child: every case hashed through the extension, compared with hashlib there.
CHILD = r"""
import hashlib, json, random, sys
from cimfs_cffi import ffi, lib

seed = int(sys.argv[1])
rng = random.Random(seed)
pool = rng.randbytes((4 << 20) + 4096)

def chunks(n):
    # random pieces: empty ones, ones around the block (128) and padding (112) sizes, long ones
    out = []
    while n:
        kind = rng.randrange(5)
        take = [0, rng.randrange(300), 128 * rng.randrange(40) + rng.randrange(3),
                rng.randrange(n // 2 + 1), n][kind]
        take = min(take, n)
        out.append(take)
        n -= take
    if rng.randrange(2):
        out.append(0)
    return out

lengths = list(range(0, 1100)) + [rng.randrange(1100, 3001) for _ in range(100)]
lengths += [1 << 20, (3 << 20) + 77, (4 << 20) - 1]
bad = []
digest = ffi.new("uint8_t[64]")
objid = ffi.new("uint8_t[24]")
for n in lengths:
    off = rng.randrange(4096)
    data = pool[off:off + n]
    want = hashlib.sha512(data).digest()
    sizes = chunks(n)
    lib.CimfsTestSha512Chunks(data, sizes, len(sizes), digest)
    if bytes(digest) != want:
        bad.append(["chunks", n, off, sizes[:20]])
    lib.CimfsTestSha512(data, n, digest)
    if bytes(digest) != want:
        bad.append(["whole", n, off])
    lib.CimfsTestObjectId(data, n, objid)
    if bytes(objid) != (data.ljust(24, b"\0") if n <= 24 else want[:24]):
        bad.append(["objectid", n, off])
# Many messages at once, through the lanes: random lengths (padding and block edges, inline
# objects, long ones), so lanes finish at different times and run idle at the end.
for _ in range(20):
    lens = [rng.choice([0, 1, 24, 25, 111, 112, 113, 127, 128, 129, 255, 256, 257,
                        rng.randrange(70000), rng.randrange(1 << 20)]) for _ in range(rng.randrange(1, 40))]
    offs = [rng.randrange(len(pool) - n + 1) for n in lens]
    msgs = [pool[o:o + n] for o, n in zip(offs, lens)]
    out = ffi.new("uint8_t[]", 24 * len(msgs))
    lib.CimfsTestObjectIds(b"".join(msgs), lens, len(lens), out)
    for i, m in enumerate(msgs):
        want = m.ljust(24, b"\0") if len(m) <= 24 else hashlib.sha512(m).digest()[:24]
        if bytes(out[24 * i:24 * i + 24]) != want:
            bad.append(["lanes", len(m), i, lens])
print(json.dumps({"impl": ffi.string(lib.CimfsSha512Impl()).decode(), "cases": len(lengths), "bad": bad[:10]}))
"""


def run_child(force, seed):
    env = dict(os.environ)
    env.pop("CIMFS_SHA512", None)
    if force:
        env["CIMFS_SHA512"] = force
    # the same cimfs_cffi as this process (installed, or built in place), whatever the cwd
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(cimfs_cffi.__file__)))
    done = subprocess.run([sys.executable, "-c", CHILD, str(seed)], capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.abspath(__file__)), timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def fastest_path():
    """From /proc/cpuinfo where there is one; None when unknown."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return "portable"
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return None
    if not ("avx2" in flags and "bmi2" in flags):
        return "portable"
    return "avx512" if "avx512f" in flags and "avx512bw" in flags else "avx2"


def default_impl():
    return run_child(None, 0)["impl"] if os.environ.get("CIMFS_SHA512") else ffi.string(lib.CimfsSha512Impl()).decode()


def test_the_default_path_is_the_fastest_the_cpu_has():
    impl = default_impl()
    assert impl in ("avx512", "avx2", "portable")
    expected = fastest_path()
    if expected is not None:
        assert impl == expected


@pytest.mark.parametrize("force", [None, "avx2", "portable"],
                         ids=["default", "CIMFS_SHA512=avx2", "CIMFS_SHA512=portable"])
def test_sha512_matches_hashlib_on_random_data_and_random_splits(force):
    if force == "avx2" and default_impl() not in ("avx512", "avx2"):
        pytest.skip("this CPU has no AVX2 + BMI2, so there is no avx2 path to force")
    seed = random.randrange(1 << 32)
    result = run_child(force, seed)
    assert result["impl"] == (force or default_impl())
    assert result["cases"] > 1100
    assert result["bad"] == [], "seed %d: %s" % (seed, result["bad"])


def test_chunks_hook_matches_hashlib_here():
    """The hook itself, in this process: a block fed one byte at a time, then the rest."""
    data = os.urandom(1000)
    sizes = [1] * 128 + [0, 872]
    out = ffi.new("uint8_t[64]")
    lib.CimfsTestSha512Chunks(data, sizes, len(sizes), out)
    assert bytes(out) == hashlib.sha512(data).digest()
