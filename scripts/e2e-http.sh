#!/usr/bin/env bash
# End-to-end check of `flightbench serve` with real clients: curl over HTTP/1.1 and
# h2c (prior knowledge), curl over TLS with ALPN h2, and nghttp; every codec's
# Content-Encoding is confirmed and decoded. Seeds a small dataset in a temp dir and
# talks to 127.0.0.1 only.
#
#   scripts/e2e-http.sh                          # builds and uses target/debug/flightbench
#   FLIGHTBENCH_BIN=target/release/flightbench scripts/e2e-http.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${FLIGHTBENCH_BIN:-}
if [ -z "$bin" ]; then
    cargo build --quiet
    bin=target/debug/flightbench
fi
for tool in curl nghttp; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing (apt-get install -y curl nghttp2-client)" >&2; exit 1; }
done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
passed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }

"$bin" seed --quiet --dir "$work/shards" --flights 3000 --shards 2
# Starts a server; sets $base to its URL. Each server writes files of its own: with
# one shared file, the loop below could read the previous server's address before the
# new server's shell had truncated it (seen under load: the TLS checks got the
# cleartext server's URL).
servers=0
start() {
    servers=$((servers + 1))
    local out="$work/serve.$servers.out" err="$work/serve.$servers.err"
    "$bin" serve --dir "$work/shards" --addr 127.0.0.1:0 "$@" >"$out" 2>"$err" &
    pids+=($!)
    for _ in $(seq 100); do
        base=$(sed -n 's/^listening on \([^ ,]*\).*/\1/p' "$out" 2>/dev/null)
        [ -n "$base" ] && return
        sleep 0.1
    done
    cat "$err" >&2
    fail "server did not start"
}

departures="/airports/ATL/departures?from=2026-12-01T00:00:00Z&to=2026-12-03T00:00:00Z&limit=200"

start
curl -sf -o "$work/identity.json" "$base$departures" || fail "HTTP/1.1 GET"
[ "$(curl -s -o /dev/null -w '%{http_version}' "$base/healthz")" = "1.1" ] || fail "expected HTTP/1.1"
ok "HTTP/1.1 GET"
[ "$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_version}' "$base/healthz")" = "2" ] || fail "h2c prior knowledge"
ok "h2c with prior knowledge"
for codec in br zstd gzip deflate; do
    headers=$(curl -s --http2-prior-knowledge -H "accept-encoding: $codec" -D - -o "$work/body.$codec" "$base$departures")
    echo "$headers" | grep -qi "^content-encoding: $codec" || fail "$codec: no content-encoding header"
    echo "$headers" | grep -qi "^vary: accept-encoding" || fail "$codec: no vary header"
    ok "h2c content-encoding $codec"
done
# curl decodes every codec itself (--compressed); the result must equal identity.
for codec in gzip deflate br zstd; do
    curl -sf --http2-prior-knowledge --compressed -H "accept-encoding: $codec" -o "$work/decoded.$codec" "$base$departures" \
        || fail "$codec: curl could not fetch or decode"
    cmp -s "$work/identity.json" "$work/decoded.$codec" || fail "$codec decodes to a different body"
    ok "$codec decodes to the identity body (curl)"
done
status=$(curl -s -o /dev/null -w '%{http_code}' -H 'accept-encoding: identity;q=0, *;q=0' "$base/flights/1")
[ "$status" = 406 ] || fail "expected 406, got $status"
ok "406 when nothing is acceptable"
nghttp -nv "$base/flights/17" 2>&1 | grep -q ':status: 200' || fail "nghttp h2c"
ok "nghttp h2c"
nghttp -nv -H 'accept-encoding: zstd' "$base$departures" 2>&1 | grep -q 'content-encoding: zstd' || fail "nghttp zstd"
ok "nghttp content-encoding zstd"

"$bin" cert --cert "$work/cert.pem" --key "$work/key.pem" 2>/dev/null
start --tls-cert "$work/cert.pem" --tls-key "$work/key.pem"
[ "$(curl -sk --http2 -o /dev/null -w '%{http_version}' "$base/healthz")" = "2" ] || fail "TLS ALPN h2"
ok "TLS with ALPN h2 (curl --http2 -k)"
[ "$(curl -sk --http1.1 -o /dev/null -w '%{http_version}' "$base/healthz")" = "1.1" ] || fail "TLS ALPN http/1.1"
ok "TLS with ALPN http/1.1"
curl -sk --http2 -H 'accept-encoding: br' -D - -o /dev/null "$base$departures" | grep -qi '^content-encoding: br' || fail "TLS br"
ok "TLS content-encoding br"
nghttp -nv "$base/flights/17" 2>&1 | grep -q ':status: 200' || fail "nghttp over TLS"
ok "nghttp over TLS (h2)"

echo "$passed passed, 0 failed"
