//! Prebinds per second across the two-node ejabberd cluster of
//! `scripts/ejabberd-cluster.sh`, three ways, side by side in one run:
//!
//! - `1 app → A`: one app instance (a process of its own running the layer)
//!   pointed at node A;
//! - `2 apps → A, B`: two app instances, one per node (each gets half the
//!   concurrency);
//! - `1 app → [A, B]`: one app instance with both nodes in its URL list
//!   (`PrebindLayer::new_cluster`, round-robin).
//!
//! Each app instance is a child process of this harness (`--worker`), so
//! their CPU is counted apart from ejabberd's: `/proc/<pid>/stat` utime +
//! stime before and after each phase, for every instance (measured by
//! itself) and for both nodes' `beam.smp` (pids read from the cluster's pid
//! files at each phase, so a node restarted meanwhile is still found).
//!
//! Work: `GET /prebind` through the layer (`ServiceExt::oneshot` on a clone),
//! ANONYMOUS on `anon.localhost` (create, auth, restart, bind), sessions left
//! open as a prebind does. At each concurrency level (`--concurrency`,
//! default 8,32,64: the total over the instances) the three set-ups run for
//! `--secs` (default 10) each, in an order that rotates per level and round
//! (`--rounds`, default 1). `--settle S` waits S seconds after each phase
//! and then until both nodes are idle (S above the cluster's
//! `max_inactivity` of 60 s, e.g. 70, so that each phase's sessions are gone
//! before the next, and their expiry does not land in it; otherwise later
//! phases meet nodes holding tens of thousands of live sessions). Any error makes the exit status non-zero.
//!
//! Columns: prebinds/s; latency (per-instance medians and p90s, weighted by
//! prebinds); CPU per prebind of the apps and of each node; cores busy per
//! process and for the whole machine (`/proc/stat`, other users included:
//! when it is at the core count, the machine is the bound, whatever this
//! work's own share); the CPU-bound ceiling (all cores on this work at this
//! CPU cost per prebind). Then an extrapolation to N nodes from the
//! `1 app → A` phase at the last level: the CPU a prebind costs at the node
//! that makes it, and at each other node (Mnesia copies the session tables
//! to every node), so that N nodes on a core each give about
//! N / (owner + (N − 1) × replica) prebinds/s.
//!
//! ```text
//! scripts/ejabberd-cluster.sh up
//! cargo run --release -p perf --example cluster_load -- --secs 10 --concurrency 8,32,64 --settle 70
//! ```

use std::convert::Infallible;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bosh_prebind::{BoshUrl, Credentials, PrebindLayer};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};

const DOMAIN: &str = "anon.localhost";
const USAGE: &str = "usage: cluster_load [--a URL] [--b URL] [--secs S (10)] [--rounds R (1)] \
     [--concurrency 8,32,64] [--settle S (0)] [--pid-files A_PID_FILE,B_PID_FILE] [--json FILE]";

/// User + system CPU seconds of a process (fields 14 and 15 of `stat`, in
/// clock ticks of 1/100 s, as on Linux by default).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Busy and total CPU time of the whole machine, in seconds (`/proc/stat`
/// line `cpu`: busy = everything but idle and iowait).
fn machine_cpu() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some(((total - idle) / 100.0, total / 100.0))
}

fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

// ---------------------------------------------------------------------------
// The app instance (a child process).

