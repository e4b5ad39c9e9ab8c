"""Drafting: from signals and uncovered high-risk notices to proposed changes of the listing policy.

Which notices are looked at: the notices behind the spike, legislation and incident signals of the
last ``propose_lookback_days`` (counted back from the newest notice, so an archive can be replayed), and
every notice of that period whose severity is high-risk (``propose_high_risk``).

**Covered.** A notice is covered when a rule (a) applies in one of the notice's markets (its jurisdiction
findings, origin countries excluded, read as market codes: ``juris.eu.de`` → DE, ``juris.eu`` → EU,
``juris.uk`` → GB), (b) names a category equal to, above or below one of the notice's categories, and
(c) has an include phrase that hits the notice's title, product name or text (the same
:class:`~radar.matcher.Matcher` the impact estimates use, exclude phrases included). Legislation is
judged on (a) and (b) alone: a law does not describe listings. Rules without categories (catch-alls
about wording such as "recalled product") do not cover anything here: they match words about the
notice, not the product. A covered notice produces no proposal. Notices only in markets no rule
mentions (a US recall for an EMEA policy) are out of scope.

**What is proposed**, per uncovered notice, first that applies; where several rules qualify, the one
whose categories fit the notice's best (same category, then a narrower one, then a broader one) and whose
title and phrases read most like the notice (rapidfuzz) is chosen:

- ``widen_markets``: a rule of the notice's category whose phrases hit it but that does not apply in
  the notice's market → add the market;
- ``widen_categories``: a rule whose phrases hit it in its market but whose categories miss the
  notice's category → add the category;
- ``add_terms``: a rule for the category and market whose phrases miss it → add the words that made
  the classifier put the notice in its category (the category findings' evidence spans); without such
  words nothing is drafted (a rule's phrases are not widened with a whole category's vocabulary);
- ``new_rule``: nothing fits → a rule for the notice's most specific category and its markets, matching
  the evidence words (the category's taxonomy terms when there are none), with the action of the policy
  class the notices were classified into — or ``review`` when none was found, since a rule drafted from a
  few notices should send listings to a person before it blocks anything — and the legislation's legal
  basis and effective date when the evidence is legislation;
- ``change_action``: separately, a covering rule that only sends listings to review, once it covers
  ``propose_action_min_incidents`` high-risk incidents → block (prohibited rules) or restrict.

Notices asking for the same change of the same rule are drafted as one proposal with all of them as
evidence. Each proposal stores the proposed rule, a unified diff of the canonical YAML (made with
:func:`radar.rules.dump_rules`, so diffs are stable), a rationale, evidence notice ids, signal ids and
the sha256 of the policy file it was drafted against. Its ``key`` is the kind, rule id and a hash of the
proposed rule, so drafting twice stores once; a pending or stale proposal drafted against an older policy
is re-drafted in place, and a pending proposal for the same rule and kind that the new draft replaces is
marked stale. Drafting never writes the policy file.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from radar.errors import ConfigError, RadarError
from radar.models import SIDE_ROLES, Classification, Notice, Proposal, Signal, utcnow

log = logging.getLogger(__name__)

SIGNAL_KINDS = ("spike", "legislation", "incident")
MAX_NEW_TERMS = 12
MAX_TERMS_PER_LANGUAGE = 12
# What a new rule does by policy class; a reviewer changes it in the edit step when the case differs.
ACTION_BY_CLASS = {
    "policy.prohibited": "block",
    "policy.restricted": "restrict",
    "policy.trade_controlled": "review",
    "policy.not_supported": "block",
    "policy.listing_quality": "review",
    "policy.intellectual_property": "review",
}
DEFAULT_DOCUMENTS = ["Test report from an accredited laboratory against the applicable standard", "Declaration of conformity"]
KIND_ORDER = ("widen_markets", "widen_categories", "add_terms", "new_rule", "change_action")


def policy_path() -> Path:
    """The policy file in force: the ``policy_rules_path`` setting, else the bundled config/policy_rules.yml."""
    from radar.rules import RULES_FILE
    from radar.settings import get_settings

    configured = get_settings().policy_rules_path
    return Path(configured).expanduser() if configured else RULES_FILE


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_policy(path: Path | None = None) -> tuple[Path, str, str]:
    """(path, text, sha256) of the policy file."""
    path = Path(path) if path else policy_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: policy rules file not found; set policy_rules_path or restore config/policy_rules.yml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the policy rules file ({exc})") from None
    return path, text, text_hash(text)


def unified_diff(before: str, after: str, name: str = "policy_rules.yml") -> str:
    return "".join(difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), fromfile=f"a/{name}", tofile=f"b/{name}", n=3,
    ))


def rule_dict(rule: Any) -> dict[str, Any]:
    """A rule as plain JSON data (dates as ISO strings), in the form :class:`radar.rules.Rule` reads back."""
    return rule.model_dump(mode="json", exclude_none=True)


def proposal_key(kind: str, rule_id: str, rule: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(rule, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]
    return f"{kind}:{rule_id}:{digest}"[:300]


# --- markets and categories ----------------------------------------------------------------------------


def market_of(jurisdiction: str) -> str | None:
    """``juris.eu.de`` → ``DE``, ``juris.eu`` → ``EU``, ``juris.uk`` → ``GB``; None when there is no code."""
    from radar.matcher import normalise_market

    parts = jurisdiction.split(".")
    if len(parts) < 2 or parts[0] != "juris":
        return None
    if parts[1] == "eu":
        return "EU" if len(parts) == 2 else (normalise_market(parts[2]) if len(parts[2]) == 2 else None)
    return normalise_market(parts[1]) if len(parts[1]) == 2 else None


@dataclass
class CategoryInfo:
    label: str
    terms: dict[str, list[str]]


def category_info(taxonomy_dir: Path | None = None) -> dict[str, CategoryInfo]:
    """Labels of the category taxonomy (categories.yml) and their words in each language (the term
    patterns in nlp/patterns/terms/<lang>.jsonl); empty when the taxonomy is unavailable.

    Labels are read straight from the YAML, so drafting still works while another axis file is broken
    (the words then stay out, with a log line); compound tails ("-spielzeug") become open-start phrases
    ("*spielzeug"), the matcher's way of saying the same.
    """
    from radar.settings import get_settings

    directory = Path(taxonomy_dir) if taxonomy_dir else get_settings().taxonomy_path
    path = directory / "categories.yml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        log.info("category taxonomy %s unavailable (%s); drafted rules use evidence words only", path, exc)
        return {}
    out = {str(node_id): CategoryInfo(str(body.get("label") or node_id), {})
           for node_id, body in (data.get("nodes") or {}).items() if isinstance(body, dict)}
    try:
        from nlp.taxonomy import load_cached
        from nlp.terms import languages, load_terms

        taxonomy = load_cached(directory)
        for lang in languages():
            for node_id, words in load_terms(lang, taxonomy).node_terms("category").items():
                if node_id in out:
                    out[node_id].terms[lang] = [("*" + w[1:]) if w.startswith("-") else w for w in words]
    except RadarError as exc:
        log.info("category words unavailable (%s); drafted rules use evidence words only", exc)
    return out


# --- notices ------------------------------------------------------------------------------------------


@dataclass
class NoticeFacts:
    id: int
    source: str
    title: str
    text: str
    product_name: str | None
    url: str
    language: str
    day: date | None
    effective_date: date | None
    is_legislation: bool
    categories: list[str] = field(default_factory=list)
    best_category: str | None = None
    jurisdictions: list[str] = field(default_factory=list)
    markets: set[str] = field(default_factory=set)
    hazards: list[str] = field(default_factory=list)
    severities: list[str] = field(default_factory=list)
    policy_classes: list[str] = field(default_factory=list)
    evidence: dict[str, list[str]] = field(default_factory=dict)  # language → category evidence words
    signal_ids: set[int] = field(default_factory=set)
    high_risk: bool = False

    @property
    def match_text(self) -> str:
        return "\n".join(x for x in (self.title, self.product_name or "", self.text) if x)


def _load_facts(session: Session, notice_ids: Sequence[int], kinds: dict[str, str], high_risk: set[str]) -> dict[int, NoticeFacts]:
    from radar.signals import best_category

    facts: dict[int, NoticeFacts] = {}
    ids = sorted(set(notice_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for n in session.scalars(select(Notice).where(Notice.id.in_(chunk))):
            facts[n.id] = NoticeFacts(
                id=n.id, source=n.source, title=n.title or "", text=(n.text or "")[:20000], product_name=n.product_name,
                url=n.url or "", language=(n.language or "en")[:2].lower(),
                day=n.published or n.updated or (n.first_seen.date() if n.first_seen else None),
                effective_date=n.effective_date,
                is_legislation=kinds.get(n.source) == "legislation" or bool(n.effective_date or n.comment_deadline),
            )
        rows = session.execute(
            select(Classification.notice_id, Classification.axis, Classification.value, Classification.score,
                   Classification.role, Classification.method, Classification.evidence)
            .where(Classification.notice_id.in_(chunk))
        )
        classes: dict[int, dict[str, list[tuple[str, float]]]] = defaultdict(lambda: defaultdict(list))
        for notice_id, axis, value, score, role, method, evidence in rows:
            f = facts.get(notice_id)
            if f is None:
                continue
            if role in SIDE_ROLES:  # not a market, or not a hazard the notice names
                continue
            if all(v != value for v, _ in classes[notice_id][axis]):
                classes[notice_id][axis].append((value, score or 0.0))
            if axis == "category" and method == "text" and evidence:
                words = " ".join(evidence.split())
                if 3 <= len(words) <= 60 and len(words.split()) <= 5:
                    f.evidence.setdefault(f.language, [])
                    if words.lower() not in (w.lower() for w in f.evidence[f.language]):
                        f.evidence[f.language].append(words)
        for notice_id, axes in classes.items():
            f = facts[notice_id]
            f.categories = sorted(v for v, _ in axes.get("category", []))
            f.best_category = best_category(axes)
            f.jurisdictions = sorted(v for v, _ in axes.get("jurisdiction", []))
            f.markets = {m for m in (market_of(j) for j in f.jurisdictions) if m}
            f.hazards = sorted(v for v, _ in axes.get("hazard", []))
            f.severities = sorted(v for v, _ in axes.get("severity", []))
            f.policy_classes = [v for v, _ in sorted(axes.get("policy", []), key=lambda vs: -vs[1])]
            f.high_risk = bool(set(f.severities) & high_risk)
    return facts


# --- drafts -------------------------------------------------------------------------------------------------


@dataclass
class Draft:
    kind: str
    rule_id: str
    base_rule: Any | None  # the current rule, None for a new one
    notices: list[NoticeFacts] = field(default_factory=list)
    add_markets: list[str] = field(default_factory=list)
    add_categories: list[str] = field(default_factory=list)
    add_terms: dict[str, list[str]] = field(default_factory=dict)
    category: str | None = None  # for new rules
    action: dict[str, Any] | None = None  # for change_action

    def add_notice(self, facts: NoticeFacts) -> None:
        if all(f.id != facts.id for f in self.notices):
            self.notices.append(facts)


@dataclass
class DraftResult:
    notices_considered: int = 0
    covered: int = 0
    out_of_scope: int = 0
    unclassified: int = 0
    drafted: int = 0
    created: int = 0
    refreshed: int = 0
    unchanged: int = 0
    superseded: int = 0
    skipped: Counter = field(default_factory=Counter)
    proposals: list[Proposal] = field(default_factory=list)


def _uniq_extend(target: list[str], values: Iterable[str]) -> None:
    for v in values:
        if v not in target:
            target.append(v)


def _known_phrase_keys(rule: Any) -> set[str]:
    from radar.matcher import phrase_key

    return {phrase_key(p).key for p in rule.include_phrases()} | {phrase_key(p).key for p in rule.exclude_phrases()}


def _terms_for(facts: Sequence[NoticeFacts], category: str | None, info: dict[str, CategoryInfo],
               known: set[str], *, with_taxonomy: bool, markets: Iterable[str] = ()) -> dict[str, list[str]]:
    """New include phrases per language: the notices' evidence words; the category's taxonomy terms only
    when there are none and ``with_taxonomy`` (new rules; added terms must come from the notices), and
    then only in the languages sellers in ``markets`` write in (every language for EU)."""
    from radar.matcher import phrase_key

    out: dict[str, list[str]] = {}
    seen = set(known)

    def add(lang: str, phrase: str) -> None:
        pk = phrase_key(phrase)
        if not pk.words or len(pk.words.replace(" ", "")) < 3 or pk.key in seen:
            return
        if len(lang) != 2 or not lang.isalpha():
            return
        if len(out.get(lang, [])) >= MAX_TERMS_PER_LANGUAGE:
            return
        seen.add(pk.key)
        out.setdefault(lang, []).append(phrase.strip())

    for f in facts:
        for lang, words in f.evidence.items():
            for w in words:
                add(lang, w.lower() if not w.isupper() else w)
    if with_taxonomy and not out:
        node = info.get(category or "")
        languages = _market_languages(markets) | {f.language for f in facts}
        if node:
            for lang, words in sorted(node.terms.items()):
                if languages and lang not in languages and "*" not in languages:
                    continue
                for w in words:
                    add(lang, w)
    return out


def _market_languages(markets: Iterable[str]) -> set[str]:
    """Languages sellers in these markets write in; ``{"*"}`` for EU or a market the table does not know."""
    from radar.rules import MARKET_LANGUAGES

    out: set[str] = set()
    for m in markets:
        if m == "EU" or m not in MARKET_LANGUAGES:
            return {"*"}
        out |= MARKET_LANGUAGES[m]
    return out


def _new_rule_id(category: str, existing: set[str]) -> str:
    parts = category.split(".")[1:]
    base = "rule." + (".".join(parts) if len(parts) >= 2 else f"{parts[0]}.general")
    candidate, counter = base, 2
    while candidate in existing:
        candidate = f"{base}_{counter}"
        counter += 1
    return candidate


def _policy_markets(ruleset: Any) -> frozenset[str]:
    from radar.matcher import expand_markets

    return expand_markets([m for r in ruleset.rules for m in r.markets] + ["EU"])


def _category_fit(notice_categories: Sequence[str], rule_categories: Sequence[str]) -> tuple[int, int]:
    """How closely a rule's categories fit a notice's: (3 same, 2 rule below, 1 rule above, 0 none; rule depth)."""
    best = (0, 0)
    for c in notice_categories:
        for r in rule_categories:
            if c == r:
                fit = 3
            elif r.startswith(c + "."):
                fit = 2
            elif c.startswith(r + "."):
                fit = 1
            else:
                continue
            best = max(best, (fit, r.count(".")))
    return best


def _rank_rules(f: NoticeFacts, rules: Sequence[Any]) -> list[Any]:
    """Rules of the notice's categories, best fitting first: category fit, then how alike the wording reads."""
    from rapidfuzz import fuzz

    name = f"{f.title} {f.product_name or ''}".lower()
    scored = []
    for r in rules:
        fit = _category_fit(f.categories, r.categories)
        if fit[0] == 0:
            continue
        words = (r.title + " " + " ".join(r.include_phrases())).lower()
        scored.append((fit, fuzz.token_set_ratio(name, words), r.id, r))
    scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [r for *_, r in scored]


