//! [`ToneSpeech`]: a stand-in synthesizer that needs no speech engine.
//!
//! It "speaks" a text as a tone whose pitch and length come from the text
//! (and voice and language), so different texts give different audio, and
//! so different content ids, and the same text always the same samples.
//! Tests run `switchyard serve` with it (`[media] synthesizer = "tone"`),
//! so calls with prompts work on a machine without espeak-ng, and a test
//! can compute what a caller must hear.

use super::synth::Synthesizer;
use super::tone::sine;

/// Audio per character of text, about a speaking rate.
const MS_PER_CHAR: u32 = 60;
/// Shortest and longest tone (a long text is not minutes of beeping).
const MIN_MS: u32 = 200;
const MAX_MS: u32 = 6_000;
/// Pitches are picked from 2 kHz up, in 10 Hz steps below 3 kHz: clear of
/// the 1 kHz beep and the test tones (440 Hz, 1 kHz) a call may also carry.
const LOWEST_HZ: u64 = 2_000;
const PITCHES: u64 = 100;
const AMPLITUDE: f64 = 0.4;

/// Text to a deterministic tone, no program run (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct ToneSpeech;

impl ToneSpeech {
    /// The samples `text` becomes, as [`Synthesizer::synthesize`] returns them.
    pub fn samples(text: &str, voice: Option<&str>, language: Option<&str>) -> Vec<i16> {
        if text.trim().is_empty() {
            return Vec::new();
        }
        // FNV-1a over everything that tells two requests apart.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [text, voice.unwrap_or(""), language.unwrap_or("")] {
            for byte in part.bytes().chain([0]) {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        let hz = (LOWEST_HZ + hash % PITCHES * 10) as f64;
        let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
        let ms = chars.saturating_mul(MS_PER_CHAR).clamp(MIN_MS, MAX_MS);
        sine(hz, ms, AMPLITUDE)
    }
}

impl Synthesizer for ToneSpeech {
    fn name(&self) -> &str {
        "tone"
    }

    fn synthesize(
        &self,
        text: &str,
        voice: Option<&str>,
        language: Option<&str>,
    ) -> anyhow::Result<Vec<i16>> {
        Ok(Self::samples(text, voice, language))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::RATE;

    #[test]
    fn the_same_text_is_the_same_tone_and_another_text_another() {
        let hello = ToneSpeech.synthesize("Hello", None, None).unwrap();
        assert_eq!(hello, ToneSpeech::samples("Hello", None, None));
        assert_ne!(hello, ToneSpeech::samples("Goodbye", None, None));
        assert_ne!(hello, ToneSpeech::samples("Hello", Some("en-gb"), None));
    }

    #[test]
    fn longer_text_is_longer_audio_within_bounds() {
        let ms = |text: &str| ToneSpeech::samples(text, None, None).len() as u32 * 1000 / RATE;
        assert_eq!(ms("Hi"), MIN_MS);
        assert_eq!(ms("Welcome to Switchyard"), 21 * MS_PER_CHAR);
        assert_eq!(ms(&"x".repeat(10_000)), MAX_MS);
        assert!(ToneSpeech::samples("  ", None, None).is_empty());
    }
}
