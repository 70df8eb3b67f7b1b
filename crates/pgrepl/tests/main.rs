//! pgrepl against real PostgreSQL clusters started by the sandbox on 127.0.0.1.

// A test that cannot set up its servers must fail loudly: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod lifecycle;
mod testutil;
