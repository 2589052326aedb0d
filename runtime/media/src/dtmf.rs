//! DTMF as RFC 4733 telephone-events: the payload, a [`Receiver`] that
//! reports each key press once, and a [`Sender`] that paces a digit string
//! into one step per 20 ms packet.
//!
//! ```text
//!  payload:  | event (8) |E|R| volume (6) |        duration (16)        |
//!  sender, per digit (one step per tick, all with the event's timestamp):
//!    tone ×8 (M on the first, duration 160, 320 … 1280; the 8th has E)
//!    end ×2 more (E, duration 1280: three end packets in all, §2.5.1.4)
//!    pause ×4 (80 ms of audio before the next digit); 'w' is pause ×25
//! ```
//!
//! The tone lasts [`TONE_MS`] = 160 ms, the Duration=160 that SIP INFO
//! (application/dtmf-relay) uses, so both ways of sending sound alike.
//! A peer without telephone-event gets the same steps rendered in band by
//! [`inband`].

use super::{FRAME_MS, FRAME_SAMPLES, RATE};

/// How long each digit's tone lasts.
pub const TONE_MS: u32 = 160;
/// Silence between two digits.
pub const GAP_MS: u32 = 80;
/// What a `w` in a digit string waits.
pub const PAUSE_MS: u32 = 500;
/// The volume we send: -10 dBm0, a typical keypad level (§2.3.4).
pub const VOLUME: u8 = 10;
/// End packets are sent three times in all (§2.5.1.4).
const END_PACKETS: u32 = 3;
const TONE_TICKS: u32 = TONE_MS / FRAME_MS;
const GAP_TICKS: u32 = GAP_MS / FRAME_MS;
const PAUSE_TICKS: u32 = PAUSE_MS / FRAME_MS;
/// Marks a `w` among event codes.
const PAUSE: u8 = 0xff;

const DIGITS: &[u8; 16] = b"0123456789*#ABCD";

/// The event code of a keypad digit (§3.2): 0–9, * = 10, # = 11, A–D = 12–15.
pub fn code(digit: char) -> Option<u8> {
    let d = digit.to_ascii_uppercase();
    DIGITS
        .iter()
        .position(|&c| char::from(c) == d)
        .map(|i| i as u8)
}

/// The keypad digit of an event code, `None` for other events (flash, ...).
pub fn digit(code: u8) -> Option<char> {
    DIGITS.get(usize::from(code)).map(|&c| char::from(c))
}

/// The four bytes of a telephone-event payload (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    pub event: u8,
    /// The E bit: this is (a retransmission of) the event's last packet.
    pub end: bool,
    /// Power level in -dBm0, 0–63.
    pub volume: u8,
    /// In timestamp units since the event's timestamp.
    pub duration: u16,
}

impl Payload {
    /// Reads the first event of a payload; `None` when it is too short.
    pub fn parse(payload: &[u8]) -> Option<Payload> {
        let b = payload.first_chunk::<4>()?;
        Some(Payload {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let [hi, lo] = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            hi,
            lo,
        ]
    }
}

/// The last event heard, to recognise its other packets.
#[derive(Debug, Clone, Copy)]
struct Heard {
    ts: u32,
    event: u8,
    end: bool,
    duration: u16,
}

/// Turns received telephone-event packets into digits, each once.
///
/// All packets of one event carry its timestamp, so the timestamp is the
/// key: the first packet seen of a new timestamp reports the digit (even if
/// it is the end packet: the earlier ones were lost), and every later
/// packet with it is ignored. Pressing the same key again is a new event
/// with a new timestamp, so a new digit. Packets older than the last event
/// (a reordered end packet) are ignored too.
#[derive(Debug, Clone, Default)]
pub struct Receiver {
    last: Option<Heard>,
}

impl Receiver {
    /// Feeds one packet's timestamp and payload; returns the digit the
    /// first time an event is seen.
    pub fn packet(&mut self, ts: u32, payload: &Payload) -> Option<char> {
        let now = Heard {
            ts,
            event: payload.event,
            end: payload.end,
            duration: payload.duration,
        };
        if let Some(last) = self.last.as_mut() {
            let ahead = ts.wrapping_sub(last.ts) as i32;
            if ahead == 0 {
                last.end |= now.end;
                last.duration = last.duration.max(now.duration);
                return None;
            }
            if ahead < 0 {
                return None;
            }
            // An event longer than the 16-bit duration goes on in a new
            // segment stamped where the last one ended (§2.5.1.3).
            let segment = !last.end && last.event == now.event && ahead == i32::from(last.duration);
            if segment {
                *last = now;
                return None;
            }
        }
        self.last = Some(now);
        digit(payload.event)
    }
}

/// What to send at one tick of a digit string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A telephone-event packet. `start`: the first of its event (new
    /// timestamp, marker bit); `resend`: a retransmitted end packet (in
    /// band: no tone).
    Tone {
        payload: Payload,
        start: bool,
        resend: bool,
    },
    /// No event now: the stream sends its audio as usual.
    Pause,
    /// The string is sent.
    Done,
}

