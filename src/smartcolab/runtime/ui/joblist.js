// The job list: filters (status, session, text), a code preview, relative and absolute
// times. Rows are kept per job and refilled on each poll, never rebuilt: a click must
// not land on a row that was just replaced.
"use strict";
(function () {
  const TERMINAL = new Set(["succeeded", "failed", "timed_out", "cancelled", "lost"]);
  const $ = (id) => document.getElementById(id);

  const pad = (n) => String(n).padStart(2, "0");

  /** "2026-11-30 14:05:09": a date with the time, in the browser's time zone. */
  function fmtDate(t) {
    if (!t) return "–";
    const d = new Date(t * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
           `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  /** "just now", "5 min ago", "3 h ago", "2 days ago". */
  function fmtAgo(t) {
    if (!t) return "–";
    const s = Math.max(0, Date.now() / 1000 - t);
    if (s < 10) return "just now";
    if (s < 60) return `${Math.floor(s)} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    const days = Math.floor(s / 86400);
    return days === 1 ? "1 day ago" : `${days} days ago`;
  }

  const fmtWhen = (t) => (t ? `${fmtAgo(t)} (${fmtDate(t)})` : "–");

  function fmtDuration(s) {
    if (s === null || s === undefined) return "–";
    if (s < 60) return s.toFixed(1) + " s";
    const m = Math.floor(s / 60);
    return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function duration(job) {
    if (job.duration_s !== null && job.duration_s !== undefined) return job.duration_s;
    if (job.started_at && !TERMINAL.has(job.status)) return Math.max(0, Date.now() / 1000 - job.started_at);
    return null;
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function badge(status) {
    const b = document.createElement("span");
    b.className = "badge s-" + status;
    b.textContent = status;
    return b;
  }

  /** The first non-blank line of the code, for the list. */
  function codePreview(code) {
    const line = (code || "").split("\n").map((l) => l.trim()).find((l) => l && !l.startsWith("#"));
    return line || (code || "").trim().split("\n")[0] || "";
  }

  function matches(job) {
    const status = $("filter-status").value, session = $("filter-session").value;
    const text = $("filter-text").value.trim().toLowerCase();
    if (status === "active" && !(job.status === "queued" || job.status === "running")) return false;
    if (status && status !== "active" && job.status !== status) return false;
    if (session && job.session !== session) return false;
    if (text) {
      const hay = `${job.job_id}\n${job.client || ""}\n${job.code || ""}`.toLowerCase();
      if (!hay.includes(text)) return false;
    }
    return true;
  }

  function updateSessionFilter(jobs) {
    const box = $("filter-session");
    const have = new Set([...box.options].map((o) => o.value));
    for (const name of [...new Set(jobs.map((j) => j.session))].sort()) {
      if (have.has(name)) continue;
      const o = document.createElement("option");
      o.value = o.textContent = name;
      box.appendChild(o);
    }
  }

  class JobList {
    /** `onSelect(jobId)` is called when a row is clicked. */
    constructor(onSelect) {
      this.onSelect = onSelect;
      this.jobs = [];          // the last list, filtered again when a filter changes
      this.rows = new Map();   // job id -> its <tr>
      this.selected = null;
      for (const id of ["filter-status", "filter-session"]) $(id).addEventListener("change", () => this.render());
      $("filter-text").addEventListener("input", () => this.render());
    }

    clear() {
      this.jobs = [];
      this.rows.clear();
      this.selected = null;
      $("jobs").tBodies[0].replaceChildren();
      const box = $("filter-session");
      while (box.options.length > 1) box.remove(1);  // names from a runtime just left
    }

    /** A new list from the runtime (newest first). */
    update(jobs) {
      this.jobs = jobs;
      updateSessionFilter(jobs);
      const listed = new Set(jobs.map((j) => j.job_id));
      for (const id of [...this.rows.keys()]) if (!listed.has(id)) this.rows.delete(id);
      this.render();
    }

    markSelected(jobId) {
      this.selected = jobId;
      for (const [id, tr] of this.rows) tr.classList.toggle("selected", id === jobId);
    }

    render() {
      const shown = this.jobs.filter(matches);
      const rows = shown.map((job) => {
        let tr = this.rows.get(job.job_id);
        if (!tr) {
          tr = document.createElement("tr");
          tr.addEventListener("click", () => this.onSelect(job.job_id));
          this.rows.set(job.job_id, tr);
        }
        tr.dataset.jobId = job.job_id;
        tr.dataset.status = job.status;
        const st = document.createElement("td");
        st.className = "state";
        const took = document.createElement("span");
        took.className = "took";
        took.textContent = fmtDuration(duration(job));
        st.append(badge(job.status), took);
        const what = document.createElement("td");
        what.className = "job";
        const jid = document.createElement("span");
        jid.className = "jid";
        jid.textContent = job.job_id;
        const preview = document.createElement("span");
        preview.className = "preview";
        preview.textContent = codePreview(job.code);
        what.title = job.job_id + "\n\n" + (job.code || "").slice(0, 600);
        what.append(jid, preview);
        const when = document.createElement("td");
        when.className = "when";
        const ago = document.createElement("span");
        ago.textContent = fmtAgo(job.started_at || job.created_at);
        const abs = document.createElement("span");
        abs.className = "abs";
        abs.textContent = fmtDate(job.started_at || job.created_at);
        when.append(ago, abs);
        tr.replaceChildren(st, what, cell(job.session, "c-session"), when,
                           cell(job.client || "–", "c-client"));
        tr.cells[2].title = job.session;
        tr.cells[4].title = job.client || "";
        tr.classList.toggle("selected", job.job_id === this.selected);
        return tr;
      });
      $("jobs").tBodies[0].replaceChildren(...rows);
      $("jobs-empty").textContent = this.jobs.length ? "No job matches the filters." : "No jobs yet.";
      $("jobs-empty").hidden = shown.length > 0;
      $("jobs-count").textContent = shown.length === this.jobs.length
        ? `(${this.jobs.length})` : `(${shown.length} of ${this.jobs.length})`;
    }
  }

  window.SmartColabJobs = {
    JobList,
    format: { fmtDate, fmtAgo, fmtWhen, fmtDuration, duration, cell, badge },
  };
})();
