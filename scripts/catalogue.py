#!/usr/bin/env python3
"""The catalogue run (see scripts/catalogue): Centreon's certified stream
connectors, unchanged, against loopback sinks that answer as the real APIs,
fed with the cbd 21.10 BBDO 2 capture over a real TCP connection.

Meant to run inside a private network namespace that has only loopback
(scripts/catalogue makes one): every socket here is on 127.0.0.1.
"""

import argparse
import base64
import calendar
import collections
import hashlib
import http.server
import json
import os
import re
import select
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

EVENTS_TOTAL = 953
ADMIN_PASSWORD = "catalogue-admin-password"
SN_INSTANCE = "catalogue"  # https://catalogue.service-now.com/
SN_HOST = SN_INSTANCE + ".service-now.com"
PD_ROUTING_KEY = "R0UT1NGKEY0123456789012345678901"  # 32 characters, as PagerDuty wants

# --------------------------------------------------------------------------
# Parameters, per connector. The library's dedup and hard-only filters are
# turned off (enable_host_status_dedup=0, enable_service_status_dedup=0,
# hard_only=0) so that every status of the capture counts, and its other
# filters are left at their defaults (acknowledged=0, in_downtime=0,
# flapping=0, skip_anon_events=1, host_status=0,1,2,
# service_status=0,1,2,3), which the expected counts below reproduce.
# max_buffer_size=100 makes several requests per connector;
# max_all_queues_age stays at its default (5 s).
# --------------------------------------------------------------------------

LIB_COMMON = [
    ("hard_only", "number", "0"),
    ("enable_host_status_dedup", "number", "0"),
    ("enable_service_status_dedup", "number", "0"),
    ("accepted_categories", "string", "neb"),
    ("accepted_elements", "string", "host_status,service_status"),
    ("max_buffer_size", "number", "100"),
    ("log_level", "number", "2"),
]


def connectors(ports, logdir):
    """(name, script path under centreon-certified/, kind, parameters)."""
    def log(name):
        return ("logfile", "string", os.path.join(logdir, name + ".log"))
    http = lambda sink: "http://127.0.0.1:%d" % ports[sink]
    return [
        ("elastic-events", "elasticsearch/elastic-events-apiv2.lua", "elastic",
         LIB_COMMON + [log("elastic-events"),
                       ("elastic_url", "string", http("elastic")),
                       ("elastic_username", "string", "elastic"),
                       ("elastic_password", "password", "elastic-secret"),
                       ("elastic_index_status", "string", "centreon-status")]),
        ("influxdb2-metrics", "influxdb/influxdb2-metrics-apiv2.lua", "influxdb2",
         LIB_COMMON + [log("influxdb2-metrics"),
                       ("http_server_url", "string", http("influxdb2")),
                       ("bucket_id", "string", "centreon"),
                       ("bucket_api_key", "password", "influx-token"),
                       ("org_name", "string", "catalogue")]),
        ("influxdb-metrics-v1", "influxdb/influxdb-metrics-apiv1.lua", "influxdb1",
         # Standalone: it flushes only from write(), when max_buffer_size
         # lines are queued or max_buffer_age passed. 300 metrics, 100 a
         # request, a long age: three whole requests, nothing left behind.
         [("http_server_address", "string", "127.0.0.1"),
          ("http_server_port", "number", str(ports["influxdb1"])),
          ("influx_database", "string", "centreon"),
          ("max_buffer_size", "number", "100"),
          ("max_buffer_age", "number", "3600")]),
        ("splunk-events", "splunk/splunk-events-apiv2.lua", "splunk",
         LIB_COMMON + [log("splunk-events"),
                       ("http_server_url", "string", http("splunk") + "/services/collector/event"),
                       ("splunk_token", "password", "splunk-events-token")]),
        ("splunk-metrics-v1", "splunk/splunk-metrics-http-apiv1.lua", "splunk",
         # Standalone; max_buffer_size 1 (its default): one request a metric.
         [("http_server_url", "string", http("splunk") + "/services/collector"),
          ("splunk_token", "password", "splunk-metrics-token"),
          ("log_path", "string", os.path.join(logdir, "splunk-metrics-v1.log")),
          ("log_level", "number", "1")]),
        ("pagerduty-events", "pagerduty/pagerduty-events-apiv2.lua", "pagerduty",
         # The script forces max_buffer_size to 1 (one event a request).
         [p for p in LIB_COMMON if p[0] != "max_buffer_size"]
         + [log("pagerduty-events"),
            ("http_server_url", "string", http("pagerduty") + "/v2/enqueue"),
            ("pdy_routing_key", "password", PD_ROUTING_KEY),
            ("pdy_centreon_url", "string", "http://centreon.example.invalid")]),
        ("servicenow-events", "servicenow/servicenow-em-events-apiv2.lua", "servicenow",
         # https://<instance>.service-now.com/ through a loopback CONNECT
         # proxy, to a TLS sink whose certificate a throwaway CA signed
         # (brokerstream trusts it through SSL_CERT_FILE).
         LIB_COMMON + [log("servicenow-events"),
                       ("instance", "string", SN_INSTANCE),
                       ("client_id", "string", "sn-client"),
                       ("client_secret", "password", "sn-client-secret"),
                       ("username", "string", "centreon"),
                       ("password", "password", "sn-password"),
                       ("proxy_address", "string", "127.0.0.1"),
                       ("proxy_port", "number", str(ports["proxy"]))]),
    ]