def _classify_notice(f: NoticeFacts, ruleset: Any, matcher: Any, universe: frozenset[str], eu: frozenset[str],
                     expanded: list[frozenset[str]]) -> tuple[str, Any | None, dict[str, Any]]:
    """What a notice needs: ("covered", rule, {}), ("widen_markets", rule, {...}), …, ("new_rule", None, {…})."""
    markets = {m for m in f.markets if m in universe}
    hits = set() if f.is_legislation else set(matcher.match(f.match_text))
    rules = [r for r in ruleset.rules if r.categories]  # catch-alls do not cover (module docstring)
    index = {r.id: i for i, r in enumerate(ruleset.rules)}

    def market_ok(r: Any) -> bool:
        return bool(markets & expanded[index[r.id]])

    cat_rules = _rank_rules(f, rules)
    for r in cat_rules:
        if market_ok(r) and (f.is_legislation or r.id in hits):
            return "covered", r, {}
    for r in cat_rules:
        if f.is_legislation or r.id in hits:
            missing = sorted(m for m in markets if m not in expanded[index[r.id]])
            # An EU-wide notice widens to EU, not to every member state one by one.
            return "widen_markets", r, {"markets": ["EU"] if "EU" in missing else missing}
    if not f.is_legislation:
        for r in rules:
            if r.id in hits and market_ok(r) and f.best_category:
                return "widen_categories", r, {"categories": [f.best_category]}
        for r in cat_rules:
            if market_ok(r):
                return "add_terms", r, {}
    return "new_rule", None, {}


