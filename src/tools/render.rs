//! Answers as text for people: the JSON's structure as indented `key: value` lines.

use serde_json::Value;

/// Renders an answer (or an error) as indented text.
pub fn text(value: &Value) -> String {
    let mut out = String::new();
    write(&mut out, value, 0);
    out.trim_end().to_owned()
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("-".into()),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => Some(
            items
                .iter()
                .map(|i| scalar(i).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    }
}

fn write(out: &mut String, value: &Value, indent: usize) {
    let pad = "  ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match scalar(item) {
                    Some(text) => out.push_str(&format!("{pad}{key}: {text}\n")),
                    None => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        write(out, item, indent + 1);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match scalar(item) {
                    Some(text) => out.push_str(&format!("{pad}- {text}\n")),
                    None => {
                        let mut inner = String::new();
                        write(&mut inner, item, indent + 1);
                        // The first line of the item goes after the dash.
                        let inner = inner.trim_start();
                        out.push_str(&format!("{pad}- {inner}"));
                    }
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other).unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_answers_read_as_indented_lines() {
        let answer = json!({"count": 2, "alarms": [{"name": "a", "state": "ALARM"}, {"name": "b"}], "tags": ["x", "y"]});
        assert_eq!(
            text(&answer),
            "count: 2\nalarms:\n  - name: a\n    state: ALARM\n  - name: b\ntags: x, y"
        );
    }
}
