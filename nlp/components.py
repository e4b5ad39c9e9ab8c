"""spaCy components that mark taxonomy terms and jurisdiction names in a notice, each as a span."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

from nlp.taxonomy import COMPOUND_TAIL_MARK, MIN_COMPOUND_TAIL, ROLES, Taxonomy, load_cached

log = logging.getLogger(__name__)

SUPPORTED_LANGUAGES = ("en", "fr", "de", "es", "it", "nl", "pl")
"""Languages with their own spaCy tokenizer and their own word lists; anything else runs on "xx"."""
FALLBACK_LANGUAGE = "xx"
FALLBACK_TERM_LANGUAGE = "en"
"""Words used on the "xx" pipeline: notices in other languages mostly quote products in English, and
the union of every language's words would turn false friends (German "Boot", French "car") into hits."""

SPAN_KEYS = {"category": "radar_category", "hazard": "radar_hazard", "jurisdiction": "radar_jurisdiction"}
"""``doc.spans`` key per axis; each span's label is the taxonomy id."""

STOP_LABEL = "radar_stop"
"""Match label of the axis's stop phrases; never a taxonomy id (ids are dotted)."""

# How far back from a country name a role cue may start ("Country of origin of the product: China").
ROLE_WINDOW_CHARS = 60

if not Span.has_extension("radar_role"):
    Span.set_extension("radar_role", default=None)


def term_languages(lang: str) -> list[str]:
    """The taxonomy languages whose category and hazard words a pipeline of ``lang`` matches."""
    return [lang] if lang in SUPPORTED_LANGUAGES else [FALLBACK_TERM_LANGUAGE]


def _make_docs(nlp: Language, texts: Iterable[str]) -> list[Doc]:
    return list(nlp.tokenizer.pipe(texts))


class TermMatcher:
    """Marks the words of one axis (category or hazard) in ``doc.spans[SPAN_KEYS[axis]]``.

    Phrases match case-insensitively on whole tokens; where phrases overlap the longest wins
    ("lithium battery" over "battery"). Words written with a leading hyphen in the taxonomy also
    match as the tail of a closed compound ("Kinderspielzeug" for "-spielzeug").
    """

    def __init__(self, nlp: Language, name: str, axis: str, taxonomy: Taxonomy) -> None:
        if axis not in ("category", "hazard"):
            raise ValueError(f"radar_terms works on the category or hazard axis, not {axis!r}")
        self.name = name
        self.axis = axis
        self.key = SPAN_KEYS[axis]
        self.matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
        phrases: dict[str, list[str]] = {}
        tails: dict[str, str] = {}
        for _, term, node_id in taxonomy.terms(axis, term_languages(nlp.lang)):
            if term.startswith(COMPOUND_TAIL_MARK):
                term = term[len(COMPOUND_TAIL_MARK) :]
                tails[term.lower()] = node_id
            phrases.setdefault(node_id, []).append(term)
        for node_id, terms in phrases.items():
            self.matcher.add(node_id, _make_docs(nlp, dict.fromkeys(terms)))
        stops = taxonomy.stop_terms(axis, term_languages(nlp.lang))
        if stops:
            self.matcher.add(STOP_LABEL, _make_docs(nlp, dict.fromkeys(stops)))
        self.tails = tails
        # Matching reversed tokens against reversed tails, longest first, finds the longest tail
        # with one anchored regex match per token instead of one dict probe per split point.
        self._tail_re = (
            re.compile("|".join(re.escape(t[::-1]) for t in sorted(tails, key=len, reverse=True))) if tails else None
        )
        log.debug("%s: %d %s nodes, %d compound tails for %s", name, len(phrases), axis, len(tails), nlp.lang)

    def __call__(self, doc: Doc) -> Doc:
        spans = [Span(doc, start, end, label=match_id) for match_id, start, end in self.matcher(doc)]
        # Longest match wins, so a stop phrase swallows the terms inside it; then it is dropped.
        spans = filter_spans(spans)
        covered = {i for span in spans for i in range(span.start, span.end)}
        spans = [span for span in spans if span.label_ != STOP_LABEL]
        if self._tail_re is not None:
            for token in doc:
                if token.i in covered or not token.is_alpha or len(token) < MIN_COMPOUND_TAIL + 2:
                    continue
                lowered = token.lower_
                match = self._tail_re.match(lowered[::-1])
                # The tail must leave a head of two letters or more: the word alone is the phrase
                # matcher's job, and a one-letter "head" is usually an inflection, not a compound.
                if match and match.end() <= len(lowered) - 2:
                    spans.append(Span(doc, token.i, token.i + 1, label=self.tails[match.group()[::-1]]))
            spans.sort(key=lambda span: span.start)
        doc.spans[self.key] = spans
        return doc


