"""Identity in the kernel (services/platform/api/auth.py, jwks.py): people's tokens from an OIDC provider's
JWKS with kid rotation and leeway, roles from the directory, service credentials that yield only service
principals and only for the RPCs granted."""

import hashlib
import hmac
import http.server
import json
import threading
import time
from dataclasses import replace

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.utils import base64url_encode

from services.platform.api.auth import (
    Authenticator, PersonRecord, ServiceCredential, UserTokens, bearer_metadata, grant, mint_dev_token,
)
from services.platform.api.jwks import JwksKeys
from services.platform.core.config import AuthSettings, ConfigError, dev_service_secret
from services.platform.core.errors import PermissionDenied, Unauthenticated, Unavailable
from tests.support.idp import AUDIENCE, ISSUER, IdentityProvider

GET_PERSON = "/v2mom.v1.GoalService/GetPerson"
CREATE = "/v2mom.v1.GoalService/CreateV2MOM"
PEOPLE = {"ann": PersonRecord(frozenset({"admin"}), True), "leo": PersonRecord(frozenset(), False)}
GOALS = AuthSettings(service="goals")
GRANTS = {"checkins": grant("GetPerson", "GetV2MOM")}


@pytest.fixture
def idp(tmp_path):
    return IdentityProvider(tmp_path)


def who(authenticator, token, method=GET_PERSON):
    return authenticator.caller(bearer_metadata(token), method)


def test_an_idp_token_names_the_person_and_the_directory_gives_the_roles(idp):
    authenticator = Authenticator(idp.auth_settings(GOALS), PEOPLE.get, GRANTS)
    ann = who(authenticator, idp.token("ann", roles=["nothing-from-here-counts"]))
    assert (ann.person_id, ann.roles, ann.is_service) == ("ann", frozenset({"admin"}), False)
    with pytest.raises(Unauthenticated, match="'eve' is not a person in the org directory"):
        who(authenticator, idp.token("eve", roles=["admin"]))
    with pytest.raises(PermissionDenied, match="leo is no longer active"):
        who(authenticator, idp.token("leo"))


def test_with_an_idp_configured_development_tokens_are_refused(idp):
    authenticator = Authenticator(idp.auth_settings(GOALS), PEOPLE.get)
    dev_signed = jwt.encode({"sub": "ann", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600},
                            GOALS.secret, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="invalid token"):
        who(authenticator, dev_signed)
    with pytest.raises(ConfigError, match="identity provider"):
        mint_dev_token(idp.auth_settings(GOALS), "ann")


def test_the_public_key_as_an_hmac_secret_is_refused(idp):
    # The classic algorithm confusion: an HS256 token whose HMAC key is the provider's published public key.
    authenticator = Authenticator(idp.auth_settings(GOALS), PEOPLE.get)
    public = idp.keys[idp.kid].public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": idp.kid}
    claims = {"sub": "ann", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600}
    signing_input = b".".join(base64url_encode(json.dumps(part).encode()) for part in (header, claims))
    forged = signing_input + b"." + base64url_encode(hmac.new(public, signing_input, hashlib.sha256).digest())
    with pytest.raises(Unauthenticated, match="invalid token"):
        who(authenticator, forged.decode())


def test_a_rotated_key_is_fetched_on_its_first_token_and_a_retired_one_stops_working(idp):
    clock = [1000.0]
    auth = idp.auth_settings(GOALS, refetch_seconds=30.0)
    keys = JwksKeys(file=auth.jwks_file, refetch_seconds=30.0, clock=lambda: clock[0], max_age_seconds=300.0)
    authenticator = Authenticator(auth, PEOPLE.get, user_tokens=UserTokens(auth, keys))
    old_kid, old_key = idp.kid, idp.keys[idp.kid]
    assert who(authenticator, idp.token("ann")).person_id == "ann"
    new_kid = idp.rotate()  # published after the server read the set: its unknown kid makes it read again
    clock[0] += 31  # (not sooner than refetch_seconds after the last read)
    assert who(authenticator, idp.token("ann", kid=new_kid)).person_id == "ann"
    assert who(authenticator, idp.token("ann", kid=old_kid, ttl_seconds=601)).person_id == "ann"
    idp.rotate(drop_old=True)  # the provider retires both
    clock[0] += 301  # the set is read again once it is old
    retired = jwt.encode({"sub": "ann", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600},
                         old_key, algorithm="RS256", headers={"kid": old_kid})
    with pytest.raises(Unauthenticated, match="no signing key"):
        who(authenticator, retired)


