//! Quoting for the places a command line must become a string: the command an SSH server
//! hands to the remote user's login shell (POSIX shell words), and a systemd unit's
//! `ExecStart=` (systemd's own word syntax).

/// Quotes `word` so that a POSIX shell reads it back as exactly one word, unchanged.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Quotes every word and joins them with spaces.
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes one word for a systemd `ExecStart=` line (double quotes, `\` escapes, `%` doubled
/// so that systemd does not expand a specifier).
pub fn systemd_word(w: &str) -> String {
    let w = w.replace('%', "%%");
    if !w.is_empty()
        && !w
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
    {
        return w;
    }
    format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Quotes every word of an `ExecStart=` command line and joins them with spaces.
pub fn systemd_line<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| systemd_word(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_systemd() {
        assert_eq!(systemd_word("/opt/odoo-bin"), "/opt/odoo-bin");
        assert_eq!(systemd_word("/opt/my odoo/x"), "\"/opt/my odoo/x\"");
        assert_eq!(systemd_word("100%"), "100%%");
        assert_eq!(systemd_word("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(quote("pg_ctl"), "pg_ctl");
        assert_eq!(quote("/var/lib/x=1"), "/var/lib/x=1");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn round_trips_through_sh() {
        let words = ["a b", "it's", "$HOME", "`x`", "\\", "\n", "*", "-n"];
        let line = format!("printf '%s\\0' {}", join(&words));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        let got: Vec<&[u8]> = out
            .stdout
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .collect();
        let want: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        assert_eq!(got, want);
    }
}
