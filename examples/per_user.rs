//! A per-user site: the site's own login decides who the XMPP session is for.
//!
//! ```text
//! scripts/prosody.sh start       # accounts alice@localhost, bob@localhost; anon.localhost
//! cargo run --example per_user   # http://127.0.0.1:3001/
//! ```
//!
//! - The site's auth middleware (a toy: a login form, a random session id in
//!   an `HttpOnly` cookie, sessions in an in-memory map) finds the user and
//!   puts their [`Credentials`] into the request extensions. The XMPP
//!   passwords stay on the server; the browser only ever sees its session.
//! - The prebind layer reads them ([`FromExtensions`](bosh_prebind::FromExtensions)),
//!   and logs guests in anonymously: `credentials_from_extensions_or_anonymous`.
//! - Order: **auth outside the prebind layer**. In axum the layer added last
//!   runs first, so `.layer(prebind).layer(auth)` means a request goes
//!   through `auth` and then `prebind`. The other way round, the prebind layer
//!   looks for credentials before `auth` has put any there: `/prebind`
//!   answers 401 and pages are served without a session, silently.
//! - `/` is the chat page: Converse.js 14 on the injected session (zero round
//!   trips), with `jid` rendered from the same credentials (the user's bare
//!   JID, or the anonymous domain for guests). Converse's fallback
//!   `GET /prebind` is same-origin, so it carries the session cookie too.
//! - Signing out or in as someone else logs out of Converse first (ending the
//!   XMPP session and clearing its keepalive store in sessionStorage), and a
//!   stored session of another user is never restored.
//!
//! Flags (and environment variables): `--listen ADDR` [`BOSH_PREBIND_LISTEN`,
//! default `127.0.0.1:3001`], `--bosh-url URL` [`BOSH_PREBIND_BOSH_URL`,
//! default `http://127.0.0.1:5280/http-bind`], `--domain DOMAIN`
//! [`BOSH_PREBIND_DOMAIN`, guests' anonymous domain, default `anon.localhost`],
//! `--converse DIR` [`BOSH_PREBIND_CONVERSE`, default the npm package's
//! `browser/node_modules/converse.js/dist`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use bosh_prebind::http::{self, header}; // the http crate, re-exported
use bosh_prebind::{Credentials, PrebindLayer};
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

/// A user of the site, with the XMPP account the site logs them in as.
struct User {
    name: &'static str,
    /// The site's own password (a real site stores a hash).
    site_password: &'static str,
    jid: &'static str,
    /// Held by the server only; never sent to the browser.
    xmpp_password: &'static str,
}

/// The accounts of the test Prosody (`scripts/prosody.sh`).
const USERS: [User; 2] = [
    User {
        name: "alice",
        site_password: "wonderland",
        jid: "alice@localhost",
        xmpp_password: "secret-alice",
    },
    User {
        name: "bob",
        site_password: "builder",
        jid: "bob@localhost",
        xmpp_password: "secret-bob",
    },
];

const COOKIE: &str = "site_session";
const PAGE: &str = include_str!("per_user/index.html");
const CONVERSE_SCRIPT: &str = include_str!("demo/converse-prebind.js");
const DEFAULT_CONVERSE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/browser/node_modules/converse.js/dist"
);

/// The site's sessions: random id → user.
#[derive(Clone, Default)]
struct Sessions(Arc<Mutex<HashMap<String, &'static User>>>);

impl Sessions {
    fn user(&self, id: &str) -> Option<&'static User> {
        self.0.lock().ok()?.get(id).copied()
    }
    fn start(&self, user: &'static User) -> Option<String> {
        let id = format!("{:032x}", rand::random::<u128>());
        self.0.lock().ok()?.insert(id.clone(), user);
        Some(id)
    }
    fn end(&self, id: &str) {
        if let Ok(mut sessions) = self.0.lock() {
            sessions.remove(id);
        }
    }
}

