// The superres page: upload an image, upscale or compress it with the service's API, and
// compare before and after. Plain JavaScript; everything it loads comes from this server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { mode: "upscale", file: null, info: null, urls: [], inputSize: null };

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

function showError(message) {
  $("error").textContent = message;
  $("error").classList.toggle("hidden", !message);
}

function setStatus(text, percent) {
  $("status-text").textContent = text;
  const bar = $("progress");
  bar.classList.toggle("hidden", percent === null);
  if (percent !== null && percent !== undefined) bar.value = percent;
}

function objectUrl(blob) {
  const url = URL.createObjectURL(blob);
  state.urls.push(url);
  return url;
}

function releaseUrls() {
  state.urls.forEach((url) => URL.revokeObjectURL(url));
  state.urls = [];
}

function randomId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// POST a form with upload progress; resolves with {status, headers, blob}.
function post(url, form, onUpload) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.responseType = "blob";
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onUpload(e.loaded / e.total); };
    xhr.onload = () => resolve({ status: xhr.status, headers: xhr, blob: xhr.response });
    xhr.onerror = () => reject(new Error("the connection to the server failed"));
    xhr.send(form);
  });
}

async function errorText(response) {
  try {
    const body = JSON.parse(await response.blob.text());
    if (body.error) return `${response.status}: ${body.error}`;
  } catch (e) { /* not JSON */ }
  return `the server answered ${response.status}`;
}

// Poll /v1/progress/ID while a job runs; returns a function that stops polling.
function watchProgress(id, label, from, to) {
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try {
      const r = await fetch(`/v1/progress/${id}`);
      if (r.ok) {
        const p = await r.json();
        if (p.state === "queued") setStatus(`${label}: waiting for a worker…`, from);
        else if (p.state === "running" && p.total === 0) setStatus(`${label}…`, from);
        else if (p.total > 0) {
          setStatus(`${label}: tile ${p.done} of ${p.total}`, from + ((to - from) * p.done) / p.total);
        }
      }
    } catch (e) { /* the answer will tell */ }
    if (!stopped) setTimeout(tick, 250);
  };
  setTimeout(tick, 150);
  return () => { stopped = true; };
}

async function loadInfo() {
  const r = await fetch("/v1/models");
  state.info = await r.json();
  const model = $("model");
  for (const m of state.info.models) {
    const option = new Option(m.name, m.name, m.default, m.default);
    model.add(option);
  }
  for (const c of state.info.codecs) $("codec").add(new Option(c, c, c === "webp", c === "webp"));
  fillScales();
  const limits = state.info.limits;
  $("limits").textContent = `Limits: ${formatBytes(limits.max_upload_bytes)} per upload, ` +
    `${(limits.max_pixels / 1e6).toFixed(2)} MP per image, ${limits.timeout_s} s per job.`;
}

function fillScales() {
  const chosen = state.info.models.find((m) => m.name === $("model").value);
  const scale = $("scale");
  const previous = scale.value;
  scale.innerHTML = "";
  for (const s of chosen ? chosen.scales : []) scale.add(new Option(`×${s}`, String(s)));
  if ([...scale.options].some((o) => o.value === previous)) scale.value = previous;
  else if (scale.options.length) scale.value = scale.options[scale.options.length - 1].value;
}

function setMode(mode) {
  state.mode = mode;
  for (const name of ["upscale", "compress"]) {
    const tab = $(`mode-${name}`);
    tab.classList.toggle("active", name === mode);
    tab.setAttribute("aria-selected", String(name === mode));
    $(`${name}-options`).classList.toggle("hidden", name !== mode);
  }
  $("run").textContent = mode === "upscale" ? "Upscale" : "Compress";
}

function chooseFile(file) {
  if (!file) return;
  state.file = file;
  $("drop-text").textContent = `${file.name} (${formatBytes(file.size)})`;
  $("run").disabled = false;
  showError("");
  const probe = new Image();
  probe.onload = () => { state.inputSize = [probe.naturalWidth, probe.naturalHeight]; URL.revokeObjectURL(probe.src); };
  probe.src = URL.createObjectURL(file);
}

function showResult(beforeUrl, afterBlob, facts) {
  $("before").src = beforeUrl;
  $("after").src = objectUrl(afterBlob);
  $("download").href = $("after").src;
  $("download").download = facts.downloadName;
  $("in-size").textContent = facts.inSize;
  $("in-bytes").textContent = facts.inBytes;
  $("out-size").textContent = facts.outSize;
  $("out-bytes").textContent = facts.outBytes;
  $("model-used").textContent = facts.model;
  $("time").textContent = facts.time;
  $("row-psnr").classList.toggle("hidden", !facts.psnr);
  $("psnr").textContent = facts.psnr || "";
  $("download-srz").classList.toggle("hidden", !facts.srzUrl);
  if (facts.srzUrl) $("download-srz").href = facts.srzUrl;
  $("result").classList.remove("hidden");
  setSlider($("slider").value);
}

function setSlider(value) {
  $("after-clip").style.clipPath = `inset(0 0 0 ${value}%)`;
  $("divider").style.left = `${value}%`;
}

function setZoom(value) {
  $("compare").style.width = `${value * 100}%`;
  $("zoom-text").textContent = `${value}×`;
}

async function run() {
  if (!state.file) return;
  showError("");
  $("run").disabled = true;
  releaseUrls();
  const started = performance.now();
  const file = state.file;
  const inSize = state.inputSize ? `${state.inputSize[0]}×${state.inputSize[1]}` : "";
  try {
    if (state.mode === "upscale") await runUpscale(file, inSize, started);
    else await runCompress(file, inSize, started);
  } catch (err) {
    setStatus("", null);
    showError(err.message);
  } finally {
    $("run").disabled = false;
  }
}

