//! The endpoint driven with SIP text and a virtual clock: no sockets.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use rsip::prelude::*;

use super::*;
use crate::directory::Tenant;
use switchyard_contract::guest::{CallHandler, CallVars, NativeHandler};
use switchyard_contract::{
    Dial, DialStatus, Event, Gather, GatherInput, Plan, RejectReason, Say, Verb, VerificationStatus,
};
use switchyard_egress::{EgressPolicy, Setting};
use switchyard_media::Notice;
use switchyard_media::ports::PortPool;

const CALLER: &str = "127.0.0.1:5070";
const CALLEE: &str = "127.0.0.1:5080";
const CALLEE2: &str = "127.0.0.1:5081";
const TRUNK: &str = "127.0.0.1:5090";
const ALICE: &str = "127.0.0.1:5099";
/// The status callback of number 300 (100 has none).
const STATUS_URL: &str = "https://hooks.acme.test/status";

type Decide = dyn Fn(&Event) -> Plan + Send + Sync;

struct Harness {
    ep: Endpoint,
    now: Instant,
    /// Messages the endpoint sent, with where they went.
    sent: VecDeque<(Peer, rsip::SipMessage)>,
    cdrs: Vec<Cdr>,
    events_seen: Vec<Event>,
    handler: Arc<dyn CallHandler>,
    log: Arc<std::sync::Mutex<Vec<Event>>>,
    /// Every media action the endpoint asked for.
    actions: Vec<(StreamId, Action)>,
    /// The fake media edge: notices due at a virtual time.
    notices: Vec<(Instant, StreamId, Notice)>,
    /// Status callback events, in the order they came.
    statuses: Vec<CallStatusEvent>,
    /// The decision log of each finished call, as the CDR carried it.
    logs: Vec<switchyard_router::DecisionLog>,
    /// Identity checks asked for and not answered: (INVITE, header, from, to).
    verifies: Vec<(TxKey, Option<String>, String, String)>,
    /// Outbound INVITEs reported for the placement records.
    placements: Vec<Placement>,
}

/// A stand-in for the media edge: a play takes the time its prompts
/// would take, digits are sent in 250 ms each, a stopped recording is
/// stored at once.
fn fake_media(
    now: Instant,
    stream: StreamId,
    action: &Action,
    notices: &mut Vec<(Instant, StreamId, Notice)>,
) {
    let after = |ms: u64| now + Duration::from_millis(ms);
    match action {
        Action::Play { id, prompts, .. } => {
            // As the media session does it: a play replaces the one
            // playing, which then ends silently.
            notices.retain(|(_, s, n)| !(*s == stream && matches!(n, Notice::PlayDone(_))));
            let ms = switchyard_router::estimate::prompts_ms(prompts);
            notices.push((after(ms), stream, Notice::PlayDone(*id)));
        }
        Action::StopPlay => {
            notices.retain(|(_, s, n)| !(*s == stream && matches!(n, Notice::PlayDone(_))))
        }
        Action::SendDigits { id, digits } => {
            notices.push((
                after(250 * digits.len() as u64),
                stream,
                Notice::DigitsSent(*id),
            ));
        }
        _ => {}
    }
}

/// The wall time the test endpoints start at (2026-01-05T09:00:00Z).
const UNIX_MS: u64 = 1_767_603_600_000;

fn test_rng(seed: u64) -> crate::Rng {
    rand::SeedableRng::seed_from_u64(seed)
}

fn udp(addr: &str) -> Peer {
    Peer::new(Transport::Udp, addr.parse().unwrap())
}

impl Harness {
    fn new(decide: Box<Decide>) -> Self {
        Self::with_ports(decide, (20000, 29999))
    }

    /// A harness whose RTP port pool is `ports`.
    fn with_ports(decide: Box<Decide>, ports: (u16, u16)) -> Self {
        Self::with_config(decide, |config, _| config.media_ports = ports)
    }

    /// A harness whose endpoint config and tenant `edit` changed.
    fn with_config(
        decide: Box<Decide>,
        edit: impl FnOnce(&mut EndpointConfig, &mut Tenant),
    ) -> Self {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&log);
        let handler: Arc<dyn CallHandler> = Arc::new(NativeHandler(
            move |_: &switchyard_contract::Context, event: &Event, _: &mut CallVars| {
                seen.lock().unwrap().push(event.clone());
                Ok(decide(event))
            },
        ));
        let mut tenant = Tenant::new("acme");
        tenant.domains.push("acme.test".into());
        tenant.bind("100", "main", "v1", Arc::clone(&handler));
        tenant.bind("200", "main", "v1", Arc::clone(&handler));
        tenant.bind("300", "main", "v1", Arc::clone(&handler));
        tenant.set_status_callback("300", Some(STATUS_URL.into()));
        tenant.users.insert("alice".into(), "secret".into());
        tenant.trunks.push(crate::directory::Trunk {
            name: "carrier".into(),
            address: TRUNK.parse().unwrap(),
            transport: Transport::Udp,
            credentials: Some(("acme".into(), "trunk-secret".into())),
            attest: None,
        });
        let now = Instant::now();
        let mut config =
            EndpointConfig::new(vec![(Transport::Udp, "127.0.0.1:5060".parse().unwrap())]);
        // The test callees are on loopback.
        config.egress = EgressPolicy::unrestricted();
        edit(&mut config, &mut tenant);
        let directory = Arc::new(Directory::new(vec![tenant]));
        Self {
            ep: Endpoint::new(now, UNIX_MS, test_rng(1), config, directory),
            now,
            sent: VecDeque::new(),
            cdrs: Vec::new(),
            events_seen: Vec::new(),
            handler,
            log,
            actions: Vec::new(),
            notices: Vec::new(),
            statuses: Vec::new(),
            logs: Vec::new(),
            verifies: Vec::new(),
            placements: Vec::new(),
        }
    }

    fn send(&mut self, from: &str, text: &str) {
        let msg =
            rsip::SipMessage::try_from(text.replace('\n', "\r\n")).expect("test message parses");
        self.ep.handle_message(self.now, udp(from), msg);
        self.settle();
    }

    fn send_msg(&mut self, from: &str, msg: impl Into<rsip::SipMessage>) {
        self.ep.handle_message(self.now, udp(from), msg.into());
        self.settle();
    }

    /// Runs every invocation the endpoint asked for, until it asks none.
    fn settle(&mut self) {
        loop {
            while let Some(t) = self.ep.poll_transmit() {
                let msg = rsip::SipMessage::try_from(t.bytes.to_vec()).expect("we send valid SIP");
                self.sent.push_back((t.peer, msg));
            }
            let Some(event) = self.ep.poll_event() else {
                break;
            };
            match event {
                EndpointEvent::Invoke { call, request, .. } => {
                    let mut future = self.handler.invoke(request);
                    let mut cx = TaskContext::from_waker(Waker::noop());
                    let Poll::Ready(invocation) = future.as_mut().poll(&mut cx) else {
                        panic!("native handlers are ready at once");
                    };
                    self.ep.handle_invocation(self.now, call, invocation);
                }
                EndpointEvent::Cdr(cdr, log) => {
                    // An outbound call nobody answered ran no handler:
                    // its log is empty. A refused caller's says why.
                    let refused = |e: &switchyard_router::LogEntry| {
                        matches!(e.entry, switchyard_router::Entry::Verified { .. })
                    };
                    if log.events().next().is_none() && log.entries().iter().any(refused) {
                        self.logs.push(log);
                        self.cdrs.push(cdr);
                        continue;
                    }
                    if log.entries().is_empty() && cdr.answered_ms.is_none() {
                        self.cdrs.push(cdr);
                        continue;
                    }
                    // Every record comes with its call's whole decision log.
                    let first = log.events().next().map(|(ctx, _)| ctx.call_id.clone());
                    assert_eq!(first.as_deref(), Some(cdr.call_id.as_str()));
                    assert!(
                        log.entries()
                            .iter()
                            .any(|e| matches!(e.entry, switchyard_router::Entry::Ended { .. })),
                        "{log:?}"
                    );
                    self.logs.push(log);
                    self.cdrs.push(cdr)
                }
                EndpointEvent::Status(status) => self.statuses.push(status),
                EndpointEvent::Verify {
                    invite,
                    identity,
                    from,
                    to,
                    headers,
                    ..
                } => {
                    let secret = |h: &switchyard_contract::Header| h.name.contains("Authorization");
                    assert!(
                        !headers.iter().any(secret),
                        "credentials never reach a policy"
                    );
                    self.verifies.push((invite, identity, from, to))
                }
                EndpointEvent::Placed(placement) => self.placements.push(placement),
                EndpointEvent::Media { stream, action, .. } => {
                    fake_media(self.now, stream, &action, &mut self.notices);
                    self.actions.push((stream, action));
                }
            }
        }
        self.events_seen = self.log.lock().unwrap().clone();
    }

    fn advance(&mut self, ms: u64) {
        let end = self.now + Duration::from_millis(ms);
        loop {
            let timer = self.ep.poll_timeout().filter(|at| *at <= end);
            let notice = self
                .notices
                .iter()
                .map(|(at, ..)| *at)
                .filter(|at| *at <= end)
                .min();
            match (timer, notice) {
                (Some(t), Some(n)) if n <= t => self.deliver_notice(n),
                (_, Some(n)) if timer.is_none() => self.deliver_notice(n),
                (Some(t), _) => {
                    self.now = t.max(self.now);
                    self.ep.handle_timeout(self.now);
                    self.settle();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn deliver_notice(&mut self, at: Instant) {
        let index = self.notices.iter().position(|(t, ..)| *t == at).unwrap();
        let (_, stream, notice) = self.notices.remove(index);
        self.now = at.max(self.now);
        self.ep.handle_media(self.now, stream, notice);
        self.settle();
    }

    /// A notice from the media edge now.
    fn notice(&mut self, stream: StreamId, notice: Notice) {
        self.ep.handle_media(self.now, stream, notice);
        self.settle();
    }

    /// The stream of the last `Open` action.
    fn last_stream(&self) -> StreamId {
        self.actions
            .iter()
            .rev()
            .find_map(|(s, a)| matches!(a, Action::Open { .. }).then_some(*s))
            .expect("a stream was opened")
    }

    /// The next response sent to the caller with this status (skipping others).
    fn response(&mut self, status: u16) -> rsip::Response {
        while let Some((_, msg)) = self.sent.pop_front() {
            if let rsip::SipMessage::Response(r) = msg
                && r.status_code.code() == status
            {
                return r;
            }
        }
        panic!("no {status} response was sent");
    }

    /// The next request sent to `to`.
    fn request(&mut self, method: rsip::Method, to: &str) -> rsip::Request {
        let to = udp(to);
        while let Some((peer, msg)) = self.sent.pop_front() {
            if let rsip::SipMessage::Request(r) = msg
                && r.method == method
                && peer == to
            {
                return r;
            }
        }
        panic!("no {method} was sent to {to}");
    }

    fn nothing_sent(&self) -> bool {
        self.sent.is_empty()
    }
}

fn invite(number: &str, call_id: &str) -> String {
    format!(
        "INVITE sip:{number}@acme.test SIP/2.0
Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}
Max-Forwards: 70
From: <sip:caller@example.com>;tag=caller-{call_id}
To: <sip:{number}@acme.test>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:caller@{CALLER}>
Content-Type: application/sdp
Content-Length: {len}

{sdp}",
        len = SDP.replace('\n', "\r\n").len(),
        sdp = SDP
    )
}

const SDP: &str = "v=0
o=caller 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
";

fn in_dialog(
    method: &str,
    call_id: &str,
    to_tag: &str,
    cseq: u32,
    extra: &str,
    body: &str,
) -> String {
    format!(
        "{method} sip:switchyard@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-{cseq}
Max-Forwards: 70
From: <sip:caller@example.com>;tag=caller-{call_id}
To: <sip:100@acme.test>;tag={to_tag}
Call-ID: {call_id}
CSeq: {cseq} {method}
{extra}Content-Length: {len}

{body}",
        len = body.replace('\n', "\r\n").len()
    )
}

fn ack(call_id: &str, to_tag: &str) -> String {
    in_dialog("ACK", call_id, to_tag, 1, "", "")
}

fn tag(response: &rsip::Response) -> String {
    response
        .to_header()
        .unwrap()
        .tag()
        .unwrap()
        .unwrap()
        .value()
        .to_string()
}

fn pause_then(ms: u32, then: Verb) -> Plan {
    Plan {
        verbs: vec![
            Verb::Pause(switchyard_contract::Pause { length_ms: ms }),
            then,
        ],
    }
}

#[test]
fn a_call_to_an_unbound_number_at_an_unknown_host_is_404() {
    let mut h = Harness::new(Box::new(|_| Plan { verbs: vec![] }));
    h.send(
        CALLER,
        &invite("999", "c1").replace("acme.test", "other.test"),
    );
    h.response(404);
    assert_eq!(h.ep.calls(), 0);
}

#[test]
fn an_answered_call_runs_until_the_caller_hangs_up_and_leaves_a_cdr() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => Plan {
            verbs: vec![Verb::Pause(switchyard_contract::Pause {
                length_ms: 60_000,
            })],
        },
        _ => Plan { verbs: vec![] },
    }));
    h.send(CALLER, &invite("100", "c2"));
    let ok = h.response(200);
    assert!(
        String::from_utf8_lossy(&ok.body).contains("PCMU"),
        "the 200 carries an SDP answer"
    );
    let to_tag = tag(&ok);
    h.send(CALLER, &ack("c2", &to_tag));
    h.advance(5_000);
    h.send(CALLER, &in_dialog("BYE", "c2", &to_tag, 2, "", ""));
    h.response(200);
    assert_eq!(h.ep.calls(), 0);
    let cdr = &h.cdrs[0];
    assert_eq!(
        (
            cdr.outcome.as_str(),
            cdr.tenant.as_str(),
            cdr.handler.as_str()
        ),
        ("completed", "acme", "main")
    );
    assert_eq!(cdr.duration_secs, 5);
    assert!(matches!(
        h.events_seen.last(),
        Some(Event::Hangup(switchyard_contract::HangupCause::Caller))
    ));
}

