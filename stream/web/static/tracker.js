/*! personastream tracker: cookie-less visit events for the personastream collector. No dependencies.
 *
 *   <script src="http://worker:6066/tracker.js" data-endpoint="http://worker:6066"
 *           data-page-id="product-42" data-page-type="product" async></script>
 *
 * or, before it, window.personastream = {endpoint, page: {id, type}, heartbeatSeconds, flushSeconds,
 * pollSeconds, pollIdleSeconds, consent, q}. The config object wins over the data- attributes; the
 * endpoint defaults to the origin the script was loaded from. Calls queued in `q` as
 * [name, ...args] before the script loads are run once it has.
 *
 * What it sends, keyed by a random visit token kept in sessionStorage (no cookie; gone with the tab):
 * page_view (page id/type, path without query, referrer host), clicks on [data-ps-click] elements
 * (the attribute's value, never text), max scroll depth per page, visible-time heartbeats (dwell),
 * and personastream.track(type, fields) for add_to_cart, remove_from_cart, search, purchase.
 * Never the User-Agent (the collector derives coarse device fields itself), no fingerprinting.
 *
 * API: track(type, fields), consent(bool), onPersona(callback), visitToken(), flush().
 */
(function (window, document) {
  "use strict";

  var TOKEN_KEY = "personastream.visit";
  var CONSENT_KEY = "personastream.consent";  // "yes" / "no" for the rest of the tab's visit
  var LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  var PAGE_TYPES = ["home", "category", "product", "search", "cart", "checkout", "account", "info", "other"];
  var FIELDS = {  // what track() may send per event type; anything else is dropped
    add_to_cart: {product_id: 64, quantity: "int", price: "num"},
    remove_from_cart: {product_id: 64, quantity: "int"},
    search: {query: 200},
    purchase: {value: "num", currency: 3},
    click: {target: 64}
  };
  var BATCH = 50;  // events per request: well under the collector's 64 KiB and keepalive's budget

  var config = window.personastream;
  if (config && typeof config.visitToken === "function") return;  // loaded twice
  config = config && typeof config === "object" ? config : {};
  var script = document.currentScript || {};
  var data = script.dataset || {};
  var endpoint = String(config.endpoint || data.endpoint || originOf(script.src)).replace(/\/+$/, "");
  var configPage = config.page || {};
  var page = {
    id: String(configPage.id || data.pageId || location.pathname || "/").slice(0, 128),
    type: PAGE_TYPES.indexOf(configPage.type || data.pageType) >= 0 ? (configPage.type || data.pageType) : "other",
    path: location.pathname || "/"  // never the query string or the fragment
  };
  var heartbeatMs = seconds(config.heartbeatSeconds || data.heartbeatSeconds, 15);
  var flushMs = seconds(config.flushSeconds || data.flushSeconds, 5);
  var pollMs = seconds(config.pollSeconds || data.pollSeconds, 3);
  var pollIdleMs = seconds(config.pollIdleSeconds || data.pollIdleSeconds, 60);

  var decided = read(CONSENT_KEY);
  var consented = decided === "yes" || (decided !== "no" && config.consent !== false && data.consent !== "false");
  var token = consented ? visit() : null;
  var queue = [];
  var pageViewSent = false;
  var maxDepth = 0, reportedDepth = 0;
  var visibleSince = visible() ? Date.now() : null, visibleMs = 0;
  var heartbeat = null, flusher = null;
  var listeners = [], lastPersona = null, lastText = "", pollTimer = null, lastActivity = Date.now();

  // --- helpers ---------------------------------------------------------------------------------

  function originOf(src) {
    try { return new URL(src).origin; } catch (e) { return ""; }
  }

  function seconds(value, fallback) {
    var n = Number(value);
    return (n > 0 ? n : fallback) * 1000;
  }

  function read(key) {
    try { return window.sessionStorage.getItem(key); } catch (e) { return null; }
  }

  function write(key, value) {
    try {
      if (value === null) window.sessionStorage.removeItem(key); else window.sessionStorage.setItem(key, value);
    } catch (e) { /* storage disabled: the token lives as long as this page */ }
  }

  function letters(n) {
    // Letters only, so a token can never look like a phone, card or IP address; 22 letters carry
    // 125 random bits. Bytes >= 208 (4 x 52) are skipped, so every letter is equally likely.
    var out = "", bytes = new Uint8Array(2 * n);
    while (out.length < n) {
      window.crypto.getRandomValues(bytes);
      for (var i = 0; i < bytes.length && out.length < n; i++) {
        if (bytes[i] < 208) out += LETTERS.charAt(bytes[i] % 52);
      }
    }
    return out;
  }

  function visit() {
    var known = read(TOKEN_KEY);
    if (known && /^[A-Za-z]{22}$/.test(known)) return known;
    var fresh = letters(22);
    write(TOKEN_KEY, fresh);
    return fresh;
  }

  function visible() {
    return document.visibilityState !== "hidden";
  }

  function screenSize() {
    var width = window.innerWidth || 0;
    return width < 768 ? "s" : width < 1200 ? "m" : "l";
  }

  // --- events ----------------------------------------------------------------------------------

  function send(type, fields, quiet) {
    if (!token) return false;
    var event = {type: type, event_id: letters(16), session_id: token, ts: Date.now(),
                 page: {id: page.id, type: page.type, path: page.path}, device: {screen: screenSize()}};
    for (var name in fields) event[name] = fields[name];
    queue.push(event);
    if (queue.length >= BATCH) flush(false);
    if (!quiet) {  // heartbeats and scroll reports alone do not keep the persona poll awake
      lastActivity = Date.now();
      schedulePoll(0);
    }
    return true;
  }

  function pageView() {
    var fields = {}, referrer = originHost(document.referrer);
    if (referrer && referrer !== location.hostname) fields.referrer = referrer;  // the host only
    pageViewSent = send("page_view", fields);
  }

  function originHost(url) {
    try { return url ? new URL(url).hostname : ""; } catch (e) { return ""; }
  }

  function depth() {
    var root = document.documentElement, body = document.body;
    var height = Math.max(root.scrollHeight, body ? body.scrollHeight : 0);
    if (!height) return 0;
    var seen = (window.scrollY || root.scrollTop || 0) + (window.innerHeight || root.clientHeight);
    return Math.max(0, Math.min(100, Math.round(100 * seen / height)));
  }

  function reportScroll() {
    maxDepth = Math.max(maxDepth, depth());
    if (maxDepth > reportedDepth) {
      reportedDepth = maxDepth;
      send("scroll", {depth_pct: maxDepth}, true);
    }
  }

  function reportDwell() {
    var now = Date.now();
    if (visibleSince !== null) {
      visibleMs += now - visibleSince;
      visibleSince = now;
    }
    var secs = Math.round(visibleMs / 100) / 10;
    visibleMs = 0;
    if (secs >= 0.1) send("dwell", {seconds: Math.min(3600, secs)}, true);
  }

  function send_batch(url, body) {
    fetch(url, {method: "POST", body: body, headers: {"Content-Type": "text/plain"}, keepalive: true,
                credentials: "omit", mode: "cors"})
      .then(function (response) { if (response.status === 429 || response.status === 503) requeue(body); })
      .catch(function () { requeue(body); });
  }

  function requeue(body) {
    if (!consented || queue.length > 500) return;  // consent withdrawn, or the collector is gone: drop
    queue.unshift.apply(queue, JSON.parse(body));
  }

  function flush(beacon) {
    if (!endpoint) return;
    while (queue.length) {
      var body = JSON.stringify(queue.splice(0, BATCH)), url = endpoint + "/collect";
      if (beacon && navigator.sendBeacon && navigator.sendBeacon(url, new Blob([body], {type: "text/plain"}))) continue;
      if (window.fetch) {
        // text/plain keeps this a "simple" CORS request (no preflight). Refused for now (429, 503) or not
        // sent (network): the events go back to the queue for the next flush; other answers are final.
        send_batch(url, body);
      }
    }
  }

  // --- page lifecycle --------------------------------------------------------------------------

  function start() {
    if (!flusher) flusher = setInterval(function () { flush(false); }, flushMs);
    if (visible() && !heartbeat) heartbeat = setInterval(reportDwell, heartbeatMs);
  }

  function stop() {
    clearInterval(heartbeat);
    clearInterval(flusher);
    clearTimeout(pollTimer);
    heartbeat = flusher = pollTimer = null;
  }

  function hidden() {  // visibility hidden or pagehide: report, then send with a beacon
    if (visibleSince !== null) {
      visibleMs += Date.now() - visibleSince;
      visibleSince = null;
    }
    clearInterval(heartbeat);
    heartbeat = null;
    if (!token) return;
    reportDwell();
    reportScroll();
    flush(true);
  }

  function shown() {
    if (visibleSince === null) visibleSince = Date.now();
    if (token) {
      start();
      schedulePoll(0);
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (visible()) shown(); else hidden();
  });
  window.addEventListener("pagehide", hidden);
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted || !consented) return;  // restored from the back/forward cache: a new page view
    token = visit();
    maxDepth = reportedDepth = 0;
    visibleMs = 0;
    visibleSince = null;
    pageView();
    shown();
  });

  var scrollPending = false;
  window.addEventListener("scroll", function () {
    if (scrollPending) return;
    scrollPending = true;
    (window.requestAnimationFrame || setTimeout)(function () {
      scrollPending = false;
      maxDepth = Math.max(maxDepth, depth());
    });
  }, {passive: true});

  document.addEventListener("click", function (event) {
    var element = event.target && event.target.closest ? event.target.closest("[data-ps-click]") : null;
    if (element) send("click", {target: String(element.getAttribute("data-ps-click")).slice(0, 64)});
  }, true);

  // --- persona lookup --------------------------------------------------------------------------

  function schedulePoll(delay) {
    if (pollTimer || !token || !listeners.length || !endpoint) return;
    pollTimer = setTimeout(poll, delay);
  }

  function poll() {
    pollTimer = null;
    if (!token || !visible() || Date.now() - lastActivity > pollIdleMs) return;  // woken by the next event
    var asked = token;
    fetch(endpoint + "/visits/" + encodeURIComponent(asked), {credentials: "omit", cache: "no-store", mode: "cors"})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (!text || asked !== token || text === lastText) return;
        lastText = text;
        lastPersona = JSON.parse(text);
        listeners.forEach(function (callback) { notify(callback, lastPersona); });
      })
      .catch(function () {})
      .then(function () { schedulePoll(pollMs); });
  }

  function notify(callback, persona) {
    try { callback(persona); } catch (e) { setTimeout(function () { throw e; }); }
  }

  // --- API -------------------------------------------------------------------------------------

  var api = {
    /** Send add_to_cart {product_id, quantity, price}, remove_from_cart, search {query} or purchase {value, currency}. */
    track: function (type, fields) {
      var allowed = FIELDS[type];
      if (!allowed) return false;
      var out = {};
      for (var name in allowed) {
        var value = fields ? fields[name] : null, rule = allowed[name];
        if (value === null || value === undefined || value === "") continue;
        if (rule === "int") value = Math.max(1, Math.round(Number(value)) || 1);
        else if (rule === "num") value = Number(value);
        else value = String(value).slice(0, rule);
        if (typeof value === "number" && !isFinite(value)) continue;
        out[name] = value;
      }
      return send(type, out);
    },
    /** consent(false): send nothing from now on, forget the visit token, drop queued events.
     *  consent(true): resume with a new visit. consent(): whether the tracker is sending. */
    consent: function (granted) {
      if (granted === undefined) return consented;
      if (!granted) {
        consented = false;
        token = null;
        queue.length = 0;
        lastPersona = null;
        lastText = "";
        stop();
        write(TOKEN_KEY, null);
        write(CONSENT_KEY, "no");  // for the rest of this tab's visit; not an identifier
      } else if (!consented) {
        consented = true;
        write(CONSENT_KEY, "yes");
        token = visit();
        if (!pageViewSent) pageView();
        shown();
      }
      return consented;
    },
    /** callback(personaEvent) whenever GET {endpoint}/visits/{token} returns a new PersonaEvent. */
    onPersona: function (callback) {
      if (typeof callback !== "function") return;
      listeners.push(callback);
      if (lastPersona) notify(callback, lastPersona);
      lastActivity = Date.now();
      schedulePoll(0);
    },
    /** The opaque visit token (null without consent). */
    visitToken: function () { return token; },
    /** Send what is queued now. */
    flush: function () { flush(false); }
  };
  window.personastream = api;

  if (!endpoint) {
    if (window.console) console.warn("personastream: no endpoint (data-endpoint or personastream.endpoint)");
  } else if (token) {
    pageView();
    start();
  }
  var queued = Array.isArray(config.q) ? config.q : [];
  queued.forEach(function (call) {
    if (call && typeof api[call[0]] === "function") api[call[0]].apply(api, call.slice(1));
  });
})(window, document);
