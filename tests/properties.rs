//! Property tests over everything that parses outside input: the config loader, the
//! sandbox request body, and every tool's arguments. Thousands of generated inputs each:
//! no panic, and every rejection is the right kind (78 / 400 / 65) and names what is wrong.

use autoheal::api::parse_create_body;
use autoheal::config::{ConfigError, load_from_str};
use autoheal::exit_code::Exit;
use autoheal::tools::{ToolError, catalogue};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,24}".prop_map(Value::String),
        prop_oneof![
            Just("1h"),
            Just("-5m"),
            Just("0s"),
            Just("15m"),
            Just("2026-11-29T10:00:00Z"),
            Just("us-east-1"),
            Just("123456789012"),
            Just("autoheal-sandbox:latest"),
            Just("ERROR"),
            Just("/ecs/payment-service"),
            Just("\u{0}"),
            Just(""),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A TOML value as text.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[ -~]{0,20}".prop_map(|s| format!("{:?}", s)),
        prop_oneof![
            Just("\"15m\""),
            Just("\"0s\""),
            Just("\"13h\""),
            Just("\"512MiB\""),
            Just("\"1x\""),
            Just("\"instance_role\""),
            Just("\"oidc\""),
            Just("\"127.0.0.1:8700\""),
            Just("\"arn:aws:iam::123456789012:role/R\""),
            Just("[\"169.254.169.254/32\"]"),
            Just("[1, 2]"),
            Just("{ a = 1 }"),
            Just("-1"),
            Just("0"),
            Just("1e300"),
        ]
        .prop_map(str::to_owned),
    ]
}

const SECTIONS: [(&str, &[&str]); 4] = [
    (
        "server",
        &[
            "listen",
            "api_token_file",
            "max_connections",
            "header_read_timeout",
            "body_read_timeout",
            "bogus",
        ],
    ),
    (
        "sandbox",
        &[
            "image",
            "network",
            "max_lifetime",
            "memory",
            "cpus",
            "pids_limit",
            "blocked_addresses",
            "max_running",
            "history",
            "images",
            "bogus",
        ],
    ),
    ("oidc", &["issuer", "tenant_slug", "key_dir", "bogus"]),
    ("log", &["format", "filter", "bogus"]),
];
const INTEGRATION_KEYS: [&str; 9] = [
    "name",
    "account_id",
    "region",
    "auth",
    "role_arn",
    "external_id",
    "session_duration",
    "endpoint_url",
    "bogus",
];

/// A config file: some sections with some keys, and some integrations.
fn config_text() -> impl Strategy<Value = String> {
    let section = (
        0..SECTIONS.len(),
        prop::collection::vec((0..12usize, toml_value()), 0..6),
    );
    let integration = prop::collection::vec((0..INTEGRATION_KEYS.len(), toml_value()), 0..9);
    (
        prop::collection::vec(section, 0..4),
        prop::collection::vec(integration, 0..3),
    )
        .prop_map(|(sections, integrations)| {
            let mut text = String::new();
            let mut seen = std::collections::BTreeSet::new();
            for (s, keys) in sections {
                if !seen.insert(s) {
                    continue; // a section twice is a TOML syntax error, tested elsewhere
                }
                let (name, known) = SECTIONS[s];
                text.push_str(&format!("[{name}]\n"));
                let mut used = std::collections::BTreeSet::new();
                for (k, value) in keys {
                    let key = known[k % known.len()];
                    if used.insert(key) {
                        text.push_str(&format!("{key} = {value}\n"));
                    }
                }
            }
            for keys in integrations {
                text.push_str("[[integration]]\n");
                let mut used = std::collections::BTreeSet::new();
                for (k, value) in keys {
                    let key = INTEGRATION_KEYS[k];
                    if used.insert(key) {
                        text.push_str(&format!("{key} = {value}\n"));
                    }
                }
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn the_config_loader_names_every_problem_and_never_panics(text in config_text()) {
        match load_from_str(&text) {
            Ok(config) => prop_assert!(!config.integrations.is_empty()),
            Err(ConfigError::Invalid { issues, .. }) => {
                prop_assert!(!issues.is_empty());
                for issue in issues {
                    let known_root = ["server", "sandbox", "oidc", "log", "integration"]
                        .iter()
                        .any(|root| issue.key.starts_with(root));
                    prop_assert!(known_root, "issue without a key path: {issue:?}\n{text}");
                    prop_assert!(!issue.message.is_empty());
                }
            }
            Err(other) => {
                // Syntax errors (an unquoted value) come from the TOML parser, with a position.
                prop_assert!(other.to_string().contains("line") || other.to_string().contains("TOML"),
                    "{other}\n{text}");
            }
        }
    }

    #[test]
    fn sandbox_request_bodies_are_accepted_or_refused_with_a_400_naming_the_field(
        fields in prop::collection::btree_map(
            prop_oneof![
                Just("integration".to_owned()), Just("command".to_owned()), Just("image".to_owned()),
                Just("timeout".to_owned()), Just("env".to_owned()), "[a-z]{1,8}",
            ],
            json_value(),
            0..6,
        )
    ) {
        let body = Value::Object(fields.clone().into_iter().collect::<Map<_, _>>());
        match parse_create_body(body.to_string().as_bytes()) {
            Ok(request) => {
                // What parses is then checked for its meaning: never a panic, a 400 at worst.
                if let Err(err) = request.validate(std::time::Duration::from_secs(900)) {
                    prop_assert_eq!(err.http_status(), 400);
                }
            }
            Err(err) => {
                prop_assert_eq!(err.status.as_u16(), 400);
                let named = ["integration", "command", "image", "timeout", "env", "body", "unknown field"]
                    .iter()
                    .any(|f| err.message.contains(f));
                prop_assert!(named, "{} for {}", err.message, body);
            }
        }
    }

    #[test]
    fn garbage_bodies_are_400s(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Err(err) = parse_create_body(&bytes) {
            prop_assert_eq!(err.status.as_u16(), 400);
        }
    }

    #[test]
    fn every_tools_arguments_are_checked_with_the_argument_named(
        tool in 0..catalogue().len(),
        args in prop::collection::btree_map("[a-z_]{1,12}", json_value(), 0..5),
        known in prop::collection::vec(json_value(), 0..4),
        top in json_value(),
        use_top in any::<bool>(),
    ) {
        let entry = &catalogue()[tool];
        // Mix the tool's real argument names in, so values of the wrong type are met too.
        let schema = entry.input_schema();
        let names: Vec<String> = schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let mut object: Map<String, Value> = args.into_iter().collect();
        for (name, value) in names.iter().zip(known) {
            object.insert(name.clone(), value);
        }
        let args = if use_top { top } else { Value::Object(object) };
        if let Err(err) = entry.check_args(args.clone()) {
            prop_assert_eq!(err.exit(), Exit::DataErr);
            let ToolError::BadArgument { argument, .. } = &err else {
                return Err(TestCaseError::fail(format!("not a bad-argument error: {err}")));
            };
            prop_assert!(!argument.is_empty(), "{} for {}", err, args);
        }
    }
}
