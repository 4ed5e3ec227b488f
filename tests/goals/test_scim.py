"""SCIM 2.0 provisioning on goals-api, over real HTTP (urllib) against a real goals-api on the wire Mongo
server: discovery, the token, the Users lifecycle through directory sync, filters and paging, PATCH as real
clients send it, and errors (never a 500) on bad input."""

import json
import socket
import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest

from services.goals.directory import Directory
from services.goals.directory_sync import DirectorySync
from services.goals.scim.http import DEV_TOKEN, settings_from_env
from services.platform.core.config import ConfigError
from tests.support.scim import ENTERPRISE, PATCH_OP, SCIM_JSON, TOKEN, USER, scim_goals, user

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


@pytest.fixture(scope="module")
def scim(mongo_uri):
    with scim_goals(mongo_uri) as env:
        yield env


def error_of(reply, status: int, scim_type: str | None = None) -> dict:
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers["Content-Type"] == SCIM_JSON
    assert reply.body["schemas"] == [ERROR] and reply.body["status"] == str(status)
    if scim_type is not None:
        assert reply.body.get("scimType") == scim_type, reply.body
    return reply.body


def q(text: str) -> str:
    return urllib.parse.quote(text)


# --- discovery and the token ------------------------------------------------------------------------------


def test_discovery_endpoints_describe_users_with_the_enterprise_extension(scim):
    config = scim.call("GET", "/ServiceProviderConfig")
    assert config.status == 200 and config.headers["Content-Type"] == SCIM_JSON
    assert config.body["patch"]["supported"] and config.body["filter"]["supported"]
    assert not config.body["bulk"]["supported"] and config.body["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = scim.call("GET", "/ResourceTypes").body
    assert [t["id"] for t in types["Resources"]] == ["User"]
    assert types["Resources"][0]["schemaExtensions"] == [{"schema": ENTERPRISE, "required": False}]
    assert scim.call("GET", "/ResourceTypes/User").body["endpoint"] == "/Users"
    listed = scim.call("GET", "/Schemas").body
    assert {s["id"] for s in listed["Resources"]} == {USER, ENTERPRISE}
    enterprise = scim.call("GET", f"/Schemas/{ENTERPRISE}").body
    department = next(a for a in enterprise["attributes"] if a["name"] == "department")
    assert "Platform" in department["canonicalValues"]  # the org units' names
    error_of(scim.call("GET", "/Schemas/urn:nope"), 404)
    error_of(scim.call("GET", "/Groups"), 404)
    error_of(scim.call("GET", "/nothing/here"), 404)
    error_of(scim.call("POST", "/.search", {"schemas": []}), 501)
    error_of(scim.call("DELETE", "/ServiceProviderConfig"), 405)


@pytest.mark.parametrize("token", [None, "", "wrong-token", TOKEN + "x", TOKEN[:-1]])
def test_every_request_needs_the_provisioning_token(scim, token):
    for method, path in (("GET", "/ServiceProviderConfig"), ("GET", "/Users"), ("POST", "/Users")):
        reply = scim.call(method, path, user() if method == "POST" else None, token=token)
        error_of(reply, 401)
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_basic_scheme_is_refused(scim):
    error_of(scim.call("GET", "/Users", token=None, headers={"Authorization": f"Basic {TOKEN}"}), 401)


def test_scim_is_off_without_a_token_and_production_refuses_weak_ones(monkeypatch):
    monkeypatch.delenv("SCIM_TOKEN", raising=False)
    monkeypatch.delenv("V2MOM_ENV", raising=False)
    assert settings_from_env() is None
    monkeypatch.setenv("SCIM_TOKEN", "short")
    assert settings_from_env().token == "short"  # development takes any token
    monkeypatch.setenv("V2MOM_ENV", "production")
    for weak in ("short", DEV_TOKEN):
        monkeypatch.setenv("SCIM_TOKEN", weak)
        with pytest.raises(ConfigError, match="SCIM_TOKEN"):
            settings_from_env()
    monkeypatch.setenv("SCIM_TOKEN", "a" * 64)
    monkeypatch.setenv("SCIM_HTTP_ADDR", "127.0.0.1:0")
    assert settings_from_env().addr == "127.0.0.1:0"


def test_the_endpoint_stops_with_the_grpc_server(mongo_uri):
    with scim_goals(mongo_uri) as env:
        port = env.server.scim.port
        assert env.call("GET", "/ServiceProviderConfig").status == 200
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# --- Users through directory sync ---------------------------------------------------------------------------


def test_a_posted_user_is_a_directory_person_written_with_its_event(scim):
    reply = scim.call("POST", "/Users", user(
        "hannah.b", externalId="okta-00u1", displayName="Hannah B", title="Engineer", timezone="Europe/Berlin",
        locale="de-DE", name={"givenName": "Hannah", "familyName": "B"},
        emails=[{"value": "h@home.test", "type": "home"}, {"value": "hannah@acme.test", "type": "work", "primary": True}],
        **{ENTERPRISE: {"employeeNumber": "E1001", "department": "Platform", "manager": {"value": "lee"}}}))
    assert reply.status == 201, reply.body
    body = reply.body
    assert body["id"] == "hannah.b" and reply.headers["Location"] == body["meta"]["location"]
    assert body["meta"]["location"].endswith("/scim/v2/Users/hannah.b") and body["meta"]["resourceType"] == "User"
    assert body["emails"][1] == {"value": "hannah@acme.test", "type": "work", "primary": True}
    assert body[ENTERPRISE]["manager"]["value"] == "lee" and body[ENTERPRISE]["manager"]["$ref"].endswith("/Users/lee")
    person = scim.person("hannah.b")
    assert person["external_id"] == "E1001"  # the HRIS's key: the employee number
    assert (person["display_name"], person["email"], person["org_unit_id"], person["manager_id"]) == \
        ("Hannah B", "hannah@acme.test", "platform", "lee")
    assert (person["time_zone"], person["locale"], person["employment_status"], person["active"]) == \
        ("Europe/Berlin", "de-DE", "ACTIVE", True)
    assert [event["type"] for event in person["outbox"]] == ["person_upserted"]
    assert scim.call("GET", "/Users/hannah.b").body == body


def test_the_hris_feed_and_scim_name_the_same_person(scim):
    sync = DirectorySync(Directory(scim.db, cache_seconds=0))
    fields = {"display_name": "Fed Person", "email": "", "title": "", "manager_ref": "", "org_unit_ref": "mobile",
              "time_zone": "", "locale": "", "employment_status": "ACTIVE", "start_date": "", "end_date": ""}
    sync.upsert_person({"external_id": "E2001", "id": "fed.person", "fields": fields,
                        "effective_at": datetime.now(UTC) - timedelta(days=1)})
    reply = scim.call("POST", "/Users", user("fed@acme.test", displayName="Fed Person",
                                             **{ENTERPRISE: {"employeeNumber": "E2001"}}))
    assert reply.status == 201 and reply.body["id"] == "fed.person"  # taken over, not a second person
    assert scim.person("fed.person")["org_unit_id"] == "mobile"  # no department sent: the unit stays
    created = scim.create(displayName="Scim First", **{ENTERPRISE: {"employeeNumber": "E2002"}})
    sync.upsert_person({"external_id": "E2002", "id": "ignored", "fields": {**fields, "display_name": "HRIS Name"},
                        "effective_at": datetime.now(UTC) + timedelta(seconds=1)})
    assert scim.call("GET", f"/Users/{created['id']}").body["displayName"] == "HRIS Name"
    assert scim.db.people.count_documents({"external_id": "E2002"}) == 1


def test_scim_keeps_what_only_the_hris_says_leave_and_a_planned_end_date(scim):
    sync = DirectorySync(Directory(scim.db, cache_seconds=0))
    fields = {"display_name": "On Leave", "email": "", "title": "", "manager_ref": "", "org_unit_ref": "sales",
              "time_zone": "", "locale": "", "employment_status": "ON_LEAVE", "start_date": "2020-01-01",
              "end_date": "2030-06-30"}
    sync.upsert_person({"external_id": "E3001", "id": "on.leave", "fields": fields,
                        "effective_at": datetime.now(UTC) - timedelta(days=1)})
    assert scim.call("GET", "/Users/on.leave").body["active"] is True  # on leave is active
    assert scim.patch("on.leave", {"op": "replace", "path": "title", "value": "Back soon"}).status == 200
    person = scim.person("on.leave")
    assert (person["employment_status"], person["start_date"], person["end_date"], person["title"]) == \
        ("ON_LEAVE", "2020-01-01", "2030-06-30", "Back soon")
    scim.patch("on.leave", {"op": "replace", "path": "active", "value": False})
    assert scim.person("on.leave")["end_date"] == datetime.now(UTC).date().isoformat()


def test_put_replaces_the_user(scim):
    created = scim.create(displayName="Before", title="Old", **{ENTERPRISE: {"department": "mobile"}})
    replaced = scim.call("PUT", f"/Users/{created['id']}", user(created["userName"], displayName="After",
                                                                 **{ENTERPRISE: {"department": "Sales"}}))
    assert replaced.status == 200, replaced.body
    assert replaced.body["displayName"] == "After" and "title" not in replaced.body
    assert scim.person(created["id"])["org_unit_id"] == "sales"
    assert int(replaced.body["meta"]["version"][3:-1]) > int(created["meta"]["version"][3:-1])


# --- filters and paging -------------------------------------------------------------------------------------


def test_filters_find_users_by_user_name_external_id_and_more(scim):
    made = scim.create(user_name="Filter.Me@Acme.test", externalId="ext-filter-1", displayName="Filterable Fay",
                       emails=[{"value": "fay@acme.test", "type": "work", "primary": True}])

    def ids(text: str) -> list[str]:
        reply = scim.call("GET", f"/Users?filter={q(text)}")
        assert reply.status == 200, reply.body
        assert reply.body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
        assert reply.body["totalResults"] == len(reply.body["Resources"])
        return [r["id"] for r in reply.body["Resources"]]

    assert ids('userName eq "filter.me@acme.test"') == [made["id"]]  # userName is case-insensitive
    assert ids('externalId eq "ext-filter-1"') == [made["id"]]
    assert ids('externalId eq "EXT-FILTER-1"') == []  # externalId is case-exact
    assert ids(f'id eq "{made["id"]}"') == [made["id"]]
    assert ids('displayName co "filterable" and active eq true') == [made["id"]]
    assert ids('emails[type eq "work" and value ew "@acme.test"] and userName sw "filter"') == [made["id"]]
    assert ids('emails.value eq "fay@acme.test" or userName eq "nobody"') == [made["id"]]
    assert made["id"] not in ids('not (userName eq "filter.me@acme.test")')
    assert ids('(userName eq "x" or userName eq "y") and title pr') == []
    assert "olive" in ids(f'{ENTERPRISE}:department eq "Platform"')
    assert ids('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "olive"') == ["olive"]
    assert ids('meta.lastModified gt "2000-01-01T00:00:00Z" and userName eq "filter.me@acme.test"') == [made["id"]]


def test_paging_with_start_index_and_count(scim):
    everyone = scim.call("GET", "/Users?count=200").body
    total = everyone["totalResults"]
    assert total >= 9 and len(everyone["Resources"]) == total
    page = scim.call("GET", "/Users?startIndex=3&count=4").body
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (total, 3, 4)
    assert [r["id"] for r in page["Resources"]] == [r["id"] for r in everyone["Resources"][2:6]]
    assert scim.call("GET", "/Users?count=0").body["Resources"] == []
    assert scim.call("GET", f"/Users?startIndex={total + 5}").body["Resources"] == []
    assert scim.call("GET", "/Users?startIndex=0&count=1").body["startIndex"] == 1
    assert scim.call("GET", "/Users?count=100000").body["itemsPerPage"] <= 200
    filtered = scim.call("GET", f"/Users?filter={q('userName pr')}&startIndex=2&count=2").body
    assert filtered["totalResults"] == total and len(filtered["Resources"]) == 2
    search = scim.call("POST", "/Users/.search", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                                                  "filter": 'userName eq "olive"', "attributes": ["userName"]})
    assert search.status == 200 and search.body["Resources"] == [
        {"schemas": [USER, ENTERPRISE], "id": "olive", "userName": "olive"}]


