//! Opus for a client that offers no G.711, transcoded to and from μ-law
//! 20 ms at a time. libopus (the `opus` crate, which builds the reference
//! library from source) runs at 8 kHz on both sides: it resamples inside
//! its decoder and takes narrowband input in its encoder, so no resampler
//! of ours sits in the path, and nothing above the telephone band is
//! encoded that a SIP leg could not carry anyway.

use opus::{Application, Bandwidth, Channels, Decoder, Encoder};
use switchyard_media::g711::Law;

/// Samples per 20 ms at 8 kHz.
const FRAME: usize = 160;
/// The longest Opus packet (120 ms) at 8 kHz.
const LONGEST: usize = 960;
/// Encoder complexity (0-10, libopus's default 10). The encoder is most of
/// an Opus client's cost: a frame each way (`opus-frame-each-way`) took
/// 35.9 µs at 5 and 17.5 µs at 1; narrowband speech needs no more.
const COMPLEXITY: i32 = 1;

/// One client's Opus encoder and decoder.
pub struct Transcoder {
    encoder: Encoder,
    decoder: Decoder,
    pcm: Vec<i16>,
    packet: Vec<u8>,
}

impl Transcoder {
    pub fn new() -> Result<Self, String> {
        let mut encoder = Encoder::new(8_000, Channels::Mono, Application::Voip)
            .map_err(|e| format!("Opus encoder: {e}"))?;
        let set = encoder
            .set_complexity(COMPLEXITY)
            .and_then(|()| encoder.set_max_bandwidth(Bandwidth::Narrowband));
        set.map_err(|e| format!("Opus encoder: {e}"))?;
        let decoder =
            Decoder::new(8_000, Channels::Mono).map_err(|e| format!("Opus decoder: {e}"))?;
        Ok(Self {
            encoder,
            decoder,
            pcm: vec![0; LONGEST],
            packet: vec![0; 400],
        })
    }

    /// The client's Opus `packet` as μ-law (160 bytes per 20 ms).
    pub fn decode(&mut self, packet: &[u8]) -> Result<Vec<u8>, String> {
        let n = (self.decoder)
            .decode(packet, &mut self.pcm, false)
            .map_err(|e| format!("Opus packet: {e}"))?;
        Ok(self.pcm[..n]
            .iter()
            .map(|&s| Law::Mu.encode_sample(s))
            .collect())
    }

    /// μ-law `payload` (a whole number of 20 ms frames are taken; Opus
    /// has no 10 ms-or-less frame we could pad to) as one Opus packet.
    pub fn encode(&mut self, payload: &[u8]) -> Result<Vec<u8>, String> {
        let frames = (payload.len() / FRAME).clamp(1, 3);
        let samples = frames * FRAME;
        for (i, s) in self.pcm[..samples].iter_mut().enumerate() {
            *s = payload.get(i).map_or(0, |&b| Law::Mu.decode_sample(b));
        }
        let n = (self.encoder)
            .encode(&self.pcm[..samples], &mut self.packet)
            .map_err(|e| format!("Opus encoder: {e}"))?;
        Ok(self.packet[..n].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_media::tone::{goertzel, sine};

    #[test]
    fn a_tone_survives_encode_and_decode_and_junk_never_panics() {
        let mut t = Transcoder::new().unwrap();
        let tone = sine(1_000.0, 2_000, 0.5);
        let mut heard = Vec::new();
        for frame in tone.chunks(FRAME) {
            let ulaw: Vec<u8> = frame.iter().map(|&s| Law::Mu.encode_sample(s)).collect();
            let packet = t.encode(&ulaw).unwrap();
            assert!(packet.len() < 80, "{} bytes for 20 ms", packet.len());
            let back = t.decode(&packet).unwrap();
            assert_eq!(back.len(), FRAME);
            heard.extend(back.iter().map(|&b| Law::Mu.decode_sample(b)));
        }
        // After the codec's start-up the tone is there (the sent one has
        // power 0.25: most of it survives), and no other.
        let settled = &heard[800..];
        assert!(
            goertzel(settled, 1_000.0) > 0.15,
            "{}",
            goertzel(settled, 1_000.0)
        );
        assert!(
            goertzel(settled, 600.0) < 0.01,
            "{}",
            goertzel(settled, 600.0)
        );
        // A client's junk is its loss: never a panic.
        for junk in [&[][..], &[0xff; 3], &[0x7f; 1_500]] {
            let _ = t.decode(junk);
        }
    }
}
