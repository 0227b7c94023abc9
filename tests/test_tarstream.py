"""The tar read-ahead (cimfs_cffi/tarstream.py): every codec and gzip library gives the same
image, damage anywhere gives one clear error, the reader thread never outlives a build, and
memory stays at the block pool."""
import bz2
import gzip
import io
import lzma
import os
import random
import tarfile
import threading

import pytest

from cimfs_cffi import open_image
from cimfs_cffi import tarstream
from cimfs_cffi import BuildError, build


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """64 KiB blocks: members larger than a block, and block boundaries, without big archives."""
    monkeypatch.setattr(tarstream, "BLOCK", 64 << 10)


def layer_bytes(files=40, seed=3):
    """A plain tar of files of many sizes (some larger than a read-ahead block), plus a link."""
    rng = random.Random(seed)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(files):
            size = rng.choice([0, 1, 511, 512, 4097, 70_000, tarstream.BLOCK + 123])
            t = tarfile.TarInfo("Files/d%d/f%03d" % (i % 3, i))
            t.size, t.mtime = size, 1_600_000_000 + i
            tar.addfile(t, io.BytesIO(rng.randbytes(size) if hasattr(rng, "randbytes") else os.urandom(size)))
        t = tarfile.TarInfo("Files/link")
        t.type, t.linkname = tarfile.LNKTYPE, "Files/d0/f000"
        tar.addfile(t)
    return out.getvalue()


def image_files(directory):
    return {name: open(os.path.join(directory, name), "rb").read() for name in sorted(os.listdir(directory))
            if not name.endswith(".cim")}


def contents(cim):
    with open_image(cim) as img:
        return {p: img.read_bytes(p) for p, rec in img.iter_tree() if not rec.is_dir}


