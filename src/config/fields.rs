//! Value types of the configuration that carry their own syntax rules.
//!
//! Each `parse` answers a message that says what was expected, so validation can prefix it
//! with the key path and the operator knows what to write instead.

use std::fmt;
use std::net::IpAddr;
use std::sync::LazyLock;

use bytesize::ByteSize;
use regex::Regex;
use serde::{Serialize, Serializer};

/// A 12-digit AWS account ID (leading zeros are significant).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!(
                "not a 12-digit AWS account ID: {value:?} (quote it in TOML to keep leading zeros)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

static REGION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$").expect("valid regex"));

/// An AWS region name such as `us-east-1` or `us-gov-west-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Region(String);

impl Region {
    pub fn parse(value: &str) -> Result<Self, String> {
        if REGION.is_match(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!(
                "not an AWS region name: {value:?} (expected something like \"us-east-1\")"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

static ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^arn:(aws|aws-cn|aws-us-gov):iam::([0-9]{12}):role/((?:[\x21-\x7E]+/)*)([\w+=,.@-]{1,64})$",
    )
    .expect("valid regex")
});

/// An IAM role ARN: `arn:aws:iam::123456789012:role/[path/]Name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RoleArn(String);

impl RoleArn {
    pub fn parse(value: &str) -> Result<Self, String> {
        if ROLE_ARN.is_match(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!(
                "not an IAM role ARN: {value:?} (expected arn:aws:iam::<12-digit account>:role/<name>)"
            ))
        }
    }

    /// The account that owns the role.
    pub fn account_id(&self) -> AccountId {
        let captures = ROLE_ARN.captures(&self.0).expect("validated at parse");
        AccountId(captures[2].to_owned())
    }

    /// The role's name, without its path.
    pub fn role_name(&self) -> &str {
        self.0.rsplit('/').next().expect("validated at parse")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IP network in CIDR form (`169.254.169.254/32`); a bare address means the one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    address: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        let (address, prefix) = match value.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (value, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("not an IP address or CIDR block: {value:?}"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("prefix length must be 0..={max} in {value:?}")),
            },
        };
        Ok(Self { address, prefix })
    }

    pub fn is_ipv4(&self) -> bool {
        self.address.is_ipv4()
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// The first host address of an IPv4 network: where Docker puts a bridge's gateway when
    /// the network was created without naming one.
    pub fn first_ipv4_host(&self) -> Option<std::net::Ipv4Addr> {
        let IpAddr::V4(address) = self.address else {
            return None;
        };
        if self.prefix >= 31 {
            return None;
        }
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        Some(std::net::Ipv4Addr::from((u32::from(address) & mask) + 1))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Where an integration's credentials come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// The EC2 instance role through IMDSv2, optionally chained through `role_arn`.
    InstanceRole,
    /// `sts:AssumeRoleWithWebIdentity` with a token the daemon signs itself.
    Oidc,
    /// The SDK's default chain (env vars, profile, …) — for development.
    Environment,
}

impl AuthMethod {
    pub const NAMES: [&'static str; 3] = ["instance_role", "oidc", "environment"];

    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "instance_role" => Ok(Self::InstanceRole),
            "oidc" => Ok(Self::Oidc),
            "environment" => Ok(Self::Environment),
            other => Err(format!(
                "unknown auth method {other:?} (expected one of: {})",
                Self::NAMES.join(", ")
            )),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::InstanceRole => "instance_role",
            Self::Oidc => "oidc",
            Self::Environment => "environment",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether each sandbox gets its own STS session or all share the integration's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    /// One `sts:AssumeRole`/`AssumeRoleWithWebIdentity` per sandbox: named after it,
    /// tagged with it, narrowed by a session policy, as long as the sandbox lives.
    PerSandbox,
    /// Every sandbox receives the integration's one cached session (the only choice where
    /// no role is assumed).
    Shared,
}

impl SessionMode {
    pub const NAMES: [&'static str; 2] = ["per_sandbox", "shared"];

    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "per_sandbox" => Ok(Self::PerSandbox),
            "shared" => Ok(Self::Shared),
            other => Err(format!(
                "unknown session mode {other:?} (expected one of: {})",
                Self::NAMES.join(", ")
            )),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::PerSandbox => "per_sandbox",
            Self::Shared => "shared",
        }
    }
}

/// A host pattern from `sandbox.egress_allow`: an exact name, or `*.` and a suffix (any name
/// below it, not the suffix itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(String);

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl HostPattern {
    /// Parses a pattern; the error says what a pattern looks like.
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let name = lower.strip_prefix("*.").unwrap_or(&lower);
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if valid {
            Ok(Self(lower))
        } else {
            Err(format!(
                "not a host name pattern: {text:?} (a name such as \"vpce-1.logs.us-east-1.vpce.amazonaws.com\", or \"*.\" and a name)"
            ))
        }
    }

    /// Whether `host` (lower case, no trailing dot) is this name or below this `*.` suffix.
    pub fn matches(&self, host: &str) -> bool {
        match self.0.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            None => host == self.0,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `sandbox.upstream_proxy`: an HTTP proxy the egress proxy sends sandboxes' AWS tunnels
/// through (`http://host:port`; a corporate proxy, or the way out of a VPC without NAT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamProxy {
    pub host: String,
    pub port: u16,
}

impl UpstreamProxy {
    /// Parses `http://host:port`; the error says what is expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected = "(expected http://host:port, such as \"http://proxy.corp.example:3128\")";
        let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e} {expected}"))?;
        if url.scheme() != "http" {
            return Err(format!(
                "scheme {:?}: the daemon speaks plain HTTP CONNECT to its upstream proxy {expected}",
                url.scheme()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "credentials in the URL are not supported (they would show in the config and its checks) {expected}"
            ));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "a path, query or fragment has no meaning here {expected}"
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("no host {expected}"))?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = url
            .port()
            .ok_or_else(|| format!("no port (a proxy has no default one) {expected}"))?;
        Ok(Self { host, port })
    }
}

