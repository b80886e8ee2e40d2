// The dashboard's pages, routed by the URL's hash (#/, #/jobs?…, #/job/<id>, #/nodes,
// #/shares). Each page renders once, then refreshes itself on a timer while it is shown;
// leaving a page stops its timers and any log it follows.

import { ApiError, call, followLog, setToken, token } from "./api.js";
import { STATES, age, badge, duration, h, lineChart, panel, s, table, when } from "./ui.js";

const REFRESH_MS = 2000;
const PANEL_TITLES = {
  counts: "Jobs by state",
  queues: "Job queues",
  environments: "Compute environments",
  throughput: "Throughput (jobs finished per minute)",
  depth: "Queue depth",
  nodes: "Nodes",
  shares: "Fair share",
  jobs: "Latest jobs",
  deadLetters: "Undelivered events (dead letters)",
};
const WAITING = ["SUBMITTED", "PENDING", "RUNNABLE"];

let me = null; // whoAmI: {name, role, owner}
let page = null; // {timers: [], aborts: []} of the page shown

const main = () => document.getElementById("main");

function isAdmin() {
  return me && me.role === "admin";
}

function mayChange(job) {
  return isAdmin() || (me && job.submittedBy === me.name);
}

function show(message, kind = "error") {
  const b = document.getElementById("banner");
  b.textContent = message;
  b.className = kind;
  b.hidden = !message;
}

function jobLink(id, text) {
  return h("a", { href: `#/job/${encodeURIComponent(id)}`, class: "job-link" }, text || id);
}

// --- pages' life cycle -----------------------------------------------------------------------

function leave() {
  if (!page) return;
  page.timers.forEach(clearInterval);
  page.aborts.forEach((a) => a.abort());
  page = null;
}

function every(ms, fn) {
  const current = page;
  let busy = false;
  const tick = async () => {
    if (busy || page !== current) return;
    busy = true;
    try {
      await fn();
    } catch (e) {
      if (page === current) report(e);
    } finally {
      busy = false;
    }
  };
  current.timers.push(setInterval(tick, ms));
  return tick();
}

function report(e) {
  if (e instanceof ApiError && e.status === 401) {
    logout("Your token is no longer accepted: log in again.");
    return;
  }
  if (e && e.name === "AbortError") return;
  show(e instanceof ApiError ? `${e.type}: ${e.message}` : String(e));
}

async function act(what, op, body, then) {
  try {
    await call(op, body);
    show(`${what}: done`, "info");
    if (then) await then();
  } catch (e) {
    report(e);
  }
}

// --- login -------------------------------------------------------------------------------------

function loginPage(message) {
  document.getElementById("top").hidden = true;
  const input = h("input", { id: "token", type: "password", name: "token", autocomplete: "current-password", required: true, size: 48 });
  const form = h("form", { id: "login", class: "login" },
    h("h1", {}, "mnp dashboard"),
    h("p", {}, "Log in with the head's token (head.json) or your user token."),
    h("label", {}, "Token ", input),
    h("button", { type: "submit" }, "Log in"),
    message ? h("p", { class: "error" }, message) : null);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      me = await call("whoAmI", {}, undefined, input.value.trim());
      setToken(input.value.trim());
      show("");
      route();
    } catch (e) {
      loginPage(e instanceof ApiError && e.status === 401 ? "That token is not accepted." : String(e));
    }
  });
  main().replaceChildren(form);
  input.focus();
}

function logout(message) {
  leave();
  setToken(null);
  me = null;
  show("");
  loginPage(message);
}

// --- overview: the panels the user arranged ---------------------------------------------------

