"""Write tests/vectors/protocol/ping.json from trust.vectors (run after a deliberate
protocol change; the test suite fails while the file and the code disagree)."""

from __future__ import annotations

import json
from pathlib import Path

from rcf.trust.vectors import ping_vectors

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "protocol" / "ping.json"

if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(ping_vectors(), indent=2) + "\n")
    print(f"wrote {OUT}")
