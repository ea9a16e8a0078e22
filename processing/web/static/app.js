// The search page: talks to /api/search, /api/similar/<id>, /api/video/<id>; no framework.
"use strict";

const state = { q: "", tags: [], source: "", license: "", min_duration: "", max_duration: "",
                min_height: "", page: 1, similarTo: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function fmtDuration(s) {
  if (s === null || s === undefined) return "";
  s = Math.round(s);
  const m = Math.floor(s / 60), sec = String(s % 60).padStart(2, "0");
  return m >= 60 ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

function params() {
  const p = new URLSearchParams();
  if (state.q && !state.similarTo) p.set("q", state.q);
  for (const t of state.tags) p.append("tag", t);
  for (const k of ["source", "license", "min_duration", "max_duration", "min_height"]) if (state[k] !== "") p.set(k, state[k]);
  p.set("page", state.page);
  return p;
}

async function getJSON(url) {
  const resp = await fetch(url);
  const data = await resp.json();
  if (!resp.ok) throw new Error(data.message || data.error || resp.status);
  return data;
}

async function run() {
  const url = state.similarTo ? `/api/similar/${state.similarTo}?${params()}` : `/api/search?${params()}`;
  $("status-line").textContent = "Searching…";
  try {
    const data = await getJSON(url);
    render(data);
  } catch (err) {
    $("status-line").innerHTML = "";
    $("status-line").append(el("span", { class: "error" }, `Search failed: ${err.message}`));
  }
}

function render(data) {
  const what = data.similar_to ? `similar to ${data.similar_to.slice(0, 12)}…` : (state.q ? `for “${state.q}”` : "");
  const filters = state.tags.length ? ` · tags: ${state.tags.join(", ")}` : "";
  $("status-line").textContent = `${data.total} video${data.total === 1 ? "" : "s"} ${what}${filters}`;
  const grid = $("results");
  grid.replaceChildren(...data.hits.map(card));
  $("page-info").textContent = `page ${data.page} of ${data.pages}`;
  $("prev").disabled = data.page <= 1;
  $("next").disabled = data.page >= data.pages;
  renderFacets(data.facets || {});
}

function card(hit) {
  const thumb = el("div", { class: "thumb" });
  if (hit.thumbnail) thumb.append(el("img", { src: hit.thumbnail, alt: hit.title, loading: "lazy" }));
  if (hit.duration) thumb.append(el("span", { class: "duration" }, fmtDuration(hit.duration)));
  const tags = el("div", { class: "tags" }, ...hit.tags.slice(0, 6).map((t) => el("span", {}, t)));
  return el("div", { class: "card", "data-video-id": hit.video_id, onclick: () => openVideo(hit.video_id) },
    thumb, el("div", { class: "body" }, el("div", { class: "title" }, hit.title), tags));
}

function renderFacets(facets) {
  const box = $("facets");
  box.replaceChildren();
  const names = { tags: "Tags", sources: "Sources", licenses: "Licences" };
  for (const [key, label] of Object.entries(names)) {
    const values = facets[key] || [];
    if (!values.length) continue;
    const section = el("div", { class: "facet", id: `facet-${key}` }, el("h3", {}, label));
    for (const { value, count } of values) {
      section.append(el("a", { href: "#", "data-value": value, onclick: (e) => { e.preventDefault(); pickFacet(key, value); } },
        el("span", {}, value), el("span", { class: "count" }, count)));
    }
    box.append(section);
  }
  for (const [key, select] of [["sources", $("f-source")], ["licenses", $("f-license")]]) {
    const current = select.value;
    const known = new Set([...select.options].map((o) => o.value));
    for (const { value } of facets[key] || []) if (!known.has(value)) select.append(el("option", { value }, value));
    select.value = current;
  }
}

function pickFacet(key, value) {
  if (key === "tags" && !state.tags.includes(value)) state.tags.push(value);
  if (key === "sources") { state.source = value; $("f-source").value = value; }
  if (key === "licenses") { state.license = value; $("f-license").value = value; }
  $("f-tag").value = state.tags.join(", ");
  state.page = 1;
  run();
}

function readFilters() {
  state.tags = $("f-tag").value.split(",").map((t) => t.trim().toLowerCase()).filter(Boolean);
  state.source = $("f-source").value;
  state.license = $("f-license").value;
  state.min_duration = $("f-min-duration").value;
  state.max_duration = $("f-max-duration").value;
  state.min_height = $("f-min-height").value;
}

async function openVideo(id) {
  const data = await getJSON(`/api/video/${id}`);
  document.querySelector("main").classList.add("with-detail");
  $("detail").hidden = false;
  $("detail").dataset.videoId = id;
  $("detail-title").textContent = data.title;
  const player = $("player");
  if (data.media) player.src = data.media; else player.removeAttribute("src");
  const meta = [fmtDuration(data.duration), data.width && `${data.width}×${data.height}`, data.source,
                data.license, data.status].filter(Boolean);
  $("detail-meta").textContent = meta.join(" · ");
  $("detail-tags").replaceChildren(...data.tags.map((t) => el("span", {}, t)));
  $("similar-link").onclick = (e) => { e.preventDefault(); state.similarTo = id; state.page = 1; run(); };
  const cluster = $("cluster");
  cluster.replaceChildren();
  const c = data.cluster;
  if (c) {
    const canon = c.canonical;
    cluster.append(el("li", { class: "canonical" }, "canonical: ",
      el("a", { href: "#", onclick: (e) => { e.preventDefault(); openVideo(canon.video_id); } }, canon.title || canon.video_id)));
    for (const d of c.duplicates) {
      const sim = d.similarity !== null && d.similarity !== undefined ? ` (similarity ${Number(d.similarity).toFixed(3)})` : "";
      cluster.append(el("li", { class: "duplicate" },
        el("a", { href: "#", onclick: (e) => { e.preventDefault(); openVideo(d.video_id); } }, d.title || d.video_id), sim));
    }
    if (!c.duplicates.length) cluster.append(el("li", {}, "no duplicates recorded"));
  }
}

$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.q = $("q").value.trim();
  state.similarTo = null;
  state.page = 1;
  readFilters();
  run();
});
$("apply-filters").addEventListener("click", () => { readFilters(); state.page = 1; run(); });
$("clear-filters").addEventListener("click", () => {
  for (const id of ["f-tag", "f-min-duration", "f-max-duration", "f-min-height"]) $(id).value = "";
  $("f-source").value = ""; $("f-license").value = "";
  readFilters(); state.page = 1; run();
});
$("prev").addEventListener("click", () => { state.page = Math.max(1, state.page - 1); run(); });
$("next").addEventListener("click", () => { state.page += 1; run(); });
$("close-detail").addEventListener("click", () => {
  $("detail").hidden = true; $("player").pause();
  document.querySelector("main").classList.remove("with-detail");
});
run();