async function overviewPage() {
  const layout = await call("getDashboardLayout");
  let panels = layout.panels;
  const body = h("div", { class: "panels" });
  const editBox = h("div", { class: "arrange", hidden: true });
  const arrangeButton = h("button", { type: "button", id: "arrange" }, "Arrange panels");
  main().replaceChildren(h("div", { class: "toolbar" }, h("h1", {}, "Overview"), arrangeButton), editBox, body);

  const editor = () => {
    const chosen = [...panels, ...layout.available.filter((p) => !panels.includes(p))];
    const rows = chosen.map((id) => {
      const box = h("input", { type: "checkbox", name: id, checked: panels.includes(id) });
      const up = h("button", { type: "button", title: "Move up" }, "↑");
      const li = h("li", { "data-panel": id }, box, " ", PANEL_TITLES[id], " ", up);
      up.addEventListener("click", () => li.previousElementSibling && li.parentNode.insertBefore(li, li.previousElementSibling));
      return li;
    });
    const list = h("ol", {}, rows);
    const save = h("button", { type: "button", id: "save-layout" }, "Save");
    save.addEventListener("click", async () => {
      const picked = [...list.children].filter((li) => li.querySelector("input").checked).map((li) => li.dataset.panel);
      try {
        panels = (await call("putDashboardLayout", { panels: picked })).panels;
        editBox.hidden = true;
        show("Layout saved", "info");
        await refresh();
      } catch (e) {
        report(e);
      }
    });
    editBox.replaceChildren(h("p", {}, "Tick the panels to show; order them with ↑."), list, save);
  };
  arrangeButton.addEventListener("click", () => {
    editBox.hidden = !editBox.hidden;
    if (!editBox.hidden) editor();
  });

  const refresh = async () => {
    const [ov, series] = await Promise.all([call("dashboardOverview"), call("dashboardSeries")]);
    const extra = {};
    if (panels.includes("nodes")) extra.nodes = (await call("listNodes")).nodes;
    if (panels.includes("jobs")) extra.jobs = (await call("dashboardJobs", { maxResults: 10 })).jobSummaryList;
    if (panels.includes("shares")) extra.shares = await shares(ov.queues);
    if (panels.includes("deadLetters") && isAdmin()) extra.dead = (await call("listDeadLetters", { maxResults: 20 })).deadLetters;
    body.replaceChildren(...panels.map((id) => renderPanel(id, ov, series, extra)));
  };
  await every(REFRESH_MS * 2, refresh);
}

async function shares(queues) {
  const fair = queues.filter((q) => q.schedulingPolicy);
  return Promise.all(fair.map((q) => call("describeShares", { jobQueue: q.jobQueueName })));
}

function renderPanel(id, ov, series, extra) {
  const title = PANEL_TITLES[id];
  if (id === "counts") {
    return panel(title, id, h("div", { class: "tiles" },
      STATES.map((st) => h("a", { class: `tile st-${st}`, href: `#/jobs?status=${st}` },
        h("span", { class: "n" }, String(ov.jobCounts[st] || 0)), h("span", {}, st)))));
  }
  if (id === "queues") {
    const rows = ov.queues.map((q) => h("tr", { "data-queue": q.jobQueueName },
      h("td", {}, h("a", { href: `#/jobs?queue=${encodeURIComponent(q.jobQueueName)}` }, q.jobQueueName)),
      h("td", {}, q.state), h("td", {}, String(q.priority)), h("td", {}, q.schedulingPolicy || "FIFO"),
      ["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"].map((st) => h("td", { class: "num" }, String(q.depth[st] || 0))),
      h("td", {}, isAdmin() ? toggle("job queue", "updateJobQueue", { jobQueue: q.jobQueueName }, q.state) : "")));
    return panel(title, id, table(["Queue", "State", "Priority", "Policy", "Submitted", "Pending", "Runnable", "Starting", "Running", ""], rows));
  }
  if (id === "environments") {
    const rows = ov.computeEnvironments.map((c) => h("tr", { "data-ce": c.computeEnvironmentName },
      h("td", {}, c.computeEnvironmentName), h("td", {}, `${c.type} / ${c.provider}`), h("td", {}, `${c.state} ${c.status}`),
      h("td", { class: "num" }, `${c.minNodes} / ${c.desiredNodes} / ${c.maxNodes}`),
      h("td", { class: "num" }, String(c.nodesUp)),
      h("td", {}, meter(c.utilisation), ` ${c.usedVcpus} of ${c.vcpus} vCPUs`),
      h("td", {}, isAdmin() ? toggle("compute environment", "updateComputeEnvironment", { computeEnvironment: c.computeEnvironmentName }, c.state) : "")));
    return panel(title, id, table(["Environment", "Kind", "State", "Min / desired / max nodes", "Nodes up", "Utilisation", ""], rows));
  }
  if (id === "throughput") {
    const perMinute = series.finished.map((n) => Math.round((n * 600) / series.sampleSeconds) / 10);
    return panel(title, id, lineChart(series.at, [{ name: "finished / min", values: perMinute, cls: "c-finished" }], "throughput"));
  }
  if (id === "depth") {
    return panel(title, id, lineChart(series.at, [
      { name: "runnable", values: series.runnable, cls: "c-runnable" },
      { name: "running", values: series.running, cls: "c-running" },
    ], "queue depth"));
  }
  if (id === "nodes") return panel(title, id, nodesTable(extra.nodes || []));
  if (id === "jobs") return panel(title, id, jobsTable(extra.jobs || []));
  if (id === "deadLetters") return panel(title, id, isAdmin() ? deadTable(extra.dead || []) : h("p", { class: "muted" }, "For admins."));
  if (id === "shares") return panel(title, id, ...(extra.shares || []).map(sharesTable), (extra.shares || []).length ? null : h("p", {}, "No queue has a fair-share policy."));
  return panel(title, id);
}

