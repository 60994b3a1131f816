//! The agent's integration tests, one test binary: its command line ([`cli`]), the Mamut
//! connection pool under cancellation ([`pool`]) and a session driven through channels
//! ([`session`]). `fixtures/` holds files the unit tests in `src/` include.

mod cli;
mod pool;
mod session;
