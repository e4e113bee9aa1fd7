// The assistd playground: assistants, threads and a streaming chat over the /v1 API.
import { ApiError } from "./api.js";
import { renderContent, renderToolCalls, pre, prettyJson, section } from "./content.js";
import { $, ACTIVE, api, fileName, guarded, showError, state } from "./core.js";
import { escapeHtml } from "./markdown.js";

const EXAMPLE_FUNCTIONS = [
  {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
];

// ---------------------------------------------------------------------------------------------- sign-in

async function boot() {
  try {
    state.models = (await api.get("/models")).data;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return showSignIn(api.key ? err.message : "");
    $("app").hidden = false;
    throw err;
  }
  await start();
}

function showSignIn(message) {
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("signin-key").focus();
}

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const key = $("signin-key").value.trim();
  $("signin-error").textContent = "";
  if (!key) {
    $("signin-error").textContent = "Enter an API key.";
    return;
  }
  $("signin-submit").disabled = true;
  try {
    const models = await api.get("/models", { key });
    api.setKey(key);
    state.models = models.data;
    $("signin").hidden = true;
    await start();
  } catch (err) {
    $("signin-error").textContent = err.message;
  } finally {
    $("signin-submit").disabled = false;
  }
});

$("signout").addEventListener("click", () => {
  api.setKey("");
  location.hash = "";
  location.reload();
});

async function start() {
  $("whoami").textContent = api.key ? `key …${api.key.slice(-4)}` : "no key needed";
  $("signout").hidden = !api.key;
  try {
    // Shown once filled in, so nothing typed or clicked early is overwritten by the first load.
    await Promise.all([loadAssistants(), loadThreads()]);
  } finally {
    $("app").hidden = false;
  }
  const fromHash = decodeURIComponent(location.hash.slice(1));
  if (fromHash && state.threads.some((t) => t.id === fromHash)) await openThread(fromHash);
  else newThread();
  if (!state.assistants.length) {
    // Nothing can be tried before an assistant exists: open its editor.
    selectTab("assistant");
    setPanel(true);
    $("asst-name").focus();
  } else $("composer-input").focus();
  document.body.dataset.ready = "true";
}

// ---------------------------------------------------------------------------------------------- assistants

async function loadAssistants() {
  state.assistants = await api.listAll("/assistants");
  if (!state.assistants.some((a) => a.id === state.assistantId)) {
    state.assistantId = state.assistants.length ? state.assistants[0].id : "";
  }
  renderAssistantSelect();
  fillAssistantForm(currentAssistant());
}

function currentAssistant() {
  return state.assistants.find((a) => a.id === state.assistantId) || null;
}

function renderAssistantSelect() {
  const select = $("assistant-select");
  select.innerHTML = "";
  if (!state.assistants.length) select.append(new Option("No assistant yet", ""));
  for (const a of state.assistants) select.append(new Option(a.name || a.id, a.id));
  select.value = state.assistantId;
}

function selectAssistant(id) {
  state.assistantId = id;
  localStorage.setItem("assistd.assistant", id);
  renderAssistantSelect();
  fillAssistantForm(currentAssistant());
  renderAttached();
}

$("assistant-select").addEventListener("change", (e) => selectAssistant(e.target.value));

function fillAssistantForm(a) {
  $("asst-heading").textContent = a ? "Edit assistant" : "New assistant";
  $("asst-save").textContent = a ? "Save" : "Create assistant";
  $("asst-delete").hidden = !a;
  $("asst-status").textContent = a ? a.id : "";
  $("asst-name").value = a ? a.name || "" : "";
  $("asst-instructions").value = a ? a.instructions || "" : "";
  const model = $("asst-model");
  model.innerHTML = "";
  for (const m of state.models) model.append(new Option(m.id, m.id));
  if (a && !state.models.some((m) => m.id === a.model)) model.append(new Option(`${a.model} (not served)`, a.model));
  if (a) model.value = a.model;
  const hasTemp = a && a.temperature !== null && a.temperature !== undefined;
  $("asst-temperature-default").checked = !hasTemp;
  $("asst-temperature").value = hasTemp ? a.temperature : 1;
  updateTemperatureLabel();
  const tools = a ? a.tools : [];
  $("asst-file-search").checked = tools.some((t) => t.type === "file_search");
  $("asst-code-interpreter").checked = tools.some((t) => t.type === "code_interpreter");
  const fns = tools.filter((t) => t.type === "function").map((t) => t.function);
  $("asst-functions").value = fns.length ? JSON.stringify(fns, null, 2) : "";
  validateFunctions();
}