/// Runs `concurrency` prebind loops for `secs` through one layer with
/// `urls`; prints `ok errors secs cpu_s median_ms p90_ms first_error`.
async fn worker(urls: Vec<BoshUrl>, concurrency: usize, secs: u64) {
    let app = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let layer = if urls.len() == 1 {
        PrebindLayer::new(urls[0].clone())
    } else {
        PrebindLayer::new_cluster(urls).expect("distinct URLs")
    };
    let service = layer
        .credentials(Credentials::anonymous(DOMAIN))
        .max_concurrent_handshakes(4096)
        .layer(app);
    let errors = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_seconds("self").unwrap_or(0.0);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (service, errors) = (service.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut first_error = None;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let request = Request::get("/prebind").body(Full::default()).unwrap();
                let response = service.clone().oneshot(request).await.unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                if status == StatusCode::OK && body.starts_with(b"{\"jid\"") {
                    latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    first_error.get_or_insert_with(|| {
                        format!("{status}: {}", String::from_utf8_lossy(&body))
                    });
                }
            }
            (latencies, first_error)
        }));
    }
    let mut latencies = Vec::new();
    let mut first_error = None;
    for task in tasks {
        let (mut l, e) = task.await.unwrap();
        latencies.append(&mut l);
        if first_error.is_none() {
            first_error = e;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds("self").unwrap_or(0.0) - cpu_before;
    let (median, p90) = (quantile(&mut latencies, 0.5), quantile(&mut latencies, 0.9));
    println!(
        "{} {} {secs:.3} {cpu:.2} {median:.3} {p90:.3} {}",
        latencies.len(),
        errors.load(Ordering::Relaxed),
        first_error
            .unwrap_or_else(|| "-".to_owned())
            .replace('\n', " ")
    );
}

// ---------------------------------------------------------------------------
// The harness.

#[derive(Clone, Copy, PartialEq)]
enum Setup {
    OneAppOneNode,
    TwoAppsTwoNodes,
    OneAppBothNodes,
}

impl Setup {
    const ALL: [Setup; 3] = [
        Setup::OneAppOneNode,
        Setup::TwoAppsTwoNodes,
        Setup::OneAppBothNodes,
    ];

    fn name(self) -> &'static str {
        match self {
            Setup::OneAppOneNode => "1 app → A",
            Setup::TwoAppsTwoNodes => "2 apps → A, B",
            Setup::OneAppBothNodes => "1 app → [A, B]",
        }
    }

    /// Each instance's URL list and concurrency.
    fn instances(self, a: &str, b: &str, concurrency: usize) -> Vec<(String, usize)> {
        match self {
            Setup::OneAppOneNode => vec![(a.to_owned(), concurrency)],
            Setup::TwoAppsTwoNodes => vec![
                (a.to_owned(), concurrency.div_ceil(2)),
                (b.to_owned(), concurrency / 2),
            ],
            Setup::OneAppBothNodes => vec![(format!("{a},{b}"), concurrency)],
        }
    }
}

#[derive(Default)]
struct Phase {
    ok: u64,
    errors: u64,
    secs: f64,
    app_cpu_s: f64,
    beam_cpu_s: [f64; 2],
    /// All processes of the machine (other users' included).
    machine_busy_s: f64,
    /// Weighted by the instance's prebinds.
    medians: Vec<(f64, u64)>,
    p90s: Vec<(f64, u64)>,
    first_error: Option<String>,
}

fn beam_pids(pid_files: &[String; 2]) -> [Option<String>; 2] {
    pid_files.clone().map(|file| {
        std::fs::read_to_string(file)
            .ok()
            .map(|pid| pid.trim().to_owned())
    })
}

