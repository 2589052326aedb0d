//! The REST API under `/v1`: accounts and their keys, limits and SIP
//! users; components, numbers and calls; recordings; the OpenAPI document.
//! One file per resource.
//!
//! ```text
//!   POST   /v1/accounts                        operator            201 account
//!   GET    /v1/accounts                        operator            page of accounts
//!   GET    /v1/accounts/{id}                   operator | account  account + signing_key
//!   POST   /v1/accounts/{id}/signing_key       operator | account  account + new signing_key
//!   POST   /v1/accounts/{id}/suspend           operator            account
//!   POST   /v1/accounts/{id}/resume            operator            account
//!   POST   /v1/accounts/{id}/keys              operator | account  201 key + secret (once)
//!   GET    /v1/accounts/{id}/keys              operator | account  page of keys
//!   DELETE /v1/accounts/{id}/keys/{key}        operator | account  204
//!   GET    /v1/accounts/{id}/limits            operator | account  limits
//!   PUT    /v1/accounts/{id}/limits            operator            limits
//!   GET    /v1/recordings[?call=CA...]         account             page of recordings
//!   GET    /v1/recordings/{id}                 account             recording
//!   GET    /v1/recordings/{id}/audio           account             audio/wav
//!   DELETE /v1/recordings/{id}                 account             204
//!   GET    /v1/calls[?status&number&since&until] account           page of finished calls, newest first
//!   POST   /v1/calls                           account             201 outbound call (429 at limits)
//!   GET    /v1/calls/{id}                      account             call (live, or its CDR)
//!   POST   /v1/calls/{id}                      account             202 hang up / redirect
//!   GET    /v1/calls/{id}/log                  account             decision log entries
//!   GET    /v1/conferences[?status]            account             page of conferences, newest first
//!   GET    /v1/conferences/{id}                account             conference + participants
//!   POST   /v1/conferences/{id}                account             202 end it
//!   POST   /v1/conferences/{id}/participants/{call} account        202 mute / hold / coach / kick
//!   GET    /v1/queues                          account             page of queues (size, average wait)
//!   GET    /v1/queues/{name}                   account             queue + waiting callers
//!   PUT    /v1/queues/{name}                   account             create, or set max_size
//!   POST   /v1/queues/{name}/dequeue           account             202 a caller to a handler
//!   POST   /v1/components/{name}               account             201 version (body: .wasm)
//!   GET    /v1/components                      account             page of components
//!   GET    /v1/components/{name}/versions      account             page of versions
//!   GET    /v1/components/{name}/versions/{v}  account             version
//!   PUT    /v1/sip/credentials/{username}      account             201 / 200 (body: password)
//!   GET    /v1/sip/credentials                 account             page of SIP users
//!   DELETE /v1/sip/credentials/{username}      account             204
//!   PUT    /v1/sip/domains/{domain}            account             201 / 200 (body: none)
//!   GET    /v1/sip/domains                     account             page of SIP domains
//!   DELETE /v1/sip/domains/{domain}            account             204
//!   PUT    /v1/numbers/{number}                account             number (201 if new)
//!   GET    /v1/numbers                         account             page of numbers
//!   GET    /v1/numbers/{number}                account             number
//!   DELETE /v1/numbers/{number}                account             204
//!   POST   /v1/numbers/{number}/rollback       account             number
//!   GET    /v1/openapi.json                    anyone              OpenAPI 3.1
//!   PUT    /v1/directory/providers/{id}        signed (JWS)        201 / 200 provider ([directory] serve)
//!   GET    /v1/directory/providers/{id}        anyone              provider ([directory] serve)
//!   GET    /v1/directory/lookup?id=            anyone              entry + provider ([directory] serve)
//!   POST   /v1/confirmations                   signed (JWS)        signed reply ([provider]; 429 per asker)
//! ```
//!
//! **Auth** is HTTP Basic. An account sends `ACCOUNT_ID:SECRET` (a secret
//! from `POST .../keys`); the operator sends `admin:ADMIN_KEY` (`[api]
//! admin_key` of the config; without one, operator routes answer 403).
//! A resource of another account is 404, never 403. A suspended account's
//! keys get 403 "account suspended". The call placement directory's and
//! the confirmations' routes (C11) take no account auth
//! ([`Handler::unauthenticated`]): their bodies are JWS signed by a
//! provider's key, which is the credential; lookups are public.
//!
//! **Bodies** are at most [`BODY_LIMIT`] bytes (413; a component upload
//! at most `[api] max_component_kb`, or the account's own `component_kb`
//! limit below it) and JSON with no
//! unknown fields (400 naming the problem); request heads at most
//! `serve::http::HEAD_LIMIT` (hyper answers 431). **Lists** take `?limit=`
//! (default 50, max 1000) and `?after=<last id>` and answer
//! `{"data": [...], "next": "<last id>" | null}`; pass `next` as `after`.

