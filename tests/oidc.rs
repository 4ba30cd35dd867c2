//! The daemon as its own OIDC issuer: keys, documents, tokens, and credentials through
//! `sts:AssumeRoleWithWebIdentity`.
//!
//! moto gap (TESTING.md 3): STS does not validate web-identity tokens at all, so these tests
//! validate them as STS would — with PyJWT (an independent implementation, in the test
//! bed's virtualenv) against the published or served JWKS — and in Rust with jsonwebtoken.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use support::{TestBed, testbed_python, wait_for};

const ISSUER: &str = "https://oidc.example.com/acme";
const AUDIENCE: &str = "acme-corp-oidc-service";
const ROLE: &str = "arn:aws:iam::210987654321:role/AutohealOidcRole";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("autoheal-oidc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("autoheal.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[oidc]
issuer = "{ISSUER}"
tenant_slug = "acme-corp"
key_dir = "{}/keys"

[[integration]]
name = "prod"
account_id = "210987654321"
auth = "oidc"
role_arn = "{ROLE}"
{extra}
"#,
            dir.display()
        ),
    )
    .unwrap();
    path
}

fn autoheal(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run autoheal")
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// PyJWT's verdict on `token` against the JWKS at `jwks` (a file or URL).
fn pyjwt(jwks: &str, token: &str, audience: &str, at_offset: i64) -> Value {
    let out = Command::new(testbed_python())
        .arg(support::repo_root().join("tests/testbed/verify_jwt.py"))
        .args(["--jwks", jwks, "--token", token, "--issuer", ISSUER])
        .args([
            "--audience",
            audience,
            "--at-offset",
            &at_offset.to_string(),
        ])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn keys_documents_and_tokens_verify_with_an_independent_implementation() {
    let dir = temp_dir("cli");
    let config = config(&dir, "");
    // No key yet: a clear error, not a panic.
    let none = autoheal(&config, &["oidc", "token", "--integration", "prod"]);
    assert_eq!(none.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&none.stderr).contains("oidc keygen"));

    ok(autoheal(&config, &["oidc", "keygen"]));
    let keys: Vec<_> = std::fs::read_dir(dir.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        std::fs::metadata(&keys[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let issued: Value = serde_json::from_str(&ok(autoheal(
        &config,
        &["oidc", "token", "--integration", "prod", "--output", "json"],
    )))
    .unwrap();
    let token = issued["token"].as_str().unwrap().to_owned();
    ok(autoheal(
        &config,
        &[
            "oidc",
            "publish",
            "--out",
            dir.join("site").to_str().unwrap(),
        ],
    ));
    let discovery: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("site/.well-known/openid-configuration")).unwrap(),
    )
    .unwrap();
    assert_eq!(discovery["issuer"], ISSUER);
    assert_eq!(
        discovery["jwks_uri"],
        format!("{ISSUER}/.well-known/jwks.json")
    );
    let jwks = dir.join("site/.well-known/jwks.json");
    let jwks = jwks.to_str().unwrap();

    let verdict = pyjwt(jwks, &token, AUDIENCE, 0);
    assert_eq!(verdict["valid"], true, "{verdict}");
    let claims = &verdict["claims"];
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["sub"], "integration:prod");
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert!(lifetime <= 15 * 60, "exp at most 15 minutes after iat");
    assert_eq!(claims["jti"].as_str().unwrap().len(), 32);

    // The same verifier rejects a wrong audience and an expired token.
    let wrong = pyjwt(jwks, &token, "someone-else", 0);
    assert_eq!(wrong["valid"], false);
    assert!(
        wrong["error"].as_str().unwrap().contains("InvalidAudience"),
        "{wrong}"
    );
    let later = pyjwt(jwks, &token, AUDIENCE, lifetime as i64 + 60);
    assert_eq!(later["valid"], false);
    assert!(
        later["error"].as_str().unwrap().contains("Expired"),
        "{later}"
    );

    // Rotation: a second key is published at once; tokens keep verifying (the old key signs
    // until the new one has been published for a while), old and new alike.
    ok(autoheal(&config, &["oidc", "keygen", "--alg", "es256"]));
    ok(autoheal(
        &config,
        &[
            "oidc",
            "publish",
            "--out",
            dir.join("site").to_str().unwrap(),
        ],
    ));
    let published: Value = serde_json::from_str(&std::fs::read_to_string(jwks).unwrap()).unwrap();
    assert_eq!(
        published["keys"].as_array().unwrap().len(),
        2,
        "{published}"
    );
    assert_eq!(pyjwt(jwks, &token, AUDIENCE, 0)["valid"], true);
    let fresh: Value = serde_json::from_str(&ok(autoheal(
        &config,
        &["oidc", "token", "--integration", "prod", "--output", "json"],
    )))
    .unwrap();
    assert_eq!(
        pyjwt(jwks, fresh["token"].as_str().unwrap(), AUDIENCE, 0)["valid"],
        true
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_daemon_serves_its_documents_and_gets_credentials_through_web_identity() {
    let bed = TestBed::start();
    let dir = temp_dir("serve");
    let port = support::free_port();
    let config = config(
        &dir,
        &format!(
            "endpoint_url = \"{0}\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\napi_token_file = \"{1}/api-token\"\nstate_dir = \"{1}/state\"\n\n[sandbox]\nimage = \"autoheal-sandbox-test:latest\"\nnetwork = \"host\"\n",
            bed.endpoint,
            dir.display()
        ),
    );
    let log_path = dir.join("serve.log");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("AUTOHEAL_API_TOKEN", "oidc-test-token-0123456789")
        .env("AUTOHEAL_LOG", "trace")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    // serve created the first key itself; the documents need no token.
    let discovery: Value = wait_for("the discovery document", Duration::from_secs(60), || {
        let request = http
            .get(format!("{base}/.well-known/openid-configuration"))
            .send();
        async move { request.await.ok()?.json().await.ok() }
    })
    .await;
    assert_eq!(discovery["issuer"], ISSUER);
    let jwks_url = format!("{base}/.well-known/jwks.json");
    let jwks: Value = http
        .get(&jwks_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1, "{jwks}");
    assert!(jwks["keys"][0].get("d").is_none(), "public parts only");

    // A token from the CLI (same key directory) verifies against the served JWKS, in
    // Python and in Rust.
    let issued: Value = serde_json::from_str(&ok(autoheal(
        &config,
        &["oidc", "token", "--integration", "prod", "--output", "json"],
    )))
    .unwrap();
    let token = issued["token"].as_str().unwrap();
    assert_eq!(pyjwt(&jwks_url, token, AUDIENCE, 0)["valid"], true);
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = set
        .find(header.kid.as_deref().unwrap())
        .expect("kid in the JWKS");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[ISSUER]);
    let decoded = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap();
    assert_eq!(decoded.claims["sub"], "integration:prod");

    // The broker exchanged a token with AssumeRoleWithWebIdentity: the integration holds
    // credentials, and a sandbox runs as the federated role.
    let auth = "Bearer oidc-test-token-0123456789";
    let listed: Value = wait_for("OIDC credentials", Duration::from_secs(60), || {
        let request = http
            .get(format!("{base}/v1/integrations"))
            .header("authorization", auth)
            .send();
        async move {
            let listed: Value = request.await.ok()?.json().await.ok()?;
            listed["integrations"][0]["credentials"]["expires_at"]
                .is_string()
                .then_some(listed)
        }
    })
    .await;
    assert_eq!(listed["integrations"][0]["auth"], "oidc");
    let done: Value = http
        .post(format!("{base}/v1/sandboxes?wait=true"))
        .header("authorization", auth)
        .json(&json!({"integration": "prod", "command": ["autoheal", "tool", "whoami", "--output", "json"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["exit_code"], 0, "{done}");
    let whoami: Value = serde_json::from_str(done["stdout"].as_str().unwrap()).unwrap();
    assert!(
        whoami["arn"].as_str().unwrap().contains("AutohealOidcRole"),
        "{whoami}"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
    // The signing key never reaches the log.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let key_file = std::fs::read_dir(dir.join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let pem = std::fs::read_to_string(key_file).unwrap();
    let body_line = pem.lines().nth(1).unwrap();
    assert!(
        !log.contains(body_line),
        "the private key leaked into the log"
    );
    assert!(!log.contains(token), "a token leaked into the log");
    let _ = std::fs::remove_dir_all(&dir);
}
