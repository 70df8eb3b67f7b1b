//! SCRAM-SHA-256 password verifiers, computed here so that a plaintext password never travels
//! to the server (where `log_statement` could write it to a log), and checked here so that
//! re-running `prepare` can tell "already set" from "needs setting".

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

const ITERATIONS: u32 = 4096;

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => return Vec::new(),
    };
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

fn keys(password: &str, salt: &[u8], iterations: u32) -> (Vec<u8>, Vec<u8>) {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key).to_vec();
    let server_key = hmac(&salted, b"Server Key");
    (stored_key, server_key)
}

/// The verifier PostgreSQL stores for `password`:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
///
/// Our generated passwords are ASCII letters and digits, which SASLprep leaves unchanged.
pub fn verifier(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let (stored, server) = keys(password, &salt, ITERATIONS);
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        B64.encode(salt),
        B64.encode(stored),
        B64.encode(server)
    )
}

/// Whether `stored` (from `pg_authid.rolpassword`) is a SCRAM verifier of `password`.
/// MD5 hashes and anything else answer false: they get replaced by a SCRAM verifier.
pub fn matches(stored: &str, password: &str) -> bool {
    let parse = || {
        let rest = stored.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys_part) = rest.split_once('$')?;
        let (iter, salt) = params.split_once(':')?;
        let (stored_key, server_key) = keys_part.split_once(':')?;
        Some((
            iter.parse::<u32>().ok()?,
            B64.decode(salt).ok()?,
            B64.decode(stored_key).ok()?,
            B64.decode(server_key).ok()?,
        ))
    };
    match parse() {
        Some((iter, salt, stored_key, server_key)) if iter > 0 => {
            let (s, k) = keys(password, &salt, iter);
            s == stored_key && k == server_key
        }
        _ => false,
    }
}

/// A new random password: 32 letters and digits (about 190 bits).
pub fn generate_password() -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_matches_its_password_only() {
        let v = verifier("s3cret");
        assert!(v.starts_with("SCRAM-SHA-256$4096:"));
        assert!(!v.contains("s3cret"));
        assert!(matches(&v, "s3cret"));
        assert!(!matches(&v, "other"));
        assert!(!matches("md5abcdef", "s3cret"));
        assert!(!matches("garbage", "s3cret"));
    }

    #[test]
    fn generated_passwords_differ() {
        let (a, b) = (generate_password(), generate_password());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
