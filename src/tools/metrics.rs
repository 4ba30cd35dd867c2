//! CloudWatch metrics and alarms: `metrics_list`, `metrics_query`, `alarms_list`, and the
//! series reader `elasticache_metrics` shares.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::types::{
    AlarmType, Dimension, DimensionFilter, Metric, MetricDataQuery, MetricStat, ScanBy, StateValue,
};
use aws_smithy_types::DateTime;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::answer::time;
use super::args::Window;
use super::{AwsContext, Capability, Tool, ToolError};

/// Standard periods; the window picks the smallest that keeps the series short.
const PERIODS: [i32; 7] = [60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400];
/// Points per series the chosen period aims at, at most.
const TARGET_POINTS: u64 = 60;
/// Statistics GetMetricData takes besides percentiles (`p99`, `p99.9`).
const STATISTICS: [&str; 5] = ["Average", "Sum", "Minimum", "Maximum", "SampleCount"];

/// The period for a window: the smallest standard one giving at most 60 points.
pub fn period_for(window: Duration) -> i32 {
    let wanted = window.as_secs().div_ceil(TARGET_POINTS);
    PERIODS
        .iter()
        .copied()
        .find(|p| *p as u64 >= wanted)
        .unwrap_or(PERIODS[PERIODS.len() - 1])
}

fn check_stat(stat: &str) -> Result<(), ToolError> {
    let percentile = stat
        .strip_prefix('p')
        .and_then(|p| p.parse::<f64>().ok())
        .is_some_and(|p| (0.0..=100.0).contains(&p));
    if STATISTICS.contains(&stat) || percentile {
        Ok(())
    } else {
        Err(ToolError::bad(
            "stat",
            format!(
                "{stat:?} is not a statistic: use one of {} or a percentile such as p99",
                STATISTICS.join(", ")
            ),
        ))
    }
}

fn check_period(period: Option<i32>, window: &Window) -> Result<i32, ToolError> {
    match period {
        None => Ok(period_for(window.length())),
        Some(p) if p >= 60 && p % 60 == 0 => Ok(p),
        Some(p) if [1, 5, 10, 30].contains(&p) => Ok(p),
        Some(p) => Err(ToolError::bad(
            "period",
            format!("{p} s: use 1, 5, 10, 30 or a multiple of 60 seconds"),
        )),
    }
}

/// One series to read.
pub struct SeriesSpec {
    pub label: String,
    pub namespace: String,
    pub metric: String,
    pub dimensions: BTreeMap<String, String>,
    pub stat: String,
}

