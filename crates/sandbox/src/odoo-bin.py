#!/usr/bin/python3
# Stand-in for Odoo 17's `odoo-bin`, written by the odoo-standby sandbox.
#
# It behaves as real Odoo 17 does on every fact measured in ../shared/odoo/README.md
# (section 6), with the same exit codes and the same log lines, so that the smoke test's
# diagnosis is tested the same way against both (the smoke-test case table runs on both):
#   - db_user = postgres (or PGUSER=postgres)     -> "...security risk, aborting." rc 1
#   - addons_path entries missing in the config   -> kept silently (rc 0); on the command
#     line (--addons-path) they are refused by optparse, rc 2
#   - `web` not on the addons path                -> CRITICAL "Couldn't load module web" and
#     ModuleNotFoundError odoo.addons.web, logged; it goes on
#   - the database cannot be reached as db_user   -> OperationalError, rc 1
#   - Odoo's own sequence base_registry_signaling invisible to db_user (objects owned by
#     another role)                               -> DuplicateTable, Failed to initialize, rc 255
#   - an installed module not on the addons path  -> "Some modules are not loaded", rc 0
#   - an installed module whose Python import fails (its manifest's external python
#     dependencies stand for its imports)         -> ModuleNotFoundError, Failed to initialize, rc 255
#   - a read-only hot standby, attachment files missing, tables owned by someone else
#                                                 -> nothing at all, rc 0 (as real Odoo)
#   - serving with the HTTP port taken            -> a thread traceback, and the process stays
#     alive without HTTP (SIGTERM: rc 0)
#   - running as root                             -> a warning on stderr, runs normally
# Serving binds http_interface, or 127.0.0.1 when unset (the sandbox stays on loopback;
# real Odoo binds every address). It answers /web/health ({"status": "pass"}, also on a
# standby), /web/login (a page with a form and links to asset bundles), /web/assets/*, and
# /web/content/<id> for public attachments whose file is in the filestore.
import argparse
import ast
import configparser
import datetime
import http.server
import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading

PID = os.getpid()
VERSION = "17.0"


def log(level, db, logger, msg):
    now = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    line = "%s %d %s %s %s: %s \n" % (now, PID, level, db or "?", logger, msg)
    OUT.write(line)
    OUT.flush()


def traceback(text):
    OUT.write("Traceback (most recent call last):\n%s\n" % text)
    OUT.flush()


def falsy(v):
    return v is None or v.strip() in ("", "False", "None")


def usage_error(msg):
    sys.stderr.write("Usage: odoo-bin server [options]\n\nodoo-bin server: error: %s\n" % msg)
    return 2