#[test]
fn a_busy_decision_is_a_486_and_the_cdr_says_busy() {
    let mut h = Harness::new(Box::new(|_| Plan {
        verbs: vec![Verb::Reject(RejectReason::Busy)],
    }));
    h.send(CALLER, &invite("100", "c3"));
    let busy = h.response(486);
    h.send(CALLER, &ack("c3", &tag(&busy)));
    assert_eq!(h.cdrs[0].outcome, "busy");
    assert_eq!(h.cdrs[0].sip_status, Some(486));
}

/// Number 100 queues its caller in `support` (for at most 30 s); number
/// 300 is the agent who dials `queue:support`; every result hangs up.
fn queue_plans() -> Box<Decide> {
    Box::new(|event| match event {
        Event::Incoming(call) if call.to.contains("300") => Plan {
            verbs: vec![Verb::Dial(Dial::to(
                switchyard_contract::DialTarget::Queue("support".into()),
            ))],
        },
        Event::Incoming(_) => Plan {
            verbs: vec![Verb::Enqueue(switchyard_contract::Enqueue {
                queue: "support".into(),
                wait_prompts: vec![],
                max_wait_secs: Some(30),
                priority: None,
                wait_update_secs: None,
            })],
        },
        Event::QueueComplete(_) | Event::DialComplete(_) => Plan {
            verbs: vec![Verb::Hangup],
        },
        _ => Plan { verbs: vec![] },
    })
}

fn answered(h: &mut Harness, number: &str, call_id: &str) -> (String, StreamId) {
    h.send(CALLER, &invite(number, call_id));
    let to_tag = tag(&h.response(200));
    h.send(CALLER, &ack(call_id, &to_tag));
    (to_tag, h.last_stream())
}

#[test]
fn a_queued_caller_hears_the_wait_prompts_again_until_an_agent_takes_it() {
    let mut h = Harness::new(queue_plans());
    let (caller_tag, caller) = answered(&mut h, "100", "q-caller");
    h.advance(20_000);
    let plays = |h: &Harness, stream| {
        (h.actions.iter())
            .filter(|(s, a)| *s == stream && matches!(a, Action::Play { .. }))
            .count()
    };
    assert!(plays(&h, caller) >= 2, "the wait prompts loop");
    let (_, agent) = answered(&mut h, "300", "q-agent");
    let bridge =
        (h.actions.iter()).find(|(s, a)| *s == agent && matches!(a, Action::Bridge { .. }));
    assert!(
        matches!(bridge, Some((_, Action::Bridge { other, record: None })) if *other == caller),
        "{:?}",
        h.actions
    );
    // Taken out of the queue, the caller hears no more prompts nor times out.
    let before = plays(&h, caller);
    h.advance(20_000);
    assert_eq!(plays(&h, caller), before);
    // The caller hangs up: the agent's dial completes, and it hangs up.
    h.send(
        CALLER,
        &in_dialog("BYE", "q-caller", &caller_tag, 2, "", ""),
    );
    h.response(200);
    h.request(rsip::Method::Bye, CALLER);
    let completed = (h.events_seen.iter()).find_map(|e| match e {
        Event::DialComplete(r) => Some(r.clone()),
        _ => None,
    });
    let completed = completed.expect("the agent's dial completed");
    assert_eq!(completed.status, DialStatus::Completed);
    assert_eq!(
        completed.answered,
        Some(switchyard_contract::DialTarget::Queue("support".into()))
    );
    assert_eq!(completed.duration_secs, 20);
}

/// Number 100 queues at priority 0, number 200 at priority 5, both with
/// a wait update every 10 s; 300 is the agent. A caller told it is
/// second or later hears an apology and leaves; the first stays.
fn prioritised_queue_plans() -> Box<Decide> {
    Box::new(|event| match event {
        Event::Incoming(call) if call.to.contains("300") => Plan {
            verbs: vec![Verb::Dial(Dial::to(
                switchyard_contract::DialTarget::Queue("support".into()),
            ))],
        },
        Event::Incoming(call) => Plan {
            verbs: vec![Verb::Enqueue(switchyard_contract::Enqueue {
                queue: "support".into(),
                wait_prompts: vec![],
                max_wait_secs: None,
                priority: call.to.contains("200").then_some(5),
                wait_update_secs: Some(10),
            })],
        },
        Event::QueueWait(status) if status.position >= 2 => Plan {
            verbs: vec![
                Verb::Say(switchyard_contract::Say::text("Sorry, we are busy.")),
                Verb::LeaveQueue,
            ],
        },
        Event::QueueComplete(_) | Event::DialComplete(_) => Plan {
            verbs: vec![Verb::Hangup],
        },
        _ => Plan { verbs: vec![] },
    })
}

#[test]
fn waiting_callers_hear_their_place_a_higher_priority_goes_first_and_a_wait_plan_can_leave() {
    let mut h = Harness::new(prioritised_queue_plans());
    let (_, first) = answered(&mut h, "100", "q-low");
    h.advance(1_000);
    let (_, urgent) = answered(&mut h, "200", "q-high");
    h.advance(9_000);
    // 10 s after it joined, the first caller is told it is second.
    let waits = |h: &Harness| -> Vec<(u32, u32, u32)> {
        (h.events_seen.iter())
            .filter_map(|e| match e {
                Event::QueueWait(s) => Some((s.position, s.size, s.wait_secs)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(waits(&h), vec![(2, 2, 10)]);
    let apology = (h.actions.iter()).any(|(s, a)| {
        *s == first
            && matches!(a, Action::Play { prompts, .. }
                if matches!(&prompts[..], [switchyard_contract::Prompt::Say(say)] if say.text == "Sorry, we are busy."))
    });
    assert!(apology, "the wait plan plays to the first caller");
    assert!(
        !(h.events_seen.iter()).any(|e| matches!(e, Event::QueueComplete(_))),
        "it leaves when the apology has played"
    );
    h.advance(2_000);
    let left = (h.events_seen.iter()).find_map(|e| match e {
        Event::QueueComplete(r) => Some(r.clone()),
        _ => None,
    });
    let left = left.expect("the first caller left the queue");
    assert_eq!(left.outcome, switchyard_contract::QueueOutcome::Left);
    assert_eq!(left.wait_secs, 11);
    h.request(rsip::Method::Bye, CALLER);
    // The urgent caller heard position 1 (at 11 s, the other one still
    // listening to its apology) and stays; 10 s later it is alone.
    assert_eq!(waits(&h), vec![(2, 2, 10), (1, 2, 10)]);
    h.advance(10_000);
    assert_eq!(waits(&h), vec![(2, 2, 10), (1, 2, 10), (1, 1, 20)]);
    let (_, agent) = answered(&mut h, "300", "q-agent3");
    let bridge =
        (h.actions.iter()).find(|(s, a)| *s == agent && matches!(a, Action::Bridge { .. }));
    assert!(
        matches!(bridge, Some((_, Action::Bridge { other, .. })) if *other == urgent),
        "{bridge:?}"
    );
    // Bridged, it hears no more updates.
    h.advance(30_000);
    assert_eq!(waits(&h).len(), 3);
}

#[test]
fn a_caller_leaves_the_queue_at_its_max_wait_and_an_agent_finds_it_empty() {
    let mut h = Harness::new(queue_plans());
    answered(&mut h, "100", "q-late");
    h.advance(29_999);
    assert!(
        !h.events_seen
            .iter()
            .any(|e| matches!(e, Event::QueueComplete(_)))
    );
    h.advance(1);
    h.request(rsip::Method::Bye, CALLER);
    let result = (h.events_seen.iter()).find_map(|e| match e {
        Event::QueueComplete(r) => Some(r.clone()),
        _ => None,
    });
    let result = result.expect("queue-complete");
    assert_eq!(
        (result.outcome, result.wait_secs),
        (switchyard_contract::QueueOutcome::Timeout, 30)
    );
    answered(&mut h, "300", "q-agent2");
    h.request(rsip::Method::Bye, CALLER);
    assert!(
        h.events_seen
            .iter()
            .any(|e| matches!(e, Event::DialComplete(r) if r.status == DialStatus::NoAnswer))
    );
}

#[test]
fn the_endpoint_hangs_up_with_a_bye_when_the_plan_ends() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => pause_then(1_000, Verb::Hangup),
        _ => Plan { verbs: vec![] },
    }));
    h.send(CALLER, &invite("100", "c4"));
    let ok = h.response(200);
    h.send(CALLER, &ack("c4", &tag(&ok)));
    h.advance(999);
    assert!(h.nothing_sent());
    h.advance(1);
    let bye = h.request(rsip::Method::Bye, CALLER);
    assert_eq!(super::wire::call_id(&bye).as_deref(), Some("c4"));
}

#[test]
fn info_digits_complete_a_gather() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => Plan {
            verbs: vec![Verb::Gather(Gather {
                input: GatherInput::Dtmf,
                num_digits: Some(2),
                finish_on_key: Some('#'),
                timeout_secs: 5,
                prompts: vec![switchyard_contract::Prompt::Say(Say::text(
                    "Enter two digits",
                ))],
            })],
        },
        Event::GatherComplete(_) => Plan {
            verbs: vec![Verb::Hangup],
        },
        _ => Plan { verbs: vec![] },
    }));
    h.send(CALLER, &invite("100", "c5"));
    let to_tag = tag(&h.response(200));
    h.send(CALLER, &ack("c5", &to_tag));
    for (cseq, digit) in [(2, '4'), (3, '2')] {
        let body = format!("Signal={digit}\nDuration=160\n");
        h.send(
            CALLER,
            &in_dialog(
                "INFO",
                "c5",
                &to_tag,
                cseq,
                "Content-Type: application/dtmf-relay\n",
                &body,
            ),
        );
        h.response(200);
    }
    let gathered = h.events_seen.iter().find_map(|e| match e {
        Event::GatherComplete(g) => Some(g.digits.clone()),
        _ => None,
    });
    assert_eq!(gathered.as_deref(), Some("42"));
    h.request(rsip::Method::Bye, CALLER);
}

#[test]
fn a_gather_without_digits_times_out_after_its_prompts() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => Plan {
            verbs: vec![Verb::Gather(Gather {
                input: GatherInput::Dtmf,
                num_digits: Some(1),
                finish_on_key: None,
                timeout_secs: 3,
                prompts: vec![switchyard_contract::Prompt::Pause(
                    switchyard_contract::Pause { length_ms: 2_000 },
                )],
            })],
        },
        _ => Plan {
            verbs: vec![Verb::Hangup],
        },
    }));
    h.send(CALLER, &invite("100", "c6"));
    let to_tag = tag(&h.response(200));
    h.send(CALLER, &ack("c6", &to_tag));
    h.advance(4_999);
    assert!(
        !h.events_seen
            .iter()
            .any(|e| matches!(e, Event::GatherComplete(_)))
    );
    h.advance(1);
    assert!(h.events_seen.iter().any(|e| matches!(e, Event::GatherComplete(g) if g.ended_by == switchyard_contract::GatherEnd::Timeout)));
}

fn callee_response(
    invite: &rsip::Request,
    status: u16,
    reason: &str,
    to_tag: &str,
    contact: &str,
    body: &str,
) -> rsip::Response {
    let mut response = message::response(invite, status, reason, Some(to_tag));
    response
        .headers
        .push(rsip::headers::Contact::new(format!("<sip:callee@{contact}>")).into());
    wire::set_body(&mut response.headers, "application/sdp", body.as_bytes());
    response.body = body.as_bytes().to_vec();
    response
}

