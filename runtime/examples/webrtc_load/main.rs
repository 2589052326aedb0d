//! WebRTC load on `switchyard serve`: N concurrent browser-like sessions
//! (str0m clients, DTLS-SRTP) calling through the clients' gateway, each
//! bridged to a SIP/RTP leg of the runtime that plays a prompt; measured
//! for D seconds like `media_load` measures plain RTP calls.
//!
//! ```text
//! cargo run --release -p switchyard --example webrtc_load -- --http 127.0.0.1:8080 \
//!     --account bench --key-id KEY --secret SECRET --handler guest_prompt \
//!     --sessions 500 --rate 100 --duration 10
//! ```
//!
//! 1. setup, at `--rate` sessions/s: a WebSocket to `/v1/client`, a token
//!    signed here with the account's key (as a tenant's server would; one
//!    identity per session: an identity has at most 20 devices), register,
//!    an offer from a str0m client on its own UDP socket, `invite`, and the
//!    runtime's `media` answer. The sockets stay open, unread.
//! 2. every session's ICE and DTLS run at once; `--settle` seconds later
//!    the window of `--duration` seconds starts: each audio frame the
//!    runtime sends goes to `measure::Stream` (arrival = when the datagram
//!    was read, RTP sequence and timestamp after SRTP), while every session
//!    sends G.711 silence at 50 frames/s. With `--server-pid` the server's
//!    CPU over the window and its RSS are reported.
//! 3. the process exits: the runtime sees the WebSockets close and hangs
//!    the calls up.
//!
//! Output: one JSON line on stdout. Only 127.0.0.1; every phase bounded.

#[path = "../media_load/measure.rs"]
mod measure;

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use measure::{Header, Stream, cpu_seconds, rss_kb};
use serde_json::{Value, json};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use switchyard::tokens::{Grants, Outgoing, mint, unix_now};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

#[derive(Parser, Debug)]
#[command(about = "Concurrent WebRTC sessions against switchyard serve; one JSON line out")]
struct Args {
    /// The server's HTTP address (127.0.0.1 only).
    #[arg(long)]
    http: SocketAddr,
    #[arg(long)]
    account: String,
    /// An API key of the account (id and secret) to sign tokens with.
    #[arg(long)]
    key_id: String,
    #[arg(long)]
    secret: String,
    /// The handler each session's call goes to (the token's grant).
    #[arg(long)]
    handler: String,
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Sessions set up per second.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    #[arg(long, default_value_t = 3)]
    settle: u64,
    #[arg(long, default_value_t = 10)]
    duration: u64,
    #[arg(long)]
    server_pid: Option<u32>,
    /// Offer only Opus (the server transcodes it to and from G.711).
    #[arg(long)]
    opus: bool,
}

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// One session: its signalling socket (kept open) and its client.
struct Session {
    _signalling: Socket,
    rtc: Rtc,
    mid: Mid,
    socket: UdpSocket,
    /// Offered only Opus.
    opus: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.http.ip().is_loopback() {
        eprintln!("webrtc_load: --http must be on 127.0.0.1");
        return ExitCode::FAILURE;
    }
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(args.sessions);
    let mut failures: Vec<String> = Vec::new();
    let gap = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    for i in 0..args.sessions {
        let due = started + gap * i as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        match setup(&args, i) {
            Ok(session) => sessions.push(session),
            Err(e) => failures.push(e),
        }
        if failures.len() > 10 {
            break;
        }
    }
    let setup_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "webrtc_load: {} sessions set up in {setup_secs:.1} s, {} failed",
        sessions.len(),
        failures.len()
    );
    let window_start = Instant::now() + Duration::from_secs(args.settle);
    let window_end = window_start + Duration::from_secs(args.duration);
    let cpu = || args.server_pid.and_then(cpu_seconds);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (cpu_used, results) = runtime.block_on(async {
        let tasks: Vec<_> = (sessions.into_iter())
            .map(|s| tokio::spawn(drive(s, window_start, window_end)))
            .collect();
        tokio::time::sleep_until(window_start.into()).await;
        let before = cpu();
        tokio::time::sleep_until(window_end.into()).await;
        let used = cpu().zip(before).map(|(after, before)| after - before);
        let mut results = Vec::new();
        for task in tasks {
            if let Ok(result) = task.await {
                results.push(result);
            }
        }
        (used, results)
    });

    let connected = results.iter().filter(|r| r.connected).count();
    let streams: Vec<Stream> = results.iter().map(|r| r.stream.clone()).collect();
    let mut deviations: Vec<u32> = results.into_iter().flat_map(|r| r.deviations).collect();
    let end_ns = ns(window_start, window_end);
    let summary = measure::summarize(&streams, &mut deviations, end_ns);
    let silent = streams.iter().filter(|s| s.received == 0).count();
    let window = args.duration as f64;
    let connected = connected.min(streams.len());
    // The keys media_load uses, so one script reads both.
    let out = json!({
        "calls_requested": args.sessions,
        "calls_up": streams.len(),
        "connected": connected,
        "failed": failures.len(),
        "first_failure": failures.first(),
        "setup_s": setup_secs,
        "measure_s": window,
        "packets_received": summary.packets,
        "lost_packets": summary.lost,
        "streams_with_loss": summary.streams_with_loss,
        "streams_without_rtp": silent,
        "streams_stalled": summary.stalled,
        "jitter_p50_ms": summary.jitter_p50_ms,
        "jitter_p99_ms": summary.jitter_p99_ms,
        "jitter_max_ms": summary.jitter_max_ms,
        "server_cpu_s": cpu_used,
        "server_rss_kb": args.server_pid.and_then(rss_kb),
    });
    println!("{out}");
    ExitCode::SUCCESS
}

