"""Incidents: notices about the same product linked across sources by GTIN, brand + model, then text."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlmodel import Session

from crawlers.items import NoticeItem
from radar.incidents import (
    NoticeRecord, find_groups, link_incidents, list_incidents, normalise_brand_model, normalise_gtins,
)
from radar.models import Incident, IncidentMember
from radar.store import store_items


def _store(engine, *items: NoticeItem) -> list[int]:
    with Session(engine) as session:
        result = store_items(session, items)
        session.commit()
        return result.notice_ids


def _item(source: str, sid: str, title: str, **fields) -> NoticeItem:
    fields.setdefault("published", date(2026, 11, 18))
    return NoticeItem(source=source, source_id=sid, url=f"https://example.org/{source}/{sid}", title=title, **fields)


def _counts(engine) -> tuple[int, int]:
    with Session(engine) as session:
        return (session.execute(select(func.count()).select_from(Incident)).scalar_one(),
                session.execute(select(func.count()).select_from(IncidentMember)).scalar_one())


def test_gtin_normalisation():
    assert normalise_gtins("4006381333931") == ["04006381333931"]
    # A UPC-A and the EAN-13 written for it are one item.
    assert normalise_gtins("012345678905") == normalise_gtins("0012345678905")
    assert normalise_gtins("4 006381 333931") == ["04006381333931"]
    assert normalise_gtins("4006381333931, 4006381333948") == ["04006381333931", "04006381333948"]
    assert normalise_gtins("00000000") == [] and normalise_gtins("n/a") == [] and normalise_gtins(None) == []
    assert normalise_brand_model("ACME", "XZ-100") == normalise_brand_model("acme", "xz 100") == "acme|xz100"
    assert normalise_brand_model("Unknown", "XZ-100") is None
    assert normalise_brand_model("Acme", "") is None


def test_one_recall_seen_by_five_regulators_is_one_incident(engine):
    sources = ["eu_safety_gate_alerts", "uk_opss_alerts", "us_cpsc_recalls", "fr_rappelconso_recalls", "au_accc_recalls"]
    gtins = ["4006381333931", "4 006381 333931", "04006381333931", "4006381333931 ", "4006381333931"]
    ids = _store(engine, *[
        _item(src, f"r{i}", f"Recall {i}: magnetic building set", gtin=g) for i, (src, g) in enumerate(zip(sources, gtins))
    ], _item("uk_opss_alerts", "other", "Hair dryer overheats", gtin="5012345678900"))
    result = link_incidents(engine)
    assert result.incidents == 1 and result.linked_notices == 5
    [view] = list_incidents(engine)
    assert view.method == "gtin" and view.confidence == 1.0
    assert view.key == "gtin:04006381333931"
    assert view.sources == sorted(sources)
    assert sorted(m["notice_id"] for m in view.members) == sorted(ids[:5])
    assert all(m["method"] == "gtin" and m["confidence"] == 1.0 for m in view.members)


def test_brand_and_model_link_and_placeholders_do_not(engine):
    _store(
        engine,
        _item("eu_safety_gate_alerts", "a1", "Electric heater", brand="ACME", model="XZ-100"),
        _item("uk_opss_alerts", "b1", "Fan heater risk of fire", brand="Acme", model="xz 100"),
        # Same placeholder brand and same model: not evidence of the same product.
        _item("eu_safety_gate_alerts", "a2", "Toy", brand="Unknown", model="123"),
        _item("uk_opss_alerts", "b2", "Doll", brand="unknown", model="123"),
    )
    link_incidents(engine)
    [view] = list_incidents(engine)
    assert view.method == "brand_model" and view.confidence == 0.9
    assert view.key == "brand-model:acme|xz100"
    assert len(view.members) == 2


def test_text_similarity_links_across_sources_only(engine):
    _store(
        engine,
        _item("eu_safety_gate_alerts", "t1", "Safety Gate alert", product_name="Magnetic building set Magnix 36 pieces"),
        _item("uk_opss_alerts", "t2", "Product recall: Magnix magnetic building set 36 pieces"),
        # Same source, nearly the same name: two notices of one regulator are two events.
        _item("uk_opss_alerts", "t3", "Product recall: Magnix magnetic building set 36 pieces (batch 2)"),
        # Too short to be a product.
        _item("eu_safety_gate_alerts", "s1", "Hair dryer"),
        _item("us_cpsc_recalls", "s2", "Hair dryer"),
        # Alike names, different known brands: different products.
        _item("eu_safety_gate_alerts", "d1", "Cordless hair dryer 2000 watt", brand="Bosch"),
        _item("us_cpsc_recalls", "d2", "Cordless hair dryer 2000 watt", brand="Philips"),
    )
    link_incidents(engine)
    views = list_incidents(engine)
    assert len(views) == 1
    [view] = views
    assert view.method == "text"
    assert 0.76 <= view.confidence <= 0.85
    assert view.sources == ["eu_safety_gate_alerts", "uk_opss_alerts"]
    # t3 links to t1 across sources, so the component holds all three Magnix notices.
    assert len(view.members) == 3


def test_relinking_is_idempotent_and_keeps_the_incident(engine):
    _store(engine, _item("eu_safety_gate_alerts", "g1", "Charger", gtin="4006381333931"),
           _item("uk_opss_alerts", "g2", "USB charger", gtin="4006381333931"))
    first = link_incidents(engine)
    assert first.created == 1
    counts = _counts(engine)
    [before] = list_incidents(engine)
    again = link_incidents(engine)
    assert again.created == 0 and again.removed == 0
    assert _counts(engine) == counts
    # A third source joins: same incident row, one more member.
    _store(engine, _item("us_cpsc_recalls", "g3", "Wall charger", gtin="04006381333931"))
    third = link_incidents(engine)
    assert third.created == 0
    [after] = list_incidents(engine)
    assert after.id == before.id and after.key == before.key
    assert len(after.members) == 3


def test_incident_whose_link_disappears_is_removed_unless_confirmed(engine):
    ids = _store(engine, _item("eu_safety_gate_alerts", "x1", "Kettle", brand="Acme", model="K1"),
                 _item("uk_opss_alerts", "x2", "Kettle", brand="Acme", model="K1"))
    link_incidents(engine)
    assert _counts(engine) == (1, 2)
    # The source corrects the model: the link is gone, and so is the incident.
    _store(engine, _item("uk_opss_alerts", "x2", "Kettle", brand="Acme", model="K2"))
    result = link_incidents(engine)
    assert result.removed == 1
    assert _counts(engine) == (0, 0)
    assert ids


def test_lsh_candidates_find_the_same_groups_as_all_pairs():
    names = [
        "Magnetic building set Magnix 36 pieces", "Magnix magnetic building set with 36 pieces",
        "Children's bunk bed Dreamy oak frame", "Dreamy oak bunk bed for children",
        "Cordless drill Powerline 18V battery", "Powerline 18V cordless drill with battery",
    ]
    fillers = [f"Unrelated product number {i} model {i * 7} colour {c}" for i in range(60) for c in ("red",)]
    records = [NoticeRecord(i + 1, f"source_{i % 2}", title=name, day=date(2026, 11, 1)) for i, name in enumerate(names + fillers)]
    exhaustive = find_groups(records, lsh_min=10_000)
    with_lsh = find_groups(records, lsh_min=2)
    as_sets = lambda groups: sorted(tuple(g.notice_ids) for g in groups)  # noqa: E731
    assert as_sets(exhaustive) == as_sets(with_lsh)
    assert (1, 2) in as_sets(exhaustive) and (3, 4) in as_sets(exhaustive) and (5, 6) in as_sets(exhaustive)


def test_text_links_need_dates_within_the_window():
    records = [
        NoticeRecord(1, "a_src_x", title="Magnetic building set Magnix 36 pieces", day=date(2020, 1, 1)),
        NoticeRecord(2, "b_src_y", title="Magnetic building set Magnix 36 pieces", day=date(2026, 1, 1)),
    ]
    assert find_groups(records, window_days=365) == []
    assert len(find_groups(records, window_days=10_000)) == 1


def test_hostile_text_is_only_data(engine):
    _store(engine, _item("eu_safety_gate_alerts", "h1", "<script>alert(1)</script> magnetic set Magnix 36 pieces"),
           _item("uk_opss_alerts", "h2", "Magnix magnetic set 36 pieces <img src=x onerror=alert(1)>"))
    link_incidents(engine)
    [view] = list_incidents(engine)
    assert "<script>" in view.title  # stored as text; templates escape it


def test_same_gtin_under_unrelated_names_asks_for_confirmation(engine):
    _store(engine, _item("au_accc_recalls", "g1", "Recall", product_name="Glow Naturals Keratin Smoothing Treatment", gtin="9301234567897"),
           _item("us_fda_enforcement", "g2", "Recall", product_name="GlucoTrack Blood Glucose Test Strips", gtin="9301234567897"))
    link_incidents(engine)
    [view] = list_incidents(engine)
    assert view.method == "gtin" and view.confidence == 0.5
