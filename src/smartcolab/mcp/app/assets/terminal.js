// Text as a terminal would show it: a port of src/smartcolab/shared/output/terminal.py, rule
// for rule (carriage returns, backspaces, cursor moves, erases; colours dropped), so
// the monitor shows what the bridge's results show. tests/e2e/test_mcp_app.py runs
// both on the same inputs. Columns count code points, as Python's str does.
"use strict";
(function (root) {
  const SPECIAL = /[\r\b\x1b]/;
  const TOKENS = /[^\r\n\b\x1b]+|\r\n|[\r\n\b]|\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_=>78]|\x1b/g;
  const CSI = /^\x1b\[([0-9;?]*)[ -/]*([@-~])$/;
  // A cursor far to the right would make the next write pad a huge line: bounded here
  // (terminal.py pads without a bound; a real terminal stops at its width).
  const MAX_COL = 100000;

  class Screen {
    constructor() {
      this.lines = [[]];
      this.row = 0;
      this.col = 0;
    }

    write(chunk) {
      const line = this.lines[this.row];
      while (line.length < this.col) line.push(" ");
      for (const ch of chunk) line[this.col++] = ch; // overwrite, then extend
    }

    newline() {
      this.row += 1;
      this.col = 0;
      if (this.row === this.lines.length) this.lines.push([]);
    }

    move(rows) {
      this.row = Math.min(Math.max(0, this.row + rows), this.lines.length - 1);
    }

    csi(params, final) {
      const nums = params.replace(/\?/g, "").split(";").map((p) => (/^[0-9]+$/.test(p) ? parseInt(p, 10) : 0));
      const n = nums.length && nums[0] ? nums[0] : 1;
      if (final === "A") this.move(-n);
      else if (final === "B" || final === "E") {
        this.move(n);
        if (final === "E") this.col = 0;
      } else if (final === "F") {
        this.move(-n);
        this.col = 0;
      } else if (final === "C") this.col = Math.min(MAX_COL, this.col + n);
      else if (final === "D") this.col = Math.max(0, this.col - n);
      else if (final === "G") this.col = Math.min(MAX_COL, Math.max(0, n - 1));
      else if (final === "K") {
        const mode = nums.length ? nums[0] : 0;
        const line = this.lines[this.row];
        if (mode === 0) line.splice(this.col);
        else if (mode === 1) {
          const end = Math.min(this.col + 1, line.length);
          for (let i = 0; i < end; i++) line[i] = " ";
        } else line.length = 0;
      }
      // Colours (m), scrolling, modes and the rest change nothing a reader keeps.
    }

    text() {
      return this.lines.map((line) => line.join("").replace(/ +$/, "")).join("\n");
    }
  }

  /** What a terminal would show after printing `text` (last progress frame only). */
  function render(text) {
    if (!SPECIAL.test(text)) return text;
    const screen = new Screen();
    for (const match of text.matchAll(TOKENS)) {
      const token = match[0];
      const first = token[0];
      if (first === "\n" || token === "\r\n") screen.newline();
      else if (first === "\r") screen.col = 0;
      else if (first === "\b") screen.col = Math.max(0, screen.col - 1);
      else if (first === "\x1b") {
        const csi = CSI.exec(token);
        if (csi) screen.csi(csi[1], csi[2]);
      } else screen.write(token);
    }
    return screen.text();
  }

  root.SmartColabTerminal = { render };
})(typeof window !== "undefined" ? window : globalThis);
