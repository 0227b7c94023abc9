"""cimfs build against mksquashfs, mkfs.erofs and tar on the same tree, in one run.

Generates a tree (default: 30,000 files of 0-16 KiB in 300 directories, about
240 MB, plus 30,000 hard links to them), reads it once so every tool starts
from a warm page cache, then times, round by round in turn (after a sync, so
no tool pays for writing back another's output):

* ``cimfs build TREE out.cim`` (the command, in a fresh process);
* ``mksquashfs TREE out.sqfs -noI -noD -noF -noX -noappend`` (uncompressed);
* ``mkfs.erofs out.erofs TREE`` (uncompressed by default);
* ``tar -cf out.tar -C TREE .``, the I/O floor.

Prints the median of each and its ratio to cimfs build, twice: until the tool
exits, and until its output is on disk (the tool, then ``sync``).  cimfs build
fsyncs its image before it returns (its atomic commit needs that); the other
tools leave their output to the kernel, so the second table compares like
with like.  Targets: cimfs build
faster than both image tools and within 2x of tar.  Installs nothing: a
missing tool (Debian packages squashfs-tools, erofs-utils) is reported and
skipped.

    python benchmarks/bench_build.py [--files N] [--dirs N] [--links N] [--max-size BYTES] [--rounds N]
                                     [--baseline-python OTHER_VENV/bin/python]
"""
import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import installations as inst


def make_tree(root: str, files: int, dirs: int, links: int, max_size: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    total = 0
    paths = []
    block = os.urandom(max_size + 4096)
    for d in range(dirs):
        os.makedirs(os.path.join(root, "d%03d" % d))
    for i in range(files):
        p = os.path.join(root, "d%03d" % (i % dirs), "f%06d" % i)
        size = rng.randint(0, max_size)
        start = rng.randrange(4096)
        with open(p, "wb") as f:
            f.write(block[start:start + size])  # distinct content: no tool gets to deduplicate
        total += size
        paths.append(p)
    for i in range(links):
        target = paths[rng.randrange(len(paths))]
        os.link(target, os.path.join(root, "d%03d" % rng.randrange(dirs), "l%06d" % i))
    return total


def warm(root: str) -> None:
    for d, _, fs in os.walk(root):
        for f in fs:
            with open(os.path.join(d, f), "rb") as fh:
                while fh.read(1 << 20):
                    pass


def tools(tree: str, out: str, baseline_python=None):
    """(name, command, directory it needs, environment) of each tool timed."""
    args = ["build", "-q", tree, os.path.join(out, "cim", "out.cim")]
    yield "cimfs build", inst.cimfs_command(sys.executable, args), os.path.join(out, "cim"), inst.checkout_env()
    if baseline_python:  # another installed version of the package, e.g. before a change
        yield ("cimfs build (baseline)", inst.cimfs_command(baseline_python, args, baseline=True),
               os.path.join(out, "cim"), inst.installed_env())
    yield "mksquashfs", ["mksquashfs", tree, os.path.join(out, "out.sqfs"), "-noI", "-noD", "-noF", "-noX",
                         "-noappend", "-quiet", "-no-progress"], None, None
    yield "mkfs.erofs", ["mkfs.erofs", "--quiet", os.path.join(out, "out.erofs"), tree], None, None
    yield "tar -cf", ["tar", "-cf", os.path.join(out, "out.tar"), "-C", tree, "."], None, None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=30000)
    ap.add_argument("--dirs", type=int, default=300)
    ap.add_argument("--links", type=int, default=30000)
    ap.add_argument("--max-size", type=int, default=16384)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="where to put the tree and outputs (default: a temp dir)")
    ap.add_argument("--baseline-python", default=None, metavar="PYTHON",
                    help="also time `cimfs build` run by this interpreter (a venv holding an earlier version)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-build-", dir=args.workdir)
    try:
        tree, out = os.path.join(work, "tree"), os.path.join(work, "out")
        os.makedirs(tree)
        t = time.perf_counter()
        total = make_tree(tree, args.files, args.dirs, args.links, args.max_size)
        print("tree: %d files (%.0f MB) in %d directories, %d hard links; made in %.1f s"
              % (args.files, total / 1e6, args.dirs, args.links, time.perf_counter() - t))
        warm(tree)
        inst.check_baseline(args.baseline_python, work)
        runnable, missing = [], []
        for name, cmd, mkdir, env in tools(tree, out, args.baseline_python):
            (runnable if shutil.which(cmd[0]) else missing).append((name, cmd, mkdir, env))
        for name, cmd, _, _ in missing:
            print("%s: not installed (%s); skipped" % (name, cmd[0]))
        times = {name: [] for name, _, _, _ in runnable}
        durable = {name: [] for name, _, _, _ in runnable}
        for _ in range(args.rounds):
            for name, cmd, mkdir, env in runnable:
                shutil.rmtree(out, ignore_errors=True)
                os.makedirs(mkdir or out, exist_ok=True)
                os.makedirs(out, exist_ok=True)
                os.sync()  # each tool starts with no other tool's dirty pages still being written back
                time.sleep(1)
                t = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, cwd=work)
                times[name].append(time.perf_counter() - t)
                os.sync()  # cimfs build fsyncs its image before it returns; the others leave that to later
                durable[name].append(time.perf_counter() - t)
        for title, table in (("until the tool exits", times), ("until its output is on disk (tool, then sync)",
                                                                   durable)):
            base = statistics.median(table["cimfs build"])
            print("\n%s\n\n| tool | median of %d (s) | all runs (s) | time vs cimfs build |" % (title, args.rounds))
            print("|---|---|---|---|")
            for name, ts in table.items():
                m = statistics.median(ts)
                print("| %s | %.2f | %s | %.2fx |" % (name, m, " ".join("%.2f" % x for x in ts), m / base))
            if "tar -cf" in table:
                print("\ncimfs build / tar: %.2fx (target <= 2x)" % (base / statistics.median(table["tar -cf"])))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