/// A dial of SIP `targets` with the test defaults (20 s, answer on bridge).
fn dial(
    targets: &[switchyard_contract::DialTarget],
    strategy: switchyard_contract::RingStrategy,
    record: bool,
) -> Verb {
    Verb::Dial(Dial {
        targets: targets
            .iter()
            .map(|target| switchyard_contract::DialLeg {
                target: target.clone(),
                headers: vec![],
            })
            .collect(),
        strategy,
        timeout_secs: 20,
        caller_id: None,
        record,
        answer_on_bridge: true,
        time_limit_secs: None,
    })
}

fn sip_target(addr: &str) -> switchyard_contract::DialTarget {
    switchyard_contract::DialTarget::Sip(format!("sip:bob@{addr}"))
}

fn dial_two() -> Box<Decide> {
    Box::new(|event| match event {
        Event::Incoming(_) => Plan {
            verbs: vec![dial(
                &[sip_target(CALLEE), sip_target(CALLEE2)],
                switchyard_contract::RingStrategy::Simultaneous,
                false,
            )],
        },
        Event::DialComplete(_) => Plan {
            verbs: vec![Verb::Hangup],
        },
        _ => Plan { verbs: vec![] },
    })
}

#[test]
fn simultaneous_dial_bridges_the_first_answer_and_cancels_the_rest() {
    let mut h = Harness::new(dial_two());
    h.send(CALLER, &invite("100", "c7"));
    let first = h.request(rsip::Method::Invite, CALLEE);
    let second = h.request(rsip::Method::Invite, CALLEE2);
    assert!(
        String::from_utf8_lossy(&first.body).contains("m=audio 6000"),
        "the caller's offer is passed through"
    );
    h.send_msg(
        CALLEE2,
        callee_response(&second, 180, "Ringing", "t2", CALLEE2, ""),
    );
    h.response(180);
    let answer = SDP.replace("6000", "7000");
    h.send_msg(
        CALLEE,
        callee_response(&first, 200, "OK", "t1", CALLEE, &answer),
    );
    let ack = h.request(rsip::Method::Ack, CALLEE);
    assert_eq!(super::wire::to_tag(&ack).as_deref(), Some("t1"));
    let cancel = h.request(rsip::Method::Cancel, CALLEE2);
    assert_eq!(super::wire::call_id(&cancel), super::wire::call_id(&second));
    let ok = h.response(200);
    assert!(
        String::from_utf8_lossy(&ok.body).contains("m=audio 7000"),
        "the callee's answer reaches the caller"
    );
    // The callee hangs up: the dial completes, the plan hangs the caller up.
    let from_tag = super::wire::from_tag(&first).unwrap();
    let bye = format!(
        "BYE sip:switchyard@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP {CALLEE};branch=z9hG4bK-bye1
Max-Forwards: 70
From: <sip:bob@{CALLEE}>;tag=t1
To: {to};tag={from_tag}
Call-ID: {call_id}
CSeq: 1 BYE
Content-Length: 0

",
        to = "<sip:caller@127.0.0.1:5060>",
        call_id = super::wire::call_id(&first).unwrap()
    );
    h.send(CALLEE, &bye);
    h.response(200);
    h.request(rsip::Method::Bye, CALLER);
    let result = h.events_seen.iter().find_map(|e| match e {
        Event::DialComplete(d) => Some(d.status),
        _ => None,
    });
    assert_eq!(result, Some(DialStatus::Completed));
}

#[test]
fn a_caller_cancel_before_answer_is_487_and_cancels_the_forks() {
    let mut h = Harness::new(dial_two());
    h.send(CALLER, &invite("100", "c8"));
    let first = h.request(rsip::Method::Invite, CALLEE);
    h.send_msg(
        CALLEE,
        callee_response(&first, 180, "Ringing", "t1", CALLEE, ""),
    );
    h.send(CALLER, &cancel("100", "c8"));
    h.response(200);
    h.request(rsip::Method::Cancel, CALLEE);
    h.response(487);
    assert_eq!(h.cdrs[0].outcome, "canceled");
}

#[test]
fn a_dial_nobody_answers_ends_as_no_answer_after_its_timeout() {
    let mut h = Harness::new(dial_two());
    h.send(CALLER, &invite("100", "c9"));
    let first = h.request(rsip::Method::Invite, CALLEE);
    h.send_msg(
        CALLEE,
        callee_response(&first, 180, "Ringing", "t1", CALLEE, ""),
    );
    h.advance(20_000);
    let result = h.events_seen.iter().find_map(|e| match e {
        Event::DialComplete(d) => Some(d.status),
        _ => None,
    });
    assert_eq!(result, Some(DialStatus::NoAnswer));
}

#[test]
fn options_outside_a_dialog_is_200_with_allow() {
    let mut h = Harness::new(Box::new(|_| Plan { verbs: vec![] }));
    h.send(
        CALLER,
        &format!(
            "OPTIONS sip:127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-o1
Max-Forwards: 70
From: <sip:caller@example.com>;tag=o1
To: <sip:127.0.0.1:5060>
Call-ID: o1
CSeq: 1 OPTIONS
Content-Length: 0

"
        ),
    );
    let ok = h.response(200);
    assert!(ok.to_string().contains("INVITE, ACK, CANCEL, BYE"));
}

#[test]
fn a_hold_reinvite_is_answered_recvonly() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => Plan {
            verbs: vec![Verb::Pause(switchyard_contract::Pause {
                length_ms: 60_000,
            })],
        },
        _ => Plan { verbs: vec![] },
    }));
    h.send(CALLER, &invite("100", "c10"));
    let to_tag = tag(&h.response(200));
    h.send(CALLER, &ack("c10", &to_tag));
    let hold = SDP.replace("a=rtpmap:101", "a=sendonly\na=rtpmap:101");
    h.send(
        CALLER,
        &in_dialog(
            "INVITE",
            "c10",
            &to_tag,
            2,
            "Content-Type: application/sdp\n",
            &hold,
        ),
    );
    let ok = h.response(200);
    assert!(String::from_utf8_lossy(&ok.body).contains("recvonly"));
}

#[test]
fn an_unacknowledged_200_hangs_the_call_up() {
    let mut h = Harness::new(Box::new(|_| Plan {
        verbs: vec![Verb::Pause(switchyard_contract::Pause {
            length_ms: 60_000,
        })],
    }));
    h.send(CALLER, &invite("100", "c11"));
    h.response(200);
    h.advance(40_000);
    h.request(rsip::Method::Bye, CALLER);
    assert_eq!(h.ep.calls(), 0);
}

/// A call to 100 dialled to CALLEE and bridged; then, under `egress`,
/// CALLEE asks by REFER that the caller be transferred to `target`.
/// Returns our tag in the caller's dialog.
fn refer_from_the_bridged_callee(
    h: &mut Harness,
    call_id: &str,
    target: &str,
    egress: EgressPolicy,
) -> String {
    h.send(CALLER, &invite("100", call_id));
    let first = h.request(rsip::Method::Invite, CALLEE);
    h.send_msg(
        CALLEE,
        callee_response(
            &first,
            200,
            "OK",
            "t1",
            CALLEE,
            &SDP.replace("6000", "7000"),
        ),
    );
    let answered = h.response(200);
    h.ep.config.egress = egress;
    // What follows is the REFER's doing alone.
    h.sent.clear();
    let our_tag = super::wire::from_tag(&first).unwrap();
    let call_id = super::wire::call_id(&first).unwrap();
    let refer = format!(
        "REFER sip:switchyard@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP {CALLEE};branch=z9hG4bK-refer1
Max-Forwards: 70
From: <sip:bob@{CALLEE}>;tag=t1
To: <sip:caller@127.0.0.1:5060>;tag={our_tag}
Call-ID: {call_id}
CSeq: 2 REFER
Refer-To: <sip:carol@{target}>
Contact: <sip:bob@{CALLEE}>
Content-Length: 0

"
    );
    h.send(CALLEE, &refer);
    tag(&answered)
}

#[test]
fn a_refer_from_the_bridged_callee_transfers_the_caller() {
    let mut h = Harness::new(dial_two());
    let carol = "127.0.0.1:5090";
    refer_from_the_bridged_callee(&mut h, "c12", carol, EgressPolicy::unrestricted());
    h.response(202);
    let trying = h.request(rsip::Method::Notify, CALLEE);
    assert!(String::from_utf8_lossy(&trying.body).contains("100 Trying"));
    let to_carol = h.request(rsip::Method::Invite, carol);
    h.send_msg(
        carol,
        callee_response(
            &to_carol,
            200,
            "OK",
            "t3",
            carol,
            &SDP.replace("6000", "8000"),
        ),
    );
    h.request(rsip::Method::Ack, carol);
    let done = h.request(rsip::Method::Notify, CALLEE);
    assert!(String::from_utf8_lossy(&done.body).contains("200 OK"));
    h.request(rsip::Method::Bye, CALLEE);
    let reinvite = h.request(rsip::Method::Invite, CALLER);
    assert!(
        String::from_utf8_lossy(&reinvite.body).contains("m=audio 8000"),
        "the caller's media now goes to carol"
    );
    assert_eq!(h.ep.calls(), 1, "the call goes on, bridged to carol");
}

#[test]
fn a_refer_to_loopback_or_a_private_address_is_refused_403_and_the_bridge_stays() {
    for (n, target) in ["127.0.0.1:5085", "10.0.0.3:5060", "169.254.169.254:5060"]
        .into_iter()
        .enumerate()
    {
        let mut h = Harness::new(dial_two());
        let call_id = format!("refused{n}");
        let to_tag =
            refer_from_the_bridged_callee(&mut h, &call_id, target, EgressPolicy::default());
        // The one thing sent is the 403 to the transferor: no INVITE to
        // the target, no NOTIFY, no BYE to anyone.
        let sent: Vec<_> = h.sent.drain(..).collect();
        match &sent[..] {
            [(peer, rsip::SipMessage::Response(refused))] => {
                assert_eq!(*peer, udp(CALLEE), "{target}");
                assert_eq!(refused.status_code.code(), 403, "{target}");
                assert_eq!(
                    crate::message::cseq(refused),
                    Some((2, rsip::Method::Refer))
                );
            }
            other => panic!("{target}: {other:?}"),
        }
        assert_eq!(h.ep.calls(), 1, "{target}: the call goes on");
        // The bridge is intact: the caller's hang-up reaches the callee.
        h.send(CALLER, &in_dialog("BYE", &call_id, &to_tag, 2, "", ""));
        h.request(rsip::Method::Bye, CALLEE);
    }
}

#[test]
fn a_refer_to_loopback_or_a_private_address_rings_it_when_private_destinations_allow() {
    let private = EgressPolicy::default().allowing_setting(Setting::PrivateDestinations);
    for (n, (target, egress)) in [
        ("127.0.0.1:5085", private),
        ("10.0.0.3:5060", private),
        // The tenant's trunk needs no permission.
        (TRUNK, EgressPolicy::default()),
    ]
    .into_iter()
    .enumerate()
    {
        let mut h = Harness::new(dial_two());
        refer_from_the_bridged_callee(&mut h, &format!("allowed{n}"), target, egress);
        h.response(202);
        let invite = h.request(rsip::Method::Invite, target);
        assert!(invite.uri.to_string().contains(target), "{}", invite.uri);
    }
}

fn dial_one(target: switchyard_contract::DialTarget) -> Box<Decide> {
    Box::new(move |event| match event {
        Event::Incoming(_) => Plan {
            verbs: vec![dial(
                std::slice::from_ref(&target),
                switchyard_contract::RingStrategy::Sequential,
                false,
            )],
        },
        _ => Plan { verbs: vec![] },
    })
}

fn register(h: &mut Harness, authorization: Option<&str>, cseq: u32) -> rsip::Response {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\n"))
        .unwrap_or_default();
    h.send(
        ALICE,
        &format!(
            "REGISTER sip:acme.test SIP/2.0
Via: SIP/2.0/UDP {ALICE};branch=z9hG4bK-reg{cseq}
Max-Forwards: 70
From: <sip:alice@acme.test>;tag=reg
To: <sip:alice@acme.test>
Call-ID: reg1
CSeq: {cseq} REGISTER
Contact: <sip:alice@{ALICE}>
Expires: 600
{auth}Content-Length: 0

"
        ),
    );
    let (_, msg) = h.sent.pop_back().expect("a REGISTER response");
    let rsip::SipMessage::Response(response) = msg else {
        panic!("expected a response");
    };
    response
}

#[test]
fn a_sip_address_of_the_tenants_domain_rings_the_registered_user() {
    let target = switchyard_contract::DialTarget::Sip("sip:alice@acme.test".into());
    let mut h = Harness::new(dial_one(target));
    let challenge = register(&mut h, None, 1);
    assert_eq!(challenge.status_code.code(), 401);
    let offered = super::wire::header_value(&challenge.headers, "WWW-Authenticate").unwrap();
    let answer = crate::digest::answer(
        &offered,
        "REGISTER",
        "sip:acme.test",
        "alice",
        "secret",
        1,
        "cnonce",
    )
    .unwrap();
    assert_eq!(register(&mut h, Some(&answer), 2).status_code.code(), 200);
    h.send(CALLER, &invite("100", "c13"));
    let invite = h.request(rsip::Method::Invite, ALICE);
    assert_eq!(invite.uri.to_string(), format!("sip:alice@{ALICE}"));
}

