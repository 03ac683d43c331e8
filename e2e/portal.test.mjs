// The portal in a real browser, end to end: Debian's Chromium driven by playwright-core,
// `mailmove serve` with its worker, two real Dovecot servers (the testkit's e2e_servers
// example) and a real SMTP server on loopback (aiosmtpd, e2e/smtp_sink.py) that catches
// the login links.
//
// Run it with `scripts/test`, or by hand after building the two programs:
//   cargo build -p mailmove-cli && cargo build -p mailmove-testkit --example e2e_servers
//   (cd e2e && npm ci) && node --test e2e/
// CARGO_TARGET_DIR says where the programs are (default: target/ in the repository).
// Screenshots of every step go to target/portal-screenshots/ in the repository.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TARGET = resolve(REPO, process.env.CARGO_TARGET_DIR || 'target');
const MAILMOVE = process.env.MAILMOVE_E2E_BIN || join(TARGET, 'debug', 'mailmove');
const SERVERS = join(TARGET, 'debug', 'examples', 'e2e_servers');
const CHROMIUM = process.env.MAILMOVE_E2E_CHROMIUM || '/usr/bin/chromium';
const SHOTS = join(REPO, 'target', 'portal-screenshots');
/// Messages in the first mailbox: enough for its migration to last a few seconds.
const BIG = Number(process.env.MAILMOVE_E2E_BIG || 20000);
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const OWNER = 'owner@example.com';
const OTHER = 'someone.else@example.com';
const PROJECT = 'Acme move';
/// The spreadsheet gives this mailbox a wrong source password.
const WRONG = 'user4@old.example';
const WRONG_PASSWORD = 'not-the-password-4';

// ---------------------------------------------------------------------------------
// Child processes: every one is stopped in `after`, and killed if this process exits.

const children = new Set();

