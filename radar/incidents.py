"""Incidents: notices from different sources about the same product or event, linked with a confidence.

Links are tried strongest first, and every notice keeps the strongest link it has:

1. **GTIN** (confidence 1.0): the same trade item number, compared as GTIN-14 (digits only, zero-padded,
   so a UPC-A and the EAN-13 written for it agree). A field listing several GTINs links on each.
   When two notices share the number but their product names have no word in common, the link is
   kept with confidence 0.5 so that a person confirms it (a mistyped or mis-parsed number is likelier).
2. **Brand + model** (0.9): the same brand and model after folding case, accents and punctuation
   (``ACME`` / ``Acme``, ``XZ-100`` / ``xz 100``). Placeholders such as "unknown" or "no brand" never link.
3. **Text** (0.85 × score / 100): the product name (or the title when a source has no product field)
   of notices from *different* sources, published within ``incident_text_window_days`` of each other,
   whose rapidfuzz ``token_set_ratio`` is at least ``incident_text_threshold`` once boilerplate words
   ("recall", "alert", "product"…) are dropped. Names of fewer than three words, and pairs whose brands,
   models or GTINs are known and differ, are never linked on text: "hair dryer" is not a product.
   With many notices the pairs to score come from a datasketch MinHash LSH index on the name's words
   instead of all n² pairs.

Linked notices form connected components (union-find); each component of two or more notices is one
Incident row with its members. An incident's confidence is its weakest link; its ``method`` is the
strongest one present. The key is what linked it (``gtin:…``, ``brand-model:…``, ``text:<first notice>``)
and an incident keeps its row and key when later runs add members, so re-running never duplicates.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from radar.models import Incident, IncidentMember, Notice

log = logging.getLogger(__name__)

GTIN_CONFIDENCE = 1.0
BRAND_MODEL_CONFIDENCE = 0.9
TEXT_CONFIDENCE_SCALE = 0.85
DISAGREEING_NAMES_CONFIDENCE = 0.5
METHOD_RANK = {"gtin": 3, "brand_model": 2, "text": 1}
MIN_TEXT_TOKENS = 3

# Placeholders sources write where they do not know the brand or model, after folding.
_PLACEHOLDERS = frozenset(
    "unknown none na nil null nobrand unbranded generic various notknown notspecified unspecified "
    "withoutbrand nomodel unknownbrand unknownmodel other others multiple see".split()
)
# Words that regulators put around every product name; dropped before comparing names, so two templated
# titles ("Recall of X", "Product safety alert: X") do not look alike merely through the template.
_BOILERPLATE = frozenset(
    "a an and the of for with in on by to from due risk risks recall recalled recalls alert alerts product "
    "products safety notice warning report dangerous hazard hazards withdrawal withdrawn consumer consumers "
    "sold because voluntary urgent announces announced issues issued rappel produit avertissement "
    "rueckruf ruckruf warnung produkt".split()
)


# Markup that reached a title as text ("<b>", "<script>") is not part of the product's name.
_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,200}>")


# --- normalisation ----------------------------------------------------------------------------------


def _fold(text: str) -> str:
    """Lower case, no accents."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def normalise_gtins(value: str | None) -> list[str]:
    """Every plausible GTIN in a field, as 14 digits; placeholders and malformed numbers are dropped.

    Parts separated by commas, semicolons, slashes or spaces are read one by one; when none of them is
    a GTIN, the field's digits are read as one number (sources also write "4 006381 333931").
    """
    if not value:
        return []

    def plausible(digits: str) -> str | None:
        if len(digits) not in (8, 12, 13, 14) or len(set(digits)) == 1:  # 00000000: "no barcode"
            return None
        return digits.zfill(14)

    text = str(value)
    found = [g for g in (plausible(re.sub(r"\D", "", part)) for part in re.split(r"[,;/|\s]+", text)) if g]
    if not found:
        whole = plausible(re.sub(r"\D", "", text))
        found = [whole] if whole else []
    return list(dict.fromkeys(found))


def _compact(value: str | None) -> str:
    return re.sub(r"[^0-9a-z]+", "", _fold(value or ""))


