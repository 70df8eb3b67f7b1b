#!/usr/bin/python3
"""The lab's users: they talk to a real Odoo over HTTP and XML-RPC, as people and scripts do.

Installed by the lab in the backup machine (python3's standard library only). Every command
prints one JSON object. Commands:
  wait-http URL [--timeout S]              until GET URL/web/login answers 200
  web-login URL DB LOGIN PASSWORD          the login page and its asset bundles, then the
                                           form, as a browser does
  write URL DB --partners N --orders N --origin TEXT
  upload URL DB --log FILE [--count N] [--rate R] [--origin TEXT]
                                           attachments (ir.attachment.create with datas, and
                                           message_post with attachments), one line per
                                           committed attachment in FILE: id sha1 size
  check URL DB --log FILE...               every logged attachment read back through Odoo
  counts URL DB [--origin TEXT]            rows Odoo sees
"""
import argparse
import base64
import hashlib
import http.cookiejar
import json
import os
import random
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client

ADMIN = ("admin", "admin")


def out(obj, code=0):
    print(json.dumps(obj, sort_keys=True))
    sys.exit(code)


def rpc(url, db):
    common = xmlrpc.client.ServerProxy(url + "/xmlrpc/2/common", allow_none=True)
    uid = common.login(db, *ADMIN)
    if not uid:
        raise RuntimeError("admin login refused")
    models = xmlrpc.client.ServerProxy(url + "/xmlrpc/2/object", allow_none=True)

    def call(model, method, *args, **kw):
        return models.execute_kw(db, uid, ADMIN[1], model, method, list(args), kw)

    return call


def wait_http(a):
    start = time.time()
    last = None
    while time.time() - start < a.timeout:
        try:
            with urllib.request.urlopen(a.url + "/web/login", timeout=5) as r:
                if r.status == 200:
                    out({"code": 200, "seconds": round(time.time() - start, 3)})
                last = r.status
        except urllib.error.HTTPError as e:
            last = e.code
        except Exception as e:  # not listening yet
            last = type(e).__name__
        time.sleep(0.1)
    out({"code": last, "seconds": round(time.time() - start, 3), "error": "timeout"}, 1)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kw):
        return None


def web_login(a):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    with opener.open(a.url + "/web/login?db=" + urllib.parse.quote(a.db), timeout=30) as r:
        page = r.read().decode("utf-8", "replace")
    # As a browser does: the bundles the page links to (Odoo builds them on first use).
    assets = {}
    for link in sorted(set(re.findall(r'(/web/assets/[^"\' >]+)', page))):
        try:
            with opener.open(a.url + link, timeout=60) as r:
                assets[link] = r.status
        except urllib.error.HTTPError as e:
            assets[link] = e.code
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if not m:
        out({"error": "no csrf_token on the login page", "assets": assets}, 1)
    form = urllib.parse.urlencode(
        {"login": a.login, "password": a.password, "csrf_token": m.group(1), "db": a.db}
    ).encode()
    try:
        with opener.open(a.url + "/web/login", data=form, timeout=30) as r:
            body = r.read().decode("utf-8", "replace")
            out({"status": r.status, "assets": assets,
                 "error": "no redirect: " + ("wrong login" if "Wrong login" in body else "?")}, 1)
    except urllib.error.HTTPError as e:
        loc = e.headers.get("Location", "")
        ok = e.code in (301, 302, 303) and "/web/login" not in loc and all(c == 200 for c in assets.values())
        out({"status": e.code, "location": loc, "assets": assets}, 0 if ok else 1)


def write(a):
    call = rpc(a.url, a.db)
    partners = [call("res.partner", "create", {"name": "%s partner %d" % (a.origin, i)}) for i in range(a.partners)]
    orders = [call("lab.order", "create", {"name": "%s order %d" % (a.origin, i), "origin": a.origin}) for i in range(a.orders)]
    out({"partners": partners, "orders": orders})


def payload(rng, i, origin):
    size = rng.choice([200, 900, 3000, 12000, 40000, 150000])
    head = ("%s attachment %d " % (origin, i)).encode()
    return head + rng.randbytes(max(size - len(head), 1))


