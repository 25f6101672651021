//! The data model of the write path: labels, series, samples, the series fingerprint and
//! the staleness marker.

use std::sync::Arc;

/// The label that holds a series' metric name, as in Prometheus.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// The bit pattern Prometheus uses for a staleness marker: a float NaN distinct from the
/// ordinary NaN (`model/value/value.go`, `StaleNaN = 0x7ff0000000000002`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as an `f64` (see [`STALE_NAN_BITS`]).
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// A float as Go's `strconv.FormatFloat(v, 'f', -1, 64)` writes it, as Prometheus writes
/// floats in label values (`le`, `quantile`, `count_values`) and the API's sample values:
/// shortest round-trip digits, no exponent (Rust's `Display`), `NaN`, `+Inf`, `-Inf`.
/// Written by `Display`, without a `String`: the digits come from `zmij` (several times
/// faster than `std`'s; both give the shortest string that reads back as the value, the
/// closest one when several are as short, and where two are as close `zmij` takes the
/// even last digit as Go does, `std` the larger), falling back to `std` outside `zmij`'s
/// plain notation (magnitudes below 1e-5 or from 1e16 on).
#[derive(Debug, Clone, Copy)]
pub struct FloatText(pub f64);

impl std::fmt::Display for FloatText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => {
                let mut buf = zmij::Buffer::new();
                let s = buf.format_finite(v);
                if s.contains('e') {
                    write!(f, "{v}")
                } else {
                    // `zmij` writes integers as `1.0`; Go and `std` as `1`.
                    f.write_str(s.strip_suffix(".0").unwrap_or(s))
                }
            }
        }
    }
}

/// Whether `v` is the staleness marker (an exact bit comparison: an ordinary NaN is not).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A series' label set, `__name__` included, sorted by label name (byte order), with no
/// duplicate names and no empty values (an empty value means "label absent", as in
/// Prometheus). Strings are shared (`Arc<str>`) so that the head can intern them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Labels(Vec<(Arc<str>, Arc<str>)>);

impl Labels {
    /// Builds a label set from unsorted pairs: sorts by name and drops pairs whose value is
    /// empty. Duplicate names are not checked here (validation rejects them first).
    pub fn from_pairs<N: Into<Arc<str>>, V: Into<Arc<str>>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut v: Vec<(Arc<str>, Arc<str>)> = pairs
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Labels(v)
    }

    /// Builds a label set from pairs already sorted by name with non-empty values.
    pub fn from_sorted(pairs: Vec<(Arc<str>, Arc<str>)>) -> Self {
        debug_assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0));
        Labels(pairs)
    }

    /// The pairs, sorted by name.
    pub fn pairs(&self) -> &[(Arc<str>, Arc<str>)] {
        &self.0
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_ref().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_ref())
    }

    /// The metric name (`__name__`), or `""` when the series has none.
    pub fn metric_name(&self) -> &str {
        self.get(METRIC_NAME_LABEL).unwrap_or("")
    }

    /// The metric name as the label set holds it (shared, not copied), or `""`.
    pub fn metric_name_shared(&self) -> Arc<str> {
        self.0
            .binary_search_by(|(n, _)| n.as_ref().cmp(METRIC_NAME_LABEL))
            .map(|i| self.0[i].1.clone())
            .unwrap_or_else(|_| Arc::from(""))
    }

    /// The series fingerprint: XXH64 (seed 0) over `name 0xff value 0xff` for every label in
    /// name order, `__name__` included. This is exactly Prometheus's `labels.Labels.Hash()`
    /// (`model/labels/labels_slicelabels.go`), so a series has the same fingerprint in Strata
    /// and in Prometheus. Stored in tables as a signed 64-bit integer with the same bits.
    pub fn fingerprint(&self) -> u64 {
        fingerprint_of(self.0.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// Number of labels, `__name__` included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Approximate heap bytes held by this label set if its strings were not shared.
    pub fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<(Arc<str>, Arc<str>)>()
            + self.0.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
    }
}

