//! The read-only tools through `autoheal tool` (the real binary) against the seeded test
//! bed: the facts in each answer, bad arguments named, unknown names answered with the
//! closest existing ones, AccessDenied naming the action, and — at the HTTP level — that
//! each tool sends only the actions it declares.
//!
//! moto gaps covered elsewhere: `elasticache_serverless` and `elasticache_events` (moto
//! answers 500) are tested with a replay HTTP client in `tools_replay.rs`; Logs Insights'
//! `filter`/`stats` are ignored by moto, so the query here uses only fields/sort/limit.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};
use support::{TestBed, allow};

/// One seeded world for the tests that only read it.
fn world() -> &'static TestBed {
    static WORLD: OnceLock<TestBed> = OnceLock::new();
    WORLD.get_or_init(TestBed::start_seeded)
}

/// Runs `autoheal tool NAME --args ARGS --output json` with the test bed's keys.
fn tool_on(bed: &TestBed, name: &str, args: Value) -> (i32, Value) {
    let out = bed
        .tool_command()
        .args([
            "tool",
            name,
            "--args",
            &args.to_string(),
            "--output",
            "json",
        ])
        .output()
        .expect("run autoheal tool");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: not one JSON document ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), answer)
}

fn tool(name: &str, args: Value) -> Value {
    let (code, answer) = tool_on(world(), name, args.clone());
    assert_eq!(code, 0, "{name} {args}: {answer}");
    answer
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v[key].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Every answer is compact: no nulls, no empty lists or objects anywhere.
fn assert_compact(value: &Value) {
    match value {
        Value::Null => panic!("a null in an answer"),
        Value::Array(items) => items.iter().for_each(assert_compact),
        Value::Object(map) => {
            for (key, item) in map {
                let empty = matches!(item, Value::Array(a) if a.is_empty())
                    || matches!(item, Value::Object(o) if o.is_empty());
                assert!(!empty, "{key} is empty in an answer");
                assert_compact(item);
            }
        }
        _ => {}
    }
}

#[test]
fn q1_error_logs_of_payment_service_in_the_last_hour() {
    let answer = tool(
        "logs_search",
        json!({"log_groups": ["/ecs/payment-service"], "pattern": "ERROR", "since": "1h"}),
    );
    assert_compact(&answer);
    let messages = strings(&answer["events"], "message");
    assert_eq!(messages.len(), 3, "{answer}");
    assert!(
        messages[0].contains("ReadTimeout talking to cell-a-redis"),
        "newest first: {messages:?}"
    );
    assert!(messages[2].contains("upstream timeout"), "{messages:?}");
    assert!(messages.iter().all(|m| m.contains("ERROR")));
    assert!(
        !messages.iter().any(|m| m.contains("card processor")),
        "26 h old"
    );
    let times = strings(&answer["events"], "time");
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert_eq!(answer["truncated"], false);
}

#[test]
fn a_log_search_is_bounded_and_says_how_to_continue() {
    let answer = tool(
        "logs_search",
        json!({"log_group_prefix": "/ecs/", "pattern": "ERROR", "limit": 2}),
    );
    assert_eq!(answer["events"].as_array().unwrap().len(), 2, "{answer}");
    assert_eq!(answer["truncated"], true);
    let oldest = answer["events"][1]["time"].as_str().unwrap();
    assert_eq!(answer["next"]["until"], oldest);
    // Across groups, each event names its group.
    assert!(
        answer["events"][0]["group"]
            .as_str()
            .unwrap()
            .starts_with("/ecs/")
    );
    let rest = tool(
        "logs_search",
        json!({"log_group_prefix": "/ecs/", "pattern": "ERROR", "until": oldest}),
    );
    let before: Vec<String> = strings(&rest["events"], "time");
    assert!(before.iter().all(|t| t.as_str() <= oldest), "{rest}");
}

#[test]
fn a_short_group_name_is_resolved_and_an_unknown_one_answers_with_the_closest_names() {
    // What an agent passes for "the payment-service log group": used, and said so.
    let answer = tool(
        "logs_search",
        json!({"log_groups": ["payment-service"], "pattern": "ERROR"}),
    );
    assert_eq!(
        answer["resolved"]["payment-service"], "/ecs/payment-service",
        "{answer}"
    );
    assert_eq!(answer["log_group"], "/ecs/payment-service");
    assert!(!answer["events"].as_array().unwrap().is_empty(), "{answer}");
    let events = tool("logs_events", json!({"log_group": "payment-service"}));
    assert_eq!(
        events["resolved"]["payment-service"], "/ecs/payment-service",
        "{events}"
    );

    let (code, answer) = tool_on(
        world(),
        "logs_search",
        json!({"log_groups": ["/ecs/payment-servce"], "pattern": "ERROR"}),
    );
    assert_eq!(code, 65, "{answer}");
    assert_eq!(answer["error"]["code"], "not_found");
    assert_eq!(answer["error"]["closest"], json!(["/ecs/payment-service"]));
}

#[tokio::test]
async fn a_cluster_may_be_left_out_when_the_account_has_one() {
    // The seeded world has two ECS clusters and two caches: the agent must choose.
    let (code, answer) = tool_on(world(), "ecs_services", json!({}));
    assert_eq!(code, 65, "{answer}");
    assert_eq!(answer["error"]["argument"], "cluster");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("main"),
        "{answer}"
    );
    let (code, answer) = tool_on(world(), "elasticache_metrics", json!({}));
    assert_eq!(code, 65, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cell-a-redis"),
        "{answer}"
    );

    // The world has one EKS cluster: used, and said so.
    let eks = tool("eks_cluster", json!({}));
    assert_eq!(eks["resolved"]["name"], "prod-eks", "{eks}");

    // An account with one of each: used, and the answer says so.
    let bed = TestBed::start();
    let sdk = bed.sdk_config().await;
    aws_sdk_ecs::Client::new(&sdk)
        .create_cluster()
        .cluster_name("solo")
        .send()
        .await
        .unwrap();
    aws_sdk_elasticache::Client::new(&sdk)
        .create_cache_cluster()
        .cache_cluster_id("solo-cache")
        .engine("redis")
        .cache_node_type("cache.t4g.micro")
        .num_cache_nodes(1)
        .send()
        .await
        .unwrap();
    for (name, args) in [
        ("ecs_services", json!({})),
        ("ecs_tasks", json!({})),
        ("elasticache_metrics", json!({"since": "1h"})),
    ] {
        let (code, answer) = tool_on(&bed, name, args);
        assert_eq!(code, 0, "{name}: {answer}");
        let expected = if name == "elasticache_metrics" {
            "solo-cache"
        } else {
            "solo"
        };
        assert_eq!(answer["resolved"]["cluster"], expected, "{name}: {answer}");
    }
}

