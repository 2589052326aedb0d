//! Engine tests on real 127.0.0.1 sockets against plain `UdpSocket` peers.

use super::*;
use crate::media::Samples;
use crate::media::codec::{Codec, DTMF_PT, Direction};
use crate::media::dtmf::Payload;
use crate::media::g711::Law;
use crate::media::rtp::{self, Header};
use crate::media::tone::{goertzel, sine};
use std::net::Ipv4Addr;
use std::sync::mpsc::Receiver;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn engine(workers: usize) -> (Engine, Receiver<(StreamId, Event)>) {
    engine_with(Policy::fixed(workers), SAMPLE)
}

fn engine_with(pool: Policy, sample: Duration) -> (Engine, Receiver<(StreamId, Event)>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let sink: Sink = Arc::new(move |stream, event| {
        let _ = tx.lock().unwrap().send((stream, event));
    });
    let config = EngineConfig {
        bind: LOCALHOST,
        pool,
        sample,
        timeout: Duration::ZERO,
    };
    (Engine::start(config, sink).unwrap(), rx)
}

fn peer() -> UdpSocket {
    let s = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

fn params(remote: SocketAddr) -> StreamParams {
    StreamParams {
        codec: Codec::PCMU,
        dtmf_pt: Some(DTMF_PT),
        remote: Some(remote),
        direction: Direction::SendRecv,
    }
}

/// Everything `peer` receives for `d`: (source, header, payload).
fn receive_for(peer: &UdpSocket, d: Duration) -> Vec<(SocketAddr, Header, Vec<u8>)> {
    let end = Instant::now() + d;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        peer.set_read_timeout(Some(
            end.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        if let Ok((n, from)) = peer.recv_from(&mut buf)
            && let Ok(p) = rtp::parse(&buf[..n])
        {
            got.push((from, p.header, p.payload.to_vec()));
        }
    }
    got
}

fn pcm(payloads: impl IntoIterator<Item = Vec<u8>>) -> Vec<i16> {
    let mut out = Vec::new();
    for p in payloads {
        Law::Mu.decode(&p, &mut out);
    }
    out
}

/// Sends `samples` to `to` as paced PCMU packets (in a thread).
fn talk(from: UdpSocket, to: SocketAddr, samples: Vec<i16>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let start = Instant::now();
        for (i, frame) in samples.chunks(FRAME_SAMPLES).enumerate() {
            let header = Header {
                marker: i == 0,
                pt: 0,
                seq: i as u16,
                ts: i as u32 * 160,
                ssrc: 42,
            };
            let mut buf = Vec::new();
            Law::Mu.encode(frame, header.build(&mut buf, frame.len()));
            from.send_to(&buf, to).unwrap();
            let next = start + Duration::from_millis(20) * (i as u32 + 1);
            thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    })
}

fn wait_event(
    rx: &Receiver<(StreamId, Event)>,
    pred: impl Fn(&(StreamId, Event)) -> bool,
) -> (StreamId, Event) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let got = rx.recv_timeout(left).expect("event in time");
        if pred(&got) {
            return got;
        }
    }
}

