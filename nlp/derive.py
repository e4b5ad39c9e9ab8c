"""Findings derived from other findings: the policy class, the risk score, label-vs-text disagreements and
the hazards a category implies when nothing names one.

Every derived finding carries the evidence of the finding or words that triggered it, so a reviewer
sees why a notice was called prohibited or scored 0.9.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from nlp.taxonomy import HazardNode, PolicyNode, PolicyRule, SeverityNode, SubstanceNode, Taxonomy

log = logging.getLogger(__name__)

# Risk score: a hazard's own weight (hazards.yml `risk`), raised to the source's risk level when it
# gives one, then nudged by what makes harm worse. Levels as the digest reads them: 0.85+ serious,
# 0.6+ high, 0.3+ medium.
SEVERITY_FLOOR = {4: 0.9, 3: 0.7, 2: 0.45, 1: 0.2}
"""Severity rank (severity.yml) → the least risk score a notice with that source risk level gets."""
DEATH_BONUS = 0.1
VULNERABLE_BONUS = 0.05
BANNED_FLOOR = 0.8
VULNERABLE_CATEGORIES = ("cat.toys", "cat.childcare", "cat.clothing.children", "cat.furniture.children")
_DEATH = re.compile(r"\b(?:death|deaths|fatal|fatality|fatalities|died|killed|décès|mortel|Tod|Todesfall|tödlich|"
                    r"muerte|mortale|morte|dodelijk|śmierć)\b", re.IGNORECASE)
RISK_LEVELS = ((0.85, "serious"), (0.6, "high"), (0.3, "medium"), (0.0, "low"))
SCORE_INFERRED = 0.4
"""Score of a hazard inferred from the category: below any hazard the text names (0.6+)."""
INFERRED = "inferred"
"""``role`` of a hazard finding inferred from the category (method ``rule``)."""


def risk_level(score: float) -> str:
    return next(level for floor, level in RISK_LEVELS if score >= floor)


def _under(taxonomy: Taxonomy, value: str, ids: Sequence[str]) -> bool:
    if value in ids:
        return True
    return value in taxonomy and any(a in ids for a in taxonomy.ancestors(value))


def _top(value: str) -> str:
    return ".".join(value.split(".")[:2])


class Deriver:
    """Policy classes, risk score and disagreements for one notice's findings."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        self._term_res: dict[tuple[str, int, str], re.Pattern[str] | None] = {}
        self.policies: list[tuple[PolicyNode, int, PolicyRule]] = [
            (node, i, rule) for node in taxonomy.axis("policy") if isinstance(node, PolicyNode)
            for i, rule in enumerate(node.derive)
        ] if "policy" in taxonomy.axes else []

    def _terms_re(self, node_id: str, index: int, rule: PolicyRule, lang: str) -> re.Pattern[str] | None:
        key = (node_id, index, lang)
        if key not in self._term_res:
            words = {w for code in {lang, "en"} for w in rule.terms.get(code, [])}
            alts = sorted((re.escape(w).replace(r"\ ", r"\s+") for w in words), key=len, reverse=True)
            self._term_res[key] = re.compile(r"(?<!\w)(?:" + "|".join(alts) + r")(?!\w)", re.IGNORECASE) if alts else None
        return self._term_res[key]

    # ---- policy ------------------------------------------------------------------------------

    def policies_for(self, findings: Sequence[Any], fields: Mapping[str, str], lang: str, source: str,
                     labels: Mapping[str, Any] | None, make) -> list[Any]:
        """Policy findings: one per class whose derive rule holds, with the evidence of its best condition."""
        out = []
        severity = max((self.taxonomy[f.value].rank for f in findings if f.axis == "severity" and f.value in self.taxonomy
                        and isinstance(self.taxonomy[f.value], SeverityNode)), default=0)
        done: set[str] = set()
        for node, index, rule in self.policies:
            if node.id in done:
                continue
            evidence = self._rule_evidence(node.id, index, rule, findings, fields, lang, source, labels, severity)
            if evidence is not None:
                done.add(node.id)
                field, text, start, end = evidence
                out.append(make("policy", node.id, 0.7, "rule", field, text, start, end, None))
        return out

    def _rule_evidence(self, node_id: str, index: int, rule: PolicyRule, findings: Sequence[Any],
                       fields: Mapping[str, str], lang: str, source: str, labels: Mapping[str, Any] | None,
                       severity: int) -> tuple[str, str, int | None, int | None] | None:
        """(field, evidence, start, end) when every condition of the rule holds, else None."""
        candidates: list[tuple[int, tuple[str, str, int | None, int | None]]] = []

        def from_finding(priority: int, f: Any) -> None:
            candidates.append((priority, (f.field, f.evidence, f.start, f.end)))

        if rule.terms:
            pattern = self._terms_re(node_id, index, rule, lang)
            hit = None
            for name in ("title", "text"):
                m = pattern.search(fields.get(name, "")) if pattern else None
                if m:
                    hit = (name, m.group(0), m.start(), m.end())
                    break
            if hit is None:
                return None
            candidates.append((0, hit))
        if rule.legal_refs:
            refs = [f for f in findings if f.axis == "legal_ref" and any(
                f.value.startswith(r[:-1]) if r.endswith("*") else f.value == r for r in rule.legal_refs)]
            if not refs:
                return None
            from_finding(1, refs[0])
        if rule.substances:
            subs = [f for f in findings if f.axis == "substance" and (
                f.value in rule.substances or _under(self.taxonomy, f.value, rule.substances)
                or ("banned" in rule.substances and getattr(self.taxonomy.get(f.value), "banned", False)))]
            if not subs:
                return None
            from_finding(2, subs[0])
        for axis, ids, priority in (("hazard", rule.hazards, 3), ("category", rule.categories, 4)):
            if ids:
                hits = [f for f in findings if f.axis == axis and _under(self.taxonomy, f.value, ids)]
                if not hits:
                    return None
                from_finding(priority, max(hits, key=lambda f: f.score))
        if rule.min_severity is not None:
            if severity < rule.min_severity:
                return None
            sev = [f for f in findings if f.axis == "severity"]
            if sev:
                from_finding(5, sev[0])
        if rule.label_values:
            hit = None
            for key, values in rule.label_values.items():
                value = (labels or {}).get(key)
                if isinstance(value, str) and value.strip().casefold() in {v.casefold() for v in values}:
                    hit = (f"labels.{key}", value, None, None)
                    break
            if hit is None:
                return None
            candidates.append((6, hit))
        if rule.sources:
            if not any(fnmatch.fnmatchcase(source or "", pattern) for pattern in rule.sources):
                return None
            candidates.append((7, ("source", source, None, None)))
        return min(candidates, key=lambda c: c[0])[1] if candidates else None

    # ---- risk --------------------------------------------------------------------------------

    def risk(self, findings: Sequence[Any], fields: Mapping[str, str], make) -> Any | None:
        """The notice's risk score (axis "risk", value "risk.score"), or None when nothing points at a risk."""
        best: tuple[float, Any] | None = None
        for f in findings:
            node = self.taxonomy.get(f.value)
            weight = None
            if f.axis == "hazard" and isinstance(node, HazardNode):
                # A hazard named only in passing in the body weighs a little less than one in the title or labels.
                weight = node.risk * (1.0 if f.method == "source_label" or f.field == "title" else 0.9)
            elif f.axis == "severity" and isinstance(node, SeverityNode):
                weight = SEVERITY_FLOOR.get(node.rank)
            elif f.axis == "substance" and isinstance(node, SubstanceNode) and node.banned:
                weight = BANNED_FLOOR
            if weight is not None and (best is None or weight > best[0]):
                best = (weight, f)
        if best is None:
            return None
        score, driver = best
        text = fields.get("title", "") + "\n" + fields.get("text", "")[:20000]
        if _DEATH.search(text):
            score += DEATH_BONUS
        if any(f.axis == "category" and _under(self.taxonomy, f.value, VULNERABLE_CATEGORIES) for f in findings):
            score += VULNERABLE_BONUS
        score = round(min(score, 1.0), 3)
        return make("risk", "risk.score", score, "rule", driver.field, driver.evidence, driver.start, driver.end,
                    risk_level(score))

    # ---- hazards implied by the category -------------------------------------------------------

    def inferred_hazards(self, findings: Sequence[Any], make) -> list[Any]:
        """The category's ``typical_hazards`` (categories.yml) when no finding names a hazard: "Passenger car -
        Corsa - Opel" is about injuries though it never says so. Method ``rule``, role ``inferred``, score
        SCORE_INFERRED; the evidence is the category's own label or span. The categories read are the
        source's labels if any, else those in the title, else those in the text (the most specific of a
        lineage: "heaters" says more than "electrical")."""
        if any(f.axis == "hazard" for f in findings):
            return []
        categories = [f for f in findings if f.axis == "category" and f.method in ("source_label", "text")]
        for pick in (lambda f: f.method == "source_label", lambda f: f.field == "title", lambda f: True):
            chosen = [f for f in categories if pick(f)]
            if chosen:
                break
        else:
            return []
        ids = {f.value for f in chosen if f.value in self.taxonomy}
        implied = {a for value in ids for a in self.taxonomy.ancestors(value)}
        out: dict[str, Any] = {}
        for f in chosen:
            if f.value not in ids or f.value in implied:
                continue
            for hazard in self.taxonomy.typical_hazards(f.value):
                out.setdefault(hazard, make("hazard", hazard, SCORE_INFERRED, "rule", f.field, f.evidence, f.start,
                                            f.end, INFERRED))
        return list(out.values())

    # ---- disagreements -----------------------------------------------------------------------

    def disagreements(self, findings: Sequence[Any], make) -> list[Any]:
        """Text findings that contradict the source's own labels on the same axis (no shared top-level node).

        Only a flat contradiction is recorded: labels say "Motor vehicles", the title says "toy". A text
        finding that merely adds to the labels (a second hazard) is not a disagreement.
        """
        out = []
        for axis, role in (("category", None), ("hazard", None), ("jurisdiction", "origin")):
            labelled = {_top(f.value) if axis != "jurisdiction" else f.value for f in findings
                        if f.axis == axis and f.method == "source_label" and (role is None or f.role == role)}
            text = [f for f in findings if f.axis == axis and f.method == "text" and (role is None or f.role == role)]
            if axis == "category" and any(f.field == "title" for f in text):
                text = [f for f in text if f.field == "title"]
            if not labelled or not text:
                continue
            said = {(_top(f.value) if axis != "jurisdiction" else f.value) for f in text}
            if said & labelled:
                continue
            for f in text:
                out.append(make("disagreement", f.value, f.score, "disagreement", f.field, f.evidence, f.start, f.end,
                                axis))
        return out