def draft_proposals(engine: Engine, *, path: Path | None = None, today: date | None = None,
                    lookback_days: int | None = None, signal_ids: Sequence[int] | None = None) -> DraftResult:
    """Draft and store proposals (see the module docstring); returns what was drafted and why not more."""
    from radar.matcher import Matcher, eu_member_states, expand_markets
    from radar.rules import parse_rules
    from radar.settings import get_settings
    from radar.signals import source_kinds

    s = get_settings()
    lookback = int(s.propose_lookback_days if lookback_days is None else lookback_days)
    high_risk = {v.strip() for v in str(s.propose_high_risk).split(",") if v.strip()}
    min_action = int(s.propose_action_min_incidents)
    path, base_text, base_hash = read_policy(path)
    ruleset = parse_rules(base_text, str(path))
    eu = eu_member_states()
    matcher = Matcher(ruleset.rules)
    universe = _policy_markets(ruleset)
    expanded = [expand_markets(r.markets, eu) for r in ruleset.rules]
    info = category_info()
    result = DraftResult()

    with Session(engine, expire_on_commit=False) as session:
        newest = session.execute(select(Notice.published).where(Notice.published.is_not(None)).order_by(Notice.published.desc()).limit(1)).scalar()
        ref = today or newest or datetime.now(timezone.utc).date()
        since = ref - timedelta(days=lookback)
        # Evidence from signals of the period, then high-risk notices of the period.
        signal_query = select(Signal).where(Signal.kind.in_(SIGNAL_KINDS))
        if signal_ids:
            signal_query = select(Signal).where(Signal.id.in_(list(signal_ids)))
        signals = [sig for sig in session.scalars(signal_query) if signal_ids or _week_in(sig.week, since, ref)]
        from_signals: dict[int, set[int]] = defaultdict(set)
        for sig in signals:
            for nid in sig.notice_ids or []:
                from_signals[nid].add(sig.id)
        severity_ids = set(session.scalars(
            select(Classification.notice_id).where(Classification.axis == "severity", Classification.value.in_(sorted(high_risk) or [""]))
        ))
        recent = set(session.scalars(select(Notice.id).where(Notice.id.in_(sorted(severity_ids) or [-1]),
                                                              Notice.published >= since, Notice.published <= ref)))
        if signal_ids:
            recent = set()
        facts = _load_facts(session, sorted(set(from_signals) | recent), source_kinds(), high_risk)
        for nid, sids in from_signals.items():
            if nid in facts:
                facts[nid].signal_ids |= sids
        result.notices_considered = len(facts)

        drafts: dict[tuple[str, str], Draft] = {}
        covered_by: dict[str, list[NoticeFacts]] = defaultdict(list)
        existing_ids = {r.id for r in ruleset.rules}
        new_rule_ids: dict[str, str] = {}
        for f in sorted(facts.values(), key=lambda x: x.id):
            if not f.categories:
                result.unclassified += 1
                continue
            if f.markets and not (f.markets & universe):
                result.out_of_scope += 1
                continue
            if not f.markets:
                result.out_of_scope += 1
                continue
            what, rule, extra = _classify_notice(f, ruleset, matcher, universe, eu, expanded)
            if what == "covered":
                result.covered += 1
                if f.high_risk:
                    covered_by[rule.id].append(f)
                continue
            if what == "new_rule":
                category = f.best_category
                rid = new_rule_ids.get(category) or _new_rule_id(category, existing_ids | set(new_rule_ids.values()))
                new_rule_ids[category] = rid
                draft = drafts.setdefault(("new_rule", rid), Draft("new_rule", rid, None, category=category))
                _uniq_extend(draft.add_markets, sorted(m for m in f.markets if m in universe))
            else:
                draft = drafts.setdefault((what, rule.id), Draft(what, rule.id, rule))
                _uniq_extend(draft.add_markets, extra.get("markets", []))
                _uniq_extend(draft.add_categories, extra.get("categories", []))
            draft.add_notice(f)

        for rule_id, notices in covered_by.items():
            rule = ruleset.by_id(rule_id)
            if rule.action.type != "review":
                continue
            incidents = _incident_count(session, [f.id for f in notices])
            if incidents < min_action:
                continue
            if rule.policy_class in ("policy.prohibited", "policy.not_supported"):
                action = {"type": "block"}
            else:
                action = {"type": "restrict", "required_documents": list(DEFAULT_DOCUMENTS)}
            draft = Draft("change_action", rule_id, rule, action=action)
            for f in notices:
                draft.add_notice(f)
            drafts[("change_action", rule_id)] = draft

        for (kind, rule_id), draft in sorted(drafts.items(), key=lambda kv: (KIND_ORDER.index(kv[0][0]), kv[0][1])):
            try:
                proposed = _proposed_rule(draft, info, ref)
            except _Skip as exc:
                result.skipped[str(exc)] += 1
                log.info("no proposal for %s %s: %s", kind, rule_id, exc)
                continue
            if proposed is None:
                continue
            others = [r for r in ruleset.rules if r.id != rule_id]
            try:
                from radar.rules import dump_rules

                after_text = dump_rules(type(ruleset)(version=ruleset.version, rules=others + [proposed]))
                parse_rules(after_text, f"{path} + proposed {rule_id}")
            except (ConfigError, ValueError) as exc:
                result.skipped["the proposed policy does not validate"] += 1
                log.warning("no proposal for %s %s: the proposed policy does not validate: %s", kind, rule_id, exc)
                continue
            diff = unified_diff(base_text, after_text, path.name)
            if not diff:
                result.skipped["no change to the policy file"] += 1
                continue
            result.drafted += 1
            proposal = _store(session, draft, proposed, diff, base_hash, _counts(session, draft), result)
            if proposal is not None:
                result.proposals.append(proposal)
        session.commit()
    log.info("drafting: %d notices considered, %d covered, %d proposals (%d new, %d re-drafted, %d unchanged)",
             result.notices_considered, result.covered, result.drafted, result.created, result.refreshed, result.unchanged)
    return result


