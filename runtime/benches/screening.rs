//! `screening`: caller verifications per second on one core (issue 17):
//! what the edge does per incoming call once the certificate is cached,
//! side by side in one run:
//!
//! * passport — the Identity header parsed and its PASSporT checked
//!   (signature with the cached certificate key, iat, orig/dest);
//! * default — that, then the default policy (native);
//! * guest — that, then the sample policy guest (`guests/screen`): a fresh
//!   instance, `screen`, the ruling lifted back.
//!
//! Directory lookups and provider confirmations are network round trips,
//! measured by `benches/screening/run` (post-dial delay), not here. Run:
//! `bash scripts/build-guests && cargo bench -p switchyard --bench screening`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard::contract::screening::{
    self, CallAttempt, Case, Confirmation, EvidencePassport, Findings, PassportCheck,
    PassportStatus, ProviderCheck,
};
use switchyard::wasm::TenantScope;

mod common;
use switchyard_shaken::{Attestation, Call, Claims, Identity, Roots, Signer, chain_key};

const CA: &[u8] = include_bytes!("../shaken/tests/data/ca_ca.pem");
const SP: &[u8] = include_bytes!("../shaken/tests/data/sp_sp.pem");
const KEY: &str = include_str!("../shaken/tests/data/sp_sp.priv");
const NOW: i64 = 1_796_601_600;

/// The findings of a call whose PASSporT checked out, as the edge builds them.
fn case(attest: Attestation) -> Case {
    let findings = Findings {
        provider: ProviderCheck {
            answer: Confirmation::NotAsked,
            provider: None,
            reason: "this runtime asks no directory ([directory] url)".into(),
        },
        passport: PassportCheck {
            status: PassportStatus::Valid,
            attestation: Some(attest.as_str().into()),
            reason: format!("attestation {}", attest.as_str()),
        },
    };
    Case {
        call: CallAttempt {
            from: "+15550100".into(),
            to: "+15550200".into(),
            headers: Vec::new(),
        },
        evidence: screening::evidence(&findings, EvidencePassport::Valid),
        findings,
    }
}

fn screening(c: &mut Criterion) {
    let signer = Signer::from_pem(KEY, "https://cert.example/sp.pem").unwrap();
    let claims = Claims {
        attest: Attestation::A,
        orig: "15550100".into(),
        dest: vec!["15550200".into()],
        iat: NOW,
        origid: "bench".into(),
    };
    let header = signer.sign(&claims);
    let key = chain_key(SP, &Roots::from_pem(CA).unwrap(), NOW).unwrap();
    let call = Call {
        from: "+15550100".into(),
        to: "+15550200".into(),
    };
    let check = || {
        let identity = Identity::parse(black_box(&header)).unwrap();
        identity.verify_with(&key, &call, NOW).unwrap().attest
    };

    let (host, bytes, _cache) = common::host_and_guest("screen");
    let component = host.load_policy(&bytes).expect("the sample policy loads");
    let policy = host
        .policy(&component, TenantScope::new("bench"))
        .expect("tenant limits fit");
    // One core: the policy runs on the calling thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ruling = runtime.block_on(policy.screen("bench", &case(Attestation::A)));
    assert_eq!(
        ruling,
        Ok(Ok(screening::Ruling::Label(screening::Label::Verified)))
    );

    let mut group = c.benchmark_group("screening");
    group.bench_function("passport", |b| b.iter(|| black_box(check())));
    group.bench_function("passport+default-policy", |b| {
        b.iter(|| black_box(screening::default_ruling(&case(check()).findings)))
    });
    group.bench_function("passport+policy-guest", |b| {
        b.iter(|| {
            let case = case(check());
            // A guest preempted past its deadline on a loaded machine
            // fails (the default would rule); it is timed all the same.
            black_box(runtime.block_on(policy.screen("bench", &case)).ok())
        })
    });
    group.bench_function("policy-guest", |b| {
        let case = case(Attestation::A);
        b.iter(|| black_box(runtime.block_on(policy.screen("bench", &case)).ok()))
    });
    group.finish();
}

criterion_group!(benches, screening);
criterion_main!(benches);
