/*
 * Jade Mart chat widget. Embed with one tag:
 *
 *   <script src="https://bot.example.com/webhooks/web/widget.js" defer></script>
 *
 * Optional settings, before that tag (all optional):
 *
 *   window.JadeChat = {
 *     lang: "en",                                  // else <html lang>, else the browser's
 *     user: { id: "42", expires: 1767225600,     // a Unix time; from your backend:
 *             hash: "<hex HMAC-SHA256(identity_secret, id + ':' + expires)>" },
 *     hotQuestions: { zh: ["运费怎么算"], en: ["How much is shipping?"] },
 *     title: { zh: "在线客服", en: "Customer service" },
 *   };
 *
 * or as attributes of the script tag: data-lang, data-user-id, data-user-expires, data-user-hash,
 * data-hot-questions (JSON of the same shape). The widget loads its CSS and the
 * socket.io client from where this script came from, and speaks Rasa's socket.io
 * protocol plus the server's extra events (history, typing, customer_uttered, error).
 *
 * A page whose user logs in or out without a reload tells the widget, which then
 * starts that user's chat (or a new anonymous visitor's) as a fresh page would:
 *
 *   JadeChat.login({ id: "42", expires: 1767225600, hash: "<hex HMAC from your backend>" });
 *   JadeChat.logout();
 */
