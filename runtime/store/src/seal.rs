//! Secrets the runtime must read back, sealed at rest: AES-256-GCM under
//! the operator's sealing key, which is never in a database.
//!
//! ```text
//!   sealed = nonce (12 random bytes) ‖ ciphertext ‖ tag (16)
//!   aad    = what the secret belongs to (a key id), so a sealed value
//!            copied onto another row does not open
//! ```
//!
//! The key comes from the operator: `SWITCHYARD_SEALING_KEY` (64 hex
//! digits) or, on an embedded install, a file `sealing.key` (mode 0600)
//! beside the stores, made at first start. A database file alone (a
//! backup, a copied disk image) then reveals no secret.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// The environment variable that holds the sealing key (64 hex digits).
pub const KEY_ENV: &str = "SWITCHYARD_SEALING_KEY";

/// Seals and opens secrets with one key. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    key: std::sync::Arc<LessSafeKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// A sealed value that does not open: another key, another owner, or
/// damaged bytes (AES-GCM cannot tell which).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a sealed secret does not open with this runtime's sealing key")]
pub struct Unsealable;

impl Sealer {
    pub fn new(key: [u8; 32]) -> Self {
        let key = UnboundKey::new(&AES_256_GCM, &key).expect("AES-256 takes a 32-byte key");
        Self {
            key: std::sync::Arc::new(LessSafeKey::new(key)),
        }
    }

    /// A key given as 64 hex digits.
    pub fn from_hex(hex_key: &str) -> anyhow::Result<Self> {
        let bytes = hex::decode(hex_key.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .context("a sealing key is 64 hex digits (32 bytes)")?;
        Ok(Self::new(bytes))
    }

    /// The key in `path`, made (32 random bytes, mode 0600) when the file
    /// does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_hex(&text)
                .with_context(|| format!("reading the sealing key {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options
                    .open(path)
                    .with_context(|| format!("creating the sealing key {}", path.display()))?;
                writeln!(file, "{}", hex::encode(key))
                    .and_then(|_| file.sync_all())
                    .with_context(|| format!("writing the sealing key {}", path.display()))?;
                Ok(Self::new(key))
            }
            Err(e) => Err(e).with_context(|| format!("reading the sealing key {}", path.display())),
        }
    }

    /// `secret` sealed for `owner`.
    pub fn seal(&self, secret: &[u8], owner: &str) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut sealed = nonce.to_vec();
        let mut body = secret.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner.as_bytes()),
                &mut body,
            )
            .expect("AES-GCM seals any secret shorter than 64 GiB");
        sealed.extend_from_slice(&body);
        sealed
    }

    /// The secret `sealed` for `owner`.
    pub fn open(&self, sealed: &[u8], owner: &str) -> Result<Vec<u8>, Unsealable> {
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN).ok_or(Unsealable)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unsealable)?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(owner.as_bytes()), &mut body)
            .map_err(|_| Unsealable)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_owner() {
        let sealer = Sealer::new([7; 32]);
        let sealed = sealer.seal(b"s3cret", "SK1");
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(sealer.open(&sealed, "SK1").unwrap(), b"s3cret");
        assert_eq!(
            sealer.open(&sealed, "SK2"),
            Err(Unsealable),
            "another owner"
        );
        assert_eq!(Sealer::new([8; 32]).open(&sealed, "SK1"), Err(Unsealable));
        let mut damaged = sealed.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert_eq!(sealer.open(&damaged, "SK1"), Err(Unsealable));
        assert_eq!(sealer.open(&sealed[..5], "SK1"), Err(Unsealable));
        assert_ne!(
            sealer.seal(b"s3cret", "SK1"),
            sealed,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn the_key_file_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealing.key");
        let sealed = Sealer::load_or_create(&path).unwrap().seal(b"x", "o");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = Sealer::load_or_create(&path).unwrap();
        assert_eq!(again.open(&sealed, "o").unwrap(), b"x");
        std::fs::write(&path, "not hex").unwrap();
        let err = Sealer::load_or_create(&path).unwrap_err();
        assert!(format!("{err:#}").contains("64 hex digits"), "{err:#}");
    }
}
