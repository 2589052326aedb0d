//! Media load on `switchyard serve`: N concurrent calls, each one RTP
//! stream from the server (a prompt) and one to it, measured for D seconds.
//!
//! ```text
//! cargo run --release -p switchyard --example media_load -- \
//!     --server 127.0.0.1:5060 --number +15550123 --calls 500 --rate 200 --duration 10
//! ```
//!
//! 1. setup: INVITEs at `--rate` calls/s over one SIP UDP socket
//!    (retransmitted from T1 until a response; 2xx ACKed, others ACKed and
//!    counted as failed). Every offer names the same local RTP port: one
//!    socket receives every stream, told apart by the server's source
//!    address (its answer's c=/m= address).
//! 2. `--settle` seconds, then the window of `--duration` seconds: every
//!    packet of every stream is timestamped by the kernel (SO_TIMESTAMPNS,
//!    read with recvmmsg) and goes to `measure::Stream`: jitter as
//!    |interval − RTP timestamp step| (= |interval − 20 ms|), loss from
//!    sequence gaps, stalled streams. Meanwhile (unless `--no-send`) G.711
//!    silence (or `--tone-hz`) goes to every stream at 50 packets/s, spread
//!    over 1 ms slots, with sendmmsg. With `--server-pid` the server's CPU
//!    time (utime + stime of /proc/PID/stat) over the window and its RSS
//!    at the window's end are reported.
//! 3. teardown: BYE every call (at twice the rate), wait for the answers.
//!
//! Output: one JSON line on stdout (progress and warnings on stderr). A
//! server without a media engine answers with port 9 (discard) and sends
//! nothing: `streams_without_rtp` says how many streams were silent and
//! `note` says so in words. Every phase is bounded; only 127.0.0.1.

mod measure;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::ErrorKind;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use measure::{Header, Stream, cpu_seconds, rss_kb};
use rsip::headers::UntypedHeader;
use rsip::{Header as SipHeader, Method, SipMessage};
use switchyard::media::g711::Law;
use switchyard::media::tone::sine;
use switchyard::sip::message::{self, Inbound, Limits};
use switchyard::sip::sdp::{self, Codec};

#[derive(Parser, Debug)]
#[command(
    about = "Concurrent calls with RTP both ways against switchyard serve; one JSON line out"
)]
struct Args {
    /// The server's SIP UDP address (127.0.0.1 only).
    #[arg(long)]
    server: SocketAddr,
    /// The number called: bound to a guest that plays a prompt.
    #[arg(long, default_value = "+15550123")]
    number: String,
    /// Concurrent calls.
    #[arg(long, default_value_t = 100)]
    calls: usize,
    /// New calls per second during setup.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Seconds measured once the calls are up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds between the end of setup and the window.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Send no RTP to the server.
    #[arg(long)]
    no_send: bool,
    /// The codec offered: pcmu or pcma (with telephone-event 101).
    #[arg(long, default_value = "pcmu")]
    codec: String,
    /// Send a tone at this frequency instead of silence.
    #[arg(long)]
    tone_hz: Option<f64>,
    /// The server's process id, for its CPU time over the window.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Every call joins conference NAME (`X-Conference`, without beeps:
    /// the number must be bound to `guest_player`).
    #[arg(long)]
    conference: Option<String>,
    /// With `--conference`: this many calls per conference (NAME-0,
    /// NAME-1, ...); 0 puts every call in one.
    #[arg(long, default_value_t = 0)]
    per_conference: usize,
    /// Seconds for setup at most (default: calls / rate + 30).
    #[arg(long)]
    setup_timeout: Option<f64>,
    /// Seconds for the BYEs and their answers at most.
    #[arg(long, default_value_t = 30.0)]
    teardown_timeout: f64,
}

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// Timers B and F (64 × T1).
const TRANSACTION: Duration = Duration::from_secs(32);
const SOCKET_BUFFER: i32 = 16 << 20;
/// The sender's clock: 20 slots of 1 ms, each stream in one of them.
const SLOT: Duration = Duration::from_millis(1);
const SLOTS: usize = 20;
const PACKET: usize = Header::LEN + 160;
const BATCH: usize = 64;

