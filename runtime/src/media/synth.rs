//! Speech synthesis: text in, [`RATE`](super::RATE) samples out.
//!
//! ```text
//!   cache::say ──spawn_blocking──► Synthesizer::synthesize(text, voice, language)
//!                                        │ Espeak: validate, pick the voice
//!                                        ▼
//!          espeak-ng --stdout -b 1 -v VOICE --stdin   ◄── text on stdin
//!                                        │ WAV, 22 050 Hz (capped, timed out)
//!                                        ▼
//!                               audio::decode_wav → 8 kHz i16
//! ```
//!
//! A [`Synthesizer`] is blocking and knows nothing of the cache: the cache
//! keys what it returns by [`Synthesizer::name`], voice, language and text,
//! so the same sentence is synthesized once.
//!
//! [`Espeak`] runs the `espeak-ng` program. The text goes on stdin, never
//! on the command line, so no text can be taken for an option; voice and
//! language names are checked against a small character set and may not
//! start with `-`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::audio::{AudioError, decode_wav};

/// Turns text into speech. Implementations block; callers run them off the
/// async path (`tokio::task::spawn_blocking`).
pub trait Synthesizer: Send + Sync {
    /// What makes this synthesizer's output differ from another's; part of
    /// every cache key, so a new engine or voice set needs a new name.
    fn name(&self) -> &str;

    /// `text` spoken by `voice` (an engine-specific name) or, without one,
    /// by the engine's voice for `language` (a BCP 47 tag such as `en-US`),
    /// as [`RATE`](super::RATE) mono samples.
    fn synthesize(
        &self,
        text: &str,
        voice: Option<&str>,
        language: Option<&str>,
    ) -> anyhow::Result<Vec<i16>>;
}

/// Limits and defaults of [`Espeak`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspeakConfig {
    /// The program to run, looked up on `PATH` unless it is a path.
    /// Default `espeak-ng`.
    pub program: PathBuf,
    /// The voice when neither a voice nor a language is given.
    /// Default `en-us`.
    pub default_voice: String,
    /// Longest text accepted, in bytes. Default 8 KiB (several minutes of
    /// speech); it also keeps the text within one pipe buffer.
    pub max_text_bytes: usize,
    /// Longest one synthesis may run before the program is killed.
    /// Default 20 s.
    pub timeout: Duration,
    /// Most bytes of WAV accepted from the program. Default 32 MiB (12
    /// minutes at espeak-ng's 22 050 Hz).
    pub max_output_bytes: usize,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        Self {
            program: PathBuf::from("espeak-ng"),
            default_voice: "en-us".into(),
            max_text_bytes: 8 * 1024,
            timeout: Duration::from_secs(20),
            max_output_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Why [`Espeak`] produced no speech.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    /// The program is not on this machine.
    #[error("{program} is not installed (not found on PATH); install it: apt install espeak-ng")]
    NotInstalled { program: String },
    /// The program exists but could not be started.
    #[error("cannot run {program}: {reason}")]
    Spawn { program: String, reason: String },
    /// A voice or language name outside `[A-Za-z0-9_+-]`, empty, too long
    /// or starting with `-`.
    #[error("invalid {what} {name:?}: use letters, digits, '_', '+' and '-' (not first)")]
    BadName { what: &'static str, name: String },
    /// espeak-ng has no such voice.
    #[error("espeak-ng has no voice {0:?}")]
    UnknownVoice(String),
    #[error("text is {len} bytes, over the limit of {max} bytes")]
    TextTooLong { len: usize, max: usize },
    #[error("{program} ran longer than {secs} s and was stopped")]
    Timeout { program: String, secs: u64 },
    #[error("{program} wrote more than {max} bytes of audio and was stopped")]
    OutputTooLarge { program: String, max: usize },
    /// The program exited with an error.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    /// The program's output is not audio we can read.
    #[error("{program} wrote unreadable audio: {error}")]
    BadAudio { program: String, error: AudioError },
}

/// The `espeak-ng` speech synthesizer, run as a program per synthesis.
#[derive(Debug, Clone, Default)]
pub struct Espeak {
    config: EspeakConfig,
}

/// Most bytes of espeak-ng's complaints kept for an error message.
const MAX_STDERR_BYTES: u64 = 4096;
/// Longest voice or language name accepted.
const MAX_NAME_BYTES: usize = 64;

impl Espeak {
    pub fn new(config: EspeakConfig) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &EspeakConfig {
        &self.config
    }

    /// The espeak-ng voices to try, best first: the voice if one is given,
    /// else the language as an espeak-ng voice name (`en-US` → `en-us`)
    /// then its primary subtag (`es-419` → `es`), else the default voice.
    fn voices(
        &self,
        voice: Option<&str>,
        language: Option<&str>,
    ) -> Result<Vec<String>, SynthError> {
        if let Some(voice) = voice {
            check_name("voice", voice)?;
            return Ok(vec![voice.to_owned()]);
        }
        let Some(language) = language else {
            return Ok(vec![self.config.default_voice.clone()]);
        };
        check_name("language", language)?;
        let tag = language.to_ascii_lowercase().replace('_', "-");
        let mut voices = vec![tag.clone()];
        if let Some((primary, _)) = tag.split_once('-') {
            voices.push(primary.to_owned());
        }
        Ok(voices)
    }

    /// Runs the program once: WAV bytes out.
    fn run(&self, voice: &str, text: &str) -> Result<Vec<u8>, SynthError> {
        let program = self.config.program.display().to_string();
        let mut child = Command::new(&self.config.program)
            .args(["--stdout", "-b", "1", "-v", voice, "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => SynthError::NotInstalled {
                    program: program.clone(),
                },
                _ => SynthError::Spawn {
                    program: program.clone(),
                    reason: e.to_string(),
                },
            })?;
        // The text fits the pipe buffer (max_text_bytes), so writing it
        // before reading cannot deadlock; dropping stdin ends the input.
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(text.as_bytes());
        }
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            stop(&mut child);
            return Err(SynthError::Spawn {
                program,
                reason: "no pipes to the child".into(),
            });
        };
        // A thread reads, so this one can give up at the deadline.
        let max = self.config.max_output_bytes;
        let (done, outcome) = mpsc::channel();
        std::thread::spawn(move || {
            let mut wav = Vec::new();
            let mut complaint = Vec::new();
            let read = stdout.take(max as u64 + 1).read_to_end(&mut wav);
            if wav.len() <= max {
                let _ = stderr.take(MAX_STDERR_BYTES).read_to_end(&mut complaint);
            }
            let _ = done.send((read.map(|_| wav), complaint));
        });
        let (wav, complaint) = match outcome.recv_timeout(self.config.timeout) {
            Ok(read) => read,
            Err(_) => {
                // Killing closes the pipes, which ends the reader thread.
                stop(&mut child);
                return Err(SynthError::Timeout {
                    program,
                    secs: self.config.timeout.as_secs(),
                });
            }
        };
        let wav = match wav {
            Ok(wav) if wav.len() > max => {
                stop(&mut child);
                return Err(SynthError::OutputTooLarge { program, max });
            }
            Ok(wav) => wav,
            Err(e) => {
                stop(&mut child);
                return Err(SynthError::Spawn {
                    program,
                    reason: format!("reading its output: {e}"),
                });
            }
        };
        let status = child.wait().map_err(|e| SynthError::Spawn {
            program: program.clone(),
            reason: e.to_string(),
        })?;
        let complaint = String::from_utf8_lossy(&complaint).trim().to_owned();
        if complaint.contains("voice does not exist") {
            return Err(SynthError::UnknownVoice(voice.to_owned()));
        }
        if !status.success() {
            return Err(SynthError::Failed {
                program,
                status: status.to_string(),
                stderr: complaint,
            });
        }
        Ok(wav)
    }
}

