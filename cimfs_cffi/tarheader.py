"""Tar headers decoded faster than ``tarfile`` does, with ``tarfile``'s answers.

A layer build decodes one or two 512-byte headers per entry (a Windows layer's
entries each carry a PAX header), and ``tarfile.TarInfo.frombuf`` spends about
twenty Python calls on each: a slice and a call per field, two checksums.
:class:`FastTarInfo` reads the common header (every number octal text, the
unsigned checksum right) with one ``struct`` unpack and one ``sum``, and hands
anything else to ``tarfile`` itself: base-256 numbers, GNU sparse headers, a
signed checksum, a damaged header, the end-of-archive block.  Whenever it
answers, the answer is the one ``tarfile`` would give (a test checks this on
generated and mutated headers), since the numbers go through the very
expression ``tarfile`` uses.

CPython releases with the fix for gh-143933 (2026) read headers through
``TarInfo._fromtarfile``/``_frombuf`` (with a ``dircheck`` argument) and never
call ``frombuf``: there this class is simply not used, and ``tarfile``'s own
decoding, with that fix, applies.  No speed-up there, and the same answers.
"""
import struct
import tarfile

__all__ = ["FastTarInfo"]

# name mode uid gid size mtime chksum type linkname (magic, version) uname gname devmajor devminor prefix
_FIELDS = struct.Struct("100s8s8s8s12s12s8sc100s8x32s32s8s8s155s")
_CHKSUM = slice(148, 156)
_TARFILE_ONLY = (tarfile.GNUTYPE_SPARSE,)  # types whose headers carry more than these fields


def _text(field: bytes, encoding: str, errors: str) -> str:
    end = field.find(b"\0")
    return (field[:end] if end != -1 else field).decode(encoding, errors)


def _octal(field: bytes) -> int:
    """tarfile.nti for octal text; ValueError for anything else (base-256 included)."""
    if field[0] in (0o200, 0o377):
        raise ValueError("base-256")
    return int(_text(field, "ascii", "strict").strip() or "0", 8)


class FastTarInfo(tarfile.TarInfo):
    """``tarfile.TarInfo`` with a fast path for the common header (``tarfile.open(tarinfo=...)``)."""

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        try:
            return cls._common_header(buf, encoding, errors)
        except Exception:  # not the common case: tarfile decides, and raises what it raises
            return super().frombuf(buf, encoding, errors)

    @classmethod
    def _common_header(cls, buf, encoding, errors):
        if len(buf) != tarfile.BLOCKSIZE or buf[156:157] in _TARFILE_ONLY:
            raise ValueError("not a common header")
        (name, mode, uid, gid, size, mtime, chksum, type_, linkname, uname, gname, devmajor, devminor,
         prefix) = _FIELDS.unpack_from(buf)
        checksum = _octal(chksum)
        if checksum != 256 + sum(buf) - sum(buf[_CHKSUM]):  # the unsigned sum, the checksum field as spaces
            raise ValueError("checksum: tarfile also accepts the signed sum, or raises")
        obj = cls()
        obj.name = _text(name, encoding, errors)
        obj.mode = _octal(mode)
        obj.uid = _octal(uid)
        obj.gid = _octal(gid)
        obj.size = _octal(size)
        obj.mtime = _octal(mtime)
        obj.chksum = checksum
        obj.type = type_
        obj.linkname = _text(linkname, encoding, errors)
        obj.uname = _text(uname, encoding, errors)
        obj.gname = _text(gname, encoding, errors)
        obj.devmajor = _octal(devmajor)
        obj.devminor = _octal(devminor)
        prefix_text = _text(prefix, encoding, errors)
        if obj.type == tarfile.AREGTYPE and obj.name.endswith("/"):  # a V7 directory
            obj.type = tarfile.DIRTYPE
        if obj.isdir():
            obj.name = obj.name.rstrip("/")
        if prefix_text and obj.type not in tarfile.GNU_TYPES:  # a ustar long name
            obj.name = prefix_text + "/" + obj.name
        return obj
