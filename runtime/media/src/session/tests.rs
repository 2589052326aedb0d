//! Session tests on a virtual clock: no sockets, no sleeps.

use super::*;
use crate::codec::{Codec, DTMF_PT, Direction};
use crate::dtmf::Payload;
use crate::g711::Law;
use crate::tone::{goertzel, rms, sine};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

const SSRC: u32 = 0x5eed;
const PEER_SSRC: u32 = 0xfeed;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn params(remote: &str) -> StreamParams {
    StreamParams {
        codec: Codec::PCMU,
        dtmf_pt: Some(DTMF_PT),
        remote: Some(addr(remote)),
        direction: Direction::SendRecv,
    }
}

/// A sent packet, read back.
#[derive(Debug, Clone)]
struct Sent {
    to: SocketAddr,
    header: Header,
    payload: Vec<u8>,
}

impl Sent {
    fn pcm(&self) -> Vec<i16> {
        let mut out = Vec::new();
        Law::Mu.decode(&self.payload, &mut out);
        out
    }

    fn event(&self) -> Payload {
        assert_eq!(self.header.pt, DTMF_PT, "{self:?}");
        Payload::parse(&self.payload).unwrap()
    }
}

/// One session, a virtual clock and the peer's side of the wire.
struct Rig {
    s: Session,
    now: Instant,
    out: Vec<u8>,
    peer_seq: u16,
    peer_ts: u32,
}

