#!/usr/bin/env bash
# The project's test command (README): formatting, lints, then every test.
# Starts PostgreSQL and RabbitMQ if they are not answering: the store and bus tests use them.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_ready() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h 127.0.0.1 -p 5432
    else
        (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
    fi
}

if ! pg_ready; then
    echo "PostgreSQL is not answering on 127.0.0.1:5432; starting it" >&2
    if command -v pg_ctlcluster >/dev/null 2>&1; then
        version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
        pg_ctlcluster --skip-systemctl-redirect "${version:-15}" main start || true
    fi
    for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
    pg_ready || { echo "error: PostgreSQL did not start; the store tests need it on 127.0.0.1:5432" >&2; exit 1; }
fi

# RabbitMQ for tests/integration/bus.rs (the outbox relay, consumers, and a broker
# restart with rabbitmqctl stop_app / start_app).
rabbit_ready() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if ! rabbit_ready; then
    echo "RabbitMQ is not answering on 127.0.0.1:5672; starting it" >&2
    if command -v rabbitmqctl >/dev/null 2>&1 && rabbitmqctl -q status >/dev/null 2>&1; then
        rabbitmqctl -q start_app || true      # the node runs, its app was stopped
    elif command -v rabbitmq-server >/dev/null 2>&1; then
        rabbitmq-server -detached || true
    fi
    for _ in $(seq 1 60); do rabbit_ready && break; sleep 1; done
    rabbit_ready || { echo "error: RabbitMQ did not start; the bus tests need it on 127.0.0.1:5672" >&2; exit 1; }
fi

# Real HTTP clients for the end-to-end server test (scripts/e2e-http.sh), headless
# Chromium, which loads the workbench report's HTML in tests/integration/workbench.rs
# and drives the live dashboard over the DevTools protocol in tests/integration/dashboard.rs,
# and Prometheus with promtool for tests/integration/metrics.rs (check metrics, alert
# rule tests, a real scrape).
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v nghttp >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing+=(prometheus)
# Node.js runs the OpenID Provider the token tests get their tokens from.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} for the end-to-end tests" >&2
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

# panva's oidc-provider (OpenID Certified) for tests/integration/oidc.rs, exactly as
# scripts/oidc/package-lock.json pins it; installed again when the lockfile changes.
oidc=scripts/oidc
if [ ! -d "$oidc/node_modules/oidc-provider" ] || [ "$oidc/package-lock.json" -nt "$oidc/node_modules/.package-lock.json" ]; then
    echo "installing the test OpenID Provider (npm ci in $oidc)" >&2
    (cd "$oidc" && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings" >&2
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test" >&2
cargo test --all-targets --locked
