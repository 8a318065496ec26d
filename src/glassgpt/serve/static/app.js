// glassgpt playground: plain JavaScript over the server's own endpoints (/look/*, /v1/*).
// Every number shown comes from the server (the same functions as `glassgpt look --json`); this
// file only draws. No network beyond this server, no libraries.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const state = {
  health: null, facts: null,
  text: "", ids: null,          // ids: set after clicking a token (exact token path), else null (read the text)
  table: null, pipeline: null, attention: null, layer: 0, head: 0,
  tab: "next", generating: null, chat: [],
};

// ---------------------------------------------------------------- helpers

function show(token) {  // a token made visible: spaces, newlines and tabs drawn
  return token.replace(/ /g, "\u00b7").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
}
function pct(p) { return p >= 0.995 ? (p * 100).toFixed(0) + "%" : p >= 0.0995 ? (p * 100).toFixed(1) + "%" : (p * 100).toFixed(2) + "%"; }
function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.setAttribute("class", v);
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}
function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}
function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { box.hidden = true; }, 6000);
}
async function api(path, body) {
  const r = await fetch(path, body === undefined ? { headers: headers() }
    : { method: "POST", headers: headers(), body: JSON.stringify(body) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error ? data.error.message : `${r.status} ${r.statusText}`);
  return data;
}
// Server-sent events of a streaming /v1 request: calls onData(json) per event until [DONE].
async function stream(path, body, onData, signal) {
  const r = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify({ ...body, stream: true }), signal });
  if (!r.ok) {
    const data = await r.json().catch(() => ({}));
    throw new Error(data.error ? data.error.message : `${r.status} ${r.statusText}`);
  }
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 2);
      if (!line.startsWith("data:")) continue;
      const payload = line.slice(5).trim();
      if (payload === "[DONE]") return;
      const data = JSON.parse(payload);
      if (data.error) throw new Error(data.error.message);
      onData(data);
    }
  }
}
function debounce(fn, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}
function settings() {
  return { temperature: +$("temperature").value, top_k: +$("topk").value, top_p: +$("topp").value };
}

// ---------------------------------------------------------------- the model and the server

async function loadFacts() {
  const h = await (await fetch("/health")).json();
  state.health = h;
  $("key-box").hidden = !h.auth;
  if (h.auth && !$("api-key").value) $("api-key").value = localStorage.getItem("glassgpt-key") || "";
  try {
    state.facts = await api("/look/model");
  } catch (err) {
    $("model-badge").textContent = h.model + (h.auth ? " · enter the API key" : "");
    throw err;
  }
  const m = state.facts.model;
  $("model-badge").textContent = `${state.facts.id} · ${(m.parameters / 1e6).toFixed(2)}M parameters · ${m.n_layer} layers · ${state.facts.stage}`;
  renderFacts();
  renderChatMode();
}
async function pollHealth() {
  try {
    const h = await (await fetch("/health")).json();
    $("status").className = "status " + (h.running || h.queued ? "busy" : "ok");
    $("status").title = `model ${h.model}: ${h.running ? "generating" : "idle"}, ${h.queued} waiting`;
  } catch (err) {
    $("status").className = "status down";
    $("status").title = "the server does not answer";
  }
}

// ---------------------------------------------------------------- next token

