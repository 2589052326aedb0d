//! Calls seen and steered from outside (the REST API): the calls in
//! progress of a tenant, hang up, redirect to another handler.

use std::time::Instant;

use serde::Serialize;

use switchyard_contract::HangupCause;
use switchyard_router::LegEvent;

use super::Endpoint;
use super::call::{CallState, CallerState};

/// A call in progress, as `GET /v1/calls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveCall {
    pub call_id: String,
    pub from: String,
    pub to: String,
    /// `ringing` until answered, then `in-progress`.
    pub status: &'static str,
    pub started_ms: u64,
    pub answered_ms: Option<u64>,
    pub handler: String,
    /// Content hash of the handler's component.
    pub version: String,
}

/// What the outside may ask of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// End it: a final response while it rings, a BYE once answered.
    Hangup,
    /// Drop what it runs and ask this handler (by name) what to do next.
    Redirect(String),
}

/// Why a control was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No call of that id in progress for that tenant.
    #[error("no call {0:?} in progress")]
    NotFound(String),
    #[error("the account has no handler named {0:?}")]
    UnknownHandler(String),
}

impl Endpoint {
    /// `tenant`'s calls in progress, oldest first.
    pub fn live_calls(&self, tenant: &str) -> Vec<LiveCall> {
        let mut calls: Vec<LiveCall> = self
            .calls
            .values()
            .filter(|c| c.tenant_id == tenant && c.caller != CallerState::Ended)
            .map(|c| LiveCall {
                call_id: c.id.clone(),
                from: c.from.clone(),
                to: c.to.clone(),
                status: match c.caller {
                    CallerState::Early => "ringing",
                    _ => "in-progress",
                },
                started_ms: self.unix_ms(c.started),
                answered_ms: c.answered_at.map(|at| self.unix_ms(at)),
                handler: c.binding.handler.clone(),
                version: c.binding.version.clone(),
            })
            .collect();
        calls.sort_by(|a, b| (a.started_ms, &a.call_id).cmp(&(b.started_ms, &b.call_id)));
        calls
    }

    /// Hangs up or redirects `tenant`'s call `call_id`.
    pub fn control(
        &mut self,
        now: Instant,
        tenant: &str,
        call_id: &str,
        control: Control,
    ) -> Result<(), ControlError> {
        let found = self
            .calls
            .values()
            .find(|c| c.id == call_id && c.tenant_id == tenant && c.caller != CallerState::Ended)
            .map(|c| (c.reference, c.tenant));
        let Some((reference, tenant_idx)) = found else {
            return Err(ControlError::NotFound(call_id.to_owned()));
        };
        if let Control::Redirect(handler) = &control
            && !self
                .directory
                .tenant(tenant_idx)
                .handlers
                .contains_key(handler)
        {
            return Err(ControlError::UnknownHandler(handler.clone()));
        }
        self.with_call(now, reference, |ep, call| {
            match control {
                Control::Hangup => {
                    ep.end_caller(now, call, 480, "Temporarily Unavailable (ended by API)");
                    call.pending
                        .push_back(LegEvent::Hangup(HangupCause::System));
                }
                Control::Redirect(handler) if Self::redirect_unanswered(call, &handler) => {}
                Control::Redirect(handler) => ep.redirect(now, call, handler),
            }
            ep.pump(now, call);
        });
        Ok(())
    }

    /// Sends an answered call to `handler` whatever it runs (the REST
    /// API, a queue-wait plan): `handler` hears `redirected`.
    pub(super) fn redirect(&mut self, now: Instant, call: &mut CallState, handler: String) {
        // Whatever the leg runs stops; its late results are stale by
        // generation.
        self.stop_dial(now, call);
        self.stop_play(call);
        self.leave_conference(call);
        self.leave_queues(now, call);
        call.stop_verbs();
        if let Err(e) = call.router.redirect(now, handler) {
            tracing::warn!(call = %call.id, error = %e, "redirect refused");
        }
    }
}

/// Where an answer goes: the edge passes a closure that sends it on its own
/// channel, so this core needs no async runtime.
pub type Reply<T> = Box<dyn FnOnce(T) + Send>;

/// A request about calls in progress, answered by the task that owns the
/// endpoint.
pub enum CallRequest {
    List {
        tenant: String,
        reply: Reply<Vec<LiveCall>>,
    },
    Control {
        tenant: String,
        call_id: String,
        control: Control,
        reply: Reply<Result<(), ControlError>>,
    },
    /// The tenant's queues (`GET /v1/queues`).
    Queues {
        tenant: String,
        reply: Reply<Vec<super::QueueView>>,
    },
    /// Create a queue or change its size limit (`PUT /v1/queues/{name}`);
    /// the reply says whether it was created, and the queue.
    SizeQueue {
        tenant: String,
        queue: String,
        max_size: usize,
        reply: Reply<(bool, super::QueueView)>,
    },
    /// Send a waiting caller to a handler (`POST /v1/queues/{name}/dequeue`);
    /// the reply is its call id.
    Dequeue {
        tenant: String,
        queue: String,
        call: Option<String>,
        handler: String,
        reply: Reply<Result<String, super::QueueRequestError>>,
    },
    /// Place an outbound call; the reply is its call id.
    Originate {
        tenant: String,
        spec: super::OriginateSpec,
        reply: Reply<Result<String, super::OriginateError>>,
    },
}

impl Endpoint {
    /// Answers `request`.
    pub fn handle_call_request(&mut self, now: Instant, request: CallRequest) {
        match request {
            CallRequest::List { tenant, reply } => {
                reply(self.live_calls(&tenant));
            }
            CallRequest::Control {
                tenant,
                call_id,
                control,
                reply,
            } => {
                reply(self.control(now, &tenant, &call_id, control));
            }
            CallRequest::Queues { tenant, reply } => reply(self.queue_views(now, &tenant)),
            CallRequest::SizeQueue {
                tenant,
                queue,
                max_size,
                reply,
            } => reply(self.size_queue(now, tenant, queue, max_size)),
            CallRequest::Dequeue {
                tenant,
                queue,
                call,
                handler,
                reply,
            } => reply(self.dequeue_to(now, &tenant, &queue, call.as_deref(), handler)),
            CallRequest::Originate {
                tenant,
                spec,
                reply,
            } => {
                reply(self.originate(now, &tenant, spec));
            }
        }
    }
}