#[test]
fn bad_arguments_are_named() {
    for (name, args, argument) in [
        (
            "logs_search",
            json!({"log_groups": ["/ecs/x"], "since": "yesterday"}),
            "since",
        ),
        ("logs_search", json!({"log_groups": "/ecs/x"}), "log_groups"),
        ("alarms_list", json!({"state": "FIRING"}), "state"),
        ("alarms_list", json!({"stat": "x"}), "stat"),
        (
            "ec2_instances",
            json!({"tags": {"Environment": 3}}),
            "tags.Environment",
        ),
        ("ec2_instance", json!({"id": "web-1"}), "id"),
        (
            "elasticache_metrics",
            json!({"cluster": "cell-a-redis", "metric": "Temperature"}),
            "metric",
        ),
        (
            "metrics_query",
            json!({"namespace": "AWS/EC2"}),
            "(arguments)",
        ),
    ] {
        let (code, answer) = tool_on(world(), name, args.clone());
        assert_eq!(code, 65, "{name} {args}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_argument", "{answer}");
        assert_eq!(
            answer["error"]["argument"], argument,
            "{name} {args}: {answer}"
        );
    }
    let (code, answer) = tool_on(world(), "alarm_list", json!({}));
    assert_eq!(code, 65);
    assert_eq!(answer["error"]["closest"][0], "alarms_list", "{answer}");
}