function updateTemperatureLabel() {
  const byDefault = $("asst-temperature-default").checked;
  $("asst-temperature").disabled = byDefault;
  $("asst-temperature-value").textContent = byDefault ? "default" : Number($("asst-temperature").value).toFixed(1);
}

$("asst-temperature").addEventListener("input", updateTemperatureLabel);
$("asst-temperature-default").addEventListener("change", updateTemperatureLabel);

/**
 * The function tools in the editor, or an error saying what is wrong with them. Checks the JSON and its
 * shape only: the rules on names and schemas are the server's, which says precisely what it refuses.
 */
function parseFunctions(text) {
  if (!text.trim()) return { functions: [] };
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { error: `Functions: invalid JSON: ${err.message}` };
  }
  const items = Array.isArray(value) ? value : [value];
  const functions = [];
  for (const [i, item] of items.entries()) {
    const fn = item && item.type === "function" && item.function ? item.function : item;
    if (!fn || typeof fn !== "object" || Array.isArray(fn)) return { error: `Functions[${i}]: expected an object.` };
    if (typeof fn.name !== "string" || !fn.name) return { error: `Functions[${i}]: "name" must be a non-empty string.` };
    if (fn.parameters !== undefined && (typeof fn.parameters !== "object" || Array.isArray(fn.parameters) || !fn.parameters)) {
      return { error: `Functions[${i}] (${fn.name}): "parameters" must be a JSON Schema object.` };
    }
    if (fn.description !== undefined && typeof fn.description !== "string") {
      return { error: `Functions[${i}] (${fn.name}): "description" must be a string.` };
    }
    functions.push(fn);
  }
  return { functions };
}

function validateFunctions() {
  const { error } = parseFunctions($("asst-functions").value);
  $("asst-functions-error").textContent = error || "";
  $("asst-functions").setAttribute("aria-invalid", error ? "true" : "false");
  $("asst-save").disabled = Boolean(error);
  return !error;
}

$("asst-functions").addEventListener("input", validateFunctions);
$("asst-functions-example").addEventListener("click", () => {
  $("asst-functions").value = JSON.stringify(EXAMPLE_FUNCTIONS, null, 2);
  validateFunctions();
});
$("asst-new").addEventListener("click", () => {
  state.assistantId = "";
  renderAssistantSelect();
  fillAssistantForm(null);
  $("asst-name").focus();
});

$("asst-form").addEventListener(
  "submit",
  guarded(async (e) => {
    e.preventDefault();
    const parsed = parseFunctions($("asst-functions").value);
    if (parsed.error) {
      validateFunctions();
      return;
    }
    const tools = [];
    if ($("asst-file-search").checked) tools.push({ type: "file_search" });
    if ($("asst-code-interpreter").checked) tools.push({ type: "code_interpreter" });
    for (const fn of parsed.functions) tools.push({ type: "function", function: fn });
    const body = {
      name: $("asst-name").value.trim() || null,
      instructions: $("asst-instructions").value,
      model: $("asst-model").value,
      tools,
    };
    if (!$("asst-temperature-default").checked) body.temperature = Number($("asst-temperature").value);
    const existing = currentAssistant();
    $("asst-save").disabled = true;
    $("asst-status").textContent = "Saving…";
    try {
      const saved = existing ? await api.post(`/assistants/${existing.id}`, body) : await api.post("/assistants", body);
      const i = state.assistants.findIndex((a) => a.id === saved.id);
      if (i >= 0) state.assistants[i] = saved;
      else state.assistants.unshift(saved);
      selectAssistant(saved.id);
      $("asst-status").textContent = existing ? "Saved." : `Created ${saved.id}.`;
      if (!existing && narrow.matches) {
        // On a narrow window the editor covers the chat: a new assistant is there to be tried.
        setPanel(false);
        $("composer-input").focus();
      }
    } catch (err) {
      $("asst-status").textContent = "";
      throw err;
    } finally {
      validateFunctions();
    }
  }),
);

