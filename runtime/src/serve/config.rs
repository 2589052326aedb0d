//! `switchyard serve --config FILE`: the TOML an operator writes.
//!
//! Every field has a default, so an empty file is a runnable (tenant-less)
//! server; [`Config::demo`] is what `serve` runs with no file at all.
//! [`Config::check`] refuses a config with an error naming the bad item.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::egress::{EgressPolicy, Setting};
use crate::media::engine::allocator::{Policy, cores};
use crate::sip::Transport;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tokio worker threads (default: one per core).
    #[serde(default)]
    pub workers: Option<usize>,
    /// Region this runtime reports to guests (C4). Default "local".
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub sip: SipSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub media: MediaSection,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub admission: AdmissionSection,
    #[serde(default)]
    pub conference: ConferenceSection,
    #[serde(default)]
    pub shaken: ShakenSection,
    #[serde(default)]
    pub directory: DirectorySection,
    /// This runtime as a communication provider (C11): optional.
    #[serde(default)]
    pub provider: Option<ProviderSection>,
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSection {
    #[serde(default = "default_sip_addrs")]
    pub udp: Vec<SocketAddr>,
    #[serde(default = "default_sip_addrs")]
    pub tcp: Vec<SocketAddr>,
    #[serde(default)]
    pub tls: Vec<SocketAddr>,
    /// PEM certificate chain and key for the TLS listeners.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Largest SIP message accepted, in bytes (default 65,535).
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Open TCP/TLS connections at most; more are refused (default 1,024).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A TCP/TLS connection idle this long is closed (default 300 s).
    #[serde(default = "default_idle")]
    pub idle_secs: u64,
    /// Offer the SHA-256 digest challenge before MD5 (RFC 8760 order).
    /// Default false: many phones read only the first challenge and fail
    /// when it is not MD5; both are always offered.
    #[serde(default)]
    pub sha256_first: bool,
    /// Let calls to `sip:` URIs (REST calls, guests' dials, transfers by
    /// REFER) reach loopback, private and other non-public addresses that
    /// are not a trunk of the tenant. Off by default: tenants name these
    /// addresses, and the runtime must not be their way into the
    /// operator's network. One of the keys of the egress policy
    /// ([`Config::egress`]).
    #[serde(default)]
    pub private_destinations: bool,
}

/// Cascaded conferences across runtimes of several regions (issue 15):
/// every runtime of the set has the same section. A conference with
/// participants in several regions runs one mixer per region, linked by
/// RTP; the runtime of region `directory` keeps the placements.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConferenceSection {
    /// The HTTP base URL of each region's runtime (this one's may be
    /// left out), e.g. `eu = "http://10.0.0.2:8080"`. Operator-run
    /// addresses: they are not tenant destinations, so the egress policy
    /// does not apply.
    #[serde(default)]
    pub peers: std::collections::BTreeMap<String, String>,
    /// The region whose runtime keeps the placements (default: this one).
    pub directory: Option<String>,
    /// Shared by the set: runtimes send it as a bearer token to each
    /// other's `/internal/v1/`, at least 16 characters.
    pub secret: Option<String>,
    /// Ports at the top of `[media] ports` kept for cascade links (RTP and
    /// RTCP, two per link to another region) when cascading; calls use
    /// the rest. Default 64: 32 links.
    #[serde(default = "default_link_ports")]
    pub link_ports: u16,
}

fn default_link_ports() -> u16 {
    64
}

/// `[shaken]`: STIR/SHAKEN checks of incoming calls' Identity headers
/// (C11). Off by default: every call is `not-checked`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShakenSection {
    /// Check the Identity header of every incoming SIP call before its
    /// handler runs: the handler's `incoming.verification` is `passed`
    /// (with the attestation), `failed` or `no-evidence`.
    #[serde(default)]
    pub verify: bool,
    /// PEM file of the trusted SHAKEN roots (the STI-CAs); required with
    /// `verify`.
    pub roots: Option<PathBuf>,
    /// Allow x5u URLs on loopback/private addresses (off by default). One
    /// of the keys of the egress policy ([`Config::egress`]).
    #[serde(default)]
    pub fetch_private: bool,
    /// PEM file of CA certificates trusted for the https of x5u fetches,
    /// beside the system's (an internal PKI).
    pub fetch_ca: Option<PathBuf>,
    /// Longest a certificate fetch may take (default 2,000 ms): the caller
    /// waits meanwhile.
    #[serde(default = "default_shaken_timeout")]
    pub timeout_ms: u64,
    /// How long a fetched certificate chain is trusted before it is
    /// fetched again (default 3,600 s).
    #[serde(default = "default_cert_ttl")]
    pub cert_ttl_secs: u64,
}

impl Default for ShakenSection {
    fn default() -> Self {
        Self {
            verify: false,
            roots: None,
            fetch_private: false,
            fetch_ca: None,
            timeout_ms: default_shaken_timeout(),
            cert_ttl_secs: default_cert_ttl(),
        }
    }
}

fn default_shaken_timeout() -> u64 {
    2_000
}

fn default_cert_ttl() -> u64 {
    3_600
}

/// `[directory]`: the call placement directory (C11) — whether this
/// runtime serves one, and which one it asks and publishes to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySection {
    /// Answer `/v1/directory/*` (providers' signed updates, lookups).
    #[serde(default)]
    pub serve: bool,
    /// The directory this runtime asks who manages a caller, and where
    /// `[provider]` publishes its entry (it may be this runtime's own
    /// `http://…`). Unset: no directory checks.
    pub url: Option<String>,
    /// How long a lookup (and an asker's key) is cached (default 300 s).
    #[serde(default = "default_directory_ttl")]
    pub ttl_secs: u64,
    /// Longest a lookup or a confirmation request may take (default
    /// 1,000 ms): an incoming call waits meanwhile.
    #[serde(default = "default_directory_timeout")]
    pub timeout_ms: u64,
    /// Allow the directory and providers' confirmation URLs on loopback
    /// and private addresses (off by default). One of the keys of the
    /// egress policy ([`Config::egress`]).
    #[serde(default)]
    pub private: bool,
}

