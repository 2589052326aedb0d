//! G.711 μ-law (PCMU) and A-law (PCMA), one packet at a time.
//!
//! The per-sample laws come from `audio-codec-algorithms` (the ITU-T
//! reference algorithms); this module applies them to frames and picks the
//! law from the negotiated codec.

use audio_codec_algorithms::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};

use crate::codec::Codec;

/// The G.711 law of a codec we negotiate (PCMU unless it is PCMA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    Mu,
    A,
}

impl Law {
    pub fn of(codec: Codec) -> Law {
        if codec == Codec::PCMA {
            Law::A
        } else {
            Law::Mu
        }
    }

    /// The encoded value of digital silence.
    pub fn silence(self) -> u8 {
        self.encode_sample(0)
    }

    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Law::Mu => encode_ulaw(sample),
            Law::A => encode_alaw(sample),
        }
    }

    pub fn decode_sample(self, byte: u8) -> i16 {
        match self {
            Law::Mu => decode_ulaw(byte),
            Law::A => decode_alaw(byte),
        }
    }

    /// Encodes `samples` into `out` (one byte per sample; `out` must be
    /// at least as long).
    pub fn encode(self, samples: &[i16], out: &mut [u8]) {
        for (o, s) in out.iter_mut().zip(samples) {
            *o = self.encode_sample(*s);
        }
    }

    /// Appends the decoded samples of `payload` to `out`.
    pub fn decode(self, payload: &[u8], out: &mut Vec<i16>) {
        out.extend(payload.iter().map(|b| self.decode_sample(*b)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_round_trip() {
        assert_eq!(Law::Mu.silence(), 0xFF);
        assert_eq!(Law::A.silence(), 0xD5);
        for law in [Law::Mu, Law::A] {
            for s in [-32000i16, -1000, -10, 0, 10, 1000, 32000] {
                let back = law.decode_sample(law.encode_sample(s));
                // 8-bit companding: error grows with magnitude, ≤ 1/16.
                assert!(
                    (back as i32 - s as i32).abs() <= (s as i32).abs() / 16 + 16,
                    "{law:?} {s} → {back}"
                );
            }
        }
    }

    #[test]
    fn frames() {
        let samples: Vec<i16> = (0..160).map(|i| (i * 100) as i16).collect();
        let mut bytes = [0u8; 160];
        Law::of(Codec::PCMA).encode(&samples, &mut bytes);
        let mut out = Vec::new();
        Law::A.decode(&bytes, &mut out);
        assert_eq!(out.len(), 160);
        assert_eq!(Law::of(Codec::PCMU), Law::Mu);
    }
}
