//! The mixer fed constant frames and tones: no clock, no sockets.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::tone::{goertzel, sine};

const N: usize = crate::FRAME_SAMPLES;

fn flat(v: i16) -> Vec<i16> {
    vec![v; N]
}

fn mixer() -> Mixer {
    Mixer::new(MixerConfig::default())
}

/// One tick with `frames` (participant → frame); others send nothing.
fn tick(m: &mut Mixer, frames: &HashMap<ParticipantId, Vec<i16>>) {
    m.tick(|id| frames.get(&id).map(Vec::as_slice));
}

fn heard(m: &Mixer, id: ParticipantId) -> i16 {
    let out = m.output(id).unwrap();
    assert!(out.iter().all(|&s| s == out[0]), "a flat input mixes flat");
    out[0]
}

fn events(m: &mut Mixer) -> Vec<MixerEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn frames(list: &[(ParticipantId, i16)]) -> HashMap<ParticipantId, Vec<i16>> {
    list.iter().map(|&(id, v)| (id, flat(v))).collect()
}

#[test]
fn everyone_hears_the_others_and_never_themselves() {
    let mut m = mixer();
    for id in 1..=4 {
        m.join(id, Join::default()).unwrap();
    }
    tick(&mut m, &frames(&[(1, 100), (2, 20), (3, 3), (4, 1000)]));
    assert_eq!(heard(&m, 1), 20 + 3 + 1000);
    assert_eq!(heard(&m, 2), 100 + 3 + 1000);
    assert_eq!(heard(&m, 3), 100 + 20 + 1000);
    assert_eq!(heard(&m, 4), 100 + 20 + 3);
    assert_eq!(m.recording()[0], 1123);
}

#[test]
fn a_participant_who_sends_nothing_still_hears_everyone() {
    let mut m = mixer();
    for id in 1..=3 {
        m.join(id, Join::default()).unwrap();
    }
    tick(&mut m, &frames(&[(1, 10), (2, 20)]));
    assert_eq!(heard(&m, 3), 30);
    assert_eq!(heard(&m, 1), 20);
}

#[test]
fn loud_sums_saturate_instead_of_wrapping() {
    let mut m = mixer();
    for id in 1..=3 {
        m.join(id, Join::default()).unwrap();
    }
    tick(&mut m, &frames(&[(1, 30_000), (2, 30_000), (3, -30_000)]));
    // 3 hears 60,000: clipped to the top, not wrapped negative.
    assert_eq!(heard(&m, 3), i16::MAX);
    assert_eq!(heard(&m, 1), 0);
    tick(&mut m, &frames(&[(1, -30_000), (2, -30_000), (3, 0)]));
    assert_eq!(heard(&m, 3), i16::MIN);
    // The own contribution is taken from the unsaturated sum: exact.
    tick(&mut m, &frames(&[(1, 30_000), (2, 30_000), (3, 30_000)]));
    assert_eq!(heard(&m, 1), i16::MAX);
    assert_eq!(m.recording()[0], i16::MAX);
}

#[test]
fn a_muted_participant_hears_but_is_not_heard() {
    let mut m = mixer();
    for id in 1..=3 {
        m.join(id, Join::default()).unwrap();
    }
    m.set_muted(2, true).unwrap();
    tick(&mut m, &frames(&[(1, 1), (2, 10), (3, 100)]));
    assert_eq!(heard(&m, 1), 100);
    assert_eq!(heard(&m, 2), 101);
    assert_eq!(heard(&m, 3), 1);
    m.set_muted(2, false).unwrap();
    tick(&mut m, &frames(&[(1, 1), (2, 10), (3, 100)]));
    assert_eq!(heard(&m, 1), 110);
    assert!(events(&mut m).contains(&MixerEvent::Muted(2, false)));
}

#[test]
fn a_held_participant_hears_hold_music_and_is_not_heard() {
    let music: Samples = (0..400).map(|i| i as i16).collect::<Vec<_>>().into();
    let mut m = Mixer::new(MixerConfig {
        hold_music: Some(Arc::clone(&music)),
        ..MixerConfig::default()
    });
    for id in 1..=2 {
        m.join(id, Join::default()).unwrap();
    }
    m.set_held(2, true).unwrap();
    tick(&mut m, &frames(&[(1, 7), (2, 500)]));
    assert_eq!(heard(&m, 1), 0, "the held party is not heard");
    assert_eq!(m.output(2).unwrap(), &music[..N]);
    tick(&mut m, &frames(&[(1, 7), (2, 500)]));
    let second: Vec<i16> = (N..2 * N).map(|i| music[i % 400]).collect();
    assert_eq!(
        m.output(2).unwrap(),
        &second[..],
        "the music goes on, looping"
    );
    m.set_held(2, false).unwrap();
    tick(&mut m, &frames(&[(1, 7), (2, 500)]));
    assert_eq!((heard(&m, 1), heard(&m, 2)), (500, 7));
}

