// The web UI's only script: signs in from a link's fragment, follows a
// task's stdout by offset, and sends the buttons' calls. No framework.
"use strict";

const UI = () => document.body.dataset.ui;
// Bytes asked per call; at most KEEP bytes stay on the page (the oldest go).
const CHUNK = 256 * 1024, KEEP = 2 * 1024 * 1024, POLL_MS = 500;
const ACTIVE = new Set(["PENDING", "RUNNING"]);

function notice(text) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.hidden = !text;
}

async function api(name, params, method) {
  const url = new URL(`${UI()}/api/${name}`, location.href);
  const init = {method: method || "GET", headers: {}, credentials: "same-origin"};
  if (init.method === "GET") {
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  } else {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(params);
  }
  const answer = await fetch(url, init);
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new Error((body.error && body.error.message) || `HTTP ${answer.status}`);
  return body;
}

// The link `swarming local up` prints carries an ID token in its fragment,
// which no server sees: post it once, as Google Sign-In would.
function signInFromFragment() {
  const form = document.getElementById("signin");
  const token = location.hash.slice(1);
  if (!form || !token) return;
  history.replaceState(null, "", location.pathname + location.search);
  form.elements.credential.value = decodeURIComponent(token);
  form.submit();
}

// ANSI SGR colours to spans, whose text is only ever set as text.
const ESCAPE = /\x1b\[([0-9;?]*)([A-Za-z])/g;
class Ansi {
  constructor() { this.classes = []; this.pending = ""; }
  apply(codes) {
    for (const code of (codes || "0").split(";").map(Number)) {
      if (code === 0) this.classes = [];
      else if (code === 1) this.classes.push("ansi-bold");
      else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97)) {
        this.classes = this.classes.filter((c) => !c.startsWith("ansi-fg")).concat(`ansi-fg${code}`);
      } else if (code === 39) this.classes = this.classes.filter((c) => !c.startsWith("ansi-fg"));
    }
  }
  render(text, into) {
    text = this.pending + text;
    const cut = text.lastIndexOf("\x1b");
    this.pending = cut >= 0 && !/[A-Za-z]/.test(text.slice(cut + 2)) ? text.slice(cut) : "";
    if (this.pending) text = text.slice(0, cut);
    let last = 0;
    const add = (part) => {
      if (!part) return;
      const span = document.createElement("span");
      if (this.classes.length) span.className = this.classes.join(" ");
      span.textContent = part;
      into.appendChild(span);
    };
    for (const match of text.matchAll(ESCAPE)) {
      add(text.slice(last, match.index));
      if (match[2] === "m") this.apply(match[1]);
      last = match.index + match[0].length;
    }
    add(text.slice(last));
  }
}

function decode(b64) {
  const raw = atob(b64);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

// Follows the task's stdout from its last KEEP bytes (earlier ones on demand),
// asking only for what it has not seen.
async function followStdout(pre) {
  const taskId = pre.dataset.taskId, status = document.getElementById("stdout-status");
  const earlier = document.getElementById("stdout-earlier");
  let start = Math.max(0, Number(pre.dataset.length) - KEEP), offset = start, shown = 0, state = pre.dataset.state;
  const ansi = new Ansi(), text = new TextDecoder("utf-8");
  const showEarlier = () => { earlier.hidden = start === 0; };
  earlier.addEventListener("click", async () => {
    const from = Math.max(0, start - CHUNK);
    const answer = await api("task_stdout", {task_id: taskId, offset: from, length: start - from});
    const holder = document.createElement("span");
    new Ansi().render(new TextDecoder("utf-8").decode(decode(answer.output)), holder);
    pre.insertBefore(holder, pre.firstChild);
    start = from;
    showEarlier();
  });
  showEarlier();
  for (;;) {
    let answer;
    try {
      answer = await api("task_stdout", {task_id: taskId, offset, length: CHUNK});
    } catch (e) {
      status.textContent = `output unavailable: ${e.message}; retrying`;
      await new Promise((r) => setTimeout(r, 5 * POLL_MS));
      continue;
    }
    const bytes = decode(answer.output);
    if (bytes.length) {
      const follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      ansi.render(text.decode(bytes, {stream: true}), pre);
      offset = answer.next_offset;
      shown += bytes.length;
      while (shown > KEEP && pre.firstChild) {  // Bounded, whatever the log's size.
        shown -= pre.firstChild.textContent.length;
        pre.removeChild(pre.firstChild);
        start = offset - shown;
        showEarlier();
      }
      if (follow) pre.scrollTop = pre.scrollHeight;
    }
    status.textContent = `${offset} bytes · ${answer.state}`;
    // The result changed (a bot took the task; it ended and its output is all
    // here): show it, with the buttons its new state allows.
    if (state === "PENDING" && answer.state !== state) return location.reload();
    if (!ACTIVE.has(answer.state) && !bytes.length && !answer.gap) {
      if (answer.state !== state) location.reload();
      return;
    }
    if (bytes.length < CHUNK) await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function press(button) {
  const name = button.dataset.api, data = button.dataset;
  const params = data.taskId ? {task_id: data.taskId} : {bot_id: data.botId};
  if (name === "task_cancel") params.kill_running = data.kill === "true";
  button.disabled = true;
  try {
    const answer = await api(name, params, "POST");
    if (name === "retry") location.assign(`${UI()}/task/${encodeURIComponent(answer.task_id)}`);
    else if (name === "bot_delete") location.assign(`${UI()}/bots`);
    else location.reload();
  } catch (e) {
    notice(`${button.textContent.trim()} failed: ${e.message}`);
    button.disabled = false;
  }
}

// The bots page's dimension filter: the values the pool's bots report, on demand.
async function loadDimensions(button) {
  const select = document.getElementById("dimensions");
  const chosen = new Set([...select.selectedOptions].map((option) => option.value));
  button.disabled = true;
  try {
    const answer = await api("bots_dimensions", {pool: button.dataset.pool});
    select.replaceChildren();
    for (const pair of answer.bots_dimensions.filter((p) => p.key !== "pool")) {
      const group = document.createElement("optgroup");
      group.label = pair.key;
      for (const value of pair.value) {
        const flag = `${pair.key}:${value}`;
        group.appendChild(new Option(flag, flag, false, chosen.has(flag)));
      }
      select.appendChild(group);
    }
    button.hidden = true;
    select.focus();
  } catch (e) {
    notice(`Loading the dimension values failed: ${e.message}`);
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const load = document.getElementById("load-dimensions");
  if (load) load.addEventListener("click", () => loadDimensions(load));
  signInFromFragment();
  for (const button of document.querySelectorAll("button[data-api]")) {
    button.addEventListener("click", () => press(button));
  }
  const pre = document.getElementById("stdout");
  if (pre) followStdout(pre);
});
