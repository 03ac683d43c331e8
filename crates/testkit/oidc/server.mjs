// A real OAuth 2.0 / OpenID Connect authorization server for mailmove's tests:
// oidc-provider (a certified OpenID provider) used as a library, configured from a
// JSON file written by the testkit's `OidcProvider` harness.
//
//   node server.mjs CONFIG.json
//
// It serves the same provider over HTTP and HTTPS on loopback, writes the RSA keys
// clients sign with (private_key_jwt, the JWT-bearer service account) to the state
// directory, and prints one line `ready` once both ports listen. Besides the
// standard endpoints it offers test-only helpers under /testkit/, guarded by a
// bearer token from the configuration:
//   POST /testkit/device/approve  {user_code, account}  approves a pending device code
//   POST /testkit/device/deny     {user_code}           denies it
//   POST /testkit/accounts/revoke {account}             revokes every grant and token
//
// Sign-in (/interaction/:uid), consent, device, logout and error pages are our own
// plain HTML with ids for browser tests and nothing fetched from elsewhere. Account
// ids are email addresses; every account exists, and the sign-in page takes any
// address with any non-empty password.

import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { generateKeyPairSync, timingSafeEqual } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as querystring from 'node:querystring';

import Provider, { errors } from 'oidc-provider';
import * as jose from 'jose';

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// ---------------------------------------------------------------------------
// Keys: one for the provider's own signatures (ID tokens), one per signing client.

function rsaKey() {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { privateKey, publicKey };
}

const signing = rsaKey();
const clientKey = rsaKey();
const serviceKey = rsaKey();
const pem = (key) => key.export({ type: 'pkcs8', format: 'pem' });
writeFileSync(join(config.state_dir, 'client-key.pem'), pem(clientKey.privateKey), { mode: 0o600 });
writeFileSync(join(config.state_dir, 'service-account-key.pem'), pem(serviceKey.privateKey), { mode: 0o600 });

const publicJwk = async (key, kid) => ({ ...await jose.exportJWK(key), kid, alg: 'RS256', use: 'sig' });

// ---------------------------------------------------------------------------
// Storage: everything in one Map, so an account's grants and tokens can be found
// and revoked together (the library's memory adapter cannot list them).

const store = new Map();
const now = () => Math.floor(Date.now() / 1000);

class TestAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? now() + expiresIn : Infinity;
    store.set(this.key(id), { model: this.model, payload, expiresAt });
  }

  async find(id) {
    const entry = store.get(this.key(id));
    if (!entry) return undefined;
    if (entry.expiresAt <= now()) {
      store.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }

  async findBy(field, value) {
    for (const [key, entry] of store) {
      if (entry.model === this.model && entry.payload[field] === value) {
        return this.find(key.slice(this.model.length + 1));
      }
    }
    return undefined;
  }

  findByUserCode(userCode) {
    return this.findBy('userCode', userCode);
  }

  findByUid(uid) {
    return this.findBy('uid', uid);
  }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = now();
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of store) {
      if (entry.payload.grantId === grantId) store.delete(key);
    }
  }
}

function revokeAccount(account) {
  const grants = new Set();
  for (const entry of store.values()) {
    if (entry.payload.accountId === account) {
      if (entry.model === 'Grant') grants.add(entry.payload.jti);
      if (entry.payload.grantId) grants.add(entry.payload.grantId);
    }
  }
  let revoked = 0;
  for (const [key, entry] of store) {
    const { payload } = entry;
    const ofAccount = payload.accountId === account
      || (payload.grantId && grants.has(payload.grantId))
      || (entry.model === 'Grant' && grants.has(payload.jti));
    if (ofAccount && entry.model !== 'Session') {
      store.delete(key);
      revoked += 1;
    }
  }
  return revoked;
}

// ---------------------------------------------------------------------------
// Clients.

