"""CimfsAddHostFiles: host files into an image, a batch per call, each exactly as
CimCreateFile + CimWriteStream + CimCloseStream; the first failure stops the batch."""
import os
import sys

import pytest

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


# ---- CimfsAddHostTreeFiles: metadata from the host file, hard links by (device, inode) ----------------
from cimfs_cffi.from_directory import batch_buffers  # noqa: E402  (the encoding the directory source sends)

EPOCH = 116444736000000000
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX attribute rules and file types")


def host_links():
    links = ffi.new("CIMFS_HOST_LINKS **")
    assert lib.CimfsHostLinksCreate(links) == S_OK
    return ffi.gc(links[0], lib.CimfsHostLinksFree)


def add_tree_files(w, files, links=None, flags=0, latest=0, image_delta=0, host_delta=0, count_delta=0):
    """files: (image path, host path); returns (HRESULT, failed index, (files, bytes, links))."""
    images, hosts = batch_buffers(files)
    failed, result = ffi.new("UINT32 *", 99), ffi.new("CIMFS_HOST_FILES_RESULT *")
    hr = lib.CimfsAddHostTreeFiles(w.h, host_links() if links is None else links, flags, latest,
                                   ffi.from_buffer("WCHAR[]", images) if images else ffi.NULL,
                                   len(images) // 2 + image_delta, hosts if hosts else ffi.NULL,
                                   len(hosts) + host_delta, len(files) + count_delta, failed, result)
    return u(hr), failed[0], (result.files, result.bytes, result.links)


def ticks(ns):
    return EPOCH + ns // 100  # floor, also before 1970


@POSIX
def test_tree_files_take_their_metadata_from_the_host_file(writer, tmp_path):
    plain, ro, dot = host(tmp_path, "plain", b"p" * 3000), host(tmp_path, "ro", b"r"), host(tmp_path, ".dot", b"")
    os.chmod(ro, 0o444)
    os.utime(plain, ns=(1_500_000_000_123_456_789, 1_600_000_000_987_654_321))
    os.utime(ro, ns=(-1_000_000_000_000_000_050, -2_000_000_000_000_000_050))  # before 1970: floor, not truncation
    writer.mkdir("d")
    files = [("d\\plain", plain), ("ro", ro), (".dot", dot)]
    before = {p: os.lstat(h) for p, h in files}  # reading the files may move their access times
    assert add_tree_files(writer, files) == (S_OK, 0, (3, 3001, 0))
    img = writer.finish()
    for image_path, host_path in files:
        st, info = before[image_path], img.stat(image_path)
        creation = ticks(st.st_mtime_ns) if sys.platform.startswith("linux") else info.creation_time  # Linux keeps no birth time
        assert (info.creation_time, info.last_write_time, info.change_time, info.last_access_time) == \
            (creation, ticks(st.st_mtime_ns), ticks(st.st_mtime_ns), ticks(st.st_atime_ns)), image_path
        assert info.size == st.st_size and img.read_bytes(image_path) == open(host_path, "rb").read()
    assert img.stat("d\\plain").attributes == 0
    assert img.stat("ro").attributes == 0x1 and img.stat(".dot").attributes == 0x2


def test_reproducible_and_latest_time_flags(writer, tmp_path):
    a, b = host(tmp_path, "a", b"a"), host(tmp_path, "b", b"b")
    os.utime(a, ns=(1_700_000_000_000_000_000, 1_000_000_000_000_000_000))
    os.utime(b, ns=(1_000_000_000_000_000_000, 1_700_000_000_000_000_000))
    limit = ticks(1_500_000_000_000_000_000)
    flags = lib.CIMFS_HOST_REPRODUCIBLE | lib.CIMFS_HOST_LATEST_TIME
    assert add_tree_files(writer, [("a", a), ("b", b)], flags=flags, latest=limit)[0] == S_OK
    assert add_tree_files(writer, [("c", a)], flags=lib.CIMFS_HOST_LATEST_TIME, latest=limit)[0] == S_OK
    img = writer.finish()
    times = lambda p: [getattr(img.stat(p), k) for k in ("creation_time", "last_write_time", "change_time",
                                                          "last_access_time")]
    assert times("a") == [ticks(1_000_000_000_000_000_000)] * 4   # all four are the last write time
    assert times("b") == [limit] * 4                              # ... and none after the limit
    assert times("c")[3] == limit and times("c")[1] == ticks(1_000_000_000_000_000_000)


def test_a_host_file_seen_before_becomes_a_hard_link(writer, tmp_path):
    first = host(tmp_path, "first", b"shared")
    os.link(first, tmp_path / "second")
    os.link(first, tmp_path / "third")
    single = host(tmp_path, "single", b"shared")  # same bytes, another file: not a link
    links = host_links()
    assert add_tree_files(writer, [("a", first), ("s", single)], links) == (S_OK, 0, (2, 12, 0))
    assert add_tree_files(writer, [("b", str(tmp_path / "second")), ("c", str(tmp_path / "third"))], links) == \
        (S_OK, 0, (0, 0, 2))                                      # the bookkeeping spans calls
    assert add_tree_files(writer, [("fresh", first)])[2] == (1, 6, 0)  # another build's bookkeeping: a file
    img = writer.finish()
    assert img.stat("a").file_id == img.stat("b").file_id == img.stat("c").file_id != img.stat("s").file_id
    assert img.stat("a").nlink == 3 and img.stat("fresh").file_id != img.stat("a").file_id