#[test]
fn log_groups_and_streams() {
    let answer = tool("logs_groups", json!({"prefix": "/ecs/"}));
    assert_eq!(
        strings(&answer["log_groups"], "name"),
        ["/ecs/checkout-api", "/ecs/payment-service"]
    );
    let events = tool("logs_events", json!({"log_group": "/ecs/checkout-api"}));
    assert_eq!(events["stream"], "main/app/0f9e8d7c");
    let messages = strings(&events["events"], "message");
    assert_eq!(messages.len(), 3, "{events}");
    assert!(messages[0].contains("91ms"), "newest first: {messages:?}");
}

#[test]
fn logs_insights_runs_a_query_to_completion() {
    let answer = tool(
        "logs_insights",
        json!({"log_groups": ["/ecs/payment-service"],
               "query": "fields @timestamp, @message | sort @timestamp desc | limit 3"}),
    );
    assert_eq!(answer["status"], "Complete", "{answer}");
    let rows = answer["rows"].as_array().unwrap();
    assert!(!rows.is_empty() && rows.len() <= 3, "{answer}");
    assert!(rows[0]["@message"].is_string(), "{answer}");
    assert!(
        rows[0].get("@ptr").is_none(),
        "internal pointers are left out"
    );
}

#[test]
fn q2_alarms_in_alarm_state() {
    let answer = tool("alarms_list", json!({"state": "ALARM"}));
    assert_compact(&answer);
    let names: BTreeSet<String> = strings(&answer["alarms"], "name").into_iter().collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "cell-a-redis-cpu-high".to_owned(),
            "payment-service-5xx-high".to_owned()
        ])
    );
    let redis = answer["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "cell-a-redis-cpu-high")
        .unwrap();
    assert_eq!(redis["state"], "ALARM");
    assert!(redis["reason"].as_str().unwrap().contains("94.0"));
    assert_eq!(redis["dimensions"]["CacheClusterId"], "cell-a-redis-001");
    assert!(redis["since"].as_str().unwrap().ends_with('Z'));
    let all = tool("alarms_list", json!({}));
    assert_eq!(all["count"], 4);
}

#[test]
fn metrics_list_and_query() {
    let listed = tool(
        "metrics_list",
        json!({"namespace": "AWS/ElastiCache", "metric": "CPUUtilization"}),
    );
    assert_eq!(listed["metrics"].as_array().unwrap().len(), 3, "{listed}");
    let answer = tool(
        "metrics_query",
        json!({"namespace": "Payments", "metric": "5xxCount",
               "dimensions": {"Service": "payment-service"}, "stat": "Sum", "since": "1h"}),
    );
    assert_eq!(
        answer["period_seconds"], 60,
        "an hour gives 1-minute points"
    );
    assert_eq!(answer["series"]["summary"]["max"], 210.0, "{answer}");
    assert_eq!(answer["series"]["summary"]["latest"], 210.0, "{answer}");
    // Four points ten minutes apart: a regular series stepping by its own interval.
    assert_eq!(answer["step_seconds"], 600, "{answer}");
    assert!(answer["start"].is_string(), "{answer}");
    assert_eq!(
        answer["series"]["values"],
        json!([2.0, 45.0, 130.0, 210.0]),
        "{answer}"
    );
}

#[test]
fn q3_instances_tagged_environment_production() {
    let answer = tool(
        "ec2_instances",
        json!({"tags": {"Environment": "production"}}),
    );
    assert_compact(&answer);
    assert_eq!(
        strings(&answer["instances"], "name"),
        ["batch-1", "web-1", "web-2"],
        "every state unless asked: {answer}"
    );
    assert_eq!(answer["by_state"], json!({"running": 2, "stopped": 1}));
    let running = tool(
        "ec2_instances",
        json!({"tags": {"Environment": "production"}, "state": "running"}),
    );
    assert_eq!(strings(&running["instances"], "name"), ["web-1", "web-2"]);
}

