//! The check every test that needs an outside tool makes. Included by
//! `common/sip.rs` and by the Chromium launcher of the WebRTC tests
//! (`runtime/webrtc/tests/common/chromium.rs`).

use std::process::{Command, Stdio};

/// Fails the test, naming the Debian package, unless `program arg` runs.
///
/// The rule is the same everywhere, CI or not: a test that needs a tool
/// never passes without running. A missing tool is a failure that says
/// what to install (`.ci/run` installs them all), not a quiet early return
/// that would count as passed.
pub fn require_tool(program: &str, arg: &str, package: &str) {
    let found = Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "{program} is not installed and this test needs it: apt-get install {package}"
    );
}
