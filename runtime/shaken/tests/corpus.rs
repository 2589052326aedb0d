//! Verification against the SHAKEN test material in `tests/data` (from
//! libstirshaken, see its README): the corpus PASSporT's quirks, and
//! PASSporTs this crate signs with the corpus key, each case a reason.

use switchyard_shaken::{
    Attestation, Call, Check, Claims, Failure, Identity, Roots, Signer, chain_key,
};

const CA: &[u8] = include_bytes!("data/ca_ca.pem");
const SP: &[u8] = include_bytes!("data/sp_sp.pem");
const WRONG_SP: &[u8] = include_bytes!("data/sp_wrongsp.pem");
const KEY: &str = include_str!("data/sp_sp.priv");
const CORPUS: &str = include_str!("data/sp_passport.txt");
const X5U: &str = "https://cert.example/sp.pem";
/// 2026-12-07, inside every certificate's validity.
const NOW: i64 = 1_796_601_600;

fn roots() -> Roots {
    Roots::from_pem(CA).unwrap()
}

fn call() -> Call {
    Call {
        from: "+15550100".into(),
        to: "+15550200".into(),
    }
}

fn claims() -> Claims {
    Claims {
        attest: Attestation::A,
        orig: "15550100".into(),
        dest: vec!["15550200".into()],
        iat: NOW,
        origid: "de305d54-75b4-431b-adb2-eb6b9e546014".into(),
    }
}

fn signed(claims: &Claims) -> Identity {
    let header = Signer::from_pem(KEY, X5U).unwrap().sign(claims);
    Identity::parse(&header).unwrap()
}

fn verify(
    identity: &Identity,
    chain: &[u8],
    call: &Call,
    now: i64,
) -> Result<Attestation, Failure> {
    identity
        .verify(chain, &roots(), call, now)
        .map(|v| v.attest)
}

#[test]
fn a_passport_signed_here_verifies_with_the_attestation_it_carries() {
    for attest in [Attestation::A, Attestation::B, Attestation::C] {
        let identity = signed(&Claims { attest, ..claims() });
        assert_eq!(identity.x5u(), Ok(X5U));
        assert_eq!(verify(&identity, SP, &call(), NOW + 5), Ok(attest));
    }
}

#[test]
fn each_bad_passport_fails_with_its_reason() {
    let good = signed(&claims());
    // Signed by another key than the certificate's.
    let other = p256::SecretKey::from_slice(&[7; 32]).unwrap();
    let other = other.to_sec1_pem(Default::default()).unwrap();
    let header = Signer::from_pem(&other, X5U).unwrap().sign(&claims());
    let err = verify(&Identity::parse(&header).unwrap(), SP, &call(), NOW).unwrap_err();
    assert_eq!(err, Failure::Signature);
    // Another SP's certificate, from a CA not trusted here.
    let err = verify(&good, WRONG_SP, &call(), NOW).unwrap_err();
    assert!(matches!(err, Failure::Untrusted(_)), "{err}");

    // Tampered payload: the caller swapped after signing.
    let mut parts: Vec<String> = good.token.split('.').map(str::to_owned).collect();
    let forged = claims_b64(&Claims {
        orig: "15559999".into(),
        ..claims()
    });
    parts[1] = forged;
    let tampered = format!("{};info=<{X5U}>;alg=ES256;ppt=shaken", parts.join("."));
    let err = verify(&Identity::parse(&tampered).unwrap(), SP, &call(), NOW).unwrap_err();
    assert_eq!(err, Failure::Signature);
    assert_eq!(err.check(), Check::InvalidSignature);

    // Stale: more than 60 s either way.
    let err = verify(&good, SP, &call(), NOW + 61).unwrap_err();
    assert_eq!(err, Failure::Stale { iat: NOW, age: 61 });
    assert_eq!(err.check(), Check::Stale);
    assert!(
        verify(&good, SP, &call(), NOW - 61).is_err(),
        "from the future"
    );

    // orig / dest not the call's.
    let other = Call {
        from: "+15557777".into(),
        ..call()
    };
    let err = verify(&good, SP, &other, NOW).unwrap_err();
    assert!(matches!(err, Failure::OrigMismatch { .. }), "{err}");
    assert_eq!(err.check(), Check::NumberMismatch);
    // A caller without a number matches no orig, not even a digit-less one.
    let named = Claims {
        orig: "alice".into(),
        ..claims()
    };
    let alice = Call {
        from: "alice".into(),
        ..call()
    };
    let err = verify(&signed(&named), SP, &alice, NOW).unwrap_err();
    assert!(matches!(err, Failure::OrigMismatch { .. }), "{err}");
    let other = Call {
        to: "+15558888".into(),
        ..call()
    };
    assert!(matches!(
        verify(&good, SP, &other, NOW),
        Err(Failure::DestMismatch { .. })
    ));

    // A certificate not chaining to the root: the CA's own (self-signed,
    // not a root here) as the leaf, against an empty-of-it trust list.
    let err = good
        .verify(SP, &Roots::from_pem(SP).unwrap(), &call(), NOW)
        .unwrap_err();
    assert!(matches!(err, Failure::Untrusted(_)), "{err}");
}

#[test]
fn x5u_must_be_https_and_match_info() {
    let header = Signer::from_pem(KEY, X5U).unwrap().sign(&claims());
    let http = header.replace("https://cert.example", "http://cert.example");
    // The header's info and the PASSporT's x5u now differ.
    assert!(matches!(Identity::parse(&http), Err(Failure::Header(_))));
    assert!(Signer::from_pem(KEY, "http://cert.example/sp.pem").is_err());
}

/// The corpus PASSporT: signed with the SP key (its signature is good),
/// but orig/dest are strings, iat is from 2020 and x5u is plain http.
#[test]
fn the_corpus_passport_is_well_signed_but_not_conformant() {
    let line = CORPUS
        .lines()
        .skip_while(|l| !l.starts_with("SIP Identity Header"))
        .nth(1)
        .unwrap();
    let identity = Identity::parse(line).unwrap();
    assert_eq!(
        identity.x5u(),
        Err(Failure::NotHttps(
            "http://shaken.signalwire.cloud/sp.pem".into()
        ))
    );
    let call = Call {
        from: "01256789999".into(),
        to: "01256500600".into(),
    };
    let err = verify(&identity, SP, &call, 1_603_458_131).unwrap_err();
    assert!(matches!(err, Failure::NotObjects(_)), "{err}");
    // Its certificate chains to the corpus CA.
    assert!(chain_key(SP, &roots(), NOW).is_ok());
    assert!(
        chain_key(SP, &roots(), 1_500_000_000).is_err(),
        "before it was valid"
    );
}

#[test]
fn junk_is_refused_never_a_panic() {
    let junk = [
        "",
        ";",
        "a.b.c",
        "a.b.c;info=",
        "a.b.c;info=<x>",
        "...;info=<https://x>",
        "eyJhbGciOiJFUzI1NiJ9.e30.AA;info=<https://x>",
        "\u{0}\u{ffff};info=<https://x>;alg=RS256",
    ];
    for value in junk {
        assert!(Identity::parse(value).is_err(), "{value:?}");
    }
    let identity = signed(&claims());
    for chain in [
        &b""[..],
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        CA,
    ] {
        assert!(verify(&identity, chain, &call(), NOW).is_err());
    }
}

fn claims_b64(claims: &Claims) -> String {
    // The middle part of a token signed for `claims`.
    let header = Signer::from_pem(KEY, X5U).unwrap().sign(claims);
    header.split('.').nth(1).unwrap().to_owned()
}
