//! The agent's read-only AWS tools: one file per service, one catalogue.
//!
//! Each tool declares its name, a description written for an LLM (what it answers, when to
//! use it), the JSON Schema of its arguments (generated from the Rust type), and the IAM
//! actions it calls. Arguments are checked before any call (an unknown field, a wrong type,
//! a bad duration is an error naming the argument); answers are compact JSON — only the
//! facts, RFC 3339 UTC times, no nulls — with `truncated`/`next` when cut.
//!
//! Read-only by construction: tools call only `Describe*`, `List*`, `Get*`,
//! `FilterLogEvents`, `StartQuery` and `GetQueryResults` (checked by a test over the catalogue
//! and, at the HTTP level, against the test bed).
//!
//! - `args.rs`: parsing arguments and time windows; `answer.rs`: shaping answers;
//! - `context.rs`: the AWS clients a tool calls through; `error.rs`: what can go wrong;
//! - `closest.rs`: "did you mean" for names that do not exist; `paging.rs`: listings to a bound;
//! - `policy.rs`: the IAM documents derived from the catalogue; `render.rs`: text for people;
//! - `identity.rs`, `logs.rs`, `metrics.rs`, `ec2.rs`, `ecs.rs`, `eks.rs`, `elasticache.rs`.

mod answer;
mod args;
mod closest;
mod context;
mod ec2;
mod ecs;
mod eks;
mod elasticache;
mod error;
mod identity;
mod logs;
mod mask;
mod metrics;
mod newest;
mod paging;
pub mod policy;
pub mod render;

use std::future::Future;
use std::pin::Pin;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use context::AwsContext;
pub use error::ToolError;
pub use mask::{mask_answer, mask_text};

/// The IAM actions a tool may call: the only verbs read-only tools use.
pub const READ_ONLY_ACTION_PREFIXES: [&str; 3] = ["Describe", "List", "Get"];
/// Read actions whose names do not start with a read verb.
pub const OTHER_READ_ACTIONS: [&str; 3] = ["FilterLogEvents", "StartQuery", "GetQueryResults"];

/// The part of AWS a tool reads (the unit of `policy permissions --capability`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Logs,
    Metrics,
    Ec2,
    Ecs,
    Eks,
    Elasticache,
    Identity,
}

impl Capability {
    /// Every capability, in the order `autoheal policy permissions --capability` lists them.
    pub const ALL: [Capability; 7] = [
        Capability::Logs,
        Capability::Metrics,
        Capability::Ec2,
        Capability::Ecs,
        Capability::Eks,
        Capability::Elasticache,
        Capability::Identity,
    ];

    /// The name a user writes (`--capability`, `?capabilities=`, the JSON answers).
    pub fn name(self) -> &'static str {
        match self {
            Capability::Logs => "logs",
            Capability::Metrics => "metrics",
            Capability::Ec2 => "ec2",
            Capability::Ecs => "ecs",
            Capability::Eks => "eks",
            Capability::Elasticache => "elasticache",
            Capability::Identity => "identity",
        }
    }

    /// Names joined with `separator`.
    pub fn names(capabilities: &[Capability], separator: &str) -> String {
        capabilities
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(separator)
    }
}

/// One tool, as each service file defines it.
pub trait Tool: Send + Sync + 'static {
    type Args: DeserializeOwned + JsonSchema + Send;
    const NAME: &'static str;
    const CAPABILITY: Capability;
    /// For the model: what it answers, when to use it, what the arguments mean.
    const DESCRIPTION: &'static str;
    /// Every IAM action the tool may call.
    const IAM_ACTIONS: &'static [&'static str];
    fn run(
        ctx: &AwsContext,
        args: Self::Args,
    ) -> impl Future<Output = Result<Value, ToolError>> + Send;
}

type Running<'a> = Pin<Box<dyn Future<Output = Result<Value, ToolError>> + Send + 'a>>;

/// A tool in the catalogue, without its types: what the CLI, MCP and the policy need.
pub struct ToolEntry {
    pub name: &'static str,
    pub capability: Capability,
    pub description: &'static str,
    pub iam_actions: &'static [&'static str],
    schema: fn() -> Value,
    check: fn(Value) -> Result<(), ToolError>,
    run: for<'a> fn(&'a AwsContext, Value) -> Running<'a>,
}

impl ToolEntry {
    fn of<T: Tool>() -> Self {
        Self {
            name: T::NAME,
            capability: T::CAPABILITY,
            description: T::DESCRIPTION,
            iam_actions: T::IAM_ACTIONS,
            schema: args::schema_of::<T::Args>,
            check: |args| args::parse::<T::Args>(args).map(drop),
            run: run_json::<T>,
        }
    }

