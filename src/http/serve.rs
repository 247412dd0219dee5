//! The HTTP server's own accept loop, so that a hostile network costs bounded time and memory
//! (SPEC.md §7, issue 15):
//!
//! * at most `max_connections` connections at once (more wait in the kernel's backlog);
//! * a request's headers must arrive within `header_timeout` of the connection opening, or of the
//!   first byte of a later request, so a half-sent header or a connection that never speaks is
//!   cut then; a kept-alive connection idle for `idle_timeout` after an answer is closed (longer,
//!   so that a proxy's pooled connections are not closed under its feet);
//! * a request body that goes silent for `body_idle_timeout`, or is not complete within
//!   `body_timeout` of its headers, ends in an error ([`BodyTimeout`]) for whoever reads it;
//! * bodies not yet verified draw their bytes from one [`Budget`] shared by all connections
//!   (`POST /webhook` charges it; see `webhook.rs`).
//!
//! axum's `serve` has none of these knobs, so connections are served with hyper's HTTP/1 builder
//! directly, the way axum does it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::{Instant, Sleep};

/// The limits of the intake (`SHIPGATE_HEADER_TIMEOUT_SECS` and its siblings in `config.rs`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Headers must be complete within this of the connection opening (or of a later request's
    /// first byte).
    pub header_timeout: Duration,
    /// How long a kept-alive connection may idle between an answer and the next request.
    pub idle_timeout: Duration,
    /// A body that sends nothing for this long is cut.
    pub body_idle_timeout: Duration,
    /// A body must be complete within this of its headers, however it trickles.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Bytes of bodies not yet verified held at once, across all connections.
    pub unverified_bytes: usize,
    /// How long a body waits for room in that budget before it is answered 503.
    pub budget_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 512,
            unverified_bytes: 48 * 1024 * 1024,
            budget_wait: Duration::from_secs(2),
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true; then stops accepting, lets every open
/// connection finish its request, and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper's own header time-out runs from the moment it waits for a request, idle or not; the
    // watchdog below tells the two apart instead.
    // A connection's read buffer (headers included) is at most 64 KiB: what hyper holds of a body
    // before the handler takes it and charges the budget.
    builder.timer(TokioTimer::new()).header_read_timeout(None).keep_alive(true).max_buf_size(64 * 1024);
    let tick =
        (limits.header_timeout.min(limits.idle_timeout) / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let body_limits = (limits.body_idle_timeout, limits.body_timeout);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the connection semaphore is never closed"),
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let state = Arc::new(ConnState::new());
        let service = TowerToHyperService::new(TimedRouter {
            app,
            idle: body_limits.0,
            total: body_limits.1,
            state: state.clone(),
        });
        let io = Watched { inner: stream, state: state.clone() };
        let conn = builder.serve_connection(TokioIo::new(io), service);
        let mut closing = closing_rx.clone();
        let (header_timeout, idle_timeout) = (limits.header_timeout, limits.idle_timeout);
        let send_timeout = limits.body_idle_timeout;
        // On shutdown a request under way gets as long to finish as a head gets to arrive (10 s by
        // default: inside a platform's usual kill time-out, e.g. fly.toml's 30 s).
        let drain_within = limits.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let mut conn = std::pin::pin!(conn);
            let mut ticks = tokio::time::interval(tick);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let ended = loop {
                tokio::select! {
                    r = conn.as_mut() => break Some(r),
                    _ = stopped(&mut closing) => break None,
                    _ = ticks.tick() => {
                        if let Some(reason) = state.overdue(header_timeout, idle_timeout, send_timeout) {
                            // Nothing is under way, or the peer reads nothing of what it is sent:
                            // dropping the connection closes it.
                            metrics::counter!("shipgate_http_connections_cut_total", "reason" => reason).increment(1);
                            tracing::debug!(%peer, reason, "connection cut");
                            return;
                        }
                    }
                }
            };
            let ended = match ended {
                Some(r) => r,
                None => {
                    // Stopping: the request under way is answered, then the connection closes;
                    // a client too slow to let that happen in time does not hold the shutdown up.
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(drain_within, conn.as_mut()).await {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
            };
            if let Err(e) = ended {
                metrics::counter!("shipgate_http_connections_cut_total", "reason" => "error").increment(1);
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every connection holds a slot until it is closed: all slots back means all closed.
    let _all = slots.acquire_many(limits.max_connections as u32).await;
    Ok(())
}

/// Resolves once the flag is true (the guard `wait_for` returns is not kept across an await).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The router, with the body time-outs put on every request it is given.
#[derive(Clone)]
struct TimedRouter {
    app: Router,
    idle: Duration,
    total: Duration,
    state: Arc<ConnState>,
}

impl tower_service::Service<http::Request<Incoming>> for TimedRouter {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Incoming>) -> Self::Future {
        let req = req.map(|b| Body::new(TimedBody::new(b, self.idle, self.total)));
        self.state.started();
        let state = self.state.clone();
        let answer = tower_service::Service::call(&mut self.app, req);
        Box::pin(async move {
            let r = answer.await;
            state.answered();
            r
        })
    }
}

/// Where a connection is, for its watchdog: waiting for a request's headers (since it opened, or
/// since a later request's first byte), idle after an answer, or busy with requests.
struct ConnState {
    epoch: Instant,
    /// WAITING_HEAD, IDLE or BUSY.
    phase: std::sync::atomic::AtomicU8,
    /// Milliseconds from `epoch` when the phase began.
    since_ms: std::sync::atomic::AtomicU64,
    busy: AtomicUsize,
    /// Milliseconds from `epoch`, plus one, since a write has been waiting for the peer to read
    /// (0: none waiting).
    write_stalled: std::sync::atomic::AtomicU64,
}

const WAITING_HEAD: u8 = 0;
const IDLE: u8 = 1;
const BUSY: u8 = 2;

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            epoch: Instant::now(),
            phase: WAITING_HEAD.into(),
            since_ms: 0.into(),
            busy: AtomicUsize::new(0),
            write_stalled: 0.into(),
        }
    }

    /// A write waits (the peer's window is full) or went through.
    fn wrote<T>(&self, r: &Poll<T>) {
        match r {
            Poll::Pending => {
                let _ = self.write_stalled.compare_exchange(0, self.now_ms() + 1, Ordering::AcqRel, Ordering::Acquire);
            }
            Poll::Ready(_) => self.write_stalled.store(0, Ordering::Release),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn enter(&self, phase: u8) {
        self.since_ms.store(self.now_ms(), Ordering::Release);
        self.phase.store(phase, Ordering::Release);
    }

    /// Bytes arrived: on an idle connection, a request has begun.
    fn read_some(&self) {
        if self.phase.load(Ordering::Acquire) == IDLE {
            self.enter(WAITING_HEAD);
        }
    }

    fn started(&self) {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.phase.store(BUSY, Ordering::Release);
    }

    fn answered(&self) {
        if self.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.enter(IDLE);
        }
    }

    /// Why the connection should be cut now, if it should.
    fn overdue(&self, header: Duration, idle: Duration, send: Duration) -> Option<&'static str> {
        let now = self.now_ms();
        let stalled = self.write_stalled.load(Ordering::Acquire);
        if stalled != 0 && Duration::from_millis(now.saturating_sub(stalled - 1)) > send {
            return Some("send_timeout");
        }
        let since = Duration::from_millis(now.saturating_sub(self.since_ms.load(Ordering::Acquire)));
        match self.phase.load(Ordering::Acquire) {
            WAITING_HEAD if since > header => Some("header_timeout"),
            IDLE if since > idle => Some("idle_timeout"),
            _ => None,
        }
    }
}

