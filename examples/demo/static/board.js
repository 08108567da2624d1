// The board's live side, in plain JavaScript: a websocket says which task
// changed and the page fetches it from the JSON API; the activity feed is an
// EventSource. Buttons move and delete tasks through the same API.
"use strict";
const board = document.getElementById("board");
const NEXT = { todo: "doing", doing: "done", done: "todo" };
const CSRF = document.querySelector('meta[name="csrf-token"]').content;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function api(method, path, body) {
  const opts = { method, headers: { "X-CSRFToken": CSRF } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  return fetch("/api" + path, opts).then(async (r) => {
    if (r.status === 401) location.href = "/login";
    if (!r.ok && r.status !== 404) throw new Error((await r.json()).error);
    return r.status === 204 || r.status === 404 ? null : r.json();
  });
}

function card(task) {
  const li = el("li", "task");
  li.dataset.id = task.id;
  li.append(el("span", "title", task.title),
            el("small", "", "#" + task.id + " · " + (task.assignee || "unassigned")));
  const actions = el("div", "actions");
  const move = el("button", "move", "→ " + NEXT[task.status]);
  move.onclick = () => api("PATCH", "/tasks/" + task.id, { status: NEXT[task.status] });
  const del = el("button", "delete", "✕");
  del.title = "delete";
  del.onclick = () => api("DELETE", "/tasks/" + task.id);
  actions.append(move, del);
  li.append(actions);
  return li;
}

function place(task, fresh) {
  const old = board.querySelector('.task[data-id="' + task.id + '"]');
  if (old) old.remove();
  if (!task.status) return recount();
  const li = card(task);
  if (fresh) li.classList.add("fresh");
  board.querySelector('.column[data-status="' + task.status + '"] ul').append(li);
  recount();
}

function recount() {
  for (const col of board.querySelectorAll(".column"))
    col.querySelector(".count").textContent = col.querySelectorAll(".task").length;
}

// Server-rendered cards get their buttons from the API's view of them.
api("GET", "/tasks").then((tasks) => tasks.forEach((t) => place(t, false)));

function connect() {
  const dot = document.getElementById("live");
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  ws.onopen = () => dot.classList.add("on");
  // One message at a time, so a task's fetch cannot land after its deletion.
  let queue = Promise.resolve();
  ws.onmessage = (m) => {
    const { event, id } = JSON.parse(m.data);
    queue = queue.then(() => event === "deleted" ? place({ id }, false)
      : api("GET", "/tasks/" + id).then((t) => place(t || { id }, true))).catch(() => {});
  };
  ws.onclose = () => { dot.classList.remove("on"); setTimeout(connect, 2000); };
}
connect();

const feed = document.getElementById("feed");
new EventSource("/events").onmessage = (m) => {
  const space = m.data.indexOf(" ");
  const at = new Date(Number(m.data.slice(0, space)) * 1000);
  const li = el("li");
  li.append(el("time", "", at.toLocaleTimeString()), m.data.slice(space + 1));
  feed.prepend(li);
};
