// The chat page: wires wsstack-client.js (the protocol) to the DOM. Nothing here speaks the
// protocol itself. User data is only ever put into the page as text, never as HTML.

import {
  WsstackClient,
  connectUrl,
  describeClose,
  roomProblem,
  usernameProblem,
} from "./wsstack-client.js";

/** Where `make dev` listens, for a page that is not served by wsstack-local. */
const FALLBACK_API_URL = "ws://127.0.0.1:3001/dev";

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"),
  connectForm: $("connect-form"),
  apiUrl: $("api-url"),
  username: $("username"),
  token: $("token"),
  connect: $("connect"),
  disconnect: $("disconnect"),
  problem: $("form-problem"),
  refresh: $("refresh"),
  people: $("people"),
  joinForm: $("join-form"),
  roomName: $("room-name"),
  join: $("join"),
  roomProblem: $("room-problem"),
  rooms: $("rooms"),
  log: $("log"),
  sendForm: $("send-form"),
  recipient: $("recipient"),
  text: $("text"),
  send: $("send"),
  jobForm: $("job-form"),
  jobSteps: $("job-steps"),
  submitJob: $("submit-job"),
  jobs: $("jobs"),
};

/** The forwarded action the example backend runs (wsstack.toml). */
const JOB_ACTION = "submitJob";
/** The requestIds of the jobs this page shows: prefix and the ids' alphabet. */
const JOB_PREFIX = "job-";

let client = null;
let me = { username: "", connectionId: null };
/** connectionId -> username, from the last complete listing. */
let people = new Map();
/** The listing being paged through, if any. */
let listing = null;

// The recipient select's values: "" is everyone, then one kind of recipient per prefix.
const ROOM = "room:";
const DIRECT = "to:";

// ------------------------------------------------------------------------------- rendering

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock(iso) {
  const at = iso ? new Date(iso) : new Date();
  return Number.isNaN(at.getTime()) ? "" : at.toLocaleTimeString();
}

/** Appends one entry to the conversation and keeps the newest in view. */
function addEntry(className, parts) {
  const item = el("li", className);
  for (const part of parts) item.append(part);
  ui.log.append(item);
  ui.log.scrollTop = ui.log.scrollHeight;
  return item;
}

function note(text) {
  addEntry("system", [el("span", "meta", clock()), text]);
}

function nameOf(connectionId) {
  return people.get(connectionId) ?? connectionId;
}

function setStatus(state, text) {
  ui.status.className = `status ${state}`;
  ui.status.textContent = text;
  const open = state === "open";
  ui.text.disabled = !open;
  ui.send.disabled = !open;
  ui.refresh.disabled = !open;
  ui.join.disabled = !open;
  ui.submitJob.disabled = !open;
  const idle = client === null;
  ui.connect.disabled = !idle;
  ui.disconnect.disabled = idle;
  for (const input of [ui.apiUrl, ui.username, ui.token]) input.disabled = !idle;
}

function renderPeople() {
  ui.people.replaceChildren();
  for (const [connectionId, username] of people) {
    const item = el("li");
    if (connectionId === me.connectionId) {
      item.append(el("span", "you", `${username} (you)`));
    } else {
      const pick = el("button", "", username);
      pick.type = "button";
      pick.title = `Send ${username} a direct message`;
      pick.append(el("span", "id", connectionId));
      pick.addEventListener("click", () => {
        ui.recipient.value = DIRECT + connectionId;
        ui.text.focus();
      });
      item.append(pick);
    }
    ui.people.append(item);
  }
  renderRecipients();
}

/** The rooms this connection is in (as the API confirmed them), each with a Leave button. */
function renderRooms() {
  ui.rooms.replaceChildren();
  for (const room of joinedRooms()) {
    const item = el("li");
    const pick = el("button", "room-name", `#${room}`);
    pick.type = "button";
    pick.title = `Send to room ${room}`;
    pick.addEventListener("click", () => {
      ui.recipient.value = ROOM + room;
      ui.text.focus();
    });
    const leave = el("button", "leave", "Leave");
    leave.type = "button";
    leave.title = `Leave room ${room}`;
    leave.addEventListener("click", () => leaveRoom(room));
    item.append(pick, leave);
    ui.rooms.append(item);
  }
  renderRecipients();
}

function joinedRooms() {
  return client ? [...client.rooms].sort() : [];
}

/** Everyone, then each room joined, then each person: whom a message can go to. */
function renderRecipients() {
  const chosen = ui.recipient.value;
  ui.recipient.replaceChildren(new Option("Everyone", ""));
  for (const room of joinedRooms()) ui.recipient.append(new Option(`#${room} (room)`, ROOM + room));
  for (const [connectionId, username] of people) {
    if (connectionId !== me.connectionId) {
      ui.recipient.append(new Option(`${username} (direct)`, DIRECT + connectionId));
    }
  }
  // A recipient who left, or a room left, is no longer offered; back to everyone then.
  const stillHere = [...ui.recipient.options].some((o) => o.value === chosen);
  ui.recipient.value = stillHere ? chosen : "";
}

