"""spaCy components that extract what a listing rule needs beyond topics: language, regulators, legal
references, substances and limits, product identifiers, brands and the dates that matter.

Each component marks spans in ``doc.spans[<key>]``: the span's label is the finding's value and
``span._.radar_role`` its role (the kind of reference or identifier, the date's meaning, a
substance's amount). Cue words and named acts are data in ``nlp/patterns/*.jsonl``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

from nlp.components import doc_text
from nlp.taxonomy import load_cached

log = logging.getLogger(__name__)

PATTERNS_DIR = Path(__file__).resolve().parent / "patterns"

EXTRACT_KEYS = {
    "regulator": "radar_regulator", "legal_ref": "radar_legal_ref", "identifier": "radar_identifier",
    "brand": "radar_brand", "date": "radar_date",
}
"""``doc.spans`` key per extraction axis (substances use the term matcher's ``radar_substance``)."""

if not Span.has_extension("radar_role"):
    Span.set_extension("radar_role", default=None)
if not Doc.has_extension("radar_language"):
    Doc.set_extension("radar_language", default=None)


# ------------------------------------------------------------------------------- language id

DETECTED_LANGUAGES = ("en", "fr", "de", "es", "it", "nl", "pl", "pt", "sv", "da", "fi", "cs", "sk", "sl", "hu", "ro",
                      "hr", "bg", "el", "lt", "lv", "et", "tr", "ar", "he", "zh", "ja", "ru", "uk", "nb")
"""The languages the detector chooses among: the EU's and our other markets' (a smaller set is faster and
more accurate; a notice in a language outside it comes out as its nearest neighbour, usually with low confidence)."""

DETECT_CHARS = 2000
"""Only the first characters are read: language does not change halfway through a notice, and the cost
of detection grows with length."""
MIN_DETECT_LETTERS = 20
"""Below this many letters a detection is a guess; the declared language (or none) is kept."""
OVERRIDE_CONFIDENCE = 0.9
"""A detection replaces a declared pipeline language only above this confidence."""
MIXED_SHARE = 0.3
MIXED_MIN_LETTERS = 200
"""Below this many letters a text is not tested for a second language: lists of product and brand names
("Husqvarna CR125, WR125 ...") read as Danish or Slovene to any detector."""
"""A second language is reported when it covers at least this share of the detected text."""


_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


@dataclass(frozen=True)
class LanguageGuess:
    """What the detector says about a text: the best language, its confidence, and any second language."""

    code: str | None
    confidence: float
    segments: tuple[tuple[str, int, int], ...] = ()
    """(language, start, end) character ranges when the text mixes languages (empty otherwise)."""
    letters: int = 0


class LanguageIdentifier:
    """Offline language identification with lingua (low-accuracy mode: n-grams up to trigrams, fast)."""

    def __init__(self, languages: Iterable[str] = DETECTED_LANGUAGES) -> None:
        from lingua import IsoCode639_1, Language as LinguaLanguage, LanguageDetectorBuilder

        wanted = []
        for code in languages:
            try:
                wanted.append(LinguaLanguage.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())))
            except (AttributeError, ValueError):
                log.debug("lingua has no language %r; left out of detection", code)
        self._detector = LanguageDetectorBuilder.from_languages(*wanted).with_low_accuracy_mode().build()

    def detect(self, text: str) -> LanguageGuess:
        sample = text[:DETECT_CHARS]
        letters = sum(c.isalpha() for c in sample)
        if letters < MIN_DETECT_LETTERS:
            return LanguageGuess(None, 0.0, (), letters)
        values = self._detector.compute_language_confidence_values(sample)
        if not values:
            return LanguageGuess(None, 0.0, (), letters)
        best = values[0]
        code = best.language.iso_code_639_1.name.lower()
        segments: tuple[tuple[str, int, int], ...] = ()
        # The slower segment-wise pass only for a long text whose guess is uncertain or whose halves
        # read as different languages.
        mixed = False
        if letters >= MIXED_MIN_LETTERS:
            middle = sample.find(" ", len(sample) // 2)
            halves = (sample[:middle], sample[middle:]) if middle > 0 else (sample, "")
            tops = {self._top(h) for h in halves if sum(c.isalpha() for c in h) >= MIN_DETECT_LETTERS * 3}
            mixed = best.value < 0.7 or len(tops - {None}) > 1
        if mixed:
            parts = self._sentence_segments(sample)
            shares: dict[str, int] = {}
            for lang, start, end in parts:
                shares[lang] = shares.get(lang, 0) + end - start
            total = sum(shares.values()) or 1
            if sum(1 for n in shares.values() if n / total >= MIXED_SHARE) >= 2:
                segments = parts
                code = max(shares, key=shares.__getitem__)
        return LanguageGuess(code, float(best.value), segments, letters)

    def _sentence_segments(self, sample: str) -> tuple[tuple[str, int, int], ...]:
        """(language, start, end) runs of sentences in one language, covering the sample end to end.

        Sentence by sentence rather than lingua's own mixed-language pass, which in low-accuracy mode cuts
        a bilingual notice into a dozen pieces of five languages ("risk of electric shock" read as Danish).
        A sentence too short to judge joins the run before it (or after it, at the start).
        """
        runs: list[list] = []
        pending_start = 0
        for match in _SENTENCE_END.finditer(sample + "\n"):
            start, end = pending_start, match.end()
            piece = sample[start:end]
            if sum(c.isalpha() for c in piece) < MIN_DETECT_LETTERS:
                continue  # too short: carried into the next sentence
            pending_start = end
            lang = self._top(piece)
            if lang is None:
                continue
            if runs and runs[-1][0] == lang:
                runs[-1][2] = end
            else:
                runs.append([lang, start, end])
        if not runs:
            return ()
        runs[0][1] = 0
        runs[-1][2] = len(sample)
        for before, after in zip(runs, runs[1:]):
            after[1] = before[2]
        return tuple((lang, start, end) for lang, start, end in runs)

    def _top(self, text: str) -> str | None:
        found = self._detector.detect_language_of(text)
        return found.iso_code_639_1.name.lower() if found is not None else None


@lru_cache(maxsize=1)
def language_identifier() -> LanguageIdentifier:
    """The shared identifier (building it loads lingua's models once per process)."""
    return LanguageIdentifier()


class LanguageComponent:
    """Sets ``doc._.radar_language`` to a :class:`LanguageGuess` for the doc's text."""

    def __init__(self, nlp: Language, name: str) -> None:
        self.name = name

    def __call__(self, doc: Doc) -> Doc:
        doc._.radar_language = language_identifier().detect(doc_text(doc))
        return doc


@Language.factory("radar_language")
def make_radar_language(nlp: Language, name: str) -> LanguageComponent:
    """Language identification (lingua, offline) as a pipeline component."""
    return LanguageComponent(nlp, name)


# ---------------------------------------------------------------------------------- patterns


@lru_cache(maxsize=None)
def load_patterns(name: str) -> tuple[dict, ...]:
    """The lines of ``nlp/patterns/<name>.jsonl`` (a line that is not a JSON object fails with its number)."""
    from radar.errors import ConfigError

    path = PATTERNS_DIR / f"{name}.jsonl"
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not a JSON object ({exc.msg}); fix the line") from exc
        if not isinstance(row, dict) or not row.get("pattern"):
            raise ConfigError(f"{path}:{number}: each line needs a \"pattern\"")
        out.append(row)
    return tuple(out)


def cues(kind: str, lang: str) -> list[str]:
    """Cue phrases of one kind (model, batch, brand, gtin, effective, ...) for a language plus English."""
    langs = {lang, "en"}
    return [row["pattern"] for row in load_patterns("cues") if row["kind"] == kind and row.get("lang") in langs]


def _cue_regex(phrases: Iterable[str]) -> str:
    alts = sorted({re.escape(p).replace(r"\ ", r"\s+") for p in phrases}, key=len, reverse=True)
    # Whole words only: the cue "exp" (expiry) is not the start of "explosion", "lot" not of "lots of".
    return "(?<!\\w)(?:" + "|".join(alts) + ")(?![^\\W\\d_])" if alts else "(?!)"


def _char_spans(doc: Doc, spans: Iterable[tuple[int, int, str, str | None]]) -> list[Span]:
    out = []
    for start, end, label, role in spans:
        span = doc.char_span(start, end, label=label, alignment_mode="expand")
        if span is None:
            continue
        span._.radar_role = role
        out.append(span)
    return out


# -------------------------------------------------------------------------------- regulators


class RegulatorMatcher:
    """Regulators named in jurisdictions.yml: acronyms case-sensitively (OPSS, CPSC), names in any case."""

    def __init__(self, nlp: Language, name: str, taxonomy_dir: str | None) -> None:
        self.name = name
        self.acronyms = PhraseMatcher(nlp.vocab, attr="ORTH")
        self.names = PhraseMatcher(nlp.vocab, attr="LOWER")
        taxonomy = load_cached(taxonomy_dir)
        for reg_id, _juris, regulator in taxonomy.regulators():
            # Two-letter acronyms (EC, HC) are words in too many languages to look for.
            if regulator.acronym and len(regulator.acronym) >= 3:
                self.acronyms.add(reg_id, [nlp.make_doc(regulator.acronym)])
            self.names.add(reg_id, [nlp.make_doc(regulator.name.split(" — ")[0].split(" (")[0])])

    def __call__(self, doc: Doc) -> Doc:
        spans = [Span(doc, s, e, label=m) for m, s, e in [*self.acronyms(doc), *self.names(doc)]]
        doc.spans[EXTRACT_KEYS["regulator"]] = filter_spans(spans)
        return doc


@Language.factory("radar_regulators", default_config={"taxonomy_dir": None})
def make_radar_regulators(nlp: Language, name: str, taxonomy_dir: str | None) -> RegulatorMatcher:
    return RegulatorMatcher(nlp, name, taxonomy_dir)


# ---------------------------------------------------------------------------- legal references

_EU_BODY = {"EU": "EU", "UE": "EU", "EC": "EC", "CE": "EC", "EG": "EC", "WE": "EC", "EEC": "EEC", "CEE": "EEC",
            "EWG": "EEC", "EWG.": "EEC", "EEG": "EEC", "EGKS": "ECSC", "EURATOM": "Euratom", "Euratom": "Euratom"}
_EU_ACT = {
    "regulation": "Regulation", "règlement": "Regulation", "verordnung": "Regulation", "reglamento": "Regulation",
    "regolamento": "Regulation", "verordening": "Regulation", "rozporządzenie": "Regulation",
    "rozporządzenia": "Regulation", "directive": "Directive", "richtlinie": "Directive", "directiva": "Directive",
    "direttiva": "Directive", "richtlijn": "Directive", "dyrektywa": "Directive", "dyrektywy": "Directive",
    "decision": "Decision", "décision": "Decision", "beschluss": "Decision", "decisión": "Decision",
    "decisione": "Decision", "besluit": "Decision", "decyzja": "Decision",
}
_BODY = r"(EU|UE|EC|CE|EG|WE|EEC|CEE|EWG|EEG|Euratom|EURATOM)"
_ACT = "(" + "|".join(sorted(_EU_ACT, key=len, reverse=True)) + ")"
_LEGAL_RES = [
    # Regulation (EU) 2023/988; Règlement (CE) n° 1907/2006; Verordnung (EU) Nr. 305/2011
    ("eu", re.compile(_ACT + r"\s*\(\s*" + _BODY + r"\s*\)\s*(?:(?:No\.?|Nr\.?|n[°o]\.?|nr)\s*)?(\d{1,4})\s*/\s*(\d{1,4})",
                      re.IGNORECASE)),
    # Directive 2009/48/EC; Richtlinie 2014/35/EU; directive 2001/95/CE
    ("eu_suffix", re.compile(_ACT + r"\s+(\d{2,4})\s*/\s*(\d{1,4})\s*/\s*" + _BODY + r"\b", re.IGNORECASE)),
    # SI 2016/1101, S.I. 2016/1101, S.I. 2016 No. 1101, UKSI 2016/1101
    ("uk_si", re.compile(r"\b(?:UK\s*)?S\.?\s?I\.?\s+(\d{4})\s*(?:/|No\.?\s*)(\d{1,5})\b")),
    # 16 CFR part 1250, 16 C.F.R. § 1303, 21 CFR 101.9
    ("us_cfr", re.compile(r"\b(\d{1,2})\s+C\.?\s?F\.?\s?R\.?\s*(?:[Pp]arts?|§+|[Ss]ection)?\s*(\d{1,4}(?:\.\d{1,4})?)")),
    # 15 U.S.C. 2057
    ("us_code", re.compile(r"\b(\d{1,2})\s+U\.?\s?S\.?\s?C\.?\s*§*\s*(\d{1,5}[a-z]?)")),
    # EN 71-3, EN IEC 62368-1:2014, ISO 8124-1, IEC 60335-2-30, ASTM F963-17, BS 1363-1, UL 2272
    ("standard", re.compile(r"\b((?:(?:BS|DIN|NF|UNE|PN|NEN|SS|CSA|AS/NZS)\s+)?(?:EN|ISO|IEC|ASTM|UL|ANSI)"
                            r"(?:\s+(?:EN|ISO|IEC))*)\s+([A-Z]?\d{1,6}(?:[-.]\d{1,4})*(?::\d{4}(?:\+A\d{1,2}:\d{4})?)?)")),
]


def legal_refs(text: str) -> list[tuple[int, int, str, str]]:
    """(start, end, canonical reference, kind) for every legal reference in ``text``.

    Canonical forms are English whatever the language: "Regulation (EU) 2023/988", "Regulation (EC) No
    1907/2006", "Directive 2009/48/EC", "SI 2016/1101", "16 CFR 1250", "15 U.S.C. 2057", "EN 71-3".
    """
    out = []
    for kind, pattern in _LEGAL_RES:
        for m in pattern.finditer(text):
            if kind == "eu":
                act, body = _EU_ACT[m.group(1).lower()], _EU_BODY.get(m.group(2).upper(), m.group(2))
                a, b = m.group(3), m.group(4)
                # Since 2015 the year comes first (2023/988); before, the number did (No 1907/2006).
                label = f"{act} ({body}) {a}/{b}" if len(a) == 4 and int(a) >= 2015 else f"{act} ({body}) No {a}/{b}"
                out.append((m.start(), m.end(), label, f"eu_{act.lower()}"))
            elif kind == "eu_suffix":
                act, body = _EU_ACT[m.group(1).lower()], _EU_BODY.get(m.group(4).upper(), m.group(4))
                out.append((m.start(), m.end(), f"{act} {m.group(2)}/{m.group(3)}/{body}", f"eu_{act.lower()}"))
            elif kind == "uk_si":
                out.append((m.start(), m.end(), f"SI {m.group(1)}/{m.group(2)}", "uk_si"))
            elif kind == "us_cfr":
                out.append((m.start(), m.end(), f"{m.group(1)} CFR {m.group(2)}", "us_cfr"))
            elif kind == "us_code":
                out.append((m.start(), m.end(), f"{m.group(1)} U.S.C. {m.group(2)}", "us_code"))
            else:
                out.append((m.start(), m.end(), f"{' '.join(m.group(1).split())} {m.group(2)}", "standard"))
    return out


class LegalRefMatcher:
    """EU acts, UK statutory instruments, US CFR parts and codes, standards; named acts from legal_names.jsonl."""

    def __init__(self, nlp: Language, name: str) -> None:
        self.name = name
        self.matcher = PhraseMatcher(nlp.vocab, attr="ORTH")
        self.kinds: dict[str, str] = {}
        for row in load_patterns("legal_names"):
            pattern = row["pattern"]
            self.kinds[row["label"]] = row.get("kind", "act")
            docs = [nlp.make_doc(pattern)]
            if not pattern.isupper():
                docs.append(nlp.make_doc(pattern.lower()))
            self.matcher.add(row["label"], docs)

    def __call__(self, doc: Doc) -> Doc:
        spans = _char_spans(doc, legal_refs(doc_text(doc)))
        for match_id, start, end in self.matcher(doc):
            span = Span(doc, start, end, label=match_id)
            span._.radar_role = self.kinds.get(span.label_, "act")
            spans.append(span)
        doc.spans[EXTRACT_KEYS["legal_ref"]] = filter_spans(spans)
        return doc


@Language.factory("radar_legal_refs")
def make_radar_legal_refs(nlp: Language, name: str) -> LegalRefMatcher:
    return LegalRefMatcher(nlp, name)


# -------------------------------------------------------------------------- substance amounts

_AMOUNT = re.compile(
    r"(?<![\w.])(\d+(?:[.,]\d+)?)\s*(%\s*(?:by\s+weight|w/w|wt)?|mg\s*/\s*kg|mg\s*/\s*l|µg\s*/\s*(?:cm²?\s*/\s*week|g|kg|l)"
    r"|ug\s*/\s*g|ppm|ppb|mg\s*/\s*dm²|mg\s*/\s*m³|g\s*/\s*kg|wt\s*%|mass\s*%)", re.IGNORECASE)
_LIMIT_WORDS = re.compile(r"\b(?:limit|limits|maximum|max\.?|permitted|allowed|authori[sz]ed|threshold|valeur limite|"
                          r"Grenzwert|zulässig|límite|limite|grenswaarde|dopuszczalny)\b", re.IGNORECASE)
AMOUNT_WINDOW = 80
"""An amount counts for a substance when it follows the substance word within this many characters."""


def attach_amounts(doc: Doc, key: str = "radar_substance") -> None:
    """Gives each substance span the amount that follows it in the same sentence ("measured 120 mg/kg")."""
    text = doc_text(doc)
    for span in doc.spans.get(key, ()):
        window = text[span.end_char : span.end_char + AMOUNT_WINDOW]
        window = re.split(r"(?<=[.;!?])\s|\n", window, maxsplit=1)[0]
        m = _AMOUNT.search(window)
        if not m:
            continue
        unit = " ".join(m.group(2).split()).replace(" / ", "/").replace("/ ", "/").replace(" /", "/")
        amount = f"{m.group(1).replace(',', '.')} {unit}"
        before = window[: m.start()]
        kind = "limit" if _LIMIT_WORDS.search(before) else "measured"
        span._.radar_role = f"{kind} {amount}"[:40]


class SubstanceAmounts:
    """Runs after the substance term matcher: attaches amounts and limits to substance spans."""

    def __init__(self, nlp: Language, name: str) -> None:
        self.name = name

    def __call__(self, doc: Doc) -> Doc:
        attach_amounts(doc)
        return doc


@Language.factory("radar_substance_amounts")
def make_radar_substance_amounts(nlp: Language, name: str) -> SubstanceAmounts:
    return SubstanceAmounts(nlp, name)


# ------------------------------------------------------------------------------- identifiers

_DIGITS = re.compile(r"(?<![\w-])(\d(?:[ ]?\d){7,13})(?![\w-])")
_CODE = r"([A-Z0-9][A-Za-z0-9]*(?:[-./][A-Za-z0-9]+)*)"
GTIN_LENGTHS = (8, 12, 13, 14)
CUE_WINDOW = 40


def gtin_valid(digits: str) -> bool:
    """GS1 check digit of a GTIN-8/12/13/14 (python-stdnum's EAN check)."""
    from stdnum import ean

    return len(digits) in GTIN_LENGTHS and ean.is_valid(digits)


def normalize_gtin(digits: str) -> str:
    """GTIN-12 (UPC-A) and GTIN-13 as 13 digits, so a UPC and its EAN form compare equal."""
    return digits.zfill(13) if len(digits) == 12 else digits


class IdentifierMatcher:
    """GTIN/EAN/UPC (check digit validated), model numbers and batch codes after their cue words."""

    def __init__(self, nlp: Language, name: str) -> None:
        self.name = name
        lang = nlp.lang
        self.gtin_cue = re.compile(_cue_regex(cues("gtin", lang)) + r"\W{0,6}[^\n]{0,%d}$" % CUE_WINDOW, re.IGNORECASE)
        self.code_res = [
            (kind, re.compile(r"(?<!\w)" + _cue_regex(cues(kind, lang)) + r"\s*(?:[:#]|n[°o]\.?|no\.?|nr\.?)?\s*"
                              + _CODE, re.IGNORECASE))
            for kind in ("model", "batch")
        ]

    def __call__(self, doc: Doc) -> Doc:
        text = doc_text(doc)
        found: list[tuple[int, int, str, str | None]] = []
        for m in _DIGITS.finditer(text):
            digits = m.group(1).replace(" ", "")
            if not gtin_valid(digits):
                continue
            cued = bool(self.gtin_cue.search(text[max(0, m.start() - CUE_WINDOW - 30) : m.start()]))
            # Without a cue, only the full 13-digit EAN form is specific enough to trust.
            if cued or len(digits) == 13 or (len(digits) == 12 and " " in m.group(1)):
                found.append((m.start(1), m.end(1), f"gtin:{normalize_gtin(digits)}", "gtin"))
        for kind, pattern in self.code_res:
            for m in pattern.finditer(text):
                code = m.group(1).rstrip(".,")
                # A code has a digit, and is not a date or a bare year.
                if not any(c.isdigit() for c in code) or re.fullmatch(r"\d{1,2}[./]\d{1,2}[./]\d{2,4}|\d{4}", code):
                    continue
                found.append((m.start(1), m.start(1) + len(code), f"{kind}:{code}", kind))
        doc.spans[EXTRACT_KEYS["identifier"]] = filter_spans(_char_spans(doc, found))
        return doc


@Language.factory("radar_identifiers")
def make_radar_identifiers(nlp: Language, name: str) -> IdentifierMatcher:
    return IdentifierMatcher(nlp, name)


# ----------------------------------------------------------------------------------- brands

_WORD = r"[\w&'’\-]*(?:\.(?=\w)[\w&'’\-]*)*"
"""A brand word: letters, digits, & ' - and dots inside it (Dr.Oetker), never a sentence's full stop."""
_BRAND_VALUE = r"([A-Z0-9]" + _WORD + r"(?:[ ][A-Z0-9&]" + _WORD + r"){0,3})"


class BrandMatcher:
    """A brand after its cue ("Brand: Acme", "Marke: Acme", "sold under the brand name Acme")."""

    def __init__(self, nlp: Language, name: str) -> None:
        self.name = name
        self.pattern = re.compile(r"(?<!\w)" + _cue_regex(cues("brand", nlp.lang)) + r"\s*[:\-–]?\s*[\"“„«]?"
                                  + _BRAND_VALUE, re.IGNORECASE)

    def __call__(self, doc: Doc) -> Doc:
        found = []
        for m in self.pattern.finditer(doc_text(doc)):
            value = m.group(1).strip(" .,'’")
            if len(value) >= 2 and value[0].isupper() or value[:1].isdigit():
                found.append((m.start(1), m.start(1) + len(value), f"brand:{value}", "text"))
        doc.spans[EXTRACT_KEYS["brand"]] = filter_spans(_char_spans(doc, found))
        return doc


@Language.factory("radar_brands")
def make_radar_brands(nlp: Language, name: str) -> BrandMatcher:
    return BrandMatcher(nlp, name)


# ------------------------------------------------------------------------------------ dates

MONTHS = {
    **dict.fromkeys(["january", "jan", "janvier", "januar", "jänner", "enero", "gennaio", "januari", "stycznia", "styczeń"], 1),
    **dict.fromkeys(["february", "feb", "février", "fevrier", "februar", "febrero", "febbraio", "februari", "lutego", "luty"], 2),
    **dict.fromkeys(["march", "mar", "mars", "märz", "marzo", "maart", "marca", "marzec"], 3),
    **dict.fromkeys(["april", "apr", "avril", "abril", "aprile", "kwietnia", "kwiecień"], 4),
    **dict.fromkeys(["may", "mai", "mayo", "maggio", "mei", "maja", "maj"], 5),
    **dict.fromkeys(["june", "jun", "juin", "juni", "junio", "giugno", "czerwca", "czerwiec"], 6),
    **dict.fromkeys(["july", "jul", "juillet", "juli", "julio", "luglio", "lipca", "lipiec"], 7),
    **dict.fromkeys(["august", "aug", "août", "aout", "agosto", "augustus", "sierpnia", "sierpień"], 8),
    **dict.fromkeys(["september", "sep", "sept", "septembre", "septiembre", "settembre", "września", "wrzesień"], 9),
    **dict.fromkeys(["october", "oct", "octobre", "oktober", "octubre", "ottobre", "października", "październik"], 10),
    **dict.fromkeys(["november", "nov", "novembre", "noviembre", "listopada", "listopad"], 11),
    **dict.fromkeys(["december", "dec", "décembre", "decembre", "dezember", "diciembre", "dicembre", "grudnia", "grudzień"], 12),
}
_MONTH = "(" + "|".join(sorted((re.escape(m) for m in MONTHS), key=len, reverse=True)) + r")\.?"
DATE_RES = [
    ("iso", re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")),
    ("numeric", re.compile(r"(?<![\d.])(\d{1,2})[./](\d{1,2})[./](\d{4})(?!\d|\.\d)")),
    ("day_month", re.compile(r"(?<!\d)(\d{1,2})(?:st|nd|rd|th|er|\.)?\s+(?:de\s+|di\s+)?" + _MONTH + r"\s+(?:de\s+)?(\d{4})", re.IGNORECASE)),
    ("month_day", re.compile(_MONTH + r"\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})", re.IGNORECASE)),
]
DATE_ROLES = ("effective", "comment_deadline", "recall", "expiry", "production")
DATE_CUE_WINDOW = 80


class DateMatcher:
    """Dates that follow a cue saying what they are (effective, comment deadline, recall, expiry, production).

    The span label is the date as written; :func:`parse_date_span` turns it into ISO once the notice's
    publisher says whether days come first (US sources write 06/13/2012).
    """

    def __init__(self, nlp: Language, name: str) -> None:
        self.name = name
        # One regex for every cue, its group name the role: cues are rare, so dates are only looked
        # for in the few characters after one (scanning all text for month names is the slow part).
        self.cues = re.compile("|".join(f"(?P<{role}>{_cue_regex(cues(role, nlp.lang))})" for role in DATE_ROLES),
                               re.IGNORECASE)

    def __call__(self, doc: Doc) -> Doc:
        text = doc_text(doc)
        found = []
        for cue in self.cues.finditer(text):
            role = cue.lastgroup
            window_end = cue.end() + DATE_CUE_WINDOW
            window = text[cue.end():window_end]
            stop = re.search(r"[\n]|\.\s", window)
            window = window[: stop.start()] if stop else window
            for _kind, pattern in DATE_RES:
                for m in pattern.finditer(window):
                    found.append((cue.end() + m.start(), cue.end() + m.end(), m.group(0), role))
        doc.spans[EXTRACT_KEYS["date"]] = filter_spans(_char_spans(doc, found))
        return doc


@Language.factory("radar_dates")
def make_radar_dates(nlp: Language, name: str) -> DateMatcher:
    return DateMatcher(nlp, name)


def parse_date_span(text: str, dayfirst: bool = True) -> str | None:
    """ISO date for a date as the date matcher found it, or None when it is not a real date."""
    from datetime import date

    for kind, pattern in DATE_RES:
        m = pattern.fullmatch(text.strip())
        if not m:
            continue
        try:
            if kind == "iso":
                y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
            elif kind == "numeric":
                a, b, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
                # The publisher's order, unless a number over 12 says which one is the day.
                day_first = (dayfirst or a > 12) and b <= 12
                d, mo = (a, b) if day_first else (b, a)
            elif kind == "day_month":
                d, mo, y = int(m.group(1)), MONTHS[m.group(2).lower()], int(m.group(3))
            else:
                mo, d, y = MONTHS[m.group(1).lower()], int(m.group(2)), int(m.group(3))
            return date(y, mo, d).isoformat()
        except (ValueError, KeyError):
            return None
    return None


EXTRACTORS = ("radar_regulators", "radar_legal_refs", "radar_identifiers", "radar_brands", "radar_dates")
"""Factories the classifier adds after the term matchers, in this order."""
