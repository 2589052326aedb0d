// Switchyard client SDK: one ES module, no build step.
//
//   import { Client } from "/switchyard.js";
//   const client = new Client({ token });          // an access token (POST /v1/tokens)
//   client.addEventListener("registered", (e) => console.log(e.detail.identity));
//   client.addEventListener("presence", (e) => console.log(e.detail.status));
//   client.addEventListener("incoming", (e) => e.detail.accept());
//   client.connect();
//   client.setPresence("away", "at lunch");
//   const call = client.call("+15550100");         // after `registered`
//   call.addEventListener("ended", (e) => console.log(e.detail.reason));
//
// It speaks the runtime's signalling WebSocket (/v1/client): registers with
// the token, sends heartbeats, reconnects with back-off when the network
// drops (not when the token is refused), reports presence, and carries
// calls. Media is WebRTC, audio only. The runtime is ICE-lite and always
// answers, so this side makes the SDP offer for outgoing and incoming calls
// alike, with its host candidates gathered into it (no TURN/STUN: iceServers
// is empty; candidates found after the 2 s cap are trickled).

/** @typedef {"available" | "busy" | "away" | "offline"} Status */
/** @typedef {{identity: string, status: Status, text: string | null, devices: number}} Presence */
/** @typedef {{identity: string, device: string, heartbeat_secs: number, expires: number}} Registered  expires: unix seconds; reconnect with a new token before */

/**
 * Call signalling. `call` is the call's id: chosen here for outgoing calls
 * ("c1", "c2", …), by the runtime for incoming ones. Client → runtime (every
 * `sdp` is this side's OFFER, for `answer` too):
 * @typedef {{type: "invite", call: string, to: string, sdp: string}} Invite
 * @typedef {{type: "answer", call: string, sdp: string}} Answer  accepts an incoming call
 * @typedef {{type: "reject", call: string}} Reject
 * @typedef {{type: "candidate", call: string, candidate: string}} Candidate  one trickled ICE candidate
 * @typedef {{type: "dtmf", call: string, digits: string}} Dtmf  0-9 * # A-D, at most 32
 * @typedef {{type: "hangup", call: string}} Hangup
 */
/**
 * Runtime → client (`error` about a call does not end it; `ended` does):
 * @typedef {{type: "media", call: string, sdp: string}} Media  the runtime's SDP answer
 * @typedef {{type: "ringing", call: string}} Ringing
 * @typedef {{type: "connected", call: string}} Connected
 * @typedef {{type: "incoming", call: string, from: string, to: string, label?: string}} Incoming
 *   label: what the caller's screening found: "verified", "unverified" or
 *   "likely-spoofed" (absent when the runtime screens no calls)
 * @typedef {{type: "ended", call: string, reason: EndReason, status?: number, message?: string}} Ended
 * @typedef {{type: "error", code: string, message: string, call?: string}} ErrorMessage
 *
 * @typedef {"hangup" | "busy" | "no-answer" | "rejected" | "cancelled" | "failed"} EndReason
 * @typedef {"calling" | "ringing" | "ringing-in" | "connecting" | "connected" | "ended"} CallState
 * @typedef {{reason: EndReason, status?: number, message?: string, local: boolean}} EndedDetail
 *   a call's `ended`: status is the SIP one, if any; local: this side ended it (hangup,
 *   reject, no microphone)
 * @typedef {{packetsSent: number, packetsReceived: number, audioEnergyIn: number,
 *   audioLevelIn: number, bytesReceived: number}} CallStats  audio, from pc.getStats():
 *   audioEnergyIn is inbound-rtp totalAudioEnergy (grows while sound arrives)
 * @typedef {HTMLMediaElement | ((call: Call) => HTMLMediaElement)} AudioTarget
 *   where a call's remote audio plays: an element, or a function making one per call
 */

