//! Unit tests of the configuration: each validation rule, the source order, and a file with
//! several mistakes reported all at once.
// figment's Jail returns its own (large) error type; that is its API, not ours.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use figment::Jail;

use super::*;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8700"

[oidc]
issuer = "https://app.autoheal.ai"
tenant_slug = "acme-corp"

[[integration]]
name = "production-aws"
account_id = "210987654321"
auth = "instance_role"
role_arn = "arn:aws:iam::210987654321:role/AutohealCrossAccountRole"
external_id = "ext-7f3a9c"

[[integration]]
name = "federated"
account_id = "210987654321"
region = "eu-west-1"
auth = "oidc"
role_arn = "arn:aws:iam::210987654321:role/AutohealOidcRole"
"#;

/// The issues of a config that must fail, as `key: message` lines.
fn issues(toml: &str) -> Vec<ConfigIssue> {
    match load_from_str(toml) {
        Err(ConfigError::Invalid { issues, .. }) => issues,
        other => panic!("expected validation issues, got {other:?}"),
    }
}

fn issue_for<'a>(all: &'a [ConfigIssue], key: &str) -> &'a ConfigIssue {
    all.iter()
        .find(|i| i.key == key)
        .unwrap_or_else(|| panic!("no issue for {key} in {all:#?}"))
}

fn one_integration(extra: &str) -> String {
    format!(
        "[[integration]]\nname = \"x\"\naccount_id = \"123456789012\"\nauth = \"instance_role\"\n{extra}\n"
    )
}

#[test]
fn a_good_file_loads_with_defaults_filled_in() {
    let config = load_from_str(GOOD).unwrap();
    assert_eq!(config.integrations.len(), 2);
    let prod = config.integration("production-aws").unwrap();
    assert_eq!(prod.region.as_str(), DEFAULT_REGION);
    assert_eq!(prod.session_duration, DEFAULT_SESSION_DURATION);
    assert_eq!(
        prod.role_arn.as_ref().unwrap().account_id().as_str(),
        "210987654321"
    );
    assert_eq!(config.sandbox.max_lifetime, DEFAULT_MAX_LIFETIME);
    assert_eq!(config.sandbox.memory, DEFAULT_SANDBOX_MEMORY);
    assert_eq!(
        config.oidc.as_ref().unwrap().audience(),
        "acme-corp-oidc-service"
    );
    assert_eq!(
        config.integration("federated").unwrap().region.as_str(),
        "eu-west-1"
    );
}

#[test]
fn typed_values_parse_units() {
    let config = load_from_str(&format!(
        "[sandbox]\nmax_lifetime = \"1h30m\"\nmemory = \"1GiB\"\ncpus = 0.5\npids_limit = 64\n{}",
        one_integration("")
    ))
    .unwrap();
    assert_eq!(config.sandbox.max_lifetime, Duration::from_secs(5400));
    assert_eq!(config.sandbox.memory.as_u64(), 1 << 30);
    assert_eq!(config.sandbox.cpus, 0.5);
    assert_eq!(config.sandbox.pids_limit, 64);
}

#[test]
fn account_ids_must_have_twelve_digits() {
    let all =
        issues("[[integration]]\nname = \"x\"\naccount_id = \"12345\"\nauth = \"environment\"\n");
    assert!(
        issue_for(&all, "integration[0].account_id")
            .message
            .contains("12-digit")
    );
}

#[test]
fn role_arns_are_checked() {
    let all = issues(&one_integration("role_arn = \"arn:aws:iam::123:role/X\""));
    assert!(
        issue_for(&all, "integration[0].role_arn")
            .message
            .starts_with("not an IAM role ARN")
    );
}

#[test]
fn a_role_in_another_account_than_account_id_is_caught_at_load() {
    let all = issues(&one_integration(
        "role_arn = \"arn:aws:iam::210987654321:role/AutohealCrossAccountRole\"",
    ));
    let issue = issue_for(&all, "integration[0].role_arn");
    assert!(issue.message.contains("210987654321"), "{issue}");
    assert!(issue.message.contains("123456789012"), "{issue}");
}

#[test]
fn regions_are_checked() {
    let all = issues(&one_integration("region = \"moon-1\""));
    assert!(
        issue_for(&all, "integration[0].region")
            .message
            .contains("us-east-1")
    );
}

#[test]
fn integration_names_are_unique() {
    let twice = format!("{}{}", one_integration(""), one_integration(""));
    let all = issues(&twice);
    let issue = issue_for(&all, "integration[1].name");
    assert!(issue.message.contains("duplicate"), "{issue}");
    assert!(issue.message.contains("integration[0]"), "{issue}");
}

