/*
 * Jade Mart agent console: a single-page app served by the desk at /desk/.
 * Plain JavaScript, no build step, no dependencies. Built against bot/desk/API.md.
 *
 * SECURITY: every string from the server (customer text, names, notes, slots…) goes
 * into the page through textContent / createTextNode (see h() and setText()); no
 * innerHTML anywhere, no HTML built from data, no links made from customer text.
 *
 * data-testid hooks for the end-to-end tests (Playwright):
 *   login-form, login-username, login-password, login-submit
 *   login-error            the sign-in error (401 wrong, 429 too many attempts + wait)
 *   logout, lang-switch (header), lang-switch-login, mute-toggle (aria-pressed), help-open
 *   me-name, me-role
 *   status                 <select> online | away | offline (POST /desk/api/status)
 *   connection             data-state="live" | "reconnecting"
 *   my-list, team-list, agent-list
 *   queue-group            one per skill group, data-group=<name>
 *   queue-item             a queued conversation, data-conversation-id=<id>
 *   my-item                a conversation assigned to me, data-conversation-id=<id>
 *   team-item              (supervisors) assigned to someone else, data-conversation-id=<id>
 *   unread-badge           inside an item, the unread count
 *   agent-item             (supervisors) data-agent-id=<id>, data-status=<status>
 *   conversation           the centre pane; data-conversation-id of the open one
 *   transcript             the transcript (role=log)
 *   line                   one transcript line, data-role="customer|bot|agent|system"
 *                          (data-pending="1" while an own reply is being delivered)
 *   intent-badge           intent + confidence on a customer line
 *   line-button            a bot line's button (chip)
 *   delivery-failed        a delivery failure in the transcript, data-code=<code>
 *   conversation-removed   the banner shown when the open conversation left your view
 *   customer-typing        "the customer is typing…" (web widget customers)
 *   reply-input, reply-send, note-send, note-mode
 *   suggestion             a suggested-answer chip
 *   canned-list, canned-item (data-shortcut)
 *   accept-conversation, transfer-open, close-conversation
 *   transfer-agent, transfer-group, transfer-confirm, transfer-cancel
 *   confirm-ok, confirm-cancel
 *   profile, reason, slots, previous, previous-item, notes, note-item, note-input, note-add
 *   help-overlay
 *   toast
 */
