//! Tool arguments: parsing with the argument's name in every error, their JSON Schema, and
//! the time windows (`since`/`until` as a duration back from now or RFC 3339).

use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ToolError;

/// Parses the arguments object; an error names the argument (`limit`, `tags.Env`, …).
pub fn parse<T: DeserializeOwned>(args: Value) -> Result<T, ToolError> {
    let args = match args {
        Value::Null => Value::Object(Default::default()),
        Value::Object(map) => Value::Object(map),
        other => {
            return Err(ToolError::bad(
                "(arguments)",
                format!("expected a JSON object, got {other}"),
            ));
        }
    };
    serde_path_to_error::deserialize(args).map_err(|err| {
        let path = err.path().to_string();
        let reason = err.into_inner().to_string();
        // The path names the argument (an unknown one included); at the top level an
        // unknown field is only in serde's message.
        let argument = match (path.as_str(), reason.strip_prefix("unknown field `")) {
            (".", Some(rest)) => rest.split('`').next().unwrap_or_default().to_owned(),
            (".", None) => "(arguments)".to_owned(),
            _ => path,
        };
        ToolError::bad(&argument, reason)
    })
}

/// The JSON Schema of an argument type, as a plain JSON object.
pub fn schema_of<T: JsonSchema>() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    if let Value::Object(map) = &mut schema {
        map.remove("$schema");
        map.remove("title");
    }
    schema
}

/// A point in time as a tool takes it: a duration back from now (`"1h"`, `"30m"`) or an
/// RFC 3339 time (`"2026-11-26T10:00:00Z"`).
pub fn point_in_time(argument: &str, text: &str, now: SystemTime) -> Result<SystemTime, ToolError> {
    let text = text.trim();
    if let Ok(back) = humantime::parse_duration(text) {
        return now
            .checked_sub(back)
            .ok_or_else(|| ToolError::bad(argument, format!("{text:?} reaches before 1970")));
    }
    humantime::parse_rfc3339_weak(text).map_err(|_| {
        ToolError::bad(
            argument,
            format!(
                "{text:?} is neither a duration back from now (\"1h\", \"30m\") nor an RFC 3339 time (\"2026-11-26T10:00:00Z\")"
            ),
        )
    })
}

/// A time window `[start, end]`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: SystemTime,
    pub end: SystemTime,
}

impl Window {
    /// From the `since`/`until` arguments; `since` defaults to `default_since` back from now,
    /// `until` to now.
    pub fn from_args(
        since: Option<&str>,
        until: Option<&str>,
        default_since: Duration,
        now: SystemTime,
    ) -> Result<Self, ToolError> {
        let start = match since {
            Some(text) => point_in_time("since", text, now)?,
            None => now - default_since,
        };
        let end = match until {
            Some(text) => point_in_time("until", text, now)?,
            None => now,
        };
        if start >= end {
            return Err(ToolError::bad(
                "since",
                "the window is empty: since must come before until",
            ));
        }
        Ok(Self { start, end })
    }

    pub fn length(&self) -> Duration {
        self.end.duration_since(self.start).unwrap_or_default()
    }
}

/// Milliseconds since the epoch (what CloudWatch Logs takes).
pub fn epoch_millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Example {
        limit: Option<u32>,
        tags: Option<std::collections::BTreeMap<String, String>>,
    }

    fn argument_of(value: Value) -> String {
        match parse::<Example>(value) {
            Err(ToolError::BadArgument { argument, .. }) => argument,
            other => panic!("expected a bad argument, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_argument() {
        assert_eq!(argument_of(serde_json::json!({"limit": "ten"})), "limit");
        assert_eq!(argument_of(serde_json::json!({"limit": -1})), "limit");
        assert_eq!(argument_of(serde_json::json!({"limt": 3})), "limt");
        assert_eq!(
            argument_of(serde_json::json!({"tags": {"Env": 3}})),
            "tags.Env"
        );
        assert_eq!(argument_of(serde_json::json!([1])), "(arguments)");
        assert!(parse::<Example>(Value::Null).is_ok());
    }

    #[test]
    fn the_schema_forbids_unknown_fields() {
        let schema = schema_of::<Example>();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
        assert!(schema["properties"]["limit"].is_object());
    }

    #[test]
    fn windows_take_durations_and_times() {
        let now = humantime::parse_rfc3339("2026-11-26T12:00:00Z").unwrap();
        let w = Window::from_args(Some("1h"), None, Duration::from_secs(60), now).unwrap();
        assert_eq!(w.length(), Duration::from_secs(3600));
        let w = Window::from_args(
            Some("2026-11-26T11:30:00Z"),
            Some("10m"),
            Duration::ZERO,
            now,
        )
        .unwrap();
        assert_eq!(w.length(), Duration::from_secs(20 * 60));
        for (since, until, argument) in [
            (Some("yesterday"), None, "since"),
            (Some("1h"), Some("2h"), "since"),
            (None, Some("soon"), "until"),
        ] {
            match Window::from_args(since, until, Duration::from_secs(60), now) {
                Err(ToolError::BadArgument { argument: a, .. }) => assert_eq!(a, argument),
                other => panic!("{other:?}"),
            }
        }
    }
}
