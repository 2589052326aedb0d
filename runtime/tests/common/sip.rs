//! Shared helpers for the SIP tests (`sip_sipp.rs`, `sip_torture.rs`,
//! `sip_serve.rs`): a `switchyard serve` process on 127.0.0.1 and SIPp runs
//! against it.
//!
//! Include with `#[path = "common/sip.rs"] mod sip_common;`.
//!
//! * `Config` builds the TOML config of a test server: SIP over UDP and TCP
//!   and HTTP on 127.0.0.1, more `[sip]` lines, tenants with their users,
//!   numbers (bound to example guests) and trunks.
//! * `Server::start(config)` writes the TOML config into a temp dir (the
//!   text `{dir}` in it is replaced by that dir; a `[storage]` section is
//!   added when missing), spawns `switchyard serve --config FILE`, and reads
//!   its stdout until `switchyard: ready` (at most 20 s). The listening lines
//!   give the real UDP, TCP and HTTP addresses. On drop the server gets
//!   SIGTERM (SIGKILL after 5 s); a server that died early, panicked (a
//!   `panicked at` line on stderr, which also catches panics inside tokio
//!   tasks) or died of a signal fails the test, with its stderr.
//! * `require_sipp()` / `require_tool()`: a test that needs a tool fails,
//!   naming the package to install, when it is missing (CI or not); no test
//!   returns early as passed.
//! * Servers speak with the `tone` synthesizer unless the config names
//!   one (`[media] synthesizer`), so calls with prompts need no espeak-ng.
//! * `Sipp` runs one SIPp instance in its own temp dir with `-trace_err` and
//!   `-trace_stat`, bounded by `-timeout`; `SippRun` reads the counters
//!   from the stat file and prints SIPp's error log when an assertion fails.
//!
//! `SWITCHYARD_TEST_BIN` overrides the binary (to run these tests against a
//! stand-in that prints the same lines).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Sends `server` a bare INVITE (no SDP) for `number` from alice on a
/// fresh UDP socket (branch `z9hG4bK-{call_id}`, From tag `a1`); returns
/// the socket and the first final response.
pub fn invite_without_sdp(server: &Server, number: &str, call_id: &str) -> (UdpSocket, String) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let me = socket.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:{number}@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\n\
         To: <sip:{number}@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{me}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    socket.send_to(invite.as_bytes(), server.udp).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = socket.recv_from(&mut buf).expect("a final response");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            return (socket, text);
        }
    }
}

/// Absolute path of an example guest component, built by `scripts/build-guests`.
pub fn guest(name: &str) -> String {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/wasm32-wasip2/release"
    ))
    .join(format!("guest_{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-guests",
        path.display()
    );
    path.canonicalize().unwrap().display().to_string()
}

/// A port on 127.0.0.1 free for TCP and UDP a moment ago, for a server
/// whose address must go into a config before it starts (a SIPp far end,
/// the peers of a region set). Taken from 12000-19999, below the OS's
/// ephemeral ports and the media blocks of `media_ports`: a port the OS
/// picked for `:0` could be handed to another socket (any outgoing TCP
/// connection) between this check and the server's bind, and once was, in
/// CI. Unique within this test process.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    for _ in 0..8_000 {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (12_000 + (std::process::id() % 80 * 100 + n) % 8_000) as u16;
        let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:12000-19999")
}

/// Whether something is bound to UDP `port` on 127.0.0.1 (from
/// /proc/net/udp), to know a SIPp far end is listening before the server
/// may call it; waits at most `timeout`.
pub fn wait_udp_bound(port: u16, timeout: Duration) -> bool {
    let needle = format!("0100007F:{port:04X}");
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
        if table
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(needle.as_str()))
        {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Lines of a child's stdout, read on a thread: each goes to the channel
/// (for waiting on a signal line) and into `seen` (for failure messages).
struct Lines {
    rx: Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Lines {
    fn read(stream: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                keep.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Lines { rx, seen }
    }

    /// Waits for a line containing `needle`; `Err` with the reason (the
    /// stream ended or the time ran out).
    fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no line with {needle:?} within {timeout:?}"));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("output ended before a line with {needle:?}"));
                }
            }
        }
    }

    fn text(&self) -> String {
        self.seen.lock().unwrap().join("\n")
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The value of an `Authorization` header: HTTP Basic `user:password`.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The TOML config of a test server: 2 workers, SIP over UDP and TCP and
/// HTTP on 127.0.0.1 (ports of the system's choosing). `[storage]` is left
/// to `Server::start` unless `storage` names a path; `api` adds `[api]` lines. `tenant` opens a
/// tenant; `user`, `number` and `trunk` add to the last one opened.
pub struct Config {
    /// Top-level keys (before any table), e.g. `region = "eu"`.
    top: Vec<String>,
    sip: Vec<String>,
    http: String,
    storage: Option<String>,
    media: Vec<String>,
    api: Vec<String>,
    /// Raw TOML tables placed before the tenants (`[conference]`).
    tables: String,
    tenants: String,
}

/// A block of 400 RTP ports (200 calls) no other server of this test
/// process uses, so tests running side by side never compete for a port.
/// Other processes may (the blocks overlap the OS's ephemeral ports): the
/// runtime skips a pair it cannot bind before promising it in SDP.
pub fn media_ports() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let block = (std::process::id() % 97 + n) % 100;
    let first = 20_000 + block * 400;
    format!("ports = \"{first}-{}\"", first + 399)
}

