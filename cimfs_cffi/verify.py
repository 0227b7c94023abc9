"""Check a CIM image against the verifier checklist of docs/format.md §15.

:func:`verify` returns findings instead of stopping at the first problem:
each names a severity (``error``: the image breaks a rule every reader relies
on, or its data changed since it was written; ``warning``: legal for a
reader but not what the known writers produce, the message saying whose
convention it is), the object, and a message.  Object-ID digests are
recomputed, so a flipped byte inside file data is found, not only broken
structure.

Images of every known writer verify clean: Microsoft's (format 1.0 from
msixmgr, section 18), cimfs_cffi's current writer and its earlier versions,
which differ from it in RegionHeader.Index, the object-ID digest and
alignment.

Every structure is reached through :mod:`cimfs_cffi.reader`, whose bounds
checks turn a damaged object into a finding for that object; the rest of the
image is still checked.
"""
import hashlib
import os
import struct
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Set, Tuple, cast

from .errors import CorruptImage, InvalidArgument
from .metadata import parse_ea_buffer
from .reader import (FT_IMAGE, FT_OBJECTID, FT_REGION, IMAGE_HEADER_SIZE, MAGIC, OBJECTID_ENTRY_SIZE,
                     OBJECTID_HEADER_SIZE, REGION_SET_SIZE, STREAM_DATA,
                     STREAM_LINK_TABLE, STREAM_PE_IMAGE, CimImage, LinkTable, Record, Region, _find_file)

__all__ = ["verify", "Finding"]

ERROR, WARNING = "error", "warning"
DIGEST_SIZE = 24
OUR_CONVENTION = "a convention of cimfs_cffi's writer, not a format rule"
KNOWN_CONVENTION = "a convention of Microsoft's and cimfs_cffi's writers, not a format rule"

# .cim CommonHeader/FilesystemHeader fields named Reserved that Microsoft's writer fills
# (docs/format.md §17; meaning unknown): (offset, size, values known writers put there).  0 is what
# earlier cimfs_cffi writers wrote.
KNOWN_RESERVED_VALUES = ((0x0D, 1, (0, 1, 2)), (0x18, 8, (0, 7)), (0x40, 4, (0, 7)))
# The .cim's other reserved bytes, zero in every known image: (offset, size).
ZERO_RESERVED = ((0x0E, 2), (0x44, 2))


def sha512_24(obj: bytes) -> bytes:
    """Microsoft's object ID (docs/format.md §17), also our writer's: an object of up to 24 bytes is
    its own ID, zero-padded; a longer one has the first 24 bytes of its SHA-512."""
    if len(obj) <= DIGEST_SIZE:
        return obj.ljust(DIGEST_SIZE, b"\0")
    return hashlib.sha512(obj).digest()[:DIGEST_SIZE]


def sha256_24(obj: bytes) -> bytes:
    """The object ID of earlier cimfs_cffi writers: SHA-256 truncated to 24 bytes, any length."""
    return hashlib.sha256(obj).digest()[:DIGEST_SIZE]


# Tried in this order on each region set; the first that matches any entry is the set's scheme.
DIGEST_SCHEMES = (("SHA-512/24", sha512_24), ("SHA-256/24", sha256_24))


@dataclass(frozen=True)
class ObjectIdEntry:
    file: str       # objectid file name, for messages
    index: int      # entry number in that file
    region: Region
    offset: int
    length: int
    digest: bytes

    def object(self) -> bytes:
        return bytes(self.region.data[self.offset:self.offset + self.length])


@dataclass(frozen=True)
class Finding:
    severity: str   # "error" or "warning"
    object: str     # what the finding is about: a file, "file 12 (Files\\a)", "directory 3", ...
    message: str

    def __str__(self) -> str:
        return "%s: %s: %s" % (self.severity, self.object, self.message)