impl Rig {
    fn new(timeout: Duration) -> Rig {
        let now = Instant::now();
        let config = SessionConfig {
            ssrc: SSRC,
            timeout,
            cname: "test@switchyard".into(),
            wall: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        };
        let mut s = Session::new(now, config);
        s.start(now, params("10.0.0.2:4000"));
        Rig {
            s,
            now,
            out: Vec::new(),
            peer_seq: 100,
            peer_ts: 8000,
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Twenty milliseconds pass, then a tick.
    fn tick(&mut self) -> Option<Sent> {
        self.advance(Duration::from_millis(20));
        let to = self.s.tick(self.now, &mut self.out)?;
        let p = rtp::parse(&self.out).unwrap();
        Some(Sent {
            to,
            header: p.header,
            payload: p.payload.to_vec(),
        })
    }

    fn ticks(&mut self, n: usize) -> Vec<Option<Sent>> {
        (0..n).map(|_| self.tick()).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.s.poll_event()).collect()
    }

    fn rtp(&mut self, from: &str, pt: u8, marker: bool, seq: u16, ts: u32, payload: &[u8]) {
        let header = Header {
            marker,
            pt,
            seq,
            ts,
            ssrc: PEER_SSRC,
        };
        let mut buf = Vec::new();
        header
            .build(&mut buf, payload.len())
            .copy_from_slice(payload);
        self.s.handle_rtp(self.now, addr(from), &buf);
    }

    /// The peer's next 20 ms of audio from the SDP address.
    fn peer_audio(&mut self, samples: &[i16]) {
        let mut payload = [0u8; FRAME_SAMPLES];
        Law::Mu.encode(samples, &mut payload);
        let (seq, ts) = (self.peer_seq, self.peer_ts);
        self.rtp("10.0.0.2:4000", 0, false, seq, ts, &payload);
        self.peer_seq = seq.wrapping_add(1);
        self.peer_ts = ts.wrapping_add(FRAME_SAMPLES as u32);
    }

    /// A tick in which the peer's packet arrived just before.
    fn exchange(&mut self, samples: &[i16]) -> Option<Sent> {
        self.peer_audio(samples);
        self.tick()
    }
}

fn audio(samples: &[i16]) -> Clip {
    Clip::Audio(Arc::from(samples))
}

fn level(pcm: &[i16]) -> i16 {
    pcm.iter().copied().max().unwrap_or(0)
}

#[test]
fn silence_flows_when_nothing_plays() {
    let mut rig = Rig::new(Duration::ZERO);
    let sent: Vec<Sent> = rig.ticks(3).into_iter().map(Option::unwrap).collect();
    assert_eq!(sent[0].to, addr("10.0.0.2:4000"));
    assert!(sent[0].header.marker, "the first packet starts a talkspurt");
    assert!(!sent[1].header.marker);
    for w in sent.windows(2) {
        assert_eq!(w[1].header.seq, w[0].header.seq.wrapping_add(1));
        assert_eq!(w[1].header.ts, w[0].header.ts.wrapping_add(160));
    }
    assert!(
        sent.iter()
            .all(|p| p.header.pt == 0 && p.payload == [0xff; 160])
    );
    assert_eq!(rig.s.stats().sent_packets, 3);
    assert_eq!(rig.s.stats().sent_octets, 480);
}

#[test]
fn nothing_goes_out_before_start_or_without_sending_but_time_runs() {
    let now = Instant::now();
    let config = SessionConfig {
        ssrc: 1,
        timeout: Duration::ZERO,
        cname: "x".into(),
        wall: UNIX_EPOCH,
    };
    let mut s = Session::new(now, config);
    let mut out = vec![1, 2, 3];
    assert_eq!(s.tick(now, &mut out), None);
    assert!(out.is_empty());
    s.start(
        now,
        StreamParams {
            remote: None,
            ..params("10.0.0.2:4000")
        },
    );
    assert_eq!(s.tick(now, &mut out), None, "no remote yet");
    s.start(
        now,
        StreamParams {
            direction: Direction::RecvOnly,
            ..params("10.0.0.2:4000")
        },
    );
    assert_eq!(s.tick(now, &mut out), None, "hold: we do not send");
    s.start(now, params("10.0.0.2:4000"));
    s.tick(now, &mut out).unwrap();
    let first = rtp::parse(&out).unwrap().header;
    s.tick(now, &mut out).unwrap();
    let second = rtp::parse(&out).unwrap().header;
    assert_eq!(
        second.seq,
        first.seq.wrapping_add(1),
        "no hole in the sequence"
    );
    assert_eq!(second.ts, first.ts.wrapping_add(160));
    // Three ticks before `first`: its timestamp is three frames on.
    let mut fresh = Session::new(
        now,
        SessionConfig {
            ssrc: 1,
            timeout: Duration::ZERO,
            cname: "x".into(),
            wall: UNIX_EPOCH,
        },
    );
    fresh.start(now, params("10.0.0.2:4000"));
    fresh.tick(now, &mut out).unwrap();
    assert_eq!(
        rtp::parse(&out).unwrap().header.ts.wrapping_add(3 * 160),
        first.ts
    );
}

#[test]
fn clips_play_in_order_then_play_done() {
    let mut rig = Rig::new(Duration::ZERO);
    let clips = vec![
        audio(&[8000; 300]),
        Clip::Silence { ms: 20 },
        audio(&[-8000; 100]),
    ];
    rig.s.play(7, clips, false);
    let sent: Vec<Vec<i16>> = rig.ticks(5).into_iter().map(|p| p.unwrap().pcm()).collect();
    // 300 loud, 160 silent, 100 negative, then padding: 560 samples.
    let all: Vec<i16> = sent.concat();
    assert!(all[..300].iter().all(|&s| (s - 8000).abs() < 300));
    assert!(all[300..460].iter().all(|&s| s == 0));
    assert!(all[460..560].iter().all(|&s| (s + 8000).abs() < 300));
    assert!(all[560..].iter().all(|&s| s == 0));
    assert_eq!(rig.events(), vec![Event::PlayDone(7)]);
    assert!(!rig.s.is_playing());
}

#[test]
fn play_done_comes_with_the_last_frame() {
    let mut rig = Rig::new(Duration::ZERO);
    rig.s.play(1, vec![audio(&[1000; 320])], false);
    rig.tick();
    assert_eq!(rig.events(), vec![]);
    rig.tick();
    assert_eq!(rig.events(), vec![Event::PlayDone(1)]);
    rig.s.play(2, vec![], false);
    rig.tick();
    assert_eq!(
        rig.events(),
        vec![Event::PlayDone(2)],
        "nothing to play is done at once"
    );
}

#[test]
fn stop_play_and_replacing_a_play_are_silent() {
    let mut rig = Rig::new(Duration::ZERO);
    rig.s.play(1, vec![audio(&[8000; 8000])], false);
    assert!(level(&rig.tick().unwrap().pcm()) > 7000);
    rig.s.play(2, vec![audio(&[4000; 8000])], false);
    let l = level(&rig.tick().unwrap().pcm());
    assert!((3800..4200).contains(&l), "{l}");
    rig.s.stop_play();
    assert_eq!(rig.tick().unwrap().payload, [0xff; 160]);
    rig.ticks(100);
    assert_eq!(rig.events(), vec![]);
}

#[test]
fn forever_loops_until_stopped() {
    let mut rig = Rig::new(Duration::ZERO);
    let ramp: Vec<i16> = (0..240).map(|i| i * 100).collect();
    rig.s.play(3, vec![audio(&ramp)], true);
    let all: Vec<i16> = rig
        .ticks(30)
        .into_iter()
        .flat_map(|p| p.unwrap().pcm())
        .collect();
    // Frame boundaries do not line up with the clip: it wraps mid-frame.
    for (i, &s) in all.iter().enumerate() {
        let want = ramp[i % 240];
        assert!(
            (s - want).abs() <= want.abs() / 16 + 16,
            "{i}: {s} vs {want}"
        );
    }
    assert!(rig.s.is_playing());
    assert_eq!(rig.events(), vec![]);
    // A loop of nothing ends instead of spinning.
    rig.s
        .play(4, vec![Clip::Silence { ms: 0 }, audio(&[])], true);
    rig.tick();
    assert!(!rig.s.is_playing());
    assert_eq!(rig.events(), vec![]);
}

#[test]
fn digits_replace_audio_with_rfc4733_events() {
    let mut rig = Rig::new(Duration::ZERO);
    rig.s.play(1, vec![audio(&[8000; 80_000])], false);
    let before = rig.tick().unwrap();
    rig.s.send_digits(9, "1#");
    let sent: Vec<Sent> = rig.ticks(30).into_iter().map(Option::unwrap).collect();
    // Digit 1: 8 packets + 2 more end packets, all stamped at its start.
    let start = before.header.ts.wrapping_add(160);
    for (i, p) in sent[..10].iter().enumerate() {
        let e = p.event();
        assert_eq!(p.header.ts, start, "{i}");
        assert_eq!(p.header.marker, i == 0);
        assert_eq!(e.event, 1);
        assert_eq!(e.end, i >= 7);
        assert_eq!(e.duration, 160 * (i.min(7) as u16 + 1));
        assert_eq!(p.header.seq, before.header.seq.wrapping_add(1 + i as u16));
    }
    // The 80 ms gap: what played carries on where it stopped.
    for p in &sent[10..14] {
        assert_eq!(p.header.pt, 0);
        assert!(level(&p.pcm()) > 7000);
    }
    assert_eq!(sent[14].header.ts, start.wrapping_add(14 * 160));
    assert_eq!(sent[14].event().event, 11);
    assert!(sent[14].header.marker);
    assert_eq!(sent[24].header.pt, 0, "audio again after #");
    assert_eq!(rig.events(), vec![Event::DigitsSent(9)]);
}

#[test]
fn digits_go_in_band_without_telephone_event() {
    let mut rig = Rig::new(Duration::ZERO);
    rig.s.start(
        rig.now,
        StreamParams {
            dtmf_pt: None,
            ..params("10.0.0.2:4000")
        },
    );
    rig.s.send_digits(1, "5");
    let pcm: Vec<i16> = rig
        .ticks(8)
        .into_iter()
        .flat_map(|p| p.unwrap().pcm())
        .collect();
    assert!(goertzel(&pcm, 770.0) > 0.02, "row");
    assert!(goertzel(&pcm, 1336.0) > 0.02, "column");
    let after = rig.ticks(3);
    assert!(
        after
            .iter()
            .all(|p| p.as_ref().unwrap().payload == [0xff; 160])
    );
    assert_eq!(rig.events(), vec![Event::DigitsSent(1)]);
}

#[test]
fn a_received_event_is_one_digit() {
    let mut rig = Rig::new(Duration::ZERO);
    let event = |end: bool, duration: u16| {
        Payload {
            event: 4,
            end,
            volume: 10,
            duration,
        }
        .to_bytes()
    };
    let from = "10.0.0.2:4000";
    for (i, d) in [160u16, 320, 480].into_iter().enumerate() {
        rig.rtp(from, DTMF_PT, i == 0, 10 + i as u16, 1000, &event(false, d));
    }
    for i in 0..3 {
        rig.rtp(from, DTMF_PT, false, 13 + i, 1000, &event(true, 640));
    }
    rig.rtp(from, DTMF_PT, true, 16, 2600, &event(false, 160));
    rig.rtp(from, DTMF_PT, false, 17, 2600, &[1, 2]); // short: ignored
    assert_eq!(rig.events(), vec![Event::Digit('4'), Event::Digit('4')]);
}

#[test]
fn received_audio_is_not_decoded_when_nothing_takes_it() {
    let mut rig = Rig::new(Duration::ZERO);
    for i in 0..6 {
        rig.exchange(&[1000 * (i + 1); 160]);
        assert_eq!(rig.s.poll_received(), None);
    }
    assert_eq!(rig.s.stats().received_packets, 6, "still counted for RTCP");
}

#[test]
fn received_audio_comes_out_after_the_jitter_delay() {
    let mut rig = Rig::new(Duration::ZERO);
    rig.s.listen(true);
    let mut heard = Vec::new();
    for i in 0..6 {
        rig.exchange(&[1000 * (i + 1); 160]);
        heard.push(rig.s.poll_received().map(|f| f[0]));
        assert_eq!(rig.s.poll_received(), None, "once per tick");
    }
    let near = |a: Option<i16>, b: i16| a.is_some_and(|a| (a - b).abs() < 100);
    assert_eq!(&heard[..2], &[None, None], "40 ms of playout delay");
    assert!(
        near(heard[2], 1000) && near(heard[3], 2000) && near(heard[5], 4000),
        "{heard:?}"
    );
    assert_eq!(rig.s.stats().received_packets, 6);
}

#[test]
fn an_l16_stream_carries_audio_bit_exact_both_ways() {
    let mut rig = Rig::new(Duration::ZERO);
    let l16 = StreamParams {
        codec: Codec::L16,
        dtmf_pt: None,
        ..params("10.0.0.2:4000")
    };
    rig.s.start(rig.now, l16);
    rig.s.listen(true);
    // A frame no G.711 law gives back unchanged.
    let frame: Vec<i16> = (0..160).map(|i| (i * 197 - 15_000) as i16).collect();
    rig.s.relay(&frame);
    let sent = rig.tick().unwrap();
    assert_eq!(sent.header.pt, Codec::L16.pt);
    let mut back = [0i16; 160];
    assert_eq!(sent.payload.len(), 320);
    assert_eq!(Format::L16.decode(&sent.payload, &mut back), 160);
    assert_eq!(back.as_slice(), frame.as_slice(), "sent as it was mixed");

    let mut heard = None;
    for i in 0..4u16 {
        let mut payload = [0u8; 320];
        Format::L16.encode(&frame, &mut payload);
        let (seq, ts) = (rig.peer_seq + i, rig.peer_ts + 160 * u32::from(i));
        rig.rtp("10.0.0.2:4000", Codec::L16.pt, false, seq, ts, &payload);
        rig.tick();
        heard = heard.or(rig.s.poll_received().map(|f| f.to_vec()));
    }
    assert_eq!(heard.as_deref(), Some(frame.as_slice()), "received as sent");
}

#[test]
fn relayed_audio_replaces_silence_but_not_a_play() {
    let mut rig = Rig::new(Duration::ZERO);
    rig.s.relay(&[3000; 160]);
    assert!((2900..3100).contains(&level(&rig.tick().unwrap().pcm())));
    assert_eq!(
        rig.tick().unwrap().payload,
        [0xff; 160],
        "a relayed frame goes once"
    );
    rig.s.play(1, vec![audio(&[-8000; 800])], false);
    rig.s.relay(&[3000; 160]);
    assert!(level(&rig.tick().unwrap().pcm()) < 0);
}

#[test]
fn latching_follows_the_source_but_not_a_hijacker() {
    let mut rig = Rig::new(Duration::ZERO);
    assert_eq!(rig.tick().unwrap().to, addr("10.0.0.2:4000"));
    // Behind a NAT, the packets come from elsewhere: follow them.
    rig.rtp("203.0.113.5:30000", 0, false, 1, 160, &[0xff; 160]);
    assert_eq!(rig.tick().unwrap().to, addr("203.0.113.5:30000"));
    // RTP bleed: another source while the latched one is alive is dropped.
    for i in 0..50 {
        rig.rtp(
            "198.51.100.9:666",
            0,
            false,
            2 + i,
            320 + 160 * u32::from(i),
            &[0; 160],
        );
        rig.rtp(
            "203.0.113.5:30000",
            0,
            false,
            2 + i,
            320 + 160 * u32::from(i),
            &[0xff; 160],
        );
        assert_eq!(rig.tick().unwrap().to, addr("203.0.113.5:30000"));
    }
    assert_eq!(rig.s.stats().foreign, 50);
    assert_eq!(rig.s.stats().received_packets, 51);
    // Silent for 1.9 s: still not taken over.
    rig.advance(Duration::from_millis(1900));
    rig.rtp("198.51.100.9:666", 0, false, 60, 9000, &[0; 160]);
    assert_eq!(rig.tick().unwrap().to, addr("203.0.113.5:30000"));
    // Silent for 2 s: the new source is taken (the peer moved).
    rig.advance(Duration::from_millis(100));
    rig.rtp("198.51.100.9:666", 0, false, 61, 9160, &[0; 160]);
    assert_eq!(rig.tick().unwrap().to, addr("198.51.100.9:666"));
    // A re-INVITE to a new address drops the latch.
    rig.s.start(rig.now, params("10.0.0.3:5000"));
    assert_eq!(rig.tick().unwrap().to, addr("10.0.0.3:5000"));
    // One without an address (c=0.0.0.0) stops sending, latched or not.
    rig.rtp("198.51.100.9:666", 0, false, 62, 9320, &[0; 160]);
    rig.s.start(
        rig.now,
        StreamParams {
            remote: None,
            ..params("10.0.0.3:5000")
        },
    );
    rig.rtp("198.51.100.9:666", 0, false, 63, 9480, &[0; 160]);
    assert!(rig.tick().is_none());
}

#[test]
fn timeout_fires_once_and_pauses_on_hold() {
    let mut rig = Rig::new(Duration::from_secs(1));
    rig.ticks(49);
    assert_eq!(rig.events(), vec![]);
    rig.tick();
    assert_eq!(rig.events(), vec![Event::Timeout]);
    rig.ticks(100);
    assert_eq!(rig.events(), vec![], "once");
    // A packet re-arms it (the tick it came in counts 20 ms).
    rig.exchange(&[0; 160]);
    rig.ticks(29);
    // We go on hold (we only send): the clock stops at 600 ms...
    rig.s.start(
        rig.now,
        StreamParams {
            direction: Direction::SendOnly,
            ..params("10.0.0.2:4000")
        },
    );
    rig.ticks(500);
    assert_eq!(rig.events(), vec![]);
    // ...and resumes when we receive again.
    rig.s.start(rig.now, params("10.0.0.2:4000"));
    rig.ticks(19);
    assert_eq!(rig.events(), vec![]);
    rig.tick();
    assert_eq!(rig.events(), vec![Event::Timeout]);
    // RTCP counts as being alive too.
    let mut rr = Vec::new();
    rtcp::write_rr(&mut rr, PEER_SSRC, &[]);
    rig.s.handle_rtcp(rig.now, addr("10.0.0.2:4001"), &rr);
    rig.ticks(49);
    assert_eq!(rig.events(), vec![]);
}

fn recorded(events: Vec<Event>) -> (u64, Vec<i16>, RecordEnd) {
    match &events[..] {
        [
            Event::Recorded {
                id,
                samples,
                ended_by,
            },
        ] => (*id, samples.clone(), *ended_by),
        other => panic!("{other:?}"),
    }
}

#[test]
fn recording_stops_at_max_length() {
    let mut rig = Rig::new(Duration::ZERO);
    rig.s.record(
        5,
        RecordSpec {
            max_ms: 200,
            silence_ms: 0,
            beep: false,
            trim_silence: false,
        },
    );
    for _ in 0..9 {
        rig.exchange(&[5000; 160]);
    }
    assert_eq!(rig.events(), vec![]);
    rig.exchange(&[5000; 160]);
    let (id, samples, end) = recorded(rig.events());
    assert_eq!((id, samples.len(), end), (5, 1600, RecordEnd::MaxLength));
    // The first two frames are the jitter buffer's delay: silence.
    assert!(samples[..320].iter().all(|&s| s == 0));
    assert!(samples[320..].iter().all(|&s| (s - 5000).abs() < 200));
}

#[test]
fn recording_stops_after_silence_and_trims_it() {
    let mut rig = Rig::new(Duration::ZERO);
    let spec = RecordSpec {
        max_ms: 60_000,
        silence_ms: 500,
        beep: false,
        trim_silence: true,
    };
    rig.s.record(6, spec);
    let speech = sine(440.0, 20, 0.3);
    for _ in 0..10 {
        rig.exchange(&speech);
    }
    // 500 ms of silence is 25 frames, the last two still in the jitter
    // buffer after these 26.
    for _ in 0..26 {
        rig.exchange(&[0; 160]);
    }
    assert_eq!(rig.events(), vec![]);
    rig.exchange(&[0; 160]);
    let (_, samples, end) = recorded(rig.events());
    assert_eq!(end, RecordEnd::Silence);
    // The leading delay and the 500 ms of trailing silence are trimmed.
    assert_eq!(samples.len(), 10 * 160);
    assert!(rms(&samples) > 0.15);
}

#[test]
fn recording_from_the_start_of_silence_ends_too() {
    let mut rig = Rig::new(Duration::ZERO);
    rig.s.record(
        1,
        RecordSpec {
            max_ms: 0,
            silence_ms: 1000,
            beep: false,
            trim_silence: true,
        },
    );
    rig.ticks(50);
    let (_, samples, end) = recorded(rig.events());
    assert_eq!((samples.len(), end), (0, RecordEnd::Silence));
}

#[test]
fn the_beep_plays_before_capture_and_stop_record_ends_it() {
    let mut rig = Rig::new(Duration::ZERO);
    rig.s.play(1, vec![audio(&[100; 80_000])], false);
    rig.s.record(
        8,
        RecordSpec {
            max_ms: 10_000,
            silence_ms: 0,
            beep: true,
            trim_silence: false,
        },
    );
    let beep: Vec<i16> = (0..25)
        .flat_map(|_| rig.exchange(&[7000; 160]).unwrap().pcm())
        .collect();
    assert!(goertzel(&beep, 1000.0) > 0.2, "{}", goertzel(&beep, 1000.0));
    assert!(
        level(&rig.tick().unwrap().pcm()) < 200,
        "the play resumes after the beep"
    );
    for _ in 0..4 {
        rig.exchange(&[7000; 160]);
    }
    rig.s.stop_record(RecordEnd::FinishKey);
    let (id, samples, end) = recorded(rig.events());
    // 5 ticks captured after the beep, plus the frame still in the jitter
    // buffer when the key came; the peer's audio heard throughout.
    assert_eq!((id, samples.len(), end), (8, 960, RecordEnd::FinishKey));
    assert!(samples.iter().all(|&s| (s - 7000).abs() < 300));
    rig.s.stop_record(RecordEnd::FinishKey);
    assert_eq!(rig.events(), vec![], "nothing to stop");
}

#[test]
fn a_new_recording_ends_the_old_one_first() {
    let mut rig = Rig::new(Duration::ZERO);
    let spec = RecordSpec {
        max_ms: 10_000,
        silence_ms: 0,
        beep: false,
        trim_silence: false,
    };
    rig.s.record(1, spec.clone());
    rig.ticks(2);
    rig.s.record(2, spec);
    let (id, samples, end) = recorded(rig.events());
    assert_eq!((id, samples.len(), end), (1, 320, RecordEnd::Hangup));
    assert!(rig.s.is_recording());
}

/// The peer's side of RTCP: parse what the session sent.
fn report(packet: &[u8]) -> (Option<rtcp::SenderInfo>, Vec<rtcp::ReportBlock>, bool) {
    let mut info = None;
    let mut blocks = Vec::new();
    let mut sdes = false;
    for p in rtcp::packets(packet) {
        match p.unwrap() {
            rtcp::Packet::Sender {
                info: i,
                blocks: b,
                ssrc,
            } => {
                assert_eq!(ssrc, SSRC);
                info = Some(i);
                blocks.extend(b);
            }
            rtcp::Packet::Receiver { blocks: b, .. } => blocks.extend(b),
            rtcp::Packet::Other(rtcp::PT_SDES) => sdes = true,
            rtcp::Packet::Other(pt) => panic!("{pt}"),
        }
    }
    (info, blocks, sdes)
}

#[test]
fn a_sender_report_comes_within_the_randomised_five_seconds() {
    let mut rig = Rig::new(Duration::ZERO);
    let start = rig.now;
    let (to, packet) = loop {
        rig.tick();
        if let Some(r) = rig.s.poll_rtcp(rig.now) {
            break r;
        }
        assert!(rig.now - start <= Duration::from_millis(7500));
    };
    assert!(rig.now - start >= Duration::from_millis(2500));
    assert_eq!(to, addr("10.0.0.2:4001"), "RTP port + 1");
    let (info, blocks, sdes) = report(&packet);
    let info = info.expect("we sent: an SR");
    let stats = rig.s.stats();
    assert_eq!(u64::from(info.packets), stats.sent_packets);
    assert_eq!(u64::from(info.octets), stats.sent_octets);
    assert!(blocks.is_empty(), "nothing received yet");
    assert!(sdes);
    let secs = (info.ntp >> 32) - 2_208_988_800;
    assert_eq!(secs, 1_700_000_000 + (rig.now - start).as_secs());
    assert_eq!(rig.s.poll_rtcp(rig.now), None, "not again at once");
}

#[test]
fn receiver_report_carries_loss_jitter_and_lsr() {
    let mut rig = Rig::new(Duration::ZERO);
    // The peer sends an SR first, so our block echoes it.
    let peer_info = rtcp::SenderInfo {
        ntp: 0x1111_2222_3333_4444,
        ..Default::default()
    };
    let mut sr = Vec::new();
    rtcp::write_sr(&mut sr, PEER_SSRC, &peer_info, &[]);
    rig.s.handle_rtcp(rig.now, addr("10.0.0.2:4001"), &sr);
    let sr_at = rig.now;
    // 100 packets, every tenth lost.
    for i in 0..100 {
        if i % 10 == 3 {
            rig.peer_seq += 1;
            rig.peer_ts += 160;
            rig.tick();
        } else {
            rig.exchange(&[0; 160]);
        }
    }
    // We stop sending (hold): the next report is an RR.
    rig.s.start(
        rig.now,
        StreamParams {
            direction: Direction::RecvOnly,
            ..params("10.0.0.2:4000")
        },
    );
    // The report due next still has our earlier packets to tell: an SR.
    rig.advance(Duration::from_secs(8));
    let (_, first) = rig.s.poll_rtcp(rig.now).unwrap();
    assert!(report(&first).0.is_some());
    rig.advance(Duration::from_secs(8));
    let (to, packet) = rig.s.poll_rtcp(rig.now).unwrap();
    assert_eq!(to, addr("10.0.0.2:4001"), "where the peer's RTCP came from");
    let (info, blocks, _) = report(&packet);
    assert!(info.is_none(), "nothing sent since the last report: RR");
    let b = blocks[0];
    assert_eq!(b.ssrc, PEER_SSRC);
    assert_eq!(b.lost, 10);
    assert_eq!(b.highest_seq, 100 + 99);
    assert_eq!(b.lsr, 0x2222_3333);
    let dlsr = rtcp::from_units(b.dlsr);
    let expected = rig.now - sr_at;
    assert!(
        dlsr.abs_diff(expected) < Duration::from_millis(1),
        "{dlsr:?} vs {expected:?}"
    );
    assert_eq!(rig.s.stats().lost, 10);
}

#[test]
fn the_peers_report_about_us_is_kept() {
    let mut rig = Rig::new(Duration::ZERO);
    rig.ticks(300);
    let (_, ours) = std::iter::from_fn(|| {
        rig.tick();
        rig.s.poll_rtcp(rig.now)
    })
    .next()
    .unwrap();
    let (info, _, _) = report(&ours);
    let lsr = rtcp::ntp_middle(info.unwrap().ntp);
    // The peer answers 100 ms later, having held our SR for 60 ms.
    rig.advance(Duration::from_millis(100));
    let block = rtcp::ReportBlock {
        ssrc: SSRC,
        fraction_lost: 26,
        lost: 3,
        highest_seq: 1,
        jitter: 40,
        lsr,
        dlsr: rtcp::to_units(Duration::from_millis(60)),
    };
    let mut rr = Vec::new();
    rtcp::write_rr(&mut rr, PEER_SSRC, &[block]);
    rtcp::write_sdes(&mut rr, PEER_SSRC, "peer");
    rig.s.handle_rtcp(rig.now, addr("10.0.0.2:4001"), &rr);
    let peer = rig.s.stats().peer.unwrap();
    assert_eq!((peer.fraction_lost, peer.lost, peer.jitter), (26, 3, 40));
    let rtt = peer.rtt.unwrap();
    assert!(
        rtt.abs_diff(Duration::from_millis(40)) < Duration::from_millis(1),
        "{rtt:?}"
    );
    // RTCP from another host is not the peer's.
    rig.s.handle_rtcp(rig.now, addr("198.51.100.9:4001"), &rr);
    assert_eq!(
        rig.s.stats().foreign,
        0,
        "nothing latched yet: anyone may report"
    );
    rig.exchange(&[0; 160]);
    rig.s.handle_rtcp(rig.now, addr("198.51.100.9:4001"), &rr);
    assert_eq!(rig.s.stats().foreign, 1);
}

#[test]
fn rtcp_on_the_rtp_port_and_garbage_are_ignored() {
    let mut rig = Rig::new(Duration::ZERO);
    let mut sr = Vec::new();
    rtcp::write_sr(&mut sr, PEER_SSRC, &rtcp::SenderInfo::default(), &[]);
    rig.s.handle_rtp(rig.now, addr("10.0.0.2:4000"), &sr);
    assert_eq!(rig.s.stats().ignored, 1);
    assert_eq!(
        rig.s.stats().remote,
        Some(addr("10.0.0.2:4000")),
        "RTCP does not latch"
    );
    // Deterministic noise of every length: never a panic.
    let mut state = 1u64;
    for len in 0..400 {
        let bytes: Vec<u8> = (0..len).map(|_| splitmix(&mut state) as u8).collect();
        rig.s.handle_rtp(rig.now, addr("10.0.0.2:4000"), &bytes);
        rig.s.handle_rtcp(rig.now, addr("10.0.0.2:4001"), &bytes);
        let mut v2 = bytes.clone();
        if let Some(b) = v2.first_mut() {
            *b = 0x80 | (*b & 0x3f);
        }
        rig.s.handle_rtp(rig.now, addr("10.0.0.2:4000"), &v2);
        rig.s.handle_rtcp(rig.now, addr("10.0.0.2:4001"), &v2);
        rig.tick();
    }
    assert!(rig.s.stats().malformed > 0);
}

/// Two sessions back to back over a virtual network with latency, jitter
/// and loss (str0m's `Pair`): A at 10.0.0.1:4000, B at 10.0.0.2:5000.
struct Pair {
    a: Session,
    b: Session,
    now: Instant,
    /// In flight: when it lands, whether it goes to B, RTCP or not, bytes.
    wire: Vec<(Instant, bool, bool, Vec<u8>)>,
    latency: Duration,
    /// Every `lose`-th RTP packet from A is lost (0: none).
    lose: u64,
    sent: u64,
    out: Vec<u8>,
}

const A: &str = "10.0.0.1:4000";
const B: &str = "10.0.0.2:5000";

impl Pair {
    fn new(latency: Duration, lose: u64) -> Pair {
        let now = Instant::now();
        let session = |ssrc, remote: &str| {
            let config = SessionConfig {
                ssrc,
                timeout: Duration::from_secs(5),
                cname: format!("{ssrc}"),
                wall: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            };
            let mut s = Session::new(now, config);
            s.start(now, params(remote));
            s
        };
        Pair {
            a: session(1, B),
            b: session(2, A),
            now,
            wire: Vec::new(),
            latency,
            lose,
            sent: 0,
            out: Vec::new(),
        }
    }