impl Default for DirectorySection {
    fn default() -> Self {
        Self {
            serve: false,
            url: None,
            ttl_secs: default_directory_ttl(),
            timeout_ms: default_directory_timeout(),
            private: false,
        }
    }
}

fn default_directory_ttl() -> u64 {
    300
}

fn default_directory_timeout() -> u64 {
    1_000
}

/// `[provider]`: this runtime as a communication provider (C11). It
/// publishes `identifiers` to the `[directory] url` at start (a signed
/// update), answers `POST /v1/confirmations` about the calls it placed,
/// and signs the confirmation queries it sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    /// The provider id (`kid` of what it signs), e.g. `a.example`.
    pub id: Option<String>,
    /// P-256 private key, PKCS#8 (or SEC1) PEM file.
    pub key: Option<PathBuf>,
    /// Where other runtimes ask this one to confirm its calls: its own
    /// `http(s)://…/v1/confirmations`.
    pub confirm_url: Option<String>,
    /// What it manages: E.164 numbers (`+15551230001`), ranges
    /// (`+1555*`), SIP domains (`a.example`).
    #[serde(default)]
    pub identifiers: Vec<String>,
    /// How far from the asked time a placed call still confirms (default
    /// 30 s, at most 120).
    #[serde(default = "default_window")]
    pub window_secs: u64,
    /// Confirmation queries per asker per minute (default 600); at most
    /// that many at once, refilled evenly.
    #[serde(default = "default_queries_per_minute")]
    pub queries_per_minute: u32,
}

fn default_window() -> u64 {
    30
}

fn default_queries_per_minute() -> u32 {
    600
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    #[serde(default = "default_http")]
    pub listen: SocketAddr,
}

/// `[api]`: the REST API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// The operator's key: HTTP Basic `admin:KEY` on operator routes
    /// (accounts). At least [`MIN_ADMIN_KEY`] characters. Without one,
    /// operator routes answer 403.
    #[serde(default)]
    pub admin_key: Option<String>,
    /// Largest component a tenant may upload, in KiB (default 8,192).
    #[serde(default = "default_component_kb")]
    pub max_component_kb: usize,
    /// Allow status callbacks to loopback/private addresses (off by
    /// default: a tenant's URL must not reach the operator's network).
    /// One of the keys of the egress policy ([`Config::egress`]).
    #[serde(default)]
    pub callbacks_private: bool,
    /// When set (e.g. `sip.example.net`), accounts may claim only SIP
    /// domains under it (`acme.sip.example.net`); otherwise any DNS name
    /// no other account or config tenant has.
    #[serde(default)]
    pub sip_domain_suffix: Option<String>,
    /// How often browser and app clients must send something on their
    /// signalling WebSocket (default 25 s); twice that in silence takes
    /// the device offline.
    #[serde(default = "default_client_heartbeat")]
    pub client_heartbeat_secs: u64,
}

fn default_component_kb() -> usize {
    8 * 1024
}

fn default_client_heartbeat() -> u64 {
    crate::clients::HEARTBEAT.as_secs()
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            admin_key: None,
            max_component_kb: default_component_kb(),
            callbacks_private: false,
            sip_domain_suffix: None,
            client_heartbeat_secs: default_client_heartbeat(),
        }
    }
}

/// `[admission]` (C7): the runtime's capacity across tenants, and the
/// default wait queue of each tenant. A new call above its tenant's limits
/// or this capacity waits in its tenant's queue (the caller hears 100
/// Trying) until a place frees, taken round-robin between tenants with
/// waiting calls; a full queue or an expired wait is a 503 + Retry-After.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionSection {
    /// Calls in progress at most, all tenants together (default: no limit).
    pub max_calls: Option<u32>,
    /// New calls per second at most, all tenants together (default: no limit).
    pub calls_per_second: Option<u32>,
    /// Calls each tenant may have waiting for a place (default 10; 0
    /// refuses at once). A tenant's own `queue` overrides it.
    #[serde(default = "default_queue")]
    pub queue: u32,
    /// How long a call waits at most, in ms (default 2,000; at most
    /// [`MAX_QUEUE_WAIT_MS`]). A tenant's own `queue_wait_ms` overrides it.
    #[serde(default = "default_queue_wait")]
    pub queue_wait_ms: u64,
}

/// Longest admission wait accepted, whoever sets it (config or REST).
const MAX_QUEUE_WAIT_MS: u64 = crate::sip::directory::Limits::MAX_QUEUE_WAIT_MS;

impl Default for AdmissionSection {
    fn default() -> Self {
        Self {
            max_calls: None,
            calls_per_second: None,
            queue: default_queue(),
            queue_wait_ms: default_queue_wait(),
        }
    }
}

/// Shortest `[api] admin_key` accepted.
pub const MIN_ADMIN_KEY: usize = 16;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Directory for the SQLite database and the component cache.
    #[serde(default = "default_storage")]
    pub path: PathBuf,
}

/// `[media] synthesizer`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum SynthesizerKind {
    /// The espeak-ng program (`[media] tts`).
    #[default]
    #[serde(rename = "espeak-ng")]
    EspeakNg,
    /// [`crate::media::tone_speech::ToneSpeech`]: a tone per text.
    #[serde(rename = "tone")]
    Tone,
}

