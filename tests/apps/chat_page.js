// Runs the chat example's page script (examples/chat/rooms/static/rooms/chat.js) under Node
// with just enough of a DOM for it, against a real server:
//
//   node chat_page.js CHAT_JS HOST:PORT ROOM MESSAGE
//
// It waits for the welcome, submits MESSAGE through the page's form handler, waits until the
// room sends it back into the page's log, then prints one JSON line {status, log} and exits
// 0. It exits 1 after 10 s without that. Node's WebSocket sends no Origin header by itself;
// a browser always does, so this adds the page's origin.
"use strict";

const fs = require("fs");

const [chatScript, host, room, message] = process.argv.slice(2);
const origin = "https://" + host;
const elements = new Map();

function element(id, textContent = "") {
  const node = {
    id,
    textContent,
    value: "",
    readOnly: false,
    className: "",
    children: [],
    listeners: {},
    append(...items) {
      this.children.push(...items);
    },
    addEventListener(type, listener) {
      this.listeners[type] = listener;
    },
    scrollIntoView() {},
    focus() {},
  };
  elements.set(id, node);
  return node;
}

function text(node) {
  return typeof node === "string" ? node : node.textContent + node.children.map(text).join("");
}

element("room-name", JSON.stringify(room));
for (const id of ["log", "status", "chat-form", "chat-name", "chat-text"]) {
  element(id);
}
let created = 0;
global.document = {
  getElementById: (id) => elements.get(id),
  createElement: () => element("created-" + created++),
};
global.localStorage = { getItem: () => "node", setItem() {} };
global.location = { protocol: "https:", host };
const NativeWebSocket = WebSocket;
global.WebSocket = class extends NativeWebSocket {
  constructor(url) {
    super(url, { headers: { origin } });
  }
};

eval(fs.readFileSync(chatScript, "utf8"));

const status = elements.get("status");
const log = elements.get("log");
let sent = false;
const started = Date.now();
const timer = setInterval(function () {
  if (!sent && status.textContent.startsWith("connected")) {
    elements.get("chat-text").value = message;
    elements.get("chat-form").listeners.submit({ preventDefault() {} });
    sent = true;
  }
  const lines = log.children.map(text);
  if (sent && lines.length > 0) {
    clearInterval(timer);
    console.log(JSON.stringify({ status: status.textContent, log: lines }));
    process.exit(0);
  }
  if (Date.now() - started > 10000) {
    console.log(JSON.stringify({ status: status.textContent, log: lines, timeout: true }));
    process.exit(1);
  }
}, 50);
