//! Screening of incoming calls (C11): the edge's answer to the endpoint's
//! `EndpointEvent::Verify`, before the call's handler runs.
//!
//! ```text
//!  Verify { identity, from, to, headers }
//!     ├─► directory: who manages `from`? ─► that provider: "did you place
//!     │   this call?" (directory.rs; not-asked without [directory] url)
//!     └─► Identity header: PASSporT + certificate (shaken.rs; not-checked
//!         without [shaken] verify)                      ── both at once
//!     ─► Findings (each with its reason)
//!     ─► the account's verification-policy component (fresh instance,
//!        the account's guest limits), or the default policy; a trap or a
//!        deadline applies the default, never plain accept
//!     ─► Screened { label in incoming.verification, admit | challenge |
//!        reject 403/608 + Reason, findings and ruling for the decision log }
//! ```
//!
//! [`decide`] is the one place a ruling becomes what the call does, so
//! `switchyard screen` (a policy tried on recorded findings) and a real
//! call agree.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use switchyard_contract::Header;
use switchyard_contract::screening::{
    self, CallAttempt, Case, Confirmation, Findings, PassportStatus, ProviderCheck, Ruling,
};

use crate::directory::Confirmer;
use crate::shaken::{Checked, Verifier};
use crate::sip::endpoint::{Outcome, Screened};
use crate::wasm::WasmPolicy;

/// Who rules when the account has no policy component.
const DEFAULT: &str = "the default policy";

/// One incoming call to screen (from `EndpointEvent::Verify`).
#[derive(Debug, Clone)]
pub struct Attempt {
    pub tenant: String,
    pub identity: Option<String>,
    pub from: String,
    pub to: String,
    pub call_id: String,
    pub headers: Vec<Header>,
}

pub struct Screener {
    verifier: Option<Arc<Verifier>>,
    confirmer: Option<Arc<Confirmer>>,
    /// Account id → its verification-policy component.
    policies: HashMap<String, Arc<WasmPolicy>>,
}

impl Screener {
    /// `None` when there is nothing to screen with: no checks and no
    /// account with a policy (calls are then `not-checked`).
    pub fn new(
        verifier: Option<Arc<Verifier>>,
        confirmer: Option<Arc<Confirmer>>,
        policies: HashMap<String, Arc<WasmPolicy>>,
    ) -> Option<Self> {
        let idle = verifier.is_none() && confirmer.is_none() && policies.is_empty();
        (!idle).then_some(Self {
            verifier,
            confirmer,
            policies,
        })
    }

    pub async fn screen(&self, attempt: Attempt) -> Screened {
        let case = self.find(&attempt).await;
        let policy = self.policies.get(&attempt.tenant).map(|p| &**p);
        let (ruled, by) = rule(policy, &attempt.call_id, &case).await;
        decide(case.call, case.findings, ruled, by)
    }

    /// The findings: the provider's confirmation and the Identity check,
    /// asked at once.
    async fn find(&self, attempt: &Attempt) -> Case {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let provider = async {
            match &self.confirmer {
                Some(confirmer) => {
                    provider_check(confirmer.check(&attempt.from, &attempt.to, at).await)
                }
                None => ProviderCheck {
                    answer: Confirmation::NotAsked,
                    provider: None,
                    reason: "this runtime asks no directory ([directory] url)".into(),
                },
            }
        };
        let passport = async {
            match (&self.verifier, &attempt.identity) {
                (Some(verifier), Some(identity)) => {
                    verifier.check(identity, &attempt.from, &attempt.to).await
                }
                (Some(_), None) => Checked::not_there(PassportStatus::Absent, "no Identity header"),
                (None, _) => Checked::not_there(
                    PassportStatus::NotChecked,
                    "this runtime checks no Identity headers ([shaken] verify)",
                ),
            }
        };
        let (provider, passport) = tokio::join!(provider, passport);
        let findings = Findings {
            provider,
            passport: passport.passport,
        };
        Case {
            call: CallAttempt {
                from: attempt.from.clone(),
                to: attempt.to.clone(),
                headers: attempt.headers.clone(),
            },
            evidence: screening::evidence(&findings, passport.evidence),
            findings,
        }
    }
}

/// The account's policy's ruling on `case`, or the default's when there
/// is no policy or it fails (trap, deadline); and who ruled. `name`
/// names the call in the guest's log lines.
pub async fn rule(
    policy: Option<&WasmPolicy>,
    name: &str,
    case: &Case,
) -> (Result<Ruling, String>, String) {
    match policy {
        None => (
            Ok(screening::default_ruling(&case.findings)),
            DEFAULT.into(),
        ),
        Some(policy) => match policy.screen(name, case).await {
            Ok(ruled) => (ruled, "the account's policy".into()),
            Err(failure) => (
                Ok(screening::default_ruling(&case.findings)),
                format!("{DEFAULT} (the account's policy failed: {failure})"),
            ),
        },
    }
}

