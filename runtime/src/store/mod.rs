//! Persistence: what outlives a call.
//!
//! ```text
//!   guest kv import (async, wasm::imports)
//!          │  tenant id from the host state, never from the guest
//!          ▼
//!   store::KvStore ──(channel)──▶ SQLite worker thread ──▶ kv.sqlite3
//!          ▲                              │
//!          └──────── oneshot reply ◀──────┘
//! ```
//!
//! SQLite is blocking, so it never runs on a tokio worker: every store owns
//! one dedicated thread that holds the connection and executes requests in
//! order. SQLite allows one writer at a time anyway, so a single thread
//! costs no write throughput and keeps the quota bookkeeping race-free.
//!
//! * [`cdr`] — call detail records, batched writes.
//! * [`kv`] — tenant-scoped key-value storage with per-tenant limits.
//! * [`recordings`] — call recordings: WAV files and their metadata.

pub mod cdr;
pub mod kv;
pub mod recordings;

pub use cdr::{Cdr, CdrError, CdrStore};
pub use kv::{KvError, KvLimits, KvPart, KvStore, KvUsage};
pub use recordings::{Recording, RecordingStore};
