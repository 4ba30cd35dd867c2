//! Turns the loose [`RawConfig`] into the typed [`Config`], collecting every problem.
//!
//! Each check records a [`ConfigIssue`] named by its key path and carries on, so one run of
//! `autoheal config check` shows the operator everything to fix, not just the first thing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use bytesize::ByteSize;
use regex::Regex;

use super::fields::{
    AccountId, AuthMethod, Cidr, CredentialsDelivery, Egress, LogFormat, Region, RoleArn,
    SessionMode,
};
use super::load::ConfigIssue;
use super::raw::{RawConfig, RawIntegration, Scalar, Unknown};
use super::secret::Secret;
use super::*;

/// Sandboxes are short-lived by design; a longer life also outlives any STS session.
const MAX_SANDBOX_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Local clients send a request in microseconds; longer only serves slow-loris clients.
const MAX_READ_TIMEOUT: Duration = Duration::from_secs(300);
/// An idle connection longer than this only holds a place other clients may need.
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Below this a container cannot even start the tool runtime.
const MIN_SANDBOX_MEMORY: ByteSize = ByteSize::mib(32);

static INTEGRATION_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$").expect("valid regex"));
static EXTERNAL_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_+=,.@:/-]+$").expect("valid regex"));
static TENANT_SLUG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9-]{0,62}$").expect("valid regex"));
static DOCKER_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$").expect("valid regex"));
/// An image reference as Docker writes it: `[registry[:port]/]name[:tag][@digest]`.
static IMAGE_REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9][a-z0-9._/-]*(:[0-9]+/[a-z0-9._/-]+)?(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$")
        .expect("valid regex")
});
/// Longest image reference Docker accepts.
const MAX_IMAGE_REFERENCE: usize = 255;

/// Collects issues while reading leaves.
#[derive(Default)]
struct Checker {
    issues: Vec<ConfigIssue>,
}

impl Checker {
    fn issue(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.issues.push(ConfigIssue {
            key: key.into(),
            message: message.into(),
        });
    }

    fn unknown(&mut self, prefix: &str, unknown: &Unknown, expected: &[&str]) {
        for key in unknown.keys() {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            self.issue(
                path,
                format!("unknown key (expected one of: {})", expected.join(", ")),
            );
        }
    }

    /// A string leaf; integers are accepted as their digits (env vars arrive untyped).
    fn text(&mut self, key: &str, value: Option<&Scalar>) -> Option<String> {
        match value? {
            Scalar::Text(s) => Some(s.clone()),
            Scalar::Int(i) => Some(i.to_string()),
            other => {
                self.issue(key, format!("expected a string, got {other}"));
                None
            }
        }
    }

    fn text_or(&mut self, key: &str, value: Option<&Scalar>, default: &str) -> String {
        self.text(key, value).unwrap_or_else(|| default.to_owned())
    }

    fn parsed<T>(
        &mut self,
        key: &str,
        value: Option<&Scalar>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.text(key, value)?;
        match parse(&text) {
            Ok(v) => Some(v),
            Err(message) => {
                self.issue(key, message);
                None
            }
        }
    }

    fn duration(&mut self, key: &str, value: Option<&Scalar>, default: Duration) -> Duration {
        let Some(text) = self.text(key, value) else {
            return default;
        };
        match humantime::parse_duration(&text) {
            Ok(d) if d.is_zero() => {
                self.issue(key, "must be longer than zero");
                default
            }
            Ok(d) => d,
            Err(err) => {
                self.issue(
                    key,
                    format!("not a duration: {text:?} ({err}; write it like \"15m\" or \"1h30m\")"),
                );
                default
            }
        }
    }

    fn size(&mut self, key: &str, value: Option<&Scalar>, default: ByteSize) -> ByteSize {
        let Some(text) = self.text(key, value) else {
            return default;
        };
        match text.parse::<ByteSize>() {
            Ok(size) => size,
            Err(err) => {
                self.issue(
                    key,
                    format!("not a size: {text:?} ({err}; write it like \"512MiB\" or \"1GiB\")"),
                );
                default
            }
        }
    }

