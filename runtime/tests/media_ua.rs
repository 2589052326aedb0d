//! The test user agent of `common/ua.rs` against a fake far end in this
//! file (SIP and RTP, no media engine), then against `switchyard serve`.
//!
//! The fake far end is `common/far.rs`.
//!
//! Against the real server, `call_server` + `hang_up` frame a test and
//! `assert_prompt_tone` checks received audio.

#[path = "common/far.rs"]
mod far;
#[path = "common/sip.rs"]
mod sip_common;
#[path = "common/ua.rs"]
mod ua;

use std::net::UdpSocket;
use std::thread;
use std::time::{Duration, Instant};

use far::{Answer, FarEnd, Rtp, far_audio};
use sip_common::{Config, Server};
use switchyard::media::g711::Law;
use switchyard::media::tone::sine;
use switchyard::sip::sdp::Codec;
use ua::{Call, Ua};

const HOLD: &str = "+15550100";
const PROMPT: &str = "+15550123";
const WAIT: Duration = Duration::from_secs(5);

/// The received audio holds a clean tone at `hz`: at least 200 ms of
/// audio came within 5 s, and some 100 ms window of it is mostly `hz`.
fn assert_prompt_tone(call: &Call, hz: f64) {
    assert!(
        call.wait_for_audio(200, WAIT),
        "less than 200 ms of audio within {WAIT:?}: {} packets",
        call.packets().len()
    );
    let purity = call.detect(hz, 100);
    assert!(
        purity > 0.8,
        "no clean {hz} Hz tone in the received audio (purity {purity:.2})"
    );
}

#[test]
fn a_call_to_the_fake_far_end_hears_its_tone_and_sends_audio_digits_and_info() {
    let far = FarEnd::start(Answer::Tone {
        hz: 1000.0,
        hangup_after: None,
    });
    let ua = Ua::new();
    let call = ua.call(far.sip, "+15550001", &Codec::ALL, true).unwrap();
    assert_eq!((call.codec, call.dtmf_pt), (Codec::PCMU, Some(ua::DTMF_PT)));
    far.wait("the ACK", |l| l.acks == 1);

    assert_prompt_tone(&call, 1000.0);
    assert!(call.detect(1400.0, 100) < 0.1, "1400 Hz is not there");
    assert_eq!(call.digits(), "9", "the far end's RFC 4733 digit");
    let packets: Vec<ua::Packet> = call.packets().into_iter().filter(|p| p.pt == 0).collect();
    assert!(packets.iter().all(|p| p.payload.len() == 160));
    // Arrivals are about 20 ms apart.
    let span = packets.last().unwrap().at - packets[0].at;
    let expected = Duration::from_millis(20) * (packets.len() as u32 - 1);
    assert!(
        span.abs_diff(expected) < Duration::from_millis(100),
        "{} packets over {span:?}",
        packets.len()
    );

    // Audio: 300 ms of 440 Hz, paced.
    let started = Instant::now();
    call.send_audio(&sine(440.0, 300, 0.5));
    assert!(call.wait_sent(WAIT));
    assert!(
        started.elapsed() >= Duration::from_millis(260),
        "{:?}",
        started.elapsed()
    );
    // DTMF 5: 8 packets with one timestamp and growing durations, the
    // marker on the first, then 3 end packets; audio continues after it.
    call.send_dtmf('5').unwrap();
    call.send_audio(&sine(440.0, 40, 0.5));
    call.info_dtmf('7').unwrap();
    far.wait("the audio after the digit", |l| l.rtp.len() >= 15 + 11 + 2);

    {
        let log = far.log();
        let heard = far_audio(&log, 0, Law::Mu);
        assert!(
            ua::tone_purity(&heard, 440.0, 100) > 0.8,
            "the far end heard no 440 Hz"
        );
        let seqs: Vec<u16> = log.rtp.iter().map(|p| p.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "seq not continuous: {seqs:?}"
        );
        let events: Vec<&Rtp> = log.rtp.iter().filter(|p| p.pt == ua::DTMF_PT).collect();
        assert_eq!(events.len(), 11);
        assert!(events[0].marker && events[1..].iter().all(|p| !p.marker));
        assert!(
            events
                .iter()
                .all(|p| p.ts == events[0].ts && p.payload[0] == 5)
        );
        let durations: Vec<u16> = events
            .iter()
            .map(|p| u16::from_be_bytes([p.payload[2], p.payload[3]]))
            .collect();
        assert_eq!(
            durations,
            [160, 320, 480, 640, 800, 960, 1120, 1280, 1280, 1280, 1280]
        );
        let ends: Vec<bool> = events.iter().map(|p| p.payload[1] & 0x80 != 0).collect();
        assert_eq!(ends.iter().filter(|e| **e).count(), 3);
        assert!(ends[8..].iter().all(|e| *e));
        // The audio after the event: its timestamp moved on by the event's
        // 11 packets, and a new talkspurt.
        let last_event = log.rtp.iter().rposition(|p| p.pt == ua::DTMF_PT).unwrap();
        let after = &log.rtp[last_event + 1];
        assert_eq!(after.pt, 0);
        assert!(after.marker);
        assert_eq!(after.ts, events[0].ts + 11 * 160);
        assert_eq!(
            log.requests,
            [(
                "INFO".to_string(),
                "Signal=7\r\nDuration=160\r\n".to_string()
            )]
        );
    }

    call.bye().unwrap();
    assert_eq!(far.log().requests.last().unwrap().0, "BYE");
    assert!(call.bye().is_err(), "a second bye is refused");
}

