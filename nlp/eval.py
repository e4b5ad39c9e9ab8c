"""Score the NLP pipeline on notices the regulators labelled themselves: P/R/F1 per axis, source and language.

The evaluation never lets a predictor see the label it is scored against: each labelled record becomes a
notice with its title, text and product fields but *empty* ``category_labels``, ``risk_labels``,
``country_labels`` and ``labels``; the gold labels go through the taxonomy crosswalks to ids.

Matching granularity (see docs/nlp.md): category and hazard are scored at the *top level* of the
taxonomy (``cat.toys.magnetic`` counts as ``cat.toys``, ``hazard.chemical.lead`` as ``hazard.chemical``),
because the publishers' own labels mostly live there (Safety Gate's 30-odd categories) and a finer
prediction below the right top-level node is right for a listing rule. A second, *fine* score matches
a predicted id to a gold id when one is the other or its ancestor (micro only). Countries are
scored exactly (``juris.eu.de``). Macro-F1 is the unweighted mean of per-class F1 over the classes that
occur at least MIN_SUPPORT (5) times in the gold labels of that slice (rarer classes and classes only
ever predicted count in micro P/R/F1 and show per class and in the confusions); ``macro_f1_all``
averages over every class, gold ∪ predicted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlp.derive import INFERRED
from nlp.taxonomy import Taxonomy

log = logging.getLogger(__name__)

DEFAULT_REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
"""Labelled real data lives in ../shared/data/real beside the checkout (read-only, not shipped)."""

AXES = ("category", "hazard", "country")
SCORED_AS = {"hazard_inferred": "hazard"}
"""Axes scored against another axis's gold labels. ``hazard`` is what the text says (and a trained model
predicts); ``hazard_inferred`` adds the hazards inferred from the category where nothing names one
(``typical_hazards``) - what the classifier outputs. Kept apart so the precision of what is *read*
stays measured on its own."""
TOPIC_AXES = ("category", "hazard", "hazard_inferred")
"""Axes scored at the top level and the fine level."""
MIN_SUPPORT = 5
"""Macro-F1 averages the classes with at least this many gold labels in the slice: a class seen once or
twice in a dev file swings the mean by a whole point per notice (the others still count in micro P/R/F1
and are listed per class in the JSON)."""
LEVELS = ("top", "fine")
HELDOUT_EVERY = 5
"""One labelled notice in this many is *held out* (tag ``heldout``): anything read off the labelled data to
improve the pipeline (the co-occurrence behind ``typical_hazards``, a word list from the confusions) is read
off the others, the *train* part, and the ``<source>+heldout`` rows show whether it carries over."""

Gold = dict[str, list[tuple[str, ...]]]
"""axis → one tuple per publisher label: the ids its crosswalk gives (any one of them is a match)."""
Prediction = dict[str, set[str]]
Predictor = Callable[[Sequence["Example"]], list[Prediction]]


@dataclass
class Example:
    """One labelled notice: what the predictor may read (``notice``) and what it is scored against (``gold``)."""

    source: str
    """Evaluation source key (safety_gate, cpsc, fda_report, fda_recallradar)."""
    record_id: str
    notice: dict[str, Any]
    """title, text, language, source and product fields; every label field is empty."""
    gold: Gold = field(default_factory=dict)
    """axis (category, hazard, country, severity) → per publisher label, the ids it crosswalks to."""
    raw_labels: dict[str, list[str]] = field(default_factory=dict)
    """The labels as the publisher wrote them (for the confusion report)."""
    tags: tuple[str, ...] = ()
    """Subsets the example also counts in, scored as source "<source>+<tag>" (e.g. safety_gate+risk_text)."""


# --------------------------------------------------------------------------------------- loaders


def _clean(value: Any) -> str:
    return " ".join(str(value).split()) if value not in (None, "") else ""


def _notice(source: str, title: str, text: str, **product: Any) -> dict[str, Any]:
    return {
        "source": source, "title": title, "text": text, "language": "en",
        "category_labels": [], "risk_labels": [], "country_labels": [], "labels": {},
        **{k: v for k, v in product.items() if v},
    }


class _Mapper:
    """Gold labels → taxonomy ids through the crosswalks; counts labels that map nowhere."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        self.unmapped: Counter[tuple[str, str, str]] = Counter()

    def ids(self, axis: str, source: str, labels: Iterable[str]) -> list[tuple[str, ...]]:
        """One tuple of ids per label that maps (a label mapping to two ids, like CPSC's "Fire &
        Fire-Related Burn", is one gold item that either id satisfies)."""
        tax_axis = "jurisdiction" if axis == "country" else axis
        out: list[tuple[str, ...]] = []
        for label in labels:
            label = _clean(label)
            if not label:
                continue
            found = self.taxonomy.lookup(tax_axis, source, label)
            if found is None:
                self.unmapped[(source, axis, label)] += 1
            elif found and tuple(found) not in out:
                out.append(tuple(found))
        return out