async function refreshNext() {
  const s = settings();
  const body = { top: 12, temperatures: [s.temperature], top_k: s.top_k, top_p: s.top_p };
  if (state.ids) body.ids = state.ids; else body.text = state.text;
  const answer = await api("/look/next", body);
  state.table = answer.data;
  renderBars();
}
function renderBars() {
  const t = state.table;
  if (!t) return;
  const bars = t.temperatures[0];
  const box = $("bars");
  box.replaceChildren();
  // One scale for every setting: the model's own top probability fills 80% of the track, so a
  // lower temperature visibly sharpens (bars grow, up to full) and a higher one flattens them.
  const scale = Math.max(...t.rows.map((r) => r.probability)) * 1.25;
  const width = (p) => Math.min(100, (p / scale) * 100).toFixed(3) + "%";
  t.rows.forEach((row, i) => {
    const p = bars.probabilities[i];
    const fill = el("div", { class: "fill", style: `width:${width(p)}` });
    const ghost = el("div", { class: "ghost", style: `left:calc(${width(row.probability)} - 1px)` });
    const line = el("div", {
      class: "bar-row", "data-token-id": row.id, "data-prob": p.toFixed(6), title: `id ${row.id}: model's own probability ${pct(row.probability)}`,
      onclick: () => appendToken(row.id),
    }, el("span", { class: "rank", text: row.rank }), el("span", { class: "label", text: show(row.token) }),
    el("div", { class: "track" }, fill, ghost), el("span", { class: "pct", text: pct(p) }));
    box.append(line);
  });
  const rest = bars.rest;
  $("next-facts").textContent = `${t.ids.length} tokens in · uncertainty (entropy) ${t.entropy_bits.toFixed(2)} bits over ${t.vocab_size.toLocaleString()} tokens · all other tokens together: ${pct(rest)} at these settings`;
}
async function appendToken(id) {
  if (!state.table) return;
  state.ids = [...state.table.ids, id];
  await refreshNext();
  state.text = state.table.text;
  $("prompt").value = state.text;
  await refreshTokens();
}
function sampledPrompt() { return state.ids ? state.ids : state.text; }
async function step() {
  const s = settings();
  const answer = await api("/v1/completions", { model: state.health.model, prompt: sampledPrompt(), max_tokens: 1, ...s });
  await appendText(answer.choices[0].text);
}
async function appendText(piece) {
  state.text = $("prompt").value + piece;
  state.ids = null;
  $("prompt").value = state.text;
  await refreshAll();
}
async function generate() {
  const controller = new AbortController();
  state.generating = controller;
  $("generate").disabled = $("step").disabled = true;
  $("stop").hidden = false;
  let text = $("prompt").value;
  try {
    await stream("/v1/completions", { model: state.health.model, prompt: sampledPrompt(), max_tokens: 48, ...settings() },
      (chunk) => {
        for (const c of chunk.choices) { text += c.text; $("prompt").value = text; }
      }, controller.signal);
  } catch (err) {
    if (err.name !== "AbortError") showError(err.message);
  } finally {
    state.generating = null;
    $("generate").disabled = $("step").disabled = false;
    $("stop").hidden = true;
    state.text = text;
    state.ids = null;
    await refreshAll();
  }
}

// ---------------------------------------------------------------- tokens (from the pipeline view)

async function refreshTokens() {
  const answer = await api("/look/pipeline", { text: state.text, top: 8 });
  state.pipeline = answer.data;
  const box = $("tokens");
  box.replaceChildren(...state.pipeline.tokens.map((t, i) => el("span", {
    class: "tok" + (i === 0 ? " special" : ""), title: `position ${i}, id ${state.pipeline.ids[i]}`, text: show(t),
  })));
  if (state.tab === "pipeline") renderPipeline();
}

// ---------------------------------------------------------------- attention

