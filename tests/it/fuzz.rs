//! A bounded fuzz pass in the test suite: whatever a network client sends (a PromQL query
//! and its parameters, a remote-write body, a JSON push body, a scraped exposition body,
//! an SQL statement) must give an answer or an error of the module's own type, never a
//! panic, an abort or a stack overflow.
//!
//! - PromQL: grammar-aware queries (and token soups) parsed, planned and run by
//!   `strata_promql::instant_query` / `range_query` on a small engine (a few series, half
//!   in Delta and half in the head), as the HTTP API runs them; fixed cases; extreme times,
//!   lookbacks and steps; and very deep queries, each run in a child process so that a
//!   stack overflow fails its test instead of aborting this binary.
//! - Remote write, JSON push, exposition: arbitrary bytes and mutated valid payloads
//!   through decoding and validation, and what validation keeps through the WAL's record
//!   format.
//! - SQL: token soups, generated statements and fixed nasty inputs planned (not run) in
//!   the engine's session, as Flight SQL plans them.
//!
//! `fuzz/` holds cargo-fuzz targets for the same paths (`fuzz/README.md`). An input that
//! once crashed something belongs in one of the fixed lists here. Proptest saves the seeds
//! of failing cases in `tests/proptest-regressions/fuzz.txt` and replays them first. More
//! cases: `STRATA_FUZZ_SCALE=10 cargo test --test it fuzz::`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use datafusion::prelude::SessionContext;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use prost::Message as _;
use strata_ingest::Ingester;
use strata_ingest::receive::remote_write::{
    Label, MetricMetadata, PbSample, TimeSeries, WriteRequest,
};
use strata_ingest::storage::DataDir;
use strata_promql::{PromqlError, QueryOptions};

/// The checks of the remote-write, JSON and exposition paths, one file with the fuzz
/// targets' (`fuzz/` is a crate of its own, outside the workspace).
#[path = "../../fuzz/src/ingest.rs"]
mod checks;

use checks::{NOW, T, snappy};

/// Prometheus's default lookback delta (ms).
const LOOKBACK: i64 = 300_000;

