"""PE-image streams (docs/format.md §10, §14.2): executables stored laid out for mapping, as
Windows' writer stores them unless CIM_CREATE_DO_NOT_EXPAND_PE_IMAGES is given; anything that
is not a well-formed PE image is stored as plain data; every file reads back as written."""
import struct
import subprocess
import sys
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimfs_cffi import Image, ffi, lib, open_image, verify
from cimfs_cffi import build
from conftest import S_OK, Writer, examples, u
from samples import PINBALL, PINBALL_MSIX, need_samples

PAGE = 4096


def make_pe(sections=((0x1000, 0x2345), (0x200, 0x10), (0x5000, 0x3000)), overlay=b"", *, file_align=0x200,
            section_align=0x1000, magic=0x20B, lfanew=0x80, size_of_image=None, raw=None):
    """A small PE file: headers, then each section's raw data (SizeOfRawData rounded to the file
    alignment, filled with a pattern), then `overlay`.  `sections` holds (virtual size, raw size)."""
    optsz = 0xF0 if magic == 0x20B else 0xE0
    table = lfanew + 24 + optsz
    headers = (table + 40 * len(sections) + file_align - 1) // file_align * file_align
    out = bytearray(headers)
    out[0:2] = b"MZ"
    struct.pack_into("<I", out, 0x3C, lfanew)
    out[lfanew:lfanew + 4] = b"PE\0\0"
    struct.pack_into("<HHIIIHH", out, lfanew + 4, 0x8664, len(sections), 0, 0, 0, optsz, 0x22)
    opt = lfanew + 24
    struct.pack_into("<H", out, opt, magic)
    struct.pack_into("<II", out, opt + 32, section_align, file_align)
    va = section_align
    for i, (vsize, rsize) in enumerate(sections):
        rsize = (rsize + file_align - 1) // file_align * file_align
        ptr = len(out) if raw is None else raw[i][0]
        if raw is not None:
            rsize = raw[i][1]
        struct.pack_into("<8sIIII", out, table + 40 * i, b".s%d" % i, vsize, va, rsize, ptr)
        body = bytes((i * 31 + k) & 0xFF for k in range(rsize))
        if raw is None:
            out += body
        va += (max(vsize, rsize) + section_align - 1) // section_align * section_align
    struct.pack_into("<II", out, opt + 56, size_of_image or va, headers)
    return bytes(out) + overlay


