/* Confab agents' dashboard: plain JavaScript, no build step.
 *
 * REST (docs/rest.md) for login, token refresh, the conversation list and older history;
 * Socket.IO (docs/socketio.md) for everything live: `/conversations` keeps the list and its
 * unread counts current, `/chat` carries the open conversation (messages, typing, read
 * receipts, reactions). Every change in the open conversation carries its position in the
 * conversation's event log; after any reconnect the conversation is joined again with
 * `since` = the last position seen, and the events missed meanwhile (messages, edits,
 * deletes, reactions, reads) are applied in order, paging while `has_more`. Messages are
 * stored by id and events at or below the position seen are skipped, so nothing is missed
 * and nothing is applied twice. When the log cannot serve the gap (`resync_required`), the
 * conversation is loaded afresh. See docs/dashboard.md.
 *
 * Agents and admins also get the support desk: the unassigned queue (`get_queue` on
 * `/conversations`, asked again whenever a conversation enters or leaves it), and, on an open
 * support conversation, take / transfer / unassign and its status (REST, docs/rest.md). Each
 * change comes back as `conversation_updated`, on `/conversations` for the list and the queue
 * and on `/chat` (logged, with its position) for the open conversation.
 *
 * User content is only ever put in the page with textContent (never innerHTML).
 */
