"""The users page (admins), the digest subscriptions page, and HEAD on every GET page, over HTTP."""

from __future__ import annotations

import html
import re

import pytest
from sqlmodel import Session, select

from radar.db import session_scope
from radar.models import Subscription, User
from test_web import PASSWORDS, add_test_users, cheap_argon2, logged_in, make_client, token  # noqa: F401 - cheap_argon2 is an autouse fixture

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture
def site(engine):
    """vera (viewer), rex (reviewer), ada (admin) and one subscription, on SQLite and on PostgreSQL."""
    add_test_users(engine)
    with session_scope(engine) as session:
        session.add(Subscription(name="EMEA toys", recipients=["policy@example.org"], markets=["DE"], categories=["cat.toys"]))
    return engine


@pytest.fixture
def lite_site(sqlite_url):
    """The same on SQLite only: for HTTP behaviour that no query decides."""
    from radar.db import get_engine

    engine = get_engine(sqlite_url)
    add_test_users(engine)
    with session_scope(engine) as session:
        session.add(Subscription(name="EMEA toys", recipients=["policy@example.org"], markets=["DE"], categories=["cat.toys"]))
    return engine


def user_row(engine, username: str) -> User | None:
    with Session(engine) as session:
        return session.exec(select(User).where(User.username == username)).first()


def subscription_row(engine, name: str) -> Subscription | None:
    with Session(engine) as session:
        return session.exec(select(Subscription).where(Subscription.name == name)).first()


def flashes(page: str) -> list[str]:
    """The flash messages of a page, unescaped."""
    return [html.unescape(m) for m in re.findall(r'<p class="flash (?:info|error)" role="status">([^<]*)</p>', page)]


def post_form(client, page_path: str, action: str, data: dict[str, str]):
    """Post `data` to `action` with the CSRF token of the page at `page_path`, as a browser would."""
    page = client.get(page_path)
    assert page.status_code == 200, page.text
    return client.post(action, data={**data, "csrf_token": token(page.text)})


# -- users ----------------------------------------------------------------------------------------


def test_users_page_is_for_admins_only(lite_site):
    for name in ("vera", "rex"):
        client = logged_in(lite_site, name)
        refused = client.get("/users")
        assert refused.status_code == 403
        assert "Not allowed" in refused.text and f"Only admins manage users; {name} is a" in refused.text
        assert 'href="/users"' not in client.get("/search").text  # no nav link either
        tried = client.post("/users", data={"username": "mallory", "password": "long-enough-1", "role": "admin",
                                            "csrf_token": token(refused.text)})
        assert tried.status_code == 403
    assert user_row(lite_site, "mallory") is None
    assert make_client(lite_site).get("/users").headers["location"] == "/login?next=%2Fusers"
    admin = logged_in(lite_site, "ada")
    page = admin.get("/users")
    assert page.status_code == 200 and 'href="/users" aria-current="page"' in page.text
    for name in ("vera", "rex", "ada"):
        assert f"<strong>{name}</strong>" in page.text and f"{name}@example.org" in page.text
    assert re.search(r'<option value="reviewer" selected>', page.text)


def test_admin_adds_a_user_who_can_then_log_in(site):
    admin = logged_in(site, "ada")
    added = post_form(admin, "/users", "/users", {"username": "nina", "password": "nina-password", "role": "reviewer",
                                                  "email": "nina@example.org"})
    assert added.status_code == 303 and added.headers["location"] == "/users"
    assert flashes(admin.get("/users").text) == ["Added nina as reviewer."]
    nina = user_row(site, "nina")
    assert nina.role == "reviewer" and nina.email == "nina@example.org" and nina.password_hash.startswith("$argon2")
    client = make_client(site)
    page = client.get("/login")
    assert client.post("/login", data={"username": "nina", "password": "nina-password", "next": "/proposals",
                                       "csrf_token": token(page.text)}).status_code == 303

    again = post_form(admin, "/users", "/users", {"username": "nina", "password": "other-password", "role": "viewer",
                                                  "email": "x@example.org"})
    assert again.status_code == 400 and "already exists" in flashes(again.text)[0]
    assert 'name="username" value="nina"' in again.text and 'name="email" value="x@example.org"' in again.text
    assert "other-password" not in again.text  # a refused form never echoes the password
    short = post_form(admin, "/users", "/users", {"username": "otto", "password": "short", "role": "viewer"})
    assert short.status_code == 400 and "at least 8 characters" in flashes(short.text)[0]
    bad_role = post_form(admin, "/users", "/users", {"username": "otto", "password": "otto-password", "role": "root"})
    assert bad_role.status_code == 400 and "role 'root' is unknown" in flashes(bad_role.text)[0]
    assert user_row(site, "otto") is None


