//! The rollup tiers on a running server: built over HTTP and by the scheduler, read back
//! by SQL, and checked against PromQL's answers over the raw samples (count, sum, min,
//! max, last, resets, changes over windows aligned with the buckets) and a hand-computed
//! counter increase.

use serde_json::Value;
use strata_ingest::model::stale_nan;

use crate::common::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

async fn post(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A PromQL instant query's only value at `t_ms` (NaN for "NaN") over raw samples
/// (`max_source_resolution=raw`), `None` if empty.
async fn promql(addr: std::net::SocketAddr, q: &str, t_ms: i64) -> Option<f64> {
    let query = serde_urlencoded::to_string([("query", q)]).unwrap();
    let (s, v) = get(
        addr,
        &format!(
            "/api/v1/query?{query}&time={}&max_source_resolution=raw",
            t_ms as f64 / 1000.0
        ),
    )
    .await;
    assert_eq!(s, 200, "{q}: {v}");
    let r = v["data"]["result"].as_array().unwrap();
    assert!(r.len() <= 1, "{q}: {v}");
    r.first()
        .map(|r| r["value"][1].as_str().unwrap().parse().unwrap())
}

/// Rows of a tier for one metric: `(bucket_end ms, [count, sum, min, max, last,
/// increase, resets, changes])`, by bucket.
async fn tier_rows(
    srv: &strata::server::Running,
    tier: &str,
    metric: &str,
) -> Vec<(i64, [f64; 8])> {
    let batches = srv
        .engine
        .sql(&format!(
            "SELECT CAST(bucket_end AS BIGINT) / 1000 AS t, CAST(count AS DOUBLE), sum, min, max, \
             last, increase, CAST(resets AS DOUBLE), CAST(changes AS DOUBLE) \
             FROM rollup_{tier} WHERE metric_name = '{metric}' ORDER BY t"
        ))
        .await
        .unwrap();
    let mut out = vec![];
    for b in &batches {
        let t = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        for i in 0..b.num_rows() {
            let mut v = [0.0; 8];
            for (c, x) in v.iter_mut().enumerate() {
                *x = b
                    .column(c + 1)
                    .as_any()
                    .downcast_ref::<arrow::array::Float64Array>()
                    .unwrap()
                    .value(i);
            }
            out.push((t.value(i), v));
        }
    }
    out
}

/// The test data, from `t0 - 1h` to `t0 + 26h` every 15 s (`t0` a UTC midnight):
/// a counter `req_total` rising 1 per sample, reset to 0 at `t0 + 10m 7s` (inside a 1m
/// and a 1h bucket) and at `t0 + 2h 15s` (the first sample of a 1h bucket, lower than
/// the previous bucket's last: a reset exactly at a boundary); a gauge `temp` of small
/// integers with a NaN at `t0 + 30m` and a staleness marker at `t0 + 3h`.
type Samples = Vec<(i64, f64)>;

fn data(t0: i64) -> (Samples, Samples) {
    let mut counter = vec![];
    let mut gauge = vec![];
    let mut c = 100.0;
    let mut t = t0 - HOUR;
    let mut i = 0i64;
    while t <= t0 + 26 * HOUR {
        c += 1.0;
        if t == t0 + 10 * MIN + 15_000 || t == t0 + 2 * HOUR + 15_000 {
            c = 0.0;
        }
        counter.push((t, c));
        let g = if t == t0 + 30 * MIN {
            f64::NAN
        } else if t == t0 + 3 * HOUR {
            stale_nan()
        } else {
            ((i * 7) % 11 - 5) as f64
        };
        gauge.push((t, g));
        t += 15_000;
        i += 1;
    }
    (counter, gauge)
}

/// A server without the rollup scheduler holding [`data`] as `req_total` and `temp`
/// (job `a`), `t0` a UTC midnight three days ago: `(server, t0, counter, gauge)`.
async fn loaded(dir: &std::path::Path) -> (strata::server::Running, i64, Samples, Samples) {
    let srv = server_with(dir, |c| c.rollup.enabled = false).await;
    let t0 = (now_ms() - 3 * DAY) / DAY * DAY;
    let (counter, gauge) = data(t0);
    let body = request(&[
        (&[("__name__", "req_total"), ("job", "a")][..], &counter[..]),
        (&[("__name__", "temp"), ("job", "a")][..], &gauge[..]),
    ]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    (srv, t0, counter, gauge)
}

#[tokio::test]
async fn tiers_built_over_http_equal_promql_over_raw_samples() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, t0, counter, gauge) = loaded(dir.path()).await;
    // Half the data persisted, the rest still in the head: the first tier reads both.
    srv.ingester.persist().await.unwrap();

    // Bad requests are named.
    let (s, v) = post(
        srv.http_addr,
        "/api/v1/admin/rollup/build?tier=5m&from=0&to=60",
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("unknown tier"), "{v}");
    let (s, v) = post(
        srv.http_addr,
        "/api/v1/admin/rollup/build?tier=1m&from=x&to=60",
    )
    .await;
    assert_eq!(s, 400, "{v}");

    // 1m, then 1h from 1m, then 1d from 1h, over (t0 - 2h, t0 + 26h]; 1m twice (a re-run
    // replaces, it does not add). The range is cut to whole buckets: for 1d, (t0, t0 + 1d].
    let secs = |ms: i64| ms / 1000;
    let range = format!("from={}&to={}", secs(t0 - 2 * HOUR), secs(t0 + 26 * HOUR));
    for tier in ["1m", "1m", "1h", "1d"] {
        let (s, v) = post(
            srv.http_addr,
            &format!("/api/v1/admin/rollup/build?tier={tier}&{range}"),
        )
        .await;
        assert_eq!(s, 200, "{tier}: {v}");
    }
    // The builds' slices left several files per partition; compaction (what backfill
    // ends with) merges them, and every check below reads the merged files.
    let (s, v) = post(srv.http_addr, "/api/v1/admin/rollup/compact").await;
    assert_eq!(s, 200, "{v}");
    let (removed, added) = (
        v["data"]["files_removed"].as_u64().unwrap(),
        v["data"]["files_added"].as_u64().unwrap(),
    );
    assert!(added >= 1 && removed > added, "{v}");
    let m = tier_rows(&srv, "1m", "req_total").await;
    // 27 h of minutes, plus the sample at exactly t0 - 1h (its own bucket).
    assert_eq!(m.len(), 27 * 60 + 1);
    assert_eq!(m[0].1[0], 1.0);
    assert!(m[1..].iter().all(|(_, v)| v[0] == 4.0), "{m:?}");

    // Every 1h bucket against PromQL over raw samples at its end, window [1h]; the 1m
    // tier's buckets for the hour around the in-bucket reset too, window [1m].
    let h = tier_rows(&srv, "1h", "req_total").await;
    let hg = tier_rows(&srv, "1h", "temp").await;
    assert_eq!(h.len(), 28, "{h:?}");
    for (rows, metric, window) in [(&h, "req_total", "1h"), (&hg, "temp", "1h")] {
        for (end, v) in rows.iter() {
            let f = |func: &str| format!("{func}({metric}[{window}])");
            let want = [
                promql(srv.http_addr, &f("count_over_time"), *end).await,
                promql(srv.http_addr, &f("sum_over_time"), *end).await,
                promql(srv.http_addr, &f("min_over_time"), *end).await,
                promql(srv.http_addr, &f("max_over_time"), *end).await,
                promql(srv.http_addr, &f("last_over_time"), *end).await,
                promql(srv.http_addr, &f("resets"), *end).await,
                promql(srv.http_addr, &f("changes"), *end).await,
            ];
            let got = [v[0], v[1], v[2], v[3], v[4], v[6], v[7]];
            for (w, g) in want.iter().zip(got) {
                let w = w.unwrap_or_else(|| panic!("{metric} at {end}: no raw answer"));
                assert!(
                    w == g || (w.is_nan() && g.is_nan()),
                    "{metric} {end}: {want:?} vs {got:?}"
                );
            }
        }
    }
    // The NaN hour: sum NaN, min and max ignore it. The staleness marker at t0 + 3h is
    // in (t0 + 2h, t0 + 3h]: 239 values there, 240 in the next hour.
    let nan_hour = hg.iter().find(|(e, _)| *e == t0 + HOUR).unwrap().1;
    assert!(nan_hour[1].is_nan());
    assert_eq!((nan_hour[2], nan_hour[3]), (-5.0, 5.0));
    assert_eq!(
        hg.iter().find(|(e, _)| *e == t0 + 3 * HOUR).unwrap().1[0],
        239.0
    );
    assert_eq!(
        hg.iter().find(|(e, _)| *e == t0 + 4 * HOUR).unwrap().1[0],
        240.0
    );

    // The counter's increase and resets, computed directly from the samples: a rise adds
    // its size, a reset the value after it (the same as Prometheus's `last - first` plus
    // the value before each reset). Over (t0 + 1h, t0 + 2h] the counter rises 1 per
    // 15 s, 239 steps; over (t0 + 2h, t0 + 3h] it starts at 0 (the reset at the boundary
    // is between the two buckets, in neither) and rises 239.
    let inc = |from: i64, to: i64| -> (f64, f64) {
        let s: Vec<f64> = counter
            .iter()
            .filter(|(t, _)| *t > from && *t <= to)
            .map(|(_, v)| *v)
            .collect();
        let (mut inc, mut resets) = (0.0, 0.0);
        for w in s.windows(2) {
            if w[1] < w[0] {
                inc += w[1];
                resets += 1.0;
            } else {
                inc += w[1] - w[0];
            }
        }
        (inc, resets)
    };
    let at =
        |rows: &Vec<(i64, [f64; 8])>, end: i64| rows.iter().find(|(e, _)| *e == end).unwrap().1;
    assert_eq!(at(&h, t0 + 2 * HOUR)[5], 239.0);
    assert_eq!(at(&h, t0 + 3 * HOUR)[5], 239.0);
    assert_eq!(
        (at(&h, t0 + 3 * HOUR)[5], at(&h, t0 + 3 * HOUR)[6]),
        inc(t0 + 2 * HOUR, t0 + 3 * HOUR)
    );
    let d = tier_rows(&srv, "1d", "req_total").await;
    assert_eq!(d.len(), 1, "only (t0, t0 + 1d] is a whole day built: {d:?}");
    let day = at(&d, t0 + DAY);
    assert_eq!((day[5], day[6]), inc(t0, t0 + DAY));
    assert_eq!(day[6], 2.0, "both resets in the day");
    assert_eq!(day[0], 5760.0);

    // Quantile sketches (1h built from raw, the 1m tier has none; 1d merged from 1h):
    // the gauge's p50, p95 and p99 over the day within the KLL rank bound (1.65%) of the
    // raw values' quantiles.
    let mut day_values: Vec<f64> = gauge
        .iter()
        .filter(|(t, v)| *t > t0 && *t <= t0 + DAY && !v.is_nan())
        .map(|(_, v)| *v)
        .collect();
    day_values.sort_by(f64::total_cmp);
    let n = day_values.len() as f64;
    for (q, sql) in [
        (
            0.5,
            "SELECT kll_quantile(sketch, 0.5) FROM rollup_1d WHERE metric_name = 'temp'",
        ),
        (
            0.95,
            "SELECT kll_quantile(kll_merge(sketch), 0.95) FROM rollup_1h \
                WHERE metric_name = 'temp' AND bucket_end > to_timestamp_millis({t0}) \
                AND bucket_end <= to_timestamp_millis({t0}) + interval '1 day'",
        ),
        (
            0.99,
            "SELECT kll_quantile(sketch, 0.99) FROM rollup_1d WHERE metric_name = 'temp'",
        ),
    ] {
        let sql = sql.replace("{t0}", &t0.to_string());
        let b = srv.engine.sql(&sql).await.unwrap();
        let got = b[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap()
            .value(0);
        let lo = day_values[((q - 0.0165) * n).floor() as usize];
        let hi = day_values[(((q + 0.0165) * n).ceil() as usize).min(day_values.len()) - 1];
        assert!(got >= lo && got <= hi, "p{q}: {got} not in [{lo}, {hi}]");
    }
    // Each sketched bucket also stores its sketch's p50, p90, p95 and p99 as columns
    // (what a one-bucket `quantile_over_time` reads): the library's quantiles of the
    // same sketch, in every row of both sketched tiers.
    for t in ["rollup_1h", "rollup_1d"] {
        let engine = &srv.engine;
        let sql = async |q: String| scalar_i64(&engine.sql(&q).await.unwrap());
        let differ = sql(format!(
            "SELECT count(*) FROM {t} WHERE \
             (p50 IS DISTINCT FROM kll_quantile(sketch, 0.5)) OR \
             (p90 IS DISTINCT FROM kll_quantile(sketch, 0.9)) OR \
             (p95 IS DISTINCT FROM kll_quantile(sketch, 0.95)) OR \
             (p99 IS DISTINCT FROM kll_quantile(sketch, 0.99))"
        ))
        .await;
        assert_eq!(differ, 0, "{t}: rows whose stored quantiles differ");
        let stored = sql(format!("SELECT count(p99) FROM {t}")).await;
        let sketched = sql(format!("SELECT count(sketch) FROM {t}")).await;
        assert!(
            stored > 0 && stored == sketched,
            "{t}: {stored} of {sketched}"
        );
    }
    let nulls = srv
        .engine
        .sql("SELECT count(*) FROM rollup_1m WHERE sketch IS NOT NULL")
        .await
        .unwrap();
    assert_eq!(scalar_i64(&nulls), 0, "the 1m tier keeps no sketches");
    // Distinct series: per bucket exactly 1 for `temp`; over all hours the HLL union
    // still 1, where the sum of the per-hour counts is 28.
    let b = srv
        .engine
        .sql(
            "SELECT CAST(hll_count(hll_union(hll)) AS BIGINT), sum(series) \
             FROM rollup_1h_series WHERE metric_name = 'temp'",
        )
        .await
        .unwrap();
    let col = |c: usize| {
        b[0].column(c)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0)
    };
    assert_eq!((col(0), col(1)), (1, 28));

    // The status endpoint shows each tier.
    let (s, v) = get(srv.http_addr, "/api/v1/status/tiers").await;
    assert_eq!(s, 200, "{v}");
    let tiers = v["data"].as_array().unwrap();
    let names: Vec<&str> = tiers.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["1m", "1h", "1d"]);
    assert_eq!(tiers[1]["rows"], 2 * 28);
    assert_eq!(tiers[1]["watermark_ms"], t0 + 26 * HOUR);
    assert_eq!(tiers[2]["newest_bucket_ms"], t0 + DAY);
    assert!(tiers[0]["bytes"].as_u64().unwrap() > 0);
}

