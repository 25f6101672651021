//! Recording and alerting rules in a running server: a Prometheus rule file evaluated on
//! its group's slots over remote-written data, its outputs queryable with PromQL, and
//! `/api/v1/rules` and `/api/v1/alerts` in Prometheus's shapes.

use std::time::Duration;

use crate::common::*;

const RULES: &str = r#"
groups:
  - name: node
    interval: 1s
    labels: {team: infra}
    rules:
      - record: job:rules_up:sum
        expr: sum by (job) (rules_up)
      - alert: LoadHigh
        expr: rules_load > 1
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.instance }} load is {{ $value }}"
      - alert: LoadHighForAnHour
        expr: rules_load > 1
        for: 1h
      - alert: SeesTheRecording
        expr: job:rules_up:sum == 3
"#;

#[tokio::test]
async fn rules_record_alert_and_show_in_the_prometheus_api() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.yml");
    std::fs::write(&file, RULES).unwrap();
    let srv = server_with(&dir.path().join("data"), |c| {
        c.rule_files = vec![file.clone()];
    })
    .await;
    let addr = srv.http_addr;
    // Samples every second for the next 20 s (the lookback finds the latest).
    let t0 = now_ms();
    let times: Vec<(i64, f64)> = (0..20).map(|i| (t0 + i * 1000, 1.0)).collect();
    let load: Vec<(i64, f64)> = (0..20).map(|i| (t0 + i * 1000, 2.5)).collect();
    let low: Vec<(i64, f64)> = (0..20).map(|i| (t0 + i * 1000, 0.5)).collect();
    let (status, body) = post_write(
        addr,
        request(&[
            (
                &[("__name__", "rules_up"), ("job", "node"), ("instance", "a")],
                &times,
            ),
            (
                &[("__name__", "rules_up"), ("job", "node"), ("instance", "b")],
                &times,
            ),
            (
                &[("__name__", "rules_up"), ("job", "node"), ("instance", "c")],
                &times,
            ),
            (&[("__name__", "rules_load"), ("instance", "a")], &load),
            (&[("__name__", "rules_load"), ("instance", "b")], &low),
        ]),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    // Wait for two evaluations after the data (the group runs every second).
    let mut rules = serde_json::Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rules = get_json(format!("http://{addr}/api/v1/rules")).await;
        let r = &rules["data"]["groups"][0]["rules"];
        if r[3]["state"] == "firing" {
            break;
        }
    }
    let g = &rules["data"]["groups"][0];
    assert_eq!(g["name"], "node");
    assert_eq!(g["interval"], 1.0);
    let r = g["rules"].as_array().unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(r[0]["type"], "recording");
    assert_eq!(r[0]["health"], "ok", "{rules}");
    assert_eq!(r[0]["labels"], serde_json::json!({"team": "infra"}));
    assert_eq!(r[1]["type"], "alerting");
    assert_eq!(
        r[1]["state"], "firing",
        "for: 0 fires at its first evaluation"
    );
    assert_eq!(r[2]["state"], "pending", "for: 1h stays pending");
    assert_eq!(r[2]["duration"], 3600.0);
    // The alert of a later rule saw the recording rule's output of the same cycle.
    assert_eq!(r[3]["state"], "firing", "{rules}");
    let alert = &r[1]["alerts"][0];
    assert_eq!(
        alert["labels"],
        serde_json::json!({"alertname": "LoadHigh", "instance": "a", "severity": "page", "team": "infra"})
    );
    assert_eq!(alert["annotations"]["summary"], "a load is 2.5");
    assert_eq!(alert["value"], "2.5e+00");
    // Filters: only recording rules; a rule by name.
    let only = get_json(format!("http://{addr}/api/v1/rules?type=record")).await;
    assert_eq!(
        only["data"]["groups"][0]["rules"].as_array().unwrap().len(),
        1
    );
    let by_name = get_json(format!(
        "http://{addr}/api/v1/rules?rule_name[]=LoadHighForAnHour"
    ))
    .await;
    assert_eq!(
        by_name["data"]["groups"][0]["rules"][0]["name"],
        "LoadHighForAnHour"
    );
    // /api/v1/alerts: pending and firing alerts.
    let alerts = get_json(format!("http://{addr}/api/v1/alerts")).await;
    let mut states: Vec<(String, String)> = alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap().to_string(),
                a["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    states.sort();
    assert_eq!(
        states,
        [
            ("LoadHigh".to_string(), "firing".to_string()),
            ("LoadHighForAnHour".to_string(), "pending".to_string()),
            ("SeesTheRecording".to_string(), "firing".to_string()),
        ]
    );
    // The recorded series and ALERTS are series like any other.
    let now = now_ms() as f64 / 1000.0;
    let rec = instant_result(addr, "job:rules_up:sum", now).await;
    assert_eq!(rec[0]["value"][1], "3");
    assert_eq!(rec[0]["metric"]["team"], "infra");
    // ALERTS are written once the rule's state is restored (after its second
    // evaluation, as Prometheus does after a start).
    let mut firing = vec![];
    for _ in 0..50 {
        firing = instant_result(
            addr,
            "ALERTS{alertname=\"LoadHigh\"}",
            now_ms() as f64 / 1000.0,
        )
        .await;
        if !firing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0]["metric"]["alertstate"], "firing");
    assert_eq!(firing[0]["metric"]["instance"], "a");
    let mut for_state = vec![];
    for _ in 0..50 {
        for_state = instant_result(
            addr,
            "ALERTS_FOR_STATE{alertname=\"LoadHighForAnHour\"}",
            now_ms() as f64 / 1000.0,
        )
        .await;
        if !for_state.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let active_at: f64 = for_state[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!((active_at - t0 as f64 / 1000.0).abs() < 10.0, "{active_at}");
    // The evaluations are counted in /metrics, per group.
    let text = metrics_text(addr).await;
    let group_label = format!("rule_group=\"{};node\"", file.display());
    let evaluations = text
        .lines()
        .find(|l| l.starts_with("strata_rule_evaluations_total{") && l.contains(&group_label))
        .unwrap_or_else(|| panic!("no evaluations counted in\n{text}"));
    assert!(
        evaluations
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            >= 4.0
    );
    assert!(
        text.contains(&format!("strata_rule_group_rules{{{group_label}}} 4")),
        "{text}"
    );
    srv.shutdown().await;

    // A rule file that does not parse stops the start, naming the file.
    std::fs::write(
        &file,
        "groups:\n- name: g\n  rules:\n  - alert: a\n    expr: 'sum('\n",
    )
    .unwrap();
    let e = strata::server::start(strata::config::Config {
        data_dir: dir.path().join("data2").to_string_lossy().into_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        flight_addr: "127.0.0.1:0".parse().unwrap(),
        rule_files: vec![file.clone()],
        ..Default::default()
    })
    .await
    .err()
    .unwrap();
    assert!(
        e.contains("node.yml") && e.contains("could not parse"),
        "{e}"
    );
}

/// Mimir's ruler configuration API: a group posted over HTTP runs at once, survives a
/// restart, and is gone once deleted; bad groups get 400 naming the problem.
#[tokio::test]
async fn the_ruler_api_manages_groups_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = server(&data).await;
    let addr = srv.http_addr;
    let client = reqwest::Client::new();
    let base = format!("http://{addr}/prometheus/config/v1/rules");
    let t0 = now_ms();
    let v: Vec<(i64, f64)> = (0..30).map(|i| (t0 + i * 1000, 7.0)).collect();
    let (status, body) = post_write(addr, request(&[(&[("__name__", "ruler_in")], &v)])).await;
    assert_eq!(status, 204, "{body}");
    let group = "name: api\ninterval: 1s\nrules:\n  - record: ruler_out\n    expr: ruler_in * 2\n";
    let r = client
        .post(format!("{base}/team-a"))
        .body(group)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    // Bad groups: 400 naming the problem; nothing stored.
    for (bad, want) in [
        (
            "name: bad\nrules:\n  - record: x\n    expr: 'sum('\n",
            "could not parse",
        ),
        ("rules: [", "invalid YAML"),
    ] {
        let r = client
            .post(format!("{base}/team-a"))
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let m = r.text().await.unwrap();
        assert!(m.contains(want), "{m}");
    }
    // It runs: the recorded series appears.
    let mut got = vec![];
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        got = instant_result(addr, "ruler_out", now_ms() as f64 / 1000.0).await;
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got[0]["value"][1], "14");
    // Listed as Mimir lists it.
    let text = client
        .get(&base)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let listed: std::collections::BTreeMap<String, Vec<serde_json::Value>> =
        yaml_serde::from_str(&text).unwrap();
    assert_eq!(listed["team-a"][0]["name"], "api");
    let one = client
        .get(format!("{base}/team-a/api"))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    assert_eq!(
        client
            .get(format!("{base}/team-b"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    srv.shutdown().await;

    // Restarted: the group is still there and running.
    let srv = server(&data).await;
    let rules = get_json(format!("http://{}/api/v1/rules", srv.http_addr)).await;
    assert_eq!(rules["data"]["groups"][0]["name"], "api", "{rules}");
    assert_eq!(rules["data"]["groups"][0]["file"], "team-a");
    let base = format!("http://{}/prometheus/config/v1/rules", srv.http_addr);
    let r = client
        .delete(format!("{base}/team-a/api"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        client
            .delete(format!("{base}/team-a/api"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    srv.shutdown().await;
    let srv = server(&data).await;
    let rules = get_json(format!("http://{}/api/v1/rules", srv.http_addr)).await;
    assert_eq!(rules["data"]["groups"], serde_json::json!([]));
    srv.shutdown().await;
}

/// After a restart, a pending alert's `for` state is restored from `ALERTS_FOR_STATE`
/// (Prometheus's `RestoreForState`): its active time is the old one shifted by the
/// downtime, not the restart's.
#[tokio::test]
async fn a_restart_restores_pending_alerts_for_state() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("for.yml");
    std::fs::write(
        &file,
        "groups:\n- name: slow\n  interval: 1s\n  rules:\n  - alert: Slow\n    expr: restore_in > 1\n    for: 20m\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let start = |data: std::path::PathBuf, file: std::path::PathBuf| async move {
        server_with(&data, |c| c.rule_files = vec![file]).await
    };
    let srv = start(data.clone(), file.clone()).await;
    let t0 = now_ms();
    let v: Vec<(i64, f64)> = (0..120).map(|i| (t0 + i * 1000, 5.0)).collect();
    let (status, body) = post_write(
        srv.http_addr,
        request(&[(&[("__name__", "restore_in")], &v)]),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let active_at = |addr: std::net::SocketAddr| async move {
        let a = get_json(format!("http://{addr}/api/v1/alerts")).await;
        a["data"]["alerts"][0]["activeAt"].as_str().map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        })
    };
    // Pending, and its ALERTS_FOR_STATE written (after the restore that follows the
    // second evaluation), for a few seconds.
    let mut first = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = instant_result(
            srv.http_addr,
            "ALERTS_FOR_STATE{alertname=\"Slow\"}",
            now_ms() as f64 / 1000.0,
        )
        .await;
        if !r.is_empty() {
            first = active_at(srv.http_addr).await;
            break;
        }
    }
    let first = first.expect("a pending alert with its ALERTS_FOR_STATE");
    tokio::time::sleep(Duration::from_secs(4)).await;
    srv.shutdown().await;
    let restarted_at = now_ms();
    let srv = start(data.clone(), file.clone()).await;
    // Until the restore (after the second evaluation) the new process's alert is active
    // from its first evaluation, after the restart; then from the old active time plus
    // the downtime, well before the restart.
    let mut restored = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(a) = active_at(srv.http_addr).await
            && a < restarted_at - 1000
        {
            restored = Some(a);
            break;
        }
    }
    let restored = restored.expect("the alert's active time restored from before the restart");
    // ALERTS_FOR_STATE holds whole seconds.
    assert!(restored >= first / 1000 * 1000, "{restored} before {first}");
    let rules = get_json(format!("http://{}/api/v1/rules", srv.http_addr)).await;
    assert_eq!(rules["data"]["groups"][0]["rules"][0]["state"], "pending");
    srv.shutdown().await;
}

/// `strata rules test` on Prometheus's own unit-test example (its expectations are
/// Prometheus's documentation's), and on a file wrong on purpose, whose two failures are
/// reported.
#[tokio::test]
async fn promtool_rule_tests_pass_and_fail_as_promtool_says() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules");
    let errors = strata::rules_test::run_file(&dir.join("alerts_test.yml"))
        .await
        .unwrap();
    assert!(errors.is_empty(), "{errors:#?}");
    let errors = strata::rules_test::run_file(&dir.join("failing_test.yml"))
        .await
        .unwrap();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].contains("alertname: InstanceDown, time: 4m0s"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("expr: \"up\", time: 1m0s"),
        "{}",
        errors[1]
    );
    assert!(errors[1].contains("Value:0"), "{}", errors[1]);
}