#[test]
fn one_instance_with_its_network_and_checks() {
    let listed = tool("ec2_instances", json!({"tags": {"Name": "web-1"}}));
    let id = listed["instances"][0]["id"].as_str().unwrap().to_owned();
    let answer = tool("ec2_instance", json!({"id": id}));
    assert_eq!(answer["name"], "web-1");
    assert_eq!(answer["subnet"]["cidr"], "10.0.1.0/24", "{answer}");
    assert_eq!(answer["vpc"]["name"], "prod-vpc", "{answer}");
    assert_eq!(answer["vpc"]["cidr"], "10.0.0.0/16");
    assert_eq!(answer["security_groups"][0]["name"], "web", "{answer}");
    assert_eq!(answer["status_checks"]["instance"], "ok", "{answer}");
    let (code, missing) = tool_on(
        world(),
        "ec2_instance",
        json!({"id": "i-00000000000000000"}),
    );
    assert_eq!(code, 65, "{missing}");
    assert_eq!(missing["error"]["code"], "not_found");
}

#[test]
fn q4_ecs_services_of_main_and_their_deployments() {
    let clusters = tool("ecs_clusters", json!({}));
    assert_eq!(strings(&clusters["clusters"], "name"), ["batch", "main"]);
    let answer = tool("ecs_services", json!({"cluster": "main"}));
    assert_compact(&answer);
    let services = answer["services"].as_array().unwrap();
    assert_eq!(
        strings(&answer["services"], "name"),
        ["checkout-api", "payment-service"]
    );
    let payment = &services[1];
    assert_eq!(payment["desired"], 4);
    for key in [
        "running",
        "pending",
        "rollout_state",
        "rollout_reason",
        "deployed",
    ] {
        assert!(!payment[key].is_null(), "{key}: {payment}");
    }
    // One deployment is folded into the service; several would be listed.
    assert!(payment.get("deployments").is_none(), "{payment}");
    let (code, missing) = tool_on(world(), "ecs_services", json!({"cluster": "mian"}));
    assert_eq!(code, 65, "{missing}");
    assert_eq!(missing["error"]["closest"][0], "main", "{missing}");
}

#[test]
fn ecs_tasks_say_why_they_stopped() {
    let answer = tool("ecs_tasks", json!({"cluster": "main", "status": "STOPPED"}));
    let tasks = answer["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{answer}");
    assert!(
        tasks[0]["stopped_reason"]
            .as_str()
            .unwrap()
            .contains("OutOfMemoryError"),
        "{answer}"
    );
    let all = tool("ecs_tasks", json!({"cluster": "main"}));
    assert_eq!(all["tasks"].as_array().unwrap().len(), 2, "{all}");
}

#[test]
fn q5_eks_node_groups_and_their_scaling() {
    assert_eq!(
        tool("eks_clusters", json!({}))["clusters"],
        json!(["prod-eks"])
    );
    let cluster = tool("eks_cluster", json!({"name": "prod-eks"}));
    assert_eq!(cluster["version"], "1.31", "{cluster}");
    let answer = tool("eks_nodegroups", json!({}));
    assert_compact(&answer);
    assert_eq!(answer["clusters"][0]["cluster"], "prod-eks");
    let groups = answer["clusters"][0]["nodegroups"].as_array().unwrap();
    let general = groups.iter().find(|g| g["name"] == "general").unwrap();
    assert_eq!(
        (
            general["min"].clone(),
            general["max"].clone(),
            general["desired"].clone()
        ),
        (json!(2), json!(6), json!(3))
    );
    assert_eq!(general["capacity_type"], "ON_DEMAND");
    let spot = groups.iter().find(|g| g["name"] == "spot-batch").unwrap();
    assert_eq!(
        (
            spot["min"].clone(),
            spot["max"].clone(),
            spot["desired"].clone()
        ),
        (json!(0), json!(10), json!(1))
    );
    assert_eq!(spot["capacity_type"], "SPOT");
    assert_eq!(spot["instance_types"], json!(["c5.xlarge", "c5a.xlarge"]));
}

