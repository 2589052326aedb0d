//! SDP offer/answer (RFC 3264) for G.711 audio.
//!
//! ```text
//!  INVITE with offer ─► answer(offer, local, ..) ─► (answer SDP, Negotiated)
//!  INVITE without    ─► offer(local, ..) in the 200, parse_answer(ACK body)
//!  outbound call     ─► offer(local, ..) in the INVITE, parse_answer(200 body)
//! ```
//!
//! We speak PCMU (0) and PCMA (8) at 8 kHz over RTP/AVP, plus RFC 4733
//! telephone-event when the peer offers it. [`Negotiated`] is always from
//! our side: `direction` says whether *we* send and receive, `remote` is
//! where to send RTP (`None` when the peer asked for no media: port 0 or the
//! RFC 2543 hold address 0.0.0.0). Nothing here panics on bad input; an
//! offer we cannot serve is [`SdpError::NoCommonCodec`], which the caller
//! answers with 488 (RFC 3264 §6).
//!
//! Bodies are read by [`Desc::parse`], a scanner that borrows from the body
//! and keeps only the fields offer/answer needs. It replaced the `sdp`
//! crate, which builds an owned tree of every line through `nom`: every
//! INVITE carries an offer, and that tree was 5 % of a refused call's CPU
//! (BENCHMARKS.md, `sip`, issue 14), more than any other single part of
//! the decision path. A test reads the same offers with the crate and with
//! the scanner and compares what they negotiate.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

pub use switchyard_media::codec::{Codec, DTMF_PT, Direction};

/// Packetization time when the peer states none (RFC 3551 §4.5).
pub const DEFAULT_PTIME_MS: u32 = 20;

/// The outcome of offer/answer, from our side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    /// Where to send RTP; `None` when c=0.0.0.0 or the port is 0.
    pub remote: Option<SocketAddr>,
    /// The peer's telephone-event payload type, if it does RFC 4733.
    pub dtmf_pt: Option<u8>,
    /// Whether we send and receive.
    pub direction: Direction,
    pub ptime_ms: u32,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// Not SDP (RFC 4566 syntax).
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// No RTP/AVP audio stream with PCMU or PCMA: answer 488.
    #[error("no audio stream with PCMU or PCMA")]
    NoCommonCodec,
    /// A connection address we cannot use without DNS (a host name).
    #[error("unusable connection address {0:?}")]
    Address(String),
}

/// Answers an offer (RFC 3264 §6): accepts the first RTP/AVP audio stream
/// that offers PCMU or PCMA, with the first of the two in the offer's order,
/// and rejects every other stream with port 0. The answer's direction
/// mirrors the offer's (sendonly → recvonly, inactive → inactive, §6.1); the
/// RFC 2543 hold form c=0.0.0.0 counts as sendonly (§8.4).
///
/// `session` and `version` go into o= (the caller increments `version` on
/// every new offer or answer in a dialog, RFC 3264 §8).
pub fn answer(
    offer: &[u8],
    local: SocketAddr,
    session: u64,
    version: u64,
) -> Result<(String, Negotiated), SdpError> {
    let desc = Desc::parse(offer)?;
    let (index, codec) = desc
        .media
        .iter()
        .enumerate()
        .find_map(|(i, m)| m.usable_audio().map(|codec| (i, codec)))
        .ok_or(SdpError::NoCommonCodec)?;
    let negotiated = desc.negotiated(index, codec)?;

    let mut sdp = String::with_capacity(512);
    header(&mut sdp, local, session, version);
    for (i, m) in desc.media.iter().enumerate() {
        if i == index {
            audio(&mut sdp, local.port(), &negotiated);
        } else {
            // Rejected: same media and transport, port 0 (RFC 3264 §6).
            let formats = if m.formats.is_empty() { "0" } else { m.formats };
            let _ = write!(sdp, "m={} 0 {} {formats}\r\n", m.kind, m.proto);
        }
    }
    Ok((sdp, negotiated))
}

