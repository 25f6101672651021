//! The HTTP write endpoints end to end: remote write and JSON push in, SQL (engine and
//! Flight SQL) out, before and after persistence to Delta; and bad input.

use crate::common::*;

const Q: &str = "SELECT CAST(timestamp AS BIGINT) / 1000 AS t, value FROM metrics \
                 WHERE metric_name = 'http_requests_total' AND labels['code'] = '200' ORDER BY t";

#[tokio::test]
async fn remote_write_is_queryable_at_once_and_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let t0 = now_ms() - 60_000;
    let body = request(&[
        (
            &[
                ("__name__", "http_requests_total"),
                ("code", "200"),
                ("job", "api"),
            ],
            &[(t0, 1.0), (t0 + 10_000, 5.0), (t0 + 20_000, 9.0)],
        ),
        (
            &[
                ("__name__", "http_requests_total"),
                ("code", "500"),
                ("job", "api"),
            ],
            &[(t0, 0.0)],
        ),
    ]);
    assert_eq!(post_write(srv.http_addr, body).await, (204, String::new()));

    // Visible at once (head), with labels usable in SQL.
    let want = vec![(t0, 1.0), (t0 + 10_000, 5.0), (t0 + 20_000, 9.0)];
    assert_eq!(ts_values(&srv.engine.sql(Q).await.unwrap()), want);

    // Persist: answered after the Delta commit; the same rows, none twice.
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/admin/flush", srv.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["samples"], 4);
    assert_eq!(j["new_series"], 2);
    assert_eq!(ts_values(&srv.engine.sql(Q).await.unwrap()), want);
    let n = scalar_i64(
        &srv.engine
            .sql("SELECT count(*) FROM samples WHERE metric_family = 'http'")
            .await
            .unwrap(),
    );
    assert_eq!(n, 4);

    // A later write lands in the head and is seen together with the Delta rows.
    let body = request(&[(
        &[
            ("__name__", "http_requests_total"),
            ("code", "200"),
            ("job", "api"),
        ],
        &[(t0 + 30_000, 12.0)],
    )]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    let mut want2 = want.clone();
    want2.push((t0 + 30_000, 12.0));
    assert_eq!(ts_values(&srv.engine.sql(Q).await.unwrap()), want2);

    // The same through Flight SQL.
    let url = format!("http://{}", srv.flight_addr);
    let batches = strata::sql_client::over_flight(&url, Q).await.unwrap();
    assert_eq!(ts_values(&batches), want2);

    // Restart: the WAL replays what was not persisted; the Delta rows stay.
    srv.shutdown().await;
    let srv = server(dir.path()).await;
    assert_eq!(ts_values(&srv.engine.sql(Q).await.unwrap()), want2);

    // The Delta tables read directly (no server state) hold everything persisted; the
    // shutdown persisted the last sample too.
    srv.shutdown().await;
    let direct = strata::sql_client::on_data_dir(dir.path().to_str().unwrap(), Q)
        .await
        .unwrap();
    assert_eq!(ts_values(&direct), want2);
}

#[tokio::test]
async fn json_push_is_accepted_and_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let ts = (now_ms() / 1000 - 30) as f64;
    let body = serde_json::json!([
        {"metric": "room_temperature_celsius", "tags": {"room": "kitchen"}, "timestamp": ts, "value": 21.5},
        {"metric": "room_temperature_celsius", "tags": {"room": "hall"}, "timestamp": ts, "value": 19.0}
    ]);
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/metrics", srv.http_addr))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let rows = ts_values(
        &srv.engine
            .sql(
                "SELECT CAST(timestamp AS BIGINT) / 1000, value FROM metrics \
                 WHERE labels['room'] = 'kitchen'",
            )
            .await
            .unwrap(),
    );
    assert_eq!(rows, vec![(ts as i64 * 1000, 21.5)]);
    srv.shutdown().await;
}

