//! The softphone page (`/phone`) and the client SDK (`/switchyard.js`) in
//! headless Chromium (Debian `chromium`) against a real `switchyard serve`:
//! a token in the link registers the browser as client alice, present
//! while the page is open, offline once the browser is gone; a browser
//! calls the IVR, hears it, presses 1, and the IVR rings another browser,
//! which answers: audio flows both ways between the two pages; a SIPp
//! caller reaches a browser client, which rings and answers, with RTP
//! both ways.

#[path = "common/cdp.rs"]
mod cdp;
#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;
#[path = "common/ua.rs"]
mod ua;
// The launcher the WebRTC spike uses too (same flags).
#[path = "../webrtc/tests/common/chromium.rs"]
mod chromium;
// What the launcher's `super::tool` names.
use sip_common::tool;

use std::time::Duration;

use cdp::Page;
use chromium::chromium;
use http::{ADMIN_KEY, Auth, acme, client_token, get, new_key_secret, newest_log, post};
use serde_json::json;
use sip_common::{Config, Server, Sipp, free_port, wait_until};

const PATIENCE: Duration = Duration::from_secs(30);

/// A Chromium on the phone page with `token`, and its DevTools page.
struct Phone {
    browser: std::process::Child,
    page: Page,
    _profile: tempfile::TempDir,
}

impl Phone {
    fn open(server: &Server, token: &str) -> Phone {
        let profile = tempfile::tempdir().unwrap();
        let url = format!("http://{}/phone#token={token}", server.http);
        let browser = chromium(&url, profile.path());
        let mut page = Page::attach(profile.path(), PATIENCE);
        assert!(
            page.wait("window.phone?.client?.state === 'registered'", PATIENCE),
            "the page never registered: {}",
            page.eval("document.getElementById('state')?.textContent")
        );
        Phone {
            browser,
            page,
            _profile: profile,
        }
    }

    /// Types `to` and presses call; waits until the call is connected.
    fn dial(&mut self, to: &str) {
        let typed = format!("document.getElementById('to').value = {}; true", json!(to));
        assert_eq!(self.page.eval(&typed), true);
        self.click("#call");
        self.wait_state("connected");
    }

    fn click(&mut self, selector: &str) {
        let js = format!("document.querySelector({}).click(); true", json!(selector));
        assert_eq!(self.page.eval(&js), true);
    }

    fn call_state(&mut self) -> String {
        let state = self.page.eval("window.phone.call?.state ?? 'none'");
        state.as_str().unwrap_or_default().to_owned()
    }

    /// Waits for the current call to reach `state`.
    fn wait_state(&mut self, state: &str) {
        let js = format!("window.phone.call?.state === '{state}'");
        let reached = self.page.wait(&js, PATIENCE);
        assert!(
            reached,
            "call never {state}: it is {}; {}",
            self.call_state(),
            self.page
                .eval("document.getElementById('call-status').textContent")
        );
    }

    /// The audio energy received on the current call so far.
    fn energy_in(&mut self) -> f64 {
        let stats = self.page.eval("window.phone.call.stats()");
        stats["audioEnergyIn"].as_f64().unwrap_or(0.0)
    }

    /// Waits until the received energy grows past `above`.
    fn hears_more_than(&mut self, above: f64) -> bool {
        wait_until(PATIENCE, || self.energy_in() > above)
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.browser.kill();
        let _ = self.browser.wait();
    }
}

/// Account acme with the IVR on 100, and alice's token, whose grant sends
/// her calls to the IVR.
fn ivr() -> (Server, Auth, String) {
    let server = Server::serve(&acme(Config::new(), "100", "ivr"));
    let (_, _, acme) = new_key_secret(server.http, "acme");
    let grant = json!({"identity": "alice", "outgoing": {"handler": "guest_ivr"}});
    let minted = post(server.http, "/v1/tokens", &acme, &grant);
    assert_eq!(minted.status, 201, "{}", minted.text());
    let alice = minted.json()["token"].as_str().unwrap().to_owned();
    (server, acme, alice)
}