/// The series fingerprint of label pairs given in name order (see [`Labels::fingerprint`]).
pub fn fingerprint_of<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> u64 {
    // One buffer (reused per thread) and one hash call: faster than streaming many tiny
    // updates into the hasher.
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|b| {
        let mut buf = b.borrow_mut();
        buf.clear();
        for (n, v) in pairs {
            buf.extend_from_slice(n);
            buf.push(0xff);
            buf.extend_from_slice(v);
            buf.push(0xff);
        }
        xxhash_rust::xxh64::xxh64(&buf, 0)
    })
}

/// Where one label's name and value lie in a [`RawLabels`] buffer: byte ranges
/// `start..end` (u32 offsets; request bodies are far smaller than 4 GiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LabelSpan {
    /// The name's byte range.
    pub name: (u32, u32),
    /// The value's byte range.
    pub value: (u32, u32),
}

/// Packs label pairs into one buffer, in the given order, and returns the buffer with one
/// [`LabelSpan`] per pair (nothing is validated or dropped).
///
/// # Panics
/// If the pairs add up to 4 GiB or more.
pub fn pack_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    pairs: impl IntoIterator<Item = (N, V)>,
) -> (bytes::Bytes, Vec<LabelSpan>) {
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    let put = |buf: &mut Vec<u8>, b: &[u8]| {
        let start = u32::try_from(buf.len()).expect("labels under 4 GiB");
        buf.extend_from_slice(b);
        (start, u32::try_from(buf.len()).expect("labels under 4 GiB"))
    };
    for (n, v) in pairs {
        let name = put(&mut buf, n.as_ref());
        let value = put(&mut buf, v.as_ref());
        spans.push(LabelSpan { name, value });
    }
    (bytes::Bytes::from(buf), spans)
}

/// The bytes of range `r` (a [`LabelSpan`] field) of `buf`.
///
/// # Panics
/// If the range lies outside `buf`.
pub fn span_bytes(buf: &[u8], r: (u32, u32)) -> &[u8] {
    &buf[r.0 as usize..r.1 as usize]
}

/// Sorts label spans by name (byte order).
///
/// # Panics
/// If a span lies outside `buf`.
pub fn sort_spans(buf: &[u8], spans: &mut [LabelSpan]) {
    spans.sort_unstable_by(|x, y| span_bytes(buf, x.name).cmp(span_bytes(buf, y.name)));
}

/// The series fingerprint ([`Labels::fingerprint`]) of spans sorted by name, skipping
/// empty values (which mean "label absent").
///
/// # Panics
/// If a span lies outside `buf`.
pub fn sorted_spans_fingerprint(buf: &[u8], spans: &[LabelSpan]) -> u64 {
    fingerprint_of(
        spans
            .iter()
            .filter(|s| s.value.1 > s.value.0)
            .map(|s| (span_bytes(buf, s.name), span_bytes(buf, s.value))),
    )
}

/// A label set as a write request carries it: pairs sorted by name, no empty values,
/// `__name__` included, valid UTF-8 once validated ([`crate::validate::validate_labels`]).
/// The strings stay in the decoded request buffer, shared by every series of the request
/// (one reference count per series, no copy); the head copies them into its own interned
/// [`Labels`] only when the series is new to it.
#[derive(Debug, Clone, Default)]
pub struct RawLabels {
    buf: bytes::Bytes,
    spans: Vec<LabelSpan>,
    /// The fingerprint, computed once at construction.
    fingerprint: u64,
}

impl PartialEq for RawLabels {
    fn eq(&self, other: &Self) -> bool {
        self.pair_bytes().eq(other.pair_bytes())
    }
}

impl Eq for RawLabels {}

