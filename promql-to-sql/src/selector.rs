//! Series selection: which series of the catalog a PromQL selector's label matchers pick.
//!
//! Semantics follow Prometheus (`model/labels/matcher.go`, `tsdb/querier.go`): a missing
//! label matches as the empty string, regular expressions are fully anchored (the
//! `promql-parser` crate builds them as `^(?:re)$`), and a selector with `or` groups
//! (`{a="1" or b="2"}`) picks a series if any group matches. The metric name, when a
//! selector fixes it, is pushed into the scan of the `series` table (a filter on
//! `metric_name`) so only that metric's rows are read.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::prelude::{Expr, SessionContext, ident, lit};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr as PromExpr, VectorSelector};

use crate::{PromqlError, Result};

/// The label holding the metric name.
const NAME: &str = "__name__";

pub use strata_engine::series_index::SeriesLabels;
use strata_engine::series_index::{Narrowing, SeriesIndex};

/// Parses a series selector as `match[]` parameters carry it (`up`, `{job="x"}`,
/// `http_requests_total{code=~"5.."}`).
///
/// # Errors
/// [`PromqlError::BadData`] when the text does not parse, or parses to something other
/// than an instant vector selector (a range selector, a function call, ...).
pub fn parse_selector(text: &str) -> Result<VectorSelector> {
    match promql_parser::parser::parse(text) {
        Ok(PromExpr::VectorSelector(vs)) => Ok(vs),
        Ok(_) => Err(PromqlError::BadData(format!(
            "invalid series selector {text:?}: not an instant vector selector"
        ))),
        Err(e) => Err(PromqlError::BadData(format!(
            "invalid series selector {text:?}: {e}"
        ))),
    }
}

fn matcher_ok(m: &Matcher, s: &SeriesLabels) -> bool {
    let v = s.get(&m.name);
    match &m.op {
        MatchOp::Equal => v == m.value,
        MatchOp::NotEqual => v != m.value,
        MatchOp::Re(r) => r.is_match(v),
        MatchOp::NotRe(r) => !r.is_match(v),
    }
}

/// Whether series `s` is picked by selector `vs`.
pub fn matches(vs: &VectorSelector, s: &SeriesLabels) -> bool {
    let name_ok = vs.name.as_deref().is_none_or(|n| s.get(NAME) == n);
    if !vs.matchers.or_matchers.is_empty() {
        return name_ok
            && vs
                .matchers
                .or_matchers
                .iter()
                .any(|group| group.iter().all(|m| matcher_ok(m, s)));
    }
    name_ok && vs.matchers.matchers.iter().all(|m| matcher_ok(m, s))
}

/// The metric name a selector fixes, if any (`up{...}` or `{__name__="up"}`).
fn fixed_name(vs: &VectorSelector) -> Option<String> {
    if let Some(n) = &vs.name {
        return Some(n.clone());
    }
    if !vs.matchers.or_matchers.is_empty() {
        return None;
    }
    vs.matchers
        .matchers
        .iter()
        .find(|m| m.name == NAME && matches!(m.op, MatchOp::Equal))
        .map(|m| m.value.clone())
}

/// A label value predicate of a regex matcher, for [`Narrowing::Matching`].
type ValuePredicate<'a> = Box<dyn Fn(&str) -> bool + Send + Sync + 'a>;

/// A timestamp literal for the tables' `timestamp` column (µs, UTC) from ms.
pub(crate) fn ts_lit(ms: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(ms.saturating_mul(1000)),
        Some(Arc::from("UTC")),
    ))
}

/// The series of the catalog picked by any of `selectors`, sorted by labels, found in the
/// session's [`SeriesIndex`] (postings by metric name; other matchers are evaluated on the
/// metric's series). With `range = Some((start_ms, end_ms))` (ms since the epoch,
/// inclusive), only series with at least one sample in that range are returned, as
/// Prometheus's `/api/v1/series` does.
///
/// # Errors
/// [`PromqlError::Execution`] when the tables cannot be read or the session has no series
/// index (it is registered by `strata_engine::Engine`).
pub async fn select_series(
    ctx: &SessionContext,
    selectors: &[VectorSelector],
    range: Option<(i64, i64)>,
) -> Result<Vec<Arc<SeriesLabels>>> {
    Ok(select_series_counted(ctx, selectors, range).await?.0)
}

