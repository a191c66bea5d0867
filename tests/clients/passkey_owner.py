#!/usr/bin/env python3
"""Passkeys on "Gestione account" in a real headless Chromium (Debian's, driven by
Playwright) with DevTools' virtual authenticator (CTAP2, internal, user verified) on
https://localhost:PORT (WebAuthn needs a DNS name). Turns 2FA on with a passkey, logs in
with password + passkey, is refused with another person's key and with a copied key whose
counter went back, turns 2FA off with the passkey. Prints one JSON object. Loopback only;
every wait bounded.

  passkey_owner.py --web PORT --address A --password MAIN --shots DIR
"""
import argparse
import json
import os
import urllib.parse

from playwright.sync_api import sync_playwright

TIMEOUT = 15
OPTIONS = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
           "hasUserVerification": True, "isUserVerified": True,
           "automaticPresenceSimulation": True}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--web", type=int, required=True)
    for name in ["--address", "--password", "--shots", "--cafile"]:
        p.add_argument(name, required=True)
    args = p.parse_args()
    os.makedirs(args.shots, exist_ok=True)
    base = f"https://localhost:{args.web}"
    out = {"screenshots": []}

    def shot(page, name):
        path = os.path.join(args.shots, f"passkey-{len(out['screenshots']) + 1:02d}-{name}.png")
        page.screenshot(path=path, full_page=True)
        out["screenshots"].append(path)

    def path(page):
        return urllib.parse.urlparse(page.url).path

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--ignore-certificate-errors"])
        ctx = browser.new_context(ignore_https_errors=True, locale="it-IT")
        ctx.set_default_timeout(TIMEOUT * 1000)
        page = ctx.new_page()
        cdp = ctx.new_cdp_session(page)
        cdp.send("WebAuthn.enable", {"enableUI": False})
        mine = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": OPTIONS})["authenticatorId"]

        def login(then_passkey=True):
            page.goto(f"{base}/login")
            page.fill("#login", args.address)
            page.fill("#password", args.password)
            page.click("#submit")
            if then_passkey:
                with page.expect_navigation():
                    page.click("#passkey-login")

        # --- 2FA on with a passkey ---------------------------------------------------
        login(then_passkey=False)
        out["logged_in"] = path(page)
        page.click("#manage-2fa")
        page.click("#enable")
        out["register_offered"] = page.is_visible("#passkey-register")
        shot(page, "choose-device")
        page.click("#passkey-register")
        page.wait_for_url("**/account/2fa/recovery")
        out["after_register"] = path(page)
        out["recovery_codes"] = len([l for l in page.inner_text("#recovery-codes").splitlines() if l.strip()])
        page.goto(f"{base}/account/2fa")
        out["device_kind"] = page.inner_text("#device-kind")
        shot(page, "passkey-on")
        creds = cdp.send("WebAuthn.getCredentials", {"authenticatorId": mine})["credentials"]
        out["credentials"] = len(creds)
        out["sign_count_after_register"] = creds[0]["signCount"] if creds else None

        # --- log out; in again with password + passkey ---------------------------------
        page.click("#logout")
        login(then_passkey=False)
        out["code_step"] = path(page)
        out["passkey_offered_at_login"] = page.is_visible("#passkey-login")
        shot(page, "login-passkey")
        with page.expect_navigation():
            page.click("#passkey-login")
        out["after_passkey_login"] = path(page)
        if out["after_passkey_login"] != "/account":
            alerts = page.locator("[role=alert]")
            out["login_failure"] = [alerts.nth(i).inner_text() for i in range(alerts.count())]
            print(json.dumps(out))
            return

        # --- another person's key: refused --------------------------------------------
        page.click("#logout")
        saved = cdp.send("WebAuthn.getCredentials", {"authenticatorId": mine})["credentials"][0]
        cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": mine})
        other = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": OPTIONS})["authenticatorId"]
        login(then_passkey=False)
        page.click("#passkey-login")
        page.wait_for_selector("form [role=alert]:not([hidden])")
        out["other_key_error"] = page.inner_text("form [role=alert]")
        out["other_key_at"] = path(page)

        # --- a copy of the key whose counter went back: refused, the owner told --------
        cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": other})
        copy = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": OPTIONS})["authenticatorId"]
        cloned = dict(saved, signCount=0)
        cdp.send("WebAuthn.addCredential", {"authenticatorId": copy, "credential": {
            k: cloned[k] for k in ("credentialId", "isResidentCredential", "rpId", "privateKey", "signCount")
            if k in cloned}})
        page.goto(f"{base}/login/code")
        with page.expect_navigation():
            page.click("#passkey-login")
        out["cloned_at"] = path(page)
        out["cloned_message"] = page.inner_text("#flash") if page.is_visible("#flash") else None

        # --- the key itself again (its counter moved on): in, then 2FA off with it -----
        cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": copy})
        back = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": OPTIONS})["authenticatorId"]
        ahead = dict(saved, signCount=saved["signCount"] + 10)
        cdp.send("WebAuthn.addCredential", {"authenticatorId": back, "credential": {
            k: ahead[k] for k in ("credentialId", "isResidentCredential", "rpId", "privateKey", "signCount")
            if k in ahead}})
        page.goto(f"{base}/login/code")
        page.click("#passkey-login")
        page.wait_for_url("**/account")
        out["own_key_again"] = path(page)
        page.goto(f"{base}/account/2fa")
        page.click("#disable")
        out["disable_warning"] = page.inner_text("#warning")
        out["disable_with_passkey"] = page.is_visible("#confirm-passkey")
        shot(page, "disable-with-passkey")
        page.click("#confirm-passkey")
        page.wait_for_url("**/account")
        out["two_factor_after_disable"] = page.inner_text("#two-factor-state")
        browser.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
