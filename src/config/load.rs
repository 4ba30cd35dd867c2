//! Reads the configuration sources in order: built-in defaults < TOML file < environment.
//!
//! Environment variables are `AUTOHEAL_<SECTION>__<KEY>` (`__` nests), e.g.
//! `AUTOHEAL_SERVER__LISTEN=0.0.0.0:8700`. Variables without `__` (`AUTOHEAL_API_TOKEN`,
//! and the `AUTOHEAL_INTEGRATION`/`AUTOHEAL_ACCOUNT_ID` a sandbox receives) are not config keys
//! and are left alone.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};

use super::Config;
use super::raw::RawConfig;
use super::validate::validate;

/// Read when `--config` is not given; its absence is fine (built-in defaults apply).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/autoheal/autoheal.toml";
const ENV_PREFIX: &str = "AUTOHEAL_";

/// One problem with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Key path, such as `integration[1].role_arn`.
    pub key: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why no configuration could be had. Every variant is an exit-78 configuration error.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} does not exist (create it, or leave --config out to run on built-in defaults)", path.display())]
    NotFound { path: PathBuf },
    #[error(
        "cannot read config file {}: permission denied. Operators read it through its group \
         ({group}; install.sh makes it 0640 root:autoheal): join that group (sudo usermod -aG \
         {group} $USER, then log in again) or use sudo",
        path.display()
    )]
    NotPermitted {
        path: PathBuf,
        /// The file's group, by name where /etc/group has it.
        group: String,
    },
    #[error("cannot read config file {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse the configuration from {origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error("{} in the configuration from {origin}:\n{}", count(issues.len()), list(issues))]
    Invalid {
        origin: String,
        issues: Vec<ConfigIssue>,
    },
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 problem".into()
    } else {
        format!("{n} problems")
    }
}

fn list(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(|i| format!("  - {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads and validates the configuration. `path` is the `--config` option: when given, the
/// file must exist; when not, [`DEFAULT_CONFIG_PATH`] is read if present.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let (file, explicit) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let contents = match std::fs::read_to_string(&file) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !explicit => None,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::NotFound { path: file });
        }
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            let group = file_group(&file);
            return Err(ConfigError::NotPermitted { path: file, group });
        }
        Err(source) => return Err(ConfigError::Unreadable { path: file, source }),
    };
    let origin = match &contents {
        Some(_) => format!("{} and {ENV_PREFIX}* variables", file.display()),
        None => format!("built-in defaults and {ENV_PREFIX}* variables"),
    };
    let mut figment = Figment::new();
    if let Some(text) = &contents {
        figment = figment.merge(Toml::string(text));
    }
    figment = figment.merge(config_env());
    extract(figment, contents.is_some(), origin)
}

/// The name of `path`'s group (its number when /etc/group does not name it) — the group
/// operators join to read the configuration (`autoheal` when install.sh wrote it).
fn file_group(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(gid) = std::fs::metadata(path).map(|m| m.gid()) else {
        return "autoheal".into();
    };
    std::fs::read_to_string("/etc/group")
        .ok()
        .and_then(|groups| {
            groups.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?;
                (id.parse() == Ok(gid)).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| gid.to_string())
}

/// Validates TOML text alone (no environment): for tests and for checking a config
/// before it replaces the running one.
pub fn load_from_str(toml: &str) -> Result<Config, ConfigError> {
    extract(
        Figment::new().merge(Toml::string(toml)),
        true,
        "the given text".into(),
    )
}

/// `AUTOHEAL_<SECTION>__<KEY>` variables; only nested ones are configuration.
fn config_env() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|key| key.as_str().contains("__"))
        .split("__")
}

fn extract(figment: Figment, from_file: bool, origin: String) -> Result<Config, ConfigError> {
    let raw: RawConfig = figment.extract().map_err(|err| ConfigError::Syntax {
        origin: origin.clone(),
        message: err
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    })?;
    validate(raw, from_file).map_err(|issues| ConfigError::Invalid { origin, issues })
}
