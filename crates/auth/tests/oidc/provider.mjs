// A real, independent OpenID provider for Auth's Google sign-in test: oauth2-mock-server
// signs RS256 ID tokens with a fresh key, publishes it at /jwks, serves discovery,
// verifies PKCE and echoes the nonce. The test starts this script, reads the issuer
// from the first line of stdout, and stops it by closing stdin (or killing it).
//
// The person who signs in is set by the environment: OIDC_SUB, OIDC_EMAIL,
// OIDC_EMAIL_VERIFIED ("true", "false", or "string" for the legacy string "true").
import { OAuth2Server, Events } from 'oauth2-mock-server';

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');

const verified = process.env.OIDC_EMAIL_VERIFIED ?? 'true';
server.service.on(Events.BeforeTokenSigning, (token) => {
  // The access token carries `scope`; the ID token does not.
  if ('scope' in token.payload) return;
  token.payload.sub = process.env.OIDC_SUB ?? '110169484474386276334';
  token.payload.azp = token.payload.aud;
  if (process.env.OIDC_EMAIL) {
    token.payload.email = process.env.OIDC_EMAIL;
    token.payload.email_verified = verified === 'string' ? 'true' : verified === 'true';
  }
  token.payload.name = 'Ivan Petrov';
  token.payload.given_name = 'Ivan';
  token.payload.family_name = 'Petrov';
});

await server.start(0, '127.0.0.1');
// By address, not `localhost`, which may resolve to ::1 where nothing listens.
server.issuer.url = `http://127.0.0.1:${server.address().port}`;
console.log(JSON.stringify({ issuer: server.issuer.url }));

const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.stdin.on('end', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