OUTAGE = "outage-influxdb2"


def outage_connector(ports, logdir):
    return (OUTAGE, "influxdb/influxdb2-metrics-apiv2.lua", "outage",
            LIB_COMMON + [("logfile", "string", os.path.join(logdir, OUTAGE + ".log")),
                          ("http_server_url", "string", "http://127.0.0.1:%d" % ports["outage"]),
                          ("bucket_id", "string", "centreon"),
                          ("bucket_api_key", "password", "influx-token"),
                          ("org_name", "string", "catalogue")])


# --------------------------------------------------------------------------
# Expected values, from events-api-v1.jsonl alone (what each captured event
# became in Centreon's Lua output), mirroring the filters of the library
# (sc_event.lua, sc_metrics.lua) and of the two standalone scripts.
# --------------------------------------------------------------------------

def perfdata_metrics(perfdata):
    """[(instance, metric name)] of a perfdata string, as Centreon's
    parse_perfdata(perfdata, true) names them ('inst#name')."""
    out = []
    for m in re.finditer(r"('(?:[^']|'')*'|[^\s=']+)=(\S*)", perfdata or ""):
        label = m.group(1)
        if label.startswith("'"):
            label = label[1:-1].replace("''", "'")
        instance, _, name = label.rpartition("#")
        out.append((instance, name))
    return out


def expected_values(events):
    hosts, services = {}, {}
    status_events, status_metrics, metric_events = [], [], []
    for e in events:
        t = e["_type"]
        if t == 65548:
            hosts[e["host_id"]] = e
        elif t == 65559:
            services[(e["host_id"], e["service_id"])] = e
        elif t in (65550, 65560):
            host = hosts.get(e.get("host_id"))
            svc = services.get((e.get("host_id"), e.get("service_id"))) if t == 65560 else None
            if host is None or host.get("instance_id") is None:
                continue  # skip_anon_events=1; is_valid_poller needs an instance id
            if t == 65560 and svc is None:
                continue
            hname = host.get("name")
            sdesc = svc.get("description") if svc else None
            # sc_metrics: no state/dedup/ack filters, perfdata must parse.
            for inst, name in perfdata_metrics(e.get("perfdata")):
                status_metrics.append((hname, sdesc, name, inst, e.get("last_check")))
            accepted = (e.get("state") in ((0, 1, 2) if t == 65550 else (0, 1, 2, 3))
                        and e.get("state_type", 0) >= 0            # hard_only=0
                        and not e.get("acknowledged", False)       # acknowledged=0
                        and e.get("scheduled_downtime_depth", 0) <= 0  # in_downtime=0
                        and not e.get("flapping", False))          # flapping=0
            if accepted:
                status_events.append(("host" if t == 65550 else "service", hname, sdesc, e.get("last_check")))
        elif t == 196609:
            host = hosts.get(e.get("host_id"))
            svc = services.get((e.get("host_id"), e.get("service_id")))
            metric_events.append((host.get("name") if host else str(e.get("host_id")),
                                  svc.get("description") if svc else str(e.get("service_id")),
                                  e.get("name"), e.get("ctime")))
    return status_events, status_metrics, metric_events


