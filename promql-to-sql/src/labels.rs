//! Label sets as one binary column, and the scalar UDF that rewrites them.
//!
//! Inside a PromQL plan every series' labels travel as one `Binary` value: the pairs
//! sorted by name, each written as `name 0xFF value 0xFF` (0xFF never occurs in UTF-8,
//! so the encoding is unambiguous; the same separator Prometheus's `labels.Hash` uses).
//! Equal label sets have equal bytes, so grouping and joining on labels are plain
//! DataFusion hash operations on this column. Empty values are never stored (a label
//! with an empty value is absent, as in Prometheus).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::value::LabelSet;

/// The label holding the metric name.
pub const NAME: &str = "__name__";

/// The metadata labels: the metric name and the type and unit labels of Prometheus's
/// type-and-unit proposal (PROM-39). Operations that drop the metric name drop all
/// three, as Prometheus's `Labels.DropReserved(schema.IsMetadataLabel)` does.
pub const METADATA: [&str; 3] = [NAME, "__type__", "__unit__"];

/// Whether `name` is one of the [`METADATA`] labels.
pub fn is_metadata(name: &str) -> bool {
    METADATA.contains(&name)
}

/// The label that marks a label set's metric name for removal at the end of the query
/// (Prometheus's delayed `__name__` removal, the `DropName` flag of a sample in
/// `engine.go`): operations that drop the name keep it, and the metadata labels, while
/// the query is evaluated, so that `label_replace(rate(x[5m]), "n", "$1", "__name__",
/// "(.*)")` and `sum by (__name__) (rate(...))` can still read it, and two series become
/// equal only in the final answer ([`LabelOp::Finalize`]). Its name starts with byte
/// 0x01, which no ingested label name has (`[a-zA-Z_][a-zA-Z0-9_]*`), so it sorts first.
pub const DROP_MARK: &str = "\u{1}drop_name";

/// The marker pair as it is encoded at the front of a marked label set.
const MARK_BYTES: &[u8] = b"\x01drop_name\xff1\xff";

/// The name of the UDF that marks names for removal ([`LabelOp::DropName`]); other
/// label rewrites are `prom_labels`.
pub const MARK_UDF: &str = "prom_drop_name";

/// Whether an encoded label set is marked for name removal ([`DROP_MARK`]).
pub fn is_marked(b: &[u8]) -> bool {
    b.starts_with(MARK_BYTES)
}
const SEP: u8 = 0xFF;

/// Encodes sorted pairs (empty values skipped).
pub fn encode(labels: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(labels.iter().map(|(a, b)| a.len() + b.len() + 2).sum());
    encode_into(
        labels.iter().map(|(a, b)| (a.as_str(), b.as_str())),
        &mut out,
    );
    out
}

fn encode_into<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, out: &mut Vec<u8>) {
    for (n, v) in pairs {
        if v.is_empty() {
            continue;
        }
        out.extend_from_slice(n.as_bytes());
        out.push(SEP);
        out.extend_from_slice(v.as_bytes());
        out.push(SEP);
    }
}

/// Iterates the `(name, value)` pairs of an encoded label set.
pub fn pairs(b: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    let mut parts = b.split(|c| *c == SEP);
    std::iter::from_fn(move || {
        let n = parts.next()?;
        let v = parts.next()?;
        if n.is_empty() && v.is_empty() {
            return None;
        }
        // Only ever built from `&str`s, so the parts are UTF-8.
        Some((
            std::str::from_utf8(n).unwrap_or(""),
            std::str::from_utf8(v).unwrap_or(""),
        ))
    })
}