function meter(fraction) {
  const bar = h("span", { class: "meter-fill" });
  bar.style.width = `${Math.round(Math.min(1, fraction) * 100)}%`;
  return h("span", { class: "meter", title: `${Math.round(fraction * 100)}%` }, bar);
}

function toggle(what, op, body, state) {
  const next = state === "ENABLED" ? "DISABLED" : "ENABLED";
  const b = h("button", { type: "button", class: "small" }, state === "ENABLED" ? "Disable" : "Enable");
  b.addEventListener("click", () => act(`${next === "DISABLED" ? "Disable" : "Enable"} ${what}`, op, { ...body, state: next }));
  return b;
}

function deadTable(dead) {
  return table(["Given up", "Destination", "Event", "Tries", "Last error"],
    dead.map((d) => {
      const detail = (d.event && d.event.detail) || {};
      const target = d.target.webhook || d.target.command || d.target.topic || JSON.stringify(d.target);
      return h("tr", {}, h("td", {}, when(d.deadAt)), h("td", {}, d.source ? `${d.source}: ${target}` : target),
        h("td", {}, detail.jobId ? jobLink(detail.jobId, `${detail.jobName || detail.jobId} ${detail.status || ""}`) : (d.event && d.event["detail-type"]) || d.eventId),
        h("td", { class: "num" }, String(d.attempts)), h("td", {}, d.lastError || ""));
    }));
}

function sharesTable(sh) {
  return h("div", { class: "shares" },
    h("h3", {}, `${sh.jobQueue}: decay ${sh.shareDecaySeconds} s, reservation ${sh.computeReservation}, ${sh.reservedVcpus} of ${sh.maxVcpus} vCPUs held back`),
    table(["Share", "Usage (vCPU·s)", "Weight", "Weighted usage", "Running vCPUs", "Runnable jobs", "Active"],
      sh.shares.map((x) => h("tr", {}, h("td", {}, x.shareIdentifier || "(none)"), h("td", { class: "num" }, String(x.usageVcpuSeconds)),
        h("td", { class: "num" }, String(x.weightFactor)), h("td", { class: "num" }, String(x.weightedUsage)),
        h("td", { class: "num" }, String(x.runningVcpus)), h("td", { class: "num" }, String(x.runnableJobs)), h("td", {}, x.active ? "yes" : "no")))));
}

// --- jobs ------------------------------------------------------------------------------------------