#[test]
fn q6_every_elasticache_cluster_with_its_status() {
    let answer = tool("elasticache_clusters", json!({}));
    assert_compact(&answer);
    let ids = strings(&answer["clusters"], "id");
    assert_eq!(
        ids,
        [
            "cell-a-redis-001",
            "cell-a-redis-002",
            "cell-a-redis-003",
            "sessions-memcached"
        ],
        "replication-group members included: {answer}"
    );
    let clusters = answer["clusters"].as_array().unwrap();
    assert!(
        clusters.iter().all(|c| c["status"] == "available"),
        "{answer}"
    );
    assert_eq!(clusters[0]["replication_group"], "cell-a-redis");
    assert_eq!(clusters[0]["role"], "primary");
    assert_eq!(clusters[3]["engine"], "memcached");
}

#[test]
fn q7_the_replication_group_with_failover_and_topology() {
    let answer = tool(
        "elasticache_replication_group",
        json!({"id": "cell-a-redis"}),
    );
    assert_compact(&answer);
    assert_eq!(answer["automatic_failover"], "enabled");
    assert_eq!(answer["multi_az"], "enabled");
    assert_eq!(answer["cluster_mode"], "disabled");
    assert_eq!(
        (answer["primaries"].clone(), answer["replicas"].clone()),
        (json!(1), json!(2))
    );
    let members = answer["node_groups"][0]["members"].as_array().unwrap();
    let roles: Vec<&str> = members
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["primary", "replica", "replica"]);
    assert!(members.iter().all(|m| m["az"].is_string()), "{answer}");
    let (code, missing) = tool_on(
        world(),
        "elasticache_replication_group",
        json!({"id": "cell-a"}),
    );
    assert_eq!(code, 65);
    assert_eq!(
        missing["error"]["closest"],
        json!(["cell-a-redis"]),
        "{missing}"
    );
}

#[test]
fn q8_cpu_of_the_elasticache_cluster_over_the_last_hour() {
    let answer = tool(
        "elasticache_metrics",
        json!({"cluster": "cell-a-redis", "since": "1h"}),
    );
    assert_compact(&answer);
    assert_eq!(answer["metric"], "CPUUtilization");
    assert_eq!(answer["kind"], "replication_group");
    let series = answer["series"].as_array().unwrap();
    assert_eq!(series.len(), 3, "one series per node: {answer}");
    assert_eq!(series[0]["label"], "cell-a-redis-001 (primary)");
    assert_eq!(series[0]["summary"]["max"], 94.0, "{answer}");
    assert!(series[1]["summary"]["max"].as_f64().unwrap() < 40.0);
    let node = tool(
        "elasticache_metrics",
        json!({"cluster": "cell-a-redis-002", "metric": "Evictions", "stat": "Sum"}),
    );
    assert_eq!(node["kind"], "cache_cluster");
    assert_eq!(node["series"].as_array().unwrap().len(), 1);
}

#[test]
fn whoami_names_the_account_and_region() {
    let answer = tool("whoami", json!({}));
    assert_eq!(answer["account"], "123456789012");
    assert_eq!(answer["region"], "us-east-1");
}

