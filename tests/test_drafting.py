"""Drafting: uncovered notices become proposed rule changes (diffs with evidence); covered ones do not."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

import pytest
import yaml
from sqlalchemy import func, select
from sqlmodel import Session

from crawlers.items import NoticeItem
from radar.drafting import draft_proposals, market_of, policy_path, proposal_key, read_policy
from radar.models import Classification, Proposal
from radar.rules import Rule, dump_rules, parse_rules
from radar.store import store_items

DAY = date(2026, 11, 18)

RULES = [
    {"id": "rule.toys.magnets", "title": "Magnetic toys need a small-parts test report", "policy_class": "policy.restricted",
     "markets": ["EU", "GB"], "categories": ["cat.toys.magnetic"],
     "match": {"include": {"en": ["magnetic toy", "magnet set"], "de": ["magnetspielzeug"]}},
     "action": {"type": "restrict", "required_documents": ["EN 71-1 test report"]},
     "legal_basis": ["Toy Safety Directive 2009/48/EC"], "effective_date": "2024-01-01",
     "references": ["https://eur-lex.europa.eu/eli/dir/2009/48/oj"]},
    {"id": "rule.weapons.de_knives", "title": "Butterfly knives are prohibited in Germany", "policy_class": "policy.prohibited",
     "markets": ["DE"], "categories": ["cat.weapons.knives"],
     "match": {"include": {"en": ["butterfly knife"], "de": ["butterflymesser"]}},
     "action": {"type": "block"}, "legal_basis": ["WaffG Anlage 2"], "effective_date": "2024-01-01"},
    {"id": "rule.electrical.chargers", "title": "Chargers are reviewed for conformity marking", "policy_class": "policy.restricted",
     "markets": ["EU", "GB"], "categories": ["cat.electrical.chargers"],
     "match": {"include": {"en": ["usb charger", "phone charger"]}},
     "action": {"type": "review"}, "legal_basis": ["Low Voltage Directive 2014/35/EU"], "effective_date": "2024-01-01"},
    {"id": "rule.recalls.recalled", "title": "Listings that say the product was recalled", "policy_class": "policy.prohibited",
     "markets": ["EU", "GB"], "categories": [], "match": {"include": {"en": ["product recall", "recalled product"]}},
     "action": {"type": "block"}, "legal_basis": ["GPSR (EU) 2023/988"], "effective_date": "2024-01-01"},
]


@pytest.fixture
def policy(tmp_path, monkeypatch):
    """A policy file in tmp_path (never the repository's), named by the policy_rules_path setting."""
    from radar import settings

    path = tmp_path / "policy" / "policy_rules.yml"
    path.parent.mkdir()
    path.write_text(dump_rules([Rule.model_validate(r) for r in RULES]), encoding="utf-8")
    monkeypatch.setenv("RADAR_POLICY_RULES_PATH", str(path))
    settings.get_settings.cache_clear()
    return path


def add(engine, source: str, sid: str, title: str, classes=(), evidence: dict | None = None, **fields) -> int:
    """Store a notice and its findings: (axis, value[, role]); ``evidence`` maps a category to its evidence words."""
    fields.setdefault("published", DAY)
    item = NoticeItem(source=source, source_id=sid, url=f"https://example.org/{source}/{sid}", title=title, **fields)
    with Session(engine) as session:
        [notice_id] = store_items(session, [item]).notice_ids
        for axis, value, *role in classes:
            session.add(Classification(
                notice_id=notice_id, notice_version=1, axis=axis, value=value, score=0.9, method="text",
                evidence=(evidence or {}).get(value, ""), role=role[0] if role else None, pipeline_version="test"))
        session.commit()
    return notice_id


def serious(category: str, *jurisdictions: str) -> list[tuple]:
    return [("category", category), ("severity", "severity.serious")] + [("jurisdiction", j) for j in jurisdictions]


def proposals(engine) -> dict[str, Proposal]:
    with Session(engine) as session:
        return {p.kind + ":" + p.rule_id: p for p in session.scalars(select(Proposal))}


def test_market_codes():
    assert market_of("juris.eu.de") == "DE" and market_of("juris.eu") == "EU"
    assert market_of("juris.uk") == "GB" and market_of("juris.us") == "US"
    assert market_of("juris.us.ca") == "US" and market_of("hazard.fire") is None


def test_policy_path_setting(policy):
    assert policy_path() == policy


def test_covered_notices_make_no_proposal(engine, policy):
    before = policy.read_bytes()
    # Words, category and market all within rule.toys.magnets.
    add(engine, "eu_safety_gate_alerts", "c1", "Magnetic toy set with small magnets", serious("cat.toys.magnetic", "juris.eu", "juris.eu.de"))
    # Origin countries are not markets; GB is.
    add(engine, "uk_opss_alerts", "c2", "Magnet set sold as a toy", serious("cat.toys.magnetic", "juris.uk") + [("jurisdiction", "juris.cn", "origin")])
    # A US-only recall is outside this policy's markets.
    add(engine, "us_cpsc_recalls", "c3", "Crib bumper recall", serious("cat.childcare.sleep", "juris.us"))
    result = draft_proposals(engine)
    assert result.covered == 2 and result.out_of_scope == 1
    assert result.proposals == [] and proposals(engine) == {}
    assert policy.read_bytes() == before


def test_catch_all_rules_do_not_cover(engine, policy):
    # "product recall" hits rule.recalls.recalled (no categories), but that says nothing about bunk beds.
    nid = add(engine, "uk_opss_alerts", "bb", "Product recall: Dreamy children's bunk bed collapses",
              serious("cat.furniture.children", "juris.uk"), evidence={"cat.furniture.children": "bunk bed"})
    draft_proposals(engine)
    found = proposals(engine)
    assert list(found) == ["new_rule:rule.furniture.children"]
    p = found["new_rule:rule.furniture.children"]
    assert p.evidence_notice_ids == [nid]
    assert p.rule["markets"] == ["GB"] and p.rule["categories"] == ["cat.furniture.children"]
    assert "bunk bed" in p.rule["match"]["include"]["en"]
    # No policy class was found for the notice: the drafted rule sends listings to review first.
    assert p.rule["action"]["type"] == "review" and p.rule["policy_class"] == "policy.restricted"
    assert "+- id: rule.furniture.children" in p.diff
    assert p.base_hash == hashlib.sha256(policy.read_bytes()).hexdigest()
    assert "covered by no rule" in p.rationale and f"#{nid}" in p.rationale


def test_widen_markets(engine, policy):
    ids = [add(engine, "eu_safety_gate_alerts", f"k{i}", f"Butterfly knife with 10 cm blade, model {i}",
               serious("cat.weapons.knives", "juris.eu", f"juris.eu.{cc}"))
           for i, cc in enumerate(["fr", "pl"])]
    draft_proposals(engine)
    p = proposals(engine)["widen_markets:rule.weapons.de_knives"]
    # Each notice is EU-wide (published by Safety Gate): the rule widens to EU.
    assert p.rule["markets"] == ["EU"]
    assert p.evidence_notice_ids == sorted(ids)
    assert "-  markets: [DE]" in p.diff and "+  markets: [EU]" in p.diff
    assert "applies only in DE" in p.rationale


def test_widen_markets_to_a_member_state(engine, policy):
    add(engine, "fr_rappelconso_recalls", "k", "Butterfly knife", serious("cat.weapons.knives", "juris.eu.fr"))
    draft_proposals(engine)
    p = proposals(engine)["widen_markets:rule.weapons.de_knives"]
    assert p.rule["markets"] == ["DE", "FR"]
    assert p.title == "Widen rule.weapons.de_knives to FR"


def test_add_terms_from_the_evidence(engine, policy):
    nid = add(engine, "eu_safety_gate_alerts", "mb", "Neodymium magnetic balls, 216 pieces",
              serious("cat.toys.magnetic", "juris.eu", "juris.eu.de"), evidence={"cat.toys.magnetic": "magnetic balls"},
              language="en")
    draft_proposals(engine)
    p = proposals(engine)["add_terms:rule.toys.magnets"]
    assert p.evidence_notice_ids == [nid]
    assert p.rule["match"]["include"]["en"] == ["magnetic toy", "magnet set", "magnetic balls"]
    assert "+      - magnetic balls" in p.diff
    assert p.title == "Add 1 match terms to rule.toys.magnets"


def test_widen_categories(engine, policy):
    add(engine, "uk_opss_alerts", "ch", "USB charger sold with a kids' tablet overheats",
        serious("cat.electrical.computers", "juris.uk"))
    draft_proposals(engine)
    p = proposals(engine)["widen_categories:rule.electrical.chargers"]
    assert p.rule["categories"] == ["cat.electrical.chargers", "cat.electrical.computers"]


def test_change_action_after_enough_high_risk_incidents(engine, policy):
    for i in range(3):
        add(engine, "eu_safety_gate_alerts", f"u{i}", f"USB charger brand{i} overheats", serious("cat.electrical.chargers", "juris.eu.de"),
            brand=f"Brand{i}")
    result = draft_proposals(engine)
    assert result.covered == 3
    p = proposals(engine)["change_action:rule.electrical.chargers"]
    assert p.rule["action"] == {"type": "restrict", "required_documents": p.rule["action"]["required_documents"]}
    assert p.rule["action"]["required_documents"]
    assert "from review to restrict" in p.title


def test_two_incidents_do_not_change_the_action(engine, policy):
    for i in range(2):
        add(engine, "eu_safety_gate_alerts", f"u{i}", f"USB charger brand{i} overheats", serious("cat.electrical.chargers", "juris.eu.de"))
    # The same charger as u0 seen by another regulator is the same incident.
    add(engine, "uk_opss_alerts", "u0b", "USB charger brand0 overheats", serious("cat.electrical.chargers", "juris.uk"), gtin="4006381333931")
    add(engine, "eu_safety_gate_alerts", "u0c", "USB charger brand0 overheats again", serious("cat.electrical.chargers", "juris.eu.de"), gtin="4006381333931")
    from radar.incidents import link_incidents

    link_incidents(engine)
    draft_proposals(engine)
    assert "change_action:rule.electrical.chargers" not in proposals(engine)


def test_legislation_drafts_a_rule_with_its_legal_basis(engine, policy):
    law = add(engine, "eu_eurlex_legislation", "2026/9", "Commission Decision (EU) 2026/9 on child-resistant lighters",
              [("category", "cat.lighters"), ("jurisdiction", "juris.eu")], evidence={"cat.lighters": "lighters"},
              effective_date=DAY + timedelta(days=60))
    from radar.signals import compute_signals

    compute_signals(engine, "2026-W47", policy_path=policy)
    draft_proposals(engine)
    p = proposals(engine)["new_rule:rule.lighters.general"]
    assert p.evidence_notice_ids == [law] and p.signal_ids
    assert p.rule["legal_basis"] == ["Commission Decision (EU) 2026/9 on child-resistant lighters"]
    assert p.rule["effective_date"] == (DAY + timedelta(days=60)).isoformat()
    assert p.rule["markets"] == ["EU"]
    assert "Signal #" in p.rationale and "Legal basis from the legislation" in p.rationale


def test_drafting_twice_stores_once_and_never_writes_the_policy(engine, policy):
    before = policy.read_bytes()
    add(engine, "uk_opss_alerts", "bb", "Bunk bed collapses", serious("cat.furniture.children", "juris.uk"),
        evidence={"cat.furniture.children": "bunk bed"})
    add(engine, "fr_rappelconso_recalls", "k", "Butterfly knife", serious("cat.weapons.knives", "juris.eu.fr"))
    first = draft_proposals(engine)
    assert first.created == 2
    ids = {k: p.id for k, p in proposals(engine).items()}
    second = draft_proposals(engine)
    assert second.created == 0 and second.unchanged == 2
    assert {k: p.id for k, p in proposals(engine).items()} == ids
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(Proposal)).scalar_one() == 2
    assert policy.read_bytes() == before
    # The stored diff applies to the file and yields a valid policy with the proposed rule.
    p = proposals(engine)["widen_markets:rule.weapons.de_knives"]
    assert p.key == proposal_key("widen_markets", "rule.weapons.de_knives", p.rule)
    from radar.review import apply_diff

    after, _ = apply_diff(policy.read_text(encoding="utf-8"), p.diff)
    assert parse_rules(after).by_id("rule.weapons.de_knives").markets == ["DE", "FR"]


