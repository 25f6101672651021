//! Tenants (`[[tenants]]`, `strata::tenants`): who may write and read which tenant's
//! data, isolation in storage and in every query path (PromQL, the Prometheus API, SQL
//! over Flight SQL, OTLP over gRPC), and per-tenant rate and series limits, with two
//! tenants on one server, one of them under load at its limits.

use arrow_flight::sql::client::FlightSqlServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use strata::tenants::{TenantConfig, TenantHeaders};

use crate::common::*;

/// Team A: a token, 2,000 samples/s with a bucket of 4,000, at most 200 series, its own
/// retention. Team B: no token (a gateway in front authenticates), no limits.
fn tenants() -> Vec<TenantConfig> {
    let a: TenantConfig = toml::from_str(
        r#"
id = "team-a"
tokens = ["tok-a"]
ingestion_rate = { samples_per_second = 2000, burst = 4000 }
raw_retention = "3d"
tier_retention = { "1m" = "7d" }
[cardinality]
max_series = 200
"#,
    )
    .unwrap();
    let b = TenantConfig {
        id: "team-b".into(),
        ..Default::default()
    };
    vec![a, b]
}

const A: &[(&str, &str)] = &[("authorization", "Bearer tok-a")];
const B: &[(&str, &str)] = &[("X-Scope-OrgID", "team-b")];

