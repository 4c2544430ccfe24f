//! Prebinds per second against a real CM (docs/design.md §5: limited by the CM, not
//! by us: ≥ 90 % of what a minimal raw client gets from the same Prosody).
//!
//! Two clients, the same work (create, auth ANONYMOUS, restart, bind; the
//! session is left open, as a prebind does):
//!
//! - `layer`: `GET /prebind` through the layered service
//!   (`tower::ServiceExt::oneshot` on a clone), its default hyper-util
//!   transport, JSON answer;
//! - `raw`: the four BOSH requests written out here, on a hyper-util client
//!   configured like the layer's (keep-alive pool, `TCP_NODELAY`), answers
//!   checked with plain string searches.
//!
//! At each concurrency (`--concurrency`, default 1, 8, 64) `c` tasks loop for
//! `--secs` (default 10) seconds per phase. Phases alternate: each round runs
//! layer then raw, or raw then layer (the order flips every round and every
//! level), so neither side always meets a Prosody with more live sessions.
//! `--rounds` (default 1) repeats that. Every failed handshake counts as an
//! error; any error makes the exit status non-zero.
//!
//! CPU: this process's (user + system, `/proc/self/stat`) per handshake, and
//! Prosody's with `--prosody-pid-file FILE` (`$PROSODY_DIR/prosody.pid`).
//!
//! `--reset CMD` runs `sh -c CMD` before every phase, e.g. a Prosody restart:
//! every session a phase opens stays alive at the CM for 60 s, and Prosody
//! slows down (and stalls for seconds) as tens of thousands pile up, so
//! without a reset a later phase meets a slower CM than an earlier one.
//!
//! ```text
//! scripts/prosody.sh start
//! cargo run --release -p perf --example throughput -- --bosh-url http://127.0.0.1:5280/http-bind \
//!     --reset 'scripts/prosody.sh stop && scripts/prosody.sh start' --prosody-pid-file /tmp/bosh-prebind-prosody/prosody.pid
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bosh_prebind::{Credentials, PrebindLayer};
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt, service_fn};

const DOMAIN: &str = "anon.localhost";

// ---------------------------------------------------------------------------
// The raw client.

type RawClient = Client<HttpConnector, Full<Bytes>>;

/// Like the layer's default transport (`bosh_prebind::http_transport`).
fn raw_client() -> RawClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

async fn post(client: &RawClient, url: &Uri, body: String) -> Result<String, String> {
    let request = Request::post(url.clone())
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    if response.status() != StatusCode::OK {
        return Err(format!("HTTP {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let text = String::from_utf8(body.to_vec()).map_err(|e| e.to_string())?;
    if text.contains("type='terminate'") || text.contains("type=\"terminate\"") {
        return Err(format!("terminated: {text}"));
    }
    Ok(text)
}

/// The value of `name='…'` (or `"…"`) in `text`.
fn attribute<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!(" {name}="))? + name.len() + 2;
    let quote = text[start..].chars().next()?;
    let rest = &text[start + 1..];
    Some(&rest[..rest.find(quote)?])
}

/// create, auth ANONYMOUS, restart, bind: the JID.
async fn raw_handshake(client: &RawClient, url: &Uri) -> Result<String, String> {
    let mut rid: u64 = rand::random::<u32>() as u64 + 1;
    let created = post(
        client,
        url,
        format!(
            "<body content='text/xml; charset=utf-8' hold='1' rid='{rid}' to='{DOMAIN}' ver='1.6' wait='59' xml:lang='en' xmpp:version='1.0' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>"
        ),
    )
    .await?;
    let sid = attribute(&created, "sid").ok_or("no sid")?.to_owned();
    if !created.contains(">ANONYMOUS<") {
        return Err(format!("ANONYMOUS not offered: {created}"));
    }
    rid += 1;
    let auth = post(
        client,
        url,
        format!(
            "<body rid='{rid}' sid='{sid}' xmlns='http://jabber.org/protocol/httpbind'><auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/></body>"
        ),
    )
    .await?;
    if !auth.contains("<success") {
        return Err(format!("auth: {auth}"));
    }
    rid += 1;
    let restarted = post(
        client,
        url,
        format!(
            "<body rid='{rid}' sid='{sid}' xmlns='http://jabber.org/protocol/httpbind' to='{DOMAIN}' xml:lang='en' xmpp:restart='true' xmlns:xmpp='urn:xmpp:xbosh'/>"
        ),
    )
    .await?;
    if !restarted.contains("<bind") {
        return Err(format!("restart: {restarted}"));
    }
    rid += 1;
    let bound = post(
        client,
        url,
        format!(
            "<body rid='{rid}' sid='{sid}' xmlns='http://jabber.org/protocol/httpbind'><iq type='set' id='bind_1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq></body>"
        ),
    )
    .await?;
    let start = bound
        .find("<jid>")
        .ok_or_else(|| format!("bind: {bound}"))?
        + 5;
    let end = start + bound[start..].find("</jid>").ok_or("bind: no </jid>")?;
    Ok(bound[start..end].to_owned())
}

// ---------------------------------------------------------------------------
// Phases.

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Layer,
    Raw,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Layer => "layer",
            Side::Raw => "raw",
        }
    }
}

