"""The weekly digest: content per subscription, MIME structure, exactly-once delivery over a real SMTP server."""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import threading
from datetime import date, datetime, timedelta, timezone
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from radar import settings as radar_settings
from radar.models import (
    Classification, DigestDelivery, ImpactEstimate, Incident, IncidentMember, Notice, Proposal, SavedSearch, Signal,
    SourceRun, Subscription, User,
)

WEEK = "2026-W47"  # Monday 16 November 2026
MONDAY = date(2026, 11, 16)
BASE = "https://radar.example.org"
LONG_WORD = "x" * 300
HOSTILE_TITLE = "<b>Bold</b> charger <script>alert('pwned')</script>"
HOSTILE_TEXT = f"Overheats. <img src=x onerror=alert(1)> {LONG_WORD} & more <a href='javascript:evil()'>click</a>"


# -- a real SMTP server on loopback: STARTTLS with a throwaway certificate, AUTH, a handler that collects --


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "smtp-cert.pem", tmp_path / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Collector:
    """aiosmtpd handler: keeps every accepted message, refuses the addresses in ``refuse`` with 550."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.refuse: set[str] = set()
        self.logins: list[str] = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list:
        return [message_from_bytes(raw, policy=policy.default) for _, rcpts, raw in self.messages if address in rcpts]


class SmtpServer:
    def __init__(self, tmp_path: Path) -> None:
        self.handler = Collector()
        self.cert, self.key = _self_signed(tmp_path)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == b"radar" and auth_data.password == b"s3cret"
            if ok:
                self.handler.logins.append(auth_data.login.decode())
            return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, tls_context=context,
                                     require_starttls=True, auth_required=True, auth_require_tls=True,
                                     authenticator=authenticator)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp(tmp_path, monkeypatch):
    server = SmtpServer(tmp_path)
    server.start()
    for name, value in {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(server.port), "SMTP_STARTTLS": "true",
                        "SMTP_USERNAME": "radar", "SMTP_CA_FILE": str(server.cert), "SMTP_TIMEOUT": "10",
                        "SMTP_FROM": "Risk Radar <radar@example.org>", "PUBLIC_BASE_URL": BASE}.items():
        monkeypatch.setenv(f"RADAR_{name}", value)
    monkeypatch.setenv("RADAR_SMTP_PASSWORD", "s3cret")
    radar_settings.get_settings.cache_clear()
    yield server
    server.stop()


SOURCES = {
    "eu_safety_gate_alerts": ("EU Safety Gate alerts", "juris.eu", "Source: European Commission, Safety Gate."),
    "uk_opss_alerts": ("UK OPSS product safety alerts", "juris.uk",
                       "Contains public sector information licensed under the Open Government Licence v3.0."),
    "us_cpsc_recalls": ("US CPSC recalls", "juris.us", "Source: U.S. Consumer Product Safety Commission."),
}


@pytest.fixture(autouse=True)
def sources_dir(tmp_path, monkeypatch):
    """Three source files of our own, so sources other work adds to config/sources do not change the health section."""
    import yaml

    folder = tmp_path / "sources"
    folder.mkdir()
    for name, (title, juris, credit) in SOURCES.items():
        (folder / f"{name}.yml").write_text(yaml.safe_dump({
            "title": title, "publisher": title, "jurisdiction": juris, "kind": "regulator_notice",
            "url": f"https://example.org/{name}", "format": "json", "licence": "test", "attribution": credit,
        }))
    monkeypatch.setenv("RADAR_SOURCES_DIR", str(folder))
    radar_settings.get_settings.cache_clear()
    return folder


@pytest.fixture
def sqlite_engine(sqlite_url, monkeypatch):
    """SQLite only, for tests whose SQL is not dialect-specific (the `engine` ones cover both databases)."""
    from radar.db import get_engine

    monkeypatch.setenv("RADAR_DATABASE_URL", sqlite_url)
    radar_settings.get_settings.cache_clear()
    return get_engine(sqlite_url)


@pytest.fixture
def base_url(monkeypatch):
    monkeypatch.setenv("RADAR_PUBLIC_BASE_URL", BASE)
    radar_settings.get_settings.cache_clear()


# -- an archive for one week ------------------------------------------------------------------------------


def _at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc)


def _notice(session, n: int, *, source="eu_safety_gate_alerts", title="Magnetic building set", text="Small magnets detach.",
            first_seen: datetime, published: date | None = None, markets=("juris.eu.de",), categories=("cat.toys.magnetic",),
            hazards=(), risk_labels=(), labels=None, extra=(), url=None) -> Notice:
    notice = Notice(source=source, source_id=f"N{n}", url=url or f"https://example.org/n/{n}", title=title, text=text,
                    published=published if published is not None else first_seen.date(), risk_labels=list(risk_labels),
                    labels=labels or {}, content_hash=f"{n:064d}", first_seen=first_seen, last_seen=first_seen,
                    classified_version=1)
    session.add(notice)
    session.flush()
    findings = [("jurisdiction", m, "sold_in") for m in markets] + [("category", c, None) for c in categories]
    findings += [("hazard", h, None) for h in hazards] + list(extra)
    for axis, value, role in findings:
        session.add(Classification(notice_id=notice.id, notice_version=1, axis=axis, value=value, role=role,
                                   method="text", pipeline_version="test"))
    return notice


def seed(engine) -> dict:
    """One week's archive: notices (one hostile), an incident, signals, deadlines, proposals, source runs."""
    ids: dict = {}
    day = MONDAY + timedelta(days=1)
    with Session(engine, expire_on_commit=False) as s:
        a = _notice(s, 1, title="Magnetic building set MAGNA", hazards=("hazard.choking",),
                    labels={"risk_level": "Serious risk"}, first_seen=_at(day))
        b = _notice(s, 2, source="uk_opss_alerts", title="MAGNA magnetic set recalled", hazards=("hazard.choking",),
                    risk_labels=("Serious",), first_seen=_at(day, 14))
        hostile = _notice(s, 3, title=HOSTILE_TITLE, text=HOSTILE_TEXT, categories=("cat.electrical.chargers",),
                          hazards=("hazard.electric_shock",), first_seen=_at(day + timedelta(days=1)),
                          url="javascript:alert(1)")
        low = _notice(s, 4, title="Wooden puzzle, label missing", first_seen=_at(day))  # no hazard: low
        france = _notice(s, 5, title="Rattle sold in France", markets=("juris.eu.fr",), hazards=("hazard.choking",),
                         first_seen=_at(day))
        made_in = _notice(s, 6, title="Made in Germany, sold in France", markets=("juris.eu.fr",),
                          extra=(("jurisdiction", "juris.eu.de", "origin"),), hazards=("hazard.choking",),
                          first_seen=_at(day))
        backfill = _notice(s, 7, title="Old alert crawled late", hazards=("hazard.choking",), first_seen=_at(day),
                           published=date(2025, 1, 10))
        cosmetics = _notice(s, 8, title="Face cream with mercury", categories=("cat.cosmetics",),
                            hazards=("hazard.chemical",), first_seen=_at(day))
        scored = _notice(s, 9, title="Slime with boron", hazards=(), extra=(("risk", "0.9", None),), first_seen=_at(day))
        next_week = _notice(s, 10, title="Next week's notice", hazards=("hazard.choking",), first_seen=_at(MONDAY + timedelta(days=8)))
        # Earlier weeks, for the charts: 1..6 notices a week in DE toys.
        for i in range(1, 7):
            for j in range(i):
                _notice(s, 100 + i * 10 + j, title=f"Earlier {i}/{j}", hazards=("hazard.choking",),
                        first_seen=_at(MONDAY - timedelta(days=7 * i) + timedelta(days=2)),
                        categories=("cat.toys.magnetic",) if j % 2 else ("cat.electrical.chargers",))
        incident = Incident(key="gtin:4006381333931", title="MAGNA magnetic building set", method="gtin", confidence=1.0)
        s.add(incident)
        s.flush()
        s.add_all([IncidentMember(incident_id=incident.id, notice_id=a.id, method="gtin"),
                   IncidentMember(incident_id=incident.id, notice_id=b.id, method="gtin")])
        signals = [
            Signal(key="spike:de:toys:choking:W47", kind="spike", week=WEEK, category="cat.toys", hazard="hazard.choking",
                   jurisdiction="juris.eu.de", count=12, baseline=2.5, score=5.0,
                   reason="12 choking notices on magnetic toys in Germany against 2.5 in a usual week",
                   notice_ids=[a.id, b.id]),
            Signal(key="law:eu:toy-regulation:W47", kind="legislation", week=WEEK, category="cat.toys", jurisdiction="juris.eu",
                   score=3.0, reason="The EU Toy Safety Regulation was published in the Official Journal", notice_ids=[]),
            Signal(key="spike:fr:toys:W47", kind="spike", week=WEEK, category="cat.toys", jurisdiction="juris.eu.fr",
                   score=9.0, reason="French spike", notice_ids=[france.id]),
            Signal(key="spike:de:toys:W46", kind="spike", week="2026-W46", category="cat.toys", jurisdiction="juris.eu.de",
                   score=8.0, reason="Last week's spike", notice_ids=[]),
            Signal(key="deadline:eu:toys:2026-12-15", kind="deadline", week=WEEK, category="cat.toys",
                   jurisdiction="juris.eu", due=date(2026, 12, 15), reason="Comment period on the magnet limits closes",
                   details={"title": "Comments due: magnet limits in toys"}, notice_ids=[a.id]),
            Signal(key="deadline:eu:toys:2027-09-01", kind="deadline", week=WEEK, category="cat.toys",
                   jurisdiction="juris.eu", due=date(2027, 9, 1), reason="Too far away", notice_ids=[]),
        ]
        s.add_all(signals)
        proposal = Proposal(key="p1", kind="new_rule", rule_id="toys.magnets.de", title="Block loose-magnet toys in DE",
                            rationale="Three regulators flagged detaching magnets this month.", diff="+ rule",
                            rule={"markets": ["DE"], "categories": ["cat.toys.magnetic"]}, base_hash="0" * 64,
                            created_at=_at(MONDAY - timedelta(days=3)))
        accepted = Proposal(key="p2", kind="add_terms", rule_id="toys.other", title="Accepted already", base_hash="0" * 64,
                            status="accepted", rule={"markets": ["DE"]})
        us_only = Proposal(key="p3", kind="new_rule", rule_id="us.only", title="US-only rule", base_hash="0" * 64,
                           rule={"markets": ["US"]})
        s.add_all([proposal, accepted, us_only])
        s.flush()
        s.add_all([
            ImpactEstimate(proposal_id=proposal.id, catalogue="catalogue-old.parquet", listings_scanned=1000, hits=1,
                           newly_hit=1, created_at=_at(MONDAY - timedelta(days=3))),
            ImpactEstimate(proposal_id=proposal.id, catalogue="catalogue.parquet", listings_scanned=250000, hits=1234,
                           already_hit=234, newly_hit=1000, exact=False, hits_low=1100.0, hits_high=1380.0,
                           created_at=_at(MONDAY - timedelta(days=1))),
        ])
        s.add_all([
            SourceRun(source="eu_safety_gate_alerts", started_at=_at(MONDAY + timedelta(days=4)), status="ok", records=40),
            SourceRun(source="uk_opss_alerts", started_at=_at(MONDAY + timedelta(days=5)), status="failed",
                      messages=["feed answered HTTP 503 three times"]),
            SourceRun(source="us_cpsc_recalls", started_at=_at(MONDAY - timedelta(days=20)), status="ok", records=5),
        ])
        sub = Subscription(name="EMEA toys & chargers", recipients=["alice@example.org", "bob@example.org"],
                           markets=["DE"], categories=["cat.toys", "cat.electrical"], min_severity="medium")
        s.add(sub)
        s.commit()
        ids.update(a=a.id, b=b.id, hostile=hostile.id, low=low.id, france=france.id, made_in=made_in.id,
                   backfill=backfill.id, cosmetics=cosmetics.id, scored=scored.id, next_week=next_week.id,
                   incident=incident.id, proposal=proposal.id, accepted=accepted.id, us_only=us_only.id, sub=sub.id)
    return ids


