//! The `autoheal` binary as an operator meets it: help, version, exit codes, `config check`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn autoheal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(args)
        .env_remove("AUTOHEAL_CONFIG")
        .output()
        .expect("run autoheal")
}

fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("autoheal-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn version_and_help_work() {
    let version = autoheal(&["--version"]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("autoheal "));
    for command in [
        "serve", "check", "config", "tools", "tool", "mcp", "policy", "sandbox", "oidc",
    ] {
        let help = autoheal(&[command, "--help"]);
        assert!(help.status.success(), "{command} --help");
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(text.contains("Usage: autoheal"), "{command}: {text}");
    }
}

#[test]
fn usage_errors_exit_64() {
    assert_eq!(autoheal(&[]).status.code(), Some(64));
    assert_eq!(autoheal(&["frobnicate"]).status.code(), Some(64));
    assert_eq!(
        autoheal(&["check", "--output", "yaml"]).status.code(),
        Some(64)
    );
}

#[test]
fn config_check_names_all_five_mistakes_and_exits_78() {
    let path = write_config(
        "five-mistakes.toml",
        r#"
[server]
listen = "everywhere"

[sandbox]
max_lifetime = "-5m"

[[integration]]
name = "production-aws"
account_id = "12345678901"
auth = "instance_role"
role_arn = "arn:aws:iam::210987654321:role/AutohealCrossAccountRole"

[[integration]]
name = "production-aws"
account_id = "123456789012"
region = "us-east"
auth = "oidc"
role_arn = "arn:aws:iam::210987654321:role/AutohealOidcRole"
"#,
    );
    let out = autoheal(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "server.listen:",
        "sandbox.max_lifetime:",
        "integration[0].account_id:",
        "integration[1].region:",
        "integration[1].auth:",
        // Found although integration[1] has other problems too.
        "integration[1].name: duplicate",
        "integration[1].role_arn:",
    ] {
        assert!(stderr.contains(key), "{key} missing from:\n{stderr}");
    }
    assert!(stderr.contains("7 problems"), "{stderr}");

    let json = autoheal(&[
        "config",
        "check",
        "--output",
        "json",
        "--config",
        path.to_str().unwrap(),
    ]);
    assert_eq!(json.status.code(), Some(78));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
    assert_eq!(doc["error"]["issues"].as_array().unwrap().len(), 7);
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let path = write_config(
        "good.toml",
        r#"
[[integration]]
name = "production-aws"
account_id = "210987654321"
auth = "instance_role"
role_arn = "arn:aws:iam::210987654321:role/AutohealCrossAccountRole"
external_id = "s3cr3t-external-id"
"#,
    );
    // --config after the subcommand works too.
    let out = autoheal(&["config", "check", "--config", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let effective: toml::Table = toml::from_str(&text).expect("the output is TOML");
    assert_eq!(effective["sandbox"]["max_lifetime"].as_str(), Some("15m"));
    assert_eq!(
        effective["integration"][0]["region"].as_str(),
        Some("us-east-1")
    );
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(text.contains("**REDACTED**"));

    let out = autoheal(&[
        "--config",
        path.to_str().unwrap(),
        "config",
        "check",
        "--output",
        "json",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["integration"][0]["external_id"], "**REDACTED**");
}

#[test]
fn a_missing_config_file_is_a_configuration_error() {
    let out = autoheal(&["config", "check", "--config", "/nonexistent/autoheal.toml"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

fn json_of(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON document")
}

#[test]
fn policy_trust_oidc_names_the_provider_and_the_audience() {
    let policy = json_of(&autoheal(&[
        "policy",
        "trust-oidc",
        "--account",
        "123456789012",
        "--issuer",
        "https://oidc.example.com/acme",
        "--audience",
        "acme-corp-oidc-service",
    ]));
    let statement = &policy["Statement"][0];
    assert_eq!(
        statement["Principal"]["Federated"],
        "arn:aws:iam::123456789012:oidc-provider/oidc.example.com/acme"
    );
    // sts:TagSession: each sandbox's own session carries session tags.
    assert_eq!(
        statement["Action"],
        serde_json::json!(["sts:AssumeRoleWithWebIdentity", "sts:TagSession"])
    );
    assert_eq!(
        statement["Condition"]["StringEquals"]["oidc.example.com/acme:aud"],
        "acme-corp-oidc-service"
    );
    assert_eq!(
        statement["Condition"]["StringLike"]["oidc.example.com/acme:sub"], "integration:*",
        "only autoheal's integration tokens"
    );
    let pinned = json_of(&autoheal(&[
        "policy",
        "trust-oidc",
        "--account",
        "123456789012",
        "--issuer",
        "https://oidc.example.com/acme",
        "--audience",
        "acme-corp-oidc-service",
        "--integration",
        "production-aws",
    ]));
    assert_eq!(
        pinned["Statement"][0]["Condition"]["StringLike"]["oidc.example.com/acme:sub"],
        serde_json::json!([
            "integration:production-aws",
            "integration:production-aws:sandbox:*"
        ])
    );
    // The issuer must be exactly what tokens carry.
    for bad in ["http://oidc.example.com", "https://oidc.example.com/"] {
        let out = autoheal(&[
            "policy",
            "trust-oidc",
            "--account",
            "123456789012",
            "--issuer",
            bad,
            "--audience",
            "a",
        ]);
        assert_eq!(out.status.code(), Some(64), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--issuer"));
    }
}

#[test]
fn policy_trust_oidc_takes_issuer_and_audience_from_the_config() {
    let config = write_config(
        "oidc.toml",
        "[oidc]\nissuer = \"https://app.autoheal.ai\"\ntenant_slug = \"acme-corp\"\n\n[[integration]]\nname = \"x\"\naccount_id = \"123456789012\"\nauth = \"environment\"\n",
    );
    let policy = json_of(&autoheal(&[
        "policy",
        "trust-oidc",
        "--account",
        "123456789012",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_eq!(
        policy["Statement"][0]["Condition"]["StringEquals"]["app.autoheal.ai:aud"],
        "acme-corp-oidc-service"
    );
}

#[test]
fn policy_trust_cross_account_trusts_the_source_role_with_the_external_id() {
    let policy = json_of(&autoheal(&[
        "policy",
        "trust-cross-account",
        "--source-role",
        "arn:aws:iam::123456789012:role/AutohealInstanceRole",
        "--external-id",
        "acme-7f3a",
    ]));
    let statement = &policy["Statement"][0];
    assert_eq!(
        statement["Principal"]["AWS"],
        "arn:aws:iam::123456789012:role/AutohealInstanceRole"
    );
    assert_eq!(
        statement["Action"],
        serde_json::json!(["sts:AssumeRole", "sts:TagSession"])
    );
    assert_eq!(
        statement["Condition"]["StringEquals"]["sts:ExternalId"],
        "acme-7f3a"
    );
    let missing = autoheal(&["policy", "trust-cross-account"]);
    assert_eq!(missing.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--source-role"));
}

#[test]
fn a_stalled_aws_endpoint_is_a_clear_error_within_the_operation_timeout() {
    // An endpoint that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(8) {
            held.push(stream);
        }
    });
    let began = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(["tool", "whoami", "--output", "json"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "AKIDSTALL")
        .env("AWS_SECRET_ACCESS_KEY", "stall-secret")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    let took = began.elapsed();
    drop(holder);
    assert_eq!(
        out.status.code(),
        Some(69),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["error"]["action"], "sts:GetCallerIdentity", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timeout")
            || error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("timed out"),
        "{error}"
    );
    // autoheal::aws_sdk::OPERATION_TIMEOUT (40 s), and some slack for a loaded machine.
    assert!(took < std::time::Duration::from_secs(55), "took {took:?}");
}
