//! The client signalling protocol: JSON text frames, one message each,
//! `{"type": …}`. Parsing never panics and says what was wrong.
//!
//! ```text
//!   client → runtime   register {token}        first, within the heartbeat time
//!                      heartbeat {}            at least every heartbeat_secs
//!                      presence {status, text?}
//!                      invite, answer, candidate, dtmf, hangup, reject:
//!                      refused as not built yet (WebRTC media comes next)
//!   runtime → client   registered {identity, device, heartbeat_secs, expires}
//!                      heartbeat {}            the answer to one
//!                      presence {identity, status, text, devices}
//!                      error {code, message}   unauthorized (and too_many:
//!                                              20 devices per identity) ends it
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

/// Call signalling the protocol names but the runtime does not run yet.
const CALLS: &[&str] = &["invite", "answer", "candidate", "dtmf", "hangup", "reject"];

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
    /// Call signalling, not built yet (the type).
    NotBuilt(String),
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
        call if CALLS.contains(&call) => ClientMessage::NotBuilt(kind),
        other => {
            return Err(format!(
                "unknown message type {other:?}: register, heartbeat, presence, {}",
                CALLS.join(", ")
            ));
        }
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
            parse(r#"{"type":"invite","sdp":"v=0"}"#),
            Ok(ClientMessage::NotBuilt("invite".into()))
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
