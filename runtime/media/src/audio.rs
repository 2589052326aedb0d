//! WAV in and out: whatever a tenant uploads or links becomes telephony
//! audio ([`RATE`] mono `i16`), and what we store and serve is one plain
//! format every browser plays.
//!
//! ```text
//!   RIFF/WAVE bytes ─► chunks (fmt, data; others skipped)
//!        │ format: PCM 8/16/24/32-bit, float 32/64, A-law (6), μ-law (7),
//!        │         WAVE_FORMAT_EXTENSIBLE around any of these
//!        │ limits checked before anything is allocated
//!        ▼
//!   f32 frames ─► mixed down to mono ─► rubato resampler ─► 8 kHz i16
//! ```
//!
//! The parser is our own rather than `hound`'s: `hound` does not read
//! G.711 files, and it refuses the streaming header `espeak-ng --stdout`
//! writes (a data size of `0x7ffff000`, since stdout cannot seek back).
//! Here a chunk that claims more bytes than the file holds is read up to
//! the end of the file. Every length comes from the input and is checked,
//! so no input, however broken, makes decoding panic
//! (`fuzz/fuzz_targets/wav.rs`).

use std::time::Duration;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, FixedSync, Resampler, SincInterpolationParameters, WindowFunction,
};

use super::RATE;
use super::g711::Law;

/// Why a WAV file could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// The bytes do not start with a RIFF/WAVE header.
    #[error("not a WAV file (no RIFF/WAVE header)")]
    NotWav,
    /// The header is inconsistent or a chunk is missing.
    #[error("malformed WAV file: {0}")]
    Malformed(String),
    /// A well-formed file in a format we do not decode.
    #[error("unsupported WAV file: {0}")]
    Unsupported(String),
    /// The audio lasts longer than [`DecodeLimits::max_duration`].
    #[error("audio lasts {secs} s, longer than the limit of {max_secs} s")]
    TooLong { secs: u64, max_secs: u64 },
    /// The resampler refused the input (a bug rather than bad input).
    #[error("cannot resample {rate} Hz audio: {reason}")]
    Resample { rate: u32, reason: String },
}

/// What [`decode_wav_with`] accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Longest audio accepted. Default 10 minutes.
    pub max_duration: Duration,
    /// Most channels accepted (all of them are mixed down). Default 8.
    pub max_channels: u16,
    /// Lowest sample rate accepted. Default 1 kHz.
    pub min_rate: u32,
    /// Highest sample rate accepted. Default 384 kHz.
    pub max_rate: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_duration: Duration::from_secs(10 * 60),
            max_channels: 8,
            min_rate: 1_000,
            max_rate: 384_000,
        }
    }
}

const WAVE_FORMAT_PCM: u16 = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 0x0003;
const WAVE_FORMAT_ALAW: u16 = 0x0006;
const WAVE_FORMAT_MULAW: u16 = 0x0007;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// The sub-format GUID of WAVE_FORMAT_EXTENSIBLE is the plain format tag
/// followed by these 14 bytes (`-0000-0010-8000-00AA00389B71`).
const KSDATAFORMAT_SUFFIX: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];
/// Size of the header [`encode_wav`] writes.
const HEADER_BYTES: usize = 44;

/// Whether `bytes` start like a WAV file (RIFF/WAVE), without decoding it.
pub fn is_wav(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE"
}

/// Decodes any WAV file we accept into [`RATE`] mono samples, with the
/// default [`DecodeLimits`].
pub fn decode_wav(bytes: &[u8]) -> Result<Vec<i16>, AudioError> {
    decode_wav_with(bytes, &DecodeLimits::default())
}

/// Decodes any WAV file we accept into [`RATE`] mono samples.
///
/// Stereo and multichannel audio is mixed down (the channels averaged),
/// other rates are resampled with an anti-aliasing filter.
pub fn decode_wav_with(bytes: &[u8], limits: &DecodeLimits) -> Result<Vec<i16>, AudioError> {
    let (fmt, data) = chunks(bytes)?;
    let format = Format::check(&fmt, limits)?;
    let block = format.block_bytes();
    let frames = data.len() / block;
    let millis = frames as u64 * 1000 / format.rate as u64;
    let max = limits.max_duration.as_millis() as u64;
    if millis > max {
        return Err(AudioError::TooLong {
            secs: millis / 1000,
            max_secs: max / 1000,
        });
    }
    let data = &data[..frames * block];
    if format.encoding == Encoding::Int && format.width == 2 && format.channels == 1 {
        let samples: Vec<i16> = data
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        if format.rate == RATE {
            return Ok(samples);
        }
        let mono = samples.iter().map(|&s| s as f32 / 32768.0).collect();
        return resample(mono, format.rate).map(|out| to_i16(&out));
    }
    let mono = format.mix_down(data);
    resample(mono, format.rate).map(|out| to_i16(&out))
}

