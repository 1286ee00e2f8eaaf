// The runtime monitor page. It holds no data of its own: everything comes from the
// runtime's authenticated API, polled (tunnels may not pass server-sent events).
"use strict";
(function () {
  const KEY = "smartcolab.secret";
  const TERMINAL = new Set(["succeeded", "failed", "timed_out", "cancelled", "lost"]);
  const JOBS_EVERY_MS = 2000, SESSIONS_EVERY_MS = 3000, RESOURCES_EVERY_MS = 3000;
  const DETAIL_WAIT_S = 5, MIN_POLL_GAP_MS = 400, MAX_JOBS_SHOWN = 200;
  const $ = (id) => document.getElementById(id);

  let secret = null;
  let generation = 0;          // bumped on logout: every loop of an older one stops
  let selected = null;         // job id shown in the detail panel
  let detailAbort = null;
  let samples = [];
  // Session rows are kept and refilled, not rebuilt, on each poll (as job rows are, in
  // joblist.js): a half-done two-click restart must survive the next refresh.
  const sessionRows = new Map();
  const { fmtWhen, fmtDuration, duration, cell, badge } = window.SmartColabJobs.format;
  let jobList = null;          // the job list (joblist.js), made at start
  let output = null;           // the selected job's output as a terminal would show it
  let resInfo = { interval_s: 2, window_s: 600, gpu_names: [] };

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const stripAnsi = (text) => text.replace(/\u001b\[[0-9;?]*[ -\/]*[@-~]/g, "");

  /** Call the runtime's API (same origin, relative path) with the bearer secret. */
  async function api(method, path, params, signal) {
    const url = new URL(path, window.location.href);
    for (const [k, v] of Object.entries(params || {})) url.searchParams.set(k, String(v));
    let response;
    try {
      response = await fetch(url, {
        method, signal, cache: "no-store", credentials: "omit",
        headers: secret
          ? { "Authorization": "Bearer " + secret, "ngrok-skip-browser-warning": "1" }
          : { "ngrok-skip-browser-warning": "1" },
      });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "unreachable", "cannot reach the runtime: " + err.message);
    }
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) {
      const e = body && body.error ? body.error : {};
      throw new ApiError(response.status, e.code || "http_" + response.status,
                         e.message || `HTTP ${response.status}`);
    }
    if (body === null) throw new ApiError(response.status, "bad_body", "the runtime sent no JSON");
    return body;
  }

  // ------------------------------------------------------------ login / logout
  function takeSecretFromFragment() {
    const hash = window.location.hash.replace(/^#/, "");
    if (!hash) return;
    const value = new URLSearchParams(hash).get("secret");
    if (value) {
      sessionStorage.setItem(KEY, value);
      // Out of the address bar and the history: the secret must not linger in view.
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
  }

  function showLogin(message) {
    generation++;
    secret = null;
    selected = null;
    if (detailAbort) detailAbort.abort();
    sessionStorage.removeItem(KEY);
    // No data stays on the page once the secret is gone or refused.
    $("app").hidden = true;
    for (const id of ["charts"]) $(id).replaceChildren();
    $("sessions").tBodies[0].replaceChildren();
    $("detail").hidden = true;
    for (const id of ["code", "output", "results", "images", "error"]) $(id).replaceChildren();
    samples = [];
    if (jobList) jobList.clear();
    sessionRows.clear();
    output = null;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    setConn(message ? "bad" : "", message ? "not connected" : "enter the secret");
    $("secret").value = "";
    $("secret").focus();
  }

  function setConn(cls, text) {
    $("conn").className = "conn " + cls;
    $("conn").textContent = text;
  }

  function notice(text) {
    $("notice").textContent = text;
  }

  function authFailed(err) {
    if (err.status === 401) {
      showLogin("The runtime refused this secret (401): " + err.message +
                ". Enter the secret printed when the runtime started.");
      return true;
    }
    return false;
  }

  async function login(candidate) {
    secret = candidate;
    $("login-error").textContent = "";
    setConn("", "checking the secret…");
    try {
      await api("GET", "resources", { since: Date.now() / 1000 });
    } catch (err) {
      if (!authFailed(err)) {
        secret = null;
        $("login-error").textContent = err.message;
        setConn("bad", "not connected");
      }
      return;
    }
    if (candidate) sessionStorage.setItem(KEY, candidate);
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    setConn("ok", "connected");
    const gen = ++generation;
    loop(gen, refreshJobs, JOBS_EVERY_MS);
    loop(gen, refreshSessions, SESSIONS_EVERY_MS);
    loop(gen, refreshResources, RESOURCES_EVERY_MS);
  }

  /** Run `fn` every `everyMs` until the generation changes; a 401 logs out. */
  async function loop(gen, fn, everyMs) {
    while (gen === generation) {
      try {
        await fn(gen);
        if (gen === generation) setConn("ok", "connected");
      } catch (err) {
        if (gen !== generation || authFailed(err)) return;
        setConn("bad", err.message);
      }
      await sleep(everyMs);
    }
  }

  // ------------------------------------------------------------ jobs
  async function refreshJobs(gen) {
    const list = await api("GET", "jobs", { limit: MAX_JOBS_SHOWN });
    if (gen !== generation) return;
    jobList.update(list.jobs.slice().sort((a, b) => b.created_at - a.created_at).slice(0, MAX_JOBS_SHOWN));
    if (selected === null && jobList.jobs.length > 0) {
      const running = jobList.jobs.find((j) => j.status === "running");
      select((running || jobList.jobs[0]).job_id);
    }
  }

  function select(jobId) {
    if (jobId === selected) return;
    selected = jobId;
    jobList.markSelected(jobId);
    if (detailAbort) detailAbort.abort();
    detailAbort = new AbortController();
    for (const id of ["code", "output", "results", "images", "error"]) $(id).replaceChildren();
    output = new window.SmartColabTerm.Terminal();
    $("error").hidden = true;
    $("progress").hidden = true;
    $("output-note").textContent = "";
    $("detail-title").textContent = jobId;
    // Nothing of the previously selected job may stay while this one loads.
    $("detail-meta").textContent = "";
    $("detail-status").textContent = "";
    $("detail-status").className = "badge";
    $("detail").hidden = false;
    followJob(generation, jobId, detailAbort.signal);
  }

  /** Long-poll one job with since=cursor, appending new output as it arrives. */
  async function followJob(gen, jobId, signal) {
    let cursor = 0;
    let first = true;
    while (gen === generation && selected === jobId) {
      const started = Date.now();
      let view;
      try {
        view = await api("GET", "jobs/" + encodeURIComponent(jobId),
                         { since: cursor, wait: first ? 0 : DETAIL_WAIT_S }, signal);
      } catch (err) {
        if (err.name === "AbortError" || gen !== generation || authFailed(err)) return;
        notice("job " + jobId + ": " + err.message);
        await sleep(2000);
        continue;
      }
      if (gen !== generation || selected !== jobId) return;
      if (first) {
        $("code").replaceChildren(window.SmartColabHL.highlight(view.code));
        first = false;
      }
      if (view.output) {
        const out = $("output");
        const stick = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
        output.write(stripAnsi(view.output));
        out.textContent = output.text();
        if (stick) out.scrollTop = out.scrollHeight;
      }
      if (view.output_truncated) {
        $("output-note").textContent =
          `(capped: ${view.output_bytes} bytes in all; GET /jobs/${jobId}/output has everything)`;
      }
      cursor = view.cursor;
      showJobState(view);
      if (TERMINAL.has(view.status)) return;
      const gap = MIN_POLL_GAP_MS - (Date.now() - started);
      if (gap > 0) await sleep(gap);
    }
  }

  function showJobState(view) {
    const st = $("detail-status");
    st.className = "badge s-" + view.status;
    st.textContent = view.status;
    $("cancel-job").disabled = TERMINAL.has(view.status);
    $("detail-meta").textContent =
      `session ${view.session} · submitted by ${view.client || "unknown"} · ` +
      `created ${fmtWhen(view.created_at)} · started ${fmtWhen(view.started_at)} · ` +
      `duration ${fmtDuration(duration(view))}` +
      (view.timeout ? ` · timeout ${view.timeout} s` : " · no timeout");
    showProgress(view);
    const result = view.result;
    if (!result) return;
    const texts = [], images = [];
    for (const o of result.outputs || []) {
      const mime = o.image_mime || "";
      if (o.image_base64 && /^image\/(png|jpeg|gif|webp)$/.test(mime)) {
        const img = document.createElement("img");
        img.alt = `${o.type} image`;
        img.src = `data:${mime};base64,` + o.image_base64;
        images.push(img);
      } else if (o.text) {
        const pre = document.createElement("pre");
        pre.className = "result";
        pre.textContent = (o.execution_count ? `Out[${o.execution_count}]: ` : "") + o.text;
        texts.push(pre);
      }
    }
    $("results").replaceChildren(...texts);
    $("images").replaceChildren(...images);
    // The traceback is already in the output stream (the kernel prints it there):
    // here only its last line, so it is not shown twice.
    const lines = [];
    if (result.error) lines.push(`${result.error.ename}: ${result.error.evalue}`);
    if (result.message) lines.push(result.message);
    $("error").textContent = lines.join("\n");
    $("error").hidden = lines.length === 0;
  }

  /** Running: the latest progress-bar frame's percentage if the output has one, else an
   *  indeterminate bar; with the elapsed time and the time left before the timeout. */
  function showProgress(view) {
    const box = $("progress");
    if (view.status !== "running" && view.status !== "queued") { box.hidden = true; return; }
    box.hidden = false;
    const bar = $("progress-bar");
    const pct = output ? output.percent() : null;
    const parts = [view.status === "queued" ? "queued" : `running ${fmtDuration(duration(view))}`];
    if (pct !== null && view.status === "running") {
      bar.classList.remove("indeterminate");
      bar.style.width = pct + "%";
      parts.unshift(`${pct} %`);
    } else {
      bar.classList.add("indeterminate");
      bar.style.width = "";
    }
    if (view.timeout && view.started_at) {
      const left = view.started_at + view.timeout - Date.now() / 1000;
      if (left > 0) parts.push(`timeout in ${fmtDuration(left)}`);
    }
    $("progress-text").textContent = parts.join(" · ");
  }

  async function cancelSelected() {
    if (!selected) return;
    const jobId = selected;
    try {
      await api("POST", "jobs/" + encodeURIComponent(jobId) + "/cancel");
      notice("cancel requested for " + jobId);
    } catch (err) {
      if (!authFailed(err)) notice("cancel " + jobId + ": " + err.message);
    }
  }

  // ------------------------------------------------------------ sessions
  function actionButton(label, cls, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.className = cls;
    b.addEventListener("click", () => onClick(b));
    return b;
  }

  async function sessionAction(name, action) {
    try {
      await api("POST", "sessions/" + encodeURIComponent(name) + "/" + action);
      notice(`${action} sent to session ${name}`);
    } catch (err) {
      if (!authFailed(err)) notice(`${action} ${name}: ${err.message}`);
    }
  }

  async function refreshSessions(gen) {
    const list = await api("GET", "sessions");
    if (gen !== generation) return;
    const rows = list.sessions.map((s) => {
      let row = sessionRows.get(s.name);
      if (!row) {
        row = { tr: document.createElement("tr"), actions: sessionActions(s.name) };
        row.tr.dataset.session = s.name;
        sessionRows.set(s.name, row);
      }
      const st = document.createElement("td");
      st.appendChild(badge(s.status));
      row.tr.replaceChildren(
        cell(s.name, "id"), st, cell(s.running_job || "–", "id"), cell(String(s.queued)),
        cell(s.kernel_pid === null || s.kernel_pid === undefined ? "–" : String(s.kernel_pid)),
        row.actions);
      return row.tr;
    });
    for (const name of [...sessionRows.keys()]) {
      if (!list.sessions.some((s) => s.name === name)) sessionRows.delete(name);
    }
    $("sessions").tBodies[0].replaceChildren(...rows);
  }

  function sessionActions(name) {
    const actions = document.createElement("td");
    actions.append(
      actionButton("Interrupt", "interrupt", () => sessionAction(name, "interrupt")),
      " ",
      // Two clicks: a restart loses the session's variables. (No confirm(): an
      // iframe in a notebook may not be allowed dialogs.)
      actionButton("Restart", "restart danger", (b) => {
        if (b.dataset.armed) { sessionAction(name, "restart"); return; }
        b.dataset.armed = "1";
        b.textContent = "Confirm restart";
        setTimeout(() => { delete b.dataset.armed; b.textContent = "Restart"; }, 4000);
      }),
    );
    return actions;
  }

  // ------------------------------------------------------------ resources
  async function refreshResources(gen) {
    const since = samples.length ? samples[samples.length - 1].t : 0;
    const h = await api("GET", "resources", { since });
    if (gen !== generation) return;
    resInfo = h;
    samples = samples.concat(h.samples);
    const t1 = samples.length ? samples[samples.length - 1].t : Date.now() / 1000;
    samples = samples.filter((s) => s.t >= t1 - h.window_s);
    window.SmartColabCharts.drawResources($("charts"), $("res-note"), samples, resInfo, t1);
  }

  // ------------------------------------------------------------ start
  function start() {
    takeSecretFromFragment();
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = $("secret").value.trim();
      if (value) login(value);
    });
    $("logout").addEventListener("click", () => showLogin(""));
    $("cancel-job").addEventListener("click", cancelSelected);
    jobList = new window.SmartColabJobs.JobList(select);
    const stored = sessionStorage.getItem(KEY);
    if (stored) {
      $("login").hidden = true;
      login(stored);
    } else {
      probeNoAuth();
    }
  }

  /** A runtime started with --insecure-no-auth (loopback only) needs no secret. */
  async function probeNoAuth() {
    secret = "";
    try {
      await api("GET", "resources", { since: Date.now() / 1000 });
    } catch (_) {
      showLogin("");
      return;
    }
    notice("authentication is off on this runtime (loopback only)");
    login("");
  }

  document.addEventListener("DOMContentLoaded", start);
})();
