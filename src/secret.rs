//! A password or other secret in memory: never printed, zeroed on drop.

use std::fmt;

use zeroize::Zeroizing;

/// A secret string. `Debug` and `Display` print `[redacted]`; the bytes are overwritten
/// when it is dropped. Read it only through [`Secret::expose`], at the point of use.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Takes ownership of `s`; its buffer is zeroed when the secret is dropped.
    pub fn new(s: String) -> Self {
        Secret(Zeroizing::new(s))
    }

    /// The secret itself. Keep the borrow short; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }
}