/// With the scheduler on, a closed minute's bucket is in `rollup_1m` within seconds,
/// read from the head (nothing persisted), and `/metrics` shows the job.
#[tokio::test]
async fn the_scheduler_builds_closed_minutes_from_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| {
        c.rollup.allowed_lateness = std::time::Duration::ZERO;
        c.rollup.interval = std::time::Duration::from_millis(200);
    })
    .await;
    let now = now_ms();
    let m0 = now / MIN * MIN - 5 * MIN;
    let samples: Vec<(i64, f64)> = (1..=12).map(|i| (m0 + i * 10_000, i as f64)).collect();
    let body = request(&[(&[("__name__", "up"), ("job", "s")][..], &samples[..])]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    let mut rows = vec![];
    // Up to 30 s: the builds run at a lower OS priority, behind the other tests' work.
    for _ in 0..300 {
        rows = tier_rows(&srv, "1m", "up").await;
        if rows.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // (m0, m0 + 1m]: 10 s .. 60 s, six samples 1..6; (m0 + 1m, m0 + 2m]: 7..12.
    assert_eq!(
        rows,
        vec![
            (m0 + MIN, [6.0, 21.0, 1.0, 6.0, 6.0, 5.0, 0.0, 5.0]),
            (m0 + 2 * MIN, [6.0, 57.0, 7.0, 12.0, 12.0, 5.0, 0.0, 5.0]),
        ]
    );
    let metrics = metrics_text(srv.http_addr).await;
    assert!(
        metrics.contains("strata_rollup_rows_written_total{tier=\"1m\"} 2"),
        "{metrics}"
    );
    assert_eq!(srv.ingester.metrics().persisted_samples.get(), 0);
}

/// Parquet files under `dir`, recursively.
fn parquet_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            n += parquet_files(&p);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            n += 1;
        }
    }
    n
}

