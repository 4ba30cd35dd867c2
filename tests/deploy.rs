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
    let assume = document(
        "assume-role-policy.json",
        &[
            ("TARGET_ACCOUNT_ID", "210987654321"),
            ("TARGET_ROLE_NAME", "AutohealCrossAccountRole"),
        ],
    );
    assert_eq!(
        assume["Statement"][0]["Resource"],
        "arn:aws:iam::210987654321:role/AutohealCrossAccountRole"
    );
    assert_eq!(assume["Statement"][0]["Action"], "sts:AssumeRole");
}