def normalise_brand_model(brand: str | None, model: str | None) -> str | None:
    """``"ACME", "XZ-100"`` → ``"acme|xz100"``; None when either is missing or a placeholder."""
    b, m = _compact(brand), _compact(model)
    if len(b) < 2 or len(m) < 2 or b in _PLACEHOLDERS or m in _PLACEHOLDERS:
        return None
    if m in ("all", "allmodels", "variousmodels", "seeabove", "seepictures", "seephoto"):
        return None
    return f"{b}|{m}"


def name_tokens(text: str | None) -> list[str]:
    """The informative words of a product name: markup and boilerplate dropped, folded, split on non-word characters."""
    words = re.split(r"[^0-9a-z]+", _fold(_TAG.sub(" ", text or "")))
    return [w for w in words if len(w) >= 2 and w not in _BOILERPLATE]


# --- linking (pure) ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeRecord:
    """What linking needs of a notice."""

    id: int
    source: str
    title: str = ""
    product_name: str | None = None
    brand: str | None = None
    model: str | None = None
    gtin: str | None = None
    day: date | None = None

    @classmethod
    def of(cls, notice: Notice) -> NoticeRecord:
        day = notice.published or notice.updated or (notice.first_seen.date() if notice.first_seen else None)
        return cls(notice.id, notice.source, notice.title or "", notice.product_name, notice.brand, notice.model,
                   notice.gtin, day)

    @property
    def name(self) -> str:
        return self.product_name or self.title


@dataclass(frozen=True)
class Link:
    a: int
    b: int
    method: str
    confidence: float
    value: str  # the GTIN, brand|model, or the two names' score


@dataclass
class Group:
    """One component of linked notices."""

    notice_ids: list[int]
    links: list[Link]
    member_method: dict[int, str]
    member_confidence: dict[int, float]

    @property
    def method(self) -> str:
        return max((link.method for link in self.links), key=METHOD_RANK.__getitem__)

    @property
    def confidence(self) -> float:
        return min(link.confidence for link in self.links)

    def key(self) -> str:
        """What linked the group: its smallest GTIN, else its smallest brand|model, else its first notice."""
        for method, prefix in (("gtin", "gtin"), ("brand_model", "brand-model")):
            values = sorted(link.value for link in self.links if link.method == method)
            if values:
                key = f"{prefix}:{values[0]}"
                if len(key) > 180:
                    key = f"{prefix}:{hashlib.sha256(values[0].encode()).hexdigest()[:32]}"
                return key
        return f"text:{min(self.notice_ids)}"


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent.setdefault(x, x)
        while parent != x:
            grand = self.parent.setdefault(parent, parent)
            self.parent[x] = grand
            x, parent = parent, grand
        return x

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


def _exact_links(records: Sequence[NoticeRecord]) -> list[Link]:
    by_gtin: dict[str, list[int]] = {}
    by_brand_model: dict[str, list[int]] = {}
    for r in records:
        for gtin in normalise_gtins(r.gtin):
            by_gtin.setdefault(gtin, []).append(r.id)
        bm = normalise_brand_model(r.brand, r.model)
        if bm:
            by_brand_model.setdefault(bm, []).append(r.id)
    words = {r.id: set(name_tokens(r.name)) for r in records}
    links = []
    for table, method, confidence in ((by_gtin, "gtin", GTIN_CONFIDENCE), (by_brand_model, "brand_model", BRAND_MODEL_CONFIDENCE)):
        for value, ids in table.items():
            ids = sorted(set(ids))
            for other in ids[1:]:
                sure = confidence
                if words[ids[0]] and words[other] and not words[ids[0]] & words[other]:
                    # Same number, names without a word in common: a typed-in or mis-parsed identifier is
                    # likelier than one product under two names. Linked, but with a confidence that asks
                    # a person to confirm.
                    sure = DISAGREEING_NAMES_CONFIDENCE
                    log.info("%s %s links notices %d and %d whose names share no word", method, value, ids[0], other)
                links.append(Link(ids[0], other, method, sure, value))
    return links


