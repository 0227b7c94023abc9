"""cimfs build --layer against Debian's sqfstar and the decompression floor, in one run.

Generates (or takes, with ``--layer``) a Windows-container-shaped layer tar:
``Files/...`` with FILE_COUNT files whose sizes follow a log-normal spread (many
small files, a few large "DLLs") scaled to TOTAL_MB, half random and half
repetitive bytes (gzip shrinks it to about 55 %), plus a few hard links.  Every
entry carries the PAX records that hcsshim's layer export writes
(``MSWINDOWS.fileattr``, ``MSWINDOWS.rawsd``: one of a few security
descriptors, ``LIBARCHIVE.creationtime``), so per-entry metadata costs what it
costs in a real layer.  From
it, three cases, each timed round by round in turn (medians, with the spread):

* **gzip**: ``cimfs build --layer L.tar.gz``; ``zcat L.tar.gz | sqfstar -noI -noD
  -noF -noX``; and the floor: the fastest gzip reader installed (python-isal,
  zlib-ng, rapidgzip, pigz, zcat), decompressing to nowhere;
* **plain**: ``cimfs build --layer L.tar``; ``sqfstar ... < L.tar``; ``cat`` as the floor;
* **zstd**: ``cimfs build --layer L.tar.zst``; ``zstd -dc | sqfstar``; ``zstd -dc`` as the floor.

Every tool runs as a command in a fresh process after a ``sync`` (no tool pays
for another's write-back), from a warm page cache.  Times are until the tool
exits, and until its output is on disk (the tool, then ``sync``): cimfs build
fsyncs its image before it returns, sqfstar does not, so only the second
compares like with like.  The peak RSS of each command is printed too.
Targets (issue 14): gzip <= 0.50x zcat|sqfstar and <= 1.5x the floor; plain
<= 0.7x sqfstar.  Installs nothing; says which tools it could not find.

    python benchmarks/bench_layer.py [--files N] [--mb N] [--rounds N] [--cases gzip,plain,zstd]
                                     [--cache DIR] [--threads N ...] [--baseline-python PY]
"""
import argparse
import base64
import hashlib
import io
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

import installations as inst

SQFSTAR_FLAGS = ["-noI", "-noD", "-noF", "-noX", "-quiet", "-no-progress"]


def _sizes(files: int, total: int, rng: random.Random):
    raw = [min(rng.lognormvariate(math.log(16384), 2.0), 64 << 20) for _ in range(files)]
    scale = total / sum(raw)
    return [max(0, int(s * scale)) for s in raw]


def _sid(authority: int, *subs: int) -> bytes:
    return bytes([1, len(subs)]) + authority.to_bytes(6, "big") + b"".join(s.to_bytes(4, "little") for s in subs)


SYSTEM, ADMINS, USERS = _sid(5, 18), _sid(5, 32, 544), _sid(5, 32, 545)
TRUSTED_INSTALLER = _sid(5, 80, 956008885, 3418522649, 1831038044, 1853292631, 2271478464)
ALL_APP_PACKAGES = _sid(15, 2, 1)


def _security_descriptor(owner: bytes, aces) -> bytes:
    """A self-relative descriptor (owner, group SYSTEM, a DACL of access-allowed ACEs), as
    MSWINDOWS.rawsd carries it."""
    body = b"".join(bytes([0, flags]) + (8 + len(sid)).to_bytes(2, "little") + mask.to_bytes(4, "little") + sid
                    for sid, mask, flags in aces)
    acl = bytes([2, 0]) + (8 + len(body)).to_bytes(2, "little") + len(aces).to_bytes(2, "little") + bytes(2) + body
    header = 20
    return (bytes([1, 0]) + (0x8004).to_bytes(2, "little") + header.to_bytes(4, "little")
            + (header + len(owner)).to_bytes(4, "little") + bytes(4)
            + (header + len(owner) + len(SYSTEM)).to_bytes(4, "little") + owner + SYSTEM + acl)


