// The console's playground: one chat turn against the gateway's own /v1/chat/completions, streamed.
// The reply is read from a ReadableStream as it arrives; every SSE event is shown raw as well.
"use strict";

(function () {
  const form = document.getElementById("playground");
  const reply = document.getElementById("pg-reply");
  const events = document.getElementById("pg-events");
  const status = document.getElementById("pg-status");

  function body() {
    const request = {
      model: document.getElementById("pg-model").value,
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: document.getElementById("pg-message").value }],
    };
    const tools = document.getElementById("pg-tools").value.trim();
    if (tools) request.tools = JSON.parse(tools);
    return request;
  }

  function show(data) {
    events.textContent += "data: " + data + "\n";
    if (data === "[DONE]") return;
    const chunk = JSON.parse(data);
    if (chunk.error) {
      status.textContent = "Error: " + chunk.error.message;
      return;
    }
    for (const choice of chunk.choices || []) {
      const delta = choice.delta || {};
      if (delta.content) reply.textContent += delta.content;
      for (const call of delta.tool_calls || []) {
        reply.textContent += (call.function && call.function.name ? "\n[tool call " + call.function.name + "] " : "")
          + ((call.function && call.function.arguments) || "");
      }
    }
    if (chunk.usage) status.textContent = "Tokens: " + chunk.usage.prompt_tokens + " in, " + chunk.usage.completion_tokens + " out";
  }

  async function send(event) {
    event.preventDefault();
    reply.textContent = "";
    events.textContent = "";
    status.textContent = "Waiting for the first token…";
    const headers = { "content-type": "application/json" };
    const key = document.getElementById("pg-key");
    if (key) headers.authorization = "Bearer " + key.value;
    let request;
    try {
      request = body();
    } catch (error) {
      status.textContent = "The tools are not valid JSON: " + error.message;
      return;
    }
    const response = await fetch("/v1/chat/completions", { method: "POST", headers: headers, body: JSON.stringify(request) });
    if (!response.ok) {
      const text = await response.text();
      events.textContent = text;
      try {
        status.textContent = "Error " + response.status + ": " + JSON.parse(text).error.message;
      } catch (error) {
        status.textContent = "Error " + response.status;
      }
      return;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    status.textContent = "Streaming…";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of block.split("\n")) {
          if (line.startsWith("data: ")) show(line.slice(6));
        }
      }
    }
    if (status.textContent === "Streaming…") status.textContent = "Done.";
  }

  form.addEventListener("submit", send);
})();
