/* The dashboard: one page over the analytics API of the collector that serves it (ANALYTICS.md
   section 3). The filters live in the URL's query string, under the API's own parameter names, so
   a link shows the same numbers to whoever opens it; the admin token lives in this tab only. Every
   panel shows what one API reply says, with no arithmetic of its own beyond formatting. */
'use strict';

const FILTERS = ['projectId', 'campaignId', 'broadcastId', 'from', 'to', 'country', 'sponsorId'];
const NAMES = {projectId: 'project', campaignId: 'campaign', broadcastId: 'broadcast',
               from: 'from', to: 'to', country: 'country', sponsorId: 'sponsor'};
const TOKEN_KEY = 'collector.adminToken';
const DEFAULT_HOURS = 6;          // the range when the URL gives no `from`
const REFRESH_MS = 30000;         // with no `to` the range ends now: read it again this often
const STEPS = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
               86400, 604800];    // bucket sizes (s) a chart may use, the finest that fits wins
const HOUR = 3600000, DAY = 24 * HOUR;

const $ = (sel, root = document) => root.querySelector(sel);

// ---------------------------------------------------------------------------- formatting

const fmtInt = new Intl.NumberFormat(undefined, {maximumFractionDigits: 0});
const fmtDec = new Intl.NumberFormat(undefined, {maximumFractionDigits: 2});
const fmtPct = new Intl.NumberFormat(undefined, {style: 'percent', maximumFractionDigits: 1});
const fmtCompact = new Intl.NumberFormat(undefined, {notation: 'compact'});
const fmtTime = new Intl.DateTimeFormat(undefined, {timeStyle: 'short'});
const fmtDateTime = new Intl.DateTimeFormat(undefined, {dateStyle: 'medium', timeStyle: 'short'});
const fmtClock = new Intl.DateTimeFormat(undefined, {timeStyle: 'medium'});
const moneyFormats = new Map();

const int = n => (n == null ? '–' : fmtInt.format(n));
const dec = n => (n == null ? '–' : fmtDec.format(n));
const pct = n => (n == null ? '–' : fmtPct.format(n));

function money(amount, currency) {
  if (amount == null) return '–';
  if (!moneyFormats.has(currency)) {
    let f = null;
    try {
      f = new Intl.NumberFormat(undefined, {style: 'currency', currency});
    } catch (e) { /* not a code Intl knows: the number and the code */ }
    moneyFormats.set(currency, f);
  }
  const f = moneyFormats.get(currency);
  return f ? f.format(amount) : `${fmtDec.format(amount)} ${currency}`;
}

function when(ms, span) {
  return (span > DAY ? fmtDateTime : fmtTime).format(new Date(ms));
}

// ---------------------------------------------------------------------------- elements

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === 'class') el.className = v;
    else if (k === 'style') el.style.cssText = v;
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c != null) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function table(columns, rows, key, cls = null) {
  // columns: [[label, field, format, numeric]]; each cell carries its field for readers and tests
  return h('div', {class: 'scroll'}, h('table', {class: cls},
    h('thead', {}, h('tr', {}, columns.map(([label, , , num]) => h('th', {class: num ? 'num' : null}, label)))),
    h('tbody', {}, rows.map(r => h('tr', {'data-key': key(r)},
      columns.map(([label, field, format, num]) =>
        h('td', {'data-col': field, 'data-label': label, class: num ? 'num' : null}, format(r)))))),
  ));
}

function bar(fraction, cls = '') {
  const width = Math.max(0, Math.min(1, fraction || 0)) * 100;
  return h('div', {class: 'track'}, h('div', {class: 'fill ' + cls, style: `width:${width}%`}));
}

// ---------------------------------------------------------------------------- panels

class Panel {
  constructor(id) {
    this.section = document.getElementById(id);
    this.body = $('.body', this.section);
  }
  loading(query) {
    this.section.dataset.query = query || '';
    this.section.classList.add('busy');
    if (!this.body.dataset.filled) this.body.replaceChildren(h('p', {class: 'note'}, 'Loading…'));
  }
  show(...nodes) {
    this.section.classList.remove('busy');
    this.section.removeAttribute('data-error');
    this.body.dataset.filled = '1';
    this.body.replaceChildren(...nodes.filter(n => n != null));
  }
  empty(text) {
    this.show(h('p', {class: 'empty'}, text));
  }
  error(text) {
    this.section.classList.remove('busy');
    this.section.dataset.error = '1';
    delete this.body.dataset.filled;
    this.body.replaceChildren(h('p', {class: 'error'}, text));
  }
}

