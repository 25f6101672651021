//! `strata promqltest FILE...`: runs Prometheus's PromQL test scripts (the
//! `promql/promqltest` format, see [`parse`]) through Strata's real write path and PromQL
//! engine, and reports per file how many `eval` cases passed, failed or were skipped.
//!
//! Each file gets a fresh [`Ingester`] in a temporary data directory (removed afterwards);
//! `clear` replaces it with another fresh one. `load` writes the expanded series through
//! remote-write validation and [`Ingester::write`] (WAL, head); with `--persist` every load
//! is followed by [`Ingester::persist`] so that queries read the Delta tables. Queries go to
//! `strata_promql::instant_query` / `range_query` over the engine's DataFusion session.
//!
//! Case semantics follow Prometheus's runner (`promql/promqltest/test.go`):
//! - floats compare with its `almost.Equal` (relative epsilon 1e-6, NaN equals NaN);
//! - order matters only with `expect ordered` / `eval_ordered`;
//! - an instant case is also run with `@ <T>` added to every selector and subquery (unless
//!   the query uses a time-dependent function such as `time()` or `timestamp()`) at the
//!   evaluation times Prometheus uses (`-10T, 0, T/5, T, 10T`, or `-1s, 0, 1s` for T=0),
//!   and each of those instant queries is re-run as a range query from `t-1m` to `t+1m`
//!   step 1m whose point at `t` must give the same result (skipped for `expect range
//!   vector`, `expect string`, and queries calling `start()`, `end()`, `range()`,
//!   `step()`; not compared for ordered cases);
//! - `expect fail` / `eval_fail`: every variant must fail, the message matched against
//!   the error's `Display`; `expect warn|info` / `no_warn|no_info` against
//!   `QueryResult::warnings` / `infos`.
//!
//! Native histograms cannot be stored: their points are skipped at load, and a case whose
//! query selects a series that had them (or the native series `load_with_nhcb` derives from
//! classic ones), or whose expected output holds a histogram, is reported as skipped.

pub mod parse;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datafusion::prelude::SessionContext;
use futures::FutureExt;
use promql_parser::label::Matchers;
use promql_parser::parser::{AtModifier, BinModifier, Expr, LabelModifier};
use strata_ingest::Ingester;
use strata_ingest::receive::remote_write::Validated;
use strata_promql::{QueryOptions, QueryResult, QueryValue};

use parse::{Command, Eval, EvalKind, ExpectKind, Expected, Labels, Load, MessageMatch, SeqValue};

/// How long one query may run (passed to the engine as its timeout).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The relative error Prometheus's runner allows between float values.
pub const EPSILON: f64 = 0.000001;

/// Functions whose result depends on the evaluation time even with step-invariant
/// arguments (Prometheus's `AtModifierUnsafeFunctions`): no `@` variant for queries using
/// them.
const AT_MODIFIER_UNSAFE_FUNCTIONS: [&str; 11] = [
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

/// Options of a run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Persist the head into the Delta tables after every `load`.
    pub persist: bool,
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every check passed.
    Passed,
    /// A check failed: why.
    Failed(String),
    /// Not run: the case needs native histograms.
    Skipped,
}

/// One case (one `eval` command) of a file.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// 1-based line of the `eval` command.
    pub line: usize,
    /// The query.
    pub query: String,
    /// What happened.
    pub outcome: Outcome,
}

/// What running one file did.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    /// The file's name (without directories).
    pub name: String,
    /// Every case, in file order.
    pub cases: Vec<CaseResult>,
    /// Problems outside the cases (unreadable file, syntax errors outside `eval`, load
    /// failures, rejected series), each prefixed with `file:line` where known.
    pub errors: Vec<String>,
}

impl FileReport {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.outcome)).count()
    }

    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed))
    }

    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    /// Cases skipped (native histograms).
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped))
    }

    /// The report as printed: a summary line, then one indented line per failure, skip
    /// and error.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{}: {} passed, {} failed, {} skipped",
            self.name,
            self.passed(),
            self.failed(),
            self.skipped()
        );
        for e in &self.errors {
            out.push_str(&format!("\n  error: {}", one_line(e)));
        }
        for c in &self.cases {
            match &c.outcome {
                Outcome::Passed => {}
                Outcome::Failed(why) => out.push_str(&format!(
                    "\n  {}:{} {}: {}",
                    self.name,
                    c.line,
                    c.query,
                    one_line(why)
                )),
                Outcome::Skipped => out.push_str(&format!(
                    "\n  skipped: {}:{} {} (native histograms)",
                    self.name, c.line, c.query
                )),
            }
        }
        out
    }
}

/// Totals over files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Cases skipped.
    pub skipped: usize,
    /// File-level errors.
    pub errors: usize,
}

/// Runs every file in turn, printing each file's report as it completes and the totals
/// last (`N passed, N failed, N skipped`). Returns the totals; the run failed when
/// `failed` or `errors` is non-zero.
pub async fn run_files(paths: &[PathBuf], opts: &Options) -> Totals {
    let mut t = Totals::default();
    // Files are independent (each has its own data directory): run them on all cores,
    // report in the given order.
    let mut tasks = vec![];
    for p in paths {
        let (p, o) = (p.clone(), opts.clone());
        tasks.push(tokio::spawn(async move { run_file(&p, &o).await }));
    }
    for (p, task) in paths.iter().zip(tasks) {
        let r = match task.await {
            Ok(r) => r,
            Err(e) => FileReport {
                name: p.display().to_string(),
                cases: vec![],
                errors: vec![format!("the run panicked: {e}")],
            },
        };
        println!("{}", r.render());
        t.passed += r.passed();
        t.failed += r.failed();
        t.skipped += r.skipped();
        t.errors += r.errors.len();
    }
    println!(
        "{} passed, {} failed, {} skipped",
        t.passed, t.failed, t.skipped
    );
    t
}

/// Runs one script file.
pub async fn run_file(path: &Path, opts: &Options) -> FileReport {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    match std::fs::read_to_string(path) {
        Ok(text) => run_script(&name, &text, opts).await,
        Err(e) => FileReport {
            name,
            cases: vec![],
            errors: vec![format!("reading {}: {e}", path.display())],
        },
    }
}