#[test]
fn a_trunk_challenge_is_answered_once_with_its_credentials() {
    let mut h = Harness::new(dial_one(switchyard_contract::DialTarget::Number(
        "+15550199".into(),
    )));
    h.send(CALLER, &invite("100", "c14"));
    let first = h.request(rsip::Method::Invite, TRUNK);
    assert_eq!(first.uri.to_string(), format!("sip:+15550199@{TRUNK}"));
    let mut book = crate::digest::NonceBook::new(Duration::from_secs(300), test_rng(9));
    h.send_msg(TRUNK, trunk_challenge(&mut book, h.now, &first));
    let second = h.request(rsip::Method::Invite, TRUNK);
    assert_trunk_credentials(&mut book, h.now, &first, &second);
}

/// The trunk's 407 to `invite`, with challenges from `book` (realm carrier).
fn trunk_challenge(
    book: &mut crate::digest::NonceBook,
    now: Instant,
    invite: &rsip::Request,
) -> rsip::Response {
    let mut challenge = message::response(invite, 407, "Proxy Authentication Required", Some("tr"));
    for value in book.challenge(now, "carrier", false) {
        challenge
            .headers
            .push(rsip::Header::Other("Proxy-Authenticate".into(), value));
    }
    challenge
}

/// `second` retries `first` with the trunk's credentials (acme /
/// trunk-secret), in the same dialog attempt at CSeq 2.
fn assert_trunk_credentials(
    book: &mut crate::digest::NonceBook,
    now: Instant,
    first: &rsip::Request,
    second: &rsip::Request,
) {
    let authorization =
        super::wire::header_value(&second.headers, "Proxy-Authorization").expect("credentials");
    let verdict = book.verify(now, "carrier", "INVITE", &authorization, |user| {
        (user == "acme").then(|| "trunk-secret".to_string())
    });
    assert!(
        matches!(verdict, crate::digest::Verdict::Ok { .. }),
        "{verdict:?}"
    );
    assert_eq!(crate::message::cseq(second).map(|(n, _)| n), Some(2));
    assert_eq!(super::wire::call_id(second), super::wire::call_id(first));
    assert_eq!(super::wire::from_tag(second), super::wire::from_tag(first));
}

// ---------------------------------------------------------------- media

fn say(text: &str) -> Verb {
    Verb::Say(Say::text(text))
}

fn caller_gather(prompt: &str) -> Verb {
    Verb::Gather(Gather {
        input: GatherInput::Dtmf,
        num_digits: Some(1),
        finish_on_key: None,
        timeout_secs: 5,
        prompts: vec![switchyard_contract::Prompt::Say(Say::text(prompt))],
    })
}

#[test]
fn answering_opens_a_stream_on_a_pool_port_named_in_the_sdp() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => Plan {
            verbs: vec![say("Hello")],
        },
        _ => Plan { verbs: vec![] },
    }));
    h.send(CALLER, &invite("100", "m1"));
    let ok = h.response(200);
    let body = String::from_utf8(ok.body.clone()).unwrap();
    let Some((stream, Action::Open { port, tenant, .. })) = h.actions.first().cloned() else {
        panic!("no stream opened: {:?}", h.actions);
    };
    assert_eq!(tenant, "acme");
    assert!(port % 2 == 0 && (20000..=29999).contains(&port));
    assert!(
        body.contains(&format!("m=audio {port} RTP/AVP 0 101")),
        "{body}"
    );
    let start = h.actions.iter().find_map(|(s, a)| match a {
        Action::Start(p) if *s == stream => Some(*p),
        _ => None,
    });
    let start = start.expect("the stream starts with the caller's offer");
    assert_eq!(start.remote, Some("127.0.0.1:6000".parse().unwrap()));
    assert_eq!(start.dtmf_pt, Some(101));
    assert!(
        h.actions
            .iter()
            .any(|(_, a)| matches!(a, Action::Play { prompts, .. } if prompts.len() == 1))
    );
    // The say ends when the media edge says so; the plan's end hangs up.
    h.send(CALLER, &ack("m1", &tag(&ok)));
    h.advance(5_000);
    h.request(rsip::Method::Bye, CALLER);
    assert!(
        h.actions
            .iter()
            .any(|(s, a)| *s == stream && matches!(a, Action::Close))
    );
    assert_eq!(
        h.ep.ports.available(),
        PortPool::new(20000, 29999).available()
    );
}

#[test]
fn an_rtp_digit_interrupts_the_gather_prompt_and_completes_it() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => Plan {
            verbs: vec![caller_gather("Press a key")],
        },
        Event::GatherComplete(_) => Plan {
            verbs: vec![Verb::Hangup],
        },
        _ => Plan { verbs: vec![] },
    }));
    h.send(CALLER, &invite("100", "m2"));
    let ok = h.response(200);
    h.send(CALLER, &ack("m2", &tag(&ok)));
    let stream = h.last_stream();
    h.advance(300);
    h.notice(stream, Notice::Digit('7'));
    assert!(
        h.actions
            .iter()
            .any(|(s, a)| *s == stream && matches!(a, Action::StopPlay))
    );
    let gathered = h.events_seen.iter().find_map(|e| match e {
        Event::GatherComplete(g) => Some(g.digits.clone()),
        _ => None,
    });
    assert_eq!(gathered.as_deref(), Some("7"));
}

#[test]
fn a_gather_timeout_counts_from_the_end_of_the_prompt_audio() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => Plan {
            verbs: vec![caller_gather("Press a key")],
        },
        _ => Plan {
            verbs: vec![Verb::Hangup],
        },
    }));
    h.send(CALLER, &invite("100", "m3"));
    let ok = h.response(200);
    h.send(CALLER, &ack("m3", &tag(&ok)));
    let stream = h.last_stream();
    // The prompt plays much longer than estimated: the media edge decides.
    h.notices.clear();
    h.advance(20_000);
    assert!(
        !h.events_seen
            .iter()
            .any(|e| matches!(e, Event::GatherComplete(_)))
    );
    let id = h.actions.iter().find_map(|(_, a)| match a {
        Action::Play { id, .. } => Some(*id),
        _ => None,
    });
    h.notice(stream, Notice::PlayDone(id.unwrap()));
    h.advance(4_999);
    assert!(
        !h.events_seen
            .iter()
            .any(|e| matches!(e, Event::GatherComplete(_)))
    );
    h.advance(1);
    assert!(
        h.events_seen
            .iter()
            .any(|e| matches!(e, Event::GatherComplete(_)))
    );
}

#[test]
fn record_stops_on_its_finish_key_and_reports_the_stored_recording() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => Plan {
            verbs: vec![Verb::Record(switchyard_contract::RecordOptions {
                max_length_secs: 60,
                finish_on_key: "#".into(),
                play_beep: true,
                trim_silence: false,
                silence_timeout_secs: 5,
            })],
        },
        _ => Plan { verbs: vec![] },
    }));
    h.send(CALLER, &invite("100", "m4"));
    let ok = h.response(200);
    h.send(CALLER, &ack("m4", &tag(&ok)));
    let stream = h.last_stream();
    let (id, spec) = h
        .actions
        .iter()
        .find_map(|(_, a)| match a {
            Action::Record { id, spec } => Some((*id, spec.clone())),
            _ => None,
        })
        .expect("record asked of the media edge");
    assert_eq!(
        spec,
        switchyard_media::RecordSpec {
            max_ms: 60_000,
            silence_ms: 5_000,
            beep: true,
            trim_silence: false
        }
    );
    h.notice(stream, Notice::Digit('5')); // not a finish key: recorded as audio
    h.notice(stream, Notice::Digit('#'));
    assert!(h.actions.iter().any(|(_, a)| matches!(
        a,
        Action::StopRecord(switchyard_contract::RecordEnd::FinishKey)
    )));
    let saved = switchyard_media::Saved {
        recording_id: "RE1".into(),
        duration_ms: 1200,
    };
    h.notice(
        stream,
        Notice::Recorded {
            id,
            ended_by: switchyard_contract::RecordEnd::FinishKey,
            saved: Ok(saved),
        },
    );
    let result = h.events_seen.iter().find_map(|e| match e {
        Event::RecordComplete(r) => Some(r.clone()),
        _ => None,
    });
    let result = result.expect("record-complete reached the handler");
    assert_eq!(
        (
            result.recording_id.as_str(),
            result.duration_ms,
            result.digit
        ),
        ("RE1", 1200, Some('#'))
    );
}

#[test]
fn a_media_timeout_hangs_the_call_up() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => Plan {
            verbs: vec![caller_gather("Anyone there?")],
        },
        _ => Plan { verbs: vec![] },
    }));
    h.send(CALLER, &invite("100", "m5"));
    let ok = h.response(200);
    h.send(CALLER, &ack("m5", &tag(&ok)));
    let stream = h.last_stream();
    h.notice(stream, Notice::Timeout);
    h.request(rsip::Method::Bye, CALLER);
    assert!(
        h.events_seen
            .iter()
            .any(|e| matches!(e, Event::Hangup(switchyard_contract::HangupCause::System)))
    );
}

#[test]
fn send_digits_go_as_rfc4733_when_the_caller_offered_telephone_event() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => Plan {
            verbs: vec![Verb::SendDigits("12".into()), Verb::Hangup],
        },
        _ => Plan { verbs: vec![] },
    }));
    h.send(CALLER, &invite("100", "m6"));
    let ok = h.response(200);
    h.send(CALLER, &ack("m6", &tag(&ok)));
    assert!(
        h.actions
            .iter()
            .any(|(_, a)| matches!(a, Action::SendDigits { digits, .. } if digits == "12"))
    );
    h.advance(1_000);
    let bye = h.request(rsip::Method::Bye, CALLER);
    assert_eq!(super::wire::call_id(&bye).as_deref(), Some("m6"));
    assert!(
        !h.sent.iter().any(
            |(_, m)| matches!(m, rsip::SipMessage::Request(r) if r.method == rsip::Method::Info)
        )
    );
}

/// A recorded dial of CALLEE straight away, with `answer_on_bridge` as given.
fn recorded_dial(answer_on_bridge: bool) -> Box<Decide> {
    Box::new(move |event| match event {
        Event::Incoming(_) => {
            let mut verb = dial(
                &[sip_target(CALLEE)],
                switchyard_contract::RingStrategy::Sequential,
                true,
            );
            if let Verb::Dial(spec) = &mut verb {
                spec.answer_on_bridge = answer_on_bridge;
            }
            Plan { verbs: vec![verb] }
        }
        _ => Plan { verbs: vec![] },
    })
}

/// Final and provisional responses the caller got, in order.
fn caller_statuses(h: &mut Harness) -> Vec<u16> {
    let mut statuses = Vec::new();
    h.sent.retain(|(peer, msg)| match msg {
        rsip::SipMessage::Response(r) if peer.addr.to_string() == CALLER => {
            statuses.push(r.status_code.code());
            false
        }
        _ => true,
    });
    statuses
}

#[test]
fn a_recorded_dial_without_answer_on_bridge_answers_the_caller_before_the_callee_rings() {
    let mut h = Harness::new(recorded_dial(false));
    h.send(CALLER, &invite("100", "aob1"));
    assert_eq!(
        caller_statuses(&mut h),
        [200],
        "answered as the dial starts"
    );
    let fork_invite = h.request(rsip::Method::Invite, CALLEE);
    h.send_msg(
        CALLEE,
        callee_response(&fork_invite, 180, "Ringing", "bob", CALLEE, ""),
    );
    assert_eq!(caller_statuses(&mut h), Vec::<u16>::new());
}

#[test]
fn with_answer_on_bridge_a_recorded_dial_answers_the_caller_only_at_the_bridge() {
    let mut h = Harness::new(recorded_dial(true));
    h.send(CALLER, &invite("100", "aob2"));
    assert_eq!(caller_statuses(&mut h), Vec::<u16>::new());
    let fork_invite = h.request(rsip::Method::Invite, CALLEE);
    // The callee's early SDP answers our stream's offer: the caller hears
    // plain ringing, not a 183 with an SDP that is not for it.
    let early = SDP.replace("6000", "7000").replace("o=caller", "o=callee");
    h.send_msg(
        CALLEE,
        callee_response(&fork_invite, 183, "Session Progress", "bob", CALLEE, &early),
    );
    assert_eq!(caller_statuses(&mut h), [180]);
    h.send_msg(
        CALLEE,
        callee_response(&fork_invite, 200, "OK", "bob", CALLEE, &early),
    );
    assert_eq!(caller_statuses(&mut h), [200], "answered at the bridge");
    h.request(rsip::Method::Ack, CALLEE);
}

