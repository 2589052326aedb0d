//! `switchyard serve`: the IO edge around the SIP endpoint.
//!
//! ```text
//!  UDP reader ─┐ parsed messages            ┌─► UDP send_to / TCP writer
//!  TCP/TLS conn ┼──────────► core task ──────┤   (poll_transmit)
//!  guest tasks ─┘ invocations  (Endpoint)    └─► spawn guest invocation, CDRs
//! ```
//!
//! One core task owns the sans-IO [`Endpoint`]; socket tasks parse on their
//! side (so a bad message never reaches the core) and hand it over on a
//! channel. Guest invocations run as their own tasks, so a slow guest never
//! holds up signalling.

pub mod config;
mod http;
mod media;
mod provision;
mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::mpsc;

use crate::callbacks::{CallbackConfig, Callbacks};
use crate::guest::{Invocation, invoke_named};
use crate::media::cache::MediaCache;
use crate::media::engine::{self, Engine, EngineConfig};
use crate::media::fetch::{FetchConfig, Fetcher};
use crate::media::synth::{Espeak, EspeakConfig, Synthesizer};
use crate::media::tone_speech::ToneSpeech;
use crate::media::{Notice, StreamId};
use crate::metrics::{Metrics, Snapshot};
use crate::sip::directory::{Directory, Limits, Tenant, Trunk};
use crate::sip::endpoint::{
    AdmissionStats, CallRef, Capacity, Endpoint, EndpointConfig, EndpointEvent,
};
use crate::sip::{Peer, Transport};
use crate::store::recordings::RecordingStore;
use crate::store::{CdrStore, KvLimits, KvStore};
use crate::tenancy::Accounts;
use crate::wasm::{GuestLimits, HostConfig, TenantScope, WasmHost, WasmPolicy};

pub use config::Config;
use config::SynthesizerKind;

/// What the core task is told.
pub(crate) enum Input {
    Message(Peer, rsip::SipMessage),
    Invocation(CallRef, Invocation),
    /// A stream connection to `peer` is up; bytes for it go to the sender.
    Connected(Peer, mpsc::UnboundedSender<bytes::Bytes>),
    Disconnected(Peer),
    /// The REST API asks about calls in progress.
    Calls(crate::sip::endpoint::CallRequest),
    /// A new directory (REST changes to accounts or numbers).
    Directory(Arc<Directory>),
    /// A notice of the media edge about one stream.
    Media(StreamId, Notice),
    /// `/metrics` asks for the calls in progress and admission figures.
    CallCounts(tokio::sync::oneshot::Sender<CallCounts>),
    /// What the screening of an INVITE's caller decided.
    Verified(
        crate::sip::transaction::TxKey,
        crate::sip::endpoint::Screened,
    ),
}

/// What the core task tells a `/metrics` scrape.
#[derive(Debug, Default)]
pub(crate) struct CallCounts {
    /// Calls in progress not answered yet, and answered.
    pub early: usize,
    pub answered: usize,
    /// Of those, calls finishing (see `Endpoint::ending_calls`).
    pub ending: usize,
    pub admission: AdmissionStats,
}

/// The addresses actually bound (port 0 in the config picks a free one).
#[derive(Debug, Clone, Default)]
pub struct Listening {
    pub sip: Vec<(Transport, SocketAddr)>,
    pub http: Option<SocketAddr>,
}