/// Reads every series over the window in one GetMetricData call (≤ 500 queries): points
/// oldest first, with a summary (latest, min, max, average).
pub async fn read_series(
    ctx: &AwsContext,
    specs: &[SeriesSpec],
    window: Window,
    period: i32,
) -> Result<Series, ToolError> {
    let queries: Vec<MetricDataQuery> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let dimensions = spec
                .dimensions
                .iter()
                .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                .collect();
            MetricDataQuery::builder()
                .id(format!("q{i}"))
                .label(&spec.label)
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace(&spec.namespace)
                                .metric_name(&spec.metric)
                                .set_dimensions(Some(dimensions))
                                .build(),
                        )
                        .period(period)
                        .stat(&spec.stat)
                        .build(),
                )
                .build()
        })
        .collect();
    let mut points: BTreeMap<String, Vec<(SystemTime, f64)>> = BTreeMap::new();
    let mut token = None;
    loop {
        let page = ctx
            .cloudwatch()
            .get_metric_data()
            .set_metric_data_queries(Some(queries.clone()))
            .start_time(DateTime::from(window.start))
            .end_time(DateTime::from(window.end))
            .scan_by(ScanBy::TimestampAscending)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| ToolError::aws("cloudwatch:GetMetricData", e))?;
        for result in page.metric_data_results() {
            let id = result.id().unwrap_or_default().to_owned();
            let series = points.entry(id).or_default();
            for (at, value) in result.timestamps().iter().zip(result.values()) {
                if let Ok(at) = SystemTime::try_from(*at) {
                    series.push((at, *value));
                }
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let all: Vec<Vec<(SystemTime, f64)>> = (0..specs.len())
        .map(|i| {
            let mut series = points.remove(&format!("q{i}")).unwrap_or_default();
            series.sort_by_key(|(at, _)| *at);
            series
        })
        .collect();
    Ok(shape_series(specs, &all, period))
}

/// The series as an answer, as compactly as they allow. CloudWatch puts datapoints at
/// `start + k × step` (the step is the period, or a multiple of it when a metric is
/// published less often); when every point of every series sits on one such grid and at
/// least half of it holds data, the grid is said once (`start`, and `step_seconds` when the
/// step is not the period) and each series is just its `values`, oldest first, with `null`
/// for a step without data. Otherwise — irregular or sparse — each series carries its
/// `points` as `[time, value]` pairs, which is then the shorter form.
fn shape_series(specs: &[SeriesSpec], all: &[Vec<(SystemTime, f64)>], period: i32) -> Series {
    let grid = regular_grid(all, period);
    let series = specs
        .iter()
        .zip(all)
        .map(|(spec, points)| summarize(spec, points, grid))
        .collect();
    Series {
        start: grid.map(|g| time(g.start)),
        step_seconds: grid.map(|g| g.step).filter(|step| *step != period as u64),
        series,
    }
}

/// Where every point sits: `start + k × step` for `k` in `0..slots`.
#[derive(Debug, Clone, Copy)]
struct Grid {
    start: SystemTime,
    step: u64,
    slots: usize,
}

/// The grid every point sits on, if there is one and it is at least half full.
fn regular_grid(all: &[Vec<(SystemTime, f64)>], period: i32) -> Option<Grid> {
    let period = u64::try_from(period).ok().filter(|p| *p > 0)?;
    let start = all
        .iter()
        .filter_map(|s| s.first())
        .map(|(t, _)| *t)
        .min()?;
    let mut offsets = Vec::new();
    for (at, _) in all.iter().flatten() {
        let offset = at.duration_since(start).ok()?;
        if offset.subsec_nanos() != 0 || offset.as_secs() % period != 0 {
            return None;
        }
        offsets.push(offset.as_secs());
    }
    let step = offsets.iter().fold(0, |g, o| gcd(g, *o)).max(period);
    let slots = (offsets.iter().max().copied().unwrap_or(0) / step) as usize + 1;
    let series = all.iter().filter(|s| !s.is_empty()).count();
    (offsets.len() * 2 >= slots * series).then_some(Grid { start, step, slots })
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Series read together: the grid's start (and step) when they are regular, and one entry
/// per series.
pub struct Series {
    pub start: Option<String>,
    pub step_seconds: Option<u64>,
    pub series: Vec<Value>,
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn summarize(spec: &SeriesSpec, series: &[(SystemTime, f64)], grid: Option<Grid>) -> Value {
    let values: Vec<f64> = series.iter().map(|(_, v)| *v).collect();
    let on_grid = grid.map(|grid| {
        let mut slots: Vec<Option<f64>> = vec![None; grid.slots];
        for (at, value) in series {
            let k = at.duration_since(grid.start).unwrap_or_default().as_secs() / grid.step;
            if let Some(slot) = slots.get_mut(k as usize) {
                *slot = Some(round(*value));
            }
        }
        slots
    });
    let summary = (!values.is_empty()).then(|| {
        json!({
            "latest": round(*values.last().unwrap_or(&0.0)),
            "min": round(values.iter().copied().fold(f64::INFINITY, f64::min)),
            "max": round(values.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
            "average": round(values.iter().sum::<f64>() / values.len() as f64),
        })
    });
    json!({
        "label": spec.label,
        "summary": summary,
        "points": grid.is_none().then(|| series.iter().map(|(at, v)| json!([time(*at), round(*v)])).collect::<Vec<_>>()),
        "values": (!values.is_empty()).then_some(on_grid).flatten(),
        "note": values.is_empty().then_some("no datapoints in this window"),
    })
}

pub struct MetricsList;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Namespace, e.g. "AWS/ElastiCache", "AWS/EC2", "AWS/ECS" or a custom one.
    namespace: Option<String>,
    /// Metric name, e.g. "CPUUtilization".
    metric: Option<String>,
    /// Only metrics with these dimension values, e.g. {"CacheClusterId": "cell-a-redis-001"}.
    dimensions: Option<BTreeMap<String, String>>,
    /// Most metrics to list (default 100, at most 500).
    limit: Option<u32>,
}

impl Tool for MetricsList {
    type Args = ListArgs;
    const NAME: &'static str = "metrics_list";
    const CAPABILITY: Capability = Capability::Metrics;
    const DESCRIPTION: &'static str = "List the CloudWatch metrics that exist (namespace, name, dimensions), filtered by namespace, metric name and dimension values. Use it to find what to pass to metrics_query.";
    const IAM_ACTIONS: &'static [&'static str] = &["cloudwatch:ListMetrics"];

    async fn run(ctx: &AwsContext, args: ListArgs) -> Result<Value, ToolError> {
        let limit = match args.limit {
            None => 100,
            Some(n) if (1..=500).contains(&n) => n as usize,
            Some(_) => return Err(ToolError::bad("limit", "must be 1 to 500")),
        };
        let filters: Vec<DimensionFilter> = args
            .dimensions
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| DimensionFilter::builder().name(k).value(v).build())
            .collect();
        let mut metrics = Vec::new();
        let mut token = None;
        let more;
        loop {
            let page = ctx
                .cloudwatch()
                .list_metrics()
                .set_namespace(args.namespace.clone())
                .set_metric_name(args.metric.clone())
                .set_dimensions(Some(filters.clone()))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| ToolError::aws("cloudwatch:ListMetrics", e))?;
            for metric in page.metrics() {
                let dimensions: BTreeMap<&str, &str> = metric
                    .dimensions()
                    .iter()
                    .filter_map(|d| Some((d.name()?, d.value()?)))
                    .collect();
                metrics.push(json!({
                    "namespace": metric.namespace(),
                    "metric": metric.metric_name(),
                    "dimensions": dimensions,
                }));
            }
            token = page.next_token().map(str::to_owned);
            if metrics.len() >= limit || token.is_none() {
                more = metrics.len() > limit || token.is_some();
                metrics.truncate(limit);
                break;
            }
        }
        metrics.sort_by_key(|m| m.to_string());
        Ok(json!({"metrics": metrics, "truncated": more}))
    }
}

