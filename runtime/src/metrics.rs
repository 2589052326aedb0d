//! Capacity analysis as Prometheus metrics (C7), served at `GET /metrics`.
//!
//! Two kinds of figures: what happens (guest invocations and their
//! latency, counted as they come back to the core task) and what is
//! (calls by state, media streams and packets, the prompt cache, the
//! process's CPU and memory), read when the metrics are scraped, so
//! nothing on a call's path pays for a gauge.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::callbacks::CallbackStats;
use crate::guest::{GuestFailure, Invocation};
use crate::media::cache::CacheStats;
use crate::media::engine::EngineStats;
use crate::sip::endpoint::AdmissionStats;

type Labels = Vec<(&'static str, &'static str)>;
/// Labels whose value is only known at run time (a tenant id).
type OwnedLabels = Vec<(&'static str, String)>;

/// What is read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Calls not answered yet (ringing, deciding, dialling early).
    pub calls_early: u64,
    pub calls_answered: u64,
    /// Admission: refusals by reason, waits, queue depth by tenant.
    pub admission: AdmissionStats,
    pub media: EngineStats,
    pub cache: CacheStats,
    pub callbacks: CallbackStats,
}

pub struct Metrics {
    registry: Registry,
    calls: Family<Labels, Gauge>,
    refused: Family<Labels, Counter>,
    waiting: Family<OwnedLabels, Gauge>,
    admitted_after_wait: Counter,
    invocations: Family<Labels, Counter>,
    guest_seconds: Histogram,
    streams: Gauge,
    client_streams: Gauge,
    packets: Family<Labels, Counter>,
    late_ticks: Counter,
    workers: Family<Labels, Gauge>,
    worker_busy: Family<OwnedLabels, Gauge<f64, AtomicU64>>,
    cache_entries: Gauge,
    cache_bytes: Gauge,
    cache_requests: Family<Labels, Counter>,
    cpu_seconds: Counter<f64>,
    rss_bytes: Gauge,
    callbacks: Family<Labels, Counter>,
    /// Serialises scrapes: counters are brought up to the snapshot's totals.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        let calls = Family::<Labels, Gauge>::default();
        registry.register("calls", "Calls in progress, by state", calls.clone());
        let refused = Family::<Labels, Counter>::default();
        registry.register(
            "admission_refused_calls",
            "New calls refused with 503 + Retry-After, by reason: full (at a call limit, queue full), \
             rate (at a call-rate limit, queue full), timeout (waited queue_wait_ms)",
            refused.clone(),
        );
        let waiting = Family::<OwnedLabels, Gauge>::default();
        registry.register(
            "admission_queue_depth",
            "New calls waiting for admission, by tenant",
            waiting.clone(),
        );
        let admitted_after_wait = Counter::default();
        registry.register(
            "admission_admitted_after_wait_calls",
            "New calls admitted after waiting in their tenant's queue",
            admitted_after_wait.clone(),
        );
        let invocations = Family::<Labels, Counter>::default();
        registry.register(
            "guest_invocations",
            "Guest invocations, by outcome (ok, handler_error, trap, deadline, memory_cap, other)",
            invocations.clone(),
        );
        // 10 µs .. ~230 ms in steps of √2: a per-event instance costs tens
        // of µs, and a p50/p99 read from the buckets is within 41 % of true.
        let guest_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(10e-6, 2f64.sqrt(), 30),
        );
        registry.register(
            "guest_invocation_seconds",
            "Wall time of a guest invocation, instantiation included",
            guest_seconds.clone(),
        );
        let streams = Gauge::default();
        registry.register("media_streams", "Open RTP streams", streams.clone());
        let client_streams = Gauge::default();
        registry.register(
            "media_client_streams",
            "Open streams whose far end is a WebRTC client, driven by the media worker",
            client_streams.clone(),
        );
        let packets = Family::<Labels, Counter>::default();
        registry.register(
            "media_packets",
            "RTP packets, by direction (sent, received, send_error)",
            packets.clone(),
        );
        let late_ticks = Counter::default();
        registry.register(
            "media_late_ticks",
            "Media worker slots that started more than 1 ms late (the pacing is falling behind)",
            late_ticks.clone(),
        );
        let workers = Family::<Labels, Gauge>::default();
        registry.register(
            "media_workers",
            "Media worker threads, by state (active; retiring: no new calls, ends when empty)",
            workers.clone(),
        );
        let worker_busy = Family::<OwnedLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "media_worker_busy_ratio",
            "Fraction of the last second a media worker spent handling rather than sleeping",
            worker_busy.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register(
            "media_cache_entries",
            "Prompts stored in the media cache",
            cache_entries.clone(),
        );
        let cache_bytes = Gauge::default();
        registry.register(
            "media_cache_bytes",
            "Bytes of the stored prompts",
            cache_bytes.clone(),
        );
        let cache_requests = Family::<Labels, Counter>::default();
        registry.register(
            "media_cache_requests",
            "Prompt requests, by result (hit, miss) and work done (synthesis, fetch, eviction)",
            cache_requests.clone(),
        );
        let cpu_seconds = Counter::<f64>::default();
        registry.register(
            "process_cpu_seconds",
            "CPU time of the process (user + system)",
            cpu_seconds.clone(),
        );
        let callbacks = Family::<Labels, Counter>::default();
        registry.register(
            "status_callbacks",
            "Status callback events, by result: delivered (2xx), retried (attempts made again), \
             failed (given up), dropped (the queue was full)",
            callbacks.clone(),
        );
        let rss_bytes = Gauge::default();
        registry.register(
            "process_resident_bytes",
            "Resident memory of the process",
            rss_bytes.clone(),
        );
        Self {
            registry,
            calls,
            refused,
            waiting,
            admitted_after_wait,
            invocations,
            guest_seconds,
            streams,
            client_streams,
            packets,
            late_ticks,
            workers,
            worker_busy,
            cache_entries,
            cache_bytes,
            cache_requests,
            cpu_seconds,
            rss_bytes,
            callbacks,
            scrape: Mutex::new(()),
        }
    }

    /// Counts a guest invocation that came back.
    pub fn observe(&self, invocation: &Invocation) {
        let outcome = match &invocation.outcome {
            Ok(_) => "ok",
            Err(GuestFailure::Handler(_)) => "handler_error",
            Err(GuestFailure::Trap(_)) => "trap",
            Err(GuestFailure::Deadline { .. }) => "deadline",
            Err(GuestFailure::MemoryCap { .. }) => "memory_cap",
            Err(_) => "other",
        };
        self.invocations
            .get_or_create(&vec![("outcome", outcome)])
            .inc();
        self.guest_seconds.observe(invocation.elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition, with `snapshot` and the process's
    /// own figures.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        let state = |s: &'static str| vec![("state", s)];
        self.calls
            .get_or_create(&state("early"))
            .set(snapshot.calls_early as i64);
        self.calls
            .get_or_create(&state("answered"))
            .set(snapshot.calls_answered as i64);
        let a = &snapshot.admission;
        let refusals = [
            ("full", a.refused_full),
            ("rate", a.refused_rate),
            ("timeout", a.refused_timeout),
        ];
        for (reason, total) in refusals {
            catch_up(
                &self.refused.get_or_create(&vec![("reason", reason)]),
                total,
            );
        }
        catch_up(&self.admitted_after_wait, a.admitted_after_wait);
        for (tenant, depth) in &a.waiting {
            self.waiting
                .get_or_create(&vec![("tenant", tenant.clone())])
                .set(*depth as i64);
        }
        let m = &snapshot.media;
        self.streams.set(m.streams as i64);
        self.client_streams.set(m.clients as i64);
        let packets = [
            ("sent", m.packets_sent),
            ("received", m.packets_received),
            ("send_error", m.send_errors),
        ];
        for (direction, total) in packets {
            catch_up(
                &self.packets.get_or_create(&vec![("direction", direction)]),
                total,
            );
        }
        catch_up(&self.late_ticks, m.late_ticks);
        let workers = [
            ("active", m.active_workers()),
            ("retiring", m.retiring_workers()),
        ];
        for (state, n) in workers {
            self.workers
                .get_or_create(&vec![("state", state)])
                .set(n as i64);
        }
        // Stopped workers' series go.
        self.worker_busy.clear();
        for w in &m.workers {
            self.worker_busy
                .get_or_create(&vec![("worker", w.id.to_string())])
                .set(w.busy);
        }
        let c = &snapshot.cache;
        self.cache_entries.set(c.entries as i64);
        self.cache_bytes.set(c.bytes as i64);
        let requests = [
            ("hit", c.hits),
            ("miss", c.misses),
            ("synthesis", c.syntheses),
            ("fetch", c.fetches),
            ("eviction", c.evictions),
        ];
        for (result, total) in requests {
            catch_up(
                &self.cache_requests.get_or_create(&vec![("result", result)]),
                total,
            );
        }
        let cb = &snapshot.callbacks;
        let callbacks = [
            ("delivered", cb.delivered),
            ("retried", cb.retried),
            ("failed", cb.failed),
            ("dropped", cb.dropped),
        ];
        for (result, total) in callbacks {
            catch_up(
                &self.callbacks.get_or_create(&vec![("result", result)]),
                total,
            );
        }
        if let Some(process) = Process::read() {
            let seen = self.cpu_seconds.get();
            if process.cpu_seconds > seen {
                self.cpu_seconds.inc_by(process.cpu_seconds - seen);
            }
            self.rss_bytes.set(process.rss_bytes as i64);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Brings a counter up to a total kept elsewhere (it never goes down).
fn catch_up(counter: &Counter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

/// CPU and memory of this process, from /proc (Linux).
struct Process {
    cpu_seconds: f64,
    rss_bytes: u64,
}

impl Process {
    fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which may hold spaces: ") S ppid ...".
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        // SAFETY: sysconf only reads a constant of the C library.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(Process {
            cpu_seconds: (utime + stime) / ticks.max(1.0),
            rss_bytes: rss_kib * 1024,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::contract::Plan;
    use crate::guest::CallVars;

    fn invocation(outcome: Result<Plan, GuestFailure>, micros: u64) -> Invocation {
        Invocation {
            outcome,
            vars: CallVars::default(),
            imports: Vec::new(),
            elapsed: Duration::from_micros(micros),
        }
    }

    #[test]
    fn scrapes_carry_calls_guests_media_cache_and_process() {
        let metrics = Metrics::new();
        metrics.observe(&invocation(Ok(Plan { verbs: vec![] }), 40));
        metrics.observe(&invocation(Err(GuestFailure::Trap("boom".into())), 900));
        let mut snapshot = Snapshot {
            calls_early: 2,
            calls_answered: 5,
            admission: AdmissionStats {
                refused_full: 4,
                refused_timeout: 1,
                admitted_after_wait: 7,
                waiting: vec![("acme".into(), 3)],
                ..AdmissionStats::default()
            },
            ..Snapshot::default()
        };
        snapshot.media.streams = 5;
        snapshot.media.packets_sent = 1_000;
        snapshot.cache.syntheses = 3;
        snapshot.callbacks.retried = 2;
        let text = metrics.render(&snapshot);
        for line in [
            "switchyard_calls{state=\"early\"} 2",
            "switchyard_calls{state=\"answered\"} 5",
            "switchyard_admission_refused_calls_total{reason=\"full\"} 4",
            "switchyard_admission_refused_calls_total{reason=\"rate\"} 0",
            "switchyard_admission_refused_calls_total{reason=\"timeout\"} 1",
            "switchyard_admission_admitted_after_wait_calls_total 7",
            "switchyard_admission_queue_depth{tenant=\"acme\"} 3",
            "switchyard_guest_invocations_total{outcome=\"ok\"} 1",
            "switchyard_guest_invocations_total{outcome=\"trap\"} 1",
            "switchyard_guest_invocation_seconds_count 2",
            "switchyard_media_streams 5",
            "switchyard_media_packets_total{direction=\"sent\"} 1000",
            "switchyard_media_cache_requests_total{result=\"synthesis\"} 3",
            "switchyard_status_callbacks_total{result=\"retried\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(
            text.contains("switchyard_process_cpu_seconds_total"),
            "{text}"
        );
        // Totals only grow: a later scrape with more packets adds the difference.
        snapshot.media.packets_sent = 1_500;
        let text = metrics.render(&snapshot);
        assert!(
            text.contains("switchyard_media_packets_total{direction=\"sent\"} 1500"),
            "{text}"
        );
    }

    #[test]
    fn scrapes_carry_the_media_workers_and_their_busy_time() {
        use crate::media::engine::WorkerStats;
        let metrics = Metrics::new();
        let worker = |id, retiring, busy| WorkerStats {
            id,
            retiring,
            streams: 0,
            busy,
        };
        let mut snapshot = Snapshot::default();
        snapshot.media.workers = vec![worker(0, false, 0.25), worker(3, true, 0.5)];
        let text = metrics.render(&snapshot);
        for line in [
            "switchyard_media_workers{state=\"active\"} 1",
            "switchyard_media_workers{state=\"retiring\"} 1",
            "switchyard_media_worker_busy_ratio{worker=\"0\"} 0.25",
            "switchyard_media_worker_busy_ratio{worker=\"3\"} 0.5",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        snapshot.media.workers.pop();
        let text = metrics.render(&snapshot);
        assert!(
            !text.contains("worker=\"3\""),
            "a stopped worker's series goes"
        );
        assert!(text.contains("switchyard_media_workers{state=\"retiring\"} 0"));
    }
}
