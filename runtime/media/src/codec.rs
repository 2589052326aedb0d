//! The audio codecs we send and the media directions of a stream: the
//! vocabulary shared by SDP negotiation (sip) and the RTP sessions (media).

/// An audio codec we can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Codec {
    /// The static RTP payload type (RFC 3551 §6).
    pub pt: u8,
    pub name: &'static str,
}

impl Codec {
    pub const PCMU: Codec = Codec {
        pt: 0,
        name: "PCMU",
    };
    pub const PCMA: Codec = Codec {
        pt: 8,
        name: "PCMA",
    };
    /// 16-bit linear PCM at 8 kHz (RFC 3551 §4.5.11) on a dynamic payload
    /// type: only between our own mixers (cascade links). Not in [`ALL`],
    /// so never offered to a peer nor read from an offer.
    ///
    /// [`ALL`]: Codec::ALL
    pub const L16: Codec = Codec {
        pt: 97,
        name: "L16",
    };
    /// Ours, in order of preference for offers.
    pub const ALL: [Codec; 2] = [Codec::PCMU, Codec::PCMA];

    pub fn from_pt(pt: u8) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.pt == pt)
    }
}

/// The payload type we offer for telephone-event (RFC 4733).
pub const DTMF_PT: u8 = 101;
/// Media direction (RFC 3264 §5.1, §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction the other side of a stream has.
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The SDP attribute (RFC 4566 §6) naming this direction.
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}
