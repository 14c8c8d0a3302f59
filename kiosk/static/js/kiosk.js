/* Usage events from the kiosk's players: view-start, view-progress, view-complete.
 *
 * Each terminal keeps a random pseudonymous id in localStorage (never a name). Events are
 * posted to /api/events as JSON; progress is sent every 30 s of playing and on pause, and
 * with keepalive so the last one survives closing the page. Sending is best effort: a lost
 * event must never interrupt a lesson.
 */
(function () {
  "use strict";
  var PROGRESS_EVERY = 30; // seconds of playback between progress events

  function terminalId() {
    var key = "shuqiao.terminal";
    try {
      var id = window.localStorage.getItem(key);
      if (!id) {
        id = "t-" + Math.random().toString(36).slice(2, 12) + Date.now().toString(36);
        window.localStorage.setItem(key, id);
      }
      return id;
    } catch (e) {
      return "t-anonymous";
    }
  }

  function role() {
    try { return window.localStorage.getItem("shuqiao.role") === "teacher" ? "teacher" : "student"; }
    catch (e) { return "student"; }
  }

  function uuid() {
    if (window.crypto && window.crypto.randomUUID) { return window.crypto.randomUUID(); }
    return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
      var r = Math.random() * 16 | 0;
      return (c === "x" ? r : (r & 0x3 | 0x8)).toString(16);
    });
  }

  // Events wait in a small queue and go out together (every few seconds, on pause, and
  // when the page is hidden): one request for many events keeps the appliance's work per
  // event low when a whole lab plays at once.
  var queue = [];
  var FLUSH_MS = 5000;

  function flush() {
    if (!queue.length) { return; }
    var batch = queue;
    queue = [];
    try {
      fetch("/api/events", {method: "POST", headers: {"Content-Type": "application/json"},
                            body: JSON.stringify(batch), keepalive: true}).catch(function () {});
    } catch (e) { /* very old browser: no usage record, lesson goes on */ }
  }

  function send(type, resource, seconds, now) {
    queue.push({id: uuid(), type: type, resource: resource, terminal: terminalId(),
                role: role(), at: new Date().toISOString(), seconds: Math.round(seconds * 10) / 10});
    if (now || queue.length >= 50) { flush(); }
  }

  window.setInterval(flush, FLUSH_MS);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") { flush(); }
  });
  window.addEventListener("pagehide", flush);

  function track(player) {
    var resource = player.getAttribute("data-resource");
    var started = false, lastSent = 0, watched = 0, lastTime = null;
    player.addEventListener("play", function () {
      if (!started) { started = true; send("view-start", resource, 0); }
      lastTime = player.currentTime;
    });
    player.addEventListener("timeupdate", function () {
      if (lastTime !== null && !player.seeking) {
        var step = player.currentTime - lastTime;
        if (step > 0 && step < 2) { watched += step; } // ignore seeks
      }
      lastTime = player.currentTime;
      if (watched - lastSent >= PROGRESS_EVERY) { lastSent = watched; send("view-progress", resource, watched); }
    });
    player.addEventListener("pause", function () {
      if (!player.ended && watched - lastSent >= 1) { lastSent = watched; send("view-progress", resource, watched, true); }
      flush();
    });
    player.addEventListener("ended", function () { lastSent = watched; send("view-complete", resource, watched, true); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var players = document.querySelectorAll("video.player, audio.player");
    for (var i = 0; i < players.length; i++) { track(players[i]); }
  });
})();

/* The 获取 (fetch) box: while a resource is queued or downloading, poll its state every
 * few seconds (short polling: no held connections) and reload the page once it is on
 * the appliance, so its player and PDF viewer appear. */
(function () {
  "use strict";
  var POLL_MS = 3000;

  function poll(box) {
    var url = "/api/resources/" + box.getAttribute("data-resource") + "/fetch";
    fetch(url, {headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (state) {
        if (!state) { return; }
        if (state.state === "cached") { window.location.reload(); return; }
        var bar = box.querySelector("progress");
        if (bar) { bar.max = state.bytes_total || 1; bar.value = state.bytes_done; }
        box.setAttribute("data-state", state.state);
        if (state.state === "waiting" || state.state === "active" || state.state === "held") {
          window.setTimeout(function () { poll(box); }, POLL_MS);
        } else {
          window.location.reload();
        }
      })
      .catch(function () { window.setTimeout(function () { poll(box); }, POLL_MS * 3); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.querySelector(".fetch-box");
    if (box && /^(waiting|active|held)$/.test(box.getAttribute("data-state"))) {
      window.setTimeout(function () { poll(box); }, POLL_MS);
    }
  });
})();
