"""Images with one of everything, written through the public API, for the reader,
verifier, command line and build tests."""
import os
import struct

from cimfs_cffi import FileMetadata, Image, ea_buffer, mount_point_reparse, symlink_reparse

SPARSE, READONLY, HIDDEN, ARCHIVE = 0x200, 0x1, 0x2, 0x20
T0 = 133_000_000_000_000_000          # a FILETIME in 2022
# A self-relative SD: revision 1, SE_SELF_RELATIVE | SE_DACL_PRESENT, owner S-1-5-18, an empty DACL.
SYSTEM_SID = bytes([1, 1, 0, 0, 0, 0, 0, 5]) + struct.pack("<I", 18)
CUSTOM_SD = struct.pack("<BBHIIII", 1, 0, 0x8004, 20, 0, 0, 20 + len(SYSTEM_SID)) + SYSTEM_SID + \
    struct.pack("<BBHHH", 2, 0, 8, 0, 0)
BIG = bytes(range(256)) * 80          # 20480 bytes: the data region
TEXT = b"hello, cim\n"


def times(k):
    return dict(creation_time=T0 + k, last_write_time=T0 + 10 * k + 1, change_time=T0 + 100 * k + 2,
                last_access_time=T0 + 1000 * k + 3)


def build_rich_image(directory, name="rich.cim"):
    """Directories, small/big/empty/sparse files, hard links, an ADS on a file and on a
    directory, EAs, a custom SD, symlinks (safe and escaping), a junction, attributes."""
    os.makedirs(directory, exist_ok=True)
    with Image.create(directory, name) as im:
        im.add_directory("", FileMetadata(**times(1)))
        im.add_directory("Files", FileMetadata(**times(2)))
        im.add_directory("Files/sub", FileMetadata(attributes=HIDDEN, **times(3)))
        im.add_directory("Files/empty")
        im.add_file("Files/hello.txt", TEXT, FileMetadata(attributes=READONLY | ARCHIVE, **times(4)))
        im.add_file("Files/big.bin", BIG, FileMetadata(security_descriptor=CUSTOM_SD, **times(5)))
        im.add_file("Files/sub/copy.bin", BIG, FileMetadata(**times(6)))       # dedup with big.bin
        im.add_file("Files/sub/zero", b"")
        im.open_file("Files/sparse", 1 << 20, FileMetadata(attributes=SPARSE)).close()
        im.add_file("Files/ea.txt", b"ea", FileMetadata(ea=ea_buffer({"user.one": b"1", "TWO": b"22" * 10})))
        im.add_alternate_stream("Files/hello.txt", "Zone.Identifier", b"[ZoneTransfer]\r\nZoneId=3\r\n")
        im.add_alternate_stream("Files/sub", "dirstream", b"on a directory")
        im.add_file("Files/link", b"", FileMetadata(reparse_data=symlink_reparse("sub/copy.bin")))
        im.add_file("Files/escape", b"", FileMetadata(reparse_data=symlink_reparse("../../../etc/passwd")))
        im.add_directory("Files/junction", FileMetadata(reparse_data=mount_point_reparse("C:\\Windows")))
        im.create_hard_links([("Files/hello-again.txt", "Files/hello.txt"),
                              ("Files/sub/hello.txt", "Files/hello.txt")])
        im.commit()
    return os.path.join(directory, name)


def build_wide_image(directory, files, name="wide.cim"):
    """One directory of ``files`` empty files named f000000..."""
    with Image.create(directory, name) as im:
        im.add_directory("d")
        for i in range(files):
            im.add_file("d/f%06d" % i, b"")
        im.commit()
    return os.path.join(directory, name)


def patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def record_location(img, fid):
    """(region file, byte offset) of a file record."""
    offset, _count, entry_size, _ = img.tables[(fid - 1) // 1024]
    return img.regions[offset >> 48].path, (offset & ((1 << 48) - 1)) + ((fid - 1) % 1024) * entry_size


def object_location(img, region_offset):
    """(region file, byte offset) of a RegionOffset."""
    return img.regions[region_offset >> 48].path, region_offset & ((1 << 48) - 1)


def tree(path):
    """What "identical" means for a round trip, as the reader sees it: for every name, the
    first name of its link group, metadata, data, streams, SD, EA and reparse buffer."""
    from cimfs_cffi import open_image
    from cimfs_cffi.reader import FileInfo
    out, first = {}, {}
    with open_image(path) as img:
        for p, rec in img.iter_tree():
            group = first.setdefault(rec.id, p)
            info = FileInfo(img, rec, p)
            data = None
            if not rec.is_dir:
                with img.stream_reader(p, rec.default_stream) as f:
                    data = f.read()
            streams = {}
            for name, s in img.streams_of(rec).items():
                with img.stream_reader(name, s) as f:
                    streams[name] = f.read()
            out[p] = dict(group=group, attributes=info.attributes, times=rec.times, sparse=rec.sparse, data=data,
                          streams=streams, sd=info.security_descriptor, ea=info.ea, reparse=info.reparse_data)
    return out
