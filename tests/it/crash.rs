//! `kill -9` at any moment loses no acknowledged sample: the real binary is killed while
//! writes and flushes are in flight, restarted, and every acknowledged sample is checked.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