/// The signed-in user, for the handlers.
#[derive(Clone, Copy)]
struct SignedIn(&'static User);

fn session_id(request: &http::request::Parts) -> Option<&str> {
    request
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The site's auth middleware: finds the user of the session cookie and puts
/// the XMPP [`Credentials`] they log in with into the request extensions, for
/// the prebind layer inside it (and [`SignedIn`] for the handlers).
async fn auth(State(sessions): State<Sessions>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    if let Some(user) = session_id(&parts).and_then(|id| sessions.user(id)) {
        match Credentials::account(user.jid, user.xmpp_password) {
            Ok(credentials) => {
                parts.extensions.insert(credentials);
                parts.extensions.insert(SignedIn(user));
            }
            Err(error) => tracing::error!(%error, "bad account in the user table"),
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

/// The chat page; the prebind layer injects the session into it.
async fn chat_page(
    Extension(domain): Extension<AnonymousDomain>,
    credentials: Option<Extension<Credentials>>,
    user: Option<Extension<SignedIn>>,
) -> Html<String> {
    // The JID Converse expects, from the very credentials the layer logs in with.
    let jid = credentials
        .and_then(|Extension(credentials)| credentials.bare_jid())
        .unwrap_or(domain.0.to_string());
    let (who, logout_hidden) = match user {
        Some(Extension(SignedIn(user))) => (format!("signed in as {}", user.name), ""),
        None => ("guest (anonymous chat)".to_owned(), "hidden"),
    };
    Html(
        PAGE.replace("{{JID}}", &escape(&jid))
            .replace("{{WHO}}", &escape(&who))
            .replace("{{LOGOUT_HIDDEN}}", logout_hidden),
    )
}

#[derive(Clone)]
struct AnonymousDomain(Arc<str>);

async fn login(
    State(sessions): State<Sessions>,
    request_head: http::HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let user = USERS.iter().find(|user| {
        form.get("user").map(String::as_str) == Some(user.name)
            && form.get("password").map(String::as_str) == Some(user.site_password)
    });
    let Some(user) = user else {
        return (
            http::StatusCode::UNAUTHORIZED,
            Html("wrong user or password; <a href=\"/\">back</a>"),
        )
            .into_response();
    };
    // Signing in replaces any earlier site session of this browser.
    if let Some(old) = cookie_in(&request_head) {
        sessions.end(&old);
    }
    let Some(id) = sessions.start(user) else {
        return http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn logout(State(sessions): State<Sessions>, request_head: http::HeaderMap) -> Response {
    if let Some(id) = cookie_in(&request_head) {
        sessions.end(&id);
    }
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

fn cookie_in(headers: &http::HeaderMap) -> Option<String> {
    let mut request = http::Request::new(());
    *request.headers_mut() = headers.clone();
    let (parts, ()) = request.into_parts();
    session_id(&parts).map(str::to_owned)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct Options {
    listen: SocketAddr,
    bosh_url: bosh_prebind::BoshUrl,
    domain: String,
    converse: std::path::PathBuf,
}

const USAGE: &str =
    "usage: per_user [--listen ADDR] [--bosh-url URL] [--domain DOMAIN] [--converse DIR]";

fn options() -> Result<Options, String> {
    let mut values = HashMap::new();
    for (flag, var) in [
        ("listen", "BOSH_PREBIND_LISTEN"),
        ("bosh-url", "BOSH_PREBIND_BOSH_URL"),
        ("domain", "BOSH_PREBIND_DOMAIN"),
        ("converse", "BOSH_PREBIND_CONVERSE"),
    ] {
        if let Ok(value) = std::env::var(var) {
            values.insert(flag.to_owned(), value);
        }
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let flag = arg
            .strip_prefix("--")
            .filter(|flag| ["listen", "bosh-url", "domain", "converse"].contains(flag))
            .ok_or_else(|| USAGE.to_owned())?;
        let value = args
            .next()
            .ok_or_else(|| format!("--{flag} needs a value\n{USAGE}"))?;
        values.insert(flag.to_owned(), value);
    }
    let get = |flag: &str, default: &str| values.get(flag).cloned().unwrap_or(default.to_owned());
    Ok(Options {
        listen: get("listen", "127.0.0.1:3001")
            .parse()
            .map_err(|e| format!("--listen: {e}"))?,
        bosh_url: get("bosh-url", "http://127.0.0.1:5280/http-bind")
            .parse()
            .map_err(|e| format!("--bosh-url: {e}"))?,
        domain: get("domain", "anon.localhost"),
        converse: get("converse", DEFAULT_CONVERSE).into(),
    })
}

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
    let sessions = Sessions::default();

    let prebind = PrebindLayer::new(options.bosh_url.clone())
        // The user's credentials from the extensions (put there by `auth`),
        // else an anonymous session on the guests' domain (allowed by this).
        .credentials_from_extensions_or_anonymous(&options.domain)
        // The users' domain: no session is opened anywhere else.
        .allow_domain("localhost")
        .bosh_passthrough("/http-bind")
        .inject_path("/");

    let app = Router::new()
        .route("/", get(chat_page))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route(
            "/converse-prebind.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    CONVERSE_SCRIPT,
                )
            }),
        )
        .nest_service("/vendor/converse", ServeDir::new(&options.converse))
        .layer(Extension(AnonymousDomain(options.domain.as_str().into())))
        .with_state(sessions.clone())
        // Inside `auth`: it runs second and finds the credentials `auth` inserted.
        .layer(prebind)
        // Outside: runs first, for every request, /prebind and /http-bind included.
        .layer(middleware::from_fn_with_state(sessions, auth))
        .layer(TraceLayer::new_for_http());

    let listener = match tokio::net::TcpListener::bind(options.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {}: {error}", options.listen);
            return ExitCode::FAILURE;
        }
    };
    let address = listener.local_addr().unwrap_or(options.listen);
    tracing::info!(
        "per-user site on http://{address} (CM {})",
        options.bosh_url
    );
    if let Err(error) = axum::serve(listener, app).await {
        eprintln!("server error: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
