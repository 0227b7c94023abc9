"""The name policy of builds: source names that an image cannot hold as they are.

Every source (directory, tar, package) goes through one :class:`NamePolicy`, so no build can
end with fewer names than its source without saying so.  Two kinds of trouble:

* **collisions**: two names of one directory that Windows' case-insensitive comparison (the
  image's upcase table) makes one name, such as ``Index.html`` and ``index.html``;
* **invalid names**: names Windows cannot hold or open: ``:`` (the alternate-stream separator),
  ``\\``, ``/``, control characters, ``< > " | ? *``, a trailing dot or space, the DOS device
  names (``CON``, ``PRN``, ``AUX``, ``NUL``, ``COM1``-``COM9``, ``LPT1``-``LPT9``, ``CONIN$``,
  ``CONOUT$``, also with an extension, as Windows 10 refuses them), unpaired surrogates (bytes
  that are not UTF-8), names over 255 UTF-16 units and paths over 32,767.

What happens (``--on-collision``, ``--on-invalid``; README "Names"):

===========  =================================================================================
error        the default: the build stops with one line naming the path(s) and the rule, and
             nothing is written
keep-first   collisions: the later name is skipped (two directories are merged instead; a file
             never replaces a directory, and a directory after a file stops the build)
keep-last    collisions: the later name replaces the earlier (directories are merged, as above)
rename       the later name becomes ``stem~2.ext`` (~3, ...), an invalid one is repaired first
             (each bad character becomes ``_``, a device name gets a leading ``_``, ...)
skip         invalid names: the entry (and everything below a directory) is left out
keep         invalid names the format can hold (trailing dot or space, device names): kept as
             they are, for Windows programs that use ``\\\\?\\`` paths
===========  =================================================================================

Every rename, skip, merge and replacement is recorded in :attr:`NamePolicy.events` and reported
at the end of the build.
"""
import re
from typing import Dict, List, Optional, Tuple

from .errors import E_INVALIDARG, CimError
from .paths import MAX_NAME_UNITS, MAX_PATH_UNITS, upcase, utf16_units as _units

COLLISION_ACTIONS = ("error", "keep-first", "keep-last", "rename")
INVALID_ACTIONS = ("error", "skip", "rename", "keep")

_BAD_CHAR = re.compile(r'[\x00-\x1f<>:"/\\|?*\ud800-\udfff]')
_DEVICE = re.compile(r"(CON|PRN|AUX|NUL|COM[1-9]|LPT[1-9]|CONIN\$|CONOUT\$)(\.|$)", re.IGNORECASE)
_SAFE_ASCII = re.compile(r"[^\x00-\x1f<>:\"/\\|?*]*[^\x00-\x1f<>:\"/\\|?* .]\Z")
# In an ASCII listing joined with "/" (and upcased, for device names): what invalid_reason() refuses.
# Each starts with a character class or a literal, so the regex engine searches quickly.
_BAD_CHAR_IN_JOINED = re.compile(r'[\x00-\x1f<>:"\\|?*]|[. ](?=/|\Z)')
_DEVICE_IN_UPPER = re.compile(r"/(?:CON|PRN|AUX|NUL|COM[1-9]|LPT[1-9]|CONIN\$|CONOUT\$)(?=[./]|\Z)")


class NamePolicyError(CimError):
    """Base of the name policy's errors (a :class:`~cimfs_cffi.errors.CimError`, so an OSError)."""

    def __init__(self, message: str, *, path: str, existing_path: Optional[str] = None, rule: str = ""):
        super().__init__(E_INVALIDARG, message, path=path, existing_path=existing_path)
        self.rule = rule

    def __reduce__(self):
        return (type(self), (self.reason,), {"path": self.path, "existing_path": self.existing_path,
                                             "rule": self.rule})


class NameCollision(NamePolicyError):
    """Two source names that are one name in the image (``path`` and ``existing_path``)."""


class InvalidName(NamePolicyError):
    """A source name Windows cannot hold (``path``; ``rule`` says why)."""


