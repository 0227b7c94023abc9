"""Bad input never crashes the C core: every entry point answers E_INVALIDARG
(or the documented code) for NULLs, stale or foreign handles, invalid UTF-16,
over-long names and paths, and NTFS-invalid characters."""
import threading

import pytest

from conftest import DIR, E_INVALIDARG, HR_SHARING_VIOLATION, S_OK, Writer, ffi, lib, metadata, u


def raw_units(codes):
    arr = ffi.new("uint16_t[]", list(codes) + [0])
    return ffi.cast("PCWSTR", arr), arr


@pytest.mark.parametrize("codes", [
    [0xD800], [0x61, 0xDC00], [0xD800, 0x61], [0xDBFF, 0xDBFF, 0xDC00], [0x61, 0xD83D],
])
def test_unpaired_surrogates_are_invalidarg(writer, codes):
    p, _keep = raw_units(codes)
    md, _ = metadata()
    s = ffi.new("CIMFS_STREAM_HANDLE *")
    assert u(lib.CimCreateFile(writer.h, p, md, s)) == E_INVALIDARG
    writer.add("t", b"x")
    assert u(lib.CimCreateHardLink(writer.h, p, "t")) == E_INVALIDARG
    assert u(lib.CimDeletePath(writer.h, p)) == E_INVALIDARG


def test_valid_surrogate_pair_is_accepted(writer):
    p, _keep = raw_units([0xD83D, 0xDE00])
    md, _ = metadata()
    s = ffi.new("CIMFS_STREAM_HANDLE *")
    assert u(lib.CimCreateFile(writer.h, p, md, s)) == S_OK
    lib.CimCloseStream(s[0])
    img = writer.finish()
    assert "\U0001F600" in img.walk()


@pytest.mark.parametrize("ch", list('<>:"|?*') + [chr(c) for c in range(1, 32)])
def test_ntfs_invalid_characters_are_invalidarg(writer, ch):
    assert writer.create("a" + ch + "b") == E_INVALIDARG


def test_name_over_255_units_is_invalidarg(writer):
    assert writer.create("n" * 256) == E_INVALIDARG
    assert writer.create("n" * 255) == S_OK


def test_path_over_32767_units_is_invalidarg(writer):
    comps = []
    path = ""
    while len(path) < 32767:
        comps.append("d" * 200)
        path = "\\".join(comps)
    # Every prefix that fits is a valid directory chain.
    built = []
    for c in comps:
        built.append(c)
        p = "\\".join(built)
        if len(p) > 32767:
            assert writer.create(p, DIR) == E_INVALIDARG
            break
        assert writer.create(p, DIR) == S_OK
        writer.close_stream()
    unterminated = ffi.new("uint16_t[]", [0x61] * 40000 + [0])
    assert writer.create(ffi.cast("PCWSTR", unterminated)) == E_INVALIDARG


def test_embedded_nul_ends_the_string_at_the_c_level(writer):
    """A PCWSTR cannot hold NUL: C sees the units before it, as on Windows.
    (The Python API rejects str paths containing NUL before they reach C.)"""
    assert writer.create("name\0ignored") == S_OK
    writer.close_stream()
    img = writer.finish()
    assert set(img.walk()) == {"", "name"}


HANDLE_CALLS = {
    "CimCommitImage": lambda h, s: lib.CimCommitImage(h),
    "CimCreateFile": lambda h, s: lib.CimCreateFile(h, "f", metadata()[0], ffi.new("CIMFS_STREAM_HANDLE *")),
    "CimCreateAlternateStream": lambda h, s: lib.CimCreateAlternateStream(h, "f:s", 1, ffi.new("CIMFS_STREAM_HANDLE *")),
    "CimCreateHardLink": lambda h, s: lib.CimCreateHardLink(h, "a", "b"),
    "CimDeletePath": lambda h, s: lib.CimDeletePath(h, "a"),
    "CimWriteStream": lambda h, s: lib.CimWriteStream(s, b"x", 1),
}


@pytest.mark.parametrize("call", sorted(HANDLE_CALLS))
@pytest.mark.parametrize("kind", ["null", "closed", "foreign", "swapped", "garbage"])
def test_bad_handles_are_invalidarg(workdir, call, kind):
    w = Writer(workdir)
    assert w.create("open", size=1) == S_OK
    stream = w.stream
    if kind == "null":
        h, s = ffi.NULL, ffi.NULL
    elif kind == "closed":
        w.close()
        h = ffi.cast("CIMFS_IMAGE_HANDLE", w.h)
        s = stream
    elif kind == "foreign":
        h = ffi.cast("CIMFS_IMAGE_HANDLE", 0x7C10000000000001)  # our tag, never issued
        s = ffi.cast("CIMFS_STREAM_HANDLE", 0x7C12000000000005)
    elif kind == "swapped":
        h = ffi.cast("CIMFS_IMAGE_HANDLE", stream)
        s = ffi.cast("CIMFS_STREAM_HANDLE", w.h)
    else:
        h = ffi.cast("CIMFS_IMAGE_HANDLE", 0x12345678)
        s = ffi.cast("CIMFS_STREAM_HANDLE", 0x12345678)
    assert u(HANDLE_CALLS[call](h, s)) == E_INVALIDARG
    lib.CimCloseStream(s)
    lib.CimCloseImage(h)
    w.close()


def test_close_functions_ignore_null_and_repeated_closes(workdir):
    lib.CimCloseImage(ffi.NULL)
    lib.CimCloseStream(ffi.NULL)
    w = Writer(workdir)
    h = w.h
    lib.CimCloseImage(h)
    lib.CimCloseImage(h)


def test_image_closed_with_an_open_stream_lives_until_the_stream_closes(workdir):
    w = Writer(workdir)
    assert w.create("f", size=4) == S_OK
    lib.CimCloseImage(w.h)
    assert u(lib.CimCommitImage(w.h)) == E_INVALIDARG  # the image handle is gone
    assert w.write(b"data") == S_OK  # the stream still works
    w.close_stream()
    assert list(workdir.iterdir()) == []
    second = Writer(workdir)  # and the directory lock was released
    assert second.hr == S_OK
    second.close()


def test_many_threads_on_one_image_serialize(writer):
    """Per-image locking: concurrent calls never corrupt the namespace."""
    writer.mkdir("d")
    for t in range(4):
        writer.mkdir("d\\t%d" % t)
    writer.add("target", b"t")
    errors = []

    def work(t):
        for i in range(300):
            hr = writer.link("d\\t%d\\l%d" % (t, i), "target")
            if hr not in (S_OK,):
                errors.append(hr)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    img = writer.finish()
    assert sum(1 for p in img.walk() if "\\l" in p) == 1200


def test_stream_open_blocks_other_threads_cleanly(writer):
    writer.add("target", b"t")
    assert writer.create("f", size=1) == S_OK
    results = []
    th = threading.Thread(target=lambda: results.append(writer.link("l", "target")))
    th.start()
    th.join()
    assert results == [HR_SHARING_VIOLATION]
