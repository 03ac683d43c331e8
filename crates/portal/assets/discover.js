// "Find my settings" on "Start a new migration": asks the portal for the settings of a
// mailbox address and fills that side's kind, preset, server, port and security, which
// the person can still change. Without this script the form works as before.
(function () {
  "use strict";

  function find(prefix) {
    var input = document.getElementById(prefix + "_address");
    var said = document.getElementById(prefix + "_found");
    var address = input.value.trim();
    if (!address) {
      said.textContent = "Type a mailbox address first, such as alice@example.com.";
      return;
    }
    var side = prefix === "source" ? "source" : "destination";
    said.textContent = "Looking for the settings of " + address + "…";
    var url = "/discover?side=" + side + "&address=" + encodeURIComponent(address);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (found) {
        said.textContent = found.message;
        if (!found.found) { return; }
        var kind = document.getElementById(prefix + "_kind_" + found.kind);
        if (kind) { kind.checked = true; }
        document.getElementById(prefix + "_preset").value = found.preset;
        document.getElementById(prefix + "_host").value = found.host;
        document.getElementById(prefix + "_port").value = found.port;
        document.getElementById(prefix + "_security").value = found.security;
      })
      .catch(function () {
        said.textContent = "The settings could not be looked up: fill in the server below.";
      });
  }

  document.querySelectorAll("[data-discover]").forEach(function (button) {
    var prefix = button.getAttribute("data-discover");
    button.addEventListener("click", function () { find(prefix); });
    var input = document.getElementById(prefix + "_address");
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault();
        find(prefix);
      }
    });
  });
})();
