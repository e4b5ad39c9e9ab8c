"""Term patterns live in nlp/patterns/terms/<lang>.jsonl: each language reads its own words, a bad line fails
with its file and line, and a notice mixing languages is read with the words of each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlp.components import plural
from nlp.pipeline import Classifier, Finding
from nlp.taxonomy import TERM_AXES, load_cached
from nlp.terms import TERMS_DIR, languages, load_terms
from radar.errors import ConfigError

LANGUAGES = ("en", "fr", "de", "es", "it", "nl", "pl")


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(model_dir="")


def values(findings: list[Finding], axis: str, method: str = "text") -> set[str]:
    return {f.value for f in findings if f.axis == axis and f.method == method}


def assert_spans(item: dict, findings: list[Finding]) -> None:
    for f in findings:
        if f.start is not None:
            assert item[f.field][f.start : f.end] == f.evidence, f


# ------------------------------------------------------------------------------- shipped files


def test_every_language_has_a_pattern_file_covering_each_axis():
    taxonomy = load_cached()
    assert set(LANGUAGES) <= set(languages())
    for lang in LANGUAGES:
        patterns = load_terms(lang, taxonomy)
        for axis in TERM_AXES:
            nodes = {n.id for n in taxonomy.axis(axis)}
            covered = set(patterns.node_terms(axis))
            assert covered <= nodes
            # Every hazard and substance, and nearly every category, has words in every language.
            share = 0.95 if axis == "category" else 1.0
            assert len(covered) >= share * len(nodes), (lang, axis, sorted(nodes - covered))
        assert len(patterns.axis("category").terms) >= 500, lang
        assert len(patterns.axis("hazard").terms) >= 120, lang


NOTICES = {
    "en": ("Children's jacket", "The drawstrings can trap a child, causing strangulation. The plastic contains DEHP.",
           "cat.clothing.children", "hazard.strangulation", "substance.phthalates.dehp"),
    "fr": ("Jouets en plastique", "Les petites pièces peuvent se détacher et provoquer un étouffement. Le jouet "
           "contient du plomb.", "cat.toys", "hazard.choking", "substance.lead"),
    "de": ("Ladegeräte für Handys", "Wegen unzureichender Isolierung besteht die Gefahr eines Stromschlags. Das "
           "Gehäuse enthält Cadmium.", "cat.electrical.chargers", "hazard.electric_shock", "substance.cadmium"),
    "es": ("Cargadores USB", "El producto presenta riesgo de incendio por sobrecalentamiento. Contiene níquel.",
           "cat.electrical.chargers", "hazard.fire", "substance.nickel"),
    "it": ("Giocattoli magnetici", "I magneti possono staccarsi: rischio di ingestione. Contiene piombo.",
           "cat.toys.magnetic", "hazard.ingestion", "substance.lead"),
    "nl": ("Speelgoedauto's", "Kleine onderdelen kunnen loskomen, waardoor stikgevaar ontstaat. Het plastic bevat "
           "ftalaten.", "cat.toys", "hazard.choking", "substance.phthalates"),
    "pl": ("Piżamy dla dzieci", "Tkanina jest łatwopalna, co stwarza ryzyko oparzeń. Nadruk zawiera formaldehyd.",
           "cat.clothing.sleepwear", "hazard.fire", "substance.formaldehyde"),
}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_language_reads_its_own_words(classifier, lang):
    title, text, category, hazard, substance = NOTICES[lang]
    item = {"source": "eu_safety_gate_alerts", "language": lang, "title": title, "text": text}
    findings = classifier.classify(item)
    assert_spans(item, findings)
    assert category in values(findings, "category"), (lang, values(findings, "category"))
    assert hazard in values(findings, "hazard"), (lang, values(findings, "hazard"))
    assert substance in values(findings, "substance"), (lang, values(findings, "substance"))


def test_french_spanish_and_italian_plurals_are_derived():
    assert plural("jouet", "fr") == "jouets" and plural("bateau", "fr") == "bateaux" and plural("vis", "fr") is None
    assert plural("cargador", "es") == "cargadores" and plural("biberón", "es") == "biberones"
    assert plural("giocattolo", "it") == "giocattoli" and plural("giacca", "it") == "giacche"
    assert plural("gioco", "it") is None  # giochi or gioci: the rule does not guess
    assert plural("juguete magnético", "es") is None  # phrases list their plural themselves
    assert plural("fiets", "nl") is None and plural("lawn mower", "en") == "lawn mowers"


# ---------------------------------------------------------------------------------- bad files


def _load_error(tmp_path: Path, lines: list[str], name: str = "en.jsonl") -> str:
    (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_terms(Path(name).stem, load_cached(), tmp_path)
    return str(info.value)


GOOD = json.dumps({"label": "category", "pattern": "toy", "id": "cat.toys"})


def test_a_line_that_is_not_json_names_file_and_line(tmp_path):
    message = _load_error(tmp_path, [GOOD, '{"label": "category", "pattern": "doll", "id": "cat.toys.soft"'])
    assert f"{tmp_path / 'en.jsonl'}:2: not a JSON object" in message and "fix the line" in message


def test_an_unknown_taxonomy_id_names_file_line_and_fix(tmp_path):
    bad = json.dumps({"label": "category", "pattern": "doll", "id": "cat.toys.dolls"})
    message = _load_error(tmp_path, [GOOD, "", bad])
    assert "en.jsonl:3:" in message and "unknown taxonomy id 'cat.toys.dolls'" in message and "'doll'" in message


@pytest.mark.parametrize("line, expected", [
    ({"label": "hazard", "pattern": "doll", "id": "cat.toys"}, "is a category id but the line's label is 'hazard'"),
    ({"label": "colour", "pattern": "red", "id": "cat.toys"}, "label 'colour' is not an axis"),
    ({"label": "category", "pattern": "toy", "id": "cat.toys", "lang": "en"}, "unknown field(s) lang"),
    ({"label": "category", "pattern": " ", "id": "cat.toys"}, "non-empty string"),
    ({"label": "hazard", "pattern": "no injuries", "kind": "stopp"}, "kind 'stopp' is unknown"),
    ({"label": "hazard", "pattern": "no injuries", "kind": "stop", "id": "hazard.injuries"}, "a stop line has no id"),
    ({"label": "category", "pattern": "-zug", "id": "cat.toys"}, "compound tail '-zug'"),
    ({"label": "category", "pattern": "toys", "id": "cat.toys.magnetic"},
     "pattern 'toys' of 'cat.toys.magnetic' is also a pattern of 'cat.toys' on line 2"),
    ({"label": "category", "pattern": "Toy", "id": "cat.toys"}, "'Toy' of 'cat.toys' repeats line 1"),
])
def test_bad_lines_say_what_to_fix(tmp_path, line, expected):
    message = _load_error(tmp_path, [GOOD, json.dumps({"label": "category", "pattern": "toys", "id": "cat.toys"}),
                                     json.dumps(line)])
    assert "en.jsonl:3:" in message and expected in message, message


def test_missing_language_file_and_bad_file_name(tmp_path):
    (tmp_path / "en.jsonl").write_text(GOOD + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"fr\.jsonl: no term patterns for language 'fr' \(have: en\)"):
        load_terms("fr", load_cached(), tmp_path)
    assert "is not a language code" in _load_error(tmp_path, [GOOD], "english.jsonl")


def test_the_pipeline_reads_its_patterns_from_the_folder_it_is_given(tmp_path):
    (tmp_path / "en.jsonl").write_text(GOOD + "\n" + json.dumps({"label": "hazard", "pattern": "zap",
                                                                "id": "hazard.electric_shock"}) + "\n", encoding="utf-8")
    classifier = Classifier.load(model_dir="", terms_dir=tmp_path, detect_language=False)
    findings = classifier.classify({"language": "en", "title": "Toys", "text": "They zap. Chargers too."})
    assert values(findings, "category") == {"cat.toys"} and values(findings, "hazard") == {"hazard.electric_shock"}
    assert classifier.version != Classifier.load(model_dir="").version
    (tmp_path / "en.jsonl").write_text(GOOD + "\n{broken\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"en\.jsonl:2"):
        Classifier.load(model_dir="", terms_dir=tmp_path).classify({"language": "en", "title": "Toys"})
    assert TERMS_DIR.is_dir()


# ------------------------------------------------------------------------------ mixed languages


def test_english_and_french_notice_reads_each_part_with_its_words(classifier):
    item = {"source": "eu_safety_gate_alerts", "language": "en", "title": "Charger",
            "text": "The charger presents a risk of electric shock because the insulation between the primary and the "
                    "secondary circuit is insufficient and consumers should stop using it immediately. "
                    "Ce jouet présente un risque d'étouffement car de petites pièces peuvent se détacher; les "
                    "consommateurs doivent cesser de l'utiliser immédiatement et le rapporter au magasin."}
    findings = classifier.classify(item)
    assert_spans(item, findings)
    assert {"hazard.electric_shock", "hazard.choking"} <= values(findings, "hazard")
    assert "cat.toys" in values(findings, "category")  # "jouet", a French word
    assert "cat.vehicles.cars" not in values(findings, "category")  # French "car" is "because"
    languages_found = {(f.value, f.role) for f in findings if f.axis == "language"}
    assert ("fr", "secondary") in languages_found
    assert classifier.notes[("mixed_language", "en+fr")] >= 1


def test_german_and_english_notice_reads_each_part_with_its_words(classifier):
    item = {"source": "eu_safety_gate_alerts", "language": "de", "title": "Ladegerät",
            "text": "Das Ladegerät birgt die Gefahr eines Stromschlags, weil die Isolierung zwischen den Stromkreisen "
                    "unzureichend ist und die Verbraucher es nicht mehr benutzen sollten. "
                    "The toy presents a choking hazard because small parts can detach; consumers should stop using "
                    "it and return it to the store for a full refund."}
    findings = classifier.classify(item)
    assert_spans(item, findings)
    assert {"hazard.electric_shock", "hazard.choking"} <= values(findings, "hazard")
    assert {"cat.electrical.chargers", "cat.toys"} <= values(findings, "category")
    toy = next(f for f in findings if f.axis == "category" and f.value == "cat.toys")
    assert toy.field == "text" and toy.evidence == "toy"
