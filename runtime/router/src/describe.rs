//! Human-readable lines for events, verbs and log entries.

use switchyard_contract::guest::{GuestFailure, ImportRecord};
use switchyard_contract::screening::Ruling;
use switchyard_contract::{DialTarget, Event, MediaSource, Plan, Prompt, RejectReason, Say, Verb};

use crate::{Entry, LogEntry};

/// The WIT spelling of a generated enum case ("InProgress" → "in-progress").
pub fn wit_name<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_value(value).ok();
    let rust = json.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
    let mut out = String::new();
    for (i, c) in rust.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A virtual time as the simulator and `switchyard logs` print it.
pub fn stamp(at_ms: u64) -> String {
    format!("[{:>4}.{:03}s]", at_ms / 1000, at_ms % 1000)
}

pub fn describe_entry(entry: &LogEntry) -> String {
    let body = match &entry.entry {
        Entry::Event { ctx, event } => format!(
            "→ event   #{} {}   (to {})",
            ctx.sequence,
            describe_event(event),
            ctx.handler
        ),
        Entry::Decision {
            outcome,
            elapsed_us,
            imports,
            ..
        } => {
            // The entropy record is what the host gave, not a call the guest made.
            let calls = imports
                .iter()
                .filter(|i| !matches!(i, ImportRecord::Entropy { .. }))
                .count();
            let calls = if calls == 0 {
                String::new()
            } else {
                format!(", {calls} host calls")
            };
            let head = match outcome {
                Ok(plan) => format!(
                    "← plan    {}   ({elapsed_us} µs{calls})",
                    describe_plan(plan)
                ),
                Err(failure) => format!("✗ failed  {failure}   ({elapsed_us} µs{calls})"),
            };
            // What the guest logged is part of what it decided: show it beneath.
            let logs = imports.iter().filter_map(|import| match import {
                ImportRecord::Log { level, message } => {
                    Some(format!("\n{:13}  guest {level}: {message}", ""))
                }
                _ => None,
            });
            std::iter::once(head).chain(logs).collect()
        }
        // A refused plan came back as `Ok` in the decision line: say why here.
        Entry::Fallback {
            plan,
            reason: GuestFailure::InvalidPlan(why),
        } => format!("! fallback {}   (invalid plan: {why})", describe_plan(plan)),
        Entry::Fallback { plan, .. } => format!("! fallback {}", describe_plan(plan)),
        Entry::Handover { reason, to } => format!("! handover to {to} ({reason})"),
        Entry::Verb { verb } => format!("  run     {}", describe_verb(verb)),
        Entry::WaitIgnored { reason } => format!("! wait plan not run ({reason})"),
        Entry::Unreachable { target, reason } => format!("! {target} not rung: {reason}"),
        Entry::Verified {
            status,
            reason,
            screening,
        } => match screening {
            Some(s) => format!(
                "  caller  {status}: {reason}; {} by {}",
                describe_ruling(&s.ruling),
                s.by
            ),
            None => format!("  caller  {status}: {reason}"),
        },
        Entry::Ended { cause } => format!("■ ended   by {}", wit_name(cause)),
    };
    format!("{}  {body}", stamp(entry.at_ms))
}

fn describe_ruling(ruling: &Ruling) -> String {
    match ruling {
        Ruling::Accept => "accepted".into(),
        Ruling::Label(label) => format!("labelled {}", label.as_str()),
        Ruling::Challenge(handler) => format!("challenged (handler {handler})"),
        Ruling::Reject(r) => format!("rejected {} ({})", r.status, r.reason),
    }
}

fn describe_plan(plan: &Plan) -> String {
    if plan.verbs.is_empty() {
        return "empty plan".into();
    }
    plan.verbs
        .iter()
        .map(describe_verb)
        .collect::<Vec<_>>()
        .join(" · ")
}

fn describe_say(say: &Say) -> String {
    let mut text = format!("say {:?}", say.text);
    if let Some(voice) = &say.voice {
        text += &format!(" voice={voice}");
    }
    if let Some(language) = &say.language {
        text += &format!(" language={language}");
    }
    if say.loop_count != 1 {
        text += &format!(" loop={}", say.loop_count);
    }
    text
}

fn describe_media(source: &MediaSource) -> String {
    match source {
        MediaSource::Url(url) => url.clone(),
        MediaSource::MediaId(id) => format!("media:{id}"),
    }
}

fn describe_prompt(prompt: &Prompt) -> String {
    match prompt {
        Prompt::Say(say) => describe_say(say),
        Prompt::Play(play) => format!("play {}", describe_media(&play.source)),
        Prompt::Pause(pause) => format!("pause {} ms", pause.length_ms),
    }
}

