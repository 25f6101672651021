//! A remote-write body: decoding (snappy, then protobuf) and validation.
//!
//! The first byte picks what the rest is: even, the body as a client sends it (mutations
//! mostly exercise the snappy decoder); odd, the protobuf message, compressed here, so that
//! mutations reach the protobuf decoder and validation.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => {
            strata_fuzz::remote_write(&strata_fuzz::snappy(rest))
        }
        Some((_, rest)) => strata_fuzz::remote_write(rest),
        None => strata_fuzz::remote_write(data),
    }
});
