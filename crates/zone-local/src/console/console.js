// The local zone console. Plain JavaScript, no framework, nothing fetched but the zone's own /local/*.
"use strict";

const $ = (id) => document.getElementById(id);
const calls = new Map(); // id -> interaction
const open = new Set(); // ids of expanded entries
let seq = 0;
let world = null;
let abilities = [];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  try { return JSON.parse(text); } catch (_) { return { errcode: res.status, errmsg: text }; }
}

function show(id, value) {
  $(id).textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function fmtTime(unix) {
  return new Date(unix * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function ms(v) { return v === null || v === undefined ? "" : `${v.toFixed(1)} ms`; }

// ---- the world and the forms that use it ----

async function loadWorld() {
  world = await api("GET", "/local/world");
  $("corp").textContent = world.corp_id;
  $("program").textContent = world.program_id;
  const sender = $("msg-sender");
  sender.replaceChildren(
    ...world.staff.map((s) => el("option", { value: s.userid }, `${s.name} (${s.userid})`)),
    ...world.customers.map((c) => el("option", { value: c.external_userid }, `${c.name} (customer)`)),
  );
  const chat = $("msg-chat");
  chat.replaceChildren(...world.chats.map((c) => el("option", { value: c.chatid }, `${c.name} (${c.chatid})`)));
  chat.addEventListener("change", pickMember);
  pickMember();
  renderWorld();
  fillEvents();
}

// The sender must be a member of the chat: preselect its first member.
function pickMember() {
  const c = world.chats.find((x) => x.chatid === $("msg-chat").value);
  if (c && c.members.length) $("msg-sender").value = c.members[0].id;
}

function renderWorld() {
  const list = (title, items) =>
    el("details", {}, el("summary", {}, `${title} (${items.length})`), el("ul", {}, ...items.map((i) => el("li", {}, i))));
  $("world").replaceChildren(
    list("Staff", world.staff.map((s) => `${s.userid} ${s.name}${s.in_scope ? "" : " (out of scope)"}`)),
    list("Customers", world.customers.map((c) => `${c.external_userid} ${c.name} ← ${c.follower}`)),
    list("Chats", world.chats.map((c) => `${c.chatid} ${c.name} · ${c.members.length} members`)),
    list("Keyword rules", world.rules.map(String)),
    list("Knowledge sets", world.knowledge_bases.map((k) => `${k.knowledge_base_id} ${k.name} · docs ${k.doc_ids.join(", ")}`)),
    list("Tag groups", world.tag_groups.map((g) => `${g.group_id} ${g.name}`)),
    list("Export jobs", world.export_jobids.map(String)),
  );
}

function eventTemplates() {
  const staff = world.staff[0] || {};
  const cust = world.customers[0] || {};
  const chat = world.chats[0] || {};
  const kb = world.knowledge_bases[0] || { knowledge_base_id: "kb1", doc_ids: [1] };
  return {
    conversation_new_message: {},
    hit_keyword: {},
    chat_archive_audit_approved_single: { userid: staff.userid, external_userid: cust.external_userid },
    chat_archive_audit_approved_room: { external_userid: cust.external_userid, chatid: chat.chatid },
    auth_knowledge_base: { knowledge_base_id: "kbnew1", knowledge_base_name: "New set" },
    unauth_knowledge_base: { knowledge_base_id: kb.knowledge_base_id },
    delete_knowledge_base: { knowledge_base_id: kb.knowledge_base_id },
    knowledge_base_learn_done: { knowledge_base_id: kb.knowledge_base_id, doc_id: kb.doc_ids[0], learn_status: 1 },
    chat_archive_export_finished: { jobid: world.export_jobids[0] || "" },
  };
}

function fillEvents() {
  const t = eventTemplates();
  const sel = $("ev-type");
  sel.replaceChildren(...Object.keys(t).map((k) => el("option", { value: k }, k)));
  const fill = () => { $("ev-body").value = JSON.stringify(t[sel.value], null, 1); };
  sel.addEventListener("change", fill);
  fill();
}

async function loadAbilities() {
  const r = await api("POST", "/local/call", { ability_id: "list_abilities", request_data: "{}" });
  let out = {};
  try { out = JSON.parse(r.response_data || "{}"); } catch (_) { /* shown below */ }
  abilities = out.abilities || (out.output && out.output.abilities) || [];
  const sel = $("ab-id");
  if (!abilities.length) {
    show("ab-output", r);
    return;
  }
  sel.replaceChildren(...abilities.map((a) => el("option", { value: a.ability_id }, a.ability_id)));
  const fill = () => {
    const a = abilities.find((x) => x.ability_id === sel.value);
    if (!a) return;
    let input = a.input_protocol;
    try { input = JSON.stringify(JSON.parse(a.input_protocol), null, 1); } catch (_) { /* as given */ }
    $("ab-input").value = input;
    $("ab-async").checked = !!a.async_recommended;
    $("ab-input").title = a.description;
  };
  sel.addEventListener("change", fill);
  fill();
}

// ---- acts ----

$("msg-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  show("msg-result", "sending…");
  const r = await api("POST", "/local/messages", {
    sender: $("msg-sender").value, chatid: $("msg-chat").value, content: $("msg-content").value,
  });
  show("msg-result", r);
  poll();
});

$("ev-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  let fields;
  try { fields = JSON.parse($("ev-body").value || "{}"); } catch (e) { show("ev-result", `not JSON: ${e.message}`); return; }
  show("ev-result", "raising…");
  show("ev-result", await api("POST", "/local/events", { event_type: $("ev-type").value, ...fields }));
  poll();
});

async function callAbility(ability_id, request_data, isAsync, notify_id) {
  const body = { ability_id, request_data, async: isAsync };
  if (notify_id) body.notify_id = notify_id;
  return api("POST", "/local/call", body);
}

$("ab-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  show("ab-output", "calling…");
  const r = await callAbility($("ab-id").value, $("ab-input").value, $("ab-async").checked);
  if (r.response_data !== undefined) {
    let out = r.response_data;
    try { out = JSON.stringify(JSON.parse(out), null, 2); } catch (_) { /* text */ }
    show("ab-output", out);
  } else {
    show("ab-output", r);
  }
  poll();
});

