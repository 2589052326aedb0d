//! Calls with real audio: the test user agent (`common/ua.rs`) calls
//! `switchyard serve` over 127.0.0.1 and listens to the RTP it gets.
//!
//! * The IVR greeting is heard exactly as the cache stored its synthesis,
//!   which `GET /media/{id}` serves; an RFC 4733 digit interrupts the menu
//!   and takes the voicemail branch; the tone sent after the beep is in
//!   the stored recording, which the Recordings routes serve.
//! * A WAV prompt at a URL (16 kHz, 1 kHz tone) is fetched once, resampled
//!   and heard as a clean tone over PCMA.
//! * The same `say` on two calls runs the synthesizer once; a digit in a
//!   gather takes the guest's branch ("You pressed 5").
//! * A caller that sends no RTP is hung up after the media timeout.
//! * A recorded `dial` to a fake far end (`common/far.rs`) is anchored:
//!   each side hears the other's tone, a digit crosses the bridge, and the
//!   recording holds both directions.
//!
//! The servers speak with the `tone` synthesizer (`ToneSpeech`: a tone per
//! text, no program), so these tests need no espeak-ng and can compute
//! what a caller must hear. One test runs the real espeak-ng behind a
//! wrapper script that logs every text it is asked for, so it sees each
//! synthesis; it needs espeak-ng installed.

#[path = "common/far.rs"]
mod far;
#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;
#[path = "common/ua.rs"]
mod ua;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use far::{Answer, FarEnd, far_audio};
use http::{Auth, account_auth};
use sip_common::{Config, Server, require_tool, wait_until};
use switchyard::media::audio::decode_wav;
use switchyard::media::g711::Law;
use switchyard::media::tone::{goertzel, sine};
use switchyard::media::tone_speech::ToneSpeech;
use switchyard::sip::sdp::Codec;
use ua::{Call, Ua, tone_purity};

const WAIT: Duration = Duration::from_secs(20);

fn require_espeak() {
    require_tool("espeak-ng", "--version", "espeak-ng");
}

/// A server whose synthesizer is espeak-ng, logging each text to `{dir}/texts`.
fn espeak_server(config: Config) -> Server {
    let server = Server::serve(
        &config
            .media("synthesizer = \"espeak-ng\"")
            .media("tts = \"{dir}/tts\""),
    );
    let dir = server.dir.path();
    let script = format!(
        "#!/bin/sh\ntext=$(cat)\nprintf '%s\\n' \"$text\" >> '{}'\nprintf '%s' \"$text\" | exec espeak-ng \"$@\"\n",
        dir.join("texts").display()
    );
    let path = dir.join("tts");
    std::fs::write(&path, script).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    server
}

/// Whether the prompt cache holds `text` as the tone synthesizer says it.
fn cached_speech(server: &Server, text: &str) -> bool {
    let spoken = ToneSpeech::samples(text, None, None);
    wavs(&data(server).join("media"))
        .iter()
        .any(|(_, wav)| decode_wav(wav).is_ok_and(|samples| samples == spoken))
}

/// The texts synthesized so far, one per synthesis.
fn synthesized(server: &Server) -> Vec<String> {
    std::fs::read_to_string(server.dir.path().join("texts"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn data(server: &Server) -> PathBuf {
    server.dir.path().join("data")
}

/// The WAV files in `dir`, by file stem.
fn wavs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, Vec<u8>)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            (stem, std::fs::read(&p).unwrap())
        })
        .collect();
    found.sort();
    found
}

