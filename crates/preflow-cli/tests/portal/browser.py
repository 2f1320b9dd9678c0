"""The developer portal driven like a person, in headless Chromium (Debian's chromium,
chromium-driver and python3-selenium; nothing is downloaded).

Run by crates/preflow-cli/tests/serve_portal.rs with the system python3:

    browser.py PORTAL_URL GATEWAY_URL OTHER_GATEWAY_URL SCREENSHOT_DIR OTHER_PORTAL_URL

OTHER_GATEWAY_URL is a second gateway sharing the first one's state through Redis: a key
created in the portal must work there at once, and stop working there at once; its
portal (OTHER_PORTAL_URL) knows the developer and the app.
Exits non-zero (with the reason) at the first check that fails.
"""

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

PORTAL, GATEWAY, OTHER, SHOTS, OTHER_PORTAL = sys.argv[1:6]
PASSWORD = "correct horse battery staple"
SEEN = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    SEEN.append(what)


def shot(driver, name):
    driver.save_screenshot(os.path.join(SHOTS, f"{len(SEEN):02d}-{name}.png"))


def field(driver, label):
    """The input a visible <label> names (as a person finds it)."""
    el = driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']")
    target = el.get_attribute("for")
    check(target, f"label {label!r} names its input")
    return driver.find_element(By.ID, target)


def fill(driver, label, value):
    el = field(driver, label)
    el.clear()
    el.send_keys(value)


def press(driver, text, scope=None):
    (scope or driver).find_element(By.XPATH, f".//button[normalize-space()='{text}']").click()


def http(method, url, headers=None, data=None):
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def token(gateway, client_id, secret):
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    status, body = http(
        "POST",
        f"{gateway}/oauth/OAuthToken",
        {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        b"grant_type=client_credentials",
    )
    return status, (json.loads(body).get("access_token") if status == 200 else None)


def hello(gateway, access_token):
    # The seed's SpikeArrest (10 per second, Edge smoothing, shared through Redis) lets
    # one call through every 100 ms.
    time.sleep(0.15)
    return http("GET", f"{gateway}/v1/test/hello", {"Authorization": f"Bearer {access_token}"})[0]


def sign_up(driver, email, first):
    driver.get(f"{PORTAL}/signup")
    shot(driver, "sign-up")
    fill(driver, "Email", email)
    fill(driver, "First name", first)
    fill(driver, "Password (at least 12 characters)", PASSWORD)
    press(driver, "Sign up")
    WebDriverWait(driver, 10).until(ec.url_to_be(f"{PORTAL}/apps"))


def sign_out(driver):
    press(driver, "Sign out")
    WebDriverWait(driver, 10).until(ec.url_to_be(f"{PORTAL}/"))


def secret_page(driver):
    WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.ID, "client-secret")))
    client_id = driver.find_element(By.ID, "client-id").text.strip()
    secret = driver.find_element(By.ID, "client-secret").text.strip()
    check(len(client_id) >= 16 and len(secret) >= 32, "key and secret shown")
    check(secret not in driver.current_url, "the secret is not in the URL")
    return client_id, secret


def app_row(driver, name):
    rows = driver.find_elements(By.XPATH, f"//tr[@data-app='{name}']")
    return rows[0] if rows else None


def main():
    os.makedirs(SHOTS, exist_ok=True)
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        run(driver)
    except Exception:
        shot(driver, "failure")
        raise
    finally:
        driver.quit()
    print(f"portal browser test: {len(SEEN)} checks passed")