/// Inclusive port ranges: RTP of calls, and of cascade links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPorts {
    pub calls: (u16, u16),
    pub links: Option<(u16, u16)>,
    /// Client calls' relays and the clients' gateway.
    pub clients: (u16, u16),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    /// RTP port range, inclusive: `"20000-29999"`. Each call leg takes an
    /// even port for RTP and the odd one above it for RTCP.
    #[serde(default = "default_ports")]
    pub ports: String,
    /// Address RTP is bound to and named in SDP (default: the first SIP
    /// UDP listener's address, or 127.0.0.1 when that is unspecified).
    pub ip: Option<IpAddr>,
    /// Ports at the top of `ports` (below cascade links) kept for browser
    /// and app clients: each client call takes a pair (its WebRTC socket
    /// and its RTP leg), the clients' gateway one. Default: a quarter of
    /// the range, at most 2048.
    pub client_ports: Option<u16>,
    /// Hang up a call when nothing arrived from the peer this long
    /// (RTP or RTCP); 0 disables. Default 60 s.
    #[serde(default = "default_media_timeout")]
    pub timeout_secs: u64,
    /// A fixed number of media worker threads (each paces its streams
    /// from one clock), instead of the elastic pool below.
    pub workers: Option<usize>,
    /// Elastic pool: media workers always running (default 1). More start
    /// when they run hot; idle ones retire after 30 s.
    pub min_workers: Option<usize>,
    /// Elastic pool: media workers at most (default: the cores available).
    pub max_workers: Option<usize>,
    /// Size bound of the prompt cache (synthesized and fetched audio) in MiB.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
    /// What speaks `say`: `"espeak-ng"` (default; the program `tts`) or
    /// `"tone"`, a tone per text with no program run (for tests and
    /// machines without espeak-ng).
    #[serde(default)]
    pub synthesizer: SynthesizerKind,
    /// The speech synthesizer program (espeak-ng; `apt install espeak-ng`).
    #[serde(default = "default_tts")]
    pub tts: PathBuf,
    /// Allow `play` URLs on loopback/private addresses (off by default: a
    /// guest must not reach the operator's internal network). One of the
    /// keys of the egress policy ([`Config::egress`]).
    #[serde(default)]
    pub fetch_private: bool,
    /// A fetched prompt URL is fetched again after this long (default 300 s).
    #[serde(default = "default_url_ttl")]
    pub url_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    pub id: String,
    /// SIP domains of this tenant: REGISTER realms and Request-URI hosts.
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default, rename = "number")]
    pub numbers: Vec<NumberSection>,
    #[serde(default, rename = "user")]
    pub users: Vec<UserSection>,
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<TrunkSection>,
    /// Admission: calls in progress at most; more are refused with 503 +
    /// Retry-After (default: no limit).
    pub max_calls: Option<u32>,
    /// Admission: new calls per second at most (default: no limit).
    pub calls_per_second: Option<u32>,
    /// Admission: calls that may wait for a place (default: `[admission] queue`).
    pub queue: Option<u32>,
    /// Admission: longest wait in ms (default: `[admission] queue_wait_ms`).
    pub queue_wait_ms: Option<u64>,
    /// Guest limits of this tenant's components: linear memory in MiB
    /// and wall time per event in ms (default: the host's, 32 MiB and 20 ms).
    pub guest_memory_mb: Option<u64>,
    pub guest_deadline_ms: Option<u64>,
    /// WAV files imported into the tenant's media store at start-up
    /// (`play` them by the id printed for each).
    #[serde(default)]
    pub media: Vec<PathBuf>,
    /// Whether a client in a call is busy as a whole (default true): its
    /// presence shows busy and `dial client:` rings none of its devices.
    /// With false only the device in the call is skipped; the others ring.
    #[serde(default = "yes")]
    pub busy_in_call: bool,
    /// Signing of calls through the trunks (none: unsigned).
    pub shaken: Option<TenantShakenSection>,
    /// The account's verification-policy component (a `.wasm` exporting
    /// `voice:runtime/screen`, or 0.2.0's `verify`): it rules on every
    /// incoming SIP call before the call's handler runs. None: the
    /// default policy, when screening is on at all.
    pub policy: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberSection {
    /// The called user part (`+15550100`), or `*` for any number of this
    /// tenant's domains not bound otherwise.
    pub number: String,
    pub component: PathBuf,
    /// An http(s) URL that gets this number's call status events
    /// (initiated, ringing, answered, completed); see `crate::callbacks`.
    #[serde(default)]
    pub status_callback: Option<String>,
    /// The STIR/SHAKEN attestation ("A", "B", "C") of calls the account
    /// places through a trunk with this number as caller id; over the
    /// trunk's and `[tenant] shaken`'s.
    #[serde(default)]
    pub attest: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkSection {
    pub name: String,
    pub address: SocketAddr,
    #[serde(default = "default_transport")]
    pub transport: Transport,
    /// Outbound digest credentials, when the carrier challenges.
    pub username: Option<String>,
    pub password: Option<String>,
    /// The STIR/SHAKEN attestation of calls through this trunk ("A", "B"
    /// or "C"), over the tenant's `[tenant.shaken] attest`.
    pub attest: Option<String>,
}

/// `[tenant.shaken]`: calls the tenant places through its trunks carry an
/// `Identity` header (STIR/SHAKEN) signed with its key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantShakenSection {
    /// The account's P-256 private key (PEM, SEC1 or PKCS#8).
    pub key: PathBuf,
    /// The https URL of its certificate (the PASSporT's x5u).
    pub x5u: String,
    /// The attestation the account is allowed: "A", "B" or "C".
    pub attest: String,
}

