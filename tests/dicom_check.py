#!/usr/bin/env python3
"""An independent judge of de-identified DICOM files (pydicom, and dicom-anonymizer's copy of
PS3.15 Table E.1-1): shares no code with Asepsis's parser or walker.

    python3 tests/dicom_check.py ORIGINALS_DIR OUTPUTS_DIR

pairs files by name and prints one JSON object: per file whether the output parses, the
identifying attributes that survive with their original value (by tag, at any depth, or as the
value's bytes anywhere in the file), the private elements left, the UID problems (a UID the
table remaps left as it was, or an original UID's text anywhere in the output, or a U-coded UID
deleted instead of remapped) and whether the
pixel data and its description are identical; and the UID map (original -> output) seen, for
checking consistency across runs and tenants. Never prints a value other than UIDs.
"""

import json
import os
import sys

import pydicom
from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as table

# Rows whose original value must not survive (everything but U), and the UID rows.
VALUE_ROWS = (
    table.D_TAGS + table.Z_TAGS + table.X_TAGS + table.Z_D_TAGS + table.X_Z_TAGS
    + table.X_D_TAGS + table.X_Z_D_TAGS
)
UID_ROWS = table.U_TAGS + table.X_Z_U_STAR_TAGS
PIXEL_ATTRS = [
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames",
]
# Text values this long are looked for as raw bytes too (shorter ones match by chance).
RAW_MIN = 6


def matches(rows, tag):
    group, element = tag.group, tag.element
    for row in rows:
        if len(row) == 2:
            if row == (group, element):
                return True
        elif group & row[2] == row[0] and element & row[3] == row[1]:
            return True
    return False


def walk(ds):
    for element in ds:
        yield element
        if element.VR == "SQ" and element.value is not None:
            for item in element.value:
                yield from walk(item)


def values(element):
    if element.value is None or element.VR == "SQ":
        return []
    value = element.value
    items = value if isinstance(value, (list, pydicom.multival.MultiValue)) else [value]
    return [str(v) for v in items if str(v) != ""]


def check(original_path, output_path, uid_map):
    result = {
        "file": os.path.basename(original_path),
        "parsed": False,
        "surviving": [],
        "private": 0,
        "uid_problems": [],
        "pixels_identical": False,
    }
    original = pydicom.dcmread(original_path, force=True)
    try:
        output = pydicom.dcmread(output_path)
        output_bytes = open(output_path, "rb").read()
        list(walk(output))
        result["parsed"] = True
    except Exception as e:  # noqa: BLE001 - any failure to read is the verdict
        result["error"] = type(e).__name__
        return result
    by_tag = {}
    for element in walk(output):
        by_tag.setdefault(element.tag, set()).update(values(element))
        if element.tag.is_private:
            result["private"] += 1
    # Values the original also holds inside attributes the table keeps (an institution named
    # like part of the manufacturer, say) are not looked for as raw bytes.
    kept = set()
    for element in walk(original):
        if not element.tag.is_private and not matches(VALUE_ROWS + UID_ROWS, element.tag):
            kept.update(values(element))
    surviving = set()
    for element in walk(original):
        if element.tag.is_private:
            continue
        if matches(VALUE_ROWS, element.tag):
            for value in values(element):
                raw = len(value) >= RAW_MIN and element.VR in (
                    "PN", "LO", "SH", "LT", "ST", "UT", "UC", "DA", "DT", "AE",
                ) and not any(value in k for k in kept) and value.encode(errors="ignore") in output_bytes
                if value in by_tag.get(element.tag, ()) or raw:
                    surviving.add(f"({element.tag.group:04X},{element.tag.element:04X})")
        elif element.VR == "UI" and matches(UID_ROWS, element.tag):
            for uid in values(element):
                new = by_tag.get(element.tag, set())
                tag = f"({element.tag.group:04X},{element.tag.element:04X})"
                if uid in new or uid.encode() in output_bytes:
                    result["uid_problems"].append(f"{tag} kept")
                elif not new and matches(table.U_TAGS, element.tag):
                    # Deleted instead of remapped: references between files break.
                    result["uid_problems"].append(f"{tag} removed")
                if len(new) == 1:
                    uid_map.setdefault(uid, set()).update(new)
    result["surviving"] = sorted(surviving)
    same = lambda a, b: getattr(a, "PixelData", None) == getattr(b, "PixelData", None)  # noqa: E731
    described = all(original.get(a) == output.get(a) for a in PIXEL_ATTRS)
    result["pixels_identical"] = bool(same(original, output) and described)
    return result


def main():
    originals, outputs = sys.argv[1], sys.argv[2]
    uid_map, files = {}, []
    for name in sorted(os.listdir(originals)):
        out = os.path.join(outputs, name)
        if not os.path.exists(out):
            files.append({"file": name, "parsed": False, "error": "no output"})
            continue
        files.append(check(os.path.join(originals, name), out, uid_map))
    inconsistent = sorted(uid for uid, new in uid_map.items() if len(new) > 1)
    print(json.dumps({
        "files": files,
        "uid_map": {uid: sorted(new)[0] for uid, new in uid_map.items()},
        "inconsistent_uids": len(inconsistent),
    }))


if __name__ == "__main__":
    main()
