//! The measuring half of `media_load`, without sockets so that it is unit
//! tested (`cargo test -p switchyard --test media_load`, which includes
//! this file): RTP headers, per-stream timing and loss, the summary.
//!
//! Timing is RFC 3550's transit difference per packet: for a packet that
//! follows the previous one of its stream in sequence, D = (arrival −
//! previous arrival) − (RTP timestamp − previous timestamp) / 8 kHz. With
//! 20 ms packets and no loss that is |interval − 20 ms|; a lost packet does
//! not count as 40 ms of jitter (the timestamps step 320). The summary
//! gives p50/p99/max of |D| over every packet of every stream.
//!
//! Loss is from sequence gaps (RFC 3550 A.3: highest − first + 1 −
//! received, per SSRC); a stream that stopped sending before the window's
//! end is "stalled" (its tail loss has no gap to show it).
#![allow(dead_code)]

/// One RTP timestamp unit at 8 kHz, in ns.
pub const NS_PER_TICK: i64 = 125_000;
/// A stream whose last packet is older than this at the window's end stalled.
pub const STALL_NS: i64 = 100_000_000;

/// The fixed RTP header (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
}

impl Header {
    pub const LEN: usize = 12;

    /// The header of an RTP packet (version 2); `None` for short packets,
    /// other versions and RTCP (payload types 72..=76 with the marker).
    pub fn read(b: &[u8]) -> Option<Header> {
        if b.len() < Header::LEN || b[0] >> 6 != 2 || (200..=204).contains(&b[1]) {
            return None;
        }
        Some(Header {
            pt: b[1] & 0x7f,
            marker: b[1] & 0x80 != 0,
            seq: u16::from_be_bytes([b[2], b[3]]),
            ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })
    }

    /// Writes the header into the first 12 bytes of `out`.
    pub fn write(&self, out: &mut [u8]) {
        out[0] = 0x80;
        out[1] = self.pt & 0x7f | if self.marker { 0x80 } else { 0 };
        out[2..4].copy_from_slice(&self.seq.to_be_bytes());
        out[4..8].copy_from_slice(&self.ts.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
    }
}

/// `seq` extended next to the previous extended value (RFC 3550 A.1
/// without probation); the first starts high so that reordering before it
/// stays positive.
pub fn extend_seq(previous: Option<i64>, seq: u16) -> i64 {
    match previous {
        None => (1 << 32) + seq as i64,
        Some(p) => p + (seq.wrapping_sub(p as u16) as i16) as i64,
    }
}

/// One stream of the server, as received in the window.
#[derive(Debug, Default, Clone)]
pub struct Stream {
    /// Packets received (all SSRCs).
    pub received: u64,
    /// Packets that arrived after a later one of their stream.
    pub out_of_order: u64,
    /// Times the SSRC changed (a new sequence space starts).
    pub ssrc_changes: u32,
    /// Arrival of the last packet, ns.
    pub last_at_ns: i64,
    ssrc: Option<u32>,
    /// Lost in the SSRCs before the current one.
    lost_before: u64,
    first: i64,
    highest: i64,
    epoch_received: u64,
    /// The last in-order packet: its timestamp and arrival (ns).
    last: Option<(u32, i64)>,
}

impl Stream {
    /// Counts a packet that arrived at `at_ns`; pushes its |D| in µs onto
    /// `deviations` when it follows the previous packet in order.
    pub fn packet(&mut self, h: &Header, at_ns: i64, deviations: &mut Vec<u32>) {
        self.received += 1;
        self.last_at_ns = self.last_at_ns.max(at_ns);
        if self.ssrc != Some(h.ssrc) {
            if self.ssrc.is_some() {
                self.lost_before += self.epoch_lost();
                self.ssrc_changes += 1;
            }
            self.ssrc = Some(h.ssrc);
            let ext = extend_seq(None, h.seq);
            (self.first, self.highest, self.epoch_received) = (ext, ext, 1);
            self.last = Some((h.ts, at_ns));
            return;
        }
        self.epoch_received += 1;
        let ext = extend_seq(Some(self.highest), h.seq);
        if ext <= self.highest {
            self.out_of_order += 1;
            self.first = self.first.min(ext);
            return;
        }
        self.highest = ext;
        if let Some((ts, at)) = self.last {
            let ticks = h.ts.wrapping_sub(ts) as i32 as i64;
            if ticks > 0 {
                let d = (at_ns - at) - ticks * NS_PER_TICK;
                deviations.push((d.unsigned_abs() / 1000).min(u32::MAX as u64) as u32);
            }
        }
        self.last = Some((h.ts, at_ns));
    }

