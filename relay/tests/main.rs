//! The relay's integration tests, one test binary: its command line ([`cli`]), an agent
//! session driven through channels ([`session`]) and the HTTP router's limits ([`router`]).

mod accounts;
mod alerts;
mod cli;
mod console_actions;
mod console_views;
mod router;
mod session;
mod wait;
