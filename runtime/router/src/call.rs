//! [`Call`]: the per-call state machine (see the module docs for the drain order).

use std::collections::VecDeque;
use std::time::Instant;

use switchyard_contract::guest::{CallVars, GuestFailure, Invocation, InvokeRequest};
use switchyard_contract::{
    Context, Event, HangupCause, IncomingCall, Plan, Prompt, QueueStatus, Verb,
};

use super::RouterConfig;
use super::log::{DecisionLog, Entry, Screening};
use super::plan::{has_result, result_matches, validate, validate_wait, verb_name};

/// What the call leg reports back.
#[derive(Debug, Clone, PartialEq)]
pub enum LegEvent {
    /// The verb without a result (say, play, pause, send-digits, leave-queue) finished.
    Done,
    /// The verb with a result finished; this is its result event.
    Result(Event),
    /// The far end (or the system) ended the call.
    Hangup(HangupCause),
    /// The call's status changed (ringing, answered...): passed on to the handler.
    Status(switchyard_contract::CallStatus),
    /// The running `enqueue` asked for wait updates and one is due: the
    /// handler hears `queue-wait`.
    QueueWait(QueueStatus),
}

/// What the router asks of its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Run the handler named in `request.ctx.handler` on this event.
    Invoke(InvokeRequest),
    /// Run this verb on the call leg.
    Execute(Verb),
    /// The running `enqueue`'s handler answered a `queue-wait`: play this
    /// to the waiting caller instead of the wait prompts, then do `then`.
    /// The verb keeps running; its result comes as before.
    Wait(WaitPlan),
    /// The call is over.
    Finished(CallSummary),
}