(function () {
  'use strict';

  // ---------------------------------------------------------------- strings
  var I18N = {
    zh: {
      appName: '玉集客服台',
      loginTitle: '客服登录',
      username: '用户名',
      password: '密码',
      signIn: '登录',
      signingIn: '登录中…',
      errMissing: '请输入用户名和密码',
      errWrong: '用户名或密码错误',
      errTooMany: '尝试次数过多，请 {s} 秒后再试',
      errTooManyNoWait: '尝试次数过多，请稍后再试',
      errNetwork: '无法连接服务器',
      errGeneric: '出错了：{msg}',
      errForbidden: '没有权限执行此操作',
      errConflict: '会话当前状态不允许此操作',
      errNotFound: '会话不存在或已结束',
      sessionEnded: '登录已失效，请重新登录',
      logout: '退出',
      role_agent: '客服',
      role_supervisor: '主管',
      role_admin: '管理员',
      statusLabel: '我的状态',
      status_online: '在线',
      status_away: '离开',
      status_offline: '离线',
      connLive: '实时',
      connReconnecting: '重新连接中…',
      connConnecting: '连接中…',
      mute: '提示音：开（点击静音）',
      unmute: '提示音：关（点击开启）',
      langSwitch: 'English',
      langSwitchTitle: 'Switch to English',
      shortcuts: '快捷键',
      conversations: '会话列表',
      details: '客户与会话信息',
      transcript: '聊天记录',
      customerTyping: '客户正在输入…',
      secMine: '我的会话',
      secQueue: '排队中',
      secTeam: '团队会话',
      secAgents: '客服状态',
      emptyMine: '暂无分配给你的会话',
      emptyQueue: '队列为空',
      group_orders: '订单',
      group_billing: '支付与退款',
      group_complaints: '投诉',
      group_general: '综合',
      group_account: '账户',
      chan_web: '网页',
      chan_wechat: '微信',
      chan_app: 'App',
      prio_vip: 'VIP',
      prio_complaint: '投诉',
      prio_generic: '优先 {n}',
      reason_asked: '客户要求转人工',
      reason_complaint: '客户投诉',
      reason_misunderstood: '机器人多次未能理解',
      reason_vip: 'VIP 会员：按规则直接转人工',
      reason_failure: '机器人服务故障',
      reason_fallback: '机器人未能理解',
      reason_unknown: '未说明',
      position: '第{n}位',
      waited: '等待 {t}',
      lastAt: '{t} 前',
      role_customer: '客户',
      role_bot: '机器人',
      role_agentLine: '客服',
      role_system: '系统',
      visitor: '访客',
      verified: '已验证',
      unverified: '未验证',
      noConversation: '从左侧选择一个会话',
      noConversationHint: '按 ? 查看快捷键',
      accept: '接入',
      transfer: '转接',
      close: '结束',
      assign: '分配',
      modeReply: '回复客户',
      modeNote: '内部备注',
      replyLabel: '回复内容',
      replyPlaceholder: '输入回复… 输入 / 使用快捷回复',
      notePlaceholder: '内部备注（客户看不到）',
      composerKeys: 'Enter 发送 · Shift+Enter 换行 · / 快捷回复',
      send: '发送',
      noteSend: '存为备注',
      noteAdd: '添加备注',
      hintQueued: '接入后才能回复客户',
      hintOther: '该会话由 {name} 处理，你可以添加内部备注',
      hintGone: '会话已离开你的视图',
      hintNoteMode: '备注模式：只有同事能看到',
      suggestions: '推荐回答',
      canned: '快捷回复',
      cannedNone: '没有匹配的快捷回复',
      panelCustomer: '客户',
      panelReason: '转人工原因',
      panelConversation: '会话',
      panelSlots: '已收集的信息',
      panelPrevious: '历史会话',
      panelNotes: '内部备注',
      fieldName: '姓名',
      fieldLevel: '会员等级',
      fieldIdentity: '身份',
      fieldChannel: '渠道',
      fieldLanguage: '语言',
      fieldGroup: '技能组',
      fieldState: '状态',
      fieldAgent: '处理人',
      fieldQueued: '进入队列',
      fieldAssigned: '接入时间',
      fieldId: '会话 ID',
      fieldPriority: '优先级',
      lang_zh: '中文',
      lang_en: '英文',
      state_queued: '排队中',
      state_with_agent: '人工服务中',
      state_closed: '已结束',
      state_cancelled: '已取消',
      state_message_left: '已留言',
      state_ticket: '已转工单',
      none: '无',
      noNotes: '暂无备注',
      noPrevious: '没有历史会话',
      transferTitle: '转接会话',
      assignTitle: '分配会话',
      transferToAgent: '转给客服',
      transferToGroup: '或转回技能组队列',
      assignToAgent: '分配给客服',
      choose: '— 请选择 —',
      or: '或',
      cancel: '取消',
      ok: '确定',
      closeTitle: '结束这个会话？',
      closeBody: '机器人会询问客户问题是否已解决。',
      removed_closed: '会话已结束。',
      removed_cancelled: '客户已离开，会话已取消。',
      removed_transferred: '会话已转给其他人。',
      removed_ticket: '会话已转为工单。',
      removed_other: '会话已离开你的视图（{why}）。',
      removed_assigned: '会话已由其他客服接入。',
      removed_requeued: '会话已回到队列（你离线超过了宽限时间）。',
      removed_message: '客户改为留言，会话已结束。',
      removed_timeout: '排队超时，会话已结束。',
      fail45015: '无法送达：客户须先发消息（微信 48 小时规则）；本会话已转为工单。',
      failGeneric: '消息未送达（{code}）：{detail}',
      ticketNo: '工单号 {id}',
      sending: '发送中…',
      notDelivered: '未送达',
      newMessages: '新消息 ↓',
      earlier: '显示更早的 {n} 条',
      toastAssigned: '新会话已分配给你',
      toastAccepted: '已接入',
      toastTransferred: '已转接',
      toastClosed: '会话已结束',
      toastNoteSaved: '备注已保存',
      toastResync: '已重新同步',
      toastNoQueued: '没有可接入的排队会话',
      announceNew: '{name} 发来新消息',
      load: '{load}/{cap}',
      agentsOf: '{n} 人在线',
      scOpenPrev: '上一个会话',
      scOpenNext: '下一个会话',
      scSend: '发送（Enter 也可以）',
      scNewline: '换行',
      scNote: '切换备注模式',
      scTransfer: '转接',
      scClose: '结束会话',
      scAccept: '接入第一个排队会话',
      scCanned: '聚焦回复框并打开快捷回复',
      scEsc: '关闭对话框 / 列表',
      scHelp: '显示本帮助',
      scMute: '静音 / 取消静音',
      justNow: '刚刚',
      customerWrote: '客户',
      newLabel: '新',
      sysPaused: '已转人工',
      sysResumed: '已交回机器人'
    },
    en: {
      appName: 'Jade Mart Desk',
      loginTitle: 'Agent sign-in',
      username: 'Username',
      password: 'Password',
      signIn: 'Sign in',
      signingIn: 'Signing in…',
      errMissing: 'Enter your username and password',
      errWrong: 'Wrong username or password',
      errTooMany: 'Too many attempts. Try again in {s} s',
      errTooManyNoWait: 'Too many attempts. Try again later',
      errNetwork: 'Cannot reach the server',
      errGeneric: 'Something went wrong: {msg}',
      errForbidden: 'You are not allowed to do that',
      errConflict: 'The conversation is not in a state for that',
      errNotFound: 'The conversation no longer exists',
      sessionEnded: 'Your session ended. Please sign in again',
      logout: 'Sign out',
      role_agent: 'Agent',
      role_supervisor: 'Supervisor',
      role_admin: 'Admin',
      statusLabel: 'My status',
      status_online: 'Online',
      status_away: 'Away',
      status_offline: 'Offline',
      connLive: 'Live',
      connReconnecting: 'Reconnecting…',
      connConnecting: 'Connecting…',
      mute: 'Sound on (click to mute)',
      unmute: 'Sound off (click to unmute)',
      langSwitch: '中文',
      langSwitchTitle: '切换到中文',
      shortcuts: 'Keyboard shortcuts',
      conversations: 'Conversations',
      details: 'Customer and conversation details',
      transcript: 'Transcript',
      customerTyping: 'The customer is typing…',
      secMine: 'My conversations',
      secQueue: 'Queue',
      secTeam: 'Team conversations',
      secAgents: 'Agents',
      emptyMine: 'Nothing assigned to you',
      emptyQueue: 'Queue is empty',
      group_orders: 'Orders',
      group_billing: 'Payments & refunds',
      group_complaints: 'Complaints',
      group_general: 'General',
      group_account: 'Account',
      chan_web: 'Web',
      chan_wechat: 'WeChat',
      chan_app: 'App',
      prio_vip: 'VIP',
      prio_complaint: 'Complaint',
      prio_generic: 'Priority {n}',
      reason_asked: 'The customer asked for a person',
      reason_complaint: 'Complaint',
      reason_misunderstood: 'The bot did not understand several times',
      reason_vip: 'VIP member: straight to a person by rule',
      reason_failure: 'The bot had a failure',
      reason_fallback: 'The bot did not understand',
      reason_unknown: 'Not given',
      position: '#{n}',
      waited: 'waiting {t}',
      lastAt: '{t} ago',
      role_customer: 'Customer',
      role_bot: 'Bot',
      role_agentLine: 'Agent',
      role_system: 'System',
      visitor: 'Visitor',
      verified: 'Verified',
      unverified: 'Not verified',
      noConversation: 'Select a conversation on the left',
      noConversationHint: 'Press ? for keyboard shortcuts',
      accept: 'Accept',
      transfer: 'Transfer',
      close: 'Close',
      assign: 'Assign',
      modeReply: 'Reply',
      modeNote: 'Private note',
      replyLabel: 'Reply',
      replyPlaceholder: 'Type a reply… type / for canned responses',
      notePlaceholder: 'Private note (the customer won\u2019t see it)',
      composerKeys: 'Enter to send · Shift+Enter new line · / canned',
      send: 'Send',
      noteSend: 'Save as note',
      noteAdd: 'Add note',
      hintQueued: 'Accept the conversation to reply',
      hintOther: '{name} is handling this conversation; you can add private notes',
      hintGone: 'This conversation left your view',
      hintNoteMode: 'Note mode: only colleagues can see this',
      suggestions: 'Suggested answers',
      canned: 'Canned responses',
      cannedNone: 'No matching canned response',
      panelCustomer: 'Customer',
      panelReason: 'Why the bot handed off',
      panelConversation: 'Conversation',
      panelSlots: 'What the bot collected',
      panelPrevious: 'Previous conversations',
      panelNotes: 'Private notes',
      fieldName: 'Name',
      fieldLevel: 'Level',
      fieldIdentity: 'Identity',
      fieldChannel: 'Channel',
      fieldLanguage: 'Language',
      fieldGroup: 'Group',
      fieldState: 'State',
      fieldAgent: 'Agent',
      fieldQueued: 'Queued at',
      fieldAssigned: 'Assigned at',
      fieldId: 'Conversation ID',
      fieldPriority: 'Priority',
      lang_zh: 'Chinese',
      lang_en: 'English',
      state_queued: 'Queued',
      state_with_agent: 'With agent',
      state_closed: 'Closed',
      state_cancelled: 'Cancelled',
      state_message_left: 'Message left',
      state_ticket: 'Ticket',
      none: 'None',
      noNotes: 'No notes yet',
      noPrevious: 'No previous conversations',
      transferTitle: 'Transfer conversation',
      assignTitle: 'Assign conversation',
      transferToAgent: 'To an agent',
      transferToGroup: 'Or back to a group\u2019s queue',
      assignToAgent: 'To an agent',
      choose: '— choose —',
      or: 'or',
      cancel: 'Cancel',
      ok: 'OK',
      closeTitle: 'Close this conversation?',
      closeBody: 'The bot will ask the customer whether the problem was solved.',
      removed_closed: 'The conversation was closed.',
      removed_cancelled: 'The customer left; the conversation was cancelled.',
      removed_transferred: 'The conversation was handed to someone else.',
      removed_ticket: 'The conversation became a ticket.',
      removed_other: 'The conversation left your view ({why}).',
      removed_assigned: 'Another agent has the conversation now.',
      removed_requeued: 'The conversation went back to the queue (you were away past the grace period).',
      removed_message: 'The customer chose to leave a message; the conversation ended.',
      removed_timeout: 'The wait timed out; the conversation ended.',
      fail45015: 'Not delivered: the customer must write first (WeChat 48-hour rule); this conversation became a ticket.',
      failGeneric: 'Message not delivered ({code}): {detail}',
      ticketNo: 'Ticket {id}',
      sending: 'Sending…',
      notDelivered: 'Not delivered',
      newMessages: 'New messages ↓',
      earlier: 'Show {n} earlier lines',
      toastAssigned: 'A conversation was assigned to you',
      toastAccepted: 'Accepted',
      toastTransferred: 'Transferred',
      toastClosed: 'Conversation closed',
      toastNoteSaved: 'Note saved',
      toastResync: 'Resynchronised',
      toastNoQueued: 'No queued conversation to accept',
      announceNew: 'New message from {name}',
      load: '{load}/{cap}',
      agentsOf: '{n} online',
      scOpenPrev: 'Previous conversation',
      scOpenNext: 'Next conversation',
      scSend: 'Send (Enter works too)',
      scNewline: 'New line',
      scNote: 'Toggle note mode',
      scTransfer: 'Transfer',
      scClose: 'Close the conversation',
      scAccept: 'Accept the first queued conversation',
      scCanned: 'Focus the reply box with canned responses',
      scEsc: 'Close dialogs and lists',
      scHelp: 'Show this help',
      scMute: 'Mute / unmute',
      justNow: 'just now',
      customerWrote: 'Customer',
      newLabel: 'new',
      sysPaused: 'handed to a person',
      sysResumed: 'back to the bot'
    }
  };

  var LANG_KEY = 'desk.lang';
  var MUTE_KEY = 'desk.muted';
  var MAX_LINES = 200;          // transcript lines rendered at once (more on demand)
  var PING_MS = 20000;
  var STALE_MS = 50000;         // no message for this long: the socket is dead, reconnect
  var BACKOFF_MIN = 1000;
  var BACKOFF_MAX = 30000;

  var lang = pickLanguage();

  function pickLanguage() {
    var saved = null;
    try { saved = localStorage.getItem(LANG_KEY); } catch (e) { /* private mode */ }
    if (saved === 'zh' || saved === 'en') return saved;
    var nav = (navigator.languages && navigator.languages[0]) || navigator.language || 'en';
    return /^zh\b/i.test(nav) ? 'zh' : 'en';
  }

  function t(key, vars) {
    var s = I18N[lang][key];
    if (s == null) s = I18N.en[key];
    if (s == null) s = key;
    if (vars) {
      s = s.replace(/\{(\w+)\}/g, function (m, k) { return vars[k] == null ? '' : String(vars[k]); });
    }
    return s;
  }

  // ---------------------------------------------------------------- DOM helpers
  function $(id) { return document.getElementById(id); }

  // Builds an element; children that are strings become text nodes (never HTML).
  function h(tag, props) {
    var el = document.createElement(tag);
    if (props) {
      for (var k in props) {
        if (!Object.prototype.hasOwnProperty.call(props, k)) continue;
        var v = props[k];
        if (v == null || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = String(v);
        else if (k === 'dataset') { for (var d in v) el.dataset[d] = String(v[d]); }
        else if (k.slice(0, 2) === 'on' && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else if (k === 'hidden' || k === 'disabled' || k === 'value' || k === 'selected' || k === 'tabIndex') el[k] = v;
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (var i = 2; i < arguments.length; i++) appendKid(el, arguments[i]);
    return el;
  }
  function appendKid(el, c) {
    if (c == null || c === false) return;
    if (Array.isArray(c)) { c.forEach(function (x) { appendKid(el, x); }); return; }
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  // Writes text only when it changed (no needless layout work).
  function setText(el, s) {
    s = s == null ? '' : String(s);
    if (el.textContent !== s) el.textContent = s;
  }
  function setHidden(el, hidden) { if (el.hidden !== !!hidden) el.hidden = !!hidden; }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }
  function toggleClass(el, cls, on) { if (el.classList.contains(cls) !== !!on) el.classList.toggle(cls, !!on); }

  function applyI18n(root) {
    root = root || document;
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    root.querySelectorAll('[data-i18n]').forEach(function (el) { setText(el, t(el.getAttribute('data-i18n'))); });
    root.querySelectorAll('[data-i18n-placeholder]').forEach(function (el) {
      el.setAttribute('placeholder', t(el.getAttribute('data-i18n-placeholder')));
    });
    root.querySelectorAll('[data-i18n-title]').forEach(function (el) {
      el.setAttribute('title', t(el.getAttribute('data-i18n-title')));
    });
    root.querySelectorAll('[data-i18n-aria-label]').forEach(function (el) {
      el.setAttribute('aria-label', t(el.getAttribute('data-i18n-aria-label')));
    });
    document.querySelectorAll('.lang-switch').forEach(function (el) {
      setText(el, t('langSwitch'));
      el.setAttribute('title', t('langSwitchTitle'));
      el.setAttribute('lang', lang === 'zh' ? 'en' : 'zh');
    });
  }

  // ---------------------------------------------------------------- formatting
  var clockSkew = 0; // server time − local time, seconds (from the Date header)
  function now() { return Date.now() / 1000 + clockSkew; }

  function toEpoch(v) {
    if (v == null) return null;
    if (typeof v === 'number') return v > 1e12 ? v / 1000 : v;
    var n = Number(v);
    if (!isNaN(n) && String(v).trim() !== '') return n > 1e12 ? n / 1000 : n;
    var p = Date.parse(v);
    return isNaN(p) ? null : p / 1000;
  }
  function duration(sec) {
    sec = Math.max(0, Math.floor(sec));
    if (sec < 60) return sec + (lang === 'zh' ? '秒' : 's');
    var m = Math.floor(sec / 60), s = sec % 60;
    if (m < 60) return m + ':' + (s < 10 ? '0' : '') + s;
    var hr = Math.floor(m / 60);
    m = m % 60;
    if (hr < 24) return hr + (lang === 'zh' ? '小时' : 'h') + (m < 10 ? '0' : '') + m + (lang === 'zh' ? '分' : 'm');
    return Math.floor(hr / 24) + (lang === 'zh' ? '天' : 'd');
  }
  function locale() { return lang === 'zh' ? 'zh-CN' : 'en-GB'; }
  function fmtTime(v) {
    var e = toEpoch(v);
    if (e == null) return '';
    var d = new Date(e * 1000), today = new Date();
    var sameDay = d.toDateString() === today.toDateString();
    var opts = sameDay ? { hour: '2-digit', minute: '2-digit' }
                       : { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' };
    try { return d.toLocaleString(locale(), opts); } catch (e2) { return d.toISOString(); }
  }
  function fmtDateTime(v) {
    var e = toEpoch(v);
    if (e == null) return '';
    try {
      return new Date(e * 1000).toLocaleString(locale(), {
        year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit'
      });
    } catch (e2) { return new Date(e * 1000).toISOString(); }
  }
  function tr(prefix, key, fallback) {
    var k = prefix + String(key);
    if (I18N[lang][k] != null || I18N.en[k] != null) return t(k);
    return fallback != null ? fallback : String(key == null ? '' : key);
  }
  function channelLabel(c) { return tr('chan_', c); }
  function groupLabel(g) { return tr('group_', g); }
  function stateLabel(s) { return tr('state_', s); }
  function roleLabel(r) { return tr('role_', r); }
  function reasonLabel(r) { return r ? tr('reason_', r) : t('reason_unknown'); }
  function langLabel(l) { return tr('lang_', l, String(l || '').toUpperCase()); }
  function customerName(c) {
    var n = c && c.customer && c.customer.name;
    return n || t('visitor');
  }
  function prioLabel(c) {
    if (!c || !(c.priority > 0)) return null;
    var r = String(c.reason || '').toLowerCase();
    var lvl = String((c.customer && c.customer.level) || '').toLowerCase();
    // desk.yml gives priority to complaints and to members of the VIP levels: a priority
    // that isn't a complaint's is a member's
    if (r === 'complaint' || c.group === 'complaints') return { cls: 'complaint', text: t('prio_complaint') };
    if (r === 'vip' || lvl) return { cls: 'vip', text: t('prio_vip') };
    return { cls: 'high', text: t('prio_generic', { n: c.priority }) };
  }
  function agentName(a) {
    if (!a) return '';
    if (typeof a === 'string') return a;
    return a.name || a.username || ('#' + a.id);
  }

  // ---------------------------------------------------------------- state
  var S = {
    me: null,
    csrf: null,
    lastEventId: null,
    conversations: new Map(),   // id → Conversation
    agents: new Map(),          // id → Agent
    groups: [],
    canned: [],
    openId: null,
    detail: null,               // the open conversation's GET answer
    lines: [],                  // the open conversation's transcript (all lines)
    lineKeys: new Set(),
    rendered: MAX_LINES,        // how many of the last lines are rendered
    loadSeq: 0,
    loadingId: null,
    pendingEvents: [],          // line/note events that came while the open one was loading
    pending: [],                // own replies being delivered: {convId, text, el}
    pendingNotes: [],           // own notes waiting for their event: {convId, text}
    recentFailures: new Map(),  // convId|code → time, to show one failure once
    seen: new Map(),            // id → {h: handoff_id, n: the server's unread count when last read}
    fresh: new Set(),           // assigned to me, not yet opened
    accepting: new Set(),       // accepted by me just now (their 'assigned' event plays no cue)
    drafts: new Map(),          // id → reply text
    noteMode: false,
    gone: false,                // the open conversation left my view
    muted: false,
    loggedIn: false
  };
  try { S.muted = localStorage.getItem(MUTE_KEY) === '1'; } catch (e) { /* ignore */ }

  // Unread = customer lines since this console last showed the conversation. The server's
  // `unread` counts every customer line of the handoff; we remember (per handoff, in
  // localStorage) how many of them had been read.
  var SEEN_KEY = 'desk.seen';
  function loadSeen() {
    S.seen = new Map();
    try {
      var raw = JSON.parse(localStorage.getItem(SEEN_KEY + '.' + S.me.id) || '{}');
      Object.keys(raw).forEach(function (id) { S.seen.set(id, raw[id]); });
    } catch (e) { /* nothing remembered */ }
  }
  var seenTimer = null;
  function saveSeen() {
    if (seenTimer || !S.me) return;
    seenTimer = setTimeout(function () {
      seenTimer = null;
      var out = {};
      S.seen.forEach(function (v, id) { if (S.conversations.has(id)) out[id] = v; });
      try { localStorage.setItem(SEEN_KEY + '.' + S.me.id, JSON.stringify(out)); } catch (e) { /* full */ }
    }, 500);
  }
  function unreadOf(c) {
    if (!c) return 0;
    var seen = S.seen.get(c.id);
    var base = seen && seen.h === c.handoff_id ? seen.n : 0;
    return Math.max(0, (c.unread || 0) - base);
  }
  function markRead(c) {
    if (!c) return;
    S.seen.set(c.id, { h: c.handoff_id, n: c.unread || 0 });
    saveSeen();
  }

  function isSupervisor() { return !!S.me && (S.me.role === 'supervisor' || S.me.role === 'admin'); }
  function isMine(c) { return !!(c && c.state === 'with_agent' && c.agent && S.me && c.agent.id === S.me.id); }

  // ---------------------------------------------------------------- API
  function ApiError(status, data, retryAfter) {
    this.status = status;
    this.data = data || {};
    this.retryAfter = retryAfter;
    this.message = (data && data.error) || ('HTTP ' + status);
  }

  function api(method, path, body) {
    var opts = { method: method, credentials: 'same-origin', headers: { 'Accept': 'application/json' }, cache: 'no-store' };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    if (method !== 'GET' && method !== 'HEAD' && S.csrf) opts.headers['X-CSRF-Token'] = S.csrf;
    return fetch(path, opts).then(function (res) {
      var date = res.headers.get('Date');
      if (date) {
        var server = Date.parse(date);
        if (!isNaN(server)) {
          var skew = server / 1000 - Date.now() / 1000;
          clockSkew = Math.abs(skew) > 2 ? skew : 0;   // the header has 1 s resolution
        }
      }
      return res.text().then(function (txt) {
        var data = null;
        if (txt) { try { data = JSON.parse(txt); } catch (e) { data = { error: txt.slice(0, 200) }; } }
        if (!res.ok) {
          var err = new ApiError(res.status, data, res.headers.get('Retry-After'));
          if (res.status === 401 && path !== '/desk/api/login' && path !== '/desk/api/me') onUnauthorized();
          throw err;
        }
        return data || {};
      });
    }, function () {
      throw new ApiError(0, { error: t('errNetwork') });
    });
  }
  function convPath(id, tail) {
    return '/desk/api/conversations/' + encodeURIComponent(id) + (tail ? '/' + tail : '');
  }
  function errorText(err) {
    if (!err) return '';
    if (err.status === 0) return t('errNetwork');
    if (err.status === 403) return (err.data && err.data.error) || t('errForbidden');
    if (err.status === 409) return (err.data && err.data.error) || t('errConflict');
    if (err.status === 404) return t('errNotFound');
    return t('errGeneric', { msg: err.message });
  }

  // ---------------------------------------------------------------- toasts & announcements
  function toast(msg, kind) {
    var el = h('div', { class: 'toast toast-' + (kind || 'info'), 'data-testid': 'toast', role: kind === 'error' ? 'alert' : 'status' }, msg);
    $('toasts').appendChild(el);
    setTimeout(function () { el.classList.add('leaving'); }, kind === 'error' ? 6000 : 3000);
    setTimeout(function () { el.remove(); }, kind === 'error' ? 6400 : 3400);
  }
  function announce(msg) {
    var a = $('announcer');
    a.textContent = '';
    setTimeout(function () { a.textContent = msg; }, 30);
  }

  // ---------------------------------------------------------------- sound (WebAudio, no file)
  var audioCtx = null;
  function unlockAudio() {
    if (audioCtx) { if (audioCtx.state === 'suspended') audioCtx.resume(); return; }
    var AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return;
    try { audioCtx = new AC(); } catch (e) { audioCtx = null; }
  }
  function cue(kind) {
    if (S.muted || !audioCtx) return;
    try {
      if (audioCtx.state === 'suspended') audioCtx.resume();
      var tones = kind === 'assigned' ? [[660, 0], [990, 0.14]] : kind === 'queue' ? [[520, 0]] : [[880, 0]];
      var t0 = audioCtx.currentTime + 0.01;
      tones.forEach(function (tn) {
        var osc = audioCtx.createOscillator(), gain = audioCtx.createGain();
        osc.type = 'sine';
        osc.frequency.value = tn[0];
        var start = t0 + tn[1];
        gain.gain.setValueAtTime(0.0001, start);
        gain.gain.exponentialRampToValueAtTime(0.18, start + 0.015);
        gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.13);
        osc.connect(gain).connect(audioCtx.destination);
        osc.start(start);
        osc.stop(start + 0.15);
      });
    } catch (e) { /* no sound then */ }
  }
  function renderMute() {
    var b = $('mute-toggle');
    setText(b, S.muted ? '🔕' : '🔔');
    b.setAttribute('aria-pressed', S.muted ? 'true' : 'false');
    b.setAttribute('title', S.muted ? t('unmute') : t('mute'));
    b.setAttribute('aria-label', S.muted ? t('unmute') : t('mute'));
  }
  function toggleMute() {
    S.muted = !S.muted;
    try { localStorage.setItem(MUTE_KEY, S.muted ? '1' : '0'); } catch (e) { /* ignore */ }
    unlockAudio();
    renderMute();
  }

  // ---------------------------------------------------------------- title counter
  var baseTitle = document.title;
  var titleTimer = null;
  function updateTitle() {
    if (titleTimer) return;
    titleTimer = setTimeout(function () {
      titleTimer = null;
      var n = 0;
      S.conversations.forEach(function (c) { if (isMine(c) && c.id !== S.openId) n += unreadOf(c); });
      S.fresh.forEach(function (id) { var c = S.conversations.get(id); if (c && !unreadOf(c)) n += 1; });
      var title = t('appName');
      document.title = n > 0 ? '(' + n + ') ' + title : title;
    }, 50);
  }

  // ---------------------------------------------------------------- the lists (keyed, incremental)
  var rows = new Map();        // conversation id → {el, refs, section, sortKey}
  var queueSections = new Map(); // group → {el, list, count, empty}
  var agentRows = new Map();   // agent id → {el, refs}

  function sectionOf(c) {
    if (!c || !S.me) return null;
    if (c.state === 'queued') return 'q:' + (c.group || 'general');
    if (c.state === 'with_agent') {
      if (isMine(c)) return 'mine';
      if (isSupervisor()) return 'team';
      return null;
    }
    return null;
  }
  function sortKeyOf(c, section) {
    if (section === 'mine') return [toEpoch(c.assigned_at) || toEpoch(c.queued_at) || 0, c.id];
    if (section === 'team') return [agentName(c.agent).toLowerCase(), toEpoch(c.assigned_at) || 0, c.id];
    // queues: the server's position first, then priority (higher first), then arrival
    return [c.position != null ? c.position : 1e9, -(c.priority || 0), toEpoch(c.queued_at) || 0, c.id];
  }
  function cmpKeys(a, b) {
    for (var i = 0; i < a.length; i++) {
      if (a[i] < b[i]) return -1;
      if (a[i] > b[i]) return 1;
    }
    return 0;
  }

  function ensureQueueSection(group) {
    var sec = queueSections.get(group);
    if (sec) return sec;
    var list = h('ul', { class: 'conv-list' });
    var count = h('span', { class: 'count' }, '0');
    var label = h('span', { class: 'group-name' }, groupLabel(group));
    var empty = h('p', { class: 'side-empty' }, t('emptyQueue'));
    var head = h('h3', { class: 'group-title' }, label, count);
    var el = h('div', { class: 'queue-group', 'data-testid': 'queue-group', 'data-group': group }, head, list, empty);
    sec = { el: el, list: list, count: count, label: label, empty: empty, group: group };
    queueSections.set(group, sec);
    // keep groups in alphabetical order of their keys (stable)
    var container = $('queue-groups');
    var before = null;
    Array.prototype.some.call(container.children, function (ch) {
      if (ch.getAttribute('data-group') > group) { before = ch; return true; }
      return false;
    });
    container.insertBefore(el, before);
    return sec;
  }
  function listFor(section) {
    if (section === 'mine') return $('list-mine');
    if (section === 'team') return $('list-team');
    return ensureQueueSection(section.slice(2)).list;
  }
  function testidFor(section) {
    if (section === 'mine') return 'my-item';
    if (section === 'team') return 'team-item';
    return 'queue-item';
  }

  function makeRow(c) {
    var refs = {};
    refs.chan = h('span', { class: 'chan' });
    refs.name = h('span', { class: 'item-name' });
    refs.prio = h('span', { class: 'badge-prio', hidden: true });
    refs.lang = h('span', { class: 'tag tag-lang' });
    refs.time = h('span', { class: 'item-time' });
    refs.pos = h('span', { class: 'item-pos', hidden: true });
    refs.agent = h('span', { class: 'item-agent', hidden: true });
    refs.preview = h('span', { class: 'item-preview' });
    refs.unread = h('span', { class: 'unread', 'data-testid': 'unread-badge', hidden: true });
    var el = h('li', { class: 'conv-item', tabIndex: 0, role: 'button' },
      h('div', { class: 'item-line1' }, refs.chan, refs.name, refs.prio, refs.lang, refs.time),
      h('div', { class: 'item-line2' }, refs.pos, refs.agent, refs.preview, refs.unread));
    el.setAttribute('data-conversation-id', c.id);
    el.addEventListener('click', function () { openConversation(c.id); });
    el.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); openConversation(c.id); }
    });
    return { el: el, refs: refs, section: null, sortKey: null };
  }

  function fillRow(row, c) {
    var r = row.refs, sec = row.section;
    setText(r.chan, channelLabel(c.channel));
    r.chan.className = 'chan chan-' + String(c.channel || 'web').replace(/[^a-z]/g, '');
    setText(r.name, customerName(c));
    var p = prioLabel(c);
    setHidden(r.prio, !p);
    if (p) { setText(r.prio, p.text); r.prio.className = 'badge-prio prio-' + p.cls; }
    setText(r.lang, String(c.language || '').toUpperCase());
    r.lang.setAttribute('title', langLabel(c.language));
    var queued = sec && sec.slice(0, 2) === 'q:';
    setHidden(r.pos, !(queued && c.position != null));
    if (queued && c.position != null) setText(r.pos, t('position', { n: c.position }));
    setHidden(r.agent, sec !== 'team');
    if (sec === 'team') setText(r.agent, agentName(c.agent));
    setText(r.preview, c.last_message && c.last_message.text ? oneLine(c.last_message.text) : reasonLabel(c.reason));
    var n = c.id === S.openId ? 0 : unreadOf(c);
    setHidden(r.unread, n <= 0);
    if (n > 0) setText(r.unread, n > 99 ? '99+' : String(n));
    toggleClass(row.el, 'has-unread', n > 0);
    toggleClass(row.el, 'is-fresh', S.fresh.has(c.id));
    toggleClass(row.el, 'active', S.openId === c.id);
    if (S.openId === c.id) row.el.setAttribute('aria-current', 'true'); else row.el.removeAttribute('aria-current');
    row.el.setAttribute('aria-label', customerName(c) + ', ' + channelLabel(c.channel) + (n > 0 ? ', ' + n : ''));
    tickRow(row, c);
  }
  function oneLine(s) {
    s = String(s).replace(/\s+/g, ' ').trim();
    return s.length > 80 ? s.slice(0, 80) + '…' : s;
  }
  function tickRow(row, c) {
    var sec = row.section, txt, since, cls = 'item-time';
    if (sec && sec.slice(0, 2) === 'q:') {
      since = now() - (toEpoch(c.queued_at) || now());
      txt = duration(since);
      if (since >= 300) cls += ' late'; else if (since >= 120) cls += ' warn';
    } else {
      var at = (c.last_message && toEpoch(c.last_message.at)) || toEpoch(c.assigned_at) || toEpoch(c.queued_at);
      txt = at ? duration(now() - at) : '';
    }
    setText(row.refs.time, txt);
    if (row.refs.time.className !== cls) row.refs.time.className = cls;
  }

  function placeRow(row, c) {
    var list = listFor(row.section);
    var key = sortKeyOf(c, row.section);
    row.sortKey = key;
    // Already in the right place? (neighbours in order) then leave the DOM alone.
    if (row.el.parentNode === list) {
      var prev = row.el.previousElementSibling, next = row.el.nextElementSibling;
      var okPrev = !prev || cmpKeys(rowKey(prev), key) <= 0;
      var okNext = !next || cmpKeys(key, rowKey(next)) <= 0;
      if (okPrev && okNext) return;
    }
    var before = null;
    for (var ch = list.firstElementChild; ch; ch = ch.nextElementSibling) {
      if (ch === row.el) continue;
      if (cmpKeys(key, rowKey(ch)) < 0) { before = ch; break; }
    }
    if (row.el.parentNode !== list || row.el.nextElementSibling !== before) list.insertBefore(row.el, before);
  }
  function rowKey(el) {
    var r = rows.get(el.getAttribute('data-conversation-id'));
    return r ? r.sortKey : [];
  }

  var countsDirty = false;
  function markCounts() {
    if (countsDirty) return;
    countsDirty = true;
    requestAnimationFrame(updateCounts);
  }
  function updateCounts() {
    countsDirty = false;
    var mine = $('list-mine').childElementCount;
    setText($('count-mine'), mine);
    setHidden($('empty-mine'), mine > 0);
    var q = 0;
    queueSections.forEach(function (sec) {
      var n = sec.list.childElementCount;
      q += n;
      setText(sec.count, n);
      setHidden(sec.empty, n > 0);
      toggleClass(sec.el, 'is-empty', n === 0);
    });
    setText($('count-queue'), q);
    setText($('count-team'), $('list-team').childElementCount);
    updateTitle();
  }

  function upsertConversation(c) {
    if (!c || !c.id) return;
    var prev = S.conversations.get(c.id);
    S.conversations.set(c.id, c);
    if (c.id === S.openId && !document.hidden) markRead(c);
    var section = sectionOf(c);
    var row = rows.get(c.id);
    if (!section) {
      if (row) removeRow(c.id);
    } else {
      if (!row) { row = makeRow(c); rows.set(c.id, row); }
      if (row.section !== section) {
        row.section = section;
        row.el.setAttribute('data-testid', testidFor(section));
      }
      fillRow(row, c);
      placeRow(row, c);
    }
    markCounts();
    if (!prev || prev.state !== c.state || (prev.agent && prev.agent.id) !== (c.agent && c.agent.id)) markAgents();
    if (c.id === S.openId) renderConversationHead();
    if (prev && prev.state !== c.state) updateTransferTargets();
    return prev;
  }
  function removeRow(id) {
    var row = rows.get(id);
    if (!row) return;
    rows.delete(id);
    row.el.remove();
    markCounts();
  }
  function removeConversation(id) {
    if (S.conversations.has(id)) markAgents();
    S.conversations.delete(id);
    S.seen.delete(id);
    saveSeen();
    S.fresh.delete(id);
    removeRow(id);
    updateTitle();
  }

  // agents (supervisors see the list; everyone uses it for transfers)
  function upsertAgent(a) {
    if (!a || a.id == null) return;
    S.agents.set(a.id, a);
    if (S.me && a.id === S.me.id) {
      S.me = Object.assign({}, S.me, a);
      renderMe();
    }
    if (!isSupervisor()) return;
    var row = agentRows.get(a.id);
    if (!row) {
      var refs = {
        dot: h('span', { class: 'status-dot' }),
        name: h('span', { class: 'agent-name' }),
        role: h('span', { class: 'role-badge small', hidden: true }),
        load: h('span', { class: 'agent-load' }),
        bar: h('span', { class: 'load-bar' }, h('span', { class: 'load-fill' })),
        groups: h('span', { class: 'agent-groups' })
      };
      var el = h('li', { class: 'agent-item', 'data-testid': 'agent-item' },
        h('div', { class: 'item-line1' }, refs.dot, refs.name, refs.role, refs.load),
        h('div', { class: 'item-line2' }, refs.bar, refs.groups));
      el.setAttribute('data-agent-id', String(a.id));
      row = { el: el, refs: refs };
      agentRows.set(a.id, row);
    }
    var r = row.refs;
    row.el.setAttribute('data-status', a.status || 'offline');
    r.dot.className = 'status-dot s-' + (a.status || 'offline');
    r.dot.setAttribute('title', tr('status_', a.status || 'offline'));
    setText(r.name, agentName(a));
    setHidden(r.role, a.role === 'agent');
    setText(r.role, roleLabel(a.role));
    var load = loadOf(a);
    setText(r.load, t('load', { load: load, cap: a.capacity || 0 }));
    var pct = a.capacity ? Math.min(100, Math.round(100 * load / a.capacity)) : 0;
    var fill = r.bar.firstChild;
    fill.style.width = pct + '%';
    toggleClass(fill, 'full', pct >= 100);
    setText(r.groups, (a.groups || []).map(groupLabel).join(' · '));
    // order: online, away, offline; then by name
    var list = $('list-agents');
    var key = agentSortKey(a);
    row.key = key;
    var before = null;
    for (var ch = list.firstElementChild; ch; ch = ch.nextElementSibling) {
      if (ch === row.el) continue;
      var other = agentRows.get(Number(ch.getAttribute('data-agent-id'))) || agentRows.get(ch.getAttribute('data-agent-id'));
      if (other && cmpKeys(key, other.key) < 0) { before = ch; break; }
    }
    if (row.el.parentNode !== list || row.el.nextElementSibling !== before) list.insertBefore(row.el, before);
    var online = 0;
    S.agents.forEach(function (x) { if (x.status === 'online') online++; });
    setText($('count-agents'), t('agentsOf', { n: online }));
  }
  // A supervisor sees every assigned conversation, so the load is counted here from
  // them (always current); an agent's console has only the server's figure.
  function loadOf(a) {
    if (!isSupervisor()) return a.load || 0;
    var n = 0;
    S.conversations.forEach(function (c) { if (c.state === 'with_agent' && c.agent && c.agent.id === a.id) n++; });
    return n;
  }
  var agentsDirty = false;
  function markAgents() {
    if (agentsDirty || !isSupervisor()) return;
    agentsDirty = true;
    requestAnimationFrame(function () {
      agentsDirty = false;
      S.agents.forEach(function (a) { upsertAgent(a); });
    });
  }
  function agentSortKey(a) {
    var order = { online: 0, away: 1, offline: 2 };
    return [order[a.status] != null ? order[a.status] : 3, agentName(a).toLowerCase(), a.id];
  }

  // the wait times tick once a second (text writes only where the text changed)
  function tick() {
    rows.forEach(function (row, id) {
      var c = S.conversations.get(id);
      if (c) tickRow(row, c);
    });
  }

  // ---------------------------------------------------------------- the header
  function renderMe() {
    if (!S.me) return;
    setText($('me-name'), S.me.name || S.me.username);
    setText($('me-role'), roleLabel(S.me.role));
    var sel = $('status-select');
    if (document.activeElement !== sel && sel.value !== S.me.status) sel.value = S.me.status || 'offline';
    $('status-dot').className = 'status-dot s-' + (S.me.status || 'offline');
    setHidden($('sec-team'), !isSupervisor());
    setHidden($('sec-agents'), !isSupervisor());
  }
  function setConn(state) {
    var el = $('connection');
    el.setAttribute('data-state', state);
    setText($('connection-text'), state === 'live' ? t('connLive') : WS.everOpened ? t('connReconnecting') : t('connConnecting'));
  }

  // ---------------------------------------------------------------- sign-in
  var retryTimer = null;
  function showLogin(message) {
    S.loggedIn = false;
    document.body.classList.remove('booting');
    setHidden($('app-view'), true);
    setHidden($('login-view'), false);
    var err = $('login-error');
    setHidden(err, !message);
    setText(err, message || '');
    $('login-password').value = '';
    setTimeout(function () { ($('login-username').value ? $('login-password') : $('login-username')).focus(); }, 0);
  }
  function onLoginSubmit(e) {
    e.preventDefault();
    unlockAudio();
    var u = $('login-username').value.trim(), p = $('login-password').value;
    var err = $('login-error'), btn = $('login-submit');
    if (!u || !p) { setText(err, t('errMissing')); setHidden(err, false); return; }
    btn.disabled = true;
    setText(btn, t('signingIn'));
    api('POST', '/desk/api/login', { username: u, password: p }).then(function (data) {
      S.csrf = data.csrf;
      S.me = data.agent;
      setHidden(err, true);
      startApp();
    }, function (e2) {
      var msg;
      if (e2.status === 401) msg = t('errWrong');
      else if (e2.status === 429) {
        var wait = parseInt(e2.retryAfter, 10);
        if (isNaN(wait) && e2.retryAfter) {
          var at = Date.parse(e2.retryAfter);
          if (!isNaN(at)) wait = Math.max(1, Math.ceil((at - Date.now()) / 1000));
        }
        if (!isNaN(wait) && wait > 0) {
          startRetryCountdown(wait);
          return;
        }
        msg = t('errTooManyNoWait');
      } else msg = errorText(e2);
      setText(err, msg);
      setHidden(err, false);
      $('login-password').value = '';
      $('login-password').focus();
    }).then(function () {
      if (!retryTimer) btn.disabled = false;
      setText(btn, t('signIn'));
    });
  }
  function startRetryCountdown(wait) {
    var err = $('login-error'), btn = $('login-submit');
    var until = Date.now() + wait * 1000;
    clearInterval(retryTimer);
    function step() {
      var left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) {
        clearInterval(retryTimer);
        retryTimer = null;
        btn.disabled = false;
        setHidden(err, true);
        return;
      }
      setText(err, t('errTooMany', { s: left }));
      setHidden(err, false);
      btn.disabled = true;
    }
    step();
    retryTimer = setInterval(step, 1000);
  }
  function onUnauthorized() {
    if (!S.loggedIn) return;
    stopApp();
    showLogin(t('sessionEnded'));
  }
  function logout() {
    var done = function () { stopApp(); S.csrf = null; S.me = null; showLogin(''); };
    api('POST', '/desk/api/logout', {}).then(done, done);
  }

  // ---------------------------------------------------------------- start / stop
  var tickTimer = null;
  function startApp() {
    S.loggedIn = true;
    loadSeen();
    document.body.classList.remove('booting');
    setHidden($('login-view'), true);
    setHidden($('app-view'), false);
    renderMe();
    renderMute();
    setConn('reconnecting');
    loadState().then(function () {
      WS.wanted = true;
      wsConnect();
    }, function (err) { if (err.status !== 401) toast(errorText(err), 'error'); WS.wanted = true; wsConnect(); });
    loadCanned();
    clearInterval(tickTimer);
    tickTimer = setInterval(tick, 1000);
  }
  function stopApp() {
    S.loggedIn = false;
    wsClose();
    clearInterval(tickTimer);
    rows.forEach(function (r) { r.el.remove(); });
    rows.clear();
    queueSections.forEach(function (s) { s.el.remove(); });
    queueSections.clear();
    agentRows.forEach(function (r) { r.el.remove(); });
    agentRows.clear();
    S.conversations.clear();
    S.agents.clear();
    S.fresh.clear();
    S.drafts.clear();
    S.lastEventId = null;
    closeConversationView();
    document.querySelectorAll('dialog[open]').forEach(function (d) { d.close(); });
    updateTitle();
  }

  function loadState() {
    return api('GET', '/desk/api/state').then(function (data) {
      if (data.last_event_id != null) S.lastEventId = String(data.last_event_id);
      if (data.me) { S.me = Object.assign({}, S.me, data.me); renderMe(); }
      S.groups = data.groups || [];
      var seen = new Set();
      (data.agents || []).forEach(function (a) { seen.add(a.id); upsertAgent(a); });
      S.agents.forEach(function (a, id) {
        if (!seen.has(id)) {
          S.agents.delete(id);
          var r = agentRows.get(id);
          if (r) { r.el.remove(); agentRows.delete(id); }
        }
      });
      // queues of my groups (everything for supervisors) show even when empty
      var groups = isSupervisor() ? S.groups : (S.me.groups || []).filter(function (g) {
        return !S.groups.length || S.groups.indexOf(g) >= 0;
      });
      groups.forEach(ensureQueueSection);
      var ids = new Set();
      (data.conversations || []).forEach(function (c) { ids.add(c.id); upsertConversation(c); });
      Array.from(S.conversations.keys()).forEach(function (id) { if (!ids.has(id)) removeConversation(id); });
      markCounts();
      updateTransferTargets();
    });
  }
  function loadCanned() {
    api('GET', '/desk/api/canned').then(function (data) { S.canned = data.canned || []; }, function () { S.canned = []; });
  }

  // ---------------------------------------------------------------- WebSocket
  var WS = { sock: null, attempt: 0, timer: null, ping: null, wanted: false, everOpened: false, lastMsg: 0 };

  function wsConnect() {
    clearTimeout(WS.timer);
    WS.timer = null;
    if (!WS.wanted || WS.sock) return;
    var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/desk/ws';
    if (S.lastEventId) url += '?last_event_id=' + encodeURIComponent(S.lastEventId);
    var sock;
    try { sock = new WebSocket(url); } catch (e) { wsRetry(false); return; }
    WS.sock = sock;
    var opened = false;
    sock.onopen = function () {
      opened = true;
      WS.everOpened = true;
      WS.attempt = 0;
      WS.lastMsg = Date.now();
      setConn('live');
      clearInterval(WS.ping);
      WS.ping = setInterval(function () {
        if (Date.now() - WS.lastMsg > STALE_MS + PING_MS) { try { sock.close(); } catch (e) { /* */ } return; }
        wsSend({ type: 'ping' });
      }, PING_MS);
    };
    sock.onmessage = function (ev) {
      WS.lastMsg = Date.now();
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg && typeof msg === 'object') {
        try { handleEvent(msg); } catch (e) { if (window.console) console.error('desk event', e); }
      }
    };
    sock.onerror = function () { /* onclose follows */ };
    sock.onclose = function (ev) {
      clearInterval(WS.ping);
      if (WS.sock === sock) WS.sock = null;
      if (!WS.wanted) return;
      if (ev && ev.code === 4401) { onUnauthorized(); return; }   // the session ended
      if (ev && ev.code === 4403 && !WS.warned) { WS.warned = true; toast(t('errForbidden') + ' (WebSocket origin)', 'error'); }
      setConn('reconnecting');
      wsRetry(opened);
    };
  }
  function wsRetry(wasOpen) {
    if (!WS.wanted) return;
    var delay = Math.min(BACKOFF_MAX, BACKOFF_MIN * Math.pow(2, WS.attempt));
    delay = Math.min(BACKOFF_MAX, Math.round(delay * (0.85 + Math.random() * 0.3)));
    WS.attempt = Math.min(WS.attempt + 1, 10);
    clearTimeout(WS.timer);
    WS.timer = setTimeout(wsConnect, delay);
    // a refused socket may mean the session ended: ask once
    if (!wasOpen && WS.attempt >= 2) {
      api('GET', '/desk/api/me').then(function (data) {
        if (data.csrf) S.csrf = data.csrf;
      }, function (err) { if (err.status === 401) onUnauthorized(); });
    }
  }
  function wsSend(obj) {
    if (WS.sock && WS.sock.readyState === 1) {
      try { WS.sock.send(JSON.stringify(obj)); } catch (e) { /* */ }
    }
  }
  function wsClose() {
    WS.wanted = false;
    clearTimeout(WS.timer);
    clearInterval(WS.ping);
    if (WS.sock) { try { WS.sock.close(1000); } catch (e) { /* */ } WS.sock = null; }
    WS.attempt = 0;
    WS.everOpened = false;
  }
  function wsReconnectNow() {
    if (!WS.wanted || WS.sock) return;
    WS.attempt = 0;
    wsConnect();
  }

  function handleEvent(ev) {
    if (ev.id != null) S.lastEventId = String(ev.id);
    switch (ev.type) {
      case 'pong':
        return;
      case 'conversation':
        onConversationEvent(ev.conversation, false);
        return;
      case 'assigned':
        onConversationEvent(ev.conversation, true);
        return;
      case 'conversation_removed':
        onRemoved(ev.conversation_id, ev.why);
        return;
      case 'line':
        onLine(ev.conversation_id, ev.line, ev.unread);
        return;
      case 'note':
        onNote(ev.conversation_id, ev.note);
        return;
      case 'delivery_failed':
        onDeliveryFailed(ev.conversation_id, ev.code, ev.detail, ev.ticket_id);
        return;
      case 'agent':
        upsertAgent(ev.agent);
        updateTransferTargets();
        return;
      case 'resync':
        resync();
        return;
      case 'typing':
        onTyping(ev.conversation_id);
        return;
      default:
        return; // unknown types are ignored (newer server)
    }
  }

  var typingTimer = null;
  function onTyping(id) {
    // Shown for a few seconds: the widget repeats it while the customer types.
    if (id !== S.openId) return;
    var box = $('customer-typing');
    box.hidden = false;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () { box.hidden = true; }, 4000);
  }

  function resync() {
    loadState().then(function () {
      if (S.openId) openConversation(S.openId, { keepScroll: true, reload: true });
      toast(t('toastResync'), 'info');
    }, function (err) { toast(errorText(err), 'error'); });
  }

  function onConversationEvent(c, assigned) {
    if (!c || !c.id) return;
    var prev = S.conversations.get(c.id);
    var wasMine = isMine(prev);
    upsertConversation(c);
    var nowMine = isMine(c);
    if (S.accepting.has(c.id) && nowMine) {
      S.accepting.delete(c.id);
    } else if ((assigned || (nowMine && !wasMine)) && c.id !== S.openId) {
      S.fresh.add(c.id);
      flash(c.id);
      cue('assigned');
      announce(t('toastAssigned') + ': ' + customerName(c));
      if (assigned) toast(t('toastAssigned') + ' · ' + customerName(c), 'info');
      if (!S.openId) openConversation(c.id);
      else { var row = rows.get(c.id); if (row) fillRow(row, c); }
      updateTitle();
    } else if (!prev && c.state === 'queued' && sectionOf(c)) {
      flash(c.id);
      cue('queue');
    }
    if (c.id === S.openId && S.gone && sectionOf(c)) {
      // it came back into view (e.g. transferred back to me)
      S.gone = false;
      setHidden($('conv-banner'), true);
      renderConversationHead();
    }
  }
  function flash(id) {
    var row = rows.get(id);
    if (!row) return;
    row.el.classList.remove('flash');
    void row.el.offsetWidth; // restart the animation (only on a real event)
    row.el.classList.add('flash');
  }

  function onRemoved(id, why) {
    var c = S.conversations.get(id);
    removeConversation(id);
    if (id === S.openId) {
      S.gone = true;
      var banner = $('conv-banner');
      var key = 'removed_' + String(why || '');
      setText(banner, (I18N[lang][key] ? t(key) : t('removed_other', { why: why || '?' })));
      banner.className = 'banner banner-' + (why === 'ticket' ? 'warn' : 'info');
      setHidden(banner, false);
      renderConversationHead(c);
    }
  }

  function lineKey(l) { return [l.role, toEpoch(l.at), l.text].join('\u0001'); }

  function onLine(id, line, unread) {
    if (!id || !line) return;
    var c = S.conversations.get(id);
    if (c && line.text && line.role !== 'system') {
      c.last_message = { text: line.text, at: line.at };
    }
    if (c && line.role === 'customer') {
      c.unread = typeof unread === 'number' ? unread : (c.unread || 0) + 1;
      if (id === S.openId && !document.hidden) markRead(c);
    }
    var isOpen = id === S.openId;
    if (isOpen) {
      if (S.loadingId === id) { S.pendingEvents.push({ type: 'line', line: line }); }
      else appendLine(line, true);
    }
    if (line.role === 'customer') {
      var focused = isOpen && document.hasFocus() && !document.hidden;
      if (!focused && c && isMine(c)) {
        cue('message');
        flash(id);
        announce(t('announceNew', { name: customerName(c) }));
      }
      if (isOpen) scheduleSuggestions();
      updateTitle();
    }
    var row = rows.get(id);
    if (row && c) fillRow(row, c);
  }

  function onNote(id, note) {
    if (id !== S.openId || !note) return;
    if (S.loadingId === id) { S.pendingEvents.push({ type: 'note', note: note }); return; }
    // our own note, already shown when the POST answered?
    for (var i = 0; i < S.pendingNotes.length; i++) {
      var p = S.pendingNotes[i];
      if (p.convId === id && p.text === note.text) {
        S.pendingNotes.splice(i, 1);
        return;
      }
    }
    addNoteItem(note, true);
  }

  // The 502 answer and the delivery_failed event tell the same thing: show it once.
  function onDeliveryFailed(id, code, detail, ticket) {
    var key = id + '|' + String(code);
    var last = S.recentFailures.get(key);
    if (last && Date.now() - last < 15000) return;
    S.recentFailures.set(key, Date.now());
    if (id === S.openId) appendFailure(code, detail, ticket);
    else {
      var c = S.conversations.get(id);
      toast(failureText(code, detail) + (c ? ' — ' + customerName(c) : ''), 'error');
    }
  }
  function failureText(code, detail) {
    if (String(code) === '45015') return t('fail45015');
    return t('failGeneric', { code: code == null ? '?' : code, detail: detail || '' });
  }

  // ---------------------------------------------------------------- the open conversation
  function openConversation(id, opts) {
    opts = opts || {};
    if (!id) return;
    var switching = id !== S.openId;
    if (switching) saveDraft();
    var prevRow = S.openId && rows.get(S.openId);
    S.openId = id;
    if (prevRow) { var pc = S.conversations.get(prevRow.el.getAttribute('data-conversation-id')); if (pc) fillRow(prevRow, pc); }
    S.fresh.delete(id);
    var row = rows.get(id);
    var c = S.conversations.get(id);
    if (c) markRead(c);
    if (row && c) fillRow(row, c);
    updateTitle();

    setHidden($('conv-empty'), true);
    setHidden($('conv-open'), false);
    setHidden($('details'), false);
    $('conversation').setAttribute('data-conversation-id', id);
    if (switching) {
      S.gone = false;
      setHidden($('conv-banner'), true);
      S.noteMode = false;
      clear($('transcript'));
      clear($('suggestion-chips'));
      setHidden($('suggestions'), true);
      S.lines = [];
      S.lineKeys = new Set();
      S.rendered = MAX_LINES;
      S.detail = null;
      clearDetails();
      closeCanned();
      restoreDraft();
      renderConversationHead();
    }
    var seq = ++S.loadSeq;
    S.loadingId = id;
    S.pendingEvents = [];
    var tScroll = $('transcript');
    var keep = opts.keepScroll && !isNearBottom(tScroll) ? tScroll.scrollTop : null;
    api('GET', convPath(id)).then(function (data) {
      if (seq !== S.loadSeq) return;
      S.loadingId = null;
      if (!data.conversation) {
        // no open handoff any more (closed, a ticket…): read-only, from what we know
        var p0 = (data.previous || [])[0] || {};
        data.conversation = S.conversations.get(id) || {
          id: id, channel: p0.channel, state: p0.state || 'closed', reason: data.reason, group: null,
          language: null, customer: { name: null, level: null, verified: false }, agent: null,
          queued_at: p0.requested_at, priority: 0
        };
        S.gone = true;
      }
      S.detail = data;
      if (data.conversation) {
        var known = S.conversations.has(id);
        // only keep it in the lists if it's still one of ours to see
        if (known || sectionOf(data.conversation)) upsertConversation(data.conversation);
        else S.conversations.set(id, data.conversation);
        if (!known && !sectionOf(data.conversation)) S.conversations.delete(id);
        S.detail.conversation = data.conversation;
      }
      renderTranscript(data.transcript || []);
      var pend = S.pendingEvents;
      S.pendingEvents = [];
      renderDetails();
      pend.forEach(function (pe) {
        if (pe.type === 'line') appendLine(pe.line, true);
        else onNote(id, pe.note);
      });
      renderConversationHead();
      if (keep != null) tScroll.scrollTop = keep; else scrollToBottom();
      loadSuggestions();
      if (switching && !opts.noFocus) focusReply();
    }, function (err) {
      if (seq !== S.loadSeq) return;
      S.loadingId = null;
      if (err.status === 404 || err.status === 403) {
        toast(errorText(err), 'error');
        removeConversation(id);
        closeConversationView();
      } else if (err.status !== 401) toast(errorText(err), 'error');
    });
  }

  function closeConversationView() {
    saveDraft();
    S.openId = null;
    S.detail = null;
    S.lines = [];
    S.lineKeys = new Set();
    S.loadSeq++;
    S.loadingId = null;
    clear($('transcript'));
    setHidden($('conv-open'), true);
    setHidden($('conv-empty'), false);
    setHidden($('details'), true);
    $('conversation').removeAttribute('data-conversation-id');
    rows.forEach(function (r, id) { var c = S.conversations.get(id); if (c) fillRow(r, c); });
  }

  function currentConv() {
    return (S.openId && S.conversations.get(S.openId)) || (S.detail && S.detail.conversation) || null;
  }

  function renderConversationHead(fallback) {
    var c = currentConv() || fallback;
    if (!c) return;
    var chan = $('conv-channel');
    setText(chan, channelLabel(c.channel));
    chan.className = 'chan chan-' + String(c.channel || 'web').replace(/[^a-z]/g, '');
    setText($('conv-name'), customerName(c));
    var ver = c.customer && c.customer.verified;
    var v = $('conv-verified');
    setText(v, ver ? '✓ ' + t('verified') : t('unverified'));
    v.className = 'tag ' + (ver ? 'tag-ok' : 'tag-muted');
    var lvl = c.customer && c.customer.level;
    setHidden($('conv-level'), !lvl);
    setText($('conv-level'), lvl || '');
    var p = prioLabel(c);
    setHidden($('conv-prio'), !p);
    if (p) { setText($('conv-prio'), p.text); $('conv-prio').className = 'badge-prio prio-' + p.cls; }
    setText($('conv-lang'), langLabel(c.language));
    var st = $('conv-state');
    var stateKey = S.gone ? 'gone' : c.state;
    setText(st, S.gone ? t('hintGone') : stateLabel(c.state));
    st.className = 'state-pill st-' + stateKey;
    var meta = [groupLabel(c.group)];
    if (c.agent) meta.push(agentName(c.agent));
    if (c.state === 'queued' && c.position != null) meta.push(t('position', { n: c.position }));
    setText($('conv-meta'), meta.join(' · '));

    var mine = isMine(c) && !S.gone;
    var sup = isSupervisor() && !S.gone;
    var canAccept = !S.gone && c.state === 'queued';
    setHidden($('accept-btn'), !canAccept);
    $('transfer-btn').disabled = !(mine || (sup && (c.state === 'with_agent' || c.state === 'queued')));
    var transferLabel = $('transfer-btn').querySelector('span');
    setText(transferLabel, sup && c.state === 'queued' ? t('assign') : t('transfer'));
    $('close-btn').disabled = !(mine || (sup && c.state === 'with_agent'));
    // composer
    var input = $('reply-input');
    var canReply = mine;
    var canNote = mine || sup;
    // a supervisor on a colleague's chat can only write notes: note mode, forced
    if (!canReply && canNote && !S.noteMode) setNoteMode(true, true);
    if (canReply && S.noteMode && S._forcedNote) setNoteMode(false, true);
    // in note mode the Send button stays off: a note must never reach the customer
    $('reply-send').disabled = !canReply || S.noteMode;
    $('note-send').disabled = !canNote;
    $('mode-note').disabled = !canNote;
    $('mode-reply').disabled = !canReply;
    input.disabled = !(canReply || canNote);
    var hint = '';
    if (S.gone) hint = t('hintGone');
    else if (c.state === 'queued') hint = t('hintQueued');
    else if (!mine && c.agent) hint = t('hintOther', { name: agentName(c.agent) });
    else if (S.noteMode) hint = t('hintNoteMode');
    setText($('composer-hint'), hint);
    input.setAttribute('placeholder', S.noteMode ? t('notePlaceholder') : (canReply ? t('replyPlaceholder') : hint));
    toggleClass($('composer-box'), 'note-mode', S.noteMode);
    toggleClass($('composer-box'), 'disabled', input.disabled);
  }

  function setNoteMode(on, forced) {
    S.noteMode = !!on;
    S._forcedNote = !!(on && forced);
    var tr1 = $('mode-reply'), tr2 = $('mode-note');
    toggleClass(tr1, 'active', !on);
    toggleClass(tr2, 'active', on);
    tr1.setAttribute('aria-selected', on ? 'false' : 'true');
    tr2.setAttribute('aria-selected', on ? 'true' : 'false');
    if (!forced) renderConversationHead();
    else {
      toggleClass($('composer-box'), 'note-mode', S.noteMode);
    }
  }

  // transcript
  function isNearBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 48; }
  function scrollToBottom() {
    var el = $('transcript');
    el.scrollTop = el.scrollHeight;
    setHidden($('jump-new'), true);
  }

  function renderTranscript(lines) {
    var tEl = $('transcript');
    S.lines = lines.slice();
    S.lineKeys = new Set(S.lines.map(lineKey));
    // replies of ours still on their way stay at the end
    var pendingEls = S.pending.filter(function (p) { return p.convId === S.openId; }).map(function (p) { return p.el; });
    var frag = document.createDocumentFragment();
    var start = Math.max(0, S.lines.length - S.rendered);
    if (start > 0) frag.appendChild(earlierButton(start));
    var prevDay = null;
    for (var i = start; i < S.lines.length; i++) {
      var d = dayOf(S.lines[i].at);
      if (d && d !== prevDay) { frag.appendChild(daySep(S.lines[i].at)); prevDay = d; }
      frag.appendChild(lineEl(S.lines[i]));
    }
    pendingEls.forEach(function (el) { frag.appendChild(el); });
    clear(tEl);
    tEl.appendChild(frag);
    tEl.setAttribute('data-last-day', prevDay || '');
  }
  function earlierButton(n) {
    return h('button', {
      type: 'button', class: 'earlier', 'data-testid': 'earlier-lines',
      onclick: function () {
        var tEl = $('transcript');
        var fromBottom = tEl.scrollHeight - tEl.scrollTop;
        S.rendered += MAX_LINES;
        renderTranscript(S.lines);
        tEl.scrollTop = tEl.scrollHeight - fromBottom;
      }
    }, t('earlier', { n: Math.min(n, MAX_LINES) }));
  }
  function dayOf(at) {
    var e = toEpoch(at);
    return e == null ? null : new Date(e * 1000).toDateString();
  }
  function daySep(at) {
    var e = toEpoch(at), txt;
    try { txt = new Date(e * 1000).toLocaleDateString(locale(), { year: 'numeric', month: 'long', day: 'numeric', weekday: 'short' }); }
    catch (x) { txt = new Date(e * 1000).toDateString(); }
    return h('div', { class: 'day-sep', role: 'separator' }, h('span', null, txt));
  }

  var SYSTEM_TEXTS = { 'handed to a person': 'sysPaused', 'back to the bot': 'sysResumed' };
  function lineEl(l) {
    var role = ['customer', 'bot', 'agent', 'system'].indexOf(l.role) >= 0 ? l.role : 'system';
    var el = h('div', { class: 'line line-' + role, 'data-testid': 'line', 'data-role': role });
    if (role === 'system') {
      var sys = SYSTEM_TEXTS[l.text] ? t(SYSTEM_TEXTS[l.text]) : (l.text || '');
      el.appendChild(h('div', { class: 'system-text' }, sys, h('time', null, fmtTime(l.at))));
      return el;
    }
    var who = role === 'customer' ? t('role_customer') : role === 'bot' ? t('role_bot') : (l.agent || t('role_agentLine'));
    var meta = h('div', { class: 'line-meta' }, h('span', { class: 'who' }, who), h('time', null, fmtTime(l.at)));
    if (role === 'customer' && l.intent) {
      var conf = typeof l.confidence === 'number' ? ' ' + Math.round(l.confidence * 100) + '%' : '';
      var low = typeof l.confidence === 'number' && l.confidence < 0.5;
      meta.appendChild(h('span', {
        class: 'intent-badge' + (low ? ' low' : ''), 'data-testid': 'intent-badge',
        title: 'intent: ' + l.intent + (conf ? ', confidence' + conf : '')
      }, l.intent + conf));
    }
    el.appendChild(meta);
    el.appendChild(h('div', { class: 'bubble' }, l.text || ''));
    if (l.buttons && l.buttons.length) {
      el.appendChild(h('div', { class: 'line-buttons' }, l.buttons.map(function (b) {
        return h('span', { class: 'line-button', 'data-testid': 'line-button', title: b.payload || '' }, b.title || b.payload || '');
      })));
    }
    return el;
  }

  function appendLine(l, live) {
    var key = lineKey(l);
    if (S.lineKeys.has(key)) return;
    var tEl = $('transcript');
    var atBottom = isNearBottom(tEl);
    // one of our own replies coming back: replace its pending copy
    if (l.role === 'agent') {
      for (var i = 0; i < S.pending.length; i++) {
        var p = S.pending[i];
        if (p.convId === S.openId && p.text === l.text) {
          S.pending.splice(i, 1);
          if (p.el.parentNode) p.el.remove();
          break;
        }
      }
    }
    S.lines.push(l);
    S.lineKeys.add(key);
    var d = dayOf(l.at);
    var frag = document.createDocumentFragment();
    if (d && d !== tEl.getAttribute('data-last-day')) { frag.appendChild(daySep(l.at)); tEl.setAttribute('data-last-day', d); }
    frag.appendChild(lineEl(l));
    // keep pending replies last
    var firstPending = tEl.querySelector('.line.pending, .line.failed-send');
    tEl.insertBefore(frag, firstPending);
    trimTranscript(tEl);
    if (atBottom || l.role === 'agent' && !live) scrollToBottom();
    else if (live) setHidden($('jump-new'), false);
  }
  function trimTranscript(tEl) {
    var linesShown = tEl.querySelectorAll('.line:not(.pending)');
    var extra = linesShown.length - S.rendered;
    if (extra <= 0) return;
    for (var i = 0; i < extra; i++) linesShown[i].remove();
    var first = tEl.firstElementChild;
    var hidden = S.lines.length - S.rendered;
    if (first && first.classList.contains('earlier')) first.remove();
    while (tEl.firstElementChild && tEl.firstElementChild.classList.contains('day-sep') &&
           tEl.firstElementChild.nextElementSibling && tEl.firstElementChild.nextElementSibling.classList.contains('day-sep')) {
      tEl.firstElementChild.remove();
    }
    tEl.insertBefore(earlierButton(hidden), tEl.firstChild);
  }

  function appendFailure(code, detail, ticket) {
    var tEl = $('transcript');
    var extra = [];
    if (detail && String(code) === '45015') extra.push(String(detail));
    if (ticket) extra.push(t('ticketNo', { id: ticket }));
    var el = h('div', { class: 'line line-failure', 'data-testid': 'delivery-failed', 'data-code': String(code == null ? '' : code), role: 'alert' },
      h('span', { class: 'failure-icon', 'aria-hidden': 'true' }, '⚠'),
      h('span', { class: 'failure-text' }, failureText(code, detail),
        extra.length ? h('span', { class: 'failure-detail' }, extra.join(' · ')) : null));
    tEl.appendChild(el);
    scrollToBottom();
  }

  // side panel
  function clearDetails() {
    ['profile-list', 'conv-info', 'slots', 'previous', 'notes'].forEach(function (id) { clear($(id)); });
    setText($('reason'), '');
  }
  function kv(dl, label, value, cls) {
    var dd = h('dd', { class: cls || null });
    appendKid(dd, value == null || value === '' ? '—' : value);
    dl.appendChild(h('dt', null, label));
    dl.appendChild(dd);
  }
  function valueText(v) {
    if (v == null) return '—';
    if (typeof v === 'boolean') return v ? '✓' : '✗';
    if (typeof v === 'object') { try { return JSON.stringify(v); } catch (e) { return String(v); } }
    return String(v);
  }
  function renderDetails() {
    var d = S.detail;
    if (!d) return;
    var c = d.conversation || currentConv() || {};
    clearDetails();
    var prof = $('profile-list');
    var cust = c.customer || {};
    kv(prof, t('fieldName'), cust.name || t('visitor'));
    kv(prof, t('fieldLevel'), cust.level || '—');
    kv(prof, t('fieldIdentity'), h('span', { class: 'tag ' + (cust.verified ? 'tag-ok' : 'tag-muted') }, cust.verified ? '✓ ' + t('verified') : t('unverified')));
    var profile = d.profile || {};
    Object.keys(profile).forEach(function (k) {
      if (k === 'name' || k === 'level' || k === 'verified') return;
      kv(prof, k, valueText(profile[k]));
    });

    setText($('reason'), reasonLabel(d.reason || c.reason));
    $('reason').setAttribute('title', String(d.reason || c.reason || ''));

    var info = $('conv-info');
    kv(info, t('fieldChannel'), channelLabel(c.channel));
    kv(info, t('fieldLanguage'), langLabel(c.language));
    kv(info, t('fieldGroup'), groupLabel(c.group));
    kv(info, t('fieldState'), stateLabel(c.state));
    if (c.agent) kv(info, t('fieldAgent'), agentName(c.agent));
    kv(info, t('fieldQueued'), fmtDateTime(c.queued_at));
    if (c.assigned_at) kv(info, t('fieldAssigned'), fmtDateTime(c.assigned_at));
    kv(info, t('fieldId'), h('code', { class: 'conv-id' }, c.id || ''));

    var slots = $('slots');
    var keys = Object.keys(d.slots || {}).filter(function (k) { return d.slots[k] != null && d.slots[k] !== ''; });
    if (!keys.length) slots.appendChild(h('p', { class: 'muted small' }, t('none')));
    keys.sort().forEach(function (k) { kv(slots, k, valueText(d.slots[k]), 'mono'); });

    var prev = $('previous');
    var list = d.previous || [];
    if (!list.length) prev.appendChild(h('li', { class: 'muted small' }, t('noPrevious')));
    list.forEach(function (p) {
      var detail = h('div', { class: 'prev-detail', hidden: true },
        h('div', null, stateLabel(p.state) + ' · ' + reasonLabel(p.reason)),
        h('div', { class: 'muted' }, fmtDateTime(p.requested_at) + ' · ' + channelLabel(p.channel)),
        h('code', { class: 'conv-id' }, String(p.id)));
      var btn = h('button', {
        type: 'button', class: 'prev-btn', 'aria-expanded': 'false',
        onclick: function () {
          var open = detail.hidden;
          detail.hidden = !open;
          btn.setAttribute('aria-expanded', open ? 'true' : 'false');
        }
      }, h('span', { class: 'prev-date' }, fmtDateTime(p.requested_at)),
         h('span', { class: 'state-pill small st-' + String(p.state || '') }, stateLabel(p.state)));
      prev.appendChild(h('li', { class: 'previous-item', 'data-testid': 'previous-item' }, btn, detail));
    });

    var notes = $('notes');
    (d.notes || []).forEach(function (n) { addNoteItem(n, false); });
    if (!notes.childElementCount) notes.appendChild(h('li', { class: 'muted small no-notes' }, t('noNotes')));
  }
  function addNoteItem(n, scroll) {
    var notes = $('notes');
    var none = notes.querySelector('.no-notes');
    if (none) none.remove();
    var el = h('li', { class: 'note-item', 'data-testid': 'note-item' },
      h('div', { class: 'note-meta' }, h('span', { class: 'note-agent' }, agentName(n.agent) || '—'), h('time', null, fmtTime(n.at))),
      h('div', { class: 'note-text' }, n.text || ''));
    notes.appendChild(el);
    if (scroll) el.scrollIntoView({ block: 'nearest' });
  }

  // ---------------------------------------------------------------- composer
  function focusReply() {
    var i = $('reply-input');
    if (!i.disabled) i.focus();
  }
  function saveDraft() {
    if (!S.openId) return;
    var v = $('reply-input').value;
    if (v) S.drafts.set(S.openId, v); else S.drafts.delete(S.openId);
  }
  function restoreDraft() {
    var i = $('reply-input');
    i.value = S.drafts.get(S.openId) || '';
    autoGrow();
  }
  function autoGrow() {
    var i = $('reply-input');
    i.style.height = 'auto';
    i.style.height = Math.min(200, Math.max(64, i.scrollHeight + 2)) + 'px';
  }

  function sendCurrent(asNote) {
    var input = $('reply-input');
    var text = input.value.replace(/\s+$/, '');
    if (!text.trim() || !S.openId) return;
    var c = currentConv();
    var note = asNote || S.noteMode;
    if (note) {
      if ($('note-send').disabled) return;
      postNote(S.openId, text).then(function (ok) {
        if (ok && input.value.replace(/\s+$/, '') === text) { input.value = ''; autoGrow(); S.drafts.delete(S.openId); }
      });
      return;
    }
    if (!isMine(c) || S.gone) return;
    input.value = '';
    autoGrow();
    S.drafts.delete(S.openId);
    closeCanned();
    postMessage(S.openId, text);
  }

  function postMessage(id, text) {
    var el = lineEl({ role: 'agent', text: text, at: now(), agent: S.me.name });
    el.classList.add('pending');
    el.setAttribute('data-pending', '1');
    var status = h('span', { class: 'send-status' }, t('sending'));
    el.querySelector('.line-meta').appendChild(status);
    var p = { convId: id, text: text, el: el };
    S.pending.push(p);
    if (id === S.openId) { $('transcript').appendChild(el); scrollToBottom(); }
    api('POST', convPath(id, 'messages'), { text: text }).then(function (data) {
      // delivered; the line (in the answer and in the event) replaces the pending copy
      if (data && data.line && data.line.text === text && id === S.openId) { appendLine(data.line, false); return; }
      if (S.pending.indexOf(p) >= 0) {
        setText(status, '');
        el.classList.remove('pending');
        el.removeAttribute('data-pending');
        // if the event never comes (or came first), keep this as the line
        setTimeout(function () {
          var i = S.pending.indexOf(p);
          if (i >= 0) {
            S.pending.splice(i, 1);
            var l = { role: 'agent', text: text, at: now(), agent: S.me.name };
            if (id === S.openId) { S.lines.push(l); S.lineKeys.add(lineKey(l)); }
          }
        }, 5000);
      }
    }, function (err) {
      var i = S.pending.indexOf(p);
      if (i >= 0) S.pending.splice(i, 1);
      el.classList.remove('pending');
      el.classList.add('failed-send');
      el.removeAttribute('data-pending');
      setText(status, t('notDelivered'));
      if (err.status === 502) {
        onDeliveryFailed(id, err.data && err.data.code, err.data && err.data.error, err.data && err.data.ticket_id);
      } else {
        toast(errorText(err), 'error');
        // give the text back to retype
        if (id === S.openId && !$('reply-input').value) { $('reply-input').value = text; autoGrow(); }
      }
    });
  }

  function postNote(id, text) {
    var entry = { convId: id, text: text };
    S.pendingNotes.push(entry);
    return api('POST', convPath(id, 'notes'), { text: text }).then(function (data) {
      if (id === S.openId) {
        var idx = S.pendingNotes.indexOf(entry);
        // the note event may have come first (then it's shown): otherwise show it now
        if (idx >= 0) addNoteItem(data && data.note ? data.note : { agent: S.me.name, text: text, at: now() }, true);
        else addNoteItem({ agent: S.me.name, text: text, at: now() }, true);
        // keep the entry so that the later event (if any) isn't shown twice
        if (idx < 0) S.pendingNotes.push(entry);
      }
      setTimeout(function () {
        var i = S.pendingNotes.indexOf(entry);
        if (i >= 0) S.pendingNotes.splice(i, 1);
      }, 15000);
      toast(t('toastNoteSaved'), 'ok');
      return true;
    }, function (err) {
      var i = S.pendingNotes.indexOf(entry);
      if (i >= 0) S.pendingNotes.splice(i, 1);
      toast(errorText(err), 'error');
      return false;
    });
  }

  // suggestions
  var suggTimer = null;
  function scheduleSuggestions() {
    clearTimeout(suggTimer);
    suggTimer = setTimeout(loadSuggestions, 250);
  }
  function loadSuggestions() {
    var id = S.openId;
    var c = currentConv();
    var box = $('suggestions'), chips = $('suggestion-chips');
    if (!id || !c || S.gone || !(isMine(c) || isSupervisor()) || c.state !== 'with_agent') {
      clear(chips);
      setHidden(box, true);
      return;
    }
    api('GET', convPath(id, 'suggestions')).then(function (data) {
      if (id !== S.openId) return;
      clear(chips);
      var list = (data.suggestions || []).filter(function (s) { return s && s.text; });
      list.forEach(function (s) {
        var conf = typeof s.confidence === 'number' ? Math.round(s.confidence * 100) + '%' : '';
        chips.appendChild(h('button', {
          type: 'button', class: 'chip suggestion', 'data-testid': 'suggestion',
          'data-key': s.key || '', title: s.text + (conf ? ' (' + conf + ')' : ''),
          onclick: function () { insertText(s.text); }
        }, h('span', { class: 'chip-text' }, oneLine(s.text)), conf ? h('span', { class: 'chip-conf' }, conf) : null));
      });
      setHidden(box, list.length === 0);
    }, function () {
      if (id !== S.openId) return;
      clear(chips);
      setHidden(box, true);
    });
  }
  function insertText(text) {
    var i = $('reply-input');
    if (i.disabled) return;
    var v = i.value;
    if (/^\/\S*$/.test(v)) v = '';
    var start = i.selectionStart != null && document.activeElement === i ? i.selectionStart : v.length;
    var end = i.selectionEnd != null && document.activeElement === i ? i.selectionEnd : v.length;
    if (v !== i.value) { start = 0; end = 0; }
    var before = v.slice(0, start), after = v.slice(end);
    var sep = before && !/\s$/.test(before) ? (lang === 'zh' ? '' : ' ') : '';
    i.value = before + sep + text + after;
    var pos = (before + sep + text).length;
    i.focus();
    i.setSelectionRange(pos, pos);
    autoGrow();
    closeCanned();
  }

  // canned responses ("/" at the start)
  var canned = { open: false, items: [], index: 0 };
  function cannedText(item) {
    var c = currentConv();
    var l = (c && c.language) || lang;
    return item[l] || item.zh || item.en || '';
  }
  function updateCanned() {
    var i = $('reply-input');
    var m = /^\/(\S*)$/.exec(i.value);
    if (!m || i.disabled) { closeCanned(); return; }
    var q = m[1].toLowerCase();
    var items = S.canned.filter(function (it) {
      if (!q) return true;
      return String(it.shortcut || '').toLowerCase().indexOf(q) >= 0 || cannedText(it).toLowerCase().indexOf(q) >= 0;
    });
    items.sort(function (a, b) {
      var ap = String(a.shortcut || '').toLowerCase().indexOf(q) === 0 ? 0 : 1;
      var bp = String(b.shortcut || '').toLowerCase().indexOf(q) === 0 ? 0 : 1;
      return ap - bp || String(a.shortcut).localeCompare(String(b.shortcut));
    });
    canned.items = items.slice(0, 50);
    canned.index = 0;
    canned.open = true;
    renderCanned();
  }
  function renderCanned() {
    var ul = $('canned-list');
    clear(ul);
    if (!canned.items.length) {
      ul.appendChild(h('li', { class: 'canned-empty' }, t('cannedNone')));
    }
    canned.items.forEach(function (it, idx) {
      var li = h('li', {
        class: 'canned-item' + (idx === canned.index ? ' selected' : ''), role: 'option',
        id: 'canned-opt-' + idx, 'data-testid': 'canned-item', 'data-shortcut': it.shortcut || '',
        'aria-selected': idx === canned.index ? 'true' : 'false',
        onmousedown: function (e) { e.preventDefault(); pickCanned(idx); }
      }, h('span', { class: 'canned-key' }, '/' + (it.shortcut || '')), h('span', { class: 'canned-text' }, oneLine(cannedText(it))));
      ul.appendChild(li);
    });
    setHidden(ul, false);
    $('reply-input').setAttribute('aria-expanded', 'true');
    if (canned.items.length) $('reply-input').setAttribute('aria-activedescendant', 'canned-opt-' + canned.index);
  }
  function moveCanned(delta) {
    if (!canned.items.length) return;
    var ul = $('canned-list');
    var old = ul.children[canned.index];
    canned.index = (canned.index + delta + canned.items.length) % canned.items.length;
    var cur = ul.children[canned.index];
    if (old) { old.classList.remove('selected'); old.setAttribute('aria-selected', 'false'); }
    if (cur) { cur.classList.add('selected'); cur.setAttribute('aria-selected', 'true'); cur.scrollIntoView({ block: 'nearest' }); }
    $('reply-input').setAttribute('aria-activedescendant', 'canned-opt-' + canned.index);
  }
  function pickCanned(idx) {
    var it = canned.items[idx];
    if (!it) return;
    var i = $('reply-input');
    i.value = cannedText(it);
    i.focus();
    i.setSelectionRange(i.value.length, i.value.length);
    closeCanned();
    autoGrow();
  }
  function closeCanned() {
    if (!canned.open && $('canned-list').hidden) return;
    canned.open = false;
    setHidden($('canned-list'), true);
    $('reply-input').setAttribute('aria-expanded', 'false');
    $('reply-input').removeAttribute('aria-activedescendant');
  }

  function onReplyKeydown(e) {
    if (canned.open) {
      if (e.key === 'ArrowDown') { e.preventDefault(); moveCanned(1); return; }
      if (e.key === 'ArrowUp') { e.preventDefault(); moveCanned(-1); return; }
      if ((e.key === 'Enter' && !e.shiftKey) || e.key === 'Tab') {
        if (canned.items.length) { e.preventDefault(); pickCanned(canned.index); return; }
      }
      if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); closeCanned(); return; }
    }
    if (e.key === 'Enter' && !e.shiftKey && !e.altKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      sendCurrent(false);
    }
  }

  // ---------------------------------------------------------------- dialogs
  var confirmAction = null;
  function confirmDialog(title, body, onOk) {
    var d = $('confirm-dialog');
    setText($('confirm-title'), title);
    setText($('confirm-body'), body);
    confirmAction = onOk;
    d.showModal();
    $('confirm-ok').focus();
  }
  function closeDialog(id) {
    var d = $(id);
    if (d.open) d.close();
  }

  function askClose() {
    var c = currentConv();
    if (!c || $('close-btn').disabled || $('conv-open').hidden) return;
    var id = c.id;
    confirmDialog(t('closeTitle'), customerName(c) + ' — ' + t('closeBody'), function () {
      api('POST', convPath(id, 'close'), {}).then(function () {
        toast(t('toastClosed'), 'ok');
        S.drafts.delete(id);
        var wasOpen = S.openId === id;
        removeConversation(id);
        if (wasOpen) { closeConversationView(); openNextAfterClose(); }
      }, function (err) { toast(errorText(err), 'error'); });
    });
  }
  function openNextAfterClose() {
    var first = $('list-mine').firstElementChild;
    if (first) openConversation(first.getAttribute('data-conversation-id'));
  }

  function acceptConversation(id) {
    if (!id) return;
    S.accepting.add(id);
    setTimeout(function () { S.accepting.delete(id); }, 10000);
    api('POST', convPath(id, 'accept'), {}).then(function (data) {
      toast(t('toastAccepted'), 'ok');
      if (data && data.conversation) upsertConversation(data.conversation);
      else {
        // until the event comes: it's mine now
        var c = S.conversations.get(id);
        if (c && c.state === 'queued') {
          var mine = Object.assign({}, c, { state: 'with_agent', agent: { id: S.me.id, name: S.me.name }, assigned_at: now(), position: null });
          upsertConversation(mine);
        }
      }
      S.fresh.delete(id);
      openConversation(id, { reload: true });
    }, function (err) { toast(errorText(err), 'error'); });
  }
  function acceptFirstQueued() {
    var best = null, bestKey = null;
    S.conversations.forEach(function (c) {
      if (c.state !== 'queued' || !rows.has(c.id)) return;
      if (!isSupervisor() && S.me.groups && S.me.groups.indexOf(c.group) < 0) return;
      var k = [-(c.priority || 0), toEpoch(c.queued_at) || 0, c.id];
      if (!bestKey || cmpKeys(k, bestKey) < 0) { best = c; bestKey = k; }
    });
    if (!best) { toast(t('toastNoQueued'), 'info'); return; }
    acceptConversation(best.id);
  }

  function openTransfer() {
    var c = currentConv();
    if (!c || $('transfer-btn').disabled || $('conv-open').hidden) return;
    var assign = isSupervisor() && c.state === 'queued';
    setText($('transfer-title'), (assign ? t('assignTitle') : t('transferTitle')) + ' · ' + customerName(c));
    setText($('transfer-confirm'), assign ? t('assign') : t('transfer'));
    $('transfer-dialog').setAttribute('data-mode', assign ? 'assign' : 'transfer');
    updateTransferTargets();
    $('transfer-agent').value = '';
    $('transfer-group').value = '';
    var groupRow = [$('transfer-group'), $('transfer-group').previousElementSibling, $('transfer-group').previousElementSibling.previousElementSibling];
    groupRow.forEach(function (el) { el.hidden = assign; });
    setHidden($('transfer-error'), true);
    $('transfer-confirm').disabled = true;
    $('transfer-dialog').showModal();
    $('transfer-agent').focus();
  }
  function updateTransferTargets() {
    var c = currentConv();
    var sa = $('transfer-agent'), sg = $('transfer-group');
    var keepA = sa.value, keepG = sg.value;
    clear(sa);
    sa.appendChild(h('option', { value: '' }, t('choose')));
    var agents = Array.from(S.agents.values()).filter(function (a) {
      return !S.me || a.id !== S.me.id || (c && c.state === 'queued');
    });
    agents.sort(function (a, b) { return cmpKeys(agentSortKey(a), agentSortKey(b)); });
    agents.forEach(function (a) {
      var label = agentName(a) + ' — ' + tr('status_', a.status || 'offline') + ' · ' + t('load', { load: loadOf(a), cap: a.capacity || 0 });
      if (c && a.groups && a.groups.length && a.groups.indexOf(c.group) < 0) label += ' · ' + (a.groups || []).map(groupLabel).join('/');
      var o = h('option', { value: String(a.id) }, label);
      if (a.status === 'offline') o.disabled = true;
      sa.appendChild(o);
    });
    clear(sg);
    sg.appendChild(h('option', { value: '' }, t('choose')));
    var groups = S.groups.length ? S.groups : Array.from(queueSections.keys());
    groups.forEach(function (g) { sg.appendChild(h('option', { value: g }, groupLabel(g))); });
    sa.value = keepA;
    if (sa.value !== keepA) sa.value = '';
    sg.value = keepG;
    if (sg.value !== keepG) sg.value = '';
  }
  function doTransfer() {
    var c = currentConv();
    if (!c) return;
    var agent = $('transfer-agent').value, group = $('transfer-group').value;
    var mode = $('transfer-dialog').getAttribute('data-mode');
    var body = agent ? { agent: Number(agent) } : group ? { group: group } : null;
    if (!body) return;
    var id = c.id;
    $('transfer-confirm').disabled = true;
    api('POST', convPath(id, mode === 'assign' ? 'assign' : 'transfer'), body).then(function (data) {
      closeDialog('transfer-dialog');
      toast(t('toastTransferred'), 'ok');
      var now2 = data && data.conversation;
      // where it is now decides: still mine to see (my group's queue, a supervisor's team list) or gone
      if (now2 && now2.id === id) {
        upsertConversation(now2);
        if (!sectionOf(now2)) removeConversation(id);
      } else if (!isSupervisor()) removeConversation(id);
      if (!rows.has(id)) {
        S.drafts.delete(id);
        if (S.openId === id) { closeConversationView(); openNextAfterClose(); }
      } else if (S.openId === id) {
        renderConversationHead();
        loadSuggestions();
      }
    }, function (err) {
      var e = $('transfer-error');
      setText(e, errorText(err));
      setHidden(e, false);
      $('transfer-confirm').disabled = false;
    });
  }

  function renderHelp() {
    var rowsH = [
      ['Alt + ↑', 'scOpenPrev'], ['Alt + ↓', 'scOpenNext'], ['Enter / Ctrl + Enter', 'scSend'],
      ['Shift + Enter', 'scNewline'], ['Alt + N', 'scNote'], ['Alt + T', 'scTransfer'], ['Alt + C', 'scClose'],
      ['Alt + A', 'scAccept'], ['/', 'scCanned'], ['Alt + M', 'scMute'], ['Esc', 'scEsc'], ['?', 'scHelp']
    ];
    var body = $('help-rows');
    clear(body);
    rowsH.forEach(function (r) {
      body.appendChild(h('tr', null,
        h('td', null, r[0].split(' / ').map(function (combo, i) {
          return [i ? ' / ' : null, combo.split(' + ').map(function (k, j) { return [j ? '+' : null, h('kbd', null, k)]; })];
        })),
        h('td', null, t(r[1]))));
    });
  }
  function openHelp() {
    renderHelp();
    var d = $('help-dialog');
    if (!d.open) d.showModal();
  }

  // ---------------------------------------------------------------- keyboard
  function isTyping(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === 'TEXTAREA' || tag === 'INPUT' || tag === 'SELECT' || el.isContentEditable;
  }
  function stepConversation(delta) {
    var items = Array.prototype.slice.call(document.querySelectorAll('.sidebar .conv-item'));
    if (!items.length) return;
    var idx = -1;
    for (var i = 0; i < items.length; i++) if (items[i].getAttribute('data-conversation-id') === S.openId) idx = i;
    var next = idx < 0 ? (delta > 0 ? 0 : items.length - 1) : Math.max(0, Math.min(items.length - 1, idx + delta));
    var el = items[next];
    openConversation(el.getAttribute('data-conversation-id'), { noFocus: !isTyping(document.activeElement) });
    el.scrollIntoView({ block: 'nearest' });
  }
  function onGlobalKeydown(e) {
    if (!S.loggedIn) return;
    var anyDialog = document.querySelector('dialog[open]');
    if (anyDialog) return; // dialogs handle their own keys (Esc closes them)
    if (e.altKey && !e.ctrlKey && !e.metaKey) {
      var handled = true;
      switch (e.code) {
        case 'ArrowUp': stepConversation(-1); break;
        case 'ArrowDown': stepConversation(1); break;
        case 'KeyN': if (!$('mode-note').disabled && S.openId) { setNoteMode(!S.noteMode); focusReply(); } break;
        case 'KeyT': openTransfer(); break;
        case 'KeyC': askClose(); break;
        case 'KeyA': acceptFirstQueued(); break;
        case 'KeyM': toggleMute(); break;
        default: handled = false;
      }
      if (handled) { e.preventDefault(); return; }
    }
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter' && document.activeElement === $('reply-input')) {
      e.preventDefault();
      sendCurrent(false);
      return;
    }
    if (e.key === 'Escape') {
      if (canned.open) { closeCanned(); e.preventDefault(); }
      return;
    }
    if (isTyping(document.activeElement) || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === '?') { e.preventDefault(); openHelp(); return; }
    if (e.key === '/') {
      var i = $('reply-input');
      if (!S.openId || i.disabled) return;
      e.preventDefault();
      i.focus();
      if (!i.value) i.value = '/';
      i.setSelectionRange(i.value.length, i.value.length);
      updateCanned();
    }
  }

  // ---------------------------------------------------------------- language switch
  function switchLanguage() {
    lang = lang === 'zh' ? 'en' : 'zh';
    try { localStorage.setItem(LANG_KEY, lang); } catch (e) { /* ignore */ }
    applyI18n();
    renderMute();
    if (S.loggedIn) {
      renderMe();
      setConn($('connection').getAttribute('data-state'));
      queueSections.forEach(function (sec) { setText(sec.label, groupLabel(sec.group)); setText(sec.empty, t('emptyQueue')); });
      rows.forEach(function (row, id) { var c = S.conversations.get(id); if (c) fillRow(row, c); });
      S.agents.forEach(function (a) { upsertAgent(a); });
      updateTransferTargets();
      if (S.openId && S.detail) {
        renderConversationHead();
        var keep = $('transcript').scrollTop;
        renderTranscript(S.lines);
        $('transcript').scrollTop = keep;
        renderDetails();
      }
      markCounts();
    }
  }

  // ---------------------------------------------------------------- wiring
  function wire() {
    $('login-form').addEventListener('submit', onLoginSubmit);
    document.querySelectorAll('.lang-switch').forEach(function (b) { b.addEventListener('click', switchLanguage); });
    $('logout').addEventListener('click', logout);
    $('mute-toggle').addEventListener('click', toggleMute);
    $('help-open').addEventListener('click', openHelp);
    $('status-select').addEventListener('change', function () {
      var sel = this, want = sel.value, was = S.me.status;
      api('POST', '/desk/api/status', { status: want }).then(function (data) {
        if (data && data.agent) S.me = Object.assign({}, S.me, data.agent);
        else S.me.status = want;
        renderMe();
      }, function (err) {
        sel.value = was;
        toast(errorText(err), 'error');
      });
    });

    var input = $('reply-input');
    input.addEventListener('keydown', onReplyKeydown);
    input.addEventListener('input', function () { autoGrow(); updateCanned(); });
    input.addEventListener('blur', function () { setTimeout(closeCanned, 150); });
    $('reply-send').addEventListener('click', function () { sendCurrent(false); });
    $('note-send').addEventListener('click', function () { sendCurrent(true); });
    $('mode-reply').addEventListener('click', function () { setNoteMode(false); focusReply(); });
    $('mode-note').addEventListener('click', function () { setNoteMode(true); focusReply(); });
    $('accept-btn').addEventListener('click', function () { acceptConversation(S.openId); });
    $('transfer-btn').addEventListener('click', openTransfer);
    $('close-btn').addEventListener('click', askClose);
    $('jump-new').addEventListener('click', scrollToBottom);
    $('transcript').addEventListener('scroll', function () {
      if (!$('jump-new').hidden && isNearBottom(this)) setHidden($('jump-new'), true);
    }, { passive: true });

    $('note-form').addEventListener('submit', function (e) {
      e.preventDefault();
      var ta = $('note-input'), text = ta.value.trim();
      if (!text || !S.openId) return;
      postNote(S.openId, text).then(function (ok) { if (ok) ta.value = ''; });
    });
    $('note-input').addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); $('note-form').requestSubmit(); }
    });

    $('confirm-ok').addEventListener('click', function () {
      var act = confirmAction;
      confirmAction = null;
      closeDialog('confirm-dialog');
      if (act) act();
    });
    $('confirm-cancel').addEventListener('click', function () { confirmAction = null; closeDialog('confirm-dialog'); });
    $('confirm-dialog').addEventListener('close', function () { confirmAction = null; });

    $('transfer-agent').addEventListener('change', function () {
      if (this.value) $('transfer-group').value = '';
      $('transfer-confirm').disabled = !(this.value || $('transfer-group').value);
    });
    $('transfer-group').addEventListener('change', function () {
      if (this.value) $('transfer-agent').value = '';
      $('transfer-confirm').disabled = !(this.value || $('transfer-agent').value);
    });
    $('transfer-confirm').addEventListener('click', doTransfer);
    $('transfer-cancel').addEventListener('click', function () { closeDialog('transfer-dialog'); });
    $('transfer-dialog').addEventListener('close', function () { if (S.openId) focusReply(); });
    $('help-dialog').addEventListener('close', function () { if (S.openId) focusReply(); });
    // a click on the backdrop closes a dialog
    document.querySelectorAll('dialog').forEach(function (d) {
      d.addEventListener('click', function (e) { if (e.target === d) d.close(); });
    });

    document.addEventListener('keydown', onGlobalKeydown);
    document.addEventListener('pointerdown', unlockAudio, { passive: true });
    document.addEventListener('keydown', unlockAudio, { passive: true });
    window.addEventListener('online', wsReconnectNow);
    window.addEventListener('focus', function () {
      var c = S.openId && S.conversations.get(S.openId);
      if (c && unreadOf(c)) { markRead(c); updateTitle(); }
    });
    document.addEventListener('visibilitychange', function () {
      if (document.hidden) return;
      wsReconnectNow();
      var c = S.openId && S.conversations.get(S.openId);
      if (c && unreadOf(c)) { markRead(c); updateTitle(); }
    });
  }

  function boot() {
    applyI18n();
    renderMute();
    renderHelp();
    wire();
    api('GET', '/desk/api/me').then(function (data) {
      S.me = data.agent;
      S.csrf = data.csrf;
      startApp();
    }, function (err) {
      showLogin(err.status === 401 || err.status === 403 ? '' : errorText(err));
    });
  }

  // for the tests and for debugging from the console (read-only look at the state)
  window.__desk = { state: S, version: 1 };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