pub mod accounts;
pub mod calls;
pub mod components;
pub mod conferences;
pub mod confirmations;
pub mod credentials;
mod deployed;
pub mod directory;
pub mod domains;
pub mod error;
pub mod keys;
pub mod limits;
pub mod numbers;
pub mod presence;
pub mod queues;
pub mod recordings;
pub mod tokens;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::{ApiError, internal};

use crate::store::CdrStore;
use crate::store::recordings::RecordingStore;
use crate::tenancy::{Accounts, Verified, constant_time_eq, sha256};

/// A response of the HTTP edge.
pub type Reply = Response<Full<Bytes>>;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Page size when `limit` is not given, and the largest allowed.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 1000;

/// The OpenAPI 3.1 description of [`ROUTES`].
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the API serves from.
#[derive(Clone, Debug)]
pub struct ApiState {
    pub accounts: Accounts,
    /// Browser and app clients: their presence (`/v1/presence`).
    pub clients: crate::clients::Clients,
    pub recordings: RecordingStore,
    pub conferences: crate::conferences::Conferences,
    pub cdrs: CdrStore,
    /// The operator's key (`[api] admin_key`), if configured.
    pub admin_key: Option<String>,
    pub deploy: DeployState,
    /// Asks the SIP core about calls in progress; `false` if it stopped.
    pub switchboard: Switchboard,
    /// The call placement directory and confirmations (C11), as far as
    /// the config serves them.
    pub directory: crate::directory::Served,
}

/// Hands a request about calls in progress to the SIP core.
#[derive(Clone)]
pub struct Switchboard(
    pub std::sync::Arc<dyn Fn(crate::sip::endpoint::CallRequest) -> bool + Send + Sync>,
);

impl Switchboard {
    /// Sends the request `make` builds around its reply, and waits for
    /// the SIP core's answer.
    pub(crate) async fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(crate::sip::endpoint::Reply<T>) -> crate::sip::endpoint::CallRequest,
    ) -> Result<T, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The request was dropped (client gone): nobody waits any more.
        let reply = Box::new(move |answer| {
            let _ = tx.send(answer);
        });
        if !(self.0)(make(reply)) {
            return Err(internal("the SIP core has stopped"));
        }
        rx.await
            .map_err(|_| internal("the SIP core did not answer"))
    }
}

impl std::fmt::Debug for Switchboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Switchboard")
    }
}

/// Rebuilds what serves calls from the stores (the SIP directory) and
/// resolves once the change is live.
pub type Refresh = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>
        + Send
        + Sync,
>;

/// What `/v1/components` and `/v1/numbers` work with.
#[derive(Clone)]
pub struct DeployState {
    pub store: crate::deploy::Deployments,
    /// Checks uploads exactly as `switchyard check` does.
    pub host: crate::wasm::WasmHost,
    /// What accounts may not claim over REST.
    pub reserved: std::sync::Arc<Reserved>,
    /// Largest component upload (`[api] max_component_kb`), in bytes.
    pub max_component_bytes: usize,
    pub refresh: Refresh,
}

impl std::fmt::Debug for DeployState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployState")
            .field("store", &self.store)
            .field("max_component_bytes", &self.max_component_bytes)
            .finish_non_exhaustive()
    }
}

/// What the config file holds, and the operator's rule for domains.
#[derive(Debug, Clone, Default)]
pub struct Reserved {
    /// Numbers bound in the config file.
    pub numbers: std::collections::HashSet<String>,
    /// SIP domains of the config's tenants, lowercase.
    pub domains: std::collections::HashSet<String>,
    /// `[api] sip_domain_suffix`: accounts claim only domains under it.
    pub domain_suffix: Option<String>,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Account(String),
}

