//! The media engine: the IO edge around [`Session`]s. Worker threads own
//! the sockets and sessions and pace every stream from one clock.
//!
//! ```text
//!  Engine::open ──bind RTP+RTCP──► Msg::Open ─┐
//!  Engine::command ──────────────► Msg::Cmd ──┤  worker (std thread)
//!                                             ▼
//!   every 1 ms slot k:  drain commands ─► for each stream in wheel[k % 20]:
//!       recvmmsg RTP ─► handle_rtp ─► tick ─► send_to ─► poll_received ─► bridge
//!       (every 10th tick) RTCP in ─► handle_rtcp; poll_rtcp ─► send_to
//!       poll_event ─► sink(stream, event)
//!   sleep to the next slot's absolute deadline (late: no sleep, counted)
//! ```
//!
//! A worker's timer wheel has 20 slots of 1 ms; a stream gets the emptiest
//! slot when it opens and is ticked every 20 ms in it, so the send load is
//! spread evenly over the period instead of bursting. Deadlines are
//! absolute (`origin + k ms`), so sleeping never accumulates drift; a
//! worker that falls behind runs the missed slots back to back.
//!
//! The hot path per stream and tick is one `recvmmsg` (which returns what
//! is queued, usually one packet, or `EAGAIN`: half the syscalls of
//! `recv_from` until `WouldBlock`) and one `send_to`, no allocation and no
//! lock. `sendmmsg` is not used: each stream has its own socket and sends
//! one packet per tick, so there is nothing to batch. Kernel receive
//! timestamps (`SO_TIMESTAMPNS`) give the RFC 3550 jitter estimate real
//! arrival times rather than our 20 ms polling grid.
//!
//! Streams of one `group` (a call) share a worker so they can be bridged:
//! each tick a bridged stream's received frame becomes its partner's relay
//! audio. A stream bridged to another call's stream, or joining a
//! conference room, moves to that stream's or room's worker (its old
//! worker hands the socket and session over; commands sent meanwhile wait
//! on the new worker), so mixing and relaying never take a lock. The sink is called on worker threads and must be cheap (push onto
//! a channel); it must not hold an [`Engine`] (the workers would keep their
//! own engine alive).
//!
//! The pool of workers is sized to the load: each worker adds up the time
//! from waking to sleeping again (its busy time, from clock readings the
//! tick loop takes anyway), and a supervisor thread samples every worker
//! once per [`EngineConfig::sample`] into the sans-IO [`allocator`], which
//! starts a worker when the pool runs hot and retires one when it has
//! stayed cold. New calls go to the active worker with the fewest
//! streams; calls never move, so a retiring worker gets no new calls and
//! ends once its last stream closes.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use socket2::{Domain, Protocol, Socket, Type};

use super::mixer::{Join, MixerConfig};
pub use super::session::Event;
use super::session::{Session, SessionConfig};
use super::{Clip, FRAME_MS, FRAME_SAMPLES, Out, RecordSpec, StreamId, StreamParams};
use crate::contract::RecordEnd;
use allocator::{Allocator, Decision, Load};
pub use allocator::{Policy, WorkerId};
pub use peer::PeerLeg;
use room::Room;
pub use room::{RoomCommand, RoomEvent, RoomId, RoomSink};

/// Slots in a worker's wheel: one per millisecond of the 20 ms period.
const SLOTS: usize = FRAME_MS as usize;
/// RTCP sockets are read every this many ticks (200 ms): reports come
/// every few seconds and nothing there is urgent.
const RTCP_EVERY: u64 = 10;
/// A slot that starts this late counts as a late tick.
const LATE: Duration = Duration::from_millis(1);
/// Datagrams taken per `recvmmsg`; more are read with another call.
const BATCH: usize = 8;
/// How often a worker with no stream looks at the stop flag.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// Receive buffer per datagram: anything longer is cut (and then fails to
/// parse or is dropped as oversized audio).
const MTU: usize = 2048;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where RTP/RTCP sockets bind.
    pub bind: IpAddr,
    /// How many worker threads run and when that changes
    /// ([`Policy::fixed`] for a fixed number).
    pub pool: Policy,
    /// How often the workers' load is sampled for the pool and the busy
    /// gauges ([`SAMPLE`]).
    pub sample: Duration,
    /// Media timeout of every stream; `Duration::ZERO` is off.
    pub timeout: Duration,
}

/// The default sampling interval of worker load.
pub const SAMPLE: Duration = Duration::from_secs(1);

/// What the endpoint asks of one stream.
#[derive(Debug)]
pub enum Command {
    Start(StreamParams),
    Play {
        id: u64,
        clips: Vec<Clip>,
        forever: bool,
    },
    StopPlay,
    SendDigits {
        id: u64,
        digits: String,
    },
    Record {
        id: u64,
        spec: RecordSpec,
    },
    StopRecord(RecordEnd),
    /// Relay audio both ways with `other` (moving this stream to its
    /// worker when the two are of different calls); with `record`, mix
    /// both directions into a recording reported on this stream when the
    /// bridge ends.
    Bridge {
        other: StreamId,
        record: Option<u64>,
    },
    Unbridge,
    /// Join conference room `room`, opening it with `config` if it is
    /// not open; with `record`, the room records from now on. The stream
    /// moves to the room's worker if it is on another one.
    Join {
        room: RoomId,
        config: Box<MixerConfig>,
        join: Join,
        record: bool,
    },
    /// Leave the room ([`RoomEvent::Out`] with [`Out::Left`]).
    Leave,
    /// The stream's far end is this WebRTC client from now on: its peer's
    /// socket replaces the stream's RTP socket ([`peer`]).
    Attach(Box<PeerLeg>),
    /// Gives the client back (its media is anchored elsewhere now); the
    /// stream reads its own RTP socket again.
    Detach(tokio::sync::oneshot::Sender<Box<PeerLeg>>),
    /// Stop and release the ports; recordings in progress are reported first.
    Close,
}

