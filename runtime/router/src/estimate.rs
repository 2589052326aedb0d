//! How long prompts last in virtual time: the simulator and the endpoint's
//! tests play no audio, so a `say` is taken to last by its length and a
//! `play` a fixed time.

use switchyard_contract::Prompt;

/// Speaking rate used to estimate how long a `say` lasts.
const MS_PER_CHAR: u64 = 65;
/// How long a `play` is taken to last (the simulator fetches no media).
pub const PLAY_MS: u64 = 3_000;

/// How long `text` is taken to be spoken.
pub fn say_ms(text: &str) -> u64 {
    text.chars().count() as u64 * MS_PER_CHAR
}

/// How long a list of prompts is taken to last.
pub fn prompts_ms(prompts: &[Prompt]) -> u64 {
    prompts
        .iter()
        .map(|p| match p {
            Prompt::Say(say) => say_ms(&say.text),
            Prompt::Play(_) => PLAY_MS,
            Prompt::Pause(pause) => u64::from(pause.length_ms),
        })
        .sum()
}
