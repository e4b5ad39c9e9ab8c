"""One multi-pattern matcher for policy-rule phrases, shared by impact estimates and live listing checks.

How text is compared (the same for rule phrases and for listing text):

- Unicode compatibility-decomposed (NFKD), case-folded and accent-folded: ``Ladegerät``, ``LADEGERAT``
  and ``ladegerät`` are one word; ``ß`` reads ``ss``, ``ø`` reads ``o``, ``œ`` reads ``oe``, ``ﬁ`` reads ``fi``.
- Every character that is not a letter or a digit (punctuation, symbols, whitespace) separates words, and
  runs of separators count as one: ``usb-c``, ``USB C`` and ``usb/c`` are the same two words.
- A phrase hits only **whole words at both ends**: ``charger`` hits "USB charger, 20W" but not
  "supercharger" nor "chargers". A ``*`` at either end of a phrase lifts that end's check:
  ``charger*`` also hits "chargers", and ``*ladegerät`` hits the German compound "Schnellladegerät".
  We chose whole words by default because substring hits on listing titles are mostly false
  positives ("gun" in "burgundy"), and the ``*`` makes the exceptions explicit in the policy file.
- A listing's text is its title and, when present, its description; a phrase never spans the two.
- Exclude phrases veto their rule for that listing, wherever in the text they occur.
- Scope: a rule hits a listing only when the listing's market is one of the rule's markets (``EU`` covers
  the member states, read from ``config/taxonomy/jurisdictions.yml`` when it lists them, else a built-in
  list) and, when the listing carries a taxonomy category (``cat.…``), that category and one of the rule's
  categories are the same or one contains the other (``cat.toys`` ⊇ ``cat.toys.magnetic``). A listing with
  no category, or with a category that is not a taxonomy id, is judged on its text alone.

Speed: the bulk path (:meth:`Matcher.scan`) joins thousands of listings into one string, normalises it
with C-level codecs and numpy, and walks it once with the pyahocorasick automaton, so Python only runs
for hits. Phrase keys are padded with spaces, which makes the automaton itself enforce word boundaries.
Both the bulk path and the per-listing path with character spans use the same per-character folding,
so they agree exactly.
"""

from __future__ import annotations

import codecs
import logging
import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ahocorasick
import numpy as np
import yaml

if TYPE_CHECKING:
    from radar.rules import Rule

log = logging.getLogger(__name__)

# libyaml's safe loader when PyYAML was built with it: same results, several times faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

REPO_ROOT = Path(__file__).resolve().parent.parent
JURISDICTIONS_FILE = REPO_ROOT / "config" / "taxonomy" / "jurisdictions.yml"

# Fallback when the taxonomy does not (yet) list the member states: EU-27 since 1 February 2020.
EU_MEMBER_STATES_FALLBACK = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split()
)
# Catalogues say UK and EL where ISO 3166 says GB and GR; rules must use the ISO codes (rules.py checks).
MARKET_ALIASES = {"UK": "GB", "EL": "GR"}

# Field separators inside a joined chunk: never part of a phrase, so a phrase cannot span two listings
# (\x00) or a title and its description (\x01).
_ROW_SEP = "\x00"
_FIELD_SEP = "\x01"
# How many listings one automaton pass covers: large enough to amortise the per-call overhead, small
# enough that one exotic character only widens a small string.
SCAN_CHUNK = 5000

