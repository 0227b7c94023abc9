"""Writer threads (CimfsSetWriterThreads, build(threads=...), --threads): the image is
byte-identical whatever the setting, and each HRESULT path of the setting."""
import io
import os
import random
import tarfile
import time

import pytest

from cimfs_cffi import Image, InvalidArgument, lib
from cimfs_cffi import BuildError, build
from conftest import E_INVALIDARG, S_OK, Writer, u
from test_pe_images import make_pe

HR_SHARING = 0x80070020


def files_of(directory):
    """Every region and objectid file the build wrote, by kind and index (names hold a random GUID)."""
    out = {}
    for n in os.listdir(directory):
        if not n.endswith(".cim"):
            kind, _, index = n.split("_")
            out[kind, index] = open(os.path.join(directory, n), "rb").read()
    return out


def sizes_around_the_helper_threshold(rng):
    return [0, 5, 1024, 1025, (256 << 10) - 1, 256 << 10, (256 << 10) + 1, 3 << 20, rng.randrange(8 << 20)]


def test_set_writer_threads_hresults(tmp_path):
    w = Writer(tmp_path)
    assert u(lib.CimfsSetWriterThreads(w.h, 1)) == S_OK
    assert u(lib.CimfsSetWriterThreads(w.h, 0)) == S_OK
    assert u(lib.CimfsSetWriterThreads(w.h, 8)) == S_OK
    assert w.create("f", size=10) == S_OK
    assert u(lib.CimfsSetWriterThreads(w.h, 1)) == HR_SHARING  # an open stream, as for every image call
    w.close_stream()
    assert w.commit() == S_OK
    assert u(lib.CimfsSetWriterThreads(w.h, 1)) == E_INVALIDARG  # committed
    w.close()
    assert u(lib.CimfsSetWriterThreads(w.h, 1)) == E_INVALIDARG  # closed


def files_at_each_thread_count(tmp_path, blobs, chunk):
    """Writes ``blobs`` as files f0, f1, ... at threads 1, 0 (all cores) and 2, reads each back, and
    returns the region and objectid files; they must be the same at every thread count."""
    out = {}
    for threads in (1, 0, 2):
        d = tmp_path / str(threads)
        d.mkdir()
        w = Writer(d)
        assert u(lib.CimfsSetWriterThreads(w.h, threads)) == S_OK
        for i, blob in enumerate(blobs):
            w.add("f%d" % i, blob, chunk=chunk)
        img = w.finish()
        for i, blob in enumerate(blobs):
            assert img.read(img.lookup("f%d" % i)) == blob
        out[threads] = files_of(d)
    assert out[1] == out[0] == out[2]
    return out[1]


@pytest.mark.parametrize("chunk", [None, 1 << 20, 300 << 10, 4096])
def test_the_api_writes_the_same_bytes_with_and_without_the_helper(tmp_path, chunk):
    rng = random.Random(7)
    blobs = [rng.randbytes(n) if hasattr(rng, "randbytes") else os.urandom(n)
             for n in sizes_around_the_helper_threshold(rng)]
    blobs.append(blobs[-2])  # a duplicate: found by its digest either way
    files_at_each_thread_count(tmp_path, blobs, chunk)


def test_streams_too_large_to_queue_are_the_same_bytes_with_and_without_the_writer(tmp_path):
    """A stream over the 32 MiB queue limit is written as it comes; with a writer thread it goes
    through the writer's buffers (docs/api.md §9.5).  The same bytes whatever the thread count, also
    when a duplicate of it is dropped after its bytes went to the writer (the region rewound)."""
    rng = random.Random(11)
    big = rng.randbytes((33 << 20) + 12345)
    blobs = [big, b"small", big, rng.randbytes(40 << 20), rng.randbytes(5000)]
    files = files_at_each_thread_count(tmp_path, blobs, (3 << 20) + 7)
    # the duplicate was dropped: the regions hold each large stream once
    assert sum(len(v) for (kind, _), v in files.items() if kind == "region") < len(big) + (42 << 20)


def test_image_create_threads_is_validated(tmp_path):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InvalidArgument):
            Image.create(tmp_path, "x.cim", threads=bad)
    with Image.create(tmp_path, "x.cim", threads=1) as img:
        img.add_file("a", b"a" * (1 << 20))
        img.commit()


def layer_tar(path, rng):
    with tarfile.open(path, "w:gz") as tar:
        for i, n in enumerate(sizes_around_the_helper_threshold(rng) * 2):
            t = tarfile.TarInfo("Files/f%02d" % i)
            t.size = n
            tar.addfile(t, io.BytesIO(rng.randbytes(n) if hasattr(rng, "randbytes") else os.urandom(n)))
        # A large PE file: stored laid out for mapping, hashed as stored (zeros between runs).
        pe = make_pe(sections=((0x1000, 0x60000), (0x200, 0x10), (0x50000, 0x30000)), overlay=b"o" * 300_000)
        t = tarfile.TarInfo("Files/app.exe")
        t.size = len(pe)
        tar.addfile(t, io.BytesIO(pe))


@pytest.mark.parametrize("source", ["tree", "tar.gz"])
def test_build_is_byte_identical_whatever_the_thread_count(tmp_path, source):
    rng = random.Random(11)
    if source == "tree":
        src = tmp_path / "src"
        (src / "d").mkdir(parents=True)
        now = time.time()
        for i, n in enumerate(sizes_around_the_helper_threshold(rng)):
            f = src / "d" / ("f%d" % i)
            f.write_bytes(rng.randbytes(n) if hasattr(rng, "randbytes") else os.urandom(n))
            os.utime(f, (now + 100, now - 100))  # atime after mtime and ctime: reading keeps it (relatime)
        for d in (src / "d", src):
            os.utime(d, (now + 100, now - 100))
    else:
        src = tmp_path / "layer.tar.gz"
        layer_tar(str(src), rng)
    out = {}
    for threads in (1, None, 2):
        d = tmp_path / ("out%s" % threads)
        build(str(src), str(d / "x.cim"), threads=threads)
        out[threads] = files_of(d)
    assert out[1] == out[None] == out[2]


def test_build_threads_is_validated(tmp_path):
    (tmp_path / "src").mkdir()
    for bad in (0, -3, 1.0):
        with pytest.raises(BuildError):
            build(str(tmp_path / "src"), str(tmp_path / "x.cim"), threads=bad)
