"""Line numbers for the keys of a TOML policy file.

tomllib reports none for values it parsed successfully, so this scans the
source: table headers (``[policy]``, ``[[rule]]``, ``[rule.rate_limit]``) and
``key =`` lines, skipping the insides of multi-line strings and arrays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ARRAY_HEADER = re.compile(r"^\[\[\s*([^\]]+?)\s*\]\]")
_TABLE_HEADER = re.compile(r"^\[\s*([^\]]+?)\s*\]")
_KEY = re.compile(
    r'^((?:[A-Za-z0-9_\-]+|"[^"]*"|\'[^\']*\')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"))*)\s*='
)
_INLINE_KEY = re.compile(r"[{,]\s*([A-Za-z0-9_\-]+)\s*=")

Path_ = tuple[str | int, ...]


def _split_key(raw: str) -> list[str]:
    return [part.strip().strip("\"'") for part in raw.split(".")]


def _scan_value(text: str, depth: int, in_string: str | None) -> tuple[int, str | None]:
    """Bracket depth and open multi-line string after text, ignoring strings and comments."""
    i = 0
    while i < len(text):
        if in_string:
            if in_string in ('"""', "'''"):
                end = text.find(in_string, i)
                if end < 0:
                    return depth, in_string
                i, in_string = end + 3, None
                continue
            ch = text[i]
            if ch == "\\" and in_string == '"':
                i += 2
                continue
            if ch == in_string:
                in_string = None
            i += 1
            continue
        for quote in ('"""', "'''"):
            if text.startswith(quote, i):
                in_string = quote
                i += 3
                break
        else:
            ch = text[i]
            if ch in "\"'":
                in_string = ch
            elif ch == "#":
                return depth, None
            elif ch in "[{":
                depth += 1
            elif ch in "]}":
                depth = max(0, depth - 1)
            i += 1
    # A single-quoted or double-quoted string cannot span lines.
    return depth, in_string if in_string in ('"""', "'''") else None


@dataclass
class SourceMap:
    """(table path, key path) → the 1-based line where it is written."""

    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, *path: str | int) -> int:
        """The most specific known line for path (falls back to its parents, then 1)."""
        p: Path_ = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return 1


def build_source_map(text: str) -> SourceMap:
    smap = SourceMap()
    counts: dict[str, int] = {}
    context: Path_ = ()
    depth = 0
    open_string: str | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if open_string or depth:
            depth, open_string = _scan_value(raw, depth, open_string)
            continue
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _ARRAY_HEADER.match(line)
        if m:
            parts = _split_key(m.group(1))
            name = ".".join(parts)
            index = counts.get(name, 0)
            counts[name] = index + 1
            # [[rule]] is the only array of tables a policy has; nested ones map under it.
            context = (*parts, index) if len(parts) == 1 else (*_with_index(parts, counts),)
            smap.lines.setdefault(context, lineno)
            continue
        m = _TABLE_HEADER.match(line)
        if m:
            parts = _split_key(m.group(1))
            context = tuple(_with_index(parts, counts))
            smap.lines.setdefault(context, lineno)
            continue
        m = _KEY.match(line)
        if m:
            key_path = (*context, *_split_key(m.group(1)))
            smap.lines.setdefault(key_path, lineno)
            rest = line[m.end() :]
            if rest.lstrip().startswith("{"):
                for sub in _INLINE_KEY.finditer(rest):
                    smap.lines.setdefault((*key_path, sub.group(1)), lineno)
            depth, open_string = _scan_value(rest, 0, None)
    return smap


def _with_index(parts: list[str], counts: dict[str, int]) -> list[str | int]:
    """[rule.rate_limit] after the n-th [[rule]] belongs to rule n."""
    out: list[str | int] = []
    for i, part in enumerate(parts):
        out.append(part)
        prefix = ".".join(parts[: i + 1])
        if prefix in counts and i < len(parts) - 1:
            out.append(counts[prefix] - 1)
    return out