#[test]
fn streams_play_a_tone_and_hear_digits() {
    let (engine, events) = engine(1);
    let peer = peer();
    let a = engine.open(1, 100, 0).unwrap();
    let b = engine.open(2, 200, 0).unwrap();
    assert_eq!(a.port() % 2, 0);
    for s in [1, 2] {
        engine.command(s, Command::Start(params(peer.local_addr().unwrap())));
    }
    let tone: Samples = sine(1000.0, 2000, 0.5).into();
    engine.command(
        1,
        Command::Play {
            id: 5,
            clips: vec![Clip::Audio(tone)],
            forever: false,
        },
    );
    let got = receive_for(&peer, Duration::from_secs(1));
    let from_a: Vec<_> = got.iter().filter(|(f, ..)| *f == a).collect();
    let from_b: Vec<_> = got.iter().filter(|(f, ..)| *f == b).collect();
    for n in [from_a.len(), from_b.len()] {
        assert!((40..=60).contains(&n), "about 50 packets a second: {n}");
    }
    let heard = pcm(from_a.iter().skip(5).map(|(_, _, p)| p.clone()));
    let power = goertzel(&heard, 1000.0);
    assert!(power > 0.2, "the tone: {power}");
    assert!(
        goertzel(&pcm(from_b.iter().map(|(_, _, p)| p.clone())), 1000.0) < 0.001,
        "b is silent"
    );
    // The peer presses 7 at stream b: three packets and three end packets.
    for (i, end) in [false, false, false, true, true, true]
        .into_iter()
        .enumerate()
    {
        let header = Header {
            marker: i == 0,
            pt: DTMF_PT,
            seq: 1000 + i as u16,
            ts: 8000,
            ssrc: 9,
        };
        let payload = Payload {
            event: 7,
            end,
            volume: 10,
            duration: 160 * (i as u16 + 1),
        };
        let mut buf = Vec::new();
        header
            .build(&mut buf, 4)
            .copy_from_slice(&payload.to_bytes());
        peer.send_to(&buf, b).unwrap();
    }
    assert_eq!(
        wait_event(&events, |(_, e)| matches!(e, Event::Digit(_))),
        (2, Event::Digit('7'))
    );
    thread::sleep(Duration::from_millis(200));
    let digits = events
        .try_iter()
        .filter(|(_, e)| matches!(e, Event::Digit(_)))
        .count();
    assert_eq!(digits, 0, "one digit per event");
    let stats = engine.stats();
    assert_eq!(stats.streams, 2);
    assert!(
        stats.packets_sent >= 90 && stats.packets_received == 6,
        "{stats:?}"
    );
}

#[test]
fn a_bridge_relays_audio_both_ways_and_records_the_mix() {
    let (engine, events) = engine(2);
    let (pa, pb) = (peer(), peer());
    let a = engine.open(1, 7, 0).unwrap();
    let b = engine.open(2, 7, 0).unwrap();
    engine.command(1, Command::Start(params(pa.local_addr().unwrap())));
    engine.command(2, Command::Start(params(pb.local_addr().unwrap())));
    engine.command(
        1,
        Command::Bridge {
            other: 2,
            record: Some(33),
        },
    );
    let talker = talk(pa.try_clone().unwrap(), a, sine(1000.0, 1500, 0.5));
    let talker_b = talk(pb.try_clone().unwrap(), b, sine(600.0, 1500, 0.5));
    let at_b = receive_for(&pb, Duration::from_millis(1200));
    talker.join().unwrap();
    talker_b.join().unwrap();
    let heard_b = pcm(at_b
        .iter()
        .filter(|(f, ..)| *f == b)
        .map(|(_, _, p)| p.clone()));
    assert!(
        goertzel(&heard_b, 1000.0) > 0.1,
        "a's caller is heard at b: {}",
        goertzel(&heard_b, 1000.0)
    );
    let at_a = receive_for(&pa, Duration::from_millis(100));
    assert!(!at_a.is_empty());
    engine.command(2, Command::Unbridge);
    let (stream, event) = wait_event(&events, |(_, e)| matches!(e, Event::Recorded { .. }));
    assert_eq!(
        stream, 1,
        "reported on the stream that got the Bridge command"
    );
    let Event::Recorded {
        id,
        samples,
        ended_by,
    } = event
    else {
        unreachable!()
    };
    assert_eq!((id, ended_by), (33, RecordEnd::Hangup));
    assert!(samples.len() > 8000, "{}", samples.len());
    assert!(
        goertzel(&samples, 1000.0) > 0.05 && goertzel(&samples, 600.0) > 0.05,
        "both directions"
    );
    // Unbridged: b sends silence again (once what was queued is read).
    thread::sleep(Duration::from_millis(100));
    receive_for(&pb, Duration::from_millis(30));
    let later = receive_for(&pb, Duration::from_millis(200));
    let later = pcm(later
        .into_iter()
        .filter(|(f, ..)| *f == b)
        .map(|(_, _, p)| p));
    let loud = later.iter().filter(|&&s| s != 0).count();
    assert_eq!(
        loud,
        0,
        "{} samples, max {:?}",
        later.len(),
        later.iter().max()
    );
}

