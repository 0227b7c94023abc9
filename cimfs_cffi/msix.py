"""MSIX and APPX packages as a build source, unpacked straight from the zip into an image the
way Microsoft's ``msixmgr -Unpack ... -fileType cim`` lays them out for app attach.

What the one same-input/same-output pair Microsoft published shows (docs/format.md §17), and
what follows from it here:

* the package lands in ``<root directory>\\<PackageFullName>\\``; the full name is
  ``Name_Version_Architecture_ResourceId_PublisherId`` from ``AppxManifest.xml``, the
  publisher ID being the first 8 bytes of the SHA-256 of the UTF-16LE publisher, in
  Crockford base 32 (13 characters);
* every part of the package is kept (``AppxManifest.xml``, ``AppxBlockMap.xml``,
  ``AppxSignature.p7x``, ``AppxMetadata\\*``) except ``[Content_Types].xml``; part names
  are percent-decoded (OPC);
* order of creation (so FileIDs): in each directory its subdirectories first, then its files,
  both in Windows' case-insensitive order, then the subdirectories' contents, depth first;
* files have the ARCHIVE attribute, directories none beyond DIRECTORY; the image root is left
  alone (no SD, zero times).

Not reproducible, and so chosen here: times (Microsoft's are when msixmgr unpacked the package;
ours are the zip entries' times, read as UTC, and for directories the newest entry's), and
security descriptors (Microsoft's carry the ACLs of the machine it ran on; ours are the NULL-DACL
default).  Bundles and encrypted packages are refused with a message saying so.
"""
import datetime
import hashlib
import os
import urllib.parse
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

from .metadata import ARCHIVE, FileMetadata, to_filetime
from .paths import upcase

PACKAGE_SUFFIXES = (".msix", ".appx")
BUNDLE_SUFFIXES = (".msixbundle", ".appxbundle")
ENCRYPTED_SUFFIXES = (".emsix", ".eappx", ".emsixbundle", ".eappxbundle")
MANIFEST = "AppxManifest.xml"
BUNDLE_MANIFEST = "AppxMetadata/AppxBundleManifest.xml"
DROPPED_PARTS = ("[Content_Types].xml",)
MAX_MANIFEST_BYTES = 4 << 20  # a manifest is a few KiB; refuse to parse a huge one
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class PackageError(ValueError):
    """The file is not a package this builder can unpack (bundle, encrypted, damaged...)."""


def publisher_id(publisher: str) -> str:
    """The 13-character publisher ID Windows derives from a package's Publisher."""
    digest = hashlib.sha256(publisher.encode("utf-16-le")).digest()[:8]
    bits = int.from_bytes(digest, "big") << 1  # 64 bits, padded to 65 = 13 x 5
    return "".join(_CROCKFORD[(bits >> (5 * (12 - i))) & 31] for i in range(13)).lower()


@dataclass(frozen=True)
class PackageIdentity:
    name: str
    version: str
    architecture: str
    resource_id: str
    publisher: str

    @property
    def full_name(self) -> str:
        return "%s_%s_%s_%s_%s" % (self.name, self.version, self.architecture, self.resource_id,
                                   publisher_id(self.publisher))


def looks_like_package(path: str) -> bool:
    """Whether ``path`` should be read as a package: by its suffix, or a zip holding a manifest."""
    lower = path.lower()
    if lower.endswith(PACKAGE_SUFFIXES + BUNDLE_SUFFIXES + ENCRYPTED_SUFFIXES):
        return True
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return MANIFEST in names or BUNDLE_MANIFEST in names


def _local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def read_identity(zf: zipfile.ZipFile, path: str) -> PackageIdentity:
    try:
        info = zf.getinfo(MANIFEST)
    except KeyError:
        if BUNDLE_MANIFEST in zf.namelist():
            raise PackageError("%s is a bundle (.msixbundle): bundles are not supported; build the package for "
                               "your architecture from inside it" % path) from None
        raise PackageError("%s has no %s: not an MSIX/APPX package" % (path, MANIFEST)) from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise PackageError("%s: %s is %d bytes, too large to be a manifest" % (path, MANIFEST, info.file_size))
    try:
        root = ET.fromstring(zf.read(info))
    except ET.ParseError as e:
        raise PackageError("%s: %s is not well-formed XML (%s)" % (path, MANIFEST, e)) from None
    identity = next((el for el in root if _local_name(el.tag) == "Identity"), None)
    if _local_name(root.tag) != "Package" or identity is None:
        raise PackageError("%s: %s has no <Package><Identity>" % (path, MANIFEST))
    a = identity.attrib
    missing = [k for k in ("Name", "Publisher", "Version") if not a.get(k)]
    if missing:
        raise PackageError("%s: the manifest's Identity lacks %s" % (path, ", ".join(missing)))
    return PackageIdentity(a["Name"], a["Version"], a.get("ProcessorArchitecture", "neutral").lower(),
                           a.get("ResourceId", ""), a["Publisher"])


