"""The bytes on disk, read back with the independent reader (docs/format.md §3-§14)."""
import hashlib
import os
import struct
import sys

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
        assert struct.unpack_from("<IBBHIIQ", r.data, 8) == (40, 1, 0, 0, 2, 0, 0)
        # Index is 0 in every region file, as Microsoft writes it; Type is the region's type.
        assert struct.unpack_from("<HBBI", r.data, 0x20) == (0, r.type, 0, 0)
    assert len(img.regions[1].data) % 4096 == 0


def test_image_header_carries_microsofts_reserved_values(writer):
    img = writer.finish()
    h = img.raw_header
    assert h[0x0C:0x10] == bytes([0, 1, 0, 0])  # Type 0 (image); the byte after it is 1
    assert struct.unpack_from("<Q", h, 0x18)[0] == 7
    assert struct.unpack_from("<IHH", h, 0x40) == (7, 0, 0)


def test_objectid_headers_carry_the_region_number(writer):
    writer.add("f", b"x" * 5000)
    img = writer.finish()
    for i, r in enumerate(img.regions):
        raw = open(os.path.join(img.dir, "objectid_%s_%d" % (img.region_sets[-1][0], i)), "rb").read()
        assert struct.unpack_from("<IBBHIIQ", raw, 8) == (48, 2, 0, 0, 2, 0, 0)
        assert struct.unpack_from("<HBBI", raw, 0x20) == (i, r.type, 0, 0)
    guid = bytes.fromhex(img.region_sets[-1][0].replace("-", "")[:16])  # version 4 GUID
    assert img.raw_header[0x27] >> 4 == 4 and guid


def objectid_entries(img, i):
    raw = open(os.path.join(img.dir, "objectid_%s_%d" % (img.region_sets[-1][0], i)), "rb").read()
    table, count = struct.unpack_from("<II", raw, 40)
    assert table == 48 and len(raw) == 48 + 40 * count
    return [struct.unpack_from("<Q24sQ", raw, 48 + 40 * k) for k in range(count)]


def expected_digest(obj):
    """Microsoft's object ID: SHA-512 cut to 24 bytes; 24 bytes or fewer are their own ID."""
    return obj.ljust(24, b"\0") if len(obj) <= 24 else hashlib.sha512(obj).digest()[:24]


def test_objectid_digests_are_sha512_or_the_object_itself(writer):
    writer.add("a", os.urandom(5000))
    writer.add("b", b"small")
    writer.add("c", os.urandom(24))
    writer.add("d", os.urandom(25))
    img = writer.finish()
    seen = 0
    for i, region in enumerate(img.regions):
        entries = objectid_entries(img, i)
        assert entries == sorted(entries, key=lambda e: (e[0], e[1]))  # (length, digest) order
        for length, digest, offset in entries:
            assert digest == expected_digest(region.data[offset:offset + length])
            seen += 1
    assert seen >= 4 + 5  # four files + SDs, tables, upcase, Filesystem object


def test_every_metadata_object_is_indexed(writer):
    writer.add("f", b"x" * 100)
    img = writer.finish()
    indexed = {(offset, length) for length, _, offset in objectid_entries(img, 0)}
    root = img.record(img.root_id)
    fs = img.fs_offset & 0xFFFFFFFFFFFF
    assert (fs, 24) in indexed  # the Filesystem object
    assert (img.upcase_offset & 0xFFFFFFFFFFFF, 131072) in indexed
    assert (img.tables[0][0] & 0xFFFFFFFFFFFF, img.tables[0][1] * 96) in indexed  # the file table
    assert (root.stream_offset & 0xFFFFFFFFFFFF, root.stream_length) in indexed  # the root's link table
    sd = img.record(img.lookup("f")).sd_offset & 0xFFFFFFFFFFFF
    assert (sd, 2 + 20) in indexed  # the SD with its u16 count


def test_empty_directory_and_empty_file_encoding(writer):
    writer.mkdir("empty")
    writer.add("nothing", b"")
    img = writer.finish()
    d = img.record(img.lookup("empty"))
    assert d.stream_length == 8 and img.obj(d.stream_offset, 8) == struct.pack("<II", 8, 0)
    f = img.record(img.lookup("nothing"))
    assert f.stream_length == 0 and f.stream_offset & 0xFFFFFFFFFFFF != 0


def test_file_ids_follow_creation_order_with_full_tables(writer):
    writer.mkdir("d")
    for i in range(2500):
        writer.add("d\\f%04d" % (2499 - i), b"")  # created in reverse name order
    img = writer.finish()
    assert img.root_id == 1
    assert [t[1] for t in img.tables] == [1024, 1024, 454]
    assert all(t[2] == 96 for t in img.tables)
    assert img.lookup("d") == 2
    ids = [fid for _, fid in img.listdir(img.lookup("d"))]
    assert ids == list(range(2502, 2, -1))  # sorted by name; numbered as created