/// Retention removes whole old days from the tiers and from raw samples, but never raw
/// days the first tier has not built; vacuum then deletes the removed files from disk.
#[tokio::test]
async fn retention_never_drops_raw_not_rolled_up_and_vacuum_frees_files() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| {
        c.rollup.enabled = false;
        c.rollup.tiers = vec![
            strata_rollup::Tier::new("1m", std::time::Duration::from_secs(60))
                .with_retention(std::time::Duration::from_secs(2 * 86_400)),
            strata_rollup::Tier::new("1h", std::time::Duration::from_secs(3600)),
        ];
        c.persist.vacuum_retention = std::time::Duration::ZERO;
    })
    .await;
    let now = now_ms();
    let today = now / DAY * DAY;
    // One sample a minute from 5 days ago (midnight) to 1 day ago, one request per day so
    // that each day is its own file.
    for d in (1..=5).rev() {
        let day = today - d * DAY;
        let s: Vec<(i64, f64)> = (0..1440).map(|i| (day + i * MIN, i as f64)).collect();
        let body = request(&[(&[("__name__", "kept"), ("job", "r")][..], &s[..])]);
        assert_eq!(post_write(srv.http_addr, body).await.0, 204);
        srv.ingester.persist().await.unwrap();
    }
    // The first tier built over days -5 and -4 only: its watermark is day -3's midnight.
    let rollups = &srv.rollups;
    rollups
        .build(0, today - 5 * DAY, today - 3 * DAY, |_| {})
        .await
        .unwrap();
    assert_eq!(rollups.watermark(0).await.unwrap(), Some(today - 3 * DAY));
    let count = |sql: &'static str| {
        let e = srv.engine.clone();
        async move { scalar_i64(&e.sql(sql).await.unwrap()) }
    };
    assert_eq!(count("SELECT count(*) FROM rollup_1m").await, 2 * 1440);

    // Raw retention 2 days: days -5 and -4 go (rolled up); day -3 is older than 2 days
    // but not rolled up: kept. The 1m tier keeps 2 days: everything it has goes.
    let (tier_files, raw_files) = strata::server::retention_pass(
        &srv.ingester,
        rollups,
        std::time::Duration::from_secs(2 * 86_400),
        now,
    )
    .await
    .unwrap();
    assert!(tier_files > 0 && raw_files > 0, "{tier_files} {raw_files}");
    assert_eq!(count("SELECT count(*) FROM rollup_1m").await, 0);
    assert_eq!(
        count("SELECT CAST(min(timestamp) AS BIGINT) / 1000 FROM samples").await,
        today - 3 * DAY
    );
    assert_eq!(count("SELECT count(*) FROM samples").await, 3 * 1440);

    // The removed files are still on disk until a vacuum (here with no retention period).
    let samples_dir = dir.path().join("samples");
    let before = parquet_files(&samples_dir);
    let live = srv
        .ingester
        .read_samples(None)
        .0
        .snapshot()
        .unwrap()
        .snapshot()
        .log_data()
        .iter()
        .count();
    assert!(before > live, "{before} files on disk, {live} live");
    let deleted = srv.ingester.vacuum().await.unwrap();
    assert_eq!(deleted as usize, before - live);
    assert_eq!(parquet_files(&samples_dir), live);
    let tier_before = parquet_files(&dir.path().join("rollup_1m"));
    assert!(rollups.vacuum(std::time::Duration::ZERO).await.unwrap() > 0);
    assert!(parquet_files(&dir.path().join("rollup_1m")) < tier_before);
    // Everything kept still answers.
    assert_eq!(count("SELECT count(*) FROM samples").await, 3 * 1440);
}