/// Where events go: called on worker threads, so it must be cheap.
pub type Sink = Arc<dyn Fn(StreamId, Event) + Send + Sync>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineStats {
    pub streams: usize,
    /// Streams whose far end is a WebRTC client the worker drives.
    pub clients: usize,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Sends that failed (socket buffer full, unreachable).
    pub send_errors: u64,
    /// Slots that started more than 1 ms after their deadline.
    pub late_ticks: u64,
    pub max_lateness: Duration,
    /// The running workers, by id.
    pub workers: Vec<WorkerStats>,
}

impl EngineStats {
    /// Workers taking new calls.
    pub fn active_workers(&self) -> usize {
        self.workers.iter().filter(|w| !w.retiring).count()
    }

    /// Workers that take no new calls and stop once their streams close.
    pub fn retiring_workers(&self) -> usize {
        self.workers.iter().filter(|w| w.retiring).count()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerStats {
    pub id: WorkerId,
    pub retiring: bool,
    pub streams: usize,
    /// Fraction of the last sample interval spent handling streams and
    /// commands rather than sleeping.
    pub busy: f64,
}

/// Counters a worker updates and [`Engine::stats`] reads. Kept per worker
/// id across the id's threads, so totals never go back.
#[derive(Debug, Default)]
struct Counters {
    streams: AtomicUsize,
    clients: AtomicUsize,
    sent: AtomicU64,
    received: AtomicU64,
    send_errors: AtomicU64,
    late_ticks: AtomicU64,
    max_lateness_us: AtomicU64,
    /// Time spent handling, in total.
    busy_ns: AtomicU64,
}

enum Msg {
    Open {
        stream: StreamId,
        rtp: UdpSocket,
        rtcp: UdpSocket,
    },
    Command(StreamId, Command),
    Room(RoomId, RoomCommand),
    /// `stream` is coming from another worker: hold its commands until
    /// it arrives ([`Msg::Adopt`]) or is known lost.
    Expect(StreamId),
    /// Hand `stream` over to the worker behind `to`.
    Move {
        stream: StreamId,
        to: Sender<Msg>,
    },
    Adopt(Box<Stream>),
    /// A moved stream had closed before its old worker saw the move.
    Lost(StreamId),
}

/// Which worker serves a stream, each call's worker, and the workers.
#[derive(Default)]
struct Routes {
    streams: HashMap<StreamId, (WorkerId, u64)>,
    /// Each open stream's RTP address, and the stream at each.
    addrs: HashMap<StreamId, SocketAddr>,
    locals: HashMap<SocketAddr, StreamId>,
    /// Worker and number of open streams of each group.
    groups: HashMap<u64, (WorkerId, usize)>,
    /// The worker of each conference room.
    rooms: HashMap<RoomId, WorkerId>,
    /// By worker id; `None` once a worker stopped.
    workers: Vec<Option<Slot>>,
    counters: Vec<Arc<Counters>>,
}

/// A running worker as the engine sees it.
struct Slot {
    tx: Sender<Msg>,
    /// Open streams (counted here, not by the worker, so a burst of opens
    /// spreads before any worker has seen them).
    streams: usize,
    /// Takes no new calls.
    retiring: bool,
    /// Over the last sample interval.
    busy: f64,
}

impl Routes {
    /// Where a new call goes: the active worker with the fewest streams
    /// (any worker if none is active, which the allocator repairs).
    fn least_loaded(&self) -> Option<WorkerId> {
        let running =
            || (self.workers.iter().enumerate()).filter_map(|(id, s)| Some((id, s.as_ref()?)));
        let emptiest = |retiring: bool| {
            running()
                .filter(|(_, s)| s.retiring == retiring)
                .min_by_key(|(id, s)| (s.streams, *id))
                .map(|(id, _)| id)
        };
        emptiest(false).or_else(|| emptiest(true))
    }

    fn slot(&mut self, worker: WorkerId) -> Option<&mut Slot> {
        self.workers.get_mut(worker)?.as_mut()
    }

    /// Moves `stream` from worker `from` to `to` (a room's worker), with
    /// its call's group when it is the group's only stream. The new worker
    /// holds the stream's commands until the old one hands it over, so
    /// commands sent from now on go to `to`. `false` when `to` is gone.
    fn move_stream(&mut self, stream: StreamId, from: WorkerId, to: WorkerId) -> bool {
        let Some(target) = self.slot(to).map(|s| s.tx.clone()) else {
            return false;
        };
        let Some(source) = self.slot(from).map(|s| s.tx.clone()) else {
            return false;
        };
        let _ = target.send(Msg::Expect(stream));
        let _ = source.send(Msg::Move { stream, to: target });
        if let Some(slot) = self.slot(from) {
            slot.streams = slot.streams.saturating_sub(1);
        }
        if let Some(slot) = self.slot(to) {
            slot.streams += 1;
        }
        let Some(entry) = self.streams.get_mut(&stream) else {
            return true;
        };
        entry.0 = to;
        let group = entry.1;
        if let Some(g) = self.groups.get_mut(&group)
            && *g == (from, 1)
        {
            g.0 = to;
        }
        true
    }
}

/// What the engine and its pool supervisor share.
struct Pool {
    config: EngineConfig,
    sink: Sink,
    rooms: RoomSink,
    stop: Arc<AtomicBool>,
    routes: Mutex<Routes>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Pairs bound by [`Engine::reserve`], waiting for their `open`.
    held: Mutex<HashMap<u16, (UdpSocket, UdpSocket)>>,
}

struct Inner {
    pool: Arc<Pool>,
    /// Dropped at shutdown, which wakes the supervisor.
    wake: Mutex<Option<Sender<()>>>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

/// A handle on the engine; clones share it. Workers stop when
/// [`Engine::shutdown`] is called or the last handle is dropped.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Starts `config.pool.min` worker threads, and the supervisor that
    /// samples them and resizes the pool.
    pub fn start(config: EngineConfig, sink: Sink) -> io::Result<Engine> {
        Self::start_with_rooms(config, sink, Arc::new(|_, _| {}))
    }

    /// [`start`](Self::start), with conference rooms reporting to `rooms`
    /// (on worker threads, so it must be cheap too).
    pub fn start_with_rooms(
        config: EngineConfig,
        sink: Sink,
        rooms: RoomSink,
    ) -> io::Result<Engine> {
        config
            .pool
            .check()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut allocator = Allocator::new(config.pool.clone());
        let pool = Arc::new(Pool {
            config,
            sink,
            rooms,
            stop: Arc::new(AtomicBool::new(false)),
            routes: Mutex::new(Routes::default()),
            threads: Mutex::new(Vec::new()),
            held: Mutex::default(),
        });
        // From here on, dropping `engine` stops whatever was started.
        let engine = Engine {
            inner: Arc::new(Inner {
                pool: pool.clone(),
                wake: Mutex::new(None),
                supervisor: Mutex::new(None),
            }),
        };
        {
            let mut routes = lock(&pool.routes);
            while let Some(decision) = allocator.poll_decision() {
                if let Decision::Start(id) = decision {
                    pool.spawn(&mut routes, id)?;
                }
            }
        }
        let (wake, asleep) = mpsc::channel();
        let supervisor = thread::Builder::new()
            .name("media-pool".into())
            .spawn(move || supervise(pool, allocator, asleep))?;
        *lock(&engine.inner.wake) = Some(wake);
        *lock(&engine.inner.supervisor) = Some(supervisor);
        Ok(engine)
    }

    /// Binds RTP `port` and RTCP `port + 1` now (so the caller learns at
    /// once if they are taken) and hands the stream to the worker of its
    /// `group`, or for a new group the least-loaded active worker. Port 0
    /// picks a free even/odd pair (tests). Returns the RTP address.
    pub fn open(&self, stream: StreamId, group: u64, port: u16) -> io::Result<SocketAddr> {
        let pool = &self.inner.pool;
        let held = (port != 0)
            .then(|| lock(&pool.held).remove(&port))
            .flatten();
        let (rtp, rtcp) = match held {
            Some(pair) => pair,
            None => bind_pair(pool.config.bind, port)?,
        };
        let local = rtp.local_addr()?;
        let stopped = || io::Error::other("media engine stopped");
        let mut routes = lock(&pool.routes);
        if routes.streams.contains_key(&stream) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "stream already open",
            ));
        }
        let worker = match routes.groups.get(&group) {
            Some(&(worker, _)) => worker,
            None => routes.least_loaded().ok_or_else(stopped)?,
        };
        let slot = routes.slot(worker).ok_or_else(stopped)?;
        slot.tx
            .send(Msg::Open { stream, rtp, rtcp })
            .map_err(|_| stopped())?;
        slot.streams += 1;
        routes.groups.entry(group).or_insert((worker, 0)).1 += 1;
        routes.streams.insert(stream, (worker, group));
        routes.addrs.insert(stream, local);
        routes.locals.insert(local, stream);
        Ok(local)
    }

    /// The open stream whose RTP socket is at `addr` (as offered in its
    /// SDP: an engine bound to the unspecified address matches by port).
    pub fn stream_at(&self, addr: SocketAddr) -> Option<StreamId> {
        let routes = lock(&self.inner.pool.routes);
        let bound = SocketAddr::new(self.inner.pool.config.bind, addr.port());
        let found = routes.locals.get(&addr);
        found
            .or_else(|| {
                bound
                    .ip()
                    .is_unspecified()
                    .then(|| routes.locals.get(&bound))?
            })
            .copied()
    }

    /// Binds RTP `port` and RTCP `port + 1` and holds them for the `open`
    /// that follows; `false` when another process has either. A pair
    /// already held (its `open` never came) is kept.
    pub fn reserve(&self, port: u16) -> bool {
        let pool = &self.inner.pool;
        let mut held = lock(&pool.held);
        if held.contains_key(&port) {
            return true;
        }
        match bind_pair(pool.config.bind, port) {
            Ok(pair) => {
                held.insert(port, pair);
                true
            }
            Err(error) => {
                tracing::warn!(port, %error, "RTP port pair in use outside the runtime; skipping it");
                false
            }
        }
    }

    /// Passes `command` to the stream's worker; unknown streams are ignored.
    pub fn command(&self, stream: StreamId, command: Command) {
        let mut routes = lock(&self.inner.pool.routes);
        let Some(&(mut worker, group)) = routes.streams.get(&stream) else {
            tracing::debug!(stream, ?command, "media command for an unknown stream");
            return;
        };
        // A room's streams, and two bridged streams, share a worker: the
        // stream moves to the room's or the other stream's worker.
        let home = match &command {
            Command::Join { room, .. } => Some(*routes.rooms.entry(*room).or_insert(worker)),
            Command::Bridge { other, .. } => routes.streams.get(other).map(|&(w, _)| w),
            _ => None,
        };
        if let Some(home) = home
            && home != worker
            && routes.move_stream(stream, worker, home)
        {
            worker = home;
        }
        let close = matches!(command, Command::Close);
        if let Some(slot) = routes.slot(worker) {
            let _ = slot.tx.send(Msg::Command(stream, command));
            if close {
                slot.streams = slot.streams.saturating_sub(1);
            }
        }
        if close {
            routes.streams.remove(&stream);
            if let Some(local) = routes.addrs.remove(&stream) {
                routes.locals.remove(&local);
            }
            if let Some((_, count)) = routes.groups.get_mut(&group) {
                *count -= 1;
                if *count == 0 {
                    routes.groups.remove(&group);
                }
            }
        }
    }

    /// Passes `command` to the room's worker; unknown rooms are ignored.
    pub fn room(&self, room: RoomId, command: RoomCommand) {
        let mut routes = lock(&self.inner.pool.routes);
        let Some(&worker) = routes.rooms.get(&room) else {
            tracing::debug!(room, ?command, "room command for an unknown room");
            return;
        };
        if let Some(slot) = routes.slot(worker) {
            let _ = slot.tx.send(Msg::Room(room, command));
        }
    }

    /// Forgets where a closed room ran ([`RoomEvent::Closed`]).
    pub fn forget_room(&self, room: RoomId) {
        lock(&self.inner.pool.routes).rooms.remove(&room);
    }

    pub fn stats(&self) -> EngineStats {
        let routes = lock(&self.inner.pool.routes);
        let mut s = EngineStats::default();
        for c in &routes.counters {
            s.streams += c.streams.load(Relaxed);
            s.clients += c.clients.load(Relaxed);
            s.packets_sent += c.sent.load(Relaxed);
            s.packets_received += c.received.load(Relaxed);
            s.send_errors += c.send_errors.load(Relaxed);
            s.late_ticks += c.late_ticks.load(Relaxed);
            s.max_lateness = s
                .max_lateness
                .max(Duration::from_micros(c.max_lateness_us.load(Relaxed)));
        }
        for (id, slot) in routes.workers.iter().enumerate() {
            if let Some(slot) = slot {
                s.workers.push(WorkerStats {
                    id,
                    retiring: slot.retiring,
                    streams: slot.streams,
                    busy: slot.busy,
                });
            }
        }
        s
    }

    /// Stops the workers (streams are dropped without events) and waits
    /// for them, unless called from one of them.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

