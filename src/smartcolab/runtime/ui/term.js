// Job output as a terminal shows it: a carriage return ("\r") moves back to the start
// of the line and what follows overwrites it, so a progress bar (tqdm, pip, keras)
// that redraws itself hundreds of times shows its latest frame on one line instead
// of a wall of frames. Output arrives in chunks that may split a frame anywhere.
"use strict";
(function () {
  const PERCENT = /(\d{1,3}(?:\.\d+)?)\s?%/g;

  class Terminal {
    constructor() {
      this.done = "";        // finished lines, each ending in "\n"
      this.line = "";        // the line being written
      this.col = 0;          // where the next character goes in `line`
      this.lineRedrawn = false;
      this.lastRedrawn = ""; // the latest finished line that had been redrawn
    }

    /** Add a chunk of raw output. */
    write(chunk) {
      for (const piece of chunk.split(/(\r|\n)/)) {
        if (piece === "\n") {
          this.done += this.line + "\n";
          if (this.lineRedrawn) this.lastRedrawn = this.line;
          this.line = "";
          this.col = 0;
          this.lineRedrawn = false;
        } else if (piece === "\r") {
          this.col = 0;
          this.lineRedrawn = true;
        } else if (piece) {
          this.line = this.line.slice(0, this.col) + piece + this.line.slice(this.col + piece.length);
          this.col += piece.length;
        }
      }
    }

    /** Everything, with each redrawn line at its latest frame. */
    text() {
      return this.done + this.line;
    }

    /** The percentage of the latest progress-bar frame (a redrawn line), or null. */
    percent() {
      const frame = this.lineRedrawn && this.line.trim() ? this.line : this.lastRedrawn;
      const found = [...frame.matchAll(PERCENT)];
      if (!found.length) return null;
      const value = Math.round(parseFloat(found[0][1]));
      return value >= 0 && value <= 100 ? value : null;
    }
  }

  window.SmartColabTerm = { Terminal };
})();