impl Caller {
    /// Ok for the operator; 403 for an account.
    fn operator(&self) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Account(_) => Err(ApiError::Forbidden(
                "this route is for the operator (Basic admin:ADMIN_KEY)".into(),
            )),
        }
    }

    /// Ok for the operator or account `id`; 404 for another account.
    fn may_see(&self, id: &str) -> Result<(), ApiError> {
        match self {
            Caller::Account(own) if own != id => Err(ApiError::NotFound(format!("account {id:?}"))),
            _ => Ok(()),
        }
    }

    /// The calling account; 403 for the operator (account-scoped data).
    pub(crate) fn account(&self) -> Result<&str, ApiError> {
        match self {
            Caller::Account(id) => Ok(id),
            Caller::Operator => Err(ApiError::Forbidden(
                "this route is read with an account's key, not the admin key".into(),
            )),
        }
    }
}

/// The handlers [`ROUTES`] lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    OpenApi,
    CreateAccount,
    ListAccounts,
    GetAccount,
    RotateSigningKey,
    SuspendAccount,
    ResumeAccount,
    CreateKey,
    ListKeys,
    DeleteKey,
    GetLimits,
    PutLimits,
    ListRecordings,
    GetRecording,
    RecordingAudio,
    DeleteRecording,
    UploadComponent,
    PutCredential,
    ListCredentials,
    DeleteCredential,
    PutDomain,
    ListDomains,
    DeleteDomain,
    ListComponents,
    ListVersions,
    GetVersion,
    PutNumber,
    ListNumbers,
    GetNumber,
    DeleteNumber,
    RollbackNumber,
    ListCalls,
    CreateCall,
    GetCall,
    CallLog,
    UpdateCall,
    ListConferences,
    GetConference,
    UpdateConference,
    UpdateParticipant,
    ListQueues,
    GetQueue,
    PutQueue,
    Dequeue,
    CreateToken,
    CheckToken,
    ListPresence,
    GetPresence,
    PutProvider,
    GetProvider,
    LookupProvider,
    Confirm,
}

impl Handler {
    /// Routes whose requests carry no account credentials: the OpenAPI
    /// document, and C11's, whose bodies are signed by a provider's key
    /// (checked by the handler) or which are public lookups.
    fn unauthenticated(self) -> bool {
        matches!(
            self,
            Handler::OpenApi
                | Handler::PutProvider
                | Handler::GetProvider
                | Handler::LookupProvider
                | Handler::Confirm
        )
    }
}

