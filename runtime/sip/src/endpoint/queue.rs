//! Call queues: `enqueue` waits the caller in one of its tenant's queues
//! with the wait prompts looping; `dial queue:NAME` takes the caller at
//! the head and bridges the two calls; the REST API lists queues and
//! sends a waiting caller to another handler.
//!
//! ```text
//!   caller C: enqueue ─► Queue::join ─► wait prompts, again and again
//!                          │  max-wait ─► queue-complete (timeout)
//!                          │  every wait-update-secs ─► queue-wait to C's
//!                          │    handler; its plan plays instead of the
//!                          │    prompts, then stay / leave / redirect / hang up
//!   agent A: dial queue:NAME ─► Queue::dequeue ─► C stops waiting;
//!            A's stream bridged to C's (the engine puts them on one worker)
//!   either hangs up (or is redirected) ─► the other hears its result:
//!            A dial-complete (completed, answered queue:NAME)
//!            C queue-complete (bridged, the seconds it waited)
//! ```
//!
//! An empty queue answers the dial at once with `no-answer`: an agent
//! who wants to wait for callers asks again (its handler decides how
//! often). Queues live in this endpoint: a runtime's calls queue only
//! with its own calls until multi-node storage shares them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use switchyard_conference::queue::{Departure, Queue};
use switchyard_contract::{
    DialResult, DialStatus, DialTarget, Enqueue, Event, HangupCause, Pause, Prompt, QueueMember,
    QueueOutcome, QueueResult, QueueStatus, Say,
};
use switchyard_router::{LegEvent, WaitEnd, WaitPlan};

use super::call::{CallRef, CallState, TimerKind};
use super::{Control, Endpoint};
use switchyard_media::Action;

/// A caller waiting in a queue.
#[derive(Debug, Clone)]
pub struct QueueRun {
    pub name: String,
    pub prompts: Vec<Prompt>,
    /// The handler hears `queue-wait` this often.
    pub updates: Option<Duration>,
    /// Set while a wait plan plays: what comes after it.
    pub then: Option<WaitEnd>,
}

/// Two calls bridged by `dial queue:`, from one side.
#[derive(Debug, Clone)]
pub struct Pairing {
    pub partner: CallRef,
    pub since: Instant,
    pub queue: String,
    /// The waiting call the agent asked for by id (`queue-member`).
    pub member: Option<String>,
    /// The caller's wait in the queue (on the caller's side), or the
    /// recording id of the bridge (on the agent's side, when it records).
    pub side: Side,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Agent { record: Option<u64> },
    Caller { waited: Duration },
}

/// A queue as the REST API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueView {
    pub name: String,
    pub size: usize,
    pub max_size: usize,
    /// Mean wait of the callers handed out so far, in seconds.
    pub average_wait_secs: Option<u64>,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberView {
    pub call_id: String,
    pub position: usize,
    pub wait_secs: u64,
}

/// Why a REST request about a queue failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueRequestError {
    #[error("no queue {0}")]
    NoQueue(String),
    #[error("queue {0} is empty")]
    Empty(String),
    #[error("call {0} is not waiting in this queue")]
    NotQueued(String),
    #[error(transparent)]
    Control(#[from] super::ControlError),
}

/// Every tenant's queues, by (tenant id, name).
#[derive(Debug, Default)]
pub struct Queues {
    queues: BTreeMap<(String, String), Queue>,
}

impl Queues {
    fn get_mut(&mut self, tenant: &str, name: &str) -> Option<&mut Queue> {
        self.queues.get_mut(&(tenant.to_string(), name.to_string()))
    }
}

/// What a caller hears while waiting when the plan names nothing.
fn default_prompts() -> Vec<Prompt> {
    vec![
        Prompt::Say(Say::text(
            "Please hold. Your call will be answered in turn.",
        )),
        Prompt::Pause(Pause { length_ms: 10_000 }),
    ]
}

