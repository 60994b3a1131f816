//! The tests crate's one test binary: the end-to-end tests (the real `relay` and `agent`
//! binaries, TLS, random ports) and the store conformance suite ([`store`]).

// The store tests' runner, declared first so every module below can use it.
#[macro_use]
mod conformance;

mod alerts;
mod bench;
mod check;
mod clients;
mod close_codes;
mod console_actions;
mod console_browser;
mod crash;
mod delivery;
mod fuzz_inputs;
mod isolation;
mod limits;
mod mamut_changes;
mod mamut_import;
mod mamut_orders;
mod mamut_server;
mod mamut_sim;
mod mamut_wire;
mod nginx;
mod openapi;
mod proxy;
mod received;
mod reconnect;
mod rejections;
mod revoke;
mod scale;
mod shops;
mod store;
mod store_accounts;
mod store_alerts;
mod store_console;
mod sync;
mod validation;
mod windows;
