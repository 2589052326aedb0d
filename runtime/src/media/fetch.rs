//! Fetching prompt files from the web, for `play` verbs with a URL.
//!
//! ```text
//!   cache::fetch(url) ──► Fetcher::get(url, etag)
//!        check_url: http/https only; an IP literal must pass the egress policy
//!        reqwest (rustls, ring; HTTP/1.1; no proxy)
//!          ├─ resolver: every address of the host is checked by the egress
//!          │  policy, and only the allowed addresses are connected to (no
//!          │  DNS rebinding)
//!          ├─ redirects: at most `max_redirects`, each hop checked again
//!          └─ timeout (whole exchange), body capped at `max_bytes`
//!        ◄── Fetched::Body { bytes, etag } | Fetched::NotModified
//! ```
//!
//! Tenants choose the URLs, so which addresses they may reach is decided
//! by the runtime's one egress policy ([`crate::egress`]) for
//! [`Purpose::PromptFetch`]: by default nothing on this machine or its
//! networks (loopback, private, link-local, shared, multicast and reserved
//! ranges, and IPv6 forms embedding them); `[media] fetch_private` lifts
//! that for tests and closed setups. Status callbacks (`crate::callbacks`)
//! use [`check_url`] and [`CheckedResolver`] with their own purpose, and so
//! will later fetches (x5u certificates, webhooks).
//!
//! Why reqwest and not hyper-util's client, which the edge already has:
//! with `default-features = false` and `rustls-no-provider`, reqwest adds
//! about ten small crates (hyper-rustls, tower, the platform certificate
//! verifier) over what the workspace builds, no OpenSSL and no aws-lc; in
//! exchange it brings redirects, a pluggable resolver (where the address
//! check lives) and whole-request timeouts, which we would otherwise write
//! and maintain here. TLS uses the workspace's ring provider and the
//! system's root certificates.

use std::error::Error as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::{StatusCode, Url};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::audio::is_wav;
use crate::egress::{EgressError, EgressPolicy, Purpose};

/// Limits of [`Fetcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchConfig {
    /// Longest a whole fetch may take, connecting to the last body byte.
    /// Default 15 s.
    pub timeout: Duration,
    /// Longest connecting (TCP and TLS) may take. Default 5 s.
    pub connect_timeout: Duration,
    /// Largest body accepted. Default 16 MiB.
    pub max_bytes: u64,
    /// Most redirects followed. Default 5.
    pub max_redirects: usize,
    /// Which addresses URLs may reach, for `purpose`. Default public
    /// only: a tenant's URL must not reach into our own networks.
    pub egress: EgressPolicy,
    /// What the fetches are for: [`Purpose::PromptFetch`] (the default),
    /// [`Purpose::CertificateFetch`], [`Purpose::DirectoryLookup`] or
    /// [`Purpose::Confirmation`].
    pub purpose: Purpose,
    /// CA certificates trusted for https beside the system's (an
    /// operator's internal PKI).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            max_bytes: 16 * 1024 * 1024,
            max_redirects: 5,
            egress: EgressPolicy::public_only(),
            purpose: Purpose::PromptFetch,
            extra_roots: Vec::new(),
        }
    }
}

/// Why a URL could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// Only `http` and `https` are fetched.
    #[error("cannot fetch {scheme}: URLs, only http and https")]
    Scheme { scheme: String },
    /// The host is, or resolves to, an address the egress policy refuses
    /// (loopback, private...); the message names the key that allows it.
    #[error("{}", private_message(host, refused))]
    Private { host: String, refused: EgressError },
    /// The host could not be resolved or connected to.
    #[error("{url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: no complete answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    /// The server answered with a status other than 2xx (or 304 to a
    /// conditional request).
    #[error("{url}: the server answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: the file is larger than {max} bytes")]
    TooLarge { url: String, max: u64 },
    /// The body is not a WAV file.
    #[error("{url}: not a WAV file (Content-Type {content_type:?})")]
    NotWav { url: String, content_type: String },
    /// Any other failure of the exchange (bad redirect, broken body...).
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    /// The HTTP client could not be built, or https is unavailable here
    /// (no CA certificates on the machine).
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

