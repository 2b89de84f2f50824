// The spate job service's web UI: the jobs page and a job's page (status,
// live output, the job graph with its slowest and skewed steps, cancel).
// Plain JavaScript served from the binary: no build step, no CDN.
'use strict';

const STATES = ['PENDING', 'SETUP_DONE', 'RUNNING', 'CANCEL_PENDING', 'DONE', 'ERROR', 'CANCELLED'];
const KINDS = { sqlJob: 'sql', builtinJob: 'builtin', streamingJob: 'streaming', mrjobJob: 'mrjob', binaryJob: 'binary', streamJob: 'stream' };

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: 'same-origin' }, options || {}));
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : text;
    throw new Error(message || response.statusText);
  }
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function kind(job) {
  for (const [field, word] of Object.entries(KINDS)) if (job[field]) return word;
  return '?';
}

function args(job) {
  for (const field of Object.keys(KINDS)) if (job[field]) return job[field].args || [];
  return [];
}

function badge(state) {
  return el('span', { class: 'state ' + state }, state);
}

function state(job) {
  return job.status ? job.status.state : 'PENDING';
}

function seconds(ns) {
  const s = ns / 1e9;
  return s >= 10 ? s.toFixed(1) + 's' : s >= 0.01 ? s.toFixed(2) + 's' : (s * 1000).toFixed(1) + 'ms';
}

function count(n) {
  return Number(n || 0).toLocaleString('en-US');
}

function show(...nodes) {
  const main = document.getElementById('main');
  main.replaceChildren(...nodes);
}

function failure(error) {
  return el('p', { class: 'error', id: 'failure' }, String(error.message || error));
}

// ---- The jobs page ----

async function jobsPage() {
  const params = new URLSearchParams(location.search);
  const stateSelect = el('select', { id: 'state-filter' },
    el('option', { value: '' }, 'All states'),
    el('option', { value: 'ACTIVE' }, 'Active'),
    el('option', { value: 'NON_ACTIVE' }, 'Ended'),
    STATES.map((s) => el('option', { value: s }, s)));
  stateSelect.value = params.get('state') || '';
  const labelInput = el('input', { id: 'label-filter', placeholder: 'label: env=staging', value: params.get('label') || '' });
  const apply = () => {
    const next = new URLSearchParams();
    if (stateSelect.value) next.set('state', stateSelect.value);
    if (labelInput.value.trim()) next.set('label', labelInput.value.trim());
    history.replaceState(null, '', '/' + (next.toString() ? '?' + next : ''));
    load();
  };
  stateSelect.addEventListener('change', apply);
  labelInput.addEventListener('change', apply);
  const body = el('tbody', { id: 'jobs' });
  const status = el('p', { class: 'muted', id: 'jobs-status' });
  show(
    el('h1', {}, 'Jobs'),
    el('div', { class: 'controls' }, stateSelect, labelInput, el('button', { onclick: apply }, 'Filter')),
    el('table', {},
      el('thead', {}, el('tr', {}, ['Job', 'Type', 'State', 'Labels', 'Since'].map((h) => el('th', {}, h)))),
      body),
    status);

  async function load() {
    const conditions = [];
    if (stateSelect.value) conditions.push('status.state = ' + stateSelect.value);
    const label = labelInput.value.trim();
    if (label.includes('=')) {
      const [key, value] = label.split('=', 2);
      conditions.push('labels.' + key.trim() + ' = ' + value.trim());
    }
    const query = new URLSearchParams({ filter: conditions.join(' AND '), pageSize: '200' });
    try {
      const page = await api('/api/v1/jobs?' + query);
      const jobs = page.jobs || [];
      body.replaceChildren(...jobs.map((job) => el('tr', { 'data-job': job.reference.jobId },
        el('td', {}, el('a', { href: '/jobs/' + encodeURIComponent(job.reference.jobId) }, job.reference.jobId)),
        el('td', {}, kind(job)),
        el('td', {}, badge(state(job))),
        el('td', {}, Object.entries(job.labels || {}).map(([k, v]) => el('span', { class: 'label' }, k + '=' + v))),
        el('td', {}, job.status ? job.status.stateStartTime : ''))));
      status.textContent = jobs.length ? jobs.length + ' job(s)' : 'No job matches.';
    } catch (error) {
      status.replaceWith(failure(error));
    }
  }
  await load();
  setInterval(load, 2000);
}

// ---- The clusters page ----