def test_admin_changes_a_role_and_resets_a_password(site):
    from radar.auth import authenticate

    admin = logged_in(site, "ada")
    vera = user_row(site, "vera")
    changed = post_form(admin, "/users", f"/users/{vera.id}/role", {"role": "reviewer"})
    assert changed.status_code == 303 and changed.headers["location"] == "/users"
    assert flashes(admin.get("/users").text) == ["vera is now reviewer."]
    assert user_row(site, "vera").role == "reviewer"

    reset = post_form(admin, "/users", f"/users/{vera.id}/password", {"password": "a-new-password"})
    assert reset.status_code == 303
    assert flashes(admin.get("/users").text) == ["New password set for vera. Their sessions have ended."]
    assert authenticate(site, "vera", PASSWORDS["vera"]) is None
    assert authenticate(site, "vera", "a-new-password").username == "vera"
    short = post_form(admin, "/users", f"/users/{vera.id}/password", {"password": "short"})
    assert short.status_code == 303
    assert flashes(admin.get("/users").text) == ["vera: the password must have at least 8 characters"]
    assert authenticate(site, "vera", "a-new-password") is not None
    assert post_form(admin, "/users", "/users/999999/role", {"role": "viewer"}).status_code == 404



def test_a_new_password_ends_the_users_open_sessions(site):
    """Whoever logged in with the old password (the user on another machine, or someone who stole it)
    is logged out by a reset, on the page or with `radar users set-password`; the admin who sets their
    own password keeps the session they set it from."""
    from click.testing import CliRunner

    from radar.cli import main

    admin = logged_in(site, "ada")
    vera_laptop, vera_phone = logged_in(site, "vera"), logged_in(site, "vera")
    assert vera_laptop.get("/search").status_code == 200
    vera = user_row(site, "vera")
    assert post_form(admin, "/users", f"/users/{vera.id}/password", {"password": "a-new-password"}).status_code == 303
    for client in (vera_laptop, vera_phone):
        page = client.get("/search")
        assert page.status_code == 303 and page.headers["location"].startswith("/login"), page.status_code
        assert client.get("/api/notices/1").status_code == 401  # the API takes the session no longer either
    assert admin.get("/users").status_code == 200  # other users' sessions go on

    ada = user_row(site, "ada")
    other_ada = logged_in(site, "ada")
    own = post_form(admin, "/users", f"/users/{ada.id}/password", {"password": "ada-new-password"})
    assert own.status_code == 303
    page = admin.get("/users")
    assert page.status_code == 200 and flashes(page.text) == ["New password set for ada."]
    assert other_ada.get("/users").status_code == 303

    rex = logged_in(site, "rex")
    result = CliRunner().invoke(main, ["users", "set-password", "rex"], env={"RADAR_USER_PASSWORD": "rex-new-password"})
    assert result.exit_code == 0 and "sessions have ended" in result.output, result.output
    assert rex.get("/search").status_code == 303
    refused = CliRunner().invoke(main, ["users", "set-password", "rex"], env={"RADAR_USER_PASSWORD": "short"})
    assert refused.exit_code != 0 and "at least 8 characters" in refused.output
    unknown = CliRunner().invoke(main, ["users", "set-password", "nobody"], env={"RADAR_USER_PASSWORD": "long-enough-1"})
    assert unknown.exit_code != 0 and "no user 'nobody'" in unknown.output


def test_a_login_that_rehashes_the_password_keeps_its_session(lite_site, monkeypatch):
    """Raised argon2 parameters rehash a password at its next login; that login's session is marked with
    the new hash, so it is not ended by the change it made itself."""
    from radar import auth

    before = user_row(lite_site, "vera").password_hash
    monkeypatch.setattr(auth, "ARGON2_PARAMS", {"time_cost": 2, "memory_cost": 1024, "parallelism": 1})
    auth._hasher.cache_clear()
    vera = logged_in(lite_site, "vera")
    assert user_row(lite_site, "vera").password_hash != before  # rehashed with the new parameters
    assert vera.get("/search").status_code == 200


