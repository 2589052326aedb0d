//! The media IO edge: the engine (worker threads, sockets, the timer
//! wheel), the prompt cache, URL fetches and the synthesizer. The sans-IO
//! media core (sessions, codecs, DTMF, jitter, RTCP, audio) is the
//! `switchyard-media` crate, re-exported here so `media::X` names both.

pub use switchyard_media::*;

pub mod cache;
pub mod engine;
pub mod fetch;
pub mod synth;

pub mod tone_speech;
