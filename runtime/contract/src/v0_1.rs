//! The contract as `voice:runtime@0.1.1` released it (`wit/history/0.1.1`),
//! for components built against any 0.1.x.
//!
//! The runtime speaks the current types everywhere; only the Wasm host
//! meets these, at the boundary of a 0.1 guest:
//!
//! ```text
//!   router ── Event (current) ──▶ event() ──▶ 0.1 Event ──▶ guest `handle`
//!   router ◀── Plan (current) ◀── plan() ◀── 0.1 Plan ◀──┘
//! ```
//!
//! Every 0.2.0 change is an addition a 0.1 value already fits (`enqueue`'s
//! new fields are options) or a case a 0.1 guest is never sent, so the
//! conversions go through the shared serde shape; the two cases 0.1 cannot
//! express are mapped here by hand.

wasmtime::component::bindgen!({
    path: "../../wit/history/0.1.1",
    world: "call-handler",
    imports: { default: async | trappable },
    exports: { default: async },
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

pub use voice::runtime::types::*;

/// The generated host-import traits of 0.1.x.
pub mod imports {
    pub use super::voice::runtime::{call_vars, clock, kv, log, presence, types};
}

/// A current value a 0.1 guest has no type for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unrepresentable(pub String);

/// The event as a 0.1 guest receives it. `conference-end.full` is told as
/// `ended`, as 0.1 runtimes did; a `queue-member` that answered a dial as
/// `queue(name)`. `queue-wait` cannot be told: only an
/// `enqueue` with `wait-update-secs` (0.2.0) asks for it.
pub fn event(event: &crate::Event) -> Result<Event, Unrepresentable> {
    match event {
        crate::Event::QueueWait(_) => Err(Unrepresentable(
            "queue-wait is an event of voice:runtime@0.2.0; a 0.1 guest never asks for it".into(),
        )),
        crate::Event::ConferenceComplete(result)
            if result.ended_by == crate::ConferenceEnd::Full =>
        {
            Ok(Event::ConferenceComplete(ConferenceResult {
                name: result.name.clone(),
                ended_by: ConferenceEnd::Ended,
                duration_secs: result.duration_secs,
            }))
        }
        crate::Event::DialComplete(result) => {
            let answered = match &result.answered {
                Some(crate::DialTarget::QueueMember(m)) => Some(DialTarget::Queue(m.queue.clone())),
                Some(other) => Some(transcode(other)?),
                None => None,
            };
            Ok(Event::DialComplete(DialResult {
                status: transcode(&result.status)?,
                answered,
                duration_secs: result.duration_secs,
                recording_id: result.recording_id.clone(),
            }))
        }
        other => transcode(other),
    }
}

pub fn context(ctx: &crate::Context) -> Context {
    Context {
        call_id: ctx.call_id.clone(),
        tenant: ctx.tenant.clone(),
        sequence: ctx.sequence,
        handler: ctx.handler.clone(),
    }
}

/// A 0.1 guest's plan as the router runs it: an `enqueue` has priority 0
/// and no wait updates.
pub fn plan(plan: &Plan) -> Result<crate::Plan, Unrepresentable> {
    transcode(plan)
}

pub fn handler_error(error: &HandlerError) -> crate::HandlerError {
    match error {
        HandlerError::UnexpectedEvent(s) => crate::HandlerError::UnexpectedEvent(s.clone()),
        HandlerError::HostFailure(s) => crate::HandlerError::HostFailure(s.clone()),
        HandlerError::Internal(s) => crate::HandlerError::Internal(s.clone()),
    }
}

/// One version's value as the other's, through their common serde shape.
fn transcode<A: serde::Serialize, B: serde::de::DeserializeOwned>(
    value: &A,
) -> Result<B, Unrepresentable> {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .map_err(|e| Unrepresentable(format!("no 0.1 equivalent: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_01_enqueue_runs_with_priority_0_and_no_wait_updates() {
        let old = Plan {
            verbs: vec![
                Verb::Say(Say {
                    text: "hold on".into(),
                    voice: None,
                    language: None,
                    loop_count: 1,
                }),
                Verb::Enqueue(Enqueue {
                    queue: "support".into(),
                    wait_prompts: vec![Prompt::Pause(Pause { length_ms: 500 })],
                    max_wait_secs: Some(60),
                }),
            ],
        };
        let now = plan(&old).unwrap();
        assert_eq!(now.verbs.len(), 2);
        let crate::Verb::Enqueue(e) = &now.verbs[1] else {
            panic!("{now:?}")
        };
        assert_eq!(e.queue, "support");
        assert_eq!(e.max_wait_secs, Some(60));
        assert_eq!(e.priority, None);
        assert_eq!(e.wait_update_secs, None);
        assert_eq!(
            e.wait_prompts,
            vec![crate::Prompt::Pause(crate::Pause { length_ms: 500 })]
        );
    }

    #[test]
    fn full_is_told_as_ended_and_queue_wait_not_at_all() {
        let full = crate::Event::ConferenceComplete(crate::ConferenceResult {
            name: "room".into(),
            ended_by: crate::ConferenceEnd::Full,
            duration_secs: 0,
        });
        assert_eq!(
            event(&full).unwrap(),
            Event::ConferenceComplete(ConferenceResult {
                name: "room".into(),
                ended_by: ConferenceEnd::Ended,
                duration_secs: 0,
            })
        );
        let wait = crate::Event::QueueWait(crate::QueueStatus {
            queue: "q".into(),
            position: 1,
            size: 1,
            wait_secs: 5,
            average_wait_secs: None,
        });
        assert!(event(&wait).unwrap_err().0.contains("0.2.0"));
        let taken = crate::Event::DialComplete(crate::DialResult {
            status: crate::DialStatus::Completed,
            answered: Some(crate::DialTarget::QueueMember(crate::QueueMember {
                queue: "support".into(),
                call_id: "c1".into(),
            })),
            duration_secs: 9,
            recording_id: None,
        });
        assert_eq!(
            event(&taken).unwrap(),
            Event::DialComplete(DialResult {
                status: DialStatus::Completed,
                answered: Some(DialTarget::Queue("support".into())),
                duration_secs: 9,
                recording_id: None,
            })
        );
        let incoming = crate::Event::Incoming(crate::IncomingCall::inbound("a", "b", "eu"));
        let Event::Incoming(old) = event(&incoming).unwrap() else {
            panic!()
        };
        assert_eq!((old.from.as_str(), old.region.as_str()), ("a", "eu"));
    }
}