async function refreshAttention() {
  const answer = await api("/look/attention", { text: state.text });
  state.attention = answer.data;
  const [L, H] = [state.facts.model.n_layer, state.facts.model.n_head];
  state.layer = Math.min(state.layer, L - 1);
  state.head = Math.min(state.head, H - 1);
  renderAttention();
}
function segButtons(box, count, current, label, pick) {
  box.replaceChildren(...Array.from({ length: count }, (_, i) => el("button", {
    class: i === current ? "on" : "", "data-index": i, text: `${label}${i}`, onclick: () => pick(i),
  })));
}
function heatColor(w) {  // white -> indigo
  const a = Math.pow(w, 0.6);
  const r = Math.round(255 - a * (255 - 59)), g = Math.round(255 - a * (255 - 47)), b = Math.round(255 - a * (255 - 158));
  return `rgb(${r},${g},${b})`;
}
function renderAttention() {
  const a = state.attention;
  if (!a) return;
  const [L, H] = [state.facts.model.n_layer, state.facts.model.n_head];
  segButtons($("layers"), L, state.layer, "L", (i) => { state.layer = i; renderAttention(); });
  segButtons($("heads"), H, state.head, "H", (i) => { state.head = i; renderAttention(); });
  // one thumbnail per head of this layer
  const thumbs = $("thumbs");
  thumbs.replaceChildren();
  const T = a.tokens.length;
  for (let h = 0; h < H; h++) {
    const canvas = el("canvas", { width: T, height: T, class: h === state.head ? "on" : "", title: `layer ${state.layer} head ${h}` });
    const ctx = canvas.getContext("2d");
    const m = a.weights[state.layer][h];
    for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) { ctx.fillStyle = heatColor(m[i][j] || 0); ctx.fillRect(j, i, 1, 1); }
    canvas.addEventListener("click", () => { state.head = h; renderAttention(); });
    thumbs.append(canvas);
  }
  // the chosen head as a labelled heatmap, one rect per (row, column)
  const m = a.weights[state.layer][state.head];
  const cell = Math.max(10, Math.min(30, Math.floor(640 / T)));
  const labelW = 110, top = 90;
  const svg = el("svg:svg", { width: labelW + T * cell + 10, height: top + T * cell + 10, "data-tokens": T });
  const tip = $("tip");
  a.tokens.forEach((t, i) => {
    svg.append(el("svg:text", { x: labelW - 6, y: top + i * cell + cell * 0.7, "text-anchor": "end", text: show(t).slice(0, 12) }));
    svg.append(el("svg:text", { transform: `translate(${labelW + i * cell + cell * 0.65},${top - 6}) rotate(-60)`, text: show(t).slice(0, 12) }));
  });
  for (let i = 0; i < T; i++) {
    for (let j = 0; j < T; j++) {
      const w = m[i][j] || 0;
      const rect = el("svg:rect", { class: "cell", x: labelW + j * cell, y: top + i * cell, width: cell - 1, height: cell - 1,
        fill: j > i ? "#f6f6fa" : heatColor(w), "data-weight": w.toFixed(6), "data-row": i, "data-col": j });
      rect.addEventListener("mousemove", (e) => {
        tip.hidden = false;
        tip.style.left = e.clientX + 14 + "px";
        tip.style.top = e.clientY + 12 + "px";
        tip.textContent = j > i ? `${show(a.tokens[i])} cannot read the future` : `${show(a.tokens[i])} \u2192 ${show(a.tokens[j])}: ${w.toFixed(3)}`;
      });
      rect.addEventListener("mouseleave", () => { tip.hidden = true; });
      svg.append(rect);
    }
  }
  $("heatmap").replaceChildren(svg);
}

// ---------------------------------------------------------------- meaning space