def load_safety_gate(path: Path, mapper: _Mapper) -> list[Example]:
    """Safety Gate alerts (JSON lines): product_category, risk_type and country_of_origin are the labels."""
    source = "eu_safety_gate_alerts"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        # As the spider builds it: product – name – brand; description, danger and measures as text.
        title = " – ".join(p for p in (_clean(r.get("product_name")), _clean(r.get("product_description")),
                                        _clean(r.get("brand"))) if p)
        text = "\n\n".join(p for p in (str(r.get("risk_description") or "").strip(),
                                        str(r.get("measures_authorities") or "").strip()) if p)
        risks = [p for p in (r.get("risk_type") or "").split(",") if p.strip()]
        raw = {"category": [_clean(r.get("product_category"))], "hazard": [_clean(p) for p in risks],
               "country": [_clean(r.get("country_of_origin"))]}
        gold = {axis: mapper.ids(axis, source, labels) for axis, labels in raw.items()}
        notice = _notice(source, title, text, product_name=_clean(r.get("product_name")),
                         brand=_clean(r.get("brand")), gtin=_clean(r.get("barcode")),
                         batch=_clean(r.get("batch_number")))
        # Half the rows (the newer export) carry no risk description at all: their text is the title,
        # which names the product but never the hazard. They are scored on their own too.
        tags = ("risk_text",) if str(r.get("risk_description") or "").strip() else ("title_only",)
        out.append(Example("safety_gate", f"{r.get('alert_number')}@{str(r.get('source_commit'))[:7]}", notice,
                           gold, raw, tags))
    return out


_SLUG_TAIL = re.compile(r"\d+$")


def cpsc_title(url: str) -> str:
    """CPSC's press-release title, as its URL slug spells it ("Acme-Recalls-Heaters-Due-to-Fire-Hazard")."""
    if "/Recalls/" not in url:
        return ""
    slug = url.rstrip("/").rsplit("/", 1)[-1]
    return _SLUG_TAIL.sub("", slug.replace("--", " - ").replace("-", " ")).strip()


def load_cpsc(path: Path, mapper: _Mapper) -> list[Example]:
    """CPSC legacy Recalls API: product_types, hazards and countries (of manufacture) are the labels."""
    source = "us_cpsc_recalls"
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for r in data["success"]["results"]:
        descriptions = [_clean(d) for d in r.get("descriptions") or [] if _clean(d)]
        raw = {"category": [_clean(t) for t in r.get("product_types") or []],
               "hazard": [_clean(h) for h in r.get("hazards") or []],
               "country": [_clean(c) for c in r.get("countries") or []]}
        gold = {axis: mapper.ids(axis, source, labels) for axis, labels in raw.items()}
        upcs = r.get("upcs") or []
        notice = _notice(source, cpsc_title(r.get("recall_url") or ""), "\n".join(descriptions),
                         product_name=descriptions[0] if descriptions else None,
                         gtin=_clean(upcs[0]) if isinstance(upcs, list) and upcs else None)
        out.append(Example("cpsc", str(r.get("recall_number")), notice, gold, raw))
    return out