def _text_compatible(a: NoticeRecord, b: NoticeRecord, window_days: int) -> bool:
    if a.source == b.source:
        return False
    if a.day and b.day and abs((a.day - b.day).days) > window_days:
        return False
    # Known and different identifiers mean different products, however alike the names read.
    ga, gb = set(normalise_gtins(a.gtin)), set(normalise_gtins(b.gtin))
    if ga and gb and not ga & gb:
        return False
    for x, y in ((a.brand, b.brand), (a.model, b.model)):
        cx, cy = _compact(x), _compact(y)
        if cx and cy and cx not in _PLACEHOLDERS and cy not in _PLACEHOLDERS and cx != cy:
            return False
    return True


def _lsh_pairs(tokens: list[list[str]]) -> Iterable[tuple[int, int]]:
    """Index pairs that a MinHash LSH index on the name words puts in one bucket."""
    from datasketch import MinHash, MinHashLSH

    # A low Jaccard threshold: token_set_ratio forgives extra words that Jaccard punishes, so the index
    # must let through pairs that share only part of their words; rapidfuzz then decides.
    lsh = MinHashLSH(threshold=0.3, num_perm=64)
    hashes = MinHash.bulk([[w.encode() for w in set(t)] for t in tokens], num_perm=64)
    for i, mh in enumerate(hashes):
        lsh.insert(i, mh, check_duplication=False)
    for i, mh in enumerate(hashes):
        for j in lsh.query(mh):
            if j > i:
                yield i, j


def _text_links(records: Sequence[NoticeRecord], threshold: float, window_days: int, lsh_min: int) -> list[Link]:
    from rapidfuzz import fuzz, process

    usable = []
    tokens = []
    for r in records:
        words = name_tokens(r.name)
        if len(set(words)) >= MIN_TEXT_TOKENS:
            usable.append(r)
            tokens.append(words)
    if len(usable) < 2 or len({r.source for r in usable}) < 2:
        return []
    joined = [" ".join(t) for t in tokens]
    use_lsh = len(usable) >= lsh_min
    scored: list[tuple[int, int, float]] = []
    if use_lsh:
        for i, j in _lsh_pairs(tokens):
            score = fuzz.token_set_ratio(joined[i], joined[j], score_cutoff=threshold)
            if score:
                scored.append((i, j, score))
    else:
        # Every pair, scored in rapidfuzz's C loop; only the pairs above the threshold come back to Python.
        import numpy as np

        matrix = process.cdist(joined, joined, scorer=fuzz.token_set_ratio, score_cutoff=threshold, dtype=np.uint8, workers=-1)
        rows, cols = np.nonzero(np.triu(matrix, k=1))
        scored = [(int(i), int(j), float(matrix[i, j])) for i, j in zip(rows.tolist(), cols.tolist())]
    links = []
    for i, j, score in scored:
        a, b = usable[i], usable[j]
        if not _text_compatible(a, b, window_days):
            continue
        lo, hi = sorted((a.id, b.id))
        links.append(Link(lo, hi, "text", round(TEXT_CONFIDENCE_SCALE * score / 100, 3), f"{score:.0f}"))
    log.debug("text linking: %d names, %s, %d links", len(usable), "LSH candidates" if use_lsh else "all pairs", len(links))
    return links


def find_groups(records: Sequence[NoticeRecord], *, text_threshold: float = 90, window_days: int = 365,
                lsh_min: int = 1000) -> list[Group]:
    """Link notices (GTIN, then brand + model, then text) and return the components of two or more."""
    exact = _exact_links(records)
    links = exact + _text_links(records, text_threshold, window_days, lsh_min)
    uf = _UnionFind()
    tree: list[Link] = []
    # Strongest links first, so each component is held together by the strongest links available and
    # its confidence (the weakest link used) is as high as the evidence allows.
    for link in sorted(links, key=lambda l: (-METHOD_RANK[l.method], -l.confidence, l.a, l.b)):
        if uf.union(link.a, link.b):
            tree.append(link)
    by_root: dict[int, Group] = {}
    best: dict[int, Link] = {}
    for link in links:
        for nid in (link.a, link.b):
            current = best.get(nid)
            if current is None or (METHOD_RANK[link.method], link.confidence) > (METHOD_RANK[current.method], current.confidence):
                best[nid] = link
    for link in tree:
        root = uf.find(link.a)
        group = by_root.setdefault(root, Group([], [], {}, {}))
        group.links.append(link)
    for nid in best:
        root = uf.find(nid)
        group = by_root[root]
        group.notice_ids.append(nid)
        group.member_method[nid] = best[nid].method
        group.member_confidence[nid] = best[nid].confidence
    groups = list(by_root.values())
    for group in groups:
        group.notice_ids.sort()
    groups.sort(key=lambda g: g.notice_ids[0])
    return groups