def test_attributes_and_excluded_attributes(scim):
    only = scim.call("GET", f"/Users/olive?attributes=displayName,{ENTERPRISE}:department").body
    assert set(only) == {"schemas", "id", "displayName", ENTERPRISE} and set(only[ENTERPRISE]) == {"department"}
    without = scim.call("GET", "/Users/olive?excludedAttributes=emails,meta,id").body
    assert "emails" not in without and "meta" not in without and without["id"] == "olive"


@pytest.mark.parametrize("text", [
    "userName", 'userName eq', 'userName zz "x"', 'nosuch eq "x"', 'userName eq "unterminated', '(userName eq "x"',
    'userName eq "x")', 'userName eq "x" and', 'emails[type eq "work"', 'name.nosuch eq "x"', 'active gt true',
    "not userName eq \"x\"", 'userName eq x', "(" * 200 + 'userName eq "x"' + ")" * 200, "x" * 5000, "  ",
    'emails[value eq "a"[type eq "b"]]',
])
def test_bad_filters_are_invalid_filter(scim, text):
    error_of(scim.call("GET", f"/Users?filter={q(text)}"), 400, "invalidFilter")


# --- PATCH as real clients send it ---------------------------------------------------------------------------


def test_patch_add_replace_remove_with_paths(scim):
    created = scim.create(displayName="Pat", title="Dev", name={"givenName": "Pat", "familyName": "Old"})
    uid = created["id"]
    reply = scim.patch(uid, {"op": "replace", "path": "name.familyName", "value": "New"},
                       {"op": "add", "path": "emails", "value": [{"value": "pat@acme.test", "type": "work",
                                                                   "primary": True}]},
                       {"op": "remove", "path": "title"},
                       {"op": "add", "path": f"{ENTERPRISE}:department", "value": "Mobile"},
                       {"op": "replace", "path": f"{ENTERPRISE}:manager", "value": {"value": "mia"}})
    assert reply.status == 200, reply.body
    body = reply.body
    assert body["name"] == {"givenName": "Pat", "familyName": "New"} and "title" not in body
    assert body["emails"][0]["value"] == "pat@acme.test"
    person = scim.person(uid)
    assert (person["email"], person["title"], person["org_unit_id"], person["manager_id"]) == \
        ("pat@acme.test", "", "mobile", "mia")
    removed = scim.patch(uid, {"op": "remove", "path": 'emails[type eq "work"]'},
                         {"op": "remove", "path": f"{ENTERPRISE}:manager"}).body
    assert "emails" not in removed and "manager" not in removed.get(ENTERPRISE, {})
    assert scim.person(uid)["manager_id"] == "" and scim.person(uid)["email"] == ""


