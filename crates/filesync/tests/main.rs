//! filesync against the sandbox: a real standby database, a real sshd, real rsync.

// A test that cannot set up its servers must fail loudly: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod filestore;
mod prune;
mod session;
mod testutil;
mod trees;
