/*
 * Shuqiao 书桥: in-page PDF viewer (progressive enhancement over a plain link).
 *
 * Markup the page template provides for each PDF:
 *   <figure class="pdf-view" data-src="/content/<sha256>" data-title="…">
 *     <a class="pdf-fallback" href="/content/<sha256>">打开 PDF / Open PDF</a>
 *   </figure>
 * Without JavaScript (or in a browser too old for pdf.js) the link is all the
 * user gets. With it, each figure gets a canvas showing one page and a toolbar.
 *
 * Load as a classic script: <script src=".../js/pdfview.js" defer></script>.
 * It must stay classic (not type=module) because document.currentScript, which
 * tells us where the vendored pdf.js lives, is only set for classic scripts.
 * pdf.js itself (an ES module) is pulled in with import() the first time a
 * figure comes near the viewport, so pages without PDFs never download it.
 *
 * Written in ES2017 without optional chaining or class fields on purpose: this
 * file should still parse in browsers that are too old for pdf.js, so it can
 * tell the user why and point at the link instead of failing silently.
 *
 * Contract with tests and other scripts:
 *   figure[data-rendered="1"]  set once the first page has been drawn
 *   figure[data-pages="M"]     page count, set at the same time
 *   figure[data-page="N"]      page currently drawn, updated after each render
 *   figure[data-error="1"]     set when the PDF cannot be shown
 *   "pdfview:rendered"         CustomEvent (bubbles) after every completed render,
 *                              detail = {page, pages, first}
 *   "pdfview:error"            CustomEvent (bubbles), detail = {kind, message}
 *   window.ShuqiaoPdfView.scan(root)  enhance figures added to the page later
 *
 * Content-Security-Policy (checked in Chromium with violation reports on):
 * script-src 'self', worker-src 'self', connect-src 'self', font-src 'self',
 * img-src 'self', style-src 'self' are enough; no eval, blob: or data:.
 * JPEG 2000 images are decoded by WebAssembly inside the worker, so they need
 * 'wasm-unsafe-eval' in the script-src of the CSP sent with pdf.worker.min.mjs
 * (a worker obeys its own response's CSP). Without it only those images are
 * missing and the rest of the page still renders.
 */