#[test]
fn a_coach_is_heard_by_its_target_only_and_hears_everyone() {
    let mut m = mixer();
    m.join(1, Join::default()).unwrap(); // caller
    m.join(2, Join::default()).unwrap(); // agent
    m.join(
        3,
        Join {
            coach: Some(2),
            ..Join::default()
        },
    )
    .unwrap(); // supervisor
    tick(&mut m, &frames(&[(1, 1), (2, 10), (3, 100)]));
    assert_eq!(heard(&m, 1), 10, "the caller does not hear the coach");
    assert_eq!(heard(&m, 2), 101, "the agent hears caller and coach");
    assert_eq!(heard(&m, 3), 11, "the coach hears both");
    assert_eq!(m.recording()[0], 11, "whispers are not recorded");
    // Barge: the coach talks to everyone.
    m.set_coach(3, None).unwrap();
    tick(&mut m, &frames(&[(1, 1), (2, 10), (3, 100)]));
    assert_eq!(heard(&m, 1), 110);
    // The target leaving ends the whisper.
    m.set_coach(3, Some(2)).unwrap();
    m.leave(2).unwrap();
    assert!(events(&mut m).contains(&MixerEvent::Coaching(3, None)));
    tick(&mut m, &frames(&[(1, 1), (3, 100)]));
    assert_eq!(heard(&m, 1), 100);
    assert_eq!(m.set_coach(3, Some(3)), Err(MixError::CoachSelf));
    assert_eq!(m.set_coach(3, Some(9)), Err(MixError::NotIn(9)));
}

/// A mixer with wait music (flat 42) and participants 1 and 2, who do
/// not start it, after one tick of them sending 5 and 6.
fn two_waiting() -> Mixer {
    let music: Samples = vec![42i16; 320].into();
    let mut m = Mixer::new(MixerConfig {
        wait_music: Some(music),
        ..MixerConfig::default()
    });
    let waiting = Join {
        start_on_enter: false,
        ..Join::default()
    };
    m.join(1, waiting).unwrap();
    m.join(2, waiting).unwrap();
    tick(&mut m, &frames(&[(1, 5), (2, 6)]));
    m
}

#[test]
fn wait_music_plays_until_a_participant_who_starts_it_enters() {
    let mut m = two_waiting();
    assert!(!m.is_started());
    assert_eq!(
        (heard(&m, 1), heard(&m, 2)),
        (42, 42),
        "music, not each other"
    );
    m.join(
        3,
        Join {
            end_on_exit: true,
            ..Join::default()
        },
    )
    .unwrap();
    assert!(m.is_started());
    tick(&mut m, &frames(&[(1, 5), (2, 6), (3, 7)]));
    assert_eq!(heard(&m, 1), 13);
    assert_eq!(
        events(&mut m),
        [
            MixerEvent::Joined(1),
            MixerEvent::Joined(2),
            MixerEvent::Joined(3),
            MixerEvent::Started
        ]
    );
    // The moderator leaves: the conference ends for everyone.
    m.leave(3).unwrap();
    assert_eq!(m.ended(), Some(EndReason::EndOnExit(3)));
    assert_eq!(
        events(&mut m),
        [
            MixerEvent::Left(3),
            MixerEvent::Ended(EndReason::EndOnExit(3))
        ]
    );
    assert_eq!(m.join(4, Join::default()), Err(MixError::Ended));
}

#[test]
fn the_last_one_out_ends_it_and_the_size_is_capped() {
    let mut m = Mixer::new(MixerConfig {
        max_participants: 2,
        ..MixerConfig::default()
    });
    m.join(1, Join::default()).unwrap();
    assert_eq!(m.join(1, Join::default()), Err(MixError::AlreadyIn(1)));
    m.join(2, Join::default()).unwrap();
    assert_eq!(m.join(3, Join::default()), Err(MixError::Full { max: 2 }));
    m.leave(1).unwrap();
    assert_eq!(m.ended(), None);
    assert_eq!(m.leave(1), Err(MixError::NotIn(1)));
    m.leave(2).unwrap();
    assert_eq!(m.ended(), Some(EndReason::LastLeft));
}