/// Phases of the RTP threads: 0 (warm-up, the default: what arrives is
/// read and forgotten), the window, its end.
const MEASURE: u8 = 1;
const DONE: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("media_load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    if !args.server.ip().is_loopback() {
        return Err(format!("{}: only 127.0.0.1 is allowed", args.server));
    }
    if args.calls == 0 || args.rate <= 0.0 || args.duration <= 0.0 {
        return Err("--calls, --rate and --duration must be positive".into());
    }
    let codec = match args.codec.as_str() {
        "pcmu" => Codec::PCMU,
        "pcma" => Codec::PCMA,
        other => return Err(format!("--codec {other}: pcmu or pcma")),
    };
    let bind = || UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"));
    let sip = bind()?;
    let rtp = bind()?;
    for socket in [&sip, &rtp] {
        buffers(socket);
    }
    set_int(&rtp, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
    set_int(&rtp, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1);
    rtp.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    sip.set_read_timeout(Some(Duration::from_millis(2)))
        .map_err(|e| e.to_string())?;
    let rtp_local = rtp.local_addr().map_err(|e| e.to_string())?;

    let shared = Arc::new(Shared::default());
    let receiver = {
        let (socket, shared) = (rtp.try_clone().map_err(|e| e.to_string())?, shared.clone());
        thread::Builder::new()
            .name("rtp-recv".into())
            .spawn(move || receive(&socket, &shared))
            .map_err(|e| e.to_string())?
    };
    let sender = if args.no_send {
        None
    } else {
        let law = Law::of(codec);
        let mut frame = [law.silence(); 160];
        if let Some(hz) = args.tone_hz {
            // Whole periods in 20 ms loop seamlessly (50 Hz multiples).
            law.encode(&sine(hz, 20, 0.3), &mut frame);
        }
        let (socket, shared) = (rtp.try_clone().map_err(|e| e.to_string())?, shared.clone());
        Some(
            thread::Builder::new()
                .name("rtp-send".into())
                .spawn(move || send(&socket, &shared, codec.pt, &frame))
                .map_err(|e| e.to_string())?,
        )
    };

    // 1. setup
    let mut load = Load::new(
        sip,
        args.server,
        &args.number,
        rtp_local,
        codec,
        shared.clone(),
    );
    load.conference = args.conference.clone();
    load.per_conference = args.per_conference;
    let started = Instant::now();
    let setup_limit = args
        .setup_timeout
        .unwrap_or(args.calls as f64 / args.rate + 30.0);
    load.setup(args.calls, args.rate, started + secs(setup_limit));
    let setup_s = started.elapsed().as_secs_f64();
    let up = load.count(|s| s == State::Up);
    eprintln!(
        "media_load: {up}/{} calls up in {setup_s:.1} s, {} failed",
        args.calls,
        load.failed().values().sum::<usize>()
    );
    let remotes: Vec<Option<SocketAddr>> = load
        .legs
        .iter()
        .filter(|l| l.state == State::Up)
        .map(|l| l.remote)
        .collect();
    if let Some(Some(first)) = remotes.first() {
        eprintln!("media_load: the first call's stream is at {first}");
    }
    if up > 0 && remotes.iter().all(|r| r.is_none_or(|a| a.port() == 9)) {
        eprintln!(
            "media_load: the server's SDP names port 9 (discard) or none: no media engine, no RTP will come"
        );
    }

    // 2. settle, then the window
    load.pump_for(secs(args.settle));
    let cpu = |pid: Option<u32>| pid.map(cpu_seconds);
    let (server0, tool0) = (
        cpu(args.server_pid).flatten(),
        cpu_seconds(std::process::id()),
    );
    let window = Instant::now();
    shared.phase.store(MEASURE, Ordering::Release);
    load.pump_for(secs(args.duration));
    shared.phase.store(DONE, Ordering::Release);
    let measure_s = window.elapsed().as_secs_f64();
    let (server1, tool1) = (
        cpu(args.server_pid).flatten(),
        cpu_seconds(std::process::id()),
    );
    let server_rss_kb = args.server_pid.and_then(rss_kb);
    let hung_up = load.count(|s| s == State::HungUp);
    shared.stop.store(true, Ordering::Release);
    let received = receiver.join().map_err(|_| "the RTP receiver panicked")?;
    if let Some(sender) = sender {
        let _ = sender.join();
    }

    // 3. teardown
    let teardown = Instant::now();
    load.teardown(args.rate * 2.0, teardown + secs(args.teardown_timeout));
    let byes_ok = load
        .legs
        .iter()
        .filter(|l| l.bye_status.is_some_and(|s| s < 300))
        .count();
    let byes_failed = load
        .legs
        .iter()
        .filter(|l| l.state == State::Byeing || l.bye_status.is_some_and(|s| s >= 300))
        .count();

    // The streams of the calls that were up, once each (port 9 is shared).
    let expected: HashSet<SocketAddr> = remotes.iter().flatten().copied().collect();
    let silent = remotes
        .iter()
        .filter(|r| r.is_none_or(|a| received.streams.get(&a).is_none_or(|s| s.received == 0)))
        .count();
    let mut deviations = received.deviations;
    let summary = measure::summarize(
        received
            .streams
            .iter()
            .filter(|(a, _)| expected.contains(a))
            .map(|(_, s)| s),
        &mut deviations,
        received.end_ns,
    );
    let stray: u64 = received
        .streams
        .iter()
        .filter(|(a, _)| !expected.contains(a))
        .map(|(_, s)| s.received)
        .sum();
    let window_s = (received.end_ns - received.start_ns).max(1) as f64 / 1e9;
    let sent = shared.sent_in_window.load(Ordering::Relaxed);
    let note = if up == 0 {
        "no call was answered".to_string()
    } else if silent > 0 {
        format!("no RTP received from {silent} streams")
    } else {
        String::new()
    };
    if !note.is_empty() {
        eprintln!("media_load: {note}");
    }
    let mut answer_ms: Vec<u32> = load.legs.iter().filter_map(|l| l.answer_us).collect();
    answer_ms.sort_unstable();
    let delta = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| round3(b - a));
    let json = serde_json::json!({
        "calls_requested": args.calls,
        "calls_up": up,
        "failed": load.failed().values().sum::<usize>(),
        "failed_by_status": load.failed(),
        "setup_s": round3(setup_s),
        "answer_p50_ms": round3(measure::percentile(&answer_ms, 50.0) as f64 / 1000.0),
        "answer_p99_ms": round3(measure::percentile(&answer_ms, 99.0) as f64 / 1000.0),
        "measure_s": round3(window_s),
        "streams_without_rtp": silent,
        "packets_received": summary.packets,
        "pps_received": round3(summary.packets as f64 / window_s),
        "pps_sent": round3(sent as f64 / measure_s),
        "send_errors": shared.send_errors.load(Ordering::Relaxed),
        "jitter_p50_ms": summary.jitter_p50_ms,
        "jitter_p99_ms": summary.jitter_p99_ms,
        "jitter_max_ms": summary.jitter_max_ms,
        "lost_packets": summary.lost,
        "streams_with_loss": summary.streams_with_loss,
        "streams_stalled": summary.stalled,
        "out_of_order": summary.out_of_order,
        "stray_packets": stray,
        "local_drops": received.drops,
        "server_hangups": hung_up,
        "server_cpu_s": delta(server0, server1),
        "tool_cpu_s": delta(tool0, tool1),
        "server_rss_kb": server_rss_kb,
        "byes_ok": byes_ok,
        "byes_failed": byes_failed,
        "note": note,
    });
    println!("{json}");
    Ok(())
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn set_int(socket: &UdpSocket, level: i32, name: i32, value: i32) -> bool {
    // SAFETY: a valid fd and a pointer to an int of the stated size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        ) == 0
    }
}

