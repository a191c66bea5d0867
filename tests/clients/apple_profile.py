#!/usr/bin/env python3
"""*Configura iPhone/iPad/Mac* in a real headless Chromium (Debian's, driven by
Playwright): logs in (main password, then the code), makes two configuration profiles —
one downloaded with the page's button, one left for its one-time link, whose QR code is
read from a screenshot with zbarimg — and prints one JSON object of what it saw.
Loopback only; every wait is bounded.

  apple_profile.py --web PORT --cafile F --address A --password MAIN --secret B32 --shots DIR
"""
import argparse
import json
import os
import subprocess
import time
import urllib.parse

from playwright.sync_api import sync_playwright

from otp import totp

TIMEOUT = 15


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--web", type=int, required=True)
    for name in ["--cafile", "--address", "--password", "--secret", "--shots"]:
        p.add_argument(name, required=True)
    args = p.parse_args()
    os.makedirs(args.shots, exist_ok=True)
    base = f"https://127.0.0.1:{args.web}"
    out = {"screenshots": []}

    def shot(page, name):
        path = os.path.join(args.shots, f"apple-{len(out['screenshots']) + 1:02d}-{name}.png")
        page.screenshot(path=path, full_page=True)
        out["screenshots"].append(path)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"],
        )
        ctx = browser.new_context(ignore_https_errors=True, locale="it-IT", accept_downloads=True)
        ctx.set_default_timeout(TIMEOUT * 1000)
        page = ctx.new_page()
        page.goto(f"{base}/login")
        page.fill("#login", args.address)
        page.fill("#password", args.password)
        page.click("#submit")
        page.fill("#code", totp(args.secret, time.time()))
        page.click("#submit")
        out["logged_in"] = urllib.parse.urlparse(page.url).path

        # --- one profile, downloaded with the button ---------------------------------
        shot(page, "account")
        out["card_shown"] = page.is_visible("#apple-setup")
        page.fill("#device-name", "iPhone di Mario")
        page.set_checked("#apple-imap", True)
        page.set_checked("#apple-pop3", False)
        page.set_checked("#apple-smtp", True)
        page.click("#apple-make")
        out["ready_at"] = urllib.parse.urlparse(page.url).path
        out["ready"] = page.is_visible("#profile-ready")
        out["signature_text"] = page.inner_text("#profile-signature")
        shot(page, "profile-ready")
        with page.expect_download() as d:
            page.click("#download-profile")
        download = d.value
        path = os.path.join(args.shots, "downloaded.mobileconfig")
        download.save_as(path)
        out["downloaded"] = path
        out["download_name"] = download.suggested_filename
        page.goto(f"{base}/account/apple")
        out["gone_after_download"] = page.is_visible("#profile-gone")

        # --- another, left for its one-time link (IMAP only) -------------------------
        page.goto(f"{base}/account")
        page.fill("#device-name", "iPad di Mario")
        page.set_checked("#apple-imap", True)
        page.set_checked("#apple-smtp", False)
        page.click("#apple-make")
        qr = os.path.join(args.shots, "profile-qr.png")
        page.locator("#profile-qr").screenshot(path=qr)
        shot(page, "profile-qr")
        decoded = subprocess.run(["zbarimg", "-q", "--raw", qr], capture_output=True, text=True, timeout=30)
        out["qr_url"] = decoded.stdout.strip()

        # --- a made-up device without an incoming protocol: refused, said why --------
        page.goto(f"{base}/account")
        page.fill("#device-name", "Solo invio")
        page.set_checked("#apple-imap", False)
        page.set_checked("#apple-pop3", False)
        page.set_checked("#apple-smtp", True)
        page.click("#apple-make")
        out["no_incoming_message"] = page.inner_text("#flash")
        browser.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