/// Registers session `i` and places its call; the runtime's answer is
/// applied to the client.
fn setup(args: &Args, i: usize) -> Result<Session, String> {
    let grants = Grants {
        identity: format!("load{i}"),
        incoming: false,
        outgoing: Some(Outgoing {
            handler: args.handler.clone(),
            params: Default::default(),
        }),
    };
    let token = mint(
        &args.key_id,
        &args.account,
        &args.secret,
        grants,
        unix_now(),
        3600,
    )
    .map_err(|e| format!("minting a token: {e}"))?;
    let url = format!("ws://{}/v1/client", args.http);
    let (mut ws, _) = tungstenite::connect(url.as_str()).map_err(|e| format!("WebSocket: {e}"))?;
    if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    }
    expect(
        &mut ws,
        json!({"type": "register", "token": token}),
        "registered",
    )?;

    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket.set_nonblocking(true).map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let opus = args.opus;
    let mut rtc = RtcConfig::new()
        .clear_codecs()
        .enable_pcmu(!opus)
        .enable_opus(opus)
        .build(Instant::now());
    let candidate = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
    rtc.add_local_candidate(candidate);
    let mut change = rtc.sdp_api();
    let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = change.apply().ok_or("no offer")?;
    let invite =
        json!({"type": "invite", "call": "c1", "to": "load", "sdp": offer.to_sdp_string()});
    let media = expect(&mut ws, invite, "media")?;
    let answer = SdpAnswer::from_sdp_string(media["sdp"].as_str().unwrap_or_default())
        .map_err(|e| format!("the runtime's answer: {e}"))?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| e.to_string())?;
    Ok(Session {
        _signalling: ws,
        rtc,
        mid,
        socket,
        opus,
    })
}

/// Sends `message` and reads until a message of type `kind` (an error
/// fails the session).
fn expect(ws: &mut Socket, message: Value, kind: &str) -> Result<Value, String> {
    ws.send(Message::text(message.to_string()))
        .map_err(|e| e.to_string())?;
    loop {
        let frame = ws.read().map_err(|e| format!("waiting for {kind}: {e}"))?;
        let Message::Text(text) = frame else { continue };
        let got: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if got["type"] == kind {
            return Ok(got);
        }
        if got["type"] == "error" || got["type"] == "ended" {
            return Err(format!("waiting for {kind}: {got}"));
        }
    }
}

