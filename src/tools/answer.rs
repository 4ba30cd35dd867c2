//! Shaping answers for an investigator and a token budget: no nulls, no empty lists or
//! objects, RFC 3339 UTC times.

use std::time::SystemTime;

use serde_json::Value;

/// Removes nulls, empty strings, empty arrays and empty objects, recursively — except a
/// null inside an array, which holds a position (a gap in a metric series).
pub fn prune(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, prune(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(prune)
                .filter(|v| v.is_null() || !is_empty(v))
                .collect(),
        ),
        other => other,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// RFC 3339 UTC, to the second.
pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// An SDK timestamp as RFC 3339 UTC.
pub fn sdk_time(t: &aws_smithy_types::DateTime) -> Option<String> {
    SystemTime::try_from(*t).ok().map(time)
}

/// An optional SDK timestamp as RFC 3339 UTC.
pub fn optional_time(t: Option<&aws_smithy_types::DateTime>) -> Option<String> {
    t.and_then(sdk_time)
}

/// Epoch milliseconds (CloudWatch Logs) as RFC 3339 UTC, to the millisecond.
pub fn millis_time(ms: i64) -> Option<String> {
    let t = SystemTime::UNIX_EPOCH
        .checked_add(std::time::Duration::from_millis(ms.try_into().ok()?))?;
    Some(humantime::format_rfc3339_millis(t).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prune_keeps_only_facts() {
        let raw = json!({"a": null, "b": [], "c": {}, "d": "", "e": 0, "f": false,
                         "g": [{"h": null}, {"i": 1}], "j": {"k": null}});
        assert_eq!(prune(raw), json!({"e": 0, "f": false, "g": [{"i": 1}]}));
        let gaps = json!({"values": [1.5, null, 2.0]});
        assert_eq!(prune(gaps.clone()), gaps, "a gap keeps its place");
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(millis_time(0).unwrap(), "1970-01-01T00:00:00.000Z");
        let t = aws_smithy_types::DateTime::from_secs(1_700_000_000);
        assert_eq!(sdk_time(&t).unwrap(), "2023-11-14T22:13:20Z");
    }
}