#[test]
fn a_duplicate_is_reported_even_when_one_of_the_pair_has_another_error() {
    let twice = format!(
        "{}{}",
        one_integration(""),
        one_integration("region = \"moon-1\"")
    );
    let all = issues(&twice);
    assert!(
        issue_for(&all, "integration[1].name")
            .message
            .contains("duplicate")
    );
    assert!(
        issue_for(&all, "integration[1].region")
            .message
            .contains("us-east-1")
    );
}

#[test]
fn limits_have_defaults_and_bounds() {
    let config = load_from_str(&one_integration("")).unwrap();
    assert_eq!(config.sandbox.max_running, DEFAULT_MAX_RUNNING as usize);
    assert_eq!(config.sandbox.history, DEFAULT_HISTORY as usize);
    assert!(
        config.sandbox.images.is_empty(),
        "only sandbox.image by default"
    );
    assert_eq!(config.server.max_connections, DEFAULT_MAX_CONNECTIONS);
    assert_eq!(
        config.server.header_read_timeout,
        DEFAULT_HEADER_READ_TIMEOUT
    );
    assert_eq!(config.server.body_read_timeout, DEFAULT_BODY_READ_TIMEOUT);

    let all = issues(&format!(
        "[server]\nmax_connections = 1\nheader_read_timeout = \"1h\"\nbody_read_timeout = \"x\"\n\
         [sandbox]\nmax_running = 0\nhistory = -1\nimages = [\"Bad Image\", \"ok:1\"]\nimage = \"\"\n{}",
        one_integration("")
    ));
    for key in [
        "server.max_connections",
        "server.header_read_timeout",
        "server.body_read_timeout",
        "sandbox.max_running",
        "sandbox.history",
        "sandbox.images[0]",
        "sandbox.image",
    ] {
        issue_for(&all, key);
    }
    assert!(!all.iter().any(|i| i.key == "sandbox.images[1]"));
}

#[test]
fn oidc_needs_a_role_and_the_oidc_section() {
    let all =
        issues("[[integration]]\nname = \"x\"\naccount_id = \"123456789012\"\nauth = \"oidc\"\n");
    assert!(
        issue_for(&all, "integration[0].role_arn")
            .message
            .contains("required")
    );
    assert!(
        issue_for(&all, "integration[0].auth")
            .message
            .contains("[oidc]")
    );
}

#[test]
fn the_issuer_must_be_exact_https() {
    for (issuer, expect) in [
        ("https://app.autoheal.ai/", "must not end with '/'"),
        ("http://app.autoheal.ai", "https"),
        ("app.autoheal.ai", "not a URL"),
    ] {
        let all = issues(&format!(
            "[oidc]\nissuer = \"{issuer}\"\ntenant_slug = \"acme\"\n{}",
            one_integration("")
        ));
        let issue = issue_for(&all, "oidc.issuer");
        assert!(issue.message.contains(expect), "{issuer}: {issue}");
    }
}

#[test]
fn the_listen_address_must_parse() {
    let all = issues(&format!(
        "[server]\nlisten = \"localhost\"\n{}",
        one_integration("")
    ));
    assert!(issue_for(&all, "server.listen").message.contains("IP:PORT"));
}

#[test]
fn durations_must_be_positive_and_well_formed() {
    let all = issues(&format!(
        "[sandbox]\nmax_lifetime = \"0s\"\n{}",
        one_integration("")
    ));
    assert!(
        issue_for(&all, "sandbox.max_lifetime")
            .message
            .contains("longer than zero")
    );
    let all = issues(&format!(
        "[sandbox]\nmax_lifetime = \"soon\"\n{}",
        one_integration("")
    ));
    assert!(
        issue_for(&all, "sandbox.max_lifetime")
            .message
            .contains("not a duration")
    );
}

#[test]
fn role_chaining_sessions_are_capped_at_one_hour() {
    let all = issues(&one_integration(
        "role_arn = \"arn:aws:iam::210987654321:role/R\"\nsession_duration = \"2h\"",
    ));
    assert!(
        issue_for(&all, "integration[0].session_duration")
            .message
            .contains("role chaining")
    );
}

#[test]
fn unknown_keys_are_named() {
    let all = issues(
        "[sandbox]\nimage_name = \"x\"\n[[integration]]\nname = \"x\"\naccount_id = \"123456789012\"\nauth = \"environment\"\nregoin = \"us-east-1\"\n",
    );
    assert!(
        issue_for(&all, "sandbox.image_name")
            .message
            .contains("unknown key")
    );
    assert!(
        issue_for(&all, "integration[0].regoin")
            .message
            .contains("region")
    );
}

