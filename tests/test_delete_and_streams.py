"""CimDeletePath and CimCreateAlternateStream (docs/api.md §4.4, §4.6, 7.21)."""
import pytest

from conftest import DIR, E_INVALIDARG, HR_PATH_NOT_FOUND, S_OK, ffi, lib, u


def test_delete_file_directory_tree_and_stream(writer):
    writer.mkdir("d")
    writer.mkdir("d\\e")
    writer.add("d\\e\\f", b"x")
    writer.add("keep", b"k")
    assert writer.ads("keep:s1", b"1") == S_OK
    assert writer.ads("keep:s2", b"2") == S_OK
    assert writer.delete("D") == S_OK
    assert writer.delete("keep:S1") == S_OK
    img = writer.finish()
    assert set(img.walk()) == {"", "keep"}
    assert img.streams(img.lookup("keep")) == {"s2": b"2"}


@pytest.mark.parametrize("path", ["missing", "nodir\\x", "keep:nostream"])
def test_delete_missing_is_path_not_found(writer, path):
    writer.add("keep", b"k")
    assert writer.delete(path) == HR_PATH_NOT_FOUND


@pytest.mark.parametrize("path", ["", "\\", "a\\", "a:b:c", ".."])
def test_delete_root_or_bad_path_is_invalidarg(writer, path):
    assert writer.delete(path) == E_INVALIDARG


def test_delete_null_path_and_bad_handle_are_invalidarg(writer):
    assert u(lib.CimDeletePath(writer.h, ffi.NULL)) == E_INVALIDARG
    assert u(lib.CimDeletePath(ffi.NULL, "x")) == E_INVALIDARG


@pytest.mark.parametrize("suffix", [":zone", ":zone:$DATA", ":zone:$data"])
def test_alternate_stream_syntax(writer, suffix):  # docs/api.md §7.21
    writer.add("f", b"main")
    assert writer.ads("f" + suffix, b"zone data") == S_OK
    img = writer.finish()
    assert img.streams(img.lookup("f")) == {"zone": b"zone data"}
    assert img.read(img.lookup("f")) == b"main"


@pytest.mark.parametrize("path", ["f", "f:", "f::$DATA", "f:s:$INDEX_ALLOCATION", "f:s:x", "f:a\\b", ":s", "f:s*"])
def test_bad_alternate_stream_paths_are_invalidarg(writer, path):
    writer.add("f", b"main")
    assert writer.ads(path, b"x") == E_INVALIDARG


def test_alternate_stream_on_missing_file_is_path_not_found(writer):
    assert writer.ads("nope:s", b"x") == HR_PATH_NOT_FOUND
    assert writer.ads("nodir\\nope:s", b"x") == HR_PATH_NOT_FOUND


def test_alternate_stream_null_arguments_are_invalidarg(writer):
    writer.add("f", b"main")
    s = ffi.new("CIMFS_STREAM_HANDLE *")
    assert u(lib.CimCreateAlternateStream(writer.h, "f:s", 1, ffi.NULL)) == E_INVALIDARG
    assert u(lib.CimCreateAlternateStream(writer.h, ffi.NULL, 1, s)) == E_INVALIDARG
    assert u(lib.CimCreateAlternateStream(ffi.NULL, "f:s", 1, s)) == E_INVALIDARG
    assert u(lib.CimCreateAlternateStream(writer.h, "f:s", 1 << 48, s)) == E_INVALIDARG


def test_alternate_streams_on_directories_replace_by_name_and_zero_fill(writer):
    writer.mkdir("d")
    assert writer.ads("d:meta", b"first") == S_OK
    assert writer.ads("d:META", b"second") == S_OK  # same stream, replaced
    assert writer.ads("d:big", b"ab", size=6000) == S_OK  # short write
    assert writer.ads("d:empty", b"") == S_OK
    img = writer.finish()
    streams = img.streams(img.lookup("d"))
    assert streams == {"META": b"second", "big": b"ab" + bytes(5998), "empty": b""}
    assert img.node(img.lookup("d")).attributes == DIR


def test_alternate_stream_data_is_deduplicated_with_files(writer):
    payload = b"z" * 5000
    writer.add("f", payload)
    writer.add("g", b"g")
    assert writer.ads("g:copy", payload) == S_OK
    img = writer.finish()
    raw = img.raw_header  # noqa: F841 - the stream table is read through the reader below
    rec_g = img.record(img.lookup("g"))
    table = img.counted(rec_g.stream_table_offset, 4)
    stream_offset = int.from_bytes(table[8:16], "little")
    assert stream_offset == img.record(img.lookup("f")).stream_offset