/// Every route of the API: method, path template (`{x}` is one segment),
/// handler. `HEAD` is answered wherever `GET` is.
const ROUTES: &[(&str, &str, Handler)] = &[
    ("GET", "/v1/openapi.json", Handler::OpenApi),
    ("POST", "/v1/accounts", Handler::CreateAccount),
    ("GET", "/v1/accounts", Handler::ListAccounts),
    ("GET", "/v1/accounts/{id}", Handler::GetAccount),
    (
        "POST",
        "/v1/accounts/{id}/signing_key",
        Handler::RotateSigningKey,
    ),
    ("POST", "/v1/accounts/{id}/suspend", Handler::SuspendAccount),
    ("POST", "/v1/accounts/{id}/resume", Handler::ResumeAccount),
    ("POST", "/v1/accounts/{id}/keys", Handler::CreateKey),
    ("GET", "/v1/accounts/{id}/keys", Handler::ListKeys),
    ("DELETE", "/v1/accounts/{id}/keys/{key}", Handler::DeleteKey),
    ("GET", "/v1/accounts/{id}/limits", Handler::GetLimits),
    ("PUT", "/v1/accounts/{id}/limits", Handler::PutLimits),
    ("GET", "/v1/recordings", Handler::ListRecordings),
    ("GET", "/v1/recordings/{id}", Handler::GetRecording),
    ("GET", "/v1/recordings/{id}/audio", Handler::RecordingAudio),
    ("DELETE", "/v1/recordings/{id}", Handler::DeleteRecording),
    ("POST", "/v1/components/{name}", Handler::UploadComponent),
    (
        "PUT",
        "/v1/sip/credentials/{username}",
        Handler::PutCredential,
    ),
    ("GET", "/v1/sip/credentials", Handler::ListCredentials),
    (
        "DELETE",
        "/v1/sip/credentials/{username}",
        Handler::DeleteCredential,
    ),
    ("PUT", "/v1/sip/domains/{domain}", Handler::PutDomain),
    ("GET", "/v1/sip/domains", Handler::ListDomains),
    ("DELETE", "/v1/sip/domains/{domain}", Handler::DeleteDomain),
    ("GET", "/v1/components", Handler::ListComponents),
    (
        "GET",
        "/v1/components/{name}/versions",
        Handler::ListVersions,
    ),
    (
        "GET",
        "/v1/components/{name}/versions/{version}",
        Handler::GetVersion,
    ),
    ("PUT", "/v1/numbers/{number}", Handler::PutNumber),
    ("GET", "/v1/numbers", Handler::ListNumbers),
    ("GET", "/v1/numbers/{number}", Handler::GetNumber),
    ("DELETE", "/v1/numbers/{number}", Handler::DeleteNumber),
    (
        "POST",
        "/v1/numbers/{number}/rollback",
        Handler::RollbackNumber,
    ),
    ("GET", "/v1/calls", Handler::ListCalls),
    ("POST", "/v1/calls", Handler::CreateCall),
    ("GET", "/v1/calls/{id}", Handler::GetCall),
    ("POST", "/v1/calls/{id}", Handler::UpdateCall),
    ("GET", "/v1/calls/{id}/log", Handler::CallLog),
    ("GET", "/v1/conferences", Handler::ListConferences),
    ("GET", "/v1/conferences/{id}", Handler::GetConference),
    ("POST", "/v1/conferences/{id}", Handler::UpdateConference),
    (
        "POST",
        "/v1/conferences/{id}/participants/{call}",
        Handler::UpdateParticipant,
    ),
    ("GET", "/v1/queues", Handler::ListQueues),
    ("GET", "/v1/queues/{name}", Handler::GetQueue),
    ("PUT", "/v1/queues/{name}", Handler::PutQueue),
    ("POST", "/v1/queues/{name}/dequeue", Handler::Dequeue),
    ("POST", "/v1/tokens", Handler::CreateToken),
    ("POST", "/v1/tokens/check", Handler::CheckToken),
    ("GET", "/v1/presence", Handler::ListPresence),
    ("GET", "/v1/presence/{identity}", Handler::GetPresence),
    ("PUT", "/v1/directory/providers/{id}", Handler::PutProvider),
    ("GET", "/v1/directory/providers/{id}", Handler::GetProvider),
    ("GET", "/v1/directory/lookup", Handler::LookupProvider),
    ("POST", "/v1/confirmations", Handler::Confirm),
];

/// Why a path that fits no route is not served.
pub const UNKNOWN_PATH: &str = "the REST API does not serve this path";

/// Resources the issue list brings later, named so a client learns they
/// are not built rather than mistyped.
const PLANNED: &[(&str, &str)] = &[(
    "/v1/notifications",
    "notifications are not built yet: they come with the notification router",
)];

fn not_built(path: &str) -> &'static str {
    PLANNED
        .iter()
        .find(|(prefix, _)| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .map_or(UNKNOWN_PATH, |(_, why)| why)
}

/// The path parameters of `path` if it fits `template`.
fn fit<'a>(template: &str, path: &'a str) -> Option<Vec<&'a str>> {
    let mut want = template.trim_start_matches('/').split('/');
    let mut got = path.trim_start_matches('/').split('/');
    let mut params = Vec::new();
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) if w.starts_with('{') => {
                if g.is_empty() {
                    return None;
                }
                params.push(g);
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

/// Answers one request to a `/v1` path.
pub async fn handle<B>(req: Request<B>, state: &ApiState) -> Reply
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    respond(req, state)
        .await
        .unwrap_or_else(ApiError::into_reply)
}

