//! The caller script: what a simulated caller does, one action per line.
//!
//! ```text
//! # comments and blank lines are ignored
//! call from +14155550100 to +14155550199   # optional, before any action
//! at 2026-01-05T09:00:00Z  # optional: the wall-clock time the call starts
//! press 2          # DTMF for a gather (or to end a record)
//! silence          # no input: a gather times out, a record ends on silence
//! speak 5          # talk for 5 s into a record (then silence)
//! speak 5 press #  # talk 5 s, then end the record with '#'
//! answer           # a dial: the first target answers (talks 10 s)
//! answer 2 talk 30 # a dial: the second target answers, the bridge lasts 30 s
//! busy | no-answer | fail        # a dial's outcome
//! conference ends after 60       # a conference's outcome (or `kicked after N`, `full`)
//! queue bridged after 30         # an enqueue's outcome (or `timeout`, `full`)
//! queue bridged after 60 ahead 3 # ... with 3 callers ahead at first
//! hang up          # the caller hangs up
//! ```
//!
//! [`LINES`] is the list of every line form: the parser's "unknown action"
//! message and `switchyard simulate --help` are made from it.
//!
//! An action is consumed when the call waits for the caller (gather, record,
//! dial, conference). When the script runs out, the caller hangs up.
//!
//! There are no actions for pay: this runtime cannot execute it yet
//! (`router::LEG_SUPPORT`), so a plan using it is refused and the
//! fallback runs, as it would on a real call.

use std::collections::VecDeque;

/// Default caller and callee when the script does not say.
pub const DEFAULT_FROM: &str = "+14155550100";
pub const DEFAULT_TO: &str = "+14155550199";

/// Every line a script may hold: the word it starts with, its form, and
/// what it does. Listed by `switchyard simulate --help` and in the
/// "unknown action" message; the test below parses every form.
pub const LINES: &[(&str, &str, &str)] = &[
    (
        "call",
        "call from NUMBER to NUMBER",
        "who calls whom (before any action)",
    ),
    (
        "at",
        "at 2026-01-05T09:00:00Z",
        "the wall-clock time the call starts at, RFC 3339 (before any action)",
    ),
    (
        "press",
        "press KEYS",
        "DTMF for a gather, or to end a record",
    ),
    (
        "silence",
        "silence",
        "no input: a gather times out, a record ends on silence",
    ),
    ("speak", "speak N", "talk N s into a record, then silence"),
    (
        "speak",
        "speak N press K",
        "talk N s, then end the record with K",
    ),
    (
        "answer",
        "answer",
        "a dial: the first target answers, the bridge lasts 10 s",
    ),
    (
        "answer",
        "answer N talk S",
        "a dial: target N answers, the bridge lasts S s",
    ),
    ("busy", "busy", "a dial's outcome: the targets are busy"),
    (
        "no-answer",
        "no-answer",
        "a dial's outcome: nobody answers in time",
    ),
    ("fail", "fail", "a dial's outcome: the dial fails"),
    (
        "conference",
        "conference ends after N",
        "a conference: it ends N s after the caller joined (end-on-exit, REST)",
    ),
    (
        "conference",
        "conference kicked after N",
        "a conference: the caller is removed after N s",
    ),
    (
        "conference",
        "conference full",
        "a conference: it is full, the caller does not join",
    ),
    (
        "queue",
        "queue bridged after N",
        "an enqueue: an agent takes the caller after N s, they talk 10 s",
    ),
    (
        "queue",
        "queue bridged after N talk S",
        "an enqueue: an agent takes the caller after N s, they talk S s",
    ),
    (
        "queue",
        "queue bridged after N ahead N",
        "the same, N callers ahead at first: each queue-wait update finds one fewer",
    ),
    (
        "queue",
        "queue timeout",
        "an enqueue: nobody takes the caller within its max-wait-secs",
    ),
    (
        "queue",
        "queue timeout ahead N",
        "the same, N callers ahead at first",
    ),
    ("queue", "queue full", "an enqueue: the queue is full"),
    ("hang up", "hang up", "the caller hangs up"),
];

/// The script format as `switchyard simulate --help` shows it.
pub fn help() -> String {
    let width = LINES
        .iter()
        .map(|(_, form, _)| form.len())
        .max()
        .unwrap_or(0);
    let mut text = String::from(
        "Caller script: one line each; `#` starts a comment. An action is used when \
         the call waits for the caller (gather, record, dial); when the script runs \
         out, the caller hangs up.\n",
    );
    for (_, form, meaning) in LINES {
        text += &format!("  {form:width$}  {meaning}\n");
    }
    text
}