/// One call of every tool, with arguments that reach every AWS action it may use.
fn every_tool_once() -> Vec<(&'static str, Value)> {
    vec![
        ("logs_groups", json!({})),
        (
            "logs_search",
            json!({"log_groups": ["/ecs/payment-service"], "pattern": "ERROR"}),
        ),
        ("logs_events", json!({"log_group": "/ecs/payment-service"})),
        (
            "logs_insights",
            json!({"log_groups": ["/ecs/payment-service"], "query": "fields @message | limit 1"}),
        ),
        ("metrics_list", json!({"namespace": "AWS/ElastiCache"})),
        (
            "metrics_query",
            json!({"namespace": "Payments", "metric": "5xxCount"}),
        ),
        ("alarms_list", json!({})),
        ("ec2_instances", json!({})),
        ("ecs_clusters", json!({})),
        ("ecs_services", json!({"cluster": "main"})),
        ("ecs_tasks", json!({"cluster": "main"})),
        ("eks_clusters", json!({})),
        ("eks_cluster", json!({"name": "prod-eks"})),
        ("eks_nodegroups", json!({})),
        ("elasticache_clusters", json!({})),
        (
            "elasticache_replication_group",
            json!({"id": "cell-a-redis"}),
        ),
        (
            "elasticache_metrics",
            json!({"cluster": "sessions-memcached"}),
        ),
        ("whoami", json!({})),
    ]
}

