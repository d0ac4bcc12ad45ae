// The talon console: every alert with its triage, and the inbox bell.
// Every value from the server is inserted with textContent, never as HTML;
// a link's address is set only when it is http(s).
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const PAGE = 50;
  const POLL_MS = 2000;
  const state = { user: null, unread: 0, open: false, source: null, poll: null, oldest: null, newest: null };
  // view.group: the group message whose alerts are listed ({ ref: '<key>-<sequence>', name }).
  const view = { me: null, cursor: null, selected: null, picked: new Set(), users: [], refresh: null, current: 'alerts', silence: null, group: null, alert: null };
  // The silences view: which state is shown, its refresh, the preview's timer.
  const sview = { state: 'active', timer: null, previewing: null, seq: 0 };
  const SILENCES_REFRESH_MS = 10000;
  const PREVIEW_DELAY_MS = 400;
  const ALERTS_PAGE = 50;
  // A safety net: server-sent events bring changes at once.
  const ALERTS_REFRESH_MS = 30000;

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

  // A group message: how many alerts and what they share, the counts, and
  // a button that lists its alerts in the alerts view.
  function groupItem(m) {
    const li = el('li', m.read ? 'message group' : 'message group unread');
    li.dataset.seq = String(m.seq);
    li.dataset.id = m.id;
    li.append(el('h3', 'name', m.name));
    const meta = el('p', 'meta');
    const first = new Date(m.first_at).toLocaleString();
    const last = new Date(m.last_at).toLocaleString();
    metaItem(meta, 'Time', first === last ? first : `${first} – ${last}`);
    metaItem(meta, 'Channel', m.channel);
    if (m.group && m.group.length) metaItem(meta, 'Group', m.group.map((g) => `${g.field}=${g.value}`).join(', '));
    if (m.digest) metaItem(meta, 'Digest', m.digest);
    li.append(meta);
    const severities = el('p', 'group-counts severities');
    for (const c of m.by_severity || []) {
      const chip = el('span', severityClass(c.value), `${c.value || 'none'} ${c.count}`);
      severities.append(chip);
    }
    if (severities.children.length) li.append(severities);
    const clients = el('p', 'group-counts clients');
    for (const c of m.by_client || []) clients.append(el('span', 'tag', `${c.value || 'server'} ${c.count}`));
    if (m.other_clients) clients.append(el('span', 'tag', `${m.other_clients} on other clients`));
    if (clients.children.length) li.append(clients);
    const show = el('button', 'show-group', `Show the ${m.count} alert${m.count === 1 ? '' : 's'}`);
    show.type = 'button';
    show.addEventListener('click', guard(() => showGroup(m)));
    li.append(show);
    return li;
  }

  // The alerts view, filtered to a group message's alerts.
  async function showGroup(m) {
    closePanel();
    $('filters').reset();
    view.silence = null;
    view.group = { ref: `${m.group_key}-${m.sequence}`, name: m.name };
    if (view.selected) closeDetail();
    await showView('alerts');
  }

  function messageItem(m) {
    if (m.kind === 'group') return groupItem(m);
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
    source.addEventListener('alerts', () => {
      if (view.me && !view.picked.size) liveReload();
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


  // ---- Alerts -------------------------------------------------------------

  const STATE_LABEL = { open: 'Open', acknowledged: 'Acknowledged', resolved: 'Resolved' };
  const VERDICT_LABEL = { true_positive: 'true positive', false_positive: 'false positive', benign: 'benign' };

  function severityClass(severity) {
    return 'badge severity-' + String(severity || 'none').toLowerCase().replace(/[^a-z0-9-]/g, '');
  }

  function safeHref(url) {
    return typeof url === 'string' && /^https?:\/\//i.test(url) ? url : null;
  }

  function filterQuery() {
    const params = new URLSearchParams();
    const put = (key, value) => { if (value) params.set(key, value); };
    put('q', $('f-q').value.trim());
    put('state', $('f-state').value);
    put('severity', $('f-severity').value);
    const assignee = $('f-assignee').value;
    put('assignee', assignee === 'me' ? view.me.name : assignee);
    put('client', $('f-client').value.trim());
    put('silence', view.silence);
    put('group', view.group && view.group.ref);
    return params;
  }

  function countChips(target, counts, labels, onPick) {
    const nav = $(target);
    nav.replaceChildren();
    for (const [key, n] of Object.entries(counts || {})) {
      const chip = el('button', 'chip');
      chip.type = 'button';
      chip.append(el('span', null, labels[key] || key), el('b', null, n));
      chip.addEventListener('click', () => onPick(key));
      nav.append(chip);
    }
  }

  // "21 Sep, 14:13": the day and minute an analyst scans for.
  function shortTime(t) {
    return new Date(t).toLocaleString(undefined, { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
  }

  function clientOf(a) {
    if (a.hostname && a.client_id) return `${a.hostname} (${a.client_id})`;
    return a.hostname || a.client_id || '';
  }

  function alertRow(a) {
    const tr = el('tr', 'alert-row state-' + a.state);
    tr.dataset.id = a.id;
    if (a.id === view.selected) tr.classList.add('selected');
    const pick = el('td', 'pick');
    const box = el('input');
    box.type = 'checkbox';
    box.checked = view.picked.has(a.id);
    box.setAttribute('aria-label', 'Select ' + a.name);
    box.addEventListener('click', (e) => {
      e.stopPropagation();
      if (box.checked) view.picked.add(a.id); else view.picked.delete(a.id);
      showBulk();
    });
    pick.append(box);
    const sev = el('td');
    sev.append(el('span', severityClass(a.severity), a.severity || 'none'));
    const name = el('td', 'name');
    name.append(el('span', null, a.name));
    if (a.silenced_by && a.silenced_by.length) name.append(el('span', 'tag', 'silenced'));
    if (a.suppressed_before) name.append(el('span', 'tag', `+${a.suppressed_before} suppressed`));
    const st = el('td');
    st.append(el('span', 'state state-' + a.state, STATE_LABEL[a.state] || a.state));
    if (a.verdict) st.append(el('span', 'verdict', VERDICT_LABEL[a.verdict] || a.verdict));
    // The hostname when the inventory knows it (the id on hover), else the id.
    const client = el('td', 'client', a.hostname || a.client_id || '');
    client.title = clientOf(a);
    tr.append(pick, sev, name, client,
      el('td', 'time', shortTime(a.received_at)), st, el('td', null, a.assignee || '—'));
    tr.addEventListener('click', () => showDetail(a.id).catch((e) => status(e.message)));
    return tr;
  }

  // The filters (and the open alert) live in the address, so a view can be
  // shared or bookmarked.
  function saveUrl() {
    const params = filterQuery();
    if (view.selected) params.set('alert', view.selected);
    if (view.current === 'silences') params.set('view', 'silences');
    const query = params.toString();
    history.replaceState(null, '', query ? '?' + query : location.pathname);
  }

  function restoreUrl() {
    const params = new URLSearchParams(location.search);
    $('f-q').value = params.get('q') || '';
    $('f-state').value = params.get('state') || '';
    $('f-severity').value = params.get('severity') || '';
    const assignee = params.get('assignee') || '';
    $('f-assignee').value = assignee === view.me.name ? 'me' : (assignee === 'none' ? 'none' : '');
    $('f-client').value = params.get('client') || '';
    view.silence = /^[0-9a-f]{32}$/.test(params.get('silence') || '') ? params.get('silence') : null;
    const group = params.get('group') || '';
    view.group = /^[0-9a-f]{32}-[1-9][0-9]*$/.test(group) ? { ref: group, name: `Group message ${group.slice(0, 8)}…-${group.split('-')[1]}` } : null;
    view.current = params.get('view') === 'silences' ? 'silences' : 'alerts';
    return params.get('alert');
  }

  let reloading = null;
  function liveReload() {
    if (reloading) return;
    reloading = setTimeout(() => {
      reloading = null;
      loadAlerts(false).catch(() => {});
      if (view.selected && !$('detail').hidden) showDetail(view.selected).catch(() => {});
    }, 200);
  }

  async function loadAlerts(append) {
    const params = filterQuery();
    if (!append) saveUrl();
    params.set('limit', String(ALERTS_PAGE));
    if (append && view.cursor) params.set('cursor', view.cursor);
    const chip = $('f-silence');
    chip.hidden = !view.silence;
    chip.textContent = view.silence ? `Hidden by silence ${view.silence.slice(0, 8)} ×` : '';
    const groupChip = filterChip('f-group', () => { view.group = null; });
    groupChip.hidden = !view.group;
    groupChip.textContent = view.group ? `${view.group.name} ×` : '';
    const page = await api('GET', '/v1/alerts?' + params.toString());
    const rows = $('rows');
    if (!append) rows.replaceChildren();
    for (const a of page.alerts) rows.append(alertRow(a));
    view.cursor = page.next_cursor || null;
    $('more-alerts').hidden = !view.cursor;
    $('no-alerts').hidden = rows.children.length > 0;
    countChips('state-counts', page.counts.state, STATE_LABEL, (key) => { $('f-state').value = key; loadAlerts(false).catch((e) => status(e.message)); });
    countChips('severity-counts', page.counts.severity, {}, (key) => { $('f-severity').value = key; loadAlerts(false).catch((e) => status(e.message)); });
  }

  // A chip beside the filters that names a filter and takes it away when
  // clicked (made once, after the silence's).
  function filterChip(id, remove) {
    let chip = $(id);
    if (chip) return chip;
    chip = el('button', 'chip');
    chip.id = id;
    chip.type = 'button';
    chip.title = 'Show every alert again';
    chip.addEventListener('click', guard(() => { remove(); return loadAlerts(false); }));
    $('f-silence').after(chip);
    return chip;
  }

  function showBulk() {
    const n = view.picked.size;
    $('bulk').hidden = n === 0 || !view.me.may_triage;
    $('bulk-count').textContent = `${n} selected`;
  }

  async function bulk(body) {
    const result = await api('POST', '/v1/alerts/triage', { ids: [...view.picked], ...body });
    const failed = result.results.filter((r) => r.status !== 200);
    status(failed.length ? `${failed.length} not changed: ${failed[0].error}` : `${result.results.length} changed`);
    view.picked.clear();
    $('pick-all').checked = false;
    showBulk();
    await loadAlerts(false);
    if (view.selected) await showDetail(view.selected);
  }

  function fieldRow(table, label, value) {
    if (value === undefined || value === null || value === '') return;
    const tr = el('tr');
    tr.append(el('th', null, label), el('td', null, value));
    table.append(tr);
  }

  // A repeat of a dedup key that fired before: a link to the earlier alert
  // and what became of it (a resolved one's verdict above all), under the
  // title where the analyst looks first.
  function renderRepeat(p) {
    const note = $('d-repeat-note');
    note.replaceChildren();
    note.hidden = !p;
    if (!p) return;
    const a = el('a', null, p.name);
    a.id = 'd-repeat';
    a.href = '?alert=' + encodeURIComponent(p.id);
    a.addEventListener('click', (e) => {
      e.preventDefault();
      showDetail(p.id).catch((err) => status(err.message));
    });
    let how = STATE_LABEL[p.state] || p.state;
    if (p.state === 'resolved') how = 'resolved as ' + (VERDICT_LABEL[p.verdict] || 'no verdict').toLowerCase();
    if (p.assignee) how += ', assigned to ' + p.assignee;
    note.append(el('span', 'repeat-label', 'Repeat of '), a, el('span', null, ` (${how}, ${shortTime(p.received_at)})`));
  }

  function renderLinks(links) {
    const p = $('d-links');
    p.replaceChildren();
    const labels = { host: 'Host in Velociraptor', flow: 'Flow in Velociraptor', hunt: 'Hunt in Velociraptor' };
    for (const key of ['host', 'flow', 'hunt']) {
      const href = links && safeHref(links[key]);
      if (!href) continue;
      const a = el('a', 'link', labels[key]);
      a.href = href;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      p.append(a);
    }
    p.hidden = p.children.length === 0;
  }

  function renderTriage(t) {
    const words = [STATE_LABEL[t.state] || t.state];
    if (t.verdict) words.push('as ' + (VERDICT_LABEL[t.verdict] || t.verdict));
    words.push(t.assignee ? '· assigned to ' + t.assignee : '· unassigned');
    $('d-triage').textContent = words.join(' ');
    $('d-triage').className = 'triage-state state-' + t.state;
    const may = view.me.may_triage;
    $('d-actions').hidden = !may;
    $('d-note-form').hidden = !may;
    $('d-ack').hidden = t.state !== 'open';
    $('d-resolve').hidden = t.state === 'resolved';
    $('d-verdict').hidden = t.state === 'resolved';
    $('d-reopen').hidden = t.state !== 'resolved';
    $('d-assign').hidden = t.state === 'resolved';
    $('d-assignee').hidden = t.state === 'resolved';
    $('d-assignee').value = t.assignee || '';
  }

  function renderAudit(events) {
    const ol = $('d-audit');
    ol.replaceChildren();
    if (!events.length) ol.append(el('li', 'muted', 'Nothing done yet.'));
    for (const e of events.slice().reverse()) {
      const li = el('li');
      const what = { ack: 'acknowledged', assign: e.after.assignee ? 'assigned it to ' + e.after.assignee : 'took the assignment back', resolve: 'resolved it as ' + (VERDICT_LABEL[e.after.verdict] || e.after.verdict), reopen: 'reopened it', note: 'noted' }[e.action] || e.action;
      li.append(el('b', null, e.by), el('span', null, ' ' + what), el('time', 'muted', ' ' + new Date(e.at).toLocaleString()));
      if (e.note) li.append(el('p', 'note-text', e.note));
      ol.append(li);
    }
  }

  // The last outcome per channel, the earlier failures under it.
  function renderDeliveries(deliveries, routed) {
    const ul = $('d-deliveries');
    ul.replaceChildren();
    const byChannel = new Map();
    for (const d of deliveries) {
      if (!byChannel.has(d.channel)) byChannel.set(d.channel, []);
      byChannel.get(d.channel).push(d);
    }
    for (const channel of routed || []) if (!byChannel.has(channel)) byChannel.set(channel, []);
    if (!byChannel.size) ul.append(el('li', 'muted', 'Routed to no channel.'));
    const words = { sent: 'sent', retrying: 'failed, retrying', dead_lettered: 'given up (dead letter)' };
    for (const [channel, list] of byChannel) {
      const li = el('li');
      const last = list[list.length - 1];
      li.append(el('b', null, channel), el('span', 'outcome outcome-' + (last ? last.outcome : 'pending'), last ? words[last.outcome] || last.outcome : 'pending'));
      if (last) li.append(el('time', 'muted', ` attempt ${last.attempt}, ${new Date(last.at).toLocaleString()}`));
      for (const d of list.filter((x) => x.reason)) li.append(el('p', 'muted reason', `attempt ${d.attempt}: ${d.reason}`));
      ul.append(li);
    }
  }

  async function showDetail(id) {
    const d = await api('GET', '/v1/alerts/' + encodeURIComponent(id));
    view.selected = id;
    view.version = d.triage.version;
    saveUrl();
    for (const row of $('rows').children) row.classList.toggle('selected', row.dataset.id === id);
    const a = d.alert;
    view.alert = a;
    $('detail').hidden = false;
    $('d-error').textContent = '';
    $('d-name').textContent = a.name;
    $('d-severity').className = severityClass(a.severity);
    $('d-severity').textContent = a.severity || 'none';
    renderLinks(a.links);
    renderTriage(d.triage);
    $('d-silence').hidden = !view.me.may_triage;
    const fields = $('d-fields');
    fields.replaceChildren();
    const host = a.client && a.client.hostname;
    fieldRow(fields, 'Client', host ? `${host} (${a.client_id})` : a.client_id);
    if (a.client && a.client.os) fieldRow(fields, 'OS', a.client.os);
    if (a.client && a.client.labels && a.client.labels.length) fieldRow(fields, 'Labels', a.client.labels.join(', '));
    fieldRow(fields, 'Artifact', a.artifact);
    fieldRow(fields, 'Flow', a.flow_id);
    fieldRow(fields, 'Org', a.org_id);
    fieldRow(fields, 'Source', a.source);
    fieldRow(fields, 'Raised', new Date(a.timestamp).toLocaleString());
    fieldRow(fields, 'Received', new Date(a.received_at).toLocaleString());
    if (a.dedup && a.dedup.suppressed_before) fieldRow(fields, 'Suppressed before', `${a.dedup.suppressed_before} similar in the previous window`);
    fieldRow(fields, 'Routed to', (a.routed_to || []).join(', ') || 'no channel');
    if (a.silenced_by && a.silenced_by.length) fieldRow(fields, 'Silenced by', a.silenced_by.join(', '));
    fieldRow(fields, 'Alert id', a.id);
    renderRepeat(d.repeat_of);
    const ctx = $('d-context');
    ctx.replaceChildren();
    for (const entry of a.context || []) fieldRow(ctx, entry.key, entry.value);
    if (!ctx.children.length) ctx.append(el('tr', 'muted', 'No context.'));
    renderAudit(d.audit);
    renderDeliveries(d.deliveries || [], a.routed_to);
  }

  async function triage(body) {
    $('d-error').textContent = '';
    try {
      await api('POST', `/v1/alerts/${encodeURIComponent(view.selected)}/triage`, { ...body, expected_version: view.version });
    } catch (e) {
      if (e instanceof LoggedOut) throw e;
      $('d-error').textContent = e.message;
    }
    await showDetail(view.selected);
    await loadAlerts(false);
  }

  async function loadUsers() {
    const { users } = await api('GET', '/v1/users');
    const select = $('d-assignee');
    select.replaceChildren(el('option', null, 'Nobody'));
    select.firstChild.value = '';
    for (const u of users) {
      const option = el('option', null, u.name);
      option.value = u.name;
      select.append(option);
    }
  }

  function startAlertRefresh() {
    stopAlertRefresh();
    view.refresh = setInterval(() => {
      if (!view.picked.size) loadAlerts(false).catch(() => {});
    }, ALERTS_REFRESH_MS);
  }

  function stopAlertRefresh() {
    if (view.refresh) clearInterval(view.refresh);
    view.refresh = null;
  }

  async function showAlerts(me) {
    view.me = me;
    $('whoami').textContent = me.name + (me.may_triage ? '' : ' (reader)');
    const open = restoreUrl();
    await loadUsers();
    $('s-new').hidden = !me.may_triage;
    if (view.current === 'silences') {
      await showView('silences');
    } else {
      await loadAlerts(false);
      if (open) await showDetail(open).catch((e) => status(e.message));
    }
    startAlertRefresh();
  }

  // --- Silences -----------------------------------------------------------

  async function showView(name) {
    const silences = name === 'silences';
    view.current = silences ? 'silences' : 'alerts';
    $('alerts-view').hidden = silences;
    $('silences-view').hidden = !silences;
    $('state-counts').hidden = silences;
    $('v-alerts').setAttribute('aria-pressed', String(!silences));
    $('v-silences').setAttribute('aria-pressed', String(silences));
    if (sview.timer) clearInterval(sview.timer);
    sview.timer = null;
    if (silences) {
      saveUrl();
      sview.timer = setInterval(() => loadSilences().catch(() => {}), SILENCES_REFRESH_MS);
      await loadSilences();
    } else {
      await loadAlerts(false);
    }
  }

  function matcherText(m) {
    return `${m.field} ${m.op} "${m.value}"`;
  }

  function silenceRow(s) {
    const tr = el('tr', 'silence-row state-' + s.state);
    tr.dataset.id = s.id;
    const state = el('td');
    state.append(el('span', 'silence-state ' + s.state, s.state));
    const matchers = el('td');
    for (const m of s.matchers) matchers.append(el('span', 'matcher-chip', matcherText(m)));
    const by = el('td', null, s.created_by);
    if (s.updated_by && s.state === 'expired') by.append(el('span', 'verdict', `ended by ${s.updated_by}`));
    const hidden = el('td');
    const link = el('button', 'hidden-link', `${s.hidden} alert${s.hidden === 1 ? '' : 's'}`);
    link.type = 'button';
    link.title = 'Show the alerts it hid';
    link.addEventListener('click', guard(() => {
      $('filters').reset();
      view.silence = s.id;
      view.group = null;
      return showView('alerts');
    }));
    hidden.append(link);
    const inForce = el('td', 'force', s.state === 'expired' ? '—'
      : (s.applied_by.of ? `${s.applied_by.replicas} of ${s.applied_by.of} enrich` : 'no enrich running'));
    const actions = el('td', 'row-actions');
    if (view.me.may_triage && s.state !== 'expired') {
      const expire = el('button', null, 'Expire now');
      expire.type = 'button';
      expire.addEventListener('click', guard(async () => {
        await api('POST', `/v1/silences/${encodeURIComponent(s.id)}/expire`, {});
        status(`Silence ended: ${s.matchers.map(matcherText).join(', ')}`);
        await loadSilences();
      }));
      actions.append(expire);
    }
    tr.append(state, matchers, el('td', 'why', s.comment), by,
      el('td', 'time', shortTime(s.starts_at)), el('td', 'time', shortTime(s.ends_at)), hidden, inForce, actions);
    return tr;
  }

  async function loadSilences() {
    const data = await api('GET', '/v1/silences');
    const counts = { active: 0, pending: 0, expired: 0, all: data.silences.length };
    for (const s of data.silences) counts[s.state] += 1;
    const nav = $('silence-states');
    nav.replaceChildren();
    for (const key of ['active', 'pending', 'expired', 'all']) {
      const chip = el('button', 'chip');
      chip.type = 'button';
      chip.setAttribute('aria-pressed', String(key === sview.state));
      chip.append(el('span', null, key), el('b', null, counts[key]));
      chip.addEventListener('click', () => { sview.state = key; loadSilences().catch((e) => status(e.message)); });
      nav.append(chip);
    }
    const live = data.replicas.filter((r) => r.live);
    $('s-replicas').textContent = live.length
      ? `In force from the moment enrich has seen it: ${live.length} enrich replica${live.length === 1 ? '' : 's'} reporting, last at ${new Date(Math.max(...live.map((r) => Date.parse(r.at)))).toLocaleTimeString()}.`
      : 'No enrich replica has reported in the last 90 seconds: a new silence applies once one runs.';
    const rows = $('s-rows');
    rows.replaceChildren();
    for (const s of data.silences) {
      if (sview.state === 'all' || s.state === sview.state) rows.append(silenceRow(s));
    }
    $('no-silences').hidden = rows.children.length > 0;
  }

  function matcherRow(m) {
    const row = el('div', 'matcher');
    const field = el('input', 'm-field');
    field.setAttribute('list', 's-fields');
    field.setAttribute('aria-label', 'Field');
    field.placeholder = 'field or context.Key';
    field.value = m.field || '';
    const op = el('select', 'm-op');
    op.setAttribute('aria-label', 'Operator');
    for (const o of ['=', '!=', '=~', '!~']) {
      const option = el('option', null, o);
      option.value = o;
      op.append(option);
    }
    op.value = m.op || '=';
    const value = el('input', 'm-value');
    value.setAttribute('aria-label', 'Value');
    value.placeholder = 'value, or a regex for =~ and !~';
    value.value = m.value || '';
    const remove = el('button', null, '×');
    remove.type = 'button';
    remove.setAttribute('aria-label', 'Remove this matcher');
    remove.addEventListener('click', () => { row.remove(); schedulePreview(); });
    for (const input of [field, op, value]) input.addEventListener('input', schedulePreview);
    row.append(field, op, value, remove);
    return row;
  }

  function editorMatchers() {
    return [...$('s-matchers').children].map((row) => ({
      field: row.querySelector('.m-field').value.trim(),
      op: row.querySelector('.m-op').value,
      value: row.querySelector('.m-value').value,
    })).filter((m) => m.field);
  }

  function openEditor(matchers, title) {
    $('s-title').textContent = title || 'New silence';
    $('s-editor').hidden = false;
    const list = matchers.length ? matchers : [{ field: 'name', op: '=', value: '' }];
    $('s-matchers').replaceChildren(...list.map(matcherRow));
    $('s-comment').value = '';
    $('s-error').textContent = '';
    schedulePreview();
    $('s-comment').focus();
  }

  function schedulePreview() {
    if (sview.previewing) clearTimeout(sview.previewing);
    sview.previewing = setTimeout(() => preview().catch(() => {}), PREVIEW_DELAY_MS);
  }

  // How many alerts of the last day the matchers would have hidden; an
  // answer to an older edit is dropped.
  async function preview() {
    const matchers = editorMatchers();
    const box = $('s-preview');
    const list = $('s-preview-list');
    const seq = ++sview.seq;
    if (!matchers.length) {
      box.className = 'preview empty';
      box.textContent = 'Add a matcher to see what it would hide.';
      list.replaceChildren();
      return;
    }
    let p;
    try {
      p = await api('POST', '/v1/silences/preview', { matchers });
    } catch (e) {
      if (e instanceof LoggedOut) throw e;
      if (seq !== sview.seq) return;
      box.className = 'preview empty';
      box.textContent = e.message;
      list.replaceChildren();
      return;
    }
    if (seq !== sview.seq) return;
    box.className = 'preview' + (p.matched ? '' : ' empty');
    box.textContent = `Would have hidden ${p.matched} of the ${p.examined} alerts of the last 24 hours`
      + (p.complete ? '.' : ' (of the newest 100,000).');
    list.replaceChildren(...p.alerts.slice(0, 8).map((a) => {
      const li = el('li');
      li.append(el('span', 'time', shortTime(a.received_at)), el('span', null, a.name));
      const host = a.hostname || a.client_id;
      if (host) li.append(el('span', 'tag', host));
      return li;
    }));
  }

  async function saveSilence(event) {
    event.preventDefault();
    $('s-error').textContent = '';
    const seconds = Number($('s-duration').value);
    const body = {
      matchers: editorMatchers(),
      ends_at: new Date(Date.now() + seconds * 1000).toISOString(),
      comment: $('s-comment').value,
    };
    try {
      const s = await api('POST', '/v1/silences', body);
      $('s-editor').hidden = true;
      status(`Silence created until ${shortTime(s.ends_at)}: ${s.matchers.map(matcherText).join(', ')}`);
      sview.state = 'active';
      await loadSilences();
    } catch (e) {
      if (e instanceof LoggedOut) throw e;
      $('s-error').textContent = e.message;
    }
  }

  // "Silence alerts like this": the alert's name, its host (or client) and
  // artifact, to loosen or remove.
  async function silenceLike() {
    const a = view.alert;
    if (!a) return;
    const matchers = [{ field: 'name', op: '=', value: a.name }];
    const host = a.client && a.client.hostname;
    if (host) matchers.push({ field: 'hostname', op: '=', value: host });
    else if (a.client_id) matchers.push({ field: 'client_id', op: '=', value: a.client_id });
    if (a.artifact) matchers.push({ field: 'artifact', op: '=', value: a.artifact });
    await showView('silences');
    openEditor(matchers, 'Silence alerts like this');
  }

  function closeDetail() {
    $('detail').hidden = true;
    view.selected = null;
    for (const row of $('rows').children) row.classList.remove('selected');
    saveUrl();
  }

  // j / k: next / previous alert; a: acknowledge; r: resolve with the
  // chosen verdict; /: search; Escape: close the alert. Not while typing.
  function shortcut(event) {
    const typing = event.target.closest && event.target.closest('input, textarea, select');
    if (typing || event.ctrlKey || event.metaKey || event.altKey || !view.me || $('app').hidden) return;
    if (view.current === 'silences') return;
    const rows = [...$('rows').children];
    const at = rows.findIndex((r) => r.dataset.id === view.selected);
    const go = (i) => {
      const row = rows[Math.max(0, Math.min(rows.length - 1, i))];
      if (row) {
        row.scrollIntoView({ block: 'nearest' });
        showDetail(row.dataset.id).catch((e) => status(e.message));
      }
    };
    const act = (body) => {
      if (view.selected && view.me.may_triage) triage(body).catch((e) => status(e.message));
    };
    switch (event.key) {
      case 'j': go(at + 1); break;
      case 'k': go(at < 0 ? 0 : at - 1); break;
      case 'a': if ($('d-ack').hidden) return; act({ action: 'ack' }); break;
      case 'r': if ($('d-resolve').hidden) return; act({ action: 'resolve', verdict: $('d-verdict').value }); break;
      case '/': $('f-q').focus(); break;
      case 'Escape': closeDetail(); break;
      default: return;
    }
    event.preventDefault();
  }

  function showLogin() {
    stopUpdates();
    stopAlertRefresh();
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
    await showAlerts(await api('GET', '/v1/me'));
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
    $('filters').addEventListener('submit', (e) => { e.preventDefault(); guard(() => loadAlerts(false))(); });
    $('f-reset').addEventListener('click', guard(() => { $('filters').reset(); view.silence = null; view.group = null; return loadAlerts(false); }));
    $('more-alerts').addEventListener('click', guard(() => loadAlerts(true)));
    $('pick-all').addEventListener('change', () => {
      for (const box of $('rows').querySelectorAll('input[type=checkbox]')) {
        box.checked = $('pick-all').checked;
        const id = box.closest('tr').dataset.id;
        if (box.checked) view.picked.add(id); else view.picked.delete(id);
      }
      showBulk();
    });
    $('bulk-ack').addEventListener('click', guard(() => bulk({ action: 'ack' })));
    $('bulk-mine').addEventListener('click', guard(() => bulk({ action: 'assign', assignee: view.me.name })));
    $('bulk-resolve').addEventListener('click', guard(() => bulk({ action: 'resolve', verdict: $('bulk-verdict').value })));
    $('d-close').addEventListener('click', closeDetail);
    $('v-alerts').addEventListener('click', guard(() => showView('alerts')));
    $('v-silences').addEventListener('click', guard(() => showView('silences')));
    $('f-silence').addEventListener('click', guard(() => { view.silence = null; return loadAlerts(false); }));
    $('d-silence').addEventListener('click', guard(silenceLike));
    $('s-new').addEventListener('click', () => openEditor([], 'New silence'));
    $('s-close').addEventListener('click', () => { $('s-editor').hidden = true; });
    $('s-add').addEventListener('click', () => { $('s-matchers').append(matcherRow({})); });
    $('s-form').addEventListener('submit', (e) => guard(() => saveSilence(e))());
    document.addEventListener('keydown', shortcut);
    $('d-ack').addEventListener('click', guard(() => triage({ action: 'ack' })));
    $('d-assign').addEventListener('click', guard(() => triage({ action: 'assign', assignee: $('d-assignee').value })));
    $('d-resolve').addEventListener('click', guard(() => triage({ action: 'resolve', verdict: $('d-verdict').value })));
    $('d-reopen').addEventListener('click', guard(() => triage({ action: 'reopen' })));
    $('d-note-form').addEventListener('submit', (e) => {
      e.preventDefault();
      guard(async () => { await triage({ action: 'note', note: $('d-note').value }); $('d-note').value = ''; })();
    });
    api('GET', '/v1/me')
      .then((me) => showApp(me.name))
      .catch((e) => {
        if (!(e instanceof LoggedOut)) showLogin();
      });
  });
})();