(function () {
  "use strict";
  if (window.__jadeChatLoaded) return;
  window.__jadeChatLoaded = true;

  var script =
    document.currentScript ||
    (function () {
      var found = document.querySelectorAll('script[src*="widget.js"]');
      return found[found.length - 1];
    })();
  var base = new URL(".", script.src); // …/webhooks/web/
  var settings = Object.assign({}, window.JadeChat || {});
  var data = script.dataset || {};
  if (!settings.lang && data.lang) settings.lang = data.lang;
  if (!settings.user && data.userId) {
    settings.user = { id: data.userId, hash: data.userHash, expires: data.userExpires };
  }
  if (!settings.hotQuestions && data.hotQuestions) {
    try {
      settings.hotQuestions = JSON.parse(data.hotQuestions);
    } catch (e) {
      console.warn("jade chat: data-hot-questions is not JSON", e);
    }
  }
  // One token per bot server, so two sites' widgets on one domain don't mix.
  var TOKEN_KEY = "jade-chat:session:" + base.origin;
  var OPEN_KEY = "jade-chat:open:" + base.origin;
  var MAX_CHARS = 2000;

  var TEXTS = {
    zh: {
      title: "青玉商城 · 在线客服",
      open: "打开在线客服",
      close: "关闭",
      placeholder: "请输入您的问题…",
      send: "发送",
      hot: "大家都在问",
      typing: "小玉正在输入…",
      queue: "您前面还有 {n} 位",
      wait: "，预计等待约 {m} 分钟",
      agent: "人工客服 {name}",
      agentJoined: "人工客服 {name} 为您服务",
      agentLeft: "{name} 已离开对话，小玉继续为您服务",
      rate: "请为本次服务打分：",
      rated: "感谢您的评价！",
      connecting: "正在连接…",
      offline: "连接已断开，正在重新连接…",
      invalid_session: "您的会话已失效，已为您开始新的会话。",
      identity_refused: "无法验证您的登录信息，请刷新页面后重试。",
      bad_request: "消息未能发送，请重试。",
      session_lost: "连接异常，正在恢复会话…",
      rate_limited: "您所在的网络访问过于频繁，请稍候，我们会自动重试。",
      unread: "{n} 条未读消息",
    },
    en: {
      title: "Jade Mart · Customer service",
      open: "Open customer service chat",
      close: "Close",
      placeholder: "Type your question…",
      send: "Send",
      hot: "Popular questions",
      typing: "Jade is typing…",
      queue: "You are number {n} in the queue",
      wait: ", about {m} min to wait",
      agent: "Agent {name}",
      agentJoined: "{name} has joined the chat",
      agentLeft: "{name} has left the chat; Jade is back to help",
      rate: "How did we do?",
      rated: "Thanks for your feedback!",
      connecting: "Connecting…",
      offline: "Connection lost, reconnecting…",
      invalid_session: "Your chat session had expired, so a new one was started.",
      identity_refused: "We couldn't verify your login. Please reload the page and try again.",
      bad_request: "That message couldn't be sent. Please try again.",
      session_lost: "Connection problem, restoring your chat…",
      rate_limited: "Too many chats are starting from your network; we'll try again shortly.",
      unread: "{n} unread messages",
    },
  };
  var HOT_QUESTIONS = {
    zh: ["运费怎么算", "我的订单到哪了", "怎么退货", "怎么开发票", "人工客服几点上班"],
    en: [
      "How much is shipping?",
      "Where is my order?",
      "What is your return policy?",
      "How do I get an invoice?",
      "What are your opening hours?",
    ],
  };
  var RATINGS = {
    zh: ["非常满意", "满意", "一般", "不满意", "非常不满意"],
    en: ["Very satisfied", "Satisfied", "Neutral", "Dissatisfied", "Very dissatisfied"],
  };

  function language() {
    var wanted =
      settings.lang || document.documentElement.getAttribute("lang") || navigator.language || "zh";
    return String(wanted).toLowerCase().indexOf("zh") === 0 ? "zh" : "en";
  }
  function t(key, values) {
    var text = TEXTS[language()][key] || key;
    Object.keys(values || {}).forEach(function (name) {
      text = text.split("{" + name + "}").join(String(values[name]));
    });
    return text;
  }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text; // never innerHTML: bot and agent text is data
    return node;
  }
  // A speech bubble drawn inline: an emoji would depend on the customer's fonts.
  function chatIcon() {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "28");
    svg.setAttribute("height", "28");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("fill-rule", "evenodd"); // the three dots are holes
    path.setAttribute(
      "d",
      "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm3 6.5a1.5 " +
        "1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01z"
    );
    svg.appendChild(path);
    return svg;
  }
  function storage(kind) {
    try {
      return window[kind];
    } catch (e) {
      return null; // storage blocked (privacy settings): the chat still works, per page
    }
  }
  var local = storage("localStorage");
  var session = storage("sessionStorage");

  // --- state -----------------------------------------------------------------------
  var state = {
    token: local ? local.getItem(TOKEN_KEY) : null,
    confirmed: false,
    pending: [], // messages typed before the session was confirmed
    // Sent, not yet acknowledged: resent (same message_id) after a reconnect,
    // unless the history shows the server has them.
    unacked: [],
    afterHistory: [], // notes to show once the history is rendered
    unread: 0,
    open: session ? session.getItem(OPEN_KEY) === "1" : false,
    customerSpoke: false,
    agent: null,
    queue: null,
    // The last bot message was text alone: Rasa sends a response's custom payload
    // (a survey) as a message of its own right after its text, the question.
    botAsked: false,
    typingTimer: null,
    phone: false,
  };

  // --- DOM -----------------------------------------------------------------------
  var root = el("div", "jc-root");
  root.id = "jade-chat";
  var launcher = el("button", "jc-launcher");
  launcher.type = "button";
  launcher.appendChild(chatIcon());
  var badge = el("span", "jc-badge");
  badge.hidden = true;
  launcher.appendChild(badge);

  var panel = el("section", "jc-panel");
  panel.hidden = true;
  panel.setAttribute("role", "dialog");
  var header = el("header", "jc-header");
  var titles = el("div", "jc-titles");
  var title = el("div", "jc-title");
  var agentLine = el("div", "jc-agent");
  agentLine.hidden = true;
  var status = el("div", "jc-status");
  titles.appendChild(title);
  titles.appendChild(agentLine);
  titles.appendChild(status);
  var closeButton = el("button", "jc-close", "×");
  closeButton.type = "button";
  header.appendChild(titles);
  header.appendChild(closeButton);

  var queueBar = el("div", "jc-queue");
  queueBar.hidden = true;
  var log = el("div", "jc-messages");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  var hot = el("div", "jc-hot");
  var hotTitle = el("div", "jc-hot-title");
  var hotList = el("div", "jc-hot-list");
  hot.appendChild(hotTitle);
  hot.appendChild(hotList);
  var typing = el("div", "jc-typing");
  typing.hidden = true;
  var form = el("form", "jc-form");
  var input = el("input", "jc-input");
  input.type = "text";
  input.maxLength = MAX_CHARS;
  input.autocomplete = "off";
  var sendButton = el("button", "jc-send");
  sendButton.type = "submit";
  form.appendChild(input);
  form.appendChild(sendButton);

  panel.appendChild(header);
  panel.appendChild(queueBar);
  panel.appendChild(log);
  panel.appendChild(typing);
  panel.appendChild(form);
  log.appendChild(hot);
  root.appendChild(panel);
  root.appendChild(launcher);

  function hotQuestions() {
    var configured = settings.hotQuestions && settings.hotQuestions[language()];
    return Array.isArray(configured) && configured.length ? configured : HOT_QUESTIONS[language()];
  }

  // Everything that depends on the language; rerun when <html lang> changes.
  function renderChrome() {
    var lang = language();
    root.setAttribute("lang", lang === "zh" ? "zh-CN" : "en");
    title.textContent = (settings.title && settings.title[lang]) || t("title");
    launcher.setAttribute("aria-label", t("open"));
    launcher.title = t("open");
    closeButton.setAttribute("aria-label", t("close"));
    input.placeholder = t("placeholder");
    sendButton.textContent = t("send");
    typing.textContent = t("typing");
    hotTitle.textContent = t("hot");
    hotList.textContent = "";
    hotQuestions().forEach(function (question) {
      var item = typeof question === "string" ? { title: question, payload: question } : question;
      var button = el("button", "jc-hot-question", item.title);
      button.type = "button";
      button.addEventListener("click", function () {
        send(item.payload || item.title, item.title);
      });
      hotList.appendChild(button);
    });
    renderAgent();
    renderQueue();
    renderStatus();
    renderBadge();
  }
  function renderAgent() {
    agentLine.hidden = !state.agent;
    agentLine.textContent = state.agent ? t("agent", { name: state.agent }) : "";
  }
  function renderQueue() {
    var queue = state.queue;
    queueBar.hidden = !queue;
    if (!queue) return;
    var text = t("queue", { n: queue.position });
    if (queue.wait_minutes != null) text += t("wait", { m: queue.wait_minutes });
    queueBar.textContent = text;
  }
  function renderStatus() {
    var connected = socket && socket.connected && state.confirmed;
    status.hidden = !!connected;
    status.textContent = connected ? "" : socket && state.everConnected ? t("offline") : t("connecting");
  }
  function renderBadge() {
    badge.hidden = state.unread === 0;
    badge.textContent = state.unread > 99 ? "99+" : String(state.unread);
    badge.setAttribute("aria-label", t("unread", { n: state.unread }));
  }
  function renderHot() {
    hot.hidden = state.customerSpoke;
  }

  function setOpen(open) {
    state.open = open;
    panel.hidden = !open;
    root.classList.toggle("jc-open", open);
    launcher.setAttribute("aria-expanded", open ? "true" : "false");
    if (session) session.setItem(OPEN_KEY, open ? "1" : "0");
    fitScreen();
    if (open) {
      state.unread = 0;
      renderBadge();
      scrollDown();
      // On a phone the keyboard would cover the hot questions: wait for a tap on the input.
      if (!state.phone) input.focus();
    }
  }

  // --- phones ---------------------------------------------------------------------------
  // Narrow windows, and touch screens in portrait or short in landscape, get the chat on
  // the whole visible screen, as Intercom and Chatwoot do. Not by width alone: a page
  // without <meta viewport> is laid out 980 px wide even on a phone.
  var PHONE_MEDIA = window.matchMedia(
    "(max-width: 640px), (pointer: coarse) and (orientation: portrait), " +
      "(pointer: coarse) and (max-height: 480px)"
  );
  var fitted = "";
  // position: fixed follows the layout viewport, which a page wider than the screen
  // stretches past it; the visual viewport is what the customer sees (and what shrinks
  // for the on-screen keyboard), so the root is put on it.
  function fitScreen() {
    state.phone = PHONE_MEDIA.matches;
    root.classList.toggle("jc-phone", state.phone);
    lockPage(state.phone && state.open);
    var view = window.visualViewport;
    var box = root.style;
    if (!state.phone || !view) {
      ["left", "top", "width", "height", "transform"].forEach(function (name) {
        box.removeProperty(name);
      });
      fitted = "";
      return;
    }
    // Zoomed out (no <meta viewport>, or a wide page): drawn at the screen's own scale,
    // so it reads like any phone page. Zoomed in by the customer: it zooms along.
    var zoom = view.scale < 1 ? 1 / view.scale : 1;
    var geometry = [view.offsetLeft, view.offsetTop, view.width / zoom, view.height / zoom, zoom];
    if (geometry.join() === fitted) return;
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    fitted = geometry.join();
    box.left = geometry[0] + "px";
    box.top = geometry[1] + "px";
    box.width = geometry[2] + "px";
    box.height = geometry[3] + "px";
    box.transform = zoom === 1 ? "" : "scale(" + zoom + ")";
    if (atBottom) scrollDown(); // the keyboard came up: keep the last message in sight
  }
  // While the chat covers a phone's screen the page behind must not scroll under the
  // customer's thumb. What the page had is put back exactly when the chat closes.
  var LOCKED = ["overflow-x", "overflow-y"];
  var pageLock = null;
  function lockPage(lock) {
    if (lock === !!pageLock) return;
    if (lock) {
      pageLock = { x: window.scrollX, y: window.scrollY, saved: [] };
      [document.documentElement, document.body].forEach(function (node) {
        var style = node.style;
        pageLock.saved.push({
          node: node,
          hadStyle: node.hasAttribute("style"),
          values: LOCKED.map(function (name) {
            return [name, style.getPropertyValue(name), style.getPropertyPriority(name)];
          }),
        });
        LOCKED.forEach(function (name) {
          style.setProperty(name, "hidden", "important");
        });
      });
      return;
    }
    pageLock.saved.forEach(function (saved) {
      var style = saved.node.style;
      saved.values.forEach(function (value) {
        if (value[1]) style.setProperty(value[0], value[1], value[2]);
        else style.removeProperty(value[0]);
      });
      if (!saved.hadStyle && !saved.node.getAttribute("style")) saved.node.removeAttribute("style");
    });
    if (window.scrollX !== pageLock.x || window.scrollY !== pageLock.y) {
      window.scrollTo(pageLock.x, pageLock.y);
    }
    pageLock = null;
  }
  launcher.addEventListener("click", function () {
    setOpen(!state.open);
  });
  closeButton.addEventListener("click", function () {
    setOpen(false);
  });
  // While a person has the chat, the agent sees that the customer is typing (the
  // server passes it on at most every 2 s; nothing is stored).
  var typingSentAt = 0;
  input.addEventListener("input", function () {
    var now = Date.now();
    if (!socket || !input.value || now - typingSentAt < 2000) return;
    typingSentAt = now;
    socket.emit("user_typing", {});
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    send(text, null);
  });

  function scrollDown() {
    log.scrollTop = log.scrollHeight;
  }
  function append(node) {
    log.appendChild(node);
    scrollDown();
  }
  function clearOptions() {
    Array.prototype.forEach.call(log.querySelectorAll(".jc-options"), function (node) {
      node.remove();
    });
  }

  // --- rendering messages -------------------------------------------------------------
  function addCustomer(text) {
    state.customerSpoke = true;
    state.botAsked = false;
    renderHot();
    clearOptions();
    append(el("div", "jc-msg jc-customer", text));
  }
  function addNote(text, kind) {
    append(el("div", "jc-note" + (kind ? " jc-" + kind : ""), text));
  }
  function addOptions(options) {
    var box = el("div", "jc-options");
    options.forEach(function (option) {
      var button = el("button", "jc-option", option.title);
      button.type = "button";
      button.addEventListener("click", function () {
        send(option.payload || option.title, option.title);
      });
      box.appendChild(button);
    });
    append(box);
  }
  function imageSource(message) {
    var image = message.image;
    if (!image && message.attachment && message.attachment.type === "image") {
      image = message.attachment.payload && message.attachment.payload.src;
    }
    return typeof image === "string" && /^https?:\/\//i.test(image) ? image : null;
  }
  function ratingOptions(custom) {
    var lang = custom.language === "en" ? "en" : custom.language === "zh" ? "zh" : language();
    return RATINGS[lang].map(function (label, i) {
      return { title: label, payload: '/rate{"score": ' + (5 - i) + "}" };
    });
  }
  // `asked`: the message's own text (or the text just before it) asked the question.
  function handleCustom(custom, live, asked) {
    var lang = language();
    switch (custom.type) {
      case "agent_joined":
        state.agent = custom.agent || (lang === "zh" ? "客服" : "an agent");
        state.queue = null;
        addNote(t("agentJoined", { name: state.agent }), "agent-note");
        break;
      case "agent_left":
        addNote(t("agentLeft", { name: custom.agent || state.agent || "" }), "agent-note");
        state.agent = null;
        break;
      case "queue_position":
        state.queue = { position: custom.position, wait_minutes: custom.wait_minutes };
        break;
      case "satisfaction":
        if (custom.text) append(el("div", "jc-msg jc-bot", String(custom.text)));
        else if (!asked) append(el("div", "jc-msg jc-bot", t("rate")));
        if (live) {
          clearOptions();
          addOptions(ratingOptions(custom));
        }
        break;
      default:
        if (custom.text) append(el("div", "jc-msg jc-bot", String(custom.text)));
    }
    renderAgent();
    renderQueue();
  }
  // One bot, agent or notice message (a bot_uttered payload or a history line).
  function addBotMessage(message, live, sender) {
    var who = sender === "agent" ? "jc-agent-msg" : message.notice ? "jc-notice" : "jc-bot";
    if (message.text) {
      var bubble = el("div", "jc-msg " + who, message.text);
      if (sender === "agent" && message.agent) bubble.setAttribute("data-agent", message.agent);
      append(bubble);
    }
    var src = imageSource(message);
    if (src) {
      var figure = el("div", "jc-msg jc-image " + who);
      var img = el("img");
      img.src = src;
      img.alt = "";
      img.addEventListener("load", scrollDown);
      figure.appendChild(img);
      append(figure);
    }
    var custom = message.custom && typeof message.custom === "object" ? message.custom : null;
    var alone = custom && !message.text && !src && !message.buttons && !message.quick_replies;
    if (custom) handleCustom(custom, live, !!message.text || (alone && state.botAsked));
    state.botAsked = sender !== "agent" && !!message.text && !custom;
    var options = message.quick_replies || message.buttons;
    if (live && Array.isArray(options) && options.length) {
      clearOptions();
      addOptions(options);
    }
  }
  // Something new to read in the list; queue updates only change the status bar.
  function countsAsUnread(message) {
    if (message.notice) return false;
    var custom = message.custom && typeof message.custom === "object" ? message.custom : null;
    return !!(message.text || imageSource(message) || (custom && custom.type !== "queue_position"));
  }
  function renderHistory(messages) {
    Array.prototype.slice.call(log.children).forEach(function (node) {
      if (node !== hot) node.remove();
    });
    state.customerSpoke = false;
    state.botAsked = false;
    state.agent = null;
    state.queue = null;
    messages.forEach(function (line, i) {
      if (line.sender === "customer") {
        state.customerSpoke = true;
        append(el("div", "jc-msg jc-customer", line.text));
      } else {
        // Only the last message's options can still be answered.
        addBotMessage(line, i === messages.length - 1, line.sender);
      }
    });
    renderHot();
    renderAgent();
    renderQueue();
  }

  // --- talking to the server ----------------------------------------------------------
  var socket = null;
  var io = null;

  function messageId() {
    var bytes = new Uint8Array(16);
    if (window.crypto && window.crypto.getRandomValues) {
      window.crypto.getRandomValues(bytes);
    } else {
      for (var i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
    }
    return Array.prototype.map.call(bytes, function (b) {
      return (b + 256).toString(16).slice(1);
    }).join("");
  }
  function send(text, shown) {
    text = String(text).slice(0, MAX_CHARS);
    addCustomer(shown || text);
    var payload = { message: text, customData: { language: language() }, message_id: messageId() };
    if (shown && shown !== text) payload.display_text = shown;
    if (!state.confirmed) {
      state.pending.push(payload);
      return;
    }
    emitMessage(payload);
  }
  function emitMessage(payload) {
    payload.session_id = state.token;
    if (state.unacked.indexOf(payload) < 0) state.unacked.push(payload);
    var sent = socket;
    socket.emit("user_uttered", payload, function () {
      // Done with (answered, or refused with a notice): nothing to resend.
      if (socket === sent) state.unacked = state.unacked.filter(function (p) { return p !== payload; });
    });
  }
  function requestSession() {
    var request = { session_id: state.token || null };
    socket.emit("session_request", request);
  }

  function connect() {
    // forceNew: after a login or logout the new socket must not share the old one's
    // connection, whose handshake carried the previous identity.
    var options = { path: "/socket.io", transports: ["websocket"], forceNew: true };
    if (settings.user && settings.user.id && settings.user.hash) {
      options.auth = { user_id: String(settings.user.id), user_hash: String(settings.user.hash) };
      if (settings.user.expires) options.auth.user_expires = String(settings.user.expires);
    }
    socket = io(base.origin, options);
    socket.on("connect", function () {
      state.everConnected = true;
      requestSession();
    });
    socket.on("disconnect", function () {
      state.confirmed = false;
      // The server may have died mid-turn: what it did not acknowledge goes
      // again, in order, once the new session's history is in.
      state.pending = state.unacked.concat(state.pending);
      state.unacked = [];
      renderStatus();
    });
    socket.on("connect_error", function (error) {
      renderStatus();
      if (error && error.data && error.data.code === "identity_refused") {
        addNote(t("identity_refused"), "error");
      } else if (error && error.data && error.data.code === "rate_limited") {
        // Refused by the server: socket.io won't retry by itself.
        var refused = socket;
        later(error.data.retry_after, function () {
          if (socket === refused) refused.connect();
        });
      }
    });
    socket.on("session_confirm", function (sessionId) {
      var token = sessionId && sessionId.session_id ? sessionId.session_id : sessionId;
      state.token = token;
      state.confirmed = true;
      if (local) local.setItem(TOKEN_KEY, token);
      renderStatus();
    });
    socket.on("history", function (history) {
      renderHistory((history && history.messages) || []);
      state.afterHistory.splice(0).forEach(function (text) {
        addNote(text, "error");
      });
      var stored = {};
      ((history && history.messages) || []).forEach(function (line) {
        if (line.sender === "customer" && line.message_id) stored[line.message_id] = true;
      });
      var waiting = state.pending;
      state.pending = [];
      waiting.forEach(function (payload) {
        if (payload.message_id && stored[payload.message_id]) return; // its turn is in the history
        append(el("div", "jc-msg jc-customer", payload.display_text || payload.message));
        state.customerSpoke = true;
        renderHot();
        emitMessage(payload);
      });
      root.setAttribute("data-ready", "true"); // for tests and host pages
    });
    socket.on("bot_uttered", function (message) {
      if (!message || typeof message !== "object") return;
      addBotMessage(message, true, message.agent ? "agent" : "bot");
      if (!state.open && countsAsUnread(message)) {
        state.unread += 1;
        renderBadge();
      }
    });
    socket.on("customer_uttered", function (message) {
      if (message && message.text) addCustomer(message.text); // typed in another tab
    });
    socket.on("typing", function (event) {
      var on = !!(event && event.typing);
      typing.hidden = !on;
      clearTimeout(state.typingTimer);
      // Never leave the indicator on if the "off" event gets lost.
      if (on) {
        state.typingTimer = setTimeout(function () {
          typing.hidden = true;
        }, 30000);
      }
      scrollDown();
    });
    socket.on("error", function (error) {
      var code = error && error.code;
      if (code === "invalid_session") {
        // The fresh session's (empty) history comes next and would wipe a note now.
        state.afterHistory.push(t(code));
      } else if (code === "identity_refused" || code === "bad_request") {
        addNote(t(code), "error");
      } else if (code === "wrong_session" || code === "no_session") {
        addNote(t("session_lost"), "error");
        state.confirmed = false;
        requestSession();
      } else if (code === "rate_limited") {
        // Too many new visitors from this network: ask again later; what the
        // customer typed meanwhile waits in state.pending.
        var asked = socket;
        later(error.retry_after, function () {
          if (socket === asked && asked.connected) requestSession();
        });
      }
    });
  }
  // Once per wait, one note: "we'll try again", then try again after `seconds`.
  function later(seconds, retry) {
    if (!state.retrying) addNote(t("rate_limited"), "error");
    state.retrying = true;
    var wait = Math.min(Math.max(Number(seconds) || 5, 1), 300);
    setTimeout(function () {
      state.retrying = false;
      retry();
    }, wait * 1000);
  }

  // --- who is chatting --------------------------------------------------------------
  // The same identity path as a page load: the host user's id and hash go in the
  // socket's connect auth, so a login or logout is a new socket.
  function restart() {
    state.confirmed = false;
    state.everConnected = false; // "connecting", not "connection lost"
    root.removeAttribute("data-ready"); // set again by the new session's history
    renderHistory([]); // the previous person's chat leaves the screen at once
    // What the previous person sent is theirs: never resent as the next one's.
    state.pending = [];
    state.unacked = [];
    if (!socket) return; // not connected yet: connect() will read settings.user
    socket.off(); // nothing from the old session may reach the screen
    socket.disconnect();
    connect();
    renderStatus();
  }
  function forgetToken() {
    state.token = null;
    if (local) local.removeItem(TOKEN_KEY);
  }
  var api = window.JadeChat && typeof window.JadeChat === "object" ? window.JadeChat : {};
  window.JadeChat = api;
  api.login = function (user) {
    if (!user || !user.id || !user.hash) {
      throw new Error("jade chat: login needs {id, hash, expires}");
    }
    settings.user = { id: String(user.id), hash: String(user.hash), expires: user.expires };
    restart();
  };
  api.logout = function () {
    settings.user = null;
    // A user's token resumes nothing anyway; dropping it starts the visitor cleanly.
    forgetToken();
    restart();
  };

  function loadScript(src, done) {
    var tag = document.createElement("script");
    tag.src = src;
    tag.onload = done;
    tag.onerror = function () {
      console.error("jade chat: could not load " + src);
    };
    document.head.appendChild(tag);
  }
  function start() {
    // Shown once styled: unstyled, it would land at the end of the page in the page's flow.
    root.hidden = true;
    var css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = new URL("static/widget.css", base).href;
    css.onload = function () {
      root.hidden = false;
      fitScreen();
    };
    css.onerror = function () {
      console.error("jade chat: could not load " + css.href);
    };
    document.head.appendChild(css);
    document.body.appendChild(root);
    renderChrome();
    renderHot();
    setOpen(state.open);
    window.addEventListener("resize", fitScreen);
    if (PHONE_MEDIA.addEventListener) PHONE_MEDIA.addEventListener("change", fitScreen);
    if (window.visualViewport) {
      window.visualViewport.addEventListener("resize", fitScreen);
      window.visualViewport.addEventListener("scroll", fitScreen);
    }
    new MutationObserver(renderChrome).observe(document.documentElement, {
      attributes: true,
      attributeFilter: ["lang"],
    });
    // Our own socket.io client (protocol v5), without taking over a host page's `io`.
    var hostIo = window.io;
    loadScript(new URL("static/socket.io.min.js", base).href, function () {
      io = window.io;
      if (hostIo) window.io = hostIo;
      connect();
    });
  }

  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
