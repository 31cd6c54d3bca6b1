/* agent_sessions admin: "copy raw JSON" buttons and the conversation view's live tail.
   Plain JavaScript, no build step. */
(function () {
  "use strict";

  function copyFrom(button) {
    var status = button.parentNode.querySelector(".asm-copy-status");
    var url = button.getAttribute("data-copy-url");
    function done(text) { if (status) { status.textContent = text; } }
    var fetched = fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.text();
    });
    var write;
    if (window.ClipboardItem && navigator.clipboard && navigator.clipboard.write) {
      // A promise inside the item keeps the click's permission while the JSON downloads.
      var blob = fetched.then(function (text) { return new Blob([text], { type: "text/plain" }); });
      write = navigator.clipboard.write([new ClipboardItem({ "text/plain": blob })]);
    } else if (navigator.clipboard) {
      write = fetched.then(function (text) { return navigator.clipboard.writeText(text); });
    } else {
      write = Promise.reject(new Error("no clipboard"));
    }
    write.then(function () { done("Copied."); }, function () { done("Copy failed: use Download."); });
  }

  function liveTail(root) {
    var list = document.getElementById("asm-transcript");
    var status = document.getElementById("asm-live-status");
    var toggle = document.getElementById("asm-live-toggle");
    var streamUrl = root.getAttribute("data-stream-url");
    var fragmentUrl = root.getAttribute("data-fragment-url");
    var runId = root.getAttribute("data-run");
    var types = JSON.parse(root.getAttribute("data-event-types") || "[]");
    var last = parseInt(root.getAttribute("data-last") || "0", 10);
    var source = null, busy = false, again = false, paused = false;

    function say(text) { status.textContent = text; }

    function fetchNew() {
      if (busy) { again = true; return; }
      busy = true;
      fetch(fragmentUrl + "&after=" + last, { credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (page) {
          if (page.html) {
            var empty = document.getElementById("asm-empty");
            if (empty) { empty.remove(); }
            list.insertAdjacentHTML("beforeend", page.html);
          }
          last = page.last;
          root.setAttribute("data-last", String(last));
          if (page.count) { say("Live: " + page.count + " new event(s), last #" + last + "."); }
          if (page.count >= 50) { again = true; }
        })
        .catch(function () { say("Live: could not load new events; retrying on the next one."); })
        .then(function () {
          busy = false;
          if (again && !paused) { again = false; fetchNew(); }
        });
    }

    function connect() {
      var url = streamUrl + "?after=" + last + (runId ? "&run_id=" + encodeURIComponent(runId) : "");
      source = new EventSource(url);
      source.onopen = function () { say("Live: watching for new events."); };
      source.onerror = function () { say("Live: reconnecting…"); };
      source.onmessage = fetchNew;
      types.forEach(function (type) { source.addEventListener(type, fetchNew); });
    }

    toggle.addEventListener("click", function () {
      if (paused) {
        paused = false;
        toggle.textContent = "Pause";
        connect();
        fetchNew();
      } else {
        paused = true;
        if (source) { source.close(); source = null; }
        toggle.textContent = "Resume";
        say("Paused.");
      }
    });
    connect();
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".asm-copy");
    if (button) { event.preventDefault(); copyFrom(button); }
  });
  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("asm-conversation");
    if (root && root.getAttribute("data-stream-url") && root.getAttribute("data-live") === "1") {
      liveTail(root);
    }
  });
})();
