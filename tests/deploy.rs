//! deploy/: the IAM documents on file agree with what `autoheal policy` generates, so the
//! files an operator copies cannot drift from the catalogue; and the host install script is
//! idempotent.

mod support;

use std::process::Command;

use serde_json::Value;

fn policy(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .arg("policy")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A deploy/iam file with its placeholders filled in.
fn document(name: &str, fill: &[(&str, &str)]) -> Value {
    let mut text =
        std::fs::read_to_string(support::repo_root().join("deploy/iam").join(name)).unwrap();
    for (placeholder, value) in fill {
        text = text.replace(placeholder, value);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn the_permissions_policy_file_is_what_the_catalogue_generates() {
    assert_eq!(
        document("permissions-policy.json", &[]),
        policy(&["permissions"]),
        "deploy/iam/permissions-policy.json is stale: autoheal policy permissions > deploy/iam/permissions-policy.json"
    );
}

#[test]
fn the_trust_policy_files_are_what_the_generator_prints() {
    assert_eq!(
        document(
            "trust-oidc.json",
            &[
                ("ACCOUNT_ID", "123456789012"),
                ("ISSUER_HOST", "oidc.acme.example"),
                ("TENANT_SLUG", "acme-corp"),
            ]
        ),
        policy(&[
            "trust-oidc",
            "--account",
            "123456789012",
            "--issuer",
            "https://oidc.acme.example",
            "--audience",
            "acme-corp-oidc-service",
        ])
    );
    assert_eq!(
        document(
            "trust-cross-account.json",
            &[
                ("SOURCE_ACCOUNT_ID", "123456789012"),
                ("SOURCE_ROLE_NAME", "AutohealInstanceRole"),
                ("EXTERNAL_ID", "acme-7f3a"),
            ]
        ),
        policy(&[
            "trust-cross-account",
            "--source-role",
            "arn:aws:iam::123456789012:role/AutohealInstanceRole",
            "--external-id",
            "acme-7f3a",
        ])
    );
    assert_eq!(
        document(
            "assume-role-policy.json",
            &[
                ("ACCOUNT_ID", "123456789012"),
                ("ROLE_NAME", "AutohealReadOnlyRole"),
            ],
        ),
        policy(&[
            "assume-role",
            "--role-arn",
            "arn:aws:iam::123456789012:role/AutohealReadOnlyRole",
        ])
    );
}

fn install(root: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(support::repo_root().join("deploy/install.sh"))
        .args(["--root", root.to_str().unwrap(), "--no-start"])
        .args(["--binary", env!("CARGO_BIN_EXE_autoheal")])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_install_script_writes_a_valid_config_and_is_idempotent() {
    let root = std::env::temp_dir().join(format!("autoheal-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let args = [
        "--account-id",
        "210987654321",
        "--region",
        "eu-west-1",
        "--role-arn",
        "arn:aws:iam::210987654321:role/AutohealCrossAccountRole",
        "--external-id",
        "acme-7f3a",
    ];
    let first = install(&root, &args);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let config = root.join("etc/autoheal/autoheal.toml");
    let written = std::fs::read_to_string(&config).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(["config", "check", "--output", "json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(check.status.success(), "{written}");
    let effective: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(
        effective["integration"][0]["region"], "eu-west-1",
        "{effective}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    assert!(root.join("etc/systemd/system/autoheal.service").exists());
    assert!(root.join("usr/local/bin/autoheal").exists());

    // Again: nothing changes, the config is kept.
    let second = install(&root, &args);
    assert!(second.status.success());
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(!said.contains("installed"), "{said}");
    assert!(said.contains("kept the existing"), "{said}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), written);

    // Bad input: named, nothing written.
    let bad = install(&root, &["--account-id", "12345"]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--account-id"));
    let oidc = install(&root, &["--account-id", "123456789012", "--auth", "oidc"]);
    assert_eq!(oidc.status.code(), Some(64));
    let invalid = install(
        &root,
        &[
            "--account-id",
            "123456789012",
            "--role-arn",
            "arn:aws:iam::1:user/x",
            "--force-config",
        ],
    );
    assert_eq!(invalid.status.code(), Some(78), "config check refuses it");
    // A crafted argument stays one TOML string: it cannot add an endpoint_url of its own
    // (which would send every sandbox's credentials to that endpoint).
    let crafted = install(
        &root,
        &[
            "--account-id",
            "210987654321",
            "--role-arn",
            "arn:aws:iam::210987654321:role/X\"\nendpoint_url = \"http://attacker.example",
            "--force-config",
        ],
    );
    assert_eq!(
        crafted.status.code(),
        Some(78),
        "an invalid role ARN, not a valid config with an extra key: {}",
        String::from_utf8_lossy(&crafted.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        written,
        "the old config stays"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_cloudformation_templates_pass_cfn_lint() {
    let templates: Vec<_> = std::fs::read_dir(support::repo_root().join("deploy/cloudformation"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert_eq!(templates.len(), 3);
    let lint = support::testbed_python().with_file_name("cfn-lint");
    let out = Command::new(lint).args(&templates).output().unwrap();
    assert!(
        out.status.success(),
        "cfn-lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deploys a template against the test bed's CloudFormation and reads back, through IAM,
/// the role it made.
fn deploy(bed: &support::TestBed, template: &str, roles: &[&str], params: &[&str]) -> Value {
    let mut command = Command::new(support::testbed_python());
    command
        .arg(support::repo_root().join("tests/testbed/deploy_stack.py"))
        .args(["--endpoint", &bed.endpoint]);
    for role in roles {
        command.args(["--role", role]);
    }
    command.arg("--template").arg(
        support::repo_root()
            .join("deploy/cloudformation")
            .join(template),
    );
    for param in params {
        command.args(["--param", param]);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{template}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stack: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        stack["stack_status"], "CREATE_COMPLETE",
        "{template}: {stack}"
    );
    stack
}

/// moto 5.2.5's CloudFormation cannot create `AWS::IAM::OIDCProvider` (the stack completes
/// without it, so `${OidcProvider}` stays unresolved in the trust policy) nor evaluate
/// `AWS::NoValue` in a list (instance-role.yaml without TargetRoleArn answers 500): those are
/// checked by cfn-lint only. Everything else is deployed and read back here.
#[test]
fn the_templates_create_the_roles_and_policies_they_promise() {
    let bed = support::TestBed::start();
    let permissions = policy(&["permissions"]);
    let target = "arn:aws:iam::210987654321:role/AutohealCrossAccountRole";

    let instance = deploy(
        &bed,
        "instance-role.yaml",
        &["AutohealInstanceRole", "AutohealReadOnlyRole"],
        &[&format!("TargetRoleArn={target}")],
    );
    // The two-role layout: the instance role may only assume the read-only role (and the
    // cross-account one); the read-only role holds the permissions and trusts the instance
    // role, with sts:TagSession for the sandboxes' tagged sessions.
    let role = &instance["role"];
    assert_eq!(role["trust"], document("trust-ec2.json", &[]));
    let read_only = "arn:aws:iam::123456789012:role/AutohealReadOnlyRole";
    let mut assume = document(
        "assume-role-policy.json",
        &[
            ("ACCOUNT_ID", "123456789012"),
            ("ROLE_NAME", "AutohealReadOnlyRole"),
        ],
    );
    assume["Statement"][0]["Resource"] = serde_json::json!([read_only, target]);
    assert_eq!(
        role["policies"],
        serde_json::json!({"autoheal-assume-roles": assume}),
        "the instance role itself reads nothing"
    );
    assert_eq!(
        instance["instance_profiles"],
        serde_json::json!(["AutohealInstanceRole"])
    );
    let read_only_role = &instance["roles"]["AutohealReadOnlyRole"];
    assert_eq!(
        read_only_role["trust"],
        policy(&[
            "trust-cross-account",
            "--source-role",
            role["arn"].as_str().unwrap(),
        ])
    );
    assert_eq!(
        read_only_role["policies"]["autoheal-read-only"],
        permissions
    );

    let cross = deploy(
        &bed,
        "cross-account-role.yaml",
        &["AutohealCrossAccountRole"],
        &[
            "SourceRoleArn=arn:aws:iam::123456789012:role/AutohealInstanceRole",
            "ExternalId=acme-7f3a",
        ],
    );
    assert_eq!(
        cross["role"]["trust"],
        policy(&[
            "trust-cross-account",
            "--source-role",
            "arn:aws:iam::123456789012:role/AutohealInstanceRole",
            "--external-id",
            "acme-7f3a",
        ])
    );
    assert_eq!(cross["role"]["policies"]["autoheal-read-only"], permissions);

    let oidc = deploy(
        &bed,
        "oidc.yaml",
        &["AutohealOidcRole"],
        &["IssuerHost=oidc.acme.example", "TenantSlug=acme-corp"],
    );
    let trust = &oidc["role"]["trust"]["Statement"][0];
    let expected = policy(&[
        "trust-oidc",
        "--account",
        "123456789012",
        "--issuer",
        "https://oidc.acme.example",
        "--audience",
        "acme-corp-oidc-service",
    ]);
    assert_eq!(trust["Action"], expected["Statement"][0]["Action"]);
    assert_eq!(trust["Condition"], expected["Statement"][0]["Condition"]);
    assert_eq!(oidc["role"]["policies"]["autoheal-read-only"], permissions);
}
