"""CLI verbs of the radar stages: incidents, signals, propose, impact, review and rules check."""

from __future__ import annotations

import json
import sys

import click


def _engine():
    from radar.db import get_engine

    return get_engine()


def _dump(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _print_diff(diff: str) -> None:
    colour = sys.stdout.isatty()
    for line in diff.splitlines():
        if colour and line.startswith("+") and not line.startswith("+++"):
            click.secho(line, fg="green")
        elif colour and line.startswith("-") and not line.startswith("---"):
            click.secho(line, fg="red")
        else:
            click.echo(line)


# -- incidents ------------------------------------------------------------------------------------------


@click.command("incidents")
@click.option("--no-link", is_flag=True, help="List the stored incidents without linking notices again first.")
@click.option("--min-sources", type=click.IntRange(1), default=1, show_default=True, help="Only incidents seen by this many sources.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def incidents_command(no_link: bool, min_sources: int, limit: int, as_json: bool) -> None:
    """Link notices about the same product into incidents.

    Links by GTIN (confidence 1.0), then brand + model (0.9), then product-name
    similarity across sources (rapidfuzz), and lists the incidents, most
    sources first. Safe to re-run: nothing is duplicated.
    """
    from radar.incidents import link_incidents, list_incidents

    engine = _engine()
    if not no_link:
        result = link_incidents(engine)
        click.echo(f"linked {result.linked_notices} of {result.notices} notices into {result.incidents} incidents "
                   f"({result.created} new, {result.updated} updated, {result.removed} removed)", err=True)
    views = list_incidents(engine, min_sources=min_sources, limit=limit)
    if as_json:
        _dump([{**v.__dict__, "sources": v.sources} for v in views])
        return
    if not views:
        click.echo("no incidents")
        return
    for v in views:
        click.echo(f"#{v.id}  {v.title or '(untitled)'}")
        click.echo(f"      {v.method} {v.confidence:.2f}  key {v.key}  seen by {len(v.sources)} source(s): {', '.join(v.sources)}"
                   + (f"  confirmed by {v.confirmed_by}" if v.confirmed_by else ""))
        for m in v.members:
            click.echo(f"      - notice {m['notice_id']:<6} {m['source']:<26} {m['published'] or 'undated':<10} "
                       f"{m['method']} {m['confidence']:.2f}  {m['title'][:80]}")


# -- signals -------------------------------------------------------------------------------------------------


@click.command("signals")
@click.option("--week", metavar="YYYY-Www", help="ISO week, e.g. 2026-W47 (default: the last complete week).")
@click.option("--no-link", is_flag=True, help="Use the stored incidents as they are instead of linking notices first.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def signals_command(week: str | None, no_link: bool, as_json: bool) -> None:
    """Compute the week's signals: spikes, new laws, dates, incidents.

    Spikes are weekly incident counts per category x hazard x jurisdiction
    tested against the trailing baseline (one-sided Poisson, p below
    signal_spike_p and at least signal_spike_min_count incidents). Each
    signal says why it fired and which notices it rests on. Safe to re-run.
    """
    from radar.incidents import link_incidents
    from radar.signals import compute_signals

    engine = _engine()
    if not no_link:
        link_incidents(engine)
    result = compute_signals(engine, week)
    if as_json:
        _dump({"week": result.week, "baseline_weeks": result.baseline_weeks, "cells_tested": result.cells_tested,
               "notes": result.notes,
               "signals": [{"id": s.id, "key": s.key, "kind": s.kind, "week": s.week, "category": s.category,
                            "hazard": s.hazard, "jurisdiction": s.jurisdiction, "count": s.count, "baseline": s.baseline,
                            "score": s.score, "due": s.due, "reason": s.reason, "notice_ids": s.notice_ids}
                           for s in result.signals]})
        return
    click.echo(f"signals for {result.week}: {len(result.spikes)} spikes ({result.cells_tested} cells tested against "
               f"{result.baseline_weeks} baseline weeks), {len(result.legislation)} legislation, "
               f"{len(result.incidents)} incidents, {len(result.deadlines)} upcoming dates")
    for note in result.notes:
        click.echo(f"  note: {note}")
    for s in result.signals:
        label = s.kind if s.kind != "deadline" else f"deadline {s.due.isoformat() if s.due else ''}"
        click.echo(f"  #{s.id:<5} {label:<20} {s.reason}")
        if s.notice_ids:
            shown = ", ".join(str(i) for i in s.notice_ids[:12])
            click.echo(f"         notices: {shown}{' …' if len(s.notice_ids) > 12 else ''}")


# -- propose -----------------------------------------------------------------------------------------------


@click.command("propose")
@click.option("--policy", type=click.Path(dir_okay=False), help="Policy file to draft against (default: the policy_rules_path setting).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def propose_command(policy: str | None, as_json: bool) -> None:
    """Draft policy-rule changes from signals and notices.

    Each proposal is a unified diff of the policy file with a rationale, the
    evidence notices and the signals behind it. Notices a rule already
    covers produce none. Proposals are stored for review; the policy file is
    never changed here. Drafting twice stores each proposal once.
    """
    from radar.drafting import draft_proposals

    result = draft_proposals(_engine(), path=policy)
    if as_json:
        _dump({"notices_considered": result.notices_considered, "covered": result.covered,
               "out_of_scope": result.out_of_scope, "unclassified": result.unclassified, "created": result.created,
               "refreshed": result.refreshed, "unchanged": result.unchanged, "superseded": result.superseded,
               "skipped": dict(result.skipped),
               "proposals": [{"id": p.id, "kind": p.kind, "rule_id": p.rule_id, "title": p.title, "status": p.status,
                              "evidence_notice_ids": p.evidence_notice_ids, "signal_ids": p.signal_ids}
                             for p in result.proposals]})
        return
    click.echo(f"{result.notices_considered} notices considered: {result.covered} already covered, "
               f"{result.out_of_scope} outside the policy's markets, {result.unclassified} without a category")
    click.echo(f"{len(result.proposals)} proposal(s): {result.created} new, {result.refreshed} re-drafted, "
               f"{result.unchanged} unchanged, {result.superseded} older drafts marked stale")
    for reason, count in result.skipped.items():
        click.echo(f"  not drafted ({count}): {reason}")
    for p in result.proposals:
        click.echo(f"  #{p.id:<5} {p.status:<8} {p.title}  ({len(p.evidence_notice_ids)} notices)")
    if result.proposals:
        click.echo("review with: radar review show ID")


# -- impact ------------------------------------------------------------------------------------------------


@click.command("impact")
@click.argument("proposal_id", type=int)
@click.option("--catalogue", metavar="PATH|URL", help="Parquet, CSV or JSON lines file, or a SQL URL with --table "
              "(default: the impact_catalogue setting, else the generated demo catalogue).")
@click.option("--table", help="Table of listings, for a SQL --catalogue.")
@click.option("--budget", type=click.IntRange(1), default=None, help="Listings matched exactly; beyond it a stratified sample.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample, so an estimate can be repeated.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def impact_command(proposal_id: int, catalogue: str | None, table: str | None, budget: int | None, seed: int,
                   as_json: bool) -> None:
    """Estimate how many listings a proposal would hit.

    Listings hit, how many of those current rules already hit, split by
    market and category, top sellers, and example hits with the matching
    terms marked. Exact within the budget, else a stratified sample with a
    95% confidence interval. The estimate is stored with the proposal.
    """
    from radar.impact_run import run_impact

    row = run_impact(_engine(), proposal_id, catalogue, budget=budget, seed=seed, table=table)
    if as_json:
        _dump(row.model_dump())
        return
    d = row.details
    click.echo(f"impact estimate #{row.id} of proposal {proposal_id} on {row.catalogue}")
    click.echo(f"  {row.method}")
    if row.exact:
        click.echo(f"  listings hit: {row.hits:,}  already hit by current rules: {row.already_hit:,}  newly hit: {row.newly_hit:,}")
    else:
        low, high = d.get("hits_ci", [row.hits_low, row.hits_high])
        nlow, nhigh = d.get("newly_hit_ci", [None, None])
        click.echo(f"  listings hit: about {row.hits:,} (95% CI {low:,}–{high:,}); newly hit about {row.newly_hit:,} "
                   f"(95% CI {nlow:,}–{nhigh:,}); already hit about {row.already_hit:,}")
    for title, key in (("by market", "by_market"), ("by category", "by_category")):
        tallies = sorted((d.get(key) or {}).items(), key=lambda kv: -kv[1]["hits"])
        if tallies:
            click.echo(f"  {title}: " + ", ".join(f"{k} {v['hits']:,} ({v['newly_hit']:,} new)" for k, v in tallies[:10]))
    sellers = d.get("top_sellers") or []
    if sellers:
        click.echo("  top sellers: " + ", ".join(f"{s} {n:,}" for s, n in sellers[:10]))
    for ex in (d.get("examples") or [])[:20]:
        click.echo(f"    {'NEW ' if ex.get('newly_hit') else '    '}{ex.get('market', ''):<3} {ex.get('highlighted', '')[:140]}")


# -- review ------------------------------------------------------------------------------------------------


@click.group("review")
def review_group() -> None:
    """List, show, accept, edit or reject proposals; show history."""


@review_group.command("list")
@click.option("--status", type=click.Choice(["pending", "accepted", "rejected", "stale", "all"]), default="pending", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def review_list(status: str, as_json: bool) -> None:
    """List proposals (default: those waiting for review)."""
    from radar.drafting import list_proposals

    rows = list_proposals(_engine(), status=None if status == "all" else status)
    if as_json:
        _dump([{"id": p.id, "kind": p.kind, "rule_id": p.rule_id, "title": p.title, "status": p.status,
                "evidence_notice_ids": p.evidence_notice_ids, "signal_ids": p.signal_ids, "created_at": p.created_at}
               for p in rows])
        return
    if not rows:
        click.echo(f"no {status if status != 'all' else ''} proposals".replace("  ", " "))
        return
    for p in rows:
        click.echo(f"#{p.id:<5} {p.status:<9} {p.kind:<17} {p.title}  ({len(p.evidence_notice_ids)} notices)")


@review_group.command("show")
@click.argument("proposal_id", type=int)
@click.option("--policy", type=click.Path(dir_okay=False), help="Policy file (default: the policy_rules_path setting).")
def review_show(proposal_id: int, policy: str | None) -> None:
    """Show a proposal: rationale, evidence, impact and diff."""
    from radar.impact_run import latest_impact
    from radar.review import get_proposal, history, proposal_state

    engine = _engine()
    p = get_proposal(engine, proposal_id)
    click.echo(f"proposal #{p.id}: {p.title}")
    click.echo(f"  kind {p.kind}, rule {p.rule_id}, status {p.status}, drafted {p.created_at:%Y-%m-%d %H:%M} UTC "
               f"against policy {p.base_hash[:12]}")
    if p.status == "pending":
        state = proposal_state(engine, p.id, path=policy)
        click.echo({"current": "  the policy file is unchanged since drafting",
                    "re-basable": "  the policy file changed since drafting; the change still applies cleanly (it will be re-based)",
                    "stale": "  the policy file changed since drafting and the change no longer applies: accepting will mark it stale"}[state])
    click.echo("\nrationale:")
    for line in p.rationale.splitlines():
        click.echo(f"  {line}")
    click.echo(f"\nevidence notices: {', '.join(map(str, p.evidence_notice_ids)) or '-'}")
    click.echo(f"signals: {', '.join(map(str, p.signal_ids)) or '-'}")
    impact = latest_impact(engine, p.id)
    if impact:
        ci = "" if impact.exact else f" (95% CI {impact.hits_low:,.0f}–{impact.hits_high:,.0f})"
        click.echo(f"impact #{impact.id}: {impact.hits:,} listings hit{ci}, {impact.newly_hit:,} newly, "
                   f"{impact.already_hit:,} already hit, on {impact.catalogue}")
    else:
        click.echo(f"impact: none yet (radar impact {p.id})")
    for h in history(engine, proposal_id=p.id):
        click.echo(f"decision: {h.decision} by {h.reviewer} on {h.when:%Y-%m-%d %H:%M} UTC: {h.comment}")
    click.echo("")
    _print_diff(p.diff)


def _reviewer_option(f):
    return click.option("--reviewer", required=True, metavar="NAME", help="Who decides (recorded in the history).")(f)


def _print_outcome(outcome, verb: str) -> None:
    click.echo(f"proposal #{outcome.proposal.id} {verb} by {outcome.review.reviewer} (review #{outcome.review.id})")
    for note in outcome.notes:
        click.echo(f"  {note}")
    if outcome.policy_path:
        click.echo(f"  wrote {outcome.policy_path} (sha256 {outcome.review.policy_hash_after[:12]}); "
                   f"previous version kept as {outcome.kept}")
        if outcome.review.impact_estimate_id is None:
            click.echo(f"  no impact estimate was recorded with it (radar impact {outcome.proposal.id} makes one)")
        _print_diff(outcome.diff_applied)


@review_group.command("accept")
@click.argument("proposal_id", type=int)
@_reviewer_option
@click.option("--comment", default="", help="Why, in a few words.")
@click.option("--impact", "impact_id", type=int, default=None, help="Impact estimate id to record (default: the latest).")
@click.option("--policy", type=click.Path(dir_okay=False), help="Policy file (default: the policy_rules_path setting).")
def review_accept(proposal_id: int, reviewer: str, comment: str, impact_id: int | None, policy: str | None) -> None:
    """Accept a proposal and write the policy file.

    Written atomically, the previous version kept in history/. A proposal
    whose base rules changed is re-based when its change still applies
    cleanly, else marked stale; an already decided one is refused.
    """
    from radar.review import accept

    _print_outcome(accept(_engine(), proposal_id, reviewer, comment, path=policy, impact_estimate_id=impact_id), "accepted")


@review_group.command("edit")
@click.argument("proposal_id", type=int)
@click.option("--rule-file", required=True, type=click.Path(dir_okay=False), help="YAML file holding the rule as it should be.")
@_reviewer_option
@click.option("--comment", default="", help="What was changed and why.")
@click.option("--impact", "impact_id", type=int, default=None, help="Impact estimate id to record (default: the latest).")
@click.option("--policy", type=click.Path(dir_okay=False), help="Policy file (default: the policy_rules_path setting).")
def review_edit(proposal_id: int, rule_file: str, reviewer: str, comment: str, impact_id: int | None, policy: str | None) -> None:
    """Accept a proposal with your version of its rule."""
    from radar.review import edit

    _print_outcome(edit(_engine(), proposal_id, reviewer, rule_file, comment, path=policy, impact_estimate_id=impact_id),
                   "edited and accepted")


@review_group.command("reject")
@click.argument("proposal_id", type=int)
@_reviewer_option
@click.option("--comment", required=True, help="Why it is rejected.")
def review_reject(proposal_id: int, reviewer: str, comment: str) -> None:
    """Reject a proposal with a comment; the policy file is untouched."""
    from radar.review import reject

    _print_outcome(reject(_engine(), proposal_id, reviewer, comment), "rejected")


@review_group.command("history")
@click.option("--proposal", "proposal_id", type=int, default=None, help="Only this proposal.")
@click.option("--rule", "rule_id", default=None, help="Only proposals about this rule id.")
@click.option("--reviewer", default=None, help="Only this reviewer's decisions.")
@click.option("--limit", type=click.IntRange(1), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def review_history(proposal_id, rule_id, reviewer, limit, as_json) -> None:
    """Every decision on the policy, newest first."""
    from radar.review import history

    rows = history(_engine(), proposal_id=proposal_id, rule_id=rule_id, reviewer=reviewer, limit=limit)
    if as_json:
        _dump([r.as_json() for r in rows])
        return
    if not rows:
        click.echo("no decisions yet")
        return
    for r in rows:
        hashes = f"  policy {r.policy_hash_before[:12]} → {r.policy_hash_after[:12]}" if r.policy_hash_after else ""
        click.echo(f"{r.when:%Y-%m-%d %H:%M} UTC  {r.reviewer:<16} {r.decision:<7} #{r.proposal_id} {r.proposal_title}")
        click.echo(f"      evidence: {', '.join(map(str, r.evidence_notice_ids[:12])) or '-'}  "
                   f"signals: {', '.join(map(str, r.signal_ids)) or '-'}  impact: {r.impact_estimate_id or '-'}{hashes}")
        if r.comment:
            click.echo(f"      {r.comment.splitlines()[0][:160]}")


# -- rules --------------------------------------------------------------------------------------------------


@click.group("rules")
def rules_group() -> None:
    """Check the listing policy file."""


@rules_group.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def rules_check(path: str | None) -> None:
    """Validate the policy file: errors and warnings.

    PATH defaults to the policy_rules_path setting (else the bundled
    config/policy_rules.yml). Exits 1 when there is an error (a duplicate or
    conflicting rule, a bad market or category); warnings alone exit 0.
    """
    from radar.drafting import policy_path
    from radar.rules import rules_check_main

    code = rules_check_main(path or policy_path())
    if code:
        sys.exit(code)


COMMANDS = [incidents_command, signals_command, propose_command, impact_command, review_group, rules_group]
