use super::*;

fn s(name: &str, labels: &[(&str, &str)], value: f64, ts: Option<i64>) -> ParsedSample {
    ParsedSample {
        name: name.to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        value,
        timestamp_ms: ts,
    }
}

fn err(body: &str, format: Format) -> ParseError {
    match parse(body, format) {
        Ok(e) => panic!("expected an error, parsed {:?}", e.samples),
        Err(e) => e,
    }
}

fn prom_err(body: &str) -> (usize, String) {
    let e = err(body, Format::PrometheusText);
    (e.line, e.message)
}

fn om_err(body: &str) -> (usize, String) {
    let e = err(body, Format::OpenMetrics);
    (e.line, e.message)
}

/// An excerpt of a node_exporter 1.8 scrape, plus a textfile-collector metric
/// whose label values hold the awkward characters.
const NODE_EXPORTER: &str = r##"# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.4853e-05
go_gc_duration_seconds{quantile="0.25"} 3.5292e-05
go_gc_duration_seconds{quantile="0.5"} 4.1e-05
go_gc_duration_seconds{quantile="1"} 0.000614667
go_gc_duration_seconds_sum 0.012891541
go_gc_duration_seconds_count 241
# HELP go_sched_latencies_seconds Distribution of the time goroutines have spent in the scheduler in a runnable state before actually running.
# TYPE go_sched_latencies_seconds histogram
go_sched_latencies_seconds_bucket{le="6.399999999999999e-08"} 4162
go_sched_latencies_seconds_bucket{le="6.399999999999999e-07"} 4520
go_sched_latencies_seconds_bucket{le="+Inf"} 4855
go_sched_latencies_seconds_sum NaN
go_sched_latencies_seconds_count 4855
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 171628.63
node_cpu_seconds_total{cpu="0",mode="iowait"} 86.56

# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 4.2151542784e+10
# HELP node_uname_info Labeled system information as provided by the uname system call.
# TYPE node_uname_info gauge
node_uname_info{domainname="(none)",machine="x86_64",nodename="host-1",release="6.8.0-45-generic",sysname="Linux",version="#45-Ubuntu SMP PREEMPT_DYNAMIC Fri Aug 30 12:02:04 UTC 2024"} 1
# HELP node_textfile_backup_status Written by backup.sh: C:\\backups\nsecond line.
# TYPE node_textfile_backup_status untyped
node_textfile_backup_status{job="nightly, full",cmd="tar -czf \"/b/x.tgz\" a=b",note="line1\nline2 } {#",path="C:\\dir\\n"} -Inf 1700000000123
# A free-form comment that the parser ignores.
node_load1 +Inf
"##;