#[tokio::test]
async fn each_tool_sends_only_the_actions_it_declares_and_only_reads() {
    let bed = TestBed::start_seeded();
    let listed = Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(["tools", "--output", "json"])
        .output()
        .unwrap();
    let catalogue: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let declared = |name: &str| -> BTreeSet<String> {
        let tool = catalogue["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not in the catalogue"));
        assert_eq!(tool["read_only"], true);
        tool["iam_actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    };
    let mut seen = BTreeSet::new();
    // ec2_instance needs a real ID from the world.
    let (_, listed) = tool_on(&bed, "ec2_instances", json!({}));
    let id = listed["instances"][0]["id"].clone();
    let mut runs = every_tool_once();
    runs.push(("ec2_instance", json!({"id": id})));
    for (name, args) in runs {
        bed.clear_calls().await;
        let (code, answer) = tool_on(&bed, name, args);
        assert_eq!(code, 0, "{name}: {answer}");
        let sent: BTreeSet<String> = bed.calls().await.into_iter().collect();
        assert!(!sent.is_empty(), "{name} reached AWS");
        let allowed = declared(name);
        let undeclared: Vec<_> = sent.difference(&allowed).collect();
        assert!(
            undeclared.is_empty(),
            "{name} sent undeclared actions {undeclared:?}"
        );
        seen.extend(sent);
    }
    for action in &seen {
        let verb = action.split(':').nth(1).unwrap();
        assert!(
            ["Describe", "List", "Get"]
                .iter()
                .any(|p| verb.starts_with(p))
                || ["FilterLogEvents", "StartQuery", "GetQueryResults"].contains(&verb),
            "{action} is not a read"
        );
    }
}

#[test]
fn the_permissions_policy_grants_exactly_the_declared_actions() {
    let run = |args: &[&str]| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_autoheal"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let catalogue = run(&["tools", "--output", "json"]);
    let declared: BTreeSet<String> = catalogue["tools"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["iam_actions"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let policy = run(&["policy", "permissions"]);
    let granted: BTreeSet<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|s| {
            assert_eq!(s["Effect"], "Allow");
            assert_eq!(s["Resource"], "*");
        })
        .flat_map(|s| s["Action"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(granted, declared);
    assert_eq!(
        granted.len(),
        29,
        "the setup guide's 29 actions: {granted:?}"
    );
    let logs_only = run(&["policy", "permissions", "--capability", "logs"]);
    assert_eq!(logs_only["Statement"].as_array().unwrap().len(), 1);
    assert_eq!(logs_only["Statement"][0]["Sid"], "CloudWatchLogs");
}

#[tokio::test]
async fn access_denied_names_the_action_and_exits_77() {
    let bed = TestBed::start_seeded();
    bed.put_role(
        &bed.account_id,
        "autoheal-instance-role",
        json!(null),
        allow(&["sts:GetCallerIdentity", "logs:DescribeLogGroups"]),
    )
    .await;
    bed.enforce_permissions().await;
    // The instance role's credentials, through the IMDS emulator (no static keys).
    let run = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_autoheal"))
            .args(["tool", name, "--output", "json"])
            .env("AWS_ENDPOINT_URL", &bed.endpoint)
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &bed.imds_endpoint)
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap()
    };
    let allowed = run("logs_groups");
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&allowed.stdout)
    );
    let denied = run("alarms_list");
    assert_eq!(denied.status.code(), Some(77));
    let answer: Value = serde_json::from_slice(&denied.stdout).unwrap();
    assert_eq!(
        answer["error"]["action"], "cloudwatch:DescribeAlarms",
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AccessDenied"),
        "{answer}"
    );
    assert!(
        answer["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("autoheal policy permissions"),
        "{answer}"
    );
}

/// The build has no code path that could change AWS: every SDK operation called under
/// `src/tools/` and `src/check/` (the first method on a service client) is a read.
#[test]
fn no_tool_source_calls_a_mutating_operation() {
    let client = client_calls::find;
    let mut operations = BTreeSet::new();
    for dir in ["src/tools", "src/check"] {
        for entry in std::fs::read_dir(support::repo_root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for op in client(&text) {
                operations.insert((op, path.display().to_string()));
            }
        }
    }
    assert!(
        operations.len() >= 25,
        "the scan finds the calls: {operations:?}"
    );
    let reads = ["filter_log_events", "start_query", "get_query_results"];
    for (op, file) in &operations {
        assert!(
            ["describe_", "list_", "get_"]
                .iter()
                .any(|p| op.starts_with(p))
                || reads.contains(&op.as_str()),
            "{file} calls {op}, which is not a read"
        );
    }
}

/// Finding `client.operation(` calls in Rust source.
mod client_calls {
    const CLIENTS: [&str; 7] = [
        "sts",
        "logs",
        "cloudwatch",
        "ec2",
        "ecs",
        "eks",
        "elasticache",
    ];

    /// The operations called on service clients: `ctx.logs().filter_log_events(` and
    /// `ec2.describe_vpcs(` (a client kept in a variable), whitespace ignored.
    pub fn find(source: &str) -> Vec<String> {
        let flat: String = source.chars().filter(|c| !c.is_whitespace()).collect();
        let mut found = Vec::new();
        for client in CLIENTS {
            for pattern in [format!(".{client}()."), format!("{client}.")] {
                let mut rest = flat.as_str();
                while let Some(at) = rest.find(&pattern) {
                    let before = rest[..at].chars().last();
                    rest = &rest[at + pattern.len()..];
                    // `x.ec2.` or `fooec2.` are not the client variable.
                    if !pattern.starts_with('.')
                        && before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
                    {
                        continue;
                    }
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                        .collect();
                    if rest[name.len()..].starts_with('(') && !name.is_empty() {
                        found.push(name);
                    }
                }
            }
        }
        found
    }
}

#[test]
fn secrets_in_log_lines_are_masked_unless_asked_not_to() {
    let args = json!({"log_groups": ["order-processor"], "pattern": "ERROR"});
    let answer = tool("logs_search", args.clone());
    let text = answer.to_string();
    assert!(
        !text.contains("Sup3rS3cret") && !text.contains("9f8e7d6c5b4a"),
        "{text}"
    );
    assert!(
        text.contains("[masked:url-password:") && text.contains("[masked:bearer-token:"),
        "{text}"
    );
    assert_eq!(answer["masked"], 2, "{answer}");
    assert!(
        text.contains("postgres://orders:"),
        "the rest of the line stays: {text}"
    );

    let out = world()
        .tool_command()
        .args([
            "tool",
            "logs_search",
            "--args",
            &args.to_string(),
            "--output",
            "json",
            "--no-mask",
        ])
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&out.stdout);
    assert!(
        raw.contains("Sup3rS3cret") && !raw.contains("\"masked\""),
        "{raw}"
    );
}
