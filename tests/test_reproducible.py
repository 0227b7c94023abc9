"""Reproducible images (--reproducible, CIM_CREATE_IMAGE_CONSISTENT_CIM): the same input gives
byte-identical files, names included, whatever the directory, copy, thread count or access
times; SOURCE_DATE_EPOCH clamps times; images that share content share region files safely."""
import io
import os
import shutil
import subprocess
import sys
import tarfile
import time

import pytest

from cimfs_cffi import BuildError, Image, build, open_image, verify
from cimfs_cffi.metadata import to_filetime


def files(directory):
    """{name: bytes} of every file the build left (names hold the region-set GUID)."""
    return {n: open(os.path.join(directory, n), "rb").read() for n in sorted(os.listdir(directory))}


def make_tree(root):
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "a.txt").write_bytes(b"alpha" * 1000)
    (root / "d" / "e" / "big").write_bytes(os.urandom(3 << 20))
    (root / "d" / "dup").write_bytes(b"alpha" * 1000)
    os.link(root / "d" / "a.txt", root / "d" / "e" / "again")
    os.symlink("a.txt", root / "d" / "s")
    (root / ".hidden").write_bytes(b"")


def test_a_directory_gives_identical_files_across_copies_threads_and_reads(tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    build(str(src), str(tmp_path / "one" / "x.cim"), reproducible=True)
    time.sleep(0.05)
    for dirpath, _, names in os.walk(src):  # reading moves access times; a copy has new ctimes
        for n in names:
            with open(os.path.join(dirpath, n), "rb") as f:
                f.read()
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(src), str(copy)], check=True)
    build(str(copy), str(tmp_path / "two" / "x.cim"), reproducible=True, threads=1)
    build(str(src), str(tmp_path / "three" / "x.cim"), reproducible=True, threads=3)
    one = files(tmp_path / "one")
    assert one == files(tmp_path / "two") == files(tmp_path / "three")
    assert verify(str(tmp_path / "one" / "x.cim")) == []
    # Without the option the GUID is random: the names differ.
    build(str(src), str(tmp_path / "four" / "x.cim"))
    assert set(files(tmp_path / "four")) != set(one)


def layer(path, mtime=1_600_000_000):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in [("Files/a", b"x" * 5000), ("Files/sub/b", os.urandom(1 << 20)), ("Files/c", b"x" * 5000)]:
            t = tarfile.TarInfo(name)
            t.size, t.mtime = len(data), mtime
            tar.addfile(t, io.BytesIO(data))
    return str(path)


def test_a_layer_and_its_fork_are_reproducible(tmp_path):
    base, top = layer(tmp_path / "base.tar.gz"), layer(tmp_path / "top.tar.gz", mtime=1_700_000_000)
    for out in ("one", "two"):
        build(base, str(tmp_path / out / "base.cim"), layer=True, reproducible=True)
        build(top, str(tmp_path / out / "top.cim"), layer=True, parent="base.cim", reproducible=True)
    assert files(tmp_path / "one") == files(tmp_path / "two")
    with open_image(str(tmp_path / "one" / "top.cim")) as img:
        assert len(img.region_sets) == 2


def test_source_date_epoch_clamps_later_times_and_dates_implicit_directories(tmp_path, monkeypatch):
    src = tmp_path / "layer.tar"
    with tarfile.open(src, "w") as tar:  # no entry for Files/: its time must come from somewhere
        t = tarfile.TarInfo("Files/new")
        t.size, t.mtime = 1, 2_000_000_000
        tar.addfile(t, io.BytesIO(b"n"))
        t = tarfile.TarInfo("Files/old")
        t.size, t.mtime = 1, 1_000_000_000
        tar.addfile(t, io.BytesIO(b"o"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1500000000")
    build(str(src), str(tmp_path / "out" / "x.cim"), reproducible=True)
    limit = to_filetime(1_500_000_000)
    with open_image(str(tmp_path / "out" / "x.cim")) as img:
        assert img.stat("Files/new").last_write_time == limit
        assert img.stat("Files/old").last_write_time == to_filetime(1_000_000_000)
        assert img.stat("Files").last_write_time == limit
    for bad in ("yesterday", "-5", "9" * 30):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", bad)
        with pytest.raises(BuildError, match="SOURCE_DATE_EPOCH"):
            build(str(src), str(tmp_path / "bad" / "x.cim"), reproducible=True)


def test_images_with_the_same_content_share_files_and_replacing_one_keeps_the_other(tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    out = tmp_path / "out"
    build(str(src), str(out / "a.cim"), reproducible=True)
    build(str(src), str(out / "b.cim"), reproducible=True)
    assert len([n for n in os.listdir(out) if n.startswith("region_")]) == 3  # one set, named by content
    build(str(src), str(out / "a.cim"), reproducible=True)  # rebuilt: the same GUID again
    (src / "d" / "a.txt").write_bytes(b"changed")
    build(str(src), str(out / "b.cim"), reproducible=True)  # b moves to a new set; a's stays
    for name in ("a.cim", "b.cim"):
        assert verify(str(out / name)) == [], name
    with open_image(str(out / "a.cim")) as img:
        assert img.read_bytes("d/a.txt") == b"alpha" * 1000
    with open_image(str(out / "b.cim")) as img:
        assert img.read_bytes("d/a.txt") == b"changed"


def test_the_writer_api_is_reproducible_too(tmp_path):
    def write(directory):
        with Image.create(directory, "x.cim", reproducible=True) as img:
            img.add_directory("d")
            img.add_file("d/f", b"data" * 100)
            img.create_hard_link("d/g", "d/f")
            img.commit()
        return files(directory)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert write(tmp_path / "a") == write(tmp_path / "b")


def test_the_command_line_option(tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    for out in ("one", "two"):
        done = subprocess.run([sys.executable, "-m", "cimfs_cffi", "build", "-q", "--reproducible", str(src),
                               str(tmp_path / out / "x.cim")], capture_output=True, text=True, cwd=str(tmp_path))
        assert done.returncode == 0, done.stderr
    assert files(tmp_path / "one") == files(tmp_path / "two")
    shutil.rmtree(src)


@pytest.mark.parametrize("failing_rename", range(7))
def test_a_failed_commit_never_removes_files_of_an_image_with_the_same_content(tmp_path, failing_rename):
    """Two consistent images with the same content share region-file names.  The second one's
    commit failing at any rename (its region files or its .cim) must leave the first intact."""
    from cimfs_cffi import CimError, lib

    def write(name):
        with Image.create(tmp_path, name, reproducible=True) as img:
            img.add_file("f", b"q" * 5000)
            img.add_file("g", b"r" * 70000)
            img.commit()

    write("a.cim")
    before = files(tmp_path)
    lib.CimfsTestInjectFault(lib.CIM_FAULT_RENAME, failing_rename, 0x80070070 - (1 << 32), 0)  # DISK_FULL
    try:
        write("b.cim")
        failed = False
    except CimError:
        failed = True
    finally:
        lib.CimfsTestClearFault()
    after = files(tmp_path)
    if failed:
        assert after == before
    else:  # the fault was past this commit's renames: b is there, sharing a's files
        assert set(after) - set(before) == {"b.cim"}
        assert verify(str(tmp_path / "b.cim")) == []
    assert verify(str(tmp_path / "a.cim")) == []