fn phase(
    setup: Setup,
    a: &str,
    b: &str,
    concurrency: usize,
    secs: u64,
    pid_files: &[String; 2],
) -> Phase {
    let pids = beam_pids(pid_files);
    let beam_before = pids.clone().map(|pid| pid.as_deref().and_then(cpu_seconds));
    let machine_before = machine_cpu();
    let exe = std::env::current_exe().expect("the harness's own path");
    let children: Vec<_> = setup
        .instances(a, b, concurrency)
        .into_iter()
        .filter(|(_, c)| *c > 0)
        .map(|(urls, c)| {
            Command::new(&exe)
                .args(["--worker", &urls, &c.to_string(), &secs.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn a worker")
        })
        .collect();
    let mut result = Phase::default();
    for child in children {
        let output = child.wait_with_output().expect("worker output");
        let line = String::from_utf8_lossy(&output.stdout);
        let fields: Vec<&str> = line.trim().splitn(7, ' ').collect();
        assert!(
            output.status.success() && fields.len() == 7,
            "worker failed: {} {line}",
            output.status
        );
        let ok: u64 = fields[0].parse().unwrap();
        result.ok += ok;
        result.errors += fields[1].parse::<u64>().unwrap();
        result.secs = result.secs.max(fields[2].parse().unwrap());
        result.app_cpu_s += fields[3].parse::<f64>().unwrap();
        result.medians.push((fields[4].parse().unwrap(), ok));
        result.p90s.push((fields[5].parse().unwrap(), ok));
        if fields[6] != "-" && result.first_error.is_none() {
            result.first_error = Some(fields[6].to_owned());
        }
    }
    if let (Some(before), Some(after)) = (machine_before, machine_cpu()) {
        result.machine_busy_s = after.0 - before.0;
    }
    let pids_after = beam_pids(pid_files);
    for i in 0..2 {
        // A node restarted during the phase: its CPU is not comparable.
        if pids_after[i] == pids[i] {
            let after = pids[i].as_deref().and_then(cpu_seconds);
            if let (Some(before), Some(after)) = (beam_before[i], after) {
                result.beam_cpu_s[i] = after - before;
            }
        }
    }
    result
}

/// Waits (at most 60 s) until both nodes spent under 3 % of a core over
/// a second.
fn wait_until_idle(pid_files: &[String; 2]) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let pids = beam_pids(pid_files);
        let before = pids.clone().map(|pid| pid.as_deref().and_then(cpu_seconds));
        std::thread::sleep(Duration::from_secs(1));
        let after = pids.map(|pid| pid.as_deref().and_then(cpu_seconds));
        let busy = (0..2).any(|i| match (before[i], after[i]) {
            (Some(b), Some(a)) => a - b > 0.03,
            _ => false,
        });
        if !busy {
            break;
        }
    }
    started.elapsed()
}

/// A weighted mean of per-instance medians (an approximation of the
/// overall median when two instances ran).
fn weighted(values: &[(f64, u64)]) -> f64 {
    let total: u64 = values.iter().map(|(_, n)| n).sum();
    values.iter().map(|(v, n)| v * *n as f64).sum::<f64>() / total.max(1) as f64
}

