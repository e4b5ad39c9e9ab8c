"""The classifier finds the right category, hazard and jurisdiction, with evidence that points at the text."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import spacy

from crawlers.items import NoticeItem
from nlp.pipeline import MAX_CHARS, PIPELINE_VERSION, Classifier, Finding, build_nlp, pipeline_language

REAL_DATA = Path(__file__).parents[1].parent / "shared/data/real"


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load()


def notice(**fields) -> NoticeItem:
    base = {"source": "eu_safety_gate_alerts", "source_id": "A12/0001/25", "url": "https://example.test/1"}
    return NoticeItem(**{**base, **fields})


def assert_evidence(item, findings: list[Finding]) -> None:
    """Every finding with offsets cuts its evidence out of the field it names; source labels score 1.0."""
    for f in findings:
        if f.method == "text":
            assert f.field in ("title", "text") and f.start is not None, f
        if f.start is not None:
            assert f.field in ("title", "text")
            assert getattr(item, f.field)[f.start : f.end] == f.evidence, f
        else:
            assert f.end is None
        if f.method == "source_label":
            assert f.start is None and f.score == 1.0, f


TOPIC_AXES = ("category", "hazard", "jurisdiction", "severity")


def topics(findings: list[Finding]) -> list[Finding]:
    """The findings on the original four axes (the tests below predate the extraction axes)."""
    return [f for f in findings if f.axis in TOPIC_AXES]


def found(findings: list[Finding], axis: str, method: str | None = None) -> dict[str, Finding]:
    return {f.value: f for f in findings if f.axis == axis and (method is None or f.method == method)}


# ----------------------------------------------------------------------------- text, by language


def test_english_notice(classifier):
    item = notice(
        language="en",
        title="Magnetic building set",
        text=(
            "The product contains small magnets that can easily detach. If a child swallows them, the magnets "
            "could attract each other and cause intestinal blockage or perforation. Choking hazard: small parts. "
            "Made in the People's Republic of China. Notified by Germany; the product was sold in France and Italy."
        ),
    )
    findings = classifier.classify(item)
    assert_evidence(item, findings)
    categories = found(findings, "category", "text")
    assert categories["cat.toys.magnetic"].field == "title"
    assert categories["cat.toys.magnetic"].evidence == "Magnetic building set"
    assert categories["cat.toys.magnetic"].score == 0.8
    assert "cat.toys" not in categories  # the parent is implied, not repeated
    hazards = found(findings, "hazard", "text")
    assert hazards["hazard.choking"].evidence == "Choking hazard"
    assert 0.6 <= hazards["hazard.choking"].score < 0.8
    roles = {(f.value, f.role) for f in findings if f.axis == "jurisdiction" and f.method == "text"}
    assert {("juris.cn", "origin"), ("juris.eu.de", "notified_by"), ("juris.eu.fr", "sold_in")} <= roles
    china = next(f for f in findings if f.value == "juris.cn" and f.method == "text")
    assert china.evidence == "People's Republic of China"
    # The publisher's own jurisdiction comes from the source, not from the text.
    assert Finding("jurisdiction", "juris.eu", 1.0, "source_label", "source", "eu_safety_gate_alerts", role="publisher") in findings


def test_french_notice(classifier):
    item = notice(
        source="fr_dgccrf_rappelconso",
        language="fr",
        title="Rappel : chargeur USB pour trottinette électrique",
        text=(
            "Le chargeur, fabriqué en Chine, présente un risque de choc électrique et un risque d'incendie car "
            "l'isolation est insuffisante. Vendu en France par plusieurs enseignes."
        ),
    )
    findings = classifier.classify(item)
    assert_evidence(item, findings)
    categories = found(findings, "category", "text")
    assert categories["cat.electrical.chargers"].evidence == "chargeur USB"
    assert categories["cat.vehicles.light_electric"].evidence == "trottinette électrique"
    assert "cat.vehicles.cars" not in categories  # French "car" (because) is not the English "car"
    hazards = found(findings, "hazard", "text")
    assert hazards["hazard.electric_shock"].evidence == "choc électrique"
    assert hazards["hazard.fire"].evidence == "risque d'incendie"
    roles = {(f.value, f.role) for f in findings if f.axis == "jurisdiction" and f.method == "text"}
    assert {("juris.cn", "origin"), ("juris.eu.fr", "sold_in")} <= roles


def test_german_notice_with_compounds_and_hyphens(classifier):
    item = notice(
        source="de_baua_alerts",
        language="de",
        title="Kinderspielzeug mit USB-Ladegerät",
        text=(
            "Herkunftsland: China. Das Spielzeug enthält verschluckbare Kleinteile (Erstickungsgefahr). "
            "Das Ladegerät kann einen Stromschlag verursachen. Gemeldet von Deutschland."
        ),
    )
    findings = classifier.classify(item)
    assert_evidence(item, findings)
    categories = found(findings, "category", "text")
    assert categories["cat.toys"].evidence == "Kinderspielzeug" and categories["cat.toys"].field == "title"
    assert categories["cat.electrical.chargers"].evidence == "Ladegerät"  # split off "USB-"
    hazards = found(findings, "hazard", "text")
    assert {"hazard.choking", "hazard.electric_shock"} <= set(hazards)
    roles = {(f.value, f.role) for f in findings if f.axis == "jurisdiction" and f.method == "text"}
    assert {("juris.cn", "origin"), ("juris.eu.de", "notified_by")} <= roles


def test_compound_tail_needs_a_head(classifier):
    findings = classifier.classify(notice(language="de", title="Lichterketten und Weihnachtsschmuck", text=""))
    categories = found(findings, "category")
    assert "cat.lighting.chains" in categories
    assert "cat.jewellery" not in categories  # Weihnachtsschmuck is decoration, listed explicitly
    assert "cat.home" in categories


def test_country_names_are_case_sensitive_and_ambiguous_names_skipped(classifier):
    item = notice(
        source="us_fda_enforcement",
        language="en",
        title="GROUND TURKEY and fine china plates, Chile con carne",
        text="Bone china mugs. MADE IN CHINA.",
    )
    findings = classifier.classify(item)
    assert_evidence(item, findings)
    text_jurisdictions = [f for f in findings if f.axis == "jurisdiction" and f.method == "text"]
    assert [(f.value, f.evidence, f.role) for f in text_jurisdictions] == [("juris.cn", "CHINA", "origin")]


def test_boilerplate_and_negations_are_not_hazards(classifier):
    item = notice(
        source="us_cpsc_recalls",
        language="en",
        title="Acme Recalls Space Heaters Due to Risk of Serious Injury or Death from Fire Hazard",
        text="The heaters can overheat. No incidents or injuries have been reported.",
    )
    hazards = found(classifier.classify(item), "hazard")
    assert set(hazards) == {"hazard.fire"}
    assert hazards["hazard.fire"].field == "title" and hazards["hazard.fire"].evidence == "Fire Hazard"


def test_repeated_mentions_raise_the_score_and_title_wins(classifier):
    item = notice(language="en", title="", text="Fire. The charger can catch fire. Fire again. Fire!")
    fire = found(classifier.classify(item), "hazard")["hazard.fire"]
    assert fire.field == "text" and fire.score == pytest.approx(0.75) and fire.evidence == "Fire" and fire.start == 0
    item = notice(language="en", title="Fire risk", text="fire fire fire fire fire")
    fire = found(classifier.classify(item), "hazard")["hazard.fire"]
    assert fire.field == "title" and fire.score == 0.8


# -------------------------------------------------------------------------------- source labels


def test_source_labels_map_through_crosswalks(classifier):
    item = notice(
        language="en",
        title="Magnetic toy",
        category_labels=["Toys"],
        risk_labels=["Choking, Injuries", "Chemical"],
        country_labels=["Germany", "People's Republic of China", "Sweden"],
        labels={"notifying_country": "Germany", "origin_country": "People's Republic of China",
                "reacting_countries": ["Sweden"], "risk_level": "Serious risk"},
    )
    findings = classifier.classify(item)
    labelled = {(f.axis, f.value, f.field, f.evidence, f.role) for f in findings
                if f.method == "source_label" and f.axis in TOPIC_AXES}
    assert labelled == {
        ("jurisdiction", "juris.eu", "source", "eu_safety_gate_alerts", "publisher"),
        ("category", "cat.toys", "category_labels", "Toys", None),
        ("hazard", "hazard.choking", "risk_labels", "Choking", None),
        ("hazard", "hazard.injuries", "risk_labels", "Injuries", None),
        ("hazard", "hazard.chemical", "risk_labels", "Chemical", None),
        ("severity", "severity.serious", "labels.risk_level", "Serious risk", None),
        ("jurisdiction", "juris.eu.de", "labels.notifying_country", "Germany", "notified_by"),
        ("jurisdiction", "juris.cn", "labels.origin_country", "People's Republic of China", "origin"),
        ("jurisdiction", "juris.eu.se", "labels.reacting_countries", "Sweden", "sold_in"),
    }
    assert all(f.score == 1.0 for f in findings if f.method == "source_label")


def test_risk_level_in_risk_labels_is_a_severity_not_an_unmapped_hazard():
    classifier = Classifier.load()
    item = notice(source="uk_opss_alerts", language="en", title="USB-C wall charger", risk_labels=["Serious"],
                  category_labels=["Electrical appliances and equipment"])
    findings = classifier.classify(item)
    assert found(findings, "severity") == {
        "severity.serious": Finding("severity", "severity.serious", 1.0, "source_label", "risk_labels", "Serious")
    }
    assert "cat.electrical" in found(findings, "category", "source_label")
    assert "cat.electrical.chargers" in found(findings, "category", "text")
    assert not classifier.unmapped


def test_unmapped_label_is_counted_not_guessed():
    classifier = Classifier.load()
    item = notice(source="uk_opss_alerts", language="en", title="Widget",
                  category_labels=["Gizmos", "Other", "Toys"], risk_labels=["Gremlins; Fire"],
                  country_labels=["Atlantis"], labels={"origin_countries": ["Atlantis"]})
    findings = classifier.classify(item)
    assert {f.value for f in topics(findings) if f.method == "source_label"} == {"juris.uk", "cat.toys", "hazard.fire"}
    assert classifier.unmapped == Counter({
        ("uk_opss_alerts", "category", "Gizmos"): 1,
        ("uk_opss_alerts", "hazard", "Gremlins"): 1,
        ("uk_opss_alerts", "jurisdiction", "Atlantis"): 1,  # once per notice, though it is sent twice
    })
    classifier.classify(item)
    assert classifier.unmapped[("uk_opss_alerts", "category", "Gizmos")] == 2
    # A source no publisher claims gets country names only; its category labels are unmapped.
    classifier.classify(notice(source="xx_nobody_news", category_labels=["Toys"], country_labels=["France"]))
    assert classifier.unmapped[("xx_nobody_news", "category", "Toys")] == 1
    assert ("xx_nobody_news", "jurisdiction", "France") not in classifier.unmapped


# --------------------------------------------------------------------------------- robustness


def test_empty_html_and_odd_notices_do_not_crash(classifier):
    assert topics(classifier.classify(notice(title="", text=""))) == [
        Finding("jurisdiction", "juris.eu", 1.0, "source_label", "source", "eu_safety_gate_alerts", role="publisher")
    ]
    html = notice(language="en", title="<h1>Toy &amp; charger</h1>",
                  text="<p>Risk of <b>electric shock</b>.</p><script>alert('fire')</script>")
    findings = classifier.classify(html)
    assert_evidence(html, findings)
    assert {"cat.toys", "cat.electrical.chargers"} <= set(found(findings, "category"))
    assert "hazard.electric_shock" in found(findings, "hazard")
    # Any object or mapping with some of the attributes; None and non-string values are tolerated.
    # The category's typical hazard is inferred (method rule, role inferred) since the text names none.
    assert topics(classifier.classify(SimpleNamespace(title="Toys", text=None))) == [
        Finding("category", "cat.toys", 0.8, "text", "title", "Toys", 0, 4),
        Finding("hazard", "hazard.choking", 0.4, "rule", "title", "Toys", 0, 4, "inferred"),
    ]
    assert found(classifier.classify({"title": "Toys", "language": "en", "category_labels": "Toys",
                                      "source": "uk_opss_alerts", "labels": None}), "category")
    assert classifier.classify(SimpleNamespace()) == []


def test_long_text_is_truncated_not_an_error(classifier):
    text = "harmless words " * (MAX_CHARS // 10) + " electric shock"
    item = notice(language="en", title="Lamp", text=text)
    findings = classifier.classify(item)
    assert "hazard.electric_shock" not in found(findings, "hazard", "text")
    assert "cat.lighting" in found(findings, "category")


def test_language_choice():
    assert pipeline_language("en") == "en"
    assert pipeline_language("EN-gb") == "en"
    assert pipeline_language("fr_FR") == "fr"
    assert pipeline_language("pt-BR") == "xx"
    assert pipeline_language(None) == "xx"
    assert pipeline_language("") == "xx"


def test_unknown_language_uses_english_words_and_every_country_name(classifier):
    item = notice(language="pt", title="Brinquedo magnético (toy)", text="Fabricado na China. Vendido em Deutschland.")
    findings = classifier.classify(item)
    assert_evidence(item, findings)
    assert set(found(findings, "category", "text")) == {"cat.toys"}  # English words only
    assert set(found(findings, "jurisdiction", "text")) == {"juris.cn", "juris.eu.de"}  # names in any language
    assert classifier.nlp("pt").lang == "xx"
    assert classifier.nlp("pt") is classifier.nlp("sv")  # one cached pipeline for every unsupported language


def test_classify_many_matches_classify_and_keeps_order(classifier):
    items = [
        notice(language="en", title="Toy car with button batteries", text="Risk of ingestion."),
        notice(language="fr", title="Poussette", text="Risque de chute."),
        notice(language="de", title="Powerbank", text="Brandgefahr durch Überhitzung."),
        notice(language=None, title="Laser pointer", text="Damage to sight."),
        notice(language="en", title="", text=""),
    ]
    batched = list(classifier.classify_many(items, batch_size=2))
    assert batched == [classifier.classify(item) for item in items]
    assert "cat.childcare.strollers" in found(batched[1], "category")
    assert "cat.batteries.power_banks" in found(batched[2], "category")
    assert "hazard.vision" in found(batched[3], "hazard")
    assert list(classifier.classify_many([])) == []


def test_factories_are_registered_for_plain_spacy():
    nlp = spacy.blank("en")
    nlp.add_pipe("radar_terms", config={"axis": "hazard"})
    nlp.add_pipe("radar_jurisdictions")
    doc = nlp("Made in China: risk of electric shock.")
    assert [(s.text, s.label_) for s in doc.spans["radar_hazard"]] == [("electric shock", "hazard.electric_shock")]
    assert [(s.text, s.label_, s._.radar_role) for s in doc.spans["radar_jurisdiction"]] == [
        ("China", "juris.cn", "origin")
    ]
    with pytest.raises(ValueError, match="category, hazard or substance"):
        spacy.blank("en").add_pipe("radar_terms", config={"axis": "jurisdiction"})


def test_build_nlp_and_version(classifier):
    nlp = build_nlp("nl")
    assert nlp.pipe_names == ["radar_categories", "radar_hazards", "radar_jurisdictions", "radar_substances",
                              "radar_substance_amounts", "radar_regulators", "radar_legal_refs", "radar_identifiers",
                              "radar_brands", "radar_dates"]
    doc = nlp("Kinderspeelgoed met oplader")
    assert {s.label_ for s in doc.spans["radar_category"]} == {"cat.toys", "cat.electrical.chargers"}
    assert classifier.version.startswith(PIPELINE_VERSION + "+tax.")
    assert len(classifier.version) == len(PIPELINE_VERSION) + len("+tax.") + 12


def test_finding_is_a_frozen_record():
    finding = Finding("hazard", "hazard.fire", 0.6, "text", "text", "fire", 3, 7)
    assert finding.as_dict() == {"axis": "hazard", "value": "hazard.fire", "score": 0.6, "method": "text",
                                 "field": "text", "evidence": "fire", "start": 3, "end": 7, "role": None}
    with pytest.raises(AttributeError):
        finding.score = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------------------------- real data


def _safety_gate_rows() -> list[dict]:
    path = REAL_DATA / "eu_safety_gate_rapex" / "safety_gate_alerts.dev.jsonl"
    if not path.exists():
        pytest.skip(f"real data {path} is absent (it lives in ../shared beside the checkout)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.real_data
def test_safety_gate_labels_map_through_the_crosswalk(classifier):
    rows = _safety_gate_rows()
    source = "eu_safety_gate_alerts"
    categories = {r["product_category"].strip() for r in rows if r.get("product_category")}
    risks = {part.strip() for r in rows for part in (r.get("risk_type") or "").split(",") if part.strip()}
    countries = {r[k].strip() for r in rows for k in ("country_of_origin", "notifying_country") if r.get(k)}
    for axis, labels in (("category", categories), ("hazard", risks), ("jurisdiction", countries)):
        mapped = {label for label in labels if classifier.taxonomy.lookup(axis, source, label) is not None}
        assert len(labels) >= 10
        assert len(mapped) / len(labels) >= 0.95, (axis, sorted(labels - mapped))


@pytest.mark.real_data
def test_safety_gate_notices_classify_with_consistent_evidence():
    classifier = Classifier.load()
    rows = _safety_gate_rows()
    items = [
        notice(
            source="eu_safety_gate_alerts",
            language="en",
            title=" – ".join(p for p in (r.get("product_name"), r.get("product_description"), r.get("brand")) if p),
            text="\n\n".join(p for p in (r.get("risk_description"), r.get("measures_authorities")) if p),
            category_labels=[r["product_category"]] if r.get("product_category") else [],
            risk_labels=[p.strip() for p in (r.get("risk_type") or "").split(",") if p.strip()],
            country_labels=[r["country_of_origin"]] if r.get("country_of_origin") else [],
            labels={"origin_country": r.get("country_of_origin"), "notifying_country": r.get("notifying_country")},
        )
        for r in rows
    ]
    results = list(classifier.classify_many(items))
    assert len(results) == len(items)
    for item, findings in zip(items, results):
        assert_evidence(item, findings)
        if item.category_labels:
            assert found(findings, "category", "source_label"), item.category_labels
    # "Unknown" origins are known non-values, not unmapped labels.
    assert sum(classifier.unmapped.values()) <= 0.05 * len(items), classifier.unmapped
