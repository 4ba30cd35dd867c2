//! An HTTP server's open connections, bounded (the API's, and the sandboxes' credentials
//! endpoint's).
//!
//! At most a fixed number (the API: `server.max_connections`) are open at once. When one more arrives, the connection
//! that has been idle longest with no request in progress — a slow-loris sending half a
//! head, or a keep-alive nobody uses — is closed to make room; only when every connection
//! is busy in a request is the new one refused (a short 503, then closed). So an attacker
//! holding thousands of half-sent requests cannot keep `/healthz` or a real client out, and
//! nothing queues without bound.
//!
//! Each connection is also closed when it idles too long: a request head must be complete
//! within `server.header_read_timeout` of its first byte (slow-loris), and a keep-alive
//! connection with nothing arriving is closed after `server.idle_timeout` — kept apart,
//! because a short idle timeout would race clients reusing pooled connections (they keep
//! them 90 s), while a slow head deserves no patience. [`Tracked`] notes when bytes arrive.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// How often each connection checks its timeouts: they are seconds long, so a second late
/// at most is fine, and a tick per second per connection costs nothing.
const TIMEOUT_CHECK_EVERY: Duration = Duration::from_secs(1);
/// "No time yet" in the millisecond fields.
const NEVER: u64 = u64::MAX;

/// One open connection, as the table and its request handler see it.
#[derive(Debug)]
pub struct Connection {
    /// Requests in progress on it (0 or 1 for HTTP/1 without pipelining).
    in_request: AtomicUsize,
    /// When it last became idle (ms since the table's start).
    idle_since_ms: AtomicU64,
    /// When the first byte of the next request head arrived while idle, or [`NEVER`].
    head_started_ms: AtomicU64,
    /// Wakes its task to close it.
    evict: Notify,
    epoch: Instant,
}