const panels = {};
for (const id of ['viewers', 'engagement', 'revenue', 'funnel', 'polls', 'sponsors', 'activity']) {
  panels[id] = new Panel(id);
}
const charts = new Map();  // panel id -> uPlot

function ignoredNote(reply) {
  const names = (reply.ignored_filters || []).map(f => NAMES[f] || f);
  if (!names.length) return null;
  return h('p', {class: 'note'}, `The ${names.join(' and ')} filter${names.length > 1 ? 's do' : ' does'} not apply here.`);
}

function chart(id, mount, data, series, axes) {
  const old = charts.get(id);
  if (old) old.destroy();
  const width = Math.max(200, mount.clientWidth || 300);
  const u = new uPlot({
    width, height: 240, ms: 1,
    scales: {x: {time: true}},
    series: [{value: (u, v) => (v == null ? '–' : fmtDateTime.format(new Date(v)))}, ...series],
    axes: [{stroke: '#5b6472', space: 80, grid: {stroke: '#eceff3'}}, ...axes],
    legend: {live: true},
    cursor: {drag: {x: false, y: false}},
  }, data, mount);
  charts.set(id, u);
}

const axis = (scale, side) => ({
  scale, side, stroke: '#5b6472', size: 52,
  grid: {show: side === 3, stroke: '#eceff3'},
  values: (u, vals) => vals.map(v => fmtCompact.format(v)),
});

function seriesTable(rows, columns, span) {
  return h('details', {class: 'data'}, h('summary', {}, 'Show the numbers'),
    table([['Time', 't', r => when(r.t, span)], ...columns], rows, r => String(r.t)));
}

function renderViewers(reply, broadcast, span) {
  const p = panels.viewers;
  const series = reply.series || [];
  const summary = h('p', {class: 'summary'},
    'Peak ', h('b', {'data-col': 'peak'}, int(reply.peak)),
    reply.peak_at != null ? h('span', {'data-col': 'peak_at'}, ' at ', when(reply.peak_at, span)) : null,
    ' · ', h('b', {'data-col': 'unique_viewers'}, int(reply.unique_viewers)), ' unique viewers',
  );
  const title = h('p', {class: 'sub'}, 'Broadcast ', h('b', {}, broadcast));
  if (!series.some(b => b.viewers > 0) && !reply.unique_viewers) {
    p.show(title, h('p', {class: 'empty'}, 'No viewers of this broadcast in this range'));
    return;
  }
  const mount = h('div', {class: 'chart'});
  p.show(title, summary, mount, seriesTable(series, [['Viewers', 'viewers', r => int(r.viewers), true]], span));
  chart('viewers', mount, [series.map(b => b.t), series.map(b => b.viewers)],
    [{label: 'Viewers', scale: 'n', stroke: '#2563eb', width: 2, fill: 'rgba(37,99,235,0.10)', value: (u, v) => int(v)}],
    [axis('n', 3)]);
}

function renderActivity(reply, span) {
  const series = reply.series || [];
  const total = series.reduce((a, b) => a + b.events, 0);
  if (!total) {
    panels.activity.empty(state.filters.broadcastId ? 'No events for this broadcast in this range'
                                                    : 'No events in this range');
    return;
  }
  const busiest = series.reduce((a, b) => (b.events > a.events ? b : a));
  const mount = h('div', {class: 'chart'});
  panels.activity.show(
    h('p', {class: 'summary'}, h('b', {'data-col': 'events'}, int(total)), ' events',
      ' · busiest ', h('span', {'data-col': 'busiest'}, when(busiest.t, span)),
      ' (', int(busiest.events), ' events, ', int(busiest.users), ' users)'),
    ignoredNote(reply), mount,
    seriesTable(series, [['Events', 'events', r => int(r.events), true], ['Users', 'users', r => int(r.users), true]], span));
  chart('activity', mount, [series.map(b => b.t), series.map(b => b.events), series.map(b => b.users)], [
    {label: 'Events', scale: 'n', stroke: '#2563eb', fill: 'rgba(37,99,235,0.35)', width: 0,
     paths: uPlot.paths.bars({size: [0.8, 40]}), points: {show: false}, value: (u, v) => int(v)},
    {label: 'Users', scale: 'u', stroke: '#d97706', width: 2, value: (u, v) => int(v)},
  ], [axis('n', 3), axis('u', 1)]);
}

