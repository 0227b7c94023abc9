"""The Pythonic API: Image, FileStream, FileMetadata, path handling (issue 3)."""
import datetime
import io
import os
import pathlib
import threading

import pytest

from cimfs_cffi import (FileMetadata, Image, InvalidArgument, PathNotFound, SharingViolation, ea_buffer,
                        mount_point_reparse, symlink_reparse, to_filetime)
from cimreader import Image as Reader


def read_back(image):
    img = Reader(image.path)
    img.check()
    return img


@pytest.fixture
def image(tmp_path):
    with Image.create(tmp_path, "api.cim") as im:
        yield im


def test_create_commit_and_context_manager(tmp_path):
    with Image.create(tmp_path, "a.cim") as im:
        assert repr(im).endswith("open, portable backend>")
        im.add_directory("Files")
        im.add_file("Files/hello.txt", b"hello")
        im.commit()
        assert im.committed
    assert im.closed
    r = read_back(im)
    assert r.read(r.lookup("Files\\hello.txt")) == b"hello"


def test_leaving_the_block_without_commit_discards(tmp_path):
    with Image.create(tmp_path, "a.cim") as im:
        im.add_file("f", b"x" * 9000)
    assert list(tmp_path.iterdir()) == []


def test_exception_in_the_block_discards(tmp_path):
    with pytest.raises(RuntimeError):
        with Image.create(tmp_path, "a.cim") as im:
            im.add_file("f", b"x")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_operations_after_commit_or_close_raise(tmp_path):
    im = Image.create(tmp_path, "a.cim")
    im.commit()
    with pytest.raises(InvalidArgument, match="committed"):
        im.add_file("f", b"x")
    im.close()
    im.close()  # idempotent
    with pytest.raises(InvalidArgument, match="closed"):
        im.create_hard_link("a", "b")


def test_fork_with_parent(tmp_path):
    with Image.create(tmp_path, "base.cim") as base:
        base.add_file("a", b"base")
        base.commit()
    with Image.create(tmp_path, "child.cim", parent=tmp_path / "base.cim") as child:
        child.add_file("b", b"child")
        child.delete("a")
        child.commit()
    r = read_back(child)
    assert set(r.walk()) == {"", "b"}
    with pytest.raises(InvalidArgument, match="same directory"):
        Image.create(tmp_path, "x.cim", parent="/elsewhere/base.cim")


def test_bad_create_arguments(tmp_path):
    with pytest.raises(InvalidArgument, match="backend"):
        Image.create(tmp_path, "a.cim", backend="fast")
    with pytest.raises(InvalidArgument, match="plain file name"):
        Image.create(tmp_path, "sub/a.cim")


def test_both_separators_are_accepted_and_normalized(image):
    image.add_directory("/a")
    image.add_directory("a\\b")
    image.add_file(pathlib.PurePosixPath("a/b/c"), b"1")
    image.add_file(pathlib.PureWindowsPath("a\\b\\d"), b"2")
    image.commit()
    assert {"a", "a\\b", "a\\b\\c", "a\\b\\d"} <= set(read_back(image).walk())


@pytest.mark.parametrize("path,reason", [
    ("", "root"), ("a//b", "empty component"), ("a/", "ends with a separator"), (".", "'.' component"),
    ("a/../b", "'..' component"), ("n" * 256, "longer than 255"), ("a:b", "invalid character ':'"),
    ("a\x01", "invalid character"), ("a?", "invalid character '?'"), ("a\0b", "NUL"),
    ("bad\ud800", "unpaired surrogate"), ("/".join(["d" * 200] * 170), "longer than 32767"),
])
def test_invalid_paths_are_rejected_before_c_with_the_reason(image, path, reason):
    with pytest.raises(InvalidArgument, match=reason) as e:
        image.add_file(path, b"x")
    assert e.value.path == path


def test_bytes_paths_are_rejected(image):
    with pytest.raises(InvalidArgument, match="bytes"):
        image.add_file(b"f", b"x")


def test_add_file_sources(image, tmp_path):
    src = tmp_path / "source.bin"
    src.write_bytes(os.urandom(3_000_000))
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_500_000_000_000_000_000))
    image.add_file("bytes", b"abc")
    image.add_file("bytearray", bytearray(b"def"))
    image.add_file("memoryview", memoryview(b"ghij")[1:])
    image.add_file("fileobj", io.BytesIO(b"0123456789"))
    partial = io.BytesIO(b"skipTHIS")
    partial.seek(4)
    image.add_file("from-position", partial)
    image.add_file("path", src)
    image.add_file("sized", io.BufferedReader(io.BytesIO(b"xyz")), FileMetadata(size=2))
    image.commit()
    r = read_back(image)
    got = {n: r.read(r.lookup(n)) for n in ("bytes", "bytearray", "memoryview", "fileobj", "from-position", "sized")}
    assert got == {"bytes": b"abc", "bytearray": b"def", "memoryview": b"hij", "fileobj": b"0123456789",
                   "from-position": b"THIS", "sized": b"xy"}
    assert r.read(r.lookup("path")) == src.read_bytes()
    assert r.record(r.lookup("path")).times[1] == to_filetime(1_500_000_000)  # mtime from stat()


def test_non_seekable_source_needs_a_size(image):
    class Pipe(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, b):
            return 0

    with pytest.raises(InvalidArgument, match="size"):
        image.add_file("f", Pipe())


def test_source_that_ends_early_is_an_error_and_the_file_is_removed(image):
    with pytest.raises(InvalidArgument, match="ended after 3 of 10 bytes"):
        image.add_file("short", io.BytesIO(b"abc"), FileMetadata(size=10))
    image.commit()
    assert "short" not in read_back(image).walk()