/// A PromQL query over HTTP (`params`: `time=...` or `start=...&end=...&step=...`, and
/// maybe `max_source_resolution`): the `X-Strata-Sources` header and the JSON body.
async fn query(addr: std::net::SocketAddr, path: &str, q: &str, params: &str) -> (String, Value) {
    let query = serde_urlencoded::to_string([("query", q)]).unwrap();
    let r = reqwest::get(format!("http://{addr}/api/v1/{path}?{query}&{params}"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{q}");
    let sources = r
        .headers()
        .get("x-strata-sources")
        .map(|h| h.to_str().unwrap().to_string())
        .unwrap_or_default();
    (sources, r.json().await.unwrap())
}

/// PromQL reads the tiers where they give the raw answer (windows aligned with their
/// buckets): the same queries with `max_source_resolution=raw` and without (`auto`)
/// answer identically, for every aligned step, before and after a tier's watermark (the
/// seam: the steps past it come from raw samples and the head, none missing or doubled);
/// the header and `query_explain` say which tier answered which steps; where raw samples
/// have expired, the tiers answer alone, approximately where windows do not align.
#[tokio::test]
async fn promql_reads_the_tiers_exactly_and_stitches_at_their_watermarks() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, t0, counter, gauge) = loaded(dir.path()).await;
    let rollups = &srv.rollups;
    let s = |ms: i64| ms / 1000;
    // Phase 1: 1m and 1h built up to t0 + 20h only, 1d not at all.
    rollups
        .build(0, t0 - 2 * HOUR, t0 + 20 * HOUR, |_| {})
        .await
        .unwrap();
    rollups
        .build(1, t0 - 2 * HOUR, t0 + 20 * HOUR, |_| {})
        .await
        .unwrap();

    let exact_fns = [
        "count_over_time",
        "sum_over_time",
        "min_over_time",
        "max_over_time",
        "last_over_time",
        "increase",
        "rate",
        "delta",
        "resets",
        "changes",
        "avg_over_time",
        "present_over_time",
    ];
    // (window, start, end, step, the sources `auto` must report)
    let hour_steps = format!("start={}&end={}&step=3600", s(t0 + HOUR), s(t0 + 26 * HOUR));
    // The 1h tier up to its watermark, raw samples after it.
    let hour_seam = format!(
        "1h={}..{}, raw={}..{}",
        s(t0 + HOUR),
        s(t0 + 20 * HOUR),
        s(t0 + 21 * HOUR),
        s(t0 + 26 * HOUR)
    );
    let cases = [
        ("1h", hour_steps.clone(), hour_seam.clone()),
        ("3h", hour_steps.clone(), hour_seam),
        (
            "5m",
            format!(
                "start={}&end={}&step=300",
                s(t0 + 19 * HOUR),
                s(t0 + 21 * HOUR)
            ),
            format!(
                "1m={}..{}, raw={}..{}",
                s(t0 + 19 * HOUR),
                s(t0 + 20 * HOUR),
                s(t0 + 20 * HOUR + 5 * MIN),
                s(t0 + 21 * HOUR)
            ),
        ),
    ];
    for (window, steps, want_sources) in &cases {
        for metric in ["req_total", "temp"] {
            for f in exact_fns {
                let q = format!("{f}({metric}[{window}])");
                let (raw_sources, raw) = query(
                    srv.http_addr,
                    "query_range",
                    &q,
                    &format!("{steps}&max_source_resolution=raw"),
                )
                .await;
                let (sources, auto) = query(srv.http_addr, "query_range", &q, steps).await;
                assert_eq!(raw_sources, "raw");
                assert_eq!(&sources, want_sources, "{q}");
                assert_eq!(raw["data"], auto["data"], "{q} {steps}");
                assert!(!raw["data"]["result"].as_array().unwrap().is_empty(), "{q}");
            }
        }
    }
    // Aggregations and arithmetic over routed selectors; and a 1h tier capped to 1m.
    for q in [
        "sum by (job) (rate(req_total[1h]))",
        "max_over_time(temp[1h]) - min_over_time(temp[1h])",
        "count_over_time(temp[2h] offset 1h)",
    ] {
        let (_, raw) = query(
            srv.http_addr,
            "query_range",
            q,
            &format!("{hour_steps}&max_source_resolution=raw"),
        )
        .await;
        let (sources, auto) = query(srv.http_addr, "query_range", q, &hour_steps).await;
        assert!(sources.starts_with("1h="), "{q}: {sources}");
        assert_eq!(raw["data"], auto["data"], "{q}");
        let (sources, capped) = query(
            srv.http_addr,
            "query_range",
            q,
            &format!("{hour_steps}&max_source_resolution=1m"),
        )
        .await;
        assert!(sources.starts_with("1m="), "{q}: {sources}");
        assert_eq!(raw["data"], capped["data"], "{q}");
    }
    // What a tier cannot answer exactly reads raw samples: an unaligned window, irate.
    for q in ["sum_over_time(temp[90s])", "irate(req_total[1h])"] {
        let (sources, _) = query(srv.http_addr, "query_range", q, &hour_steps).await;
        assert_eq!(
            sources,
            format!("raw={}..{}", s(t0 + HOUR), s(t0 + 26 * HOUR)),
            "{q}"
        );
    }
    // A bad max_source_resolution is named.
    let r = reqwest::get(format!(
        "http://{}/api/v1/query?query=up&max_source_resolution=fine",
        srv.http_addr
    ))
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("max_source_resolution"));

    // query_explain names the sources.
    let (_, v) = query(
        srv.http_addr,
        "query_explain",
        "rate(req_total[1h])",
        &hour_steps,
    )
    .await;
    let plan = v["data"].as_str().unwrap();
    assert!(
        plan.starts_with(&format!("sources: 1h={}..", s(t0 + HOUR))),
        "{plan}"
    );

    // Phase 2: everything built, 1d too; a day window at t0 + 1d reads the 1d tier.
    // The first minutes one build each, as the scheduler builds them: files of one
    // bucket per series, which the read path reads whole (no series runs).
    for m in 0..3 {
        let from = t0 + 20 * HOUR + m * MIN;
        rollups.build(0, from, from + MIN, |_| {}).await.unwrap();
    }
    rollups
        .build(0, t0 + 20 * HOUR + 3 * MIN, t0 + 26 * HOUR, |_| {})
        .await
        .unwrap();
    // Those files, before and after compaction merges them into one sorted file.
    let minute_steps = format!(
        "start={}&end={}&step=60",
        s(t0 + 20 * HOUR),
        s(t0 + 20 * HOUR + 10 * MIN)
    );
    let compare = |q: &'static str| {
        let minute_steps = minute_steps.clone();
        async move {
            let (_, raw) = query(
                srv.http_addr,
                "query_range",
                q,
                &format!("{minute_steps}&max_source_resolution=raw"),
            )
            .await;
            let (sources, auto) = query(srv.http_addr, "query_range", q, &minute_steps).await;
            assert!(sources.starts_with("1m="), "{q}: {sources}");
            assert_eq!(raw["data"], auto["data"], "{q}");
            assert_eq!(auto["data"]["result"].as_array().unwrap().len(), 1, "{q}");
        }
    };
    for q in ["sum_over_time(temp[1m])", "increase(req_total[2m])"] {
        compare(q).await;
    }
    let merged = rollups.compact(2).await.unwrap();
    assert!(merged.files_removed >= 4, "{merged:?}");
    assert!(merged.files_added < merged.files_removed, "{merged:?}");
    assert_eq!(merged.duplicates_dropped, 0);
    for q in ["sum_over_time(temp[1m])", "increase(req_total[2m])"] {
        compare(q).await;
    }
    rollups
        .build(1, t0 + 20 * HOUR, t0 + 26 * HOUR, |_| {})
        .await
        .unwrap();
    rollups.build(2, t0, t0 + DAY, |_| {}).await.unwrap();
    for f in exact_fns {
        for metric in ["req_total", "temp"] {
            let q = format!("{f}({metric}[1d])");
            let t = format!("time={}", s(t0 + DAY));
            let (_, raw) = query(
                srv.http_addr,
                "query",
                &q,
                &format!("{t}&max_source_resolution=raw"),
            )
            .await;
            let (sources, auto) = query(srv.http_addr, "query", &q, &t).await;
            assert_eq!(
                sources,
                format!("1d={}..{}", s(t0 + DAY), s(t0 + DAY)),
                "{q}"
            );
            assert_eq!(raw["data"], auto["data"], "{q}");
        }
    }
    // quantile_over_time reads the sketches (φ = 0.6), or the stored quantile of a
    // one-bucket window (φ = 0.5): within the KLL bound, and it says so.
    let mut day: Vec<f64> = gauge
        .iter()
        .filter(|(t, v)| *t > t0 && *t <= t0 + DAY && !v.is_nan())
        .map(|(_, v)| *v)
        .collect();
    day.sort_by(f64::total_cmp);
    let n = day.len() as f64;
    for phi in [0.5, 0.6] {
        let (sources, v) = query(
            srv.http_addr,
            "query",
            &format!("quantile_over_time({phi}, temp[1d])"),
            &format!("time={}", s(t0 + DAY)),
        )
        .await;
        assert!(sources.starts_with("1d="), "{sources}");
        let got: f64 = v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let (lo, hi) = (
            day[((phi - 0.0165) * n) as usize],
            day[((phi + 0.0165) * n) as usize],
        );
        assert!(got >= lo && got <= hi, "φ {phi}: {got} not in [{lo}, {hi}]");
        assert!(
            v["infos"][0].as_str().unwrap().contains("KLL sketches"),
            "{v}"
        );
    }
    // promql_range in SQL routes the same way: its values equal the HTTP raw answer.
    let b = srv
        .engine
        .sql(&format!(
            "SELECT CAST(sum(value) AS DOUBLE) FROM promql_range('count_over_time(temp[1h])', {}, {}, '1h')",
            s(t0 + HOUR),
            s(t0 + 26 * HOUR)
        ))
        .await
        .unwrap();
    let sql_sum = b[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .unwrap()
        .value(0);
    // 240 samples an hour, one fewer in the hour of the staleness marker; the hour of
    // t0 + 1h .. t0 + 26h: 26 hours.
    assert_eq!(sql_sum, 26.0 * 240.0 - 1.0);

    // Raw samples expire: with a raw retention of a day, the days before the first tier's
    // watermark's day go. Then the tiers answer alone: exactly where aligned, else
    // approximately (windows snapped to whole buckets), instant queries and plain
    // selectors included.
    srv.ingester.persist().await.unwrap();
    let keep = std::time::Duration::from_secs(86_400);
    rollups.catalog().set_raw_retention(keep);
    strata::server::retention_pass(&srv.ingester, rollups, keep, now_ms())
        .await
        .unwrap();
    let at5 = t0 + 5 * HOUR;
    let (_, gone) = query(
        srv.http_addr,
        "query",
        "temp",
        &format!("time={}&max_source_resolution=raw", s(at5)),
    )
    .await;
    assert_eq!(gone["data"]["result"], serde_json::json!([]), "raw expired");
    let value_at = |t: i64| gauge.iter().find(|(x, _)| *x == t).unwrap().1;
    let (sources, v) = query(
        srv.http_addr,
        "query",
        "temp",
        &format!("time={}", s(at5 + 30_000)),
    )
    .await;
    assert_eq!(
        sources,
        format!("1m~={}..{}", s(at5 + 30_000), s(at5 + 30_000))
    );
    let got: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(got, value_at(at5), "the last sample of the latest minute");
    assert!(
        v["infos"][0].as_str().unwrap().contains("approximate"),
        "{v}"
    );
    // max over (t0 + 4h 55m, t0 + 5h]: the 5m window at t0 + 5h 30s snapped to minutes.
    let (_, v) = query(
        srv.http_addr,
        "query",
        "max_over_time(temp[5m])",
        &format!("time={}", s(at5 + 30_000)),
    )
    .await;
    let got: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let want = gauge
        .iter()
        .filter(|(t, _)| *t > at5 - 5 * MIN && *t <= at5)
        .map(|(_, v)| *v)
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(got, want);
    // Aligned: still exact, from the 1h tier alone.
    let (sources, v) = query(
        srv.http_addr,
        "query",
        "sum_over_time(req_total[1h])",
        &format!("time={}", s(at5)),
    )
    .await;
    assert_eq!(sources, format!("1h={}..{}", s(at5), s(at5)));
    let want: f64 = counter
        .iter()
        .filter(|(t, _)| *t > at5 - HOUR && *t <= at5)
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(
        v["data"]["result"][0]["value"][1].as_str().unwrap(),
        format!("{want}")
    );
}

