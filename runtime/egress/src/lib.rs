//! The egress policy: which addresses the runtime may reach for a tenant.
//!
//! Tenants name the addresses the runtime connects to — a dial target, the
//! `Refer-To` of a transfer, a REST call's `to`, a prompt URL, a status
//! callback URL — so without a rule a tenant could make the runtime reach
//! into the operator's own networks (`127.0.0.1`, `10.x`, the cloud
//! metadata address). Every such address is decided here, by one function:
//!
//! ```text
//!   dial / REFER / POST /v1/calls ─┐  (sip::endpoint, after the URI's host
//!   trunk of the tenant ───────────┤   is known; a trunk match is Trunk)
//!   prompt URL / status callback ──┤  (media::fetch: the URL's literal host,
//!   x5u certificate; later webhooks┤   then every address DNS returns)
//!   directory, providers' confirm ─┘  (directory: the same resolver)
//!                                  ▼
//!        EgressPolicy::check(purpose, ip) ─► Ok | EgressError::NotPublic
//!                                              (names the config key)
//! ```
//!
//! **The rule.** A public unicast address ([`is_public`]) is always allowed.
//! Loopback, private, link-local and other non-public addresses (and IPv6
//! forms embedding them) are refused unless the policy allows them for the
//! purpose, which the operator does with the purpose's [`Setting`]. The
//! tenant's trunks ([`Purpose::Trunk`]) are always allowed: the operator
//! configured them.
//!
//! **Adding a purpose** (the x5u certificate fetch of STIR/SHAKEN, the
//! notification webhooks): add a [`Purpose`] variant and its [`Setting`],
//! map the setting in `serve::config`, and build the HTTP client with
//! `media::fetch::CheckedResolver::new(policy, Purpose::…)` and check each
//! URL with `media::fetch::check_url(url, policy, Purpose::…)`; the resolver
//! then applies this policy to every address a name resolves to.
//!
//! This module is sans-IO and depends only on `std`: it classifies
//! addresses it is given and never resolves or connects.

// Tests start virtual clocks from `Instant::now()`; the code itself never
// reads a clock or the OS RNG (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why the runtime reaches an address for a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    /// A guest's `dial` to a `sip:` URI outside the tenant's domains.
    Dial,
    /// The `Refer-To` target of a REFER from a bridged callee.
    Transfer,
    /// `POST /v1/calls` to a `sip:` URI.
    OutboundCall,
    /// One of the tenant's configured trunks: always allowed.
    Trunk,
    /// A `play` verb's prompt URL (and each redirect).
    PromptFetch,
    /// A number's status callback URL.
    StatusCallback,
    /// The `x5u` certificate of a caller's STIR/SHAKEN Identity header.
    CertificateFetch,
    /// The call placement directory (`[directory] url`): lookups, and
    /// publishing this provider's entry.
    DirectoryLookup,
    /// A provider's confirmation URL, as the directory gives it: asking
    /// whether it placed a call.
    Confirmation,
}

impl Purpose {
    /// Every purpose, for tests and listings.
    pub const ALL: [Purpose; 9] = [
        Purpose::Dial,
        Purpose::Transfer,
        Purpose::OutboundCall,
        Purpose::Trunk,
        Purpose::PromptFetch,
        Purpose::StatusCallback,
        Purpose::CertificateFetch,
        Purpose::DirectoryLookup,
        Purpose::Confirmation,
    ];

    /// The configuration key that lets this purpose reach non-public
    /// addresses; none for trunks, which are always allowed.
    pub fn setting(self) -> Option<Setting> {
        match self {
            Purpose::Dial | Purpose::Transfer | Purpose::OutboundCall => {
                Some(Setting::PrivateDestinations)
            }
            Purpose::Trunk => None,
            Purpose::PromptFetch => Some(Setting::FetchPrivate),
            Purpose::StatusCallback => Some(Setting::CallbacksPrivate),
            Purpose::CertificateFetch => Some(Setting::ShakenPrivate),
            Purpose::DirectoryLookup | Purpose::Confirmation => Some(Setting::DirectoryPrivate),
        }
    }