function renderEngagement(reply) {
  const rows = reply.broadcasts || [];
  if (!rows.length) {
    panels.engagement.empty(state.filters.broadcastId ? 'No events for this broadcast in this range'
                                                      : 'No broadcasts with events in this range');
    return;
  }
  panels.engagement.show(ignoredNote(reply), h('ul', {class: 'bars'}, rows.map(r =>
    h('li', {'data-key': r.broadcast_id},
      h('div', {class: 'label'}, h('span', {class: 'name'}, r.broadcast_id),
        h('span', {'data-col': 'rate', class: 'value'}, pct(r.rate))),
      bar(r.rate),
      h('div', {class: 'detail'}, h('span', {'data-col': 'engaged'}, int(r.engaged)), ' engaged of ',
        h('span', {'data-col': 'audience'}, int(r.audience)), ' in the audience')))));
}

function renderPolls(reply) {
  const polls = reply.polls || [];
  if (!polls.length) {
    panels.polls.empty(state.filters.broadcastId ? 'No poll votes for this broadcast in this range'
                                                 : 'No poll votes in this range');
    return;
  }
  panels.polls.show(ignoredNote(reply), h('div', {class: 'polls'}, polls.map(poll => {
    const most = Math.max(1, ...poll.options.map(o => o.votes));
    return h('article', {class: 'poll', 'data-key': `${poll.broadcast_id ?? ''}|${poll.poll_id}`},
      h('h3', {'data-col': 'question'}, poll.question ?? `Poll ${poll.poll_id}`),
      h('p', {class: 'sub'}, h('span', {'data-col': 'voters'}, int(poll.voters)), ' voters · ',
        poll.poll_id, poll.broadcast_id ? ` · ${poll.broadcast_id}` : ''),
      h('ul', {class: 'bars'}, poll.options.map(o =>
        h('li', {'data-key': String(o.index)},
          h('div', {class: 'label'}, h('span', {class: 'name', 'data-col': 'option'}, o.option ?? `Option ${o.index ?? '?'}`),
            h('span', {class: 'value'}, h('span', {'data-col': 'votes'}, int(o.votes)),
              h('span', {class: 'muted'}, ` · ${pct(poll.voters ? o.votes / poll.voters : null)}`))),
          bar(o.votes / most, 'alt')))));
  })));
}

function renderSponsors(reply) {
  const rows = reply.sponsors || [];
  if (!rows.length) {
    panels.sponsors.empty(state.filters.broadcastId ? 'No sponsor moments for this broadcast in this range'
                                                    : 'No sponsor moments in this range');
    return;
  }
  const revenue = r => {  // one line per currency
    const parts = Object.entries(r.revenue || {}).sort()
      .map(([c, v]) => h('span', {class: 'amount', 'data-currency': c}, money(v, c)));
    return parts.length ? h('span', {class: 'amounts'}, parts) : '–';
  };
  panels.sponsors.show(ignoredNote(reply), table([
    ['Broadcast', 'broadcast_id', r => r.broadcast_id ?? '(none)'],
    ['Sponsor', 'sponsor_id', r => r.sponsor_id],
    ['Impressions', 'impressions', r => int(r.impressions), true],
    ['Reach', 'reach', r => int(r.reach), true],
    ['Taps', 'taps', r => int(r.taps), true],
    ['CTR', 'ctr', r => pct(r.ctr), true],
    ['Orders', 'orders', r => int(r.orders), true],
    ['Revenue', 'revenue', revenue, true],
  ], rows, r => `${r.broadcast_id ?? ''}|${r.sponsor_id}`, 'cards'));
}

function renderRevenue(reply) {
  const rows = reply.currencies || [];
  if (!rows.length) {
    panels.revenue.empty(state.filters.broadcastId ? 'No orders for this broadcast in this range'
                                                   : 'No orders in this range');
    return;
  }
  panels.revenue.show(ignoredNote(reply), h('ul', {class: 'currencies'}, rows.map(r =>
    h('li', {'data-key': r.currency},
      h('div', {class: 'label'}, h('span', {class: 'name'}, r.currency),
        h('span', {class: 'gross', 'data-col': 'gross'}, money(r.gross, r.currency))),
      h('div', {class: 'detail'},
        h('span', {'data-col': 'orders'}, int(r.orders)), ' orders · AOV ',
        h('span', {'data-col': 'aov'}, money(r.aov, r.currency)), ' · ',
        h('span', {'data-col': 'items_per_order'}, dec(r.items_per_order)), ' items per order')))));
}

