//! Plays what the caller asks for in X- headers of its INVITE, then hangs
//! up: the guest of the media tests.
//!
//! * `X-Play-Url: URL` plays a WAV from http(s); `X-Play-Media: ID` plays
//!   from the tenant's media store; `X-Say: TEXT` speaks (voice from
//!   `X-Voice`). Without any, it says "Hello".
//! * `X-Gather: yes` plays the prompt as a one-digit gather and says the
//!   digit it got ("You pressed 5"), or "Nothing" on timeout.
//! * `X-Dial: URI` says "Connecting" and dials the SIP URI (recorded with
//!   `X-Record: yes`); the call ends with the dial.

use switchyard_sdk::prelude::*;

#[call_handler]
fn handle(_ctx: Context, event: Event) -> Result<Plan, HandlerError> {
    match event {
        Event::Incoming(call) => {
            let header = |name: &str| {
                call.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| h.value.clone())
            };
            if let Some(uri) = header("X-Dial") {
                let dial = Dial::sip(uri).record(header("X-Record").is_some());
                return Ok(Plan::new().say("Connecting").dial(dial));
            }
            let prompt = prompt(
                header("X-Play-Url"),
                header("X-Play-Media"),
                header("X-Say"),
                header("X-Voice"),
            );
            let gather = Gather::digits(1).timeout_secs(3);
            Ok(match (header("X-Gather").is_some(), prompt) {
                (true, Prompt::Play(play)) => Plan::new().gather(gather.play_with(play)),
                (true, Prompt::Say(say)) => Plan::new().gather(gather.say_with(say)),
                (false, Prompt::Play(play)) => Plan::new().play_with(play).hangup(),
                (_, say) => Plan::new().verb(say.into()).hangup(),
            })
        }
        Event::GatherComplete(input) if input.digits.is_empty() => {
            Ok(Plan::new().say("Nothing").hangup())
        }
        Event::GatherComplete(input) => Ok(Plan::new()
            .say(format!("You pressed {}", input.digits))
            .hangup()),
        Event::DialComplete(_) => Ok(Plan::new().hangup()),
        _ => Ok(Plan::new()),
    }
}

fn prompt(
    url: Option<String>,
    media: Option<String>,
    text: Option<String>,
    voice: Option<String>,
) -> Prompt {
    match (url, media) {
        (Some(url), _) => Prompt::Play(Play::url(url)),
        (_, Some(id)) => Prompt::Play(Play::media(id)),
        _ => {
            let mut say = Say::new(text.unwrap_or_else(|| "Hello".into()));
            say.voice = voice;
            Prompt::Say(say)
        }
    }
}
