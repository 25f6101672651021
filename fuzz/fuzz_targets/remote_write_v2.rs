//! A remote write 2.0 body: decoding (snappy, then protobuf) and translation.
//!
//! The first byte picks what the rest is: even, the body as a client sends it; odd, the
//! protobuf message, compressed here, so that mutations reach the protobuf decoder and the
//! translation of labels, native histograms and metadata.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => {
            strata_fuzz::remote_write_v2(&strata_fuzz::snappy(rest))
        }
        Some((_, rest)) => strata_fuzz::remote_write_v2(rest),
        None => strata_fuzz::remote_write_v2(data),
    }
});