function renderFunnel(reply) {
  const steps = reply.steps || [];
  if (!steps.length || !steps[0].users) {
    panels.funnel.empty(state.filters.broadcastId ? 'No shoppers for this broadcast in this range'
                                                  : 'No shoppers in this range');
    return;
  }
  panels.funnel.show(ignoredNote(reply), h('ol', {class: 'bars funnel'}, steps.map((s, i) =>
    h('li', {'data-key': s.action},
      i ? h('div', {class: 'step'}, '↓ ', pct(steps[i - 1].users ? s.users / steps[i - 1].users : null),
        ' of the step before') : null,
      h('div', {class: 'label'}, h('span', {class: 'name'}, s.action),
        h('span', {class: 'value'}, h('span', {'data-col': 'users'}, int(s.users)),
          h('span', {class: 'muted'}, ' · ', h('span', {'data-col': 'conversion'}, pct(s.conversion))))),
      bar(s.conversion)))));
}

// ---------------------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, code, message, parameter) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.parameter = parameter;
  }
}

function headers() {
  return state.token ? {Authorization: `Bearer ${state.token}`} : {};
}

async function api(path, params, signal) {
  const url = `${path}?${new URLSearchParams(params)}`;
  let res;
  try {
    res = await fetch(url, {headers: headers(), signal, cache: 'no-store'});
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'unreachable', 'The collector cannot be reached. Is it running?');
  }
  let body = null;
  try {
    body = await res.json();
  } catch (e) { /* not JSON: said below */ }
  if (!res.ok || body == null) {
    throw new ApiError(res.status, body && body.error,
                       (body && body.message) || `The collector answered HTTP ${res.status}.`,
                       body && body.parameter);
  }
  return body;
}

// ---------------------------------------------------------------------------- state and URL

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  filters: {},
  run: null,         // AbortController of the loads in progress
  live: null,        // AbortController of the live stream
  liveKey: '',
  timer: 0,
  loads: 0,          // loads finished, shown as <body data-loads>
};

function readUrl() {
  const q = new URLSearchParams(location.search);
  state.filters = {};
  for (const name of FILTERS) {
    const v = (q.get(name) || '').trim();
    if (v) state.filters[name] = v;
  }
}

function writeUrl() {
  const q = new URLSearchParams();
  for (const name of FILTERS) if (state.filters[name]) q.set(name, state.filters[name]);
  const search = q.toString();
  history.replaceState(null, '', search ? `?${search}` : location.pathname);
}

function parseTime(text, isEnd) {
  // as the API reads it (ANALYTICS.md section 2): ms, a UTC date (as `to`: its whole day), ISO
  if (/^-?\d+$/.test(text)) return Number(text);
  if (/^\d{4}-\d{2}-\d{2}$/.test(text)) return Date.parse(`${text}T00:00:00Z`) + (isEnd ? DAY : 0);
  const ms = Date.parse(/([zZ]|[+-]\d\d:?\d\d)$/.test(text) ? text : `${text}Z`);
  return Number.isNaN(ms) ? null : ms;
}

const localInput = ms => new Date(ms - new Date(ms).getTimezoneOffset() * 60000).toISOString().slice(0, 19);
const isoUtc = ms => new Date(ms).toISOString().replace('.000Z', 'Z');

function fillForm(range) {
  const form = $('#filters');
  for (const name of FILTERS) {
    const input = form.elements[name];
    input.removeAttribute('aria-invalid');
    if (name === 'from' || name === 'to') {
      // a `to` is exclusive: show the last second it covers (a date `to`: 23:59:59 that day)
      const ms = name === 'from' ? range.start : (state.filters.to ? range.end - 1000 : null);
      input.value = ms == null ? '' : localInput(ms);
      input.dataset.shown = input.value;
    } else {
      input.value = state.filters[name] || '';
    }
  }
}

