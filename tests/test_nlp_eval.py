"""The evaluation scores what it says it scores, never peeks at the labels, and the pinned floors hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nlp.eval import (DATASETS, Example, check_floors, evaluate, findings_to_prediction, format_table, is_heldout,
                      load_examples, load_floors, rules_predictor, score_axis)
from nlp.pipeline import Classifier, Finding
from nlp.taxonomy import load_cached
from radar.errors import ConfigError

REAL_DATA = Path(__file__).parents[1].parent / "shared/data/real"
FLOORS = Path(__file__).parents[1] / "config" / "nlp_floors.toml"


@pytest.fixture(scope="module")
def taxonomy():
    return load_cached()


@pytest.fixture(scope="module")
def classifier():
    return Classifier.load(model_dir="")


def _real() -> Path:
    if not all((REAL_DATA.joinpath(*DATASETS[key][0])).is_file() for key in ("safety_gate", "cpsc")):
        pytest.skip(f"real data is absent from {REAL_DATA} (it lives in ../shared beside the checkout)")
    return REAL_DATA


# ------------------------------------------------------------------------------------ scoring


def test_score_axis_top_level_groups_and_confusions(taxonomy):
    pairs = [
        ([("cat.toys.magnetic",)], {"cat.toys"}),                       # right at the top level
        ([("cat.toys",)], {"cat.vehicles.cars"}),                       # wrong: a confusion
        ([("hazard.fire", "hazard.burns")], set()),                     # missed
        ([], {"cat.cosmetics"}),                                         # no gold: not scored
    ]
    score = score_axis(taxonomy, "category", "top", pairs[:2])
    assert score.notices == 2
    assert (score.micro.tp, score.micro.fp, score.micro.fn) == (1, 1, 1)
    assert score.confusions[("cat.toys", "cat.vehicles")] == 1
    # One label crosswalked to two ids is one gold item that either id satisfies.
    hazards = score_axis(taxonomy, "hazard", "top", [([("hazard.fire", "hazard.burns")], {"hazard.burns"}),
                                                      pairs[2], pairs[3]])
    assert hazards.notices == 2
    assert (hazards.micro.tp, hazards.micro.fn, hazards.micro.fp) == (1, 1, 0)


def test_fine_level_accepts_ancestors_and_descendants(taxonomy):
    pairs = [([("cat.toys",)], {"cat.toys.magnetic"}), ([("cat.toys.magnetic",)], {"cat.toys"}),
             ([("cat.toys.magnetic",)], {"cat.toys.soft"})]
    fine = score_axis(taxonomy, "category", "fine", pairs)
    assert (fine.micro.tp, fine.micro.fp, fine.micro.fn) == (2, 1, 1)


def test_macro_f1_averages_classes_with_enough_support(taxonomy):
    pairs = [([("hazard.fire",)], {"hazard.fire"})] * 5 + [([("hazard.cuts",)], set())]
    score = score_axis(taxonomy, "hazard", "top", pairs)
    assert score.gold_classes == ["hazard.fire"]  # hazard.cuts has 1 gold label: micro only
    assert score.macro_f1 == 1.0
    assert score.macro_f1_all == pytest.approx(0.5)


def test_prediction_reads_text_findings_only_title_first():
    findings = [
        Finding("category", "cat.toys", 1.0, "source_label", "category_labels", "Toys"),
        Finding("category", "cat.vehicles.cars", 0.8, "text", "title", "car", 0, 3),
        Finding("category", "cat.clothing", 0.6, "text", "text", "jacket", 10, 16),
        Finding("hazard", "hazard.fire", 0.6, "text", "text", "fire", 20, 24),
        Finding("jurisdiction", "juris.cn", 0.6, "text", "text", "China", 30, 35, "origin"),
        Finding("jurisdiction", "juris.eu.de", 0.6, "text", "text", "Germany", 40, 47, "notified_by"),
    ]
    pred = findings_to_prediction(findings)
    assert pred["category"] == {"cat.vehicles.cars"}  # the label is not a prediction; the title wins
    assert pred["hazard"] == {"hazard.fire"}
    assert pred["country"] == {"juris.cn"}


def test_inferred_hazards_are_scored_apart_from_the_ones_read():
    findings = [
        Finding("category", "cat.vehicles", 0.8, "text", "title", "Passenger car", 0, 13),
        Finding("hazard", "hazard.injuries", 0.4, "rule", "title", "Passenger car", 0, 13, "inferred"),
    ]
    pred = findings_to_prediction(findings)
    assert "hazard" not in pred and pred["hazard_inferred"] == {"hazard.injuries"}
    read = findings_to_prediction([Finding("hazard", "hazard.fire", 0.6, "text", "text", "fire", 0, 4)])
    assert read["hazard"] == read["hazard_inferred"] == {"hazard.fire"}


def test_hazard_inferred_is_scored_against_the_hazard_labels(taxonomy):
    examples = [Example("cpsc", str(i), {"title": "Car", "text": ""}, {"hazard": [("hazard.injuries",)]})
                for i in range(2)]
    predictions = [{"hazard_inferred": {"hazard.injuries"}}, {"hazard": {"hazard.fire"}}]
    report = evaluate(examples, lambda ex: predictions, taxonomy)
    assert report.metric("cpsc", "hazard", "recall") == 0.0
    # A predictor without the axis (a trained model) is scored on what it predicts as hazards.
    assert report.metric("cpsc", "hazard_inferred", "precision") == 0.5


def test_the_held_out_fifth_is_fixed_and_keeps_both_exports_of_an_alert_together():
    made = [Example("cpsc", str(n), {}) for n in range(1000)]
    held = [e for e in made if is_heldout(e)]
    assert 150 <= len(held) <= 250 and held == [e for e in made if is_heldout(e)]
    assert is_heldout(Example("safety_gate", "A12/0042/22@42f2ca7", {})) == is_heldout(
        Example("safety_gate", "A12/0042/22@f363684", {}))


def test_evaluate_never_shows_the_labels_to_the_predictor(taxonomy):
    seen = []

    def spy(examples):
        for e in examples:
            seen.append(e.notice)
        return [{"category": {"cat.toys"}} for _ in examples]

    examples = [Example("cpsc", "1", {"title": "Toy", "text": "", "category_labels": [], "risk_labels": [],
                                      "country_labels": [], "labels": {}}, {"category": [("cat.toys",)]})]
    report = evaluate(examples, spy, taxonomy)
    assert report.metric("cpsc", "category", "f1") == 1.0
    assert all(not n["category_labels"] and not n["risk_labels"] and not n["labels"] for n in seen)
    with pytest.raises(ValueError, match="returned 0 predictions"):
        evaluate(examples, lambda ex: [], taxonomy)


# ------------------------------------------------------------------------------------- floors


def test_floor_file_is_valid_and_a_drop_is_reported(taxonomy, tmp_path):
    floors = load_floors(FLOORS)
    assert {(f.source, f.axis) for f in floors} >= {("safety_gate", "category"), ("cpsc", "category"),
                                                    ("cpsc", "hazard"), ("safety_gate+risk_text", "hazard")}
    examples = [Example("cpsc", "1", {"title": "x"}, {"category": [("cat.toys",)]})]
    report = evaluate(examples, lambda ex: [{"category": {"cat.vehicles"}}], taxonomy)
    failures = check_floors(report, floors)
    assert any("cpsc category f1" in f and "below its floor" in f for f in failures)
    bad = tmp_path / "floors.toml"
    bad.write_text("[cpsc.category]\nf2 = 0.5\n")
    with pytest.raises(ConfigError, match="unknown metric 'f2'"):
        load_floors(bad)
    bad.write_text("[nowhere.category]\nf1 = 0.5\n")
    with pytest.raises(ConfigError, match="unknown source"):
        load_floors(bad)
    bad.write_text("[cpsc.category\n")
    with pytest.raises(ConfigError, match="TOML"):
        load_floors(bad)


@pytest.mark.real_data
def test_scores_stay_above_the_pinned_floors(taxonomy, classifier):
    """CI's accuracy floor: the rules on the real dev files may not score below config/nlp_floors.toml."""
    dataset = load_examples(_real(), taxonomy=taxonomy)
    report = evaluate(dataset.examples, rules_predictor(classifier), taxonomy, unmapped=dataset.unmapped)
    failures = check_floors(report, load_floors(FLOORS))
    assert not failures, "\n".join(failures) + "\n\n" + format_table(report, confusions=3)
    # Every labelled record was read and nearly every gold label maps.
    assert report.notices["safety_gate"] >= 200 and report.notices["cpsc"] >= 2500
    assert sum(dataset.unmapped.values()) <= 10, dataset.unmapped.most_common(10)
    assert report.get("cpsc", "category", "top", "en").notices > 2000  # the per-language slice exists