def test_file_ids_stay_dense_after_deletes(writer):
    for name in ("a", "b", "c", "d"):
        writer.add(name, b"")
    assert writer.delete("b") == S_OK
    writer.add("b", b"")
    img = writer.finish()
    assert [img.lookup(n) for n in ("a", "c", "d", "b")] == [2, 3, 4, 5]
    assert img.tables[0][1] == 5


def test_metadata_is_8_aligned_and_only_the_data_region_padded(writer):
    writer.add("f", b"x")
    writer.add("g", b"y" * 5000)
    img = writer.finish()
    offsets = [img.upcase_offset, img.fs_offset] + [t[0] for t in img.tables]
    assert all(o & 7 == 0 for o in offsets)
    assert any(o & 4095 for o in offsets)  # Microsoft page-aligns neither upcase nor file tables
    assert len(img.regions[2].data) == 40 + 1  # the small-data region ends at its last byte
    assert len(img.regions[1].data) == 4096 + 8192  # header page, then the file padded to pages


@pytest.mark.parametrize("size, region", [(1, 2), (1024, 2), (1025, 1), (4096, 1)])
def test_small_data_region_holds_streams_up_to_1024_bytes(writer, size, region):
    writer.add("f", os.urandom(size))
    img = writer.finish()
    offset = img.record(img.lookup("f")).stream_offset
    assert offset >> 48 == region
    assert offset & (4095 if region == 1 else 7) == 0


def test_directory_entries_sorted_by_the_images_upcase_table(writer):
    names = ["b", "A", "_", "a1", "\u00e9", "Z", "\uff21", "\U0001F600", "\u1f80", "zz", "Ω"]
    for n in names:
        writer.add(n, b"")
    img = writer.finish()
    listed = [n for n, _ in img.listdir(img.root_id)]
    assert sorted(listed, key=img.key) == listed
    assert set(listed) == set(names)
    # Supplementary characters sort by code point, after every BMP character (docs/format.md §11.3).
    assert listed[-1] == "\U0001F600"


def test_upcase_table_in_the_image_is_the_generated_table(writer):
    img = writer.finish()
    assert list(img.upcase) == gen_upcase.table()


def test_upcase_table_is_windows_one_to_one_case_pairs_of_unicode_5_1():
    """Windows' $UpCase table (tests/test_upcase.py compares it with Microsoft-made images)."""
    assert "Unicode 5.1.0" in ffi.string(lib.CimfsUpcaseDescription()).decode()
    table = [lib.CimfsTestUpcase(c) for c in range(0x10000)]
    assert table[ord("a")] == ord("A") and table[ord("\u00df")] == 0xDF  # ß has no single uppercase
    assert table[0x1F80] == 0x1F88 and table[0xD800] == 0xD800
    assert table[0x0131] == 0x0131 and table[0x03C2] == 0x03C2 and table[0x00B5] == 0x00B5  # ı ς µ
    assert table[0x10D0] == 0x10D0 and table[0x2D00] == 0x10A0  # no Mtavruli (Unicode 11); Nuskhuri (4.1)
    for c in list(range(0x0000, 0x0530)) + list(range(0x1E00, 0x2000)):
        if table[c] != c:  # every mapping is a case pair: the uppercase lowercases back
            assert chr(table[c]).lower() == chr(c), hex(c)


@pytest.mark.parametrize("data", [b"", b"abc", b"a" * 111, b"a" * 112, b"a" * 128, b"x" * 1000,
                                  bytes(range(256)) * 40])
def test_sha512_matches_hashlib(data):
    out = ffi.new("uint8_t[64]")
    lib.CimfsTestSha512(data, len(data), out)
    assert bytes(out) == hashlib.sha512(data).digest()


def test_object_id_matches_hashlib_on_every_short_length():
    out = ffi.new("uint8_t[24]")
    for n in list(range(0, 300)) + [4096, 100000]:
        data = os.urandom(n)
        lib.CimfsTestObjectId(data, len(data), out)
        assert bytes(out) == expected_digest(data), n


def test_stream_table_is_u32_prefixed(writer):
    writer.add("f", b"x")
    assert writer.ads("f:s", b"12345") == S_OK
    img = writer.finish()
    rec = img.record(img.lookup("f"))
    n, length, count = struct.unpack("<III", img.obj(rec.stream_table_offset, 12))
    assert n == length and count == 1
