//! What a command prints: human text by default, one JSON document with `--json`.
//!
//! A secret shown once (a new app password, an otpauth URI) is kept out of the ordinary
//! text and JSON values, which are plain `String`s that nobody zeroes. It travels in a
//! [`Secret`] and is written straight to standard output at print time.

use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use crate::secret::Secret;

/// Where the secret goes in the human text.
pub const SECRET_MARK: &str = "\u{0}secret\u{0}";

/// A command's result.
pub struct Output {
    /// Human-readable text; may contain [`SECRET_MARK`] once.
    pub human: String,
    /// The JSON document (an object), without the secret.
    pub json: Value,
    /// The secret for the human text.
    pub human_secret: Option<Secret>,
    /// The secret for the JSON object: field name and value (a JSON-safe string).
    pub json_secret: Option<(&'static str, Secret)>,
}

impl Output {
    /// Text and JSON without secrets.
    pub fn new(human: impl Into<String>, json: Value) -> Self {
        Output {
            human: human.into(),
            json,
            human_secret: None,
            json_secret: None,
        }
    }

    /// Text, and the JSON form of a management outcome.
    pub fn of(human: impl Into<String>, outcome: &impl Serialize) -> Self {
        let json = serde_json::to_value(outcome).unwrap_or_else(
            |e| serde_json::json!({"error": "internal_error", "message": e.to_string()}),
        );
        Output::new(human, json)
    }

    /// Writes the output; `json` selects the form.
    pub fn print(&self, json: bool, out: &mut impl Write) -> std::io::Result<()> {
        if json {
            let body = serde_json::to_string_pretty(&self.json).map_err(std::io::Error::other)?;
            match &self.json_secret {
                Some((key, secret)) => {
                    // The object's other fields follow the secret's; body starts with '{'.
                    let rest = body.strip_prefix('{').unwrap_or(&body);
                    let sep = if rest.trim_start().starts_with('}') {
                        "\n"
                    } else {
                        ","
                    };
                    let escaped = zeroize::Zeroizing::new(
                        serde_json::to_string(secret.expose()).map_err(std::io::Error::other)?,
                    );
                    write!(out, "{{\n  \"{key}\": ")?;
                    out.write_all(escaped.as_bytes())?;
                    writeln!(out, "{sep}{rest}")?;
                }
                None => writeln!(out, "{body}")?,
            }
        } else {
            match (self.human.split_once(SECRET_MARK), &self.human_secret) {
                (Some((before, after)), Some(secret)) => {
                    out.write_all(before.as_bytes())?;
                    out.write_all(secret.expose().as_bytes())?;
                    out.write_all(after.as_bytes())?;
                }
                _ => out.write_all(self.human.as_bytes())?,
            }
            if !self.human.ends_with('\n') {
                writeln!(out)?;
            }
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(o: &Output, json: bool) -> String {
        let mut buf = Vec::new();
        o.print(json, &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn secret_is_spliced_into_text_and_json() {
        let o = Output {
            human: format!("before {SECRET_MARK} after"),
            json: serde_json::json!({"expires_at": "x"}),
            human_secret: Some(Secret::new("abcd-efgh".into())),
            json_secret: Some(("password", Secret::new("abcd-efgh".into()))),
        };
        assert_eq!(printed(&o, false), "before abcd-efgh after\n");
        let v: Value = serde_json::from_str(&printed(&o, true)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"password": "abcd-efgh", "expires_at": "x"})
        );
    }

    #[test]
    fn secret_alone_in_json_is_valid() {
        let o = Output {
            human: String::new(),
            json: serde_json::json!({}),
            human_secret: None,
            json_secret: Some((
                "otpauth_uri",
                Secret::new("otpauth://totp/a?b=\"c\"".into()),
            )),
        };
        let v: Value = serde_json::from_str(&printed(&o, true)).unwrap();
        assert_eq!(v["otpauth_uri"], "otpauth://totp/a?b=\"c\"");
    }
}