/// The words a line may start with, for the "unknown action" message.
fn line_words() -> String {
    let mut words: Vec<&str> = Vec::new();
    for (word, _, _) in LINES {
        if !words.contains(word) {
            words.push(word);
        }
    }
    words.join(", ")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub from: String,
    pub to: String,
    /// When the call starts on the wall clock (Unix ms), if the script says.
    pub at_ms: Option<u64>,
    pub actions: VecDeque<Step>,
}

/// An action and the script line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub line: usize,
    pub text: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Press(String),
    Silence,
    Speak {
        secs: u32,
        then_press: Option<char>,
    },
    Answer {
        target: usize,
        talk_secs: u32,
    },
    Busy,
    NoAnswer,
    Fail,
    /// A conference's outcome after `secs` in it.
    Conference {
        ended_by: crate::contract::ConferenceEnd,
        secs: u32,
    },
    /// The conference refuses the caller: it is full.
    ConferenceFull,
    /// An agent takes the caller after `waited` s; the bridge lasts `talk`
    /// s. `ahead` callers wait before it at first (for `queue-wait`).
    QueueBridged {
        waited: u32,
        talk: u32,
        ahead: u32,
    },
    QueueTimeout {
        ahead: u32,
    },
    QueueFull,
    HangUp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("script line {line}: {message}")]
pub struct ScriptError {
    pub line: usize,
    pub message: String,
}

impl Script {
    pub fn parse(text: &str) -> Result<Self, ScriptError> {
        let mut script = Script {
            from: DEFAULT_FROM.into(),
            to: DEFAULT_TO.into(),
            at_ms: None,
            actions: VecDeque::new(),
        };
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let text = strip_comment(raw);
            if text.is_empty() {
                continue;
            }
            let fail = |message: String| ScriptError { line, message };
            let words: Vec<&str> = text.split_whitespace().collect();
            if words[0] == "call" {
                if !script.actions.is_empty() {
                    return Err(fail("`call` must come before every caller action".into()));
                }
                parse_call(&words[1..], &mut script).map_err(fail)?;
                continue;
            }
            if words[0] == "at" {
                if !script.actions.is_empty() {
                    return Err(fail("`at` must come before every caller action".into()));
                }
                let [_, time] = words[..] else {
                    return Err(fail(
                        "`at` takes one RFC 3339 time, like `at 2026-01-05T09:00:00Z`".into(),
                    ));
                };
                script.at_ms = Some(super::rfc3339::parse(time).map_err(fail)?);
                continue;
            }
            let action = parse_action(&words).map_err(fail)?;
            script.actions.push_back(Step {
                line,
                text: text.to_string(),
                action,
            });
        }
        Ok(script)
    }
}

/// `#` is a DTMF key too, so a comment starts only at the start of a line
/// or at a `#` standing alone between blanks ("press 12#  # account").
fn strip_comment(raw: &str) -> &str {
    let line = raw.trim();
    if line.starts_with('#') {
        return "";
    }
    let bytes = line.as_bytes();
    let comment = (1..bytes.len()).find(|&i| {
        bytes[i] == b'#'
            && bytes[i - 1].is_ascii_whitespace()
            && bytes.get(i + 1).is_some_and(u8::is_ascii_whitespace)
    });
    comment.map_or(line, |i| line[..i].trim_end())
}

fn parse_call(words: &[&str], script: &mut Script) -> Result<(), String> {
    let mut rest = words.iter();
    while let Some(word) = rest.next() {
        let value = rest
            .next()
            .ok_or_else(|| format!("`{word}` needs a value"))?;
        match *word {
            "from" => script.from = value.to_string(),
            "to" => script.to = value.to_string(),
            other => return Err(format!("unknown call option `{other}` (expected from, to)")),
        }
    }
    Ok(())
}

fn number(word: Option<&&str>, what: &str) -> Result<u32, String> {
    let word = word.ok_or_else(|| format!("{what} needs a number"))?;
    word.trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{what}: `{word}` is not a number of seconds"))
}

fn count(word: Option<&&str>, what: &str) -> Result<u32, String> {
    let word = word.ok_or_else(|| format!("{what} needs a number"))?;
    word.parse()
        .map_err(|_| format!("{what}: `{word}` is not a number"))
}

