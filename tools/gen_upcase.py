"""Generate libcimfs/cim_upcase_ranges.h: Windows' upcase table, as ranges.

Every image carries a 65,536-entry table mapping each BMP code unit to its
uppercase unit; names are compared and sorted through it.  Ours must be the
table Microsoft's CimFS writer writes -- Windows' NTFS ``$UpCase`` table of
Vista and later, 973 non-identity entries -- or names that Windows keeps
apart would collide in our images (and the reverse).  That table is exactly:

    upcase[c] = U   when c and U are a one-to-one simple case pair of
                    Unicode 5.1.0: U is c's simple uppercase, c is U's
                    simple lowercase, and both were assigned in Unicode 5.1;
    upcase[c] = c   otherwise (surrogates included).

"One-to-one" leaves out the characters whose uppercase lowercases to another
character: µ ı ſ ǅ ǈ ǋ ǲ U+0345 ς ϐ ϑ ϕ ϖ ϰ ϱ ϵ U+1E9B U+1FBE (and, in later
Unicode, U+1C80-U+1C88).  "Unicode 5.1" leaves out every pair added later:
Georgian Mtavruli, Cherokee lowercase, most of U+A7xx, ... (190 pairs in
Unicode 14).  Characters whose uppercase is not one character (ß, ŉ, ...)
map to themselves.  The rule was found by comparing with the upcase tables
of images that Microsoft's writer made (msixmgr, Windows 10 20H2), and it
reproduces them on all 65,536 units with no exception list:

    python tools/gen_upcase.py --check path/to/microsoft-made.cim

Data used, all from the running Python plus the list below:

* simple case mappings: ``str.upper()``/``str.lower()`` when they give one
  character, plus SIMPLE_ONLY (UnicodeData.txt field 12 entries that
  ``str.upper()`` expands).  Any Unicode version >= 5.1 gives the same pairs
  for 5.1's characters (Unicode's case-pair stability policy);
* "assigned in Unicode 5.1": assigned in Unicode 3.2 (``unicodedata.ucd_3_2_0``,
  in every Python) or listed in ADDED_4_0_TO_5_1 below.

The output is committed; the build expands it (libcimfs/cim_upcase.c), so
images never depend on the Python that builds the package.  Regenerate with
``python tools/gen_upcase.py``; the output must not change.
"""
import argparse
import os
import struct
import sys
import unicodedata
import uuid
from array import array

UNICODE_VERSION = "5.1.0"
DESCRIPTION = ("Windows NTFS $UpCase (Vista+): one-to-one simple case pairs of Unicode %s, %d mappings")
EXPECTED_MAPPINGS = 973

# UnicodeData.txt simple uppercase mappings that str.upper() cannot produce
# (it gives the SpecialCasing.txt expansion instead): Greek with ypogegrammeni.
SIMPLE_ONLY = {}
for base in (0x1F80, 0x1F90, 0x1FA0):
    for i in range(8):
        SIMPLE_ONLY[base + i] = base + 8 + i
SIMPLE_ONLY.update({0x1FB3: 0x1FBC, 0x1FC3: 0x1FCC, 0x1FF3: 0x1FFC})