#[test]
fn node_exporter_excerpt() {
    let e = parse(NODE_EXPORTER, Format::PrometheusText).unwrap();
    assert_eq!(e.samples.len(), 17);

    assert_eq!(
        e.samples[0],
        s(
            "go_gc_duration_seconds",
            &[("quantile", "0")],
            2.4853e-05,
            None
        )
    );
    assert_eq!(
        e.samples[3],
        s(
            "go_gc_duration_seconds",
            &[("quantile", "1")],
            0.000614667,
            None
        )
    );
    assert_eq!(
        e.samples[4],
        s("go_gc_duration_seconds_sum", &[], 0.012891541, None)
    );
    assert_eq!(
        e.samples[5],
        s("go_gc_duration_seconds_count", &[], 241.0, None)
    );
    assert_eq!(
        e.samples[6],
        s(
            "go_sched_latencies_seconds_bucket",
            &[("le", "6.399999999999999e-08")],
            4162.0,
            None
        )
    );
    assert_eq!(
        e.samples[8],
        s(
            "go_sched_latencies_seconds_bucket",
            &[("le", "+Inf")],
            4855.0,
            None
        )
    );
    // NaN is not equal to itself: check the canonical bits instead.
    assert_eq!(e.samples[9].name, "go_sched_latencies_seconds_sum");
    assert_eq!(e.samples[9].value.to_bits(), NORMAL_NAN_BITS);
    assert_eq!(
        e.samples[11],
        s(
            "node_cpu_seconds_total",
            &[("cpu", "0"), ("mode", "idle")],
            171628.63,
            None
        )
    );
    assert_eq!(
        e.samples[13],
        s(
            "node_filesystem_avail_bytes",
            &[
                ("device", "/dev/sda1"),
                ("fstype", "ext4"),
                ("mountpoint", "/")
            ],
            4.2151542784e10,
            None
        )
    );
    assert_eq!(
        e.samples[14].labels[5],
        (
            "version".to_owned(),
            "#45-Ubuntu SMP PREEMPT_DYNAMIC Fri Aug 30 12:02:04 UTC 2024".to_owned()
        )
    );
    assert_eq!(
        e.samples[15],
        s(
            "node_textfile_backup_status",
            &[
                ("job", "nightly, full"),
                ("cmd", "tar -czf \"/b/x.tgz\" a=b"),
                ("note", "line1\nline2 } {#"),
                ("path", "C:\\dir\\n"),
            ],
            f64::NEG_INFINITY,
            Some(1_700_000_000_123)
        )
    );
    assert_eq!(e.samples[16], s("node_load1", &[], f64::INFINITY, None));

    assert_eq!(e.types.len(), 6);
    assert_eq!(e.types["go_gc_duration_seconds"], MetricType::Summary);
    assert_eq!(e.types["go_sched_latencies_seconds"], MetricType::Histogram);
    assert_eq!(e.types["node_cpu_seconds_total"], MetricType::Counter);
    assert_eq!(e.types["node_filesystem_avail_bytes"], MetricType::Gauge);
    assert_eq!(e.types["node_textfile_backup_status"], MetricType::Unknown);
    assert_eq!(e.help.len(), 6);
    assert_eq!(
        e.help["node_cpu_seconds_total"],
        "Seconds the CPUs spent in each mode."
    );
    // Prometheus text HELP resolves `\\` and `\n` only.
    assert_eq!(
        e.help["node_textfile_backup_status"],
        "Written by backup.sh: C:\\backups\nsecond line."
    );

    assert_eq!(e.type_of("go_gc_duration_seconds_sum"), MetricType::Summary);
    assert_eq!(
        e.type_of("go_sched_latencies_seconds_bucket"),
        MetricType::Histogram
    );
    assert_eq!(e.type_of("node_cpu_seconds_total"), MetricType::Counter);
    assert_eq!(e.type_of("node_load1"), MetricType::Unknown);
    // `_total` is no gauge suffix.
    assert_eq!(
        e.type_of("node_filesystem_avail_bytes_total"),
        MetricType::Unknown
    );
}

#[test]
fn prometheus_whitespace_crlf_trailing_comma_and_timestamps() {
    let body = "# TYPE\tm counter\r\n  m{a = \"1\" , b=\"2\",}\t\t7   1395066363000  \r\nm2{} 1e3\r\n\t\r\nm3 {c=\"x\"}2\r\n";
    let e = parse(body, Format::PrometheusText).unwrap();
    assert_eq!(
        e.samples,
        vec![
            s("m", &[("a", "1"), ("b", "2")], 7.0, Some(1_395_066_363_000)),
            s("m2", &[], 1000.0, None),
            s("m3", &[("c", "x")], 2.0, None),
        ]
    );
    assert_eq!(e.types["m"], MetricType::Counter);
}

#[test]
fn prometheus_missing_comma_between_labels_is_accepted_like_promparse() {
    let e = parse("m{a=\"1\"b=\"2\"} 3\n", Format::PrometheusText).unwrap();
    assert_eq!(
        e.samples,
        vec![s("m", &[("a", "1"), ("b", "2")], 3.0, None)]
    );
}

#[test]
fn comments_that_are_not_help_or_type_are_ignored_in_prometheus_text() {
    let body = "#HELP m not metadata\n# HELPER m no\n# TYPE\n#\n# some words\nm 1\n";
    let e = parse(body, Format::PrometheusText).unwrap();
    assert!(e.help.is_empty());
    assert!(e.types.is_empty());
    assert_eq!(e.samples, vec![s("m", &[], 1.0, None)]);
}

#[test]
fn help_without_text_is_empty() {
    let e = parse("# HELP m\n# HELP n  two spaces\n", Format::PrometheusText).unwrap();
    assert_eq!(e.help["m"], "");
    // Only the one separator after the name is dropped, as in promparse.go.
    assert_eq!(e.help["n"], " two spaces");
}