def load_fda_report(path: Path, mapper: _Mapper) -> list[Example]:
    """FDA's own parse of one weekly enforcement report: product-type and classification are the labels."""
    source = "us_fda_enforcement"
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        r = json.loads(line)
        description = _clean(r.get("product-description"))
        title = description[:140]
        text = "\n\n".join(p for p in (_clean(r.get("reason-for-recall")), description, _clean(r.get("code-info"))) if p)
        raw = {"category": [_clean(r.get("product-type"))], "severity": [_clean(r.get("classification"))]}
        gold = {"category": mapper.ids("category", source, raw["category"]),
                "severity": mapper.ids("severity", source, raw["severity"])}
        out.append(Example("fda_report", f"row{i}", _notice(source, title, text), gold, raw))
    return out


def load_fda_recallradar(path: Path, mapper: _Mapper) -> list[Example]:
    """openFDA items of the RecallRadar aggregate: the endpoint (food, drugs, devices) and classification."""
    source = "us_fda_enforcement"
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for r in data.get("recalls") or []:
        if not str(r.get("id", "")).startswith("fda-"):
            continue
        raw = {"category": [_clean(r.get("category"))], "severity": [_clean(r.get("hazard"))]}
        gold = {"category": mapper.ids("category", source, raw["category"]),
                "severity": mapper.ids("severity", source, raw["severity"])}
        notice = _notice(source, _clean(r.get("title")), _clean(r.get("description")), brand=_clean(r.get("brand")))
        out.append(Example("fda_recallradar", str(r["id"]), notice, gold, raw))
    return out


DATASETS: dict[str, tuple[tuple[str, ...], Callable[[Path, _Mapper], list[Example]]]] = {
    "safety_gate": (("eu_safety_gate_rapex", "safety_gate_alerts.dev.jsonl"), load_safety_gate),
    "cpsc": (("cpsc_recalls_legacy_api", "cpsc_recalls.dev.json"), load_cpsc),
    "fda_report": (("openfda_enforcement", "ucm308307.enforcement_report_2012-06-13.jsonl"), load_fda_report),
    "fda_recallradar": (("us_recallradar_aggregate", "recalls.dev.json"), load_fda_recallradar),
}
"""Evaluation source key → (path under the real-data folder, loader)."""


@dataclass
class Dataset:
    examples: list[Example]
    unmapped: Counter
    missing: list[str]
    """Source keys whose file is absent."""


def is_heldout(example: Example) -> bool:
    """Whether the notice is in the fixed held-out part: a hash of its source and record, so the split never
    moves; both exports of one Safety Gate alert ("A12/0001/22@42f2ca7") fall on the same side."""
    record = example.record_id.split("@")[0]
    return int(hashlib.sha256(f"{example.source}/{record}".encode()).hexdigest(), 16) % HELDOUT_EVERY == 0


def load_examples(real_dir: Path | str | None = None, sources: Iterable[str] | None = None,
                  taxonomy: Taxonomy | None = None) -> Dataset:
    """The labelled notices of the chosen sources (all by default); absent files are listed, not an error."""
    from nlp.taxonomy import load_cached

    real = Path(real_dir) if real_dir is not None else DEFAULT_REAL_DATA
    wanted = list(sources) if sources else list(DATASETS)
    unknown = [s for s in wanted if s not in DATASETS]
    if unknown:
        raise ValueError(f"unknown evaluation source(s) {', '.join(unknown)}; use {', '.join(DATASETS)}")
    mapper = _Mapper(taxonomy or load_cached())
    examples: list[Example] = []
    missing = []
    for key in wanted:
        parts, loader = DATASETS[key]
        path = real.joinpath(*parts)
        if not path.is_file():
            missing.append(key)
            continue
        examples.extend(loader(path, mapper))
    for example in examples:
        if is_heldout(example):
            example.tags += ("heldout",)
    return Dataset(examples, mapper.unmapped, missing)


