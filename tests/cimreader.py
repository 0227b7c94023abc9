"""A reader of classic CIM images written from shared/spec/cim-format.md.

It shares no code with the C writer: every structure is parsed here with
`struct` from the byte layouts in the spec, so tests that read images back
through it check the writer's output, not the writer's own idea of it.
`Image.check()` walks the whole image and applies the format spec's
verifier checklist (section 15); the reader issue grows this into the
package's reader and verifier.
"""
import hashlib
import os
import struct
from dataclasses import dataclass, field

MAGIC = b"cimfile0"
OFFSET_MASK = (1 << 48) - 1
FILES_PER_TABLE = 1024
STREAM_DATA, STREAM_LINK_TABLE, STREAM_PE_IMAGE = 0, 1, 2
SPARSE_BIT = 1 << 56
NULL_DACL_SD = bytes([1, 0, 4, 0x80]) + bytes(16)

ATTR_READONLY, ATTR_HIDDEN, ATTR_SYSTEM, ATTR_DIRECTORY, ATTR_ARCHIVE = 0x1, 0x2, 0x4, 0x10, 0x20
ATTR_SPARSE, ATTR_REPARSE = 0x200, 0x400


class CorruptImage(Exception):
    pass


def guid_text(b):
    d1, d2, d3 = struct.unpack_from("<IHH", b)
    return "%08x-%04x-%04x-%s-%s" % (d1, d2, d3, b[8:10].hex(), b[10:16].hex())


@dataclass
class FileRecord:
    id: int
    flags: int
    ea_length: int
    reparse_tag: int
    times: tuple  # creation, last write, change, last access
    stream_offset: int
    stream_length: int
    stream_type: int
    sparse: bool
    sd_offset: int
    ea_offset: int
    reparse_offset: int
    stream_table_offset: int
    parent_id: int
    base_region_index: int

    @property
    def is_dir(self):
        return self.stream_type == STREAM_LINK_TABLE

    @property
    def attributes(self):
        a = 0
        for bit, attr in ((1, ATTR_READONLY), (2, ATTR_HIDDEN), (4, ATTR_SYSTEM), (8, ATTR_ARCHIVE), (0x10, ATTR_SPARSE)):
            if self.flags & bit:
                a |= attr
        if self.is_dir:
            a |= ATTR_DIRECTORY
        if self.reparse_offset:
            a |= ATTR_REPARSE
        return a


@dataclass
class Region:
    path: str
    data: bytes
    type: int
    index: int
    set_guid: str


@dataclass
class Node:
    """One file in a walked image (what the tests compare)."""
    id: int
    is_dir: bool
    attributes: int
    times: tuple
    data: bytes = b""
    streams: dict = field(default_factory=dict)
    sd: bytes = None
    ea: bytes = None
    reparse: bytes = None
    sparse: bool = False


