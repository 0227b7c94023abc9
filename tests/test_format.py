"""The bytes on disk, read back with the independent reader (format spec 3-14)."""
import hashlib
import os
import struct
import subprocess
import sys
import unicodedata

import pytest

from conftest import S_OK, ffi, lib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import gen_upcase  # noqa: E402


def test_headers_version_and_region_layout(writer):
    writer.add("f", b"x")
    img = writer.finish()
    assert (img.major, img.minor, img.file_type, img.header_length) == (2, 0, 0, 72)
    assert len(img.raw_header) == 72
    assert [(r.local_index, r.type) for r in img.regions] == [(0, 0), (1, 1), (2, 2)]
    for r in img.regions:
        assert r.data[:8] == b"cimfile0"
        assert struct.unpack_from("<IBBHII", r.data, 8) == (40, 1, 0, 0, 2, 0)
    assert len(img.regions[1].data) % 4096 == 0
    guid = bytes.fromhex(img.region_sets[-1][0].replace("-", "")[:16])  # version 4 GUID
    assert img.raw_header[0x27] >> 4 == 4 and guid


def test_objectid_files_list_every_object_with_sha256_digests(writer):
    writer.add("a", os.urandom(5000))
    writer.add("b", b"small")
    img = writer.finish()  # check() verifies order, bounds and digests
    for i in range(len(img.regions)):
        raw = open(os.path.join(img.dir, "objectid_%s_%d" % (img.region_sets[-1][0], i)), "rb").read()
        table, count = struct.unpack_from("<II", raw, 40)
        assert table == 48 and len(raw) == 48 + 40 * count and count >= 1


def test_empty_directory_and_empty_file_encoding(writer):
    writer.mkdir("empty")
    writer.add("nothing", b"")
    img = writer.finish()
    d = img.record(img.lookup("empty"))
    assert d.stream_length == 8 and img.obj(d.stream_offset, 8) == struct.pack("<II", 8, 0)
    f = img.record(img.lookup("nothing"))
    assert f.stream_length == 0 and f.stream_offset & 0xFFFFFFFFFFFF != 0


def test_file_ids_are_dense_breadth_first_with_full_tables(writer):
    writer.mkdir("d")
    for i in range(2500):
        writer.add("d\\f%04d" % i, b"")
    img = writer.finish()
    assert img.root_id == 1
    assert [t[1] for t in img.tables] == [1024, 1024, 454]
    assert all(t[2] == 96 for t in img.tables)
    assert all((t[0] & 0xFFFFFFFFFFFF) % 4096 == 0 for t in img.tables)
    assert img.lookup("d") == 2
    ids = [fid for _, fid in img.listdir(img.lookup("d"))]
    assert ids == list(range(3, 2503))  # sorted order = id order


def test_directory_entries_sorted_by_the_images_upcase_table(writer):
    names = ["b", "A", "_", "a1", "\u00e9", "Z", "\uff21", "\U0001F600", "\u1f80", "zz", "Ω"]
    for n in names:
        writer.add(n, b"")
    img = writer.finish()
    listed = [n for n, _ in img.listdir(img.root_id)]
    assert sorted(listed, key=img.key) == listed
    assert set(listed) == set(names)
    # Supplementary characters sort by code point, after every BMP character (format spec 11.3).
    assert listed[-1] == "\U0001F600"


def test_upcase_table_in_the_image_is_the_generated_table(writer):
    img = writer.finish()
    assert list(img.upcase) == gen_upcase.table()
    assert (img.upcase_offset & 0xFFFFFFFFFFFF) % 4096 == 0


def test_upcase_table_is_simple_unicode_uppercase():
    assert ffi.string(lib.CimfsUpcaseUnicodeVersion()).decode() == "14.0.0"
    table = [lib.CimfsTestUpcase(c) for c in range(0x10000)]
    assert table[ord("a")] == ord("A") and table[ord("\u00df")] == 0xDF  # ß has no single uppercase
    assert table[0x1F80] == 0x1F88 and table[0xD800] == 0xD800
    if unicodedata.unidata_version == "14.0.0":
        checked = range(0x10000)
    else:  # another Python: compare the long-stable blocks only
        checked = list(range(0x0000, 0x0530)) + list(range(0x1E00, 0x2000))
    for c in checked:
        if 0xD800 <= c <= 0xDFFF:
            continue
        up = chr(c).upper()
        if len(up) == 1:
            assert table[c] == ord(up), hex(c)
        else:
            assert table[c] in (c, gen_upcase.SIMPLE_ONLY.get(c)), hex(c)


@pytest.mark.parametrize("data", [b"", b"abc", b"a" * 55, b"a" * 56, b"a" * 64, b"x" * 1000, bytes(range(256)) * 40])
def test_sha256_matches_hashlib(data):
    out = ffi.new("uint8_t[32]")
    lib.CimfsTestSha256(data, len(data), out)
    assert bytes(out) == hashlib.sha256(data).digest()


def test_sha256_matches_hashlib_on_random_lengths():
    for n in range(0, 300):
        data = os.urandom(n)
        out = ffi.new("uint8_t[32]")
        lib.CimfsTestSha256(data, len(data), out)
        assert bytes(out) == hashlib.sha256(data).digest()


def test_sha256_portable_path_matches_hashlib_too(tmp_path):
    """CIMFS_SHA256=portable turns the SHA-NI block function off (chosen once per process)."""
    code = ("import hashlib, os; from cimfs_cffi import ffi, lib\n"
            "out = ffi.new('uint8_t[32]')\n"
            "for n in list(range(300)) + [4096, 100000]:\n"
            "    d = os.urandom(n); lib.CimfsTestSha256(d, n, out)\n"
            "    assert bytes(out) == hashlib.sha256(d).digest(), n\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "CIMFS_SHA256": "portable"},
                   cwd=str(tmp_path))  # not the checkout: import the installed package


def test_stream_table_is_u32_prefixed(writer):
    writer.add("f", b"x")
    assert writer.ads("f:s", b"12345") == S_OK
    img = writer.finish()
    rec = img.record(img.lookup("f"))
    n, length, count = struct.unpack("<III", img.obj(rec.stream_table_offset, 12))
    assert n == length and count == 1
