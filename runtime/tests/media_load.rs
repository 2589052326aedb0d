//! The measuring code of the media benchmark's load tool
//! (`runtime/examples/media_load`): its unit tests live in `measure.rs`,
//! which examples cannot run under `cargo test`; this file includes it.

#[path = "../examples/media_load/measure.rs"]
mod measure;