def test_tree_file_failures_stop_the_batch(writer, tmp_path):
    one = host(tmp_path, "1", b"1")
    assert add_tree_files(writer, [("one", one), ("two", str(tmp_path / "missing")), ("three", one)]) == \
        (HR_FILE_NOT_FOUND, 1, (1, 1, 0))
    assert add_tree_files(writer, [("d", str(tmp_path))])[:2] == (HR_FILE_NOT_FOUND, 0)  # a directory
    assert add_tree_files(writer, [("no\\parent", one)])[:2] == (HR_PATH_NOT_FOUND, 0)
    assert add_tree_files(writer, [("bad:name", one)])[:2] == (E_INVALIDARG, 0)
    img = writer.finish()
    assert [n for n, _ in img.listdir(img.root_id)] == ["one"]


@POSIX
def test_a_symlink_or_fifo_in_place_of_a_file_is_refused_without_blocking(writer, tmp_path):
    target = host(tmp_path, "target", b"t")
    os.symlink(target, tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")  # opening it for reading would wait for a writer forever
    assert add_tree_files(writer, [("l", str(tmp_path / "link"))])[:2] == (HR_FILE_NOT_FOUND, 0)
    assert add_tree_files(writer, [("f", str(tmp_path / "fifo"))])[:2] == (HR_FILE_NOT_FOUND, 0)


def test_a_host_file_shorter_than_its_size_is_handle_eof(writer):
    # sysfs reports a size of a page for files that hold a few bytes: the read comes up short.
    sysfs = "/sys/kernel/mm/transparent_hugepage/enabled"
    if not os.path.exists(sysfs) or os.stat(sysfs).st_size <= len(open(sysfs, "rb").read()):
        pytest.skip("needs a Linux sysfs file whose size is larger than its contents")
    assert add_tree_files(writer, [("x", sysfs)])[:2] == (HR_HANDLE_EOF, 0)
    img = writer.finish()
    assert img.listdir(img.root_id) == []  # no half-copied file


def test_malformed_tree_file_calls_are_rejected_before_anything_is_done(writer, tmp_path):
    src = host(tmp_path, "x", b"x")
    for delta in ({"image_delta": -1}, {"host_delta": -1}, {"count_delta": 1},
                  {"flags": 0x4}):
        assert add_tree_files(writer, [("a", src)], **delta)[0] == E_INVALIDARG, delta
    failed, result = ffi.new("UINT32 *"), ffi.new("CIMFS_HOST_FILES_RESULT *")
    links = host_links()
    assert u(lib.CimfsAddHostTreeFiles(writer.h, ffi.NULL, 0, 0, ffi.NULL, 0, ffi.NULL, 0, 0, failed, result)) \
        == E_INVALIDARG
    assert u(lib.CimfsAddHostTreeFiles(writer.h, links, 0, 0, ffi.NULL, 0, ffi.NULL, 0, 0, ffi.NULL, result)) \
        == E_INVALIDARG
    assert u(lib.CimfsAddHostTreeFiles(writer.h, links, 0, 0, ffi.NULL, 0, ffi.NULL, 0, 0, failed, ffi.NULL)) \
        == E_INVALIDARG
    assert u(lib.CimfsAddHostTreeFiles(writer.h, links, 0, 0, ffi.NULL, 0, ffi.NULL, 0, 0, failed, result)) == S_OK
    assert u(lib.CimfsAddHostTreeFiles(writer.h, links, 0, 0, ffi.NULL, 0, ffi.NULL, 0, 1, failed, result)) \
        == E_INVALIDARG
    assert u(lib.CimfsHostLinksCreate(ffi.NULL)) == E_INVALIDARG
    img = writer.finish()
    assert img.listdir(img.root_id) == []


def read_batch(files, links=None):
    images, hosts = batch_buffers(files)
    batch = ffi.new("CIMFS_HOST_BATCH **")
    assert lib.CimfsHostBatchRead(host_links() if links is None else links, 0, 0, ffi.from_buffer("WCHAR[]", images),
                                  len(images) // 2, hosts, len(hosts), len(files), batch) == S_OK
    return ffi.gc(batch[0], lib.CimfsHostBatchFree)


def add_batch(writer, batch):
    failed, result = ffi.new("UINT32 *"), ffi.new("CIMFS_HOST_FILES_RESULT *")
    return u(lib.CimfsHostBatchAdd(writer.h, batch, failed, result)), failed[0], (result.files, result.bytes)


@pytest.mark.skipif(sys.platform == "win32", reason="replaces files that are open, which Windows refuses")
def test_large_files_between_the_phases(writer, tmp_path):
    """Files over 1 MiB are copied by the add phase: the first 16 of a batch through the handle the
    read phase kept (a bound on open files while batches wait), the others by opening them again,
    which must find the file that was described."""
    big = [os.urandom(16) * ((1 << 20) // 16 + 1 + i) for i in range(20)]
    files = [("f%02d" % i, host(tmp_path, "f%02d" % i, data)) for i, data in enumerate(big)]
    batch = read_batch(files)
    os.unlink(files[3][1])                  # kept open: still read as described
    host(tmp_path, "f03", b"other")
    assert add_batch(writer, batch) == (S_OK, 0, (20, sum(map(len, big))))
    host(tmp_path, "f03", big[3])
    batch = read_batch([("again\\" + p, h) for p, h in files])
    os.unlink(files[18][1])                 # opened again: a different file now
    host(tmp_path, "f18", b"x" * len(big[18]))
    writer.mkdir("again")
    assert add_batch(writer, batch)[:2] == (HR_HANDLE_EOF, 18)
    img = writer.finish()
    assert all(img.read(img.lookup("f%02d" % i)) == data for i, data in enumerate(big))
    assert len(img.listdir(img.lookup("again"))) == 18  # those before the failure