/// The connection's socket, telling its watchdog when bytes arrive.
struct Watched {
    inner: tokio::net::TcpStream,
    state: Arc<ConnState>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.read_some();
        }
        r
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.state.wrote(&r);
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.state.wrote(&r);
        r
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.state.wrote(&r);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Why a body was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyTimeout {
    #[error("the body sent nothing for too long")]
    Idle,
    #[error("the body was not complete in time")]
    Total,
}

/// A request body with the idle and total time-outs. The idle timer starts when the body is first
/// read, so a handler that reads it late is not mistaken for a silent client.
pub struct TimedBody {
    inner: Incoming,
    idle: Duration,
    idle_timer: Option<Pin<Box<Sleep>>>,
    deadline: Pin<Box<Sleep>>,
}

impl TimedBody {
    pub fn new(inner: Incoming, idle: Duration, total: Duration) -> Self {
        TimedBody { inner, idle, idle_timer: None, deadline: Box::pin(tokio::time::sleep(total)) }
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = Instant::now() + this.idle;
                match &mut this.idle_timer {
                    Some(t) => t.as_mut().reset(next),
                    None => this.idle_timer = Some(Box::pin(tokio::time::sleep_until(next))),
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(axum::Error::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout::Total))));
                }
                let idle = this.idle;
                let timer = this.idle_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout::Idle))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// If a body error is one of the time-outs, which.
