// Follow links marked "live" by fetching the page's main part and swapping it in, so a
// correction updates the prediction without a reload. Without JavaScript the links still work.
// Clicks are ordered and none is lost: a click made while a request runs waits its turn, and is
// then found again (by its data-key) on the updated page, so its link carries the corrections made
// before it. While a request runs, the main part is marked busy (aria-busy), and a
// badge says so when the wait is long enough to notice; the page itself is not restyled, which
// would cost a redraw of every row. After a swap, focus
// returns to the control that was clicked (same data-key), and errors appear, as text, above the page.
// The new page is merged into the old one (morph), so only what changed is redrawn.
"use strict";
let inFlight = null;
let busyTimer = null;

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
  const busy = document.getElementById("busy");
  clearTimeout(busyTimer);
  busyTimer = setTimeout(() => { busy.hidden = false; }, 150);  // only a wait one would notice
  let response;
  try {
    response = await fetch(url, { signal: controller.signal });
    if (!response.ok) {
      showError(await response.text());
      return;
    }
    const html = await response.text();
    if (controller !== inFlight) return;  // a later click took over
    const fresh = document.createElement("template");
    fresh.innerHTML = html;
    morph(main, fresh.content);
  } catch (error) {
    if (error.name !== "AbortError") showError(String(error));
    return;
  } finally {
    if (controller === inFlight) {
      inFlight = null;
      main.removeAttribute("aria-busy");
      clearTimeout(busyTimer);
      busy.hidden = true;
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

// Bring the children of `shown` in line with those of `fresh`, changing only what differs, so
// the browser restyles and lays out only the changed parts (a correction changes a few cells and
// the links' addresses; an unchanged image is not fetched again).
function morph(shown, fresh) {
  const wanted = Array.from(fresh.childNodes);
  wanted.forEach((next, i) => {
    const now = shown.childNodes[i];
    if (!now) shown.appendChild(next);
    else if (now.nodeType !== next.nodeType || now.nodeName !== next.nodeName) shown.replaceChild(next, now);
    else if (now.nodeType !== Node.ELEMENT_NODE) {
      if (now.nodeValue !== next.nodeValue) now.nodeValue = next.nodeValue;
    } else if (!now.isEqualNode(next)) {  // the browser's own comparison skips what did not change
      for (const { name } of Array.from(now.attributes)) if (!next.hasAttribute(name)) now.removeAttribute(name);
      for (const { name, value } of Array.from(next.attributes)) {
        if (now.getAttribute(name) === value) continue;
        now.setAttribute(name, value);
        if (name === "value" && "value" in now) now.value = value;  // a field the user typed in shows the new value
      }
      const chosen = now.nodeName === "SELECT" ? next.value : null;
      morph(now, next);
      if (chosen !== null) now.value = chosen;
    }
  });
  while (shown.childNodes.length > wanted.length) shown.removeChild(shown.lastChild);
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

// The address a control leads to: a link's, or its form's with the pressed button's name and value.
function addressOf(control) {
  if (control.href) return control.href;
  const url = new URL(control.form.action, window.location.href);
  for (const [key, value] of new FormData(control.form, control)) url.searchParams.append(key, value);
  return url.href;
}

async function clickLive(control) {
  running = true;
  try {
    await followLive(addressOf(control), true, control.dataset.key);
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

// A click while a request runs waits; found again by its key on the new page, it then carries
// the corrections the earlier click made.
function activate(control) {
  if (running) waiting.push({ key: control.dataset.key, href: addressOf(control) });
  else clickLive(control);
}

// Links marked "live", and buttons of forms marked "live" (the concept setters, the bulk policy
// form), are followed this way.
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form.live");
  if (!form) return;
  event.preventDefault();
  const button = event.submitter && event.submitter.form === form ? event.submitter : form.querySelector("button");
  activate(button);
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
  activate(link);
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