def _week_in(week: str, since: date, ref: date) -> bool:
    from radar.signals import week_start

    try:
        start = week_start(week)
    except RadarError:
        return False
    return start + timedelta(days=6) >= since and start <= ref


def _incident_count(session: Session, notice_ids: Sequence[int]) -> int:
    from radar.models import IncidentMember

    incident_of = dict(session.execute(
        select(IncidentMember.notice_id, IncidentMember.incident_id).where(IncidentMember.notice_id.in_(list(notice_ids) or [-1]))
    ).all())
    return len({incident_of.get(n, f"n{n}") for n in notice_ids})


def _counts(session: Session, draft: Draft) -> dict[str, int]:
    ids = [f.id for f in draft.notices]
    return {"notices": len(ids), "incidents": _incident_count(session, ids), "sources": len({f.source for f in draft.notices})}


class _Skip(Exception):
    pass


def _proposed_rule(draft: Draft, info: dict[str, CategoryInfo], ref: date) -> Any:
    from radar.rules import Rule

    if draft.kind == "new_rule":
        category = draft.category or ""
        terms = _terms_for(draft.notices, category, info, set(), with_taxonomy=True, markets=draft.add_markets)
        if not terms:
            raise _Skip("no words to match: the category has no taxonomy terms and the notices no evidence words")
        classes = Counter(c for f in draft.notices for c in f.policy_classes[:1] if c in ACTION_BY_CLASS)
        if classes:
            policy_class = classes.most_common(1)[0][0]
            action: dict[str, Any] = {"type": ACTION_BY_CLASS[policy_class]}
        else:
            # No notice says which policy class applies: a rule drafted from a few notices starts by sending
            # listings to a person, and the reviewer makes it stricter in the edit step if it should be.
            policy_class = "policy.restricted"
            action = {"type": "review"}
        if action["type"] == "restrict":
            action["required_documents"] = list(DEFAULT_DOCUMENTS)
        laws = [f for f in draft.notices if f.is_legislation]
        effective = min((f.effective_date for f in laws if f.effective_date), default=None) or ref
        label = info[category].label if category in info else category.split(".")[-1].replace("_", " ")
        hazards = sorted({h.split(".")[-1].replace("_", " ") for f in draft.notices for h in f.hazards})
        references = [f.url for f in sorted(draft.notices, key=lambda x: x.id) if f.url.startswith(("http://", "https://"))][:5]
        data = {
            "id": draft.rule_id,
            "title": f"{label}{' — ' + ', '.join(hazards[:3]) + ' risk' if hazards else ''} (drafted by the radar)",
            "policy_class": policy_class,
            "markets": _market_list(draft.add_markets),
            "categories": [category],
            "match": {"include": terms},
            "action": action,
            "legal_basis": [f.title[:300] for f in laws[:3]],
            "effective_date": effective.isoformat(),
            "references": list(dict.fromkeys(references)),
            "notes": f"Drafted from {len(draft.notices)} notice(s): " + ", ".join(f"#{f.id}" for f in draft.notices[:20]),
        }
        return _validate_rule(Rule, data)
    base = draft.base_rule
    data = rule_dict(base)
    if draft.kind == "widen_markets":
        new = [m for m in draft.add_markets if m not in base.markets]
        if not new:
            return None
        if "EU" in new:
            # EU covers the member states: listing them too would only repeat it.
            from radar.matcher import eu_member_states

            data["markets"] = [m for m in base.markets if m not in eu_member_states()]
        data["markets"] = list(data["markets"]) + new
    elif draft.kind == "widen_categories":
        new = [c for c in draft.add_categories if c not in base.categories]
        if not new:
            return None
        data["categories"] = list(base.categories) + new
    elif draft.kind == "add_terms":
        category = max(Counter(f.best_category for f in draft.notices).items(), key=lambda kv: kv[1])[0]
        terms = _terms_for(draft.notices, category, info, _known_phrase_keys(base), with_taxonomy=False)
        flat = [(lang, t) for lang, ts in terms.items() for t in ts][:MAX_NEW_TERMS]
        if not flat:
            raise _Skip("no new words to add: the notices' category words are already in the rule")
        include = {lang: list(ps) for lang, ps in data["match"]["include"].items()}
        for lang, t in flat:
            include.setdefault(lang, []).append(t)
        data["match"]["include"] = include
    elif draft.kind == "change_action":
        data["action"] = draft.action
    return _validate_rule(Rule, data)


