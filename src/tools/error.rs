//! What can go wrong running a tool, each with what to do next and its exit status.

use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use serde_json::{Value, json};

use crate::aws_error::{FailureClass, describe};
use crate::exit_code::Exit;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// No tool by that name.
    #[error("no tool named {name:?}{}", did_you_mean(closest))]
    UnknownTool { name: String, closest: Vec<String> },
    /// An argument is missing, unknown, of the wrong type or out of range.
    #[error("argument {argument}: {reason}")]
    BadArgument { argument: String, reason: String },
    /// A named resource does not exist; `closest` are existing names to try instead.
    #[error("{kind} {name:?} not found{}", did_you_mean(closest))]
    NotFound {
        kind: &'static str,
        name: String,
        closest: Vec<String>,
    },
    /// AWS refused or failed the call.
    #[error("{action} failed: {message}. {hint}")]
    Aws {
        action: &'static str,
        class: FailureClass,
        code: Option<String>,
        message: String,
        hint: String,
    },
}

fn did_you_mean(closest: &[String]) -> String {
    if closest.is_empty() {
        String::new()
    } else {
        format!("; did you mean: {}?", closest.join(", "))
    }
}

impl ToolError {
    pub fn bad(argument: &str, reason: impl Into<String>) -> Self {
        Self::BadArgument {
            argument: argument.to_owned(),
            reason: reason.into(),
        }
    }

    /// An SDK error of the call to `action` (an IAM action such as `logs:FilterLogEvents`).
    pub fn aws<E>(action: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let failure = describe(&err);
        let hint = match failure.class {
            FailureClass::Denied => format!(
                "The credentials may not call {action}: attach the policy `autoheal policy permissions` prints"
            ),
            FailureClass::BadCredentials => {
                "AWS rejected the credentials (expired, unknown or badly signed): start a new sandbox for fresh ones, and check the clock".into()
            }
            FailureClass::Unreachable => {
                "The AWS endpoint did not answer: check the network path to AWS (NAT, VPC endpoints, proxy)".into()
            }
            FailureClass::Other => "AWS answered with an error; its message says why".into(),
        };
        Self::Aws {
            action,
            class: failure.class,
            code: failure.code,
            message: failure.message,
            hint,
        }
    }

    /// The process exit status for `autoheal tool`.
    pub fn exit(&self) -> Exit {
        match self {
            Self::UnknownTool { .. } | Self::BadArgument { .. } | Self::NotFound { .. } => {
                Exit::DataErr
            }
            Self::Aws { class, .. } => match class {
                FailureClass::Denied => Exit::NoPerm,
                _ => Exit::Unavailable,
            },
        }
    }

    /// The error as JSON (for `--output json` and MCP).
    pub fn to_json(&self) -> Value {
        let mut body = json!({"message": self.to_string()});
        match self {
            Self::UnknownTool { closest, .. } | Self::NotFound { closest, .. } => {
                body["code"] = json!("not_found");
                if !closest.is_empty() {
                    body["closest"] = json!(closest);
                }
            }
            Self::BadArgument { argument, .. } => {
                body["code"] = json!("bad_argument");
                body["argument"] = json!(argument);
            }
            Self::Aws {
                action, code, hint, ..
            } => {
                body["code"] = json!(code.clone().unwrap_or_else(|| "aws_error".into()));
                body["action"] = json!(action);
                body["hint"] = json!(hint);
            }
        }
        json!({"error": body})
    }
}
