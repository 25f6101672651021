//! The Prometheus HTTP API's metadata endpoints, checked against answers worked out by
//! hand from Prometheus's API documentation for the written series.

use serde_json::{Value, json};

use crate::common::*;

async fn get(addr: std::net::SocketAddr, path_and_query: &str) -> (u16, Value) {
    let r = reqwest::get(format!("http://{addr}{path_and_query}"))
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn series_labels_and_label_values() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let now = now_ms();
    let t_old = now - 3_600_000;
    let body = request(&[
        (
            &[("__name__", "up"), ("job", "node"), ("instance", "a:9100")][..],
            &[(now - 1000, 1.0)][..],
        ),
        (
            &[("__name__", "up"), ("job", "node"), ("instance", "b:9100")][..],
            &[(t_old, 0.0)][..],
        ),
        (
            &[("__name__", "up"), ("job", "api"), ("instance", "c:80")][..],
            &[(now - 1000, 1.0)][..],
        ),
        (
            &[
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("code", "200"),
            ][..],
            &[(now - 1000, 7.0)][..],
        ),
    ]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    // Half the series in Delta, half in the head: answers must not depend on where.
    srv.ingester.persist().await.unwrap();
    let body = request(&[(
        &[("__name__", "up"), ("job", "db"), ("instance", "d:5432")][..],
        &[(now - 500, 1.0)][..],
    )]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);

    let a = srv.http_addr;
    let (s, v) = get(a, "/api/v1/series?match[]=up%7Bjob%3D%22node%22%7D").await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"status": "success", "data": [
            {"__name__": "up", "instance": "a:9100", "job": "node"},
            {"__name__": "up", "instance": "b:9100", "job": "node"}
        ]})
    );
    // Regex, negative matcher, two match[] (union), time range excluding the old sample.
    let start = (now - 600_000) as f64 / 1000.0;
    let (_, v) = get(
        a,
        &format!("/api/v1/series?match[]=up%7Bjob%3D~%22n.*%7Cdb%22%7D&match[]=http_requests_total&start={start}"),
    )
    .await;
    assert_eq!(
        v["data"],
        json!([
            {"__name__": "http_requests_total", "code": "200", "job": "api"},
            {"__name__": "up", "instance": "a:9100", "job": "node"},
            {"__name__": "up", "instance": "d:5432", "job": "db"}
        ])
    );
    let (_, v) = get(a, "/api/v1/labels").await;
    assert_eq!(v["data"], json!(["__name__", "code", "instance", "job"]));
    let (_, v) = get(a, "/api/v1/labels?match[]=up").await;
    assert_eq!(v["data"], json!(["__name__", "instance", "job"]));
    let (_, v) = get(a, "/api/v1/label/job/values").await;
    assert_eq!(v["data"], json!(["api", "db", "node"]));
    let (_, v) = get(a, "/api/v1/label/__name__/values").await;
    assert_eq!(v["data"], json!(["http_requests_total", "up"]));
    let (_, v) = get(
        a,
        "/api/v1/label/instance/values?match[]=up%7Bjob!%3D%22node%22%7D",
    )
    .await;
    assert_eq!(v["data"], json!(["c:80", "d:5432"]));
    // POST form, as Grafana sends it.
    let r = reqwest::Client::new()
        .post(format!("http://{a}/api/v1/series"))
        .form(&[("match[]", "up{job=\"api\"}")])
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["data"],
        json!([{"__name__": "up", "instance": "c:80", "job": "api"}])
    );
    let (_, v) = get(a, "/api/v1/status/buildinfo").await;
    assert_eq!(v["status"], "success");
    assert!(v["data"]["version"].is_string());

    // Errors: Prometheus's shapes and statuses.
    let (s, v) = get(a, "/api/v1/series").await;
    assert_eq!((s, &v["errorType"]), (400, &json!("bad_data")));
    assert_eq!(v["error"], "no match[] parameter provided");
    let (s, v) = get(a, "/api/v1/series?match[]=up%7B").await;
    assert_eq!(
        (s, &v["status"], &v["errorType"]),
        (400, &json!("error"), &json!("bad_data"))
    );
    // A selector whose every matcher matches the empty string is refused, as in Prometheus.
    let (s, v) = get(a, "/api/v1/series?match[]=%7Bjob!%3D%22node%22%7D").await;
    assert_eq!((s, &v["errorType"]), (400, &json!("bad_data")));
    let (s, v) = get(a, "/api/v1/series?match[]=up&start=yesterday").await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("\"start\""));
    srv.shutdown().await;
}
