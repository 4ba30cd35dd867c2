//! deploy/: the IAM documents on file agree with what `autoheal policy` generates, so the
//! files an operator copies cannot drift from the catalogue; the example configuration is
//! valid and names every key; and the host install script is idempotent.

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

/// Every key path of an effective configuration (`server.listen`, `integration.name`, …),
/// sections included.
fn key_paths(prefix: &str, value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                into.push(path.clone());
                key_paths(&path, field, into);
            }
        }
        Value::Array(items) if items.iter().all(Value::is_object) => {
            for item in items {
                key_paths(prefix, item, into);
            }
        }
        _ => {}
    }
}

#[test]
fn the_example_config_is_valid_and_names_every_key() {
    let example = support::repo_root().join("deploy/autoheal.example.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    // The [oidc] section is commented out in the example (it is for OIDC integrations only);
    // the environment adds it so that its keys are printed too.
    let out = Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(["config", "check", "--output", "json", "--config"])
        .arg(&example)
        .env("AUTOHEAL_OIDC__ISSUER", "https://oidc.example.com")
        .env("AUTOHEAL_OIDC__TENANT_SLUG", "example-corp")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let effective: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut keys = Vec::new();
    key_paths("", &effective, &mut keys);
    assert!(keys.len() > 30, "{keys:?}");
    assert!(
        keys.contains(&"sandbox.idle_timeout".to_owned()),
        "{keys:?}"
    );
    // Each key appears as `key =` (commented or not) inside its own section.
    let mut missing = Vec::new();
    for path in &keys {
        let (section, key) = path.split_once('.').unwrap_or((path, ""));
        let header = if section == "integration" {
            "[[integration]]".to_owned()
        } else {
            format!("[{section}]")
        };
        // The section runs from its header line (commented or not) to the next header.
        let is_header = |line: &str| line.trim_start_matches("# ").starts_with('[');
        let mut lines = text
            .lines()
            .skip_while(|line| line.trim_start_matches("# ") != header);
        if lines.next().is_none() {
            missing.push(path.clone());
            continue;
        }
        let body: Vec<&str> = lines.take_while(|line| !is_header(line)).collect();
        let named = key.is_empty()
            || body.iter().any(|line| {
                let line = line.trim_start_matches('#').trim_start();
                line.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            });
        if !named {
            missing.push(path.clone());
        }
    }
    assert!(missing.is_empty(), "the example lacks {missing:?}");
}

fn install(root: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(support::repo_root().join("deploy/install.sh"))
        .args(["--root", root.to_str().unwrap(), "--no-start", "--no-check"])
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

/// install.sh on a host without Docker: a PATH with bash and `dirname` only, plus stand-ins
/// for the package managers (and systemctl) that record what they were asked. Answers the
/// run and the record.
fn install_on_a_bare_host(managers: &[&str], args: &[&str]) -> (std::process::Output, String) {
    let dir = std::env::temp_dir().join(format!(
        "autoheal-packages-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["bash", "dirname"] {
        std::os::unix::fs::symlink(format!("/usr/bin/{tool}"), bin.join(tool)).unwrap();
    }
    let log = dir.join("calls");
    for stand_in in managers.iter().chain(&["systemctl"]) {
        // apt-cache knows no docker-compose-v2 (as on Debian 12).
        let answer = if *stand_in == "apt-cache" { 1 } else { 0 };
        let path = bin.join(stand_in);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho \"{stand_in} $*\" >> \"$CALLS\"\nexit {answer}\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new(support::repo_root().join("deploy/install.sh"))
        .args(["--root", dir.join("root").to_str().unwrap(), "--no-start"])
        .args(["--binary", env!("CARGO_BIN_EXE_autoheal")])
        .args(["--account-id", "123456789012"])
        .args(args)
        .env("PATH", &bin)
        .env("CALLS", &log)
        .output()
        .unwrap();
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (out, calls)
}

#[test]
fn the_installer_installs_missing_packages_with_apt_or_dnf() {
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();

    // Debian/Ubuntu: Docker and iptables for the systemd layout; docker-compose (v1.29) where
    // apt has no docker-compose-v2.
    // The lists are updated first, and apt waits for a dpkg lock cloud-init may hold.
    let (out, calls) = install_on_a_bare_host(&["apt-get", "apt-cache"], &[]);
    assert!(
        calls.starts_with(
            "apt-get -o DPkg::Lock::Timeout=600 update -qq\n\
             apt-get -o DPkg::Lock::Timeout=600 install -y -qq docker.io iptables\n"
        ),
        "{calls}"
    );
    assert!(calls.contains("systemctl enable --now docker\n"), "{calls}");
    // The stand-ins install nothing, so the run stops there, saying so.
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("docker is still missing"),
        "{}",
        stderr(&out)
    );
    let (_, calls) = install_on_a_bare_host(&["apt-get", "apt-cache"], &["--method", "compose"]);
    assert!(
        calls.contains(
            "apt-get -o DPkg::Lock::Timeout=600 install -y -qq docker.io docker-compose\n"
        ),
        "{calls}"
    );

    // Amazon Linux 2023: dnf, with its own package names; no Compose package there.
    let (out, calls) = install_on_a_bare_host(&["dnf"], &[]);
    assert!(
        calls.contains("dnf install -y -q docker iptables-nft\n"),
        "{calls}"
    );
    assert!(calls.contains("systemctl enable --now docker\n"), "{calls}");
    assert_eq!(out.status.code(), Some(69));
    let (out, calls) = install_on_a_bare_host(&["dnf"], &["--method", "compose"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        stderr(&out).contains("no Compose package"),
        "{}",
        stderr(&out)
    );
    assert!(!calls.contains("dnf install"), "{calls}");

    // Told not to, or with no package manager: nothing installed, the missing ones named.
    let (out, calls) = install_on_a_bare_host(&["dnf"], &["--no-packages"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        stderr(&out).contains("missing on this host: docker iptables"),
        "{}",
        stderr(&out)
    );
    assert!(calls.is_empty(), "{calls}");
    let (out, _) = install_on_a_bare_host(&[], &[]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        stderr(&out).contains("neither apt-get nor dnf"),
        "{}",
        stderr(&out)
    );
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