/// An offer with PCMU, PCMA and telephone-event/8000 (payload type 101),
/// 20 ms packets, in `direction` (RFC 3264 §5).
pub fn offer(local: SocketAddr, session: u64, version: u64, direction: Direction) -> String {
    let mut sdp = String::with_capacity(384);
    header(&mut sdp, local, session, version);
    let _ = write!(
        sdp,
        "m=audio {} RTP/AVP 0 8 {DTMF_PT}\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:{DTMF_PT} telephone-event/8000\r\n\
         a=fmtp:{DTMF_PT} 0-15\r\n\
         a=ptime:{DEFAULT_PTIME_MS}\r\n\
         a={}\r\n",
        local.port(),
        direction.attribute()
    );
    sdp
}

/// Reads the answer to one of our offers (RFC 3264 §7): the first accepted
/// audio stream and the first codec of ours it lists.
pub fn parse_answer(answer: &[u8]) -> Result<Negotiated, SdpError> {
    let desc = Desc::parse(answer)?;
    let (index, codec) = desc
        .media
        .iter()
        .enumerate()
        .find_map(|(i, m)| m.usable_audio().map(|codec| (i, codec)))
        .ok_or(SdpError::NoCommonCodec)?;
    desc.negotiated(index, codec)
}

/// What offer/answer needs of a session description, borrowed from it.
#[derive(Debug, Default)]
struct Desc<'a> {
    /// The session-level c= address (before any /ttl).
    connection: Option<&'a str>,
    /// The session-level direction attribute.
    direction: Option<Direction>,
    media: Vec<Media<'a>>,
}

/// One m= section.
#[derive(Debug, Default)]
struct Media<'a> {
    kind: &'a str,
    port: u32,
    /// `RTP/AVP`, `RTP/SAVP`…
    proto: &'a str,
    /// The formats as written, space-separated.
    formats: &'a str,
    connection: Option<&'a str>,
    direction: Option<Direction>,
    /// The payload type of the first `a=rtpmap:PT telephone-event/8000`.
    telephone_event: Option<&'a str>,
    ptime: Option<&'a str>,
}

impl<'a> Desc<'a> {
    /// Reads `body` (RFC 4566 §5): `v=0` first, then `o=` with its six
    /// fields, `s=`, at least one `t=` before the media, every line a
    /// lower-case letter, `=` and a value, ended by CRLF or LF.
    fn parse(body: &'a [u8]) -> Result<Self, SdpError> {
        let bad = |line: usize, why: &str| SdpError::Malformed(format!("line {line}: {why}"));
        let text =
            std::str::from_utf8(body).map_err(|_| SdpError::Malformed("not UTF-8".into()))?;
        let mut desc = Desc::default();
        let (mut origin, mut name, mut timing) = (false, false, false);
        for (i, line) in text.split('\n').enumerate() {
            let n = i + 1;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let (kind, value) = match line.as_bytes() {
                [k @ b'a'..=b'z', b'=', ..] => (*k, &line[2..]),
                _ => return Err(bad(n, "not <letter>=<value>")),
            };
            if i == 0 {
                if line != "v=0" {
                    return Err(bad(n, "does not start with v=0"));
                }
                continue;
            }
            if kind == b'm' && !(origin && name && timing) {
                return Err(bad(n, "m= before o=, s= and t="));
            }
            match kind {
                b'v' => return Err(bad(n, "a second v=")),
                b'o' if value.split_ascii_whitespace().count() != 6 => {
                    return Err(bad(n, "o= needs six fields"));
                }
                b'o' => origin = true,
                b's' => name = true,
                b't' => timing = true,
                b'm' => desc
                    .media
                    .push(Media::parse(value).ok_or_else(|| bad(n, "malformed m="))?),
                b'c' => {
                    let address = connection(value).ok_or_else(|| bad(n, "malformed c="))?;
                    match desc.media.last_mut() {
                        Some(m) => m.connection = Some(address),
                        None => desc.connection = Some(address),
                    }
                }
                b'a' => match desc.media.last_mut() {
                    Some(m) => m.attribute(value),
                    None => desc.direction = desc.direction.or(direction(value)),
                },
                _ => {}
            }
        }
        if !(origin && name && timing) {
            return Err(SdpError::Malformed("missing o=, s= or t=".into()));
        }
        Ok(desc)
    }

