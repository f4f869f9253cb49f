"""Edit the `mapRoles` text of the aws-auth ConfigMap without disturbing anything else in it.

aws-auth is hand-edited in most clusters: comments, quoting, ordering and indentation matter to the
people who own it. So we edit the text, not a re-serialised copy: an entry is appended after the last
item of the block sequence with the same indentation, and removed by cutting exactly the lines of its
item. Every edit is verified by parsing the result and comparing it with the intended list; if the text
edit cannot be proven right (flow style, odd layout), we fall back to a full re-dump, which keeps every
entry and their order but not the formatting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import yaml

Entry = dict[str, Any]


class MalformedAwsAuth(ValueError):
    """mapRoles is not a YAML list of mappings with a rolearn: never overwrite it."""


def parse_map_roles(text: str | None) -> list[Entry]:
    if text is None or not text.strip():
        return []
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise MalformedAwsAuth(f"data.mapRoles is not valid YAML{where}: {problem}") from None
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedAwsAuth(f"data.mapRoles must be a YAML list of mappings, found a {type(value).__name__}")
    for index, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            raise MalformedAwsAuth(f"data.mapRoles item {index} is a {type(item).__name__}, expected a mapping")
        if not isinstance(item.get("rolearn"), str) or not item["rolearn"]:
            raise MalformedAwsAuth(f"data.mapRoles item {index} has no rolearn")
        groups = item.get("groups", [])
        if groups is not None and not (isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
            raise MalformedAwsAuth(f"data.mapRoles item {index} ({item['rolearn']}): groups must be a list of strings")
    return value


def _dump(entries: list[Entry]) -> str:
    return yaml.safe_dump(entries, default_flow_style=False, sort_keys=False, width=4096) if entries else ""


def _block_sequence(text: str) -> yaml.SequenceNode | None:
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        return node
    return None


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _verified(candidate: str, expected: list[Entry], fallback: Callable[[], str]) -> str:
    try:
        if parse_map_roles(candidate) == expected:
            return candidate
    except MalformedAwsAuth:
        pass
    return fallback()


def append_entry(text: str | None, entry: Mapping[str, Any]) -> str:
    """`text` with `entry` added as the last item; existing bytes untouched whenever possible."""
    current = parse_map_roles(text)
    expected = [*current, dict(entry)]
    if not text or not text.strip():
        return _dump(expected)
    seq = _block_sequence(text)
    if seq is None:
        return _dump(expected)
    indent = " " * seq.start_mark.column
    rendered = "".join(indent + line + "\n" for line in _dump([dict(entry)]).splitlines())
    base = text if text.endswith("\n") else text + "\n"
    return _verified(base + rendered, expected, lambda: _dump(expected))


def remove_entries(text: str | None, doomed: Callable[[Entry], bool]) -> tuple[str, list[Entry]]:
    """`text` without the items for which `doomed(item)` is true, and the removed items."""
    current = parse_map_roles(text)
    removed = [e for e in current if doomed(e)]
    if not removed or text is None:
        return text or "", []
    kept = [e for e in current if not doomed(e)]
    seq = _block_sequence(text)
    if seq is None:
        return _dump(kept), removed
    cuts: list[tuple[int, int]] = []
    for position, (node, value) in enumerate(zip(seq.value, current, strict=True)):
        if not doomed(value):
            continue
        start = _line_start(text, node.start_mark.index)
        if position + 1 < len(seq.value):
            end = _line_start(text, seq.value[position + 1].start_mark.index)
        else:
            end = node.end_mark.index
            newline = text.find("\n", end - 1 if end and text[end - 1] == "\n" else end)
            end = len(text) if newline < 0 else newline + 1
        cuts.append((start, end))
    candidate = text
    for start, end in reversed(cuts):
        candidate = candidate[:start] + candidate[end:]
    return _verified(candidate, kept, lambda: _dump(kept)), removed
