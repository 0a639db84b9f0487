// webhook-dispatcher web page: login, register an endpoint, actions, periodic refresh.
// Every state-changing request carries the X-Dispatcher-CSRF header; the session cookie is HttpOnly.
// The consumer portal is this page for one tenant (<body data-portal="TENANT">): every call then carries
// X-Dispatcher-Portal: TENANT, which makes the API use the portal's session, scoped to that tenant.
"use strict";

const CSRF_HEADER = "X-Dispatcher-CSRF";
const PORTAL_HEADER = "X-Dispatcher-Portal";

function portalTenant() {
  return document.body ? document.body.dataset.portal || "" : "";
}

function baseHeaders() {
  const headers = { [CSRF_HEADER]: "1" };
  if (portalTenant()) headers[PORTAL_HEADER] = portalTenant();
  return headers;
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { ...baseHeaders(), Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  let data = null;
  if (resp.status !== 204) {
    try { data = await resp.json(); } catch (e) { data = null; }
  }
  if (!resp.ok) {
    const message = data && data.error ? data.error.message : resp.status + " " + resp.statusText;
    const err = new Error(message);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function show(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

function sessionLost(err) {
  if (err && err.status === 401) { window.location.reload(); return true; }
  return false;
}

// -- login ----------------------------------------------------------------------------------------
function setupLogin(form) {
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    show(error, "");
    const input = document.getElementById("api-key");
    try {
      await api("POST", "/web/login", { api_key: input.value });
      input.value = "";
      window.location.reload();
    } catch (err) {
      show(error, err.message);
    }
  });
}

// -- page -----------------------------------------------------------------------------------------
let refreshing = false;

async function refreshEndpoints() {
  if (refreshing) return;
  refreshing = true;
  try {
    const resp = await fetch("/web/endpoints", { credentials: "same-origin", headers: baseHeaders() });
    if (resp.status === 401) { window.location.reload(); return; }
    if (resp.ok) document.getElementById("endpoints").innerHTML = await resp.text();
  } catch (e) {
    // keep the last rendering; the next tick retries
  } finally {
    refreshing = false;
  }
}

function minuteLabel(minute) {
  const d = new Date(minute * 60000);
  return d.toISOString().slice(11, 16);
}

async function refreshCounters() {
  let stats;
  try {
    stats = await api("GET", "/v1/stats");
  } catch (err) {
    if (!sessionLost(err)) show(document.getElementById("counters-note"), "Counters unavailable: " + err.message);
    return;
  }
  const now = stats.minutes[stats.minutes.length - 1] || { delivered: 0, retrying: 0, dead: 0 };
  document.getElementById("c-delivered").textContent = now.delivered;
  document.getElementById("c-failed").textContent = now.retrying + now.dead;
  document.getElementById("c-queue").textContent = stats.queue_depth;
  document.getElementById("c-retries").textContent = stats.pending_retries;
  document.getElementById("c-dead").textContent = stats.dead_letters;
  document.getElementById("c-workers").textContent = stats.workers.length;
  const peak = Math.max(1, ...stats.minutes.map((m) => Math.max(m.delivered, m.retrying + m.dead)));
  const chart = document.getElementById("minutes");
  chart.replaceChildren(...stats.minutes.map((m) => {
    const failed = m.retrying + m.dead;
    const label = minuteLabel(m.minute);
    const col = document.createElement("div");
    col.className = "minute";
    col.title = `${label} UTC: ${m.delivered} delivered, ${failed} failed attempts`;
    const bars = document.createElement("div");
    bars.className = "bars";
    for (const [cls, n] of [["bar ok", m.delivered], ["bar fail", failed]]) {
      const bar = document.createElement("span");
      bar.className = cls;
      bar.style.height = Math.round((100 * n) / peak) + "%";
      bars.appendChild(bar);
    }
    const nums = document.createElement("div");
    nums.className = "nums";
    nums.textContent = `${m.delivered} / ${failed}`;
    const when = document.createElement("div");
    when.className = "when";
    when.textContent = label;
    col.append(bars, nums, when);
    return col;
  }));
  const note = document.getElementById("counters-note");
  note.textContent = "Updated " + new Date(stats.time * 1000).toISOString().slice(11, 19) + " UTC, every few seconds.";
  note.hidden = false;
}

// A value as one shell word: left bare when it is plainly safe, else single-quoted.
function shellWord(value) {
  return /^[A-Za-z0-9_.,:\/+=@%-]+$/.test(value) ? value : "'" + value.replace(/'/g, "'\\''") + "'";
}

// The form's problems found before sending anything (the API checks the rest and says what is wrong).
function formProblem(kind, url) {
  if (kind === "poll") return "";
  if (!url) return "Enter the URL the events are POSTed to (http:// or https://), or choose the kind Poll for a consumer without a URL.";
  if (!/^https?:\/\//i.test(url)) return "The URL must start with http:// or https://";
  return "";
}

function showCreated(ep) {
  const poll = ep.kind === "poll";
  const robot = ep.kind !== "webhook" && !poll;
  document.getElementById("webhook-help").hidden = robot || poll;
  document.getElementById("secret-help").hidden = robot;
  document.getElementById("poll-help").hidden = !poll;
  document.getElementById("robot-help").hidden = !robot;
  document.getElementById("robot-kind").textContent = ep.kind;
  document.getElementById("robot-rate").textContent = ep.rate_limit_per_s ? +ep.rate_limit_per_s.toFixed(2) : "-";
  document.getElementById("secret-intro").innerHTML = poll
    ? "Its signing secret, <strong>shown only this once</strong> — the consumer verifies each event with it:"
    : "Its signing secret, <strong>shown only this once</strong> — copy it to the receiver now:";
  document.getElementById("created-id").textContent = ep.id;
  document.getElementById("secret").textContent = ep.secret;
  document.getElementById("snippet-secret").textContent = ep.secret;
  for (const id of ["pull-token", "listen-line", "poll-curl"]) document.getElementById(id).textContent = "";
  document.getElementById("created").hidden = false;
}

// A poll endpoint's pull token, derived by the server from the secret just shown (or why it could not be).
async function pullToken(ep) {
  try {
    return { token: (await api("POST", "/web/pull-token", { endpoint_id: ep.id, secret: ep.secret })).pull_token };
  } catch (err) {
    if (sessionLost(err)) throw err;
    return { problem: "(could not derive it here: " + err.message + ")" };
  }
}

function showPollHelp(ep, derived) {
  const origin = window.location.origin;
  document.getElementById("listen-line").textContent =
    `dispatcher listen ${shellWord(ep.id)} --url ${shellWord(origin)} --secret ${shellWord(ep.secret)} --from-start`;
  document.getElementById("pull-token").textContent = derived.token || derived.problem;
  if (!derived.token) return;
  const poll = `${origin}/v1/endpoints/${encodeURIComponent(ep.id)}/poll?cursor=start&wait=25`;
  document.getElementById("poll-curl").textContent =
    `curl -H ${shellWord("Authorization: Bearer " + derived.token)} ${shellWord(poll)}`;
}

function setupSubscribe(form) {
  const error = document.getElementById("subscribe-error");
  const kindSelect = document.getElementById("kind");
  const urlInput = document.getElementById("url");
  const onKind = () => {  // a poll endpoint has no URL and no robot options
    const poll = kindSelect.value === "poll";
    urlInput.disabled = poll;
    urlInput.placeholder = poll ? "none: consumers pull the events" : "https://example.com/hooks";
    document.getElementById("robot-options").hidden = poll;
    document.getElementById("poll-note").hidden = !poll;
  };
  kindSelect.addEventListener("change", onKind);
  onKind();
  // a registered event type's "Add" button appends it to the types ("*" alone is replaced)
  const typesInput = document.getElementById("event-types");
  for (const button of document.querySelectorAll("[data-add-type]")) {
    button.addEventListener("click", () => {
      const name = button.dataset.addType;
      const current = typesInput.value.split(",").map((t) => t.trim()).filter((t) => t && t !== "*");
      if (!current.includes(name)) current.push(name);
      typesInput.value = current.join(", ");
    });
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    show(error, "");
    const kind = kindSelect.value;
    const url = urlInput.value.trim();
    const problem = formProblem(kind, url);
    if (problem) { show(error, problem); urlInput.focus(); return; }
    const types = document.getElementById("event-types").value.split(",").map((t) => t.trim()).filter(Boolean);
    const body = { event_types: types.length ? types : ["*"] };
    if (kind !== "poll") body.url = url;
    if (kind) body.kind = kind;
    // a chat robot's template and secret (optional; never sent for a poll endpoint)
    for (const [id, field] of [["template", "template"], ["robot-secret", "robot_secret"]]) {
      const value = document.getElementById(id).value.trim();
      if (value && kind !== "poll") body[field] = value;
    }
    const button = document.getElementById("subscribe");
    button.disabled = true;
    try {
      const ep = await api("POST", "/v1/endpoints", body);
      const derived = ep.kind === "poll" ? await pullToken(ep) : null;
      showCreated(ep);
      if (derived) showPollHelp(ep, derived);
      document.getElementById("robot-secret").value = "";
      urlInput.value = "";
      await refreshEndpoints();
    } catch (err) {
      if (!sessionLost(err)) show(error, err.message);
    } finally {
      button.disabled = false;
    }
  });
  document.getElementById("created").addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-copy]");
    if (!button) return;
    const text = document.getElementById(button.dataset.copy).textContent;
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch (e) {
      button.textContent = "Select and copy";  // the clipboard needs https or localhost
    }
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
}

const ACTIONS = {
  test: async (id) => {
    const out = await api("POST", `/v1/endpoints/${encodeURIComponent(id)}/test`);
    return `Test event ${out.event_id} sent.`;
  },
  enable: async (id) => { await api("POST", `/v1/endpoints/${encodeURIComponent(id)}/enable`); return "Endpoint enabled."; },
  disable: async (id) => { await api("POST", `/v1/endpoints/${encodeURIComponent(id)}/disable`); return "Endpoint disabled."; },
  replay: async (id) => { await api("POST", `/v1/deliveries/${encodeURIComponent(id)}/replay`); return "Delivery queued again."; },
  "replay-all": async (id) => {
    const out = await api("POST", `/v1/endpoints/${encodeURIComponent(id)}/replay?state=dead`);
    return `${out.replayed} dead deliveries queued again.`;
  },
  rotate: async (id) => {
    if (!window.confirm("Rotate the signing secret? The old one keeps signing alongside the new one for a day.")) return "";
    const ep = await api("POST", `/v1/endpoints/${encodeURIComponent(id)}/rotate-secret`);
    return `New signing secret of ${ep.id}, shown only this once (the old one also signs for a day): ${ep.secret}`;
  },
  delete: async (id, button) => {
    if (!window.confirm(`Delete the endpoint ${button.dataset.url}? Its pending deliveries will go dead.`)) return "";
    await api("DELETE", `/v1/endpoints/${encodeURIComponent(id)}`);
    return "Endpoint deleted.";
  },
};

function setupActions() {
  const flash = document.getElementById("flash");
  document.getElementById("endpoints").addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (!button) return;
    const action = ACTIONS[button.dataset.action];
    if (!action) return;
    button.disabled = true;
    try {
      const message = await action(button.dataset.id, button);
      if (message) show(flash, message);
      flash.classList.remove("error");
      await refreshEndpoints();
    } catch (err) {
      if (!sessionLost(err)) { show(flash, err.message); flash.classList.add("error"); }
    } finally {
      button.disabled = false;
    }
  });
}

