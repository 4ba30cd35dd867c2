//! The egress proxy: the one way out of a bridge sandbox.
//!
//! Sandboxes get `HTTPS_PROXY`/`HTTP_PROXY` pointing here (the AWS SDKs honour them). A
//! request is tied to its sandbox by its source address (registered when the sandbox
//! starts); an address that is not a running sandbox's is refused. Then:
//! - `CONNECT host:port`: allowed by the sandbox's [`Allowlist`] → the proxy resolves the
//!   name itself, drops addresses a sandbox must never reach (loopback, link-local such as
//!   IMDS, the blocked addresses, this host's own — unless the name is the integration's
//!   `endpoint_url`), connects, answers 200 and copies bytes both ways. No TLS is terminated,
//!   nothing is read or kept of the payload;
//! - an absolute-form request (`GET http://host:port/…`, any method): only for an `http://`
//!   `endpoint_url` (an emulator), forwarded without hop-by-hop headers;
//! - anything else, or a refusal: `403` with a one-line reason, so the agent's tool call
//!   fails saying why.
//!
//! Every decision is counted (per sandbox and in `/metrics`); refusals are kept in the
//! sandbox's record (at most [`REFUSALS_KEPT`]) and logged while that list has room, so a
//! hostile sandbox cannot flood the log. A destination that is allowed but cannot be reached
//! answers 502 (not a refusal). A sandbox's tunnels are closed when it ends.
//! Connections — tunnels included: a tunnel keeps its connection's slot — are bounded like
//! the API's (`crate::connections`): at most [`MAX_CONNECTIONS`] in all and
//! [`MAX_TUNNELS_PER_SANDBOX`] tunnels per sandbox; a tunnel counts as busy (never evicted
//! as idle) and lives at most as long as its sandbox.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream, lookup_host};
use tokio::sync::watch;

use super::allowlist::{Allowlist, Destination};
use super::firewall_log::{FirewallLog, Refused};
use super::upstream;
use crate::config::{Cidr, UpstreamProxy};
use crate::connections::{
    AcceptBackoff, Admission, ConnectionTable, Registration, RequestGuard, Tracked,
};

/// Open connections across every sandbox (tunnels included): an SDK keeps a handful per
/// sandbox, and at most 1024 sandboxes run; beyond it the idlest is closed.
pub const MAX_CONNECTIONS: usize = 4096;
/// Refusals kept (and logged) per sandbox; later ones are counted only.
pub const REFUSALS_KEPT: usize = 32;
/// Open tunnels per sandbox: an SDK pools a few connections per endpoint, the agent's tools
/// call six services; 256 is far beyond that and keeps one sandbox from taking every slot.
pub const MAX_TUNNELS_PER_SANDBOX: usize = 256;
/// A plain-HTTP exchange with the emulator, start to end of the answer's head.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);
/// Headers that concern one hop only, never forwarded.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];
/// A request head must arrive within this of its first byte.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection without a request (not a tunnel) is closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Connecting to an allowed destination: AWS answers in milliseconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Request heads larger than this are refused.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// With an upstream proxy, how long this host tries to resolve a name to check its
/// addresses (a host behind a corporate proxy may have no DNS for outside names: then the
/// check is skipped and the upstream decides).
const UPSTREAM_RESOLVE_CHECK: Duration = Duration::from_secs(1);
/// A sandbox's address is known only once its container runs, and its first request may
/// come sooner: an unknown address waits this long for its sandbox's admission.
const ADMISSION_WAIT: Duration = Duration::from_secs(2);

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// One destination a sandbox was refused, and how many times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub host: String,
    pub port: u16,
    pub reason: String,
    /// Refusals of this same destination for this same reason (a retrying client, a
    /// resolver's repeated queries count here, not as new entries).
    pub count: u64,
}