async fn write_as(
    addr: std::net::SocketAddr,
    who: &[(&str, &str)],
    body: Vec<u8>,
) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body);
    for (k, v) in who {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

async fn get_as(
    addr: std::net::SocketAddr,
    who: &[(&str, &str)],
    path: &str,
    query: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .query(query);
    for (k, v) in who {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// `(who label, value)` of what `q` selects now, as `who` sees it.
async fn query_as(
    addr: std::net::SocketAddr,
    who: &[(&str, &str)],
    q: &str,
) -> Vec<(String, String)> {
    let now = format!("{}", now_ms() as f64 / 1000.0);
    let (status, v) = get_as(addr, who, "/api/v1/query", &[("query", q), ("time", &now)]).await;
    assert_eq!(status, 200, "{q}: {v}");
    let mut out: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["who"].as_str().unwrap_or("").to_string(),
                r["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn series_request(name: &str, n: usize, t_ms: i64) -> Vec<u8> {
    let labels: Vec<Vec<(String, String)>> = (0..n)
        .map(|i| {
            vec![
                ("__name__".into(), name.into()),
                ("i".into(), i.to_string()),
            ]
        })
        .collect();
    let refs: Vec<Vec<(&str, &str)>> = labels
        .iter()
        .map(|l| l.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect())
        .collect();
    let samples = [(t_ms, 1.0)];
    let series: Vec<TestSeries<'_>> = refs.iter().map(|l| (l.as_slice(), &samples[..])).collect();
    request(&series)
}

async fn flight_client(
    addr: std::net::SocketAddr,
) -> FlightSqlServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightSqlServiceClient::new(channel)
}

async fn flight_count(
    client: &mut FlightSqlServiceClient<tonic::transport::Channel>,
    sql: &str,
) -> Result<i64, String> {
    use futures::TryStreamExt;
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(|e| e.to_string())?;
    let mut batches = vec![];
    for ep in info.endpoint {
        let stream = client
            .do_get(ep.ticket.unwrap())
            .await
            .map_err(|e| e.to_string())?;
        batches.extend(
            stream
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(scalar_i64(&batches))
}

#[tokio::test]
async fn two_tenants_are_authenticated_isolated_and_limited_apart() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| c.tenants = tenants()).await;
    let addr = srv.http_addr;
    let t = now_ms() - 1_000;
    let one = |who: &'static str, v: f64| {
        request(&[(&[("__name__", "iso_metric"), ("who", who)], &[(t, v)])])
    };

    // Who may: 401 without a tenant, with an unknown tenant or token, or without the
    // token a tenant needs; 403 for A's token asking for B's data.
    for (who, status) in [
        (&[][..], 401),
        (&[("X-Scope-OrgID", "team-c")][..], 401),
        (&[("X-Scope-OrgID", "team-a")][..], 401),
        (&[("authorization", "Bearer nope")][..], 401),
        (&[("X-Scope-OrgID", "a/b")][..], 401),
        (
            &[
                ("authorization", "Bearer tok-a"),
                ("X-Scope-OrgID", "team-b"),
            ][..],
            403,
        ),
    ] {
        let r = write_as(addr, who, one("x", 9.0)).await;
        assert_eq!(r.status().as_u16(), status, "{who:?}");
        if status == 401 {
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
        }
        let (s, _) = get_as(addr, who, "/api/v1/query", &[("query", "iso_metric")]).await;
        assert_eq!(s, status, "query as {who:?}");
    }
    // Health and self-metrics need no tenant.
    assert_eq!(
        reqwest::get(format!("http://{addr}/-/ready"))
            .await
            .unwrap()
            .status(),
        200
    );

    // Each tenant writes its own series: A with its token (also as InfluxDB's `Token` and
    // Basic with the token as password), B with the header.
    assert_eq!(write_as(addr, A, one("a", 1.0)).await.status(), 204);
    assert_eq!(write_as(addr, B, one("b", 2.0)).await.status(), 204);
    let influx = reqwest::Client::new()
        .post(format!(
            "http://{addr}/api/v2/write?bucket=x&org=y&precision=ms"
        ))
        .header("Authorization", "Token tok-a")
        .body(format!("iso_influx,who=a value=5 {t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(influx.status(), 204);
    let basic = reqwest::Client::new()
        .post(format!("http://{addr}/write?db=x&precision=ms"))
        .basic_auth("anyone", Some("tok-a"))
        .body(format!("iso_influx,who=a2 value=6 {t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 204);

    // PromQL and the Prometheus API see their own tenant's data only.
    assert_eq!(
        query_as(addr, A, "iso_metric").await,
        vec![("a".into(), "1".into())]
    );
    assert_eq!(
        query_as(addr, B, "iso_metric").await,
        vec![("b".into(), "2".into())]
    );
    assert_eq!(
        query_as(addr, A, "iso_influx_value").await,
        vec![("a".into(), "5".into()), ("a2".into(), "6".into())]
    );
    assert_eq!(query_as(addr, B, "iso_influx_value").await, vec![]);
    let (_, v) = get_as(addr, B, "/api/v1/label/who/values", &[]).await;
    assert_eq!(v["data"], serde_json::json!(["b"]));
    let (_, v) = get_as(addr, A, "/api/v1/series", &[("match[]", "{who=~\".+\"}")]).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 3, "{v}");
    let (_, v) = get_as(addr, B, "/api/v1/status/tsdb", &[]).await;
    assert_eq!(v["data"]["headStats"]["numSeries"], 1, "{v}");

    // OTLP over gRPC, with the tenant in the call's metadata.
    let grpc = srv.otlp_grpc_addr.unwrap();
    let mut otlp = MetricsServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let export = |who: Option<(&'static str, &'static str)>| {
        let mut req = tonic::Request::new(otlp_gauge("iso_otlp", t, 7.0));
        if let Some((k, v)) = who {
            req.metadata_mut().insert(k, v.parse().unwrap());
        }
        req
    };
    let e = otlp.export(export(None)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    otlp.export(export(Some(("x-scope-orgid", "team-b"))))
        .await
        .unwrap();
    assert_eq!(query_as(addr, B, "iso_otlp").await.len(), 1);
    assert_eq!(query_as(addr, A, "iso_otlp").await, vec![]);

    // Storage: each tenant's tables are under tenants/<id>.
    for who in [A, B] {
        let r = reqwest::Client::new().post(format!("http://{addr}/api/v1/admin/flush"));
        let r = who.iter().fold(r, |r, (k, v)| r.header(*k, *v));
        assert_eq!(r.send().await.unwrap().status(), 200);
    }
    for id in ["team-a", "team-b"] {
        let log = dir.path().join(format!("tenants/{id}/samples/_delta_log"));
        assert!(log.is_dir(), "{}", log.display());
    }
    assert!(!dir.path().join("samples").exists());

    // SQL over Flight SQL: the handshake with the token as password (ADBC's
    // username/password), or the header on every call.
    let fl = srv.flight_addr;
    let count_sql = "SELECT count(*) FROM samples WHERE metric_name = 'iso_metric'";
    let mut anon = flight_client(fl).await;
    let e = flight_count(&mut anon, count_sql).await.unwrap_err();
    assert!(
        e.contains("Unauthenticated") || e.contains("no tenant"),
        "{e}"
    );
    let mut a = flight_client(fl).await;
    let token = a.handshake("anyone", "tok-a").await.unwrap();
    assert_eq!(&token[..], b"tok-a");
    assert_eq!(flight_count(&mut a, count_sql).await, Ok(1));
    assert_eq!(
        flight_count(
            &mut a,
            "SELECT count(*) FROM samples WHERE metric_name = 'iso_otlp'"
        )
        .await,
        Ok(0)
    );
    a.set_header("x-scope-orgid", "team-b");
    let e = flight_count(&mut a, count_sql).await.unwrap_err();
    assert!(
        e.contains("PermissionDenied") || e.contains("may not act"),
        "{e}"
    );
    let b_rows = strata::sql_client::over_flight_as(
        &format!("http://{fl}"),
        "SELECT count(*) FROM samples WHERE metric_name IN ('iso_metric', 'iso_otlp')",
        &TenantHeaders {
            org_id: Some("team-b".into()),
            token: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(scalar_i64(&b_rows), 2);

    // Retention per tenant: A's 1m tier keeps 7 days, B's the default 90.
    let (_, v) = get_as(addr, A, "/api/v1/status/tiers", &[]).await;
    let (_, w) = get_as(addr, B, "/api/v1/status/tiers", &[]).await;
    let retention_1m = |v: &serde_json::Value| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "1m")
            .map(|t| t["retention_seconds"].clone())
    };
    assert_eq!(retention_1m(&v), Some(serde_json::json!(7 * 86_400)), "{v}");
    assert_eq!(
        retention_1m(&w),
        Some(serde_json::json!(90 * 86_400)),
        "{w}"
    );

    // The rate limit: A's bucket holds 4,000 samples and refills 2,000/s. A request of
    // 5,000 can never fit: 400. Under load, A is refused with 429 and Retry-After while B,
    // writing and querying at the same time, is never refused.
    let r = write_as(addr, A, series_request("many_series", 5_000, t)).await;
    assert_eq!(r.status(), 400, "{}", r.text().await.unwrap());
    let hammer = tokio::spawn(async move {
        let (mut ok, mut limited, mut retry_after) = (0, 0, vec![]);
        for round in 0..40 {
            let body = series_request("load_a", 150, t + round);
            let r = write_as(addr, A, body).await;
            match r.status().as_u16() {
                204 => ok += 1,
                429 => {
                    limited += 1;
                    retry_after.push(r.headers()["retry-after"].to_str().unwrap().to_string());
                }
                s => panic!("A got {s}: {}", r.text().await.unwrap()),
            }
        }
        (ok, limited, retry_after)
    });
    let mut b_writes = 0;
    for round in 0..40 {
        let r = write_as(addr, B, series_request("load_b", 150, t + round)).await;
        assert_eq!(r.status(), 204, "B refused while A is at its limits");
        b_writes += 1;
        let got = query_as(addr, B, "count(load_b)").await;
        assert_eq!(got, vec![("".into(), "150".into())]);
    }
    let (ok, limited, retry_after) = hammer.await.unwrap();
    // 40 x 150 = 6,000 samples: the bucket's 4,000 and what refills while they are sent
    // pass; the rest is refused.
    assert!(ok >= 1 && limited >= 1, "ok {ok}, limited {limited}");
    assert!(retry_after.iter().all(|s| s == "1"), "{retry_after:?}");
    assert_eq!(b_writes, 40);
    // Series limit: A holds at most 200 series (153 now); B has no limit. (After a second
    // A's bucket holds 2,000 samples again.)
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let r = write_as(addr, A, series_request("many_series", 250, t)).await;
    assert_eq!(r.status(), 400);
    let msg = r.text().await.unwrap();
    assert!(msg.contains("series"), "{msg}");
    let r = write_as(addr, B, series_request("many_series", 250, t)).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        query_as(addr, B, "count(many_series)").await,
        vec![("".into(), "250".into())]
    );

    // A's refusals are counted as such, with the tenant label.
    let text = metrics_text(addr).await;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("strata_samples_rejected_total{")
                && l.contains("tenant=\"team-a\"")
                && l.contains("reason=\"rate_limited\"")
        })
        .unwrap_or_else(|| panic!("no rate_limited line in\n{text}"));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 150.0 * limited as f64, "{line}");
    assert!(text.contains("tenant=\"team-b\""));
    assert_eq!(
        text.matches("# TYPE strata_samples_rejected_total ")
            .count(),
        1,
        "one family for all tenants"
    );

    // Rules are per tenant: a group posted for A is A's alone, stored in A's directory.
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/prometheus/config/v1/rules/ns"))
        .header("authorization", "Bearer tok-a")
        .body("name: a_rules\ninterval: 1m\nrules:\n  - record: a:x\n    expr: vector(1)\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (_, va) = get_as(addr, A, "/api/v1/rules", &[]).await;
    let (_, vb) = get_as(addr, B, "/api/v1/rules", &[]).await;
    assert_eq!(va["data"]["groups"][0]["name"], "a_rules", "{va}");
    assert_eq!(vb["data"]["groups"], serde_json::json!([]), "{vb}");
    assert!(
        dir.path()
            .join("tenants/team-a/rules/ns/a_rules.yml")
            .is_file()
    );
    srv.shutdown().await;
}

/// An OTLP request of one gauge point `name` = `v` at `t_ms`.
fn otlp_gauge(name: &str, t_ms: i64, v: f64) -> ExportMetricsServiceRequest {
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: t_ms as u64 * 1_000_000,
                            value: Some(number_data_point::Value::AsDouble(v)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Without `[[tenants]]` nothing changes: no header is needed, and a token is ignored.
#[tokio::test]
async fn without_tenants_no_header_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let t = now_ms() - 1_000;
    let body = request(&[(&[("__name__", "plain"), ("who", "x")], &[(t, 3.0)])]);
    assert_eq!(write_as(srv.http_addr, &[], body).await.status(), 204);
    assert_eq!(
        query_as(srv.http_addr, &[("X-Scope-OrgID", "whoever")], "plain").await,
        vec![("x".into(), "3".into())]
    );
    // A tenant setting without tenants is refused at start.
    let dir2 = tempfile::tempdir().unwrap();
    let e = strata::server::start(strata::config::Config {
        data_dir: dir2.path().to_string_lossy().into_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        flight_addr: "127.0.0.1:0".parse().unwrap(),
        statsd: strata::config::StatsdConfig {
            addr: String::new(),
            tenant: Some("team-a".into()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .err()
    .unwrap();
    assert!(e.contains("no [[tenants]]"), "{e}");
    srv.shutdown().await;
}
