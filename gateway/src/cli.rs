//! The command line: every setting is a flag and an environment variable
//! (`BOSH_PREBIND_*`); a flag given on the command line wins over its variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bosh_prebind::transport::HttpTransportBuilder;
use bosh_prebind::{BoshUrl, Credentials, HttpTransport, PrebindLayer};
use clap::Parser;
use http::Uri;

/// The XMPP BOSH CM's `wait` the browsers get at most (the layer's default,
/// which Converse.js also uses): a held request lasts that long.
const MAX_WAIT_SECS: u64 = 59;

/// A reverse proxy that gives any web app XMPP pre-binding without a code
/// change: HTML pages come out with a session injected, and `/prebind` and
/// `/http-bind` work on the app's origin.
#[derive(Debug, Parser)]
#[command(name = "bosh-prebind-gateway", version, max_term_width = 100)]
pub(crate) struct Args {
    /// Address to listen on (port 0: any free port; the line printed on
    /// stdout names it).
    #[arg(
        long,
        env = "BOSH_PREBIND_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:3080"
    )]
    listen: SocketAddr,

    /// The web app: `http://host:port` (no path; paths are forwarded as they
    /// come).
    #[arg(long, env = "BOSH_PREBIND_UPSTREAM", value_name = "URL")]
    upstream: String,

    /// The XMPP server's BOSH URL (connection manager), `http://` or
    /// `https://`. Repeat it for each node of a cluster with no load
    /// balancer in front (the variable takes a comma-separated list):
    /// prebinds go round-robin to the nodes that answer, and sessions
    /// attach through `--bosh-path`/INDEX, forwarded to the node that made
    /// them.
    #[arg(
        long = "bosh-url",
        env = "BOSH_PREBIND_BOSH_URL",
        value_name = "URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:5280/http-bind"
    )]
    bosh_urls: Vec<String>,

    /// Also trust the CA certificates in this PEM file for `https://` to the
    /// CM (a private CA; the public roots stay trusted). Repeatable.
    #[arg(long = "ca-file", env = "BOSH_PREBIND_CA_FILE", value_name = "PEM")]
    ca_files: Vec<PathBuf>,

    /// Anonymous sessions on this domain (the default unless --jid is given;
    /// `anon.localhost` when neither is).
    #[arg(long, env = "BOSH_PREBIND_DOMAIN", value_name = "DOMAIN")]
    domain: Option<String>,

    /// Log every session in as this account instead (with --password or
    /// --password-file).
    #[arg(long, env = "BOSH_PREBIND_JID", value_name = "JID")]
    jid: Option<String>,

    /// The account's password (visible in the process list as a flag:
    /// prefer the variable or --password-file).
    #[arg(
        long,
        env = "BOSH_PREBIND_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        conflicts_with = "password_file"
    )]
    password: Option<String>,

    /// Read the account's password from this file (one trailing newline is
    /// ignored), e.g. a systemd credential.
    #[arg(long, env = "BOSH_PREBIND_PASSWORD_FILE", value_name = "PATH")]
    password_file: Option<PathBuf>,

    /// Pages under this path prefix get a session (repeatable; the variable
    /// takes a comma-separated list).
    #[arg(
        long = "inject-prefix",
        env = "BOSH_PREBIND_INJECT_PREFIX",
        value_name = "PREFIX",
        value_delimiter = ',',
        default_value = "/"
    )]
    inject_prefixes: Vec<String>,

    /// Where browsers ask for a session (`POST` XML, `GET` JSON).
    #[arg(
        long,
        env = "BOSH_PREBIND_PREBIND_PATH",
        value_name = "PATH",
        default_value = "/prebind"
    )]
    prebind_path: String,

    /// Where browsers reach the CM on this origin (forwarded to --bosh-url).
    #[arg(
        long,
        env = "BOSH_PREBIND_BOSH_PATH",
        value_name = "PATH",
        default_value = "/http-bind"
    )]
    bosh_path: String,

    /// Answered by the gateway itself: `200 ok`, no upstream or CM request
    /// (for load balancers and monitoring).
    #[arg(
        long,
        env = "BOSH_PREBIND_HEALTH_PATH",
        value_name = "PATH",
        default_value = "/healthz"
    )]
    health_path: String,

    /// Timeout of each request to the CM, in seconds.
    #[arg(long, env = "BOSH_PREBIND_REQUEST_TIMEOUT", value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    request_timeout: u64,

    /// Deadline of a whole login (all its requests to the CM), in seconds.
    #[arg(long, env = "BOSH_PREBIND_HANDSHAKE_TIMEOUT", value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    handshake_timeout: u64,

    /// Logins in flight at once; beyond it `/prebind` answers 503 and pages
    /// get the error object.
    #[arg(long, env = "BOSH_PREBIND_MAX_HANDSHAKES", value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_handshakes: u64,

    /// Keep up to N sessions logged in ahead of demand (the warm pool): a
    /// page or /prebind then takes one with no round trip to the XMPP
    /// server. The size follows demand (none when the site is quiet); 0:
    /// no pool. Pooled sessions are terminated on shutdown.
    #[arg(long, env = "BOSH_PREBIND_POOL", value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pool: u64,

    /// Session reuse across page views: a page request carrying this cookie
    /// (set by the page's script when the tab navigates while it holds a
    /// live session) gets `{"reuse":true,…}` instead of a new session. Off
    /// unless given: every script on the injected pages must understand it.
    #[arg(long, env = "BOSH_PREBIND_REUSE_COOKIE", value_name = "NAME", value_parser = cookie_name)]
    reuse_cookie: Option<String>,

    /// Time to the response head of any request, in seconds (504 after it).
    /// Must exceed a held BOSH request: 59 s plus --request-timeout.
    #[arg(long, env = "BOSH_PREBIND_RESPONSE_TIMEOUT", value_name = "SECS", default_value_t = 75, value_parser = clap::value_parser!(u64).range(1..=3600))]
    response_timeout: u64,

    /// Timeout of a TCP connect to the upstream, in seconds (502 after it).
    #[arg(long, env = "BOSH_PREBIND_UPSTREAM_CONNECT_TIMEOUT", value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    upstream_connect_timeout: u64,

    /// On SIGTERM or SIGINT: how long open requests may still take, in
    /// seconds, before their connections are closed.
    #[arg(long, env = "BOSH_PREBIND_SHUTDOWN_TIMEOUT", value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    shutdown_timeout: u64,
}

