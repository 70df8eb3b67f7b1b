//! One test suite run against both `LocalHost` and `SshHost` (over the sandbox's real sshd
//! on loopback), and the SSH-specific failures: unknown and changed host keys, a rejected key,
//! a refused connection, a timeout.

// A test that cannot set up its servers must fail loudly: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ssh_failures;
mod suite;
mod testutil;
