"""spaCy components that mark taxonomy terms and jurisdiction names in a notice, each as a span."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

from nlp.taxonomy import ROLES, Taxonomy, load_cached
from nlp.terms import COMPOUND_TAIL_MARK, MIN_COMPOUND_TAIL, load_terms

log = logging.getLogger(__name__)

SUPPORTED_LANGUAGES = ("en", "fr", "de", "es", "it", "nl", "pl")
"""Languages with their own spaCy tokenizer and term patterns (nlp/patterns/terms/<lang>.jsonl); anything else
runs on "xx"."""
FALLBACK_LANGUAGE = "xx"
FALLBACK_TERM_LANGUAGE = "en"
"""Term patterns used on the "xx" pipeline: notices in other languages mostly quote products in English,
and the union of every language's words would turn false friends (German "Boot", French "car") into hits."""

HEAD_LAST_LANGUAGES = ("en", "de", "nl")
"""Languages whose noun phrases end in their head ("spice candles"): the last category word wins there."""

SPAN_KEYS = {"category": "radar_category", "hazard": "radar_hazard", "jurisdiction": "radar_jurisdiction",
             "substance": "radar_substance"}
"""``doc.spans`` key per axis; each span's label is the taxonomy id."""

STOP_LABEL = "radar_stop"
"""Match label of the axis's stop phrases; never a taxonomy id (ids are dotted)."""

# How far back from a country name a role cue may start ("Country of origin of the product: China").
ROLE_WINDOW_CHARS = 60

if not Span.has_extension("radar_role"):
    Span.set_extension("radar_role", default=None)


def doc_text(doc: Doc) -> str:
    """``doc.text``, computed once per doc: spaCy rebuilds it from every token on each access."""
    text = doc.user_data.get("radar_text")
    if text is None:
        text = doc.user_data["radar_text"] = doc.text
    return text


def term_language(lang: str) -> str:
    """The language whose term patterns (nlp/patterns/terms/<lang>.jsonl) a pipeline of ``lang`` matches."""
    return lang if lang in SUPPORTED_LANGUAGES else FALLBACK_TERM_LANGUAGE


def _make_docs(nlp: Language, texts: Iterable[str]) -> list[Doc]:
    return list(nlp.tokenizer.pipe(texts))


_NO_PLURAL = re.compile(r"(?:s|ware|wear|ment|ing|ery|ry|ics|ppe|[^a-z])$")


def english_plural(term: str) -> str | None:
    """The plural of a term's last word ("lawn mower" → "lawn mowers"), or None when it has none.

    English term lists name one form; the plural is derived so "mowers" and "blowers" need no entry.
    Mass nouns and words that already look plural are left alone.
    """
    head, _, last = term.rpartition(" ")
    if len(last) < 3 or _NO_PLURAL.search(last) or not last.isalpha():
        return None
    if last.endswith("y") and last[-2:-1] not in "aeiou":
        plural = last[:-1] + "ies"
    elif last.endswith(("x", "z", "ch", "sh")):
        plural = last + "es"
    else:
        plural = last + "s"
    return f"{head} {plural}" if head else plural


ROMANCE_PLURALS = ("fr", "es", "it")
"""Languages whose single-word terms get a derived regular plural (see :func:`romance_plural`)."""


_UNACCENT = str.maketrans("áéíóú", "aeiou")


def romance_plural(word: str, lang: str) -> str | None:
    """The regular plural of a one-word French, Spanish or Italian term ("jouet" → "jouets", "cargador" →
    "cargadores", "giocattolo" → "giocattoli"), or None where the rule is unsure or the word has none.

    Only single words: in a phrase the plural falls on the head noun and its adjectives ("juguetes
    magnéticos"), so phrases list their plural themselves. An irregular noun gets a wrong form no text
    contains, which costs nothing; write its real plural as a term.
    """
    w = word.lower()
    if " " in word or not word.isalpha() or len(word) < 4:
        return None
    if lang == "fr":
        if w.endswith(("s", "x", "z")):
            return None
        if w.endswith(("eau", "au", "eu")):
            return word + "x"
        return word[:-1] + "ux" if w.endswith("al") else word + "s"
    if lang == "es":
        if w.endswith(("s", "x")):
            return None
        if w.endswith("z"):
            return word[:-1] + "ces"
        if w[-1] in "aeiouáéíóú":
            return word + "s"
        # "biberón" → "biberones": the stress mark goes when a syllable is added.
        return (word[:-2] + word[-2].translate(_UNACCENT) + word[-1] if w[-2] in "áéíóú" else word) + "es"
    if lang == "it":
        # -co/-go and -cia/-gia go either way (giochi, medici); accented or consonant endings do not change.
        if w.endswith(("co", "go", "cia", "gia")):
            return None
        if w.endswith(("ca", "ga")):
            return word[:-1] + "he"
        if w.endswith("io"):
            return word[:-1]
        if w[-1] in "oe":
            return word[:-1] + "i"
        if w[-1] == "a":
            return word[:-1] + "e"
    return None


