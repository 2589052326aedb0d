//! Guest text output (WASI stdout/stderr and the `log` import) turned into
//! `tracing` lines tagged with tenant and call id.
//!
//! ```text
//!   guest println!/eprintln! ─▶ wasi:cli/std{out,err} ─▶ GuestPipe ─┐
//!   guest log::write(level, msg) ──────────────────────────────────┤
//!                                                                  ▼
//!                       GuestOutput (one per event: line buffers, byte
//!                       budget, last lines of stderr for trap messages)
//!                                                                  │
//!                       tracing target "switchyard::guest" ◀────────┘
//! ```
//!
//! A guest may print in a loop until its deadline, so every invocation has a
//! byte budget; what exceeds it is counted and dropped, never buffered.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::async_trait;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use switchyard_contract::imports::log::Level;

/// Longest line forwarded as one tracing event; longer lines are split.
const MAX_LINE: usize = 4096;
/// Bytes of stderr kept to explain a trap (a Rust panic message).
const STDERR_TAIL: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Text output of one invocation.
pub(crate) struct GuestOutput {
    tenant: Arc<str>,
    call_id: String,
    state: Mutex<OutputState>,
}

struct OutputState {
    budget: usize,
    dropped: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stderr_tail: String,
}

impl GuestOutput {
    pub(crate) fn new(tenant: Arc<str>, call_id: String, budget: usize) -> Self {
        Self {
            tenant,
            call_id,
            state: Mutex::new(OutputState {
                budget,
                dropped: 0,
                stdout: Vec::new(),
                stderr: Vec::new(),
                stderr_tail: String::new(),
            }),
        }
    }

    /// A WASI stdout/stderr implementation feeding this output.
    pub(crate) fn pipe(self: &Arc<Self>, stream: Stream) -> GuestPipe {
        GuestPipe {
            output: Arc::clone(self),
            stream,
        }
    }

    /// Forwards a `log` import line; `false` when the budget is spent and
    /// the line was dropped.
    pub(crate) fn log(&self, level: Level, message: &str) -> bool {
        let mut state = self.lock();
        let message = truncate(message, MAX_LINE);
        if !state.spend(message.len()) {
            return false;
        }
        drop(state);
        let (tenant, call_id) = (&*self.tenant, self.call_id.as_str());
        match level {
            Level::Trace => {
                tracing::trace!(target: "switchyard::guest", tenant, call_id, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "switchyard::guest", tenant, call_id, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "switchyard::guest", tenant, call_id, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "switchyard::guest", tenant, call_id, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "switchyard::guest", tenant, call_id, "{message}")
            }
        }
        true
    }

    fn write(&self, stream: Stream, mut bytes: &[u8]) {
        let mut state = self.lock();
        if stream == Stream::Stderr {
            state.keep_stderr_tail(bytes);
        }
        while !bytes.is_empty() {
            let buf = state.buffer(stream);
            let room = MAX_LINE - buf.len();
            let (line_end, take) = match bytes.iter().position(|&b| b == b'\n') {
                Some(nl) if nl < room => (true, nl + 1),
                _ => (bytes.len() >= room, bytes.len().min(room)),
            };
            buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if line_end {
                let line = std::mem::take(state.buffer(stream));
                self.emit(&mut state, stream, &line);
            }
        }
    }

    /// Emits what is left in the line buffers and a note about dropped
    /// output. Called once, after the guest returned or failed.
    pub(crate) fn finish(&self) {
        let mut state = self.lock();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(state.buffer(stream));
            if !rest.is_empty() {
                self.emit(&mut state, stream, &rest);
            }
        }
        if state.dropped > 0 {
            tracing::warn!(
                target: "switchyard::guest",
                tenant = &*self.tenant,
                call_id = self.call_id.as_str(),
                dropped_bytes = state.dropped,
                "guest output over budget was dropped"
            );
        }
    }

    /// The guest's panic message, if its stderr holds one (Rust prints
    /// `panicked at file:line:col:\nmessage` before aborting).
    pub(crate) fn panic_message(&self) -> Option<String> {
        let state = self.lock();
        let tail = &state.stderr_tail;
        let at = tail.rfind("panicked at ")?;
        let text: Vec<&str> = tail[at..]
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note:"))
            .collect();
        Some(text.join(" ").trim_end_matches(':').to_owned())
    }

    fn emit(&self, state: &mut OutputState, stream: Stream, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\n', '\r']);
        if !state.spend(line.len()) {
            return;
        }
        let (tenant, call_id, stream) = (&*self.tenant, self.call_id.as_str(), stream.name());
        tracing::info!(target: "switchyard::guest", tenant, call_id, stream, "{line}");
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutputState> {
        // A poisoned lock only means a tracing subscriber panicked while we
        // held it; the buffers are still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl OutputState {
    fn buffer(&mut self, stream: Stream) -> &mut Vec<u8> {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    fn spend(&mut self, len: usize) -> bool {
        if len > self.budget {
            self.budget = 0;
            self.dropped += len;
            false
        } else {
            self.budget -= len;
            true
        }
    }

    fn keep_stderr_tail(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(STDERR_TAIL)..];
        self.stderr_tail.push_str(&String::from_utf8_lossy(bytes));
        if self.stderr_tail.len() > STDERR_TAIL {
            let mut cut = self.stderr_tail.len() - STDERR_TAIL;
            while !self.stderr_tail.is_char_boundary(cut) {
                cut += 1;
            }
            self.stderr_tail.drain(..cut);
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One of the guest's standard output streams.
#[derive(Clone)]
pub(crate) struct GuestPipe {
    output: Arc<GuestOutput>,
    stream: Stream,
}

impl IsTerminal for GuestPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// How much a guest may write per call; the pipe never blocks.
const WRITE_PERMIT: usize = 64 * 1024;

#[async_trait]
impl OutputStream for GuestPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.output.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[async_trait]
impl Pollable for GuestPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output.write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(budget: usize) -> Arc<GuestOutput> {
        Arc::new(GuestOutput::new("acme".into(), "call-1".into(), budget))
    }

    #[test]
    fn a_rust_panic_on_stderr_becomes_a_one_line_message() {
        let out = output(1024);
        let mut err = out.pipe(Stream::Stderr);
        OutputStream::write(
            &mut err,
            Bytes::from_static(
                b"\nthread '<unnamed>' panicked at src/lib.rs:9:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n",
            ),
        )
        .unwrap();
        assert_eq!(
            out.panic_message().as_deref(),
            Some("panicked at src/lib.rs:9:5: boom")
        );
    }

    #[test]
    fn output_past_the_budget_is_dropped_and_counted() {
        let out = output(10);
        let mut pipe = out.pipe(Stream::Stdout);
        OutputStream::write(&mut pipe, Bytes::from_static(b"12345\n67890123\npartial")).unwrap();
        out.finish();
        let state = out.lock();
        assert_eq!(state.budget, 0);
        assert_eq!(state.dropped, 8 + 7);
        assert!(state.stdout.is_empty());
    }

    #[test]
    fn long_lines_are_split_not_buffered_without_bound() {
        let out = output(usize::MAX);
        let mut pipe = out.pipe(Stream::Stdout);
        let long = vec![b'x'; MAX_LINE * 3 + 10];
        OutputStream::write(&mut pipe, Bytes::from(long)).unwrap();
        assert_eq!(out.lock().stdout.len(), 10);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("hello", 10), "hello");
    }
}