impl FetchError {
    /// Whether trying again later may work (a network problem or a server
    /// error), as opposed to a URL or file that is wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Connect { .. } | FetchError::Timeout { .. } | FetchError::Http { .. } => {
                true
            }
            FetchError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// What a fetch brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The file, with the server's ETag if it gave one.
    Body { bytes: Bytes, etag: Option<String> },
    /// The server says the copy whose ETag was sent is still current.
    NotModified,
}

/// An HTTP(S) client for prompt files. Cheap to clone (connections are
/// pooled and shared).
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    config: Arc<FetchConfig>,
    /// Why https cannot work on this machine, if it cannot.
    tls_unavailable: Option<Arc<str>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    pub fn new(config: FetchConfig) -> Result<Self, FetchError> {
        let setup = |e: &dyn std::fmt::Display| FetchError::Setup(e.to_string());
        let (tls, tls_unavailable) = tls_config_with(&config.extra_roots)?;
        let (egress, purpose) = (config.egress, config.purpose);
        let max_redirects = config.max_redirects;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                return attempt.error(format!("more than {max_redirects} redirects"));
            }
            match check_url(attempt.url(), egress, purpose) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        });
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(CheckedResolver::new(egress, purpose))
            .redirect(redirects)
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| setup(&e))?;
        Ok(Self {
            client,
            config: Arc::new(config),
            tls_unavailable,
        })
    }

    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// Fetches the WAV file at `url`; with `etag` (from an earlier
    /// [`Fetched::Body`]) the server may answer [`Fetched::NotModified`].
    pub async fn get(&self, url: &str, etag: Option<&str>) -> Result<Fetched, FetchError> {
        let (body, etag, content_type) = match self.fetch(url, etag).await? {
            Some(body) => body,
            None => return Ok(Fetched::NotModified),
        };
        if !is_wav(&body) {
            return Err(FetchError::NotWav {
                url: url.into(),
                content_type: content_type.unwrap_or_default(),
            });
        }
        Ok(Fetched::Body {
            bytes: body.into(),
            etag,
        })
    }

    /// Fetches whatever `url` serves (a certificate).
    pub async fn get_bytes(&self, url: &str) -> Result<Bytes, FetchError> {
        let (body, ..) = self.fetch(url, None).await?.unwrap_or_default();
        Ok(body.into())
    }

    /// Sends `body` as `content_type` to `url` with `method` (a POST or
    /// PUT: the call placement directory's signed messages) under the
    /// same checks and limits as a fetch; the answer's status and body,
    /// whatever the status (the caller reads an error's message).
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<(u16, Bytes), FetchError> {
        let sent = self
            .exchange(method, url, None, Some((content_type, body)))
            .await?;
        let (status, body) = sent.unwrap_or_default();
        Ok((status, body.0.into()))
    }

    /// The body, ETag and Content-Type at `url`; `None` when `etag` still
    /// holds.
    async fn fetch(&self, url: &str, etag: Option<&str>) -> Result<Option<Body>, FetchError> {
        let fetched = self.exchange(reqwest::Method::GET, url, etag, None).await?;
        Ok(fetched.map(|(_, body)| body))
    }

    /// One request; the status with the body, ETag and Content-Type
    /// (any status when `send` is given, else only 2xx), `None` when
    /// `etag` still holds.
    async fn exchange(
        &self,
        method: reqwest::Method,
        url: &str,
        etag: Option<&str>,
        send: Option<(&'static str, Bytes)>,
    ) -> Result<Option<(u16, Body)>, FetchError> {
        let parsed = Url::parse(url).map_err(|e| FetchError::BadUrl {
            url: url.into(),
            reason: e.to_string(),
        })?;
        check_url(&parsed, self.config.egress, self.config.purpose)?;
        if let Some(reason) = &self.tls_unavailable
            && parsed.scheme() == "https"
        {
            return Err(FetchError::Setup(reason.to_string()));
        }
        let sending = send.is_some();
        let mut request = self.client.request(method, parsed);
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some((content_type, body)) = send {
            request = request.header(CONTENT_TYPE, content_type).body(body);
        }
        let mut response = request.send().await.map_err(|e| self.error(url, e))?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED && etag.is_some() {
            return Ok(None);
        }
        if !status.is_success() && !sending {
            return Err(FetchError::Status {
                url: url.into(),
                status: status.as_u16(),
            });
        }
        let max = self.config.max_bytes;
        let too_large = || FetchError::TooLarge {
            url: url.into(),
            max,
        };
        if response.content_length().is_some_and(|len| len > max) {
            return Err(too_large());
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let (etag, content_type) = (header(ETAG), header(CONTENT_TYPE));
        let expected = response.content_length().unwrap_or(0).min(max) as usize;
        let mut body = Vec::with_capacity(expected);
        while let Some(chunk) = response.chunk().await.map_err(|e| self.error(url, e))? {
            if body.len() as u64 + chunk.len() as u64 > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some((status.as_u16(), (body, etag, content_type))))
    }

    /// Our own refusals (from the resolver or the redirect policy) come
    /// back wrapped in reqwest's error; find them, else classify.
    fn error(&self, url: &str, error: reqwest::Error) -> FetchError {
        let mut source = error.source();
        while let Some(e) = source {
            if let Some(ours) = e.downcast_ref::<FetchError>() {
                return ours.clone();
            }
            source = e.source();
        }
        let reason = chain(&error);
        if error.is_timeout() {
            FetchError::Timeout {
                url: url.into(),
                secs: self.config.timeout.as_secs(),
            }
        } else if error.is_connect() {
            FetchError::Connect {
                url: url.into(),
                reason,
            }
        } else {
            FetchError::Http {
                url: url.into(),
                reason,
            }
        }
    }
}

/// A body with its ETag and Content-Type.
type Body = (Vec<u8>, Option<String>, Option<String>);

/// The TLS client setup of outbound requests (prompt fetches, status
/// callbacks): the ring provider and the system's roots. Without CA
/// certificates on the machine (a bare container) plain http still
/// works and https fails saying why, which is the second value.
pub(crate) fn tls_config() -> Result<(rustls::ClientConfig, Option<Arc<str>>), FetchError> {
    tls_config_with(&[])
}

/// [`tls_config`], trusting `extra` CA certificates too.
fn tls_config_with(
    extra: &[CertificateDer<'static>],
) -> Result<(rustls::ClientConfig, Option<Arc<str>>), FetchError> {
    let setup = |e: &dyn std::fmt::Display| FetchError::Setup(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let platform = match extra {
        [] => rustls_platform_verifier::Verifier::new(provider.clone()),
        _ => rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra.iter().cloned(),
            provider.clone(),
        ),
    };
    // Without CA certificates on the machine (a bare container) plain
    // http still works; https fails saying why.
    let (verifier, tls_unavailable): (Arc<dyn ServerCertVerifier>, _) = match platform {
        Ok(verifier) => (Arc::new(verifier), None),
        Err(e) => {
            let reason: Arc<str> =
                format!("https is unavailable: {e} (install ca-certificates)").into();
            tracing::warn!(%reason, "outbound https");
            let schemes = provider
                .signature_verification_algorithms
                .supported_schemes();
            let refuse = NoRoots {
                reason: reason.to_string(),
                schemes,
            };
            (Arc::new(refuse), Some(reason))
        }
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(&e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok((tls, tls_unavailable))
}

/// The message of `error` and its sources, most specific last.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The certificate verifier when the machine has no CA certificates:
/// every https handshake fails, saying why.
#[derive(Debug)]
struct NoRoots {
    reason: String,
    schemes: Vec<rustls::SignatureScheme>,
}

impl ServerCertVerifier for NoRoots {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::General(self.reason.clone()))
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(self.reason.clone()))
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(self.reason.clone()))
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.schemes.clone()
    }
}