def _deliveries(engine) -> list[DigestDelivery]:
    with Session(engine) as s:
        return list(s.exec(select(DigestDelivery).order_by(DigestDelivery.recipient)))


# -- severity ----------------------------------------------------------------------------------------------


def test_severity_prefers_risk_findings_then_source_levels_then_hazards():
    from radar.digest import notice_severity

    assert notice_severity([("risk", "0.9", 1.0), ("hazard", "hazard.choking", 1.0)]) == ("serious", "risk score")
    assert notice_severity([("risk", "risk.low", 1.0)], ["Serious"])[0] == "low"  # the NLP score wins
    assert notice_severity([("risk", "risk", 0.65)])[0] == "high"  # a finding whose score carries the level
    assert notice_severity([("severity", "severity.high", 1.0)])[0] == "high"
    assert notice_severity([], [], {"risk_level": "Serious risk"})[0] == "serious"
    assert notice_severity([], ["medium"])[0] == "medium"
    assert notice_severity([], ["High temperature"])[0] == "low"  # not a level, just a word
    assert notice_severity([], ["not-provided"])[0] == "low"
    assert notice_severity([("hazard", "hazard.electric_shock", 1.0)])[0] == "high"
    assert notice_severity([("hazard", "hazard.noise", 1.0)])[0] == "medium"
    assert notice_severity([]) == ("low", "no hazard found")