impl RawLabels {
    /// Builds from unsorted pairs (copied into one buffer): drops empty values and sorts by
    /// name. The caller has checked UTF-8 and duplicates (see
    /// [`crate::validate::validate_labels`]).
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let (buf, spans) = pack_pairs(pairs);
        Self::from_spans(buf, spans)
    }

    /// Builds from spans of `buf` in any order: drops empty values and sorts by name (no
    /// copy; nothing else is checked).
    ///
    /// # Panics
    /// If a span lies outside `buf`.
    pub fn from_spans(buf: bytes::Bytes, mut spans: Vec<LabelSpan>) -> Self {
        sort_spans(&buf, &mut spans);
        Self::from_sorted_spans(buf, spans)
    }

    /// Builds from spans of `buf` already sorted by name ([`sort_spans`]): drops empty
    /// values (no copy; nothing else is checked).
    ///
    /// # Panics
    /// If a span lies outside `buf`.
    pub fn from_sorted_spans(buf: bytes::Bytes, spans: Vec<LabelSpan>) -> Self {
        let fingerprint = sorted_spans_fingerprint(&buf, &spans);
        Self::from_sorted_spans_fingerprinted(buf, spans, fingerprint)
    }

    /// [`Self::from_sorted_spans`] when the caller already has
    /// [`sorted_spans_fingerprint`]`(buf, spans)` (not recomputed).
    ///
    /// # Panics
    /// If a span lies outside `buf`.
    pub fn from_sorted_spans_fingerprinted(
        buf: bytes::Bytes,
        mut spans: Vec<LabelSpan>,
        fingerprint: u64,
    ) -> Self {
        spans.retain(|s| s.value.1 > s.value.0);
        debug_assert_eq!(fingerprint, sorted_spans_fingerprint(&buf, &spans));
        RawLabels {
            buf,
            spans,
            fingerprint,
        }
    }

    fn bytes_of(&self, r: (u32, u32)) -> &[u8] {
        span_bytes(&self.buf, r)
    }

    /// The pairs as bytes, in name order.
    pub fn pair_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans
            .iter()
            .map(|s| (self.bytes_of(s.name), self.bytes_of(s.value)))
    }

    /// The pairs as strings, in name order (a pair that is not UTF-8, which validation
    /// rejects, reads as empty strings).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pair_bytes().map(|(n, v)| {
            (
                std::str::from_utf8(n).unwrap_or_default(),
                std::str::from_utf8(v).unwrap_or_default(),
            )
        })
    }

    /// The pairs as `Bytes` slices of the shared buffer, in name order (no copy).
    pub fn pair_slices(&self) -> impl Iterator<Item = (bytes::Bytes, bytes::Bytes)> + '_ {
        let slice = |r: (u32, u32)| self.buf.slice(r.0 as usize..r.1 as usize);
        self.spans
            .iter()
            .map(move |s| (slice(s.name), slice(s.value)))
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The metric name, or `""`.
    pub fn metric_name(&self) -> &str {
        self.get(METRIC_NAME_LABEL).unwrap_or("")
    }

    /// The series fingerprint (same value as [`Labels::fingerprint`] of the same set),
    /// computed once when the label set was built.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// The metric family a metric name belongs to, used to partition the samples table: the
/// name's namespace, i.e. the text before its first `_` (`node_cpu_seconds_total` -> `node`,
/// `cpu_usage_user` -> `cpu`, `up` -> `up`), lower-cased, with characters outside
/// `[a-z0-9]` replaced by `_`. Prometheus naming conventions put the exporter or library
/// namespace first, so a family groups the metrics of one source into one partition,
/// keeping the partition count per day small (tens, not thousands of metric names).
pub fn metric_family(metric_name: &str) -> String {
    let ns = metric_name.split('_').find(|s| !s.is_empty()).unwrap_or("");
    if ns.is_empty() {
        return "_".to_string();
    }
    ns.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// One timestamped value: `timestamp_ms` in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch, UTC.
    pub timestamp_ms: i64,
    /// The value; may be the staleness marker ([`stale_nan`]).
    pub value: f64,
}

