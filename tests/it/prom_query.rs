//! `/api/v1/query` and `/api/v1/query_range` over HTTP, answers worked out by hand.

use serde_json::{Value, json};

use crate::common::*;

async fn get(addr: std::net::SocketAddr, path_and_query: &str) -> (u16, Value) {
    let r = reqwest::get(format!("http://{addr}{path_and_query}"))
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn enc(q: &str) -> String {
    serde_urlencoded::to_string([("query", q)]).unwrap()
}

#[tokio::test]
async fn instant_and_range_queries() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let now = now_ms();
    // Whole minutes, an hour ago: counter a grows 10/min, b 20/min, from t0.
    let t0 = (now - 3_600_000) / 60_000 * 60_000;
    let a: Vec<(i64, f64)> = (0..=20)
        .map(|i| (t0 + i * 60_000, 10.0 * i as f64))
        .collect();
    let b: Vec<(i64, f64)> = (0..=20)
        .map(|i| (t0 + i * 60_000, 20.0 * i as f64))
        .collect();
    let body = request(&[
        (
            &[("__name__", "req_total"), ("job", "api"), ("instance", "a")][..],
            &a[..],
        ),
        (
            &[("__name__", "req_total"), ("job", "api"), ("instance", "b")][..],
            &b[..],
        ),
    ]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    // The first half of the data in Delta, all of it also in the head is not possible;
    // persist so that the answers come from the Delta table.
    srv.ingester.persist().await.unwrap();
    let addr = srv.http_addr;
    // Whole seconds: the API writes them as integers, as Prometheus does.
    let t = |m: i64| (t0 + m * 60_000) / 1000;

    // Instant selector at t0+5m30s: the latest sample at or before, 50 and 100.
    let (s, v) = get(
        addr,
        &format!("/api/v1/query?{}&time={}", enc("req_total"), t(5) + 30),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": "req_total", "instance": "a", "job": "api"}, "value": [t(5) + 30, "50"]},
            {"metric": {"__name__": "req_total", "instance": "b", "job": "api"}, "value": [t(5) + 30, "100"]},
        ]}})
    );

    // sum by (job) (rate(req_total[5m])) at t0+10m: the window (5m, 10m] holds samples at
    // 6..10 min; a rises 40 over 240 s, extrapolated by 60 s to the window start (the
    // gap equals the average interval, under 1.1x): 40 * 300/240 = 50 per 300 s = 1/6;
    // b is twice that: the sum is 0.5.
    let (s, v) = get(
        addr,
        &format!(
            "/api/v1/query?{}&time={}",
            enc("sum by (job) (rate(req_total[5m]))"),
            t(10)
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let r = &v["data"]["result"][0];
    assert_eq!(r["metric"], json!({"job": "api"}));
    let x: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
    assert!((x - 0.5).abs() < 1e-9, "{x}");

    // A range query of a binary operation between the two instances, on(job) matched
    // after summing: b - a = 10 * i at minute i.
    let q = "sum by (job) (req_total{instance=\"b\"}) - sum by (job) (req_total{instance=\"a\"})";
    let (s, v) = get(
        addr,
        &format!(
            "/api/v1/query_range?{}&start={}&end={}&step=120",
            enc(q),
            t(0),
            t(6)
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["data"],
        json!({"resultType": "matrix", "result": [
            {"metric": {"job": "api"}, "values": [[t(0), "0"], [t(2), "20"], [t(4), "40"], [t(6), "60"]]},
        ]})
    );

    // Scalars and POST forms.
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/query"))
        .form(&[("query", "1 + 2 * 3"), ("time", "100")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["data"],
        json!({"resultType": "scalar", "result": [100, "7"]})
    );

    // Errors: Prometheus's shapes and statuses.
    let (s, v) = get(addr, &format!("/api/v1/query?{}", enc("sum(req_total"))).await;
    assert_eq!(s, 400);
    assert_eq!(v["errorType"], "bad_data");
    let (s, v) = get(
        addr,
        &format!("/api/v1/query?{}", enc("nosuchfunc(req_total)")),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["errorType"], "bad_data");
    let (s, v) = get(
        addr,
        &format!(
            "/api/v1/query_range?{}&start=0&end=100000&step=1",
            enc("req_total")
        ),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        v["error"].as_str().unwrap().contains("11,000 points"),
        "{v}"
    );
    // Many-to-many matching is an execution error (422).
    let (s, v) = get(
        addr,
        &format!(
            "/api/v1/query?{}&time={}",
            enc("req_total + on(job) req_total"),
            t(5)
        ),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["errorType"], "execution");
    // A query past its timeout: 503, `timeout` (a subquery of 600,000 steps per series
    // takes far more than 1 ms).
    let (s, v) = get(
        addr,
        &format!(
            "/api/v1/query?{}&time={}&timeout=1ms",
            enc("count_over_time(req_total[10m:1ms])"),
            t(15)
        ),
    )
    .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["errorType"], "timeout");
    assert!(
        v["error"].as_str().unwrap().contains("query timed out"),
        "{v}"
    );
    // The same query with the default timeout (2 minutes): each series has 10 samples
    // in (5m, 15m], each the latest sample for 60,000 of the 1 ms steps.
    let (s, v) = get(
        addr,
        &format!(
            "/api/v1/query?{}&time={}",
            enc("count_over_time(req_total[10m:1ms])"),
            t(15)
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["data"]["result"][0]["value"],
        json!([t(15), "600000"]),
        "{v}"
    );
    // The server keeps serving.
    let (s, _) = get(
        addr,
        &format!("/api/v1/query?{}&time={}", enc("req_total"), t(5)),
    )
    .await;
    assert_eq!(s, 200);
    // The plan is shown for debugging.
    let (s, v) = get(
        addr,
        &format!(
            // Raw samples: the rollup scheduler may have built the 1m tier, which
            // answers this window without a plan node.
            "/api/v1/query_explain?{}&time={}&max_source_resolution=raw",
            enc("rate(req_total[5m])"),
            t(5)
        ),
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        v["data"].as_str().unwrap().contains("PromRangeFunc: rate"),
        "{v}"
    );
    // With analyze=true the plan is run: the two req_total series give two rate rows.
    let (s, v) = get(
        addr,
        &format!(
            "/api/v1/query_explain?{}&time={}&analyze=true&max_source_resolution=raw",
            enc("rate(req_total[5m])"),
            t(5)
        ),
    )
    .await;
    assert_eq!(s, 200);
    let text = v["data"].as_str().unwrap();
    assert!(text.starts_with("PromQL planning"), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("PromRangeFunc: rate") && l.contains("metrics="))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("output_rows=2,"), "{line}");
}

/// A PromQL selector reads only the Delta files its metric family and time range can be
/// in (partition `date` and `metric_family`, and each file's statistics in the Delta log),
/// and no file it needs is skipped.
#[tokio::test]
async fn selectors_read_only_the_files_of_their_metric_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let now = now_ms();
    // 47 hours apart: always on two different dates (UTC).
    let (t_old, t_new) = (now - 48 * 3_600_000, now - 3_600_000);
    for (t, v) in [(t_old, 1.0), (t_new, 2.0)] {
        let body = request(&[
            (&[("__name__", "filea_x"), ("job", "j")][..], &[(t, v)][..]),
            (
                &[("__name__", "fileb_x"), ("job", "j")][..],
                &[(t, v * 10.0)][..],
            ),
        ]);
        assert_eq!(post_write(srv.http_addr, body).await.0, 204);
        srv.ingester.persist().await.unwrap();
    }
    let addr = srv.http_addr;
    let at = |t: i64| (t + 1000) as f64 / 1000.0;
    let value = |v: &Value| {
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_string)
    };
    // Each day's value comes from that day's file.
    for (t, want) in [(t_old, "1"), (t_new, "2")] {
        let (s, v) = get(
            addr,
            &format!("/api/v1/query?{}&time={}", enc("filea_x"), at(t)),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(value(&v).as_deref(), Some(want), "{v}");
    }
    // Over both days: both samples, from both of the family's files.
    let q = enc("count_over_time(filea_x[3d])");
    let (s, v) = get(addr, &format!("/api/v1/query?{q}&time={}", at(t_new))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(value(&v).as_deref(), Some("2"), "{v}");
    // The plan of the recent instant query scans one file: this date's, family `filea`.
    let (s, v) = get(
        addr,
        &format!(
            "/api/v1/query_explain?{}&time={}&analyze=true&max_source_resolution=raw",
            enc("filea_x"),
            at(t_new)
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let text = v["data"].as_str().unwrap();
    let mut files: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || "[],:".contains(c))
        .filter(|w| w.ends_with(".parquet"))
        .collect();
    files.sort_unstable();
    files.dedup();
    let date = chrono::DateTime::from_timestamp_millis(t_new)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(files.len(), 1, "{text}");
    assert!(
        files[0].contains(&format!("date={date}/metric_family=filea/")),
        "{text}"
    );
    // A later persist (a new table version, a new file) is read by the next query: the
    // list of files is not kept past its version.
    let body = request(&[(
        &[("__name__", "filea_x"), ("job", "j")][..],
        &[(t_new + 60_000, 3.0)][..],
    )]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    srv.ingester.persist().await.unwrap();
    let (s, v) = get(
        addr,
        &format!("/api/v1/query?{q}&time={}", at(t_new + 60_000)),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(value(&v).as_deref(), Some("3"), "{v}");
    srv.shutdown().await;
}

/// A selector of one series reads that series' rows of a persisted file and no other
/// series' rows: the file's series runs give the reader an exact row selection (page
/// statistics alone would decode the whole page, all three series here).
/// A scan that selects many rows of one file reads them on two threads (the file's runs
/// split in two groups, each read by its own partition), and each row once; a plan
/// estimated small runs in one partition.
#[tokio::test]
async fn a_large_selection_of_one_file_is_split_and_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    // 10,000 samples at 1 s, values 0..=9999, yesterday from 12:00 UTC: one date
    // partition, so one file, whatever the time of day the test runs.
    let t0 = now_ms() / 86_400_000 * 86_400_000 - 12 * 3_600_000;
    let samples: Vec<(i64, f64)> = (0..10_000).map(|i| (t0 + i * 1000, i as f64)).collect();
    let body = request(&[(&[("__name__", "split_x"), ("job", "a")][..], &samples[..])]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    srv.ingester.persist().await.unwrap();
    let addr = srv.http_addr;
    let time = format!("{}", (t0 + 9_999_000) as f64 / 1000.0);
    let at = |path: &str, q: &str| format!("/api/v1/{path}?{}&time={time}", enc(q));
    // Over 3 h (and 10 d), every sample: 10,000 of them, summing to 9999 * 10000 / 2.
    for (q, want) in [
        ("count_over_time(split_x[3h])", "10000"),
        ("sum_over_time(split_x[3h])", "49995000"),
        ("count_over_time(split_x[10d])", "10000"),
        ("sum_over_time(split_x[10d])", "49995000"),
    ] {
        let (s, v) = get(addr, &at("query", q)).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["data"]["result"][0]["value"][1], want, "{q}: {v}");
    }
    let explain = |q: &str| {
        let url = at("query_explain", q) + "&analyze=true";
        async move {
            let (s, v) = get(addr, &url).await;
            assert_eq!(s, 200, "{v}");
            v["data"].as_str().unwrap().to_string()
        }
    };
    let scan_of = |text: &str| {
        text.lines()
            .find(|l| l.contains("CachedRunsExec") && l.contains(".parquet"))
            .unwrap_or_else(|| panic!("{text}"))
            .to_string()
    };
    // 10 d is estimated at 86,401 samples (one per 10 s), over `ONE_PARTITION_ROWS`: the
    // file's runs (20 of at most 512 rows) are read as two groups, each row once.
    let text = explain("count_over_time(split_x[10d])").await;
    let scan = scan_of(&text);
    assert!(scan.contains("groups=2, runs=20, rows=10000,"), "{scan}");
    assert!(scan.contains("output_rows=10.00 K,"), "{scan}");
    // 3 h is estimated at 1,081: one partition, nothing repartitioned or merged.
    let text = explain("count_over_time(split_x[3h])").await;
    let scan = scan_of(&text);
    assert!(scan.contains("groups=1,"), "{scan}");
    assert!(scan.contains("output_rows=10.00 K,"), "{scan}");
    assert!(!text.contains("RepartitionExec"), "{text}");
    assert!(!text.contains("CoalescePartitionsExec"), "{text}");
    // 10 more samples, in the head: the small plan now reads the file and the head (two
    // partitions, merged for the range function) and counts both.
    let more: Vec<(i64, f64)> = (10_000..10_010)
        .map(|i| (t0 + i * 1000, i as f64))
        .collect();
    let body = request(&[(&[("__name__", "split_x"), ("job", "a")][..], &more[..])]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    let time = format!("{}", (t0 + 10_009_000) as f64 / 1000.0);
    for (q, want) in [
        ("count_over_time(split_x[3h])", "10010"),
        // 49995000 + (10000 + ... + 10009).
        ("sum_over_time(split_x[3h])", "50095045"),
    ] {
        let url = format!("/api/v1/query?{}&time={time}", enc(q));
        let (s, v) = get(addr, &url).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["data"]["result"][0]["value"][1], want, "{q}: {v}");
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn selectors_read_only_the_rows_of_their_series() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    // 360 samples at 10 s per series over one hour, yesterday from 12:00 UTC, so that
    // they fall in one date partition (the last hour crosses midnight at 00:30).
    let t0 = now_ms() / 86_400_000 * 86_400_000 - 12 * 3_600_000;
    let samples = |base: f64| -> Vec<(i64, f64)> {
        (0..360)
            .map(|i| (t0 + i * 10_000, base + i as f64))
            .collect()
    };
    let (a, b, c, d) = (
        samples(0.0),
        samples(1000.0),
        samples(2000.0),
        samples(5000.0),
    );
    // runs_y is in the same metric family, so in the same file.
    let body = request(&[
        (&[("__name__", "runs_x"), ("job", "a")][..], &a[..]),
        (&[("__name__", "runs_x"), ("job", "b")][..], &b[..]),
        (&[("__name__", "runs_x"), ("job", "c")][..], &c[..]),
        (&[("__name__", "runs_y"), ("job", "d")][..], &d[..]),
    ]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    srv.ingester.persist().await.unwrap();
    let addr = srv.http_addr;
    let last = t0 + 359 * 10_000;
    let time = format!("{}", last as f64 / 1000.0);
    // The answer: b's last sample, and over 5 minutes its 30 samples 1330..=1359.
    let at = |path: &str, q: &str| format!("/api/v1/{path}?{}&time={time}", enc(q));
    let (s, v) = get(addr, &at("query", r#"runs_x{job="b"}"#)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "1359", "{v}");
    let (s, v) = get(addr, &at("query", r#"sum_over_time(runs_x{job="b"}[5m])"#)).await;
    assert_eq!(s, 200, "{v}");
    // 1330 + ... + 1359 = 30 * (1330 + 1359) / 2.
    assert_eq!(v["data"]["result"][0]["value"][1], "40335", "{v}");
    // All of runs_x's series (the scan names the metric, not the series): each one's
    // last 30 samples, base + 330..=359.
    let (s, v) = get(addr, &at("query", "sum_over_time(runs_x[5m])")).await;
    assert_eq!(s, 200, "{v}");
    let mut sums: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["job"].as_str().unwrap().to_string(),
                r["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    sums.sort();
    let want = [("a", "10335"), ("b", "40335"), ("c", "70335")];
    assert_eq!(
        sums,
        want.map(|(j, v)| (j.to_string(), v.to_string())),
        "{v}"
    );
    // The file holds 1,440 rows (one page); the scan of it returns b's 360 (one run), and
    // for the whole metric runs_x's 1,080 (three runs, as DataFusion prints them), from
    // the sample cache: the queries above decoded those runs.
    for (q, runs, rows) in [(r#"runs_x{job="b"}"#, 1, "360"), ("runs_x", 3, "1.08 K")] {
        let explain = at("query_explain", q) + "&analyze=true";
        let (s, v) = get(addr, &explain).await;
        assert_eq!(s, 200, "{v}");
        let text = v["data"].as_str().unwrap();
        let scans: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("CachedRunsExec") && l.contains(".parquet"))
            .collect();
        assert_eq!(scans.len(), 1, "{text}");
        for want in [
            format!("runs={runs},"),
            format!("output_rows={rows},"),
            format!("runs_cached={runs},"),
            "runs_decoded=0".into(),
        ] {
            assert!(scans[0].contains(&want), "{q}: {want}: {text}");
        }
    }
    srv.shutdown().await;
    // Without the sample cache, the Parquet scan reads the same rows.
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| c.query.sample_cache_bytes = 0).await;
    let body = request(&[
        (&[("__name__", "runs_x"), ("job", "a")][..], &a[..]),
        (&[("__name__", "runs_x"), ("job", "b")][..], &b[..]),
    ]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    srv.ingester.persist().await.unwrap();
    let explain = format!(
        "/api/v1/query_explain?{}&time={time}&analyze=true",
        enc(r#"runs_x{job="b"}"#)
    );
    let (s, v) = get(srv.http_addr, &explain).await;
    assert_eq!(s, 200, "{v}");
    let text = v["data"].as_str().unwrap();
    assert!(!text.contains("CachedRunsExec"), "{text}");
    let scan = text
        .lines()
        .find(|l| l.contains("DataSourceExec") && l.contains(".parquet"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(scan.contains("output_rows=360,"), "{text}");
    srv.shutdown().await;
}

/// The sample cache changes no answer: the same data and queries on a server with the
/// default cache, one whose cache holds less than one run (every run decoded, stored and
/// evicted at once), and one without it, give the same JSON; the counts and sums are
/// also worked out by hand.
#[tokio::test]
async fn the_sample_cache_changes_no_answer() {
    // Three series at 15 s for 6 hours, yesterday from 06:00 UTC (one date partition),
    // each ending with a staleness marker; values i, 2i, and i % 7 (a counter with
    // resets).
    let t0 = now_ms() / 86_400_000 * 86_400_000 - 18 * 3_600_000;
    let n = 1440;
    let series = |f: &dyn Fn(i64) -> f64| -> Vec<(i64, f64)> {
        let mut v: Vec<(i64, f64)> = (0..n).map(|i| (t0 + i * 15_000, f(i))).collect();
        v.push((t0 + n * 15_000, f64::from_bits(0x7ff0_0000_0000_0002)));
        v
    };
    let (a, b, c) = (
        series(&|i| i as f64),
        series(&|i| 2.0 * i as f64),
        series(&|i| (i % 7) as f64),
    );
    // Four more series of cache_x (values 3i to 6i): 6 x 1,441 rows, more than one
    // 8,192-row batch.
    let more: Vec<Vec<(i64, f64)>> = (3..7).map(|k| series(&|i| (k * i) as f64)).collect();
    let body = request(&[
        (&[("__name__", "cache_x"), ("job", "a")][..], &a[..]),
        (&[("__name__", "cache_x"), ("job", "b")][..], &b[..]),
        (&[("__name__", "cache_y"), ("job", "c")][..], &c[..]),
        (&[("__name__", "cache_x"), ("job", "d")][..], &more[0][..]),
        (&[("__name__", "cache_x"), ("job", "e")][..], &more[1][..]),
        (&[("__name__", "cache_x"), ("job", "f")][..], &more[2][..]),
        (&[("__name__", "cache_x"), ("job", "g")][..], &more[3][..]),
    ]);
    let mut answers: Vec<Vec<Value>> = vec![];
    let end = (t0 + (n - 1) * 15_000) / 1000;
    let queries = [
        format!(
            "/api/v1/query?{}&time={end}",
            enc("count_over_time(cache_x[6h])")
        ),
        format!(
            "/api/v1/query?{}&time={end}",
            enc("sum_over_time(cache_x[1h])")
        ),
        format!("/api/v1/query?{}&time={end}", enc(r#"cache_x{job="b"}"#)),
        format!(
            "/api/v1/query_range?{}&start={}&end={}&step=60",
            enc("sum by (job) (rate(cache_x[5m]))"),
            end - 7200,
            end
        ),
        format!(
            "/api/v1/query_range?{}&start={}&end={end}&step=300",
            enc("resets(cache_y[30m])"),
            end - 18_000,
        ),
    ];
    for sample_cache_bytes in [256 << 20, 100, 0] {
        let dir = tempfile::tempdir().unwrap();
        let srv = server_with(dir.path(), |c| {
            c.query.sample_cache_bytes = sample_cache_bytes
        })
        .await;
        assert_eq!(post_write(srv.http_addr, body.clone()).await.0, 204);
        srv.ingester.persist().await.unwrap();
        let mut got = vec![];
        // Twice: decoded, then (with the default cache) from memory.
        for _ in 0..2 {
            for q in &queries {
                let (s, v) = get(srv.http_addr, q).await;
                assert_eq!(s, 200, "{q}: {v}");
                got.push(v["data"].clone());
            }
        }
        srv.shutdown().await;
        answers.push(got);
    }
    assert_eq!(answers[0], answers[2]);
    assert_eq!(answers[1], answers[2]);
    let first = &answers[0];
    let by_job = |v: &Value, job: &str| -> Value {
        v["result"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["metric"]["job"] == job)
            .unwrap_or_else(|| panic!("{v}"))
            .clone()
    };
    // Every sample: the last is 6 h - 15 s after the first.
    assert_eq!(by_job(&first[0], "a")["value"][1], n.to_string());
    // The last hour: the 240 samples 1200..=1439 of a: 240 * (1200 + 1439) / 2.
    assert_eq!(by_job(&first[1], "a")["value"][1], "316680");
    assert_eq!(by_job(&first[1], "b")["value"][1], "633360");
    assert_eq!(
        by_job(&first[1], "g")["value"][1],
        (6 * 316_680).to_string()
    );
    assert_eq!(first[0]["result"].as_array().unwrap().len(), 6);
    assert_eq!(
        by_job(&first[2], "b")["value"][1],
        (2 * (n - 1)).to_string()
    );
    // a grows 1 per 15 s: a rate of 1/15 per second at every step.
    let rates = by_job(&first[3], "a")["values"].as_array().unwrap().clone();
    assert_eq!(rates.len(), 121);
    for r in &rates {
        let v: f64 = r[1].as_str().unwrap().parse().unwrap();
        assert!((v - 1.0 / 15.0).abs() < 1e-12, "{r}");
    }
    // c drops to 0 every 7 samples: a 30-minute window holds 120 samples, 119 steps
    // between them, of which 119 / 7 = 17 are resets, at each of the 61 steps.
    let resets = first[4]["result"][0]["values"].as_array().unwrap();
    assert_eq!(resets.len(), 61, "{resets:?}");
    assert!(resets.iter().all(|r| r[1] == "17"), "{resets:?}");
}

/// `topk` and `bottomk` over tied values keep, in every step of a range query, the series
/// whose label set sorts first, as Prometheus does (its heap replaces an element only on a
/// strictly better value, and series arrive sorted by labels): the answer is one series
/// per group, not a different tied series from step to step. Enough rows that the plan
/// runs in more than one partition.
#[tokio::test]
async fn topk_and_bottomk_break_ties_by_labels_in_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let t0 = (now_ms() - 3_600_000) / 60_000 * 60_000;
    // 200 series in two groups, every series of a group the same constant, one sample
    // every 10 s for an hour: 72,000 samples.
    let samples: Vec<(i64, f64)> = (0..360).map(|i| (t0 + i * 10_000, 0.0)).collect();
    let names: Vec<(String, usize)> = (0..200).rev().map(|i| (format!("s{i:03}"), i)).collect();
    type Owned<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, f64)>);
    let series: Vec<Owned<'_>> = names
        .iter()
        .map(|(name, i)| {
            let (g, v) = if i % 2 == 0 {
                ("even", 1.0)
            } else {
                ("odd", 2.0)
            };
            (
                vec![("__name__", "tied"), ("g", g), ("i", name.as_str())],
                samples.iter().map(|&(t, _)| (t, v)).collect(),
            )
        })
        .collect();
    let refs: Vec<TestSeries<'_>> = series.iter().map(|(l, s)| (&l[..], &s[..])).collect();
    assert_eq!(post_write(srv.http_addr, request(&refs)).await.0, 204);
    srv.ingester.persist().await.unwrap();
    // Names were written from s199 down; "even" holds s198, s196, ..., s000 and "odd"
    // s199, ..., s001: the first label sets are s000 and s001.
    let (start, end) = ((t0 + 600_000) / 1000, (t0 + 3_540_000) / 1000);
    for (q, want) in [
        (
            "bottomk by (g) (1, avg_over_time(tied[10m]))",
            ["s000", "s001"],
        ),
        (
            "topk by (g) (1, avg_over_time(tied[10m]))",
            ["s000", "s001"],
        ),
        ("topk by (g) (1, tied)", ["s000", "s001"]),
    ] {
        let (s, v) = get(
            srv.http_addr,
            &format!(
                "/api/v1/query_range?{}&start={start}&end={end}&step=15",
                enc(q)
            ),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let result = v["data"]["result"].as_array().unwrap();
        let mut got: Vec<(&str, usize)> = result
            .iter()
            .map(|r| {
                (
                    r["metric"]["i"].as_str().unwrap(),
                    r["values"].as_array().unwrap().len(),
                )
            })
            .collect();
        got.sort();
        // (3540 - 600) / 15 + 1 = 197 steps, every one answered by the same series.
        assert_eq!(got, vec![(want[0], 197), (want[1], 197)], "{q}");
    }
}
