//! What a caller asks of a sandbox, and what the API shows of one.
//!
//! [`SandboxRequest::validate`] checks everything about a request that needs no outside
//! system, so a bad request costs nothing and names what is wrong.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::SandboxError;
use crate::config::{CredentialsDelivery, SessionMode};
use crate::tools::Capability;

/// Longest argv accepted.
pub const MAX_ARGS: usize = 256;
/// Most extra environment variables a request may set.
pub const MAX_ENV_VARS: usize = 64;
/// Longest single argument or environment value: an argv entry is a word or a short JSON
/// document, not a payload (the whole request body is capped at 64 KiB anyway).
pub const MAX_VALUE_BYTES: usize = 16 * 1024;

/// The proxy variables the daemon sets (in either case): a request must not point a
/// sandbox around its egress proxy.
const PROXY_VARIABLES: [&str; 4] = ["HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY"];

/// What a caller asks for.
#[derive(Debug, Clone)]
pub struct SandboxRequest {
    pub integration: String,
    pub command: Vec<String>,
    pub image: Option<String>,
    pub timeout: Option<Duration>,
    /// Extra environment; `AWS_*` and `AUTOHEAL_*` are reserved.
    pub env: BTreeMap<String, String>,
    /// Narrows the sandbox's session to these tools' actions (per-sandbox sessions only);
    /// `None` = every tool's.
    pub capabilities: Option<Vec<Capability>>,
    /// How credentials reach it; `None` = `sandbox.credentials`.
    pub credentials: Option<CredentialsDelivery>,
}

/// The rules for a command and its timeout, a sandbox's own or one run in it by exec: a
/// program named, bounded arguments, a timeout above zero and within `max_lifetime`.
pub fn validate_command(
    command: &[String],
    timeout: Option<Duration>,
    max_lifetime: Duration,
) -> Result<(), SandboxError> {
    let bad = |m: String| Err(SandboxError::BadRequest(m));
    if command.first().is_none_or(|program| program.is_empty()) {
        return bad(
            "command: must name a program, such as [\"autoheal\", \"tool\", \"whoami\"]".into(),
        );
    }
    if command.len() > MAX_ARGS {
        return bad(format!("command: at most {MAX_ARGS} arguments"));
    }
    if let Some(at) = command.iter().position(|a| has_nul_or_too_long(a)) {
        return bad(format!(
            "command[{at}]: no NUL characters and at most {MAX_VALUE_BYTES} bytes"
        ));
    }
    if let Some(timeout) = timeout {
        if timeout.is_zero() {
            return bad("timeout: must be longer than zero".into());
        }
        if timeout > max_lifetime {
            return bad(format!(
                "timeout: {} is longer than sandbox.max_lifetime ({})",
                humantime::format_duration(timeout),
                humantime::format_duration(max_lifetime)
            ));
        }
    }
    Ok(())
}

impl SandboxRequest {
    /// Checks the request's own shape against the longest life a sandbox may have.
    pub fn validate(&self, max_lifetime: Duration) -> Result<(), SandboxError> {
        let bad = |m: String| Err(SandboxError::BadRequest(m));
        validate_command(&self.command, self.timeout, max_lifetime)?;
        if self.env.len() > MAX_ENV_VARS {
            return bad(format!("env: at most {MAX_ENV_VARS} variables"));
        }
        for (key, value) in &self.env {
            let valid = !key.is_empty()
                && key.len() <= 128
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !key.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return bad(format!(
                    "env: {key:?} is not a valid variable name (letters, digits, _)"
                ));
            }
            if key.starts_with("AWS_") || key.starts_with("AUTOHEAL_") {
                return bad(format!(
                    "env: {key} is reserved: the daemon sets AWS_* and AUTOHEAL_* itself"
                ));
            }
            if PROXY_VARIABLES.contains(&key.to_ascii_uppercase().as_str()) {
                return bad(format!(
                    "env: {key} is reserved: the daemon sets the proxy variables itself"
                ));
            }
            if has_nul_or_too_long(value) {
                return bad(format!(
                    "env.{key}: no NUL characters and at most {MAX_VALUE_BYTES} bytes"
                ));
            }
        }
        if let Some(capabilities) = &self.capabilities
            && capabilities.is_empty()
        {
            return bad(
                "capabilities: name at least one (such as [\"logs\"]), or leave it out for every tool"
                    .into(),
            );
        }
        if let Some(image) = &self.image
            && image.trim().is_empty()
        {
            return bad("image: must name an image, or be left out for the default".into());
        }
        Ok(())
    }
}

fn has_nul_or_too_long(value: &str) -> bool {
    value.len() > MAX_VALUE_BYTES || value.contains('\0')
}

/// Where a sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    Running,
    Exited,
    TimedOut,
    Stopped,
    Failed,
}

/// What a sandbox is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxKind {
    /// One command, run to its end (`POST /v1/sandboxes`).
    #[default]
    Command,
    /// An MCP session's sandbox (`/v1/mcp/{integration}`): `autoheal mcp` on stdio, for as
    /// long as the session lasts.
    McpSession,
}

/// What ended a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    /// Its program exited on its own.
    Exit,
    /// Its deadline passed.
    Deadline,
    /// `DELETE /v1/sandboxes/{id}`.
    Stop,
    /// Its MCP session was closed: the client's `DELETE`, or its connection to the sandbox
    /// ended.
    SessionClosed,
    /// Its MCP session went without a message for `sandbox.idle_timeout`.
    IdleTimeout,
    /// The daemon shut down.
    Shutdown,
    /// The engine failed us (see `error`).
    Failed,
}

