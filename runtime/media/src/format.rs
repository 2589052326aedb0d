//! How a stream's audio is laid out in RTP payloads: G.711 (one byte per
//! sample) towards phones and trunks, or 16-bit linear PCM (L16, RFC 3551
//! §4.5.11, network byte order) between our own mixers, where a second
//! G.711 quantisation of audio that was already mixed would be audible
//! and the link's bandwidth is ours.

use crate::codec::Codec;
use crate::g711::Law;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    G711(Law),
    L16,
}

impl Format {
    /// The format a negotiated codec sends.
    pub fn of(codec: Codec) -> Format {
        if codec == Codec::L16 {
            Format::L16
        } else {
            Format::G711(Law::of(codec))
        }
    }

    /// The format of a received payload type, given the stream's codec:
    /// PCMU and PCMA always (a peer may switch between the two it was
    /// offered), L16 only on a stream set up for it.
    pub fn of_received(pt: u8, codec: Codec) -> Option<Format> {
        match pt {
            0 => Some(Format::G711(Law::Mu)),
            8 => Some(Format::G711(Law::A)),
            _ if codec == Codec::L16 && pt == Codec::L16.pt => Some(Format::L16),
            _ => None,
        }
    }

    pub fn bytes_per_sample(self) -> usize {
        match self {
            Format::G711(_) => 1,
            Format::L16 => 2,
        }
    }

    /// Encodes `samples` into `out`, which holds
    /// `samples.len() * bytes_per_sample()` bytes.
    pub fn encode(self, samples: &[i16], out: &mut [u8]) {
        match self {
            Format::G711(law) => law.encode(samples, out),
            Format::L16 => {
                for (o, s) in out.chunks_exact_mut(2).zip(samples) {
                    o.copy_from_slice(&s.to_be_bytes());
                }
            }
        }
    }

    /// Decodes `payload` into `out`; returns how many samples it wrote
    /// (at most `out.len()`, an odd trailing byte of L16 ignored).
    pub fn decode(self, payload: &[u8], out: &mut [i16]) -> usize {
        match self {
            Format::G711(law) => {
                let n = payload.len().min(out.len());
                for (o, b) in out.iter_mut().zip(&payload[..n]) {
                    *o = law.decode_sample(*b);
                }
                n
            }
            Format::L16 => {
                let n = (payload.len() / 2).min(out.len());
                for (o, b) in out.iter_mut().zip(payload.chunks_exact(2)).take(n) {
                    *o = i16::from_be_bytes([b[0], b[1]]);
                }
                n
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l16_is_lossless_and_big_endian() {
        let samples = [0i16, 1, -1, i16::MAX, i16::MIN, 1234, -4321];
        let mut bytes = [0u8; 14];
        Format::L16.encode(&samples, &mut bytes);
        assert_eq!(&bytes[2..6], &[0x00, 0x01, 0xff, 0xff]);
        let mut back = [0i16; 7];
        assert_eq!(Format::L16.decode(&bytes, &mut back), 7);
        assert_eq!(back, samples);
        // An odd byte at the end is no sample.
        assert_eq!(Format::L16.decode(&bytes[..5], &mut back), 2);
    }

    #[test]
    fn l16_is_received_only_on_a_stream_set_up_for_it() {
        let l16 = Codec::L16.pt;
        assert_eq!(Format::of_received(l16, Codec::L16), Some(Format::L16));
        assert_eq!(Format::of_received(l16, Codec::PCMU), None);
        assert_eq!(
            Format::of_received(8, Codec::L16),
            Some(Format::G711(Law::A))
        );
        assert!(!Codec::ALL.contains(&Codec::L16), "never offered to peers");
        assert_eq!(Codec::from_pt(l16), None);
    }
}