function readForm() {
  const form = $('#filters');
  const f = {};
  for (const name of FILTERS) {
    const input = form.elements[name];
    let v = input.value.trim();
    if (name === 'from' || name === 'to') {
      // unchanged: keep what the URL said (a date stays a date)
      if (v === input.dataset.shown) v = state.filters[name] || '';
      else if (v) v = isoUtc(new Date(v).getTime());
    }
    if (name === 'country') v = v.toUpperCase();
    if (v) f[name] = v;
  }
  return f;
}

function range() {
  const now = Date.now();
  const f = state.filters;
  const end = f.to ? parseTime(f.to, true) : now;
  const start = f.from ? parseTime(f.from, false)
                       : Math.floor((now - DEFAULT_HOURS * HOUR) / 60000) * 60000;
  return {start, end, live: !f.to};
}

function step(span, most) {
  for (const s of STEPS) if (span / (s * 1000) <= most) return s;
  return STEPS[STEPS.length - 1];
}

// ---------------------------------------------------------------------------- messages

function say(text, kind = 'error') {
  const el = $('#status');
  el.hidden = !text;
  el.textContent = text || '';
  el.className = `status ${kind}`;
}

function askToken(message) {
  if (state.run) state.run.abort();
  clearTimeout(state.timer);
  stopLive();
  $('#token-message').textContent = message;
  $('#token-form').hidden = false;
  $('#filters').hidden = true;
  $('#panels').hidden = true;
  $('#change-token').hidden = true;
  say('');
  $('#token').focus();
}

function refused() {
  // the token stays in memory only to say it was refused; a reload asks afresh
  sessionStorage.removeItem(TOKEN_KEY);
  askToken(state.token
    ? 'This token is not accepted by this collector (unknown or expired). Enter another admin token.'
    : 'This collector needs an admin token to show its analytics.');
}

function failed(panel, err) {
  if (err.name === 'AbortError') return;
  if (err.status === 401) {
    refused();
    return;
  }
  let text = err.message;
  if (err.status === 403) {
    text = `This token may not read project ${state.filters.projectId || '(the default)'}. ` +
           'Choose one of its projects.';
  }
  if (err.parameter && $('#filters').elements[err.parameter]) {
    $('#filters').elements[err.parameter].setAttribute('aria-invalid', 'true');
    text = `${NAMES[err.parameter]}: ${text}`;
  }
  say(text);
  panel.error(text);
}

// ---------------------------------------------------------------------------- loading

function load() {
  if (state.run) state.run.abort();
  clearTimeout(state.timer);
  const run = state.run = new AbortController();
  const r = range();
  fillForm(r);
  say('');
  const base = {};
  for (const name of FILTERS) if (state.filters[name]) base[name] = state.filters[name];
  if (!base.from && r.start != null) base.from = isoUtc(r.start);
  const span = r.start != null && r.end != null ? r.end - r.start : DAY;

  const get = (id, name, params, render) => {
    const path = `/v1/analytics/${name}`;
    panels[id].loading(`${path}?${new URLSearchParams(params)}`);
    return api(path, params, run.signal).then(reply => { render(reply); return reply; },
                                             err => { failed(panels[id], err); return null; });
  };

  const engagement = get('engagement', 'engagement', base, renderEngagement);
  const loads = [
    engagement,
    get('polls', 'polls', base, renderPolls),
    get('sponsors', 'sponsors', base, reply => {
      renderSponsors(reply);
      remember('sponsor-ids', (reply.sponsors || []).map(s => s.sponsor_id));
    }),
    get('revenue', 'revenue', base, renderRevenue),
    get('funnel', 'funnel', base, renderFunnel),
    get('activity', 'activity', {...base, step: step(span, 120)}, reply => renderActivity(reply, span)),
  ];

  const viewers = broadcast => {
    setNow(broadcast);
    if (!broadcast) {
      panels.viewers.empty('No broadcast has events in this range: choose one above to see its viewers');
      return null;
    }
    return get('viewers', 'viewers', {...base, broadcastId: broadcast, step: step(span, 240)},
               reply => renderViewers(reply, broadcast, span));
  };
  if (state.filters.broadcastId) {
    loads.push(viewers(state.filters.broadcastId));
    engagement.then(reply => {
      if (reply && !(reply.broadcasts || []).length) say('No events for this broadcast in this range', 'info');
    });
  } else {
    panels.viewers.loading('');
    loads.push(engagement.then(reply => {
      if (!reply) {
        panels.viewers.error('Not loaded (see the message above).');
        return null;
      }
      const list = reply.broadcasts || [];
      remember('broadcast-ids', list.map(b => b.broadcast_id));
      // no broadcast chosen: the one with the largest audience
      const top = list.reduce((a, b) => (!a || b.audience > a.audience ? b : a), null);
      return viewers(top && top.broadcast_id);
    }));
  }
  // a counter of finished loads, for whoever waits for the page to settle (tests, scripts)
  Promise.allSettled(loads).then(() => {
    if (run === state.run && !run.signal.aborted) document.body.dataset.loads = ++state.loads;
  });
  if (r.live) state.timer = setTimeout(load, REFRESH_MS);
}

