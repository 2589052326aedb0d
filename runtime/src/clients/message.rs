//! The client signalling protocol: JSON text frames, one message each,
//! `{"type": …}`. Parsing never panics and says what was wrong.
//!
//! ```text
//!   client → runtime   register {token}        first, within the heartbeat time
//!                      heartbeat {}            at least every heartbeat_secs
//!                      presence {status, text?}
//!                      invite {call, to, sdp}  place a call (sdp: the offer)
//!                      answer {call, sdp}      take an incoming call (sdp: the
//!                                              client's offer, see below)
//!                      reject {call}           decline an incoming call
//!                      candidate {call, candidate}  a trickled ICE candidate
//!                      dtmf {call, digits}     0-9 * # A-D, up to 32
//!                      hangup {call}
//!   runtime → client   registered {identity, device, heartbeat_secs, expires}
//!                      heartbeat {}            the answer to one
//!                      presence {identity, status, text, devices}
//!                      media {call, sdp}       the runtime's SDP answer
//!                      ringing {call}, connected {call}
//!                      incoming {call, from, to, label?}   answer or reject it
//!                                              (label: the caller's screening, C11)
//!                      ended {call, reason, status?, message?}  reason: hangup,
//!                                              busy, no-answer, rejected,
//!                                              cancelled, failed
//!                      error {code, message, call?}  unauthorized (and
//!                                              too_many: 20 devices per
//!                                              identity) ends the session
//!
//!   The client always makes the SDP offer, for incoming calls too: the
//!   runtime is ICE-lite, and a lite agent answers (RFC 8445 §6.1.1).
//!
//!   tenant's presence stream (/v1/events/presence), runtime → server:
//!                      presence {…} per present identity, watching {present},
//!                      then presence {…} on every change; error lagged
//!                      (then the snapshot again) if it fell behind
//! ```

use serde::{Deserialize, Serialize};

use super::presence::{Status, View};

/// Largest frame a client may send.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Every message type a client may send.
const TYPES: &str =
    "register, heartbeat, presence, invite, answer, reject, candidate, dtmf, hangup";
/// Longest call id a client may choose, and longest `to`.
const MAX_CALL_ID: usize = 64;
const MAX_TO: usize = 256;
/// Most digits in one `dtmf`.
const MAX_DIGITS: usize = 32;

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Register {
        token: String,
    },
    Heartbeat,
    Presence {
        status: Status,
        text: Option<String>,
    },
    Invite {
        call: String,
        to: String,
        sdp: String,
    },
    Answer {
        call: String,
        sdp: String,
    },
    Reject {
        call: String,
    },
    Candidate {
        call: String,
        candidate: String,
    },
    Dtmf {
        call: String,
        digits: String,
    },
    Hangup {
        call: String,
    },
}

/// The fields of a call message (which ones a type needs is checked in
/// [`parse`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallFields {
    #[serde(rename = "type")]
    _kind: String,
    call: String,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    sdp: Option<String>,
    #[serde(default)]
    candidate: Option<String>,
    #[serde(default)]
    digits: Option<String>,
}