function jobsTable(jobs) {
  return table(["Job", "Name", "Queue", "State", "User", "Created", "Attempts", "Exit"],
    jobs.map((j) => h("tr", { "data-job": j.jobId },
      h("td", {}, jobLink(j.jobId, j.jobNumber !== undefined ? String(j.jobNumber) : j.jobId.slice(0, 8))),
      h("td", {}, j.jobName), h("td", {}, j.jobQueueName), h("td", {}, badge(j.status), j.statusReason ? h("small", {}, ` ${j.statusReason}`) : null),
      h("td", {}, j.submittedBy), h("td", {}, when(j.createdAt)), h("td", { class: "num" }, String(j.attempt || 0)),
      h("td", { class: "num" }, j.container && j.container.exitCode !== undefined ? String(j.container.exitCode) : ""))),
    { class: "jobs" });
}

async function jobsPage(params) {
  const fields = { jobQueue: "queue", jobStatus: "status", jobName: "name", user: "user", arrayJobId: "parent" };
  const form = h("form", { class: "filters", id: "job-filters" },
    h("label", {}, "Queue ", h("input", { name: "queue", value: params.get("queue") || "" })),
    h("label", {}, "State ", h("select", { name: "status" }, h("option", { value: "" }, "any"),
      STATES.map((st) => h("option", { value: st, selected: params.get("status") === st }, st)))),
    h("label", {}, "Name starts ", h("input", { name: "name", value: params.get("name") || "" })),
    h("label", {}, "User ", h("input", { name: "user", value: params.get("user") || "" })),
    h("label", {}, "Array parent ", h("input", { name: "parent", value: params.get("parent") || "" })),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    location.hash = `#/jobs?${q}`;
  });
  const list = h("div", {});
  const prev = h("button", { type: "button", id: "prev" }, "← Newer");
  const next = h("button", { type: "button", id: "next" }, "Older →");
  const pageNo = h("span", {});
  main().replaceChildren(h("h1", {}, "Jobs"), form, list, h("div", { class: "pager" }, prev, pageNo, next));
  const body = {};
  for (const [k, p] of Object.entries(fields)) if (params.get(p)) body[k] = params.get(p);
  const tokens = [null];
  let more = null;
  const refresh = async () => {
    const here = tokens[tokens.length - 1];
    const r = await call("dashboardJobs", { ...body, maxResults: 25, ...(here ? { nextToken: here } : {}) });
    more = r.nextToken || null;
    list.replaceChildren(jobsTable(r.jobSummaryList));
    prev.disabled = tokens.length === 1;
    next.disabled = !more;
    pageNo.textContent = ` page ${tokens.length} `;
  };
  prev.addEventListener("click", () => { tokens.pop(); refresh().catch(report); });
  next.addEventListener("click", () => { if (more) { tokens.push(more); refresh().catch(report); } });
  await every(REFRESH_MS, refresh);
}

// --- one job ---------------------------------------------------------------------------------------

