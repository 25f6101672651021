//! Rules in the server (`strata_rules` evaluates them; `crate::ruler` holds each tenant's
//! groups): groups run on their slots, querying the tenant's PromQL engine and writing
//! recorded series, `ALERTS` and `ALERTS_FOR_STATE` through its write path.
//! `GET /api/v1/rules` and `GET /api/v1/alerts` answer in Prometheus's shapes
//! (`web/api/v1/api.go`: `rules`, `alerts`), so Grafana lists them.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use datafusion::prelude::SessionContext;
use serde_json::{Value, json};
use strata_ingest::Ingester;
use strata_rules::group::{Group, Rule};
use strata_rules::{Labels, Sample};

/// Answers rules' queries with a tenant's PromQL engine (a session in the rules' own
/// memory pool: `crate::ruler::RulesBudget::session`), each cancelled after the timeout,
/// if any.
pub(crate) struct EngineQuerier(pub SessionContext, pub Option<std::time::Duration>);

#[async_trait::async_trait]
impl strata_rules::Querier for EngineQuerier {
    async fn query(&self, expr: &str, t_ms: i64) -> Result<Vec<Sample>, String> {
        let opts = strata_promql::QueryOptions {
            timeout: self.1,
            ..Default::default()
        };
        let r = strata_promql::instant_query(&self.0, expr, t_ms, &opts)
            .await
            .map_err(|e| e.to_string())?;
        match r.value {
            strata_promql::QueryValue::Vector(v) => {
                Ok(v.into_iter().map(|s| (s.labels, s.v)).collect())
            }
            strata_promql::QueryValue::Scalar { v, .. } => Ok(vec![(vec![], v)]),
            _ => Err("rule result is not a vector or scalar".into()),
        }
    }

    async fn query_range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<(Labels, Vec<(i64, f64)>)>, String> {
        // Anomaly baselines read weeks at their resolution: more than a dashboard's 11,000
        // points (file.rs caps a rule's history at 100,000 steps).
        let opts = strata_promql::QueryOptions {
            max_points_per_series: 100_001,
            timeout: self.1,
            ..Default::default()
        };
        let r = strata_promql::range_query(&self.0, expr, start_ms, end_ms, step_ms, &opts)
            .await
            .map_err(|e| e.to_string())?;
        match r.value {
            strata_promql::QueryValue::Matrix(m) => {
                Ok(m.into_iter().map(|s| (s.labels, s.points)).collect())
            }
            _ => Err("range query result is not a matrix".into()),
        }
    }
}

/// Writes rules' output through a tenant's write path (protocol `rules`).
pub(crate) struct IngesterAppender(pub Arc<Ingester>);

#[async_trait::async_trait]
impl strata_rules::Appender for IngesterAppender {
    async fn append(&self, samples: Vec<(Labels, i64, f64)>) -> Result<(), String> {
        let mut v = strata_ingest::receive::remote_write::Validated::default();
        let now = crate::server::now_ms();
        for (labels, t, value) in samples {
            v.push(
                &labels,
                vec![strata_ingest::model::Sample {
                    timestamp_ms: t,
                    value,
                }],
                self.0.limits(),
                now,
            );
        }
        let out = self
            .0
            .write(v, "rules", None)
            .await
            .map_err(|e| e.to_string())?;
        match out.first_error {
            Some(e) if out.rejected > 0 => Err(format!("{} samples not stored: {e}", out.rejected)),
            _ => Ok(()),
        }
    }
}