CODECS = {"plain": lambda b: b, "gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}
try:
    import zstandard
    CODECS["zstd"] = lambda b: zstandard.ZstdCompressor().compress(b)
except ImportError:
    pass


def test_every_codec_gives_the_same_image(tmp_path):
    plain = layer_bytes()
    regions = None
    for codec, compress in sorted(CODECS.items()):
        src = tmp_path / ("layer.tar." + codec)
        src.write_bytes(compress(plain))
        out = tmp_path / codec
        out.mkdir()
        build(str(src), str(out / "l.cim"), layer=True)
        files = {k: v for k, v in image_files(out).items()}
        mine = sorted(files.values())
        if regions is None:
            regions, first = mine, contents(str(out / "l.cim"))
            assert len(first) == 41 and first["Files\\link"] == first["Files\\d0\\f000"]
        assert mine == regions, codec  # region and objectid files byte-identical whatever the codec


@pytest.mark.parametrize("library", [label for _, label in tarstream.GZIP_MODULES])
def test_each_gzip_library_gives_the_same_image(tmp_path, monkeypatch, library):
    module = dict((label, name) for name, label in tarstream.GZIP_MODULES)[library]
    pytest.importorskip(module)
    plain = layer_bytes(12)
    src = tmp_path / "layer.tar.gz"
    src.write_bytes(gzip.compress(plain[: len(plain) // 2]) + gzip.compress(plain[len(plain) // 2:]))  # 2 members
    (tmp_path / "ref").mkdir()
    (tmp_path / "plain.tar").write_bytes(plain)
    build(str(tmp_path / "plain.tar"), str(tmp_path / "ref" / "l.cim"))
    monkeypatch.setattr(tarstream, "GZIP_MODULES", [(module, library)])
    assert tarstream.gzip_module()[1] == library
    (tmp_path / "out").mkdir()
    build(str(src), str(tmp_path / "out" / "l.cim"))
    assert sorted(image_files(tmp_path / "out").values()) == sorted(image_files(tmp_path / "ref").values())
    # Blocks are filled by the decompressor itself: the gzip object's inner reader, not its readinto
    # (which reads a new bytes object and copies it).
    with open(src, "rb") as raw:
        source, _ = tarstream.decompressed(raw)
        assert isinstance(tarstream._readinto(source).__self__, io.BufferedReader)
        block = bytearray(1 << 20)
        got = tarstream.TarStream(source, block=len(block), threaded=False).read(len(plain))
        assert got == plain


@pytest.mark.parametrize("cut", [0.3, 0.7, 0.95])
@pytest.mark.parametrize("codec", ["plain", "gzip", "xz"])
def test_a_truncated_archive_is_one_clear_error_and_no_thread_is_left(tmp_path, cut, codec):
    data = CODECS[codec](layer_bytes(20))
    src = tmp_path / "cut.tar"
    src.write_bytes(data[: int(len(data) * cut)])
    before = threading.active_count()
    with pytest.raises(BuildError) as e:
        build(str(src), str(tmp_path / "x.cim"), layer=True)
    assert "truncated" in str(e.value) or "damaged" in str(e.value) or "unexpected end" in str(e.value)
    assert threading.active_count() == before
    assert not (tmp_path / "x.cim").exists()


def test_corrupt_gzip_data_is_one_clear_error(tmp_path):
    data = bytearray(gzip.compress(layer_bytes(10)))
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    (tmp_path / "bad.tar.gz").write_bytes(bytes(data))
    with pytest.raises(BuildError):
        build(str(tmp_path / "bad.tar.gz"), str(tmp_path / "x.cim"))


def test_a_writer_failure_stops_the_reader_thread(tmp_path):
    """The build stops in the middle (a name Windows cannot hold): the reader must stop too."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name in ["Files/a", "Files/bad:name"] + ["Files/z%d" % i for i in range(30)]:
            t = tarfile.TarInfo(name)
            t.size = 3 << 20
            tar.addfile(t, io.BytesIO(bytes(t.size)))
    (tmp_path / "l.tar").write_bytes(out.getvalue())
    before = threading.active_count()
    with pytest.raises(Exception):
        build(str(tmp_path / "l.tar"), str(tmp_path / "x.cim"))
    assert threading.active_count() == before


def test_stream_views_reads_and_seeks():
    data = bytes(range(256)) * 1000
    s = tarstream.TarStream(io.BytesIO(data), block=1000, blocks=2)
    try:
        assert s.read(10) == data[:10]
        assert b"".join(bytes(v) for v in s.views(2500)) == data[10:2510]
        assert s.tell() == 2510
        s.seek(2509)  # one byte back, within the current block: what tarfile does
        assert s.read(1) == data[2509:2510]
        s.seek(100_000)
        assert s.read(5) == data[100_000:100_005]
        with pytest.raises(io.UnsupportedOperation):
            s.seek(0)
        with pytest.raises(tarfile.ReadError):
            for _ in s.views(len(data)):
                pass
    finally:
        s.close()


def test_reader_errors_reach_the_building_thread():
    class Broken(io.RawIOBase):
        def readinto(self, b):
            raise OSError("disk on fire")

    s = tarstream.TarStream(Broken(), block=64, blocks=2)
    with pytest.raises(OSError, match="disk on fire"):
        s.read(10)
    s.close()


def test_memory_is_the_block_pool_whatever_the_archive(tmp_path, monkeypatch):
    """A 64 MiB member is streamed through the pool, never held whole."""
    import tracemalloc
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        t = tarfile.TarInfo("Files/big")
        t.size = 64 << 20
        tar.addfile(t, io.BytesIO(os.urandom(1 << 20) * 64))
    (tmp_path / "big.tar").write_bytes(out.getvalue())
    del out
    monkeypatch.setattr(tarstream, "BLOCK", 4 << 20)
    tracemalloc.start()
    try:
        build(str(tmp_path / "big.tar"), str(tmp_path / "big.cim"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < tarstream.BLOCK * (tarstream.BLOCKS + 3), peak


@pytest.mark.parametrize("threads", [None, 1])
def test_a_bad_gzip_check_after_the_last_member_is_an_error_wherever_the_tar_ends(tmp_path, threads):
    """The tar ends exactly on a read-ahead block boundary, so its end marker is read without
    the gzip trailer: the damaged CRC there must still fail the build."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        t = tarfile.TarInfo("Files/a")
        t.size = 5 * tarstream.BLOCK - 512 - 1024  # header + data + end marker = 5 blocks = 32 records
        tar.addfile(t, io.BytesIO(os.urandom(t.size)))
    data = out.getvalue()
    assert len(data) == 5 * tarstream.BLOCK
    packed = bytearray(gzip.compress(data))
    packed[-8] ^= 0xFF  # the CRC32 of the gzip trailer
    (tmp_path / "l.tar.gz").write_bytes(bytes(packed))
    with pytest.raises(BuildError, match="damaged"):
        build(str(tmp_path / "l.tar.gz"), str(tmp_path / "x.cim"), threads=threads)
    assert not (tmp_path / "x.cim").exists()
