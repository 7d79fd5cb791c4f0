// Follow links marked "live" by fetching the page's main part and swapping it in, so a
// correction updates the prediction without a reload. Without JavaScript the links still work.
"use strict";
async function followLive(href, push) {
  const url = new URL(href, window.location.href);
  url.searchParams.set("fragment", "1");
  const response = await fetch(url);
  const main = document.getElementById("main");
  if (!response.ok) {
    main.insertAdjacentHTML("afterbegin", '<p class="error" id="error"></p>');
    document.getElementById("error").textContent = (await response.text()).replace(/<[^>]*>/g, " ").trim();
    return;
  }
  main.innerHTML = await response.text();
  const shown = new URL(response.url);
  shown.searchParams.delete("fragment");
  if (push) window.history.pushState({}, "", shown);
  main.dataset.loaded = shown.search;  // lets tests and scripts wait for the swap
}
document.addEventListener("click", (event) => {
  const link = event.target.closest("a.live");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
  event.preventDefault();
  followLive(link.href, true);
});
window.addEventListener("popstate", () => followLive(window.location.href, false));
