//! The `verification-policy` world (C11): what the runtime found out about
//! a caller ([`Findings`]) and what a policy decides ([`Ruling`]), plus
//! 0.2.0's `verify` types ([`Evidence`], [`Verdict`]), which the runtime
//! still runs.
//!
//! The world's imports and `types` are the call-handler world's
//! (`with:`), so there is one `Header`, one `kv`.

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "verification-policy",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
        with: {
            "voice:runtime/types": crate::voice::runtime::types,
            "voice:runtime/log": crate::voice::runtime::log,
            "voice:runtime/kv": crate::voice::runtime::kv,
            "voice:runtime/clock": crate::voice::runtime::clock,
            "voice:runtime/call-vars": crate::voice::runtime::call_vars,
            "voice:runtime/presence": crate::voice::runtime::presence,
        },
    });
}

pub use bindings::voice::runtime::screening_types::*;

/// The generated (type-only) import traits, for the Wasm host's linker.
pub mod imports {
    pub use super::bindings::voice::runtime::{screening_types, verification_types};
}
pub use bindings::voice::runtime::verification_types::{
    CallAttempt, Evidence, PassportCheck as EvidencePassport, ProviderAnswer, Verdict,
};

use crate::{Verification, VerificationStatus};

/// One incoming call as each policy contract is told of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub call: CallAttempt,
    pub findings: Findings,
    /// The same findings as 0.2.0's `verify` has them (no reasons; an
    /// invalid PASSporT says which kind of invalid).
    pub evidence: Evidence,
}

/// The documented default policy, used without a policy component and
/// whenever one fails (trap, deadline): it never rejects and never lets
/// contrary evidence through unlabelled.
///
/// | findings | label |
/// |---|---|
/// | the provider denied the call, or the PASSporT is invalid | likely-spoofed |
/// | the provider confirmed it, or a valid PASSporT with attestation A | verified |
/// | anything else (B/C attestation, no evidence, provider unreachable) | unverified |
pub fn default_ruling(findings: &Findings) -> Ruling {
    let passport = &findings.passport;
    let label = if findings.provider.answer == Confirmation::Denied
        || passport.status == PassportStatus::Invalid
    {
        Label::LikelySpoofed
    } else if findings.provider.answer == Confirmation::Confirmed
        || (passport.status == PassportStatus::Valid
            && passport.attestation.as_deref() == Some("A"))
    {
        Label::Verified
    } else {
        Label::Unverified
    };
    Ruling::Label(label)
}

/// What the call's handler sees in `incoming.verification` for these
/// findings: passed on a valid PASSporT or a confirmation, failed on an
/// invalid one or a denial, no-evidence otherwise.
pub fn verification(findings: &Findings, label: Option<String>) -> Verification {
    let (provider, passport) = (findings.provider.answer, findings.passport.status);
    let status = if provider == Confirmation::Denied || passport == PassportStatus::Invalid {
        VerificationStatus::Failed
    } else if provider == Confirmation::Confirmed || passport == PassportStatus::Valid {
        VerificationStatus::Passed
    } else {
        VerificationStatus::NoEvidence
    };
    Verification {
        status,
        attestation: findings.passport.attestation.clone(),
        label,
    }
}

impl Label {
    /// The label's WIT name, which `incoming.verification.label` carries.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Verified => "verified",
            Label::Unverified => "unverified",
            Label::LikelySpoofed => "likely-spoofed",
        }
    }
}

/// 0.2.0's evidence for `findings`; `invalid` says which kind of invalid
/// PASSporT it was (0.2.0 named three).
pub fn evidence(findings: &Findings, invalid: EvidencePassport) -> Evidence {
    Evidence {
        provider: match findings.provider.answer {
            // 0.2.0 had no "not asked": no provider was consulted.
            Confirmation::NotAsked | Confirmation::UnknownCaller => ProviderAnswer::UnknownCaller,
            Confirmation::Confirmed => ProviderAnswer::Confirmed,
            Confirmation::Denied => ProviderAnswer::Denied,
            Confirmation::Unreachable => ProviderAnswer::Unreachable,
        },
        passport: match findings.passport.status {
            PassportStatus::NotChecked | PassportStatus::Absent => EvidencePassport::Absent,
            PassportStatus::Valid => EvidencePassport::Valid,
            PassportStatus::Invalid => invalid,
        },
        attestation: findings.passport.attestation.clone(),
    }
}