/// Waits until `check` holds, polling; false after `timeout`.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if check() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    check()
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}

impl Config {
    pub fn new() -> Config {
        Config {
            top: Vec::new(),
            http: "127.0.0.1:0".into(),
            tables: String::new(),
            sip: vec![
                r#"udp = ["127.0.0.1:0"]"#.into(),
                r#"tcp = ["127.0.0.1:0"]"#.into(),
            ],
            storage: None,
            media: Vec::new(),
            api: Vec::new(),
            tenants: String::new(),
        }
    }

    /// Accounts `acme` (number 600) and `globex` (700), both answered by
    /// the `player` guest, on three media workers (so calls that meet in
    /// a conference or a bridge start on different ones).
    pub fn players() -> Config {
        Config::new()
            .media("workers = 3")
            .tenant("acme", &[])
            .number("600", "player")
            .tenant("globex", &[])
            .number("700", "player")
    }

    /// One more top-level key, e.g. `region = "eu"`.
    pub fn top(mut self, line: &str) -> Config {
        self.top.push(line.to_string());
        self
    }

    /// Where the HTTP listener binds (default 127.0.0.1:0).
    pub fn http(mut self, addr: &str) -> Config {
        self.http = addr.to_string();
        self
    }

    /// A raw TOML table (or several), e.g. `[conference]` and its peers.
    pub fn table(mut self, toml: &str) -> Config {
        self.tables.push('\n');
        self.tables.push_str(toml);
        self.tables.push('\n');
        self
    }

    /// One more line of `[media]`, e.g. `timeout_secs = 2`.
    pub fn media(mut self, line: &str) -> Config {
        self.media.push(line.to_string());
        self
    }

    /// One more line of `[api]`, e.g. `admin_key = "..."`.
    pub fn api(mut self, line: &str) -> Config {
        self.api.push(line.to_string());
        self
    }

    /// One more line of `[sip]`, e.g. `max_connections = 2`.
    pub fn sip(mut self, line: &str) -> Config {
        self.sip.push(line.to_string());
        self
    }

    pub fn storage(mut self, path: &Path) -> Config {
        self.storage = Some(path.display().to_string());
        self
    }

    /// A tenant; without domains it gets no `domains` key.
    pub fn tenant(mut self, id: &str, domains: &[&str]) -> Config {
        self.tenants
            .push_str(&format!("\n[[tenant]]\nid = \"{id}\"\n"));
        if !domains.is_empty() {
            let quoted: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
            self.tenants
                .push_str(&format!("domains = [{}]\n", quoted.join(", ")));
        }
        self
    }

    /// One more key of the last tenant, e.g. `max_calls = 5` (before its
    /// users, numbers and trunks).
    pub fn tenant_key(mut self, line: &str) -> Config {
        self.tenants.push_str(line);
        self.tenants.push('\n');
        self
    }

    pub fn user(mut self, username: &str, password: &str) -> Config {
        self.tenants.push_str(&format!(
            "\n[[tenant.user]]\nusername = \"{username}\"\npassword = \"{password}\"\n"
        ));
        self
    }

    /// `number` answered by the example guest `guest_{name}.wasm`.
    pub fn number(self, number: &str, name: &str) -> Config {
        self.number_component(number, &guest(name))
    }

    /// `number` answered by the component at `path`.
    pub fn number_component(mut self, number: &str, path: &str) -> Config {
        self.tenants.push_str(&format!(
            "\n[[tenant.number]]\nnumber = \"{number}\"\ncomponent = \"{path}\"\n"
        ));
        self
    }