impl Endpoint {
    /// Puts the (answered) caller in its tenant's queue.
    pub(super) fn enqueue(&mut self, now: Instant, call: &mut CallState, spec: Enqueue) {
        let key = (call.tenant_id.clone(), spec.queue.clone());
        let queue = (self.queues.queues)
            .entry(key)
            .or_insert_with(|| Queue::new(spec.queue.clone(), Queue::DEFAULT_MAX));
        let max_wait = spec.max_wait_secs.map(|s| Duration::from_secs(s.into()));
        let priority = spec.priority.unwrap_or(0);
        if let Err(e) = queue.join(&call.id, priority, max_wait, now) {
            tracing::info!(call = %call.id, error = %e, "not queued");
            let outcome = e.outcome().unwrap_or(QueueOutcome::Left);
            return queue_result(call, &spec.queue, outcome, Duration::ZERO);
        }
        let prompts = if spec.wait_prompts.is_empty() {
            default_prompts()
        } else {
            spec.wait_prompts
        };
        let updates = (spec.wait_update_secs).map(|s| Duration::from_secs(s.into()));
        call.queued = Some(QueueRun {
            name: spec.queue,
            prompts: prompts.clone(),
            updates,
            then: None,
        });
        self.play(call, prompts);
        if let Some(wait) = max_wait {
            self.schedule(call, now + wait, TimerKind::QueueTimeout);
        }
        if let Some(every) = updates {
            self.schedule(call, now + every, TimerKind::QueueWait);
        }
    }

    /// What was playing to a waiting caller ended: the wait prompts start
    /// again, or what a wait plan said comes next. `false` when the call
    /// is not waiting in a queue.
    pub(super) fn wait_played(&mut self, now: Instant, call: &mut CallState) -> bool {
        let Some(run) = &mut call.queued else {
            return false;
        };
        let then = run.then.take().unwrap_or(WaitEnd::Stay);
        self.after_wait(now, call, then);
        true
    }

    fn after_wait(&mut self, now: Instant, call: &mut CallState, then: WaitEnd) {
        match then {
            WaitEnd::Stay => {
                if let Some(run) = &call.queued {
                    let prompts = run.prompts.clone();
                    self.play(call, prompts);
                }
            }
            WaitEnd::Leave => {
                let Some(run) = call.queued.take() else {
                    return;
                };
                self.stop_play(call);
                let waited = (self.queues.get_mut(&call.tenant_id, &run.name))
                    .and_then(|q| q.leave(&call.id, now).ok())
                    .map_or(Duration::ZERO, |gone| gone.waited);
                queue_result(call, &run.name, QueueOutcome::Left, waited);
            }
            WaitEnd::Redirect(handler) => self.redirect(now, call, handler),
            WaitEnd::Hangup => {
                self.leave_queues(now, call);
                self.end_caller(now, call, 480, "Temporarily Unavailable");
                call.pending
                    .push_back(LegEvent::Hangup(HangupCause::Handler));
            }
        }
    }

    /// The handler answered a `queue-wait`: its prompts play instead of
    /// the wait prompts (the same play id, so the replaced play ends
    /// silently and the caller's timers stay), then its end applies.
    pub(super) fn wait_plan(&mut self, now: Instant, call: &mut CallState, plan: WaitPlan) {
        let Some(run) = &mut call.queued else {
            return; // it left the queue meanwhile
        };
        if plan.prompts.is_empty() {
            return self.after_wait(now, call, plan.then);
        }
        run.then = Some(plan.then);
        self.play(call, plan.prompts);
    }

    /// A wait update is due: the handler hears where the caller stands.
    pub(super) fn on_queue_wait(&mut self, now: Instant, call: &mut CallState) {
        let Some(run) = &call.queued else {
            return;
        };
        let (name, every) = (run.name.clone(), run.updates);
        let Some(queue) = self.queues.get_mut(&call.tenant_id, &name) else {
            return;
        };
        let Some(member) = queue.members().iter().position(|m| m.call == call.id) else {
            return;
        };
        let waited = now.saturating_duration_since(queue.members()[member].since);
        let status = QueueStatus {
            queue: name,
            position: member as u32 + 1,
            size: queue.len() as u32,
            wait_secs: waited.as_secs() as u32,
            average_wait_secs: queue.average_wait().map(|w| w.as_secs() as u32),
        };
        call.pending.push_back(LegEvent::QueueWait(status));
        if let Some(every) = every {
            self.schedule(call, now + every, TimerKind::QueueWait);
        }
    }