/// A late sample (written after its buckets were built) is built again into every tier
/// once persisted: the 1m, 1h and 1d buckets it falls in change, PromQL over the tiers
/// equals PromQL over raw samples again, and a second pass builds nothing. The marks are
/// durable: a new `Rollups` (a restarted process) reads them from the samples table's
/// log, and samples only in the WAL at a crash are marked when it is replayed.
#[tokio::test]
async fn late_samples_are_built_again_in_every_tier_durably() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| c.rollup.enabled = false).await;
    let t0 = (now_ms() - 3 * DAY) / DAY * DAY;
    let samples: Vec<(i64, f64)> = (1..=1440).map(|i| (t0 + i * MIN, 1.0)).collect();
    let body = request(&[(&[("__name__", "late_x"), ("job", "l")][..], &samples[..])]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    srv.ingester.persist().await.unwrap();
    let rollups = &srv.rollups;
    for tier in 0..3 {
        rollups.build(tier, t0, t0 + DAY, |_| {}).await.unwrap();
    }
    let day = format!("time={}", (t0 + DAY) / 1000);
    let sum = |p: &'static str| {
        let day = day.clone();
        async move {
            let (sources, v) = query(
                srv.http_addr,
                "query",
                "sum_over_time(late_x[1d])",
                &format!("{day}{p}"),
            )
            .await;
            let s: f64 = v["data"]["result"][0]["value"][1]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            (sources, s)
        }
    };
    assert_eq!(sum("").await.1, 1440.0);
    // Late: 1000 at t0 + 5h 30s, between two samples of a built minute.
    let late_t = t0 + 5 * HOUR + 30_000;
    let body = request(&[(
        &[("__name__", "late_x"), ("job", "l")][..],
        &[(late_t, 1000.0)][..],
    )]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    srv.ingester.persist().await.unwrap();
    // Raw already has it; the 1d tier not yet.
    assert_eq!(sum("&max_source_resolution=raw").await.1, 2440.0);
    let (sources, stale) = sum("").await;
    assert!(sources.starts_with("1d="), "{sources}");
    assert_eq!(stale, 1440.0);

    // A restarted process: a new Rollups over the same tables, its checkpoint read from
    // the first tier's log (none yet), the marks from the samples table's commits.
    let engine = strata_engine::Engine::new(std::sync::Arc::new(
        strata_engine::source::IngesterSource(srv.ingester.clone()),
    ))
    .await
    .unwrap();
    let mut again = strata_rollup::Rollups::open(
        engine.clone(),
        srv.ingester.data_dir(),
        strata_rollup::default_tiers(),
    )
    .await
    .unwrap();
    again.track_late(srv.ingester.clone()).await;
    let rep = again.rematerialize(now_ms()).await.unwrap();
    // One minute, one hour and one day of one series.
    assert_eq!(rep.rows_written, 3, "{rep:?}");
    let count_sum = |tier: &'static str, end: i64| {
        let e = engine.clone();
        async move {
            let b = e
                .sql(&format!(
                    "SELECT CAST(count AS DOUBLE), sum FROM rollup_{tier} \
                     WHERE metric_name = 'late_x' AND bucket_end = to_timestamp_millis({end})"
                ))
                .await
                .unwrap();
            let f = |c: usize| {
                b[0].column(c)
                    .as_any()
                    .downcast_ref::<arrow::array::Float64Array>()
                    .unwrap()
                    .value(0)
            };
            (f(0), f(1))
        }
    };
    assert_eq!(count_sum("1m", t0 + 5 * HOUR + MIN).await, (2.0, 1001.0));
    assert_eq!(count_sum("1h", t0 + 6 * HOUR).await, (61.0, 1060.0));
    assert_eq!(count_sum("1d", t0 + DAY).await, (1441.0, 2440.0));
    let r = strata_promql::instant_query(
        &strata_promql::prom_session(&engine.context()),
        "sum_over_time(late_x[1d])",
        t0 + DAY,
        &Default::default(),
    )
    .await
    .unwrap();
    assert!(
        strata_promql::format_sources(&r.sources).starts_with("1d="),
        "{:?}",
        r.sources
    );
    match r.value {
        strata_promql::QueryValue::Vector(v) => assert_eq!(v[0].v, 2440.0),
        other => panic!("{other:?}"),
    }
    // Nothing new: nothing built, in this process or in the next one (the checkpoint is
    // in the first tier's log).
    assert_eq!(again.rematerialize(now_ms()).await.unwrap().rows_written, 0);
    drop(again);
    let engine = strata_engine::Engine::new(std::sync::Arc::new(
        strata_engine::source::IngesterSource(srv.ingester.clone()),
    ))
    .await
    .unwrap();
    let mut third = strata_rollup::Rollups::open(
        engine,
        srv.ingester.data_dir(),
        strata_rollup::default_tiers(),
    )
    .await
    .unwrap();
    third.track_late(srv.ingester.clone()).await;
    assert_eq!(third.rematerialize(now_ms()).await.unwrap().rows_written, 0);
}