class JurisdictionMatcher:
    """Marks jurisdiction names in ``doc.spans["radar_jurisdiction"]``, with a role when a cue says it.

    Names match case-sensitively, as written or in capitals: country names are proper nouns, and
    "china" or "turkey" in lower case are porcelain and poultry. A name right after a role cue
    ("made in", "Herkunftsland:", "notifié par la") gets ``span._.radar_role``.
    """

    def __init__(self, nlp: Language, name: str, taxonomy: Taxonomy) -> None:
        self.name = name
        self.key = SPAN_KEYS["jurisdiction"]
        lang = nlp.lang
        languages = None if lang not in SUPPORTED_LANGUAGES else [lang, FALLBACK_TERM_LANGUAGE]
        self.matcher = PhraseMatcher(nlp.vocab, attr="ORTH")
        names: dict[str, set[str]] = {}
        for _, name_text, node_id in taxonomy.terms("jurisdiction", languages):
            names.setdefault(node_id, set()).update({name_text, name_text.upper()})
        for node_id, variants in names.items():
            self.matcher.add(node_id, _make_docs(nlp, sorted(variants)))
        cue_languages = list(taxonomy.role_articles) if languages is None else languages
        self.role_patterns = self._role_patterns(taxonomy, languages, cue_languages)

    @staticmethod
    def _role_patterns(
        taxonomy: Taxonomy, languages: list[str] | None, article_languages: list[str]
    ) -> list[tuple[str, re.Pattern[str]]]:
        articles = sorted(
            {a for lang in article_languages for a in taxonomy.role_articles.get(lang, [])}, key=len, reverse=True
        )
        article_alt = "|".join(re.escape(a) for a in articles)
        patterns = []
        for role in ROLES:
            by_lang = taxonomy.role_cues.get(role, {})
            cues = {c for lang, cs in by_lang.items() if languages is None or lang in languages for c in cs}
            if not cues:
                continue
            cue_alt = "|".join(
                re.escape(c).replace(r"\ ", r"\s+") for c in sorted(cues, key=len, reverse=True)
            )
            article = rf"(?:(?:{article_alt})\s*)?" if article_alt else ""
            patterns.append((role, re.compile(rf"(?<!\w)(?:{cue_alt})\s*[:\-–]?\s*{article}$", re.IGNORECASE)))
        return patterns

    def role_for(self, doc: Doc, span: Span) -> str | None:
        window = doc.text[max(0, span.start_char - ROLE_WINDOW_CHARS) : span.start_char]
        window = window.replace("\u2019", "'").rstrip("( \t\n")
        if not window:
            return None
        window += " "  # the patterns allow whitespace before the name, which rstrip removed
        for role, pattern in self.role_patterns:
            if pattern.search(window):
                return role
        return None

    def __call__(self, doc: Doc) -> Doc:
        spans = filter_spans([Span(doc, s, e, label=m) for m, s, e in self.matcher(doc)])
        for span in spans:
            span._.radar_role = self.role_for(doc, span)
        doc.spans[self.key] = spans
        return doc


@Language.factory(
    "radar_terms",
    default_config={"axis": "category", "taxonomy_dir": None},
)
def make_radar_terms(nlp: Language, name: str, axis: str, taxonomy_dir: str | None) -> TermMatcher:
    """Category or hazard words from config/taxonomy (``taxonomy_dir`` overrides the folder)."""
    return TermMatcher(nlp, name, axis, load_cached(taxonomy_dir))


@Language.factory("radar_jurisdictions", default_config={"taxonomy_dir": None})
def make_radar_jurisdictions(nlp: Language, name: str, taxonomy_dir: str | None) -> JurisdictionMatcher:
    """Jurisdiction names and their roles from config/taxonomy/jurisdictions.yml."""
    return JurisdictionMatcher(nlp, name, load_cached(taxonomy_dir))