async function clustersPage() {
  const body = el('tbody', { id: 'clusters' });
  const status = el('p', { class: 'muted', id: 'clusters-status' });
  show(
    el('h1', {}, 'Clusters'),
    el('table', {},
      el('thead', {}, el('tr', {}, ['Cluster', 'State', 'Executors', 'Healthy', 'Slots', 'Scheduler', 'Active jobs', 'Labels', 'Since'].map((h) => el('th', {}, h)))),
      body),
    status);

  async function load() {
    try {
      const list = await api('/api/v1/clusters');
      const clusters = await Promise.all((list.clusters || []).map((c) =>
        api('/api/v1/clusters/' + encodeURIComponent(c.clusterName)).catch(() => c)));
      body.replaceChildren(...clusters.map((c) => {
        const executors = c.executors || [];
        const state = c.status ? c.status.state : 'CREATING';
        return el('tr', { 'data-cluster': c.clusterName },
          el('td', {}, c.clusterName),
          el('td', {}, el('span', { class: 'state ' + (state === 'RUNNING' ? '' : state === 'ERROR' ? 'ERROR' : 'CANCELLED'), title: (c.status && c.status.detail) || '' }, state)),
          el('td', { class: 'num' }, c.config.executorCount),
          el('td', { class: 'num' }, executors.filter((e) => e.healthy).length),
          el('td', { class: 'num' }, executors.reduce((n, e) => n + e.slots, 0)),
          el('td', {}, el('code', {}, c.schedulerAddress || '')),
          el('td', {}, (c.activeJobs || []).map((j) => el('a', { href: '/jobs/' + encodeURIComponent(j), class: 'label' }, j))),
          el('td', {}, Object.entries(c.labels || {}).map(([k, v]) => el('span', { class: 'label' }, k + '=' + v))),
          el('td', {}, c.status ? c.status.stateStartTime : ''));
      }));
      status.textContent = clusters.length ? clusters.length + ' cluster(s)' : 'No cluster: create one with spate clusters create NAME.';
    } catch (error) {
      status.replaceWith(failure(error));
    }
  }
  await load();
  setInterval(load, 2000);
}

// ---- A job's page ----