#[test]
fn wrong_types_are_reported_not_fatal() {
    let all = issues(&format!(
        "[sandbox]\ncpus = \"many\"\npids_limit = -1\nimage = true\n{}",
        one_integration("")
    ));
    for key in ["sandbox.cpus", "sandbox.pids_limit", "sandbox.image"] {
        issue_for(&all, key);
    }
}

#[test]
fn a_file_with_five_mistakes_names_all_five() {
    let all = issues(
        r#"
[server]
listen = "nowhere"

[sandbox]
memory = "a lot"

[[integration]]
name = "prod"
account_id = "1234"
region = "us-east-1"
auth = "instance_role"
role_arn = "arn:aws:iam::210987654321:user/bob"

[[integration]]
name = "eu"
account_id = "123456789012"
region = "europe"
auth = "keys"
"#,
    );
    let keys: Vec<&str> = all.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "server.listen",
            "sandbox.memory",
            "integration[0].account_id",
            "integration[0].role_arn",
            "integration[1].region",
            "integration[1].auth",
        ]
    );
}

#[test]
fn a_file_without_integrations_is_an_error_but_no_file_runs_the_default() {
    let all = issues("[server]\nlisten = \"127.0.0.1:9000\"\n");
    issue_for(&all, "integration");

    Jail::expect_with(|jail| {
        jail.clear_env();
        let config = load(None).expect("defaults load");
        assert_eq!(config.integrations[0].name, DEFAULT_INTEGRATION_NAME);
        assert_eq!(config.integrations[0].auth, AuthMethod::Environment);
        Ok(())
    });
}

#[test]
fn environment_overrides_the_file_and_non_config_variables_are_ignored() {
    Jail::expect_with(|jail| {
        jail.create_file("autoheal.toml", GOOD)?;
        jail.set_env("AUTOHEAL_SERVER__LISTEN", "127.0.0.1:9999");
        jail.set_env("AUTOHEAL_SANDBOX__MAX_LIFETIME", "5m");
        jail.set_env("AUTOHEAL_API_TOKEN", "not-a-config-key");
        jail.set_env("AUTOHEAL_INTEGRATION", "set-inside-sandboxes");
        let config = load(Some(std::path::Path::new("autoheal.toml"))).expect("loads");
        assert_eq!(config.server.listen.port(), 9999);
        assert_eq!(config.sandbox.max_lifetime, Duration::from_secs(300));
        assert_eq!(config.integrations.len(), 2);
        Ok(())
    });
}

#[test]
fn a_bad_environment_value_is_named_by_its_key() {
    Jail::expect_with(|jail| {
        jail.create_file("autoheal.toml", GOOD)?;
        jail.set_env("AUTOHEAL_SANDBOX__MEMORY", "huge");
        match load(Some(std::path::Path::new("autoheal.toml"))) {
            Err(ConfigError::Invalid { issues, .. }) => {
                issue_for(&issues, "sandbox.memory");
            }
            other => panic!("expected an invalid config, got {other:?}"),
        }
        Ok(())
    });
}

#[test]
fn a_missing_explicit_file_is_an_error() {
    let err = load(Some(std::path::Path::new("/nonexistent/autoheal.toml"))).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }));
}

#[test]
fn secrets_are_redacted_in_the_effective_config() {
    let config = load_from_str(GOOD).unwrap();
    let toml = config.to_toml();
    let json = config.to_json().to_string();
    for text in [&toml, &json] {
        assert!(!text.contains("ext-7f3a9c"), "{text}");
        assert!(text.contains(REDACTED), "{text}");
    }
    assert!(!format!("{config:?}").contains("ext-7f3a9c"));
}

#[test]
fn blocked_addresses_default_to_imds_and_every_bad_entry_is_named() {
    let config = load_from_str(&one_integration("")).unwrap();
    let defaults: Vec<String> = config
        .sandbox
        .blocked_addresses
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(defaults, ["169.254.169.254/32", "fd00:ec2::254/128"]);

    let toml = format!(
        "[sandbox]\nblocked_addresses = [\"169.254.169.254\", \"10.0.0.0/33\", \"imds\"]\n{}",
        one_integration("")
    );
    let all = issues(&toml);
    let bad: Vec<_> = all
        .iter()
        .filter(|i| i.key == "sandbox.blocked_addresses")
        .collect();
    assert_eq!(bad.len(), 2, "{all:?}");
    assert!(bad[0].message.contains("10.0.0.0/33"), "{}", bad[0]);
    assert!(bad[1].message.contains("\"imds\""), "{}", bad[1]);

    let empty = format!("[sandbox]\nblocked_addresses = []\n{}", one_integration(""));
    assert!(
        load_from_str(&empty)
            .unwrap()
            .sandbox
            .blocked_addresses
            .is_empty()
    );
}