#[test]
fn quoted_utf8_names() {
    let body = concat!(
        "# HELP \"my.metric\" Dots.\n",
        "# TYPE \"my.metric\" gauge\n",
        "{\"my.metric\", \"my.label\"=\"x\", plain=\"y\"} 1\n",
        "{\"label.first\"=\"v\", \"my.metric\"} 2\n",
        "{\"only.name\"} 3\n",
        "legacy{\"quoted \\\"name\\\"\"=\"z\"} 4\n",
    );
    let e = parse(body, Format::PrometheusText).unwrap();
    assert_eq!(
        e.samples,
        vec![
            s("my.metric", &[("my.label", "x"), ("plain", "y")], 1.0, None),
            s("my.metric", &[("label.first", "v")], 2.0, None),
            s("only.name", &[], 3.0, None),
            s("legacy", &[("quoted \"name\"", "z")], 4.0, None),
        ]
    );
    assert_eq!(e.types["my.metric"], MetricType::Gauge);
    assert_eq!(e.help["my.metric"], "Dots.");

    // The same in OpenMetrics.
    let om = concat!(
        "# TYPE \"my.metric\" gauge\n",
        "{\"my.metric\",\"my.label\"=\"x\"} 1\n",
        "# EOF\n",
    );
    let e = parse(om, Format::OpenMetrics).unwrap();
    assert_eq!(
        e.samples,
        vec![s("my.metric", &[("my.label", "x")], 1.0, None)]
    );
}

#[test]
fn go_float_syntax() {
    for (text, want) in [
        ("0", 0.0),
        ("-0", -0.0),
        ("42", 42.0),
        ("+1.5", 1.5),
        ("-2.5e-3", -0.0025),
        ("1E6", 1e6),
        ("1e+06", 1e6),
        (".5", 0.5),
        ("5.", 5.0),
        ("Inf", f64::INFINITY),
        ("+Inf", f64::INFINITY),
        ("-Inf", f64::NEG_INFINITY),
        ("inf", f64::INFINITY),
        ("+INF", f64::INFINITY),
        ("-infinity", f64::NEG_INFINITY),
        ("Infinity", f64::INFINITY),
        ("1e-400", 0.0),
    ] {
        assert_eq!(parse_go_float(text), Some(want), "{text}");
    }
    for text in ["NaN", "nan", "NAN"] {
        assert_eq!(
            parse_go_float(text).map(f64::to_bits),
            Some(NORMAL_NAN_BITS),
            "{text}"
        );
    }
    for text in [
        "",
        "abc",
        "+",
        "-",
        ".",
        "e5",
        "1e",
        "1e+",
        "0x1p3",
        "0x10",
        "1_000",
        "1p3",
        "+NaN",
        "-nan",
        "infin",
        "Infinityy",
        "1e400",
        "-1e400",
        "1,5",
        " 1",
        "1 ",
    ] {
        assert_eq!(parse_go_float(text).map(f64::to_bits), None, "{text:?}");
    }
}

const OPENMETRICS: &str = r#"# TYPE acme_http_request_duration_seconds histogram
# UNIT acme_http_request_duration_seconds seconds
# HELP acme_http_request_duration_seconds Latency with \"quotes\", a \\ and a\nnewline.
acme_http_request_duration_seconds_bucket{le="0.1",path="/api/v1/items,list"} 8 1520879607.789 # {trace_id="KOO5S4vxi0o"} 0.067 1520879602.415
acme_http_request_duration_seconds_bucket{le="+Inf",path="/api/v1/items,list"} 17 1520879607.789 # {trace_id="oHg5SJYRHA0",span_id="x"} 9.8
acme_http_request_duration_seconds_sum{path="/api/v1/items,list"} 324.7893 1520879607.7894
acme_http_request_duration_seconds_count{path="/api/v1/items,list"} 17 1520879607.7896
acme_http_request_duration_seconds_created{path="/api/v1/items,list"} 1520430000.123
# TYPE acme_requests counter
# HELP acme_requests Requests served.
acme_requests_total{code="200",} 1027 # {} 1
acme_requests_created{code="200"} 1520430000
# TYPE acme_build info
acme_build_info{version="1.2.3"} 1
# TYPE acme_door stateset
acme_door{acme_door="open"} 1
acme_door{acme_door="closed"} 0
# TYPE acme_queue gaugehistogram
acme_queue_bucket{le="+Inf"} 3
acme_queue_gsum 1.5e1
acme_queue_gcount 3
# TYPE acme_temp gauge
acme_temp -1.5 -12.5
# TYPE acme_other unknown
acme_other NaN
# EOF
"#;

