//! Filestore names: `xx/<sha1>` (Odoo) or `xxx/<sha1>` (older Odoo), where the folder is the
//! start of the SHA-1 of the content. Anything else is never used as a path.

use std::fmt;

/// A validated filestore name, stored compactly (21 bytes: folder length, SHA-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreName {
    prefix: u8,
    sha: [u8; 20],
}

impl StoreName {
    /// Parses `xx/<40 hex>` or `xxx/<40 hex>` whose folder is the start of the hash.
    pub fn parse(s: &str) -> Option<Self> {
        let (dir, file) = s.split_once('/')?;
        if !(dir.len() == 2 || dir.len() == 3) || file.len() != 40 || !file.starts_with(dir) {
            return None;
        }
        if !file.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut sha = [0u8; 20];
        hex::decode_to_slice(file, &mut sha).ok()?;
        Some(Self {
            prefix: dir.len() as u8,
            sha,
        })
    }

    /// The SHA-1 of the content, hex.
    pub fn sha_hex(&self) -> String {
        hex::encode(self.sha)
    }

    /// The raw SHA-1.
    pub fn sha(&self) -> &[u8; 20] {
        &self.sha
    }

    pub(crate) fn to_bytes(self) -> [u8; 21] {
        let mut b = [0u8; 21];
        b[0] = self.prefix;
        b[1..].copy_from_slice(&self.sha);
        b
    }

    pub(crate) fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 21 || !(b[0] == 2 || b[0] == 3) {
            return None;
        }
        let mut sha = [0u8; 20];
        sha.copy_from_slice(&b[1..]);
        Some(Self { prefix: b[0], sha })
    }
}

impl fmt::Display for StoreName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = self.sha_hex();
        write!(f, "{}/{}", &h[..usize::from(self.prefix)], h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hash_names_are_accepted() {
        let sha = "ab".to_owned() + &"0123456789abcdef0123456789abcdef012345678"[..38];
        let n = StoreName::parse(&format!("ab/{sha}")).unwrap();
        assert_eq!(n.to_string(), format!("ab/{sha}"));
        assert!(StoreName::parse(&format!("abc/{}", "abc".to_owned() + &sha[3..])).is_some());
        for bad in [
            format!("cd/{sha}"),
            format!("../{sha}"),
            format!("ab/{sha}/x"),
            "ab/../../etc/passwd".to_owned(),
            format!("AB/{}", sha.to_uppercase()),
            "s3://bucket/key".to_owned(),
            String::new(),
        ] {
            assert!(StoreName::parse(&bad).is_none(), "{bad}");
        }
        assert_eq!(StoreName::from_bytes(&n.to_bytes()), Some(n));
    }
}