# --------------------------------------------------------------------------
# Sinks: loopback HTTP servers answering as the real APIs do, recording each
# request. One thread each.
# --------------------------------------------------------------------------

class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = collections.defaultdict(list)  # sink -> [(path, headers, body, status)]

    def add(self, sink, path, headers, body, status):
        with self.lock:
            self.requests[sink].append((path, dict(headers), body, status))

    def get(self, sink):
        with self.lock:
            return list(self.requests[sink])


REC = Recorder()
SN_TOKENS = {"access": "sn-access-" + hashlib.sha1(os.urandom(8)).hexdigest()[:12],
             "refresh": "sn-refresh-" + hashlib.sha1(os.urandom(8)).hexdigest()[:12]}


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sink = "?"

    def log_message(self, *args):
        pass

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n)

    def answer(self, status, payload=None, ctype="application/json; charset=UTF-8", extra=()):
        data = b"" if payload is None else (payload if isinstance(payload, bytes)
                                            else json.dumps(payload).encode())
        self.send_response(status)
        for k, v in extra:
            self.send_header(k, v)
        if status != 204:
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
        self.end_headers()
        if status != 204:
            self.wfile.write(data)

    def do_GET(self):
        self.answer(404, {"error": "not found"})

    def do_POST(self):
        body = self.body()
        status = self.route(body)
        REC.add(self.sink, self.path, self.headers, body, status)

    def route(self, body):
        raise NotImplementedError


class Elastic(Sink):
    sink = "elastic"

    def route(self, body):
        # POST /_bulk, Basic auth, NDJSON (action line, document line).
        if urllib.parse.urlsplit(self.path).path != "/_bulk":
            self.answer(404, {"error": "no handler found for uri [%s]" % self.path, "status": 404})
            return 404
        want = "Basic " + base64.b64encode(b"elastic:elastic-secret").decode()
        if self.headers.get("authorization") != want:
            self.answer(401, {"error": {"type": "security_exception", "reason": "unable to authenticate user [elastic]"}, "status": 401})
            return 401
        lines = [l for l in body.split(b"\n") if l.strip()]
        items = []
        for i in range(0, len(lines) - 1, 2):
            action = json.loads(lines[i])
            index = action.get("index", {}).get("_index", "")
            items.append({"index": {"_index": index, "_id": hashlib.sha1(lines[i + 1]).hexdigest()[:20],
                                    "_version": 1, "result": "created",
                                    "_shards": {"total": 2, "successful": 1, "failed": 0},
                                    "_seq_no": len(items), "_primary_term": 1, "status": 201}})
        self.answer(200, {"took": 3, "errors": False, "items": items})
        return 200


class Influx2(Sink):
    sink = "influxdb2"

    def route(self, body):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/api/v2/write":
            self.answer(404, {"code": "not found", "message": "path not found"})
            return 404
        if self.headers.get("authorization") != "Token influx-token":
            self.answer(401, {"code": "unauthorized", "message": "unauthorized access"})
            return 401
        q = urllib.parse.parse_qs(url.query)
        if "bucket" not in q or "org" not in q:
            self.answer(400, {"code": "invalid", "message": "bucket and org are required"})
            return 400
        self.answer(204)
        return 204


class Outage(Influx2):
    sink = "outage"