#[test]
fn openmetrics_body() {
    let e = parse(OPENMETRICS, Format::OpenMetrics).unwrap();
    let path = ("path", "/api/v1/items,list");
    let want = vec![
        s(
            "acme_http_request_duration_seconds_bucket",
            &[("le", "0.1"), path],
            8.0,
            Some(1_520_879_607_789),
        ),
        s(
            "acme_http_request_duration_seconds_bucket",
            &[("le", "+Inf"), path],
            17.0,
            Some(1_520_879_607_789),
        ),
        // 1520879607.7894 s rounds down, .7896 s up, to the nearest ms.
        s(
            "acme_http_request_duration_seconds_sum",
            &[path],
            324.7893,
            Some(1_520_879_607_789),
        ),
        s(
            "acme_http_request_duration_seconds_count",
            &[path],
            17.0,
            Some(1_520_879_607_790),
        ),
        s(
            "acme_http_request_duration_seconds_created",
            &[path],
            1_520_430_000.123,
            None,
        ),
        s("acme_requests_total", &[("code", "200")], 1027.0, None),
        s(
            "acme_requests_created",
            &[("code", "200")],
            1_520_430_000.0,
            None,
        ),
        s("acme_build_info", &[("version", "1.2.3")], 1.0, None),
        s("acme_door", &[("acme_door", "open")], 1.0, None),
        s("acme_door", &[("acme_door", "closed")], 0.0, None),
        s("acme_queue_bucket", &[("le", "+Inf")], 3.0, None),
        s("acme_queue_gsum", &[], 15.0, None),
        s("acme_queue_gcount", &[], 3.0, None),
        s("acme_temp", &[], -1.5, Some(-12_500)),
    ];
    assert_eq!(e.samples[..want.len()], want[..]);
    assert_eq!(e.samples.len(), want.len() + 1);
    assert_eq!(e.samples[want.len()].name, "acme_other");
    assert_eq!(e.samples[want.len()].value.to_bits(), NORMAL_NAN_BITS);

    let types: HashMap<&str, MetricType> = e.types.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        types,
        HashMap::from([
            ("acme_http_request_duration_seconds", MetricType::Histogram),
            ("acme_requests", MetricType::Counter),
            ("acme_build", MetricType::Info),
            ("acme_door", MetricType::StateSet),
            ("acme_queue", MetricType::GaugeHistogram),
            ("acme_temp", MetricType::Gauge),
            ("acme_other", MetricType::Unknown),
        ])
    );
    // OpenMetrics HELP also resolves `\"`.
    assert_eq!(
        e.help["acme_http_request_duration_seconds"],
        "Latency with \"quotes\", a \\ and a\nnewline."
    );
    assert_eq!(e.help["acme_requests"], "Requests served.");
    assert_eq!(e.help.len(), 2);

    assert_eq!(e.type_of("acme_requests_total"), MetricType::Counter);
    assert_eq!(e.type_of("acme_requests_created"), MetricType::Counter);
    assert_eq!(
        e.type_of("acme_http_request_duration_seconds_created"),
        MetricType::Histogram
    );
    assert_eq!(e.type_of("acme_build_info"), MetricType::Info);
    assert_eq!(e.type_of("acme_door"), MetricType::StateSet);
    assert_eq!(e.type_of("acme_queue_gsum"), MetricType::GaugeHistogram);
    assert_eq!(e.type_of("acme_queue_sum"), MetricType::Unknown);
}

#[test]
fn openmetrics_eof_without_final_newline_and_crlf() {
    let e = parse("a_total 1\n# EOF", Format::OpenMetrics).unwrap();
    assert_eq!(e.samples, vec![s("a_total", &[], 1.0, None)]);
    let e = parse("a 1 2.0005\r\n# EOF\r\n", Format::OpenMetrics).unwrap();
    assert_eq!(e.samples, vec![s("a", &[], 1.0, Some(2001))]);
    let e = parse("# EOF\n", Format::OpenMetrics).unwrap();
    assert!(e.samples.is_empty());
}