class Image:
    def __init__(self, path):
        self.path = path
        self.dir = os.path.dirname(os.path.abspath(path))
        with open(path, "rb") as f:
            raw = f.read()
        if len(raw) < 72 or raw[:8] != MAGIC:
            raise CorruptImage("bad image header")
        self.header_length, self.file_type = struct.unpack_from("<IB", raw, 8)
        self.major, self.minor = struct.unpack_from("<II", raw, 16)
        if self.major not in (2, 3):
            raise CorruptImage("unsupported version %d" % self.major)
        own_guid = raw[0x20:0x30]
        own_count = struct.unpack_from("<H", raw, 0x30)[0]
        self.fs_offset = struct.unpack_from("<Q", raw, 0x38)[0]
        parent_count = struct.unpack_from("<H", raw, 0x46)[0]
        if len(raw) < 72 + 24 * parent_count:
            raise CorruptImage("truncated parent region sets")
        self.raw_header = raw
        sets = []
        for i in range(parent_count):
            o = 72 + 24 * i
            sets.append((raw[o:o + 16], struct.unpack_from("<H", raw, o + 16)[0]))
        sets.append((own_guid, own_count))
        self.region_sets = [(guid_text(g), n) for g, n in sets]
        self.regions = []
        for g, n in self.region_sets:
            for i in range(n):
                p = os.path.join(self.dir, "region_%s_%d" % (g, i))
                with open(p, "rb") as f:
                    data = f.read()
                if len(data) < 40 or data[:8] != MAGIC:
                    raise CorruptImage("bad region header " + p)
                idx, rtype = struct.unpack_from("<HB", data, 32)
                self.regions.append(Region(p, data, rtype, idx, g))
        fs = self.obj(self.fs_offset, 24)
        self.upcase_offset, self.ftd_offset, self.ftd_length, self.root_id = struct.unpack("<QQII", fs)
        up = self.obj(self.upcase_offset, 0x20000)
        self.upcase = struct.unpack("<65536H", up)
        ftd = self.obj(self.ftd_offset, 16 * self.ftd_length)
        self.tables = [struct.unpack_from("<QHHI", ftd, 16 * i) for i in range(self.ftd_length)]

    # ---- raw access ----------------------------------------------------------
    def obj(self, offset, length):
        idx, off = offset >> 48, offset & OFFSET_MASK
        if off == 0 or idx >= len(self.regions):
            raise CorruptImage("bad region offset 0x%x" % offset)
        data = self.regions[idx].data
        if off + length > len(data):
            raise CorruptImage("object 0x%x+%d outside region" % (offset, length))
        return data[off:off + length]

    def counted(self, offset, size):
        n = int.from_bytes(self.obj(offset, size), "little")
        return self.obj(offset + size, n)

    def record(self, fid):
        if fid == 0:
            raise CorruptImage("file id 0")
        t, slot = divmod(fid - 1, FILES_PER_TABLE)
        if t >= len(self.tables) or slot >= self.tables[t][1]:
            raise CorruptImage("file id %d out of range" % fid)
        off, count, esize, _ = self.tables[t]
        rec = self.obj(off + slot * esize, esize)[:96].ljust(96, b"\0")
        (flags, ea_len, tag, ct, wt, cht, at, s_off, s_lt, sd, ea, rp, st, parent, bri, _res) = struct.unpack(
            "<HHIQQQQQQQQQQIHH", rec)
        return FileRecord(fid, flags, ea_len, tag, (ct, wt, cht, at), s_off, s_lt & OFFSET_MASK, (s_lt >> 48) & 0xFF,
                          bool(s_lt & SPARSE_BIT), sd, ea, rp, st, parent, bri)

    # ---- names ---------------------------------------------------------------
    def key(self, name):
        """Comparison key of format spec 11.3: upcased BMP units, whole supplementary code points."""
        out = []
        for ch in name:
            cp = ord(ch)
            out.append(self.upcase[cp] if cp < 0x10000 else cp)
        return out

    def link_table(self, data, value_size):
        if len(data) < 8:
            raise CorruptImage("link table shorter than 8 bytes")
        length, n = struct.unpack_from("<II", data)
        if length < 8 or length > len(data) or 8 + n * (value_size + 4) > length:
            raise CorruptImage("bad link table header")
        entries = []
        for i in range(n):
            value = data[8 + i * value_size: 8 + (i + 1) * value_size]
            no = struct.unpack_from("<I", data, 8 + n * value_size + 4 * i)[0]
            if no + 2 > length:
                raise CorruptImage("name offset outside table")
            nl = struct.unpack_from("<H", data, no)[0]
            if no + 2 + 2 * nl > length:
                raise CorruptImage("name outside table")
            name = data[no + 2: no + 2 + 2 * nl].decode("utf-16-le", "surrogatepass")
            entries.append((name, value))
        return length, entries

    def listdir(self, fid):
        rec = self.record(fid)
        if not rec.is_dir:
            raise NotADirectoryError(fid)
        if rec.stream_length == 0:
            return []
        data = self.obj(rec.stream_offset, rec.stream_length)
        _, entries = self.link_table(data, 4)
        return [(name, struct.unpack("<I", v)[0]) for name, v in entries]

    def lookup(self, path):
        """Binary search each component, case-insensitively, like the driver."""
        fid = self.root_id
        for comp in [c for c in path.replace("/", "\\").split("\\") if c]:
            entries = self.listdir(fid)
            k = self.key(comp)
            lo, hi = 0, len(entries)
            found = None
            while lo < hi:
                mid = (lo + hi) // 2
                mk = self.key(entries[mid][0])
                if mk == k:
                    found = entries[mid][1]
                    break
                if mk < k:
                    lo = mid + 1
                else:
                    hi = mid
            if found is None:
                raise FileNotFoundError(path)
            fid = found
        return fid

    # ---- content -------------------------------------------------------------
    def read_stream(self, offset, length, stype, sparse):
        if sparse:
            return bytes(length)
        if stype == STREAM_DATA:
            return self.obj(offset, length) if length else (self.obj(offset, 0) if offset else b"")
        if stype == STREAM_PE_IMAGE:
            data_off, data_len, _image_len, count, _flags = struct.unpack("<QQIHH", self.obj(offset, 24))
            data_len &= (1 << 63) - 1
            maps = [struct.unpack("<II", self.obj(offset + 24 + 8 * i, 8)) for i in range(count)]
            out = bytearray()
            o = 0
            while o < length:
                delta, end = 0, data_len
                for i, (fo, d) in enumerate(maps):
                    if fo <= o:
                        delta = d
                        end = maps[i + 1][0] if i + 1 < len(maps) else data_len
                run = min(end, length) - o
                out += self.obj(data_off + o + delta, run)
                o += run
            return bytes(out)
        raise CorruptImage("bad stream type %d" % stype)

    def read(self, fid):
        r = self.record(fid)
        if r.is_dir:
            raise IsADirectoryError(fid)
        return self.read_stream(r.stream_offset, r.stream_length, r.stream_type, r.sparse)

    def streams(self, fid):
        r = self.record(fid)
        if not r.stream_table_offset:
            return {}
        data = self.counted(r.stream_table_offset, 4)
        length, entries = self.link_table(data, 16)
        if length != len(data):
            raise CorruptImage("stream table length mismatch")
        out = {}
        for name, v in entries:
            off, lt = struct.unpack("<QQ", v)
            if (lt >> 48) & 0xFF != STREAM_DATA:
                raise CorruptImage("alternate stream of type %d" % ((lt >> 48) & 0xFF))
            out[name] = self.read_stream(off, lt & OFFSET_MASK, STREAM_DATA, bool(lt & SPARSE_BIT))
        return out

    def node(self, fid):
        r = self.record(fid)
        n = Node(fid, r.is_dir, r.attributes, r.times, sparse=r.sparse)
        if not r.is_dir:
            n.data = self.read(fid)
        n.streams = self.streams(fid)
        n.sd = self.counted(r.sd_offset, 2) if r.sd_offset else None
        n.ea = self.obj(r.ea_offset, r.ea_length) if r.ea_offset else None
        n.reparse = self.counted(r.reparse_offset, 2) if r.reparse_offset else None
        return n

    def walk(self):
        """{path: file id} for every name in the image ('' is the root)."""
        out = {"": self.root_id}
        todo = [("", self.root_id)]
        while todo:
            prefix, fid = todo.pop()
            for name, child in self.listdir(fid):
                p = prefix + "\\" + name if prefix else name
                out[p] = child
                if self.record(child).is_dir:
                    todo.append((p, child))
        return out

    # ---- verification (format spec 15) -------------------------------------------
    def check(self):
        """Raise CorruptImage on the first violation of the writer rules we rely on."""
        problems = []

        def bad(msg):
            problems.append(msg)

        if self.file_type != 0 or self.header_length != 72:
            bad("image header type/length")
        for i, r in enumerate(self.regions):
            if r.data[12] != 1:
                bad("region %d: common header type %d" % (i, r.data[12]))
            if r.type == 1 and len(r.data) % 4096:
                bad("data region %d not page-sized" % i)
        seen_dirs = set()
        reached = {}
        todo = [self.root_id]
        while todo:
            fid = todo.pop()
            rec = self.record(fid)
            if not rec.is_dir:
                continue
            if fid in seen_dirs:
                bad("directory %d reached twice" % fid)
                continue
            seen_dirs.add(fid)
            if rec.stream_length:
                data = self.obj(rec.stream_offset, rec.stream_length)
                length, entries = self.link_table(data, 4)
                if length != rec.stream_length:
                    bad("dir %d: Length %d != stream length %d" % (fid, length, rec.stream_length))
                keys = [self.key(n) for n, _ in entries]
                for a, b in zip(keys, keys[1:]):
                    if not a < b:
                        bad("dir %d: names not strictly ascending" % fid)
                        break
                for name, v in entries:
                    if not name or "\\" in name or ":" in name:
                        bad("dir %d: bad name %r" % (fid, name))
                    child = struct.unpack("<I", v)[0]
                    reached.setdefault(child, []).append(fid)
                    crec = self.record(child)
                    if crec.is_dir:
                        todo.append(child)
        total = sum(t[1] for t in self.tables)
        for i, (_off, count, esize, _) in enumerate(self.tables):
            if esize < 88 or count > 1024 or (i < len(self.tables) - 1 and count != 1024):
                bad("file table %d: count %d entry size %d" % (i, count, esize))
        for fid in range(1, total + 1):
            rec = self.record(fid)
            if fid != self.root_id and fid not in reached:
                bad("file %d is in no directory" % fid)
            if fid != self.root_id and rec.parent_id not in reached.get(fid, []):
                bad("file %d: ParentFileId %d does not contain it" % (fid, rec.parent_id))
            if rec.stream_type not in (0, 1, 2):
                bad("file %d: stream type %d" % (fid, rec.stream_type))
            if not rec.sd_offset:
                bad("file %d has no security descriptor" % fid)
            else:
                sd = self.counted(rec.sd_offset, 2)
                if len(sd) < 20 or sd[0] != 1 or not (sd[3] & 0x80):
                    bad("file %d: SD not self-relative revision 1" % fid)
            if rec.reparse_offset:
                rp = self.counted(rec.reparse_offset, 2)
                if struct.unpack_from("<I", rp)[0] != rec.reparse_tag:
                    bad("file %d: reparse tag mismatch" % fid)
            if not rec.is_dir and not rec.sparse and rec.stream_type == STREAM_DATA:
                self.obj(rec.stream_offset, rec.stream_length)  # in bounds
            if rec.stream_table_offset:
                self.streams(fid)
        self.check_objectids(bad)
        if problems:
            raise CorruptImage("; ".join(problems[:10]))

    def check_objectids(self, bad):
        for g, n in self.region_sets:
            for i in range(n):
                p = os.path.join(self.dir, "objectid_%s_%d" % (g, i))
                region = next(r for r in self.regions if r.set_guid == g and r.index == i)
                with open(p, "rb") as f:
                    raw = f.read()
                if raw[:8] != MAGIC or raw[12] != 2:
                    bad("%s: bad header" % p)
                    continue
                idx, rtype, _r, _r2, table, count = struct.unpack_from("<HBBIII", raw, 32)
                if idx != i or rtype != region.type:
                    bad("%s: index/type do not match its region" % p)
                prev = None
                for k in range(count):
                    length, digest, off = struct.unpack_from("<Q24sQ", raw, table + 40 * k)
                    key = (length, digest)
                    if prev is not None and not prev < key:
                        bad("%s: entries not sorted" % p)
                    prev = key
                    data = region.data[off:off + length]
                    if len(data) != length or hashlib.sha256(data).digest()[:24] != digest:
                        bad("%s: entry %d digest does not match the region's bytes" % (p, k))


def snapshot(image_path):
    """{lower-level comparable view}: path -> (Node, link group id) for model tests."""
    img = Image(image_path)
    out = {}
    for path, fid in img.walk().items():
        out[path] = img.node(fid)
    return img, out
