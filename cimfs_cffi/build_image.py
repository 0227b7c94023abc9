"""``build()``: a directory, a (layer) tar or an MSIX/APPX package into a CIM image.

Data flows one way: a source module (:mod:`.from_directory`, :mod:`.from_tar`,
:mod:`.from_package`) walks its input and feeds a :class:`~.builder.Builder`,
which turns entries into :class:`~cimfs_cffi.Image` calls; hard links go to
the bulk link API in batches.  A new source is one new module.  The image is
written in a staging folder (:mod:`.publish`) and moved over ``IMAGE`` only
when it is complete, so a failed build leaves nothing behind and never damages
an image that was already there.  Each source's conventions are in its module
and in the README ("cimfs build").
"""
import datetime
import os
import time
from typing import Any, Dict, List, Optional, Tuple

from . import publish
from .builder import STDIN, Builder, BuildSummary, Progress
from .errors import BuildError, CimError
from .from_directory import add_directory
from .image import Image
from .metadata import to_filetime
from .names import InvalidName, NameCollision, NamePolicy
from .paths import upcase
from .reader import open_image

__all__ = ["build", "build_packages", "BuildSummary", "BuildError", "NameCollision", "InvalidName", "Progress"]


# Sources are imported when a build needs them: a directory build does not pay for the tar
# and package readers (zipfile, XML, tarfile, lzma: about a fifth of the start-up).
def _msix():
    from . import msix
    return msix


def build(source, image, *, parent: Optional[str] = None, layer: bool = False, ignore_missing_links: bool = False,
          progress: Optional[Progress] = None, format_version: Optional[str] = None,
          expand_pe: bool = True, root_directory: Optional[str] = None, backend: str = "auto",
          on_collision: str = "error", on_invalid: str = "error", threads: Optional[int] = None,
          reproducible: bool = False) -> BuildSummary:
    """Build the image file ``image`` (a path ending in the ``.cim`` name; region files go beside it)
    from ``source``: a directory, a tar file (plain, gzip, bzip2, xz; zstd with ``zstandard``; ``"-"``:
    a tar on standard input, e.g. a pipe; a directory named ``-`` is ``./-``), or
    an MSIX/APPX package, unpacked under ``root_directory`` (msixmgr's ``-rootDirectory``) as
    ``<root_directory>/<PackageFullName>/``.

    ``parent`` names an image in the same directory to fork from (a layer
    stack is a chain of forks).  ``layer`` adds what hcsshim adds to a Windows
    layer (hive links and ``layout`` for a base layer).  An existing ``image``
    is replaced only once the new one is complete; its region files are
    removed if no other image in the directory uses them.  ``format_version``
    is "1.0", "2.0" or "3.0" (docs/format.md §18; default 2.0, or the parent's).
    ``expand_pe`` False stores PE files as plain data instead of PE-image streams.  ``backend`` is
    that of :meth:`Image.create` ("auto": Windows' cimfs.dll where present, else the portable writer).
    ``threads`` 1 does everything on the calling thread; by default (None) a tar is decompressed
    on a helper thread, files are hashed on another and written by a third while this one builds;
    N gives the writer N - 1 hashing helpers (README "Speed").  The image is byte-identical whatever it is.
    ``reproducible``: the same source gives byte-identical image files, names included, on any
    machine and thread count (``CIM_CREATE_IMAGE_CONSISTENT_CIM``: the region-set GUID is a
    digest of the content; a directory's files get their modification time as every time; with
    ``SOURCE_DATE_EPOCH`` set, later times are clamped to it and directories no entry names get
    it).  README "Reproducible images".
    ``on_collision`` and ``on_invalid`` are the name policy (:mod:`.names`): by default a source
    with two names Windows sees as one, or a name Windows cannot hold, raises
    :class:`NameCollision` or :class:`InvalidName` (with the paths) and nothing is written; what
    the other choices renamed, skipped, merged or replaced is listed in ``summary.names``.
    """
    started = time.monotonic()
    source, image = os.fspath(source), os.fspath(image)
    directory, name = os.path.split(os.path.abspath(image))
    from_stdin = source == STDIN
    if not from_stdin and not os.path.exists(source):
        raise BuildError("no such source: %s" % source, path=source)
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise BuildError("threads must be at least 1, not %r" % (threads,))
    time_limit = _source_date_epoch() if reproducible else None
    try:
        names = NamePolicy(on_collision, on_invalid)
    except ValueError as e:
        raise BuildError(str(e)) from None
    is_package = not from_stdin and os.path.isfile(source) and _msix().looks_like_package(source)
    if root_directory is not None and not is_package:
        raise BuildError("--root-directory applies to MSIX/APPX packages only", path=source)
    parent_name = os.path.basename(parent) if parent else None
    if parent and os.path.dirname(os.path.abspath(os.path.join(directory, parent))) != directory:
        raise BuildError("the parent image must be in the image's directory (%s)" % directory, path=parent)
    os.makedirs(directory, exist_ok=True)
    progress = progress or Progress(enabled=False)
    summary = BuildSummary(image=image)
    parent_reader = open_image(os.path.join(directory, parent_name)) if parent_name else None

    def fill(img: Image) -> None:
        b = Builder(img, parent_reader, summary, progress, ignore_missing_links, names, threads != 1,
                    reproducible, time_limit)
        if not from_stdin and os.path.isdir(source):
            if layer:
                raise BuildError("--layer takes a layer tar, not a directory", path=source)
            add_directory(source, b)
        elif is_package:
            if layer:
                raise BuildError("--layer takes a layer tar, not a package", path=source)
            from .from_package import add_package
            add_package(source, b, root_directory)
        else:
            from .from_tar import add_tar
            add_tar(source, b, layer)
        b.finish()
        summary.names = names.events
        img.commit()

    options: Dict[str, Any] = dict(parent=parent_name, format_version=format_version, expand_pe=expand_pe,
                                   backend=backend, threads=threads, reproducible=reproducible)
    try:
        if publish.can_stage(directory, fork=parent_name is not None):
            summary.warnings += ["removed %s, left by a build that was killed" % n
                                 for n in publish.remove_dead_builds(directory)]
            staging = publish.Staging(directory, name, parent_name)
            try:
                with Image.create(staging.path, name, **options) as img:
                    fill(img)
                staging.publish(summary.warnings)
            finally:
                staging.close()
        else:
            publish.build_in_place(directory, name, image, options, fill, summary.warnings)
    finally:
        if parent_reader is not None:
            parent_reader.close()
        progress.done()
    summary.seconds = time.monotonic() - started
    return summary