/// Loads tenants and their components, binds every listener, prints what
/// it listens on, and serves until interrupted.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let storage = &config.storage.path;
    std::fs::create_dir_all(storage)
        .with_context(|| format!("creating storage directory {}", storage.display()))?;
    let kv = KvStore::open(storage.join("kv.sqlite3"), KvLimits::default())
        .context("opening key-value storage")?;
    let cdrs = CdrStore::open(&storage.join("cdr.sqlite3")).context("opening call records")?;
    // Decision logs had a file of their own before they became a column
    // of the CDR row.
    let old_logs = storage.join("logs.sqlite3");
    if old_logs.exists() {
        let moved = cdrs
            .import_logs(&old_logs)
            .context("importing decision logs")?;
        tracing::info!(moved, from = %old_logs.display(), "decision logs moved into the call records");
    }
    let host_config = HostConfig::builder()
        .cache_dir(storage.join("component-cache"))
        .build()
        .context("configuring the Wasm host")?;
    let host = WasmHost::new(host_config, kv).context("starting the Wasm host")?;
    let Loaded {
        tenants: base,
        guest_limits,
        policies,
    } = load_tenants(&config, &host)?;
    let reserved = crate::api::Reserved {
        numbers: base
            .iter()
            .flat_map(|t| config_numbers(&config, &t.id))
            .collect(),
        domains: base
            .iter()
            .flat_map(|t| t.domains.iter().map(|d| d.to_ascii_lowercase()))
            .collect(),
        domain_suffix: config.api.sip_domain_suffix.clone(),
    };

    let (inputs, queue) = mpsc::unbounded_channel();
    let limits = transport::Limits::from(&config.sip);
    let mut listening = Listening::default();
    let mut udp = Vec::new();
    for addr in &config.sip.udp {
        let socket = transport::bind_udp(*addr, &limits, inputs.clone()).await?;
        listening.sip.push((Transport::Udp, socket.local_addr()?));
        udp.push(socket);
    }
    for addr in &config.sip.tcp {
        let bound = transport::listen_tcp(*addr, None, &limits, inputs.clone()).await?;
        listening.sip.push((Transport::Tcp, bound));
    }
    if !config.sip.tls.is_empty() {
        let (cert, key) = (config.sip.tls_cert.as_ref(), config.sip.tls_key.as_ref());
        let (Some(cert), Some(key)) = (cert, key) else {
            bail!("[sip] tls listeners need tls_cert and tls_key");
        };
        let acceptor = transport::tls_acceptor(cert, key)?;
        for addr in &config.sip.tls {
            let bound =
                transport::listen_tcp(*addr, Some(acceptor.clone()), &limits, inputs.clone())
                    .await?;
            listening.sip.push((Transport::Tls, bound));
        }
    }

    let mut endpoint_config = EndpointConfig::new(listening.sip.clone());
    endpoint_config.region = config.region.clone();
    endpoint_config.registrar.md5_first = !config.sip.sha256_first;
    endpoint_config.egress = config.egress();
    let shaken = crate::shaken::Verifier::new(&config.shaken, endpoint_config.egress)
        .context("[shaken]")?
        .map(Arc::new);
    // C11: the directory served, asked and published to; the answers of
    // this runtime as a provider, from its placement records.
    let c11 = crate::directory::start(&config, endpoint_config.egress)
        .context("[directory] / [provider]")?;
    let screener =
        crate::screen::Screener::new(shaken, c11.confirmer.clone(), policies).map(Arc::new);
    endpoint_config.screen_calls = screener.is_some();
    endpoint_config.admission = Capacity {
        max_calls: config.admission.max_calls,
        calls_per_second: config.admission.calls_per_second,
    };
    if let Some(ip) = config.media.ip {
        endpoint_config.media_ip = ip;
    }
    let media_ip = endpoint_config.media_ip;
    let media_ports = config.media_ports()?;
    endpoint_config.media_ports = media_ports.calls;
    let (cache, recordings) = open_media(&config)?;
    let engine_config = EngineConfig {
        bind: endpoint_config.media_ip,
        pool: config.media.pool()?,
        sample: engine::SAMPLE,
        timeout: Duration::from_secs(config.media.timeout_secs),
    };
    let history = crate::store::ConferenceStore::open(&storage.join("conferences.sqlite3"))
        .context("opening the conference history")?;
    let conferences = crate::conferences::Conferences::new(history);
    let edge = media::MediaEdge::new(
        cache.clone(),
        recordings.clone(),
        conferences.clone(),
        inputs.clone(),
        |sink, rooms| Engine::start_with_rooms(engine_config, sink, rooms),
    )
    .context("starting the media engine")?;
    let cascade = crate::cascade::Cascade::new(
        &config,
        media_ports.links,
        conferences.clone(),
        edge.engine().clone(),
    );
    if let Some(cascade) = &cascade {
        edge.set_cascade(Arc::clone(cascade));
    }
    import_media(&config, &cache)?;
    let accounts = open_accounts(&config)?;
    let deployments = crate::deploy::Deployments::open(&storage.join("deploy"))
        .context("opening the deployment store")?;
    let mut provisioner = provision::Provisioner::new(
        host.clone(),
        deployments.clone(),
        accounts.clone(),
        base,
        guest_limits,
        Limits {
            queue: config.admission.queue,
            queue_wait: Duration::from_millis(config.admission.queue_wait_ms),
            ..Limits::default()
        },
    );
    let directory = provisioner.build().context("building the directory")?;
    let provision = provisioner.start(inputs.clone())?;
    let metrics = Arc::new(Metrics::new());
    let callbacks = Callbacks::start(
        CallbackConfig {
            egress: config.egress(),
            ..CallbackConfig::default()
        },
        Arc::new(accounts.clone()),
    )
    .context("setting up status callbacks")?;
    edge.set_callbacks(callbacks.clone());
    let demo_token = demo_token(&accounts, &config);
    let clients = crate::clients::Clients::new(
        accounts.clone(),
        Duration::from_secs(config.api.client_heartbeat_secs.max(1)),
    );
    host.set_presence(Arc::new(clients.clone()));
    for tenant in &config.tenants {
        clients.set_busy_in_call(&tenant.id, tenant.busy_in_call);
    }
    let state_cascade = cascade.clone();
    let state = http::HttpState {
        scrape: scrape(
            Arc::clone(&metrics),
            inputs.clone(),
            edge.engine().clone(),
            cache.clone(),
            callbacks.clone(),
        ),
        media: cache,
        cascade,
        api: crate::api::ApiState {
            clients: clients.clone(),
            accounts,
            recordings,
            conferences,
            cdrs: cdrs.clone(),
            admin_key: config.api.admin_key.clone(),
            deploy: crate::api::DeployState {
                store: deployments,
                host: host.clone(),
                reserved: Arc::new(reserved),
                max_component_bytes: config.api.max_component_kb.saturating_mul(1024),
                refresh: provision.refresh(),
            },
            switchboard: {
                let inputs = inputs.clone();
                crate::api::Switchboard(Arc::new(move |request| {
                    inputs.send(Input::Calls(request)).is_ok()
                }))
            },
            directory: c11.served.clone(),
        },
    };
    listening.http = Some(http::serve_with(config.http.listen, state).await?);
    // After the HTTP listener: the directory may be this runtime.
    if let Some(confirmer) = &c11.confirmer {
        confirmer.start_publishing();
    }

    // The SIP core reads no clock and no OS randomness: the edge gives it
    // both (a ChaCha generator seeded from the OS).
    let mut endpoint = Endpoint::new(
        Instant::now(),
        crate::wasm::entropy::unix_ms_now(),
        rand::SeedableRng::from_os_rng(),
        endpoint_config,
        Arc::clone(&directory),
    );
    let engine = edge.engine().clone();
    endpoint.set_port_reserve(Box::new(move |port| engine.reserve(port)));
    // Clients' calls enter as SIP through the first UDP listener.
    let sip_udp = (listening.sip.iter()).find(|(t, _)| *t == Transport::Udp);
    if let Some((_, sip)) = sip_udp {
        let gateway = clients
            .start_gateway(*sip, (media_ip, edge.engine().clone()), media_ports.clients)
            .await
            .context("starting the clients' gateway")?;
        endpoint.set_gateway(gateway, Arc::new(clients.clone()));
        // The region set of cascaded conferences shares its clients too.
        if let Some(cascade) = &state_cascade {
            cascade.set_clients(clients.clone());
            clients.tell_regions(Arc::clone(cascade), config.region.clone());
        }
    }

    announce(&listening, &config, demo_token.as_deref());
    let udp = transport::UdpSockets::new(udp);
    let draining = inputs.clone();
    let outputs = Outputs {
        udp,
        inputs,
        cdrs: cdrs.clone(),
        media: edge.clone(),
        metrics,
        provision,
        callbacks,
        screener,
        placements: c11.placements.clone(),
    };
    let core = tokio::spawn(core(endpoint, queue, outputs));
    shutdown_signal().await;
    println!("switchyard: stopping");
    drain(&draining).await;
    core.abort();
    edge.engine().shutdown();
    // Wait until every queued call record is on disk.
    let _ = tokio::task::spawn_blocking(move || cdrs.list("", 0)).await;
    Ok(())
}