/// A series with a batch of its samples, as a write request carries them.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    /// The series' labels.
    pub labels: RawLabels,
    /// Its samples, in any order.
    pub samples: Vec<Sample>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_text_writes_gos_shortest_digits() {
        // Reference: `std`'s `Display`, the shortest digits that read back as the value,
        // as Go's `FormatFloat(v, 'f', -1, 64)`. Where two such strings are as close
        // (the value exactly halfway), `std` rounds up and Go, like `zmij`, to the even
        // digit (`strconv/ftoaryu.go`, `ryuDigits32`): there the string must be the even
        // one and the value exactly halfway.
        // Edge cases of the plain-notation range, then a million bit patterns from a
        // fixed-seed xorshift, each also as a value of a few significant digits.
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            0.3,
            1.5,
            100.0,
            1e15,
            9.999_999_999_999_998e15,
            1e16,
            1.5e16,
            1e21,
            1e-5,
            9.999e-6,
            1e-6,
            1e-7,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            123_456_789.0,
            0.000_123,
            2f64.powi(53),
            2f64.powi(53) + 2.0,
            1_658_206_780_088_562.2,
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_finite() {
                values.push(v);
                values.push((x % 1_000_000) as f64 / 1000.0);
            }
        }
        let mut ties = 0;
        for v in values {
            let (ours, std) = (FloatText(v).to_string(), format!("{v}"));
            if ours == std {
                continue;
            }
            ties += 1;
            assert_eq!(ours.parse::<f64>().ok(), Some(v), "{ours}");
            assert_eq!(ours.len(), std.len(), "{ours} {std}");
            let (a, b) = (ours.trim_start_matches('-'), std.trim_start_matches('-'));
            let low = a.min(b);
            let exact = format!("{:.1100}", v.abs());
            let exact = exact.trim_end_matches('0');
            let half = if low.contains('.') {
                format!("{low}5")
            } else {
                format!("{low}.5")
            };
            assert_eq!(exact, half, "{v:e} is not halfway between {a} and {b}");
            let last = a.bytes().last().unwrap_or(b'0');
            assert!(
                (last - b'0').is_multiple_of(2),
                "{ours} is not the even one"
            );
        }
        assert!(ties > 0, "the halfway case is checked");
        assert_eq!(FloatText(f64::NAN).to_string(), "NaN");
        assert_eq!(FloatText(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(FloatText(f64::NEG_INFINITY).to_string(), "-Inf");
    }

    #[test]
    fn the_shared_metric_name_is_the_label_sets_own() {
        let l = Labels::from_pairs([("job", "a"), ("__name__", "up")]);
        assert_eq!(&*l.metric_name_shared(), "up");
        let again = l.metric_name_shared();
        assert!(Arc::ptr_eq(&again, &l.metric_name_shared()));
        assert_eq!(
            &*Labels::from_pairs([("job", "a")]).metric_name_shared(),
            ""
        );
    }

    #[test]
    fn fingerprint_matches_prometheus_labels_hash() {
        // Prometheus: labels.FromStrings("__name__", "up", "job", "node").Hash()
        // = xxhash.Sum64("__name__\xffup\xffjob\xffnode\xff"); computed independently here
        // from the XXH64 of that byte string.
        let l = Labels::from_pairs([("job", "node"), ("__name__", "up")]);
        let want = xxhash_rust::xxh64::xxh64(b"__name__\xffup\xffjob\xffnode\xff", 0);
        assert_eq!(l.fingerprint(), want);
        // Order of input does not matter; empty values are dropped.
        let l2 = Labels::from_pairs([("__name__", "up"), ("job", "node"), ("x", "")]);
        assert_eq!(l2.fingerprint(), want);
        assert_eq!(l2.metric_name(), "up");
        let raw = RawLabels::from_pairs([("job", "node"), ("__name__", "up"), ("x", "")]);
        assert_eq!(raw.fingerprint(), want);
        assert_eq!(raw.metric_name(), "up");
    }

    #[test]
    fn families() {
        assert_eq!(metric_family("node_cpu_seconds_total"), "node");
        assert_eq!(metric_family("cpu_usage_user"), "cpu");
        assert_eq!(metric_family("up"), "up");
        assert_eq!(metric_family("_weird"), "weird");
        assert_eq!(metric_family("Foo:bar_x"), "foo_bar");
    }

    #[test]
    fn stale_marker_is_not_ordinary_nan() {
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
    }
}
