//! Tones: generating them (the record beep, test prompts) and detecting
//! them with a Goertzel filter (tests, tone detection).

use super::RATE;

/// `ms` of a sine at `hz`, amplitude `amplitude` (of i16::MAX), at [`RATE`].
pub fn sine(hz: f64, ms: u32, amplitude: f64) -> Vec<i16> {
    let n = (RATE as u64 * ms as u64 / 1000) as usize;
    let step = 2.0 * std::f64::consts::PI * hz / RATE as f64;
    (0..n)
        .map(|i| ((i as f64 * step).sin() * amplitude * i16::MAX as f64) as i16)
        .collect()
}

/// The power of frequency `hz` in `samples`, normalised so that a
/// full-scale sine at `hz` gives about 1.0 whatever the block length.
pub fn goertzel(samples: &[i16], hz: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * hz / RATE as f64).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x as f64 / i16::MAX as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let n = samples.len() as f64;
    4.0 * power / (n * n)
}

/// Root-mean-square level of `samples`, 0.0 (silence) to 1.0 (full scale).
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| (s as f64).powi(2)).sum();
    (sum / samples.len() as f64).sqrt() / i16::MAX as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goertzel_finds_the_tone_it_is_tuned_to() {
        let tone = sine(1000.0, 100, 0.5);
        let on = goertzel(&tone, 1000.0);
        let off = goertzel(&tone, 1400.0);
        assert!((on - 0.25).abs() < 0.05, "{on}");
        assert!(off < on / 100.0, "{off} vs {on}");
        assert_eq!(goertzel(&[0; 160], 1000.0), 0.0);
        assert!((rms(&tone) - 0.5 / 2f64.sqrt()).abs() < 0.01);
    }
}