impl CallFields {
    fn check(self, kind: &str) -> Result<ClientMessage, String> {
        let call = self.call;
        let id_ok = !call.is_empty()
            && call.len() <= MAX_CALL_ID
            && (call.bytes()).all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !id_ok {
            return Err(format!(
                "{kind}: a call id is 1 to {MAX_CALL_ID} of A-Z a-z 0-9 . _ -"
            ));
        }
        let need = |field: Option<String>, name: &str| {
            field.ok_or_else(|| format!("{kind}: missing field `{name}`"))
        };
        Ok(match kind {
            "invite" => {
                let to = need(self.to, "to")?;
                if to.trim().is_empty() || to.len() > MAX_TO || to.chars().any(char::is_control) {
                    return Err(format!(
                        "invite: `to` is 1 to {MAX_TO} bytes without control characters"
                    ));
                }
                let sdp = need(self.sdp, "sdp")?;
                ClientMessage::Invite { call, to, sdp }
            }
            "answer" => ClientMessage::Answer {
                call,
                sdp: need(self.sdp, "sdp")?,
            },
            "reject" => ClientMessage::Reject { call },
            "candidate" => ClientMessage::Candidate {
                call,
                candidate: need(self.candidate, "candidate")?,
            },
            "dtmf" => {
                let digits = need(self.digits, "digits")?;
                let ok = |c: char| matches!(c, '0'..='9' | '*' | '#' | 'A'..='D');
                if digits.is_empty() || digits.len() > MAX_DIGITS || !digits.chars().all(ok) {
                    return Err(format!(
                        "dtmf: `digits` is 1 to {MAX_DIGITS} of 0-9 * # A-D"
                    ));
                }
                ClientMessage::Dtmf { call, digits }
            }
            _ => ClientMessage::Hangup { call },
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Register {
    #[serde(rename = "type")]
    _kind: String,
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPresence {
    #[serde(rename = "type")]
    _kind: String,
    status: Status,
    #[serde(default)]
    text: Option<String>,
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<ClientMessage, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or("a message is a JSON object with a \"type\"")?
        .to_owned();
    let fields = |e: serde_json::Error| format!("{kind}: {e}");
    Ok(match kind.as_str() {
        "register" => {
            let r: Register = serde_json::from_value(value).map_err(fields)?;
            ClientMessage::Register { token: r.token }
        }
        "heartbeat" => ClientMessage::Heartbeat,
        "presence" => {
            let p: SetPresence = serde_json::from_value(value).map_err(fields)?;
            ClientMessage::Presence {
                status: p.status,
                text: p.text,
            }
        }
        "invite" | "answer" | "reject" | "candidate" | "dtmf" | "hangup" => {
            let fields: CallFields = serde_json::from_value(value).map_err(fields)?;
            fields.check(&kind)?
        }
        other => return Err(format!("unknown message type {other:?}: {TYPES}")),
    })
}

/// A message to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    Registered {
        identity: String,
        /// This connection's device id.
        device: String,
        /// Send something at least this often, or be taken offline.
        heartbeat_secs: u64,
        /// When the token expires (unix seconds): reconnect with a new one.
        expires: u64,
    },
    Heartbeat,
    Presence(View),
    /// The runtime's SDP answer to the client's offer for `call`.
    Media {
        call: String,
        sdp: String,
    },
    Ringing {
        call: String,
    },
    Connected {
        call: String,
    },
    Incoming {
        call: String,
        from: String,
        to: String,
        /// What the caller's screening found ("verified", "unverified",
        /// "likely-spoofed"; C11), like Twilio's StirVerstat.
        #[serde(skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    Ended {
        call: String,
        reason: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// An error about one call (the call goes on unless `ended` follows).
    #[serde(rename = "error")]
    CallError {
        code: &'static str,
        message: String,
        call: String,
    },
    /// On the tenant's presence stream: the snapshot of `present`
    /// identities is complete; changes follow.
    Watching {
        present: usize,
    },
    Error {
        code: &'static str,
        message: String,
    },
}

impl ServerMessage {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"cannot encode"}"#.into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse(r#"{"type":"register","token":"t"}"#),
            Ok(ClientMessage::Register { token: "t".into() })
        );
        assert_eq!(
            parse(r#"{"type":"heartbeat"}"#),
            Ok(ClientMessage::Heartbeat)
        );
        assert_eq!(
            parse(r#"{"type":"presence","status":"away","text":"lunch"}"#),
            Ok(ClientMessage::Presence {
                status: Status::Away,
                text: Some("lunch".into())
            })
        );
        assert_eq!(
            parse(r#"{"type":"invite","call":"c1","to":"+15550100","sdp":"v=0"}"#),
            Ok(ClientMessage::Invite {
                call: "c1".into(),
                to: "+15550100".into(),
                sdp: "v=0".into()
            })
        );
        assert_eq!(
            parse(r#"{"type":"dtmf","call":"in-3","digits":"1#"}"#),
            Ok(ClientMessage::Dtmf {
                call: "in-3".into(),
                digits: "1#".into()
            })
        );
        assert_eq!(
            parse(r#"{"type":"hangup","call":"c1"}"#),
            Ok(ClientMessage::Hangup { call: "c1".into() })
        );
        for (bad, says) in [
            ("", "not JSON"),
            ("[1]", "\"type\""),
            (r#"{"type":7}"#, "\"type\""),
            (r#"{"type":"register"}"#, "token"),
            (r#"{"type":"register","token":"t","x":1}"#, "unknown field"),
            (
                r#"{"type":"presence","status":"sleepy"}"#,
                "unknown variant",
            ),
            (r#"{"type":"dance"}"#, "unknown message type"),
            (
                r#"{"type":"invite","call":"c1","sdp":"v=0"}"#,
                "missing field `to`",
            ),
            (
                r#"{"type":"invite","call":"c 1","to":"1","sdp":""}"#,
                "call id",
            ),
            (
                r#"{"type":"invite","call":"c1","to":"1\r\nX: y","sdp":""}"#,
                "control",
            ),
            (r#"{"type":"answer","call":"c1"}"#, "missing field `sdp`"),
            (
                r#"{"type":"dtmf","call":"c1","digits":"12x"}"#,
                "0-9 * # A-D",
            ),
            (r#"{"type":"hangup"}"#, "missing field `call`"),
            (r#"{"type":"hangup","call":"c1","x":1}"#, "unknown field"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn server_messages_are_tagged() {
        let m = ServerMessage::error("unauthorized", "expired");
        assert_eq!(
            m.to_json(),
            r#"{"type":"error","code":"unauthorized","message":"expired"}"#
        );
        assert_eq!(
            ServerMessage::Heartbeat.to_json(),
            r#"{"type":"heartbeat"}"#
        );
    }
}
