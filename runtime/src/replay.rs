//! Replay: re-run a recorded call's events against another component and
//! find the first event where its plan differs from the recorded one.
//!
//! ```text
//!   DecisionLog ──steps()──▶ Step per event: ctx, event, the call vars the
//!        │                   original saw, its host-import records and decision
//!        ▼ per step (stop at the first difference)
//!   Recorded { kv: scratch store seeded from the recorded reads,
//!              clock: the recorded readings,
//!              entropy: the recorded instant and random seed }
//!        ▼
//!   WasmHandler::replay(request, recorded) ──▶ new plan | failure
//!        ▼ compare()
//!   Verdict::Same | Differs { recorded, new } | Skipped
//! ```
//!
//! The new component sees what the original saw, not what it would have
//! caused: every event, its call variables and its host-import answers
//! come from the log. That is why replay stops at the first difference —
//! after it, the recorded events are the consequences of a plan the new
//! component did not make.
//!
//! What is reproduced, and how:
//! * **Call variables**: rebuilt as the router keeps them — the variables
//!   sent with an event, changed by the `call-vars` set/remove imports of
//!   a decision that succeeded (a failed one leaves them), and by the
//!   `set-var` verbs the router ran.
//! * **Key-value storage**: a scratch in-memory store per event, seeded
//!   with what the original read (a key's first `get` before any write of
//!   it; keys only listed are seeded empty). Writes stay in the scratch
//!   store. A key the original never touched reads as missing; a read that
//!   failed (storage down) is not reproduced.
//! * **Clock**: the event's recorded readings in order, the last one
//!   repeating; an event that read none, its recorded instant.
//! * **WASI clocks and random numbers** (`std::time`, `rand`, `HashMap`
//!   order): made again from the event's recorded instant and seed
//!   (`ImportRecord::Entropy`, see `wasm::entropy`), so the guest reads
//!   the very same values.
//! * **Logs from before entropy was recorded**: the event's instant is its
//!   first clock reading, or the log's first reading moved by the time
//!   between them, or the real time when the log has none; the seed is
//!   [`LEGACY_SEED`], so at least every replay of such a log is the same.
//! * Events sent to another handler (after a `redirect` or a handover)
//!   are skipped: the new component replaces the handler the call started on.
//!
//! Plans are compared exactly; failures by kind (a trap is the same as a
//! trap, whatever its message).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::mem::discriminant;
use std::sync::Arc;

use crate::contract::{Context, Event, Plan, Verb};
use crate::guest::{CallVars, GuestFailure, ImportRecord, InvokeRequest};
use crate::router::{DecisionLog, Entry};
use crate::simulate::{describe_event, describe_verb};
use crate::store::{KvError, KvLimits, KvStore};
use crate::wasm::entropy::unix_ms_now;
use crate::wasm::{ConfigError, Entropy, LoadedComponent, Recorded, TenantScope, WasmHost};

/// The random seed of events logged before seeds were recorded.
pub const LEGACY_SEED: u64 = 0;

/// What a handler decided on one event.
pub type Outcome = Result<Plan, GuestFailure>;

/// One recorded event, with everything needed to run it again.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at_ms: u64,
    pub ctx: Context,
    pub event: Event,
    /// The call variables sent with the event.
    pub vars: CallVars,
    /// The original decision and its host-import records; `None` when the
    /// log ends before it.
    pub recorded: Option<(Outcome, Vec<ImportRecord>)>,
}

/// How one event's replay compares with the recording.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Same,
    Differs {
        recorded: Outcome,
        new: Outcome,
    },
    /// Not run; why.
    Skipped(String),
}

/// One replayed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    pub ctx: Context,
    pub event: Event,
    pub verdict: Verdict,
    /// The host imports the new component called (empty when skipped).
    pub imports: Vec<ImportRecord>,
}

impl fmt::Display for Replayed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = format!(
            "event #{} ({})",
            self.ctx.sequence,
            describe_event(&self.event)
        );
        match &self.verdict {
            Verdict::Same => write!(f, "{head}: same plan"),
            Verdict::Skipped(why) => write!(f, "{head}: skipped, {why}"),
            Verdict::Differs { recorded, new } => write!(
                f,
                "{head}: recorded {} / new {}",
                describe_outcome(recorded),
                describe_outcome(new)
            ),
        }
    }
}

