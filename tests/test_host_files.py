"""CimfsAddHostFiles: host files into an image, a batch per call, each exactly as
CimCreateFile + CimWriteStream + CimCloseStream; the first failure stops the batch."""
import os

from conftest import E_INVALIDARG, HR_FILE_NOT_FOUND, HR_HANDLE_EOF, HR_PATH_NOT_FOUND, S_OK, ffi, lib, u

T = 133_000_000_000_000_000


def add_host_files(w, files, units_delta=0):
    """files: (image path, host path, size, attributes); returns (HRESULT, failed index)."""
    paths = "".join(p + "\0" + h + "\0" for p, h, _, _ in files).encode("utf-16-le")
    md = ffi.new("CIMFS_FILE_METADATA[]", max(1, len(files)))
    for i, (_, _, size, attrs) in enumerate(files):
        md[i].Attributes, md[i].FileSize = attrs, size
        md[i].LastWriteTime.QuadPart = T + i
    failed = ffi.new("UINT32 *", 99)
    hr = lib.CimfsAddHostFiles(w.h, ffi.from_buffer("WCHAR[]", paths), len(paths) // 2 + units_delta, len(files),
                               md, failed)
    return u(hr), failed[0]


def host(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_files_arrive_with_data_and_metadata(writer, tmp_path):
    writer.mkdir("d")
    big = os.urandom(3 << 20)  # more than one 1 MiB chunk
    files = [("d\\a", host(tmp_path, "a", b"alpha"), 5, 0x1), ("big", host(tmp_path, "big", big), len(big), 0),
             ("empty", host(tmp_path, "e", b""), 0, 0)]
    assert add_host_files(writer, files) == (S_OK, 0)
    img = writer.finish()
    assert img.read(img.lookup("d\\a")) == b"alpha" and img.read(img.lookup("big")) == big
    assert img.read(img.lookup("empty")) == b""
    rec = img.record(img.lookup("d\\a"))
    assert rec.flags & 1 and rec.times[1] == T


def test_the_first_failure_stops_the_batch_and_leaves_no_half_file(writer, tmp_path):
    files = [("one", host(tmp_path, "1", b"1"), 1, 0), ("two", str(tmp_path / "missing"), 3, 0),
             ("three", host(tmp_path, "3", b"3"), 1, 0)]
    assert add_host_files(writer, files) == (HR_FILE_NOT_FOUND, 1)
    img = writer.finish()
    assert [n for n, _ in img.listdir(img.root_id)] == ["one"]


def test_a_size_that_differs_from_the_host_file_is_handle_eof(writer, tmp_path):
    assert add_host_files(writer, [("f", host(tmp_path, "f", b"12345"), 4, 0)]) == (HR_HANDLE_EOF, 0)
    assert add_host_files(writer, [("g", host(tmp_path, "g", b"12"), 3, 0)]) == (HR_HANDLE_EOF, 0)
    img = writer.finish()
    assert img.listdir(img.root_id) == []


def test_image_errors_are_those_of_cimcreatefile(writer, tmp_path):
    src = host(tmp_path, "x", b"x")
    assert add_host_files(writer, [("ok", src, 1, 0), ("no\\parent", src, 1, 0)]) == (HR_PATH_NOT_FOUND, 1)
    assert add_host_files(writer, [("bad:name", src, 1, 0)]) == (E_INVALIDARG, 0)
    assert add_host_files(writer, [("neg", src, -1, 0)]) == (E_INVALIDARG, 0)


def test_a_directory_is_not_a_host_file(writer, tmp_path):
    assert add_host_files(writer, [("d", str(tmp_path), 0, 0)]) == (HR_FILE_NOT_FOUND, 0)


def test_malformed_buffers_are_rejected_before_anything_is_done(writer, tmp_path):
    src = host(tmp_path, "x", b"x")
    assert add_host_files(writer, [("a", src, 1, 0)], units_delta=-1)[0] == E_INVALIDARG
    failed = ffi.new("UINT32 *")
    assert u(lib.CimfsAddHostFiles(writer.h, ffi.NULL, 0, 1, ffi.NULL, failed)) == E_INVALIDARG
    assert u(lib.CimfsAddHostFiles(writer.h, ffi.NULL, 0, 0, ffi.NULL, ffi.NULL)) == E_INVALIDARG
    assert u(lib.CimfsAddHostFiles(writer.h, ffi.NULL, 0, 0, ffi.NULL, failed)) == S_OK
    img = writer.finish()
    assert img.listdir(img.root_id) == []