    /// An outbound trunk to 127.0.0.1:`port`.
    pub fn trunk(mut self, name: &str, port: u16) -> Config {
        self.tenants.push_str(&format!(
            "\n[[tenant.trunk]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\n"
        ));
        self
    }

    /// Digest credentials of the last trunk.
    pub fn trunk_credentials(mut self, username: &str, password: &str) -> Config {
        self.tenants.push_str(&format!(
            "username = \"{username}\"\npassword = \"{password}\"\n"
        ));
        self
    }

    pub fn toml(&self) -> String {
        let mut toml = format!(
            "workers = 2\n{}\n\n[sip]\n{}\n\n[http]\nlisten = \"{}\"\n",
            self.top.join("\n"),
            self.sip.join("\n"),
            self.http
        );
        if let Some(path) = &self.storage {
            toml.push_str(&format!("\n[storage]\npath = \"{path}\"\n"));
        }
        if !self.media.is_empty() {
            toml.push_str(&format!("\n[media]\n{}\n", self.media.join("\n")));
        }
        if !self.api.is_empty() {
            toml.push_str(&format!("\n[api]\n{}\n", self.api.join("\n")));
        }
        toml.push_str(&self.tables);
        toml.push_str(&self.tenants);
        toml
    }
}

/// The transport a test talks to the server over.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Transport {
    Udp,
    Tcp,
}

pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    stderr_path: PathBuf,
    stdout: Lines,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
}

impl Server {
    /// A server on `config` (see `Config`).
    pub fn serve(config: &Config) -> Server {
        Server::start(&config.toml())
    }

    pub fn start(config: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config.replace("{dir}", &dir.path().display().to_string());
        if !config.contains("[storage]") {
            // Top-level keys must precede the first table: append the table.
            config.push_str(&format!(
                "\n[storage]\npath = \"{}\"\n",
                dir.path().join("data").display()
            ));
        }
        // Every server gets its own RTP ports, and speech without espeak-ng
        // unless the test asks for a synthesizer.
        let mut media = Vec::new();
        if !config.contains("ports =") {
            media.push(media_ports());
        }
        if !config.contains("synthesizer =") {
            media.push("synthesizer = \"tone\"".to_string());
        }
        let media = media.join("\n");
        if !config.contains("[media]") {
            config.push_str(&format!("\n[media]\n{media}\n"));
        } else if !media.is_empty() {
            config = config.replacen("[media]\n", &format!("[media]\n{media}\n"), 1);
        }
        let config_path = dir.path().join("switchyard.toml");
        std::fs::write(&config_path, &config).unwrap();
        let stderr_path = dir.path().join("stderr.log");
        let bin = std::env::var("SWITCHYARD_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchyard").to_string());
        let mut child = Command::new(&bin)
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
        let stdout = Lines::read(child.stdout.take().unwrap());