/// Runs one script given as text; `name` labels the report.
pub async fn run_script(name: &str, text: &str, opts: &Options) -> FileReport {
    let script = parse::parse_script(text);
    let mut report = FileReport {
        name: name.to_string(),
        ..Default::default()
    };
    for e in &script.errors {
        // Broken evals are reported as failed cases instead.
        let is_eval = script
            .commands
            .iter()
            .any(|c| matches!(c, Command::Broken { line, .. } if *line == e.line));
        if !is_eval {
            report
                .errors
                .push(format!("{name}:{}: {}", e.line, e.message));
        }
    }
    let mut env: Option<Env> = None;
    for cmd in &script.commands {
        match cmd {
            Command::Clear { .. } => env = None,
            Command::Load(load) => {
                if env.is_none() {
                    match Env::open().await {
                        Ok(e) => env = Some(e),
                        Err(e) => {
                            report.errors.push(format!("{name}:{}: {e}", load.line));
                            continue;
                        }
                    }
                }
                if let Some(env) = env.as_mut()
                    && let Err(e) = env.load(load, opts.persist).await
                {
                    report
                        .errors
                        .push(format!("{name}:{}: load: {e}", load.line));
                }
            }
            Command::Broken {
                line,
                text,
                message,
            } => report.cases.push(CaseResult {
                line: *line,
                query: text.clone(),
                outcome: Outcome::Failed(format!("cannot parse the eval command: {message}")),
            }),
            Command::Eval(ev) => {
                if env.is_none() {
                    match Env::open().await {
                        Ok(e) => env = Some(e),
                        Err(e) => {
                            report.cases.push(CaseResult {
                                line: ev.line,
                                query: ev.query.clone(),
                                outcome: Outcome::Failed(e),
                            });
                            continue;
                        }
                    }
                }
                let outcome = match env.as_ref() {
                    Some(env) => env.run_eval(ev).await,
                    None => Outcome::Failed("no storage".into()),
                };
                report.cases.push(CaseResult {
                    line: ev.line,
                    query: ev.query.clone(),
                    outcome,
                });
            }
        }
    }
    report
}

