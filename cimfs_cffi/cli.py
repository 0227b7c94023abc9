"""The ``cimfs`` command (also ``python -m cimfs_cffi``): a thin front end over the package.

Exit codes: 0 success, 1 failure (or findings from ``verify``), 2 usage.
Errors are one line on stderr, ``cimfs: error: ...``, never a traceback.
"""
import argparse
import os
import sys
from typing import List, Optional, cast

from . import __version__, jsonout, system_backend_available
from ._cimfs import ffi, lib
from .build_image import build, build_packages
from .builder import BuildSummary, Progress
from .errors import BuildError, CimError
from .image import FORMAT_VERSIONS
from .metadata import format_filetime, parse_reparse
from .reader import (ATTR_ARCHIVE, ATTR_DIRECTORY, ATTR_HIDDEN, ATTR_READONLY, ATTR_REPARSE_POINT, ATTR_SPARSE,
                     ATTR_SYSTEM, FileInfo, open_image)

_ATTR_LETTERS = ((ATTR_DIRECTORY, "d"), (ATTR_REPARSE_POINT, "l"), (ATTR_READONLY, "r"), (ATTR_HIDDEN, "h"),
                 (ATTR_SYSTEM, "s"), (ATTR_ARCHIVE, "a"), (ATTR_SPARSE, "S"))
_REGION_TYPES = {0: "metadata", 1: "data", 2: "small data"}