/// As [`select_series`], also giving the number of candidate series the matchers were
/// evaluated on (all series of the metric names the selectors fix, or all series).
///
/// # Errors
/// As [`select_series`].
pub async fn select_series_counted(
    ctx: &SessionContext,
    selectors: &[VectorSelector],
    range: Option<(i64, i64)>,
) -> Result<(Vec<Arc<SeriesLabels>>, usize)> {
    let names: Option<Vec<String>> = selectors.iter().map(fixed_name).collect();
    let index = ctx
        .state_ref()
        .read()
        .config()
        .get_extension::<SeriesIndex>()
        .ok_or_else(|| {
            PromqlError::Execution(DataFusionError::Plan(
                "the session has no series index".into(),
            ))
        })?;
    // One selector without `or` groups: its matchers that need a non-empty value narrow
    // the candidates by postings first (every matcher is still evaluated below).
    let narrowing: &[Matcher] = match selectors {
        [vs] if vs.matchers.or_matchers.is_empty() => &vs.matchers.matchers,
        _ => &[],
    };
    let accepts: Vec<(&str, ValuePredicate<'_>)> = narrowing
        .iter()
        .filter_map(|m| match &m.op {
            MatchOp::Re(r) if !r.is_match("") => {
                Some((m.name.as_str(), Box::new(move |v: &str| r.is_match(v)) as _))
            }
            _ => None,
        })
        .collect();
    let narrow: Vec<Narrowing<'_>> = narrowing
        .iter()
        // `__name__ = x` is already in `names` (postings by metric name).
        .filter(|m| matches!(m.op, MatchOp::Equal) && !m.value.is_empty() && m.name != NAME)
        .map(|m| Narrowing::Equal(m.name.as_str(), m.value.as_str()))
        .chain(
            accepts
                .iter()
                .map(|(n, f)| Narrowing::Matching(n, f.as_ref())),
        )
        .collect();
    let (candidates, count) = index
        .series_narrowed(names.as_deref(), &narrow)
        .await
        .map_err(|e| match e {
            strata_engine::EngineError::DataFusion(e) => PromqlError::Execution(e),
            e => PromqlError::Execution(DataFusionError::External(Box::new(e))),
        })?;
    let mut out: Vec<Arc<SeriesLabels>> = candidates
        .into_iter()
        .filter(|s| selectors.iter().any(|vs| matches(vs, s)))
        .collect();
    if let Some((start, end)) = range
        && !out.is_empty()
    {
        let mut df = ctx.table("samples").await?.filter(
            ident("timestamp")
                .gt_eq(ts_lit(start))
                .and(ident("timestamp").lt_eq(ts_lit(end))),
        )?;
        if let Some(n) = &names {
            df = df.filter(
                ident("metric_name").in_list(n.iter().map(|x| lit(x.clone())).collect(), false),
            )?;
        }
        let ids: HashSet<i64> = df
            .select_columns(&["series_id"])?
            .distinct()?
            .collect()
            .await?
            .iter()
            .flat_map(|b| {
                let a = b.column(0).as_any().downcast_ref::<Int64Array>();
                a.map(|a| a.values().to_vec()).unwrap_or_default()
            })
            .collect();
        out.retain(|s| ids.contains(&s.series_id));
    }
    Ok((out, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, &str)]) -> SeriesLabels {
        let mut labels: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        labels.sort();
        SeriesLabels {
            series_id: 0,
            labels,
        }
    }

    #[test]
    fn matcher_semantics_follow_prometheus() {
        let up = s(&[("__name__", "up"), ("job", "node"), ("instance", "a:9100")]);
        let pick = |q: &str| matches(&parse_selector(q).unwrap(), &up);
        assert!(pick("up"));
        assert!(!pick("down"));
        assert!(pick(r#"{__name__="up"}"#));
        assert!(pick(r#"up{job="node"}"#));
        assert!(!pick(r#"up{job!="node"}"#));
        // Regexes are anchored.
        assert!(pick(r#"up{job=~"no.*"}"#));
        assert!(!pick(r#"up{job=~"od"}"#));
        assert!(pick(r#"up{job!~"od"}"#));
        // A missing label is the empty string.
        assert!(pick(r#"up{env=""}"#));
        assert!(pick(r#"up{env!="prod"}"#));
        assert!(pick(r#"up{env=~"|dev"}"#));
        assert!(!pick(r#"up{env=~".+"}"#));
        // `or` groups.
        assert!(pick(r#"{job="x" or instance="a:9100"}"#));
        assert!(!pick(r#"{job="x" or instance="b"}"#));
    }

    #[test]
    fn bad_selectors() {
        assert!(parse_selector("up{").is_err());
        let e = parse_selector("rate(up[5m])").unwrap_err();
        assert!(
            e.to_string().contains("not an instant vector selector"),
            "{e}"
        );
        assert!(parse_selector("up[5m]").is_err());
    }
}