async function jobPage(jobId) {
  const head = h("div", { class: "job-head" });
  const actions = h("div", { class: "actions", id: "actions" });
  const detail = h("div", { class: "detail" });
  const grid = h("div", { id: "array-grid" });
  const logBox = h("pre", { id: "log", class: "log" });
  const logState = h("span", { id: "log-state" }, "connecting");
  main().replaceChildren(head, actions, detail, grid,
    h("section", { class: "panel" }, h("h2", {}, "Log ", h("small", {}, logState)), logBox));
  let last = null;
  let following = false;

  const follow = () => {
    if (following) return;
    following = true;
    const abort = new AbortController();
    page.aborts.push(abort);
    logBox.textContent = "";
    logState.textContent = "following";
    followLog(jobId, (text) => {
      const atEnd = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
      logBox.append(text);
      if (atEnd) logBox.scrollTop = logBox.scrollHeight;
    }, abort.signal).then(() => {
      following = false;
      logState.textContent = last && isTerminal(last) ? "ended" : "waiting for the next attempt";
    }, (e) => {
      following = false;
      if (e.name !== "AbortError") logState.textContent = `not available (${e.message})`;
    });
  };

  const refresh = async () => {
    const r = await call("describeJobs", { jobs: [jobId] });
    if (!r.jobs.length) {
      head.replaceChildren(h("h1", {}, `No job ${jobId}`));
      return;
    }
    const job = r.jobs[0];
    const changed = !last || last.status !== job.status || (last.attempts || []).length !== (job.attempts || []).length;
    last = job;
    head.replaceChildren(h("h1", {}, job.jobName, " ", badge(job.status)),
      h("p", { class: "ids" }, `${job.jobId}`, job.jobNumber !== undefined ? ` · number ${job.jobNumber}` : "",
        ` · queue ${job.jobQueueName} · by ${job.submittedBy}`, job.statusReason ? ` · ${job.statusReason}` : ""));
    if (changed) {
      actions.replaceChildren(...jobActions(job, refresh));
      detail.replaceChildren(...await jobDetail(job));
    }
    if (job.arrayProperties && job.arrayProperties.index === undefined) await arrayGrid(job, grid);
    else if (job.nodeProperties) await nodesOfJob(job, grid);
    const parentOnly = (job.arrayProperties && job.arrayProperties.index === undefined) || job.nodeProperties;
    if (parentOnly) logState.textContent = "each child (node) has its own log: open one above";
    else if (!mayChange(job)) logState.textContent = "only its owner or an admin may read this log";
    else if (!following && !(isTerminal(job) && logBox.textContent)) follow();
  };
  await every(REFRESH_MS, refresh);
}

function isTerminal(job) {
  return job.status === "SUCCEEDED" || job.status === "FAILED";
}

function jobActions(job, refresh) {
  if (!mayChange(job)) return [h("span", { class: "muted" }, "Read only: this job is another user's.")];
  const out = [];
  const reason = h("input", { name: "reason", placeholder: "reason", value: "from the dashboard" });
  const confirmThen = (label, id, op) => {
    const b = h("button", { type: "button", id }, label);
    b.addEventListener("click", () => {
      const yes = h("button", { type: "button", id: `${id}-confirm`, class: "danger" }, `Yes, ${label.toLowerCase()}`);
      const no = h("button", { type: "button" }, "No");
      yes.addEventListener("click", () => act(label, op, { jobId: job.jobId, reason: reason.value || "from the dashboard" }, refresh));
      no.addEventListener("click", () => refresh());
      b.replaceWith(h("span", { class: "confirm" }, `${label} ${job.jobName}? `, yes, no));
    });
    return b;
  };
  if (WAITING.includes(job.status)) out.push(confirmThen("Cancel", "cancel", "cancelJob"));
  if (!isTerminal(job)) out.push(confirmThen("Terminate", "terminate", "terminateJob"));
  if (isTerminal(job) && job.arrayProperties?.index === undefined && !job.nodeDetails) {
    const b = h("button", { type: "button", id: "retry" }, "Retry (submit again)");
    b.addEventListener("click", async () => {
      try {
        const r = await call("submitJob", resubmission(job));
        location.hash = `#/job/${encodeURIComponent(r.jobId)}`;
      } catch (e) {
        report(e);
      }
    });
    out.push(b);
  }
  if (out.length && !isTerminal(job)) out.push(reason);
  return out;
}

// The same job once more: its definition, parameters and overrides as they were.
function resubmission(job) {
  const c = job.container || {};
  const overrides = {};
  if (c.command) overrides.command = c.command;
  if (c.resourceRequirements) overrides.resourceRequirements = c.resourceRequirements;
  if (c.environment && !c.environment.some((e) => e.value === "*****")) overrides.environment = c.environment;
  const body = {
    jobName: job.jobName, jobQueue: job.jobQueueName, jobDefinition: job.jobDefinition,
    parameters: job.parameters || {}, containerOverrides: overrides,
  };
  if (job.arrayProperties && job.arrayProperties.size) body.arrayProperties = { size: job.arrayProperties.size };
  if (job.retryStrategy) body.retryStrategy = job.retryStrategy;
  if (job.timeout) body.timeout = job.timeout;
  if (job.shareIdentifier) body.shareIdentifier = job.shareIdentifier;
  if (job.schedulingPriority !== undefined) body.schedulingPriorityOverride = job.schedulingPriority;
  return body;
}