#[derive(Default)]
struct Phase {
    ok: u64,
    errors: u64,
    secs: f64,
    latencies_ms: Vec<f64>,
    own_cpu_s: f64,
    prosody_cpu_s: Option<f64>,
    first_error: Option<String>,
}

/// User + system CPU seconds of a process (fields 14 and 15 of `stat`, in
/// clock ticks of 1/100 s, as on Linux by default).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from after its ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

async fn phase(
    side: Side,
    concurrency: usize,
    secs: u64,
    url: &Uri,
    prosody_pid: Option<&str>,
) -> Phase {
    let app = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    // A fresh layer (and transport) and raw client per phase: the same cold
    // start for both.
    let layered =
        PrebindLayer::new(bosh_prebind::BoshUrl::try_from(url.clone()).expect("a BOSH URL"))
            .credentials(Credentials::anonymous(DOMAIN))
            .layer(app);
    let raw = raw_client();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let errors = Arc::new(AtomicU64::new(0));
    let (own_before, prosody_before) = (
        cpu_seconds("self").unwrap_or(0.0),
        prosody_pid.and_then(cpu_seconds),
    );
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (layered, raw, url, errors) =
            (layered.clone(), raw.clone(), url.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut first_error = None;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let result = match side {
                    Side::Layer => {
                        let request = Request::get("/prebind").body(Full::default()).unwrap();
                        let response = layered.clone().oneshot(request).await.unwrap();
                        let status = response.status();
                        let body = response.into_body().collect().await.unwrap().to_bytes();
                        if status == StatusCode::OK && body.starts_with(b"{\"jid\"") {
                            Ok(())
                        } else {
                            Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
                        }
                    }
                    Side::Raw => raw_handshake(&raw, &url).await.map(drop),
                };
                match result {
                    Ok(()) => latencies.push(t0.elapsed().as_secs_f64() * 1000.0),
                    Err(error) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(error);
                    }
                }
            }
            (latencies, first_error)
        }));
    }
    let mut result = Phase::default();
    for task in tasks {
        let (latencies, error) = task.await.unwrap();
        result.latencies_ms.extend(latencies);
        if result.first_error.is_none() {
            result.first_error = error;
        }
    }
    result.secs = started.elapsed().as_secs_f64();
    result.ok = result.latencies_ms.len() as u64;
    result.errors = errors.load(Ordering::Relaxed);
    result.own_cpu_s = cpu_seconds("self").unwrap_or(0.0) - own_before;
    result.prosody_cpu_s = prosody_pid
        .and_then(cpu_seconds)
        .zip(prosody_before)
        .map(|(after, before)| after - before);
    result
}

fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// Everything one side did at one concurrency, over all rounds.
#[derive(Default)]
struct Total {
    ok: u64,
    errors: u64,
    secs: f64,
    latencies_ms: Vec<f64>,
    own_cpu_s: f64,
    prosody_cpu_s: Option<f64>,
    rates: Vec<f64>,
}

impl Total {
    fn add(&mut self, phase: Phase) {
        self.ok += phase.ok;
        self.errors += phase.errors;
        self.secs += phase.secs;
        self.rates.push(phase.ok as f64 / phase.secs);
        self.latencies_ms.extend(phase.latencies_ms);
        self.own_cpu_s += phase.own_cpu_s;
        self.prosody_cpu_s = match (self.prosody_cpu_s, phase.prosody_cpu_s) {
            (a, None) => a,
            (None, b) => b,
            (Some(a), Some(b)) => Some(a + b),
        };
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }
}

const USAGE: &str = "usage: throughput [--bosh-url URL] [--secs S (10)] [--rounds R (1)] [--concurrency 1,8,64] [--reset CMD] [--prosody-pid-file FILE] [--json FILE]";

/// Runs the `--reset` command, if any, and waits until the CM answers again.
async fn reset(command: Option<&str>, url: &Uri) {
    let Some(command) = command else { return };
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("--reset: sh");
    assert!(status.success(), "--reset {command:?} failed: {status}");
    for _ in 0..100 {
        if raw_handshake(&raw_client(), url).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the CM does not answer after --reset");
}

#[tokio::main]
async fn main() {
    let mut url = "http://127.0.0.1:5280/http-bind".to_owned();
    let (mut secs, mut rounds, mut levels) = (10u64, 1usize, vec![1usize, 8, 64]);
    let (mut pid_file, mut reset_command, mut json) =
        (None::<String>, None::<String>, None::<String>);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{USAGE}"));
        match flag.as_str() {
            "--bosh-url" => url = value,
            "--secs" => secs = value.parse().expect("--secs: a number"),
            "--rounds" => rounds = value.parse().expect("--rounds: a number"),
            "--concurrency" => {
                levels = value
                    .split(',')
                    .map(|n| n.parse().expect("--concurrency: numbers"))
                    .collect()
            }
            "--prosody-pid-file" => pid_file = Some(value),
            "--reset" => reset_command = Some(value),
            "--json" => json = Some(value),
            _ => panic!("{USAGE}"),
        }
    }
    let url: Uri = url.parse().expect("--bosh-url: a URL");

    // Both sides once, to check the CM is there (not counted).
    raw_handshake(&raw_client(), &url)
        .await
        .unwrap_or_else(|e| panic!("raw handshake against {url} failed: {e}"));

    println!(
        "CM {url}, ANONYMOUS on {DOMAIN}; {secs} s per phase, {rounds} round(s) per side and level, alternating order; {}",
        match &reset_command {
            Some(command) => format!("`{command}` before each phase"),
            None => "no reset between phases".to_owned(),
        }
    );
    println!();
    println!(
        "| concurrency | layer handshakes/s | raw handshakes/s | layer / raw | layer latency median / p90 | raw latency median / p90 | errors (layer, raw) | our CPU per handshake (layer, raw) | Prosody CPU per handshake (layer, raw) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut flip = false;
    let mut total_errors = 0;
    let mut json_rows = Vec::new();
    for &concurrency in &levels {
        let (mut layer, mut raw) = (Total::default(), Total::default());
        for _ in 0..rounds {
            let order = if flip {
                [Side::Raw, Side::Layer]
            } else {
                [Side::Layer, Side::Raw]
            };
            flip = !flip;
            for side in order {
                reset(reset_command.as_deref(), &url).await;
                let prosody_pid = pid_file
                    .as_deref()
                    .and_then(|file| std::fs::read_to_string(file).ok())
                    .map(|pid| pid.trim().to_owned());
                let result = phase(side, concurrency, secs, &url, prosody_pid.as_deref()).await;
                if let Some(error) = &result.first_error {
                    eprintln!(
                        "{} at concurrency {concurrency}: {} errors, first: {error}",
                        side.name(),
                        result.errors
                    );
                }
                eprintln!(
                    "  {:>5} c={concurrency:<3} {:8.1} handshakes/s ({} in {:.1} s)",
                    side.name(),
                    result.ok as f64 / result.secs,
                    result.ok,
                    result.secs
                );
                match side {
                    Side::Layer => layer.add(result),
                    Side::Raw => raw.add(result),
                }
                // Let the last responses and connection closes settle.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        total_errors += layer.errors + raw.errors;
        let ratio = layer.rate() / raw.rate();
        let cpu = |t: &Total| t.own_cpu_s / t.ok as f64 * 1e6;
        let prosody = |t: &Total| t.prosody_cpu_s.map(|s| s / t.ok as f64 * 1e3);
        let (lm, lp) = (
            quantile(&mut layer.latencies_ms, 0.5),
            quantile(&mut layer.latencies_ms, 0.9),
        );
        let (rm, rp) = (
            quantile(&mut raw.latencies_ms, 0.5),
            quantile(&mut raw.latencies_ms, 0.9),
        );
        let prosody_text = match (prosody(&layer), prosody(&raw)) {
            (Some(a), Some(b)) => format!("{a:.2} ms, {b:.2} ms"),
            _ => "–".to_owned(),
        };
        println!(
            "| {concurrency} | {:.0} | {:.0} | {:.1} % | {lm:.2} / {lp:.2} ms | {rm:.2} / {rp:.2} ms | {}, {} | {:.0} µs, {:.0} µs | {prosody_text} |",
            layer.rate(),
            raw.rate(),
            ratio * 100.0,
            layer.errors,
            raw.errors,
            cpu(&layer),
            cpu(&raw),
        );
        let rates = |t: &Total| {
            t.rates
                .iter()
                .map(|r| format!("{r:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        json_rows.push(format!(
            "{{\"concurrency\": {concurrency}, \"layer_per_s\": {:.2}, \"raw_per_s\": {:.2}, \"ratio\": {ratio:.4}, \
             \"layer_phase_rates\": [{}], \"raw_phase_rates\": [{}], \
             \"layer_latency_median_ms\": {lm:.3}, \"layer_latency_p90_ms\": {lp:.3}, \"raw_latency_median_ms\": {rm:.3}, \"raw_latency_p90_ms\": {rp:.3}, \
             \"layer_errors\": {}, \"raw_errors\": {}, \"layer_ok\": {}, \"raw_ok\": {}, \
             \"layer_cpu_us_per_handshake\": {:.1}, \"raw_cpu_us_per_handshake\": {:.1}, \
             \"prosody_cpu_ms_per_handshake_layer\": {}, \"prosody_cpu_ms_per_handshake_raw\": {}}}",
            layer.rate(),
            raw.rate(),
            rates(&layer),
            rates(&raw),
            layer.errors,
            raw.errors,
            layer.ok,
            raw.ok,
            cpu(&layer),
            cpu(&raw),
            prosody(&layer).map_or("null".to_owned(), |v| format!("{v:.3}")),
            prosody(&raw).map_or("null".to_owned(), |v| format!("{v:.3}")),
        ));
    }
    if let Some(path) = json {
        std::fs::write(
            &path,
            format!(
                "{{\"bosh_url\": \"{url}\", \"secs\": {secs}, \"rounds\": {rounds}, \"reset_between_phases\": {}, \"levels\": [\n  {}\n]}}\n",
                reset_command.is_some(),
                json_rows.join(",\n  ")
            ),
        )
        .expect("--json: writable");
    }
    if total_errors > 0 {
        eprintln!("{total_errors} failed handshakes");
        std::process::exit(1);
    }
}