def test_weeks_parse_and_the_last_complete_week_is_in_the_timezone():
    from radar.digest import DigestError, last_complete_week, parse_week

    assert parse_week("2026-W47") == MONDAY
    assert parse_week("2026-W01") == date(2025, 12, 29)
    for bad in ("2026-47", "2026-W54", "W47", "", "2026-W47; DROP TABLE notice"):
        with pytest.raises(DigestError):
            parse_week(bad)
    # Monday 23 Nov 2026 at 06:30 in London: the week that ended last night is W47.
    assert last_complete_week(datetime(2026, 11, 23, 6, 30, tzinfo=timezone.utc)) == "2026-W47"
    # Sunday 22 Nov 23:30 UTC is still Sunday in London, so W47 is not complete yet.
    assert last_complete_week(datetime(2026, 11, 22, 23, 30, tzinfo=timezone.utc)) == "2026-W46"


# -- content --------------------------------------------------------------------------------------------


def test_digest_content_for_a_subscription(engine, base_url):
    from radar.digest import build_digest

    ids = seed(engine)
    with Session(engine) as s:
        sub = s.get(Subscription, ids["sub"])
    data = build_digest(engine, WEEK, sub)
    assert data.week == WEEK and data.period == "16–22 November 2026"

    signals = data.section("signals").data
    assert [x.reason.split()[0] for x in signals] == ["12", "The"]  # ranked by score; FR and last week's left out
    assert signals[0].notices[0].url == f"{BASE}/notices/{ids['a']}"
    assert signals[1].kind_label == "New law"  # EU-wide law reaches a DE subscription

    notices = data.section("notices").data
    items = [item for group in notices.groups for item in group.items]
    shown = {n.id for item in items for n in item.notices}
    # In: the incident (two sources, one item), the hostile charger, the risk-scored slime.
    assert shown == {ids["a"], ids["b"], ids["hostile"], ids["scored"]}
    incident = next(item for item in items if item.incident_id == ids["incident"])
    assert len(incident.notices) == 2 and incident.linked_by == "same GTIN" and incident.severity == "serious"
    assert notices.count == 3 and notices.notice_count == 4
    from radar.subscriptions import label_for

    assert {g.market for g in notices.groups} == {label_for("juris.eu.de")}  # "Germany", or "DE" without a taxonomy
    assert any("Open Government Licence" in credit for _, credit in notices.attributions)

    proposals = data.section("proposals").data
    assert [p.id for p in proposals] == [ids["proposal"]]
    assert proposals[0].estimate.hits == 1234 and proposals[0].estimate.interval == (1100, 1380)
    assert proposals[0].link == f"{BASE}/proposals/{ids['proposal']}"

    deadlines = data.section("deadlines").data
    assert [d.headline for d in deadlines] == ["Comments due: magnet limits in toys"]
    assert deadlines[0].days_left == 22  # from Monday 23 November, the day the digest goes out

    health = {h.name: h.status for h in data.section("sources").data}
    assert health == {"uk_opss_alerts": "failed", "us_cpsc_recalls": "quiet"}

    charts = data.charts
    assert [c.name for c in charts] == ["categories", "markets"]
    assert all(c.png.startswith(b"\x89PNG\r\n\x1a\n") for c in charts)
    market_lines = next(c for c in charts if c.name == "markets").text_lines
    # W41..W46: 6,5,4,3,2,1 notices; this week 5 in DE and the subscribed categories, every severity
    # (the backfill, next week's, the cosmetics and the French ones left out).
    assert market_lines[1].split()[1:] == ["0"] * 5 + ["6", "5", "4", "3", "2", "1", "5"]


