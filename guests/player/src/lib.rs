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
//! * `X-Conference: NAME` joins the conference (recorded with `X-Record:
//!   yes`; `X-Conference-Options` lists `muted`, `wait` (does not start
//!   it), `end-on-exit`, `no-beep`, `max=N`); when the caller is out of
//!   it, the call ends.
//! * `X-Enqueue: NAME` waits in the queue (for at most `X-Max-Wait`
//!   seconds, at priority `X-Priority`; with `X-Wait-Updates: SECS` it is
//!   told "You are number N in line" that often); `X-Dial-Queue: NAME`
//!   takes the caller at its head (or call `X-Queue-Call: ID`). When the
//!   wait or the bridge ends, the call ends.

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
            if let Some(name) = header("X-Conference") {
                let options = header("X-Conference-Options").unwrap_or_default();
                return Ok(Plan::new().conference(conference(
                    name,
                    &options,
                    header("X-Record").is_some(),
                )));
            }
            if let Some(name) = header("X-Enqueue") {
                let mut enqueue = Enqueue::queue(name);
                let number = |name: &str| header(name).and_then(|s| s.parse().ok());
                if let Some(secs) = number("X-Max-Wait") {
                    enqueue = enqueue.max_wait_secs(secs);
                }
                if let Some(priority) = number("X-Priority") {
                    enqueue = enqueue.priority(priority);
                }
                if let Some(secs) = number("X-Wait-Updates") {
                    enqueue = enqueue.wait_updates_every(secs);
                }
                return Ok(Plan::new().enqueue(enqueue));
            }
            if let Some(name) = header("X-Dial-Queue") {
                let dial = match header("X-Queue-Call") {
                    Some(id) => Dial::queue_member(name, id),
                    None => Dial::queue(name),
                };
                return Ok(Plan::new().dial(dial));
            }
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
        Event::QueueWait(status) => {
            Ok(Plan::new().say(format!("You are number {} in line", status.position)))
        }
        Event::DialComplete(_) | Event::ConferenceComplete(_) | Event::QueueComplete(_) => {
            Ok(Plan::new().hangup())
        }
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

fn conference(name: String, options: &str, record: bool) -> Conference {
    let mut conference = Conference::named(name).record(record);
    for option in options.split(',').map(str::trim) {
        conference = match option {
            "muted" => conference.muted(true),
            "wait" => conference.start_on_enter(false),
            "end-on-exit" => conference.end_on_exit(true),
            "no-beep" => conference.beep(false),
            max if max.starts_with("max=") => {
                conference.max_participants(max[4..].parse().unwrap_or(1))
            }
            _ => conference,
        };
    }
    conference
}