def _market_list(markets: Iterable[str]) -> list[str]:
    """Sorted market codes; with EU present its member states are not listed again."""
    from radar.matcher import eu_member_states

    markets = set(markets)
    if "EU" in markets:
        markets -= eu_member_states()
    return sorted(markets, key=lambda m: (m != "EU", m))


def _validate_rule(rule_cls: Any, data: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        return rule_cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _Skip(f"the drafted rule does not validate ({'.'.join(map(str, first['loc']))}: {first['msg']})") from None


def _title(draft: Draft, proposed: Any) -> str:
    if draft.kind == "new_rule":
        return f"New rule {proposed.id}: {proposed.title} in {', '.join(proposed.markets)}"
    base = draft.base_rule
    if draft.kind == "widen_markets":
        return f"Widen {base.id} to {', '.join(m for m in proposed.markets if m not in base.markets)}"
    if draft.kind == "widen_categories":
        return f"Widen {base.id} to the categories {', '.join(c for c in proposed.categories if c not in base.categories)}"
    if draft.kind == "add_terms":
        return f"Add {len(proposed.include_phrases()) - len(base.include_phrases())} match terms to {base.id}"
    return f"Change the action of {base.id} from {base.action.type} to {proposed.action.type}"


def _rationale(draft: Draft, proposed: Any, counts: dict[str, int], signals: list[Signal]) -> str:
    sources = sorted({f.source for f in draft.notices})
    cats = sorted({c for f in draft.notices for c in f.categories})
    markets = sorted({m for f in draft.notices for m in f.markets})
    head = (
        f"{counts['notices']} notice(s) ({counts['incidents']} incident(s)) from {len(sources)} source(s) "
        f"({', '.join(sources)}) about {', '.join(cats[:4])} in {', '.join(markets[:8])}"
    )
    base = draft.base_rule
    if draft.kind == "new_rule":
        why = (f"{head} are covered by no rule: no rule for this category applies there with words that match them. "
               f"The new rule {proposed.id} would {proposed.action.type} listings in {', '.join(proposed.markets)} that "
               f"mention {', '.join(proposed.include_phrases()[:6])}{'…' if len(proposed.include_phrases()) > 6 else ''}.")
        laws = [f for f in draft.notices if f.is_legislation]
        if laws:
            why += f" Legal basis from the legislation: {laws[0].title!r}."
    elif draft.kind == "widen_markets":
        new = [m for m in proposed.markets if m not in base.markets]
        why = (f"{head}: {base.id} matches them but applies only in {', '.join(base.markets)}. "
               f"Adding {', '.join(new)} brings them into its scope.")
    elif draft.kind == "widen_categories":
        new = [c for c in proposed.categories if c not in base.categories]
        why = (f"{head}: the words of {base.id} match them, but its categories ({', '.join(base.categories)}) do not "
               f"include {', '.join(new)}. Adding the category makes the rule apply to them.")
    elif draft.kind == "add_terms":
        added = [p for p in proposed.include_phrases() if p not in base.include_phrases()]
        why = (f"{head}: {base.id} is the rule for this category and market, but none of its phrases match them. "
               f"Adding {', '.join(repr(p) for p in added)} — the words that put them in the category — lets it catch "
               "listings described the same way.")
    else:
        why = (f"{head}, all high-risk, are covered by {base.id}, which only sends listings to review. "
               f"{counts['incidents']} high-risk incidents reach the threshold of the propose_action_min_incidents "
               f"setting; the proposal makes it {proposed.action.type}.")
    lines = [why]
    for sig in signals[:5]:
        lines.append(f"Signal #{sig.id} ({sig.kind}, {sig.week}): {sig.reason}")
    lines.append("Evidence: " + "; ".join(f"#{f.id} {f.source}: {f.title[:120]!r}" for f in draft.notices[:8])
                 + (f"; and {len(draft.notices) - 8} more" if len(draft.notices) > 8 else ""))
    return "\n".join(lines)


def _store(session: Session, draft: Draft, proposed: Any, diff: str, base_hash: str, counts: dict[str, int],
           result: DraftResult) -> Proposal | None:
    rule = rule_dict(proposed)
    key = proposal_key(draft.kind, proposed.id, rule)
    signal_ids = sorted({sid for f in draft.notices for sid in f.signal_ids})
    signals = list(session.scalars(select(Signal).where(Signal.id.in_(signal_ids or [-1])).order_by(Signal.id)))
    evidence = sorted(f.id for f in draft.notices)
    values = dict(kind=draft.kind, rule_id=proposed.id, title=_title(draft, proposed),
                  rationale=_rationale(draft, proposed, counts, signals), diff=diff, rule=rule, base_hash=base_hash,
                  evidence_notice_ids=evidence, signal_ids=signal_ids)
    existing = session.scalars(select(Proposal).where(Proposal.key == key)).first()
    if existing is None:
        proposal = Proposal(key=key, status="pending", **values)
        try:
            with session.begin_nested():
                session.add(proposal)
                session.flush()
            result.created += 1
        except IntegrityError:
            # Another drafting run stored the same proposal a moment ago; it is the same draft.
            existing = session.scalars(select(Proposal).where(Proposal.key == key)).one()
            result.unchanged += 1
            return existing
    else:
        proposal = existing
        if existing.status in ("accepted", "rejected"):
            # Decided already: a rejected draft is not brought back because the same notices are still there.
            result.unchanged += 1
            return None
        if existing.status == "stale" or existing.base_hash != base_hash:
            for name, value in values.items():
                setattr(existing, name, value)
            existing.status = "pending"
            existing.updated_at = utcnow()
            session.add(existing)
            result.refreshed += 1
            log.info("proposal %s re-drafted against the current policy %s", existing.id, base_hash[:12])
        elif set(existing.evidence_notice_ids) != set(evidence) or set(existing.signal_ids) != set(signal_ids):
            existing.evidence_notice_ids = sorted(set(existing.evidence_notice_ids) | set(evidence))
            existing.signal_ids = sorted(set(existing.signal_ids) | set(signal_ids))
            existing.rationale = values["rationale"]
            existing.updated_at = utcnow()
            session.add(existing)
            result.unchanged += 1
        else:
            result.unchanged += 1
    # A pending draft of the same change to the same rule that this one replaces is no longer current.
    superseded = session.execute(
        update(Proposal)
        .where(Proposal.kind == draft.kind, Proposal.rule_id == proposed.id, Proposal.key != key, Proposal.status == "pending")
        .values(status="stale", updated_at=utcnow())
    ).rowcount
    if superseded:
        result.superseded += superseded
        log.info("%d older pending proposal(s) for %s %s marked stale", superseded, draft.kind, proposed.id)
    return proposal


def propose(engine: Engine) -> DraftResult:
    """The pipeline's drafting stage: :func:`draft_proposals` with the settings in force."""
    return draft_proposals(engine)


def list_proposals(engine: Engine, *, status: str | None = None) -> list[Proposal]:
    with Session(engine, expire_on_commit=False) as session:
        query = select(Proposal).order_by(Proposal.id)
        if status:
            query = query.where(Proposal.status == status)
        return list(session.scalars(query))


__all__ = [
    "DraftResult", "category_info", "draft_proposals", "list_proposals", "market_of", "policy_path", "propose",
    "proposal_key", "read_policy", "rule_dict", "text_hash", "unified_diff",
]