/// Samples in the WAL when the process dies are replayed into the head and marked late,
/// whatever the late watermark was: their first persist records them.
#[tokio::test]
async fn wal_replayed_samples_are_marked_late() {
    let dir = tempfile::tempdir().unwrap();
    let open = || async {
        strata_ingest::Ingester::open(
            strata_ingest::storage::DataDir::Local(dir.path().to_path_buf()),
            &dir.path().join("wal"),
            strata_ingest::Limits::default(),
            strata_ingest::PersistConfig::default(),
            strata_ingest::metrics::IngestMetrics::new(),
        )
        .await
        .unwrap()
    };
    let t = now_ms() - HOUR;
    let mut v = strata_ingest::receive::remote_write::Validated::default();
    let pairs = vec![("__name__".to_string(), "replayed_x".to_string())];
    let s = vec![strata_ingest::Sample {
        timestamp_ms: t,
        value: 1.0,
    }];
    v.push(&pairs, s, &strata_ingest::Limits::default(), now_ms());
    {
        let ing = open().await;
        // No late watermark: not late when written.
        ing.write(v, "test", None).await.unwrap();
        let (_, marks) = ing.late_since(-1).await.unwrap();
        assert!(marks.is_empty());
        // Dropped without a persist: the sample is only in the WAL.
    }
    let ing = open().await;
    ing.persist().await.unwrap();
    let (_, marks) = ing.late_since(-1).await.unwrap();
    assert_eq!(marks.iter().collect::<Vec<_>>(), vec![(t - 1, t)]);
}