#[test]
fn a_dial_after_answering_anchors_media_and_records_the_bridge() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => Plan {
            verbs: vec![
                say("Connecting"),
                dial(
                    &[sip_target(CALLEE)],
                    switchyard_contract::RingStrategy::Sequential,
                    true,
                ),
            ],
        },
        Event::DialComplete(_) => Plan {
            verbs: vec![Verb::Hangup],
        },
        _ => Plan { verbs: vec![] },
    }));
    h.send(CALLER, &invite("100", "m7"));
    let ok = h.response(200);
    h.send(CALLER, &ack("m7", &tag(&ok)));
    let caller_stream = h.last_stream();
    h.advance(3_000); // the say ends, the dial starts
    let fork_invite = h.request(rsip::Method::Invite, CALLEE);
    let (fork_stream, fork_port) = h
        .actions
        .iter()
        .rev()
        .find_map(|(s, a)| match a {
            Action::Open { port, .. } => Some((*s, *port)),
            _ => None,
        })
        .unwrap();
    assert_ne!(fork_stream, caller_stream);
    let offer = String::from_utf8(fork_invite.body.clone()).unwrap();
    assert!(
        offer.contains(&format!("m=audio {fork_port} ")),
        "the fork is offered our stream: {offer}"
    );
    let answer = SDP.replace("6000", "7000").replace("o=caller", "o=callee");
    let answer = answer.replace('\n', "\r\n");
    h.send_msg(
        CALLEE,
        callee_response(&fork_invite, 200, "OK", "bob", CALLEE, &answer),
    );
    let started = h.actions.iter().find_map(|(s, a)| match a {
        Action::Start(p) if *s == fork_stream => Some(p.remote),
        _ => None,
    });
    assert_eq!(started, Some(Some("127.0.0.1:7000".parse().unwrap())));
    let record = h.actions.iter().find_map(|(s, a)| match a {
        Action::Bridge { other, record } if *s == caller_stream && *other == fork_stream => {
            Some(*record)
        }
        _ => None,
    });
    let record = record
        .expect("caller and fork are bridged")
        .expect("and recorded");
    // A digit of the caller reaches the callee through the bridge.
    h.notice(caller_stream, Notice::Digit('4'));
    let relayed = h.actions.iter().any(|(s, a)| {
        *s == fork_stream && matches!(a, Action::SendDigits { digits, .. } if digits == "4")
    });
    assert!(relayed, "{:?}", h.actions);
    // The callee hangs up: the bridge ends, the recording is stored, then
    // the dial's result carries its id.
    let our_tag = fork_invite
        .from_header()
        .unwrap()
        .tag()
        .unwrap()
        .unwrap()
        .value()
        .to_string();
    let call_id = super::wire::call_id(&fork_invite).unwrap();
    let bye = format!(
        "BYE sip:switchyard@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP {CALLEE};branch=z9hG4bK-byebob
Max-Forwards: 70
From: <sip:bob@{CALLEE}>;tag=bob
To: <sip:bob@{CALLEE}>;tag={our_tag}
Call-ID: {call_id}
CSeq: 2 BYE
Content-Length: 0

"
    );
    h.send(CALLEE, &bye);
    assert!(
        h.actions
            .iter()
            .any(|(s, a)| *s == caller_stream && matches!(a, Action::Unbridge))
    );
    assert!(
        h.actions
            .iter()
            .any(|(s, a)| *s == fork_stream && matches!(a, Action::Close))
    );
    assert!(
        !h.events_seen
            .iter()
            .any(|e| matches!(e, Event::DialComplete(_)))
    );
    let saved = switchyard_media::Saved {
        recording_id: "RE2".into(),
        duration_ms: 3000,
    };
    h.notice(
        caller_stream,
        Notice::Recorded {
            id: record,
            ended_by: switchyard_contract::RecordEnd::Hangup,
            saved: Ok(saved),
        },
    );
    let dialed = h.events_seen.iter().find_map(|e| match e {
        Event::DialComplete(d) => Some(d.clone()),
        _ => None,
    });
    assert_eq!(dialed.unwrap().recording_id.as_deref(), Some("RE2"));
}

#[test]
fn an_invite_without_sdp_gets_our_offer_and_the_stream_starts_with_the_answer_in_the_ack() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => Plan {
            verbs: vec![say("Hello")],
        },
        _ => Plan { verbs: vec![] },
    }));
    let invite = invite("100", "m8");
    let (head, _) = invite.split_once("\n\n").unwrap();
    let head = head.replace("Content-Type: application/sdp\n", "").replace(
        &format!("Content-Length: {}", SDP.replace('\n', "\r\n").len()),
        "Content-Length: 0",
    );
    h.send(CALLER, &format!("{head}\n\n"));
    let ok = h.response(200);
    let offer = String::from_utf8(ok.body.clone()).unwrap();
    let stream = h.last_stream();
    assert!(offer.contains("m=audio "), "our offer: {offer}");
    assert!(
        !h.actions.iter().any(|(_, a)| matches!(a, Action::Start(_))),
        "no stream starts before the answer"
    );
    let answer = SDP.replace("6000", "6100");
    h.send(
        CALLER,
        &in_dialog(
            "ACK",
            "m8",
            &tag(&ok),
            1,
            "Content-Type: application/sdp\n",
            &answer,
        ),
    );
    let started = h.actions.iter().find_map(|(s, a)| match a {
        Action::Start(p) if *s == stream => Some(p.remote),
        _ => None,
    });
    assert_eq!(started, Some(Some("127.0.0.1:6100".parse().unwrap())));
}

#[test]
fn with_every_media_port_taken_a_call_is_refused_503_until_one_is_free() {
    let hold = || Plan {
        verbs: vec![pause_then(60_000, Verb::Hangup).verbs[0].clone()],
    };
    let mut h = Harness::with_ports(Box::new(move |_| hold()), (20000, 20001));
    h.send(CALLER, &invite("100", "p1"));
    let ok = h.response(200);
    h.send(CALLER, &ack("p1", &tag(&ok)));
    h.send(CALLER, &invite("100", "p2"));
    // (The reason phrase says "no media ports"; rsip re-reads it as the
    // standard one, so only the status is checked here.)
    h.response(503);
    h.send(CALLER, &in_dialog("BYE", "p1", &tag(&ok), 2, "", ""));
    h.send(CALLER, &invite("100", "p3"));
    h.response(200);
}

/// A dialled call to `number` that rings, is answered, then hung up by
/// the caller 3 s later.
fn ring_answer_hang_up(h: &mut Harness, number: &str, call_id: &str) {
    h.send(CALLER, &invite(number, call_id));
    let out = h.request(rsip::Method::Invite, CALLEE);
    h.send_msg(
        CALLEE,
        callee_response(&out, 180, "Ringing", "t1", CALLEE, ""),
    );
    h.response(180);
    let answer = SDP.replace("6000", "7000");
    h.send_msg(
        CALLEE,
        callee_response(&out, 200, "OK", "t1", CALLEE, &answer),
    );
    let to_tag = tag(&h.response(200));
    h.send(CALLER, &ack(call_id, &to_tag));
    h.advance(3_000);
    h.send(CALLER, &in_dialog("BYE", call_id, &to_tag, 2, "", ""));
    h.request(rsip::Method::Bye, CALLEE);
    assert_eq!(h.ep.calls(), 0);
}

#[test]
fn a_number_with_a_status_callback_reports_initiated_ringing_answered_completed() {
    let mut h = Harness::new(dial_one(sip_target(CALLEE)));
    let start = h.ep.unix_ms(h.now);
    ring_answer_hang_up(&mut h, "300", "s1");
    let got: Vec<(&str, u32)> = h
        .statuses
        .iter()
        .map(|s| (s.status.as_str(), s.sequence))
        .collect();
    assert_eq!(
        got,
        [
            ("initiated", 0),
            ("ringing", 1),
            ("answered", 2),
            ("completed", 3)
        ]
    );
    let cdr = &h.cdrs[0];
    for status in &h.statuses {
        assert_eq!(status.url, STATUS_URL);
        assert_eq!(status.call_id, cdr.call_id);
        assert_eq!(status.tenant, "acme");
        assert_eq!(status.from, "sip:caller@example.com");
        assert_eq!(status.to, "300");
        assert!(status.unix_ms >= start);
        assert_eq!(
            status.end.is_some(),
            status.status == CallProgress::Completed
        );
    }
    let times: Vec<u64> = h.statuses.iter().map(|s| s.unix_ms).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(times[3] - times[2], 3_000, "completed 3 s after answer");
    assert_eq!(
        h.statuses[3].end,
        Some(CallEnd {
            outcome: "completed".into(),
            sip_status: Some(200),
            duration_secs: 3,
        })
    );
}

#[test]
fn a_number_without_a_status_callback_reports_nothing() {
    let mut h = Harness::new(dial_one(sip_target(CALLEE)));
    ring_answer_hang_up(&mut h, "100", "s2");
    assert_eq!(h.cdrs.len(), 1);
    assert!(h.statuses.is_empty(), "{:?}", h.statuses);
}

#[test]
fn a_rejected_call_reports_initiated_then_completed_with_its_status() {
    let mut h = Harness::new(Box::new(|_| Plan {
        verbs: vec![Verb::Reject(RejectReason::Busy)],
    }));
    h.send(CALLER, &invite("300", "s3"));
    let busy = h.response(486);
    h.send(CALLER, &ack("s3", &tag(&busy)));
    let got: Vec<&str> = h.statuses.iter().map(|s| s.status.as_str()).collect();
    assert_eq!(got, ["initiated", "completed"]);
    let end = h.statuses[1].end.as_ref().unwrap();
    assert_eq!(
        (end.outcome.as_str(), end.sip_status, end.duration_secs),
        ("busy", Some(486), 0)
    );
}

// ------------------------------------------------------------ admission

/// A harness whose tenants `acme` (number 100) and `beta` (number 200)
/// both have `limits`, under the runtime's `capacity`; every call holds
/// for a minute.
fn admission_harness(limits: crate::directory::Limits, capacity: Capacity) -> Harness {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => pause_then(60_000, Verb::Hangup),
        _ => Plan { verbs: vec![] },
    }));
    let mut tenants = Vec::new();
    for (id, number) in [("acme", "100"), ("beta", "200")] {
        let mut tenant = Tenant::new(id);
        tenant.limits = limits;
        tenant.bind(number, "main", "v1", Arc::clone(&h.handler));
        tenants.push(tenant);
    }
    let mut config = EndpointConfig::new(vec![(Transport::Udp, "127.0.0.1:5060".parse().unwrap())]);
    config.admission = capacity;
    config.egress = EgressPolicy::unrestricted();
    h.ep = Endpoint::new(
        h.now,
        UNIX_MS,
        test_rng(2),
        config,
        Arc::new(Directory::new(tenants)),
    );
    h
}

fn queued(max_calls: Option<u32>, queue: u32, wait_ms: u64) -> crate::directory::Limits {
    crate::directory::Limits {
        max_calls,
        calls_per_second: None,
        queue,
        queue_wait: Duration::from_millis(wait_ms),
    }
}

/// The final responses sent since the last look: (status, Call-ID).
fn finals(h: &mut Harness) -> Vec<(u16, String)> {
    std::mem::take(&mut h.sent)
        .into_iter()
        .filter_map(|(_, msg)| match msg {
            rsip::SipMessage::Response(r) if r.status_code.code() >= 200 => Some((
                r.status_code.code(),
                r.call_id_header().unwrap().value().to_string(),
            )),
            _ => None,
        })
        .collect()
}

/// Answers `call_id`'s 200 with an ACK; the To tag, for its BYE.
fn ack_ok(h: &mut Harness, call_id: &str) -> String {
    let ok = h.response(200);
    assert_eq!(ok.call_id_header().unwrap().value(), call_id);
    let tag = tag(&ok);
    h.send(CALLER, &ack(call_id, &tag));
    tag
}

#[test]
fn a_call_above_its_tenants_limit_waits_with_100_trying_and_starts_when_a_call_ends() {
    let mut h = admission_harness(queued(Some(1), 5, 2_000), Capacity::default());
    h.send(CALLER, &invite("100", "w1"));
    let tag1 = ack_ok(&mut h, "w1");
    h.send(CALLER, &invite("100", "w2"));
    assert!(h.nothing_sent(), "w2 waits: no answer yet");
    assert_eq!(h.ep.calls(), 1, "no call, no guest, while waiting");
    h.advance(200);
    h.response(100);
    h.advance(1_000);
    assert!(h.nothing_sent());
    h.send(CALLER, &in_dialog("BYE", "w1", &tag1, 2, "", ""));
    assert_eq!(finals(&mut h), vec![(200, "w1".into()), (200, "w2".into())]);
    let stats = h.ep.admission_stats();
    assert_eq!(stats.admitted_after_wait, 1);
    assert_eq!(stats.waiting, vec![("acme".into(), 0), ("beta".into(), 0)]);
}