@dataclass
class _Dir:
    dirs: Dict[str, "_Dir"] = field(default_factory=dict)
    files: Dict[str, zipfile.ZipInfo] = field(default_factory=dict)


def _zip_time(info: zipfile.ZipInfo) -> int:
    try:
        when = datetime.datetime(*info.date_time, tzinfo=datetime.timezone.utc)
    except ValueError:  # a zero or out-of-range DOS date
        when = datetime.datetime(1980, 1, 1, tzinfo=datetime.timezone.utc)
    return to_filetime(when)


def _windows_order(names) -> List[str]:
    return sorted(names, key=lambda n: upcase(n).encode("utf-16-be"))


class Package:
    """An open package: its identity and its parts, in the order msixmgr creates them."""

    def __init__(self, path: str):
        self.path = path
        lower = path.lower()
        if lower.endswith(ENCRYPTED_SUFFIXES):
            raise PackageError("%s is an encrypted package: encrypted packages are not supported" % path)
        if lower.endswith(BUNDLE_SUFFIXES):
            raise PackageError("%s is a bundle: bundles are not supported; build the package for your "
                               "architecture from inside it" % path)
        try:
            self.zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile as e:
            raise PackageError("%s is not a readable package (zip): %s" % (path, e)) from None
        try:
            for info in self.zip.infolist():  # before anything is read: zipfile cannot read these
                if info.flag_bits & 0x1:
                    raise PackageError("%s: part %r is encrypted: encrypted packages are not supported"
                                       % (path, info.filename))
            self.identity = read_identity(self.zip, path)
            self.tree, self.newest = self._tree()
        except BaseException:
            self.zip.close()
            raise

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> "Package":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _tree(self) -> Tuple[_Dir, int]:
        root, newest = _Dir(), 0
        for info in self.zip.infolist():
            name = urllib.parse.unquote(info.filename)
            if not name:  # zipfile's is_dir() cannot even look at an empty name
                raise PackageError("%s: a part without a name" % self.path)
            if info.is_dir() or name in DROPPED_PARTS:
                continue
            parts = name.split("/")
            if any(p in ("", ".", "..") for p in parts) or "\\" in name:
                raise PackageError("%s: part name %r is not a plain relative path" % (self.path, info.filename))
            node = root
            for p in parts[:-1]:
                node = node.dirs.setdefault(p, _Dir())
            node.files[parts[-1]] = info
            newest = max(newest, _zip_time(info))
        return root, newest

    def entries(self, root_directory: Optional[str]) -> Iterator[Tuple[str, FileMetadata, Optional[zipfile.ZipInfo]]]:
        """(image path, metadata, zip entry or None for a directory), in msixmgr's order."""
        base = self.identity.full_name
        if root_directory:
            yield root_directory, self._dir_metadata(), None
            base = root_directory + "\\" + base
        yield base, self._dir_metadata(), None
        yield from self._walk(self.tree, base)

    def _dir_metadata(self) -> FileMetadata:
        t = self.newest
        return FileMetadata(creation_time=t, last_write_time=t, change_time=t, last_access_time=t)

    def _walk(self, d: _Dir, at: str) -> Iterator[Tuple[str, FileMetadata, Optional[zipfile.ZipInfo]]]:
        subdirs = _windows_order(d.dirs)
        for name in subdirs:
            yield at + "\\" + name, self._dir_metadata(), None
        for name in _windows_order(d.files):
            info = d.files[name]
            t = _zip_time(info)
            md = FileMetadata(attributes=ARCHIVE, creation_time=t, last_write_time=t, change_time=t,
                              last_access_time=t)
            yield at + "\\" + name, md, info
        for name in subdirs:
            yield from self._walk(d.dirs[name], at + "\\" + name)

    def open(self, info: zipfile.ZipInfo):
        return self.zip.open(info)


def package_files(folder: str) -> List[str]:
    """The package files directly in ``folder``, sorted."""
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if n.lower().endswith(PACKAGE_SUFFIXES) and os.path.isfile(os.path.join(folder, n)))
