//! autoheal: the self-hosted AWS side of the Autoheal incident-investigation agent.
//!
//! The modules follow the parts of the design: `config` (settings, validated at once) sits at
//! the bottom and depends on nothing of ours; `commands` and `cli` sit on top.
#![forbid(unsafe_code)]

pub mod api;
pub mod aws_error;
pub mod aws_sdk;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod connections;
pub mod credentials;
pub mod egress;
pub mod exit_code;
pub mod lifecycle;
pub mod logging;
pub mod mcp;
pub mod oidc;
pub mod sandbox;
pub mod stdout;
pub mod tools;