def test_the_users_page_and_the_cli_show_each_users_last_login(site):
    from datetime import datetime, timezone

    from click.testing import CliRunner

    from radar.cli import main

    admin = logged_in(site, "ada")
    today = datetime.now(timezone.utc).date().isoformat()
    assert user_row(site, "vera").last_login_at is None
    logged_in(site, "vera")
    assert user_row(site, "vera").last_login_at.date().isoformat() == today
    users_page = admin.get("/users").text
    cells = {name: re.search(rf'<tr id="user-{user_row(site, name).id}">.*?</tr>', users_page, re.S).group(0)
             for name in ("vera", "rex", "ada")}
    assert f"<td>{today}</td>" in cells["vera"] and f"<td>{today}</td>" in cells["ada"]
    assert "<td>never</td>" in cells["rex"]
    listed = CliRunner().invoke(main, ["users", "list"]).output
    assert re.search(rf"^vera\s+viewer\s+last login {today} \d\d:\d\d", listed, re.M), listed
    assert re.search(r"^rex\s+reviewer\s+never logged in", listed, re.M), listed

def test_the_last_admin_cannot_stop_being_one(site):
    from radar.auth import UserError, set_role

    admin = logged_in(site, "ada")
    ada = user_row(site, "ada")
    refused = post_form(admin, "/users", f"/users/{ada.id}/role", {"role": "viewer"})
    assert refused.status_code == 303 and refused.headers["location"] == "/users"
    assert "ada is the last active admin" in flashes(admin.get("/users").text)[0]
    assert user_row(site, "ada").role == "admin"
    with pytest.raises(UserError, match="last active admin"):
        set_role(site, "ada", "reviewer")  # the CLI's way in is guarded the same

    # An inactive admin does not count as another admin.
    post_form(admin, "/users", "/users", {"username": "olga", "password": "olga-password", "role": "admin"})
    with session_scope(site) as session:
        olga = session.exec(select(User).where(User.username == "olga")).one()
        olga.active = False
    with pytest.raises(UserError, match="last active admin"):
        set_role(site, "ada", "viewer")
    set_role(site, "olga", "viewer")  # demoting an inactive admin leaves the active one

    # With a second active admin, ada may step down, and the users page is then closed to her.
    rex = user_row(site, "rex")
    assert post_form(admin, "/users", f"/users/{rex.id}/role", {"role": "admin"}).status_code == 303
    stepped_down = post_form(admin, "/users", f"/users/{ada.id}/role", {"role": "reviewer"})
    assert stepped_down.headers["location"] == "/search"
    assert user_row(site, "ada").role == "reviewer"
    assert admin.get("/users").status_code == 403
    with pytest.raises(UserError, match="rex is the last active admin"):
        set_role(site, "rex", "viewer")


# -- subscriptions --------------------------------------------------------------------------------


def test_subscriptions_page_lists_them_for_everyone_and_links_the_digest(site):
    assert make_client(site).get("/subscriptions").headers["location"] == "/login?next=%2Fsubscriptions"
    emea = subscription_row(site, "EMEA toys")
    viewer = logged_in(site, "vera")
    page = viewer.get("/subscriptions")
    assert page.status_code == 200 and 'href="/subscriptions" aria-current="page"' in page.text
    row = page.text[page.text.index(f'id="subscription-{emea.id}"'):]
    assert "<strong>EMEA toys</strong>" in row and "policy@example.org" in row
    assert '<span class="tag market">DE</span>' in row and 'title="cat.toys"' in row and "medium and above" in row
    assert f'href="/digest?subscription={emea.id}"' in row
    assert viewer.get(f"/digest?subscription={emea.id}").status_code == 200
    assert 'action="/subscriptions' not in page.text  # a viewer gets no forms
    assert "reviewers and admins add, change and deactivate them (you are logged in as a viewer)" in page.text
    tried = viewer.post("/subscriptions", data={"name": "Sneaky", "recipients": "me@example.org",
                                                "csrf_token": token(page.text)})
    assert tried.status_code == 403 and "Only reviewers and admins change digest subscriptions" in tried.text
    tried = viewer.post(f"/subscriptions/{emea.id}/active", data={"active": "0", "csrf_token": token(page.text)})
    assert tried.status_code == 403
    assert subscription_row(site, "Sneaky") is None and subscription_row(site, "EMEA toys").active