/// Refuses schemes other than http(s), and hosts written as addresses the
/// egress policy refuses for `purpose` (names are checked when they are
/// resolved, by [`CheckedResolver`]).
pub(crate) fn check_url(
    url: &Url,
    egress: EgressPolicy,
    purpose: Purpose,
) -> Result<(), FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::Scheme {
            scheme: url.scheme().into(),
        });
    }
    let Some(host) = url.host_str() else {
        return Err(FetchError::BadUrl {
            url: url.to_string(),
            reason: "no host".into(),
        });
    };
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(addr) = literal.parse::<IpAddr>()
        && let Err(refused) = egress.check(purpose, addr)
    {
        return Err(FetchError::Private {
            host: host.into(),
            refused,
        });
    }
    Ok(())
}

/// The message of [`FetchError::Private`]: the host only when it is a
/// name (a literal address is already in the policy's message).
fn private_message(host: &str, refused: &EgressError) -> String {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if literal.parse::<IpAddr>().is_ok() {
        refused.to_string()
    } else {
        format!("{host} resolves to {refused}")
    }
}

/// Resolves names with the system resolver and keeps only the addresses
/// the egress policy allows for its purpose. Since reqwest connects only to
/// what this returns, a name cannot be checked against one address and
/// then connect to another. Every HTTP client that reaches a tenant's URL
/// is built with one (prompts, status callbacks; later x5u certificates
/// and webhooks, each with its own [`Purpose`]).
pub(crate) struct CheckedResolver {
    egress: EgressPolicy,
    purpose: Purpose,
}

