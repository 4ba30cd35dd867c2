//! The command line, as DESIGN.md's contract lists it (clap derive).
//!
//! Only parsing lives here; each command's behaviour lives in `commands/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::LogFormat;

/// Autoheal's self-hosted AWS side: the daemon that hands short-lived AWS credentials to
/// sandboxes, and the read-only AWS tools the investigation agent runs inside them.
#[derive(Debug, Parser)]
#[command(
    name = "autoheal",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Configuration file [default: /etc/autoheal/autoheal.toml, if it exists]
    #[arg(long, global = true, value_name = "FILE", env = "AUTOHEAL_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log line format on stderr [default: the config's log.format, else text]
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

/// `--output` of commands that print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Readable text for people.
    Text,
    /// Exactly one JSON document.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: HTTP API, credential broker and sandbox runtime.
    Serve,
    /// Test Connection: resolve credentials and try one read call per AWS capability.
    Check(CheckArgs),
    /// Work with the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List the read-only AWS tools: names, descriptions, argument schemas, IAM actions.
    Tools(OutputArgs),
    /// Run one tool with the AWS credentials of this process (as inside a sandbox).
    Tool(ToolArgs),
    /// Serve every tool over the Model Context Protocol on stdin/stdout.
    Mcp(McpArgs),
    /// Print IAM documents derived from the tool catalogue.
    Policy(PolicyArgs),
    /// Run sandboxes through the daemon's API.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// The daemon's OIDC issuer: signing keys, static documents, debug tokens.
    #[command(subcommand)]
    Oidc(OidcCommand),
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Test only this integration [default: all].
    #[arg(long, value_name = "NAME")]
    pub integration: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective result, secrets redacted.
    Check(OutputArgs),
}

#[derive(Debug, Args)]
pub struct ToolArgs {
    /// Tool name, as `autoheal tools` lists it.
    pub name: String,
    /// Arguments as a JSON object.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    pub args: String,
    /// AWS region [default: AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Output format [default: text on a terminal, else json].
    #[arg(long, value_enum)]
    pub output: Option<Output>,
    /// Return secrets found in answers (keys, tokens, passwords) as they are, unmasked.
    #[arg(long)]
    pub no_mask: bool,
}

#[derive(Debug, Args)]
pub struct McpArgs {
    /// Return secrets found in answers (keys, tokens, passwords) as they are, unmasked.
    #[arg(long, conflicts_with = "daemon")]
    pub no_mask: bool,
    /// Relay stdio to this daemon's MCP endpoint (such as http://127.0.0.1:8700), so every
    /// call runs in a sandbox there; the token comes from AUTOHEAL_API_TOKEN, else the
    /// config's server.api_token_file.
    #[arg(long, value_name = "URL", requires = "integration")]
    pub daemon: Option<String>,
    /// With --daemon: the integration whose sandbox answers.
    #[arg(long, value_name = "NAME", requires = "daemon")]
    pub integration: Option<String>,
    /// With --daemon: narrow the session to these tools (repeatable) [default: every tool].
    #[arg(long, value_enum, value_name = "CAPABILITY", requires = "daemon")]
    pub capability: Vec<crate::tools::Capability>,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Which document to print.
    #[arg(value_enum, default_value = "permissions")]
    pub document: PolicyDocument,
    /// permissions: only the actions of these capabilities (repeatable) [default: all].
    #[arg(long, value_enum, value_name = "CAPABILITY")]
    pub capability: Vec<crate::tools::Capability>,
    /// trust-oidc: the account that holds the OIDC provider and the role.
    #[arg(long, value_name = "ACCOUNT_ID")]
    pub account: Option<String>,
    /// trust-oidc: the issuer URL [default: oidc.issuer of the config].
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
    /// trust-oidc: the audience [default: {oidc.tenant_slug}-oidc-service of the config].
    #[arg(long, value_name = "AUD")]
    pub audience: Option<String>,
    /// trust-oidc: pin the token's subject to this integration [default: any integration].
    #[arg(long, value_name = "NAME")]
    pub integration: Option<String>,
    /// trust-cross-account: the role autoheal runs as (the instance role) in the source account.
    #[arg(long, value_name = "ARN")]
    pub source_role: Option<String>,
    /// trust-cross-account: the external ID the target role requires.
    #[arg(long, value_name = "ID")]
    pub external_id: Option<String>,
    /// assume-role: the role the instance role may assume (repeatable: the same-account
    /// read-only role, a cross-account role).
    #[arg(long, value_name = "ARN")]
    pub role_arn: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyDocument {
    /// The read-only permissions policy the tools need.
    Permissions,
    /// The role trust policy for OIDC federation.
    TrustOidc,
    /// The target role's trust policy for cross-account access.
    TrustCrossAccount,
    /// The instance role's own policy: sts:AssumeRole on the roles it may assume.
    AssumeRole,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Start a sandbox, wait for it, print its output and exit with its exit code.
    Run(SandboxRunArgs),
}

#[derive(Debug, Args)]
pub struct SandboxRunArgs {
    /// Integration whose credentials the sandbox receives.
    #[arg(long, value_name = "NAME")]
    pub integration: String,
    /// Image to run [default: the config's sandbox.image].
    #[arg(long, value_name = "IMG")]
    pub image: Option<String>,
    /// Longest the sandbox may run, such as 90s or 5m [default: sandbox.max_lifetime].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Narrow the sandbox's own STS session to these tools (repeatable) [default: every tool].
    #[arg(long, value_enum, value_name = "CAPABILITY")]
    pub capability: Vec<crate::tools::Capability>,
    /// How the sandbox receives its credentials: env (keys in its environment) or endpoint
    /// (served by the daemon, renewed, nothing in `docker inspect`) [default: sandbox.credentials].
    #[arg(long, value_name = "HOW", value_parser = crate::config::CredentialsDelivery::parse)]
    pub credentials: Option<crate::config::CredentialsDelivery>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum OidcCommand {
    /// Create a signing key in oidc.key_dir (mode 0600); it signs after being published
    /// for 10 minutes, and the old key stays published until its last token expired.
    Keygen {
        /// Signature algorithm.
        #[arg(long, value_enum, default_value = "rs256")]
        alg: crate::oidc::KeyAlgorithm,
    },
    /// Write the discovery document and JWKS as static files for a public HTTPS host.
    Publish {
        /// Directory to write `.well-known/` into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print a signed token for an integration (for debugging trust policies).
    Token {
        /// Integration whose subject the token carries.
        #[arg(long, value_name = "NAME")]
        integration: String,
        /// Narrow the subject to one sandbox (`integration:N:sandbox:ID`).
        #[arg(long, value_name = "ID")]
        sandbox: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
}