/// Decodes an encoded label set.
pub fn decode(b: &[u8]) -> LabelSet {
    pairs(b)
        .filter(|(n, _)| *n != DROP_MARK)
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Every pair of an encoded label set, the [`DROP_MARK`] included ([`decode`] leaves it
/// out).
fn decode_all(b: &[u8]) -> LabelSet {
    pairs(b)
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// The value of label `name` in an encoded set, or `""`.
pub fn get<'a>(b: &'a [u8], name: &str) -> &'a str {
    pairs(b)
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .unwrap_or("")
}

pub use strata_ingest::model::FloatText;

/// [`FloatText`] as a `String`.
pub fn format_value(v: f64) -> String {
    FloatText(v).to_string()
}

/// A rewrite of label sets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LabelOp {
    /// Mark the metric name for removal at the end of the query ([`DROP_MARK`]); a set
    /// without metadata labels is left as it is.
    DropName,
    /// At the end of a query: drop the metadata labels of marked sets, and the mark.
    Finalize,
    /// Keep only these labels (`by`, `on`); the mark too when `__name__` is kept.
    Keep(Vec<String>),
    /// Remove these labels (`without`, `ignoring`; the planner adds `__name__`); the
    /// mark too when `__name__` is removed.
    Drop(Vec<String>),
    /// Two arguments `(labels, one_side_labels)`: copy these labels from the second set
    /// (or delete them when it lacks them), as `group_left(...)`/`group_right(...)` do.
    Include(Vec<String>),
    /// `label_replace(v, dst, replacement, src, regex)` (Prometheus `functions.go`
    /// `funcLabelReplace`): when the fully anchored `regex` matches `src`'s value, set
    /// `dst` to the expanded `replacement` (an empty result deletes `dst`).
    Replace {
        /// Destination label.
        dst: String,
        /// Replacement with `$1`/`${name}` references.
        replacement: String,
        /// Source label.
        src: String,
        /// The regular expression, unanchored as the user wrote it.
        regex: String,
    },
    /// `label_join(v, dst, sep, src...)`: `dst` = the source values joined by `sep`.
    Join {
        /// Destination label.
        dst: String,
        /// Separator.
        sep: String,
        /// Source labels.
        srcs: Vec<String>,
    },
    /// Two arguments `(labels, value)`: set label `.0` to the formatted value
    /// (`count_values`).
    SetFromValue(String),
    /// Set label `.0` to `.1` (empty deletes), e.g. `absent()`'s labels.
    Set(String, String),
}

impl LabelOp {
    fn apply(
        &self,
        b: &[u8],
        other: Option<&[u8]>,
        value: Option<f64>,
        re: Option<&regex::Regex>,
        out: &mut Vec<u8>,
    ) {
        let mut v: Vec<(&str, String)>;
        let pairs_owned = |b: &'_ [u8]| -> Vec<(String, String)> { decode_all(b) };
        match self {
            LabelOp::DropName => {
                if !is_marked(b) && pairs(b).any(|(n, _)| is_metadata(n)) {
                    out.extend_from_slice(MARK_BYTES);
                }
                out.extend_from_slice(b);
            }
            LabelOp::Finalize => {
                if is_marked(b) {
                    encode_into(
                        pairs(&b[MARK_BYTES.len()..]).filter(|(n, _)| !is_metadata(n)),
                        out,
                    )
                } else {
                    out.extend_from_slice(b)
                }
            }
            LabelOp::Keep(names) => {
                let keeps = |n: &str| {
                    names.iter().any(|k| k == n)
                        || (n == DROP_MARK && names.iter().any(|k| k == NAME))
                };
                encode_into(pairs(b).filter(|(n, _)| keeps(n)), out)
            }
            LabelOp::Drop(names) => {
                let drops = |n: &str| {
                    names.iter().any(|k| k == n)
                        || (n == DROP_MARK && names.iter().any(|k| k == NAME))
                };
                encode_into(pairs(b).filter(|(n, _)| !drops(n)), out)
            }
            LabelOp::Include(names) => {
                let o = other.unwrap_or(&[]);
                let mut set = pairs_owned(b);
                for n in names {
                    set.retain(|(k, _)| k != n);
                    let val = get(o, n);
                    if !val.is_empty() {
                        set.push((n.clone(), val.to_string()));
                    }
                }
                set.sort();
                out.extend_from_slice(&encode(&set));
            }
            LabelOp::Replace {
                dst,
                replacement,
                src,
                ..
            } => {
                let Some(re) = re else {
                    out.extend_from_slice(b);
                    return;
                };
                let sv = get(b, src);
                if let Some(caps) = re.captures(sv) {
                    let mut res = String::new();
                    caps.expand(replacement, &mut res);
                    let mut set = pairs_owned(b);
                    set.retain(|(k, _)| k != dst && !(dst == NAME && k == DROP_MARK));
                    if !res.is_empty() {
                        set.push((dst.clone(), res));
                    }
                    set.sort();
                    out.extend_from_slice(&encode(&set));
                } else if dst == NAME && is_marked(b) {
                    // Naming `__name__` as the destination keeps the name, matched or not
                    // (Prometheus: `DropName = false` when `dst` is the metric name).
                    out.extend_from_slice(&b[MARK_BYTES.len()..]);
                } else {
                    out.extend_from_slice(b);
                }
            }
            LabelOp::Join { dst, sep, srcs } => {
                let joined = srcs.iter().map(|s| get(b, s)).collect::<Vec<_>>().join(sep);
                let mut set = pairs_owned(b);
                set.retain(|(k, _)| k != dst && !(dst == NAME && k == DROP_MARK));
                if !joined.is_empty() {
                    set.push((dst.clone(), joined));
                }
                set.sort();
                out.extend_from_slice(&encode(&set));
            }
            LabelOp::SetFromValue(name) | LabelOp::Set(name, _) => {
                let val = match self {
                    LabelOp::Set(_, val) => val.clone(),
                    _ => format_value(value.unwrap_or(f64::NAN)),
                };
                v = pairs(b)
                    .filter(|(n, _)| n != name)
                    .map(|(n, x)| (n, x.to_string()))
                    .collect();
                if !val.is_empty() {
                    v.push((name.as_str(), val));
                }
                v.sort();
                encode_into(v.iter().map(|(a, b)| (*a, b.as_str())), out);
            }
        }
    }

