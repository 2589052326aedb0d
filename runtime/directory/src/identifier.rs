//! What the directory maps to providers: E.164 numbers (`+15551230001`),
//! number ranges as prefixes (`+1555*`), SIP domains (`example.com`);
//! and a caller, as a From user, a `tel:` or a SIP URI gives it, brought
//! to one of those ([`Identifier::caller`]).
//!
//! Entries are written strictly (`+` and digits, no separators; a
//! lowercase-able DNS name). Callers are read leniently, the way phones
//! and carriers write them: `15551230001`, `+1 555-123-0001`,
//! `sip:+15551230001@x;user=phone` are the number +15551230001;
//! `sip:alice@example.com` is the domain example.com. A user of digits
//! only (visual separators allowed) is taken as an E.164 number without
//! its `+`: carriers send national forms with the country code.

use std::fmt;

/// Longest text read as an identifier or a caller.
const MAX_LEN: usize = 512;
/// E.164: at most 15 digits (ITU-T E.164 §6.1).
const MAX_DIGITS: usize = 15;
/// Shortest number (a country code alone is not a number).
const MIN_NUMBER_DIGITS: usize = 2;

/// A number, a range of numbers or a SIP domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identifier {
    /// An E.164 number: its digits, without the `+`.
    Number(String),
    /// Every number starting with these digits (`+1555*`).
    Range(String),
    /// A SIP domain, lowercase, without a trailing dot: it covers its
    /// subdomains too.
    Domain(String),
}

/// Why a text is not an identifier (or a caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentifierError {
    #[error("an identifier may not be empty")]
    Empty,
    #[error("an identifier is at most {MAX_LEN} bytes")]
    TooLong,
    /// A `+…` that is not `+` and 2 to 15 digits (or 1 to 15 and `*`).
    #[error("{given:?} is not an E.164 number: {why}")]
    Number { given: String, why: &'static str },
    #[error("{given:?} is not a SIP domain: {why}")]
    Domain { given: String, why: &'static str },
    /// A caller that names neither a number nor a domain.
    #[error("the caller {given:?} is neither a number nor a SIP URI with a domain")]
    Caller { given: String },
}

impl Identifier {
    /// An entry as a provider claims it: `+15551230001`, `+1555*`,
    /// `example.com`.
    pub fn parse(text: &str) -> Result<Self, IdentifierError> {
        let text = trimmed(text)?;
        let Some(rest) = text.strip_prefix('+') else {
            return domain(text).map(Identifier::Domain);
        };
        let bad = |why| IdentifierError::Number {
            given: text.to_owned(),
            why,
        };
        let (digits, range) = match rest.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (rest, false),
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("only digits may follow the + (and one * at the end)"));
        }
        let least = if range { 1 } else { MIN_NUMBER_DIGITS };
        if !(least..=MAX_DIGITS).contains(&digits.len()) {
            return Err(bad(if range {
                "a range is + and 1 to 15 digits, then *"
            } else {
                "a number is + and 2 to 15 digits"
            }));
        }
        Ok(match range {
            true => Identifier::Range(digits.to_owned()),
            false => Identifier::Number(digits.to_owned()),
        })
    }

    /// The caller of a call, as its From (or P-Asserted-Identity) says:
    /// a number or the domain of a SIP URI. See the module doc.
    pub fn caller(text: &str) -> Result<Self, IdentifierError> {
        let text = trimmed(text)?;
        let caller = Caller::split(text);
        if let Some(number) = caller.number() {
            return Ok(Identifier::Number(number));
        }
        match caller.host {
            Some(host) => domain(host).map(Identifier::Domain),
            None => Err(IdentifierError::Caller {
                given: text.to_owned(),
            }),
        }
    }

    /// Whether this entry covers `other`: the same identifier, a number
    /// in this range (or a narrower range), a subdomain of this domain.
    pub fn covers(&self, other: &Identifier) -> bool {
        match (self, other) {
            (Identifier::Range(prefix), Identifier::Number(digits) | Identifier::Range(digits)) => {
                digits.starts_with(prefix.as_str())
            }
            (Identifier::Domain(own), Identifier::Domain(name)) => {
                name == own
                    || name
                        .strip_suffix(own.as_str())
                        .is_some_and(|sub| sub.ends_with('.'))
            }
            (a, b) => a == b,
        }
    }

    /// The entries that could cover this identifier, most specific first:
    /// itself, then shorter ranges, or parent domains (of two labels at
    /// least). What a directory looks up, in order.
    pub fn candidates(&self) -> Vec<Identifier> {
        match self {
            Identifier::Number(digits) => std::iter::once(self.clone())
                .chain(
                    (1..=digits.len())
                        .rev()
                        .map(|n| Identifier::Range(digits[..n].into())),
                )
                .collect(),
            Identifier::Range(digits) => (1..=digits.len())
                .rev()
                .map(|n| Identifier::Range(digits[..n].into()))
                .collect(),
            Identifier::Domain(name) => {
                let dots = name.match_indices('.').map(|(i, _)| i + 1);
                std::iter::once(name.clone())
                    .chain(dots.map(|i| name[i..].to_owned()))
                    .filter(|d| d.contains('.'))
                    .map(Identifier::Domain)
                    .collect()
            }
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identifier::Number(digits) => write!(f, "+{digits}"),
            Identifier::Range(digits) => write!(f, "+{digits}*"),
            Identifier::Domain(name) => f.write_str(name),
        }
    }
}