/// Where `needle` starts in `haystack`, exactly.
fn find(haystack: &[i16], needle: &[i16]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What a peer decodes from `samples` sent with `law`.
fn through(law: Law, samples: &[i16]) -> Vec<i16> {
    samples
        .iter()
        .map(|s| law.decode_sample(law.encode_sample(*s)))
        .collect()
}

#[test]
fn the_ivr_greeting_is_the_cached_synthesis_a_digit_takes_voicemail_and_the_message_is_recorded() {
    let mut server = Server::serve(&Config::new().tenant("acme", &[]).number("100", "ivr"));
    let ua = Ua::new();
    let call = ua
        .call(server.udp, "100", &[Codec::PCMU], true)
        .unwrap_or_else(|e| panic!("calling the IVR: {e}\n{}", server.output()));
    call.start_silence();
    assert!(
        call.wait_for_audio(2_500, WAIT),
        "no greeting within {WAIT:?}: {} packets\n{}",
        call.packets().len(),
        server.output()
    );

    // The greeting is one of the cached prompts, sample for sample.
    let heard = call.audio();
    let cached = wavs(&data(&server).join("media"));
    let greeting = cached.iter().find(|(_, wav)| {
        let samples = decode_wav(wav).unwrap();
        let start = &through(Law::Mu, &samples)[..samples.len().min(4_000)];
        find(&heard, start).is_some()
    });
    let Some((id, wav)) = greeting else {
        panic!(
            "the received audio matches none of the {} cached prompts",
            cached.len()
        );
    };
    assert_eq!(
        decode_wav(wav).unwrap(),
        ToneSpeech::samples("Welcome to Switchyard", None, None),
        "the greeting is the synthesis of the IVR's welcome"
    );
    let http::Answer {
        status,
        body: served,
        ..
    } = http::get(server.http, &format!("/media/{id}"), &Auth::none());
    assert_eq!(status, 200);
    assert_eq!(&served, wav, "GET /media/{id} serves the stored prompt");

    // 3 interrupts the menu and leaves a message after the beep.
    call.send_dtmf('3').unwrap();
    let beep = wait_until(WAIT, || {
        let audio = call.audio();
        let tail = &audio[audio.len().saturating_sub(8_000)..];
        tone_purity(tail, 1_000.0, 100) > 0.8
    });
    assert!(beep, "no beep after pressing 3\n{}", server.output());
    // Recording starts when the 500 ms beep ends.
    let quiet = wait_until(WAIT, || {
        let audio = call.audio();
        let tail = &audio[audio.len().saturating_sub(800)..];
        tone_purity(tail, 1_000.0, 100) < 0.5
    });
    assert!(quiet, "the beep never ended");
    assert!(cached_speech(&server, "Leave a message after the beep"));
    call.send_audio(&sine(440.0, 2_000, 0.5));
    assert!(call.wait_sent(WAIT));
    call.send_dtmf('#').unwrap();
    call.wait_bye(WAIT).unwrap_or_else(|e| {
        panic!(
            "the IVR did not hang up after the message: {e}\n{}",
            server.output()
        )
    });
    assert!(cached_speech(&server, "Thank you, goodbye"));

    // The message is stored with its metadata and served by REST.
    let mut recordings = Vec::new();
    assert!(wait_until(WAIT, || {
        recordings = wavs(&data(&server).join("recordings"));
        !recordings.is_empty()
    }));
    let (id, wav) = &recordings[0];
    let samples = decode_wav(wav).unwrap();
    assert!(
        tone_purity(&samples, 440.0, 100) > 0.8,
        "the recording holds the 440 Hz tone"
    );
    let seconds = samples.len() as f64 / 8_000.0;
    assert!((1.9..10.0).contains(&seconds), "recording of {seconds} s");
    let status = http::get(server.http, &format!("/v1/recordings/{id}"), &Auth::none()).status;
    assert_eq!(status, 401, "recordings need the account's key");
    let auth = account_auth(&server, "acme");
    let http::Answer {
        status, body: meta, ..
    } = http::get(server.http, &format!("/v1/recordings/{id}"), &auth);
    assert_eq!(status, 200);
    let meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    assert_eq!(meta["tenant"], "acme");
    assert!(meta["call_id"].as_str().unwrap().starts_with("CA"));
    let http::Answer {
        status,
        body: audio,
        ..
    } = http::get(server.http, &format!("/v1/recordings/{id}/audio"), &auth);
    assert_eq!((status, &audio), (200, wav));
    drop(call);
    drop(ua);
    server.assert_alive();
}

/// A 16 kHz WAV of a 1 kHz tone, served on 127.0.0.1 to every GET.
fn tone_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let samples: Vec<i16> = (0..16_000)
        .map(|i| {
            ((i as f64 * 2.0 * std::f64::consts::PI * 1_000.0 / 16_000.0).sin() * 16_000.0) as i16
        })
        .collect();
    let mut wav = Vec::new();
    let data_len = samples.len() as u32 * 2;
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    for field in [
        16u32.to_le_bytes().as_slice(),
        &1u16.to_le_bytes(),
        &1u16.to_le_bytes(),
    ] {
        wav.extend_from_slice(field);
    }
    wav.extend_from_slice(&16_000u32.to_le_bytes());
    wav.extend_from_slice(&32_000u32.to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        wav.extend_from_slice(&s.to_le_bytes());
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    thread::spawn(move || {
        // Bounded: serves for at most a minute.
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            let Ok((mut stream, _)) = listener.accept() else {
                thread::sleep(Duration::from_millis(10));
                continue;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                wav.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&wav);
        }
    });
    (addr, hits)
}

