#!/usr/bin/python3
# Stand-in for Odoo's `odoo-bin`, written by the odoo-standby sandbox.
#
# It checks at start what the real one would trip on, and fails the way the real one fails
# (same exception names and log lines), so that a smoke test's diagnosis can be tested
# without installing Odoo:
#   - the config file parses (configparser.RawConfigParser, [options] only, as Odoo reads it)
#   - every addons_path entry is a directory            -> exit 2, optparse-style error
#   - the database is reachable as db_user                -> psycopg2.OperationalError, exit 1
#   - the database accepts writes                         -> ReadOnlySqlTransaction, exit 1
#   - db_user owns every table (Odoo alters its schema)   -> InsufficientPrivilege, exit 1
#   - every installed module is found in the addons path  -> "Some modules are not loaded" (logged)
#   - python external_dependencies of installed modules   -> ModuleNotFoundError, exit 1
#   - every attachment's file is readable                 -> _read_file errors, exit 1
#     (stricter than Odoo, which only logs them: a missing file is lost data to us)
#   - without --stop-after-init: binds http_port          -> OSError Errno 98, exit 1
#     (on http_interface, or 127.0.0.1 when unset: the sandbox stays on loopback)
import argparse
import ast
import configparser
import datetime
import http.server
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile

PID = os.getpid()


def log(level, db, logger, msg):
    now = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    line = "%s %d %s %s %s: %s\n" % (now, PID, level, db or "?", logger, msg)
    OUT.write(line)
    OUT.flush()


def falsy(v):
    return v is None or v.strip() in ("", "False", "None")


def main():
    global OUT
    OUT = sys.stderr
    p = argparse.ArgumentParser(prog="odoo-bin", add_help=True)
    p.add_argument("-c", "--config", dest="config")
    p.add_argument("-d", "--database", dest="db_name")
    p.add_argument("--stop-after-init", action="store_true")
    p.add_argument("--logfile", dest="logfile")
    p.add_argument("--http-port", "--xmlrpc-port", dest="http_port", type=int)
    p.add_argument("-i", "--init")
    p.add_argument("-u", "--update")
    p.add_argument("--no-http", action="store_true")
    args, _unknown = p.parse_known_args()

    opts = {}
    if args.config:
        cp = configparser.RawConfigParser()
        try:
            read = cp.read([args.config])
        except configparser.Error as e:
            sys.stderr.write("Traceback (most recent call last):\n%s: %s\n" % (type(e).__name__, e))
            return 1
        if not read:
            sys.stderr.write("odoo-bin: error: cannot read config file %s\n" % args.config)
            return 2
        if cp.has_section("options"):
            opts = dict(cp.items("options"))

    logfile = args.logfile if args.logfile is not None else opts.get("logfile")
    if not falsy(logfile):
        OUT = open(logfile, "a")

    addons = []
    for entry in (opts.get("addons_path") or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        path = os.path.abspath(os.path.expanduser(entry))
        if not os.path.isdir(path):
            sys.stderr.write(
                "Usage: odoo-bin [options]\n\nodoo-bin: error: option --addons-path: "
                "the path %r is not a valid addons directory\n" % entry
            )
            return 2
        addons.append(path)
    # odoo/addons beside odoo-bin is always in the path, as in Odoo.
    addons.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "odoo", "addons"))

    data_dir = opts.get("data_dir")
    if falsy(data_dir):
        # Odoo's default: under the HOME of whichever user runs it.
        data_dir = os.path.join(os.path.expanduser("~"), ".local", "share", "Odoo")
    db = args.db_name or (None if falsy(opts.get("db_name")) else opts.get("db_name"))
    log("INFO", db, "odoo", "Odoo version 17.0 (odoo-standby sandbox stand-in)")
    log("INFO", db, "odoo", "addons paths: %r" % addons)
    log("INFO", db, "odoo", "data dir: %r" % data_dir)

    if db:
        rc = check_database(db, opts, addons, data_dir)
        if rc:
            return rc
    if args.stop_after_init:
        log("INFO", db, "odoo.service.server", "Initiating shutdown")
        return 0
    return serve(db, opts, args)


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