class Influx1(Sink):
    sink = "influxdb1"

    def route(self, body):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/write":
            self.answer(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return 404
        if "db" not in urllib.parse.parse_qs(url.query):
            self.answer(400, {"error": "database is required"})
            return 400
        self.answer(204, extra=[("X-Influxdb-Version", "1.8.10")])
        return 204


class Splunk(Sink):
    sink = "splunk"

    def route(self, body):
        if not urllib.parse.urlsplit(self.path).path.startswith("/services/collector"):
            self.answer(404, {"text": "The requested URL was not found on this server.", "code": 404})
            return 404
        auth = self.headers.get("authorization") or ""
        if auth not in ("Splunk splunk-events-token", "Splunk splunk-metrics-token"):
            self.answer(403, {"text": "Invalid token", "code": 4})
            return 403
        self.answer(200, {"text": "Success", "code": 0})
        return 200


class PagerDuty(Sink):
    sink = "pagerduty"

    def route(self, body):
        if urllib.parse.urlsplit(self.path).path != "/v2/enqueue":
            self.answer(404, {"status": "Not found"})
            return 404
        try:
            event = json.loads(body)
        except ValueError:
            self.answer(400, {"status": "invalid event", "message": "Event object is invalid", "errors": ["Invalid JSON"]})
            return 400
        if event.get("routing_key") != PD_ROUTING_KEY:
            self.answer(400, {"status": "invalid event", "message": "Event object is invalid",
                              "errors": ["Invalid routing key"]})
            return 400
        self.answer(202, {"status": "success", "message": "Event processed",
                          "dedup_key": event.get("dedup_key") or hashlib.md5(body).hexdigest()})
        return 202


class ServiceNow(Sink):
    sink = "servicenow"

    def route(self, body):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/oauth_token.do":
            form = urllib.parse.parse_qs(body.decode())
            grant = form.get("grant_type", [""])[0]
            ok = (form.get("client_id") == ["sn-client"] and form.get("client_secret") == ["sn-client-secret"]
                  and ((grant == "password" and form.get("username") == ["centreon"] and form.get("password") == ["sn-password"])
                       or (grant == "refresh_token" and form.get("refresh_token") == [SN_TOKENS["refresh"]])))
            if not ok:
                self.answer(401, {"error_description": "access_denied", "error": "server_error"})
                return 401
            self.answer(200, {"access_token": SN_TOKENS["access"], "refresh_token": SN_TOKENS["refresh"],
                              "scope": "useraccount", "token_type": "Bearer", "expires_in": 1799})
            return 200
        if path == "/api/global/em/jsonv2":
            if self.headers.get("authorization") != "Bearer " + SN_TOKENS["access"]:
                self.answer(401, {"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"})
                return 401
            records = json.loads(body).get("records", [])
            self.answer(200, {"result": {"Default Bulk Endpoint": "%d events were inserted" % len(records)}})
            return 200
        self.answer(400, {"error": {"message": "Requested URI does not represent any resource", "detail": None}, "status": "failure"})
        return 400


class Proxy(http.server.BaseHTTPRequestHandler):
    """A CONNECT proxy that knows one name: SN_HOST:443 goes to the TLS
    ServiceNow sink on loopback. Anything else is refused and noted."""
    protocol_version = "HTTP/1.1"
    tls_port = 0
    refused = []

    def log_message(self, *args):
        pass

    def do_CONNECT(self):
        host, _, port = self.path.rpartition(":")
        if host != SN_HOST or port != "443":
            Proxy.refused.append(self.path)
            self.send_response(403)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        upstream = socket.create_connection(("127.0.0.1", Proxy.tls_port))
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        socks = [self.connection, upstream]
        try:
            while True:
                readable, _, _ = select.select(socks, [], [], 30)
                if not readable:
                    break
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is self.connection else self.connection).sendall(data)
        finally:
            upstream.close()
        self.close_connection = True

    def do_GET(self):
        Proxy.refused.append(self.path)
        self.send_response(403)
        self.send_header("content-length", "0")
        self.end_headers()

    do_POST = do_GET