#[test]
fn a_full_queue_and_an_expired_wait_are_503_with_retry_after() {
    let mut h = admission_harness(queued(Some(1), 1, 1_000), Capacity::default());
    h.send(CALLER, &invite("100", "f1"));
    ack_ok(&mut h, "f1");
    h.send(CALLER, &invite("100", "f2"));
    h.send(CALLER, &invite("100", "f3"));
    let full = h.response(503);
    assert_eq!(
        full.call_id_header().unwrap().value(),
        "f3",
        "the queue holds one"
    );
    assert!(full.to_string().contains("Retry-After: 1"), "{full}");
    assert_eq!(h.ep.admission_stats().waiting[0], ("acme".into(), 1));
    h.advance(999);
    // (f3's 503 is retransmitted until ACKed: only f2 matters here.)
    assert!(!finals(&mut h).iter().any(|(_, id)| id == "f2"));
    h.advance(1);
    let expired = h.response(503);
    assert_eq!(expired.call_id_header().unwrap().value(), "f2");
    assert!(expired.to_string().contains("Retry-After: 1"), "{expired}");
    let stats = h.ep.admission_stats();
    assert_eq!(
        (
            stats.refused_full,
            stats.refused_timeout,
            stats.waiting[0].1
        ),
        (1, 1, 0)
    );
    assert!(h.cdrs.is_empty(), "refused calls never started");
}

#[test]
fn a_cancel_of_a_waiting_call_is_487_and_it_leaves_the_queue() {
    let mut h = admission_harness(queued(Some(1), 5, 2_000), Capacity::default());
    h.send(CALLER, &invite("100", "k1"));
    let tag1 = ack_ok(&mut h, "k1");
    h.send(CALLER, &invite("100", "k2"));
    h.send(CALLER, &cancel("100", "k2"));
    assert_eq!(finals(&mut h), vec![(200, "k2".into()), (487, "k2".into())]);
    assert_eq!(h.ep.admission_stats().waiting[0].1, 0);
    // The place k1 frees goes to nobody: k2 is gone.
    h.send(CALLER, &in_dialog("BYE", "k1", &tag1, 2, "", ""));
    assert_eq!(finals(&mut h), vec![(200, "k1".into())]);
    assert_eq!(h.ep.calls(), 0);
}

#[test]
fn under_the_global_capacity_a_flooding_tenant_does_not_take_the_others_turn() {
    let capacity = Capacity {
        max_calls: Some(2),
        calls_per_second: None,
    };
    let mut h = admission_harness(queued(None, 10, 5_000), capacity);
    h.send(CALLER, &invite("100", "a1"));
    let a1 = ack_ok(&mut h, "a1");
    h.send(CALLER, &invite("100", "a2"));
    let a2 = ack_ok(&mut h, "a2");
    for id in ["a3", "a4", "a5"] {
        h.send(CALLER, &invite("100", id));
    }
    h.send(CALLER, &invite("200", "b1"));
    assert!(finals(&mut h).is_empty(), "the runtime is full: all wait");
    h.send(CALLER, &in_dialog("BYE", "a1", &a1, 2, "", ""));
    assert_eq!(finals(&mut h), vec![(200, "a1".into()), (200, "a3".into())]);
    h.send(CALLER, &in_dialog("BYE", "a2", &a2, 2, "", ""));
    assert_eq!(
        finals(&mut h),
        vec![(200, "a2".into()), (200, "b1".into())],
        "beta's turn, although acme waited longer"
    );
    assert_eq!(h.ep.admission_stats().waiting[0].1, 2);
}

#[test]
fn a_global_call_rate_releases_a_waiting_call_when_its_token_arrives() {
    let capacity = Capacity {
        max_calls: None,
        calls_per_second: Some(1),
    };
    let mut h = admission_harness(queued(None, 5, 2_000), capacity);
    h.send(CALLER, &invite("100", "r1"));
    ack_ok(&mut h, "r1");
    h.send(CALLER, &invite("200", "r2"));
    h.advance(990);
    assert!(finals(&mut h).is_empty());
    h.advance(20);
    assert_eq!(finals(&mut h), vec![(200, "r2".into())]);
}

// ------------------------------------------------------------ outbound calls

fn outbound(timeout_secs: u64) -> OriginateSpec {
    OriginateSpec {
        to: format!("sip:bob@{CALLEE}"),
        handler: "main".into(),
        from: Some("sip:+15550100@acme.test".into()),
        timeout: Duration::from_secs(timeout_secs),
        status_callback: Some(STATUS_URL.into()),
        join: None,
    }
}

/// Places an outbound call to CALLEE: its id and our INVITE.
fn originate(h: &mut Harness, timeout_secs: u64) -> (String, rsip::Request) {
    let id =
        h.ep.originate(h.now, "acme", outbound(timeout_secs))
            .unwrap();
    h.settle();
    let invite = h.request(rsip::Method::Invite, CALLEE);
    (id, invite)
}

/// A request from CALLEE inside the dialog of our `invite`, answered with `to_tag`.
fn from_callee(method: &str, invite: &rsip::Request, to_tag: &str, cseq: u32) -> String {
    format!(
        "{method} sip:switchyard@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP {CALLEE};branch=z9hG4bK-{method}-{cseq}
Max-Forwards: 70
From: <sip:bob@{CALLEE}>;tag={to_tag}
To: <sip:+15550100@acme.test>;tag={from_tag}
Call-ID: {call_id}
CSeq: {cseq} {method}
Content-Length: 0

",
        from_tag = super::wire::from_tag(invite).unwrap(),
        call_id = super::wire::call_id(invite).unwrap()
    )
}

fn progress(h: &Harness) -> Vec<&'static str> {
    h.statuses.iter().map(|s| s.status.as_str()).collect()
}

#[test]
fn an_answered_outbound_call_runs_its_handler_on_our_stream_until_the_callee_hangs_up() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => Plan {
            verbs: vec![
                say("hello"),
                Verb::Pause(switchyard_contract::Pause { length_ms: 60_000 }),
            ],
        },
        _ => Plan { verbs: vec![] },
    }));
    let (id, invite) = originate(&mut h, 30);
    let stream = h.last_stream();
    let port = h
        .actions
        .iter()
        .find_map(|(_, a)| match a {
            Action::Open { port, .. } => Some(*port),
            _ => None,
        })
        .unwrap();
    let offer = String::from_utf8_lossy(&invite.body).into_owned();
    assert!(offer.contains(&format!("m=audio {port} ")), "{offer}");
    assert!(
        invite
            .from_header()
            .unwrap()
            .value()
            .contains("+15550100@acme.test")
    );
    assert_eq!(h.ep.live_calls("acme")[0].status, "ringing");
    h.send_msg(
        CALLEE,
        callee_response(&invite, 180, "Ringing", "b1", CALLEE, ""),
    );
    assert!(
        h.events_seen.is_empty(),
        "no handler runs before the answer"
    );
    h.send_msg(
        CALLEE,
        callee_response(&invite, 200, "OK", "b1", CALLEE, SDP),
    );
    let ack = h.request(rsip::Method::Ack, CALLEE);
    assert_eq!(super::wire::to_tag(&ack).as_deref(), Some("b1"));
    assert_eq!(
        ack.uri.to_string(),
        format!("sip:callee@{CALLEE}"),
        "to the Contact"
    );
    match &h.events_seen[..] {
        [Event::Incoming(call)] => {
            assert_eq!(call.direction, switchyard_contract::Direction::Outbound);
            assert_eq!(call.to, format!("sip:bob@{CALLEE}"));
        }
        other => panic!("{other:?}"),
    }
    // The answer started our stream toward the callee, and the plan plays on it.
    assert!(h.actions.iter().any(|(s, a)| *s == stream
        && matches!(a, Action::Start(p) if p.remote.map(|r| r.port()) == Some(6000))));
    assert!(
        h.actions
            .iter()
            .any(|(s, a)| *s == stream && matches!(a, Action::Play { .. }))
    );
    assert_eq!(h.ep.live_calls("acme")[0].status, "in-progress");
    h.advance(2_000);
    h.send(CALLEE, &from_callee("BYE", &invite, "b1", 1));
    h.response(200);
    assert!(h.events_seen.iter().any(|e| matches!(e, Event::Hangup(_))));
    assert_eq!(h.cdrs.len(), 1);
    let cdr = &h.cdrs[0];
    assert_eq!(
        (cdr.call_id.as_str(), cdr.outcome.as_str()),
        (id.as_str(), "completed")
    );
    assert!(cdr.answered_ms.is_some());
    assert_eq!(cdr.handler, "main");
    assert_eq!(
        progress(&h),
        ["initiated", "ringing", "answered", "completed"]
    );
    assert_eq!(h.ep.calls(), 0);
}

#[test]
fn the_plan_of_an_outbound_call_hangs_up_with_a_bye_in_the_callees_dialog() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => pause_then(1_000, Verb::Hangup),
        _ => Plan { verbs: vec![] },
    }));
    let (_, invite) = originate(&mut h, 30);
    let mut ok = callee_response(&invite, 200, "OK", "b2", CALLEE, SDP);
    ok.headers
        .push(rsip::Header::RecordRoute(rsip::headers::RecordRoute::new(
            "<sip:proxy@127.0.0.1:5100;lr>",
        )));
    h.send_msg(CALLEE, ok);
    h.request(rsip::Method::Ack, CALLEE);
    h.advance(1_000);
    let bye = h.request(rsip::Method::Bye, CALLEE);
    assert_eq!(super::wire::to_tag(&bye).as_deref(), Some("b2"));
    assert_eq!(super::wire::call_id(&bye), super::wire::call_id(&invite));
    assert_eq!(
        crate::message::cseq(&bye).map(|c| c.0),
        Some(2),
        "after the INVITE's 1"
    );
    assert!(
        bye.to_string()
            .contains("Route: <sip:proxy@127.0.0.1:5100;lr>")
    );
    assert_eq!(h.cdrs[0].outcome, "completed");
}

#[test]
fn a_busy_callee_ends_the_outbound_call_as_busy_without_running_a_plan() {
    let mut h = Harness::new(Box::new(|_| Plan {
        verbs: vec![Verb::Hangup],
    }));
    let (id, invite) = originate(&mut h, 30);
    let stream = h.last_stream();
    h.send_msg(
        CALLEE,
        callee_response(&invite, 486, "Busy Here", "b3", CALLEE, ""),
    );
    // The transaction layer ACKs the failure.
    h.request(rsip::Method::Ack, CALLEE);
    assert!(h.events_seen.is_empty());
    assert_eq!(h.cdrs.len(), 1);
    assert_eq!(
        (h.cdrs[0].call_id.as_str(), h.cdrs[0].outcome.as_str()),
        (id.as_str(), "busy")
    );
    assert_eq!(h.cdrs[0].sip_status, Some(486));
    assert!(
        h.actions
            .iter()
            .any(|(s, a)| *s == stream && matches!(a, Action::Close))
    );
    assert_eq!(progress(&h), ["initiated", "completed"]);
    assert_eq!(h.ep.calls(), 0);
}

#[test]
fn an_outbound_call_nobody_answers_is_cancelled_at_its_timeout() {
    let mut h = Harness::new(Box::new(|_| Plan {
        verbs: vec![Verb::Hangup],
    }));
    let (_, invite) = originate(&mut h, 5);
    h.send_msg(
        CALLEE,
        callee_response(&invite, 180, "Ringing", "b4", CALLEE, ""),
    );
    h.advance(4_900);
    assert!(h.nothing_sent());
    h.advance(200);
    let cancel = h.request(rsip::Method::Cancel, CALLEE);
    assert_eq!(super::wire::call_id(&cancel), super::wire::call_id(&invite));
    assert_eq!(cancel.uri, invite.uri);
    h.send_msg(CALLEE, message::response(&cancel, 200, "OK", Some("b4")));
    assert!(h.cdrs.is_empty(), "the INVITE's final response is awaited");
    h.send_msg(
        CALLEE,
        callee_response(&invite, 487, "Request Terminated", "b4", CALLEE, ""),
    );
    assert_eq!(h.cdrs[0].outcome, "no-answer");
    assert!(h.events_seen.is_empty());
}

#[test]
fn a_hangup_from_the_api_before_the_answer_cancels_the_invite() {
    let mut h = Harness::new(Box::new(|_| Plan {
        verbs: vec![Verb::Hangup],
    }));
    let (id, invite) = originate(&mut h, 30);
    // No provisional response yet: the CANCEL waits for one (§9.1).
    h.ep.control(h.now, "acme", &id, Control::Hangup).unwrap();
    h.settle();
    assert!(h.nothing_sent());
    assert!(h.ep.live_calls("acme").is_empty());
    h.send_msg(
        CALLEE,
        callee_response(&invite, 180, "Ringing", "b5", CALLEE, ""),
    );
    let cancel = h.request(rsip::Method::Cancel, CALLEE);
    h.send_msg(CALLEE, message::response(&cancel, 200, "OK", Some("b5")));
    h.send_msg(
        CALLEE,
        callee_response(&invite, 487, "Request Terminated", "b5", CALLEE, ""),
    );
    assert_eq!(h.cdrs[0].outcome, "canceled");
    assert!(h.events_seen.is_empty());
    assert_eq!(h.ep.calls(), 0);
}