$("clock-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  await api("POST", "/local/clock/advance", { secs: Number($("clock-secs").value) });
  pollState();
});

$("fault-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const kind = $("fault-kind").value;
  const body = { api: $("fault-api").value, count: Number($("fault-count").value) };
  body[kind] = kind === "drop" || kind === "lose_reply" ? true : Number($("fault-value").value);
  const r = await api("POST", "/local/faults", body);
  if (r.errcode) show("faults", r);
  pollState();
});

$("fault-clear").addEventListener("click", async () => {
  await api("DELETE", "/local/faults");
  pollState();
});

// ---- the live timeline ----

function stepLine(s) {
  switch (s.kind) {
    case "sdk":
      return el("li", { class: `step step-sdk${s.errcode ? " bad" : ""}` },
        `SDK ${s.api} → errcode ${s.errcode} · ${ms(s.latency_ms)}${s.fault ? ` · fault ${s.fault}` : ""}`);
    case "notify": {
      const state = s.delivered === null ? "no app callback URL set" : s.delivered ? "delivered" : "NOT delivered";
      const fetchBtn = el("button", {
        type: "button",
        onclick: async () => {
          const r = await callAbility("get_callback_data", "{}", false, s.notify_id);
          show("ab-output", r.response_data !== undefined ? r.response_data : r);
          poll();
        },
      }, "get_callback_data");
      return el("li", { class: "step step-notify" },
        `program_notify ${s.notify_id}${s.scene === null ? "" : ` scene ${s.scene}`} → ${state} `, fetchBtn);
    }
    case "report":
      return el("li", { class: "step step-report" }, `job reported → errcode ${s.errcode}`);
    case "fetched":
      return el("li", { class: "step step-fetched" }, `get_callback_data (#${s.by}) fetched ${s.notify_id}`);
    default:
      return el("li", {}, JSON.stringify(s));
  }
}

