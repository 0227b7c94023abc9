"""The package reader (cimfs_cffi.reader): API behaviour, laziness, and the format features
our writer never produces (PE-image streams, versions 1 and 3, other GUID case)."""
import io
import os
import shutil
import struct

import pytest

from cimfs_cffi import CorruptImage, PathNotFound, ea_buffer, open_image
from cimfs_cffi import reader as R
from cimreader import as_version_1
from images import BIG, CUSTOM_SD, TEXT, T0, build_rich_image, build_wide_image, patch, record_location


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    return build_rich_image(str(tmp_path_factory.mktemp("rich")))


def test_lookups_ignore_case_and_accept_both_separators(rich):
    with open_image(rich) as img:
        assert img.stat("FILES\\HELLO.TXT").file_id == img.stat("/files/hello.txt").file_id
        assert img.exists("files/SUB/Copy.Bin") and not img.exists("Files/nope") and not img.exists("Files/hello.txt/x")
        assert img.stat("").is_dir and img.stat("/").file_id == img.root_id


def test_listdir_is_in_image_order_and_scandir_gives_info(rich):
    with open_image(rich) as img:
        names = img.listdir("Files")
        assert names == sorted(names, key=str.upper)
        assert "hello.txt" in names and "sub" in names
        info = dict(img.scandir("Files"))
        assert info["big.bin"].size == len(BIG) and info["sub"].is_dir


def test_stat_reports_times_attributes_and_link_counts(rich):
    with open_image(rich) as img:
        st = img.stat("Files/hello.txt")
        assert (st.creation_time, st.last_write_time, st.change_time, st.last_access_time) == \
            (T0 + 4, T0 + 41, T0 + 402, T0 + 4003)
        assert st.attributes == 0x21 and st.nlink == 3 and st.size == len(TEXT)
        assert img.stat("Files/sub/hello.txt").file_id == st.file_id
        assert img.stat("Files/big.bin").nlink == 1
        assert img.stat("Files/sub").attributes == 0x12
        assert img.stat("Files/big.bin").security_descriptor == CUSTOM_SD
        assert st.security_descriptor == R.NULL_DACL_SD
        assert img.stat("Files/link").is_symlink and img.stat("Files/junction").attributes & 0x400
        assert img.stat("Files/ea.txt").ea == ea_buffer({"user.one": b"1", "TWO": b"22" * 10})
        assert st.st_mtime == pytest.approx((T0 + 41 - R.UNIX_EPOCH_FILETIME) / 1e7)


def test_open_is_a_seekable_binary_file(rich):
    with open_image(rich) as img, img.open("Files/big.bin") as f:
        assert f.seekable() and f.readable() and not f.writable()
        assert f.read(10) == BIG[:10] and f.tell() == 10
        f.seek(-5, io.SEEK_END)
        assert f.read() == BIG[-5:] and f.read() == b""
        f.seek(1000)
        assert f.read(300) == BIG[1000:1300]
        f.seek(10 ** 9)
        assert f.read(10) == b""
        with pytest.raises(ValueError):
            f.seek(-1)


def test_streams_open_by_argument_or_colon_syntax(rich):
    with open_image(rich) as img:
        assert img.streams("Files/hello.txt") == {"Zone.Identifier": 26}
        assert img.streams("Files/sub") == {"dirstream": 14}
        assert img.read_bytes("Files/hello.txt", "zone.identifier").startswith(b"[ZoneTransfer]")
        assert img.read_bytes("files/hello.txt:Zone.Identifier:$DATA") == img.read_bytes("Files/hello.txt:zone.identifier")
        assert img.read_bytes("Files/sub:dirstream") == b"on a directory"
        assert img.exists("Files/hello.txt:Zone.Identifier") and not img.exists("Files/hello.txt:nope")
        with pytest.raises(PathNotFound):
            img.open("Files/hello.txt:nope")


def test_sparse_and_empty_files_read_as_zeros_and_nothing(rich):
    with open_image(rich) as img:
        st = img.stat("Files/sparse")
        assert st.sparse and st.size == 1 << 20
        with img.open("Files/sparse") as f:
            f.seek(12345)
            assert f.read(100) == bytes(100)
        assert img.read_bytes("Files/sub/zero") == b""


def test_walk_is_top_down_like_os_walk(rich):
    with open_image(rich) as img:
        walked = list(img.walk())
        assert walked[0][0] == "" and walked[0][1] == ["Files"]
        tops = [d for d, _, _ in walked]
        assert tops.index("Files") < tops.index("Files\\sub")
        files = {os.path.join(d, f) for d, _, fs in walked for f in fs}
        assert "Files\\sub\\copy.bin" in {f.replace("/", "\\") for f in files}


def test_wrong_kind_and_missing_paths_raise_the_builtin_errors(rich):
    with open_image(rich) as img:
        with pytest.raises(IsADirectoryError):
            img.open("Files")
        with pytest.raises(NotADirectoryError):
            img.listdir("Files/hello.txt")
        with pytest.raises(FileNotFoundError):
            img.stat("Files/hello.txt/deeper")
    with pytest.raises(FileNotFoundError):
        open_image(os.path.join(os.path.dirname(rich), "missing.cim"))


def test_opening_reads_no_file_records_and_lookups_touch_log_n_names(tmp_path, monkeypatch):
    path = build_wide_image(str(tmp_path), 20000)
    records, names = [], []
    real_record, real_name = R.Record.__init__, R.LinkTable.name
    monkeypatch.setattr(R.Record, "__init__", lambda self, *a: (records.append(1), real_record(self, *a))[1])
    monkeypatch.setattr(R.LinkTable, "name", lambda self, i: (names.append(i), real_name(self, i))[1])
    with open_image(path) as img:
        assert len(records) == 1                      # the root, to check it is a directory
        assert img.exists("D/F019999") and img.exists("d/f000000") and not img.exists("d/f0200000")
        assert len(names) <= 3 * (2 * 15 + 2)         # binary search: ~log2(20001) names per lookup
        assert len(records) <= 1 + 3 * 3