    /// 20 ms: deliver what landed, tick both, put what they send on the wire.
    fn progress(&mut self) {
        self.now += Duration::from_millis(20);
        let now = self.now;
        let (landed, flying) = std::mem::take(&mut self.wire)
            .into_iter()
            .partition(|w| w.0 <= now);
        self.wire = flying;
        for (_, to_b, is_rtcp, bytes) in landed {
            let (to, from) = if to_b {
                (&mut self.b, A)
            } else {
                (&mut self.a, B)
            };
            if is_rtcp {
                let mut from = addr(from);
                from.set_port(from.port() + 1);
                to.handle_rtcp(now, from, &bytes);
            } else {
                to.handle_rtp(now, addr(from), &bytes);
            }
        }
        for to_b in [true, false] {
            let s = if to_b { &mut self.a } else { &mut self.b };
            if s.tick(now, &mut self.out).is_some() {
                self.sent += u64::from(to_b);
                let lost = to_b && self.lose > 0 && self.sent.is_multiple_of(self.lose);
                // Jitter: every third packet takes 15 ms longer.
                let extra = if self.sent.is_multiple_of(3) {
                    Duration::from_millis(15)
                } else {
                    Duration::ZERO
                };
                if !lost {
                    self.wire
                        .push((now + self.latency + extra, to_b, false, self.out.clone()));
                }
            }
            if let Some((_, report)) = s.poll_rtcp(now) {
                self.wire.push((now + self.latency, to_b, true, report));
            }
        }
    }
}

#[test]
fn two_sessions_talk_through_a_lossy_jittery_network() {
    let mut pair = Pair::new(Duration::from_millis(30), 10);
    pair.a.play(1, vec![audio(&sine(1000.0, 4000, 0.5))], false);
    pair.b.record(
        2,
        RecordSpec {
            max_ms: 3000,
            silence_ms: 0,
            beep: false,
            trim_silence: false,
        },
    );
    let mut events = Vec::new();
    for i in 0..800 {
        if i == 250 {
            pair.a.send_digits(3, "12");
        }
        pair.progress();
        events.extend(std::iter::from_fn(|| pair.b.poll_event()));
        events.extend(std::iter::from_fn(|| pair.a.poll_event()));
    }
    let digits: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::Digit(_)))
        .collect();
    assert_eq!(digits, [&Event::Digit('1'), &Event::Digit('2')]);
    assert!(events.contains(&Event::DigitsSent(3)));
    assert!(events.contains(&Event::PlayDone(1)));
    assert!(!events.contains(&Event::Timeout));
    let Some(Event::Recorded {
        samples, ended_by, ..
    }) = events.iter().find(|e| matches!(e, Event::Recorded { .. }))
    else {
        panic!("{events:?}")
    };
    assert_eq!(*ended_by, RecordEnd::MaxLength);
    assert!(
        goertzel(&samples[8000..], 1000.0) > 0.15,
        "the tone, holes and all"
    );
    // B's reports told A of a tenth lost; A measured the round trip: 30 ms
    // each way, delivered at the next 20 ms step, so 40 + 40.
    let peer = pair.a.stats().peer.expect("B reported");
    assert!((20..=32).contains(&peer.fraction_lost), "{peer:?}");
    let rtt = peer.rtt.expect("B echoed A's SR");
    assert!(
        rtt.abs_diff(Duration::from_millis(80)) <= Duration::from_millis(1),
        "{rtt:?}"
    );
    let b = pair.b.stats();
    assert!(b.jitter > 0, "{b:?}");
    assert!(b.jitter_buffer.late < 5, "{:?}", b.jitter_buffer);
}
