"""Extraction components and derived findings: each finding keeps the span that justified it; bad input
gets a clear note, not a crash."""

from __future__ import annotations

import shutil
import textwrap
from datetime import date
from pathlib import Path

import pytest
import spacy

from crawlers.items import NoticeItem
from nlp.extract import gtin_valid, legal_refs, load_patterns, parse_date_span
from nlp.pipeline import Classifier, Finding
from nlp.taxonomy import DEFAULT_DIRECTORY, Taxonomy
from radar.errors import ConfigError


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(model_dir="")


def notice(**fields) -> NoticeItem:
    base = {"source": "eu_safety_gate_alerts", "source_id": "A12/0001/25", "url": "https://example.test/1",
            "language": "en"}
    return NoticeItem(**{**base, **fields})


def by_axis(findings: list[Finding], axis: str) -> dict[str, Finding]:
    return {f.value: f for f in findings if f.axis == axis}


def assert_spans(item, findings: list[Finding]) -> None:
    for f in findings:
        if f.start is not None:
            assert getattr(item, f.field)[f.start : f.end] == f.evidence, f


# ------------------------------------------------------------------------------- extraction


def test_legal_references_are_canonical_in_any_language():
    text = ("Regulation (EU) 2023/988; Règlement (CE) n° 1907/2006; Richtlinie 2009/48/EG; directive 2001/95/CE; "
            "S.I. 2016 No. 1101; SI 2005/1803; 16 CFR part 1250; 21 C.F.R. § 101.9; 15 U.S.C. 2057; "
            "EN 71-3:2019; EN IEC 62368-1; ISO 8124-1; ASTM F963-17")
    found = [(label, kind) for _, _, label, kind in legal_refs(text)]
    assert found == [
        ("Regulation (EU) 2023/988", "eu_regulation"), ("Regulation (EC) No 1907/2006", "eu_regulation"),
        ("Directive 2009/48/EC", "eu_directive"), ("Directive 2001/95/EC", "eu_directive"),
        ("SI 2016/1101", "uk_si"), ("SI 2005/1803", "uk_si"), ("16 CFR 1250", "us_cfr"), ("21 CFR 101.9", "us_cfr"),
        ("15 U.S.C. 2057", "us_code"), ("EN 71-3:2019", "standard"), ("EN IEC 62368-1", "standard"),
        ("ISO 8124-1", "standard"), ("ASTM F963-17", "standard"),
    ]


def test_full_notice_extraction_keeps_every_span(classifier):
    item = notice(
        title="Shampoo – ANTI-DANDRUFF – Schwarzkopf",
        text=("According to the list of ingredients the product contains butylphenyl methylpropional (BMHCA), which "
              "is forbidden in cosmetic products. The lead content was 120 mg/kg (limit 90 mg/kg). The product does "
              "not comply with the Cosmetic Products Regulation, Regulation (EU) 2019/1020 and EN 71-3. "
              "Barcode: 4015100338447. Model: A191106, batch number L2345. Notified by OPSS after a CPSC recall. "
              "Brand: Glossy Hair. Date of entry into force: 12/04/2024."),
        category_labels=["Cosmetics"], risk_labels=["Chemical"], labels={"risk_level": "Serious risk"},
        gtin="4015100338447", brand="Schwarzkopf", model="A191106",
    )
    findings = classifier.classify(item)
    assert_spans(item, findings)
    legal = by_axis(findings, "legal_ref")
    assert legal["Regulation (EC) No 1223/2009"].evidence == "Cosmetic Products Regulation"
    assert legal["Regulation (EU) 2019/1020"].role == "eu_regulation" and legal["EN 71-3"].role == "standard"
    substances = by_axis(findings, "substance")
    assert substances["substance.bmhca"].evidence == "butylphenyl methylpropional"
    assert substances["substance.lead"].role == "measured 120 mg/kg"
    ids = {(f.value, f.method) for f in findings if f.axis == "identifier"}
    assert {("gtin:4015100338447", "text"), ("gtin:4015100338447", "source_label"), ("model:A191106", "text"),
            ("batch:L2345", "text"), ("model:A191106", "source_label")} <= ids
    assert set(by_axis(findings, "regulator")) == {"reg.uk.opss", "reg.us.cpsc"}
    assert set(by_axis(findings, "brand")) == {"brand:Schwarzkopf", "brand:Glossy Hair"}
    dates = by_axis(findings, "date")
    assert dates["2024-04-12"].role == "effective" and dates["2024-04-12"].evidence == "12/04/2024"
    # Derived: prohibited (banned substance), serious risk, both pointing at their evidence.
    policy = by_axis(findings, "policy")["policy.prohibited"]
    assert policy.method == "rule" and "butylphenyl" in policy.evidence
    risk = by_axis(findings, "risk")["risk.score"]
    assert risk.score >= 0.85 and risk.role == "serious"
    assert not by_axis(findings, "disagreement")  # the text agrees with the labels


