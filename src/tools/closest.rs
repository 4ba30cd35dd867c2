//! Names the agent gives that are not exact: resolved when exactly one existing name fits
//! (`payment-service` → `/ecs/payment-service`), otherwise "did you mean" — existing names
//! close to it, so the agent can ask again.

/// What a short or partial name matches among existing names.
#[derive(Debug, PartialEq, Eq)]
pub enum ShortName {
    /// The name exists as given.
    Exact,
    /// Exactly one existing name has it as a path component or suffix: use this one.
    One(String),
    /// Several do: the agent must choose (never guess).
    Several(Vec<String>),
    /// None does.
    None,
}

/// How `name` matches `existing`: exactly, or as a whole `/`-separated path component
/// (`payment-service` in `/ecs/payment-service`), or as a suffix (`ecs/payment-service`).
pub fn short_name<'a>(name: &str, existing: impl IntoIterator<Item = &'a str>) -> ShortName {
    let bare = name.trim_matches('/');
    if bare.is_empty() {
        return ShortName::None;
    }
    let mut fits = Vec::new();
    for candidate in existing {
        if candidate == name {
            return ShortName::Exact;
        }
        let component = candidate.split('/').any(|part| part == bare);
        let suffix = candidate.ends_with(&format!("/{bare}"));
        if component || suffix {
            fits.push(candidate.to_owned());
        }
    }
    match fits.len() {
        0 => ShortName::None,
        1 => ShortName::One(fits.remove(0)),
        _ => ShortName::Several(fits),
    }
}

/// Up to five candidates: those containing the name (or contained in it) first, then those
/// within a small edit distance, each group in the candidates' order.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let wanted = name.to_lowercase();
    let mut containing = Vec::new();
    let mut near = Vec::new();
    for candidate in candidates {
        let lower = candidate.to_lowercase();
        if lower.contains(&wanted) || (!lower.is_empty() && wanted.contains(&lower)) {
            containing.push(candidate.to_owned());
        } else {
            let distance = edit_distance(&wanted, &lower);
            if distance <= (wanted.len() / 3).max(2) {
                near.push((distance, candidate.to_owned()));
            }
        }
    }
    near.sort_by_key(|(d, _)| *d);
    containing
        .into_iter()
        .chain(near.into_iter().map(|(_, c)| c))
        .take(5)
        .collect()
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_name_resolves_only_when_one_name_fits() {
        let groups = [
            "/ecs/payment-service",
            "/ecs/checkout",
            "/aws/lambda/checkout",
            "payment",
        ];
        assert_eq!(short_name("payment", groups), ShortName::Exact);
        assert_eq!(
            short_name("payment-service", groups),
            ShortName::One("/ecs/payment-service".into())
        );
        assert_eq!(
            short_name("ecs/payment-service", groups),
            ShortName::One("/ecs/payment-service".into()),
            "a suffix"
        );
        assert_eq!(
            short_name("checkout", groups),
            ShortName::Several(vec!["/ecs/checkout".into(), "/aws/lambda/checkout".into()])
        );
        assert_eq!(
            short_name("pay", groups),
            ShortName::None,
            "no partial words"
        );
        assert_eq!(short_name("/", groups), ShortName::None);
    }

    #[test]
    fn finds_prefixed_and_misspelt_names() {
        let groups = ["/ecs/payment-service", "/ecs/checkout-api", "/aws/lambda/x"];
        assert_eq!(closest("payment-service", groups), ["/ecs/payment-service"]);
        assert_eq!(
            closest("checkuot-api", ["checkout-api", "batch"]),
            ["checkout-api"]
        );
        assert!(closest("zzz", groups).is_empty());
    }
}