# ------------------------------------------------------------------------------------ predictors


RISK_LEVEL_SEVERITY = (("severity.serious", 0.85), ("severity.high", 0.6), ("severity.medium", 0.3))


def findings_to_prediction(findings: Iterable[Any]) -> Prediction:
    """Axis → ids a classifier's findings predict, from the text only (source-label findings are ignored).

    A notice's categories are those named in its title when the title names any (the body mentions
    other products in passing: "sold with jackets", "for lawn mower engines"), else those of its body.
    ``hazard`` holds the hazards read in the text, ``hazard_inferred`` those plus the ones inferred from
    the category (see :data:`SCORED_AS`).
    """
    out: Prediction = defaultdict(set)
    risk = None
    title_categories = set()
    findings = list(findings)
    for f in findings:
        if f.axis == "category" and f.method in ("text", "model") and f.field == "title":
            title_categories.add(f.value)
    for f in findings:
        if f.method == "source_label":
            continue
        if f.axis == "category" and f.method in ("text", "model"):
            if not title_categories or f.value in title_categories:
                out["category"].add(f.value)
        elif f.axis == "hazard" and f.method in ("text", "model"):
            out["hazard"].add(f.value)
            out["hazard_inferred"].add(f.value)
        elif f.axis == "hazard" and f.role == INFERRED:
            out["hazard_inferred"].add(f.value)
        elif f.axis == "jurisdiction" and f.method == "text" and f.role == "origin":
            out["country"].add(f.value)
        elif f.axis == "risk":
            risk = f.score
    if risk is not None:
        out["severity"].add(next((sid for sid, floor in RISK_LEVEL_SEVERITY if risk >= floor), "severity.low"))
    # The language the pipeline read the notice in (detected, or declared when detection was unsure).
    langs = {f.role: f.value for f in findings if f.axis == "language"}
    language = langs.get("override") or langs.get("declared") or langs.get("detected")
    if language:
        out["language"] = {language}
    return dict(out)


def rules_predictor(classifier: Any = None) -> Predictor:
    """The rule pipeline (nlp.pipeline.Classifier) as a predictor."""
    from nlp.pipeline import Classifier

    classifier = classifier or Classifier.load()

    def predict(examples: Sequence[Example]) -> list[Prediction]:
        return [findings_to_prediction(fs) for fs in classifier.classify_many([e.notice for e in examples])]


    return predict


def model_predictor(model: Any) -> Predictor:
    """A model trained by ``radar nlp train`` (nlp.train.ModelPredictor) as a predictor: it reads the same
    title and text the rules read."""
    from nlp.train import model_text

    def predict(examples: Sequence[Example]) -> list[Prediction]:
        return model.predict_ids([model_text(e.notice.get("title"), e.notice.get("text")) for e in examples])

    return predict


# --------------------------------------------------------------------------------------- scoring


