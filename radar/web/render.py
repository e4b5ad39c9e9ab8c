"""What the pages show, computed in Python: highlighted snippets and findings, side-by-side diffs, charts.

Templates only format. Everything here returns plain data (strings, lists, dataclasses) or Markup built
from text that was escaped first, so notice text with HTML or script in it is always shown as text.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from radar.search import MARK_END, MARK_START


def snippet_html(snippet: str) -> Markup:
    """A search snippet with its match markers as <mark>: the text is escaped first, then marked."""
    escaped = str(escape(snippet or ""))
    # Markers are control characters, so they survive escaping unchanged and cannot come from markup.
    return Markup(escaped.replace(MARK_START, "<mark>").replace(MARK_END, "</mark>"))


def plain_snippet(snippet: str) -> str:
    return (snippet or "").replace(MARK_START, "").replace(MARK_END, "")


# -- findings highlighted in the notice text ------------------------------------------------------


@dataclass
class Segment:
    text: str
    findings: list[int] = field(default_factory=list)  # numbers of the findings covering this text

    @property
    def marked(self) -> bool:
        return bool(self.findings)

    @property
    def anchor(self) -> str:
        return f"finding-{self.findings[0]}" if self.findings else ""

    @property
    def refs(self) -> str:
        return ", ".join(str(n) for n in self.findings)


def segments(text: str, spans: list[tuple[int, int, int]]) -> list[Segment]:
    """Cut `text` at every span boundary; each piece lists the findings (number, start, end) covering it.

    Overlapping findings are fine (a hazard inside a category phrase); spans outside the text, from an
    older version of it, are ignored rather than trusted.
    """
    text = text or ""
    valid = [(n, s, e) for n, s, e in spans if s is not None and e is not None and 0 <= s < e <= len(text)]
    cuts = sorted({0, len(text)} | {s for _, s, _ in valid} | {e for _, _, e in valid})
    out = []
    for start, end in zip(cuts, cuts[1:]):
        covering = [n for n, s, e in valid if s <= start and end <= e]
        out.append(Segment(text[start:end], covering))
    return [s for s in out if s.text]


# -- diffs ----------------------------------------------------------------------------------------


@dataclass
class DiffRow:
    kind: str  # equal, replace, delete, insert, skip (elided unchanged lines), hunk (a hunk header)
    left_no: int | None = None
    left: str = ""
    right_no: int | None = None
    right: str = ""


_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$")


def unified_to_rows(diff: str) -> list[DiffRow]:
    """A unified diff as side-by-side rows: removed lines on the left, added on the right, paired up."""
    rows: list[DiffRow] = []
    left_no = right_no = 0
    removed: list[tuple[int, str]] = []
    added: list[tuple[int, str]] = []

    def flush() -> None:
        for i in range(max(len(removed), len(added))):
            lno, ltext = removed[i] if i < len(removed) else (None, "")
            rno, rtext = added[i] if i < len(added) else (None, "")
            kind = "replace" if lno is not None and rno is not None else ("delete" if lno is not None else "insert")
            rows.append(DiffRow(kind, lno, ltext, rno, rtext))
        removed.clear()
        added.clear()

    in_hunk = False
    for line in (diff or "").splitlines():
        match = _HUNK.match(line)
        if not in_hunk and not match:
            continue  # the ---/+++ file header (a removed YAML "---" inside a hunk is kept)
        if match:
            in_hunk = True
            flush()
            left_no, right_no = int(match.group(1)), int(match.group(2))
            rows.append(DiffRow("hunk", left=line))
            continue
        if line.startswith("-"):
            removed.append((left_no, line[1:]))
            left_no += 1
        elif line.startswith("+"):
            added.append((right_no, line[1:]))
            right_no += 1
        elif line.startswith("\\"):
            continue  # "\ No newline at end of file"
        else:
            flush()
            body = line[1:] if line.startswith(" ") else line
            rows.append(DiffRow("equal", left_no, body, right_no, body))
            left_no += 1
            right_no += 1
    flush()
    return rows


def lines_to_rows(before: list[str], after: list[str], context: int = 2) -> list[DiffRow]:
    """Two lists of lines as side-by-side rows; long unchanged stretches are elided to `context` lines."""
    rows: list[DiffRow] = []
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            span = list(range(i2 - i1))
            if len(span) > 2 * context + 1:
                keep = span[:context] + [None] + span[-context:]
                if i1 == 0:
                    keep = [None] + span[-context:]
                if i2 == len(before):
                    keep = span[:context] + [None]
            else:
                keep = span
            for k in keep:
                if k is None:
                    rows.append(DiffRow("skip"))
                else:
                    rows.append(DiffRow("equal", i1 + k + 1, before[i1 + k], j1 + k + 1, after[j1 + k]))
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            left = i1 + k < i2
            right = j1 + k < j2
            kind = "replace" if left and right else ("delete" if left else "insert")
            rows.append(DiffRow(kind, i1 + k + 1 if left else None, before[i1 + k] if left else "",
                                j1 + k + 1 if right else None, after[j1 + k] if right else ""))
    return rows


_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n+")


def field_lines(value: Any) -> list[str]:
    """A notice field as lines worth diffing: long text split into sentences, lists and dicts one per line."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part for part in _SENTENCE.split(value) if part.strip()]
    if isinstance(value, list):
        return [json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v for v in value]
    if isinstance(value, dict):
        return [f"{k}: {json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v}" for k, v in sorted(value.items())]
    return [str(value)]