#[test]
fn a_browser_calls_the_ivr_presses_1_and_the_ivr_rings_another_browser() {
    let (mut server, acme, alice) = ivr();
    let addr = server.http;
    let sales = client_token(addr, &acme, "sales");

    let mut agent = Phone::open(&server, &sales);
    let mut caller = Phone::open(&server, &alice);
    caller.dial("ivr");
    // The IVR's welcome and menu reach the browser.
    assert!(caller.hears_more_than(0.0), "no audio from the IVR");

    // "1" (pressed again until the menu's gather takes it, as a person
    // would): the IVR dials client:sales, whose page rings.
    let rung = wait_until(PATIENCE, || {
        caller.click("[data-digit='1']");
        let ringing = "!document.getElementById('incoming').hidden";
        agent.page.wait(ringing, Duration::from_secs(1))
    });
    assert!(
        rung,
        "sales never rang: {}\n{}",
        agent.call_state(),
        server.output()
    );
    let busy = || get(addr, "/v1/presence/sales", &acme).json()["status"] == "busy";
    agent.click("#accept");
    agent.wait_state("connected");
    assert!(busy(), "sales in a call shows as busy");
    // Both calls' media is on this runtime's engine: the worker drives
    // each browser's peer itself, with no relay hop.
    assert_eq!(client_streams(&server), 2, "{}", server.output());

    // Each page hears the other's fake microphone through the runtime.
    let heard = agent.hears_more_than(0.0);
    assert!(
        heard,
        "sales hears nothing: {} / alice: {}",
        agent.page.eval("window.phone.call.stats()"),
        caller.page.eval("window.phone.call.stats()")
    );
    let before = caller.energy_in();
    assert!(caller.hears_more_than(before + 0.01), "alice stops hearing");

    caller.click("#hangup");
    agent.wait_state("ended");
    let available = wait_until(PATIENCE, || {
        get(addr, "/v1/presence/sales", &acme).json()["status"] == "available"
    });
    assert!(available, "sales stays busy after the call");

    // The decision log shows the branch the digit took, from client:alice
    // calling 'ivr' through the grant's handler.
    let log = newest_log(&server, &acme, "\"kind\":\"ended\"");
    let needles = [
        "\"from\":\"client:alice\",\"to\":\"ivr\"",
        "\"digits\":\"1\"",
        "{\"Client\":\"sales\"}",
    ];
    for needle in needles {
        assert!(log.contains(needle), "{needle} not in the log:\n{log}");
    }
    server.assert_alive();
}

/// A browser that offers only Opus (its codec preferences set before the
/// SDK's offer) gets Opus, transcoded by the runtime, and hears the IVR.
#[test]
fn a_browser_offering_only_opus_hears_the_ivr_through_the_transcoder() {
    let (mut server, _, alice) = ivr();
    let mut caller = Phone::open(&server, &alice);
    assert_eq!(caller.page.eval(OPUS_ONLY), true);
    caller.dial("ivr");
    assert!(
        caller.hears_more_than(0.0),
        "no audio from the IVR: {}",
        server.output()
    );
    assert_eq!(caller.page.eval(CODEC_IN), "audio/opus");
    caller.click("#hangup");
    caller.wait_state("ended");
    server.assert_alive();
}

/// Makes every offer of the page carry Opus alone.
const OPUS_ONLY: &str = "(() => {
    const offer = RTCPeerConnection.prototype.createOffer;
    RTCPeerConnection.prototype.createOffer = function (...args) {
        const opus = RTCRtpReceiver.getCapabilities('audio').codecs
            .filter((c) => c.mimeType.toLowerCase() === 'audio/opus');
        for (const t of this.getTransceivers()) t.setCodecPreferences(opus);
        return offer.apply(this, args);
    };
    return true;
})()";

/// The codec of the audio the current call receives.
const CODEC_IN: &str = "(async () => {
    const stats = await window.phone.call.pc.getStats();
    let codec = '';
    stats.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.codecId) codec = stats.get(r.codecId).mimeType;
    });
    return codec;
})()";

