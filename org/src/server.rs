//! The HTTP face of the exchange: POST routes carrying postcard
//! bodies. Registry work runs on blocking threads (SQLite is synchronous).
//! Refusals answer 400/403 with one line of text saying why. Plain HTTP
//! ([`serve`]) or TLS ([`serve_tls`], rustls through axum-server).

use crate::exchange::{ExchangeError, Org};
use axum::body::Bytes as Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::sync::Arc;

/// Largest request accepted (a report with an EK certificate is a few KiB).
pub const MAX_BODY: usize = 256 * 1024;
/// Largest backup upload: the biggest image plus the evidence around it.
pub const MAX_BACKUP_BODY: usize = crate::backup::MAX_IMAGE + 64 * 1024;

pub fn router(org: Arc<Org>) -> Router {
    Router::new()
        .route("/v1/nonce", post(nonce))
        .route("/v1/enroll", post(enroll))
        .route("/v1/activate", post(activate))
        .route("/v1/outcome", post(outcome))
        .route("/v1/backup/fetch", post(fetch_backup))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // A whole flash image: routes added after `.layer` are outside it,
        // so this one has only its own, larger limit.
        .route(
            "/v1/backup",
            post(backup).layer(DefaultBodyLimit::max(MAX_BACKUP_BODY)),
        )
        .with_state(org)
}

/// Serves until the listener fails or `shutdown` resolves.
pub async fn serve(
    org: Arc<Org>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(org))
        .with_graceful_shutdown(shutdown)
        .await
}

/// How long open requests may take to finish once shutdown is asked for.
const GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves over TLS until the listener fails or `shutdown` resolves. Each
/// handshake runs on its own task, so a slow client does not hold up others.
pub async fn serve_tls(
    org: Arc<Org>,
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(GRACE));
    });
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
    let acceptor = LoggedHandshakes(axum_server::tls_rustls::RustlsAcceptor::new(config));
    axum_server::from_tcp(listener)
        .acceptor(acceptor)
        .handle(handle)
        .serve(router(org).into_make_service())
        .await
}

/// The TLS acceptor, logging failed handshakes: a node that refuses the
/// org's certificate (pinned to another one) never sends a request, so
/// without this line the org would not know it tried.
#[derive(Clone)]
struct LoggedHandshakes(axum_server::tls_rustls::RustlsAcceptor);

impl<S: Send + 'static> axum_server::accept::Accept<tokio::net::TcpStream, S> for LoggedHandshakes {
    type Stream = <axum_server::tls_rustls::RustlsAcceptor as axum_server::accept::Accept<
        tokio::net::TcpStream,
        S,
    >>::Stream;
    type Service = S;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<(Self::Stream, S)>> + Send>,
    >;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string());
        let handshake = self.0.accept(stream, service);
        Box::pin(async move {
            handshake.await.inspect_err(|e| {
                // A bare connect-and-close (a port probe) is no news.
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    log::debug!("TLS handshake with {peer}: {e}");
                } else {
                    log::warn!("TLS handshake with {peer} failed: {e}{}", refusal_hint(e));
                }
            })
        })
    }
}

/// What a failed handshake most likely means, for the org's log: the
/// alert a client sends when it refuses the org's certificate.
fn refusal_hint(e: &std::io::Error) -> &'static str {
    use rustls::AlertDescription as A;
    let alert = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match alert {
        Some(rustls::Error::AlertReceived(a)) => match a {
            A::CertificateUnknown => {
                " (the client refused this certificate: a node whose agent.toml pins \
                 another org_cert_sha256 or org_ca)"
            }
            A::CertificateExpired => {
                " (the client finds this certificate expired or not yet valid: \
                 a node's clock, on the org_ca path?)"
            }
            A::BadCertificate => {
                " (the client refused this certificate: not valid for the name \
                 it connected to?)"
            }
            A::UnknownCA => " (the client does not trust the certificate's issuer)",
            _ => "",
        },
        _ => "",
    }
}