/// Every event replayed, up to and including the first difference.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub events: Vec<Replayed>,
}

impl Report {
    /// The first event whose plan differs, if one does.
    pub fn difference(&self) -> Option<&Replayed> {
        self.events
            .iter()
            .find(|r| matches!(r.verdict, Verdict::Differs { .. }))
    }

    /// How many events ran and compared equal.
    pub fn same(&self) -> usize {
        self.events
            .iter()
            .filter(|r| r.verdict == Verdict::Same)
            .count()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error("the decision log has no events")]
    Empty,
    #[error("the component does not fit the host's limits: {0}")]
    Limits(#[from] ConfigError),
    #[error("scratch key-value storage: {0}")]
    Kv(#[from] KvError),
}

/// Replays `log` against `component`, for the handler the call started on.
pub async fn replay(
    log: &DecisionLog,
    host: &WasmHost,
    component: &Arc<LoadedComponent>,
) -> Result<Report, ReplayError> {
    let steps = steps(log);
    let first = steps.first().ok_or(ReplayError::Empty)?;
    let (tenant, handler_name) = (first.ctx.tenant.clone(), first.ctx.handler.clone());
    let handler = host.handler(component, TenantScope::new(tenant.as_str()))?;
    let clock = Clock::of(log);
    let mut report = Report::default();
    for step in steps {
        let skip = |why: String| Replayed {
            ctx: step.ctx.clone(),
            event: step.event.clone(),
            verdict: Verdict::Skipped(why),
            imports: Vec::new(),
        };
        if step.ctx.handler != handler_name {
            report
                .events
                .push(skip(format!("sent to handler {}", step.ctx.handler)));
            continue;
        }
        let Some((recorded, imports)) = &step.recorded else {
            report
                .events
                .push(skip("the log ends before its decision".into()));
            continue;
        };
        let kv = KvStore::in_memory(KvLimits::default())?;
        for (key, value) in kv_seeds(imports) {
            kv.set(&tenant, &key, value).await?;
        }
        let request = InvokeRequest {
            ctx: step.ctx.clone(),
            event: step.event.clone(),
            vars: step.vars.clone(),
        };
        let clock_ms = clock.readings(step.at_ms, imports);
        let entropy = Entropy::recorded_in(imports).unwrap_or_else(|| Entropy {
            unix_ms: clock_ms.first().copied().unwrap_or_else(unix_ms_now),
            seed: LEGACY_SEED,
        });
        let recorded_imports = Recorded {
            kv: std::sync::Arc::new(kv),
            presence: std::sync::Arc::new(crate::wasm::presence::Replayed::of(imports)),
            clock_ms,
            entropy,
        };
        let invocation = handler.replay(request, recorded_imports).await;
        let verdict = compare(recorded, invocation.outcome);
        let differs = verdict != Verdict::Same;
        report.events.push(Replayed {
            ctx: step.ctx,
            event: step.event,
            verdict,
            imports: invocation.imports,
        });
        if differs {
            break;
        }
    }
    Ok(report)
}

/// The recorded events of `log`, each with the call variables it was sent
/// with and its decision.
pub fn steps(log: &DecisionLog) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    // What the router holds now, and what it sent with each event.
    let mut vars = CallVars::new();
    let mut sent: BTreeMap<u32, usize> = BTreeMap::new();
    for entry in log.entries() {
        match &entry.entry {
            Entry::Event { ctx, event } => {
                sent.insert(ctx.sequence, steps.len());
                steps.push(Step {
                    at_ms: entry.at_ms,
                    ctx: ctx.clone(),
                    event: event.clone(),
                    vars: vars.clone(),
                    recorded: None,
                });
            }
            Entry::Decision {
                sequence,
                outcome,
                imports,
                ..
            } => {
                let Some(step) = sent.get(sequence).and_then(|&i| steps.get_mut(i)) else {
                    continue;
                };
                // The router takes the variables the invocation returns:
                // those sent, as the guest changed them, or unchanged when
                // it failed.
                vars = step.vars.clone();
                if outcome.is_ok() {
                    apply_var_imports(&mut vars, imports);
                }
                step.recorded = Some((outcome.clone(), imports.clone()));
            }
            Entry::Verb {
                verb: Verb::SetVar(var),
            } => match &var.value {
                Some(value) => {
                    vars.insert(var.name.clone(), value.clone());
                }
                None => {
                    vars.remove(&var.name);
                }
            },
            _ => {}
        }
    }
    steps
}

fn apply_var_imports(vars: &mut CallVars, imports: &[ImportRecord]) {
    for import in imports {
        match import {
            ImportRecord::VarSet { name, value } => {
                vars.insert(name.clone(), value.clone());
            }
            ImportRecord::VarRemove { name } => {
                vars.remove(name);
            }
            _ => {}
        }
    }
}

/// What the scratch store starts with: each key's value as the original
/// first read it before writing it; keys it only listed, empty.
pub fn kv_seeds(imports: &[ImportRecord]) -> Vec<(String, Vec<u8>)> {
    let mut known: HashSet<&str> = HashSet::new();
    let mut seeds = Vec::new();
    let mut listed = Vec::new();
    for import in imports {
        match import {
            ImportRecord::KvGet { key, result } => {
                // `insert` first: a failed or empty read still makes the key known.
                if known.insert(key)
                    && let Ok(Some(value)) = result
                {
                    seeds.push((key.clone(), value.clone()));
                }
            }
            ImportRecord::KvSet { key, .. } | ImportRecord::KvDelete { key, .. } => {
                known.insert(key);
            }
            ImportRecord::KvListKeys {
                result: Ok(keys), ..
            } => listed.extend(keys.iter().filter(|k| !known.contains(k.as_str()))),
            _ => {}
        }
    }
    for key in listed {
        if known.insert(key) {
            seeds.push((key.clone(), Vec::new()));
        }
    }
    seeds
}

/// Clock readings for replayed events.
struct Clock {
    /// The log's first reading and when (ms since the call started).
    anchor: Option<(u64, u64)>,
}

impl Clock {
    fn of(log: &DecisionLog) -> Self {
        let anchor = log.entries().iter().find_map(|e| match &e.entry {
            Entry::Decision { imports, .. } => imports.iter().find_map(|i| match i {
                ImportRecord::ClockNow { ms } => Some((*ms, e.at_ms)),
                _ => None,
            }),
            _ => None,
        });
        Self { anchor }
    }