fn provider_check(check: crate::directory::Check) -> ProviderCheck {
    use crate::directory::Confirmation as Found;
    ProviderCheck {
        answer: match check.answer {
            Found::NotAsked => Confirmation::NotAsked,
            Found::UnknownCaller => Confirmation::UnknownCaller,
            Found::Confirmed => Confirmation::Confirmed,
            Found::Denied => Confirmation::Denied,
            Found::Unreachable => Confirmation::Unreachable,
        },
        provider: check.provider,
        reason: check.reason,
    }
}

/// What a ruling makes of the call. `ruled` is `Err(text)` for a 0.2.0
/// policy's label of its own words (the call goes on with that label).
pub fn decide(
    call: CallAttempt,
    findings: Findings,
    ruled: Result<Ruling, String>,
    by: String,
) -> Screened {
    let ruling = match &ruled {
        Ok(ruling) => ruling.clone(),
        // The log's ruling type has only 0.2.1's labels: the text is in `by`.
        Err(_) => Ruling::Accept,
    };
    let (label, outcome) = match ruled {
        Ok(Ruling::Accept) => (None, Outcome::Admit),
        Ok(Ruling::Label(label)) => (Some(label.as_str().to_owned()), Outcome::Admit),
        Ok(Ruling::Challenge(handler)) => (
            Some(screening::Label::Unverified.as_str().to_owned()),
            Outcome::Challenge(handler),
        ),
        Ok(Ruling::Reject(r)) => (
            None,
            Outcome::Reject {
                status: r.status,
                reason: r.reason,
            },
        ),
        Err(text) => (Some(text), Outcome::Admit),
    };
    let reason = format!(
        "provider {}: {}; passport {}: {}",
        confirmation_name(findings.provider.answer),
        findings.provider.reason,
        passport_name(findings.passport.status),
        findings.passport.reason
    );
    let by = match &label {
        Some(text) if matches!(ruling, Ruling::Accept) => format!("{by}, label {text:?}"),
        _ => by,
    };
    Screened {
        verification: screening::verification(&findings, label),
        reason,
        outcome,
        screening: Some(crate::router::Screening {
            call,
            findings,
            ruling,
            by,
        }),
    }
}

fn confirmation_name(answer: Confirmation) -> &'static str {
    match answer {
        Confirmation::NotAsked => "not-asked",
        Confirmation::UnknownCaller => "unknown-caller",
        Confirmation::Confirmed => "confirmed",
        Confirmation::Denied => "denied",
        Confirmation::Unreachable => "unreachable",
    }
}

fn passport_name(status: PassportStatus) -> &'static str {
    match status {
        PassportStatus::NotChecked => "not-checked",
        PassportStatus::Absent => "absent",
        PassportStatus::Valid => "valid",
        PassportStatus::Invalid => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use screening::{Label, PassportCheck, Rejection};

    fn attempt() -> CallAttempt {
        CallAttempt {
            from: "+15550100".into(),
            to: "100".into(),
            headers: Vec::new(),
        }
    }

    fn findings(answer: Confirmation) -> Findings {
        Findings {
            provider: ProviderCheck {
                answer,
                provider: Some("a.example".into()),
                reason: "asked".into(),
            },
            passport: PassportCheck {
                status: PassportStatus::Absent,
                attestation: None,
                reason: "no Identity header".into(),
            },
        }
    }

    #[test]
    fn a_label_reaches_the_handler_and_the_log_says_who_ruled() {
        let screened = decide(
            attempt(),
            findings(Confirmation::Confirmed),
            Ok(Ruling::Label(Label::Verified)),
            "the account's policy".into(),
        );
        assert_eq!(screened.outcome, Outcome::Admit);
        assert_eq!(screened.verification.label.as_deref(), Some("verified"));
        assert_eq!(
            screened.reason,
            "provider confirmed: asked; passport absent: no Identity header"
        );
        assert_eq!(screened.screening.unwrap().by, "the account's policy");
    }

    #[test]
    fn a_rejection_keeps_its_status_and_reason() {
        let rejection = Rejection {
            status: 608,
            reason: "not placed".into(),
        };
        let screened = decide(
            attempt(),
            findings(Confirmation::Denied),
            Ok(Ruling::Reject(rejection)),
            DEFAULT.into(),
        );
        assert_eq!(
            screened.outcome,
            Outcome::Reject {
                status: 608,
                reason: "not placed".into()
            }
        );
    }

    #[test]
    fn a_challenge_is_labelled_unverified() {
        let screened = decide(
            attempt(),
            findings(Confirmation::UnknownCaller),
            Ok(Ruling::Challenge("ask".into())),
            DEFAULT.into(),
        );
        assert_eq!(screened.outcome, Outcome::Challenge("ask".into()));
        assert_eq!(screened.verification.label.as_deref(), Some("unverified"));
    }

    #[test]
    fn a_0_2_0_free_text_label_is_passed_as_it_is() {
        let screened = decide(
            attempt(),
            findings(Confirmation::Confirmed),
            Err("spam-likely".into()),
            "the account's policy".into(),
        );
        assert_eq!(screened.verification.label.as_deref(), Some("spam-likely"));
        assert!(screened.screening.unwrap().by.contains("spam-likely"));
    }
}
