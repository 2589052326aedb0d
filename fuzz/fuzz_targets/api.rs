//! REST requests are untrusted: whatever the method, path, query,
//! credentials and body, the API answers with a status (a JSON error at
//! worst), never a panic. One server state for every run, with one
//! account whose key the input may use.
#![no_main]

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use switchyard::api::{ApiState, DeployState, Switchboard, handle};
use switchyard::deploy::Deployments;
use switchyard::store::recordings::RecordingStore;
use switchyard::conferences::Conferences;
use switchyard::store::{CdrStore, ConferenceStore, KvLimits, KvStore};
use switchyard::tenancy::Accounts;
use switchyard::wasm::{HostConfig, WasmHost};

struct World {
    runtime: tokio::runtime::Runtime,
    state: ApiState,
    /// `Basic` credentials of account `fuzz` and of the operator.
    account: String,
    admin: String,
}

const ADMIN_KEY: &str = "fuzz-admin-key-0123456789";

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("switchyard-fuzz-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let accounts = Accounts::open(&dir.join("accounts.sqlite3")).expect("accounts");
    accounts.ensure("fuzz").expect("account");
    let key = accounts.create_key("fuzz").expect("key").expect("account");
    let config = HostConfig::builder()
        .cache_dir(dir.join("cache"))
        .build()
        .expect("config");
    let host =
        WasmHost::new(config, KvStore::in_memory(KvLimits::default()).expect("kv")).expect("host");
    let state = ApiState {
        clients: switchyard::clients::Clients::new(
            accounts.clone(),
            switchyard::clients::HEARTBEAT,
        ),
        accounts,
        recordings: RecordingStore::open(&dir.join("recordings")).expect("recordings"),
        cdrs: CdrStore::open(&dir.join("cdr.sqlite3")).expect("cdrs"),
        conferences: Conferences::new(
            ConferenceStore::open(&dir.join("conferences.sqlite3")).expect("conferences"),
        ),
        admin_key: Some(ADMIN_KEY.into()),
        deploy: DeployState {
            store: Deployments::open(&dir.join("deploy")).expect("deploy"),
            host,
            reserved: Arc::default(),
            max_component_bytes: 1 << 20,
            refresh: Arc::new(|| Box::pin(async { Ok(()) })),
        },
        switchboard: Switchboard(Arc::new(|_| false)),
        directory: Default::default(),
    };
    let basic = |user: &str, secret: &str| {
        let raw = format!("{user}:{secret}");
        format!("Basic {}", base64(raw.as_bytes()))
    };
    World {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
        account: basic("fuzz", &key.secret),
        admin: basic("admin", ADMIN_KEY),
        state,
    }
});

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"];

fuzz_target!(|data: &[u8]| {
    // [method][auth][path and query]\n[body]
    let [method, auth, rest @ ..] = data else {
        return;
    };
    let (target, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let world = &*WORLD;
    let mut request = hyper::Request::builder()
        .method(METHODS[*method as usize % METHODS.len()])
        .uri(format!("/v1/{target}"));
    match auth % 4 {
        0 => request = request.header("authorization", &world.account),
        1 => request = request.header("authorization", &world.admin),
        2 => request = request.header("authorization", "Basic !!"),
        _ => {}
    }
    let Ok(request) = request.body(Full::new(Bytes::copy_from_slice(body))) else {
        return; // not a valid URI: hyper never hands us one
    };
    let reply = world.runtime.block_on(handle(request, &world.state));
    assert!(reply.status().as_u16() >= 200);
});
