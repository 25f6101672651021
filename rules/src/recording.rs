//! Recording rules: Prometheus's `rules/recording.go` (`RecordingRule.Eval`). Each result
//! sample gets `__name__` set to the rule's `record` and the rule's labels (which win over
//! the sample's); two samples with one label set after that, or more than the group's
//! `limit`, fail the evaluation and nothing is written.

use crate::{Labels, RulesError, Sample};

/// A recording rule.
#[derive(Debug, Clone)]
pub struct RecordingRule {
    /// The output metric name.
    pub record: String,
    /// Its PromQL expression.
    pub expr: String,
    /// Its labels, sorted by name; the group's labels included.
    pub labels: Labels,
}

impl RecordingRule {
    /// The series to record from the query result `result`, at most `limit` (0: no
    /// limit), each with sorted labels.
    ///
    /// # Errors
    /// [`RulesError::Eval`] for two series with one label set or past `limit`.
    pub fn eval(&self, result: Vec<Sample>, limit: usize) -> Result<Vec<Sample>, RulesError> {
        let mut out: Vec<Sample> = Vec::with_capacity(result.len());
        for (metric, v) in result {
            let mut l: std::collections::BTreeMap<String, String> = metric.into_iter().collect();
            l.insert("__name__".into(), self.record.clone());
            for (n, value) in &self.labels {
                l.insert(n.clone(), value.clone());
            }
            out.push((l.into_iter().collect(), v));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        if out.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(RulesError::Eval(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            ));
        }
        if limit > 0 && out.len() > limit {
            return Err(RulesError::Eval(format!(
                "exceeded limit of {limit} with {} series",
                out.len()
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_rename_relabel_and_refuse_collisions() {
        let r = RecordingRule {
            record: "job:up:sum".into(),
            expr: "sum by (job, instance) (up)".into(),
            labels: vec![("instance".into(), "all".into())],
        };
        let l = |p: &[(&str, &str)]| -> Labels {
            p.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let out = r
            .eval(vec![(l(&[("job", "a"), ("instance", "x")]), 2.0)], 0)
            .unwrap();
        assert_eq!(
            out,
            vec![(
                l(&[
                    ("__name__", "job:up:sum"),
                    ("instance", "all"),
                    ("job", "a")
                ]),
                2.0
            )]
        );
        // The rule's instance label makes two series one.
        let two = vec![
            (l(&[("job", "a"), ("instance", "x")]), 1.0),
            (l(&[("job", "a"), ("instance", "y")]), 1.0),
        ];
        assert!(
            r.eval(two.clone(), 0)
                .unwrap_err()
                .to_string()
                .contains("same labelset")
        );
        let r2 = RecordingRule {
            labels: vec![],
            ..r
        };
        assert_eq!(
            r2.eval(two, 1).unwrap_err().to_string(),
            "exceeded limit of 1 with 2 series"
        );
    }
}
