//! Anomaly rules in a running server: a group posted through the ruler API fits a daily
//! baseline per series from four days of remote-written history, writes the score,
//! baseline and band series, fires an alert for the series that departs from its
//! pattern only, keeps its baselines in the `anomaly_baselines` Delta table and, after a
//! restart, uses them without refitting. `anomaly_range(...)` finds the same in SQL.

use std::time::Duration;

use crate::common::*;

const DAY_MS: i64 = 86_400_000;

/// The pattern: 100 plus a daily sine of amplitude 20.
fn pattern(t_ms: i64) -> f64 {
    let d = (t_ms.rem_euclid(DAY_MS)) as f64 / DAY_MS as f64;
    100.0 + 20.0 * (std::f64::consts::TAU * d).sin()
}

/// The pattern plus a noise uniform in [-1, 1], the same for every 5-minute block.
fn noisy(t_ms: i64) -> f64 {
    // splitmix64 of the block's number.
    let mut h = (t_ms / 300_000) as u64;
    h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    pattern(t_ms) + (h % 2001) as f64 / 1000.0 - 1.0
}

const GROUP: &str = "name: anomalies
interval: 1s
rules:
  - anomaly: LoadAnomaly
    expr: anom_load
    resolution: 1h
    history: 4d
    for: 2s
    labels:
      severity: ticket
    annotations:
      summary: '{{ $labels.host }} is {{ printf \"%.0f\" $value }} sigma off its usual load'
";

async fn rules_json(addr: std::net::SocketAddr) -> serde_json::Value {
    get_json(format!("http://{addr}/api/v1/rules")).await["data"]["groups"][0]["rules"][0].clone()
}

