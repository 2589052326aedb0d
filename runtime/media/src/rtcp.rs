//! RTCP (RFC 3550 §6): sender and receiver reports with an SDES CNAME, and
//! the per-source receive statistics they carry (Appendix A.1, A.3, A.8).
//!
//! ```text
//!  RTP in ─► Source::update / arrival ─► report() ─► ReportBlock ─┐
//!  our sent counts ─► SenderInfo ──────────────────────────────────┴► write_sr / write_rr + write_sdes
//!  RTCP in ─► packets() ─► Packet::{Sender, Receiver, ..} ─► blocks() about us
//! ```
//!
//! We write the few dozen bytes ourselves rather than use webrtc-rs `rtcp`:
//! that crate brings `webrtc-util` (and with it tokio, nix, ipnet, ...) for
//! a packet sent every five seconds, and its `unmarshal` hands back
//! `Vec<Box<dyn Packet>>` that must be downcast. Parsing here borrows the
//! datagram, checks every length against it and never panics.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
/// SDES item type of the canonical name (RFC 3550 §6.5.1).
const SDES_CNAME: u8 = 1;
/// A report block is six 32-bit words (§6.4.1).
const BLOCK_LEN: usize = 24;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// RFC 3550 Appendix A.1.
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RtcpError {
    /// A header or body shorter than its length field or report count says.
    #[error("truncated RTCP packet")]
    Short,
    /// Not version 2.
    #[error("not RTCP version 2")]
    Version,
}

/// The sender info of an SR (§6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// 64-bit NTP timestamp (32.32 fixed point seconds since 1900).
    pub ntp: u64,
    /// The RTP timestamp of the same instant.
    pub rtp_ts: u32,
    pub packets: u32,
    pub octets: u32,
}

/// One reception report block (§6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block is about.
    pub ssrc: u32,
    /// Lost since the last report, as a fraction of 256.
    pub fraction_lost: u8,
    /// Cumulative lost (24-bit signed: duplicates can make it negative).
    pub lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR from that source.
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

/// The 64-bit NTP timestamp of a wall-clock time.
pub fn ntp(wall: SystemTime) -> u64 {
    let since = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of an NTP timestamp: what LSR and RTT use (§6.4.1).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A duration in the 1/65536 s units of DLSR and RTT.
pub fn to_units(d: Duration) -> u32 {
    ((d.as_micros() << 16) / 1_000_000).min(u128::from(u32::MAX)) as u32
}

pub fn from_units(units: u32) -> Duration {
    Duration::from_micros((u64::from(units) * 1_000_000) >> 16)
}

/// Appends the common header; `len` is the whole packet length in bytes
/// (a multiple of four).
fn header(out: &mut Vec<u8>, count: u8, pt: u8, len: usize) {
    out.push(0x80 | (count & 0x1f));
    out.push(pt);
    out.extend_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
}

fn block(out: &mut Vec<u8>, b: &ReportBlock) {
    out.extend_from_slice(&b.ssrc.to_be_bytes());
    let lost = b.lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0xff_ffff;
    out.extend_from_slice(&((u32::from(b.fraction_lost) << 24) | lost).to_be_bytes());
    for word in [b.highest_seq, b.jitter, b.lsr, b.dlsr] {
        out.extend_from_slice(&word.to_be_bytes());
    }
}

/// Appends a sender report. At most 31 blocks are written (the RC field).
pub fn write_sr(out: &mut Vec<u8>, ssrc: u32, info: &SenderInfo, blocks: &[ReportBlock]) {
    let blocks = &blocks[..blocks.len().min(31)];
    header(
        out,
        blocks.len() as u8,
        PT_SR,
        28 + BLOCK_LEN * blocks.len(),
    );
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&info.ntp.to_be_bytes());
    for word in [info.rtp_ts, info.packets, info.octets] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    blocks.iter().for_each(|b| block(out, b));
}