/// Large socket buffers: past rmem_max/wmem_max where allowed (root).
fn buffers(socket: &UdpSocket) {
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if !set_int(socket, libc::SOL_SOCKET, force, SOCKET_BUFFER) {
            set_int(socket, libc::SOL_SOCKET, plain, SOCKET_BUFFER);
        }
    }
}

fn sockaddr(addr: SocketAddr) -> libc::sockaddr_in {
    let v4 = match addr {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => SocketAddrV4::new(Ipv4Addr::LOCALHOST, addr.port()),
    };
    // SAFETY: sockaddr_in is plain data; zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = v4.port().to_be();
    sa.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
    sa
}

fn socket_addr(sa: &libc::sockaddr_in) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr))),
        u16::from_be(sa.sin_port),
    )
}

/// What the SIP side and the RTP threads share.
#[derive(Default)]
struct Shared {
    phase: AtomicU8,
    /// Where the server's streams receive, in the order the calls came up.
    targets: Mutex<Vec<SocketAddr>>,
    stop: AtomicBool,
    sent_in_window: AtomicU64,
    send_errors: AtomicU64,
}

// --- RTP ----------------------------------------------------------------------

/// Control space of one received message: a timestamp and a drop counter.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; 128]);

/// Buffers for recvmmsg/sendmmsg, wired once: the boxed slices never move.
struct Batch {
    bufs: Box<[[u8; 512]]>,
    names: Box<[libc::sockaddr_in]>,
    controls: Box<[Control]>,
    iovs: Box<[libc::iovec]>,
    msgs: Box<[libc::mmsghdr]>,
    len: usize,
}