class Failure(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def _out():
    return sys.stdout.buffer


# ---- info ------------------------------------------------------------------------------------------
def cmd_info(args) -> int:
    with open_image(args.image) as image:
        if args.json:
            jsonout.emit(jsonout.info(image, args.image))
            return 0
        s = image.summary()
        w = sys.stdout.write
        w("image:          %s\n" % os.path.abspath(args.image))
        w("format:         version %d.%d\n" % (image.major, image.minor))
        own = image.region_sets[-1]
        w("region set:     %s (%d files)\n" % own)
        for guid, count in image.region_sets[:-1]:
            w("parent set:     %s (%d files)\n" % (guid, count))
        for r in image.regions:
            w("  %-60s %-10s %12d bytes\n" % (os.path.basename(r.path), _REGION_TYPES.get(r.type, "type %d" % r.type),
                                             r.size))
            oid = r.objectid_path
            w("  %-60s %-10s %12s\n" % (os.path.basename(oid), "objectid",
                                       "%d bytes" % os.path.getsize(oid) if os.path.exists(oid) else "missing"))
        w("files:          %d\n" % s["files"])
        w("directories:    %d\n" % s["directories"])
        w("hard links:     %d (names beyond each file's first)\n" % s["links"])
        w("streams:        %d alternate data streams\n" % s["streams"])
        w("data:           %d bytes in files and streams\n" % s["data_bytes"])
        w("stored:         %d bytes of data objects, %d bytes in region files\n" % (s["stored_bytes"],
                                                                                  s["region_bytes"]))
        w("dedup saved:    %d bytes\n" % s["dedup_saved_bytes"])
    return 0


# ---- ls --------------------------------------------------------------------------------------------
def attr_string(attributes: int) -> str:
    return "".join(letter if attributes & bit else "-" for bit, letter in _ATTR_LETTERS)


def _time(ticks: int) -> str:
    if not ticks:
        return "-" * 16
    return format_filetime(ticks)


def _long_line(name: str, info: FileInfo) -> str:
    line = "%s %3d %12d %s %s" % (attr_string(info.attributes), info.nlink, info.size, _time(info.last_write_time), name)
    if info.attributes & ATTR_REPARSE_POINT:
        link = parse_reparse(cast(bytes, info.reparse_data))  # the attribute means there is reparse data
        if link is not None:
            line += " -> " + link.target
    return line


def cmd_ls(args) -> int:
    with open_image(args.image) as image:
        info = image.stat(args.path)
        if args.json:
            _ls_json(image, info, args.recursive)
            return 0
        if not info.is_dir:
            print(_long_line(info.path, info) if args.long else info.path)
            return 0
        if not args.recursive:
            for name, child in image.scandir(info.path):
                print(_long_line(name, child) if args.long else name)
            return 0
        # The reader's own walk: parents first, each directory once (a cycle is reported as
        # corruption), no path resolved twice, so a deep or wide tree costs what it holds.
        first = True
        for directory, entries in image.directory_entries(info._rec, info.path):
            print("%s%s:" % ("" if first else "\n", "\\" + directory))
            first = False
            base = directory + "\\" if directory else ""
            for name, rec in entries:
                print(_long_line(name, FileInfo(image, rec, base + name)) if args.long else name)
    return 0


def _ls_json(image, info: FileInfo, recursive: bool) -> None:
    """JSON Lines: the entry itself if it is a file, else its children (and below, with -R)."""
    if not info.is_dir:
        jsonout.emit(jsonout.entry(info.path, info))
        return
    if not recursive:
        base = info.path + "\\" if info.path else ""
        for name, child in image.scandir(info.path):
            jsonout.emit(jsonout.entry(base + name, child))
        return
    for directory, entries in image.directory_entries(info._rec, info.path):
        base = directory + "\\" if directory else ""
        for name, rec in entries:
            jsonout.emit(jsonout.entry(base + name, FileInfo(image, rec, base + name)))


# ---- cat / extract / export / verify ------------------------------------------------------------------
def cmd_cat(args) -> int:
    with open_image(args.image) as image:
        with image.open(args.path) as f:
            out = _out()
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
            out.flush()
    return 0


def cmd_extract(args) -> int:
    from .extract import extract
    counts, report = extract(args.image, args.dest, allow_escaping_links=args.allow_escaping_links)
    for line in report:
        print("cimfs: warning: %s" % line, file=sys.stderr)
    if not args.quiet:
        print("extracted %(files)d files, %(directories)d directories, %(links)d hard links, %(symlinks)d symlinks,"
              " %(bytes)d bytes" % counts + (" (%d warnings)" % len(report) if report else ""))
    if counts["refused"]:
        print("cimfs: %d entries refused: they would reach outside %s" % (counts["refused"], args.dest),
              file=sys.stderr)
        return 1
    return 0


def cmd_export(args) -> int:
    from .export import export
    counts = export(args.image, args.tar)
    if not args.quiet:  # to stderr when the tar itself goes to stdout
        print("exported %(files)d files, %(directories)d directories, %(links)d hard links, %(streams)d streams,"
              " %(bytes)d bytes" % counts, file=sys.stderr if args.tar == "-" else sys.stdout)
    return 0


def cmd_verify(args) -> int:
    from .verify import ERROR, verify
    findings = verify(args.image)
    shown = [f for f in findings if f.severity == ERROR] if args.errors_only else findings
    if args.json:
        jsonout.emit(jsonout.verify_result(args.image, shown))
        return 1 if shown else 0
    for f in shown:
        print(f)
    if not args.quiet:
        errors = sum(f.severity == ERROR for f in findings)
        print("%s: %d errors, %d warnings" % (args.image, errors, len(findings) - errors), file=sys.stderr)
    return 1 if shown else 0


# ---- build -----------------------------------------------------------------------------------------
def add_build_command(command) -> None:
    c = command("build", cmd_build, "Build a CIM image from a directory, a (container layer) tar or an MSIX package.",
                ["cimfs build rootfs/ images/base.cim",
                 "cimfs build --layer layer1.tar.gz images/layer1.cim",
                 "cimfs build --layer --parent layer1.cim layer2.tar images/layer2.cim",
                 "curl -sL https://example.com/layer.tar.gz | cimfs build --layer - images/layer3.cim",
                 "cimfs build --root-directory msix MyApp_1.0.0.0_x64.msix appattach/MyApp.cim",
                 "cimfs build --packages --jobs 4 --root-directory msix packages/ appattach/"])
    c.add_argument("source", help="a directory, a tar file (plain, .gz, .bz2, .xz; .zst with 'zstandard'), "
                                  "'-' for a tar on standard input, an .msix/.appx package, or with --packages "
                                  "a folder of packages")
    c.add_argument("image", help="the .cim file to write (its directory holds the region files); "
                                 "with --packages, the folder that gets one NAME/NAME.cim per package")
    c.add_argument("--parent", metavar="PARENT", help="fork from this image (in the same directory)")
    c.add_argument("--layer", action="store_true",
                   help="a Windows container layer tar: also add hcsshim's Hives links and layout file")
    c.add_argument("--ignore-missing-links", action="store_true",
                   help="warn about, instead of failing on, hard links whose target is missing")
    c.add_argument("--format-version", choices=sorted(FORMAT_VERSIONS), default=None,
                   help="on-disk format version (default 2.0, or the parent's; 1.0 for Windows 10 20H2-era hosts, "
                        "3.0 for the newest; see docs/format.md)")
    c.add_argument("--root-directory", metavar="NAME",
                   help="packages: unpack into NAME\\<PackageFullName>\\ (msixmgr's -rootDirectory; "
                        "default: <PackageFullName>\\ at the image root)")
    c.add_argument("--backend", choices=("auto", "portable", "system"), default="auto",
                   help="the writer: Windows' cimfs.dll where present (auto), or this package's portable one")
    c.add_argument("--packages", action="store_true",
                   help="SOURCE is a folder of .msix/.appx packages: one image each, under IMAGE/NAME/NAME.cim")
    c.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="with --packages: build N packages at once (default: the number of CPUs)")
    c.add_argument("--on-collision", choices=("error", "keep-first", "keep-last", "rename"), default="error",
                   help="two source names that are one name on Windows (Index.html, index.html): stop "
                        "(default), keep the first, keep the last, or rename the later one (name~2.ext)")
    c.add_argument("--on-invalid", choices=("error", "skip", "rename", "keep"), default="error",
                   help="a name Windows cannot hold (':', trailing dot or space, CON, AUX.c, ...): stop "
                        "(default), skip it, repair it ('_'), or keep what the format can hold")
    c.add_argument("--no-pe-expansion", dest="expand_pe", action="store_false",
                   help="store executables as plain data, not as PE-image streams laid out for mapping "
                        "(Windows' default, ours too)")
    c.add_argument("--threads", type=int, default=None, metavar="N",
                   help="1: do everything on one thread; default: decompress, hash and write on helper threads "
                        "beside the caller; N: N-1 hashing helpers (the image is the same either way)")
    c.add_argument("--reproducible", action="store_true",
                   help="the same source gives byte-identical image files, names included (GUID from the content; "
                        "a directory's times are its files' modification times; SOURCE_DATE_EPOCH clamps them)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary line")
    c.add_argument("-v", "--verbose", action="store_true",
                   help="also say how the source was read (format, decompressor), which helper threads ran and "
                        "which SHA-512 code hashed")
    c.add_argument("--json", action="store_true", help="the summary as one JSON object on stdout (README "
                   "'Machine-readable output'); with --packages, one per package")