struct Outcome {
    connected: bool,
    stream: Stream,
    deviations: Vec<u32>,
}

const FRAME: Duration = Duration::from_millis(20);

/// Runs one client until `end`: its datagrams, timers, and a silent
/// frame every 20 ms once connected; frames heard in the window counted.
async fn drive(session: Session, start: Instant, end: Instant) -> Outcome {
    let Session {
        mut rtc,
        mid,
        socket,
        opus,
        ..
    } = session;
    let socket = match tokio::net::UdpSocket::from_std(socket) {
        Ok(socket) => socket,
        Err(_) => {
            return Outcome {
                connected: false,
                stream: Stream::default(),
                deviations: Vec::new(),
            };
        }
    };
    let local = socket.local_addr().ok();
    let mut outcome = Outcome {
        connected: false,
        stream: Stream::default(),
        deviations: Vec::new(),
    };
    // 20 ms of silence in the offered codec, and its RTP clock step.
    let (codec, silence, step, rate) = if opus {
        let frame = switchyard_webrtc::opus::Transcoder::new()
            .and_then(|mut t| t.encode(&[0xff; 160]))
            .unwrap_or_default();
        (Codec::Opus, frame, 960, Frequency::FORTY_EIGHT_KHZ)
    } else {
        (Codec::PCMU, vec![0xff; 160], 160, Frequency::EIGHT_KHZ)
    };
    let mut sent: u64 = 0;
    let mut next_send = Instant::now();
    let mut buf = vec![0u8; 2048];
    loop {
        let wake = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(at)) => break at,
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(Event::Connected)) => outcome.connected = true,
                Ok(Output::Event(Event::MediaData(data))) => {
                    let at = data.network_time;
                    if at >= start && at < end {
                        let header = Header {
                            pt: 0,
                            marker: false,
                            seq: data.seq_range.start().as_u16(),
                            ts: data.time.rebase(Frequency::EIGHT_KHZ).numer() as u32,
                            ssrc: 0,
                        };
                        (outcome.stream).packet(&header, ns(start, at), &mut outcome.deviations);
                    }
                }
                Ok(Output::Event(_)) => {}
                Err(_) => return outcome,
            }
        };
        let now = Instant::now();
        if now >= end {
            return outcome;
        }
        let wake = wake
            .min(end)
            .min(if outcome.connected { next_send } else { end });
        tokio::select! {
            got = socket.recv_from(&mut buf) => {
                if let (Ok((len, source)), Some(local)) = (got, local)
                    && let Ok(contents) = buf[..len].try_into()
                {
                    let receive = Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: local,
                        contents,
                    };
                    let _ = rtc.handle_input(Input::Receive(Instant::now(), receive));
                }
            }
            () = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                if outcome.connected && now >= next_send {
                    let offered = |w: &str0m::media::Writer<'_>| {
                        let mut params = w.payload_params();
                        params.find(|p| p.spec().codec == codec).map(|p| p.pt())
                    };
                    if let Some(writer) = rtc.writer(mid)
                        && let Some(pt) = offered(&writer)
                    {
                        let time = MediaTime::new(sent * step, rate);
                        let _ = writer.write(pt, now, time, silence.to_vec());
                        sent += 1;
                    }
                    next_send += FRAME;
                    if next_send < now {
                        next_send = now + FRAME;
                    }
                }
                let _ = rtc.handle_input(Input::Timeout(now));
            }
        }
    }
}

/// `at` in ns after `start` (negative before it).
fn ns(start: Instant, at: Instant) -> i64 {
    match at.checked_duration_since(start) {
        Some(after) => after.as_nanos() as i64,
        None => -(start.duration_since(at).as_nanos() as i64),
    }
}
