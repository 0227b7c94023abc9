"""Builds of different images in one directory run at once; builds of the same image take turns
(the second is refused); a fork survives its parent being rebuilt meanwhile."""
import os
import subprocess
import sys
import time

import pytest

from cimfs_cffi import open_image, verify
from cimfs_cffi import publish
from cimfs_cffi import build

pytestmark = pytest.mark.skipif(publish.fcntl is None, reason="needs flock (POSIX); Windows builds take turns")


def make_tree(root, files, seed, size=20000, prefix="f"):
    root.mkdir()
    for i in range(files):
        (root / ("%s%04d" % (prefix, i))).write_bytes(bytes([seed]) * size + b"%d" % i)
    return root


def cimfs(*args, cwd):
    return subprocess.Popen([sys.executable, "-m", "cimfs_cffi", *args], cwd=str(cwd), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_builds_of_different_images_in_one_directory_run_at_once(tmp_path):
    sources = [make_tree(tmp_path / ("s%d" % k), 300, k) for k in range(4)]
    procs = [cimfs("build", "-q", str(s), "out/img%d.cim" % k, cwd=tmp_path) for k, s in enumerate(sources)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert results == [(0, "")] * 4
    for k in range(4):
        image = tmp_path / "out" / ("img%d.cim" % k)
        assert verify(image) == []
        with open_image(image) as img:
            assert img.read_bytes("f0007") == bytes([k]) * 20000 + b"7"
    assert not [n for n in os.listdir(tmp_path / "out") if n.startswith(".")]  # no staging or lock left


def test_a_build_that_finishes_while_a_cleaner_looks_is_not_taken_for_a_dead_one(tmp_path, monkeypatch):
    """A build's cleaner opens another build's staging lock file; that build finishes (removes its
    folder, then lets go of the lock) before the cleaner locks it.  The lock is then free, but on a
    removed file: the cleaner must not report a build that was killed (CI once saw the warning)."""
    staging = publish.Staging(str(tmp_path), "x.cim", None)
    real_try_lock = publish._try_lock

    def finishing_meanwhile(path, create=True):
        if not path.endswith(publish.STAGING_LOCK):
            return real_try_lock(path, create)
        fd = os.open(path, os.O_RDWR)  # the cleaner has the lock file open ...
        staging.close()  # ... when that build removes its folder and lets go of the lock
        publish.fcntl.flock(fd, publish.fcntl.LOCK_EX | publish.fcntl.LOCK_NB)  # so the lock is free
        return fd

    monkeypatch.setattr(publish, "_try_lock", finishing_meanwhile)
    assert publish.remove_dead_builds(str(tmp_path)) == []
    assert os.listdir(tmp_path) == []


def test_a_second_build_of_the_same_image_is_refused_and_nothing_mixes(tmp_path):
    src = make_tree(tmp_path / "src", 3, 2)
    (tmp_path / "out").mkdir()
    running = publish.Staging(str(tmp_path / "out"), "X.cim", None)  # a build of x.cim at work
    try:
        second = cimfs("build", "-q", str(src), "out/x.cim", cwd=tmp_path)
        assert second.wait(timeout=60) == 1
        assert second.stderr.read().startswith("cimfs: error: another build of x.cim is running in ")
        assert not (tmp_path / "out" / "x.cim").exists()
        build(src, tmp_path / "out" / "y.cim")  # another name goes ahead
    finally:
        running.close()
    build(src, tmp_path / "out" / "x.cim")  # and once the first is done, so does this one
    assert verify(tmp_path / "out" / "x.cim") == []
    assert not [n for n in os.listdir(tmp_path / "out") if n.startswith(".")]


def test_a_fork_survives_its_parent_being_rebuilt_meanwhile(tmp_path):
    base = make_tree(tmp_path / "base", 50, 3)
    build(base, tmp_path / "out" / "p.cim")
    child_src = make_tree(tmp_path / "child", 2500, 4, prefix="g")
    child = cimfs("build", "-q", "--parent", "p.cim", str(child_src), "out/c.cim", cwd=tmp_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(n.startswith(".cimfs-build.") for n in os.listdir(tmp_path / "out")):
        time.sleep(0.005)
    build(make_tree(tmp_path / "base2", 10, 5), tmp_path / "out" / "p.cim")  # replaces p.cim, drops its old regions
    assert child.wait(timeout=120) == 0, child.stderr.read()
    assert verify(tmp_path / "out" / "c.cim") == []
    with open_image(tmp_path / "out" / "c.cim") as img:
        assert img.read_bytes("f0001") == bytes([3]) * 20000 + b"1"  # from the first parent, still readable
        assert img.read_bytes("g0001") == bytes([4]) * 20000 + b"1"
        assert len(img.listdir()) == 50 + 2500


def test_without_flock_builds_take_turns_in_place(tmp_path, monkeypatch):
    monkeypatch.setattr(publish, "fcntl", None)
    src = make_tree(tmp_path / "s", 5, 6)
    build(src, tmp_path / "out" / "x.cim")
    build(src, tmp_path / "out" / "x.cim")  # replaced in place
    assert verify(tmp_path / "out" / "x.cim") == []
    assert len([n for n in os.listdir(tmp_path / "out") if n.startswith("region_")]) == 3


def test_without_hard_links_a_fork_builds_in_place(tmp_path, monkeypatch):
    src = make_tree(tmp_path / "s", 5, 7)
    build(src, tmp_path / "out" / "p.cim")

    def no_links(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(publish.os, "link", no_links)
    build(make_tree(tmp_path / "c", 3, 8, prefix="g"), tmp_path / "out" / "c.cim", parent="p.cim")
    with open_image(tmp_path / "out" / "c.cim") as img:
        assert sorted(img.listdir()) == ["f0000", "f0001", "f0002", "f0003", "f0004", "g0000", "g0001", "g0002"]
