// chatd's page: one room at a time, wire protocol v1 only (docs/PROTOCOL.md).
// Reconnects by itself and asks for what it missed with `since`.
'use strict';

const $ = (id) => document.getElementById(id);
const state = {
  ws: null,
  nick: '',
  room: '',
  lastSeq: null,      // highest sequence number seen in this room
  members: new Set(),
  retry: 0,           // reconnect attempts since the last successful hello
  joined: false,      // a hello arrived on this page at least once
  closing: false,
};

function setStatus(text, cls) {
  const el = $('status');
  el.textContent = text;
  el.className = 'status ' + cls;
}

function time(ts) {
  const d = new Date(ts);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function addLine(parts, cls) {
  const li = document.createElement('li');
  if (cls) li.className = cls;
  for (const [text, partCls] of parts) {
    const span = document.createElement('span');
    if (partCls) span.className = partCls;
    span.textContent = text; // never innerHTML: messages are untrusted
    li.appendChild(span);
  }
  const list = $('messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.appendChild(li);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function showMessage(m) {
  if (state.lastSeq !== null && m.seq <= state.lastSeq) return; // already shown
  state.lastSeq = m.seq;
  addLine([[time(m.ts), 'time'], [m.nick, 'nick'], [m.text, 'text']], m.nick === state.nick ? 'mine' : '');
}

function renderMembers() {
  const ul = $('members');
  ul.replaceChildren();
  for (const nick of [...state.members].sort()) {
    const li = document.createElement('li');
    li.textContent = nick === state.nick ? nick + ' (you)' : nick;
    ul.appendChild(li);
  }
  $('count').textContent = '(' + state.members.size + ')';
}

function url() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const q = new URLSearchParams({ room: state.room });
  if (state.nick) q.set('nick', state.nick);
  if (state.lastSeq !== null) q.set('since', String(state.lastSeq));
  return scheme + '//' + location.host + '/ws?' + q;
}

function connect() {
  setStatus(state.joined ? 'reconnecting…' : 'connecting…', 'connecting');
  const ws = new WebSocket(url());
  state.ws = ws;
  ws.onmessage = (e) => {
    let m;
    try { m = JSON.parse(e.data); } catch { return; }
    handle(m);
  };
  ws.onclose = (e) => {
    if (state.ws !== ws) return;
    state.ws = null;
    setStatus('offline', 'offline');
    if (state.closing) return;
    if (e.code === 1008 && !state.joined) return; // refused (nick taken, bad name): let the user fix it
    // Back off: 0.5 s, 1 s, 2 s ... up to 15 s, with jitter.
    const delay = Math.min(15000, 500 * 2 ** state.retry) * (0.75 + Math.random() / 2);
    state.retry++;
    setTimeout(connect, delay);
  };
}

function handle(m) {
  switch (m.type) {
    case 'hello': {
      const first = !state.joined;
      state.joined = true;
      state.retry = 0;
      state.nick = m.you;
      state.members = new Set(m.members);
      if (!first && !m.recovered) addLine([['Some messages may have been missed while offline.', '']], 'notice');
      for (const h of m.history) showMessage(h);
      if (state.lastSeq === null || m.seq > state.lastSeq) state.lastSeq = m.seq;
      renderMembers();
      setStatus('online as ' + m.you, 'online');
      $('room-title').textContent = '#' + m.room;
      break;
    }
    case 'message': showMessage(m); break;
    case 'join':
      state.members.add(m.nick); renderMembers();
      addLine([[m.nick + ' joined', '']], 'notice');
      break;
    case 'leave':
      state.members.delete(m.nick); renderMembers();
      addLine([[m.nick + ' left', '']], 'notice');
      break;
    case 'nick':
      state.members.delete(m.old); state.members.add(m.new);
      if (m.old === state.nick) state.nick = m.new;
      renderMembers();
      addLine([[m.old + ' is now ' + m.new, '']], 'notice');
      break;
    case 'error':
      // After a drop our old connection may still hold the nick for a moment: retry quietly.
      if (m.code === 'nick_taken' && state.joined) { state.retry = Math.max(state.retry, 1); return; }
      addLine([['Error: ' + (m.code === 'nick_taken' ? 'that nick is taken in this room' : m.text), '']], 'error');
      break;
  }
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  const room = $('room').value.trim();
  if (!room) return;
  if (state.ws) { state.closing = true; state.ws.close(1000); }
  state.closing = false;
  state.room = room;
  state.nick = $('nick').value.trim();
  state.lastSeq = null;
  state.joined = false;
  state.retry = 0;
  state.members = new Set();
  $('messages').replaceChildren();
  $('chat').hidden = false;
  connect();
  $('text').focus();
});

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('text');
  const text = input.value;
  if (!text || !state.ws || state.ws.readyState !== WebSocket.OPEN) return;
  state.ws.send(JSON.stringify({ type: 'message', room: state.room, text }));
  input.value = '';
});

// Preset from the address: /?room=dev&nick=alice
const params = new URLSearchParams(location.search);
if (params.get('room')) $('room').value = params.get('room');
if (params.get('nick')) $('nick').value = params.get('nick');
