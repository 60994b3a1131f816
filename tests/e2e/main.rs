//! The tests crate's one test binary: the end-to-end tests (the real `relay` and `agent`
//! binaries, TLS, random ports) and the store conformance suite ([`store`]).

mod bench;
mod check;
mod clients;
mod close_codes;
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
mod proxy;
mod reconnect;
mod rejections;
mod revoke;
mod scale;
mod shops;
mod store;
mod sync;
mod validation;
mod windows;