(function () {
  "use strict";

  const REACTIONS = ["👍", "❤️", "😂", "🎉"];
  const TYPING_IDLE_MS = 3000;      // stop announcing typing after this long without a key
  const TYPING_REFRESH_MS = 4000;   // re-announce while the agent keeps typing
  const TYPING_EXPIRE_MS = 8000;    // forget someone's typing if not refreshed
  const ACK_TIMEOUT_MS = 10000;
  const RESEND_AFTER_MS = 2000;    // an unanswered send, tried again while the socket is up
  const PAGE = 50;
  const STORE = "confab.dashboard";

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };

  // -- state ---------------------------------------------------------------------------------

  const state = {
    tokens: null,            // {access_token, refresh_token}
    me: null,                // the logged-in user
    conversations: new Map(),
    chat: null,              // the /chat socket
    inbox: null,             // the /conversations socket
    current: null,           // the open conversation, see openConversation()
    typingSent: null,        // {since, idleTimer} while we announce typing
    queue: [],               // the unassigned queue, in its order (staff)
  };

  const QUEUE_PAGE = 100;
  const QUEUE_DEBOUNCE_MS = 150;  // several changes at once: one get_queue

  function newCurrent(id) {
    return {
      id,
      messages: new Map(),   // id -> message (dedupe by id)
      pending: new Map(),    // client_msg_id -> {content, state}
      joined: false,         // this socket connection has joined it (ack received)
      loaded: false,         // the first page arrived: later joins resume from position
      position: 0,           // highest event position seen (with epoch): the resume point
      epoch: null,
      lastId: 0,             // highest message id seen
      oldestId: null,        // lowest id loaded: the cursor for older pages
      typing: new Map(),     // user_id -> {name, timer}
      readTimer: null,
    };
  }

  // -- tokens and REST -------------------------------------------------------------------------

  function saveTokens(tokens) {
    state.tokens = { access_token: tokens.access_token, refresh_token: tokens.refresh_token };
    try { sessionStorage.setItem(STORE, JSON.stringify(state.tokens)); } catch (e) { /* private mode */ }
  }

  function loadTokens() {
    try {
      const raw = sessionStorage.getItem(STORE);
      const tokens = raw ? JSON.parse(raw) : null;
      if (tokens && tokens.access_token && tokens.refresh_token) return tokens;
    } catch (e) { /* ignore */ }
    return null;
  }

  function clearTokens() {
    state.tokens = null;
    try { sessionStorage.removeItem(STORE); } catch (e) { /* ignore */ }
  }

  class ApiError extends Error {
    constructor(status, detail) {
      super(typeof detail === "string" ? detail : `HTTP ${status}`);
      this.status = status;
      this.detail = detail;
    }
  }

  async function request(path, { method = "GET", body, auth = true } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth && state.tokens) headers.Authorization = `Bearer ${state.tokens.access_token}`;
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store",
    });
    let data = null;
    const text = await response.text();
    if (text) { try { data = JSON.parse(text); } catch (e) { data = text; } }
    if (!response.ok) throw new ApiError(response.status, data && data.detail);
    return { data, headers: response.headers };
  }

  let refreshing = null;
  /** Exchange the refresh token for a new pair (once at a time); false when it is refused. */
  function refreshTokens() {
    if (!refreshing) {
      refreshing = (async () => {
        if (!state.tokens) return false;
        try {
          const { data } = await request("/api/v1/auth/refresh", {
            method: "POST", body: { refresh_token: state.tokens.refresh_token }, auth: false,
          });
          saveTokens(data);
          return true;
        } catch (e) {
          return false;
        }
      })().finally(() => { refreshing = null; });
    }
    return refreshing;
  }

  /** An authenticated call; a 401 refreshes the tokens once, then signs out. */
  async function api(path, options = {}) {
    try {
      return await request(path, options);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) throw e;
      if (!(await refreshTokens())) { signOut("Your session has expired: please log in again."); throw e; }
      return request(path, options);
    }
  }

  function clientMsgId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);   // works outside secure contexts too (randomUUID does not)
    return "dash-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // -- connection state ------------------------------------------------------------------------

  let everConnected = false;
  let authRetries = 0;   // refreshes after refused connects, reset by a successful one

  function updateConnectionState() {
    const node = $("connection-state");
    let value;
    let label;
    if (!state.me) {
      value = "offline"; label = "Not connected";
    } else if (!navigator.onLine) {
      value = "offline"; label = "Offline";
    } else if (state.chat && state.chat.connected && state.inbox && state.inbox.connected) {
      value = "connected"; label = "Connected";
    } else if (everConnected) {
      value = "reconnecting"; label = "Reconnecting…";
    } else {
      value = "connecting"; label = "Connecting…";
    }
    if (node.dataset.state !== value) {
      node.dataset.state = value;
      node.textContent = label;
    }
  }

  // -- sockets ---------------------------------------------------------------------------------

  function connectSockets() {
    const options = {
      // A function, so that every (re)connection presents the current access token.
      auth: (cb) => cb({ token: state.tokens ? state.tokens.access_token : "" }),
      reconnectionDelay: 500,
      reconnectionDelayMax: 4000,
      timeout: 10000,
    };
    // Both namespaces share one Engine.IO connection (socket.io-client multiplexes them).
    state.chat = io("/chat", options);
    state.inbox = io("/conversations", options);
    wireCommon(state.chat);
    wireCommon(state.inbox);
    wireChat(state.chat);
    wireInbox(state.inbox);
    const manager = state.chat.io;
    manager.on("reconnect_attempt", updateConnectionState);
    manager.on("reconnect_error", updateConnectionState);
    manager.on("reconnect_failed", updateConnectionState);
  }

  function disconnectSockets() {
    for (const socket of [state.chat, state.inbox]) {
      if (socket) { socket.removeAllListeners(); socket.disconnect(); }
    }
    state.chat = null;
    state.inbox = null;
  }

  function wireCommon(socket) {
    socket.on("connect", () => {
      // Connected once when both namespaces are: until then the first connect is "connecting".
      if (state.chat && state.chat.connected && state.inbox && state.inbox.connected) {
        everConnected = true;
      }
      authRetries = 0;
      updateConnectionState();
    });
    socket.on("disconnect", (reason) => {
      if (socket === state.chat && state.current) setJoined(state.current, false);
      updateConnectionState();
      // A server-side disconnect is not retried by socket.io-client: try again shortly
      // (a refused credential then shows up as a connect_error, handled below).
      if (reason === "io server disconnect" && navigator.onLine) {
        setTimeout(() => { if (state.me && !socket.connected) socket.connect(); }, 2000);
      }
    });
    socket.on("connect_error", async (err) => {
      updateConnectionState();
      const code = err && err.data && err.data.code;
      if (code === 4002) {           // expired or invalid token: refresh, then retry (twice)
        if (++authRetries <= 2 && await refreshTokens()) socket.connect();
        else signOut("Your session has expired: please log in again.");
      } else if (code === 4001) {
        signOut("Please log in.");
      }
      // Anything else (network) is retried by socket.io-client itself.
    });
  }

  function wireInbox(socket) {
    socket.on("connect", () => {
      // (Re)subscribed: the list may have changed while we were away.
      socket.timeout(ACK_TIMEOUT_MS).emitWithAck("refresh_conversations", {})
        .then((ack) => { if (ack && ack.ok) mergeConversations(ack.conversations, true); })
        .catch(() => {});
      loadQueue();
    });
    socket.on("conversation_updated", (event) => conversationChanged(event.conversation));
    socket.on("new_customer_message", (event) => {
      if (!state.conversations.has(event.conversation_id)) loadConversations();
      if (!state.queue.some((c) => c.id === event.conversation_id)) scheduleQueue();
    });
  }

  function wireChat(socket) {
    socket.on("connect", () => { if (state.current) joinCurrent(); });
    for (const [name, apply] of Object.entries(LIVE)) {
      socket.on(name, (event) => { if (fresh(event)) apply(event, socket); });
    }
    socket.on("typing_indicator", (event) => {
      const current = state.current;
      if (!current || event.conversation_id !== current.id) return;
      if (event.user_id === state.me.id) return;
      // A device types under its device_id, as its messages name their sender.
      const typist = event.user_id != null ? event.user_id : event.device_id;
      if (event.is_typing) setTyping(current, typist, event.user_name || event.username);
      else clearTyping(current, typist);
    });
    socket.on("error", (event) => showChatError(event && event.message));
  }

  /** Whether a logged event of the open conversation is new (its position past the one
   * seen), moving the position on; events of other conversations pass (their handlers
   * look them up by id and ignore what is not shown). */
  function fresh(event) {
    const current = state.current;
    if (!current || event.conversation_id !== current.id || typeof event.position !== "number") {
      return true;
    }
    if (event.position <= current.position) return false;
    current.position = event.position;
    return true;
  }

  /** What each logged event does to the page, live or replayed after a reconnect. */
  const LIVE = {
    chat_message: (event, socket) => {
      const current = state.current;
      if (!current || event.conversation_id !== current.id) return;
      addMessages([event.message]);
      if (!isMine(event.message)) {
        clearTyping(current, event.message.sender_id);
        if (document.visibilityState === "hidden") {
          socket.volatile.emit("message_status", {
            conversation_id: current.id, message_id: event.message.id, status: "delivered",
          });
        } else {
          scheduleMarkRead();
        }
      }
    },
    read_receipt: (event) => {
      const current = state.current;
      if (!current || event.conversation_id !== current.id || event.user_id === state.me.id) return;
      for (const id of event.message_ids || []) {
        const message = current.messages.get(id);
        if (message && isMine(message)) {
          message.status = "read";
          renderMessage(message);
        }
      }
    },
    message_status_update: (event) => {
      const message = state.current && state.current.messages.get(event.message_id);
      if (message && rank(event.status) > rank(message.status)) {
        message.status = event.status;
        renderMessage(message);
      }
    },
    message_reaction: (event) => {
      const message = state.current && state.current.messages.get(event.message_id);
      if (!message) return;
      const reactions = { ...(message.reactions || {}) };
      const users = new Set(reactions[event.emoji] || []);
      if (event.action === "added") users.add(event.user_id);
      else users.delete(event.user_id);
      if (users.size) reactions[event.emoji] = [...users];
      else delete reactions[event.emoji];
      message.reactions = reactions;
      renderMessage(message);
    },
    message_edit: (event) => {
      const message = state.current && state.current.messages.get(event.message_id);
      if (!message) return;
      Object.assign(message, { content: event.content, is_edited: true, edited_at: event.edited_at });
      renderMessage(message);
    },
    message_delete: (event) => {
      const message = state.current && state.current.messages.get(event.message_id);
      if (!message) return;
      Object.assign(message, { content: "", is_deleted: true });
      renderMessage(message);
    },
    conversation_closed: (event) => {
      const conversation = state.conversations.get(event.conversation_id);
      if (conversation) conversationChanged({ ...conversation, status: "closed" });
    },
    // A desk change (assignment, status, title, priority): the conversation as it is now
    // (without an unread count: the list keeps the one it has).
    conversation_updated: (event) => conversationChanged(event.conversation),
  };

  function isMine(message) {
    return message.sender_type === "user" && message.sender_id === state.me.id;
  }

  function rank(status) {
    return { sent: 0, delivered: 1, read: 2 }[status] || 0;
  }

  // -- the conversation list -----------------------------------------------------------------

  async function loadConversations() {
    try {
      const { data } = await api("/api/v1/chat/sessions?limit=100");
      mergeConversations(data, true);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) showChatError("Could not load conversations.");
    }
  }

  function mergeConversations(list, complete) {
    for (const conversation of list || []) {
      const known = state.conversations.get(conversation.id);
      state.conversations.set(conversation.id, { ...(known || {}), ...conversation });
    }
    if (complete) renderConversations();
  }

  function upsertConversation(conversation) {
    if (!conversation || conversation.id === undefined) return;
    mergeConversations([conversation], true);
    if (state.current && state.current.id === conversation.id) renderChatHead();
  }

  // -- the support desk: queue, assignment, status ------------------------------------------

  function isStaff() {
    return !!state.me && (state.me.role === "agent" || state.me.role === "admin");
  }

  /** Whether the queue holds ``conversation``: open, support, nobody assigned. */
  function queued(conversation) {
    return conversation.kind === "support" && conversation.status !== "closed"
      && (conversation.assigned_agent_id === null || conversation.assigned_agent_id === undefined);
  }

  /** A conversation changed (an inbox update, a desk event, a desk call's answer): update the
   * list and the open chat, and ask for the queue again when its place there changed. */
  function conversationChanged(conversation) {
    if (!conversation || conversation.id === undefined) return;
    const shown = state.queue.find((c) => c.id === conversation.id);
    upsertConversation(conversation);
    if (!isStaff()) return;
    if (!!shown !== queued(conversation) || (shown && shown.priority !== conversation.priority)) {
      scheduleQueue();
    } else if (shown) {
      Object.assign(shown, conversation);
      renderQueue();
    }
  }

  let queueTimer = null;
  function scheduleQueue() {
    if (!isStaff()) return;
    clearTimeout(queueTimer);
    queueTimer = setTimeout(loadQueue, QUEUE_DEBOUNCE_MS);
  }

  async function loadQueue() {
    const socket = state.inbox;
    if (!isStaff() || !socket || !socket.connected) return;
    try {
      const ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("get_queue", { limit: QUEUE_PAGE });
      if (state.inbox !== socket || !ack || !ack.ok) return;
      state.queue = ack.conversations;
      renderQueue();
    } catch (e) {
      // Timed out or disconnected: the next connect asks again.
    }
  }

  function renderQueue() {
    $("queue").hidden = !isStaff();
    const items = state.queue.map((conversation) => {
      const item = el("li", "conversation queued");
      item.dataset.conversationId = conversation.id;
      item.dataset.priority = conversation.priority || 0;
      item.tabIndex = 0;
      item.append(el("span", "title", conversationTitle(conversation)));
      item.append(el("span", "priority", `P${conversation.priority || 0}`));
      const take = el("button", "take", "Take");
      take.type = "button";
      item.append(take);
      const last = conversation.last_message;
      item.append(el("span", "preview", last ? last.content || "…" : conversation.status));
      return item;
    });
    $("queue-list").replaceChildren(...items);
    $("queue-empty").hidden = items.length > 0;
  }

  function showDeskError(error) {
    const node = $("desk-error");
    const detail = error instanceof ApiError ? error.detail : null;
    node.textContent = typeof detail === "string" ? detail
      : Array.isArray(detail) && detail.length && detail[0].msg ? detail[0].msg
        : "The change was refused.";
    node.hidden = false;
  }

  /** A desk call (REST) on conversation ``id``; its answer is the conversation after it. */
  async function deskCall(id, action, body) {
    $("desk-error").hidden = true;
    try {
      const { data } = await api(`/api/v1/chat/sessions/${id}/${action}`, { method: "POST", body });
      conversationChanged(data);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) showDeskError(e);
      if (state.current && state.current.id === id) renderChatHead();  // undo the select
    }
  }

  function assign(id, agentId) {
    return deskCall(id, "assign", { agent_id: agentId });
  }

  function renderDesk(conversation) {
    const desk = $("desk");
    desk.hidden = !(conversation && conversation.kind === "support" && isStaff());
    if (desk.hidden) return;
    const agent = conversation.assigned_agent_id;
    const closed = conversation.status === "closed";
    desk.dataset.assignedAgentId = agent === null || agent === undefined ? "" : String(agent);
    desk.dataset.status = conversation.status;
    $("chat-assignee").textContent = agent === null || agent === undefined ? "Unassigned"
      : agent === state.me.id ? "Assigned to you" : `Assigned to agent #${agent}`;
    $("desk-take").disabled = closed || agent === state.me.id;
    $("desk-unassign").disabled = closed || agent === null || agent === undefined;
    $("desk-transfer").disabled = closed;
    $("desk-status").value = conversation.status;
  }

  function activity(conversation) {
    const last = conversation.last_message;
    return Date.parse((last && last.created_at) || conversation.updated_at || conversation.created_at) || 0;
  }

  function conversationTitle(conversation) {
    return conversation.title || conversation.subject
      || (conversation.customer && (conversation.customer.name || conversation.customer.username))
      || `Conversation #${conversation.id}`;
  }

  function renderConversations() {
    const list = $("conversation-list");
    const sorted = [...state.conversations.values()].sort((a, b) => activity(b) - activity(a) || b.id - a.id);
    const items = sorted.map((conversation) => {
      const item = el("li", "conversation");
      item.dataset.conversationId = conversation.id;
      item.dataset.status = conversation.status;
      item.tabIndex = 0;
      item.setAttribute("aria-current", String(!!(state.current && state.current.id === conversation.id)));
      item.append(el("span", "title", conversationTitle(conversation)));
      const unread = el("span", "unread", conversation.unread_count || 0);
      unread.dataset.count = conversation.unread_count || 0;
      unread.hidden = !conversation.unread_count;
      item.append(unread);
      const last = conversation.last_message;
      const preview = last
        ? last.content || (last.message_type && last.message_type !== "text" ? `[${last.message_type}]` : "…")
        : conversation.kind;
      item.append(el("span", "preview", preview));
      return item;
    });
    list.replaceChildren(...items);
    $("list-empty").hidden = items.length > 0;
  }

  // -- search ----------------------------------------------------------------------------------

  const search = { q: "", cursor: null, busy: false };

  /** A snippet (HTML from the server: text escaped, matches in <mark>) as DOM nodes: only its
   * text and its <mark> elements are kept, so nothing in it can run or load. */
  function snippetNodes(html) {
    const doc = new DOMParser().parseFromString(`<body>${html}</body>`, "text/html");
    return [...doc.body.childNodes].map((node) =>
      node.nodeName === "MARK" ? el("mark", null, node.textContent)
        : document.createTextNode(node.textContent));
  }

  function renderHit(hit) {
    const item = el("li", "search-hit");
    item.dataset.messageId = hit.message.id;
    item.dataset.conversationId = hit.conversation_id;
    item.tabIndex = 0;
    const conversation = state.conversations.get(hit.conversation_id);
    item.append(el("span", "title", conversation ? conversationTitle(conversation)
      : `Conversation #${hit.conversation_id}`));
    item.append(el("span", "when", formatTime(hit.message.created_at)));
    const snippet = el("span", "snippet");
    snippet.append(...snippetNodes(hit.snippet));
    item.append(snippet);
    return item;
  }

  async function runSearch(more) {
    if (search.busy) return;
    const q = more ? search.q : $("search-input").value.trim();
    if (!q) { clearSearch(); return; }
    if (!/[\p{L}\p{N}]/u.test(q)) {   // only words are searched (the server says 422)
      $("search-panel").hidden = false;
      $("search-results").replaceChildren();
      $("search-more").hidden = true;
      $("search-summary").textContent = "Search: type a letter or a digit.";
      return;
    }
    search.busy = true;
    const params = new URLSearchParams({ q, limit: "20" });
    if (more && search.cursor) params.set("cursor", search.cursor);
    $("search-panel").hidden = false;
    try {
      const { data } = await api(`/api/v1/chat/search?${params}`);
      const items = data.results.map(renderHit);
      if (more) $("search-results").append(...items); else $("search-results").replaceChildren(...items);
      search.q = q;
      search.cursor = data.next_cursor;
      const shown = $("search-results").children.length;
      $("search-summary").textContent = shown ? `${shown}${data.next_cursor ? "+" : ""} found`
        : "No messages found.";
      $("search-more").hidden = !data.next_cursor;
    } catch (e) {
      $("search-results").replaceChildren();
      $("search-more").hidden = true;
      $("search-summary").textContent = e instanceof ApiError && e.status === 422 && e.detail
        ? `Search: ${typeof e.detail === "string" ? e.detail : "invalid query"}` : "Search failed.";
    } finally {
      search.busy = false;
    }
  }

  function clearSearch() {
    search.q = ""; search.cursor = null;
    $("search-results").replaceChildren();
    $("search-panel").hidden = true;
  }

  function pickHit(event) {
    const item = event.target.closest("li.search-hit");
    if (item) openConversation(Number(item.dataset.conversationId));
  }

  // -- the open conversation -----------------------------------------------------------------

  function openConversation(id) {
    if (state.current && state.current.id === id) return;
    stopTyping();
    if (state.current && state.chat && state.chat.connected && state.current.joined) {
      state.chat.emit("leave", { conversation_id: state.current.id });
    }
    state.current = newCurrent(id);
    $("chat-view").dataset.conversationId = id;
    setJoined(state.current, false);
    $("messages").replaceChildren();
    $("typing").hidden = true;
    $("load-older").hidden = true;
    $("chat-error").hidden = true;
    $("desk-error").hidden = true;
    $("chat-placeholder").hidden = true;
    $("chat-view").hidden = false;
    renderChatHead();
    renderConversations();
    if (state.chat && state.chat.connected) joinCurrent();
    $("composer-input").focus();
  }

  /** Whether this connection has joined the open conversation (shown as data-joined). */
  function setJoined(current, joined) {
    current.joined = joined;
    if (state.current === current) $("chat-view").dataset.joined = String(joined);
  }

  function renderChatHead() {
    const current = state.current;
    const conversation = current && state.conversations.get(current.id);
    $("chat-title").textContent = conversation ? conversationTitle(conversation) : `Conversation #${current.id}`;
    const closed = conversation && conversation.status === "closed";
    $("chat-status").textContent = conversation ? `${conversation.kind} · ${conversation.status}` : "";
    $("composer-input").disabled = !!closed;
    $("composer-send").disabled = !!closed;
    $("composer-attach").disabled = !!closed;
    renderDesk(conversation);
  }

  /** Join the open conversation on this connection: the latest page the first time, then
   * the events after the last position seen (paging while has_more), then flush queued
   * sends. A gap the log cannot serve (resync_required) loads the conversation afresh. */
  async function joinCurrent() {
    const current = state.current;
    const socket = state.chat;
    if (!current || !socket) return;
    try {
      for (;;) {
        const payload = { conversation_id: current.id };
        const resuming = current.loaded;
        if (resuming) payload.since = { position: current.position, epoch: current.epoch };
        const ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("join", payload);
        if (state.current !== current || state.chat !== socket) return;
        if (!ack.ok && ack.error.code === "resync_required") {
          reload(current);
          continue;
        }
        if (!ack.ok) { showChatError(ack.error.message); return; }
        upsertConversation(ack.conversation);
        if (!resuming) {          // the first page is the latest; has_more: older ones exist
          addMessages(ack.messages);
          current.position = Math.max(current.position, ack.position);
          current.epoch = ack.epoch;
          current.loaded = true;
          $("load-older").hidden = !ack.has_more;
          scrollToBottom(true);
          break;
        }
        // Resuming: the missed events in order; has_more says more follow this page.
        for (const event of ack.events) {
          const apply = LIVE[event.event];
          if (apply && fresh(event)) apply(event, socket);
        }
        current.position = Math.max(current.position, ack.position);
        if (!ack.has_more || !ack.events.length) break;
      }
      setJoined(current, true);
      scheduleMarkRead();
      flushPending();
    } catch (e) {
      // Timed out or disconnected meanwhile: the next "connect" joins again.
    }
  }

  /** Forget what is shown of ``current`` so that the next join loads it afresh. */
  function reload(current) {
    current.messages.clear();
    current.loaded = false;
    current.position = 0;
    current.epoch = null;
    current.lastId = 0;
    current.oldestId = null;
    $("messages").replaceChildren();
  }

  async function loadOlder() {
    const current = state.current;
    if (!current || !current.oldestId) return;
    const button = $("load-older");
    button.disabled = true;
    try {
      const { data, headers } = await api(
        `/api/v1/chat/sessions/${current.id}/messages?before_id=${current.oldestId}&limit=${PAGE}`);
      if (state.current !== current) return;
      const scroller = $("message-scroller");
      const before = scroller.scrollHeight - scroller.scrollTop;
      addMessages(data);
      scroller.scrollTop = scroller.scrollHeight - before;   // keep the view where it was
      button.hidden = headers.get("X-Has-More") !== "true";
    } catch (e) {
      showChatError("Could not load older messages.");
    } finally {
      button.disabled = false;
    }
  }

  function addMessages(messages) {
    const current = state.current;
    if (!current) return;
    const stick = nearBottom();
    for (const message of messages || []) {
      if (message.conversation_id !== undefined && message.conversation_id !== current.id) continue;
      const known = current.messages.get(message.id);
      // Keep the higher status: a live receipt may have moved it on since the page was read.
      if (known && rank(known.status) > rank(message.status)) message.status = known.status;
      current.messages.set(message.id, message);
      current.lastId = Math.max(current.lastId, message.id);
      current.oldestId = current.oldestId === null ? message.id : Math.min(current.oldestId, message.id);
      if (message.client_msg_id && isMine(message) && current.pending.has(message.client_msg_id)) {
        current.pending.delete(message.client_msg_id);
        const placeholder = $("messages").querySelector(`li[data-pending][data-client-msg-id="${CSS.escape(message.client_msg_id)}"]`);
        if (placeholder) placeholder.remove();
      }
      renderMessage(message);
    }
    if (stick) scrollToBottom();
  }

  function renderMessage(message) {
    const list = $("messages");
    let item = list.querySelector(`li[data-message-id="${message.id}"]`);
    const fresh = !item;
    if (fresh) item = el("li", "message");
    const mine = isMine(message);
    item.dataset.messageId = message.id;
    item.dataset.mine = String(mine);
    item.dataset.deleted = String(!!message.is_deleted);
    if (message.client_msg_id) item.dataset.clientMsgId = message.client_msg_id;

    const meta = el("div", "meta");
    meta.append(el("span", "sender", message.sender_name || message.sender_type));
    const time = el("time", "time", formatTime(message.created_at));
    time.dateTime = message.created_at || "";
    meta.append(time);
    if (message.is_edited && !message.is_deleted) meta.append(el("span", "edited", "(edited)"));
    if (mine) {
      const receipt = el("span", "receipt", { sent: "Sent", delivered: "Delivered", read: "Read" }[message.status] || "Sent");
      receipt.dataset.status = message.status || "sent";
      meta.append(receipt);
    }
    const content = el("div", "content", message.is_deleted ? "Message deleted" : contentText(message));
    const attachment = message.is_deleted ? null : renderAttachment(message.file);
    const reactions = el("div", "reactions");
    for (const [emoji, users] of Object.entries(message.reactions || {})) {
      if (!users || !users.length) continue;
      const chip = el("span", "reaction", `${emoji} ${users.length}`);
      chip.dataset.emoji = emoji;
      chip.dataset.count = users.length;
      if (users.includes(state.me.id)) chip.classList.add("mine");
      reactions.append(chip);
    }
    const bar = el("div", "react-bar");
    if (!message.is_deleted) {
      for (const emoji of REACTIONS) {
        const button = el("button", "react", emoji);
        button.type = "button";
        button.dataset.emoji = emoji;
        button.title = `React with ${emoji}`;
        bar.append(button);
      }
    }
    item.replaceChildren(...[meta, content, attachment, reactions, bar].filter(Boolean));
    if (fresh) insertInOrder(list, item, message.id);
  }

  /** A file of the server's (signed links, docs/files.md): its thumbnail and a link to it. */
  function renderAttachment(file) {
    if (!file || !file.url || !file.upload_id) return null;
    const box = el("div", "attachment");
    if (file.thumbnail_url) {
      const image = document.createElement("img");
      image.src = file.thumbnail_url;
      image.alt = file.name || "image";
      image.loading = "lazy";
      box.append(image);
    }
    const link = el("a", "file-link", `${file.name || "file"} (${formatSize(file.size)})`);
    link.href = file.url;
    link.target = "_blank";
    link.rel = "noopener";
    box.append(link);
    return box;
  }

  function formatSize(bytes) {
    if (!(bytes >= 0)) return "?";
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  /** Upload a file (POST /api/v1/chat/uploads), then send it as a message of its own. */
  async function attach(file) {
    const current = state.current;
    if (!current || !file) return;
    const form = new FormData();
    form.append("file", file, file.name);
    const upload = async () => fetch("/api/v1/chat/uploads", {
      method: "POST", body: form, credentials: "omit", cache: "no-store",
      headers: { Authorization: `Bearer ${state.tokens ? state.tokens.access_token : ""}` },
    });
    $("composer-attach").disabled = true;
    try {
      let response = await upload();
      if (response.status === 401 && (await refreshTokens())) response = await upload();
      const data = await response.json().catch(() => null);
      if (!response.ok) {
        showChatError(`Not uploaded: ${(data && data.detail) || `HTTP ${response.status}`}`);
        return;
      }
      if (state.current === current) send(file.name, data.id);
    } catch (e) {
      showChatError("Not uploaded: the server could not be reached.");
    } finally {
      $("composer-attach").disabled = false;
    }
  }

  function contentText(message) {
    if (message.content) return message.content;
    if (message.file && message.file.name) return `[file] ${message.file.name}`;
    if (message.media_url) return `[${message.message_type}] ${message.media_url}`;
    return "";
  }

  /** Messages are kept in id order; queued (pending) ones stay at the end. */
  function insertInOrder(list, item, id) {
    for (const other of list.children) {
      if (other.dataset.pending !== undefined || Number(other.dataset.messageId) > id) {
        list.insertBefore(item, other);
        return;
      }
    }
    list.append(item);
  }

  function formatTime(iso) {
    const date = iso ? new Date(iso) : null;
    return date && !isNaN(date) ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
  }

  function nearBottom() {
    const scroller = $("message-scroller");
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  }

  function scrollToBottom(force) {
    const scroller = $("message-scroller");
    if (force || nearBottom()) scroller.scrollTop = scroller.scrollHeight;
  }

  function showChatError(text) {
    const node = $("chat-error");
    node.textContent = text || "Something went wrong.";
    node.hidden = false;
    clearTimeout(showChatError.timer);
    showChatError.timer = setTimeout(() => { node.hidden = true; }, 6000);
  }

  // -- sending (queued until acknowledged; retried with the same client_msg_id) ---------------

  function send(content, uploadId) {
    const current = state.current;
    if (!current) return;
    const id = clientMsgId();
    current.pending.set(id, { content, uploadId, state: "queued" });
    renderPending(current, id);
    scrollToBottom(true);
    stopTyping();
    flushPending();
  }

  function renderPending(current, id) {
    const entry = current.pending.get(id);
    const list = $("messages");
    let item = list.querySelector(`li[data-pending][data-client-msg-id="${CSS.escape(id)}"]`);
    if (!entry) { if (item) item.remove(); return; }
    if (!item) {
      item = el("li", "message");
      item.dataset.clientMsgId = id;
      item.dataset.mine = "true";
      list.append(item);
    }
    item.dataset.pending = entry.state;
    const meta = el("div", "meta");
    meta.append(el("span", "sender", displayName(state.me)));
    meta.append(el("span", "receipt", entry.state === "failed" ? `Not sent: ${entry.error}` : "Sending…"));
    const parts = [meta, el("div", "content", entry.content)];
    if (entry.state === "failed") {
      const retry = el("button", "retry", "Retry");
      retry.type = "button";
      parts.push(retry);
    }
    item.replaceChildren(...parts);
  }

  let flushing = false;
  async function flushPending() {
    const current = state.current;
    const socket = state.chat;
    if (flushing || !current || !socket || !socket.connected || !current.joined) return;
    flushing = true;
    try {
      for (const [id, entry] of current.pending) {   // in order: Map keeps insertion order
        if (entry.state === "failed") continue;
        entry.state = "sending";
        renderPending(current, id);
        let ack;
        try {
          const outgoing = { conversation_id: current.id, content: entry.content, client_msg_id: id };
          if (entry.uploadId) outgoing.upload_id = entry.uploadId;
          ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("chat_message", outgoing);
        } catch (e) {
          // No ack: resent with the same id after the next (re)join, or, while the socket
          // stays up (a slow node), after a pause: the server keeps one message per id.
          entry.state = "queued";
          renderPending(current, id);
          setTimeout(flushPending, RESEND_AFTER_MS);
          break;
        }
        if (state.current !== current) return;
        if (ack.ok) {
          addMessages([ack.message]);
        } else if (ack.error && ack.error.code === "rate_limited") {
          entry.state = "queued";
          renderPending(current, id);
          setTimeout(flushPending, Math.ceil((ack.error.retry_after || 1) * 1000));
          break;
        } else {
          entry.state = "failed";
          entry.error = ack.error ? ack.error.message : "refused";
          renderPending(current, id);
        }
      }
    } finally {
      flushing = false;
    }
  }

  function displayName(user) {
    if (!user) return "";
    const name = [user.first_name, user.last_name].filter(Boolean).join(" ");
    return name || user.username || user.email;
  }

  // -- typing ----------------------------------------------------------------------------------

  function typed() {
    const current = state.current;
    const socket = state.chat;
    if (!current || !socket || !socket.connected || !current.joined) return;
    const now = Date.now();
    let sent = state.typingSent;
    if (!sent || now - sent.since > TYPING_REFRESH_MS) {
      socket.volatile.emit("typing_indicator", { conversation_id: current.id, is_typing: true });
      if (sent) clearTimeout(sent.idleTimer);
      sent = state.typingSent = { since: now, idleTimer: null, id: current.id };
    }
    clearTimeout(sent.idleTimer);
    sent.idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    const sent = state.typingSent;
    if (!sent) return;
    clearTimeout(sent.idleTimer);
    state.typingSent = null;
    const socket = state.chat;
    const current = state.current;
    if (socket && socket.connected && current && current.id === sent.id && current.joined) {
      socket.volatile.emit("typing_indicator", { conversation_id: sent.id, is_typing: false });
    }
  }

  function setTyping(current, userId, name) {
    const known = current.typing.get(userId);
    if (known) clearTimeout(known.timer);
    const timer = setTimeout(() => clearTyping(current, userId), TYPING_EXPIRE_MS);
    current.typing.set(userId, { name: name || `User ${userId}`, timer });
    renderTyping(current);
  }

  function clearTyping(current, userId) {
    const known = current.typing.get(userId);
    if (!known) return;
    clearTimeout(known.timer);
    current.typing.delete(userId);
    renderTyping(current);
  }

  function renderTyping(current) {
    if (state.current !== current) return;
    const node = $("typing");
    const names = [...current.typing.values()].map((entry) => entry.name);
    node.dataset.userIds = [...current.typing.keys()].join(",");
    node.textContent = names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
    node.hidden = names.length === 0;
  }

  // -- read receipts ---------------------------------------------------------------------------

  function scheduleMarkRead() {
    const current = state.current;
    if (!current || current.readTimer || document.visibilityState === "hidden") return;
    current.readTimer = setTimeout(() => {
      current.readTimer = null;
      markRead(current);
    }, 250);
  }

  function markRead(current) {
    const socket = state.chat;
    if (state.current !== current || !socket || !socket.connected || !current.joined) return;
    let newest = 0;
    for (const message of current.messages.values()) {
      if (!isMine(message) && message.status !== "read") newest = Math.max(newest, message.id);
    }
    const conversation = state.conversations.get(current.id);
    if (!newest && !(conversation && conversation.unread_count)) return;
    socket.timeout(ACK_TIMEOUT_MS).emitWithAck("read_receipt", {
      conversation_id: current.id, up_to_message_id: newest || current.lastId,
    }).then((ack) => {
      if (!ack.ok || state.current !== current) return;
      for (const id of ack.message_ids || []) {
        const message = current.messages.get(id);
        if (message) message.status = "read";
      }
    }).catch(() => {});
  }

  // -- reactions -------------------------------------------------------------------------------

  async function react(messageId, emoji) {
    const current = state.current;
    const socket = state.chat;
    if (!current || !socket || !socket.connected || !current.joined) {
      showChatError("Not connected: try again in a moment.");
      return;
    }
    try {
      const ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("message_reaction", {
        conversation_id: current.id, message_id: messageId, emoji,
      });
      if (!ack.ok) { showChatError(ack.error.message); return; }
      const message = current.messages.get(messageId);
      if (message && state.current === current) {
        message.reactions = ack.reactions;
        renderMessage(message);
      }
    } catch (e) {
      showChatError("The reaction was not acknowledged.");
    }
  }

  // -- sign in / out ---------------------------------------------------------------------------

  async function signIn(event) {
    event.preventDefault();
    const error = $("login-error");
    error.hidden = true;
    $("login-submit").disabled = true;
    try {
      const { data } = await request("/api/v1/auth/login", {
        method: "POST", auth: false,
        body: { email: $("login-email").value.trim(), password: $("login-password").value },
      });
      saveTokens(data);
      $("login-password").value = "";
      start(data.user);
    } catch (e) {
      error.textContent = e instanceof ApiError && e.status === 401 ? "Wrong email or password." : "Could not log in.";
      error.hidden = false;
    } finally {
      $("login-submit").disabled = false;
    }
  }

  function start(user) {
    state.me = user;
    $("me").textContent = `${displayName(user)} (${user.role})`;
    $("me").hidden = false;
    $("logout").hidden = false;
    $("login").hidden = true;
    $("app").hidden = false;
    everConnected = false;
    updateConnectionState();
    state.queue = [];
    renderQueue();
    loadConversations();
    connectSockets();
  }

  function signOut(message) {
    stopTyping();
    disconnectSockets();
    clearTokens();
    state.me = null;
    state.current = null;
    state.conversations.clear();
    state.queue = [];
    $("queue").hidden = true;
    $("queue-list").replaceChildren();
    $("conversation-list").replaceChildren();
    $("messages").replaceChildren();
    $("chat-view").hidden = true;
    $("chat-placeholder").hidden = false;
    $("app").hidden = true;
    $("me").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    const error = $("login-error");
    error.textContent = message || "";
    error.hidden = !message;
    updateConnectionState();
  }

  async function resume() {
    const tokens = loadTokens();
    if (!tokens) return;
    state.tokens = tokens;
    try {
      const { data } = await api("/api/v1/auth/me");
      start(data.user || data);
    } catch (e) {
      if (state.tokens) signOut();
    }
  }

  // -- wiring ----------------------------------------------------------------------------------

  function init() {
    $("login-form").addEventListener("submit", signIn);
    $("logout").addEventListener("click", () => signOut());
    $("refresh-list").addEventListener("click", loadConversations);
    $("refresh-queue").addEventListener("click", loadQueue);

    const queueList = $("queue-list");
    const pickQueued = (event) => {
      const item = event.target.closest("li.conversation");
      if (!item) return;
      const id = Number(item.dataset.conversationId);
      if (event.target.closest("button.take")) assign(id, state.me.id);
      else openConversation(id);
    };
    queueList.addEventListener("click", pickQueued);
    queueList.addEventListener("keydown", (event) => { if (event.key === "Enter") pickQueued(event); });

    $("desk-take").addEventListener("click", () => {
      if (state.current) assign(state.current.id, state.me.id);
    });
    $("desk-unassign").addEventListener("click", () => {
      if (state.current) assign(state.current.id, null);
    });
    $("desk-transfer").addEventListener("click", () => {
      const value = $("desk-transfer-id").value.trim();
      if (!state.current) return;
      if (!/^[0-9]+$/.test(value)) {
        showDeskError(new ApiError(422, "Give the id of the agent to transfer to."));
        return;
      }
      assign(state.current.id, Number(value));
    });
    $("desk-status").addEventListener("change", () => {
      if (state.current) deskCall(state.current.id, "status", { status: $("desk-status").value });
    });
    $("load-older").addEventListener("click", loadOlder);
    $("search-form").addEventListener("submit", (event) => { event.preventDefault(); runSearch(false); });
    $("search-input").addEventListener("input", () => { if (!$("search-input").value) clearSearch(); });
    $("search-more").addEventListener("click", () => runSearch(true));
    $("search-results").addEventListener("click", pickHit);
    $("search-results").addEventListener("keydown", (event) => { if (event.key === "Enter") pickHit(event); });

    const list = $("conversation-list");
    const pick = (event) => {
      const item = event.target.closest("li.conversation");
      if (item) openConversation(Number(item.dataset.conversationId));
    };
    list.addEventListener("click", pick);
    list.addEventListener("keydown", (event) => { if (event.key === "Enter") pick(event); });

    $("messages").addEventListener("click", (event) => {
      const button = event.target.closest("button");
      if (!button) return;
      const item = button.closest("li.message");
      if (button.classList.contains("react") && item.dataset.messageId) {
        react(Number(item.dataset.messageId), button.dataset.emoji);
      } else if (button.classList.contains("retry") && state.current) {
        const entry = state.current.pending.get(item.dataset.clientMsgId);
        if (entry) { entry.state = "queued"; renderPending(state.current, item.dataset.clientMsgId); flushPending(); }
      }
    });

    $("composer-attach").addEventListener("click", () => $("composer-file").click());
    $("composer-file").addEventListener("change", (event) => {
      const [file] = event.target.files;
      event.target.value = "";
      attach(file);
    });

    const input = $("composer-input");
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      const content = input.value.trim();
      if (!content) return;
      input.value = "";
      send(content);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("composer").requestSubmit();
      }
    });
    input.addEventListener("input", () => { if (input.value) typed(); else stopTyping(); });

    // The browser knows it has no network: say so and stop retrying until it comes back
    // (a dead connection would otherwise only be noticed at the next ping timeout).
    window.addEventListener("offline", () => {
      for (const socket of [state.chat, state.inbox]) if (socket) socket.disconnect();
      if (state.current) setJoined(state.current, false);
      updateConnectionState();
    });
    window.addEventListener("online", () => {
      updateConnectionState();
      for (const socket of [state.chat, state.inbox]) if (socket && !socket.connected) socket.connect();
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") scheduleMarkRead();
      else stopTyping();
    });

    updateConnectionState();
    resume();
  }

  if (typeof io !== "function") {
    document.addEventListener("DOMContentLoaded", () => {
      $("connection-state").textContent = "Socket.IO client failed to load";
    });
    return;
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