async function jobPage(id) {
  const path = '/api/v1/jobs/' + encodeURIComponent(id);
  let job;
  try {
    job = await api(path);
  } catch (error) {
    show(el('h1', {}, 'Job ' + id), failure(error));
    return;
  }
  const stateCell = el('dd', { id: 'state' });
  const detailsCell = el('dd', { id: 'details' });
  const cancel = el('button', { id: 'cancel', class: 'danger' }, 'Cancel');
  const history = el('tbody', { id: 'history' });
  const logs = el('pre', { class: 'logs', id: 'logs' });
  const graph = el('div', { class: 'graph', id: 'graph' }, el('p', { class: 'muted' }, 'The graph is drawn when the job has ended.'));
  const steps = el('tbody', { id: 'steps' });
  // A stream job's batches (hidden until it has run one).
  const streamTotals = el('p', { id: 'stream-totals' });
  const batches = el('tbody', { id: 'batches' });
  const stream = el('section', { id: 'stream', hidden: true },
    el('h2', {}, 'Stream progress'),
    streamTotals,
    el('table', {}, el('thead', {}, el('tr', {}, ['Batch', 'Rows in', 'In rows/s', 'Processed rows/s', 'Duration', 'Watermark', 'Lag', 'State', 'Panes', 'Late', 'Lines out'].map((h) => el('th', {}, h)))), batches));
  show(
    el('h1', {}, 'Job ', el('code', {}, job.reference.jobId)),
    el('dl', { class: 'summary' },
      el('dt', {}, 'State'), stateCell,
      el('dt', {}, 'Details'), detailsCell,
      el('dt', {}, 'Type'), el('dd', {}, kind(job)),
      el('dt', {}, 'Cluster'), el('dd', {}, (job.placement && job.placement.clusterName) || 'none: on the server\'s host'),
      el('dt', {}, 'Arguments'), el('dd', {}, el('code', {}, args(job).join(' '))),
      el('dt', {}, 'Labels'), el('dd', {}, Object.entries(job.labels || {}).map(([k, v]) => el('span', { class: 'label' }, k + '=' + v))),
      el('dt', {}, 'UUID'), el('dd', {}, el('code', {}, job.jobUuid))),
    el('div', { class: 'controls' }, cancel),
    stream,
    el('h2', {}, 'Output'), logs,
    el('h2', {}, 'Job graph'),
    el('p', { class: 'legend' }, 'Each step: rows produced, compute time, spills. ',
      el('span', { class: 'slow' }, 'Red'), ': the slowest step of its plan. ',
      el('span', { class: 'skew' }, 'Orange'), ': skewed (largest partition over twice the median).'),
    graph,
    el('h2', {}, 'Steps'),
    el('table', {}, el('thead', {}, el('tr', {}, ['Plan', 'Step', 'Operator', 'Rows in', 'Rows out', 'Bytes read', 'Compute', 'Spills', 'Skew'].map((h) => el('th', {}, h)))), steps),
    el('h2', {}, 'Plan'),
    el('pre', { class: 'plan', id: 'plan' }),
    el('h2', {}, 'Status history'),
    el('table', {}, el('thead', {}, el('tr', {}, ['State', 'Substate', 'Since', 'Details'].map((h) => el('th', {}, h)))), history));

  function render(current) {
    job = current;
    stateCell.replaceChildren(badge(state(job)));
    detailsCell.textContent = (job.status && job.status.details) || '';
    cancel.disabled = job.done || state(job) === 'CANCEL_PENDING';
    cancel.hidden = job.done;
    const rows = (job.statusHistory || []).concat(job.status ? [job.status] : []);
    history.replaceChildren(...rows.map((s) => el('tr', {},
      el('td', {}, badge(s.state)), el('td', {}, s.substate || ''),
      el('td', {}, s.stateStartTime), el('td', {}, s.details || ''))));
  }
  render(job);

  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    try {
      render(await api(path + ':cancel', { method: 'POST' }));
    } catch (error) {
      detailsCell.textContent = String(error.message || error);
    }
  });

  async function drawGraph() {
    try {
      const g = await api(path + '/graph');
      drawPlans(g.plans || [], graph, steps);
      drawStages(g.cluster_stages, graph);
      document.getElementById('plan').textContent = planText(g.plans || []);
    } catch (error) {
      graph.replaceChildren(failure(error));
    }
  }

  async function drawProgress() {
    try {
      renderProgress(await api(path + '/progress'), stream, streamTotals, batches);
    } catch (error) { /* the page keeps its last view */ }
  }

  const poll = setInterval(async () => {
    try { render(await api(path)); } catch (error) { /* the page keeps its last view */ }
    await drawProgress();
  }, 1000);
  await drawProgress();

  await followLogs(path, logs, async (finalState) => {
    clearInterval(poll);
    render(await api(path));
    await drawProgress();
    await drawGraph();
    document.body.dataset.ended = finalState;
  });
}

// A stream job's progress: the run's totals and its last 20 batches,
// newest first.
function renderProgress(p, section, totals, body) {
  const recent = p.recent || [];
  if (!recent.length) return;
  section.hidden = false;
  const late = Object.values(p.lateRecordsByStep || {}).reduce((a, b) => a + b, 0);
  totals.textContent = count(p.batches) + (p.batches === 1 ? ' batch' : ' batches') + ' this run: ' + count(p.inputRows) + ' rows in, ' +
    count(p.outputLines) + ' lines out; ' + count(late) + ' late records over the checkpoint\'s life.';
  // spate-stream's least and greatest timestamps: none seen yet, end of input.
  const watermark = (w) => w <= -2305843009213693952 ? '-' : w >= 2305843009213693951 ? 'end of input' : new Date(w).toISOString();
  body.replaceChildren(...recent.slice(-20).reverse().map((b) => el('tr', {},
    el('td', {}, String(b.batch)),
    el('td', {}, count(b.inputRows)),
    el('td', {}, count(Math.round(b.inputRowsPerSecond))),
    el('td', {}, count(Math.round(b.processedRowsPerSecond))),
    el('td', {}, b.durationMs + ' ms'),
    el('td', {}, watermark(b.watermark)),
    el('td', {}, b.watermarkLagMs == null ? '-' : (b.watermarkLagMs / 1000).toFixed(1) + ' s'),
    el('td', {}, count(b.stateEntries)),
    el('td', {}, count(b.panes)),
    el('td', { class: b.lateRecords ? 'skew' : '' }, count(b.lateRecords)),
    el('td', {}, count(b.outputLines)))));
}

