//! Scalar and aggregate UDFs with PromQL's float semantics.
//!
//! SQL's comparison of floats orders NaN (Arrow compares with a total order), and SQL
//! aggregates treat NaN and overflow their own way, so PromQL's operators and
//! aggregations are UDFs that follow Prometheus (`engine.go` `vectorElemBinop`,
//! `aggregation`; `functions.go`; `quantile.go`).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Float64Builder, ListArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, Expr, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

use crate::kernels;

/// A PromQL binary operator on two floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%` (Go `math.Mod`: the sign of the dividend)
    Mod,
    /// `^`
    Pow,
    /// `atan2`
    Atan2,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `>=`
    Ge,
    /// `<=`
    Le,
}

impl BinOp {
    /// Whether it compares (filters, or gives 0/1 with `bool`).
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }

    /// Prometheus `vectorElemBinop`: `(value, keep)`.
    pub fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            BinOp::Add => (l + r, true),
            BinOp::Sub => (l - r, true),
            BinOp::Mul => (l * r, true),
            BinOp::Div => (l / r, true),
            BinOp::Mod => (l % r, true),
            BinOp::Pow => (l.powf(r), true),
            BinOp::Atan2 => (l.atan2(r), true),
            BinOp::Eq => (l, l == r),
            BinOp::Ne => (l, l != r),
            BinOp::Gt => (l, l > r),
            BinOp::Lt => (l, l < r),
            BinOp::Ge => (l, l >= r),
            BinOp::Le => (l, l <= r),
        }
    }
}

/// A float function of one or two Float64 columns, with constant parameters; a `null`
/// result means "no output sample" (the planner filters it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ValueFn {
    /// `l op r`; `bool` gives 1/0; `keep_rhs` keeps the right value when a comparison
    /// passes (a scalar on the left of a comparison with a vector keeps the vector's
    /// value).
    Bin {
        /// The operator.
        op: BinOp,
        /// `bool` modifier.
        bool_: bool,
        /// Keep the right operand's value on a passing comparison.
        keep_rhs: bool,
    },
    /// A math function of [`kernels::eval_math`] with constant parameters (as bits).
    Math(String, Vec<u64>),
    /// A date function of [`kernels::eval_date`] on a timestamp in seconds.
    Date(String),
    /// `limit_ratio`'s sampling: 1 when the label set's hash offset falls in the ratio
    /// (Prometheus `engine.go` `AddRatioSample`), else null; argument is the `Binary`
    /// labels. The ratio's bits.
    Ratio(u64),
}

/// The scalar UDF `prom_value`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ValueUdf {
    f: ValueFn,
    signature: Signature,
}

impl ValueFn {
    /// The expression applying it to `args`.
    pub fn call(self, args: Vec<Expr>) -> Expr {
        let n = args.len();
        ScalarUDF::from(ValueUdf {
            f: self,
            signature: Signature::any(n, Volatility::Immutable),
        })
        .call(args)
    }
}

/// A scalar UDF's arguments, each as an array of the batch's rows (scalars expanded:
/// `ColumnarValue::values_to_arrays` makes arrays of one row when every argument is a
/// scalar, a literal label set say).
///
/// # Errors
/// An argument cannot be expanded.
pub(crate) fn arg_arrays(args: &ScalarFunctionArgs) -> Result<Vec<ArrayRef>> {
    args.args
        .iter()
        .map(|a| a.to_array(args.number_rows))
        .collect()
}