def serve(handler, port, tls=None):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    if tls:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_ca(work):
    """A throwaway CA and a server certificate for SN_HOST."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, cwd=work,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=catalogue throwaway CA",
        "-keyout", "ca.key", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + SN_HOST, "-keyout", "sn.key", "-out", "sn.csr")
    with open(os.path.join(work, "sn.ext"), "w") as f:
        f.write("subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" % SN_HOST)
    run("x509", "-req", "-in", "sn.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-out", "sn.pem", "-extfile", "sn.ext")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(work, "sn.pem"), os.path.join(work, "sn.key"))
    return os.path.join(work, "ca.pem"), ctx


# --------------------------------------------------------------------------
# What a sink received, in the units of the expected values.
# --------------------------------------------------------------------------

def utc_epoch(text, fmt):
    try:
        return calendar.timegm(time.strptime(text, fmt))
    except (TypeError, ValueError):
        return text


def rfc3339_epoch(text):
    """luatz's rfc_3339() ('2024-11-19T07:08:50.000', UTC, no zone
    written) or with a Z, to seconds."""
    if isinstance(text, str):
        return utc_epoch(re.sub(r"(\.\d+)?Z?$", "", text), "%Y-%m-%dT%H:%M:%S")
    return text


def concatenated_json(body):
    dec, text, pos, out = json.JSONDecoder(), body.decode(), 0, []
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        obj, pos = dec.raw_decode(text, pos)
        out.append(obj)
    return out


def split_unescaped(s, sep):
    parts, cur, i = [], "", 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            cur += s[i:i + 2]
            i += 2
            continue
        if s[i] == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += s[i]
        i += 1
    parts.append(cur)
    return parts


def unescape(s):
    return re.sub(r"\\(.)", r"\1", s)


def influx2_items(body):
    items = []
    for line in body.decode().split("\n"):
        if not line.strip():
            continue
        head = split_unescaped(line, " ")[0]
        parts = split_unescaped(head, ",")
        tags = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        ts = split_unescaped(line, " ")[-1]
        items.append((unescape(tags.get("host.name", "")), unescape(tags.get("service.name", "")) or None,
                      unescape(parts[0]), unescape(tags.get("metric.instance", "")),
                      int(ts) if ts.isdigit() else ts))
    return items


def influx1_items(body):
    items = []
    for line in body.decode().split("\n"):
        if not line.strip():
            continue
        m = re.match(r"^(.*),host=(.*) (\S+)=(\S+) (\d+)$", line)
        # the timestamp is ctime followed by 9 zeros (nanoseconds)
        items.append((m.group(2), m.group(1), m.group(3), int(m.group(5)) // 10**9) if m else ("?", "?", line, None))
    return items


def received(sink, name):
    """[(item key)] delivered to `sink` by connector `name`, from the
    requests the sink accepted."""
    items = []
    for path, headers, body, status in REC.get(sink):
        if status >= 300:
            continue
        if sink == "elastic":
            lines = [l for l in body.split(b"\n") if l.strip()]
            for doc in lines[1::2]:
                d = json.loads(doc)
                items.append((d.get("event_type"), d.get("host"), d.get("service"), d.get("timestamp")))
        elif sink in ("influxdb2", "outage"):
            items += influx2_items(body)
        elif sink == "influxdb1":
            items += influx1_items(body)
        elif sink == "splunk":
            token = headers.get("authorization") or headers.get("Authorization") or ""
            for ev in concatenated_json(body):
                if name == "splunk-events" and token.endswith("splunk-events-token"):
                    e = ev.get("event", {})
                    items.append((e.get("event_type"), e.get("hostname"), e.get("service_description"), ev.get("time")))
                elif name == "splunk-metrics-v1" and token.endswith("splunk-metrics-token"):
                    f = ev.get("fields", {})
                    metric = [k[len("metric_name:"):] for k in f if k.startswith("metric_name:")]
                    items.append((f.get("hostname"), f.get("service_description"), metric[0] if metric else None,
                                  ev.get("time")))
        elif sink == "pagerduty":
            for ev in concatenated_json(body):
                # summary: "host: STATUS" or "host/service: STATUS"
                p = ev.get("payload", {})
                cls = p.get("class")
                head = p.get("summary", "").rsplit(": ", 1)[0]
                host, svc = head.split("/", 1) if cls == "service" else (head, None)
                items.append((cls, host, svc, rfc3339_epoch(p.get("timestamp"))))
        elif sink == "servicenow":
            if urllib.parse.urlsplit(path).path == "/api/global/em/jsonv2":
                for r in json.loads(body).get("records", []):
                    svc = r.get("resource") if r.get("severity") is not None and r.get("resource") != r.get("node") else None
                    items.append(("service" if svc else "host", r.get("node"), svc,
                                  utc_epoch(r.get("time_of_event"), "%Y-%m-%d %H:%M:%S")))
    return items


def requests_of(sink, name):
    """The requests of connector `name` (the two Splunk ones share a sink
    and differ by token)."""
    reqs = REC.get(sink)
    if sink == "splunk":
        token = "splunk-events-token" if name == "splunk-events" else "splunk-metrics-token"
        reqs = [r for r in reqs if (r[1].get("authorization") or r[1].get("Authorization") or "").endswith(token)]
    return reqs


def expected_for(name, status_events, status_metrics, metric_events):
    if name in ("elastic-events", "splunk-events", "pagerduty-events", "servicenow-events"):
        return status_events
    if name in ("influxdb2-metrics", OUTAGE):
        return status_metrics
    return metric_events


def compare(delivered, expected):
    """(ok, note) on counts and on the multiset of item keys."""
    d, e = collections.Counter(delivered), collections.Counter(expected)
    if d == e:
        return True, ""
    missing, extra = e - d, d - e
    notes = []
    if missing:
        notes.append("missing %d, e.g. %s" % (sum(missing.values()), list(missing)[:2]))
    if extra:
        notes.append("unexpected %d, e.g. %s" % (sum(extra.values()), list(extra)[:2]))
    return False, "; ".join(notes)


# --------------------------------------------------------------------------
# brokerstream: start, REST API, BBDO replay.
# --------------------------------------------------------------------------

class Api:
    def __init__(self, base):
        self.base = base
        token = base64.b64encode(("admin:" + ADMIN_PASSWORD).encode()).decode()
        self.headers = {"authorization": "Basic " + token, "content-type": "application/json"}

    def call(self, method, path, payload=None):
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def status(self, name):
        code, body = self.call("GET", "/api/v1/outputs/%s/status" % name)
        return body if code == 200 else {}


def replay_capture(addr, capture, timeout=60):
    """Sends the capture's bytes as cbd sent them (version_response, 953
    events, stop) on one TCP connection and reads brokerstream's packets:
    its version_response, then acks (2:2, acknowledged_events u32) until
    all events are acknowledged. Returns (acknowledged, seconds)."""
    start = time.time()
    s = socket.create_connection(addr)
    s.sendall(capture)
    buf, acked = b"", 0
    s.settimeout(1)
    while acked < EVENTS_TOTAL and time.time() - start < timeout:
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        buf += data
        while len(buf) >= 16:
            size, etype = struct.unpack(">HI", buf[2:8])
            if len(buf) < 16 + size:
                break
            payload, buf = buf[16:16 + size], buf[16 + size:]
            if etype == 0x00020002 and size >= 4:
                acked += struct.unpack(">I", payload[:4])[0]
    s.close()
    return acked, time.time() - start


def wait_acknowledged(api, targets, timeout):
    """Until each output's acknowledged count reaches its target."""
    deadline = time.time() + timeout
    last = {}
    while time.time() < deadline:
        last = {n: api.status(n) for n in targets}
        if all((st.get("counters") or {}).get("acknowledged", 0) >= targets[n] for n, st in last.items()):
            break
        time.sleep(0.5)
    return last


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--sandbox", action="store_true", help="run the scripts under lua.sandbox")
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()

    repo = os.path.abspath(args.repo)
    shared = os.path.join(os.path.dirname(repo), "shared", "fixtures")
    certified = os.path.join(shared, "centreon-certified")
    cbd = os.path.join(shared, "cbd-21.10")
    if not os.path.isdir(certified):
        shared = "/work/shared/fixtures"
        certified = os.path.join(shared, "centreon-certified")
        cbd = os.path.join(shared, "cbd-21.10")
    work = tempfile.mkdtemp(prefix="catalogue-")
    logdir = os.path.join(work, "logs")
    data = os.path.join(work, "data")
    scripts = os.path.join(data, "scripts")
    lua = os.path.join(work, "lua")
    for d in (logdir, scripts):
        os.makedirs(d)
    # The library, laid out as Centreon installs it:
    # <dir>/centreon-stream-connectors-lib/*.lua
    shutil.copytree(os.path.join(certified, "modules"), lua)

    names = ("elastic", "influxdb2", "influxdb1", "splunk", "pagerduty", "servicenow_tls",
             "proxy", "outage", "http", "bbdo")
    ports = {n: free_port() for n in names}
    conns = connectors(ports, logdir)
    outage = outage_connector(ports, logdir)

    # The connectors, byte for byte.
    for name, rel, _, _ in conns:
        src = os.path.join(certified, "centreon-certified", rel)
        dst = os.path.join(scripts, os.path.basename(rel))
        shutil.copyfile(src, dst)
        with open(src, "rb") as a, open(dst, "rb") as b:
            assert a.read() == b.read(), dst

    ca, tls = make_ca(work)
    serve(Elastic, ports["elastic"])
    serve(Influx2, ports["influxdb2"])
    serve(Influx1, ports["influxdb1"])
    serve(Splunk, ports["splunk"])
    serve(PagerDuty, ports["pagerduty"])
    serve(ServiceNow, ports["servicenow_tls"], tls)
    Proxy.tls_port = ports["servicenow_tls"]
    serve(Proxy, ports["proxy"])
    # ports["outage"] stays closed: connections to it are refused.

    config = os.path.join(work, "brokerstream.toml")
    with open(config, "w") as f:
        f.write('[lua]\n'
                '# Only the library copy: the other modules scripts need are\n'
                '# brokerstream\'s built-in ones, not what this machine has installed.\n'
                'package_path = "%s/?.lua;%s/?/init.lua"\n' % (lua, lua))
        if args.sandbox:
            f.write('sandbox = true\n')
    env = dict(os.environ, BROKERSTREAM_ADMIN_PASSWORD=ADMIN_PASSWORD, SSL_CERT_FILE=ca,
               BROKERSTREAM_LOG=os.environ.get("BROKERSTREAM_LOG", "info"))
    env.pop("SSL_CERT_DIR", None)
    log_path = os.path.join(work, "brokerstream.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([args.bin, "serve", "--config", config, "--data-dir", data,
                             "--http-addr", "127.0.0.1:%d" % ports["http"],
                             "--bbdo-addr", "127.0.0.1:%d" % ports["bbdo"], "--fsync", "never"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    api = Api("http://127.0.0.1:%d" % ports["http"])
    rc = 1
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(api.base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("brokerstream did not start; see " + log_path)

        for name, rel, _, params in conns + [outage]:
            code, body = api.call("POST", "/api/v1/outputs", {
                "name": name, "kind": "lua", "path": os.path.basename(rel),
                "parameters": [{"name": n, "type": t, "value": v} for n, t, v in params]})
            if code not in (200, 201):
                sys.exit("cannot create output %s: %s %s" % (name, code, body))

        with open(os.path.join(cbd, "capture-bbdo2.bin"), "rb") as f:
            capture = f.read()
        with open(os.path.join(cbd, "events-api-v1.jsonl")) as f:
            events = [json.loads(l) for l in f]
        status_events, status_metrics, metric_events = expected_values(events)

        acked, secs = replay_capture(("127.0.0.1", ports["bbdo"]), capture)
        print("BBDO: sent the capture (%d bytes, %d events) to 127.0.0.1:%d; brokerstream acknowledged %d in %.2f s"
              % (len(capture), EVENTS_TOTAL, ports["bbdo"], acked, secs))

        # What each output must have acknowledged in the end: every event,
        # except that Centreon acknowledges events its filter() rejected
        # only with a later write() returning true (docs/lua-runtime.md
        # §2.2, §2.3). influxdb-metrics-apiv1's filter() keeps only metrics and
        # it has no flush(): the events after the last metric stay pending.
        last_metric = max(i for i, e in enumerate(events) if e["_type"] == 196609) + 1
        ack_target = {c[0]: EVENTS_TOTAL for c in conns}
        ack_target["influxdb-metrics-v1"] = last_metric
        wait_acknowledged(api, ack_target, args.timeout)
        time.sleep(0.5)
        failures = 0
        rows = []
        for name, rel, sink, _ in conns:
            st = api.status(name)
            delivered = received(sink, name)
            expected = expected_for(name, status_events, status_metrics, metric_events)
            ok, note = compare(delivered, expected)
            c = st.get("counters") or {}
            notes = []
            if note:
                notes.append(note)
            if c.get("acknowledged", 0) != ack_target[name]:
                ok = False
                notes.append("acknowledged %s, expected %d" % (c.get("acknowledged"), ack_target[name]))
            elif ack_target[name] != EVENTS_TOTAL:
                notes.append("acknowledged %d: the %d events after the last metric wait for a write() (Centreon's rule)"
                             % (ack_target[name], EVENTS_TOTAL - ack_target[name]))
            if st.get("state") not in ("running", None) or (st.get("last_error") and not ok):
                notes.append("state %s, last_error: %s" % (st.get("state"), (st.get("last_error") or "").split("\n")[0]))
            mine = requests_of(sink, name)
            bad = [r for r in mine if r[3] >= 300]
            if bad:
                notes.append("%d requests refused by the sink (first: %s %s)" % (len(bad), bad[0][3], bad[0][0]))
            status = "ok" if ok else ("FAILED" if not delivered else "MISMATCH")
            if not ok:
                failures += 1
            if mine:
                notes.insert(0, "%d requests" % len(mine))
            rows.append((rel.split("/")[-1], status, len(delivered), len(expected), "; ".join(notes)))

        print()
        print("%-34s %-8s %9s %8s  %s" % ("connector", "status", "delivered", "expected", "notes"))
        for r in rows:
            print("%-34s %-8s %9d %8d  %s" % r)
        if Proxy.refused:
            print("proxy refused: %s" % sorted(set(Proxy.refused)))

        # The outage: its sink has been down since the start.
        print()
        print("outage (%s): sink http://127.0.0.1:%d refusing connections while the capture arrived"
              % (outage[1].split("/")[-1], ports["outage"]))
        time.sleep(max(0, 8 - secs))
        during = api.status(OUTAGE)

        def fields(st):
            c = st.get("counters") or {}
            lf = st.get("last_flush") or {}
            return ("state=%s acknowledged=%s queue_depth=%s buffered=%s attempts=%s failed=%s lost=%s "
                    "last_flush=%s last_error=%r" % (
                        st.get("state"), c.get("acknowledged"), st.get("queue_depth"), st.get("buffered"),
                        st.get("attempts"), c.get("failed"), st.get("lost"),
                        {k: lf.get(k) for k in ("reason", "result", "events") if k in lf} or None,
                        st.get("last_error")))
        print("  during : " + fields(during))
        pending_ok = (during.get("counters") or {}).get("acknowledged", 0) < EVENTS_TOTAL
        up_at = time.time()
        serve(Outage, ports["outage"])
        after = wait_acknowledged(api, {OUTAGE: EVENTS_TOTAL}, args.timeout).get(OUTAGE, {})
        took = time.time() - up_at
        time.sleep(0.5)
        print("  after  : " + fields(after) + " (%.1f s after the sink came back)" % took)
        delivered = received("outage", OUTAGE)
        ok, note = compare(delivered, status_metrics)
        dup = sum(v - 1 for v in collections.Counter(delivered).values() if v > 1)
        outage_ok = ok and pending_ok and (after.get("counters") or {}).get("acknowledged", 0) >= EVENTS_TOTAL
        print("  %-8s delivered %d, expected %d, %d requests%s%s%s" % (
            "ok" if outage_ok else "MISMATCH", len(delivered), len(status_metrics), len(REC.get("outage")),
            ", %d duplicates" % dup if dup else "",
            "" if pending_ok else ", events were acknowledged while the sink was down",
            "; " + note if note else ""))
        if not outage_ok:
            failures += 1
        print()
        print("brokerstream log: %s; script logs: %s" % (log_path, logdir) if args.keep
              else "(--keep keeps the work directory with brokerstream's and the scripts' logs)")
        rc = 1 if failures else 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