/// A temporary directory, removed (with its contents) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let p = std::env::temp_dir().join(format!(
            "strata-promqltest-{}-{nanos}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // The WAL's writer thread may still be closing its segment right after the
        // ingester is dropped: retry for a moment.
        for _ in 0..20 {
            match std::fs::remove_dir_all(&self.0) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// Why a query gave no result.
enum QueryFailure {
    /// The engine returned an error (its `Display`): what `expect fail` matches.
    Engine(String),
    /// The runner gave up on it (timeout, panic): always a failed case.
    Runner(String),
}

/// One storage generation: a fresh write path and engine over a temporary directory.
pub(crate) struct Env {
    /// The write path.
    pub(crate) ingester: Arc<Ingester>,
    /// The PromQL session.
    pub(crate) ctx: SessionContext,
    /// Label sets of the series that had native-histogram points (not stored), and of the
    /// native series `load_with_nhcb` derives.
    histogram_series: Vec<Labels>,
    /// Declared last: removed after the ingester and the session are dropped.
    _dir: TempDir,
}

impl Env {
    /// A fresh storage in a temporary directory (removed on drop), with its engine.
    pub(crate) async fn open() -> Result<Env, String> {
        let dir = TempDir::new().map_err(|e| format!("creating a temporary directory: {e}"))?;
        let ingester = Ingester::open(
            strata_ingest::storage::DataDir::Local(dir.0.join("data")),
            &dir.0.join("wal"),
            strata_ingest::Limits::default(),
            strata_ingest::PersistConfig::default(),
            strata_ingest::metrics::IngestMetrics::new(),
        )
        .await
        .map_err(|e| format!("opening storage in {}: {e}", dir.0.display()))?;
        let engine = strata_engine::Engine::new(Arc::new(strata_engine::source::IngesterSource(
            ingester.clone(),
        )))
        .await
        .map_err(|e| format!("starting the engine: {e}"))?;
        Ok(Env {
            ingester,
            ctx: engine.context(),
            histogram_series: vec![],
            _dir: dir,
        })
    }

    /// Writes a `load` command's series through validation and the WAL into the head (and
    /// persists them with `persist`).
    async fn load(&mut self, load: &Load, persist: bool) -> Result<(), String> {
        // A series given twice in one load: the later line wins, as in Prometheus (which
        // keys them by label hash).
        let mut series: Vec<(&Labels, Vec<strata_ingest::Sample>)> = vec![];
        for s in &load.series {
            let mut samples = vec![];
            let mut histograms = false;
            for (i, v) in s.values.iter().enumerate() {
                let t = i as i64 * load.interval_ms;
                match v {
                    SeqValue::Float(f) => samples.push(strata_ingest::Sample {
                        timestamp_ms: t,
                        value: *f,
                    }),
                    SeqValue::Histogram => histograms = true,
                    SeqValue::Omitted => {}
                }
            }
            if histograms {
                self.histogram_series.push(s.labels.clone());
            }
            series.retain(|(l, _)| *l != &s.labels);
            series.push((&s.labels, samples));
        }
        if load.with_nhcb {
            for (l, _) in &series {
                if let Some(base) = nhcb_base(l) {
                    self.histogram_series.push(base);
                }
            }
        }
        // Test data lives near 1970; the clock passed to validation is at least the
        // newest sample, so that the future-timestamp limit can never reject it.
        let newest = series
            .iter()
            .flat_map(|(_, s)| s.iter().map(|x| x.timestamp_ms))
            .max()
            .unwrap_or(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
            .max(newest);
        let mut v = Validated::default();
        for (labels, samples) in series {
            if !samples.is_empty() {
                v.push(labels, samples, self.ingester.limits(), now);
            }
        }
        let rejected: Vec<String> = v.rejected.iter().map(|(r, _)| r.to_string()).collect();
        self.ingester
            .write(v, "promqltest", None)
            .await
            .map_err(|e| e.to_string())?;
        if persist {
            self.ingester
                .persist()
                .await
                .map_err(|e| format!("persist: {e}"))?;
        }
        if !rejected.is_empty() {
            return Err(format!(
                "{} series rejected, first: {}",
                rejected.len(),
                rejected[0]
            ));
        }
        Ok(())
    }

    /// Runs one `eval` case.
    async fn run_eval(&self, ev: &Eval) -> Outcome {
        if self.needs_histograms(ev) {
            return Outcome::Skipped;
        }
        let r = match ev.kind {
            EvalKind::Instant { at_ms } => self.run_instant_eval(ev, at_ms).await,
            EvalKind::Range {
                start_ms,
                end_ms,
                step_ms,
            } => self.run_range_eval(ev, start_ms, end_ms, step_ms).await,
        };
        match r {
            Ok(()) => Outcome::Passed,
            Err(why) => Outcome::Failed(why),
        }
    }

    /// Whether the case involves native histograms: expected histogram values, or a
    /// selector of the query that matches a series that had histogram points.
    fn needs_histograms(&self, ev: &Eval) -> bool {
        if ev.expects_histograms() {
            return true;
        }
        if self.histogram_series.is_empty() {
            return false;
        }
        match promql_parser::parser::parse(&ev.query) {
            Ok(expr) => {
                let mut hit = false;
                for_each_selector(&expr, &mut |name, matchers| {
                    hit = hit
                        || self
                            .histogram_series
                            .iter()
                            .any(|l| selector_matches(name, matchers, l));
                });
                hit
            }
            // Unparseable here: look for the metric names as words of the query.
            Err(_) => self.histogram_series.iter().any(|l| {
                l.iter()
                    .find(|(n, _)| n == "__name__")
                    .is_some_and(|(_, name)| contains_word(&ev.query, name))
            }),
        }
    }

    async fn instant(&self, q: &str, t: i64) -> Result<QueryResult, QueryFailure> {
        let opts = query_options();
        let fut = strata_promql::instant_query(&self.ctx, q, t, &opts);
        guard(fut).await
    }

    async fn range(
        &self,
        q: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, QueryFailure> {
        let opts = query_options();
        let fut = strata_promql::range_query(&self.ctx, q, start, end, step, &opts);
        guard(fut).await
    }

    /// `eval instant at T`: the query, then its `@` variants, each with its range-mode
    /// check (Prometheus's `execInstantEval`).
    async fn run_instant_eval(&self, ev: &Eval, t: i64) -> Result<(), String> {
        self.run_instant_query(ev, &ev.query, t).await?;
        if let Some(q) = at_variant(&ev.query, t)? {
            let times: Vec<i64> = if t == 0 {
                vec![-1000, 0, 1000]
            } else {
                vec![-10 * t, 0, t / 5, t, 10 * t]
            };
            for et in times {
                self.run_instant_query(ev, &q, et)
                    .await
                    .map_err(|e| format!("[`{q}` at {}] {e}", fmt_ms(et)))?;
            }
        }
        Ok(())
    }

    /// One instant query of an instant case (Prometheus's `runInstantQuery`).
    async fn run_instant_query(&self, ev: &Eval, q: &str, t: i64) -> Result<(), String> {
        let r = match self.instant(q, t).await {
            Err(QueryFailure::Engine(msg)) if ev.is_fail() => {
                return check_expected_failure(ev, &msg);
            }
            Err(QueryFailure::Engine(msg)) => return Err(format!("error: {msg}")),
            Err(QueryFailure::Runner(msg)) => return Err(msg),
            Ok(r) => r,
        };
        if ev.is_fail() {
            return Err(format!(
                "expected an error but got none (result: {})",
                fmt_value(&r.value)
            ));
        }
        check_annotations(ev, &r)?;
        let frame = match ev.range_vector {
            Some((start, end, step)) => Frame { start, end, step },
            // Prometheus's instant command has a zero end time: any expected point of a
            // matrix is out of its range.
            None => Frame {
                start: t,
                end: i64::MIN,
                step: 0,
            },
        };
        compare_result(ev, frame, &r.value)?;
        if ev.exclude_from_range_query() {
            return Ok(());
        }
        if ["start()", "end()", "range()", "step()"]
            .iter()
            .any(|f| q.contains(f))
        {
            return Ok(());
        }
        let rr = match self.range(q, t - 60_000, t + 60_000, 60_000).await {
            Ok(rr) => rr,
            Err(QueryFailure::Engine(e) | QueryFailure::Runner(e)) => {
                return Err(format!("range mode: error: {e}"));
            }
        };
        if ev.is_ordered() {
            return Ok(());
        }
        let QueryValue::Matrix(m) = &rr.value else {
            return Err(format!(
                "range mode: expected a matrix, got {}",
                fmt_value(&rr.value)
            ));
        };
        assert_sorted(m).map_err(|e| format!("range mode: {e}"))?;
        let at_t: Vec<(Labels, f64)> = m
            .iter()
            .filter_map(|s| {
                s.points
                    .iter()
                    .find(|p| p.0 == t)
                    .map(|p| (norm(&s.labels), p.1))
            })
            .collect();
        let r = if matches!(r.value, QueryValue::Scalar { .. }) {
            match at_t.first() {
                Some((_, v)) => compare_result(ev, frame, &QueryValue::Scalar { t_ms: t, v: *v }),
                None => Err(format!("no point at {}", fmt_ms(t))),
            }
        } else {
            compare_vector(ev, &at_t)
        };
        r.map_err(|e| format!("range mode: {e}"))
    }

    /// `eval range from S to E step D` (Prometheus's `execRangeEval`).
    async fn run_range_eval(
        &self,
        ev: &Eval,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<(), String> {
        let r = match self.range(&ev.query, start, end, step).await {
            Err(QueryFailure::Engine(msg)) if ev.is_fail() => {
                return check_expected_failure(ev, &msg);
            }
            Err(QueryFailure::Engine(msg)) => return Err(format!("error: {msg}")),
            Err(QueryFailure::Runner(msg)) => return Err(msg),
            Ok(r) => r,
        };
        if ev.is_fail() {
            return Err(format!(
                "expected an error but got none (result: {})",
                fmt_value(&r.value)
            ));
        }
        check_annotations(ev, &r)?;
        compare_result(ev, Frame { start, end, step }, &r.value)
    }
}

/// The options every query runs with.
fn query_options() -> QueryOptions {
    QueryOptions {
        timeout: Some(QUERY_TIMEOUT),
        ..Default::default()
    }
}

/// Awaits a query with a hard deadline (in case the engine ignores its timeout) and turns
/// a panic into a failed case rather than the end of the run.
async fn guard<F>(fut: F) -> Result<QueryResult, QueryFailure>
where
    F: std::future::Future<Output = Result<QueryResult, strata_promql::PromqlError>>,
{
    let hard = QUERY_TIMEOUT + Duration::from_secs(10);
    match tokio::time::timeout(hard, std::panic::AssertUnwindSafe(fut).catch_unwind()).await {
        Err(_) => Err(QueryFailure::Runner(format!(
            "no answer within {}s",
            hard.as_secs()
        ))),
        Ok(Err(panic)) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(QueryFailure::Runner(format!("the engine panicked: {msg}")))
        }
        Ok(Ok(Err(e))) => Err(QueryFailure::Engine(e.to_string())),
        Ok(Ok(Ok(r))) => Ok(r),
    }
}

/// The native-histogram series `load_with_nhcb` derives from a classic histogram series
/// (`x_bucket{le=...}`, `x_count`, `x_sum` -> `x` without `le`), if `l` is one.
fn nhcb_base(l: &Labels) -> Option<Labels> {
    let name = l.iter().find(|(n, _)| n == "__name__").map(|(_, v)| v)?;
    let base = ["_bucket", "_count", "_sum"]
        .iter()
        .find_map(|s| name.strip_suffix(s))?;
    if name.ends_with("_bucket") && !l.iter().any(|(n, _)| n == "le") {
        return None;
    }
    let mut out: Labels = l
        .iter()
        .filter(|(n, _)| n != "le" && n != "__name__")
        .cloned()
        .collect();
    out.push(("__name__".into(), base.to_string()));
    out.sort();
    Some(out)
}

/// Calls `f` with the name and matchers of every selector in `expr` (subqueries included).
fn for_each_selector(expr: &Expr, f: &mut dyn FnMut(&Option<String>, &Matchers)) {
    match expr {
        Expr::VectorSelector(vs) => f(&vs.name, &vs.matchers),
        Expr::MatrixSelector(ms) => f(&ms.vs.name, &ms.vs.matchers),
        Expr::Aggregate(a) => {
            for_each_selector(&a.expr, f);
            if let Some(p) = &a.param {
                for_each_selector(p, f);
            }
        }
        Expr::Unary(u) => for_each_selector(&u.expr, f),
        Expr::Binary(b) => {
            for_each_selector(&b.lhs, f);
            for_each_selector(&b.rhs, f);
        }
        Expr::Paren(p) => for_each_selector(&p.expr, f),
        Expr::Subquery(s) => for_each_selector(&s.expr, f),
        Expr::Call(c) => {
            for a in &c.args.args {
                for_each_selector(a, f);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Whether a selector would select the series `labels`.
fn selector_matches(name: &Option<String>, matchers: &Matchers, labels: &Labels) -> bool {
    let get = |n: &str| {
        labels
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    if let Some(n) = name
        && get("__name__") != n
    {
        return false;
    }
    matchers.matchers.iter().all(|m| m.is_match(get(&m.name)))
        && (matchers.or_matchers.is_empty()
            || matchers
                .or_matchers
                .iter()
                .any(|g| g.iter().all(|m| m.is_match(get(&m.name)))))
}

/// Whether `word` occurs in `s` delimited by non-identifier characters.
fn contains_word(s: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    s.match_indices(word).any(|(i, _)| {
        let before = s[..i].chars().next_back();
        let after = s[i + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// The query with `@ <t>` set on every selector and subquery that has none (selectors
/// inside subqueries are left alone), re-serialized by `promql-parser`; `None` when the
/// query uses a time-dependent function (Prometheus's `atModifierTestCases`), or when
/// `promql-parser` cannot parse it (the engine then reports that error on the query
/// itself).
///
/// # Errors
/// The re-serialized query does not parse back to the same expression (a
/// `promql-parser` `Display` bug: the variant would test something else).
pub fn at_variant(query: &str, t_ms: i64) -> Result<Option<String>, String> {
    let Ok(mut expr) = promql_parser::parser::parse(query) else {
        return Ok(None);
    };
    let at = if t_ms >= 0 {
        AtModifier::At(UNIX_EPOCH + Duration::from_millis(t_ms as u64))
    } else {
        AtModifier::At(UNIX_EPOCH - Duration::from_millis(t_ms.unsigned_abs()))
    };
    let mut time_dependent = false;
    set_at(&mut expr, &at, &mut time_dependent);
    if time_dependent {
        return Ok(None);
    }
    let s = expr.to_string();
    if !s.contains('@') {
        // No selector or subquery to pin: nothing is step invariant to check (`start()`,
        // `vector(1)`).
        return Ok(None);
    }
    let mut back = promql_parser::parser::parse(&s)
        .map_err(|e| format!("the @ variant `{s}` does not parse (promql-parser): {e}"))?;
    // Display sorts matchers and drops empty `by ()` / `ignoring ()`: compare the meaning,
    // not those spellings.
    normalize(&mut back);
    normalize(&mut expr);
    // NaN is not equal to itself (`fill(NaN)`): equal Debug texts mean equal trees too.
    if back == expr || format!("{back:?}") == format!("{expr:?}") {
        // Literals that are not valid UTF-8 in Go (`"\xff"`) as written: promql-parser
        // prints its decoding (`"ÿ"`), a valid string that Prometheus would accept.
        let mut s = s;
        for (decoded, written) in strata_promql::plan::go_invalid_literals(query) {
            s = s.replace(&format!("\"{decoded}\""), written);
        }
        Ok(Some(s))
    } else {
        Err(format!(
            "the @ variant `{s}` does not parse back to the same expression (promql-parser)"
        ))
    }
}

/// Rewrites spellings that mean the same into one: matchers sorted, `by ()` on an
/// aggregation and `ignoring ()` on a binary operation dropped.
fn normalize(expr: &mut Expr) {
    fn sort(m: &mut Matchers) {
        m.matchers.sort_by_key(|x| x.to_string());
        for g in &mut m.or_matchers {
            g.sort_by_key(|x| x.to_string());
        }
    }
    match expr {
        Expr::VectorSelector(vs) => sort(&mut vs.matchers),
        Expr::MatrixSelector(ms) => sort(&mut ms.vs.matchers),
        Expr::Subquery(s) => normalize(&mut s.expr),
        Expr::Aggregate(a) => {
            if matches!(&a.modifier, Some(LabelModifier::Include(l)) if l.is_empty()) {
                a.modifier = None;
            }
            normalize(&mut a.expr);
            if let Some(p) = &mut a.param {
                normalize(p);
            }
        }
        Expr::Unary(u) => normalize(&mut u.expr),
        Expr::Binary(b) => {
            if let Some(m) = &mut b.modifier {
                if matches!(&m.matching, Some(LabelModifier::Exclude(l)) if l.is_empty()) {
                    m.matching = None;
                }
                if *m == BinModifier::default() {
                    b.modifier = None;
                }
            }
            normalize(&mut b.lhs);
            normalize(&mut b.rhs);
        }
        Expr::Paren(p) => normalize(&mut p.expr),
        Expr::Call(c) => {
            for a in &mut c.args.args {
                normalize(a);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Sets `at` on selectors and subqueries without one; does not descend into subqueries;
/// flags time-dependent functions outside subqueries.
fn set_at(expr: &mut Expr, at: &AtModifier, time_dependent: &mut bool) {
    match expr {
        Expr::VectorSelector(vs) => {
            if vs.at.is_none() {
                vs.at = Some(at.clone());
            }
        }
        Expr::MatrixSelector(ms) => {
            if ms.vs.at.is_none() {
                ms.vs.at = Some(at.clone());
            }
        }
        Expr::Subquery(s) => {
            if s.at.is_none() {
                s.at = Some(at.clone());
            }
        }
        Expr::Aggregate(a) => {
            set_at(&mut a.expr, at, time_dependent);
            if let Some(p) = &mut a.param {
                set_at(p, at, time_dependent);
            }
        }
        Expr::Unary(u) => set_at(&mut u.expr, at, time_dependent),
        Expr::Binary(b) => {
            set_at(&mut b.lhs, at, time_dependent);
            set_at(&mut b.rhs, at, time_dependent);
        }
        Expr::Paren(p) => set_at(&mut p.expr, at, time_dependent),
        Expr::Call(c) => {
            if AT_MODIFIER_UNSAFE_FUNCTIONS.contains(&c.func.name) {
                *time_dependent = true;
            }
            for a in &mut c.args.args {
                set_at(a, at, time_dependent);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Prometheus's `almost.Equal`: true when both are NaN, equal, or differ by less than
/// `epsilon` relative to their magnitudes (absolute near zero).
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    // f64::MIN_POSITIVE is the smallest positive normal value (Go's minNormal).
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < epsilon * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// The timestamps expected points are at: `start + i * step`, up to `end`.
#[derive(Debug, Clone, Copy)]
struct Frame {
    start: i64,
    end: i64,
    step: i64,
}

/// A label set sorted by name without empty values (how results are compared).
fn norm(l: &[(String, String)]) -> Labels {
    let mut v: Labels = l.iter().filter(|(_, v)| !v.is_empty()).cloned().collect();
    v.sort();
    v
}

/// Prometheus's `checkExpectedFailure`.
fn check_expected_failure(ev: &Eval, msg: &str) -> Result<(), String> {
    if let Some(m) = ev.expected_fail_message.as_ref().filter(|m| !m.is_empty())
        && m != msg
    {
        return Err(format!("expected error {m:?}, but got: {msg}"));
    }
    if let Some(r) = &ev.expected_fail_regexp
        && !r.is_match(msg)
    {
        return Err(format!(
            "expected error matching pattern {:?}, but got: {msg}",
            r.pattern
        ));
    }
    if let Some(e) = ev.expects_of(ExpectKind::Fail).next()
        && !e.message.check(msg)
    {
        return Err(format!(
            "expected error matching {}, but got: {msg}",
            e.message.describe()
        ));
    }
    Ok(())
}

/// Prometheus's `checkAnnotations`.
fn check_annotations(ev: &Eval, r: &QueryResult) -> Result<(), String> {
    if ev.old_warn && r.warnings.is_empty() {
        return Err("expected warnings but got none".into());
    }
    if ev.old_info && r.infos.is_empty() {
        return Err("expected info annotations but got none".into());
    }
    let all = || {
        r.warnings
            .iter()
            .chain(&r.infos)
            .cloned()
            .collect::<Vec<_>>()
    };
    for (kind, actual, name) in [
        (ExpectKind::Warn, &r.warnings, "warn"),
        (ExpectKind::Info, &r.infos, "info"),
    ] {
        let expected: Vec<&MessageMatch> = ev.expects_of(kind).map(|e| &e.message).collect();
        if expected.is_empty() {
            continue;
        }
        if actual.is_empty() {
            return Err(format!("expected {name} annotations but none were found"));
        }
        for e in &expected {
            if !actual.iter().any(|a| e.check(a)) {
                return Err(format!(
                    "expected {name} annotation matching {} but no matching annotation was found, found: {:?}",
                    e.describe(),
                    all()
                ));
            }
        }
        for a in actual {
            if !expected.iter().any(|e| e.check(a)) {
                return Err(format!("unexpected {name} annotation {a:?}"));
            }
        }
    }
    if ev.expects_of(ExpectKind::NoWarn).next().is_some() && !r.warnings.is_empty() {
        return Err(format!("unexpected warning annotations: {:?}", all()));
    }
    if ev.expects_of(ExpectKind::NoInfo).next().is_some() && !r.infos.is_empty() {
        return Err(format!("unexpected info annotations: {:?}", all()));
    }
    Ok(())
}

/// Prometheus's `assertMatrixSorted`: series in `labels.Compare` order.
fn assert_sorted(m: &[strata_promql::RangeSeries]) -> Result<(), String> {
    for (i, w) in m.windows(2).enumerate() {
        let (a, b) = (norm(&w[0].labels), norm(&w[1].labels));
        if a > b {
            return Err(format!(
                "matrix results should always be sorted by labels, but matrix is not sorted: series at index {} with labels {} sorts before series at index {i} with labels {}",
                i + 1,
                fmt_labels(&b),
                fmt_labels(&a)
            ));
        }
    }
    Ok(())
}

/// Prometheus's `compareResult`.
fn compare_result(ev: &Eval, frame: Frame, value: &QueryValue) -> Result<(), String> {
    match value {
        QueryValue::Matrix(m) => compare_matrix(ev, frame, m),
        QueryValue::Vector(v) => {
            let samples: Vec<(Labels, f64)> = v.iter().map(|s| (norm(&s.labels), s.v)).collect();
            compare_vector(ev, &samples)
        }
        QueryValue::Scalar { v, .. } => match ev.expected {
            Expected::Scalar(want) => {
                if almost_equal(want, *v, EPSILON) {
                    Ok(())
                } else {
                    Err(format!(
                        "expected scalar {} but got {}",
                        strata_promql::labels::format_value(want),
                        strata_promql::labels::format_value(*v)
                    ))
                }
            }
            Expected::Series(_) => Err(format!(
                "expected vector or matrix result, but got scalar {}",
                strata_promql::labels::format_value(*v)
            )),
        },
        QueryValue::String { s, .. } => {
            let want = ev.expected_string.as_deref().unwrap_or("");
            if want == s {
                Ok(())
            } else {
                Err(format!("expected string {want:?} but got {s:?}"))
            }
        }
    }
}

/// The vector part of Prometheus's `compareResult` (also used for range mode).
fn compare_vector(ev: &Eval, samples: &[(Labels, f64)]) -> Result<(), String> {
    let Expected::Series(expected) = &ev.expected else {
        return Err(format!(
            "expected scalar result, but got vector {}",
            fmt_samples(samples)
        ));
    };
    let mut seen = HashSet::new();
    for (pos, (labels, v)) in samples.iter().enumerate() {
        let Some((k, e)) = expected
            .iter()
            .enumerate()
            .find(|(_, e)| &e.labels == labels)
        else {
            return Err(format!(
                "unexpected metric {} in result, has value {}",
                fmt_labels(labels),
                strata_promql::labels::format_value(*v)
            ));
        };
        if ev.is_ordered() && e.pos != pos + 1 {
            return Err(format!(
                "expected metric {} at position {} but was at {}",
                fmt_labels(labels),
                e.pos,
                pos + 1
            ));
        }
        let Some(exp0) = e.values.first() else {
            return Err(format!("no expected value for {}", fmt_labels(labels)));
        };
        if !almost_equal(exp0.float(), *v, EPSILON) {
            return Err(format!(
                "expected {} for {} but got {}",
                strata_promql::labels::format_value(exp0.float()),
                fmt_labels(labels),
                strata_promql::labels::format_value(*v)
            ));
        }
        seen.insert(k);
    }
    for (k, e) in expected.iter().enumerate() {
        if !seen.contains(&k) {
            return Err(format!(
                "expected metric {} with {} not found (result: {})",
                fmt_labels(&e.labels),
                fmt_seq(&e.values),
                fmt_samples(samples)
            ));
        }
    }
    Ok(())
}

/// The matrix part of Prometheus's `compareResult`.
fn compare_matrix(ev: &Eval, frame: Frame, m: &[strata_promql::RangeSeries]) -> Result<(), String> {
    if ev.is_ordered() {
        return Err("expected ordered result, but query returned a matrix".into());
    }
    let expected = match &ev.expected {
        Expected::Scalar(_) => {
            return Err(format!(
                "expected scalar result, but got matrix {}",
                fmt_value(&QueryValue::Matrix(m.to_vec()))
            ));
        }
        Expected::Series(s) => s,
    };
    assert_sorted(m)?;
    let mut seen = HashSet::new();
    for s in m {
        let labels = norm(&s.labels);
        let Some((k, e)) = expected
            .iter()
            .enumerate()
            .find(|(_, e)| e.labels == labels)
        else {
            return Err(format!(
                "unexpected metric {} in result, has {}",
                fmt_labels(&labels),
                fmt_points(&s.points)
            ));
        };
        seen.insert(k);
        let mut want: Vec<(i64, f64)> = vec![];
        let mut histograms = 0;
        for (i, v) in e.values.iter().enumerate() {
            let ts = frame.start + i as i64 * frame.step;
            if ts > frame.end {
                return Err(format!(
                    "expected {} points for {}, but query time range cannot return this many points",
                    e.values.len(),
                    fmt_labels(&labels)
                ));
            }
            match v {
                SeqValue::Float(f) => want.push((ts, *f)),
                SeqValue::Histogram => histograms += 1,
                SeqValue::Omitted => {}
            }
        }
        if want.len() != s.points.len() || histograms != 0 {
            return Err(format!(
                "expected {} float points and {histograms} histogram points for {}, but got {}",
                want.len(),
                fmt_labels(&labels),
                fmt_points(&s.points)
            ));
        }
        for (i, (w, got)) in want.iter().zip(&s.points).enumerate() {
            if w.0 != got.0 {
                return Err(format!(
                    "expected float value at index {i} for {} to have timestamp {}, but it had timestamp {} (result has {})",
                    fmt_labels(&labels),
                    w.0,
                    got.0,
                    fmt_points(&s.points)
                ));
            }
            if !almost_equal(got.1, w.1, EPSILON) {
                return Err(format!(
                    "expected float value at index {i} (t={}) for {} to be {}, but got {} (result has {})",
                    got.0,
                    fmt_labels(&labels),
                    strata_promql::labels::format_value(w.1),
                    strata_promql::labels::format_value(got.1),
                    fmt_points(&s.points)
                ));
            }
        }
    }
    for (k, e) in expected.iter().enumerate() {
        if !seen.contains(&k) {
            return Err(format!(
                "expected metric {} not found",
                fmt_labels(&e.labels)
            ));
        }
    }
    Ok(())
}

/// Milliseconds as `12.5s`.
fn fmt_ms(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", ms as f64 / 1000.0)
    }
}

/// `name{a="b", c="d"}` (or `{...}` without a name).
fn fmt_labels(l: &[(String, String)]) -> String {
    let name = l
        .iter()
        .find(|(n, _)| n == "__name__")
        .map(|(_, v)| v.as_str());
    let rest: Vec<String> = l
        .iter()
        .filter(|(n, _)| n != "__name__")
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect();
    format!("{}{{{}}}", name.unwrap_or(""), rest.join(", "))
}

fn fmt_points(p: &[(i64, f64)]) -> String {
    let v: Vec<String> = p
        .iter()
        .map(|(t, v)| {
            format!(
                "{} @{}",
                strata_promql::labels::format_value(*v),
                fmt_ms(*t)
            )
        })
        .collect();
    format!("[{}]", v.join(", "))
}

fn fmt_seq(v: &[SeqValue]) -> String {
    let s: Vec<String> = v
        .iter()
        .map(|x| match x {
            SeqValue::Omitted => "_".into(),
            SeqValue::Float(f) => strata_promql::labels::format_value(*f),
            SeqValue::Histogram => "{{...}}".into(),
        })
        .collect();
    s.join(" ")
}

fn fmt_samples(s: &[(Labels, f64)]) -> String {
    let v: Vec<String> = s
        .iter()
        .map(|(l, v)| {
            format!(
                "{} {}",
                fmt_labels(l),
                strata_promql::labels::format_value(*v)
            )
        })
        .collect();
    format!("[{}]", v.join(", "))
}

fn fmt_value(v: &QueryValue) -> String {
    let s = match v {
        QueryValue::Scalar { v, .. } => {
            format!("scalar {}", strata_promql::labels::format_value(*v))
        }
        QueryValue::String { s, .. } => format!("string {s:?}"),
        QueryValue::Vector(v) => format!(
            "vector {}",
            fmt_samples(&v.iter().map(|s| (norm(&s.labels), s.v)).collect::<Vec<_>>())
        ),
        QueryValue::Matrix(m) => {
            let v: Vec<String> = m
                .iter()
                .map(|s| format!("{} {}", fmt_labels(&norm(&s.labels)), fmt_points(&s.points)))
                .collect();
            format!("matrix [{}]", v.join(", "))
        }
    };
    truncate(s, 300)
}

/// `s` cut to about `max` bytes (on a character boundary) with `...` appended.
fn truncate(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// A message on one line, at most ~600 bytes.
fn one_line(s: &str) -> String {
    truncate(s.replace('\n', "\\n"), 600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn almost_equal_like_prometheus() {
        assert!(almost_equal(f64::NAN, f64::NAN, EPSILON));
        assert!(almost_equal(f64::INFINITY, f64::INFINITY, EPSILON));
        assert!(!almost_equal(f64::INFINITY, f64::NEG_INFINITY, EPSILON));
        assert!(!almost_equal(f64::INFINITY, 1e308, EPSILON));
        assert!(almost_equal(1.0, 1.0 + 1e-7, EPSILON));
        assert!(!almost_equal(1.0, 1.0 + 1e-5, EPSILON));
        assert!(almost_equal(0.1 + 0.2, 0.3, EPSILON));
        // Against zero the tolerance is absolute and tiny.
        assert!(!almost_equal(0.0, 1e-300, EPSILON));
        assert!(almost_equal(0.0, -0.0, EPSILON));
        assert!(!almost_equal(f64::NAN, 1.0, EPSILON));
        // A stale NaN equals any NaN.
        assert!(almost_equal(
            f64::from_bits(parse::STALE_NAN_BITS),
            f64::NAN,
            EPSILON
        ));
    }

    #[test]
    fn at_variants() {
        assert_eq!(
            at_variant("foo", 60_000).unwrap().as_deref(),
            Some("foo @ 60.000")
        );
        assert_eq!(
            at_variant("rate(foo[5m])", 1000).unwrap().as_deref(),
            Some("rate(foo[5m] @ 1.000)")
        );
        // Existing @ kept; subqueries get @ themselves, their insides are left alone.
        assert_eq!(
            at_variant("foo @ 10 + max_over_time(rate(bar[1m])[5m:1m])", 2000)
                .unwrap()
                .as_deref(),
            Some("foo @ 10.000 + max_over_time(rate(bar[1m])[5m:1m] @ 2.000)")
        );
        // Time-dependent functions: no variant.
        assert_eq!(at_variant("time() - foo", 1000).unwrap(), None);
        assert_eq!(at_variant("timestamp(foo)", 1000).unwrap(), None);
        // ...unless inside a subquery, as in Prometheus.
        assert!(
            at_variant("max_over_time(timestamp(foo)[5m:1m])", 1000)
                .unwrap()
                .is_some()
        );
        // Unparseable: no variant (the query itself reports the error).
        assert_eq!(at_variant("foo(", 1000).unwrap(), None);
    }

    #[test]
    fn nhcb_names() {
        let l = |p: &[(&str, &str)]| -> Labels {
            let mut v: Labels = p
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            nhcb_base(&l(&[("__name__", "x_bucket"), ("le", "0.1"), ("a", "b")])),
            Some(l(&[("__name__", "x"), ("a", "b")]))
        );
        assert_eq!(
            nhcb_base(&l(&[("__name__", "x_count")])),
            Some(l(&[("__name__", "x")]))
        );
        assert_eq!(nhcb_base(&l(&[("__name__", "x_total")])), None);
        assert_eq!(nhcb_base(&l(&[("__name__", "x_bucket")])), None);
    }

    #[test]
    fn selectors_against_histogram_series() {
        let hist: Labels = vec![
            ("__name__".into(), "testhistogram3".into()),
            ("start".into(), "positive".into()),
        ];
        let hits = |q: &str| {
            let expr = promql_parser::parser::parse(q).unwrap();
            let mut hit = false;
            for_each_selector(&expr, &mut |n, m| {
                hit = hit || selector_matches(n, m, &hist)
            });
            hit
        };
        assert!(hits("histogram_count(testhistogram3)"));
        assert!(hits("sum(rate(testhistogram3[5m]))"));
        assert!(hits(r#"{start="positive"}"#));
        assert!(hits(r#"{__name__=~"testhist.*"}"#));
        assert!(hits("max_over_time(testhistogram3[5m:1m])"));
        assert!(!hits("testhistogram3_count"));
        assert!(!hits(r#"testhistogram3{start="negative"}"#));
        assert!(contains_word("histogram_count(foo)", "foo"));
        assert!(!contains_word("histogram_count(foo_bucket)", "foo"));
    }

    fn eval_of(text: &str) -> Eval {
        let s = parse::parse_script(text);
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        match s.commands.into_iter().next() {
            Some(Command::Eval(e)) => *e,
            _ => panic!("no eval"),
        }
    }

    fn sample(l: &[(&str, &str)], v: f64) -> strata_promql::InstantSample {
        strata_promql::InstantSample {
            labels: l
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            t_ms: 0,
            v,
        }
    }

    #[test]
    fn vector_comparison() {
        let ev = eval_of("eval instant at 1m foo\n  foo{a=\"1\"} 1\n  foo{a=\"2\"} NaN\n");
        let frame = Frame {
            start: 60_000,
            end: i64::MIN,
            step: 0,
        };
        let ok = QueryValue::Vector(vec![
            sample(&[("a", "2"), ("__name__", "foo")], f64::NAN),
            sample(&[("__name__", "foo"), ("a", "1")], 1.0000001),
        ]);
        assert_eq!(compare_result(&ev, frame, &ok), Ok(()));
        let wrong = QueryValue::Vector(vec![sample(&[("__name__", "foo"), ("a", "1")], 2.0)]);
        let e = compare_result(&ev, frame, &wrong).unwrap_err();
        assert!(e.contains("expected 1 for foo{a=\"1\"} but got 2"), "{e}");
        let missing = QueryValue::Vector(vec![sample(&[("__name__", "foo"), ("a", "1")], 1.0)]);
        assert!(
            compare_result(&ev, frame, &missing)
                .unwrap_err()
                .contains("not found")
        );
        let extra = QueryValue::Vector(vec![sample(&[("a", "3")], 1.0)]);
        assert!(
            compare_result(&ev, frame, &extra)
                .unwrap_err()
                .contains("unexpected metric {a=\"3\"}")
        );
        assert!(
            compare_result(&ev, frame, &QueryValue::Scalar { t_ms: 0, v: 1.0 })
                .unwrap_err()
                .contains("expected vector or matrix result")
        );
        // Order matters only when asked for.
        let ev = eval_of(
            "eval instant at 1m sort(foo)\n  expect ordered\n  foo{a=\"1\"} 1\n  foo{a=\"2\"} 2\n",
        );
        let rev = QueryValue::Vector(vec![
            sample(&[("__name__", "foo"), ("a", "2")], 2.0),
            sample(&[("__name__", "foo"), ("a", "1")], 1.0),
        ]);
        assert!(
            compare_result(&ev, frame, &rev)
                .unwrap_err()
                .contains("position")
        );
        // Scalars.
        let ev = eval_of("eval instant at 1m 1/0\n  +Inf\n");
        assert_eq!(
            compare_result(
                &ev,
                frame,
                &QueryValue::Scalar {
                    t_ms: 0,
                    v: f64::INFINITY
                }
            ),
            Ok(())
        );
        // Strings.
        let ev = eval_of("eval instant at 1m \"a\"\n  expect string \"a\"\n");
        assert_eq!(
            compare_result(
                &ev,
                frame,
                &QueryValue::String {
                    t_ms: 0,
                    s: "a".into()
                }
            ),
            Ok(())
        );
    }

    #[test]
    fn matrix_comparison() {
        let ev = eval_of(
            "eval range from 0 to 2m step 1m foo\n  foo{a=\"1\"} 1 _ 3\n  foo{a=\"2\"} 1 2 3\n",
        );
        let frame = Frame {
            start: 0,
            end: 120_000,
            step: 60_000,
        };
        let rs = |a: &str, p: Vec<(i64, f64)>| strata_promql::RangeSeries {
            labels: vec![("__name__".into(), "foo".into()), ("a".into(), a.into())],
            points: p,
        };
        let ok = QueryValue::Matrix(vec![
            rs("1", vec![(0, 1.0), (120_000, 3.0)]),
            rs("2", vec![(0, 1.0), (60_000, 2.0), (120_000, 3.0)]),
        ]);
        assert_eq!(compare_result(&ev, frame, &ok), Ok(()));
        let unsorted = QueryValue::Matrix(vec![
            rs("2", vec![(0, 1.0), (60_000, 2.0), (120_000, 3.0)]),
            rs("1", vec![(0, 1.0), (120_000, 3.0)]),
        ]);
        assert!(
            compare_result(&ev, frame, &unsorted)
                .unwrap_err()
                .contains("sorted")
        );
        let gap = QueryValue::Matrix(vec![
            rs("1", vec![(0, 1.0), (60_000, 2.0), (120_000, 3.0)]),
            rs("2", vec![(0, 1.0), (60_000, 2.0), (120_000, 3.0)]),
        ]);
        assert!(
            compare_result(&ev, frame, &gap)
                .unwrap_err()
                .contains("expected 2 float points")
        );
        let ts = QueryValue::Matrix(vec![
            rs("1", vec![(0, 1.0), (60_000, 3.0)]),
            rs("2", vec![(0, 1.0), (60_000, 2.0), (120_000, 3.0)]),
        ]);
        assert!(
            compare_result(&ev, frame, &ts)
                .unwrap_err()
                .contains("timestamp")
        );
    }

    #[test]
    fn annotations_and_failures() {
        let r = |w: &[&str], i: &[&str]| QueryResult {
            value: QueryValue::Vector(vec![]),
            warnings: w.iter().map(|s| s.to_string()).collect(),
            infos: i.iter().map(|s| s.to_string()).collect(),
            sources: vec![],
        };
        let ev = eval_of(
            "eval instant at 1m foo\n  expect warn msg: PromQL warning: x (1:1)\n  expect no_info\n",
        );
        assert_eq!(
            check_annotations(&ev, &r(&["PromQL warning: x (1:1)"], &[])),
            Ok(())
        );
        assert!(check_annotations(&ev, &r(&[], &[])).is_err());
        assert!(
            check_annotations(
                &ev,
                &r(&["PromQL warning: x (1:1)", "PromQL warning: y"], &[])
            )
            .is_err()
        );
        assert!(
            check_annotations(&ev, &r(&["PromQL warning: x (1:1)"], &["PromQL info: z"])).is_err()
        );
        // No expectations: annotations are not checked.
        let ev = eval_of("eval instant at 1m foo\n");
        assert_eq!(check_annotations(&ev, &r(&["w"], &["i"])), Ok(()));
        let ev = eval_of("eval_warn instant at 1m foo\n");
        assert!(check_annotations(&ev, &r(&[], &["i"])).is_err());

        let ev = eval_of("eval instant at 1m foo\n  expect fail msg: bad thing\n");
        assert_eq!(check_expected_failure(&ev, "bad thing"), Ok(()));
        assert!(check_expected_failure(&ev, "other").is_err());
        let ev = eval_of("eval instant at 1m foo\n  expect fail regex: bad|worse\n");
        assert_eq!(check_expected_failure(&ev, "a worse thing"), Ok(()));
        let ev = eval_of("eval_fail instant at 1m foo\n  expected_fail_regexp ^bad\n");
        assert_eq!(check_expected_failure(&ev, "bad thing"), Ok(()));
        assert!(check_expected_failure(&ev, "a bad thing").is_err());
    }

    /// A `load` goes through validation, the WAL and the head (and with `persist` into
    /// the Delta tables): every float point is a row of `samples`, the stale marker keeps
    /// its bits, histogram points are left out and their series remembered.
    #[tokio::test]
    async fn load_goes_through_the_write_path() {
        for persist in [false, true] {
            let mut env = Env::open().await.unwrap();
            let dir = env._dir.0.clone();
            let script = parse::parse_script(
                "load 1m\n  a{x=\"1\", y=\"é \\\"q\\\"\"} 1 _ stale 2+1x2\n  b 1 {{count:1}} 3\n",
            );
            let Some(Command::Load(l)) = script.commands.first() else {
                panic!("no load: {:?}", script.errors)
            };
            env.load(l, persist).await.unwrap();
            let batches = env
                .ctx
                .sql(
                    "SELECT metric_name, CAST(timestamp AS BIGINT) / 1000 AS t, value \
                     FROM samples ORDER BY metric_name, t",
                )
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
            use datafusion::arrow::compute::cast;
            use datafusion::arrow::datatypes::DataType;
            let mut rows = vec![];
            for b in &batches {
                let names = cast(b.column(0), &DataType::Utf8).unwrap();
                let names = names.as_any().downcast_ref::<StringArray>().unwrap();
                let ts = cast(b.column(1), &DataType::Int64).unwrap();
                let ts = ts.as_any().downcast_ref::<Int64Array>().unwrap();
                let vs = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
                for i in 0..b.num_rows() {
                    rows.push((
                        names.value(i).to_string(),
                        ts.value(i),
                        vs.value(i).to_bits(),
                    ));
                }
            }
            let f = |v: f64| v.to_bits();
            assert_eq!(
                rows,
                vec![
                    ("a".to_string(), 0, f(1.0)),
                    ("a".to_string(), 120_000, parse::STALE_NAN_BITS),
                    ("a".to_string(), 180_000, f(2.0)),
                    ("a".to_string(), 240_000, f(3.0)),
                    ("a".to_string(), 300_000, f(4.0)),
                    ("b".to_string(), 0, f(1.0)),
                    ("b".to_string(), 120_000, f(3.0)),
                ],
                "persist={persist}"
            );
            assert_eq!(
                env.histogram_series,
                vec![vec![("__name__".to_string(), "b".to_string())]]
            );
            assert!(dir.exists());
            drop(env);
            assert!(!dir.exists(), "the temporary directory is removed");
        }
    }

    #[test]
    fn report_rendering() {
        let r = FileReport {
            name: "x.test".into(),
            cases: vec![
                CaseResult {
                    line: 3,
                    query: "foo".into(),
                    outcome: Outcome::Passed,
                },
                CaseResult {
                    line: 7,
                    query: "bar".into(),
                    outcome: Outcome::Failed("expected 1\nbut got 2".into()),
                },
                CaseResult {
                    line: 9,
                    query: "h".into(),
                    outcome: Outcome::Skipped,
                },
            ],
            errors: vec![],
        };
        assert_eq!(
            r.render(),
            "x.test: 1 passed, 1 failed, 1 skipped\n  x.test:7 bar: expected 1\\nbut got 2\n  skipped: x.test:9 h (native histograms)"
        );
    }
}
