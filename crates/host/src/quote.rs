//! POSIX shell quoting, for the one place a command line must become a string: the command
//! an SSH server hands to the remote user's login shell.

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

#[cfg(test)]
mod tests {
    use super::*;

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