#[test]
fn a_pcma_only_offer_is_answered_pcma_and_decoded_as_a_law() {
    let far = FarEnd::start(Answer::Tone {
        hz: 1000.0,
        hangup_after: None,
    });
    let ua = Ua::new();
    let call = ua
        .call(far.sip, "+15550001", &[Codec::PCMA], false)
        .unwrap();
    assert_eq!((call.codec, call.dtmf_pt), (Codec::PCMA, None));
    assert_prompt_tone(&call, 1000.0);
    assert!(call.packets().iter().all(|p| p.pt == 8));
    call.bye().unwrap();
}

#[test]
fn the_far_ends_bye_is_answered_and_ends_the_call() {
    let far = FarEnd::start(Answer::Tone {
        hz: 1000.0,
        hangup_after: Some(Duration::from_millis(300)),
    });
    let ua = Ua::new();
    let call = ua.call(far.sip, "+15550001", &Codec::ALL, true).unwrap();
    call.wait_bye(WAIT).unwrap();
    far.wait("the 200 to its BYE", |l| l.bye_answered == Some(200));
    assert_eq!(
        call.requests()
            .iter()
            .map(|r| r.method.as_str())
            .collect::<Vec<_>>(),
        ["BYE"]
    );
    drop(call);
    // No BYE of ours after theirs.
    thread::sleep(Duration::from_millis(100));
    assert!(far.log().requests.is_empty());
}

#[test]
fn a_refused_call_is_acked_and_returns_the_status() {
    let far = FarEnd::start(Answer::Refuse(486));
    let ua = Ua::new();
    let err = ua
        .call(far.sip, "+15550001", &Codec::ALL, true)
        .err()
        .expect("refused");
    assert_eq!(err.status(), Some(486), "{err}");
    far.wait("the ACK of the 486", |l| l.acks == 1);
    assert_eq!(far.log().invites, 1);
}

#[test]
fn an_unanswered_invite_is_retransmitted_and_times_out() {
    // A socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let ua = Ua::with_timeout(Duration::from_millis(1800));
    let started = Instant::now();
    let err = ua
        .call(silent.local_addr().unwrap(), "+15550001", &Codec::ALL, true)
        .err()
        .expect("no answer");
    assert!(matches!(err, ua::UaError::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let mut buf = [0u8; 4096];
    let mut invites = 0;
    while silent.recv_from(&mut buf).is_ok() {
        invites += 1;
    }
    // At 0, 0.5 and 1.5 s.
    assert_eq!(invites, 3);
}

// --- against switchyard serve -------------------------------------------------

/// A server whose tenant `acme` answers `number` with the example guest
/// `guest`, and a call to it.
fn call_server(number: &str, guest: &str) -> (Server, Ua, Call) {
    let server = Server::serve(
        &Config::new()
            .tenant("acme", &["acme.test"])
            .number(number, guest),
    );
    let ua = Ua::new();
    let call = ua
        .call(server.udp, number, &Codec::ALL, true)
        .unwrap_or_else(|e| panic!("calling {number} ({guest}): {e}\n{}", server.output()));
    (server, ua, call)
}

/// The call is up, then ends with our BYE answered 200; the server lived.
fn hang_up(mut server: Server, ua: Ua, call: Call) {
    call.bye()
        .unwrap_or_else(|e| panic!("BYE: {e}\n{}", server.output()));
    drop(call);
    drop(ua);
    server.assert_alive();
}

#[test]
fn the_server_answers_a_call_to_the_hold_guest() {
    let (server, ua, call) = call_server(HOLD, "hold");
    assert!(call.remote_rtp.is_some(), "the answer names an RTP address");
    call.start_silence();
    thread::sleep(Duration::from_millis(200));
    assert!(call.sent_packets() >= 5);
    hang_up(server, ua, call);
}

#[test]
fn the_server_answers_a_call_to_the_prompt_guest() {
    let (server, ua, call) = call_server(PROMPT, "prompt");
    call.start_silence();
    thread::sleep(Duration::from_millis(200));
    hang_up(server, ua, call);
}