def run(driver):
    # The catalogue: the published product, not the internal one.
    driver.get(f"{PORTAL}/")
    shot(driver, "catalogue")
    page = driver.find_element(By.TAG_NAME, "main").text
    check("Hello world from IFlow" in page, "the catalogue shows the product")
    check("ESBMessaging.Send" in page, "the catalogue shows its scopes")
    check("Cloud Integration message processing" not in page, "internal products are not shown")

    # The API reference, rendered by the vendored Redoc from the bundle's OpenAPI document.
    driver.find_element(By.LINK_TEXT, "hello-api").click()
    WebDriverWait(driver, 30).until(
        ec.presence_of_element_located((By.XPATH, "//*[contains(normalize-space(.), 'Say hello')]"))
    )
    WebDriverWait(driver, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "redoc .api-content, redoc h1, redoc h2")
    )
    time.sleep(0.5)
    shot(driver, "api-reference")
    check("/hello" in driver.find_element(By.TAG_NAME, "redoc").text, "Redoc rendered the paths")

    # Sign up (signed in at once: no approval in the seed), out, and in again.
    sign_up(driver, "ada@example.com", "Ada")
    sign_out(driver)
    driver.get(f"{PORTAL}/signin")
    fill(driver, "Email", "ada@example.com")
    fill(driver, "Password", "not the password")
    press(driver, "Sign in")
    error = WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".error")))
    check("wrong" in error.text, "a wrong password is refused")
    fill(driver, "Email", "ada@example.com")
    fill(driver, "Password", PASSWORD)
    shot(driver, "sign-in")
    press(driver, "Sign in")
    WebDriverWait(driver, 10).until(ec.url_to_be(f"{PORTAL}/apps"))
    shot(driver, "my-apps-empty")

    # Create an app subscribed to the product: key and secret shown once.
    fill(driver, "App name", "weather-station")
    field(driver, "Hello world from IFlow").click()
    press(driver, "Create app")
    client_id, secret = secret_page(driver)
    shot(driver, "app-created")

    # The key works at once, on this gateway and on the other.
    for gw in (GATEWAY, OTHER):
        status, access = token(gw, client_id, secret)
        check(status == 200 and access, f"token with the new key at {gw}: {status}")
        check(hello(gw, access) == 200, f"protected API with the token at {gw}")
    status, access = token(GATEWAY, client_id, secret)
    check(hello(GATEWAY, access) == 200, "protected API again")

    # My apps: status, products and usage counted by the gateway.
    driver.get(f"{PORTAL}/apps")
    row = app_row(driver, "weather-station")
    check(row is not None, "the app is listed")
    check(row.find_element(By.CSS_SELECTOR, ".status").text == "approved", "listed as approved")
    check("IFlowHello" in row.text and client_id in row.text, "listed with product and key")
    check(int(row.find_element(By.CSS_SELECTOR, ".requests").text) >= 2, "usage counted")
    check(secret not in driver.page_source, "the list never shows the secret")
    shot(driver, "my-apps")

    # Rotate: the new secret works, the old one is refused, everywhere.
    press(driver, "Rotate secret", row)
    rotated_id, new_secret = secret_page(driver)
    check(rotated_id == client_id and new_secret != secret, "a new secret for the same key")
    shot(driver, "secret-rotated")
    for gw in (GATEWAY, OTHER):
        check(token(gw, client_id, secret)[0] == 401, f"old secret refused at {gw}")
        status, access = token(gw, client_id, new_secret)
        check(status == 200 and hello(gw, access) == 200, f"new secret works at {gw}")

    # Revoke: the key and its tokens stop working, everywhere.
    driver.get(f"{PORTAL}/apps")
    rotate_action = app_row(driver, "weather-station").find_element(
        By.XPATH, ".//form[button[normalize-space()='Rotate secret']]"
    ).get_attribute("action")
    before = app_row(driver, "weather-station")
    press(driver, "Revoke", before)
    # Back on /apps (where it started): wait for the new page, not the URL.
    WebDriverWait(driver, 10).until(ec.staleness_of(before))
    row = app_row(driver, "weather-station")
    check(row.find_element(By.CSS_SELECTOR, ".status").text == "revoked", "listed as revoked")
    check(not row.find_elements(By.XPATH, ".//button"), "a revoked app has no actions")
    shot(driver, "app-revoked")
    for gw in (GATEWAY, OTHER):
        check(token(gw, client_id, new_secret)[0] == 401, f"revoked key refused at {gw}")
        check(hello(gw, access) == 401, f"revoked app's token refused at {gw}")

    # Another developer sees none of it.
    sign_out(driver)
    sign_up(driver, "grace@example.com", "Grace")
    check(app_row(driver, "weather-station") is None, "another developer does not see the app")
    check(client_id not in driver.page_source, "nor its key")
    # Nor can she act on it over HTTP with her own session and CSRF token: 404, as for
    # an app that does not exist.
    cookie = driver.get_cookie("preflow_portal")["value"]
    csrf = driver.find_element(By.NAME, "csrf").get_attribute("value")
    status, body = http(
        "POST",
        rotate_action,
        {"Cookie": f"preflow_portal={cookie}", "Content-Type": "application/x-www-form-urlencoded"},
        f"csrf={csrf}".encode(),
    )
    check(status == 404 and "client-secret" not in body, f"another developer's rotate: {status}")

    # The other instance's portal: the developer signs in there (a registry record
    # shared through Redis) and finds the app as this one left it.
    driver.get(f"{OTHER_PORTAL}/signin")
    fill(driver, "Email", "ada@example.com")
    fill(driver, "Password", PASSWORD)
    press(driver, "Sign in")
    WebDriverWait(driver, 10).until(ec.url_to_be(f"{OTHER_PORTAL}/apps"))
    row = app_row(driver, "weather-station")
    check(row is not None, "the other instance's portal lists the app")
    check(row.find_element(By.CSS_SELECTOR, ".status").text == "revoked", "as revoked")
    shot(driver, "other-instance")
    shot(driver, "other-developer")


if __name__ == "__main__":
    main()
