"""Write tests/vectors/protocol/<name>.json from trust.vectors (run after a deliberate
protocol change; the test suite fails while the files and the code disagree)."""

from __future__ import annotations

import json
from pathlib import Path

from rcf.trust.vectors import VECTORS

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "protocol"

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in VECTORS.items():
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(build(), indent=2) + "\n")
        print(f"wrote {path}")
