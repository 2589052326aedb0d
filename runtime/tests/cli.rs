//! The `switchyard` binary as guest authors run it: `check` and `simulate`
//! on the example guests (built by `scripts/build-guests`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn guest(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/release")
        .join(format!("guest_{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/build-guests` first",
        path.display()
    );
    path
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn switchyard(args: &[&str], cache: &tempfile::TempDir) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("switchyard runs");
    Run {
        code: status.code().expect("exited"),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

/// Writes `script` to a file and simulates it against guest `name`.
fn simulate(name: &str, script: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let script_path = dir.path().join("call.script");
    std::fs::write(&script_path, script).unwrap();
    let component = guest(name);
    let mut args = vec![
        "simulate",
        component.to_str().unwrap(),
        script_path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    switchyard(&args, &dir)
}

/// The event and plan lines of a human-readable simulation, without times.
fn steps(run: &Run) -> Vec<String> {
    run.stdout
        .lines()
        .filter_map(|l| l.split_once("]  ").map(|(_, rest)| rest.trim().to_string()))
        .filter(|l| {
            l.starts_with('→') || l.starts_with('←') || l.starts_with('✗') || l.starts_with('!')
        })
        .map(|l| l.split("   (").next().unwrap().to_string())
        .collect()
}

#[test]
fn check_names_the_world_of_each_example_guest() {
    let cache = tempfile::tempdir().unwrap();
    for name in ["ivr", "forwarder", "trap", "spin", "hog"] {
        let run = switchyard(&["check", guest(name).to_str().unwrap()], &cache);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        assert!(
            run.stdout.contains("call-handler component"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("voice:runtime/handler@0.2.1"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("notices  on"), "{}", run.stdout);
        assert!(!run.stdout.contains("contract"), "{}", run.stdout);
    }
    // 0.2.0 is the same series: a guest built against it is current.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wit-0.2.0");
    let run = switchyard(
        &["check", fixtures.join("guest_ivr.wasm").to_str().unwrap()],
        &cache,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("voice:runtime/handler@0.2.0"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("contract"), "{}", run.stdout);
    // Verification policies: 0.2.1's `screen`, and 0.2.0's `verify`.
    let policies = [
        (guest("screen"), "voice:runtime/screen@0.2.1"),
        (
            fixtures.join("guest_verify.wasm"),
            "voice:runtime/verify@0.2.0",
        ),
    ];
    for (path, export) in policies {
        let run = switchyard(&["check", path.to_str().unwrap()], &cache);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stdout.contains("verification-policy component"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains(export), "{}", run.stdout);
    }
    // A guest built against 0.1.0 is checked as such, and passes.
    let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wit-0.1.0/guest_ivr.wasm");
    let run = switchyard(&["check", old.to_str().unwrap()], &cache);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("voice:runtime/handler@0.1.0"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("contract voice:runtime@0.1.x (an earlier version: it runs unchanged"),
        "{}",
        run.stdout
    );
    // guest_busy is built with #[call_handler(notices = false)].
    let run = switchyard(&["check", guest("busy").to_str().unwrap()], &cache);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("notices  off"), "{}", run.stdout);
}

#[test]
fn check_refuses_what_is_not_a_switchyard_component_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 3] = [
        (
            "random.wasm",
            b"definitely not wasm, just bytes",
            "not a WebAssembly binary",
        ),
        (
            "core.wasm",
            b"\0asm\x01\0\0\0",
            "core Wasm module, not a component",
        ),
        (
            "empty.wasm",
            b"\0asm\x0d\0\x01\0",
            "none is a Switchyard world",
        ),
    ];
    for (file, bytes, expected) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, bytes).unwrap();
        let run = switchyard(&["check", path.to_str().unwrap()], &dir);
        assert_eq!(run.code, 1, "{file}: {}", run.stdout);
        assert!(run.stderr.contains(expected), "{file}: {}", run.stderr);
    }
    let run = switchyard(&["check", "/nonexistent.wasm"], &dir);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot read /nonexistent.wasm"),
        "{}",
        run.stderr
    );
}

