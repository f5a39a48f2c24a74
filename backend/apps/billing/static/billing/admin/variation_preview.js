/*
 * Live preview of template variations in the admin. Under each variation's content box it
 * shows the text rendered against the sample variables of the template's type, or the
 * engine's error with line and column. The server does the rendering (the same engine the
 * worker uses); this file only posts the text, a moment after typing stops.
 *   add page:    POST ../preview/             (content, template_type from the form)
 *   change page: POST ../preview/ = <id>/preview/ (content; the type is the template's)
 */
(function () {
  "use strict";

  var SELECTOR = "textarea[name^='variations-'][name$='-content']";

  function previewUrl() {
    return new URL("../preview/", window.location.href).toString();
  }

  function csrfToken(form) {
    var input = form && form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function describe(data) {
    if (data.ok) { return data.rendered; }
    var error = data.error || {};
    var text = "\u26a0 " + (error.message || "Invalid template");
    if (error.line !== null && error.line !== undefined) {
      text += " (line " + error.line + ", column " + error.column + ")";
    }
    if (data.missing && data.missing.length) { text += " \u2014 missing: " + data.missing.join(", "); }
    return text;
  }

  function render(textarea, output) {
    var typeSelect = document.getElementById("id_template_type");
    var body = new URLSearchParams();
    body.set("content", textarea.value);
    body.set("template_type", typeSelect ? typeSelect.value : "");
    fetch(previewUrl(), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(textarea.form), "Content-Type": "application/x-www-form-urlencoded" },
      body: body
    }).then(function (response) {
      return response.json();
    }).then(function (data) {
      output.textContent = describe(data);
      output.style.color = data.ok ? "" : "var(--error-fg, #ba2121)";
    }).catch(function () {
      output.textContent = "Preview unavailable.";
    });
  }

  function attach(textarea) {
    if (textarea.name.indexOf("__prefix__") !== -1 || textarea.dataset.billingPreview) { return; }
    textarea.dataset.billingPreview = "1";
    var output = document.createElement("pre");
    output.className = "billing-live-preview";
    output.style.whiteSpace = "pre-wrap";
    output.style.maxWidth = "32em";
    output.setAttribute("aria-live", "polite");
    textarea.parentNode.appendChild(output);
    var timer = null;
    textarea.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(function () { render(textarea, output); }, 400);
    });
    if (textarea.value) { render(textarea, output); }
  }

  function scan() {
    document.querySelectorAll(SELECTOR).forEach(attach);
  }

  document.addEventListener("DOMContentLoaded", function () {
    scan();
    var typeSelect = document.getElementById("id_template_type");
    if (typeSelect) {
      typeSelect.addEventListener("change", function () {
        document.querySelectorAll(SELECTOR).forEach(function (textarea) {
          var output = textarea.parentNode.querySelector(".billing-live-preview");
          if (output && textarea.value) { render(textarea, output); }
        });
      });
    }
  });
  document.addEventListener("formset:added", scan);
})();