impl Batch {
    fn new() -> Batch {
        // SAFETY: plain C structs; zero is valid for each.
        let mut b = Batch {
            bufs: vec![[0u8; 512]; BATCH].into_boxed_slice(),
            names: vec![unsafe { zeroed::<libc::sockaddr_in>() }; BATCH].into_boxed_slice(),
            controls: vec![Control([0; 128]); BATCH].into_boxed_slice(),
            iovs: vec![unsafe { zeroed::<libc::iovec>() }; BATCH].into_boxed_slice(),
            msgs: vec![unsafe { zeroed::<libc::mmsghdr>() }; BATCH].into_boxed_slice(),
            len: 0,
        };
        for i in 0..BATCH {
            b.iovs[i].iov_base = b.bufs[i].as_mut_ptr().cast();
            b.iovs[i].iov_len = 512;
            let h = &mut b.msgs[i].msg_hdr;
            h.msg_name = (&mut b.names[i] as *mut libc::sockaddr_in).cast();
            h.msg_iov = &mut b.iovs[i];
            h.msg_iovlen = 1;
        }
        b
    }

    /// Receives up to BATCH datagrams (blocking for the first unless
    /// `MSG_DONTWAIT`); their count, 0 on timeout or error.
    fn recv(&mut self, fd: i32, flags: i32) -> usize {
        for i in 0..BATCH {
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_control = self.controls[i].0.as_mut_ptr().cast();
            h.msg_controllen = 128;
            h.msg_flags = 0;
            self.iovs[i].iov_len = 512;
        }
        // SAFETY: every header points into this batch's live buffers.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                BATCH as u32,
                flags | libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        n.max(0) as usize
    }

    /// Datagram `i` of the last recv: bytes, source, kernel arrival (ns)
    /// and the socket's drop counter, when the kernel gave them.
    fn received(&self, i: usize) -> (&[u8], SocketAddr, Option<i64>, Option<u32>) {
        let msg = &self.msgs[i];
        let len = (msg.msg_len as usize).min(512);
        let (mut at, mut drops) = (None, None);
        // SAFETY: the kernel filled msg_control up to msg_controllen; the
        // CMSG macros stay inside it.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg.msg_hdr);
            while !c.is_null() {
                let data = libc::CMSG_DATA(c);
                match ((*c).cmsg_level, (*c).cmsg_type) {
                    (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                        let ts: libc::timespec = std::ptr::read_unaligned(data.cast());
                        at = Some(ts.tv_sec * 1_000_000_000 + ts.tv_nsec);
                    }
                    (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                        drops = Some(std::ptr::read_unaligned(data.cast::<u32>()));
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(&msg.msg_hdr, c);
            }
        }
        (&self.bufs[i][..len], socket_addr(&self.names[i]), at, drops)
    }

    /// The next free packet buffer and its destination, for sending.
    fn push(&mut self, to: &libc::sockaddr_in) -> &mut [u8] {
        let i = self.len;
        self.len += 1;
        self.names[i] = *to;
        self.iovs[i].iov_len = PACKET;
        let h = &mut self.msgs[i].msg_hdr;
        h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        h.msg_control = std::ptr::null_mut();
        h.msg_controllen = 0;
        &mut self.bufs[i][..PACKET]
    }

    fn full(&self) -> bool {
        self.len == BATCH
    }

    /// Sends what was pushed; (sent, failed).
    fn flush(&mut self, fd: i32) -> (u64, u64) {
        let (mut done, mut failed) = (0, 0);
        while done < self.len {
            // SAFETY: as in recv; only the first `len` messages are passed.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.msgs[done..].as_mut_ptr(),
                    (self.len - done) as u32,
                    0,
                )
            };
            if n <= 0 {
                // The one that failed is dropped; the rest are tried again.
                failed += 1;
                done += 1;
            } else {
                done += n as usize;
            }
        }
        let sent = (self.len as u64).saturating_sub(failed);
        self.len = 0;
        (sent, failed)
    }
}