#[test]
fn ivr_sends_a_caller_who_presses_1_to_sales() {
    let run = simulate("ivr", "press 1\nanswer talk 45\n", &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        steps(&run),
        [
            "→ event   #0 incoming from +14155550100 to +14155550199 (inbound)",
            "← plan    say \"Welcome to Switchyard\" · gather (dtmf, 1 digit, finish #, timeout 5 s, prompts [say \"Press 1 for sales, 2 for support, 3 to leave a message\"])",
            "→ event   #1 gather-complete digits=\"1\" (num-digits)",
            "← plan    set dept=\"sales\" · say \"Connecting you to sales\" · dial client:sales (sequential, 20 s)",
            "→ event   #2 dial-complete completed by client:sales, 45 s",
            "← plan    hangup",
            "→ event   #3 hangup (handler)",
            "← plan    empty plan",
        ]
    );
}

#[test]
fn simulate_skips_the_hangup_notice_of_a_handler_that_takes_none_as_a_real_call_does() {
    let run = simulate("busy", "", &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        steps(&run),
        [
            "→ event   #0 incoming from +14155550100 to +14155550199 (inbound)",
            "← plan    reject busy",
        ]
    );
}

#[test]
fn ivr_repeats_the_menu_then_lets_a_silent_caller_go() {
    let run = simulate("ivr", "silence\npress 7\nsilence\n", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let plans: Vec<_> = steps(&run)
        .into_iter()
        .filter(|s| s.starts_with('←'))
        .collect();
    assert!(
        plans[1].starts_with("← plan    set attempts=\"1\" · gather"),
        "{plans:?}"
    );
    assert!(
        plans[2].starts_with(
            "← plan    say \"Sorry, that is not a valid choice\" · set attempts=\"2\""
        ),
        "{plans:?}"
    );
    assert_eq!(plans[3], "← plan    say \"Goodbye\" · hangup");
    assert!(
        run.stdout
            .contains("guest warn: no valid choice after 3 attempts"),
        "{}",
        run.stdout
    );
}

#[test]
fn ivr_takes_a_voicemail() {
    let run = simulate("ivr", "press 3\nspeak 12 press #\n", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let steps = steps(&run);
    assert!(
        steps
            .contains(&"→ event   #2 record-complete sim-rec-1 (12000 ms, finish-key)".to_string()),
        "{steps:?}"
    );
    assert!(
        steps.contains(&"← plan    say \"Thank you, goodbye\" · hangup".to_string()),
        "{steps:?}"
    );
}

/// The IVR's queue option runs in the simulator as on a real call: the
/// script says how the wait ends. `pay` is still not built: `check`
/// lists it with the message a plan using it gets.
#[test]
fn the_ivrs_queue_option_runs_in_simulate_and_check_lists_what_does_not() {
    let cache = tempfile::tempdir().unwrap();
    let check = switchyard(&["check", guest("ivr").to_str().unwrap()], &cache);
    assert_eq!(check.code, 0, "{}", check.stderr);
    let missing: Vec<&str> = (check.stdout.lines())
        .map(str::trim)
        .filter(|l| l.contains("cannot run on this runtime yet"))
        .collect();
    assert!(
        missing.len() == 1 && missing[0].contains("`pay`"),
        "only pay is not built: {}",
        check.stdout
    );

    let run = simulate("ivr", "press 2\nqueue bridged after 30 talk 60\n", &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let steps = steps(&run);
    assert!(
        steps.contains(&"← plan    set dept=\"support\" · enqueue support".to_string()),
        "{steps:?}"
    );
    assert!(
        steps.contains(&"→ event   #2 queue-complete support bridged after 30 s".to_string()),
        "{steps:?}"
    );

    let run = simulate("ivr", "press 2\nanswer\n", &[]);
    assert_eq!(
        run.code, 1,
        "a dial outcome does not end a wait: {}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("the call is waiting for a queue outcome"),
        "{}",
        run.stderr
    );
}

#[test]
fn forwarder_records_voicemail_when_alice_does_not_answer() {
    let run = simulate("forwarder", "no-answer\nspeak 20\n", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let steps = steps(&run);
    assert_eq!(
        steps[1],
        "← plan    dial client:alice (sequential, 15 s, answer-on-bridge)"
    );
    assert_eq!(steps[2], "→ event   #1 dial-complete no-answer, 0 s");
    assert!(
        steps[3].contains(
            "say \"Alice is not available. Leave a message after the beep.\" · record (max 120 s"
        ),
        "{steps:?}"
    );
    assert_eq!(
        steps[4],
        "→ event   #2 record-complete sim-rec-1 (20000 ms, silence)"
    );
    assert_eq!(steps[5], "← plan    say \"Thanks\" · hangup");

    let run = simulate("forwarder", "answer\n", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(self::steps(&run)[3], "← plan    hangup");
}

#[test]
fn hostile_guests_get_the_fallback_and_the_command_says_so() {
    let cases = [
        ("trap", "guest trapped: wasm trap"),
        ("spin", "exceeded its 20 ms deadline"),
        ("hog", "exceeded its 33554432-byte memory cap"),
    ];
    for (name, failure) in cases {
        let run = simulate(name, "", &[]);
        assert_eq!(run.code, 3, "{name}: {}{}", run.stdout, run.stderr);
        let steps = steps(&run);
        assert!(
            steps[1].starts_with("✗ failed") && steps[1].contains(failure),
            "{name}: {steps:?}"
        );
        assert!(
            steps[2].starts_with("! fallback say \"We are sorry"),
            "{name}: {steps:?}"
        );
        assert!(
            run.stdout.contains("fallback ran 1 time(s)"),
            "{name}: {}",
            run.stdout
        );
    }
}

#[test]
fn json_output_is_one_object_per_line_with_events_plans_and_caller_actions() {
    let run = simulate("ivr", "press 1\nbusy\nhang up\n", &["--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(&kinds[..5], ["event", "decision", "verb", "verb", "caller"]);
    assert_eq!(lines[4]["action"], "press 1");
    // Generated types serialise with their Rust names.
    assert_eq!(lines[0]["event"]["Incoming"]["to"], "+14155550199");
    assert!(kinds.contains(&"ended"));
}

#[test]
fn a_script_that_does_not_fit_the_call_names_its_line() {
    let run = simulate("ivr", "answer\n", &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("script line 1: `answer` does not fit: the call is waiting for a gather"),
        "{}",
        run.stderr
    );
    let run = simulate("ivr", "press 1\nwhistle\n", &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("script line 2: unknown action `whistle`"),
        "{}",
        run.stderr
    );
}

#[test]
fn redirect_targets_are_named_on_the_command_line() {
    // The trap guest stands in for a handler that exists but fails; an
    // unknown name must be refused before the call starts.
    let run = simulate("ivr", "", &["--handler", "broken"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("expected NAME=COMPONENT"),
        "{}",
        run.stderr
    );
}

#[test]
fn simulate_help_lists_every_line_a_script_may_hold() {
    let cache = tempfile::tempdir().unwrap();
    let run = switchyard(&["simulate", "--help"], &cache);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for (_, form, meaning) in switchyard::simulate::LINES {
        assert!(
            run.stdout.contains(&format!("{form}  ")) && run.stdout.contains(meaning),
            "`{form}` is missing from:\n{}",
            run.stdout
        );
    }
    assert!(run.stdout.contains("--at <TIME>"), "{}", run.stdout);
}

/// The `guest info:` lines of a run: what the hours guest says the time is.
fn times_seen(run: &Run) -> Vec<String> {
    run.stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("guest info: "))
        .map(str::to_string)
        .collect()
}

/// The virtual second (from the start of the call) of the first line holding `text`.
fn second_of(run: &Run, text: &str) -> u64 {
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no `{text}` in:\n{}", run.stdout));
    let stamp = line.split_once('[').unwrap().1.split_once('.').unwrap().0;
    stamp.trim().parse().unwrap()
}

#[test]
fn at_starts_the_guests_clock_and_the_clock_moves_with_the_call() {
    let run = simulate("hours", "silence\n", &["--at", "2026-01-05T09:00:00Z"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let later = second_of(&run, "gather-complete");
    assert!(later > 0, "{}", run.stdout);
    assert_eq!(
        times_seen(&run),
        [
            "Monday 09:00:00 UTC".to_string(),
            format!("Monday 09:00:{later:02} UTC")
        ],
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("say \"Thank you\""), "{}", run.stdout);

    // Two seconds before five, the office closes while the menu plays.
    let run = simulate("hours", "silence\n", &["--at", "2026-01-05T16:59:58Z"]);
    assert_eq!(times_seen(&run)[0], "Monday 16:59:58 UTC");
    assert!(
        run.stdout.contains("say \"Sorry, we have just closed\""),
        "{}",
        run.stdout
    );
}

#[test]
fn an_at_line_in_the_script_sets_the_clock_and_at_on_the_command_line_wins() {
    let script = "at 2026-01-03T10:00:00+00:00\n";
    let run = simulate("hours", script, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(times_seen(&run), ["Saturday 10:00:00 UTC"]);
    assert!(run.stdout.contains("We are closed"), "{}", run.stdout);

    let run = simulate("hours", script, &["--at", "2026-01-05T10:00:00Z"]);
    assert_eq!(times_seen(&run)[0], "Monday 10:00:00 UTC");

    let run = simulate("hours", "", &["--at", "Monday 9am"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("not an RFC 3339 time"),
        "{}",
        run.stderr
    );
}

/// `switchyard screen`: a policy tried on a hand-written case and on a
/// recorded call's decision log, through the same ruling and fallback as
/// a real call.
#[test]
fn screen_tries_a_policy_on_recorded_findings() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let denied = dir.path().join("denied.json");
    std::fs::write(
        &denied,
        r#"{"from": "+15550100", "to": "100",
            "findings": {"provider": {"answer": "Denied", "provider": "a.example", "reason": "a.example placed no such call"},
                         "passport": {"status": "Absent", "attestation": null, "reason": "no Identity header"}}}"#,
    )
    .unwrap();
    let case = denied.to_str().unwrap();
    let policy = guest("screen");
    let run = switchyard(
        &["screen", "--policy", policy.to_str().unwrap(), case],
        &cache,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(
            "rejected 608 (caller id not placed by its provider), by the account's policy"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("provider denied: a.example placed no such call"),
        "{}",
        run.stdout
    );
    // Without a policy: the default, which never rejects.
    let run = switchyard(&["screen", case], &cache);
    assert!(
        run.stdout
            .contains("admitted, labelled likely-spoofed, by the default policy"),
        "{}",
        run.stdout
    );
    // A policy that traps falls back to the default, as on a real call.
    let trap = dir.path().join("trap.json");
    std::fs::write(
        &trap,
        std::fs::read_to_string(&denied)
            .unwrap()
            .replace("+15550100", "+19990100"),
    )
    .unwrap();
    let fault = guest("screen_fault");
    let run = switchyard(
        &[
            "screen",
            "--policy",
            fault.to_str().unwrap(),
            trap.to_str().unwrap(),
        ],
        &cache,
    );
    assert!(
        run.stdout.contains("labelled likely-spoofed, by the default policy (the account's policy failed: guest trapped"),
        "{}",
        run.stdout
    );
    // A decision log's `verified` entry is a case too.
    let log = dir.path().join("log.json");
    let entry = serde_json::json!([{"at_ms": 0, "kind": "verified", "status": "failed", "reason": "x",
        "screening": {"call": {"from": "+15550100", "to": "100", "headers": []},
                      "findings": {"provider": {"answer": "Denied", "provider": null, "reason": "r"},
                                   "passport": {"status": "NotChecked", "attestation": null, "reason": "r"}},
                      "ruling": {"Label": "LikelySpoofed"}, "by": "the default policy"}}]);
    std::fs::write(&log, entry.to_string()).unwrap();
    let run = switchyard(
        &[
            "screen",
            "--policy",
            policy.to_str().unwrap(),
            log.to_str().unwrap(),
        ],
        &cache,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("rejected 608"), "{}", run.stdout);
    // Junk is refused, saying what a case is.
    std::fs::write(&log, "{}").unwrap();
    let run = switchyard(&["screen", log.to_str().unwrap()], &cache);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stderr.contains("neither a case"), "{}", run.stderr);
}
