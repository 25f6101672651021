//! SQL functions over the tiers' sketch columns, registered in the engine's session (so
//! also over Flight SQL):
//!
//! ```sql
//! -- p99 of one series over a day, from its 1h buckets' KLL sketches:
//! SELECT kll_quantile(kll_merge(sketch), 0.99) FROM rollup_1h
//! WHERE series_id = 42 AND bucket_end > now() - interval '1 day';
//! -- distinct series of a metric over a month (a union, not a sum of daily counts):
//! SELECT hll_count(hll_union(hll)) FROM rollup_1d_series
//! WHERE metric_name = 'http_requests_total' AND bucket_end > now() - interval '30 days';
//! ```
//!
//! - `kll_merge(binary) -> binary` (aggregate): the merged KLL floats sketch of a group
//!   (nulls skipped; null for a group of none).
//! - `kll_quantile(binary, double) -> double`: the sketch's `q`-quantile, `0 <= q <= 1`
//!   (error bound in [`crate::sketch`]); null for a null or empty sketch.
//! - `hll_union(binary) -> binary` (aggregate): the union of HLL sketches.
//! - `hll_count(binary) -> double`: an HLL sketch's distinct-count estimate.
//!
//! Bytes that are not a sketch of the right kind give an execution error naming the
//! function.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Builder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::sketch;

/// Registers the four functions on `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udaf(AggregateUDF::from(MergeUdaf::new(Kind::Kll)));
    ctx.register_udaf(AggregateUDF::from(MergeUdaf::new(Kind::Hll)));
    ctx.register_udf(ScalarUDF::from(ReadUdf::new(Kind::Kll)));
    ctx.register_udf(ScalarUDF::from(ReadUdf::new(Kind::Hll)));
}

/// Which sketch a function takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Kll,
    Hll,
}

fn fail<T>(f: &str, e: impl std::fmt::Display) -> Result<T> {
    exec_err!("{f}: {e}")
}

/// `kll_merge` / `hll_union`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct MergeUdaf {
    kind: Kind,
    signature: Signature,
}

impl MergeUdaf {
    fn new(kind: Kind) -> MergeUdaf {
        MergeUdaf {
            kind,
            // Any binary type (Delta scans give views): cast in the accumulator.
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for MergeUdaf {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Kll => "kll_merge",
            Kind::Hll => "hll_union",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }
    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(match self.kind {
            Kind::Kll => Box::new(KllAcc(None)),
            Kind::Hll => Box::new(HllAcc(None)),
        })
    }
    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new("sketch", DataType::Binary, true))])
    }
}

/// Calls `f` with the bytes of each non-null value of the first argument (any binary
/// type); an error names the function `name`.
fn each_sketch(
    values: &[ArrayRef],
    name: &str,
    mut f: impl FnMut(&[u8]) -> crate::Result<()>,
) -> Result<()> {
    let b = match values.first().map(|a| cast(a, &DataType::Binary)) {
        Some(Ok(a)) => a,
        Some(Err(e)) => return fail(name, e),
        None => return fail(name, "no argument"),
    };
    let b = b.as_binary::<i32>();
    for i in 0..b.len() {
        if !b.is_null(i)
            && let Err(e) = f(b.value(i))
        {
            return fail(name, e);
        }
    }
    Ok(())
}

/// The merged KLL sketch so far (`None` before the first non-null input).
#[derive(Debug)]
struct KllAcc(Option<sketch::Kll>);

impl Accumulator for KllAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        each_sketch(values, "kll_merge", |bytes| {
            sketch::kll_merge(self.0.get_or_insert_with(sketch::new_kll), bytes)
        })
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(self.0.as_ref().map(|s| s.serialize())))
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.0.as_ref().map_or(0, |s| s.num_retained() * 8)
    }
}

/// The HLL union so far.
struct HllAcc(Option<datasketches::hll::HllUnion>);

impl std::fmt::Debug for HllAcc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HllAcc")
    }
}

impl Accumulator for HllAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        each_sketch(values, "hll_union", |bytes| {
            let s = sketch::hll_read(bytes)?;
            self.0.get_or_insert_with(sketch::new_hll_union).update(&s);
            Ok(())
        })
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(self.0.as_ref().map(|u| {
            u.to_sketch(datasketches::hll::HllType::Hll8).serialize()
        })))
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.0.as_ref().map_or(0, |u| u.estimated_size())
    }
}

