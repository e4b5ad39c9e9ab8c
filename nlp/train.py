"""Train a small spaCy text classifier from the archive: notices whose source labelled them teach it to
label the ones that came unlabelled (news, legislation, sources without a category field).

The model is ``textcat_multilabel`` with the bag-of-words architecture on ``spacy.blank("xx")``: CPU
only, a few MB, trained in seconds to minutes. Its labels are top-level taxonomy ids (``cat.toys``,
``hazard.fire``) - the level the publishers' labels agree on. Its predictions become findings with
method ``model``, the title as evidence and the probability as score.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

AXES = ("category", "hazard")
TEXT_CHARS = 2000
"""Characters of title + text the model reads (the title and first paragraph carry the topic)."""
THRESHOLD = 0.5
MIN_EXAMPLES_PER_LABEL = 3
"""A label seen fewer times than this in the training notices is left out of the model."""
META_FILE = "radar_model.json"


def top_level(node_id: str) -> str:
    return ".".join(node_id.split(".")[:2])


def model_text(title: str | None, text: str | None) -> str:
    """What the model reads: title, a blank line, the start of the text."""
    return ((title or "").strip() + "\n\n" + (text or "").strip())[:TEXT_CHARS]


@dataclass
class TrainExample:
    text: str
    labels: set[str]
    key: str = ""


@dataclass
class TrainResult:
    output: Path | None
    labels: list[str]
    train_size: int
    holdout_size: int
    epochs: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    comparison: dict[str, Any] = field(default_factory=dict)
    """axis → {"rules": {...}, "model": {...}} micro/macro F1 on the held-out notices (when there are any)."""
    unlabelled: int = 0
    """Notices in the archive without source labels (the ones the model is for)."""


def examples_from_engine(engine: Any, limit: int | None = None) -> tuple[list[TrainExample], int]:
    """(labelled examples, number of unlabelled notices) from the archive's Classification rows.

    A notice's labels are its ``source_label`` classifications on the category and hazard axes, cut to
    the top level; the text is its title and text, never its labels.
    """
    from sqlalchemy import select
    from sqlmodel import Session

    from radar.models import Classification, Notice

    labels: dict[int, set[str]] = {}
    with Session(engine) as session:
        rows = session.execute(
            select(Classification.notice_id, Classification.value)
            .where(Classification.method == "source_label", Classification.axis.in_(AXES))
        )
        for notice_id, value in rows:
            labels.setdefault(notice_id, set()).add(top_level(value))
        out, unlabelled = [], 0
        query = select(Notice.id, Notice.title, Notice.text).order_by(Notice.id)
        if limit:
            query = query.limit(limit)
        for notice_id, title, text in session.execute(query):
            if notice_id in labels:
                out.append(TrainExample(model_text(title, text), labels[notice_id], str(notice_id)))
            else:
                unlabelled += 1
    return out, unlabelled


def split(examples: Sequence[TrainExample], holdout: float, seed: int = 13) -> tuple[list, list]:
    """A seeded shuffle split: (train, held out)."""
    items = list(examples)
    random.Random(seed).shuffle(items)
    cut = int(round(len(items) * (1 - holdout))) if holdout > 0 else len(items)
    return items[:cut], items[cut:]


def build_model(labels: Iterable[str]) -> Any:
    import spacy

    nlp = spacy.blank("xx")
    textcat = nlp.add_pipe("textcat_multilabel", config={
        "threshold": THRESHOLD,
        "model": {"@architectures": "spacy.TextCatBOW.v3", "exclusive_classes": False, "ngram_size": 2,
                  "no_output_layer": False, "length": 262144},
    })
    for label in sorted(labels):
        textcat.add_label(label)
    return nlp


def train_model(examples: Sequence[TrainExample], *, epochs: int = 5, max_seconds: float = 120.0, seed: int = 13,
                progress: Callable[[int, float], None] | None = None) -> tuple[Any, list[float], int]:
    """(nlp, loss per epoch, epochs run) for a model trained on ``examples`` within ``max_seconds``."""
    from spacy.training import Example
    from spacy.util import fix_random_seed, minibatch

    from radar.errors import RadarError

    counts = Counter(label for ex in examples for label in ex.labels)
    labels = sorted(label for label, n in counts.items() if n >= MIN_EXAMPLES_PER_LABEL)
    if not labels:
        raise RadarError(
            f"nothing to learn from: {len(examples)} labelled notices, no label seen {MIN_EXAMPLES_PER_LABEL} times; "
            "crawl and classify sources that label their notices (Safety Gate, CPSC, OPSS) first"
        )
    fix_random_seed(seed)
    nlp = build_model(labels)
    label_set = set(labels)
    data = [Example.from_dict(nlp.make_doc(ex.text), {"cats": {label: float(label in ex.labels) for label in labels}})
            for ex in examples if ex.labels & label_set]
    optimizer = nlp.initialize(lambda: data)
    losses_per_epoch: list[float] = []
    started = time.monotonic()
    rng = random.Random(seed)
    for epoch in range(epochs):
        rng.shuffle(data)
        losses: dict[str, float] = {}
        for batch in minibatch(data, size=32):
            nlp.update(batch, sgd=optimizer, losses=losses)
        losses_per_epoch.append(round(losses.get("textcat_multilabel", 0.0), 4))
        if progress:
            progress(epoch + 1, losses_per_epoch[-1])
        if time.monotonic() - started > max_seconds:
            log.info("training stopped after %d epochs: the %.0f s budget is spent", epoch + 1, max_seconds)
            return nlp, losses_per_epoch, epoch + 1
    return nlp, losses_per_epoch, epochs


def save_model(nlp: Any, output: Path | str, info: dict[str, Any]) -> Path:
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output)
    (output / META_FILE).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    return output


class ModelPredictor:
    """A trained model as findings (method ``model``) and as an evaluation predictor."""

    def __init__(self, nlp: Any, threshold: float = THRESHOLD) -> None:
        self.nlp = nlp
        self.threshold = threshold

    @classmethod
    def load(cls, path: Path | str, threshold: float = THRESHOLD) -> ModelPredictor:
        import spacy

        from radar.errors import ConfigError

        path = Path(path)
        if not (path / "config.cfg").is_file():
            raise ConfigError(f"{path}: not a trained model folder (no config.cfg); run `radar nlp train --output {path}`")
        return cls(spacy.load(path), threshold)

    def scores(self, texts: Iterable[str]) -> list[dict[str, float]]:
        return [dict(doc.cats) for doc in self.nlp.pipe(texts, batch_size=256)]

    def predict_ids(self, texts: Iterable[str]) -> list[dict[str, set[str]]]:
        out = []
        for cats in self.scores(texts):
            pred: dict[str, set[str]] = {}
            for label, p in cats.items():
                axis = "category" if label.startswith("cat.") else "hazard"
                if p >= self.threshold:
                    pred.setdefault(axis, set()).add(label)
            # A notice is about something: the best category counts even below the threshold.
            cat_scores = {k: v for k, v in cats.items() if k.startswith("cat.")}
            if "category" not in pred and cat_scores:
                pred["category"] = {max(cat_scores, key=cat_scores.__getitem__)}
            out.append(pred)
        return out

    def findings(self, title: str, text: str, make: Callable[..., Any]) -> list[Any]:
        """Model findings for one notice: the title (or the text's start) is the evidence span."""
        cats = self.scores([model_text(title, text)])[0]
        field, evidence = ("title", title) if title.strip() else ("text", text[:200])
        return [make("category" if label.startswith("cat.") else "hazard", label, round(p, 3), "model", field,
                     evidence, 0, len(evidence)) for label, p in sorted(cats.items()) if p >= self.threshold]


def compare(holdout: Sequence[TrainExample], model: ModelPredictor, rules: Callable[[Sequence[TrainExample]], list],
            taxonomy: Any) -> dict[str, Any]:
    """Held-out micro/macro F1 (top level) of the rules, the model, and the rules with the model filling
    the axes where the rules found nothing, on the same notices; for hazards also the rules with the
    hazards they infer from the category (``hazard_inferred``: the classifier's own answer to the gap)."""
    from nlp.eval import score_axis

    model_pred = model.predict_ids([ex.text for ex in holdout])
    rule_pred = rules(holdout)
    # The way the classifier uses a model: the rules first, the model where the rules found nothing.
    hybrid = [{axis: set(r.get(axis) or m.get(axis) or set()) for axis in AXES} for r, m in zip(rule_pred, model_pred)]
    out: dict[str, Any] = {}
    for axis in AXES:
        prefix = "cat." if axis == "category" else "hazard."
        gold = [[(label,) for label in sorted(ex.labels) if label.startswith(prefix)] for ex in holdout]
        row = {}
        runs = [("rules", rule_pred, axis), ("model", model_pred, axis), ("rules+model", hybrid, axis)]
        if axis == "hazard":
            runs.append(("rules+inferred", rule_pred, "hazard_inferred"))
        for name, preds, key in runs:
            score = score_axis(taxonomy, axis, "top", [(g, set(p.get(key, set()))) for g, p in zip(gold, preds)])
            row[name] = {"notices": score.notices, "f1": round(score.micro.f1, 4), "macro_f1": round(score.macro_f1, 4)}
        out[axis] = row
    return out


def rules_on_texts(classifier: Any) -> Callable[[Sequence[TrainExample]], list]:
    """The rule pipeline as a predictor over training examples (title and text split back apart)."""
    from nlp.eval import findings_to_prediction

    def predict(examples: Sequence[TrainExample]) -> list:
        notices = []
        for ex in examples:
            title, _, text = ex.text.partition("\n\n")
            notices.append({"title": title, "text": text, "language": "en"})
        return [findings_to_prediction(fs) for fs in classifier.classify_many(notices)]

    return predict


def train(examples: Sequence[TrainExample], output: Path | str | None, *, holdout: float = 0.2, epochs: int = 5,
          max_seconds: float = 120.0, seed: int = 13, classifier: Any = None, unlabelled: int = 0,
          progress: Callable[[int, float], None] | None = None) -> TrainResult:
    """Trains on a split of ``examples``, compares with the rules on the held-out part, saves to ``output``."""
    from nlp.pipeline import Classifier

    started = time.monotonic()
    train_set, held = split(examples, holdout, seed)
    nlp, losses, ran = train_model(train_set, epochs=epochs, max_seconds=max_seconds, seed=seed, progress=progress)
    labels = list(nlp.get_pipe("textcat_multilabel").labels)
    result = TrainResult(None, labels, len(train_set), len(held), ran, 0.0, losses, unlabelled=unlabelled)
    if held:
        classifier = classifier or Classifier.load()
        result.comparison = compare(held, ModelPredictor(nlp), rules_on_texts(classifier), classifier.taxonomy)
    result.seconds = round(time.monotonic() - started, 2)
    if output is not None:
        result.output = save_model(nlp, output, {
            "labels": labels, "train_size": len(train_set), "holdout_size": len(held), "epochs": ran,
            "losses": losses, "comparison": result.comparison, "threshold": THRESHOLD,
        })
    return result


def examples_from_eval(examples: Sequence[Any]) -> list[TrainExample]:
    """Training examples from labelled evaluation notices (nlp.eval.Example), gold ids cut to the top level."""
    out = []
    for ex in examples:
        labels = {top_level(g) for axis in AXES for group in ex.gold.get(axis, []) for g in group[:1]}
        if labels:
            out.append(TrainExample(model_text(ex.notice.get("title"), ex.notice.get("text")), labels,
                                    f"{ex.source}:{ex.record_id}"))
    return out
