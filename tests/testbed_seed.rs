//! The seeded incident world, read back through the real Rust SDK of every service the tools
//! use: proof that the test bed serves each one, and that the world has what the demo's
//! questions ask about.

mod support;

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::types::StateValue;
use aws_sdk_ec2::types::Filter;
use support::TestBed;

#[tokio::test]
async fn every_service_answers_with_the_seeded_incident() {
    let bed = TestBed::start_with(&[
        "--seed",
        "--seed-account",
        "123456789012",
        "--seed-account",
        "210987654321",
    ]);
    let config = bed.sdk_config().await;

    // CloudWatch Logs: errors in the last hour, and an older one outside it.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let groups = logs.describe_log_groups().send().await.unwrap();
    let names: Vec<_> = groups
        .log_groups()
        .iter()
        .filter_map(|g| g.log_group_name())
        .collect();
    assert!(names.contains(&"/ecs/payment-service"), "{names:?}");
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let millis = hour_ago
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let errors = logs
        .filter_log_events()
        .log_group_name("/ecs/payment-service")
        .filter_pattern("ERROR")
        .start_time(millis)
        .send()
        .await
        .unwrap();
    assert_eq!(errors.events().len(), 3, "{:?}", errors.events());

    // CloudWatch: two alarms firing.
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let firing = cw
        .describe_alarms()
        .state_value(StateValue::Alarm)
        .send()
        .await
        .unwrap();
    assert_eq!(firing.metric_alarms().len(), 2);

    // EC2: three production instances (one stopped), one staging.
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let production = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag:Environment")
                .values("production")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let count: usize = production
        .reservations()
        .iter()
        .map(|r| r.instances().len())
        .sum();
    assert_eq!(count, 3);

    // ECS: the main cluster's services, and a task stopped by an OOM kill.
    let ecs = aws_sdk_ecs::Client::new(&config);
    let services = ecs.list_services().cluster("main").send().await.unwrap();
    assert_eq!(services.service_arns().len(), 2);
    let stopped = ecs
        .list_tasks()
        .cluster("main")
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Stopped)
        .send()
        .await
        .unwrap();
    let tasks = ecs
        .describe_tasks()
        .cluster("main")
        .set_tasks(Some(stopped.task_arns().to_vec()))
        .send()
        .await
        .unwrap();
    assert!(
        tasks.tasks()[0]
            .stopped_reason()
            .unwrap_or_default()
            .contains("OutOfMemoryError")
    );

    // EKS: node groups with their scaling configuration.
    let eks = aws_sdk_eks::Client::new(&config);
    let general = eks
        .describe_nodegroup()
        .cluster_name("prod-eks")
        .nodegroup_name("general")
        .send()
        .await
        .unwrap();
    let scaling = general.nodegroup().unwrap().scaling_config().unwrap();
    assert_eq!(
        (
            scaling.min_size(),
            scaling.max_size(),
            scaling.desired_size()
        ),
        (Some(2), Some(6), Some(3))
    );

    // ElastiCache: a replication group with failover, multi-AZ, one primary, two replicas.
    let cache = aws_sdk_elasticache::Client::new(&config);
    let groups = cache
        .describe_replication_groups()
        .replication_group_id("cell-a-redis")
        .send()
        .await
        .unwrap();
    let group = &groups.replication_groups()[0];
    assert_eq!(group.member_clusters().len(), 3);
    let roles: Vec<_> = group.node_groups()[0]
        .node_group_members()
        .iter()
        .filter_map(|m| m.current_role())
        .collect();
    assert_eq!(roles, ["primary", "replica", "replica"]);

    // Cross-account: AssumeRole into the second seeded account sees its own copy.
    let sts = aws_sdk_sts::Client::new(&config);
    let assumed = sts
        .assume_role()
        .role_arn("arn:aws:iam::210987654321:role/AutohealCrossAccountRole")
        .role_session_name("seed-check")
        .send()
        .await
        .unwrap();
    let creds = assumed.credentials().unwrap();
    let other = bed
        .sdk_config_with(aws_credential_types::Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_owned()),
            None,
            "test",
        ))
        .await;
    let identity = aws_sdk_sts::Client::new(&other)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(identity.account(), Some("210987654321"));
    let their_groups = aws_sdk_elasticache::Client::new(&other)
        .describe_replication_groups()
        .send()
        .await
        .unwrap();
    assert_eq!(their_groups.replication_groups().len(), 1);
}