/// The checked settings.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) listen: SocketAddr,
    /// `http://host:port/`: only the scheme and authority are used.
    pub(crate) upstream: Uri,
    /// The CMs: one, or the nodes of a cluster.
    pub(crate) bosh_urls: Vec<BoshUrl>,
    /// The layer with those CMs and the client to them (with the CAs of
    /// `--ca-file`); the other settings are added by `server`.
    pub(crate) prebind: PrebindLayer<HttpTransport>,
    pub(crate) credentials: Credentials,
    pub(crate) inject_prefixes: Vec<String>,
    pub(crate) prebind_path: String,
    pub(crate) bosh_path: String,
    pub(crate) health_path: String,
    pub(crate) request_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_handshakes: usize,
    /// The warm pool's largest size (0: none).
    pub(crate) pool: usize,
    /// The reuse cookie's name, if reuse is on.
    pub(crate) reuse_cookie: Option<String>,
    pub(crate) response_timeout: Duration,
    pub(crate) upstream_connect_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
}

/// A cookie name (RFC 6265 §4.1.1: a token), kept to letters, digits, `-`,
/// `_` and `.` so that page scripts can write it as is.
fn cookie_name(name: &str) -> Result<String, String> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        Ok(name.to_owned())
    } else {
        Err(format!("{name:?}: letters, digits, '-', '_' and '.' only"))
    }
}