// Reads the job's output as server-sent events (fetch, so the request
// carries the session's credentials) until the `end` event.
async function followLogs(path, pre, onEnd) {
  let offset = 0;
  for (;;) {
    let ended = null;
    try {
      const response = await fetch(path + '/logs?follow=true&offset=' + offset, { credentials: 'same-origin' });
      if (!response.ok) throw new Error(await response.text());
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      let event = 'message';
      let data = [];
      let id = null;
      while (ended === null) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          let line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (line === '') {
            if (data.length) {
              const text = data.join('\n');
              if (event === 'log') {
                pre.append(text);
                pre.scrollTop = pre.scrollHeight;
                if (id !== null) offset = Number(id);
              } else if (event === 'end') {
                ended = text;
              } else if (event === 'error') {
                pre.append(el('span', { class: 'error' }, '\n[the server could not read this log: ' + text + ']'));
                ended = 'ERROR';
              }
            }
            event = 'message'; data = []; id = null;
          } else if (!line.startsWith(':')) {
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            let value = colon < 0 ? '' : line.slice(colon + 1);
            if (value.startsWith(' ')) value = value.slice(1);
            if (field === 'event') event = value;
            else if (field === 'data') data.push(value);
            else if (field === 'id') id = value;
          }
        }
      }
    } catch (error) {
      // The connection dropped: resume from the last offset after a pause.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      continue;
    }
    if (ended !== null) {
      await onEnd(ended);
      return;
    }
  }
}

// ---- The job graph ----

const BOX_W = 230;
const BOX_H = 62;
const GAP_X = 26;
const GAP_Y = 46;

function drawPlans(plans, container, steps) {
  container.replaceChildren();
  steps.replaceChildren();
  if (!plans.length) {
    container.append(el('p', { class: 'muted' }, 'No plan was recorded for this job.'));
    return;
  }
  plans.forEach((plan, index) => {
    const nodes = plan.nodes || [];
    if (!nodes.length) return;
    container.append(el('p', { class: 'muted' }, 'Plan ' + (index + 1)));
    container.append(drawPlan(nodes));
    const slowest = slowestOf(nodes);
    for (const node of nodes) {
      const m = node.metrics || {};
      steps.append(el('tr', { 'data-step': node.step },
        el('td', {}, index + 1),
        el('td', {}, node.step + (node.id === slowest ? '  ← slowest' : '') + (skewed(node) ? '  ← skewed' : '')),
        el('td', {}, node.operator),
        el('td', { class: 'num' }, count(m.input_rows)),
        el('td', { class: 'num' }, count(m.output_rows)),
        el('td', { class: 'num' }, m.bytes_read ? count(m.bytes_read) : ''),
        el('td', { class: 'num' }, seconds(m.elapsed_compute_ns || 0)),
        el('td', { class: 'num' }, count(m.spill_count)),
        el('td', { class: 'num' }, m.skew ? m.skew.toFixed(1) : '–')));
    }
  });
}