    /// What was agreed for stream `index`, from our side: the far end's
    /// address and direction (reversed into ours), DTMF and packet time.
    fn negotiated(&self, index: usize, codec: Codec) -> Result<Negotiated, SdpError> {
        let media = self.media.get(index).ok_or(SdpError::NoCommonCodec)?;
        let address = media
            .connection
            .or(self.connection)
            .ok_or_else(|| SdpError::Address(String::new()))?;
        let ip: IpAddr = address
            .parse()
            .map_err(|_| SdpError::Address(address.to_string()))?;
        let on_hold = ip.is_unspecified();
        let port = u16::try_from(media.port).unwrap_or(0);
        let remote = (!on_hold && port != 0).then_some(SocketAddr::new(ip, port));
        let mut theirs = media
            .direction
            .or(self.direction)
            .unwrap_or(Direction::SendRecv);
        if on_hold && theirs.receives() {
            // c=0.0.0.0: the far end will not receive (RFC 3264 §8.4).
            theirs = if theirs.sends() {
                Direction::SendOnly
            } else {
                Direction::Inactive
            };
        }
        Ok(Negotiated {
            codec,
            remote,
            dtmf_pt: media.dtmf_pt(),
            direction: theirs.reversed(),
            ptime_ms: media.ptime_ms(),
        })
    }
}

impl<'a> Media<'a> {
    /// `media SP port[/count] SP proto 1*(SP fmt)`.
    fn parse(value: &'a str) -> Option<Self> {
        let mut fields = value.splitn(3, ' ');
        let kind = fields.next().filter(|k| !k.is_empty())?;
        let port = fields.next()?;
        let rest = fields.next()?;
        let port = port.split('/').next()?.parse::<u32>().ok()?;
        let (proto, formats) = rest.split_once(' ').unwrap_or((rest, ""));
        if proto.is_empty() {
            return None;
        }
        Some(Media {
            kind,
            port,
            proto,
            formats: formats.trim(),
            ..Media::default()
        })
    }

    fn attribute(&mut self, value: &'a str) {
        if let Some(d) = direction(value) {
            self.direction = self.direction.or(Some(d));
        } else if let Some(ptime) = value.strip_prefix("ptime:") {
            self.ptime = self.ptime.or(Some(ptime));
        } else if let Some(map) = value.strip_prefix("rtpmap:")
            && self.telephone_event.is_none()
            && let Some((pt, encoding)) = map.split_once(' ')
            && let Some((name, rate)) = encoding.split_once('/')
            && name.eq_ignore_ascii_case("telephone-event")
            && rate.split('/').next() == Some("8000")
        {
            self.telephone_event = Some(pt);
        }
    }

    fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats
            .split_ascii_whitespace()
            .filter_map(|f| f.parse::<u8>().ok())
    }

    /// The codec this stream lets us use: audio, RTP/AVP, a port, PCMU or
    /// PCMA among its formats (first wins).
    fn usable_audio(&self) -> Option<Codec> {
        if self.kind != "audio" || self.proto != "RTP/AVP" || self.port == 0 || self.port > 65_535 {
            return None;
        }
        self.payload_types().find_map(Codec::from_pt)
    }

    /// The telephone-event payload type, when the m= line lists it.
    fn dtmf_pt(&self) -> Option<u8> {
        let pt = self.telephone_event?.parse::<u8>().ok()?;
        self.payload_types().any(|f| f == pt).then_some(pt)
    }

    /// The offered a=ptime when it is a whole number of 10 ms frames up to
    /// 120 ms (what G.711 endpoints use); 20 ms otherwise.
    fn ptime_ms(&self) -> u32 {
        self.ptime
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|p| (10..=120).contains(p) && p % 10 == 0)
            .unwrap_or(DEFAULT_PTIME_MS)
    }
}