#[test]
fn an_answer_that_crosses_our_cancel_is_acked_and_hung_up() {
    let mut h = Harness::new(Box::new(|_| Plan {
        verbs: vec![Verb::Hangup],
    }));
    let (id, invite) = originate(&mut h, 30);
    h.send_msg(
        CALLEE,
        callee_response(&invite, 180, "Ringing", "b6", CALLEE, ""),
    );
    h.ep.control(h.now, "acme", &id, Control::Hangup).unwrap();
    h.settle();
    h.request(rsip::Method::Cancel, CALLEE);
    h.send_msg(
        CALLEE,
        callee_response(&invite, 200, "OK", "b6", CALLEE, SDP),
    );
    h.request(rsip::Method::Ack, CALLEE);
    h.request(rsip::Method::Bye, CALLEE);
    assert_eq!(h.cdrs[0].outcome, "canceled");
    assert!(h.events_seen.is_empty());
}

#[test]
fn an_outbound_call_to_a_number_goes_through_the_trunk_and_answers_its_challenge() {
    let mut h = Harness::new(Box::new(|_| Plan {
        verbs: vec![Verb::Pause(switchyard_contract::Pause {
            length_ms: 60_000,
        })],
    }));
    let mut spec = outbound(30);
    spec.to = "+15550199".into();
    h.ep.originate(h.now, "acme", spec).unwrap();
    h.settle();
    let first = h.request(rsip::Method::Invite, TRUNK);
    assert_eq!(first.uri.to_string(), format!("sip:+15550199@{TRUNK}"));
    let mut book = crate::digest::NonceBook::new(Duration::from_secs(300), test_rng(9));
    h.send_msg(TRUNK, trunk_challenge(&mut book, h.now, &first));
    h.request(rsip::Method::Ack, TRUNK);
    let second = h.request(rsip::Method::Invite, TRUNK);
    assert_trunk_credentials(&mut book, h.now, &first, &second);
    assert_eq!(second.body, first.body, "the same offer");
    h.send_msg(TRUNK, callee_response(&second, 200, "OK", "t1", TRUNK, SDP));
    let ack = h.request(rsip::Method::Ack, TRUNK);
    assert_eq!(crate::message::cseq(&ack), Some((2, rsip::Method::Ack)));
    match &h.events_seen[..] {
        [Event::Incoming(call)] => assert_eq!(call.to, "+15550199"),
        other => panic!("{other:?}"),
    }
    // In-dialog requests follow the authenticated INVITE's CSeq.
    let id = h.ep.live_calls("acme")[0].call_id.clone();
    h.ep.control(h.now, "acme", &id, Control::Hangup).unwrap();
    h.settle();
    let bye = h.request(rsip::Method::Bye, TRUNK);
    assert_eq!(crate::message::cseq(&bye).map(|c| c.0), Some(3));
}

#[test]
fn a_second_challenge_or_one_without_credentials_fails_the_outbound_call() {
    let mut h = Harness::new(Box::new(|_| Plan {
        verbs: vec![Verb::Hangup],
    }));
    let mut spec = outbound(30);
    spec.to = "+15550199".into();
    h.ep.originate(h.now, "acme", spec).unwrap();
    h.settle();
    let first = h.request(rsip::Method::Invite, TRUNK);
    let mut book = crate::digest::NonceBook::new(Duration::from_secs(300), test_rng(9));
    h.send_msg(TRUNK, trunk_challenge(&mut book, h.now, &first));
    let second = h.request(rsip::Method::Invite, TRUNK);
    h.send_msg(TRUNK, trunk_challenge(&mut book, h.now, &second));
    assert_eq!(
        (h.cdrs[0].outcome.as_str(), h.cdrs[0].sip_status),
        ("failed", Some(407))
    );
    // A URI elsewhere has no credentials: its challenge ends the call.
    let (_, invite) = originate(&mut h, 30);
    h.send_msg(CALLEE, trunk_challenge(&mut book, h.now, &invite));
    h.request(rsip::Method::Ack, CALLEE);
    assert!(!h.sent.iter().any(
        |(_, m)| matches!(m, rsip::SipMessage::Request(r) if r.method == rsip::Method::Invite)
    ));
    assert_eq!(h.cdrs[1].sip_status, Some(407));
    assert!(h.events_seen.is_empty());
    assert_eq!(h.ep.calls(), 0);
}

#[test]
fn a_number_without_a_trunk_is_refused() {
    let mut h = Harness::new(Box::new(|_| Plan { verbs: vec![] }));
    let mut spec = outbound(30);
    spec.to = "+15550199".into();
    let tenant = h.ep.directory().tenant(0).clone();
    let mut bare = tenant.clone();
    bare.trunks.clear();
    h.ep.set_directory(std::sync::Arc::new(crate::directory::Directory::new(vec![
        bare,
    ])));
    let err = h.ep.originate(h.now, "acme", spec).unwrap_err();
    assert!(err.to_string().contains("no trunk"), "{err}");
    assert!(!super::outbound::is_number("sip:+1555@x") && !is_number("+") && !is_number("12a"));
    assert!(super::outbound::is_number("+15550199") && super::outbound::is_number("*72#1"));
}

#[test]
fn calls_reach_private_addresses_only_when_allowed_or_at_a_trunk() {
    let mut h = Harness::new(dial_one(sip_target("10.1.2.3:5060")));
    h.ep.config.egress = EgressPolicy::default();
    let spec = |to: String| OriginateSpec { to, ..outbound(30) };
    for to in [
        format!("sip:bob@{CALLEE}"),
        "sip:bob@10.1.2.3".to_string(),
        "sip:bob@127.0.0.1:5080".to_string(),
        "sip:bob@169.254.169.254".to_string(),
    ] {
        match h.ep.originate(h.now, "acme", spec(to.clone())) {
            Err(OriginateError::BadAddress(why)) => {
                assert!(why.contains("private_destinations"), "{to}: {why}")
            }
            other => panic!("{to}: {other:?}"),
        }
    }
    assert!(h.sent.is_empty(), "nothing was sent");
    // The account's trunk and public addresses stay reachable.
    for to in [
        format!("sip:bob@{TRUNK}"),
        "sip:bob@192.0.43.10".to_string(),
    ] {
        assert!(
            h.ep.originate(h.now, "acme", spec(to.clone())).is_ok(),
            "{to}"
        );
    }
    h.settle();
    let invites = |h: &Harness| {
        h.sent
            .iter()
            .filter(|(_, m)| matches!(m, rsip::SipMessage::Request(r) if r.method == rsip::Method::Invite))
            .count()
    };
    assert_eq!(invites(&h), 2);

    // A guest's dial follows the same rule: the fork never starts.
    h.send(CALLER, &invite("100", "private"));
    assert_eq!(invites(&h), 2, "no INVITE to 10.1.2.3");
    assert!(
        h.events_seen.iter().any(|e| matches!(
            e,
            Event::DialComplete(d) if d.status == DialStatus::Failed
        )),
        "{:?}",
        h.events_seen
    );

    h.ep.config.egress = EgressPolicy::default().allowing_setting(Setting::PrivateDestinations);
    for to in [format!("sip:bob@{CALLEE}"), "sip:bob@10.1.2.3".to_string()] {
        assert!(
            h.ep.originate(h.now, "acme", spec(to.clone())).is_ok(),
            "{to}"
        );
    }
}

#[test]
fn a_dial_to_loopback_or_a_private_address_fails_unless_private_destinations_allow() {
    let private = EgressPolicy::default().allowing_setting(Setting::PrivateDestinations);
    let rang = |h: &Harness, target: &str| {
        h.sent.iter().any(|(peer, m)| {
            *peer == udp(target)
                && matches!(m, rsip::SipMessage::Request(r) if r.method == rsip::Method::Invite)
        })
    };
    for (n, target) in ["127.0.0.1:5085", "10.1.2.3:5060", "169.254.169.254:5060"]
        .into_iter()
        .enumerate()
    {
        let mut h = Harness::new(dial_one(sip_target(target)));
        h.ep.config.egress = EgressPolicy::default();
        h.send(CALLER, &invite("100", &format!("strict{n}")));
        assert!(!rang(&h, target), "{target}: no INVITE under the default");
        assert!(
            h.events_seen.iter().any(|e| matches!(
                e,
                Event::DialComplete(d) if d.status == DialStatus::Failed
            )),
            "{target}: {:?}",
            h.events_seen
        );

        let mut h = Harness::new(dial_one(sip_target(target)));
        h.ep.config.egress = private;
        h.send(CALLER, &invite("100", &format!("allowed{n}")));
        assert!(rang(&h, target), "{target}: rings when allowed");
    }
    // The tenant's trunk needs no permission.
    let mut h = Harness::new(dial_one(sip_target(TRUNK)));
    h.ep.config.egress = EgressPolicy::default();
    h.send(CALLER, &invite("100", "trunk"));
    assert!(rang(&h, TRUNK));
}

#[test]
fn outbound_calls_are_refused_at_the_tenants_limit_never_queued() {
    let mut h = admission_harness(queued(Some(1), 5, 2_000), Capacity::default());
    let mut spec = outbound(30);
    spec.status_callback = None;
    let first = h.ep.originate(h.now, "acme", spec.clone());
    assert!(first.is_ok());
    assert_eq!(
        h.ep.originate(h.now, "acme", spec.clone()),
        Err(OriginateError::Busy { retry_after: 1 })
    );
    // Another tenant is not held up by it.
    assert!(h.ep.originate(h.now, "beta", spec.clone()).is_ok());
    assert_eq!(
        h.ep.originate(
            h.now,
            "acme",
            OriginateSpec {
                handler: "nope".into(),
                ..spec.clone()
            }
        ),
        Err(OriginateError::UnknownHandler("nope".into()))
    );
    assert!(matches!(
        h.ep.originate(
            h.now,
            "acme",
            OriginateSpec {
                to: "sip:bob@example.com".into(),
                ..spec.clone()
            }
        ),
        Err(OriginateError::BadAddress(_))
    ));
    for (to, from) in [
        (format!("sip:bob@{CALLEE}>\r\nX-Evil: 1"), None),
        (format!("sip:bob@{CALLEE}"), Some("sip:a@b> x".to_string())),
    ] {
        let bad = OriginateSpec {
            to,
            from,
            ..spec.clone()
        };
        assert!(matches!(
            h.ep.originate(h.now, "acme", bad),
            Err(OriginateError::BadAddress(_))
        ));
    }
    assert_eq!(
        h.ep.originate(h.now, "nobody", spec.clone()),
        Err(OriginateError::UnknownTenant("nobody".into()))
    );
    // A busy callee frees the place.
    h.settle();
    let invite = h.request(rsip::Method::Invite, CALLEE);
    h.send_msg(
        CALLEE,
        callee_response(&invite, 486, "Busy Here", "b7", CALLEE, ""),
    );
    assert!(h.ep.originate(h.now, "acme", spec).is_ok());
}

#[test]
fn with_no_media_port_free_an_outbound_call_is_refused_and_gives_its_place_back() {
    let mut h = Harness::with_ports(Box::new(|_| Plan { verbs: vec![] }), (20000, 20001));
    let (_id, _invite) = originate(&mut h, 30);
    assert_eq!(
        h.ep.originate(h.now, "acme", outbound(30)),
        Err(OriginateError::NoMedia)
    );
    assert_eq!(h.ep.calls(), 1);
}

#[test]
fn a_redirect_before_the_answer_names_the_handler_that_runs_at_the_answer() {
    let mut h = Harness::new(Box::new(|event| match event {
        Event::Incoming(_) => pause_then(1_000, Verb::Hangup),
        _ => Plan { verbs: vec![] },
    }));
    let mut tenant = Tenant::new("acme");
    tenant.bind("100", "main", "v1", Arc::clone(&h.handler));
    tenant.bind("200", "other", "v1", Arc::clone(&h.handler));
    h.ep.set_directory(Arc::new(Directory::new(vec![tenant])));
    let (id, invite) = originate(&mut h, 30);
    assert_eq!(
        h.ep.control(h.now, "acme", &id, Control::Redirect("nope".into())),
        Err(ControlError::UnknownHandler("nope".into()))
    );
    h.ep.control(h.now, "acme", &id, Control::Redirect("other".into()))
        .unwrap();
    h.settle();
    assert!(h.events_seen.is_empty(), "nothing runs before the answer");
    h.send_msg(
        CALLEE,
        callee_response(&invite, 200, "OK", "b8", CALLEE, SDP),
    );
    assert!(matches!(h.events_seen[..], [Event::Incoming(_)]));
    h.advance(1_000);
    h.request(rsip::Method::Bye, CALLEE);
    assert_eq!(h.cdrs[0].handler, "other");
    assert_eq!(h.cdrs[0].outcome, "completed");
}