def cmd_build(args) -> int:
    if args.packages or args.jobs is not None:
        return _cmd_build_packages(args)
    progress = Progress(enabled=False) if args.quiet else Progress()
    summary = build(args.source, args.image, parent=args.parent, layer=args.layer,
                    ignore_missing_links=args.ignore_missing_links, progress=progress,
                    format_version=args.format_version, expand_pe=args.expand_pe,
                    root_directory=args.root_directory, backend=args.backend,
                    on_collision=args.on_collision, on_invalid=args.on_invalid, threads=args.threads,
                    reproducible=args.reproducible)
    for event in summary.names:
        print("cimfs: %s" % event, file=sys.stderr)
    for w in summary.warnings:
        print("cimfs: warning: %s" % w, file=sys.stderr)
    if args.verbose:
        helpers = ("none" if args.threads == 1 else
                   ("%d hashing" % (args.threads - 1) if args.threads else "1 hashing") + ", 1 writing") + (
                   ", 1 decompressing" if summary.input_format.startswith("tar") and args.threads != 1 else "")
        print("cimfs: %s read as %s; helper threads: %s; SHA-512: %s%s" % (
              args.source, summary.input_format, helpers, ffi.string(lib.CimfsSha512Impl()).decode(),
              "; reproducible" if args.reproducible else ""), file=sys.stderr)
    if args.json:
        jsonout.emit(jsonout.build_result(summary))
    elif not args.quiet:
        print(summary.line())
    return 0


def _cmd_build_packages(args) -> int:
    if not args.packages:
        raise BuildError("--jobs applies to --packages (a folder of packages)")
    if args.parent or args.layer:
        raise BuildError("--packages takes neither --parent nor --layer")
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        raise BuildError("--jobs must be at least 1")
    results = build_packages(args.source, args.image, jobs=jobs, format_version=args.format_version,
                             expand_pe=args.expand_pe, root_directory=args.root_directory,
                             ignore_missing_links=args.ignore_missing_links, backend=args.backend,
                             on_collision=args.on_collision, on_invalid=args.on_invalid,
                             threads=args.threads, reproducible=args.reproducible)
    failed = 0
    for package, summary, error in results:
        if error is not None:
            failed += 1
            print("cimfs: error: %s: %s" % (package, error), file=sys.stderr)
            if args.json:
                jsonout.emit({"schema": jsonout.SCHEMA, "source": os.path.abspath(package), "error": error})
        elif args.json:
            jsonout.emit(dict(jsonout.build_result(summary), source=os.path.abspath(package)))
        elif not args.quiet:
            print(cast(BuildSummary, summary).line())  # built (error is None), so there is a summary
    if not args.quiet or failed:
        print("%d of %d packages built" % (len(results) - failed, len(results)), file=sys.stderr)
    return 1 if failed else 0


