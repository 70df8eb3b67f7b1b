//! odoo.conf, read the way Odoo reads it (Python's `configparser.RawConfigParser`: sections,
//! `key = value` or `key: value`, full-line `#`/`;` comments, indented continuation lines, keys
//! lower-cased, values raw, duplicates refused) and written back with every line we did not
//! change byte for byte as it was, line endings included.

use crate::error::{InstanceError, Result};

/// The section Odoo reads.
pub const OPTIONS: &str = "options";

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    section: String,
    key: String,
    value: String,
    /// First and last line (continuations included), 0-based.
    first: usize,
    last: usize,
    /// The text of the first line up to where the value starts (`addons_path = `).
    prefix: String,
}

/// A parsed odoo.conf that can be edited in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OdooConf {
    /// Each line with its own ending (`\n`, `\r\n`, or none for a last line without one).
    lines: Vec<String>,
    entries: Vec<Entry>,
    /// Section headers: (name, line).
    sections: Vec<(String, usize)>,
    eol: String,
}

fn split_lines(text: &str) -> Vec<String> {
    text.split_inclusive('\n').map(str::to_owned).collect()
}

fn content(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

impl OdooConf {
    /// Parses `text`; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let lines = split_lines(text);
        let eol = if text.contains("\r\n") { "\r\n" } else { "\n" }.to_owned();
        let mut entries: Vec<Entry> = Vec::new();
        let mut sections: Vec<(String, usize)> = Vec::new();
        let mut section: Option<String> = None;
        // Index of the entry that continuation lines extend, and its indent.
        let mut open: Option<usize> = None;
        let mut indent_level = usize::MAX;
        let mut pending_blank = 0usize;
        let err = |line: usize, reason: String| InstanceError::Conf {
            file: origin.to_owned(),
            line: line + 1,
            reason,
        };
        for (i, raw) in lines.iter().enumerate() {
            let line = content(raw);
            let stripped = line.trim();
            if stripped.starts_with('#') || stripped.starts_with(';') {
                continue;
            }
            if stripped.is_empty() {
                // Python keeps blank lines inside a multi-line value (trailing ones are
                // stripped when the value is joined).
                if open.is_some() {
                    pending_blank += 1;
                }
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            if let Some(e) = open.filter(|_| indent > indent_level) {
                let entry = &mut entries[e];
                for _ in 0..pending_blank {
                    entry.value.push('\n');
                }
                pending_blank = 0;
                entry.value.push('\n');
                entry.value.push_str(stripped);
                entry.last = i;
                continue;
            }
            pending_blank = 0;
            indent_level = indent;
            if stripped.starts_with('[') && stripped.ends_with(']') && stripped.len() > 2 {
                let name = stripped[1..stripped.len() - 1].to_owned();
                if sections.iter().any(|(s, _)| *s == name) {
                    return Err(err(i, format!("section [{name}] appears twice")));
                }
                sections.push((name.clone(), i));
                section = Some(name);
                open = None;
                continue;
            }
            let Some(sect) = &section else {
                return Err(err(
                    i,
                    "text before the first [section] header (Odoo needs [options])".into(),
                ));
            };
            let Some(pos) = stripped.find(['=', ':']) else {
                return Err(err(
                    i,
                    format!("{stripped:?} is neither `key = value` nor a [section]"),
                ));
            };
            let key = stripped[..pos].trim_end().to_lowercase();
            if key.is_empty() {
                return Err(err(i, "a line with no key before '=' or ':'".into()));
            }
            if entries.iter().any(|e| e.section == *sect && e.key == key) {
                return Err(err(
                    i,
                    format!("option {key:?} appears twice in [{sect}]; Odoo refuses such a file"),
                ));
            }
            // Where the value starts in the raw line: after the delimiter and its spaces.
            let delim_at = line.find(['=', ':']).unwrap_or(0);
            let after = &line[delim_at + 1..];
            let value_start = delim_at + 1 + (after.len() - after.trim_start().len());
            entries.push(Entry {
                section: sect.clone(),
                key,
                value: stripped[pos + 1..].trim().to_owned(),
                first: i,
                last: i,
                prefix: line[..value_start].to_owned(),
            });
            open = Some(entries.len() - 1);
        }
        Ok(Self {
            lines,
            entries,
            sections,
            eol,
        })
    }

    /// The text, as it would be written.
    pub fn render(&self) -> String {
        self.lines.concat()
    }

    /// The raw value of `key` in `[options]` (falling back to `[DEFAULT]`, as Python does).
    pub fn get(&self, key: &str) -> Option<&str> {
        let key = key.to_lowercase();
        let find = |sect: &str| {
            self.entries
                .iter()
                .find(|e| e.section == sect && e.key == key)
                .map(|e| e.value.as_str())
        };
        find(OPTIONS).or_else(|| find("DEFAULT"))
    }

    /// `key` as Odoo reads a boolean from the file: its config parser turns exactly `True`
    /// and `true` into on, `False` and `false` into off; `None` when unset or another value.
    pub fn flag(&self, key: &str) -> Option<bool> {
        match self.get(key).map(str::trim) {
            Some("True" | "true") => Some(true),
            Some("False" | "false") => Some(false),
            _ => None,
        }
    }

    /// Whether `key` is set in `[options]` to something Odoo treats as a value (not empty,
    /// not `False`/`false`, which its parser turns into off, not `None`).
    pub fn is_set(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| !matches!(v.trim(), "" | "False" | "false" | "None"))
    }

    /// The port Odoo serves HTTP on: `http_port` (or its legacy name `xmlrpc_port`), 8069
    /// when unset, as Odoo reads it.
    pub fn http_port(&self) -> u16 {
        ["http_port", "xmlrpc_port"]
            .iter()
            .filter(|k| self.is_set(k))
            .find_map(|k| self.get(k).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(8069)
    }

    /// The address a client on the same machine reaches Odoo's HTTP at: `http_interface`
    /// (legacy `xmlrpc_interface`), or 127.0.0.1 when Odoo listens on every address.
    pub fn http_local_address(&self) -> String {
        ["http_interface", "xmlrpc_interface"]
            .iter()
            .filter(|k| self.is_set(k))
            .find_map(|k| self.get(k).map(|v| v.trim().to_owned()))
            .filter(|v| v != "0.0.0.0" && v != "::")
            .unwrap_or_else(|| "127.0.0.1".into())
    }

    /// The gevent (websocket/longpolling) port: `gevent_port`, legacy `longpolling_port`,
    /// 8072 when unset.
    pub fn gevent_port(&self) -> u16 {
        ["gevent_port", "longpolling_port"]
            .iter()
            .filter(|k| self.is_set(k))
            .find_map(|k| self.get(k).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(8072)
    }

    /// The role Odoo connects as (`db_user`), `None` when unset (then the OS user's name).
    pub fn db_user(&self) -> Option<&str> {
        self.is_set("db_user")
            .then(|| self.get("db_user").map(str::trim))
            .flatten()
    }

    /// Every `[options]` key, in file order.
    pub fn keys(&self) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|e| e.section == OPTIONS)
            .map(|e| e.key.as_str())
            .collect()
    }

    /// Sets `key` in `[options]`: an existing line is rewritten in place (keeping its
    /// `key = ` text), a new key goes after the last line of `[options]`. Returns the old
    /// value when it changed, `None` when it was already `value`.
    pub fn set(&mut self, key: &str, value: &str) -> Option<Option<String>> {
        let key = key.to_lowercase();
        let value_lines: Vec<&str> = value.split('\n').collect();
        let render = |prefix: &str, eol: &str| {
            let mut s = format!("{prefix}{}{eol}", value_lines[0]);
            for more in &value_lines[1..] {
                s.push_str(&format!("    {more}{eol}"));
            }
            s
        };
        if let Some(idx) = self
            .entries
            .iter()
            .position(|e| e.section == OPTIONS && e.key == key)
        {
            let e = self.entries[idx].clone();
            if e.value == value {
                return None;
            }
            let eol = if self.lines[e.last].ends_with("\r\n") {
                "\r\n"
            } else if self.lines[e.last].ends_with('\n') {
                "\n"
            } else {
                ""
            };
            let text = render(&e.prefix, eol);
            let new_lines = split_lines(&text);
            let removed = e.last - e.first + 1;
            let delta = new_lines.len() as isize - removed as isize;
            self.lines.splice(e.first..=e.last, new_lines);
            self.shift(e.last + 1, delta);
            let entry = &mut self.entries[idx];
            entry.value = value.to_owned();
            entry.last = (e.first as isize + value_lines.len() as isize - 1) as usize;
            return Some(Some(e.value));
        }
        // A new key: after the last entry of [options], or right after its header.
        let eol = self.eol.clone();
        let at = match self.sections.iter().find(|(s, _)| s == OPTIONS) {
            Some((_, header)) => self
                .entries
                .iter()
                .filter(|e| e.section == OPTIONS)
                .map(|e| e.last + 1)
                .max()
                .unwrap_or(header + 1),
            None => {
                if self.lines.last().is_some_and(|l| !l.ends_with('\n')) {
                    if let Some(l) = self.lines.last_mut() {
                        l.push_str(&eol);
                    }
                }
                self.sections.push((OPTIONS.to_owned(), self.lines.len()));
                self.lines.push(format!("[{OPTIONS}]{eol}"));
                self.lines.len()
            }
        };
        // The line before must end, or the new one would be glued to it.
        if at > 0 && at == self.lines.len() && !self.lines[at - 1].ends_with('\n') {
            self.lines[at - 1].push_str(&eol);
        }
        let prefix = format!("{key} = ");
        let text = render(&prefix, &eol);
        let new_lines = split_lines(&text);
        let n = new_lines.len();
        self.lines.splice(at..at, new_lines);
        self.shift(at, n as isize);
        self.entries.push(Entry {
            section: OPTIONS.to_owned(),
            key,
            value: value.to_owned(),
            first: at,
            last: at + n - 1,
            prefix,
        });
        Some(None)
    }

    /// Moves every entry and section that starts at or after line `from` by `delta` lines.
    fn shift(&mut self, from: usize, delta: isize) {
        let mv = |n: &mut usize| *n = (*n as isize + delta) as usize;
        for e in self.entries.iter_mut().filter(|e| e.first >= from) {
            mv(&mut e.first);
            mv(&mut e.last);
        }
        for (_, l) in self.sections.iter_mut().filter(|(_, l)| *l >= from) {
            mv(l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_configparser() {
        let text = "; top comment\r\n[options]\r\nADDONS_PATH = /a, /b\r\n  /c\r\ndb_host: False\r\nempty =\r\n# note\r\n[queue_job]\r\nchannels = root:2\r\n";
        let c = OdooConf::parse(text, "t").unwrap();
        assert_eq!(c.get("addons_path"), Some("/a, /b\n/c"));
        assert_eq!(c.get("db_host"), Some("False"));
        assert_eq!(c.get("empty"), Some(""));
        assert!(!c.is_set("db_host") && !c.is_set("empty"));
        assert_eq!(c.get("channels"), None, "only [options] counts");
        assert_eq!(c.render(), text);
    }

    #[test]
    fn refuses_what_python_refuses() {
        for (text, want) in [
            ("db_host = x\n", "before the first [section]"),
            ("[options]\na = 1\nA = 2\n", "appears twice"),
            ("[options]\njust words\n", "neither"),
            ("[options]\n[options]\n", "appears twice"),
        ] {
            let e = OdooConf::parse(text, "/etc/odoo.conf")
                .unwrap_err()
                .to_string();
            assert!(e.contains(want) && e.contains("/etc/odoo.conf"), "{e}");
        }
    }

    #[test]
    fn set_edits_in_place_and_appends_in_options() {
        let text = "[options]\ndb_port=5432\n\n[other]\nx = 1\n";
        let mut c = OdooConf::parse(text, "t").unwrap();
        assert_eq!(c.set("db_port", "5435"), Some(Some("5432".into())));
        assert_eq!(c.set("db_port", "5435"), None);
        assert_eq!(c.set("data_dir", "/srv/d"), Some(None));
        assert_eq!(
            c.render(),
            "[options]\ndb_port=5435\ndata_dir = /srv/d\n\n[other]\nx = 1\n"
        );
        let again = OdooConf::parse(&c.render(), "t").unwrap();
        assert_eq!(again.get("data_dir"), Some("/srv/d"));
        assert_eq!(again.get("x"), None);
    }

    #[test]
    fn set_replaces_continuation_lines_and_handles_no_final_newline() {
        let mut c =
            OdooConf::parse("[options]\naddons_path = /a,\n    /b\nlogfile = x", "t").unwrap();
        c.set("addons_path", "/n1,/n2");
        c.set("pidfile", "/run/p");
        assert_eq!(
            c.render(),
            "[options]\naddons_path = /n1,/n2\nlogfile = x\npidfile = /run/p\n"
        );
        let mut d = OdooConf::parse("# nothing\n", "t").unwrap();
        d.set("db_port", "1");
        assert_eq!(d.render(), "# nothing\n[options]\ndb_port = 1\n");
    }

    #[test]
    fn flags_are_read_as_odoo_reads_them() {
        let c = OdooConf::parse(
            "[options]\nproxy_mode = true\nx_sendfile = True\nlist_db = false\nworkers = 2\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.flag("proxy_mode"), Some(true));
        assert_eq!(c.flag("x_sendfile"), Some(true));
        assert_eq!(c.flag("list_db"), Some(false));
        assert_eq!(c.flag("workers"), None);
        assert_eq!(c.flag("missing"), None);
        // `false` is off for Odoo, not an address or a port.
        let c =
            OdooConf::parse("[options]\nhttp_interface = false\nhttp_port = 8070\n", "t").unwrap();
        assert!(!c.is_set("http_interface"));
        assert_eq!(c.http_local_address(), "127.0.0.1");
    }
}