@dataclass
class ClassScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class AxisScore:
    """Scores of one axis on one slice (a source, or a source × language)."""

    axis: str
    level: str
    notices: int = 0
    micro: ClassScore = field(default_factory=ClassScore)
    classes: dict[str, ClassScore] = field(default_factory=lambda: defaultdict(ClassScore))
    confusions: Counter = field(default_factory=Counter)

    min_support: int = MIN_SUPPORT

    @property
    def gold_classes(self) -> list[str]:
        """Classes averaged in macro-F1: those with at least ``min_support`` gold labels."""
        return sorted(c for c, s in self.classes.items() if s.tp + s.fn >= max(1, self.min_support))

    @property
    def macro_f1(self) -> float:
        gold = self.gold_classes
        return sum(self.classes[c].f1 for c in gold) / len(gold) if gold else 0.0

    @property
    def macro_f1_all(self) -> float:
        return sum(s.f1 for s in self.classes.values()) / len(self.classes) if self.classes else 0.0

    def as_dict(self, top_confusions: int = 10) -> dict[str, Any]:
        return {
            "axis": self.axis, "level": self.level, "notices": self.notices,
            "precision": round(self.micro.precision, 4), "recall": round(self.micro.recall, 4),
            "f1": round(self.micro.f1, 4), "macro_f1": round(self.macro_f1, 4),
            "macro_f1_all": round(self.macro_f1_all, 4),
            "classes": {c: {"tp": s.tp, "fp": s.fp, "fn": s.fn, "f1": round(s.f1, 4)}
                        for c, s in sorted(self.classes.items())},
            "confusions": [{"gold": g, "predicted": p, "count": n} for (g, p), n in self.confusions.most_common(top_confusions)],
        }


def _top(taxonomy: Taxonomy, node_id: str) -> str:
    parts = node_id.split(".")
    return ".".join(parts[:2])


def _lineage(taxonomy: Taxonomy, node_id: str) -> set[str]:
    if node_id not in taxonomy:
        return {node_id}
    return {node_id, *taxonomy.ancestors(node_id)}


def score_axis(taxonomy: Taxonomy, axis: str, level: str,
               pairs: Iterable[tuple[list[tuple[str, ...]], set[str]]]) -> AxisScore:
    """P/R/F1 of predicted ids vs gold label groups, one pair per notice that has gold labels on the axis.

    Each gold group is one publisher label; it is found when a prediction matches any of its ids
    (same id at the top level; same id, an ancestor or a descendant at the fine level).
    """
    result = AxisScore(axis, level)
    collapse = axis in TOPIC_AXES and level == "top"
    lineage = level == "fine" and axis in TOPIC_AXES

    def match(g: str, p: str) -> bool:
        return g == p or (lineage and (g in _lineage(taxonomy, p) or p in _lineage(taxonomy, g)))

    for groups, predicted in pairs:
        if not groups:
            continue
        result.notices += 1
        if collapse:
            groups = [tuple(dict.fromkeys(_top(taxonomy, g) for g in group)) for group in groups]
            predicted = {_top(taxonomy, p) for p in predicted}
        hit_gold: set[str] = set()
        missed: set[str] = set()
        hit_pred: set[str] = set()
        for group in dict.fromkeys(groups):
            matched = {p for p in predicted if any(match(g, p) for g in group)}
            if matched:
                hit_pred |= matched
                hit_gold.add(next(g for g in group if any(match(g, p) for p in matched)))
            else:
                missed.add(group[0])
        missed -= hit_gold
        extra = predicted - hit_pred
        for g in hit_gold:
            result.classes[g].tp += 1
        for g in missed:
            result.classes[g].fn += 1
        for p in extra:
            result.classes[p].fp += 1
        result.micro.tp += len(hit_gold)
        result.micro.fn += len(missed)
        result.micro.fp += len(extra)
        for g in missed:
            for p in sorted(extra) or ["∅"]:
                result.confusions[(g, p)] += 1
        if not missed:
            for p in extra:
                result.confusions[("∅", p)] += 1
    return result