# --- storing --------------------------------------------------------------------------------------------


@dataclass
class IncidentResult:
    notices: int = 0
    incidents: int = 0
    linked_notices: int = 0
    created: int = 0
    updated: int = 0
    removed: int = 0
    by_method: Counter = field(default_factory=Counter)


def _settings_defaults(text_threshold, window_days, lsh_min):
    from radar.settings import get_settings

    s = get_settings()
    return (
        float(s.incident_text_threshold if text_threshold is None else text_threshold),
        int(s.incident_text_window_days if window_days is None else window_days),
        int(s.incident_lsh_min_notices if lsh_min is None else lsh_min),
    )


def link_incidents(engine: Engine, *, text_threshold: float | None = None, window_days: int | None = None,
                   lsh_min: int | None = None) -> IncidentResult:
    """Link every stored notice into incidents and store them; safe to re-run (nothing is duplicated).

    An existing incident keeps its id and key when its members change; members a person confirmed
    (``confirmed_by``) are never removed; incidents whose notices no longer link are deleted.
    """
    text_threshold, window_days, lsh_min = _settings_defaults(text_threshold, window_days, lsh_min)
    result = IncidentResult()
    with Session(engine, expire_on_commit=False) as session:
        notices = session.execute(select(
            Notice.id, Notice.source, Notice.title, Notice.product_name, Notice.brand, Notice.model, Notice.gtin,
            Notice.published, Notice.updated, Notice.first_seen,
        )).all()
        records = [
            NoticeRecord(n.id, n.source, n.title or "", n.product_name, n.brand, n.model, n.gtin,
                         n.published or n.updated or (n.first_seen.date() if n.first_seen else None))
            for n in notices
        ]
        result.notices = len(records)
        groups = find_groups(records, text_threshold=text_threshold, window_days=window_days, lsh_min=lsh_min)
        by_id = {r.id: r for r in records}

        incidents = {i.id: i for i in session.scalars(select(Incident))}
        members: dict[int, dict[int, IncidentMember]] = {}
        for m in session.scalars(select(IncidentMember)):
            members.setdefault(m.incident_id, {})[m.notice_id] = m
        incident_of: dict[int, int] = {}
        for incident_id, rows in members.items():
            for notice_id in rows:
                incident_of.setdefault(notice_id, incident_id)
        by_key = {i.key: i for i in incidents.values()}
        kept: set[int] = set()

        for group in groups:
            touching = sorted({incident_of[n] for n in group.notice_ids if n in incident_of} - kept)
            confirmed = [i for i in touching if incidents[i].confirmed_by]
            target_id = (confirmed or touching or [None])[0]
            key = group.key()
            if target_id is None and key in by_key and by_key[key].id not in kept:
                target_id = by_key[key].id
            first = by_id[group.notice_ids[0]]
            title = (first.product_name or first.title or "")[:500]
            if target_id is None:
                incident = Incident(key=key, title=title, method=group.method, confidence=group.confidence)
                session.add(incident)
                session.flush()
                incidents[incident.id] = incident
                members[incident.id] = {}
                by_key[key] = incident
                result.created += 1
            else:
                incident = incidents[target_id]
                if (incident.method, round(incident.confidence, 3), incident.title) != (group.method, round(group.confidence, 3), title):
                    incident.method, incident.confidence, incident.title = group.method, group.confidence, title
                    session.add(incident)
                    result.updated += 1
            kept.add(incident.id)
            current = members.setdefault(incident.id, {})
            wanted = set(group.notice_ids)
            for notice_id in group.notice_ids:
                method, confidence = group.member_method[notice_id], group.member_confidence[notice_id]
                # A notice moves here from another incident this run merged into this one.
                previous = incident_of.get(notice_id)
                if previous is not None and previous != incident.id and notice_id in members.get(previous, {}):
                    session.delete(members[previous].pop(notice_id))
                row = current.get(notice_id)
                if row is None:
                    row = IncidentMember(incident_id=incident.id, notice_id=notice_id, method=method, confidence=confidence)
                    session.add(row)
                    current[notice_id] = row
                elif (row.method, round(row.confidence, 3)) != (method, round(confidence, 3)):
                    row.method, row.confidence = method, confidence
                    session.add(row)
                incident_of[notice_id] = incident.id
            if not incident.confirmed_by:
                for notice_id in list(current):
                    if notice_id not in wanted:
                        session.delete(current.pop(notice_id))
            result.by_method[group.method] += 1
            result.linked_notices += len(group.notice_ids)
        session.flush()
        for incident_id, incident in list(incidents.items()):
            if incident_id in kept or incident.confirmed_by:
                continue
            session.execute(delete(IncidentMember).where(IncidentMember.incident_id == incident_id))
            session.delete(incident)
            result.removed += 1
        try:
            session.commit()
        except IntegrityError as exc:
            # Another linker run stored the same incidents between our read and our write; its rows are
            # what ours would have been, so the next run reconciles from them.
            session.rollback()
            log.warning("incident linking raced with another run and was rolled back: %s", exc.orig)
            raise
        result.incidents = len(kept)
    log.info("incidents: %d notices, %d incidents (%d new, %d updated, %d removed)", result.notices,
             result.incidents, result.created, result.updated, result.removed)
    return result


