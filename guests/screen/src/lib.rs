//! The sample verification policy: what an account that wants spoofed
//! caller ids refused and genuine ones marked would upload. The runtime
//! calls it once per incoming call, before the call's handler:
//!
//! | findings | ruling |
//! |---|---|
//! | the caller's provider `denied` placing the call | reject 608, "caller id not placed by its provider" |
//! | the provider `confirmed` it, or a `valid` PASSporT with attestation `A` | label `verified` |
//! | the PASSporT is `invalid` | label `likely-spoofed` |
//! | anything else (no provider, unreachable, no or B/C PASSporT) | label `unverified` |
//!
//! The handler then reads the label in `incoming.verification.label`.

use switchyard_sdk::log;
use switchyard_sdk::prelude::*;

#[verification_policy]
fn screen(call: CallAttempt, findings: Findings) -> Ruling {
    let ruling = rule(&findings);
    log::info(format!(
        "{} -> {}: {ruling:?} (provider: {}; passport: {})",
        call.from, call.to, findings.provider.reason, findings.passport.reason,
    ));
    ruling
}

fn rule(findings: &Findings) -> Ruling {
    if findings.denied() {
        Ruling::reject(608, "caller id not placed by its provider")
    } else if findings.confirmed() || findings.attestation() == Some("A") {
        Ruling::Label(Label::Verified)
    } else if findings.passport.status == PassportStatus::Invalid {
        Ruling::Label(Label::LikelySpoofed)
    } else {
        Ruling::Label(Label::Unverified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(
        answer: Confirmation,
        status: PassportStatus,
        attestation: Option<&str>,
    ) -> Findings {
        Findings {
            provider: ProviderCheck {
                answer,
                provider: Some("carrier-a".into()),
                reason: String::new(),
            },
            passport: PassportCheck {
                status,
                attestation: attestation.map(str::to_owned),
                reason: String::new(),
            },
        }
    }

    #[test]
    fn a_denied_caller_id_is_rejected_with_608_even_with_a_valid_passport() {
        let denied = findings(Confirmation::Denied, PassportStatus::Valid, Some("A"));
        assert_eq!(
            rule(&denied),
            Ruling::reject(608, "caller id not placed by its provider")
        );
    }

    #[test]
    fn a_confirmed_call_or_full_attestation_is_verified() {
        let confirmed = findings(Confirmation::Confirmed, PassportStatus::Absent, None);
        let attested = findings(Confirmation::NotAsked, PassportStatus::Valid, Some("A"));
        assert_eq!(rule(&confirmed), Ruling::Label(Label::Verified));
        assert_eq!(rule(&attested), Ruling::Label(Label::Verified));
    }

    #[test]
    fn an_invalid_passport_is_likely_spoofed() {
        let invalid = findings(Confirmation::UnknownCaller, PassportStatus::Invalid, None);
        assert_eq!(rule(&invalid), Ruling::Label(Label::LikelySpoofed));
    }

    #[test]
    fn partial_attestation_or_no_evidence_is_unverified() {
        let partial = findings(
            Confirmation::UnknownCaller,
            PassportStatus::Valid,
            Some("B"),
        );
        let nothing = findings(Confirmation::Unreachable, PassportStatus::NotChecked, None);
        assert_eq!(rule(&partial), Ruling::Label(Label::Unverified));
        assert_eq!(rule(&nothing), Ruling::Label(Label::Unverified));
    }
}
