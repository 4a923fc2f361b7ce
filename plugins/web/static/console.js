// dicombox console: live job progress (server-sent events, polling as a fallback).
// No inline scripts anywhere (the Content-Security-Policy forbids them).
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

  function text(tag, value, cls) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    el.textContent = value == null ? "" : String(value);
    return el;
  }

  function when(seconds) {
    if (!seconds) return "–";
    const d = new Date(seconds * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function actionForm(job, verb, visible) {
    const form = document.createElement("form");
    form.method = "post";
    form.action = `/jobs/${job.id}/${verb}`;
    form.hidden = !visible;
    const token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrf_token";
    token.value = csrf;
    const button = text("button", verb === "cancel" ? "Cancel" : "Retry");
    button.type = "submit";
    form.append(token, button);
    return form;
  }

  function newRow(job, mayAct) {
    const row = document.createElement("tr");
    row.id = `job-${job.id}`;
    row.dataset.job = job.id;
    const progress = document.createElement("td");
    progress.className = "progress";
    const bar = document.createElement("progress");
    bar.max = 100;
    progress.append(bar, text("span", "", "percent"), text("div", "", "text"), text("div", "", "error"),
      text("div", "", "retry"));
    const buttons = document.createElement("td");
    buttons.className = "buttons";
    if (mayAct) buttons.append(actionForm(job, "cancel", false), actionForm(job, "retry", false));
    row.append(text("td", job.id), text("td", job.kind), text("td", job.what, "what"),
      text("td", "", "state"), progress, text("td", "", "tries"), text("td", "", "updated"), buttons);
    return row;
  }

  function show(job) {
    const rows = document.getElementById("job-rows");
    if (!rows) return;
    let row = document.getElementById(`job-${job.id}`);
    if (!row) {
      rows.querySelector("tr.empty")?.remove();
      const mayAct = rows.closest("table").dataset.mayAct === "yes";
      row = newRow(job, mayAct);
      rows.prepend(row);
    }
    row.className = `state-${job.state}`;
    row.querySelector(".state").textContent = job.state_label || job.state;
    row.querySelector("progress").value = job.percent || 0;
    row.querySelector(".percent").textContent = job.percent == null ? "" : `${job.percent} %`;
    row.querySelector(".text").textContent = job.progress || "";
    row.querySelector(".error").textContent = job.last_error || "";
    row.querySelector(".retry").textContent = job.retry_at ? `next try ${when(job.retry_at)}` : "";
    row.querySelector(".tries").textContent = job.tries;
    row.querySelector(".updated").textContent = when(job.updated_at);
    const [cancel, retry] = row.querySelectorAll(".buttons form");
    if (cancel) cancel.hidden = !job.can_cancel;
    if (retry) retry.hidden = !job.can_retry;
  }

  function live(state) {
    const badge = document.getElementById("live");
    if (!badge) return;
    badge.textContent = state;
    badge.classList.toggle("on", state === "live");
  }

  let polling = null;
  function poll() {
    if (polling) return;
    live("polling");
    polling = setInterval(async () => {
      try {
        const answer = await fetch("/api/jobs?limit=200", { credentials: "same-origin" });
        if (answer.ok) (await answer.json()).reverse().forEach(show);
      } catch (e) { /* the box is restarting: try again at the next tick */ }
    }, 3000);
  }

  function stream() {
    if (!window.EventSource) return poll();
    const source = new EventSource("/api/jobs/stream");
    source.addEventListener("open", () => live("live"));
    source.addEventListener("job", (event) => show(JSON.parse(event.data)));
    source.addEventListener("error", () => {
      // The browser retries by itself; if it has given up, poll instead.
      if (source.readyState === EventSource.CLOSED) poll(); else live("reconnecting…");
    });
  }

  if (document.body.dataset.page === "jobs") stream();
})();