impl Pool {
    /// Starts worker `id`.
    fn spawn(&self, routes: &mut Routes, id: WorkerId) -> io::Result<()> {
        if routes.counters.len() <= id {
            routes.counters.resize_with(id + 1, Default::default);
            routes.workers.resize_with(id + 1, || None);
        }
        let (tx, rx) = mpsc::channel();
        let counters = routes.counters[id].clone();
        let worker = Worker::new(
            rx,
            counters,
            (self.sink.clone(), self.rooms.clone()),
            self.stop.clone(),
            self.config.timeout,
        );
        let thread = thread::Builder::new()
            .name(format!("media-{id}"))
            .spawn(move || worker.run())?;
        lock(&self.threads).push(thread);
        routes.workers[id] = Some(Slot {
            tx,
            streams: 0,
            retiring: false,
            busy: 0.0,
        });
        Ok(())
    }

    fn apply(&self, routes: &mut Routes, decision: Decision) {
        match decision {
            Decision::Start(id) => match self.spawn(routes, id) {
                Ok(()) => tracing::info!(worker = id, "media worker started"),
                Err(e) => tracing::warn!(worker = id, "starting a media worker: {e}"),
            },
            Decision::Retire(id) | Decision::Reinstate(id) => {
                let retiring = matches!(decision, Decision::Retire(_));
                if let Some(slot) = routes.slot(id) {
                    slot.retiring = retiring;
                    tracing::info!(worker = id, retiring, "media worker");
                }
            }
            Decision::Stop(id) => {
                // Its Sender dropped, the worker sees the channel closed
                // and ends. Only ever empty: a retiring worker with no
                // streams has no call left that could add one.
                let Some(slot) = routes.workers.get_mut(id) else {
                    return;
                };
                if slot.as_ref().is_some_and(|s| s.streams > 0) {
                    tracing::warn!(worker = id, "not stopping a media worker with streams");
                    return;
                }
                *slot = None;
                tracing::info!(worker = id, "media worker stopped");
            }
        }
    }