def test_str_data_is_ambiguous(image):
    with pytest.raises(InvalidArgument, match="ambiguous"):
        image.add_file("f", "some text")


def test_open_file_stream(image):
    with image.open_file("f", 10) as s:
        assert s.write(b"12345") == 5
        assert s.remaining == 5
        s.write(memoryview(b"678"))
    assert s.closed
    with pytest.raises(ValueError, match="closed"):
        s.write(b"x")
    image.commit()
    assert read_back(image).read(read_back(image).lookup("f")) == b"12345678\0\0"


def test_alternate_streams_and_stream_delete(image):
    image.add_file("f", b"main")
    image.add_alternate_stream("f", "Zone.Identifier", b"[ZoneTransfer]")
    image.add_alternate_stream("f", "other:$DATA", b"o")
    image.delete("f", stream="other")
    with pytest.raises(InvalidArgument):
        image.add_alternate_stream("f", "bad\\name", b"")
    with pytest.raises(PathNotFound):
        image.add_alternate_stream("missing", "s", b"")
    image.commit()
    r = read_back(image)
    assert r.streams(r.lookup("f")) == {"Zone.Identifier": b"[ZoneTransfer]"}


def test_alternate_streams_from_file_objects_are_streamed(image):
    image.add_file("f", b"main")
    big = os.urandom(3 << 20)
    image.add_alternate_stream("f", "big", io.BytesIO(big), size=len(big))
    with pytest.raises(InvalidArgument, match="size of a stream read from a file object"):
        image.add_alternate_stream("f", "nosize", io.BytesIO(b"x"))
    with pytest.raises(InvalidArgument, match="the source ended after 2 of 5 bytes; the stream was not added") as e:
        image.add_alternate_stream("f", "short", io.BytesIO(b"ab"), size=5)
    assert e.value.path == "f:short"
    image.commit()
    r = read_back(image)
    assert r.streams(r.lookup("f")) == {"big": big}


def test_metadata_times_attributes_and_buffers(image):
    dt = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc)
    sd = bytes([1, 0, 4, 0x80]) + bytes(16)
    md = FileMetadata(attributes=0x1 | 0x2, creation_time=dt, last_write_time=1_700_000_000.5,
                      change_time=133_000_000_000_000_000, last_access_time=None, security_descriptor=sd,
                      ea=ea_buffer({"user.a": b"1", "B": b"two"}))
    image.add_file("f", b"x", md)
    image.add_file("link", b"", FileMetadata(reparse_data=symlink_reparse("../target")))
    image.add_directory("junction", FileMetadata(reparse_data=mount_point_reparse("C:\\data")))
    image.commit()
    r = read_back(image)
    rec = r.record(r.lookup("f"))
    assert rec.times == (to_filetime(dt), 116444736000000000 + 17_000_000_005_000_000, 133_000_000_000_000_000, 0)
    assert r.node(rec.id).attributes == 0x3
    assert r.node(rec.id).ea == ea_buffer({"user.a": b"1", "B": b"two"})
    link = r.node(r.lookup("link"))
    assert link.attributes & 0x400 and link.reparse[:4] == bytes.fromhex("0c0000a0")
    assert r.record(r.lookup("junction")).reparse_tag == 0xA0000003


def test_directory_attribute_on_a_file_is_rejected(image):
    with pytest.raises(InvalidArgument, match="DIRECTORY"):
        image.add_file("f", b"", FileMetadata(attributes=0x10))


def test_to_filetime_rules():
    assert to_filetime(None) == 0
    assert to_filetime(0) == 116444736000000000
    assert to_filetime(datetime.datetime(1970, 1, 1)) == 116444736000000000  # naive = UTC
    assert to_filetime(2 ** 40) == 2 ** 40  # raw FILETIME
    with pytest.raises(InvalidArgument):
        to_filetime(-20_000_000_000)  # before 1601
    with pytest.raises(InvalidArgument):
        to_filetime("yesterday")


def test_from_stat(tmp_path):
    f = tmp_path / ".hidden"
    f.write_bytes(b"12345")
    f.chmod(0o444)
    md = FileMetadata.from_stat(os.stat(f), name=f.name)
    assert md.size == 5 and md.attributes & 0x1 and md.attributes & 0x2
    d = FileMetadata.from_stat(os.stat(tmp_path))
    assert d.attributes & 0x10 and d.size == 0


def test_open_stream_blocks_other_threads_with_a_clear_error(image):
    stream = image.open_file("f", 5)
    errors = []
    t = threading.Thread(target=lambda: errors.append(pytest.raises(SharingViolation, image.add_directory, "d")))
    t.start()
    t.join()
    assert len(errors) == 1
    stream.close()


def test_one_image_shared_by_threads_stays_consistent(image):
    for t in range(4):
        image.add_directory("t%d" % t)

    def work(t):
        for i in range(200):
            image.add_file("t%d/f%d" % (t, i), b"%d-%d" % (t, i))
            image.create_hard_link("t%d/l%d" % ((t + 1) % 4, i), "t%d/f%d" % (t, i))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    image.commit()
    r = read_back(image)
    for t in range(4):
        for i in (0, 199):
            assert r.read(r.lookup("t%d\\f%d" % (t, i))) == b"%d-%d" % (t, i)
            assert r.lookup("t%d\\l%d" % ((t + 1) % 4, i)) == r.lookup("t%d\\f%d" % (t, i))