const c = config.clients;
const clients = [
  {
    // A confidential web application (client_secret_basic).
    client_id: c.confidential_id,
    client_secret: c.confidential_secret,
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials', DEVICE_CODE],
    response_types: ['code'],
    redirect_uris: config.redirect_uris,
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    // A public client (a command line program): PKCE, the device flow.
    client_id: c.public_id,
    grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE],
    response_types: ['code'],
    redirect_uris: config.redirect_uris,
    token_endpoint_auth_method: 'none',
    application_type: 'native',
  },
  {
    // A confidential client that authenticates with an RS256 assertion (RFC 7523 §2.2).
    client_id: c.jwt_client_id,
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials', DEVICE_CODE],
    response_types: ['code'],
    redirect_uris: config.redirect_uris,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks: { keys: [await publicJwk(clientKey.publicKey, 'client-key')] },
  },
  {
    // A Google-style service account: no client authentication, it proves itself
    // with the JWT-bearer assertion it signs (RFC 7523 §2.1).
    client_id: c.service_account_id,
    grant_types: [JWT_BEARER],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'none',
    jwks: { keys: [await publicJwk(serviceKey.publicKey, 'service-account-key')] },
  },
  {
    // What the mail server uses to introspect tokens.
    client_id: c.introspection_id,
    client_secret: c.introspection_secret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  },
];

// ---------------------------------------------------------------------------
// Pages. Plain HTML with nothing fetched from elsewhere (the library's development
// pages import web fonts), so a browser on a machine without internet shows them
// at once. Forms and buttons carry ids for browser tests.

const escape = (text) => String(text ?? '').replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:sans-serif;max-width:28em;margin:2em auto;padding:0 1em}
input,button{display:block;width:100%;margin:.4em 0;padding:.5em;box-sizing:border-box}
.error{color:#b00020}</style></head>
<body><h1>${escape(title)}</h1>${body}</body></html>`;
}

function sendHtml(res, status, html) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': 'no-store',
  });
  res.end(html);
}

// ---------------------------------------------------------------------------
// The provider.

const ttl = config.ttl;
const provider = new Provider(config.issuer, {
  adapter: TestAdapter,
  clients,
  jwks: { keys: [{ ...signing.privateKey.export({ format: 'jwk' }), kid: 'signing', alg: 'RS256', use: 'sig' }] },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: id, email_verified: true };
      },
    };
  },
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  scopes: ['openid', 'offline_access', 'email', ...config.extra_scopes],
  cookies: { keys: [config.cookie_key] },
  pkce: { required: (_ctx, client) => client.clientAuthMethod === 'none' },
  features: {
    introspection: {
      enabled: true,
      // The mail server's client may introspect any token; a client its own.
      allowedPolicy: (_ctx, client, token) => client.clientId === c.introspection_id
        || client.clientId === token.clientId,
    },
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    deviceFlow: {
      enabled: true,
      async userCodeInputSource(ctx, form, _out, err) {
        const message = err
          ? '<p class="error" id="error">That code is not valid. Try again.</p>'
          : '<p>Enter the code shown on your device.</p>';
        ctx.body = page('Connect a device', `${message}${form}
<button type="submit" id="continue" form="op.deviceInputForm">Continue</button>`);
      },
      async userCodeConfirmSource(ctx, form, client, _deviceInfo, userCode) {
        ctx.body = page('Confirm the device', `<p><strong id="client">${escape(client.clientName ?? client.clientId)}</strong>
asks to sign in. Check that your device shows <code id="user-code">${escape(userCode)}</code>.</p>${form}
<button type="submit" id="continue" form="op.deviceConfirmForm">Continue</button>
<button type="submit" id="abort" form="op.deviceConfirmForm" name="abort" value="yes">Abort</button>`);
      },
      async successSource(ctx) {
        ctx.body = page('Device connected', '<p id="success">You can close this page and return to your device.</p>');
      },
    },
    resourceIndicators: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = page('Sign out', `${form}<button type="submit" id="logout" form="op.logoutForm" name="logout" value="yes">Sign out</button>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Signed out', '<p id="signed-out">You are signed out.</p>');
      },
    },
  },
  interactions: {
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  // Every refresh rotates: the old refresh token stops working once used.
  rotateRefreshToken: true,
  ttl: {
    AccessToken: ttl.access_token,
    ClientCredentials: ttl.access_token,
    RefreshToken: ttl.refresh_token,
    DeviceCode: ttl.device_code,
    AuthorizationCode: 60,
    IdToken: ttl.access_token,
    Grant: ttl.refresh_token,
    Interaction: 3600,
    Session: 86400,
  },
  // No clock skew allowance beyond a second: expiry tests count on exact lifetimes.
  clockTolerance: 1,
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Sign-in error', `<p class="error" id="error">${escape(out.error)}</p><p id="error-description">${escape(out.error_description)}</p>`);
  },
});
provider.proxy = false;

