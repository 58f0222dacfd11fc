// The page's words in its language: the server renders them from the language catalogs
// (eventhunting/languages) into <script id="page-text" type="application/json">, and the
// page scripts ask `t(key, values)` for them, so pages, scripts and mail read one catalog.

(() => {
  "use strict";

  const shared = (window.EventHunting = window.EventHunting || {});
  const island = document.getElementById("page-text");
  const texts = island ? JSON.parse(island.textContent) : {};
  const language = document.documentElement.lang === "en" ? "en" : "vi";

  // `{name}` in the message replaced by `values.name`; a missing key is a bug, said loudly.
  function t(key, values = {}) {
    const message = texts[key];
    if (typeof message !== "string") {
      console.error(`no text for ${key}`);
      return key;
    }
    return message.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
  }

  // The locale for Intl and toLocale*: dates as each language writes them.
  const locale = language === "vi" ? "vi-VN" : "en-GB";

  Object.assign(shared, { t, language, locale });
})();