/// `cases` cases, times `STRATA_FUZZ_SCALE` (a number, default 1); shrinking bounded.
fn config(cases: u32) -> ProptestConfig {
    let scale = std::env::var("STRATA_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(1.0);
    ProptestConfig {
        cases: (f64::from(cases) * scale).ceil() as u32,
        max_shrink_iters: 512,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// The engine the queries run on.

/// The engine the queries run on, one file with the fuzz targets'.
#[path = "../../fuzz/src/fixture.rs"]
mod fixture;

/// [`fixture::open`] with the tables and the WAL in `dir`.
async fn open_in(
    dir: &std::path::Path,
    data: bool,
) -> (Arc<Ingester>, datafusion::prelude::SessionContext) {
    fixture::open(DataDir::Local(dir.join("data")), &dir.join("wal"), data).await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// One engine with the fixture's series, shared by the tests of this module.
struct Fixture {
    rt: tokio::runtime::Runtime,
    /// The PromQL session, as the HTTP API holds it.
    prom: SessionContext,
    /// The engine's session, as Flight SQL holds it.
    sql: SessionContext,
    _ingester: Arc<Ingester>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = runtime();
        // A static is never dropped: the directory is left in target/tmp, not in /tmp.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a directory");
        let (ingester, sql) = rt.block_on(open_in(dir.path(), true));
        let prom = strata_promql::prom_session(&sql);
        Fixture {
            rt,
            prom,
            sql,
            _ingester: ingester,
            _dir: dir,
        }
    })
}

fn query_options(lookback_ms: i64) -> QueryOptions {
    QueryOptions {
        lookback_delta_ms: lookback_ms,
        timeout: Some(Duration::from_secs(20)),
        ..QueryOptions::default()
    }
}

/// Runs `q` as the HTTP API does: an instant query at `t`, or with `range` a range query
/// over `(start, end, step)`. Passes on an answer or a `PromqlError` of a known type that
/// does not report a panic.
fn run_promql(q: &str, t: i64, range: Option<(i64, i64, i64)>, lookback_ms: i64) {
    let f = fixture();
    let opts = query_options(lookback_ms);
    let r = match range {
        None => {
            f.rt.block_on(strata_promql::instant_query(&f.prom, q, t, &opts))
                .map(|_| ())
        }
        Some((start, end, step)) => {
            f.rt.block_on(strata_promql::range_query(
                &f.prom, q, start, end, step, &opts,
            ))
            .map(|_| ())
        }
    };
    if let Err(e) = r {
        let msg = e.to_string();
        assert!(
            matches!(e.error_type(), "bad_data" | "execution" | "timeout"),
            "{}: unknown error type {}: {}",
            short(q),
            e.error_type(),
            short(&msg)
        );
        assert!(
            !msg.contains("panicked"),
            "{}: a panic reported as an error: {}",
            short(q),
            short(&msg)
        );
    }
}

/// Plans `sql` in `ctx` as Flight SQL does before running it (logical plan, then the
/// optimizer), without running it. Errors are fine; panics are not.
async fn plan_sql_in(ctx: &SessionContext, sql: &str) {
    let state = ctx.state();
    if let Ok(plan) = state.create_logical_plan(sql).await {
        let _ = state.optimize(&plan);
    }
}

fn plan_sql(sql: &str) {
    let f = fixture();
    f.rt.block_on(plan_sql_in(&f.sql, sql));
}

/// `s`, cut to 300 bytes for a failure message.
fn short(s: &str) -> String {
    if s.len() <= 300 {
        return s.to_string();
    }
    let mut end = 300;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs `run` on every case and fails naming every case that panicked, not only the first.
fn collect_panics<C: std::fmt::Debug>(cases: impl IntoIterator<Item = C>, run: impl Fn(&C)) {
    let cases: Vec<C> = cases.into_iter().collect();
    let mut failed = vec![];
    for c in &cases {
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(c))) {
            failed.push(format!(
                "{}: {}",
                short(&format!("{c:?}")),
                short(&panic_message(p.as_ref()))
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases panicked:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// PromQL: a grammar-aware strategy.

const METRICS: &[&str] = &[
    "http_requests_total",
    "temperature",
    "req_seconds_bucket",
    "req_seconds_count",
    "up",
    "info_metric",
    "missing_metric",
    "",
];
const LABELS: &[&str] = &[
    "job",
    "instance",
    "code",
    "le",
    "room",
    "__name__",
    "nope",
    "\"quoted.label\"",
];
const MATCH_OPS: &[&str] = &["=", "!=", "=~", "!~"];
/// Label values and regexes (quoted by [`quote`]).
const VALUES: &[&str] = &[
    "api", "a", "b", "200", "500", "0.5", "+Inf", "", "x", ".*", ".+", "a|b", "5..", "(", "[a-",
    "\\d+", "a{2,}", "(?i)API", "^api$",
];
/// String literals inserted as they are (escapes, other quotes, invalid ones).
const RAW_STRINGS: &[&str] = &[
    r#""\xff""#,
    r#""\u00e9""#,
    "'single'",
    "`raw\\n`",
    r#""\777""#,
    r#""\U0010FFFF""#,
    r#""\a\b\f\v""#,
    "\"é🦀\"",
    r#""\x""#,
];
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "0.5",
    "0.99",
    "-1",
    "100",
    "1e3",
    "0x1f",
    "017",
    "NaN",
    "Inf",
    "-Inf",
    "+Inf",
    "1e308",
    "-1e308",
    "1e-320",
    "9223372036854775807",
];
const MODIFIERS: &[&str] = &[
    "",
    "",
    "",
    "",
    " offset 5m",
    " offset -2m",
    " offset 1h",
    " @ 1700000000",
    " @ 1699999000.5",
    " @ start()",
    " @ end()",
    " offset 1m @ 1700000000",
    " @ 1700000000 offset 1m",
    " @ 0",
];
const RANGES: &[&str] = &["30s", "1m", "5m", "10m", "1h", "90s", "1m30s", "300", "0.5"];
const SUBQUERY_RANGES: &[&str] = &["1m", "5m", "10m", "30m"];
const SUBQUERY_STEPS: &[&str] = &["", "15s", "30s", "1m", "2m"];
const ARITHMETIC: &[&str] = &["+", "-", "*", "/", "%", "^", "atan2"];
const COMPARISONS: &[&str] = &["==", "!=", ">", "<", ">=", "<="];
/// Operators between two vectors.
const VECTOR_OPS: &[&str] = &[
    "+", "-", "*", "/", "%", "^", "atan2", "==", "!=", ">", "<=", "> bool", "== bool", "and", "or",
    "unless",
];
/// Operators between a vector and a scalar (`and` is an error there).
const SCALAR_VECTOR_OPS: &[&str] = &[
    "+", "-", "*", "/", "%", "^", "atan2", "==", "!=", ">", "<", ">=", "<=", "> bool", "and",
];
const MATCHING: &[&str] = &[
    "",
    "",
    "",
    " on(job)",
    " on(job, instance)",
    " ignoring(code)",
    " ignoring()",
    " on(instance) group_left",
    " ignoring(code) group_left(job)",
    " on() group_right",
    " on(le) group_right(code)",
];
const AGGREGATIONS: &[&str] = &[
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "group",
];
const PARAM_AGGREGATIONS: &[&str] = &[
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "limitk",
    "limit_ratio",
];
const GROUPINGS: &[&str] = &[
    "",
    "",
    " by (job)",
    " by (job, code)",
    " by ()",
    " without (instance)",
    " without ()",
    " by (__name__)",
    " by (\"quoted.label\")",
];
const RANGE_FUNCTIONS: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "changes",
    "resets",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "first_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "present_over_time",
    "absent_over_time",
    "mad_over_time",
    "ts_of_max_over_time",
];
const VECTOR_FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "ceil",
    "floor",
    "exp",
    "ln",
    "log2",
    "log10",
    "sqrt",
    "sgn",
    "sort",
    "sort_desc",
    "timestamp",
    "day_of_week",
    "days_in_month",
    "hour",
    "minute",
    "month",
    "year",
    "deg",
    "rad",
    "acos",
    "asinh",
    "atanh",
    "cos",
    "tanh",
    "round",
    "histogram_sum",
    "histogram_count",
    "histogram_avg",
];

fn strs(values: &'static [&'static str]) -> BoxedStrategy<String> {
    select(values).prop_map(|s| s.to_string()).boxed()
}

/// `s` as a double-quoted PromQL string.
fn quote(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn string_literal() -> BoxedStrategy<String> {
    prop_oneof![
        4 => strs(VALUES).prop_map(|v| quote(&v)),
        1 => proptest::string::string_regex("\\PC{0,8}")
            .expect("a valid regex")
            .prop_map(|v| quote(&v)),
        1 => strs(RAW_STRINGS),
    ]
    .boxed()
}

fn number() -> BoxedStrategy<String> {
    prop_oneof![
        4 => strs(NUMBERS),
        1 => any::<f64>().prop_map(|f| format!("{f:?}")),
        1 => (-1000i64..1000).prop_map(|i| i.to_string()),
    ]
    .boxed()
}

/// A vector selector without modifiers: a metric name and matchers.
fn selector() -> BoxedStrategy<String> {
    let matcher = (strs(LABELS), strs(MATCH_OPS), string_literal())
        .prop_map(|(label, op, value)| format!("{label}{op}{value}"));
    (
        strs(METRICS),
        prop::collection::vec(matcher, 0..3),
        any::<bool>(),
    )
        .prop_map(|(name, matchers, braces)| {
            if matchers.is_empty() && name.is_empty() {
                "{job=\"api\"}".to_string()
            } else if matchers.is_empty() && !braces {
                name
            } else {
                format!("{name}{{{}}}", matchers.join(", "))
            }
        })
        .boxed()
}

/// Strategies for PromQL expressions of each type, up to some depth.
struct Level {
    vector: BoxedStrategy<String>,
    scalar: BoxedStrategy<String>,
    matrix: BoxedStrategy<String>,
}

fn leaves() -> Level {
    Level {
        vector: (selector(), strs(MODIFIERS))
            .prop_map(|(s, m)| format!("{s}{m}"))
            .boxed(),
        scalar: prop_oneof![4 => number(), 1 => strs(&["time()", "pi()"])].boxed(),
        matrix: (selector(), strs(RANGES), strs(MODIFIERS))
            .prop_map(|(s, r, m)| format!("{s}[{r}]{m}"))
            .boxed(),
    }
}

/// Function calls with more than one argument, or arguments of several types.
fn calls(
    v: &BoxedStrategy<String>,
    s: &BoxedStrategy<String>,
    m: &BoxedStrategy<String>,
) -> BoxedStrategy<String> {
    prop_oneof![
        (v.clone(), s.clone(), s.clone()).prop_map(|(e, lo, hi)| format!("clamp({e}, {lo}, {hi})")),
        (
            strs(&["clamp_min", "clamp_max", "round"]),
            v.clone(),
            s.clone()
        )
            .prop_map(|(f, e, x)| format!("{f}({e}, {x})")),
        (s.clone(), v.clone()).prop_map(|(q, e)| format!("histogram_quantile({q}, {e})")),
        (s.clone(), s.clone(), v.clone())
            .prop_map(|(lo, hi, e)| format!("histogram_fraction({lo}, {hi}, {e})")),
        (
            v.clone(),
            string_literal(),
            string_literal(),
            string_literal(),
            string_literal()
        )
            .prop_map(|(e, dst, repl, src, re)| format!(
                "label_replace({e}, {dst}, {repl}, {src}, {re})"
            )),
        (
            v.clone(),
            string_literal(),
            string_literal(),
            prop::collection::vec(string_literal(), 0..3)
        )
            .prop_map(|(e, dst, sep, sources)| {
                let mut args = vec![e, dst, sep];
                args.extend(sources);
                format!("label_join({})", args.join(", "))
            }),
        (m.clone(), s.clone()).prop_map(|(e, x)| format!("predict_linear({e}, {x})")),
        (s.clone(), m.clone()).prop_map(|(q, e)| format!("quantile_over_time({q}, {e})")),
        s.clone().prop_map(|x| format!("vector({x})")),
        (
            strs(&["sort_by_label", "sort_by_label_desc"]),
            v.clone(),
            prop::collection::vec(string_literal(), 0..3)
        )
            .prop_map(|(f, e, labels)| {
                let mut args = vec![e];
                args.extend(labels);
                format!("{f}({})", args.join(", "))
            }),
    ]
    .boxed()
}

/// Expressions one level deeper than `l`'s.
fn deeper(l: &Level) -> Level {
    let (v, s, m) = (&l.vector, &l.scalar, &l.matrix);
    let vector = prop_oneof![
        6 => v.clone(),
        1 => v.clone().prop_map(|e| format!("({e})")),
        1 => v.clone().prop_map(|e| format!("-{e}")),
        3 => (v.clone(), strs(VECTOR_OPS), strs(MATCHING), v.clone())
            .prop_map(|(a, op, on, b)| format!("{a} {op}{on} {b}")),
        2 => (v.clone(), strs(SCALAR_VECTOR_OPS), s.clone(), any::<bool>()).prop_map(
            |(a, op, b, swap)| if swap {
                format!("{b} {op} {a}")
            } else {
                format!("{a} {op} {b}")
            }
        ),
        3 => (strs(AGGREGATIONS), strs(GROUPINGS), any::<bool>(), v.clone()).prop_map(
            |(f, by, before, e)| if before {
                format!("{f}{by} ({e})")
            } else {
                format!("{f} ({e}){by}")
            }
        ),
        2 => (
            strs(PARAM_AGGREGATIONS),
            s.clone(),
            string_literal(),
            strs(GROUPINGS),
            v.clone()
        )
            .prop_map(|(f, k, label, by, e)| {
                let param = if f == "count_values" { label } else { k };
                format!("{f}{by} ({param}, {e})")
            }),
        3 => (strs(RANGE_FUNCTIONS), m.clone()).prop_map(|(f, e)| format!("{f}({e})")),
        2 => (strs(VECTOR_FUNCTIONS), v.clone()).prop_map(|(f, e)| format!("{f}({e})")),
        3 => calls(v, s, m),
    ]
    .boxed();
    let scalar = prop_oneof![
        6 => s.clone(),
        1 => s.clone().prop_map(|e| format!("({e})")),
        1 => s.clone().prop_map(|e| format!("-{e}")),
        2 => (s.clone(), strs(ARITHMETIC), s.clone())
            .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        1 => (s.clone(), strs(COMPARISONS), s.clone())
            .prop_map(|(a, op, b)| format!("{a} {op} bool {b}")),
        2 => v.clone().prop_map(|e| format!("scalar({e})")),
    ]
    .boxed();
    let matrix = prop_oneof![
        4 => m.clone(),
        2 => (
            v.clone(),
            strs(SUBQUERY_RANGES),
            strs(SUBQUERY_STEPS),
            strs(MODIFIERS)
        )
            .prop_map(|(e, range, step, at)| format!("({e})[{range}:{step}]{at}")),
        1 => m.clone().prop_map(|e| format!("({e})")),
    ]
    .boxed();
    Level {
        vector,
        scalar,
        matrix,
    }
}

/// A PromQL query: mostly well typed, nested up to three levels above the leaves.
fn promql_query() -> BoxedStrategy<String> {
    let mut level = leaves();
    for _ in 0..3 {
        level = deeper(&level);
    }
    prop_oneof![
        6 => level.vector,
        2 => level.scalar,
        1 => level.matrix,
        1 => string_literal(),
    ]
    .boxed()
}

const PROMQL_TOKENS: &[&str] = &[
    "up",
    "http_requests_total",
    "temperature",
    "x",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    "=",
    "!=",
    "=~",
    "!~",
    "\"api\"",
    "\"(\"",
    "\"\"",
    "'a'",
    "`b`",
    "job",
    "le",
    "__name__",
    "5m",
    "1s",
    "1h",
    "1",
    "-1",
    "0.5",
    "1e308",
    "Inf",
    "NaN",
    "0x10",
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "==",
    ">",
    "<=",
    "bool",
    "and",
    "or",
    "unless",
    "atan2",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "by",
    "without",
    "sum",
    "avg",
    "count",
    "topk",
    "quantile",
    "count_values",
    "limitk",
    "rate",
    "irate",
    "histogram_quantile",
    "label_replace",
    "label_join",
    "absent",
    "scalar",
    "vector",
    "time()",
    "clamp",
    "round",
    "sort_by_label",
    "offset",
    "@",
    "start()",
    "end()",
    "#",
    "\n",
    "\\",
    "\"",
    "é",
    "{__name__=~\".+\"}",
];

/// Up to 24 tokens of `tokens`, joined with spaces or without.
fn token_soup(tokens: &'static [&'static str]) -> BoxedStrategy<String> {
    (prop::collection::vec(select(tokens), 0..24), any::<bool>())
        .prop_map(|(t, spaced)| t.join(if spaced { " " } else { "" }))
        .boxed()
}

proptest! {
    #![proptest_config(config(256))]

    /// Generated queries, instant and (a third of them) range, as the HTTP API runs them.
    #[test]
    fn promql_grammar(q in promql_query(), range in prop::bool::weighted(0.3)) {
        run_promql(&q, T, range.then_some((T - 600_000, T, 60_000)), LOOKBACK);
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn promql_token_soup(q in token_soup(PROMQL_TOKENS), range in prop::bool::weighted(0.3)) {
        run_promql(&q, T, range.then_some((T - 600_000, T, 60_000)), LOOKBACK);
    }
}

/// Fixed queries: syntax errors, edge cases of functions and operators. Add an input that
/// once crashed the server here.
const PROMQL_FIXED: &[&str] = &[
    "",
    " ",
    "(",
    ")",
    "{",
    "}",
    "up{",
    "up[",
    "up[5m",
    "up[5m:",
    "up[:1m]",
    "sum(",
    "1 +",
    "+",
    "-",
    "@",
    "offset",
    "# only a comment",
    "up{job=~\"(\"}",
    "up{job=~\"\\\\\"}",
    "{__name__=~\".*\"}",
    "{__name__=\"\"}",
    "up{}",
    "{job=\"\"}",
    "count_values(\"\", up)",
    "count_values(\"1bad\", up)",
    "topk(1e308, up)",
    "topk(-1, up)",
    "topk(NaN, up)",
    "bottomk(9223372036854775807, up)",
    "quantile(NaN, up)",
    "limit_ratio(2, up)",
    "limitk(1e20, up)",
    "label_replace(up, \"\", \"\", \"\", \"\")",
    "label_replace(up, \"dst\", \"$1$2$99${x}\", \"job\", \"(.*)\")",
    "label_replace(up, \"__name__\", \"x\", \"job\", \".*\")",
    "label_replace(up, \"dst\", \"x\", \"job\", \"a{1000}{1000}\")",
    "label_join(up, \"dst\", \",\")",
    "histogram_quantile(0.5, req_seconds_bucket)",
    "histogram_quantile(NaN, rate(req_seconds_bucket[5m]))",
    "histogram_quantile(-1, req_seconds_bucket)",
    "histogram_fraction(1, 0, req_seconds_bucket)",
    "up and on() group_left up",
    "up + on(job) group_left(instance) up",
    "up / ignoring(instance) group_right up",
    "http_requests_total + on() up",
    "absent(nonexistent{job=\"x\"})",
    "absent_over_time(nonexistent[5m])",
    "vector(time()) - vector(1)",
    "scalar(up)",
    "time() > bool 0",
    "up @ start()",
    "up @ end() offset 5m",
    "rate(up[5m:15s] @ 1700000000)",
    "max_over_time((up > 0)[30m:1m])",
    "max_over_time(max_over_time(up[5m:1m])[10m:1m])",
    "sort_by_label(up, \"instance\")",
    "info(up)",
    "round(up, 0)",
    "predict_linear(up[5m], 1e308)",
    "clamp(up, 1, 0)",
    "\"a string\"",
    "1",
    "-Inf",
    "0x1f",
    "1e-400",
];

#[test]
fn promql_fixed_cases() {
    collect_panics(PROMQL_FIXED.iter().copied(), |q| {
        run_promql(q, T, None, LOOKBACK);
        run_promql(q, T, Some((T - 600_000, T, 60_000)), LOOKBACK);
    });
}

/// Numbers where the grammar takes a duration (`up[300]` is 300 s): promql-parser 0.11
/// converts them with `Duration::from_secs_f64`, which panics on infinite, NaN, negative or
/// too large values.
#[test]
fn promql_numeric_durations() {
    collect_panics(
        [
            "up[Inf]",
            "up[NaN]",
            "up[1e20]",
            "up[1e400]",
            "up offset 1e300",
            "up offset -Inf",
            "max_over_time(up[5m:1e400])",
            "rate(up[0x7fffffffffffffff])",
        ],
        |q| run_promql(q, T, None, LOOKBACK),
    );
}

/// Queries for [`promql_extreme_parameters`].
const EXTREME_QUERIES: &[&str] = &[
    "up",
    "rate(http_requests_total[5m])",
    "sum by (job) (up)",
    "up[5m]",
    "max_over_time(up[10m:1m])",
    "1",
    "time()",
    "timestamp(up)",
    "up offset 1w",
    "up offset -1w",
    "up @ 1e15",
    "up @ -1e15",
    "rate(up[300000000y])",
    "up offset 300000000y",
];

/// One query for [`promql_extreme_parameters`]: text, time, range, lookback.
type ExtremeCase = (&'static str, i64, Option<(i64, i64, i64)>, i64);

/// Times, lookbacks and steps a client can send (`time`, `start`, `end`, `step`,
/// `lookback_delta`; `1e300` parses to `i64::MAX`).
#[test]
fn promql_extreme_parameters() {
    let time = |s: &str| strata_promql::parse_time_ms(s).expect("a time the API accepts");
    let duration =
        |s: &str| strata_promql::parse_duration_ms(s).expect("a duration the API accepts");
    let times = [
        i64::MIN,
        time("-9.2e15"),
        -1,
        0,
        T,
        time("9.2e15"),
        time("1e300"),
    ];
    let lookbacks = [
        0,
        -1,
        1,
        duration("9223372036854"),
        duration("-9223372036854"),
    ];
    let mut cases: Vec<ExtremeCase> = vec![];
    for &q in EXTREME_QUERIES {
        for t in times {
            cases.push((q, t, None, LOOKBACK));
        }
        for lookback in lookbacks {
            cases.push((q, T, None, lookback));
        }
    }
    let starts = [i64::MIN, -1, 0, T - 600_000];
    let ends = [T, time("9.2e15"), i64::MAX];
    let steps = [1, 60_000, duration("9223372036854"), i64::MAX];
    for q in ["up", "1", "sum(rate(http_requests_total[5m]))"] {
        for start in starts {
            for end in ends {
                for step in steps {
                    cases.push((q, T, Some((start, end, step)), LOOKBACK));
                }
            }
        }
    }
    collect_panics(cases, |(q, t, range, lookback)| {
        run_promql(q, *t, *range, *lookback);
    });
}

// ---------------------------------------------------------------------------------------
// Deep inputs, each in a child process: a stack overflow aborts the process it happens in.

/// The environment variable naming the case [`child_case`] runs.
const CHILD_CASE: &str = "STRATA_FUZZ_CHILD_CASE";

/// Runs [`child_case`] with `case` in a child process of this test binary; fails unless the
/// child ran it and passed.
fn in_child(case: &str) {
    let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "fuzz::child_case",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_CASE, case)
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "case {case}: the child process exited with {} (killed by a signal: a stack overflow \
         or an abort)\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        tail(&stdout),
        tail(&stderr)
    );
}

/// The last 30 lines of `s`.
fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Runs `f` on a thread with a 2 MiB stack, the size of the server's tokio worker threads.
fn on_worker_sized_stack(f: impl FnOnce() + Send + 'static) {
    let joined = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("a thread starts")
        .join();
    if let Err(p) = joined {
        std::panic::resume_unwind(p);
    }
}

/// `q` as an instant query on an empty engine: an answer, or `bad_data` naming a depth
/// limit.
fn child_promql(q: String) {
    on_worker_sized_stack(move || {
        let rt = runtime();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (_ingester, ctx) = rt.block_on(open_in(dir.path(), false));
        let prom = strata_promql::prom_session(&ctx);
        let opts = QueryOptions {
            timeout: Some(Duration::from_secs(120)),
            ..QueryOptions::default()
        };
        match rt.block_on(strata_promql::instant_query(&prom, &q, T, &opts)) {
            Ok(_) => {}
            Err(PromqlError::BadData(m)) if m.contains("depth") || m.contains("nested") => {}
            Err(e) => panic!(
                "neither an answer nor a depth limit: {} {}",
                e.error_type(),
                short(&e.to_string())
            ),
        }
    });
}

/// `WITH t0 AS (...), t1 AS (SELECT x FROM t0), ...` with `n` links, and a query of the last.
fn chained_ctes(n: usize) -> String {
    let mut sql = "WITH t0 AS (SELECT 1 AS x)".to_string();
    for i in 1..=n {
        sql.push_str(&format!(", t{i} AS (SELECT x FROM t{})", i - 1));
    }
    sql.push_str(&format!(" SELECT * FROM t{n}"));
    sql
}

/// Deeply nested SQL, planned on an empty engine: an error is fine, a crash is not.
fn child_sql() {
    let n = 5_000;
    let cases: Vec<(&str, String)> = vec![
        (
            "parentheses",
            format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
        ),
        ("sum chain", format!("SELECT 1{}", " + 1".repeat(n))),
        // At the limit Flight SQL takes (the SELECT and 999 `+`): it must plan.
        (
            "sum chain at the limit",
            format!(
                "SELECT 1{}",
                " + 1".repeat(strata_flight::MAX_SQL_OPERATORS - 1)
            ),
        ),
        (
            "AND chain at the limit",
            format!(
                "SELECT true{}",
                " AND true".repeat(strata_flight::MAX_SQL_OPERATORS - 1)
            ),
        ),
        ("unary minus", format!("SELECT {}1", "- ".repeat(n))),
        ("NOT chain", format!("SELECT {}true", "NOT ".repeat(n))),
        (
            "AND chain",
            format!(
                "SELECT * FROM metrics WHERE value <> 0{}",
                " AND value <> 1".repeat(n)
            ),
        ),
        (
            "nested CASE",
            format!(
                "SELECT {}1{}",
                "CASE WHEN true THEN ".repeat(n),
                " END".repeat(n)
            ),
        ),
        (
            "nested subqueries",
            format!(
                "SELECT * FROM {}metrics{}",
                "(SELECT * FROM ".repeat(n),
                ") AS t".repeat(n)
            ),
        ),
        ("chained CTEs", chained_ctes(1_000)),
        (
            "deep PromQL in promql_instant",
            "SELECT * FROM promql_instant(repeat('(', 10000) || 'up' || repeat(')', 10000), 0)"
                .to_string(),
        ),
    ];
    on_worker_sized_stack(move || {
        let rt = runtime();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (_ingester, ctx) = rt.block_on(open_in(dir.path(), false));
        for (name, sql) in &cases {
            println!("planning {name} ({} bytes)", sql.len());
            // As Flight SQL does: statements past its size check are refused unplanned.
            if strata_flight::check_sql_size(sql).is_ok() {
                rt.block_on(plan_sql_in(&ctx, sql));
            }
        }
    });
}

/// The body of the deep-input tests, run in a child process by [`in_child`] (and a no-op
/// otherwise).
#[test]
#[ignore = "run in a child process by the deep-input tests"]
fn child_case() {
    let Ok(case) = std::env::var(CHILD_CASE) else {
        return;
    };
    let n = 10_000;
    match case.as_str() {
        "promql_parentheses" => child_promql(format!("{}up{}", "(".repeat(n), ")".repeat(n))),
        "promql_unary_minus" => child_promql(format!("{}1", "-".repeat(n))),
        "promql_binary_chain" => child_promql(format!("x{}", " + x".repeat(4_999))),
        "sql" => child_sql(),
        other => panic!("unknown case {other:?}"),
    }
}

#[test]
fn deep_promql_parentheses() {
    in_child("promql_parentheses");
}

#[test]
fn deep_promql_unary_minus() {
    in_child("promql_unary_minus");
}

#[test]
fn deep_promql_binary_chain() {
    in_child("promql_binary_chain");
}

#[test]
fn deep_sql() {
    in_child("sql");
}

// ---------------------------------------------------------------------------------------
// Remote write, JSON push, exposition.

/// Up to `max` arbitrary bytes.
fn any_bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max).boxed()
}