/// What one sandbox may reach, and what it tried.
#[derive(Debug)]
pub struct SandboxEgress {
    sandbox_id: String,
    allowlist: Allowlist,
    allowed: AtomicU64,
    refused_total: AtomicU64,
    refused: Mutex<Vec<Refusal>>,
    /// Tunnels open now.
    tunnels: std::sync::atomic::AtomicUsize,
    /// Becomes true when the sandbox ends: its tunnels close.
    ended: watch::Sender<bool>,
}

impl SandboxEgress {
    /// The refusals kept (the first [`REFUSALS_KEPT`]).
    pub fn refusals(&self) -> Vec<Refusal> {
        self.refused.lock().expect("refusals lock").clone()
    }

    /// Connections allowed and refused so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.allowed.load(Ordering::Relaxed),
            self.refused_total.load(Ordering::Relaxed),
        )
    }

    fn allow(&self, host: &str, port: u16) {
        self.allowed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(sandbox = %self.sandbox_id, %host, port, decision = "allowed", "egress");
    }

    fn refuse(&self, host: &str, port: u16, reason: &str) {
        self.refused_total.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.refused.lock().expect("refusals lock");
        let same = |r: &&mut Refusal| r.host == host && r.port == port && r.reason == reason;
        if let Some(seen) = kept.iter_mut().find(same) {
            seen.count += 1;
        } else if kept.len() < REFUSALS_KEPT {
            tracing::warn!(sandbox = %self.sandbox_id, %host, port, decision = "refused", %reason, "egress");
            kept.push(Refusal {
                host: host.to_owned(),
                port,
                reason: reason.to_owned(),
                count: 1,
            });
        }
    }
}

/// The proxy's sandboxes, listeners and totals.
#[derive(Debug)]
pub struct EgressProxy {
    by_address: Mutex<HashMap<IpAddr, Arc<SandboxEgress>>>,
    /// Wakes requests waiting for their sandbox's admission.
    admitted: tokio::sync::Notify,
    listening: tokio::sync::Mutex<HashMap<IpAddr, SocketAddr>>,
    table: Arc<ConnectionTable>,
    /// Addresses no destination may resolve to (`sandbox.blocked_addresses`).
    blocked: Vec<Cidr>,
    /// Where AWS tunnels go instead of straight out (`sandbox.upstream_proxy`).
    upstream: Option<UpstreamProxy>,
    allowed: AtomicU64,
    refused: AtomicU64,
    /// Packets the fence refused and told (at most its rate limit a second).
    firewall_refused: AtomicU64,
    /// The NFLOG group the firewall tells its refusals on (`None`: it cannot tell them).
    firewall_log: tokio::sync::OnceCell<Option<u16>>,
    /// Dropped with the proxy: ends the firewall log's reader.
    alive: watch::Sender<()>,
    /// Set when the host's firewall refused the NFLOG rules.
    firewall_log_stopped: std::sync::atomic::AtomicBool,
}