const DIGITS = /^[0-9*#A-D]{1,32}$/i;

/**
 * @param {RTCPeerConnection} pc  resolves when its ICE gathering completes or after `ms`:
 *   a host-only gather is quick, but a stray interface must not stall a call
 */
function gathered(pc, ms = 2000) {
  return new Promise((done) => {
    const check = () => pc.iceGatheringState === "complete" && finish();
    const finish = () => (clearTimeout(timer), pc.removeEventListener("icegatheringstatechange", check), done());
    const timer = setTimeout(finish, ms);
    pc.addEventListener("icegatheringstatechange", check);
    check();
  });
}

/**
 * One call: from `client.call()` (direction "out") or the client's `incoming`
 * event (direction "in", state "ringing-in"). Events: `state` (detail:
 * CallState), `ended` (detail: EndedDetail), `error` (detail: {code, message}:
 * the runtime refused something; the call goes on unless `ended` follows).
 */
export class Call extends EventTarget {
  #send;
  #own = false; // the SDK opened localStream, so it stops it
  #sent = false; // the offer went out: trickle from here on, hang up (not reject)
  #muted = false;
  #target; // the Client's audioElement option
  #audio = null; // the element remote audio plays in
  #made = false; // ... and the SDK made it (so removes it)
  #meter = null; // {ctx, analyser, buf} for micLevel()

  /**
   * Not made directly: see `Client.call` and the `incoming` event.
   * @param {{id: string, direction: "out" | "in", from: string, to: string, label?: string, audio?: AudioTarget}} init
   * @param {(message: object) => void} send
   */
  constructor({ id, direction, from, to, label, audio }, send) {
    super();
    this.id = id;
    /** @type {"out" | "in"} */ this.direction = direction;
    this.from = from;
    this.to = to;
    /** @type {string | null} the caller's screening label (incoming calls) */ this.label = label ?? null;
    /** @type {CallState} */ this.state = direction === "in" ? "ringing-in" : "calling";
    /** @type {EndReason | null} */ this.endReason = null;
    /** @type {number | null} Date.now() when it connected: for a timer */ this.connectedAt = null;
    /** @type {RTCPeerConnection | null} */ this.pc = null;
    /** @type {MediaStream | null} */ this.localStream = null;
    // The far end's audio: one stream from the start, so it can be attached early.
    this.remoteStream = new MediaStream();
    this.#send = send;
    this.#target = audio;
  }

  /** Whether the microphone is muted (by `mute`). */
  get muted() {
    return this.#muted;
  }

  /** @param {HTMLMediaElement} element  plays remote audio from now on (one the SDK made goes) */
  attach(element) {
    if (this.#made) this.#audio?.remove();
    this.#audio = element;
    this.#made = false;
    this.#play();
  }

  /** @param {{stream?: MediaStream}} [options]  answers a call ringing in; stream: default the microphone */
  accept({ stream } = {}) {
    if (this.state !== "ringing-in") throw new Error(`cannot accept a call that is ${this.state}`);
    this.#set("connecting");
    this._start("answer", stream);
  }

  /** Declines an incoming call. */
  reject() {
    if (this.state !== "ringing-in") return this.hangup();
    this.#send({ type: "reject", call: this.id });
    this.#end({ reason: "rejected", local: true });
  }

  /** Ends the call, whatever state it is in (declines one still ringing in). */
  hangup() {
    if (this.state === "ended") return;
    if (this.state === "ringing-in") return this.reject();
    if (this.#sent) this.#send({ type: "hangup", call: this.id });
    this.#end({ reason: this.state === "connected" ? "hangup" : "cancelled", local: true });
  }

  /** @param {string} digits  0-9 * # A-D, at most 32: sent to the far end as DTMF */
  dtmf(digits) {
    if (!DIGITS.test(digits)) throw new RangeError(`not DTMF digits: ${JSON.stringify(digits)}`);
    if (this.state !== "ended") this.#send({ type: "dtmf", call: this.id, digits: digits.toUpperCase() });
  }

  /** @param {boolean} [on]  mutes the microphone (the track flows on, silent); default: toggles */
  mute(on = !this.#muted) {
    this.#muted = on;
    for (const track of this.localStream?.getAudioTracks() ?? []) track.enabled = !on;
  }

  /** @returns {Promise<CallStats>} */
  async stats() {
    const out = { packetsSent: 0, packetsReceived: 0, audioEnergyIn: 0, audioLevelIn: 0, bytesReceived: 0 };
    if (!this.pc) return out;
    for (const s of (await this.pc.getStats()).values()) {
      if (s.kind && s.kind !== "audio") continue;
      if (s.type === "outbound-rtp") out.packetsSent += s.packetsSent ?? 0;
      if (s.type === "inbound-rtp") {
        out.packetsReceived += s.packetsReceived ?? 0;
        out.bytesReceived += s.bytesReceived ?? 0;
        out.audioEnergyIn += s.totalAudioEnergy ?? 0;
        out.audioLevelIn = Math.max(out.audioLevelIn, s.audioLevel ?? 0);
      }
    }
    return out;
  }

  /** The microphone's level now, 0..1 (0 when muted): poll it from requestAnimationFrame for a meter. */
  micLevel() {
    if (!this.localStream?.getAudioTracks().length || this.state === "ended") return 0;
    if (!this.#meter) {
      const ctx = new AudioContext();
      const analyser = new AnalyserNode(ctx, { fftSize: 1024 });
      ctx.createMediaStreamSource(this.localStream).connect(analyser);
      this.#meter = { ctx, analyser, buf: new Float32Array(analyser.fftSize) };
    }
    const { ctx, analyser, buf } = this.#meter;
    if (ctx.state === "suspended") ctx.resume().catch(() => {});
    analyser.getFloatTimeDomainData(buf);
    // RMS, scaled so ordinary speech fills most of the bar.
    return Math.min(1, 5 * Math.sqrt(buf.reduce((sum, x) => sum + x * x, 0) / buf.length));
  }

  /**
   * The offer dance (microphone, peer connection, offer with its candidates),
   * then `invite` or `answer`. The Client starts outgoing calls with it.
   * @param {"invite" | "answer"} type
   * @param {MediaStream} [stream]
   */
  async _start(type, stream) {
    try {
      this.#own = !stream;
      stream ??= await navigator.mediaDevices.getUserMedia({ audio: true });
      // Hung up while the browser asked for the microphone.
      if (this.state === "ended") return this.#own && stream.getTracks().forEach((t) => t.stop());
      this.localStream = stream;
      this.mute(this.#muted);
      const pc = new RTCPeerConnection({ iceServers: [] });
      this.pc = pc;
      pc.ontrack = (e) => (this.remoteStream.addTrack(e.track), this.#play());
      // Candidates found after the offer went (gathering hit its cap) are trickled.
      pc.onicecandidate = ({ candidate: c }) =>
        this.#sent && c?.candidate && this.#send({ type: "candidate", call: this.id, candidate: c.candidate });
      for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      if (this.state === "ended") return;
      this.#sent = true;
      const sdp = pc.localDescription.sdp;
      this.#send(type === "invite" ? { type, call: this.id, to: this.to, sdp } : { type, call: this.id, sdp });
    } catch (e) {
      if (this.state === "ended") return; // closed under us: nothing more to say
      // An incoming call is still ringing at the runtime: decline it.
      if (type === "answer") this.#send({ type: "reject", call: this.id });
      this.#end({ reason: "failed", message: `${e.name}: ${e.message}`, local: true });
    }
  }

  /** @param {Media | Ringing | Connected | Ended | ErrorMessage} m  from the runtime, routed by the Client */
  _signal(m) {
    if (this.state === "ended") return;
    switch (m.type) {
      case "media":
        this.pc?.setRemoteDescription({ type: "answer", sdp: m.sdp }).catch((e) => {
          if (this.state === "ended") return;
          this.#send({ type: "hangup", call: this.id });
          this.#end({ reason: "failed", message: `the runtime's answer: ${e.message}`, local: true });
        });
        break;
      case "ringing":
        return this.state === "calling" && this.#set("ringing");
      case "connected":
        this.connectedAt = Date.now();
        return this.#set("connected");
      case "ended":
        return this.#end({ reason: m.reason, status: m.status, message: m.message, local: false });
      case "error":
        return this.dispatchEvent(new CustomEvent("error", { detail: { code: m.code, message: m.message } }));
    }
  }

  #play() {
    if (this.state === "ended" || !this.remoteStream.getTracks().length) return;
    if (!this.#audio) {
      const t = this.#target;
      this.#made = !t;
      this.#audio = typeof t === "function" ? t(this) : t ?? document.body.appendChild(document.createElement("audio"));
      if (this.#made) this.#audio.hidden = true;
    }
    const el = this.#audio;
    el.autoplay = true;
    // Set again on each new track: not every browser picks up tracks added later.
    el.srcObject = this.remoteStream;
    el.play?.().catch(() => {});
  }

  /** @param {EndedDetail} detail */
  #end(detail) {
    if (this.state === "ended") return;
    this.endReason = detail.reason;
    this.pc?.close();
    if (this.#own) this.localStream?.getTracks().forEach((t) => t.stop());
    this.#meter?.ctx.close().catch(() => {});
    this.#meter = null;
    // A shared element may play another call by now: leave that one be.
    if (this.#audio?.srcObject === this.remoteStream) this.#audio.srcObject = null;
    if (this.#made) this.#audio.remove();
    this.#set("ended");
    this.dispatchEvent(new CustomEvent("ended", { detail }));
  }

  #set(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }
}

/**
 * Events: `registered` (detail: Registered), `presence` (detail: Presence),
 * `incoming` (detail: a Call, state "ringing-in"), `error` (detail: {code,
 * message, call?}), `state` (detail: "connecting" | "registered" | "closed" |
 * "refused").
 */
export class Client extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.token  an access token for this client's identity
   * @param {string} [options.url]  the signalling endpoint; default: this page's host
   * @param {AudioTarget} [options.audioElement]  where calls play; default: a hidden
   *   <audio> per call, appended to document.body
   */
  constructor({ token, url, audioElement }) {
    super();
    if (!token) throw new Error("a Client needs an access token");
    this.token = token;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = url ?? `${scheme}//${location.host}/v1/client`;
    this.audioElement = audioElement;
    /** @type {"idle" | "connecting" | "registered" | "closed" | "refused"} */ this.state = "idle";
    /** @type {Registered | null} */ this.registration = null;
    /** @type {Map<string, Call>} the live calls, by id */ this.calls = new Map();
    this.socket = null;
    this.retry = 1000;
    this.heartbeat = null;
    this.wanted = false;
    this.next = 1;
  }

  /** Connects and registers; reconnects until `close()` or a refused token. */
  connect() {
    this.wanted = true;
    this.#open();
  }

  /** Leaves: this device goes offline (and its calls end). */
  close() {
    this.wanted = false;
    this.socket?.close(1000, "bye");
    this.#set("closed");
  }

  /**
   * This device's presence.
   * @param {"available" | "busy" | "away"} status
   * @param {string} [text]
   */
  setPresence(status, text) {
    this.#send({ type: "presence", status, ...(text ? { text } : {}) });
  }

  /**
   * Places a call once registered.
   * @param {string} to  a number, `client:name`, a SIP URI or an app name
   * @param {{stream?: MediaStream}} [options]  the audio to send; default: the microphone
   * @returns {Call}  in state "calling"; the invite follows once media is ready
   */
  call(to, { stream } = {}) {
    if (this.state !== "registered") throw new Error(`cannot call while ${this.state}`);
    if (!to?.trim()) throw new Error("call whom?");
    const call = this.#adopt({ id: `c${this.next++}`, direction: "out", from: this.registration.identity, to: to.trim() });
    call._start("invite", stream);
    return call;
  }

  #adopt(init) {
    const call = new Call({ ...init, audio: this.audioElement }, (m) => this.#send(m));
    this.calls.set(call.id, call);
    call.addEventListener("ended", () => this.calls.delete(call.id));
    return call;
  }

  #open() {
    this.#set("connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onopen = () => this.#send({ type: "register", token: this.token });
    socket.onmessage = (event) => this.#receive(event.data);
    socket.onclose = () => {
      clearInterval(this.heartbeat);
      if (this.socket !== socket) return;
      // The runtime ends a device's calls with its socket; say so here too.
      for (const call of [...this.calls.values()]) {
        call._signal({ type: "ended", call: call.id, reason: "failed", message: "connection lost" });
      }
      if (this.wanted && this.state !== "refused") {
        setTimeout(() => this.wanted && this.#open(), this.retry);
        this.retry = Math.min(this.retry * 2, 30000);
        this.#set("connecting");
      } else if (this.state !== "refused") {
        this.#set("closed");
      }
    };
  }

  #receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    switch (message.type) {
      case "registered":
        this.registration = message;
        this.retry = 1000;
        clearInterval(this.heartbeat);
        this.heartbeat = setInterval(
          () => this.#send({ type: "heartbeat" }),
          Math.max(1, message.heartbeat_secs - 1) * 1000,
        );
        this.#set("registered");
        this.#emit("registered", message);
        break;
      case "presence":
        this.#emit("presence", message);
        break;
      case "incoming":
        if (this.calls.has(message.call)) break;
        this.#emit("incoming", this.#adopt({ id: message.call, direction: "in", from: message.from, to: message.to, label: message.label }));
        break;
      case "media":
      case "ringing":
      case "connected":
      case "ended":
        this.calls.get(message.call)?._signal(message);
        break;
      case "error":
        if (message.code === "unauthorized" || message.code === "too_many") {
          this.wanted = false;
          this.#set("refused");
        }
        if (message.call) this.calls.get(message.call)?._signal(message);
        this.#emit("error", message);
        break;
      default:
        break;
    }
  }

  #send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  #set(state) {
    if (this.state === state) return;
    this.state = state;
    this.#emit("state", state);
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
