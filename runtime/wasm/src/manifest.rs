//! What a component says about itself beyond its WIT: the
//! `switchyard-handler` custom section, written by the SDK's
//! `#[call_handler(...)]` arguments.
//!
//! A custom section rather than a WIT export, so a component built without
//! it (every 0.1 guest, any other toolchain) keeps today's behaviour and the
//! contract does not change. The section holds `key=value` lines; a crate
//! graph that links the section twice concatenates them, so lines repeat.
//!
//! Keys:
//! * `notices=off` — the handler takes no informational events
//!   (`status-changed`, `hangup`): the runtime does not instantiate it to
//!   deliver them. Default `on`.

use wasmparser::{Parser, Payload};

use crate::component::LoadError;

/// The custom section's name (in the component or any module nested in it).
pub const SECTION: &str = "switchyard-handler";

/// A component's declarations, defaults where it declares nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest {
    /// Whether the handler hears `status-changed` and `hangup`.
    pub notices: bool,
}

impl Default for Manifest {
    fn default() -> Self {
        Self { notices: true }
    }
}

impl Manifest {
    /// Reads every `switchyard-handler` section of `bytes`. Called after
    /// the component compiled, so the binary is well formed; an unknown key
    /// or value is refused so a typo is not silently ignored.
    pub fn read(bytes: &[u8]) -> Result<Self, LoadError> {
        let mut manifest = Self::default();
        for payload in Parser::new(0).parse_all(bytes) {
            let Ok(Payload::CustomSection(section)) = payload else {
                continue;
            };
            if section.name() != SECTION {
                continue;
            }
            let text = std::str::from_utf8(section.data()).map_err(|_| refused("not UTF-8"))?;
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                match line.split_once('=') {
                    Some(("notices", "on")) => manifest.notices = true,
                    Some(("notices", "off")) => manifest.notices = false,
                    _ => return Err(refused(&format!("unknown line {line:?}"))),
                }
            }
        }
        Ok(manifest)
    }
}

fn refused(reason: &str) -> LoadError {
    LoadError::Manifest {
        reason: format!(
            "custom section {SECTION}: {reason} (this runtime knows notices=on|off; \
             the SDK's #[call_handler(notices = false)] writes it)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component_with(section: &[u8]) -> Vec<u8> {
        let name = SECTION.as_bytes();
        let mut body = vec![name.len() as u8];
        body.extend_from_slice(name);
        body.extend_from_slice(section);
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        bytes.push(0); // custom section id
        bytes.push(body.len() as u8);
        bytes.extend(body);
        bytes
    }

    #[test]
    fn without_the_section_a_handler_hears_notices() {
        let bytes = wat::parse_str("(component)").unwrap();
        assert_eq!(Manifest::read(&bytes).unwrap(), Manifest { notices: true });
    }

    #[test]
    fn notices_off_is_read_even_when_repeated() {
        let bytes = component_with(b"notices=off\nnotices=off\n");
        assert_eq!(Manifest::read(&bytes).unwrap(), Manifest { notices: false });
    }

    #[test]
    fn an_unknown_line_is_refused_with_what_is_known() {
        let err = Manifest::read(&component_with(b"notice=off\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("notice=off") && err.contains("notices=on|off"),
            "{err}"
        );
    }
}