impl Connection {
    /// Marks a request as started; the guard marks it finished when dropped.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_request.fetch_add(1, Ordering::SeqCst);
        self.head_started_ms.store(NEVER, Ordering::SeqCst);
        RequestGuard(self.clone())
    }

    /// Bytes arrived: when idle, they start the next request head.
    fn bytes_arrived(&self) {
        if self.in_request.load(Ordering::SeqCst) == 0 {
            let now = self.now_ms();
            let _ = self.head_started_ms.compare_exchange(
                NEVER,
                now,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    /// Resolves when the connection has waited too long: for the rest of a request head
    /// (`header`), or idle with nothing arriving (`idle`). Never while a request runs.
    pub async fn timed_out(&self, header: Duration, idle: Duration) {
        let mut tick = tokio::time::interval(TIMEOUT_CHECK_EVERY);
        loop {
            tick.tick().await;
            if self.in_request.load(Ordering::SeqCst) > 0 {
                continue;
            }
            let now = self.now_ms();
            let head = self.head_started_ms.load(Ordering::SeqCst);
            let waited = if head == NEVER {
                now.saturating_sub(self.idle_since_ms.load(Ordering::SeqCst))
                    > idle.as_millis() as u64
            } else {
                now.saturating_sub(head) > header.as_millis() as u64
            };
            if waited {
                return;
            }
        }
    }

    /// Resolves when the table wants this connection closed.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// A request in progress; dropping it makes the connection idle again.
#[derive(Debug)]
pub struct RequestGuard(Arc<Connection>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0
            .idle_since_ms
            .store(self.0.now_ms(), Ordering::SeqCst);
        self.0.head_started_ms.store(NEVER, Ordering::SeqCst);
        self.0.in_request.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's socket, noting on its [`Connection`] when bytes arrive.
#[derive(Debug)]
pub struct Tracked<T> {
    inner: T,
    connection: Arc<Connection>,
}

impl<T> Tracked<T> {
    pub fn new(inner: T, connection: Arc<Connection>) -> Self {
        Self { inner, connection }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.connection.bytes_arrived();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What to do with a connection just accepted.
#[derive(Debug)]
pub enum Admission {
    /// Serve it; drop the [`Registration`] when it closes.
    Admitted(Registration),
    /// Every slot is busy in a request: refuse it.
    Refused,
}

/// The open connections.
#[derive(Debug)]
pub struct ConnectionTable {
    max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
}

/// A connection's place in the table; dropping it frees the place.
#[derive(Debug)]
pub struct Registration {
    table: Arc<ConnectionTable>,
    id: u64,
    pub connection: Arc<Connection>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.lock().remove(&self.id);
    }
}

impl ConnectionTable {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.open.lock().expect("connection table lock")
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Makes room for a new connection (closing the longest-idle one when full) and
    /// registers it, or refuses it when every open connection is in a request.
    pub fn admit(self: &Arc<Self>) -> Admission {
        let mut open = self.lock();
        if open.len() >= self.max {
            let idlest = open
                .iter()
                .filter(|(_, c)| c.in_request.load(Ordering::SeqCst) == 0)
                .min_by_key(|(_, c)| c.idle_since_ms.load(Ordering::SeqCst))
                .map(|(id, _)| *id);
            match idlest {
                Some(id) => {
                    if let Some(victim) = open.remove(&id) {
                        // `notify_one` keeps the wake-up even if the task is not waiting yet.
                        victim.evict.notify_one();
                    }
                }
                None => return Admission::Refused,
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let connection = Arc::new(Connection {
            in_request: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            head_started_ms: AtomicU64::new(NEVER),
            evict: Notify::new(),
            epoch: self.epoch,
        });
        open.insert(id, connection.clone());
        Admission::Admitted(Registration {
            table: self.clone(),
            id,
            connection,
        })
    }
}

/// Back-off after a failed `accept` (EMFILE, ENFILE, ENOBUFS): the error persists until
/// connections close, so retrying at once would spin a core.
#[derive(Debug)]
pub struct AcceptBackoff {
    next: Duration,
}

/// First pause after an accept error: long enough not to spin.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// Longest pause: connections time out within seconds, so a second is soon enough.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self {
            next: ACCEPT_BACKOFF_FIRST,
        }
    }
}

impl AcceptBackoff {
    /// The pause before the next accept, doubling up to the maximum.
    pub fn failed(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(ACCEPT_BACKOFF_MAX);
        pause
    }

    pub fn succeeded(&mut self) {
        self.next = ACCEPT_BACKOFF_FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_closes_the_longest_idle_connection() {
        let table = ConnectionTable::new(2);
        let Admission::Admitted(first) = table.admit() else {
            panic!()
        };
        std::thread::sleep(Duration::from_millis(5));
        let Admission::Admitted(second) = table.admit() else {
            panic!()
        };
        let Admission::Admitted(_third) = table.admit() else {
            panic!("room is made")
        };
        assert_eq!(table.len(), 2);
        assert!(
            !table
                .lock()
                .values()
                .any(|c| Arc::ptr_eq(c, &first.connection)),
            "the oldest idle one went"
        );
        assert!(
            table
                .lock()
                .values()
                .any(|c| Arc::ptr_eq(c, &second.connection))
        );
    }

    #[test]
    fn busy_connections_are_never_closed_and_a_full_busy_table_refuses() {
        let table = ConnectionTable::new(2);
        let Admission::Admitted(a) = table.admit() else {
            panic!()
        };
        let Admission::Admitted(b) = table.admit() else {
            panic!()
        };
        let _busy_a = a.connection.request();
        let busy_b = b.connection.request();
        assert!(matches!(table.admit(), Admission::Refused));
        drop(busy_b);
        assert!(matches!(table.admit(), Admission::Admitted(_)));
        assert!(
            table.lock().values().any(|c| Arc::ptr_eq(c, &a.connection)),
            "the busy one stays"
        );
    }

    #[test]
    fn closing_frees_the_place() {
        let table = ConnectionTable::new(1);
        let first = table.admit();
        drop(first);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut backoff = AcceptBackoff::default();
        let pauses: Vec<Duration> = (0..10).map(|_| backoff.failed()).collect();
        assert_eq!(pauses[0], ACCEPT_BACKOFF_FIRST);
        assert_eq!(pauses[1], ACCEPT_BACKOFF_FIRST * 2);
        assert_eq!(*pauses.last().unwrap(), ACCEPT_BACKOFF_MAX);
        backoff.succeeded();
        assert_eq!(backoff.failed(), ACCEPT_BACKOFF_FIRST);
    }
}