#[test]
fn a_networks_first_host_is_where_docker_puts_its_gateway() {
    let first = |cidr: &str| Cidr::parse(cidr).unwrap().first_ipv4_host();
    assert_eq!(
        first("198.18.120.0/24"),
        Some("198.18.120.1".parse().unwrap())
    );
    assert_eq!(
        first("198.18.120.77/16"),
        Some("198.18.0.1".parse().unwrap())
    );
    assert_eq!(first("0.0.0.0/0"), Some("0.0.0.1".parse().unwrap()));
    assert_eq!(first("198.18.120.1/32"), None);
    assert_eq!(first("fd00::/64"), None);
}

#[test]
fn a_network_contains_its_addresses_only() {
    let net = |cidr: &str| Cidr::parse(cidr).unwrap();
    let ip = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
    assert!(net("169.254.169.254/32").contains(ip("169.254.169.254")));
    assert!(!net("169.254.169.254/32").contains(ip("169.254.169.253")));
    assert!(net("198.18.0.0/15").contains(ip("198.19.255.1")));
    assert!(!net("198.18.0.0/15").contains(ip("198.20.0.1")));
    assert!(net("fd00:ec2::254/128").contains(ip("fd00:ec2::254")));
    assert!(!net("fd00:ec2::254/128").contains(ip("169.254.169.254")));
    assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
}

#[test]
fn an_upstream_proxy_is_http_host_and_port_without_credentials() {
    let config = load_from_str(&one_integration("")).unwrap();
    assert_eq!(config.sandbox.upstream_proxy, None);
    let set = load_from_str(&format!(
        "[sandbox]\nupstream_proxy = \"http://proxy.corp.example:3128\"\n{}",
        one_integration("")
    ))
    .unwrap();
    let upstream = set.sandbox.upstream_proxy.unwrap();
    assert_eq!(
        (upstream.host.as_str(), upstream.port),
        ("proxy.corp.example", 3128)
    );
    assert_eq!(upstream.to_string(), "http://proxy.corp.example:3128");
    for (bad, said) in [
        ("https://proxy.example:3128", "plain HTTP CONNECT"),
        (
            "http://user:secret@proxy.example:3128",
            "credentials in the URL",
        ),
        ("http://proxy.example", "no port"),
        ("http://proxy.example:3128/path", "a path"),
        ("proxy.example:3128", "expected http://host:port"),
    ] {
        let all = issues(&format!(
            "[sandbox]\nupstream_proxy = \"{bad}\"\n{}",
            one_integration("")
        ));
        let issue = issue_for(&all, "sandbox.upstream_proxy");
        assert!(issue.message.contains(said), "{bad}: {}", issue.message);
        assert!(!issue.message.contains("secret"), "{}", issue.message);
    }
}

#[test]
fn egress_is_aws_by_default_and_open_or_a_bad_pattern_is_said() {
    let config = load_from_str(&one_integration("")).unwrap();
    assert_eq!(config.sandbox.egress, Egress::Aws);
    assert!(config.sandbox.egress_allow.is_empty());
    assert_eq!(config.sandbox.credentials, CredentialsDelivery::Env);

    let open = load_from_str(&format!(
        "[sandbox]\negress = \"open\"\negress_allow = [\"*.vpce.amazonaws.com\"]\n{}",
        one_integration("")
    ))
    .unwrap();
    assert_eq!(open.sandbox.egress, Egress::Open);
    assert_eq!(
        open.sandbox.egress_allow[0].to_string(),
        "*.vpce.amazonaws.com"
    );
    assert!(
        open.warnings()
            .iter()
            .any(|w| w.contains("egress = \"open\""))
    );

    let all = issues(&format!(
        "[sandbox]\negress = \"none\"\negress_allow = [\"ok.example\", \"not a host\"]\ncredentials = \"file\"\n{}",
        one_integration("")
    ));
    assert!(
        issue_for(&all, "sandbox.egress")
            .message
            .contains("aws, open")
    );
    assert!(
        issue_for(&all, "sandbox.egress_allow[1]")
            .message
            .contains("not a host")
    );
    assert!(
        issue_for(&all, "sandbox.credentials")
            .message
            .contains("env, endpoint")
    );

    let host = load_from_str(&format!(
        "[sandbox]\nnetwork = \"host\"\n{}",
        one_integration("")
    ))
    .unwrap();
    assert!(
        host.warnings()
            .iter()
            .any(|w| w.contains("egress control is off"))
    );
}