/// Appends a receiver report. At most 31 blocks are written.
pub fn write_rr(out: &mut Vec<u8>, ssrc: u32, blocks: &[ReportBlock]) {
    let blocks = &blocks[..blocks.len().min(31)];
    header(out, blocks.len() as u8, PT_RR, 8 + BLOCK_LEN * blocks.len());
    out.extend_from_slice(&ssrc.to_be_bytes());
    blocks.iter().for_each(|b| block(out, b));
}

/// Appends an SDES packet with one chunk holding the CNAME (§6.5), which
/// every compound packet must carry (§6.1). Longer names are cut at 255.
pub fn write_sdes(out: &mut Vec<u8>, ssrc: u32, cname: &str) {
    let name = &cname.as_bytes()[..cname.len().min(255)];
    // SSRC, type, length, text, then at least one null octet to a word.
    let chunk = (4 + 2 + name.len() + 1).next_multiple_of(4);
    header(out, 1, PT_SDES, 4 + chunk);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(SDES_CNAME);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.resize(out.len() + chunk - 4 - 2 - name.len(), 0);
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    Sender {
        ssrc: u32,
        info: SenderInfo,
        blocks: Blocks<'a>,
    },
    Receiver {
        ssrc: u32,
        blocks: Blocks<'a>,
    },
    /// SDES, BYE, APP and anything else: its packet type.
    Other(u8),
}

/// The packets of a compound datagram, in order; the first malformed one
/// yields an error and ends the iteration.
pub fn packets(buf: &[u8]) -> Packets<'_> {
    Packets { rest: buf }
}

#[derive(Debug, Clone)]
pub struct Packets<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Packets<'a> {
    type Item = Result<Packet<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.parse_one();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

impl<'a> Packets<'a> {
    fn parse_one(&mut self) -> Result<Packet<'a>, RtcpError> {
        let buf = self.rest;
        if buf.len() < 4 {
            return Err(RtcpError::Short);
        }
        if buf[0] >> 6 != 2 {
            return Err(RtcpError::Version);
        }
        let count = usize::from(buf[0] & 0x1f);
        let pt = buf[1];
        let len = (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1) * 4;
        let body = buf.get(4..len).ok_or(RtcpError::Short)?;
        self.rest = &buf[len..];
        let word =
            |at: usize| u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        match pt {
            PT_SR => {
                let blocks = body
                    .get(24..24 + BLOCK_LEN * count)
                    .ok_or(RtcpError::Short)?;
                let info = SenderInfo {
                    ntp: (u64::from(word(4)) << 32) | u64::from(word(8)),
                    rtp_ts: word(12),
                    packets: word(16),
                    octets: word(20),
                };
                Ok(Packet::Sender {
                    ssrc: word(0),
                    info,
                    blocks: Blocks { rest: blocks },
                })
            }
            PT_RR => {
                let blocks = body.get(4..4 + BLOCK_LEN * count).ok_or(RtcpError::Short)?;
                Ok(Packet::Receiver {
                    ssrc: word(0),
                    blocks: Blocks { rest: blocks },
                })
            }
            other => Ok(Packet::Other(other)),
        }
    }
}

/// The report blocks of an SR or RR (their lengths already checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocks<'a> {
    rest: &'a [u8],
}

impl Iterator for Blocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        let (b, rest) = self.rest.split_first_chunk::<BLOCK_LEN>()?;
        self.rest = rest;
        let word = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        // Sign-extend the 24-bit cumulative loss.
        let lost = ((word(4) << 8) as i32) >> 8;
        Some(ReportBlock {
            ssrc: word(0),
            fraction_lost: b[4],
            lost,
            highest_seq: word(8),
            jitter: word(12),
            lsr: word(16),
            dlsr: word(20),
        })
    }
}

/// What [`Source::update`] made of a sequence number (RFC 3550 A.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seq {
    /// In order, a little late, or a duplicate: use the packet.
    Valid,
    /// A jump too big to trust; dropped unless the next packet follows it.
    Jumped,
    /// The second packet in sequence after a jump: the source restarted
    /// (counts reset); use the packet and reset what depends on order.
    Restarted,
}

