//! Per-tenant router settings.

use switchyard_contract::{Plan, Say, Verb};

/// Typed limits and the fallback of one tenant's calls.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Events one call may send to handlers before it is sent to the
    /// fallback; stops a handler (or a redirect cycle) that never ends the
    /// call. Default 1,000.
    pub max_events: u32,
    /// Verbs one plan may hold. Default 100.
    pub max_plan_verbs: usize,
    /// Targets one `dial` may ring. Default 10.
    pub max_dial_targets: usize,
    /// What a call hears when its handler fails. Default: a short apology,
    /// then hang up.
    pub fallback: Fallback,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            max_events: 1_000,
            max_plan_verbs: 100,
            max_dial_targets: 10,
            fallback: Fallback::default(),
        }
    }
}

/// A static plan run when a handler traps, times out, errs or returns an
/// invalid plan. It never calls a guest, so it cannot fail the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback(Plan);

/// Why a fallback plan was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FallbackError {
    /// Only verbs that need no handler decision may appear in a fallback.
    #[error(
        "verb {index} ({verb}) cannot be used in a fallback: only say, play, pause, send-digits, set-var, hangup and reject can"
    )]
    VerbNotAllowed { index: usize, verb: &'static str },
}

impl Fallback {
    /// Checks the plan and makes sure it ends the call (a hangup is
    /// appended when it does not end with hangup or reject).
    pub fn new(plan: Plan) -> Result<Self, FallbackError> {
        let mut verbs = plan.verbs;
        for (index, verb) in verbs.iter().enumerate() {
            let allowed = matches!(
                verb,
                Verb::Say(_)
                    | Verb::Play(_)
                    | Verb::Pause(_)
                    | Verb::SendDigits(_)
                    | Verb::SetVar(_)
                    | Verb::Hangup
                    | Verb::Reject(_)
            );
            if !allowed {
                return Err(FallbackError::VerbNotAllowed {
                    index,
                    verb: super::plan::verb_name(verb),
                });
            }
        }
        if !matches!(verbs.last(), Some(Verb::Hangup | Verb::Reject(_))) {
            verbs.push(Verb::Hangup);
        }
        Ok(Self(Plan { verbs }))
    }

    pub fn plan(&self) -> &Plan {
        &self.0
    }
}

impl Default for Fallback {
    fn default() -> Self {
        Self(Plan {
            verbs: vec![
                Verb::Say(Say::text(
                    "We are sorry, an application error has occurred. Goodbye.",
                )),
                Verb::Hangup,
            ],
        })
    }
}
