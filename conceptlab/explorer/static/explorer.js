// Follow links marked "live" by fetching the page's main part and swapping it in, so a
// correction updates the prediction without a reload. Without JavaScript the links still work.
// Clicks are ordered and none is lost: a click made while a request runs waits its turn, and is
// then found again (by its data-key) on the updated page, so its link carries the corrections made
// before it. While a request runs, the main part is marked busy. After a swap, focus
// returns to the control that was clicked (same data-key), and errors appear, as text, above the page.
"use strict";
let inFlight = null;

function showError(html) {
  const page = new DOMParser().parseFromString(html, "text/html");
  const text = (page.getElementById("error") || page.body).textContent.replace(/\s+/g, " ").trim();
  document.getElementById("errors").textContent = text;
}

async function followLive(href, push, focusKey) {
  const url = new URL(href, window.location.href);
  url.searchParams.set("fragment", "1");
  if (inFlight) inFlight.abort();
  const controller = new AbortController();
  inFlight = controller;
  const main = document.getElementById("main");
  main.setAttribute("aria-busy", "true");
  let response;
  try {
    response = await fetch(url, { signal: controller.signal });
    if (!response.ok) {
      showError(await response.text());
      return;
    }
    const html = await response.text();
    if (controller !== inFlight) return;  // a later click took over
    main.innerHTML = html;
  } catch (error) {
    if (error.name !== "AbortError") showError(String(error));
    return;
  } finally {
    if (controller === inFlight) {
      inFlight = null;
      main.removeAttribute("aria-busy");
    }
  }
  document.getElementById("errors").textContent = "";
  const shown = new URL(response.url);
  shown.searchParams.delete("fragment");
  if (push) window.history.pushState({}, "", shown);
  syncForm(shown);
  if (focusKey) {
    const again = main.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
    if (again) again.focus();
  }
  remember();
  main.dataset.loaded = shown.search;  // lets tests and scripts wait for the swap
}

// Keep the header form's hidden state (sample, corrections) and the curve policy in step with the page.
function syncForm(url) {
  const form = document.getElementById("choose");
  for (const name of ["sample", "fix", "policy"]) {
    const field = form.elements[name];
    if (field && url.searchParams.has(name)) field.value = url.searchParams.get(name);
    else if (field && name === "fix") field.value = "";
  }
}

const waiting = [];  // keys (or addresses) of clicks made while a request ran, oldest first
let running = false;

async function clickLive(link) {
  running = true;
  try {
    await followLive(link.href, true, link.dataset.key);
  } finally {
    running = false;
  }
  while (waiting.length) {
    const next = waiting.shift();
    const again = next.key ? document.querySelector(`#main [data-key="${CSS.escape(next.key)}"]`) : null;
    if (again) return clickLive(again);
    if (!next.key) return clickLive({ href: next.href, dataset: {} });
  }
}

// Forms marked "live" (the bulk policy form) are sent the same way, in the same queue.
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form.live");
  if (!form) return;
  event.preventDefault();
  const url = new URL(form.action, window.location.href);
  for (const [key, value] of new FormData(form, event.submitter)) url.searchParams.append(key, value);
  if (running) waiting.push({ key: null, href: url.href });
  else clickLive({ href: url.href, dataset: { key: form.dataset.key } });
});

// The session: every sample corrected in this tab, per model (sessionStorage), for the session export.
function sessionKey(model) { return `conceptlab-session:${model}`; }

function remember() {
  const shown = document.querySelector("section.sample");
  if (!shown) return;
  const key = sessionKey(shown.dataset.model);
  const session = JSON.parse(sessionStorage.getItem(key) || "{}");
  if (shown.dataset.fix) session[shown.dataset.sample] = shown.dataset.fix;
  else delete session[shown.dataset.sample];
  sessionStorage.setItem(key, JSON.stringify(session));
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a.session-export");
  if (!link) return;
  const shown = document.querySelector("section.sample");
  const session = JSON.parse(sessionStorage.getItem(sessionKey(shown.dataset.model)) || "{}");
  if (!(shown.dataset.sample in session)) session[shown.dataset.sample] = shown.dataset.fix;
  const url = new URL(link.href, window.location.href);
  url.searchParams.delete("sample");
  url.searchParams.delete("fix");
  for (const [sample, fix] of Object.entries(session)) {
    url.searchParams.append("sample", sample);
    url.searchParams.append("fix", fix);
  }
  link.href = url.href;  // the browser then follows the link as usual
});
remember();

document.addEventListener("click", (event) => {
  const link = event.target.closest("a.live");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
  event.preventDefault();
  if (running) waiting.push({ key: link.dataset.key, href: link.href });
  else clickLive(link);
});
window.addEventListener("popstate", () => followLive(window.location.href, false, null));

// A click on the 2-D view opens the sample drawn nearest to it (the go-to box does the same by number).
document.addEventListener("click", async (event) => {
  const plane = event.target.closest("#input-plane");
  if (!plane) return;
  const box = plane.getBoundingClientRect();
  const scale = 320 / box.width;  // the drawing is 320 pixels wide, whatever size it is shown at
  const state = new URL(window.location.href);
  const pick = new URL("/api/plane-pick", window.location.href);
  pick.searchParams.set("model", state.searchParams.get("model") || "");
  pick.searchParams.set("x", String((event.clientX - box.left) * scale));
  pick.searchParams.set("y", String((event.clientY - box.top) * scale));
  const response = await fetch(pick);
  if (!response.ok) { showError(await response.text()); return; }
  const { sample } = await response.json();
  state.searchParams.set("sample", String(sample));
  state.searchParams.delete("fix");
  state.searchParams.delete("page");
  followLive(state.href, true, null);
});
