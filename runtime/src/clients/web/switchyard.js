// Switchyard client SDK: one ES module, no build step.
//
//   import { Client } from "/switchyard.js";
//   const client = new Client({ token });          // an access token (POST /v1/tokens)
//   client.addEventListener("registered", (e) => console.log(e.detail.identity));
//   client.addEventListener("presence", (e) => console.log(e.detail.status));
//   client.connect();
//   client.setPresence("away", "at lunch");
//
// It speaks the runtime's signalling WebSocket (/v1/client): registers with
// the token, sends heartbeats, reconnects with back-off when the network
// drops (not when the token is refused), and reports presence. Calls
// (WebRTC) are not built yet: `dial` says so.

/** @typedef {"available" | "busy" | "away" | "offline"} Status */

/**
 * @typedef {object} Presence
 * @property {string} identity
 * @property {Status} status
 * @property {string | null} text
 * @property {number} devices
 */

/**
 * @typedef {object} Registered
 * @property {string} identity
 * @property {string} device
 * @property {number} heartbeat_secs
 * @property {number} expires  unix seconds: connect again with a new token before
 */

/**
 * Events: `registered` (detail: Registered), `presence` (detail: Presence),
 * `error` (detail: {code, message}), `state` (detail: "connecting" |
 * "registered" | "closed" | "refused").
 */
export class Client extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.token  an access token for this client's identity
   * @param {string} [options.url]  the signalling endpoint; default: this page's host
   */
  constructor({ token, url }) {
    super();
    if (!token) throw new Error("a Client needs an access token");
    this.token = token;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = url ?? `${scheme}//${location.host}/v1/client`;
    /** @type {"idle" | "connecting" | "registered" | "closed" | "refused"} */
    this.state = "idle";
    /** @type {Registered | null} */
    this.registration = null;
    this.socket = null;
    this.retry = 1000;
    this.heartbeat = null;
    this.wanted = false;
  }

  /** Connects and registers; reconnects until `close()` or a refused token. */
  connect() {
    this.wanted = true;
    this.#open();
  }

  /** Leaves: this device goes offline. */
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

  /** Calls from clients come with WebRTC media; not built yet. */
  dial() {
    throw new Error("calls from browser clients are not built yet (WebRTC media comes next)");
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
      case "error":
        if (message.code === "unauthorized" || message.code === "too_many") {
          this.wanted = false;
          this.#set("refused");
        }
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