@dataclass
class Report:
    """Every score of one evaluation run: slice (source, language) → axis → level → AxisScore."""

    predictor: str
    scores: dict[tuple[str, str], dict[str, dict[str, AxisScore]]]
    notices: dict[str, int]
    unmapped: Counter
    missing: list[str]

    def get(self, source: str, axis: str, level: str = "top", language: str = "all") -> AxisScore | None:
        return self.scores.get((source, language), {}).get(axis, {}).get(level)

    def metric(self, source: str, axis: str, name: str, level: str = "top", language: str = "all") -> float | None:
        score = self.get(source, axis, level, language)
        if score is None or not score.notices:
            return None
        if name in ("precision", "recall", "f1"):
            return getattr(score.micro, name)
        return getattr(score, name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "predictor": self.predictor,
            "notices": self.notices,
            "missing_sources": self.missing,
            "unmapped_gold_labels": [{"source": s, "axis": a, "label": lab, "count": n}
                                     for (s, a, lab), n in self.unmapped.most_common(30)],
            "scores": [
                {"source": source, "language": lang, **score.as_dict()}
                for (source, lang), axes in sorted(self.scores.items())
                for levels in axes.values() for score in levels.values()
            ],
        }


def evaluate(examples: Sequence[Example], predict: Predictor, taxonomy: Taxonomy, *, name: str = "rules",
             languages: Sequence[str] | None = None, unmapped: Counter | None = None,
             missing: list[str] | None = None) -> Report:
    """Scores ``predict`` on ``examples`` per source and per language, every axis with gold labels."""
    predictions = predict(examples)
    if len(predictions) != len(examples):
        raise ValueError(f"the {name} predictor returned {len(predictions)} predictions for {len(examples)} notices")
    if languages is None:
        langs = [next(iter(p.get("language") or []), None) or e.notice.get("language") or "und"
                 for e, p in zip(examples, predictions)]
    else:
        langs = list(languages)
    slices: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        slices[(example.source, "all")].append(i)
        slices[(example.source, langs[i])].append(i)
        for tag in example.tags:
            slices[(f"{example.source}+{tag}", "all")].append(i)
    scores: dict[tuple[str, str], dict[str, dict[str, AxisScore]]] = {}
    for key, indexes in slices.items():
        axes = {axis for i in indexes for axis, ids in examples[i].gold.items() if ids}
        axes |= {axis for axis, gold_axis in SCORED_AS.items() if gold_axis in axes}
        scores[key] = {}
        for axis in sorted(axes):
            gold_axis = SCORED_AS.get(axis, axis)
            # A predictor without the axis (a trained model) predicts it as the axis it is scored as.
            pairs = [(examples[i].gold.get(gold_axis, []),
                      set(predictions[i].get(axis, predictions[i].get(gold_axis, set())))) for i in indexes]
            levels = LEVELS if axis in TOPIC_AXES else ("top",)
            scores[key][axis] = {level: score_axis(taxonomy, axis, level, pairs) for level in levels}
    notices = Counter(e.source for e in examples)
    notices.update(f"{e.source}+{tag}" for e in examples for tag in e.tags)
    return Report(name, scores, dict(notices), unmapped or Counter(), missing or [])


# ---------------------------------------------------------------------------------------- output


def format_table(report: Report, *, confusions: int = 5) -> str:
    """The report as a plain-text table (one line per source × language × axis × level) and confusions."""
    lines = [f"predictor: {report.predictor}   notices: "
             + ", ".join(f"{s} {n}" for s, n in sorted(report.notices.items()))]
    if report.missing:
        lines.append("absent (skipped): " + ", ".join(report.missing))
    header = f"{'source':<22} {'lang':<5} {'axis':<15} {'level':<5} {'n':>5} {'P':>6} {'R':>6} {'F1':>6} {'macroF1':>8} {'classes':>7}"
    lines += ["", header, "-" * len(header)]
    for (source, lang), axes in sorted(report.scores.items(), key=lambda kv: (kv[0][0], kv[0][1] != "all", kv[0][1])):
        for axis, levels in sorted(axes.items()):
            for level, s in levels.items():
                lines.append(f"{source:<22} {lang:<5} {axis:<15} {level:<5} {s.notices:>5} {s.micro.precision:>6.3f} "
                             f"{s.micro.recall:>6.3f} {s.micro.f1:>6.3f} {s.macro_f1:>8.3f} {len(s.gold_classes):>7}")
    if confusions:
        lines += ["", "top confusions (gold → predicted; ∅ = nothing):"]
        for (source, lang), axes in sorted(report.scores.items()):
            if lang != "all":
                continue
            for axis, levels in sorted(axes.items()):
                top = levels["top"].confusions.most_common(confusions)
                if top:
                    lines.append(f"  {source} {axis}: " + "; ".join(f"{g} → {p} ×{n}" for (g, p), n in top))
    if report.unmapped:
        lines += ["", f"gold labels without a crosswalk mapping (not scored): {sum(report.unmapped.values())}, e.g. "
                  + "; ".join(f"{s}/{a} {lab!r}" for (s, a, lab), _ in report.unmapped.most_common(5))]
    return "\n".join(lines)