def digest_scheme(entries: List[ObjectIdEntry]) -> Optional[Tuple[str, Callable[[bytes], bytes]]]:
    """The first scheme of :data:`DIGEST_SCHEMES` that reproduces some entry's digest, or None.
    Each file's entries come sorted by length, so small objects usually decide cheaply."""
    for e in entries:
        obj = e.object()
        for scheme in DIGEST_SCHEMES:
            if scheme[1](obj) == e.digest:
                return scheme
    return None


class _Checker:
    def __init__(self, image: CimImage):
        self.image = image
        self.findings: List[Finding] = []
        self.names = {image.root_id: "\\"}  # file ID -> first path, for messages
        self.containers: Dict[int, Set[int]] = {}  # file ID -> set of directory IDs naming it

    def add(self, severity: str, obj: str, message: str) -> None:
        self.findings.append(Finding(severity, obj, message))

    def guarded(self, obj: str, check: Callable[[], None]) -> None:
        """Run one object's check; a structure the reader refuses becomes an error finding."""
        try:
            check()
        except CorruptImage as e:
            self.add(ERROR, obj, e.reason)
        except (NotADirectoryError, IsADirectoryError) as e:
            self.add(ERROR, obj, cast(str, e.strerror))  # the reader always raises these with a strerror

    def file(self, fid: int) -> str:
        return "file %d (%s)" % (fid, self.names[fid]) if fid in self.names else "file %d" % fid

    # ---- headers ---------------------------------------------------------------------------------
    def headers(self) -> None:
        img = self.image
        raw = img.header
        if img.file_type != FT_IMAGE:
            self.add(ERROR, img.path, "common header type %d (0 for an image file)" % img.file_type)
        if img.header_length != IMAGE_HEADER_SIZE:
            self.add(WARNING, img.path, "HeaderLength %d (readers ignore it; %s: 72)" % (img.header_length, KNOWN_CONVENTION))
        if img.minor != 0:
            self.add(WARNING, img.path, "minor version %d (0 expected)" % img.minor)
        self.image_reserved_fields()
        parents = struct.unpack_from("<H", raw, 0x46)[0]
        for i in range(parents + 1):
            at = IMAGE_HEADER_SIZE + REGION_SET_SIZE * i if i < parents else 0x20
            if raw[at + 18:at + 24] != bytes(6):
                self.add(ERROR, img.path, "region set %d: reserved fields are not zero" % i)
        for r in img.regions:
            self.region_header(r)

    def image_reserved_fields(self) -> None:
        """Reserved fields of the .cim: zero, or (where Microsoft's writer fills them) a value a
        known writer uses; an unknown value there is a warning, since nothing says what it means."""
        img, raw = self.image, self.image.header
        if any(raw[at:at + size] != bytes(size) for at, size in ZERO_RESERVED):
            self.add(ERROR, img.path, "reserved header fields are not zero")
        for at, size, known in KNOWN_RESERVED_VALUES:
            value = int.from_bytes(raw[at:at + size], "little")
            if value not in known:
                self.add(WARNING, img.path, "reserved header field at 0x%02X holds %d (meaning unknown; known"
                                            " writers put %s there)" % (at, value, " or ".join(map(str, known))))

    def region_header(self, r: Region) -> None:
        name = os.path.basename(r.path)
        d = r.data
        if d[12] != FT_REGION:
            self.add(ERROR, name, "common header type %d (1 for a region file)" % d[12])
        idx, rtype, res, res2 = struct.unpack_from("<HBBI", d, 32)
        if idx not in (0, r.local_index):  # Microsoft's writer puts 0 in every region, earlier ours n
            self.add(ERROR, name, "header Index %d but the file is region %d of its set (writers put 0 or"
                                  " the region number there)" % (idx, r.local_index))
        if rtype > 2:
            self.add(ERROR, name, "region type %d (0 metadata, 1 data, 2 small data)" % rtype)
        if res or res2 or d[13:16] != bytes(3) or d[24:32] != bytes(8):
            self.add(ERROR, name, "reserved header fields are not zero")
        if rtype == 1 and r.size % 4096:
            self.add(WARNING, name, "data region of %d bytes is not a whole number of pages (%s)"
                     % (r.size, KNOWN_CONVENTION))

    # ---- object-ID files (dedup index) -------------------------------------------------------------
    def objectids(self) -> None:
        """Check each region's object-ID file and recompute its digests, per region set.

        The digest scheme is found per set (:data:`DIGEST_SCHEMES`): a set written by
        Microsoft's or our writer uses SHA-512/24, one written by an earlier cimfs_cffi writer
        SHA-256/24; both are fine.  In a set where one scheme matches, every mismatch means
        changed bytes; a set where none matches was written by an unknown writer and gets one
        warning, since its data cannot be checked."""
        per_set: Dict[str, List[ObjectIdEntry]] = {}
        listing: Dict[str, str] = {}
        for region in self.image.regions:
            path = _find_file(self.image.directory, "objectid_%s_%d" % (region.set_guid, region.local_index), listing)
            try:
                with open(path, "rb") as f:
                    raw = f.read()
            except FileNotFoundError:
                self.add(WARNING, os.path.basename(path), "object-ID file is missing (readers do not need it;"
                         " writers forking this image cannot deduplicate against this region)")
                continue
            per_set.setdefault(region.set_guid, []).extend(self.objectid_file(os.path.basename(path), raw, region))
        for guid, entries in per_set.items():
            self.digests("region set " + guid, entries)

    def objectid_file(self, name: str, raw: bytes, region: Region) -> List[ObjectIdEntry]:
        """Check one object-ID file's header, order and bounds; return its entries that lie
        inside the region, for the digest check."""
        if len(raw) < OBJECTID_HEADER_SIZE or raw[:8] != MAGIC or raw[12] != FT_OBJECTID:
            self.add(ERROR, name, "not an object-ID file (magic, type or size)")
            return []
        idx, rtype, _res, _res2, table, count = struct.unpack_from("<HBBIII", raw, 32)
        if idx != region.local_index or rtype != region.type:
            self.add(ERROR, name, "Index/Type %d/%d do not match region %d of type %d"
                     % (idx, rtype, region.local_index, region.type))
        if table + OBJECTID_ENTRY_SIZE * count > len(raw):
            self.add(ERROR, name, "%d entries at offset %d run past the file's %d bytes" % (count, table, len(raw)))
            return []
        entries, prev = [], None
        for k in range(count):
            length, digest, offset = struct.unpack_from("<Q%dsQ" % DIGEST_SIZE, raw, table + OBJECTID_ENTRY_SIZE * k)
            if prev is not None and not prev < (length, digest):
                self.add(WARNING, name, "entries are not sorted by (length, digest) at entry %d (%s)"
                         % (k, KNOWN_CONVENTION))
            prev = (length, digest)
            if offset == 0 or offset + length > region.size:
                self.add(ERROR, name, "entry %d: %d bytes at %d lie outside the region" % (k, length, offset))
            else:
                entries.append(ObjectIdEntry(name, k, region, offset, length, digest))
        return entries

    def digests(self, obj: str, entries: List[ObjectIdEntry]) -> None:
        """Recompute one region set's digests with the scheme its writer used."""
        scheme = digest_scheme(entries)
        if scheme is None:
            if entries:
                self.add(WARNING, obj, "no object-ID digest matches a known writer's (%s); data could not be"
                                       " checked" % ", ".join(n for n, _ in DIGEST_SCHEMES))
            return
        _, digest_of = scheme
        for e in entries:
            if digest_of(e.object()) != e.digest:
                self.add(ERROR, e.file, "entry %d: the %d bytes at offset %d no longer match their digest"
                         % (e.index, e.length, e.offset))

    # ---- file tables and the tree ----------------------------------------------------------------------
    def tables(self) -> None:
        tables = self.image.tables
        for i, (offset, count, entry_size, reserved) in enumerate(tables):
            what = "file table %d" % i
            if entry_size < 88:
                self.add(ERROR, what, "entry size %d (at least 88)" % entry_size)
            if count > 1024 or (i < len(tables) - 1 and count != 1024):
                self.add(ERROR, what, "%d records (1024, fewer only in the last table)" % count)
            if reserved:
                self.add(ERROR, what, "reserved field is not zero")
            self.guarded(what, lambda: self.image.span(offset, count * entry_size, what))

    def tree(self) -> None:
        img = self.image
        todo, entered = [img.root_id], {img.root_id}
        while todo:
            fid = todo.pop()
            self.guarded(self.file(fid), lambda: self.directory(fid, todo, entered))

    def directory(self, fid: int, todo: List[int], entered: set) -> None:
        rec = self.image.record(fid)
        table = self.image.directory_table(rec, self.names[fid])
        if table is None:
            self.add(WARNING, self.file(fid), "directory stream of length 0 (readers accept it; storing an empty"
                                              " table is %s)" % OUR_CONVENTION)
            return
        if table.length != rec.stream_length:
            self.add(ERROR, self.file(fid), "table Length %d differs from its stream length %d"
                     % (table.length, rec.stream_length))
        self.names_in_order(self.file(fid), table)
        base = "" if fid == self.image.root_id else self.names[fid] + "\\"
        for name, child in zip(table.names(), table.ids()):
            self.containers.setdefault(child, set()).add(fid)
            self.names.setdefault(child, base + name)
            try:
                crec = self.image.record(child, base + name)
            except CorruptImage as e:
                self.add(ERROR, self.file(fid), "entry %r: %s" % (name, e.reason))
                continue
            if crec.is_dir:
                if child in entered:
                    self.add(ERROR, self.file(child), "directory reached by a second name %r (a cycle or a"
                                                     " directory hard link)" % (base + name))
                    continue
                entered.add(child)
                todo.append(child)

    def names_in_order(self, obj: str, table: LinkTable) -> None:
        names = table.names()
        supplementary = False
        for name in names:
            units = len(name.encode("utf-16-le", "surrogatepass")) // 2
            supplementary = supplementary or units != len(name)
            bad = not name or units > 255 or name in (".", "..") or any(c in name for c in "\\/:\0")
            try:
                name.encode("utf-16-le")
            except UnicodeEncodeError:
                bad = True  # an unpaired surrogate
            if bad:
                self.add(ERROR, obj, "invalid name %r" % name)
        keys = [self.image.key(n) for n in names]
        for i in range(1, len(keys)):
            if not keys[i - 1] < keys[i]:
                self.add(ERROR, obj, "names %r and %r are not in strictly ascending case-insensitive order%s"
                         % (names[i - 1], names[i], " (duplicates)" if keys[i - 1] == keys[i] else ""))
                return
        if supplementary:
            up = self.image.upcase
            unit_keys = [[up[u] for u in struct.unpack("<%dH" % (len(b) // 2), b)]
                         for b in (n.encode("utf-16-le", "surrogatepass") for n in names)]
            if any(not a < b for a, b in zip(unit_keys, unit_keys[1:])):
                self.add(WARNING, obj, "UTF-16 code-unit order differs from code-point order here (docs/format.md"
                                       " §16 unknown #3: a driver comparing code units would not find every name)")

    # ---- every record ----------------------------------------------------------------------------
    def records(self) -> None:
        """Check every record a name reaches (work bounded by the names, not by the ID range,
        which shared file tables can make far larger than the files)."""
        reached = sorted(set(self.containers) | {self.image.root_id})
        for fid in reached:
            self.guarded(self.file(fid), lambda: self.record(fid))
        orphans = self.image.file_count - len(reached)
        if orphans > 0:
            self.add(WARNING, "file tables", "%d file records are in no directory" % orphans)

    def record(self, fid: int) -> None:
        img, obj = self.image, self.file(fid)
        rec = img.record(fid)
        self.parent_id(obj, rec)
        high_bits = rec.length_and_type & ~((1 << 56) - 1) & ~rec.layout.sparse_bit  # above the stream type
        if rec.flags & ~rec.layout.flags or rec.reserved or high_bits:
            self.add(ERROR, obj, "undefined flag bits or reserved fields are set")
        if rec.stream_type not in (STREAM_DATA, STREAM_LINK_TABLE, STREAM_PE_IMAGE):
            self.add(ERROR, obj, "default stream type %d" % rec.stream_type)
        elif not rec.is_dir and not rec.sparse and rec.stream_length:
            img.stream_runs(rec.stream_offset, rec.stream_length, rec.stream_type, obj)
        elif not rec.is_dir and not rec.sparse and not rec.stream_offset:
            self.add(WARNING, obj, "empty file with a null data offset (the Go reader fails to read it)")
        self.security_descriptor(obj, rec)
        self.reparse(obj, rec)
        self.ea(obj, rec)
        table = img.stream_table(rec)  # refuses a table longer than its u32 prefix
        if table is not None:
            self.names_in_order(obj + " streams", table)
            for name, s in img.streams_of(rec).items():
                if s.length and not s.sparse:
                    img.stream_runs(s.offset, s.length, STREAM_DATA, "%s:%s" % (obj, name))

    def parent_id(self, obj: str, rec: Record) -> None:
        """ParentFileId (2.0 on; a 1.0 record has none) naming a directory that holds the file."""
        if self.image.major < 2 or rec.id == self.image.root_id or rec.id not in self.containers:
            return
        if rec.parent_id not in self.containers[rec.id]:
            self.add(WARNING, obj, "ParentFileId %d is not a directory that names it (%s)"
                     % (rec.parent_id, OUR_CONVENTION))

    def security_descriptor(self, obj: str, rec: Record) -> None:
        """A file's SD, if any.  SdOffset 0 is legal: Microsoft's writer leaves the root without
        one and its images mount; both writers give every other file one."""
        if not rec.sd_offset:
            if rec.id != self.image.root_id:
                self.add(WARNING, obj, "no security descriptor (%s; hcsshim notes an image without SDs may"
                                       " not work)" % KNOWN_CONVENTION)
            return
        sd = self.image._counted(rec.sd_offset, 2, obj + " security descriptor")
        if len(sd) < 20 or sd[0] != 1 or not sd[3] & 0x80:
            self.add(ERROR, obj, "security descriptor is not a self-relative revision-1 descriptor")

    def reparse(self, obj: str, rec: Record) -> None:
        if not rec.reparse_offset:
            if rec.reparse_tag:
                self.add(WARNING, obj, "reparse tag 0x%08x without reparse data" % rec.reparse_tag)
            return
        buf = self.image._counted(rec.reparse_offset, 2, obj + " reparse data")
        if len(buf) < 8:
            self.add(ERROR, obj, "reparse buffer of %d bytes (at least the 8-byte header)" % len(buf))
            return
        tag, length = struct.unpack_from("<IH", buf)
        if tag != rec.reparse_tag:
            self.add(ERROR, obj, "reparse buffer tag 0x%08x differs from the record's 0x%08x" % (tag, rec.reparse_tag))
        if 8 + length > len(buf):
            self.add(ERROR, obj, "reparse data length %d runs past the %d-byte buffer" % (length, len(buf)))

    def ea(self, obj: str, rec: Record) -> None:
        if bool(rec.ea_offset) != bool(rec.ea_length):
            self.add(ERROR, obj, "EA offset and EA length disagree (one is zero)")
            return
        if not rec.ea_offset:
            return
        data, start = self.image.span(rec.ea_offset, rec.ea_length, obj + " EA buffer")
        try:
            parse_ea_buffer(bytes(data[start:start + rec.ea_length]))
        except InvalidArgument as e:
            self.add(ERROR, obj, e.reason)


def verify(path) -> List[Finding]:
    """Findings for the image at ``path`` (an empty list: the image is clean).

    Raises ``PathNotFound`` when there is no file at ``path``; an image too
    damaged to open gives one error finding.
    """
    try:
        image = CimImage(path)
    except CorruptImage as e:
        return [Finding(ERROR, e.path or os.fspath(path), e.reason)]
    with image:
        checker = _Checker(image)
        checker.headers()
        checker.tables()
        checker.tree()
        checker.records()
        checker.objectids()
        return checker.findings