impl EgressProxy {
    pub fn new(blocked: Vec<Cidr>, upstream: Option<UpstreamProxy>) -> Arc<Self> {
        Arc::new(Self {
            by_address: Mutex::new(HashMap::new()),
            admitted: tokio::sync::Notify::new(),
            listening: tokio::sync::Mutex::new(HashMap::new()),
            table: ConnectionTable::new(MAX_CONNECTIONS),
            blocked,
            upstream,
            allowed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            firewall_refused: AtomicU64::new(0),
            firewall_log: tokio::sync::OnceCell::new(),
            alive: watch::channel(()).0,
            firewall_log_stopped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Fences are written without NFLOG rules from now on (the host's firewall refused
    /// them).
    pub fn stop_firewall_log(&self) {
        self.firewall_log_stopped.store(true, Ordering::Relaxed);
    }

    /// The NFLOG group the egress fence should log its refusals to, reading it from now on
    /// (the first call binds it); `None` when this process cannot read one — the fence
    /// refuses the same, unreported, and the daemon says so once.
    pub async fn firewall_log_group(self: &Arc<Self>) -> Option<u16> {
        if self.firewall_log_stopped.load(Ordering::Relaxed) {
            return None;
        }
        *self
            .firewall_log
            .get_or_init(|| async {
                match FirewallLog::bind().await {
                    Ok(log) => {
                        let group = log.group();
                        let proxy = Arc::downgrade(self);
                        let mut alive = self.alive.subscribe();
                        tokio::spawn(log.run(
                            async move { while alive.changed().await.is_ok() {} },
                            move |refused| {
                                if let Some(proxy) = proxy.upgrade() {
                                    proxy.refused_by_firewall(refused);
                                }
                            },
                        ));
                        tracing::info!(group, "firewall refusals are read from NFLOG");
                        Some(group)
                    }
                    Err(reason) => {
                        tracing::warn!(%reason, "refusals at the egress fence will not be reported per sandbox (the fence refuses the same); to have them, give the daemon CAP_NET_ADMIN and the kernel nfnetlink_log");
                        None
                    }
                }
            })
            .await
    }

    /// A packet the fence refused: counted, and kept in its sandbox's record.
    fn refused_by_firewall(&self, refused: Refused) {
        self.firewall_refused.fetch_add(1, Ordering::Relaxed);
        let sandbox = self.lock().get(&IpAddr::V4(refused.source)).cloned();
        let reason = format!(
            "refused by the firewall ({}): a sandbox reaches only the egress proxy",
            refused.protocol
        );
        match sandbox {
            Some(egress) => egress.refuse(&refused.destination.to_string(), refused.port, &reason),
            None => {
                tracing::debug!(source = %refused.source, destination = %refused.destination, port = refused.port, "egress fence refused a packet from an address that is no running sandbox's")
            }
        }
    }

    /// Connections allowed and refused since the daemon started (`/metrics`).
    pub fn totals(&self) -> (u64, u64) {
        (
            self.allowed.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    /// Packets the egress fence refused and told, since the daemon started (`/metrics`).
    pub fn firewall_refusals(&self) -> u64 {
        self.firewall_refused.load(Ordering::Relaxed)
    }

    /// Lets the sandbox at `address` out through the proxy, as far as `allowlist` goes.
    pub fn admit(
        &self,
        sandbox_id: &str,
        address: IpAddr,
        allowlist: Allowlist,
    ) -> Arc<SandboxEgress> {
        let egress = Arc::new(SandboxEgress {
            sandbox_id: sandbox_id.to_owned(),
            allowlist,
            allowed: AtomicU64::new(0),
            refused_total: AtomicU64::new(0),
            refused: Mutex::new(Vec::new()),
            tunnels: std::sync::atomic::AtomicUsize::new(0),
            ended: watch::channel(false).0,
        });
        if let Some(previous) = self.lock().insert(address, egress.clone()) {
            tracing::warn!(%address, previous = %previous.sandbox_id, sandbox = %sandbox_id, "a sandbox address was still admitted for an ended sandbox; replaced");
            previous.ended.send_replace(true);
        }
        self.admitted.notify_waiters();
        egress
    }

    /// The sandbox at `address`, waiting up to [`ADMISSION_WAIT`] for its admission.
    async fn sandbox_at(&self, address: IpAddr) -> Option<Arc<SandboxEgress>> {
        let deadline = tokio::time::Instant::now() + ADMISSION_WAIT;
        loop {
            // Registered before the look-up, so an admission in between is not missed.
            let admitted = self.admitted.notified();
            if let Some(egress) = self.lock().get(&address).cloned() {
                return Some(egress);
            }
            if tokio::time::timeout_at(deadline, admitted).await.is_err() {
                return None;
            }
        }
    }

    /// The sandbox `egress` (at `address`) has ended: nothing more goes out for it, its
    /// tunnels close. A newer sandbox given the same address meanwhile keeps its admission.
    pub fn release(&self, address: IpAddr, egress: &Arc<SandboxEgress>) {
        let mut by_address = self.lock();
        if by_address
            .get(&address)
            .is_some_and(|current| Arc::ptr_eq(current, egress))
        {
            by_address.remove(&address);
        }
        egress.ended.send_replace(true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Arc<SandboxEgress>>> {
        self.by_address.lock().expect("egress sandboxes lock")
    }

    /// The socket address it serves on `ip` (a port the kernel chose), listening first when
    /// it does not yet.
    pub async fn listen_on(self: &Arc<Self>, ip: IpAddr) -> std::io::Result<SocketAddr> {
        let mut listening = self.listening.lock().await;
        if let Some(address) = listening.get(&ip) {
            return Ok(*address);
        }
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let address = listener.local_addr()?;
        tracing::info!(%address, "egress proxy listening for sandboxes");
        listening.insert(ip, address);
        let proxy = self.clone();
        tokio::spawn(async move { proxy.accept(listener).await });
        Ok(address)
    }

    async fn accept(self: Arc<Self>, listener: TcpListener) {
        let mut backoff = AcceptBackoff::default();
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(pair) => pair,
                Err(err) => {
                    let pause = backoff.failed();
                    tracing::warn!(error = %err, "egress proxy: accept failed; pausing");
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            backoff.succeeded();
            let _ = stream.set_nodelay(true);
            let Admission::Admitted(registration) = self.table.admit() else {
                tracing::warn!(%peer, "egress proxy: every connection is busy; refused one");
                continue;
            };
            // Shared with a tunnel the connection becomes: its slot is held until both end.
            let registration = Arc::new(registration);
            let proxy = self.clone();
            let slot = registration.clone();
            let service = service_fn(move |request| {
                let proxy = proxy.clone();
                let slot = slot.clone();
                let busy = slot.connection.request();
                async move {
                    let response = proxy.handle(peer.ip(), request, slot).await;
                    drop(busy);
                    Ok::<_, Infallible>(response)
                }
            });
            let tracked = Tracked::new(stream, registration.connection.clone());
            // half_close: a client that shuts its sending side after the request (nc, some
            // SDK clients) still gets its answer.
            let served = http1::Builder::new()
                .half_close(true)
                .header_read_timeout(None)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(tracked), service)
                .with_upgrades();
            tokio::spawn(async move {
                tokio::select! {
                    _ = served => {}
                    () = registration.connection.evicted() => {}
                    () = registration.connection.timed_out(HEADER_READ_TIMEOUT, IDLE_TIMEOUT) => {}
                }
                drop(registration);
            });
        }
    }

    async fn handle(
        &self,
        peer: IpAddr,
        request: Request<Incoming>,
        slot: Arc<Registration>,
    ) -> Response<ProxyBody> {
        let Some(egress) = self.sandbox_at(peer).await else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return refuse(
                StatusCode::FORBIDDEN,
                "egress refused: this address is not a running sandbox's",
            );
        };
        let (host, port) = match target(&request) {
            Ok(target) => target,
            Err(reason) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                egress.refuse("-", 0, &reason);
                return refuse(StatusCode::BAD_REQUEST, &reason);
            }
        };
        let tunnel = request.method() == Method::CONNECT;
        let decided = if tunnel {
            egress.allowlist.tunnel(&host, port)
        } else {
            egress.allowlist.plain(&host, port)
        };
        let decided = decided.and_then(|destination| {
            if tunnel && egress.tunnels.load(Ordering::SeqCst) >= MAX_TUNNELS_PER_SANDBOX {
                Err(format!(
                    "this sandbox has {MAX_TUNNELS_PER_SANDBOX} tunnels open already"
                ))
            } else {
                Ok(destination)
            }
        });
        let stream = match decided {
            Ok(destination) => self.connect(&destination).await,
            Err(reason) => Err(Unreached::Refused(reason)),
        };
        let stream = match stream {
            Ok(stream) => stream,
            Err(Unreached::Refused(reason)) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                egress.refuse(&host, port, &reason);
                return refuse(StatusCode::FORBIDDEN, &format!("egress refused: {reason}"));
            }
            Err(Unreached::Failed(reason)) => {
                tracing::debug!(sandbox = %egress.sandbox_id, %host, port, %reason, "egress: an allowed destination could not be reached");
                return refuse(StatusCode::BAD_GATEWAY, &format!("egress: {reason}"));
            }
        };
        self.allowed.fetch_add(1, Ordering::Relaxed);
        egress.allow(&host, port);
        if tunnel {
            egress.tunnels.fetch_add(1, Ordering::SeqCst);
            // Busy from now on: tunnel bytes are no slow request head, nor an idle keep-alive.
            let busy = slot.connection.request();
            tokio::spawn(relay(request, stream, egress, (slot, busy)));
            Response::new(empty())
        } else {
            match tokio::time::timeout(FORWARD_TIMEOUT, forward(request, stream)).await {
                Ok(response) => response,
                Err(_) => refuse(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "egress: {host} did not answer within {}s",
                        FORWARD_TIMEOUT.as_secs()
                    ),
                ),
            }
        }
    }

    /// Resolves `destination` and connects to the addresses a sandbox may reach, in turn —
    /// or, with an upstream proxy, has that proxy connect (the integration's `endpoint_url`
    /// is always reached directly: an emulator or a VPC endpoint next to the daemon).
    async fn connect(&self, destination: &Destination) -> Result<TcpStream, Unreached> {
        let host = &destination.host;
        let name = (host.as_str(), destination.port);
        if let (Some(upstream), false) = (&self.upstream, destination.endpoint) {
            // The upstream resolves the name; where this host can too, the same address
            // rules apply first (an upstream on this host would reach its loopback or IMDS
            // for a name that resolves there).
            let resolving = tokio::time::timeout(UPSTREAM_RESOLVE_CHECK, lookup_host(name));
            if let Ok(Ok(resolved)) = resolving.await
                && resolved.into_iter().any(|a| !self.may_reach(a.ip(), false))
            {
                return Err(Unreached::Refused(format!(
                    "{host} resolves to an address sandboxes may not reach (loopback, link-local, blocked, this host)"
                )));
            }
            return upstream::connect_through(upstream, destination)
                .await
                .map_err(Unreached::Failed);
        }
        let resolved: Vec<SocketAddr> = tokio::time::timeout(CONNECT_TIMEOUT, lookup_host(name))
            .await
            .map_err(|_| Unreached::Failed(format!("{host}: resolving the name timed out")))?
            .map_err(|e| Unreached::Failed(format!("{host}: cannot resolve the name ({e})")))?
            .collect();
        let reachable: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|a| self.may_reach(a.ip(), destination.endpoint))
            .collect();
        if reachable.is_empty() {
            return Err(Unreached::Refused(format!(
                "{host} resolves only to addresses sandboxes may not reach (loopback, link-local, blocked, this host)"
            )));
        }
        let mut last = String::new();
        for address in reachable {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => {
                    // Small TLS records go out at once, not after Nagle's wait.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = format!("{host}: cannot connect ({e})"),
                Err(_) => last = format!("{host}: connecting timed out"),
            }
        }
        Err(Unreached::Failed(last))
    }

    /// Whether a sandbox may reach `ip` by an allowlisted name: private addresses yes (VPC
    /// endpoints resolve to them); link-local (IMDS), blocked, multicast and unspecified
    /// never; loopback and this host's own only for the integration's `endpoint_url`
    /// (`endpoint`: an emulator next to the daemon). IPv4-mapped IPv6 counts as IPv4.
    fn may_reach(&self, ip: IpAddr, endpoint: bool) -> bool {
        let ip = ip.to_canonical();
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        };
        if ip.is_unspecified()
            || ip.is_multicast()
            || link_local
            || self.blocked.iter().any(|b| b.contains(ip))
        {
            return false;
        }
        endpoint || !(ip.is_loopback() || is_this_host(ip))
    }
}

/// Why an allowed request got no connection.
enum Unreached {
    /// The proxy's rules say no (403).
    Refused(String),
    /// The destination could not be resolved or reached (502).
    Failed(String),
}

/// An address is this host's own when a socket can be bound to it.
fn is_this_host(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The `host:port` a request asks for: CONNECT's authority, or an absolute URI's.
fn target(request: &Request<Incoming>) -> Result<(String, u16), String> {
    let uri = request.uri();
    let Some(authority) = uri.authority() else {
        return Err(
            "this is an egress proxy: send CONNECT host:443 (HTTPS_PROXY), or an absolute http:// URI"
                .into(),
        );
    };
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        _ => 443,
    };
    let host = authority.host().trim_matches(['[', ']']).to_owned();
    Ok((host, authority.port_u16().unwrap_or(default_port)))
}

/// Copies bytes both ways between the upgraded client connection and `upstream`, until
/// either side closes or the sandbox ends. Holds the connection's slot, marked busy, all
/// along (`held`).
async fn relay(
    request: Request<Incoming>,
    mut upstream: TcpStream,
    egress: Arc<SandboxEgress>,
    held: (Arc<Registration>, RequestGuard),
) {
    let mut ended = egress.ended.subscribe();
    if let Ok(upgraded) = hyper::upgrade::on(request).await {
        let mut client = TokioIo::new(upgraded);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            _ = ended.wait_for(|ended| *ended) => {}
        }
    }
    egress.tunnels.fetch_sub(1, Ordering::SeqCst);
    drop(held);
}

