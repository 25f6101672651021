//! StatsD and DogStatsD over UDP and TCP, aggregated per flush and read back by PromQL;
//! malformed lines counted by reason without stopping the listener.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::common::{instant_result, metrics_text, now_ms, server_with};

/// The value of the one series `q` selects now, once it equals `want` (polled: flushes
/// come every 100 ms), or the last answer after 10 s.
async fn value_when(addr: std::net::SocketAddr, q: &str, want: f64) -> f64 {
    let mut last = f64::NAN;
    for _ in 0..100 {
        let r = instant_result(addr, q, now_ms() as f64 / 1000.0).await;
        if let [one] = &r[..] {
            last = one["value"][1].as_str().unwrap().parse().unwrap();
            if (last - want).abs() <= 1e-6 * want.abs().max(1.0) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_lines_over_udp_and_tcp_become_series() {
    let dir = tempfile::tempdir().unwrap();
    // A statsd_exporter mapping: one rule naming and labelling, one dropping.
    let mapping = dir.path().join("mapping.yml");
    std::fs::write(
        &mapping,
        "mappings:\n- match: svc.*.requests\n  name: requests_total\n  labels:\n    service: $1\n\
         - match: debug.*\n  action: drop\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "mappings:\n- match: a.*\n").unwrap();
    let refused = strata::server::start(strata::config::Config {
        statsd: strata::config::StatsdConfig {
            addr: "127.0.0.1:0".into(),
            mapping_file: Some(bad.clone()),
            ..Default::default()
        },
        data_dir: dir.path().join("never").to_string_lossy().into_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        flight_addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await;
    let Err(msg) = refused else {
        panic!("a server started with a mapping rule without a name")
    };
    assert!(msg.contains("bad.yml") && msg.contains("no name"), "{msg}");
    let srv = server_with(dir.path(), |c| {
        c.statsd.addr = "127.0.0.1:0".into();
        c.statsd.flush_interval = Duration::from_millis(100);
        c.statsd.mapping_file = Some(mapping);
    })
    .await;
    let addr = srv.statsd_addr.expect("StatsD is bound");
    let http = srv.http_addr;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // One datagram: a counter at rate 1 and at rate 0.5 (3 + 1 / 0.5), a gauge set and
    // changed, a timer of three values (milliseconds, read as seconds), a set with a
    // repeated member, and a malformed line between them.
    let packet = "jobs.done:3|c|#queue:emails\njobs.done:1|c|@0.5|#queue:emails\n\
                  temp:20|g\ntemp:-5|g\nthis is not statsd\n\
                  api.latency:100:200:300|ms|#route:/pay\nvisitors:a:b:c:a|s\n\
                  svc.checkout.requests:2|c\ndebug.noise:1|g";
    udp.send_to(packet.as_bytes(), addr).await.unwrap();
    assert_eq!(
        value_when(http, r#"jobs_done{queue="emails"}"#, 5.0).await,
        5.0
    );
    assert_eq!(value_when(http, "temp", 15.0).await, 15.0);
    assert_eq!(
        value_when(http, r#"requests_total{service="checkout"}"#, 2.0).await,
        2.0
    );
    assert_eq!(value_when(http, "visitors", 3.0).await, 3.0);
    assert_eq!(value_when(http, "api_latency_count", 3.0).await, 3.0);
    let sum = value_when(http, "api_latency_sum", 0.6).await;
    assert!((sum - 0.6).abs() < 1e-9, "{sum}");
    // Min, median and max of 0.1, 0.2, 0.3 s (the median from the KLL sketch, whose
    // floats keep about 7 digits).
    for (q, want) in [("0", 0.1), ("0.5", 0.2), ("1", 0.3)] {
        let got = value_when(
            http,
            &format!(r#"api_latency{{quantile="{q}",route="/pay"}}"#),
            want,
        )
        .await;
        assert!((got - want).abs() < 1e-6, "quantile {q}: {got}");
    }
    // TCP: more of the counter (a running total across flushes), the last line without
    // its newline.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"jobs.done:4|c|#queue:emails\ntemp:+1|g")
        .await
        .unwrap();
    tcp.shutdown().await.unwrap();
    assert_eq!(
        value_when(http, r#"jobs_done{queue="emails"}"#, 9.0).await,
        9.0
    );
    assert_eq!(value_when(http, "temp", 16.0).await, 16.0);
    let m = metrics_text(http).await;
    assert!(
        m.contains(r#"strata_samples_rejected_total{reason="statsd_malformed_line"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"strata_samples_rejected_total{reason="statsd_dropped_by_mapping"} 1"#),
        "{m}"
    );
    assert!(
        instant_result(http, "debug_noise", now_ms() as f64 / 1000.0)
            .await
            .is_empty()
    );
    srv.shutdown().await;
}
