//! What a client must not be able to do to the server: deep queries (a stack overflow
//! aborted the process), SQL over Flight that changes or reads the server, queries whose
//! work grows exponentially in their operands.

use serde_json::Value;

use crate::common::*;

/// POSTs a PromQL query (form body, as Grafana does for long queries); status and JSON.
async fn post_query(
    addr: std::net::SocketAddr,
    path: &str,
    form: &[(&str, String)],
) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The one value of an instant query's answer (a scalar, or a one-series vector).
fn only_value(v: &Value) -> f64 {
    let d = &v["data"];
    let s = match d["resultType"].as_str() {
        Some("scalar") => &d["result"][1],
        _ => {
            assert_eq!(d["result"].as_array().map(|a| a.len()), Some(1), "{v}");
            &d["result"][0]["value"][1]
        }
    };
    s.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_queries_answer_or_name_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let t0 = now_ms() / 60_000 * 60_000 - 60_000;
    let body = request(&[(&[("__name__", "deep_x"), ("a", "1")][..], &[(t0, 2.0)][..])]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    let addr = srv.http_addr;
    let t = format!("{}", t0 as f64 / 1000.0);
    let instant = |q: String| {
        let t = t.clone();
        async move { post_query(addr, "/api/v1/query", &[("query", q), ("time", t)]).await }
    };
    let cases: Vec<(String, f64)> = vec![
        // 5,000 parentheses around a selector: the selector, 2.
        (
            format!("{}deep_x{}", "(".repeat(5000), ")".repeat(5000)),
            2.0,
        ),
        // 5,000 and 5,001 unary minus signs before a number (the parser folds them into
        // the literal): 1 and -1.
        (format!("{}1", "-".repeat(5000)), 1.0),
        (format!("{}1", "- ".repeat(5001)), -1.0),
        // 5,000 unary minus signs before a selector: 2.
        (format!("{}deep_x", "-".repeat(5000)), 2.0),
        // deep_x + deep_x + ... with 5,000 terms: 5,000 x 2.
        (vec!["deep_x"; 5000].join(" + "), 10_000.0),
        // 2,000 nested calls and aggregations: abs(...) of 2, sum(...) of it.
        (
            format!("{}deep_x{}", "abs(".repeat(2000), ")".repeat(2000)),
            2.0,
        ),
        (
            format!("{}deep_x{}", "sum(".repeat(2000), ")".repeat(2000)),
            2.0,
        ),
        // A subquery nesting 500 levels deep: the last value over a minute, each level.
        (
            format!(
                "{}deep_x{}",
                "last_over_time((".repeat(500),
                ")[1m:10s])".repeat(500)
            ),
            2.0,
        ),
    ];
    for (q, want) in cases {
        let (s, v) = instant(q.clone()).await;
        assert_eq!(s, 200, "{}...: {v}", &q[..40]);
        assert_eq!(only_value(&v), want, "{}...", &q[..40]);
    }
    // As a range query and through format_query too.
    let q = vec!["deep_x"; 3000].join(" * ");
    let (s, v) = post_query(
        addr,
        "/api/v1/query_range",
        &[
            ("query", q.clone()),
            ("start", t.clone()),
            ("end", t.clone()),
            ("step", "15".into()),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["data"]["result"][0]["values"][0][1], "+Inf",
        "2^3000 overflows"
    );
    let (s, v) = post_query(addr, "/api/v1/format_query", &[("query", q.clone())]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"].as_str().unwrap(), q);
    // Past the limit (20,000 levels): 400 bad_data naming it, for every shape.
    for q in [
        format!("{}deep_x{}", "(".repeat(20_000), ")".repeat(20_000)),
        format!("{}deep_x", "-".repeat(20_001)),
        vec!["deep_x"; 20_001].join(" + "),
    ] {
        let (s, v) = instant(q).await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["errorType"], "bad_data", "{v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains("more than the limit of 20000"), "{msg}");
    }
    // A query text over 1 MiB is refused before it is parsed.
    let (s, v) = instant(format!("deep_x{}", " ".repeat(1 << 20))).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("limit of 1048576 bytes"),
        "{v}"
    );
    // The server is up and still takes writes.
    let body = request(&[(&[("__name__", "deep_x"), ("a", "2")][..], &[(t0, 3.0)][..])]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    let (s, v) = instant("sum(deep_x)".into()).await;
    assert_eq!((s, only_value(&v)), (200, 5.0), "{v}");
    srv.shutdown().await;
}

/// The physical operators of a query's plan, and the rows they produced, from
/// `/api/v1/query_explain?analyze=true`.
async fn plan_work(addr: std::net::SocketAddr, q: &str, start: &str, end: &str) -> (usize, u64) {
    let (s, v) = post_query(
        addr,
        "/api/v1/query_explain",
        &[
            ("query", q.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", "3600".into()),
            ("analyze", "true".into()),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let text = v["data"].as_str().unwrap();
    let physical = text.split("physical plan with metrics:").nth(1).unwrap();
    let nodes = physical.matches("metrics=[").count();
    // `output_rows=4.10 K`: DataFusion prints counts with a K or M past a thousand.
    let rows = physical
        .split("output_rows=")
        .skip(1)
        .map(|r| {
            let n: String = r
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let scale = match r[n.len()..].trim_start().chars().next() {
                Some('K') => 1e3,
                Some('M') => 1e6,
                _ => 1.0,
            };
            (n.parse::<f64>().unwrap() * scale) as u64
        })
        .sum();
    (nodes, rows)
}

/// Binary and set operator chains of n operands: the plan's operators and the rows they
/// produce grow linearly in n (an `or` chain read its first operand 2^n times: 4 ms for
/// n = 2, 1.2-2 s for n = 10 on 200 hosts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_chains_do_work_linear_in_their_operands() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let now = now_ms() / 60_000 * 60_000;
    let start = now - 8 * 3_600_000;
    // 8 metrics x 6 hosts, a sample a minute for 8 hours.
    let samples: Vec<(i64, f64)> = (0..=480)
        .map(|i| (start + i * 60_000, (i % 17) as f64))
        .collect();
    let names: Vec<String> = (0..8).map(|f| format!("chain_f{f}")).collect();
    let hosts: Vec<String> = (0..6).map(|h| format!("h{h}")).collect();
    let mut series = vec![];
    for n in &names {
        for h in &hosts {
            series.push(vec![("__name__", n.as_str()), ("host", h.as_str())]);
        }
    }
    let body: Vec<TestSeries> = series.iter().map(|l| (&l[..], &samples[..])).collect();
    assert_eq!(post_write(srv.http_addr, request(&body)).await.0, 204);
    srv.ingester.persist().await.unwrap();
    // Two hours at 1 h steps: small enough that every chain runs in one partition (the
    // plan's shape changes once when a query is estimated to read more than 65,536 rows).
    let (s, e) = (
        format!("{}", (now - 2 * 3_600_000) / 1000),
        format!("{}", now / 1000),
    );
    let branch = |f: usize| {
        format!(
            r#"label_replace(max(max_over_time(chain_f{f}{{host=~"h1|h2|h3"}}[1h])), "field", "f{f}", "", "")"#
        )
    };
    let chain = |op: &str, n: usize| (0..n).map(branch).collect::<Vec<_>>().join(op);
    for op in [
        " or ",
        " and on() ",
        " unless on(field) ",
        " + ignoring(field) ",
        " + on() ",
        " > bool ignoring(field) ",
    ] {
        // Each measured on the second run, when the first has put the samples in the
        // sample cache (a scan of the files reads whole pages, the cache only the rows).
        let mut w = vec![];
        for n in [2, 4, 8] {
            plan_work(srv.http_addr, &chain(op, n), &s, &e).await;
            w.push(plan_work(srv.http_addr, &chain(op, n), &s, &e).await);
        }
        // Linear in n: 4 more operands add twice what 2 more did (a quadratic growth adds
        // 4x, an exponential one 20x).
        let (d1, d2) = (
            (w[1].0 - w[0].0, w[1].1 - w[0].1),
            (w[2].0 - w[1].0, w[2].1 - w[1].1),
        );
        assert!(d2.0 * 2 <= d1.0 * 5, "{op}: operators {w:?}");
        assert!(d2.1 * 2 <= d1.1 * 5, "{op}: rows {w:?}");
    }
    // The or chain still answers as Prometheus does: each field once, its max.
    let (st, v) = post_query(
        srv.http_addr,
        "/api/v1/query",
        &[("query", chain(" or ", 8)), ("time", e.clone())],
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 8, "{v}");
    for r in result {
        assert_eq!(r["value"][1], "16", "{r}");
    }
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_is_read_only_and_bounded_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| c.sql.memory_limit_bytes = 32 << 20).await;
    let t0 = now_ms() / 60_000 * 60_000 - 60_000;
    let body = request(&[(&[("__name__", "fl_x")][..], &[(t0, 1.0)][..])]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    let url = format!("http://{}", srv.flight_addr);
    let count = "SELECT count(*) FROM samples WHERE metric_name = 'fl_x'";
    let out = dir.path().join("stolen.csv");
    for sql in [
        "DROP TABLE samples".to_string(),
        format!(
            "COPY (SELECT * FROM samples) TO '{}' STORED AS CSV",
            out.display()
        ),
        "CREATE EXTERNAL TABLE pw (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'".into(),
        "SET datafusion.execution.batch_size = 1".into(),
    ] {
        let e = strata::sql_client::over_flight(&url, &sql)
            .await
            .unwrap_err();
        assert!(e.contains("read-only"), "{sql}: {e}");
    }
    assert!(!out.exists());
    assert_eq!(
        scalar_i64(&strata::sql_client::over_flight(&url, count).await.unwrap()),
        1
    );
    // A join past the 32 MiB budget fails; the server answers and ingests on.
    let e = strata::sql_client::over_flight(
        &url,
        "SELECT count(*) FROM generate_series(1, 6000000) a JOIN generate_series(1, 6000000) b ON a.value = b.value",
    )
    .await
    .unwrap_err();
    assert!(e.contains("Resources exhausted"), "{e}");
    let body = request(&[(&[("__name__", "fl_x")][..], &[(t0 + 15_000, 2.0)][..])]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    assert_eq!(
        scalar_i64(&strata::sql_client::over_flight(&url, count).await.unwrap()),
        2
    );
    srv.shutdown().await;
}
