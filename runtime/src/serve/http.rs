//! The HTTP listener: health, media files and recordings. The REST API
//! (issue 5) mounts here; paths it will own answer a JSON 501 until then.
//!
//! ```text
//!   GET    /health                       {"status":"ok"}
//!   GET    /media/{id}                   audio/wav  (id: 64 hex, a cache entry)
//!   GET    /v1/recordings/{id}           JSON metadata
//!   GET    /v1/recordings/{id}/audio     audio/wav
//!   DELETE /v1/recordings/{id}           204
//!   anything else                        501 {"code":"not_implemented",...}
//! ```
//!
//! Errors are JSON `{"code", "message"}`; [`ApiError`] maps each to its
//! status in one place. Ids are checked for their exact form before they
//! name a file, so no path can leave the media or recordings directory.
//!
//! **No per-tenant authentication yet.** Anyone who can reach this port
//! and knows an id can read it (and delete a recording). The only
//! protection is that ids cannot be guessed: a media id is the SHA-256 of
//! the audio, a recording id carries 128 random bits. Per-tenant API keys,
//! listing recordings over REST and scoping every route to the caller's
//! tenant come with the REST issue.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::media::cache::{MediaCache, is_media_id};
use crate::store::recordings::{RecordingStore, is_recording_id};

/// What the media and recording routes serve from.
#[derive(Clone, Debug)]
pub struct HttpState {
    pub media: MediaCache,
    pub recordings: RecordingStore,
}

/// Binds `addr` and serves health, media and recordings from `state`
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
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

type Reply = Response<Full<Bytes>>;

/// Why a request failed; the one place errors become HTTP statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ApiError {
    NotFound(String),
    MethodNotAllowed { allow: &'static str },
    NotImplemented,
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::NotImplemented => "not_implemented",
            ApiError::Internal(_) => "internal",
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::NotFound(what) => format!("no {what}"),
            ApiError::MethodNotAllowed { allow } => format!("this path allows {allow}"),
            ApiError::NotImplemented => "the REST API is not built yet".into(),
            ApiError::Internal(reason) => reason.clone(),
        }
    }

    fn into_reply(self) -> Reply {
        if let ApiError::Internal(reason) = &self {
            tracing::warn!(%reason, "HTTP request failed");
        }
        let body = serde_json::json!({ "code": self.code(), "message": self.message() });
        let mut reply = json(self.status(), &body);
        if let ApiError::MethodNotAllowed { allow } = self {
            reply
                .headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
        }
        reply
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

async fn route<B>(req: Request<B>, state: &HttpState) -> Reply {
    respond(req.method(), req.uri().path(), state)
        .await
        .unwrap_or_else(ApiError::into_reply)
}

async fn respond(method: &Method, path: &str, state: &HttpState) -> Result<Reply, ApiError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let reading = matches!(*method, Method::GET | Method::HEAD);
    match segments.as_slice() {
        ["health"] => Ok(json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))),
        ["media", id] if reading => media_file(state, id).await,
        ["media", _] => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
        ["v1", "recordings", id] if reading => recording(state, id).await,
        ["v1", "recordings", id] if *method == Method::DELETE => delete_recording(state, id).await,
        ["v1", "recordings", _] => Err(ApiError::MethodNotAllowed {
            allow: "GET, HEAD, DELETE",
        }),
        ["v1", "recordings", id, "audio"] if reading => recording_audio(state, id).await,
        ["v1", "recordings", _, "audio"] => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
        _ => Err(ApiError::NotImplemented),
    }
}

async fn media_file(state: &HttpState, id: &str) -> Result<Reply, ApiError> {
    let missing = || ApiError::NotFound(format!("media with id {id:?}"));
    if !is_media_id(id) {
        return Err(missing());
    }
    let (media, owned_id) = (state.media.clone(), id.to_owned());
    let path = tokio::task::spawn_blocking(move || media.file(&owned_id))
        .await
        .map_err(internal)?
        .ok_or_else(missing)?;
    // Content-addressed: the bytes under an id never change.
    wav_file(&path, "private, max-age=86400, immutable")
        .await?
        .ok_or_else(missing)
}