/// `kll_quantile` / `hll_count`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ReadUdf {
    kind: Kind,
    signature: Signature,
}

impl ReadUdf {
    fn new(kind: Kind) -> ReadUdf {
        let n = match kind {
            Kind::Kll => 2,
            Kind::Hll => 1,
        };
        // Any binary type and any number: cast in `invoke_with_args`.
        ReadUdf {
            kind,
            signature: Signature::any(n, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ReadUdf {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Kll => "kll_quantile",
            Kind::Hll => "hll_count",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let types = [DataType::Binary, DataType::Float64];
        let mut arrays: Vec<ArrayRef> = vec![];
        for (a, t) in args.args.iter().zip(types) {
            match cast(&a.to_array(n)?, &t) {
                Ok(a) => arrays.push(a),
                Err(e) => return fail(self.name(), e),
            }
        }
        let b = arrays[0].as_binary::<i32>();
        let mut out = Float64Builder::with_capacity(n);
        for i in 0..n {
            if b.is_null(i) {
                out.append_null();
                continue;
            }
            match self.kind {
                Kind::Kll => {
                    let q = arrays[1].as_primitive::<arrow::datatypes::Float64Type>();
                    if q.is_null(i) {
                        out.append_null();
                        continue;
                    }
                    let s = match sketch::kll_read(b.value(i)) {
                        Ok(s) => s,
                        Err(e) => return fail("kll_quantile", e),
                    };
                    match sketch::kll_quantile(&s, q.value(i)) {
                        Ok(v) => out.append_option(v),
                        Err(e) => return fail("kll_quantile", e),
                    }
                }
                Kind::Hll => match sketch::hll_read(b.value(i)) {
                    Ok(s) => out.append_value(s.estimate()),
                    Err(e) => return fail("hll_count", e),
                },
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::BinaryBuilder;
    use datafusion::arrow::record_batch::RecordBatch;

    use super::*;

    fn binary(bytes: &[Option<Vec<u8>>]) -> ArrayRef {
        let mut b = BinaryBuilder::new();
        for x in bytes {
            b.append_option(x.as_deref());
        }
        Arc::new(b.finish())
    }

    #[tokio::test]
    async fn merged_sketches_answer_in_sql_and_bad_bytes_are_named() {
        let ctx = SessionContext::new();
        register(&ctx);
        // Two KLL sketches: 1..=100 and 101..=200; two HLLs of ids 0..60 and 40..100.
        let mut rows = vec![];
        for part in 0..2 {
            let mut k = sketch::new_kll();
            let mut h = sketch::new_hll();
            for i in 1..=100 {
                sketch::kll_update(&mut k, (part * 100 + i) as f64);
            }
            for id in (part * 40)..(part * 40 + 60) {
                h.update(id as i64);
            }
            rows.push((sketch::kll_bytes(&k), Some(h.serialize())));
        }
        rows.push((None, None));
        let batch = RecordBatch::try_from_iter(vec![
            (
                "k",
                binary(&rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>()),
            ),
            (
                "h",
                binary(&rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>()),
            ),
        ])
        .unwrap();
        ctx.register_batch("t", batch).unwrap();
        let out = ctx
            .sql(
                "SELECT kll_quantile(kll_merge(k), 0.5), kll_quantile(kll_merge(k), 1.0), \
                 hll_count(hll_union(h)) FROM t",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let v = |c: usize| {
            out[0]
                .column(c)
                .as_primitive::<arrow::datatypes::Float64Type>()
                .value(0)
        };
        // Under k = 200 items the sketch is exact: the median of 1..=200 (inclusive rank)
        // is 100, the maximum 200; 100 distinct ids.
        assert_eq!((v(0), v(1), v(2).round()), (100.0, 200.0, 100.0));
        let e = ctx
            .sql("SELECT kll_quantile(h, 0.5) FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("kll_quantile"), "{e}");
        let e = ctx
            .sql("SELECT kll_quantile(k, 2.0) FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 0 and 1"), "{e}");
    }
}
