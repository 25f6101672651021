//! A scraped body in the Prometheus text and OpenMetrics formats. The parser takes text;
//! the scraper decodes bodies as `reqwest`'s `text()` does, replacing invalid UTF-8, and so
//! does this target.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strata_fuzz::exposition(&String::from_utf8_lossy(data)));