async fn recording(state: &HttpState, id: &str) -> Result<Reply, ApiError> {
    let found = find_recording(state, id).await?;
    Ok(json(StatusCode::OK, &found))
}

async fn recording_audio(state: &HttpState, id: &str) -> Result<Reply, ApiError> {
    find_recording(state, id).await?;
    let path = state.recordings.audio_path(id);
    wav_file(&path, "private, no-cache")
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("audio of recording {id:?}")))
}

async fn delete_recording(state: &HttpState, id: &str) -> Result<Reply, ApiError> {
    let (store, owned_id) = (state.recordings.clone(), id.to_owned());
    let deleted = tokio::task::spawn_blocking(move || store.delete(&owned_id))
        .await
        .map_err(internal)?
        .map_err(|e| internal(format!("{e:#}")))?;
    if !deleted {
        return Err(ApiError::NotFound(format!("recording {id:?}")));
    }
    let mut reply = Response::new(Full::new(Bytes::new()));
    *reply.status_mut() = StatusCode::NO_CONTENT;
    Ok(reply)
}

async fn find_recording(
    state: &HttpState,
    id: &str,
) -> Result<crate::store::recordings::Recording, ApiError> {
    let missing = || ApiError::NotFound(format!("recording {id:?}"));
    if !is_recording_id(id) {
        return Err(missing());
    }
    let (store, owned_id) = (state.recordings.clone(), id.to_owned());
    tokio::task::spawn_blocking(move || store.get(&owned_id))
        .await
        .map_err(internal)?
        .map_err(|e| internal(format!("{e:#}")))?
        .ok_or_else(missing)
}

/// The WAV file at `path`; `None` if it is not there (any more).
async fn wav_file(
    path: &std::path::Path,
    cache_control: &'static str,
) -> Result<Option<Reply>, ApiError> {
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(internal(format!("reading {}: {e}", path.display()))),
    };
    let mut reply = Response::new(Full::new(Bytes::from(bytes)));
    let headers = reply.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache_control));
    Ok(Some(reply))
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut reply = Response::new(Full::new(Bytes::from(bytes)));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply
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
            recordings: RecordingStore::open(&dir.join("recordings")).unwrap(),
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
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
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
    async fn a_recording_is_described_served_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let audio = sine(440.0, 500, 0.3);
        let saved = state
            .recordings
            .save("acme", "call-7", &audio, "dial")
            .unwrap();
        let addr = serve_with("127.0.0.1:0".parse().unwrap(), state)
            .await
            .unwrap();
        let path = format!("/v1/recordings/{}", saved.id);

        let got = request(addr, "GET", &path).await;
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

        let got = request(addr, "GET", &format!("{path}/audio")).await;
        assert_eq!(got.status, 200);
        assert!(got.head.contains("content-type: audio/wav"));
        assert_eq!(decode_wav(&got.body).unwrap(), audio);

        assert_eq!(request(addr, "DELETE", &path).await.status, 204);
        assert_eq!(request(addr, "DELETE", &path).await.status, 404);
        assert_eq!(request(addr, "GET", &path).await.status, 404);
        assert_eq!(
            request(addr, "GET", &format!("{path}/audio")).await.status,
            404
        );
        assert_eq!(
            request(addr, "GET", "/v1/recordings/RE..%2F..%2Fx")
                .await
                .status,
            404
        );
        assert_eq!(request(addr, "PUT", &path).await.status, 405);
    }

    #[tokio::test]
    async fn health_stays_and_other_paths_are_still_not_implemented() {
        let dir = tempfile::tempdir().unwrap();
        let addr = serve_with("127.0.0.1:0".parse().unwrap(), state(dir.path()))
            .await
            .unwrap();
        let got = request(addr, "GET", "/health").await;
        assert_eq!(
            (got.status, got.json()["status"].as_str()),
            (200, Some("ok"))
        );
        for path in ["/v1/calls", "/", "/media", "/v1/recordings"] {
            let got = request(addr, "GET", path).await;
            assert_eq!(
                (got.status, got.json()["code"].as_str()),
                (501, Some("not_implemented")),
                "{path}"
            );
        }
    }
}
