//! Fuzz target `relay_config`: the relay's configuration loader (`relay.toml`, `RELAY_*`).
//! The check and its input format: [`mamut_fuzz::relay_config`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mamut_fuzz::relay_config(data));
