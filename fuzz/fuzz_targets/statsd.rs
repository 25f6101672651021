//! A StatsD/DogStatsD packet (UDP datagram or TCP lines): parsing, aggregation, and the
//! flushed samples' validation.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strata_fuzz::statsd(data));
