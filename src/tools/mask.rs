//! Secrets in what the tools return — log lines, tags, event messages — are masked before
//! an answer leaves the process: the agent's model never needs a password to diagnose an
//! incident, and what it is shown may be logged or leaked.
//!
//! Each secret becomes `[masked:<kind>:<hash>]`: the kind says what it was, and a short
//! keyed hash of the value (HMAC-SHA-256 with a random key of this process, first 6 hex
//! digits) lets two lines with the same secret still be correlated — within one process
//! (one `tool` call, one MCP session) — while a weak password cannot be guessed back from
//! its marker offline. What is masked: AWS access key IDs and secret keys, bearer tokens, JWTs,
//! passwords in URLs, `password=`-style pairs (and their JSON form), PEM private keys, and
//! GitHub/Slack tokens. What must not be (and is tested not to be): request IDs, ARNs,
//! commit hashes, ordinary words and numbers.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Value, json};

/// One kind of secret: the pattern, which capture group is the secret itself, and a last
/// check on that group (for patterns too broad on their own).
struct Rule {
    kind: &'static str,
    pattern: Regex,
    secret_group: usize,
    accept: fn(&str) -> bool,
}

fn rule(kind: &'static str, pattern: &str, secret_group: usize) -> Rule {
    Rule {
        kind,
        pattern: Regex::new(pattern).expect("a valid secret pattern"),
        secret_group,
        accept: |_| true,
    }
}

/// Most specific first: a PEM block or a JWT is masked whole before the generic rules look
/// inside it.
static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    vec![
        rule(
            "private-key",
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            0,
        ),
        rule(
            "jwt",
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
            0,
        ),
        rule(
            "bearer-token",
            r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{16,}=*)",
            1,
        ),
        rule(
            "url-password",
            r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:([^@\s/]+)@",
            1,
        ),
        rule(
            "aws-access-key",
            r"\b((?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16})\b",
            1,
        ),
        rule(
            "aws-secret-key",
            r#"(?i)(?:aws_?secret_?access_?key|secret_?access_?key|aws_?secret)["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})"#,
            1,
        ),
        rule(
            "github-token",
            r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b",
            1,
        ),
        rule("slack-token", r"\b(xox[abposr]-[A-Za-z0-9-]{10,})\b", 1),
        // `"password": "…"` in JSON log lines.
        rule(
            "password",
            r#"(?i)"(?:password|passwd|pwd|secret|client_?secret|api_?key|access_?token|auth_?token)"\s*:\s*"([^"]{3,})""#,
            1,
        ),
        // `password=…`, `api_key: …` in plain log lines.
        rule(
            "password",
            r#"(?i)\b(?:password|passwd|pwd|client_?secret|api_?key|access_?token|auth_?token)\s*[=:]\s*([^\s"'&,;]{3,})"#,
            1,
        ),
        // A bare 40-character AWS secret key: mixed case and digits, with `/` or `+` or
        // not hex — so a commit hash (lowercase hex) is never taken for one.
        Rule {
            accept: looks_like_secret_key,
            ..rule(
                "aws-secret-key",
                r"(?:^|[^A-Za-z0-9/+=])([A-Za-z0-9/+]{40})(?:$|[^A-Za-z0-9/+=])",
                1,
            )
        },
    ]
});

/// This process's key for the markers' hashes.
static MARKER_KEY: LazyLock<aws_lc_rs::hmac::Key> = LazyLock::new(|| {
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).expect("the system's random source");
    aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key)
});

/// The marker for one secret of `kind`.
fn marker(kind: &str, secret: &str) -> String {
    let tag = aws_lc_rs::hmac::sign(&MARKER_KEY, secret.as_bytes());
    let short: String = tag.as_ref()[..3]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("[masked:{kind}:{short}]")
}

/// A bare 40-character candidate that really looks like a secret key.
fn looks_like_secret_key(candidate: &str) -> bool {
    let has = |f: fn(char) -> bool| candidate.chars().any(f);
    let hex = candidate.chars().all(|c| c.is_ascii_hexdigit());
    !hex && has(|c| c.is_ascii_uppercase())
        && has(|c| c.is_ascii_lowercase())
        && has(|c| c.is_ascii_digit())
}

