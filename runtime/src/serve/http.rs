//! The HTTP listener: health, media files, and the REST API under `/v1`
//! (see [`crate::api`]: accounts, API keys, recordings, OpenAPI).
//!
//! ```text
//!   GET    /health                       {"status":"ok"}
//!   GET    /media/{id}                   audio/wav  (id: 64 hex, a cache entry)
//!   GET    /phone, /switchyard.js        the softphone page and the client SDK
//!   GET    /v1/client                    crate::clients (WebSocket; an access token)
//!   GET    /v1/events/presence           crate::clients (WebSocket; Basic auth)
//!   *      /v1/...                       crate::api (HTTP Basic auth per account)
//!   POST   /internal/v1/...              crate::cascade (other runtimes; bearer secret)
//!   anything else                        501 {"code":"not_implemented",...}
//! ```
//!
//! Errors are JSON `{"code", "message"}`; [`ApiError`] (shared with the
//! API) maps each to its status in one place. Ids are checked for their
//! exact form before they name a file, so no path can leave the media or
//! recordings directory.
//!
//! `/health` is unauthenticated. `/media/{id}` serves shared entries
//! (synthesized speech, fetched prompts) to anyone: their id is the
//! SHA-256 of the audio, so it cannot be guessed, only learnt from a
//! decision log or by producing the same audio (the same text, the same
//! public URL), which gives nothing away. A tenant's imported media is its
//! own: served only with that account's Basic credentials (as under
//! `/v1`), and 404 to anyone else, as for an unknown id. Recordings are
//! only served under `/v1`, to the account that owns them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::api::{self, ApiError, ApiState, Reply, internal, json, wav_file};
use crate::media::cache::{MediaCache, is_media_id};

/// Largest request head (request line and headers) read; hyper answers
/// 431 above it.
pub const HEAD_LIMIT: usize = 16 * 1024;

/// Renders the Prometheus metrics (see `crate::metrics`).
pub type Scrape =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// What the HTTP edge serves from.
#[derive(Clone)]
pub struct HttpState {
    pub media: MediaCache,
    /// Answers other runtimes of a conference cascade (`/internal/v1/`).
    pub cascade: Option<Arc<crate::cascade::Cascade>>,
    pub api: ApiState,
    pub scrape: Scrape,
}

/// Binds `addr` and serves health, media and the API from `state`
/// until the runtime stops. Returns the bound address (port 0 picks one).
pub async fn serve_with(addr: SocketAddr, state: HttpState) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding HTTP on {addr}"))?;
    let bound = listener.local_addr()?;
    let state = Arc::new(state);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(route(req, &state).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    // Caps the request head (431 above it); bodies stream.
                    .max_buf_size(HEAD_LIMIT)
                    .serve_connection(TokioIo::new(stream), service)
                    // The client signalling WebSocket (`/v1/client`).
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn route(req: Request<Incoming>, state: &HttpState) -> Reply {
    if req.uri().path() == "/v1/client" {
        return state.api.clients.upgrade(req);
    }
    if req.uri().path() == "/v1/events/presence" {
        let account = (api::authenticate(req.headers(), &state.api).await)
            .and_then(|caller| caller.account().map(str::to_owned));
        return match account {
            Ok(account) => state.api.clients.watch(req, account),
            Err(e) => e.into_reply(),
        };
    }
    if req.uri().path().starts_with("/v1/") {
        return api::handle(req, &state.api).await;
    }
    if req.uri().path().starts_with("/internal/v1/")
        && let Some(cascade) = &state.cascade
    {
        return Arc::clone(cascade).handle(req).await;
    }
    respond(req.method(), req.uri().path(), req.headers(), state)
        .await
        .unwrap_or_else(ApiError::into_reply)
}

async fn respond(
    method: &Method,
    path: &str,
    headers: &hyper::HeaderMap,
    state: &HttpState,
) -> Result<Reply, ApiError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let reading = matches!(*method, Method::GET | Method::HEAD);
    match segments.as_slice() {
        ["health"] => Ok(json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))),
        ["metrics"] if reading => Ok(metrics((state.scrape)().await)),
        ["metrics"] => Err(ApiError::MethodNotAllowed {
            allow: "GET, HEAD".into(),
        }),
        ["media", id] if reading => media_file(state, id, headers).await,
        ["media", _] => Err(ApiError::MethodNotAllowed {
            allow: "GET, HEAD".into(),
        }),
        ["phone"] if reading => Ok(asset(crate::clients::PHONE, "text/html; charset=utf-8")),
        ["switchyard.js"] if reading => Ok(asset(crate::clients::SDK, "text/javascript")),
        ["phone" | "switchyard.js"] => Err(ApiError::MethodNotAllowed {
            allow: "GET, HEAD".into(),
        }),
        _ => Err(ApiError::NotImplemented(api::UNKNOWN_PATH)),
    }
}