def test_min_severity_and_an_open_subscription(sqlite_engine, base_url):
    from radar.digest import build_digest, load_archive
    from radar.subscriptions import SubscriptionView

    ids = seed(sqlite_engine)
    archive = load_archive(sqlite_engine, WEEK)
    everything = SubscriptionView(id=99, name="all", recipients=("x@example.org",), markets=(), jurisdictions=(),
                                  categories=(), min_severity="low")
    notices = build_digest(sqlite_engine, WEEK, everything, archive=archive).section("notices").data
    shown = {n.id for g in notices.groups for item in g.items for n in item.notices}
    assert {ids["low"], ids["france"], ids["made_in"], ids["cosmetics"]} <= shown
    assert ids["backfill"] not in shown and ids["next_week"] not in shown
    serious = SubscriptionView(id=98, name="serious", recipients=("x@example.org",), markets=("DE",),
                               jurisdictions=("juris.eu.de",), categories=(), min_severity="serious")
    notices = build_digest(sqlite_engine, WEEK, serious, archive=archive).section("notices").data
    assert {n.id for g in notices.groups for item in g.items for n in item.notices} == {ids["a"], ids["b"], ids["scored"]}


# -- sending ---------------------------------------------------------------------------------------------


def _parts(msg):
    assert msg.get_content_type() == "multipart/alternative"
    text_part, related = msg.get_payload()
    assert text_part.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, *images = related.get_payload()
    assert html_part.get_content_type() == "text/html"
    return text_part.get_content(), html_part.get_content(), images