def _source_date_epoch() -> Optional[int]:
    """SOURCE_DATE_EPOCH (reproducible-builds.org) as a FILETIME, or None when unset."""
    text = os.environ.get("SOURCE_DATE_EPOCH")
    if text is None or text == "":
        return None
    try:
        seconds = int(text)
        if seconds < 0:
            raise ValueError
        return to_filetime(datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc))
    except (ValueError, OverflowError, OSError):
        raise BuildError("SOURCE_DATE_EPOCH must be a whole number of seconds from 1970 to 9999, not %r"
                         % text) from None


def _build_one_package(work) -> Tuple[str, Optional[BuildSummary], Optional[str]]:
    package, image, options = work
    try:
        return package, build(package, image, **options), None
    except (CimError, OSError) as e:
        return package, None, str(e)


def build_packages(folder, out_dir, *, jobs: int = 1, **options) -> List[Tuple[str, Optional[BuildSummary],
                                                                              Optional[str]]]:
    """Every .msix/.appx directly in ``folder`` into ``out_dir/NAME/NAME.cim`` (NAME: the package
    file's name without its suffix), ``jobs`` builds at once, each in a process of its own.  Each
    image gets its own directory: the unit an admin copies to the share.  ``options`` are
    those of :func:`build`.  Returns [(package, summary or None, error or None)], in name order;
    one package failing does not stop the others."""
    folder, out_dir = os.fspath(folder), os.fspath(out_dir)
    if not os.path.isdir(folder):
        raise BuildError("not a folder of packages: %s" % folder, path=folder)
    packages = _msix().package_files(folder)
    if not packages:
        raise BuildError("no .msix or .appx packages in %s" % folder, path=folder)
    names = [os.path.splitext(os.path.basename(p))[0] for p in packages]
    clash = {n for n in names if [upcase(m) for m in names].count(upcase(n)) > 1}
    if clash:
        raise BuildError("packages that would share an output folder: %s" % ", ".join(sorted(clash)), path=folder)
    work = [(p, os.path.join(out_dir, n, n + ".cim"), options) for p, n in zip(packages, names)]
    if jobs <= 1 or len(work) == 1:
        return [_build_one_package(w) for w in work]
    import concurrent.futures
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(jobs, len(work))) as pool:
        return list(pool.map(_build_one_package, work))