pub struct MetricsQuery;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryArgs {
    /// Namespace, e.g. "AWS/EC2".
    namespace: String,
    /// Metric name, e.g. "CPUUtilization".
    metric: String,
    /// Dimension values that pick the series, e.g. {"InstanceId": "i-0abc"}.
    dimensions: Option<BTreeMap<String, String>>,
    /// Average (default), Sum, Minimum, Maximum, SampleCount, or a percentile like p99.
    stat: Option<String>,
    /// Seconds per point; default chosen from the window (at most 60 points).
    period: Option<i32>,
    /// Start of the time window: a duration back from now ("1h", "30m", "2d") or an RFC 3339 time. Default 1h.
    since: Option<String>,
    /// End of the time window (same forms as since); default now.
    until: Option<String>,
}

impl Tool for MetricsQuery {
    type Args = QueryArgs;
    const NAME: &'static str = "metrics_query";
    const CAPABILITY: Capability = Capability::Metrics;
    const DESCRIPTION: &'static str = "Read one CloudWatch metric series over a time window (default the last hour): points oldest first, and a summary (latest, min, max, average). The period is chosen from the window unless given. Use metrics_list to find namespaces, names and dimensions.";
    const IAM_ACTIONS: &'static [&'static str] = &["cloudwatch:GetMetricData"];

    async fn run(ctx: &AwsContext, args: QueryArgs) -> Result<Value, ToolError> {
        let window = Window::from_args(
            args.since.as_deref(),
            args.until.as_deref(),
            Duration::from_secs(3600),
            ctx.now,
        )?;
        let period = check_period(args.period, &window)?;
        let stat = args.stat.unwrap_or_else(|| "Average".into());
        check_stat(&stat)?;
        let spec = SeriesSpec {
            label: args.metric.clone(),
            namespace: args.namespace.clone(),
            metric: args.metric,
            dimensions: args.dimensions.unwrap_or_default(),
            stat,
        };
        let mut read = read_series(ctx, std::slice::from_ref(&spec), window, period).await?;
        Ok(json!({
            "namespace": args.namespace,
            "metric": spec.metric,
            "dimensions": spec.dimensions,
            "stat": spec.stat,
            "period_seconds": period,
            "since": time(window.start),
            "until": time(window.end),
            "start": read.start,
            "step_seconds": read.step_seconds,
            "series": read.series.pop(),
        }))
    }
}

