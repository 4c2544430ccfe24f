//! `bosh-prebind-gateway`: a reverse proxy that gives any web app (PHP,
//! Django, Rails, a static site...) XMPP pre-binding without a code change:
//! its HTML pages come out with a session injected, and `/prebind` and
//! `/http-bind` work on its origin. See `README.md` for the flags, a systemd
//! unit and the security notes.
//!
//! ```text
//! client ─► health path        200 "ok", nothing else involved
//!        └► TraceLayer            logs each request and response
//!            └─► TimeoutLayer       504 if no response head within 75 s
//!                 └─► CompressionLayer  gzip when the client accepts it
//!                      └─► PrebindLayer   /prebind, /http-bind ─► XMPP server (BOSH)
//!                           │             HTML pages: session injected as they stream
//!                           └─► upstream   everything else ─► --upstream app
//! ```
//!
//! Compression must stay *outside* the prebind layer. The injector rewrites
//! plain HTML only: on the pages it injects into it removes `Accept-Encoding`,
//! so the app answers in clear, and the gzip layer outside compresses the
//! page *with* its session. Put inside, the gzip layer would never see the
//! client's `Accept-Encoding` on those pages (HTML would go out unzipped),
//! and what it did compress would be gzip bytes the injector must leave
//! alone. The timeout is longer than a held BOSH request (`wait` 59 s plus
//! the CM request timeout), which also crosses the stack on its way to
//! `/http-bind`.
//!
//! Pages: `GET`s under an `--inject-prefix` that are page loads
//! (`Sec-Fetch-Dest: document` or `iframe` when the client says, else a path
//! not ending in a static-asset extension) and that the app answers with
//! 200 `text/html`. The filter spares the XMPP server a session opened and
//! dropped for each image, stylesheet and script.
//!
//! On startup the gateway prints `gateway listening on http://ADDR` (alone on
//! stdout; logs go to stderr); on SIGINT or SIGTERM it stops accepting and
//! lets requests finish (`--shutdown-timeout`, 10 s).

mod cli;
mod proxy;
mod server;

use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

/// Completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed at
/// once, before the listening line is printed, so a supervisor's early
/// SIGTERM is a graceful shutdown too.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "shutdown requested");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown requested (Ctrl-C)");
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // Errors and --help/--version exit here (2 for a bad command line).
    let args = cli::Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr) // stdout has only the listening line
        // Colors on a terminal only (journald and log files get plain text).
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=debug".into()),
        )
        .init();
    let config = match args.into_config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let shutdown = match shutdown_signal() {
        Ok(shutdown) => shutdown,
        Err(error) => {
            eprintln!("error: cannot install the signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on {}: {error}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let address = listener.local_addr().unwrap_or(config.listen);
    println!("gateway listening on http://{address}");
    tracing::info!(
        upstream = %config.upstream,
        cm = ?config.bosh_urls,
        credentials = ?config.credentials,
        inject_prefixes = ?config.inject_prefixes,
        "proxying"
    );
    server::serve(listener, &config, shutdown).await;
    ExitCode::SUCCESS
}
