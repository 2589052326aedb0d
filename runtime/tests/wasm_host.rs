//! The Wasm host against real guest components (`guests/*`).
//!
//! The guests are built separately for `wasm32-wasip2`; a missing one fails
//! with the command that builds it. Hand-written components for the
//! refusal cases are assembled from WAT in the tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use switchyard::contract::{
    Context, Event, GatherEnd, GatherResult, HandlerError, HangupCause, IncomingCall, Plan, Verb,
};
use switchyard::guest::{
    CallHandler, CallVars, GuestFailure, ImportRecord, Invocation, InvokeRequest,
};
use switchyard::store::{KvLimits, KvStore};
use switchyard::wasm::{
    Entropy, HostConfig, LoadError, LoadSource, LoadedComponent, PoolLimits, Recorded, TenantScope,
    WasmHandler, WasmHost, World,
};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

// ---------------------------------------------------------------- fixtures

/// The memory test must not see other tests' guests come and go, so it
/// runs alone; the rest run side by side.
/// (An async lock: the guard is held across awaits, and a std lock would be
/// poisoned by one failing test for all the others.)
static MEMORY_SENSITIVE: RwLock<()> = RwLock::const_new(());

async fn shared() -> RwLockReadGuard<'static, ()> {
    MEMORY_SENSITIVE.read().await
}

async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    MEMORY_SENSITIVE.write().await
}

/// For the tests without an async runtime.
fn shared_blocking() -> RwLockReadGuard<'static, ()> {
    MEMORY_SENSITIVE.blocking_read()
}

fn guest(name: &str) -> Vec<u8> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join(format!("wasm32-wasip2/release/guest_{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}\nbuild it first: cargo build --release --target wasm32-wasip2 -p guest-{name}",
            path.display()
        )
    })
}

struct TestHost {
    host: WasmHost,
    _cache: tempfile::TempDir,
}

/// A host with a small pool (tests run several hosts at once) and its own
/// cache directory.
fn test_host() -> TestHost {
    let cache = tempfile::tempdir().unwrap();
    let host = host_with_cache(
        cache.path().to_owned(),
        KvStore::in_memory(KvLimits::default()).unwrap(),
    );
    TestHost {
        host,
        _cache: cache,
    }
}

fn host_with_cache(cache_dir: PathBuf, kv: KvStore) -> WasmHost {
    let config = HostConfig::builder()
        .cache_dir(cache_dir)
        .pool(PoolLimits {
            component_instances: 20,
            core_instances: 200,
            memories: 40,
            tables: 80,
            ..PoolLimits::default()
        })
        .build()
        .unwrap();
    WasmHost::new(config, kv).unwrap()
}

fn handler(host: &WasmHost, component: &Arc<LoadedComponent>, tenant: &str) -> WasmHandler {
    host.handler(component, TenantScope::new(tenant)).unwrap()
}

/// Guest `name` loaded on the test host, for tenant "acme".
fn acme_guest(t: &TestHost, name: &str) -> WasmHandler {
    handler(&t.host, &t.host.load(&guest(name)).unwrap(), "acme")
}

/// After a hostile guest failed, the same host still serves the IVR.
async fn host_still_serves(t: &TestHost) {
    let served = acme_guest(t, "ivr").invoke(incoming("acme")).await;
    assert!(served.outcome.is_ok(), "{:?}", served.outcome);
}

fn context(tenant: &str, sequence: u32) -> Context {
    Context {
        call_id: format!("call-{tenant}-{sequence}"),
        tenant: tenant.to_owned(),
        sequence,
        handler: "main".to_owned(),
    }
}

fn incoming(tenant: &str) -> InvokeRequest {
    InvokeRequest {
        ctx: context(tenant, 0),
        event: Event::Incoming(IncomingCall::inbound(
            "+15550001111",
            "+15550002222",
            "eu-west",
        )),
        vars: CallVars::new(),
    }
}