def test_send_receive_and_parse_the_digest(engine, smtp):
    from radar.digest import send_week

    ids = seed(engine)
    report = send_week(engine, WEEK)
    assert report.ok, report.lines()
    assert len(report.sent) == 2 and smtp.handler.logins  # STARTTLS + AUTH happened

    msgs = smtp.handler.to("alice@example.org")
    assert len(msgs) == 1 and len(smtp.handler.messages) == 2
    msg = msgs[0]
    assert msg["To"] == "alice@example.org" and msg["From"] == "Risk Radar <radar@example.org>"
    assert msg["Subject"] == "Risk radar 2026-W47 (EMEA toys & chargers): 2 signals, 3 new high-risk, 1 to review"
    text, html, images = _parts(msg)

    assert len(images) == 2
    for image in images:
        assert image.get_content_type() == "image/png"
        assert image.get_content().startswith(b"\x89PNG")
        cid = image["Content-ID"].strip("<>")
        assert f'src="cid:{cid}"' in html
    assert f'href="{BASE}/notices/{ids["a"]}"' in html
    assert f'href="{BASE}/proposals/{ids["proposal"]}"' in html
    assert "12 choking notices on magnetic toys in Germany" in html
    assert "1,234" in html and "1,100–1,380" in html
    assert "Contains public sector information licensed under the Open Government Licence v3.0" in html
    assert "EMEA toys &amp; chargers" in html
    # CSS is inlined onto the elements; only the phone @media rules stay in a <style>.
    assert re.search(r'<td[^>]+style="[^"]*font-family', html)
    style = re.search(r"<style>(.*?)</style>", html, re.S)
    assert style is None or "@media" in style.group(1) and ".section-title {" not in style.group(1)

    assert f"{BASE}/notices/{ids['a']}" in text and f"{BASE}/proposals/{ids['proposal']}" in text
    assert "12 choking notices on magnetic toys" in text
    assert "[SERIOUS] MAGNA magnetic building set" in text
    assert "[FAILED] UK OPSS product safety alerts (uk_opss_alerts)" in text
    assert re.search(r"^ +W36 W37 W38 .* W47\r?$", text, re.M)  # the charts' numbers, for readers of plain text

    rows = _deliveries(engine)
    assert [(r.recipient, r.status, r.attempts) for r in rows] == [("alice@example.org", "sent", 1), ("bob@example.org", "sent", 1)]
    assert rows[0].message_id == msg["Message-ID"] and rows[0].sent_at is not None


def test_running_the_job_twice_sends_one_email_per_recipient(engine, smtp):
    from radar.digest import send_week

    seed(engine)
    first = send_week(engine, WEEK)
    second = send_week(engine, WEEK)
    assert len(first.sent) == 2 and not second.sent and second.already_sent == 2 and second.ok
    assert sorted(r for _, rcpts, _ in smtp.handler.messages for r in rcpts) == ["alice@example.org", "bob@example.org"]


def test_a_refused_recipient_is_retried_until_accepted(engine, smtp, monkeypatch):
    from radar.digest import send_week

    seed(engine)
    smtp.handler.refuse.add("bob@example.org")
    first = send_week(engine, WEEK)
    assert [r.recipient for r in first.sent] == ["alice@example.org"]
    assert [(r.recipient, r.attempts) for r in first.failed] == [("bob@example.org", 1)]
    assert "550" in first.failed[0].error and not first.ok
    assert any("failed" in line and "bob@example.org" in line for line in first.lines())
    bob = _deliveries(engine)[1]
    assert (bob.status, bob.attempts) == ("failed", 1) and "mailbox unavailable" in bob.last_error

    second = send_week(engine, WEEK)  # still refused: a second attempt, nothing resent to alice
    assert not second.sent and [r.attempts for r in second.failed] == [2]

    smtp.handler.refuse.clear()
    third = send_week(engine, WEEK)
    assert [r.recipient for r in third.sent] == ["bob@example.org"] and third.ok
    assert len(smtp.handler.to("alice@example.org")) == 1 and len(smtp.handler.to("bob@example.org")) == 1
    bob = _deliveries(engine)[1]
    assert (bob.status, bob.attempts, bob.last_error) == ("sent", 3, "")


def test_a_recipient_is_given_up_after_the_maximum_attempts(sqlite_engine, smtp, monkeypatch):
    from radar.digest import send_week

    monkeypatch.setenv("RADAR_DIGEST_MAX_ATTEMPTS", "2")
    radar_settings.get_settings.cache_clear()
    seed(sqlite_engine)
    smtp.handler.refuse.add("bob@example.org")
    send_week(sqlite_engine, WEEK)
    second = send_week(sqlite_engine, WEEK)
    assert [r.attempts for r in second.gave_up] == [2]
    third = send_week(sqlite_engine, WEEK)
    assert [r.recipient for r in third.gave_up] == ["bob@example.org"] and not third.failed and not third.sent
    assert _deliveries(sqlite_engine)[1].attempts == 2