$("asst-delete").addEventListener(
  "click",
  guarded(async () => {
    const a = currentAssistant();
    if (!a || !confirm(`Delete the assistant "${a.name || a.id}"?`)) return;
    await api.del(`/assistants/${a.id}`);
    state.assistants = state.assistants.filter((x) => x.id !== a.id);
    selectAssistant(state.assistants.length ? state.assistants[0].id : "");
  }),
);

// ---------------------------------------------------------------------------------------------- threads

function threadTitle(t) {
  return (t.metadata && t.metadata.title) || `Untitled · ${t.id.slice(-6)}`;
}

function titleFrom(text) {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 60 ? `${line.slice(0, 57)}…` : line;
}

async function loadThreads() {
  state.threads = await api.listAll("/threads", { params: "&order=desc" });
  renderThreads();
}

function renderThreads() {
  const list = $("thread-list");
  list.innerHTML = "";
  if (!state.threads.length) {
    const li = document.createElement("li");
    li.className = "muted small";
    li.textContent = "No threads yet.";
    list.append(li);
  }
  for (const t of state.threads) {
    const li = document.createElement("li");
    li.className = "thread-item" + (t.id === state.threadId ? " current" : "");
    li.dataset.id = t.id;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    open.textContent = threadTitle(t);
    open.title = threadTitle(t);
    if (t.id === state.threadId) open.setAttribute("aria-current", "true");
    open.addEventListener("click", guarded(() => openThread(t.id)));
    const tools = document.createElement("span");
    tools.className = "tools-inline";
    tools.innerHTML = `<button type="button" class="rename" aria-label="Rename thread" title="Rename">✎</button>` +
      `<button type="button" class="delete" aria-label="Delete thread" title="Delete">✕</button>`;
    tools.querySelector(".rename").addEventListener("click", () => startRename(li, t));
    tools.querySelector(".delete").addEventListener("click", guarded(() => deleteThread(t)));
    li.append(open, tools);
    list.append(li);
  }
  const current = state.threads.find((t) => t.id === state.threadId);
  $("thread-title").textContent = current ? threadTitle(current) : "New thread";
}