# Every BMP character assigned in Unicode 4.0, 4.1, 5.0 or 5.1 (DerivedAge.txt)
# that has a one-to-one case partner in Unicode 14; inclusive ranges.
ADDED_4_0_TO_5_1 = (
    (0x023A, 0x024F),  # 4.1/5.0 Latin Extended-B
    (0x0370, 0x0373),  # 5.1 Greek
    (0x0376, 0x0377),  # 5.1 Greek
    (0x037B, 0x037D),  # 5.0 Greek
    (0x03CF, 0x03CF),  # 5.1 Greek
    (0x03F7, 0x03FB),  # 4.0 Greek
    (0x03FD, 0x03FF),  # 4.1 Greek
    (0x04CF, 0x04CF),  # 5.0 Cyrillic
    (0x04F6, 0x04F7),  # 4.1 Cyrillic
    (0x04FA, 0x04FF),  # 5.0 Cyrillic
    (0x0510, 0x0523),  # 5.0/5.1 Cyrillic Supplement
    (0x10F9, 0x10FA),  # 4.1 Georgian (their uppercase, Mtavruli, is Unicode 11)
    (0x1D79, 0x1D79),  # 4.1 Phonetic Extensions
    (0x1D7D, 0x1D7D),  # 4.1 Phonetic Extensions
    (0x1D8E, 0x1D8E),  # 4.1 Phonetic Extensions (its uppercase is Unicode 12)
    (0x1EFA, 0x1EFF),  # 5.1 Latin Extended Additional
    (0x214E, 0x214E),  # 5.0 Letterlike Symbols
    (0x2184, 0x2184),  # 5.0 Number Forms
    (0x2C00, 0x2C2E),  # 4.1 Glagolitic
    (0x2C30, 0x2C5E),  # 4.1 Glagolitic
    (0x2C60, 0x2C6F),  # 5.0/5.1 Latin Extended-C
    (0x2C72, 0x2C73),  # 5.1 Latin Extended-C
    (0x2C75, 0x2C76),  # 5.0 Latin Extended-C
    (0x2C80, 0x2CE3),  # 4.1 Coptic
    (0x2D00, 0x2D25),  # 4.1 Georgian Supplement
    (0xA640, 0xA65F),  # 5.1 Cyrillic Extended-B
    (0xA662, 0xA66D),  # 5.1 Cyrillic Extended-B
    (0xA680, 0xA697),  # 5.1 Cyrillic Extended-B
    (0xA722, 0xA72F),  # 5.1 Latin Extended-D
    (0xA732, 0xA76F),  # 5.1 Latin Extended-D
    (0xA779, 0xA787),  # 5.1 Latin Extended-D
    (0xA78B, 0xA78C),  # 5.1 Latin Extended-D
)


def _in_unicode_5_1(cp):
    if unicodedata.ucd_3_2_0.category(chr(cp)) != "Cn":
        return True
    return any(first <= cp <= last for first, last in ADDED_4_0_TO_5_1)


def _simple_upper(cp):
    up = chr(cp).upper()
    if len(up) == 1:
        return ord(up)
    return SIMPLE_ONLY.get(cp, cp)


def _simple_lower(cp):
    low = chr(cp).lower()
    return ord(low) if len(low) == 1 else cp


def upcase(cp):
    """The upcase table entry for BMP code unit cp."""
    if 0xD800 <= cp <= 0xDFFF:
        return cp
    up = _simple_upper(cp)
    if up == cp or up > 0xFFFF or _simple_lower(up) != cp:
        return cp
    if not (_in_unicode_5_1(cp) and _in_unicode_5_1(up)):
        return cp
    return up


def table():
    return [upcase(cp) for cp in range(0x10000)]


def ranges(tab):
    """Greedy runs (first, last, stride, delta) over code points that change."""
    changed = [cp for cp in range(0x10000) if tab[cp] != cp]
    out, i = [], 0
    while i < len(changed):
        first = changed[i]
        delta = tab[first] - first
        stride, last, j = 1, first, i + 1
        if j < len(changed) and tab[changed[j]] - changed[j] == delta and changed[j] - first in (1, 2):
            stride = changed[j] - first
            while j < len(changed) and changed[j] == last + stride and tab[changed[j]] - changed[j] == delta:
                last = changed[j]
                j += 1
        out.append((first, last, stride, delta))
        i = j if last != first else i + 1
    return out


