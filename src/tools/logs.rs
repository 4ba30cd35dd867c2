//! CloudWatch Logs: `logs_groups`, `logs_search`, `logs_events`, `logs_insights`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_cloudwatchlogs::types::{OrderBy, QueryStatus};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::answer::millis_time;
use super::args::{Window, epoch_millis};
use super::closest::{ShortName, closest, short_name};
use super::newest::Newest;
use super::paging::take_items;
use super::{AwsContext, Capability, Tool, ToolError};

/// FilterLogEvents allows 25 requests per second per account and region (its quota as
/// documented); four groups searched at once stays well inside it.
const CONCURRENT_GROUPS: usize = 4;
/// Most groups one search may cover (by prefix).
const MAX_GROUPS: usize = 50;
/// Pages of log groups read when looking for close names.
const SUGGESTION_PAGES: usize = 4;
/// Longest a Logs Insights query is waited for.
const INSIGHTS_WAIT: Duration = Duration::from_secs(60);

fn limit_of(argument: &str, given: Option<u32>, default: u32, max: u32) -> Result<u32, ToolError> {
    match given {
        None => Ok(default),
        Some(0) => Err(ToolError::bad(argument, "must be at least 1")),
        Some(n) if n > max => Err(ToolError::bad(argument, format!("must be at most {max}"))),
        Some(n) => Ok(n),
    }
}

/// Every log group name starting with `prefix` (all of them for ""), up to `max`; answers
/// whether there were more.
async fn group_names(
    ctx: &AwsContext,
    prefix: &str,
    max: usize,
) -> Result<(Vec<String>, bool), ToolError> {
    let (groups, more) = log_groups(ctx, Some(prefix).filter(|p| !p.is_empty()), max).await?;
    let names = groups
        .into_iter()
        .filter_map(|g| g.log_group_name)
        .collect();
    Ok((names, more))
}

/// Every log group (with `prefix`, when given), up to `max`; answers whether there were more.
async fn log_groups(
    ctx: &AwsContext,
    prefix: Option<&str>,
    max: usize,
) -> Result<(Vec<aws_sdk_cloudwatchlogs::types::LogGroup>, bool), ToolError> {
    let listing = ctx
        .logs()
        .describe_log_groups()
        .set_log_group_name_prefix(prefix.map(str::to_owned))
        .limit(50)
        .into_paginator()
        .items()
        .send();
    take_items(listing, max)
        .await
        .map_err(|e| ToolError::aws("logs:DescribeLogGroups", e))
}

/// The error for a group (or prefix) that matches nothing, with the closest existing names;
/// the listing's own error when even that fails.
async fn group_not_found(ctx: &AwsContext, kind: &'static str, name: &str) -> ToolError {
    match group_names(ctx, "", 50 * SUGGESTION_PAGES).await {
        Ok((all, _)) => ToolError::NotFound {
            kind,
            name: name.to_owned(),
            closest: closest(name, all.iter().map(String::as_str)),
        },
        Err(err) => err,
    }
}

/// The log group `name` stands for: itself when it exists, else the one group it names as a
/// path component or suffix (`payment-service` → `/ecs/payment-service`). Answers the group
/// and whether it was resolved; several fits or none is an error listing the candidates.
async fn resolve_group(
    ctx: &AwsContext,
    argument: &str,
    name: &str,
) -> Result<(String, bool), ToolError> {
    let (found, _) = group_names(ctx, name, 50).await?;
    if found.iter().any(|g| g == name) {
        return Ok((name.to_owned(), false));
    }
    let (all, more) = group_names(ctx, "", 50 * SUGGESTION_PAGES).await?;
    let fit = short_name(name, all.iter().map(String::as_str));
    if more && matches!(fit, ShortName::One(_)) {
        // One fit among the first groups listed proves nothing about the rest.
        return Err(ToolError::bad(
            argument,
            format!(
                "{name:?} is not a log group, and the account has too many groups to resolve a short name safely; give the full name (logs_groups with a prefix finds it)"
            ),
        ));
    }
    match fit {
        ShortName::Exact => Ok((name.to_owned(), false)),
        ShortName::One(group) => Ok((group, true)),
        ShortName::Several(groups) => Err(ToolError::bad(
            argument,
            format!(
                "{name:?} fits several log groups: {}; give the full name",
                groups.join(", ")
            ),
        )),
        ShortName::None => Err(ToolError::NotFound {
            kind: "log group",
            name: name.to_owned(),
            closest: closest(name, all.iter().map(String::as_str)),
        }),
    }
}