#[test]
fn openmetrics_missing_eof() {
    assert_eq!(
        om_err("# TYPE a counter\na_total 1\n"),
        (3, "missing \"# EOF\" at end of OpenMetrics body".to_owned())
    );
    assert_eq!(
        om_err("a_total 1"),
        (2, "missing \"# EOF\" at end of OpenMetrics body".to_owned())
    );
    assert_eq!(
        om_err(""),
        (1, "missing \"# EOF\" at end of OpenMetrics body".to_owned())
    );
    // The same bodies are fine as Prometheus text.
    assert!(parse("# TYPE a counter\na_total 1\n", Format::PrometheusText).is_ok());
    assert!(
        parse("", Format::PrometheusText)
            .unwrap()
            .samples
            .is_empty()
    );
}

#[test]
fn openmetrics_errors() {
    let cases: &[(&str, usize, &str)] = &[
        ("a 1\n# EOF\n\n", 3, "unexpected data after \"# EOF\""),
        ("a 1\n# EOF\nb 2\n", 3, "unexpected data after \"# EOF\""),
        (
            "a 1\n\nb 2\n# EOF\n",
            2,
            "blank line (not allowed in OpenMetrics)",
        ),
        (
            "a 1\n# just a comment\n# EOF\n",
            2,
            "invalid comment \"# just a comment\" (OpenMetrics allows only # HELP, # TYPE, # UNIT and # EOF)",
        ),
        (
            "a  1\n# EOF\n",
            1,
            "expected a single space before the value",
        ),
        ("a\t1\n# EOF\n", 1, "invalid metric name \"a\\t1\""),
        ("a 1 \n# EOF\n", 1, "unexpected trailing space"),
        (
            "a{x=\"1\", y=\"2\"} 1\n# EOF\n",
            1,
            "expected label name, found \" y=\\\"2\\\"} 1\"",
        ),
        (
            "a{x=\"1\"}1\n# EOF\n",
            1,
            "expected a space before the value, found \"1\"",
        ),
        ("a 1 1.5.5\n# EOF\n", 1, "invalid timestamp \"1.5.5\""),
        ("a 1 NaN\n# EOF\n", 1, "invalid timestamp \"NaN\""),
        ("a 1 +Inf\n# EOF\n", 1, "invalid timestamp \"+Inf\""),
        (
            "a 1 2 3\n# EOF\n",
            1,
            "unexpected text after timestamp: \" 3\"",
        ),
        (
            "# TYPE a untyped\n# EOF\n",
            1,
            "invalid metric type \"untyped\"",
        ),
        (
            "# HELP a\n# EOF\n",
            1,
            "expected a space and the help text after metric name \"a\"",
        ),
        (
            "a 1 # {x=\"1\"} abc\n# EOF\n",
            1,
            "invalid exemplar value \"abc\"",
        ),
        (
            "a 1 # {x=\"1\"}\n# EOF\n",
            1,
            "expected a space and a value after exemplar labels",
        ),
        (
            "a 1 # {x=\"1} 2\n# EOF\n",
            1,
            "unterminated label value for \"x\"",
        ),
        (
            "a 1 # {\"x\"} 2\n# EOF\n",
            1,
            "expected '=' after exemplar label name \"x\"",
        ),
        (
            "a 1 # {x=\"1\"} 2 3 4\n# EOF\n",
            1,
            "unexpected text after exemplar timestamp: \" 4\"",
        ),
    ];
    for (body, line, message) in cases {
        assert_eq!(
            om_err(body),
            (*line, (*message).to_owned()),
            "body {body:?}"
        );
    }
}

