//! Fuzz target `protocol`: protocol v1 text frames as the relay and the agent decode them.
//! The check and its input format: [`mamut_fuzz::protocol`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mamut_fuzz::protocol(data));
