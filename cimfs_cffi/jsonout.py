"""``--json``: what ``info``, ``ls``, ``verify`` and ``build`` print for programs.

The schema is stable (README "Machine-readable output"): every object carries
``"schema": 1``; a change that removes or changes a field raises it, new fields
may appear without a change.  Times are FILETIMEs (integers, 100 ns since
1601-01-01 UTC, 0 = not set): exact, and valid past the year 9999.  ``ls``
prints one object per line (JSON Lines) so a listing of a million files
streams instead of building one array.
"""
import os
import sys
from typing import Any, Dict, Iterable, List

from .reader import ATTR_REPARSE_POINT, CimImage, FileInfo

SCHEMA = 1


def emit(obj: Dict[str, Any]) -> None:
    import json  # here: only --json output needs it, and it is a tenth of the command's start-up
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")


def info(image: CimImage, path: str) -> Dict[str, Any]:
    s = image.summary()
    regions = []
    for r in image.regions:
        oid = r.objectid_path
        regions.append({"file": os.path.basename(r.path), "type": r.type, "bytes": r.size,
                        "objectid_file": os.path.basename(oid),
                        "objectid_bytes": os.path.getsize(oid) if os.path.exists(oid) else None})
    own = image.region_sets[-1]
    return {"schema": SCHEMA, "image": os.path.abspath(path), "format": "%d.%d" % (image.major, image.minor),
            "region_set": {"guid": own[0], "files": own[1]},
            "parent_sets": [{"guid": g, "files": n} for g, n in image.region_sets[:-1]],
            "regions": regions, "files": s["files"], "directories": s["directories"], "links": s["links"],
            "streams": s["streams"], "data_bytes": s["data_bytes"], "stored_bytes": s["stored_bytes"],
            "region_bytes": s["region_bytes"], "dedup_saved_bytes": s["dedup_saved_bytes"]}


def entry(path: str, info: FileInfo) -> Dict[str, Any]:
    """One ``ls`` line: ``path`` is the entry's image path (``\\``-separated, no leading ``\\``)."""
    from .metadata import parse_reparse
    kind = "directory" if info.is_dir else "file"
    target = None
    if info.attributes & ATTR_REPARSE_POINT:
        link = parse_reparse(info.reparse_data) if info.reparse_data else None
        if link is not None:
            kind, target = "symlink", link.target
    out = {"schema": SCHEMA, "path": path, "type": kind, "size": info.size, "attributes": info.attributes,
           "nlink": info.nlink, "file_id": info.file_id, "creation_time": info.creation_time,
           "last_write_time": info.last_write_time, "change_time": info.change_time,
           "last_access_time": info.last_access_time}
    if target is not None:
        out["target"] = target
    return out


def verify_result(path: str, findings: Iterable) -> Dict[str, Any]:
    items: List[Dict[str, str]] = [{"severity": f.severity, "object": f.object, "message": f.message}
                                   for f in findings]
    errors = sum(f["severity"] == "error" for f in items)
    return {"schema": SCHEMA, "image": os.path.abspath(path), "errors": errors, "warnings": len(items) - errors,
            "findings": items}


def build_result(summary) -> Dict[str, Any]:
    return {"schema": SCHEMA, "image": os.path.abspath(summary.image), "input_format": summary.input_format,
            "package": summary.package or None,
            "files": summary.files, "directories": summary.directories, "links": summary.links,
            "symlinks": summary.symlinks, "streams": summary.streams, "deleted": summary.deleted,
            "bytes": summary.bytes, "dedup_saved_bytes": summary.dedup_saved, "seconds": round(summary.seconds, 3),
            "names": list(summary.names), "warnings": list(summary.warnings)}
