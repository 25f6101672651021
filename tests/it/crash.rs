//! `kill -9` at any moment loses no acknowledged sample: the real binary is killed while
//! writes and flushes are in flight, restarted, and every acknowledged sample is checked.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;

async fn spawn(dir: &std::path::Path, http: u16, flight: u16) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args(["--http-addr", &format!("127.0.0.1:{http}")])
        .args(["--flight-addr", &format!("127.0.0.1:{flight}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("strata starts");
    for _ in 0..300 {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{http}/-/ready")).await
            && r.status().is_success()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("strata did not become ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_sample() {
    let dir = tempfile::tempdir().unwrap();
    let base = now_ms() - 3_600_000;
    let mut acked: BTreeSet<i64> = BTreeSet::new();
    let mut next = 0i64;
    for round in 0..4u64 {
        let (http, flight) = (free_port(), free_port());
        let mut child = spawn(dir.path(), http, flight).await;
        let addr: std::net::SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
        // Flushes run concurrently with the writes, so the kill can land in the middle of a
        // Delta commit or a WAL truncation.
        let flusher = tokio::spawn(async move {
            let c = reqwest::Client::new();
            loop {
                let _ = c
                    .post(format!("http://{addr}/api/v1/admin/flush"))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(37)).await;
            }
        });
        // The kill comes after a different number of writes each round.
        let writes = 30 + round * 17;
        for _ in 0..writes {
            let ts: Vec<(i64, f64)> = (0..50)
                .map(|i| (base + (next + i) * 10, (next + i) as f64))
                .collect();
            let body = request(&[(
                &[("__name__", "crash_test_total"), ("job", "t")][..],
                &ts[..],
            )]);
            let (status, _) = post_write(addr, body).await;
            if status == 204 {
                acked.extend(ts.iter().map(|(t, _)| *t));
            }
            next += 50;
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        flusher.abort();
    }
    // Restart once more and read everything back over Flight SQL.
    let (http, flight) = (free_port(), free_port());
    let mut child = spawn(dir.path(), http, flight).await;
    let rows = strata::sql_client::over_flight(
        &format!("http://127.0.0.1:{flight}"),
        "SELECT CAST(timestamp AS BIGINT) / 1000 AS t, value FROM samples \
         WHERE metric_name = 'crash_test_total' ORDER BY t",
    )
    .await
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let rows = ts_values(&rows);
    let got: BTreeSet<i64> = rows.iter().map(|(t, _)| *t).collect();
    let missing: Vec<_> = acked.difference(&got).take(5).collect();
    assert!(
        missing.is_empty(),
        "acknowledged samples lost, e.g. {missing:?}"
    );
    // No sample twice, and every value is the one written.
    assert_eq!(got.len(), rows.len(), "a sample appears twice");
    assert!(rows.iter().all(|(t, v)| (t - base) / 10 == *v as i64));
    assert!(acked.len() >= 4 * 30 * 50);
}

/// The rollup tiers under `kill -9`: the real binary, its scheduler building the three
/// tiers from two days of raw samples, is killed four times (at least twice mid-build) and restarted;
/// once caught up, every tier table and series table equals what a clean, uninterrupted
/// build of the same data gives (no double-counted bucket, none lost). The KLL sketches
/// are compared by presence only: KLL compaction is randomized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_rollup_builds_leaves_tables_equal_to_a_clean_run() {
    const DAY: i64 = 86_400_000;
    let today = now_ms() / DAY * DAY;
    let (from, to) = (today - 2 * DAY, today - DAY);
    // Four series, one sample every 15 s over (from, to], a counter with a reset.
    type Series = (Vec<(&'static str, &'static str)>, Vec<(i64, f64)>);
    let data: Vec<Series> = (0..4)
        .map(|i| {
            let name = if i < 2 {
                "rk_requests_total"
            } else {
                "rk_temp"
            };
            let inst = ["a", "b", "c", "d"][i];
            let s = (1..=5760)
                .map(|k| (from + k * 15_000, ((k * (i as i64 + 3)) % 4000) as f64))
                .collect();
            (vec![("__name__", name), ("instance", inst)], s)
        })
        .collect();
    let body = || {
        let refs: Vec<TestSeries<'_>> = data.iter().map(|(l, s)| (&l[..], &s[..])).collect();
        request(&refs)
    };
    let queries = [
        "SELECT metric_name, series_id, CAST(bucket_end AS BIGINT) AS e, count, sum, min, max, \
         CAST(first_ts AS BIGINT), first, CAST(last_ts AS BIGINT), last, mean, m2, increase, \
         resets, changes, sketch IS NULL FROM rollup_1m ORDER BY series_id, e",
        "SELECT metric_name, series_id, CAST(bucket_end AS BIGINT) AS e, count, sum, min, max, \
         CAST(first_ts AS BIGINT), first, CAST(last_ts AS BIGINT), last, mean, m2, increase, \
         resets, changes, sketch IS NULL FROM rollup_1h ORDER BY series_id, e",
        "SELECT metric_name, series_id, CAST(bucket_end AS BIGINT) AS e, count, sum, min, max, \
         CAST(first_ts AS BIGINT), first, CAST(last_ts AS BIGINT), last, mean, m2, increase, \
         resets, changes, sketch IS NULL FROM rollup_1d ORDER BY series_id, e",
        "SELECT metric_name, CAST(bucket_end AS BIGINT) AS e, series, hll FROM rollup_1m_series \
         ORDER BY metric_name, e",
        "SELECT metric_name, CAST(bucket_end AS BIGINT) AS e, series, hll FROM rollup_1d_series \
         ORDER BY metric_name, e",
    ];
    let show = |b: &[arrow::record_batch::RecordBatch]| {
        arrow::util::pretty::pretty_format_batches(b)
            .unwrap()
            .to_string()
    };

    // The clean run: in process, no scheduler, each tier built once over the range.
    let clean_dir = tempfile::tempdir().unwrap();
    let clean = server_with(clean_dir.path(), |c| c.rollup.enabled = false).await;
    assert_eq!(post_write(clean.http_addr, body()).await.0, 204);
    clean.ingester.persist().await.unwrap();
    for tier in 0..3 {
        clean.rollups.build(tier, from, to, |_| {}).await.unwrap();
    }
    let mut want = vec![];
    for q in queries {
        want.push(show(&clean.engine.sql(q).await.unwrap()));
    }
    assert!(
        want[0].lines().count() > 4 * 1440,
        "the clean 1m tier is complete"
    );

    // The killed runs. A kill counts as mid-build when, just before it, the tiers had not
    // caught up (the scheduler was between its first and last commit).
    let status = |http: u16| async move {
        let s: serde_json::Value =
            reqwest::get(format!("http://127.0.0.1:{http}/api/v1/status/tiers"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let w = |i: usize| s["data"][i]["watermark_ms"].as_i64();
        [w(0), w(1), w(2)]
    };
    let mut mid_build = 0;
    let dir = tempfile::tempdir().unwrap();
    // Round 0 is killed right after the first tier's first commit, round 1 right after the
    // first tier's next commit, round 2 right after the second tier's first commit, round 3
    // 40 ms after it starts, wherever it is. Rounds 0 and 1 land mid-build whatever the
    // machine's speed; rounds 2 and 3 do when the scheduler has not finished by then.
    let mut last_w0: Option<i64> = None;
    for round in 0..4usize {
        let (http, flight) = (free_port(), free_port());
        let mut child = spawn(dir.path(), http, flight).await;
        let addr: std::net::SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
        if round == 0 {
            assert_eq!(post_write(addr, body()).await.0, 204);
            let r = reqwest::Client::new()
                .post(format!("http://{addr}/api/v1/admin/flush"))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
        let mut w = status(http).await;
        if round < 3 {
            // Round 0: the first tier has a watermark; 1: it moved on; 2: the second tier
            // has one.
            let done = |w: &[Option<i64>; 3]| match round {
                0 => w[0].is_some(),
                1 => w[0] > last_w0,
                _ => w[1].is_some(),
            };
            for _ in 0..2000 {
                if done(&w) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                w = status(http).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(40)).await;
            w = status(http).await;
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        if w[0].is_some() && w[2].is_none_or(|w| w < to) {
            mid_build += 1;
        }
        last_w0 = w[0];
    }
    let (http, flight) = (free_port(), free_port());
    let mut child = spawn(dir.path(), http, flight).await;
    let mut caught_up = false;
    for _ in 0..1200 {
        if status(http).await[2].is_some_and(|w| w >= to) {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut got = vec![];
    for q in queries {
        got.push(show(
            &strata::sql_client::over_flight(&format!("http://127.0.0.1:{flight}"), q)
                .await
                .unwrap(),
        ));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(caught_up, "the tiers did not catch up within 120 s");
    assert!(
        mid_build >= 2,
        "only {mid_build} kills landed during a build"
    );
    for ((q, w), g) in queries.iter().zip(&want).zip(&got) {
        assert!(w == g, "{q}: the killed run differs from the clean run");
    }
}
