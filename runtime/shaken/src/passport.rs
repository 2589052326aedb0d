//! PASSporTs (RFC 8225) with the SHAKEN extension (RFC 8588): ES256 over
//! the compact JWS, claims `attest`, `dest`, `iat`, `orig`, `origid`.

use p256::ecdsa::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Failure;
use crate::jws::{self, JwsError};

/// The JOSE header. Fields in lexicographic order: RFC 8225 §9 wants
/// the JSON without whitespace, keys sorted, and serde writes struct
/// fields in declaration order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Header {
    pub alg: String,
    #[serde(default)]
    pub ppt: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
    pub x5u: String,
}

/// The SHAKEN attestation level (RFC 8588 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attestation {
    /// Full: the signer knows the caller and that it may use the number.
    A,
    /// Partial: the signer knows the caller, not its right to the number.
    B,
    /// Gateway: the signer only knows where the call came from.
    C,
}

impl Attestation {
    pub fn as_str(self) -> &'static str {
        match self {
            Attestation::A => "A",
            Attestation::B => "B",
            Attestation::C => "C",
        }
    }

    /// `"A"`, `"B"` or `"C"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "A" => Some(Attestation::A),
            "B" => Some(Attestation::B),
            "C" => Some(Attestation::C),
            _ => None,
        }
    }
}

/// The call a PASSporT must be about: the caller's and the called
/// number, as the From and To (or P-Asserted-Identity) users say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub from: String,
    pub to: String,
}

/// What a PASSporT that verified says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub attest: Attestation,
    pub orig: String,
    pub dest: Vec<String>,
    pub iat: i64,
    pub origid: Option<String>,
}

/// What a signer asserts about a call it places.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub attest: Attestation,
    pub orig: String,
    pub dest: Vec<String>,
    /// Unix seconds.
    pub iat: i64,
    /// The signer's opaque id of where the call came from (RFC 8588).
    pub origid: String,
}

/// The JOSE header of `token`, checked: ES256, ppt shaken, an x5u.
pub(crate) fn header(token: &str) -> Result<Header, Failure> {
    let header: Header = jws::header(token).map_err(token_failure)?;
    if header.alg != "ES256" {
        return Err(Failure::Algorithm(header.alg));
    }
    match header.ppt.as_deref() {
        Some("shaken") => {}
        other => return Err(Failure::Ppt(other.unwrap_or_default().to_owned())),
    }
    if let Some(typ) = header.typ.as_deref().filter(|t| *t != "passport") {
        return Err(Failure::Token(format!("typ is {typ:?}, not \"passport\"")));
    }
    Ok(header)
}

fn token_failure(e: JwsError) -> Failure {
    match e {
        JwsError::Signature => Failure::Signature,
        other => Failure::Token(other.to_string()),
    }
}

/// Checks `token`'s signature with `key`, then its claims against `call`
/// at Unix time `now`. The first failure found is the answer.
pub(crate) fn verify(
    token: &str,
    key: &VerifyingKey,
    call: &Call,
    now: i64,
) -> Result<Verified, Failure> {
    let claims: Value = jws::verify(token, key).map_err(token_failure)?;
    let field = |name: &str| claims.get(name).filter(|v| !v.is_null());
    let (Some(orig), Some(dest)) = (field("orig"), field("dest")) else {
        return Err(Failure::Token("orig and dest are required".into()));
    };
    let (Some(orig), Some(dest)) = (orig.as_object(), dest.as_object()) else {
        let kind = |v: &Value| match v {
            Value::String(_) => "a string",
            Value::Object(_) => "an object",
            _ => "neither",
        };
        return Err(Failure::NotObjects(format!(
            "orig {}, dest {}",
            kind(orig),
            kind(dest)
        )));
    };
    let orig = (orig.get("tn").and_then(Value::as_str))
        .ok_or_else(|| Failure::Token("orig has no tn".into()))?
        .to_owned();
    let dest: Vec<String> = (dest.get("tn").and_then(Value::as_array))
        .ok_or_else(|| Failure::Token("dest has no tn array".into()))?
        .iter()
        .filter_map(|tn| tn.as_str().map(str::to_owned))
        .collect();
    let attest = (field("attest").and_then(Value::as_str)).unwrap_or_default();
    let attest =
        Attestation::parse(attest).ok_or_else(|| Failure::Attestation(attest.to_owned()))?;
    let iat = (field("iat").and_then(Value::as_i64))
        .ok_or_else(|| Failure::Token("iat is not a number".into()))?;
    crate::fresh(iat, now).map_err(|age| Failure::Stale { iat, age })?;
    if !same_number(&orig, &call.from) {
        let call = call.from.clone();
        return Err(Failure::OrigMismatch {
            claimed: orig,
            call,
        });
    }
    if !dest.iter().any(|tn| same_number(tn, &call.to)) {
        let call = call.to.clone();
        return Err(Failure::DestMismatch {
            claimed: dest,
            call,
        });
    }
    let origid = field("origid").and_then(Value::as_str).map(str::to_owned);
    Ok(Verified {
        attest,
        orig,
        dest,
        iat,
        origid,
    })
}

/// Whether two telephone numbers have the same digits (`+1 (555)
/// 010-0` and `15550100` agree); a side without digits (`sip:alice@…`)
/// agrees with nothing.
fn same_number(a: &str, b: &str) -> bool {
    let digits = |tn: &str| tn.chars().filter(char::is_ascii_digit).collect::<String>();
    let (a, b) = (digits(a), digits(b));
    !a.is_empty() && a == b
}

/// Signs the PASSporTs of the calls an account places.
pub struct Signer {
    key: SigningKey,
    x5u: String,
}

#[derive(Serialize)]
struct Tn<'a, T> {
    tn: &'a T,
}

/// The claims as signed, keys in lexicographic order.
#[derive(Serialize)]
struct Payload<'a> {
    attest: &'a str,
    dest: Tn<'a, Vec<String>>,
    iat: i64,
    orig: Tn<'a, String>,
    origid: &'a str,
}

impl Signer {
    /// The account's private key (SEC1 `EC PRIVATE KEY` or PKCS#8 PEM,
    /// P-256) and the https URL of its certificate.
    pub fn from_pem(key: &str, x5u: &str) -> Result<Self, String> {
        let key = jws::signing_key_from_pem(key)
            .map_err(|_| "the SHAKEN key is not a P-256 private key in PEM".to_owned())?;
        if !x5u.starts_with("https://") {
            return Err(format!("the certificate URL {x5u:?} is not https"));
        }
        Ok(Self {
            key,
            x5u: x5u.to_owned(),
        })
    }

    /// The `Identity` header value for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header {
            alg: "ES256".into(),
            ppt: Some("shaken".into()),
            typ: Some("passport".into()),
            x5u: self.x5u.clone(),
        };
        let payload = Payload {
            attest: claims.attest.as_str(),
            dest: Tn { tn: &claims.dest },
            iat: claims.iat,
            orig: Tn { tn: &claims.orig },
            origid: &claims.origid,
        };
        let token = jws::sign(&header, &payload, &self.key);
        format!("{token};info=<{}>;alg=ES256;ppt=shaken", self.x5u)
    }
}