def expected_layout(data):
    """The layout rule, restated: headers at 0, each section's raw data (and any gap after it)
    then the trailing data, each run starting on the next page; mappings where the delta changes."""
    lfanew = struct.unpack_from("<I", data, 0x3C)[0]
    nsec, optsz = struct.unpack_from("<H", data, lfanew + 6)[0], struct.unpack_from("<H", data, lfanew + 20)[0]
    table = lfanew + 24 + optsz
    ranges = sorted((p, s) for s, p in (struct.unpack_from("<II", data, table + 40 * i + 16) for i in range(nsec)) if s)
    starts = [0] + [p for p, _ in ranges]
    last_end = ranges[-1][0] + ranges[-1][1]
    if len(data) > last_end:
        starts.append(last_end)
    stored, mappings, delta = [0], [], 0
    for prev, cur in zip(starts, starts[1:]):
        s = -(-(stored[-1] + cur - prev) // PAGE) * PAGE
        stored.append(s)
        if s - cur != delta:
            mappings.append((cur, s - cur))
            delta = s - cur
    end = stored[-1] + len(data) - starts[-1]
    length = end if len(data) > last_end else -(-end // PAGE) * PAGE
    image = bytearray(length)
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else len(data)
        image[stored[i]:stored[i] + stop - start] = data[start:stop]
    return bytes(image), mappings


def descriptor(img, path):
    rec = img.stat(path)._rec
    assert rec.stream_type == 2, path
    region = img.regions[rec.stream_offset >> 48].data
    at = rec.stream_offset & (2**48 - 1)
    data_offset, data_length, image_length, count, flags = struct.unpack_from("<QQIHH", region, at)
    mappings = [struct.unpack_from("<II", region, at + 24 + 8 * i) for i in range(count)]
    stored = img.regions[data_offset >> 48].data
    start = data_offset & (2**48 - 1)
    return dict(data=bytes(stored[start:start + data_length]), data_offset=data_offset, image_length=image_length,
                flags=flags, mappings=mappings)


def write_and_read(tmp_path, files, **create):
    with Image.create(tmp_path, "pe.cim", **create) as img:
        for name, data in files.items():
            img.add_file(name, data)
        img.commit()
    return open_image(tmp_path / "pe.cim")


def test_a_pe_file_is_stored_laid_out_for_mapping(tmp_path):
    pe = make_pe()
    img = write_and_read(tmp_path, {"app.exe": pe})
    assert img.stat("app.exe").is_pe_image and img.read_bytes("app.exe") == pe
    d = descriptor(img, "app.exe")
    layout, mappings = expected_layout(pe)
    assert d["data"] == layout and d["mappings"] == mappings
    assert d["flags"] == 1 and d["image_length"] == struct.unpack_from("<I", pe, 0x80 + 24 + 56)[0]
    assert d["data_offset"] & (PAGE - 1) == 0 and len(layout) % PAGE == 0  # no trailing data: whole pages
    assert [f for f in verify(img.path) if f.severity == "error"] == []


def test_trailing_data_gets_its_own_run_and_an_exact_length(tmp_path):
    pe = make_pe(overlay=b"signature" * 111)
    img = write_and_read(tmp_path, {"signed.dll": pe})
    d = descriptor(img, "signed.dll")
    layout, mappings = expected_layout(pe)
    assert d["data"] == layout and d["mappings"] == mappings and len(layout) % PAGE != 0
    assert img.read_bytes("signed.dll") == pe


def test_pe32_and_gaps_between_sections(tmp_path):
    pe = make_pe(magic=0x10B, sections=((0x100, 0x200), (0x100, 0x200)), raw=((0x400, 0x200), (0x800, 0x200)))
    pe = pe.ljust(0xA00, b"\x7f")
    img = write_and_read(tmp_path, {"gap.exe": pe})
    assert descriptor(img, "gap.exe")["data"] == expected_layout(pe)[0]
    assert img.read_bytes("gap.exe") == pe


def test_identical_executables_share_one_stored_layout(tmp_path):
    pe = make_pe()
    img = write_and_read(tmp_path, {"a.exe": pe, "b.exe": pe})
    assert descriptor(img, "a.exe")["data_offset"] == descriptor(img, "b.exe")["data_offset"]


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_layout_does_not_depend_on_write_sizes(tmp_path, chunk):
    pe = make_pe(overlay=b"x" * 5000)
    w = Writer(tmp_path, "c.cim")
    w.add("f.exe", pe, chunk=chunk)
    img = w.finish()
    with open_image(img.path) as r:
        assert descriptor(r, "f.exe")["data"] == expected_layout(pe)[0] and r.read_bytes("f.exe") == pe


def test_a_short_write_is_zero_filled_before_the_layout_is_chosen(tmp_path):
    pe = make_pe()
    w = Writer(tmp_path, "s.cim")
    assert w.create("f.exe", size=len(pe)) == S_OK
    assert w.write(pe[:3000]) == S_OK  # the section table is in, the sections are not
    w.close_stream()
    img = w.finish()
    with open_image(img.path) as r:
        assert r.read_bytes("f.exe") == pe[:3000] + bytes(len(pe) - 3000)


def test_do_not_expand_flag_stores_plain_data(tmp_path):
    pe = make_pe()
    img = write_and_read(tmp_path, {"app.exe": pe}, expand_pe=False)
    assert not img.stat("app.exe").is_pe_image and img.read_bytes("app.exe") == pe
    h = ffi.new("CIMFS_IMAGE_HANDLE *")
    assert u(lib.CimCreateImage2(str(tmp_path), lib.CIM_CREATE_DO_NOT_EXPAND_PE_IMAGES, ffi.NULL, "raw.cim", h)) == S_OK
    lib.CimCloseImage(h[0])


def test_alternate_streams_are_never_expanded(writer):
    pe = make_pe()
    writer.add("f", b"x")
    assert writer.ads("f:code", pe) == S_OK
    img = writer.finish()
    with open_image(img.path) as r:
        assert r.streams_of(r.stat("f")._rec)["code"].type == 0
        assert r.read_bytes("f", stream="code") == pe


def test_directory_and_tar_builds_expand_pe_files(tmp_path):
    pe = make_pe(overlay=b"tail")
    src = tmp_path / "src"
    src.mkdir()
    (src / "tool.exe").write_bytes(pe)
    (src / "notes.txt").write_bytes(b"MZ is not enough" * 100)
    build(src, tmp_path / "d" / "dir.cim")
    with tarfile.open(tmp_path / "t.tar", "w") as tf:
        tf.add(src / "tool.exe", "tool.exe")
    build(tmp_path / "t.tar", tmp_path / "d" / "tar.cim")
    for name in ("dir.cim", "tar.cim"):
        with open_image(tmp_path / "d" / name) as img:
            assert img.stat("tool.exe").is_pe_image and img.read_bytes("tool.exe") == pe
    with open_image(tmp_path / "d" / "dir.cim") as img:
        assert not img.stat("notes.txt").is_pe_image


def test_build_no_pe_expansion_option(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tool.exe").write_bytes(make_pe())
    subprocess.run([sys.executable, "-m", "cimfs_cffi", "build", "-q", "--no-pe-expansion", str(src),
                    str(tmp_path / "o" / "x.cim")], check=True, cwd=str(tmp_path))
    with open_image(tmp_path / "o" / "x.cim") as img:
        assert not img.stat("tool.exe").is_pe_image


def bad(pe, at, fmt, value):
    pe = bytearray(pe)
    struct.pack_into(fmt, pe, at, value)
    return bytes(pe)


LFANEW, OPT = 0x80, 0x80 + 24
NOT_QUALIFYING = {
    "not MZ": lambda pe: b"ZM" + pe[2:],
    "text that starts with MZ": lambda pe: b"MZ" + b"dos stub only " * 200,
    "no PE signature": lambda pe: bad(pe, LFANEW, "<I", 0x00004550 + 1),
    "e_lfanew past 64 KiB": lambda pe: bad(pe, 0x3C, "<I", 0x10000),
    "e_lfanew inside the DOS header": lambda pe: bad(pe, 0x3C, "<I", 0x10),
    "no sections": lambda pe: bad(pe, LFANEW + 6, "<H", 0),
    "97 sections": lambda pe: bad(pe, LFANEW + 6, "<H", 97),
    "unknown optional header magic": lambda pe: bad(pe, OPT, "<H", 0x107),
    "file alignment 256": lambda pe: bad(pe, OPT + 36, "<I", 0x100),
    "section alignment below a page": lambda pe: bad(pe, OPT + 32, "<I", 0x800),
    "section alignment not a power of two": lambda pe: bad(pe, OPT + 32, "<I", 0x3000),
    "section past the end of the file": lambda pe: bad(pe, OPT + 0xF0 + 20, "<I", 0x7FFFFF00),
    "absurd raw size": lambda pe: bad(pe, OPT + 0xF0 + 16, "<I", 0xFFFFFFFF),
    "overlapping sections": lambda pe: bad(pe, OPT + 0xF0 + 40 + 20, "<I", 0x400 + 0x10),
    "section inside the headers": lambda pe: bad(pe, OPT + 0xF0 + 20, "<I", 0x100),
    "truncated in the section table": lambda pe: pe[:OPT + 0xF0 + 50] + bytes(2000),
}


@pytest.mark.parametrize("case", sorted(NOT_QUALIFYING))
def test_files_that_are_not_well_formed_pe_images_are_stored_plain(tmp_path, case):
    data = NOT_QUALIFYING[case](make_pe())
    img = write_and_read(tmp_path, {"f.exe": data})
    assert not img.stat("f.exe").is_pe_image, case
    assert img.read_bytes("f.exe") == data


def test_a_pe_file_of_up_to_1024_bytes_stays_small_data(tmp_path):
    pe = make_pe(sections=((0x10, 0x200),), lfanew=0x40)[:1024]
    img = write_and_read(tmp_path, {"tiny.exe": pe})
    assert not img.stat("tiny.exe").is_pe_image and img.read_bytes("tiny.exe") == pe


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), min_size=1, max_size=12),
       st.integers(1025, 40000))