/// One of `seeds` with up to 6 edits: a byte replaced, inserted or removed, a cut, or one
/// of `tokens` inserted.
fn mutated(seeds: Vec<Vec<u8>>, tokens: &'static [&'static [u8]]) -> BoxedStrategy<Vec<u8>> {
    let edit = (0u8..5, any::<Index>(), any::<u8>(), any::<Index>());
    (select(seeds), prop::collection::vec(edit, 0..6))
        .prop_map(move |(mut data, edits)| {
            for (kind, at, byte, token) in edits {
                let n = data.len();
                match kind {
                    0 if n > 0 => data[at.index(n)] = byte,
                    1 => data.insert(at.index(n + 1), byte),
                    2 if n > 0 => {
                        data.remove(at.index(n));
                    }
                    3 => data.truncate(at.index(n + 1)),
                    4 if !tokens.is_empty() => {
                        let tail = data.split_off(at.index(n + 1));
                        data.extend_from_slice(tokens[token.index(tokens.len())]);
                        data.extend_from_slice(&tail);
                    }
                    _ => {}
                }
            }
            data
        })
        .boxed()
}

fn pb_label(name: &[u8], value: &[u8]) -> Label {
    Label {
        name: bytes::Bytes::copy_from_slice(name),
        value: bytes::Bytes::copy_from_slice(value),
    }
}

