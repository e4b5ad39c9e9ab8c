"""The README's first command: `radar demo` crawls the bundled samples, stores, classifies, summarises."""

from __future__ import annotations

import json

from click.testing import CliRunner

from radar.cli import main


def test_demo_then_search_by_text_market_category_and_date(sqlite_url):
    runner = CliRunner()
    result = runner.invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "notices stored" in out and "per source:" in out and "per category:" in out and "per market:" in out
    assert f"database: {sqlite_url}" in out
    for source in ("uk_opss_alerts", "eu_safety_gate_alerts", "us_cpsc_recalls"):
        assert f"{source:<28} ok" in out, out

    found = runner.invoke(main, ["search", "charger", "--json"])
    assert found.exit_code == 0, found.output
    hits = json.loads(found.output)["results"]
    assert len(hits) >= 3
    days = [h["published"] for h in hits if h["published"]]
    assert days == sorted(days, reverse=True)  # newest first
    assert all("charger" in (h["title"] + h["snippet"]).lower() for h in hits)
    assert any("[charger" in h["snippet"].lower() for h in hits)  # the match is marked in context

    germany = json.loads(runner.invoke(main, ["search", "charger", "--market", "DE", "--json"]).output)["results"]
    assert germany and all("juris.eu.de" in h["jurisdictions"] for h in germany)
    assert len(germany) < len(hits)

    toys = json.loads(runner.invoke(main, ["search", "--category", "cat.toys", "--since", "2024-01-01", "--json"]).output)
    assert toys["total"] >= 1
    assert all(h["published"] >= "2024-01-01" for h in toys["results"])
    assert all(any(c.startswith("cat.toys") for c in h["categories"]) for h in toys["results"])

    text = runner.invoke(main, ["search", "charger", "--market", "DE"])
    assert text.exit_code == 0 and "of" in text.output.splitlines()[-1]

    again = runner.invoke(main, ["demo"])  # re-running the main job is safe: nothing new, nothing lost
    assert again.exit_code == 0, again.output
    assert "0 new" in again.output and " new," not in again.output.replace("0 new,", "")
    first_total = int(out.split(" notices stored")[0].split()[-1])
    assert f"{first_total} notices stored" in again.output