/// What the receiver measured in the window.
struct Received {
    streams: HashMap<SocketAddr, Stream>,
    deviations: Vec<u32>,
    start_ns: i64,
    end_ns: i64,
    /// Datagrams the kernel dropped on our socket during the window.
    drops: u64,
}

/// Reads the RTP socket until the window closes (WARM: read and forget).
fn receive(socket: &UdpSocket, shared: &Shared) -> Received {
    let fd = socket.as_raw_fd();
    let mut batch = Batch::new();
    let mut r = Received {
        streams: HashMap::new(),
        deviations: Vec::new(),
        start_ns: 0,
        end_ns: 0,
        drops: 0,
    };
    let (mut measuring, mut drops_now, mut drops_at_start) = (false, 0u32, 0u32);
    let mut draining = false;
    loop {
        let phase = shared.phase.load(Ordering::Acquire);
        if phase >= MEASURE && !measuring {
            measuring = true;
            r.start_ns = now_ns();
            drops_at_start = drops_now;
        }
        if phase >= DONE && !draining {
            draining = true;
            r.end_ns = now_ns();
        }
        let n = batch.recv(fd, if draining { libc::MSG_DONTWAIT } else { 0 });
        // Draining ends with the queue, or at packets newer than the window.
        let mut past_end = n == 0;
        for i in 0..n {
            let (bytes, from, at, drops) = batch.received(i);
            if let Some(d) = drops {
                drops_now = d;
            }
            let at = at.unwrap_or_else(now_ns);
            if draining && at > r.end_ns {
                past_end = true;
                continue;
            }
            if !measuring || at < r.start_ns {
                continue;
            }
            if let Some(h) = Header::read(bytes) {
                r.streams
                    .entry(from)
                    .or_default()
                    .packet(&h, at, &mut r.deviations);
            }
        }
        if draining && past_end {
            break;
        }
    }
    r.drops = drops_now.wrapping_sub(drops_at_start) as u64;
    r
}

/// Sends one packet every 20 ms to every target (each in its 1 ms slot)
/// until told to stop.
fn send(socket: &UdpSocket, shared: &Shared, pt: u8, payload: &[u8; 160]) {
    let fd = socket.as_raw_fd();
    let mut batch = Batch::new();
    let mut streams: Vec<(libc::sockaddr_in, Header)> = Vec::new();
    let start = Instant::now();
    let mut slot: u64 = 0;
    while !shared.stop.load(Ordering::Acquire) {
        {
            let targets = shared.targets.lock().unwrap();
            for addr in &targets[streams.len()..] {
                let n = streams.len() as u32;
                let seed = n.wrapping_mul(2_654_435_761) ^ std::process::id();
                streams.push((
                    sockaddr(*addr),
                    Header {
                        pt,
                        marker: true,
                        seq: seed as u16,
                        ts: seed.rotate_left(7),
                        ssrc: seed | 1,
                    },
                ));
            }
        }
        let due = start + SLOT * slot as u32;
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        } else if now - due > Duration::from_millis(100) {
            // Far behind (the machine stalled): skip ahead, do not burst.
            slot = ((now - start).as_micros() / SLOT.as_micros()) as u64;
        }
        let measuring = shared.phase.load(Ordering::Relaxed) == MEASURE;
        let (mut sent, mut failed) = (0, 0);
        let first = (slot % SLOTS as u64) as usize;
        for (to, header) in streams.iter_mut().skip(first).step_by(SLOTS) {
            let buf = batch.push(to);
            header.write(buf);
            buf[Header::LEN..].copy_from_slice(payload);
            header.marker = false;
            header.seq = header.seq.wrapping_add(1);
            header.ts = header.ts.wrapping_add(160);
            if batch.full() {
                let (s, f) = batch.flush(fd);
                (sent, failed) = (sent + s, failed + f);
            }
        }
        let (s, f) = batch.flush(fd);
        (sent, failed) = (sent + s, failed + f);
        if measuring {
            shared.sent_in_window.fetch_add(sent, Ordering::Relaxed);
        }
        shared.send_errors.fetch_add(failed, Ordering::Relaxed);
        slot += 1;
    }
}

// --- SIP ------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Inviting,
    Proceeding,
    Up,
    Failed(u16),
    /// The server hung up (its BYE was answered).
    HungUp,
    Byeing,
    Done,
}

