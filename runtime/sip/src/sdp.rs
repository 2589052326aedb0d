//! SDP offer/answer (RFC 3264) for G.711 audio, on the `sdp` crate.
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

use std::fmt::Write as _;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use sdp::SessionDescription;
use sdp::description::common::Attribute;
use sdp::description::media::MediaDescription;
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
    /// Not SDP the `sdp` crate can read (RFC 4566 syntax).
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
    let desc = parse(offer)?;
    let chosen = desc
        .media_descriptions
        .iter()
        .enumerate()
        .find_map(|(i, m)| usable_audio(m).map(|codec| (i, codec)))
        .ok_or(SdpError::NoCommonCodec)?;
    let (index, codec) = chosen;
    let Some(media) = desc.media_descriptions.get(index) else {
        return Err(SdpError::NoCommonCodec);
    };
    let negotiated = negotiated(&desc, media, codec)?;

    let mut sdp = String::with_capacity(512);
    header(&mut sdp, local, session, version);
    for (i, m) in desc.media_descriptions.iter().enumerate() {
        if i == index {
            audio(&mut sdp, local.port(), &negotiated);
        } else {
            // Rejected: same media and transport, port 0 (RFC 3264 §6).
            let formats = if m.media_name.formats.is_empty() {
                "0".to_string()
            } else {
                m.media_name.formats.join(" ")
            };
            let _ = write!(
                sdp,
                "m={} 0 {} {}\r\n",
                m.media_name.media,
                m.media_name.protos.join("/"),
                formats
            );
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
    let desc = parse(answer)?;
    let (media, codec) = desc
        .media_descriptions
        .iter()
        .find_map(|m| usable_audio(m).map(|codec| (m, codec)))
        .ok_or(SdpError::NoCommonCodec)?;
    negotiated(&desc, media, codec)
}

/// What was agreed for the chosen audio stream, from our side: the far
/// end's address and direction (reversed into ours), DTMF and packet time.
fn negotiated(
    desc: &SessionDescription,
    media: &MediaDescription,
    codec: Codec,
) -> Result<Negotiated, SdpError> {
    let (remote, on_hold) = remote_of(desc, media)?;
    let mut theirs = direction_from_attributes(&media.attributes)
        .or_else(|| direction_from_attributes(&desc.attributes))
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
        dtmf_pt: telephone_event(media),
        direction: theirs.reversed(),
        ptime_ms: ptime(media),
    })
}

fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
    // The crate reads line by line; it needs text to report errors with.
    if std::str::from_utf8(body).is_err() {
        return Err(SdpError::Malformed("not UTF-8".into()));
    }
    SessionDescription::unmarshal(&mut Cursor::new(body))
        .map_err(|e| SdpError::Malformed(e.to_string()))
}

/// The codec an m-line lets us use: audio, RTP/AVP, a port, PCMU or PCMA
/// among its formats (first wins).
fn usable_audio(m: &MediaDescription) -> Option<Codec> {
    let name = &m.media_name;
    let rtp_avp = name.protos.len() == 2
        && name.protos.first().is_some_and(|p| p == "RTP")
        && name.protos.get(1).is_some_and(|p| p == "AVP");
    if name.media != "audio" || !rtp_avp || name.port.value <= 0 || name.port.value > 65_535 {
        return None;
    }
    name.formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .find_map(Codec::from_pt)
}

/// Where the peer receives, and whether it used the hold address 0.0.0.0.
fn remote_of(
    desc: &SessionDescription,
    m: &MediaDescription,
) -> Result<(Option<SocketAddr>, bool), SdpError> {
    let connection = m
        .connection_information
        .as_ref()
        .or(desc.connection_information.as_ref())
        .and_then(|c| c.address.as_ref());
    let Some(address) = connection else {
        return Err(SdpError::Address(String::new()));
    };
    let ip: IpAddr = address
        .address
        .parse()
        .map_err(|_| SdpError::Address(address.address.clone()))?;
    if ip.is_unspecified() {
        return Ok((None, true));
    }
    let port = u16::try_from(m.media_name.port.value).unwrap_or(0);
    Ok(((port != 0).then_some(SocketAddr::new(ip, port)), false))
}

fn telephone_event(m: &MediaDescription) -> Option<u8> {
    m.attributes
        .iter()
        .filter(|a| a.key == "rtpmap")
        .filter_map(|a| a.value.as_deref())
        .find_map(|v| {
            let (pt, encoding) = v.split_once(' ')?;
            let (name, rate) = encoding.split_once('/')?;
            let rate = rate.split('/').next()?;
            (name.eq_ignore_ascii_case("telephone-event") && rate == "8000").then_some(pt)
        })
        .and_then(|pt| pt.parse::<u8>().ok())
        .filter(|pt| {
            m.media_name
                .formats
                .iter()
                .any(|f| f.parse::<u8>().ok() == Some(*pt))
        })
}

/// The offered a=ptime when it is a whole number of 10 ms frames up to
/// 120 ms (what G.711 endpoints use); 20 ms otherwise.
fn ptime(m: &MediaDescription) -> u32 {
    m.attribute("ptime")
        .flatten()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|p| (10..=120).contains(p) && p % 10 == 0)
        .unwrap_or(DEFAULT_PTIME_MS)
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

/// The direction an SDP attribute list states, if any.
fn direction_from_attributes(attrs: &[Attribute]) -> Option<Direction> {
    attrs.iter().find_map(|a| match a.key.as_str() {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    })
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