fn hung_up(tenant: &str) -> InvokeRequest {
    InvokeRequest {
        ctx: context(tenant, 2),
        event: Event::Hangup(HangupCause::Caller),
        vars: CallVars::new(),
    }
}

fn pressed(tenant: &str, digits: &str) -> InvokeRequest {
    InvokeRequest {
        ctx: context(tenant, 1),
        event: Event::GatherComplete(GatherResult {
            digits: digits.to_owned(),
            ended_by: GatherEnd::NumDigits,
        }),
        vars: CallVars::from([("lang".to_owned(), "en".to_owned())]),
    }
}

fn kv_reads_of<'a>(imports: &'a [ImportRecord], wanted: &str) -> Vec<&'a ImportRecord> {
    imports
        .iter()
        .filter(|r| matches!(r, ImportRecord::KvGet { key, .. } | ImportRecord::KvSet { key, .. } if key == wanted))
        .collect()
}

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap()
}

/// VmRSS of this process in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

// ------------------------------------------------------------------- tests

#[tokio::test]
async fn ivr_answers_an_incoming_call_with_a_menu_and_counts_calls() {
    let _serial = shared().await;
    let t = test_host();
    let ivr = t.host.load(&guest("ivr")).unwrap();
    assert_eq!(ivr.info().world, World::CallHandler);
    let acme = handler(&t.host, &ivr, "acme");

    let first = acme.invoke(incoming("acme")).await;
    let plan = first.outcome.expect("a plan");
    assert!(
        matches!(plan.verbs.first(), Some(Verb::Say(say)) if say.text.contains("Welcome")),
        "{plan:?}"
    );
    assert!(
        matches!(plan.verbs.last(), Some(Verb::Gather(_))),
        "{plan:?}"
    );
    assert!(
        kv_reads_of(&first.imports, "stats/calls").is_empty(),
        "answering never waits on storage"
    );
    assert!(
        first
            .imports
            .iter()
            .any(|r| matches!(r, ImportRecord::Log { .. }))
    );
    assert!(first.elapsed > Duration::ZERO);

    let first = acme.invoke(hung_up("acme")).await;
    assert_eq!(first.outcome, Ok(Plan { verbs: vec![] }));
    assert_eq!(
        kv_reads_of(&first.imports, "stats/calls"),
        [
            &ImportRecord::KvGet {
                key: "stats/calls".into(),
                result: Ok(None)
            },
            &ImportRecord::KvSet {
                key: "stats/calls".into(),
                len: 1,
                result: Ok(())
            },
        ]
    );
    let second = acme.invoke(hung_up("acme")).await;
    assert!(second.outcome.is_ok());
    assert_eq!(
        kv_reads_of(&second.imports, "stats/calls")[0],
        &ImportRecord::KvGet {
            key: "stats/calls".into(),
            result: Ok(Some(b"1".to_vec()))
        }
    );
    assert_eq!(
        t.host.kv().get("acme", "stats/calls").await.unwrap(),
        Some(b"2".to_vec())
    );
}

#[tokio::test]
async fn call_vars_come_back_as_the_guest_left_them() {
    let _serial = shared().await;
    let t = test_host();
    let ivr = t.host.load(&guest("ivr")).unwrap();
    let acme = handler(&t.host, &ivr, "acme");
    // An invalid choice makes the IVR count the attempt in a call variable.
    let invocation = acme.invoke(pressed("acme", "9")).await;
    assert!(invocation.outcome.is_ok());
    assert_eq!(invocation.vars.get("lang").map(String::as_str), Some("en"));
    assert!(
        invocation
            .imports
            .iter()
            .any(|r| matches!(r, ImportRecord::VarGet { name, .. } if name == "attempts"))
    );
}

