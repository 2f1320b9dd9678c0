"""The seed scenario over TLS and HTTP/2 against a running `preflow serve examples/seed`.

Usage: python tls_h2.py HTTP_BASE HTTPS_PORT CA_PEM

* Python `requests` (HTTP/1.1) over TLS to https://localhost:HTTPS_PORT, verifying the
  certificate against CA_PEM: gets a token with the client credentials grant and calls
  the protected API; an unverified CA (the system's) is refused.
* `httpx` with HTTP/2 over TLS (ALPN h2) and with HTTP/2 prior knowledge (h2c) on the
  plain HTTP_BASE: the same token call and API call, and the negotiated version checked.

Exits non-zero on the first failure; prints one line per check and a closing
"N passed, N failed" line.
"""

import sys
import time

import httpx
import requests

HTTP_BASE = sys.argv[1].rstrip("/")
HTTPS_BASE = f"https://localhost:{sys.argv[2]}"
CA = sys.argv[3]
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


def requests_over_tls():
    pace()
    r = requests.post(
        HTTPS_BASE + "/oauth/OAuthToken",
        data={"grant_type": "client_credentials"},
        auth=(CID, SECRET),
        verify=CA,
        timeout=10,
    )
    assert r.status_code == 200, (r.status_code, r.text)
    token = r.json()["access_token"]
    pace()
    r = requests.get(
        HTTPS_BASE + "/v1/test/hello",
        headers={"Authorization": f"Bearer {token}"},
        verify=CA,
        timeout=10,
    )
    assert r.status_code == 200 and r.text == HELLO, (r.status_code, r.text)


def requests_refuses_an_unknown_ca():
    try:
        requests.get(HTTPS_BASE + "/v1/test/hello", timeout=10)
    except requests.exceptions.SSLError:
        return
    raise AssertionError("the example CA is not a system CA: verification must fail")


def httpx_scenario(client, base, version):
    pace()
    r = client.post(
        base + "/oauth/OAuthToken",
        data={"grant_type": "client_credentials"},
        auth=(CID, SECRET),
    )
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.http_version == version, r.http_version
    token = r.json()["access_token"]
    pace()
    r = client.get(base + "/v1/test/hello", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.text == HELLO, (r.status_code, r.text)
    assert r.http_version == version, r.http_version


def httpx_h2_over_tls():
    with httpx.Client(http2=True, verify=CA, timeout=10) as c:
        httpx_scenario(c, HTTPS_BASE, "HTTP/2")


def httpx_h2c_prior_knowledge():
    with httpx.Client(http1=False, http2=True, timeout=10) as c:
        httpx_scenario(c, HTTP_BASE, "HTTP/2")


def httpx_http1_over_tls():
    with httpx.Client(http2=False, verify=CA, timeout=10) as c:
        httpx_scenario(c, HTTPS_BASE, "HTTP/1.1")


check("requests over TLS verifying the example CA", requests_over_tls)
check("requests refuses the example certificate without its CA", requests_refuses_an_unknown_ca)
check("httpx HTTP/2 over TLS (ALPN h2)", httpx_h2_over_tls)
check("httpx HTTP/2 prior knowledge on plain HTTP (h2c)", httpx_h2c_prior_knowledge)
check("httpx HTTP/1.1 over TLS", httpx_http1_over_tls)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