def report_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2, ensure_ascii=False)


# ------------------------------------------------------------------------------------------ floors


@dataclass(frozen=True)
class Floor:
    source: str
    axis: str
    metric: str
    minimum: float
    level: str = "top"


def load_floors(path: Path | str) -> list[Floor]:
    """Pinned floors from a TOML file: ``[<source>.<axis>]`` tables of ``<metric> = <minimum>``.

    A metric may carry a level suffix (``f1_fine``); without one it is the top level.
    """
    import tomllib

    from radar.errors import ConfigError

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the NLP floors ({exc}); fix the TOML syntax") from exc
    floors = []
    for source, axes in data.items():
        if source.partition("+")[0] not in DATASETS:
            raise ConfigError(f"{path}: unknown source [{source}]; use one of {', '.join(DATASETS)}")
        for axis, metrics in axes.items():
            if not isinstance(metrics, dict):
                raise ConfigError(f"{path}: [{source}.{axis}] must be a table of metric = minimum")
            for name, minimum in metrics.items():
                level = "fine" if name.endswith("_fine") else "top"
                metric = name.removesuffix("_fine")
                if metric not in ("precision", "recall", "f1", "macro_f1", "macro_f1_all"):
                    raise ConfigError(f"{path}: [{source}.{axis}] unknown metric {name!r}; use precision, recall, "
                                      "f1, macro_f1 or macro_f1_all (add _fine for the fine level)")
                if not isinstance(minimum, (int, float)) or not 0 <= minimum <= 1:
                    raise ConfigError(f"{path}: [{source}.{axis}] {name} = {minimum!r} must be a number in 0..1")
                floors.append(Floor(source, axis, metric, float(minimum), level))
    return floors


def check_floors(report: Report, floors: Iterable[Floor]) -> list[str]:
    """One message per floor the report falls below (sources absent from the report are skipped)."""
    failures = []
    for floor in floors:
        if floor.source not in report.notices:
            continue
        value = report.metric(floor.source, floor.axis, floor.metric, floor.level)
        if value is None:
            failures.append(f"{floor.source} {floor.axis}: no {floor.level} score (no labelled notices?)")
        elif value + 1e-9 < floor.minimum:
            failures.append(f"{floor.source} {floor.axis} {floor.metric} ({floor.level}) = {value:.3f} "
                            f"is below its floor {floor.minimum:.3f}")
    return failures


def report_summary(report: Report) -> dict[str, Any]:
    """Headline numbers: source → axis → {f1, macro_f1}, top level, all languages."""
    out: dict[str, Any] = {}
    for (source, lang), axes in report.scores.items():
        if lang == "all":
            out[source] = {axis: {"f1": round(levels["top"].micro.f1, 4), "macro_f1": round(levels["top"].macro_f1, 4)}
                           for axis, levels in axes.items()}
    return out


__all__ = [
    "AXES", "Dataset", "Example", "Floor", "Report", "check_floors", "evaluate", "findings_to_prediction",
    "format_table", "load_examples", "load_floors", "model_predictor", "report_json", "report_summary",
    "rules_predictor", "score_axis",
]
