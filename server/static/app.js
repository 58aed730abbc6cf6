// pathorag web page: plain JavaScript, no build step. Talks only to this server's /v1 API.
"use strict";

const KEY_STORE = "pathorag.apiKey";
const MAX_IMAGES = 4;
const MAX_IMAGE_BYTES = 5 * 1024 * 1024;
const MAX_CHOICES = 8;

const $ = (id) => document.getElementById(id);
const state = { images: [], threadId: newThreadId(), history: [], busy: false, blobs: [] };

function newThreadId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

// --- API key and requests ----------------------------------------------------------------------

function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

function authHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: "Bearer " + key } : extra;
}

const STATUS_TEXT = {
  400: "The request was refused",
  401: "The API key was not accepted (401). Check the key and enter it again",
  403: "This needs an admin API key (403)",
  404: "Not found (404)",
  413: "Too large for the server (413)",
  422: "The server could not use this input (422)",
  500: "The server failed (500)",
  503: "The server is not ready (503); try again shortly",
  504: "The server's time limit was reached (504)",
};

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function errorFrom(response) {
  let detail = "";
  try {
    const body = await response.json();
    detail = (body && body.error && body.error.message) || (body && body.detail) || "";
    if (typeof detail !== "string") detail = JSON.stringify(detail);
  } catch (_) { /* not JSON */ }
  const head = STATUS_TEXT[response.status] || `The server answered HTTP ${response.status}`;
  return new ApiError(response.status, detail ? `${head}: ${detail}` : head + ".");
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: authHeaders(options.headers || {}) });
  } catch (error) {
    throw new ApiError(0, "The server could not be reached: " + error.message);
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401) showKeyStatus(error.message, true);
    throw error;
  }
  return response;
}

function showKeyStatus(text, isError = false) {
  const node = $("key-status");
  node.textContent = text;
  node.className = isError ? "error" : "muted";
}

async function useKey(key) {
  if (key) sessionStorage.setItem(KEY_STORE, key); else sessionStorage.removeItem(KEY_STORE);
  if (!key) { showKeyStatus("No API key: enter one to ask questions."); renderBookFilter(null); return; }
  try {
    const books = await loadBooks();
    showKeyStatus(`Key accepted. ${books.length} book${books.length === 1 ? "" : "s"} indexed.`);
  } catch (error) {
    showKeyStatus(error.message, true);
    renderBookFilter(null);
  }
}

// --- books -------------------------------------------------------------------------------------

async function loadBooks() {
  const books = (await (await api("/v1/books")).json()).books;
  renderBookFilter(books);
  renderBookTable(books);
  return books;
}

function renderBookFilter(books) {
  const box = $("book-filter");
  const ticked = new Set(Array.from(box.querySelectorAll("input:checked"), (i) => i.value));
  box.replaceChildren();
  if (!books) { box.append(el("p", { class: "muted" }, "Enter an API key to list the books.")); return; }
  const ready = books.filter((b) => b.status === "complete");
  if (!ready.length) { box.append(el("p", { class: "muted" }, "No books indexed yet.")); return; }
  for (const book of ready) {
    const input = el("input", { type: "checkbox", name: "books", value: book.book_id, checked: ticked.has(book.book_id) });
    box.append(el("label", {}, input, `${book.title || book.source_name || book.book_id} (${book.page_count} pages)`));
  }
}

function renderBookTable(books) {
  const body = $("books-table").querySelector("tbody");
  body.replaceChildren();
  for (const book of books) {
    const title = book.title || book.source_name || book.book_id;
    const remove = el("button", { type: "button", "aria-label": `Remove ${title}`, onclick: () => removeBook(book, title) }, "Remove");
    body.append(el("tr", { "data-book-id": book.book_id },
      el("td", {}, title, book.edition ? ` (${book.edition})` : ""),
      el("td", {}, String(book.page_count)),
      el("td", {}, book.status + (book.failed_pages && book.failed_pages.length ? `, ${book.failed_pages.length} pages failed` : "")),
      el("td", {}, (book.organ_systems || []).join(", ")),
      el("td", {}, remove)));
  }
  if (!books.length) body.append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "No books.")));
}

async function removeBook(book, title) {
  if (!confirm(`Remove "${title}" from the index?`)) return;
  const status = $("upload-status");
  try {
    await api(`/v1/books/${encodeURIComponent(book.book_id)}`, { method: "DELETE" });
    status.textContent = `Removed "${title}".`;
    status.className = "";
    await loadBooks();
  } catch (error) {
    status.textContent = error.message;
    status.className = "error";
  }
}

