//! Proof that the real `aws-sdk-cloudwatch` works against the test bed.
//!
//! moto does not speak Smithy RPC v2 CBOR, the only protocol the Rust SDK uses for
//! CloudWatch (TESTING.md gap 1); the test bed's CBOR front translates. If the front
//! regresses, these calls fail with 404s or decoding errors.

mod support;

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat, StandardUnit,
    StateValue, Statistic,
};
use support::TestBed;

#[tokio::test]
async fn put_and_get_metric_data_round_trip_through_the_cbor_front() {
    let bed = TestBed::start();
    let cw = aws_sdk_cloudwatch::Client::new(&bed.sdk_config().await);
    let now = SystemTime::now();
    let dimension = Dimension::builder()
        .name("CacheClusterId")
        .value("cell-a-redis-001")
        .build();
    let datum = |minutes_ago: u64, value: f64| {
        MetricDatum::builder()
            .metric_name("CPUUtilization")
            .dimensions(dimension.clone())
            .timestamp(DateTime::from(now - Duration::from_secs(minutes_ago * 60)))
            .value(value)
            .unit(StandardUnit::Percent)
            .build()
    };
    cw.put_metric_data()
        .namespace("AWS/ElastiCache")
        .metric_data(datum(10, 40.0))
        .metric_data(datum(5, 90.5))
        .send()
        .await
        .expect("PutMetricData through the CBOR front");

    let query = MetricDataQuery::builder()
        .id("cpu")
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("AWS/ElastiCache")
                        .metric_name("CPUUtilization")
                        .dimensions(dimension.clone())
                        .build(),
                )
                .period(60)
                .stat("Maximum")
                .build(),
        )
        .build();
    let answer = cw
        .get_metric_data()
        .metric_data_queries(query)
        .start_time(DateTime::from(now - Duration::from_secs(3600)))
        .end_time(DateTime::from(now))
        .send()
        .await
        .expect("GetMetricData through the CBOR front");
    let result = &answer.metric_data_results()[0];
    assert_eq!(result.id(), Some("cpu"));
    let mut values = result.values().to_vec();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, [40.0, 90.5]);
    // Timestamps arrive as CBOR tag 1 and decode to the minutes we wrote.
    let newest = result
        .timestamps()
        .iter()
        .map(|t| t.secs())
        .max()
        .expect("timestamps");
    let expected = DateTime::from(now - Duration::from_secs(300)).secs();
    assert!((newest - expected).abs() <= 60, "{newest} vs {expected}");

    let listed = cw
        .list_metrics()
        .namespace("AWS/ElastiCache")
        .send()
        .await
        .expect("ListMetrics through the CBOR front");
    assert!(
        listed
            .metrics()
            .iter()
            .any(|m| m.metric_name() == Some("CPUUtilization"))
    );
}

#[tokio::test]
async fn alarms_can_be_forced_and_filtered_by_state() {
    let bed = TestBed::start();
    let cw = aws_sdk_cloudwatch::Client::new(&bed.sdk_config().await);
    for name in ["payment-5xx", "checkout-latency"] {
        cw.put_metric_alarm()
            .alarm_name(name)
            .namespace("Payments")
            .metric_name("Errors")
            .statistic(Statistic::Sum)
            .period(300)
            .evaluation_periods(1)
            .threshold(50.0)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .send()
            .await
            .expect("PutMetricAlarm through the CBOR front");
    }
    cw.set_alarm_state()
        .alarm_name("payment-5xx")
        .state_value(StateValue::Alarm)
        .state_reason("Threshold Crossed")
        .send()
        .await
        .expect("SetAlarmState through the CBOR front");

    let firing = cw
        .describe_alarms()
        .state_value(StateValue::Alarm)
        .send()
        .await
        .expect("DescribeAlarms through the CBOR front");
    let names: Vec<_> = firing
        .metric_alarms()
        .iter()
        .filter_map(|a| a.alarm_name())
        .collect();
    assert_eq!(names, ["payment-5xx"]);
    let alarm = &firing.metric_alarms()[0];
    assert_eq!(alarm.threshold(), Some(50.0));
    assert_eq!(alarm.state_reason(), Some("Threshold Crossed"));
    assert!(alarm.state_updated_timestamp().is_some());
}

#[tokio::test]
async fn cloudwatch_errors_keep_their_code() {
    let bed = TestBed::start();
    let cw = aws_sdk_cloudwatch::Client::new(&bed.sdk_config().await);
    let err = cw
        .set_alarm_state()
        .alarm_name("no-such-alarm")
        .state_value(StateValue::Ok)
        .state_reason("test")
        .send()
        .await
        .expect_err("an unknown alarm is an error");
    let meta = aws_sdk_cloudwatch::error::ProvideErrorMetadata::meta(&err);
    assert_eq!(meta.code(), Some("ResourceNotFound"), "{err:?}");
}