def upload(a):
    socket.setdefaulttimeout(15)
    call = rpc(a.url, a.db)
    partner = call("res.partner", "create", {"name": "%s uploader" % a.origin})
    order = call("lab.order", "create", {"name": "%s uploads" % a.origin, "origin": a.origin})
    rng = random.Random(hashlib.sha1((a.origin + str(os.getpid()) + str(time.time())).encode()).digest())
    done = failures = 0
    errors = []
    log = open(a.log, "a")
    i = 0
    while a.count == 0 or done < a.count:
        data = payload(rng, i, a.origin)
        i += 1
        try:
            if i % 3:
                ids = [call("ir.attachment", "create", {
                    "name": "upload-%d.bin" % i, "datas": base64.b64encode(data).decode(),
                    "res_model": "res.partner", "res_id": partner})]
            else:
                # message_post takes (name, content) with text content.
                text = base64.b64encode(data).decode()
                msg = call("lab.order", "message_post", [order], body="upload %d" % i,
                           attachments=[["post-%d.txt" % i, text]])
                msg = msg[0] if isinstance(msg, list) else msg
                ids = call("mail.message", "read", [msg], fields=["attachment_ids"])[0]["attachment_ids"]
                data = text.encode()
        except Exception as e:
            failures += 1
            errors.append(type(e).__name__)
            if failures >= 3:
                break
            time.sleep(0.5)
            continue
        failures = 0
        for aid in ids:
            log.write("%d %s %d\n" % (aid, hashlib.sha1(data).hexdigest(), len(data)))
        log.flush()
        os.fsync(log.fileno())
        done += 1
        if a.rate:
            time.sleep(1.0 / a.rate)
    out({"uploaded": done, "errors": errors[-3:]})


def check(a):
    call = rpc(a.url, a.db)
    want = {}
    for f in a.log:
        for line in open(f):
            p = line.split()
            if len(p) == 3:
                want[int(p[0])] = p[1]
    present = set(call("ir.attachment", "search", [["id", "in", list(want)]]))
    ok, bad, empty, empty_names = [], [], [], []
    for aid in sorted(present):
        rec = call("ir.attachment", "read", [aid], fields=["datas", "store_fname"])[0]
        data = base64.b64decode(rec["datas"] or "")
        if not data:
            empty.append(aid)
            empty_names.append(rec["store_fname"])
        elif hashlib.sha1(data).hexdigest() == want[aid]:
            ok.append(aid)
        else:
            bad.append(aid)
    out({"logged": len(want), "present": len(present), "absent": sorted(set(want) - present),
         "ok": len(ok), "bad": bad, "empty": empty, "empty_names": empty_names})


def counts(a):
    call = rpc(a.url, a.db)
    dom = [["origin", "=", a.origin]] if a.origin else []
    out({"partners": call("res.partner", "search_count", []),
         "orders": call("lab.order", "search_count", dom),
         "attachments": call("ir.attachment", "search_count", [["store_fname", "!=", False]])})


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("wait-http"); s.add_argument("url"); s.add_argument("--timeout", type=float, default=60)
    s.set_defaults(f=wait_http)
    s = sub.add_parser("web-login"); s.add_argument("url"); s.add_argument("db"); s.add_argument("login"); s.add_argument("password")
    s.set_defaults(f=web_login)
    s = sub.add_parser("write"); s.add_argument("url"); s.add_argument("db")
    s.add_argument("--partners", type=int, default=0); s.add_argument("--orders", type=int, default=0)
    s.add_argument("--origin", default="lab"); s.set_defaults(f=write)
    s = sub.add_parser("upload"); s.add_argument("url"); s.add_argument("db"); s.add_argument("--log", required=True)
    s.add_argument("--count", type=int, default=0); s.add_argument("--rate", type=float, default=4)
    s.add_argument("--origin", default="lab"); s.set_defaults(f=upload)
    s = sub.add_parser("check"); s.add_argument("url"); s.add_argument("db"); s.add_argument("--log", action="append", required=True)
    s.set_defaults(f=check)
    s = sub.add_parser("counts"); s.add_argument("url"); s.add_argument("db"); s.add_argument("--origin", default="")
    s.set_defaults(f=counts)
    a = p.parse_args()
    a.f(a)


if __name__ == "__main__":
    main()