fn pb_series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| pb_label(n.as_bytes(), v.as_bytes()))
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| PbSample { value, timestamp })
            .collect(),
    }
}

/// Uncompressed protobuf `WriteRequest`s: valid series, series validation rejects, and
/// fields Strata skips.
fn remote_write_seeds() -> Vec<Vec<u8>> {
    let good = WriteRequest {
        timeseries: vec![
            pb_series(
                &[("__name__", "up"), ("job", "api"), ("instance", "a")],
                &[(T, 1.0), (T + 15_000, 0.0)],
            ),
            pb_series(
                &[
                    ("job", "api"),
                    ("__name__", "http_requests_total"),
                    ("code", "200"),
                ],
                &[(T, 10.0), (T - 1, f64::NAN)],
            ),
        ],
        metadata: vec![MetricMetadata {
            r#type: 1,
            metric_family_name: "http_requests_total".into(),
            help: "Requests.".into(),
            unit: String::new(),
        }],
    };
    let names: Vec<String> = (0..31).map(|i| format!("l{i}")).collect();
    let mut many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    many.push(("__name__", "many"));
    let long = "x".repeat(2049);
    let mut bad = WriteRequest {
        timeseries: vec![
            pb_series(&[("__name__", "bad name")], &[(T, 1.0)]),
            pb_series(&[("__name__", "dup"), ("a", "1"), ("a", "2")], &[(T, 1.0)]),
            pb_series(&[("__name__", "empty"), ("x", "")], &[(T, 1.0)]),
            pb_series(&[("__name__", ""), ("__name__", "twice")], &[(T, 1.0)]),
            pb_series(&[("job", "no_name")], &[(T, 1.0)]),
            pb_series(
                &[("__name__", "future")],
                &[(i64::MAX, 1.0), (i64::MIN, -0.0)],
            ),
            pb_series(
                &[("__name__", "stale")],
                &[(T, strata_ingest::model::stale_nan())],
            ),
            pb_series(&[("__name__", "no_samples")], &[]),
            pb_series(&[("__name__", "long"), ("v", long.as_str())], &[(T, 1.0)]),
            pb_series(&many, &[(T, 1.0)]),
        ],
        metadata: vec![],
    };
    bad.timeseries.push(TimeSeries {
        labels: vec![
            pb_label(b"__name__", b"utf8"),
            pb_label(b"job", b"\xff\xfe"),
        ],
        samples: vec![PbSample {
            value: 1.0,
            timestamp: T,
        }],
    });
    // Fields Strata skips: an exemplar-like field 3, a varint field 9 and an empty native
    // histogram (field 4) in a series; a fixed32 field 7 at the top level.
    let mut extra = good.encode_to_vec();
    let mut ts = pb_series(&[("__name__", "extra")], &[(T, 2.0)]).encode_to_vec();
    ts.extend_from_slice(&[0x1a, 0x02, 0x08, 0x01, 0x48, 0x05, 0x22, 0x00]);
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut extra);
    prost::encoding::encode_varint(ts.len() as u64, &mut extra);
    extra.extend_from_slice(&ts);
    extra.extend_from_slice(&[0x3d, 1, 2, 3, 4]);
    vec![good.encode_to_vec(), bad.encode_to_vec(), extra, vec![]]
}

