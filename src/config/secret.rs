//! A string that must never be printed: tokens, secret keys, external IDs.
//!
//! `Debug`, `Display` and `Serialize` all print `**REDACTED**`; the value is reachable only
//! through [`Secret::expose`], so every place that uses the real value is easy to find.

use std::fmt;

/// What a secret prints as, everywhere.
pub const REDACTED: &str = "**REDACTED**";

/// A secret value. Compare with [`Secret::matches`] (constant time), print never.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for the one place that has to hand it on (an HTTP header, an env var).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison, so a caller cannot learn a token byte by byte from timings.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG");
        assert_eq!(format!("{secret}"), REDACTED);
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(
            serde_json::to_string(&secret).unwrap(),
            format!("\"{REDACTED}\"")
        );
        assert_eq!(secret.expose(), "wJalrXUtnFEMI/K7MDENG");
    }

    #[test]
    fn matches_only_the_same_value() {
        let secret = Secret::new("token-123");
        assert!(secret.matches("token-123"));
        assert!(!secret.matches("token-124"));
        assert!(!secret.matches("token-12"));
        assert!(!secret.matches(""));
    }
}