    pub(super) fn on_queue_timeout(&mut self, now: Instant, call: &mut CallState) {
        let Some(run) = call.queued.take() else {
            return;
        };
        let Some(queue) = self.queues.get_mut(&call.tenant_id, &run.name) else {
            return;
        };
        for gone in queue.expire(now) {
            if gone.call == call.id {
                self.stop_play(call);
                return queue_result(call, &run.name, gone.outcome, gone.waited);
            }
            // Another caller's timer is due just as well: it fires too.
        }
        call.queued = Some(run);
    }

    /// `dial queue:NAME`: bridges the call to the caller at the head of
    /// the queue (or to `member`, wherever it waits), or ends the dial
    /// with `no-answer` when nobody (or not `member`) waits.
    pub(super) fn dial_queue(
        &mut self,
        now: Instant,
        call: &mut CallState,
        name: String,
        member: Option<String>,
        record: bool,
    ) {
        if !self.answer(now, call) {
            return;
        }
        let Some(agent) = call.media.as_ref().map(|m| m.stream) else {
            return;
        };
        loop {
            let next = (self.queues.get_mut(&call.tenant_id, &name)).and_then(|q| match &member {
                Some(id) => q.dequeue_call(id, now).ok(),
                None => q.dequeue(now),
            });
            let Some(Departure {
                call: waiting,
                waited,
                ..
            }) = next
            else {
                return dial_result(call, DialStatus::NoAnswer, None, Duration::ZERO, None);
            };
            let Some(partner) = self.find_call(&call.tenant_id, &waiting) else {
                continue; // gone meanwhile; the next one
            };
            let mut stream = None;
            let queue = name.clone();
            self.with_call(now, partner, |ep, caller| {
                caller.queued = None;
                ep.stop_play(caller);
                caller.generation += 1;
                // A queued caller was answered, so it has a stream; should
                // it not, it leaves the queue rather than wait for nothing.
                stream = caller.media.as_ref().map(|m| m.stream);
                if stream.is_none() {
                    queue_result(caller, &queue, QueueOutcome::Left, waited);
                    return ep.pump(now, caller);
                }
                caller.pairing = Some(Pairing {
                    partner: call.reference,
                    since: now,
                    queue,
                    member: None,
                    side: Side::Caller { waited },
                });
            });
            let Some(other) = stream else {
                continue;
            };
            let record = record.then_some(call.generation);
            call.pairing = Some(Pairing {
                partner,
                since: now,
                queue: name,
                member,
                side: Side::Agent { record },
            });
            self.media(call.reference, agent, Action::Bridge { other, record });
            return;
        }
    }

    /// The call leaves what holds it to a queue: out of the queue if it
    /// waits (no result: it hung up or was sent elsewhere), and out of its
    /// bridge if it is in one (the other side hears its result).
    pub(super) fn leave_queues(&mut self, now: Instant, call: &mut CallState) {
        if let Some(run) = call.queued.take()
            && let Some(queue) = self.queues.get_mut(&call.tenant_id, &run.name)
        {
            let _ = queue.leave(&call.id, now);
        }
        let Some(pairing) = call.pairing.take() else {
            return;
        };
        if let (Some(leg), Side::Agent { .. }) = (&call.media, pairing.side) {
            self.media(call.reference, leg.stream, Action::Unbridge);
        }
        self.with_call(now, pairing.partner, |ep, other| {
            ep.unpair(now, other);
            ep.pump(now, other);
        });
    }