function startRename(li, thread) {
  const input = document.createElement("input");
  input.type = "text";
  input.value = (thread.metadata && thread.metadata.title) || "";
  input.setAttribute("aria-label", "Thread title");
  li.replaceChildren(input);
  input.focus();
  input.select();
  let done = false;
  const finish = guarded(async (save) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (save && title && title !== thread.metadata?.title) await setThreadTitle(thread, title);
    renderThreads();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") finish(true);
    else if (e.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
}

async function setThreadTitle(thread, title) {
  const updated = await api.post(`/threads/${thread.id}`, { metadata: { ...(thread.metadata || {}), title: title.slice(0, 512) } });
  Object.assign(thread, updated);
  renderThreads();
}

async function deleteThread(thread) {
  if (!confirm(`Delete the thread "${threadTitle(thread)}"?`)) return;
  await api.del(`/threads/${thread.id}`);
  state.threads = state.threads.filter((t) => t.id !== thread.id);
  if (thread.id === state.threadId) newThread();
  else renderThreads();
}

function clearMessages() {
  state.messageEls.clear();
  state.stepEls.clear();
  $("messages").replaceChildren($("empty-chat"));
  $("empty-chat").hidden = false;
}

function newThread() {
  if (state.abort) return showError("A run is still streaming: stop it first.");
  state.threadId = "";
  state.run = null;
  location.hash = "";
  clearMessages();
  renderRun();
  renderThreads();
  renderAttached();
  closeDrawers();
  $("composer-input").focus();
}

$("new-thread").addEventListener("click", () => newThread());

async function openThread(id) {
  if (state.abort) return showError("A run is still streaming: stop it first.");
  state.threadId = id;
  state.run = null;
  history.replaceState(null, "", `#${encodeURIComponent(id)}`);
  clearMessages();
  renderThreads();
  renderRun();
  closeDrawers();
  const opened = state.threads.find((t) => t.id === id);
  if (opened && opened.metadata && opened.metadata.assistant_id && state.assistants.some((a) => a.id === opened.metadata.assistant_id)) {
    selectAssistant(opened.metadata.assistant_id);
  }
  renderAttached();
  const [messages, runs] = await Promise.all([
    api.listAll(`/threads/${id}/messages`, { params: "&order=asc" }),
    api.listAll(`/threads/${id}/runs`, { params: "&order=asc" }),
  ]);
  const steps = await Promise.all(
    runs.map((r) => api.listAll(`/threads/${id}/runs/${r.id}/steps`, { params: "&order=asc" })),
  );
  if (state.threadId !== id) return;
  const toolSteps = new Map(runs.map((r, i) => [r.id, steps[i].filter((s) => s.step_details.type === "tool_calls")]));
  const shown = new Set();
  for (const m of messages) {
    if (m.run_id && !shown.has(m.run_id)) {
      shown.add(m.run_id);
      for (const s of toolSteps.get(m.run_id) || []) upsertStep(s);
    }
    upsertMessage(m);
  }
  for (const r of runs) if (!shown.has(r.id)) for (const s of toolSteps.get(r.id) || []) upsertStep(s);
  const thread = state.threads.find((t) => t.id === id);
  const first = messages.find((m) => m.role === "user" && m.content.some((c) => c.type === "text"));
  if (thread && !(thread.metadata && thread.metadata.title) && first) {
    await setThreadTitle(thread, titleFrom(first.content.find((c) => c.type === "text").text.value));
  }
  const last = runs[runs.length - 1];
  if (last) {
    state.run = last;
    renderRun();
    if (last.status === "requires_action") renderRequiredAction(last);
    else if (ACTIVE.has(last.status)) followRun(last);
  }
  scrollDown(true);
}

/** A run no stream is following: poll it, and show the thread again once it has moved on. */
async function followRun(run) {
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000));
    if (state.threadId !== run.thread_id || state.abort || state.run?.id !== run.id) return;
    const now = await api.get(`/threads/${run.thread_id}/runs/${run.id}`);
    if (state.threadId !== run.thread_id || state.abort) return;
    if (!ACTIVE.has(now.status) || now.status === "requires_action") return openThread(run.thread_id);
    state.run = now;
    renderRun();
  }
}

// ---------------------------------------------------------------------------------------------- messages

function ensureChatVisible() {
  $("empty-chat").hidden = true;
}

function scrollDown(force = false) {
  const box = $("messages");
  if (force || box.scrollHeight - box.scrollTop - box.clientHeight < 120) box.scrollTop = box.scrollHeight;
}

function upsertMessage(message) {
  ensureChatVisible();
  let entry = state.messageEls.get(message.id);
  if (!entry) {
    const el = document.createElement("article");
    el.className = `msg msg-${message.role}`;
    el.dataset.id = message.id;
    const author = state.assistants.find((a) => a.id === message.assistant_id);
    const who = message.role === "user" ? "You" : (author && author.name) || "Assistant";
    el.innerHTML = `<div class="who">${escapeHtml(who)}</div><div class="body"></div>`;
    $("messages").append(el);
    entry = { el, content: [], pending: false };
    state.messageEls.set(message.id, entry);
  }
  entry.content = structuredClone(message.content || []);
  entry.el.classList.toggle("streaming", message.status === "in_progress");
  renderContent(entry.el.querySelector(".body"), entry.content);
  scrollDown();
  return entry;
}