#[test]
fn close_stops_sending_and_saves_the_recording() {
    let (engine, events) = engine(1);
    let peer = peer();
    let a = engine.open(1, 1, 0).unwrap();
    engine.command(1, Command::Start(params(peer.local_addr().unwrap())));
    let spec = RecordSpec {
        max_ms: 60_000,
        silence_ms: 0,
        beep: false,
        trim_silence: false,
    };
    engine.command(1, Command::Record { id: 4, spec });
    assert!(!receive_for(&peer, Duration::from_millis(200)).is_empty());
    engine.command(1, Command::Close);
    let (stream, event) = wait_event(&events, |_| true);
    assert_eq!(stream, 1);
    assert!(
        matches!(
            event,
            Event::Recorded {
                id: 4,
                ended_by: RecordEnd::Hangup,
                ..
            }
        ),
        "{event:?}"
    );
    thread::sleep(Duration::from_millis(50));
    let _ = receive_for(&peer, Duration::from_millis(10));
    assert!(
        receive_for(&peer, Duration::from_millis(200)).is_empty(),
        "nothing after Close"
    );
    assert_eq!(engine.stats().streams, 0);
    // The ports are free again, and commands to the closed stream are ignored.
    engine.command(1, Command::StopPlay);
    let again = UdpSocket::bind(a);
    assert!(again.is_ok(), "{again:?}");
}

#[test]
fn a_taken_port_fails_at_open() {
    let (engine, _events) = engine(1);
    let taken = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = engine.open(1, 1, port).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    // The RTCP port taken is just as fatal.
    let err = engine.open(2, 1, port - 1).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    engine.shutdown();
}

#[test]
fn reserve_refuses_a_taken_pair_and_open_uses_the_pair_it_holds() {
    let (engine, _events) = engine(1);
    let taken = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    assert!(!engine.reserve(port), "RTP port taken");
    assert!(!engine.reserve(port - 1), "RTCP port taken");
    drop(taken);
    let even = port - (port & 1);
    assert!(engine.reserve(even));
    // Held by the engine now: nobody else can bind it, and open gets it.
    assert!(UdpSocket::bind((LOCALHOST, even)).is_err());
    let local = engine.open(1, 1, even).unwrap();
    assert_eq!(local.port(), even);
    engine.shutdown();
}