impl ScalarUDFImpl for ValueUdf {
    fn name(&self) -> &str {
        "prom_value"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = arg_arrays(&args)?;
        let mut out = Float64Builder::with_capacity(n);
        let f64s = |i: usize| -> Result<&Float64Array> {
            match arrays
                .get(i)
                .and_then(|a| a.as_any().downcast_ref::<Float64Array>())
            {
                Some(a) => Ok(a),
                None => exec_err!("prom_value: argument {i} is not Float64"),
            }
        };
        match &self.f {
            ValueFn::Bin {
                op,
                bool_,
                keep_rhs,
            } => {
                let (l, r) = (f64s(0)?, f64s(1)?);
                for i in 0..n {
                    if l.is_null(i) || r.is_null(i) {
                        out.append_null();
                        continue;
                    }
                    let (lv, rv) = (l.value(i), r.value(i));
                    let (mut v, keep) = op.apply(lv, rv);
                    if op.is_comparison() && *keep_rhs {
                        v = rv;
                    }
                    if *bool_ {
                        out.append_value(if keep { 1.0 } else { 0.0 });
                    } else if keep {
                        out.append_value(v);
                    } else {
                        out.append_null();
                    }
                }
            }
            ValueFn::Math(name, params) => {
                let params: Vec<f64> = params.iter().map(|b| f64::from_bits(*b)).collect();
                let v = f64s(0)?;
                for i in 0..n {
                    if v.is_null(i) {
                        out.append_null();
                        continue;
                    }
                    match kernels::eval_math(name, v.value(i), &params) {
                        Some(Some(x)) => out.append_value(x),
                        Some(None) => out.append_null(),
                        None => return exec_err!("unknown function {name}"),
                    }
                }
            }
            ValueFn::Date(name) => {
                let v = f64s(0)?;
                for i in 0..n {
                    if v.is_null(i) {
                        out.append_null();
                        continue;
                    }
                    match kernels::eval_date(name, v.value(i)) {
                        Some(x) => out.append_value(x),
                        None => return exec_err!("unknown function {name}"),
                    }
                }
            }
            ValueFn::Ratio(bits) => {
                let ratio = f64::from_bits(*bits);
                let Some(l) = arrays[0].as_binary_opt::<i32>() else {
                    return exec_err!("limit_ratio expects labels");
                };
                for i in 0..n {
                    let h = xxhash_rust::xxh64::xxh64(l.value(i), 0);
                    let off = h as f64 / u64::MAX as f64;
                    let keep = (ratio >= 0.0 && off < ratio) || (ratio < 0.0 && off >= 1.0 + ratio);
                    if keep {
                        out.append_value(1.0);
                    } else {
                        out.append_null();
                    }
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

/// An aggregation of PromQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggFn {
    /// One of the simple aggregations.
    Simple(SimpleAgg),
    /// `quantile(φ, v)`; φ's bits.
    Quantile(u64),
    /// `histogram_quantile(φ, v)` over classic buckets; arguments `(labels, value)`
    /// (the bound is the `le` label); φ's bits.
    HistogramQuantile(u64),
    /// `histogram_fraction(lower, upper, v)` over classic buckets; arguments as for
    /// `HistogramQuantile`; the bounds' bits.
    HistogramFraction(u64, u64),
    /// `quantile(φ, v)` with φ varying by step: arguments `(value, φ)`.
    QuantileDyn,
}

/// The aggregations with a [`kernels::AggState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimpleAgg {
    /// sum
    Sum,
    /// avg
    Avg,
    /// min
    Min,
    /// max
    Max,
    /// count
    Count,
    /// group
    Group,
    /// stddev
    Stddev,
    /// stdvar
    Stdvar,
}

impl SimpleAgg {
    fn kind(self) -> kernels::AggKind {
        match self {
            SimpleAgg::Sum => kernels::AggKind::Sum,
            SimpleAgg::Avg => kernels::AggKind::Avg,
            SimpleAgg::Min => kernels::AggKind::Min,
            SimpleAgg::Max => kernels::AggKind::Max,
            SimpleAgg::Count => kernels::AggKind::Count,
            SimpleAgg::Group => kernels::AggKind::Group,
            SimpleAgg::Stddev => kernels::AggKind::Stddev,
            SimpleAgg::Stdvar => kernels::AggKind::Stdvar,
        }
    }
}

/// The aggregate UDF `prom_agg`: gathers a group's values (and, for
/// `histogram_quantile`, bucket bounds) and reduces them with the kernels. Annotations
/// (non-monotonic buckets, bad `le` labels) go to `notes`, with `pos` appended.
#[derive(Debug)]
pub struct AggUdf {
    f: AggFn,
    signature: Signature,
    notes: Option<(crate::Notes, String)>,
}

impl PartialEq for AggUdf {
    fn eq(&self, o: &Self) -> bool {
        self.f == o.f
    }
}
impl Eq for AggUdf {}
impl std::hash::Hash for AggUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.f.hash(state)
    }
}

impl AggFn {
    /// The aggregate expression over `args` (`value`, or `labels, value`).
    pub fn call(self, args: Vec<Expr>) -> Expr {
        self.call_noting(args, None)
    }