function scatter(box, points, labels, { path = false } = {}) {
  const W = 520, Hh = 400, pad = 36;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (x) => pad + ((x - x0) / ((x1 - x0) || 1)) * (W - 2 * pad);
  const sy = (y) => Hh - pad - ((y - y0) / ((y1 - y0) || 1)) * (Hh - 2 * pad);
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${Hh}` });
  if (path && points.length > 1) {
    const d = points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    svg.append(el("svg:path", { d, fill: "none", stroke: "#17a2b8", "stroke-width": 1.6, "stroke-opacity": 0.7 }));
  }
  points.forEach((p, i) => {
    const c = path ? `hsl(${250 - (i / Math.max(1, points.length - 1)) * 70},65%,50%)` : "#5b4bdb";
    svg.append(el("svg:circle", { class: "point", cx: sx(p[0]), cy: sy(p[1]), r: 4.5, fill: c }));
    svg.append(el("svg:text", { x: sx(p[0]) + 7, y: sy(p[1]) - 6, text: labels[i] }));
  });
  box.replaceChildren(svg);
}
async function refreshMap() {
  const words = $("words").value.split(/[,\s]+/).filter(Boolean);
  const answer = await api("/look/embeddings", words.length ? { map: words } : {});
  const map = answer.data.word_map;
  if (!words.length) $("words").value = map.words.map((w) => w.word).join(", ");
  scatter($("word-map"), map.points, map.words.map((w) => w.word));
}
async function refreshTrajectory() {
  const answer = await api("/look/trajectory", { text: state.text });
  scatter($("trajectory"), answer.data.points, answer.data.tokens.map(show), { path: true });
}

// ---------------------------------------------------------------- pipeline

function miniBar(label, value, max, text) {
  return el("div", { class: "mini" }, el("span", { text: label }),
    el("div", { class: "track" }, el("div", { class: "fill", style: `width:${Math.min(100, (value / (max || 1)) * 100)}%` })),
    el("span", { class: "num", text }));
}
function renderPipeline() {
  const p = state.pipeline;
  if (!p) return;
  const box = $("pipeline");
  const stage = (title, ...body) => el("div", { class: "stage" }, el("h4", { text: title }), ...body);
  const fmt = (v) => v.first.map((x) => (x >= 0 ? "+" : "") + x.toFixed(3)).join(", ") + ", …";
  const maxEmbed = Math.max(...p.embeddings.map((e) => e.norm));
  const maxBlock = Math.max(...p.blocks.flatMap((b) => [b.attn.norm, b.mlp.norm]));
  const maxProb = Math.max(...p.top.map((r) => r.probability));
  box.replaceChildren(
    stage("1 · tokens → ids", el("div", { class: "num", text: p.tokens.map((t, i) => `${show(t)}=${p.ids[i]}`).join("  ") })),
    stage("2 · embeddings", el("div", { class: "explain", text: `${p.embeddings.length} vectors of ${p.embeddings[0].size} numbers; bar = length` }),
      ...p.embeddings.slice(-8).map((e, i) => miniBar(show(p.tokens[p.tokens.length - Math.min(8, p.tokens.length) + i]).slice(0, 6), e.norm, maxEmbed, e.norm.toFixed(2)))),
    stage("3 · blocks (last position)", el("div", { class: "explain", text: "what attention and the MLP add to the stream" }),
      ...p.blocks.flatMap((b) => [miniBar(`${b.index} attn`, b.attn.norm, maxBlock, b.attn.norm.toFixed(2)),
        miniBar(`${b.index} mlp`, b.mlp.norm, maxBlock, b.mlp.norm.toFixed(2))])),
    stage("4 · final embedding", el("div", { class: "num", text: `(${p.final.size},) [${fmt(p.final)}]` }),
      el("div", { class: "num", text: `norm ${p.final.norm.toFixed(3)}` })),
    stage("5 · logits", el("div", { class: "num", text: `${state.facts.model.vocab_size.toLocaleString()} scores` }),
      el("div", { class: "num", text: `min ${p.logit_stats[0].toFixed(2)} · max ${p.logit_stats[1].toFixed(2)}` }),
      el("div", { class: "num", text: `mean ${p.logit_stats[2].toFixed(2)} · std ${p.logit_stats[3].toFixed(2)}` })),
    stage("6 · softmax → probabilities", ...p.top.map((r) => miniBar(show(r.token).slice(0, 6), r.probability, maxProb, pct(r.probability))),
      el("div", { class: "num", text: `sum ${p.probability_sum.toFixed(6)}` })),
    stage("7 · the choice", el("div", { class: "num", text: `temperature 0 picks ${show(p.chosen.token)} (id ${p.chosen.id}, ${pct(p.chosen.probability)})` })),
  );
}

// ---------------------------------------------------------------- chat

function renderChatMode() {
  const chat = state.facts.chat;
  $("chat-on").hidden = !chat;
  $("chat-off").hidden = chat;
  if (!chat) $("chat-off").textContent = `${state.facts.id} is a base model (stage ${state.facts.stage}): it continues text rather than answering. Use the Next token tab, or serve a chat model (stage sft or rl) to talk to it here.`;
}
function renderMessages() {
  $("messages").replaceChildren(...state.chat.map((m) => el("div", { class: "msg " + m.role, text: m.content || "\u2026" })));
  $("messages").scrollTop = 1e9;
}
async function sendChat(e) {
  e.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text) return;
  $("chat-input").value = "";
  state.chat.push({ role: "user", content: text });
  const reply = { role: "assistant", content: "" };
  const history = state.chat.map((m) => ({ role: m.role, content: m.content }));
  state.chat.push(reply);
  renderMessages();
  $("messages").dataset.done = "0";
  try {
    await stream("/v1/chat/completions", { model: state.health.model, messages: history, max_tokens: 200, ...settings() }, (chunk) => {
      for (const c of chunk.choices) reply.content += c.delta.content || "";
      renderMessages();
    });
    if (!reply.content) reply.content = "(no answer: the model ended its turn at once)";
    renderMessages();
    $("messages").dataset.done = "1";
  } catch (err) {
    state.chat.pop();
    state.chat.pop();
    renderMessages();
    showError(err.message);
  }
}

// ---------------------------------------------------------------- model facts

function renderFacts() {
  const f = state.facts, m = f.model;
  const items = [["parameters", m.parameters.toLocaleString()], ["layers", m.n_layer], ["heads", `${m.n_head} (kv ${m.n_kv_head})`],
    ["d_model", m.d_model], ["context", `${m.context_length} tokens`], ["vocabulary", `${m.vocab_size.toLocaleString()} (${m.tokenizer})`],
    ["trained steps", m.step.toLocaleString()], ["stage", f.stage + (f.parent ? ` (from ${f.parent})` : "")], ["preset", m.preset]];
  $("facts").replaceChildren(...items.map(([k, v]) => el("div", { class: "fact" }, el("div", { class: "k", text: k }), el("div", { class: "v", text: String(v) }))));
  renderCurve(f.curve);
}
function renderCurve(curve) {
  const box = $("curve");
  const series = [["train_loss", "#5b4bdb", "train loss"], ["val_loss", "#17a2b8", "validation loss"]]
    .map(([k, c, name]) => ({ name, c, pts: curve.filter((r) => r[k] != null).map((r) => [r.step, r[k]]) }))
    .filter((s) => s.pts.length);
  if (!series.length) { box.textContent = "no training metrics in this run folder"; return; }
  const all = series.flatMap((s) => s.pts);
  const W = 900, Hh = 280, pad = 44;
  const [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  const [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  const sx = (x) => pad + ((x - x0) / ((x1 - x0) || 1)) * (W - 2 * pad);
  const sy = (y) => Hh - pad + 10 - ((y - y0) / ((y1 - y0) || 1)) * (Hh - 2 * pad);
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${Hh}` });
  for (const y of [y0, (y0 + y1) / 2, y1]) {
    svg.append(el("svg:line", { x1: pad, x2: W - pad, y1: sy(y), y2: sy(y), stroke: "#e3e5ef" }));
    svg.append(el("svg:text", { x: 4, y: sy(y) + 4, text: y.toFixed(2) }));
  }
  svg.append(el("svg:text", { x: W - pad, y: Hh - 6, "text-anchor": "end", text: `step ${x1}` }));
  series.forEach((s, k) => {
    const d = s.pts.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    svg.append(el("svg:path", { d, fill: "none", stroke: s.c, "stroke-width": 2.2 }));
    svg.append(el("svg:text", { x: W - pad - 160, y: 18 + k * 16, style: `fill:${s.c}`, text: "\u2014 " + s.name }));
  });
  box.replaceChildren(svg);
}

