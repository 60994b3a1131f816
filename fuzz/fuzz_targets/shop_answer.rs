//! Fuzz target `shop_answer`: the shop API's answers as the relay's client reads them.
//! The check and its input format: [`mamut_fuzz::shop_answer`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mamut_fuzz::shop_answer(data));