#[tokio::test]
async fn anomaly_rules_fit_score_alert_and_keep_baselines_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = server(&data).await;
    let addr = srv.http_addr;
    let now = now_ms();
    // Four days at 5 minutes for hosts a and b; half an hour for c (too little history).
    let hist = |from: i64| -> Vec<(i64, f64)> {
        (0..)
            .map(|i| from + i * 300_000)
            .take_while(|t| *t < now - 60_000)
            .map(|t| (t, noisy(t)))
            .collect()
    };
    let (four_days, half_hour) = (hist(now - 4 * DAY_MS), hist(now - 1_800_000));
    // From now on, every 5 s for 3 minutes: a and c on their pattern, b 40 above it.
    let live: Vec<i64> = (0..36).map(|i| now - 30_000 + i * 5000).collect();
    let usual: Vec<(i64, f64)> = live.iter().map(|t| (*t, pattern(*t))).collect();
    let off: Vec<(i64, f64)> = live.iter().map(|t| (*t, pattern(*t) + 40.0)).collect();
    for body in [
        request(&[
            (&[("__name__", "anom_load"), ("host", "a")], &four_days),
            (&[("__name__", "anom_load"), ("host", "b")], &four_days),
            (&[("__name__", "anom_load"), ("host", "c")], &half_hour),
        ]),
        request(&[
            (&[("__name__", "anom_load"), ("host", "a")], &usual),
            (&[("__name__", "anom_load"), ("host", "b")], &off),
            (&[("__name__", "anom_load"), ("host", "c")], &usual),
        ]),
    ] {
        let (status, text) = post_write(addr, body).await;
        assert_eq!(status, 204, "{text}");
    }
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/prometheus/config/v1/rules/ops"))
        .body(GROUP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());

    // b fires (after `for`), alone.
    let mut alerts = serde_json::Value::Null;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        alerts = get_json(format!("http://{addr}/api/v1/alerts")).await["data"]["alerts"].clone();
        if alerts[0]["state"] == "firing" {
            break;
        }
    }
    let list = alerts.as_array().unwrap();
    assert_eq!(list.len(), 1, "{alerts}");
    let a = &list[0];
    assert_eq!(a["state"], "firing");
    assert_eq!(a["labels"]["alertname"], "LoadAnomaly");
    assert_eq!(a["labels"]["host"], "b");
    assert_eq!(a["labels"]["severity"], "ticket");
    let summary = a["annotations"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("b is ") && summary.ends_with(" sigma off its usual load"));

    // The rule's baselines: a and b, daily MSTL; c has too little history.
    let rule = rules_json(addr).await;
    assert_eq!(rule["type"], "alerting");
    let an = &rule["anomaly"];
    assert_eq!(an["baselines"], 2, "{rule}");
    assert_eq!(an["methods"]["mstl_daily"], 2, "{rule}");
    assert_eq!(an["seriesWithoutBaseline"], 1, "{rule}");
    assert_eq!(an["sensitivity"], 3.0);
    let fitted_at = an["fittedAt"].as_str().unwrap().to_string();

    // The series Grafana plots: score, baseline and band, per host.
    let t = now_ms() as f64 / 1000.0;
    let value = |r: &[serde_json::Value], host: &str| -> Option<f64> {
        r.iter()
            .find(|s| s["metric"]["host"] == host)
            .map(|s| s["value"][1].as_str().unwrap().parse().unwrap())
    };
    let score = instant_result(addr, "anomaly_score{anomaly=\"LoadAnomaly\"}", t).await;
    let (sa, sb) = (value(&score, "a").unwrap(), value(&score, "b").unwrap());
    assert!(sa.abs() < 3.0, "a scores {sa}");
    assert!(sb > 3.0, "b scores {sb}");
    assert_eq!(value(&score, "c"), None, "c has no baseline");
    let base = instant_result(addr, "anomaly_baseline{host=\"a\"}", t).await;
    let lower = instant_result(addr, "anomaly_lower{host=\"a\"}", t).await;
    let upper = instant_result(addr, "anomaly_upper{host=\"a\"}", t).await;
    let (b, lo, hi) = (
        value(&base, "a").unwrap(),
        value(&lower, "a").unwrap(),
        value(&upper, "a").unwrap(),
    );
    // The baseline follows the daily sine (the noise is within ±1).
    let truth =
        100.0 + 20.0 * (std::f64::consts::TAU * (t * 1000.0 % DAY_MS as f64) / DAY_MS as f64).sin();
    assert!((b - truth).abs() < 3.0, "baseline {b}, pattern {truth}");
    assert!(
        lo < b && b < hi && ((hi - b) - (b - lo)).abs() < 1e-6,
        "{lo} {b} {hi}"
    );

    // The Delta table holds the two baselines.
    let table = deltalake::open_table(
        url::Url::from_directory_path(data.join("anomaly_baselines").canonicalize().unwrap())
            .unwrap(),
    )
    .await
    .unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_table("b", table.table_provider().await.unwrap())
        .unwrap();
    let rows = ctx
        .sql("SELECT series, method, cardinality(profile) AS slots FROM b ORDER BY series")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&rows)
        .unwrap()
        .to_string();
    assert!(
        text.contains(r#"{"host":"a"} | mstl_daily | 24"#)
            && text.contains(r#"{"host":"b"} | mstl_daily | 24"#),
        "{text}"
    );

    // The same detection as a SQL function, over the live minutes; c has no baseline.
    let sql = format!(
        "SELECT labels['host'] AS host, bool_or(anomalous) AS anomalous, min(score) > 3 AS all_over \
         FROM anomaly_range('anom_load', {}, {}, '10s', 3, '1h', '4d') GROUP BY 1 ORDER BY 1",
        now / 1000 - 20,
        now / 1000 + 60
    );
    let rows = srv.engine.sql(&sql).await.unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&rows)
        .unwrap()
        .to_string();
    let want = "\
+------+-----------+----------+
| host | anomalous | all_over |
+------+-----------+----------+
| a    | false     | false    |
| b    | true      | true     |
| c    |           |          |
+------+-----------+----------+";
    assert_eq!(text, want);

    // A restart loads them: same fit time, b fires again, nothing refitted.
    srv.shutdown().await;
    let srv = server(&data).await;
    let addr = srv.http_addr;
    let mut rule = serde_json::Value::Null;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rule = rules_json(addr).await;
        if rule["alerts"][0]["state"] == "firing" {
            break;
        }
    }
    assert_eq!(rule["alerts"][0]["labels"]["host"], "b", "{rule}");
    assert_eq!(rule["anomaly"]["fittedAt"], fitted_at.as_str(), "{rule}");
    assert_eq!(rule["anomaly"]["baselines"], 2);
    srv.shutdown().await;
}
