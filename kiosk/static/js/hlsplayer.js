/* Lesson videos stored as HLS (the platform's micro-lessons: decrypted MPEG-TS segments and
 * a local playlist, all served from this appliance). Browsers that play HLS themselves get
 * the playlist as src; the others get the vendored hls.js (Media Source Extensions).
 * Without JavaScript a plain link to the playlist is what remains. */
(function () {
  "use strict";

  function attach(video) {
    var url = video.getAttribute("data-hls");
    if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;
      return;
    }
    if (!window.Hls || !window.Hls.isSupported()) {
      video.setAttribute("data-error", "1");
      return;
    }
    // No worker: the page CSP allows workers from our origin only, not blob: URLs.
    var hls = new window.Hls({enableWorker: false, maxBufferLength: 30});
    hls.on(window.Hls.Events.ERROR, function (event, data) {
      if (data.fatal) { video.setAttribute("data-error", "1"); }
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var videos = document.querySelectorAll("video[data-hls]");
    for (var i = 0; i < videos.length; i++) { attach(videos[i]); }
  });
})();