const PROTOBUF_TOKENS: &[&[u8]] = &[
    b"\x0a",
    b"\x12",
    b"\x1a",
    b"\x22",
    b"\x08",
    b"\x09",
    b"\x10",
    b"\x3d",
    b"\x80",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    b"\x0a\x00",
    b"\x0a\x7f",
    b"\x12\x08__name__",
];

fn remote_write_v2_body() -> BoxedStrategy<Vec<u8>> {
    let raw = remote_write_v2_seeds();
    prop_oneof![
        4 => mutated(raw, PROTOBUF_TOKENS).prop_map(|r| snappy(&r)),
        1 => any_bytes(256).prop_map(|r| snappy(&r)),
    ]
    .boxed()
}

fn remote_write_body() -> BoxedStrategy<Vec<u8>> {
    let raw = remote_write_seeds();
    let compressed: Vec<Vec<u8>> = raw.iter().map(|r| snappy(r)).collect();
    prop_oneof![
        3 => mutated(raw, PROTOBUF_TOKENS).prop_map(|r| snappy(&r)),
        1 => mutated(compressed, &[]),
        1 => any_bytes(256),
        1 => any_bytes(256).prop_map(|r| snappy(&r)),
    ]
    .boxed()
}

/// Uncompressed remote write 2.0 requests: float series with metadata and exemplars,
/// integer, float and custom-bucket native histograms, a stale one, and series translation
/// rejects (references outside the table, odd references, samples with histograms, bad
/// spans, an unknown schema).
fn remote_write_v2_seeds() -> Vec<Vec<u8>> {
    use strata_ingest::receive::remote_write::v2::{
        BucketSpan, Count, Exemplar, Histogram, Metadata, Request, TimeSeries as V2Series,
        ZeroCount,
    };
    let span = |offset, length| BucketSpan { offset, length };
    let h = Histogram {
        count: Some(Count::CountInt(9)),
        sum: 12.5,
        schema: 3,
        zero_threshold: 0.001,
        zero_count: Some(ZeroCount::ZeroCountInt(2)),
        negative_spans: vec![span(-2, 1)],
        negative_deltas: vec![1],
        positive_spans: vec![span(0, 2), span(5, 1)],
        positive_deltas: vec![1, 2, -1],
        timestamp: T,
        ..Default::default()
    };
    let float = Histogram {
        count: Some(Count::CountFloat(9.0)),
        zero_count: Some(ZeroCount::ZeroCountFloat(2.0)),
        negative_deltas: vec![],
        negative_counts: vec![1.0],
        positive_deltas: vec![],
        positive_counts: vec![1.0, 3.0, 2.0],
        schema: -4,
        ..h.clone()
    };
    let custom = Histogram {
        schema: -53,
        custom_values: vec![0.1, 0.5],
        positive_spans: vec![span(0, 3)],
        positive_deltas: vec![1, 1, 0],
        ..h.clone()
    };
    let stale = Histogram {
        sum: strata_ingest::model::stale_nan(),
        ..h.clone()
    };
    let bad = Histogram {
        schema: 9,
        ..h.clone()
    };
    let sample = |v| PbSample {
        value: v,
        timestamp: T,
    };
    let series = |refs: Vec<u32>, samples: Vec<PbSample>, histograms: Vec<Histogram>| V2Series {
        labels_refs: refs,
        samples,
        histograms,
        exemplars: vec![Exemplar {
            labels_refs: vec![7, 8],
            value: 0.5,
            timestamp: T,
        }],
        metadata: Some(Metadata {
            r#type: 3,
            help_ref: 6,
            unit_ref: 0,
        }),
        created_timestamp: T - 1000,
    };
    let req = Request {
        symbols: [
            "",
            "__name__",
            "rpc_seconds",
            "job",
            "api",
            "c_total",
            "Help.",
            "trace_id",
            "x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        timeseries: vec![
            series(vec![1, 5, 3, 4], vec![sample(1.0), sample(2.0)], vec![]),
            series(
                vec![1, 2, 3, 4],
                vec![],
                vec![h.clone(), float, custom, stale],
            ),
            series(vec![1, 2], vec![], vec![bad]),
            series(vec![1, 99], vec![sample(1.0)], vec![]),
            series(vec![1, 2, 3], vec![sample(1.0)], vec![]),
            series(vec![1, 2], vec![sample(1.0)], vec![h]),
        ],
    };
    vec![req.encode_to_vec(), Request::default().encode_to_vec()]
}

const JSON_SEEDS: &[&str] = &[
    r#"[{"metric":"temp","tags":{"room":"a"},"timestamp":1700000000.5,"value":21.5}]"#,
    r#"[{"metric":"bad name","timestamp":1,"value":1},{"metric":"x","tags":{"__name__":"y"},"timestamp":1,"value":2}]"#,
    r#"[{"metric":"big","timestamp":1e300,"value":-1e308},{"metric":"neg","timestamp":-1e15,"value":0}]"#,
    r#"[{"metric":"t","tags":{"a":"","b":"\u00e9\n","c-d":"x"},"timestamp":1700000000,"value":1}]"#,
    r#"[{"metric":"t","timestamp":1,"value":1,"extra":true}]"#,
    "[]",
    "{}",
];

