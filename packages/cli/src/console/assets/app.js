// The console page: logs in with the token from the URL fragment, then polls the overview, draws the
// chart and browses, redrives and purges dead letters. Everything shown is set as text, never as HTML.

const REFRESH_MS = 3000;
const COLORS = ['#2f6fb3', '#c2572b', '#2e8b57', '#8e44ad', '#b8860b', '#d62f6f', '#4a6b7c', '#6b8e23'];

const $ = (id) => document.getElementById(id);
const state = { selected: null, deadLetters: [], checked: new Set(), overview: null, timer: null };

/** An element with attributes and children; strings become text nodes, so nothing is parsed as HTML. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

class Denied extends Error {}

async function api(path, body) {
  const init =
    body === undefined
      ? { credentials: 'same-origin' }
      : {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        };
  const res = await fetch(path, init);
  const value = await res.json().catch(() => ({}));
  if (res.status === 401) throw new Denied(value.error ?? 'access token required');
  if (!res.ok) throw new Error(value.error ?? `HTTP ${res.status}`);
  return value;
}

function showError(err) {
  if (err instanceof Denied) {
    $('denied').hidden = false;
    $('overview-section').hidden = true;
    $('dlq-section').hidden = true;
    clearInterval(state.timer);
    return;
  }
  $('error').hidden = false;
  $('error').textContent = err.message;
}

const num = (v) => (v === null || v === undefined ? '–' : String(v));
function age(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}
const time = (ms) => (ms ? new Date(ms).toLocaleString() : '–');
const keyOf = (g) => `${g.topic}/${g.group}`;

async function refreshOverview() {
  try {
    const o = await api('/api/overview');
    state.overview = o;
    $('error').hidden = true;
    $('overview-section').hidden = false;
    $('label').textContent = o.label;
    $('status').textContent = `updated ${new Date(o.atMs).toLocaleTimeString()}`;
    renderGroups(o.groups);
    renderChart(o.history);
  } catch (err) {
    showError(err);
  }
}

function renderGroups(groups) {
  const rows = groups.map((g) => {
    const s = g.stats;
    const k = keyOf(g);
    return el(
      'tr',
      { class: state.selected && keyOf(state.selected) === k ? 'selected' : '', 'data-group': k },
      el('td', {}, g.topic),
      el('td', {}, g.group),
      ...(g.error
        ? [el('td', { class: 'error-text', colspan: '6' }, g.error)]
        : [el('td', { class: 'num' }, num(s.depth))]),
      ...(g.error
        ? []
        : [
            el('td', { class: 'num' }, num(s.inFlight)),
            el('td', { class: 'num' }, num(s.delayed)),
            el('td', { class: 'num dead' }, num(s.deadLettered)),
            el('td', { class: 'num' }, num(s.lag)),
            el('td', { class: 'num' }, age(s.oldestAgeMs)),
          ]),
      el('td', {}, el('button', { type: 'button', onclick: () => selectGroup(g) }, 'Dead letters')),
    );
  });
  $('groups').tBodies[0].replaceChildren(...rows);
}

/** Lines of one figure per group over the kept samples, scaled to the largest value shown. */
function renderChart(history) {
  const metric = $('metric').value;
  const W = 800;
  const H = 220;
  const pad = { l: 48, r: 12, t: 12, b: 24 };
  const series = new Map();
  for (const s of history) {
    for (const g of s.groups) {
      let v = g.stats[metric];
      if (v === null || v === undefined) continue;
      if (metric === 'oldestAgeMs') v = v / 1000;
      const k = keyOf(g);
      if (!series.has(k)) series.set(k, []);
      series.get(k).push([s.atMs, v]);
    }
  }
  const t0 = history.length ? history[0].atMs : 0;
  const t1 = history.length ? history[history.length - 1].atMs : 1;
  let max = 1;
  for (const pts of series.values()) for (const [, v] of pts) max = Math.max(max, v);
  const x = (t) => pad.l + ((t - t0) / Math.max(1, t1 - t0)) * (W - pad.l - pad.r);
  const y = (v) => H - pad.b - (v / max) * (H - pad.t - pad.b);
  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`,
    preserveAspectRatio: 'none',
    role: 'img',
    'aria-label': `${metric} over time`,
  });
  root.append(svg('line', { class: 'axis', x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b }));
  root.append(svg('line', { class: 'axis', x1: pad.l, y1: pad.t, x2: pad.l, y2: H - pad.b }));
  for (const v of [0, max / 2, max]) {
    const label = svg('text', { x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end' });
    label.textContent = Number.isInteger(v) ? String(v) : v.toFixed(1);
    root.append(label);
  }
  const span = svg('text', { x: W - pad.r, y: H - 6, 'text-anchor': 'end' });
  span.textContent = history.length ? `last ${age(t1 - t0)}` : 'no samples yet';
  root.append(span);
  const legend = el('div', { class: 'legend' });
  let i = 0;
  for (const [k, pts] of series) {
    const color = COLORS[i++ % COLORS.length];
    const d = pts.map(([t, v], j) => `${j === 0 ? 'M' : 'L'}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    root.append(svg('path', { d, fill: 'none', stroke: color, 'stroke-width': 2, 'data-series': k }));
    if (pts.length === 1)
      root.append(svg('circle', { cx: x(pts[0][0]), cy: y(pts[0][1]), r: 3, fill: color }));
    const item = el('span', {}, k);
    item.style.setProperty('--c', color);
    legend.append(item);
  }
  $('chart').replaceChildren(root, legend);
}

