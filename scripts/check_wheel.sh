#!/usr/bin/env bash
# CI: test the wheel as a user installs it. Builds it, installs it into a fresh virtual
# environment outside the checkout, checks that it owns the import name `rcf` and nothing
# else (another distribution's cli/ or node/ must not shadow ours), then runs `rcf demo`
# from a folder outside the checkout, so nothing can be read from the source tree.
# Each problem is reported in one sentence; the script exits non-zero if there was one.
set -uo pipefail
cd "$(dirname "$0")/.."
CHECKOUT="$PWD"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rcf-wheel-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
problems=0
fail() { echo "check_wheel: $*" >&2; problems=$((problems + 1)); }
die() { echo "check_wheel: $*" >&2; exit 1; }

# Build from a copy of what git tracks (links kept), so the checkout gets no build/ and
# nothing untracked slips into the wheel.
mkdir -p "$WORK/checkout"
git -C "$CHECKOUT" ls-files -z --cached --others --exclude-standard \
  | (cd "$CHECKOUT" && tar --null -T - -cf -) | tar -C "$WORK/checkout" -xf - \
  || die "cannot copy the checkout's files to $WORK/checkout."
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" "$WORK/checkout" \
  >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; die "building the wheel failed (log above)."; }
wheel=$(ls "$WORK"/dist/rcf_exchange-*.whl 2>/dev/null | head -1)
[ -n "$wheel" ] || die "pip wheel wrote no rcf_exchange wheel."

"$PYTHON" -m venv "$WORK/venv" || die "cannot create a virtual environment with $PYTHON."
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install --quiet "$wheel" >"$WORK/install.log" 2>&1 \
  || { cat "$WORK/install.log" >&2; die "installing the wheel into a fresh venv failed (log above)."; }

# What the installed distribution put into site-packages, read from its own metadata.
# From outside the checkout: its rcf_exchange.egg-info (the editable install) must not answer.
mkdir -p "$WORK/run"
(cd "$WORK/run" && "$VPY" -) <<'PY' || problems=$((problems + $?))
import importlib.metadata as md
import sys

dist = md.distribution("rcf-exchange")
problems = []
top = (dist.read_text("top_level.txt") or "").split()
if top != ["rcf"]:
    problems.append(f"top_level.txt names {top}, not rcf alone.")
dist_info = f"rcf_exchange-{dist.version}.dist-info/"
outside = sorted(
    str(f) for f in dist.files or ()
    if not (str(f).startswith("rcf/") or str(f).startswith(dist_info)
            or str(f).startswith("../../../bin/"))
)
if outside:
    problems.append(f"RECORD installs {len(outside)} files outside rcf/, e.g. {outside[0]}.")
names = {str(f) for f in dist.files or ()}
for needed in ("rcf/trust/default_dictionary.toml", "rcf/deploy/systemd/rcf-hub.service",
               "rcf/deploy/systemd/rcf-node@.service", "rcf/protos/PROTOCOL.md",
               "rcf/cli/templates/situation-report.html"):
    if needed not in names:
        problems.append(f"the wheel does not ship {needed}.")
if not any(n.startswith("rcf/policies/") and n.endswith(".toml") for n in names):
    problems.append("the wheel ships no example policies (rcf/policies/*.toml).")
for p in problems:
    print(f"check_wheel: {p}", file=sys.stderr)
sys.exit(len(problems))
PY

# A throwaway distribution with the generic top-level names the old wheel used.
mkdir -p "$WORK/squatter/cli" "$WORK/squatter/node"
for pkg in cli node; do
  echo 'raise SystemExit("squatter code ran instead of rcf")' >"$WORK/squatter/$pkg/__init__.py"
done
cat >"$WORK/squatter/pyproject.toml" <<'TOML'
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"
[project]
name = "squatter"
version = "0.0.1"
[tool.setuptools]
packages = ["cli", "node"]
TOML
"$VPY" -m pip install --quiet "$WORK/squatter" >"$WORK/squatter.log" 2>&1 \
  || { cat "$WORK/squatter.log" >&2; die "installing the throwaway cli/node package failed."; }
(cd "$WORK" && "$WORK/venv/bin/rcf" --version >"$WORK/version.out" 2>&1) \
  || fail "rcf --version failed beside a package that ships cli/ and node/: $(tail -1 "$WORK/version.out")"

# Nothing below may find the checkout: run from a folder of its own, with a clean path.
(cd "$WORK/run" && env -u PYTHONPATH "$WORK/venv/bin/rcf" hub service-unit >"$WORK/unit.out" 2>&1) \
  || fail "rcf hub service-unit failed from the installed wheel: $(tail -1 "$WORK/unit.out")"
(cd "$WORK/run" && env -u PYTHONPATH "$WORK/venv/bin/rcf" demo >"$WORK/demo.log" 2>&1) \
  || { tail -20 "$WORK/demo.log" >&2; fail "rcf demo failed from the installed wheel (last lines above)."; }
if grep -qi "step skipped\|traceback" "$WORK/demo.log"; then
  fail "rcf demo from the installed wheel skipped a step or printed a traceback: $(grep -i -m1 "step skipped\|traceback" "$WORK/demo.log")"
fi

if [ "$problems" -gt 0 ]; then
  die "$problems problem(s) with the installed wheel."
fi
echo "check_wheel: the wheel installs rcf alone and rcf demo passes from it."
