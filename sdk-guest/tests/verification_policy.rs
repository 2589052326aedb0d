//! `#[verification_policy]` keeps the function callable and compiles on the
//! host too, so a policy can be unit-tested natively.

use switchyard_sdk::prelude::*;

#[verification_policy]
fn refuse_denied(call: CallAttempt, findings: Findings) -> Ruling {
    if findings.denied() {
        Ruling::reject(608, format!("{} was not placed by its provider", call.from))
    } else if findings.confirmed() {
        Ruling::Label(Label::Verified)
    } else {
        Ruling::Accept
    }
}

fn call() -> CallAttempt {
    CallAttempt {
        from: "+15551110000".into(),
        to: "+15552220000".into(),
        headers: vec![Header {
            name: "X-Trunk".into(),
            value: "carrier-a".into(),
        }],
    }
}

fn findings(answer: Confirmation, status: PassportStatus, attestation: Option<&str>) -> Findings {
    Findings {
        provider: ProviderCheck {
            answer,
            provider: Some("carrier-a".into()),
            reason: "test".into(),
        },
        passport: PassportCheck {
            status,
            attestation: attestation.map(str::to_owned),
            reason: "test".into(),
        },
    }
}

#[test]
fn the_annotated_function_stays_an_ordinary_function() {
    let denied = findings(Confirmation::Denied, PassportStatus::Absent, None);
    assert_eq!(
        refuse_denied(call(), denied),
        Ruling::Reject(Rejection {
            status: 608,
            reason: "+15551110000 was not placed by its provider".into(),
        })
    );
    let confirmed = findings(Confirmation::Confirmed, PassportStatus::Absent, None);
    assert_eq!(
        refuse_denied(call(), confirmed),
        Ruling::Label(Label::Verified)
    );
}

#[test]
fn findings_name_the_provider_answer() {
    let confirmed = findings(Confirmation::Confirmed, PassportStatus::NotChecked, None);
    assert!(confirmed.confirmed() && !confirmed.denied());
    let unknown = findings(
        Confirmation::UnknownCaller,
        PassportStatus::NotChecked,
        None,
    );
    assert!(!unknown.confirmed() && !unknown.denied());
}

#[test]
fn only_a_valid_passport_has_an_attestation() {
    let valid = findings(Confirmation::NotAsked, PassportStatus::Valid, Some("A"));
    assert_eq!(valid.attestation(), Some("A"));
    let invalid = findings(Confirmation::NotAsked, PassportStatus::Invalid, Some("A"));
    assert_eq!(invalid.attestation(), None);
}

#[test]
fn ruling_helpers_build_the_wit_cases() {
    assert_eq!(
        Ruling::reject(403, "no"),
        Ruling::Reject(Rejection {
            status: 403,
            reason: "no".into(),
        })
    );
    assert_eq!(Ruling::challenge("pin"), Ruling::Challenge("pin".into()));
}