@dataclass
class FieldDiff:
    name: str
    rows: list[DiffRow]


def version_diff(before: dict[str, Any], after: dict[str, Any]) -> list[FieldDiff]:
    """The fields that differ between two stored versions of a notice, each as side-by-side rows."""
    out = []
    for name in sorted(set(before) | set(after)):
        if before.get(name) == after.get(name):
            continue
        out.append(FieldDiff(name, lines_to_rows(field_lines(before.get(name)), field_lines(after.get(name)))))
    return out


# -- labels ---------------------------------------------------------------------------------------


def label_text(value: Any) -> str:
    """A source label value as one line of text (lists joined, dicts as key: value)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(label_text(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {label_text(v)}" for k, v in value.items())
    return str(value)


# -- charts ---------------------------------------------------------------------------------------


@dataclass
class Bar:
    label: str
    y: float
    parts: list[tuple[str, float, float, int]]  # (css class, x, width, value)
    total: int
    text_x: float


@dataclass
class BarChart:
    """A horizontal stacked bar chart, laid out in Python; the template only draws the rectangles."""

    width: int
    height: int
    bars: list[Bar]
    legend: list[tuple[str, str]]  # (css class, label)
    label_width: int
    bar_height: int
    title: str = ""


def bar_chart(rows: list[tuple[str, list[int]]], series: list[tuple[str, str]], *, width: int = 560,
              bar_height: int = 18, gap: int = 6, label_width: int = 150, title: str = "") -> BarChart | None:
    """rows: (label, [value per series]); series: (css class, legend label). None when there is nothing."""
    rows = [(label, [max(int(v or 0), 0) for v in values]) for label, values in rows]
    rows = [r for r in rows if sum(r[1]) > 0]
    if not rows:
        return None
    top = max(sum(values) for _, values in rows)
    plot = width - label_width - 60
    bars = []
    for i, (label, values) in enumerate(rows):
        x = float(label_width)
        parts = []
        for (css, _), value in zip(series, values):
            w = plot * value / top if top else 0
            parts.append((css, round(x, 1), round(w, 1), value))
            x += w
        bars.append(Bar(label=label[:24], y=i * (bar_height + gap), parts=parts, total=sum(values), text_x=round(x + 4, 1)))
    height = len(rows) * (bar_height + gap)
    return BarChart(width=width, height=height, bars=bars, legend=series, label_width=label_width,
                    bar_height=bar_height, title=title)