        let waited = stdout.wait_for("switchyard: ready", READY_TIMEOUT);
        let mut addrs: HashMap<String, SocketAddr> = HashMap::new();
        for line in stdout.seen.lock().unwrap().iter() {
            // switchyard: listening sip udp 127.0.0.1:PORT / http 127.0.0.1:PORT
            if let Some(rest) = line.strip_prefix("switchyard: listening ") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let (kind, addr) = match words.as_slice() {
                    ["sip", proto, addr] => (proto.to_string(), *addr),
                    ["http", addr] => ("http".to_string(), *addr),
                    _ => continue,
                };
                if let Ok(addr) = addr.parse() {
                    addrs.entry(kind).or_insert(addr);
                }
            }
        }
        let mut server = Server {
            child,
            stderr_path,
            stdout,
            udp: "0.0.0.0:0".parse().unwrap(),
            tcp: "0.0.0.0:0".parse().unwrap(),
            http: "0.0.0.0:0".parse().unwrap(),
            dir,
        };
        if let Err(why) = waited {
            let _ = server.child.kill();
            let status = server.child.wait().ok();
            panic!(
                "switchyard serve did not get ready: {why} (exit: {status:?})\n\
                 --- config ---\n{config}\n{}",
                server.output()
            );
        }
        let get = |kind: &str| {
            *addrs.get(kind).unwrap_or_else(|| {
                panic!(
                    "no `switchyard: listening` line for {kind}\n{}",
                    server.output()
                )
            })
        };
        let (udp, tcp, http) = (get("udp"), get("tcp"), get("http"));
        server.udp = udp;
        server.tcp = tcp;
        server.http = http;
        server
    }

    /// The server's SIP address on `transport`.
    pub fn addr(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Udp => self.udp,
            Transport::Tcp => self.tcp,
        }
    }

    /// The server's stdout and the tail of its stderr, for failure messages.
    pub fn output(&self) -> String {
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        format!(
            "--- switchyard stdout ---\n{}\n--- switchyard stderr (tail) ---\n{}",
            tail(&self.stdout.text(), 40),
            tail(&stderr, 80)
        )
    }

    fn stderr_has_panic(&self) -> bool {
        std::fs::read_to_string(&self.stderr_path)
            // A host panic's line starts with `thread '...'`; a trapping
            // guest's panic message is only quoted inside a log line.
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("thread '") && l.contains("panicked at"))
            })
            .unwrap_or(false)
    }

    /// Fails the test if the process has exited or logged a panic.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "switchyard exited during the test: {status}\n{}",
                self.output()
            );
        }
        assert!(
            !self.stderr_has_panic(),
            "switchyard panicked (the process is still up)\n{}",
            self.output()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) -> (Option<ExitStatus>, bool) {
        if let Some(status) = self.child.try_wait().unwrap() {
            return (Some(status), false);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (Some(status), true);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        (None, true)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let (status, was_running) = self.stop();
        if thread::panicking() {
            return;
        }
        let crashed = match status {
            // Exited before we asked it to: whatever the code, it crashed.
            Some(s) if !was_running => Some(format!("exited on its own: {s}")),
            // Our SIGTERM: a clean exit, or killed by the TERM itself.
            Some(s) if s.code() == Some(101) => Some(format!("panicked on SIGTERM: {s}")),
            Some(s) if s.signal().is_some_and(|sig| sig != 15) => {
                Some(format!("died of a signal on SIGTERM: {s}"))
            }
            _ => None,
        };
        if let Some(why) = crashed {
            panic!("switchyard {why}\n{}", self.output());
        }
        assert!(
            !self.stderr_has_panic(),
            "switchyard panicked during the test\n{}",
            self.output()
        );
    }
}

/// For tests that need SIPp: fails the test when it is missing.
pub fn require_sipp() {
    require_tool("sipp", "-v", "sip-tester");
}

// One rule for every tool a test needs (the Chromium launcher's too).
#[path = "tool.rs"]
pub mod tool;
pub use tool::require_tool;

/// A scenario from tests/sipp/.
pub fn scenario(name: &str) -> String {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/sipp")).join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path.canonicalize().unwrap().display().to_string()
}

/// One SIPp instance. Always adds `-i 127.0.0.1 -nostdin -trace_err
/// -trace_stat -timeout S -timeout_error`; the caller gives the scenario,
/// `-m` and the target.
pub struct Sipp {
    args: Vec<String>,
    timeout: Duration,
    dir: tempfile::TempDir,
}

