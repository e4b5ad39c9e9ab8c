"""Classify notices: categories, hazards, jurisdictions and everything a listing rule needs, each finding
with the label or span behind it."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import spacy
from spacy.language import Language
from spacy.util import compile_infix_regex

from nlp import components as _components  # noqa: F401 - importing registers the radar_* factories
from nlp import extract as _extract  # noqa: F401 - registers the extraction factories
from nlp.components import FALLBACK_LANGUAGE, SPAN_KEYS, SUPPORTED_LANGUAGES, term_language
from nlp.derive import Deriver
from nlp.extract import (EXTRACT_KEYS, EXTRACTORS, MIXED_SHARE, OVERRIDE_CONFIDENCE, gtin_valid, language_identifier,
                         normalize_gtin, parse_date_span)
from nlp.taxonomy import Taxonomy, load_cached
from nlp.terms import fingerprint as terms_fingerprint

log = logging.getLogger(__name__)

PIPELINE_VERSION = "0.3.0"
"""Bumped when the code's behaviour changes; :attr:`Classifier.version` adds the taxonomy's fingerprint."""

MAX_CHARS = 100_000
"""Longer titles or texts are cut here: beyond it a notice is a document dump, and time grows linearly."""

# Scores. A source's own label is the publisher's statement, so it is certain. Words in the title
# name what the notice is about; words in the body may be context ("unlike toys, ...").
SCORE_SOURCE_LABEL = 1.0
SCORE_TITLE = 0.8
SCORE_TEXT = 0.6
SCORE_TEXT_REPEAT = 0.05
"""Added per further mention in the body, up to SCORE_TEXT_MAX: repetition is evidence, weakly."""
SCORE_TEXT_MAX = 0.75

OVERRIDE_LETTERS = 300
"""Detection overrides a declared language only on at least this many letters: short titles of brand
and model names ("Corsa – Opel") fool any detector."""

TITLE_SEPARATOR = "\n\n"
"""Title and text go through spaCy as one doc (half the per-doc overhead); no term spans a blank line."""

Axis = Literal["category", "hazard", "jurisdiction", "severity", "substance", "regulator", "legal_ref", "identifier",
               "brand", "date", "policy", "risk", "language", "disagreement"]
Method = Literal["source_label", "text", "rule", "disagreement", "model"]
"""source_label: the publisher said it; text: a span of the title or text; rule: derived from other
findings (policy, risk); disagreement: a text finding that contradicts the source's labels; model: the
trained text classifier (``radar nlp train``)."""

LABEL_FIELDS: tuple[tuple[str, Axis, Axis | None], ...] = (
    ("category_labels", "category", None),
    # OPSS and FDA spiders put the risk level here ("Serious", "Class II"): a risk label that is no
    # hazard but is a known severity is read as one, not counted as an unmapped hazard.
    ("risk_labels", "hazard", "severity"),
    ("country_labels", "jurisdiction", None),
)
LABEL_KEY_AXES: tuple[Axis, ...] = ("category", "hazard", "severity")
"""Axes whose taxonomy file may name keys of a notice's ``labels`` (``label_keys``) to read."""
LABEL_SEPARATORS = (";", "|")
"""Besides commas: the separators publishers pack several labels with ("électrocution|incendie")."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the pipeline found in a notice, with what justified it."""

    axis: Axis
    """category, hazard, jurisdiction, severity (source risk levels), substance, regulator, legal_ref,
    identifier, brand, date, policy, risk, language or disagreement."""
    value: str
    """A taxonomy id (``cat.toys.magnetic``, ``substance.lead``, ``policy.prohibited``, ``reg.uk.opss``), or
    for the other axes: a canonical reference ("Directive 2009/48/EC"), ``gtin:…``/``model:…``/``batch:…``,
    ``brand:…``, an ISO date, ``risk.score``, a language code; for a disagreement the id the text says."""
    score: float
    """0..1; 1.0 for a source label mapped through a crosswalk."""
    method: Method
    field: str
    """Where the evidence is: title, text, category_labels, risk_labels, country_labels,
    labels.<key>, or source (the publisher's own jurisdiction)."""
    evidence: str
    """The exact span text (``field_value[start:end]``) or the source label as written."""
    start: int | None = None
    end: int | None = None
    role: str | None = None
    """Jurisdictions: notified_by, origin, sold_in, publisher. Legal refs and identifiers: the kind
    (eu_regulation, us_cfr, standard, gtin, model, batch). Dates: effective, comment_deadline, recall,
    expiry, production. Substances: "measured 120 mg/kg" or "limit 0.1 %". Risk: the level (serious,
    high, medium, low). Language: declared, detected, override or secondary. Disagreement: the axis."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _setting(name: str, default: Any) -> Any:
    """A Risk Radar setting, or the default where the settings cannot be read (plain library use)."""
    try:
        from radar.settings import get_settings

        return getattr(get_settings(), name)
    except Exception:  # noqa: BLE001 - a missing or broken settings file must not stop classification
        return default


def pipeline_language(language: str | None) -> str:
    """The spaCy language a notice runs on: its primary language subtag if supported, else "xx"."""
    code = (language or "").strip().lower().replace("_", "-").split("-")[0]
    if code in SUPPORTED_LANGUAGES:
        return code
    log.debug("no pipeline for language %r, using the multi-language one", language)
    return FALLBACK_LANGUAGE


def build_nlp(lang: str, taxonomy_dir: Path | str | None = None, terms_dir: Path | str | None = None) -> Language:
    """A blank spaCy pipeline for ``lang`` with the radar components (no downloaded model needed); the
    taxonomy from ``taxonomy_dir`` and the term patterns from ``terms_dir`` (defaults: the bundled ones)."""
    nlp = spacy.blank(lang)
    # Split hyphenated words in every language ("USB-Ladegerät", "e-cigarette"): German and Dutch keep
    # them whole by default, which would hide "Ladegerät" from the matcher. Patterns are tokenized by
    # this same tokenizer, so "e-cigarette" as a term still matches. Angle brackets split too, so a
    # markup remnant a spider missed ("charger</h1>") does not glue itself to a word.
    infixes = list(nlp.Defaults.infixes or []) + [r"(?<=[^\W_])[-\u2010\u2013](?=[^\W\d_])", r"[<>]"]
    nlp.tokenizer.infix_finditer = compile_infix_regex(infixes).finditer
    directory = str(taxonomy_dir) if taxonomy_dir is not None else None
    terms = {"taxonomy_dir": directory, "terms_dir": str(terms_dir) if terms_dir is not None else None}
    nlp.add_pipe("radar_terms", name="radar_categories", config={"axis": "category", **terms})
    nlp.add_pipe("radar_terms", name="radar_hazards", config={"axis": "hazard", **terms})
    nlp.add_pipe("radar_jurisdictions", config={"taxonomy_dir": directory})
    if "substance" in load_cached(taxonomy_dir).axes:
        nlp.add_pipe("radar_terms", name="radar_substances", config={"axis": "substance", **terms})
        nlp.add_pipe("radar_substance_amounts")
    nlp.add_pipe("radar_regulators", config={"taxonomy_dir": directory})
    for factory in EXTRACTORS[1:]:
        nlp.add_pipe(factory)
    return nlp


def _get(notice: Any, name: str) -> Any:
    if isinstance(notice, Mapping):
        return notice.get(name)
    return getattr(notice, name, None)


def _as_labels(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [str(v) for v in value if v is not None and str(v).strip()]
    return [str(value)]


@dataclass(slots=True)
class _Prepared:
    lang: str
    title: str
    text: str
    joined: str
    findings: list[Finding]
    source: str = ""
    labels: Any = None
    dayfirst: bool = True
    others: dict[str, list[tuple[int, int, bool]]] = dataclasses.field(default_factory=dict)
    """Mixed-language notices: each other pipeline language → (start, end, own) ranges of ``joined`` to read
    with its patterns; ``own`` when detected as that language (not a fragment too short to count)."""


PRODUCT_FIELDS = (("brand", "brand"), ("model", "identifier"), ("batch", "identifier"), ("gtin", "identifier"))
DATE_FIELDS = (("effective_date", "effective"), ("comment_deadline", "comment_deadline"))
MARKUP = re.compile(r"<\s*/?\s*(?:p|div|span|br|b|i|a|h\d|script|style|table|td|tr|li|ul)\b[^>]*>", re.IGNORECASE)

class Classifier:
    """Finds categories, hazards and jurisdictions in notices.

    Source labels go through the taxonomy's crosswalks (score 1.0); title and text go through a
    spaCy pipeline per language. A label no crosswalk maps is logged and counted in
    :attr:`unmapped`, never guessed.
    """

    def __init__(self, taxonomy: Taxonomy, *, max_chars: int = MAX_CHARS, detect_language: bool = True,
                 model: Any = None, terms_dir: Path | str | None = None) -> None:
        self.taxonomy = taxonomy
        self.terms_dir = terms_dir
        """Folder of the term patterns (nlp/patterns/terms/<lang>.jsonl by default)."""
        self.max_chars = max_chars
        self.unmapped: Counter[tuple[str, str, str]] = Counter()
        """(source, axis, label) → how many notices sent that label without a crosswalk mapping."""
        self.notes: Counter[tuple[str, str]] = Counter()
        """(kind, detail) → how many notices: empty, truncated, markup, unsupported_language, mixed_language,
        language_override, invalid_gtin. Each kind is logged once per classifier, then counted."""
        self.detect_language = detect_language
        self.model = model
        """A trained :class:`nlp.train.ModelPredictor`: adds ``model`` findings on the axes (category,
        hazard) where a notice has neither a source label nor a text finding."""
        self._nlps: dict[str, Language] = {}
        self._deriver = Deriver(taxonomy)

    @classmethod
    def load(cls, taxonomy_dir: Path | str | None = None, *, max_chars: int = MAX_CHARS,
             detect_language: bool = True, model_dir: Path | str | None = None,
             terms_dir: Path | str | None = None) -> Classifier:
        """The classifier on the taxonomy in ``taxonomy_dir`` and the term patterns in ``terms_dir`` (defaults:
        the bundled ones); ``model_dir`` (default: the ``nlp_model_dir`` setting, empty for none) adds a
        model trained by ``radar nlp train``."""
        if model_dir is None:
            model_dir = _setting("nlp_model_dir", "")
        model = None
        if model_dir:
            from nlp.train import ModelPredictor

            model = ModelPredictor.load(model_dir)
        return cls(load_cached(taxonomy_dir), max_chars=max_chars, detect_language=detect_language, model=model,
                   terms_dir=terms_dir)

    def note(self, kind: str, detail: str, message: str, *args: Any) -> None:
        """Counts a bad-input note; the first of each kind is logged (at INFO) with its explanation."""
        if not any(k == kind for k, _ in self.notes):
            log.info(message, *args)
        self.notes[(kind, detail)] += 1

    @property
    def version(self) -> str:
        """What classified a notice: code version plus a fingerprint of the taxonomy and the term patterns
        (+m when a model is used)."""
        data = hashlib.sha256((self.taxonomy.fingerprint + terms_fingerprint(self.terms_dir)).encode()).hexdigest()
        return f"{PIPELINE_VERSION}+tax.{data[:12]}" + ("+m" if self.model is not None else "")

    def nlp(self, language: str | None) -> Language:
        """The (cached) pipeline for a notice language."""
        lang = pipeline_language(language)
        if lang not in self._nlps:
            self._nlps[lang] = build_nlp(lang, self.taxonomy.directory, self.terms_dir)
        return self._nlps[lang]

    # ---- public ------------------------------------------------------------------------------

    def classify(self, notice: Any) -> list[Finding]:
        """Findings for one notice (any object or mapping with title, text, language, source, *_labels)."""
        prepared = self._prepare(notice)
        return self._finish(prepared, self.nlp(prepared.lang)(prepared.joined))

    def classify_many(self, notices: Iterable[Any], batch_size: int = 256) -> Iterator[list[Finding]]:
        """Findings per notice, in input order; runs ``nlp.pipe`` per language within each batch."""
        iterator = iter(notices)
        while batch := list(islice(iterator, batch_size)):
            prepared = [self._prepare(notice) for notice in batch]
            by_lang: dict[str, list[int]] = defaultdict(list)
            for i, item in enumerate(prepared):
                by_lang[item.lang].append(i)
            docs: list[Any] = [None] * len(prepared)
            for lang, indexes in by_lang.items():
                texts = (prepared[i].joined for i in indexes)
                for i, doc in zip(indexes, self.nlp(lang).pipe(texts, batch_size=batch_size)):
                    docs[i] = doc
            for item, doc in zip(prepared, docs):
                yield self._finish(item, doc)

    # ---- steps -------------------------------------------------------------------------------

    def _prepare(self, notice: Any) -> _Prepared:
        source = _get(notice, "source") or ""
        title = self._clip(_get(notice, "title"), "title", source)
        text = self._clip(_get(notice, "text"), "text", source)
        if not title.strip() and not text.strip():
            self.note("empty", str(source), "a %s notice has no title and no text: only its labels and product "
                      "fields are classified", source or "source-less")
        for name, value in (("title", title), ("text", text)):
            if MARKUP.search(value[:5000]):
                self.note("markup", name, "a %s notice's %s holds HTML markup; the spider should strip it (classified "
                          "as is: tags split words, evidence offsets still point into the raw field)", source, name)
        findings = self._label_findings(notice, str(source))
        findings += self._field_findings(notice)
        lang, language_findings, others = self._language(_get(notice, "language"), title, text, str(source))
        findings += language_findings
        publisher = self.taxonomy.publisher_for_source(str(source))
        juris = self.taxonomy.publishers[publisher].jurisdiction if publisher else None
        dayfirst = not (juris or "").startswith(("juris.us", "juris.ca"))
        return _Prepared(lang, title, text, title + TITLE_SEPARATOR + text, findings, str(source),
                         _get(notice, "labels"), dayfirst, others)

    def _language(self, declared: Any, title: str, text: str,
                  source: str) -> tuple[str, list[Finding], dict[str, list[tuple[int, int, bool]]]]:
        """The pipeline language, the language findings (the declared one, confirmed or overridden by detection)
        and, for a mixed-language notice, the other languages' ranges (see :meth:`_language_ranges`)."""
        declared_code = (str(declared).strip().lower().replace("_", "-").split("-")[0] if declared else "") or None
        out: list[Finding] = []
        if declared_code:
            out.append(Finding("language", declared_code, SCORE_SOURCE_LABEL, "source_label", "language", str(declared),
                               role="declared"))
        chosen = declared_code
        segments: tuple[tuple[str, int, int], ...] = ()
        field = "text"
        if self.detect_language:
            field, body = ("text", text) if sum(c.isalpha() for c in text[:400]) >= 40 else ("title", title)
            guess = language_identifier().detect(body if field == "text" else title + " " + text)
            if guess.code:
                excerpt = body[:60] if field == "text" else title[:60]
                role = "detected"
                if chosen is None:
                    if guess.confidence >= 0.5:
                        chosen = guess.code
                elif (guess.code != declared_code and guess.confidence >= OVERRIDE_CONFIDENCE and not guess.segments
                      and guess.letters >= OVERRIDE_LETTERS):
                    self.note("language_override", f"{declared_code}->{guess.code}", "a %s notice declared %r but "
                              "reads as %r (confidence %.2f); classified as %r", source, declared_code, guess.code,
                              guess.confidence, guess.code)
                    chosen, role = guess.code, "override"
                out.append(Finding("language", guess.code, round(guess.confidence, 3), "text", field, excerpt, 0,
                                   len(excerpt), role))
                segments = guess.segments
                if guess.segments:
                    total = sum(e - s for _, s, e in guess.segments) or 1
                    share = {c: sum(e - s for c2, s, e in guess.segments if c2 == c) / total for c, _, _ in guess.segments}
                    second = next(((c, s, e) for c, s, e in guess.segments if c != guess.code and share[c] >= MIXED_SHARE),
                                  None)
                    if second is not None:
                        code, start, end = second
                        # Offsets of the detected sample point into the body, or into "title text" for short bodies.
                        where, base = (field, body) if field == "text" else ("title", title)
                        if field == "title" and start > len(title):
                            where, base, start, end = "text", text, start - len(title) - 1, end - len(title) - 1
                        piece = base[start:min(end, start + 60)]
                        if piece:
                            out.append(Finding("language", code, round(share[code], 3), "text", where, piece, start,
                                               start + len(piece), "secondary"))
        lang = pipeline_language(chosen)
        if chosen and lang == FALLBACK_LANGUAGE:
            self.note("unsupported_language", chosen, "no term patterns for language %r (a %s notice): classified with "
                      "English words and every country name; add nlp/patterns/terms/%s.jsonl to do better",
                      chosen, source, chosen)
        others = self._language_ranges(lang, segments, field, title, text) if segments else {}
        if segments:
            codes = sorted({c for c, _, _ in segments})
            self.note("mixed_language", "+".join(codes), "a %s notice mixes languages (%s); read with the %r "
                      "patterns throughout and with those of %s where the text is written in it", source,
                      ", ".join(codes), lang, ", ".join(sorted(others)) or "no other supported language")
        return lang, out, others

    @staticmethod
    def _language_ranges(lang: str, segments: tuple[tuple[str, int, int], ...], field: str, title: str,
                         text: str) -> dict[str, list[tuple[int, int, bool]]]:
        """Each other pipeline language with at least MIXED_SHARE of the detected sample → (start, end, own)
        ranges of the joined title and text written in it (own) or in a language too small to count (not
        own). The last segment runs to the end of the text, past the detected sample: a bilingual notice
        writes its languages one after the other."""
        total = sum(e - s for _, s, e in segments) or 1
        share: Counter[str] = Counter()
        for code, start, end in segments:
            share[code] += (end - start) / total
        major = {code for code, value in share.items() if value >= MIXED_SHARE}
        mine = term_language(lang)
        wanted = {pipeline_language(c) for c in major if pipeline_language(c) != FALLBACK_LANGUAGE} - {lang}
        wanted = {c for c in wanted if term_language(c) != mine}
        if not wanted:
            return {}
        base = len(title) + len(TITLE_SEPARATOR)
        last = max(end for _, _, end in segments)

        def joined(offset: int) -> int:
            # The sample is the text, or "title text" for a short text.
            if field == "text":
                return base + offset
            return offset if offset <= len(title) else base + offset - len(title) - 1

        total_length = base + len(text)
        return {code: [(joined(start), total_length if end >= last else joined(end), c in major)
                       for c, start, end in segments if pipeline_language(c) == code or c not in major]
                for code in sorted(wanted)}

    def _field_findings(self, notice: Any) -> list[Finding]:
        """The source's own product fields (brand, model, batch, GTIN) and dates, as findings."""
        out = []
        for name, axis in PRODUCT_FIELDS:
            value = _get(notice, name)
            if not isinstance(value, str) or not value.strip():
                continue
            raw = value.strip()
            if name == "gtin":
                digits = re.sub(r"\D", "", raw)
                if not gtin_valid(digits):
                    self.note("invalid_gtin", raw[:20], "GTIN %r fails its check digit; kept as written, not as a GTIN", raw)
                    continue
                out.append(Finding("identifier", f"gtin:{normalize_gtin(digits)}", SCORE_SOURCE_LABEL, "source_label",
                                   "gtin", raw, role="gtin"))
            elif axis == "brand":
                out.append(Finding("brand", f"brand:{raw[:150]}", SCORE_SOURCE_LABEL, "source_label", "brand", raw))
            else:
                out.append(Finding("identifier", f"{name}:{raw[:150]}", SCORE_SOURCE_LABEL, "source_label", name, raw,
                                   role=name))
        for name, role in DATE_FIELDS:
            value = _get(notice, name)
            if value is not None and hasattr(value, "isoformat"):
                out.append(Finding("date", value.isoformat()[:10], SCORE_SOURCE_LABEL, "source_label", name,
                                   value.isoformat(), role=role))
        return out

    def _clip(self, value: Any, field: str, source: str) -> str:
        text = value if isinstance(value, str) else ("" if value is None else str(value))
        if len(text) > self.max_chars:
            self.note("truncated", field, "the %s of a %s notice is %d characters; only the first %d are classified "
                      "(raise max_chars to read more)", field, source or "source-less", len(text), self.max_chars)
            text = text[: self.max_chars]
        return text

    def _label_findings(self, notice: Any, source: str) -> list[Finding]:
        def labelled(axis: Axis, value: str, field: str, evidence: str, role: str | None = None) -> Finding:
            return Finding(axis, value, SCORE_SOURCE_LABEL, "source_label", field, evidence, role=role)

        out: list[Finding] = []
        publisher_key = self.taxonomy.publisher_for_source(source)
        if publisher_key:
            publisher = self.taxonomy.publishers[publisher_key]
            if publisher.jurisdiction:
                out.append(labelled("jurisdiction", publisher.jurisdiction, "source", source, "publisher"))
        counted: set[tuple[str, str]] = set()
        for field, axis, fallback in LABEL_FIELDS:
            for label in _as_labels(_get(notice, field)):
                for found_axis, value, evidence in self._map_label(source, axis, label, counted, fallback):
                    out.append(labelled(found_axis, value, field, evidence))
        labels = _get(notice, "labels")
        if isinstance(labels, Mapping):
            for axis in LABEL_KEY_AXES:
                for key in self.taxonomy.label_keys(axis):
                    for label in _as_labels(labels.get(key)):
                        for found_axis, value, evidence in self._map_label(source, axis, label, counted):
                            out.append(labelled(found_axis, value, f"labels.{key}", evidence))
            for key, role in self.taxonomy.label_roles.items():
                for label in _as_labels(labels.get(key)):
                    for _, value, evidence in self._map_label(source, "jurisdiction", label, counted):
                        out.append(labelled("jurisdiction", value, f"labels.{key}", evidence, role))
        return out

    def _lookup(
        self, source: str, axis: Axis, fallback: Axis | None, label: str
    ) -> tuple[Axis, list[str]] | None:
        values = self.taxonomy.lookup(axis, source, label)
        if values is not None:
            return axis, values
        if fallback is not None:
            values = self.taxonomy.lookup(fallback, source, label)
            if values:
                return fallback, values
        return None

    def _map_label(
        self, source: str, axis: Axis, label: str, counted: set[tuple[str, str]], fallback: Axis | None = None
    ) -> Iterator[tuple[Axis, str, str]]:
        """(axis, id, evidence) for one source label; an unmapped label is counted once per notice."""
        label = label.strip()
        if not label:
            return
        hit = self._lookup(source, axis, fallback, label)
        if hit is not None:
            for value in hit[1]:
                yield hit[0], value, label
            return
        # Publishers pack several labels in one field ("Injuries, Security"); split only when the
        # whole label does not map, since some labels contain commas themselves.
        packed = label
        for separator in LABEL_SEPARATORS:
            packed = packed.replace(separator, ",")
        parts = [p.strip() for p in packed.split(",") if p.strip()]
        for part in parts if len(parts) > 1 else [label]:
            hit = self._lookup(source, axis, fallback, part) if len(parts) > 1 else None
            if hit is None:
                if (axis, part) not in counted:
                    counted.add((axis, part))
                    self.unmapped[(source, axis, part)] += 1
                    log.debug("no %s crosswalk for %r from %s", axis, part, source or "an unnamed source")
                continue
            for value in hit[1]:
                yield hit[0], value, part

    def _topic_spans(self, item: _Prepared, doc: Any) -> dict[str, list[Any]]:
        """The spans of each topic axis (``SPAN_KEYS``). In a mixed-language notice each language's patterns
        read the parts written in it: the pipeline language's everywhere but in the other languages' own
        ranges (French "car" is no car), each other language's in its ranges (a span overlapping one
        already found is left out)."""
        if not item.others:
            return {key: list(doc.spans.get(key, ())) for key in SPAN_KEYS.values()}

        def inside(span: Any, ranges: Iterable[tuple[int, int, bool]]) -> bool:
            return any(a <= span.start_char and span.end_char <= b for a, b, _ in ranges)

        foreign = [r for ranges in item.others.values() for r in ranges if r[2]]
        spans = {key: [s for s in doc.spans.get(key, ()) if not inside(s, foreign)] for key in SPAN_KEYS.values()}
        for lang, ranges in item.others.items():
            other = self.nlp(lang)(item.joined)
            for key in SPAN_KEYS.values():
                taken = [(s.start_char, s.end_char) for s in spans[key]]
                extra = [s for s in other.spans.get(key, ()) if inside(s, ranges)
                         and not any(s.start_char < b and a < s.end_char for a, b in taken)]
                if extra:
                    spans[key] = sorted(spans[key] + extra, key=lambda s: s.start_char)
        return spans

    def _finish(self, item: _Prepared, doc: Any) -> list[Finding]:
        findings = list(item.findings)
        text_offset = len(item.title) + len(TITLE_SEPARATOR)
        spans_of = self._topic_spans(item, doc)
        for axis, key in SPAN_KEYS.items():
            if axis == "substance":
                continue  # with amounts, in _extracted
            grouped: dict[tuple[str, str, str | None], list[Any]] = {}
            for span in spans_of[key]:
                in_title = span.start_char < len(item.title)
                role = span._.radar_role if axis == "jurisdiction" else None
                grouped.setdefault((span.label_, "title" if in_title else "text", role), []).append(span)
            for (value, field, role), spans in grouped.items():
                first = spans[0]
                offset = 0 if field == "title" else text_offset
                if field == "title":
                    score = SCORE_TITLE
                else:
                    score = min(SCORE_TEXT + SCORE_TEXT_REPEAT * (len(spans) - 1), SCORE_TEXT_MAX)
                findings.append(
                    Finding(
                        axis,  # type: ignore[arg-type]
                        value,
                        score,
                        "text",
                        field,
                        first.text,
                        first.start_char - offset,
                        first.end_char - offset,
                        role,
                    )
                )
        findings += self._extracted(item, doc, text_offset, spans_of[SPAN_KEYS["substance"]])
        findings = _dedupe(self._drop_text_ancestors(findings))
        if self.model is not None:
            covered = {f.axis for f in findings if f.axis in ("category", "hazard") and f.method in ("source_label", "text")}
            if len(covered) < 2:
                findings += [f for f in self.model.findings(item.title, item.text, Finding) if f.axis not in covered]
        return findings + self._derived(item, findings)

    def _extracted(self, item: _Prepared, doc: Any, text_offset: int, substances: list[Any]) -> list[Finding]:
        """Findings of the substance and extraction spans: one per (axis, value, role), first span as evidence."""
        out: list[Finding] = []
        groups = [("substance", substances), *((axis, doc.spans.get(key, ())) for axis, key in EXTRACT_KEYS.items())]
        for axis, spans in groups:
            seen: set[tuple[str, str | None]] = set()
            for span in spans:
                value, role = span.label_, span._.radar_role
                if axis == "date":
                    value = parse_date_span(span.label_, item.dayfirst)
                    if value is None:
                        continue
                if axis == "brand" and role == "text":
                    role = None
                if (value, role) in seen:
                    continue
                seen.add((value, role))
                in_title = span.start_char < len(item.title)
                offset = 0 if in_title else text_offset
                score = SCORE_TITLE if in_title else SCORE_TEXT
                out.append(Finding(axis, value, score, "text", "title" if in_title else "text",  # type: ignore[arg-type]
                                   span.text, span.start_char - offset, span.end_char - offset, role))
        return out

    def _derived(self, item: _Prepared, findings: list[Finding]) -> list[Finding]:
        fields = {"title": item.title, "text": item.text}
        out = self._deriver.policies_for(findings, fields, item.lang, item.source,
                                         item.labels if isinstance(item.labels, Mapping) else None, Finding)
        risk = self._deriver.risk(findings + out, fields, Finding)
        if risk is not None:
            out.append(risk)
        out += self._deriver.disagreements(findings, Finding)
        # Last, so that a hazard the notice does not state moves neither its policy class nor its risk score.
        out += self._deriver.inferred_hazards(findings, Finding)
        return out

    def _drop_text_ancestors(self, findings: list[Finding]) -> list[Finding]:
        """Text findings of a node whose descendant was also found in the text say less; drop them.

        "All-Terrain Vehicles ... vehicle" is cat.vehicles.offroad, not also cat.vehicles. A word in the
        body does not erase one in the title, though: "Passenger van" in the title stays a vehicle when the
        body mentions a "car" in passing. Source labels are kept as the publisher gave them.
        """
        axes = ("category", "hazard", "substance")
        implied: dict[str, set[tuple[str, str]]] = {"title": set(), "text": set()}
        for f in findings:
            if f.method == "text" and f.axis in axes and f.field in implied:
                ancestors = {(f.axis, a) for a in self.taxonomy.ancestors(f.value)}
                implied["text"] |= ancestors
                if f.field == "title":
                    implied["title"] |= ancestors
        if not implied["text"]:
            return findings
        return [f for f in findings if not (f.method == "text" and (f.axis, f.value) in implied.get(f.field, ()))]


def _dedupe(findings: list[Finding]) -> list[Finding]:
    """One finding per (axis, value, method) - per role too for jurisdictions - keeping the best score.

    A jurisdiction found with a role makes the same jurisdiction's role-less finding (by the same
    method) redundant, so that one is dropped.
    """
    best: dict[tuple[str, str, str, str | None], Finding] = {}
    for finding in findings:
        key = (finding.axis, finding.value, finding.method, finding.role if finding.axis == "jurisdiction" else None)
        current = best.get(key)
        if current is None or finding.score > current.score:
            best[key] = finding
    with_role = {(k[1], k[2]) for k in best if k[0] == "jurisdiction" and k[3] is not None}
    return [
        f for k, f in best.items() if not (k[0] == "jurisdiction" and k[3] is None and (k[1], k[2]) in with_role)
    ]
