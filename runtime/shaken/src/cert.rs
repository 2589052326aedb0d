//! Certificates: the signer's chain (fetched from `x5u`, PEM, leaf
//! first) must lead to one of the operator's SHAKEN roots, each link's
//! ECDSA P-256 signature checked and each certificate valid now.

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use x509_cert::Certificate;
use x509_cert::der::Encode as _;
use x509_cert::der::oid::ObjectIdentifier;

use crate::Failure;

/// ecdsa-with-SHA256 (RFC 5758).
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// Links followed from the leaf before giving up.
const MAX_DEPTH: usize = 4;
/// Largest chain taken (a few certificates of a few hundred bytes).
const MAX_CHAIN: usize = 64 * 1024;

/// The trusted SHAKEN roots (the operator's configured CA list).
#[derive(Debug, Clone, Default)]
pub struct Roots {
    certs: Vec<Certificate>,
}

impl Roots {
    /// Every certificate in `pem`.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let certs = load(pem).map_err(|e| format!("SHAKEN roots: {e}"))?;
        Ok(Self { certs })
    }

    pub fn len(&self) -> usize {
        self.certs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    fn issuer_of(&self, cert: &Certificate) -> Option<&Certificate> {
        (self.certs.iter()).find(|root| root.tbs_certificate.subject == cert.tbs_certificate.issuer)
    }
}

/// The leaf's public key, if `chain` (PEM, leaf first) leads to one of
/// `roots` with every signature good and every certificate valid at Unix
/// time `now`.
pub fn chain_key(chain: &[u8], roots: &Roots, now: i64) -> Result<VerifyingKey, Failure> {
    if chain.len() > MAX_CHAIN {
        return Err(Failure::Certificate(format!(
            "longer than {MAX_CHAIN} bytes"
        )));
    }
    let chain = load(chain).map_err(Failure::Certificate)?;
    let Some(leaf) = chain.first() else {
        return Err(Failure::Certificate("no certificate in the PEM".into()));
    };
    let mut cert = leaf;
    for _ in 0..MAX_DEPTH {
        valid_at(cert, now)?;
        if let Some(root) = roots.issuer_of(cert) {
            signed_by(cert, root)?;
            valid_at(root, now)?;
            return key_of(leaf);
        }
        let issuer = (chain.iter())
            .find(|c| c.tbs_certificate.subject == cert.tbs_certificate.issuer && *c != cert);
        let Some(issuer) = issuer else {
            return Err(Failure::Untrusted(format!(
                "nothing trusted issued {:?}",
                cert.tbs_certificate.issuer.to_string()
            )));
        };
        signed_by(cert, issuer)?;
        cert = issuer;
    }
    Err(Failure::Untrusted(format!(
        "no root within {MAX_DEPTH} links"
    )))
}

/// Every certificate of a PEM bundle, at least one. x509-cert 0.2.5's
/// `load_pem_chain` underflows on input that is empty once its trailing
/// line breaks are gone (a panic in debug builds, found by this crate's
/// junk test): such input is refused before it gets there.
fn load(pem: &[u8]) -> Result<Vec<Certificate>, String> {
    if pem.iter().all(|b| matches!(b, b'\r' | b'\n')) {
        return Err("no certificate in the PEM".into());
    }
    let certs =
        Certificate::load_pem_chain(pem).map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the PEM".into());
    }
    Ok(certs)
}

fn name(cert: &Certificate) -> String {
    cert.tbs_certificate.subject.to_string()
}

fn key_of(cert: &Certificate) -> Result<VerifyingKey, Failure> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
        .map_err(|_| Failure::Certificate(format!("{:?} has no P-256 key", name(cert))))
}

fn signed_by(cert: &Certificate, issuer: &Certificate) -> Result<(), Failure> {
    if cert.signature_algorithm.oid != ECDSA_SHA256 {
        let said = format!(
            "{:?} is signed with {}, not ecdsa-with-SHA256",
            name(cert),
            cert.signature_algorithm.oid
        );
        return Err(Failure::Certificate(said));
    }
    let tbs = (cert.tbs_certificate.to_der())
        .map_err(|e| Failure::Certificate(format!("{:?}: {e}", name(cert))))?;
    let bad = || {
        Failure::Untrusted(format!(
            "{:?} is not signed by {:?}",
            name(cert),
            name(issuer)
        ))
    };
    let sig = Signature::from_der(cert.signature.raw_bytes()).map_err(|_| bad())?;
    key_of(issuer)?.verify(&tbs, &sig).map_err(|_| bad())
}

fn valid_at(cert: &Certificate, now: i64) -> Result<(), Failure> {
    let validity = &cert.tbs_certificate.validity;
    let secs = |t: x509_cert::time::Time| t.to_unix_duration().as_secs() as i64;
    let (from, until) = (secs(validity.not_before), secs(validity.not_after));
    if now < from || now > until {
        let said = format!(
            "{:?} is valid from {from} to {until} (Unix), not at {now}",
            name(cert)
        );
        return Err(Failure::Certificate(said));
    }
    Ok(())
}