def test_a_crash_half_way_leaves_the_rest_for_the_next_run(engine, smtp):
    from radar.digest import retry_interrupted, send_week

    seed(engine)

    class Crash(Exception):
        pass

    def crash_after_first(result):
        raise Crash(result.recipient)

    with pytest.raises(Crash):
        send_week(engine, WEEK, progress=crash_after_first)
    assert [(r.recipient, r.status) for r in _deliveries(engine)] == [("alice@example.org", "sent"), ("bob@example.org", "pending")]

    again = send_week(engine, WEEK)
    assert [r.recipient for r in again.sent] == ["bob@example.org"] and again.already_sent == 1
    assert len(smtp.handler.messages) == 2

    # A run that died between claiming a delivery and the server's answer leaves it "sending": in doubt,
    # never sent again by itself; the operator releases it after checking the mail log.
    with Session(engine) as s:
        bob = s.exec(select(DigestDelivery).where(DigestDelivery.recipient == "bob@example.org")).one()
        bob.status = "sending"
        s.add(bob)
        s.commit()
    doubtful = send_week(engine, WEEK)
    assert [r.recipient for r in doubtful.in_doubt] == ["bob@example.org"] and not doubtful.sent
    assert any("--retry-interrupted" in line for line in doubtful.lines())
    assert retry_interrupted(engine, WEEK) == 1
    released = send_week(engine, WEEK)
    assert [r.recipient for r in released.sent] == ["bob@example.org"]


def test_the_server_going_away_mid_run_leaves_the_rest_pending(sqlite_engine, smtp):
    from radar.digest import send_week

    seed(sqlite_engine)
    with Session(sqlite_engine) as s:
        sub = s.exec(select(Subscription)).one()
        sub.recipients = ["alice@example.org", "bob@example.org", "carol@example.org"]
        s.add(sub)
        s.commit()

    def stop_server(result):
        if result.recipient == "alice@example.org":
            smtp.stop()

    report = send_week(sqlite_engine, WEEK, progress=stop_server)
    assert [r.recipient for r in report.sent] == ["alice@example.org"]
    assert [r.recipient for r in report.failed] == ["bob@example.org"] and report.not_attempted == 1
    assert "connection" in report.error
    assert [r.status for r in _deliveries(sqlite_engine)] == ["sent", "failed", "pending"]

    smtp.start()
    after = send_week(sqlite_engine, WEEK)
    assert sorted(r.recipient for r in after.sent) == ["bob@example.org", "carol@example.org"]
    assert sorted(r for _, rcpts, _ in smtp.handler.messages for r in rcpts) == [
        "alice@example.org", "bob@example.org", "carol@example.org"]


def test_an_unreachable_server_or_missing_password_uses_no_attempts(sqlite_engine, smtp, monkeypatch):
    from radar.digest import send_week

    seed(sqlite_engine)
    monkeypatch.delenv("RADAR_SMTP_PASSWORD")
    report = send_week(sqlite_engine, WEEK)
    assert "RADAR_SMTP_PASSWORD" in report.error and report.not_attempted == 2 and not report.ok
    monkeypatch.setenv("RADAR_SMTP_PASSWORD", "wrong")
    report = send_week(sqlite_engine, WEEK)
    assert "refused the login" in report.error
    assert [(r.status, r.attempts) for r in _deliveries(sqlite_engine)] == [("pending", 0), ("pending", 0)]
    assert not smtp.handler.messages


def test_a_recipient_that_would_inject_a_header_is_failed_not_sent(sqlite_engine, smtp):
    from radar.digest import send_week

    seed(sqlite_engine)
    with Session(sqlite_engine) as s:
        sub = s.exec(select(Subscription)).one()
        sub.recipients = ["alice@example.org", "eve@example.org\nBcc: mallory@example.org"]  # not via the CLI
        s.add(sub)
        s.commit()
    report = send_week(sqlite_engine, WEEK)
    assert [r.recipient for r in report.sent] == ["alice@example.org"]
    assert len(report.failed) == 1 and "cannot address" in report.failed[0].error
    assert [rcpts for _, rcpts, _ in smtp.handler.messages] == [["alice@example.org"]]
    assert b"mallory" not in smtp.handler.messages[0][2]


def test_claiming_a_delivery_is_compare_and_set(engine):
    from radar.digest import _claim, ensure_deliveries
    from radar.subscriptions import SubscriptionView

    ids = seed(engine)
    view = SubscriptionView(id=ids["sub"], name="x", recipients=("alice@example.org",), markets=(), jurisdictions=(),
                            categories=())
    assert ensure_deliveries(engine, WEEK, [view]) == 1
    assert ensure_deliveries(engine, WEEK, [view]) == 0  # the unique row exists once
    row = _deliveries(engine)[0]
    assert _claim(engine, row, "<a@x>") is True
    assert _claim(engine, row, "<b@x>") is False  # the same snapshot cannot win twice
    assert _deliveries(engine)[0].message_id == "<a@x>"