    /// The JSON Schema of the arguments.
    pub fn input_schema(&self) -> Value {
        (self.schema)()
    }

    /// Checks the arguments against the tool's types without calling AWS; an error names
    /// the argument.
    pub fn check_args(&self, args: Value) -> Result<(), ToolError> {
        (self.check)(args)
    }

    /// Checks the arguments, runs the tool, and prunes the answer (no nulls, no empties).
    pub async fn run(&self, ctx: &AwsContext, args: Value) -> Result<Value, ToolError> {
        (self.run)(ctx, args).await.map(answer::prune)
    }
}

fn run_json<T: Tool>(ctx: &AwsContext, args: Value) -> Running<'_> {
    Box::pin(async move {
        let args = args::parse::<T::Args>(args)?;
        T::run(ctx, args).await
    })
}

/// Every tool, in a stable order (by capability, then as listed in its file).
pub fn catalogue() -> Vec<ToolEntry> {
    vec![
        ToolEntry::of::<logs::LogsGroups>(),
        ToolEntry::of::<logs::LogsSearch>(),
        ToolEntry::of::<logs::LogsEvents>(),
        ToolEntry::of::<logs::LogsInsights>(),
        ToolEntry::of::<metrics::MetricsList>(),
        ToolEntry::of::<metrics::MetricsQuery>(),
        ToolEntry::of::<metrics::AlarmsList>(),
        ToolEntry::of::<ec2::Ec2Instances>(),
        ToolEntry::of::<ec2::Ec2Instance>(),
        ToolEntry::of::<ecs::EcsClusters>(),
        ToolEntry::of::<ecs::EcsServices>(),
        ToolEntry::of::<ecs::EcsTasks>(),
        ToolEntry::of::<eks::EksClusters>(),
        ToolEntry::of::<eks::EksCluster>(),
        ToolEntry::of::<eks::EksNodegroups>(),
        ToolEntry::of::<elasticache::ElasticacheClusters>(),
        ToolEntry::of::<elasticache::ElasticacheReplicationGroup>(),
        ToolEntry::of::<elasticache::ElasticacheServerless>(),
        ToolEntry::of::<elasticache::ElasticacheEvents>(),
        ToolEntry::of::<elasticache::ElasticacheMetrics>(),
        ToolEntry::of::<identity::Whoami>(),
    ]
}

/// The tool with this name.
pub fn find(name: &str) -> Result<ToolEntry, ToolError> {
    let mut all = catalogue();
    match all.iter().position(|t| t.name == name) {
        Some(i) => Ok(all.swap_remove(i)),
        None => Err(ToolError::UnknownTool {
            name: name.to_owned(),
            closest: closest::closest(name, all.iter().map(|t| t.name)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_declared_action_is_a_read() {
        for tool in catalogue() {
            assert!(
                !tool.iam_actions.is_empty(),
                "{} declares no action",
                tool.name
            );
            for action in tool.iam_actions {
                let (service, verb) = action.split_once(':').expect("service:Action");
                assert!(
                    [
                        "logs",
                        "cloudwatch",
                        "ec2",
                        "ecs",
                        "eks",
                        "elasticache",
                        "sts"
                    ]
                    .contains(&service),
                    "{action}"
                );
                assert!(
                    READ_ONLY_ACTION_PREFIXES
                        .iter()
                        .any(|p| verb.starts_with(p))
                        || OTHER_READ_ACTIONS.contains(&verb),
                    "{} declares {action}, which is not a read",
                    tool.name
                );
            }
        }
    }

    #[test]
    fn names_are_unique_and_fit_llm_tool_apis() {
        let names: Vec<&str> = catalogue().iter().map(|t| t.name).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len());
        for name in names {
            assert!(
                !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
        }
    }

    #[test]
    fn every_schema_is_a_closed_object() {
        for tool in catalogue() {
            let schema = tool.input_schema();
            assert_eq!(schema["type"], "object", "{}", tool.name);
            assert_eq!(schema["additionalProperties"], false, "{}", tool.name);
            assert!(
                tool.description.len() > 60,
                "{} needs a real description",
                tool.name
            );
        }
    }

    #[test]
    fn a_capability_has_one_name_everywhere() {
        use clap::ValueEnum;
        assert_eq!(Capability::ALL.len(), Capability::value_variants().len());
        for capability in Capability::ALL {
            let name = capability.name();
            assert_eq!(serde_json::to_value(capability).unwrap(), name);
            assert_eq!(Capability::from_str(name, false), Ok(capability));
        }
    }
}
