"""Benchmark of the NLP pipeline: notices per second and peak memory on the real dev files and on long texts.

    .venv/bin/python bench/bench_nlp.py [--repeat 3] [--no-detect] [--train]

Runs on one core (spaCy's blank pipelines and lingua's single-text calls do not spread work), prints
figures, asserts nothing. ``--train`` also trains the text classifier on 80 % of the Safety Gate and
CPSC dev notices and compares it with the rules on the other 20 %.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reference_seconds() -> float:
    """Seconds for a fixed pure-Python loop: how fast this core is now, so figures from a busy or slower
    machine can be compared (about 0.5 s on an idle 2020s core)."""
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - started


def _run(classifier, notices, repeat: int) -> tuple[float, float]:
    """(notices per second over ``repeat`` passes, tracemalloc peak MB of one more pass).

    Memory is traced in a separate pass: tracemalloc slows Python code down several times.
    """
    started = time.perf_counter()
    for _ in range(repeat):
        for _findings in classifier.classify_many(notices):
            pass
    seconds = time.perf_counter() - started
    tracemalloc.start()
    for _findings in classifier.classify_many(notices):
        pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return len(notices) * repeat / seconds, peak / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-detect", action="store_true", help="Skip language identification.")
    parser.add_argument("--train", action="store_true", help="Also train and compare the text classifier.")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from nlp.eval import load_examples
    from nlp.pipeline import Classifier

    classifier = Classifier.load(detect_language=not args.no_detect, model_dir="")
    dataset = load_examples()
    if not dataset.examples:
        print("no real data (../shared/data/real): only the synthetic runs")
    notices = [e.notice for e in dataset.examples]
    chars = sum(len(n.get("title") or "") + len(n.get("text") or "") for n in notices)
    # Warm up: build every language's pipeline and load lingua's models outside the timing.
    list(classifier.classify_many(notices[:50] + [{"title": "x", "text": "y", "language": lang}
                                                   for lang in ("en", "fr", "de", "es", "it", "nl", "pl", "pt")]))
    print(f"pipeline {classifier.version}, language detection {'off' if args.no_detect else 'on'}; "
          f"reference loop {_reference_seconds():.2f} s")
    print(f"peak RSS after warm-up: {_peak_rss_mb():.0f} MB")
    if notices:
        rate, peak = _run(classifier, notices, args.repeat)
        print(f"real dev notices: {len(notices)} notices, {chars / len(notices):.0f} chars on average: "
              f"{rate:,.0f} notices/s, peak traced memory {peak:.1f} MB")
        for source in sorted({e.source for e in dataset.examples}):
            subset = [e.notice for e in dataset.examples if e.source == source]
            rate, _ = _run(classifier, subset, args.repeat)
            print(f"  {source:<16} {len(subset):>5} notices: {rate:,.0f} notices/s")

    base = ("The product contains small magnets that can detach. If swallowed, magnets can cause intestinal "
            "blockage. The toy does not comply with Directive 2009/48/EC and EN 71-1. Made in China. ")
    for count, size in ((200, 5_000), (20, 100_000), (1, 5_000_000)):
        text = (base * (size // len(base) + 1))[:size]
        long_notices = [{"source": "eu_safety_gate_alerts", "language": "en", "title": "Magnetic toy", "text": text}
                        for _ in range(count)]
        rate, peak = _run(classifier, long_notices, 1)
        print(f"synthetic {size:>9,} chars x {count:>3}: {rate:,.1f} notices/s ({rate * size / 1e6:,.1f} M chars/s), "
              f"peak traced memory {peak:.1f} MB")
    print(f"peak RSS: {_peak_rss_mb():.0f} MB; reference loop {_reference_seconds():.2f} s")

    if args.train and dataset.examples:
        from nlp.train import examples_from_eval, train

        examples = examples_from_eval([e for e in dataset.examples if e.source in ("safety_gate", "cpsc")])
        result = train(examples, None, holdout=0.2, epochs=8, max_seconds=300, classifier=classifier)
        print(f"trained on {result.train_size} notices in {result.seconds:.1f} s ({result.epochs} epochs)")
        for axis, rows in result.comparison.items():
            print(f"  held out {rows['rules']['notices']} notices, {axis}: " + "; ".join(
                f"{name} F1 {r['f1']:.3f} macro {r['macro_f1']:.3f}" for name, r in rows.items()))


if __name__ == "__main__":
    main()
