//! Headless Chromium (Debian `chromium`) with the flags this machine needs:
//! no sandbox (root), fake media devices, no background network, loopback
//! WebRTC. Shared by the spikes here and `runtime/tests/browser.rs`.

use std::process::{Command, Stdio};

// `tool` (runtime/tests/common/tool.rs) comes from the includer: spike.rs
// here, common/sip.rs in runtime/tests/browser.rs. Including it here too
// would load it twice there.
use super::tool;

/// Chromium on `url` with a fresh profile in `profile`. A missing browser
/// is a failure that says what to install, never a quiet pass.
pub fn chromium(url: &str, profile: &std::path::Path) -> std::process::Child {
    tool::require_tool("chromium", "--version", "chromium");
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--disable-background-networking",
            "--disable-gpu",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            // The peer's candidate is 127.0.0.1: without this Chromium
            // does not pair loopback candidates, and tests stay on it.
            "--allow-loopback-in-peer-connection",
            // The peer's audio plays without a click.
            "--autoplay-policy=no-user-gesture-required",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts")
}
