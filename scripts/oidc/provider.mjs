// A real OpenID Provider for flightbench's tests (tests/integration/oidc.rs), on
// loopback only: `node scripts/oidc/provider.mjs` prints `issuer http://127.0.0.1:PORT`
// once it listens, then serves discovery, the JWKS and the token endpoint.
//
// Client-credentials clients get JWT access tokens (RFC 9068) through the resource
// indicators feature: the resource `urn:flightbench:<ALG>` picks the signing
// algorithm (RS256, ES256 or EdDSA), the audience is always `flightbench`, and the
// granted scopes (reader, reporter, admin) are the token's `scope` claim.
//
// Keys are made fresh at every start (RSA-2048, P-256, Ed25519); SIGUSR2 replaces them
// all with new ones (new kids), so a test can rotate the provider's keys without a
// restart.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

export const CLIENTS = {
  'reporter-client': { secret: 'reporter-secret-0123456789abcdef', scope: 'reader reporter' },
  'reader-client': { secret: 'reader-secret-0123456789abcdef', scope: 'reader' },
  'admin-client': { secret: 'admin-secret-0123456789abcdef', scope: 'reader reporter admin' },
};

let generation = 0;
function keys() {
  generation += 1;
  const jwk = (pair, alg) => ({ ...pair.privateKey.export({ format: 'jwk' }), alg, use: 'sig', kid: `${alg.toLowerCase()}-${generation}` });
  return {
    keys: [
      jwk(crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }), 'RS256'),
      jwk(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }), 'ES256'),
      jwk(crypto.generateKeyPairSync('ed25519'), 'EdDSA'),
    ],
  };
}

function configuration() {
  return {
    clients: Object.entries(CLIENTS).map(([client_id, { secret, scope }]) => ({
      client_id,
      client_secret: secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope,
    })),
    jwks: keys(),
    scopes: ['openid', 'reader', 'reporter', 'admin'],
    ttl: { ClientCredentials: 300 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:flightbench:RS256',
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => {
          const alg = resource.split(':')[2];
          if (!resource.startsWith('urn:flightbench:') || !['RS256', 'ES256', 'EdDSA'].includes(alg)) {
            throw new Error(`unknown resource ${resource}`);
          }
          return {
            scope: 'reader reporter admin',
            audience: 'flightbench',
            accessTokenTTL: 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg } },
          };
        },
      },
    },
  };
}

const server = http.createServer();
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  let provider = new Provider(issuer, configuration());
  server.on('request', (req, res) => provider.callback()(req, res));
  process.on('SIGUSR2', () => {
    provider = new Provider(issuer, configuration());
    console.log(`rotated to generation ${generation}`);
  });
  console.log(`issuer ${issuer}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