function selectGroup(g) {
  state.selected = { topic: g.topic, group: g.group };
  state.checked.clear();
  $('dlq-section').hidden = false;
  $('dlq-target').textContent = keyOf(g);
  $('dlq-result').textContent = '';
  $('detail').hidden = true;
  if (state.overview) renderGroups(state.overview.groups);
  return loadDeadLetters();
}

async function loadDeadLetters() {
  const g = state.selected;
  if (!g) return;
  try {
    const q = new URLSearchParams({ topic: g.topic, group: g.group, limit: '100' });
    const r = await api(`/api/dead-letters?${q}`);
    state.deadLetters = r.messages;
    state.purgeConfirmation = r.purgeConfirmation;
    for (const id of [...state.checked]) if (!r.messages.some((m) => m.id === id)) state.checked.delete(id);
    renderDeadLetters();
  } catch (err) {
    showError(err);
  }
}

function renderDeadLetters() {
  const rows = state.deadLetters.map((m) =>
    el(
      'tr',
      { 'data-id': m.id },
      el(
        'td',
        {},
        el('input', {
          type: 'checkbox',
          'aria-label': `select ${m.id}`,
          ...(state.checked.has(m.id) ? { checked: '' } : {}),
          onchange: (e) => {
            if (e.target.checked) state.checked.add(m.id);
            else state.checked.delete(m.id);
            updateButtons();
          },
        }),
      ),
      el('td', { class: 'id' }, m.id),
      el('td', {}, m.type ?? '(undecodable)'),
      el('td', { class: 'reason' }, m.reason ?? '–'),
      el('td', { class: 'num' }, num(m.attempts)),
      el('td', { class: 'error-text' }, m.error ?? ''),
      el('td', {}, time(m.deadLetteredAtMs)),
      el('td', {}, el('button', { type: 'button', onclick: () => showDetail(m) }, 'Show')),
    ),
  );
  $('dead-letters').tBodies[0].replaceChildren(...rows);
  $('dlq-empty').hidden = rows.length > 0;
  updateButtons();
}

function updateButtons() {
  $('redrive-selected').disabled = state.checked.size === 0;
  $('redrive-selected').textContent = `Redrive selected (${state.checked.size})`;
  $('redrive-all').disabled = state.deadLetters.length === 0;
  $('select-all').checked = state.deadLetters.length > 0 && state.checked.size === state.deadLetters.length;
}