    /// Plural noun for messages ("transfers to ... are refused").
    fn noun(self) -> &'static str {
        match self {
            Purpose::Dial => "dials",
            Purpose::Transfer => "transfers",
            Purpose::OutboundCall => "outbound calls",
            Purpose::Trunk => "trunk calls",
            Purpose::PromptFetch => "prompt downloads",
            Purpose::StatusCallback => "status callbacks",
            Purpose::CertificateFetch => "certificate fetches",
            Purpose::DirectoryLookup => "directory requests",
            Purpose::Confirmation => "confirmation requests",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

/// An operator's configuration key that opens non-public addresses to a
/// group of purposes. Each is a boolean, false by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Setting {
    /// `[sip] private_destinations`: dials, transfers and REST calls to
    /// `sip:` URIs.
    PrivateDestinations,
    /// `[media] fetch_private`: prompt URLs.
    FetchPrivate,
    /// `[api] callbacks_private`: status callbacks.
    CallbacksPrivate,
    /// `[shaken] fetch_private`: STIR/SHAKEN certificate (x5u) fetches.
    ShakenPrivate,
    /// `[directory] private`: the call placement directory and the
    /// providers' confirmation URLs.
    DirectoryPrivate,
}

impl Setting {
    pub const ALL: [Setting; 5] = [
        Setting::PrivateDestinations,
        Setting::FetchPrivate,
        Setting::CallbacksPrivate,
        Setting::ShakenPrivate,
        Setting::DirectoryPrivate,
    ];

    /// The config section and key, e.g. `("sip", "private_destinations")`.
    pub fn key(self) -> (&'static str, &'static str) {
        match self {
            Setting::PrivateDestinations => ("sip", "private_destinations"),
            Setting::FetchPrivate => ("media", "fetch_private"),
            Setting::CallbacksPrivate => ("api", "callbacks_private"),
            Setting::ShakenPrivate => ("shaken", "fetch_private"),
            Setting::DirectoryPrivate => ("directory", "private"),
        }
    }

    /// The purposes this setting opens.
    pub fn purposes(self) -> impl Iterator<Item = Purpose> {
        Purpose::ALL
            .into_iter()
            .filter(move |p| p.setting() == Some(self))
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (section, key) = self.key();
        write!(f, "[{section}] {key}")
    }
}

/// Which purposes may reach non-public addresses. The default,
/// [`EgressPolicy::public_only`], allows none but trunks.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct EgressPolicy {
    /// One bit per [`Purpose`] allowed to reach non-public addresses.
    private: u16,
}

impl EgressPolicy {
    /// Only public addresses (and the tenant's trunks): the default.
    pub const fn public_only() -> Self {
        Self { private: 0 }
    }

    /// Every purpose may reach every address: for tests and closed set-ups
    /// where all peers are local.
    pub const fn unrestricted() -> Self {
        Self { private: u16::MAX }
    }

    /// This policy, with `purpose` also allowed to reach non-public addresses.
    #[must_use]
    pub fn allowing(self, purpose: Purpose) -> Self {
        Self {
            private: self.private | purpose.bit(),
        }
    }

    /// This policy, with every purpose of `setting` allowed to reach
    /// non-public addresses (what `setting = true` in the config does).
    #[must_use]
    pub fn allowing_setting(self, setting: Setting) -> Self {
        setting.purposes().fold(self, Self::allowing)
    }

    /// Whether `purpose` may reach non-public addresses.
    pub fn allows_private(self, purpose: Purpose) -> bool {
        purpose == Purpose::Trunk || self.private & purpose.bit() != 0
    }

    /// Whether the runtime may reach `addr` for `purpose`; the error says
    /// which configuration key would allow it.
    pub fn check(self, purpose: Purpose, addr: IpAddr) -> Result<(), EgressError> {
        if is_public(addr) || self.allows_private(purpose) {
            Ok(())
        } else {
            Err(EgressError::NotPublic { purpose, addr })
        }
    }
}

impl fmt::Debug for EgressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let private: Vec<Purpose> = Purpose::ALL
            .into_iter()
            .filter(|p| *p != Purpose::Trunk && self.allows_private(*p))
            .collect();
        f.debug_struct("EgressPolicy")
            .field("private_allowed_for", &private)
            .finish()
    }
}

/// Why an address was refused. (Written by hand rather than with
/// `thiserror` so that this module needs nothing but `std`.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EgressError {
    /// `addr` is loopback, private or otherwise not public, and the policy
    /// does not allow such addresses for `purpose`. The message names the
    /// configuration key ([`Purpose::setting`]) that would.
    NotPublic { purpose: Purpose, addr: IpAddr },
}

