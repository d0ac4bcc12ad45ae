// The talon inbox console. Every value from the server is inserted with
// textContent, never as HTML.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const PAGE = 50;
  const POLL_MS = 2000;
  const state = { user: null, unread: 0, open: false, source: null, poll: null, oldest: null, newest: null };

  class LoggedOut extends Error {}

  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: {} };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (response.status === 401 && path !== '/v1/login') {
      showLogin();
      throw new LoggedOut('not logged in');
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data;
  }

  function el(tag, className, value) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (value !== undefined && value !== null) node.textContent = String(value);
    return node;
  }

  function status(message) {
    $('status').textContent = message || '';
  }

  function setUnread(n) {
    state.unread = n;
    const bell = $('bell');
    bell.classList.toggle('unread', n > 0);
    $('badge').textContent = n > 0 ? String(n) : '';
    bell.setAttribute('aria-label', n > 0 ? `Inbox: ${n} unread` : 'Inbox: no unread messages');
  }

  function clientText(m) {
    const host = m.client && (m.client.hostname || m.client.fqdn);
    if (host && m.client_id) return `${host} (${m.client_id})`;
    return host || m.client_id || '';
  }

  function metaItem(parent, label, value, className) {
    if (!value) return;
    const item = el('span');
    item.append(el('b', null, label + ': '), el('span', className, value));
    parent.append(item);
  }

  function messageItem(m) {
    const li = el('li', m.read ? 'message' : 'message unread');
    li.dataset.seq = String(m.seq);
    li.append(el('h3', 'name', m.name));
    const meta = el('p', 'meta');
    metaItem(meta, 'Time', new Date(m.timestamp).toLocaleString());
    metaItem(meta, 'Client', clientText(m));
    if (m.severity) {
      const cls = 'severity severity-' + String(m.severity).toLowerCase().replace(/[^a-z0-9-]/g, '');
      metaItem(meta, 'Severity', m.severity, cls);
    }
    metaItem(meta, 'Artifact', m.artifact);
    if (m.suppressed_before) metaItem(meta, 'Suppressed before', m.suppressed_before);
    li.append(meta);
    if (m.context && m.context.length) {
      const table = el('table', 'context');
      const tbody = el('tbody');
      for (const entry of m.context) {
        const row = el('tr');
        row.append(el('th', null, entry.key), el('td', null, entry.value));
        tbody.append(row);
      }
      table.append(tbody);
      li.append(table);
    }
    return li;
  }

  function render(page, append) {
    const list = $('list');
    if (!append) {
      list.replaceChildren();
      // The newest message shown: what "clear" clears up to.
      state.newest = page.messages.length ? page.messages[0].seq : null;
    }
    for (const m of page.messages) list.append(messageItem(m));
    state.oldest = page.next_before || null;
    $('more').hidden = !page.next_before;
    $('empty').hidden = list.children.length > 0;
  }

  async function refresh() {
    const page = await api('GET', `/v1/messages?limit=${PAGE}`);
    setUnread(page.unread);
    if (state.open) {
      render(page, false);
      await markRead(page);
    }
  }

  async function markRead(page) {
    const unreadShown = page.messages.some((m) => !m.read);
    if (!unreadShown) return;
    const result = await api('POST', '/v1/messages/read', { up_to: page.messages[0].seq });
    setUnread(result.unread);
  }

  async function openPanel() {
    state.open = true;
    $('panel').hidden = false;
    $('bell').setAttribute('aria-expanded', 'true');
    await refresh();
  }

  function closePanel() {
    state.open = false;
    $('panel').hidden = true;
    $('bell').setAttribute('aria-expanded', 'false');
  }

  async function older() {
    if (!state.oldest) return;
    const page = await api('GET', `/v1/messages?limit=${PAGE}&before=${state.oldest}`);
    render(page, true);
  }

  async function clearAll() {
    if (state.newest === null) return;
    await api('POST', '/v1/messages/clear', { up_to: state.newest });
    await refresh();
  }

  function startPolling() {
    if (state.poll) return;
    state.poll = setInterval(() => refresh().catch(() => {}), POLL_MS);
  }

  function stopUpdates() {
    if (state.source) state.source.close();
    state.source = null;
    if (state.poll) clearInterval(state.poll);
    state.poll = null;
  }

  // Server-sent events tell of new messages at once; where they cannot be
  // had, the page polls every two seconds.
  function startUpdates() {
    stopUpdates();
    if (!('EventSource' in window)) {
      startPolling();
      return;
    }
    const source = new EventSource('/v1/events');
    state.source = source;
    source.addEventListener('unread', (event) => {
      const data = JSON.parse(event.data);
      if (typeof data.unread !== 'number') return;
      if (state.open) refresh().catch(() => {});
      else setUnread(data.unread);
    });
    source.addEventListener('open', () => {
      if (state.poll) clearInterval(state.poll);
      state.poll = null;
    });
    source.addEventListener('error', () => {
      startPolling();
      if (source.readyState === EventSource.CLOSED) {
        // The session may have ended: find out, and reconnect if not.
        api('GET', '/v1/me').then(() => setTimeout(startUpdates, POLL_MS)).catch(() => {});
      }
    });
  }

  function showLogin() {
    stopUpdates();
    closePanel();
    state.user = null;
    $('app').hidden = true;
    $('bell').hidden = true;
    $('login').hidden = false;
    $('login-name').focus();
  }

  async function showApp(user) {
    state.user = user;
    $('login').hidden = true;
    $('app').hidden = false;
    $('bell').hidden = false;
    $('whoami').textContent = user;
    startUpdates();
    await refresh();
  }

  async function login(event) {
    event.preventDefault();
    $('login-error').textContent = '';
    try {
      const me = await api('POST', '/v1/login', {
        name: $('login-name').value,
        password: $('login-password').value,
      });
      $('login-password').value = '';
      await showApp(me.name);
    } catch (e) {
      $('login-error').textContent = e.message;
    }
  }

  async function logout() {
    await api('POST', '/v1/logout', {}).catch(() => {});
    showLogin();
  }

  function guard(action) {
    return () => action().catch((e) => {
      if (!(e instanceof LoggedOut)) status(e.message);
    });
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', guard(logout));
    $('bell').addEventListener('click', guard(() => (state.open ? Promise.resolve(closePanel()) : openPanel())));
    $('close').addEventListener('click', closePanel);
    $('clear').addEventListener('click', guard(clearAll));
    $('more').addEventListener('click', guard(older));
    api('GET', '/v1/me')
      .then((me) => showApp(me.name))
      .catch((e) => {
        if (!(e instanceof LoggedOut)) showLogin();
      });
  });
})();