fn default_region() -> String {
    "local".into()
}
fn default_sip_addrs() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], 5060))]
}
fn default_max_message() -> usize {
    65_535
}
fn default_max_connections() -> usize {
    1_024
}
fn default_idle() -> u64 {
    300
}
fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_storage() -> PathBuf {
    PathBuf::from("./switchyard-data")
}
fn default_ports() -> String {
    "20000-29999".into()
}
fn default_media_timeout() -> u64 {
    60
}
fn default_cache_mb() -> u64 {
    512
}
fn default_tts() -> PathBuf {
    PathBuf::from("espeak-ng")
}
fn default_url_ttl() -> u64 {
    300
}
fn default_queue() -> u32 {
    10
}
fn default_queue_wait() -> u64 {
    2_000
}
fn default_transport() -> Transport {
    Transport::Udp
}

impl Default for SipSection {
    fn default() -> Self {
        Self {
            udp: default_sip_addrs(),
            tcp: default_sip_addrs(),
            tls: Vec::new(),
            tls_cert: None,
            tls_key: None,
            max_message_bytes: default_max_message(),
            max_connections: default_max_connections(),
            idle_secs: default_idle(),
            sha256_first: false,
            private_destinations: false,
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: default_http(),
        }
    }
}

impl Default for MediaSection {
    fn default() -> Self {
        Self {
            ports: default_ports(),
            ip: None,
            client_ports: None,
            timeout_secs: default_media_timeout(),
            workers: None,
            min_workers: None,
            max_workers: None,
            cache_mb: default_cache_mb(),
            synthesizer: SynthesizerKind::default(),
            tts: default_tts(),
            fetch_private: false,
            url_ttl_secs: default_url_ttl(),
        }
    }
}

impl MediaSection {
    /// The port range, checked: `first-last` with at least one even/odd pair.
    /// The whole range, inclusive; [`Config::media_ports`] splits it.
    pub fn port_range(&self) -> Result<(u16, u16), ConfigError> {
        let bad = || {
            ConfigError::Invalid(format!(
                "[media] ports {:?} must be FIRST-LAST, e.g. \"20000-29999\", with room for a port pair",
                self.ports
            ))
        };
        let (first, last) = self.ports.split_once('-').ok_or_else(bad)?;
        let first: u16 = first.trim().parse().map_err(|_| bad())?;
        let last: u16 = last.trim().parse().map_err(|_| bad())?;
        if first == 0 || last < first + 1 + (first & 1) {
            return Err(bad());
        }
        Ok((first, last))
    }

    /// The media worker pool: `workers` fixed, else elastic from
    /// `min_workers` (1) to `max_workers` (the cores, at least min).
    pub fn pool(&self) -> Result<Policy, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(format!("[media] {m}")));
        let policy = match (self.workers, self.min_workers, self.max_workers) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return invalid("workers is a fixed size: set it or min/max_workers".into());
            }
            (Some(n), None, None) => Policy::fixed(n),
            (None, min, max) => {
                let min = min.unwrap_or(1);
                Policy {
                    min,
                    max: max.unwrap_or_else(|| cores().max(min)),
                    ..Policy::default()
                }
            }
        };
        match policy.check() {
            Ok(()) => Ok(policy),
            Err(e) => invalid(e.to_string()),
        }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            path: default_storage(),
        }
    }
}

/// The demo tenant's SIP user and password: public, so the `serve` banner
/// prints them (no other password is ever printed).
pub const DEMO_USER: &str = "alice";
pub const DEMO_PASSWORD: &str = "alice-demo";

impl TenantSection {
    /// The demo's SIP user, if this tenant has it (it is the demo tenant).
    pub fn demo_user(&self) -> Option<&UserSection> {
        (self.users.iter())
            .find(|u| (u.username.as_str(), u.password.as_str()) == (DEMO_USER, DEMO_PASSWORD))
    }
}

/// Where the demo finds the IVR example guest (built by `scripts/build-guests`).
pub const DEMO_COMPONENT: &str = "target/wasm32-wasip2/release/guest_ivr.wasm";