def plural(term: str, lang: str) -> str | None:
    """The derived plural of a term in its language (English, French, Spanish, Italian), or None."""
    if lang == "en":
        return english_plural(term)
    return romance_plural(term, lang) if lang in ROMANCE_PLURALS else None


class TermMatcher:
    """Marks the words of one axis (category, hazard or substance) in ``doc.spans[SPAN_KEYS[axis]]``.

    The words are the term patterns of the pipeline's language (nlp/patterns/terms/<lang>.jsonl).
    Phrases match case-insensitively on whole tokens; where phrases overlap the longest wins
    ("lithium battery" over "battery"). Patterns written with a leading hyphen also match as the
    tail of a closed compound ("Kinderspielzeug" for "-spielzeug").
    """

    def __init__(self, nlp: Language, name: str, axis: str, taxonomy: Taxonomy, terms_dir: str | None = None) -> None:
        if axis not in ("category", "hazard", "substance"):
            raise ValueError(f"radar_terms works on the category, hazard or substance axis, not {axis!r}")
        self.name = name
        self.axis = axis
        self.key = SPAN_KEYS[axis]
        self.matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
        language = term_language(nlp.lang)
        patterns = load_terms(language, taxonomy, terms_dir).axis(axis)
        phrases: dict[str, list[str]] = {}
        tails: dict[str, str] = {}
        explicit = {term.lower() for term, _ in patterns.terms}
        for term, node_id in patterns.terms:
            if term.startswith(COMPOUND_TAIL_MARK):
                term = term[len(COMPOUND_TAIL_MARK) :]
                tails[term.lower()] = node_id
            phrases.setdefault(node_id, []).append(term)
            derived = plural(term, language)
            if derived and derived.lower() not in explicit:
                phrases[node_id].append(derived)
        # Cue words ("fall") count only next to a cue noun ("... hazard", "risk of ...").
        self.cue_words = {w.lower(): node_id for w, node_id in patterns.cues}
        self.cue_after = {w.lower() for w in patterns.cue_after}
        self.cue_before = [tuple(w.lower().split()) for w in patterns.cue_before]
        self.absorbing = taxonomy.absorbing(axis)
        self.lang = nlp.lang
        self.cue_matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
        if self.cue_words:
            self.cue_matcher.add("cue", _make_docs(nlp, sorted(self.cue_words)))
        for node_id, terms in phrases.items():
            self.matcher.add(node_id, _make_docs(nlp, dict.fromkeys(terms)))
        if patterns.stops:
            self.matcher.add(STOP_LABEL, _make_docs(nlp, dict.fromkeys(patterns.stops)))
        self.tails = tails
        # Matching reversed tokens against reversed tails, longest first, finds the longest tail
        # with one anchored regex match per token instead of one dict probe per split point.
        self._tail_re = (
            re.compile("|".join(re.escape(t[::-1]) for t in sorted(tails, key=len, reverse=True))) if tails else None
        )
        log.debug("%s: %d %s nodes, %d compound tails in %s", name, len(phrases), axis, len(tails), language)

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
        if self.cue_words:
            spans.extend(self._cued(doc, covered | {i for span in spans for i in range(span.start, span.end)}))
        spans.sort(key=lambda span: span.start)
        if self.absorbing:
            spans = self._absorb(spans)
        if self.axis == "category" and self.lang in HEAD_LAST_LANGUAGES:
            spans = self._heads(spans)
        doc.spans[self.key] = spans
        return doc

    def _heads(self, spans: list[Span]) -> list[Span]:
        """In "Spice Candles" or "Coffee Cups" the first word only modifies the head that follows: drop it.

        Two category spans count as one noun phrase when at most one plain word (no function word, no
        punctuation) stands between them. An absorbing node ("toy") is kept: it modifies the meaning.
        """
        if len(spans) < 2:
            return spans
        drop = set()
        for a, b in zip(spans, spans[1:]):
            gap = b.start - a.end
            if 0 <= gap <= 1 and a.label_ != b.label_ and a.label_ not in self.absorbing:
                between = a.doc[a.end : b.start]
                if not any(t.is_stop or t.is_punct for t in between):
                    drop.add(a.start)
        return [span for span in spans if span.start not in drop]

    def _absorb(self, spans: list[Span]) -> list[Span]:
        """Drops spans that follow, within a few tokens, a span of an absorbing node ("toy" + "cars")."""
        out: list[Span] = []
        reach = -1
        for span in spans:
            if span.start <= reach and span.label_ not in self.absorbing:
                continue
            out.append(span)
            if span.label_ in self.absorbing:
                # The words between must be plain modifiers: "Toy Police Cars", not "toy with charger".
                doc, end = span.doc, span.end
                limit = min(len(doc), end + self.absorbing[span.label_])
                while end < limit and not (doc[end].is_stop or doc[end].is_punct):
                    end += 1
                reach = max(reach, end - 1)
        return out

    _JOINERS = frozenset({"and", "or", ",", "&", "/", "et", "ou", "und", "oder", "y", "o", "e", "en", "i", "lub"})

    def _cued(self, doc: Doc, covered: set[int]) -> list[Span]:
        """Spans of cue words that stand in a coordination ending in a cue noun, or after a leading one."""
        out = []
        n = len(doc)
        # The phrase matcher finds the candidate words in C; the context checks below are for those only.
        for _, start, _end in self.cue_matcher(doc):
            token = doc[start]
            node_id = self.cue_words.get(token.lower_)
            if node_id is None or token.i in covered:
                continue
            # Forward: "Fall, Entrapment and Strangulation Hazards".
            j, ok = token.i + 1, False
            while j < n and j - token.i <= 8:
                low = doc[j].lower_
                if low in self.cue_after:
                    ok = True
                    break
                # Other hazard words may stand in the coordination: "Shock and Fire Hazards".
                if low in self._JOINERS or low in self.cue_words or j in covered or doc[j].text == "-":
                    j += 1
                    continue
                break
            if not ok:
                # Backward: "risk of fall", "risque de chute ou d'électrocution".
                j = token.i
                while j > 0 and token.i - j <= 8:
                    prev = doc[j - 1].lower_
                    if prev in self._JOINERS or prev in self.cue_words or (j - 1) in covered or prev in ("d'", "l'"):
                        j -= 1
                        continue
                    break
                for cue in self.cue_before:
                    k = len(cue)
                    if j - k >= 0 and tuple(t.lower_ for t in doc[j - k : j]) == cue:
                        ok = True
                        break
            if ok:
                out.append(Span(doc, token.i, token.i + 1, label=node_id))
        return out


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
        for _, name_text, node_id in taxonomy.jurisdiction_names(languages):
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

    def role_for(self, doc: Doc, span: Span, text: str | None = None) -> str | None:
        # doc.text rebuilds the string from every token: callers with many spans pass it in.
        text = doc_text(doc) if text is None else text
        window = text[max(0, span.start_char - ROLE_WINDOW_CHARS) : span.start_char]
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
        text = doc_text(doc) if spans else ""
        for span in spans:
            span._.radar_role = self.role_for(doc, span, text)
        doc.spans[self.key] = spans
        return doc


@Language.factory(
    "radar_terms",
    default_config={"axis": "category", "taxonomy_dir": None, "terms_dir": None},
)
def make_radar_terms(nlp: Language, name: str, axis: str, taxonomy_dir: str | None,
                     terms_dir: str | None) -> TermMatcher:
    """Category, hazard or substance words: the term patterns of the pipeline's language from
    nlp/patterns/terms (``terms_dir`` overrides the folder), for the ids of config/taxonomy
    (``taxonomy_dir`` overrides the folder)."""
    return TermMatcher(nlp, name, axis, load_cached(taxonomy_dir), terms_dir)


@Language.factory("radar_jurisdictions", default_config={"taxonomy_dir": None})
def make_radar_jurisdictions(nlp: Language, name: str, taxonomy_dir: str | None) -> JurisdictionMatcher:
    """Jurisdiction names and their roles from config/taxonomy/jurisdictions.yml."""
    return JurisdictionMatcher(nlp, name, load_cached(taxonomy_dir))