// ---------------------------------------------------------------------------
// The JWT-bearer grant (RFC 7523 §2.1), as Google's service accounts with
// domain-wide delegation use it: iss = the service account, sub = the mailbox,
// aud = the token endpoint, scope in the assertion (or in the request).

async function jwtBearer(ctx) {
  const { client, params } = ctx.oidc;
  if (!params.assertion) throw new errors.InvalidRequest('missing assertion');
  const keys = jose.createLocalJWKSet(client.jwks ?? { keys: [] });
  const tokenPaths = new Set();
  for (const base of [config.issuer, ...config.origins]) {
    tokenPaths.add(new URL('/token', base).href);
  }
  let claims;
  try {
    ({ payload: claims } = await jose.jwtVerify(params.assertion, keys, {
      algorithms: ['RS256'],
      issuer: client.clientId,
      audience: [...tokenPaths, config.issuer],
      requiredClaims: ['exp', 'iat', 'sub'],
      maxTokenAge: '1h',
      clockTolerance: 5,
    }));
  } catch (cause) {
    throw new errors.InvalidGrant(`assertion refused: ${cause.message}`);
  }
  const scope = params.scope ?? claims.scope ?? '';
  const grant = new provider.Grant({ accountId: claims.sub, clientId: client.clientId });
  grant.addOIDCScope(scope);
  const grantId = await grant.save();
  const token = new provider.AccessToken({
    accountId: claims.sub,
    client,
    grantId,
    gty: 'jwt_bearer',
    scope,
  });
  ctx.oidc.entity('AccessToken', token);
  const accessToken = await token.save();
  ctx.body = {
    access_token: accessToken,
    expires_in: token.expiration,
    token_type: 'Bearer',
    scope: scope || undefined,
  };
}
provider.registerGrantType(JWT_BEARER, jwtBearer, ['assertion', 'scope']);

// ---------------------------------------------------------------------------
// Sign-in and consent. Any email address is an account and any non-empty password
// is right: tests choose who signs in by what they type.

function loginPage(uid, hint, error) {
  return page('Sign in', `${error ? `<p class="error" id="error">${escape(error)}</p>` : ''}
<form id="login" method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
<input type="email" id="email" name="login" placeholder="Email address" value="${escape(hint)}" required autofocus>
<input type="password" id="password" name="password" placeholder="Password" required>
<button type="submit" id="sign-in">Sign in</button></form>`);
}

function consentPage(uid, client, scopes, account) {
  const items = scopes.map((scope) => `<li>${escape(scope)}</li>`).join('');
  return page('Allow access', `<p>Signed in as <strong id="account">${escape(account)}</strong>.</p>
<p><strong id="client">${escape(client.clientName ?? client.clientId)}</strong> asks for:</p><ul id="scopes">${items}</ul>
<form id="consent" method="post" action="/interaction/${escape(uid)}/confirm"><button type="submit" id="allow">Allow</button></form>
<form id="deny" method="post" action="/interaction/${escape(uid)}/abort"><button type="submit" id="cancel">Cancel</button></form>`);
}

