#!/usr/bin/env python3
"""The mailbox owner's whole flow on "Gestione account", in a real headless Chromium
(Debian's, driven by Playwright), with the proxy checked in between by imaplib and
smtplib. Prints one JSON object of what it saw; the Rust test asserts on it. Loopback
only; every wait is bounded.

  web_owner.py --web PORT --imaps PORT --submissions PORT --cafile F --address A
               --password MAIN --shots DIR --postpone-opens-after SECONDS
"""
import argparse
import imaplib
import json
import os
import smtplib
import ssl
import sys
import time
import urllib.parse

from playwright.sync_api import sync_playwright

from otp import totp

TIMEOUT = 15


def tls(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False  # the test certificate names 127.0.0.1/localhost; the CA check stays
    return ctx


def imap_login(args, password):
    try:
        conn = imaplib.IMAP4_SSL("127.0.0.1", args.imaps, ssl_context=tls(args.cafile), timeout=TIMEOUT)
        try:
            typ, _ = conn.login(args.address, password)
            conn.logout()
            return typ == "OK"
        except imaplib.IMAP4.error:
            return False
    except OSError as e:
        return f"error: {e}"


def smtp_send(args, password):
    msg = (
        f"From: {args.address}\r\nTo: {args.address}\r\nSubject: sent after the web page\r\n"
        "Message-ID: <web-flow@pec.example.it>\r\n\r\nciao\r\n"
    )
    try:
        with smtplib.SMTP_SSL("127.0.0.1", args.submissions, context=tls(args.cafile), timeout=TIMEOUT) as s:
            s.login(args.address, password)
            s.sendmail(args.address, [args.address], msg)
        return True
    except smtplib.SMTPException as e:
        return f"refused: {e}"


def main():
    p = argparse.ArgumentParser()
    for name in ["--web", "--imaps", "--submissions", "--postpone-opens-after"]:
        p.add_argument(name, type=int, required=True)
    for name in ["--cafile", "--address", "--password", "--shots"]:
        p.add_argument(name, required=True)
    args = p.parse_args()
    os.makedirs(args.shots, exist_ok=True)
    base = f"https://127.0.0.1:{args.web}"
    out = {}
    shots = []

    def shot(page, name):
        path = os.path.join(args.shots, f"{len(shots) + 1:02d}-{name}.png")
        page.screenshot(path=path, full_page=True)
        shots.append(path)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        ctx = browser.new_context(ignore_https_errors=True, locale="it-IT")
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        ctx.set_default_timeout(TIMEOUT * 1000)
        page = ctx.new_page()

        # --- login: a wrong password first, then the main password (2FA off) ---------
        page.goto(f"{base}/account")
        out["unauthenticated_goes_to"] = urllib.parse.urlparse(page.url).path
        shot(page, "login")
        out["login_heading"] = page.inner_text("h1")
        page.fill("#login", args.address)
        page.fill("#password", "not-the-password")
        page.click("#submit")
        out["wrong_password_message"] = page.inner_text("#flash")
        page.fill("#login", args.address)
        page.fill("#password", args.password)
        page.click("#submit")
        out["after_login"] = urllib.parse.urlparse(page.url).path
        cookies = {c["name"]: c for c in ctx.cookies()}
        c = cookies.get("sentinella_session", {})
        out["cookie"] = {"secure": c.get("secure"), "httpOnly": c.get("httpOnly"), "sameSite": c.get("sameSite")}
        shot(page, "overview-2fa-off")
        out["two_factor_initially"] = page.inner_text("#two-factor-state")
        out["needs_2fa_shown"] = page.is_visible("#needs-2fa")

        # --- the page in English, and back ------------------------------------------
        page.click("#lang")
        out["english_heading"] = page.inner_text("h1")
        shot(page, "overview-english")
        page.click("#lang")
        out["italian_heading"] = page.inner_text("h1")

        # --- a form without its CSRF token: 403, nothing changed --------------------
        r = page.request.post(f"{base}/account/protocols", form={"imap": "on"})
        out["csrf_missing_status"] = r.status
        r = page.request.post(f"{base}/account/protocols", form={"imap": "on", "csrf": "0" * 32})
        out["csrf_wrong_status"] = r.status
        page.goto(f"{base}/account")
        out["protocols_after_csrf"] = [page.is_checked(f"#proto-{p}") for p in ("imap", "pop3", "smtp")]

        # --- Verifica in 2 passaggi: Attiva, with the QR code and a code --------------
        page.click("#manage-2fa")
        page.click("#enable")
        out["qr_is_an_image"] = page.locator("#qr svg").count() == 1
        uri = page.inner_text("#otpauth-uri")
        out["uri_scheme"] = uri.split(":")[0]
        secret = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]
        shot(page, "2fa-enable")
        page.fill("#code", "000000" if totp(secret, time.time() - 30) != "000000" else "111111")
        page.click("#confirm")
        out["wrong_enable_code"] = page.inner_text("#flash")
        # A device that was started but not confirmed is shown again, the same one (the
        # owner may have scanned it); a reload does not replace it either.
        page.click("#manage-2fa")
        again = page.inner_text("#otpauth-uri")
        page.reload()
        out["same_device_shown_again"] = again == uri and page.inner_text("#otpauth-uri") == uri
        secret = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]
        enabling_code = totp(secret, time.time() - 30)  # the previous step: within the skew
        page.fill("#code", enabling_code)
        page.click("#confirm")
        # Turned on: the recovery codes, once, with Copy and a text file to download.
        out["after_enable_at"] = urllib.parse.urlparse(page.url).path
        out["enabled_message"] = page.inner_text("#flash")
        codes = [l.strip() for l in page.inner_text("#recovery-codes").splitlines() if l.strip()]
        out["recovery_codes_shown"] = len(codes)
        shot(page, "recovery-codes")
        with page.expect_download() as d:
            page.click("#download-recovery")
        saved = os.path.join(args.shots, "recovery.txt")
        d.value.save_as(saved)
        with open(saved) as f:
            out["recovery_file_matches"] = [l.strip() for l in f if l.strip()] == codes
        page.reload()
        out["recovery_gone_after_reload"] = page.is_visible("#gone")
        page.goto(f"{base}/account")
        out["two_factor_after_enable"] = page.inner_text("#two-factor-state")
        out["device_since_shown"] = page.is_visible("#device-since")
        out["main_password_imap_under_2fa"] = imap_login(args, args.password)

        # --- log out, log in again: main password, then a code (a used one refused) --
        page.click("#logout")
        out["after_logout"] = urllib.parse.urlparse(page.url).path
        page.goto(f"{base}/account")
        out["account_after_logout"] = urllib.parse.urlparse(page.url).path
        page.fill("#login", args.address)
        page.fill("#password", args.password)
        page.click("#submit")
        out["second_step"] = urllib.parse.urlparse(page.url).path
        shot(page, "login-code")
        # The enabling code itself, whatever step the clock is in now: spent (or, after a
        # step boundary, out of the window) either way.
        page.fill("#code", enabling_code)
        page.click("#submit")
        out["reused_code"] = page.inner_text("#flash")
        page.fill("#code", totp(secret, time.time()))
        page.click("#submit")
        out["after_code"] = urllib.parse.urlparse(page.url).path

        # --- Protocolli: none enabled shows the warning --------------------------------
        for proto in ("imap", "pop3", "smtp"):
            page.uncheck(f"#proto-{proto}")
        page.click("#save-protocols")
        out["no_protocol_warning"] = page.inner_text("#no-protocol") if page.is_visible("#no-protocol") else None
        shot(page, "no-protocol")
        for proto in ("imap", "pop3", "smtp"):
            page.check(f"#proto-{proto}")
        page.click("#save-protocols")
        out["protocols_enabled"] = [page.is_checked(f"#proto-{p}") for p in ("imap", "pop3", "smtp")]

        # --- Genera: shown once, Copia, Scadenza; no-store; a reload shows nothing ---
        with page.expect_response(lambda r: r.url.endswith("/account/app-passwords/new")) as resp:
            page.click("#generate")
        out["reveal_cache_control"] = resp.value.headers.get("cache-control")
        out["reveal_csp"] = resp.value.headers.get("content-security-policy")
        out["reveal_frame_options"] = resp.value.headers.get("x-frame-options")
        password = page.inner_text("#new-password")
        out["password_shape"] = [len(g) for g in password.split("-")]
        out["close_warning"] = page.inner_text("#close-warning")
        out["expiry_shown"] = page.inner_text("#new-expiry")
        out["password_in_url"] = password in page.url
        page.click("#copy")
        out["copied"] = page.evaluate("navigator.clipboard.readText()") == password
        out["copy_button_after"] = page.inner_text("#copy")
        shot(page, "app-password-shown-once")
        page.reload()
        out["after_reload_gone"] = page.is_visible("#gone")
        out["password_after_reload"] = password in page.content()

        # --- the proxy: IMAP with it, a message through submission ------------------
        out["imap_with_app_password"] = imap_login(args, password)
        out["smtp_with_app_password"] = smtp_send(args, password)

        # --- Posticipa: refused with its date, then allowed -------------------------
        page.goto(f"{base}/account")
        shot(page, "app-passwords")
        row = page.locator(".app-password").first
        out["postpone_disabled"] = row.locator("button.postpone").is_disabled()
        out["postpone_from"] = row.locator(".postpone-from").inner_text()
        out["last_use_shown"] = row.locator(".last-use").inner_text()
        time.sleep(args.postpone_opens_after + 1)
        page.reload()
        row = page.locator(".app-password").first
        out["postpone_enabled_later"] = row.locator("button.postpone").is_enabled()
        expiry_before = row.locator(".expiry").inner_text()
        row.locator("button.postpone").click()
        out["postpone_message"] = page.inner_text("#flash")
        out["expiry_moved"] = page.locator(".app-password .expiry").first.inner_text() != expiry_before

        # --- Genera nuova password: after a confirmation; the old one refused at once --
        page.locator(".app-password button.regenerate").first.click()
        out["regenerate_warning"] = page.inner_text("#warning")
        shot(page, "regenerate-confirm")
        page.click("#confirm")
        new_password = page.inner_text("#new-password")
        out["regenerated_differs"] = new_password != password
        out["old_password_imap"] = imap_login(args, password)
        out["new_password_imap"] = imap_login(args, new_password)

        # --- Disattiva: after a confirmation ------------------------------------------
        page.goto(f"{base}/account")
        page.locator(".app-password button.deactivate").first.click()
        out["deactivate_warning"] = page.inner_text("#warning")
        page.click("#confirm")
        out["deactivated_message"] = page.inner_text("#flash")
        out["no_app_password"] = page.is_visible("#no-app-password")
        gone = page.locator(".app-password.deactivated")
        out["deactivated_listed"] = gone.first.inner_text() if gone.count() else None
        shot(page, "deactivated-listed")
        out["deactivated_password_imap"] = imap_login(args, new_password)

        # --- Storico accessi, Avvisi ------------------------------------------------
        page.click("#to-history")
        shot(page, "history")
        out["history_rows"] = page.locator("#history tbody tr").all_inner_texts()
        page.goto(f"{base}/account/notices")
        shot(page, "notices")
        out["notices"] = page.locator("#notices li").all_inner_texts()

        # --- Disattiva 2FA: the warning, a code; the main password works again -------
        page.goto(f"{base}/account/2fa")
        page.click("#disable")
        out["disable_warning"] = page.inner_text("#warning")
        shot(page, "2fa-disable-confirm")
        page.fill("#code", totp(secret, time.time() + 30))
        page.click("#confirm")
        out["two_factor_after_disable"] = page.inner_text("#two-factor-state")
        out["main_password_imap_after_disable"] = imap_login(args, args.password)

        # --- throttling: distinct wrong passwords, then even the right one is refused -
        other = browser.new_context(ignore_https_errors=True, locale="en-GB")
        o = other.new_page()
        o.goto(f"{base}/login")
        out["english_by_accept_language"] = o.inner_text("h1")
        for i in range(6):
            o.fill("#login", args.address)
            o.fill("#password", f"wrong-{i}")
            o.click("#submit")
        o.fill("#login", args.address)
        o.fill("#password", args.password)
        o.click("#submit")
        out["throttled_right_password"] = urllib.parse.urlparse(o.url).path
        out["throttled_message"] = o.inner_text("#flash")
        other.close()
        browser.close()
    out["screenshots"] = shots
    print(json.dumps(out))


if __name__ == "__main__":
    main()