def incident_map(session: Session) -> dict[int, int]:
    """notice id → incident id, for every notice that belongs to an incident."""
    out: dict[int, int] = {}
    for notice_id, incident_id in session.execute(
        select(IncidentMember.notice_id, IncidentMember.incident_id).order_by(IncidentMember.incident_id)
    ):
        out.setdefault(notice_id, incident_id)
    return out


@dataclass
class IncidentView:
    id: int
    key: str
    title: str
    method: str
    confidence: float
    confirmed_by: str | None
    members: list[dict]

    @property
    def sources(self) -> list[str]:
        return sorted({m["source"] for m in self.members})


def list_incidents(engine: Engine, *, min_sources: int = 1, limit: int | None = None) -> list[IncidentView]:
    """Stored incidents with their member notices, most sources first."""
    with Session(engine) as session:
        incidents = {i.id: i for i in session.scalars(select(Incident))}
        rows = session.execute(
            select(IncidentMember.incident_id, IncidentMember.method, IncidentMember.confidence, Notice.id,
                   Notice.source, Notice.source_id, Notice.title, Notice.published, Notice.url)
            .join(Notice, Notice.id == IncidentMember.notice_id)
            .order_by(IncidentMember.incident_id, Notice.id)
        ).all()
    by_incident: dict[int, list[dict]] = {}
    for r in rows:
        by_incident.setdefault(r.incident_id, []).append({
            "notice_id": r.id, "source": r.source, "source_id": r.source_id, "title": r.title,
            "published": r.published.isoformat() if r.published else None, "url": r.url,
            "method": r.method, "confidence": r.confidence,
        })
    views = [
        IncidentView(i.id, i.key, i.title, i.method, i.confidence, i.confirmed_by, by_incident.get(i.id, []))
        for i in incidents.values()
    ]
    views = [v for v in views if len(v.sources) >= min_sources]
    views.sort(key=lambda v: (-len(v.sources), -len(v.members), v.id))
    return views[:limit] if limit else views


__all__ = [
    "Group", "IncidentResult", "IncidentView", "Link", "NoticeRecord", "find_groups", "incident_map",
    "link_incidents", "list_incidents", "name_tokens", "normalise_brand_model", "normalise_gtins",
]