/// The address of `c=IN IP4 203.0.113.1[/ttl[/n]]`.
fn connection(value: &str) -> Option<&str> {
    let mut fields = value.split_ascii_whitespace();
    let (_net, _family, address) = (fields.next()?, fields.next()?, fields.next()?);
    address.split('/').next().filter(|a| !a.is_empty())
}

/// The direction an attribute states, if it is one.
fn direction(attribute: &str) -> Option<Direction> {
    match attribute {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    }
}

fn header(sdp: &mut String, local: SocketAddr, session: u64, version: u64) {
    let family = if local.is_ipv4() { "IP4" } else { "IP6" };
    let ip = local.ip();
    let _ = write!(
        sdp,
        "v=0\r\n\
         o=switchyard {session} {version} IN {family} {ip}\r\n\
         s=switchyard\r\n\
         c=IN {family} {ip}\r\n\
         t=0 0\r\n"
    );
}

fn audio(sdp: &mut String, port: u16, n: &Negotiated) {
    let Codec { pt, name } = n.codec;
    let _ = write!(sdp, "m=audio {port} RTP/AVP {pt}");
    if let Some(dtmf) = n.dtmf_pt {
        let _ = write!(sdp, " {dtmf}");
    }
    let _ = write!(sdp, "\r\na=rtpmap:{pt} {name}/8000\r\n");
    if let Some(dtmf) = n.dtmf_pt {
        let _ = write!(
            sdp,
            "a=rtpmap:{dtmf} telephone-event/8000\r\na=fmtp:{dtmf} 0-15\r\n"
        );
    }
    let _ = write!(
        sdp,
        "a=ptime:{}\r\na={}\r\n",
        n.ptime_ms,
        n.direction.attribute()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP: &str = "v=0\r\n\
        o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        c=IN IP4 127.0.0.1\r\n\
        t=0 0\r\n\
        m=audio 6000 RTP/AVP 0\r\n\
        a=rtpmap:0 PCMU/8000\r\n";

    fn local() -> SocketAddr {
        "192.0.2.10:40000".parse().unwrap()
    }

    #[test]
    fn sipp_default_offer_gets_pcmu_sendrecv() {
        let (sdp, n) = answer(SIPP.as_bytes(), local(), 7, 1).unwrap();
        assert_eq!(n.codec, Codec::PCMU);
        assert_eq!(n.remote, Some("127.0.0.1:6000".parse().unwrap()));
        assert_eq!(n.direction, Direction::SendRecv);
        assert_eq!(n.dtmf_pt, None);
        assert_eq!(n.ptime_ms, 20);
        assert!(
            sdp.contains("o=switchyard 7 1 IN IP4 192.0.2.10\r\n"),
            "{sdp}"
        );
        assert!(sdp.contains("m=audio 40000 RTP/AVP 0\r\n"), "{sdp}");
        assert!(sdp.contains("a=sendrecv\r\n"), "{sdp}");
        // The answer is valid SDP that we can read back as an answer.
        let back = parse_answer(sdp.as_bytes()).unwrap();
        assert_eq!(back.codec, Codec::PCMU);
        assert_eq!(back.remote, Some(local()));
    }

    #[test]
    fn pcma_only_offer_gets_pcma_and_telephone_event() {
        let offer = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
            m=audio 5004 RTP/AVP 18 8 96\r\na=rtpmap:18 G729/8000\r\na=rtpmap:8 PCMA/8000\r\n\
            a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\na=ptime:30\r\n";
        let (sdp, n) = answer(offer.as_bytes(), local(), 1, 1).unwrap();
        assert_eq!(n.codec, Codec::PCMA);
        assert_eq!(n.dtmf_pt, Some(96));
        assert_eq!(n.ptime_ms, 30);
        assert!(sdp.contains("m=audio 40000 RTP/AVP 8 96\r\n"), "{sdp}");
        assert!(
            sdp.contains("a=rtpmap:96 telephone-event/8000\r\n"),
            "{sdp}"
        );
    }

    #[test]
    fn sendonly_hold_is_answered_recvonly() {
        let offer = SIPP.replace(
            "a=rtpmap:0 PCMU/8000\r\n",
            "a=rtpmap:0 PCMU/8000\r\na=sendonly\r\n",
        );
        let (sdp, n) = answer(offer.as_bytes(), local(), 1, 2).unwrap();
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(sdp.contains("a=recvonly\r\n"), "{sdp}");
        let inactive = SIPP.replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n");
        assert_eq!(
            answer(inactive.as_bytes(), local(), 1, 3)
                .unwrap()
                .1
                .direction,
            Direction::Inactive
        );
    }

    #[test]
    fn rfc2543_hold_address_means_no_remote_and_recvonly() {
        let offer = SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        let (sdp, n) = answer(offer.as_bytes(), local(), 1, 2).unwrap();
        assert_eq!(n.remote, None);
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(sdp.contains("a=recvonly\r\n"), "{sdp}");
    }

    #[test]
    fn other_streams_are_rejected_with_port_zero() {
        let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\n\
            m=video 3227 RTP/AVP 31\r\nm=audio 49217 RTP/AVP 0 12\r\nm=audio 5000 RTP/AVP 8\r\n";
        let (sdp, n) = answer(offer.as_bytes(), local(), 1, 1).unwrap();
        assert_eq!(n.remote, Some("192.0.2.4:49217".parse().unwrap()));
        let m: Vec<&str> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m,
            [
                "m=video 0 RTP/AVP 31",
                "m=audio 40000 RTP/AVP 0",
                "m=audio 0 RTP/AVP 8"
            ]
        );
    }

    #[test]
    fn offer_without_g711_is_no_common_codec() {
        let offer = SIPP
            .replace("RTP/AVP 0", "RTP/AVP 18")
            .replace("0 PCMU", "18 G729");
        assert!(matches!(
            answer(offer.as_bytes(), local(), 1, 1),
            Err(SdpError::NoCommonCodec)
        ));
        let srtp = SIPP.replace("RTP/AVP", "RTP/SAVP");
        assert!(matches!(
            answer(srtp.as_bytes(), local(), 1, 1),
            Err(SdpError::NoCommonCodec)
        ));
        let rejected = SIPP.replace("audio 6000", "audio 0");
        assert!(matches!(
            answer(rejected.as_bytes(), local(), 1, 1),
            Err(SdpError::NoCommonCodec)
        ));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for junk in [
            &b""[..],
            b"hello",
            b"v=0\r\n",
            b"\xff\xfe",
            b"v=0\r\no=\r\n",
            b"m=audio 1 RTP/AVP 0\r\n",
        ] {
            assert!(answer(junk, local(), 1, 1).is_err());
            assert!(parse_answer(junk).is_err());
        }
    }

    #[test]
    fn our_offer_parses_as_an_answer_with_dtmf() {
        let sdp = offer(local(), 9, 1, Direction::SendRecv);
        let n = parse_answer(sdp.as_bytes()).unwrap();
        assert_eq!(n.codec, Codec::PCMU);
        assert_eq!(n.dtmf_pt, Some(DTMF_PT));
        assert_eq!(n.direction, Direction::SendRecv);
        let held = offer(local(), 9, 2, Direction::SendOnly);
        assert_eq!(
            parse_answer(held.as_bytes()).unwrap().direction,
            Direction::RecvOnly
        );
        let v6 = offer(
            "[2001:db8::1]:4000".parse().unwrap(),
            1,
            1,
            Direction::SendRecv,
        );
        assert!(v6.contains("c=IN IP6 2001:db8::1\r\n"), "{v6}");
        assert!(parse_answer(v6.as_bytes()).is_ok());
    }

    /// The scanner and the `sdp` crate it replaced read the same offers
    /// alike: both refuse, or both find the same first usable stream with
    /// the same address, port, direction and ptime.
    #[test]
    fn the_scanner_reads_offers_as_the_sdp_crate_does() {
        let mut offers: Vec<String> = vec![
            SIPP.into(),
            SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"),
            SIPP.replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n"),
            SIPP.replace("RTP/AVP 0", "RTP/AVP 18 8 0")
                .replace("\n", "\r\n")
                .replace("\r\r", "\r"),
            SIPP.replace("\r\n", "\n"),
            SIPP.replace(
                "a=rtpmap:0 PCMU/8000\r\n",
                "c=IN IP6 2001:db8::7\r\na=sendonly\r\na=ptime:40\r\n",
            ),
            SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 224.2.1.1/127/3"),
            SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 host.example"),
            SIPP.replace("o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n", ""),
            SIPP.replace("m=audio 6000", "m=audio 6000/2"),
            SIPP.replace("m=audio 6000", "m=audio x"),
            offer("192.0.2.1:4000".parse().unwrap(), 1, 1, Direction::RecvOnly),
        ];
        // Every body of the RFC 4475 torture messages, as received.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/rfc4475/");
        for file in std::fs::read_dir(dir).unwrap() {
            let raw = std::fs::read(file.unwrap().path()).unwrap();
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                offers.push(String::from_utf8_lossy(&raw[at + 4..]).into_owned());
            }
        }
        assert!(offers.len() > 40, "the torture corpus is there");
        for offer in &offers {
            let ours = Desc::parse(offer.as_bytes()).ok().and_then(|d| {
                let (i, codec) = d
                    .media
                    .iter()
                    .enumerate()
                    .find_map(|(i, m)| m.usable_audio().map(|c| (i, c)))?;
                let m = &d.media[i];
                let address = m.connection.or(d.connection)?.to_string();
                let direction = m.direction.or(d.direction);
                Some((codec.pt, address, m.port as i64, direction, m.ptime_ms()))
            });
            assert_eq!(ours, reference(offer), "{offer}");
        }
    }

    fn reference(offer: &str) -> Option<(u8, String, i64, Option<Direction>, u32)> {
        let desc =
            sdp::SessionDescription::unmarshal(&mut std::io::Cursor::new(offer.as_bytes())).ok()?;
        let m = desc.media_descriptions.iter().find(|m| {
            let n = &m.media_name;
            n.media == "audio"
                && n.protos.join("/") == "RTP/AVP"
                && (1..=65_535).contains(&n.port.value)
                && n.formats.iter().any(|f| matches!(f.as_str(), "0" | "8"))
        })?;
        let codec = m.media_name.formats.iter().find_map(|f| match f.as_str() {
            "0" => Some(0),
            "8" => Some(8),
            _ => None,
        })?;
        let address = m
            .connection_information
            .as_ref()
            .or(desc.connection_information.as_ref())?
            .address
            .as_ref()?
            .address
            .split('/') // the crate keeps a multicast /ttl in the address
            .next()?
            .to_string();
        let attrs =
            |a: &[sdp::description::common::Attribute]| a.iter().find_map(|a| direction(&a.key));
        let ptime = m
            .attribute("ptime")
            .flatten()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|p| (10..=120).contains(p) && p % 10 == 0)
            .unwrap_or(DEFAULT_PTIME_MS);
        let direction = attrs(&m.attributes).or_else(|| attrs(&desc.attributes));
        Some((
            codec,
            address,
            m.media_name.port.value as i64,
            direction,
            ptime,
        ))
    }

    #[test]
    fn torture_offers_from_rfc4475_are_answered() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/rfc4475/");
        let raw = std::fs::read(format!("{dir}wsinv.dat")).unwrap();
        let body = &raw[raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
        let (_, n) = answer(body, local(), 1, 1).unwrap();
        assert_eq!(n.codec, Codec::PCMU);
        assert_eq!(n.remote, Some("192.0.2.4:49217".parse().unwrap()));
    }
}