/// [`resolve_group`] for each of `names`: the groups (each once) and what was resolved.
async fn resolve_groups(
    ctx: &AwsContext,
    names: Vec<String>,
) -> Result<(Vec<String>, BTreeMap<String, String>), ToolError> {
    let mut groups = Vec::new();
    let mut resolved = BTreeMap::new();
    for name in names {
        let (group, was_resolved) = resolve_group(ctx, "log_groups", &name).await?;
        if was_resolved {
            resolved.insert(name, group.clone());
        }
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    Ok((groups, resolved))
}

pub struct LogsGroups;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupsArgs {
    /// Only groups whose name starts with this (e.g. "/ecs/").
    prefix: Option<String>,
    /// Most groups to list (default 50, at most 500).
    limit: Option<u32>,
}

impl Tool for LogsGroups {
    type Args = GroupsArgs;
    const NAME: &'static str = "logs_groups";
    const CAPABILITY: Capability = Capability::Logs;
    const DESCRIPTION: &'static str = "List CloudWatch Logs log groups (name, stored bytes, retention), optionally by name prefix. Use it to find the exact group names before searching logs.";
    const IAM_ACTIONS: &'static [&'static str] = &["logs:DescribeLogGroups"];

    async fn run(ctx: &AwsContext, args: GroupsArgs) -> Result<Value, ToolError> {
        let limit = limit_of("limit", args.limit, 50, 500)? as usize;
        let (found, more) = log_groups(ctx, args.prefix.as_deref(), limit).await?;
        let groups: Vec<Value> = found
            .iter()
            .map(|group| {
                json!({
                    "name": group.log_group_name(),
                    "stored_bytes": group.stored_bytes(),
                    "retention_days": group.retention_in_days(),
                    "created": group.creation_time().and_then(millis_time),
                })
            })
            .collect();
        Ok(json!({"log_groups": groups, "truncated": more}))
    }
}

pub struct LogsSearch;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// Exact log group names to search (e.g. ["/ecs/payment-service"]).
    log_groups: Option<Vec<String>>,
    /// Search every group whose name starts with this instead (at most 50 groups).
    log_group_prefix: Option<String>,
    /// CloudWatch Logs filter pattern: a term ("ERROR"), a phrase ("\"upstream timeout\""),
    /// terms combined ("?ERROR ?WARN"), or JSON ("{ $.level = \"error\" }"). Omit for all events.
    pattern: Option<String>,
    #[doc = "Start of the time window: a duration back from now (\"1h\", \"30m\", \"2d\") or an RFC 3339 time. Default 1h."]
    since: Option<String>,
    #[doc = "End of the time window (same forms as since); default now."]
    until: Option<String>,
    /// Most events to return, newest first (default 50, at most 1000).
    limit: Option<u32>,
}