impl Synthesizer for Espeak {
    fn name(&self) -> &str {
        "espeak-ng"
    }

    fn synthesize(
        &self,
        text: &str,
        voice: Option<&str>,
        language: Option<&str>,
    ) -> anyhow::Result<Vec<i16>> {
        if text.len() > self.config.max_text_bytes {
            return Err(SynthError::TextTooLong {
                len: text.len(),
                max: self.config.max_text_bytes,
            }
            .into());
        }
        let voices = self.voices(voice, language)?;
        if text.trim().is_empty() {
            // espeak-ng writes nothing at all for no text, not even a header.
            return Ok(Vec::new());
        }
        let mut last = None;
        for voice in &voices {
            match self.run(voice, text) {
                Ok(wav) => {
                    return decode_wav(&wav).map_err(|error| {
                        SynthError::BadAudio {
                            program: self.config.program.display().to_string(),
                            error,
                        }
                        .into()
                    });
                }
                Err(e @ SynthError::UnknownVoice(_)) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last
            .unwrap_or_else(|| SynthError::UnknownVoice(String::new()))
            .into())
    }
}

/// Refuses names that could be taken for an option or carry anything but
/// a voice name.
fn check_name(what: &'static str, name: &str) -> Result<(), SynthError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SynthError::BadName {
            what,
            name: name.to_owned(),
        })
    }
}

