"""Decode each original and its sanitized copy with Pillow (HEIF through pillow-heif, which
bundles its own libheif; AVIF through Pillow's own libavif) and compare their pixels.

Usage: same_pixels.py ORIGINAL_DIR OUTPUT_DIR  (the outputs under the same relative names).
Prints one line per file; exits 1 if any output differs from its original or does not decode
where the original does.
"""

import sys
from pathlib import Path

from PIL import Image
import pillow_heif

pillow_heif.register_heif_opener()


def decode(path):
    try:
        with Image.open(path) as im:
            im.load()
            return (im.mode, im.size, im.tobytes()), None
    except Exception as e:  # the reason is printed; a mismatch fails below
        return None, f"{type(e).__name__}: {e}"


def main(originals, outputs):
    failed = 0
    files = sorted(p for p in Path(originals).rglob("*") if p.is_file())
    for original in files:
        rel = original.relative_to(originals)
        before, why_before = decode(original)
        after, why_after = decode(Path(outputs) / rel)
        if before is not None and before == after:
            print(f"{rel}: same pixels ({before[0]} {before[1][0]}x{before[1][1]})")
        elif before is None and after is None:
            print(f"{rel}: neither decodes ({why_before})")
        else:
            failed += 1
            print(f"{rel}: DIFFERS (before: {why_before or 'ok'}, after: {why_after or 'ok'})")
    print(f"{len(files) - failed} of {len(files)} files as their originals")
    return 1 if failed or not files else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