// The scheduler's stages of a job run on a cluster, with the percentiles
// of their tasks' durations and inputs; a stage whose largest task input
// is over twice the median is skewed.
function drawStages(clusterStages, container) {
  const rows = [];
  for (const [jobId, stages] of Object.entries(clusterStages || {})) {
    for (const stage of stages || []) {
      const d = stage.task_duration_percentiles || {};
      const inputs = stage.task_input_percentiles || {};
      const skew = inputs.median > 0 ? inputs.max / inputs.median : null;
      rows.push(el('tr', { class: skew !== null && skew > 2 ? 'skewed-stage' : '', 'data-stage': jobId + '/' + stage.stage_id },
        el('td', {}, jobId), el('td', {}, stage.stage_id), el('td', {}, stage.stage_status),
        el('td', { class: 'num' }, count(stage.input_rows)), el('td', { class: 'num' }, count(stage.output_rows)),
        el('td', { class: 'num' }, stage.elapsed_compute || ''),
        el('td', { class: 'num' }, (stage.tasks || []).length),
        el('td', { class: 'num' }, d.median !== undefined ? d.median + ' / ' + d.max + ' ms' : ''),
        el('td', { class: 'num' }, skew === null ? '–' : skew.toFixed(1))));
    }
  }
  if (!rows.length) return;
  container.append(el('h2', {}, 'Cluster stages'),
    el('table', { id: 'stages' },
      el('thead', {}, el('tr', {}, ['Cluster job', 'Stage', 'Status', 'Input rows', 'Output rows', 'Compute', 'Tasks', 'Task time p50 / max', 'Input skew'].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows)));
}

// Each plan as EXPLAIN shows it: its nodes indented under their readers.
function planText(plans) {
  const lines = [];
  plans.forEach((plan, index) => {
    const nodes = plan.nodes || [];
    const byId = new Map(nodes.map((n) => [n.id, n]));
    lines.push('-- plan ' + (index + 1));
    const walk = (id, depth) => {
      const node = byId.get(id);
      if (!node) return;
      lines.push('  '.repeat(depth) + node.detail);
      for (const input of node.inputs || []) walk(input, depth + 1);
    };
    if (nodes.length) walk(nodes[0].id, 0);
  });
  return lines.join('\n');
}

function slowestOf(nodes) {
  let best = null;
  for (const node of nodes) {
    const t = (node.metrics || {}).elapsed_compute_ns || 0;
    if (t > 0 && (best === null || t > best.t)) best = { id: node.id, t };
  }
  return best ? best.id : null;
}

function skewed(node) {
  const skew = (node.metrics || {}).skew;
  return typeof skew === 'number' && skew > 2;
}

// A tidy tree: inputs above the step that reads them (data flows down),
// leaves left to right, each step centred over its inputs.
function drawPlan(nodes) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const depth = new Map();
  const x = new Map();
  let nextLeaf = 0;
  let maxDepth = 0;
  const place = (id, d) => {
    const node = byId.get(id);
    depth.set(id, d);
    maxDepth = Math.max(maxDepth, d);
    const inputs = (node.inputs || []).filter((i) => byId.has(i) && !depth.has(i));
    if (!inputs.length) {
      x.set(id, nextLeaf++);
      return;
    }
    for (const input of inputs) place(input, d + 1);
    x.set(id, inputs.reduce((sum, i) => sum + x.get(i), 0) / inputs.length);
  };
  place(nodes[0].id, 0);
  for (const node of nodes) if (!depth.has(node.id)) place(node.id, 0);
  const width = Math.max(1, nextLeaf) * (BOX_W + GAP_X) + GAP_X;
  const height = (maxDepth + 1) * (BOX_H + GAP_Y) + GAP_Y;
  const left = (id) => GAP_X + x.get(id) * (BOX_W + GAP_X);
  const top = (id) => GAP_Y / 2 + (maxDepth - depth.get(id)) * (BOX_H + GAP_Y);
  const slowest = slowestOf(nodes);
  const drawing = svg('svg', { width, height, viewBox: '0 0 ' + width + ' ' + height, role: 'img', 'aria-label': 'job graph' },
    svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: '9', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto-start-reverse' },
      svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#8f98aa' }))));
  for (const node of nodes) {
    for (const input of node.inputs || []) {
      if (!byId.has(input)) continue;
      const x1 = left(input) + BOX_W / 2;
      const y1 = top(input) + BOX_H;
      const x2 = left(node.id) + BOX_W / 2;
      const y2 = top(node.id);
      drawing.append(svg('path', { class: 'edge', d: 'M ' + x1 + ' ' + y1 + ' C ' + x1 + ' ' + (y1 + GAP_Y / 2) + ', ' + x2 + ' ' + (y2 - GAP_Y / 2) + ', ' + x2 + ' ' + (y2 - 2) }));
    }
  }
  for (const node of nodes) {
    const m = node.metrics || {};
    const classes = ['node'];
    if (node.id === slowest) classes.push('slowest');
    if (skewed(node)) classes.push('skewed');
    const name = node.step.length > 30 ? '…' + node.step.slice(-29) : node.step;
    drawing.append(svg('g', { class: classes.join(' '), transform: 'translate(' + left(node.id) + ',' + top(node.id) + ')', 'data-step': node.step },
      svg('title', {}, node.detail),
      svg('rect', { width: BOX_W, height: BOX_H }),
      svg('text', { class: 'step', x: 10, y: 19 }, name),
      svg('text', { class: 'metric', x: 10, y: 37 }, count(m.output_rows) + ' rows · ' + seconds(m.elapsed_compute_ns || 0)),
      svg('text', { class: 'metric', x: 10, y: 53 },
        (m.spill_count ? m.spill_count + ' spills · ' : '') + (m.skew ? 'skew ' + m.skew.toFixed(1) : node.operator))));
  }
  return drawing;
}

// ---- Routing ----

function start() {
  const match = location.pathname.match(/^\/jobs\/([A-Za-z0-9_-]+)$/);
  const page = match ? jobPage(decodeURIComponent(match[1]))
    : location.pathname === '/clusters' ? clustersPage() : jobsPage();
  page.catch((error) => show(failure(error)));
}

start();