    /// Same, reporting annotations to `notes` (with the expression position `pos`,
    /// e.g. `(1:25)`).
    pub fn call_noting(self, args: Vec<Expr>, notes: Option<(crate::Notes, String)>) -> Expr {
        let n = args.len();
        AggregateUDF::from(AggUdf {
            f: self,
            signature: Signature::any(n, Volatility::Immutable),
            notes,
        })
        .call(args)
    }
}

fn list_field(name: &str) -> FieldRef {
    Arc::new(Field::new(
        name,
        DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true))),
        true,
    ))
}

impl AggregateUDFImpl for AggUdf {
    fn name(&self) -> &str {
        "prom_agg"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Acc {
            f: self.f,
            values: vec![],
            les: vec![],
            notes: self.notes.clone(),
            name: String::new(),
        }))
    }
    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![list_field("values"), list_field("les")])
    }
    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        matches!(self.f, AggFn::Simple(_) | AggFn::Quantile(_))
    }
    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(GroupsAcc {
            f: self.f,
            log: vec![],
            groups: 0,
        }))
    }
}

/// A group's result for the aggregations over values alone ([`AggFn::Simple`],
/// [`AggFn::Quantile`]): `None` for no values (or another `AggFn`). `values` are in
/// arrival order (the Kahan sums depend on it); `quantile` reorders them.
fn reduce_values(f: AggFn, values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    match f {
        AggFn::Simple(k) => {
            let mut st = kernels::AggState::new(k.kind());
            for x in values.iter() {
                st.push(*x);
            }
            Some(st.finish())
        }
        AggFn::Quantile(phi) => Some(kernels::quantile(f64::from_bits(phi), values)),
        _ => None,
    }
}

/// [`Acc`] for many groups at once, for the aggregations over values alone
/// ([`AggFn::Simple`], [`AggFn::Quantile`]): the values are logged with their group in
/// arrival order (one buffer for all groups, no allocation per group) and reduced at the
/// end by the same kernels, each group's values in arrival order (the Kahan sums depend
/// on it). The state has `Acc`'s shape (its `les` lists empty).
#[derive(Debug)]
struct GroupsAcc {
    f: AggFn,
    /// Every value taken, with its group index, in arrival order.
    log: Vec<(u32, f64)>,
    /// The number of groups.
    groups: usize,
}

/// The values of groups `0..n` in arrival order, by group: group `g`'s are
/// `values[offsets[g]..offsets[g + 1]]`.
struct ByGroup {
    offsets: Vec<usize>,
    values: Vec<f64>,
}

impl GroupsAcc {
    fn grow(&mut self, total: usize) -> Result<()> {
        if u32::try_from(total).is_err() {
            return Err(DataFusionError::Execution(format!(
                "{total} groups in one PromQL aggregation"
            )));
        }
        self.groups = self.groups.max(total);
        Ok(())
    }