async function uploadBook(event) {
  event.preventDefault();
  const status = $("upload-status");
  const bar = $("upload-progress");
  const file = $("pdf").files[0];
  if (!file) { status.textContent = "Choose a PDF first."; status.className = "error"; return; }
  const form = new FormData();
  form.append("file", file, file.name);
  if ($("book-title").value.trim()) form.append("title", $("book-title").value.trim());
  for (const organ of $("book-organs").value.split(",").map((s) => s.trim()).filter(Boolean)) form.append("organ_systems", organ);
  status.className = "";
  status.textContent = `Uploading ${file.name}…`;
  try {
    let job = await (await api("/v1/books", { method: "POST", body: form })).json();
    bar.hidden = false;
    while (job.status === "queued" || job.status === "running") {
      bar.value = job.progress || 0;
      status.textContent = `Indexing ${job.file_name}: ${job.status}` +
        (job.pages_total ? `, ${job.pages_done} of ${job.pages_total} pages` : "") + "…";
      await new Promise((resolve) => setTimeout(resolve, 700));
      job = await (await api(`/v1/jobs/${job.job_id}`)).json();
    }
    bar.value = 1;
    if (job.status === "done") {
      status.textContent = `Indexed ${job.file_name} (${job.result || "done"}).`;
      $("upload-form").reset();
    } else {
      status.textContent = `Indexing ${job.file_name} failed: ${job.error || "unknown error"}`;
      status.className = "error";
    }
    await loadBooks();
  } catch (error) {
    status.textContent = error.message;
    status.className = "error";
  } finally {
    setTimeout(() => { bar.hidden = true; }, 1500);
  }
}

// --- MCQ options -------------------------------------------------------------------------------

function addChoice(value = "") {
  const list = $("choices");
  if (list.children.length >= MAX_CHOICES) return;
  const input = el("input", { type: "text", class: "choice", value });
  const item = el("li", {}, el("div", { class: "choice-row" }, input,
    el("button", { type: "button", class: "remove-choice", onclick: () => { item.remove(); relabelChoices(); $("add-choice").focus(); } }, "Remove")));
  list.append(item);
  relabelChoices();
  input.focus();
}

function relabelChoices() {
  Array.from($("choices").children).forEach((item, n) => {
    const letter = String.fromCharCode(65 + n);
    item.querySelector("input").setAttribute("aria-label", `Option ${letter}`);
    item.querySelector("button").setAttribute("aria-label", `Remove option ${letter}`);
  });
  $("add-choice").disabled = $("choices").children.length >= MAX_CHOICES;
}

// --- images ------------------------------------------------------------------------------------

function readDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function addImages(files) {
  const problems = [];
  for (const file of files) {
    if (!file.type.startsWith("image/")) { problems.push(`${file.name} is not an image.`); continue; }
    if (file.size > MAX_IMAGE_BYTES) { problems.push(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the limit is 5 MB.`); continue; }
    if (state.images.length >= MAX_IMAGES) { problems.push(`At most ${MAX_IMAGES} images per question; ${file.name} was left out.`); continue; }
    state.images.push({ name: file.name, size: file.size, dataUrl: await readDataUrl(file) });
  }
  renderPreviews();
  showAskError(problems.join(" "));
}

function renderPreviews() {
  const list = $("previews");
  list.replaceChildren();
  state.images.forEach((image, n) => {
    list.append(el("li", {},
      el("img", { src: image.dataUrl, alt: `Preview of ${image.name}` }),
      el("span", {}, `${image.name} (${Math.ceil(image.size / 1024)} KB)`),
      el("button", { type: "button", "aria-label": `Remove image ${image.name}`,
        onclick: () => { state.images.splice(n, 1); renderPreviews(); $("dropzone").focus(); } }, "Remove")));
  });
}

function setUpDropzone() {
  const zone = $("dropzone");
  const picker = $("images");
  zone.addEventListener("click", () => picker.click());
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); picker.click(); }
  });
  picker.addEventListener("change", async () => { await addImages(Array.from(picker.files)); picker.value = ""; });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    addImages(Array.from(event.dataTransfer.files || []));
  });
}

// --- asking, streaming -------------------------------------------------------------------------

function showAskError(text) {
  const node = $("ask-error");
  node.textContent = text || "";
  node.hidden = !text;
}

function progressList() {
  let list = $("progress").querySelector("ol");
  if (!list) { list = el("ol", { id: "progress-steps" }); $("progress").replaceChildren(list); }
  return list;
}

function addStep(kind, text) {
  progressList().append(el("li", { class: "step step-" + kind }, el("span", { class: "step-kind" }, kind + ": "), text));
}

// The model's answer text as it is written; renderResult replaces it with the checked result.
function showDraft(text) {
  let draft = $("answer").querySelector(".answer-draft");
  if (!draft) { draft = el("p", { class: "answer-draft muted" }); $("answer").replaceChildren(draft); }
  draft.textContent += text;
}

function describeEvent(name, data) {
  switch (name) {
    case "route":
      return data.retrieval
        ? `searching the books (decided by ${data.by})` + (data.organ_systems && data.organ_systems.length ? `, organ systems: ${data.organ_systems.join(", ")}` : "") + (data.reason ? ` — ${data.reason}` : "")
        : `answering without a search (decided by ${data.by})` + (data.reason ? ` — ${data.reason}` : "");
    case "search": {
      const hits = (data.hits || []).length;
      return `“${data.query}”` + (data.option ? ` (option ${data.option})` : "") + (data.used_image ? " with the image" : "") +
        ` — ${hits} hit${hits === 1 ? "" : "s"}` + (data.error ? ` (error: ${data.error})` : "");
    }
    case "inspect":
      return `looked at ${(data.pages || []).join(", ") || "no pages"}` + (data.sufficient ? " — enough evidence" : "") + (data.summary ? `: ${data.summary}` : "");
    case "reflect":
      return data.stop_reason ? `stopping: ${data.stop_reason}` : `next searches: ${(data.next_queries || []).join("; ") || "none"}`;
    case "citation_removed":
      return `dropped ${data.citation}: ${data.reason}`;
    case "answer":
      return data.by === "model" ? "the model wrote the answer" : "answer taken from the retrieved evidence (no language model)";
    default:
      return JSON.stringify(data);
  }
}

// Parses a text/event-stream body; calls onEvent(name, data) per event.
async function readEventStream(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let name = "message";
  let data = [];
  const dispatch = () => {
    if (data.length) onEvent(name, data.join("\n"));
    name = "message";
    data = [];
  };
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = done ? "" : lines.pop();
    for (const line of lines) {
      if (line === "") dispatch();
      else if (line.startsWith(":")) continue;
      else {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") name = value;
        else if (field === "data") data.push(value);
      }
    }
    if (done) { dispatch(); return; }
  }
}

async function ask(event) {
  event.preventDefault();
  if (state.busy) return;
  const question = $("question").value.trim();
  if (!question) { showAskError("Write a question first."); $("question").focus(); return; }
  if (!apiKey()) { showAskError("Enter an API key first."); $("api-key").focus(); return; }
  showAskError("");
  const choices = Array.from(document.querySelectorAll("#choices input"), (i) => i.value.trim()).filter(Boolean);
  const books = Array.from(document.querySelectorAll("#book-filter input:checked"), (i) => i.value);
  const body = { question, choices, books, images: state.images.map((i) => i.dataUrl), thread_id: state.threadId, stream: true };
  const entry = { question, choices, images: state.images.length, result: null, steps: [] };
  state.busy = true;
  $("ask-button").disabled = true;
  $("ask-button").textContent = "Asking…";
  $("progress").replaceChildren(el("p", { class: "muted" }, "Sending the question…"));
  $("answer").replaceChildren();
  $("citations").replaceChildren();
  releaseBlobs();
  try {
    const response = await api("/v1/ask", {
      method: "POST", headers: { "Content-Type": "application/json", Accept: "text/event-stream" }, body: JSON.stringify(body),
    });
    $("progress").replaceChildren();
    let result = null;
    let failure = null;
    await readEventStream(response, (name, text) => {
      let data;
      try { data = JSON.parse(text); } catch (_) { return; }
      if (name === "result") result = data;
      else if (name === "answer_token") showDraft(data.text || "");
      else if (name === "error") failure = (data.error && data.error.message) || "the server reported an error";
      else { const line = describeEvent(name, data); entry.steps.push([name, line]); addStep(name, line); }
    });
    if (failure) throw new ApiError(0, "The answer failed: " + failure);
    if (!result) throw new ApiError(0, "The answer stream ended without a result; try again.");
    entry.result = result;
    if (result.thread_id) state.threadId = result.thread_id;
    renderResult(result);
    state.history.push(entry);
    renderHistory();
    $("question").value = "";
    state.images = [];
    renderPreviews();
    $("thread-info").textContent = `Follow-up questions continue this conversation (${state.history.length} so far).`;
    $("answer").focus();
  } catch (error) {
    showAskError(error.message);
    if (!$("progress").querySelector("ol")) $("progress").replaceChildren();
  } finally {
    state.busy = false;
    $("ask-button").disabled = false;
    $("ask-button").textContent = "Ask";
  }
}

function pct(x) { return Math.round(x * 100) + "%"; }

function renderResult(result) {
  const box = el("div", { class: "answer-box", id: "answer-box" });
  const badges = el("p", {});
  if (result.evidence_only) badges.append(el("span", { class: "badge evidence" }, "Evidence only"));
  if (result.insufficient_evidence) badges.append(el("span", { class: "badge insufficient" }, "Insufficient evidence"));
  if (result.confidence !== null && result.confidence !== undefined) badges.append(el("span", { class: "badge conf" }, "Confidence " + pct(result.confidence)));
  if (badges.children.length) box.append(badges);
  if (result.evidence_only) {
    box.append(el("p", { class: "notice" }, "No language model wrote this: it lists the textbook passages that match best. Read the cited pages."));
  }
  if (result.insufficient_evidence) {
    box.append(el("p", { class: "notice" }, "The indexed books do not hold enough evidence to answer this question reliably."));
  }
  box.append(el("p", { class: "answer-text" }, (result.choice ? `${result.choice}. ` : "") + result.answer));
  if (result.rationale) box.append(el("h3", {}, "Rationale"), el("p", { class: "rationale" }, result.rationale));
  const support = Object.entries(result.option_support || {});
  if (support.length) {
    box.append(el("h3", {}, "Support per option (from retrieval)"),
      el("ul", {}, support.map(([letter, value]) => el("li", {}, `${letter}: ${pct(value)}`))));
  }
  if ((result.warnings || []).length) box.append(el("ul", { class: "muted" }, result.warnings.map((w) => el("li", {}, w))));
  box.append(el("p", { class: "muted" }, `${(result.citations || []).length} cited pages · ${(result.latency_ms / 1000).toFixed(1)} s`));
  $("answer").replaceChildren(box);
  renderCitations(result.citations || []);
}

function releaseBlobs() {
  for (const url of state.blobs) URL.revokeObjectURL(url);
  state.blobs = [];
}

async function blobUrl(path) {
  const response = await api(path);
  const url = URL.createObjectURL(await response.blob());
  state.blobs.push(url);
  return url;
}

function citationLabel(c) {
  return `${c.title || "Untitled"}, p. ${c.page_label || c.page}`;
}

// A page image in a frame that shrinks to it, with the cited passage's boxes (fractions of the page)
// marked over it as percentages, so they fit the image at any size. (Set through the CSSOM: the page's
// Content-Security-Policy refuses style attributes.)
function markedPage(img, boxes) {
  const marks = (boxes || []).map(([left, top, right, bottom]) => {
    const mark = el("span", { class: "passage-mark", "aria-hidden": "true" });
    Object.assign(mark.style, { left: `${left * 100}%`, top: `${top * 100}%`, width: `${(right - left) * 100}%`, height: `${(bottom - top) * 100}%` });
    return mark;
  });
  return el("span", { class: "page-frame" }, img, marks);
}

function renderCitations(citations) {
  const box = $("citations");
  box.replaceChildren();
  if (!citations.length) return;
  for (const c of citations) {
    const img = el("img", { alt: `Thumbnail of ${citationLabel(c)}` });
    const button = el("button", { type: "button", class: "citation", "data-ref": c.ref,
      "aria-label": `Open page: ${citationLabel(c)}${c.section ? ", " + c.section : ""}`,
      onclick: () => openPage(c, button) },
      el("span", { class: "thumb" }, markedPage(img, c.boxes)),
      el("span", { class: "cap" }, el("strong", {}, (c.ref ? `[${c.ref}] ` : "") + citationLabel(c)), c.section ? el("br") : null, c.section || ""),
      (c.figures || []).length ? el("span", { class: "cap figure-names" }, c.figures.map((f, i) => figureName(f, i + 1 === c.matched_figure)).join(", ")) : null);
    box.append(button);
    blobUrl(c.image_url + "?size=thumb").then((url) => { img.src = url; }).catch(() => { img.alt = "Thumbnail unavailable"; });
  }
}

function figureName(f, matched) {
  return (f.number ? `Fig. ${f.number}` : "Figure") + (matched ? " (closest to your image)" : "");
}

// The cited page's figures beside it: each crop with its caption; the one that matched the question's
// image (1-based `matched`) marked and first.
function renderPageFigures(figures, matched) {
  const box = $("page-figures");
  const shown = figures.map((f, i) => ({ f, matched: i + 1 === matched })).sort((a, b) => b.matched - a.matched);
  box.replaceChildren(...shown.map(({ f, matched }) => {
    const img = el("img", { alt: `${figureName(f)} (loading)` });
    blobUrl(f.image_url).then((url) => { img.src = url; img.alt = f.caption || figureName(f); }).catch(() => { img.alt = "Figure unavailable"; });
    const caption = (matched ? "Closest to your image. " : "") + (f.caption || figureName(f));
    return el("figure", { class: matched ? "page-figure matched" : "page-figure" }, img, el("figcaption", {}, caption));
  }));
  box.hidden = !figures.length;
}

async function openPage(c, opener) {
  const dialog = $("page-dialog");
  const img = el("img", { id: "page-dialog-img", alt: `Page ${c.page_label || c.page} of ${c.title || "the book"} (loading)` });
  $("page-dialog-title").textContent = citationLabel(c);
  $("page-dialog-meta").textContent = [c.section && `Section: ${c.section}`, `PDF page ${c.page}`, c.passage && `“${c.passage}”`].filter(Boolean).join(" · ");
  $("page-full").replaceChildren(markedPage(img, c.boxes));
  renderPageFigures(c.figures || [], c.matched_figure);
  dialog.returnFocusTo = opener;
  dialog.showModal();
  $("page-dialog-close").focus();
  try {
    img.src = await blobUrl(c.image_url);
    await img.decode();
    img.alt = `Page ${c.page_label || c.page} of ${c.title || "the book"}`;
    const mark = $("page-full").querySelector(".passage-mark");
    if (mark) mark.scrollIntoView({ block: "center", inline: "nearest" });  // the passage, not the page's top
  } catch (error) {
    img.alt = "";
    $("page-dialog-meta").textContent = error.message;
  }
}

function renderHistory() {
  const list = $("history");
  list.replaceChildren();
  state.history.forEach((entry, n) => {
    list.append(el("li", {}, el("button", { type: "button", onclick: () => showPast(n) }, entry.question),
      entry.result ? el("span", { class: "muted" }, " — " + (entry.result.choice ? entry.result.choice + ". " : "") + entry.result.answer.slice(0, 80)) : ""));
  });
}

function showPast(n) {
  const entry = state.history[n];
  releaseBlobs();
  const list = el("ol", { id: "progress-steps" });
  for (const [kind, line] of entry.steps) list.append(el("li", {}, el("span", { class: "step-kind" }, kind + ": "), line));
  $("progress").replaceChildren(el("p", { class: "muted" }, "Question: " + entry.question), list);
  renderResult(entry.result);
  $("answer").focus();
}

function newThread() {
  state.threadId = newThreadId();
  state.history = [];
  renderHistory();
  $("thread-info").textContent = "New conversation started.";
  $("answer").replaceChildren();
  $("citations").replaceChildren();
  $("progress").replaceChildren(el("p", { class: "muted" }, "Progress appears here while the question is answered."));
  $("question").focus();
}

// --- start -------------------------------------------------------------------------------------

function start() {
  $("key-form").addEventListener("submit", (event) => { event.preventDefault(); useKey($("api-key").value.trim()); });
  $("key-forget").addEventListener("click", () => { $("api-key").value = ""; useKey(""); });
  $("ask-form").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("ask-form").requestSubmit();
  });
  $("add-choice").addEventListener("click", () => addChoice());
  $("new-thread").addEventListener("click", newThread);
  $("upload-form").addEventListener("submit", uploadBook);
  $("refresh-books").addEventListener("click", () => loadBooks().catch((error) => { $("upload-status").textContent = error.message; $("upload-status").className = "error"; }));
  const dialog = $("page-dialog");
  $("page-dialog-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });
  dialog.addEventListener("close", () => { if (dialog.returnFocusTo) dialog.returnFocusTo.focus(); });
  setUpDropzone();
  const key = apiKey();
  if (key) { $("api-key").value = key; useKey(key); }
  else showKeyStatus("No API key: enter one to ask questions.");
  document.body.dataset.ready = "true";
}

start();
