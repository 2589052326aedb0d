//! The SIP `Identity` header (RFC 8224 §4.1): a compact PASSporT with
//! `info` (the certificate's URL), `alg` and `ppt` parameters.

use p256::ecdsa::VerifyingKey;

use crate::passport::{self, Call, Header, Verified};
use crate::{Failure, Roots};

/// A parsed `Identity` header, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The compact JWS: `header.payload.signature`, base64url.
    pub token: String,
    /// The `info` parameter: where the signer's certificate is.
    pub info: String,
    pub(crate) header: Header,
}

/// Longest header value taken: a PASSporT is a few hundred bytes.
const MAX_LEN: usize = 8_192;

impl Identity {
    /// Parses a header value; the PASSporT's own header must agree with
    /// the parameters (ES256, ppt shaken) and its `x5u` with `info`.
    pub fn parse(value: &str) -> Result<Self, Failure> {
        if value.len() > MAX_LEN {
            return Err(Failure::Header(format!("longer than {MAX_LEN} bytes")));
        }
        let mut parts = value.trim().split(';');
        let token = parts.next().unwrap_or_default().trim().to_owned();
        let mut info = None;
        let mut alg = None;
        let mut ppt = None;
        for param in parts {
            let (name, val) = param.split_once('=').unwrap_or((param, ""));
            let val = val.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "info" => {
                    let url = val.strip_prefix('<').and_then(|v| v.strip_suffix('>'));
                    let url = url.ok_or_else(|| Failure::Header("info must be <url>".into()))?;
                    info = Some(url.to_owned());
                }
                "alg" => alg = Some(val.to_owned()),
                "ppt" => ppt = Some(val.trim_matches('"').to_owned()),
                _ => {} // other parameters are extensions
            }
        }
        let info = info.ok_or_else(|| Failure::Header("no info parameter".into()))?;
        if let Some(alg) = alg.filter(|a| a != "ES256") {
            return Err(Failure::Algorithm(alg));
        }
        if let Some(ppt) = ppt.filter(|p| p != "shaken") {
            return Err(Failure::Ppt(ppt));
        }
        let header = passport::header(&token)?;
        if header.x5u != info {
            let said = format!("x5u {:?} is not info {info:?}", header.x5u);
            return Err(Failure::Header(said));
        }
        Ok(Self {
            token,
            info,
            header,
        })
    }

    /// The certificate URL to fetch, if it may be fetched (https only).
    pub fn x5u(&self) -> Result<&str, Failure> {
        if !self.info.starts_with("https://") {
            return Err(Failure::NotHttps(self.info.clone()));
        }
        Ok(&self.info)
    }

    /// Verifies the PASSporT with the certificate chain fetched from
    /// [`x5u`](Self::x5u) (PEM, leaf first), trusted only if it chains to
    /// one of `roots`, for `call` at Unix time `now`.
    pub fn verify(
        &self,
        chain: &[u8],
        roots: &Roots,
        call: &Call,
        now: i64,
    ) -> Result<Verified, Failure> {
        let key = crate::chain_key(chain, roots, now)?;
        self.verify_with(&key, call, now)
    }

    /// [`verify`](Self::verify) with the key of a chain checked before
    /// (the edge caches [`chain_key`](crate::chain_key) per x5u).
    pub fn verify_with(
        &self,
        key: &VerifyingKey,
        call: &Call,
        now: i64,
    ) -> Result<Verified, Failure> {
        passport::verify(&self.token, key, call, now)
    }
}
