"""Signals: the spike test on incident counts, legislation, the calendar of dates, incidents."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from crawlers.items import NoticeItem
from radar.errors import RadarError
from radar.incidents import link_incidents
from radar.models import Classification, Signal
from radar.signals import (
    category_with_parents, compute_signals, iso_week, last_complete_week, list_signals, poisson_sf, spike_test, week_start,
)
from radar.store import store_items

WEEK = "2026-W47"
MONDAY = date(2026, 11, 16)


def _add(engine, source: str, sid: str, title: str, classes=(), **fields) -> int:
    """Store one notice and its classifications (axis, value[, role]) as the NLP stage would."""
    fields.setdefault("published", MONDAY)
    item = NoticeItem(source=source, source_id=sid, url=f"https://example.org/{source}/{sid}", title=title, **fields)
    with Session(engine) as session:
        [notice_id] = store_items(session, [item]).notice_ids
        for axis, value, *role in classes:
            session.add(Classification(notice_id=notice_id, notice_version=1, axis=axis, value=value, score=0.9,
                                       method="text", role=role[0] if role else None, pipeline_version="test"))
        session.commit()
    return notice_id


MAGNETS = [("category", "cat.toys.magnetic"), ("hazard", "hazard.ingestion"), ("jurisdiction", "juris.eu.de"),
           ("jurisdiction", "juris.cn", "origin"), ("hazard", "hazard.choking", "inferred")]


def _history(engine, weeks: int = 12, per_week: int = 0, classes=MAGNETS) -> None:
    """Notices in the weeks before the signal week: the history the baseline needs."""
    for w in range(1, weeks + 1):
        day = MONDAY - timedelta(days=7 * w) + timedelta(days=2)
        _add(engine, "uk_opss_alerts", f"filler{w}", f"Garden chair {w}", [("category", "cat.furniture")], published=day)
        for i in range(per_week):
            _add(engine, "eu_safety_gate_alerts", f"base{w}-{i}", f"Magnet toy model B{w}{i}", classes, published=day)


def _signal_rows(engine) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(Signal)).scalar_one()


def test_weeks():
    assert iso_week(date(2026, 11, 18)) == WEEK
    assert week_start(WEEK) == MONDAY
    assert week_start("2026-W1") == date(2025, 12, 29)
    assert last_complete_week(date(2026, 11, 24)) == WEEK
    for bad in ("2026-47", "W47", "2026-W60", ""):
        with pytest.raises(RadarError, match="ISO week|does not exist"):
            week_start(bad)
    assert category_with_parents("cat.toys.magnetic") == ["cat.toys.magnetic", "cat.toys"]


def test_poisson_tail():
    assert poisson_sf(0, 3.0) == 1.0
    assert poisson_sf(1, 2.0) == pytest.approx(1 - math.exp(-2.0))
    # P(X >= 3 | mu) = 1 - e^-mu (1 + mu + mu^2/2)
    mu = 0.4
    assert poisson_sf(3, mu) == pytest.approx(1 - math.exp(-mu) * (1 + mu + mu * mu / 2), rel=1e-12)
    # Far tails do not cancel to zero.
    assert 0 < poisson_sf(60, 1.0) < 1e-80
    special = pytest.importorskip("scipy.special")
    for k, m in ((3, 1 / 12), (7, 0.5), (100, 80.0), (5, 10.0)):
        assert poisson_sf(k, m) == pytest.approx(float(special.pdtrc(k - 1, m)), rel=1e-9)


def test_spike_test_thresholds():
    # 3 incidents in a cell never seen in 12 weeks: λ = 1/12, P(≥3) ≈ 9e-5.
    fires, p, mu = spike_test(3, 0, 12, p_threshold=0.01, min_count=3)
    assert fires and p < 1e-4 and mu == pytest.approx(1 / 12)
    # 2 is below the minimum however surprising.
    assert not spike_test(2, 0, 12, p_threshold=0.01, min_count=3)[0]
    # 6 against a steady 2 a week is ordinary.
    assert not spike_test(6, 24, 12, p_threshold=0.01, min_count=3)[0]


def test_spike_fires_on_a_real_spike_with_reasons_and_is_idempotent(engine):
    _history(engine, per_week=0)
    _add(engine, "eu_safety_gate_alerts", "old", "Magnet toy X", MAGNETS, published=MONDAY - timedelta(days=30))
    ids = [_add(engine, "eu_safety_gate_alerts", f"spike{i}", f"Magnetic balls set {i}", MAGNETS,
                published=MONDAY + timedelta(days=i % 5), gtin=f"400638133393{i}") for i in range(6)]
    link_incidents(engine)
    result = compute_signals(engine, WEEK)
    assert result.baseline_weeks == 12
    spikes = {(s.category, s.hazard, s.jurisdiction): s for s in result.spikes}
    key = ("cat.toys.magnetic", "hazard.ingestion", "juris.eu.de")
    assert key in spikes
    spike = spikes[key]
    assert spike.count == 6 and spike.notice_ids == sorted(ids)
    assert spike.baseline == pytest.approx(1 / 12, abs=1e-4)
    assert spike.details["test"] == "one-sided Poisson" and spike.details["p_value"] < 0.01
    assert "6 incidents" in spike.reason and "1 in the 12 weeks before" in spike.reason and "Poisson" in spike.reason
    # The parent category rests on the same incidents: not reported twice. Origin countries are not markets.
    assert ("cat.toys", "hazard.ingestion", "juris.eu.de") not in spikes
    assert all(s.jurisdiction != "juris.cn" for s in result.spikes)
    assert all(s.hazard != "hazard.choking" for s in result.spikes)  # inferred from the category, not named
    rows = _signal_rows(engine)
    again = compute_signals(engine, WEEK)
    assert _signal_rows(engine) == rows and again.created == 0
    assert [s.id for s in again.spikes] == [s.id for s in result.spikes]


def test_tiny_counts_and_steady_counts_make_no_noise(engine):
    _history(engine, per_week=2)
    for i in range(2):
        _add(engine, "eu_safety_gate_alerts", f"tiny{i}", f"Laser pointer {i}",
             [("category", "cat.laser_pointers"), ("hazard", "hazard.eye_injury"), ("jurisdiction", "juris.eu.fr")])
    for i in range(3):  # 3 magnet incidents against a steady 2 a week
        _add(engine, "eu_safety_gate_alerts", f"steady{i}", f"Magnet toy S{i}", MAGNETS)
    link_incidents(engine)
    result = compute_signals(engine, WEEK)
    assert result.spikes == []
    assert result.cells_tested > 0


def test_counts_incidents_not_notices(engine):
    _history(engine, per_week=0)
    # One recall published by five regulators in the week: one incident, no spike; one incident signal.
    sources = ["eu_safety_gate_alerts", "uk_opss_alerts", "us_cpsc_recalls", "fr_rappelconso_recalls", "au_accc_recalls"]
    ids = [_add(engine, src, "same", "Magnetic building set Magnix", MAGNETS, gtin="4006381333931") for src in sources]
    link_incidents(engine)
    result = compute_signals(engine, WEEK)
    assert result.spikes == []
    [incident] = result.incidents
    assert incident.score == 5 and incident.notice_ids == sorted(ids)
    assert "5 sources" in incident.reason and "gtin" in incident.reason


def test_no_spike_test_without_history(engine):
    for i in range(6):
        _add(engine, "eu_safety_gate_alerts", f"new{i}", f"Magnet toy N{i}", MAGNETS)
    result = compute_signals(engine, WEEK)
    assert result.spikes == []
    assert any("history" in note for note in result.notes)


def test_legislation_and_deadlines(engine, tmp_path, monkeypatch):
    # A legislation source: recognised by its kind in the source YAML.
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "eu_eurlex_legislation.yml").write_text(
        "title: EUR-Lex\npublisher: EU\njurisdiction: juris.eu\nkind: legislation\nurl: https://eur-lex.europa.eu/\n"
        "format: html\nlicence: reuse allowed\nattribution: EUR-Lex\n", encoding="utf-8")
    monkeypatch.setenv("RADAR_SOURCES_DIR", str(sources))
    from radar import settings

    settings.get_settings.cache_clear()
    law = _add(engine, "eu_eurlex_legislation", "2026/1", "Regulation on magnetic toys",
               [("category", "cat.toys.magnetic"), ("jurisdiction", "juris.eu")], published=MONDAY + timedelta(days=1))
    consult = _add(engine, "uk_opss_alerts", "consult", "Consultation on lithium batteries",
                   [("category", "cat.batteries.lithium"), ("jurisdiction", "juris.uk")],
                   published=MONDAY + timedelta(days=2), comment_deadline=MONDAY + timedelta(days=40),
                   effective_date=MONDAY + timedelta(days=400))
    transition = _add(engine, "eu_safety_gate_alerts", "gpsr", "GPSR transition",
                      published=MONDAY - timedelta(days=300), labels={"transition_end": (MONDAY + timedelta(days=20)).isoformat()})
    policy = tmp_path / "policy_rules.yml"
    policy.write_text(_policy_with_future_rule(MONDAY + timedelta(days=10)), encoding="utf-8")
    result = compute_signals(engine, WEEK, policy_path=policy)

    laws = {s.notice_ids[0]: s for s in result.legislation}
    assert set(laws) == {law, consult}
    assert laws[law].category == "cat.toys.magnetic"
    assert "eu_eurlex_legislation (legislation)" in laws[law].reason and "cat.toys.magnetic" in laws[law].reason
    assert "comments due" in laws[consult].reason

    due = {(s.details["what"], s.due): s for s in result.deadlines}
    assert ("comment_deadline", MONDAY + timedelta(days=40)) in due
    assert ("transition_end", MONDAY + timedelta(days=20)) in due
    assert ("rule_effective", MONDAY + timedelta(days=10)) in due
    # 400 days ahead is beyond the 180-day horizon.
    assert all(s.due <= MONDAY + timedelta(days=180) for s in result.deadlines)
    assert due[("transition_end", MONDAY + timedelta(days=20))].notice_ids == [transition]
    assert all(s.reason and s.kind == "deadline" for s in result.deadlines)
    rows = _signal_rows(engine)
    compute_signals(engine, WEEK, policy_path=policy)
    assert _signal_rows(engine) == rows
    listed = list_signals(engine, kinds=["deadline"])
    assert {s.id for s in listed} == {s.id for s in result.deadlines}


def _policy_with_future_rule(day: date) -> str:
    from radar.rules import Rule, dump_rules

    rule = Rule.model_validate({
        "id": "rule.toys.future_magnets", "title": "Magnet sets from the new regulation", "policy_class": "policy.restricted",
        "markets": ["EU"], "categories": ["cat.toys.magnetic"], "match": {"include": {"en": ["magnet set"]}},
        "action": {"type": "review"}, "legal_basis": ["Regulation on magnetic toys"], "effective_date": day.isoformat(),
    })
    return dump_rules([rule])


def test_cli_signals(engine):
    from click.testing import CliRunner

    from radar.cli import main

    _history(engine)
    for i in range(4):
        _add(engine, "eu_safety_gate_alerts", f"c{i}", f"Magnetic balls C{i}", MAGNETS)
    result = CliRunner().invoke(main, ["signals", "--week", WEEK])
    assert result.exit_code == 0, result.output
    assert "spike" in result.output and "cat.toys.magnetic" in result.output
    bad = CliRunner().invoke(main, ["signals", "--week", "47"])
    assert bad.exit_code == 1 and "ISO week" in bad.output and "Traceback" not in bad.output


def test_benjamini_hochberg_cut_off():
    from radar.signals import bh_threshold

    # k/m·q for m = 4, q = 0.05: 0.0125, 0.025, 0.0375, 0.05
    assert bh_threshold([0.001, 0.03, 0.04, 0.5], 0.05) == 0.001
    assert bh_threshold([0.001, 0.02, 0.03, 0.5], 0.05) == 0.03
    assert bh_threshold([0.2, 0.5], 0.01) == 0.0


def test_chance_spikes_among_many_cells_are_corrected(engine):
    """Many steady cells: with no correction some spike by chance; with FDR only the planted one does."""
    import random

    rng = random.Random(5)
    cells = [(f"cat.c{i}", "hazard.fire", "juris.eu.de") for i in range(40)]
    items, findings = [], []
    for w in range(0, 13):
        day = MONDAY - timedelta(days=7 * w) + timedelta(days=1)
        for ci, cell in enumerate(cells):
            # Poisson(2) a week, seeded: some cells will look high in the signal week by chance.
            k, p, u = 0, math.exp(-2.0), rng.random()
            cdf = p
            while u > cdf:
                k += 1
                p *= 2.0 / k
                cdf += p
            for i in range(k):
                items.append(NoticeItem(source="eu_safety_gate_alerts", source_id=f"w{w}c{ci}n{i}",
                                        url=f"https://example.org/{w}/{ci}/{i}", title=f"Product {w} {ci} {i}", published=day))
                findings.append(cell)
    for i in range(12):
        items.append(NoticeItem(source="eu_safety_gate_alerts", source_id=f"planted{i}", url=f"https://example.org/p{i}",
                                title=f"Planted {i}", published=MONDAY))
        findings.append(cells[0])
    with Session(engine) as session:
        ids = store_items(session, items).notice_ids
        for nid, cell in zip(ids, findings):
            for axis, value in zip(("category", "hazard", "jurisdiction"), cell):
                session.add(Classification(notice_id=nid, notice_version=1, axis=axis, value=value, method="text",
                                           pipeline_version="test"))
        session.commit()
    plain = compute_signals(engine, WEEK, correction="none", p_threshold=0.05)
    corrected = compute_signals(engine, WEEK, correction="fdr", p_threshold=0.05)
    assert [s.category for s in corrected.spikes] == ["cat.c0"]
    assert len(plain.spikes) > len(corrected.spikes)
    # The chance spikes of the uncorrected run are withdrawn by the corrected one.
    assert corrected.removed == len(plain.spikes) - len(corrected.spikes)
    assert [s.category for s in list_signals(engine, week=WEEK, kinds=["spike"])] == ["cat.c0"]
    assert "Benjamini–Hochberg" in corrected.spikes[0].reason
    assert corrected.p_cutoff is not None and corrected.spikes[0].details["p_value"] <= corrected.p_cutoff