impl CheckedResolver {
    pub(crate) fn new(egress: EgressPolicy, purpose: Purpose) -> Self {
        Self { egress, purpose }
    }
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (egress, purpose) = (self.egress, self.purpose);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let mut allowed = Vec::with_capacity(addrs.len());
            for addr in addrs {
                match egress.check(purpose, addr.ip()) {
                    Ok(()) => allowed.push(addr),
                    Err(e) => refused = refused.or(Some(e)),
                }
            }
            match (allowed.is_empty(), refused) {
                (false, _) => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
                (true, Some(refused)) => Err(Box::new(FetchError::Private { host, refused }) as _),
                (true, None) => Err(format!("{host} has no addresses").into()),
            }
        })
    }
}

/// A programmable HTTP server on 127.0.0.1 for tests of the fetcher and
/// the cache.
#[cfg(test)]
pub(crate) mod test_server {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;

    pub type Reply = Response<Full<Bytes>>;

    pub struct TestServer {
        pub addr: SocketAddr,
        hits: Arc<AtomicUsize>,
    }

    impl TestServer {
        /// Serves every request with `handler` until the runtime ends.
        pub async fn start<F>(handler: F) -> TestServer
        where
            F: Fn(&Request<Incoming>) -> Reply + Send + Sync + 'static,
        {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let hits = Arc::new(AtomicUsize::new(0));
            let handler = Arc::new(handler);
            let counter = Arc::clone(&hits);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (handler, counter) = (Arc::clone(&handler), Arc::clone(&counter));
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let reply = handler(&req);
                            async move { Ok::<_, Infallible>(reply) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            TestServer { addr, hits }
        }

        pub fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        /// Requests answered so far.
        pub fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    pub fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
        let mut response = Response::new(Full::new(body.into()));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            response.headers_mut().insert(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                hyper::header::HeaderValue::from_str(value).unwrap(),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::test_server::{TestServer, reply};
    use super::*;
    use crate::egress::Setting;
    use crate::media::audio::encode_wav;
    use crate::media::tone::sine;

    /// A fetcher whose prompt fetches may reach private addresses (as
    /// with `[media] fetch_private = true`) or not.
    fn fetcher(allow_private: bool) -> Fetcher {
        Fetcher::new(FetchConfig {
            egress: private_prompts(allow_private),
            ..FetchConfig::default()
        })
        .unwrap()
    }

    fn private_prompts(allowed: bool) -> EgressPolicy {
        match allowed {
            true => EgressPolicy::public_only().allowing_setting(Setting::FetchPrivate),
            false => EgressPolicy::public_only(),
        }
    }

    fn wav() -> Bytes {
        encode_wav(&sine(1000.0, 100, 0.5)).into()
    }

    /// Serves `wav()` at /hello.wav with ETag "v1", honouring
    /// If-None-Match; 404 elsewhere.
    async fn prompt_server() -> TestServer {
        TestServer::start(|req| match req.uri().path() {
            "/hello.wav"
                if req
                    .headers()
                    .get("if-none-match")
                    .is_some_and(|v| v == "\"v1\"") =>
            {
                reply(304, &[], Bytes::new())
            }
            "/hello.wav" => reply(
                200,
                &[("etag", "\"v1\""), ("content-type", "audio/wav")],
                wav(),
            ),
            "/page" => reply(200, &[("content-type", "text/html")], "<html>hi</html>"),
            "/moved" => reply(302, &[("location", "/hello.wav")], Bytes::new()),
            "/loop" => reply(302, &[("location", "/loop")], Bytes::new()),
            "/ftp" => reply(
                302,
                &[("location", "ftp://example.com/x.wav")],
                Bytes::new(),
            ),
            "/big" => reply(200, &[], vec![0u8; 2048]),
            _ => reply(404, &[], "not here"),
        })
        .await
    }

    #[tokio::test]
    async fn a_wav_is_fetched_with_its_etag_and_a_matching_etag_is_not_modified() {
        let server = prompt_server().await;
        let fetcher = fetcher(true);
        let url = server.url("/hello.wav");
        assert_eq!(
            fetcher.get(&url, None).await.unwrap(),
            Fetched::Body {
                bytes: wav(),
                etag: Some("\"v1\"".into())
            }
        );
        assert_eq!(
            fetcher.get(&url, Some("\"v1\"")).await.unwrap(),
            Fetched::NotModified
        );
        assert!(matches!(
            fetcher.get(&url, Some("\"v0\"")).await.unwrap(),
            Fetched::Body { .. }
        ));
        // Redirects are followed.
        assert!(matches!(
            fetcher.get(&server.url("/moved"), None).await.unwrap(),
            Fetched::Body { .. }
        ));
    }

    #[tokio::test]
    async fn failures_say_what_went_wrong() {
        let server = prompt_server().await;
        let fetcher = Fetcher::new(FetchConfig {
            egress: private_prompts(true),
            max_bytes: 1024,
            max_redirects: 3,
            ..FetchConfig::default()
        })
        .unwrap();
        let get = |path: &str| {
            let url = server.url(path);
            let fetcher = fetcher.clone();
            async move { fetcher.get(&url, None).await.unwrap_err() }
        };
        assert_eq!(
            get("/missing").await,
            FetchError::Status {
                url: server.url("/missing"),
                status: 404
            }
        );
        assert_eq!(
            get("/page").await,
            FetchError::NotWav {
                url: server.url("/page"),
                content_type: "text/html".into()
            }
        );
        assert_eq!(
            get("/big").await,
            FetchError::TooLarge {
                url: server.url("/big"),
                max: 1024
            }
        );
        let looped = get("/loop").await;
        assert!(
            looped.to_string().contains("more than 3 redirects"),
            "{looped}"
        );
        assert_eq!(
            get("/ftp").await,
            FetchError::Scheme {
                scheme: "ftp".into()
            }
        );
        assert!(!get("/missing").await.is_transient());
    }

    #[tokio::test]
    async fn a_body_without_length_is_cut_at_the_limit() {
        // A raw server: no Content-Length, the body ends when it closes.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                    .await;
                for _ in 0..64 {
                    if stream.write_all(&[0u8; 1024]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let fetcher = Fetcher::new(FetchConfig {
            egress: private_prompts(true),
            max_bytes: 10_000,
            ..FetchConfig::default()
        })
        .unwrap();
        let err = fetcher
            .get(&format!("http://{addr}/x.wav"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FetchError::TooLarge { max: 10_000, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn loopback_and_private_urls_are_refused_unless_prompt_fetches_may_reach_them() {
        let server = prompt_server().await;
        let port = server.addr.port();
        let loopback = [
            format!("http://127.0.0.1:{port}/hello.wav"),
            format!("http://localhost:{port}/hello.wav"),
            format!("http://[::1]:{port}/hello.wav"),
            format!("http://[::ffff:127.0.0.1]:{port}/hello.wav"),
            format!("http://2130706433:{port}/hello.wav"),
            format!("http://0x7f.1:{port}/hello.wav"),
        ];
        let private = [
            format!("http://10.1.2.3:{port}/hello.wav"),
            "http://192.168.0.10/hello.wav".to_string(),
            "http://169.254.169.254/latest/meta-data".to_string(),
        ];
        // Another purpose's permission does not open prompt fetches.
        let callbacks_only = Fetcher::new(FetchConfig {
            egress: EgressPolicy::public_only().allowing_setting(Setting::CallbacksPrivate),
            ..FetchConfig::default()
        })
        .unwrap();
        for fetcher in [fetcher(false), callbacks_only] {
            for url in loopback.iter().chain(&private) {
                let err = fetcher.get(url, None).await.unwrap_err();
                assert!(matches!(err, FetchError::Private { .. }), "{url}: {err}");
                let text = err.to_string();
                assert!(text.contains("not a public address"), "{text}");
                assert!(text.contains("`[media] fetch_private = true`"), "{text}");
            }
        }
        assert_eq!(server.hits(), 0);
        let by_name = fetcher(false)
            .get(&loopback[1], None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            by_name.starts_with("localhost resolves to 127.0.0.1"),
            "{by_name}"
        );
        let strict = fetcher(false);
        assert!(matches!(
            strict.get("file:///etc/passwd", None).await,
            Err(FetchError::Scheme { .. })
        ));
        assert!(matches!(
            strict.get("not a url", None).await,
            Err(FetchError::BadUrl { .. })
        ));

        // Allowed: loopback is fetched, by address and by name, and a
        // private address passes the check (nothing listens there to fetch).
        let allowed = fetcher(true);
        for url in &loopback[..2] {
            assert!(
                matches!(allowed.get(url, None).await, Ok(Fetched::Body { .. })),
                "{url}"
            );
        }
        assert_eq!(server.hits(), 2);
        for url in &private {
            let url = Url::parse(url).unwrap();
            let policy = allowed.config().egress;
            assert_eq!(
                check_url(&url, policy, Purpose::PromptFetch),
                Ok(()),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_is_sent_under_the_same_checks_and_any_status_comes_back() {
        let server = TestServer::start(|req| {
            let kind = req.headers().get("content-type").cloned();
            let kind = kind.map(|v| v.to_str().unwrap_or_default().to_owned());
            match (req.method().as_str(), kind.as_deref()) {
                ("POST", Some("application/jose")) => reply(200, &[], "signed reply"),
                ("PUT", _) => reply(409, &[], "{\"code\":\"conflict\"}"),
                _ => reply(400, &[], "no"),
            }
        })
        .await;
        let directory = |private| {
            let egress = match private {
                true => EgressPolicy::public_only().allowing_setting(Setting::DirectoryPrivate),
                false => EgressPolicy::public_only(),
            };
            Fetcher::new(FetchConfig {
                egress,
                purpose: Purpose::Confirmation,
                ..FetchConfig::default()
            })
            .unwrap()
        };
        let url = server.url("/v1/confirmations");
        let body = Bytes::from_static(b"a.b.c");
        let sent = directory(true)
            .send(
                reqwest::Method::POST,
                &url,
                "application/jose",
                body.clone(),
            )
            .await
            .unwrap();
        assert_eq!(sent, (200, Bytes::from_static(b"signed reply")));
        let sent = directory(true)
            .send(reqwest::Method::PUT, &url, "application/jose", body.clone())
            .await
            .unwrap();
        assert_eq!(sent.0, 409);
        assert!(String::from_utf8_lossy(&sent.1).contains("conflict"));
        let refused = directory(false)
            .send(reqwest::Method::POST, &url, "application/jose", body)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("`[directory] private = true`"),
            "{refused}"
        );
        assert!(refused.contains("confirmation requests"), "{refused}");
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let fetcher = Fetcher::new(FetchConfig {
            egress: private_prompts(true),
            timeout: Duration::from_millis(300),
            ..FetchConfig::default()
        })
        .unwrap();
        let err = fetcher
            .get(&format!("http://{addr}/x.wav"), None)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Timeout { .. }), "{err}");
        assert!(err.is_transient());
    }
}