/// What the entropy guest said — `wall W clock C elapsed E random R
/// order O` — as word pairs.
fn entropy_said(invocation: &Invocation) -> std::collections::HashMap<String, String> {
    let Ok(plan) = &invocation.outcome else {
        panic!("{:?}", invocation.outcome)
    };
    let Some(Verb::Say(say)) = plan.verbs.first() else {
        panic!("{plan:?}")
    };
    let words: Vec<&str> = say.text.split(' ').collect();
    words
        .chunks(2)
        .map(|pair| (pair[0].to_owned(), pair.get(1).unwrap_or(&"").to_string()))
        .collect()
}

#[tokio::test]
async fn guests_read_the_events_instant_and_new_random_numbers_in_every_call() {
    let _serial = shared().await;
    let t = test_host();
    let entropy = acme_guest(&t, "entropy");
    let first = entropy.invoke(incoming("acme")).await;
    let second = entropy.invoke(incoming("acme")).await;
    let (a, b) = (entropy_said(&first), entropy_said(&second));
    assert_ne!(a["random"], b["random"], "{a:?} / {b:?}");

    let Some(&ImportRecord::Entropy { unix_ms, seed }) = first.imports.first() else {
        panic!("the entropy is the first record: {:?}", first.imports)
    };
    assert_eq!(a["wall"], unix_ms.to_string(), "{a:?}");
    assert_eq!(a["clock"], a["wall"], "one instant per event: {a:?}");
    let elapsed: u64 = a["elapsed"].parse().unwrap();
    assert!(
        elapsed > 0 && elapsed.is_multiple_of(1_000),
        "whole 1 µs steps: {a:?}"
    );

    // The recorded entropy given back, the guest decides the same.
    let recorded = Recorded {
        kv: std::sync::Arc::new(KvStore::in_memory(KvLimits::default()).unwrap()),
        presence: Arc::new(switchyard::wasm::presence::Nobody),
        clock_ms: Vec::new(),
        entropy: Entropy { unix_ms, seed },
    };
    let again = entropy.replay(incoming("acme"), recorded).await;
    assert_eq!(again.outcome, first.outcome);
    assert_eq!(again.imports, first.imports);
}