impl Tool for LogsSearch {
    type Args = SearchArgs;
    const NAME: &'static str = "logs_search";
    const CAPABILITY: Capability = Capability::Logs;
    const DESCRIPTION: &'static str = "Search CloudWatch Logs for events matching a filter pattern in one or many log groups over a time window (default the last hour); newest events first. Use it for questions like \"show me error logs from payment-service in the last hour\" (pattern \"ERROR\"). Give exact group names in log_groups, or log_group_prefix; an unknown group name answers with the closest existing names. When truncated, ask again with until set to the oldest time returned.";
    const IAM_ACTIONS: &'static [&'static str] =
        &["logs:FilterLogEvents", "logs:DescribeLogGroups"];

    async fn run(ctx: &AwsContext, args: SearchArgs) -> Result<Value, ToolError> {
        let window = Window::from_args(
            args.since.as_deref(),
            args.until.as_deref(),
            Duration::from_secs(3600),
            ctx.now,
        )?;
        let limit = limit_of("limit", args.limit, 50, 1000)? as usize;
        let mut resolved = BTreeMap::new();
        let groups = match (args.log_groups, args.log_group_prefix) {
            (Some(_), Some(_)) => {
                return Err(ToolError::bad(
                    "log_group_prefix",
                    "give log_groups or log_group_prefix, not both",
                ));
            }
            (Some(groups), None) if groups.is_empty() => {
                return Err(ToolError::bad("log_groups", "name at least one log group"));
            }
            (Some(names), None) => {
                let (groups, found) = resolve_groups(ctx, names).await?;
                resolved = found;
                groups
            }
            (None, Some(prefix)) => {
                let (groups, _) = group_names(ctx, &prefix, MAX_GROUPS + 1).await?;
                if groups.len() > MAX_GROUPS {
                    return Err(ToolError::bad(
                        "log_group_prefix",
                        format!(
                            "{prefix:?} matches more than {MAX_GROUPS} groups; use a longer prefix"
                        ),
                    ));
                }
                if groups.is_empty() {
                    return Err(group_not_found(ctx, "log group prefix", &prefix).await);
                }
                groups
            }
            (None, None) => {
                return Err(ToolError::bad(
                    "log_groups",
                    "name the log groups to search (or give log_group_prefix); logs_groups lists them",
                ));
            }
        };
        let pattern = args.pattern.unwrap_or_default();
        let searches = groups.clone().into_iter().map(|group| {
            let pattern = pattern.clone();
            async move { search_group(ctx, &group, &pattern, window, limit).await }
        });
        let found: Vec<(Vec<Event>, bool)> = stream::iter(searches)
            .buffer_unordered(CONCURRENT_GROUPS)
            .try_collect()
            .await?;
        let mut more = found.iter().any(|(_, more)| *more);
        let mut newest = Newest::new(limit);
        for (events, _) in found {
            newest.add(events, |e| e.timestamp);
        }
        let (events, dropped) = newest.finish();
        more |= dropped;
        // A group or stream shared by every event is said once, not per event.
        let one_group = groups.len() == 1;
        let streams: BTreeSet<&str> = events.iter().map(|e| e.stream.as_str()).collect();
        let one_stream = streams.len() == 1;
        let shown: Vec<Value> = events
            .iter()
            .map(|e| {
                json!({
                    "time": millis_time(e.timestamp),
                    "group": (!one_group).then_some(&e.group),
                    "stream": (!one_stream).then_some(&e.stream),
                    "message": e.message.trim_end(),
                })
            })
            .collect();
        let mut answer = json!({
            "resolved": (!resolved.is_empty()).then_some(&resolved),
            "log_group": one_group.then(|| &groups[0]),
            "stream": one_stream.then(|| streams.first().copied()).flatten(),
            "since": super::answer::time(window.start),
            "until": super::answer::time(window.end),
            "events": shown,
            "truncated": more,
        });
        if more && let Some(oldest) = events.last() {
            answer["next"] = json!({"until": millis_time(oldest.timestamp)});
        }
        if events.is_empty() {
            answer["note"] = json!("no events matched in this window");
        }
        Ok(answer)
    }
}

struct Event {
    timestamp: i64,
    group: String,
    stream: String,
    message: String,
}