function setupLogout(button, path) {
  button.addEventListener("click", async () => {
    try { await api("POST", path); } finally { window.location.reload(); }
  });
}

// The operator's "Open portal" buttons: a single-use link for the tenant, opened in a new tab.
function setupTenants(section) {
  const error = document.getElementById("tenants-error");
  section.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-portal-tenant]");
    if (!button) return;
    show(error, "");
    button.disabled = true;
    try {
      const link = await api("POST", `/v1/tenants/${encodeURIComponent(button.dataset.portalTenant)}/portal-link`);
      window.open(link.url, "_blank", "noopener");
    } catch (err) {
      if (!sessionLost(err)) show(error, err.message);
    } finally {
      button.disabled = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  // A portal link's page: open the portal at once (a preview that fetches the link runs no script).
  const portalOpen = document.getElementById("portal-open");
  if (portalOpen) { portalOpen.requestSubmit(); return; }
  const login = document.getElementById("login-form");
  if (login) { setupLogin(login); return; }
  const subscribe = document.getElementById("subscribe-form");
  if (!subscribe) return;
  setupSubscribe(subscribe);
  setupActions();
  const logout = document.getElementById("logout");
  if (logout) setupLogout(logout, "/web/logout");
  const portalLogout = document.getElementById("portal-logout");
  if (portalLogout) setupLogout(portalLogout, "/portal/logout");
  const tenants = document.getElementById("tenants");
  if (tenants) setupTenants(tenants);
  const counters = document.getElementById("counters") !== null;  // the operator's only
  const every = parseInt(document.body.dataset.refreshMs || "3000", 10);
  if (counters) refreshCounters();
  setInterval(() => { refreshEndpoints(); if (counters) refreshCounters(); }, every);
});