    fn epoch_lost(&self) -> u64 {
        let expected = (self.highest - self.first + 1) as u64;
        expected.saturating_sub(self.epoch_received)
    }

    /// Packets missing from the sequence (all SSRCs).
    pub fn lost(&self) -> u64 {
        self.lost_before
            + if self.ssrc.is_some() {
                self.epoch_lost()
            } else {
                0
            }
    }
}

/// The value at percentile `p` (0..=100) of `sorted`, nearest rank; 0 when empty.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// What the window showed over a set of streams.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub packets: u64,
    pub lost: u64,
    pub streams_with_loss: usize,
    pub out_of_order: u64,
    pub stalled: usize,
    pub jitter_p50_ms: f64,
    pub jitter_p99_ms: f64,
    pub jitter_max_ms: f64,
}

/// Sums `streams` up to the window's end `end_ns`; sorts `deviations`.
pub fn summarize<'a>(
    streams: impl IntoIterator<Item = &'a Stream>,
    deviations: &mut [u32],
    end_ns: i64,
) -> Summary {
    let mut s = Summary::default();
    for stream in streams {
        s.packets += stream.received;
        s.lost += stream.lost();
        s.streams_with_loss += usize::from(stream.lost() > 0);
        s.out_of_order += stream.out_of_order;
        s.stalled += usize::from(stream.received > 0 && end_ns - stream.last_at_ns > STALL_NS);
    }
    deviations.sort_unstable();
    let ms = |us: u32| us as f64 / 1000.0;
    s.jitter_p50_ms = ms(percentile(deviations, 50.0));
    s.jitter_p99_ms = ms(percentile(deviations, 99.0));
    s.jitter_max_ms = ms(deviations.last().copied().unwrap_or(0));
    s
}

/// utime + stime of a process (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" of comm: state is the 1st, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Some(ticks as f64 / hz as f64)
}