def invalid_reason(name: str) -> Optional[Tuple[str, bool]]:
    """Why Windows cannot hold ``name``, and whether the format could keep it anyway; or None."""
    if name.isascii() and len(name) <= MAX_NAME_UNITS and _SAFE_ASCII.match(name) and not _DEVICE.match(name):
        return None  # the common case, decided by two regex matches
    if name in ("", ".", ".."):
        return "the name %r" % name, False
    m = _BAD_CHAR.search(name)
    if m:
        ch = m.group()
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return "a name that is not valid Unicode (undecodable bytes)", False
        if ch == ":":
            return "':' in a name (Windows' alternate-stream separator)", False
        return "the character %r in a name" % ch, False
    if _units(name) > MAX_NAME_UNITS:
        return "a name longer than %d UTF-16 units" % MAX_NAME_UNITS, False
    if name[-1] in ". ":
        return "a name ending in %s (Windows strips it)" % ("a dot" if name[-1] == "." else "a space"), True
    device = _DEVICE.match(name.rstrip(" "))
    if device:
        return "the device name %s (Windows reserves it)" % device.group(1).upper(), True
    return None


def troubled_listing(names: List[str]) -> bool:
    """Whether a directory listing (names without "/", as directories list them) has a name
    :func:`invalid_reason` refuses or two names that are one name in an image.  The common
    case, an ASCII listing, costs two regex searches and one set over the whole listing."""
    if not names:
        return False
    joined = "/".join(names)
    if joined.isascii():
        upper = joined.upper()  # upcase() of ASCII
        return ("" in names or max(map(len, names)) > MAX_NAME_UNITS or _BAD_CHAR_IN_JOINED.search(joined) is not None
                or _DEVICE_IN_UPPER.search("/" + upper) is not None or len(set(upper.split("/"))) != len(names))
    return len({upcase(n) for n in names}) != len(names) or any(invalid_reason(n) is not None for n in names)


def repaired(name: str) -> str:
    """A name Windows can hold, as close to ``name`` as possible."""
    name = _BAD_CHAR.sub("_", name) or "_"
    if name in (".", ".."):
        name = name.replace(".", "_")
    stripped = name.rstrip(". ")
    name = stripped + "_" * (len(name) - len(stripped))
    if _DEVICE.match(name):
        name = "_" + name
    while _units(name) > MAX_NAME_UNITS:  # keep the extension, shorten the stem
        stem, dot, ext = name.rpartition(".")
        name = (stem[:-1] + dot + ext) if stem and len(ext) < 16 else name[:-1]
    return name


def _numbered(name: str, n: int) -> str:
    stem, dot, ext = name.rpartition(".")
    if not stem or not dot:
        stem, dot, ext = name, "", ""
    suffix = "~%d" % n
    while _units(stem + suffix + dot + ext) > MAX_NAME_UNITS:
        stem = stem[:-1]
    return stem + suffix + dot + ext


def _join(parent: str, name: str) -> str:
    return parent + "\\" + name if parent else name


