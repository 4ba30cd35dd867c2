//! `autoheal oidc keygen | publish --out DIR | token --integration NAME`: the issuer's keys,
//! its documents as static files, and a token for debugging trust policies.

use std::time::SystemTime;

use serde_json::json;

use crate::cli::{Cli, OidcCommand, Output};
use crate::config::{self, DEFAULT_OIDC_KEY_DIR};
use crate::exit_code::Exit;
use crate::oidc::{self, DEFAULT_TOKEN_LIFETIME, Issuer, KeyRing};
use crate::stdout::print_line;

pub fn run(cli: &Cli, command: &OidcCommand) -> Exit {
    let config = match super::load_config_and_log(cli) {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let now = SystemTime::now();
    match command {
        OidcCommand::Keygen { alg } => {
            let dir = config
                .oidc
                .as_ref()
                .map(|o| o.key_dir.clone())
                .unwrap_or_else(|| DEFAULT_OIDC_KEY_DIR.into());
            match KeyRing::generate(&dir, *alg, now) {
                Ok(key) => {
                    print_line(format!(
                        "created {} (kid {}): published from now, signs from {} on",
                        key.path.display(),
                        key.kid,
                        humantime::format_rfc3339_seconds(now + oidc::PUBLISH_LEAD)
                    ));
                    Exit::Ok
                }
                Err(err) => fail(err),
            }
        }
        OidcCommand::Publish { out } => match issuer(&config) {
            Ok(issuer) => match oidc::publish(&issuer, out, now) {
                Ok([discovery, jwks]) => {
                    print_line(format!(
                        "wrote {} and {}: serve them at {}/.well-known/ over HTTPS",
                        discovery.display(),
                        jwks.display(),
                        issuer.url
                    ));
                    Exit::Ok
                }
                Err(err) => fail(err),
            },
            Err(exit) => exit,
        },
        OidcCommand::Token {
            integration,
            sandbox,
            output,
        } => {
            if config.integration(integration).is_none() {
                eprintln!("autoheal oidc token: no integration named {integration:?}");
                return Exit::Usage;
            }
            let issuer = match issuer(&config) {
                Ok(issuer) => issuer,
                Err(exit) => return exit,
            };
            let subject = oidc::subject(integration, sandbox.as_deref());
            match issuer.token(&subject, DEFAULT_TOKEN_LIFETIME, now) {
                Ok(token) => {
                    match output.output {
                        Output::Json => print_line(json!({
                            "token": token.token,
                            "expires_at": humantime::format_rfc3339_seconds(token.expires_at).to_string(),
                        })),
                        Output::Text => print_line(&token.token),
                    }
                    Exit::Ok
                }
                Err(err) => fail(err),
            }
        }
    }
}

fn issuer(config: &config::Config) -> Result<Issuer, Exit> {
    let Some(oidc) = &config.oidc else {
        eprintln!(
            "autoheal oidc: the configuration has no [oidc] section (issuer, tenant_slug, key_dir)"
        );
        return Err(Exit::Config);
    };
    let issuer = Issuer::load(oidc).map_err(fail)?;
    if issuer.keys.is_empty() {
        return Err(fail(oidc::OidcError::NoKey {
            dir: oidc.key_dir.clone(),
        }));
    }
    Ok(issuer)
}

fn fail(err: oidc::OidcError) -> Exit {
    eprintln!("autoheal oidc: {err}");
    Exit::Unavailable
}
