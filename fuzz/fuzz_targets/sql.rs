//! An SQL statement planned (not run) in the engine's session, as Flight SQL plans it,
//! with the PromQL table functions registered.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sql) = std::str::from_utf8(data) {
        strata_fuzz::sql(sql);
    }
});