function showDetail(m) {
  $('detail').hidden = false;
  $('detail-id').textContent = m.id;
  const meta = [
    ['Type', m.type ?? '(undecodable)'],
    ['Key', m.key ?? '–'],
    ['Event time', time(m.timeMs)],
    ['Reason', m.reason ?? '–'],
    ['Attempts', num(m.attempts)],
    ['Dead-lettered', time(m.deadLetteredAtMs)],
    ['Error', m.error ?? '–'],
  ];
  $('detail-meta').replaceChildren(...meta.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  $('detail-headers').textContent = JSON.stringify(m.headers, null, 2);
  $('detail-payload').textContent =
    m.preview + (m.truncated ? '\n(preview cut; omnibus dlq show prints it all)' : '');
}

/** Asks in a modal dialog; with `typed`, Confirm stays disabled until that exact text is typed. */
function confirmAction(text, typed) {
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  $('confirm-typed').hidden = !typed;
  $('confirm-input').value = '';
  $('confirm-expected').textContent = typed ?? '';
  $('confirm-ok').disabled = Boolean(typed);
  $('confirm-input').oninput = () => {
    $('confirm-ok').disabled = $('confirm-input').value !== typed;
  };
  dialog.returnValue = '';
  dialog.showModal();
  if (typed) $('confirm-input').focus();
  return new Promise((resolve) => {
    dialog.addEventListener(
      'close',
      () => resolve(dialog.returnValue === 'ok' ? $('confirm-input').value || true : null),
      { once: true },
    );
  });
}

async function redrive(ids) {
  const g = state.selected;
  const what = ids ? `${ids.length} selected dead letter${ids.length === 1 ? '' : 's'}` : 'every dead letter';
  if (!(await confirmAction(`Redrive ${what} of ${keyOf(g)} back to its group? They will be handled again.`)))
    return;
  try {
    $('dlq-result').textContent = 'redriving…';
    const r = await api('/api/redrive', ids ? { ...g, ids } : { ...g, all: true });
    $('dlq-result').textContent = `redriven ${r.redriven} of ${r.scanned} looked at (${r.kept} kept)`;
    state.checked.clear();
  } catch (err) {
    $('dlq-result').textContent = `redrive failed: ${err.message}`;
    if (err instanceof Denied) showError(err);
  }
  await loadDeadLetters();
  await refreshOverview();
}

async function purge() {
  const g = state.selected;
  const expected = state.purgeConfirmation;
  const typed = await confirmAction(
    `Delete every dead letter of ${keyOf(g)}? This cannot be undone.`,
    expected,
  );
  if (typed === null) {
    $('dlq-result').textContent = 'purge cancelled';
    return;
  }
  try {
    const r = await api('/api/purge', { ...g, source: 'dead-letter', confirm: typed });
    $('dlq-result').textContent = `purged ${r.purged ?? 'all'} dead letters`;
  } catch (err) {
    $('dlq-result').textContent = `purge failed: ${err.message}`;
    if (err instanceof Denied) showError(err);
  }
  await loadDeadLetters();
  await refreshOverview();
}

async function start() {
  $('metric').addEventListener('change', () => state.overview && renderChart(state.overview.history));
  $('refresh-dlq').addEventListener('click', () => loadDeadLetters());
  $('redrive-selected').addEventListener('click', () => redrive([...state.checked]));
  $('redrive-all').addEventListener('click', () => redrive(undefined));
  $('purge').addEventListener('click', () => purge());
  $('select-all').addEventListener('change', (e) => {
    state.checked = new Set(e.target.checked ? state.deadLetters.map((m) => m.id) : []);
    renderDeadLetters();
  });
  // The token comes in the fragment, which the browser never sends; it is traded once for an HttpOnly
  // cookie and then removed from the address bar and history.
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  if (token) {
    history.replaceState(null, '', location.pathname);
    try {
      await api('/api/login', { token });
    } catch (err) {
      showError(err);
      return;
    }
  }
  await refreshOverview();
  state.timer = setInterval(refreshOverview, REFRESH_MS);
}

start();