/// FilterLogEvents calls one group's search may make. Each page holds at most 1 MB or 10,000
/// events, so a search reads at most ~20 MB and takes a few seconds even on a busy group.
const MAX_PAGES_PER_GROUP: usize = 20;
/// The first slice searched is the newest 1/32 of the window (at least a minute); each
/// further slice, going back, is twice as long — about six slices for an empty window.
const FIRST_SLICE_DIVISOR: u32 = 32;
const MIN_SLICE: Duration = Duration::from_secs(60);

/// One group's newest `limit` matches in the window.
///
/// FilterLogEvents pages oldest first, so reading pages until `limit` are found would give
/// the *oldest* matches — the start of an incident, not its latest errors. Instead the
/// window is searched backwards in slices from its end: each slice is read whole (every
/// page), newest slices first, until `limit` matches are found or the window is covered.
/// Answers the events (newest first) and whether older matches may remain.
async fn search_group(
    ctx: &AwsContext,
    group: &str,
    pattern: &str,
    window: Window,
    limit: usize,
) -> Result<(Vec<Event>, bool), ToolError> {
    let mut newest = Newest::new(limit);
    let mut pages_left = MAX_PAGES_PER_GROUP;
    let mut slice_end = window.end;
    let mut width = (window.length() / FIRST_SLICE_DIVISOR).max(MIN_SLICE);
    loop {
        let slice = Window {
            start: window
                .start
                .max(slice_end.checked_sub(width).unwrap_or(window.start)),
            end: slice_end,
        };
        let (events, complete) = read_slice(ctx, group, pattern, slice, &mut pages_left).await?;
        if !complete && newest.len() == 0 && width > MIN_SLICE {
            // Even the newest slice has more pages than the budget: what was read is its
            // oldest part. Look again at a narrower slice at the end.
            width = (width / 8).max(MIN_SLICE);
            if pages_left > 0 {
                continue;
            }
        }
        if !complete && newest.len() > 0 {
            // The budget ran out inside an older slice: its pages read so far are its oldest
            // part, so keeping them would leave a gap before them. Stop at what is whole.
            let (events, _) = newest.finish();
            return Ok((events, true));
        }
        newest.add(events, |e| e.timestamp);
        let covered = slice.start <= window.start;
        if newest.is_full() || covered || !complete || pages_left == 0 {
            let (events, dropped) = newest.finish();
            // Older matches may remain unless the whole window was read and nothing dropped.
            let more = dropped || !covered || !complete;
            return Ok((events, more));
        }
        slice_end = slice.start;
        width *= 2;
    }
}

/// Every match of one time slice, page after page, within the page budget; answers them and
/// whether the slice was read to its end.
async fn read_slice(
    ctx: &AwsContext,
    group: &str,
    pattern: &str,
    slice: Window,
    pages_left: &mut usize,
) -> Result<(Vec<Event>, bool), ToolError> {
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    let mut seen_tokens = BTreeSet::new();
    while *pages_left > 0 {
        *pages_left -= 1;
        let mut call = ctx
            .logs()
            .filter_log_events()
            .log_group_name(group)
            .start_time(epoch_millis(slice.start))
            .end_time(epoch_millis(slice.end));
        if !pattern.is_empty() {
            call = call.filter_pattern(pattern);
        }
        let page = call
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| ToolError::aws("logs:FilterLogEvents", e))?;
        for event in page.events() {
            events.push(Event {
                timestamp: event.timestamp().unwrap_or_default(),
                group: group.to_owned(),
                stream: event.log_stream_name().unwrap_or_default().to_owned(),
                message: event.message().unwrap_or_default().to_owned(),
            });
        }
        token = page.next_token().map(str::to_owned);
        // A repeated token would loop forever; the service never sends one, but be sure.
        let repeated = token
            .as_ref()
            .is_some_and(|t| !seen_tokens.insert(t.clone()));
        if token.is_none() || repeated {
            return Ok((events, true));
        }
    }
    Ok((events, false))
}

