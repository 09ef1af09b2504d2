// wsstack-client.js: the wsstack WebSocket protocol for browsers, in one module with no
// dependencies. Copy it into any frontend; the protocol is docs/protocol.md (and docs/asyncapi.yaml).
//
//   import { WsstackClient } from "./wsstack-client.js";
//   const chat = new WsstackClient("ws://127.0.0.1:3001/dev", { username: "ada" });
//   chat.addEventListener("message", (e) => console.log(e.detail.from, e.detail.data));
//   chat.addEventListener("state", (e) => console.log(e.detail.state));
//   chat.connect();
//   chat.send("hello");                      // to everyone, yourself included
//   chat.sendDirect(connectionId, "psst");   // to one connection
//   chat.listConnections();                  // answered by a "connections" event
//   chat.join("lobby");                      // answered by a "joined" event
//   chat.send("hi all", { room: "lobby" });  // to the room's members, yourself included
//   chat.leave("lobby");                     // answered by a "left" event
//   chat.forward("placeOrder", { sku: "A-1" }, { requestId: "o-1" });
//                                            // a forwarded action (the app manifest's), put on
//                                            // the stage's bus: answered by an "accepted" event
//
// Events (CustomEvent, payload in `detail`):
//   state        {state, attempt, delayMs, code, reason, wasOpen}: "connecting", "open",
//                "reconnecting" (after an unwanted close, with the backoff delay), "closed"
//   message      a broadcast     {type: "message", id, from, data, sentAt}, or a room's
//                message, which also names its `room`
//   direct       a direct one    {type: "direct", id, from, to, data, sentAt}
//                Delivery is at least once: a message may arrive twice (a fan-out retried
//                after a deadline or a failure). A frame whose `id` was seen among the last
//                RECENT_IDS is dropped before any event.
//   push         from the backend {type: "push", id, data, replyTo?, sentAt}; data is any
//                JSON value, replyTo the requestId it answers
//   connections  a page of who is connected {items: [{connectionId, username, connectedAt}],
//                next, you}
//   joined       you are in a room {type: "joined", room} (also when you already were)
//   left         you left a room   {type: "left", room}
//   accepted     a forwarded action is on the stage's bus for the backend
//                {type: "accepted", action, requestId, eventId} (requestId if you sent one)
//   errorframe   the API refused what you sent {type: "error", code, message}; the rate
//                limits (`user_rate_limited`, `broadcast_budget_exceeded`) add retryAfterMs;
//                a refused forwarded action's names its requestId
//   gatewayerror API Gateway's own frames, e.g. {message: "Internal server error",
//                connectionId, requestId} (no `type`)
//   frame        every frame, parsed, before the specific event
//
// Reconnection: API Gateway closes every connection after 2 hours and after 10 idle minutes
// (https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html),
// and a deploy drops them all. So an unwanted close is followed by a new connection after an
// exponentially growing delay with full jitter (a random delay between 0 and the exponential
// bound), so that clients dropped together do not all come back in the same instant. Only
// close() stops it.
//
// Rooms belong to a connection: `$disconnect` deletes its memberships, and a new connection
// has a new connection id. So the client remembers the rooms the API confirmed (`joined`,
// until `left`) and joins them again on each reconnection; `rooms` lists them.

/** Reconnection delays, in milliseconds. */
export const DEFAULT_BACKOFF = Object.freeze({ initialMs: 500, maxMs: 30000 });

/** How many recent message ids a client remembers to drop duplicates (a re-delivery comes
 * within seconds, long before a thousand other messages). */
export const RECENT_IDS = 1000;

/**
 * The delay before reconnection attempt `attempt` (1, 2, ...): uniformly random in
 * [0, min(maxMs, initialMs * 2^(attempt-1))] ("full jitter").
 */
export function backoffDelay(attempt, backoff = DEFAULT_BACKOFF, random = Math.random) {
  const exponent = Math.min(Math.max(attempt - 1, 0), 30);
  const bound = Math.min(backoff.maxMs, backoff.initialMs * 2 ** exponent);
  return Math.round(random() * bound);
}

