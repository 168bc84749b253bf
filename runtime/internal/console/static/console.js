// Progressive enhancement for the console. An element with an id and
// data-refresh="<milliseconds>" is replaced, that often, by the element with
// the same id from a fresh copy of the page at the same URL. Without script
// the page is the same, only still; reloading it shows the same thing.
"use strict";

(function () {
  function refresh(id, every) {
    async function tick() {
      const stamp = document.getElementById("updated");
      try {
        const res = await fetch(location.href, { cache: "no-store", headers: { Accept: "text/html" } });
        if (!res.ok) {
          throw new Error("HTTP " + res.status);
        }
        // DOMParser runs no script and loads nothing: the fresh copy is
        // only read for its element.
        const doc = new DOMParser().parseFromString(await res.text(), "text/html");
        const fresh = doc.getElementById(id);
        const current = document.getElementById(id);
        if (fresh && current) {
          current.replaceWith(document.adoptNode(fresh));
        }
        if (stamp) {
          stamp.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
          stamp.className = "";
        }
      } catch (err) {
        if (stamp) {
          stamp.textContent = "Refresh failed (" + err.message + "); retrying.";
          stamp.className = "failed";
        }
      }
      setTimeout(tick, every);
    }
    setTimeout(tick, every);
  }

  for (const el of document.querySelectorAll("[data-refresh][id]")) {
    const every = Number(el.dataset.refresh);
    if (every > 0) {
      refresh(el.id, every);
    }
  }
})();