/// How long a stopping server waits for calls that are ending.
const DRAIN: Duration = Duration::from_secs(2);

/// Waits (at most [`DRAIN`]) until no call is ending: a call whose 486 is
/// out but whose ACK or hangup notice is not done yet still writes its CDR
/// and decision log. Calls still up are cut when the core stops.
async fn drain(inputs: &mpsc::UnboundedSender<Input>) {
    let deadline = tokio::time::Instant::now() + DRAIN;
    while tokio::time::Instant::now() < deadline {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if inputs.send(Input::CallCounts(tx)).is_err() {
            return;
        }
        match rx.await {
            Ok(counts) if counts.ending > 0 => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            _ => return,
        }
    }
}

/// The accounts store (`storage/accounts.sqlite3`), with an account for
/// every tenant of the config (id = tenant id). Key secrets are sealed
/// with `SWITCHYARD_SEALING_KEY` when the operator sets it, else with the
/// key in `storage/sealing.key` (made at first start).
fn open_accounts(config: &Config) -> anyhow::Result<Accounts> {
    let path = config.storage.path.join("accounts.sqlite3");
    let sealer = match std::env::var(crate::store::seal::KEY_ENV) {
        Ok(hex) => crate::store::seal::Sealer::from_hex(&hex)
            .with_context(|| format!("reading {}", crate::store::seal::KEY_ENV))?,
        Err(_) => {
            crate::store::seal::Sealer::load_or_create(&crate::tenancy::sealing_key_path(&path))?
        }
    };
    let accounts = Accounts::open_with(&path, sealer).context("opening accounts")?;
    for tenant in &config.tenants {
        accounts
            .ensure(&tenant.id)
            .with_context(|| format!("creating the account of tenant {}", tenant.id))?;
    }
    Ok(accounts)
}

