"""CLI verbs of the NLP stage: `radar nlp eval` scores the pipeline on labelled notices, `radar nlp train`
trains a text classifier from the archive."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

SOURCES = ("safety_gate", "cpsc", "fda_report", "fda_recallradar")
DEFAULT_FLOORS = Path(__file__).resolve().parents[2] / "config" / "nlp_floors.toml"


def floors_path() -> Path:
    from radar.settings import get_settings

    configured = get_settings().nlp_floors_path
    return Path(configured) if configured else DEFAULT_FLOORS


def real_data_path() -> Path:
    from nlp.eval import DEFAULT_REAL_DATA
    from radar.settings import get_settings

    configured = get_settings().nlp_real_data_dir
    return Path(configured) if configured else DEFAULT_REAL_DATA


@click.group("nlp")
def nlp_group() -> None:
    """Measure and train the NLP stage (categories, hazards, countries)."""


@nlp_group.command("eval")
@click.option("--source", "sources", multiple=True, type=click.Choice(SOURCES),
              help="Score only this labelled source (repeatable; default: all present).")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="Score a model trained by `radar nlp train` instead of the rules.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of the labelled real data (default: the nlp_real_data_dir setting, ../shared/data/real).")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare with the floors in config/nlp_floors.toml and exit 1 below one.")
@click.option("--confusions", type=click.IntRange(0), default=5, show_default=True, help="Top confusions per axis.")
def eval_command(sources: tuple[str, ...], model_dir: Path | None, data_dir: Path | None, as_json: bool, check: bool,
                 confusions: int) -> None:
    """Score the pipeline on notices the regulators labelled themselves.

    Each labelled record becomes a notice with its title, text and product
    fields but no labels; the prediction is compared with the publisher's
    own category, risk type, country of origin (and FDA classification)
    mapped through the taxonomy crosswalks. Prints precision, recall, F1
    and macro-F1 per source, language and axis, and the top confusions.
    """
    from nlp.eval import check_floors, evaluate, format_table, load_examples, load_floors, rules_predictor
    from nlp.taxonomy import load_cached
    from radar.errors import ConfigError

    real = data_dir or real_data_path()
    if not real.is_dir():
        raise ConfigError(f"{real}: labelled data folder not found; pass --data or set RADAR_NLP_REAL_DATA_DIR")
    taxonomy = load_cached()
    dataset = load_examples(real, sources or None, taxonomy)
    if not dataset.examples:
        raise ConfigError(f"{real}: none of the labelled files ({', '.join(dataset.missing)}) is there")
    if model_dir is not None:
        from nlp.eval import model_predictor
        from nlp.train import ModelPredictor

        predict, name = model_predictor(ModelPredictor.load(model_dir)), f"model {model_dir}"
    else:
        predict, name = rules_predictor(), "rules"
    click.echo(f"scoring {len(dataset.examples)} labelled notices with the {name} ...", err=True)
    report = evaluate(dataset.examples, predict, taxonomy, name=name, unmapped=dataset.unmapped,
                      missing=dataset.missing)
    failures = check_floors(report, load_floors(floors_path())) if check and model_dir is None else []
    if as_json:
        data = report.as_dict()
        data["floor_failures"] = failures
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        click.echo(format_table(report, confusions=confusions))
        if check and model_dir is None:
            click.echo("")
            click.echo("floors: " + ("all met" if not failures else f"{len(failures)} below their floor"))
            for failure in failures:
                click.echo(f"  BELOW FLOOR  {failure}")
    if failures:
        sys.exit(1)


@nlp_group.command("train")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Folder to save the model in (default: <data_dir>/nlp_model).")
@click.option("--epochs", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--max-seconds", type=click.FloatRange(1), default=300, show_default=True,
              help="Stop after the epoch that crosses this time budget.")
@click.option("--holdout", type=click.FloatRange(0, 0.9), default=0.2, show_default=True,
              help="Share of the labelled notices kept out of training to compare the model with the rules.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Read at most this many notices.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train_command(output: Path | None, epochs: int, max_seconds: float, holdout: float, limit: int | None,
                  as_json: bool) -> None:
    """Train a text classifier from the archive's source-labelled notices.

    Notices whose source labelled them (Classification rows with method
    source_label on the category and hazard axes, cut to the top level)
    teach a small spaCy textcat_multilabel model (bag of words, CPU) to
    label notices that came without labels. A held-out share is scored
    with the rules, the model, and the rules with the model filling the
    gaps. Set nlp_model_dir to the output folder to use the model in
    `radar classify`.
    """
    from nlp.train import examples_from_engine, train
    from radar.db import get_engine
    from radar.settings import get_settings

    engine = get_engine()
    examples, unlabelled = examples_from_engine(engine, limit)
    click.echo(f"{len(examples)} labelled notices to learn from, {unlabelled} unlabelled ones to label", err=True)
    output = output or get_settings().data_path / "nlp_model"
    result = train(examples, output, holdout=holdout, epochs=epochs, max_seconds=max_seconds, unlabelled=unlabelled,
                   progress=lambda epoch, loss: click.echo(f"  epoch {epoch}: loss {loss:.4f}", err=True))
    if as_json:
        click.echo(json.dumps({**result.__dict__, "output": str(result.output)}, indent=2, default=str))
        return
    click.echo(f"trained on {result.train_size} notices ({len(result.labels)} labels) in {result.seconds:.1f} s, "
               f"{result.epochs} epochs; saved to {result.output}")
    for axis, rows in result.comparison.items():
        click.echo(f"held out ({rows['rules']['notices']} notices), {axis}: " + "; ".join(
            f"{name} F1 {r['f1']:.3f} macro {r['macro_f1']:.3f}" for name, r in rows.items()))
    if not result.comparison:
        click.echo("no held-out notices: nothing to compare with the rules (use --holdout)")


COMMANDS = [nlp_group]