async fn respond<B>(req: Request<B>, state: &ApiState) -> Result<Reply, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = req.uri().path().to_owned();
    let method = match *req.method() {
        Method::HEAD => Method::GET,
        ref other => other.clone(),
    };
    let mut allowed = Vec::new();
    let mut found = None;
    for (m, template, handler) in ROUTES {
        if let Some(params) = fit(template, &path) {
            if method.as_str() == *m {
                found = Some((*handler, params.into_iter().map(str::to_owned).collect()));
                break;
            }
            allowed.push(*m);
        }
    }
    let (handler, params): (Handler, Vec<String>) = match found {
        Some(found) => found,
        None if allowed.is_empty() => return Err(ApiError::NotImplemented(not_built(&path))),
        None => {
            if allowed.contains(&"GET") {
                allowed.push("HEAD");
            }
            return Err(ApiError::MethodNotAllowed {
                allow: allowed.join(", "),
            });
        }
    };
    if handler == Handler::OpenApi {
        let mut reply = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
        reply
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(reply);
    }
    let query = Query::parse(req.uri().query().unwrap_or(""))?;
    if handler.unauthenticated() {
        let body = read_body(req, BODY_LIMIT).await?;
        let id = || decode(&params[0]);
        return match handler {
            Handler::PutProvider => directory::put(state, &id(), &body).await,
            Handler::GetProvider => directory::get(state, &id()),
            Handler::LookupProvider => directory::lookup(state, &query),
            Handler::Confirm => confirmations::answer(state, &body).await,
            _ => Err(internal("an unauthenticated route without a handler")),
        };
    }
    let caller = authenticate(req.headers(), state).await?;
    let limit = match handler {
        Handler::UploadComponent => components::upload_limit(state, &caller).await?,
        _ => BODY_LIMIT,
    };
    let body = read_body(req, limit).await?;
    let p = |i: usize| params[i].as_str();
    match handler {
        Handler::OpenApi
        | Handler::PutProvider
        | Handler::GetProvider
        | Handler::LookupProvider
        | Handler::Confirm => unreachable!("answered above"),
        Handler::CreateAccount => accounts::create(state, &caller, &body).await,
        Handler::ListAccounts => accounts::list(state, &caller, &query).await,
        Handler::GetAccount => accounts::get(state, &caller, p(0)).await,
        Handler::RotateSigningKey => accounts::rotate_signing_key(state, &caller, p(0)).await,
        Handler::SuspendAccount => accounts::set_status(state, &caller, p(0), false).await,
        Handler::ResumeAccount => accounts::set_status(state, &caller, p(0), true).await,
        Handler::CreateKey => keys::create(state, &caller, p(0)).await,
        Handler::ListKeys => keys::list(state, &caller, p(0), &query).await,
        Handler::DeleteKey => keys::delete(state, &caller, p(0), p(1)).await,
        Handler::GetLimits => limits::get(state, &caller, p(0)).await,
        Handler::PutLimits => limits::put(state, &caller, p(0), &body).await,
        Handler::ListRecordings => recordings::list(state, &caller, &query).await,
        Handler::GetRecording => recordings::get(state, &caller, p(0)).await,
        Handler::RecordingAudio => recordings::audio(state, &caller, p(0)).await,
        Handler::DeleteRecording => recordings::delete(state, &caller, p(0)).await,
        Handler::UploadComponent => components::upload(state, &caller, p(0), body).await,
        Handler::PutCredential => credentials::put(state, &caller, &decode(p(0)), &body).await,
        Handler::ListCredentials => credentials::list(state, &caller, &query).await,
        Handler::DeleteCredential => credentials::delete(state, &caller, &decode(p(0))).await,
        Handler::PutDomain => domains::put(state, &caller, &decode(p(0)), &body).await,
        Handler::ListDomains => domains::list(state, &caller, &query).await,
        Handler::DeleteDomain => domains::delete(state, &caller, &decode(p(0))).await,
        Handler::ListComponents => components::list(state, &caller, &query).await,
        Handler::ListVersions => components::versions(state, &caller, p(0), &query).await,
        Handler::GetVersion => components::version(state, &caller, p(0), p(1)).await,
        Handler::PutNumber => numbers::put(state, &caller, &decode(p(0)), &body).await,
        Handler::ListNumbers => numbers::list(state, &caller, &query).await,
        Handler::GetNumber => numbers::get(state, &caller, &decode(p(0))).await,
        Handler::DeleteNumber => numbers::delete(state, &caller, &decode(p(0))).await,
        Handler::RollbackNumber => numbers::rollback(state, &caller, &decode(p(0))).await,
        Handler::ListCalls => calls::list(state, &caller, &query).await,
        Handler::CreateCall => calls::create(state, &caller, &body).await,
        Handler::GetCall => calls::get(state, &caller, p(0)).await,
        Handler::CallLog => calls::log(state, &caller, p(0)).await,
        Handler::UpdateCall => calls::update(state, &caller, p(0), &body).await,
        Handler::ListConferences => conferences::list(state, &caller, &query).await,
        Handler::GetConference => conferences::get(state, &caller, p(0)).await,
        Handler::UpdateConference => conferences::update(state, &caller, p(0), &body).await,
        Handler::UpdateParticipant => {
            conferences::participant(state, &caller, p(0), p(1), &body).await
        }
        Handler::ListQueues => queues::list(state, &caller, &query).await,
        Handler::GetQueue => queues::get(state, &caller, &decode(p(0))).await,
        Handler::PutQueue => queues::put(state, &caller, &decode(p(0)), &body).await,
        Handler::Dequeue => queues::dequeue(state, &caller, &decode(p(0)), &body).await,
        Handler::CreateToken => tokens::create(state, &caller, &body).await,
        Handler::CheckToken => tokens::check(state, &caller, &body).await,
        Handler::ListPresence => presence::list(state, &caller),
        Handler::GetPresence => presence::get(state, &caller, &decode(p(0))),
    }
}