def test_gtin_check_digit_and_cues(classifier):
    assert gtin_valid("5060307678208") and not gtin_valid("5060307678209") and gtin_valid("705432001945")
    item = notice(title="Charger", text="EAN 5060307678209 (wrong check digit). UPC 7 05432 00194 5. Order 12345678.",
                  gtin="123")
    findings = classifier.classify(item)
    assert {f.value for f in findings if f.axis == "identifier"} == {"gtin:0705432001945"}
    assert classifier.notes[("invalid_gtin", "123")] >= 1


def test_dates_need_a_cue_and_follow_the_publishers_order(classifier):
    item = notice(source="us_fr_rules", title="Safety Standard for Infant Rockers",
                  text="Published 01/02/2025. This rule is effective March 5, 2025. Comments must be received by "
                       "04/15/2025.", effective_date=date(2025, 3, 5))
    dates = {(f.value, f.role, f.method) for f in classifier.classify(item) if f.axis == "date"}
    assert dates == {("2025-03-05", "effective", "text"), ("2025-04-15", "comment_deadline", "text"),
                     ("2025-03-05", "effective", "source_label")}
    assert parse_date_span("31/02/2024") is None
    assert parse_date_span("3 mars 2024") == "2024-03-03" and parse_date_span("1. Juni 2025") == "2025-06-01"


@pytest.mark.parametrize(("text", "policy"), [
    ("The product is counterfeit and carries a fake CE mark.", "policy.intellectual_property"),
    ("The goods are dual-use items subject to export controls.", "policy.trade_controlled"),
    ("The toy does not bear the required age warning; missing CE marking.", "policy.listing_quality"),
    ("Contrefaçon d'une marque déposée.", "policy.intellectual_property"),
])
def test_policy_classes_from_words(classifier, text, policy):
    item = notice(title="Product", text=text, language="fr" if "Contrefaçon" in text else "en")
    found = by_axis(classifier.classify(item), "policy")
    assert policy in found
    assert found[policy].field == "text" and text[found[policy].start : found[policy].end] == found[policy].evidence


def test_policy_from_category_and_source(classifier):
    assert "policy.restricted" in by_axis(classifier.classify(notice(title="Disposable vape with nicotine", text="")),
                                          "policy")
    csl = classifier.classify(notice(source="us_trade_csl", title="Entity: ACME Trading", text=""))
    assert by_axis(csl, "policy")["policy.trade_controlled"].field == "source"


def test_disagreement_between_labels_and_text_is_recorded(classifier):
    item = notice(title="Toy car with remote control", text="Small parts may detach.", category_labels=["Cosmetics"])
    findings = classifier.classify(item)
    disagreements = [f for f in findings if f.axis == "disagreement"]
    assert disagreements and disagreements[0].value == "cat.toys" and disagreements[0].role == "category"
    assert item.title[disagreements[0].start : disagreements[0].end] == disagreements[0].evidence
    # The labels are kept as the publisher gave them.
    assert by_axis(findings, "category")["cat.cosmetics"].method == "source_label"


def test_risk_score_follows_hazards_and_context(classifier):
    low = by_axis(classifier.classify(notice(title="Washing machine", text="Energy label is wrong.")), "risk")
    high = by_axis(classifier.classify(notice(title="Baby sleeper", text="Risk of suffocation; two deaths reported.")),
                   "risk")
    assert low["risk.score"].score < 0.3 and low["risk.score"].role == "low"
    assert high["risk.score"].score >= 0.85 and high["risk.score"].evidence == "suffocation"
    assert not by_axis(classifier.classify(notice(title="Annual report", text="Nothing to see.")), "risk")