# The few descriptors a base layer's files share (system files, program files, user-writable).
DESCRIPTORS = [_security_descriptor(TRUSTED_INSTALLER, [(TRUSTED_INSTALLER, 0x1F01FF, 0), (SYSTEM, 0x1200A9, 0),
                                                        (ADMINS, 0x1200A9, 0), (USERS, 0x1200A9, 0),
                                                        (ALL_APP_PACKAGES, 0x1200A9, 0)]),
               _security_descriptor(ADMINS, [(SYSTEM, 0x1F01FF, 0x10), (ADMINS, 0x1F01FF, 0x10),
                                             (USERS, 0x1200A9, 0x10)]),
               _security_descriptor(SYSTEM, [(SYSTEM, 0x1F01FF, 0x13), (ADMINS, 0x1F01FF, 0x13),
                                             (USERS, 0x1301BF, 0x13)])]


def _windows_pax(rng: random.Random, directory: bool) -> dict:
    return {"MSWINDOWS.fileattr": "16" if directory else "32",
            "MSWINDOWS.rawsd": base64.b64encode(DESCRIPTORS[rng.randrange(len(DESCRIPTORS))]).decode(),
            "LIBARCHIVE.creationtime": "%d.%07d" % (1_600_000_000 + rng.randrange(10 ** 8), rng.randrange(10 ** 7))}