type Step = fn(&Org, &[u8]) -> Result<Vec<u8>, ExchangeError>;

async fn run(org: Arc<Org>, body: Body, step: Step) -> Response {
    let result = tokio::task::spawn_blocking(move || step(&org, &body)).await;
    match result {
        Ok(Ok(bytes)) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        Ok(Err(e)) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
            if status.is_server_error() {
                log::error!("{e}");
            } else {
                log::warn!("refused: {e}");
            }
            (status, format!("{e}\n")).into_response()
        }
        Err(join) => {
            log::error!("request task failed: {join}");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

fn encode<T>(
    r: Result<T, ExchangeError>,
    f: impl Fn(&T) -> Result<Vec<u8>, fortros_wire::codec::CodecError>,
) -> Result<Vec<u8>, ExchangeError> {
    let v = r?;
    f(&v).map_err(|e| ExchangeError::Malformed(e.to_string()))
}

async fn nonce(State(org): State<Arc<Org>>, body: Body) -> Response {
    run(org, body, |o, _| encode(o.issue_nonce(), |g| g.to_bytes())).await
}

async fn enroll(State(org): State<Arc<Org>>, body: Body) -> Response {
    run(org, body, |o, b| encode(o.enroll(b), |r| r.to_bytes())).await
}

async fn activate(State(org): State<Arc<Org>>, body: Body) -> Response {
    run(org, body, |o, b| encode(o.activate(b), |r| r.to_bytes())).await
}

async fn outcome(State(org): State<Arc<Org>>, body: Body) -> Response {
    run(org, body, |o, b| encode(o.outcome(b), |r| r.to_bytes())).await
}

async fn backup(State(org): State<Arc<Org>>, body: Body) -> Response {
    run(org, body, |o, b| encode(o.backup(b), |r| r.to_bytes())).await
}

async fn fetch_backup(State(org): State<Arc<Org>>, body: Body) -> Response {
    run(org, body, |o, b| {
        encode(o.fetch_backup(b), |r| r.to_bytes())
    })
    .await
}

/// A server on its own runtime thread (tests, benchmarks, `serve`).
pub struct Running {
    pub addr: std::net::SocketAddr,
    /// Serving TLS (the URL is https).
    pub tls: bool,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Binds `addr` (port 0: an ephemeral port) and serves in the background.
    pub fn start(org: Arc<Org>, addr: &str) -> std::io::Result<Running> {
        Self::start_with(org, addr, None)
    }

    /// As [`Running::start`], over TLS.
    pub fn start_tls(
        org: Arc<Org>,
        addr: &str,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Running> {
        Self::start_with(org, addr, Some(tls))
    }

    fn start_with(
        org: Arc<Org>,
        addr: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Running> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let is_tls = tls.is_some();
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let stop = async move {
                    let _ = rx.await;
                };
                match tls {
                    Some(tls) => serve_tls(org, std_listener, tls, stop).await,
                    None => {
                        let listener = tokio::net::TcpListener::from_std(std_listener)?;
                        serve(org, listener, stop).await
                    }
                }
            })
        });
        Ok(Running {
            addr,
            tls: is_tls,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting, finishes open requests, joins the thread.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> std::io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("server thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

#[cfg(test)]
mod handshake_log_tests {
    use super::refusal_hint;

    fn alert(a: rustls::AlertDescription) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(a),
        )
    }

    #[test]
    fn a_refused_certificate_is_explained_in_the_org_log() {
        use rustls::AlertDescription as A;
        assert!(refusal_hint(&alert(A::CertificateUnknown)).contains("pins another"));
        assert!(refusal_hint(&alert(A::CertificateExpired)).contains("clock"));
        assert!(refusal_hint(&alert(A::BadCertificate)).contains("name"));
        assert!(refusal_hint(&alert(A::UnknownCA)).contains("issuer"));
        assert_eq!(refusal_hint(&alert(A::HandshakeFailure)), "");
        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(refusal_hint(&eof), "");
    }
}