def test_reviewer_adds_changes_and_deactivates_a_subscription(site):
    reviewer = logged_in(site, "rex")
    added = post_form(reviewer, "/subscriptions", "/subscriptions", {
        "name": "Nordic <b>chargers</b>", "recipients": "nordic@example.org, ops@example.org\nnordic@example.org",
        "markets": "se; fi dk", "categories": "cat.electrical", "min_severity": "high", "language": "sv"})
    assert added.status_code == 303
    row = subscription_row(site, "Nordic <b>chargers</b>")
    assert added.headers["location"] == f"/subscriptions#subscription-{row.id}"
    assert row.recipients == ["nordic@example.org", "ops@example.org"] and row.markets == ["SE", "FI", "DK"]
    assert (row.categories, row.min_severity, row.language, row.active) == (["cat.electrical"], "high", "sv", True)
    page = reviewer.get("/subscriptions")
    assert flashes(page.text) == ["Added the subscription “Nordic <b>chargers</b>”."]
    assert "<b>chargers</b>" not in page.text and "Nordic &lt;b&gt;chargers&lt;/b&gt;" in page.text

    refused = post_form(reviewer, "/subscriptions", "/subscriptions", {
        "name": "Broken", "recipients": "not-an-address", "markets": "", "categories": "", "min_severity": "medium",
        "language": "en"})
    assert refused.status_code == 400
    assert flashes(refused.text) == ["recipient 'not-an-address' is not an email address like team@example.org"]
    assert '<details class="add" open>' in refused.text and 'value="not-an-address"' in refused.text
    assert subscription_row(site, "Broken") is None

    edit = f"/subscriptions/{row.id}"
    changed = post_form(reviewer, "/subscriptions", edit, {
        "name": "Nordic chargers", "recipients": "ops@example.org", "markets": "", "categories": "cat.electrical, cat.toys",
        "min_severity": "low", "language": "en"})
    assert changed.status_code == 303
    row = subscription_row(site, "Nordic chargers")
    assert row.recipients == ["ops@example.org"] and row.markets == [] and row.categories == ["cat.electrical", "cat.toys"]
    assert (row.min_severity, row.language) == ("low", "en")

    bad = post_form(reviewer, "/subscriptions", edit, {"name": "Nordic chargers", "recipients": "ops@example.org",
                                                       "markets": "Atlantis", "categories": "", "min_severity": "low",
                                                       "language": "en"})
    assert bad.status_code == 400 and "unknown market 'Atlantis'" in flashes(bad.text)[0]
    assert 'value="Atlantis"' in bad.text and bad.text.count("<details class=\"edit\" open>") == 1
    clash = post_form(reviewer, "/subscriptions", edit, {"name": "EMEA toys", "recipients": "ops@example.org",
                                                         "markets": "", "categories": "", "min_severity": "low",
                                                         "language": "en"})
    assert clash.status_code == 400 and "exists already" in flashes(clash.text)[0]
    assert subscription_row(site, "Nordic chargers").markets == []

    off = post_form(reviewer, "/subscriptions", f"{edit}/active", {"active": "0"})
    assert off.status_code == 303 and subscription_row(site, "Nordic chargers").active is False
    page = reviewer.get("/subscriptions")
    assert flashes(page.text) == ["“Nordic chargers” no longer receives the digest."]
    assert ">Reactivate</button>" in page.text
    assert post_form(reviewer, "/subscriptions", f"{edit}/active", {"active": "1"}).status_code == 303
    assert subscription_row(site, "Nordic chargers").active is True
    assert post_form(reviewer, "/subscriptions", "/subscriptions/999999", {"name": "x"}).status_code == 404