def test_a_category_implies_its_typical_hazard_only_when_none_is_named(classifier):
    item = notice(title="Passenger car – Corsa – Opel", text="")
    findings = classifier.classify(item)
    assert_spans(item, findings)
    inferred = by_axis(findings, "hazard")["hazard.injuries"]
    assert (inferred.method, inferred.role, inferred.score) == ("rule", "inferred", 0.4)
    assert (inferred.field, inferred.evidence) == ("title", "Passenger car")  # the category's span
    assert not by_axis(findings, "risk") and not by_axis(findings, "policy")  # an inference moves neither
    # Stated in the text: only what the text says.
    stated = by_axis(classifier.classify(notice(title="Passenger car – Corsa – Opel", text="Risk of fire.")), "hazard")
    assert set(stated) == {"hazard.fire"} and stated["hazard.fire"].method == "text"
    # The publisher's own category counts; a hazard label stops the inference.
    labelled = by_axis(classifier.classify(notice(title="Corsa", text="", category_labels=["Cosmetics"])), "hazard")
    assert labelled["hazard.chemical"].field == "category_labels" and labelled["hazard.chemical"].role == "inferred"
    assert set(by_axis(classifier.classify(notice(title="Toys", risk_labels=["Fire"])), "hazard")) == {"hazard.fire"}
    # A node without typical hazards inherits its parent's; the most specific category decides.
    assert set(by_axis(classifier.classify(notice(title="Hoverboard", text="")), "hazard")) == {"hazard.injuries"}
    assert set(by_axis(classifier.classify(notice(title="Electric heaters", text="")), "hazard")) == {"hazard.fire"}
    assert not by_axis(classifier.classify(notice(title="Annual report", text="")), "hazard")


def test_cue_words_need_a_cue_noun(classifier):
    hazards = by_axis(classifier.classify(notice(title="Bicycles Recalled Due to Fall and Laceration Hazards",
                                                 text="Prices fall in autumn.")), "hazard")
    assert hazards["hazard.falls"].evidence == "Fall" and hazards["hazard.falls"].field == "title"
    assert "hazard.cuts" in hazards
    assert not by_axis(classifier.classify(notice(title="Prices fall", text="")), "hazard")


def test_toy_modifier_absorbs_the_product_it_modifies(classifier):
    cats = by_axis(classifier.classify(notice(title="Toy Police Cars", text="")), "category")
    assert set(cats) == {"cat.toys"}
    cats = by_axis(classifier.classify(notice(title="Toy with USB charger", text="")), "category")
    assert {"cat.toys", "cat.electrical.chargers"} <= set(cats)


def test_plain_spacy_factories():
    nlp = spacy.blank("en")
    for factory in ("radar_legal_refs", "radar_identifiers", "radar_dates", "radar_brands", "radar_language"):
        nlp.add_pipe(factory)
    nlp.add_pipe("radar_regulators")
    doc = nlp("Directive 2009/48/EC applies. Brand: Acme. EAN 5060307678208. Effective 1 May 2026. Notified by OPSS. "
              "This sentence is plainly written in English for the detector.")
    assert [s.label_ for s in doc.spans["radar_legal_ref"]] == ["Directive 2009/48/EC"]
    assert [s.label_ for s in doc.spans["radar_identifier"]] == ["gtin:5060307678208"]
    assert [(s.text, s._.radar_role) for s in doc.spans["radar_date"]] == [("1 May 2026", "effective")]
    assert [s.label_ for s in doc.spans["radar_brand"]] == ["brand:Acme"]
    assert [s.label_ for s in doc.spans["radar_regulator"]] == ["reg.uk.opss"]
    assert doc._.radar_language.code == "en"


# -------------------------------------------------------------------------------- bad input


def test_empty_notice_is_noted(classifier):
    findings = classifier.classify(notice(title="", text="", source="uk_opss_alerts"))
    assert {f.axis for f in findings} <= {"jurisdiction", "language"}
    assert classifier.notes[("empty", "uk_opss_alerts")] >= 1


def test_unsupported_language_uses_english_words_and_says_so():
    classifier = Classifier.load(model_dir="")
    item = notice(language="sv", title="Leksak (toy) med smådelar",
                  text="Produkten innehåller små delar som kan lossna och orsaka kvävning hos barn. Tillverkad i Kina.")
    findings = classifier.classify(item)
    assert "cat.toys" in by_axis(findings, "category")
    languages = {(f.value, f.role) for f in findings if f.axis == "language"}
    assert ("sv", "declared") in languages and ("sv", "detected") in languages
    assert classifier.notes[("unsupported_language", "sv")] == 1


def test_undeclared_language_is_detected_and_a_wrong_one_overridden():
    classifier = Classifier.load(model_dir="")
    french = ("Le chargeur présente un risque de choc électrique et un risque d'incendie car l'isolation est "
              "insuffisante. Le produit ne satisfait pas aux exigences de la directive basse tension. Les "
              "consommateurs sont invités à ne plus utiliser le produit et à le rapporter au point de vente, où il "
              "leur sera intégralement remboursé. Le fabricant a informé les autorités de surveillance du marché.")
    for declared in (None, "en"):
        findings = classifier.classify(notice(language=declared, title="Chargeur USB", text=french))
        assert "hazard.electric_shock" in by_axis(findings, "hazard"), declared
    assert classifier.notes[("language_override", "en->fr")] == 1
    override = [f for f in findings if f.axis == "language" and f.role == "override"]
    assert override and override[0].value == "fr" and override[0].score >= 0.9