/**
 * The URL to open: the API's URL with `username` and, for stages with an authorizer, `token`
 * in the query string (browsers cannot set headers on a WebSocket handshake).
 */
export function connectUrl(apiUrl, { username, token } = {}) {
  const url = new URL(apiUrl);
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new Error(`the API URL must start with ws:// or wss://, got ${url.protocol}//`);
  }
  if (username) url.searchParams.set("username", username);
  if (token) url.searchParams.set("token", token);
  return url.toString();
}

/**
 * The username rules of `$connect` (the server's are the ones that count), checked before
 * connecting, because a browser cannot read why a handshake was refused: null when fine.
 */
export function usernameProblem(username) {
  if (username === "") return "a username must not be empty";
  if ([...username].length > 64) return "a username has at most 64 characters";
  // Control (Cc) and invisible format (Cf) characters, line and paragraph separators.
  if (/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(username)) {
    return "a username must contain only printable characters";
  }
  if (username.trim() !== username) return "a username must not start or end with a space";
  return null;
}

/** The longest room name, in characters (the API's MAX_ROOM_NAME_CHARS). */
export const MAX_ROOM_NAME_CHARS = 64;

/**
 * The room name rules of `join`, `leave` and `sendMessage` (docs/protocol.md, "Rooms"; the server's are
 * the ones that count): 1 to 64 ASCII letters, digits, `-`, `_`, `.` or `:`, case-sensitive.
 * Null when fine, else what is wrong; a position counts characters from 0, as the API's
 * `invalid_room` message does.
 */
export function roomProblem(room) {
  if (typeof room !== "string") return `a room name must be a string, got ${typeof room}`;
  if (room === "") return "a room name must not be empty";
  const chars = [...room];
  if (chars.length > MAX_ROOM_NAME_CHARS) {
    return `a room name has at most ${MAX_ROOM_NAME_CHARS} characters, got ${chars.length}`;
  }
  const position = chars.findIndex((c) => !/^[A-Za-z0-9_.:-]$/.test(c));
  if (position >= 0) {
    return `a room name has ${JSON.stringify(chars[position])} at position ${position}: only ASCII letters, digits, -, _, . and : are allowed`;
  }
  return null;
}

/** Close codes a person may see, in words. */
const CLOSE_REASONS = {
  1000: "closed normally",
  1001: "the server went away (shutdown, idle timeout or the 2-hour limit)",
  1003: "the server refused the data (binary frames are not supported)",
  1006: "the connection dropped or the handshake was refused",
  1009: "a message was too big (32 KB per frame, 128 KB per message)",
  1011: "the server hit an error",
};

/** A short, readable explanation of a close code. */
export function describeClose(code, reason) {
  const known = CLOSE_REASONS[code] ?? "closed";
  return reason ? `${known}: ${reason} (${code})` : `${known} (${code})`;
}

export class WsstackClient extends EventTarget {
  /**
   * @param {string} apiUrl ws:// or wss:// URL of the API's stage
   * @param {{username?: string, token?: string, backoff?: {initialMs: number, maxMs: number}}} options
   */
  constructor(apiUrl, { username, token, backoff = DEFAULT_BACKOFF } = {}) {
    super();
    this.url = connectUrl(apiUrl, { username, token });
    this.backoff = backoff;
    this.state = "closed";
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.wanted = false;
    this.recentIds = new Set();
    /** The rooms the API confirmed this client is in, joined again after a reconnection. */
    this.rooms = new Set();
  }

  /** Opens the connection, and keeps it open until close(). */
  connect() {
    this.wanted = true;
    clearTimeout(this.timer);
    this.#open();
  }

  /** Closes the connection for good: no reconnection. */
  close() {
    this.wanted = false;
    clearTimeout(this.timer);
    this.rooms.clear();
    if (this.socket) this.socket.close(1000, "closed by the user");
    this.#setState("closed", {});
  }

