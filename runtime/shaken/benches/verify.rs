//! Verifications per second on one core, the part this crate does: the
//! Identity header parsed, the PASSporT's signature checked with a
//! certificate key already chained and cached (what the runtime keeps per
//! x5u), its claims checked; beside the chain check a cache miss adds,
//! and signing (what each call a trunk places costs).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard_shaken::{Attestation, Call, Claims, Identity, Roots, Signer, chain_key};

const CA: &[u8] = include_bytes!("../tests/data/ca_ca.pem");
const SP: &[u8] = include_bytes!("../tests/data/sp_sp.pem");
const KEY: &str = include_str!("../tests/data/sp_sp.priv");
const NOW: i64 = 1_796_601_600;

fn verify(c: &mut Criterion) {
    let signer = Signer::from_pem(KEY, "https://cert.example/sp.pem").unwrap();
    let claims = Claims {
        attest: Attestation::A,
        orig: "15550100".into(),
        dest: vec!["15550200".into()],
        iat: NOW,
        origid: "bench".into(),
    };
    let header = signer.sign(&claims);
    let roots = Roots::from_pem(CA).unwrap();
    let key = chain_key(SP, &roots, NOW).unwrap();
    let call = Call {
        from: "+15550100".into(),
        to: "+15550200".into(),
    };
    let mut group = c.benchmark_group("shaken");
    group.bench_function("verify-cached-certificate", |b| {
        b.iter(|| {
            let identity = Identity::parse(black_box(&header)).unwrap();
            black_box(identity.verify_with(&key, &call, NOW).unwrap())
        })
    });
    group.bench_function("chain-to-root", |b| {
        b.iter(|| black_box(chain_key(black_box(SP), &roots, NOW).unwrap()))
    });
    group.bench_function("sign", |b| {
        b.iter(|| black_box(signer.sign(black_box(&claims))))
    });
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