async function jobDetail(job) {
  const c = job.container || {};
  const kv = (pairs) => h("dl", { class: "kv" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const res = (c.resourceRequirements || []).map((r) => `${r.type}=${r.value}`).join(" ");
  const out = [
    panel("Definition", "definition", kv([
      ["Job definition", job.jobDefinition], ["Image", c.image], ["Command", (c.command || []).join(" ")],
      ["Resources", res], ["Created", when(job.createdAt)], ["Started", when(job.startedAt)], ["Stopped", when(job.stoppedAt)],
      ["Node", job.nodeId ? `${job.nodeId} (${job.nodeAddress || ""}) in ${job.computeEnvironment || ""}` : ""],
      ["Exit code", c.exitCode !== undefined ? String(c.exitCode) : ""], ["Reason", c.reason],
      ["Array", job.arrayProperties ? (job.arrayProperties.index !== undefined ? `child ${job.arrayProperties.index} of ${job.arrayProperties.size}` : `${job.arrayProperties.size} children`) : ""],
    ])),
    panel("Parameters", "parameters", table(["Name", "Value"], Object.entries(job.parameters || {}).map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, String(v)))))),
    panel("Attempts", "attempts", table(["#", "Started", "Stopped", "Ran", "Exit code", "Reason"],
      (job.attempts || []).map((a, i) => h("tr", {}, h("td", {}, String(i + 1)), h("td", {}, when(a.startedAt)), h("td", {}, when(a.stoppedAt)),
        h("td", {}, a.startedAt && a.stoppedAt ? duration(a.stoppedAt - a.startedAt) : ""),
        h("td", { class: "num" }, a.container?.exitCode !== undefined ? String(a.container.exitCode) : ""),
        h("td", {}, a.statusReason || a.container?.reason || ""))))),
    panel("State history", "timeline", timeline(job)),
  ];
  const deps = job.dependsOn || [];
  const parent = job.arrayProperties?.index !== undefined ? job.jobId.split(":")[0] : null;
  if (deps.length || parent) out.push(panel("Dependencies", "dependencies", await dependencyGraph(job, deps, parent)));
  return out;
}

function timeline(job) {
  const hist = job.history || [];
  if (!hist.length) return h("p", {}, "No history yet.");
  const end = job.stoppedAt || Date.now();
  const t0 = hist[0].at;
  const span = Math.max(1, end - t0);
  const W = 600;
  const svg = s("svg", { viewBox: `0 0 ${W} 28`, class: "timeline", role: "img", "aria-label": "state timeline" });
  hist.forEach((e, i) => {
    const until = i + 1 < hist.length ? hist[i + 1].at : end;
    const x = ((e.at - t0) / span) * W;
    const w = Math.max(2, ((until - e.at) / span) * W);
    svg.append(s("rect", { x: x.toFixed(1), y: 4, width: w.toFixed(1), height: 20, class: `seg st-${e.status}` }, s("title", {}, `${e.status} ${when(e.at)}`)));
  });
  const list = h("ol", { class: "history" }, hist.map((e, i) => h("li", {}, badge(e.status), ` ${when(e.at)}`,
    i + 1 < hist.length ? ` (${duration(hist[i + 1].at - e.at)})` : "", e.reason ? ` — ${e.reason}` : "")));
  return h("div", {}, svg, list);
}

