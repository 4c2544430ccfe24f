//! An axum app with XMPP pre-binding.
//!
//! ```text
//! scripts/demo.sh                       # starts Prosody, then this demo
//! cargo run --example demo -- --bosh-url http://127.0.0.1:5280/http-bind
//! curl -s http://127.0.0.1:3000/prebind
//! curl -s -H 'Content-Type: text/xml' -d "<body xmlns='http://jabber.org/protocol/httpbind' rid='1000'/>" \
//!      http://127.0.0.1:3000/prebind
//! ```
//!
//! Flags (each also read from the environment variable in brackets):
//! `--listen ADDR` [`BOSH_PREBIND_LISTEN`, default `127.0.0.1:3000`],
//! `--bosh-url URL` [`BOSH_PREBIND_BOSH_URL`, default `http://127.0.0.1:5280/http-bind`],
//! `--domain DOMAIN` [`BOSH_PREBIND_DOMAIN`, anonymous domain, default `anon.localhost`],
//! `--jid JID --password PASSWORD` [`BOSH_PREBIND_JID`, `BOSH_PREBIND_PASSWORD`]:
//! log in as this account instead of anonymously,
//! `--static-dir DIR` [`BOSH_PREBIND_STATIC_DIR`]: serve DIR at `/`, injecting a
//! session into its `.html` pages (and directory indexes) instead of the
//! built-in page.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use bosh_prebind::{Credentials, PrebindLayer};
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

#[derive(Debug)]
struct Options {
    listen: SocketAddr,
    bosh_url: http::Uri,
    credentials: Credentials,
    static_dir: Option<std::path::PathBuf>,
}

const USAGE: &str = "usage: demo [--listen ADDR] [--bosh-url URL] [--domain DOMAIN] [--jid JID --password PASSWORD] [--static-dir DIR]";
const FLAGS: [&str; 6] = [
    "listen",
    "bosh-url",
    "domain",
    "jid",
    "password",
    "static-dir",
];

fn options() -> Result<Options, String> {
    let mut values = std::collections::HashMap::new();
    for (flag, var) in [
        ("listen", "BOSH_PREBIND_LISTEN"),
        ("bosh-url", "BOSH_PREBIND_BOSH_URL"),
        ("domain", "BOSH_PREBIND_DOMAIN"),
        ("jid", "BOSH_PREBIND_JID"),
        ("password", "BOSH_PREBIND_PASSWORD"),
        ("static-dir", "BOSH_PREBIND_STATIC_DIR"),
    ] {
        if let Ok(value) = std::env::var(var) {
            values.insert(flag.to_owned(), value);
        }
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Err(USAGE.to_owned());
        }
        let (flag, value) = match arg.strip_prefix("--").and_then(|a| a.split_once('=')) {
            Some((flag, value)) => (flag.to_owned(), value.to_owned()),
            None => {
                let flag = arg
                    .strip_prefix("--")
                    .ok_or_else(|| format!("unexpected argument {arg:?}\n{USAGE}"))?;
                let value = args
                    .next()
                    .ok_or_else(|| format!("--{flag} needs a value\n{USAGE}"))?;
                (flag.to_owned(), value)
            }
        };
        if !FLAGS.contains(&flag.as_str()) {
            return Err(format!("unknown flag --{flag}\n{USAGE}"));
        }
        values.insert(flag, value);
    }
    let get = |flag: &str, default: &str| {
        values
            .get(flag)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    let listen = get("listen", "127.0.0.1:3000")
        .parse()
        .map_err(|e| format!("--listen: {e}"))?;
    let bosh_url = get("bosh-url", "http://127.0.0.1:5280/http-bind")
        .parse()
        .map_err(|e| format!("--bosh-url: {e}"))?;
    let credentials = match (values.get("jid"), values.get("password")) {
        (Some(jid), Some(password)) => {
            Credentials::account(jid, password).map_err(|e| format!("--jid: {e}"))?
        }
        (None, None) => Credentials::anonymous(get("domain", "anon.localhost")),
        _ => return Err(format!("--jid and --password go together\n{USAGE}")),
    };
    let static_dir = values.get("static-dir").map(std::path::PathBuf::from);
    if let Some(dir) = &static_dir {
        if !dir.is_dir() {
            return Err(format!(
                "--static-dir: {} is not a directory",
                dir.display()
            ));
        }
    }
    Ok(Options {
        listen,
        bosh_url,
        credentials,
        static_dir,
    })
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>bosh-prebind demo</title></head>
<body>
<h1>bosh-prebind demo</h1>
<p>This server pre-binds XMPP sessions. This page came with one already injected
(zero round trips):</p>
<pre id="injected"></pre>
<p><code>GET /prebind</code> answers JSON (Converse.js <code>prebind_url</code>), <code>POST /prebind</code>
answers a BOSH <code>&lt;body/&gt;</code>.</p>
<button id="go">GET /prebind</button>
<pre id="out"></pre>
<script>
const snippet = document.getElementById('xmpp-prebind');
document.getElementById('injected').textContent =
  snippet ? JSON.stringify(JSON.parse(snippet.textContent), null, 2) : 'no session injected';
document.getElementById('go').onclick = async () => {
  const started = performance.now();
  const response = await fetch('/prebind');
  const text = await response.text();
  document.getElementById('out').textContent =
    response.status + ' in ' + (performance.now() - started).toFixed(1) + ' ms\n' + text;
};
</script>
</body>
</html>
"#;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,bosh_prebind=debug".into()),
        )
        .init();
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };

    // Browsers attach at /http-bind on this origin: no CORS set-up needed.
    let prebind = PrebindLayer::new(options.bosh_url.clone())
        .credentials(options.credentials.clone())
        .bosh_passthrough("/http-bind");
    let app = match &options.static_dir {
        // Pages of the directory, and its indexes, get a session.
        Some(dir) => Router::new()
            .fallback_service(ServeDir::new(dir))
            .layer(prebind.inject_when(|head| {
                let path = head.uri.path();
                path.ends_with(".html") || path.ends_with(".htm") || path.ends_with('/')
            })),
        None => Router::new()
            .route("/", get(|| async { Html(PAGE) }))
            .layer(prebind.inject_path("/")),
    }
    .layer(TraceLayer::new_for_http());

    let listener = match tokio::net::TcpListener::bind(options.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {}: {error}", options.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        "demo on http://{} (CM {}, logging in as {:?})",
        options.listen,
        options.bosh_url,
        options.credentials
    );
    if let Err(error) = axum::serve(listener, app).await {
        eprintln!("server error: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