#[test]
fn malformed_prometheus_lines() {
    // Each bad line comes after two good ones, so it is line 3.
    let prefix = "# TYPE ok gauge\nok{a=\"1\"} 1\n";
    let cases: &[(&str, &str)] = &[
        ("1abc 1", "invalid metric name \"1abc\""),
        ("foo-bar 1", "invalid metric name \"foo-bar\""),
        ("foo{a=\"b} 1", "unterminated label value for \"a\""),
        ("foo abc", "invalid value \"abc\""),
        ("foo 1e999", "invalid value \"1e999\""),
        ("foo", "missing value"),
        ("foo{a=\"1\"}", "missing value"),
        ("foo{a=\"1\",a=\"2\"} 1", "duplicate label name \"a\""),
        ("foo{1a=\"x\"} 1", "invalid label name \"1a\""),
        ("foo{a-b=\"x\"} 1", "invalid label name \"a-b\""),
        ("foo{a=b} 1", "expected quoted label value for \"a\""),
        ("foo{a \"b\"} 1", "expected '=' after label name \"a\""),
        ("foo{,} 1", "expected label name, found \",} 1\""),
        (
            "foo{a=\"1\",,b=\"2\"} 1",
            "expected label name, found \",b=\\\"2\\\"} 1\"",
        ),
        ("foo{a=\"1\"", "unterminated label set (missing '}')"),
        ("foo{a=\"1\", ", "unterminated label set (missing '}')"),
        ("{a=\"1\"} 1", "missing metric name"),
        (
            "foo{\"bar\"} 1",
            "metric name set twice (second time as \"bar\")",
        ),
        (
            "foo{__name__=\"bar\"} 1",
            "label name \"__name__\" is reserved for the metric name",
        ),
        ("foo{\"\"=\"x\"} 1", "invalid label name \"\""),
        ("foo 1 12.5", "invalid timestamp \"12.5\""),
        ("foo 1 -5", "invalid timestamp \"-5\""),
        (
            "foo 1 99999999999999999999",
            "invalid timestamp \"99999999999999999999\"",
        ),
        ("foo 1 2 3", "unexpected text after timestamp: \"3\""),
        ("foo 1 # comment", "invalid timestamp \"#\""),
        ("# TYPE foo bogus", "invalid metric type \"bogus\""),
        ("# TYPE foo", "invalid metric type \"\""),
        (
            "# TYPE foo gaugehistogram",
            "invalid metric type \"gaugehistogram\"",
        ),
        ("# HELP 1foo text", "invalid metric name \"1foo\""),
        ("# HELP ", "expected metric name after HELP"),
        (
            "# TYPE \"foo counter",
            "unterminated quoted metric name after TYPE",
        ),
    ];
    for (line, message) in cases {
        let body = format!("{prefix}{line}\nok 2\n");
        assert_eq!(prom_err(&body), (3, (*message).to_owned()), "line {line:?}");
    }
}

#[test]
fn error_display_names_line() {
    let e = err("ok 1\nok 2\nbad{x=\"1} 3\n", Format::PrometheusText);
    assert_eq!(e.to_string(), "line 3: unterminated label value for \"x\"");
}

#[test]
fn unknown_escapes_are_kept_as_written() {
    let e = parse(r#"m{a="x\ty\\z\"\n"} 1"#, Format::PrometheusText).unwrap();
    assert_eq!(e.samples[0].labels[0].1, "x\\ty\\z\"\n");
    // A Prometheus text HELP keeps `\"` as written.
    let e = parse(r#"# HELP m say \"hi\"\\"#, Format::PrometheusText).unwrap();
    assert_eq!(e.help["m"], "say \\\"hi\\\"\\");
}

#[test]
fn format_from_content_type() {
    for ct in [
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        "application/openmetrics-text;version=0.0.1",
        "application/openmetrics-text",
        "  Application/OpenMetrics-Text; version=1.0.0",
    ] {
        assert_eq!(Format::from_content_type(ct), Format::OpenMetrics, "{ct}");
    }
    for ct in [
        "text/plain; version=0.0.4; charset=utf-8",
        "text/plain",
        "",
        "application/openmetrics-textual",
        "application/json",
    ] {
        assert_eq!(
            Format::from_content_type(ct),
            Format::PrometheusText,
            "{ct}"
        );
    }
}

#[test]
fn large_body() {
    let mut body = String::from("# HELP big A big family.\n# TYPE big counter\n");
    for i in 0..100_000 {
        body.push_str(&format!(
            "big{{instance=\"host-{i}:9100\",job=\"node\",le=\"0.{i}\"}} {i}.5 {}\n",
            1_700_000_000_000i64 + i
        ));
    }
    let e = parse(&body, Format::PrometheusText).unwrap();
    assert_eq!(e.samples.len(), 100_000);
    assert_eq!(
        e.samples[99_999],
        s(
            "big",
            &[
                ("instance", "host-99999:9100"),
                ("job", "node"),
                ("le", "0.99999")
            ],
            99_999.5,
            Some(1_700_000_099_999)
        )
    );
}