def make_layer(path: str, files: int, total_mb: int, seed: int = 1) -> None:
    """A plain layer tar at ``path`` (written once, then reused from the cache)."""
    rng = random.Random(seed)
    pool = rng.randbytes(64 << 20) if hasattr(rng, "randbytes") else os.urandom(64 << 20)
    text = (b"MZ\x90\x00 This program cannot be run in DOS mode. " * 64)[:4096]
    dirs = ["Files/Windows/System32/d%02d" % i for i in range(40)] + ["Files/Program Files/App%02d" % i
                                                                      for i in range(20)]
    tmp = path + ".part"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in ["Files", "Files/Windows", "Files/Windows/System32", "Files/Program Files"] + dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            info.pax_headers = _windows_pax(rng, True)
            tar.addfile(info)
        names = []
        for i, size in enumerate(_sizes(files, total_mb << 20, rng)):
            out = bytearray()
            while len(out) < size:  # 32 KiB random, 32 KiB repetitive: distinct, half compressible
                start = rng.randrange(len(pool) - 32768)
                out += pool[start:start + 32768]
                out += text * 8
            info = tarfile.TarInfo("%s/f%05d.dll" % (dirs[i % len(dirs)], i))
            info.size, info.mode, info.mtime = size, 0o644, 1_700_000_000 + i
            info.pax_headers = _windows_pax(rng, False)
            tar.addfile(info, io.BytesIO(bytes(out[:size])))
            names.append(info.name)
        for i in range(files // 40):  # a few hard links, as real layers have
            info = tarfile.TarInfo("%s/link%05d.dll" % (dirs[i % len(dirs)], i))
            info.type, info.linkname, info.mtime = tarfile.LNKTYPE, names[rng.randrange(len(names))], 1_700_000_000
            tar.addfile(info)
    os.replace(tmp, path)


def compress(plain: str, out: str, kind: str) -> None:
    if os.path.exists(out):
        return
    if kind == "gzip":
        try:
            from isal import igzip as gz  # about 10x faster than zlib at level 3, the same output format
            opener, level = gz.open, 3
        except ImportError:
            import gzip
            opener, level = gzip.open, 1
        with open(plain, "rb") as src, opener(out + ".part", "wb", compresslevel=level) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    else:
        subprocess.run(["zstd", "-q", "-3", "-T0", "-f", plain, "-o", out + ".part"], check=True)
    os.replace(out + ".part", out)


def gzip_floors(layer: str):
    """Each gzip reader installed, as a command that decompresses ``layer`` to nowhere."""
    py = sys.executable
    drain = "import shutil,sys; m=__import__(%r, fromlist=['x']); shutil.copyfileobj(m.open(sys.argv[1],'rb')," \
            "open(__import__('os').devnull,'wb'), 1<<20)"
    found, missing = [], []
    for label, module in (("python-isal igzip", "isal.igzip"), ("python-isal igzip_threaded", "isal.igzip_threaded"),
                          ("zlib-ng gzip_ng", "zlib_ng.gzip_ng"), ("zlib-ng gzip_ng_threaded", "zlib_ng.gzip_ng_threaded")):
        if subprocess.run([py, "-c", "import " + module], capture_output=True).returncode == 0:
            found.append((label, [py, "-c", drain % module, layer]))
        else:
            missing.append(label)
    if subprocess.run([py, "-c", "import rapidgzip"], capture_output=True).returncode == 0:
        found.append(("rapidgzip (2 threads)", [py, "-c", "import rapidgzip,shutil,os,sys; shutil.copyfileobj("
                      "rapidgzip.open(sys.argv[1], parallelization=os.cpu_count()), open(os.devnull,'wb'), 1<<20)",
                      layer]))
    else:
        missing.append("rapidgzip")
    for tool in ("pigz", "zcat"):
        if shutil.which(tool):
            found.append((tool, ["sh", "-c", '%s -dc "$0" > /dev/null' % tool if tool == "pigz"
                                 else 'zcat "$0" > /dev/null', layer]))
        else:
            missing.append(tool)
    return found, missing


def cimfs_command(python: str, layer: str, out: str, threads=None, baseline=False):
    args = ["build", "--layer", "-q"] + (["--threads", str(threads)] if threads is not None else []) + [layer, out]
    return inst.cimfs_command(python, args, baseline)


def run(cmd, out_files, env=None, cwd=None, warnings=None):
    """(seconds until exit, until on disk, peak RSS MiB).  A command's standard error goes to a file
    (sqfstar warns once per entry of the PAX records it ignores); ``warnings``: a dict that gets
    the first of its lines and their count, by command."""
    for f in out_files:
        if os.path.isdir(f):
            shutil.rmtree(f)
        elif os.path.exists(f):
            os.remove(f)
    os.sync()
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        err.seek(0)
        lines = err.read().decode("utf-8", "replace").splitlines()
    proc.returncode = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
    if proc.returncode != 0:
        raise SystemExit("%s failed (%s)%s" % (" ".join(cmd), proc.returncode,
                                               "".join("\n  " + line for line in lines[-10:])))
    if lines and warnings is not None:
        warnings[" ".join(cmd)] = (lines[0], len(lines))
    os.sync()  # until the output is on disk: cimfs build fsyncs before it exits, sqfstar leaves it to the kernel
    on_disk = time.perf_counter() - start
    return elapsed, on_disk, usage.ru_maxrss / 1024  # MiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=8000)
    ap.add_argument("--mb", type=int, default=1400, help="total size of the files, MiB")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cases", default="gzip,plain,zstd")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "cimfs-bench-layer"),
                    help="where the generated layers are kept between runs")
    ap.add_argument("--threads", type=int, nargs="*", default=[],
                    help="also time cimfs build with these --threads values")
    ap.add_argument("--baseline-python", help="also time the cimfs build of another installation")
    args = ap.parse_args()
    cases = args.cases.split(",")
    sqfstar = shutil.which("sqfstar")
    if not sqfstar:
        print("sqfstar not found (Debian package squashfs-tools): skipping its rows")
    if "zstd" in cases and not shutil.which("zstd"):
        print("zstd not found: skipping the zstd case")
        cases.remove("zstd")

    os.makedirs(args.cache, exist_ok=True)
    key = hashlib.sha1(("%d-%d-v2" % (args.files, args.mb)).encode()).hexdigest()[:10]
    plain = os.path.join(args.cache, "layer-%s.tar" % key)
    if not os.path.exists(plain):
        print("generating %s (%d files, %d MiB) ..." % (plain, args.files, args.mb), flush=True)
        # In a child process: Linux's peak-RSS figure of a child starts from its parent's at fork.
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, %r); import bench_layer; "
                        "bench_layer.make_layer(%r, %d, %d)" % (os.path.dirname(os.path.abspath(__file__)), plain,
                                                                args.files, args.mb)], check=True)
    layers = {"plain": plain, "gzip": plain + ".gz", "zstd": plain + ".zst"}
    for case in cases:
        compress(plain, layers[case], case)
        print("%-5s layer: %s (%.0f MiB)" % (case, layers[case], os.path.getsize(layers[case]) / 2**20))
    print("(peak RSS figures include this script's own, about %.0f MiB, which a child inherits at fork)"
          % (__import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss / 1024))

    if args.rounds < 1:
        return
    out = tempfile.mkdtemp(prefix="cimfs-bench-layer-out-")
    cim, sqfs = os.path.join(out, "out.cim"), os.path.join(out, "out.sqfs")
    inst.check_baseline(args.baseline_python, out)
    commands = []  # (case, label, cmd, outputs, env)
    for case in cases:
        layer = layers[case]
        commands.append((case, "cimfs build --layer", cimfs_command(sys.executable, layer, cim), [cim],
                         inst.checkout_env()))
        for t in args.threads:
            commands.append((case, "cimfs build --layer --threads %d" % t,
                             cimfs_command(sys.executable, layer, cim, t), [cim], inst.checkout_env()))
        if args.baseline_python:
            commands.append((case, "baseline cimfs build --layer",
                             cimfs_command(args.baseline_python, layer, cim, baseline=True), [cim],
                             inst.installed_env()))
        feed = {"gzip": 'zcat "$0"', "plain": 'cat "$0"', "zstd": 'zstd -dc "$0"'}[case]
        if sqfstar:
            commands.append((case, feed.split()[0] + " | sqfstar" if case != "plain" else "sqfstar < tar",
                             ["bash", "-o", "pipefail", "-c", feed + ' | sqfstar %s "$1"' % " ".join(SQFSTAR_FLAGS),
                              layer, sqfs], [sqfs], None))
        if case == "gzip":
            floors, missing = gzip_floors(layer)
            if missing:
                print("gzip readers not found: %s" % ", ".join(missing))
            for label, cmd in floors:
                commands.append((case, "floor: " + label, cmd, [], None))
        else:
            commands.append((case, "floor: " + feed.split()[0], ["sh", "-c", feed + " > /dev/null", layer], [],
                             None))

    warnings: dict = {}
    for c in list(commands):  # warm the page cache and check every command works
        case, label, cmd, outputs, env = c
        try:
            run(cmd, outputs, env, out, warnings)
        except SystemExit as e:
            if not label.startswith("baseline"):
                raise
            print("%s (%s case): %s; row skipped" % (label, case, e))  # e.g. a baseline without zstandard
            commands.remove(c)
    for cmd, (first, count) in warnings.items():
        print("%s: %d lines on standard error, the first: %s" % (cmd, count, first))
    times = {i: [] for i in range(len(commands))}
    disk = {i: [] for i in range(len(commands))}
    rss = {i: 0.0 for i in range(len(commands))}
    for r in range(args.rounds):
        for i, (_, _, cmd, outputs, env) in enumerate(commands):
            t, d, m = run(cmd, outputs, env, out)
            times[i].append(t)
            disk[i].append(d)
            rss[i] = max(rss[i], m)
        print("round %d/%d done (load %.2f)" % (r + 1, args.rounds, os.getloadavg()[0]), flush=True)
    shutil.rmtree(out)

    print("\n%d rounds, medians; load average now %.2f %.2f %.2f"
          % ((args.rounds,) + os.getloadavg()))
    for case in cases:
        rows = [i for i, c in enumerate(commands) if c[0] == case]
        med = {i: statistics.median(times[i]) for i in rows}
        ours = next(i for i in rows if commands[i][1] == "cimfs build --layer")
        floor_rows = [i for i in rows if commands[i][1].startswith("floor")]
        floor = min(med[i] for i in floor_rows)
        print("\n%s case (%s):" % (case, os.path.basename(layers[case])))
        dmed = {i: statistics.median(disk[i]) for i in rows}
        print("  %-40s %8s %13s %9s %9s %9s %9s %8s" % ("command", "median", "min-max", "ours/this", "this/floor",
                                                       "+sync", "ours/this", "peak RSS"))
        for i in rows:
            print("  %-40s %7.2fs %6.2f-%5.2fs %8.2fx %8.2fx %8.2fs %8.2fx %6.0f MiB"
                  % (commands[i][1], med[i], min(times[i]), max(times[i]), med[ours] / med[i], med[i] / floor,
                     dmed[i], dmed[ours] / dmed[i], rss[i]))


if __name__ == "__main__":
    main()
