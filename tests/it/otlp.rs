//! OTLP metrics over HTTP (protobuf, JSON, gzip) and gRPC, read back by PromQL and SQL;
//! error answers; delta sums converted to cumulative across a restart.

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::common::{instant_result, now_ms, samples_of, server};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "checkout"),
                    kv("service.instance.id", "pod-1"),
                    kv("host.name", "h1"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn point(t_ms: i64, start_ms: i64, v: number_data_point::Value) -> NumberDataPoint {
    NumberDataPoint {
        start_time_unix_nano: start_ms as u64 * 1_000_000,
        time_unix_nano: t_ms as u64 * 1_000_000 + 123,
        value: Some(v),
        ..Default::default()
    }
}

fn sum(name: &str, temporality: AggregationTemporality, p: NumberDataPoint) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![p],
            aggregation_temporality: temporality as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

/// The one value of instant query `q` at `t_s`.
async fn value(addr: std::net::SocketAddr, q: &str, t_s: i64) -> String {
    let r = instant_result(addr, q, t_s).await;
    assert_eq!(r.len(), 1, "{q}: {r:?}");
    r[0]["value"][1].as_str().unwrap().to_string()
}

async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    gzip: bool,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let mut r = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header("Content-Type", content_type);
    let body = if gzip {
        r = r.header("Content-Encoding", "gzip");
        let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &body).unwrap();
        gz.finish().unwrap()
    } else {
        body
    };
    let resp = r.body(body).send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.bytes().await.unwrap().to_vec())
}

