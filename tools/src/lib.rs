//! The tools users run beside the product, and the harness they share with the end-to-end
//! tests. Test stand-ins, not the real systems: `mamut-sim` is not SQL Server and `shop-sim` is
//! not the shop platform.
//!
//! - [`mamut_sim`]: the TDS stand-in for Mamut's SQL Server on PostgreSQL (binary `mamut-sim`).
//! - [`shop_sim`]: the shop's API stand-in, the contract in `docs/shop-api.md` (binary
//!   `shop-sim`).
//! - [`bench`](mod@bench): the benchmarks B1–B7 (binary `bench`, results in `docs/benchmarks.md`).
//! - [`harness`]: the real `relay` and `agent` binaries as processes on random ports, and the
//!   clients that drive them; the benchmarks start the product with it, the tests crate
//!   re-exports it.

pub mod bench;
pub mod harness;
pub mod mamut_sim;
pub mod shop_sim;