    /// `label_replace`'s regular expression, fully anchored as Prometheus anchors it;
    /// `None` for the other ops.
    ///
    /// # Errors
    /// An invalid regular expression.
    fn regex(&self) -> Result<Option<regex::Regex>> {
        match self {
            LabelOp::Replace { regex, .. } => regex::Regex::new(&format!("^(?s:{regex})$"))
                .map(Some)
                .map_err(|e| {
                    datafusion::error::DataFusionError::Execution(format!(
                        "invalid regular expression in label_replace(): {regex}: {e}"
                    ))
                }),
            _ => Ok(None),
        }
    }

    /// Applies this one-argument rewrite (not [`LabelOp::Include`] or
    /// [`LabelOp::SetFromValue`]) to each encoded label set in `sets`, at plan time, for
    /// series whose labels are known before any sample is read.
    ///
    /// # Errors
    /// An invalid `label_replace` regular expression, or a two-argument op.
    pub fn apply_all(&self, sets: &mut [Vec<u8>]) -> Result<()> {
        if matches!(self, LabelOp::Include(_) | LabelOp::SetFromValue(_)) {
            return exec_err!("prom_labels: {self:?} needs a second argument");
        }
        let re = self.regex()?;
        let mut out = Vec::new();
        for b in sets {
            out.clear();
            self.apply(b, None, None, re.as_ref(), &mut out);
            std::mem::swap(b, &mut out);
        }
        Ok(())
    }

    /// The DataFusion expression applying this rewrite to `args` (one `Binary` label
    /// column, plus the second operand for [`LabelOp::Include`] and
    /// [`LabelOp::SetFromValue`]).
    pub fn call(self, args: Vec<Expr>) -> Expr {
        ScalarUDF::from(LabelUdf::new(self)).call(args)
    }
}

/// The scalar UDF `prom_labels`: applies a [`LabelOp`] to a `Binary` label column.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LabelUdf {
    op: LabelOp,
    signature: Signature,
}

