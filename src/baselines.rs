//! Anomaly rules' baselines in the Delta table `anomaly_baselines` of a tenant's data
//! directory, so that a restart neither loses them nor refits them all at once.
//!
//! One row per rule key and series:
//!
//! | column | type | |
//! |---|---|---|
//! | `rule` | string | the rule's key, `<file>;<group>;<name>;<hash of expr, resolution, history>` |
//! | `series` | string | the series' labels as a JSON object, sorted by name, no `__name__` |
//! | `method` | string | `mstl_weekly`, `mstl_daily` or `median_mad` |
//! | `fitted_at` | timestamp (µs, UTC) | when it was fitted |
//! | `step_ms` | long | the profile's slot length, ms |
//! | `level` | double | the trend's level, the series' unit |
//! | `sigma` | double | the residuals' robust standard deviation, the series' unit |
//! | `points` | long | points the fit saw |
//! | `profile` | array<double> | the seasonal profile, slot `k` for `(t / step_ms) mod len = k` |
//!
//! A refit replaces a rule's rows in one commit (Delta's `replaceWhere` on `rule`).

use std::sync::Arc;

use arrow::array::{
    AsArray, Float64Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::prelude::{col, lit};
use deltalake::DeltaTable;
use deltalake::kernel::{ArrayType, DataType, StructField};
use deltalake::protocol::SaveMode;
use futures::TryStreamExt;
use strata_rules::Labels;
use strata_rules::anomaly::{Baseline, Method};

/// The table's name under the data directory.
pub const TABLE: &str = "anomaly_baselines";

/// The `anomaly_baselines` table of one tenant.
pub struct DeltaBaselines {
    /// Held across a save, so that saves commit one at a time.
    table: tokio::sync::Mutex<DeltaTable>,
}

impl DeltaBaselines {
    /// Opens (or creates) the table under `data_dir`.
    ///
    /// # Errors
    /// Storage or Delta errors, as a message.
    pub async fn open(data_dir: &strata_ingest::storage::DataDir) -> Result<Self, String> {
        let table = data_dir
            .open_table(
                TABLE,
                vec![
                    StructField::new("rule", DataType::STRING, false),
                    StructField::new("series", DataType::STRING, false),
                    StructField::new("method", DataType::STRING, false),
                    StructField::new("fitted_at", DataType::TIMESTAMP, false),
                    StructField::new("step_ms", DataType::LONG, false),
                    StructField::new("level", DataType::DOUBLE, false),
                    StructField::new("sigma", DataType::DOUBLE, false),
                    StructField::new("points", DataType::LONG, false),
                    StructField::new(
                        "profile",
                        DataType::from(ArrayType::new(DataType::DOUBLE, true)),
                        false,
                    ),
                ],
                &[],
            )
            .await
            .map_err(|e| format!("opening {TABLE}: {e}"))?;
        Ok(DeltaBaselines {
            table: tokio::sync::Mutex::new(table),
        })
    }
}

fn labels_json(labels: &Labels) -> String {
    let mut sorted = labels.clone();
    sorted.sort();
    serde_json::Value::Object(
        sorted
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect(),
    )
    .to_string()
}

fn labels_of(json: &str) -> Result<Labels, String> {
    let map: std::collections::BTreeMap<String, String> =
        serde_json::from_str(json).map_err(|e| format!("series {json:?}: {e}"))?;
    Ok(map.into_iter().collect())
}

#[async_trait::async_trait]
impl strata_rules::BaselineStore for DeltaBaselines {
    async fn load(&self, rule: &str) -> Result<Vec<(Labels, Baseline)>, String> {
        let table = self.table.lock().await.clone();
        if table.version().unwrap_or(0) == 0 {
            return Ok(vec![]);
        }
        let e = |e: &dyn std::fmt::Display| format!("reading {TABLE}: {e}");
        let ctx = deltalake::datafusion::prelude::SessionContext::new();
        table
            .update_datafusion_session(&ctx.state())
            .map_err(|x| e(&x))?;
        let df = ctx
            .read_table(table.table_provider().await.map_err(|x| e(&x))?)
            .map_err(|x| e(&x))?
            .filter(col("rule").eq(lit(rule)))
            .map_err(|x| e(&x))?
            .select_columns(&[
                "series",
                "method",
                "fitted_at",
                "step_ms",
                "level",
                "sigma",
                "points",
                "profile",
            ])
            .map_err(|x| e(&x))?;
        let mut stream = df.execute_stream().await.map_err(|x| e(&x))?;
        let mut out = vec![];
        while let Some(b) = stream.try_next().await.map_err(|x| e(&x))? {
            let text = |i: usize| {
                arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8)
                    .map_err(|x| e(&x))
            };
            let (series, method) = (text(0)?, text(1)?);
            let (series, method) = (series.as_string::<i32>(), method.as_string::<i32>());
            let fitted = arrow::compute::cast(
                b.column(2),
                &arrow::datatypes::DataType::Timestamp(
                    arrow::datatypes::TimeUnit::Microsecond,
                    None,
                ),
            )
            .map_err(|x| e(&x))?;
            let fitted = fitted.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            let int = |i: usize| b.column(i).as_primitive::<arrow::datatypes::Int64Type>();
            let float = |i: usize| b.column(i).as_primitive::<arrow::datatypes::Float64Type>();
            let (step, level, sigma, points) = (int(3), float(4), float(5), int(6));
            let profile = b.column(7).as_list::<i32>();
            for r in 0..b.num_rows() {
                let p = profile.value(r);
                let p = p.as_primitive::<arrow::datatypes::Float64Type>();
                out.push((
                    labels_of(series.value(r))?,
                    Baseline {
                        method: Method::parse(method.value(r))
                            .ok_or_else(|| format!("unknown method {:?}", method.value(r)))?,
                        fitted_at_ms: fitted.value(r) / 1000,
                        step_ms: step.value(r),
                        level: level.value(r),
                        profile: (0..p.len()).map(|i| p.value(i)).collect(),
                        sigma: sigma.value(r),
                        points: points.value(r) as usize,
                    },
                ));
            }
        }
        Ok(out)
    }

    async fn save(&self, rule: &str, baselines: &[(Labels, Baseline)]) -> Result<(), String> {
        let e = |e: &dyn std::fmt::Display| format!("writing {TABLE}: {e}");
        let mut table = self.table.lock().await;
        let (mut r, mut s, mut m) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut fitted = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        let (mut step, mut points) = (Int64Builder::new(), Int64Builder::new());
        let (mut level, mut sigma) = (Float64Builder::new(), Float64Builder::new());
        let schema = table
            .snapshot()
            .map_err(|x| e(&x))?
            .snapshot()
            .arrow_schema();
        let item = match schema.field_with_name("profile").map(|f| f.data_type()) {
            Ok(arrow::datatypes::DataType::List(f)) => f.clone(),
            _ => return Err(e(&"profile is not a list column")),
        };
        let mut profile = ListBuilder::new(Float64Builder::new()).with_field(item);
        for (labels, b) in baselines {
            r.append_value(rule);
            s.append_value(labels_json(labels));
            m.append_value(b.method.as_str());
            fitted.append_value(b.fitted_at_ms * 1000);
            step.append_value(b.step_ms);
            level.append_value(b.level);
            sigma.append_value(b.sigma);
            points.append_value(b.points as i64);
            profile.values().append_slice(&b.profile);
            profile.append(true);
        }
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(r.finish()),
                Arc::new(s.finish()),
                Arc::new(m.finish()),
                Arc::new(fitted.finish()),
                Arc::new(step.finish()),
                Arc::new(level.finish()),
                Arc::new(sigma.finish()),
                Arc::new(points.finish()),
                Arc::new(profile.finish()),
            ],
        )
        .map_err(|x| e(&x))?;
        let next = table
            .clone()
            .write(vec![batch])
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(col("rule").eq(lit(rule)))
            .await
            .map_err(|x| e(&x))?;
        *table = next;
        Ok(())
    }
}