def test_run_weekly_sends_last_week_and_retries_earlier_weeks(sqlite_engine, smtp):
    from radar.digest import last_complete_week, parse_week, run_weekly, week_of

    ids = seed(sqlite_engine)
    week = last_complete_week()
    earlier = week_of(parse_week(week) - timedelta(days=7))
    with Session(sqlite_engine) as s:
        s.add(DigestDelivery(week=earlier, subscription_id=ids["sub"], recipient="bob@example.org", status="failed",
                             attempts=1, last_error="550 earlier"))
        s.commit()
    report = run_weekly(sqlite_engine)
    assert report.weeks == [week, earlier]
    assert sorted((r.week, r.recipient) for r in report.sent) == sorted(
        [(week, "alice@example.org"), (week, "bob@example.org"), (earlier, "bob@example.org")])
    # Alice had no delivery for the earlier week and gets none now: retries never start new ones.
    assert len(smtp.handler.to("alice@example.org")) == 1


# -- hostile text ---------------------------------------------------------------------------------------


def test_notice_text_is_escaped_and_wrapped_never_injected(sqlite_engine, base_url):
    from radar.digest import build_digest, render_digest

    ids = seed(sqlite_engine)
    with Session(sqlite_engine, expire_on_commit=False) as s:
        sub = s.get(Subscription, ids["sub"])
        sub.name = "Team <i>EMEA</i>"
        s.add(sub)
        s.commit()
    rendered = render_digest(build_digest(sqlite_engine, WEEK, sub))
    html, text = rendered.html, rendered.text
    assert "<script" not in html and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(" in html and "&lt;b&gt;Bold&lt;/b&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<i>EMEA</i>" not in html and "Team &lt;i&gt;EMEA&lt;/i&gt;" in html
    assert "javascript:" not in html.replace("javascript:evil()", "")  # the text may say it; no link does
    assert not re.search(r'href="javascript:', html)
    # The 300-character word can break: <wbr> every 20 characters, and word-break on the cells.
    assert ("x" * 20 + "<wbr>") * 3 in html and "x" * 21 not in html
    assert "word-break: break-word" in html or "word-break:break-word" in html
    # The text version is plain text at 72 columns; only a line ending in a URL may run longer.
    assert "<script>alert('pwned')</script>" in text  # plain text shows it as written, nothing to inject into
    for line in text.splitlines():
        assert len(line) <= 72 or re.search(r" ?https?://\S+$", line), line
    assert "x" * 72 not in text and "x" * 60 in text


# -- previews, the web preview, followed searches ---------------------------------------------------------


def test_preview_writes_files_and_records_nothing(sqlite_engine, base_url, tmp_path):
    from radar.digest import send_week

    ids = seed(sqlite_engine)
    out = tmp_path / "out"
    report = send_week(sqlite_engine, WEEK, preview_dir=out)
    assert report.preview and report.ok
    names = sorted(p.name for p in out.iterdir())
    stem = f"{WEEK}-{ids['sub']}-emea-toys-chargers"
    assert names == [f"{stem}.eml", f"{stem}.html", f"{stem}.txt"]
    msg = message_from_bytes((out / f"{stem}.eml").read_bytes(), policy=policy.default)
    text, html, images = _parts(msg)
    assert len(images) == 2 and "cid:" in html
    page = (out / f"{stem}.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "cid:" not in page
    assert (out / f"{stem}.txt").read_text() == text.replace("\r\n", "\n")
    assert _deliveries(sqlite_engine) == []


def test_render_preview_for_the_web_app(sqlite_engine, base_url):
    from radar.digest import render_preview

    ids = seed(sqlite_engine)
    html, text = render_preview(sqlite_engine, WEEK, ids["sub"])
    assert html.lstrip().lower().startswith("<!doctype html>") and "data:image/png;base64," in html
    assert f"{BASE}/proposals/{ids['proposal']}" in html and "RISK RADAR WEEKLY DIGEST" in text


def test_followed_saved_searches_add_a_section_for_that_recipient(engine, smtp):
    from radar.digest import send_week

    ids = seed(engine)
    with Session(engine) as s:
        user = User(username="alice", email="Alice@example.org", password_hash="x")
        s.add(user)
        s.flush()
        s.add(SavedSearch(user_id=user.id, name="Magnets watch", query="magnetic", follow=True))
        s.add(SavedSearch(user_id=user.id, name="Not followed", query="puzzle", follow=False))
        # The saved filters count as on the search page: this one matches nothing, so it is left out.
        s.add(SavedSearch(user_id=user.id, name="Magnets with a GTIN in cosmetics", query="magnetic", follow=True,
                          params={"category": ["cat.cosmetics"], "gtin": "yes"}))
        s.commit()
    send_week(engine, WEEK)
    alice_text, alice_html, _ = _parts(smtp.handler.to("alice@example.org")[0])
    bob_text, _, _ = _parts(smtp.handler.to("bob@example.org")[0])
    assert "YOUR FOLLOWED SEARCHES" in alice_text and "Magnets watch" in alice_html
    assert "Not followed" not in alice_text and "in cosmetics" not in alice_text
    assert f"{BASE}/notices/{ids['a']}" in alice_text.split("YOUR FOLLOWED SEARCHES")[1]
    assert "FOLLOWED" not in bob_text


def test_chart_png_is_a_deterministic_image():
    from radar.charts import weekly_counts_png

    weeks = [f"W{n}" for n in range(36, 48)]
    series = {"Toys": list(range(12)), "Electrical appliances": [1] * 12}
    png = weekly_counts_png(weeks, series, "New notices")
    assert png.startswith(b"\x89PNG") and png == weekly_counts_png(weeks, series, "New notices")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (900, 375)
    with pytest.raises(ValueError):
        weekly_counts_png(weeks, {"short": [1]}, "bad")


# -- the CLI --------------------------------------------------------------------------------------------


def test_cli_subscriptions_and_digest_preview(sqlite_engine, tmp_path):
    from radar.cli import main

    runner = CliRunner()
    add = runner.invoke(main, ["subscriptions", "add", "EMEA toys", "--recipient", "a@example.org", "--recipient",
                               "b@example.org", "--market", "de", "--market", "FR", "--category", "cat.toys",
                               "--min-severity", "high"])
    assert add.exit_code == 0, add.output
    listed = runner.invoke(main, ["subscriptions", "list", "--json"])
    assert listed.exit_code == 0
    import json

    rows = json.loads(listed.output)
    assert rows[0]["name"] == "EMEA toys" and rows[0]["markets"] == ["DE", "FR"] and rows[0]["min_severity"] == "high"

    for args, message in (
        (["add", "X", "--recipient", "not-an-address"], "not an email address"),
        (["add", "X", "--recipient", "a@example.org", "--market", "Atlantis"], "unknown market"),
        (["add", "X", "--recipient", "a@example.org", "--min-severity", "extreme"], "extreme"),
        (["add", "X", "--recipient", "a@example.org", "--category", "toys"], "not a category id"),
        (["add", "EMEA toys", "--recipient", "a@example.org"], "exists"),
        (["update", "Nobody", "--language", "de"], "no subscription named"),
    ):
        result = runner.invoke(main, ["subscriptions", *args])
        assert result.exit_code != 0 and message in result.output, (args, result.output)

    upd = runner.invoke(main, ["subscriptions", "update", "EMEA toys", "--add-recipient", "c@example.org",
                               "--remove-recipient", "a@example.org", "--all-categories", "--min-severity", "medium"])
    assert upd.exit_code == 0, upd.output
    rows = json.loads(runner.invoke(main, ["subscriptions", "list", "--json"]).output)
    assert rows[0]["recipients"] == ["b@example.org", "c@example.org"] and rows[0]["categories"] == []

    out = tmp_path / "out"
    preview = runner.invoke(main, ["digest", "--week", WEEK, "--preview", str(out)])
    assert preview.exit_code == 0, preview.output
    assert len(list(out.glob("*.eml"))) == 1 and "previewed" in preview.output
    bad = runner.invoke(main, ["digest", "--week", "2026-47", "--preview", str(out)])
    assert bad.exit_code != 0 and "ISO week" in bad.output

    removed = runner.invoke(main, ["subscriptions", "remove", "EMEA toys"])
    assert removed.exit_code == 0 and "removed" in removed.output
    assert json.loads(runner.invoke(main, ["subscriptions", "list", "--json"]).output) == []


def test_docs_name_every_option_of_the_commands():
    from radar.commands.digest import COMMANDS

    docs = (Path(__file__).resolve().parents[1] / "docs" / "digest.md").read_text()
    commands = []
    for command in COMMANDS:
        commands.extend(command.commands.values() if hasattr(command, "commands") else [command])
    for command in commands:
        for param in command.params:
            for option in param.opts + param.secondary_opts:
                if option.startswith("--") and option != "--help":
                    assert option in docs, f"docs/digest.md does not mention {command.name} {option}"


def test_removing_a_subscription_with_history_deactivates_it(sqlite_engine):
    from radar.subscriptions import add_subscription, list_subscriptions, remove_subscription

    sub = add_subscription(sqlite_engine, "Team", ["t@example.org"], markets=["UK"])
    with Session(sqlite_engine) as s:
        s.add(DigestDelivery(week=WEEK, subscription_id=sub.id, recipient="t@example.org", status="sent"))
        s.commit()
    assert remove_subscription(sqlite_engine, "Team") == "deactivated"
    assert [x.active for x in list_subscriptions(sqlite_engine)] == [False]
    assert remove_subscription(sqlite_engine, "Team", purge=True) == "removed"
    assert list_subscriptions(sqlite_engine) == [] and _deliveries(sqlite_engine) == []