impl LabelUdf {
    /// A UDF for `op`.
    pub fn new(op: LabelOp) -> Self {
        let n = match op {
            LabelOp::Include(_) | LabelOp::SetFromValue(_) => 2,
            _ => 1,
        };
        LabelUdf {
            op,
            signature: Signature::any(n, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for LabelUdf {
    fn name(&self) -> &str {
        match self.op {
            LabelOp::DropName => MARK_UDF,
            _ => "prom_labels",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = crate::udf::arg_arrays(&args)?;
        let Some(labels) = arrays[0].as_binary_opt::<i32>() else {
            return exec_err!(
                "prom_labels expects Binary labels, got {}",
                arrays[0].data_type()
            );
        };
        let other = arrays.get(1).and_then(|a| a.as_binary_opt::<i32>());
        let values = arrays
            .get(1)
            .and_then(|a| a.as_any().downcast_ref::<Float64Array>());
        let re = self.op.regex()?;
        let mut b = BinaryBuilder::with_capacity(n, labels.value_data().len());
        let mut buf = Vec::new();
        for i in 0..n {
            // Rows come in runs of one series (PromQL operators emit series by series):
            // a row with the previous row's inputs gets the previous result.
            if i > 0
                && values.is_none()
                && labels.value(i) == labels.value(i - 1)
                && other.is_none_or(|o| o.value(i) == o.value(i - 1))
            {
                b.append_value(&buf);
                continue;
            }
            buf.clear();
            self.op.apply(
                labels.value(i),
                other.map(|o| o.value(i)),
                values.map(|v| v.value(i)),
                re.as_ref(),
                &mut buf,
            );
            b.append_value(&buf);
        }
        Ok(ColumnarValue::Array(Arc::new(b.finish()) as ArrayRef))
    }
}

/// The identifying labels `info()` matches base series and info series on (Prometheus
/// `info.go`: `instance` and `job`).
pub const INFO_ID_LABELS: [&str; 2] = ["instance", "job"];

/// `(encoded identifying labels, step ms)`: where [`InfoTable::data`] is looked up.
pub type InfoKey = (Vec<u8>, i64);

/// What `info(v, selector)` adds to each base series: the info series found at each step,
/// by identifying labels (see [`InfoUdf`]).
#[derive(Debug)]
pub struct InfoTable {
    /// `(encoded identifying labels, step ms)` → the data labels of the info series there
    /// (already restricted to the selector's data labels when it names some).
    data: std::collections::HashMap<InfoKey, Vec<(String, String)>>,
    /// Matchers on `__name__` choosing the info metrics: base series that are info series
    /// themselves pass through unchanged.
    name_matchers: Vec<promql_parser::label::Matcher>,
    /// The selector's other matchers: each must match the enriched series' label (an
    /// empty value when it has none), else the series is dropped.
    data_matchers: Vec<promql_parser::label::Matcher>,
    /// Keeps the [`INFO_ID_LABELS`] of a label set.
    id_key: LabelOp,
}

impl InfoTable {
    /// The table of the info series' rows `(labels, step ms, sample time)` at the query's
    /// steps: at each step, of several info series with the same name and identifying
    /// labels the one with the latest sample wins; their data labels (all but `__name__`
    /// and the identifying ones, or only those `data_matchers` name) are merged, the
    /// first name in order giving a label that several have.
    pub fn new(
        rows: &[(Vec<u8>, i64, f64)],
        name_matchers: Vec<promql_parser::label::Matcher>,
        data_matchers: Vec<promql_parser::label::Matcher>,
    ) -> Self {
        type ByName<'a> = std::collections::BTreeMap<&'a str, (f64, &'a [u8])>;
        let id_key = LabelOp::Keep(INFO_ID_LABELS.iter().map(|s| s.to_string()).collect());
        let mut found: std::collections::HashMap<InfoKey, ByName> = Default::default();
        for (labels, ts, sample_t) in rows {
            let mut key = vec![];
            id_key.apply(labels, None, None, None, &mut key);
            let slot = found.entry((key, *ts)).or_default();
            let name = get(labels, NAME);
            if slot.get(name).is_none_or(|(t, _)| sample_t > t) {
                slot.insert(name, (*sample_t, labels));
            }
        }
        let wanted: Vec<&str> = data_matchers.iter().map(|m| m.name.as_str()).collect();
        let data = found
            .into_iter()
            .map(|(k, by_name)| {
                let mut data: Vec<(String, String)> = vec![];
                for (n, v) in by_name.values().flat_map(|(_, labels)| pairs(labels)) {
                    let skip = n == NAME
                        || INFO_ID_LABELS.contains(&n)
                        || (!wanted.is_empty() && !wanted.contains(&n))
                        || data.iter().any(|(d, _)| d == n);
                    if !skip {
                        data.push((n.to_string(), v.to_string()));
                    }
                }
                (k, data)
            })
            .collect();
        InfoTable {
            data,
            name_matchers,
            data_matchers,
            id_key,
        }
    }
}

/// The scalar UDF `prom_info(labels, ts)` of PromQL's `info()` (Prometheus `info.go`,
/// `combineWithInfoVector`): a base series' labels with the data labels of the info series
/// that share its identifying labels ([`INFO_ID_LABELS`]) at that step added (a label the
/// base series already has is kept), or null when a data matcher then fails (the row is
/// dropped).
#[derive(Debug)]
pub struct InfoUdf {
    table: Arc<InfoTable>,
    signature: Signature,
}

impl InfoUdf {
    /// A UDF over `table`.
    pub fn new(table: InfoTable) -> Self {
        InfoUdf {
            table: Arc::new(table),
            signature: Signature::any(2, Volatility::Immutable),
        }
    }

    /// `labels` with the info labels at `ts`, `None` when the series is dropped.
    fn enrich(&self, b: &[u8], ts: i64) -> Option<Vec<u8>> {
        let t = &self.table;
        if t.name_matchers.iter().any(|m| m.is_match(get(b, NAME))) {
            return Some(b.to_vec());
        }
        let mut key = vec![];
        t.id_key.apply(b, None, None, None, &mut key);
        let out = match t.data.get(&(key, ts)) {
            Some(data) => {
                let mut set = decode_all(b);
                set.extend(data.iter().filter(|(n, _)| get(b, n).is_empty()).cloned());
                set.sort();
                encode(&set)
            }
            None => b.to_vec(),
        };
        t.data_matchers
            .iter()
            .all(|m| m.is_match(get(&out, &m.name)))
            .then_some(out)
    }
}

impl PartialEq for InfoUdf {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.table, &other.table)
    }
}

impl Eq for InfoUdf {}

impl std::hash::Hash for InfoUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.table), state);
    }
}

