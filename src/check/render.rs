//! Test Connection as text for people: one block per integration, one line per capability,
//! and every hint spelled out under what it explains.

use std::fmt::Write;

use super::{CheckReport, Status};

pub fn render_text(report: &CheckReport) -> String {
    let mut out = String::new();
    for integration in &report.integrations {
        let via = integration
            .role_arn
            .as_deref()
            .map(|r| format!(" -> {r}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{} ({}, {}{via})",
            integration.name, integration.region, integration.auth
        );
        let creds = &integration.credentials;
        if creds.status == "degraded" {
            let _ = writeln!(
                out,
                "  credentials  DEGRADED     {}",
                creds.error.as_deref().unwrap_or_default()
            );
            if let Some(hint) = &creds.hint {
                let _ = writeln!(out, "               fix: {hint}");
            }
        } else if creds.status != "ok" {
            let _ = writeln!(
                out,
                "  credentials  UNAVAILABLE  {}",
                creds.error.as_deref().unwrap_or_default()
            );
            if let Some(hint) = &creds.hint {
                let _ = writeln!(out, "               fix: {hint}");
            }
            out.push('\n');
            continue;
        } else {
            let _ = writeln!(
                out,
                "  credentials  ok           expire {}",
                creds.expires_at.as_deref().unwrap_or("never")
            );
        }
        if let Some(session) = &integration.sandbox_session {
            match session.status {
                Status::Allowed => {
                    let _ = writeln!(
                        out,
                        "  sandbox session ok        {} (own session per sandbox, tagged, narrowed)",
                        session.session_name
                    );
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "  sandbox session {}  {}",
                        if session.status == Status::Denied {
                            "DENIED"
                        } else {
                            "ERROR "
                        },
                        session.error.as_deref().unwrap_or_default()
                    );
                    if let Some(hint) = &session.hint {
                        let _ = writeln!(out, "               fix: {hint}");
                    }
                }
            }
        }
        for warning in &integration.warnings {
            let _ = writeln!(out, "  warning      {warning}");
        }
        match &integration.identity {
            Some(identity) => {
                let verdict = if integration.account_matches {
                    "ok"
                } else {
                    "WRONG ACCOUNT"
                };
                let _ = writeln!(out, "  identity     {verdict:<11}  {}", identity.arn);
            }
            None => {
                let _ = writeln!(out, "  identity     ERROR");
            }
        }
        if let Some(hint) = &integration.identity_hint {
            let _ = writeln!(out, "               fix: {hint}");
        }
        for capability in &integration.capabilities {
            let status = match capability.status {
                Status::Allowed => "allowed",
                Status::Denied => "DENIED ",
                Status::Error => "ERROR  ",
            };
            let _ = writeln!(
                out,
                "  {:<19} {status}  {:<34} {}",
                capability.capability, capability.action, capability.detail
            );
            if let Some(hint) = &capability.hint {
                let label = if capability.status == Status::Allowed {
                    "note"
                } else {
                    "fix"
                };
                let _ = writeln!(out, "               {label}: {hint}");
            }
        }
        out.push('\n');
    }
    out
}
