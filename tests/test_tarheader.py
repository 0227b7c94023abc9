"""FastTarInfo.frombuf answers as tarfile.TarInfo.frombuf does: the same fields, or the same
error, for headers tarfile writes in every format and for those headers damaged."""
import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from cimfs_cffi.tarheader import FastTarInfo
from conftest import examples

TYPES = [tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE,
         tarfile.CHRTYPE, tarfile.CONTTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
         tarfile.GNUTYPE_SPARSE, b"V", b"Z"]
NAMES = st.text(min_size=1, max_size=120).filter(lambda s: "\0" not in s)
FORMATS = [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]


def decoded(cls, buf, errors="surrogateescape"):
    try:
        info = cls.frombuf(buf, "utf-8", errors)
    except Exception as e:  # the same class of error, whatever its text
        return type(e)
    fields = {k: getattr(info, k, "<unset>") for k in tarfile.TarInfo.__slots__ if k != "tarfile"}
    fields.update(getattr(info, "__dict__", {}))
    return fields


def headers(draw):
    """The 512-byte blocks tarfile writes for one entry (extended headers included)."""
    info = tarfile.TarInfo(draw(st.one_of(NAMES, NAMES.map(lambda s: s + "/"))))  # "/": a V7 directory
    info.type = draw(st.sampled_from(TYPES))
    info.size = draw(st.sampled_from([0, 1, 511, 8 ** 11 - 1, 8 ** 11, 2 ** 40])) if info.type in (
        tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE) else 0
    info.mode = draw(st.integers(0, 0o7777))
    info.uid = draw(st.sampled_from([0, 1000, 8 ** 7 - 1, 8 ** 7, 2 ** 32]))
    info.mtime = draw(st.sampled_from([0, 1_700_000_000, 8 ** 11 - 1, 8 ** 11, -1]))
    info.linkname = draw(st.text(max_size=120).filter(lambda s: "\0" not in s))
    info.uname = draw(st.text(max_size=20).filter(lambda s: "\0" not in s))
    fmt = draw(st.sampled_from(FORMATS))
    try:
        data = info.tobuf(fmt, "utf-8", "surrogateescape")
    except ValueError:  # what this format cannot hold: tarfile refuses to write it
        return None
    return [data[i:i + 512] for i in range(0, len(data), 512)]


@settings(max_examples=examples(400), deadline=None)
@given(st.data())
def test_fast_headers_decode_as_tarfile_decodes_them(data):
    blocks = headers(data.draw)
    if blocks is None:
        return
    for block in blocks:
        assert decoded(FastTarInfo, block) == decoded(tarfile.TarInfo, block)
    # The same header damaged: a byte changed, or cut short.
    block = bytearray(data.draw(st.sampled_from(blocks)))
    for _ in range(data.draw(st.integers(1, 3))):
        block[data.draw(st.integers(0, 511))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):  # a right checksum again: odd fields that reach the fast path
        block[148:156] = b"%06o\0 " % (256 + sum(block) - sum(block[148:156]))
    block = bytes(block[:data.draw(st.sampled_from([512, 512, 511, 0]))])
    assert decoded(FastTarInfo, block) == decoded(tarfile.TarInfo, block)
    assert decoded(FastTarInfo, block, "strict") == decoded(tarfile.TarInfo, block, "strict")


def test_the_common_header_takes_the_fast_path(monkeypatch):
    """The ordinary header is decoded without tarfile (else the module would be no faster), and the
    others still are decoded by tarfile: a GNU sparse header, the end block."""
    calls = []
    original = tarfile.TarInfo.frombuf.__func__

    def counting(cls, buf, encoding, errors):
        calls.append(buf)
        return original(cls, buf, encoding, errors)

    monkeypatch.setattr(tarfile.TarInfo, "frombuf", classmethod(counting))
    info = tarfile.TarInfo("Files/a.dll")
    info.size = 10
    plain = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    assert FastTarInfo.frombuf(plain, "utf-8", "surrogateescape").name == "Files/a.dll"
    assert calls == []
    sparse = bytearray(plain)
    sparse[156:157] = tarfile.GNUTYPE_SPARSE
    for block in (bytes(sparse), bytes(512)):
        try:
            FastTarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError:
            pass
    assert len(calls) == 2


def test_a_prefix_joins_the_name_except_in_gnu_headers():
    for kind, joined in ((tarfile.REGTYPE, True), (tarfile.GNUTYPE_LONGNAME, False), (tarfile.GNUTYPE_LONGLINK, False)):
        block = bytearray(tarfile.TarInfo("a.dll").tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"))
        block[156:157] = kind
        block[345:350] = b"Files"
        block[148:156] = b"%06o\0 " % (256 + sum(block) - sum(block[148:156]))
        fast = decoded(FastTarInfo, bytes(block))
        assert fast == decoded(tarfile.TarInfo, bytes(block))
        assert fast["name"] == ("Files/a.dll" if joined else "a.dll")