impl ScalarUDFImpl for InfoUdf {
    fn name(&self) -> &str {
        "prom_info"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = crate::udf::arg_arrays(&args)?;
        let (Some(labels), Some(ts)) = (
            arrays[0].as_binary_opt::<i32>(),
            arrays[1].as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>(),
        ) else {
            return exec_err!("prom_info expects (Binary labels, Int64 ts)");
        };
        let mut b = BinaryBuilder::with_capacity(n, labels.value_data().len());
        for i in 0..n {
            match self.enrich(labels.value(i), ts.value(i)) {
                Some(v) => b.append_value(v),
                None => b.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(b.finish()) as ArrayRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(p: &[(&str, &str)]) -> Vec<u8> {
        let mut v: Vec<(String, String)> = p
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        encode(&v)
    }

    #[test]
    fn a_literal_label_set_is_rewritten_once_per_row() {
        // All arguments scalar, over a batch of 3 rows (a literal label column after
        // projection push-down): 3 rewritten sets, not one.
        use datafusion::arrow::datatypes::Field;
        let set = ls(&[("__name__", "up"), ("job", "a")]);
        let udf = LabelUdf::new(LabelOp::Drop(vec![NAME.into()]));
        let field = Arc::new(Field::new("labels", DataType::Binary, true));
        let out = udf
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Scalar(
                    datafusion::common::ScalarValue::Binary(Some(set)),
                )],
                arg_fields: vec![field.clone()],
                number_rows: 3,
                return_field: field,
                config_options: Default::default(),
            })
            .unwrap()
            .to_array(3)
            .unwrap();
        let out = out.as_binary::<i32>();
        assert_eq!(out.len(), 3);
        for i in 0..3 {
            assert_eq!(decode(out.value(i)), vec![("job".into(), "a".into())]);
        }
    }

    fn run(op: LabelOp, b: &[u8], other: Option<&[u8]>) -> LabelSet {
        let re = match &op {
            LabelOp::Replace { regex, .. } => {
                Some(regex::Regex::new(&format!("^(?s:{regex})$")).unwrap())
            }
            _ => None,
        };
        let mut out = vec![];
        op.apply(b, other, None, re.as_ref(), &mut out);
        decode(&out)
    }