    /// The other side of `call`'s bridge left: `call` hears its result.
    fn unpair(&mut self, now: Instant, call: &mut CallState) {
        let Some(pairing) = call.pairing.take() else {
            return;
        };
        call.generation += 1;
        match pairing.side {
            Side::Caller { waited } => {
                queue_result(call, &pairing.queue, QueueOutcome::Bridged, waited);
            }
            Side::Agent { record } => {
                if let Some(leg) = &call.media {
                    self.media(call.reference, leg.stream, Action::Unbridge);
                }
                let lasted = now.saturating_duration_since(pairing.since);
                let answered = match pairing.member {
                    Some(call_id) => DialTarget::QueueMember(QueueMember {
                        queue: pairing.queue,
                        call_id,
                    }),
                    None => DialTarget::Queue(pairing.queue),
                };
                dial_result(call, DialStatus::Completed, Some(answered), lasted, record);
            }
        }
    }

    /// Call `id` of `tenant`, in progress.
    fn find_call(&self, tenant: &str, id: &str) -> Option<CallRef> {
        (self.calls.values())
            .find(|c| c.id == id && c.tenant_id == tenant)
            .map(|c| c.reference)
    }

    /// `GET /v1/queues[/{name}]`: the tenant's queues, by name.
    pub fn queue_views(&self, now: Instant, tenant: &str) -> Vec<QueueView> {
        (self.queues.queues.iter())
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, q)| view(q, now))
            .collect()
    }

    /// `PUT /v1/queues/{name}`: creates the queue with `max_size`, or
    /// sets it; whether it was created, and the queue.
    pub fn size_queue(
        &mut self,
        now: Instant,
        tenant: String,
        name: String,
        max_size: usize,
    ) -> (bool, QueueView) {
        let mut created = false;
        let queue = (self.queues.queues)
            .entry((tenant, name.clone()))
            .or_insert_with(|| {
                created = true;
                Queue::new(name, max_size)
            });
        queue.set_max_size(max_size);
        (created, view(queue, now))
    }

    /// `POST /v1/queues/{name}/dequeue`: the caller at the head (or
    /// `call`) leaves the queue for `handler`, which hears `redirected`.
    pub fn dequeue_to(
        &mut self,
        now: Instant,
        tenant: &str,
        name: &str,
        call: Option<&str>,
        handler: String,
    ) -> Result<String, QueueRequestError> {
        let queue = (self.queues.get_mut(tenant, name))
            .ok_or_else(|| QueueRequestError::NoQueue(name.to_string()))?;
        let id = match call {
            Some(id) => (queue.members().iter())
                .find(|m| m.call == id)
                .map(|m| m.call.clone())
                .ok_or_else(|| QueueRequestError::NotQueued(id.to_string()))?,
            None => (queue.members().first())
                .map(|m| m.call.clone())
                .ok_or_else(|| QueueRequestError::Empty(name.to_string()))?,
        };
        // The redirect takes it out of the queue (`leave_queues`).
        self.control(now, tenant, &id, Control::Redirect(handler))?;
        Ok(id)
    }
}

fn view(q: &Queue, now: Instant) -> QueueView {
    QueueView {
        name: q.name().to_string(),
        size: q.len(),
        max_size: q.max_size(),
        average_wait_secs: q.average_wait().map(|w| w.as_secs()),
        members: (q.members().iter().enumerate())
            .map(|(i, m)| MemberView {
                call_id: m.call.clone(),
                position: i + 1,
                wait_secs: now.saturating_duration_since(m.since).as_secs(),
            })
            .collect(),
    }
}

fn queue_result(call: &mut CallState, queue: &str, outcome: QueueOutcome, waited: Duration) {
    let result = QueueResult {
        queue: queue.to_string(),
        outcome,
        wait_secs: waited.as_secs() as u32,
    };
    call.pending
        .push_back(LegEvent::Result(Event::QueueComplete(result)));
}

/// The agent's dial result; with a recording, it waits for it to be
/// stored (`dial_waiting`).
fn dial_result(
    call: &mut CallState,
    status: DialStatus,
    answered: Option<DialTarget>,
    lasted: Duration,
    record: Option<u64>,
) {
    let result = DialResult {
        status,
        answered,
        duration_secs: lasted.as_secs() as u32,
        recording_id: None,
    };
    match record {
        Some(id) => call.dial_waiting = Some((id, result)),
        None => call
            .pending
            .push_back(LegEvent::Result(Event::DialComplete(result))),
    }
}