/// InfluxDB line protocol through both APIs (v1 `/write` with `db` and seconds, v2
/// `/api/v2/write` with `bucket`, milliseconds and a gzip body): each field a sample
/// named `{measurement}_{field}`, read back by PromQL and SQL; then bad requests get
/// each API's error shape and lose nothing written before.
#[tokio::test]
async fn influx_line_protocol_v1_and_v2_are_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let addr = srv.http_addr;
    let client = reqwest::Client::new();
    let t_s = now_ms() / 1000 - 30;
    let v1 = format!(
        "cpu,host=a usage_user=1.5,usage_idle=90i,state=\"ok\" {t_s}\n\
         cpu,host=b usage_user=2.5 {t_s}\n"
    );
    let r = client
        .post(format!("http://{addr}/write?db=telegraf&precision=s"))
        .body(v1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{:?}", r.text().await);
    let v2 = format!("disk,host=a used=10u,ok=true {}\n", t_s * 1000 + 500);
    let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::default());
    std::io::Write::write_all(&mut gz, v2.as_bytes()).unwrap();
    let r = client
        .post(format!(
            "http://{addr}/api/v2/write?org=o&bucket=b1&precision=ms"
        ))
        .header("Content-Encoding", "gzip")
        .header("Authorization", "Token anything")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{:?}", r.text().await);

    let instant = |q: &'static str| instant_result(addr, q, t_s + 1);
    let r = instant("sum(cpu_usage_user)").await;
    assert_eq!(r[0]["value"][1], "4", "{r:?}");
    let r = instant(r#"cpu_usage_idle{db="telegraf", host="a"}"#).await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["value"][1], "90");
    let r = instant(r#"disk_used{db="b1"} + disk_ok"#).await;
    assert_eq!(r[0]["value"][1], "11", "{r:?}");
    assert_eq!(
        samples_of(&srv.engine, "disk_used").await,
        vec![(t_s * 1000 + 500, 10.0)]
    );
    // The string field is not a sample, and is counted.
    assert!(instant("cpu_state").await.is_empty());
    assert!(
        metrics_text(addr)
            .await
            .contains(r#"strata_samples_rejected_total{reason="influx_string_field"} 1"#)
    );

    // Bad requests: v2's `{"code", "message"}`, v1's `{"error"}`.
    let r = client
        .post(format!("http://{addr}/api/v2/write?bucket=b1"))
        .body("disk,host=a used=11u\ndisk,host=a\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["code"], "invalid", "{e}");
    assert!(e["message"].as_str().unwrap().contains("line 2"), "{e}");
    for (url, body, encoding) in [
        ("/write?precision=d", "m v=1", None),
        ("/write", "m v=1", Some("br")),
        ("/write", "m v=1", Some("gzip")),
    ] {
        let mut req = client.post(format!("http://{addr}{url}")).body(body);
        if let Some(e) = encoding {
            req = req.header("Content-Encoding", e);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{url} {encoding:?}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert!(!e["error"].as_str().unwrap().is_empty(), "{e}");
    }
    // Nothing of the rejected body was written; what came before is all there.
    assert_eq!(
        samples_of(&srv.engine, "disk_used").await,
        vec![(t_s * 1000 + 500, 10.0)]
    );
    assert_eq!(samples_of(&srv.engine, "cpu_usage_user").await.len(), 2);
    let r = client
        .get(format!("http://{addr}/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    srv.shutdown().await;
}

/// Names as users send them (Prometheus 3's UTF-8 names): the JSON push API's own
/// example `http.request.latency` is accepted and selected by PromQL's quoted form; a
/// server translating names to the legacy charset (`underscores`) stores
/// `http_request_latency`; one validating legacy names rejects it with 400 naming the
/// offending name.
#[tokio::test]
async fn utf8_names_are_accepted_selected_and_optionally_escaped() {
    let ts = now_ms() / 1000 - 30;
    let body = serde_json::json!([
        {"metric": "http.request.latency", "tags": {"service": "api-gateway", "http.method": "GET"}, "timestamp": ts, "value": 0.25}
    ]);
    let push = |addr: std::net::SocketAddr| {
        let body = body.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("http://{addr}/api/v1/metrics"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let instant = |addr: std::net::SocketAddr, q: &'static str| instant_result(addr, q, ts);

    // Default: kept as sent.
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    assert_eq!(push(srv.http_addr).await.0, 202);
    let r = instant(
        srv.http_addr,
        r#"{"http.request.latency", service="api-gateway"}"#,
    )
    .await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["metric"]["__name__"], "http.request.latency");
    assert_eq!(r[0]["metric"]["http.method"], "GET");
    assert_eq!(r[0]["value"][1], "0.25");
    let r = instant(
        srv.http_addr,
        r#"sum by ("http.method") ({"http.request.latency"})"#,
    )
    .await;
    assert_eq!(r[0]["metric"]["http.method"], "GET", "{r:?}");
    // The label values API takes the name as sent or value-encoded (`U__`), as
    // Prometheus 3 does.
    for path in ["http.method", "U__http_2e_method"] {
        let v: serde_json::Value = reqwest::get(format!(
            "http://{}/api/v1/label/{path}/values",
            srv.http_addr
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(v["data"], serde_json::json!(["GET"]), "{path}: {v}");
    }
    srv.shutdown().await;

    // Translated to the legacy charset on the way in.
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| {
        c.limits.metric_name_escaping_scheme = strata_ingest::validate::NameEscaping::Underscores
    })
    .await;
    assert_eq!(push(srv.http_addr).await.0, 202);
    let r = instant(srv.http_addr, "http_request_latency").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["metric"]["http_method"], "GET");
    assert!(
        instant(srv.http_addr, r#"{"http.request.latency"}"#)
            .await
            .is_empty()
    );
    srv.shutdown().await;

    // Legacy validation: rejected, the name in the message.
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| {
        c.limits.metric_name_validation_scheme = strata_ingest::validate::NameValidation::Legacy
    })
    .await;
    let (status, msg) = push(srv.http_addr).await;
    assert_eq!(status, 400, "{msg}");
    // (The first offending name is named: here the label `http.method`.)
    let err: serde_json::Value = serde_json::from_str(&msg).unwrap();
    let err = err["error"].as_str().unwrap();
    assert!(
        err.contains("invalid label name \"http.method\"") && err.contains("\"legacy\""),
        "{err}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| c.max_request_bytes = 64 * 1024).await;
    let t0 = now_ms() - 10_000;
    let good = |v: f64, t: i64| {
        request(&[(
            &[("__name__", "good_total"), ("job", "x")][..],
            &[(t, v)][..],
        )])
    };
    assert_eq!(post_write(srv.http_addr, good(1.0, t0)).await.0, 204);

    // Bad snappy.
    let (s, m) = post_write(srv.http_addr, b"\xff\xff\xff\xff not snappy".to_vec()).await;
    assert_eq!(s, 400);
    assert!(m.contains("snappy"), "{m}");
    // Snappy of garbage: bad protobuf.
    let junk = snap::raw::Encoder::new()
        .compress_vec(b"\x0a\xff\xff\xff\xff\xff")
        .unwrap();
    let (s, m) = post_write(srv.http_addr, junk).await;
    assert_eq!(s, 400);
    assert!(m.contains("protobuf"), "{m}");
    // Invalid (empty) metric name, in a request that also carries a valid series: 400
    // naming the problem, and the valid series is written.
    let mixed = request(&[
        (&[("__name__", ""), ("job", "x")][..], &[(t0, 1.0)][..]),
        (
            &[("__name__", "good_total"), ("job", "x")][..],
            &[(t0 + 1, 2.0)][..],
        ),
    ]);
    let (s, m) = post_write(srv.http_addr, mixed).await;
    assert_eq!(s, 400);
    assert!(
        m.contains("invalid metric name \"\": must not be empty"),
        "{m}"
    );
    // Huge label value.
    let huge = "x".repeat(5000);
    let (s, m) = post_write(
        srv.http_addr,
        request(&[(
            &[("__name__", "a"), ("path", huge.as_str())][..],
            &[(t0, 1.0)][..],
        )]),
    )
    .await;
    assert_eq!(s, 400);
    assert!(m.contains("5000 bytes") && m.contains("2048"), "{m}");
    // Too far in the future.
    let (s, m) = post_write(srv.http_addr, good(3.0, now_ms() + 3_600_000)).await;
    assert_eq!(s, 400);
    assert!(m.contains("future"), "{m}");
    // Oversized request.
    let (s, _) = post_write(srv.http_addr, vec![0u8; 200 * 1024]).await;
    assert_eq!(s, 413);
    // Not JSON.
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/metrics", srv.http_addr))
        .body("{\"metric\": oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("invalid JSON body"));

    // Everything acknowledged is still there, and the server still takes writes.
    assert_eq!(post_write(srv.http_addr, good(4.0, t0 + 2)).await.0, 204);
    let rows = samples_of(&srv.engine, "good_total").await;
    assert_eq!(rows, vec![(t0, 1.0), (t0 + 1, 2.0), (t0 + 2, 4.0)]);

    // Rejections are counted by reason in /metrics.
    let m = metrics_text(srv.http_addr).await;
    assert!(
        m.contains("strata_samples_rejected_total{reason=\"invalid_metric_name\"} 1"),
        "{m}"
    );
    assert!(m.contains("strata_samples_rejected_total{reason=\"label_value_too_long\"} 1"));
    assert!(m.contains("strata_samples_ingested_total{protocol=\"remote_write\"} 3"));
    srv.shutdown().await;
}

#[tokio::test]
async fn overload_refuses_writes_and_keeps_earlier_samples() {
    // The write path alone, with no background persister: the head fills past twice its
    // limit and further writes are refused (HTTP maps this to 503 with Retry-After).
    let dir = tempfile::tempdir().unwrap();
    let ingester = strata_ingest::Ingester::open(
        strata_ingest::storage::DataDir::Local(dir.path().to_path_buf()),
        &dir.path().join("wal"),
        strata_ingest::Limits::default(),
        strata_ingest::PersistConfig {
            max_head_samples: 2,
            ..Default::default()
        },
        strata_ingest::metrics::IngestMetrics::new(),
    )
    .await
    .unwrap();
    let t0 = now_ms() - 10_000;
    let batch = |k: i64| {
        let mut v = strata_ingest::receive::remote_write::Validated::default();
        let pairs = vec![("__name__".to_string(), "load_total".to_string())];
        let samples = (0..5)
            .map(|i| strata_ingest::Sample {
                timestamp_ms: t0 + k * 10 + i,
                value: i as f64,
            })
            .collect();
        v.push(&pairs, samples, &strata_ingest::Limits::default(), now_ms());
        v
    };
    assert_eq!(
        ingester
            .write(batch(0), "test", None)
            .await
            .unwrap()
            .accepted,
        5
    );
    let e = ingester.write(batch(1), "test", None).await.unwrap_err();
    match e {
        strata_ingest::IngestError::Overloaded { retry_after_s, .. } => {
            assert_eq!(retry_after_s, 5)
        }
        other => panic!("expected Overloaded, got {other}"),
    }
    // After a persist the head is empty again and writes are taken.
    assert_eq!(ingester.persist().await.unwrap().samples, 5);
    assert_eq!(
        ingester
            .write(batch(2), "test", None)
            .await
            .unwrap()
            .accepted,
        5
    );
}

#[tokio::test]
async fn compaction_merges_small_files_and_keeps_every_sample() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let t0 = now_ms() - 100_000;
    for k in 0..3i64 {
        let body = request(&[(
            &[("__name__", "compact_total"), ("job", "x")][..],
            &[(t0 + k * 1000, k as f64)][..],
        )]);
        assert_eq!(post_write(srv.http_addr, body).await.0, 204);
        srv.ingester.persist().await.unwrap();
    }
    let removed = srv.ingester.compact().await.unwrap();
    assert!(removed >= 3, "compaction removed {removed} files");
    let rows = samples_of(&srv.engine, "compact_total").await;
    assert_eq!(rows, vec![(t0, 0.0), (t0 + 1000, 1.0), (t0 + 2000, 2.0)]);
    srv.shutdown().await;
}

/// The same samples written twice (a remote-write retry after the first was persisted)
/// are two rows in two files; compaction keeps one of each, and no sample of another
/// series at the same time.
#[tokio::test]
async fn compaction_drops_duplicate_samples() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let t0 = now_ms() - 100_000;
    let a = [("__name__", "dup_total"), ("job", "a")];
    let b = [("__name__", "dup_total"), ("job", "b")];
    let first = request(&[(&a[..], &[(t0, 1.0), (t0 + 1000, 2.0)][..])]);
    assert_eq!(post_write(srv.http_addr, first.clone()).await.0, 204);
    srv.ingester.persist().await.unwrap();
    assert_eq!(post_write(srv.http_addr, first).await.0, 204);
    let more = request(&[
        (&a[..], &[(t0 + 2000, 3.0)][..]),
        (&b[..], &[(t0, 10.0)][..]),
    ]);
    assert_eq!(post_write(srv.http_addr, more).await.0, 204);
    srv.ingester.persist().await.unwrap();
    let rows = samples_of(&srv.engine, "dup_total").await;
    assert_eq!(
        rows.len(),
        6,
        "both copies stored before compaction: {rows:?}"
    );
    assert!(srv.ingester.compact().await.unwrap() >= 2);
    let mut rows = samples_of(&srv.engine, "dup_total").await;
    // Ordered by time only: a's and b's samples at t0 in either order.
    rows.sort_by(|x, y| x.partial_cmp(y).unwrap());
    assert_eq!(
        rows,
        vec![(t0, 1.0), (t0, 10.0), (t0 + 1000, 2.0), (t0 + 2000, 3.0)]
    );
    srv.shutdown().await;
}

/// Every persist writes one file per partition with the series of all metrics in it, so
/// the four files interleave series; the compacted file must hold them sorted by metric
/// name, 2-hour window, series and time (what Parquet statistics prune a selector's series
/// and a query's time range by), not as four concatenated runs.
#[tokio::test]
async fn compaction_keeps_files_sorted_by_metric_window_series_and_time() {
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::TimestampMicrosecondType;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    const H2: i64 = 2 * 3600 * 1000;
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    // A 2-hour window (UTC) starting 4 to 6 hours ago, and the next one on the same date.
    let mut w0 = (now_ms() - 4 * 3600 * 1000) / H2 * H2;
    if w0 % (24 * 3600 * 1000) == 22 * 3600 * 1000 {
        w0 -= H2;
    }
    let times = [w0 + 1000, w0 + 2000, w0 + 3000, w0 + H2 + 1000];
    for (k, &t) in times.iter().enumerate() {
        let v = k as f64;
        let body = request(&[
            (&[("__name__", "sorted_b"), ("job", "x")][..], &[(t, v)][..]),
            (&[("__name__", "sorted_a"), ("job", "x")][..], &[(t, v)][..]),
            (&[("__name__", "sorted_a"), ("job", "y")][..], &[(t, v)][..]),
        ]);
        assert_eq!(post_write(srv.http_addr, body).await.0, 204);
        srv.ingester.persist().await.unwrap();
    }
    // One partition: one date, and family `sorted` (the name up to its first `_`).
    assert_eq!(srv.ingester.compact().await.unwrap(), 4);
    let (table, _) = srv.ingester.read_samples(Some(&Default::default()));
    let files: Vec<String> = table
        .snapshot()
        .unwrap()
        .log_data()
        .iter()
        .map(|f| f.path().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let path = dir.path().join("samples").join(&files[0]);
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let (x_a, y_a) = {
        let ids = |job: &str| {
            let l = strata_ingest::Labels::from_sorted(vec![
                ("__name__".into(), "sorted_a".into()),
                ("job".into(), job.into()),
            ]);
            l.fingerprint() as i64
        };
        (ids("x"), ids("y"))
    };
    let (lo, hi) = (x_a.min(y_a), x_a.max(y_a));
    // (metric, series id, ms after w0), in file order.
    let mut rows: Vec<(String, i64, i64)> = vec![];
    for b in reader {
        let b = b.unwrap();
        let name = datafusion::arrow::compute::cast(
            b.column_by_name("metric_name").unwrap(),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let ids = b.column_by_name("series_id").unwrap();
        let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
        let ts = b.column_by_name("timestamp").unwrap();
        let ts = ts.as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            rows.push((
                name.as_string::<i32>().value(i).to_string(),
                ids.value(i),
                ts.value(i) / 1000 - w0,
            ));
        }
    }
    let a = |id: i64, t: i64| ("sorted_a".to_string(), id, t);
    let b_id = rows.last().unwrap().1;
    let b = |t: i64| ("sorted_b".to_string(), b_id, t);
    assert_eq!(
        rows,
        vec![
            // sorted_a, first window: the lower series id first, each in time order.
            a(lo, 1000),
            a(lo, 2000),
            a(lo, 3000),
            a(hi, 1000),
            a(hi, 2000),
            a(hi, 3000),
            // sorted_a, second window.
            a(lo, H2 + 1000),
            a(hi, H2 + 1000),
            // sorted_b.
            b(1000),
            b(2000),
            b(3000),
            b(H2 + 1000),
        ]
    );
    assert_eq!(
        samples_of(&srv.engine, "sorted_b").await,
        times
            .iter()
            .enumerate()
            .map(|(k, &t)| (t, k as f64))
            .collect::<Vec<_>>()
    );
    srv.shutdown().await;
}
