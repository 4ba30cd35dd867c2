//! `autoheal policy permissions|trust-oidc|trust-cross-account`: the IAM documents of the
//! setup guide, printed as JSON ready for `aws iam put-role-policy` / `create-role`.

use crate::cli::{Cli, PolicyArgs, PolicyDocument};
use crate::config::{self, AccountId, RoleArn};
use crate::exit_code::Exit;
use crate::stdout::print_line;
use crate::tools::policy;

pub fn run(cli: &Cli, args: &PolicyArgs) -> Exit {
    match document(cli, args) {
        Ok(document) => {
            print_line(serde_json::to_string_pretty(&document).expect("a policy serializes"));
            Exit::Ok
        }
        Err(message) => {
            eprintln!("autoheal policy: {message}");
            Exit::Usage
        }
    }
}

fn document(cli: &Cli, args: &PolicyArgs) -> Result<serde_json::Value, String> {
    match args.document {
        PolicyDocument::Permissions => Ok(policy::permissions(&args.capability)),
        PolicyDocument::TrustOidc => {
            let account = args
                .account
                .as_deref()
                .ok_or("trust-oidc needs --account ID (the account of the role)")?;
            let account = AccountId::parse(account).map_err(|e| format!("--account: {e}"))?;
            // The issuer and audience default to the configuration's [oidc] section.
            let oidc = config::load(cli.config.as_deref())
                .ok()
                .and_then(|c| c.oidc);
            let issuer = args
                .issuer
                .clone()
                .or_else(|| oidc.as_ref().map(|o| o.issuer.clone()))
                .ok_or("trust-oidc needs --issuer URL (or oidc.issuer in the config)")?;
            if !issuer.starts_with("https://") || issuer.ends_with('/') {
                return Err(format!(
                    "--issuer {issuer:?}: must be https:// with no trailing slash, exactly as tokens carry it"
                ));
            }
            let audience = args
                .audience
                .clone()
                .or_else(|| oidc.as_ref().map(|o| o.audience()))
                .ok_or("trust-oidc needs --audience AUD (or oidc.tenant_slug in the config)")?;
            Ok(policy::trust_oidc(
                account.as_str(),
                &issuer,
                &audience,
                args.integration.as_deref(),
            ))
        }
        PolicyDocument::TrustCrossAccount => {
            let source = args
                .source_role
                .as_deref()
                .ok_or("trust-cross-account needs --source-role ARN (the role autoheal runs as)")?;
            let source = RoleArn::parse(source).map_err(|e| format!("--source-role: {e}"))?;
            Ok(policy::trust_cross_account(
                source.as_str(),
                args.external_id.as_deref(),
            ))
        }
        PolicyDocument::AssumeRole => {
            if args.role_arn.is_empty() {
                return Err(
                    "assume-role needs --role-arn ARN (the role the instance role may assume)"
                        .into(),
                );
            }
            let roles = args
                .role_arn
                .iter()
                .map(|arn| RoleArn::parse(arn).map_err(|e| format!("--role-arn: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let arns: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Ok(policy::assume_role(&arns))
        }
    }
}
