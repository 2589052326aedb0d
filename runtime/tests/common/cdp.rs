//! Just enough of the Chrome DevTools Protocol to drive a page from a
//! test: find the page Chromium opened (its `--remote-debugging-port=0`
//! writes the port to `DevToolsActivePort` in the profile), then evaluate
//! JavaScript in it (`Runtime.evaluate`, promises awaited, values
//! returned as JSON). Every wait is bounded.
//!
//! Include with `#[path = "common/cdp.rs"] mod cdp;`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub struct Page {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl Page {
    /// The first page of the Chromium whose profile is `profile`.
    pub fn attach(profile: &Path, timeout: Duration) -> Page {
        let deadline = Instant::now() + timeout;
        let port = loop {
            let file = std::fs::read_to_string(profile.join("DevToolsActivePort"));
            if let Some(port) = file
                .ok()
                .and_then(|f| f.lines().next()?.parse::<u16>().ok())
            {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "Chromium wrote no DevToolsActivePort"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let url = loop {
            let targets = http_get(port, "/json/list").unwrap_or(Value::Null);
            let page = (targets.as_array().into_iter().flatten())
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned));
            if let Some(url) = page {
                break url;
            }
            assert!(
                Instant::now() < deadline,
                "Chromium shows no page: {targets}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let (socket, _) = tungstenite::connect(url.as_str()).expect("DevTools WebSocket");
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
        }
        Page { socket, next: 0 }
    }

    /// The value of `expression` (a promise is awaited); a thrown error
    /// fails the test with its text.
    pub fn eval(&mut self, expression: &str) -> Value {
        self.next += 1;
        let id = self.next;
        let command = json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": {"expression": expression, "awaitPromise": true, "returnByValue": true},
        });
        self.socket
            .send(Message::text(command.to_string()))
            .expect("DevTools command");
        loop {
            let frame = self.socket.read().expect("DevTools answer");
            let Message::Text(text) = frame else { continue };
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if answer["id"] != id {
                continue; // an event
            }
            if let Some(thrown) = answer["result"].get("exceptionDetails") {
                panic!("{expression}: {thrown}");
            }
            return answer["result"]["result"]["value"].clone();
        }
    }

    /// Polls `expression` until it is true (or the time is up).
    pub fn wait(&mut self, expression: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.eval(expression) == Value::Bool(true) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

/// GET `path` of the DevTools HTTP endpoint on 127.0.0.1:`port`, as JSON.
fn http_get(port: u16, path: &str) -> Option<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    // Chromium keeps the connection open: read up to Content-Length.
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        response.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&response);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length = (head.lines())
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(usize::MAX);
        if body.len() >= length {
            return serde_json::from_str(body).ok();
        }
    }
}
