"""Benchmark: how much a second crawl of unchanged sources transfers, against the first.

Serves the bundled samples from a local HTTP server, crawls every enabled source twice into a fresh
database, and prints per source the network bytes of each run (SourceRun.bytes: response bodies and
headers as received) and the second as a share of the first. The aim of the sources issue: under 5%.

    .venv/bin/python bench/bench_recrawl.py [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a new SQLite file in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RADAR_DATA_DIR"] = tmp
        os.environ["RADAR_DATABASE_URL"] = args.database_url or f"sqlite:///{tmp}/bench-recrawl.db"
        from crawlers.runner import crawl_subprocess
        from radar.db import get_engine
        from radar.sampleserver import SampleServer
        from radar.summary import last_runs

        engine = get_engine(os.environ["RADAR_DATABASE_URL"])
        runs = []
        with SampleServer() as server:
            for attempt in ("first", "second"):
                started = time.perf_counter()
                result = crawl_subprocess(mirror=server.url)
                if result.returncode != 0:
                    print(result.stderr[-3000:], file=sys.stderr)
                    return 1
                runs.append((attempt, time.perf_counter() - started, last_runs(engine)))
        first, second = runs[0][2], runs[1][2]
        print(f"{'source':<28} {'first bytes':>12} {'second bytes':>13} {'share':>7}  second run")
        for source in sorted(first):
            a, b = first[source], second.get(source)
            b_bytes = b.bytes if b else 0
            share = f"{100 * b_bytes / a.bytes:.2f}%" if a.bytes else "-"
            print(f"{source:<28} {a.bytes:>12,} {b_bytes:>13,} {share:>7}  {b.status if b else '-'}, "
                  f"{b.new if b else 0} new, {b.unchanged if b else 0} unchanged")
        total_a = sum(r.bytes for r in first.values())
        total_b = sum(r.bytes for s, r in second.items() if s in first)
        print(f"{'all sources':<28} {total_a:>12,} {total_b:>13,} {100 * total_b / max(total_a, 1):>6.2f}%  "
              f"(aim: under 5%: {'met' if total_b < 0.05 * total_a else 'NOT met'})")
        print(f"crawl time, child process included: first {runs[0][1]:.1f} s, second {runs[1][1]:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