pub fn body_timeout(e: &axum::Error) -> Option<BodyTimeout> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if let Some(t) = err.downcast_ref::<BodyTimeout>() {
            return Some(*t);
        }
        src = err.source();
    }
    None
}

/// Bytes of unverified bodies held at once. Not a fair queue on purpose: a small body takes room
/// as soon as there is enough for it, and never waits behind a large one that is waiting for more.
/// Large bodies may not take the last `reserve` bytes, which stay for bodies of at most
/// `small` bytes (every usual GitHub delivery), so a flood of large unsigned bodies cannot starve them.
pub struct Budget {
    total: usize,
    used: AtomicUsize,
    freed: Notify,
    small: usize,
    reserve: usize,
}

/// Room taken in a [`Budget`]; given back when dropped.
pub struct Charge {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
            self.budget.freed.notify_waiters();
        }
    }
}

impl Budget {
    pub fn new(total: usize) -> Arc<Budget> {
        let small = (1024 * 1024).min(total / 8);
        Arc::new(Budget { total, used: AtomicUsize::new(0), freed: Notify::new(), small, reserve: total / 4 })
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Nothing held yet, for a body of `announced` bytes.
    pub fn empty(self: &Arc<Self>) -> Charge {
        Charge { budget: self.clone(), bytes: 0 }
    }

    fn try_take(&self, bytes: usize, announced: usize) -> bool {
        let limit = if announced <= self.small { self.total } else { self.total - self.reserve };
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| (u + bytes <= limit).then_some(u + bytes))
            .is_ok()
    }

    /// Adds `bytes` to `charge` (a body of `announced` bytes in all), waiting at most `wait` for
    /// room. False when there was none in time.
    pub async fn grow(&self, charge: &mut Charge, bytes: usize, announced: usize, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            if self.try_take(bytes, announced) {
                charge.bytes += bytes;
                return true;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_bodies_keep_a_reserve_that_large_ones_cannot_take() {
        let b = Budget::new(800);
        let mut large = b.empty();
        assert!(b.grow(&mut large, 600, 10_000, Duration::ZERO).await);
        assert!(!b.grow(&mut large, 1, 10_000, Duration::ZERO).await, "the last quarter is reserved");
        let mut small = b.empty();
        assert!(b.grow(&mut small, 100, 100, Duration::ZERO).await);
        assert_eq!(b.used(), 700);
        drop(large);
        assert_eq!(b.used(), 100);
        drop(small);
        assert_eq!(b.used(), 0);
    }

    #[tokio::test]
    async fn a_waiting_body_takes_room_when_it_is_freed() {
        let b = Budget::new(800);
        let mut first = b.empty();
        assert!(b.grow(&mut first, 600, 10_000, Duration::ZERO).await);
        let b2 = b.clone();
        let waiter = tokio::spawn(async move {
            let mut c = b2.empty();
            b2.grow(&mut c, 500, 10_000, Duration::from_secs(30)).await
        });
        tokio::task::yield_now().await;
        drop(first);
        assert!(waiter.await.unwrap());
        let mut none = b.empty();
        assert!(!b.grow(&mut none, 700, 10_000, Duration::from_millis(10)).await, "no room, and none comes");
    }
}