#[test]
fn the_phone_page_registers_the_browser_as_a_client() {
    let server = Server::serve(
        &Config::new()
            .api(&format!("admin_key = \"{ADMIN_KEY}\""))
            .tenant("acme", &[]),
    );
    let addr = server.http;
    let (_, _, acme) = new_key_secret(addr, "acme");
    let token = client_token(addr, &acme, "alice");

    // The page and the SDK are served as what they are.
    let page = get(addr, "/phone", &Auth::none());
    assert_eq!(page.status, 200);
    assert!(
        page.head.contains("content-type: text/html"),
        "{}",
        page.head
    );
    let sdk = get(addr, "/switchyard.js", &Auth::none());
    assert!(
        sdk.head.contains("content-type: text/javascript"),
        "{}",
        sdk.head
    );
    assert!(sdk.text().contains("export class Client"));

    let profile = tempfile::tempdir().unwrap();
    let mut browser = chromium(
        &format!("http://{addr}/phone#token={token}"),
        profile.path(),
    );
    let presence = || get(addr, "/v1/presence/alice", &acme).json();
    let present = wait_until(Duration::from_secs(30), || {
        presence()["status"] == "available"
    });
    let devices = presence()["devices"].clone();
    let _ = browser.kill();
    let _ = browser.wait();
    assert!(present, "the page never registered: {}", presence());
    assert_eq!(devices, 1);
    let gone = wait_until(Duration::from_secs(15), || {
        presence()["status"] == "offline"
    });
    assert!(gone, "the closed browser stays present: {}", presence());
}

/// SIPp calls the forwarder, which dials client:alice: the browser rings
/// with SIPp's number, answers, hears SIPp's 7 s of PCMA (converted to the
/// browser's law on the way), and SIPp echoes the browser's audio back
/// (`-rtp_echo`), so what the browser hears after the recording ended
/// went browser → SIPp → browser.
#[test]
fn a_sipp_caller_reaches_a_browser_client_with_rtp_both_ways() {
    let mut server = Server::serve(&forwarder(Config::new()));
    let (_, _, acme) = new_key_secret(server.http, "acme");
    let mut alice = Phone::open(&server, &client_token(server.http, &acme, "alice"));
    sipp_reaches(&mut alice, &server, |_| {
        // The forwarder's dial is not anchored: SIPp's SDP reaches the
        // gateway, which relays between alice's peer and SIPp itself.
        assert_eq!(
            client_streams(&server),
            0,
            "media the engine does not anchor"
        );
    });
    server.assert_alive();
}

/// A client joins a conference: its token's grant sends its calls to the
/// player guest with `X-Conference: standup` (the grant's params come as
/// X- headers), and a SIP caller joins the same conference; each hears
/// the other through the mixer.
#[test]
fn a_browser_client_joins_a_conference_with_a_sip_caller() {
    let mut server = Server::serve(&acme(Config::new(), "600", "player"));
    let addr = server.http;
    let (_, _, auth) = new_key_secret(addr, "acme");
    let params = json!({"Conference": "standup", "Conference-Options": "no-beep"});
    let grant =
        json!({"identity": "alice", "outgoing": {"handler": "guest_player", "params": params}});
    let minted = post(addr, "/v1/tokens", &auth, &grant);
    assert_eq!(minted.status, 201, "{}", minted.text());
    let mut alice = Phone::open(&server, minted.json()["token"].as_str().unwrap());
    alice.dial("standup");

    let caller = ua::Ua::new();
    let headers = [
        ("X-Conference", "standup"),
        ("X-Conference-Options", "no-beep"),
    ];
    let codecs = [switchyard::sip::sdp::Codec::PCMU];
    let call = (caller.call_with(server.udp, "600", &codecs, true, &headers))
        .unwrap_or_else(|e| panic!("joining: {e}\n{}", server.output()));
    call.start_silence();
    let both = wait_until(PATIENCE, || {
        get(addr, "/v1/conferences/standup", &auth).json()["participants"]
            .as_array()
            .is_some_and(|p| p.len() == 2)
    });
    assert!(
        both,
        "{}",
        get(addr, "/v1/conferences/standup", &auth).text()
    );

    // The caller's tone reaches the browser; the browser's fake
    // microphone (a beep) reaches the caller.
    let before = alice.energy_in();
    call.send_audio(&switchyard::media::tone::sine(700.0, 3_000, 8_000.0));
    assert!(
        alice.hears_more_than(before + 0.01),
        "alice hears nothing of the caller"
    );
    // rms is a fraction of full scale; the beep is well above 0.3 %.
    let heard = wait_until(PATIENCE, || {
        let audio = call.audio();
        let tail = &audio[audio.len().saturating_sub(16_000)..];
        switchyard::media::tone::rms(tail) > 0.003
    });
    assert!(heard, "the caller hears nothing of alice");
    alice.click("#hangup");
    drop(call);
    server.assert_alive();
}