    /// Takes the values of the groups `emit_to` names (a counting sort of the log by
    /// group, stable), keeping the others' with their groups renumbered from 0.
    fn take(&mut self, emit_to: EmitTo) -> ByGroup {
        let n = match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(k) => k.min(self.groups),
        };
        let mut offsets = vec![0usize; n + 1];
        for (g, _) in &self.log {
            if (*g as usize) < n {
                offsets[*g as usize + 1] += 1;
            }
        }
        for g in 0..n {
            offsets[g + 1] += offsets[g];
        }
        let mut values = vec![0.0; offsets[n]];
        let mut at = offsets.clone();
        let mut rest = vec![];
        for (g, v) in self.log.drain(..) {
            let gi = g as usize;
            if gi < n {
                values[at[gi]] = v;
                at[gi] += 1;
            } else {
                rest.push((g - n as u32, v));
            }
        }
        self.log = rest;
        self.groups -= n;
        ByGroup { offsets, values }
    }
}

impl GroupsAccumulator for GroupsAcc {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups)?;
        let vs = values[0].as_primitive::<Float64Type>();
        self.log.reserve(group_indices.len());
        for (i, g) in group_indices.iter().enumerate() {
            if vs.is_valid(i) && opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i)) {
                self.log.push((*g as u32, vs.value(i)));
            }
        }
        Ok(())
    }
    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        // All groups of a simple aggregation: one pass over the log in arrival order.
        if let (AggFn::Simple(k), EmitTo::All) = (self.f, emit_to) {
            let mut states = vec![kernels::AggState::new(k.kind()); self.groups];
            for (g, v) in self.log.drain(..) {
                states[g as usize].push(v);
            }
            self.groups = 0;
            let out: Float64Array = states
                .into_iter()
                .map(|s| (!s.is_empty()).then(|| s.finish()))
                .collect();
            return Ok(Arc::new(out));
        }
        let ByGroup {
            offsets,
            mut values,
        } = self.take(emit_to);
        let out: Float64Array = (0..offsets.len() - 1)
            .map(|g| reduce_values(self.f, &mut values[offsets[g]..offsets[g + 1]]))
            .collect();
        Ok(Arc::new(out))
    }
    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let ByGroup { offsets, values } = self.take(emit_to);
        let n = offsets.len() - 1;
        let as_i32 = |o: &[usize]| -> Result<OffsetBuffer<i32>> {
            let o = o
                .iter()
                .map(|x| i32::try_from(*x))
                .collect::<std::result::Result<Vec<i32>, _>>()
                .map_err(|_| {
                    DataFusionError::Execution("PromQL aggregation state over 2^31 values".into())
                })?;
            Ok(OffsetBuffer::new(o.into()))
        };
        let item = Arc::new(Field::new_list_field(DataType::Float64, true));
        let values = ListArray::try_new(
            item.clone(),
            as_i32(&offsets)?,
            Arc::new(Float64Array::from(values)),
            None,
        )?;
        let les = ListArray::try_new(
            item,
            OffsetBuffer::new_zeroed(n),
            Arc::new(Float64Array::from(Vec::<f64>::new())),
            None,
        )?;
        Ok(vec![Arc::new(values), Arc::new(les)])
    }
    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups)?;
        let v = values[0].as_list::<i32>();
        for (i, g) in group_indices.iter().enumerate() {
            if v.is_valid(i) {
                let g = *g as u32;
                self.log.extend(
                    v.value(i)
                        .as_primitive::<Float64Type>()
                        .iter()
                        .flatten()
                        .map(|x| (g, x)),
                );
            }
        }
        Ok(())
    }
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let vs = values[0].as_primitive::<Float64Type>();
        let keep = |i: usize| opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i));
        let lists = ListArray::from_iter_primitive::<Float64Type, _, _>((0..vs.len()).map(|i| {
            Some(if vs.is_valid(i) && keep(i) {
                vec![Some(vs.value(i))]
            } else {
                vec![]
            })
        }));
        let les = ListArray::from_iter_primitive::<Float64Type, _, _>(
            (0..vs.len()).map(|_| Some(Vec::<Option<f64>>::new())),
        );
        Ok(vec![Arc::new(lists), Arc::new(les)])
    }
    fn size(&self) -> usize {
        // O(1): DataFusion calls this once per batch.
        std::mem::size_of::<Self>() + 16 * self.log.capacity()
    }
}