# ---- argument parsing -----------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="cimfs", formatter_class=raw,
        description="Build, inspect, check and unpack CimFS images on any OS.",
        epilog="examples:\n  cimfs build rootfs/ out/layer.cim\n  cimfs info out/layer.cim\n"
               "  cimfs ls -l out/layer.cim Files\n  cimfs verify out/layer.cim\n"
               "\nRun 'cimfs COMMAND --help' for the options of a command.")
    p.add_argument("--version", action="version", version="cimfs %s (cimfs_cffi, %s writer)"
                   % (__version__, "portable" if not system_backend_available() else "portable and cimfs.dll"))
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name, func, help_text, examples):
        c = sub.add_parser(name, help=help_text, description=help_text, formatter_class=raw,
                           epilog="examples:\n" + "\n".join("  " + e for e in examples))
        c.set_defaults(func=func)
        return c

    c = command("info", cmd_info, "Show an image's version, region files and counts.",
                ["cimfs info layer.cim", "cimfs info --json layer.cim"])
    c.add_argument("--json", action="store_true", help="one JSON object (README 'Machine-readable output')")
    c.add_argument("image", help="the .cim file")

    c = command("ls", cmd_ls, "List a directory of an image (paths use / or \\; matching ignores case).",
                ["cimfs ls layer.cim", "cimfs ls -l layer.cim Files/Windows", "cimfs ls -lR layer.cim"])
    c.add_argument("image", help="the .cim file")
    c.add_argument("path", nargs="?", default="", help="directory or file in the image (default: the root)")
    c.add_argument("-l", dest="long", action="store_true",
                   help="long format: attributes (d dir, l reparse, r h s a S), link count, size, time")
    c.add_argument("-R", dest="recursive", action="store_true", help="list subdirectories recursively")
    c.add_argument("--json", action="store_true", help="one JSON object per entry (JSON Lines), full paths, "
                   "every field")

    c = command("cat", cmd_cat, "Write a file, or one of its alternate streams, to standard output.",
                ["cimfs cat layer.cim Files/hello.txt", "cimfs cat layer.cim Files/hello.txt:Zone.Identifier"])
    c.add_argument("image", help="the .cim file")
    c.add_argument("path", help="PATH or PATH:STREAM")

    c = command("extract", cmd_extract, "Unpack an image into a new or empty directory (POSIX): hard links, "
                "symlinks, and user.cimfs.* xattrs for what POSIX cannot hold.",
                ["cimfs extract layer.cim ./rootfs"])
    c.add_argument("image", help="the .cim file")
    c.add_argument("dest", help="destination directory (created; must be empty if it exists)")
    c.add_argument("--allow-escaping-links", action="store_true",
                   help="make symlinks whose target leads outside DEST too (refused by default: exit status 1)")
    c.add_argument("-q", "--quiet", action="store_true", help="no summary line (warnings still go to stderr)")

    c = command("export", cmd_export, "Write an image as a Windows-layer style PAX tar that 'cimfs build' "
                "turns back into an identical image (.gz/.bz2/.xz compress).",
                ["cimfs export layer.cim layer.tar", "cimfs export layer.cim layer.tar.gz",
                 "cimfs export layer.cim - | cimfs build --layer - copy/layer.cim"])
    c.add_argument("image", help="the .cim file")
    c.add_argument("tar", help="output tar file (written to a temporary name, then renamed); '-': an "
                               "uncompressed tar on standard output")
    c.add_argument("-q", "--quiet", action="store_true", help="no summary line")

    c = command("verify", cmd_verify, "Check an image against the format rules and its object-ID digests. "
                "Exit status 0 when clean, 1 with findings printed.",
                ["cimfs verify layer.cim", "cimfs verify --errors-only layer.cim"])
    c.add_argument("image", help="the .cim file")
    c.add_argument("--errors-only", action="store_true", help="ignore warnings (exit 0 if only warnings)")
    c.add_argument("--json", action="store_true", help="the findings and counts as one JSON object")
    c.add_argument("-q", "--quiet", action="store_true", help="no count line on stderr")
    add_build_command(command)
    c = command("gc", cmd_gc, "Remove what killed writers left in an image directory: temporary files, images "
                "under a build's temporary name, region files no image uses.",
                ["cimfs gc images/"])
    c.add_argument("directory", help="the directory holding the images")
    c.add_argument("-q", "--quiet", action="store_true", help="no list of what was removed")
    return p


def cmd_gc(args) -> int:
    from .publish import gc
    removed = gc(args.directory)
    if not args.quiet:
        for name in removed:
            print("removed %s" % name)
        print("%d files removed" % len(removed), file=sys.stderr)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (cimfs cat ... | head): point stdout at devnull so the
        # interpreter's final flush does not complain, and stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except CimError as e:
        shown = e.path if not e.path or len(e.path) < 300 else e.path[:150] + "..." + e.path[-100:]
        # cast: shown is a str wherever it is tested (e.path is set there)
        where = " (%s)" % shown if e.path and e.path not in e.reason and cast(str, shown) not in e.reason else ""
        print("cimfs: error: %s%s" % (e.reason, where), file=sys.stderr)
    except (OSError, ValueError, Failure) as e:
        if isinstance(e, OSError) and e.strerror:
            print("cimfs: error: %s%s" % (e.strerror, ": %s" % e.filename if e.filename else ""), file=sys.stderr)
        else:
            print("cimfs: error: %s" % e, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