fn parse_action(words: &[&str]) -> Result<Action, String> {
    let keys = |w: &str| -> Result<String, String> {
        match w.chars().find(|c| !"0123456789*#ABCD".contains(*c)) {
            Some(bad) => Err(format!("`{bad}` is not a keypad key")),
            None => Ok(w.to_string()),
        }
    };
    Ok(match words {
        ["press", digits] => Action::Press(keys(digits)?),
        ["silence"] => Action::Silence,
        ["speak", secs] => Action::Speak {
            secs: number(Some(secs), "speak")?,
            then_press: None,
        },
        ["speak", secs, "press", key] => {
            let key = keys(key)?;
            let mut chars = key.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Action::Speak {
                    secs: number(Some(secs), "speak")?,
                    then_press: Some(c),
                },
                _ => return Err("`speak N press K` takes one key".into()),
            }
        }
        ["answer", rest @ ..] => {
            let (mut target, mut talk_secs) = (1, 10);
            let mut it = rest.iter();
            while let Some(word) = it.next() {
                match *word {
                    "talk" => talk_secs = number(it.next(), "talk")?,
                    n => {
                        target = n.parse().map_err(|_| {
                            format!("`answer {n}`: expected a target number or `talk N`")
                        })?
                    }
                }
            }
            if target == 0 {
                return Err("targets are numbered from 1".into());
            }
            Action::Answer { target, talk_secs }
        }
        ["busy"] => Action::Busy,
        ["no-answer"] => Action::NoAnswer,
        ["fail"] => Action::Fail,
        ["conference", "ends", "after", secs] => Action::Conference {
            ended_by: crate::contract::ConferenceEnd::Ended,
            secs: number(Some(secs), "conference ends after")?,
        },
        ["conference", "kicked", "after", secs] => Action::Conference {
            ended_by: crate::contract::ConferenceEnd::Kicked,
            secs: number(Some(secs), "conference kicked after")?,
        },
        ["conference", "full"] => Action::ConferenceFull,
        ["queue", "bridged", "after", secs, rest @ ..] => {
            let (mut talk, mut ahead) = (10, 0);
            let mut it = rest.iter();
            while let Some(word) = it.next() {
                match *word {
                    "talk" => talk = number(it.next(), "talk")?,
                    "ahead" => ahead = count(it.next(), "ahead")?,
                    _ => {
                        return Err(
                            "`queue bridged after N` may go on with `talk S` and `ahead N`".into(),
                        );
                    }
                }
            }
            Action::QueueBridged {
                waited: number(Some(secs), "queue bridged after")?,
                talk,
                ahead,
            }
        }
        ["queue", "timeout"] => Action::QueueTimeout { ahead: 0 },
        ["queue", "timeout", "ahead", n] => Action::QueueTimeout {
            ahead: count(Some(n), "ahead")?,
        },
        ["queue", "full"] => Action::QueueFull,
        ["hang", "up"] | ["hangup"] => Action::HangUp,
        _ => {
            return Err(format!(
                "unknown action `{}` (a line starts with one of: {}; `switchyard simulate --help` lists them)",
                words.join(" "),
                line_words()
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_reads_call_line_actions_and_comments() {
        let script = Script::parse("call from +1 to +2\n# menu\npress 12#  # account\npress #\nanswer 2 talk 30\nhang up\n").unwrap();
        assert_eq!((script.from.as_str(), script.to.as_str()), ("+1", "+2"));
        let actions: Vec<_> = script.actions.iter().map(|s| s.action.clone()).collect();
        assert_eq!(
            actions,
            vec![
                Action::Press("12#".into()),
                Action::Press("#".into()),
                Action::Answer {
                    target: 2,
                    talk_secs: 30
                },
                Action::HangUp
            ]
        );
        assert_eq!(script.actions[0].line, 3);
    }

    #[test]
    fn unknown_actions_name_the_line() {
        let err = Script::parse("press 1\ndance\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("unknown action `dance`"), "{err}");
        assert!(
            err.message.contains(
                "press, silence, speak, answer, busy, no-answer, fail, conference, queue, hang up"
            ),
            "{err}"
        );
        let err = Script::parse("press 1x\n").unwrap_err();
        assert!(err.message.contains("`x` is not a keypad key"), "{err}");
    }

    #[test]
    fn every_line_form_in_the_table_parses() {
        for (word, form, _) in LINES {
            assert!(form.starts_with(word), "{form} starts with {word}");
            let example = form
                .replace("NUMBER", "+14155550100")
                .replace("KEYS", "12#")
                .replace(" N", " 5")
                .replace(" K", " #")
                .replace(" S", " 30");
            let script = Script::parse(&example);
            assert!(script.is_ok(), "{example}: {script:?}");
        }
    }

    #[test]
    fn an_at_line_sets_the_start_time_before_any_action() {
        let script = Script::parse("at 2026-01-05T09:00:00Z\npress 1\n").unwrap();
        assert_eq!(script.at_ms, Some(1_767_603_600_000));
        let err = Script::parse("press 1\nat 2026-01-05T09:00:00Z\n").unwrap_err();
        assert!(err.message.contains("before every caller action"), "{err}");
        let err = Script::parse("at 9am\n").unwrap_err();
        assert!(err.message.contains("not an RFC 3339 time"), "{err}");
    }
}