const JSON_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\"metric\"",
    b"\"tags\"",
    b"\"timestamp\"",
    b"\"value\"",
    b"\"__name__\"",
    b"1e309",
    b"-1e309",
    b"NaN",
    b"null",
    b"true",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"9223372036854775807",
    b"1.7e305",
    b"\"a b\"",
    b"{\"a\":\"b\"}",
    b"\\",
    b"\xff",
];

fn json_body() -> BoxedStrategy<Vec<u8>> {
    let seeds: Vec<Vec<u8>> = JSON_SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    prop_oneof![4 => mutated(seeds, JSON_TOKENS), 1 => any_bytes(128)].boxed()
}

const EXPOSITION_SEEDS: &[&str] = &[
    "# HELP http_requests_total The total number of HTTP requests.\n\
     # TYPE http_requests_total counter\n\
     http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
     http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
     msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
     metric_without_timestamp_and_labels 12.47\n\
     something_weird{problem=\"division by zero\"} +Inf -3982045\n\
     # TYPE http_request_duration_seconds histogram\n\
     http_request_duration_seconds_bucket{le=\"0.05\"} 24054\n\
     http_request_duration_seconds_bucket{le=\"+Inf\"} 144320\n\
     http_request_duration_seconds_sum 53423\n\
     http_request_duration_seconds_count 144320\n\
     # TYPE rpc_duration_seconds summary\n\
     rpc_duration_seconds{quantile=\"0.5\"} 4773\n\
     rpc_duration_seconds_sum 1.7560473e+07\n\
     {\"my.metric\", \"my.label\"=\"x\",} NaN\n",
    "# TYPE acme_http_router_request_seconds summary\n\
     # UNIT acme_http_router_request_seconds seconds\n\
     # HELP acme_http_router_request_seconds Latency through ACME's router.\n\
     acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32\n\
     acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0\n\
     acme_http_router_request_seconds_created{path=\"/api/v1\",method=\"GET\"} 1605281325.0\n\
     # TYPE foo histogram\n\
     foo_bucket{le=\"0.01\"} 0\n\
     foo_bucket{le=\"+Inf\"} 17 # {trace_id=\"KOO5S4vxi0o\"} 0.67 1520879607.789\n\
     foo_count 17\n\
     foo_sum 324789.3\n\
     foo_created 1520430000.123\n\
     # TYPE bar info\n\
     bar_info{version=\"1.0\"} 1\n\
     # EOF\n",
    "a 1\r\nb{c=\"d\"} 2 3\r\n",
    "",
];

const EXPOSITION_TOKENS: &[&[u8]] = &[
    b"\n",
    b"#",
    b" ",
    b"\t",
    b"{",
    b"}",
    b"\"",
    b"=",
    b",",
    b"\\",
    b"# EOF\n",
    b"# TYPE x counter\n",
    b"# HELP ",
    b"# UNIT ",
    b"le=\"",
    b"quantile=\"",
    b"NaN",
    b"+Inf",
    b"-Inf",
    b"1e309",
    b"\r\n",
    b"\xc3\xa9",
    b"\xff",
    b"_total",
    b"_bucket",
    b"_created",
    b"{\"a.b\"}",
    b" 1 ",
    b" # {trace_id=\"a\"} 1 1",
    b"9223372036854775807",
    b"-9223372036854775809",
    b"0x1p3",
    b"1_000",
];

/// Valid line protocol to mutate: every field type, escapes, precisions' extremes.
const INFLUX_SEEDS: &[&str] = &[
    "cpu,host=a,region=west usage_user=1.5,usage_system=2i 1700000000000000000\n",
    "m v=1u,b=true,c=F,s=\"text\" 1\nm2 v=-1e308\n",
    "my\\ meas\\,ure,tag\\ k\\,1=v\\=1 f\\ k=1 -9223372036854775808\n",
    "# comment\n\nm,db=x v=\"42\" 9223372036854775807\n",
    "m,a=1,b=2 v=18446744073709551615u,w=9223372036854775807i\r\n",
];

/// Line protocol's special bytes and values.
const INFLUX_TOKENS: &[&[u8]] = &[
    b" ",
    b",",
    b"=",
    b"\\",
    b"\"",
    b"\n",
    b"#",
    b"i",
    b"u",
    b"t",
    b"FALSE",
    b"1e309",
    b"NaN",
    b"-",
    b"\xff",
    b"\xc3\xa9",
    b"99999999999999999999",
    b"\\ ",
];

fn influx_body() -> BoxedStrategy<Vec<u8>> {
    let seeds: Vec<Vec<u8>> = INFLUX_SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    prop_oneof![4 => mutated(seeds, INFLUX_TOKENS), 1 => any_bytes(256)].boxed()
}

/// An OTLP protobuf request with every point type.
fn otlp_protobuf_seeds() -> Vec<Vec<u8>> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::*;
    use prost::Message;
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let t = 1_700_000_000_000_000_000u64;
    let number = NumberDataPoint {
        attributes: vec![
            kv("a.b", any_value::Value::StringValue("x".into())),
            kv("1", any_value::Value::IntValue(2)),
        ],
        start_time_unix_nano: t - 1_000_000_000,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(1.5)),
        ..Default::default()
    };
    let metrics = vec![
        Metric {
            name: "g.x".into(),
            unit: "1".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![number.clone()],
            })),
            ..Default::default()
        },
        Metric {
            name: "s".into(),
            unit: "By/s".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![number.clone()],
                aggregation_temporality: 1,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        Metric {
            name: "h".into(),
            unit: "ms".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    time_unix_nano: t,
                    count: 3,
                    sum: Some(2.0),
                    bucket_counts: vec![1, 2],
                    explicit_bounds: vec![1.0],
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        },
        Metric {
            name: "e".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    time_unix_nano: t,
                    count: 3,
                    scale: 20,
                    zero_count: 1,
                    positive: Some(exponential_histogram_data_point::Buckets {
                        offset: -5,
                        bucket_counts: vec![1, 1],
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            })),
            ..Default::default()
        },
        Metric {
            name: "q".into(),
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: t,
                    count: 1,
                    sum: 1.0,
                    quantile_values: vec![summary_data_point::ValueAtQuantile {
                        quantile: 0.5,
                        value: 1.0,
                    }],
                    flags: 1,
                    ..Default::default()
                }],
            })),
            ..Default::default()
        },
    ];
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: vec![
                    kv("service.name", any_value::Value::StringValue("svc".into())),
                    kv("host.name", any_value::Value::BoolValue(true)),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    vec![req.encode_to_vec()]
}

const OTLP_JSON_SEEDS: &[&str] = &[
    r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"s"}}]},"scopeMetrics":[{"metrics":[{"name":"t","unit":"Cel","gauge":{"dataPoints":[{"timeUnixNano":"1700000000000000000","asDouble":21.5}]}},{"name":"c","sum":{"aggregationTemporality":1,"isMonotonic":true,"dataPoints":[{"startTimeUnixNano":"1","timeUnixNano":"2","asInt":"3"}]}}]}]}]}"#,
    r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"e","exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[{"timeUnixNano":1,"count":"2","scale":-10,"zeroCount":"1","negative":{"offset":-2147483648,"bucketCounts":["1"]}}]}}]}]}]}"#,
    "{}",
];

fn otlp_body() -> BoxedStrategy<Vec<u8>> {
    let json: Vec<Vec<u8>> = OTLP_JSON_SEEDS
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    prop_oneof![
        2 => mutated(otlp_protobuf_seeds(), PROTOBUF_TOKENS),
        2 => mutated(json, JSON_TOKENS),
        1 => any_bytes(256),
    ]
    .boxed()
}

