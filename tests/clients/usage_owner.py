#!/usr/bin/env python3
"""Where each password is used, and "Non sono stato io", in a real headless Chromium
(Debian's, driven by Playwright): logs in (main password, then the code), reads what
*Sicurezza e password* says under an app password (last use, networks, programs), then
opens the alert's link, presses its button, opens it again, and tries a forged token.
Prints one JSON object of what it saw. Loopback only; every wait is bounded.

  usage_owner.py --web PORT --cafile F --address A --password MAIN --secret B32 \
                 --name APP_PASSWORD --link URL --shots DIR
"""
import argparse
import json
import os
import time
import urllib.parse

from playwright.sync_api import sync_playwright

from otp import totp

TIMEOUT = 15


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--web", type=int, required=True)
    for name in ["--cafile", "--address", "--password", "--secret", "--name", "--link", "--shots"]:
        p.add_argument(name, required=True)
    args = p.parse_args()
    os.makedirs(args.shots, exist_ok=True)
    base = f"https://127.0.0.1:{args.web}"
    out = {"screenshots": []}

    def shot(page, name):
        path = os.path.join(args.shots, f"usage-{len(out['screenshots']) + 1:02d}-{name}.png")
        page.screenshot(path=path, full_page=True)
        out["screenshots"].append(path)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"],
        )
        ctx = browser.new_context(ignore_https_errors=True, locale="it-IT")
        ctx.set_default_timeout(TIMEOUT * 1000)
        page = ctx.new_page()
        page.goto(f"{base}/login")
        page.fill("#login", args.address)
        page.fill("#password", args.password)
        page.click("#submit")
        page.fill("#code", totp(args.secret, time.time()))
        page.click("#submit")
        out["logged_in"] = urllib.parse.urlparse(page.url).path

        # --- what the page says about the password -----------------------------------
        card = page.locator(f'.app-password[data-name="{args.name}"]')
        out["last_use"] = card.locator(".last-use").inner_text()
        out["used_from"] = card.locator(".used-from li").all_inner_texts()
        shot(page, "account")

        # --- the alert's link, in a browser with no session ----------------------------
        anon = browser.new_context(ignore_https_errors=True, locale="it-IT")
        anon.set_default_timeout(TIMEOUT * 1000)
        link = anon.new_page()
        response = link.goto(args.link)
        out["link_status"] = response.status
        out["link_names"] = link.inner_text("#password-name")
        out["link_asked"] = link.inner_text("#asked")
        shot(link, "not-me")
        link.click("#not-me")
        out["after_button"] = link.inner_text("#message")
        out["after_button_flash"] = link.inner_text("#flash")
        shot(link, "not-me-done")

        # --- used again, and forged: one page that says the link no longer works -------
        again = link.goto(args.link)
        out["again_status"] = again.status
        out["again_text"] = link.inner_text("#message")
        token = urllib.parse.urlparse(args.link).path.rsplit("/", 1)[1]
        forged = ("A" if token[0] != "A" else "B") + token[1:]
        f = link.goto(f"{base}/not-me/{forged}")
        out["forged_status"] = f.status
        out["forged_text"] = link.inner_text("#message")
        shot(link, "not-me-gone")
        posted = anon.request.post(f"{base}/not-me", form={"token": forged})
        out["forged_post_status"] = posted.status
        posted = anon.request.post(f"{base}/not-me", form={"token": token})
        out["spent_post_status"] = posted.status
        browser.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