def test_mixed_languages_record_a_secondary_language():
    classifier = Classifier.load(model_dir="")
    text = ("The charger presents a risk of electric shock because the insulation between the primary and the "
            "secondary circuit is insufficient and consumers should stop using it immediately. "
            "Le chargeur présente un risque de choc électrique car l'isolation entre les circuits est "
            "insuffisante et les consommateurs doivent cesser de l'utiliser immédiatement.")
    item = notice(language=None, title="Charger", text=text)
    findings = classifier.classify(item)
    assert_spans(item, findings)
    languages = {f.value: f for f in findings if f.axis == "language"}
    assert {"en", "fr"} <= set(languages)
    assert any(f.role == "secondary" for f in languages.values())
    assert any(kind == "mixed_language" for kind, _ in classifier.notes)


def test_five_megabytes_are_truncated_with_a_note():
    classifier = Classifier.load(model_dir="")
    text = ("Harmless words about nothing in particular. " * 120_000)[:5_000_000] + " electric shock"
    findings = classifier.classify(notice(title="Lamp", text=text))
    assert all(f.method != "text" for f in by_axis(findings, "hazard").values())
    assert "cat.lighting" in by_axis(findings, "category")
    assert classifier.notes[("truncated", "text")] == 1


def test_html_markup_is_classified_and_noted():
    classifier = Classifier.load(model_dir="")
    item = notice(title="<h1>Toy &amp; charger</h1>",
                  text="<p>Risk of <b>electric shock</b>. Complies with <i>EN 71-3</i>.</p><script>alert(1)</script>")
    findings = classifier.classify(item)
    assert_spans(item, findings)
    assert "hazard.electric_shock" in by_axis(findings, "hazard") and "EN 71-3" in by_axis(findings, "legal_ref")
    assert classifier.notes[("markup", "text")] == 1


def _taxonomy_copy(tmp_path: Path) -> Path:
    target = tmp_path / "taxonomy"
    shutil.copytree(DEFAULT_DIRECTORY, target)
    return target


def test_substance_file_typo_and_duplicate_fail_clearly(tmp_path):
    directory = _taxonomy_copy(tmp_path)
    path = directory / "substances.yml"
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace("    cas: [7439-92-1]", "    csa: [7439-92-1]"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"substances\.yml.*substance\.lead.*unknown field 'csa'"):
        Taxonomy.load(directory)
    path.write_text(original + textwrap.dedent("""
      substance.lead:
        label: Lead again
    """).replace("\n", "\n  ").rstrip() + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="duplicate id or key 'substance.lead'"):
        Taxonomy.load(directory)
    path.write_text(original.replace("    cas: [7439-92-1]", "    cas: [7439-92]"), encoding="utf-8")
    with pytest.raises(ConfigError, match="not a CAS registry number"):
        Taxonomy.load(directory)


def test_policy_rule_naming_an_unknown_id_fails_clearly(tmp_path):
    directory = _taxonomy_copy(tmp_path)
    path = directory / "policy_classes.yml"
    path.write_text(path.read_text(encoding="utf-8").replace("cat.ecigarettes,", "cat.ecigarette,", 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"policy\.restricted.*derive rule 1.*'cat\.ecigarette'"):
        Taxonomy.load(directory)
    path.write_text(path.read_text(encoding="utf-8").replace("min_severity: 4", "min_severity: 4, colour: red", 1),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown field"):
        Taxonomy.load(directory)


def test_pattern_files_are_valid_and_a_bad_line_is_named(tmp_path, monkeypatch):
    assert {row["kind"] for row in load_patterns("cues")} >= {"model", "batch", "gtin", "brand", "effective"}
    assert all(row.get("label") for row in load_patterns("legal_names"))
    import nlp.extract as extract

    (tmp_path / "broken.jsonl").write_text('{"pattern": "ok"}\n{not json}\n', encoding="utf-8")
    monkeypatch.setattr(extract, "PATTERNS_DIR", tmp_path)
    extract.load_patterns.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"broken\.jsonl:2: not a JSON object"):
            extract.load_patterns("broken")
    finally:
        extract.load_patterns.cache_clear()