pub struct AlarmsList;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlarmsArgs {
    /// Only alarms in this state: "ALARM", "OK" or "INSUFFICIENT_DATA". Default every state.
    state: Option<String>,
    /// Only alarms whose name starts with this.
    name_prefix: Option<String>,
    /// Most alarms (default 100, at most 500).
    limit: Option<u32>,
}

impl Tool for AlarmsList {
    type Args = AlarmsArgs;
    const NAME: &'static str = "alarms_list";
    const CAPABILITY: Capability = Capability::Metrics;
    const DESCRIPTION: &'static str = "List CloudWatch alarms (metric and composite) with their state, why they are in it and since when, the metric and threshold; most recent state change first. Use it for \"what alarms are firing\" (state \"ALARM\").";
    const IAM_ACTIONS: &'static [&'static str] = &["cloudwatch:DescribeAlarms"];

    async fn run(ctx: &AwsContext, args: AlarmsArgs) -> Result<Value, ToolError> {
        let state = match args.state.as_deref().map(str::to_uppercase) {
            None => None,
            Some(s) if ["ALARM", "OK", "INSUFFICIENT_DATA"].contains(&s.as_str()) => {
                Some(StateValue::from(s.as_str()))
            }
            Some(other) => {
                return Err(ToolError::bad(
                    "state",
                    format!("{other:?}: use ALARM, OK or INSUFFICIENT_DATA"),
                ));
            }
        };
        let limit = match args.limit {
            None => 100,
            Some(n) if (1..=500).contains(&n) => n as usize,
            Some(_) => return Err(ToolError::bad("limit", "must be 1 to 500")),
        };
        let mut alarms: Vec<(Option<SystemTime>, Value)> = Vec::new();
        let mut token = None;
        let more;
        loop {
            let page = ctx
                .cloudwatch()
                .describe_alarms()
                .set_state_value(state.clone())
                .set_alarm_name_prefix(args.name_prefix.clone())
                .alarm_types(AlarmType::MetricAlarm)
                .alarm_types(AlarmType::CompositeAlarm)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| ToolError::aws("cloudwatch:DescribeAlarms", e))?;
            for alarm in page.metric_alarms() {
                let changed = alarm
                    .state_updated_timestamp()
                    .and_then(|t| SystemTime::try_from(*t).ok());
                let dimensions: BTreeMap<&str, &str> = alarm
                    .dimensions()
                    .iter()
                    .filter_map(|d| Some((d.name()?, d.value()?)))
                    .collect();
                alarms.push((
                    changed,
                    json!({
                        "name": alarm.alarm_name(),
                        "state": alarm.state_value().map(|s| s.as_str()),
                        "since": changed.map(time),
                        "reason": alarm.state_reason(),
                        "namespace": alarm.namespace(),
                        "metric": alarm.metric_name(),
                        "dimensions": dimensions,
                        "condition": alarm.comparison_operator().map(|op| format!(
                            "{} {} {} for {}x{}s",
                            alarm.statistic().map(|s| s.as_str()).or(alarm.extended_statistic()).unwrap_or("value"),
                            operator(op.as_str()),
                            alarm.threshold().unwrap_or_default(),
                            alarm.evaluation_periods().unwrap_or(1),
                            alarm.period().unwrap_or_default(),
                        )),
                    }),
                ));
            }
            for alarm in page.composite_alarms() {
                let changed = alarm
                    .state_updated_timestamp()
                    .and_then(|t| SystemTime::try_from(*t).ok());
                alarms.push((
                    changed,
                    json!({
                        "name": alarm.alarm_name(),
                        "composite": true,
                        "state": alarm.state_value().map(|s| s.as_str()),
                        "since": changed.map(time),
                        "reason": alarm.state_reason(),
                        "rule": alarm.alarm_rule(),
                    }),
                ));
            }
            token = page.next_token().map(str::to_owned);
            if alarms.len() >= limit || token.is_none() {
                more = alarms.len() > limit || token.is_some();
                break;
            }
        }
        alarms.sort_by_key(|a| std::cmp::Reverse(a.0));
        alarms.truncate(limit);
        let alarms: Vec<Value> = alarms.into_iter().map(|(_, a)| a).collect();
        Ok(json!({"count": alarms.len(), "alarms": alarms, "truncated": more}))
    }
}