// ------------------------------------------------------------------------ protocol events

function refreshPeople() {
  if (!client || client.state !== "open" || listing) return;
  listing = new Map();
  client.listConnections();
}

function onConnections({ items, next, you }) {
  me.connectionId = you;
  if (!listing) listing = new Map();
  for (const { connectionId, username } of items) listing.set(connectionId, username);
  if (next) {
    client.listConnections({ cursor: next });
    return;
  }
  people = listing;
  listing = null;
  renderPeople();
}

function onMessage({ from, data, sentAt, room }) {
  const classes = ["message"];
  if (from === me.username) classes.push("mine");
  const parts = [el("span", "meta", clock(sentAt))];
  if (typeof room === "string") {
    classes.push("in-room");
    parts.push(el("span", "room", `#${room}`));
  }
  parts.push(el("span", "from", from), data);
  addEntry(classes.join(" "), parts);
  refreshIfNew(from);
}

function onJoined({ room }) {
  note(`You are in room #${room}.`);
  renderRooms();
}

function onLeft({ room }) {
  note(`You left room #${room}.`);
  renderRooms();
}

/** Someone not in the list spoke: the list of people to message is out of date. */
function refreshIfNew(username) {
  if (![...people.values()].includes(username)) refreshPeople();
}

function onDirect({ from, data, sentAt }) {
  addEntry("direct", [
    el("span", "meta", `${clock(sentAt)} direct`),
    el("span", "from", `${from} → you`),
    data,
  ]);
  refreshIfNew(from);
}

// -------------------------------------------------------------------------------------- jobs

/** The list item of job `id`, made on first sight (a job another tab of this user submitted
 * shows up with its first update). */
function jobItem(id) {
  let item = ui.jobs.querySelector(`li[data-job="${CSS.escape(id)}"]`);
  if (!item) {
    item = el("li", "job");
    item.dataset.job = id;
    item.append(el("code", "", id), el("span", "job-state", ""));
    ui.jobs.prepend(item);
  }
  return item;
}

function showJob(id, state, text) {
  const item = jobItem(id);
  item.dataset.state = state;
  item.querySelector(".job-state").textContent = ` ${text}`;
}

/** A job's progress, pushed by the backend with `replyTo` its requestId. */
function onJobUpdate(id, update) {
  switch (update?.state) {
    case "started":
      return showJob(id, "started", `started: ${update.steps} steps`);
    case "running":
      return showJob(id, "running", `step ${update.step}`);
    case "done":
      return showJob(id, "done", `done: ${JSON.stringify(update.result)}`);
    case "rejected":
      return showJob(id, "rejected", `rejected: ${update.reason}`);
    default:
      return showJob(id, "unknown", JSON.stringify(update));
  }
}