/// `invite` with an Identity header (its contents are the edge's to check).
fn invite_with_identity(number: &str, call_id: &str) -> String {
    invite(number, call_id).replace(
        "Contact:",
        "Identity: eyJ.eyJ.sig;info=<https://cert.example/sp.pem>;alg=ES256;ppt=shaken\nContact:",
    )
}

/// The CANCEL of `invite(number, call_id)`: its request line and
/// headers up to Call-ID, as RFC 3261 §9.1 wants them, method CANCEL.
fn cancel(number: &str, call_id: &str) -> String {
    let invite = invite(number, call_id);
    let head: Vec<&str> = invite.lines().take(6).collect();
    let head = head.join("\n").replacen("INVITE", "CANCEL", 1);
    format!("{head}\nCSeq: 1 CANCEL\nContent-Length: 0\n\n")
}

#[test]
fn a_caller_is_screened_before_the_handler_hears_of_the_call() {
    let pause = || Box::new(|_: &Event| pause_then(60_000, Verb::Hangup)) as Box<Decide>;
    let mut h = Harness::with_config(pause(), |c, _| c.screen_calls = true);
    h.send(CALLER, &invite_with_identity("100", "v1"));
    assert!(h.events_seen.is_empty(), "the handler waits for the check");
    let (invite_key, identity, from, to) = h.verifies.pop().unwrap();
    let identity = identity.unwrap();
    assert!(identity.starts_with("eyJ.eyJ.sig;info="), "{identity}");
    assert_eq!((from.as_str(), to.as_str()), ("caller", "100"));
    let passed = switchyard_contract::Verification {
        status: VerificationStatus::Passed,
        attestation: Some("A".into()),
        label: Some("verified".into()),
    };
    let admit = |v: &switchyard_contract::Verification| Screened::admit(v.clone(), "attestation A");
    h.ep.handle_verified(h.now, &invite_key, admit(&passed));
    h.settle();
    let incoming = |h: &Harness| match h.events_seen.last() {
        Some(Event::Incoming(incoming)) => incoming.verification.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(incoming(&h), passed);

    // A carrier's P-Asserted-Identity is the number orig must match.
    let asserted = invite_with_identity("100", "v4").replace(
        "Contact:",
        "P-Asserted-Identity: \"Front desk\" <tel:+15550100;phone-context=x>\nContact:",
    );
    h.send(CALLER, &asserted);
    let (key, _, from, _) = h.verifies.pop().unwrap();
    assert_eq!(from, "+15550100");
    h.ep.handle_verified(h.now, &key, admit(&passed));
    h.settle();

    // No header: screened all the same (the directory may know the caller).
    let seen = h.events_seen.len();
    h.send(CALLER, &invite("100", "v2"));
    let (key, identity, ..) = h.verifies.pop().unwrap();
    assert_eq!(identity, None);
    assert_eq!(h.events_seen.len(), seen);
    h.ep.handle_verified(h.now, &key, admit(&passed));
    h.settle();
    assert_eq!(incoming(&h), passed);

    // Cancelled while checked: 487, and the late answer finds nothing.
    let seen = h.events_seen.len();
    h.send(CALLER, &invite_with_identity("100", "v3"));
    let (late, ..) = h.verifies.pop().unwrap();
    h.send(CALLER, &cancel("100", "v3"));
    h.response(200);
    h.response(487);
    h.ep.handle_verified(h.now, &late, admit(&passed));
    h.settle();
    assert_eq!(
        h.events_seen.len(),
        seen,
        "a cancelled call's handler never runs"
    );
}

#[test]
fn a_rejected_caller_gets_the_policys_status_and_reason_and_a_record() {
    let pause = Box::new(|_: &Event| pause_then(60_000, Verb::Hangup)) as Box<Decide>;
    let mut h = Harness::with_config(pause, |c, _| c.screen_calls = true);
    h.send(CALLER, &invite("100", "r1"));
    let (key, ..) = h.verifies.pop().unwrap();
    let failed = verification(VerificationStatus::Failed);
    let rejected = Screened {
        outcome: Outcome::Reject {
            status: 608,
            reason: "caller id \"spoofed\"".into(),
        },
        ..Screened::admit(failed, "provider denied: not placed")
    };
    h.ep.handle_verified(h.now, &key, rejected);
    h.settle();
    let response = h.response(608);
    let reason = super::wire::header_value(&response.headers, "Reason").unwrap();
    assert_eq!(reason, "SIP ;cause=608 ;text=\"caller id  spoofed \"");
    assert!(h.events_seen.is_empty(), "the handler never runs");
    let log = &h.logs.last().expect("a decision log").entries();
    assert!(
        log.iter().any(|e| matches!(&e.entry, switchyard_router::Entry::Verified { status, .. } if status == "failed")),
        "{log:?}"
    );
    let cdr = h.cdrs.last().unwrap();
    assert_eq!(
        (cdr.sip_status, cdr.outcome.as_str()),
        (Some(608), "rejected")
    );
}

/// A policy's challenge runs the named handler instead of the number's,
/// the call labelled unverified; a challenge naming no handler of the
/// account leaves the number's handler in charge.
#[test]
fn a_challenge_hands_the_call_to_the_named_handler() {
    let pause = Box::new(|_: &Event| pause_then(1_000, Verb::Hangup)) as Box<Decide>;
    let mut h = Harness::with_config(pause, |c, _| c.screen_calls = true);
    let mut tenant = Tenant::new("acme");
    tenant.bind("100", "main", "v1", Arc::clone(&h.handler));
    tenant.bind("200", "ask", "v1", Arc::clone(&h.handler));
    h.ep.set_directory(Arc::new(Directory::new(vec![tenant])));
    let unverified = switchyard_contract::Verification {
        label: Some("unverified".into()),
        ..verification(VerificationStatus::NoEvidence)
    };
    for (call_id, handler, runs) in [("c1", "ask", "ask"), ("c2", "nobody", "main")] {
        h.send(CALLER, &invite("100", call_id));
        let (key, ..) = h.verifies.pop().unwrap();
        let challenged = Screened {
            outcome: Outcome::Challenge(handler.into()),
            ..Screened::admit(unverified.clone(), "provider unknown-caller")
        };
        h.ep.handle_verified(h.now, &key, challenged);
        h.settle();
        match h.events_seen.last() {
            Some(Event::Incoming(incoming)) => assert_eq!(incoming.verification, unverified),
            other => panic!("{other:?}"),
        }
        h.advance(1_000);
        assert_eq!(h.cdrs.last().unwrap().handler, runs, "challenge {handler}");
    }
}

/// The devices a screened call rings are told its label (the gateway
/// shows it on the client); a trunk or SIP address is not.
#[test]
fn a_client_rung_for_a_screened_call_is_told_its_label() {
    struct Device;
    impl crate::gateway::ClientLocator for Device {
        fn ring(
            &self,
            _: &str,
            _: &str,
        ) -> Result<Vec<(String, Peer)>, crate::gateway::Unreachable> {
            Ok(vec![(format!("sip:DV7@{ALICE}"), udp(ALICE))])
        }
    }
    let dial = dial_one(switchyard_contract::DialTarget::Client("alice".into()));
    let mut h = Harness::with_config(dial, |c, _| c.screen_calls = true);
    h.ep.set_gateway(ALICE.parse().unwrap(), Arc::new(Device));
    h.send(CALLER, &invite("100", "l1"));
    let (key, ..) = h.verifies.pop().unwrap();
    let labelled = switchyard_contract::Verification {
        label: Some("likely-spoofed".into()),
        ..verification(VerificationStatus::Failed)
    };
    h.ep.handle_verified(h.now, &key, Screened::admit(labelled, "provider denied"));
    h.settle();
    let sent = h.request(rsip::Method::Invite, ALICE);
    let label = super::wire::header_value(&sent.headers, crate::gateway::LABEL_HEADER);
    assert_eq!(label.as_deref(), Some("likely-spoofed"));
}

#[test]
fn without_screening_every_call_is_not_checked() {
    let mut h = Harness::new(Box::new(|_| pause_then(60_000, Verb::Hangup)));
    h.send(CALLER, &invite_with_identity("100", "n1"));
    assert!(h.verifies.is_empty());
    match h.events_seen.last() {
        Some(Event::Incoming(incoming)) => {
            assert_eq!(incoming.verification.status, VerificationStatus::NotChecked)
        }
        other => panic!("{other:?}"),
    }
}

/// A tenant that signs: its call through the trunk carries an Identity
/// header that the SHAKEN test certificate verifies, with the trunk's
/// attestation over the tenant's (and a caller id number's own over
/// both), for the caller id and the number.
#[test]
fn a_trunk_call_of_a_signing_tenant_carries_an_identity_header_that_verifies() {
    use switchyard_shaken::{Attestation, Call, Identity, Roots, Signer};
    const KEY: &str = include_str!("../../../shaken/tests/data/sp_sp.priv");
    const SP: &[u8] = include_bytes!("../../../shaken/tests/data/sp_sp.pem");
    const CA: &[u8] = include_bytes!("../../../shaken/tests/data/ca_ca.pem");
    let dial = dial_one(switchyard_contract::DialTarget::Number("+15550199".into()));
    let signing = |tenant: &mut Tenant| {
        let signer = Signer::from_pem(KEY, "https://cert.example/sp.pem").unwrap();
        let attest = Attestation::A;
        let numbers = [("15550101".to_owned(), Attestation::C)].into();
        let signing = crate::directory::Signing {
            signer,
            attest,
            numbers,
        };
        tenant.signing = Some(Arc::new(signing));
    };
    let mut h = Harness::with_config(dial, |_, tenant| {
        signing(tenant);
        tenant.trunks[0].attest = Some(Attestation::B);
    });
    let from_a_number = invite("100", "s1").replace("sip:caller@", "sip:+15550100@");
    h.send(CALLER, &from_a_number);
    let sent = h.request(rsip::Method::Invite, TRUNK);
    let header = super::wire::header_value(&sent.headers, "Identity").expect("an Identity header");
    let identity = Identity::parse(&header).unwrap();
    assert_eq!(identity.x5u(), Ok("https://cert.example/sp.pem"));
    let call = Call {
        from: "+15550100".into(),
        to: "+15550199".into(),
    };
    let roots = Roots::from_pem(CA).unwrap();
    let now = (UNIX_MS / 1000) as i64;
    let verified = identity.verify(SP, &roots, &call, now).unwrap();
    assert_eq!(
        verified.attest,
        Attestation::B,
        "the trunk's, over the tenant's A"
    );
    // A caller id with an attestation of its own.
    h.send(
        CALLER,
        &invite("100", "s3").replace("sip:caller@", "sip:+15550101@"),
    );
    let sent = h.request(rsip::Method::Invite, TRUNK);
    let header = super::wire::header_value(&sent.headers, "Identity").unwrap();
    let call = Call {
        from: "+15550101".into(),
        ..call
    };
    let verified = Identity::parse(&header)
        .unwrap()
        .verify(SP, &roots, &call, now);
    assert_eq!(verified.unwrap().attest, Attestation::C, "the number's own");

    // A call to a SIP address (no trunk) goes unsigned.
    let sip = dial_one(sip_target(CALLEE));
    let mut h = Harness::with_config(sip, |_, tenant| signing(tenant));
    h.send(CALLER, &invite("100", "s2"));
    let sent = h.request(rsip::Method::Invite, CALLEE);
    assert!(super::wire::header_value(&sent.headers, "Identity").is_none());
}

/// Every new outbound INVITE is reported for the placement records
/// (C11): a dial's fork through the trunk, with the caller id it went out
/// with, and a REST call; the authenticated retry of one is not a new
/// placement.
#[test]
fn a_dial_through_a_trunk_and_an_outbound_call_are_placed_once_each() {
    let dial = dial_one(switchyard_contract::DialTarget::Number("+15550199".into()));
    let mut h = Harness::new(dial);
    let from_a_number = invite("100", "p1").replace("sip:caller@", "sip:+15550100@");
    h.send(CALLER, &from_a_number);
    let first = h.request(rsip::Method::Invite, TRUNK);
    let placed = Placement {
        tenant: "acme".into(),
        caller: "+15550100".into(),
        callee: "+15550199".into(),
        call_id: super::wire::call_id(&first).unwrap(),
        at_ms: UNIX_MS,
    };
    assert_eq!(h.placements, [placed]);
    let mut book = crate::digest::NonceBook::new(Duration::from_secs(300), test_rng(9));
    h.advance(1_000);
    h.send_msg(TRUNK, trunk_challenge(&mut book, h.now, &first));
    h.request(rsip::Method::Invite, TRUNK);
    assert_eq!(h.placements.len(), 1, "the retry is the same placement");

    let (_, invite) = originate(&mut h, 30);
    let placed = h.placements.last().unwrap();
    assert_eq!(
        (placed.caller.as_str(), placed.callee.as_str()),
        ("+15550100", "bob")
    );
    assert_eq!(placed.call_id, super::wire::call_id(&invite).unwrap());
    assert_eq!(placed.at_ms, UNIX_MS + 1_000);
    assert_eq!(h.placements.len(), 2);
}