class NamePolicy:
    """Decides the image name of every source name; see the module's description."""

    def __init__(self, on_collision: str = "error", on_invalid: str = "error"):
        if on_collision not in COLLISION_ACTIONS:
            raise ValueError("on_collision must be one of %s, not %r" % (", ".join(COLLISION_ACTIONS), on_collision))
        if on_invalid not in INVALID_ACTIONS:
            raise ValueError("on_invalid must be one of %s, not %r" % (", ".join(INVALID_ACTIONS), on_invalid))
        self.on_collision = on_collision
        self.on_invalid = on_invalid
        self.events: List[str] = []
        # upcased image path -> (name as spelled, is a directory, source path), for names this build made
        self.taken: Dict[str, Tuple[str, bool, str]] = {}
        # source directory path -> its image path (None: skipped), where they differ
        self.moved: Dict[str, Optional[str]] = {}
        self.moved_files: Dict[str, Optional[str]] = {}

    # ---- one name ---------------------------------------------------------------------------------
    def place(self, parent: str, name: str, is_dir: bool, source: str) -> Optional[str]:
        """The image name for source name ``name`` in image directory ``parent`` (``source`` is
        the source path, for messages), or None to leave the entry out."""
        problem = invalid_reason(name)
        if problem is not None:
            rule, keepable = problem
            if self.on_invalid == "error" or (self.on_invalid == "keep" and not keepable):
                raise InvalidName("%s: %s; choose --on-invalid=rename, skip%s" % (source, rule,
                                                                                   " or keep" if keepable else ""),
                                  path=source, rule=rule)
            if self.on_invalid == "skip":
                self.events.append("skipped %s: %s" % (source, rule))
                return None
            if self.on_invalid == "rename":
                fixed = repaired(name)
                self.events.append("renamed %s to %s: %s" % (source, _join(parent, fixed), rule))
                name = fixed
            # "keep": as it is
        key = upcase(_join(parent, name))
        existing = self.taken.get(key)
        # The same source name again is a replacement (tar semantics); another one is a collision,
        # even when spelled alike (a repaired name meeting a real one).
        if existing is not None and existing[2] != source:
            other = _join(parent, existing[0])
            rule = "names that differ only in case are one name on Windows"
            if self.on_collision == "error":
                raise NameCollision("%s and %s: %s; choose --on-collision=keep-first, keep-last or rename"
                                    % (other, source, rule), path=source, existing_path=other, rule=rule)
            if is_dir and existing[1] and self.on_collision != "rename":
                self.events.append("merged directory %s into %s: %s" % (source, other, rule))
                return existing[0]
            if is_dir != existing[1] and self.on_collision != "rename":
                # A file and a directory: keep the directory (replacing it would lose its tree).
                if is_dir:
                    raise NameCollision("%s and %s: a directory would replace a file; choose "
                                        "--on-collision=rename" % (other, source), path=source,
                                        existing_path=other, rule=rule)
                self.events.append("skipped %s: %s (kept directory %s)" % (source, rule, other))
                return None
            if self.on_collision == "keep-first":
                self.events.append("skipped %s: %s (kept %s)" % (source, rule, other))
                return None
            if self.on_collision == "keep-last":
                self.events.append("replaced %s with %s: %s" % (other, source, rule))
            else:  # rename
                n = 2
                while upcase(_join(parent, _numbered(name, n))) in self.taken:
                    n += 1
                fixed = _numbered(name, n)
                self.events.append("renamed %s to %s: %s (%s)" % (source, _join(parent, fixed), rule, other))
                name, key = fixed, upcase(_join(parent, fixed))
        if _units(_join(parent, name)) > MAX_PATH_UNITS:
            self._too_long(source)
            return None
        self.taken[key] = (name, is_dir, source)
        return name

    def _too_long(self, source: str) -> None:
        rule = "a path longer than %d UTF-16 units" % MAX_PATH_UNITS
        if self.on_invalid in ("error", "keep", "rename"):
            shown = source if len(source) < 200 else source[:100] + "..." + source[-60:]
            raise InvalidName("%s: %s; choose --on-invalid=skip" % (shown, rule), path=source, rule=rule)
        self.events.append("skipped %s: %s" % (source, rule))
        return None

    def forget(self, image_path: str) -> None:
        """A whiteout removed ``image_path``: its name is free again."""
        self.taken.pop(upcase(image_path), None)

    # ---- whole paths (tar and package sources, whose entries come in any order) -------------------
    def map(self, source: str, is_dir: bool) -> Optional[str]:
        """The image path of source path ``source`` ("\\"-separated), or None when it (or a
        directory above it) is left out.  Parents are placed as directories on the way."""
        if not source:
            return ""
        if len(source) > MAX_PATH_UNITS and _units(source) > MAX_PATH_UNITS:
            self._too_long(source)  # decided before any work on its (possibly 100,000) parts
            return None
        parent_source, _, name = source.rpartition("\\")
        parent = self.directory(parent_source)
        if parent is None:
            return None
        image = self.place(parent, name, is_dir, source)
        path = None if image is None else _join(parent, image)
        if path != source:
            (self.moved if is_dir else self.moved_files)[source] = path
        return path

    def directory(self, source: str) -> Optional[str]:
        """The image path of source directory ``source``, placing it (and the directories above it
        that are new) if it is new.  A loop, not recursion: paths can be very deep."""
        if len(source) > MAX_PATH_UNITS and _units(source) > MAX_PATH_UNITS:
            self._too_long(source)
            return None
        chain = []
        known = source
        while known and not self._known(known):
            chain.append(known)
            known = known.rpartition("\\")[0]
        image = self.moved.get(known, known) if known else ""
        for src in reversed(chain):
            if image is None:  # a directory above was left out
                self.moved[src] = None
                continue
            name = self.place(image, src.rpartition("\\")[2], True, src)
            path = None if name is None else _join(image, name)
            if path != src:
                self.moved[src] = path
            image = path
        return image

    def _known(self, source: str) -> bool:
        if source in self.moved:
            return True
        existing = self.taken.get(upcase(source))
        return existing is not None and existing[1] and existing[2] == source

    def lookup(self, source: str) -> Optional[str]:
        """The image path of an entry placed before (a hard link's target)."""
        if source in self.moved_files:
            return self.moved_files[source]
        parent_source, _, name = source.rpartition("\\")
        parent = self.moved.get(parent_source, parent_source) if parent_source else ""
        return None if parent is None else _join(parent, name)
