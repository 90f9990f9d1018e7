"""Regenerate protos/v1/*_pb2*.py and their .pyi stubs from protos/rcf/v1/*.proto.

Run from the repository root: ``python scripts/gen_protos.py``. With ``--check`` it
regenerates into a temporary folder and exits non-zero if anything differs
from what is committed (the CI drift check).

The .proto sources sit at the path their package names (``rcf/v1/``, compiled with
``-I protos``), as a foreign implementation expects. protoc writes Python imports from
those paths (``from rcf.v1 import …``); ours live in the ``rcf.protos.v1`` package, so the
generated imports are rewritten to it, the same way on every run.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_DIR = PROTO_ROOT / "rcf" / "v1"
OUT_DIR = PROTO_ROOT / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
_IMPORT = re.compile(r"^from rcf\.v1 import ", re.M)
_MODULE = re.compile(r"'rcf\.v1\.(\w+_pb2)'")


def generate(out_root: Path) -> list[Path]:
    """Generate code for every .proto under protos/rcf/v1 into out_root/rcf/v1."""
    # protoc finds the mypy plugins on PATH; they live beside this interpreter.
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    sources = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_DIR.glob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    out_dir = out_root / "rcf" / "v1"
    produced = sorted(p for p in out_dir.iterdir() if p.name.endswith(GENERATED_SUFFIXES))
    for p in produced:
        text = _IMPORT.sub("from rcf.protos.v1 import ", p.read_text())
        p.write_text(_MODULE.sub(r"'rcf.protos.v1.\1'", text))
    return produced


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
                if not (OUT_DIR / p.name).exists()
                or not filecmp.cmp(p, OUT_DIR / p.name, shallow=False)
            ]
            committed = {p.name for p in OUT_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
            extra = committed - {p.name for p in produced}
            if stale or extra:
                print(f"generated protobuf code is out of date: {sorted(stale) + sorted(extra)}")
                print("run: python scripts/gen_protos.py")
                return 1
            print(f"protobuf code up to date ({len(produced)} files)")
            return 0
        for p in produced:
            shutil.copyfile(p, OUT_DIR / p.name)
        print(f"wrote {len(produced)} files to {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