pub fn target(target: &DialTarget) -> String {
    match target {
        DialTarget::Number(n) => n.clone(),
        DialTarget::Sip(uri) => uri.clone(),
        DialTarget::Client(id) => format!("client:{id}"),
        DialTarget::Conference(name) => format!("conference:{name}"),
        DialTarget::Queue(name) => format!("queue:{name}"),
        DialTarget::QueueMember(m) => format!("queue:{} call {}", m.queue, m.call_id),
    }
}

pub fn describe_verb(verb: &Verb) -> String {
    match verb {
        Verb::Say(say) => describe_say(say),
        Verb::Play(play) => format!("play {}", describe_media(&play.source)),
        Verb::Pause(pause) => format!("pause {} ms", pause.length_ms),
        Verb::Gather(g) => {
            let mut parts = vec![wit_name(&g.input)];
            if let Some(n) = g.num_digits {
                parts.push(format!("{n} digit{}", if n == 1 { "" } else { "s" }));
            }
            if let Some(key) = g.finish_on_key {
                parts.push(format!("finish {key}"));
            }
            parts.push(format!("timeout {} s", g.timeout_secs));
            let prompts = g.prompts.iter().map(describe_prompt).collect::<Vec<_>>();
            if !prompts.is_empty() {
                parts.push(format!("prompts [{}]", prompts.join(", ")));
            }
            format!("gather ({})", parts.join(", "))
        }
        Verb::Dial(d) => {
            let targets = d
                .targets
                .iter()
                .map(|l| target(&l.target))
                .collect::<Vec<_>>();
            let mut text = format!(
                "dial {} ({}, {} s",
                targets.join(" | "),
                wit_name(&d.strategy),
                d.timeout_secs
            );
            if d.record {
                text += ", record";
            }
            if d.answer_on_bridge {
                text += ", answer-on-bridge";
            }
            if let Some(id) = &d.caller_id {
                text += &format!(", caller-id {id}");
            }
            text + ")"
        }
        Verb::Record(r) => format!(
            "record (max {} s, finish on {:?}{}{})",
            r.max_length_secs,
            r.finish_on_key,
            if r.play_beep { ", beep" } else { "" },
            if r.trim_silence { ", trim silence" } else { "" }
        ),
        Verb::Conference(c) => format!("conference {}", c.name),
        Verb::Enqueue(e) => format!("enqueue {}", e.queue),
        Verb::LeaveQueue => "leave-queue".into(),
        Verb::Pay(p) => match p.charge_amount {
            Some(amount) => format!(
                "pay {} {}.{:02} {}",
                wit_name(&p.method),
                amount / 100,
                amount % 100,
                p.currency
            ),
            None => format!("pay {} (tokenise)", wit_name(&p.method)),
        },
        Verb::Redirect(to) => format!("redirect to {to}"),
        Verb::SendDigits(d) => format!("send-digits {d}"),
        Verb::Hangup => "hangup".into(),
        Verb::Reject(RejectReason::Busy) => "reject busy".into(),
        Verb::Reject(RejectReason::Rejected) => "reject".into(),
        Verb::SetVar(v) => match &v.value {
            Some(value) => format!("set {}={value:?}", v.name),
            None => format!("unset {}", v.name),
        },
    }
}

pub fn describe_event(event: &Event) -> String {
    match event {
        Event::Incoming(c) => format!(
            "incoming from {} to {} ({})",
            c.from,
            c.to,
            wit_name(&c.direction)
        ),
        Event::GatherComplete(g) => format!(
            "gather-complete digits={:?} ({})",
            g.digits,
            wit_name(&g.ended_by)
        ),
        Event::DialComplete(d) => {
            let who = d
                .answered
                .as_ref()
                .map(|t| format!(" by {}", target(t)))
                .unwrap_or_default();
            format!(
                "dial-complete {}{who}, {} s",
                wit_name(&d.status),
                d.duration_secs
            )
        }
        Event::RecordComplete(r) => format!(
            "record-complete {} ({} ms, {})",
            r.recording_id,
            r.duration_ms,
            wit_name(&r.ended_by)
        ),
        Event::ConferenceComplete(c) => {
            format!("conference-complete {} ({})", c.name, wit_name(&c.ended_by))
        }
        Event::QueueComplete(q) => format!(
            "queue-complete {} {} after {} s",
            q.queue,
            wit_name(&q.outcome),
            q.wait_secs
        ),
        Event::QueueWait(q) => format!(
            "queue-wait {} position {} of {}, waited {} s",
            q.queue, q.position, q.size, q.wait_secs
        ),
        Event::PayComplete(p) => format!(
            "pay-complete {}{}",
            wit_name(&p.status),
            p.masked_number
                .as_ref()
                .map(|m| format!(" {m}"))
                .unwrap_or_default()
        ),
        Event::Redirected(from) => format!("redirected from {from}"),
        Event::StatusChanged(status) => format!("status-changed {}", wit_name(status)),
        Event::Hangup(cause) => format!("hangup ({})", wit_name(cause)),
    }
}
