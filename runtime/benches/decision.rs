//! `decision`: one incoming-call event through the IVR logic, three ways,
//! side by side in one run:
//!
//! * native — the same logic compiled into the host (the floor);
//! * wasm — the IVR guest: fresh instance + `handle` + plan lowering;
//! * webhook — the plan fetched as JSON from a hyper server on loopback
//!   over one kept-alive HTTP/1.1 connection (the best case any webhook
//!   platform can have: no TLS, no DNS, no network).
//!
//! Criterion measures the means; then each way is sampled one call at a
//! time to print p50/p99, and the ratios. Run:
//! `bash scripts/build-guests && cargo bench -p switchyard --bench decision`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use switchyard::contract::*;
use switchyard::guest::{CallHandler, CallVars, InvokeRequest};
use switchyard::wasm::TenantScope;

mod common;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const MENU: &str = "Press 1 for sales, 2 for support, 3 to leave a message";
/// Samples per way for the percentiles.
const SAMPLES: usize = 20_000;

/// The IVR guest's answer to `incoming`, written in Rust.
fn native_ivr(request: &InvokeRequest) -> Plan {
    match &request.event {
        Event::Incoming(call) => {
            tracing::info!(from = %call.from, to = %call.to, "incoming");
            Plan {
                verbs: vec![
                    Verb::Say(Say::text("Welcome to Switchyard")),
                    Verb::Gather(Gather {
                        input: GatherInput::Dtmf,
                        num_digits: Some(1),
                        finish_on_key: Some('#'),
                        timeout_secs: 5,
                        prompts: vec![Prompt::Say(Say::text(MENU))],
                    }),
                ],
            }
        }
        _ => Plan {
            verbs: vec![Verb::Hangup],
        },
    }
}

fn incoming(sequence: u32) -> InvokeRequest {
    InvokeRequest {
        ctx: Context {
            call_id: format!("bench-{sequence}"),
            tenant: "bench".into(),
            sequence: 0,
            handler: "ivr".into(),
        },
        event: Event::Incoming(IncomingCall::inbound(
            "+14155550100",
            "+18005550199",
            "local",
        )),
        vars: CallVars::new(),
    }
}

/// A webhook server on loopback answering every POST with the IVR plan.
async fn webhook_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let body = req.into_body().collect().await?.to_bytes();
                    let request: InvokeRequest =
                        serde_json::from_slice(&body).expect("valid request JSON");
                    let plan = serde_json::to_vec(&native_ivr(&request)).expect("plan serialises");
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(plan))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

struct Webhook {
    sender: SendRequest<Full<Bytes>>,
}

impl Webhook {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect loopback");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Self { sender }
    }

    async fn decide(&mut self, request: &InvokeRequest) -> Plan {
        let body = serde_json::to_vec(request).expect("request serialises");
        let req = Request::post("/decide")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let response = self
            .sender
            .send_request(req)
            .await
            .expect("webhook answered");
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        serde_json::from_slice(&body).expect("plan JSON")
    }
}

struct Ways {
    runtime: Runtime,
    wasm: Arc<dyn CallHandler>,
    webhook: tokio::sync::Mutex<Webhook>,
    _server: Runtime,
}

fn ways() -> Ways {
    let (host, bytes, cache) = common::host_and_guest("ivr");
    let component = host.load(&bytes).expect("ivr loads");
    let wasm: Arc<dyn CallHandler> = Arc::new(
        host.handler(&component, TenantScope::new("bench"))
            .expect("tenant limits fit"),
    );
    // The server runs on its own thread, as a webhook runs in its own process.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = server.block_on(webhook_server());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let webhook = runtime.block_on(Webhook::connect(addr));
    std::mem::forget(cache);
    Ways {
        runtime,
        wasm,
        webhook: tokio::sync::Mutex::new(webhook),
        _server: server,
    }
}

impl Ways {
    fn native(&self, request: &InvokeRequest) -> Plan {
        std::hint::black_box(native_ivr(std::hint::black_box(request)))
    }

    fn wasm(&self, request: &InvokeRequest) -> Plan {
        let invocation = self.runtime.block_on(self.wasm.invoke(request.clone()));
        invocation.outcome.expect("ivr decides")
    }

    fn webhook(&self, request: &InvokeRequest) -> Plan {
        self.runtime
            .block_on(async { self.webhook.lock().await.decide(request).await })
    }
}

fn decision(c: &mut Criterion) {
    let ways = ways();
    let request = incoming(0);
    // All three must give the same answer, or the comparison means nothing.
    let expected = ways.native(&request);
    assert_eq!(
        ways.wasm(&request),
        expected,
        "wasm plan differs from native"
    );
    assert_eq!(
        ways.webhook(&request),
        expected,
        "webhook plan differs from native"
    );

    let mut group = c.benchmark_group("decision");
    group.bench_function("native", |b| b.iter(|| ways.native(&request)));
    group.bench_function("wasm", |b| b.iter(|| ways.wasm(&request)));
    group.bench_function("webhook", |b| b.iter(|| ways.webhook(&request)));
    group.finish();

    // `cargo test --all-targets` runs benches once as a smoke test; the
    // percentile sampling is for real runs only.
    if std::env::args().any(|arg| arg == "--bench") {
        percentiles(&ways, &request);
    }
}

/// p50/p99 of single calls. The ways take turns in blocks of `BLOCK`
/// calls, so machine noise hits all three alike while each block runs in
/// the steady state a busy runtime has (warm caches, no thread wake-ups
/// left over from the other way).
fn percentiles(ways: &Ways, request: &InvokeRequest) {
    const BLOCK: usize = 1_000;
    let mut samples: [Vec<Duration>; 3] = Default::default();
    let runs: [&dyn Fn() -> Plan; 3] = [&|| ways.native(request), &|| ways.wasm(request), &|| {
        ways.webhook(request)
    }];
    for _ in 0..SAMPLES / BLOCK {
        for (way, run) in runs.iter().enumerate() {
            for _ in 0..BLOCK {
                let start = Instant::now();
                std::hint::black_box(run());
                samples[way].push(start.elapsed());
            }
        }
    }
    const PER_MILLE: [usize; 4] = [500, 900, 990, 999];
    let stats: Vec<[f64; 4]> = samples
        .iter_mut()
        .map(|s| {
            s.sort();
            PER_MILLE.map(|p| s[s.len() * p / 1000].as_nanos() as f64 / 1000.0)
        })
        .collect();
    println!("\ndecision latency, {SAMPLES} samples per way, in alternating blocks of {BLOCK}");
    println!("| way | p50 µs | p90 µs | p99 µs | p99.9 µs |");
    println!("|---|---:|---:|---:|---:|");
    for (name, q) in ["native", "wasm", "webhook"].iter().zip(&stats) {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
            q[0], q[1], q[2], q[3]
        );
    }
    let (native, wasm, webhook) = (stats[0], stats[1], stats[2]);
    println!(
        "webhook/wasm: p50 {:.1}×, p99 {:.1}×; wasm/native: p50 {:.0}×, p99 {:.0}×",
        webhook[0] / wasm[0],
        webhook[2] / wasm[2],
        wasm[0] / native[0],
        wasm[2] / native[2],
    );
}

criterion_group!(benches, decision);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