impl Args {
    /// Checks what clap cannot: URLs, paths, credentials, timeouts together.
    pub(crate) fn into_config(self) -> Result<Config, String> {
        let upstream = http_url("--upstream", &self.upstream)?;
        if upstream.path() != "/" || upstream.query().is_some() {
            return Err(format!(
                "--upstream {upstream}: give only http://host:port (paths are forwarded as they come)"
            ));
        }
        let bosh_urls = self
            .bosh_urls
            .iter()
            .map(|url| {
                url.parse::<BoshUrl>()
                    .map_err(|e| format!("--bosh-url {url:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Checks the list too: empty, or a URL given twice.
        let prebind = PrebindLayer::cluster_with_transport(bosh_urls.clone(), self.cm_transport()?)
            .map_err(|e| format!("--bosh-url: {e}"))?;
        let credentials = self.credentials()?;
        for (flag, path) in [
            ("--prebind-path", &self.prebind_path),
            ("--bosh-path", &self.bosh_path),
            ("--health-path", &self.health_path),
        ]
        .into_iter()
        .chain(self.inject_prefixes.iter().map(|p| ("--inject-prefix", p)))
        {
            if !path.starts_with('/') {
                return Err(format!("{flag} {path:?}: must start with '/'"));
            }
        }
        let paths = [&self.prebind_path, &self.bosh_path, &self.health_path];
        if paths[0] == paths[1] || paths[0] == paths[2] || paths[1] == paths[2] {
            return Err(format!(
                "--prebind-path, --bosh-path and --health-path must differ: {paths:?}"
            ));
        }
        let held = MAX_WAIT_SECS + self.request_timeout;
        if self.response_timeout <= held {
            return Err(format!(
                "--response-timeout {}: must exceed a held BOSH request ({MAX_WAIT_SECS} s + --request-timeout {} s)",
                self.response_timeout, self.request_timeout
            ));
        }
        Ok(Config {
            listen: self.listen,
            upstream,
            bosh_urls,
            prebind,
            credentials,
            inject_prefixes: self.inject_prefixes,
            prebind_path: self.prebind_path,
            bosh_path: self.bosh_path,
            health_path: self.health_path,
            request_timeout: Duration::from_secs(self.request_timeout),
            handshake_timeout: Duration::from_secs(self.handshake_timeout),
            max_handshakes: usize::try_from(self.max_handshakes).unwrap_or(usize::MAX),
            pool: usize::try_from(self.pool).unwrap_or(usize::MAX),
            reuse_cookie: self.reuse_cookie,
            response_timeout: Duration::from_secs(self.response_timeout),
            upstream_connect_timeout: Duration::from_secs(self.upstream_connect_timeout),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
        })
    }

    /// The default transport, trusting the `--ca-file` CAs too.
    fn cm_transport(&self) -> Result<HttpTransport, String> {
        let builder = HttpTransportBuilder::new();
        #[cfg(feature = "rustls")]
        let builder = self.ca_files.iter().try_fold(builder, |builder, file| {
            builder.ca_file(file).map_err(|e| format!("--ca-file: {e}"))
        })?;
        #[cfg(not(feature = "rustls"))]
        if !self.ca_files.is_empty() {
            return Err(
                "--ca-file: this gateway was built without TLS (feature `rustls`)".to_owned(),
            );
        }
        Ok(builder.build())
    }

    fn credentials(&self) -> Result<Credentials, String> {
        let password = match (&self.password, &self.password_file) {
            (Some(password), None) => Some(password.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--password-file {}: {e}", path.display()))?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                Some(text.strip_suffix('\r').unwrap_or(text).to_owned())
            }
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err("--password and --password-file exclude each other".to_owned());
            }
        };
        match (&self.jid, password, &self.domain) {
            (Some(_), _, Some(_)) => {
                Err("--domain (anonymous) and --jid (an account) exclude each other".to_owned())
            }
            (Some(jid), Some(password), None) => {
                Credentials::account(jid, password).map_err(|e| format!("--jid: {e}"))
            }
            (Some(_), None, None) => Err("--jid needs --password or --password-file".to_owned()),
            (None, Some(_), _) => Err("--password needs --jid".to_owned()),
            (None, None, domain) => match domain.as_deref().unwrap_or("anon.localhost") {
                "" => Err("--domain: empty".to_owned()),
                domain => Ok(Credentials::anonymous(domain)),
            },
        }
    }
}

/// An absolute `http://` URL (the upstream app is reached over plain HTTP).
fn http_url(flag: &str, url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("{flag} {url:?}: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_)) => Ok(uri),
        _ => Err(format!("{flag} {url:?}: expected http://host[:port]/...")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses flags only (clap reads the environment too: these tests use
    /// flags no variable of a test run sets).
    fn parse(args: &[&str]) -> Result<Config, String> {
        let args = std::iter::once("bosh-prebind-gateway").chain(args.iter().copied());
        Args::try_parse_from(args)
            .map_err(|e| e.to_string())?
            .into_config()
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let config = parse(&["--upstream", "http://127.0.0.1:8000"]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:3080".parse().unwrap());
        assert_eq!(config.upstream, "http://127.0.0.1:8000/");
        assert_eq!(
            config
                .bosh_urls
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["http://127.0.0.1:5280/http-bind"]
        );
        assert_eq!(config.inject_prefixes, ["/"]);
        assert!(config.credentials.is_anonymous());
        assert_eq!(config.credentials.domain(), "anon.localhost");
        assert_eq!(
            (
                config.prebind_path.as_str(),
                config.bosh_path.as_str(),
                config.health_path.as_str()
            ),
            ("/prebind", "/http-bind", "/healthz")
        );
        assert_eq!(config.response_timeout, Duration::from_secs(75));
        assert_eq!(config.pool, 0, "no pool unless asked for");
    }

    #[test]
    fn reuse_cookie() {
        let config = parse(&["--upstream", "http://127.0.0.1:8000"]).unwrap();
        assert_eq!(config.reuse_cookie, None, "off unless asked for");
        let config = parse(&[
            "--upstream",
            "http://127.0.0.1:8000",
            "--reuse-cookie",
            "xmpp-prebind-live",
        ])
        .unwrap();
        assert_eq!(config.reuse_cookie.as_deref(), Some("xmpp-prebind-live"));
        for bad in ["", "a=b", "a;b", "a b"] {
            assert!(
                parse(&["--upstream", "http://127.0.0.1:8000", "--reuse-cookie", bad]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn pool_size() {
        let config = parse(&["--upstream", "http://127.0.0.1:8000", "--pool", "16"]).unwrap();
        assert_eq!(config.pool, 16);
        assert!(parse(&["--upstream", "http://127.0.0.1:8000", "--pool", "-1"]).is_err());
        assert!(parse(&["--upstream", "http://127.0.0.1:8000", "--pool", "100001"]).is_err());
    }

    #[cfg(feature = "rustls")]
    #[test]
    fn https_with_a_private_ca() {
        let ca = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/readme-ca.pem"
        );
        let config = parse(&[
            "--upstream",
            "http://app",
            "--bosh-url",
            "https://xmpp.example.org/http-bind",
            "--ca-file",
            ca,
            "--ca-file",
            ca,
        ])
        .unwrap();
        assert!(config.bosh_urls[0].is_https());
        let not_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let error = parse(&["--upstream", "http://app", "--ca-file", not_pem]).unwrap_err();
        assert!(
            error.contains("--ca-file: no usable CA certificate"),
            "{error}"
        );
    }

    #[test]
    fn several_connection_managers() {
        let config = parse(&[
            "--upstream",
            "http://app",
            "--bosh-url",
            "http://10.0.0.1:5280/http-bind",
            "--bosh-url=http://10.0.0.2:5280/http-bind,http://10.0.0.3:5280/http-bind",
        ])
        .unwrap();
        let hosts: Vec<_> = config
            .bosh_urls
            .iter()
            .map(|url| url.as_uri().host().unwrap().to_owned())
            .collect();
        assert_eq!(hosts, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    }

    #[test]
    fn repeated_and_comma_separated_prefixes() {
        let config = parse(&[
            "--upstream=http://app:80",
            "--inject-prefix",
            "/chat/",
            "--inject-prefix=/app/,/help/",
        ])
        .unwrap();
        assert_eq!(config.inject_prefixes, ["/chat/", "/app/", "/help/"]);
    }

    #[test]
    fn an_account_with_a_password_file() {
        let dir = std::env::temp_dir().join(format!("gateway-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "secret\n").unwrap();
        let config = parse(&[
            "--upstream",
            "http://app",
            "--jid",
            "alice@localhost",
            "--password-file",
            file.to_str().unwrap(),
        ])
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!config.credentials.is_anonymous());
        assert_eq!(config.credentials.domain(), "localhost");
    }

    #[test]
    fn refused() {
        for (args, error) in [
            (&["--upstream", "https://app:443"][..], "expected http://"),
            (&["--upstream", "127.0.0.1:8000"], "expected http://"),
            (
                &["--upstream", "http://app/base"],
                "give only http://host:port",
            ),
            (
                &["--upstream", "http://app", "--bosh-url", "not a url"],
                "--bosh-url",
            ),
            (
                &["--upstream", "http://app", "--bosh-url", "ftp://cm/x"],
                "--bosh-url",
            ),
            (
                &["--upstream", "http://app", "--ca-file", "/nonexistent.pem"],
                "--ca-file",
            ),
            (
                &[
                    "--upstream",
                    "http://a",
                    "--bosh-url",
                    "http://b/x",
                    "--bosh-url",
                    "http://b/x",
                ],
                "listed twice",
            ),
            (
                &["--upstream", "http://a", "--bosh-url", "http://b/x,"],
                "--bosh-url \"\"",
            ),
            (
                &["--upstream", "http://app", "--jid", "alice@localhost"],
                "--jid needs",
            ),
            (
                &["--upstream", "http://app", "--password", "x"],
                "--password needs --jid",
            ),
            (
                &["--upstream", "http://app", "--jid", "@", "--password", "x"],
                "--jid",
            ),
            (
                &[
                    "--upstream",
                    "http://a",
                    "--jid",
                    "a@b",
                    "--password",
                    "x",
                    "--domain",
                    "b",
                ],
                "exclude each other",
            ),
            (
                &[
                    "--upstream",
                    "http://a",
                    "--password",
                    "x",
                    "--password-file",
                    "/x",
                ],
                "cannot be used with",
            ),
            (
                &["--upstream", "http://app", "--inject-prefix", "chat"],
                "must start with '/'",
            ),
            (
                &["--upstream", "http://app", "--health-path", "/prebind"],
                "must differ",
            ),
            (
                &["--upstream", "http://app", "--listen", "localhost"],
                "--listen",
            ),
            (
                &["--upstream", "http://app", "--response-timeout", "60"],
                "must exceed a held",
            ),
            (
                &["--upstream", "http://app", "--request-timeout", "0"],
                "request-timeout",
            ),
            (
                &["--upstream", "http://app", "--frobnicate", "1"],
                "--frobnicate",
            ),
            (&["--upstream"], "a value is required"),
            (&["http://app"], "unexpected argument"),
        ] {
            let message = parse(args).unwrap_err();
            assert!(message.contains(error), "{args:?}: {message}");
        }
    }
}