struct Leg {
    state: State,
    /// The request being (re)transmitted, where to, and its timers.
    request: String,
    dest: SocketAddr,
    started: Instant,
    interval: Duration,
    resend_at: Option<Instant>,
    /// The ACK of the 2xx (sent again when the 2xx repeats), and where.
    ack: String,
    /// The dialog: To with the server's tag, remote target URI and address.
    to: String,
    target_uri: String,
    target: SocketAddr,
    remote: Option<SocketAddr>,
    answer_us: Option<u32>,
    bye_status: Option<u16>,
}

/// Every call over one SIP socket, driven from one thread.
struct Load {
    socket: UdpSocket,
    local: SocketAddr,
    server: SocketAddr,
    number: String,
    rtp: SocketAddr,
    codec: Codec,
    shared: Arc<Shared>,
    legs: Vec<Leg>,
    /// Legs with a client transaction running.
    pending: Vec<usize>,
    prefix: String,
    buf: Vec<u8>,
    /// The conference every call joins, and how many per conference.
    conference: Option<String>,
    per_conference: usize,
}

impl Load {
    fn new(
        socket: UdpSocket,
        server: SocketAddr,
        number: &str,
        rtp: SocketAddr,
        codec: Codec,
        shared: Arc<Shared>,
    ) -> Load {
        let local = socket.local_addr().expect("bound");
        Load {
            socket,
            local,
            server,
            number: number.to_string(),
            rtp,
            codec,
            shared,
            legs: Vec::new(),
            pending: Vec::new(),
            prefix: format!("ml-{}-{}-", std::process::id(), local.port()),
            buf: vec![0; 65_536],
            conference: None,
            per_conference: 0,
        }
    }

    fn count(&self, f: impl Fn(State) -> bool) -> usize {
        self.legs.iter().filter(|l| f(l.state)).count()
    }

    /// Failed calls by status (408: no final answer in time).
    fn failed(&self) -> BTreeMap<u16, usize> {
        let mut by = BTreeMap::new();
        for l in &self.legs {
            if let State::Failed(s) = l.state {
                *by.entry(s).or_default() += 1;
            }
        }
        by
    }

    fn send(&self, text: &str, to: SocketAddr) {
        let _ = self.socket.send_to(text.as_bytes(), to);
    }

    /// INVITEs at `rate` until `calls` are sent and answered, or `deadline`.
    fn setup(&mut self, calls: usize, rate: f64, deadline: Instant) {
        let gap = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now();
        while Instant::now() < deadline {
            while self.legs.len() < calls
                && start + gap.mul_f64(self.legs.len() as f64) <= Instant::now()
            {
                self.invite();
            }
            if self.legs.len() == calls && self.pending.is_empty() {
                break;
            }
            self.pump_once();
        }
        for i in std::mem::take(&mut self.pending) {
            self.legs[i].state = State::Failed(408);
        }
    }

    /// BYEs at `rate` to every call up, until answered or `deadline`.
    fn teardown(&mut self, rate: f64, deadline: Instant) {
        let up: Vec<usize> = (0..self.legs.len())
            .filter(|&i| self.legs[i].state == State::Up)
            .collect();
        let gap = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now();
        let mut next = 0;
        while Instant::now() < deadline {
            while next < up.len() && start + gap.mul_f64(next as f64) <= Instant::now() {
                self.bye(up[next]);
                next += 1;
            }
            if next == up.len() && self.pending.is_empty() {
                break;
            }
            self.pump_once();
        }
    }