    fn number(&mut self, key: &str, value: Option<&Scalar>, default: f64) -> f64 {
        match value {
            None => default,
            Some(Scalar::Float(x)) => *x,
            Some(Scalar::Int(i)) => *i as f64,
            Some(Scalar::Text(s)) if s.trim().parse::<f64>().is_ok() => {
                s.trim().parse().expect("checked")
            }
            Some(other) => {
                self.issue(key, format!("expected a number, got {other}"));
                default
            }
        }
    }

    /// A list of strings: a TOML array of strings, or one comma-separated string (env).
    fn list(&mut self, key: &str, value: Option<&Scalar>, default: &[&str]) -> Vec<String> {
        match value {
            None => default.iter().map(|s| (*s).to_owned()).collect(),
            Some(Scalar::Text(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(Scalar::Nested(serde_json::Value::Array(items)))
                if items.iter().all(serde_json::Value::is_string) =>
            {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            }
            Some(other) => {
                self.issue(
                    key,
                    format!("expected a list of strings such as [\"a\", \"b\"], got {other}"),
                );
                Vec::new()
            }
        }
    }

    /// A list of CIDR blocks such as `["169.254.169.254/32"]`.
    fn cidrs(&mut self, key: &str, value: Option<&Scalar>, default: &[&str]) -> Vec<Cidr> {
        let mut cidrs = Vec::new();
        for item in self.list(key, value, default) {
            match Cidr::parse(&item) {
                Ok(cidr) => cidrs.push(cidr),
                Err(message) => self.issue(key, message),
            }
        }
        cidrs
    }

    /// A whole number within `range`.
    fn bounded(
        &mut self,
        key: &str,
        value: Option<&Scalar>,
        default: u32,
        range: std::ops::RangeInclusive<u32>,
        why: &str,
    ) -> u32 {
        let n = self.count(key, value, default);
        if !range.contains(&n) {
            self.issue(
                key,
                format!(
                    "must be between {} and {}: {why}",
                    range.start(),
                    range.end()
                ),
            );
            return default;
        }
        n
    }

    fn count(&mut self, key: &str, value: Option<&Scalar>, default: u32) -> u32 {
        match value {
            None => default,
            Some(Scalar::Int(i)) if u32::try_from(*i).is_ok() => *i as u32,
            Some(Scalar::Text(s)) if s.trim().parse::<u32>().is_ok() => {
                s.trim().parse().expect("checked")
            }
            Some(other) => {
                self.issue(key, format!("expected a whole number ≥ 0, got {other}"));
                default
            }
        }
    }
}

/// Validates `raw`. `from_file` says whether a config file was read: without one, `serve`
/// runs the built-in `default` integration; with one, integrations must be listed.
pub fn validate(raw: RawConfig, from_file: bool) -> Result<Config, Vec<ConfigIssue>> {
    let mut c = Checker::default();
    c.unknown(
        "",
        &raw.unknown,
        &["server", "sandbox", "oidc", "log", "integration"],
    );

    let server = raw.server.unwrap_or_default();
    c.unknown(
        "server",
        &server.unknown,
        &[
            "listen",
            "api_token_file",
            "state_dir",
            "max_connections",
            "header_read_timeout",
            "body_read_timeout",
            "idle_timeout",
        ],
    );
    let listen = c
        .parsed("server.listen", server.listen.as_ref(), |s| {
            s.parse::<SocketAddr>().map_err(|_| {
                format!("not a listen address: {s:?} (expected IP:PORT such as \"127.0.0.1:8700\")")
            })
        })
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let api_token_file = PathBuf::from(c.text_or(
        "server.api_token_file",
        server.api_token_file.as_ref(),
        DEFAULT_API_TOKEN_FILE,
    ));
    let state_dir = PathBuf::from(c.text_or(
        "server.state_dir",
        server.state_dir.as_ref(),
        DEFAULT_STATE_DIR,
    ));
    if !state_dir.is_absolute() {
        c.issue(
            "server.state_dir",
            format!("must be an absolute path such as \"{DEFAULT_STATE_DIR}\""),
        );
    }
    let max_connections = c.bounded(
        "server.max_connections",
        server.max_connections.as_ref(),
        DEFAULT_MAX_CONNECTIONS,
        8..=65_536,
        "a few for health checks and clients, and within the process's open-file limit",
    );
    let header_read_timeout = c.duration(
        "server.header_read_timeout",
        server.header_read_timeout.as_ref(),
        DEFAULT_HEADER_READ_TIMEOUT,
    );
    let body_read_timeout = c.duration(
        "server.body_read_timeout",
        server.body_read_timeout.as_ref(),
        DEFAULT_BODY_READ_TIMEOUT,
    );
    let idle_timeout = c.duration(
        "server.idle_timeout",
        server.idle_timeout.as_ref(),
        DEFAULT_IDLE_TIMEOUT,
    );
    if idle_timeout > MAX_IDLE_TIMEOUT {
        c.issue(
            "server.idle_timeout",
            "must be at most 1h: an idle connection only holds a place other clients may need",
        );
    }
    for (key, value) in [
        ("server.header_read_timeout", header_read_timeout),
        ("server.body_read_timeout", body_read_timeout),
    ] {
        if value > MAX_READ_TIMEOUT {
            c.issue(
                key,
                "must be at most 5m: a longer wait only helps a client that holds connections open",
            );
        }
    }

    let sandbox = sandbox_section(&mut c, raw.sandbox.unwrap_or_default());
    let oidc = raw.oidc.map(|o| oidc_section(&mut c, o));

    let log = raw.log.unwrap_or_default();
    c.unknown("log", &log.unknown, &["format", "filter"]);
    let log = LogConfig {
        format: c
            .parsed("log.format", log.format.as_ref(), LogFormat::parse)
            .unwrap_or(LogFormat::Text),
        filter: c.text_or("log.filter", log.filter.as_ref(), "info"),
    };

    let integrations = match raw.integration {
        Some(list) if !list.is_empty() => {
            // Duplicates are found on the names as written, so a duplicate is reported even
            // when one of the pair has other problems.
            unique_names(&mut c, &list);
            list.into_iter()
                .enumerate()
                .filter_map(|(i, raw)| integration(&mut c, i, raw, oidc.is_some()))
                .collect()
        }
        _ if from_file => {
            c.issue(
                "integration",
                "no [[integration]] configured: add at least one (see docs/configuration.md)",
            );
            Vec::new()
        }
        _ => vec![default_integration()],
    };

    if c.issues.is_empty() {
        Ok(Config {
            server: ServerConfig {
                listen,
                api_token_file,
                state_dir,
                max_connections,
                header_read_timeout,
                body_read_timeout,
                idle_timeout,
            },
            sandbox,
            oidc,
            log,
            integrations,
        })
    } else {
        Err(c.issues)
    }
}

fn sandbox_section(c: &mut Checker, raw: super::raw::RawSandbox) -> SandboxConfig {
    c.unknown(
        "sandbox",
        &raw.unknown,
        &[
            "image",
            "network",
            "max_lifetime",
            "memory",
            "cpus",
            "pids_limit",
            "blocked_addresses",
            "max_running",
            "history",
            "idle_timeout",
            "images",
            "credentials",
            "egress",
            "egress_allow",
            "upstream_proxy",
            "subnet",
        ],
    );
    let image = c.text_or("sandbox.image", raw.image.as_ref(), DEFAULT_SANDBOX_IMAGE);
    check_image_reference(c, "sandbox.image", &image);
    let images = c.list("sandbox.images", raw.images.as_ref(), &[]);
    for (i, reference) in images.iter().enumerate() {
        check_image_reference(c, &format!("sandbox.images[{i}]"), reference);
    }
    let network = c.text_or(
        "sandbox.network",
        raw.network.as_ref(),
        DEFAULT_SANDBOX_NETWORK,
    );
    if !DOCKER_NAME.is_match(&network) {
        c.issue(
            "sandbox.network",
            format!("not a Docker network name: {network:?} (letters, digits, _ . -; or \"host\")"),
        );
    }
    let max_lifetime = c.duration(
        "sandbox.max_lifetime",
        raw.max_lifetime.as_ref(),
        DEFAULT_MAX_LIFETIME,
    );
    if max_lifetime > MAX_SANDBOX_LIFETIME {
        c.issue(
            "sandbox.max_lifetime",
            "must be at most 12h: sandboxes are short-lived and no STS session lasts longer",
        );
    }
    let memory = c.size(
        "sandbox.memory",
        raw.memory.as_ref(),
        DEFAULT_SANDBOX_MEMORY,
    );
    if memory < MIN_SANDBOX_MEMORY {
        c.issue("sandbox.memory", "must be at least 32MiB");
    }
    let cpus = c.number("sandbox.cpus", raw.cpus.as_ref(), DEFAULT_SANDBOX_CPUS);
    if !(cpus > 0.0 && cpus.is_finite()) {
        c.issue("sandbox.cpus", format!("must be more than 0, got {cpus}"));
    }
    let pids_limit = c.count(
        "sandbox.pids_limit",
        raw.pids_limit.as_ref(),
        DEFAULT_PIDS_LIMIT,
    );
    if pids_limit < 16 {
        c.issue(
            "sandbox.pids_limit",
            "must be at least 16: the tool runtime needs a few threads",
        );
    }
    let blocked_addresses = c.cidrs(
        "sandbox.blocked_addresses",
        raw.blocked_addresses.as_ref(),
        &DEFAULT_BLOCKED_ADDRESSES,
    );
    let max_running = c.bounded(
        "sandbox.max_running",
        raw.max_running.as_ref(),
        DEFAULT_MAX_RUNNING,
        1..=1024,
        "each sandbox may take sandbox.memory and sandbox.cpus of this host",
    );
    let history = c.bounded(
        "sandbox.history",
        raw.history.as_ref(),
        DEFAULT_HISTORY,
        1..=100_000,
        "finished sandboxes are kept in memory",
    );
    let idle_timeout = c.duration(
        "sandbox.idle_timeout",
        raw.idle_timeout.as_ref(),
        DEFAULT_SESSION_IDLE_TIMEOUT,
    );
    let credentials = c
        .parsed(
            "sandbox.credentials",
            raw.credentials.as_ref(),
            CredentialsDelivery::parse,
        )
        .unwrap_or(CredentialsDelivery::Env);
    let subnet = c
        .parsed("sandbox.subnet", raw.subnet.as_ref(), Cidr::parse)
        .and_then(|subnet| {
            if subnet.is_ipv4() && subnet.first_ipv4_host().is_some() {
                Some(subnet)
            } else {
                c.issue(
                    "sandbox.subnet",
                    format!("{subnet} is not an IPv4 network with room for a gateway and sandboxes (such as \"198.18.100.0/24\")"),
                );
                None
            }
        });
    let egress = c
        .parsed("sandbox.egress", raw.egress.as_ref(), Egress::parse)
        .unwrap_or(Egress::Aws);
    let mut egress_allow = Vec::new();
    for (i, text) in c
        .list("sandbox.egress_allow", raw.egress_allow.as_ref(), &[])
        .iter()
        .enumerate()
    {
        match super::fields::HostPattern::parse(text) {
            Ok(pattern) => egress_allow.push(pattern),
            Err(message) => c.issue(format!("sandbox.egress_allow[{i}]"), message),
        }
    }
    let upstream_proxy = c.parsed(
        "sandbox.upstream_proxy",
        raw.upstream_proxy.as_ref(),
        super::fields::UpstreamProxy::parse,
    );
    SandboxConfig {
        image,
        network,
        max_lifetime,
        memory,
        cpus,
        pids_limit,
        blocked_addresses,
        max_running: max_running as usize,
        history: history as usize,
        idle_timeout,
        images,
        credentials,
        subnet,
        egress,
        egress_allow,
        upstream_proxy,
    }
}

fn check_image_reference(c: &mut Checker, key: &str, reference: &str) {
    if reference.len() > MAX_IMAGE_REFERENCE || !IMAGE_REFERENCE.is_match(reference) {
        c.issue(
            key,
            format!(
                "not an image reference: {reference:?} (such as \"autoheal-sandbox:latest\" or \"registry.example:5000/team/tools:1.2\")"
            ),
        );
    }
}

fn oidc_section(c: &mut Checker, raw: super::raw::RawOidc) -> OidcConfig {
    c.unknown("oidc", &raw.unknown, &["issuer", "tenant_slug", "key_dir"]);
    let issuer = c
        .text("oidc.issuer", raw.issuer.as_ref())
        .unwrap_or_default();
    if let Err(message) = check_issuer(&issuer) {
        c.issue("oidc.issuer", message);
    }
    let tenant_slug = c
        .text("oidc.tenant_slug", raw.tenant_slug.as_ref())
        .unwrap_or_default();
    if !TENANT_SLUG.is_match(&tenant_slug) {
        c.issue(
            "oidc.tenant_slug",
            format!("not a tenant slug: {tenant_slug:?} (lower-case letters, digits and -)"),
        );
    }
    let key_dir =
        PathBuf::from(c.text_or("oidc.key_dir", raw.key_dir.as_ref(), DEFAULT_OIDC_KEY_DIR));
    OidcConfig {
        issuer,
        tenant_slug,
        key_dir,
    }
}

/// STS compares the issuer byte for byte, and fetches its documents over public HTTPS.
fn check_issuer(issuer: &str) -> Result<(), String> {
    if issuer.is_empty() {
        return Err("required: the issuer URL registered as the IAM OIDC provider".into());
    }
    let url = url::Url::parse(issuer).map_err(|e| format!("not a URL: {issuer:?} ({e})"))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(format!(
            "must be an https URL: {issuer:?} (STS only fetches OIDC documents over HTTPS)"
        ));
    }
    if issuer.ends_with('/') {
        return Err(format!(
            "must not end with '/': {issuer:?} (STS compares the issuer exactly)"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("must not have a query or fragment: {issuer:?}"));
    }
    Ok(())
}

fn integration(
    c: &mut Checker,
    index: usize,
    raw: RawIntegration,
    oidc_configured: bool,
) -> Option<IntegrationConfig> {
    let at = |key: &str| format!("integration[{index}].{key}");
    c.unknown(
        &format!("integration[{index}]"),
        &raw.unknown,
        &[
            "name",
            "account_id",
            "region",
            "auth",
            "role_arn",
            "external_id",
            "session_duration",
            "session",
            "endpoint_url",
        ],
    );
    let before = c.issues.len();

    let name = c.text(&at("name"), raw.name.as_ref());
    match &name {
        None => c.issue(at("name"), "required: a unique name such as \"production-aws\""),
        Some(n) if !INTEGRATION_NAME.is_match(n) => c.issue(
            at("name"),
            format!("not a valid name: {n:?} (1-64 letters, digits, . _ -; starting with a letter or digit)"),
        ),
        Some(_) => {}
    }
    let account_id = match raw.account_id.as_ref() {
        None => {
            c.issue(at("account_id"), "required: the 12-digit AWS account ID");
            None
        }
        Some(value) => c.parsed(&at("account_id"), Some(value), AccountId::parse),
    };
    let region = c
        .parsed(&at("region"), raw.region.as_ref(), Region::parse)
        .unwrap_or_else(|| Region::parse(DEFAULT_REGION).expect("valid default"));
    let auth = match raw.auth.as_ref() {
        None => {
            c.issue(
                at("auth"),
                format!("required: one of {}", AuthMethod::NAMES.join(", ")),
            );
            None
        }
        Some(value) => c.parsed(&at("auth"), Some(value), AuthMethod::parse),
    };
    let role_arn = c.parsed(&at("role_arn"), raw.role_arn.as_ref(), RoleArn::parse);
    let external_id = c.text(&at("external_id"), raw.external_id.as_ref());
    if let Some(id) = &external_id
        && !(EXTERNAL_ID.is_match(id) && (2..=1224).contains(&id.len()))
    {
        c.issue(
            at("external_id"),
            "must be 2-1224 characters of letters, digits and + = , . @ : / - _",
        );
    }
    let session_duration = c.duration(
        &at("session_duration"),
        raw.session_duration.as_ref(),
        DEFAULT_SESSION_DURATION,
    );
    let session = c.parsed(&at("session"), raw.session.as_ref(), SessionMode::parse);
    let endpoint_url = c.text(&at("endpoint_url"), raw.endpoint_url.as_ref());
    if let Some(endpoint) = &endpoint_url {
        match url::Url::parse(endpoint) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => c.issue(
                at("endpoint_url"),
                format!("not an http(s) URL: {endpoint:?} (such as \"http://127.0.0.1:5000\")"),
            ),
        }
    }

    match auth {
        Some(AuthMethod::Oidc) => {
            if raw.role_arn.is_none() {
                c.issue(
                    at("role_arn"),
                    "required with auth = \"oidc\": the role AssumeRoleWithWebIdentity assumes",
                );
            }
            if !oidc_configured {
                c.issue(
                    at("auth"),
                    "auth = \"oidc\" needs an [oidc] section (issuer, tenant_slug)",
                );
            }
        }
        Some(AuthMethod::Environment) if raw.role_arn.is_some() => c.issue(
            at("role_arn"),
            "not used with auth = \"environment\": use auth = \"instance_role\" to assume a role",
        ),
        _ => {}
    }
    if let (Some(role), Some(account)) = (&role_arn, &account_id)
        && role.account_id() != *account
    {
        c.issue(
            at("role_arn"),
            format!(
                "the role belongs to account {} but account_id is {account}: the assumed role must be in the account the integration reads (the instance may be in another)",
                role.account_id()
            ),
        );
    }
    if external_id.is_some() && raw.role_arn.is_none() {
        c.issue(
            at("external_id"),
            "only applies when role_arn is set (it is sent with sts:AssumeRole)",
        );
    }
    if session == Some(SessionMode::PerSandbox) && raw.role_arn.is_none() {
        c.issue(
            at("session"),
            "per_sandbox needs role_arn: a session per sandbox is an sts:AssumeRole of a role; \
             without role_arn sandboxes receive the instance profile's own credentials, which \
             cannot be narrowed. Set role_arn to a read-only role (the same account is fine)",
        );
    }
    if raw.session_duration.is_some() {
        session_duration_rules(
            c,
            &at("session_duration"),
            session_duration,
            auth,
            raw.role_arn.is_some(),
        );
    }

    if c.issues.len() > before {
        return None;
    }
    Some(IntegrationConfig {
        name: name?,
        account_id: Some(account_id?),
        region,
        auth: auth?,
        external_id: external_id.map(Secret::new),
        session: session.unwrap_or(if role_arn.is_some() {
            SessionMode::PerSandbox
        } else {
            SessionMode::Shared
        }),
        role_arn,
        session_duration,
        endpoint_url,
    })
}

fn session_duration_rules(
    c: &mut Checker,
    key: &str,
    duration: Duration,
    auth: Option<AuthMethod>,
    has_role: bool,
) {
    if !has_role {
        c.issue(key, "only applies when role_arn is set");
        return;
    }
    if duration < MIN_SESSION {
        c.issue(key, "must be at least 15m: the shortest session STS grants");
    }
    match auth {
        Some(AuthMethod::InstanceRole) if duration > ROLE_CHAINING_MAX_SESSION => c.issue(
            key,
            "must be at most 1h: assuming a role from the instance role is role chaining, which STS caps at one hour",
        ),
        Some(AuthMethod::Oidc) if duration > WEB_IDENTITY_MAX_SESSION => c.issue(
            key,
            "must be at most 12h: the longest session a role can allow",
        ),
        _ => {}
    }
}

/// Every name used twice, as written (`integration[i].name`).
fn unique_names(c: &mut Checker, list: &[RawIntegration]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, raw) in list.iter().enumerate() {
        let name = match &raw.name {
            Some(Scalar::Text(name)) => name.clone(),
            Some(Scalar::Int(n)) => n.to_string(),
            _ => continue,
        };
        if let Some(first) = seen.get(&name) {
            c.issue(
                format!("integration[{i}].name"),
                format!(
                    "duplicate name {name:?} (also used by integration[{first}]); names must be unique"
                ),
            );
        } else {
            seen.insert(name, i);
        }
    }
}

/// The integration of a host (or sandbox) without a config file: the SDK's default chain,
/// in the environment's region (`AWS_REGION`, `AWS_DEFAULT_REGION`) or us-east-1.
fn default_integration() -> IntegrationConfig {
    let region = ambient_region();
    IntegrationConfig {
        name: DEFAULT_INTEGRATION_NAME.to_owned(),
        // Unknown without a config: Test Connection reports whichever account it finds.
        account_id: None,
        region,
        auth: AuthMethod::Environment,
        role_arn: None,
        external_id: None,
        session: SessionMode::Shared,
        session_duration: DEFAULT_SESSION_DURATION,
        endpoint_url: None,
    }
}