/// `google.rpc.Status`, as the error answers carry it.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[tokio::test]
async fn otlp_over_http_and_grpc_is_queryable_and_deltas_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let addr = srv.http_addr;
    let t_ms = now_ms() / 1000 * 1000 - 60_000;
    let t_s = t_ms / 1000;

    // Protobuf: a gauge, a cumulative counter and a histogram.
    let gauge = Metric {
        name: "queue.depth".into(),
        unit: "{item}".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                attributes: vec![kv("queue", "q1")],
                ..point(t_ms, 0, number_data_point::Value::AsDouble(7.0))
            }],
        })),
        ..Default::default()
    };
    let counter = Metric {
        unit: "1".into(),
        ..sum(
            "http.requests",
            AggregationTemporality::Cumulative,
            point(t_ms, t_ms - 3_600_000, number_data_point::Value::AsInt(42)),
        )
    };
    let histogram = Metric {
        name: "latency".into(),
        unit: "ms".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: t_ms as u64 * 1_000_000,
                count: 10,
                sum: Some(123.5),
                bucket_counts: vec![2, 3, 5],
                explicit_bounds: vec![10.0, 100.0],
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    };
    let body = request(vec![gauge, counter, histogram]).encode_to_vec();
    let (status, ct, body) = post(addr, "/v1/metrics", "application/x-protobuf", false, body).await;
    assert_eq!((status, ct.as_str()), (200, "application/x-protobuf"));
    let resp = ExportMetricsServiceResponse::decode(body.as_slice()).unwrap();
    assert_eq!(resp.partial_success, None, "full success");

    // JSON (OTLP/JSON: camelCase, 64-bit integers as strings), gzip, on Prometheus 3's path.
    let json = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[
            {{"key":"service.name","value":{{"stringValue":"checkout"}}}},
            {{"key":"service.namespace","value":{{"stringValue":"shop"}}}}]}},
          "scopeMetrics":[{{"scope":{{"name":"sensors"}},"metrics":[
            {{"name":"temperature","unit":"Cel","gauge":{{"dataPoints":[
              {{"timeUnixNano":"{}","asDouble":21.5,
                "attributes":[{{"key":"room","value":{{"stringValue":"a"}}}}]}}]}}}}]}}]}}]}}"#,
        t_ms * 1_000_000
    );
    let (status, ct, body) = post(
        addr,
        "/api/v1/otlp/v1/metrics",
        "application/json",
        true,
        json.into_bytes(),
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    assert_eq!(String::from_utf8(body).unwrap(), "{}");

    // Read back, names and labels as Prometheus 3 translates them.
    let job = r#"job="checkout",instance="pod-1""#;
    assert_eq!(
        value(addr, &format!(r#"queue_depth{{{job},queue="q1"}}"#), t_s).await,
        "7"
    );
    assert_eq!(
        value(addr, &format!("http_requests_total{{{job}}}"), t_s).await,
        "42"
    );
    // Cumulative buckets le=10: 2, le=100: 5, +Inf: 10; rank 5 is the top of (10, 100].
    assert_eq!(
        value(
            addr,
            "histogram_quantile(0.5, latency_milliseconds_bucket)",
            t_s
        )
        .await,
        "100"
    );
    assert_eq!(
        value(
            addr,
            "latency_milliseconds_sum / latency_milliseconds_count",
            t_s
        )
        .await,
        "12.35"
    );
    assert_eq!(
        value(
            addr,
            r#"temperature_celsius{job="shop/checkout",room="a"}"#,
            t_s
        )
        .await,
        "21.5"
    );
    // target_info: the resource's other attributes.
    assert_eq!(
        value(
            addr,
            &format!(r#"target_info{{{job},host_name="h1"}}"#),
            t_s
        )
        .await,
        "1"
    );
    // And by SQL.
    assert_eq!(
        samples_of(&srv.engine, "temperature_celsius").await,
        vec![(t_ms, 21.5)]
    );

    // Errors: an unknown Content-Type, a body that does not decode, a point that
    // cannot be translated (the others kept).
    let (status, _, _) = post(addr, "/v1/metrics", "text/plain", false, b"x".to_vec()).await;
    assert_eq!(status, 415);
    let (status, ct, body) = post(
        addr,
        "/v1/metrics",
        "application/x-protobuf",
        false,
        vec![0xff, 0xff, 0xff],
    )
    .await;
    assert_eq!((status, ct.as_str()), (400, "application/x-protobuf"));
    let st = RpcStatus::decode(body.as_slice()).unwrap();
    assert_eq!(st.code, 3, "INVALID_ARGUMENT");
    assert!(st.message.contains("does not decode"), "{}", st.message);
    let unspecified = sum(
        "bad",
        AggregationTemporality::Unspecified,
        point(t_ms, 0, number_data_point::Value::AsDouble(1.0)),
    );
    let good = sum(
        "good",
        AggregationTemporality::Cumulative,
        point(t_ms, 0, number_data_point::Value::AsDouble(2.0)),
    );
    let body = request(vec![unspecified, good]).encode_to_vec();
    let (status, _, body) = post(addr, "/v1/metrics", "application/x-protobuf", false, body).await;
    assert_eq!(status, 200);
    let partial = ExportMetricsServiceResponse::decode(body.as_slice())
        .unwrap()
        .partial_success
        .expect("a partial success");
    assert_eq!(partial.rejected_data_points, 1);
    assert!(
        partial.error_message.contains("temporality"),
        "{}",
        partial.error_message
    );
    assert_eq!(value(addr, "good_total", t_s).await, "2");

    // gRPC: delta sums become a running total.
    let grpc = srv.otlp_grpc_addr.expect("the gRPC receiver");
    let delta = |v: f64, from_ms: i64, to_ms: i64| {
        request(vec![sum(
            "jobs",
            AggregationTemporality::Delta,
            point(to_ms, from_ms, number_data_point::Value::AsDouble(v)),
        )])
    };
    let mut client = MetricsServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    for (v, a, z) in [
        (5.0, t_ms - 20_000, t_ms - 10_000),
        (3.0, t_ms - 10_000, t_ms),
    ] {
        let r = client.export(delta(v, a, z)).await.unwrap().into_inner();
        assert_eq!(r.partial_success, None);
    }
    assert_eq!(value(addr, "jobs_total", t_s).await, "8");
    // A replay of the last point is rejected (it would count twice).
    let r = client
        .export(delta(3.0, t_ms - 10_000, t_ms))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.partial_success.map(|p| p.rejected_data_points), Some(1));
    drop(client);

    // Restarted: the running total resumes from the stored value.
    srv.shutdown().await;
    let srv = server(dir.path()).await;
    let grpc = srv.otlp_grpc_addr.unwrap();
    let mut client = MetricsServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    client.export(delta(4.0, t_ms, t_ms + 5_000)).await.unwrap();
    assert_eq!(value(srv.http_addr, "jobs_total", t_s + 5).await, "12");
    assert_eq!(
        samples_of(&srv.engine, "jobs_total").await,
        vec![(t_ms - 10_000, 5.0), (t_ms, 8.0), (t_ms + 5_000, 12.0)]
    );
    srv.shutdown().await;
}