/// `GreaterThanThreshold` → `>`; operators without a symbol (anomaly bands) stay as named.
fn operator(name: &str) -> &str {
    match name {
        "GreaterThanThreshold" => ">",
        "GreaterThanOrEqualToThreshold" => ">=",
        "LessThanThreshold" => "<",
        "LessThanOrEqualToThreshold" => "<=",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_follows_the_window() {
        assert_eq!(period_for(Duration::from_secs(3600)), 60);
        assert_eq!(period_for(Duration::from_secs(3 * 3600)), 300);
        assert_eq!(period_for(Duration::from_secs(86400)), 3600);
        assert_eq!(period_for(Duration::from_secs(30 * 86400)), 86400);
    }

    fn at(minute: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + minute * 60)
    }

    fn spec(label: &str) -> SeriesSpec {
        SeriesSpec {
            label: label.into(),
            namespace: "AWS/ElastiCache".into(),
            metric: "CPUUtilization".into(),
            dimensions: BTreeMap::new(),
            stat: "Average".into(),
        }
    }

    #[test]
    fn a_regular_series_is_its_start_and_values_with_gaps_as_null() {
        let primary = vec![(at(0), 10.0), (at(1), 20.0), (at(3), 40.0)];
        let replica = vec![(at(1), 5.0), (at(2), 6.0), (at(3), 7.0)];
        let shaped = shape_series(&[spec("001"), spec("002")], &[primary, replica], 60);
        assert_eq!(shaped.start.as_deref(), Some("2027-01-15T08:00:00Z"));
        assert_eq!(shaped.series[0]["values"], json!([10.0, 20.0, null, 40.0]));
        assert_eq!(shaped.series[1]["values"], json!([null, 5.0, 6.0, 7.0]));
        assert!(shaped.series[0].get("points").is_none_or(Value::is_null));
    }

    #[test]
    fn irregular_or_sparse_series_keep_their_times() {
        let off_grid = vec![(at(0), 1.0), (at(1) + Duration::from_secs(7), 2.0)];
        let shaped = shape_series(&[spec("x")], &[off_grid], 60);
        assert!(shaped.start.is_none());
        assert_eq!(shaped.series[0]["points"].as_array().unwrap().len(), 2);
        let sparse = vec![(at(0), 1.0), (at(10), 2.0), (at(13), 3.0)];
        let shaped = shape_series(&[spec("x")], &[sparse], 60);
        assert!(shaped.start.is_none(), "3 of 14 slots: points are shorter");
    }

    #[test]
    fn a_metric_published_less_often_than_the_period_steps_by_its_own_interval() {
        let every_five = vec![(at(0), 1.0), (at(5), 2.0), (at(15), 4.0)];
        let shaped = shape_series(&[spec("x")], &[every_five], 60);
        assert_eq!(shaped.step_seconds, Some(300));
        assert_eq!(shaped.series[0]["values"], json!([1.0, 2.0, null, 4.0]));
    }

    #[test]
    fn statistics_are_checked() {
        assert!(check_stat("Average").is_ok());
        assert!(check_stat("p99.9").is_ok());
        assert!(
            matches!(check_stat("avg"), Err(ToolError::BadArgument { argument, .. }) if argument == "stat")
        );
    }
}
