//! `switchyard simulate`: a call through the real router, with a scripted
//! caller instead of SIP and media.
//!
//! ```text
//!  Script ──► SimulatedLeg ◄── Execute(verb) ── router::Call ── Invoke ──► handler
//!                 └──────── LegEvent ──────────────►  │  ◄── Invocation ──┘
//!                                                     └──► decision log ──► printer
//! ```
//!
//! Time is virtual: each verb advances the clock by what it would take on a
//! real call (speech at a fixed rate, ring and gather timeouts), so a
//! simulated call of minutes runs in milliseconds and prints stable times.
//! The wall clock handlers read ([`SimClock`]) starts where the caller
//! says (`--at`, or an `at` script line) and moves with the virtual time,
//! so business-hours logic can be tried at any hour.

mod describe;
pub(crate) mod leg;
mod rfc3339;
mod script;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use crate::router::describe::{describe_entry, describe_event, describe_verb, wit_name};
pub use describe::describe_line;
pub use leg::{Mismatch, SimulatedLeg};
pub use rfc3339::parse as parse_rfc3339;
pub use script::{Action, LINES, Script, ScriptError, Step, help as script_help};

use crate::contract::IncomingCall;
use crate::guest::{Handlers, hears_notices, invoke_named};
use crate::router::{
    Call, CallSummary, DecisionLog, LegEvent, LogEntry, Output, RouterConfig, RouterError, WaitEnd,
};

/// Outputs one simulated call may produce before it is declared runaway;
/// far above what the router's own event limit allows.
const MAX_STEPS: usize = 100_000;

/// One thing to show the user, in call order.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Line<'a> {
    /// An entry of the decision log.
    Log(&'a LogEntry),
    /// The scripted caller acted.
    Caller(CallerLine<'a>),
}

#[derive(Debug, Clone, Serialize)]
pub struct CallerLine<'a> {
    pub at_ms: u64,
    pub kind: &'static str,
    pub line: usize,
    pub action: &'a str,
}