  /**
   * Sends `data` to every connection, or with `{room}` to that room's members (this client must
   * be one); this connection gets it too (the echo confirms delivery).
   */
  send(data, { room } = {}) {
    const message = { action: "sendMessage", data };
    if (room !== undefined && room !== null) message.room = room;
    this.#send(message);
  }

  /** Sends `data` to the one connection `connectionId`. */
  sendDirect(connectionId, data) {
    this.#send({ action: "sendMessage", data, to: connectionId });
  }

  /** Asks for a page of the open connections; answered by a "connections" event. */
  listConnections({ cursor = null, limit } = {}) {
    const request = { action: "listConnections", cursor };
    if (limit !== undefined) request.limit = limit;
    this.#send(request);
  }

  /** Joins `room`; answered by a "joined" event, or an "errorframe" (e.g. `too_many_rooms`). */
  join(room) {
    this.#send({ action: "join", room });
  }

  /** Leaves `room`; answered by a "left" event, or an "errorframe" (`not_a_member`). */
  leave(room) {
    this.#send({ action: "leave", room });
  }

  /**
   * Sends a forwarded action: `action` is one of the stage's forwarded actions (the app
   * manifest's), `data` any JSON value (or undefined), `requestId` 1 to 64 printable ASCII
   * characters naming the request in the answer. Answered by an "accepted" event once the
   * backend's bus has it, or an "errorframe" (`backend_unavailable`: nothing was forwarded, send
   * it again later).
   */
  forward(action, data, { requestId } = {}) {
    const message = { action };
    if (data !== undefined) message.data = data;
    if (requestId !== undefined && requestId !== null) message.requestId = requestId;
    this.#send(message);
  }

  #send(message) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) {
      throw new Error(`not connected (${this.state})`);
    }
    this.socket.send(JSON.stringify(message));
  }

  #setState(state, detail) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }

  #open() {
    this.#setState("connecting", { attempt: this.attempt });
    let opened = false;
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      opened = true;
      this.attempt = 0;
      // A new connection is in no room: join again the ones the last one was in.
      for (const room of this.rooms) socket.send(JSON.stringify({ action: "join", room }));
      this.#setState("open", {});
    });
    socket.addEventListener("message", (event) => this.#receive(event.data));
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (!this.wanted) return;
      this.attempt += 1;
      const delayMs = backoffDelay(this.attempt, this.backoff);
      this.#setState("reconnecting", {
        attempt: this.attempt,
        delayMs,
        code: event.code,
        reason: event.reason,
        wasOpen: opened,
      });
      this.timer = setTimeout(() => this.#open(), delayMs);
    });
  }

  /** Whether `id` was among the last RECENT_IDS message ids; remembers it if not. */
  #seenBefore(id) {
    if (typeof id !== "string") return false;
    if (this.recentIds.has(id)) return true;
    this.recentIds.add(id);
    // A Set iterates in insertion order: the first is the oldest.
    if (this.recentIds.size > RECENT_IDS) this.recentIds.delete(this.recentIds.values().next().value);
    return false;
  }

  #receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      // The backend's `push` may send any text; hand it over as it is.
      frame = { type: "push", data: String(text) };
    }
    if (frame === null || typeof frame !== "object") frame = { type: "push", data: String(text) };
    const deduplicated = frame.type === "message" || frame.type === "direct" || frame.type === "push";
    if (deduplicated && this.#seenBefore(frame.id)) {
      return;
    }
    if (frame.type === "joined" && typeof frame.room === "string") this.rooms.add(frame.room);
    if (frame.type === "left" && typeof frame.room === "string") this.rooms.delete(frame.room);
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
    const kind = {
      message: "message",
      direct: "direct",
      push: "push",
      connections: "connections",
      joined: "joined",
      left: "left",
      accepted: "accepted",
      error: "errorframe",
    }[frame.type];
    if (kind) {
      this.dispatchEvent(new CustomEvent(kind, { detail: frame }));
    } else if (typeof frame.message === "string") {
      this.dispatchEvent(new CustomEvent("gatewayerror", { detail: frame }));
    }
  }
}