function applyMessageDelta(data) {
  const entry = state.messageEls.get(data.id) || upsertMessage({ id: data.id, role: "assistant", content: [], status: "in_progress" });
  for (const part of data.delta.content || []) {
    const current = entry.content[part.index];
    if (!current) {
      entry.content[part.index] = structuredClone(part);
      continue;
    }
    if (part.type === "text" && part.text) {
      current.text.value += part.text.value || "";
      // Annotations merge by their index, as the SDKs do: index i is annotation i of the stored message.
      const annotations = (current.text.annotations ||= []);
      for (const a of part.text.annotations || []) {
        if (typeof a.index === "number") annotations[a.index] = { ...annotations[a.index], ...a };
        else annotations.push(a);
      }
    } else {
      entry.content[part.index] = { ...current, ...structuredClone(part) };
    }
  }
  // Many deltas can arrive within one frame: render once per frame.
  if (!entry.pending) {
    entry.pending = true;
    requestAnimationFrame(() => {
      entry.pending = false;
      renderContent(entry.el.querySelector(".body"), entry.content);
      scrollDown();
    });
  }
}

// ---------------------------------------------------------------------------------------------- run steps

function upsertStep(step) {
  if (step.step_details.type !== "tool_calls") return;
  ensureChatVisible();
  let entry = state.stepEls.get(step.id);
  if (!entry) {
    const el = document.createElement("div");
    el.className = "step";
    el.dataset.id = step.id;
    $("messages").append(el);
    entry = { el, calls: [], status: step.status };
    state.stepEls.set(step.id, entry);
  }
  entry.calls = structuredClone(step.step_details.tool_calls || []);
  entry.status = step.status;
  renderToolCalls(entry.el, entry.calls, entry.status);
  scrollDown();
}

function applyStepDelta(data) {
  const entry = state.stepEls.get(data.id);
  const details = data.delta && data.delta.step_details;
  if (!entry || !details || details.type !== "tool_calls") return;
  for (const d of details.tool_calls || []) {
    const i = d.index ?? entry.calls.length;
    const call = (entry.calls[i] ||= { id: d.id, type: d.type });
    if (d.id) call.id = d.id;
    if (d.function) {
      call.function ||= { name: "", arguments: "", output: null };
      if (d.function.name) call.function.name = d.function.name;
      call.function.arguments = (call.function.arguments || "") + (d.function.arguments || "");
      if (d.function.output != null) call.function.output = d.function.output;
    }
    if (d.code_interpreter) {
      call.code_interpreter ||= { input: "", outputs: [] };
      call.code_interpreter.input += d.code_interpreter.input || "";
      for (const o of d.code_interpreter.outputs || []) call.code_interpreter.outputs[o.index ?? call.code_interpreter.outputs.length] = o;
    }
    if (d.file_search) call.file_search = { ...(call.file_search || {}), ...d.file_search };
  }
  renderToolCalls(entry.el, entry.calls, entry.status);
  scrollDown();
}

// ---------------------------------------------------------------------------------------------- runs

function renderRun() {
  const run = state.run;
  $("run-status").hidden = !run;
  const active = Boolean(run && ACTIVE.has(run.status));
  $("stop").hidden = !active;
  $("send").disabled = active || Boolean(state.abort);
  if (!run) return;
  const badge = $("run-state");
  badge.textContent = run.status;
  badge.className = `badge s-${run.status}`;
  $("run-detail").textContent = run.model;
  $("run-detail").title = run.id;
  const u = run.usage;
  $("run-usage").textContent = u ? `tokens: ${u.prompt_tokens} prompt + ${u.completion_tokens} completion = ${u.total_tokens}` : "";
}

