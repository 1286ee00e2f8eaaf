// A small Python syntax highlighter: builds DOM nodes (never HTML strings), so code
// from a job can never inject markup into the page.
"use strict";
(function () {
  const KEYWORDS = new Set(("False None True and as assert async await break class continue " +
    "def del elif else except finally for from global if import in is lambda nonlocal not or " +
    "pass raise return try while with yield match case").split(" "));
  const BUILTINS = new Set(("abs all any bool bytes callable chr dict dir divmod enumerate " +
    "eval exec filter float format getattr hasattr hash help hex id input int isinstance " +
    "issubclass iter len list map max min next object open ord pow print property range repr " +
    "reversed round set setattr slice sorted staticmethod str sum super tuple type vars zip " +
    "Exception ValueError TypeError KeyError IndexError RuntimeError StopIteration " +
    "KeyboardInterrupt").split(" "));
  // One pass, one alternation: comment | string (triple, prefixed) | number | decorator | name.
  const TOKEN = new RegExp([
    "(#[^\\n]*)",
    "((?:\\b[rRbBuUfF]{1,2})?(?:\"\"\"[\\s\\S]*?(?:\"\"\"|$)|'''[\\s\\S]*?(?:'''|$)|" +
      "\"(?:\\\\.|[^\"\\\\\\n])*\"?|'(?:\\\\.|[^'\\\\\\n])*'?))",
    "(\\b0[xXoObB][\\da-fA-F_]+\\b|\\b\\d[\\d_]*(?:\\.[\\d_]*)?(?:[eE][+-]?\\d+)?[jJ]?)",
    "(@[A-Za-z_][\\w.]*)",
    "([A-Za-z_]\\w*)",
  ].join("|"), "g");

  function span(cls, text) {
    const el = document.createElement("span");
    el.className = cls;
    el.textContent = text;
    return el;
  }

  /** Highlight Python source; returns a DocumentFragment of text nodes and spans. */
  function highlight(code) {
    const out = document.createDocumentFragment();
    let last = 0;
    let prevName = "";
    TOKEN.lastIndex = 0;
    for (let m = TOKEN.exec(code); m !== null; m = TOKEN.exec(code)) {
      if (m[0] === "") { TOKEN.lastIndex++; continue; }
      if (m.index > last) out.appendChild(document.createTextNode(code.slice(last, m.index)));
      let cls = null;
      if (m[1] !== undefined) cls = "com";
      else if (m[2] !== undefined) cls = "str";
      else if (m[3] !== undefined) cls = "num";
      else if (m[4] !== undefined) cls = "dec";
      else {
        const name = m[5];
        if (KEYWORDS.has(name)) cls = "kw";
        else if (prevName === "def" || prevName === "class") cls = "fn";
        else if (name === "self" || name === "cls") cls = "slf";
        else if (BUILTINS.has(name)) cls = "bi";
        prevName = name;
      }
      if (m[5] === undefined) prevName = "";
      out.appendChild(cls ? span(cls, m[0]) : document.createTextNode(m[0]));
      last = TOKEN.lastIndex;
    }
    if (last < code.length) out.appendChild(document.createTextNode(code.slice(last)));
    return out;
  }

  window.SmartColabHL = { highlight };
})();