/// Paces a digit string, one [`Step`] per 20 ms tick.
#[derive(Debug, Clone)]
pub struct Sender {
    /// Event codes, [`PAUSE`] for `w`.
    items: Vec<u8>,
    index: usize,
    /// Ticks spent in the current item.
    phase: u32,
}

impl Sender {
    /// Keypad digits (any case) and `w`; other characters are skipped.
    pub fn new(digits: &str) -> Self {
        let items = digits
            .chars()
            .filter_map(|c| {
                if c.eq_ignore_ascii_case(&'w') {
                    Some(PAUSE)
                } else {
                    code(c)
                }
            })
            .collect();
        Sender {
            items,
            index: 0,
            phase: 0,
        }
    }

    /// The step of the next tick; [`Step::Done`] from the end on.
    pub fn next_step(&mut self) -> Step {
        while let Some(&item) = self.items.get(self.index) {
            let last = self.index + 1 == self.items.len();
            let ticks = match item {
                PAUSE => PAUSE_TICKS,
                _ if last => TONE_TICKS + END_PACKETS - 1,
                _ => TONE_TICKS + END_PACKETS - 1 + GAP_TICKS,
            };
            if self.phase >= ticks {
                self.index += 1;
                self.phase = 0;
                continue;
            }
            let p = self.phase;
            self.phase += 1;
            if item == PAUSE || p >= TONE_TICKS + END_PACKETS - 1 {
                return Step::Pause;
            }
            let duration = (p.min(TONE_TICKS - 1) + 1) * FRAME_SAMPLES as u32;
            let payload = Payload {
                event: item,
                end: p >= TONE_TICKS - 1,
                volume: VOLUME,
                duration: duration as u16,
            };
            return Step::Tone {
                payload,
                start: p == 0,
                resend: p >= TONE_TICKS,
            };
        }
        Step::Done
    }
}

/// The row and column frequencies of a keypad event (ITU-T Q.23).
fn frequencies(event: u8) -> (f64, f64) {
    const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    // (row, column) of 0–9, *, #, A–D.
    const KEYS: [(u8, u8); 16] = [
        (3, 1),
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 1),
        (1, 2),
        (2, 0),
        (2, 1),
        (2, 2),
        (3, 0),
        (3, 2),
        (0, 3),
        (1, 3),
        (2, 3),
        (3, 3),
    ];
    let (r, c) = KEYS[usize::from(event & 0x0f)];
    (ROWS[usize::from(r)], COLS[usize::from(c)])
}