def check_database(db, opts, addons, data_dir):
    r = psql(db, opts, "SELECT 1")
    if r.returncode != 0:
        log("ERROR", db, "odoo.sql_db", "Connection to the database failed")
        sys.stderr.write(
            "Traceback (most recent call last):\npsycopg2.OperationalError: %s\n" % r.stderr.strip()
        )
        return 1
    r = psql(db, opts, "SELECT pg_is_in_recovery()")
    if r.stdout.strip() == "t":
        sys.stderr.write(
            "Traceback (most recent call last):\npsycopg2.errors.ReadOnlySqlTransaction: "
            "cannot execute UPDATE in a read-only transaction\n"
        )
        return 1
    r = psql(
        db,
        opts,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tableowner <> current_user ORDER BY 1 LIMIT 1",
    )
    if r.stdout.strip():
        sys.stderr.write(
            "Traceback (most recent call last):\npsycopg2.errors.InsufficientPrivilege: "
            "must be owner of table %s\n" % r.stdout.strip()
        )
        return 1
    r = psql(db, opts, "BEGIN; UPDATE ir_module_module SET state = state WHERE name = 'base'; COMMIT")
    if r.returncode != 0:
        sys.stderr.write("Traceback (most recent call last):\npsycopg2.Error: %s\n" % r.stderr.strip())
        return 1

    installed = psql(db, opts, "SELECT name FROM ir_module_module WHERE state = 'installed' ORDER BY 1")
    missing = []
    for name in installed.stdout.split():
        found = None
        for a in addons:
            if os.path.isfile(os.path.join(a, name, "__manifest__.py")):
                found = os.path.join(a, name)
                break
        if not found:
            missing.append(name)
            continue
        with open(os.path.join(found, "__manifest__.py")) as f:
            try:
                manifest = ast.literal_eval(f.read())
            except Exception:
                manifest = {}
        for dep in (manifest.get("external_dependencies") or {}).get("python", []):
            if importlib.util.find_spec(dep) is None:
                log("ERROR", db, "odoo.modules.module", "Couldn't load module %s" % name)
                sys.stderr.write(
                    "Traceback (most recent call last):\nModuleNotFoundError: No module named %r\n" % dep
                )
                return 1
    if missing:
        log(
            "ERROR",
            db,
            "odoo.modules.loading",
            "Some modules are not loaded, some dependencies or manifest may be missing: %r" % missing,
        )

    names = psql(
        db,
        opts,
        "SELECT DISTINCT store_fname FROM ir_attachment WHERE store_fname IS NOT NULL ORDER BY 1",
    )
    unreadable = 0
    filestore = os.path.join(data_dir, "filestore", db)
    for fname in names.stdout.split():
        full = os.path.join(filestore, fname)
        try:
            with open(full, "rb") as f:
                f.read(1)
        except OSError:
            unreadable += 1
            log("ERROR", db, "odoo.addons.base.models.ir_attachment", "_read_file reading %s" % full)
    if unreadable:
        log("ERROR", db, "odoo.addons.base.models.ir_attachment", "%d attachment files unreadable" % unreadable)
        return 1
    log("INFO", db, "odoo.modules.loading", "Modules loaded.")
    return 0


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"status": "pass"}' if self.path.startswith("/web/health") else b"Odoo stand-in"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def serve(db, opts, args):
    port = args.http_port or int(opts.get("http_port") or opts.get("xmlrpc_port") or 8069)
    iface = opts.get("http_interface") or opts.get("xmlrpc_interface")
    iface = "127.0.0.1" if falsy(iface) else iface
    try:
        httpd = http.server.HTTPServer((iface, port), Health)
    except OSError as e:
        log("ERROR", db, "odoo.service.server", "Could not start the HTTP server")
        sys.stderr.write("Traceback (most recent call last):\nOSError: %s\n" % e)
        return 1
    log("INFO", db, "odoo.service.server", "HTTP service (werkzeug) running on %s:%d" % (iface, port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