/// What N nodes would give, from the CPU cost per prebind measured with
/// one app on node A: `owner` at the node that makes the session, `replica`
/// at every other node of the cluster (Mnesia copies the session tables to
/// each), `app` in the app instance. One node per core, apps elsewhere.
fn extrapolate(concurrency: usize, app: f64, owner: f64, replica: f64) {
    println!();
    println!(
        "Extrapolation from `1 app → A` at concurrency {concurrency}: ejabberd CPU per prebind {:.2} ms at the node \
         that makes it + {:.3} ms at each other node (replication), the layer {:.0} µs. With N nodes on a core each \
         and the prebinds spread evenly, each prebind costs {:.2} + (N − 1) × {:.3} ms of ejabberd CPU in all:",
        owner * 1e3,
        replica * 1e3,
        app * 1e6,
        owner * 1e3,
        replica * 1e3,
    );
    println!();
    println!(
        "| nodes (1 core each) | ejabberd CPU per prebind | ceiling, prebinds/s | per node | app cores needed at that rate |"
    );
    println!("|---|---|---|---|---|");
    for n in [1u32, 2, 4, 8, 16] {
        let per_prebind = owner + f64::from(n - 1) * replica;
        let rate = f64::from(n) / per_prebind;
        println!(
            "| {n} | {:.2} ms | {rate:.0} | {:.0} | {:.1} |",
            per_prebind * 1e3,
            rate / f64::from(n),
            rate * app
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        let urls = args[1]
            .split(',')
            .map(|url| url.parse().expect("a BOSH URL"))
            .collect();
        let concurrency = args[2].parse().expect("a concurrency");
        let secs = args[3].parse().expect("seconds");
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(worker(urls, concurrency, secs));
        return;
    }
    let mut a = "http://127.0.0.1:5381/bosh".to_owned();
    let mut b = "http://127.0.0.1:5382/bosh".to_owned();
    let (mut secs, mut rounds, mut levels) = (10u64, 1usize, vec![8usize, 32, 64]);
    let dir = std::env::var("EJABBERD_CLUSTER_DIR").unwrap_or_else(|_| {
        format!(
            "{}/bosh-prebind-ejabberd-cluster",
            std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".to_owned())
        )
    });
    let mut pid_files = [
        format!("{dir}/a/ejabberd.pid"),
        format!("{dir}/b/ejabberd.pid"),
    ];
    let mut json = None::<String>;
    let mut settle = 0u64;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{USAGE}"));
        match flag.as_str() {
            "--a" => a = value,
            "--b" => b = value,
            "--secs" => secs = value.parse().expect("--secs: a number"),
            "--rounds" => rounds = value.parse().expect("--rounds: a number"),
            "--concurrency" => {
                levels = value
                    .split(',')
                    .map(|n| n.parse().expect("--concurrency: numbers"))
                    .collect()
            }
            "--pid-files" => {
                let (fa, fb) = value.split_once(',').expect("--pid-files A,B");
                pid_files = [fa.to_owned(), fb.to_owned()];
            }
            "--json" => json = Some(value),
            "--settle" => settle = value.parse().expect("--settle: seconds"),
            _ => panic!("{USAGE}"),
        }
    }
    let pids = beam_pids(&pid_files);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "nodes A {a} (beam pid {}), B {b} (beam pid {}); ANONYMOUS on {DOMAIN}; {secs} s per phase, {rounds} round(s); \
         each app instance is a process of its own; {cpus} CPUs",
        pids[0].as_deref().unwrap_or("?"),
        pids[1].as_deref().unwrap_or("?"),
    );
    println!();
    println!(
        "| concurrency (total) | set-up | prebinds/s | errors | latency median / p90 | app CPU per prebind | ejabberd CPU per prebind: A + B | cores busy: apps + ejabberd A + B | cores busy, whole machine | CPU-bound ceiling, {cpus} cores |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    if settle > 0 {
        // Sessions of an earlier run may still be ending.
        let waited = wait_until_idle(&pid_files);
        eprintln!("  (nodes idle after {:.0} s)", waited.as_secs_f64());
    }
    let mut total_errors = 0;
    let mut rows = Vec::new();
    // CPU seconds per prebind in `1 app → A` at the last level: the app,
    // node A (which makes the session) and node B (which only replicates).
    let mut costs = None;
    let mut rotation = 0;
    for &concurrency in &levels {
        let mut totals: Vec<(Setup, Phase)> =
            Setup::ALL.iter().map(|&s| (s, Phase::default())).collect();
        for _ in 0..rounds {
            for k in 0..3 {
                let setup = Setup::ALL[(rotation + k) % 3];
                let result = phase(setup, &a, &b, concurrency, secs, &pid_files);
                eprintln!(
                    "  c={concurrency:<3} {:<15} {:8.1} prebinds/s ({} in {:.1} s, {} errors{})",
                    setup.name(),
                    result.ok as f64 / result.secs,
                    result.ok,
                    result.secs,
                    result.errors,
                    result
                        .first_error
                        .as_deref()
                        .map(|e| format!(", first: {e}"))
                        .unwrap_or_default()
                );
                let total = &mut totals.iter_mut().find(|(s, _)| *s == setup).unwrap().1;
                total.ok += result.ok;
                total.errors += result.errors;
                total.secs += result.secs;
                total.app_cpu_s += result.app_cpu_s;
                total.beam_cpu_s[0] += result.beam_cpu_s[0];
                total.beam_cpu_s[1] += result.beam_cpu_s[1];
                total.machine_busy_s += result.machine_busy_s;
                total.medians.extend(result.medians);
                total.p90s.extend(result.p90s);
                // Let connections close, and (--settle) the phase's sessions
                // expire at the nodes (mod_bosh max_inactivity): every phase
                // then meets nodes with about as few live sessions. Then wait
                // for both nodes to be idle: ending thousands of expired
                // sessions keeps them busy for a while after the expiry.
                std::thread::sleep(Duration::from_millis(500).max(Duration::from_secs(settle)));
                if settle > 0 {
                    let waited = wait_until_idle(&pid_files);
                    eprintln!(
                        "        (nodes idle after {:.0} s more)",
                        waited.as_secs_f64()
                    );
                }
            }
            rotation += 1;
        }
        for (setup, t) in &totals {
            total_errors += t.errors;
            let rate = t.ok as f64 / t.secs;
            let per = |cpu: f64| cpu / t.ok.max(1) as f64;
            let beam = t.beam_cpu_s[0] + t.beam_cpu_s[1];
            // Every core of the machine on this work alone (apps and
            // ejabberd), at this CPU cost per prebind.
            let ceiling = cpus as f64 / per(t.app_cpu_s + beam);
            println!(
                "| {concurrency} | {} | {rate:.0} | {} | {:.1} / {:.1} ms | {:.0} µs | {:.2} + {:.2} ms | {:.2} + {:.2} + {:.2} | {:.2} | {ceiling:.0}/s |",
                setup.name(),
                t.errors,
                weighted(&t.medians),
                weighted(&t.p90s),
                per(t.app_cpu_s) * 1e6,
                per(t.beam_cpu_s[0]) * 1e3,
                per(t.beam_cpu_s[1]) * 1e3,
                t.app_cpu_s / t.secs,
                t.beam_cpu_s[0] / t.secs,
                t.beam_cpu_s[1] / t.secs,
                t.machine_busy_s / t.secs,
            );
            if *setup == Setup::OneAppOneNode && t.ok > 0 {
                costs = Some((
                    concurrency,
                    per(t.app_cpu_s),
                    per(t.beam_cpu_s[0]),
                    per(t.beam_cpu_s[1]),
                ));
            }
            rows.push(format!(
                "{{\"concurrency\": {concurrency}, \"setup\": \"{}\", \"per_s\": {rate:.2}, \"ok\": {}, \"errors\": {}, \
                 \"median_ms\": {:.3}, \"p90_ms\": {:.3}, \"app_cpu_us_per_prebind\": {:.1}, \"ejabberd_cpu_ms_per_prebind\": {:.3}, \
                 \"cores_app\": {:.3}, \"cores_a\": {:.3}, \"cores_b\": {:.3}, \"cores_machine\": {:.3}}}",
                setup.name(),
                t.ok,
                t.errors,
                weighted(&t.medians),
                weighted(&t.p90s),
                per(t.app_cpu_s) * 1e6,
                per(beam) * 1e3,
                t.app_cpu_s / t.secs,
                t.beam_cpu_s[0] / t.secs,
                t.beam_cpu_s[1] / t.secs,
                t.machine_busy_s / t.secs,
            ));
        }
    }
    if let Some((concurrency, app, owner, replica)) = costs {
        extrapolate(concurrency, app, owner, replica);
    }
    if let Some(path) = json {
        std::fs::write(
            &path,
            format!(
                "{{\"a\": \"{a}\", \"b\": \"{b}\", \"secs\": {secs}, \"rounds\": {rounds}, \"rows\": [\n  {}\n]}}\n",
                rows.join(",\n  ")
            ),
        )
        .expect("--json: writable");
    }
    if total_errors > 0 {
        eprintln!("{total_errors} failed prebinds");
        std::process::exit(1);
    }
}