    /// Joins the threads of stopped workers.
    fn reap(&self) {
        let mut threads = lock(&self.threads);
        let (done, running) = std::mem::take(&mut *threads)
            .into_iter()
            .partition(|t| t.is_finished());
        *threads = running;
        drop(threads);
        for t in done {
            let _ = t.join();
        }
    }
}

/// What the supervisor saw of a worker at the last sample.
struct Seen {
    at: Instant,
    busy_ns: u64,
    late_ticks: u64,
}

/// The supervisor thread: every `config.sample`, one [`Load`] per worker
/// into the allocator, and its decisions applied.
fn supervise(pool: Arc<Pool>, mut allocator: Allocator, wake: Receiver<()>) {
    let mut seen: HashMap<WorkerId, Seen> = HashMap::new();
    loop {
        match wake.recv_timeout(pool.config.sample) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        if pool.stop.load(Relaxed) {
            return;
        }
        let now = Instant::now();
        let mut guard = lock(&pool.routes);
        let routes = &mut *guard;
        let mut loads = Vec::new();
        for (id, slot) in routes.workers.iter_mut().enumerate() {
            let Some(slot) = slot else {
                seen.remove(&id);
                continue;
            };
            let c = &routes.counters[id];
            let (busy_ns, late_ticks) = (c.busy_ns.load(Relaxed), c.late_ticks.load(Relaxed));
            let (busy, late) = match seen.get(&id) {
                Some(s) => {
                    let span = now.saturating_duration_since(s.at);
                    let busy = (busy_ns - s.busy_ns) as f64 / span.as_nanos().max(1) as f64;
                    let slots = span.as_millis().max(1) as f64;
                    (busy, (late_ticks - s.late_ticks) as f64 / slots)
                }
                None => (0.0, 0.0),
            };
            let now_seen = Seen {
                at: now,
                busy_ns,
                late_ticks,
            };
            seen.insert(id, now_seen);
            slot.busy = busy.min(1.0);
            loads.push(Load {
                worker: id,
                streams: slot.streams,
                busy,
                late,
            });
        }
        allocator.handle_load(now, &loads);
        while let Some(decision) = allocator.poll_decision() {
            pool.apply(routes, decision);
        }
        drop(guard);
        pool.reap();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn shutdown(&self) {
        let pool = &self.pool;
        pool.stop.store(true, Relaxed);
        lock(&self.wake).take();
        let me = thread::current().id();
        // The supervisor first: then nothing starts another worker.
        let supervisor = lock(&self.supervisor).take();
        for t in supervisor.into_iter() {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        for t in std::mem::take(&mut *lock(&pool.threads)) {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn bind_one(ip: IpAddr, port: u16) -> io::Result<UdpSocket> {
    let addr = SocketAddr::new(ip, port);
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    timestamps::enable(&socket);
    Ok(socket)
}

/// RTP on an even port and RTCP on the next (RFC 3550 §11).
fn bind_pair(ip: IpAddr, port: u16) -> io::Result<(UdpSocket, UdpSocket)> {
    if port != 0 {
        let rtcp_port = port
            .checked_add(1)
            .ok_or_else(|| io::Error::other("no RTCP port above 65535"))?;
        return Ok((bind_one(ip, port)?, bind_one(ip, rtcp_port)?));
    }
    for _ in 0..64 {
        let rtp = bind_one(ip, 0)?;
        let p = rtp.local_addr()?.port();
        if p % 2 == 0
            && let Ok(rtcp) = bind_one(ip, p + 1)
        {
            return Ok((rtp, rtcp));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free RTP/RTCP port pair",
    ))
}

/// A bridge from one stream's side.
struct Bridge {
    partner: usize,
    partner_id: StreamId,
    /// The mixed recording, on the stream that got the Bridge command.
    recording: Option<(u64, Vec<i16>)>,
}

struct Stream {
    id: StreamId,
    session: Session,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    slot: usize,
    ticks: u64,
    bridge: Option<Bridge>,
    /// The frame heard at the last tick, for the partner's recording or
    /// the room's mixer.
    heard: Option<[i16; FRAME_SAMPLES]>,
    room: Option<RoomId>,
    /// A WebRTC client in place of the RTP socket's far end.
    peer: Option<Box<PeerLeg>>,
}

struct Worker {
    rx: Receiver<Msg>,
    counters: Arc<Counters>,
    sink: Sink,
    room_sink: RoomSink,
    rooms: HashMap<RoomId, Room>,
    /// Rooms by the slot they mix in.
    room_wheel: [Vec<RoomId>; SLOTS],
    /// Streams moving here, with the commands that came before them.
    expected: HashMap<StreamId, Vec<Command>>,
    stop: Arc<AtomicBool>,
    /// The engine dropped this worker's channel: it retired.
    retired: bool,
    timeout: Duration,
    streams: Vec<Option<Stream>>,
    free: Vec<usize>,
    index: HashMap<StreamId, usize>,
    wheel: [Vec<usize>; SLOTS],
    out: Vec<u8>,
    batch: Batch,
}

impl Worker {
    fn new(
        rx: Receiver<Msg>,
        counters: Arc<Counters>,
        (sink, room_sink): (Sink, RoomSink),
        stop: Arc<AtomicBool>,
        timeout: Duration,
    ) -> Self {
        Worker {
            rx,
            counters,
            sink,
            room_sink,
            rooms: HashMap::new(),
            room_wheel: Default::default(),
            expected: HashMap::new(),
            stop,
            retired: false,
            timeout,
            streams: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            wheel: Default::default(),
            out: Vec::with_capacity(256),
            batch: Batch::new(),
        }
    }

    fn run(mut self) {
        let mut origin = Instant::now();
        let mut k: u64 = 0;
        while !self.stop.load(Relaxed) && !self.retired {
            if self.index.is_empty() {
                // Nothing to pace: wait for a stream rather than wake every
                // slot (an idle runtime spent 2 % of a core here, 10 µs per
                // call at 2,000 calls/s). The pacing clock restarts with
                // the first stream.
                match self.rx.recv_timeout(IDLE_POLL) {
                    Ok(msg) => {
                        origin = Instant::now();
                        k = 0;
                        self.message(origin, msg);
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => self.retired = true,
                }
                continue;
            }
            let deadline = origin + Duration::from_millis(k);
            let now = Instant::now();
            let late = now.saturating_duration_since(deadline);
            if late >= LATE {
                self.counters.late_ticks.fetch_add(1, Relaxed);
                self.counters
                    .max_lateness_us
                    .fetch_max(late.as_micros() as u64, Relaxed);
            }
            self.commands(now);
            let wall = SystemTime::now();
            let slot = (k % SLOTS as u64) as usize;
            for j in 0..self.wheel[slot].len() {
                let i = self.wheel[slot][j];
                self.service(i, now, wall);
            }
            for j in 0..self.room_wheel[slot].len() {
                let room = self.room_wheel[slot][j];
                self.mix(room);
            }
            k += 1;
            let next = origin + Duration::from_millis(k);
            let done = Instant::now();
            // Busy: from waking to going back to sleep (the clock is read
            // here anyway); sleeping and oversleeping are idle.
            let busy = done.saturating_duration_since(now).as_nanos() as u64;
            self.counters.busy_ns.fetch_add(busy, Relaxed);
            let now = done;
            if next > now {
                thread::sleep(next - now);
            }
        }
    }

    fn commands(&mut self, now: Instant) {
        loop {
            match self.rx.try_recv() {
                Ok(msg) => self.message(now, msg),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.retired = true;
                    return;
                }
            }
        }
    }

    fn message(&mut self, now: Instant, msg: Msg) {
        match msg {
            Msg::Open { stream, rtp, rtcp } => self.open(now, stream, rtp, rtcp),
            Msg::Command(stream, command) => match self.expected.get_mut(&stream) {
                Some(held) => held.push(command),
                None => self.command(now, stream, command),
            },
            Msg::Room(room, command) => self.room_command(room, command),
            Msg::Expect(stream) => {
                self.expected.insert(stream, Vec::new());
            }
            Msg::Move { stream, to } => self.hand_over(stream, to),
            Msg::Adopt(stream) => self.adopt(now, stream),
            Msg::Lost(stream) => {
                self.expected.remove(&stream);
            }
        }
    }

    fn open(&mut self, now: Instant, id: StreamId, rtp: UdpSocket, rtcp: UdpSocket) {
        let config = SessionConfig {
            ssrc: rand::random(),
            timeout: self.timeout,
            cname: format!("{:024x}@switchyard", rand::random::<u128>() >> 32),
            wall: SystemTime::now(),
        };
        let stream = Stream {
            id,
            session: Session::new(now, config),
            rtp,
            rtcp,
            slot: 0,
            ticks: 0,
            bridge: None,
            heard: None,
            room: None,
            peer: None,
        };
        self.place(stream);
    }

    /// Puts `stream` in a free place and in the emptiest slot of the wheel.
    fn place(&mut self, mut stream: Stream) -> usize {
        let slot = (0..SLOTS).min_by_key(|&s| self.wheel[s].len()).unwrap_or(0);
        stream.slot = slot;
        let id = stream.id;
        let i = match self.free.pop() {
            Some(i) => {
                self.streams[i] = Some(stream);
                i
            }
            None => {
                self.streams.push(Some(stream));
                self.streams.len() - 1
            }
        };
        self.index.insert(id, i);
        self.wheel[slot].push(i);
        self.counters.streams.fetch_add(1, Relaxed);
        if self.streams[i].as_ref().is_some_and(|s| s.peer.is_some()) {
            self.counters.clients.fetch_add(1, Relaxed);
        }
        i
    }

    /// Takes stream `i` out of this worker (closing or moving).
    fn remove(&mut self, i: usize) -> Option<Stream> {
        let stream = self.streams[i].take()?;
        let wheel = &mut self.wheel[stream.slot];
        if let Some(at) = wheel.iter().position(|&x| x == i) {
            wheel.swap_remove(at);
        }
        self.index.remove(&stream.id);
        self.free.push(i);
        self.counters.streams.fetch_sub(1, Relaxed);
        if stream.peer.is_some() {
            self.counters.clients.fetch_sub(1, Relaxed);
        }
        Some(stream)
    }

    /// Sends `stream` to another worker (it joins a room there); what
    /// ties it to this worker (a bridge, a room) ends first.
    fn hand_over(&mut self, stream: StreamId, to: Sender<Msg>) {
        let Some(&i) = self.index.get(&stream) else {
            let _ = to.send(Msg::Lost(stream));
            return;
        };
        self.unbridge(i);
        self.leave(i, Out::Left);
        match self.remove(i) {
            Some(s) => {
                let _ = to.send(Msg::Adopt(Box::new(s)));
            }
            None => {
                let _ = to.send(Msg::Lost(stream));
            }
        }
    }

    /// A stream handed over by another worker, and the commands that
    /// waited for it.
    fn adopt(&mut self, now: Instant, stream: Box<Stream>) {
        let id = stream.id;
        let held = self.expected.remove(&id).unwrap_or_default();
        self.place(*stream);
        for command in held {
            self.command(now, id, command);
        }
    }

    fn command(&mut self, now: Instant, id: StreamId, command: Command) {
        let Some(&i) = self.index.get(&id) else {
            return;
        };
        let Some(stream) = self.streams[i].as_mut() else {
            return;
        };
        let s = &mut stream.session;
        match command {
            Command::Start(params) => s.start(now, params),
            Command::Play { id, clips, forever } => s.play(id, clips, forever),
            Command::StopPlay => s.stop_play(),
            Command::SendDigits { id, digits } => s.send_digits(id, &digits),
            Command::Record { id, spec } => s.record(id, spec),
            Command::StopRecord(end) => s.stop_record(end),
            Command::Bridge { other, record } => self.bridge(i, other, record),
            Command::Unbridge => self.unbridge(i),
            Command::Join {
                room,
                config,
                join,
                record,
            } => self.join(i, room, *config, join, record),
            Command::Leave => self.leave(i, Out::Left),
            Command::Attach(leg) => {
                if stream.peer.replace(leg).is_none() {
                    self.counters.clients.fetch_add(1, Relaxed);
                }
            }
            Command::Detach(reply) => {
                if let Some(leg) = stream.peer.take() {
                    self.counters.clients.fetch_sub(1, Relaxed);
                    let _ = reply.send(leg);
                }
            }
            Command::Close => self.close(i),
        }
        self.events(i);
    }

    fn bridge(&mut self, i: usize, other: StreamId, record: Option<u64>) {
        let Some(&j) = self.index.get(&other).filter(|&&j| j != i) else {
            tracing::warn!(
                other,
                "bridge to a stream not on this worker (another group?)"
            );
            return;
        };
        self.unbridge(i);
        self.unbridge(j);
        let (a, b) = (self.id(i), self.id(j));
        for k in [i, j] {
            if let Some(s) = self.streams[k].as_mut() {
                s.session.listen(true);
            }
        }
        if let Some(s) = self.streams[i].as_mut() {
            let recording = record.map(|id| (id, Vec::new()));
            s.bridge = Some(Bridge {
                partner: j,
                partner_id: b,
                recording,
            });
        }
        if let Some(s) = self.streams[j].as_mut() {
            s.bridge = Some(Bridge {
                partner: i,
                partner_id: a,
                recording: None,
            });
        }
    }

    fn id(&self, i: usize) -> StreamId {
        self.streams[i].as_ref().map_or(0, |s| s.id)
    }

    /// Ends the bridge of stream `i` (both sides), reporting its recording.
    fn unbridge(&mut self, i: usize) {
        let Some(bridge) = self.streams[i].as_mut().and_then(|s| {
            s.session.listen(false);
            s.bridge.take()
        }) else {
            return;
        };
        let j = bridge.partner;
        let partner = self.streams[j]
            .as_mut()
            .filter(|s| s.id == bridge.partner_id);
        let theirs = partner.and_then(|s| {
            s.session.listen(false);
            s.bridge.take()
        });
        let owners = [(i, bridge.recording), (j, theirs.and_then(|b| b.recording))];
        for (owner, recording) in owners {
            if let Some((id, samples)) = recording {
                let event = Event::Recorded {
                    id,
                    samples,
                    ended_by: RecordEnd::Hangup,
                };
                (self.sink)(self.id(owner), event);
            }
        }
    }

    fn close(&mut self, i: usize) {
        self.unbridge(i);
        self.leave(i, Out::Hangup);
        let Some(mut stream) = self.remove(i) else {
            return;
        };
        stream.session.stop_record(RecordEnd::Hangup);
        while let Some(event) = stream.session.poll_event() {
            (self.sink)(stream.id, event);
        }
    }

    fn events(&mut self, i: usize) {
        let Some(stream) = self.streams[i].as_mut() else {
            return;
        };
        while let Some(event) = stream.session.poll_event() {
            (self.sink)(stream.id, event);
        }
    }

    /// One tick of stream `i`: input, output, bridge, events.
    fn service(&mut self, i: usize, now: Instant, wall: SystemTime) {
        let Some(s) = self.streams[i].as_mut() else {
            return;
        };
        if let Some(leg) = s.peer.as_mut() {
            let n = leg.receive(now, &mut self.batch, &mut s.session);
            self.counters.received.fetch_add(n, Relaxed);
        }
        while s.peer.is_none() {
            let n = match self.batch.recv(&s.rtp) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors (port unreachable) surface here: not fatal.
                Err(_) => break,
            };
            for m in 0..n {
                let (from, packet, stamp) = self.batch.get(m);
                let at = arrival(now, wall, stamp);
                s.session.handle_rtp(at, from, packet);
            }
            self.counters.received.fetch_add(n as u64, Relaxed);
            if n < BATCH {
                break;
            }
        }
        if s.ticks % RTCP_EVERY == 0 {
            let mut buf = [0u8; MTU];
            while let Ok((n, from)) = s.rtcp.recv_from(&mut buf) {
                s.session.handle_rtcp(now, from, &buf[..n]);
            }
        }
        s.ticks += 1;
        if let Some(to) = s.session.tick(now, &mut self.out) {
            let sent = match s.peer.as_mut() {
                Some(leg) => {
                    leg.send(now, &self.out, &mut s.session);
                    Ok(0)
                }
                None => s.rtp.send_to(&self.out, to),
            };
            match sent {
                Ok(_) => self.counters.sent.fetch_add(1, Relaxed),
                Err(_) => self.counters.send_errors.fetch_add(1, Relaxed),
            };
        }
        // The client's own stack reports on its media (str0m's RTCP).
        if let Some((to, report)) = s.session.poll_rtcp(now)
            && s.peer.is_none()
        {
            let _ = s.rtcp.send_to(&report, to);
        }
        let heard = s.session.poll_received().copied();
        if s.room.is_some() {
            // The room's next mix takes it.
            s.heard = heard;
        } else if s.bridge.is_some() {
            self.bridge_tick(i, heard);
        }
        self.events(i);
    }

    /// Relays what stream `i` heard to its partner and records the mix.
    fn bridge_tick(&mut self, i: usize, heard: Option<[i16; FRAME_SAMPLES]>) {
        let Some(s) = self.streams[i].as_mut() else {
            return;
        };
        let Some(bridge) = s.bridge.as_ref() else {
            return;
        };
        let (j, partner_id) = (bridge.partner, bridge.partner_id);
        s.heard = heard;
        let Some(partner) = self.streams[j].as_mut().filter(|p| p.id == partner_id) else {
            return;
        };
        if let Some(frame) = &heard {
            partner.session.relay(frame);
        }
        let theirs = partner.heard.take();
        let Some((_, samples)) = self.streams[i]
            .as_mut()
            .and_then(|s| s.bridge.as_mut()?.recording.as_mut())
        else {
            return;
        };
        let ours = heard.unwrap_or([0; FRAME_SAMPLES]);
        let theirs = theirs.unwrap_or([0; FRAME_SAMPLES]);
        samples.extend(ours.iter().zip(&theirs).map(|(a, b)| a.saturating_add(*b)));
    }
}

/// When a datagram arrived, from its kernel timestamp (wall clock) and the
/// slot's pair of clock readings; the slot time when there is none.
fn arrival(now: Instant, wall: SystemTime, stamp: Option<SystemTime>) -> Instant {
    let Some(stamp) = stamp else { return now };
    match wall.duration_since(stamp) {
        // No earlier than 1 s back: a stepped clock must not skew much.
        Ok(ago) => now
            .checked_sub(ago.min(Duration::from_secs(1)))
            .unwrap_or(now),
        Err(_) => now,
    }
}

#[cfg(target_os = "linux")]
mod timestamps {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    /// Asks for a receive timestamp on every datagram; without it (an old
    /// kernel) arrivals are stamped with the slot's time.
    pub fn enable(socket: &UdpSocket) {
        let on: libc::c_int = 1;
        // SAFETY: a valid fd and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod timestamps {
    pub fn enable(_: &std::net::UdpSocket) {}
}

/// Buffers for receiving up to [`BATCH`] datagrams with one syscall.
struct Batch {
    bufs: Box<[[u8; MTU]; BATCH]>,
    lens: [usize; BATCH],
    from: [SocketAddr; BATCH],
    stamps: [Option<SystemTime>; BATCH],
    #[cfg(target_os = "linux")]
    names: [libc::sockaddr_storage; BATCH],
    #[cfg(target_os = "linux")]
    controls: [[u64; 8]; BATCH],
}

impl Batch {
    fn new() -> Self {
        Batch {
            bufs: Box::new([[0; MTU]; BATCH]),
            lens: [0; BATCH],
            from: [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
            stamps: [None; BATCH],
            // SAFETY: sockaddr_storage is plain bytes; all-zero is valid.
            #[cfg(target_os = "linux")]
            names: unsafe { std::mem::zeroed() },
            #[cfg(target_os = "linux")]
            controls: [[0; 8]; BATCH],
        }
    }

    fn get(&self, m: usize) -> (SocketAddr, &[u8], Option<SystemTime>) {
        (self.from[m], &self.bufs[m][..self.lens[m]], self.stamps[m])
    }

    /// Receives what is queued (up to [`BATCH`]) without blocking; the
    /// count, or `WouldBlock` when nothing is.
    #[cfg(target_os = "linux")]
    fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: all-zero iovec/mmsghdr are valid (null pointers, zero
        // lengths); every pointer set below points into `self`, which
        // outlives the call.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for m in 0..BATCH {
            iov[m].iov_base = self.bufs[m].as_mut_ptr().cast();
            iov[m].iov_len = MTU;
            let h = &mut msgs[m].msg_hdr;
            h.msg_name = (&mut self.names[m] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iov[m];
            h.msg_iovlen = 1;
            h.msg_control = self.controls[m].as_mut_ptr().cast();
            h.msg_controllen = size_of::<[u64; 8]>() as _;
        }
        // SAFETY: msgs describes BATCH valid buffers; MSG_DONTWAIT makes it
        // return what is queued at once.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as _,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (m, msg) in msgs.iter().enumerate().take(n) {
            self.lens[m] = (msg.msg_len as usize).min(MTU);
            self.from[m] = sockaddr(&self.names[m]).unwrap_or(self.from[m]);
            self.stamps[m] = stamp(&msg.msg_hdr);
        }
        Ok(n)
    }

    #[cfg(not(target_os = "linux"))]
    fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let (len, from) = socket.recv_from(&mut self.bufs[0])?;
        self.lens[0] = len;
        self.from[0] = from;
        self.stamps[0] = None;
        Ok(1)
    }
}

#[cfg(target_os = "linux")]
fn sockaddr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};
    match libc::c_int::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET, and
            // sockaddr_storage is large and aligned enough for it.
            let a =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for AF_INET6.
            let a =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let port = u16::from_be(a.sin6_port);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                port,
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The `SCM_TIMESTAMPNS` control message of a received datagram.
#[cfg(target_os = "linux")]
fn stamp(h: &libc::msghdr) -> Option<SystemTime> {
    // SAFETY: `h` is a msghdr the kernel filled, its control buffer still
    // alive; the CMSG_* macros stay within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                let since = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                return SystemTime::UNIX_EPOCH.checked_add(since);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

pub mod allocator;
mod peer;
mod room;
#[cfg(test)]
mod tests;
