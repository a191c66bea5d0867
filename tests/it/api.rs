//! The operator's HTTP API with a real HTTP client: every endpoint of the OpenAPI
//! document called once and every error class, each response checked against the
//! document (tests/clients/api_client.py, urllib + jsonschema); tokens from the CLI,
//! revocation effective at the next call; the API on a listener of its own.

use crate::common;

use std::process::Command;

use common::rig::UPSTREAM_PW;
use common::servers::{Dovecot, Proxy, free_port, wait_for_port};

const ADDR: &str = "anna.bianchi@pec.example.it";

fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn every_documented_endpoint_answers_as_documented_with_a_real_client() {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let (web_port, api_port) = (free_port(), free_port());
    let mut proxy = Proxy::configure(
        &mailbox,
        &mailbox,
        "",
        &format!(
            "\n[web]\nbind = \"127.0.0.1:{web_port}\"\n[api]\nbind = \"127.0.0.1:{api_port}\"\non_web = false\n"
        ),
    );
    proxy.run();
    wait_for_port(api_port, "api", &proxy.log_path());
    let token = proxy.ok(&["api-token", "create", "crm"], None)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !std::fs::read_to_string(proxy.dir.path().join("api-tokens"))
            .unwrap()
            .contains(&token),
        "only the token's hash is kept"
    );

    let base = format!("https://127.0.0.1:{api_port}");
    let v = common::rig::api_client(&proxy, &base, &token, ADDR);
    assert_eq!(v["errors"], serde_json::json!([]), "{v:#}");
    assert_eq!(
        v["undocumented_or_uncalled"],
        serde_json::json!([]),
        "every documented operation was called and answered as documented"
    );
    assert_eq!(v["openapi_status"], 200);
    assert_eq!(v["no_token"]["error"], "unauthorized");
    assert_eq!(v["unknown_token"]["error"], "unauthorized");
    assert_eq!(v["bad_json"]["error"], "bad_request");
    assert_eq!(v["bad_address"]["error"], "bad_address");
    assert_eq!(v["unknown_field"]["error"], "bad_request");
    assert_eq!(v["conflict"]["error"], "login_taken");
    assert_eq!(v["missing"]["error"], "no_mailbox");
    assert_eq!(v["refused_by_rule"]["error"], "two_factor_off");
    assert_eq!(v["postpone_too_early"]["error"], "postpone_too_early");
    assert_eq!(
        v["pinned"],
        serde_json::json!(["192.0.2.0/24", "2001:db8::/32"])
    );
    assert_eq!(v["bad_network"]["error"], "bad_network", "{v}");
    assert_eq!(v["bad_limit"]["error"], "bad_request");
    assert_eq!(v["removed_then"]["error"], "no_mailbox");
    assert_eq!(v["password_shape"], true);
    assert_eq!(v["regenerated_differs"], true);
    assert_eq!(v["no_endpoint"], 404);
    // Every call was the token's: the events name it.
    assert_eq!(v["actors"], serde_json::json!(["operator:api:crm"]));

    // The web listener does not serve the API when on_web is off.
    let (code, _) = curl(&[&format!("https://127.0.0.1:{web_port}/api/v1/mailboxes")]);
    assert_eq!(code, 404);
    // A revoked token is refused at the next call.
    let auth = format!("Authorization: Bearer {token}");
    let (code, _) = curl(&["-H", &auth, &format!("{base}/api/v1/mailboxes")]);
    assert_eq!(code, 200);
    proxy.ok(&["api-token", "revoke", "crm"], None);
    let (code, body) = curl(&["-H", &auth, &format!("{base}/api/v1/mailboxes")]);
    assert_eq!(code, 401, "{body}");
    assert!(!proxy.log().contains(&token), "no token in the log");
}
