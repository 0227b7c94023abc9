"""Format versions 1.0, 2.0 and 3.0 (docs/format.md §18): what each writes, read back independently."""
import os
import struct

import pytest

from cimfs_cffi import Image, InvalidArgument, lib, open_image, verify
from cimfs_cffi import build
from conftest import E_INVALIDARG, S_OK, u

SPARSE_FILE = 0x200
HR_NOT_SUPPORTED = 0x80070032


def set_version(writer, major, minor=0):
    return u(lib.CimfsSetFormatVersion(writer.h, major, minor))


@pytest.mark.parametrize("major", [1, 2, 3])
def test_each_version_is_written_in_every_header(writer, major):
    assert set_version(writer, major) == S_OK
    writer.add("f", b"x" * 5000)
    img = writer.finish()
    assert (img.major, img.minor) == (major, 0)
    for r in img.regions:
        assert struct.unpack_from("<II", r.data, 16) == (major, 0)
    for i in range(3):
        raw = open(os.path.join(img.dir, "objectid_%s_%d" % (img.region_sets[-1][0], i)), "rb").read()
        assert struct.unpack_from("<II", raw, 16) == (major, 0)


def test_version_1_writes_88_byte_records_without_parent_ids(writer):
    assert set_version(writer, 1) == S_OK
    writer.mkdir("d")
    writer.add("d\\f", b"data")
    img = writer.finish()
    assert {t[2] for t in img.tables} == {88}
    assert img.record(img.lookup("d\\f")).parent_id == 0  # the field does not exist in 1.0
    assert img.read(img.lookup("d\\f")) == b"data"


def test_version_2_records_carry_the_oldest_parent_directory(writer):
    writer.mkdir("d")
    writer.mkdir("e")
    writer.add("d\\f", b"data")
    writer.link("e\\g", "d\\f")
    writer.add("e\\h", b"")
    writer.link("d\\i", "e\\h")
    img = writer.finish()
    assert {t[2] for t in img.tables} == {96}
    assert img.record(img.lookup("d\\f")).parent_id == img.lookup("d")
    assert img.record(img.lookup("e\\h")).parent_id == img.lookup("d")  # d is older than e
    assert img.record(img.lookup("d")).parent_id == img.root_id
    assert img.record(img.root_id).parent_id == 0


def test_version_1_stores_a_sparse_file_zero_filled(writer):
    assert set_version(writer, 1) == S_OK
    assert writer.create("s", SPARSE_FILE, size=10000) == S_OK
    writer.close_stream()
    img = writer.finish()
    rec = img.record(img.lookup("s"))
    assert rec.flags & 0x10 == 0 and not rec.sparse
    assert img.read(img.lookup("s")) == bytes(10000)


def test_version_2_keeps_a_sparse_file_sparse(writer):
    assert writer.create("s", SPARSE_FILE, size=10000) == S_OK
    writer.close_stream()
    img = writer.finish()
    assert img.record(img.lookup("s")).sparse


def test_version_1_commit_refuses_an_inherited_sparse_stream(tmp_path):
    from conftest import Writer
    w = Writer(tmp_path, "base.cim")
    assert w.create("s", SPARSE_FILE, size=10000) == S_OK
    w.close_stream()
    w.finish()
    child = Writer(tmp_path, "child.cim", existing="base.cim")
    assert set_version(child, 1) == S_OK
    assert child.commit() == HR_NOT_SUPPORTED
    child.close()
    assert not os.path.exists(tmp_path / "child.cim")


@pytest.mark.parametrize("major, minor", [(0, 0), (4, 0), (2, 1), (0xFFFFFFFF, 0)])
def test_other_versions_are_invalid(writer, major, minor):
    assert set_version(writer, major, minor) == E_INVALIDARG


def test_version_cannot_change_once_committed_or_with_a_stream_open(writer):
    assert writer.create("f", size=3) == S_OK
    assert set_version(writer, 1) == 0x80070020  # the open stream, as for every image call
    writer.close_stream()
    assert writer.commit() == S_OK
    assert set_version(writer, 1) == E_INVALIDARG


def test_python_api_and_build_take_a_format_version(tmp_path):
    with Image.create(tmp_path, "a.cim", format_version="1.0") as img:
        img.add_file("f", b"hello")
        img.commit()
    with open_image(tmp_path / "a.cim") as r:
        assert (r.major, r.read_bytes("f")) == (1, b"hello")
    with pytest.raises(InvalidArgument):
        Image.create(tmp_path, "b.cim", format_version="4.0")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x").write_bytes(b"x" * 3000)
    build(tmp_path / "src", tmp_path / "out" / "c.cim", format_version="3.0")
    with open_image(tmp_path / "out" / "c.cim") as r:
        assert (r.major, r.read_bytes("x")) == (3, b"x" * 3000)
    assert [f for f in verify(tmp_path / "out" / "c.cim") if f.severity == "error"] == []


@pytest.mark.parametrize("major", [1, 3])
def test_a_fork_keeps_its_parents_version_unless_told_otherwise(tmp_path, major):
    from conftest import Writer
    base = Writer(tmp_path, "base.cim")
    assert set_version(base, major) == S_OK
    base.add("f", b"x")
    base.finish()
    child = Writer(tmp_path, "child.cim", existing="base.cim")
    child.add("g", b"y")
    assert child.finish().major == major
    other = Writer(tmp_path, "other.cim", existing="base.cim")
    assert set_version(other, 2) == S_OK
    assert other.finish().major == 2
