//! The tools moto cannot serve, with the SDK's own replay HTTP client: canned AWS answers
//! in, the tool's request and its shaped answer checked.
//!
//! moto gaps (TESTING.md 5) covered here instead of against the test bed:
//! - ElastiCache `DescribeServerlessCaches` and `DescribeEvents` answer 500 with an HTML page
//!   (`elasticache_serverless`, `elasticache_events`);
//! - `UpdateService` never adds a deployment, so a rollout in flight (two deployments) never
//!   shows (`ecs_services`);
//! - Logs Insights ignores `filter` and `stats`, so aggregated rows never come back
//!   (`logs_insights`).
//!
//! And what needs exact control of the pages: FilterLogEvents and DescribeEvents with more
//! matches than the limit, paged oldest first as AWS does (`logs_search`,
//! `elasticache_events` must answer the newest).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_types::body::SdkBody;
use serde_json::{Value, json};

use autoheal::tools::{AwsContext, find};

fn replay(answers: &[&str]) -> StaticReplayClient {
    replay_from(
        "https://elasticache.us-east-1.amazonaws.com/",
        "text/xml",
        answers,
    )
}

/// A client that answers each request, in order, with the next of `answers`.
fn replay_from(uri: &str, content_type: &str, answers: &[&str]) -> StaticReplayClient {
    StaticReplayClient::new(
        answers
            .iter()
            .map(|body| {
                ReplayEvent::new(
                    http::Request::builder()
                        .uri(uri)
                        .body(SdkBody::empty())
                        .unwrap(),
                    http::Response::builder()
                        .status(200)
                        .header("content-type", content_type)
                        .body(SdkBody::from(*body))
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

const ECS_SERVICES: &str = r#"{"services": [{
  "serviceName": "payment-service", "status": "ACTIVE", "desiredCount": 4, "runningCount": 3,
  "pendingCount": 1, "launchType": "FARGATE",
  "taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/payment-service:8",
  "deployments": [
    {"id": "ecs-svc/2", "status": "PRIMARY", "taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/payment-service:8",
     "desiredCount": 4, "runningCount": 1, "pendingCount": 1, "failedTasks": 3,
     "rolloutState": "IN_PROGRESS", "rolloutStateReason": "ECS deployment ecs-svc/2 in progress.",
     "createdAt": 1795600000.0, "updatedAt": 1795600300.0},
    {"id": "ecs-svc/1", "status": "ACTIVE", "taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/payment-service:7",
     "desiredCount": 2, "runningCount": 2, "pendingCount": 0, "failedTasks": 0,
     "rolloutState": "COMPLETED", "createdAt": 1795000000.0, "updatedAt": 1795000300.0}
  ],
  "events": [
    {"id": "e1", "createdAt": 1795600100.0, "message": "(service payment-service) has started 1 tasks: (task 0abc)."},
    {"id": "e2", "createdAt": 1795600200.0, "message": "(service payment-service) deployment ecs-svc/2 deployment failed: tasks failed to start."}
  ]
}], "failures": []}"#;

#[tokio::test]
async fn a_rollout_in_flight_lists_both_deployments_and_the_latest_events_first() {
    let client = replay_from(
        "https://ecs.us-east-1.amazonaws.com/",
        "application/x-amz-json-1.1",
        &[ECS_SERVICES],
    );
    let answer = find("ecs_services")
        .unwrap()
        .run(
            &context(&client),
            json!({"cluster": "main", "services": ["payment-service"]}),
        )
        .await
        .unwrap();
    let request = client.actual_requests().next().unwrap();
    assert_eq!(
        request.headers().get("x-amz-target"),
        Some("AmazonEC2ContainerServiceV20141113.DescribeServices")
    );
    let service = &answer["services"][0];
    assert_eq!(service["rollout_state"], "IN_PROGRESS", "{answer}");
    let deployments = service["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 2, "{answer}");
    assert_eq!(deployments[0]["task_definition"], "payment-service:8");
    assert_eq!(deployments[0]["failed_tasks"], 3);
    assert_eq!(deployments[1]["rollout_state"], "COMPLETED");
    assert!(
        service["events"][0]["message"]
            .as_str()
            .unwrap()
            .contains("deployment failed"),
        "newest event first: {answer}"
    );
}

const START_QUERY: &str = r#"{"queryId": "q-1234"}"#;
const RUNNING: &str = r#"{"status": "Running", "results": []}"#;
const STATS: &str = r#"{"status": "Complete",
  "statistics": {"recordsMatched": 41.0, "recordsScanned": 9000.0, "bytesScanned": 1200000.0},
  "results": [
    [{"field": "bin(5m)", "value": "2026-11-26 10:40:00.000"}, {"field": "errors", "value": "29"}],
    [{"field": "bin(5m)", "value": "2026-11-26 10:35:00.000"}, {"field": "errors", "value": "12"}]
  ]}"#;

#[tokio::test]
async fn logs_insights_waits_for_the_query_and_returns_aggregated_rows() {
    let client = replay_from(
        "https://logs.us-east-1.amazonaws.com/",
        "application/x-amz-json-1.1",
        &[ONE_GROUP, START_QUERY, RUNNING, STATS],
    );
    let query = "filter @message like /ERROR/ | stats count(*) as errors by bin(5m)";
    let answer = find("logs_insights")
        .unwrap()
        .run(
            &context(&client),
            json!({"log_groups": ["/ecs/payment-service"], "query": query, "since": "1h"}),
        )
        .await
        .unwrap();
    let requests: Vec<_> = client.actual_requests().collect();
    assert_eq!(
        requests.len(),
        4,
        "the group checked, one start, polled until complete"
    );
    let start = String::from_utf8_lossy(requests[1].body().bytes().unwrap()).into_owned();
    assert!(
        start.contains("stats count(*) as errors by bin(5m)"),
        "{start}"
    );
    assert_eq!(answer["status"], "Complete");
    assert_eq!(answer["rows"][0]["errors"], "29", "{answer}");
    assert_eq!(answer["records_matched"], 41.0);
}

const LOGS: &str = "https://logs.us-east-1.amazonaws.com/";
const LOGS_JSON: &str = "application/x-amz-json-1.1";
const ONE_GROUP: &str = r#"{"logGroups": [{"logGroupName": "/ecs/payment-service"}]}"#;

/// A FilterLogEvents page of events at these times (RFC 3339), oldest first.
fn log_page(times: &[&str], next: Option<&str>) -> String {
    let events: Vec<Value> = times
        .iter()
        .map(|t| {
            let ms = humantime::parse_rfc3339(t)
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            json!({"logStreamName": "ecs/payment/1", "timestamp": ms, "message": format!("ERROR at {t}"), "eventId": t})
        })
        .collect();
    let mut page = json!({"events": events});
    if let Some(next) = next {
        page["nextToken"] = json!(next);
    }
    page.to_string()
}

/// The JSON body of the n-th request.
fn sent_json(client: &StaticReplayClient, n: usize) -> Value {
    serde_json::from_str(&sent(client, n)).unwrap()
}

fn ms(t: &str) -> i64 {
    humantime::parse_rfc3339(t)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn logs_search_answers_the_newest_matches_when_more_than_the_limit_match() {
    // The newest slice of the window (1/32 of 1 h = 112.5 s) holds four matches over two
    // pages, oldest page first, as FilterLogEvents sends them.
    let page_1 = log_page(
        &["2026-11-26T10:58:10Z", "2026-11-26T10:58:20Z"],
        Some("p2"),
    );
    let page_2 = log_page(&["2026-11-26T10:59:00Z", "2026-11-26T10:59:50Z"], None);
    let client = replay_from(LOGS, LOGS_JSON, &[ONE_GROUP, &page_1, &page_2]);
    let answer = find("logs_search")
        .unwrap()
        .run(
            &context(&client),
            json!({"log_groups": ["/ecs/payment-service"], "pattern": "ERROR",
                   "since": "2026-11-26T10:00:00Z", "until": "2026-11-26T11:00:00Z", "limit": 3}),
        )
        .await
        .unwrap();
    let times: Vec<&str> = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["time"].as_str().unwrap())
        .collect();
    assert_eq!(
        times,
        [
            "2026-11-26T10:59:50.000Z",
            "2026-11-26T10:59:00.000Z",
            "2026-11-26T10:58:20.000Z"
        ],
        "the newest three, newest first: {answer}"
    );
    assert_eq!(answer["truncated"], true);
    assert_eq!(
        answer["next"]["until"], "2026-11-26T10:58:20.000Z",
        "older ones are further back"
    );
    let first = sent_json(&client, 1);
    assert_eq!(
        first["startTime"],
        ms("2026-11-26T10:58:07.500Z"),
        "the newest slice first"
    );
    assert_eq!(first["endTime"], ms("2026-11-26T11:00:00Z"));
    assert_eq!(first["filterPattern"], "ERROR");
    assert_eq!(
        sent_json(&client, 2)["nextToken"],
        "p2",
        "the whole slice is read"
    );
}

#[tokio::test]
async fn logs_search_goes_back_slice_by_slice_until_the_limit_is_met() {
    let empty = log_page(&[], None);
    let older = log_page(&["2026-11-26T10:55:00Z", "2026-11-26T10:56:00Z"], None);
    let client = replay_from(LOGS, LOGS_JSON, &[ONE_GROUP, &empty, &older]);
    let answer = find("logs_search")
        .unwrap()
        .run(
            &context(&client),
            json!({"log_groups": ["/ecs/payment-service"],
                   "since": "2026-11-26T10:00:00Z", "until": "2026-11-26T11:00:00Z", "limit": 2}),
        )
        .await
        .unwrap();
    assert_eq!(
        answer["events"][0]["time"], "2026-11-26T10:56:00.000Z",
        "{answer}"
    );
    assert_eq!(answer["events"].as_array().unwrap().len(), 2);
    let second = sent_json(&client, 2);
    assert_eq!(
        second["endTime"],
        ms("2026-11-26T10:58:07.500Z"),
        "right before the first slice"
    );
    assert_eq!(
        second["startTime"],
        ms("2026-11-26T10:54:22.500Z"),
        "twice as long"
    );
    assert_eq!(
        answer["truncated"], true,
        "the rest of the window was not read"
    );
}

const EVENTS_PAGE_1: &str = r#"<DescribeEventsResponse xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/">
  <DescribeEventsResult>
    <Marker>page-2</Marker>
    <Events>
      <Event><SourceIdentifier>cell-a-redis</SourceIdentifier><SourceType>replication-group</SourceType>
        <Message>Snapshot succeeded</Message><Date>2026-11-26T08:00:00Z</Date></Event>
      <Event><SourceIdentifier>cell-a-redis</SourceIdentifier><SourceType>replication-group</SourceType>
        <Message>Node replaced</Message><Date>2026-11-26T09:00:00Z</Date></Event>
    </Events>
  </DescribeEventsResult>
  <ResponseMetadata><RequestId>p1</RequestId></ResponseMetadata>
</DescribeEventsResponse>"#;

#[tokio::test]
async fn elasticache_events_follow_the_pages_and_keep_the_newest() {
    let client = replay(&[EVENTS_PAGE_1, EVENTS]);
    let answer = find("elasticache_events")
        .unwrap()
        .run(&context(&client), json!({"since": "1d", "limit": 2}))
        .await
        .unwrap();
    assert!(
        sent(&client, 1).contains("Marker=page-2"),
        "{}",
        sent(&client, 1)
    );
    let events = answer["events"].as_array().unwrap();
    assert_eq!(
        events[0]["time"], "2026-11-26T10:41:00Z",
        "the newest is on the last page"
    );
    assert_eq!(events[1]["time"], "2026-11-26T10:40:12Z");
    assert_eq!(answer["truncated"], true);
    assert_eq!(answer["next"]["until"], "2026-11-26T10:40:12Z");
}