impl Sipp {
    /// SIPp with `args` (split on whitespace); add a scenario file with
    /// `sf`, the target with `to`.
    pub fn new(args: &str) -> Sipp {
        Sipp {
            args: args.split_whitespace().map(str::to_string).collect(),
            timeout: Duration::from_secs(60),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Sipp {
        self.args.push(arg.into());
        self
    }

    /// `-sf` with a scenario of tests/sipp/.
    pub fn sf(self, name: &str) -> Sipp {
        self.arg("-sf").arg(scenario(name))
    }

    /// `-oocsf` with a scenario of tests/sipp/.
    pub fn oocsf(self, name: &str) -> Sipp {
        self.arg("-oocsf").arg(scenario(name))
    }

    /// The remote address (the last argument).
    pub fn to(self, addr: SocketAddr) -> Sipp {
        self.arg(addr.to_string())
    }

    /// SIPp's own `-timeout` (whole run); the process gets 10 s more.
    pub fn timeout(mut self, timeout: Duration) -> Sipp {
        self.timeout = timeout;
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("sipp");
        cmd.current_dir(self.dir.path())
            .args(["-i", "127.0.0.1", "-nostdin", "-timeout_error"])
            .args(["-timeout", &self.timeout.as_secs().max(1).to_string()])
            .arg("-trace_err")
            .args(["-error_file", "errors.log"])
            .arg("-trace_stat")
            .args(["-stf", "stat.csv", "-fd", "1"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs SIPp to its end.
    pub fn run(self) -> SippRun {
        self.spawn().finish()
    }

    /// Starts SIPp in the background (a far end, a registered user).
    pub fn spawn(self) -> SippProcess {
        let mut child = self
            .command()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run sipp: {e}"));
        let stdout = Lines::read(child.stdout.take().unwrap());
        let stderr = Lines::read(child.stderr.take().unwrap());
        SippProcess {
            child,
            stdout,
            stderr,
            deadline: Instant::now() + self.timeout + Duration::from_secs(10),
            args: self.args,
            dir: self.dir,
        }
    }
}

pub struct SippProcess {
    child: Child,
    stdout: Lines,
    stderr: Lines,
    deadline: Instant,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

impl SippProcess {
    /// Waits for a line on SIPp's stdout (e.g. `sipp: registered` from an
    /// `<exec command="echo ...">`).
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) {
        if let Err(why) = self.stdout.wait_for(needle, timeout) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "sipp {}: {why}\n{}",
                self.args.join(" "),
                SippRun::collect(self, None).report()
            );
        }
    }

    /// Waits for SIPp to stop by itself (bounded by its timeout + 10 s, then
    /// killed) and collects its output.
    pub fn finish(mut self) -> SippRun {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(20));
        };
        SippRun::collect(&self, status)
    }
}

impl Drop for SippProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub struct SippRun {
    pub args: Vec<String>,
    /// None: killed after its deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub errors: String,
    /// Last row of the `-trace_stat` file, by column name.
    pub stats: HashMap<String, String>,
    pub dir: PathBuf,
}

impl SippRun {
    fn collect(p: &SippProcess, status: Option<ExitStatus>) -> SippRun {
        // The reader threads end with the process's pipes.
        thread::sleep(Duration::from_millis(50));
        let dir = p.dir.path();
        SippRun {
            args: p.args.clone(),
            status,
            stdout: p.stdout.text(),
            stderr: p.stderr.text(),
            errors: std::fs::read_to_string(dir.join("errors.log")).unwrap_or_default(),
            stats: read_stats(&dir.join("stat.csv")),
            dir: dir.to_path_buf(),
        }
    }

    pub fn count(&self, column: &str) -> u64 {
        self.stats
            .get(column)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {column} in SIPp's stat file\n{}", self.report()))
    }

    pub fn successful(&self) -> u64 {
        self.count("SuccessfulCall(C)")
    }

    pub fn failed(&self) -> u64 {
        self.count("FailedCall(C)")
    }

    pub fn retransmissions(&self) -> u64 {
        self.count("Retransmissions(C)")
    }

    /// What to print when a run fails: the command, status, SIPp's error
    /// log and the end of its screen.
    pub fn report(&self) -> String {
        format!(
            "--- sipp {} ---\nstatus: {:?}\n--- sipp error log ---\n{}\n--- sipp stderr ---\n{}\n--- sipp screen (tail) ---\n{}",
            self.args.join(" "),
            self.status,
            tail(&self.errors, 60),
            tail(&self.stderr, 20),
            tail(&self.stdout, 30)
        )
    }

    /// SIPp exited 0 with exactly `calls` successful and no failed call.
    pub fn assert_calls(&self, calls: u64, server: &Server) {
        let ok = self.status.is_some_and(|s| s.success())
            && self.stats.get("SuccessfulCall(C)").map(|s| s.trim()) == Some(&calls.to_string())
            && self.stats.get("FailedCall(C)").map(|s| s.trim()) == Some("0");
        assert!(
            ok,
            "expected {calls} successful calls and none failed, got {:?} successful, {:?} failed\n{}\n{}",
            self.stats.get("SuccessfulCall(C)"),
            self.stats.get("FailedCall(C)"),
            self.report(),
            server.output()
        );
    }
}

fn read_stats(path: &Path) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return HashMap::new();
    };
    let Some(last) = lines.next_back() else {
        return HashMap::new();
    };
    header
        .split(';')
        .map(str::to_string)
        .zip(last.split(';').map(str::to_string))
        .collect()
}

/// The local ports of the UDP sockets process `pid` has open (Linux /proc).
pub fn udp_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let (Some(local), Some(inode)) = (fields.get(1), fields.get(9)) else {
                continue;
            };
            if inodes.iter().any(|i| i == inode) {
                let port = local.rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    assert!(!ports.is_empty(), "no UDP sockets found for {pid}");
    ports
}