/// Two runtimes in two regions (the `[conference]` region set): alice's
/// browser is connected to eu; a SIPp caller calls a number of us, whose
/// forwarder dials client:alice. us rings her through eu's gateway (SIP
/// between the runtimes), and her WebRTC media is anchored in eu: the
/// address her browser sends to is a socket of the eu runtime.
#[test]
fn a_call_in_one_region_rings_a_client_through_its_regions_gateway() {
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let table = format!(
        "[conference]\nsecret = \"region-secret-0123456789\"\n\n[conference.peers]\n\
         us = \"http://127.0.0.1:{}\"\neu = \"http://127.0.0.1:{}\"\n",
        ports[0], ports[1]
    );
    let region = |name: &str, port: u16| {
        let config = Config::new()
            .top(&format!("region = \"{name}\""))
            .http(&format!("127.0.0.1:{port}"))
            .table(&table);
        Server::serve(&forwarder(config))
    };
    let mut us = region("us", ports[0]);
    let mut eu = region("eu", ports[1]);
    let (_, _, acme) = new_key_secret(eu.http, "acme");
    let mut alice = Phone::open(&eu, &client_token(eu.http, &acme, "alice"));
    // Not connected to us: us knows her only from what eu told it.
    let (_, _, acme_us) = new_key_secret(us.http, "acme");
    let here = get(us.http, "/v1/presence/alice", &acme_us).json();
    assert_eq!(here["status"], "offline", "{here}");

    let eu_pid = eu.pid();
    sipp_reaches(&mut alice, &us, |alice| {
        let port = alice.page.eval(REMOTE_PORT).as_u64().unwrap_or_default() as u16;
        assert!(
            sip_common::udp_ports(eu_pid).contains(&port),
            "alice's media goes to port {port}, not a socket of eu's runtime"
        );
        // The call's media is on us's engine: eu relays it over RTP.
        assert_eq!(
            client_streams(&eu),
            0,
            "eu attached media it does not anchor"
        );
    });
    us.assert_alive();
    eu.assert_alive();
}

/// Streams whose far end is a browser driven by the media worker.
fn client_streams(server: &Server) -> u64 {
    let metrics = get(server.http, "/metrics", &http::Auth::none()).text();
    let line = (metrics.lines()).find_map(|l| l.strip_prefix("switchyard_media_client_streams "));
    line.and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no client streams gauge in\n{metrics}"))
}

/// The port of the address the browser's current call sends media to.
const REMOTE_PORT: &str = "(async () => {
    const stats = await window.phone.call.pc.getStats();
    let pair = null;
    stats.forEach((r) => { if (r.type === 'candidate-pair' && r.nominated) pair = r; });
    return pair ? stats.get(pair.remoteCandidateId).port : 0;
})()";

/// Account acme with the forwarder guest (it dials client:alice) on
/// +15550200, and the operator key.
fn forwarder(config: Config) -> Config {
    acme(config, "+15550200", "forwarder")
}

/// SIPp calls `server`'s forwarder; alice's page rings, answers and
/// hears SIPp; SIPp's echo brings her own audio back. `during` looks at
/// the call while it is up; SIPp's BYE ends it.
fn sipp_reaches(alice: &mut Phone, server: &Server, during: impl FnOnce(&mut Phone)) {
    sip_common::require_tool("sipp", "-v", "sip-tester");
    let sipp = Sipp::new("-s +15550200 -d 12000 -rtp_echo -m 1")
        .sf("caller_pcap.xml")
        .to(server.udp)
        .timeout(Duration::from_secs(60))
        .spawn();

    let rung = alice
        .page
        .wait("!document.getElementById('incoming').hidden", PATIENCE);
    assert!(rung, "alice never rang\n{}", server.output());
    let from = alice
        .page
        .eval("document.getElementById('incoming-from').textContent");
    assert!(
        from.as_str().unwrap_or_default().contains("+15550123"),
        "{from}"
    );
    alice.click("#accept");
    alice.wait_state("connected");
    assert!(alice.hears_more_than(0.0), "no audio from SIPp");
    during(alice);
    // The recording is 7 s; after it only the echo of alice comes back.
    std::thread::sleep(Duration::from_secs(8));
    let before = alice.energy_in();
    assert!(
        alice.hears_more_than(before + 0.01),
        "alice's audio does not come back through SIPp: {}",
        alice.page.eval("window.phone.call.stats()")
    );
    alice.wait_state("ended");
    sipp.finish().assert_calls(1, server);
}
