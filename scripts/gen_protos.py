"""Regenerate protos/rcf/v1/*_pb2*.py and their .pyi stubs from the .proto sources.

Run from the repository root: ``python scripts/gen_protos.py``. With ``--check`` it
regenerates into a temporary folder and exits non-zero if anything differs
from what is committed (the CI drift check).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos" / "rcf" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generate(out_root: Path) -> list[Path]:
    """Generate code for every .proto under protos/rcf/v1 into out_root."""
    # protoc finds the mypy plugins on PATH; they live beside this interpreter.
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    sources = sorted(p.relative_to(ROOT).as_posix() for p in PROTO_DIR.glob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    out_dir = out_root / "protos" / "rcf" / "v1"
    return sorted(p for p in out_dir.iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed code is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        produced = generate(Path(tmp))
        if args.check:
            stale = [
                p.name
                for p in produced
                if not (PROTO_DIR / p.name).exists()
                or not filecmp.cmp(p, PROTO_DIR / p.name, shallow=False)
            ]
            committed = {p.name for p in PROTO_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
            extra = committed - {p.name for p in produced}
            if stale or extra:
                print(f"generated protobuf code is out of date: {sorted(stale) + sorted(extra)}")
                print("run: python scripts/gen_protos.py")
                return 1
            print(f"protobuf code up to date ({len(produced)} files)")
            return 0
        for p in produced:
            shutil.copyfile(p, PROTO_DIR / p.name)
        print(f"wrote {len(produced)} files to {PROTO_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