@pytest.mark.real_data
def test_cli_eval_prints_a_table_and_json():
    real = _real()
    runner = CliRunner()
    from radar.cli import main

    result = runner.invoke(main, ["nlp", "eval", "--source", "safety_gate", "--data", str(real)])
    assert result.exit_code == 0, result.output
    assert "safety_gate" in result.output and "macroF1" in result.output and "floors: all met" in result.output
    result = runner.invoke(main, ["nlp", "eval", "--source", "safety_gate", "--data", str(real), "--json"])
    data = json.loads(result.output[result.output.index("{"):])
    assert data["predictor"] == "rules" and not data["floor_failures"]
    assert {s["axis"] for s in data["scores"]} >= {"category", "hazard", "country"}


def test_cli_eval_without_data_says_what_to_do(tmp_path):
    from radar.cli import main

    result = CliRunner().invoke(main, ["nlp", "eval", "--data", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert "labelled data folder not found" in result.output


# -------------------------------------------------------------------------------------- train


def test_train_tiny_model_and_compare(tmp_path, classifier):
    from nlp.train import ModelPredictor, TrainExample, train

    toys = ["Wooden toy train with small parts", "Plush toy bear for babies", "Toy car with loose wheels",
            "Building blocks toy set", "Toy doll with detachable eyes", "Stacking toy for toddlers"]
    heaters = ["Electric space heater overheats", "Fan heater with faulty thermostat", "Oil-filled heater radiator",
               "Ceramic heater for bathrooms", "Portable electric heater recall", "Convector heater cable melts"]
    examples = [TrainExample(t, {"cat.toys"}) for t in toys] * 2 + [TrainExample(t, {"cat.electrical"}) for t in heaters] * 2
    result = train(examples, tmp_path / "model", holdout=0.25, epochs=3, max_seconds=20, classifier=classifier)
    assert set(result.labels) == {"cat.toys", "cat.electrical"}
    assert result.train_size == 18 and result.holdout_size == 6
    assert set(result.comparison["category"]) == {"rules", "model", "rules+model"}
    assert set(result.comparison["hazard"]) == {"rules", "model", "rules+model", "rules+inferred"}
    model = ModelPredictor.load(tmp_path / "model")
    assert model.predict_ids(["a plush toy for children"])[0]["category"] == {"cat.toys"}
    # The classifier uses the model only where the rules found nothing, with the title as evidence.
    with_model = Classifier(classifier.taxonomy, model=model)
    findings = with_model.classify({"title": "Wooden train for toddlers", "text": ""})
    model_findings = [f for f in findings if f.method == "model"]
    assert model_findings and model_findings[0].evidence == "Wooden train for toddlers"
    assert with_model.version.endswith("+m")


def test_train_with_nothing_labelled_says_why():
    from nlp.train import TrainExample, train
    from radar.errors import RadarError

    with pytest.raises(RadarError, match="nothing to learn from"):
        train([TrainExample("text", {"cat.toys"})], None)
    with pytest.raises(ConfigError, match="not a trained model folder"):
        from nlp.train import ModelPredictor

        ModelPredictor.load("/nonexistent/model")


def test_examples_from_the_archive(engine):
    """Source-labelled notices in the database teach the model; unlabelled ones are counted."""
    from sqlmodel import Session

    from nlp.train import examples_from_engine
    from radar.models import Classification, Notice

    with Session(engine) as session:
        labelled = Notice(source="eu_safety_gate_alerts", source_id="A1", title="Toy car", text="Small parts.",
                          content_hash="x1")
        unlabelled = Notice(source="uk_which_news", source_id="n1", title="News", text="Chargers.", content_hash="x2")
        session.add_all([labelled, unlabelled])
        session.commit()
        session.add_all([
            Classification(notice_id=labelled.id, notice_version=1, axis="category", value="cat.toys.magnetic",
                           method="source_label", pipeline_version="t"),
            Classification(notice_id=labelled.id, notice_version=1, axis="hazard", value="hazard.choking",
                           method="source_label", pipeline_version="t"),
            Classification(notice_id=unlabelled.id, notice_version=1, axis="category", value="cat.electrical",
                           method="text", pipeline_version="t"),
        ])
        session.commit()
    examples, count = examples_from_engine(engine)
    assert count == 1
    assert [(e.text, e.labels) for e in examples] == [("Toy car\n\nSmall parts.", {"cat.toys", "hazard.choking"})]