/// RFC 3339 with ms, UTC, as Prometheus prints times in these APIs (and Alertmanager
/// takes them).
pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A label set as a JSON object.
fn object(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, which Prometheus uses for an alert's value.
fn go_e(v: f64) -> String {
    if !v.is_finite() {
        return match v {
            x if x.is_nan() => "NaN".into(),
            x if x > 0.0 => "+Inf".into(),
            _ => "-Inf".into(),
        };
    }
    let s = format!("{v:e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

fn alert_json(a: &strata_rules::alerting::Alert) -> Value {
    let mut o = json!({
        "labels": object(&a.labels),
        "annotations": object(&a.annotations),
        "state": a.state.as_str(),
        "activeAt": rfc3339(a.active_at_ms),
        "value": go_e(a.value),
    });
    if let Some(k) = a.keep_firing_since_ms {
        o["keepFiringSince"] = json!(rfc3339(k));
    }
    o
}

/// `GET /api/v1/rules` parameters (Prometheus's): `type=alert|record`, `rule_name[]`,
/// `rule_group[]`, `file[]`, `exclude_alerts`.
struct RuleFilters<'a> {
    names: Vec<&'a str>,
    groups: Vec<&'a str>,
    files: Vec<&'a str>,
    kind: Option<&'a str>,
    exclude_alerts: bool,
}

impl<'a> RuleFilters<'a> {
    fn of(params: &'a [(String, String)]) -> Self {
        let all = |k: &str| -> Vec<&'a str> {
            params
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        RuleFilters {
            names: all("rule_name[]"),
            groups: all("rule_group[]"),
            files: all("file[]"),
            kind: params
                .iter()
                .find(|(n, _)| n == "type")
                .map(|(_, v)| v.as_str()),
            exclude_alerts: params
                .iter()
                .any(|(n, v)| n == "exclude_alerts" && v == "true"),
        }
    }
}

/// One group of `GET /api/v1/rules`, or `None` when the filters leave it out; built under
/// the group's lock, so that nothing of the group is copied but what is shown.
fn group_json(g: &Group, f: &RuleFilters<'_>) -> Option<Value> {
    if (!f.groups.is_empty() && !f.groups.contains(&g.name.as_str()))
        || (!f.files.is_empty() && !f.files.contains(&g.file.as_str()))
    {
        return None;
    }
    let mut rules = vec![];
    for (r, h) in g.rules.iter().zip(&g.health) {
        if !f.names.is_empty() && !f.names.contains(&r.name()) {
            continue;
        }
        let mut o = json!({
            "name": r.name(),
            "query": r.expr(),
            "health": h.as_str(),
            "lastError": h.last_error.clone().unwrap_or_default(),
            "evaluationTime": h.evaluation_seconds,
            "lastEvaluation": h.last_evaluation_ms.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        });
        match r {
            Rule::Recording(rec) => {
                if f.kind == Some("alert") {
                    continue;
                }
                o["type"] = json!("recording");
                o["labels"] = object(&rec.labels);
            }
            Rule::Alerting(_) | Rule::Anomaly(_) => {
                if f.kind == Some("record") {
                    continue;
                }
                let a = r.alerting().expect("an alerting rule");
                if let Rule::Anomaly(an) = r {
                    let st = an.status();
                    o["anomaly"] = json!({
                        "sensitivity": an.sensitivity,
                        "resolution": an.resolution.as_secs_f64(),
                        "history": an.history.as_secs_f64(),
                        "refitInterval": an.refit_interval.as_secs_f64(),
                        "baselines": st.series,
                        "seriesWithoutBaseline": st.unfitted,
                        "methods": st.methods.iter().map(|(m, n)| (m.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
                        "fittedAt": st.fitted_at_ms.map(rfc3339),
                        "fitting": st.running,
                        "lastFitError": st.last_error.unwrap_or_default(),
                    });
                }
                o["type"] = json!("alerting");
                o["state"] = json!(a.state().as_str());
                o["duration"] = json!(a.hold.as_secs_f64());
                o["keepFiringFor"] = json!(a.keep_firing_for.as_secs_f64());
                o["labels"] = object(&a.labels);
                o["annotations"] = object(&a.annotations);
                if !f.exclude_alerts {
                    o["alerts"] = Value::Array(a.alerts().iter().map(alert_json).collect());
                }
            }
        }
        rules.push(o);
    }
    if rules.is_empty() && (f.kind.is_some() || !f.names.is_empty()) {
        return None;
    }
    Some(json!({
        "name": g.name,
        "file": g.file,
        "rules": rules,
        "interval": g.interval.as_secs_f64(),
        "limit": g.limit,
        "evaluationTime": g.evaluation_seconds,
        "lastEvaluation": g.last_evaluation_ms.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        "missedIterations": g.missed_iterations,
    }))
}

/// The state of the handlers: a tenant's ruler.
type Groups = Arc<crate::ruler::Ruler>;

async fn rules_handler(
    State(groups): State<Groups>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let t = params
        .iter()
        .find(|(n, _)| n == "type")
        .map(|(_, v)| v.as_str());
    if let Some(t) = t
        && t != "alert"
        && t != "record"
    {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"status": "error", "errorType": "bad_data", "error": format!("unsupported type {t:?}: use alert or record")})),
        )
            .into_response();
    }
    let filters = RuleFilters::of(&params);
    let mut out = vec![];
    for g in groups.groups().await {
        out.extend(group_json(&*g.lock().await, &filters));
    }
    axum::Json(json!({"status": "success", "data": {"groups": out}})).into_response()
}

async fn alerts_handler(State(groups): State<Groups>) -> Response {
    let mut alerts = vec![];
    for g in groups.groups().await {
        for r in &g.lock().await.rules {
            if let Some(a) = r.alerting() {
                alerts.extend(
                    a.alerts()
                        .iter()
                        .filter(|a| a.state != strata_rules::alerting::AlertState::Inactive)
                        .map(alert_json),
                );
            }
        }
    }
    axum::Json(json!({"status": "success", "data": {"alerts": alerts}})).into_response()
}

/// `GET /api/v1/rules` and `GET /api/v1/alerts` over a tenant's ruler.
pub fn router(groups: Groups) -> Router {
    Router::new()
        .route("/api/v1/rules", get(rules_handler))
        .route("/api/v1/alerts", get(alerts_handler))
        .with_state(groups)
}

#[cfg(test)]
mod tests {
    #[test]
    fn alert_values_print_as_go_does() {
        assert_eq!(super::go_e(2.0), "2e+00");
        assert_eq!(super::go_e(0.4567), "4.567e-01");
        assert_eq!(super::go_e(123456.0), "1.23456e+05");
    }
}