/// What we know of the peer's stream: sequence tracking, loss and jitter.
#[derive(Debug, Clone)]
pub struct Source {
    pub ssrc: u32,
    max_seq: u16,
    /// Sequence wraps, pre-shifted (multiples of 65536).
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Relative transit time of the previous packet.
    transit: Option<u32>,
    /// Jitter × 16 (the integer form of A.8), wide enough that forged
    /// timestamps cannot overflow it.
    jitter: u64,
}

impl Source {
    /// A source first heard with `seq`.
    pub fn new(ssrc: u32, seq: u16) -> Self {
        let mut s = Source {
            ssrc,
            max_seq: seq,
            cycles: 0,
            base_seq: 0,
            bad_seq: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter: 0,
        };
        s.restart(seq);
        s
    }

    fn restart(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = u32::from(seq) + 65537; // no match until set
        self.cycles = 0;
        self.received = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
        self.transit = None;
    }

    /// Counts a packet with `seq` (A.1, without probation: the first packet
    /// of a call is audio we want).
    pub fn update(&mut self, seq: u16) -> Seq {
        let delta = seq.wrapping_sub(self.max_seq);
        let mut verdict = Seq::Valid;
        if delta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(1 << 16);
            }
            self.max_seq = seq;
        } else if delta <= u16::MAX - MAX_MISORDER {
            if u32::from(seq) == self.bad_seq {
                self.restart(seq);
                verdict = Seq::Restarted;
            } else {
                self.bad_seq = (u32::from(seq) + 1) & 0xffff;
                return Seq::Jumped;
            }
        }
        self.received = self.received.wrapping_add(1);
        verdict
    }

    /// Updates the interarrival jitter (A.8) with a packet stamped `ts`
    /// that arrived at `arrival`, both in timestamp units.
    pub fn arrival(&mut self, arrival: u32, ts: u32) {
        let transit = arrival.wrapping_sub(ts);
        if let Some(last) = self.transit {
            let d = u64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            // J += (|D| - J) / 16, kept ×16.
            self.jitter = self.jitter + d - ((self.jitter + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        (self.jitter >> 4).min(u64::from(u32::MAX)) as u32
    }

    pub fn highest_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn expected(&self) -> u32 {
        self.highest_seq()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    /// Packets lost since the start (negative with duplicates).
    pub fn lost(&self) -> i32 {
        self.expected().wrapping_sub(self.received) as i32
    }

    pub fn received(&self) -> u32 {
        self.received
    }

    /// A report block about this source (A.3); starts a new interval for
    /// the fraction lost.
    pub fn report(&mut self, lsr: u32, dlsr: u32) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            lost: self.lost(),
            highest_seq: self.highest_seq(),
            jitter: self.jitter(),
            lsr,
            dlsr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(ssrc: u32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 64,
            lost: -3,
            highest_seq: 0x1_0005,
            jitter: 12,
            lsr: 0xdead_beef,
            dlsr: 65536,
        }
    }

    #[test]
    fn compound_sr_with_sdes_parses_back() {
        let info = SenderInfo {
            ntp: 0x0102_0304_0506_0708,
            rtp_ts: 9,
            packets: 10,
            octets: 11,
        };
        let mut out = Vec::new();
        write_sr(&mut out, 7, &info, &[block(1), block(2)]);
        assert_eq!(out.len(), 28 + 48);
        write_sdes(&mut out, 7, "abc@x");
        assert_eq!(out.len() % 4, 0);
        let got: Vec<_> = packets(&out).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        let Packet::Sender {
            ssrc,
            info: i,
            blocks,
        } = got[0]
        else {
            panic!("{got:?}")
        };
        assert_eq!((ssrc, i), (7, info));
        assert_eq!(blocks.collect::<Vec<_>>(), vec![block(1), block(2)]);
        assert_eq!(got[1], Packet::Other(PT_SDES));
    }

    #[test]
    fn rr_round_trip_and_sdes_padding() {
        let mut out = Vec::new();
        write_rr(&mut out, 5, &[block(9)]);
        for name in ["", "a", "ab", "abc", "abcd"] {
            let mut sdes = Vec::new();
            write_sdes(&mut sdes, 5, name);
            assert_eq!(sdes.len() % 4, 0, "{name:?}");
            // Header, SSRC, type and length, the name, a null octet.
            assert!(sdes.len() > 4 + 4 + 2 + name.len(), "{name:?}");
        }
        let got: Vec<_> = packets(&out).collect();
        let Ok(Packet::Receiver { ssrc: 5, blocks }) = got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(blocks.collect::<Vec<_>>(), vec![block(9)]);
    }

    #[test]
    fn garbage_ends_the_iteration_with_an_error() {
        assert_eq!(packets(&[]).count(), 0);
        assert_eq!(
            packets(&[0x80]).collect::<Vec<_>>(),
            vec![Err(RtcpError::Short)]
        );
        assert_eq!(
            packets(&[0x40, 200, 0, 0]).next(),
            Some(Err(RtcpError::Version))
        );
        // Length says 8 words, 1 present.
        assert_eq!(
            packets(&[0x80, 201, 0, 7, 0, 0, 0, 1]).next(),
            Some(Err(RtcpError::Short))
        );
        // RR claiming 3 blocks in a 2-word body.
        assert_eq!(
            packets(&[0x83, 201, 0, 1, 0, 0, 0, 1]).next(),
            Some(Err(RtcpError::Short))
        );
        // SR without its sender info.
        assert_eq!(
            packets(&[0x80, 200, 0, 1, 0, 0, 0, 1]).next(),
            Some(Err(RtcpError::Short))
        );
        let mut after = Vec::new();
        write_rr(&mut after, 1, &[]);
        after.extend([0x80, 201, 0xff, 0xff]);
        let got: Vec<_> = packets(&after).collect();
        assert!(matches!(
            got[..],
            [Ok(Packet::Receiver { .. }), Err(RtcpError::Short)]
        ));
    }

    #[test]
    fn ntp_and_units() {
        let wall = UNIX_EPOCH + Duration::from_millis(1500);
        let n = ntp(wall);
        assert_eq!(n >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(n as u32, 1 << 31);
        assert_eq!(
            ntp_middle(n),
            (((NTP_UNIX_OFFSET + 1) as u32) << 16) | 0x8000
        );
        assert_eq!(to_units(Duration::from_millis(500)), 32768);
        assert_eq!(from_units(32768), Duration::from_millis(500));
    }

    #[test]
    fn loss_fraction_and_wrap() {
        let mut s = Source::new(1, 65530);
        for seq in (65530..=65535).chain(0..10).filter(|s| s % 4 != 0) {
            assert_eq!(s.update(seq), Seq::Valid);
        }
        assert_eq!(s.highest_seq(), 65536 + 9);
        // 16 expected (65530..=9), 4 of them multiples of four missing
        // (65532, 0, 4, 8).
        let r = s.report(0, 0);
        assert_eq!(r.lost, 4);
        assert_eq!(r.fraction_lost, (4 * 256 / 16) as u8);
        assert_eq!(s.report(0, 0).fraction_lost, 0, "new interval");
        // A duplicate makes the cumulative count go down.
        s.update(9);
        assert_eq!(s.lost(), 3);
    }

    #[test]
    fn a_jump_is_trusted_only_when_the_next_packet_follows() {
        let mut s = Source::new(1, 100);
        assert_eq!(s.update(20_000), Seq::Jumped);
        assert_eq!(s.update(101), Seq::Valid);
        assert_eq!(s.update(30_000), Seq::Jumped);
        assert_eq!(s.update(30_001), Seq::Restarted);
        assert_eq!(s.highest_seq(), 30_001);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn jitter_follows_a_8() {
        let mut s = Source::new(1, 0);
        // Steady 20 ms spacing: no jitter.
        for i in 0..10u32 {
            s.arrival(1000 + i * 160, i * 160);
        }
        assert_eq!(s.jitter(), 0);
        // Transit alternating by 80 samples (10 ms): |D| = 80, J → 80.
        for i in 10..400u32 {
            let wobble = if i % 2 == 0 { 80 } else { 0 };
            s.arrival(1000 + i * 160 + wobble, i * 160);
        }
        assert!((70..=90).contains(&s.jitter()), "{}", s.jitter());
    }
}