# Letters NFKD leaves alone but which readers treat as accented variants of a base letter.
_EXTRA_FOLD = {"ø": "o", "œ": "oe", "æ": "ae", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i", "ħ": "h"}


def _is_stripped_mark(ch: str) -> bool:
    """Diacritics we drop (accent folding); other combining marks (Indic vowel signs) stay word characters."""
    cp = ord(ch)
    return 0x300 <= cp <= 0x36F or 0x1AB0 <= cp <= 0x1AFF or 0x1DC0 <= cp <= 0x1DFF or 0x20D0 <= cp <= 0x20FF or 0xFE20 <= cp <= 0xFE2F


@lru_cache(maxsize=65536)
def _fold_char(ch: str) -> str:
    """One non-ASCII character as lower-case, accent-free word characters and spaces."""
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", ch).casefold())
    out = []
    for c in folded:
        c = _EXTRA_FOLD.get(c, c)
        if c.isalnum():
            out.append(c.lower() if c.isascii() else c)
        elif _is_stripped_mark(c):
            continue
        elif unicodedata.category(c) in ("Mn", "Mc", "Me"):
            out.append(c)
        else:
            out.append(" ")
    return "".join(out)


@lru_cache(maxsize=65536)
def _fold_run_bytes(run: str) -> bytes:
    return "".join(map(_fold_char, run)).encode("utf-8", "surrogatepass")


def _fold_error_handler(exc: UnicodeError) -> tuple[bytes, int]:
    # Called by str.encode("ascii") only for runs of non-ASCII characters, so pure-ASCII text (most
    # titles) never reaches Python; the bytes returned are UTF-8, which keeps the whole buffer UTF-8.
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    return _fold_run_bytes(exc.object[exc.start : exc.end]), exc.end


_FOLD_ERRORS = "radar_matcher_fold"
codecs.register_error(_FOLD_ERRORS, _fold_error_handler)

# ASCII byte map: letters lower-cased, digits kept, everything else a space; separators and UTF-8
# bytes (>= 0x80, already folded) pass through.
_LUT = np.arange(256, dtype=np.uint8)
for _b in range(128):
    _c = chr(_b)
    if _c.isalnum():
        _LUT[_b] = ord(_c.lower())
    elif _c not in (_ROW_SEP, _FIELD_SEP):
        _LUT[_b] = 32
_LUT_BYTES = _LUT.tobytes()
# The same map for single texts, where the separators are plain spaces.
_ASCII_TABLE = {b: (" " if b in (0, 1) else chr(_LUT[b])) for b in range(128)}
_WORD_RUN = re.compile(r"[^ ]+")
_SPACE_RUN = re.compile(rb"  +")
_SHORT_TEXT = 2048


def _squeeze(raw: bytes) -> bytes:
    """Byte-map (bytes.translate, in C) and collapse space runs of a UTF-8 buffer: numpy for long buffers,
    a regex for short ones (phrases, single titles), where numpy's per-call cost dominates."""
    if len(raw) < _SHORT_TEXT:
        return _SPACE_RUN.sub(b" ", raw.translate(_LUT_BYTES))
    arr = np.frombuffer(raw.translate(_LUT_BYTES), dtype=np.uint8)
    space = arr == 32
    keep = np.empty(arr.size, dtype=bool)
    keep[0] = True
    np.logical_not(space[1:] & space[:-1], out=keep[1:])
    return arr[keep].tobytes()


def _normalise_bytes(text: str) -> bytes:
    """The matching form of ``text`` as UTF-8 bytes, with one leading and one trailing space."""
    text = text.replace(_ROW_SEP, " ").replace(_FIELD_SEP, " ")
    return _squeeze((" " + text + " ").encode("ascii", _FOLD_ERRORS))


def normalise_text(text: str) -> str:
    """The form in which phrases and listing text are compared: ``"USB-C Ladegerät!"`` → ``"usb c ladegerat"``."""
    return _normalise_bytes(text).decode("utf-8", "surrogatepass").strip(" ")


def _normalise_mapped(text: str) -> tuple[bytes, list[int]]:
    """Like :func:`_normalise_bytes`, plus the index in ``text`` of the character behind each byte.

    Per character, so slower; used only where spans are wanted (single listings, examples).
    """
    if text.isascii():
        # ASCII maps one character to one byte: translate, then collapse spaces word by word.
        mapped = text.translate(_ASCII_TABLE)
        pieces = [" "]
        src = [-1]
        for word in _WORD_RUN.finditer(mapped):
            start, end = word.span()
            pieces += (word.group(), " ")
            src.extend(range(start, end + 1))
        return "".join(pieces).encode("ascii"), src
    out = bytearray(b" ")
    src = [-1]
    for i, ch in enumerate(text):
        if ch < "\x80":
            piece = bytes((_LUT_BYTES[ord(ch)] if ch not in (_ROW_SEP, _FIELD_SEP) else 32,))
        else:
            piece = _fold_run_bytes(ch)
        for byte in piece:
            if byte == 32 and out[-1] == 32:
                continue
            out.append(byte)
            src.append(i)
    if out[-1] != 32:
        out.append(32)
        src.append(len(text))
    return bytes(out), src


# --- phrases ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PhraseKey:
    """A rule phrase in matching form: the normalised words and which ends must be word boundaries."""

    phrase: str
    words: str
    open_left: bool
    open_right: bool

    @property
    def key(self) -> str:
        """The automaton key: UTF-8 bytes seen as latin-1 characters, padded where a boundary is required."""
        body = (" " if not self.open_left else "") + self.words + (" " if not self.open_right else "")
        return body.encode("utf-8", "surrogatepass").decode("latin-1")


@lru_cache(maxsize=65536)
def phrase_key(phrase: str) -> PhraseKey:
    """Parse a rule phrase: ``*`` at either end marks an open end; the rest is normalised."""
    raw = phrase.strip()
    open_left = raw.startswith("*")
    open_right = raw.endswith("*") and len(raw) > 1
    core = raw.strip("*")
    return PhraseKey(phrase=phrase, words=normalise_text(core), open_left=open_left, open_right=open_right)


# --- markets and categories ------------------------------------------------------------------------


@lru_cache(maxsize=4)
def eu_member_states(path: Path | None = None) -> frozenset[str]:
    """ISO codes of the EU member states: from the jurisdictions taxonomy when it lists them, else built in.

    The taxonomy counts an entry as a member state when it has an ``iso2`` code and either an id under
    ``juris.eu.`` or an ``eu_member: true`` / ``eu: true`` flag.
    """
    path = path or JURISDICTIONS_FILE
    if not path.exists():
        return EU_MEMBER_STATES_FALLBACK
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        log.warning("%s unreadable (%s); using the built-in EU member list", path, exc)
        return EU_MEMBER_STATES_FALLBACK
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            iso2 = node.get("iso2")
            ident = str(node.get("id", ""))
            member = node.get("eu_member", node.get("eu"))
            if isinstance(iso2, str) and len(iso2) == 2 and (ident.startswith("juris.eu.") or member is True):
                found.add(iso2.upper())
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    # A partial file (being written, or listing a few states) must not shrink "EU": trust it only when
    # it names most of the member states, and log the difference from the built-in list.
    if len(found) < 20:
        log.debug("%s lists %d EU member states; using the built-in list", path, len(found))
        return EU_MEMBER_STATES_FALLBACK
    if found != EU_MEMBER_STATES_FALLBACK:
        log.info("EU member states from %s differ from the built-in list: %s", path, sorted(found ^ EU_MEMBER_STATES_FALLBACK))
    return frozenset(found)


def normalise_market(market: Any) -> str:
    """``" uk "`` → ``"GB"``; ``None`` → ``""``."""
    if market is None:
        return ""
    code = str(market).strip().upper()
    return MARKET_ALIASES.get(code, code)


def expand_markets(markets: Iterable[str], eu: frozenset[str] | None = None) -> frozenset[str]:
    """Rule markets as the set of ISO codes they cover; ``EU`` stays in the set as well as its members."""
    eu = eu if eu is not None else eu_member_states()
    out: set[str] = set()
    for market in markets:
        code = normalise_market(market)
        out.add(code)
        if code == "EU":
            out |= eu
    return frozenset(out)


def category_in_scope(category: str | None, rule_categories: Sequence[str]) -> bool:
    """Whether a listing category falls within a rule's categories (see the module docstring)."""
    if not rule_categories or not category or not category.startswith("cat."):
        return True
    for rc in rule_categories:
        if category == rc or category.startswith(rc + ".") or rc.startswith(category + "."):
            return True
    return False


# --- results -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """Where a phrase hit: the field ("title", "description" or "text"), character offsets, the rule phrase."""

    field: str
    start: int
    end: int
    phrase: str


@dataclass(frozen=True, slots=True)
class Hit:
    """One rule hitting one listing: the phrases that hit and where."""

    rule_id: str
    terms: tuple[str, ...]
    spans: tuple[Span, ...]


def highlight(text: str, spans: Iterable[Span | tuple[int, int]], marks: tuple[str, str] = ("«", "»")) -> str:
    """``text`` with each span wrapped in ``marks``; overlapping spans are merged."""
    ranges = sorted((s.start, s.end) if isinstance(s, Span) else (s[0], s[1]) for s in spans)
    merged: list[list[int]] = []
    for start, end in ranges:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out, pos = [], 0
    for start, end in merged:
        out += [text[pos:start], marks[0], text[start:end], marks[1]]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _field(listing: Any, name: str) -> Any:
    if isinstance(listing, Mapping):
        return listing.get(name)
    return getattr(listing, name, None)


# --- the matcher ---------------------------------------------------------------------------------------


class Matcher:
    """An Aho-Corasick automaton over the include and exclude phrases of many rules.

    Rules are referred to by their position in ``rules`` in the bulk API (:meth:`scan`,
    :meth:`scan_pairs`), so two versions of one rule (current and proposed) can share a matcher;
    :meth:`match` and :meth:`match_listing` report rule ids. A matcher can be shared between threads.
    """

    def __init__(self, rules: Sequence[Rule] | Any, *, eu_members: frozenset[str] | None = None) -> None:
        rules = list(getattr(rules, "rules", rules))
        self.rules: tuple[Rule, ...] = tuple(rules)
        self._eu_members = eu_members
        eu = eu_members if eu_members is not None else eu_member_states()
        self._markets: list[frozenset[str]] = [expand_markets(r.markets, eu) for r in rules]
        self._categories: list[tuple[str, ...]] = [tuple(r.categories) for r in rules]
        self._category_memo: dict[tuple[int, str | None], bool] = {}
        # key -> (include rule indices, exclude rule indices, [(rule index, phrase, is_exclude)])
        entries: dict[str, list[tuple[int, str, bool]]] = {}
        for index, rule in enumerate(rules):
            for is_exclude, terms in ((False, rule.match.include), (True, rule.match.exclude)):
                for phrases in terms.values():
                    for phrase in phrases:
                        pk = phrase_key(phrase)
                        if not pk.words:
                            log.warning("rule %s: phrase %r has no letters or digits; ignored", rule.id, phrase)
                            continue
                        entries.setdefault(pk.key, []).append((index, phrase, is_exclude))
        self._automaton = ahocorasick.Automaton()
        self._key_info: list[tuple[frozenset[int], frozenset[int], tuple[tuple[int, str, bool], ...]]] = []
        self._key_lengths: list[int] = []
        for key_id, (key, items) in enumerate(entries.items()):
            self._key_lengths.append(len(key))
            include = frozenset(i for i, _, ex in items if not ex)
            exclude = frozenset(i for i, _, ex in items if ex)
            self._key_info.append((include, exclude, tuple(items)))
            self._automaton.add_word(key, key_id)
        self.phrase_count = len(entries)
        self._has_keys = bool(entries)
        if self._has_keys:
            self._automaton.make_automaton()
        self._has_excludes = any(info[1] for info in self._key_info)
        # The same entries as flat arrays (CSR layout) for the vectorised bulk path.
        entry_rule: list[int] = []
        entry_exclude: list[bool] = []
        key_ptr: list[int] = []
        for include, exclude, _ in self._key_info:
            key_ptr.append(len(entry_rule))
            for rule_index in sorted(include):
                entry_rule.append(rule_index)
                entry_exclude.append(False)
            for rule_index in sorted(exclude):
                entry_rule.append(rule_index)
                entry_exclude.append(True)
        self._n_rules = max(1, len(rules))
        self._key_ptr = np.array(key_ptr, dtype=np.int64)
        self._key_count = np.diff(np.array(key_ptr + [len(entry_rule)], dtype=np.int64))
        self._single_entry_keys = bool(self._key_count.size) and bool((self._key_count == 1).all())
        self._entry_rule = np.array(entry_rule, dtype=np.int64)
        self._entry_exclude = np.array(entry_exclude, dtype=bool)
        # Scope as boolean matrices rule × market and rule × category, one column per value seen;
        # category column 0 stands for "no taxonomy category" and lets every rule through.
        self._market_cols: dict[Any, int] = _Columns(self._add_market_column)
        self._market_ok = np.zeros((len(rules), 0), dtype=bool)
        self._category_cols: dict[Any, int] = _Columns(self._add_category_column)
        self._category_ok = np.ones((len(rules), 1), dtype=bool)
        self._scope_lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its rules, e.g. for a spawned worker process: the automaton and the lock are rebuilt.
        return (_rebuild_matcher, (self.rules, self._eu_members))

    # scope -------------------------------------------------------------------------------------------

    def in_scope(self, rule_index: int, market: Any, category: str | None) -> bool:
        """Whether rule ``rule_index`` applies to a listing in ``market`` and ``category``."""
        if normalise_market(market) not in self._markets[rule_index]:
            return False
        memo_key = (rule_index, category)
        ok = self._category_memo.get(memo_key)
        if ok is None:
            ok = self._category_memo[memo_key] = category_in_scope(category, self._categories[rule_index])
        return ok

    # single texts, with spans --------------------------------------------------------------------

    def _hits_in(self, text: str) -> tuple[dict[int, list[tuple[int, int, str]]], set[int]]:
        """Include hits per rule index with spans in ``text``, and the rule indices an exclude vetoed."""
        found: dict[int, list[tuple[int, int, str]]] = {}
        vetoed: set[int] = set()
        if not text or not self._has_keys:
            return found, vetoed
        norm, src = _normalise_mapped(text)
        haystack = norm.decode("latin-1")
        for end, key_id in self._automaton.iter(haystack):
            include, exclude, items = self._key_info[key_id]
            vetoed |= exclude
            if not include:
                continue
            start_byte, end_byte = self._span_bytes(haystack, end, key_id)
            start = src[start_byte]
            stop = src[end_byte] + 1
            for rule_index, phrase, is_exclude in items:
                if not is_exclude:
                    found.setdefault(rule_index, []).append((start, stop, phrase))
        return found, vetoed

    def _span_bytes(self, haystack: str, end: int, key_id: int) -> tuple[int, int]:
        # The automaton reports the end of the key; the key's length gives its start. Padding spaces are
        # part of the key, so trim them to get the first and last byte of the phrase words themselves.
        key_len = self._key_lengths[key_id]
        start = end - key_len + 1
        if haystack[start] == " ":
            start += 1
        last = end
        if haystack[last] == " ":
            last -= 1
        return start, last

    def match(self, text: str, *, market: Any = None, category: str | None = None) -> dict[str, list[tuple[int, int, str]]]:
        """Rules whose phrases hit ``text``: ``{rule_id: [(start, end, phrase), …]}``, offsets into ``text``.

        Exclude phrases veto their rule. Market and category scope apply only when given.
        """
        found, vetoed = self._hits_in(text)
        out: dict[str, list[tuple[int, int, str]]] = {}
        for rule_index in sorted(found):
            if rule_index in vetoed:
                continue
            if market is not None and not self.in_scope(rule_index, market, category):
                continue
            if market is None and category is not None and not category_in_scope(category, self._categories[rule_index]):
                continue
            out.setdefault(self.rules[rule_index].id, []).extend(sorted(found[rule_index]))
        return out

    def match_listing(self, listing: Any) -> list[Hit]:
        """The rules that hit one listing (a mapping or an object with title, description, category, market)."""
        return [hit for _, hit in self.match_listing_indexed(listing)]

    def match_listing_indexed(self, listing: Any) -> list[tuple[int, Hit]]:
        """Like :meth:`match_listing`, with each hit's rule index (for matchers holding two versions of a rule)."""
        market = _field(listing, "market")
        category = _field(listing, "category") or None
        per_rule: dict[int, list[Span]] = {}
        vetoed: set[int] = set()
        for field_name in ("title", "description"):
            value = _field(listing, field_name)
            if not value:
                continue
            found, field_vetoed = self._hits_in(str(value))
            vetoed |= field_vetoed
            for rule_index, spans in found.items():
                per_rule.setdefault(rule_index, []).extend(Span(field_name, s, e, p) for s, e, p in spans)
        hits = []
        for rule_index in sorted(per_rule):
            if rule_index in vetoed or not self.in_scope(rule_index, market, category):
                continue
            spans = sorted(per_rule[rule_index], key=lambda s: (s.field != "title", s.start, s.end))
            terms = tuple(dict.fromkeys(s.phrase for s in spans))
            hits.append((rule_index, Hit(self.rules[rule_index].id, terms, tuple(spans))))
        return hits

    # bulk -----------------------------------------------------------------------------------------------

    def scan(
        self,
        titles: Sequence[str],
        markets: Sequence[Any] | None = None,
        categories: Sequence[str | None] | None = None,
        descriptions: Sequence[str | None] | None = None,
    ) -> dict[int, tuple[int, ...]]:
        """Which rules hit which rows: ``{row: (rule index, …)}`` for rows with at least one hit.

        Rows are positions in ``titles``; ``markets``, ``categories`` and ``descriptions`` run parallel to
        it. Without ``markets`` no scope is applied (text only), which is what a phrase search wants.
        """
        rows, rules = self.scan_pairs(titles, markets, categories, descriptions)
        out: dict[int, list[int]] = {}
        for row, rule in zip(rows.tolist(), rules.tolist()):
            out.setdefault(row, []).append(rule)
        return {row: tuple(found) for row, found in out.items()}

    def scan_pairs(
        self,
        titles: Sequence[str],
        markets: Sequence[Any] | None = None,
        categories: Sequence[str | None] | None = None,
        descriptions: Sequence[str | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`scan`, as two int64 arrays (row, rule index), ordered by row then rule.

        The fast path for bulk work: no Python object per hit.
        """
        all_rows: list[np.ndarray] = []
        all_rules: list[np.ndarray] = []
        if self._has_keys:
            for offset in range(0, len(titles), SCAN_CHUNK):
                stop = offset + SCAN_CHUNK
                descs = descriptions[offset:stop] if descriptions is not None else None
                rows, rules = self._scan_chunk(titles[offset:stop], descs)
                if rows.size and markets is not None:
                    keep = self._scope_mask(rows, rules, markets[offset:stop], categories[offset:stop] if categories is not None else None)
                    rows, rules = rows[keep], rules[keep]
                if rows.size:
                    all_rows.append(rows + offset)
                    all_rules.append(rules)
        if not all_rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(all_rows), np.concatenate(all_rules)

    def _scan_chunk(self, titles: Sequence[str], descriptions: Sequence[str | None] | None) -> tuple[np.ndarray, np.ndarray]:
        """(row, rule) pairs hit in one chunk, excludes applied, no scope."""
        if descriptions is not None:
            texts = [f"{t} {_FIELD_SEP} {d}" if d else t for t, d in zip(titles, descriptions)]
            expected_fields = len(descriptions) - descriptions.count(None) - descriptions.count("")
        else:
            texts = titles if isinstance(titles, list) else list(titles)
            expected_fields = 0
        try:
            joined = " " + f" {_ROW_SEP} ".join(texts) + " "
        except TypeError:  # a None or non-text title
            texts = ["" if t is None else str(t) for t in texts]
            joined = " " + f" {_ROW_SEP} ".join(texts) + " "
        data = _squeeze(joined.encode("ascii", _FOLD_ERRORS))
        # Folding never makes a separator, so any extra one comes from the listing text itself.
        separators = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0)
        if separators.size != len(texts) - 1 or data.count(_FIELD_SEP.encode()) != expected_fields:
            # A listing carries a separator character itself: blank them out row by row (rare).
            if descriptions is not None:
                texts = [f"{_clean(t)} {_FIELD_SEP} {_clean(d)}" if d else _clean(t) for t, d in zip(titles, descriptions)]
            else:
                texts = [_clean(t) for t in titles]
            data = _squeeze((" " + f" {_ROW_SEP} ".join(texts) + " ").encode("ascii", _FOLD_ERRORS))
            separators = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0)
        haystack = data.decode("latin-1")
        # chain.from_iterable + fromiter drains the automaton in C: no Python frame per hit.
        flat = np.fromiter(chain.from_iterable(self._automaton.iter(haystack)), dtype=np.int64)
        if not flat.size:
            return flat, flat
        hit_rows = np.searchsorted(separators, flat[0::2])
        keys = flat[1::2]
        # Expand each key hit into its (rule, is_exclude) entries.
        counts = self._key_count[keys]
        if self._single_entry_keys:
            idx = self._key_ptr[keys]
            rep_rows = hit_rows
        else:
            rep_rows = np.repeat(hit_rows, counts)
            ends = np.cumsum(counts)
            idx = np.repeat(self._key_ptr[keys] - (ends - counts), counts) + np.arange(int(ends[-1]))
        codes = rep_rows * self._n_rules + self._entry_rule[idx]
        if self._has_excludes:
            is_exclude = self._entry_exclude[idx]
            included = np.unique(codes[~is_exclude])
            if is_exclude.any():
                included = included[~np.isin(included, codes[is_exclude])]
        else:
            included = np.unique(codes)
        return included // self._n_rules, included % self._n_rules

    def _scope_mask(
        self, rows: np.ndarray, rules: np.ndarray, markets: Sequence[Any], categories: Sequence[str | None] | None
    ) -> np.ndarray:
        # Column numbers for every row of the chunk through C-level dict look-ups (map), then numpy.
        market_cols = np.fromiter(map(self._market_cols.__getitem__, markets), dtype=np.int64, count=len(markets))
        keep = self._market_ok[rules, market_cols[rows]]
        if categories is not None:
            category_cols = np.fromiter(map(self._category_cols.__getitem__, categories), dtype=np.int64, count=len(categories))
            keep &= self._category_ok[rules, category_cols[rows]]
        return keep

    def _add_market_column(self, market: Any) -> int:
        with self._scope_lock:  # two threads adding columns at once would mix up their indices
            code = normalise_market(market)
            column = self._market_cols.get(code)
            if column is None:
                fits = np.array([code in m for m in self._markets], dtype=bool)
                self._market_ok = np.column_stack([self._market_ok, fits])
                column = self._market_cols[code] = self._market_ok.shape[1] - 1
            self._market_cols[market] = column
        return column

    def _add_category_column(self, category: str | None) -> int:
        if not category or not category.startswith("cat."):
            column = 0  # no taxonomy category: every rule's category scope passes
        else:
            with self._scope_lock:
                column = self._category_cols.get(category)
                if column is None:
                    fits = np.array([category_in_scope(category, c) for c in self._categories], dtype=bool)
                    self._category_ok = np.column_stack([self._category_ok, fits])
                    column = self._category_ok.shape[1] - 1
        self._category_cols[category] = column
        return column


def _rebuild_matcher(rules: Sequence[Rule], eu_members: frozenset[str] | None) -> Matcher:
    return Matcher(rules, eu_members=eu_members)


class _Columns(dict):
    """Value → scope-matrix column; a value not seen yet gets its column from ``add`` (under the matcher's lock)."""

    def __init__(self, add: Any) -> None:
        super().__init__()
        self._add = add

    def __missing__(self, key: Any) -> int:
        return self._add(key)


def _clean(text: str | None) -> str:
    if not text:
        return ""
    return text.replace(_ROW_SEP, " ").replace(_FIELD_SEP, " ")
