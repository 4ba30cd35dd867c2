//! `autoheal sandbox run`: start a sandbox through the daemon's API, wait for it, print its
//! output and exit with its exit code.

use std::io::Write;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::api::token;
use crate::cli::{Cli, SandboxRunArgs};
use crate::exit_code::Exit;

pub async fn run(cli: &Cli, args: &SandboxRunArgs) -> Exit {
    let config = match super::load_config_and_log(cli) {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let token = match token::read_for_client(&config.server.api_token_file) {
        Ok(token) => token,
        Err(err) => {
            eprintln!("autoheal sandbox run: {err}");
            return Exit::NoPerm;
        }
    };
    let mut body = json!({"integration": args.integration, "command": args.command});
    if let Some(image) = &args.image {
        body["image"] = json!(image);
    }
    if let Some(timeout) = args.timeout {
        body["timeout"] = json!(timeout.as_secs().max(1));
    }
    if !args.capability.is_empty() {
        body["capabilities"] = json!(args.capability);
    }
    if let Some(credentials) = args.credentials {
        body["credentials"] = json!(credentials.as_str());
    }
    let address = client_address(config.server.listen);
    let request = hyper::Request::post(format!("http://{address}/v1/sandboxes?wait=true"))
        .header("authorization", format!("Bearer {}", token.expose()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid request");
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = match client.request(request).await {
        Ok(response) => response,
        Err(err) => {
            eprintln!(
                "autoheal sandbox run: the daemon at {address} did not answer ({err}); is `autoheal serve` running?"
            );
            return Exit::Unavailable;
        }
    };
    let status = response.status().as_u16();
    let bytes = match response.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            eprintln!("autoheal sandbox run: the answer was cut off: {err}");
            return Exit::Unavailable;
        }
    };
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status != 200 {
        let message = answer["error"]["message"]
            .as_str()
            .unwrap_or("no error message");
        eprintln!("autoheal sandbox run: {message} (HTTP {status})");
        return match status {
            400 => Exit::DataErr,
            401 | 403 => Exit::NoPerm,
            404 => Exit::Usage,
            _ => Exit::Unavailable,
        };
    }
    let _ = std::io::stdout().write_all(answer["stdout"].as_str().unwrap_or_default().as_bytes());
    let _ = std::io::stderr().write_all(answer["stderr"].as_str().unwrap_or_default().as_bytes());
    for (flag, stream) in [
        ("stdout_truncated", "stdout"),
        ("stderr_truncated", "stderr"),
    ] {
        if answer[flag] == true {
            eprintln!("autoheal sandbox run: the sandbox's {stream} was cut at the output cap");
        }
    }
    if let Some(note) = answer["deadline_note"].as_str() {
        eprintln!("autoheal sandbox run: {note}");
    }
    if answer["timed_out"] == true {
        eprintln!(
            "autoheal sandbox run: the sandbox was stopped at its deadline ({})",
            answer["deadline"]
        );
    }
    let code = answer["exit_code"].as_i64().unwrap_or(1);
    Exit::Passthrough(code.clamp(0, 255) as u8)
}

/// Where a client on this host reaches the API: a wildcard listen address means loopback.
fn client_address(listen: SocketAddr) -> SocketAddr {
    let mut address = listen;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    address
}
