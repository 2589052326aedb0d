//! SIP signalling: transports, transactions, dialogs, registrar, call legs.
//!
//! ```text
//!  socket (serve/transport.rs, the tokio edge)
//!     │ bytes + Peer                      ▲ Transmit
//!     ▼                                   │
//!  message::parse_datagram / StreamFramer ── Rejection (400/505 reply or drop)
//!     │ rsip::SipMessage
//!     ▼
//!  transaction::Transactions (sans-IO, RFC 3261 §17 timers)
//!     │ TxEvent                           ▲ send_request / send_response
//!     ▼                                   │
//!  endpoint::Endpoint (sans-IO B2BUA): dialogs, registrar, call legs ──► router::Call
//!     (directory: which tenant and handler a request belongs to)
//! ```
//!
//! Everything below the transport edge is sans-IO: time comes in as `now`,
//! bytes and timers go out through `poll_*`, so every protocol path is
//! tested with a virtual clock and fuzzed without sockets.
//!
//! * [`message`] — syntax checks, framing, RFC 3261 §8.2 UAS checks, responses.
//! * [`transaction`] — RFC 3261 §17 client and server transactions.
//! * [`registrar`], [`digest`] — REGISTER, location service, digest auth.
//! * [`sdp`] — G.711 offer/answer.
//! * [`directory`] — tenants, numbers, domains, users, trunks.
//! * [`endpoint`] — calls: the caller's leg, verbs, dial forks, transfer.

// Tests start virtual clocks from `Instant::now()` and draw test ids from
// the thread RNG; the code itself never does (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod cdr;
pub mod digest;
pub mod directory;
pub mod endpoint;
pub mod gateway;
pub mod message;
pub mod registrar;
pub mod sdp;
pub mod transaction;

use std::fmt;
use std::net::SocketAddr;

/// The transport a message came in on or goes out on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// Reliable transports need no retransmissions (RFC 3261 §17.1.1.2).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The token used in a Via header (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

/// The far end of a message: where it came from, or where it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl Peer {
    pub fn new(transport: Transport, addr: SocketAddr) -> Self {
        Self { transport, addr }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

/// Bytes for the transport edge to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub peer: Peer,
    pub bytes: bytes::Bytes,
}

/// The randomness the SIP core draws from (tags, branches, Call-IDs, nonces):
/// a ChaCha generator the edge seeds from the OS, or a test from a constant,
/// so the core itself never reaches for the system's RNG.
pub type Rng = rand::rngs::StdRng;
