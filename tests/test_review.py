"""Review: accept / edit / reject, atomic policy writes with history, re-basing, and refusing twice."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from crawlers.items import NoticeItem
from radar.drafting import draft_proposals, text_hash
from radar.models import Classification, ImpactEstimate, Proposal, Review
from radar.review import (
    PatchConflict, ReviewError, accept, apply_diff, edit, history, parse_diff, proposal_state, reject,
)
from radar.rules import Rule, dump_rules, parse_rules
from radar.store import store_items

DAY = date(2026, 11, 18)

RULES = [
    {"id": "rule.weapons.de_knives", "title": "Butterfly knives are prohibited in Germany", "policy_class": "policy.prohibited",
     "markets": ["DE"], "categories": ["cat.weapons.knives"],
     "match": {"include": {"en": ["butterfly knife"], "de": ["butterflymesser"]}},
     "action": {"type": "block"}, "legal_basis": ["WaffG Anlage 2"], "effective_date": "2024-01-01"},
    {"id": "rule.electrical.chargers", "title": "Chargers are reviewed for conformity marking", "policy_class": "policy.restricted",
     "markets": ["EU", "GB"], "categories": ["cat.electrical.chargers"],
     "match": {"include": {"en": ["usb charger", "phone charger"]}},
     "action": {"type": "review"}, "legal_basis": ["Low Voltage Directive 2014/35/EU"], "effective_date": "2024-01-01"},
    {"id": "rule.zzz.far_away", "title": "A rule far below the knives in the file", "policy_class": "policy.listing_quality",
     "markets": ["EU"], "categories": ["cat.gadgets"], "match": {"include": {"en": ["fidget gadget"]}},
     "action": {"type": "review"}, "effective_date": "2024-01-01"},
]


@pytest.fixture
def policy(tmp_path, monkeypatch):
    from radar import settings

    path = tmp_path / "policy" / "policy_rules.yml"
    path.parent.mkdir()
    path.write_text(dump_rules([Rule.model_validate(r) for r in RULES]), encoding="utf-8")
    monkeypatch.setenv("RADAR_POLICY_RULES_PATH", str(path))
    settings.get_settings.cache_clear()
    return path


def _add(engine, source, sid, title, category, *jurisdictions, **fields) -> int:
    fields.setdefault("published", DAY)
    item = NoticeItem(source=source, source_id=sid, url=f"https://example.org/{sid}", title=title, **fields)
    with Session(engine) as session:
        [nid] = store_items(session, [item]).notice_ids
        for axis, value in [("category", category), ("severity", "severity.serious")] + [("jurisdiction", j) for j in jurisdictions]:
            session.add(Classification(notice_id=nid, notice_version=1, axis=axis, value=value, method="text",
                                       evidence="bunk bed" if value == "cat.furniture.children" else "", pipeline_version="test"))
        session.commit()
    return nid


@pytest.fixture
def knife_proposal(engine, policy) -> Proposal:
    """A pending proposal: widen rule.weapons.de_knives to FR."""
    _add(engine, "fr_rappelconso_recalls", "k1", "Butterfly knife", "cat.weapons.knives", "juris.eu.fr")
    [proposal] = draft_proposals(engine).proposals
    assert proposal.kind == "widen_markets"
    return proposal


def _status(engine, proposal_id: int) -> str:
    with Session(engine) as session:
        return session.get(Proposal, proposal_id).status


def _reviews(engine) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(Review)).scalar_one()


def _kept(policy) -> list:
    history_dir = policy.parent / "history"
    return sorted(history_dir.iterdir()) if history_dir.exists() else []


def test_accept_writes_the_file_keeps_the_previous_and_records_history(engine, policy, knife_proposal):
    before = policy.read_text(encoding="utf-8")
    with Session(engine) as session:
        impact = ImpactEstimate(proposal_id=knife_proposal.id, catalogue="test", hits=3, newly_hit=2, already_hit=1)
        session.add(impact)
        session.commit()
        impact_id = impact.id
    outcome = accept(engine, knife_proposal.id, "alice", "FR bans them too")
    after = policy.read_text(encoding="utf-8")
    assert parse_rules(after).by_id("rule.weapons.de_knives").markets == ["DE", "FR"]
    assert outcome.rebased is False and outcome.kept is not None
    assert [p.read_text(encoding="utf-8") for p in _kept(policy)] == [before]
    review = outcome.review
    assert (review.reviewer, review.decision, review.comment) == ("alice", "accept", "FR bans them too")
    assert review.policy_hash_before == text_hash(before) and review.policy_hash_after == text_hash(after)
    assert review.impact_estimate_id == impact_id
    assert _status(engine, knife_proposal.id) == "accepted"
    [entry] = history(engine)
    assert entry.proposal_id == knife_proposal.id and entry.evidence_notice_ids == knife_proposal.evidence_notice_ids
    assert entry.decision == "accept" and entry.reviewer == "alice" and entry.impact_estimate_id == impact_id
    assert history(engine, rule_id="rule.weapons.de_knives") and not history(engine, reviewer="bob")
    # No temporary file is left beside the policy.
    assert sorted(p.name for p in policy.parent.iterdir() if p.is_file()) == ["policy_rules.yml", "policy_rules.yml.lock"]
    # Drafting again: the notice is covered now, nothing new is proposed.
    assert draft_proposals(engine).proposals == []


def test_accept_twice_is_refused_and_changes_nothing(engine, policy, knife_proposal):
    accept(engine, knife_proposal.id, "alice")
    written = policy.read_bytes()
    with pytest.raises(ReviewError, match=r"already accepted by alice .*nothing was written"):
        accept(engine, knife_proposal.id, "bob")
    assert policy.read_bytes() == written
    assert _reviews(engine) == 1 and len(_kept(policy)) == 1
    with pytest.raises(ReviewError, match="already accepted"):
        reject(engine, knife_proposal.id, "bob", "too late")


def test_reject_leaves_the_file_unchanged(engine, policy, knife_proposal):
    before = policy.read_bytes()
    with pytest.raises(ReviewError, match="needs a comment"):
        reject(engine, knife_proposal.id, "carol", "  ")
    with pytest.raises(ReviewError, match="reviewer"):
        reject(engine, knife_proposal.id, "", "why")
    outcome = reject(engine, knife_proposal.id, "carol", "FR rules differ; needs legal advice")
    assert policy.read_bytes() == before and _kept(policy) == []
    assert outcome.review.decision == "reject" and outcome.review.policy_hash_after is None
    assert _status(engine, knife_proposal.id) == "rejected"
    # A rejected draft is not brought back by drafting again.
    assert draft_proposals(engine).proposals == []
    assert _status(engine, knife_proposal.id) == "rejected"


def test_unrelated_change_since_drafting_is_rebased(engine, policy, knife_proposal):
    text = policy.read_text(encoding="utf-8")
    # Someone edits a rule far away and adds lines above the knives rule: the hunk moves but still applies.
    text = text.replace("A rule far below the knives in the file", "A rule far below, retitled")
    text = text.replace("  - Low Voltage Directive 2014/35/EU\n", "  - Low Voltage Directive 2014/35/EU\n  - EN 62368-1\n")
    policy.write_text(text, encoding="utf-8")
    assert proposal_state(engine, knife_proposal.id) == "re-basable"
    outcome = accept(engine, knife_proposal.id, "alice")
    assert outcome.rebased
    assert any("re-based" in note for note in outcome.notes)
    assert "re-based" in outcome.review.comment
    rules = parse_rules(policy.read_text(encoding="utf-8"))
    assert rules.by_id("rule.weapons.de_knives").markets == ["DE", "FR"]
    assert rules.by_id("rule.zzz.far_away").title == "A rule far below, retitled"
    assert "EN 62368-1" in rules.by_id("rule.electrical.chargers").legal_basis


def test_conflicting_change_since_drafting_is_flagged_stale_and_redrafted(engine, policy, knife_proposal):
    text = policy.read_text(encoding="utf-8").replace("markets: [DE]", "markets: [DE, AT]")
    policy.write_text(text, encoding="utf-8")
    assert proposal_state(engine, knife_proposal.id) == "stale"
    with pytest.raises(ReviewError, match=r"does not apply cleanly.*marked stale.*radar propose"):
        accept(engine, knife_proposal.id, "alice")
    assert policy.read_text(encoding="utf-8") == text and _kept(policy) == []
    assert _status(engine, knife_proposal.id) == "stale" and _reviews(engine) == 0
    with pytest.raises(ReviewError, match="is stale"):
        accept(engine, knife_proposal.id, "alice")
    # Drafting again proposes the change against the current rules: DE, AT plus FR.
    result = draft_proposals(engine)
    [fresh] = result.proposals
    assert fresh.rule["markets"] == ["DE", "AT", "FR"] and fresh.base_hash == text_hash(text)
    accept(engine, fresh.id, "alice")
    assert parse_rules(policy.read_text(encoding="utf-8")).by_id("rule.weapons.de_knives").markets == ["DE", "AT", "FR"]


def test_change_already_in_the_file_is_refused(engine, policy, knife_proposal):
    policy.write_text(policy.read_text(encoding="utf-8").replace("markets: [DE]", "markets: [DE, FR]"), encoding="utf-8")
    with pytest.raises(ReviewError, match="already in"):
        accept(engine, knife_proposal.id, "alice")
    assert _status(engine, knife_proposal.id) == "pending"


def test_two_reviewers_at_once_one_wins(engine, policy, knife_proposal):
    barrier = threading.Barrier(2)
    outcomes: list = []

    def review(name: str) -> None:
        barrier.wait()
        try:
            outcomes.append(("ok", accept(engine, knife_proposal.id, name).review.reviewer))
        except ReviewError as exc:
            outcomes.append(("refused", str(exc)))

    threads = [threading.Thread(target=review, args=(name,)) for name in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(kind for kind, _ in outcomes) == ["ok", "refused"]
    winner = next(who for kind, who in outcomes if kind == "ok")
    refusal = next(msg for kind, msg in outcomes if kind == "refused")
    assert f"already accepted by {winner}" in refusal
    assert _reviews(engine) == 1 and len(_kept(policy)) == 1
    assert parse_rules(policy.read_text(encoding="utf-8")).by_id("rule.weapons.de_knives").markets == ["DE", "FR"]


def test_two_proposals_accepted_at_once_both_land(engine, policy):
    _add(engine, "fr_rappelconso_recalls", "k1", "Butterfly knife", "cat.weapons.knives", "juris.eu.fr")
    _add(engine, "uk_opss_alerts", "bb", "Bunk bed collapses", "cat.furniture.children", "juris.uk")
    first, second = draft_proposals(engine).proposals
    barrier = threading.Barrier(2)
    errors: list = []

    def review(pid: int) -> None:
        barrier.wait()
        try:
            accept(engine, pid, f"reviewer{pid}")
        except Exception as exc:  # any failure is the test's failure
            errors.append(exc)

    threads = [threading.Thread(target=review, args=(p.id,)) for p in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    rules = parse_rules(policy.read_text(encoding="utf-8"))
    assert rules.by_id("rule.weapons.de_knives").markets == ["DE", "FR"]
    assert rules.by_id("rule.furniture.children").markets == ["GB"]
    assert len(_kept(policy)) == 2
    # The second writer re-based onto the first one's file, and said so.
    assert sum("re-based" in h.comment for h in history(engine)) == 1


def test_edit_accepts_the_reviewers_rule(engine, policy, knife_proposal, tmp_path):
    rule = dict(knife_proposal.rule, title="Butterfly knives are prohibited in Germany and France", markets=["DE", "FR"])
    rule_file = tmp_path / "edited.yml"
    rule_file.write_text(dump_rules([Rule.model_validate(rule)]), encoding="utf-8")
    outcome = edit(engine, knife_proposal.id, "dana", rule_file, "clearer title")
    written = parse_rules(policy.read_text(encoding="utf-8")).by_id("rule.weapons.de_knives")
    assert written.title == "Butterfly knives are prohibited in Germany and France"
    assert outcome.review.decision == "edit" and outcome.review.edited_rule["title"] == written.title
    assert _status(engine, knife_proposal.id) == "accepted"


def test_bad_edits_are_clear_errors(engine, policy, knife_proposal, tmp_path):
    before = policy.read_bytes()
    wrong_id = tmp_path / "wrong.yml"
    wrong_id.write_text(dump_rules([Rule.model_validate(dict(knife_proposal.rule, id="rule.weapons.other"))]), encoding="utf-8")
    with pytest.raises(ReviewError, match="keep the id"):
        edit(engine, knife_proposal.id, "dana", wrong_id)
    broken = tmp_path / "broken.yml"
    broken.write_text("id: [oops\n", encoding="utf-8")
    with pytest.raises(ReviewError, match="broken.yml: not valid YAML"):
        edit(engine, knife_proposal.id, "dana", broken)
    invalid = tmp_path / "invalid.yml"
    invalid.write_text("id: rule.weapons.de_knives\ntitle: x\n", encoding="utf-8")
    with pytest.raises(ReviewError, match="invalid.yml: the edited rule is not valid"):
        edit(engine, knife_proposal.id, "dana", invalid)
    # An edit that makes the policy conflict (same scope and terms as another rule) is refused.
    clash = dict(RULES[1], id="rule.weapons.de_knives")
    clashing = tmp_path / "clash.yml"
    clashing.write_text(dump_rules([Rule.model_validate(clash)]), encoding="utf-8")
    with pytest.raises(ReviewError, match="would make the policy invalid"):
        edit(engine, knife_proposal.id, "dana", clashing)
    assert policy.read_bytes() == before and _status(engine, knife_proposal.id) == "pending"
    with pytest.raises(ReviewError, match="no proposal 9999"):
        accept(engine, 9999, "dana")


def test_apply_diff_refuses_damaged_diffs():
    text = "".join(f"line {i}\n" for i in range(10))
    with pytest.raises(PatchConflict, match="empty"):
        apply_diff(text, "")
    damaged = "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n line 0\n?line 1\n line 2\n"
    with pytest.raises(PatchConflict, match="damaged"):
        apply_diff(text, damaged)
    truncated = "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n line 0\n"
    with pytest.raises(PatchConflict, match="truncated"):
        parse_diff(truncated)
    # A removed line that itself starts with "-- " is read by count, not mistaken for a header.
    yaml_text = "a\n-- b\nc\n"
    diff = "--- a/x\n+++ b/x\n@@ -1,3 +1,2 @@\n a\n--- b\n c\n"
    assert apply_diff(yaml_text, diff)[0] == "a\nc\n"


def test_cli_review_flow(engine, policy, knife_proposal):
    from click.testing import CliRunner

    from radar.cli import main

    runner = CliRunner()
    shown = runner.invoke(main, ["review", "show", str(knife_proposal.id)])
    assert shown.exit_code == 0, shown.output
    assert "unchanged since drafting" in shown.output and "+  markets: [DE, FR]" in shown.output
    missing = runner.invoke(main, ["review", "accept", str(knife_proposal.id)])
    assert missing.exit_code == 2 and "--reviewer" in missing.output
    ok = runner.invoke(main, ["review", "accept", str(knife_proposal.id), "--reviewer", "erin", "--comment", "fine"])
    assert ok.exit_code == 0, ok.output
    assert "accepted by erin" in ok.output and "previous version kept" in ok.output
    again = runner.invoke(main, ["review", "accept", str(knife_proposal.id), "--reviewer", "erin"])
    assert again.exit_code == 1 and "already accepted by erin" in again.output and "Traceback" not in again.output
    hist = runner.invoke(main, ["review", "history"])
    assert "erin" in hist.output and "accept" in hist.output
    check = runner.invoke(main, ["rules", "check"])
    assert check.exit_code == 0, check.output
    assert str(policy) in check.output


def test_compare_and_set_lets_exactly_one_claim_win(engine, policy, knife_proposal):
    """The database guard on its own (reviewers on two machines sharing the database, each with its own lock)."""
    from radar.review import _claim

    results: dict[str, bool] = {}
    first = Session(engine)
    try:
        results["first"] = _claim(first, knife_proposal.id, "accepted")  # row now locked, not yet committed

        def second_reviewer() -> None:
            with Session(engine) as second:
                results["second"] = _claim(second, knife_proposal.id, "rejected")
                second.commit()

        thread = threading.Thread(target=second_reviewer)
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive(), "the second claim must wait for the first transaction"
        first.commit()
        thread.join(timeout=30)
    finally:
        first.close()
    assert results == {"first": True, "second": False}
    assert _status(engine, knife_proposal.id) == "accepted"


def test_impact_estimate_is_stored_and_recorded_with_the_decision(engine, policy, knife_proposal, tmp_path):
    from click.testing import CliRunner

    from radar.cli import main
    from radar.impact_run import latest_impact, run_impact

    catalogue = tmp_path / "listings.csv"
    catalogue.write_text(
        "id,title,market,seller\n"
        "1,Butterfly knife with steel blade,DE,knifeshop\n"
        "2,Butterfly knife trainer,FR,lamesfr\n"
        "3,Butterfly hair clip,FR,bijoux\n"
        "4,Kitchen knife set,FR,cuisine\n", encoding="utf-8")
    row = run_impact(engine, knife_proposal.id, catalogue)
    assert (row.hits, row.already_hit, row.newly_hit, row.exact) == (2, 1, 1, True)
    assert row.listings_scanned == 4 and row.catalogue == str(catalogue)
    assert row.details["by_market"]["FR"]["newly_hit"] == 1
    assert latest_impact(engine, knife_proposal.id).id == row.id
    out = CliRunner().invoke(main, ["impact", str(knife_proposal.id), "--catalogue", str(catalogue)])
    assert out.exit_code == 0, out.output
    assert "listings hit: 2" in out.output and "newly hit: 1" in out.output
    latest = latest_impact(engine, knife_proposal.id)
    assert latest.id != row.id
    review = accept(engine, knife_proposal.id, "alice").review
    assert review.impact_estimate_id == latest.id
    with pytest.raises(Exception, match="no proposal 4242"):
        run_impact(engine, 4242, catalogue)


def test_edited_rule_given_as_data_is_validated(engine, policy, knife_proposal):
    """The web form hands the edited rule over as parsed YAML: a bad one is a clear ReviewError."""
    before = policy.read_bytes()
    with pytest.raises(ReviewError, match=r"the edited rule is not valid: .*markets"):
        accept(engine, knife_proposal.id, "dana", edited_rule=dict(knife_proposal.rule, markets=["UK"]))
    with pytest.raises(ReviewError, match="must be a mapping"):
        accept(engine, knife_proposal.id, "dana", edited_rule=["not", "a", "rule"])
    assert policy.read_bytes() == before and _status(engine, knife_proposal.id) == "pending"
