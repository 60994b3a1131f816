//! Fuzz target `webhook`: the relay's parsing of a webhook body (full and thin order webhooks).
//! The check and its input format: [`mamut_fuzz::webhook`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mamut_fuzz::webhook(data));