def test_unknown_kids_refetch_the_jwks_at_most_once_per_interval(idp):
    reads = []
    clock = [1000.0]
    keys = JwksKeys(file=str(idp.jwks_file), refetch_seconds=30.0, clock=lambda: clock[0])
    original = keys._read
    keys._read = lambda: reads.append(1) or original()
    keys.key_for(idp.kid)
    for n in range(20):  # a flood of made-up kids
        with pytest.raises(Unauthenticated):
            keys.key_for(f"made-up-{n}")
    assert len(reads) == 1
    new_kid = idp.rotate()
    clock[0] += 31
    assert keys.key_for(new_kid).algorithm_name == "RS256"
    assert len(reads) == 2


def test_clock_skew_within_the_leeway_is_accepted_and_beyond_it_refused(idp):
    authenticator = Authenticator(idp.auth_settings(replace(GOALS, leeway_seconds=30.0)), PEOPLE.get)
    now = int(time.time())
    assert who(authenticator, idp.token("ann", ttl_seconds=-10)).person_id == "ann"  # expired 10 s ago
    assert who(authenticator, idp.token("ann", nbf=now + 10, iat=now + 10)).person_id == "ann"  # issuer clock ahead
    with pytest.raises(Unauthenticated, match="expired"):
        who(authenticator, idp.token("ann", ttl_seconds=-60))


def test_a_service_credential_is_a_service_principal_for_granted_rpcs_only():
    authenticator = Authenticator(GOALS, PEOPLE.get, GRANTS)
    token = ServiceCredential(AuthSettings(service="checkins"), "goals").token()
    checkins = who(authenticator, token, GET_PERSON)
    assert (checkins.person_id, checkins.service, checkins.is_admin) == ("svc:checkins", "checkins", False)
    with pytest.raises(PermissionDenied, match="svc:checkins may not call CreateV2MOM on goals"):
        who(authenticator, token, CREATE)


def test_no_service_credential_can_become_a_person():
    authenticator = Authenticator(GOALS, PEOPLE.get, GRANTS)
    now = int(time.time())
    secret = dev_service_secret("checkins")
    as_ann = jwt.encode({"iss": "v2mom-service", "sub": "ann", "aud": "svc:goals", "exp": now + 60}, secret, "HS256")
    with pytest.raises(Unauthenticated, match="no calls from service 'ann'"):
        who(authenticator, as_ann)
    # Signed with checkins' secret as a person's token (no service issuer): not the user tokens' key.
    person_shaped = jwt.encode({"iss": GOALS.issuer, "sub": "ann", "aud": GOALS.audience, "exp": now + 60}, secret, "HS256")
    with pytest.raises(Unauthenticated, match="Signature"):
        who(authenticator, person_shaped)
    # A person's token cannot name a service either.
    with pytest.raises(Unauthenticated, match="cannot name a service"):
        who(authenticator, mint_dev_token(GOALS, "svc:checkins"))


def test_a_service_token_is_for_one_callee_and_one_caller_secret():
    authenticator = Authenticator(GOALS, PEOPLE.get, GRANTS)
    for_metrics_api = ServiceCredential(AuthSettings(service="checkins"), "metrics").token()
    with pytest.raises(Unauthenticated, match="Audience doesn.t match"):
        who(authenticator, for_metrics_api)
    ungranted = ServiceCredential(AuthSettings(service="metrics"), "goals").token()
    with pytest.raises(Unauthenticated, match="takes no calls from service 'svc:metrics'"):
        who(authenticator, ungranted)
    wrong_secret = ServiceCredential(AuthSettings(service="checkins", service_secret="x" * 40), "goals").token()
    with pytest.raises(Unauthenticated, match="Signature"):
        who(authenticator, wrong_secret)


def test_the_jwks_is_read_from_the_providers_url_and_an_unreachable_provider_is_unavailable(idp):
    body = idp.jwks_file.read_bytes()

    class Jwks(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    try:
        auth = replace(idp.auth_settings(GOALS), jwks_file="", jwks_url=url)
        assert who(Authenticator(auth, PEOPLE.get), idp.token("ann")).person_id == "ann"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    with pytest.raises(Unavailable, match="identity provider's keys .* cannot be read"):
        who(Authenticator(auth, PEOPLE.get), idp.token("ann"))


def test_in_production_a_callee_refuses_to_start_without_its_callers_keys():
    production = AuthSettings(service="goals", service_secret="s" * 40, production=True, jwks_url="https://idp")
    with pytest.raises(ConfigError, match="set SERVICE_KEYS=checkins=<its SERVICE_SECRET>"):
        Authenticator(production, PEOPLE.get, GRANTS)
    known = replace(production, service_keys=(("checkins", "c" * 40),))
    assert Authenticator(known, PEOPLE.get, GRANTS).services.grants == GRANTS
