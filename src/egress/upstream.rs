//! The egress proxy's way out through an upstream HTTP proxy (`sandbox.upstream_proxy`): a
//! corporate proxy, or the only way out of a VPC without NAT. A tunnel the allowlist let
//! through is asked of the upstream with `CONNECT host:port`; its `200` opens it, anything
//! else is an answer the sandbox gets as a 502 with what the upstream said.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::allowlist::Destination;
use crate::config::UpstreamProxy;

/// Connecting to the upstream, and its answer to `CONNECT`, each within this.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Response heads larger than this are refused.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A tunnel to `destination` through `upstream`, or why not (for a 502).
pub async fn connect_through(
    upstream: &UpstreamProxy,
    destination: &Destination,
) -> Result<TcpStream, String> {
    let failed = |what: String| format!("upstream proxy {upstream}: {what}");
    let connecting = TcpStream::connect((upstream.host.as_str(), upstream.port));
    let mut stream = tokio::time::timeout(UPSTREAM_TIMEOUT, connecting)
        .await
        .map_err(|_| failed("connecting timed out".into()))?
        .map_err(|e| failed(format!("cannot connect ({e})")))?;
    let _ = stream.set_nodelay(true);
    let authority = match destination.host.contains(':') {
        true => format!("[{}]:{}", destination.host, destination.port),
        false => format!("{}:{}", destination.host, destination.port),
    };
    let head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    let answered = async {
        stream.write_all(head.as_bytes()).await?;
        read_head(&mut stream).await
    };
    let answer = tokio::time::timeout(UPSTREAM_TIMEOUT, answered)
        .await
        .map_err(|_| failed(format!("no answer to CONNECT {authority} in time")))?
        .map_err(|e| failed(format!("CONNECT {authority} failed ({e})")))?;
    let status_line = answer.lines().next().unwrap_or_default().trim().to_owned();
    let mut words = status_line.split_whitespace();
    match (words.next(), words.next()) {
        (Some(version), Some(status))
            if version.starts_with("HTTP/1.") && status.starts_with('2') =>
        {
            Ok(stream)
        }
        _ => Err(failed(format!(
            "answered CONNECT {authority} with {status_line:?}"
        ))),
    }
}

/// Reads a response head up to its blank line, a byte at a time (the tunnel's first bytes
/// must stay unread), at most [`MAX_HEAD_BYTES`].
pub async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD_BYTES {
            return Err(std::io::Error::other(format!(
                "a response head over {MAX_HEAD_BYTES} bytes"
            )));
        }
        head.push(stream.read_u8().await?);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