/// `text` with every secret masked, and how many were. Every rule looks at the original
/// text; where two find overlapping secrets the earlier (more specific) rule wins, so no
/// rule ever reads another's marker.
pub fn mask_text(text: &str) -> (String, usize) {
    let mut found: Vec<(usize, usize, &'static str)> = Vec::new();
    for rule in RULES.iter() {
        for caps in rule.pattern.captures_iter(text) {
            let Some(secret) = caps.get(rule.secret_group) else {
                continue;
            };
            let overlaps = found
                .iter()
                .any(|(start, end, _)| secret.start() < *end && *start < secret.end());
            if !overlaps && (rule.accept)(secret.as_str()) {
                found.push((secret.start(), secret.end(), rule.kind));
            }
        }
    }
    if found.is_empty() {
        return (text.to_owned(), 0);
    }
    found.sort_by_key(|(start, _, _)| *start);
    let mut masked = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, kind) in &found {
        masked.push_str(&text[at..*start]);
        masked.push_str(&marker(kind, &text[*start..*end]));
        at = *end;
    }
    masked.push_str(&text[at..]);
    (masked, found.len())
}

/// Masks every string of an answer; adds `"masked": N` when anything was.
pub fn mask_answer(answer: Value) -> Value {
    let mut count = 0;
    let mut answer = mask_value(answer, &mut count);
    if count > 0
        && let Value::Object(map) = &mut answer
    {
        map.insert("masked".into(), json!(count));
    }
    answer
}

fn mask_value(value: Value, count: &mut usize) -> Value {
    match value {
        Value::String(text) => {
            let (masked, n) = mask_text(&text);
            *count += n;
            Value::String(masked)
        }
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| mask_value(v, count)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, mask_value(v, count)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked_kinds(text: &str) -> Vec<String> {
        let (masked, _) = mask_text(text);
        Regex::new(r"\[masked:([a-z-]+):[0-9a-f]{6}\]")
            .unwrap()
            .captures_iter(&masked)
            .map(|c| c[1].to_owned())
            .collect()
    }

    #[test]
    fn real_looking_secrets_are_masked_by_kind() {
        let samples = [
            ("aws_access_key_id=AKIAIOSFODNN7EXAMPLE", "aws-access-key"),
            (
                "using key ASIAQWERTYUIOPASDFGH for the call",
                "aws-access-key",
            ),
            (
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws-secret-key",
            ),
            (
                "upstream said Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0",
                "bearer-token",
            ),
            (
                "token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJpbnRlZ3JhdGlvbjpwcm9kIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
                "jwt",
            ),
            (
                "connecting to postgres://payments:Sup3rS3cret!@db.internal:5432/payments",
                "url-password",
            ),
            ("login failed password=hunter22 user=bob", "password"),
            (
                r#"{"user": "bob", "password": "correct horse battery"}"#,
                "password",
            ),
            ("api_key: sk_live_51HaZ8pQ2eZvKYlo2C0", "password"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----",
                "private-key",
            ),
            (
                "GITHUB_TOKEN ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
                "github-token",
            ),
            ("slack xoxb-123456789012-abcdefghijkl", "slack-token"),
            (
                "leaked wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY in a stack trace",
                "aws-secret-key",
            ),
        ];
        for (text, kind) in samples {
            let kinds = masked_kinds(text);
            assert_eq!(
                kinds,
                vec![kind.to_owned()],
                "{text} -> {}",
                mask_text(text).0
            );
        }
    }

    #[test]
    fn near_misses_are_left_alone() {
        for text in [
            "RequestId: 3b1e0b2c-9f4d-4e1a-8d2c-0a1b2c3d4e5f",
            "arn:aws:iam::123456789012:role/AutohealCrossAccountRole",
            "arn:aws:sts::123456789012:assumed-role/AutohealCrossAccountRole/autoheal-prod",
            "deployed commit 3f786850e387550fdab836ed7e6dc881de23001b to prod",
            "GET /v1/orders?page=2 200 12ms",
            "password reset email sent to bob@example.com",
            "the token bucket is empty",
            "https://example.com/health returned 503",
            "ERROR payment declined: card_declined (insufficient funds)",
            "i-0a1b2c3d4e5f60718 sg-0123456789abcdef0 subnet-0bb1c79de3EXAMPLE",
        ] {
            let (masked, count) = mask_text(text);
            assert_eq!((masked.as_str(), count), (text, 0), "{text}");
        }
    }

    #[test]
    fn the_same_secret_gets_the_same_marker_and_answers_count_them() {
        let line = "password=hunter22";
        assert_eq!(
            mask_text(line).0,
            mask_text("retry password=hunter22").0["retry ".len()..]
        );
        let answer = mask_answer(json!({
            "events": [{"message": line}, {"message": "ok"}, {"message": line}],
            "count": 3,
        }));
        assert_eq!(answer["masked"], 2);
        assert_eq!(
            answer["events"][0]["message"],
            answer["events"][2]["message"]
        );
        assert!(!answer.to_string().contains("hunter22"));
        let clean = mask_answer(json!({"events": []}));
        assert!(clean.get("masked").is_none());
    }
}
