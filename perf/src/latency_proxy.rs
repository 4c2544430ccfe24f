//! A TCP proxy that adds a fixed one-way delay to every chunk, in each
//! direction: `--delay-ms 50` turns a loopback link into one with 100 ms of
//! round-trip time, for the latency benchmarks (BENCHMARKS.md).
//!
//! Used in process by the latency harnesses ([`distant`]) and as a program
//! by the browser benchmark (`perf/examples/latency_proxy.rs`).
//!
//! Each accepted connection gets its own connection to the target. Every
//! chunk read from one side is stamped `now + delay` and written to the other
//! side at that instant, so the delay does not add up over the chunks of a
//! long response (the link has latency, not a bandwidth limit), order is kept,
//! and keep-alive connections stay open as long as both ends keep them. An
//! end-of-stream is forwarded (`shutdown`) after the same delay. The TCP
//! handshake itself is not delayed: a new connection costs no emulated round
//! trip, only its data does.
//!
//! Timing: tokio's timer has a 1 ms resolution and rounds every sleep up to
//! the next tick, which adds up to ~1 ms to each hop (8 hops for a 4-request
//! handshake). So the due instants are kept by one timer thread that sleeps
//! with the OS's high-resolution timeout (`recv_timeout`) and wakes the
//! writer: a hop lands within tens of microseconds of its due time, and a
//! zero delay forwards at once.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Largest chunk read at once.
const READ_BUFFER: usize = 64 << 10;
/// Chunks in flight per direction before the reader waits (a bound on memory:
/// at most this many reads of `READ_BUFFER` bytes).
const IN_FLIGHT: usize = 1024;

/// Accepts connections on `listener` forever, proxying each to `target` with
/// `delay` added to every chunk in each direction.
pub async fn serve(
    listener: TcpListener,
    target: SocketAddr,
    delay: Duration,
) -> std::io::Result<()> {
    loop {
        let (inbound, _) = listener.accept().await?;
        tokio::spawn(async move {
            let outbound = match TcpStream::connect(target).await {
                Ok(outbound) => outbound,
                Err(error) => {
                    eprintln!("latency proxy: cannot connect to {target}: {error}");
                    return;
                }
            };
            // Small requests waiting for small answers: no Nagle delay on top.
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (client_read, client_write) = inbound.into_split();
            let (server_read, server_write) = outbound.into_split();
            tokio::join!(
                pipe(client_read, server_write, delay),
                pipe(server_read, client_write, delay),
            );
        });
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    // `None` is the end of the stream (or a read error): shut the write side.
    let (tx, mut rx) = mpsc::channel::<(Instant, Option<Vec<u8>>)>(IN_FLIGHT);
    let reader = async move {
        let mut buffer = vec![0; READ_BUFFER];
        loop {
            let chunk = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(buffer[..n].to_vec()),
            };
            let end = chunk.is_none();
            // The writer is gone (its side failed): stop reading.
            if tx.send((Instant::now() + delay, chunk)).await.is_err() || end {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            wait_until(due).await;
            match chunk {
                Some(chunk) => {
                    if to.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = to.shutdown().await;
                    return;
                }
            }
        }
    };
    tokio::join!(reader, writer);
}

/// A wake-up due at an instant (ordered so that the heap pops the earliest).
struct Alarm {
    due: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Alarm {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Alarm {}
impl PartialOrd for Alarm {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Alarm {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// The timer thread's inbox (started on first use, lives with the process).
fn timer() -> &'static std_mpsc::Sender<(Instant, oneshot::Sender<()>)> {
    static TIMER: OnceLock<std_mpsc::Sender<(Instant, oneshot::Sender<()>)>> = OnceLock::new();
    TIMER.get_or_init(|| {
        let (tx, rx) = std_mpsc::channel::<(Instant, oneshot::Sender<()>)>();
        std::thread::Builder::new()
            .name("latency-timer".into())
            .spawn(move || {
                let mut alarms = BinaryHeap::new();
                let mut seq = 0u64;
                loop {
                    let now = Instant::now();
                    while alarms.peek().is_some_and(|a: &Alarm| a.due <= now) {
                        let _ = alarms.pop().map(|a| a.wake.send(()));
                    }
                    let next = match alarms.peek() {
                        Some(alarm) => rx.recv_timeout(alarm.due - now),
                        None => rx
                            .recv()
                            .map_err(|_| std_mpsc::RecvTimeoutError::Disconnected),
                    };
                    match next {
                        Ok((due, wake)) => {
                            seq += 1;
                            alarms.push(Alarm { due, seq, wake });
                        }
                        Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                        Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .expect("a timer thread");
        tx
    })
}

/// Resolves at `due` (at once if it has passed).
async fn wait_until(due: Instant) {
    if due <= Instant::now() {
        return;
    }
    let (wake, woken) = oneshot::channel();
    if timer().send((due, wake)).is_ok() {
        let _ = woken.await;
    }
}

/// The CM at `bosh_url` behind a proxy on a fresh loopback port adding
/// `delay` each way (run on this runtime): the URL to use instead.
pub async fn distant(bosh_url: &http::Uri, delay: Duration) -> http::Uri {
    let authority = bosh_url.authority().expect("a BOSH URL with host:port");
    let target = tokio::net::lookup_host(authority.as_str())
        .await
        .expect("the CM's address")
        .next()
        .expect("the CM's address");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, target, delay));
    format!(
        "http://{address}{}",
        bosh_url.path_and_query().map_or("/", |p| p.as_str())
    )
    .parse()
    .unwrap()
}