async function dependencyGraph(job, deps, parent) {
  const ids = [...deps.map((d) => d.jobId), ...(parent ? [parent] : [])];
  const found = ids.length ? (await call("describeJobs", { jobs: ids })).jobs : [];
  const byId = Object.fromEntries(found.map((j) => [j.jobId, j]));
  const rowH = 34, W = 600, boxW = 230;
  const n = Math.max(1, ids.length);
  const svg = s("svg", { viewBox: `0 0 ${W} ${n * rowH + 8}`, class: "graph", role: "img", "aria-label": "dependencies" },
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" }, s("path", { d: "M0,0 L10,5 L0,10 z" }))));
  const me_y = (n * rowH) / 2 - 10;
  ids.forEach((id, i) => {
    const d = byId[id];
    const y = i * rowH + 6;
    const label = `${parent === id ? "array " : ""}${d ? d.jobName : id.slice(0, 8)}${deps[i]?.type ? ` (${deps[i].type})` : ""}`;
    const a = s("a", { href: `#/job/${encodeURIComponent(id)}` },
      s("rect", { x: 4, y, width: boxW, height: 24, rx: 4, class: `node st-${d ? d.status : "unknown"}` }),
      s("text", { x: 12, y: y + 16 }, `${label}: ${d ? d.status : "?"}`));
    svg.append(a, s("line", { x1: boxW + 4, y1: y + 12, x2: W - boxW - 8, y2: me_y + 12, class: "edge", "marker-end": "url(#arrow)" }));
  });
  svg.append(s("rect", { x: W - boxW - 4, y: me_y, width: boxW, height: 24, rx: 4, class: `node st-${job.status}` }),
    s("text", { x: W - boxW + 4, y: me_y + 16 }, `${job.jobName}: ${job.status}`));
  return svg;
}

async function children(parentId) {
  const out = [];
  let next = null;
  do {
    const r = await call("dashboardJobs", { arrayJobId: parentId, maxResults: 1000, ...(next ? { nextToken: next } : {}) });
    out.push(...r.jobSummaryList);
    next = r.nextToken;
  } while (next && out.length < 10000);
  return out;
}

async function arrayGrid(job, box) {
  const kids = await children(job.jobId);
  const summary = job.arrayProperties.statusSummary || {};
  const cells = kids.map((k) => h("a", { class: `cell st-${k.status}`, href: `#/job/${encodeURIComponent(k.jobId)}`, title: `${k.arrayProperties?.index}: ${k.status}`, "data-index": k.arrayProperties?.index, "data-status": k.status }, String(k.arrayProperties?.index ?? "")));
  box.replaceChildren(panel(`Array children (${job.arrayProperties.size})`, "array",
    h("p", { class: "legend" }, STATES.filter((st) => summary[st]).map((st) => [badge(st), ` ${summary[st]} `])),
    h("div", { class: "grid" }, cells)));
}

async function nodesOfJob(job, box) {
  const kids = await children(job.jobId);
  const details = kids.length ? (await call("describeJobs", { jobs: kids.map((k) => k.jobId) })).jobs : [];
  const ranges = job.nodeProperties.nodeRangeProperties || [];
  const rangeOf = (i) => {
    for (const r of ranges) {
      const [a, b] = String(r.targetNodes).split(":");
      const lo = a === "" ? 0 : Number(a);
      const hi = b === undefined ? lo : b === "" ? job.nodeProperties.numNodes - 1 : Number(b);
      if (i >= lo && i <= hi) return `${r.targetNodes}`;
    }
    return "";
  };
  // MPI ranks, in node order (the hostfile's): tasksPerNode slots per node, else each node's vCPUs
  const settings = job.nodeProperties.mnp || {};
  const perNode = Number(settings.tasksPerNode || 0);
  const vcpus = perNode > 0 ? {} : Object.fromEntries(((await call("listNodes", {})).nodes || []).map((n) => [n.nodeId, Number(n.vcpus || 0)]));
  const slots = new Map(details.map((d) => [d.nodeDetails.nodeIndex, perNode > 0 ? perNode : vcpus[d.nodeId] || 0]));
  const ranksOf = (i) => {
    if (settings.mpi === "none" || ![...slots.keys()].every((k) => slots.get(k) > 0)) return "";
    let first = 0;
    for (let k = 0; k < i; k++) first += slots.get(k) || 0;
    const n = slots.get(i) || 0;
    return n === 1 ? `${first}` : `${first}-${first + n - 1}`;
  };
  const rows = details.sort((a, b) => a.nodeDetails.nodeIndex - b.nodeDetails.nodeIndex).map((d) => h("tr", { "data-node-index": d.nodeDetails.nodeIndex },
    h("td", {}, jobLink(d.jobId, String(d.nodeDetails.nodeIndex))), h("td", {}, d.nodeDetails.isMainNode ? "main" : ""),
    h("td", {}, rangeOf(d.nodeDetails.nodeIndex)), h("td", {}, ranksOf(d.nodeDetails.nodeIndex)),
    h("td", {}, d.nodeId || ""), h("td", {}, d.nodeAddress || ""), h("td", {}, badge(d.status))));
  box.replaceChildren(panel(`Nodes of this job (${job.nodeProperties.numNodes})`, "mnp-nodes",
    table(["Index", "", "Range", "Ranks", "Node", "Address", "State"], rows)));
}

// --- nodes, fair share ------------------------------------------------------------------------------

function nodesTable(nodes) {
  const now = Date.now();
  return table(["Node", "Environment", "Address", "State", "vCPUs free / all", "Memory MiB free / all", "GPUs", "Running", "Heartbeat"],
    nodes.map((n) => h("tr", { "data-node": n.nodeId }, h("td", {}, n.nodeId), h("td", {}, n.computeEnvironment), h("td", {}, n.address),
      h("td", {}, n.status, n.draining ? " (draining)" : ""), h("td", { class: "num" }, `${n.freeVcpus} / ${n.vcpus}`),
      h("td", { class: "num" }, `${n.freeMemoryMiB} / ${n.memoryMiB}`), h("td", { class: "num" }, `${n.freeGpus} / ${n.gpus}`),
      h("td", {}, (n.runningJobs || []).map((id) => [jobLink(id, id.slice(0, 8)), " "])), h("td", {}, age(n.lastHeartbeatAt, now)))));
}

async function nodesPage() {
  const box = h("div", {});
  main().replaceChildren(h("h1", {}, "Nodes"), box);
  await every(REFRESH_MS, async () => box.replaceChildren(nodesTable((await call("listNodes")).nodes)));
}

async function sharesPage() {
  const box = h("div", {});
  main().replaceChildren(h("h1", {}, "Fair share"), box);
  await every(REFRESH_MS * 2, async () => {
    const found = await shares((await call("dashboardOverview")).queues);
    box.replaceChildren(...(found.length ? found.map(sharesTable) : [h("p", {}, "No queue has a fair-share scheduling policy.")]));
  });
}

// --- routing ------------------------------------------------------------------------------------------

async function route() {
  leave();
  if (!token()) return loginPage();
  if (!me) {
    try {
      me = await call("whoAmI");
    } catch (e) {
      return e instanceof ApiError && e.status === 401 ? logout("Log in again.") : report(e);
    }
  }
  document.getElementById("top").hidden = false;
  document.getElementById("who").textContent = `${me.name} (${me.role})`;
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(query || "");
  const here = path.startsWith("/job") ? "#/jobs" : `#${path}`;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("here", a.getAttribute("href") === here);
  page = { timers: [], aborts: [] };
  try {
    if (path.startsWith("/job/")) await jobPage(decodeURIComponent(path.slice(5)));
    else if (path === "/jobs") await jobsPage(params);
    else if (path === "/nodes") await nodesPage();
    else if (path === "/shares") await sharesPage();
    else await overviewPage();
  } catch (e) {
    report(e);
  }
}

document.getElementById("logout").addEventListener("click", () => logout());
window.addEventListener("hashchange", () => { show(""); route(); });
route();