/// How a simulated call went.
#[derive(Debug)]
pub struct Simulation {
    pub summary: CallSummary,
    pub log: DecisionLog,
    /// Script steps the call never reached.
    pub unused: Vec<Step>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    #[error(transparent)]
    Script(#[from] ScriptError),
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
    #[error("router: {0}")]
    Router(#[from] RouterError),
    #[error("the call did not end after {MAX_STEPS} steps")]
    Runaway,
    #[error("the router stopped asking for anything before the call ended")]
    Stalled,
}

/// The wall clock of a simulated call, as its handlers read it: the call's
/// start, moved on by the virtual time. The run moves it before every
/// invocation; handlers that answer the `clock` import read [`Self::now_ms`].
#[derive(Debug, Clone)]
pub struct SimClock {
    start_ms: u64,
    now_ms: Arc<AtomicU64>,
}

impl SimClock {
    /// A clock reading `start_ms` (Unix ms) until the call's time moves.
    pub fn starting_at(start_ms: u64) -> Self {
        Self {
            start_ms,
            now_ms: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// Unix milliseconds at the call's current virtual time.
    pub fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    fn set_elapsed(&self, elapsed_ms: u64) {
        self.now_ms
            .store(self.start_ms.saturating_add(elapsed_ms), Ordering::Relaxed);
    }
}

/// Runs one call from `script` through `handlers`, starting at `handler`,
/// and shows every step to `show` as it happens. Handlers read the wall
/// clock themselves; [`run_with_clock`] moves one for them.
pub async fn run(
    handlers: &Handlers,
    handler: &str,
    script: Script,
    config: RouterConfig,
    show: impl FnMut(Line<'_>),
) -> Result<Simulation, SimError> {
    let unread = SimClock::starting_at(0);
    run_with_clock(handlers, handler, script, config, &unread, show).await
}

/// [`run`], moving `clock` to the virtual time before every invocation.
pub async fn run_with_clock(
    handlers: &Handlers,
    handler: &str,
    script: Script,
    config: RouterConfig,
    clock: &SimClock,
    mut show: impl FnMut(Line<'_>),
) -> Result<Simulation, SimError> {
    let base = Instant::now();
    let mut clock_ms = 0u64;
    let incoming = IncomingCall::inbound(script.from.clone(), script.to.clone(), "local");
    let mut call = Call::new(base, "sim-call-1", "sim-tenant", handler, incoming, config);
    let mut leg = SimulatedLeg::new(script.actions);
    let mut shown = 0;
    for _ in 0..MAX_STEPS {
        for entry in &call.log().entries()[shown..] {
            show(Line::Log(entry));
        }
        shown = call.log().entries().len();
        let now = base + Duration::from_millis(clock_ms);
        match call.poll_output() {
            Some(Output::Invoke(request)) => {
                call.set_notices(hears_notices(handlers, &request.ctx.handler));
                clock.set_elapsed(clock_ms);
                let invocation = invoke_named(handlers, request).await;
                call.handle_invocation(now, invocation)?;
            }
            Some(Output::Wait(plan)) => {
                let (elapsed_ms, event) = leg.wait_plan(&plan);
                clock_ms += elapsed_ms;
                let now = base + Duration::from_millis(clock_ms);
                if let WaitEnd::Redirect(handler) = plan.then {
                    call.redirect(now, handler)?;
                }
                if let Some(event) = event {
                    call.handle_leg(now, event)?;
                }
            }
            Some(Output::Execute(verb)) => {
                let step = leg.execute(&verb)?;
                if let Some(caller) = &step.caller {
                    show(Line::Caller(CallerLine {
                        at_ms: clock_ms,
                        kind: "caller",
                        line: caller.line,
                        action: &caller.text,
                    }));
                }
                clock_ms += step.elapsed_ms;
                if step.event != LegEvent::Done || !call.is_finished() {
                    call.handle_leg(base + Duration::from_millis(clock_ms), step.event)?;
                }
            }
            Some(Output::Finished(summary)) => {
                return Ok(Simulation {
                    summary,
                    log: call.log().clone(),
                    unused: leg.unused().cloned().collect(),
                });
            }
            // The router waits on the leg: a queued caller's next update
            // or outcome; with none, a router bug.
            None => {
                let step = leg.resume().ok_or(SimError::Stalled)?;
                clock_ms += step.elapsed_ms;
                call.handle_leg(base + Duration::from_millis(clock_ms), step.event)?;
            }
        }
    }
    Err(SimError::Runaway)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Enqueue, Event, Plan, Say, Verb};
    use crate::guest::{Handlers, NativeHandler};

    /// Queues with an update every 10 s; told it is 3rd or later it leaves
    /// with an apology, told it is 2nd it goes to `agent` once `redirect`
    /// is set, else it hears its place.
    fn handlers(redirect: bool) -> Handlers {
        let main = NativeHandler(move |_: &_, event: &Event, _: &mut _| {
            Ok(match event {
                Event::Incoming(_) => Plan {
                    verbs: vec![Verb::Enqueue(Enqueue {
                        queue: "support".into(),
                        wait_prompts: vec![],
                        max_wait_secs: Some(120),
                        priority: None,
                        wait_update_secs: Some(10),
                    })],
                },
                Event::QueueWait(s) if s.position >= 3 && !redirect => Plan {
                    verbs: vec![Verb::Say(Say::text("Sorry")), Verb::LeaveQueue],
                },
                Event::QueueWait(s) if s.position == 2 && redirect => Plan {
                    verbs: vec![Verb::Redirect("agent".into())],
                },
                Event::QueueWait(s) => Plan {
                    verbs: vec![Verb::Say(Say::text(format!(
                        "You are number {}",
                        s.position
                    )))],
                },
                _ => Plan {
                    verbs: vec![Verb::Hangup],
                },
            })
        });
        let agent = NativeHandler(|_: &_, _: &Event, _: &mut _| {
            Ok(Plan {
                verbs: vec![Verb::Hangup],
            })
        });
        let mut handlers = Handlers::new();
        handlers.insert("main".into(), Arc::new(main));
        handlers.insert("agent".into(), Arc::new(agent));
        handlers
    }

    async fn simulate(redirect: bool, script: &str) -> Vec<(u64, String)> {
        let script = Script::parse(script).unwrap();
        let sim = run(
            &handlers(redirect),
            "main",
            script,
            RouterConfig::default(),
            |_| {},
        )
        .await
        .unwrap();
        (sim.log.entries().iter())
            .filter_map(|e| match &e.entry {
                crate::router::Entry::Event { event, .. } => Some((e.at_ms, describe_event(event))),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn wait_updates_come_every_interval_until_the_scripted_outcome() {
        let events = simulate(false, "queue bridged after 35 talk 20 ahead 1\n").await;
        let told: Vec<_> = events.iter().map(|(at, e)| (*at, e.as_str())).collect();
        assert_eq!(
            told,
            vec![
                (0, "incoming from +14155550100 to +14155550199 (inbound)"),
                (10_000, "queue-wait support position 2 of 2, waited 10 s"),
                (20_000, "queue-wait support position 1 of 1, waited 20 s"),
                (30_000, "queue-wait support position 1 of 1, waited 30 s"),
                // The wait prompts' time is within the wait: the bridge
                // still ends 35 + 20 s after the caller joined.
                (55_000, "queue-complete support bridged after 35 s"),
                (55_000, "hangup (handler)"),
            ]
        );
    }

    #[tokio::test]
    async fn a_wait_plan_leaves_the_queue_or_redirects_as_on_a_real_call() {
        let events = simulate(false, "queue timeout ahead 5\n").await;
        let left = &events[2];
        assert_eq!(left.1, "queue-complete support left after 10 s");
        assert!(left.0 > 10_000, "after the apology: {events:?}");

        let events = simulate(true, "queue bridged after 60 ahead 1\n").await;
        let names: Vec<&str> = events.iter().map(|(_, e)| e.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "incoming from +14155550100 to +14155550199 (inbound)",
                "queue-wait support position 2 of 2, waited 10 s",
                "redirected from main",
                "hangup (handler)",
            ]
        );
    }
}