(function () {
  "use strict";

  // --- Where pdf.js lives: relative to this script's own URL, so the app
  // works under any mount point (…/static/js/pdfview.js → …/static/vendor/pdfjs/).
  var script = document.currentScript;
  if (!script) {
    var candidates = document.querySelectorAll("script[src]");
    for (var i = 0; i < candidates.length; i++) {
      if (/(^|\/)pdfview(\.min)?\.js(\?|#|$)/.test(candidates[i].src)) {
        script = candidates[i];
      }
    }
  }
  if (!script || !window.URL || !window.Promise) {
    return; // Leave the plain links alone.
  }
  var VENDOR = new URL("../vendor/pdfjs/", script.src).href;

  // Canvas backing store limit (16.7 Mpx = 64 MB RGBA). Past this we lower the
  // resolution instead of failing: lab PCs have little memory, and browsers
  // refuse very large canvases outright.
  var MAX_CANVAS_PIXELS = 16777216;
  var ZOOM_STEP = 1.25;
  var ZOOM_MIN = 0.25;
  var ZOOM_MAX = 5;
  var RESIZE_DEBOUNCE_MS = 150;
  // Start loading a little before the figure scrolls into view.
  var NEAR_VIEWPORT = "300px 0px";

  var TEXT = {
    zh: {
      loading: "正在加载 PDF…",
      rendering: "正在显示…",
      toolbar: "PDF 工具栏",
      prev: "上一页",
      next: "下一页",
      pageBefore: "第 ",
      pageMiddle: " / ",
      pageAfter: " 页",
      pageInput: "页码",
      pageLabel: function (n, m) { return "第 " + n + " / " + m + " 页"; },
      zoomOut: "缩小",
      zoomIn: "放大",
      fit: "适合宽度",
      fullscreen: "全屏",
      exitFullscreen: "退出全屏",
      errGeneric: "无法显示此 PDF。",
      errMissing: "找不到此 PDF 文件（可能还没有缓存到本机）。",
      errInvalid: "此文件已损坏，或不是有效的 PDF。",
      errPassword: "此 PDF 设有密码，无法在页面中显示。",
      errBrowser: "此浏览器版本太旧，无法在页面中显示 PDF。",
      errLibrary: "PDF 阅读组件加载失败。",
      errHint: "请点击下面的链接打开或下载。",
      errPage: function (n) { return "第 " + n + " 页无法显示。"; }
    },
    en: {
      loading: "Loading PDF…",
      rendering: "Rendering…",
      toolbar: "PDF toolbar",
      prev: "Previous page",
      next: "Next page",
      pageBefore: "Page ",
      pageMiddle: " of ",
      pageAfter: "",
      pageInput: "Page number",
      pageLabel: function (n, m) { return "Page " + n + " of " + m; },
      zoomOut: "Zoom out",
      zoomIn: "Zoom in",
      fit: "Fit width",
      fullscreen: "Full screen",
      exitFullscreen: "Exit full screen",
      errGeneric: "This PDF could not be displayed.",
      errMissing: "The PDF file was not found (it may not be cached on this server yet).",
      errInvalid: "This file is damaged or is not a valid PDF.",
      errPassword: "This PDF is password-protected and cannot be shown in the page.",
      errBrowser: "This browser is too old to show PDFs in the page.",
      errLibrary: "The PDF viewer could not be loaded.",
      errHint: "Use the link below to open or download it.",
      errPage: function (n) { return "Page " + n + " could not be displayed."; }
    }
  };

  function textFor(el) {
    // zh-CN unless the nearest lang attribute says English.
    var holder = el.closest ? el.closest("[lang]") : null;
    var lang = ((holder || document.documentElement).getAttribute("lang") || "").toLowerCase();
    return lang.indexOf("en") === 0 ? TEXT.en : TEXT.zh;
  }

  // --- pdf.js loading: one module and one worker shared by every figure
  // (a worker per document would cost a 1.4 MB parse and memory each).
  var libPromise = null;
  var sharedWorker = null;

  function loadLib() {
    if (!libPromise) {
      libPromise = import(VENDOR + "pdf.min.mjs").then(function (lib) {
        if (!lib || typeof lib.getDocument !== "function") {
          throw new Error("pdf.js module has no getDocument");
        }
        lib.GlobalWorkerOptions.workerSrc = VENDOR + "pdf.worker.min.mjs";
        return lib;
      });
      // A failed import is not retried: a reload is the user's retry.
    }
    return libPromise;
  }

  function getWorker(lib) {
    if (!sharedWorker || sharedWorker.destroyed) {
      sharedWorker = new lib.PDFWorker({ name: "shuqiao-pdfview" });
    }
    return sharedWorker;
  }

  // --- Small DOM helpers (no innerHTML: titles come from the catalogue).
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text) { node.textContent = text; }
    return node;
  }

  function button(className, symbol, label, showLabel) {
    var b = el("button", "pdf-view__btn " + className);
    b.type = "button";
    b.title = label;
    b.setAttribute("aria-label", label);
    if (symbol) {
      var s = el("span", "pdf-view__sym", symbol);
      s.setAttribute("aria-hidden", "true");
      b.appendChild(s);
    }
    if (showLabel !== false) {
      b.appendChild(el("span", "pdf-view__label", label));
    }
    return b;
  }

  function fire(fig, name, detail) {
    var ev;
    try {
      ev = new CustomEvent(name, { bubbles: true, detail: detail });
    } catch (e) {
      return;
    }
    fig.dispatchEvent(ev);
  }

  function fullscreenElement() {
    return document.fullscreenElement || document.webkitFullscreenElement || null;
  }

  function fullscreenEnabled() {
    return !!(document.fullscreenEnabled || document.webkitFullscreenEnabled);
  }

  // ---------------------------------------------------------------------------
  function Viewer(fig) {
    this.fig = fig;
    this.t = textFor(fig);
    this.src = new URL(fig.getAttribute("data-src"), document.baseURI).href;
    this.title = (fig.getAttribute("data-title") || "").trim();
    this.pdf = null;
    this.loadingTask = null;
    this.page = 1;
    this.pages = 0;
    this.zoom = 1;            // multiplier over "fit" (fit width, or whole page in full screen)
    this.task = null;         // pdf.js RenderTask in flight
    this.seq = 0;             // bumps on every render request; stale results are dropped
    this.shownPage = null;    // PDFPageProxy currently on screen (for cleanup)
    this.rendered = false;
    this.failed = false;
    this.lastBox = "";
    this.resizeTimer = 0;
    this.resizeHits = [];
    this.build();
  }

  Viewer.prototype.build = function () {
    var fig = this.fig, t = this.t, self = this;
    fig.classList.add("pdf-view--js", "pdf-view--loading");
    fig.tabIndex = 0; // keyboard and presentation clickers act on the focused figure
    fig.setAttribute("role", "group");
    fig.setAttribute("aria-roledescription", "PDF");
    if (this.title) {
      fig.setAttribute("aria-label", this.title);
    }

    this.fallback = fig.querySelector(".pdf-fallback");
    if (!this.fallback) {
      this.fallback = el("a", "pdf-fallback", "打开 PDF / Open PDF");
      this.fallback.href = this.src;
    }

    if (this.title) {
      this.caption = el("figcaption", "pdf-view__title", this.title);
      fig.insertBefore(this.caption, fig.firstChild);
    }

    var bar = this.toolbar = el("div", "pdf-view__toolbar");
    bar.setAttribute("role", "toolbar");
    bar.setAttribute("aria-label", t.toolbar);

    var nav = el("div", "pdf-view__group pdf-view__group--nav");
    this.prevBtn = button("pdf-view__prev", "◀", t.prev);
    this.nextBtn = button("pdf-view__next", "▶", t.next);
    var info = this.pageInfo = el("span", "pdf-view__pageinfo");
    this.pageInput = el("input", "pdf-view__pageinput");
    this.pageInput.type = "text";
    this.pageInput.setAttribute("inputmode", "numeric");
    this.pageInput.setAttribute("autocomplete", "off");
    this.pageInput.setAttribute("aria-label", t.pageInput);
    this.pageInput.value = "1";
    this.pageCount = el("span", "pdf-view__pagecount", "…");
    info.appendChild(document.createTextNode(t.pageBefore));
    info.appendChild(this.pageInput);
    info.appendChild(document.createTextNode(t.pageMiddle));
    info.appendChild(this.pageCount);
    if (t.pageAfter) { info.appendChild(document.createTextNode(t.pageAfter)); }
    nav.appendChild(this.prevBtn);
    nav.appendChild(info);
    nav.appendChild(this.nextBtn);

    var zoom = el("div", "pdf-view__group pdf-view__group--zoom");
    this.zoomOutBtn = button("pdf-view__zoomout", "−", t.zoomOut, false);
    this.fitBtn = button("pdf-view__fit", "", t.fit);
    this.zoomInBtn = button("pdf-view__zoomin", "+", t.zoomIn, false);
    zoom.appendChild(this.zoomOutBtn);
    zoom.appendChild(this.fitBtn);
    zoom.appendChild(this.zoomInBtn);

    bar.appendChild(nav);
    bar.appendChild(zoom);
    if (fullscreenEnabled()) {
      // Text only: symbol glyphs for "full screen" are missing from the fonts
      // of older Windows PCs and show as boxes.
      this.fsBtn = button("pdf-view__fullscreen", "", t.fullscreen);
      var fsGroup = el("div", "pdf-view__group pdf-view__group--fs");
      fsGroup.appendChild(this.fsBtn);
      bar.appendChild(fsGroup);
    }

    this.viewport = el("div", "pdf-view__viewport");
    this.status = el("p", "pdf-view__status", t.loading);
    this.status.setAttribute("role", "status");
    this.viewport.appendChild(this.status);

    // Order: caption, toolbar, page, then the plain link (kept: teachers use it
    // to download or print with the browser's own viewer).
    var after = this.caption ? this.caption.nextSibling : fig.firstChild;
    fig.insertBefore(bar, after);
    fig.insertBefore(this.viewport, bar.nextSibling);
    fig.appendChild(this.fallback);
    this.setControlsEnabled(false);

    this.prevBtn.addEventListener("click", function () { self.go(self.page - 1); });
    this.nextBtn.addEventListener("click", function () { self.go(self.page + 1); });
    this.zoomOutBtn.addEventListener("click", function () { self.setZoom(self.zoom / ZOOM_STEP); });
    this.zoomInBtn.addEventListener("click", function () { self.setZoom(self.zoom * ZOOM_STEP); });
    this.fitBtn.addEventListener("click", function () { self.setZoom(1); });
    if (this.fsBtn) {
      this.fsBtn.addEventListener("click", function () { self.toggleFullscreen(); });
    }
    this.pageInput.addEventListener("change", function () { self.goFromInput(); });
    this.pageInput.addEventListener("focus", function () { self.pageInput.select(); });
    fig.addEventListener("keydown", function (e) { self.onKey(e); });
    this.bindSwipe();
  };

  Viewer.prototype.setControlsEnabled = function (on) {
    var list = [this.prevBtn, this.nextBtn, this.zoomOutBtn, this.fitBtn, this.zoomInBtn, this.pageInput];
    for (var i = 0; i < list.length; i++) { list[i].disabled = !on; }
    if (on) { this.updateControls(); }
  };

  Viewer.prototype.updateControls = function () {
    var t = this.t;
    this.prevBtn.disabled = this.page <= 1;
    this.nextBtn.disabled = this.page >= this.pages;
    this.zoomOutBtn.disabled = this.zoom <= ZOOM_MIN + 1e-6;
    this.zoomInBtn.disabled = this.zoom >= ZOOM_MAX - 1e-6;
    if (document.activeElement !== this.pageInput) {
      this.pageInput.value = String(this.page);
    }
    this.pageInput.setAttribute("size", String(String(this.pages).length + 1));
    this.pageCount.textContent = String(this.pages);
    this.fig.classList.toggle("pdf-view--zoomed", this.zoom > 1 + 1e-6);
    if (this.fsBtn) {
      var on = fullscreenElement() === this.fig;
      var label = on ? t.exitFullscreen : t.fullscreen;
      this.fsBtn.title = label;
      this.fsBtn.setAttribute("aria-label", label);
      this.fsBtn.setAttribute("aria-pressed", on ? "true" : "false");
      this.fsBtn.querySelector(".pdf-view__label").textContent = label;
    }
  };

  // --- Loading -----------------------------------------------------------------
  Viewer.prototype.load = function () {
    var self = this;
    loadLib().then(function (lib) {
      self.lib = lib;
      self.loadingTask = lib.getDocument({
        url: self.src,
        worker: getWorker(lib),
        // Absolute URLs: the worker fetches these itself and would resolve a
        // relative URL against the worker script, not the page.
        cMapUrl: VENDOR + "cmaps/",
        cMapPacked: true,
        standardFontDataUrl: VENDOR + "standard_fonts/",
        // Never compile PDF functions with new Function(): the CSP forbids eval
        // and it was the route of CVE-2024-4367.
        isEvalSupported: false,
        enableXfa: false,
        // Fetch only the byte ranges the shown page needs (HTTP Range on
        // /content/). E-textbooks run to 100+ MB; with auto-fetch on, every
        // student who glances at one would pull the whole file over the LAN.
        // disableAutoFetch only works together with disableStream.
        disableStream: true,
        disableAutoFetch: true,
        rangeChunkSize: 131072
      });
      return self.loadingTask.promise;
    }, function (err) {
      var e = new Error(String(err && err.message || err));
      e.name = err && err.name === "SyntaxError" ? "ShuqiaoBrowserTooOld" : "ShuqiaoLibraryFailed";
      throw e;
    }).then(function (pdf) {
      self.pdf = pdf;
      self.pages = pdf.numPages;
      self.fig.setAttribute("data-pages", String(self.pages));
      self.fig.classList.remove("pdf-view--loading");
      self.setControlsEnabled(true);
      self.observeResize();
      return self.render();
    }).catch(function (err) {
      self.fail(err);
    });
  };

  Viewer.prototype.fail = function (err) {
    if (this.failed) { return; }
    this.failed = true;
    var t = this.t;
    var name = (err && err.name) || "";
    var msg = t.errGeneric, kind = "generic";
    if (name === "MissingPDFException" ||
        (name === "UnexpectedResponseException" && (err.status === 404 || err.status === 410))) {
      msg = t.errMissing; kind = "missing";
    } else if (name === "InvalidPDFException") {
      msg = t.errInvalid; kind = "invalid";
    } else if (name === "PasswordException") {
      msg = t.errPassword; kind = "password";
    } else if (name === "ShuqiaoBrowserTooOld") {
      msg = t.errBrowser; kind = "browser";
    } else if (name === "ShuqiaoLibraryFailed") {
      msg = t.errLibrary; kind = "library";
    }
    if (window.console && console.warn) {
      console.warn("pdfview: cannot show " + this.src + ":", err);
    }
    var fig = this.fig;
    fig.classList.remove("pdf-view--loading");
    fig.classList.add("pdf-view--error");
    fig.setAttribute("data-error", "1");
    this.setControlsEnabled(false);
    if (this.fsBtn) { this.fsBtn.disabled = true; }
    var box = el("div", "pdf-view__error");
    box.setAttribute("role", "alert");
    box.appendChild(el("p", "pdf-view__error-msg", msg));
    box.appendChild(el("p", "pdf-view__error-hint", t.errHint));
    this.viewport.textContent = "";
    this.viewport.appendChild(box);
    fire(fig, "pdfview:error", { kind: kind, message: msg });
    if (this.loadingTask) {
      this.loadingTask.destroy();
    }
  };

  // --- Rendering -----------------------------------------------------------------
  // Draws into a fresh canvas and swaps it in when done, so the old page stays
  // visible while a resize or page turn renders and a cancelled render leaves
  // no blank canvas behind.
  Viewer.prototype.render = function () {
    var self = this;
    if (!this.pdf || this.failed) { return Promise.resolve(); }
    var seq = ++this.seq;
    if (this.task) {
      this.task.cancel();
      this.task = null;
    }
    var pageNum = this.page;
    return this.pdf.getPage(pageNum).then(function (page) {
      if (seq !== self.seq) { return; }
      var box = self.viewport;
      var availW = box.clientWidth - self.padX();
      if (availW <= 0) {
        // Hidden (e.g. a closed <details>); the resize observer renders later.
        self.lastBox = "";
        return;
      }
      var base = page.getViewport({ scale: 1 });
      var fit = availW / base.width;
      var fs = fullscreenElement() === self.fig;
      if (fs) {
        var availH = box.clientHeight - self.padY();
        if (availH > 0) { fit = Math.min(fit, availH / base.height); }
      }
      var cssScale = fit * self.zoom;
      var cssW = Math.floor(base.width * cssScale);
      var cssH = Math.floor(base.height * cssScale);
      var ratio = window.devicePixelRatio || 1;
      if (cssW * cssH * ratio * ratio > MAX_CANVAS_PIXELS) {
        ratio = Math.sqrt(MAX_CANVAS_PIXELS / (cssW * cssH));
      }
      var vp = page.getViewport({ scale: cssScale * ratio });
      var canvas = el("canvas", "pdf-view__canvas");
      canvas.width = Math.max(1, Math.floor(vp.width));
      canvas.height = Math.max(1, Math.floor(vp.height));
      // CSSOM, not a style attribute: allowed under style-src 'self'.
      canvas.style.width = cssW + "px";
      canvas.style.height = cssH + "px";
      canvas.setAttribute("role", "img");
      var ctx = canvas.getContext("2d", { alpha: false });
      ctx.fillStyle = "#ffffff"; // PDFs assume white paper; alpha:false would be black
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      self.lastBox = availW + "x" + (fs ? box.clientHeight : 0);
      var task = self.task = page.render({ canvasContext: ctx, viewport: vp });
      self.fig.classList.add("pdf-view--busy");
      return task.promise.then(function () {
        if (self.task === task) { self.task = null; }
        if (seq !== self.seq) { canvas.width = 0; return; }
        self.show(canvas, page, pageNum);
      }, function (err) {
        canvas.width = 0; // free the backing store now, not at GC
        if (self.task === task) { self.task = null; }
        if (err && err.name === "RenderingCancelledException") { return; }
        throw err;
      });
    }).then(function () {
      if (seq === self.seq) { self.fig.classList.remove("pdf-view--busy"); }
    }).catch(function (err) {
      if (seq !== self.seq) { return; }
      self.fig.classList.remove("pdf-view--busy");
      if (!self.rendered) {
        self.fail(err);
      } else {
        // A later page failing should not take the viewer away: say which
        // page is broken and keep the page-turn buttons and the link working.
        if (window.console && console.warn) {
          console.warn("pdfview: page " + pageNum + " of " + self.src + " failed:", err);
        }
        self.showPageError(pageNum);
      }
    });
  };

  Viewer.prototype.show = function (canvas, page, pageNum) {
    var label = (this.title ? this.title + " — " : "") + this.t.pageLabel(pageNum, this.pages);
    canvas.setAttribute("aria-label", label);
    var old = this.canvas;
    if (old && old.parentNode) {
      old.parentNode.replaceChild(canvas, old);
      old.width = 0;
    } else {
      this.viewport.textContent = "";
      this.viewport.appendChild(canvas);
    }
    this.canvas = canvas;
    if (this.shownPage && this.shownPage !== page) {
      // Drop the operator list and decoded images of the page we left: long
      // textbooks would otherwise grow memory with every page turned.
      this.shownPage.cleanup();
    }
    this.shownPage = page;
    var first = !this.rendered;
    this.rendered = true;
    this.fig.setAttribute("data-page", String(pageNum));
    if (first) {
      this.fig.setAttribute("data-rendered", "1");
      this.fig.setAttribute("data-pages", String(this.pages));
    }
    this.updateControls();
    fire(this.fig, "pdfview:rendered", { page: pageNum, pages: this.pages, first: first });
  };

  Viewer.prototype.showPageError = function (pageNum) {
    var box = el("div", "pdf-view__error");
    box.setAttribute("role", "alert");
    box.appendChild(el("p", "pdf-view__error-msg", this.t.errPage(pageNum)));
    if (this.canvas) { this.canvas.width = 0; }
    this.canvas = null;
    this.viewport.textContent = "";
    this.viewport.appendChild(box);
    this.fig.setAttribute("data-page", String(pageNum));
    this.updateControls();
  };

  Viewer.prototype.padX = function () {
    var cs = window.getComputedStyle(this.viewport);
    return (parseFloat(cs.paddingLeft) || 0) + (parseFloat(cs.paddingRight) || 0);
  };

  Viewer.prototype.padY = function () {
    var cs = window.getComputedStyle(this.viewport);
    return (parseFloat(cs.paddingTop) || 0) + (parseFloat(cs.paddingBottom) || 0);
  };

  // --- Navigation and zoom -------------------------------------------------------
  Viewer.prototype.go = function (n) {
    if (!this.pdf) { return; }
    n = Math.max(1, Math.min(this.pages, n | 0));
    if (n === this.page) { this.updateControls(); return; }
    this.page = n;
    this.updateControls();
    if (this.zoom > 1) { this.viewport.scrollTop = 0; }
    this.render();
  };

  Viewer.prototype.goFromInput = function () {
    var n = parseInt(String(this.pageInput.value).replace(/[^0-9]/g, ""), 10);
    if (isNaN(n)) {
      this.pageInput.value = String(this.page);
      return;
    }
    this.go(n);
    this.pageInput.value = String(this.page);
  };

  Viewer.prototype.setZoom = function (z) {
    if (!this.pdf) { return; }
    z = Math.max(ZOOM_MIN, Math.min(ZOOM_MAX, z));
    if (Math.abs(z - 1) < 0.01) { z = 1; }
    if (z === this.zoom) { return; }
    this.zoom = z;
    this.updateControls();
    this.render();
  };

  Viewer.prototype.toggleFullscreen = function () {
    var fig = this.fig;
    if (fullscreenElement() === fig) {
      (document.exitFullscreen || document.webkitExitFullscreen).call(document);
      return;
    }
    var req = fig.requestFullscreen || fig.webkitRequestFullscreen;
    if (!req) { return; }
    var p = req.call(fig);
    if (p && p.catch) { p.catch(function () {}); }
    fig.focus();
  };

  Viewer.prototype.onFullscreenChange = function () {
    // Entering or leaving full screen starts over at "fit" (whole page in
    // full screen), which is what a teacher presenting expects.
    this.zoom = 1;
    this.updateControls();
    if (fullscreenElement() === this.fig) { this.fig.focus(); }
    this.render();
  };

  Viewer.prototype.onKey = function (e) {
    if (!this.pdf || e.altKey || e.ctrlKey || e.metaKey) { return; }
    var inInput = e.target === this.pageInput;
    var key = e.key;
    var handled = true;
    if (key === "PageDown" || (!inInput && (key === "ArrowRight" || key === "Right"))) {
      this.go(this.page + 1);
    } else if (key === "PageUp" || (!inInput && (key === "ArrowLeft" || key === "Left"))) {
      this.go(this.page - 1);
    } else if (!inInput && key === "Home") {
      this.go(1);
    } else if (!inInput && key === "End") {
      this.go(this.pages);
    } else if (!inInput && (key === "+" || key === "=")) {
      this.setZoom(this.zoom * ZOOM_STEP);
    } else if (!inInput && (key === "-" || key === "_")) {
      this.setZoom(this.zoom / ZOOM_STEP);
    } else if (!inInput && key === "0") {
      this.setZoom(1);
    } else {
      handled = false;
    }
    if (handled) { e.preventDefault(); }
  };

  // Horizontal swipe turns the page on touch screens (classroom all-in-one
  // panels, tablets). Only while the page is not zoomed, so it never fights
  // with scrolling a zoomed page; CSS sets touch-action to match.
  Viewer.prototype.bindSwipe = function () {
    if (!window.PointerEvent) { return; }
    var self = this, startX = 0, startY = 0, id = null;
    var vp = this.viewport;
    vp.addEventListener("pointerdown", function (e) {
      if (e.pointerType !== "touch" || self.zoom > 1) { id = null; return; }
      id = e.pointerId; startX = e.clientX; startY = e.clientY;
    });
    vp.addEventListener("pointerup", function (e) {
      if (e.pointerId !== id) { return; }
      id = null;
      var dx = e.clientX - startX, dy = e.clientY - startY;
      if (Math.abs(dx) > 60 && Math.abs(dx) > 2 * Math.abs(dy)) {
        self.go(self.page + (dx < 0 ? 1 : -1));
      }
    });
    vp.addEventListener("pointercancel", function () { id = null; });
  };

  // --- Resize: re-render (debounced) when the available box changes.
  Viewer.prototype.observeResize = function () {
    var self = this;
    var kick = function () {
      clearTimeout(self.resizeTimer);
      self.resizeTimer = setTimeout(function () { self.onResize(); }, RESIZE_DEBOUNCE_MS);
    };
    if (window.ResizeObserver) {
      new ResizeObserver(kick).observe(this.viewport);
    } else {
      window.addEventListener("resize", kick);
    }
  };

  Viewer.prototype.onResize = function () {
    if (!this.pdf || this.failed) { return; }
    var fs = fullscreenElement() === this.fig;
    var box = (this.viewport.clientWidth - this.padX()) + "x" + (fs ? this.viewport.clientHeight : 0);
    if (box === this.lastBox) { return; }
    // Guard against a feedback loop: a taller canvas can add the page's
    // scrollbar, which narrows the box, which shortens the canvas, which
    // removes the scrollbar… Give up resizing after 6 re-renders in 3 s.
    var now = Date.now();
    this.resizeHits = this.resizeHits.filter(function (x) { return now - x < 3000; });
    if (this.resizeHits.length >= 6) { return; }
    this.resizeHits.push(now);
    this.render();
  };

  // ---------------------------------------------------------------------------
  var viewers = [];
  var observer = null;

  function start(fig) {
    if (fig.shuqiaoPdfView) { return; }
    var v;
    try {
      v = fig.shuqiaoPdfView = new Viewer(fig);
    } catch (e) {
      if (window.console && console.warn) { console.warn("pdfview:", e); }
      return;
    }
    viewers.push(v);
    if (observer) {
      observer.observe(fig);
    } else {
      v.load(); // no IntersectionObserver: load now rather than never
    }
  }

  function scan(root) {
    if (!document.querySelectorAll) { return; }
    var figs = (root || document).querySelectorAll("figure.pdf-view[data-src]");
    for (var i = 0; i < figs.length; i++) { start(figs[i]); }
  }

  function init() {
    if (window.IntersectionObserver) {
      observer = new IntersectionObserver(function (entries) {
        for (var i = 0; i < entries.length; i++) {
          if (entries[i].isIntersecting) {
            observer.unobserve(entries[i].target);
            entries[i].target.shuqiaoPdfView.load();
          }
        }
      }, { rootMargin: NEAR_VIEWPORT });
    }
    var onFs = function () {
      for (var i = 0; i < viewers.length; i++) {
        var v = viewers[i];
        if (v.pdf && (v.fig === fullscreenElement() || v.fig.classList.contains("pdf-view--fs"))) {
          v.fig.classList.toggle("pdf-view--fs", v.fig === fullscreenElement());
          v.onFullscreenChange();
        }
      }
    };
    document.addEventListener("fullscreenchange", onFs);
    document.addEventListener("webkitfullscreenchange", onFs);
    scan(document);
  }

  window.ShuqiaoPdfView = { scan: scan };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