/// A sandbox as the API shows it. No secret: the environment is not echoed. Output is shared
/// (`Arc`), so listing and waiting never copy megabytes.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxInfo {
    pub id: String,
    pub integration: String,
    pub image: String,
    pub command: Vec<String>,
    pub state: SandboxState,
    pub kind: SandboxKind,
    /// What ended it, once it has ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<EndedBy>,
    pub created_at: String,
    /// When the sandbox is stopped at the latest (RFC 3339): the deadline enforced.
    pub deadline: String,
    /// Why the deadline is earlier than asked, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_note: Option<String>,
    /// When the credentials it received expire: with `env` always after `deadline`; with
    /// `endpoint` the first ones', which are renewed ahead of expiry.
    pub credentials_expire_at: String,
    /// `per_sandbox` (its own STS session) or `shared` (the integration's).
    pub session: SessionMode,
    /// The STS session name of its own session (what CloudTrail shows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
    /// What its own session is narrowed to (the tools' capabilities).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<Capability>>,
    /// How the credentials reach the sandbox: `env` or `endpoint`.
    pub credentials: CredentialsDelivery,
    /// Destinations its egress proxy refused (bridge sandboxes with `egress = "aws"`; the
    /// first `egress::REFUSALS_KEPT`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress_refused: Vec<crate::egress::Refusal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<Arc<str>>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// True once the output was let go to keep the daemon's memory bounded
    /// (`sandbox.history`, and a byte budget across finished sandboxes).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub output_dropped: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub timed_out: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SandboxInfo {
    /// True once the sandbox has ended, however it ended.
    pub fn finished(&self) -> bool {
        self.state != SandboxState::Running
    }

    /// Bytes of output this record holds.
    pub fn output_bytes(&self) -> usize {
        self.stdout.as_ref().map_or(0, |s| s.len()) + self.stderr.as_ref().map_or(0, |s| s.len())
    }

    /// The record without its output, for listings.
    pub fn summary(&self) -> SandboxInfo {
        SandboxInfo {
            stdout: None,
            stderr: None,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(command: &[&str]) -> SandboxRequest {
        SandboxRequest {
            integration: "prod".into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            image: None,
            timeout: None,
            env: BTreeMap::new(),
            capabilities: None,
            credentials: None,
        }
    }

    fn message(request: &SandboxRequest) -> String {
        request
            .validate(Duration::from_secs(900))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_requests_name_the_field() {
        assert!(message(&request(&[])).starts_with("command:"));
        assert!(message(&request(&[""])).starts_with("command:"));
        let long = vec!["x"; MAX_ARGS + 1];
        assert!(message(&request(&long)).contains("at most 256"));
        assert!(message(&request(&["a", "b\0c"])).starts_with("command[1]:"));
        let mut r = request(&["true"]);
        r.timeout = Some(Duration::from_secs(3600));
        assert!(message(&r).contains("sandbox.max_lifetime"));
        r.timeout = Some(Duration::ZERO);
        assert!(message(&r).starts_with("timeout:"));
        let mut r = request(&["true"]);
        r.env.insert("AWS_SECRET_ACCESS_KEY".into(), "x".into());
        assert!(message(&r).contains("reserved"));
        let mut r = request(&["true"]);
        r.env.insert("1BAD".into(), "x".into());
        assert!(message(&r).contains("not a valid variable name"));
        let mut r = request(&["true"]);
        r.env.insert("no_proxy".into(), "*".into());
        assert!(message(&r).contains("proxy variables"));
        let mut r = request(&["true"]);
        r.env.insert("1BAD".into(), "x".into());
        assert!(message(&r).contains("not a valid variable name"));
        let mut r = request(&["true"]);
        r.image = Some(" ".into());
        assert!(message(&r).starts_with("image:"));
        let mut r = request(&["true"]);
        r.capabilities = Some(vec![]);
        assert!(message(&r).starts_with("capabilities:"));
        assert!(
            request(&["true"])
                .validate(Duration::from_secs(900))
                .is_ok()
        );
    }

    #[test]
    fn a_summary_has_no_output() {
        let info = SandboxInfo {
            id: "a".into(),
            integration: "prod".into(),
            image: "img".into(),
            command: vec!["true".into()],
            state: SandboxState::Exited,
            kind: SandboxKind::Command,
            ended_by: Some(EndedBy::Exit),
            created_at: String::new(),
            deadline: String::new(),
            deadline_note: None,
            credentials_expire_at: String::new(),
            session: SessionMode::Shared,
            session_name: None,
            capabilities: None,
            credentials: CredentialsDelivery::Env,
            egress_refused: Vec::new(),
            exit_code: Some(0),
            stdout: Some("out".into()),
            stderr: Some("err".into()),
            stdout_truncated: false,
            stderr_truncated: false,
            output_dropped: false,
            duration_ms: Some(1),
            timed_out: false,
            error: None,
        };
        assert_eq!(info.output_bytes(), 6);
        let summary = serde_json::to_value(info.summary()).unwrap();
        assert!(summary.get("stdout").is_none() && summary.get("stderr").is_none());
        assert_eq!(summary["exit_code"], 0);
    }
}