#[test]
fn entry_and_exit_beeps_reach_everyone_once() {
    let entry: Samples = sine(1400.0, 40, 0.3).into();
    let exit: Samples = sine(500.0, 40, 0.3).into();
    let mut m = Mixer::new(MixerConfig {
        entry_beep: Some(entry),
        exit_beep: Some(exit),
        ..MixerConfig::default()
    });
    m.join(1, Join::default()).unwrap();
    m.join(2, Join::default()).unwrap();
    let silent = HashMap::new();
    let mut heard_by_1 = Vec::new();
    for _ in 0..4 {
        tick(&mut m, &silent);
        heard_by_1.extend_from_slice(m.output(1).unwrap());
    }
    assert!(goertzel(&heard_by_1[..320], 1400.0) > 0.01, "entry beep");
    assert_eq!(crate::tone::rms(&heard_by_1[320..]), 0.0, "then silence");
    m.join(3, Join::default()).unwrap();
    m.leave(3).unwrap();
    tick(&mut m, &silent);
    tick(&mut m, &silent);
    let both: Vec<i16> = m.output(2).unwrap().to_vec();
    assert!(
        goertzel(&both, 500.0) > 0.01,
        "the exit beep replaced the entry beep"
    );
    assert_eq!(
        m.recording().iter().map(|&s| s as i32).sum::<i32>(),
        0,
        "no beep recorded"
    );
}

#[test]
fn speaking_starts_after_two_loud_frames_and_stops_after_the_hangover() {
    let mut m = mixer();
    m.join(1, Join::default()).unwrap();
    m.join(2, Join::default()).unwrap();
    events(&mut m);
    let voice = sine(300.0, 20, 0.3);
    let loud: HashMap<_, _> = [(1, voice.clone())].into();
    tick(&mut m, &loud);
    assert_eq!(events(&mut m), [], "one frame is not speech yet");
    tick(&mut m, &loud);
    assert_eq!(events(&mut m), [MixerEvent::SpeakingStarted(1)]);
    let quiet = HashMap::new();
    for _ in 0..24 {
        tick(&mut m, &quiet);
    }
    assert_eq!(events(&mut m), [], "a pause shorter than the hangover");
    tick(&mut m, &quiet);
    assert_eq!(events(&mut m), [MixerEvent::SpeakingStopped(1)]);
}

#[test]
fn a_frame_of_another_length_is_cut_or_padded() {
    let mut m = mixer();
    m.join(1, Join::default()).unwrap();
    m.join(2, Join::default()).unwrap();
    let long = vec![9i16; N * 2];
    let short = [5i16; N / 2];
    m.tick(|id| Some(if id == 1 { &long[..] } else { &short[..] }));
    let to_1 = m.output(1).unwrap();
    assert_eq!(to_1.len(), N);
    assert_eq!((to_1[0], to_1[N - 1]), (5, 0));
    assert_eq!(m.output(2).unwrap(), &flat(9)[..]);
}

#[test]
fn a_wideband_mixer_is_the_same_mixer_with_longer_frames() {
    let mut m = Mixer::new(MixerConfig {
        frame: 320, // 20 ms at 16 kHz
        ..MixerConfig::default()
    });
    m.join(1, Join::default()).unwrap();
    m.join(2, Join::default()).unwrap();
    let a = vec![3i16; 320];
    m.tick(|id| (id == 1).then_some(&a[..]));
    assert_eq!(m.output(2).unwrap(), &a[..]);
}

/// What `law` makes of `samples` on the wire and back.
fn through(law: crate::g711::Law, samples: &[i16]) -> Vec<i16> {
    let mut wire = vec![0u8; samples.len()];
    law.encode(samples, &mut wire);
    let mut back = Vec::new();
    law.decode(&wire, &mut back);
    back
}

