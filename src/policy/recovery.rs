//! Recovery codes: the way back in when the 2FA device is lost. Ten at a time, made when
//! 2FA is turned on (or on demand, the old set dying), shown once, kept only as hashes.
//! Each works once wherever a code from the device is asked.
//!
//! A code is 12 symbols of the app passwords' alphabet (no look-alikes), printed as three
//! groups of four (`abcd-efgh-jkmn`) and accepted in any case, with or without the dashes:
//! 60 bits, rationed by the abuse model like the device's codes. The first group is its
//! *selector*, kept in clear so one argon2id verification finds the one to check.

use super::PolicyError;
use super::app_password::ALPHABET;
use crate::secret::Secret;

/// Codes in a set.
pub const SET: usize = 10;
/// Symbols in a code.
pub const LEN: usize = 12;
/// Symbols per printed group (the first is the selector).
pub const GROUP: usize = 4;

/// A new set of codes, canonical (lower case, no dashes), each with a selector of its own.
pub fn generate() -> Result<Vec<Secret>, PolicyError> {
    let mut out: Vec<Secret> = Vec::with_capacity(SET);
    while out.len() < SET {
        let mut bytes = [0u8; LEN];
        getrandom::fill(&mut bytes).map_err(|e| PolicyError::Random(e.to_string()))?;
        let code: String = bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
            .collect();
        let code = Secret::new(code);
        if !out.iter().any(|c| selector(c) == selector(&code)) {
            out.push(code);
        }
    }
    Ok(out)
}

/// A code as printed: three groups of four.
pub fn printed(canonical: &Secret) -> String {
    let c = canonical.expose();
    [&c[..GROUP], &c[GROUP..2 * GROUP], &c[2 * GROUP..]].join("-")
}

/// The canonical form of what the owner typed, if it has the shape of a recovery code
/// (a device's code, six digits, has not).
pub fn canonical(presented: &str) -> Option<Secret> {
    super::app_password::symbols(presented, LEN)
}

/// Its selector: the first group.
pub fn selector(canonical: &Secret) -> String {
    canonical.expose().chars().take(GROUP).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_ten_codes_with_distinct_selectors_read_back_however_typed() {
        let set = generate().unwrap();
        assert_eq!(set.len(), SET);
        let mut selectors: Vec<String> = set.iter().map(selector).collect();
        selectors.sort();
        selectors.dedup();
        assert_eq!(selectors.len(), SET);
        let one = &set[0];
        let shown = printed(one);
        assert_eq!(shown.len(), LEN + 2);
        assert_eq!(canonical(&shown).unwrap().expose(), one.expose());
        assert_eq!(
            canonical(&shown.to_uppercase().replace('-', " "))
                .unwrap()
                .expose(),
            one.expose()
        );
        for not in [
            "123456",
            "",
            "abcd-efgh",
            "abcd-efgh-jkmn-p",
            "abcd-efgh-jk0n",
        ] {
            assert!(canonical(not).is_none(), "{not}");
        }
    }
}