/// The prompt cache (`storage/media`) with its synthesizer and fetcher,
/// and the recording store (`storage/recordings`).
fn open_media(config: &Config) -> anyhow::Result<(MediaCache, RecordingStore)> {
    let storage = &config.storage.path;
    let synth: Arc<dyn Synthesizer> = match config.media.synthesizer {
        SynthesizerKind::EspeakNg => Arc::new(Espeak::new(EspeakConfig {
            program: config.media.tts.clone(),
            ..EspeakConfig::default()
        })),
        SynthesizerKind::Tone => Arc::new(ToneSpeech),
    };
    let fetcher = Fetcher::new(FetchConfig {
        egress: config.egress(),
        ..FetchConfig::default()
    })
    .context("setting up prompt downloads")?;
    let cache = MediaCache::open_with(
        &storage.join("media"),
        crate::media::cache::CacheConfig {
            max_bytes: config.media.cache_mb << 20,
            fetch_ttl: Duration::from_secs(config.media.url_ttl_secs),
            ..Default::default()
        },
        synth,
        fetcher,
    )?;
    let recordings = RecordingStore::open(&storage.join("recordings"))?;
    Ok((cache, recordings))
}

/// Imports each tenant's listed WAV files into its media store and
/// prints their ids (what `Play::media` takes).
fn import_media(config: &Config, cache: &MediaCache) -> anyhow::Result<()> {
    for tenant in &config.tenants {
        for path in &tenant.media {
            let bytes = std::fs::read(path).with_context(|| {
                format!("tenant {}: cannot read media {}", tenant.id, path.display())
            })?;
            let media = cache.import(&tenant.id, &bytes).map_err(|e| {
                anyhow::anyhow!("tenant {}: media {}: {e}", tenant.id, path.display())
            })?;
            println!(
                "switchyard: media {} {} {}",
                tenant.id,
                media.id,
                path.display()
            );
        }
    }
    Ok(())
}

/// The numbers tenant `id` binds in the config file.
fn config_numbers<'a>(config: &'a Config, id: &'a str) -> impl Iterator<Item = String> + 'a {
    config
        .tenants
        .iter()
        .filter(move |t| t.id == id)
        .flat_map(|t| t.numbers.iter().map(|n| n.number.clone()))
}

