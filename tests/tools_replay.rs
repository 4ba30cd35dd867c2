//! The tools moto cannot serve, with the SDK's own replay HTTP client: canned AWS answers
//! in, the tool's request and its shaped answer checked.
//!
//! moto gap (TESTING.md 5): ElastiCache `DescribeServerlessCaches` and `DescribeEvents`
//! answer 500 with an HTML page, so `elasticache_serverless` and `elasticache_events` are
//! covered here instead of against the test bed.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_types::body::SdkBody;
use serde_json::{Value, json};

use autoheal::tools::{AwsContext, find};

fn replay(answers: &[&str]) -> StaticReplayClient {
    StaticReplayClient::new(
        answers
            .iter()
            .map(|xml| {
                ReplayEvent::new(
                    http::Request::builder()
                        .uri("https://elasticache.us-east-1.amazonaws.com/")
                        .body(SdkBody::empty())
                        .unwrap(),
                    http::Response::builder()
                        .status(200)
                        .header("content-type", "text/xml")
                        .body(SdkBody::from(*xml))
                        .unwrap(),
                )
            })
            .collect(),
    )
}

fn context(client: &StaticReplayClient) -> AwsContext {
    let config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDREPLAY",
            "replay-secret",
            None,
            None,
            "replay",
        )))
        .http_client(client.clone())
        .build();
    AwsContext::new(config)
}

/// The form parameters of the n-th request the tool sent.
fn sent(client: &StaticReplayClient, n: usize) -> String {
    let request = client.actual_requests().nth(n).expect("a request was sent");
    String::from_utf8_lossy(request.body().bytes().unwrap_or_default()).into_owned()
}

const EVENTS: &str = r#"<DescribeEventsResponse xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/">
  <DescribeEventsResult>
    <Events>
      <Event>
        <SourceIdentifier>cell-a-redis</SourceIdentifier>
        <SourceType>replication-group</SourceType>
        <Message>Failover to replica node cell-a-redis-002 completed</Message>
        <Date>2026-11-26T10:41:00Z</Date>
      </Event>
      <Event>
        <SourceIdentifier>cell-a-redis</SourceIdentifier>
        <SourceType>replication-group</SourceType>
        <Message>Failover from primary node cell-a-redis-001 to replica node cell-a-redis-002 started</Message>
        <Date>2026-11-26T10:40:12Z</Date>
      </Event>
      <Event>
        <SourceIdentifier>cell-a-redis</SourceIdentifier>
        <SourceType>replication-group</SourceType>
        <Message>Test Failover API called for node group 0001</Message>
        <Date>2026-11-26T10:40:00Z</Date>
      </Event>
    </Events>
  </DescribeEventsResult>
  <ResponseMetadata><RequestId>3b1e</RequestId></ResponseMetadata>
</DescribeEventsResponse>"#;

#[tokio::test]
async fn elasticache_events_come_newest_first_for_the_source_asked() {
    let client = replay(&[EVENTS]);
    let answer = find("elasticache_events")
        .unwrap()
        .run(
            &context(&client),
            json!({"source": "cell-a-redis", "source_type": "replication-group", "since": "2h"}),
        )
        .await
        .unwrap();
    let request = sent(&client, 0);
    for part in [
        "Action=DescribeEvents",
        "SourceIdentifier=cell-a-redis",
        "SourceType=replication-group",
        "StartTime=",
        "EndTime=",
    ] {
        assert!(request.contains(part), "{part} missing from {request}");
    }
    let events = answer["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{answer}");
    assert_eq!(events[0]["time"], "2026-11-26T10:41:00Z");
    assert!(events[0]["message"].as_str().unwrap().contains("completed"));
    assert_eq!(events[2]["time"], "2026-11-26T10:40:00Z");
    assert_eq!(events[0]["source_type"], "replication-group");
    assert_eq!(answer["truncated"], false);
}

#[tokio::test]
async fn elasticache_events_need_a_source_type_with_a_source() {
    let client = replay(&[]);
    let err = find("elasticache_events")
        .unwrap()
        .run(&context(&client), json!({"source": "cell-a-redis"}))
        .await
        .unwrap_err();
    assert_eq!(err.to_json()["error"]["argument"], "source_type", "{err}");
    assert_eq!(client.actual_requests().count(), 0, "nothing was sent");
}

const SERVERLESS: &str = r#"<DescribeServerlessCachesResponse xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/">
  <DescribeServerlessCachesResult>
    <ServerlessCaches>
      <member>
        <ServerlessCacheName>checkout-sessions</ServerlessCacheName>
        <Status>available</Status>
        <Engine>valkey</Engine>
        <MajorEngineVersion>8</MajorEngineVersion>
        <CreateTime>2026-10-01T08:00:00Z</CreateTime>
        <Endpoint><Address>checkout-sessions-abc.serverless.use1.cache.amazonaws.com</Address><Port>6379</Port></Endpoint>
        <CacheUsageLimits>
          <DataStorage><Maximum>10</Maximum><Unit>GB</Unit></DataStorage>
          <ECPUPerSecond><Maximum>5000</Maximum></ECPUPerSecond>
        </CacheUsageLimits>
      </member>
    </ServerlessCaches>
  </DescribeServerlessCachesResult>
  <ResponseMetadata><RequestId>7c2a</RequestId></ResponseMetadata>
</DescribeServerlessCachesResponse>"#;

#[tokio::test]
async fn serverless_caches_show_status_endpoint_and_limits() {
    let client = replay(&[SERVERLESS]);
    let answer = find("elasticache_serverless")
        .unwrap()
        .run(&context(&client), json!({}))
        .await
        .unwrap();
    assert!(sent(&client, 0).contains("Action=DescribeServerlessCaches"));
    let cache = &answer["serverless_caches"][0];
    let expected: Value = json!({
        "name": "checkout-sessions",
        "status": "available",
        "engine": "valkey",
        "major_version": "8",
        "endpoint": "checkout-sessions-abc.serverless.use1.cache.amazonaws.com:6379",
        "max_data_storage_gb": 10,
        "max_ecpu_per_second": 5000,
        "created": "2026-10-01T08:00:00Z",
    });
    assert_eq!(cache, &expected, "{answer}");
}

const DENIED: &str = r#"<ErrorResponse xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/">
  <Error><Type>Sender</Type><Code>AccessDenied</Code>
  <Message>User: arn:aws:sts::123456789012:assumed-role/AutohealRole/s is not authorized to perform: elasticache:DescribeServerlessCaches</Message></Error>
  <RequestId>9f00</RequestId>
</ErrorResponse>"#;

#[tokio::test]
async fn a_denied_serverless_call_names_the_action() {
    let client = StaticReplayClient::new(vec![ReplayEvent::new(
        http::Request::builder()
            .uri("https://elasticache.us-east-1.amazonaws.com/")
            .body(SdkBody::empty())
            .unwrap(),
        http::Response::builder()
            .status(403)
            .body(SdkBody::from(DENIED))
            .unwrap(),
    )]);
    let err = find("elasticache_serverless")
        .unwrap()
        .run(&context(&client), json!({}))
        .await
        .unwrap_err();
    let body = err.to_json();
    assert_eq!(body["error"]["code"], "AccessDenied", "{body}");
    assert_eq!(
        body["error"]["action"],
        "elasticache:DescribeServerlessCaches"
    );
    assert_eq!(err.exit().code(), 77);
}
