//! Uploaded components are untrusted: whatever the bytes, inspection
//! answers with a component description or a `LoadError`, never a panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use switchyard::store::{KvLimits, KvStore};
use switchyard::wasm::{HostConfig, WasmHost};

static HOST: LazyLock<WasmHost> = LazyLock::new(|| {
    let cache = std::env::temp_dir().join("switchyard-fuzz-cache");
    let config = HostConfig::builder()
        .cache_dir(cache)
        .build()
        .expect("config");
    let kv = KvStore::in_memory(KvLimits::default()).expect("kv");
    WasmHost::new(config, kv).expect("host")
});

fuzz_target!(|data: &[u8]| {
    let _ = HOST.inspect(data);
});