/// The caller named by the `Authorization` header (also used by
/// `GET /media/{id}` for a tenant's imports).
pub(crate) async fn authenticate(
    headers: &HeaderMap,
    state: &ApiState,
) -> Result<Caller, ApiError> {
    let unauthorized = |why: &str| ApiError::Unauthorized(why.to_owned());
    let header = headers.get(AUTHORIZATION).ok_or_else(|| {
        unauthorized("send HTTP Basic auth: ACCOUNT_ID:SECRET or admin:ADMIN_KEY")
    })?;
    let encoded = header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
        })
        .ok_or_else(|| unauthorized("only HTTP Basic auth is accepted"))?;
    let decoded = base64_decode(encoded.trim())
        .and_then(|raw| String::from_utf8(raw).ok())
        .ok_or_else(|| unauthorized("the Basic credentials are not valid base64"))?;
    let (user, secret) = decoded
        .split_once(':')
        .ok_or_else(|| unauthorized("the Basic credentials need a user and a password"))?;
    if user == "admin" {
        let Some(admin_key) = &state.admin_key else {
            return Err(ApiError::Forbidden(
                "no admin key is configured: set `[api] admin_key = \"...\"` (16 or more \
                 characters) in the config and restart"
                    .into(),
            ));
        };
        return if constant_time_eq(&sha256(secret.as_bytes()), &sha256(admin_key.as_bytes())) {
            Ok(Caller::Operator)
        } else {
            Err(unauthorized("wrong credentials"))
        };
    }
    let (accounts, user, secret) = (state.accounts.clone(), user.to_owned(), secret.to_owned());
    let verified = tokio::task::spawn_blocking(move || accounts.verify(&user, &secret))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    match verified {
        Verified::Active(account) => Ok(Caller::Account(account.id)),
        Verified::Suspended => Err(ApiError::Forbidden("account suspended".into())),
        Verified::Invalid => Err(unauthorized("wrong credentials")),
    }
}

/// A path segment with `%XX` escapes decoded (a `+` of an E.164 number
/// may arrive as `%2B`); malformed escapes stay as they are.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| segment.to_owned())
}

/// The body, at most `limit` bytes.
async fn read_body<B>(req: Request<B>, limit: usize) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let too_large = ApiError::PayloadTooLarge { limit };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large);
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large),
        Err(e) => Err(ApiError::BadRequest(format!("reading the body: {e}"))),
    }
}

/// A JSON body as `T` (which should deny unknown fields).
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest("expected a JSON body".into()));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))
}

/// The query parameters the API knows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query {
    pub limit: u32,
    pub after: Option<String>,
    pub call: Option<String>,
    /// `/v1/calls`: the call's outcome ("completed", "busy"...).
    pub status: Option<String>,
    /// `/v1/calls`: the number (or address) called.
    pub number: Option<String>,
    /// `/v1/calls`: started at or after / before, unix milliseconds.
    pub since: Option<u64>,
    pub until: Option<u64>,
    /// `/v1/directory/lookup`: the identifier looked up.
    pub id: Option<String>,
}

impl Query {
    fn parse(query: &str) -> Result<Query, ApiError> {
        let mut parsed = Query {
            limit: DEFAULT_LIMIT,
            ..Query::default()
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "limit" => {
                    parsed.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "limit must be a number from 1 to {MAX_LIMIT}, not {value:?}"
                            ))
                        })?;
                }
                "after" => parsed.after = Some(value.to_owned()).filter(|v| !v.is_empty()),
                "call" => parsed.call = Some(value.to_owned()).filter(|v| !v.is_empty()),
                "status" => parsed.status = Some(decode(value)).filter(|v| !v.is_empty()),
                "number" => parsed.number = Some(decode(value)).filter(|v| !v.is_empty()),
                "since" => parsed.since = Some(unix_ms(name, value)?),
                "until" => parsed.until = Some(unix_ms(name, value)?),
                "id" => parsed.id = Some(decode(value)).filter(|v| !v.is_empty()),
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown query parameter {other:?}"
                    )));
                }
            }
        }
        Ok(parsed)
    }
}

