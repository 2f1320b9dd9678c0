"""Python OAuth clients against a running `preflow serve examples/seed`.

Usage: python clients.py BASE_URL

Gets tokens from the seed's token API with requests-oauthlib (BackendApplicationClient,
client_secret_basic and client_secret_post) and Authlib (client_secret_basic and
client_secret_post), and calls the protected API with each. Exits non-zero on the first
failure; prints one line per check and a closing "N passed, N failed" line.
"""

import os
import sys
import time

# requests-oauthlib refuses plain http unless told that this is a loopback test.
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")

import requests  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession  # noqa: E402
from oauthlib.oauth2 import BackendApplicationClient, InvalidClientError  # noqa: E402
from requests_oauthlib import OAuth2Session  # noqa: E402

BASE = sys.argv[1].rstrip("/")
TOKEN_URL = BASE + "/oauth/OAuthToken"
API = BASE + "/v1/test/hello"
CID, SECRET = "demo-client", "demo-secret"
HELLO = "Hello world from IFlow"

passed = 0
failed = 0


def pace():
    # The seed's SpikeArrest allows one call every 100 ms.
    time.sleep(0.12)


def check(name, fn):
    global passed, failed
    try:
        fn()
    except Exception as e:  # report every failure with its cause
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")
    else:
        passed += 1
        print(f"ok   {name}")


def call_api(session):
    pace()
    r = session.get(API)
    assert r.status_code == 200, (r.status_code, r.headers, r.text)
    assert r.text == HELLO, r.text


def token_shape(token):
    assert token["token_type"].lower() == "bearer", token
    assert isinstance(token["expires_in"], int) and token["expires_in"] > 0, token
    assert len(token["access_token"]) >= 43, token


def requests_oauthlib_basic():
    s = OAuth2Session(client=BackendApplicationClient(client_id=CID))
    token = s.fetch_token(TOKEN_URL, client_id=CID, client_secret=SECRET)
    token_shape(token)
    call_api(s)


def requests_oauthlib_post():
    s = OAuth2Session(client=BackendApplicationClient(client_id=CID))
    token = s.fetch_token(TOKEN_URL, client_id=CID, client_secret=SECRET, include_client_id=True)
    token_shape(token)
    call_api(s)


def requests_oauthlib_wrong_secret():
    s = OAuth2Session(client=BackendApplicationClient(client_id=CID))
    try:
        s.fetch_token(TOKEN_URL, client_id=CID, client_secret="wrong")
    except InvalidClientError:
        return
    raise AssertionError("a wrong secret got a token")


def authlib_basic():
    s = AuthlibSession(CID, SECRET, token_endpoint_auth_method="client_secret_basic")
    token = s.fetch_token(TOKEN_URL, grant_type="client_credentials")
    token_shape(token)
    call_api(s)


def authlib_post():
    s = AuthlibSession(CID, SECRET, token_endpoint_auth_method="client_secret_post")
    token = s.fetch_token(TOKEN_URL, grant_type="client_credentials")
    token_shape(token)
    call_api(s)


def authlib_wrong_secret():
    from authlib.integrations.base_client.errors import OAuthError

    s = AuthlibSession(CID, "wrong", token_endpoint_auth_method="client_secret_basic")
    try:
        token = s.fetch_token(TOKEN_URL, grant_type="client_credentials")
    except OAuthError as e:
        assert e.error == "invalid_client", e.error
        return
    raise AssertionError(f"a wrong secret got {token!r}")


def plain_requests_without_token():
    pace()
    r = requests.get(API)
    assert r.status_code == 401, r.status_code
    assert r.headers["WWW-Authenticate"].startswith("Bearer "), r.headers
    assert HELLO not in r.text


def main():
    check("requests-oauthlib BackendApplicationClient, client_secret_basic", requests_oauthlib_basic)
    check("requests-oauthlib BackendApplicationClient, client_secret_post", requests_oauthlib_post)
    check("requests-oauthlib wrong secret -> InvalidClientError", requests_oauthlib_wrong_secret)
    check("authlib client_secret_basic", authlib_basic)
    check("authlib client_secret_post", authlib_post)
    check("authlib wrong secret -> invalid_client", authlib_wrong_secret)
    check("requests without a token -> 401 Bearer challenge", plain_requests_without_token)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
