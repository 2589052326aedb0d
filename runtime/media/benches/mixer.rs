//! `mixer`: the arithmetic of conference mixing (issue 15), without I/O.
//!
//! One 20 ms tick (160 samples per participant, everyone talking) for:
//! * one conference of 500 participants;
//! * 166 conferences of 3 (498 participants in all), about the same total;
//!
//! and, as the floor, a copy of every participant's frame (what an echo
//! does per tick without sockets). Prints each tick's time as a share of
//! the 20 ms a real-time worker has, and µs per participant. The RTP
//! sockets a real conference also pays are measured by the end-to-end
//! benchmark once conferences are wired to the media engine. Run:
//! `cargo bench -p switchyard-media --bench mixer`

// A benchmark reads the clock; the media code itself never does.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use switchyard_media::mixer::{Join, Mixer, MixerConfig};
use switchyard_media::tone::sine;
use switchyard_media::{FRAME_MS, FRAME_SAMPLES};

const TOTAL: usize = 500;

fn voices(n: usize) -> Vec<Vec<i16>> {
    (0..n)
        .map(|i| sine(200.0 + i as f64, FRAME_MS, 0.05))
        .collect()
}

fn conferences(count: usize, size: usize) -> Vec<Mixer> {
    (0..count)
        .map(|_| {
            let mut m = Mixer::new(MixerConfig {
                max_participants: size,
                ..MixerConfig::default()
            });
            for id in 0..size as u64 {
                m.join(id, Join::default()).expect("room for everyone");
            }
            m
        })
        .collect()
}

fn tick_all(mixers: &mut [Mixer], voices: &[Vec<i16>]) {
    for (c, m) in mixers.iter_mut().enumerate() {
        let base = c * 7;
        m.tick(|id| Some(&voices[(base + id as usize) % voices.len()][..]));
        black_box(m.output(0));
        while m.poll_event().is_some() {}
    }
}

fn echo(frames: &[Vec<i16>], out: &mut [Vec<i16>]) {
    for (o, f) in out.iter_mut().zip(frames) {
        o.copy_from_slice(f);
    }
    black_box(out);
}

/// Mean time of one call of `run` over `ticks` calls, in µs.
fn per_tick_us(ticks: u32, mut run: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..ticks {
        run();
    }
    start.elapsed().as_secs_f64() * 1e6 / ticks as f64
}

fn bench(c: &mut Criterion) {
    let voices = voices(TOTAL);
    let mut one = conferences(1, TOTAL);
    let mut small = conferences(TOTAL / 3, 3);
    let mut out = vec![vec![0i16; FRAME_SAMPLES]; TOTAL];
    let mut group = c.benchmark_group("mixer tick (20 ms)");
    group.bench_function("1 conference x 500", |b| {
        b.iter(|| tick_all(&mut one, &voices))
    });
    group.bench_function("166 conferences x 3", |b| {
        b.iter(|| tick_all(&mut small, &voices))
    });
    group.bench_function("copy 500 frames (floor)", |b| {
        b.iter(|| echo(&voices, &mut out))
    });
    group.finish();

    // One line per shape from a plain loop, side by side in one run.
    let ticks = 2_000;
    let rows = [
        (
            "1 x 500",
            TOTAL,
            per_tick_us(ticks, || tick_all(&mut one, &voices)),
        ),
        (
            "166 x 3",
            TOTAL / 3 * 3,
            per_tick_us(ticks, || tick_all(&mut small, &voices)),
        ),
        (
            "copy 500",
            TOTAL,
            per_tick_us(ticks, || echo(&voices, &mut out)),
        ),
    ];
    let floor = rows[2].2;
    let frame_us = FRAME_MS as f64 * 1000.0;
    for (name, participants, us) in rows {
        println!(
            "mixer {name:>8}: {us:>8.1} µs per tick = {:>5.2} % of a 20 ms frame, \
             {:.3} µs per participant, {:.1}x the copy floor",
            100.0 * us / frame_us,
            us / participants as f64,
            us / floor,
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