def test_new_evidence_supersedes_a_pending_draft(engine, policy):
    add(engine, "fr_rappelconso_recalls", "k1", "Butterfly knife", serious("cat.weapons.knives", "juris.eu.fr"))
    draft_proposals(engine)
    old = proposals(engine)["widen_markets:rule.weapons.de_knives"]
    add(engine, "eu_safety_gate_alerts", "k2", "Butterfly knife", serious("cat.weapons.knives", "juris.eu.pl"))
    result = draft_proposals(engine)
    assert result.superseded == 1
    with Session(engine) as session:
        rows = {p.id: p for p in session.scalars(select(Proposal))}
    assert rows[old.id].status == "stale"
    [new] = [p for p in rows.values() if p.status == "pending"]
    assert new.rule["markets"] == ["DE", "FR", "PL"]


def test_bad_policy_file_is_a_clear_error(engine, policy):
    from radar.errors import ConfigError

    policy.write_text("rules:\n  - id: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="policy_rules.yml"):
        draft_proposals(engine)
    policy.unlink()
    with pytest.raises(ConfigError, match="not found"):
        read_policy(policy)


def test_cli_propose_and_review_list(engine, policy):
    from click.testing import CliRunner

    from radar.cli import main

    add(engine, "fr_rappelconso_recalls", "k", "Butterfly knife", serious("cat.weapons.knives", "juris.eu.fr"))
    out = CliRunner().invoke(main, ["propose"])
    assert out.exit_code == 0, out.output
    assert "1 proposal(s): 1 new" in out.output and "Widen rule.weapons.de_knives to FR" in out.output
    listed = CliRunner().invoke(main, ["review", "list"])
    assert "Widen rule.weapons.de_knives to FR" in listed.output
    data = yaml.safe_load(CliRunner().invoke(main, ["propose", "--json"]).output)
    assert data["created"] == 0 and data["unchanged"] == 1


def test_new_rule_takes_the_action_of_the_classified_policy_class(engine, policy):
    add(engine, "uk_opss_alerts", "lp", "High-power green laser pointer 5000 mW",
        serious("cat.laser_pointers", "juris.uk") + [("policy", "policy.prohibited")],
        evidence={"cat.laser_pointers": "laser pointer"})
    draft_proposals(engine)
    p = proposals(engine)["new_rule:rule.laser_pointers.general"]
    assert p.rule["policy_class"] == "policy.prohibited" and p.rule["action"]["type"] == "block"
    assert p.rule["match"]["include"] == {"en": ["laser pointer"]}


def test_the_best_fitting_rule_is_widened(engine, policy):
    """Two rules of the category: the one whose wording reads like the notice gets the new words."""
    extra = dict(RULES[0], id="rule.toys.magnet_fishing", title="Magnetic fishing games for toddlers",
                 match={"include": {"en": ["magnetic fishing game"]}})
    rules = [Rule.model_validate(r) for r in RULES + [extra]]
    policy.write_text(dump_rules(rules), encoding="utf-8")
    add(engine, "eu_safety_gate_alerts", "mf", "Magnetic fishing rod game for toddlers",
        serious("cat.toys.magnetic", "juris.eu.de"), evidence={"cat.toys.magnetic": "fishing rod game"}, language="en")
    draft_proposals(engine)
    assert list(proposals(engine)) == ["add_terms:rule.toys.magnet_fishing"]


def test_no_evidence_words_no_added_terms(engine, policy):
    add(engine, "eu_safety_gate_alerts", "nw", "Neodymium spheres", serious("cat.toys.magnetic", "juris.eu.de"))
    result = draft_proposals(engine)
    assert result.proposals == [] and sum(result.skipped.values()) == 1


def test_taxonomy_terms_only_in_the_markets_languages(engine, policy):
    # No evidence words: the new rule falls back on the category's taxonomy terms, in English for GB only.
    add(engine, "uk_opss_alerts", "lt", "Recall of a Zippo-style gas lighter", serious("cat.lighters", "juris.uk"),
        language="en")
    from radar.drafting import category_info

    assert category_info()["cat.lighters"].terms["en"]  # the words of nlp/patterns/terms/en.jsonl
    draft_proposals(engine)
    p = proposals(engine)["new_rule:rule.lighters.general"]
    assert set(p.rule["match"]["include"]) == {"en"}
    assert set(p.rule["match"]["include"]["en"]) <= set(category_info()["cat.lighters"].terms["en"])