    /// The recorded readings of an event at `at_ms`. When it read none: in
    /// a log with the event's instant recorded, none either (the instant
    /// answers); in an older log, one moved from the anchor, or none when
    /// the log has no reading at all.
    fn readings(&self, at_ms: u64, imports: &[ImportRecord]) -> Vec<u64> {
        let recorded: Vec<u64> = imports
            .iter()
            .filter_map(|i| match i {
                ImportRecord::ClockNow { ms } => Some(*ms),
                _ => None,
            })
            .collect();
        let has_instant = Entropy::recorded_in(imports).is_some();
        match (recorded.is_empty() && !has_instant, self.anchor) {
            (false, _) | (true, None) => recorded,
            (true, Some((ms, then))) => vec![(ms + at_ms).saturating_sub(then)],
        }
    }
}

/// Whether `new` is what was recorded.
pub fn compare(recorded: &Outcome, new: Outcome) -> Verdict {
    let same = match (recorded, &new) {
        (Ok(a), Ok(b)) => a == b,
        (Err(GuestFailure::Handler(a)), Err(GuestFailure::Handler(b))) => a == b,
        (Err(a), Err(b)) => discriminant(a) == discriminant(b),
        _ => false,
    };
    if same {
        Verdict::Same
    } else {
        Verdict::Differs {
            recorded: recorded.clone(),
            new,
        }
    }
}

/// `plan [say "Hi" · hangup]` or `failure guest trapped: ...`.
pub fn describe_outcome(outcome: &Outcome) -> String {
    match outcome {
        Ok(plan) => {
            let verbs: Vec<String> = plan.verbs.iter().map(describe_verb).collect();
            format!("plan [{}]", verbs.join(" · "))
        }
        Err(failure) => format!("failure {failure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{HandlerError, HangupCause, IncomingCall, SetVar};
    use crate::guest::Handlers;
    use crate::router::RouterConfig;
    use crate::simulate::Script;
    use crate::wasm::HostConfig;

    fn ctx(sequence: u32, handler: &str) -> Context {
        Context {
            call_id: "CA1".into(),
            tenant: "acme".into(),
            sequence,
            handler: handler.into(),
        }
    }

    fn event(log: &mut DecisionLog, at: u64, sequence: u32) {
        let event = Event::Hangup(HangupCause::Caller);
        log.push(
            at,
            Entry::Event {
                ctx: ctx(sequence, "main"),
                event,
            },
        );
    }

    fn decision(log: &mut DecisionLog, sequence: u32, ok: bool, imports: Vec<ImportRecord>) {
        let outcome = if ok {
            Ok(Plan { verbs: vec![] })
        } else {
            Err(GuestFailure::Trap("boom".into()))
        };
        log.push(
            0,
            Entry::Decision {
                sequence,
                outcome,
                imports,
                elapsed_us: 1,
            },
        );
    }

    fn set(name: &str, value: &str) -> ImportRecord {
        ImportRecord::VarSet {
            name: name.into(),
            value: value.into(),
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> CallVars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn steps_carry_the_vars_the_router_sent_each_event_with() {
        let mut log = DecisionLog::default();
        event(&mut log, 0, 0);
        decision(&mut log, 0, true, vec![set("a", "1"), set("gone", "x")]);
        log.push(
            1,
            Entry::Verb {
                verb: Verb::SetVar(SetVar {
                    name: "b".into(),
                    value: Some("2".into()),
                }),
            },
        );
        event(&mut log, 5, 1);
        // A failed decision leaves the variables as they were sent.
        decision(&mut log, 1, false, vec![set("c", "3")]);
        event(&mut log, 9, 2);
        decision(
            &mut log,
            2,
            true,
            vec![ImportRecord::VarRemove {
                name: "gone".into(),
            }],
        );
        event(&mut log, 12, 3);

        let steps = steps(&log);
        let sent: Vec<CallVars> = steps.iter().map(|s| s.vars.clone()).collect();
        assert_eq!(
            sent,
            [
                vars(&[]),
                vars(&[("a", "1"), ("b", "2"), ("gone", "x")]),
                vars(&[("a", "1"), ("b", "2"), ("gone", "x")]),
                vars(&[("a", "1"), ("b", "2")]),
            ]
        );
        assert_eq!(steps[3].recorded, None, "the log ends before its decision");
        assert_eq!(steps[1].at_ms, 5);
    }

    #[test]
    fn kv_seeds_are_first_reads_before_writes_and_listed_keys() {
        let get = |key: &str, value: Option<&str>| ImportRecord::KvGet {
            key: key.into(),
            result: Ok(value.map(|v| v.as_bytes().to_vec())),
        };
        let imports = vec![
            get("count", Some("41")),
            ImportRecord::KvSet {
                key: "count".into(),
                len: 2,
                result: Ok(()),
            },
            get("count", Some("42")),
            ImportRecord::KvSet {
                key: "fresh".into(),
                len: 1,
                result: Ok(()),
            },
            get("fresh", Some("1")),
            get("missing", None),
            ImportRecord::KvGet {
                key: "down".into(),
                result: Err("unavailable(disk)".into()),
            },
            ImportRecord::KvListKeys {
                prefix: "".into(),
                limit: 10,
                result: Ok(vec!["count".into(), "listed".into()]),
            },
        ];
        assert_eq!(
            kv_seeds(&imports),
            [
                ("count".to_owned(), b"41".to_vec()),
                ("listed".to_owned(), Vec::new())
            ]
        );
    }

    #[test]
    fn clock_readings_are_recorded_or_moved_from_the_first_one() {
        let mut log = DecisionLog::default();
        event(&mut log, 0, 0);
        log.push(
            100,
            Entry::Decision {
                sequence: 0,
                outcome: Ok(Plan { verbs: vec![] }),
                imports: vec![ImportRecord::ClockNow { ms: 1_000_000 }],
                elapsed_us: 1,
            },
        );
        let clock = Clock::of(&log);
        let read = [
            ImportRecord::ClockNow { ms: 7 },
            ImportRecord::ClockNow { ms: 9 },
        ];
        assert_eq!(clock.readings(5_000, &read), [7, 9]);
        assert_eq!(clock.readings(5_000, &[]), [1_004_900]);
        let instant = Entropy {
            unix_ms: 2_000_000,
            seed: 1,
        };
        assert!(
            clock.readings(5_000, &[instant.record()]).is_empty(),
            "the recorded instant answers"
        );
        assert!(
            Clock::of(&DecisionLog::default())
                .readings(5, &[])
                .is_empty()
        );
    }

    #[test]
    fn failures_compare_by_kind_and_plans_exactly() {
        let trap = |m: &str| Err(GuestFailure::Trap(m.into()));
        assert_eq!(compare(&trap("a"), trap("b")), Verdict::Same);
        let handler = |m: &str| Err(GuestFailure::Handler(HandlerError::Internal(m.into())));
        assert!(matches!(
            compare(&handler("a"), handler("b")),
            Verdict::Differs { .. }
        ));
        let plan = |verbs| Ok(Plan { verbs });
        assert_eq!(
            compare(&plan(vec![Verb::Hangup]), plan(vec![Verb::Hangup])),
            Verdict::Same
        );
        let differs = compare(&plan(vec![Verb::Hangup]), trap("x"));
        let Verdict::Differs { recorded, new } = &differs else {
            panic!("{differs:?}")
        };
        assert_eq!(describe_outcome(recorded), "plan [hangup]");
        assert_eq!(describe_outcome(new), "failure guest trapped: x");
    }

    fn guest(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/wasm32-wasip2/release")
            .join(format!("guest_{name}.wasm"));
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-guests)", path.display()))
    }

    /// `bytes` with `from` replaced by `to` (the same length): a changed
    /// version of a component whose code is untouched.
    fn patched(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("the text is in the component");
        let mut out = bytes.to_vec();
        out[at..at + to.len()].copy_from_slice(to);
        out
    }

    fn host(dir: &std::path::Path, kv: KvStore) -> WasmHost {
        let config = HostConfig::builder().cache_dir(dir).build().unwrap();
        WasmHost::new(config, kv).unwrap()
    }

    /// The IVR with a silent caller: three menus, goodbye, and the
    /// call counted in `stats/calls` on hangup (41 before).
    async fn recorded_ivr_call(host: &WasmHost) -> DecisionLog {
        host.kv()
            .set("sim-tenant", "stats/calls", b"41".to_vec())
            .await
            .unwrap();
        let component = host.load(&guest("ivr")).unwrap();
        let handler = host
            .handler(&component, TenantScope::new("sim-tenant"))
            .unwrap();
        let mut handlers = Handlers::new();
        handlers.insert("ivr".into(), Arc::new(handler));
        let script = Script::parse("silence\nsilence\nsilence\n").unwrap();
        let sim = crate::simulate::run(&handlers, "ivr", script, RouterConfig::default(), |_| {})
            .await
            .unwrap();
        assert_eq!(sim.summary.fallbacks, 0);
        sim.log
    }

    #[tokio::test]
    async fn the_same_component_replays_every_event_with_the_recorded_vars_and_kv() {
        let dir = tempfile::tempdir().unwrap();
        let recording = host(dir.path(), KvStore::in_memory(KvLimits::default()).unwrap());
        let log = recorded_ivr_call(&recording).await;
        // Replayed on a host whose own storage says otherwise.
        let kv = KvStore::in_memory(KvLimits::default()).unwrap();
        kv.set("sim-tenant", "stats/calls", b"7".to_vec())
            .await
            .unwrap();
        let replaying = host(dir.path(), kv);
        let component = replaying.load(&guest("ivr")).unwrap();

        let report = replay(&log, &replaying, &component).await.unwrap();
        assert_eq!(report.difference(), None, "{report:#?}");
        assert_eq!(report.same(), log.events().count());
        let hangup = report.events.last().unwrap();
        assert!(matches!(hangup.event, Event::Hangup(_)), "{hangup:?}");
        assert!(
            hangup.imports.contains(&ImportRecord::KvGet {
                key: "stats/calls".into(),
                result: Ok(Some(b"41".to_vec())),
            }),
            "the recorded read is answered: {:?}",
            hangup.imports
        );
        // Nothing the replay wrote reached the host's storage.
        assert_eq!(
            replaying
                .kv()
                .get("sim-tenant", "stats/calls")
                .await
                .unwrap(),
            Some(b"7".to_vec())
        );
    }

    #[tokio::test]
    async fn a_changed_component_is_reported_at_its_first_differing_event() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path(), KvStore::in_memory(KvLimits::default()).unwrap());
        let log = recorded_ivr_call(&host).await;

        // Only the goodbye differs: the menus before it depend on the
        // `attempts` variable, so they match only with the recorded vars.
        let changed = patched(&guest("ivr"), b"Goodbye", b"So long");
        let component = host.load(&changed).unwrap();
        let report = replay(&log, &host, &component).await.unwrap();
        let first = report.difference().expect("a difference");
        assert!(
            matches!(&first.event, Event::GatherComplete(g) if g.digits.is_empty()),
            "{first}"
        );
        assert_eq!(report.events.last(), Some(first), "replay stops there");
        assert_eq!(report.same(), report.events.len() - 1);
        let text = first.to_string();
        assert!(
            text.contains(
                r#"recorded plan [say "Goodbye" · hangup] / new plan [say "So long" · hangup]"#
            ),
            "{text}"
        );
        assert!(
            text.starts_with(&format!("event #{} (gather-complete", first.ctx.sequence)),
            "{text}"
        );

        // Another guest altogether differs at once.
        let player = host.load(&guest("player")).unwrap();
        let report = replay(&log, &host, &player).await.unwrap();
        assert_eq!(report.events.len(), 1);
        assert!(
            matches!(report.events[0].event, Event::Incoming(IncomingCall { .. })),
            "{report:?}"
        );
        assert!(report.difference().is_some());
    }

    /// The entropy guest's call with a caller who stays silent: it says
    /// what it read at the incoming call and again at the gather's result.
    async fn recorded_entropy_call(host: &WasmHost) -> DecisionLog {
        let component = host.load(&guest("entropy")).unwrap();
        let handler = host
            .handler(&component, TenantScope::new("sim-tenant"))
            .unwrap();
        let mut handlers = Handlers::new();
        handlers.insert("entropy".into(), Arc::new(handler));
        let script = Script::parse("silence\n").unwrap();
        let sim = crate::simulate::run(
            &handlers,
            "entropy",
            script,
            RouterConfig::default(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(sim.summary.fallbacks, 0);
        sim.log
    }

    /// What the entropy guest said in each decision of `log`, as
    /// `wall W clock C elapsed E random R order O` word pairs.
    fn said(log: &DecisionLog) -> Vec<BTreeMap<String, String>> {
        log.entries()
            .iter()
            .filter_map(|e| match &e.entry {
                Entry::Decision {
                    outcome: Ok(plan), ..
                } => plan.verbs.iter().find_map(|v| match v {
                    Verb::Say(say) => Some(pairs(&say.text)),
                    _ => None,
                }),
                _ => None,
            })
            .collect()
    }

    fn pairs(text: &str) -> BTreeMap<String, String> {
        let words: Vec<&str> = text.split(' ').collect();
        words
            .chunks(2)
            .map(|pair| (pair[0].to_owned(), pair.get(1).unwrap_or(&"").to_string()))
            .collect()
    }

    /// `log` with every decision's entropy record changed by `change`.
    fn with_entropy(log: &DecisionLog, change: impl Fn(&mut ImportRecord)) -> DecisionLog {
        let mut changed = DecisionLog::default();
        for entry in log.entries() {
            let mut entry = entry.clone();
            if let Entry::Decision { imports, .. } = &mut entry.entry {
                imports
                    .iter_mut()
                    .filter(|i| matches!(i, ImportRecord::Entropy { .. }))
                    .for_each(&change);
            }
            changed.push(entry.at_ms, entry.entry);
        }
        changed
    }

    /// `log` as a runtime from before entropy was recorded stored it: the
    /// same JSON lines without the entropy records.
    fn as_stored_before_entropy(log: &DecisionLog) -> String {
        log.to_json_lines()
            .lines()
            .map(|line| {
                let mut entry: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(imports) = entry.get_mut("imports").and_then(|i| i.as_array_mut()) {
                    imports.retain(|i| i["import"] != "entropy");
                }
                format!("{entry}\n")
            })
            .collect()
    }

    #[tokio::test]
    async fn replay_of_a_guest_reading_system_time_instant_and_rand_gives_identical_plans() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path(), KvStore::in_memory(KvLimits::default()).unwrap());
        let log = recorded_entropy_call(&host).await;
        let seen = said(&log);
        assert_eq!(seen.len(), 2, "{log:#?}");
        for (i, said) in seen.iter().enumerate() {
            assert!(
                said.contains_key("random") && said.contains_key("order"),
                "decision {i}: {said:?}"
            );
        }
        assert_ne!(
            seen[0]["random"], seen[1]["random"],
            "each event gets its own seed"
        );
        let component = host.load(&guest("entropy")).unwrap();

        let report = replay(&log, &host, &component).await.unwrap();
        assert_eq!(report.difference(), None, "{report:#?}");
        assert_eq!(report.same(), log.events().count());
        assert!(report.same() >= 2, "{report:#?}");

        // The plans match because the recorded seed and instant are fed
        // back: another seed, or another instant, is another plan.
        let reseeded = with_entropy(&log, |record| {
            if let ImportRecord::Entropy { seed, .. } = record {
                *seed = seed.wrapping_add(1);
            }
        });
        let report = replay(&reseeded, &host, &component).await.unwrap();
        let first = report.difference().expect("another seed differs");
        assert_eq!(first.ctx.sequence, 0, "{report:#?}");
        let moved = with_entropy(&log, |record| {
            if let ImportRecord::Entropy { unix_ms, .. } = record {
                *unix_ms += 1_000;
            }
        });
        let report = replay(&moved, &host, &component).await.unwrap();
        assert!(report.difference().is_some(), "another instant differs");
    }

    #[tokio::test]
    async fn a_log_stored_before_entropy_was_recorded_still_loads_and_replays() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path(), KvStore::in_memory(KvLimits::default()).unwrap());
        let log = recorded_ivr_call(&host).await;
        assert!(log.to_json_lines().contains(r#""import":"entropy""#));
        let stored = as_stored_before_entropy(&log);
        assert!(!stored.contains("entropy"), "{stored}");

        let old = DecisionLog::from_json_lines(&stored).unwrap();
        let component = host.load(&guest("ivr")).unwrap();
        let report = replay(&old, &host, &component).await.unwrap();
        assert_eq!(report.difference(), None, "{report:#?}");
        assert_eq!(report.same(), old.events().count());

        // A guest that reads WASI randomness cannot decide as it did then
        // (nothing recorded its numbers), but it replays, the same way
        // every time, at the instant its clock reading recorded.
        let entropy_log = recorded_entropy_call(&host).await;
        let old = DecisionLog::from_json_lines(&as_stored_before_entropy(&entropy_log)).unwrap();
        let component = host.load(&guest("entropy")).unwrap();
        let (a, b) = (
            replay(&old, &host, &component).await.unwrap(),
            replay(&old, &host, &component).await.unwrap(),
        );
        let new = |report: &Report| match &report.events[0].verdict {
            Verdict::Differs { new: Ok(plan), .. } => plan.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(new(&a), new(&b));
        let Verb::Say(say) = &new(&a).verbs[0] else {
            panic!("{:?}", new(&a))
        };
        let replayed = pairs(&say.text);
        assert_eq!(
            replayed["wall"],
            said(&entropy_log)[0]["clock"],
            "{replayed:?}"
        );
    }
}