pub struct LogsEvents;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsArgs {
    /// The exact log group name.
    log_group: String,
    /// The log stream; default the stream with the latest event.
    stream: Option<String>,
    #[doc = "Start of the time window: a duration back from now (\"1h\", \"30m\", \"2d\") or an RFC 3339 time. Default 1h."]
    since: Option<String>,
    #[doc = "End of the time window (same forms as since); default now."]
    until: Option<String>,
    /// Most events to return, newest first (default 100, at most 1000).
    limit: Option<u32>,
}

impl Tool for LogsEvents {
    type Args = EventsArgs;
    const NAME: &'static str = "logs_events";
    const CAPABILITY: Capability = Capability::Logs;
    const DESCRIPTION: &'static str = "Read the events of one log stream (default: the stream of the group with the latest event) over a time window, newest first. Use it to read what one container or instance logged around an incident, unfiltered.";
    const IAM_ACTIONS: &'static [&'static str] = &[
        "logs:GetLogEvents",
        "logs:DescribeLogStreams",
        "logs:DescribeLogGroups",
    ];

    async fn run(ctx: &AwsContext, args: EventsArgs) -> Result<Value, ToolError> {
        let window = Window::from_args(
            args.since.as_deref(),
            args.until.as_deref(),
            Duration::from_secs(3600),
            ctx.now,
        )?;
        let limit = limit_of("limit", args.limit, 100, 1000)?;
        let (group, was_resolved) = resolve_group(ctx, "log_group", &args.log_group).await?;
        let streams = ctx
            .logs()
            .describe_log_streams()
            .log_group_name(&group)
            .order_by(OrderBy::LastEventTime)
            .descending(true)
            .limit(50)
            .send()
            .await
            .map_err(|err| ToolError::aws("logs:DescribeLogStreams", err))?;
        let names: Vec<&str> = streams
            .log_streams()
            .iter()
            .filter_map(|s| s.log_stream_name())
            .collect();
        let stream = match args.stream {
            Some(stream) => stream,
            None => match names.first() {
                Some(latest) => (*latest).to_owned(),
                None => {
                    return Ok(json!({"log_group": group, "note": "the group has no streams"}));
                }
            },
        };
        let page = ctx
            .logs()
            .get_log_events()
            .log_group_name(&group)
            .log_stream_name(&stream)
            .start_time(epoch_millis(window.start))
            .end_time(epoch_millis(window.end))
            .limit(limit as i32)
            .start_from_head(false)
            .send()
            .await;
        let page = match page {
            Ok(page) => page,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Err(ToolError::NotFound {
                    kind: "log stream",
                    name: stream.clone(),
                    closest: closest(&stream, names.iter().copied()),
                });
            }
            Err(err) => return Err(ToolError::aws("logs:GetLogEvents", err)),
        };
        let mut events: Vec<_> = page.events().iter().collect();
        events.sort_by_key(|e| std::cmp::Reverse(e.timestamp().unwrap_or_default()));
        let truncated = events.len() >= limit as usize;
        let shown: Vec<Value> = events
            .iter()
            .map(|e| {
                json!({
                    "time": e.timestamp().and_then(millis_time),
                    "message": e.message().unwrap_or_default().trim_end(),
                })
            })
            .collect();
        let mut answer = json!({
            "resolved": was_resolved.then(|| json!({args.log_group.as_str(): &group})),
            "log_group": group,
            "stream": stream,
            "events": shown,
            "truncated": truncated,
        });
        if truncated && let Some(oldest) = events.last().and_then(|e| e.timestamp()) {
            answer["next"] = json!({"until": millis_time(oldest)});
        }
        Ok(answer)
    }
}

pub struct LogsInsights;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InsightsArgs {
    /// Exact log group names to query (at most 50).
    log_groups: Vec<String>,
    /// A Logs Insights query, e.g. "fields @timestamp, @message | filter @message like /ERROR/ | sort @timestamp desc".
    query: String,
    #[doc = "Start of the time window: a duration back from now (\"1h\", \"30m\", \"2d\") or an RFC 3339 time. Default 1h."]
    since: Option<String>,
    #[doc = "End of the time window (same forms as since); default now."]
    until: Option<String>,
    /// Most result rows (default 100, at most 10000).
    limit: Option<u32>,
}

