/* Fusion Studio — the live Queue view.
 *
 * Lists the person's jobs from the REST API, then follows /api/v1/events
 * (Server-Sent Events; the HttpOnly owner cookie identifies the browser).
 * Each event touches only the row it is about. After a lost connection or a
 * server restart (a new "instance" in the hello event) the list is fetched
 * again and only rows that changed are redrawn. Gradio may create and destroy
 * the panel's DOM (tab switches), so the state lives here, not in the DOM.
 */
(function () {
  "use strict";
  const CFG = window.FS_CONFIG || { i18n: { en: {} }, api: "/api/v1" };
  const API = CFG.api;
  const LANG = (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh-CN" : "en";
  const FINISHED = ["succeeded", "failed", "canceled"];

  const jobs = new Map(); // id -> job object (the API's JSON)
  let instance = null; // eslint-disable-line no-unused-vars
  let source = null;
  let online = false;
  let loaded = false;
  let reconnectTimer = null;
  const filter = { status: "", text: "" }; // the toolbar's choice, kept across re-mounts
  const expanded = new Set(); // batch ids the person unfolded
  const originals = new Map(); // job id -> the original target (data URI) or null
  const wanted = new Set(); // job ids whose original is asked for and not yet here

  function T(key, values) {
    let s = (CFG.i18n[LANG] || {})[key] || (CFG.i18n.en || {})[key] || key;
    if (values) for (const k of Object.keys(values)) s = s.split("{" + k + "}").join(values[k]);
    return s;
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "text") node.textContent = v;
      else if (k === "onclick") node.addEventListener("click", v);
      else node.setAttribute(k, v);
    }
    for (const child of children || []) if (child) node.appendChild(child);
    return node;
  }

  function root() {
    return document.getElementById("fs-queue");
  }

  function fmtEta(seconds) {
    if (seconds === null || seconds === undefined) return "";
    const s = Math.max(0, Math.round(seconds));
    const m = Math.floor(s / 60);
    return m + ":" + String(s % 60).padStart(2, "0");
  }

  // A batch's one status: still running or waiting while any member does, else failed
  // if any member failed, else canceled if any was, else done.
  function batchStatus(members) {
    for (const status of ["running", "queued", "failed", "canceled"]) {
      if (members.some((j) => j.status === status)) return status;
    }
    return "succeeded";
  }

  async function api(method, path, body) {
    const options = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      options.headers["content-type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(API + path, options);
    if (response.status === 204) return null;
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const message = (data.error && data.error.message) || response.statusText;
      throw new Error(message);
    }
    return data;
  }

  // -- rendering -------------------------------------------------------------------

  function ensureSkeleton(container) {
    if (container.dataset.fsMounted === "1") return;
    container.dataset.fsMounted = "1";
    container.innerHTML = "";
    container.appendChild(el("div", { class: "fs-conn", "data-state": online ? "online" : "offline" }));
    container.appendChild(toolbar());
    container.appendChild(el("div", { class: "fs-empty", text: T(loaded ? "q_empty" : "q_loading") }));
    container.appendChild(el("div", { class: "fs-list" }));
    for (const job of sortedJobs()) placeRow(container, job);
    refreshChrome(container);
  }

  // The toolbar: a status filter and a search by target name (plain form controls).
  function toolbar() {
    const status = el("select", { class: "fs-filter-status", "aria-label": T("q_filter_status") });
    status.appendChild(el("option", { value: "", text: T("q_filter_all") }));
    for (const name of ["queued", "running", "succeeded", "failed", "canceled"]) {
      status.appendChild(el("option", { value: name, text: name + " · " + T("q_status_" + name) }));
    }
    status.value = filter.status;
    status.addEventListener("change", () => {
      filter.status = status.value;
      refreshChrome();
    });
    const search = el("input", {
      type: "search",
      class: "fs-search",
      placeholder: T("q_search"),
      "aria-label": T("q_search"),
      value: filter.text,
    });
    search.addEventListener("input", () => {
      filter.text = search.value;
      refreshChrome();
    });
    return el("div", { class: "fs-toolbar", role: "search" }, [status, search]);
  }

  function matches(job) {
    if (filter.status && job.status !== filter.status) return false;
    const needle = filter.text.trim().toLowerCase();
    if (!needle) return true;
    const name = ((job.inputs && job.inputs.target) || "").toLowerCase();
    return name.includes(needle);
  }

  function applyFilter(container) {
    let shown = 0;
    for (const row of container.querySelectorAll(".fs-job")) {
      const job = jobs.get(row.dataset.jobId || "");
      const visible = !job || matches(job);
      if (row.hidden === visible) row.hidden = !visible;
      if (visible) shown += 1;
    }
    for (const group of container.querySelectorAll(".fs-batch")) {
      const any = Array.from(group.querySelectorAll(".fs-job")).some((row) => !row.hidden);
      group.hidden = !any;
    }
    return shown;
  }

  function sortedJobs() {
    return Array.from(jobs.values()).sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  }

  function refreshChrome(container) {
    container = container || root();
    if (!container) return;
    container.dataset.loaded = loaded ? "1" : "0";
    const shown = applyFilter(container);
    const empty = container.querySelector(".fs-empty");
    if (empty) {
      empty.textContent = jobs.size ? T("q_no_match") : T(loaded ? "q_empty" : "q_loading");
      empty.style.display = jobs.size && shown ? "none" : "";
    }
    const conn = container.querySelector(".fs-conn");
    if (conn) {
      conn.dataset.state = online ? "online" : "offline";
      conn.textContent = online ? "" : T("q_offline");
    }
    const batches = new Map();
    for (const job of jobs.values()) {
      if (!job.batch_id) continue;
      if (!batches.has(job.batch_id)) batches.set(job.batch_id, []);
      batches.get(job.batch_id).push(job);
    }
    for (const group of container.querySelectorAll(".fs-batch")) {
      const members = batches.get(group.dataset.batchId) || [];
      if (!members.length) {
        group.remove();
        continue;
      }
      const done = members.filter((j) => FINISHED.includes(j.status)).length;
      const head = group.querySelector(".fs-batch-head");
      const status = batchStatus(members);
      group.dataset.status = status;
      const badge = head.querySelector(".fs-status");
      setText(badge, status);
      badge.className = "fs-status fs-status-" + status;
      badge.title = T("q_status_" + status);
      const progress =
        members.reduce((sum, j) => sum + (j.status === "succeeded" ? 1 : j.progress || 0), 0) / members.length;
      const pct = Math.round(progress * 1000) / 10;
      head.querySelector(".fs-bar").setAttribute("aria-valuenow", String(pct));
      head.querySelector(".fs-bar-fill").style.width = pct + "%";
      head.querySelector(".fs-batch-count").textContent = T("q_batch_progress", {
        done: done,
        total: members.length,
      });
      const zip = head.querySelector(".fs-batch-zip");
      const ready = done === members.length && members.some((j) => j.status === "succeeded");
      zip.style.display = ready ? "" : "none";
      group.dataset.complete = ready ? "1" : "0";
    }
  }

  function listFor(container, job) {
    const list = container.querySelector(".fs-list");
    if (!job.batch_id) return list;
    let group = list.querySelector('.fs-batch[data-batch-id="' + CSS.escape(job.batch_id) + '"]');
    if (!group) {
      const zip = el("a", {
        class: "fs-batch-zip",
        href: API + "/batches/" + encodeURIComponent(job.batch_id) + "/download",
        download: "",
        text: T("q_batch_zip"),
      });
      zip.style.display = "none";
      const batch = job.batch_id;
      const rowsId = "fs-batch-rows-" + batch.replace(/[^A-Za-z0-9_-]/g, "_");
      const open = expanded.has(batch);
      const toggle = el("button", {
        type: "button",
        class: "fs-act fs-batch-toggle",
        "aria-expanded": open ? "true" : "false",
        "aria-controls": rowsId,
        text: T(open ? "q_batch_fold" : "q_batch_unfold"),
      });
      group = el("div", { class: "fs-batch", "data-batch-id": batch, "data-expanded": open ? "1" : "0" }, [
        el("div", { class: "fs-batch-head" }, [
          toggle,
          el("span", { class: "fs-batch-title", text: T("q_batch") + " " + batch }),
          el("span", { class: "fs-status" }),
          el("span", { class: "fs-batch-count" }),
          el("div", { class: "fs-bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" }, [
            el("div", { class: "fs-bar-fill" }),
          ]),
          zip,
        ]),
        el("div", { class: "fs-batch-rows", id: rowsId }),
      ]);
      toggle.addEventListener("click", () => {
        const now = group.dataset.expanded !== "1";
        if (now) expanded.add(batch);
        else expanded.delete(batch);
        group.dataset.expanded = now ? "1" : "0";
        toggle.setAttribute("aria-expanded", now ? "true" : "false");
        toggle.textContent = T(now ? "q_batch_fold" : "q_batch_unfold");
      });
      list.insertBefore(group, list.firstChild);
    }
    return group.querySelector(".fs-batch-rows");
  }

  function placeRow(container, job) {
    let row = container.querySelector('.fs-job[data-job-id="' + CSS.escape(job.id) + '"]');
    if (!row) {
      row = buildRow(job);
      const parent = listFor(container, job);
      // Keep newest first: insert before the first row that is older.
      let before = null;
      for (const other of parent.children) {
        const otherJob = jobs.get(other.dataset.jobId || "");
        if (otherJob && otherJob.created_at < job.created_at) {
          before = other;
          break;
        }
      }
      if (parent.classList.contains("fs-list") && before === null) parent.appendChild(row);
      else parent.insertBefore(row, before);
    }
    updateRow(row, job);
    return row;
  }

  function buildRow(job) {
    const row = el("div", { class: "fs-job", "data-job-id": job.id }, [
      el("div", { class: "fs-thumb" }),
      el("div", { class: "fs-main" }, [
        el("div", { class: "fs-line" }, [
          el("span", { class: "fs-name" }),
          el("span", { class: "fs-status" }),
          el("span", { class: "fs-id", text: job.id.slice(0, 8) }),
        ]),
        el("div", { class: "fs-bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" }, [
          el("div", { class: "fs-bar-fill" }),
        ]),
        el("div", { class: "fs-meta" }, [
          el("span", { class: "fs-stage" }),
          el("span", { class: "fs-fps" }),
          el("span", { class: "fs-eta" }),
          el("span", { class: "fs-attempts" }),
          el("span", { class: "fs-prio" }),
        ]),
        el("div", { class: "fs-error" }),
        el("div", { class: "fs-result" }),
        el("div", { class: "fs-actions" }),
        el("div", { class: "fs-share-out" }),
      ]),
    ]);
    return row;
  }

  function setText(node, value) {
    if (node && node.textContent !== value) node.textContent = value;
  }

  function updateRow(row, job) {
    const status = job.status;
    const progress = status === "succeeded" ? 1 : job.progress || 0;
    const pct = Math.round(progress * 1000) / 10;
    if (row.dataset.status !== status) row.dataset.status = status;
    row.dataset.progress = String(progress);
    setText(row.querySelector(".fs-name"), (job.inputs && job.inputs.target) || job.id);
    const badge = row.querySelector(".fs-status");
    setText(badge, status);
    badge.className = "fs-status fs-status-" + status;
    badge.title = T("q_status_" + status);
    const bar = row.querySelector(".fs-bar");
    bar.setAttribute("aria-valuenow", String(pct));
    row.querySelector(".fs-bar-fill").style.width = pct + "%";
    setText(row.querySelector(".fs-stage"), job.stage ? T("q_stage") + ": " + job.stage : "");
    setText(row.querySelector(".fs-fps"), job.fps ? job.fps.toFixed(1) + " " + T("q_fps") : "");
    setText(
      row.querySelector(".fs-eta"),
      status === "running" && job.eta_seconds !== null && job.eta_seconds !== undefined
        ? T("q_eta") + " " + fmtEta(job.eta_seconds)
        : ""
    );
    setText(row.querySelector(".fs-attempts"), attemptsText(job, status));
    setText(row.querySelector(".fs-prio"), T("q_priority") + ": " + (job.priority || 0));
    setText(row.querySelector(".fs-error"), job.error ? job.error.message : "");
    updateThumb(row, job);
    updateResult(row, job);
    updateActions(row, job);
  }

  // "attempts" counts the attempts that failed and were charged (DESIGN.md §4).
  function attemptsText(job, status) {
    const failed = job.attempts || 0;
    const active = status === "queued" || status === "running";
    if (active && (failed > 0 || status === "running") && job.max_attempts) {
      return T("q_attempt_of", { n: failed + 1, max: job.max_attempts });
    }
    return failed > 0 ? T("q_failed_attempts", { n: failed }) : "";
  }

  function updateThumb(row, job) {
    const thumb = row.querySelector(".fs-thumb");
    let src = null;
    if (job.status === "succeeded" && job.kind === "image" && job.result_url) src = job.result_url;
    else if (job.preview) src = job.preview_url + "?v=" + job.preview;
    if (!src) return;
    let img = thumb.querySelector("img");
    if (!img) {
      img = el("img", { alt: "", loading: "lazy" });
      thumb.appendChild(img);
    }
    if (img.getAttribute("src") !== src) img.setAttribute("src", src);
  }

  function updateResult(row, job) {
    const box = row.querySelector(".fs-result");
    if (job.status !== "succeeded" || !job.result_url) {
      if (box.firstChild) box.innerHTML = "";
      return;
    }
    if (box.dataset.src === job.result_url) return; // already showing: keep playback state
    box.dataset.src = job.result_url;
    box.innerHTML = "";
    if (job.kind === "video") {
      box.appendChild(el("video", { src: job.result_url, controls: "", preload: "metadata", class: "fs-result-media" }));
      const tracks = tracksList(job);
      if (tracks) box.appendChild(tracks);
    } else {
      box.appendChild(compareFigure(job));
      askOriginal(job.id);
    }
  }

  // A video result's face tracks (result.tracks): where each appears, whether it was
  // swapped and with which source (an index, or several averaged into one identity).
  function tracksList(job) {
    const tracks = (job.result && job.result.tracks) || [];
    if (!tracks.length) return null;
    const items = tracks.map((track) => {
      const sources = Array.isArray(track.source) ? track.source.join("+") : track.source;
      const state = track.swapped
        ? T("q_track_swapped", { source: sources === null || sources === undefined ? "?" : sources })
        : T("q_track_kept");
      return el("li", { class: "fs-track-row", "data-track": String(track.id), "data-swapped": track.swapped ? "1" : "0" }, [
        el("span", { class: "fs-track-id", text: T("q_track", { id: track.id }) + " · " }),
        el("span", {
          class: "fs-track-frames",
          text: T("q_track_frames", { first: track.first_frame, last: track.last_frame, count: track.frames }) + " · ",
        }),
        el("span", { class: "fs-track-state", text: state }),
      ]);
    });
    return el("div", { class: "fs-tracks-box" }, [
      el("div", { class: "fs-tracks-title", text: T("q_tracks") }),
      el("ul", { class: "fs-tracks", "aria-label": T("q_tracks") }, items),
    ]);
  }

  // An image result over its original: the original appears (with the range input that
  // moves the split) once the Create/Queue panel's Gradio event has sent it.
  function compareFigure(job) {
    const before = el("img", { class: "fs-before", alt: T("q_before") });
    before.hidden = true;
    const range = el("input", {
      type: "range",
      class: "fs-compare-range",
      min: "0",
      max: "100",
      value: "50",
      step: "1",
      "aria-label": T("q_compare"),
    });
    range.hidden = true;
    const figure = el("figure", { class: "fs-compare fs-result-compare", "data-job-id": job.id }, [
      el("div", { class: "fs-compare-stage" }, [
        el("img", { src: job.result_url, alt: T("q_after"), class: "fs-result-media fs-after" }),
        before,
      ]),
      range,
    ]);
    figure.style.setProperty("--fs-pos", "50%");
    showOriginal(figure, job.id);
    return figure;
  }

  function showOriginal(figure, id) {
    const src = originals.get(id);
    if (!src) return;
    const before = figure.querySelector(".fs-before");
    if (before.getAttribute("src") !== src) before.setAttribute("src", src);
    before.hidden = false;
    figure.querySelector(".fs-compare-range").hidden = false;
    figure.dataset.compare = "1";
  }

  function askOriginal(id) {
    if (originals.has(id)) return;
    wanted.add(id);
    flushOriginals();
  }

  function flushOriginals() {
    if (typeof window.fsOriginal !== "function") return; // asked again when it is ready
    for (const id of wanted) window.fsOriginal(id);
    wanted.clear();
  }

  function receiveOriginal(value) {
    if (!value || !value.job) return;
    originals.set(value.job, value.src || null);
    const container = root();
    if (!container) return;
    const figure = container.querySelector('.fs-result-compare[data-job-id="' + CSS.escape(value.job) + '"]');
    if (figure) showOriginal(figure, value.job);
  }

  function button(action, label, handler) {
    return el("button", { type: "button", class: "fs-act", "data-action": action, text: label, onclick: handler });
  }

  function updateActions(row, job) {
    const key = job.status + "|" + (job.result_url || "");
    const box = row.querySelector(".fs-actions");
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.innerHTML = "";
    const id = job.id;
    const act = (fn) => async (event) => {
      event.preventDefault();
      try {
        const data = await fn();
        if (data && data.id) upsert(data);
      } catch (err) {
        setText(row.querySelector(".fs-error"), String(err.message || err));
      }
    };
    const path = "/jobs/" + encodeURIComponent(id);
    if (job.status === "queued" || job.status === "running") {
      box.appendChild(button("cancel", T("q_cancel"), act(() => api("POST", path + "/cancel"))));
    }
    if (job.status === "queued") {
      box.appendChild(button("up", T("q_up"), act(() => api("POST", path + "/priority", { move: "up" }))));
      box.appendChild(button("down", T("q_down"), act(() => api("POST", path + "/priority", { move: "down" }))));
    }
    if (job.status === "failed" || job.status === "canceled") {
      box.appendChild(button("retry", T("q_retry"), act(() => api("POST", path + "/retry"))));
    }
    if (job.status === "succeeded" && job.result_url) {
      box.appendChild(el("a", { class: "fs-act", "data-action": "download", href: job.result_url, download: "", text: T("q_download") }));
      box.appendChild(
        button("share", T("q_share"), act(async () => {
          const data = await api("POST", path + "/share");
          const hours = Math.round((data.expires_at - Date.now() / 1000) / 3600);
          const out = row.querySelector(".fs-share-out");
          out.innerHTML = "";
          out.appendChild(el("span", { text: T("q_share_done", { hours: hours }) + " " }));
          out.appendChild(el("input", { class: "fs-share-url", readonly: "", value: data.url }));
          try {
            await navigator.clipboard.writeText(data.url);
          } catch (e) {
            /* clipboard needs a secure context; the link is shown anyway */
          }
          return null;
        }))
      );
    }
    box.appendChild(
      button("delete", T("q_delete"), act(async () => {
        if (!window.confirm(T("q_confirm_delete"))) return null;
        await api("DELETE", path);
        remove(id);
        return null;
      }))
    );
  }

  // -- state changes ---------------------------------------------------------------

  function same(a, b) {
    return (
      a.status === b.status &&
      a.progress === b.progress &&
      a.updated_at === b.updated_at &&
      a.priority === b.priority &&
      a.preview === b.preview &&
      a.attempts === b.attempts
    );
  }

  function upsert(job) {
    const old = jobs.get(job.id);
    if (old && same(old, job)) return;
    jobs.set(job.id, Object.assign({}, old || {}, job));
    const container = root();
    if (container && container.dataset.fsMounted === "1") {
      placeRow(container, jobs.get(job.id));
      refreshChrome(container);
    }
  }

  function applyProgress(update) {
    const job = jobs.get(update.id);
    if (!job) {
      fetchOne(update.id);
      return;
    }
    for (const key of ["status", "progress", "stage", "eta_seconds", "fps", "attempts", "preview"]) {
      if (update[key] !== null && update[key] !== undefined) job[key] = update[key];
    }
    const container = root();
    if (!container || container.dataset.fsMounted !== "1") return;
    const row = container.querySelector('.fs-job[data-job-id="' + CSS.escape(job.id) + '"]');
    if (row) updateRow(row, job);
  }

  function remove(id) {
    jobs.delete(id);
    originals.delete(id);
    const container = root();
    if (!container) return;
    const row = container.querySelector('.fs-job[data-job-id="' + CSS.escape(id) + '"]');
    if (row) row.remove();
    refreshChrome(container);
  }

  async function fetchOne(id) {
    try {
      upsert(await api("GET", "/jobs/" + encodeURIComponent(id)));
    } catch (e) {
      /* gone, or not ours */
    }
  }

  async function resync() {
    try {
      const data = await api("GET", "/jobs?limit=200");
      const seen = new Set();
      for (const job of data.jobs) {
        seen.add(job.id);
        upsert(job);
      }
      for (const id of Array.from(jobs.keys())) if (!seen.has(id)) remove(id);
      loaded = true;
      refreshChrome();
    } catch (e) {
      setTimeout(resync, 2000);
    }
  }

  // -- the event stream ------------------------------------------------------------

  function connect() {
    if (reconnectTimer) {
      clearTimeout(reconnectTimer);
      reconnectTimer = null;
    }
    if (source) source.close();
    source = new EventSource(API + "/events", { withCredentials: true });
    source.addEventListener("hello", (event) => {
      const data = JSON.parse(event.data);
      instance = data.instance; // a new value means the server restarted
      online = true;
      refreshChrome();
      resync(); // first connection or a reconnection: anything may have changed meanwhile
    });
    source.addEventListener("job", (event) => upsert(JSON.parse(event.data)));
    source.addEventListener("progress", (event) => applyProgress(JSON.parse(event.data)));
    source.addEventListener("deleted", (event) => remove(JSON.parse(event.data).id));
    source.addEventListener("shutdown", () => {
      online = false;
      refreshChrome();
    });
    source.onerror = () => {
      online = false;
      refreshChrome();
      if (source.readyState === EventSource.CLOSED) {
        reconnectTimer = setTimeout(connect, 2000);
      }
    };
  }

  function mount() {
    const container = root();
    if (container && container.dataset.fsMounted !== "1") ensureSkeleton(container);
  }

  function start() {
    new MutationObserver(mount).observe(document.body, { childList: true, subtree: true });
    mount();
    connect();
    window.fsQueue = {
      jobs: jobs,
      resync: resync,
      connected: () => online,
      original: receiveOriginal,
      originalsReady: flushOriginals,
    };
    flushOriginals();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
