//! A rule group as Mimir's ruler configuration API receives it (`POST
//! /prometheus/config/v1/rules/{namespace}`): YAML, the rule checks, PromQL parsing, and
//! the expansion of label and annotation templates.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_fuzz::rule_group(&String::from_utf8_lossy(data));
});
