#!/usr/bin/env python3
"""Acknowledged writes across a reshard (scripts/measure-resharding.sh).

  reshard-write-check.py write URL STOPFILE OUT.json   # writes until STOPFILE exists
  reshard-write-check.py check URL OUT.json            # every 201 in its flight's stream

`write` revises 64 flights round-robin over one keep-alive HTTP/1.1 connection, at
most 200 writes a second, each with a unique reason and the If-Match version its
flight's last 201 reported, and records every 201 (flight, version, reason). Any
other answer than 201, 409 or 422 is counted as a failure. `check` reads each flight's
events from the server (by then on the new layout) and counts the acknowledged writes
found exactly once, at their version.
"""
import http.client, json, os, sys, time
from urllib.parse import urlparse


def conn(url):
    u = urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)


def request(c, method, path, body=None, headers=None):
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return r.status, r.read()


def write(url, stop, out):
    c = conn(url)
    flights = list(range(1, 65))
    versions, acked, failures, closed = {}, [], [], set()
    for f in flights:
        status, body = request(c, "GET", f"/flights/{f}")
        versions[f] = json.loads(body)["status"]["version"]
    n = 0
    while not os.path.exists(stop):
        started = time.monotonic()
        f = flights[n % len(flights)]
        n += 1
        if f in closed:
            continue
        reason = f"reshard-check-{n}"
        body = json.dumps({"kind": "revised", "delay_minutes": n % 90 + 1, "reason": reason})
        headers = {"content-type": "application/json", "if-match": f'"{versions[f]}"'}
        try:
            status, answer = request(c, "POST", f"/flights/{f}/delays", body, headers)
        except OSError as e:
            failures.append(f"flight {f}: {e}")
            c = conn(url)
            continue
        if status == 201:
            versions[f] = json.loads(answer)["status"]["version"]
            acked.append([f, versions[f], reason])
        elif status == 422:
            closed.add(f)
        elif status == 409:
            versions[f] = json.loads(answer).get("current_version", versions[f])
        else:
            failures.append(f"flight {f}: {status} {answer[:200]!r}")
        time.sleep(max(0.0, 0.005 - (time.monotonic() - started)))
    json.dump({"acknowledged": acked, "failures": failures}, open(out, "w"))


def check(url, out):
    data = json.load(open(out))
    c = conn(url)
    found, lost = 0, []
    streams = {}
    for f, version, reason in data["acknowledged"]:
        if f not in streams:
            streams[f] = json.loads(request(c, "GET", f"/flights/{f}/events")[1])
        events = streams[f]
        at = [e["version"] for e in events if e.get("reason") == reason]
        if at == [version]:
            found += 1
        else:
            lost.append((f, version, reason, at))
    print(f"{found} of {len(data['acknowledged'])} acknowledged writes found once at their version; "
          f"{len(lost)} lost or moved; {len(data['failures'])} failed requests")
    for item in lost[:10] + data["failures"][:10]:
        print("  ", item)
    sys.exit(1 if lost or data["failures"] else 0)


if __name__ == "__main__":
    {"write": lambda: write(*sys.argv[2:5]), "check": lambda: check(*sys.argv[2:4])}[sys.argv[1]]()