/// The config's tenants, loaded.
struct Loaded {
    /// With their numbers' components loaded.
    tenants: Vec<Tenant>,
    /// Of those that set their own.
    guest_limits: HashMap<String, GuestLimits>,
    /// Account id → its verification policy, for those that have one.
    policies: HashMap<String, Arc<WasmPolicy>>,
}

fn load_tenants(config: &Config, host: &WasmHost) -> anyhow::Result<Loaded> {
    let mut tenants = Vec::new();
    let mut guest_limits = HashMap::new();
    let mut policies = HashMap::new();
    for section in &config.tenants {
        let mut scope = TenantScope::new(section.id.as_str());
        if section.guest_memory_mb.is_some() || section.guest_deadline_ms.is_some() {
            let mut limits = host.config().default_limits();
            if let Some(mb) = section.guest_memory_mb {
                limits.memory_bytes = mb << 20;
            }
            if let Some(ms) = section.guest_deadline_ms {
                limits.deadline = Duration::from_millis(ms);
            }
            scope = scope.with_limits(limits);
            guest_limits.insert(section.id.clone(), limits);
        }
        let mut tenant = Tenant::new(&section.id);
        tenant.domains = section.domains.clone();
        let wait_ms = section
            .queue_wait_ms
            .unwrap_or(config.admission.queue_wait_ms);
        tenant.limits = Limits {
            max_calls: section.max_calls,
            calls_per_second: section.calls_per_second,
            queue: section.queue.unwrap_or(config.admission.queue),
            queue_wait: Duration::from_millis(wait_ms),
        };
        for user in &section.users {
            tenant
                .users
                .insert(user.username.clone(), user.password.clone());
        }
        tenant.trunks = (section.trunks.iter())
            .map(|t| {
                Ok(Trunk {
                    name: t.name.clone(),
                    address: t.address,
                    transport: t.transport,
                    credentials: t.username.clone().zip(t.password.clone()),
                    attest: (t.attest.as_deref())
                        .map(|a| attestation(a, &format!("trunk {}", t.name)))
                        .transpose()?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        if let Some(shaken) = &section.shaken {
            let what = format!("[tenant.shaken] of {}", section.id);
            let key = std::fs::read_to_string(&shaken.key)
                .with_context(|| format!("{what}: reading {}", shaken.key.display()))?;
            let signer = (switchyard_shaken::Signer::from_pem(&key, &shaken.x5u))
                .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
            let attest = attestation(&shaken.attest, &what)?;
            let numbers = (section.numbers.iter())
                .filter_map(|n| Some((n, n.attest.as_deref()?)))
                .map(|(n, level)| {
                    let what = format!("number {} of {}", n.number, section.id);
                    let number = n.number.trim_start_matches('+').to_owned();
                    Ok((number, attestation(level, &what)?))
                })
                .collect::<anyhow::Result<_>>()?;
            let signing = crate::sip::directory::Signing {
                signer,
                attest,
                numbers,
            };
            tenant.signing = Some(Arc::new(signing));
        }
        for number in &section.numbers {
            let path = &number.component;
            let bytes = std::fs::read(path).with_context(|| {
                let hint = if path == Path::new(config::DEMO_COMPONENT) {
                    " (build the example guests first: bash scripts/build-guests)"
                } else {
                    ""
                };
                format!(
                    "tenant {}: number {}: cannot read component {}{hint}",
                    section.id,
                    number.number,
                    path.display()
                )
            })?;
            let component = host.load(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "tenant {}: number {}: component {} refused: {e}",
                    section.id,
                    number.number,
                    path.display()
                )
            })?;
            let handler = host
                .handler(&component, scope.clone())
                .with_context(|| format!("tenant {}: guest limits", section.id))?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "handler".into());
            let version = component.hash().to_string();
            tenant.bind(&number.number, &name, &version, Arc::new(handler));
            tenant.set_status_callback(&number.number, number.status_callback.clone());
        }
        if let Some(path) = &section.policy {
            let what = format!("tenant {}: policy {}", section.id, path.display());
            let bytes = std::fs::read(path).with_context(|| format!("{what}: cannot read it"))?;
            let component =
                (host.load_policy(&bytes)).map_err(|e| anyhow::anyhow!("{what}: refused: {e}"))?;
            let policy = (host.policy(&component, scope.clone()))
                .with_context(|| format!("tenant {}: guest limits", section.id))?;
            policies.insert(section.id.clone(), Arc::new(policy));
        }
        tenants.push(tenant);
    }
    Ok(Loaded {
        tenants,
        guest_limits,
        policies,
    })
}

/// A day's access token for the demo tenant's browser client `demo`
/// (signed with its newest key, made if it has none that can sign), for
/// the link the banner prints. `None` without the demo tenant, or when
/// none can be made (said in the log: the demo goes on without it).
/// A configured STIR/SHAKEN attestation level, `what` naming where.
fn attestation(level: &str, what: &str) -> anyhow::Result<switchyard_shaken::Attestation> {
    switchyard_shaken::Attestation::parse(level)
        .ok_or_else(|| anyhow::anyhow!("{what}: attest {level:?} is not A, B or C"))
}

fn demo_token(accounts: &Accounts, config: &Config) -> Option<String> {
    let tenant = config.tenants.iter().find(|t| t.demo_user().is_some())?;
    let mint = || -> anyhow::Result<String> {
        let key = match accounts.newest_token_key(&tenant.id)? {
            Some(key) => Some(key),
            None => {
                accounts.create_key(&tenant.id)?;
                accounts.newest_token_key(&tenant.id)?
            }
        };
        let (id, secret) = key.context("the demo tenant has no key that can sign")?;
        // The browser's calls go to the tenant's first number's handler
        // (the IVR in the demo), whatever it dials.
        let handler = (tenant.numbers.first())
            .and_then(|n| n.component.file_stem())
            .map(|stem| stem.to_string_lossy().into_owned());
        let grants = crate::tokens::Grants {
            identity: "demo".into(),
            incoming: true,
            outgoing: handler.map(|handler| crate::tokens::Outgoing {
                handler,
                params: Default::default(),
            }),
        };
        let now = crate::tokens::unix_now();
        let ttl = crate::tokens::MAX_TTL_SECS;
        Ok(crate::tokens::mint(
            &id, &tenant.id, &secret, grants, now, ttl,
        )?)
    };
    mint()
        .inspect_err(|e| tracing::warn!(error = %format!("{e:#}"), "no demo client token"))
        .ok()
}

fn announce(listening: &Listening, config: &Config, demo_token: Option<&str>) {
    for line in banner(listening, config, demo_token) {
        println!("{line}");
    }
    // Test harnesses wait for the lines above: make sure they are out.
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// What `serve` prints once it listens. SIP passwords are never printed,
/// except the demo's, which is public (it is in the source and README).
fn banner(listening: &Listening, config: &Config, demo_token: Option<&str>) -> Vec<String> {
    let mut lines = Vec::new();
    for (transport, addr) in &listening.sip {
        lines.push(format!("switchyard: listening sip {transport} {addr}"));
    }
    if let Some(http) = listening.http {
        lines.push(format!("switchyard: listening http {http}"));
    }
    lines.push("switchyard: ready".into());
    if let Some((_, addr)) = listening.sip.iter().find(|(t, _)| *t == Transport::Udp) {
        for tenant in &config.tenants {
            let numbers: Vec<&str> = tenant.numbers.iter().map(|n| n.number.as_str()).collect();
            lines.push(format!(
                "  tenant {}: numbers {} · users {}",
                tenant.id,
                numbers.join(", "),
                tenant.users.len()
            ));
            let demo = tenant.demo_user();
            if let Some(user) = demo {
                lines.push(format!(
                    "  demo SIP login:  user {}  password {}    (register a softphone as sip:{}@{})",
                    user.username,
                    user.password,
                    user.username,
                    addr.ip()
                ));
            }
            if let (Some(_), Some(token), Some(http)) = (demo, demo_token, listening.http) {
                lines.push(format!(
                    "  browser phone:   http://{http}/phone#token={token}    (client \"demo\", 24 h: call 1000 to reach the IVR)"
                ));
            }
        }
        lines.push(format!(
            "  call it:  sipp -sn uac -m 1 {addr}    (or any softphone: sip:1000@{addr})"
        ));
    }
    lines
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Inputs handled per wake-up before outputs are flushed.
const BATCH: usize = 256;

/// Where the core task's outputs go.
struct Outputs {
    udp: transport::UdpSockets,
    inputs: mpsc::UnboundedSender<Input>,
    cdrs: CdrStore,
    media: media::MediaEdge,
    metrics: Arc<Metrics>,
    provision: provision::Provision,
    callbacks: Callbacks,
    /// What rules on incoming calls before their handlers run (none:
    /// every call is `not-checked`).
    screener: Option<Arc<crate::screen::Screener>>,
    /// `[provider]`: the placement records of the calls placed here (C11).
    placements: Option<crate::store::placements::PlacementStore>,
}

/// What `GET /metrics` runs: the calls by state from the core task, the
/// engine's and the cache's counters, rendered by [`Metrics`].
fn scrape(
    metrics: Arc<Metrics>,
    inputs: mpsc::UnboundedSender<Input>,
    engine: Engine,
    cache: MediaCache,
    callbacks: Callbacks,
) -> http::Scrape {
    Arc::new(move || {
        let (metrics, inputs, engine, cache, callbacks) = (
            Arc::clone(&metrics),
            inputs.clone(),
            engine.clone(),
            cache.clone(),
            callbacks.clone(),
        );
        Box::pin(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = inputs.send(Input::CallCounts(tx));
            let counts = tokio::time::timeout(Duration::from_secs(2), rx)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let cache = tokio::task::spawn_blocking(move || cache.stats())
                .await
                .unwrap_or_default();
            let snapshot = Snapshot {
                calls_early: counts.early as u64,
                calls_answered: counts.answered as u64,
                admission: counts.admission,
                media: engine.stats(),
                cache,
                callbacks: callbacks.stats(),
            };
            metrics.render(&snapshot)
        })
    })
}

async fn core(mut endpoint: Endpoint, mut queue: mpsc::UnboundedReceiver<Input>, outputs: Outputs) {
    let mut streams: HashMap<SocketAddr, mpsc::UnboundedSender<bytes::Bytes>> = HashMap::new();
    loop {
        let deadline = endpoint.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            input = queue.recv() => {
                let Some(input) = input else { return };
                let now = Instant::now();
                handle(&mut endpoint, &mut streams, &outputs.metrics, now, input);
                for _ in 1..BATCH {
                    match queue.try_recv() {
                        Ok(input) => handle(&mut endpoint, &mut streams, &outputs.metrics, now, input),
                        Err(_) => break,
                    }
                }
            }
            _ = sleep => endpoint.handle_timeout(Instant::now()),
        }
        flush(&mut endpoint, &mut streams, &outputs);
    }
}

fn handle(
    endpoint: &mut Endpoint,
    streams: &mut HashMap<SocketAddr, mpsc::UnboundedSender<bytes::Bytes>>,
    metrics: &Metrics,
    now: Instant,
    input: Input,
) {
    match input {
        Input::Message(peer, msg) => endpoint.handle_message(now, peer, msg),
        Input::Invocation(call, invocation) => {
            metrics.observe(&invocation);
            endpoint.handle_invocation(now, call, invocation);
        }
        Input::CallCounts(reply) => {
            let (early, answered) = endpoint.call_counts();
            let _ = reply.send(CallCounts {
                early,
                answered,
                ending: endpoint.ending_calls(),
                admission: endpoint.admission_stats(),
            });
        }
        Input::Connected(peer, writer) => {
            streams.insert(peer.addr, writer);
        }
        Input::Disconnected(peer) => {
            streams.remove(&peer.addr);
            endpoint.handle_transport_error(now, peer);
        }
        Input::Media(stream, notice) => endpoint.handle_media(now, stream, notice),
        Input::Directory(directory) => endpoint.set_directory(directory),
        Input::Calls(request) => endpoint.handle_call_request(now, request),
        Input::Verified(invite, screened) => endpoint.handle_verified(now, &invite, screened),
    }
}

fn flush(
    endpoint: &mut Endpoint,
    streams: &mut HashMap<SocketAddr, mpsc::UnboundedSender<bytes::Bytes>>,
    outputs: &Outputs,
) {
    let Outputs {
        udp,
        inputs,
        cdrs,
        media,
        callbacks,
        ..
    } = outputs;
    while let Some(transmit) = endpoint.poll_transmit() {
        let peer = transmit.peer;
        match peer.transport {
            Transport::Udp => udp.send(peer.addr, &transmit.bytes),
            Transport::Tcp | Transport::Tls => match streams.get(&peer.addr) {
                Some(writer) if writer.send(transmit.bytes.clone()).is_ok() => {}
                // A response whose connection is gone: the client's port
                // was ephemeral, so there is nowhere to connect to.
                _ if transmit.bytes.starts_with(b"SIP/2.0 ") => {
                    tracing::debug!(%peer, "response dropped: its connection is closed");
                }
                _ if peer.transport == Transport::Tcp => {
                    let writer = transport::connect_tcp(peer, inputs.clone());
                    let _ = writer.send(transmit.bytes);
                    streams.insert(peer.addr, writer);
                }
                _ => {
                    tracing::warn!(%peer, "no TLS connection to this peer; outbound TLS is not supported yet");
                    endpoint.handle_transport_error(Instant::now(), peer);
                }
            },
        }
    }
    while let Some(event) = endpoint.poll_event() {
        match event {
            EndpointEvent::Invoke {
                call,
                tenant,
                request,
            } => {
                let directory = Arc::clone(endpoint.directory());
                let inputs = inputs.clone();
                tokio::spawn(async move {
                    let handlers = &directory.tenant(tenant).handlers;
                    let invocation = invoke_named(handlers, request).await;
                    let _ = inputs.send(Input::Invocation(call, invocation));
                });
            }
            EndpointEvent::Cdr(cdr, log) => {
                outputs.provision.call_ended(&cdr, &log);
                cdrs.record(cdr, log);
            }
            EndpointEvent::Media {
                call,
                stream,
                action,
            } => media.handle(call, stream, action),
            EndpointEvent::Status(event) => callbacks.send(event),
            // Queued to the store's writer thread: never waits on SQLite.
            EndpointEvent::Placed(placement) => {
                if let Some(placements) = &outputs.placements {
                    placements.record(placement);
                }
            }
            EndpointEvent::Verify {
                invite,
                tenant,
                identity,
                from,
                to,
                call_id,
                headers,
            } => {
                // Only a screener turns the endpoint's screening on.
                let Some(screener) = outputs.screener.clone() else {
                    continue;
                };
                let attempt = crate::screen::Attempt {
                    tenant: endpoint.directory().tenant(tenant).id.clone(),
                    identity,
                    from,
                    to,
                    call_id,
                    headers,
                };
                let inputs = inputs.clone();
                tokio::spawn(async move {
                    let (from, to) = (attempt.from.clone(), attempt.to.clone());
                    let screened = screener.screen(attempt).await;
                    tracing::info!(
                        %from, %to, status = ?screened.verification.status,
                        label = ?screened.verification.label, outcome = ?screened.outcome,
                        reason = %screened.reason, "caller screened"
                    );
                    let _ = inputs.send(Input::Verified(invite, screened));
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listening() -> Listening {
        Listening {
            sip: vec![(Transport::Udp, "127.0.0.1:5060".parse().unwrap())],
            http: Some("127.0.0.1:8080".parse().unwrap()),
        }
    }

    #[test]
    fn the_demo_banner_prints_the_demo_sip_login() {
        let lines = banner(&listening(), &Config::demo(), Some("T0KEN"));
        assert!(
            lines
                .iter()
                .any(|l| l.contains("user alice  password alice-demo")
                    && l.contains("sip:alice@127.0.0.1")),
            "{lines:#?}"
        );
        assert!(
            (lines.iter()).any(|l| l.contains("http://127.0.0.1:8080/phone#token=T0KEN")),
            "{lines:#?}"
        );
    }

    #[test]
    fn no_other_password_is_printed() {
        let mut config = Config::demo();
        config.tenants[0].users[0].password = "a-real-secret".into();
        let lines = banner(&listening(), &config, Some("T0KEN"));
        assert!(
            lines.iter().all(|l| !l.contains("a-real-secret")),
            "{lines:#?}"
        );
        assert!(lines.iter().all(|l| !l.contains("password")), "{lines:#?}");
    }
}