function remember(listId, values) {
  const list = document.getElementById(listId);
  const have = new Set([...list.options].map(o => o.value));
  for (const v of values) if (v != null && !have.has(v)) { have.add(v); list.append(h('option', {value: v})); }
}

// ---------------------------------------------------------------------------- live viewers

function setNow(broadcast) {
  const key = `${state.filters.projectId || ''}|${broadcast || ''}`;
  const label = $('#now-broadcast');
  if (!broadcast) {
    stopLive();
    $('#now-count').textContent = '–';
    label.textContent = 'No broadcast chosen';
    return;
  }
  label.replaceChildren('Broadcast ', h('b', {}, broadcast),
    state.filters.broadcastId ? '' : ' (the largest audience in this range)');
  if (key === state.liveKey && state.live) return;
  stopLive();
  state.liveKey = key;
  const params = {broadcastId: broadcast};
  if (state.filters.projectId) params.projectId = state.filters.projectId;
  state.live = new AbortController();
  $('#now-count').textContent = '–';
  live(params, state.live.signal);
}

function stopLive() {
  if (state.live) state.live.abort();
  state.live = null;
  state.liveKey = '';
  liveState('not connected', '');
}

function liveState(text, cls) {
  const el = $('#live-state');
  el.textContent = text;
  el.className = `live-state ${cls}`;
}

const sleep = (ms, signal) => new Promise(resolve => {
  const t = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, {once: true});
});

async function live(params, signal) {
  // EventSource cannot send a token, so the stream is read with fetch and parsed here
  while (!signal.aborted) {
    try {
      const res = await fetch(`/v1/analytics/viewers/live?${new URLSearchParams(params)}`,
                              {headers: headers(), signal, cache: 'no-store'});
      if (res.status === 401) {
        refused();
        return;
      }
      if (!res.ok) {
        let message = `HTTP ${res.status}`;
        try { message = (await res.json()).message || message; } catch (e) { /* as is */ }
        liveState(`live updates unavailable: ${message}`, 'off');
        if (res.status < 500) return;
      } else {
        liveState('live', 'on');
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, '\n');
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            onMessage(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    if (signal.aborted) return;
    liveState('reconnecting…', 'off');
    await sleep(3000, signal);
  }
}

function onMessage(block) {
  const data = block.split('\n').filter(l => l.startsWith('data:')).map(l => l.slice(5).trim()).join('\n');
  if (!data) return;
  let m;
  try { m = JSON.parse(data); } catch (e) { return; }
  if (typeof m.viewers !== 'number') return;
  $('#now-count').textContent = int(m.viewers);
  liveState(`live · ${fmtClock.format(new Date(m.t || Date.now()))}`, 'on');
}

// ---------------------------------------------------------------------------- start

function start() {
  $('#token-form').hidden = true;
  $('#filters').hidden = false;
  $('#panels').hidden = false;
  $('#change-token').hidden = false;
  load();
}

$('#token-form').addEventListener('submit', e => {
  e.preventDefault();
  state.token = $('#token').value.trim();
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $('#token').value = '';
  start();
});

$('#change-token').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = '';
  askToken('Enter an admin token.');
});

$('#filters').addEventListener('submit', e => {
  e.preventDefault();
  state.filters = readForm();
  writeUrl();
  load();
});

$('#clear').addEventListener('click', () => {
  state.filters = state.filters.projectId ? {projectId: state.filters.projectId} : {};
  writeUrl();
  load();
});

new ResizeObserver(() => {
  for (const u of charts.values()) {
    const width = u.root.parentElement.clientWidth;
    if (width && Math.abs(width - u.width) > 2) u.setSize({width, height: u.height});
  }
}).observe($('#panels'));

readUrl();
start();