/// Waits (at most 10 s) until `done` holds for the engine's stats.
fn wait_stats(engine: &Engine, what: &str, done: impl Fn(&EngineStats) -> bool) -> EngineStats {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = engine.stats();
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < end, "{what}: {stats:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// With a high-water mark of 1 % busy, a few hundred paced streams are
/// overload: the pool grows to its max of 2 and new calls go to the new
/// worker; once every stream closed and the hold time passed, it is back
/// to one worker, which still serves calls.
#[test]
fn the_pool_grows_under_load_and_shrinks_back_when_idle() {
    let pool = Policy {
        min: 1,
        max: 2,
        high: 0.01,
        low: 0.005,
        rise: Duration::from_millis(100),
        hold: Duration::from_millis(300),
        ..Policy::default()
    };
    let (engine, _events) = engine_with(pool, Duration::from_millis(50));
    let sink = bind_one(LOCALHOST, 0).unwrap(); // never read: packets just land
    let to = sink.local_addr().unwrap();
    assert_eq!(engine.stats().workers.len(), 1);
    for s in 0..200 {
        engine.open(s, s, 0).unwrap();
        engine.command(s, Command::Start(params(to)));
    }
    let stats = wait_stats(&engine, "grown to 2", |s| s.active_workers() == 2);
    assert_eq!(stats.workers[0].streams, 200);
    assert!(stats.workers[0].busy > 0.0, "{stats:?}");
    // New calls go to the emptiest worker: the new one.
    for s in 200..300 {
        engine.open(s, s, 0).unwrap();
        engine.command(s, Command::Start(params(to)));
    }
    let stats = engine.stats();
    assert_eq!(stats.workers.len(), 2, "max 2: {stats:?}");
    assert_eq!(stats.workers[1].streams, 100);
    wait_stats(&engine, "the new worker sends", |s| s.streams == 300);
    for s in 0..300 {
        engine.command(s, Command::Close);
    }
    let stats = wait_stats(&engine, "back to 1", |s| s.workers.len() == 1);
    assert_eq!((stats.active_workers(), stats.workers[0].id), (1, 0));
    assert_eq!(stats.streams, 0);
    let peer = peer();
    engine.open(1000, 1000, 0).unwrap();
    engine.command(1000, Command::Start(params(peer.local_addr().unwrap())));
    assert!(!receive_for(&peer, Duration::from_millis(300)).is_empty());
}

/// Load: 1,000 streams on one worker, each sending to one peer socket.
/// Send jitter is measured from kernel receive timestamps at the peer
/// (loopback: the moment each packet was sent, whatever the reading
/// thread's scheduling): p50/p99/max of |interval − 20 ms × seq step| per
/// stream. Run with `cargo test --release -- --ignored thousand --nocapture`.
#[test]
#[ignore = "load measurement, a few seconds on a quiet machine"]
fn thousand_streams_on_one_worker() {
    let (engine, _events) = engine(1);
    let peer = bind_one(LOCALHOST, 0).unwrap();
    Socket::from(peer.try_clone().unwrap())
        .set_recv_buffer_size(8 << 20)
        .unwrap();
    let streams = 1000u64;
    let mut ports = HashMap::new();
    for s in 0..streams {
        let local = engine.open(s, s, 0).unwrap();
        ports.insert(local.port(), s as usize);
        engine.command(s, Command::Start(params(peer.local_addr().unwrap())));
    }
    let seconds = 5;
    let mut last: Vec<Option<(SystemTime, u16)>> = vec![None; streams as usize];
    let mut deviations: Vec<u64> = Vec::with_capacity(streams as usize * 50 * seconds);
    let mut lost = 0u64;
    let mut batch = Batch::new();
    thread::sleep(Duration::from_millis(500)); // let every stream start
    while batch.recv(&peer).is_ok() {} // and forget the start
    let before = engine.stats();
    let cpu_before = worker_cpu();
    let end = Instant::now() + Duration::from_secs(seconds as u64);
    while Instant::now() < end {
        let Ok(n) = batch.recv(&peer) else {
            thread::sleep(Duration::from_micros(500));
            continue;
        };
        for m in 0..n {
            let (from, packet, stamp) = batch.get(m);
            let (Some(&s), Ok(p), Some(at)) = (ports.get(&from.port()), rtp::parse(packet), stamp)
            else {
                continue;
            };
            if let Some((prev, seq)) = last[s] {
                let step = p.header.seq.wrapping_sub(seq);
                lost += u64::from(step.saturating_sub(1));
                let interval = at.duration_since(prev).unwrap_or_default();
                let expected = Duration::from_millis(20) * u32::from(step);
                deviations.push(interval.abs_diff(expected).as_micros() as u64);
            }
            last[s] = Some((at, p.header.seq));
        }
    }
    let after = engine.stats();
    let cpu = (worker_cpu() - cpu_before) as f64 / seconds as f64;
    deviations.sort_unstable();
    let pct = |q: f64| deviations[((deviations.len() as f64 - 1.0) * q) as usize];
    eprintln!(
        "{streams} streams, {} intervals: send jitter p50 {} us, p99 {} us, max {} us; \
         not received by the peer {lost}; worker CPU {:.0}%, busy {:.0}% (last sample); \
         late ticks {}, send errors {}, max lateness {:?}",
        deviations.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        cpu,
        after.workers[0].busy * 100.0,
        after.late_ticks - before.late_ticks,
        after.send_errors - before.send_errors,
        after.max_lateness,
    );
    assert!(pct(0.99) < 5_000, "p99 send jitter under 5 ms");
    assert_eq!(after.send_errors, 0);
}

/// CPU time (in clock ticks, 1/100 s) of the `media-0` thread so far.
fn worker_cpu() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "media-0" {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // After the ")" closing the name: state, ..., utime (12th), stime (13th).
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
            return field(11) + field(12);
        }
    }
    0
}

