"""Image paths at the edge: accept str or os.PathLike, normalize once, validate.

Rules (the same as the C writer's, which checks again):

* ``/`` and ``\\`` both separate components; one leading separator is
  ignored; the result uses ``\\``.
* No empty components (``a//b``, a trailing separator), no ``.`` or ``..``.
* No NUL, no control characters U+0001-U+001F, none of ``< > : " | ? *``
  (alternate streams have their own arguments), no unpaired surrogates.
* A component is at most 255 UTF-16 code units, a path at most 32767.

Errors are :class:`~cimfs_cffi.errors.InvalidArgument` naming the path and the reason.

Names are case-insensitive through the image's upcase table (Windows' NTFS
``$UpCase``, written by the C writer); :func:`upcase` folds a path the same way.
"""
import os
import re
from typing import Optional, Union

from .errors import E_INVALIDARG, InvalidArgument

PathArg = Union[str, "os.PathLike[str]"]

MAX_NAME_UNITS = 255
MAX_PATH_UNITS = 32767

_INVALID_CHAR = re.compile(r'[\x00-\x1f<>:"|?*]')
_INVALID_CHARS = frozenset('<>:"|?*' + "".join(map(chr, range(32))))
_LONG_ASCII_NAME = re.compile(r'[^\\]{256}')


_UPCASE_MAP = None


def _upcase_map() -> dict:
    """str.translate map of the C writer's upcase table: its 973 non-identity entries."""
    global _UPCASE_MAP
    if _UPCASE_MAP is None:
        from ._cimfs import ffi, lib  # not at import time: the extension imports nothing from here
        table = ffi.unpack(lib.CimfsUpcaseTable(), 0x10000)
        _UPCASE_MAP = {unit: up for unit, up in enumerate(table) if up != unit}
    return _UPCASE_MAP


def upcase(name: str) -> str:
    """``name`` as the image compares it (docs/format.md §11.3): every BMP character through the
    upcase table the writer puts in the image, others unchanged.  Two names are one name in
    an image exactly when their upcase() are equal.  Unlike str.upper(): no expansions
    (ß stays ß), nothing Windows does not fold (ı, ς, µ, ǅ, Georgian Mtavruli, ...), no
    supplementary characters."""
    if name.isascii():
        return name.upper()  # the table's ASCII part is a-z -> A-Z, as str.upper()
    return name.translate(_UPCASE_MAP or _upcase_map())


def str_path(path) -> str:
    p = os.fspath(path)  # TypeError for anything that is not a path
    if not isinstance(p, str):
        raise InvalidArgument(E_INVALIDARG, "bytes paths are not supported; pass str", path=repr(path))
    return p


def utf16_units(s: str) -> int:
    """UTF-16 code units of a string (supplementary characters count twice; unpaired surrogates,
    from undecodable bytes, once)."""
    if s.isascii():
        return len(s)
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def _explain(p: str):
    """The reason a normalized path is invalid, or None."""
    if "\0" in p:
        return "contains a NUL character"
    if p.endswith("\\"):
        return "ends with a separator"
    for comp in p.split("\\"):
        if comp == "":
            return "has an empty component"
        if comp in (".", ".."):
            return "has a '%s' component" % comp
        m = _INVALID_CHAR.search(comp)
        if m:
            return "has the invalid character %r" % m.group()
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in comp):
            return "has an unpaired surrogate"
        if utf16_units(comp) > MAX_NAME_UNITS:
            return "has a name longer than %d UTF-16 units" % MAX_NAME_UNITS
    if utf16_units(p) > MAX_PATH_UNITS:
        return "is longer than %d UTF-16 units" % MAX_PATH_UNITS
    return None


def image_path(path: PathArg, *, allow_root: bool = False) -> str:
    """Normalize and validate a path inside an image; returns it with ``\\`` separators."""
    original = path if type(path) is str else str_path(path)
    p = original.replace("/", "\\")
    if p[:1] == "\\":
        p = p[1:]
    if not p:
        if allow_root:
            return ""
        raise InvalidArgument(E_INVALIDARG, "the image root cannot be used here", path=original)
    # Fast path (plain string operations; a regex costs several times more):
    # ASCII, so one unit per character; no invalid character; no empty
    # component or trailing separator; no component starting with a dot (so
    # no "." or ".."; dotted names take the slow path); no name over 255.
    if (p.isascii() and _INVALID_CHARS.isdisjoint(p) and "\\\\" not in p and p[-1] != "\\"
            and p[0] != "." and "\\." not in p
            and (len(p) <= MAX_NAME_UNITS or (len(p) <= MAX_PATH_UNITS and _LONG_ASCII_NAME.search(p) is None))):
        return p
    reason = _explain(p)
    if reason:
        raise InvalidArgument(E_INVALIDARG, "invalid path: " + reason, path=original)
    return p


def stream_name(name: str, path: Optional[str] = None) -> str:
    """Validate an alternate stream name (without the ':' and ':$DATA')."""
    if not isinstance(name, str):
        raise InvalidArgument(E_INVALIDARG, "stream names are str, not %s" % type(name).__name__, path=path)
    if name.lower().endswith(":$data"):
        name = name[:-6]
    if not name or name in (".", "..") or "\\" in name or "/" in name:
        raise InvalidArgument(E_INVALIDARG, "invalid stream name %r" % name, path=path)
    reason = _explain(name)
    if reason:
        raise InvalidArgument(E_INVALIDARG, "invalid stream name %r: %s" % (name, reason.replace("has ", "")),
                              path=path)
    return name


def image_name(name: str) -> str:
    """Validate the file name of an image (no directories in it)."""
    if not isinstance(name, str):
        name = str_path(name)
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise InvalidArgument(E_INVALIDARG, "an image name is a plain file name, without directories", path=name)
    reason = _explain(name)
    if reason:
        raise InvalidArgument(E_INVALIDARG, "invalid image name: " + reason, path=name)
    return name
