//! Fuzz target `signature`: Standard Webhooks verification with fuzzed headers, body and secrets.
//! The check and its input format: [`mamut_fuzz::signature`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mamut_fuzz::signature(data));
