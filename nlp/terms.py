"""Term patterns per language: the words that signal categories, hazards and substances, from JSONL files.

``nlp/patterns/terms/<lang>.jsonl`` holds one pattern per line, in the shape of spaCy's EntityRuler
patterns: ``{"label": "category", "pattern": "toy", "id": "cat.toys"}``. The taxonomy YAML keeps the
tree and the crosswalks; this file says how each language writes a node. ``kind`` (default ``term``):

- ``term``: a word or phrase that signals the node ``id``, matched case-insensitively on whole tokens.
  A single word written with a leading hyphen (``"-spielzeug"``) also matches as the tail of a closed
  compound ("Kinderspielzeug"). The matcher derives English plurals (of the last word) and those of
  single French, Spanish and Italian words; other forms are written out.
- ``cue``: a word that signals ``id`` only beside one of the axis's cue nouns ("fall" in "Fall Hazard").
- ``cue_after`` / ``cue_before``: the axis's cue nouns, after the cue words ("... hazard") or before them
  ("risk of ..."); no ``id``.
- ``stop``: a phrase containing a term that does not signal it ("fire extinguisher", "Toys R Us"); no ``id``.

A bad line fails the load with the file, the line number and the fix (:class:`radar.errors.ConfigError`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from nlp.taxonomy import KNOWN_LANGUAGES, TERM_AXES, Taxonomy, normalize_label
from radar.errors import ConfigError

log = logging.getLogger(__name__)

TERMS_DIR = Path(__file__).resolve().parent / "patterns" / "terms"

# A term written with a leading hyphen ("-spielzeug") also matches as the tail of a closed compound
# ("Kinderspielzeug"); German and Dutch glue words together and a phrase matcher cannot see inside them.
COMPOUND_TAIL_MARK = "-"
MIN_COMPOUND_TAIL = 4

KINDS = ("term", "cue", "cue_after", "cue_before", "stop")
_WITH_ID = ("term", "cue")
_FIELDS = frozenset({"label", "pattern", "id", "kind"})


@dataclass
class AxisTerms:
    """One language's patterns of one axis."""

    terms: list[tuple[str, str]] = field(default_factory=list)
    """(pattern, id) in file order; a pattern with a leading hyphen is also a compound tail."""
    cues: list[tuple[str, str]] = field(default_factory=list)
    """(cue word, id)."""
    cue_after: list[str] = field(default_factory=list)
    cue_before: list[str] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)


@dataclass
class TermPatterns:
    """The term patterns of one language, checked against a taxonomy."""

    lang: str
    axes: dict[str, AxisTerms]

    def axis(self, name: str) -> AxisTerms:
        return self.axes.get(name) or AxisTerms()

    def node_terms(self, axis: str) -> dict[str, list[str]]:
        """Node id → its terms, in file order (compound tails keep their leading hyphen)."""
        out: dict[str, list[str]] = {}
        for pattern, node_id in self.axis(axis).terms:
            out.setdefault(node_id, []).append(pattern)
        return out


def _fail(path: Path, number: int, problem: str) -> ConfigError:
    return ConfigError(f"{path}:{number}: {problem}")