def test_version_3_images_read_like_version_2(tmp_path):
    path = build_rich_image(str(tmp_path))
    with open_image(path) as img:
        files = [img.path] + [r.path for r in img.regions]
    for f in files:
        with open(f, "r+b") as fh:
            fh.seek(16)
            fh.write(struct.pack("<I", 3))
    with open_image(path) as img:
        assert img.major == 3 and img.read_bytes("Files/hello.txt") == TEXT


def test_version_1_images_read_88_byte_records_without_parent_ids(tmp_path):
    path = build_rich_image(str(tmp_path))
    as_version_1(path)
    with open_image(path) as img:
        assert (img.major, img.minor) == (1, 0) and {t[2] for t in img.tables} == {88}
        assert img.read_bytes("Files/hello.txt") == TEXT and img.read_bytes("Files/sub/copy.bin") == BIG
        assert img.read_bytes("Files/hello.txt:Zone.Identifier").startswith(b"[ZoneTransfer]")
        assert all(rec.parent_id == 0 and rec.base_region_index == 0 for _, rec in img.iter_tree())


def test_version_1_has_no_sparse_flag(tmp_path):
    path = build_rich_image(str(tmp_path))
    as_version_1(path)
    with open_image(path) as img:
        st = img.stat("Files/sparse")
        assert not st.sparse and not st.attributes & R.ATTR_SPARSE


@pytest.mark.parametrize("major", [0, 4])
def test_unknown_versions_are_refused(tmp_path, major):
    path = build_rich_image(str(tmp_path))
    patch(path, 16, struct.pack("<I", major))
    with pytest.raises(CorruptImage, match="unsupported format version %d.0" % major):
        open_image(path)


def test_summary_opens_stream_tables_only_of_files_that_have_one(rich, monkeypatch):
    opened = []
    real = R.CimImage.streams_of
    monkeypatch.setattr(R.CimImage, "streams_of", lambda self, rec: (opened.append(rec.id), real(self, rec))[1])
    with open_image(rich) as img:
        assert img.summary()["streams"] == 2
    assert len(opened) == 2


def test_region_files_are_found_whatever_the_guid_case(tmp_path):
    path = build_rich_image(str(tmp_path))
    for name in os.listdir(tmp_path):
        if name.startswith("region_"):
            os.rename(tmp_path / name, tmp_path / ("region_" + name[7:].upper()))
    with open_image(path) as img:
        assert img.read_bytes("Files/big.bin") == BIG


def _append(path, data, align=8):
    """Append ``data`` to a region file (8-aligned); return its byte offset."""
    with open(path, "r+b") as f:
        end = f.seek(0, io.SEEK_END)
        pad = (-end) % align
        f.write(bytes(pad) + data)
        return end + pad


def test_pe_image_streams_are_remapped_like_microsofts_reader(tmp_path):
    """A PE-image stream (docs/format.md §10): logical bytes [0,0x400) at +0,
    [0x400,0x1000) stored 0xC00 further on; the reader must undo the mapping."""
    path = build_rich_image(str(tmp_path))
    logical = bytes((i * 7) % 251 for i in range(0x1000))
    stored = logical[:0x400] + bytes(0xC00) + logical[0x400:]
    with open_image(path) as img:
        meta = img.regions[0].path
        fid = img.stat("Files/big.bin").file_id
        where, at = record_location(img, fid)
    data_at = _append(meta, stored)
    pe_at = _append(meta, struct.pack("<QQIHH", data_at, len(stored) | 1 << 63, 0x2000, 2, 1)
                    + struct.pack("<II", 0, 0) + struct.pack("<II", 0x400, 0xC00))
    with open(where, "r+b") as f:
        f.seek(at + 0x28)
        f.write(struct.pack("<QQ", pe_at, len(logical) | R.STREAM_PE_IMAGE << 48))
    with open_image(path) as img:
        assert img.stat("Files/big.bin").is_pe_image
        assert img.read_bytes("Files/big.bin") == logical
        with img.open("Files/big.bin") as f:
            f.seek(0x3FE)
            assert f.read(4) == logical[0x3FE:0x402]


def test_a_damaged_image_raises_corrupt_image_error(tmp_path):
    path = build_rich_image(str(tmp_path))
    with open_image(path) as img:
        meta = img.regions[0].path
    with open(meta, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(CorruptImage) as e:
        open_image(path)
    assert isinstance(e.value, R.CorruptImageError) and "run past the end" in str(e.value)
    shutil.rmtree(tmp_path)


def test_ea_chains_parse_back_and_malformed_ones_are_named():
    from cimfs_cffi import InvalidArgument
    from cimfs_cffi.metadata import parse_ea_buffer
    chain = ea_buffer({"user.one": b"1", "TWO": b"22" * 10}, need_ea=True)
    assert parse_ea_buffer(chain) == [(b"user.one", b"1", 0x80), (b"TWO", b"22" * 10, 0x80)]
    for bad, why in [(chain[:5], "runs past the buffer"), (chain[:-3], "do not fit"),
                     (b"\x05" + chain[1:], "overlaps the entry or is unaligned"),
                     (chain[:16] + b"X" + chain[17:], "not NUL-terminated")]:
        with pytest.raises(InvalidArgument, match=why):
            parse_ea_buffer(bad)