#[test]
fn a_wav_prompt_at_a_url_is_fetched_once_resampled_and_heard_over_pcma() {
    let (web, hits) = tone_server();
    let mut server = Server::serve(
        &Config::new()
            .media("fetch_private = true")
            .tenant("acme", &[])
            .number("200", "player"),
    );
    let url = format!("http://{web}/tone.wav");
    let ua = Ua::new();
    for round in 0..2 {
        let call = ua
            .call_with(
                server.udp,
                "200",
                &[Codec::PCMA],
                true,
                &[("X-Play-Url", &url)],
            )
            .unwrap_or_else(|e| panic!("call {round}: {e}\n{}", server.output()));
        assert_eq!(call.codec, Codec::PCMA);
        call.start_silence();
        call.wait_bye(WAIT).unwrap_or_else(|e| {
            panic!(
                "call {round} did not end after the prompt: {e}\n{}",
                server.output()
            )
        });
        let audio = call.audio();
        let seconds = audio.len() as f64 / 8_000.0;
        assert!(
            (0.9..1.5).contains(&seconds),
            "call {round}: {seconds} s of audio"
        );
        assert!(
            tone_purity(&audio, 1_000.0, 100) > 0.8,
            "call {round}: the 1 kHz prompt is heard as a clean tone"
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the second call plays the cached copy"
    );
    drop(ua);
    server.assert_alive();
}

#[test]
fn espeak_ng_speaks_a_repeated_say_once_and_a_gather_digit_takes_its_branch() {
    require_espeak();
    let mut server = espeak_server(Config::new().tenant("acme", &[]).number("300", "player"));
    let ua = Ua::new();
    let text = "This sentence is synthesized only once";
    for round in 0..2 {
        let headers = [("X-Say", text), ("X-Gather", "yes")];
        let call: Call = ua
            .call_with(server.udp, "300", &Codec::ALL, true, &headers)
            .unwrap_or_else(|e| panic!("call {round}: {e}\n{}", server.output()));
        call.start_silence();
        assert!(
            call.wait_for_audio(500, WAIT),
            "call {round}: no prompt audio"
        );
        call.send_dtmf('5').unwrap();
        call.wait_bye(WAIT).unwrap_or_else(|e| {
            panic!(
                "call {round}: no hangup after the digit: {e}\n{}",
                server.output()
            )
        });
    }
    let texts = synthesized(&server);
    assert_eq!(texts.iter().filter(|t| *t == text).count(), 1, "{texts:?}");
    assert_eq!(
        texts.iter().filter(|t| *t == "You pressed 5").count(),
        1,
        "{texts:?}"
    );
    drop(ua);
    server.assert_alive();
}

#[test]
fn a_caller_that_sends_no_media_is_hung_up_after_the_media_timeout() {
    let mut server = Server::serve(
        &Config::new()
            .media("timeout_secs = 1")
            .tenant("acme", &[])
            .number("400", "hold"),
    );
    let ua = Ua::new();
    let call = ua.call(server.udp, "400", &Codec::ALL, true).unwrap();
    let started = Instant::now();
    call.wait_bye(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("no BYE for a silent caller: {e}\n{}", server.output()));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(
        server.output().contains("no media from the peer"),
        "{}",
        server.output()
    );
    drop(call);
    drop(ua);
    server.assert_alive();
}

#[test]
fn a_recorded_dial_bridges_both_ways_relays_digits_and_stores_both_sides() {
    let far = FarEnd::start(Answer::Tone {
        hz: 1_000.0,
        hangup_after: Some(Duration::from_secs(3)),
    });
    // The far end is on loopback, which tenants may not dial by default.
    let mut server = Server::serve(
        &Config::new()
            .tenant("acme", &[])
            .number("500", "player")
            .sip("private_destinations = true"),
    );
    let ua = Ua::new();
    let target = format!("sip:bob@{}", far.sip);
    let headers = [("X-Dial", target.as_str()), ("X-Record", "yes")];
    let call = ua
        .call_with(server.udp, "500", &[Codec::PCMU], true, &headers)
        .unwrap_or_else(|e| panic!("calling: {e}\n{}", server.output()));
    call.send_audio(&sine(440.0, 6_000, 0.5));
    // The callee hangs up after 3 s; the dial ends and so does the call.
    call.wait_bye(WAIT)
        .unwrap_or_else(|e| panic!("no hangup after the dial: {e}\n{}", server.output()));

    // Each side heard the other through the anchored bridge.
    assert!(
        tone_purity(&call.audio(), 1_000.0, 100) > 0.8,
        "the caller hears the callee's 1 kHz tone"
    );
    let far_heard = far_audio(&far.log(), 0, Law::Mu);
    assert!(
        tone_purity(&far_heard, 440.0, 100) > 0.8,
        "the callee hears the caller's 440 Hz tone"
    );
    assert!(
        call.digits().contains('9'),
        "the callee's digit reached the caller"
    );

    // One recording of the bridge, with both sides in it.
    let mut recordings = Vec::new();
    assert!(wait_until(WAIT, || {
        recordings = wavs(&data(&server).join("recordings"));
        !recordings.is_empty()
    }));
    let (id, wav) = &recordings[0];
    let samples = decode_wav(wav).unwrap();
    let seconds = samples.len() as f64 / 8_000.0;
    assert!((2.5..5.0).contains(&seconds), "recording of {seconds} s");
    let both = samples
        .windows(800)
        .step_by(400)
        .any(|w| goertzel(w, 440.0) > 0.01 && goertzel(w, 1_000.0) > 0.01);
    assert!(both, "the recording mixes both directions");
    let auth = account_auth(&server, "acme");
    let http::Answer {
        status, body: meta, ..
    } = http::get(server.http, &format!("/v1/recordings/{id}"), &auth);
    assert_eq!(status, 200);
    let meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    assert_eq!(meta["source"], "dial");
    drop(call);
    drop(ua);
    server.assert_alive();
}

/// The value of the first metric line that starts with `series`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_show_a_call_in_progress_its_stream_and_the_guest_that_decided_it() {
    let mut server = Server::serve(&Config::new().tenant("acme", &[]).number("600", "hold"));
    let ua = Ua::new();
    let call = ua.call(server.udp, "600", &Codec::ALL, true).unwrap();
    call.start_silence();
    assert!(call.wait_for_audio(200, WAIT), "the hold guest's silence");
    let http::Answer { status, body, .. } = http::get(server.http, "/metrics", &Auth::none());
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert_eq!(
        metric(&text, "switchyard_calls{state=\"answered\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "switchyard_media_streams"),
        Some(1.0),
        "{text}"
    );
    assert!(metric(&text, "switchyard_media_packets_total{direction=\"sent\"}").unwrap() >= 10.0);
    assert!(
        metric(
            &text,
            "switchyard_media_packets_total{direction=\"received\"}"
        )
        .unwrap()
            >= 5.0
    );
    assert_eq!(
        metric(&text, "switchyard_guest_invocations_total{outcome=\"ok\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(metric(&text, "switchyard_process_cpu_seconds_total").unwrap() > 0.0);
    call.bye().unwrap();
    let ended = wait_until(WAIT, || {
        let text =
            String::from_utf8(http::get(server.http, "/metrics", &Auth::none()).body).unwrap();
        metric(&text, "switchyard_media_streams") == Some(0.0)
            && metric(&text, "switchyard_calls{state=\"answered\"}") == Some(0.0)
    });
    assert!(ended, "the call and its stream are gone from the metrics");
    drop(call);
    drop(ua);
    server.assert_alive();
}