#[tokio::test]
async fn a_trapping_guest_fails_the_event_and_the_host_keeps_serving() {
    let _serial = shared().await;
    let t = test_host();
    let trap = acme_guest(&t, "trap");

    let request = pressed("acme", "1");
    let failed = trap.invoke(request.clone()).await;
    match &failed.outcome {
        Err(GuestFailure::Trap(message)) => {
            eprintln!("trap message: {message}");
            assert!(message.contains("deliberate trap for tests"), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(
        failed.vars, request.vars,
        "vars are returned unchanged on failure"
    );

    host_still_serves(&t).await;
}

/// Runs `guest` on an incoming call: it must fail with `expected`, in
/// bounded time, and leave the host serving.
async fn refused_with(guest: &str, expected: GuestFailure) {
    let _serial = shared().await;
    let t = test_host();
    let handler = acme_guest(&t, guest);
    let invocation = handler.invoke(incoming("acme")).await;
    assert_eq!(invocation.outcome, Err(expected));
    assert!(
        invocation.elapsed < Duration::from_secs(2),
        "{:?}",
        invocation.elapsed
    );
    host_still_serves(&t).await;
}

#[tokio::test]
async fn a_spinning_guest_is_interrupted_at_its_deadline() {
    refused_with("spin", GuestFailure::Deadline { limit_ms: 20 }).await;
}

#[tokio::test]
async fn a_memory_hog_hits_its_cap() {
    refused_with(
        "hog",
        GuestFailure::MemoryCap {
            limit_bytes: 32 * 1024 * 1024,
        },
    )
    .await;
}

#[tokio::test]
async fn ten_thousand_traps_leave_memory_flat() {
    let _serial = exclusive().await;
    let t = test_host();
    let trap = acme_guest(&t, "trap");
    let request = incoming("acme");
    for _ in 0..1_000 {
        assert!(matches!(
            trap.invoke(request.clone()).await.outcome,
            Err(GuestFailure::Trap(_))
        ));
    }
    let before = rss_bytes();
    for _ in 0..10_000 {
        assert!(matches!(
            trap.invoke(request.clone()).await.outcome,
            Err(GuestFailure::Trap(_))
        ));
    }
    let after = rss_bytes();
    let growth = after.saturating_sub(before);
    eprintln!(
        "RSS after warm-up {} KiB, after 10,000 traps {} KiB",
        before / 1024,
        after / 1024
    );
    assert!(
        growth < 20 * 1024 * 1024,
        "RSS grew by {} KiB over 10,000 trapping events ({before} -> {after} bytes)",
        growth / 1024
    );
}

#[tokio::test]
async fn one_tenants_kv_is_invisible_to_another() {
    let _serial = shared().await;
    let t = test_host();
    let ivr = t.host.load(&guest("ivr")).unwrap();
    let acme = handler(&t.host, &ivr, "acme");
    let globex = handler(&t.host, &ivr, "globex");
    for _ in 0..3 {
        assert!(acme.invoke(hung_up("acme")).await.outcome.is_ok());
    }
    let theirs = globex.invoke(hung_up("globex")).await;
    assert_eq!(
        kv_reads_of(&theirs.imports, "stats/calls")[0],
        &ImportRecord::KvGet {
            key: "stats/calls".into(),
            result: Ok(None)
        },
        "globex must not see acme's count"
    );
    assert_eq!(
        t.host.kv().get("acme", "stats/calls").await.unwrap(),
        Some(b"3".to_vec())
    );
    assert_eq!(
        t.host.kv().get("globex", "stats/calls").await.unwrap(),
        Some(b"1".to_vec())
    );
}

#[test]
fn bytes_that_are_not_a_component_are_refused_with_what_is_wrong() {
    let _serial = shared_blocking();
    let t = test_host();

    let err = t.host.load(b"MZ\x90\0 definitely not wasm").unwrap_err();
    assert!(matches!(err, LoadError::NotWasm { .. }));
    assert!(
        err.to_string().starts_with("not a WebAssembly binary:"),
        "{err}"
    );

    let err = t.host.load(b"\0asm\x01\0\0\0").unwrap_err();
    assert_eq!(err, LoadError::CoreModule);
    assert!(
        err.to_string()
            .contains("core Wasm module, not a component"),
        "{err}"
    );
    assert!(err.to_string().contains("--target wasm32-wasip2"), "{err}");

    let err = t.host.load(b"\0asm\x0d\0\x01\0").unwrap_err();
    assert_eq!(err, LoadError::NoWorld { exports: vec![] });
    assert!(
        err.to_string().contains("none is a Switchyard world"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("expected voice:runtime/handler (call-handler)"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("at version 0.2.x (current) or 0.1.x"),
        "{err}"
    );

    let mut truncated = guest("ivr");
    truncated.truncate(truncated.len() / 2);
    let err = t.host.load(&truncated).unwrap_err();
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");
}

#[test]
fn components_of_another_world_or_shape_are_refused_by_name() {
    let _serial = shared_blocking();
    let t = test_host();

    let notify = wat(r#"(component
        (core module $m (func (export "f")))
        (core instance $i (instantiate $m))
        (func $f (canon lift (core func $i "f")))
        (instance $notify (export "on-delivery-report" (func $f)))
        (export "voice:runtime/notify@0.1.0" (instance $notify)))"#);
    assert_eq!(
        t.host.inspect(&notify).unwrap().world,
        World::NotificationRouter
    );
    let err = t.host.load(&notify).unwrap_err();
    assert_eq!(
        err,
        LoadError::WrongWorld {
            found: World::NotificationRouter,
            expected: World::CallHandler
        }
    );

    let other = wat(r#"(component
        (core module $m (func (export "f")))
        (core instance $i (instantiate $m))
        (func $f (canon lift (core func $i "f")))
        (export "run" (func $f)))"#);
    let err = t.host.load(&other).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("exports run; none is a Switchyard world"),
        "{err}"
    );

    let wrong_signature = wat(r#"(component
        (core module $m (func (export "f")))
        (core instance $i (instantiate $m))
        (func $f (canon lift (core func $i "f")))
        (instance $h (export "handle" (func $f)))
        (export "voice:runtime/handler@0.1.0" (instance $h)))"#);
    let err = t.host.load(&wrong_signature).unwrap_err();
    assert!(
        matches!(&err, LoadError::ExportMismatch { export, .. } if export == "voice:runtime/handler@0.1.0")
    );
    assert!(
        err.to_string()
            .contains("`handle` has a different signature"),
        "{err}"
    );

    let network = wat(r#"(component
        (import "wasi:http/outgoing-handler@0.2.0" (instance (export "handle" (func))))
        (import "voice:runtime/log@0.1.0" (instance (export "flush" (func))))
        (core module $m (func (export "f")))
        (core instance $i (instantiate $m))
        (func $f (canon lift (core func $i "f")))
        (instance $h (export "handle" (func $f)))
        (export "voice:runtime/handler@0.1.0" (instance $h)))"#);
    let err = t.host.load(&network).unwrap_err();
    assert_eq!(
        err,
        LoadError::UnsupportedImports {
            imports: vec!["wasi:http/outgoing-handler@0.2.0".into()]
        }
    );
    assert!(
        err.to_string().starts_with(
            "imports wasi:http/outgoing-handler@0.2.0 which this runtime does not provide"
        ),
        "{err}"
    );

    let bad_log = wat(r#"(component
        (import "voice:runtime/log@0.1.0" (instance (export "flush" (func))))
        (core module $m (func (export "f")))
        (core instance $i (instantiate $m))
        (func $f (canon lift (core func $i "f")))
        (instance $h (export "handle" (func $f)))
        (export "voice:runtime/handler@0.1.0" (instance $h)))"#);
    let err = t.host.load(&bad_log).unwrap_err();
    assert!(matches!(err, LoadError::Link { .. }), "{err}");
    assert!(err.to_string().contains("voice:runtime/log@0.1.0"), "{err}");
}

#[test]
fn a_component_is_compiled_once_and_then_served_from_cache() {
    let _serial = shared_blocking();
    let cache = tempfile::tempdir().unwrap();
    let kv = KvStore::in_memory(KvLimits::default()).unwrap();
    let bytes = guest("ivr");

    let first_host = host_with_cache(cache.path().to_owned(), kv.clone());
    let first = first_host.load(&bytes).unwrap();
    assert_eq!(first.source(), LoadSource::Compiled);
    let again = first_host.load(&bytes).unwrap();
    assert!(Arc::ptr_eq(&first, &again), "a live component is shared");
    let stats = first_host.cache_stats();
    assert_eq!(
        (stats.compiled, stats.memory_hits, stats.disk_hits),
        (1, 1, 0)
    );
    drop((first, again, first_host));

    let second_host = host_with_cache(cache.path().to_owned(), kv);
    let reloaded = second_host.load(&bytes).unwrap();
    assert_eq!(reloaded.source(), LoadSource::DiskCache);
    let stats = second_host.cache_stats();
    assert_eq!((stats.compiled, stats.disk_hits), (0, 1));
}

#[tokio::test]
async fn a_component_from_the_disk_cache_runs() {
    let _serial = shared().await;
    let cache = tempfile::tempdir().unwrap();
    let kv = KvStore::in_memory(KvLimits::default()).unwrap();
    let bytes = guest("ivr");
    drop(
        host_with_cache(cache.path().to_owned(), kv.clone())
            .load(&bytes)
            .unwrap(),
    );

    let host = host_with_cache(cache.path().to_owned(), kv);
    let ivr = host.load(&bytes).unwrap();
    assert_eq!(ivr.source(), LoadSource::DiskCache);
    assert!(
        handler(&host, &ivr, "acme")
            .invoke(incoming("acme"))
            .await
            .outcome
            .is_ok()
    );
}

#[test]
fn a_guest_built_with_notices_off_says_so_and_others_hear_notices() {
    let _serial = shared_blocking();
    let t = test_host();
    assert!(!acme_guest(&t, "busy").hears_notices());
    assert!(acme_guest(&t, "ivr").hears_notices());
    assert!(!t.host.inspect(&guest("busy")).unwrap().notices);
}

#[test]
fn the_default_configuration_starts() {
    let _serial = shared_blocking();
    let cache = tempfile::tempdir().unwrap();
    let config = HostConfig::builder()
        .cache_dir(cache.path())
        .build()
        .unwrap();
    WasmHost::new(config, KvStore::in_memory(KvLimits::default()).unwrap()).unwrap();
}

/// A guest as an older SDK built it (`tests/fixtures/wit-VERSION`).
fn fixture(version: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/wit-{version}/guest_{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[tokio::test]
async fn components_built_against_wit_0_1_0_run_unchanged() {
    let _serial = shared().await;
    let t = test_host();
    // The IVR: kv, log, clock and call-vars at 0.1.0 link to the 0.1.1 host.
    let ivr = t.host.load(&fixture("0.1.0", "ivr")).unwrap();
    assert_eq!(ivr.info().world, World::CallHandler);
    assert!(
        (ivr.info().imports.iter()).any(|i| i == "voice:runtime/kv@0.1.0"),
        "{:?}",
        ivr.info().imports
    );
    assert!(
        ivr.info().export.ends_with("@0.1.0"),
        "{}",
        ivr.info().export
    );
    let old = handler(&t.host, &ivr, "acme");
    let new = acme_guest(&t, "ivr");
    let (before, now) = (
        old.invoke(incoming("acme")).await,
        new.invoke(incoming("acme")).await,
    );
    assert_eq!(
        before.outcome, now.outcome,
        "the same guest decides the same"
    );
    assert!(matches!(before.outcome, Ok(ref p) if matches!(p.verbs.last(), Some(Verb::Gather(_)))));
    assert_eq!(ivr.info().contract, switchyard::wasm::Contract::V0_1);
    // Its enqueue (a 0.1 type) runs as the current one: priority 0, no
    // wait updates.
    let (before, now) = (
        old.invoke(pressed("acme", "2")).await,
        new.invoke(pressed("acme", "2")).await,
    );
    assert_eq!(before.outcome, now.outcome);
    let Ok(Plan { verbs }) = &before.outcome else {
        panic!("{:?}", before.outcome)
    };
    assert!(
        matches!(verbs.last(), Some(Verb::Enqueue(e)) if e.queue == "support" && e.priority.is_none() && e.wait_update_secs.is_none()),
        "{verbs:?}"
    );
    // 0.2.0's `full` reaches it as `ended` (it does not expect the
    // event at all, and says which it got).
    let full = InvokeRequest {
        ctx: context("acme", 3),
        event: Event::ConferenceComplete(switchyard::contract::ConferenceResult {
            name: "room".into(),
            ended_by: switchyard::contract::ConferenceEnd::Full,
            duration_secs: 0,
        }),
        vars: CallVars::new(),
    };
    assert_eq!(
        old.invoke(full).await.outcome,
        Err(GuestFailure::Handler(HandlerError::UnexpectedEvent(
            "conference-complete".into()
        )))
    );
    // A 0.2.0 event it has no type for is refused before it runs.
    let wait = InvokeRequest {
        ctx: context("acme", 4),
        event: Event::QueueWait(switchyard::contract::QueueStatus {
            queue: "support".into(),
            position: 1,
            size: 1,
            wait_secs: 5,
            average_wait_secs: None,
        }),
        vars: CallVars::new(),
    };
    let refused = old.invoke(wait).await.outcome;
    assert!(
        matches!(&refused, Err(GuestFailure::Unavailable(m)) if m.contains("voice:runtime@0.1.x") && m.contains("queue-wait")),
        "{refused:?}"
    );
    let hung = old.invoke(hung_up("acme")).await;
    assert!(hung.outcome.is_ok(), "{:?}", hung.outcome);
    assert!(
        !kv_reads_of(&hung.imports, "stats/calls").is_empty(),
        "its kv works"
    );

    let busy = t.host.load(&fixture("0.1.0", "busy")).unwrap();
    let decided = handler(&t.host, &busy, "acme")
        .invoke(incoming("acme"))
        .await;
    assert_eq!(
        decided.outcome,
        Ok(Plan {
            verbs: vec![Verb::Reject(switchyard::contract::RejectReason::Busy)]
        })
    );
}

/// Alice of tenant acme is available on two devices; nobody else is.
struct AliceAvailable;

impl switchyard::wasm::presence::PresenceBackend for AliceAvailable {
    fn lookup(
        &self,
        tenant: &str,
        identity: &str,
    ) -> switchyard::contract::imports::presence::ClientPresence {
        use switchyard::contract::imports::presence::{ClientPresence, Status};
        if (tenant, identity) != ("acme", "alice") {
            return switchyard::wasm::presence::offline(identity);
        }
        ClientPresence {
            identity: identity.into(),
            status: Status::Available,
            text: Some("at my desk".into()),
            devices: 2,
        }
    }
}

#[tokio::test]
async fn a_guest_looks_up_presence_of_its_own_tenant_and_replay_sees_the_same() {
    let _serial = shared().await;
    let t = test_host();
    let presence = t.host.load(&guest("presence")).unwrap();
    // No registry yet: every identity is offline.
    let busy = switchyard::contract::RejectReason::Busy;
    let refused = Ok(Plan {
        verbs: vec![Verb::Reject(busy)],
    });
    let acme = handler(&t.host, &presence, "acme");
    assert_eq!(acme.invoke(incoming("acme")).await.outcome, refused);

    t.host.set_presence(Arc::new(AliceAvailable));
    let seen = acme.invoke(incoming("acme")).await;
    let declined = Ok(Plan {
        verbs: vec![Verb::Reject(switchyard::contract::RejectReason::Rejected)],
    });
    assert_eq!(seen.outcome, declined);
    let told = ImportRecord::PresenceLookup {
        identity: "alice".into(),
        status: "available".into(),
        text: Some("at my desk".into()),
        devices: 2,
    };
    assert!(seen.imports.contains(&told), "{:?}", seen.imports);
    // Another tenant's guest asking for "alice" asks about its own alice.
    let globex = handler(&t.host, &presence, "globex");
    assert_eq!(globex.invoke(incoming("globex")).await.outcome, refused);

    // A replay answers from the record, whatever the registry says now.
    let recorded = Recorded {
        kv: Arc::new(KvStore::in_memory(KvLimits::default()).unwrap()),
        presence: Arc::new(switchyard::wasm::presence::Replayed::of(&seen.imports)),
        clock_ms: Vec::new(),
        entropy: Entropy::fresh(),
    };
    let replayed = globex.replay(incoming("acme"), recorded).await;
    assert_eq!(replayed.outcome, declined);

    // The same guest built against 0.1.1 looks up through the 0.1 names
    // and sees, decides and records the same.
    let old = t.host.load(&fixture("0.1.1", "presence")).unwrap();
    assert!(
        (old.info().imports.iter()).any(|i| i == "voice:runtime/presence@0.1.1"),
        "{:?}",
        old.info().imports
    );
    let seen_old = handler(&t.host, &old, "acme")
        .invoke(incoming("acme"))
        .await;
    assert_eq!(seen_old.outcome, declined);
    assert!(seen_old.imports.contains(&told), "{:?}", seen_old.imports);
}