def test_patch_quirks_of_okta_and_entra(scim):
    created = scim.create(displayName="Quirky")
    uid = created["id"]
    # Entra: capitalised ops, "False" as a string, no path with dotted keys, the manager as a bare id.
    reply = scim.patch(uid, {"op": "Replace", "path": "active", "value": "False"},
                       {"op": "Add", "value": {"name.givenName": "Quinn", "title": "Lead",
                                               f"{ENTERPRISE}:employeeNumber": "Q-7"}},
                       {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": "lee"},
                       {"op": "Add", "path": 'emails[type eq "work"].value', "value": "q@acme.test"})
    assert reply.status == 200, reply.body
    body = reply.body
    assert body["active"] is False and body["name"]["givenName"] == "Quinn" and body["title"] == "Lead"
    assert body[ENTERPRISE]["employeeNumber"] == "Q-7" and body[ENTERPRISE]["manager"]["value"] == "lee"
    assert body["emails"] == [{"type": "work", "value": "q@acme.test"}]
    person = scim.person(uid)
    assert (person["active"], person["employment_status"], person["manager_id"]) == (False, "TERMINATED", "lee")
    assert person["end_date"] == datetime.now(UTC).date().isoformat()
    # Okta: no path, the value an object; deactivated people stay listed, with active false.
    assert scim.call("GET", f"/Users?filter={q(f'id eq \"{uid}\" and active eq false')}").body["totalResults"] == 1
    back = scim.patch(uid, {"op": "replace", "value": {"active": True, ENTERPRISE: {"department": "Sales"}}}).body
    assert back["active"] is True and back[ENTERPRISE]["department"] == "Sales"
    person = scim.person(uid)
    assert (person["active"], person["employment_status"], person["end_date"], person["org_unit_id"]) == \
        (True, "ACTIVE", "", "sales")


def test_patch_errors(scim):
    uid = scim.create(displayName="Errs")["id"]
    cases = [
        ([{"op": "remove"}], "noTarget"),
        ([{"op": "remove", "path": 'emails[type eq "home"]'}], "noTarget"),
        ([{"op": "replace", "path": 'emails[type eq "home" or primary eq true].value', "value": "x@y.z"}], "noTarget"),
        ([{"op": "replace", "path": "nosuch", "value": "x"}], "invalidPath"),
        ([{"op": "replace", "path": "name.nosuch", "value": "x"}], "invalidPath"),
        ([{"op": "replace", "path": "title[type eq \"x\"]", "value": "x"}], "invalidPath"),
        ([{"op": "replace", "path": 5, "value": "x"}], "invalidPath"),
        ([{"op": "replace", "path": "id", "value": "other"}], "mutability"),
        ([{"op": "replace", "path": "meta", "value": {}}], "mutability"),
        ([{"op": "move", "path": "title", "value": "x"}], "invalidSyntax"),
        ([{"path": "title", "value": "x"}], "invalidSyntax"),
        (["replace"], "invalidSyntax"),
        ([{"op": "replace", "path": 'emails[value eq "unterminated].value', "value": "x"}], "invalidFilter"),
        ([{"op": "replace", "path": "active", "value": "maybe"}], "invalidValue"),
        ([{"op": "replace", "path": "displayName", "value": 42}], "invalidValue"),
        ([{"op": "replace", "value": "not an object"}], "invalidValue"),
        ([{"op": "remove", "path": "userName"}], "invalidValue"),
        ([{"op": "replace", "path": "timezone", "value": "Mars/Olympus"}], "invalidValue"),
        ([{"op": "replace", "path": f"{ENTERPRISE}:manager", "value": {"value": uid}}], "invalidValue"),
    ]
    for operations, scim_type in cases:
        error_of(scim.call("PATCH", f"/Users/{uid}", {"schemas": [PATCH_OP], "Operations": operations}), 400, scim_type)
    error_of(scim.call("PATCH", f"/Users/{uid}", {"Operations": [{"op": "add", "path": "title", "value": "x"}]}),
             400, "invalidSyntax")
    error_of(scim.call("PATCH", f"/Users/{uid}", {"schemas": [PATCH_OP], "Operations": []}), 400, "invalidSyntax")
    assert scim.call("GET", f"/Users/{uid}").body["displayName"] == "Errs"  # nothing half-applied


def test_a_manager_loop_is_refused(scim):
    boss = scim.create(displayName="Boss")["id"]
    report = scim.create(displayName="Report", **{ENTERPRISE: {"manager": {"value": boss}}})["id"]
    error_of(scim.patch(boss, {"op": "add", "path": f"{ENTERPRISE}:manager.value", "value": report}), 400,
             "invalidValue")


# --- deactivation, deletion and coming back -------------------------------------------------------------------


def test_delete_hides_the_user_and_a_post_with_the_same_external_id_restores_them(scim):
    created = scim.create(user_name="leaver", externalId="ext-leaver", displayName="Lee Ver",
                          **{ENTERPRISE: {"department": "Platform"}})
    uid = created["id"]
    assert scim.call("DELETE", f"/Users/{uid}").status == 204
    error_of(scim.call("GET", f"/Users/{uid}"), 404)
    error_of(scim.call("DELETE", f"/Users/{uid}"), 404)
    error_of(scim.call("PATCH", f"/Users/{uid}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "title", "value": "x"}]}), 404)
    assert scim.call("GET", f"/Users?filter={q('userName eq \"leaver\"')}").body["totalResults"] == 0
    person = scim.person(uid)  # the directory keeps them, terminated: their V2MOMs stay
    assert (person["active"], person["employment_status"]) == (False, "TERMINATED")
    back = scim.call("POST", "/Users", user("leaver.again", externalId="ext-leaver", displayName="Lee Ver"))
    assert back.status == 201 and back.body["id"] == uid and back.body["active"] is True
    assert back.body["userName"] == "leaver.again"
    assert scim.person(uid)["employment_status"] == "ACTIVE" and scim.person(uid)["org_unit_id"] == "platform"
    assert scim.db.people.count_documents({"scim_external_id": "ext-leaver"}) == 1


def test_a_post_with_the_user_name_of_a_deactivated_user_restores_them(scim):
    uid = scim.create(user_name="comeback", displayName="Come Back")["id"]
    scim.patch(uid, {"op": "replace", "path": "active", "value": False})
    back = scim.call("POST", "/Users", user("comeback", displayName="Come Back"))
    assert back.status == 201 and back.body["id"] == uid and back.body["active"] is True


def test_duplicates_are_uniqueness_conflicts(scim):
    first = scim.create(user_name="dupe", externalId="ext-dupe", displayName="Dupe")
    error_of(scim.call("POST", "/Users", user("DUPE", displayName="Other")), 409, "uniqueness")
    error_of(scim.call("POST", "/Users", user("another", externalId="ext-dupe")), 409, "uniqueness")
    adopted = scim.call("POST", "/Users", user("otto", displayName="Otto T"))  # the seed's otto: taken over
    assert adopted.status == 201 and adopted.body["id"] == "otto" and scim.person("otto")["org_unit_id"] == "platform"
    error_of(scim.call("POST", "/Users", user("otto")), 409, "uniqueness")  # now SCIM's
    other = scim.create(user_name="not-dupe")
    error_of(scim.patch(other["id"], {"op": "replace", "path": "userName", "value": "Dupe"}), 409, "uniqueness")
    error_of(scim.call("PUT", f"/Users/{other['id']}", user("dupe")), 409, "uniqueness")
    assert scim.call("GET", f"/Users/{first['id']}").body["userName"] == "dupe"


# --- bad input: a SCIM error, never a 500 ----------------------------------------------------------------------


HUGE = "x" * 100_000


@pytest.mark.parametrize("body,scim_type", [
    ({"schemas": [USER]}, "invalidValue"),                                  # no userName
    ({"schemas": [USER], "userName": "  "}, "invalidValue"),
    (user(HUGE), "invalidValue"),
    (user(displayName=HUGE), "invalidValue"),
    (user(displayName=12), "invalidValue"),
    (user(displayName=["a"]), "invalidValue"),
    (user(userName=None), "invalidValue"),
    (user(active="maybe"), "invalidValue"),
    (user(active=1), "invalidValue"),
    (user(name="Just A String"), "invalidValue"),
    (user(name={"givenName": HUGE}), "invalidValue"),
    (user(emails="a@b.c"), "invalidValue"),
    (user(emails=[{"value": "no-at-sign"}]), "invalidValue"),
    (user(emails=[{"value": 5}]), "invalidValue"),
    (user(emails=[{"value": f"{i}@x.y"} for i in range(50)]), "invalidValue"),
    (user(timezone="Not/AZone"), "invalidValue"),
    (user(locale=HUGE), "invalidValue"),
    (user(title={"x": 1}), "invalidValue"),
    (user(externalId=7), "invalidValue"),
    (user(**{ENTERPRISE: "engineering"}), "invalidValue"),
    (user(**{ENTERPRISE: {"department": "No Such Unit"}}), "invalidValue"),
    (user(**{ENTERPRISE: {"department": HUGE}}), "invalidValue"),
    (user(**{ENTERPRISE: {"manager": 5}}), "invalidValue"),
    (user(**{ENTERPRISE: {"manager": {"value": "bad id with spaces"}}}), "invalidValue"),
    (user(**{ENTERPRISE: {"employeeNumber": ["E1"]}}), "invalidValue"),
    (user("bad\u0000name"), "invalidValue"),
])
def test_bad_users_are_refused_with_scim_errors(scim, body, scim_type):
    error_of(scim.call("POST", "/Users", body), 400, scim_type)


@pytest.mark.parametrize("raw", [b"{", b"[]", b'"user"', b"null", b"\xff\xfe", b""])
def test_bodies_that_are_not_json_objects_are_invalid_syntax(scim, raw):
    error_of(scim.call("POST", "/Users", raw=raw), 400, "invalidSyntax")
    error_of(scim.call("PUT", "/Users/olive", raw=raw), 400, "invalidSyntax")
    error_of(scim.call("PATCH", "/Users/olive", raw=raw), 400, "invalidSyntax")


def test_a_body_over_a_megabyte_is_refused(scim):
    error_of(scim.call("POST", "/Users", user(displayName="y" * (1 << 20))), 413)


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_unknown_ids_are_not_found(scim, method):
    body = {"PUT": user(), "PATCH": {"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "title",
                                                                             "value": "x"}]}}.get(method)
    for uid in ("no-such-user", "x" * 3000, "%00", "..%2F..%2Fetc"):
        error_of(scim.call(method, f"/Users/{uid}", body), 404)


@pytest.mark.parametrize("query", ["startIndex=abc", "count=1.5", "count=" + "9" * 400, "startIndex=" + "9" * 400,
                                   "startIndex=-5&count=-5", f"filter={q('userName pr')}&startIndex=" + "9" * 30])
def test_bad_paging_parameters(scim, query):
    reply = scim.call("GET", f"/Users?{query}")
    assert reply.status in (200, 400) and reply.status < 500, reply.body
    if reply.status == 400:
        error_of(reply, 400, "invalidValue")


def test_spoilt_requests_never_get_a_500(scim):
    uid = scim.create(displayName="Target")["id"]
    spoilt = [None, True, 0, -1, 1e308, "", HUGE, [], {}, [None], {"value": None}, {"$ne": 1}, "\u202e\ud7ff",
              [{"value": {"nested": [1]}}]]
    attributes = ["userName", "displayName", "name", "emails", "active", "title", "timezone", "locale",
                  "externalId", "id", "meta", "schemas", ENTERPRISE, f"{ENTERPRISE}:manager",
                  f"{ENTERPRISE}:department", 'emails[type eq "work"].value', "name.givenName"]
    for attribute in attributes:
        for value in spoilt:
            for op in ("add", "replace", "remove"):
                reply = scim.patch(uid, {"op": op, "path": attribute, "value": value})
                assert reply.status < 500, (op, attribute, value, reply.body)
            reply = scim.call("POST", "/Users", {**user(), attribute: value})
            assert reply.status < 500, (attribute, value, reply.body)
    assert json.dumps(scim.call("GET", "/Users?count=200").body)  # the store still reads back
