//! The relay's integration tests, one test binary: its command line ([`cli`]) and an agent
//! session driven through channels ([`session`]).

mod cli;
mod session;
