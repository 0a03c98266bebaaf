// The room page: join /ws/chat/<room>/ over wss:// (or ws:// on plain HTTP), show what the
// room says, and send the form over the WebSocket. Without JavaScript the form posts to the
// server, which broadcasts the message all the same.
"use strict";

(function () {
  const roomName = JSON.parse(document.getElementById("room-name").textContent);
  const log = document.getElementById("log");
  const status = document.getElementById("status");
  const form = document.getElementById("chat-form");
  const nameInput = document.getElementById("chat-name");
  const textInput = document.getElementById("chat-text");
  let socket = null;
  let retryDelay = 500;

  nameInput.value = localStorage.getItem("chat-name") || "";

  function show(author, text, className) {
    const item = document.createElement("li");
    if (className) {
      item.className = className;
    }
    if (author) {
      const who = document.createElement("b");
      who.textContent = author;
      item.append(who, " ");
    }
    item.append(text);
    log.append(item);
    item.scrollIntoView({ block: "end" });
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/chat/" + encodeURIComponent(roomName) + "/");
    socket.addEventListener("open", function () {
      retryDelay = 500;
    });
    socket.addEventListener("message", function (event) {
      const data = JSON.parse(event.data);
      if (data.type === "welcome") {
        status.textContent = "connected over " + data.scheme + (data.http_version === "2" ? " (HTTP/2)" : "");
        if (data.user) {
          nameInput.value = data.user;
          nameInput.readOnly = true;
        }
      } else if (data.type === "message") {
        show(data.author, data.message);
      } else if (data.type === "error") {
        show(null, data.error, "error");
      }
    });
    socket.addEventListener("close", function () {
      status.textContent = "disconnected, retrying…";
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10000);
    });
  }

  form.addEventListener("submit", function (event) {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      return; // let the browser post the form instead
    }
    event.preventDefault();
    localStorage.setItem("chat-name", nameInput.value);
    socket.send(JSON.stringify({ message: textInput.value, name: nameInput.value }));
    textInput.value = "";
    textInput.focus();
  });

  connect();
})();