#[test]
fn pcmu_and_pcma_legs_in_one_conference_hear_the_other_tones_not_their_own() {
    use crate::g711::Law;
    // Three legs, each sending its own pure tone, two in µ-law, one in A-law;
    // a second of audio, frame by frame, as the media workers would feed it.
    let legs = [
        (1u64, Law::Mu, 440.0),
        (2, Law::A, 700.0),
        (3, Law::Mu, 1100.0),
    ];
    let mut m = mixer();
    for (id, _, _) in legs {
        m.join(id, Join::default()).unwrap();
    }
    let mut heard: HashMap<u64, Vec<i16>> = HashMap::new();
    let tones: HashMap<u64, Vec<i16>> = legs
        .iter()
        .map(|&(id, law, hz)| (id, through(law, &sine(hz, 1000, 0.2))))
        .collect();
    for f in 0..50 {
        let at = f * N;
        m.tick(|id| Some(&tones[&id][at..at + N]));
        for (id, law, _) in legs {
            heard
                .entry(id)
                .or_default()
                .extend(through(law, m.output(id).unwrap()));
        }
    }
    // A full-scale sine gives ~1.0; each tone is sent at 0.2 (power 0.04).
    let db = |power: f64| 10.0 * power.max(1e-12).log10();
    let sent = db(0.04);
    for (id, _, own) in legs {
        let audio = &heard[&id];
        for (other, _, hz) in legs {
            let level = db(goertzel(audio, hz));
            if other == id {
                assert!(
                    level < sent - 30.0,
                    "leg {id} hears its own {own} Hz at {level:.1} dB"
                );
            } else {
                assert!(
                    (level - sent).abs() < 3.0,
                    "leg {id} hears {hz} Hz at {level:.1} dB, sent at {sent:.1} dB"
                );
            }
        }
    }
    // Muting leg 2 takes its tone out of what the others hear.
    m.set_muted(2, true).unwrap();
    let mut to_1 = Vec::new();
    for f in 0..25 {
        let at = f * N;
        m.tick(|id| Some(&tones[&id][at..at + N]));
        to_1.extend(through(Law::Mu, m.output(1).unwrap()));
    }
    assert!(db(goertzel(&to_1, 700.0)) < sent - 30.0);
    assert!((db(goertzel(&to_1, 1100.0)) - sent).abs() < 3.0);
}

#[test]
fn a_cascade_link_hears_this_region_only_and_links_never_hear_each_other() {
    let mut m = mixer();
    let link = Join {
        link: true,
        ..Join::default()
    };
    m.join(1, Join::default()).unwrap();
    m.join(2, Join::default()).unwrap();
    m.join(10, link).unwrap(); // region B
    m.join(11, link).unwrap(); // region C
    tick(&mut m, &frames(&[(1, 1), (2, 10), (10, 100), (11, 1000)]));
    assert_eq!(heard(&m, 1), 10 + 100 + 1000, "locals hear every region");
    assert_eq!(heard(&m, 2), 1 + 100 + 1000);
    assert_eq!(heard(&m, 10), 11, "B gets this region's mix, not C's");
    assert_eq!(heard(&m, 11), 11, "C gets this region's mix, not B's");
    assert_eq!(m.recording()[0], 1111);
    assert_eq!(
        m.set_coach(10, Some(1)),
        Err(MixError::LinkCoach),
        "a link cannot whisper"
    );
    // The last local leaving closes the region's mixer, links or not.
    m.leave(1).unwrap();
    assert_eq!(m.ended(), None);
    m.leave(2).unwrap();
    assert_eq!(m.ended(), Some(EndReason::LastLeft));
}

#[test]
fn a_participant_without_beep_enters_and_leaves_quietly() {
    let mut m = Mixer::new(MixerConfig {
        entry_beep: Some(sine(1400.0, 40, 0.3).into()),
        exit_beep: Some(sine(500.0, 40, 0.3).into()),
        ..MixerConfig::default()
    });
    let quiet = Join {
        beep: false,
        ..Join::default()
    };
    m.join(1, quiet).unwrap();
    m.join(2, quiet).unwrap();
    m.join(3, quiet).unwrap();
    m.leave(3).unwrap();
    let silent = HashMap::new();
    for _ in 0..4 {
        tick(&mut m, &silent);
        assert_eq!(crate::tone::rms(m.output(1).unwrap()), 0.0);
    }
    m.join(4, Join::default()).unwrap();
    tick(&mut m, &silent);
    assert!(
        goertzel(m.output(1).unwrap(), 1400.0) > 0.01,
        "a beeping join"
    );
}

#[test]
fn a_conference_started_from_outside_stops_the_wait_music() {
    let mut m = two_waiting();
    assert_eq!(heard(&m, 1), 42);
    m.start();
    m.start();
    tick(&mut m, &frames(&[(1, 5), (2, 6)]));
    assert_eq!((heard(&m, 1), heard(&m, 2)), (6, 5));
    let started = events(&mut m)
        .into_iter()
        .filter(|e| *e == MixerEvent::Started)
        .count();
    assert_eq!(started, 1, "started once");
}
