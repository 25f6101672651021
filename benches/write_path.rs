//! Micro-benchmarks of the write path's CPU steps, per remote-write request of 2,000
//! TSBS-like series: decode (snappy + protobuf), validate, head append, and parsing a
//! node_exporter-sized text exposition. Run: `cargo bench --bench write_path`.

use std::collections::HashSet;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata::bench::{LoadSpec, payloads};
use strata_ingest::head::Head;
use strata_ingest::receive::remote_write::{decode_received as decode, validate};
use strata_ingest::validate::Limits;

fn spec() -> LoadSpec {
    LoadSpec {
        hosts: 200,
        intervals: 1,
        series_per_request: 2000,
        intervals_per_request: 1,
        start_ms: 1_700_000_000_000,
        interval_ms: 10_000,
        histogram_hosts: strata::bench::HISTOGRAM_HOSTS,
    }
}

fn write_path(c: &mut Criterion) {
    let (bodies, _) = payloads(&spec());
    let body = &bodies[0];
    let limits = Limits::default();
    let mut g = c.benchmark_group("remote_write_2000_series");
    g.throughput(Throughput::Elements(2000));
    g.bench_function("decode", |b| b.iter(|| decode(body, 1 << 30).unwrap()));
    g.bench_function("decode+validate", |b| {
        b.iter(|| {
            validate(
                decode(body, 1 << 30).unwrap(),
                &limits,
                1_800_000_000_000,
                |f| vec![false; f.len()],
            )
        })
    });
    let head = Head::new(HashSet::new());
    let v = validate(
        decode(body, 1 << 30).unwrap(),
        &limits,
        1_800_000_000_000,
        |f| vec![false; f.len()],
    );
    g.bench_function("head_append", |b| b.iter(|| head.append(v.series.clone())));
    g.finish();

    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!(
            "node_cpu_seconds_total{{cpu=\"{}\",mode=\"idle\"}} {}.25\n",
            i,
            i * 7
        ));
    }
    let mut g = c.benchmark_group("exposition");
    g.throughput(Throughput::Elements(2000));
    g.bench_function("parse_2000_lines", |b| {
        b.iter(|| {
            strata_ingest::receive::exposition::parse(
                &text,
                strata_ingest::receive::exposition::Format::PrometheusText,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, write_path);
criterion_main!(benches);