function submitJob(event) {
  event.preventDefault();
  if (!client) return;
  const id = `${JOB_PREFIX}${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const steps = Number(ui.jobSteps.value);
  showJob(id, "submitted", "submitted");
  client.forward(JOB_ACTION, { steps }, { requestId: id });
}

function onAccepted({ action, requestId }) {
  if (action !== JOB_ACTION || !requestId?.startsWith(JOB_PREFIX)) return;
  // The backend's first pushes may overtake this answer (docs/protocol.md): only a job still
  // shown as submitted moves to accepted.
  if (jobItem(requestId).dataset.state === "submitted") {
    showJob(requestId, "accepted", "accepted, waiting for the backend");
  }
}

function onPush({ data, sentAt, replyTo }) {
  if (replyTo?.startsWith(JOB_PREFIX)) return onJobUpdate(replyTo, data);
  const text = typeof data === "string" ? data : JSON.stringify(data);
  const meta = replyTo ? `${clock(sentAt)} from the backend, re ${replyTo}` : `${clock(sentAt)} from the backend`;
  addEntry("push", [el("span", "meta", meta), text]);
}

function onErrorFrame({ code, message, requestId }) {
  if (requestId?.startsWith(JOB_PREFIX)) showJob(requestId, "refused", `refused: ${code}`);
  addEntry("error", [el("span", "meta", clock()), el("code", "", code), message]);
  if (code === "invalid_cursor" || code === "invalid_limit") {
    listing = null; // that listing will not go on
  } else if (code === "unknown_recipient") {
    // Someone in the list has left: ask again who is here.
    refreshPeople();
  }
}

function onGatewayError({ message, requestId }) {
  const detail = requestId ? ` (request ${requestId})` : "";
  addEntry("error", [el("span", "meta", clock()), el("code", "", "API Gateway"), `${message}${detail}`]);
}

function onState({ state, attempt, delayMs, code, reason, wasOpen }) {
  switch (state) {
    case "connecting":
      setStatus("connecting", attempt ? `Reconnecting… (attempt ${attempt})` : "Connecting…");
      break;
    case "open":
      setStatus("open", `Connected as ${me.username}`);
      note(`Connected to ${ui.apiUrl.value} as ${me.username}.`);
      listing = null;
      refreshPeople();
      break;
    case "reconnecting": {
      const seconds = (delayMs / 1000).toFixed(1);
      setStatus("reconnecting", `Reconnecting in ${seconds} s (attempt ${attempt})`);
      const why = wasOpen
        ? `Connection closed: ${describeClose(code, reason)}.`
        : "Could not connect: the API refused the handshake (username or token?) or cannot be reached.";
      note(`${why} Reconnecting in ${seconds} s (attempt ${attempt}).`);
      break;
    }
    case "closed":
      setStatus("closed", "Not connected");
      break;
  }
}

// --------------------------------------------------------------------------------- actions

function showProblem(text) {
  ui.problem.textContent = text ?? "";
  ui.problem.hidden = !text;
}

function connect(event) {
  event.preventDefault();
  const username = ui.username.value.trim() === "" ? "" : ui.username.value;
  const problem = username === "" ? null : usernameProblem(username);
  if (problem) return showProblem(problem);
  const token = ui.token.value.trim();
  try {
    connectUrl(ui.apiUrl.value, { username, token });
  } catch (e) {
    return showProblem(`API: ${e.message}`);
  }
  showProblem(null);
  me = { username: username || "anonymous", connectionId: null };
  if (username) localStorage.setItem("wsstack.username", username);
  client = new WsstackClient(ui.apiUrl.value, { username, token });
  client.addEventListener("state", (e) => onState(e.detail));
  client.addEventListener("message", (e) => onMessage(e.detail));
  client.addEventListener("direct", (e) => onDirect(e.detail));
  client.addEventListener("push", (e) => onPush(e.detail));
  client.addEventListener("connections", (e) => onConnections(e.detail));
  client.addEventListener("joined", (e) => onJoined(e.detail));
  client.addEventListener("left", (e) => onLeft(e.detail));
  client.addEventListener("errorframe", (e) => onErrorFrame(e.detail));
  client.addEventListener("gatewayerror", (e) => onGatewayError(e.detail));
  client.addEventListener("accepted", (e) => onAccepted(e.detail));
  client.connect();
}

function disconnect() {
  const closing = client;
  client = null;
  closing?.close();
  people = new Map();
  listing = null;
  renderPeople();
  renderRooms();
  note("Disconnected.");
}

function send(event) {
  event.preventDefault();
  const data = ui.text.value;
  if (data.trim() === "" || !client) return;
  const recipient = ui.recipient.value;
  try {
    if (recipient.startsWith(ROOM)) {
      client.send(data, { room: recipient.slice(ROOM.length) });
    } else if (recipient.startsWith(DIRECT)) {
      const to = recipient.slice(DIRECT.length);
      client.sendDirect(to, data);
      // The API sends a direct message only to its recipient: show the sender's copy here.
      addEntry("direct", [
        el("span", "meta", `${clock()} direct`),
        el("span", "from", `you → ${nameOf(to)}`),
        data,
      ]);
    } else {
      client.send(data);
    }
    ui.text.value = "";
  } catch (e) {
    note(`Not sent: ${e.message}`);
  }
}

function showRoomProblem(text) {
  ui.roomProblem.textContent = text ?? "";
  ui.roomProblem.hidden = !text;
}

/** Joins the room typed in, once its name passes the API's rules (checked here first). */
function joinRoom(event) {
  event.preventDefault();
  if (!client) return;
  const room = ui.roomName.value;
  const problem = roomProblem(room);
  if (problem) return showRoomProblem(problem);
  showRoomProblem(null);
  try {
    client.join(room);
    ui.roomName.value = "";
  } catch (e) {
    showRoomProblem(`Not joined: ${e.message}`);
  }
}

function leaveRoom(room) {
  try {
    client?.leave(room);
  } catch (e) {
    note(`Not left: ${e.message}`);
  }
}

// ------------------------------------------------------------------------------------ start

/** The API to offer: ?api=, else the gateway that served this page, else make dev's. */
async function defaultApiUrl(params) {
  if (params.get("api")) return params.get("api");
  try {
    const answer = await fetch("config.json", { cache: "no-cache" });
    if (answer.ok) {
      const { apiUrl } = await answer.json();
      if (typeof apiUrl === "string" && apiUrl) return apiUrl;
    }
  } catch {
    // Served from somewhere else (a file, a static host): fall back.
  }
  return FALLBACK_API_URL;
}

async function start() {
  const params = new URLSearchParams(location.search);
  ui.apiUrl.value = await defaultApiUrl(params);
  ui.username.value = params.get("username") ?? localStorage.getItem("wsstack.username") ?? "";
  ui.token.value = params.get("token") ?? "";
  ui.connectForm.addEventListener("submit", connect);
  ui.disconnect.addEventListener("click", disconnect);
  ui.sendForm.addEventListener("submit", send);
  ui.refresh.addEventListener("click", refreshPeople);
  ui.joinForm.addEventListener("submit", joinRoom);
  ui.jobForm.addEventListener("submit", submitJob);
  setStatus("closed", "Not connected");
  document.body.dataset.ready = "true";
  if (params.has("connect")) ui.connect.click();
}

start();