    /// Answers the server and runs the timers for `duration`.
    fn pump_for(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.pump_once();
        }
    }

    /// One datagram (waiting at most 2 ms) and the timers.
    fn pump_once(&mut self) {
        match self.socket.recv_from(&mut self.buf) {
            Ok((n, from)) => {
                let msg = message::parse_datagram(&self.buf[..n], &Limits::default());
                if let Ok(Inbound::Message(msg)) = msg {
                    self.on_message(msg, from);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {}
        }
        self.timers();
    }

    fn timers(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.pending.len() {
            let leg = &mut self.legs[self.pending[i]];
            if now - leg.started > TRANSACTION {
                leg.state = match leg.state {
                    State::Byeing => State::Byeing, // counted as a failed BYE
                    _ => State::Failed(408),
                };
                self.pending.swap_remove(i);
                continue;
            }
            if leg.resend_at.is_some_and(|at| now >= at) {
                let _ = self.socket.send_to(leg.request.as_bytes(), leg.dest);
                let cap = if leg.state == State::Byeing {
                    T2
                } else {
                    TRANSACTION
                };
                leg.interval = (leg.interval * 2).min(cap);
                leg.resend_at = Some(now + leg.interval);
            }
            i += 1;
        }
    }

    fn invite(&mut self) {
        let i = self.legs.len();
        let (local, rtp, pt) = (self.local, self.rtp, self.codec.pt);
        let sdp = format!(
            "v=0\r\no=load {i} 1 IN IP4 {ip}\r\ns=load\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {name}/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n",
            ip = rtp.ip(),
            port = rtp.port(),
            name = self.codec.name
        );
        let uri = format!("sip:{}@{}", self.number, self.server);
        let request = format!(
            "INVITE {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-{p}{i}-i;rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:load@{ip}>;tag=t{i}\r\n\
             To: <{uri}>\r\n\
             Call-ID: {p}{i}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:load@{local}>\r\n\
             {extra}\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            p = self.prefix,
            ip = local.ip(),
            extra = self.headers(i),
        );
        self.send(&request, self.server);
        let now = Instant::now();
        self.legs.push(Leg {
            state: State::Inviting,
            request,
            dest: self.server,
            started: now,
            interval: T1,
            resend_at: Some(now + T1),
            ack: String::new(),
            to: format!("<{uri}>"),
            target_uri: uri,
            target: self.server,
            remote: None,
            answer_us: None,
            bye_status: None,
        });
        self.pending.push(i);
    }

    /// Extra INVITE headers of call `i`: the conference it joins.
    fn headers(&self, i: usize) -> String {
        let Some(name) = &self.conference else {
            return String::new();
        };
        let name = match self.per_conference {
            0 => name.clone(),
            k => format!("{name}-{}", i / k),
        };
        format!("X-Conference: {name}\r\nX-Conference-Options: no-beep\r\n")
    }

    /// A request in call `i`'s dialog.
    fn in_dialog(&self, i: usize, method: &str, cseq: u32, branch: &str) -> String {
        let leg = &self.legs[i];
        format!(
            "{method} {} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {};branch=z9hG4bK-{}{i}-{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:load@{}>;tag=t{i}\r\n\
             To: {}\r\n\
             Call-ID: {}{i}\r\n\
             CSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            leg.target_uri,
            self.local,
            self.prefix,
            self.local.ip(),
            leg.to,
            self.prefix
        )
    }

    fn bye(&mut self, i: usize) {
        let request = self.in_dialog(i, "BYE", 2, "b");
        let now = Instant::now();
        let leg = &mut self.legs[i];
        let _ = self.socket.send_to(request.as_bytes(), leg.target);
        leg.state = State::Byeing;
        leg.dest = leg.target;
        leg.request = request;
        leg.started = now;
        leg.interval = T1;
        leg.resend_at = Some(now + T1);
        self.pending.push(i);
    }

    fn leg_of(&self, call_id: &str) -> Option<usize> {
        let i: usize = call_id.strip_prefix(&self.prefix)?.parse().ok()?;
        (i < self.legs.len()).then_some(i)
    }

    fn on_message(&mut self, msg: SipMessage, from: SocketAddr) {
        match msg {
            SipMessage::Response(resp) => {
                let Some(i) = message::call_id(&resp).and_then(|c| self.leg_of(c)) else {
                    return;
                };
                let Some((_, method)) = message::cseq(&resp) else {
                    return;
                };
                self.on_response(i, &resp, method);
            }
            SipMessage::Request(req) => self.on_request(&req, from),
        }
    }

    fn on_response(&mut self, i: usize, resp: &rsip::Response, method: Method) {
        let code = resp.status_code.code();
        let state = self.legs[i].state;
        let done = |load: &mut Load| load.pending.retain(|&p| p != i);
        match (method, code, state) {
            (Method::Invite, 100..=199, State::Inviting) => {
                self.legs[i].state = State::Proceeding;
                self.legs[i].resend_at = None;
            }
            (Method::Invite, 200..=299, State::Inviting | State::Proceeding) => {
                let value = |pick: fn(&SipHeader) -> Option<&str>| {
                    resp.headers.iter().find_map(pick).map(str::to_string)
                };
                let contact = value(|h| match h {
                    SipHeader::Contact(c) => Some(c.value()),
                    _ => None,
                });
                let leg = &mut self.legs[i];
                if let Some(to) = value(|h| match h {
                    SipHeader::To(t) => Some(t.value()),
                    _ => None,
                }) {
                    leg.to = to;
                }
                if let Some(uri) = contact.as_deref().and_then(contact_uri) {
                    leg.target = uri_addr(&uri).unwrap_or(self.server);
                    leg.target_uri = uri;
                }
                leg.remote = sdp::parse_answer(&resp.body).ok().and_then(|n| n.remote);
                leg.answer_us =
                    Some(leg.started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                leg.state = State::Up;
                let ack = self.in_dialog(i, "ACK", 1, "a");
                let leg = &mut self.legs[i];
                let _ = self.socket.send_to(ack.as_bytes(), leg.target);
                leg.ack = ack;
                if let Some(remote) = leg.remote {
                    self.shared.targets.lock().unwrap().push(remote);
                }
                done(self);
            }
            (Method::Invite, 200..=299, _) => {
                // The 2xx again: our ACK was lost (or is late).
                let leg = &self.legs[i];
                let _ = self.socket.send_to(leg.ack.as_bytes(), leg.target);
            }
            (Method::Invite, 300.., State::Inviting | State::Proceeding | State::Failed(_)) => {
                // The ACK of a non-2xx reuses the INVITE's branch (§17.1.1.3).
                let to = resp
                    .headers
                    .iter()
                    .find_map(|h| match h {
                        SipHeader::To(t) => Some(t.value().to_string()),
                        _ => None,
                    })
                    .unwrap_or_default();
                let leg = &self.legs[i];
                let ack = format!(
                    "ACK {} SIP/2.0\r\n\
                     Via: SIP/2.0/UDP {};branch=z9hG4bK-{}{i}-i;rport\r\n\
                     Max-Forwards: 70\r\n\
                     From: <sip:load@{}>;tag=t{i}\r\n\
                     To: {to}\r\n\
                     Call-ID: {}{i}\r\n\
                     CSeq: 1 ACK\r\n\
                     Content-Length: 0\r\n\r\n",
                    leg.target_uri,
                    self.local,
                    self.prefix,
                    self.local.ip(),
                    self.prefix
                );
                self.send(&ack, self.server);
                self.legs[i].state = State::Failed(code);
                done(self);
            }
            (Method::Bye, 200.., State::Byeing) => {
                self.legs[i].state = State::Done;
                self.legs[i].bye_status = Some(code);
                done(self);
            }
            _ => {}
        }
    }

    /// The server's requests: 200 to all (a re-INVITE with an SDP answer).
    fn on_request(&mut self, req: &rsip::Request, from: SocketAddr) {
        if req.method == Method::Ack {
            return;
        }
        let leg = message::call_id(req).and_then(|c| self.leg_of(c));
        let mut reply = message::response(req, 200, "OK", None);
        match (&req.method, leg) {
            (Method::Bye, Some(i)) => {
                if matches!(self.legs[i].state, State::Up | State::Byeing) {
                    self.pending.retain(|&p| p != i);
                    self.legs[i].state = State::HungUp;
                }
            }
            (Method::Invite, Some(_)) => match sdp::answer(&req.body, self.rtp, 1, 2) {
                Ok((body, _)) => {
                    reply
                        .headers
                        .retain(|h| !matches!(h, SipHeader::ContentLength(_)));
                    reply.headers.push(
                        rsip::headers::Contact::new(format!("<sip:load@{}>", self.local)).into(),
                    );
                    reply
                        .headers
                        .push(rsip::headers::ContentType::new("application/sdp").into());
                    reply
                        .headers
                        .push(rsip::headers::ContentLength::new(body.len().to_string()).into());
                    reply.body = body.into_bytes();
                }
                Err(_) => reply = message::response(req, 488, "Not Acceptable Here", None),
            },
            (Method::Invite, None) => {
                reply = message::response(req, 486, "Busy Here", Some("load"))
            }
            _ => {}
        }
        self.send(&reply.to_string(), from);
    }
}

/// The URI inside a Contact value (`<sip:x@h:p>;expires=..` or bare).
fn contact_uri(contact: &str) -> Option<String> {
    let c = contact.trim();
    let uri = match c.find('<') {
        Some(open) => c[open + 1..].split('>').next()?,
        None => c.split(';').next()?,
    };
    Some(uri.trim().to_string())
}

/// `sip:user@host:port;params` → host:port (5060 by default).
fn uri_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri.strip_prefix("sip:")?.split(';').next()?;
    let hostport = rest.rsplit('@').next()?;
    hostport
        .parse()
        .ok()
        .or_else(|| format!("{hostport}:5060").parse().ok())
}