def test_mutated_pe_headers_never_lose_bytes(tmp_path_factory, edits, length):
    """Any corruption of the headers: stored as PE or plain, it reads back as written
    (under the sanitizer build, any out-of-bounds read in the parser aborts the run)."""
    pe = bytearray(make_pe(overlay=bytes(range(256)) * 40)[:length].ljust(length, b"\x01"))
    for at, value in edits:
        pe[at] = value
    pe = bytes(pe)
    out = ffi.new("uint64_t *"), ffi.new("uint32_t *")
    lib.CimfsTestPeLayout(pe, len(pe), out[0], out[1])
    d = tmp_path_factory.mktemp("fuzz")
    img = write_and_read(d, {"f": pe})
    assert img.read_bytes("f") == pe
    if img.stat("f").is_pe_image:
        assert descriptor(img, "f")["data"] == expected_layout(pe)[0]
    img.close()


def test_pe_layout_hook_agrees_with_the_writer():
    out_len, out_maps = ffi.new("uint64_t *"), ffi.new("uint32_t *")
    pe = make_pe(overlay=b"abc")
    assert lib.CimfsTestPeLayout(pe, len(pe), out_len, out_maps) == 1
    layout, mappings = expected_layout(pe)
    assert (out_len[0], out_maps[0]) == (len(layout), len(mappings))
    assert lib.CimfsTestPeLayout(b"MZ" + bytes(100), 102, out_len, out_maps) == 0


@need_samples
def test_microsofts_layout_of_pinball_exe_is_reproduced(tmp_path):
    import zipfile
    exe = zipfile.ZipFile(PINBALL_MSIX).read("pinball.exe")
    with open_image(PINBALL) as theirs:
        want = descriptor(theirs, "msix\\pinball_1.0.2.0_x64__ynj0a7qyfqv8c\\pinball.exe")
    img = write_and_read(tmp_path, {"pinball.exe": exe})
    got = descriptor(img, "pinball.exe")
    assert (got["data"], got["mappings"], got["image_length"], got["flags"]) == \
        (want["data"], want["mappings"], want["image_length"], want["flags"])