async function interaction(req, res, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch {
    return sendHtml(res, 400, page('Sign-in error', '<p class="error" id="error">This sign-in has expired or belongs to another browser. Start again.</p>'));
  }
  if (details.uid !== uid) {
    return sendHtml(res, 400, page('Sign-in error', '<p class="error" id="error">This sign-in belongs to another request.</p>'));
  }
  const { prompt, params, session } = details;
  const client = await provider.Client.find(params.client_id);

  if (!action) {
    if (prompt.name === 'login') return sendHtml(res, 200, loginPage(uid, params.login_hint));
    const scopes = [...new Set([
      ...(prompt.details.missingOIDCScope ?? []),
      ...Object.values(prompt.details.missingResourceScopes ?? {}).flat(),
    ])];
    return sendHtml(res, 200, consentPage(uid, client, scopes, session?.accountId));
  }
  if (req.method !== 'POST') return send(res, 405, { error: 'method_not_allowed' });
  const form = querystring.parse(await readAll(req));

  if (action === 'login') {
    const login = String(form.login ?? '').trim();
    if (!login.includes('@') || !form.password) {
      return sendHtml(res, 200, loginPage(uid, login, 'Enter an email address and a password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  }
  if (action === 'confirm') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [resource, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(resource, scopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  if (action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'the user cancelled the sign-in',
    }, { mergeWithLastSubmission: false });
  }
  return send(res, 404, { error: 'not_found' });
}

// ---------------------------------------------------------------------------
// Test helpers.

function normalizeUserCode(input) {
  return String(input).toUpperCase().replace(/[^A-Z0-9]/g, '');
}

async function approveDeviceCode({ user_code: userCode, account, scope }) {
  if (!userCode || !account) throw new Error('user_code and account are required');
  const code = await provider.DeviceCode.findByUserCode(normalizeUserCode(userCode), { ignoreExpiration: true });
  if (!code) throw new Error(`no pending device code ${userCode}`);
  if (code.isExpired) throw new Error(`device code ${userCode} expired`);
  if (code.accountId || code.error) throw new Error(`device code ${userCode} was already used`);
  const granted = scope ?? code.params.scope ?? 'openid';
  const grant = new provider.Grant({ accountId: account, clientId: code.clientId });
  grant.addOIDCScope(granted);
  Object.assign(code, {
    accountId: account,
    authTime: now(),
    grantId: await grant.save(),
    scope: granted,
  });
  await code.save();
  return { approved: userCode, account, scope: granted };
}

async function denyDeviceCode({ user_code: userCode }) {
  const code = await provider.DeviceCode.findByUserCode(normalizeUserCode(userCode), { ignoreExpiration: true });
  if (!code) throw new Error(`no pending device code ${userCode}`);
  Object.assign(code, { error: 'access_denied', errorDescription: 'denied by the test' });
  await code.save();
  return { denied: userCode };
}

const helpers = {
  '/testkit/device/approve': approveDeviceCode,
  '/testkit/device/deny': denyDeviceCode,
  '/testkit/accounts/revoke': async ({ account }) => ({ revoked: revokeAccount(account) }),
};

function authorized(req) {
  const expected = Buffer.from(`Bearer ${config.helper_token}`);
  const given = Buffer.from(req.headers.authorization ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

async function readAll(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const callback = provider.callback();

async function handle(req, res) {
  const path = new URL(req.url, 'http://localhost').pathname;
  const interactionPath = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?$/.exec(path);
  if (interactionPath) return interaction(req, res, interactionPath[1], interactionPath[2]);
  if (path.startsWith('/testkit/')) {
    const helper = helpers[path];
    if (!helper || req.method !== 'POST') return send(res, 404, { error: 'not_found' });
    if (!authorized(req)) return send(res, 401, { error: 'unauthorized' });
    try {
      return send(res, 200, await helper(JSON.parse(await readAll(req))));
    } catch (error) {
      return send(res, 400, { error: 'helper_failed', error_description: error.message });
    }
  }
  // Google's token endpoint takes a JWT-bearer request without client_id; the
  // provider wants to know the client, which is the assertion's issuer.
  if (path === '/token' && req.method === 'POST'
    && (req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')
    && !req.headers.authorization) {
    const body = await readAll(req);
    const form = querystring.parse(body);
    if (form.grant_type === JWT_BEARER && !form.client_id && typeof form.assertion === 'string') {
      try {
        form.client_id = jose.decodeJwt(form.assertion).iss;
      } catch {
        // Left without client_id: the provider answers invalid_client.
      }
    }
    // The provider reads an already consumed body from req.body.
    req.body = querystring.stringify(form);
  }
  return callback(req, res);
}

const onRequest = (req, res) => {
  handle(req, res).catch((error) => {
    console.error(error);
    if (!res.headersSent) send(res, 500, { error: 'server_error' });
  });
};

const listen = (server, port) => new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});

await listen(createHttpServer(onRequest), config.http_port);
await listen(createHttpsServer({
  cert: readFileSync(config.tls_cert),
  key: readFileSync(config.tls_key),
}, onRequest), config.https_port);
console.log('ready');