#[derive(Debug)]
struct Acc {
    f: AggFn,
    values: Vec<f64>,
    les: Vec<f64>,
    notes: Option<(crate::Notes, String)>,
    name: String,
}

impl Acc {
    fn note(&self, warn: bool, msg: String) {
        if let Some((n, pos)) = &self.notes {
            let mut g = n.lock().unwrap_or_else(|e| e.into_inner());
            let m = format!("{msg} {pos}");
            let list = if warn { &mut g.0 } else { &mut g.1 };
            if !list.contains(&m) {
                list.push(m);
            }
        }
    }
}

fn to_list(v: &[f64]) -> ScalarValue {
    ScalarValue::List(Arc::new(
        ListArray::from_iter_primitive::<Float64Type, _, _>(vec![Some(
            v.iter().map(|x| Some(*x)).collect::<Vec<_>>(),
        )]),
    ))
}

impl Accumulator for Acc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match self.f {
            AggFn::HistogramQuantile(_) | AggFn::HistogramFraction(..) => {
                let les = values[0].as_binary::<i32>();
                let vs = values[1].as_primitive::<Float64Type>();
                for i in 0..vs.len() {
                    if vs.is_null(i) {
                        continue;
                    }
                    let name = crate::labels::get(les.value(i), crate::labels::NAME);
                    if self.name.is_empty() {
                        self.name = name.to_string();
                    }
                    let le = crate::labels::get(les.value(i), "le");
                    let Some(b) = parse_le(le) else {
                        self.note(true, format!(
                            "PromQL warning: bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {name:?}"
                        ));
                        continue;
                    };
                    self.les.push(b);
                    self.values.push(vs.value(i));
                }
            }
            AggFn::QuantileDyn => {
                let vs = values[0].as_primitive::<Float64Type>();
                let ps = values[1].as_primitive::<Float64Type>();
                self.values.extend(vs.iter().flatten());
                if self.les.is_empty()
                    && let Some(p) = ps.iter().flatten().next()
                {
                    self.les.push(p);
                }
            }
            _ => {
                let vs = values[0].as_primitive::<Float64Type>();
                self.values.extend(vs.iter().flatten());
            }
        }
        Ok(())
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (v, l) = (states[0].as_list::<i32>(), states[1].as_list::<i32>());
        for i in 0..v.len() {
            if v.is_valid(i) {
                self.values
                    .extend(v.value(i).as_primitive::<Float64Type>().iter().flatten());
            }
            if l.is_valid(i) {
                self.les
                    .extend(l.value(i).as_primitive::<Float64Type>().iter().flatten());
            }
        }
        Ok(())
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![to_list(&self.values), to_list(&self.les)])
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        let v = match self.f {
            AggFn::Simple(_) | AggFn::Quantile(_) => {
                return Ok(ScalarValue::Float64(reduce_values(
                    self.f,
                    &mut self.values,
                )));
            }
            AggFn::HistogramQuantile(phi) => {
                if self.values.is_empty() {
                    return Ok(ScalarValue::Float64(None));
                }
                let mut b: Vec<(f64, f64)> = self
                    .les
                    .iter()
                    .copied()
                    .zip(self.values.iter().copied())
                    .collect();
                let (v, fixed) = kernels::bucket_quantile(f64::from_bits(phi), &mut b);
                if fixed {
                    self.note(false, format!(
                        "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {:?}",
                        self.name
                    ));
                }
                v
            }
            AggFn::HistogramFraction(lo, hi) => {
                if self.values.is_empty() {
                    return Ok(ScalarValue::Float64(None));
                }
                let mut b: Vec<(f64, f64)> = self
                    .les
                    .iter()
                    .copied()
                    .zip(self.values.iter().copied())
                    .collect();
                kernels::bucket_fraction(f64::from_bits(lo), f64::from_bits(hi), &mut b)
            }
            AggFn::QuantileDyn => {
                if self.values.is_empty() {
                    return Ok(ScalarValue::Float64(None));
                }
                let phi = self.les.first().copied().unwrap_or(f64::NAN);
                kernels::quantile(phi, &mut self.values)
            }
        };
        Ok(ScalarValue::Float64(Some(v)))
    }
    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + 8 * (self.values.capacity() + self.les.capacity())
    }
}

