//! What the runtime's benchmarks share: a Wasm host as the server builds
//! one (in-memory key-value storage, a throwaway component cache) and a
//! built example guest.

use switchyard::store::{KvLimits, KvStore};
use switchyard::wasm::{HostConfig, WasmHost};

/// The host, the bytes of `guest_NAME.wasm`, and the cache directory
/// (kept while the host is).
pub fn host_and_guest(name: &str) -> (WasmHost, Vec<u8>, tempfile::TempDir) {
    let path = format!(
        "{}/../target/wasm32-wasip2/release/guest_{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}; run `bash scripts/build-guests` first"));
    let cache = tempfile::tempdir().expect("tempdir");
    let config = HostConfig::builder()
        .cache_dir(cache.path())
        .build()
        .expect("host config");
    let kv = KvStore::in_memory(KvLimits::default()).expect("kv store");
    let host = WasmHost::new(config, kv).expect("wasm host");
    (host, bytes, cache)
}