impl std::str::FromStr for Identifier {
    type Err = IdentifierError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Identifier::parse(text)
    }
}

/// What placements and confirmation queries are matched on: a number as
/// `+digits` whatever way it was written; otherwise the user part of a
/// SIP URI, lowercase (the runtime places calls with its own address as
/// the From host, so a SIP caller's host says nothing), or the text
/// itself, trimmed and lowercase.
pub fn caller_key(text: &str) -> String {
    let text = text.trim();
    let caller = Caller::split(text);
    if let Some(number) = caller.number() {
        return format!("+{number}");
    }
    caller.user.unwrap_or(text).to_ascii_lowercase()
}

/// A caller's text in pieces: the user and host of a URI, or the bare text.
struct Caller<'a> {
    user: Option<&'a str>,
    host: Option<&'a str>,
}

impl<'a> Caller<'a> {
    fn split(text: &'a str) -> Self {
        // A name-addr: `"Alice" <sip:alice@example.com>;tag=1`.
        let text = match (text.find('<'), text.rfind('>')) {
            (Some(open), Some(close)) if open < close => &text[open + 1..close],
            _ => text,
        };
        let scheme = text.split_once(':').filter(|(s, _)| {
            ["sip", "sips", "tel"]
                .iter()
                .any(|known| s.eq_ignore_ascii_case(known))
        });
        match scheme {
            Some((s, rest)) if s.eq_ignore_ascii_case("tel") => Caller {
                user: Some(rest.split(';').next().unwrap_or_default()),
                host: None,
            },
            Some((_, rest)) => Self::sip(rest),
            None if text.contains('@') => Self::sip(text),
            None => Caller {
                user: Some(text),
                host: None,
            },
        }
    }

    /// `user[:password][;params]@host[:port][;params][?headers]`.
    fn sip(rest: &'a str) -> Self {
        let (userinfo, hostpart) = match rest.rsplit_once('@') {
            Some((user, host)) => (Some(user), host),
            None => (None, rest),
        };
        let host = hostpart.split([';', '?']).next().unwrap_or_default();
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host.split(':').next().unwrap_or_default(),
        };
        let user = userinfo.map(|u| {
            let u = u.split(';').next().unwrap_or_default();
            u.split(':').next().unwrap_or_default()
        });
        Caller {
            user: user.filter(|u| !u.is_empty()),
            host: Some(host).filter(|h| !h.is_empty()),
        }
    }

    /// The E.164 digits of the user, if it is a number: an optional `+`,
    /// digits and visual separators (RFC 3966 §5.1.1). A digit-only user
    /// is a number whether or not it says so (`+`, `;user=phone`): see the
    /// module doc.
    fn number(&self) -> Option<String> {
        let user = self.user?;
        let body = user.strip_prefix('+').unwrap_or(user);
        let mut digits = String::with_capacity(body.len());
        for c in body.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return None,
            }
        }
        (MIN_NUMBER_DIGITS..=MAX_DIGITS)
            .contains(&digits.len())
            .then_some(digits)
    }
}

/// `text` trimmed, if it is neither empty nor too long.
fn trimmed(text: &str) -> Result<&str, IdentifierError> {
    match text.trim() {
        "" => Err(IdentifierError::Empty),
        long if long.len() > MAX_LEN => Err(IdentifierError::TooLong),
        text => Ok(text),
    }
}