const STATSD_SEEDS: &[&str] = &[
    "page.views:1|c\napi.latency:12.5:7|ms|@0.5|#env:prod,region:eu,flag|c:abc\n",
    "temp:10|g\ntemp:+3|g\ntemp:-1|g|T1700000000\nusers:alice|s\nsize:1:2:3|d|#a:b,a:c",
    "hits:2|c|T1700000000\nhits:3|c|T1700000000\n_e{5,4}:title|text\n1bad.name-x:4|h",
];

const STATSD_TOKENS: &[&[u8]] = &[
    b":",
    b"|",
    b"|c",
    b"|g",
    b"|ms",
    b"|h",
    b"|d",
    b"|s",
    b"@0.1",
    b"@0",
    b"#",
    b",",
    b"c:",
    b"T",
    b"\n",
    b"\r\n",
    b"+",
    b"-",
    b"NaN",
    b"+Inf",
    b"1e308",
    b"-0",
    b"\xff",
    b"__name__:x",
];

fn statsd_packet() -> BoxedStrategy<Vec<u8>> {
    let seeds: Vec<Vec<u8>> = STATSD_SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    prop_oneof![4 => mutated(seeds, STATSD_TOKENS), 1 => any_bytes(256)].boxed()
}

/// Rule groups as Mimir's ruler API receives them: valid ones, then mutated.
const RULE_GROUP_SEEDS: &[&str] = &[
    "name: g\ninterval: 1m\nrules:\n  - record: job:up:sum\n    expr: sum by (job) (up)\n",
    "name: g\nrules:\n  - alert: Down\n    expr: up == 0\n    for: 5m\n    labels: {severity: page}\n    annotations:\n      summary: \"{{ $labels.instance }} is {{ $value | humanizeDuration }}\"\n",
    "name: g\nlimit: 3\nquery_offset: 10s\nlabels: {team: a}\nrules:\n  - alert: A\n    expr: rate(x[5m]) > 1\n    keep_firing_for: 1h\n    annotations: {d: \"{{ range $k, $v := $labels }}{{ $k }}={{ $v }}{{ end }}\"}\n",
];

const RULE_GROUP_TOKENS: &[&[u8]] = &[
    b"{{",
    b"}}",
    b"{{ $labels.",
    b"{{ $value }}",
    b"{{ humanize ",
    b"{{ reReplaceAll \"(\" \"\" \"x\" }}",
    b"{{ template \"x\" }}",
    b"{{ define \"x\" }}{{ end }}",
    b"{{ printf \"%*d\" 1 }}",
    b"| ",
    b": ",
    b"\n  - ",
    b"&a ",
    b"*a",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\"",
    b"'",
    b"for: ",
    b"1y",
    b"-1s",
    b"expr: ",
    b"sum(",
    b")",
    b"record: ",
    b"alert: ",
    b"\xff",
    b"!!binary ",
    b"~",
];

fn rule_group_body() -> BoxedStrategy<Vec<u8>> {
    let seeds: Vec<Vec<u8>> = RULE_GROUP_SEEDS
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    prop_oneof![4 => mutated(seeds, RULE_GROUP_TOKENS), 1 => any_bytes(256)].boxed()
}

fn exposition_body() -> BoxedStrategy<Vec<u8>> {
    let seeds: Vec<Vec<u8>> = EXPOSITION_SEEDS
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    prop_oneof![4 => mutated(seeds, EXPOSITION_TOKENS), 1 => any_bytes(256)].boxed()
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn remote_write_bodies(body in remote_write_body()) {
        checks::remote_write(&body);
    }

    #[test]
    fn remote_write_v2_bodies(body in remote_write_v2_body()) {
        checks::remote_write_v2(&body);
    }

    #[test]
    fn json_push_bodies(body in json_body()) {
        checks::json_push(&body);
    }

    #[test]
    fn influx_bodies(body in influx_body()) {
        checks::influx(&body);
    }

    #[test]
    fn otlp_bodies(body in otlp_body()) {
        checks::otlp(&body);
    }

    #[test]
    fn statsd_packets(packet in statsd_packet()) {
        checks::statsd(&packet);
    }

    /// The ruler API reads bodies as UTF-8 (others are refused before parsing).
    #[test]
    fn rule_group_bodies(body in rule_group_body()) {
        checks::rule_group(&String::from_utf8_lossy(&body));
    }

    /// The scraper reads bodies as text, replacing invalid UTF-8 (`reqwest`'s `text()`).
    #[test]
    fn exposition_bodies(body in exposition_body()) {
        checks::exposition(&String::from_utf8_lossy(&body));
    }
}

/// A JSON point with `n` tags.
fn many_tags(n: usize) -> String {
    let mut tags = String::new();
    for i in 0..n {
        if i > 0 {
            tags.push(',');
        }
        tags.push_str(&format!("\"k{i}\":\"v\""));
    }
    format!("[{{\"metric\":\"x\",\"tags\":{{{tags}}},\"timestamp\":1,\"value\":1}}]")
}

/// An exposition line with `n` labels.
fn many_labels(n: usize) -> String {
    let mut line = "a{".to_string();
    for i in 0..n {
        line.push_str(&format!("l{i}=\"v\","));
    }
    line.push_str("} 1\n");
    line
}

#[test]
fn ingest_fixed_cases() {
    let seeds = remote_write_seeds();
    let mut bodies: Vec<Vec<u8>> = seeds.iter().map(|r| snappy(r)).collect();
    bodies.extend(seeds);
    // A snappy header claiming 4 GiB, and one claiming more than the limit.
    bodies.push(vec![0xff, 0xff, 0xff, 0xff, 0x0f]);
    bodies.push(vec![0x81, 0x80, 0x40]);
    // A series nested in a series nested in ...: protobuf lengths all the way down.
    let mut nested = b"\x0a\x08__name__\x12\x01x".to_vec();
    for _ in 0..1000 {
        let mut outer = vec![0x0a];
        prost::encoding::encode_varint(nested.len() as u64, &mut outer);
        outer.extend_from_slice(&nested);
        nested = outer;
    }
    bodies.push(snappy(&nested));
    collect_panics(bodies, |b| checks::remote_write(b));
    let json: Vec<Vec<u8>> = JSON_SEEDS
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .chain([
            format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            many_tags(1_000).into_bytes(),
            b"\xef\xbb\xbf[]".to_vec(),
        ])
        .collect();
    collect_panics(json, |b| checks::json_push(b));
    let mut text: Vec<String> = EXPOSITION_SEEDS.iter().map(|s| s.to_string()).collect();
    text.extend([
        many_labels(2_000),
        format!("a{{b=\"{}\"}} 1\n", "\\".repeat(10_001)),
        "# EOF".to_string(),
        "\n\n\n# EOF\n\n".to_string(),
        "a 1 9223372036854775807999\n".to_string(),
        "a 1 1e300\n# EOF\n".to_string(),
        "a{\"\"} 1\n".to_string(),
        "{\"a\"} 1\n".to_string(),
        "a{b=\"\u{0}\"} 1\n".to_string(),
    ]);
    collect_panics(text, |s| checks::exposition(s));
}

// ---------------------------------------------------------------------------------------
// SQL.

const SQL_TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "OFFSET",
    "HAVING",
    "JOIN",
    "LEFT JOIN",
    "ON",
    "AS",
    "UNION ALL",
    "WITH",
    "DISTINCT",
    "metrics",
    "samples",
    "series",
    "information_schema.tables",
    "value",
    "timestamp",
    "metric_name",
    "labels",
    "labels['job']",
    "series_id",
    "*",
    "count(*)",
    "sum(value)",
    "avg(",
    "max(",
    "(",
    ")",
    ",",
    "+",
    "-",
    "/",
    "%",
    "=",
    "<>",
    "<",
    ">",
    "AND",
    "OR",
    "NOT",
    "IN",
    "BETWEEN",
    "LIKE",
    "IS NULL",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "CAST(",
    "AS BIGINT",
    "::TEXT",
    "INTERVAL '1 hour'",
    "now()",
    "date_trunc('minute', timestamp)",
    "1",
    "0",
    "-1",
    "1.5",
    "1e308",
    "'a'",
    "''",
    "NULL",
    "true",
    "[1, 2]",
    "{'a': 1}",
    "promql_instant('up', 1700000000)",
    "promql_range('up', 0, 60, '1m')",
    "anomaly_range('up', 0, 60, '1m', 3, '1h', '2d')",
    "promql_instant(",
    "EXPLAIN",
    "EXPLAIN ANALYZE",
    "CREATE TABLE t AS",
    "CREATE VIEW v AS",
    "DROP TABLE metrics",
    "INSERT INTO samples VALUES",
    "COPY metrics TO '/nonexistent/x'",
    "SET datafusion.execution.batch_size = 1",
    "SHOW ALL",
    "unnest(",
    "array_agg(",
    "row_number() OVER (",
    "PARTITION BY",
    "regexp_match(metric_name, '(')",
    "arrow_cast(",
    "'Int8')",
    ";",
    "\"quoted ident\"",
    "x",
];

