"""The `radar` command: one verb per stage of the pipeline, each usable alone."""

from __future__ import annotations

import json
import logging
import sys
from datetime import date, datetime, timezone

import click

from radar.errors import RadarError

log = logging.getLogger(__name__)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # Scrapy and Twisted narrate every request at INFO; their warnings and errors still show.
    for noisy in ("scrapy", "twisted", "py.warnings", "filelock", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


class RadarGroup(click.Group):
    """Turns every RadarError into one line on stderr and exit status 1, instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RadarError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=RadarGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default: the log_level setting).")
def main(log_level: str | None) -> None:
    """Risk Radar: from regulator notices to reviewable listing-rule changes."""
    from radar.settings import get_settings

    _setup_logging(log_level or get_settings().log_level)


# -- crawl ----------------------------------------------------------------------------------------


@main.command()
@click.argument("sources", nargs=-1)
@click.option("--mirror", metavar="URL", help="Fetch every URL from this local mirror (http://127.0.0.1:PORT/<host>/<path>).")
@click.option("--samples", is_flag=True, help="Serve the bundled sample responses on 127.0.0.1 and crawl those.")
def crawl(sources: tuple[str, ...], mirror: str | None, samples: bool) -> None:
    """Crawl sources and store their notices.

    SOURCES are source names (see `radar sources`); default: every enabled source.
    """
    from crawlers.runner import crawl_subprocess, select_sources
    from radar.db import get_engine
    from radar.sampleserver import SampleServer

    names = [s.name for s in select_sources(sources)]  # validates the names before anything starts
    get_engine()  # migrate once here rather than racing in the child
    if samples:
        with SampleServer() as server:
            code = _run_crawl(crawl_subprocess, names, server.url)
    else:
        code = _run_crawl(crawl_subprocess, names, mirror)
    _print_runs(names)
    if code != 0:
        raise click.ClickException(f"the crawl process exited with status {code}")


def _run_crawl(crawl_subprocess, names, mirror) -> int:
    click.echo(f"crawling {len(names)} source(s): {', '.join(names)}", err=True)
    result = crawl_subprocess(names, mirror=mirror, capture=False)
    return result.returncode


def _print_runs(names) -> None:
    from radar.db import get_engine
    from radar.summary import last_runs

    runs = last_runs(get_engine())
    for name in names:
        run = runs.get(name)
        if run is None:
            click.echo(f"  {name:<28} no run recorded")
            continue
        click.echo(f"  {name:<28} {run.status:<8} {run.records:>5} records ({run.new} new, {run.updated} updated, "
                   f"{run.unchanged} unchanged), {run.errors} errors")
        for message in run.messages[:5]:
            click.echo(f"      ! {message}")


# -- classify -------------------------------------------------------------------------------------


@main.command()
@click.option("--all", "reclassify_all", is_flag=True, help="Classify every notice again, not only new versions.")
def classify(reclassify_all: bool) -> None:
    """Classify notices with the NLP pipeline.

    Only notices not yet classified at their current version, unless --all.
    """
    from radar.classify import classify_pending, pending_count
    from radar.db import get_engine

    engine = get_engine()
    todo = pending_count(engine, reclassify_all)
    with click.progressbar(length=todo, label="classifying", file=sys.stderr) as bar:
        result = classify_pending(engine, reclassify_all=reclassify_all, progress=bar.update)
    click.echo(f"classified {result.notices} notices: {result.findings} findings, "
               f"{sum(result.unmapped.values())} source labels without a taxonomy mapping")


# -- search ---------------------------------------------------------------------------------------


def _parse_day(_ctx, _param, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2024-01-01") from None


@main.command()
@click.argument("query", required=False, default="")
@click.option("--market", multiple=True, help="ISO country code (DE, FR, UK, EU) or jurisdiction id; repeatable.")
@click.option("--category", multiple=True, help="Category id, children included (cat.toys); repeatable.")
@click.option("--hazard", multiple=True, help="Hazard id (hazard.choking); repeatable.")
@click.option("--source", multiple=True, help="Source name; repeatable.")
@click.option("--since", callback=_parse_day, help="Published on or after this date (YYYY-MM-DD).")
@click.option("--until", callback=_parse_day, help="Published on or before this date (YYYY-MM-DD).")
@click.option("--sort", type=click.Choice(["date", "relevance"]), default="date", show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=None, help="Results per page (default: search_page_size).")
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def search(query, market, category, hazard, source, since, until, sort, limit, offset, as_json) -> None:
    """Search stored notices by full text and facets.

    Newest first, with the matching words in context. QUERY is words (prefixes
    match: charger finds chargers), "quoted phrases", word OR word, and
    -excluded words; without QUERY the filters alone select.
    """
    from radar.db import get_engine
    from radar.search import MARK_END, MARK_START, Filters
    from radar.search import search as run_search
    from radar.settings import get_settings

    filters = Filters(
        jurisdictions=[_market_id(m) for m in market], categories=list(category), hazards=list(hazard),
        sources=list(source), since=since, until=until,
    )
    result = run_search(get_engine(), query, filters, sort=sort, limit=limit or get_settings().search_page_size, offset=offset)
    if as_json:
        click.echo(json.dumps({"query": query, "total": result.total, "offset": offset,
                               "results": [h.as_json() for h in result.hits]}, ensure_ascii=False, indent=2))
        return
    if not result.hits:
        click.echo(f"no notices match {query!r}" if query else "no notices match")
        return
    bold = sys.stdout.isatty()
    for hit in result.hits:
        day = hit.published.isoformat() if hit.published else "undated   "
        click.echo(f"{day}  {click.style(hit.title, bold=True) if bold else hit.title}")
        click.echo(f"            {hit.source} {hit.source_id}  {hit.url}")
        where = ", ".join(hit.jurisdictions[:6])
        what = ", ".join(hit.categories[:4] + hit.hazards[:4])
        if where or what:
            click.echo(f"            {what}{'  @ ' + where if where else ''}")
        if hit.snippet:
            start, end = ("\x1b[1m", "\x1b[0m") if bold else ("[", "]")
            click.echo("            " + hit.snippet.replace(MARK_START, start).replace(MARK_END, end))
    shown = f"{offset + 1}-{offset + len(result.hits)}"
    click.echo(f"{shown} of {result.total} notices")


def _market_id(market: str) -> str:
    from nlp.taxonomy import Taxonomy
    from radar.settings import get_settings

    if market.startswith("juris."):
        return market
    found = Taxonomy.load(get_settings().taxonomy_path).jurisdiction_for_market(market)
    if not found:
        raise click.BadParameter(f"unknown market {market!r}; use an ISO code such as DE, FR, UK, EU", param_hint="--market")
    return found


# -- sources --------------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def sources(as_json: bool) -> None:
    """List sources with their health and next run.

    Every source with its last run, status, records, errors and next scheduled run.
    """
    from crawlers.sources import load_sources
    from radar.jobs import cron_trigger
    from radar.db import get_engine
    from radar.settings import get_settings
    from radar.summary import last_runs

    configs = load_sources(get_settings().sources_path)
    runs = last_runs(get_engine())
    now = datetime.now(timezone.utc)
    rows = []
    for name, source in configs.items():
        run = runs.get(name)
        trigger = cron_trigger(source.schedule, "UTC")
        next_run = trigger.get_next_fire_time(None, now) if source.enabled else None
        rows.append({
            "name": name, "title": source.title, "kind": source.kind.value, "jurisdiction": source.jurisdiction,
            "enabled": source.enabled, "schedule": source.schedule,
            "last_run": run.started_at.isoformat(timespec="seconds") if run else None,
            "status": run.status if run else "never run", "records": run.records if run else None,
            "errors": run.errors if run else None, "messages": run.messages if run else [],
            "next_run": next_run.isoformat(timespec="minutes") if next_run else None,
            "licence": source.licence, "attribution": source.attribution,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    click.echo(f"{'source':<26} {'kind':<17} {'last run':<20} {'status':<10} {'records':>7} {'errors':>6}  next run")
    for row in rows:
        click.echo(f"{row['name']:<26} {row['kind']:<17} {(row['last_run'] or '-'):<20} {row['status']:<10} "
                   f"{row['records'] if row['records'] is not None else '-':>7} "
                   f"{row['errors'] if row['errors'] is not None else '-':>6}  {row['next_run'] or 'disabled'}")
        for message in row["messages"][:3]:
            click.echo(f"    ! {message}")


# -- demo -----------------------------------------------------------------------------------------


@main.command()
def demo() -> None:
    """Run the whole pipeline on the bundled samples.

    Serves the bundled sample responses from a local HTTP server, crawls them
    with the real spiders, stores and classifies the notices, and prints a summary.
    """
    from crawlers.runner import crawl_subprocess, select_sources
    from radar.classify import classify_pending
    from radar.db import get_engine
    from radar.sampleserver import SampleServer
    from radar.summary import summarise

    engine = get_engine()
    names = [s.name for s in select_sources()]
    with SampleServer() as server:
        click.echo(f"serving the bundled samples at {server.url}", err=True)
        code = _run_crawl(crawl_subprocess, names, server.url)
    _print_runs(names)
    result = classify_pending(engine)
    click.echo(f"classified {result.notices} notices ({result.findings} findings)")
    summary = summarise(engine)
    click.echo(f"\n{summary.notices} notices stored")
    for title, pairs in (("per source", summary.by_source), ("per category", summary.by_category),
                         ("per market", summary.by_market)):
        click.echo(f"  {title}:")
        for key, count in pairs[:15]:
            click.echo(f"    {count:>5}  {key}")
    click.echo(f"\ndatabase: {engine.url.render_as_string(hide_password=True)}")
    click.echo('try: radar search "charger" --market DE')
    if code != 0:
        raise click.ClickException(f"the crawl process exited with status {code}")


# -- settings and database ------------------------------------------------------------------------


@main.command("settings")
def show_settings() -> None:
    """Show settings, their values and origins.

    Every setting with its value in force, where it came from, and its help.
    """
    from radar.settings import get_settings

    for s in get_settings().describe():
        click.echo(f"{s.name} = {s.value!r}   ({s.origin})")
        click.echo(f"    {s.help}")


@main.group()
def db() -> None:
    """Migrate and inspect the database schema."""


@db.command()
def upgrade() -> None:
    """Apply every pending schema migration (Alembic)."""
    from radar.db import current_revision, make_engine, upgrade as run_upgrade

    engine = make_engine()
    run_upgrade(engine)
    click.echo(f"schema at revision {current_revision(engine)}")


@db.command()
def current() -> None:
    """Print the schema revision of the database and the newest one this code knows."""
    from radar.db import current_revision, head_revision, make_engine

    click.echo(f"database: {current_revision(make_engine())}  code: {head_revision()}")



def _add_command_modules() -> None:
    """Register the verbs of every module in radar/commands (the same way a plugin would)."""
    import importlib
    import pkgutil

    import radar.commands

    for info in sorted(pkgutil.iter_modules(radar.commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"radar.commands.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            main.add_command(command)


_add_command_modules()


if __name__ == "__main__":
    main()