function onStreamEvent(event, data) {
  if (event === "error") {
    showError(`Stream error: ${(data && data.error && data.error.message) || (data && data.message) || JSON.stringify(data)}`);
  } else if (event.startsWith("thread.run.step.")) {
    if (event === "thread.run.step.delta") applyStepDelta(data);
    else upsertStep(data);
  } else if (event.startsWith("thread.run.")) {
    state.run = data;
    renderRun();
    if (event === "thread.run.requires_action") renderRequiredAction(data);
    else if (event === "thread.run.failed") showError(`The run failed: ${data.last_error ? data.last_error.message : "no reason given"}`);
    else if (event === "thread.run.incomplete") {
      showError(`The run ended incomplete: ${data.incomplete_details ? data.incomplete_details.reason : "no reason given"}`);
    } else if (event === "thread.run.expired") showError("The run expired.");
  } else if (event === "thread.message.delta") {
    applyMessageDelta(data);
  } else if (event.startsWith("thread.message.")) {
    if (data.role !== "user" || !state.messageEls.has(data.id)) upsertMessage(data);
  }
}

async function streamRun(path, body) {
  state.abort = new AbortController();
  renderRun();
  $("stop").hidden = false;
  try {
    await api.stream(path, body, onStreamEvent, state.abort.signal);
  } catch (err) {
    showError(err);
  } finally {
    state.abort = null;
    for (const entry of state.messageEls.values()) entry.el.classList.remove("streaming");
    renderRun();
  }
  // A stream cut off before the run ended (a proxy, a restart): follow the run by polling instead.
  const run = state.run;
  if (run && ACTIVE.has(run.status) && run.status !== "requires_action") followRun(run);
}

async function send() {
  const input = $("composer-input");
  const text = input.value.trim();
  if (!text || state.abort || (state.run && ACTIVE.has(state.run.status))) return;
  const assistant = currentAssistant();
  if (!assistant) throw new Error("Create or pick an assistant first (the panel on the right).");
  let thread = state.threads.find((t) => t.id === state.threadId);
  if (!thread) {
    thread = await api.post("/threads", { metadata: { title: titleFrom(text), assistant_id: assistant.id } });
    state.threads.unshift(thread);
    state.threadId = thread.id;
    history.replaceState(null, "", `#${encodeURIComponent(thread.id)}`);
    renderThreads();
  } else if (!(thread.metadata && thread.metadata.title)) {
    await setThreadTitle(thread, titleFrom(text));
  }
  const message = await api.post(`/threads/${thread.id}/messages`, { role: "user", content: text });
  input.value = "";
  upsertMessage(message);
  scrollDown(true);
  await streamRun(`/threads/${thread.id}/runs`, { assistant_id: assistant.id });
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded(send)();
});
$("composer-input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    guarded(send)();
  }
});

$("stop").addEventListener(
  "click",
  guarded(async () => {
    const run = state.run;
    if (!run) return;
    $("stop").disabled = true;
    try {
      const updated = await api.post(`/threads/${run.thread_id}/runs/${run.id}/cancel`, {});
      // A stream reports the final status itself, and may have done so before this answer arrived:
      // only a run nothing else is following is updated (and then followed) from here.
      if (!state.abort && state.run && state.run.id === updated.id && ACTIVE.has(state.run.status)) {
        state.run = updated;
        document.querySelectorAll(".action-form").forEach((f) => f.remove());
        renderRun();
        followRun(updated);
      }
    } finally {
      $("stop").disabled = false;
    }
  }),
);