/// Ends the program and reaps it (errors mean it is gone already).
fn stop(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::RATE;
    use crate::media::tone::rms;

    fn espeak() -> Espeak {
        let espeak = Espeak::default();
        let installed = Command::new("espeak-ng")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
        assert!(
            installed,
            "these tests need espeak-ng: apt install espeak-ng"
        );
        espeak
    }

    fn seconds(samples: &[i16]) -> f64 {
        samples.len() as f64 / RATE as f64
    }

    #[test]
    fn espeak_speaks_a_sentence_as_audible_8_khz_audio_of_plausible_length() {
        let samples = espeak()
            .synthesize("Thank you for calling. Please hold.", None, None)
            .unwrap();
        let secs = seconds(&samples);
        assert!((1.0..6.0).contains(&secs), "{secs} s");
        assert!(rms(&samples) > 0.02, "rms {}", rms(&samples));
    }

    #[test]
    fn a_language_tag_picks_the_espeak_voice_and_falls_back_to_its_primary_subtag() {
        let espeak = espeak();
        assert_eq!(espeak.voices(None, Some("en-US")).unwrap(), ["en-us", "en"]);
        assert_eq!(
            espeak.voices(Some("en-gb+f3"), Some("fr")).unwrap(),
            ["en-gb+f3"]
        );
        assert_eq!(espeak.voices(None, None).unwrap(), ["en-us"]);
        for language in ["en-US", "fr-FR", "de_DE", "es-419"] {
            let samples = espeak.synthesize("one two three", None, Some(language));
            let samples = samples.unwrap_or_else(|e| panic!("{language}: {e:#}"));
            assert!(rms(&samples) > 0.02, "{language}");
        }
        let err = espeak.synthesize("hello", None, Some("qq-QQ")).unwrap_err();
        assert_eq!(err.to_string(), r#"espeak-ng has no voice "qq""#);
    }

    #[test]
    fn an_unknown_voice_is_an_error_that_names_it() {
        let err = espeak()
            .synthesize("hello", Some("nosuchvoice"), None)
            .expect_err("no such voice");
        assert_eq!(err.to_string(), r#"espeak-ng has no voice "nosuchvoice""#);
    }

    #[test]
    fn voices_and_languages_that_could_be_options_are_refused() {
        let espeak = espeak();
        for bad in [
            "-w/tmp/x",
            "--stdin",
            "en us",
            "en;rm",
            "",
            "../en",
            &"a".repeat(65),
        ] {
            let err = espeak.synthesize("hello", Some(bad), None).unwrap_err();
            assert!(
                matches!(
                    err.downcast_ref(),
                    Some(SynthError::BadName { what: "voice", .. })
                ),
                "{bad:?}: {err}"
            );
            let err = espeak.synthesize("hello", None, Some(bad)).unwrap_err();
            assert!(err.to_string().starts_with("invalid language"), "{err}");
        }
    }

    #[test]
    fn text_that_looks_like_an_option_is_spoken_not_obeyed() {
        let samples = espeak()
            .synthesize("--help -w /tmp/owned.wav", None, None)
            .unwrap();
        assert!(rms(&samples) > 0.02);
        assert!(!std::path::Path::new("/tmp/owned.wav").exists());
    }

    #[test]
    fn empty_text_is_silence_and_long_text_is_refused() {
        let espeak = espeak();
        assert!(espeak.synthesize("  ", None, None).unwrap().is_empty());
        let err = espeak
            .synthesize(&"a".repeat(9000), None, None)
            .unwrap_err();
        assert!(err.to_string().contains("over the limit of 8192"), "{err}");
    }

    #[test]
    fn a_missing_program_says_how_to_install_it() {
        let espeak = Espeak::new(EspeakConfig {
            program: "/nonexistent/espeak-ng".into(),
            ..EspeakConfig::default()
        });
        let err = espeak
            .synthesize("hello", None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/espeak-ng is not installed"),
            "{err}"
        );
        assert!(err.contains("apt install espeak-ng"), "{err}");
    }

    /// An executable shell script standing in for espeak-ng.
    fn fake_program(dir: &tempfile::TempDir, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join("fake-espeak");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn a_hanging_program_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let espeak = Espeak::new(EspeakConfig {
            program: fake_program(&dir, "exec sleep 30"),
            timeout: Duration::from_millis(300),
            ..EspeakConfig::default()
        });
        let started = std::time::Instant::now();
        let err = espeak.synthesize("hello", None, None).unwrap_err();
        assert!(
            matches!(err.downcast_ref(), Some(SynthError::Timeout { .. })),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn endless_output_is_cut_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let espeak = Espeak::new(EspeakConfig {
            program: fake_program(&dir, "exec yes RIFF"),
            max_output_bytes: 100_000,
            ..EspeakConfig::default()
        });
        let err = espeak.synthesize("hello", None, None).unwrap_err();
        assert!(err.to_string().contains("more than 100000 bytes"), "{err}");
    }

    #[test]
    fn a_failing_program_reports_its_status_and_complaint() {
        let dir = tempfile::tempdir().unwrap();
        let espeak = Espeak::new(EspeakConfig {
            program: fake_program(&dir, "echo 'out of cheese' >&2; exit 3"),
            ..EspeakConfig::default()
        });
        let err = espeak
            .synthesize("hello", None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exit status: 3") && err.contains("out of cheese"),
            "{err}"
        );
    }
}