/// A SIP domain, checked and lowercased: DNS labels of letters, digits
/// and hyphens, at least two, the last not all digits (an IPv4 address
/// is not a domain).
fn domain(text: &str) -> Result<String, IdentifierError> {
    let bad = |why| IdentifierError::Domain {
        given: text.to_owned(),
        why,
    };
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if name.len() > 253 {
        return Err(bad("a domain is at most 253 characters"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("a domain has at least two labels (example.com)"));
    }
    for label in &labels {
        let ok = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad(
                "each label is 1 to 63 letters, digits or inner hyphens",
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad("an IP address is not a domain"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(digits: &str) -> Identifier {
        Identifier::Number(digits.into())
    }

    #[test]
    fn entries_parse_and_display_as_written() {
        for text in ["+15551230001", "+1555*", "example.com", "+4*"] {
            assert_eq!(Identifier::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            Identifier::parse("Sip.Example.COM.").unwrap(),
            Identifier::Domain("sip.example.com".into())
        );
        assert_eq!(
            Identifier::parse(" +1555* ").unwrap(),
            Identifier::Range("1555".into())
        );
    }

    #[test]
    fn junk_entries_are_refused_saying_why() {
        for (text, why) in [
            ("", "empty"),
            ("+", "2 to 15 digits"),
            ("+1", "2 to 15 digits"),
            ("+*", "1 to 15 digits"),
            ("+1234567890123456", "2 to 15 digits"),
            ("+1 555 123", "only digits"),
            ("+15*5", "only digits"),
            ("localhost", "two labels"),
            ("10.0.0.1", "IP address"),
            ("-a.example", "label"),
            ("a..example", "label"),
            ("*.example.com", "label"),
            ("exa mple.com", "label"),
        ] {
            let err = Identifier::parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text:?}: {err}");
        }
        assert_eq!(
            Identifier::parse(&"a".repeat(600)),
            Err(IdentifierError::TooLong)
        );
    }

    #[test]
    fn callers_are_normalised_however_they_are_written() {
        for text in [
            "15551230001",
            "+15551230001",
            "+1 555-123-0001",
            "+1 (555) 123.0001",
            "sip:+15551230001@x;user=phone",
            "sip:15551230001@192.0.2.1:5060",
            "tel:+1-555-123-0001;phone-context=+1",
            "\"Bob\" <sip:+15551230001@carrier.example>;tag=9",
            "sips:+15551230001;npdi@carrier.example",
        ] {
            assert_eq!(
                Identifier::caller(text),
                Ok(number("15551230001")),
                "{text}"
            );
        }
        for text in [
            "sip:alice@example.com",
            "sip:alice@Example.COM:5061;transport=tls",
            "<sips:alice:pw@example.com>",
            "alice@example.com",
            "sip:example.com",
        ] {
            assert_eq!(
                Identifier::caller(text),
                Ok(Identifier::Domain("example.com".into())),
                "{text}"
            );
        }
    }

    #[test]
    fn callers_without_a_number_or_a_domain_are_refused() {
        for text in [
            "",
            "alice",
            "anonymous",
            "sip:alice@10.0.0.1",
            "sip:bob@[::1]",
            "+1x",
        ] {
            assert!(Identifier::caller(text).is_err(), "{text}");
        }
        let err = Identifier::caller("alice").unwrap_err().to_string();
        assert!(err.contains("neither a number nor a SIP URI"), "{err}");
    }

    #[test]
    fn ranges_cover_their_numbers_and_domains_their_subdomains() {
        let range = Identifier::parse("+1555*").unwrap();
        assert!(range.covers(&number("15551230001")));
        assert!(range.covers(&Identifier::Range("15559".into())));
        assert!(!range.covers(&number("15561230001")));
        let domain = Identifier::parse("example.com").unwrap();
        assert!(domain.covers(&Identifier::parse("a.b.example.com").unwrap()));
        assert!(domain.covers(&domain));
        assert!(!domain.covers(&Identifier::parse("badexample.com").unwrap()));
        assert!(number("1555").covers(&number("1555")));
        assert!(!number("1555").covers(&number("15551")));
    }

    #[test]
    fn candidates_run_from_the_most_specific_entry() {
        let got: Vec<String> = number("1555")
            .candidates()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["+1555", "+1555*", "+155*", "+15*", "+1*"]);
        let got: Vec<String> = Identifier::parse("a.b.example.com")
            .unwrap()
            .candidates()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["a.b.example.com", "b.example.com", "example.com"]);
        let every = Identifier::parse("+1555*").unwrap().candidates();
        assert!(
            every
                .iter()
                .all(|c| c.covers(&Identifier::Range("1555".into())))
        );
    }

    #[test]
    fn placements_match_on_the_number_or_the_user() {
        assert_eq!(caller_key("sip:+1 555 123 0001@x"), "+15551230001");
        assert_eq!(caller_key("15551230001"), "+15551230001");
        assert_eq!(caller_key("sip:Alice@10.0.0.1"), "alice");
        assert_eq!(caller_key("Alice"), "alice");
        assert_eq!(caller_key(" anonymous "), "anonymous");
    }
}