/// Writes the in-band dual tone of `event` into `out`, `offset` samples
/// after the tone began (so consecutive frames join without a click).
pub fn inband(event: u8, offset: usize, out: &mut [i16]) {
    let (low, high) = frequencies(event);
    let w = 2.0 * std::f64::consts::PI / f64::from(RATE);
    // Each tone at about -7 dBm0, like a keypad.
    let amplitude = 0.2 * f64::from(i16::MAX);
    for (i, o) in out.iter_mut().enumerate() {
        let n = (offset + i) as f64;
        *o = (amplitude * ((w * low * n).sin() + (w * high * n).sin())) as i16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::goertzel;

    #[test]
    fn digits_and_codes_map_both_ways() {
        for (i, d) in "0123456789*#ABCD".chars().enumerate() {
            assert_eq!(code(d), Some(i as u8));
            assert_eq!(digit(i as u8), Some(d));
        }
        assert_eq!(code('b'), Some(13));
        assert_eq!(code('x'), None);
        assert_eq!(digit(16), None);
    }

    #[test]
    fn payload_round_trip_and_short_input() {
        let p = Payload {
            event: 11,
            end: true,
            volume: 10,
            duration: 1280,
        };
        assert_eq!(p.to_bytes(), [11, 0x8a, 0x05, 0x00]);
        assert_eq!(Payload::parse(&p.to_bytes()), Some(p));
        assert_eq!(Payload::parse(&[1, 2, 3]), None);
        // The reserved bit is ignored.
        assert_eq!(Payload::parse(&[1, 0x4a, 0, 160]).unwrap().volume, 10);
    }

    fn pkt(event: u8, end: bool, duration: u16) -> Payload {
        Payload {
            event,
            end,
            volume: 10,
            duration,
        }
    }

    #[test]
    fn retransmitted_end_packets_give_one_digit() {
        let mut rx = Receiver::default();
        assert_eq!(rx.packet(1000, &pkt(5, false, 160)), Some('5'));
        assert_eq!(rx.packet(1000, &pkt(5, false, 320)), None);
        for _ in 0..3 {
            assert_eq!(rx.packet(1000, &pkt(5, true, 480)), None);
        }
    }

    #[test]
    fn the_same_key_twice_gives_two_digits() {
        let mut rx = Receiver::default();
        assert_eq!(
            rx.packet(1000, &pkt(1, true, 480)),
            Some('1'),
            "end packet first: still one"
        );
        assert_eq!(rx.packet(3000, &pkt(1, false, 160)), Some('1'));
        // A late end packet of the first press is not a third.
        assert_eq!(rx.packet(1000, &pkt(1, true, 480)), None);
        // Non-digit events (16 = flash) are swallowed but still keyed.
        assert_eq!(rx.packet(5000, &pkt(16, false, 160)), None);
        assert_eq!(rx.packet(5000, &pkt(16, true, 320)), None);
    }

    #[test]
    fn a_long_event_in_segments_is_one_digit() {
        let mut rx = Receiver::default();
        assert_eq!(rx.packet(0, &pkt(9, false, 65535)), Some('9'));
        assert_eq!(rx.packet(65535, &pkt(9, false, 160)), None);
        assert_eq!(rx.packet(65535, &pkt(9, true, 320)), None);
    }

    #[test]
    fn sender_paces_tones_ends_and_gaps() {
        let mut tx = Sender::new("1x#");
        let mut steps = Vec::new();
        loop {
            match tx.next_step() {
                Step::Done => break,
                s => steps.push(s),
            }
        }
        // Two digits of 8 + 2 packets, one gap of 4 between them.
        assert_eq!(steps.len(), 10 + 4 + 10);
        let tone = |i: usize| match steps[i] {
            Step::Tone {
                payload,
                start,
                resend,
            } => (payload, start, resend),
            s => panic!("{i}: {s:?}"),
        };
        assert_eq!(tone(0), (pkt(1, false, 160), true, false));
        assert_eq!(tone(6), (pkt(1, false, 1120), false, false));
        assert_eq!(tone(7), (pkt(1, true, 1280), false, false));
        assert_eq!(tone(8), (pkt(1, true, 1280), false, true));
        assert_eq!(tone(9), (pkt(1, true, 1280), false, true));
        assert!(steps[10..14].iter().all(|s| *s == Step::Pause));
        assert_eq!(tone(14), (pkt(11, false, 160), true, false));
        assert_eq!(tone(23), (pkt(11, true, 1280), false, true));
        assert_eq!(tx.next_step(), Step::Done);
    }

    #[test]
    fn w_waits_half_a_second() {
        let mut tx = Sender::new("w");
        let pauses = std::iter::from_fn(|| Some(tx.next_step())).take_while(|s| *s == Step::Pause);
        assert_eq!(pauses.count(), 25);
        assert_eq!(Sender::new("").next_step(), Step::Done);
    }

    #[test]
    fn inband_tones_carry_both_frequencies() {
        let mut frame = [0i16; 800];
        inband(code('5').unwrap(), 0, &mut frame);
        assert!(goertzel(&frame, 770.0) > 0.02);
        assert!(goertzel(&frame, 1336.0) > 0.02);
        assert!(goertzel(&frame, 697.0) < 0.005);
    }
}