type Rooms = Receiver<(RoomId, RoomEvent)>;

/// An engine whose rooms report to a channel too.
fn engine_with_rooms(workers: usize) -> (Engine, Receiver<(StreamId, Event)>, Rooms) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let sink: Sink = Arc::new(move |stream, event| {
        let _ = tx.lock().unwrap().send((stream, event));
    });
    let (rtx, rrx) = mpsc::channel();
    let rtx = Mutex::new(rtx);
    let rooms: RoomSink = Arc::new(move |room, event| {
        let _ = rtx.lock().unwrap().send((room, event));
    });
    let config = EngineConfig {
        bind: LOCALHOST,
        pool: Policy::fixed(workers),
        sample: SAMPLE,
        timeout: Duration::ZERO,
    };
    let engine = Engine::start_with_rooms(config, sink, rooms).unwrap();
    (engine, rx, rrx)
}

fn join_room(engine: &Engine, stream: StreamId, room: RoomId) {
    let join = Command::Join {
        room,
        config: Box::default(),
        join: Join::default(),
        record: true,
    };
    engine.command(stream, join);
}

fn room_event(rx: &Rooms, pred: impl Fn(&RoomEvent) -> bool) -> RoomEvent {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let (_, event) = rx.recv_timeout(left).expect("room event in time");
        if pred(&event) {
            return event;
        }
    }
}

#[test]
fn streams_of_three_calls_on_three_workers_meet_in_one_room() {
    let (engine, _events, rooms) = engine_with_rooms(3);
    let peers = [peer(), peer(), peer()];
    let tones = [500.0, 1100.0, 1700.0];
    // Three calls (groups): the least-loaded rule puts each on its own worker.
    let addrs: Vec<SocketAddr> = (0..3)
        .map(|i| engine.open(i + 1, 100 + i, 0).unwrap())
        .collect();
    let workers = engine.stats().workers;
    assert!(workers.iter().all(|w| w.streams == 1), "{workers:?}");
    for (i, p) in peers.iter().enumerate() {
        engine.command(
            i as u64 + 1,
            Command::Start(params(p.local_addr().unwrap())),
        );
        join_room(&engine, i as u64 + 1, 9);
    }
    let workers = engine.stats().workers;
    assert!(
        workers.iter().any(|w| w.streams == 3),
        "the room's streams are routed to one worker: {workers:?}"
    );
    let talkers: Vec<_> = (0..3)
        .map(|i| {
            let from = peers[i].try_clone().unwrap();
            talk(from, addrs[i], sine(tones[i], 1500, 0.25))
        })
        .collect();
    let heard: Vec<Vec<i16>> = thread::scope(|scope| {
        let listeners: Vec<_> = (0..3)
            .map(|i| {
                let (p, from) = (&peers[i], addrs[i]);
                scope.spawn(move || {
                    let got = receive_for(p, Duration::from_millis(1300));
                    pcm(got
                        .into_iter()
                        .filter(|(f, ..)| *f == from)
                        .skip(20)
                        .map(|(_, _, p)| p))
                })
            })
            .collect();
        listeners.into_iter().map(|l| l.join().unwrap()).collect()
    });
    for t in talkers {
        t.join().unwrap();
    }
    for (i, audio) in heard.iter().enumerate() {
        for (j, hz) in tones.iter().enumerate() {
            let power = goertzel(audio, *hz);
            if i == j {
                assert!(power < 0.001, "stream {i} hears itself: {power}");
            } else {
                assert!(power > 0.01, "stream {i} misses stream {j}: {power}");
            }
        }
    }
    // Kicked, then closed: each is out with its reason; the last one out
    // ends the room, which reports its recording and closes.
    engine.room(9, RoomCommand::Kick(3));
    let out = room_event(&rooms, |e| matches!(e, RoomEvent::Out { .. }));
    assert_eq!(
        out,
        RoomEvent::Out {
            stream: 3,
            out: Out::Kicked
        }
    );
    engine.command(2, Command::Close);
    let out = room_event(&rooms, |e| matches!(e, RoomEvent::Out { .. }));
    assert_eq!(
        out,
        RoomEvent::Out {
            stream: 2,
            out: Out::Hangup
        }
    );
    engine.command(1, Command::Leave);
    let out = room_event(&rooms, |e| matches!(e, RoomEvent::Out { .. }));
    assert_eq!(
        out,
        RoomEvent::Out {
            stream: 1,
            out: Out::Left
        }
    );
    let RoomEvent::Recorded(mix) = room_event(&rooms, |e| matches!(e, RoomEvent::Recorded(_)))
    else {
        unreachable!()
    };
    for hz in tones {
        assert!(goertzel(&mix, hz) > 0.005, "{hz} Hz in the recording");
    }
    assert_eq!(room_event(&rooms, |_| true), RoomEvent::Closed);
    // A command for the closed room is refused, not lost.
    engine.room(9, RoomCommand::End);
    let refused = room_event(&rooms, |e| matches!(e, RoomEvent::Refused { .. }));
    assert!(matches!(refused, RoomEvent::Refused { stream: None, .. }));
    // The stream that left is usable again: it still sends.
    let later = receive_for(&peers[0], Duration::from_millis(200));
    assert!(later.iter().any(|(f, ..)| *f == addrs[0]));
}

