//! Alert delivery to a real Alertmanager (Debian's `prometheus-alertmanager`, installed by
//! `scripts/test-all`) and to a plain webhook: Strata's alerts arrive with external labels
//! and relabeling applied, Alertmanager groups them and delivers them to its receiver,
//! and a silence made in Alertmanager suppresses them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use parking_lot::Mutex;

use crate::common::*;

const RULES: &str = r#"
groups:
  - name: delivery
    interval: 1s
    rules:
      - alert: DiskFull
        expr: am_disk_used > 0.9
        labels: {severity: page}
        annotations: {summary: "{{ $labels.device }} is {{ $value | humanizePercentage }} full"}
      - alert: Chatty
        expr: am_disk_used > 0
        labels: {severity: debug}
"#;

/// A server that keeps every JSON body POSTed to it, by path.
async fn sink() -> (SocketAddr, Arc<Mutex<Vec<(String, serde_json::Value)>>>) {
    let got: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/{*path}",
        post(
            move |axum::extract::Path(path): axum::extract::Path<String>,
                  body: axum::body::Bytes| {
                let g = g.clone();
                async move {
                    g.lock()
                        .push((path, serde_json::from_slice(&body).unwrap_or_default()));
                    "ok"
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, got)
}

struct Alertmanager(std::process::Child);

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn alerts_reach_a_discovered_authenticated_alertmanager_and_a_webhook_and_are_silenced_there()
{
    let bin = "/usr/bin/prometheus-alertmanager";
    assert!(
        std::path::Path::new(bin).exists(),
        "{bin} is missing: scripts/test-all --deps installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let (hooks, received) = sink().await;
    let am_port = free_port();
    std::fs::write(
        dir.path().join("am.yml"),
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://{hooks}/from-alertmanager\n"
        ),
    )
    .unwrap();
    // Alertmanager asks for basic auth (admin / test; the bcrypt hash of Prometheus's
    // "Securing Prometheus API and UI endpoints using basic auth" guide).
    std::fs::write(
        dir.path().join("web.yml"),
        "basic_auth_users:\n  admin: $2b$12$hNf2lSsxfm0.i4a.1kVpSOVyBCfIB51VRjgBUyv6kdnyTlgWj81Ay\n",
    )
    .unwrap();
    let _am = Alertmanager(
        std::process::Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("am.yml").display()
            ))
            .arg(format!(
                "--web.config.file={}",
                dir.path().join("web.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let am = format!("http://127.0.0.1:{am_port}");
    let client = reqwest::Client::new();
    let am_get = |path: &str| {
        client
            .get(format!("{am}{path}"))
            .basic_auth("admin", Some("test"))
            .send()
    };
    for _ in 0..100 {
        if am_get("/-/ready")
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unauthenticated = client
        .get(format!("{am}/api/v2/alerts"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let am_alerts = || async {
        am_get("/api/v2/alerts")
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    // Strata finds Alertmanager through file service discovery.
    let sd = dir.path().join("sd");
    std::fs::create_dir(&sd).unwrap();
    std::fs::write(
        sd.join("am.json"),
        format!(r#"[{{"targets": ["127.0.0.1:{am_port}"]}}]"#),
    )
    .unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let cfg: strata::config::Config = toml::from_str(&format!(
        r#"
rule_files = [{rules:?}]
[rules]
external_labels = {{ cluster = "eu1" }}
external_url = "http://strata.example"
[alerting]
resend_delay = "1s"
[[alerting.alertmanagers]]
file_sd_configs = [{{ files = [{sd_glob:?}] }}]
basic_auth = {{ username = "admin", password = "test" }}
[[alerting.webhooks]]
url = "http://{hooks}/plain"
[[alerting.alert_relabel_configs]]
source_labels = ["severity"]
regex = "debug"
action = "drop"
"#,
        rules = rules.display().to_string(),
        sd_glob = sd.join("*.json").display().to_string()
    ))
    .unwrap();
    let srv = server_with(&dir.path().join("data"), |c| {
        c.rule_files = cfg.rule_files.clone();
        c.rules = cfg.rules.clone();
        c.alerting = cfg.alerting.clone();
    })
    .await;
    let t0 = now_ms();
    let used: Vec<(i64, f64)> = (0..30).map(|i| (t0 + i * 1000, 0.95)).collect();
    let (status, body) = post_write(
        srv.http_addr,
        request(&[(&[("__name__", "am_disk_used"), ("device", "sda")], &used)]),
    )
    .await;
    assert_eq!(status, 204, "{body}");

    // Alertmanager has the alert: external label added, the debug one relabeled away.
    let mut alerts = serde_json::Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        alerts = am_alerts().await;
        if alerts.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
    }
    let a = alerts.as_array().unwrap();
    assert_eq!(a.len(), 1, "{alerts}");
    assert_eq!(
        a[0]["labels"],
        serde_json::json!({"alertname": "DiskFull", "cluster": "eu1", "device": "sda", "severity": "page"})
    );
    assert_eq!(a[0]["annotations"]["summary"], "sda is 95% full");
    assert!(
        a[0]["generatorURL"]
            .as_str()
            .unwrap()
            .starts_with("http://strata.example/graph?g0.expr=am_disk_used"),
        "{}",
        a[0]["generatorURL"]
    );
    assert_eq!(a[0]["status"]["state"], "active");

    // Alertmanager delivered it to its receiver, grouped by alertname.
    for _ in 0..50 {
        if received
            .lock()
            .iter()
            .any(|(p, _)| p == "from-alertmanager")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = received.lock().clone();
    let from_am = got
        .iter()
        .find(|(p, _)| p == "from-alertmanager")
        .expect("Alertmanager's webhook");
    assert_eq!(from_am.1["status"], "firing");
    assert_eq!(
        from_am.1["groupLabels"],
        serde_json::json!({"alertname": "DiskFull"})
    );
    // The plain webhook got Alertmanager's v2 JSON from Strata itself.
    let plain = got
        .iter()
        .find(|(p, _)| p == "plain")
        .expect("the plain webhook");
    assert_eq!(plain.1[0]["labels"]["alertname"], "DiskFull");
    assert!(plain.1[0]["startsAt"].as_str().unwrap().ends_with('Z'));

    // A silence made in Alertmanager suppresses Strata's alert.
    let now = chrono::Utc::now();
    let silence = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "DiskFull", "isRegex": false, "isEqual": true}],
        "startsAt": now.to_rfc3339(),
        "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
        "createdBy": "test",
        "comment": "maintenance",
    });
    let r = client
        .post(format!("{am}/api/v2/silences"))
        .basic_auth("admin", Some("test"))
        .json(&silence)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let mut state = serde_json::Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let a = am_alerts().await;
        state = a[0]["status"]["state"].clone();
        if state == "suppressed" {
            break;
        }
    }
    assert_eq!(state, "suppressed");
    // Strata counted what it sent.
    let text = metrics_text(srv.http_addr).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("strata_notifications_sent_total{")
                && l.contains(&am_port.to_string())),
        "{text}"
    );
    srv.shutdown().await;
}
