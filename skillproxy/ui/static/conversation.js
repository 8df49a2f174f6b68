// A stored exchange drawn as a conversation, in each wire format's own terms: Chat Completions
// `messages` (tool_calls, role "tool" results), Anthropic `messages` (tool_use / tool_result /
// thinking blocks, `system`), and Responses `instructions` / `input` / `output` items
// (function_call, function_call_output, reasoning). Anything not recognised is shown as JSON,
// never dropped. All text goes in as text.

import { h } from "./dom.js";

function pretty(value) {
  if (typeof value === "string") {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  return JSON.stringify(value, null, 2);
}

function textOf(content) {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((part) => (typeof part === "string" ? part : part.text ?? pretty(part)))
      .join("\n");
  }
  return pretty(content);
}

function text(value, kind = "text") {
  return h("p", { class: kind }, value);
}

function raw(value) {
  return h("pre", { class: "raw" }, pretty(value));
}

export function toolCall(name, args, id) {
  return h(
    "div",
    { class: "tool-call" },
    h("div", { class: "tool-head" }, "Tool call ", h("code", { class: "tool-name" }, name ?? "?"),
      id ? h("span", { class: "muted" }, ` ${id}`) : null),
    h("pre", { class: "tool-args" }, pretty(args ?? "")),
  );
}

export function toolResult(id, content, failed) {
  return h(
    "div",
    { class: `tool-result${failed ? " failed" : ""}` },
    h("div", { class: "tool-head" }, failed ? "Tool error" : "Tool result",
      id ? h("span", { class: "muted" }, ` for ${id}`) : null),
    h("pre", { class: "tool-output" }, textOf(content)),
  );
}

function thinking(value) {
  return h("details", { class: "thinking" }, h("summary", {}, "Thinking"), text(value));
}

/** One content part of any of the three formats. */
function part(item) {
  if (typeof item === "string") return text(item);
  if (item === null || typeof item !== "object") return raw(item);
  switch (item.type) {
    case "text":
    case "input_text":
    case "output_text":
      return text(item.text ?? "");
    case "refusal":
      return text(item.refusal ?? "", "text refusal");
    case "image":
    case "image_url":
    case "input_image":
    case "input_file":
    case "document":
      return h("p", { class: "muted" }, `[${item.type}]`);
    case "tool_use":
    case "server_tool_use":
      return toolCall(item.name, item.input, item.id);
    case "tool_result":
      return toolResult(item.tool_use_id, item.content, item.is_error);
    case "thinking":
      return thinking(item.thinking ?? "");
    case "redacted_thinking":
      return h("p", { class: "muted" }, "[redacted thinking]");
    default:
      return raw(item);
  }
}

function content(value) {
  if (value === null || value === undefined || value === "") return [];
  if (typeof value === "string") return [text(value)];
  if (Array.isArray(value)) return value.map(part);
  return [raw(value)];
}

function turn(role, parts, note) {
  return h(
    "div",
    { class: `turn role-${String(role).replace(/[^a-z_]/gi, "")}` },
    h("div", { class: "role" }, role, note ? h("span", { class: "muted" }, ` ${note}`) : null),
    parts,
  );
}

function chatMessage(message) {
  if (!message || typeof message !== "object") return turn("?", [raw(message)]);
  const parts = content(message.content);
  if (message.refusal) parts.push(text(message.refusal, "text refusal"));
  for (const call of message.tool_calls || []) {
    const fn = call.function || {};
    parts.push(toolCall(fn.name, fn.arguments, call.id));
  }
  if (message.function_call) {
    parts.push(toolCall(message.function_call.name, message.function_call.arguments));
  }
  if (message.role === "tool" || message.role === "function") {
    return turn("tool", [toolResult(message.tool_call_id || message.name, message.content)]);
  }
  return turn(message.role, parts, message.name ? `(${message.name})` : null);
}

function chat(request, response) {
  const turns = (request?.messages || []).map(chatMessage);
  const answers = (response?.choices || []).map((choice) => {
    const shown = chatMessage(choice.message || choice.delta || {});
    if (choice.finish_reason) {
      shown.append(h("p", { class: "finish muted" }, `finish: ${choice.finish_reason}`));
    }
    return shown;
  });
  return { turns, answers };
}

function anthropic(request, response) {
  const turns = [];
  if (request?.system) turns.push(turn("system", content(request.system)));
  for (const message of request?.messages || []) {
    turns.push(turn(message.role, content(message.content)));
  }
  const answers = [];
  if (response && Array.isArray(response.content)) {
    const shown = turn(response.role || "assistant", content(response.content));
    if (response.stop_reason) {
      shown.append(h("p", { class: "finish muted" }, `stop: ${response.stop_reason}`));
    }
    answers.push(shown);
  }
  return { turns, answers };
}

function responsesItem(item) {
  if (typeof item === "string") return turn("user", [text(item)]);
  if (!item || typeof item !== "object") return turn("?", [raw(item)]);
  switch (item.type) {
    case "function_call":
    case "custom_tool_call":
      return turn("assistant", [toolCall(item.name, item.arguments ?? item.input, item.call_id)]);
    case "function_call_output":
    case "custom_tool_call_output":
      return turn("tool", [toolResult(item.call_id, item.output)]);
    case "reasoning":
      return turn("assistant", [thinking((item.summary || []).map((s) => s.text).join("\n"))]);
    case "message":
    case undefined:
      return turn(item.role || "?", content(item.content));
    default:
      return turn(item.type, [raw(item)]);
  }
}

function responses(request, response) {
  const turns = [];
  if (request?.instructions) turns.push(turn("instructions", content(request.instructions)));
  const input = request?.input;
  if (typeof input === "string") turns.push(turn("user", [text(input)]));
  else for (const item of input || []) turns.push(responsesItem(item));
  const answers = (response?.output || []).map(responsesItem);
  if (response?.status && response.status !== "completed") {
    answers.push(h("p", { class: "finish muted" }, `status: ${response.status}`));
  }
  return { turns, answers };
}

/** The wire format of a trace: its own word, else guessed from the bodies' shape. */
export function formatOf(trace) {
  if (trace.format) return trace.format;
  const request = trace.request_json;
  const response = trace.response_json;
  if (response?.choices) return "chat";
  if (request && "input" in request) return "responses";
  if (response?.type === "message" || request?.system !== undefined) return "messages";
  return request?.messages ? "chat" : null;
}

const RENDERERS = { chat, messages: anthropic, responses };

/** The conversation of a trace: request turns, then the answer. */
export function conversationView(trace) {
  const render = RENDERERS[formatOf(trace)];
  const request = trace.request_json;
  const response = trace.response_json;
  if (!render || typeof request !== "object" || request === null) {
    return h("div", { class: "conversation" },
      h("p", { class: "muted" }, "Not a conversation this page knows how to draw; the bodies:"),
      raw(request), raw(response));
  }
  const answered = response && typeof response === "object" ? response : null;
  const { turns, answers } = render(request, answered);
  return h(
    "div",
    { class: "conversation" },
    h("div", { class: "turns request-turns" }, turns),
    h("h3", { class: "answer-head" }, "Answer"),
    answers.length
      ? h("div", { class: "turns response-turns" }, answers)
      : h("p", { class: "muted" }, response === null ? "No answer recorded." : "No answer turns."),
    typeof response === "string" ? raw(response) : null,
  );
}
