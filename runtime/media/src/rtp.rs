//! RTP packets (RFC 3550 §5.1): parse and build the fixed header in place.
//!
//! ```text
//!  0                   1                   2                   3
//!  |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//!  |                           timestamp                           |
//!  |                             SSRC                              |
//!  |            CSRC list (CC × 32 bits), extension (X), payload   |
//!  |                              ...  padding (P, last byte = n)  |
//! ```
//!
//! Why not the webrtc-rs `rtp` crate: its `Packet::unmarshal` copies the
//! payload into a fresh `Bytes` and the CSRC list into a `Vec` for every
//! packet, and `marshal` allocates again. We handle 50 packets per second on
//! each of thousands of streams, so [`parse`] borrows the payload from the
//! receive buffer and [`Header::write`] writes into a buffer the caller
//! reuses: no allocation per packet.
//!
//! Parsing is for bytes from anyone: every length (CSRC count, extension,
//! padding) is checked against the datagram, and nothing panics.

use thiserror::Error;

/// The length of the fixed header (no CSRC, no extension).
pub const HEADER_LEN: usize = 12;

/// Why a datagram is not an RTP packet we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Fewer bytes than the header, its CSRC list or its extension claim.
    #[error("truncated RTP packet")]
    Short,
    /// Not version 2 (RFC 3550 §5.1): STUN, ZRTP or noise.
    #[error("not RTP version 2")]
    Version,
    /// RTCP sent to the RTP port (RFC 5761 §4): not for the RTP path.
    #[error("RTCP on the RTP port")]
    Rtcp,
    /// The padding count is zero or longer than what follows the header.
    #[error("bad RTP padding")]
    Padding,
}

/// The fixed header fields we use (CSRCs and extensions are skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub marker: bool,
    /// Payload type, 7 bits.
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
}

/// A parsed packet borrowing its payload from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub header: Header,
    pub payload: &'a [u8],
}

/// Whether `buf` is RTCP multiplexed on the RTP port: its second byte is an
/// RTCP packet type, which as an RTP marker+PT would fall in the range
/// RFC 5761 §4 keeps free (SR 200 … APP 204, and the rest of 192–223).
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && buf[0] >> 6 == 2 && (192..=223).contains(&buf[1])
}

/// Parses one RTP datagram.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, RtpError> {
    if buf.len() < HEADER_LEN {
        return Err(RtpError::Short);
    }
    if buf[0] >> 6 != 2 {
        return Err(RtpError::Version);
    }
    if is_rtcp(buf) {
        return Err(RtpError::Rtcp);
    }
    let padding = buf[0] & 0x20 != 0;
    let extension = buf[0] & 0x10 != 0;
    let csrcs = usize::from(buf[0] & 0x0f);
    let mut start = HEADER_LEN + 4 * csrcs;
    if extension {
        // 16 bits profile-defined, 16 bits length in 32-bit words (§5.3.1).
        let ext = buf.get(start..start + 4).ok_or(RtpError::Short)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    if start > buf.len() {
        return Err(RtpError::Short);
    }
    let mut end = buf.len();
    if padding {
        let n = usize::from(buf[end - 1]);
        if n == 0 || n > end - start {
            return Err(RtpError::Padding);
        }
        end -= n;
    }
    Ok(Packet {
        header: Header {
            marker: buf[1] & 0x80 != 0,
            pt: buf[1] & 0x7f,
            seq: u16::from_be_bytes([buf[2], buf[3]]),
            ts: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        },
        payload: &buf[start..end],
    })
}

impl Header {
    /// Writes the 12-byte header (no CSRC, extension or padding) to `out`.
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0] = 0x80;
        out[1] = (u8::from(self.marker) << 7) | (self.pt & 0x7f);
        out[2..4].copy_from_slice(&self.seq.to_be_bytes());
        out[4..8].copy_from_slice(&self.ts.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
    }

    /// Clears `out` and appends the header followed by room for `payload_len`
    /// bytes (zeroed), returning that room. `out` keeps its capacity between
    /// packets, so after the first this does not allocate.
    pub fn build<'a>(&self, out: &'a mut Vec<u8>, payload_len: usize) -> &'a mut [u8] {
        out.clear();
        out.resize(HEADER_LEN + payload_len, 0);
        let (head, payload) = out.split_at_mut(HEADER_LEN);
        if let Ok(head) = <&mut [u8; HEADER_LEN]>::try_from(head) {
            self.write(head);
        }
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            marker: true,
            pt: 8,
            seq: 0xfffe,
            ts: 0xdead_beef,
            ssrc: 0x1234_5678,
        }
    }

    #[test]
    fn built_packets_parse_back() {
        let mut out = Vec::new();
        header().build(&mut out, 3).copy_from_slice(&[1, 2, 3]);
        assert_eq!(out.len(), 15);
        let p = parse(&out).unwrap();
        assert_eq!(p.header, header());
        assert_eq!(p.payload, &[1, 2, 3]);
        let capacity = out.capacity();
        Header {
            marker: false,
            ..header()
        }
        .build(&mut out, 3);
        assert_eq!(out.capacity(), capacity);
        assert!(!parse(&out).unwrap().header.marker);
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut p = vec![0x80 | 0x20 | 0x10 | 2, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend([0xaa; 8]); // two CSRCs
        p.extend([0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // extension, one word
        p.extend([7, 7]); // payload
        p.extend([0, 0, 3]); // three bytes of padding
        let got = parse(&p).unwrap();
        assert_eq!(got.payload, &[7, 7]);
        assert_eq!(got.header.seq, 1);
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(parse(&[]), Err(RtpError::Short));
        assert_eq!(parse(&[0x80; 11]), Err(RtpError::Short));
        assert_eq!(parse(&[0x40; 12]), Err(RtpError::Version));
        // Four CSRCs claimed, none present.
        assert_eq!(
            parse(&[0x84, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RtpError::Short)
        );
        // Extension header cut, then extension longer than the packet.
        assert_eq!(
            parse(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RtpError::Short)
        );
        let mut ext = vec![0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        ext.extend([0; 8]);
        assert_eq!(parse(&ext), Err(RtpError::Short));
        // Padding of zero, and padding longer than the payload.
        let mut pad = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(parse(&pad), Err(RtpError::Padding));
        *pad.last_mut().unwrap() = 3;
        assert_eq!(parse(&pad), Err(RtpError::Padding));
        *pad.last_mut().unwrap() = 2;
        assert_eq!(parse(&pad).unwrap().payload, &[] as &[u8]);
    }

    #[test]
    fn rtcp_on_the_rtp_port_is_told_apart() {
        let sr = [0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(is_rtcp(&sr));
        assert_eq!(parse(&sr), Err(RtpError::Rtcp));
        let rr = [0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(parse(&rr), Err(RtpError::Rtcp));
        // PCMU with the marker set is 0x80: RTP, not RTCP.
        assert!(!is_rtcp(&[0x80, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert!(parse(&[0x80, 0x80 | 101, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_ok());
    }
}
