// Two people chat through chatd's page in headless Chromium (driven by playwright-core).
// Usage: node chat.mjs BASE_URL   (http://127.0.0.1:PORT or https://localhost:PORT)
import { chromium } from 'playwright-core';

const base = process.argv[2];
const secure = base.startsWith('https:');
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const fail = async (msg) => { console.error('browser test FAILED: ' + msg); await browser.close(); process.exit(1); };

try {
  const room = 'browser' + Date.now();
  const open = async (nick, viewport) => {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.setDefaultTimeout(10000);
    const sockets = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    // The handshake as Chromium's network stack saw it: did the server accept permessage-deflate?
    const handshakes = [];
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    cdp.on('Network.webSocketHandshakeResponseReceived', (e) => handshakes.push(e.response.headers));
    // Pass WebSockets through a route so the test can cut the connection like a network drop.
    const link = { offline: false, current: null };
    await page.routeWebSocket(/\/ws/, (ws) => {
      if (link.offline) { ws.close({ code: 1006 }); return; }
      link.current = { ws, server: ws.connectToServer() };
    });
    page.on('pageerror', (e) => fail(`${nick}: page error ${e}`));
    await page.goto(`${base}/`);
    await page.fill('#nick', nick);
    await page.fill('#room', room);
    await page.click('#join');
    await page.waitForSelector(`#status.online:has-text("online as ${nick}")`);
    return { page, sockets, link, handshakes };
  };
  const alice = await open('alice', { width: 1024, height: 700 });
  const bob = await open('bob', { width: 375, height: 667 }); // a phone
  await alice.page.waitForSelector('#members li:has-text("bob")');

  await alice.page.fill('#text', 'hello from alice');
  await alice.page.press('#text', 'Enter');
  await bob.page.waitForSelector('#messages li:has(.nick:text-is("alice")):has(.text:text-is("hello from alice"))');
  await bob.page.fill('#text', 'hi alice, bob here');
  await bob.page.click('#send');
  await alice.page.waitForSelector('#messages li:has(.nick:text-is("bob")):has(.text:text-is("hi alice, bob here"))');

  // A short drop: alice goes offline, bob talks, alice comes back and catches up via `since`.
  alice.link.offline = true;
  await alice.link.current.server.close();
  await alice.link.current.ws.close({ code: 1006 });
  await alice.page.waitForSelector('#status:not(.online)');
  await bob.page.waitForSelector('#messages li.notice:has-text("alice left")');
  for (const text of ['while you were away 1', 'while you were away 2']) {
    await bob.page.fill('#text', text);
    await bob.page.press('#text', 'Enter');
    await bob.page.waitForSelector(`#messages li .text:text-is("${text}")`);
  }
  alice.link.offline = false;
  await alice.page.waitForSelector('#status.online', { timeout: 20000 });
  for (const text of ['while you were away 1', 'while you were away 2']) {
    await alice.page.waitForSelector(`#messages li .text:text-is("${text}")`);
  }
  const reconnect = alice.sockets[alice.sockets.length - 1];
  if (alice.sockets.length < 2 || !/[?&]since=\d+/.test(reconnect)) await fail(`no reconnect with since: ${JSON.stringify(alice.sockets)}`);
  if (await alice.page.locator('#messages li.notice:has-text("may have been missed")').count()) await fail('recovery reported a gap');
  const seen = await alice.page.locator('#messages li .text:text-is("while you were away 1")').count();
  if (seen !== 1) await fail(`message shown ${seen} times after recovery`);

  // The phone layout keeps the composer on screen.
  const box = await bob.page.locator('#send').boundingBox();
  if (!box || box.x + box.width > 375 || box.y + box.height > 667) await fail(`send button off screen on a phone: ${JSON.stringify(box)}`);

  for (const [who, h] of [['alice', alice.handshakes], ['bob', bob.handshakes]]) {
    const ext = (headers) => Object.entries(headers).find(([k]) => k.toLowerCase() === 'sec-websocket-extensions')?.[1] || '';
    if (!h.length || !h.every((headers) => /^permessage-deflate\b/.test(ext(headers)))) {
      await fail(`${who}: permessage-deflate not negotiated: ${JSON.stringify(h)}`);
    }
  }
  const extensions = Object.entries(alice.handshakes[0]).find(([k]) => k.toLowerCase() === 'sec-websocket-extensions')[1];

  const scheme = secure ? 'wss://' : 'ws://';
  for (const [who, s] of [['alice', alice.sockets], ['bob', bob.sockets]]) {
    if (!s.length || !s.every((u) => u.startsWith(scheme))) await fail(`${who} used ${JSON.stringify(s)}, expected ${scheme}`);
  }
  console.log(`browser chat OK over ${base} (${alice.sockets[0]}; ${extensions})`);
  await browser.close();
} catch (e) {
  await fail(e.stack || String(e));
}