/// What is wrong with a config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.into(),
            message: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    /// The demo: SIP on 127.0.0.1:5060 (UDP and TCP), HTTP on
    /// 127.0.0.1:8080, one tenant whose every number reaches the IVR guest,
    /// storage in `./switchyard-data/`.
    pub fn demo() -> Self {
        Config {
            workers: None,
            region: default_region(),
            sip: SipSection::default(),
            http: HttpSection::default(),
            storage: StorageSection::default(),
            media: MediaSection::default(),
            api: ApiSection::default(),
            admission: AdmissionSection::default(),
            conference: ConferenceSection::default(),
            shaken: ShakenSection::default(),
            directory: DirectorySection::default(),
            provider: None,
            tenants: vec![TenantSection {
                id: "demo".into(),
                domains: Vec::new(),
                numbers: vec![NumberSection {
                    number: "*".into(),
                    component: DEMO_COMPONENT.into(),
                    status_callback: None,
                    attest: None,
                }],
                users: vec![UserSection {
                    username: DEMO_USER.into(),
                    password: DEMO_PASSWORD.into(),
                }],
                trunks: Vec::new(),
                max_calls: None,
                calls_per_second: None,
                queue: None,
                queue_wait_ms: None,
                guest_memory_mb: None,
                guest_deadline_ms: None,
                media: Vec::new(),
                busy_in_call: true,
                shaken: None,
                policy: None,
            }],
        }
    }

    /// The egress policy: which of the runtime's outbound purposes may
    /// reach loopback and private addresses, from the keys
    /// `[sip] private_destinations`, `[media] fetch_private`,
    /// `[api] callbacks_private`, `[shaken] fetch_private` and
    /// `[directory] private` (see [`crate::egress`]).
    pub fn egress(&self) -> EgressPolicy {
        let settings = [
            (self.sip.private_destinations, Setting::PrivateDestinations),
            (self.media.fetch_private, Setting::FetchPrivate),
            (self.api.callbacks_private, Setting::CallbacksPrivate),
            (self.shaken.fetch_private, Setting::ShakenPrivate),
            (self.directory.private, Setting::DirectoryPrivate),
        ];
        settings
            .into_iter()
            .filter(|(on, _)| *on)
            .fold(EgressPolicy::public_only(), |policy, (_, setting)| {
                policy.allowing_setting(setting)
            })
    }

    /// A cascade needs its secret, peers at http URLs, and a directory
    /// that is a peer or this runtime.
    /// Whether conferences cascade to other regions' runtimes.
    pub fn cascading(&self) -> bool {
        !self.conference.peers.is_empty() || self.conference.directory.is_some()
    }

    /// `[media] ports` split between calls and, when cascading, the links
    /// at the top of the range, so every RTP socket is in the range the
    /// operator opened in the firewall.
    pub fn media_ports(&self) -> Result<MediaPorts, ConfigError> {
        let (first, last) = self.media.port_range()?;
        let (below_links, links) = if self.cascading() {
            let n = self.conference.link_ports;
            let calls_last = last.saturating_sub(n);
            if n < 2 || n % 2 == 1 || calls_last < first + 1 + (first & 1) {
                return Err(ConfigError::Invalid(format!(
                    "[conference] link_ports {n} must be even, at least 2, and leave [media] ports {first}-{last} room for calls"
                )));
            }
            (calls_last, Some((calls_last + 1, last)))
        } else {
            (last, None)
        };
        let span = below_links - first + 1;
        let n = match self.media.client_ports {
            Some(n) => n,
            None => (span / 4).min(2048) & !1,
        };
        let calls_last = below_links.saturating_sub(n);
        if n < 2 || n % 2 == 1 || calls_last < first + 1 + (first & 1) {
            return Err(ConfigError::Invalid(format!(
                "[media] client_ports {n} must be even, at least 2, and leave [media] ports {first}-{last} room for calls"
            )));
        }
        Ok(MediaPorts {
            calls: (first, calls_last),
            links,
            clients: (calls_last + 1, below_links),
        })
    }

    fn check_cascade(&self) -> Result<(), ConfigError> {
        let c = &self.conference;
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if !self.cascading() {
            return Ok(());
        }
        self.media_ports()?;
        if c.secret
            .as_ref()
            .is_none_or(|s| s.chars().count() < MIN_ADMIN_KEY)
        {
            return invalid(format!(
                "[conference] peers need a secret of at least {MIN_ADMIN_KEY} characters, the same in every runtime"
            ));
        }
        for (region, url) in &c.peers {
            if !url.starts_with("http://") {
                return invalid(format!(
                    "[conference] peer {region}: {url:?} must be an http:// URL (the runtimes' HTTP listeners)"
                ));
            }
        }
        if let Some(d) = &c.directory
            && d != &self.region
            && !c.peers.contains_key(d)
        {
            return invalid(format!(
                "[conference] directory {d:?} is neither this region ({:?}) nor one of the peers",
                self.region
            ));
        }
        Ok(())
    }

    /// `[directory]` and `[provider]`: URLs, the provider's id, key and
    /// identifiers, and the directory a provider publishes to.
    fn check_directory(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let d = &self.directory;
        if let Some(url) = &d.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid(format!(
                "[directory] url {url:?} must be an http:// or https:// URL (the directory's runtime)"
            ));
        }
        if d.timeout_ms == 0 || d.ttl_secs == 0 {
            return invalid("[directory] timeout_ms and ttl_secs must be at least 1".into());
        }
        let Some(p) = &self.provider else {
            return Ok(());
        };
        let Some(id) = &p.id else {
            return invalid("[provider] needs id (e.g. \"a.example\")".into());
        };
        switchyard_directory::message::provider_id(id)
            .or_else(|why| invalid(format!("[provider] {why}")))?;
        if p.key.is_none() {
            return invalid("[provider] needs key (a P-256 private key file, PKCS#8 PEM)".into());
        }
        let Some(url) = &p.confirm_url else {
            return invalid(
                "[provider] needs confirm_url (this runtime's http(s)://…/v1/confirmations)".into(),
            );
        };
        switchyard_directory::message::confirm_url(url)
            .or_else(|why| invalid(format!("[provider] {why}")))?;
        for text in &p.identifiers {
            switchyard_directory::Identifier::parse(text)
                .map_err(|e| ConfigError::Invalid(format!("[provider] identifiers: {e}")))?;
        }
        if d.url.is_none() {
            return invalid(
                "[provider] needs [directory] url: it publishes its identifiers there and looks up askers' keys there"
                    .into(),
            );
        }
        if p.window_secs > 120 {
            return invalid("[provider] window_secs must be at most 120".into());
        }
        if p.queries_per_minute == 0 {
            return invalid("[provider] queries_per_minute must be at least 1".into());
        }
        Ok(())
    }

    /// Refuses duplicates and contradictions, naming the item.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.workers == Some(0) {
            return invalid("workers must be at least 1".into());
        }
        if !self.sip.tls.is_empty() && (self.sip.tls_cert.is_none() || self.sip.tls_key.is_none()) {
            return invalid("[sip] tls listeners need tls_cert and tls_key".into());
        }
        self.media.port_range()?;
        self.media.pool()?;
        self.check_cascade()?;
        if self.shaken.verify && self.shaken.roots.is_none() {
            return invalid(
                "[shaken] verify needs roots (a PEM file of the trusted STI-CAs)".into(),
            );
        }
        self.check_directory()?;
        if self.sip.max_message_bytes < 1_024 {
            return invalid("[sip] max_message_bytes must be at least 1024".into());
        }
        if (self.api.admin_key.as_ref()).is_some_and(|k| k.chars().count() < MIN_ADMIN_KEY) {
            return invalid(format!(
                "[api] admin_key must be at least {MIN_ADMIN_KEY} characters"
            ));
        }
        if let Some(suffix) = &self.api.sip_domain_suffix
            && !crate::deploy::valid_domain(suffix)
        {
            return invalid(format!(
                "[api] sip_domain_suffix {suffix:?} must be a lowercase DNS name such as sip.example.net"
            ));
        }
        let waits = std::iter::once((
            "[admission]".to_string(),
            Some(self.admission.queue_wait_ms),
        ))
        .chain(
            self.tenants
                .iter()
                .map(|t| (format!("tenant {}:", t.id), t.queue_wait_ms)),
        );
        let capacity = [self.admission.max_calls, self.admission.calls_per_second];
        if capacity.contains(&Some(0)) {
            return invalid(
                "[admission] max_calls and calls_per_second must be at least 1 (leave them out for no limit)"
                    .into(),
            );
        }
        for (place, wait) in waits {
            if wait.is_some_and(|ms| ms > MAX_QUEUE_WAIT_MS) {
                return invalid(format!(
                    "{place} queue_wait_ms must be at most {MAX_QUEUE_WAIT_MS}"
                ));
            }
        }
        let mut ids = HashSet::new();
        let mut numbers = HashSet::new();
        let mut domains = HashSet::new();
        let mut catch_all = None;
        for tenant in &self.tenants {
            if tenant.id.is_empty() || !ids.insert(tenant.id.as_str()) {
                return invalid(format!("tenant id {:?} is empty or used twice", tenant.id));
            }
            if tenant.id == "admin" || tenant.id.contains(':') {
                return invalid(format!(
                    "tenant id {:?}: \"admin\" and ids with ':' are reserved (REST Basic auth)",
                    tenant.id
                ));
            }
            for domain in &tenant.domains {
                if !domains.insert(domain.to_ascii_lowercase()) {
                    return invalid(format!(
                        "tenant {}: domain {domain} belongs to another tenant",
                        tenant.id
                    ));
                }
            }
            let mut users = HashSet::new();
            for user in &tenant.users {
                if !users.insert(user.username.as_str()) {
                    return invalid(format!(
                        "tenant {}: user {} is listed twice",
                        tenant.id, user.username
                    ));
                }
            }
            let mut trunks = HashSet::new();
            for trunk in &tenant.trunks {
                if !trunks.insert(trunk.name.as_str()) {
                    return invalid(format!(
                        "tenant {}: trunk {} is listed twice",
                        tenant.id, trunk.name
                    ));
                }
                if trunk.transport == Transport::Tls {
                    return invalid(format!(
                        "tenant {}: trunk {}: transport \"tls\" is not supported yet (the \
                         runtime accepts TLS but cannot open TLS connections); use \"udp\" \
                         or \"tcp\"",
                        tenant.id, trunk.name
                    ));
                }
                if trunk.username.is_some() != trunk.password.is_some() {
                    return invalid(format!(
                        "tenant {}: trunk {} needs both username and password, or neither",
                        tenant.id, trunk.name
                    ));
                }
            }
            let mut wildcard = false;
            for number in &tenant.numbers {
                if let Some(url) = &number.status_callback
                    && let Err(why) = crate::callbacks::check_url(url)
                {
                    return invalid(format!(
                        "tenant {}: number {}: status_callback {url:?}: {why}",
                        tenant.id, number.number
                    ));
                }
                if number.number == "*" {
                    if wildcard {
                        return invalid(format!("tenant {}: number * is bound twice", tenant.id));
                    }
                    wildcard = true;
                } else if !numbers.insert(number.number.as_str()) {
                    return invalid(format!(
                        "tenant {}: number {} is bound elsewhere too",
                        tenant.id, number.number
                    ));
                }
            }
            // A `*` without domains catches calls to any host; two of those
            // would make routing depend on file order.
            if wildcard
                && tenant.domains.is_empty()
                && let Some(other) = catch_all.replace(tenant.id.as_str())
            {
                return invalid(format!(
                    "tenants {other} and {} both bind number * without domains; give one of them domains",
                    tenant.id
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: "test.toml".into(),
            message: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    #[test]
    fn empty_config_listens_on_the_default_ports() {
        let config = parse("").unwrap();
        assert_eq!(config.sip.udp, default_sip_addrs());
        assert_eq!(config.http.listen, default_http());
        assert!(config.tenants.is_empty());
    }

    #[test]
    fn a_full_tenant_parses() {
        let config = parse(
            r#"
            workers = 1
            [sip]
            udp = ["127.0.0.1:0"]
            [[tenant]]
            id = "acme"
            domains = ["acme.test"]
            [[tenant.number]]
            number = "+15550100"
            component = "ivr.wasm"
            [[tenant.user]]
            username = "alice"
            password = "secret"
            [[tenant.trunk]]
            name = "carrier"
            address = "127.0.0.1:5090"
            transport = "tcp"
            "#,
        )
        .unwrap();
        let tenant = &config.tenants[0];
        assert_eq!(tenant.numbers[0].number, "+15550100");
        assert_eq!(tenant.trunks[0].transport, Transport::Tcp);
    }

    #[test]
    fn media_workers_are_fixed_or_elastic() {
        let pool = |toml: &str| parse(toml).map(|c| c.media.pool().unwrap());
        let fixed = pool("[media]\nworkers = 3").unwrap();
        assert_eq!((fixed.min, fixed.max), (3, 3));
        let elastic = pool("").unwrap();
        assert_eq!((elastic.min, elastic.max), (1, cores()));
        let elastic = pool("[media]\nmin_workers = 2\nmax_workers = 6").unwrap();
        assert_eq!((elastic.min, elastic.max), (2, 6));
        for bad in [
            "workers = 0",
            "workers = 2\nmax_workers = 4",
            "min_workers = 0",
            "min_workers = 4\nmax_workers = 2",
        ] {
            let err = parse(&format!("[media]\n{bad}")).unwrap_err().to_string();
            assert!(err.contains("[media]"), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let err = parse("[sip]\nudpp = []").unwrap_err().to_string();
        assert!(err.contains("udpp"), "{err}");
    }

    #[test]
    fn a_number_bound_twice_is_refused() {
        let err = parse(
            r#"
            [[tenant]]
            id = "a"
            [[tenant.number]]
            number = "100"
            component = "x.wasm"
            [[tenant]]
            id = "b"
            [[tenant.number]]
            number = "100"
            component = "y.wasm"
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("number 100"), "{err}");
    }

    #[test]
    fn two_catch_all_tenants_are_refused() {
        let err = parse(
            r#"
            [[tenant]]
            id = "a"
            [[tenant.number]]
            number = "*"
            component = "x.wasm"
            [[tenant]]
            id = "b"
            [[tenant.number]]
            number = "*"
            component = "y.wasm"
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("both bind number *"), "{err}");
    }

    #[test]
    fn a_status_callback_must_be_an_http_url() {
        let number = |url: &str| {
            format!(
                "[[tenant]]\nid = \"a\"\n[[tenant.number]]\nnumber = \"100\"\n\
                 component = \"x.wasm\"\nstatus_callback = {url:?}"
            )
        };
        let config = parse(&number("https://hooks.example.com/status?x=1")).unwrap();
        assert_eq!(
            config.tenants[0].numbers[0].status_callback.as_deref(),
            Some("https://hooks.example.com/status?x=1")
        );
        for bad in ["ftp://example.com/x", "not a url", "http://", "/relative"] {
            let err = parse(&number(bad)).unwrap_err().to_string();
            assert!(err.contains("status_callback"), "{bad}: {err}");
        }
        let config = parse("[api]\ncallbacks_private = true").unwrap();
        assert!(config.api.callbacks_private);
        let config = parse("[api]\nsip_domain_suffix = \"sip.example.net\"").unwrap();
        assert_eq!(
            config.api.sip_domain_suffix.as_deref(),
            Some("sip.example.net")
        );
        let err = parse("[api]\nsip_domain_suffix = \".Sip\"").unwrap_err();
        assert!(err.to_string().contains("sip_domain_suffix"), "{err}");
    }

    #[test]
    fn each_egress_key_opens_its_own_purposes_to_private_addresses() {
        assert_eq!(parse("").unwrap().egress(), EgressPolicy::public_only());
        for setting in Setting::ALL {
            let (section, key) = setting.key();
            let config = parse(&format!("[{section}]\n{key} = true")).unwrap();
            assert_eq!(
                config.egress(),
                EgressPolicy::public_only().allowing_setting(setting),
                "{setting}"
            );
        }
    }

    #[test]
    fn the_synthesizer_is_espeak_ng_unless_tone_is_named() {
        use super::SynthesizerKind;
        let kind = |toml: &str| parse(toml).map(|c| c.media.synthesizer);
        assert_eq!(kind("").unwrap(), SynthesizerKind::EspeakNg);
        let tone = "[media]\nsynthesizer = \"tone\"";
        assert_eq!(kind(tone).unwrap(), SynthesizerKind::Tone);
        let err = kind("[media]\nsynthesizer = \"festival\"").unwrap_err();
        assert!(err.to_string().contains("espeak-ng"), "{err}");
    }

    #[test]
    fn a_tls_trunk_is_refused_until_outbound_tls_exists() {
        let err = parse(
            "[[tenant]]\nid = \"acme\"\n[[tenant.trunk]]\nname = \"carrier\"\n\
             address = \"127.0.0.1:5061\"\ntransport = \"tls\"",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("trunk carrier: transport \"tls\" is not supported yet"),
            "{err}"
        );
    }

    #[test]
    fn tls_without_a_certificate_is_refused() {
        let err = parse("[sip]\ntls = [\"127.0.0.1:5061\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls_cert"), "{err}");
    }

    #[test]
    fn media_port_ranges_are_checked() {
        let config = parse("[media]\nports = \"30000-30099\"").unwrap();
        assert_eq!(config.media.port_range().unwrap(), (30000, 30099));
        for bad in ["30000", "x-y", "30000-30000", "0-10", "40000-30000"] {
            let err = parse(&format!("[media]\nports = {bad:?}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("[media] ports"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_short_admin_key_is_refused() {
        let err = parse("[api]\nadmin_key = \"short\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[api] admin_key"), "{err}");
        let config = parse("[api]\nadmin_key = \"0123456789abcdef\"").unwrap();
        assert_eq!(config.api.admin_key.as_deref(), Some("0123456789abcdef"));
        assert!(parse("[api]\nadmin = \"x\"").is_err());
    }

    #[test]
    fn admission_defaults_and_overrides_parse() {
        let config = parse("").unwrap();
        assert_eq!(
            (config.admission.queue, config.admission.queue_wait_ms),
            (10, 2_000)
        );
        assert_eq!(config.admission.max_calls, None);
        let config = parse(
            r#"
            [admission]
            max_calls = 50
            calls_per_second = 10
            queue = 4
            queue_wait_ms = 500
            [[tenant]]
            id = "a"
            max_calls = 5
            queue = 0
            "#,
        )
        .unwrap();
        assert_eq!(config.admission.max_calls, Some(50));
        assert_eq!(config.admission.calls_per_second, Some(10));
        assert_eq!(config.tenants[0].queue, Some(0));
        assert_eq!(config.tenants[0].queue_wait_ms, None);
        let err = parse("[admission]\nmax_calls = 0").unwrap_err().to_string();
        assert!(err.contains("[admission] max_calls"), "{err}");
        let err = parse("[admission]\nqueue_wait_ms = 60000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("queue_wait_ms"), "{err}");
        let err = parse("[[tenant]]\nid = \"a\"\nqueue_wait_ms = 31000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tenant a: queue_wait_ms"), "{err}");
    }

    #[test]
    fn a_cascade_needs_its_secret_http_peers_and_a_known_directory() {
        let peers = "[conference.peers]\neu = \"http://127.0.0.1:8081\"\n";
        let with = |head: &str| parse(&format!("region = \"us\"\n[conference]\n{head}\n{peers}"));
        let ok = with("secret = \"0123456789abcdef\"\ndirectory = \"us\"").unwrap();
        assert_eq!(ok.conference.peers.len(), 1);
        with("secret = \"0123456789abcdef\"\ndirectory = \"eu\"").unwrap();
        let err = with("directory = \"us\"").unwrap_err().to_string();
        assert!(err.contains("secret of at least 16"), "{err}");
        let err = with("secret = \"0123456789abcdef\"\ndirectory = \"ap\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("directory \"ap\" is neither"), "{err}");
        let bad = "[conference]\nsecret = \"0123456789abcdef\"\n[conference.peers]\neu = \"10.0.0.1:8080\"";
        let err = parse(bad).unwrap_err().to_string();
        assert!(err.contains("must be an http:// URL"), "{err}");
    }

    #[test]
    fn cascade_links_and_clients_take_the_top_of_the_media_ports() {
        let peers = "[conference.peers]\neu = \"http://127.0.0.1:8081\"\n";
        let with = |extra: &str| {
            parse(&format!(
                "[media]\nports = \"20000-20399\"\n[conference]\nsecret = \"0123456789abcdef\"\n{extra}\n{peers}"
            ))
        };
        let ports = with("").unwrap().media_ports().unwrap();
        assert_eq!(ports.links, Some((20336, 20399)));
        // A quarter of what the links leave goes to clients' calls.
        assert_eq!(ports.clients, (20252, 20335));
        assert_eq!(ports.calls, (20000, 20251));
        let ports = with("link_ports = 8").unwrap().media_ports().unwrap();
        assert_eq!(ports.links, Some((20392, 20399)));
        for bad in ["link_ports = 7", "link_ports = 0", "link_ports = 400"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains("link_ports"), "{bad}: {err}");
        }
        // Without a cascade calls and clients share the whole range.
        let alone = |extra: &str| parse(&format!("[media]\nports = \"20000-20399\"\n{extra}"));
        let ports = alone("").unwrap().media_ports().unwrap();
        assert_eq!((ports.calls, ports.links), ((20000, 20299), None));
        assert_eq!(ports.clients, (20300, 20399));
        let ports = alone("client_ports = 10").unwrap().media_ports().unwrap();
        assert_eq!(ports.clients, (20390, 20399));
        for bad in ["client_ports = 7", "client_ports = 0", "client_ports = 400"] {
            let err = alone(bad).unwrap().media_ports().unwrap_err().to_string();
            assert!(err.contains("client_ports"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_example_config_is_valid() {
        parse(include_str!("../../../examples/switchyard.toml")).unwrap();
    }

    #[test]
    fn the_demo_config_is_valid() {
        Config::demo().check().unwrap();
    }

    #[test]
    fn a_provider_needs_an_id_a_key_a_confirm_url_and_a_directory() {
        let provider = "[directory]\nurl = \"http://dir.example\"\n[provider]\nid = \"a.example\"\n\
                        key = \"p.pem\"\nconfirm_url = \"http://a.example/v1/confirmations\"\n\
                        identifiers = [\"+1555*\", \"a.example\"]";
        let config = parse(provider).unwrap();
        let section = config.provider.unwrap();
        assert_eq!((section.window_secs, section.queries_per_minute), (30, 600));
        assert_eq!(config.directory.ttl_secs, 300);
        for (edit, why) in [
            ("key = \"p.pem\"\n", "needs key"),
            ("id = \"a.example\"\n", "needs id"),
            (
                "confirm_url = \"http://a.example/v1/confirmations\"\n",
                "needs confirm_url",
            ),
            ("url = \"http://dir.example\"\n", "needs [directory] url"),
        ] {
            let err = parse(&provider.replace(edit, "")).unwrap_err().to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
        for (from, to, why) in [
            ("\"+1555*\"", "\"+1 555\"", "not an E.164 number"),
            ("id = \"a.example\"", "id = \"a/b\"", "provider id"),
            ("http://a.example/v1", "ftp://a.example/v1", "confirm_url"),
            ("url = \"http://dir", "url = \"dir", "[directory] url"),
        ] {
            let err = parse(&provider.replace(from, to)).unwrap_err().to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
        let err = parse(&format!("{provider}\nwindow_secs = 600")).unwrap_err();
        assert!(err.to_string().contains("window_secs"), "{err}");
    }
}