function renderCall(c) {
  const failed = c.program === "failed";
  const err = (c.errcode && c.errcode !== 0) || (c.app_errcode && c.app_errcode !== 0);
  const cls = failed ? "failed" : c.program === "pending" ? "pending" : err ? "err" : "ok";
  const what = c.call_type === 2 ? `event ${c.title}` : `${c.title} ${c.ability_id}`;
  const outcome = failed ? `failed: ${c.error}` : c.program === "pending" ? "in flight" :
    `errcode ${c.errcode === null ? "?" : c.errcode} · ${ms(c.latency_ms)}`;
  const summary = el("summary", {},
    el("span", { class: "tag" }, `#${c.id}`),
    el("span", { class: "tag" }, c.origin),
    c.call_type === 2 ? null : el("span", { class: "tag" }, c.is_async ? "async" : "sync"),
    `${what} → program ${outcome}`,
    c.app_errcode !== null && c.app_errcode !== undefined ? ` → app errcode ${c.app_errcode}` : "",
    c.steps.length ? ` · ${c.steps.length} step${c.steps.length > 1 ? "s" : ""}` : "",
  );
  const details = el("details", { "data-id": String(c.id) }, summary,
    el("ul", { class: "steps" }, ...c.steps.map(stepLine)),
    c.steps_dropped ? el("p", { class: "muted" }, `${c.steps_dropped} more steps not kept`) : null,
    el("p", { class: "muted" }, `zone time ${fmtTime(c.zone_time)}${c.jobid ? ` · jobid ${c.jobid}` : ""}${c.notify_id ? ` · notify_id ${c.notify_id}` : ""}`),
    el("div", {}, "request", el("pre", {}, c.request || "(empty)")),
    c.output !== null ? el("div", {}, "program output", el("pre", {}, c.output)) : null,
  );
  if (open.has(c.id)) details.open = true;
  details.addEventListener("toggle", () => (details.open ? open.add(c.id) : open.delete(c.id)));
  return el("div", { class: `call ${cls}`, id: `call-${c.id}` }, details);
}

function renderTimeline() {
  const list = [...calls.values()].sort((a, b) => b.id - a.id).slice(0, 200);
  if (!list.length) return;
  $("timeline").replaceChildren(...list.map(renderCall));
}

async function poll() {
  try {
    const r = await api("GET", `/local/calls?since=${seq}`);
    for (const c of r.calls) calls.set(c.id, c);
    if (r.calls.length) {
      // Keep the page bounded like the zone's buffer.
      const ids = [...calls.keys()].sort((a, b) => a - b);
      for (const id of ids.slice(0, Math.max(0, ids.length - 500))) calls.delete(id);
      renderTimeline();
    }
    seq = r.seq;
    $("conn").textContent = "live";
  } catch (e) {
    $("conn").textContent = `zone unreachable (${e.message})`;
  }
}

async function pollState() {
  try {
    const s = await api("GET", "/local/state");
    $("clock").textContent = fmtTime(s.now);
    $("app-callback").textContent = s.app_callback_url || "none (notifications kept in the outbox only)";
    $("keys").textContent = `registered public_key_ver: ${s.public_key_versions.join(", ")} (current ${s.public_key_versions.at(-1)})`;
    $("jobs").tBodies[0].replaceChildren(...s.jobs.map((j) =>
      el("tr", {}, el("td", {}, j.jobid), el("td", {}, `${j.ability_id} (${j.kind})`), el("td", {}, j.state))));
    const pending = Object.entries(s.faults);
    show("faults", pending.length ? pending.map(([api, n]) => `${api}: ${n} pending`).join("\n") : "no fault armed");
  } catch (_) { /* shown by poll */ }
}

async function start() {
  await loadWorld();
  await Promise.all([poll(), pollState(), loadAbilities()]);
  setInterval(poll, 700);
  setInterval(pollState, 1500);
  document.body.dataset.ready = "1";
}

start();