/// What a waiting caller hears, and what happens after it.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitPlan {
    pub prompts: Vec<Prompt>,
    pub then: WaitEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitEnd {
    /// Back to the wait prompts, in the queue as before.
    Stay,
    /// Out of the queue: the `enqueue` ends with `queue-complete` (`left`).
    Leave,
    /// Out of the queue to this handler, as [`Call::redirect`] does it.
    Redirect(String),
    /// Out of the queue and off the call (the handler hung up).
    Hangup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSummary {
    pub call_id: String,
    pub ended_by: HangupCause,
    /// Events sent to handlers.
    pub events: u32,
    /// Times the fallback ran.
    pub fallbacks: u32,
}

/// A driver fed the router something it did not ask for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    #[error("no invocation is in flight")]
    NoInvocationInFlight,
    #[error("no verb is running on the leg")]
    NoVerbRunning,
    #[error("the running verb {verb} has a result, but the leg said it was done without one")]
    MissingResult { verb: &'static str },
    #[error("the running verb {verb} does not produce {event}")]
    WrongResult { verb: &'static str, event: String },
    #[error("the call is already finished")]
    Finished,
}

/// Why the in-flight invocation was made: decides what its plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The plan returned is the call's next plan.
    Decide,
    /// Informational (status change, hangup): the plan is ignored.
    Notify,
    /// A wait update (`queue-wait`): the plan plays to the waiting caller
    /// while the `enqueue` keeps running.
    Wait,
}

/// One call's router.
pub struct Call {
    config: RouterConfig,
    ctx: Context,
    started: Instant,
    vars: CallVars,
    log: DecisionLog,
    plan: VecDeque<Verb>,
    /// The verb the leg is running.
    running: Option<Verb>,
    in_flight: Option<Purpose>,
    /// The event of the invocation in flight, for a handover.
    in_flight_event: Option<Event>,
    /// The decision in flight was overtaken by an outside redirect.
    superseded: bool,
    /// The handler a failed decision is handed to once (the number's
    /// fallback component) before the static fallback plan.
    fallback_handler: Option<String>,
    /// A `Decide` event is queued or in flight: the plan must not advance.
    deciding: bool,
    waiting: VecDeque<(Event, Purpose)>,
    /// Set once the call has ended; the hangup event is then the last one.
    ended: Option<HangupCause>,
    /// Whether the final hangup event has been queued.
    hangup_sent: bool,
    /// Whether the current handler hears notices (see [`Call::set_notices`]).
    notices: bool,
    events: u32,
    fallbacks: u32,
    output: VecDeque<Output>,
    finished: bool,
}

impl Call {
    /// A new call: its first output is the `incoming` event for `handler`.
    pub fn new(
        now: Instant,
        call_id: &str,
        tenant: &str,
        handler: &str,
        incoming: IncomingCall,
        config: RouterConfig,
    ) -> Self {
        let mut call = Self::idle(now, call_id, tenant, handler, config);
        call.send(now, Event::Incoming(incoming), Purpose::Decide);
        call
    }

    /// A call refused before any handler heard of it (its account's
    /// verification policy rejected the caller): nothing is invoked, and
    /// its log says why (`verified`) and that the runtime ended it.
    pub fn refused(
        now: Instant,
        call_id: &str,
        tenant: &str,
        handler: &str,
        screened: (String, String, Option<Screening>),
    ) -> Self {
        let mut call = Self::idle(now, call_id, tenant, handler, RouterConfig::default());
        let (status, reason, screening) = screened;
        call.verified(now, status, reason, screening);
        call.ended = Some(HangupCause::System);
        (call.log).push(
            0,
            Entry::Ended {
                cause: HangupCause::System,
            },
        );
        call.finished = true;
        call
    }

    /// A call that starts with `plan` instead of asking a handler about
    /// `incoming` (a participant the REST API calls into a conference).
    /// Results go to `handler`; with none (empty), nothing decides: the
    /// plan running out ends the call, as an empty plan would.
    pub fn with_plan(
        now: Instant,
        call_id: &str,
        tenant: &str,
        handler: &str,
        plan: Plan,
        config: RouterConfig,
    ) -> Self {
        let mut call = Self::idle(now, call_id, tenant, handler, config);
        call.plan = plan.verbs.into();
        call.advance(now);
        call
    }

    fn idle(
        now: Instant,
        call_id: &str,
        tenant: &str,
        handler: &str,
        config: RouterConfig,
    ) -> Self {
        Self {
            config,
            ctx: Context {
                call_id: call_id.into(),
                tenant: tenant.into(),
                sequence: 0,
                handler: handler.into(),
            },
            started: now,
            vars: CallVars::new(),
            log: DecisionLog::default(),
            plan: VecDeque::new(),
            running: None,
            in_flight: None,
            in_flight_event: None,
            superseded: false,
            fallback_handler: None,
            deciding: false,
            waiting: VecDeque::new(),
            ended: None,
            hangup_sent: false,
            notices: true,
            events: 0,
            fallbacks: 0,
            output: VecDeque::new(),
            finished: false,
        }
    }

    /// Hands a failed decision to `handler` (once per call) before the
    /// static fallback plan runs.
    pub fn set_fallback_handler(&mut self, handler: Option<String>) {
        self.fallback_handler = handler;
    }

    /// Whether the handler now deciding hears informational events
    /// (`status-changed`, `hangup`); when it does not, they are not sent
    /// (nor logged). The driver sets it from each [`Output::Invoke`]'s
    /// handler: every change of handler (redirect, handover to a fallback
    /// handler) starts with a decision, so the flag is right before any
    /// notice is due.
    pub fn set_notices(&mut self, on: bool) {
        self.notices = on;
    }

    /// Sends the call to `handler` from outside (the REST API): whatever
    /// the leg was running and the rest of the plan are dropped (the leg
    /// must stop it), and `handler` hears `redirected`, as after a
    /// `redirect` verb. A decision in flight is discarded when it returns.
    pub fn redirect(&mut self, now: Instant, handler: String) -> Result<(), RouterError> {
        if self.finished || self.ended.is_some() {
            return Err(RouterError::Finished);
        }
        self.running = None;
        self.plan.clear();
        // Decisions queued for the old handler are moot; notices stay.
        self.waiting
            .retain(|(_, purpose)| *purpose == Purpose::Notify);
        self.superseded = self.in_flight == Some(Purpose::Decide);
        let at = self.at_ms(now);
        self.log.push(
            at,
            Entry::Verb {
                verb: Verb::Redirect(handler.clone()),
            },
        );
        let from = std::mem::replace(&mut self.ctx.handler, handler);
        self.send(now, Event::Redirected(from), Purpose::Decide);
        Ok(())
    }

    /// Logs why a dial target rang nobody (the leg reports the dial's
    /// outcome as usual).
    pub fn unreachable(&mut self, now: Instant, target: String, reason: String) {
        let at = self.at_ms(now);
        self.log.push(at, Entry::Unreachable { target, reason });
    }

    /// Records what the caller's verification found (`status`) and why,
    /// with the findings and ruling of its screening.
    pub fn verified(
        &mut self,
        now: Instant,
        status: String,
        reason: String,
        screening: Option<Screening>,
    ) {
        let at = self.at_ms(now);
        let entry = Entry::Verified {
            status,
            reason,
            screening,
        };
        self.log.push(at, entry);
    }

    // ------------------------------------------------------------ getters

    pub fn call_id(&self) -> &str {
        &self.ctx.call_id
    }

    pub fn vars(&self) -> &CallVars {
        &self.vars
    }

    pub fn log(&self) -> &DecisionLog {
        &self.log
    }

    /// Takes the log out (the call is over and its log is being stored).
    pub fn take_log(&mut self) -> DecisionLog {
        std::mem::take(&mut self.log)
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    // ------------------------------------------------------------ input

    /// The answer to the last [`Output::Invoke`].
    pub fn handle_invocation(
        &mut self,
        now: Instant,
        invocation: Invocation,
    ) -> Result<(), RouterError> {
        let purpose = self
            .in_flight
            .take()
            .ok_or(RouterError::NoInvocationInFlight)?;
        let event = self.in_flight_event.take();
        let at = self.at_ms(now);
        self.vars = invocation.vars;
        self.log.push(
            at,
            Entry::Decision {
                sequence: self.ctx.sequence,
                outcome: invocation.outcome.clone(),
                imports: invocation.imports,
                elapsed_us: invocation.elapsed.as_micros() as u64,
            },
        );
        if purpose == Purpose::Decide && std::mem::take(&mut self.superseded) {
            // Its plan is for a handler the call has left; the redirected
            // event is waiting to go.
            self.send_waiting(now);
            return Ok(());
        }
        if purpose == Purpose::Decide {
            self.deciding = false;
        }
        if purpose == Purpose::Wait && self.ended.is_none() {
            self.wait_plan(at, invocation.outcome);
        } else if purpose == Purpose::Decide && self.ended.is_none() {
            match invocation.outcome.and_then(|plan| self.checked(plan)) {
                Ok(plan) => self.plan = plan.verbs.into(),
                Err(reason) => match (self.fallback_handler.take(), event) {
                    (Some(to), Some(event)) if to != self.ctx.handler => {
                        tracing::warn!(call = %self.ctx.call_id, tenant = %self.ctx.tenant, %reason, %to, "handler failed; handing the event to the fallback handler");
                        self.log.push(
                            at,
                            Entry::Handover {
                                reason,
                                to: to.clone(),
                            },
                        );
                        self.ctx.handler = to;
                        self.send(now, event, Purpose::Decide);
                    }
                    _ => self.fall_back(at, reason),
                },
            }
            self.advance(now);
        }
        self.send_waiting(now);
        Ok(())
    }

    /// What happened on the call leg.
    pub fn handle_leg(&mut self, now: Instant, event: LegEvent) -> Result<(), RouterError> {
        if self.ended.is_some() {
            // The leg may still report the tail of what it ran, even after
            // the call finished (at once when no notice was due); the call
            // is over.
            return Ok(());
        }
        match event {
            LegEvent::Done => {
                let verb = self.running.take().ok_or(RouterError::NoVerbRunning)?;
                if has_result(&verb) {
                    let name = verb_name(&verb);
                    self.running = Some(verb);
                    return Err(RouterError::MissingResult { verb: name });
                }
                self.advance(now);
            }
            LegEvent::Result(result) => {
                let verb = self.running.as_ref().ok_or(RouterError::NoVerbRunning)?;
                if !result_matches(verb, &result) {
                    return Err(RouterError::WrongResult {
                        verb: verb_name(verb),
                        event: format!("{result:?}"),
                    });
                }
                self.running = None;
                self.send(now, result, Purpose::Decide);
            }
            LegEvent::Hangup(cause) => {
                self.running = None;
                self.end(now, cause);
            }
            LegEvent::Status(status) => {
                self.send(now, Event::StatusChanged(status), Purpose::Notify)
            }
            LegEvent::QueueWait(status) => {
                let asked =
                    matches!(&self.running, Some(Verb::Enqueue(e)) if e.wait_update_secs.is_some());
                // One update at a time: a handler slower than the interval
                // skips updates rather than falling behind.
                let pending = self.in_flight == Some(Purpose::Wait)
                    || self.waiting.iter().any(|(_, p)| *p == Purpose::Wait);
                if asked && !pending && self.events < self.config.max_events {
                    self.send(now, Event::QueueWait(status), Purpose::Wait);
                }
            }
        }
        Ok(())
    }

    /// The handler's answer to `queue-wait`: for the leg to play, unless
    /// the caller no longer waits or the plan cannot run while it does.
    fn wait_plan(&mut self, at: u64, outcome: Result<Plan, GuestFailure>) {
        let ignored = |reason: String| Entry::WaitIgnored { reason };
        if !matches!(self.running, Some(Verb::Enqueue(_))) || self.deciding {
            let reason = "the caller no longer waits in the queue".to_string();
            return self.log.push(at, ignored(reason));
        }
        let plan = match outcome.and_then(|plan| {
            validate_wait(&plan, &self.config)
                .map_err(|e| GuestFailure::InvalidPlan(e.to_string()))?;
            Ok(plan)
        }) {
            Ok(plan) => plan,
            Err(reason) => {
                tracing::warn!(call = %self.ctx.call_id, tenant = %self.ctx.tenant, %reason, "queue-wait plan not run; the caller keeps waiting");
                return self.log.push(at, ignored(reason.to_string()));
            }
        };
        let mut wait = WaitPlan {
            prompts: Vec::new(),
            then: WaitEnd::Stay,
        };
        for verb in plan.verbs {
            self.log.push(at, Entry::Verb { verb: verb.clone() });
            match verb {
                Verb::Say(say) => wait.prompts.push(Prompt::Say(say)),
                Verb::Play(play) => wait.prompts.push(Prompt::Play(play)),
                Verb::Pause(pause) => wait.prompts.push(Prompt::Pause(pause)),
                Verb::SetVar(var) => self.set_var(var),
                Verb::LeaveQueue => wait.then = WaitEnd::Leave,
                Verb::Redirect(handler) => wait.then = WaitEnd::Redirect(handler),
                Verb::Hangup => wait.then = WaitEnd::Hangup,
                // `validate_wait` lets nothing else through.
                _ => {}
            }
        }
        if wait.prompts.is_empty() && wait.then == WaitEnd::Stay {
            return; // nothing to change
        }
        self.output.push_back(Output::Wait(wait));
    }

    // ------------------------------------------------------------ output

    /// The next thing the driver must do; drain until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.output.pop_front()
    }

    // ------------------------------------------------------------ internals

    fn at_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_millis() as u64
    }

    fn checked(&self, plan: Plan) -> Result<Plan, GuestFailure> {
        validate(&plan, &self.config).map_err(|e| GuestFailure::InvalidPlan(e.to_string()))?;
        Ok(plan)
    }

    fn fall_back(&mut self, at: u64, reason: GuestFailure) {
        tracing::warn!(call = %self.ctx.call_id, tenant = %self.ctx.tenant, %reason, "handler failed; running the fallback");
        self.fallbacks += 1;
        let plan = self.config.fallback.plan().clone();
        self.plan = plan.verbs.iter().cloned().collect();
        self.log.push(at, Entry::Fallback { reason, plan });
    }

    /// Runs the plan until a verb needs the leg or a handler.
    fn advance(&mut self, now: Instant) {
        let at = self.at_ms(now);
        while self.ended.is_none() && self.running.is_none() && !self.deciding {
            let Some(verb) = self.plan.pop_front() else {
                // A plan that runs out ends the call, as a TwiML document does.
                self.output.push_back(Output::Execute(Verb::Hangup));
                self.end(now, HangupCause::Handler);
                return;
            };
            self.log.push(at, Entry::Verb { verb: verb.clone() });
            match verb {
                Verb::SetVar(var) => self.set_var(var),
                Verb::Redirect(handler) => {
                    let from = std::mem::replace(&mut self.ctx.handler, handler);
                    self.send(now, Event::Redirected(from), Purpose::Decide);
                }
                Verb::Hangup | Verb::Reject(_) => {
                    self.output.push_back(Output::Execute(verb));
                    self.end(now, HangupCause::Handler);
                }
                verb => {
                    self.running = Some(verb.clone());
                    self.output.push_back(Output::Execute(verb));
                }
            }
        }
    }

    fn set_var(&mut self, var: switchyard_contract::SetVar) {
        match var.value {
            Some(value) => self.vars.insert(var.name, value),
            None => self.vars.remove(&var.name),
        };
    }

    fn end(&mut self, now: Instant, cause: HangupCause) {
        if self.ended.is_some() {
            return;
        }
        self.ended = Some(cause);
        self.plan.clear();
        self.log.push(self.at_ms(now), Entry::Ended { cause });
        // A decision that was waiting is moot now; the handler hears the hangup.
        self.waiting
            .retain(|(_, purpose)| *purpose == Purpose::Notify);
        self.deciding = self.in_flight == Some(Purpose::Decide);
        self.send(now, Event::Hangup(cause), Purpose::Notify);
        self.hangup_sent = true;
        self.send_waiting(now);
    }

    /// Queues an event for the handler; at most one invocation is in flight.
    fn send(&mut self, now: Instant, event: Event, purpose: Purpose) {
        let unheard = match purpose {
            Purpose::Notify => !self.notices,
            // Nobody to ask (`with_plan`): the caller just waits.
            Purpose::Wait => self.ctx.handler.is_empty(),
            Purpose::Decide => false,
        };
        if self.hangup_sent || unheard {
            return;
        }
        if self.ctx.handler.is_empty() {
            // No handler (`with_plan`): a result leaves the plan as it is,
            // and what is left of it runs (or its end ends the call).
            if purpose == Purpose::Decide {
                self.advance(now);
            }
            return self.send_waiting(now);
        }
        if purpose == Purpose::Decide {
            self.deciding = true;
        }
        self.waiting.push_back((event, purpose));
        self.send_waiting(now);
    }

    fn send_waiting(&mut self, now: Instant) {
        if self.in_flight.is_some() || self.finished {
            return;
        }
        let Some((event, purpose)) = self.waiting.pop_front() else {
            if self.ended.is_some() {
                self.finish();
            }
            return;
        };
        if self.events >= self.config.max_events && purpose == Purpose::Decide {
            self.deciding = false;
            let at = self.at_ms(now);
            self.fall_back(
                at,
                GuestFailure::InvalidPlan(format!(
                    "the call reached its limit of {} handler events",
                    self.config.max_events
                )),
            );
            self.advance(now);
            return self.send_waiting(now);
        }
        if self.events > 0 {
            self.ctx.sequence += 1;
        }
        self.events += 1;
        self.log.push(
            self.at_ms(now),
            Entry::Event {
                ctx: self.ctx.clone(),
                event: event.clone(),
            },
        );
        self.in_flight = Some(purpose);
        self.in_flight_event = Some(event.clone());
        self.output.push_back(Output::Invoke(InvokeRequest {
            ctx: self.ctx.clone(),
            event,
            vars: self.vars.clone(),
        }));
    }

    fn finish(&mut self) {
        self.finished = true;
        self.output.push_back(Output::Finished(CallSummary {
            call_id: self.ctx.call_id.clone(),
            ended_by: self.ended.unwrap_or(HangupCause::System),
            events: self.events,
            fallbacks: self.fallbacks,
        }));
    }
}