/// Resident memory of a process, KiB (VmRSS of /proc/PID/status).
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    fn h(seq: u16, ts: u32) -> Header {
        Header {
            pt: 0,
            marker: false,
            seq,
            ts,
            ssrc: 7,
        }
    }

    /// Feeds (seq, ts, arrival ms) packets to a fresh stream.
    fn feed(packets: &[(u16, u32, i64)]) -> (Stream, Vec<u32>) {
        let mut stream = Stream::default();
        let mut deviations = Vec::new();
        for &(seq, ts, at) in packets {
            stream.packet(&h(seq, ts), at * MS, &mut deviations);
        }
        (stream, deviations)
    }

    #[test]
    fn headers_round_trip_and_rtcp_is_not_rtp() {
        let header = Header {
            pt: 8,
            marker: true,
            seq: 65_535,
            ts: 0xdead_beef,
            ssrc: 42,
        };
        let mut bytes = [0u8; 12];
        header.write(&mut bytes);
        assert_eq!(Header::read(&bytes), Some(header));
        assert_eq!(Header::read(&bytes[..11]), None);
        bytes[1] = 200; // RTCP sender report
        assert_eq!(Header::read(&bytes), None);
        bytes[0] = 0x40;
        assert_eq!(Header::read(&bytes), None);
    }

    #[test]
    fn a_steady_stream_has_no_jitter_and_no_loss_across_the_seq_wrap() {
        let packets: Vec<(u16, u32, i64)> = (0..100)
            .map(|i| {
                (
                    65_500u16.wrapping_add(i),
                    1000 + 160 * i as u32,
                    20 * i as i64,
                )
            })
            .collect();
        let (stream, mut deviations) = feed(&packets);
        assert_eq!(
            (stream.received, stream.lost(), stream.out_of_order),
            (100, 0, 0)
        );
        assert_eq!(deviations.len(), 99);
        let s = summarize([&stream], &mut deviations, 2000 * MS);
        assert_eq!((s.jitter_p50_ms, s.jitter_max_ms, s.stalled), (0.0, 0.0, 0));
    }

    #[test]
    fn a_late_packet_shows_its_lateness_twice() {
        // The third packet is 3 ms late: its interval is 23 ms, the next 17.
        let (_, deviations) = feed(&[(1, 0, 0), (2, 160, 20), (3, 320, 43), (4, 480, 60)]);
        assert_eq!(deviations, [0, 3000, 3000]);
    }

    #[test]
    fn a_gap_is_loss_not_jitter() {
        let (stream, deviations) = feed(&[(1, 0, 0), (2, 160, 20), (5, 640, 80), (6, 800, 100)]);
        assert_eq!(stream.lost(), 2);
        assert_eq!(deviations, [0, 0, 0]);
        let s = summarize(
            [&stream, &Stream::default()],
            &mut deviations.clone(),
            100 * MS,
        );
        assert_eq!((s.packets, s.lost, s.streams_with_loss), (4, 2, 1));
    }

    #[test]
    fn reordering_is_counted_and_not_loss() {
        let (stream, deviations) = feed(&[(1, 0, 0), (3, 320, 40), (2, 160, 41), (4, 480, 60)]);
        assert_eq!((stream.lost(), stream.out_of_order), (0, 1));
        assert_eq!(deviations, [0, 0]);
        // A packet older than the first of the window widens the range.
        let (stream, _) = feed(&[(10, 1600, 0), (9, 1440, 1), (11, 1760, 20)]);
        assert_eq!((stream.lost(), stream.out_of_order), (0, 1));
    }

    #[test]
    fn a_new_ssrc_starts_a_new_sequence_and_keeps_the_old_loss() {
        let mut stream = Stream::default();
        let mut deviations = Vec::new();
        for (seq, at) in [(1u16, 0i64), (3, 40)] {
            stream.packet(&h(seq, seq as u32 * 160), at * MS, &mut deviations);
        }
        let other = Header {
            ssrc: 8,
            ..h(40_000, 0)
        };
        stream.packet(&other, 60 * MS, &mut deviations);
        stream.packet(
            &Header {
                seq: 40_001,
                ts: 160,
                ..other
            },
            80 * MS,
            &mut deviations,
        );
        assert_eq!(
            (stream.lost(), stream.ssrc_changes, stream.received),
            (1, 1, 4)
        );
        assert_eq!(deviations, [0, 0]);
    }

    #[test]
    fn a_stream_that_stopped_early_is_stalled() {
        let (stream, mut deviations) = feed(&[(1, 0, 0), (2, 160, 20)]);
        let at_end = summarize([&stream], &mut deviations, 100 * MS);
        assert_eq!(at_end.stalled, 0);
        let later = summarize([&stream], &mut deviations, 500 * MS);
        assert_eq!(later.stalled, 1);
        // A stream that got nothing is not "stalled" (the caller counts it).
        assert_eq!(
            summarize([&Stream::default()], &mut [], 500 * MS).stalled,
            0
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), 50);
        assert_eq!(percentile(&sorted, 99.0), 99);
        assert_eq!(percentile(&sorted, 100.0), 100);
        assert_eq!(percentile(&[5], 99.0), 5);
        assert_eq!(percentile(&[], 50.0), 0);
        let mut d = vec![3000, 1000, 2000];
        let s = summarize([], &mut d, 0);
        assert_eq!(
            (s.jitter_p50_ms, s.jitter_p99_ms, s.jitter_max_ms),
            (2.0, 3.0, 3.0)
        );
    }
}
