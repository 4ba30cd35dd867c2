//! "Did you mean": existing names close to one that does not exist, so the agent can ask
//! again (`payment-service` → `/ecs/payment-service`).

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