/// A WebRTC client attached to a stream takes the place of its RTP far
/// end: no more plain RTP goes out while attached; detaching gives the
/// leg back and plain RTP resumes; closing the stream drops an attached
/// leg, which gives its ports back.
#[test]
fn an_attached_client_replaces_the_rtp_far_end_until_detached() {
    const OFFER: &str = include_str!("../../../webrtc/tests/data/chromium-offer.sdp");
    let (engine, _events) = engine(1);
    let far = peer();
    let at = engine.open(1, 1, 0).unwrap();
    assert_eq!(engine.stream_at(at), Some(1));
    engine.command(1, Command::Start(params(far.local_addr().unwrap())));
    let tone: Samples = sine(1000.0, 8000, 0.5).into();
    let play = || Command::Play {
        id: 1,
        clips: vec![Clip::Audio(tone.clone())],
        forever: true,
    };
    engine.command(1, play());
    assert!(!receive_for(&far, Duration::from_millis(200)).is_empty());

    let released = Arc::new(AtomicBool::new(false));
    let leg = |released: &Arc<AtomicBool>| {
        let bind = || UdpSocket::bind((LOCALHOST, 0)).unwrap();
        let webrtc = bind();
        let local = webrtc.local_addr().unwrap();
        let (peer, _) = switchyard_webrtc::Peer::answer(Instant::now(), local, OFFER).unwrap();
        let released = Arc::clone(released);
        let release = Box::new(move || released.store(true, Relaxed));
        Box::new(PeerLeg::new(peer, (webrtc, bind()), Box::new(|| {}), release).unwrap())
    };
    let clients = |n: usize| {
        let end = Instant::now() + Duration::from_secs(2);
        while engine.stats().clients != n && Instant::now() < end {
            thread::sleep(Duration::from_millis(5));
        }
        engine.stats().clients == n
    };
    engine.command(1, Command::Attach(leg(&released)));
    assert!(clients(1));
    receive_for(&far, Duration::from_millis(60)); // sent before the attach
    assert!(receive_for(&far, Duration::from_millis(200)).is_empty());

    let (reply, back) = tokio::sync::oneshot::channel();
    engine.command(1, Command::Detach(reply));
    let taken = back.blocking_recv().expect("the leg comes back");
    assert!(clients(0));
    assert!(!receive_for(&far, Duration::from_millis(200)).is_empty());
    drop(taken);
    assert!(
        released.swap(false, Relaxed),
        "a dropped leg gives its ports back"
    );

    engine.command(1, Command::Attach(leg(&released)));
    assert!(clients(1));
    engine.command(1, Command::Close);
    assert!(clients(0));
    assert!(
        released.load(Relaxed),
        "the closed stream's leg gave its ports back"
    );
    assert_eq!(engine.stream_at(at), None);
}
