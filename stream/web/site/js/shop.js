/* Ridgeline Outdoor demo shop: cart in sessionStorage, shop events through the personastream tracker,
 * and the live persona banner. */
(function () {
  "use strict";

  // Call the tracker, or queue the call until it has loaded (it runs personastream.q at start-up).
  function ps(name) {
    var args = Array.prototype.slice.call(arguments, 1), tracker = window.personastream;
    if (tracker && typeof tracker.visitToken === "function") return tracker[name].apply(tracker, args);
    tracker = window.personastream = tracker || {};
    (tracker.q = tracker.q || []).push([name].concat(args));
  }

  var CART_KEY = "ridgeline.cart";
  function cart() {
    try { return JSON.parse(sessionStorage.getItem(CART_KEY)) || []; } catch (e) { return []; }
  }
  function saveCart(items) {
    try { sessionStorage.setItem(CART_KEY, JSON.stringify(items)); } catch (e) { /* storage disabled */ }
    showCount();
  }
  function showCount() {
    var count = cart().reduce(function (n, item) { return n + item.quantity; }, 0);
    var badge = document.getElementById("cart-count");
    if (badge) badge.textContent = String(count);
  }
  function money(value) { return "€" + value.toFixed(2); }
  function total(items) { return items.reduce(function (sum, item) { return sum + item.price * item.quantity; }, 0); }
  function byId(id) { return document.getElementById(id); }

  // --- product page ---
  document.querySelectorAll(".options").forEach(function (group) {
    group.addEventListener("click", function (event) {
      var button = event.target.closest("button");
      if (!button) return;
      group.querySelectorAll("button").forEach(function (b) { b.classList.remove("selected"); });
      button.classList.add("selected");
    });
  });
  var product = byId("product");
  if (product && byId("add-to-cart")) {
    byId("add-to-cart").addEventListener("click", function () {
      var quantity = Math.max(1, Math.min(9, parseInt(byId("quantity").value, 10) || 1));
      var price = Number(product.dataset.price), slug = product.dataset.slug;
      var items = cart(), found = items.filter(function (item) { return item.slug === slug; })[0];
      if (found) found.quantity += quantity;
      else items.push({slug: slug, name: product.dataset.name, price: price, quantity: quantity});
      saveCart(items);
      ps("track", "add_to_cart", {product_id: slug, quantity: quantity, price: price});
      byId("added").hidden = false;
    });
  }

  // --- search ---
  var search = document.querySelector("form.search");
  if (search) {
    search.addEventListener("submit", function () {
      var query = search.querySelector("input").value.trim();
      if (query) ps("track", "search", {query: query});  // sent with the next page's beacon flush
    });
  }

  // --- cart and checkout ---
  function renderItems(container, removable) {
    var items = cart();
    container.innerHTML = "";
    if (!items.length) {
      container.innerHTML = '<p class="lead">Your cart is empty.</p>';
      return items;
    }
    items.forEach(function (item) {
      var row = document.createElement("div");
      row.className = "cart-row";
      row.innerHTML = '<div class="grow"><strong></strong><div class="small"></div></div><div class="sum"></div>';
      row.querySelector("strong").textContent = item.name;
      row.querySelector(".small").textContent = item.quantity + " × " + money(item.price);
      row.querySelector(".sum").textContent = money(item.price * item.quantity);
      if (removable) {
        var remove = document.createElement("button");
        remove.type = "button";
        remove.textContent = "Remove";
        remove.setAttribute("data-ps-click", "cart-remove");
        remove.addEventListener("click", function () {
          saveCart(cart().filter(function (other) { return other.slug !== item.slug; }));
          ps("track", "remove_from_cart", {product_id: item.slug, quantity: item.quantity});
          renderCart();
        });
        row.appendChild(remove);
      }
      container.appendChild(row);
    });
    return items;
  }
  function renderCart() {
    var items = renderItems(byId("cart-items"), true);
    byId("cart-total").textContent = money(total(items));
    byId("to-checkout").hidden = !items.length;
  }
  if (byId("cart-items")) renderCart();
  if (byId("checkout-items")) {
    var toPay = total(renderItems(byId("checkout-items"), false));
    byId("checkout-total").textContent = money(toPay);
    byId("buy").disabled = !toPay;
    byId("buy").addEventListener("click", function () {
      ps("track", "purchase", {value: Math.round(toPay * 100) / 100, currency: "EUR"});
      ps("flush");
      saveCart([]);
      byId("checkout").hidden = true;
      byId("thanks").hidden = false;
    });
  }
  showCount();

  // --- the live persona banner ---
  var banner = byId("ps-banner");
  banner.classList.add("waiting");
  ps("onPersona", function (persona) {
    banner.classList.remove("waiting");
    banner.dataset.sessionId = persona.session_id;
    banner.dataset.visit = String(persona.visit);
    banner.dataset.eventsSeen = String(persona.events_seen);
    byId("ps-persona").textContent = persona.persona;
    var band = byId("ps-band");
    band.textContent = persona.intent_band;
    band.className = "ps-band " + persona.intent_band;
    byId("ps-score").textContent = persona.intent_score.toFixed(2);
    byId("ps-meter-fill").style.width = Math.round(100 * persona.intent_score) + "%";
    byId("ps-action").textContent = persona.recommended_action;
    byId("ps-meta").textContent = persona.page_views + " page views, " + persona.events_seen +
      " events in this visit" + (persona.bot ? " (marked as a bot)" : "");
  });

  // --- consent ---
  var toggle = byId("consent-toggle");
  function showConsent() {
    var on = ps("consent") !== false;
    toggle.textContent = on ? "Stop tracking" : "Allow tracking";
    banner.classList.toggle("off", !on);
    if (!on) byId("ps-persona").textContent = "tracking is off for this tab";
  }
  toggle.addEventListener("click", function () {
    ps("consent", ps("consent") === false);
    showConsent();
  });
  window.addEventListener("load", showConsent);  // async scripts (the tracker) have run by then
})();