/// A WAV file of `samples`: [`RATE`] mono 16-bit PCM, the form we store
/// and serve. Audio past 4 GiB (about 74 hours) would not fit a RIFF
/// header and is cut off.
pub fn encode_wav(samples: &[i16]) -> Vec<u8> {
    let max_samples = (u32::MAX as usize - HEADER_BYTES) / 2;
    let samples = &samples[..samples.len().min(max_samples)];
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(HEADER_BYTES + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&WAVE_FORMAT_PCM.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // channels
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * 2).to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// The `fmt ` chunk as written in the file.
#[derive(Debug, Clone, Copy)]
struct FmtChunk {
    /// The format tag, already taken out of an extensible header.
    tag: u16,
    channels: u16,
    rate: u32,
    block_align: u16,
    bits: u16,
}

/// The `fmt ` chunk and the bytes of the `data` chunk.
fn chunks(bytes: &[u8]) -> Result<(FmtChunk, &[u8]), AudioError> {
    if !is_wav(bytes) {
        return Err(AudioError::NotWav);
    }
    let mut fmt = None;
    let mut pos = 12usize;
    while let Some(header) = bytes.get(pos..pos + 8) {
        let id = &header[0..4];
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let start = pos + 8;
        let end = start.saturating_add(size).min(bytes.len());
        let body = &bytes[start..end];
        match id {
            b"fmt " => fmt = Some(parse_fmt(body)?),
            b"data" => {
                let fmt = fmt.ok_or_else(|| malformed("the data chunk comes before fmt"))?;
                return Ok((fmt, body));
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        pos = start.saturating_add(size).saturating_add(size & 1);
    }
    Err(malformed(if fmt.is_none() {
        "no fmt chunk"
    } else {
        "no data chunk"
    }))
}

fn parse_fmt(body: &[u8]) -> Result<FmtChunk, AudioError> {
    let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
    if body.len() < 16 {
        return Err(malformed(format!(
            "the fmt chunk is {} bytes, shorter than 16",
            body.len()
        )));
    }
    let mut tag = u16_at(0);
    if tag == WAVE_FORMAT_EXTENSIBLE {
        let Some(guid) = body.get(24..40) else {
            return Err(malformed(
                "the WAVE_FORMAT_EXTENSIBLE fmt chunk is shorter than 40 bytes",
            ));
        };
        if guid[2..] != KSDATAFORMAT_SUFFIX {
            return Err(AudioError::Unsupported(format!(
                "WAVE_FORMAT_EXTENSIBLE sub-format {}",
                hex::encode(guid)
            )));
        }
        tag = u16::from_le_bytes([guid[0], guid[1]]);
    }
    Ok(FmtChunk {
        tag,
        channels: u16_at(2),
        rate: u32::from_le_bytes([body[4], body[5], body[6], body[7]]),
        block_align: u16_at(12),
        bits: u16_at(14),
    })
}

fn malformed(reason: impl Into<String>) -> AudioError {
    AudioError::Malformed(reason.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// Signed little-endian integers (unsigned for 8-bit).
    Int,
    Float,
    G711(Law),
}

/// A checked format: every field is within limits and consistent.
#[derive(Debug, Clone, Copy)]
struct Format {
    encoding: Encoding,
    /// Bytes per sample of one channel.
    width: usize,
    channels: usize,
    rate: u32,
}

impl Format {
    fn check(fmt: &FmtChunk, limits: &DecodeLimits) -> Result<Format, AudioError> {
        let unsupported = |what: String| Err(AudioError::Unsupported(what));
        let (encoding, width) = match (fmt.tag, fmt.bits) {
            (WAVE_FORMAT_PCM, 1..=32) => (Encoding::Int, (fmt.bits as usize).div_ceil(8)),
            (WAVE_FORMAT_IEEE_FLOAT, 32 | 64) => (Encoding::Float, fmt.bits as usize / 8),
            (WAVE_FORMAT_ALAW, 8) => (Encoding::G711(Law::A), 1),
            (WAVE_FORMAT_MULAW, 8) => (Encoding::G711(Law::Mu), 1),
            (
                WAVE_FORMAT_PCM | WAVE_FORMAT_IEEE_FLOAT | WAVE_FORMAT_ALAW | WAVE_FORMAT_MULAW,
                _,
            ) => {
                return unsupported(format!("{}-bit {}", fmt.bits, format_name(fmt.tag)));
            }
            (tag, _) => return unsupported(format!("{} audio", format_name(tag))),
        };
        if fmt.channels == 0 {
            return Err(malformed("the file has 0 channels"));
        }
        if fmt.channels > limits.max_channels {
            return unsupported(format!(
                "{} channels (at most {})",
                fmt.channels, limits.max_channels
            ));
        }
        if fmt.rate < limits.min_rate || fmt.rate > limits.max_rate {
            return unsupported(format!(
                "a sample rate of {} Hz (accepted: {} to {} Hz)",
                fmt.rate, limits.min_rate, limits.max_rate
            ));
        }
        let format = Format {
            encoding,
            width,
            channels: fmt.channels as usize,
            rate: fmt.rate,
        };
        if fmt.block_align as usize != format.block_bytes() {
            return Err(malformed(format!(
                "block align {} does not match {} channels of {}-bit samples",
                fmt.block_align, fmt.channels, fmt.bits
            )));
        }
        Ok(format)
    }

    fn block_bytes(&self) -> usize {
        self.width * self.channels
    }

    /// One sample of one channel as -1.0..=1.0.
    fn sample(&self, b: &[u8]) -> f32 {
        match (self.encoding, self.width) {
            (Encoding::Int, 1) => (b[0] as f32 - 128.0) / 128.0,
            (Encoding::Int, 2) => i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0,
            (Encoding::Int, 3) => {
                (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0
            }
            (Encoding::Int, _) => {
                i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0
            }
            (Encoding::Float, 4) => finite(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            (Encoding::Float, _) => {
                finite(f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            }
            (Encoding::G711(law), _) => law.decode_sample(b[0]) as f32 / 32768.0,
        }
    }

    /// The frames of `data` (whole frames only) as mono.
    fn mix_down(&self, data: &[u8]) -> Vec<f32> {
        let gain = 1.0 / self.channels as f32;
        data.chunks_exact(self.block_bytes())
            .map(|frame| {
                frame
                    .chunks_exact(self.width)
                    .map(|s| self.sample(s))
                    .sum::<f32>()
                    * gain
            })
            .collect()
    }
}

/// Float samples out of range (NaN, infinities, loud files) would smear
/// across a whole resampler block: clamp them first.
fn finite(x: f32) -> f32 {
    if x.is_finite() {
        x.clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

fn format_name(tag: u16) -> String {
    let name = match tag {
        WAVE_FORMAT_PCM => "PCM",
        WAVE_FORMAT_IEEE_FLOAT => "IEEE float",
        WAVE_FORMAT_ALAW => "A-law",
        WAVE_FORMAT_MULAW => "μ-law",
        0x0002 => "MS ADPCM",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0050 => "MPEG",
        0x0055 => "MP3",
        _ => return format!("format tag 0x{tag:04x}"),
    };
    format!("{name} (format tag 0x{tag:04x})")
}

/// Most input frames per FFT block for the synchronous resampler; rates
/// whose ratio to [`RATE`] needs longer blocks (11 127 Hz: 11 127 frames)
/// go through the asynchronous sinc resampler, whose memory does not grow
/// with the ratio.
const MAX_FFT_BLOCK: u32 = 2048;
/// Output frames per FFT step, at least: the FFT length sets the length of
/// the anti-aliasing filter, so a short one (96 kHz in 1024-frame input
/// chunks is 85 frames out) would dull the pass band.
const FFT_OUT_FRAMES: u32 = 512;
/// Input frames per step of the sinc resampler.
const SINC_CHUNK_FRAMES: usize = 1024;

/// `input` at `rate`, as [`RATE`] (same length in time).
fn resample(input: Vec<f32>, rate: u32) -> Result<Vec<f32>, AudioError> {
    if rate == RATE || input.is_empty() {
        return Ok(input);
    }
    let err = |reason: String| AudioError::Resample { rate, reason };
    let common = gcd(rate, RATE);
    let (block_in, block_out) = (rate / common, RATE / common);
    let mut resampler: Box<dyn Resampler<f32>> = if block_in <= MAX_FFT_BLOCK {
        let chunk = block_in * FFT_OUT_FRAMES.div_ceil(block_out);
        let fft = rubato::Fft::<f32>::new_custom(
            rate as usize,
            RATE as usize,
            chunk as usize,
            1,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        );
        Box::new(fft.map_err(|e| err(e.to_string()))?)
    } else {
        let params = SincInterpolationParameters::new(128, WindowFunction::BlackmanHarris2);
        let sinc = Async::<f32>::new_sinc(
            RATE as f64 / rate as f64,
            1.0,
            &params,
            SINC_CHUNK_FRAMES,
            1,
            FixedAsync::Input,
        );
        Box::new(sinc.map_err(|e| err(e.to_string()))?)
    };
    let adapter = InterleavedSlice::new(&input, 1, input.len()).map_err(|e| err(e.to_string()))?;
    let out = resampler
        .process_all(&adapter, input.len(), None)
        .map_err(|e| err(e.to_string()))?;
    Ok(out.take_data())
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|&x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{goertzel, rms, sine};

    /// A 1 kHz tone at `rate`, amplitude 0.5, `ms` long, as f64 in -1..1.
    fn tone_at(rate: u32, hz: f64, ms: u32) -> Vec<f64> {
        let n = (rate as u64 * ms as u64 / 1000) as usize;
        let step = 2.0 * std::f64::consts::PI * hz / rate as f64;
        (0..n).map(|i| (i as f64 * step).sin() * 0.5).collect()
    }

    fn hound_wav(
        spec: hound::WavSpec,
        write: impl FnOnce(&mut hound::WavWriter<&mut std::io::Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut cursor = std::io::Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        write(&mut writer);
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    fn int_wav(rate: u32, channels: u16, bits: u16, samples: &[f64]) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let scale = (1i64 << (bits - 1)) as f64 - 1.0;
        hound_wav(spec, |w| {
            for &s in samples {
                for _ in 0..channels {
                    w.write_sample((s * scale) as i32).unwrap();
                }
            }
        })
    }

    /// A RIFF file with a fmt chunk `fmt` and a data chunk `data`.
    fn riff(fmt: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = b"RIFF\0\0\0\0WAVE".to_vec();
        for (id, body) in [(b"fmt ", fmt), (b"data", data)] {
            out.extend_from_slice(id);
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(body);
            if body.len() % 2 == 1 {
                out.push(0);
            }
        }
        let riff_len = (out.len() - 8) as u32;
        out[4..8].copy_from_slice(&riff_len.to_le_bytes());
        out
    }

    fn fmt(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let block = channels * bits.div_ceil(8);
        let mut f = Vec::new();
        f.extend_from_slice(&tag.to_le_bytes());
        f.extend_from_slice(&channels.to_le_bytes());
        f.extend_from_slice(&rate.to_le_bytes());
        f.extend_from_slice(&rate.wrapping_mul(block as u32).to_le_bytes());
        f.extend_from_slice(&block.to_le_bytes());
        f.extend_from_slice(&bits.to_le_bytes());
        f
    }

    fn extensible(sub_tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let mut f = fmt(WAVE_FORMAT_EXTENSIBLE, channels, rate, bits);
        f.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        f.extend_from_slice(&bits.to_le_bytes()); // valid bits
        f.extend_from_slice(&0u32.to_le_bytes()); // channel mask
        f.extend_from_slice(&sub_tag.to_le_bytes());
        f.extend_from_slice(&KSDATAFORMAT_SUFFIX);
        f
    }

    fn pcm16(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    /// Asserts `samples` hold a clear `hz` tone of about amplitude 0.5
    /// lasting about `ms`, and nothing much at 1.4 × `hz`.
    fn assert_tone(samples: &[i16], hz: f64, ms: u32) {
        let expected = (RATE * ms / 1000) as usize;
        assert!(
            samples.len().abs_diff(expected) <= expected / 50,
            "{} samples for {ms} ms",
            samples.len()
        );
        // Skip the edges, where the resampler's filter rings.
        let middle = &samples[samples.len() / 10..samples.len() * 9 / 10];
        let on = goertzel(middle, hz);
        let off = goertzel(middle, hz * 1.4);
        assert!((on - 0.25).abs() < 0.03, "power at {hz} Hz: {on}");
        assert!(off < on / 100.0, "power off the tone: {off} vs {on}");
    }

    #[test]
    fn what_encode_wav_writes_decodes_to_the_same_samples() {
        let samples = sine(1000.0, 100, 0.5);
        let wav = encode_wav(&samples);
        assert_eq!(wav.len(), 44 + samples.len() * 2);
        assert_eq!(decode_wav(&wav).unwrap(), samples);
        // hound, an independent reader, agrees on the header.
        let reader = hound::WavReader::new(std::io::Cursor::new(&wav)).unwrap();
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (1, 8000, 16)
        );
        assert_eq!(decode_wav(&encode_wav(&[])).unwrap(), Vec::<i16>::new());
    }

    #[test]
    fn integer_pcm_of_every_width_decodes_to_the_same_tone() {
        let tone = tone_at(8000, 1000.0, 200);
        for bits in [8, 16, 24, 32] {
            let decoded = decode_wav(&int_wav(8000, 1, bits, &tone)).unwrap();
            assert_tone(&decoded, 1000.0, 200);
            let tolerance = if bits == 8 { 400 } else { 2 };
            for (d, t) in decoded.iter().zip(&tone) {
                let want = (t * 32767.0) as i16;
                assert!(d.abs_diff(want) <= tolerance, "{bits}-bit: {d} vs {want}");
            }
        }
    }

    #[test]
    fn float_pcm_decodes_and_out_of_range_values_are_clamped() {
        let tone = tone_at(8000, 1000.0, 200);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let wav = hound_wav(spec, |w| {
            for &s in &tone {
                w.write_sample(s as f32).unwrap();
            }
        });
        assert_tone(&decode_wav(&wav).unwrap(), 1000.0, 200);

        let wild: Vec<u8> = [f64::NAN, f64::INFINITY, 7.0, -7.0, 0.25]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let decoded = decode_wav(&riff(&fmt(WAVE_FORMAT_IEEE_FLOAT, 1, 8000, 64), &wild)).unwrap();
        assert_eq!(decoded, [0, 0, 32767, -32768, 8192]);
    }

    #[test]
    fn g711_mu_law_and_a_law_files_decode() {
        let tone = sine(1000.0, 200, 0.5);
        for (tag, law) in [(WAVE_FORMAT_MULAW, Law::Mu), (WAVE_FORMAT_ALAW, Law::A)] {
            let mut encoded = vec![0u8; tone.len()];
            law.encode(&tone, &mut encoded);
            let decoded = decode_wav(&riff(&fmt(tag, 1, 8000, 8), &encoded)).unwrap();
            let mut expected = Vec::new();
            law.decode(&encoded, &mut expected);
            assert_eq!(decoded, expected);
            assert_tone(&decoded, 1000.0, 200);
        }
    }

    #[test]
    fn wave_format_extensible_wraps_pcm_float_and_g711() {
        let tone = sine(1000.0, 100, 0.5);
        let wav = riff(&extensible(WAVE_FORMAT_PCM, 1, 8000, 16), &pcm16(&tone));
        assert_eq!(decode_wav(&wav).unwrap(), tone);

        let floats: Vec<u8> = tone
            .iter()
            .flat_map(|&s| (s as f32 / 32768.0).to_le_bytes())
            .collect();
        let wav = riff(&extensible(WAVE_FORMAT_IEEE_FLOAT, 1, 8000, 32), &floats);
        assert_eq!(decode_wav(&wav).unwrap(), tone);

        let mut mu = vec![0u8; tone.len()];
        Law::Mu.encode(&tone, &mut mu);
        let wav = riff(&extensible(WAVE_FORMAT_MULAW, 1, 8000, 8), &mu);
        assert_tone(&decode_wav(&wav).unwrap(), 1000.0, 100);

        let mut odd = extensible(WAVE_FORMAT_PCM, 1, 8000, 16);
        odd[30] = 0x42; // not the KSDATAFORMAT GUID suffix
        assert!(matches!(
            decode_wav(&riff(&odd, &pcm16(&tone))),
            Err(AudioError::Unsupported(_))
        ));
    }

    #[test]
    fn stereo_is_mixed_down_to_mono() {
        let tone = tone_at(8000, 1000.0, 200);
        let decoded = decode_wav(&int_wav(8000, 2, 16, &tone)).unwrap();
        assert_tone(&decoded, 1000.0, 200);

        // Left a tone, right its inverse: they cancel.
        let frames: Vec<i16> = sine(1000.0, 100, 0.5)
            .iter()
            .flat_map(|&s| [s, -s])
            .collect();
        let decoded =
            decode_wav(&riff(&fmt(WAVE_FORMAT_PCM, 2, 8000, 16), &pcm16(&frames))).unwrap();
        assert_eq!(decoded.len(), 800);
        assert!(rms(&decoded) < 0.001);
    }

    #[test]
    fn a_16_khz_tone_stays_a_1_khz_tone_at_8_khz() {
        let decoded = decode_wav(&int_wav(16_000, 1, 16, &tone_at(16_000, 1000.0, 500))).unwrap();
        assert_tone(&decoded, 1000.0, 500);
    }

    #[test]
    fn a_22050_hz_tone_as_espeak_writes_it_stays_a_1_khz_tone() {
        let decoded = decode_wav(&int_wav(22_050, 1, 16, &tone_at(22_050, 1000.0, 500))).unwrap();
        assert_tone(&decoded, 1000.0, 500);
    }

    #[test]
    fn other_common_and_odd_rates_resample_too() {
        for rate in [11_025, 44_100, 48_000, 96_000, 4_000, 11_127] {
            let decoded = decode_wav(&int_wav(rate, 1, 16, &tone_at(rate, 1000.0, 500))).unwrap();
            assert_tone(&decoded, 1000.0, 500);
        }
    }

    #[test]
    fn tones_above_4_khz_are_filtered_out_not_folded_back() {
        // At 8 kHz a 5 kHz tone would alias to 3 kHz.
        let decoded = decode_wav(&int_wav(16_000, 1, 16, &tone_at(16_000, 5000.0, 500))).unwrap();
        let middle = &decoded[400..3600];
        assert!(
            goertzel(middle, 3000.0) < 0.001,
            "{}",
            goertzel(middle, 3000.0)
        );
        assert!(rms(middle) < 0.01, "{}", rms(middle));
    }

    #[test]
    fn a_streaming_header_that_claims_more_data_than_the_file_holds_is_read_to_the_end() {
        let tone = sine(1000.0, 100, 0.5);
        let mut wav = riff(&fmt(WAVE_FORMAT_PCM, 1, 8000, 16), &pcm16(&tone));
        // What espeak-ng --stdout writes: sizes it could not seek back to fix.
        wav[4..8].copy_from_slice(&0x7fff_f024u32.to_le_bytes());
        wav[40..44].copy_from_slice(&0x7fff_f000u32.to_le_bytes());
        assert_eq!(decode_wav(&wav).unwrap(), tone);
        // An odd trailing byte (half a sample) is dropped.
        wav.push(1);
        assert_eq!(decode_wav(&wav).unwrap(), tone);
    }

    #[test]
    fn chunks_before_fmt_and_between_fmt_and_data_are_skipped() {
        let tone = sine(1000.0, 50, 0.5);
        let mut wav = b"RIFF\0\0\0\0WAVE".to_vec();
        wav.extend_from_slice(b"LIST\x03\0\0\0abc\0"); // odd size, padded
        wav.extend_from_slice(b"fmt \x10\0\0\0");
        wav.extend_from_slice(&fmt(WAVE_FORMAT_PCM, 1, 8000, 16));
        wav.extend_from_slice(b"fact\x04\0\0\0\0\0\0\0");
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&((tone.len() * 2) as u32).to_le_bytes());
        wav.extend_from_slice(&pcm16(&tone));
        assert_eq!(decode_wav(&wav).unwrap(), tone);
    }

    #[test]
    fn audio_over_the_duration_limit_is_refused_before_decoding() {
        let limits = DecodeLimits {
            max_duration: Duration::from_secs(1),
            ..DecodeLimits::default()
        };
        let two_seconds = riff(&fmt(WAVE_FORMAT_PCM, 1, 8000, 16), &vec![0; 32_000]);
        assert_eq!(
            decode_wav_with(&two_seconds, &limits),
            Err(AudioError::TooLong {
                secs: 2,
                max_secs: 1
            })
        );
        let one_second = riff(&fmt(WAVE_FORMAT_PCM, 1, 8000, 16), &vec![0; 16_000]);
        assert_eq!(decode_wav_with(&one_second, &limits).unwrap().len(), 8000);
    }

    #[test]
    fn ten_minutes_is_the_default_limit() {
        let eleven_minutes = riff(&fmt(WAVE_FORMAT_ALAW, 1, 8000, 8), &vec![0xd5; 8000 * 660]);
        assert_eq!(
            decode_wav(&eleven_minutes),
            Err(AudioError::TooLong {
                secs: 660,
                max_secs: 600
            })
        );
    }

    #[test]
    fn garbage_and_absurd_headers_are_refused_with_a_reason() {
        let data = pcm16(&[0; 100]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "not a WAV"),
            (b"RIFF".to_vec(), "not a WAV"),
            (b"ID3\x04 this is an mp3".to_vec(), "not a WAV"),
            (b"RIFF\0\0\0\0WAVE".to_vec(), "no fmt chunk"),
            (
                riff(&fmt(1, 1, 8000, 16), &data)[..36].to_vec(),
                "no data chunk",
            ),
            (riff(&fmt(1, 1, 8000, 16)[..10], &data), "shorter than 16"),
            (riff(&fmt(0x55, 1, 8000, 16), &data), "MP3"),
            (riff(&fmt(0x11, 1, 8000, 4), &data), "IMA ADPCM"),
            (riff(&fmt(1, 0, 8000, 16), &data), "0 channels"),
            (riff(&fmt(1, 200, 8000, 16), &data), "200 channels"),
            (riff(&fmt(1, 1, 0, 16), &data), "sample rate of 0 Hz"),
            (
                riff(&fmt(1, 1, 4_000_000_000, 16), &data),
                "sample rate of 4000000000 Hz",
            ),
            (riff(&fmt(1, 1, 8000, 0), &data), "0-bit PCM"),
            (riff(&fmt(1, 1, 8000, 48), &data), "48-bit PCM"),
            (riff(&fmt(3, 1, 8000, 16), &data), "16-bit IEEE float"),
            (riff(&fmt(7, 1, 8000, 16), &data), "16-bit μ-law"),
            (
                riff(&extensible(1, 1, 8000, 16)[..30], &data),
                "shorter than 40",
            ),
        ];
        for (bytes, reason) in cases {
            let err = decode_wav(&bytes).unwrap_err().to_string();
            assert!(err.contains(reason), "{err:?} should say {reason:?}");
        }
        let mut bad_align = fmt(1, 2, 8000, 16);
        bad_align[12] = 3;
        let err = decode_wav(&riff(&bad_align, &data)).unwrap_err();
        assert!(err.to_string().contains("block align 3"), "{err}");
        let mut data_first = b"RIFF\0\0\0\0WAVEdata\x02\0\0\0\0\0".to_vec();
        data_first.extend_from_slice(&riff(&fmt(1, 1, 8000, 16), &data)[12..]);
        assert!(
            decode_wav(&data_first)
                .unwrap_err()
                .to_string()
                .contains("before fmt")
        );
    }

    #[test]
    fn mangled_headers_never_panic() {
        let tone = sine(1000.0, 20, 0.5);
        let seeds = [
            riff(&fmt(WAVE_FORMAT_PCM, 2, 22_050, 24), &pcm16(&tone)),
            riff(
                &extensible(WAVE_FORMAT_IEEE_FLOAT, 1, 44_100, 32),
                &pcm16(&tone),
            ),
            riff(&fmt(WAVE_FORMAT_MULAW, 1, 8000, 8), &pcm16(&tone)),
        ];
        // A small xorshift, so the test is the same on every run.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3000 {
            let mut bytes = seeds[round % seeds.len()].clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % 64) as usize % bytes.len();
                bytes[at] = next() as u8;
            }
            let cut = bytes.len() - (next() % 8) as usize;
            let _ = decode_wav(&bytes[..cut]);
        }
    }
}