// ---------------------------------------------------------------- wiring

async function refreshTab() {
  try {
    if (state.tab === "next") await refreshNext();
    else if (state.tab === "attention") await refreshAttention();
    else if (state.tab === "space") { await refreshTrajectory(); if (!$("word-map").firstChild) await refreshMap(); }
    else if (state.tab === "pipeline") renderPipeline();
  } catch (err) { showError(err.message); }
}
async function refreshAll() {
  try { await refreshTokens(); } catch (err) { showError(err.message); return; }
  await refreshTab();
}
function openTab(name) {
  state.tab = name;
  document.querySelectorAll(".tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.id === "tab-" + name));
  refreshTab();
}
function syncOutputs() {
  const s = settings();
  $("temperature-out").textContent = s.temperature.toFixed(2) + (s.temperature === 0 ? " (greedy)" : "");
  $("topk-out").textContent = s.top_k ? String(s.top_k) : "off";
  $("topp-out").textContent = s.top_p.toFixed(2) + (s.top_p === 1 ? " (off)" : "");
}

async function main() {
  document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => openTab(b.dataset.tab)));
  const reshape = debounce(() => refreshNext().catch((e) => showError(e.message)), 40);
  for (const id of ["temperature", "topk", "topp"]) $(id).addEventListener("input", () => { syncOutputs(); reshape(); });
  $("prompt").addEventListener("input", debounce(() => { state.text = $("prompt").value; state.ids = null; refreshAll(); }, 250));
  $("step").addEventListener("click", () => step().catch((e) => showError(e.message)));
  $("generate").addEventListener("click", generate);
  $("stop").addEventListener("click", () => state.generating && state.generating.abort());
  $("map-go").addEventListener("click", () => refreshMap().catch((e) => showError(e.message)));
  $("chat-form").addEventListener("submit", sendChat);
  $("api-key").addEventListener("change", () => { localStorage.setItem("glassgpt-key", $("api-key").value); loadFacts().then(refreshAll).catch((e) => showError(e.message)); });
  syncOutputs();
  state.text = $("prompt").value;
  pollHealth();
  setInterval(pollHealth, 3000);
  try {
    await loadFacts();
    await refreshAll();
  } catch (err) { showError(err.message); }
  document.body.dataset.ready = "1";
}
main();
