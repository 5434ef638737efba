/* Assay UI: one page, four views (graph, runs, data quality, tables), over the JSON API of
 * `assay ui` or, in a report written by `assay report`, over the documents inlined in the page.
 * Text from the lake is always set with textContent, never parsed as HTML. */
(function () {
  'use strict';

  const REPORT = (function () {
    const el = document.getElementById('assay-report');
    return el ? JSON.parse(el.textContent) : null;
  })();
  const LARGE_GRAPH = 80;       // more nodes than this: open on a selection, not the whole graph
  const POLL_MS = 2000;
  const PAGE = 50;
  const STATES = ['completed', 'failed', 'running', 'interrupted', 'queued', 'skipped', 'never'];
  // [fill, border] of graph nodes; style.css gives the dots and badges the same border colours
  const COLORS = {
    completed: ['#e6f6ec', '#2f9e5b'], failed: ['#fdeaea', '#d64545'], running: ['#e6f0fc', '#2f7fd8'],
    interrupted: ['#fdf1e4', '#d9822b'], queued: ['#f2f4f7', '#98a2b3'], skipped: ['#fbf3d5', '#a47f00'],
    never: ['#ffffff', '#c5cbd5'], view: ['#ffffff', '#98a2b3'], source: ['#f1edff', '#7a5af8'],
  };
  // Graph text: nodes are sized to their labels, and the first view never draws labels smaller
  // than READABLE_PX (a larger graph opens zoomed in on its selection; pan or zoom out to see all).
  const NODE_W = 170, FONT_PX = 12, READABLE_PX = 11, MAX_FIT_ZOOM = 1.5;
  const LEGEND = { queued: 'waiting for its turn in the running run',
    skipped: 'not run in this run: an earlier flow failed, or --refresh chose other tables', never: 'never run' };
  const FONT_FAMILY = 'DejaVu Sans, sans-serif';

  const S = {
    version: null, route: null, refresh: null, cy: null, graph: null, graphRun: '', selection: null,
    hops: 2, showAll: false, graphView: 'graph', search: '', runsOffset: 0, qualityLast: 20, qualityRule: {},
  };

  // ------------------------------------------------------------------ helpers

  function h(tag, attrs) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = v;
        else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
        else if (k === 'dataset') Object.assign(el.dataset, v);
        else el.setAttribute(k, v === true ? '' : v);
      }
    }
    for (let i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }
  function append(el, kid) {
    if (kid === null || kid === undefined || kid === false) return;
    if (Array.isArray(kid)) { kid.forEach(k => append(el, k)); return; }
    el.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  const SVGNS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v);
    }
    kids.flat(Infinity).forEach(k => k && el.appendChild(k));
    return el;
  }
  function qs(params) {
    const parts = [];
    for (const [k, v] of Object.entries(params || {})) {
      if (v === null || v === undefined || v === '') continue;
      parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(v));
    }
    return parts.length ? '?' + parts.join('&') : '';
  }
  async function api(path, params) {
    const key = path + qs(params);
    if (REPORT) {
      if (Object.prototype.hasOwnProperty.call(REPORT.data, key)) {
        const doc = REPORT.data[key];
        if (doc && doc.__error) throw new Error(doc.__error);
        return doc;
      }
      throw new Error('not included in this report (' + key + '); run `assay ui` to browse everything');
    }
    const res = await fetch(key, { headers: { Accept: 'application/json' } });
    let body = null;
    try { body = await res.json(); } catch (e) { body = { error: res.statusText }; }
    if (!res.ok) throw new Error(body && body.error ? body.error : res.statusText);
    return body;
  }
  const nf = new Intl.NumberFormat('en-US');
  function num(v) { return v === null || v === undefined ? '—' : nf.format(v); }
  function dur(v) {
    if (v === null || v === undefined) return '—';
    if (v < 1) return (v * 1000).toFixed(0) + ' ms';
    if (v < 60) return v.toFixed(1) + ' s';
    const m = Math.floor(v / 60), sec = Math.round(v % 60);
    return m < 60 ? m + ' min ' + sec + ' s' : Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
  }
  function when(iso) {
    if (!iso) return '—';
    return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace(/Z$/, ' UTC');
  }
  function bytes(v) {
    if (v === null || v === undefined) return '—';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0; while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : v) + ' ' + units[i];
  }
  function badge(state) { return h('span', { class: 'badge ' + state, text: state }); }
  function countCell(v, cls) {
    return h('td', { class: 'num' + (v ? (cls ? ' ' + cls : '') : ' zero'), text: num(v) });
  }
  function table(headers, rows, attrs) {
    return h('table', Object.assign({ class: 'grid' }, attrs || {}),
      h('thead', null, h('tr', null, headers.map(x => typeof x === 'string'
        ? h('th', { text: x }) : h('th', { class: x.cls, text: x.t })))),
      h('tbody', null, rows));
  }
  function cellValue(v) {
    if (v === null || v === undefined) return h('span', { class: 'muted', text: 'null' });
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }
  function rowsTable(doc, highlight) {
    const cols = doc.columns || [];
    return h('div', { class: 'scroll' }, table(cols.map((c, i) => ({ t: c, cls: c === highlight ? 'hl' : '' })),
      (doc.rows || []).map(r => h('tr', null, r.map((v, i) => h('td', { class: cols[i] === highlight ? 'mono failed-count' : 'mono' },
        cellValue(v)))))));
  }
  function errorBox(message) {
    const el = h('div', { class: 'error' });
    const re = /([\w./\\-]+\.(?:py|sql)):(\d+)/g;
    let last = 0, m;
    while ((m = re.exec(message)) !== null) {
      el.appendChild(document.createTextNode(message.slice(last, m.index)));
      el.appendChild(h('span', { class: 'error-location', text: m[0] }));
      last = m.index + m[0].length;
    }
    el.appendChild(document.createTextNode(message.slice(last)));
    return el;
  }
  function main(full) {
    const el = document.getElementById('main');
    if (S.cy) { S.cy.destroy(); S.cy = null; }
    el.className = full ? 'full' : '';
    el.replaceChildren();
    return el;
  }
  function fail(el, err) { el.replaceChildren(errorBox(String(err && err.message || err))); }

  // ------------------------------------------------------------------ routing and live updates

  const ROUTES = { graph: renderGraph, runs: renderRuns, run: renderRun, quality: renderQuality,
                   tables: renderTables, table: renderTable };

  function route() {
    const parts = (location.hash || '#/graph').replace(/^#\/?/, '').split('/').map(decodeURIComponent);
    let page = parts[0] || 'graph';
    let arg = parts.slice(1).join('/') || null;
    if (page === 'runs' && arg) page = 'run';
    if (page === 'tables' && arg) page = 'table';
    if (!ROUTES[page]) page = 'graph';
    document.querySelectorAll('#nav a').forEach(a => a.classList.toggle('active',
      a.dataset.page === page || (a.dataset.page + 's') === page || (page === 'run' && a.dataset.page === 'runs')
      || (page === 'table' && a.dataset.page === 'tables')));
    S.route = { page, arg };
    S.refresh = null;
    document.body.dataset.page = page;
    document.body.dataset.ready = '0';
    Promise.resolve(ROUTES[page](arg)).catch(err => fail(main(false), err))
      .finally(() => { document.body.dataset.ready = '1'; });
  }

  function setLive(doc) {
    const el = document.getElementById('live');
    el.replaceChildren();
    el.className = 'live' + (doc && doc.running ? ' running' : '');
    if (REPORT) { el.append(h('span', { text: 'report written ' + when(REPORT.written) })); return; }
    const latest = doc && doc.latest;
    el.append(h('span', { class: 'dot' }),
      doc && doc.running ? 'run ' + latest.run_id + ' running' :
        latest ? 'last run ' + latest.outcome + ' · ' + when(latest.started) : 'no runs yet');
  }

  async function poll() {
    try {
      const doc = await api('/api/state');
      setLive(doc);
      document.body.dataset.version = String(doc.version);
      if (S.version !== null && doc.version !== S.version && S.refresh) {
        S.version = doc.version;
        await S.refresh();
      }
      S.version = doc.version;
    } catch (e) { /* the server may be restarting; try again */ }
    setTimeout(poll, POLL_MS);
  }

  // ------------------------------------------------------------------ graph

  const measure = document.createElement('canvas').getContext('2d');
  function textWidth(text) { measure.font = FONT_PX + 'px ' + FONT_FAMILY; return measure.measureText(text).width; }
  // items joined by ' · ' into lines that fit a node, so that no count is ever broken across lines
  function packed(items) {
    const lines = [];
    items.forEach(item => {
      const joined = lines.length ? lines[lines.length - 1] + ' · ' + item : null;
      if (joined !== null && textWidth(joined) <= NODE_W - 14) lines[lines.length - 1] = joined; else lines.push(item);
    });
    return lines;
  }
  // a name may wrap after its underscores (a zero-width space), never inside a word
  function breakable(name) { return String(name).replace(/_/g, '_\u200b'); }
  function nodeText(n) {
    if (n.type === 'source') return n.kind + ': ' + breakable(n.label);
    const parts = [breakable(n.label)];
    if (n.state === 'never' || n.state === 'view') return parts.concat(n.state === 'view' ? 'temporary view' : 'not run yet').join('\n');
    const counts = [num(n.rows_written) + ' written'];
    if (n.rows_dropped) counts.push(num(n.rows_dropped) + ' dropped');
    if (n.rows_quarantined) counts.push(num(n.rows_quarantined) + ' quar.');
    if (n.rows_late) counts.push(num(n.rows_late) + ' late');
    return parts.concat(packed(counts)).join('\n');
  }

  function neighbourhood(doc, ids, hops) {
    const up = {}, down = {};
    doc.edges.forEach(e => { (down[e.source] = down[e.source] || []).push(e.target); (up[e.target] = up[e.target] || []).push(e.source); });
    const keep = new Set(ids);
    for (const dir of [up, down]) {
      let frontier = [...ids];
      for (let i = 0; i < hops && frontier.length; i++) {
        const next = [];
        frontier.forEach(id => (dir[id] || []).forEach(o => { if (!keep.has(o)) { keep.add(o); next.push(o); } }));
        frontier = next;
      }
    }
    // side tables (quarantine, late) travel with their table
    doc.nodes.forEach(n => { if (n.type === 'side' && keep.has(n.parent_dataset)) keep.add(n.id); });
    return keep;
  }

  function defaultFocus(doc) {
    const rank = { failed: 0, running: 1, interrupted: 2 };
    const datasets = doc.nodes.filter(n => n.type === 'dataset');
    const hot = datasets.filter(n => n.state in rank).sort((a, b) => rank[a.state] - rank[b.state]);
    if (hot.length) return hot.slice(0, 3).map(n => n.id);
    const layers = doc.layers;
    const last = datasets.slice().sort((a, b) => layers.indexOf(b.layer) - layers.indexOf(a.layer) || a.id.localeCompare(b.id));
    return last.length ? [last[0].id] : [];
  }

  function visibleIds(doc) {
    if (S.showAll || doc.nodes.length <= LARGE_GRAPH) return null;
    const focus = S.selection ? [S.selection] : defaultFocus(doc);
    return neighbourhood(doc, focus, S.hops);
  }

  function elementsFor(doc, visible) {
    const els = [];
    const layers = new Set();
    doc.nodes.forEach(n => { if (!visible || visible.has(n.id)) layers.add(n.layer); });
    doc.layers.forEach(l => { if (layers.has(l)) els.push({ group: 'nodes', data: { id: 'layer:' + l, label: l }, classes: 'layer' }); });
    doc.nodes.forEach(n => {
      if (visible && !visible.has(n.id)) return;
      const colors = COLORS[n.type === 'source' ? 'source' : n.state] || COLORS.never;
      els.push({ group: 'nodes', data: Object.assign({}, n, { parent: 'layer:' + n.layer, display: nodeText(n),
        fill: colors[0], stroke: colors[1] }), classes: [n.type, n.kind, n.state].join(' ') });
    });
    doc.edges.forEach(e => {
      if (visible && (!visible.has(e.source) || !visible.has(e.target))) return;
      els.push({ group: 'edges', data: { id: e.id, source: e.source, target: e.target, kind: e.kind }, classes: e.kind });
    });
    return els;
  }

  const CY_STYLE = [
    { selector: 'node', style: { shape: 'round-rectangle', width: NODE_W, height: 40, 'background-color': 'data(fill)',
      'border-width': 2, 'border-color': 'data(stroke)', label: 'data(display)', 'text-wrap': 'wrap', 'text-max-width': NODE_W - 14,
      'text-valign': 'center', 'text-halign': 'center', 'font-size': FONT_PX, 'line-height': 1.25, color: '#1d2433', 'font-family': FONT_FAMILY } },
    { selector: 'node.side', style: { 'border-style': 'dashed' } },
    { selector: 'node.never', style: { 'border-style': 'dotted' } },
    { selector: 'node.source', style: { shape: 'tag', height: 34, 'text-max-width': NODE_W - 40 } },
    { selector: 'node.flow', style: { shape: 'round-diamond', width: 130, 'text-max-width': 90 } },
    { selector: 'node.temporary_view', style: { 'border-style': 'dashed' } },
    { selector: 'node.running', style: { 'border-width': 4 } },
    { selector: 'node.failed', style: { 'border-width': 3 } },
    { selector: 'node.layer', style: { shape: 'round-rectangle', 'background-color': '#eef1f6', 'background-opacity': 0.55,
      'border-width': 1, 'border-color': '#d5dae3', label: 'data(label)', 'text-valign': 'top', 'text-halign': 'center',
      'font-size': 13, 'font-weight': 'bold', color: '#667085', padding: 10, 'text-margin-y': -4 } },
    { selector: 'node:selected', style: { 'border-color': '#3b5bdb', 'border-width': 4, 'overlay-opacity': 0 } },
    { selector: 'edge', style: { width: 1.5, 'line-color': '#9aa4b5', 'target-arrow-color': '#9aa4b5',
      'target-arrow-shape': 'triangle', 'curve-style': 'bezier', 'arrow-scale': 0.9 } },
    { selector: 'edge.stream', style: { width: 2.2, 'line-color': '#5b7be0', 'target-arrow-color': '#5b7be0' } },
    { selector: 'edge.quarantine, edge.late', style: { 'line-style': 'dashed', 'line-color': '#d9822b', 'target-arrow-color': '#d9822b' } },
    { selector: '.faded', style: { opacity: 0.25 } },
  ];

  function drawGraph(doc) {
    const container = document.getElementById('cy');
    if (!container) return;
    const visible = visibleIds(doc);
    const els = elementsFor(doc, visible);
    const key = els.map(e => e.data.id).sort().join('|');
    if (S.cy && S.cyKey === key) {          // same nodes: update states and counts in place
      els.forEach(e => { const el = S.cy.getElementById(e.data.id); if (el.nonempty()) { el.data(e.data); el.classes(e.classes || ''); } });
      fitNodesToLabels(S.cy);
      return;
    }
    if (S.cy) S.cy.destroy();
    S.cyKey = key;
    S.cy = cytoscape({ container, elements: els, style: CY_STYLE, minZoom: 0.05, maxZoom: 3,
      boxSelectionEnabled: false, autoungrabify: false });
    fitNodesToLabels(S.cy);
    S.cy.layout({ name: 'dagre', rankDir: 'LR', nodeSep: 16, rankSep: 48, edgeSep: 10, fit: true, padding: 16,
      animate: false }).run();
    if (S.cy.zoom() > MAX_FIT_ZOOM) { S.cy.zoom(MAX_FIT_ZOOM); S.cy.center(); }
    // a graph that fits only with unreadable labels: stay readable around the selection instead
    if (S.cy.zoom() * FONT_PX < READABLE_PX) {
      const focus = S.cy.getElementById(S.selection || defaultFocus(doc)[0] || '');
      S.cy.zoom(READABLE_PX / FONT_PX);
      if (focus.nonempty()) S.cy.center(focus); else S.cy.center();
    }
    S.cy.on('tap', 'node', ev => { const n = ev.target; if (!n.hasClass('layer')) selectNode(n.id(), false); });
    S.cy.on('dbltap', 'node', ev => { const n = ev.target; if (!n.hasClass('layer')) selectNode(n.id(), true); });
    if (S.selection) { const n = S.cy.getElementById(S.selection); if (n.nonempty()) n.select(); }
    document.body.dataset.graphNodes = String(S.cy.nodes(':childless').length);
  }

  // each node as tall (and, for a long word, as wide) as its label, plus a margin
  function fitNodesToLabels(cy) {
    const labelOnly = { includeNodes: false, includeEdges: false, includeLabels: true, includeMainLabels: true,
      includeSourceLabels: false, includeTargetLabels: false, includeOverlays: false, includeUnderlays: false };
    cy.nodes(':childless').forEach(n => {
      const box = n.boundingBox(labelOnly);
      const wide = n.hasClass('flow') ? 130 : NODE_W;
      n.style({ width: Math.max(wide, box.w + 16), height: Math.max(n.hasClass('source') ? 34 : 40, box.h + (n.hasClass('flow') ? 30 : 14)) });
    });
  }

  function selectNode(id, refocus) {
    S.selection = id;
    if (refocus) S.showAll = false;
    const doc = S.graph;
    if (!doc) return;
    if (refocus || (doc.nodes.length > LARGE_GRAPH && !S.showAll && S.cy && S.cy.getElementById(id).empty())) drawGraph(doc);
    renderList(doc);
    renderDetail(doc);
    if (S.cy) {                           // the details took room from the canvas: keep the node in view
      S.cy.resize();
      S.cy.$(':selected').unselect();
      const n = S.cy.getElementById(id), e = S.cy.extent();
      if (n.nonempty()) {
        n.select();
        const p = n.position();
        if (p.x < e.x1 || p.x > e.x2 || p.y < e.y1 || p.y > e.y2) S.cy.center(n);
      }
    }
  }

  function matches(n) {
    const q = S.search.trim().toLowerCase();
    return !q || n.id.toLowerCase().includes(q) || (n.layer || '').toLowerCase().includes(q) || (n.state || '').includes(q);
  }

  function renderList(doc) {
    const list = document.getElementById('graph-list');
    if (!list) return;
    const items = doc.nodes.filter(n => n.type !== 'source' || S.search).filter(matches)
      .sort((a, b) => doc.layers.indexOf(a.layer) - doc.layers.indexOf(b.layer) || a.id.localeCompare(b.id));
    const rows = [];                      // under a heading per layer
    items.slice(0, 400).forEach((n, i, shown) => {
      if (!i || shown[i - 1].layer !== n.layer) rows.push(h('li', { class: 'layer', text: n.layer }));
      rows.push(h('li', { dataset: { id: n.id }, class: n.id === S.selection ? 'selected' : '', onclick: () => selectNode(n.id, true), title: n.id },
        h('span', { class: 'dot ' + (n.type === 'source' ? 'source' : n.state) }), h('span', { class: 'name' }, wrappable(n.label)),
        h('span', { class: 'n', text: n.type === 'source' ? '' : num(n.rows_written) })));
    });
    list.replaceChildren(...rows);
    const count = document.getElementById('graph-count');
    if (count) count.textContent = items.length + ' of ' + doc.nodes.length + ' nodes' + (items.length > 400 ? ' (first 400 listed)' : '');
  }

  // a long name as text that may wrap after each underscore (<wbr>), never in the middle of a word
  function wrappable(name) {
    const parts = String(name).split('_');
    return parts.flatMap((part, i) => i < parts.length - 1 ? [part + '_', h('wbr')] : [part]);
  }

  function renderDetail(doc) {
    const el = document.getElementById('graph-detail');
    if (!el) return;
    const n = doc.nodes.find(x => x.id === S.selection);
    el.hidden = !n;                  // the canvas gets the room until a node is chosen
    if (!n) { el.replaceChildren(); return; }
    const kv = h('dl', { class: 'kv' });
    const add = (k, v) => { if (v !== null && v !== undefined && v !== '') kv.append(h('dt', { text: k }), h('dd', null, v)); };
    add('kind', (n.kind || '').replace(/_/g, ' '));
    add('layer', n.layer); add('schema', n.schema); add('state', badge(n.type === 'source' ? 'source' : n.state));
    if (n.type !== 'source') {
      add('rows written', num(n.rows_written)); add('rows read', num(n.rows_read)); add('dropped', num(n.rows_dropped));
      add('quarantined', num(n.rows_quarantined)); add('late', num(n.rows_late)); add('duplicates', num(n.rows_duplicate));
      add('batches', num(n.batches)); add('duration', n.duration_s ? dur(n.duration_s) : null);
    }
    add('defined at', n.defined_at ? h('code', { text: n.defined_at }) : null);
    add('flows', (n.flows || []).join(', '));
    add('partitioned by', (n.partition_cols || []).join(', '));
    add('clustered by', (n.cluster_by || []).join(', '));
    const close = h('button', { class: 'close', title: 'Close', text: '×', onclick: () => {
      S.selection = null; if (S.cy) S.cy.$(':selected').unselect(); renderList(doc); renderDetail(doc); } });
    const parts = [close, h('h3', { text: n.label }), kv];
    if (n.comment) parts.push(h('p', { class: 'muted', text: n.comment }));
    if (n.message) parts.push(errorBox(n.message));
    if ((n.expectations || []).length) {
      parts.push(h('h3', { text: 'Expectations' }), table(['rule', 'action'], n.expectations.map(e =>
        h('tr', { title: e.sql || '' }, h('td', { text: e.name }), h('td', null, badge(e.action))))));
    }
    const links = h('p', { class: 'row' });
    if (n.type === 'dataset' || n.type === 'side') links.append(h('a', { href: '#/tables/' + encodeURIComponent(n.id), text: 'Table →' }));
    if ((n.expectations || []).length || n.rows_quarantined || n.rows_late) links.append(h('a', { href: '#/quality', text: 'Data quality →' }));
    links.append(h('button', { onclick: () => selectNode(n.id, true), text: 'Focus lineage' }));
    parts.push(links);
    el.replaceChildren(...parts);
  }

  function renderRunSummary(doc) {
    const el = document.getElementById('graph-run-summary');
    if (el) el.replaceChildren(runBlurb(doc.run), h('div', { class: 'muted', text: 'Click a node for its details; double-click to focus on its lineage.' }));
    const error = document.getElementById('graph-run-error');
    if (!error) return;
    error.hidden = !(doc.run && doc.run.error);
    error.replaceChildren(error.hidden ? '' : errorBox('Run ' + doc.run.run_id + ' ' + doc.run.outcome + ': ' + doc.run.error));
  }

  function runBlurb(run) {
    if (!run) return h('p', { class: 'muted', text: 'No run in the event log yet.' });
    return h('div', { class: 'run-blurb' }, badge(run.outcome), ' ', h('a', { href: '#/runs/' + encodeURIComponent(run.run_id), text: run.run_id }),
      h('div', { class: 'muted', text: when(run.started) + ' · ' + dur(run.duration_s) + ' · ' + num(run.rows_written) + ' rows written' }));
  }

  function renderGraphTable(doc) {
    const wrap = document.getElementById('graph-table');
    if (!wrap) return;
    const rows = doc.nodes.filter(matches).filter(n => n.type !== 'source')
      .sort((a, b) => doc.layers.indexOf(a.layer) - doc.layers.indexOf(b.layer) || a.id.localeCompare(b.id))
      .map(n => h('tr', { class: 'clickable' + (n.id === S.selection ? ' selected' : ''), dataset: { node: n.id },
        onclick: () => { S.graphView = 'graph'; S.selection = n.id; S.showAll = false; renderGraph(); } },
        h('td', { class: 'name' }, h('span', { class: 'dot ' + n.state }), wrappable(n.label)), h('td', { text: n.layer }),
        h('td', { text: (n.kind || '').replace(/_/g, ' ') }), h('td', null, badge(n.state)),
        countCell(n.rows_written), countCell(n.rows_dropped), countCell(n.rows_quarantined, 'failed-count'),
        countCell(n.rows_late), countCell(n.rows_duplicate), h('td', { class: 'num', text: n.type === 'side' ? '' : num(n.batches) })));
    wrap.replaceChildren(table(['dataset', 'layer', 'kind', 'state', { t: 'written', cls: 'num' }, { t: 'dropped', cls: 'num' },
      { t: 'quarantined', cls: 'num' }, { t: 'late', cls: 'num' }, { t: 'duplicates', cls: 'num' }, { t: 'batches', cls: 'num' }], rows));
  }

  async function renderGraph() {
    const doc = await api('/api/graph', { run: S.graphRun });
    S.graph = doc;
    const el = main(true);
    const side = h('aside', { class: 'graph-side' },
      h('div', { class: 'tools' },
        h('input', { type: 'search', id: 'graph-search', placeholder: 'Search datasets…', value: S.search,
          oninput: ev => { S.search = ev.target.value; renderList(S.graph); if (S.graphView === 'list') renderGraphTable(S.graph); } }),
        h('div', { class: 'muted', id: 'graph-count' })),
      h('ul', { class: 'graph-list', id: 'graph-list' }),
      h('div', { class: 'tools', id: 'graph-run-summary' }));
    const runSelect = h('select', { id: 'graph-run', onchange: ev => { S.graphRun = ev.target.value; renderGraph(); } },
      h('option', { value: '', text: 'latest run' }),
      (doc.recent_runs || []).map(r => h('option', { value: r.run_id, selected: r.run_id === S.graphRun ? true : null,
        text: r.run_id + ' · ' + r.outcome })));
    const large = doc.nodes.length > LARGE_GRAPH;
    const toolbar = h('div', { class: 'graph-toolbar' },
      h('button', { id: 'view-graph', class: S.graphView === 'graph' ? 'on' : '', onclick: () => { S.graphView = 'graph'; renderGraph(); }, text: 'Graph' }),
      h('button', { id: 'view-list', class: S.graphView === 'list' ? 'on' : '', onclick: () => { S.graphView = 'list'; renderGraph(); }, text: 'List' }),
      h('label', null, 'state as of ', runSelect),
      large ? h('label', null, 'lineage ', h('select', { id: 'graph-hops', onchange: ev => { S.hops = +ev.target.value; S.showAll = false; drawGraph(S.graph); } },
        [1, 2, 3, 5].map(k => h('option', { value: k, selected: k === S.hops ? true : null, text: k + (k === 1 ? ' hop' : ' hops') })))) : null,
      large ? h('button', { id: 'graph-all', class: S.showAll ? 'on' : '', onclick: () => { S.showAll = !S.showAll; renderGraph(); },
        text: S.showAll ? 'Show selection' : 'Show all ' + doc.nodes.length + ' nodes' }) : null,
      h('span', { class: 'spacer' }),
      h('span', { class: 'legend' }, ['completed', 'running', 'queued', 'failed', 'interrupted', 'skipped', 'never'].map(st =>
        h('span', { title: LEGEND[st] || '' }, h('span', { class: 'dot ' + st }), st === 'never' ? 'not run' : st))));
    const banners = [];
    if (doc.graph_error) banners.push(h('div', { class: 'banner' }, 'The pipeline code could not be loaded, so the graph comes from the event log: ', doc.graph_error));
    banners.push(h('div', { class: 'banner run-error', id: 'graph-run-error', hidden: true }));
    if (large && !S.showAll && S.graphView === 'graph') {
      const focus = S.selection ? [S.selection] : defaultFocus(doc);
      banners.push(h('div', { class: 'banner', id: 'selection-banner' }, doc.nodes.length + ' nodes: showing the lineage of ' +
        (focus.join(', ') || 'nothing') + ' (' + S.hops + ' hops). Search or pick a dataset on the left, or show all.'));
    }
    const center = h('section', { class: 'graph-center' }, toolbar, banners,
      S.graphView === 'graph' ? h('div', { class: 'graph-canvas' }, h('div', { id: 'cy' })) : h('div', { class: 'graph-table-wrap', id: 'graph-table' }));
    el.append(side, center, h('aside', { class: 'graph-detail', id: 'graph-detail', hidden: true }));
    S.cyKey = null;
    renderDetail(doc);                    // first: the canvas takes the room the details leave
    renderRunSummary(doc);
    if (S.graphView === 'graph') drawGraph(doc); else renderGraphTable(doc);
    renderList(doc);
    S.refresh = async () => {
      if (S.graphRun) return;             // a past run does not change
      const fresh = await api('/api/graph', { run: S.graphRun });
      S.graph = fresh;
      if (S.graphView === 'graph') drawGraph(fresh); else renderGraphTable(fresh);
      renderList(fresh); renderDetail(fresh); renderRunSummary(fresh);
    };
  }

  // ------------------------------------------------------------------ runs

  function timelineChart(timeline) {
    const W = 1000, H = 120, pad = 24;
    const n = timeline.length;
    if (!n) return h('p', { class: 'muted', text: 'No runs yet.' });
    const max = Math.max(...timeline.map(t => t[2] || 0), 0.001);
    const bw = Math.min(24, Math.max(1, (W - pad * 2) / n));
    const colors = { completed: '#2f9e5b', failed: '#d64545', running: '#2f7fd8', interrupted: '#d9822b' };
    const bars = timeline.map((t, i) => {
      const hgt = Math.max(2, ((t[2] || 0) / max) * (H - pad - 10));
      return s('rect', { class: 'bar', x: pad + i * bw, y: H - pad - hgt, width: Math.max(1, bw - (bw > 3 ? 1 : 0)), height: hgt,
        fill: colors[t[3]] || '#98a2b3', 'data-run': t[0], onclick: () => { location.hash = '#/runs/' + encodeURIComponent(t[0]); } },
        s('title', { text: t[0] + '\n' + when(t[1]) + '\n' + t[3] + ' · ' + dur(t[2]) + ' · ' + num(t[4]) + ' rows written' }));
    });
    return s('svg', { class: 'timeline', viewBox: '0 0 ' + W + ' ' + H, width: '100%', height: H, preserveAspectRatio: 'none' },
      s('line', { x1: pad, x2: W - pad, y1: H - pad, y2: H - pad, stroke: '#c9ced8' }),
      s('text', { x: pad, y: H - 6, 'font-size': 10, fill: '#667085', text: when(timeline[0][1]) }),
      s('text', { x: W - pad, y: H - 6, 'font-size': 10, fill: '#667085', 'text-anchor': 'end', text: when(timeline[n - 1][1]) }),
      s('text', { x: pad, y: 10, 'font-size': 10, fill: '#667085', text: 'duration (longest ' + dur(max) + ')' }), bars);
  }

  async function renderRuns() {
    const doc = await api('/api/runs', { offset: S.runsOffset, limit: PAGE });
    const el = main(false);
    const rows = doc.runs.map(r => h('tr', { class: 'clickable', dataset: { run: r.run_id },
      onclick: () => { location.hash = '#/runs/' + encodeURIComponent(r.run_id); } },
      h('td', { text: when(r.started) }), h('td', null, h('a', { href: '#/runs/' + encodeURIComponent(r.run_id), text: r.run_id })),
      h('td', null, badge(r.outcome)), h('td', { class: 'num', text: dur(r.duration_s) }), h('td', { class: 'num', text: num(r.flows) }),
      countCell(r.rows_read), countCell(r.rows_written), countCell(r.rows_dropped), countCell(r.rows_quarantined, 'failed-count'),
      countCell(r.rows_late), h('td', { class: 'muted', text: r.error ? r.error.slice(0, 140) : '' })));
    const from = doc.total ? doc.offset + 1 : 0, to = doc.offset + doc.runs.length;
    el.append(h('h1', { text: 'Runs' }),
      h('div', { class: 'card' }, h('h3', { text: 'Timeline of the last ' + doc.timeline.length + ' runs (' + num(doc.total) + ' in all)' }), timelineChart(doc.timeline)),
      h('div', { class: 'row' }, h('span', { id: 'runs-range', text: 'runs ' + from + '–' + to + ' of ' + num(doc.total) + ', newest first' }),
        h('span', { class: 'spacer' }),
        h('button', { id: 'runs-newer', disabled: doc.offset === 0 ? true : null, onclick: () => { S.runsOffset = Math.max(0, doc.offset - PAGE); renderRuns(); }, text: '← Newer' }),
        h('button', { id: 'runs-older', disabled: to >= doc.total ? true : null, onclick: () => { S.runsOffset = doc.offset + PAGE; renderRuns(); }, text: 'Older →' })),
      h('div', { style: 'margin-top:8px' }, table(['started', 'run', 'outcome', { t: 'duration', cls: 'num' }, { t: 'flows', cls: 'num' },
        { t: 'read', cls: 'num' }, { t: 'written', cls: 'num' }, { t: 'dropped', cls: 'num' }, { t: 'quarantined', cls: 'num' },
        { t: 'late', cls: 'num' }, 'error'], rows, { id: 'runs-table' })));
    S.refresh = async () => { if (S.route.page === 'runs') await renderRuns(); };
  }

  function ganttChart(run, flows) {
    const t0 = Date.parse(run.started);
    const spans = flows.map(f => {
      const a = f.started ? Date.parse(f.started) : t0, b = f.ended ? Date.parse(f.ended) : (a + (f.duration_s || 0) * 1000);
      return [f, a - t0, Math.max(b - t0, a - t0)];
    });
    const total = Math.max(1, (run.duration_s || 0) * 1000, ...spans.map(x => x[2]));
    const W = 1000, row = 18, left = 260, H = spans.length * row + 24;
    const colors = { completed: '#2f9e5b', failed: '#d64545', running: '#2f7fd8', interrupted: '#d9822b' };
    return s('svg', { viewBox: '0 0 ' + W + ' ' + H, width: '100%', height: H, class: 'gantt' },
      spans.map(([f, a, b], i) => [
        s('text', { x: left - 8, y: i * row + 13, 'font-size': 11, 'text-anchor': 'end', fill: '#1d2433', text: f.flow }),
        s('rect', { x: left + (a / total) * (W - left - 10), y: i * row + 3, height: row - 6, rx: 2,
          width: Math.max(2, ((b - a) / total) * (W - left - 10)), fill: colors[f.state] || '#98a2b3' },
          s('title', { text: f.flow + ': ' + f.state + ', ' + dur(f.duration_s) + ', ' + num(f.rows_written) + ' rows written' }))]),
      s('text', { x: W - 10, y: H - 4, 'font-size': 10, fill: '#667085', 'text-anchor': 'end', text: dur(total / 1000) }));
  }

  function batchesTable(f) {
    return table(['batch', 'at', { t: 'duration', cls: 'num' }, { t: 'read', cls: 'num' }, { t: 'written', cls: 'num' },
      { t: 'dropped', cls: 'num' }, { t: 'quarantined', cls: 'num' }, { t: 'late', cls: 'num' }, { t: 'duplicates', cls: 'num' },
      'source offsets', 'expectations', 'metrics'], f.batches.map(b => h('tr', { dataset: { batch: b.batch_id } },
      h('td', { text: b.batch_id }), h('td', { text: when(b.timestamp) }), h('td', { class: 'num', text: dur(b.duration_s) }),
      countCell(b.rows_read), countCell(b.rows_written), countCell(b.rows_dropped), countCell(b.rows_quarantined, 'failed-count'),
      countCell(b.rows_late), countCell(b.rows_duplicate),
      h('td', null, b.sources ? h('pre', { class: 'offsets', text: JSON.stringify(b.sources, null, 1) }) : '—'),
      h('td', null, (b.expectations || []).map(e => h('div', null, e.name + ': ', h('span', { class: e.failed ? 'failed-count' : 'zero', text: num(e.failed) + ' failed' }), ' / ' + num(e.passed) + ' passed'))),
      h('td', null, b.metrics ? h('pre', { text: JSON.stringify(b.metrics, null, 1) }) : '—'))));
  }

  async function renderRun(runId) {
    const doc = await api('/api/runs/' + encodeURIComponent(runId));
    const el = main(false);
    const run = doc.run;
    const rows = [];
    const failedFlows = doc.flows.filter(f => f.state === 'failed').map(f => f.flow).join(', ');
    doc.flows.forEach(f => {
      const detail = h('tr', { class: 'batches', dataset: { flowBatches: f.flow }, style: 'display:none' },
        h('td', { colspan: 11 }, f.message ? errorBox(f.message) : null,
          f.error_location ? h('p', null, 'defined at ', h('span', { class: 'error-location', text: f.error_location })) : null,
          f.batches.length ? batchesTable(f) : h('p', { class: 'muted', text: f.state === 'skipped'
            ? 'Not run: the run stopped when ' + (failedFlows || 'an earlier step') + ' failed; the next run processes it.'
            : 'No batch: nothing new for this flow in this run.' }),
          h('p', { class: 'muted', text: 'inputs: ' + ((f.inputs || []).join(', ') || '—') + ' · outputs: ' + ((f.outputs || []).join(', ') || '—') })));
      rows.push(h('tr', { class: 'clickable', dataset: { flow: f.flow }, onclick: () => { detail.style.display = detail.style.display === 'none' ? '' : 'none'; } },
        h('td', null, h('span', { class: 'dot ' + f.state }), f.flow), h('td', null, badge(f.state)), h('td', { class: 'num', text: num(f.batches.length) }),
        countCell(f.rows_read), countCell(f.rows_written), countCell(f.rows_dropped), countCell(f.rows_quarantined, 'failed-count'),
        countCell(f.rows_late), countCell(f.rows_duplicate), h('td', { class: 'num', text: dur(f.duration_s) }),
        h('td', null, f.defined_at ? h('code', { text: f.defined_at }) : '')), detail);
    });
    el.append(h('p', null, h('a', { href: '#/runs', text: '← Runs' })),
      h('h1', null, 'Run ', h('span', { class: 'mono', text: run.run_id }), ' ', badge(run.outcome)),
      h('div', { class: 'card' }, h('dl', { class: 'kv' },
        h('dt', { text: 'started' }), h('dd', { text: when(run.started) }), h('dt', { text: 'duration' }), h('dd', { text: dur(run.duration_s) }),
        h('dt', { text: 'engine' }), h('dd', { text: run.engine || '—' }), h('dt', { text: 'target' }), h('dd', { text: run.target || '—' }),
        h('dt', { text: 'rows' }), h('dd', { text: num(run.rows_read) + ' read, ' + num(run.rows_written) + ' written, ' + num(run.rows_dropped) + ' dropped, ' +
          num(run.rows_quarantined) + ' quarantined, ' + num(run.rows_late) + ' late, ' + num(run.rows_duplicate) + ' duplicates' })),
        run.error ? h('div', { id: 'run-error' }, errorBox(run.error)) : null,
        doc.error_location ? h('p', null, 'at ', h('span', { class: 'error-location', text: doc.error_location })) : null),
      doc.flows.length ? h('div', { class: 'card' }, h('h3', { text: 'Flows over time' }), ganttChart(run, doc.flows.filter(f => f.started))) : null,
      h('h2', { text: 'Flows (click one for its batches, offsets and errors)' }),
      table(['flow', 'state', { t: 'batches', cls: 'num' }, { t: 'read', cls: 'num' }, { t: 'written', cls: 'num' }, { t: 'dropped', cls: 'num' },
        { t: 'quarantined', cls: 'num' }, { t: 'late', cls: 'num' }, { t: 'duplicates', cls: 'num' }, { t: 'duration', cls: 'num' }, 'defined at'],
        rows, { id: 'flows-table' }));
    // a failed flow opens by itself
    doc.flows.filter(f => f.state === 'failed').forEach(f => {
      const d = el.querySelector('tr[data-flow-batches="' + CSS.escape(f.flow) + '"]'); if (d) d.style.display = '';
    });
    S.refresh = async () => { if (run.outcome === 'running') await renderRun(runId); };
  }

  // ------------------------------------------------------------------ data quality

  function sparkline(series, width, height) {
    const pts = series.map((c, i) => [i, c && (c.passed + c.failed) ? c.failed / (c.passed + c.failed) : null]);
    const max = Math.max(0.0001, ...pts.map(p => p[1] || 0));
    const step = series.length > 1 ? (width - 4) / (series.length - 1) : 0;
    const path = pts.filter(p => p[1] !== null).map((p, k) => (k ? 'L' : 'M') + (2 + p[0] * step).toFixed(1) + ' ' + (height - 2 - (p[1] / max) * (height - 4)).toFixed(1)).join(' ');
    const lastPt = pts.filter(p => p[1] !== null).pop();
    const dot = lastPt ? s('circle', { cx: (2 + lastPt[0] * step).toFixed(1), cy: (height - 2 - (lastPt[1] / max) * (height - 4)).toFixed(1), r: 2.5, fill: '#d64545' }) : null;
    return s('svg', { width, height, class: 'spark' }, path ? s('path', { d: path, fill: 'none', stroke: '#d64545', 'stroke-width': 1.5 }) : null, dot,
      s('title', { text: 'failed share per run, last ' + series.length + ' runs (max ' + (max * 100).toFixed(2) + '%)' }));
  }

  function ruleChart(runs, rule) {
    const W = 1000, H = 150, left = 50, bottom = 22;
    const cells = rule.series;
    const max = Math.max(1, ...cells.map(c => c ? c.passed + c.failed : 0));
    const bw = Math.min(60, (W - left - 10) / Math.max(1, cells.length));
    const y = v => H - bottom - (v / max) * (H - bottom - 14);
    return s('svg', { class: 'dq-chart', viewBox: '0 0 ' + W + ' ' + H, width: '100%', height: H, 'data-rule': rule.name },
      s('text', { x: left, y: 10, 'font-size': 10, fill: '#667085', text: rule.name + ': passed (green) and failed (red) rows per run' }),
      s('line', { x1: left, x2: W - 10, y1: H - bottom, y2: H - bottom, stroke: '#c9ced8' }),
      s('text', { x: left - 4, y: y(max) + 4, 'font-size': 10, 'text-anchor': 'end', fill: '#667085', text: num(max) }),
      cells.map((c, i) => {
        const x = left + i * bw + bw * 0.15, w = Math.max(1, bw * 0.7);
        if (!c) return s('rect', { x, y: H - bottom - 1, width: w, height: 1, fill: '#d5dae3' });
        const title = runs[i].run_id + ' (' + when(runs[i].started) + '): ' + num(c.passed) + ' passed, ' + num(c.failed) + ' failed';
        return s('g', { 'data-run': runs[i].run_id },
          s('rect', { x, y: y(c.passed + c.failed), width: w, height: Math.max(0, y(c.failed) - y(c.passed + c.failed)), fill: '#8fd1a8' }),
          s('rect', { class: 'failed-bar', x, y: y(c.failed), width: w, height: Math.max(c.failed ? 1.5 : 0, H - bottom - y(c.failed)), fill: '#d64545' }),
          s('title', { text: title }));
      }),
      s('text', { x: left, y: H - 6, 'font-size': 10, fill: '#667085', text: runs.length ? when(runs[0].started) : '' }),
      s('text', { x: W - 10, y: H - 6, 'font-size': 10, fill: '#667085', 'text-anchor': 'end', text: runs.length ? when(runs[runs.length - 1].started) : '' }));
  }

  async function showRows(target, tableName, rule, title) {
    target.replaceChildren(h('p', { class: 'muted', text: 'Loading ' + tableName + '…' }));
    try {
      const doc = await api('/api/tables/' + encodeURIComponent(tableName) + '/rows', { limit: 100, rule: rule || '' });
      target.replaceChildren(h('h3', { text: title + ' — ' + tableName + (doc.truncated ? ' (first ' + doc.rows.length + ')' : ' (' + doc.rows.length + ' rows)') }),
        doc.rows.length ? rowsTable(doc, '_failed_rules') : h('p', { class: 'muted', text: 'No rows.' }));
      target.dataset.loaded = tableName + (rule ? ':' + rule : '');
    } catch (err) { fail(target, err); }
  }

  async function renderQuality() {
    const doc = await api('/api/quality', { last: S.qualityLast });
    const el = main(false);
    el.append(h('div', { class: 'row' }, h('h1', { text: 'Data quality' }), h('span', { class: 'spacer' }),
      h('label', null, 'trend over the last ', h('select', { id: 'quality-last', onchange: ev => { S.qualityLast = +ev.target.value; renderQuality(); } },
        [10, 20, 50].map(k => h('option', { value: k, selected: k === S.qualityLast ? true : null, text: k + ' runs' }))))));
    if (!doc.tables.length) el.append(h('p', { class: 'muted', text: 'No expectations, quarantined or late rows in the last ' + doc.last + ' runs.' }));
    doc.tables.forEach(t => {
      const rowsPanel = h('div', { class: 'dq-rows', 'data-rows-for': t.table });
      const chartBox = h('div', { class: 'dq-chart-box' });
      const pick = rule => {
        S.qualityRule[t.table] = rule.name;
        card.querySelectorAll('tr.dq-rule').forEach(tr => tr.classList.toggle('selected', tr.dataset.rule === rule.name));
        chartBox.replaceChildren(ruleChart(doc.runs, rule));
      };
      const rules = t.rules.map(r => {
        const last = r.last || { passed: 0, failed: 0 };
        const share = last.passed + last.failed ? (100 * last.failed / (last.passed + last.failed)).toFixed(2) + '%' : '—';
        return h('tr', { class: 'clickable dq-rule', dataset: { rule: r.name }, title: r.sql || '', onclick: () => {
          pick(r);
          if (t.quarantine_table && r.action === 'drop') showRows(rowsPanel, t.quarantine_table, r.name, 'Quarantined rows that broke ' + r.name);
          else rowsPanel.replaceChildren(h('p', { class: 'muted', text: r.action === 'warn' ? r.name + ' only warns: failing rows were kept in ' + t.table + '.' :
            r.action === 'fail' ? r.name + ' stops the flow: nothing of a failing batch is written.' : 'No quarantine table for ' + t.table + '.' }));
        } },
        h('td', null, h('code', { text: r.name })), h('td', null, badge(r.action || 'warn')),
        h('td', { class: 'num passed', text: num(last.passed) }), h('td', { class: 'num failed' + (last.failed ? ' failed-count' : ' zero'), text: num(last.failed) }),
        h('td', { class: 'num', text: share }), h('td', { class: 'num' + (r.total_failed ? ' failed-count' : ' zero'), text: num(r.total_failed) }),
        h('td', null, sparkline(r.series, 140, 24)));
      });
      const links = h('div', { class: 'row' });
      if (t.quarantine_table) links.append(h('button', { class: 'show-quarantine', onclick: () => showRows(rowsPanel, t.quarantine_table, null, 'Quarantined rows') },
        'Quarantined rows (' + num(t.quarantined.reduce((a, b) => a + b, 0)) + ' in these runs)'));
      if (t.late_table) links.append(h('button', { class: 'show-late', onclick: () => showRows(rowsPanel, t.late_table, null, 'Late rows') },
        'Late rows (' + num(t.late.reduce((a, b) => a + b, 0)) + ' in these runs)'));
      const card = h('section', { class: 'card dq-table', dataset: { table: t.table } },
        h('h2', null, t.table, ' ', h('span', { class: 'muted', text: t.layer ? '· ' + t.layer : '' }), ' ',
          h('a', { href: '#/tables/' + encodeURIComponent(t.table), text: 'table →' })),
        t.rules.length ? table(['rule', 'action', { t: 'passed (last run)', cls: 'num' }, { t: 'failed (last run)', cls: 'num' }, { t: 'failed %', cls: 'num' },
          { t: 'failed in ' + doc.runs.length + ' runs', cls: 'num' }, 'trend'], rules) : h('p', { class: 'muted', text: 'No expectations declared.' }),
        chartBox, links, rowsPanel);
      el.append(card);
      const chosen = t.rules.find(r => r.name === S.qualityRule[t.table]) || t.rules.find(r => r.total_failed) || t.rules[0];
      if (chosen) pick(chosen);
    });
    S.refresh = async () => { if (S.route.page === 'quality') await renderQuality(); };
  }

  // ------------------------------------------------------------------ tables and SQL

  function sqlBox() {
    const area = h('textarea', { id: 'sql', spellcheck: 'false', placeholder: 'SELECT * FROM event_log ORDER BY timestamp DESC LIMIT 20' });
    const out = h('div', { id: 'sql-result' });
    const run = async () => {
      out.replaceChildren(h('p', { class: 'muted', text: 'Running…' }));
      try {
        const res = await fetch('/api/sql', { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
          body: JSON.stringify({ sql: area.value, limit: 200 }) });
        const doc = await res.json();
        if (!res.ok) throw new Error(doc.error || res.statusText);
        out.replaceChildren(h('p', { class: 'muted', text: doc.rows.length + ' row(s)' + (doc.truncated ? ' (first ' + doc.limit + ')' : '') + ' in ' + dur(doc.seconds) }), rowsTable(doc));
      } catch (err) { out.replaceChildren(h('div', { class: 'error', id: 'sql-error', text: String(err.message || err) })); }
    };
    area.addEventListener('keydown', ev => { if ((ev.ctrlKey || ev.metaKey) && ev.key === 'Enter') run(); });
    if (REPORT) return h('div', { class: 'card sql-box' }, h('h3', { text: 'SQL' }), h('p', { class: 'muted', text: 'The SQL box needs `assay ui`; a report is a snapshot.' }));
    return h('div', { class: 'card sql-box' }, h('h3', { text: 'SQL (read-only; every table by name, and event_log)' }), area,
      h('div', { class: 'row' }, h('button', { class: 'primary', id: 'sql-run', onclick: run, text: 'Run query' }), h('span', { class: 'muted', text: 'Ctrl+Enter' })), out);
  }

  async function renderTables() {
    const doc = await api('/api/tables');
    const el = main(false);
    const rows = doc.tables.map(t => h('tr', { class: 'clickable', dataset: { table: t.name }, onclick: () => { location.hash = '#/tables/' + encodeURIComponent(t.name); } },
      h('td', { text: t.schema }), h('td', null, h('a', { href: '#/tables/' + encodeURIComponent(t.name), text: t.name })),
      h('td', { text: (t.kind || '').replace(/_/g, ' ') }), countCell(t.rows), h('td', { class: 'num', text: bytes(t.size_bytes) }),
      h('td', { class: 'num', text: num(t.files) }), h('td', { text: (t.partition_cols || []).join(', ') }), h('td', { text: (t.cluster_by || []).join(', ') }),
      h('td', { class: 'num', text: num(t.version) }), h('td', { text: when(t.modified) })));
    el.append(h('h1', { text: 'Tables' }), sqlBox(),
      doc.tables.length ? table(['schema', 'table', 'kind', { t: 'rows', cls: 'num' }, { t: 'size', cls: 'num' }, { t: 'files', cls: 'num' },
        'partitioned by', 'clustered by', { t: 'version', cls: 'num' }, 'modified'], rows, { id: 'tables-table' })
        : h('p', { class: 'muted', text: 'No tables yet: run the pipeline.' }));
    S.refresh = null;
  }

  async function renderTable(name) {
    const doc = await api('/api/tables/' + encodeURIComponent(name), { preview: 20 });
    const el = main(false);
    const kv = h('dl', { class: 'kv' });
    const add = (k, v) => { if (v !== null && v !== undefined && v !== '') kv.append(h('dt', { text: k }), h('dd', null, v)); };
    add('schema', doc.schema); add('kind', (doc.kind || '').replace(/_/g, ' ')); add('rows', num(doc.rows)); add('size', bytes(doc.size_bytes));
    add('files', num(doc.files)); add('version', num(doc.version)); add('modified', when(doc.modified)); add('path', h('code', { text: doc.path }));
    add('partitioned by', (doc.partition_cols || []).join(', ') || 'not partitioned');
    add('clustered by', (doc.cluster_by || []).join(', ') || '—');
    add('defined at', doc.defined_at ? h('code', { text: doc.defined_at }) : null);
    add('comment', doc.comment);
    const props = Object.assign({}, doc.properties || {}, doc.declared_properties || {});
    add('properties', Object.keys(props).length ? h('pre', { text: JSON.stringify(props, null, 1) }) : null);
    const hist = (doc.history || []).map(x => h('tr', null, h('td', { class: 'num', text: x.version }), h('td', { text: when(x.timestamp) }),
      h('td', { text: x.operation }), h('td', null, h('pre', { text: JSON.stringify(x.parameters) })),
      h('td', null, h('pre', { text: JSON.stringify(x.metrics) })), h('td', null, x.metadata ? h('pre', { text: JSON.stringify(x.metadata) }) : '')));
    el.append(h('p', null, h('a', { href: '#/tables', text: '← Tables' })), h('h1', { text: doc.name }), h('div', { class: 'card' }, kv),
      h('h2', { text: 'Columns' }), table(['column', 'type', 'nullable'], doc.columns.map(c => h('tr', null, h('td', null, h('code', { text: c.name })),
        h('td', { class: 'mono', text: c.type }), h('td', { text: c.nullable ? 'yes' : 'no' }))), { id: 'columns-table' }),
      h('h2', { text: 'First rows' }), doc.preview.rows.length ? rowsTable(doc.preview, '_failed_rules') : h('p', { class: 'muted', text: 'Empty.' }),
      h('h2', { text: 'Delta history' }), h('div', { class: 'scroll' }, table([{ t: 'version', cls: 'num' }, 'at', 'operation', 'parameters', 'metrics', 'metadata'], hist, { id: 'history-table' })));
    S.refresh = null;
  }

  // ------------------------------------------------------------------ start

  async function start() {
    try {
      const ov = await api('/api/overview');
      document.getElementById('pipeline-name').textContent = ov.pipeline + (ov.target ? ' · ' + ov.target : '');
      document.title = 'Assay · ' + ov.pipeline;
      setLive({ running: ov.latest && ov.latest.outcome === 'running', latest: ov.latest });
    } catch (err) { /* shown by the page itself */ }
    window.addEventListener('hashchange', route);
    route();
    if (!REPORT) setTimeout(poll, 0);
  }

  // For tests and for the curious: the graph's Cytoscape instance and the current documents.
  window.assayUI = { cy: () => S.cy, graph: () => S.graph, state: S, report: !!REPORT };
  if (typeof cytoscape === 'undefined') {
    document.getElementById('main').replaceChildren(errorBox('The graph library is missing: run scripts/ui-vendor.sh (it vendors Cytoscape.js and cytoscape-dagre from npm).'));
  } else {
    start();
  }
})();