/// A page or script built into the binary.
fn asset(body: &'static str, content_type: &'static str) -> Reply {
    let mut reply = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    reply
}

/// The OpenMetrics text exposition (Prometheus scrapes it).
fn metrics(text: String) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(text)));
    reply.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    reply
}

async fn media_file(
    state: &HttpState,
    id: &str,
    headers: &hyper::HeaderMap,
) -> Result<Reply, ApiError> {
    let missing = || ApiError::NotFound(format!("media with id {id:?}"));
    if !is_media_id(id) {
        return Err(missing());
    }
    // Credentials, when sent, must be right (as under /v1); without them
    // only shared entries are served.
    let tenant = if headers.contains_key(hyper::header::AUTHORIZATION) {
        match api::authenticate(headers, &state.api).await? {
            api::Caller::Account(id) => Some(id),
            api::Caller::Operator => None,
        }
    } else {
        None
    };
    let (media, owned_id) = (state.media.clone(), id.to_owned());
    let path = tokio::task::spawn_blocking(move || media.file_for(&owned_id, tenant.as_deref()))
        .await
        .map_err(internal)?
        .ok_or_else(missing)?;
    // Content-addressed: the bytes under an id never change.
    wav_file(&path, "private, max-age=86400, immutable")
        .await?
        .ok_or_else(missing)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::media::audio::decode_wav;
    use crate::media::fetch::{FetchConfig, Fetcher};
    use crate::media::synth::Synthesizer;
    use crate::media::tone::sine;
    use crate::store::recordings::RecordingStore;
    use crate::tenancy::Accounts;

    struct Beep;

    impl Synthesizer for Beep {
        fn name(&self) -> &str {
            "beep"
        }

        fn synthesize(
            &self,
            _: &str,
            _: Option<&str>,
            _: Option<&str>,
        ) -> anyhow::Result<Vec<i16>> {
            Ok(sine(1000.0, 100, 0.5))
        }
    }

    fn state(dir: &Path) -> HttpState {
        let fetcher = Fetcher::new(FetchConfig::default()).unwrap();
        HttpState {
            media: MediaCache::open(&dir.join("media"), 1 << 20, Arc::new(Beep), fetcher).unwrap(),
            cascade: None,
            api: ApiState {
                clients: crate::clients::Clients::new(
                    Accounts::open(&dir.join("accounts.sqlite3")).unwrap(),
                    crate::clients::HEARTBEAT,
                ),
                accounts: Accounts::open(&dir.join("accounts.sqlite3")).unwrap(),
                recordings: RecordingStore::open(&dir.join("recordings")).unwrap(),
                conferences: crate::conferences::Conferences::new(
                    crate::store::ConferenceStore::open(&dir.join("conferences.sqlite3")).unwrap(),
                ),
                cdrs: crate::store::CdrStore::open(&dir.join("cdr.sqlite3")).unwrap(),
                admin_key: None,
                deploy: crate::api::DeployState {
                    store: crate::deploy::Deployments::open(&dir.join("deploy")).unwrap(),
                    host: crate::wasm::WasmHost::new(
                        crate::wasm::HostConfig::builder().build().unwrap(),
                        crate::store::KvStore::in_memory(crate::store::KvLimits::default())
                            .unwrap(),
                    )
                    .unwrap(),
                    reserved: Arc::default(),
                    max_component_bytes: 1 << 20,
                    refresh: Arc::new(|| Box::pin(async { Ok(()) })),
                },
                switchboard: crate::api::Switchboard(Arc::new(|_| false)),
                directory: Default::default(),
            },
            scrape: Arc::new(|| Box::pin(async { "switchyard_calls{state=\"early\"} 0\n".into() })),
        }
    }

    struct Answer {
        status: u16,
        head: String,
        body: Vec<u8>,
    }

    impl Answer {
        fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    /// One HTTP/1.1 request on a fresh connection.
    async fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
        request_as(addr, method, path, None).await
    }

    /// One request, with `Authorization: Basic BASE64` if `basic` is given.
    async fn request_as(addr: SocketAddr, method: &str, path: &str, basic: Option<&str>) -> Answer {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = basic.map_or(String::new(), |b| format!("Authorization: Basic {b}\r\n"));
        let head =
            format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(raw[..split].to_vec())
            .unwrap()
            .to_ascii_lowercase();
        let status = head[9..12].parse().unwrap();
        Answer {
            status,
            head,
            body: raw[split + 4..].to_vec(),
        }
    }

    #[tokio::test]
    async fn media_is_served_as_wav_by_id_and_unknown_or_malformed_ids_are_404() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let media = state.media.say("hello", None, None).await.unwrap();
        let addr = serve_with("127.0.0.1:0".parse().unwrap(), state)
            .await
            .unwrap();

        let got = request(addr, "GET", &format!("/media/{}", media.id)).await;
        assert_eq!(got.status, 200);
        assert!(got.head.contains("content-type: audio/wav"), "{}", got.head);
        assert_eq!(decode_wav(&got.body).unwrap(), &media.samples[..]);

        let unknown = "0".repeat(64);
        let got = request(addr, "GET", &format!("/media/{unknown}")).await;
        assert_eq!(got.status, 404);
        assert_eq!(got.json()["code"], "not_found");
        for bad in [
            "/media/..%2F..%2Findex.sqlite3",
            "/media/index.sqlite3",
            "/media/",
        ] {
            assert_eq!(request(addr, "GET", bad).await.status, 404, "{bad}");
        }
        let got = request(addr, "POST", &format!("/media/{}", media.id)).await;
        assert_eq!(got.status, 405);
        assert!(got.head.contains("allow: get, head"), "{}", got.head);
    }

    #[tokio::test]
    async fn imported_media_is_served_only_to_its_tenant_and_speech_to_anyone() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let audio = sine(440.0, 200, 0.3);
        let wav = crate::media::audio::encode_wav(&audio);
        let imported = state.media.import("acme", &wav).unwrap();
        let spoken = state.media.say("hello", None, None).await.unwrap();
        for account in ["acme", "other"] {
            state.api.accounts.ensure(account).unwrap();
        }
        let key = |account: &str| {
            let key = state.api.accounts.create_key(account).unwrap().unwrap();
            base64(&format!("{account}:{}", key.secret))
        };
        let (acme, other) = (key("acme"), key("other"));
        let addr = serve_with("127.0.0.1:0".parse().unwrap(), state)
            .await
            .unwrap();
        let import_path = format!("/media/{}", imported.id);

        let got = request_as(addr, "GET", &import_path, Some(&acme)).await;
        assert_eq!(got.status, 200);
        assert_eq!(decode_wav(&got.body).unwrap(), &imported.samples[..]);
        let got = request(addr, "GET", &import_path).await;
        assert_eq!(
            (got.status, got.json()["code"].as_str()),
            (404, Some("not_found"))
        );
        let got = request_as(addr, "GET", &import_path, Some(&other)).await;
        assert_eq!(
            (got.status, got.json()["code"].as_str()),
            (404, Some("not_found"))
        );
        let wrong = base64("acme:not-the-secret");
        let got = request_as(addr, "GET", &import_path, Some(&wrong)).await;
        assert_eq!(got.status, 401);

        // Synthesized speech is shared: served with or without credentials.
        let speech_path = format!("/media/{}", spoken.id);
        assert_eq!(request(addr, "GET", &speech_path).await.status, 200);
        let got = request_as(addr, "GET", &speech_path, Some(&other)).await;
        assert_eq!(got.status, 200);
    }

    #[tokio::test]
    async fn a_recording_is_described_served_and_deleted_for_its_account_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let audio = sine(440.0, 500, 0.3);
        let saved = state
            .api
            .recordings
            .save("acme", "call-7", &audio, "dial")
            .unwrap();
        state.api.accounts.ensure("acme").unwrap();
        state.api.accounts.ensure("other").unwrap();
        let acme = state.api.accounts.create_key("acme").unwrap().unwrap();
        let other = state.api.accounts.create_key("other").unwrap().unwrap();
        let acme = base64(&format!("acme:{}", acme.secret));
        let other = base64(&format!("other:{}", other.secret));
        let acme = Some(acme.as_str());
        let addr = serve_with("127.0.0.1:0".parse().unwrap(), state)
            .await
            .unwrap();
        let path = format!("/v1/recordings/{}", saved.id);

        let got = request(addr, "GET", &path).await;
        assert_eq!(got.status, 401);
        assert!(got.head.contains("www-authenticate: basic"), "{}", got.head);
        let got = request_as(addr, "GET", &path, Some(&other)).await;
        assert_eq!(
            (got.status, got.json()["code"].as_str()),
            (404, Some("not_found"))
        );

        let got = request_as(addr, "GET", &path, acme).await;
        assert_eq!(got.status, 200);
        let meta = got.json();
        assert_eq!(meta["id"], saved.id.as_str());
        assert_eq!(
            (meta["tenant"].as_str(), meta["call_id"].as_str()),
            (Some("acme"), Some("call-7"))
        );
        assert_eq!(
            (meta["duration_ms"].as_u64(), meta["source"].as_str()),
            (Some(500), Some("dial"))
        );
        let got = request_as(addr, "GET", "/v1/recordings?call=call-7", acme).await;
        assert_eq!(got.json()["data"][0]["id"], saved.id.as_str());
        let got = request_as(addr, "GET", "/v1/recordings", Some(&other)).await;
        assert_eq!(got.json()["data"], serde_json::json!([]));

        let got = request_as(addr, "GET", &format!("{path}/audio"), acme).await;
        assert_eq!(got.status, 200);
        assert!(got.head.contains("content-type: audio/wav"));
        assert_eq!(decode_wav(&got.body).unwrap(), audio);

        assert_eq!(
            request_as(addr, "DELETE", &path, Some(&other)).await.status,
            404
        );
        assert_eq!(request_as(addr, "DELETE", &path, acme).await.status, 204);
        assert_eq!(request_as(addr, "DELETE", &path, acme).await.status, 404);
        assert_eq!(request_as(addr, "GET", &path, acme).await.status, 404);
        assert_eq!(
            request_as(addr, "GET", &format!("{path}/audio"), acme)
                .await
                .status,
            404
        );
        assert_eq!(
            request_as(addr, "GET", "/v1/recordings/RE..%2F..%2Fx", acme)
                .await
                .status,
            404
        );
        let got = request_as(addr, "PUT", &path, acme).await;
        assert_eq!(got.status, 405);
        assert!(
            got.head.contains("allow: get, delete, head"),
            "{}",
            got.head
        );
    }

    fn base64(text: &str) -> String {
        crate::callbacks::base64(text.as_bytes())
    }

    #[tokio::test]
    async fn health_stays_and_unknown_paths_are_not_implemented() {
        let dir = tempfile::tempdir().unwrap();
        let addr = serve_with("127.0.0.1:0".parse().unwrap(), state(dir.path()))
            .await
            .unwrap();
        let got = request(addr, "GET", "/health").await;
        assert_eq!(
            (got.status, got.json()["status"].as_str()),
            (200, Some("ok"))
        );
        let got = request(addr, "GET", "/metrics").await;
        assert_eq!(got.status, 200);
        assert!(
            got.head
                .contains("content-type: application/openmetrics-text"),
            "{}",
            got.head
        );
        assert_eq!(got.body, b"switchyard_calls{state=\"early\"} 0\n");
        assert_eq!(request(addr, "POST", "/metrics").await.status, 405);
        for (path, why) in [
            ("/v1/notifications/n1", "not built yet"),
            (
                "/v1/conferences/CF1/participants",
                "does not serve this path",
            ),
            ("/v1/presencex", "does not serve this path"),
            ("/", "does not serve this path"),
            ("/media", "does not serve this path"),
            ("/v1/recordings/x/y/z", "does not serve this path"),
        ] {
            let got = request(addr, "GET", path).await;
            let body = got.json();
            assert_eq!(
                (got.status, body["code"].as_str()),
                (501, Some("not_implemented")),
                "{path}"
            );
            assert!(
                body["message"].as_str().unwrap().contains(why),
                "{path}: {body}"
            );
        }
    }
}