impl Tool for LogsInsights {
    type Args = InsightsArgs;
    const NAME: &'static str = "logs_insights";
    const CAPABILITY: Capability = Capability::Logs;
    const DESCRIPTION: &'static str = "Run a CloudWatch Logs Insights query over log groups and a time window, wait for it (up to 60 s) and return its rows. Use it for counts, aggregations and parsing (stats count(*) by bin(5m), parse, filter) that a plain pattern search cannot do.";
    const IAM_ACTIONS: &'static [&'static str] = &[
        "logs:StartQuery",
        "logs:GetQueryResults",
        "logs:DescribeLogGroups",
    ];

    async fn run(ctx: &AwsContext, args: InsightsArgs) -> Result<Value, ToolError> {
        let window = Window::from_args(
            args.since.as_deref(),
            args.until.as_deref(),
            Duration::from_secs(3600),
            ctx.now,
        )?;
        let limit = limit_of("limit", args.limit, 100, 10_000)?;
        if args.log_groups.is_empty() || args.log_groups.len() > MAX_GROUPS {
            return Err(ToolError::bad("log_groups", "name 1 to 50 log groups"));
        }
        if args.query.trim().is_empty() {
            return Err(ToolError::bad("query", "must not be empty"));
        }
        let (groups, resolved) = resolve_groups(ctx, args.log_groups).await?;
        let seconds = |t: std::time::SystemTime| epoch_millis(t) / 1000;
        let started = ctx
            .logs()
            .start_query()
            .set_log_group_names(Some(groups))
            .query_string(&args.query)
            .start_time(seconds(window.start))
            .end_time(seconds(window.end))
            .limit(limit as i32)
            .send()
            .await;
        let started = started.map_err(|err| ToolError::aws("logs:StartQuery", err))?;
        let id = started.query_id().unwrap_or_default().to_owned();
        let deadline = tokio::time::Instant::now() + INSIGHTS_WAIT;
        let mut pause = Duration::from_millis(250);
        loop {
            let results = ctx
                .logs()
                .get_query_results()
                .query_id(&id)
                .send()
                .await
                .map_err(|e| ToolError::aws("logs:GetQueryResults", e))?;
            let status = results.status().cloned();
            let finished = matches!(
                status,
                Some(
                    QueryStatus::Complete
                        | QueryStatus::Failed
                        | QueryStatus::Cancelled
                        | QueryStatus::Timeout
                )
            );
            if finished || tokio::time::Instant::now() >= deadline {
                let rows: Vec<Value> = results
                    .results()
                    .iter()
                    .map(|row| {
                        Value::Object(
                            row.iter()
                                .filter(|f| f.field() != Some("@ptr"))
                                .filter_map(|f| Some((f.field()?.to_owned(), json!(f.value()?))))
                                .collect(),
                        )
                    })
                    .collect();
                let stats = results.statistics();
                return Ok(json!({
                    "resolved": (!resolved.is_empty()).then_some(&resolved),
                    "query_id": id,
                    "status": status.as_ref().map(|s| s.as_str()),
                    "rows": rows,
                    "records_matched": stats.map(|s| s.records_matched()),
                    "records_scanned": stats.map(|s| s.records_scanned()),
                    "truncated": rows.len() >= limit as usize,
                    "note": (!finished).then_some("the query was still running after 60 s; these are partial results"),
                }));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_by_name() {
        assert_eq!(limit_of("limit", None, 50, 100).unwrap(), 50);
        assert!(matches!(
            limit_of("limit", Some(0), 50, 100),
            Err(ToolError::BadArgument { argument, .. }) if argument == "limit"
        ));
        assert!(limit_of("limit", Some(101), 50, 100).is_err());
    }
}
