//! Proof that the test bed's IMDSv2 emulator behaves like EC2's, and that aws-config's own
//! `ImdsCredentialsProvider` accepts it (moto's metadata endpoint fails that: TESTING.md gap 2).

mod support;

use std::time::Duration;

use aws_config::imds::client::Client as ImdsClient;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_credential_types::provider::ProvideCredentials;
use serde_json::json;
use support::{TestBed, wait_for};

const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

fn provider(bed: &TestBed) -> ImdsCredentialsProvider {
    let client = ImdsClient::builder()
        .endpoint(bed.imds_endpoint.as_str())
        .expect("valid endpoint")
        .read_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(1))
        .max_attempts(1)
        .build();
    ImdsCredentialsProvider::builder()
        .imds_client(client)
        .build()
}

async fn token(http: &reqwest::Client, bed: &TestBed, ttl: &str) -> reqwest::Response {
    http.put(format!("{}/latest/api/token", bed.imds_endpoint))
        .header(TTL_HEADER, ttl)
        .send()
        .await
        .expect("IMDS answers")
}

#[tokio::test]
async fn the_sdk_provider_gets_instance_role_credentials_that_work_against_moto() {
    let bed = TestBed::start();
    let credentials = provider(&bed)
        .provide_credentials()
        .await
        .expect("aws-config accepts the emulator's IMDSv2 answers");
    let state = bed.imds_state().await;
    assert_eq!(credentials.access_key_id(), state["access_key_id"]);
    assert!(credentials.session_token().is_some());
    let expiry = credentials.expiry().expect("IMDS credentials expire");
    let left = expiry
        .duration_since(std::time::SystemTime::now())
        .expect("not expired");
    assert!(left > Duration::from_secs(3600), "{left:?}");
    assert_eq!(state["counters"]["token_puts"], 1);
    assert_eq!(state["counters"]["credential_gets"], 1);

    // The credentials were minted by moto's STS, so moto knows whose they are.
    let config = bed.sdk_config_with(credentials).await;
    let identity = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity with the instance role's credentials");
    assert_eq!(identity.account(), Some(bed.account_id.as_str()));
    let arn = identity.arn().unwrap_or_default();
    assert!(
        arn.contains(":assumed-role/autoheal-instance-role/"),
        "{arn}"
    );
}

#[tokio::test]
async fn tokens_are_required_checked_and_carry_their_ttl() {
    let bed = TestBed::start();
    let http = reqwest::Client::new();
    let listing = format!(
        "{}/latest/meta-data/iam/security-credentials/",
        bed.imds_endpoint
    );

    let ok = token(&http, &bed, "300").await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()[TTL_HEADER], "300");
    let good = ok.text().await.unwrap();

    for bad_ttl in ["0", "21601", "soon"] {
        assert_eq!(token(&http, &bed, bad_ttl).await.status(), 400, "{bad_ttl}");
    }
    let no_ttl = http
        .put(format!("{}/latest/api/token", bed.imds_endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(no_ttl.status(), 400);
    let forwarded = http
        .put(format!("{}/latest/api/token", bed.imds_endpoint))
        .header(TTL_HEADER, "60")
        .header("X-Forwarded-For", "10.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        forwarded.status(),
        403,
        "tokens are not handed out through proxies"
    );

    let without = http.get(&listing).send().await.unwrap();
    assert_eq!(without.status(), 401);
    let wrong = http
        .get(&listing)
        .header(TOKEN_HEADER, "not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let with = http
        .get(&listing)
        .header(TOKEN_HEADER, &good)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 200);
    assert_eq!(with.text().await.unwrap(), "autoheal-instance-role");

    // A token whose TTL ran out is refused.
    let short = token(&http, &bed, "1").await.text().await.unwrap();
    wait_for("a 1-second token to expire", Duration::from_secs(5), || {
        let (http, listing, short) = (http.clone(), listing.clone(), short.clone());
        async move {
            let status = http
                .get(&listing)
                .header(TOKEN_HEADER, &short)
                .send()
                .await
                .ok()?
                .status();
            (status == 401).then_some(())
        }
    })
    .await;

    // With tokens optional, IMDSv1 requests are answered.
    bed.configure_imds(json!({"tokens_required": false})).await;
    assert_eq!(http.get(&listing).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_credentials_json_has_every_field_ec2_sends() {
    let bed = TestBed::start();
    let http = reqwest::Client::new();
    let good = token(&http, &bed, "60").await.text().await.unwrap();
    let doc: serde_json::Value = http
        .get(format!(
            "{}/latest/meta-data/iam/security-credentials/autoheal-instance-role",
            bed.imds_endpoint
        ))
        .header(TOKEN_HEADER, &good)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for field in [
        "Code",
        "LastUpdated",
        "Type",
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "Expiration",
    ] {
        assert!(doc[field].is_string(), "{field} missing in {doc}");
    }
    assert_eq!(doc["Code"], "Success");
    assert_eq!(doc["Type"], "AWS-HMAC");
}

#[tokio::test]
async fn credentials_rotate_ahead_of_expiry() {
    let bed = TestBed::start();
    // Credentials live 15 minutes and are replaced once 899 s or less remain: within a
    // second or two of being minted, as EC2 replaces them well before they expire.
    bed.configure_imds(json!({"credential_ttl_seconds": 900, "rotate_before_seconds": 899}))
        .await;
    let provider = provider(&bed);
    let first = provider.provide_credentials().await.unwrap();
    let second = wait_for("rotated credentials", Duration::from_secs(10), || {
        let provider = &provider;
        let first = first.access_key_id().to_owned();
        async move {
            let next = provider.provide_credentials().await.ok()?;
            (next.access_key_id() != first).then_some(next)
        }
    })
    .await;
    assert!(second.expiry() > first.expiry());
}

#[tokio::test]
async fn fault_modes_fail_the_way_ec2_does() {
    let bed = TestBed::start();
    let provider = provider(&bed);

    bed.configure_imds(json!({"mode": "no_role"})).await;
    let err = provider.provide_credentials().await.unwrap_err();
    assert!(format!("{err:?}").contains("404"), "{err:?}");

    for (mode, status) in [("error500", "500"), ("throttle", "429")] {
        bed.configure_imds(json!({"mode": mode})).await;
        let err = provider.provide_credentials().await.unwrap_err();
        assert!(format!("{err:?}").contains(status), "{mode}: {err:?}");
    }

    bed.configure_imds(json!({"mode": "slow", "delay_ms": 3000}))
        .await;
    let err = provider.provide_credentials().await.unwrap_err();
    assert!(
        format!("{err:?}").to_lowercase().contains("timeout")
            || format!("{err:?}").to_lowercase().contains("timed out"),
        "slow IMDS times out: {err:?}"
    );

    bed.configure_imds(json!({"mode": "down", "delay_ms": 0}))
        .await;
    let refused = reqwest::Client::new()
        .put(format!("{}/latest/api/token", bed.imds_endpoint))
        .header(TTL_HEADER, "60")
        .send()
        .await;
    assert!(refused.is_err(), "IMDS down refuses connections");
    assert!(provider.provide_credentials().await.is_err());

    // Back up on the same port, and the provider recovers by itself.
    bed.configure_imds(json!({"mode": "ok"})).await;
    provider
        .provide_credentials()
        .await
        .expect("recovers once IMDS is back");
}