/// A 0.2.0 verdict as a ruling: a label keeps its text (0.2.0 labels
/// were free text), so it comes back as `Err(text)` when it is not one
/// of 0.2.1's names; a rejection gets a generic Reason.
pub fn ruling_of(verdict: Verdict) -> Result<Ruling, String> {
    Ok(match verdict {
        Verdict::Accept => Ruling::Accept,
        Verdict::Label(text) => match text.as_str() {
            "verified" => Ruling::Label(Label::Verified),
            "unverified" => Ruling::Label(Label::Unverified),
            "likely-spoofed" => Ruling::Label(Label::LikelySpoofed),
            _ => return Err(text),
        },
        Verdict::Reject(status) => Ruling::Reject(Rejection {
            status,
            reason: "rejected by the account's verification policy".into(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(answer: Confirmation, status: PassportStatus, attest: Option<&str>) -> Findings {
        Findings {
            provider: ProviderCheck {
                answer,
                provider: None,
                reason: String::new(),
            },
            passport: PassportCheck {
                status,
                attestation: attest.map(Into::into),
                reason: String::new(),
            },
        }
    }

    #[test]
    fn the_default_policy_labels_and_never_rejects() {
        use Confirmation::*;
        use PassportStatus::*;
        let label = |f: Findings| match default_ruling(&f) {
            Ruling::Label(label) => label,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            label(findings(Denied, Valid, Some("A"))),
            Label::LikelySpoofed
        );
        assert_eq!(
            label(findings(Confirmed, Invalid, None)),
            Label::LikelySpoofed
        );
        assert_eq!(label(findings(Confirmed, Absent, None)), Label::Verified);
        assert_eq!(label(findings(NotAsked, Valid, Some("A"))), Label::Verified);
        assert_eq!(
            label(findings(NotAsked, Valid, Some("B"))),
            Label::Unverified
        );
        assert_eq!(
            label(findings(Unreachable, Absent, None)),
            Label::Unverified
        );
        assert_eq!(
            label(findings(UnknownCaller, NotChecked, None)),
            Label::Unverified
        );
    }

    #[test]
    fn the_handler_sees_passed_failed_or_no_evidence() {
        use Confirmation::*;
        use PassportStatus::*;
        let status = |f: Findings| verification(&f, None).status;
        assert_eq!(
            status(findings(Confirmed, Absent, None)),
            VerificationStatus::Passed
        );
        assert_eq!(
            status(findings(Denied, Valid, Some("A"))),
            VerificationStatus::Failed
        );
        assert_eq!(
            status(findings(NotAsked, Absent, None)),
            VerificationStatus::NoEvidence
        );
    }

    #[test]
    fn a_0_2_0_verdict_keeps_its_free_text_label() {
        assert_eq!(
            ruling_of(Verdict::Label("verified".into())),
            Ok(Ruling::Label(Label::Verified))
        );
        assert_eq!(ruling_of(Verdict::Label("spam".into())), Err("spam".into()));
        let Ok(Ruling::Reject(rejection)) = ruling_of(Verdict::Reject(608)) else {
            panic!()
        };
        assert_eq!(rejection.status, 608);
    }

    #[test]
    fn old_evidence_names_the_kind_of_invalid() {
        let f = findings(Confirmation::NotAsked, PassportStatus::Invalid, None);
        let e = evidence(&f, EvidencePassport::Stale);
        assert_eq!(e.passport, EvidencePassport::Stale);
        assert_eq!(e.provider, ProviderAnswer::UnknownCaller);
    }
}