/// A `since`/`until` value: unix milliseconds.
fn unix_ms(name: &str, value: &str) -> Result<u64, ApiError> {
    value.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "{name} must be a time in unix milliseconds, not {value:?}"
        ))
    })
}

/// One page of a list: `{"data": [...], "next": ...}`. `items` holds up
/// to `limit + 1` rows; the extra one only says there is a next page.
pub(crate) fn page<T: Serialize, K: ToString + ?Sized>(
    mut items: Vec<T>,
    limit: u32,
    id: impl Fn(&T) -> &K,
) -> Reply {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = if more {
        items.last().map(|item| id(item).to_string())
    } else {
        None
    };
    json(
        StatusCode::OK,
        &serde_json::json!({ "data": items, "next": next }),
    )
}

/// Runs blocking store work off the async path.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(internal)?
        .map_err(internal)
}

/// A JSON reply.
pub fn json(status: StatusCode, body: &impl Serialize) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut reply = Response::new(Full::new(Bytes::from(bytes)));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply
}

/// An empty 204.
pub(crate) fn no_content() -> Reply {
    let mut reply = Response::new(Full::new(Bytes::new()));
    *reply.status_mut() = StatusCode::NO_CONTENT;
    reply
}

/// The WAV file at `path`; `None` if it is not there (any more).
pub async fn wav_file(
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

/// Standard base64 (padding optional); `None` if malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let text = text.trim_end_matches('=').as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= u32::from(value(c)?) << (18 - 6 * i);
        }
        out.extend_from_slice(&acc.to_be_bytes()[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_document_and_nothing_else_is() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "patch", "delete", "head", "options"]
                    .contains(&method.as_str())
                {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(routed, documented);
    }

    #[test]
    fn templates_fit_only_their_paths() {
        assert_eq!(
            fit("/v1/accounts/{id}/keys/{key}", "/v1/accounts/AC1/keys/SK2"),
            Some(vec!["AC1", "SK2"])
        );
        assert_eq!(fit("/v1/accounts/{id}", "/v1/accounts/"), None);
        assert_eq!(fit("/v1/accounts/{id}", "/v1/accounts/a/b"), None);
        assert_eq!(fit("/v1/accounts", "/v1/accounts"), Some(vec![]));
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(decode("%2B15550100"), "+15550100");
        assert_eq!(decode("alice"), "alice");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%2"), "%zz%2");
        assert_eq!(decode("%ff"), "%ff", "not UTF-8: left as sent");
    }

    #[test]
    fn base64_decodes_basic_credentials() {
        assert_eq!(
            base64_decode("YWRtaW46c2VjcmV0").as_deref(),
            Some(&b"admin:secret"[..])
        );
        assert_eq!(base64_decode("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode("YWI=").as_deref(), Some(&b"ab"[..]));
        assert_eq!(base64_decode("!!!!"), None);
    }

    #[test]
    fn queries_are_checked() {
        assert_eq!(Query::parse("").unwrap().limit, DEFAULT_LIMIT);
        let q = Query::parse("limit=2&after=SK1&call=CA9").unwrap();
        assert_eq!(
            (q.limit, q.after.as_deref(), q.call.as_deref()),
            (2, Some("SK1"), Some("CA9"))
        );
        let q = Query::parse("status=completed&number=%2B15550100&since=5&until=9").unwrap();
        // A `+` stays a `+`: numbers are often sent unescaped.
        assert_eq!(
            Query::parse("number=+1555").unwrap().number.as_deref(),
            Some("+1555")
        );
        assert_eq!(
            (q.status.as_deref(), q.number.as_deref(), q.since, q.until),
            (Some("completed"), Some("+15550100"), Some(5), Some(9))
        );
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "color=red",
            "since=yesterday",
            "until=-1",
        ] {
            assert!(Query::parse(bad).is_err(), "{bad}");
        }
    }
}
