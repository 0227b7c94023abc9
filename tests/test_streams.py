"""CimWriteStream / CimCloseStream, data placement and deduplication (docs/api.md §4.2, §4.3, 7.13-7.15)."""
import os
import subprocess
import sys
import textwrap

from conftest import (E_INVALIDARG, E_POINTER, HR_HANDLE_EOF, HR_SHARING_VIOLATION, S_OK, SPARSE, Writer, ffi,
                      lib, u)


def test_many_small_writes_read_back(writer):
    data = os.urandom(100_000)
    writer.add("f", data, chunk=4096 - 7)
    img = writer.finish()
    assert img.read(img.lookup("f")) == data


def test_short_writes_read_back_as_zeros(writer):  # docs/api.md §7.13
    assert writer.create("f", size=10_000) == S_OK
    assert writer.write(b"abc") == S_OK
    writer.close_stream()
    img = writer.finish()
    assert img.read(img.lookup("f")) == b"abc" + bytes(9997)


def test_writes_past_file_size_keep_what_fits(writer):  # docs/api.md §7.14
    assert writer.create("f", size=5) == S_OK
    assert writer.write(b"abc") == S_OK
    assert writer.write(b"defgh") == HR_HANDLE_EOF
    assert writer.write(b"x") == HR_HANDLE_EOF
    writer.close_stream()
    img = writer.finish()
    assert img.read(img.lookup("f")) == b"abcde"


def test_zero_length_write_succeeds_even_with_null_buffer(writer):
    assert writer.create("f", size=3) == S_OK
    assert u(lib.CimWriteStream(writer.stream, ffi.NULL, 0)) == S_OK
    assert u(lib.CimWriteStream(writer.stream, ffi.NULL, 3)) == E_POINTER


def test_closed_stale_and_foreign_stream_handles_are_invalidarg(writer):
    assert writer.create("f", size=3) == S_OK
    stale = writer.stream
    writer.close_stream()
    assert u(lib.CimWriteStream(stale, b"x", 1)) == E_INVALIDARG
    lib.CimCloseStream(stale)  # closing again is harmless
    for foreign in (ffi.cast("CIMFS_STREAM_HANDLE", 0x1234), ffi.cast("CIMFS_STREAM_HANDLE", writer.h)):
        assert u(lib.CimWriteStream(foreign, b"x", 1)) == E_INVALIDARG
        lib.CimCloseStream(foreign)
    assert u(lib.CimCommitImage(ffi.cast("CIMFS_IMAGE_HANDLE", stale))) == E_INVALIDARG


def test_one_stream_per_image(workdir):  # docs/api.md §7.15
    w = Writer(workdir)
    w.mkdir("d")
    w.add("target", b"t")
    assert w.create("f", size=10) == S_OK
    s = ffi.new("CIMFS_STREAM_HANDLE *")
    assert w.create("g") == HR_SHARING_VIOLATION
    assert u(lib.CimCreateAlternateStream(w.h, "target:s", 1, s)) == HR_SHARING_VIOLATION
    assert w.link("l", "target") == HR_SHARING_VIOLATION
    assert w.delete("target") == HR_SHARING_VIOLATION
    assert w.commit() == HR_SHARING_VIOLATION
    other_dir = workdir / "other"
    other_dir.mkdir()
    other = Writer(other_dir)  # another image is independent
    other.add("x", b"x")
    other.close()
    w.close_stream()
    assert w.link("l", "target") == S_OK
    img = w.finish()
    assert img.lookup("l") == img.lookup("target")


def test_sparse_file_never_written_is_stored_sparse(writer):
    assert writer.create("s", SPARSE, size=1 << 30) == S_OK
    writer.close_stream()
    writer.add("partial", b"ab", attributes=SPARSE)
    img = writer.finish()
    rec = img.record(img.lookup("s"))
    assert rec.sparse and rec.stream_length == 1 << 30
    assert not img.record(img.lookup("partial")).sparse


def test_data_placement_large_in_data_region_small_in_small_region(writer):
    writer.add("big", b"B" * 5000)
    writer.add("small", b"s" * 100)
    writer.add("empty", b"")
    img = writer.finish()
    big, small, empty = (img.record(img.lookup(n)) for n in ("big", "small", "empty"))
    assert img.regions[big.stream_offset >> 48].type == 1 and (big.stream_offset & 0xFFFF) % 4096 == 0
    assert img.regions[small.stream_offset >> 48].type == 2 and small.stream_offset % 8 == 0
    assert empty.stream_length == 0 and empty.stream_offset != 0


def test_identical_data_is_stored_once(writer):
    payload = os.urandom(20_000)
    for i in range(50):
        writer.add("copy%02d" % i, payload, chunk=3000)
    writer.add("other", os.urandom(20_000))
    img = writer.finish()
    offsets = {img.record(img.lookup("copy%02d" % i)).stream_offset for i in range(50)}
    assert len(offsets) == 1
    data_region = next(r for r in img.regions if r.type == 1)
    assert len(data_region.data) == 4096 + 2 * 20480  # header page + two objects, page-aligned
    assert img.read(img.lookup("copy42")) == payload


def test_dedup_matches_content_written_short_and_zero_filled(writer):
    assert writer.create("a", size=9000) == S_OK
    writer.close_stream()
    writer.add("b", bytes(9000))
    img = writer.finish()
    assert img.record(img.lookup("a")).stream_offset == img.record(img.lookup("b")).stream_offset


def test_file_data_is_streamed_not_held_in_memory(tmp_path):
    """Writing 256 MiB raises peak RSS by far less than the file's size."""
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[2])
        from peak_memory import peak_rss_kib
        from cimfs_cffi import ffi, lib
        h = ffi.new("CIMFS_IMAGE_HANDLE *"); s = ffi.new("CIMFS_STREAM_HANDLE *")
        assert lib.CimCreateImage(sys.argv[1], ffi.NULL, "big.cim", h) == 0
        md = ffi.new("CIMFS_FILE_METADATA *"); md.FileSize = 256 << 20
        assert lib.CimCreateFile(h[0], "big", md, s) == 0
        chunk = bytes(range(256)) * 4096
        before = peak_rss_kib()
        for _ in range(256):
            assert lib.CimWriteStream(s[0], chunk, len(chunk)) == 0
        lib.CimCloseStream(s[0])
        assert lib.CimCommitImage(h[0]) == 0
        lib.CimCloseImage(h[0])
        print(peak_rss_kib() - before)
    """)
    benchmarks = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks")
    grown_kib = int(subprocess.check_output([sys.executable, "-c", script, str(tmp_path), benchmarks], text=True,
                                            cwd=str(tmp_path)))
    assert grown_kib < 64 * 1024, "peak RSS grew by %d KiB while writing 256 MiB" % grown_kib
    assert os.path.getsize(next(tmp_path.glob("region_*_1"))) >= 256 << 20