class Proc {
  constructor(name, command, args, options = {}) {
    this.name = name;
    this.lines = [];
    this.waiters = new Set();
    this.child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], ...options });
    children.add(this);
    // Kills the child if this process dies without cleaning up (SIGKILL, a crash):
    // a shell loop in its own process group, stopped first in `stop`.
    this.watchdog = spawn(
      'sh',
      ['-c', 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; kill -s KILL "$2" 2>/dev/null', 'e2e-watchdog',
        String(process.pid), String(this.child.pid)],
      { stdio: 'ignore', detached: true },
    );
    this.watchdog.unref();
    this.exited = new Promise((resolveExit) => {
      this.child.on('exit', (code, signal) => {
        this.watchdog.kill('SIGKILL');
        this.exitStatus = signal ?? code;
        children.delete(this);
        this.notify();
        resolveExit(this.exitStatus);
      });
      this.child.on('error', (error) => {
        this.lines.push({ stream: 'error', line: String(error) });
        children.delete(this);
        this.exitStatus = 'error';
        this.notify();
        resolveExit('error');
      });
    });
    for (const stream of ['stdout', 'stderr']) {
      createInterface({ input: this.child[stream] }).on('line', (line) => {
        this.lines.push({ stream, line });
        this.notify();
      });
    }
  }

  notify() {
    for (const waiter of this.waiters) waiter();
  }

  /// The first line from index `from` on that `match` accepts (returns non-null for).
  waitFor(match, { from = 0, timeout = 30_000, what = 'a line' } = {}) {
    return new Promise((resolveWait, reject) => {
      let index = from;
      const check = () => {
        for (; index < this.lines.length; index++) {
          const found = match(this.lines[index]);
          if (found) {
            done();
            resolveWait({ index, found });
            return;
          }
        }
        if (this.exitStatus !== undefined) {
          done();
          reject(new Error(`${this.name} exited (${this.exitStatus}) before ${what}:\n${this.tail()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: no ${what} within ${timeout} ms:\n${this.tail()}`));
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  tail(n = 40) {
    return this.lines
      .slice(-n)
      .map((l) => `  [${this.name} ${l.stream}] ${l.line}`)
      .join('\n');
  }

  /// Closes stdin (the servers and the SMTP sink exit on that), then SIGINT (serve's
  /// Ctrl-C), then SIGKILL.
  async stop() {
    // The watchdog first, so it cannot act on a pid that is about to be freed.
    this.watchdog.kill('SIGKILL');
    if (this.exitStatus !== undefined) return;
    this.child.stdin.end();
    const exitedWithin = (ms) =>
      Promise.race([this.exited.then(() => true), new Promise((r) => setTimeout(() => r(false), ms))]);
    if (await exitedWithin(3_000)) return;
    this.child.kill('SIGINT');
    if (await exitedWithin(3_000)) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

function killAll() {
  for (const proc of children) {
    try {
      proc.watchdog.kill('SIGKILL');
      proc.child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

// ---------------------------------------------------------------------------------
// The world the test runs in.

let workDir;
let servers; // Proc of e2e_servers
let world; // its servers.json
let smtp; // Proc of smtp_sink.py
let portal; // Proc of mailmove serve
let baseUrl;
let browser;
let shotNumber = 0;
const started = Date.now();

/// Sends one command to e2e_servers and returns its answer (after `ok `).
async function serversCommand(command) {
  const from = servers.lines.length;
  servers.child.stdin.write(`${command}\n`);
  const { found } = await servers.waitFor(
    (l) => l.stream === 'stdout' && /^(ok|error) /.exec(l.line),
    { from, what: `an answer to "${command}"` },
  );
  const line = found.input;
  if (found[1] === 'error') throw new Error(`e2e_servers: ${command}: ${line}`);
  return line.slice(3);
}

/// The next email to `to` received after line `from` of the SMTP sink.
async function mailTo(to, { from = 0, subject = /./, timeout = 15_000 } = {}) {
  const { found } = await smtp.waitFor(
    (l) => {
      if (l.stream !== 'stdout' || !l.line.startsWith('{"from"')) return null;
      const mail = JSON.parse(l.line);
      return mail.to.includes(to) && subject.test(mail.subject) ? mail : null;
    },
    { from, timeout, what: `an email to ${to} with subject ${subject}` },
  );
  return found;
}

async function shot(page, name) {
  shotNumber += 1;
  const file = join(SHOTS, `${String(shotNumber).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/// Polls `check` (which returns a truthy value when satisfied) until it does.
async function until(check, { timeout = 30_000, interval = 100, what = 'a condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last})`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/// Asks for a login link as `email` in `page`, follows the emailed link, lands on My
/// Migrations. `names` are the screenshots' names (form, sent), or none.
async function logIn(page, email, names = []) {
  await page.goto(`${baseUrl}/login`);
  await page.getByLabel('Contact email').fill(email);
  await page.getByLabel('I accept the terms of use').check();
  if (names[0]) await shot(page, names[0]);
  const from = smtp.lines.length;
  await page.getByRole('button', { name: 'Email me a login link' }).click();
  await page.getByRole('heading', { name: 'Check your email' }).waitFor();
  assert.ok((await page.locator('main').innerText()).includes(`We sent a login link to ${email}.`));
  if (names[1]) await shot(page, names[1]);
  const mail = await mailTo(email, { from, subject: /login link/ });
  const link = /(http:\/\/\S+\/login\/[A-Za-z0-9_-]+)/.exec(mail.body)?.[1];
  assert.ok(link, `no login link in the email:\n${mail.body}`);
  assert.ok(link.startsWith(`${baseUrl}/login/`), `${link} is not on ${baseUrl}`);
  await page.goto(link);
  // Opening the link uses nothing up (mail scanners open links); the button logs in.
  await page.getByRole('heading', { name: 'Log in to mailmove' }).waitFor();
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${baseUrl}/migrations`);
  await page.getByRole('heading', { name: 'My Migrations' }).waitFor();
  return link;
}

function csvRows(text) {
  // RFC 4180: quoted cells may hold commas, quotes ("") and line breaks.
  const rows = [];
  let row = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') {
        quoted = false;
      } else {
        cell += c;
      }
    } else if (c === '"') {
      quoted = true;
    } else if (c === ',') {
      row.push(cell);
      cell = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else {
      cell += c;
    }
  }
  if (cell !== '' || row.length > 0) {
    row.push(cell);
    rows.push(row);
  }
  return rows;
}

before(async () => {
  for (const [path, how] of [
    [MAILMOVE, 'cargo build -p mailmove-cli'],
    [SERVERS, 'cargo build -p mailmove-testkit --example e2e_servers'],
    [CHROMIUM, 'apt-get install chromium'],
  ]) {
    if (!existsSync(path)) throw new Error(`${path} is missing: run \`${how}\` (scripts/test does)`);
  }
  await rm(SHOTS, { recursive: true, force: true });
  await mkdir(SHOTS, { recursive: true });
  workDir = await mkdtemp(join(tmpdir(), 'mailmove-e2e-'));

  // The three servers start at once.
  servers = new Proc('e2e_servers', SERVERS, [join(workDir, 'servers'), String(BIG)]);
  smtp = new Proc('smtp', 'python3', [join(REPO, 'e2e', 'smtp_sink.py')]);
  const [{ found: ready }, { found: listening }] = await Promise.all([
    servers.waitFor((l) => l.stream === 'stdout' && /^ready (.+)$/.exec(l.line), {
      timeout: 60_000,
      what: 'the servers',
    }),
    smtp.waitFor((l) => l.stream === 'stdout' && /^\{"listening": (\d+)\}$/.exec(l.line), {
      what: 'the SMTP server',
    }),
  ]);
  world = JSON.parse(await readFile(ready[1], 'utf8'));
  const smtpPort = Number(listening[1]);

  const env = { ...process.env };
  // The portal's own choices only: nothing from the environment of whoever runs this.
  for (const name of ['MAILMOVE_DATABASE', 'MAILMOVE_DATA_DIR', 'MAILMOVE_SMTP_URL', 'MAILMOVE_SECRET_KEY']) {
    delete env[name];
  }
  portal = new Proc(
    'mailmove serve',
    MAILMOVE,
    [
      'serve',
      '--listen', '127.0.0.1:0',
      '--data-dir', join(workDir, 'data'),
      '--smtp-url', `smtp://127.0.0.1:${smtpPort}`,
      '--smtp-from', 'mailmove <mailmove@localhost>',
      '--tls-ca', world.ca_pem,
      // The test's servers are on loopback, which the portal's passes (and its "Find my
      // settings") refuse unless allowed.
      '--allow-network', '127.0.0.0/8',
      '--allow-network', '::1/128',
      // "Find my settings" asks the servers' DNS; the source's test port counts as its
      // IMAPS port.
      '--dns-server', world.dns,
      // One pass at a time, so the passes of a round follow one another on the page;
      // a heartbeat (with progress) every second.
      '--jobs', '1',
      '--lease-seconds', '3',
    ],
    { env: { ...env, MAILMOVE_DISCOVERY_PORTS: `imaps=${world.source.imaps_port}` } },
  );
  const { found: at } = await portal.waitFor(
    (l) => l.stream === 'stderr' && /the portal is at (http:\/\/\S+) /.exec(l.line),
    { what: 'the portal address' },
  );
  baseUrl = at[1];

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  await Promise.all([...children].map((proc) => proc.stop()));
  if (workDir) await rm(workDir, { recursive: true, force: true });
  console.log(`# portal e2e: ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${SHOTS}`);
});

test('the portal, end to end in Chromium', { timeout: 240_000 }, async (t) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const consoleErrors = [];
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  let failed = false;
  const step = async (name, body) => {
    if (failed) return t.test(name, { skip: 'an earlier step failed' });
    return t.test(name, async () => {
      const begun = Date.now();
      try {
        await body();
      } catch (error) {
        failed = true;
        await shot(page, `FAILED-${name.replace(/\W+/g, '-')}`).catch(() => {});
        console.log(`${servers.tail(10)}\n${smtp.tail(10)}\n${portal.tail(40)}`);
        throw error;
      } finally {
        console.log(`# ${name}: ${((Date.now() - begun) / 1000).toFixed(1)} s`);
      }
    });
  };

  const users = world.users;
  const good = users.filter((u) => u.source_email !== WRONG);
  const ids = {}; // source email → mailbox id
  const status = (email) => page.locator(`#status-${ids[email]}`);
  const progress = (email) => page.locator(`#progress-${ids[email]}`);
  let projectUrl;

  await step('log in through the emailed link', async () => {
    await logIn(page, OWNER, ['login', 'login-link-sent']);
    assert.match(await page.locator('main').innerText(), /No migrations yet/);
    await shot(page, 'my-migrations-empty');
  });

  await step('start a new migration: IMAP source, IMAP destination', async () => {
    await page.getByRole('link', { name: 'Start a new migration' }).click();
    await page.getByRole('heading', { name: 'Start a new migration' }).waitFor();
    await page.getByLabel('Migration name').fill(PROJECT);
    // The source from its address: the SRV record of old.example names it.
    await page.getByLabel('Source mailbox address', { exact: true }).fill(users[0].source_email);
    await page.getByRole('button', { name: 'Find my settings' }).first().click();
    await until(async () => /via SRV record _imaps\._tcp\.old\.example/.test(
      await page.locator('#source_found').innerText()), { what: 'the source settings found' });
    assert.equal(await page.getByLabel('Source server address', { exact: true }).inputValue(), 'localhost');
    assert.equal(await page.getByLabel('Source port', { exact: true }).inputValue(), String(world.source.imaps_port));
    assert.equal(await page.getByLabel('Source security', { exact: true }).inputValue(), 'tls');
    assert.ok(await page.getByRole('group', { name: 'Source kind', exact: true })
      .getByRole('radio', { name: 'IMAP', exact: true }).isChecked());
    await shot(page, 'new-migration-settings-found');
    const sides = [['Destination', world.dest, world.dest.imap_port, 'starttls']];
    for (const [side, server, port, security] of sides) {
      const kinds = page.getByRole('group', { name: `${side} kind`, exact: true });
      await kinds.getByRole('radio', { name: 'IMAP', exact: true }).check();
      assert.ok(await kinds.getByRole('radio', { name: 'Exchange', exact: true }).isEnabled());
      await page.getByLabel(`${side} preset`, { exact: true }).selectOption('');
      await page.getByLabel(`${side} server address`, { exact: true }).fill(server.host);
      await page.getByLabel(`${side} port`, { exact: true }).fill(String(port));
      await page.getByLabel(`${side} security`, { exact: true }).selectOption(security);
    }
    assert.ok(
      await page
        .getByRole('group', { name: 'Source kind', exact: true })
        .getByRole('radio', { name: 'POP', exact: true })
        .isEnabled(),
    );
    await shot(page, 'new-migration');
    await page.getByRole('button', { name: 'Create migration' }).click();
    await page.getByRole('heading', { name: `Add mailboxes to ${PROJECT}` }).waitFor();
  });

  await step('two mailboxes typed in, the second row added with +', async () => {
    for (const [n, user] of [[1, users[0]], [2, users[1]]]) {
      if (n > 1) {
        await page.getByRole('link', { name: 'Add a row' }).click();
      }
      const row = page.getByRole('group', { name: `Mailbox ${n}`, exact: true });
      await row.waitFor();
      await row.getByLabel('Source email', { exact: true }).fill(user.source_email);
      await row.getByLabel('Source password', { exact: true }).fill(user.source_password);
      await row.getByLabel('Destination email', { exact: true }).fill(user.dest_email);
      await row.getByLabel('Destination password', { exact: true }).fill(user.dest_password);
    }
    // The row came in by htmx: the first one kept what was typed into it.
    const first = page.getByRole('group', { name: 'Mailbox 1', exact: true });
    assert.equal(await first.getByLabel('Source email', { exact: true }).inputValue(), users[0].source_email);
    await shot(page, 'mailboxes-typed');
    await page.getByRole('button', { name: 'Save mailboxes' }).click();
    await page.getByRole('heading', { name: PROJECT, exact: true }).waitFor();
    projectUrl = page.url().split('?')[0];
    assert.match(projectUrl, /\/projects\/\d+$/);
    assert.equal(await page.getByRole('row').filter({ hasText: '@old.example' }).count(), 2);
  });

  await step('five mailboxes by spreadsheet upload', async () => {
    await page.getByRole('link', { name: 'Add mailboxes' }).first().click();
    await page.getByRole('heading', { name: `Add mailboxes to ${PROJECT}` }).waitFor();
    const href = await page.getByRole('link', { name: 'Download the template (CSV)' }).getAttribute('href');
    const template = await page.request.get(new URL(href, page.url()).href);
    assert.equal(template.status(), 200);
    assert.match(await template.text(), /^Source Email,Source Login Name,Source Password,Destination Email/);
    const lines = [
      'Source Email,Source Login Name,Source Password,Destination Email,Destination Login Name,Destination Password',
      ...users.slice(2).map((u) =>
        [
          u.source_email,
          '',
          u.source_email === WRONG ? WRONG_PASSWORD : u.source_password,
          u.dest_email,
          u.dest_email,
          u.dest_password,
        ].join(','),
      ),
    ];
    assert.equal(lines.length, 6);
    await page.getByLabel('Spreadsheet (CSV or XLSX)').setInputFiles({
      name: 'mailboxes.csv',
      mimeType: 'text/csv',
      buffer: Buffer.from(`${lines.join('\r\n')}\r\n`),
    });
    await shot(page, 'spreadsheet-chosen');
    await page.getByRole('button', { name: 'Upload mailboxes' }).click();
    await page.getByRole('heading', { name: PROJECT, exact: true }).waitFor();
    for (const u of users) {
      const box = page.getByLabel(`Choose ${u.source_email}`, { exact: true });
      ids[u.source_email] = await box.getAttribute('value');
      assert.match(ids[u.source_email], /^\d+$/);
      assert.equal((await status(u.source_email).innerText()).trim(), 'Not started');
    }
    assert.match(await page.locator('#summary').innerText(), /7 mailboxes/);
    await shot(page, 'project-seven-mailboxes');
  });

  await step('trial: the wrong password fails verification with its reason, the rest are ready', async () => {
    await page.getByRole('button', { name: 'Run trial' }).click();
    await page.waitForURL(/notice=queued/);
    // No reload from here on: the cells change by server-sent events.
    for (const u of users) {
      const expected = u.source_email === WRONG ? 'Verify failed' : 'Ready for migration';
      await until(async () => (await status(u.source_email).innerText()).startsWith(expected), {
        what: `${u.source_email} to be "${expected}"`,
      });
    }
    const reason = await status(WRONG).locator('.reason').innerText();
    assert.match(reason, /login refused for user4@old\.example: check the password/);
    assert.ok(!reason.includes(WRONG_PASSWORD));
    await shot(page, 'trial-done');
  });

  await step('migrate: progress updates live until Completed', async () => {
    for (const u of good) await page.getByLabel(`Choose ${u.source_email}`, { exact: true }).check();
    await page.getByRole('button', { name: 'Migrate', exact: true }).click();
    await page.waitForURL(/notice=queued&pass=full&count=6/);
    // Every later change of a status or progress cell is recorded in the page; the
    // marker would vanish with a reload, and so would the record.
    await page.evaluate(() => {
      window.liveMarker = 'not reloaded';
      window.cellLog = [];
      for (const cell of document.querySelectorAll('td[id^="status-"], td[id^="progress-"]')) {
        window.cellLog.push({ id: cell.id, text: cell.textContent, live: false });
        new MutationObserver(() => window.cellLog.push({ id: cell.id, text: cell.textContent, live: true })).observe(
          cell,
          { childList: true, subtree: true, characterData: true },
        );
      }
    });
    let navigations = 0;
    const onNavigation = (frame) => frame === page.mainFrame() && navigations++;
    page.on('framenavigated', onNavigation);
    const big = users[0].source_email;
    // Figures of a pass under way: some but not all of the big mailbox's messages.
    const partly = (text) => {
      const m = / (\d+) of (\d+) messages/.exec(text);
      return m && Number(m[1]) > 0 && Number(m[1]) < Number(m[2]);
    };
    // Both cells read at once: an event could change them between two reads.
    const running = await until(
      async () => {
        const [state, figures] = await page.evaluate(
          (id) => [`status-${id}`, `progress-${id}`].map((cell) => document.getElementById(cell).innerText.trim()),
          ids[big],
        );
        return partly(figures) ? { state, figures } : null;
      },
      { what: `${big}'s progress under way` },
    );
    assert.equal(running.state, 'Migrating');
    await shot(page, 'migrating');
    for (const u of good) {
      await until(async () => (await status(u.source_email).innerText()).trim() === 'Completed', {
        timeout: 60_000,
        what: `${u.source_email} to be Completed`,
      });
    }
    await until(async () => /copied/.test(await progress(big).innerText()), { what: 'the final figures' });
    page.off('framenavigated', onNavigation);
    assert.equal(navigations, 0, 'the page navigated while the migration ran');
    assert.equal(await page.evaluate(() => window.liveMarker), 'not reloaded');
    const log = await page.evaluate(() => window.cellLog);
    const seen = (id) => log.filter((e) => e.id === id).map((e) => e.text.trim());
    const liveSeen = (id) => log.filter((e) => e.id === id && e.live).map((e) => e.text.trim());
    // The big mailbox was seen migrating with figures, then Completed, all in place.
    assert.ok(seen(`status-${ids[big]}`).includes('Migrating'), JSON.stringify(seen(`status-${ids[big]}`)));
    assert.ok(liveSeen(`status-${ids[big]}`).includes('Completed'));
    assert.ok(liveSeen(`progress-${ids[big]}`).some(partly), JSON.stringify(liveSeen(`progress-${ids[big]}`)));
    // Every other chosen mailbox went from Queued to Completed in place.
    for (const u of good.slice(1)) {
      const texts = seen(`status-${ids[u.source_email]}`);
      assert.equal(texts[0], 'Queued', `${u.source_email}: ${JSON.stringify(texts)}`);
      assert.ok(liveSeen(`status-${ids[u.source_email]}`).includes('Completed'));
    }
    // The mailbox that failed its trial was not chosen and did not move.
    assert.match(await status(WRONG).innerText(), /^Verify failed/);
    console.log(`# live progress seen: ${running.figures}; ${log.filter((e) => e.live).length} live cell updates`);
    if (process.env.MAILMOVE_E2E_DEBUG) console.log(JSON.stringify(log, null, 1));
    await shot(page, 'migration-completed');

    assert.match(await progress(big).innerText(), new RegExp(`^${BIG} copied, 0 already there, 0 skipped, 0 failed`));
    for (const u of good) {
      const counts = JSON.parse(await serversCommand(`count ${u.dest_email}`));
      assert.equal(counts.INBOX, u.inbox, `${u.dest_email}: ${JSON.stringify(counts)}`);
      assert.equal(counts.Archive ?? 0, u.archive, `${u.dest_email}: ${JSON.stringify(counts)}`);
    }
    const wrong = users.find((u) => u.source_email === WRONG);
    assert.equal(JSON.parse(await serversCommand(`count ${wrong.dest_email}`)).INBOX, 0);
  });

  const added = { [users[0].source_email]: 3, [users[1].source_email]: 2 };

  await step('new messages at the source: Migrate new items copies only those', async () => {
    for (const [email, n] of Object.entries(added)) {
      assert.equal(await serversCommand(`append ${email} ${n}`), `appended ${n}`);
    }
    for (const u of good) await page.getByLabel(`Choose ${u.source_email}`, { exact: true }).check();
    await page.getByRole('button', { name: 'Migrate new items' }).click();
    await page.waitForURL(/notice=queued&pass=delta&count=6/);
    for (const u of good) {
      const copied = added[u.source_email] ?? 0;
      await until(
        async () =>
          (await status(u.source_email).innerText()).trim() === 'Completed' &&
          (await progress(u.source_email).innerText()).startsWith(`${copied} copied, `),
        { timeout: 60_000, what: `${u.source_email}'s new items (${copied})` },
      );
    }
    await shot(page, 'new-items-migrated');
    for (const u of good) {
      const counts = JSON.parse(await serversCommand(`count ${u.dest_email}`));
      assert.equal(counts.INBOX, u.inbox + (added[u.source_email] ?? 0), `${u.dest_email}: ${JSON.stringify(counts)}`);
      assert.equal(counts.Archive ?? 0, u.archive);
    }
  });

  await step('download both reports', async () => {
    const download = async (name) => {
      const [file] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name }).click()]);
      return { name: file.suggestedFilename(), text: await readFile(await file.path(), 'utf8') };
    };
    const stats = await download('Mailbox statistics (CSV)');
    const failedItems = await download('Failed items (CSV)');
    assert.equal(stats.name, 'Acme_move-mailboxes.csv');
    assert.equal(failedItems.name, 'Acme_move-failed-items.csv');

    const rows = csvRows(stats.text);
    assert.deepEqual(rows[0], [
      'Source Email', 'Destination Email', 'Status', 'Last Pass', 'Copied',
      'Already Present', 'Skipped', 'Failed', 'Bytes Copied', 'Destination Keeps Bytes',
      'Last Error',
    ]);
    assert.equal(rows.length, 8, stats.text);
    const byEmail = Object.fromEntries(rows.slice(1).map((r) => [r[0], r]));
    for (const u of users) {
      const row = byEmail[u.source_email];
      assert.ok(row, `${u.source_email} is missing from the report`);
      assert.equal(row[1], u.dest_email);
      if (u.source_email === WRONG) {
        assert.equal(row[2], 'Verify failed');
        assert.match(row[10], /login refused/);
      } else {
        assert.deepEqual([row[2], row[3], row[4], row[7]], ['Completed', 'delta', String(added[u.source_email] ?? 0), '0']);
        // Dovecot stores what it is given, as the full pass found.
        assert.equal(row[9], 'yes');
      }
    }
    assert.deepEqual(csvRows(failedItems.text), [
      ['Source Email', 'Destination Email', 'Folder', 'UID', 'Message-ID', 'Subject', 'Size', 'Reason'],
    ]);
    for (const text of [stats.text, failedItems.text]) {
      for (const secret of [WRONG_PASSWORD, ...users.flatMap((u) => [u.source_password, u.dest_password])]) {
        assert.ok(!text.includes(secret), `a report holds a password`);
      }
    }
    // The screenshot shows what was downloaded, as tables.
    const escape = (text) => text.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
    const table = (file) =>
      `<h2>${escape(file.name)}</h2><table>${csvRows(file.text)
        .map((r, i) => `<tr>${r.map((c) => (i ? `<td>${escape(c)}</td>` : `<th>${escape(c)}</th>`)).join('')}</tr>`)
        .join('')}</table>`;
    const view = await context.newPage();
    await view.setContent(
      `<style>body{font:13px sans-serif;margin:24px}table{border-collapse:collapse;margin-bottom:24px}` +
        `td,th{border:1px solid #999;padding:3px 6px;text-align:left;vertical-align:top}</style>` +
        `<h1>Downloaded reports of ${escape(PROJECT)}</h1>${table(stats)}${table(failedItems)}`,
    );
    await shot(view, 'reports-downloaded');
    await view.close();
  });

  await step('the owner was emailed when the passes ended', async () => {
    const mail = await mailTo(OWNER, { subject: /of “Acme move” has ended/ });
    assert.ok(mail.body.includes(projectUrl), mail.body);
  });

  await step('a second user cannot see the project', async () => {
    const other = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const otherPage = await other.newPage();
      await logIn(otherPage, OTHER);
      assert.equal(await otherPage.getByRole('link', { name: PROJECT }).count(), 0);
      await shot(otherPage, 'second-user-migrations');
      const response = await otherPage.goto(projectUrl);
      assert.equal(response.status(), 404);
      await otherPage.getByRole('heading', { name: 'Page not found' }).waitFor();
      assert.ok(!(await otherPage.content()).includes('user1@old.example'));
      await shot(otherPage, 'second-user-404');
      for (const path of ['/reports/mailboxes.csv', '/reports/failed-items.csv', '/events', '/mailboxes']) {
        const answer = await otherPage.request.get(`${projectUrl}${path}`);
        assert.equal(answer.status(), 404, path);
      }
    } finally {
      await other.close();
    }
  });

  await context.close();
  assert.deepEqual(consoleErrors, [], 'the pages logged errors');
});