def main():
    global OUT
    OUT = sys.stderr
    p = argparse.ArgumentParser(prog="odoo-bin", add_help=True)
    p.add_argument("-c", "--config", dest="config")
    p.add_argument("-d", "--database", dest="db_name")
    p.add_argument("--stop-after-init", action="store_true")
    p.add_argument("--logfile", dest="logfile")
    p.add_argument("--http-port", "--xmlrpc-port", dest="http_port", type=int)
    p.add_argument("--addons-path", dest="addons_path")
    p.add_argument("--version", action="store_true")
    p.add_argument("-i", "--init")
    p.add_argument("-u", "--update")
    p.add_argument("--no-http", action="store_true")
    args, _unknown = p.parse_known_args()
    if args.version:
        print("Odoo Server %s" % VERSION)
        return 0
    if os.geteuid() == 0:
        sys.stderr.write("Running as user 'root' is a security risk.\n")

    opts = {}
    if args.config:
        cp = configparser.RawConfigParser()
        try:
            cp.read([args.config])
        except configparser.Error as e:
            traceback("%s: %s" % (type(e).__name__, e))
            return 1
        if cp.has_section("options"):
            opts = dict(cp.items("options"))
    if args.addons_path:
        # Only the command line is validated (optparse callback), as in Odoo 17.
        for entry in args.addons_path.split(","):
            entry = entry.strip()
            if not os.path.isdir(entry):
                return usage_error("option --addons-path: no such directory: %r" % entry)
            if not any(os.path.isfile(os.path.join(entry, m, "__manifest__.py")) for m in os.listdir(entry)):
                return usage_error("option --addons-path: the path %r is not a valid addons directory" % entry)
        opts["addons_path"] = args.addons_path

    db_user = opts.get("db_user")
    if (falsy(db_user) and os.environ.get("PGUSER") == "postgres") or (not falsy(db_user) and db_user.strip() == "postgres"):
        sys.stderr.write("Using the database user 'postgres' is a security risk, aborting.")
        return 1

    logfile = args.logfile if args.logfile is not None else opts.get("logfile")
    if not falsy(logfile):
        OUT = open(logfile, "a")

    data_dir = opts.get("data_dir")
    if falsy(data_dir):
        # Odoo's default: under the HOME of whichever user runs it.
        data_dir = os.path.join(os.path.expanduser("~"), ".local", "share", "Odoo")
    versioned = os.path.join(data_dir, "addons", VERSION)
    try:
        # What Odoo makes at its first start: addons/ 0700 and addons/17.0 0500.
        if not os.path.isdir(versioned):
            os.makedirs(os.path.join(data_dir, "addons"), mode=0o700, exist_ok=True)
            os.makedirs(versioned, mode=0o500, exist_ok=True)
    except OSError:
        pass
    tree = os.path.dirname(os.path.abspath(__file__))
    addons = [os.path.join(tree, "odoo", "addons"), versioned]
    for entry in (opts.get("addons_path") or "").split(","):
        entry = entry.strip()
        if entry:
            # A missing directory is kept silently, as Odoo 17 does with the config file.
            addons.append(os.path.abspath(os.path.expanduser(entry)))
    db = args.db_name or (None if falsy(opts.get("db_name")) else opts.get("db_name"))
    log("INFO", None, "odoo", "Odoo version %s (odoo-standby sandbox stand-in)" % VERSION)
    if args.config:
        log("INFO", None, "odoo", "Using configuration file at %s" % args.config)
    log("INFO", None, "odoo", "addons paths: %r" % addons)
    log("INFO", None, "odoo", "database: %s@%s:%s" % (
        db_user or "default", opts.get("db_host") or "default", opts.get("db_port") or "default"))
    if not find_module("web", addons):
        log("CRITICAL", None, "odoo.modules.module", "Couldn't load module web")
        log("ERROR", None, "odoo.service.server", "Failed to load server-wide module `web`.\n"
            "The `web` module is provided by the addons found in the `openerp-web` project.\n"
            "Maybe you forgot to add those addons in your addons_path configuration.")
        traceback("ModuleNotFoundError: No module named 'odoo.addons.web'")

    if db:
        rc = load_registry(db, opts, addons)
        if rc:
            log("INFO", db, "odoo.service.server", "Initiating shutdown")
            return rc
    if args.stop_after_init:
        log("INFO", db, "odoo.service.server", "Initiating shutdown")
        log("INFO", db, "odoo.service.server", "Hit CTRL-C again or send a second signal to force the shutdown.")
        return 0
    return serve(db, opts, args, data_dir)


def find_module(name, addons):
    for a in addons:
        path = os.path.join(a, name)
        if os.path.isfile(os.path.join(path, "__manifest__.py")):
            return path
    return None


def psql(db, opts, sql):
    cmd = ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql]
    if not falsy(opts.get("db_host")):
        cmd += ["-h", opts["db_host"]]
    if not falsy(opts.get("db_port")):
        cmd += ["-p", opts["db_port"]]
    user = opts.get("db_user")
    if not falsy(user):
        cmd += ["-U", user]
    env = dict(os.environ)
    pw = opts.get("db_password")
    tmp = None
    if not falsy(pw):
        # The password goes through a 0600 passfile, never the environment or argv.
        fd, tmp = tempfile.mkstemp(prefix="odoo-pgpass-")
        with os.fdopen(fd, "w") as f:
            f.write("*:*:*:*:%s\n" % pw.replace("\\", "\\\\").replace(":", "\\:"))
        env["PGPASSFILE"] = tmp
    env["PGCONNECT_TIMEOUT"] = "5"
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    finally:
        if tmp:
            os.unlink(tmp)
    return r


def failed_to_initialize(db, text):
    log("ERROR", db, "odoo.modules.registry", "Failed to load registry")
    traceback(text)
    log("CRITICAL", db, "odoo.service.server", "Failed to initialize database `%s`." % db)
    traceback(text)
    return 255