def parse_terms(path: Path, taxonomy: Taxonomy) -> TermPatterns:
    """Reads and checks one ``<lang>.jsonl`` (see the module docstring for the line format)."""
    lang = path.stem
    if lang not in KNOWN_LANGUAGES:
        raise ConfigError(f"{path}: {lang!r} is not a language code; name the file <code>.jsonl with a two-letter "
                          "ISO 639-1 code such as en.jsonl or fr.jsonl")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}); it must be a UTF-8 JSON Lines file") from exc
    axes: dict[str, AxisTerms] = {}
    seen: dict[tuple[str, str], tuple[str, int]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _fail(path, number, f"not a JSON object ({exc.msg} at column {exc.colno}); fix the line") from exc
        if not isinstance(row, dict):
            raise _fail(path, number, 'each line must be a JSON object like {"label": "category", "pattern": "toy", '
                                      '"id": "cat.toys"}')
        unknown = sorted(set(row) - _FIELDS)
        if unknown:
            raise _fail(path, number, f"unknown field(s) {', '.join(unknown)}; a line has label, pattern, id and kind")
        label, pattern, node_id, kind = row.get("label"), row.get("pattern"), row.get("id"), row.get("kind", "term")
        if label not in TERM_AXES:
            raise _fail(path, number, f"label {label!r} is not an axis with term patterns; use {', '.join(TERM_AXES)}")
        if kind not in KINDS:
            raise _fail(path, number, f"kind {kind!r} is unknown; use {', '.join(KINDS)} (default term)")
        if not isinstance(pattern, str) or not pattern.strip():
            raise _fail(path, number, "\"pattern\" must be a non-empty string")
        if kind in _WITH_ID:
            if not isinstance(node_id, str) or node_id not in taxonomy:
                raise _fail(path, number, f"unknown taxonomy id {node_id!r} for pattern {pattern!r}; use an id "
                                          f"defined in {taxonomy.directory} or add the node there")
            if taxonomy[node_id].axis != label:
                raise _fail(path, number, f"id {node_id!r} is a {taxonomy[node_id].axis} id but the line's label is "
                                          f"{label!r}; make them agree")
        elif node_id is not None:
            raise _fail(path, number, f"a {kind} line has no id (it signals no node); remove \"id\"")
        if pattern.startswith(COMPOUND_TAIL_MARK):
            word = pattern[len(COMPOUND_TAIL_MARK):]
            if kind != "term" or len(word) < MIN_COMPOUND_TAIL or not word.isalpha():
                raise _fail(path, number, f"compound tail {pattern!r} must be a term of one word of at least "
                                          f"{MIN_COMPOUND_TAIL} letters after the leading hyphen")
        terms = axes.setdefault(label, AxisTerms())
        if kind in _WITH_ID:
            # One language's matcher holds all its words of an axis: a word meaning two nodes would make
            # the finding depend on file order.
            key = (label, normalize_label(pattern.removeprefix(COMPOUND_TAIL_MARK)))
            other = seen.setdefault(key, (node_id, number))
            if other[1] != number:
                what = "repeats" if other[0] == node_id else f"is also a pattern of {other[0]!r} on"
                raise _fail(path, number, f"{label} pattern {pattern!r} of {node_id!r} {what} line {other[1]}; a word "
                                          "may signal one node per language: keep one line, on the most specific node")
            (terms.terms if kind == "term" else terms.cues).append((pattern, node_id))
        else:
            {"cue_after": terms.cue_after, "cue_before": terms.cue_before, "stop": terms.stops}[kind].append(pattern)
    return TermPatterns(lang, axes)


_CACHE: dict[tuple[str, str, int, int, str], TermPatterns] = {}


def load_terms(lang: str, taxonomy: Taxonomy, directory: Path | str | None = None) -> TermPatterns:
    """The checked patterns of ``lang`` (``<directory>/<lang>.jsonl``, default nlp/patterns/terms), cached
    while neither the file nor the taxonomy changes."""
    path = Path(directory or TERMS_DIR) / f"{lang}.jsonl"
    try:
        stat = path.stat()
    except OSError:
        available = ", ".join(languages(directory)) or "none"
        raise ConfigError(f"{path}: no term patterns for language {lang!r} (have: {available}); add the file, one "
                          'pattern per line like {"label": "category", "pattern": "toy", "id": "cat.toys"}') from None
    key = (str(path), lang, stat.st_mtime_ns, stat.st_size, taxonomy.fingerprint)
    if key not in _CACHE:
        if len(_CACHE) > 32:
            _CACHE.clear()
        _CACHE[key] = parse_terms(path, taxonomy)
    return _CACHE[key]


def languages(directory: Path | str | None = None) -> list[str]:
    """The languages with a pattern file."""
    folder = Path(directory or TERMS_DIR)
    return sorted(p.stem for p in folder.glob("*.jsonl")) if folder.is_dir() else []


def fingerprint(directory: Path | str | None = None) -> str:
    """SHA-256 over every pattern file: part of the classifier's version, so a changed word shows."""
    digest = hashlib.sha256()
    folder = Path(directory or TERMS_DIR)
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
