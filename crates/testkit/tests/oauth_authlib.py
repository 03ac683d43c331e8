"""Drives the testkit's OAuth2 provider with Authlib, an independent OAuth 2.0 /
OpenID Connect client library (ID tokens checked with joserfc, its JOSE library), and
logs in to Dovecot with Python's imaplib.

Reads a JSON configuration on stdin (written by tests/oauth_authlib.rs) and prints
one JSON object per line: {"kind": ..., ...}; the Rust side checks them. Any
exception ends the script with a traceback and a non-zero status.
"""

import imaplib
import json
import sys

import requests
from authlib.integrations.requests_client import AssertionSession, OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import KeySet

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

config = json.load(sys.stdin)
ca = config["ca"]


def emit(kind, **fields):
    print(json.dumps({"kind": kind, **fields}), flush=True)


def imap_xoauth2(user, token):
    """True when Dovecot lets `user` in with the token over XOAUTH2 (imaplib)."""
    imap = imaplib.IMAP4(config["imap_host"], config["imap_port"])
    try:
        raw = f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
        imap.authenticate("XOAUTH2", lambda _challenge: raw)
        status, _ = imap.select("INBOX", readonly=True)
        return status == "OK"
    except imaplib.IMAP4.error:
        return False
    finally:
        try:
            imap.logout()
        except Exception:  # noqa: BLE001 - the server may have closed already
            pass


# 1. Discovery and the signing keys.
meta = requests.get(config["discovery"], verify=ca, timeout=30).json()
emit("discovery", issuer=meta["issuer"], grants=meta["grant_types_supported"])
jwks = requests.get(meta["jwks_uri"], verify=ca, timeout=30).json()
keys = KeySet.import_key_set(jwks)

# 2. Client credentials with a secret (client_secret_basic).
session = OAuth2Session(
    config["confidential_id"],
    config["confidential_secret"],
    token_endpoint_auth_method="client_secret_basic",
)
session.verify = ca
token = session.fetch_token(
    meta["token_endpoint"], grant_type="client_credentials", scope=config["app_scope"]
)
emit("client_credentials", expires_in=token["expires_in"], scope=token.get("scope"))

# 3. Client credentials with a signed assertion (private_key_jwt, RFC 7523 §2.2).
session = OAuth2Session(
    config["jwt_client_id"],
    config["jwt_client_key"],
    token_endpoint_auth_method=PrivateKeyJWT(meta["token_endpoint"], alg="RS256"),
)
session.verify = ca
token = session.fetch_token(
    meta["token_endpoint"], grant_type="client_credentials", scope=config["app_scope"]
)
introspection = OAuth2Session(
    config["introspection_id"],
    config["introspection_secret"],
    token_endpoint_auth_method="client_secret_basic",
)
introspection.verify = ca


def introspect(value):
    response = introspection.introspect_token(meta["introspection_endpoint"], token=value)
    response.raise_for_status()
    return response.json()


emit("private_key_jwt", client_id=introspect(token["access_token"]).get("client_id"))

# 4. The JWT-bearer grant as a Google service account (RFC 7523 §2.1).
assertion = AssertionSession(
    token_endpoint=meta["token_endpoint"],
    issuer=config["service_account"],
    subject=config["delegated_user"],
    audience=meta["token_endpoint"],
    grant_type=JWT_BEARER,
    claims={"scope": config["mail_scope"]},
    key=config["service_account_key"],
    header={"alg": "RS256"},
)
assertion.verify = ca
token = assertion.refresh_token()
claims = introspect(token["access_token"])
emit(
    "jwt_bearer",
    sub=claims.get("sub"),
    scope=claims.get("scope"),
    imap=imap_xoauth2(config["delegated_user"], token["access_token"]),
)

# 5. A user's tokens from the device flow (run by the Rust side): the ID token
# verifies against the published keys, the refresh token rotates.
id_token = jwt.decode(config["id_token"], keys, algorithms=["RS256"])
jwt.JWTClaimsRegistry(
    iss={"essential": True, "value": meta["issuer"]},
    aud={"essential": True, "value": config["public_id"]},
    # The lifetime is the access tokens' (20 s); the check is about who signed it.
    leeway=3600,
).validate(id_token.claims)
id_claims = id_token.claims
emit("id_token", sub=id_claims["sub"], email=id_claims.get("email"))

session = OAuth2Session(config["public_id"], token_endpoint_auth_method="none")
session.verify = ca
old_refresh = config["refresh_token"]
refreshed = session.refresh_token(meta["token_endpoint"], refresh_token=old_refresh)
emit(
    "refresh",
    rotated=refreshed.get("refresh_token") not in (None, old_refresh),
    imap=imap_xoauth2(config["user"], refreshed["access_token"]),
)
try:
    session.refresh_token(meta["token_endpoint"], refresh_token=old_refresh)
    emit("reuse", refused=False)
except Exception as error:  # noqa: BLE001 - authlib raises OAuthError subclasses
    emit("reuse", refused=True, error=str(getattr(error, "error", error)))

# 6. Revocation (RFC 7009) of a fresh access token by its client, then introspection.
fresh = config["fresh_access_token"]
before = imap_xoauth2(config["user"], fresh)
response = session.revoke_token(meta["revocation_endpoint"], token=fresh)
emit(
    "revocation",
    status=response.status_code,
    imap_before=before,
    active_after=introspect(fresh).get("active"),
    imap_after=imap_xoauth2(config["user"], fresh),
)

# 7. Wrong tokens: Dovecot's XOAUTH2 error challenge is base64 JSON.
imap = imaplib.IMAP4(config["imap_host"], config["imap_port"])
challenges = []


def answer(challenge):
    if challenges or challenge:
        challenges.append(challenge.decode() if isinstance(challenge, bytes) else challenge)
        return b""
    return f"user={config['user']}\x01auth=Bearer wrong\x01\x01".encode()


try:
    imap.authenticate("XOAUTH2", answer)
    emit("wrong_token", refused=False)
except imaplib.IMAP4.error:
    decoded = [json.loads(c) for c in challenges if c.startswith("{")]
    emit("wrong_token", refused=True, challenges=decoded)
finally:
    try:
        imap.logout()
    except Exception:  # noqa: BLE001
        pass

emit("done")
