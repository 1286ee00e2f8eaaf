// The job monitor: follows one job through the bridge's own tools, called through the
// host (tools/call over the MCP Apps bridge); it never talks to the runtime itself.
//   get_job_output  the raw log, page by page from a byte offset (no side effect: the
//                   model's get_job cursor is left alone), shown as a terminal would
//   list_jobs       status, submit time and duration
//   probe_colab_environment  CPU load, RAM and GPUs, every few polls
//   cancel_job      the Cancel button
"use strict";
(function () {
  const { App, applyDocumentTheme, applyHostStyleVariables, applyHostFonts } = globalThis.McpExtApps;
  const { render } = globalThis.SmartColabTerminal;
  const POLL_MS = 1000;
  const PROBE_EVERY = 5; // polls
  const PAGE_BYTES = 100000;
  const MAX_RAW = 512 * 1024; // characters of raw log kept; older lines are dropped
  const KEEP_LINES = 2000;
  const TERMINAL = new Set(["succeeded", "failed", "timed_out", "cancelled", "lost"]);
  const $ = (id) => document.getElementById(id);

  const job = {};
  let timer = null;
  let clock = null;
  let stopped = false;

  function reset(id) {
    Object.assign(job, {
      id, runtime: null, session: null, status: null, createdAt: null, duration: null,
      offset: 0, raw: "", omitted: false, complete: false, polls: 0, busy: false,
    });
  }
  reset(null);

  const app = new App({ name: "smartcolab-job-monitor", version: "0.0.0-monitor" }, {}, { autoResize: true });

  function textOf(result) {
    return (result.content || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
  }

  async function call(name, args) {
    if (job.runtime) args.runtime = job.runtime;
    const result = await app.callServerTool({ name, arguments: args });
    if (result.isError) throw new Error(textOf(result).split("\n")[0] || `${name} failed`);
    return result;
  }

  function note(text) {
    $("note").hidden = !text;
    $("note").textContent = text || "";
  }

  function ended() {
    return TERMINAL.has(job.status) || job.complete;
  }

  function setStatus(status) {
    if (!status) return;
    job.status = status;
    $("status").textContent = status;
    $("monitor").dataset.status = status;
    $("cancel").disabled = ended();
  }

  function clockText(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const hms = [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60];
    return (hms[0] ? `${hms[0]}:` : "") + hms.slice(1).map((n) => String(n).padStart(2, "0")).join(":");
  }

  function drawElapsed() {
    if (typeof job.duration === "number") $("elapsed").textContent = clockText(job.duration);
    else if (typeof job.createdAt === "number" && !ended()) {
      $("elapsed").textContent = clockText(Date.now() / 1000 - job.createdAt);
    }
  }

  function drawOutput() {
    const pre = $("output");
    const atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
    const head = job.omitted ? "[earlier output omitted here; get_job_output pages through all of it]\n" : "";
    const text = head + render(job.raw);
    if (pre.textContent !== text) {
      pre.textContent = text;
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
  }

  /** Follow the job a result (or get_job's arguments) names; false when none is named. */
  function follow(info) {
    if (!info || typeof info.job_id !== "string") return false;
    if (job.id !== info.job_id) {
      reset(info.job_id);
      $("job").textContent = `job ${info.job_id}`;
      $("output").textContent = "";
    }
    if (info.runtime) job.runtime = info.runtime;
    if (info.session) job.session = info.session;
    if (typeof info.duration_s === "number") job.duration = info.duration_s;
    $("where").textContent = [job.runtime && `runtime ${job.runtime}`, job.session && `session ${job.session}`]
      .filter(Boolean).join(", ");
    $("monitor").dataset.state = "following";
    setStatus(info.status || job.status || "submitted");
    schedule(0);
    return true;
  }

  function schedule(ms) {
    clearTimeout(timer);
    if (!stopped && job.id) timer = setTimeout(poll, ms);
  }

  async function readStatus() {
    const args = { limit: 50 };
    if (job.session) args.session = job.session;
    const data = (await call("list_jobs", args)).structuredContent || {};
    const row = (data.jobs || []).find((j) => j.job_id === job.id);
    if (row) {
      job.createdAt = row.created_at ?? row.submitted_at ?? job.createdAt;
      job.duration = typeof row.duration_s === "number" ? row.duration_s : null;
      setStatus(row.status);
    }
    return data.source === "journal" ? "The runtime is unreachable: status from the bridge's journal." : "";
  }

  async function readOutput() {
    for (let pages = 0; pages < 20; pages++) {
      const result = await call("get_job_output", { job_id: job.id, offset: job.offset, limit: PAGE_BYTES });
      const page = result.structuredContent || {};
      if (typeof page.next_offset !== "number") throw new Error("get_job_output gave no offsets");
      if (job.offset === 0 && page.total_bytes > MAX_RAW && !job.omitted) {
        job.offset = page.total_bytes - MAX_RAW; // a long log: start near its end
        job.omitted = true;
        continue;
      }
      // The text is a header line, then the page (`chars` characters long).
      const text = textOf(result);
      job.raw += typeof page.chars === "number" ? text.slice(text.length - page.chars)
        : text.slice(text.indexOf("\n") + 1);
      job.offset = page.next_offset;
      job.complete = page.complete === true;
      if (job.raw.length > MAX_RAW) {
        job.raw = render(job.raw).split("\n").slice(-KEEP_LINES).join("\n");
        job.omitted = true;
      }
      if (job.complete || page.next_offset >= page.total_bytes) break;
    }
    drawOutput();
  }

  function gb(bytes) {
    return (bytes / 1e9).toFixed(1);
  }

  async function readResources() {
    const p = (await call("probe_colab_environment", {})).structuredContent || {};
    const load = (p.load_avg || [])[0];
    // The load average counts runnable processes: above the core count, work waits.
    $("cpu").textContent = `${typeof load === "number" ? `load ${load.toFixed(2)} on ` : ""}${p.cpu_count ?? "?"} cores`;
    if (p.ram_total_bytes) {
      const used = p.ram_total_bytes - p.ram_available_bytes;
      $("ram").textContent = `${gb(used)} / ${gb(p.ram_total_bytes)} GB (${Math.round((100 * used) / p.ram_total_bytes)}%)`;
    }
    const gpus = p.gpus || [];
    $("gpu").textContent = gpus.length
      ? gpus.map((g) => `${g.name} ${g.memory_used_mb}/${g.memory_total_mb} MB` +
          (typeof g.utilization_pct === "number" ? `, ${Math.round(g.utilization_pct)}%` : "")).join("; ")
      : (p.accelerator && p.accelerator !== "none" ? p.accelerator : "none");
  }

  async function poll() {
    if (stopped || !job.id || job.busy) return;
    const id = job.id;
    job.busy = true;
    let problem = "";
    try {
      problem = await readStatus();
      await readOutput();
      if (job.polls % PROBE_EVERY === 0 || ended()) {
        await readResources().catch((e) => { problem = problem || `resources: ${e.message}`; });
      }
    } catch (e) {
      problem = e.message;
    } finally {
      job.busy = false;
      job.polls += 1;
    }
    if (job.id !== id) return; // another job was named meanwhile: its own poll runs
    note(problem);
    if (job.complete && !TERMINAL.has(job.status)) setStatus("finished");
    drawElapsed();
    $("cancel").disabled = ended();
    // Until the whole log is read: `complete` only comes once the job has ended.
    if (!job.complete) schedule(problem ? 4 * POLL_MS : POLL_MS);
  }

  $("cancel").addEventListener("click", async () => {
    if (!job.id) return;
    $("cancel").disabled = true;
    try {
      const result = await call("cancel_job", { job_id: job.id });
      setStatus((result.structuredContent || {}).status);
      note("");
    } catch (e) {
      note(`cancel failed: ${e.message}`);
      $("cancel").disabled = ended();
    }
    schedule(0);
  });

  function applyContext(ctx) {
    if (!ctx) return;
    if (ctx.theme) applyDocumentTheme(ctx.theme);
    if (ctx.styles?.variables) applyHostStyleVariables(ctx.styles.variables);
    if (ctx.styles?.css?.fonts) applyHostFonts(ctx.styles.css.fonts);
  }

  // get_job names its job in its arguments: follow it while the call is still waiting.
  app.ontoolinput = (params) => { follow(params.arguments); };
  app.ontoolresult = (result) => {
    if (!follow(result.structuredContent)) {
      $("monitor").dataset.state = "no-job";
      $("job").textContent = "no job to follow";
      note(textOf(result).slice(0, 2000));
    }
  };
  app.ontoolcancelled = (params) => {
    if (!job.id) note(`The tool call was cancelled${params.reason ? `: ${params.reason}` : ""}.`);
  };
  app.onhostcontextchanged = applyContext;
  app.onteardown = async () => {
    stopped = true;
    clearTimeout(timer);
    clearInterval(clock);
    return {};
  };

  clock = setInterval(drawElapsed, 1000);
  app.connect().then(() => applyContext(app.getHostContext()), (e) => note(`not connected to a host: ${e.message}`));
})();