impl Serialize for UpstreamProxy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for UpstreamProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "http://[{}]:{}", self.host, self.port),
            false => write!(f, "http://{}:{}", self.host, self.port),
        }
    }
}

/// What a bridge sandbox may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Egress {
    /// Its integration's AWS endpoints (and `egress_allow`), through the daemon's proxy.
    Aws,
    /// Anything, as a plain Docker bridge allows (logged as a warning).
    Open,
}

impl Egress {
    pub const NAMES: [&'static str; 2] = ["aws", "open"];

    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "aws" => Ok(Self::Aws),
            "open" => Ok(Self::Open),
            other => Err(format!(
                "unknown egress {other:?} (expected one of: {})",
                Self::NAMES.join(", ")
            )),
        }
    }
}

/// How a sandbox receives its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialsDelivery {
    /// The keys in the container's environment: works with every tool, but they show in
    /// `docker inspect` and cannot be renewed, so a sandbox never outlives them.
    Env,
    /// The container-credentials protocol the AWS SDKs speak: a per-sandbox token, the
    /// daemon's endpoint serves (and renews) the keys, refused once the sandbox ends.
    Endpoint,
}

impl CredentialsDelivery {
    pub const NAMES: [&'static str; 2] = ["env", "endpoint"];

    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "env" => Ok(Self::Env),
            "endpoint" => Ok(Self::Endpoint),
            other => Err(format!(
                "unknown credentials delivery {other:?} (expected one of: {})",
                Self::NAMES.join(", ")
            )),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Env => "env",
            Self::Endpoint => "endpoint",
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

/// Sizes print the way people write them in the config: `512 MiB`.
pub fn serialize_size<S: Serializer>(size: &ByteSize, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&size.display().iec().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_twelve_digits() {
        assert!(AccountId::parse("012345678901").is_ok());
        assert!(AccountId::parse("12345678901").is_err());
        assert!(AccountId::parse("1234567890123").is_err());
        assert!(AccountId::parse("12345678901a").is_err());
    }

    #[test]
    fn regions_look_like_regions() {
        for ok in ["us-east-1", "eu-west-2", "us-gov-west-1", "ap-southeast-4"] {
            assert!(Region::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["us-east", "US-EAST-1", "useast1", "us_east_1", ""] {
            assert!(Region::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn role_arns_are_checked_and_taken_apart() {
        let arn =
            RoleArn::parse("arn:aws:iam::210987654321:role/ops/AutohealCrossAccountRole").unwrap();
        assert_eq!(arn.account_id().as_str(), "210987654321");
        assert_eq!(arn.role_name(), "AutohealCrossAccountRole");
        for bad in [
            "arn:aws:iam::21098765432:role/X",
            "arn:aws:iam::210987654321:user/X",
            "arn:aws:sts::210987654321:role/X",
            "AutohealCrossAccountRole",
            "arn:aws:iam::210987654321:role/",
        ] {
            assert!(RoleArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn auth_methods_name_the_choices() {
        assert_eq!(AuthMethod::parse("oidc").unwrap(), AuthMethod::Oidc);
        let err = AuthMethod::parse("keys").unwrap_err();
        assert!(err.contains("instance_role, oidc, environment"), "{err}");
    }
}