/// Sends an absolute-form request on to `upstream` (origin-form, headers as they came) and
/// answers what it answers.
async fn forward(mut request: Request<Incoming>, upstream: TcpStream) -> Response<ProxyBody> {
    let origin_form = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    *request.uri_mut() = match origin_form.parse() {
        Ok(uri) => uri,
        Err(_) => return refuse(StatusCode::BAD_REQUEST, "egress refused: a malformed path"),
    };
    for header in HOP_BY_HOP {
        request.headers_mut().remove(header);
    }
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
            Ok(pair) => pair,
            Err(err) => {
                return refuse(
                    StatusCode::BAD_GATEWAY,
                    &format!("egress: the destination failed: {err}"),
                );
            }
        };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    match sender.send_request(request).await {
        Ok(response) => response.map(|body| body.boxed()),
        Err(err) => refuse(
            StatusCode::BAD_GATEWAY,
            &format!("egress: the destination failed: {err}"),
        ),
    }
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

/// A refusal: the status and a one-line reason the agent can read.
fn refuse(status: StatusCode, reason: &str) -> Response<ProxyBody> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(
            Full::new(Bytes::from(format!("{reason}\n")))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::egress::{HostPattern, MAPPED_ENDPOINT_HOST};

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A stand-in destination on loopback: answers every connection with `greeting`, then
    /// echoes what it reads.
    async fn destination(greeting: &'static [u8]) -> u16 {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = stream.write_all(greeting).await;
                    let mut buffer = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buffer).await {
                        if n == 0 || stream.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    /// A proxy on loopback whose one sandbox is this test (address 127.0.0.1).
    async fn proxy(
        endpoint_port: u16,
        patterns: &[&str],
    ) -> (Arc<EgressProxy>, Arc<SandboxEgress>, SocketAddr) {
        proxy_with(endpoint_port, patterns, None).await
    }

    async fn proxy_with(
        endpoint_port: u16,
        patterns: &[&str],
        upstream: Option<UpstreamProxy>,
    ) -> (Arc<EgressProxy>, Arc<SandboxEgress>, SocketAddr) {
        let blocked = vec![Cidr::parse("169.254.169.254/32").unwrap()];
        let proxy = EgressProxy::new(blocked, upstream);
        let address = proxy.listen_on(LOOPBACK).await.unwrap();
        let patterns: Vec<HostPattern> = patterns
            .iter()
            .map(|p| HostPattern::parse(p).unwrap())
            .collect();
        let allowlist = Allowlist::new(
            "us-east-1",
            Some(&format!("http://127.0.0.1:{endpoint_port}")),
            &patterns,
        );
        let egress = proxy.admit("sandbox1", LOOPBACK, allowlist);
        (proxy, egress, address)
    }

    /// Sends `head` and reads until `until` has been seen (or the connection closes).
    async fn exchange(stream: &mut TcpStream, head: &str, until: &str) -> String {
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(until) {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
                .await
                .expect("an answer within 5 s")
                .unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    }

    #[tokio::test]
    async fn a_tunnel_to_an_allowed_name_carries_bytes_both_ways_until_the_sandbox_ends() {
        let port = destination(b"hello\n").await;
        let (proxy, egress, address) = proxy(port, &[]).await;
        let mut client = TcpStream::connect(address).await.unwrap();
        let head = format!(
            "CONNECT {MAPPED_ENDPOINT_HOST}:{port} HTTP/1.1\r\nHost: {MAPPED_ENDPOINT_HOST}:{port}\r\n\r\n"
        );
        let answer = exchange(&mut client, &head, "hello\n").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(exchange(&mut client, "ping\n", "ping\n").await, "ping\n");
        assert_eq!(egress.counts(), (1, 0));
        proxy.release(LOOPBACK, &egress);
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the tunnel closes when the sandbox ends");
    }

    /// A stand-in upstream proxy: writes down each CONNECT line, answers `answer`, and on a
    /// 200 relays to the loopback port `to`.
    async fn upstream_proxy(
        answer: &'static str,
        to: u16,
    ) -> (UpstreamProxy, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let head = upstream::read_head(&mut client).await.unwrap();
                    log.lock()
                        .unwrap()
                        .push(head.lines().next().unwrap().to_owned());
                    client.write_all(answer.as_bytes()).await.unwrap();
                    if answer.contains(" 200 ") {
                        let mut onward = TcpStream::connect((LOOPBACK, to)).await.unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut onward).await;
                    }
                });
            }
        });
        let upstream = UpstreamProxy {
            host: "127.0.0.1".into(),
            port,
        };
        (upstream, seen)
    }

    #[tokio::test]
    async fn with_an_upstream_proxy_aws_tunnels_go_through_it_and_its_refusal_is_a_502() {
        let port = destination(b"hello\n").await;
        let (upstream, seen) =
            upstream_proxy("HTTP/1.1 200 Connection established\r\n\r\n", port).await;
        let (_proxy, egress, address) = proxy_with(port, &[], Some(upstream)).await;
        let mut client = TcpStream::connect(address).await.unwrap();
        // An AWS name this host need not resolve: the upstream does.
        let head = "CONNECT logs.us-east-1.amazonaws.com:443 HTTP/1.1\r\nHost: logs.us-east-1.amazonaws.com:443\r\n\r\n";
        let answer = exchange(&mut client, head, "hello\n").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(exchange(&mut client, "ping\n", "ping\n").await, "ping\n");
        // Off the allowlist: refused here, never asked upstream.
        let mut client = TcpStream::connect(address).await.unwrap();
        let head = "CONNECT attacker.example:443 HTTP/1.1\r\nHost: attacker.example:443\r\n\r\n";
        let answer = exchange(&mut client, head, "allowlist").await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert_eq!(
            *seen.lock().unwrap(),
            ["CONNECT logs.us-east-1.amazonaws.com:443 HTTP/1.1"]
        );
        assert_eq!(egress.counts(), (1, 1));

        let (upstream, _) = upstream_proxy("HTTP/1.1 403 Forbidden\r\n\r\n", port).await;
        let (_proxy, _egress, address) = proxy_with(port, &[], Some(upstream)).await;
        let mut client = TcpStream::connect(address).await.unwrap();
        let head = "CONNECT sts.amazonaws.com:443 HTTP/1.1\r\nHost: sts.amazonaws.com:443\r\n\r\n";
        let answer = exchange(&mut client, head, "403 Forbidden").await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        assert!(
            answer.contains("upstream proxy http://127.0.0.1:"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn plain_http_reaches_the_emulator_by_its_mapped_name_only() {
        let port = destination(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n").await;
        let (_proxy, egress, address) = proxy(port, &[]).await;
        let mut client = TcpStream::connect(address).await.unwrap();
        let head = format!(
            "GET http://{MAPPED_ENDPOINT_HOST}:{port}/ HTTP/1.1\r\nHost: {MAPPED_ENDPOINT_HOST}:{port}\r\n\r\n"
        );
        let answer = exchange(&mut client, &head, "ok\n").await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"),
            "{answer}"
        );
        assert_eq!(egress.counts(), (1, 0));
    }

    #[tokio::test]
    async fn refusals_answer_403_with_the_reason_and_are_kept() {
        let port = destination(b"").await;
        let (proxy, egress, address) = proxy(port, &["localhost"]).await;
        for (head, reason) in [
            (
                "CONNECT attacker.example:443 HTTP/1.1\r\nHost: attacker.example:443\r\n\r\n",
                "not on this sandbox's egress allowlist",
            ),
            (
                "CONNECT logs.us-east-1.amazonaws.com:22 HTTP/1.1\r\nHost: x\r\n\r\n",
                "only port 443",
            ),
            // Allowed by name, but it resolves to loopback: never, except for endpoint_url.
            (
                "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
                "resolves only to addresses sandboxes may not reach",
            ),
            (
                "GET http://logs.us-east-1.amazonaws.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
                "plain HTTP is refused",
            ),
        ] {
            let mut client = TcpStream::connect(address).await.unwrap();
            let answer = exchange(&mut client, head, reason).await;
            assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
            assert!(answer.contains(reason), "{reason}: {answer}");
        }
        let refusals = egress.refusals();
        assert_eq!(refusals.len(), 4);
        assert_eq!(refusals[0].host, "attacker.example");
        assert_eq!(refusals[0].port, 443);
        assert_eq!(egress.counts(), (0, 4));
        assert_eq!(proxy.totals(), (0, 4));

        // After the sandbox ends its address is nobody's: refused.
        proxy.release(LOOPBACK, &egress);
        let mut client = TcpStream::connect(address).await.unwrap();
        let head = format!("CONNECT {MAPPED_ENDPOINT_HOST}:{port} HTTP/1.1\r\nHost: x\r\n\r\n");
        let answer = exchange(&mut client, &head, "running sandbox").await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    }

    #[tokio::test]
    async fn refusals_kept_per_sandbox_are_bounded() {
        let (_proxy, egress, address) = proxy(1, &[]).await;
        for n in 0..(REFUSALS_KEPT + 8) {
            let mut client = TcpStream::connect(address).await.unwrap();
            let head = format!("CONNECT host{n}.attacker.example:443 HTTP/1.1\r\nHost: x\r\n\r\n");
            exchange(&mut client, &head, "allowlist").await;
        }
        assert_eq!(egress.refusals().len(), REFUSALS_KEPT);
        assert_eq!(egress.counts().1, (REFUSALS_KEPT + 8) as u64);
    }

    #[tokio::test]
    async fn two_hundred_concurrent_tunnels_from_one_sandbox_all_carry_their_bytes() {
        let port = destination(b"").await;
        let (proxy, egress, address) = proxy(port, &[]).await;
        let tunnels: Vec<_> = (0..200)
            .map(|n| {
                tokio::spawn(async move {
                    let mut client = TcpStream::connect(address).await.unwrap();
                    let head = format!(
                        "CONNECT {MAPPED_ENDPOINT_HOST}:{port} HTTP/1.1\r\nHost: x\r\n\r\n"
                    );
                    let answer = exchange(&mut client, &head, "\r\n\r\n").await;
                    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
                    let line = format!("tunnel {n}\n");
                    assert_eq!(exchange(&mut client, &line, &line).await, line);
                    client
                })
            })
            .collect();
        let mut open = Vec::new();
        for tunnel in tunnels {
            open.push(tunnel.await.expect("no tunnel lost"));
        }
        assert_eq!(egress.counts(), (200, 0));
        assert_eq!(proxy.totals(), (200, 0));
        assert_eq!(open.len(), 200);
    }
}
