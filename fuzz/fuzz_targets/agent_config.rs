//! Fuzz target `agent_config`: the agent's configuration loader (`agent.toml`, `AGENT_*`).
//! The check and its input format: [`mamut_fuzz::agent_config`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mamut_fuzz::agent_config(data));