def load_registry(db, opts, addons):
    r = psql(db, opts, "SELECT 1")
    if r.returncode != 0:
        log("INFO", None, "odoo.sql_db", "Connection to the database failed")
        msg = r.stderr.strip().splitlines()[0] if r.stderr.strip() else "connection failed"
        traceback("psycopg2.OperationalError: %s" % re.sub(r"^psql: error: ", "", msg))
        return 1
    # Odoo looks its signaling sequence up in information_schema, which shows only what the
    # role may use: objects owned by another role make it try to create it again.
    r = psql(db, opts,
             "SELECT (SELECT count(*) FROM information_schema.sequences WHERE sequence_name = 'base_registry_signaling'), "
             "to_regclass('base_registry_signaling') IS NOT NULL")
    seen, exists = (r.stdout.strip().split("|") + ["", ""])[:2]
    if seen == "0" and exists == "t":
        log("ERROR", None, "odoo.sql_db", 'bad query: CREATE SEQUENCE "base_registry_signaling" INCREMENT BY 1 START WITH 1\n'
            'ERROR: relation "base_registry_signaling" already exists\n')
        return failed_to_initialize(None, 'psycopg2.errors.DuplicateTable: relation "base_registry_signaling" already exists')
    installed = psql(db, opts, "SELECT name FROM ir_module_module WHERE state = 'installed' ORDER BY 1")
    names = installed.stdout.split()
    log("INFO", db, "odoo.modules.loading", "loading %d modules..." % len(names))
    missing = []
    for name in names:
        found = find_module(name, addons)
        if not found:
            log("WARNING", db, "odoo.modules.graph", "module %s: not installable, skipped" % name)
            missing.append(name)
            continue
        with open(os.path.join(found, "__manifest__.py")) as f:
            try:
                manifest = ast.literal_eval(f.read())
            except Exception:
                manifest = {}
        for dep in (manifest.get("external_dependencies") or {}).get("python", []):
            if importlib.util.find_spec(dep) is None:
                # At load time only the import fails (external_dependencies are checked at
                # install); the manifest stands for the module's imports here.
                log("CRITICAL", db, "odoo.modules.module", "Couldn't load module %s" % name)
                log("WARNING", db, "odoo.modules.loading", "Transient module states were reset")
                return failed_to_initialize(db, "ModuleNotFoundError: No module named %r" % dep)
    if missing:
        log("ERROR", db, "odoo.modules.loading",
            "Some modules are not loaded, some dependencies or manifest may be missing: %r" % sorted(missing))
    log("INFO", db, "odoo.modules.loading", "Modules loaded.")
    log("INFO", db, "odoo.modules.registry", "Registry loaded in 0.100s")
    return 0


LOGIN_PAGE = (b'<!DOCTYPE html><html><head>'
              b'<link type="text/css" rel="stylesheet" href="/web/assets/1/standin/web.assets_frontend.min.css"/>'
              b'</head><body><form method="post" action="/web/login">'
              b'<input type="hidden" name="csrf_token" value="standin"/></form></body></html>')


def handler(db, opts, data_dir):
    class Handler(http.server.BaseHTTPRequestHandler):
        def reply(self, code, body, ctype="text/html"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path.startswith("/web/health"):
                return self.reply(200, b'{"status": "pass"}', "application/json")
            if path == "/web/login":
                return self.reply(200, LOGIN_PAGE)
            if path.startswith("/web/assets/"):
                return self.reply(200, b"/* stand-in bundle */\n", "text/css")
            m = re.match(r"^/web/content/(\d+)$", path)
            if m and db:
                r = psql(db, opts, "SELECT store_fname FROM ir_attachment WHERE id = %s AND public" % m.group(1))
                fname = r.stdout.strip()
                if fname:
                    try:
                        with open(os.path.join(data_dir, "filestore", db, fname), "rb") as f:
                            return self.reply(200, f.read(), "application/octet-stream")
                    except OSError:
                        return self.reply(500, b"FileNotFoundError")
            return self.reply(404, b"not found")

        def log_message(self, *a):
            pass

    return Handler


def serve(db, opts, args, data_dir):
    port = args.http_port or int(opts.get("http_port") or opts.get("xmlrpc_port") or 8069)
    iface = opts.get("http_interface") or opts.get("xmlrpc_interface")
    iface = "127.0.0.1" if falsy(iface) else iface
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        httpd = http.server.ThreadingHTTPServer((iface, port), handler(db, opts, data_dir))
    except OSError as e:
        # Real Odoo: the HTTP thread dies with a raw traceback; the process stays up.
        sys.stderr.write("Exception in thread odoo.service.httpd:\nTraceback (most recent call last):\n"
                         "OSError: [Errno %d] %s\n" % (e.errno or 98, e.strerror or "Address already in use"))
        sys.stderr.flush()
        while not stop.wait(1):
            pass
        log("INFO", db, "odoo.service.server", "Initiating shutdown")
        return 0
    log("INFO", db, "odoo.service.server", "HTTP service (werkzeug) running on %s:%d" % (
        "localhost" if iface == "127.0.0.1" else iface, port))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    while not stop.wait(1):
        pass
    log("INFO", db, "odoo.service.server", "Initiating shutdown")
    httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
