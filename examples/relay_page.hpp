/* The page llm-relay serves at GET /: a prompt streamed into the page through POST /ai/stream with
   fetch() and a ReadableStream read as Server-Sent Events (EventSource cannot POST). Self-contained:
   no external script, style or font. Loaded as /?prompt=TEXT it starts at once; ?token=T is sent as
   the bearer token when the relay asks for one. When the stream ends, <body data-state> says "done" or
   "error" (the end-to-end test reads it). */
#ifndef LLM_STREAM_EXAMPLES_RELAY_PAGE_HPP
#define LLM_STREAM_EXAMPLES_RELAY_PAGE_HPP

namespace relay {

constexpr const char* kPage = R"PAGE(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>llm-relay</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
  textarea { width: 100%; box-sizing: border-box; font: inherit; }
  #output { white-space: pre-wrap; border-left: 3px solid #888; padding-left: 1rem; min-height: 3rem; }
  #status { color: #666; font-size: 0.9em; }
</style>
</head>
<body data-state="idle">
<h1>llm-relay</h1>
<form id="form">
  <textarea id="prompt" rows="3" placeholder="Ask something"></textarea>
  <button type="submit">Send</button>
</form>
<div id="output"></div>
<p id="status"></p>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const output = document.getElementById("output");
const status = document.getElementById("status");

function show(state, text) {
  document.body.dataset.state = state;
  status.textContent = text;
}

// One SSE event (lines without the blank line that ended it): a chunk of text, "done" or "error".
function handle(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
  }
  const text = data.join("\n");
  if (name === "message") output.textContent += text;
  else if (name === "done") {
    const stats = JSON.parse(text);
    show("done", `done: ${stats.chunks} chunks, ${stats.chars} characters, ${Math.round(stats.total_ms)} ms`);
  } else if (name === "error") show("error", "error: " + JSON.parse(text).message);
}

async function stream(prompt) {
  output.textContent = "";
  show("streaming", "streaming...");
  const headers = { "Content-Type": "application/json" };
  if (params.get("token")) headers.Authorization = "Bearer " + params.get("token");
  try {
    const response = await fetch("/ai/stream", { method: "POST", headers, body: JSON.stringify({ prompt }) });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw new Error(body && body.error ? body.error.message : "HTTP " + response.status);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      for (let end; (end = buffer.indexOf("\n\n")) >= 0; buffer = buffer.slice(end + 2)) handle(buffer.slice(0, end));
    }
    if (document.body.dataset.state === "streaming") show("error", "error: the stream ended early");
  } catch (e) {
    show("error", "error: " + e.message);
  }
}

document.getElementById("form").addEventListener("submit", (event) => {
  event.preventDefault();
  stream(document.getElementById("prompt").value);
});
if (params.has("prompt")) {
  document.getElementById("prompt").value = params.get("prompt");
  stream(params.get("prompt"));
}
</script>
</body>
</html>
)PAGE";

}  // namespace relay

#endif  // LLM_STREAM_EXAMPLES_RELAY_PAGE_HPP