/// Parses a bucket bound as Go's `strconv.ParseFloat` (`+Inf`, `Inf`, `NaN`, exponents);
/// `None` when it is not a number.
pub fn parse_le(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        "" => None,
        _ => s.parse::<f64>().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(f: AggFn) -> GroupsAcc {
        GroupsAcc {
            f,
            log: vec![],
            groups: 0,
        }
    }

    fn floats(a: &ArrayRef) -> Vec<Option<f64>> {
        a.as_primitive::<Float64Type>().iter().collect()
    }

    fn update(a: &mut GroupsAcc, values: &[f64], groups: &[usize], total: usize) {
        let v: ArrayRef = Arc::new(Float64Array::from(values.to_vec()));
        a.update_batch(&[v], groups, None, total).unwrap();
    }

    #[test]
    fn groups_reduce_their_values_in_arrival_order_through_any_phase() {
        // Kahan summation (Prometheus's `sum`) in arrival order: 1e100, 1, -1e100 sums to
        // 1 where a naive sum gives 0, in both groups the values reach in two batches.
        let sum = AggFn::Simple(SimpleAgg::Sum);
        let mut a = acc(sum);
        update(&mut a, &[1e100, 1.0, 5.0], &[0, 1, 2], 3);
        update(&mut a, &[1.0, 1e100, -1e100, -1e100], &[0, 1, 1, 0], 3);
        assert_eq!(
            floats(&a.evaluate(EmitTo::All).unwrap()),
            vec![Some(1.0), Some(1.0), Some(5.0)]
        );
        assert!(a.log.is_empty() && a.groups == 0);
        // A group without values gives null (no sample), a max over the others.
        let mut a = acc(AggFn::Simple(SimpleAgg::Max));
        update(&mut a, &[3.0, 7.0, 2.0], &[0, 2, 0], 3);
        assert_eq!(
            floats(&a.evaluate(EmitTo::All).unwrap()),
            vec![Some(3.0), None, Some(7.0)]
        );
        // The first 2 groups emitted, the third renumbered to 0 and kept.
        let mut a = acc(AggFn::Quantile(0.5f64.to_bits()));
        update(&mut a, &[4.0, 1.0, 9.0, 2.0, 8.0], &[0, 1, 2, 0, 2], 3);
        assert_eq!(
            floats(&a.evaluate(EmitTo::First(2)).unwrap()),
            vec![Some(3.0), Some(1.0)]
        );
        assert_eq!(a.groups, 1);
        assert_eq!(floats(&a.evaluate(EmitTo::All).unwrap()), vec![Some(8.5)]);
        // Two partial phases' states merged by a final one: as one phase.
        let (mut p1, mut p2, mut fin) = (acc(sum), acc(sum), acc(sum));
        update(&mut p1, &[1e100, 2.0], &[0, 1], 2);
        update(&mut p2, &[1.0, -1e100], &[0, 0], 1);
        let s1 = p1.state(EmitTo::All).unwrap();
        let s2 = p2.state(EmitTo::All).unwrap();
        assert_eq!(s1[0].len(), 2);
        assert_eq!(s1[1].len(), 2);
        assert_eq!(s1[1].as_list::<i32>().value(0).len(), 0);
        fin.merge_batch(&s1, &[0, 1], 2).unwrap();
        fin.merge_batch(&s2, &[0], 2).unwrap();
        assert_eq!(
            floats(&fin.evaluate(EmitTo::All).unwrap()),
            vec![Some(1.0), Some(2.0)]
        );
    }
}