/// Rule evaluation has a runtime of its own: while every worker of the server's runtime is
/// held by other work for 6 s (as CPU-heavy dashboard queries hold them), a group
/// evaluated every second misses no slot, and its recorded series has a sample for each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_keep_their_slots_while_the_servers_runtime_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("iso.yml");
    std::fs::write(
        &file,
        "groups:\n- name: iso\n  interval: 1s\n  rules:\n  - record: iso_out\n    expr: vector(1)\n",
    )
    .unwrap();
    let srv = server_with(&dir.path().join("data"), |c| {
        c.rule_files = vec![file.clone()];
    })
    .await;
    let addr = srv.http_addr;
    let group = || async move {
        get_json(format!("http://{addr}/api/v1/rules")).await["data"]["groups"][0].clone()
    };
    for _ in 0..100 {
        if group().await["lastEvaluation"] != "0001-01-01T00:00:00Z" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let from = now_ms();
    // Both workers spin for 6 s.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async {
                let until = std::time::Instant::now() + Duration::from_secs(6);
                let mut x = 0u64;
                while std::time::Instant::now() < until {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                x
            })
        })
        .collect();
    for b in busy {
        b.await.unwrap();
    }
    let to = now_ms();
    let g = group().await;
    assert_eq!(g["missedIterations"], 0, "{g}");
    let n = instant_result(
        addr,
        &format!("count_over_time(iso_out[{}ms])", to - from),
        to as f64 / 1000.0,
    )
    .await;
    let count: f64 = n[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(count >= 5.0, "{count} evaluations in {} ms", to - from);
    srv.shutdown().await;
}