def test_admin_forms_without_the_csrf_token_are_refused(lite_site):
    admin = logged_in(lite_site, "ada")
    emea = subscription_row(lite_site, "EMEA toys")
    ada = user_row(lite_site, "ada")
    for action, data in (("/users", {"username": "eve", "password": "eve-password", "role": "admin"}),
                         (f"/users/{ada.id}/password", {"password": "hijacked-password"}),
                         (f"/users/{ada.id}/role", {"role": "viewer"}),
                         ("/subscriptions", {"name": "Forged", "recipients": "eve@example.org"}),
                         (f"/subscriptions/{emea.id}", {"name": "Forged", "recipients": "eve@example.org"}),
                         (f"/subscriptions/{emea.id}/active", {"active": "0"})):
        assert admin.post(action, data=data).status_code == 403, action
        assert admin.post(action, data={**data, "csrf_token": "forged"}).status_code == 403, action
    assert user_row(lite_site, "eve") is None and subscription_row(lite_site, "Forged") is None
    assert subscription_row(lite_site, "EMEA toys").active and user_row(lite_site, "ada").role == "admin"


# -- HEAD -----------------------------------------------------------------------------------------


def test_head_answers_as_get_does_without_a_body(lite_site):
    anonymous = make_client(lite_site)
    to_login = anonymous.head("/search?q=charger")
    assert to_login.status_code == 303 and to_login.headers["location"] == "/login?next=%2Fsearch%3Fq%3Dcharger"
    login_page = anonymous.head("/login")
    assert login_page.status_code == 200 and login_page.content == b""
    api = anonymous.head("/api/me")
    assert api.status_code == 401 and api.headers["www-authenticate"].startswith("Basic") and api.content == b""
    with_password = anonymous.head("/api/me", auth=("vera", PASSWORDS["vera"]))
    assert with_password.status_code == 200 and with_password.content == b""
    assert with_password.headers["content-type"] == "application/json"
    css_get, css_head = anonymous.get("/static/radar.css"), anonymous.head("/static/radar.css")
    assert css_head.status_code == 200 and css_head.content == b""
    assert int(css_head.headers["content-length"]) == len(css_get.content)
    assert anonymous.head("/api/openapi.json").status_code == 200

    viewer = logged_in(lite_site, "vera")
    for path in ("/search", "/searches", "/proposals", "/sources", "/digest", "/subscriptions"):
        response = viewer.head(path)
        assert response.status_code == 200, path
        assert response.content == b"" and response.headers["content-type"].startswith("text/html"), path
        assert "content-security-policy" in response.headers, path
    assert viewer.head("/users").status_code == 403
    assert viewer.head("/notices/999999").status_code == 404
    assert viewer.head("/logout").status_code == 405  # a POST-only route stays POST-only
    exported = viewer.head("/search.csv")
    assert exported.status_code == 200 and exported.content == b"" and exported.headers["content-type"].startswith("text/csv")


def test_head_leaves_the_flash_messages_for_the_next_page_view(lite_site):
    admin = logged_in(lite_site, "ada")
    vera = user_row(lite_site, "vera")
    assert post_form(admin, "/users", f"/users/{vera.id}/role", {"role": "reviewer"}).status_code == 303
    assert admin.head("/users").status_code == 200  # a link checker or a prefetch, say
    assert flashes(admin.get("/users").text) == ["vera is now reviewer."]
    assert flashes(admin.get("/users").text) == []


def test_two_admins_demoting_each_other_at_once_leave_one(site):
    """The guard holds under a race: PostgreSQL locks the admins' rows, SQLite has one writer."""
    import threading

    from radar.auth import UserError, add_user, set_role

    survivor = "ada"
    for round_ in range(5):
        pair = (f"left{round_}", f"right{round_}")
        for name in pair:
            add_user(site, name, "admin-password", role="admin")
        set_role(site, survivor, "viewer")  # the pair are now the only admins
        barrier = threading.Barrier(2)
        outcomes: dict[str, str] = {}

        def demote(name: str) -> None:
            barrier.wait()
            try:
                set_role(site, name, "viewer")
                outcomes[name] = "demoted"
            except UserError:
                outcomes[name] = "refused"

        threads = [threading.Thread(target=demote, args=(name,)) for name in pair]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(outcomes.values()) == ["demoted", "refused"]
        with Session(site) as session:
            admins = session.exec(select(User.username).where(User.role == "admin")).all()
        assert len(admins) == 1 and admins[0] in pair
        survivor = admins[0]