impl EgressError {
    /// The refused address.
    pub fn addr(&self) -> IpAddr {
        match self {
            EgressError::NotPublic { addr, .. } => *addr,
        }
    }
}

impl fmt::Display for EgressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EgressError::NotPublic { purpose, addr } => {
                write!(
                    f,
                    "{addr} is not a public address: {purpose} to loopback, private and \
                     reserved addresses are refused"
                )?;
                match purpose.setting() {
                    Some(setting) => write!(f, " unless `{setting} = true`"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for EgressError {}

/// Whether `ip` is an ordinary public unicast address: not loopback,
/// private (RFC 1918, IPv6 ULA), link-local, shared (CGNAT), unspecified,
/// broadcast, multicast, documentation, benchmarking or reserved, and not
/// an IPv6 form carrying such an IPv4 address (mapped, compatible, NAT64,
/// 6to4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (b & 0xc0) == 64) // shared address space, 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // benchmarking, 198.18/15
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if s[..6] == [0; 6] {
        // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d
        return false;
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7])); // NAT64
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2])); // 6to4
    }
    !(ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_ordinary_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "192.0.2.1",
            "::",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip(public)), "{public}");
        }
    }

    #[test]
    fn by_default_every_purpose_but_trunks_is_refused_loopback_and_private_addresses() {
        let policy = EgressPolicy::default();
        assert_eq!(policy, EgressPolicy::public_only());
        for purpose in Purpose::ALL {
            for addr in ["127.0.0.1", "10.0.0.7", "::1", "169.254.169.254"] {
                let got = policy.check(purpose, ip(addr));
                if purpose == Purpose::Trunk {
                    assert_eq!(got, Ok(()), "{purpose} {addr}");
                } else {
                    assert_eq!(
                        got,
                        Err(EgressError::NotPublic {
                            purpose,
                            addr: ip(addr)
                        }),
                        "{purpose} {addr}"
                    );
                }
            }
            assert_eq!(policy.check(purpose, ip("192.0.43.10")), Ok(()));
        }
    }

    #[test]
    fn a_setting_opens_exactly_its_own_purposes() {
        for setting in Setting::ALL {
            let policy = EgressPolicy::public_only().allowing_setting(setting);
            for purpose in Purpose::ALL {
                let opened = purpose.setting() == Some(setting) || purpose == Purpose::Trunk;
                assert_eq!(
                    policy.check(purpose, ip("10.0.0.7")).is_ok(),
                    opened,
                    "{setting} / {purpose}"
                );
            }
        }
        // One purpose alone: the others of its setting stay closed.
        let dials = EgressPolicy::public_only().allowing(Purpose::Dial);
        assert!(dials.check(Purpose::Dial, ip("127.0.0.1")).is_ok());
        assert!(dials.check(Purpose::Transfer, ip("127.0.0.1")).is_err());
        let open = EgressPolicy::unrestricted();
        assert!(
            Purpose::ALL
                .into_iter()
                .all(|p| open.check(p, ip("::1")).is_ok())
        );
    }

    #[test]
    fn every_refusal_names_the_key_that_allows_it() {
        for purpose in Purpose::ALL {
            let Some(setting) = purpose.setting() else {
                continue;
            };
            let err = EgressPolicy::public_only()
                .check(purpose, ip("10.0.0.7"))
                .unwrap_err();
            let (section, key) = setting.key();
            let text = err.to_string();
            assert!(
                text.starts_with("10.0.0.7 is not a public address"),
                "{text}"
            );
            assert!(
                text.contains(&format!("`[{section}] {key} = true`")),
                "{text}"
            );
            assert!(text.contains(&purpose.to_string()), "{text}");
            assert_eq!(err.addr(), ip("10.0.0.7"));
        }
        assert_eq!(
            EgressPolicy::public_only()
                .check(Purpose::Transfer, ip("127.0.0.1"))
                .unwrap_err()
                .to_string(),
            "127.0.0.1 is not a public address: transfers to loopback, private and reserved \
             addresses are refused unless `[sip] private_destinations = true`"
        );
    }

    #[test]
    fn the_policy_debug_lists_the_opened_purposes() {
        let policy = EgressPolicy::public_only().allowing(Purpose::PromptFetch);
        assert_eq!(
            format!("{policy:?}"),
            "EgressPolicy { private_allowed_for: [PromptFetch] }"
        );
    }
}