def image_upcase_bytes(cim_path):
    """The 131072 bytes of the upcase table stored in a CIM image (any version, no parents),
    read straight from its files: the .cim's u64 at 0x38 locates the Filesystem object,
    whose first u64 locates the table (docs/format.md §6, §8).  A RegionOffset has the region
    index in bits 48-63; region i is the file region_<guid>_<i> beside the .cim, <guid>
    being the .cim's region set ID (at 0x20)."""
    with open(cim_path, "rb") as f:
        head = f.read(0x48)
    if len(head) != 0x48 or head[:8] != b"cimfile0":
        raise ValueError("%s: not a CIM image" % cim_path)
    guid = str(uuid.UUID(bytes_le=head[0x20:0x30]))
    directory = os.path.dirname(os.path.abspath(cim_path))
    names = {n.lower(): n for n in os.listdir(directory)}

    def read(region_offset, size):
        name = names["region_%s_%d" % (guid, region_offset >> 48)]
        with open(os.path.join(directory, name), "rb") as f:
            f.seek(region_offset & 0xFFFFFFFFFFFF)
            data = f.read(size)
        if len(data) != size:
            raise ValueError("%s: short read at %#x" % (cim_path, region_offset))
        return data

    filesystem = struct.unpack_from("<Q", head, 0x38)[0]
    return read(struct.unpack("<Q", read(filesystem, 8))[0], 0x20000)


def image_upcase_table(cim_path):
    """The upcase table of a CIM image as a list of 65536 ints."""
    tab = array("H", image_upcase_bytes(cim_path))
    if sys.byteorder == "big":
        tab.byteswap()
    return list(tab)


def header_text(tab):
    rs = ranges(tab)
    check = list(range(0x10000))  # expanding the ranges gives the table back
    for first, last, stride, delta in rs:
        for cp in range(first, last + 1, stride):
            check[cp] = cp + delta
    assert check == tab
    mappings = sum(1 for cp in range(0x10000) if tab[cp] != cp)
    lines = [
        "/* Generated by tools/gen_upcase.py - do not edit. */",
        "/* The upcase table of every image: Windows' NTFS $UpCase table (Vista and later), which",
        "   Microsoft's CimFS writer writes.  upcase[c] = U when c and U are a one-to-one simple",
        "   case pair of Unicode %s, else c.  Identical to the table in Microsoft-made images" % UNICODE_VERSION,
        "   on all 65536 units.  Non-identity entries as {first, last, stride, delta}. */",
        '#define CIM_UPCASE_DESCRIPTION "%s"' % (DESCRIPTION % (UNICODE_VERSION, mappings)),
        "#define CIM_UPCASE_MAPPINGS %d" % mappings,
        "#define CIM_UPCASE_RANGE_COUNT %d" % len(rs),
        "static const struct cim_upcase_range cim_upcase_ranges[CIM_UPCASE_RANGE_COUNT] = {",
    ]
    lines += ["    {0x%04X, 0x%04X, %d, %d}," % r for r in rs]
    lines.append("};")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", metavar="CIM", nargs="+",
                        help="compare the table with the upcase table of these (Microsoft-made) images "
                             "instead of writing the header; exit 1 on any difference")
    args = parser.parse_args(argv)
    for first, last in ADDED_4_0_TO_5_1:  # sanity: new since 3.2 and assigned now
        for cp in range(first, last + 1):
            assert unicodedata.ucd_3_2_0.category(chr(cp)) == "Cn" != unicodedata.category(chr(cp)), hex(cp)
    tab = table()
    mappings = sum(1 for cp in range(0x10000) if tab[cp] != cp)
    if args.check:
        bad = 0
        for path in args.check:
            theirs = image_upcase_table(path)
            diff = [cp for cp in range(0x10000) if theirs[cp] != tab[cp]]
            for cp in diff[:20]:
                print("U+%04X: image %04X, rule %04X" % (cp, theirs[cp], tab[cp]))
            print("%s: %s (%d differences)" % (path, "identical" if not diff else "DIFFERENT", len(diff)))
            bad += bool(diff)
        return 1 if bad else 0
    assert mappings == EXPECTED_MAPPINGS, mappings
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "libcimfs", "cim_upcase_ranges.h")
    with open(path, "w", newline="\n", encoding="ascii") as f:
        f.write(header_text(tab))
    print("%d ranges, %d code points changed" % (len(ranges(tab)), mappings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
