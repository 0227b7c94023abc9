"""Every time the format holds prints; sparse files stay sparse through build, export and extract."""
import datetime
import os
import random
import subprocess
import sys
import tarfile

import pytest

from cimfs_cffi import FileMetadata, Image, open_image
from cimfs_cffi import build
from cimfs_cffi.export import export
from cimfs_cffi.extract import extract
from cimfs_cffi.metadata import SPARSE_FILE, format_filetime

CYCLE = 146097 * 86400 * 10**7  # 400 Gregorian years in FILETIME ticks
GIB = 1 << 30


@pytest.mark.parametrize("ticks, text", [(1, "1601-01-01 00:00"), (116444736000000000, "1970-01-01 00:00"),
                                         (2650467743999999999, "9999-12-31 23:59"),
                                         (2650467744000000000, "+10000-01-01 00:00"),
                                         (2**63 - 1, "+30828-09-14 02:48"), (2**64 - 1, "+60056-05-28 05:36")])
def test_every_filetime_prints(ticks, text):
    assert format_filetime(ticks) == text


def test_printing_agrees_with_datetime_and_with_the_400_year_cycle():
    rng = random.Random(7)
    for _ in range(2000):
        t = rng.randrange(1, 2650467744000000000)
        want = (datetime.datetime(1601, 1, 1) + datetime.timedelta(microseconds=t // 10)).strftime("%Y-%m-%d %H:%M")
        assert format_filetime(t) == want
        year, rest = want.split("-", 1)
        later = format_filetime(t + 25 * CYCLE)  # 10,000 years on: the same day and time
        assert later == "+%d-%s" % (int(year) + 10000, rest)


def sparse_image(directory):
    with Image.create(directory, "s.cim") as img:
        img.open_file("big.bin", GIB, FileMetadata(attributes=SPARSE_FILE, last_write_time=2**63 - 1)).close()
        img.add_file("small", b"data")
        img.commit()
    return os.path.join(str(directory), "s.cim")


def test_ls_prints_far_future_times(tmp_path):
    image = sparse_image(tmp_path)
    out = subprocess.run([sys.executable, "-m", "cimfs_cffi", "ls", "-l", image], capture_output=True, text=True,
                         check=True, cwd=str(tmp_path)).stdout  # not the checkout: the installed package
    assert "+30828-09-14 02:48 big.bin" in out


def test_export_writes_a_sparse_member_not_its_zeros(tmp_path):
    export(sparse_image(tmp_path), tmp_path / "s.tar")
    assert os.path.getsize(tmp_path / "s.tar") < 64 * 1024
    with tarfile.open(tmp_path / "s.tar") as tf:
        big = tf.getmember("big.bin")  # GNU sparse 1.0: tarfile restores the name and the real size
        assert big.size == GIB and big.sparse == [(GIB, 0)]


def test_build_export_build_keeps_the_file_sparse(tmp_path):
    export(sparse_image(tmp_path), tmp_path / "s.tar")
    build(tmp_path / "s.tar", tmp_path / "o" / "again.cim")
    with open_image(tmp_path / "o" / "again.cim") as img:
        st = img.stat("big.bin")
        assert st.sparse and st.size == GIB and st.attributes & SPARSE_FILE
        assert img.read_bytes("small") == b"data"


def test_a_gnu_tar_sparse_file_builds_sparse(tmp_path):
    if subprocess.run(["tar", "--version"], capture_output=True).returncode != 0:
        pytest.skip("no tar command")
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "hole", "wb") as f:
        f.truncate(GIB)
    subprocess.run(["tar", "--sparse", "--format=pax", "-cf", str(tmp_path / "g.tar"), "-C", str(src), "hole"],
                   check=True)
    assert os.path.getsize(tmp_path / "g.tar") < 64 * 1024
    build(tmp_path / "g.tar", tmp_path / "o" / "g.cim")
    with open_image(tmp_path / "o" / "g.cim") as img:
        assert img.stat("hole").sparse and img.stat("hole").size == GIB


def test_extract_makes_a_hole(tmp_path):
    extract(sparse_image(tmp_path), tmp_path / "x")
    st = os.stat(tmp_path / "x" / "big.bin")
    assert st.st_size == GIB
    if hasattr(st, "st_blocks"):
        assert st.st_blocks * 512 < (1 << 20)  # a hole, not a gigabyte of zeros