function renderRequiredAction(run) {
  document.querySelectorAll(".action-form").forEach((f) => f.remove());
  const calls = run.required_action && run.required_action.submit_tool_outputs ? run.required_action.submit_tool_outputs.tool_calls : [];
  const form = document.createElement("form");
  form.className = "action-form";
  form.innerHTML = `<h3>The assistant called ${calls.length === 1 ? "a function" : `${calls.length} functions`}: submit the output</h3>`;
  for (const call of calls) {
    const fs = document.createElement("fieldset");
    const legend = document.createElement("legend");
    legend.textContent = call.function.name;
    const id = `output-${call.id}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = `Output of ${call.function.name}`;
    const area = document.createElement("textarea");
    area.id = id;
    area.rows = 2;
    area.className = "mono tool-output";
    area.dataset.callId = call.id;
    area.placeholder = '{"result": "..."}  (Ctrl+Enter to submit)';
    fs.append(legend, section("Arguments", pre(prettyJson(call.function.arguments))), label, area);
    form.append(fs);
  }
  const row = document.createElement("div");
  row.className = "row actions";
  row.innerHTML = `<button type="submit" class="primary">Submit outputs</button>`;
  form.append(row);
  form.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener(
    "submit",
    guarded(async (e) => {
      e.preventDefault();
      const outputs = [...form.querySelectorAll("textarea")].map((a) => ({ tool_call_id: a.dataset.callId, output: a.value }));
      form.querySelectorAll("button, textarea").forEach((el) => (el.disabled = true));
      try {
        await streamRun(`/threads/${run.thread_id}/runs/${run.id}/submit_tool_outputs`, { tool_outputs: outputs });
        form.remove();
      } finally {
        form.querySelectorAll("button, textarea").forEach((el) => (el.disabled = false));
      }
    }),
  );
  ensureChatVisible();
  $("messages").append(form);
  form.querySelector("textarea")?.focus();
  scrollDown(true);
}

// ---------------------------------------------------------------------------------------------- files

async function ensureThread() {
  let thread = state.threads.find((t) => t.id === state.threadId);
  if (thread) return thread;
  const assistant = currentAssistant();
  thread = await api.post("/threads", { metadata: assistant ? { assistant_id: assistant.id } : {} });
  state.threads.unshift(thread);
  state.threadId = thread.id;
  history.replaceState(null, "", `#${encodeURIComponent(thread.id)}`);
  renderThreads();
  return thread;
}

/** The assistant or thread files go to, its API path, and a function storing an updated copy. */
async function fileTarget() {
  if ($("files-target").value === "assistant") {
    const a = currentAssistant();
    if (!a) throw new Error("Create or pick an assistant first.");
    return {
      obj: a,
      path: `/assistants/${a.id}`,
      store: (u) => {
        state.assistants[state.assistants.findIndex((x) => x.id === u.id)] = u;
      },
    };
  }
  const t = await ensureThread();
  return { obj: t, path: `/threads/${t.id}`, store: (u) => Object.assign(t, u) };
}

async function attach(target, fileId, tool) {
  const resources = structuredClone(target.obj.tool_resources || {});
  if (tool === "code_interpreter") {
    const ids = resources.code_interpreter?.file_ids || [];
    resources.code_interpreter = { file_ids: [...ids, fileId] };
    target.store(await api.post(target.path, { tool_resources: resources }));
    return null;
  }
  let storeId = resources.file_search?.vector_store_ids?.[0];
  if (!storeId) {
    const vs = await api.post("/vector_stores", { name: `playground ${target.obj.name || target.obj.id}` });
    storeId = vs.id;
    resources.file_search = { vector_store_ids: [storeId] };
    const updated = await api.post(target.path, { tool_resources: resources });
    target.store(updated);
    target.obj = updated;
  }
  await api.post(`/vector_stores/${storeId}/files`, { file_id: fileId });
  return storeId;
}

function statusText(el, status, detail = "") {
  el.className = `status st-${status}`;
  el.textContent = detail ? `${status}: ${detail}` : status;
}

async function uploadOne(file) {
  const li = document.createElement("li");
  li.innerHTML = `<div class="name"></div><progress max="1" value="0"></progress><div class="status">uploading…</div>`;
  li.querySelector(".name").textContent = file.name;
  $("uploads").prepend(li);
  const bar = li.querySelector("progress");
  const status = li.querySelector(".status");
  const tool = $("files-tool").value;
  try {
    const target = await fileTarget();
    const uploaded = await api.upload(file, "assistants", (f) => (bar.value = f));
    bar.value = 1;
    state.fileNames.set(uploaded.id, Promise.resolve(uploaded.filename));
    statusText(status, "attaching");
    const storeId = await attach(target, uploaded.id, tool);
    if (!storeId) {
      statusText(status, "completed", "attached to code_interpreter");
      return;
    }
    statusText(status, "in_progress", "ingesting");
    for (;;) {
      const vf = await api.get(`/vector_stores/${storeId}/files/${uploaded.id}`);
      if (vf.status !== "in_progress") {
        statusText(status, vf.status, vf.last_error ? vf.last_error.message : "");
        break;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  } catch (err) {
    statusText(status, "failed", err.message);
    throw err;
  } finally {
    renderAttached();
  }
}

async function uploadFiles(files) {
  const results = await Promise.allSettled([...files].map(uploadOne));
  for (const r of results) if (r.status === "rejected") showError(r.reason);
}

$("files-input").addEventListener("change", (e) => {
  uploadFiles(e.target.files);
  e.target.value = "";
});
const dropzone = $("dropzone");
dropzone.addEventListener("dragover", (e) => {
  e.preventDefault();
  dropzone.classList.add("over");
});
dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
dropzone.addEventListener("drop", (e) => {
  e.preventDefault();
  dropzone.classList.remove("over");
  uploadFiles(e.dataTransfer.files);
});

const renderAttached = guarded(async () => {
  const list = $("attached");
  const onThread = $("files-target").value === "thread";
  const obj = onThread ? state.threads.find((t) => t.id === state.threadId) : currentAssistant();
  list.innerHTML = "";
  if (!obj) {
    list.innerHTML = `<li class="muted">${onThread ? "No thread yet: an upload starts one." : "No assistant selected."}</li>`;
    return;
  }
  const res = obj.tool_resources || {};
  const rows = [];
  for (const id of res.code_interpreter?.file_ids || []) rows.push({ id, where: "code_interpreter", status: "attached" });
  for (const vs of res.file_search?.vector_store_ids || []) {
    for (const f of await api.listAll(`/vector_stores/${vs}/files`)) {
      rows.push({ id: f.id, where: `file_search · ${vs}`, status: f.status, error: f.last_error?.message });
    }
  }
  if (!rows.length) list.innerHTML = `<li class="muted">No files.</li>`;
  for (const r of rows) {
    const li = document.createElement("li");
    li.innerHTML = `<div class="name"></div><div class="muted"></div><div class="status"></div>`;
    li.querySelector(".name").textContent = r.id;
    fileName(r.id).then((n) => (li.querySelector(".name").textContent = n));
    li.querySelector(".muted").textContent = r.where;
    statusText(li.querySelector(".status"), r.status, r.error || "");
    list.append(li);
  }
});

$("files-target").addEventListener("change", renderAttached);
$("files-refresh").addEventListener("click", renderAttached);

// ---------------------------------------------------------------------------------------------- layout

function selectTab(name) {
  for (const tab of ["assistant", "files"]) {
    $(`tab-btn-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`tab-${tab}`).hidden = tab !== name;
  }
  if (name === "files") renderAttached();
}

$("tab-btn-assistant").addEventListener("click", () => selectTab("assistant"));
$("tab-btn-files").addEventListener("click", () => selectTab("files"));
document.querySelector(".tabs").addEventListener("keydown", (e) => {
  if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
    const next = $("tab-btn-assistant").getAttribute("aria-selected") === "true" ? "files" : "assistant";
    selectTab(next);
    $(`tab-btn-${next}`).focus();
  }
});

const narrow = window.matchMedia("(max-width: 1100px)");
function setPanel(open) {
  $("app").classList.toggle("panel-closed", !open);
  $("toggle-panel").setAttribute("aria-expanded", String(open));
}
setPanel(!narrow.matches);
narrow.addEventListener("change", () => setPanel(!narrow.matches));

function closeDrawers() {
  $("app").classList.remove("sidebar-open");
  if (narrow.matches) setPanel(false);
}

$("toggle-panel").addEventListener("click", () => setPanel($("app").classList.contains("panel-closed")));
$("close-panel").addEventListener("click", () => setPanel(false));
$("toggle-sidebar").addEventListener("click", () => $("app").classList.toggle("sidebar-open"));
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") closeDrawers();
  else if (e.altKey && (e.key === "n" || e.key === "N")) {
    e.preventDefault();
    newThread();
  }
});

boot().catch(showError);