const SQL_LEAVES: &[&str] = &[
    "value",
    "timestamp",
    "metric_name",
    "labels['job']",
    "labels",
    "series_id",
    "1",
    "2.5",
    "-1",
    "'a'",
    "NULL",
    "now()",
    "true",
    "9223372036854775807",
    "1e308",
    "INTERVAL '1 day'",
];
const SQL_OPS: &[&str] = &[
    "+", "-", "*", "/", "%", "=", "<>", "<", ">=", "AND", "OR", "||", "LIKE",
];
const SQL_FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "abs",
    "sqrt",
    "upper",
    "length",
    "to_timestamp_millis",
    "array_agg",
    "coalesce",
    "date_bin(INTERVAL '1 minute', ",
];
const SQL_TYPES: &[&str] = &["BIGINT", "DOUBLE", "VARCHAR", "TIMESTAMP", "INT", "BOOLEAN"];
const SQL_TABLES: &[&str] = &[
    "metrics",
    "samples",
    "series",
    "strata.public.metrics",
    "information_schema.tables",
    "promql_instant('up', 1700000000)",
    "promql_instant('rate(http_requests_total[5m])', now())",
    "promql_range('sum(up)', 1699999000, 1700000000, '1m')",
    "anomaly_range('up', 1699999000, 1700000000, '1m')",
    "(SELECT 1 AS value, 2 AS timestamp)",
    "missing",
    "metrics m JOIN series s ON m.series_id = s.series_id",
    "unnest([1, 2]) AS t(value)",
];

fn sql_expr() -> BoxedStrategy<String> {
    strs(SQL_LEAVES)
        .prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                (inner.clone(), strs(SQL_OPS), inner.clone())
                    .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
                inner.clone().prop_map(|e| format!("({e})")),
                inner.clone().prop_map(|e| format!("-{e}")),
                inner.clone().prop_map(|e| format!("NOT {e}")),
                (strs(SQL_FUNCTIONS), inner.clone()).prop_map(|(f, e)| {
                    if f.ends_with(' ') {
                        format!("{f}{e})")
                    } else {
                        format!("{f}({e})")
                    }
                }),
                (inner.clone(), strs(SQL_TYPES)).prop_map(|(e, t)| format!("CAST({e} AS {t})")),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(a, b, c)| format!("CASE WHEN {a} THEN {b} ELSE {c} END")),
                (inner.clone(), inner.clone(), inner)
                    .prop_map(|(a, b, c)| format!("{a} IN ({b}, {c})")),
            ]
        })
        .boxed()
}

fn sql_query() -> BoxedStrategy<String> {
    (
        prop::collection::vec(sql_expr(), 1..3),
        strs(SQL_TABLES),
        prop::option::of(sql_expr()),
        prop::option::of(sql_expr()),
        prop::option::of(0u32..5),
    )
        .prop_map(|(columns, table, filter, group, limit)| {
            let mut q = format!("SELECT {} FROM {table}", columns.join(", "));
            if let Some(w) = filter {
                q.push_str(&format!(" WHERE {w}"));
            }
            if let Some(g) = group {
                q.push_str(&format!(" GROUP BY {g}"));
            }
            if let Some(l) = limit {
                q.push_str(&format!(" LIMIT {l}"));
            }
            q
        })
        .boxed()
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn sql_token_soup(sql in token_soup(SQL_TOKENS)) {
        plan_sql(&sql);
    }

    #[test]
    fn sql_grammar(sql in sql_query()) {
        plan_sql(&sql);
    }
}

#[test]
fn sql_fixed_cases() {
    let mut cases: Vec<String> = [
        "",
        ";",
        ";;;",
        "SELECT",
        "SELECT 1; SELECT 2",
        "SELECT * FROM metrics",
        "SELECT labels['job'], avg(value) FROM metrics GROUP BY 1",
        "SELECT * FROM promql_instant('up', 1700000000)",
        "SELECT * FROM promql_instant('up')",
        "SELECT * FROM promql_instant(1, 2)",
        "SELECT * FROM promql_instant(NULL, NULL)",
        "SELECT * FROM promql_instant('sum(', now())",
        "SELECT * FROM promql_instant('up', value) FROM metrics",
        "SELECT * FROM promql_range('up', 1700000000, 1699999000, '1m')",
        "SELECT * FROM promql_range('up', 0, 1, '-1m')",
        "SELECT * FROM promql_range('up', 0, 1, 'bogus')",
        "SELECT * FROM promql_range('up', 0, 60, interval '2147483647 days')",
        "SELECT * FROM anomaly_range('up', 0, 60, '1m', 3, '7m')",
        "SELECT * FROM anomaly_range('up', 0, 60, '1m', -1)",
        "SELECT * FROM anomaly_range('up', 0, 60, '1m', 'NaN'::double)",
        "SELECT * FROM anomaly_range('up', 0, 60, '1m', 3, '1ms', '100000d')",
        "SELECT * FROM anomaly_range('up', 0, 60, '1m', 3, '1h', '-1d')",
        "SELECT * FROM anomaly_range('up', 0, 60, '1m', 3, '1h', '1d', 4)",
        "SELECT * FROM anomaly_range('sum(', 0, 60, '1m')",
        "SELECT * FROM anomaly_range('up', -9223372036854775808, 9223372036854775807, '1ms')",
        "SELECT '\u{0}'",
        "SELECT 'é' || '🦀'",
        "SELECT \"\u{feff}\" FROM metrics",
        "SELECT 1e400",
        "SELECT 9223372036854775808",
        "SELECT -9223372036854775808",
        "SELECT CAST('x' AS BIGINT)",
        "SELECT 1/0",
        "SELECT regexp_match('a', '(')",
        "SELECT arrow_cast(1, 'Bogus')",
        "CREATE TABLE t AS SELECT 1",
        "DROP TABLE metrics",
        "INSERT INTO samples VALUES (1)",
        "COPY metrics TO '/nonexistent/x.parquet'",
        "SET datafusion.execution.batch_size = 0",
        "EXPLAIN ANALYZE SELECT 1",
        "SHOW ALL",
        "SELECT * FROM information_schema.columns",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cases.push(format!("SELECT {} FROM metrics", "a".repeat(100_000)));
    cases.push(format!(
        "SELECT * FROM metrics WHERE value IN ({})",
        (0..10_000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    cases.push(
        (0..200)
            .map(|i| format!("SELECT {i} AS x"))
            .collect::<Vec<_>>()
            .join(" UNION ALL "),
    );
    collect_panics(cases, |sql| plan_sql(sql));
}

/// Extreme times and steps for the PromQL table functions: planning converts them to ms.
#[test]
fn sql_promql_functions_extreme_arguments() {
    collect_panics(
        [
            "SELECT * FROM promql_instant('up', 9223372036854775807)",
            "SELECT * FROM promql_instant('up', -9223372036854775807)",
            "SELECT * FROM promql_instant('up', 1e300)",
            "SELECT * FROM promql_instant('up', to_timestamp_seconds(9223372036854775807))",
            "SELECT * FROM promql_range('up', 0, 9223372036854775807, 60)",
            "SELECT * FROM promql_range('up', 0, 60, 9223372036854775807)",
            "SELECT * FROM promql_range('up', -9223372036854775807, 9223372036854775807, 1)",
        ],
        |sql| plan_sql(sql),
    );
}
