//! The whole inbound check of a caller, from what a caller controls: the
//! Identity header and the numbers it is checked against go through the
//! PASSporT check (as the edge runs it), the findings through both
//! policy contracts' conversions, the default policy and `decide` (what
//! the call then does); and a decision log's `verified` entry, which
//! `switchyard screen` reads, parses or is refused. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::contract::screening::{
    self, CallAttempt, Confirmation, EvidencePassport, Findings, PassportCheck, PassportStatus,
    ProviderCheck,
};
use switchyard::router::LogEntry;
use switchyard_shaken::{Call, Identity, Roots};

const CA: &[u8] = include_bytes!("../../runtime/shaken/tests/data/ca_ca.pem");
const SP: &[u8] = include_bytes!("../../runtime/shaken/tests/data/sp_sp.pem");
const ANSWERS: [Confirmation; 5] = [
    Confirmation::NotAsked,
    Confirmation::UnknownCaller,
    Confirmation::Confirmed,
    Confirmation::Denied,
    Confirmation::Unreachable,
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Header, caller and callee, split where the caller would put them.
    let mut parts = text.splitn(3, '\n');
    let (header, from, to) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let roots = Roots::from_pem(CA).unwrap();
    let call = Call {
        from: from.into(),
        to: to.into(),
    };
    let (status, attestation, reason, kind) = match Identity::parse(header) {
        Ok(identity) => match identity.verify(SP, &roots, &call, 1_796_601_600) {
            Ok(v) => (PassportStatus::Valid, Some(v.attest.as_str().to_owned()), String::new(), EvidencePassport::Valid),
            Err(e) => (PassportStatus::Invalid, None, e.to_string(), EvidencePassport::Stale),
        },
        Err(e) => (PassportStatus::Invalid, None, e.to_string(), EvidencePassport::InvalidSignature),
    };
    let answer = ANSWERS[data.first().map_or(0, |b| usize::from(*b) % ANSWERS.len())];
    let findings = Findings {
        provider: ProviderCheck {
            answer,
            provider: Some(from.into()),
            reason: reason.clone(),
        },
        passport: PassportCheck {
            status,
            attestation,
            reason,
        },
    };
    let _ = screening::evidence(&findings, kind);
    let ruling = screening::default_ruling(&findings);
    let attempt = CallAttempt {
        from: from.into(),
        to: to.into(),
        headers: Vec::new(),
    };
    let screened = switchyard::screen::decide(attempt, findings, Ok(ruling), "fuzz".into());
    let _ = serde_json::to_string(&screened.screening);
    let _ = serde_json::from_slice::<Vec<LogEntry>>(data);
});