    #[test]
    fn a_marked_name_is_read_until_the_end_and_then_dropped_with_type_and_unit() {
        let raw = |op: LabelOp, b: &[u8], re: Option<&regex::Regex>| {
            let mut out = vec![];
            op.apply(b, None, None, re, &mut out);
            out
        };
        let a = ls(&[
            ("__name__", "http_requests_total"),
            ("__type__", "counter"),
            ("__unit__", "requests"),
            ("job", "api"),
        ]);
        let m = raw(LabelOp::DropName, &a, None);
        // Marking twice is marking once; a set without metadata labels is left alone.
        assert_eq!(raw(LabelOp::DropName, &m, None), m);
        let plain = ls(&[("job", "api")]);
        assert_eq!(raw(LabelOp::DropName, &plain, None), plain);
        // Finalize drops the three metadata labels of a marked set, nothing of others.
        assert_eq!(raw(LabelOp::Finalize, &m, None), plain);
        assert_eq!(raw(LabelOp::Finalize, &a, None), a);
        // by/on keep the mark only with the name; without/ignoring drop it with the name.
        assert!(!is_marked(&raw(
            LabelOp::Keep(vec!["job".into()]),
            &m,
            None
        )));
        assert!(is_marked(&raw(
            LabelOp::Keep(vec![NAME.into(), "job".into()]),
            &m,
            None
        )));
        assert!(!is_marked(&raw(LabelOp::Drop(vec![NAME.into()]), &m, None)));
        assert!(is_marked(&raw(LabelOp::Drop(vec!["job".into()]), &m, None)));
        // label_replace reads the marked name; writing __name__ keeps the name.
        let to_n = LabelOp::Replace {
            dst: "n".into(),
            replacement: "rate_$1".into(),
            src: NAME.into(),
            regex: "(.+)".into(),
        };
        let re = regex::Regex::new("^(?s:(.+))$").unwrap();
        let r = raw(to_n, &m, Some(&re));
        assert!(is_marked(&r));
        assert_eq!(
            decode(&raw(LabelOp::Finalize, &r, None)),
            vec![
                ("job".to_string(), "api".to_string()),
                ("n".to_string(), "rate_http_requests_total".to_string())
            ]
        );
        let to_name = LabelOp::Replace {
            dst: NAME.into(),
            replacement: "x_$1".into(),
            src: "job".into(),
            regex: "(.+)".into(),
        };
        let r = raw(to_name, &m, Some(&re));
        assert!(!is_marked(&r));
        assert_eq!(get(&raw(LabelOp::Finalize, &r, None), NAME), "x_api");
        // The mark never reaches an answer's labels.
        assert_eq!(decode(&m).len(), 4);
    }

    #[test]
    fn round_trip_and_ops() {
        let a = ls(&[("__name__", "up"), ("job", "node"), ("instance", "a")]);
        assert_eq!(get(&a, "job"), "node");
        assert_eq!(get(&a, "nope"), "");
        assert_eq!(decode(&a).len(), 3);
        // The name is only marked: it goes at the end (Finalize).
        let raw = |op: LabelOp, b: &[u8]| {
            let mut out = vec![];
            op.apply(b, None, None, None, &mut out);
            out
        };
        let marked = raw(LabelOp::DropName, &a);
        assert!(is_marked(&marked));
        assert_eq!(run(LabelOp::DropName, &a, None).len(), 3);
        assert_eq!(run(LabelOp::Finalize, &marked, None).len(), 2);
        assert_eq!(
            run(LabelOp::Keep(vec!["job".into()]), &a, None),
            vec![("job".to_string(), "node".to_string())]
        );
        let r = run(
            LabelOp::Replace {
                dst: "x".into(),
                replacement: "$1-y".into(),
                src: "instance".into(),
                regex: "(.*)".into(),
            },
            &a,
            None,
        );
        assert_eq!(get(&encode(&r), "x"), "a-y");
        let inc = run(
            LabelOp::Include(vec!["team".into(), "job".into()]),
            &a,
            Some(&ls(&[("team", "t1")])),
        );
        assert_eq!(get(&encode(&inc), "team"), "t1");
        assert_eq!(get(&encode(&inc), "job"), "");
        assert_eq!(format_value(1.5), "1.5");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(100.0), "100");
    }
}
