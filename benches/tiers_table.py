"""Prints `GET /api/v1/status/tiers` (on stdin) as one line per tier: rows, bytes, bytes
per row and, given the raw samples' bytes as the first argument, the share of them;
watermark and lag otherwise. Used by benches/long_range.sh."""

import json
import sys

raw = int(sys.argv[1]) if len(sys.argv) > 1 else None
for t in json.load(sys.stdin)["data"]:
    r, b = t["rows"], t["bytes"]
    line = f"tier {t['name']}: {r} rows, {b} bytes = {b / max(r, 1):.1f} B/row, {t['files']} files"
    if raw:
        line += f", {100 * b / raw:.1f}% of raw"
    else:
        line += f", watermark {t['watermark_ms']}, lag {t['lag_seconds']} s"
    print(line)