async function runUpscale(file, inSize, started) {
  const id = randomId();
  const form = new FormData();
  form.append("image", file);
  form.append("model", $("model").value);
  form.append("scale", $("scale").value);
  form.append("format", $("format").value);
  form.append("progress_id", id);
  setStatus("uploading…", 0);
  const stop = watchProgress(id, "upscaling", 10, 100);
  let response;
  try {
    response = await post("/v1/upscale", form, (f) => setStatus("uploading…", 10 * f));
  } finally { stop(); }
  if (response.status !== 200) throw new Error(await errorText(response));
  const h = response.headers;
  const size = (h.getResponseHeader("X-Superres-Size") || "").replace("x", "×");
  const ext = $("format").value === "jpeg" ? "jpg" : $("format").value;
  const base = file.name.replace(/\.[^.]*$/, "") || "image";
  setStatus(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`, 100);
  showResult(objectUrl(file), response.blob, {
    inSize, inBytes: formatBytes(file.size), outSize: size, outBytes: formatBytes(response.blob.size),
    model: h.getResponseHeader("X-Superres-Model") || "",
    time: `${h.getResponseHeader("X-Superres-Time-Ms")} ms on the server`,
    downloadName: `${base}_x${$("scale").value}.${ext}`,
  });
}

async function runCompress(file, inSize, started) {
  const id = randomId();
  const form = new FormData();
  form.append("image", file);
  form.append("codec", $("codec").value);
  form.append("target_bpp", $("target-bpp").value);
  form.append("scale", $("compress-scale").value);
  if ($("adapt").checked && $("compress-scale").value !== "1") form.append("adapt", "10");
  form.append("psnr", "true");
  form.append("progress_id", id);
  setStatus("uploading…", 0);
  const stop = watchProgress(id, "compressing", 10, 60);
  let compressed;
  try {
    compressed = await post("/v1/compress", form, (f) => setStatus("uploading…", 10 * f));
  } finally { stop(); }
  if (compressed.status !== 200) throw new Error(await errorText(compressed));
  setStatus("compressed; restoring…", 60);
  const back = new FormData();
  back.append("file", compressed.blob, "image.srz");
  const restored = await post("/v1/decompress", back, () => {});
  if (restored.status !== 200) throw new Error(await errorText(restored));
  const h = compressed.headers;
  const srzBytes = compressed.blob.size;
  const psnr = h.getResponseHeader("X-Superres-PSNR");
  const bpp = h.getResponseHeader("X-Superres-Bpp");
  setStatus(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`, 100);
  const base = file.name.replace(/\.[^.]*$/, "") || "image";
  showResult(objectUrl(file), restored.blob, {
    inSize, inBytes: `${formatBytes(file.size)} (original file)`,
    outSize: (restored.headers.getResponseHeader("X-Superres-Size") || "").replace("x", "×"),
    outBytes: `${formatBytes(srzBytes)} .srz, ${bpp} bpp (${(100 * srzBytes / file.size).toFixed(1)}% of the original)`,
    psnr: psnr ? `${psnr} dB (restored vs original)` : "",
    model: `${h.getResponseHeader("X-Superres-Codec")} q${h.getResponseHeader("X-Superres-Quality")}, ` +
      `stored 1/${h.getResponseHeader("X-Superres-Scale")}, restored by ${h.getResponseHeader("X-Superres-Model")}` +
      (h.getResponseHeader("X-Superres-Adapt") ? `, adaptive downscaling (${h.getResponseHeader("X-Superres-Adapt")} steps)` : ""),
    time: `${h.getResponseHeader("X-Superres-Time-Ms")} ms to compress, ` +
      `${restored.headers.getResponseHeader("X-Superres-Time-Ms")} ms to restore`,
    downloadName: `${base}_restored.png`,
    srzUrl: objectUrl(compressed.blob),
  });
  $("download-srz").download = `${base}.srz`;
}

function init() {
  $("mode-upscale").addEventListener("click", () => setMode("upscale"));
  $("mode-compress").addEventListener("click", () => setMode("compress"));
  $("model").addEventListener("change", fillScales);
  $("file").addEventListener("change", (e) => chooseFile(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    chooseFile(e.dataTransfer.files[0]);
  });
  $("run").addEventListener("click", run);
  $("slider").addEventListener("input", (e) => setSlider(e.target.value));
  $("zoom").addEventListener("input", (e) => setZoom(Number(e.target.value)));
  $("pixelated").addEventListener("change", (e) => $("compare").classList.toggle("pixelated", e.target.checked));
  const viewport = $("viewport");
  let dragging = false;
  const moveTo = (e) => {
    const r = $("compare").getBoundingClientRect();
    const value = Math.min(100, Math.max(0, (100 * (e.clientX - r.left)) / r.width));
    $("slider").value = value;
    setSlider($("slider").value);
  };
  viewport.addEventListener("pointerdown", (e) => {
    dragging = true;
    viewport.setPointerCapture(e.pointerId);
    moveTo(e);
  });
  viewport.addEventListener("pointermove", (e) => { if (dragging) moveTo(e); });
  viewport.addEventListener("pointerup", () => { dragging = false; });
  viewport.addEventListener("wheel", (e) => {
    if (!e.ctrlKey) return;
    e.preventDefault();
    const zoom = $("zoom");
    zoom.value = Math.min(8, Math.max(1, Number(zoom.value) * (e.deltaY < 0 ? 1.25 : 0.8)));
    setZoom(Number(zoom.value));
  }, { passive: false });
  setMode("upscale");
  loadInfo().catch((err) => showError(`cannot load the model list: ${err.message}`));
}

document.addEventListener("DOMContentLoaded", init);
