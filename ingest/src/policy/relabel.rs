//! Prometheus relabeling: `relabel_configs` (a scrape's targets), `metric_relabel_configs`
//! (a scrape's samples, and every pushed series through the top-level
//! `metric_relabel_configs`), with every action Prometheus has.
//!
//! Follows Prometheus's `model/relabel/relabel.go` (`Config.Validate`, `relabel`): the
//! source labels' values joined by `separator` are matched against `regex`, anchored at
//! both ends (`^(?s:<regex>)$`), and the action applies:
//! - `replace` (default): on a match, `target_label` and `replacement` are expanded with the
//!   match's groups (`$1`, `${1}`, `$name`; `$1x` names group `1x`, as in Go) and the target
//!   set to the result, or removed when the result is empty;
//! - `keep` / `drop`: drop the series unless / if the value matches;
//! - `keepequal` / `dropequal`: drop the series unless / if the value equals `target_label`'s;
//! - `hashmod`: `target_label` = the MD5 of the value, its last 8 bytes as a big-endian
//!   integer, modulo `modulus`;
//! - `labelmap`: each label whose name matches is copied to the name `replacement` gives;
//! - `labeldrop` / `labelkeep`: remove the labels whose names match / do not match;
//! - `lowercase` / `uppercase`: `target_label` = the value in lower / upper case.
//!
//! A label set to an empty value is removed, as in Prometheus's `labels.Builder`.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use serde::Deserialize;

/// A relabeling action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `replace`.
    Replace,
    /// `keep`.
    Keep,
    /// `drop`.
    Drop,
    /// `keepequal`.
    KeepEqual,
    /// `dropequal`.
    DropEqual,
    /// `hashmod`.
    HashMod,
    /// `labelmap`.
    LabelMap,
    /// `labeldrop`.
    LabelDrop,
    /// `labelkeep`.
    LabelKeep,
    /// `lowercase`.
    Lowercase,
    /// `uppercase`.
    Uppercase,
}

impl Action {
    fn parse(s: &str) -> Result<Action, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            "" => return Err("relabel action cannot be empty".into()),
            other => return Err(format!("unknown relabel action {other:?}")),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

const DEFAULT_SEPARATOR: &str = ";";
const DEFAULT_REGEX: &str = "(.*)";
const DEFAULT_REPLACEMENT: &str = "$1";

/// One relabeling step as written in a configuration (the keys of Prometheus's
/// `relabel_config`), validated and compiled by [`RelabelConfig::try_from`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelabelConfig {
    /// Labels whose values are joined.
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// Joins them (default `;`).
    pub separator: Option<String>,
    /// The label written by `replace`, `hashmod`, `lowercase`, `uppercase`; compared by
    /// `keepequal` and `dropequal`.
    #[serde(default)]
    pub target_label: String,
    /// RE2 syntax, anchored at both ends (default `(.*)`).
    pub regex: Option<String>,
    /// `hashmod`'s modulus.
    #[serde(default)]
    pub modulus: u64,
    /// What `replace` and `labelmap` write (default `$1`).
    pub replacement: Option<String>,
    /// The action (default `replace`).
    pub action: Option<String>,
}

/// A validated, compiled relabeling step.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawRelabelConfig")]
pub struct RelabelConfig {
    source_labels: Vec<String>,
    separator: String,
    target_label: String,
    regex: regex::Regex,
    modulus: u64,
    replacement: String,
    action: Action,
}

impl TryFrom<RawRelabelConfig> for RelabelConfig {
    type Error = String;

    /// Prometheus's `relabel.Config.Validate` checks, with its messages.
    fn try_from(raw: RawRelabelConfig) -> Result<Self, String> {
        let action = Action::parse(raw.action.as_deref().unwrap_or("replace"))?;
        let regex_src = raw.regex.clone().unwrap_or_else(|| DEFAULT_REGEX.into());
        let regex = regex::Regex::new(&format!("^(?s:{regex_src})$"))
            .map_err(|e| format!("invalid relabel regex {regex_src:?}: {e}"))?;
        let name = action.name();
        if action == Action::HashMod && raw.modulus == 0 {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        if matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        ) && raw.target_label.is_empty()
        {
            return Err(format!(
                "relabel configuration for {name} action requires 'target_label' value"
            ));
        }
        // Separator, modulus and replacement left at their defaults (any action but
        // `hashmod`, `replace` and `labelmap` needs nothing else).
        let plain = raw.modulus == 0
            && raw
                .separator
                .as_deref()
                .is_none_or(|s| s == DEFAULT_SEPARATOR)
            && raw
                .replacement
                .as_deref()
                .is_none_or(|r| r == DEFAULT_REPLACEMENT);
        let default_regex = raw.regex.as_deref().is_none_or(|r| r == DEFAULT_REGEX);
        if matches!(action, Action::KeepEqual | Action::DropEqual) && !(plain && default_regex) {
            return Err(format!(
                "{name} action requires only 'source_labels' and `target_label`, and no other fields"
            ));
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep)
            && (!raw.source_labels.is_empty() || !raw.target_label.is_empty() || !plain)
        {
            return Err(format!(
                "{name} action requires only 'regex', and no other fields"
            ));
        }
        Ok(RelabelConfig {
            source_labels: raw.source_labels,
            separator: raw.separator.unwrap_or_else(|| DEFAULT_SEPARATOR.into()),
            target_label: raw.target_label,
            regex,
            modulus: raw.modulus,
            replacement: raw
                .replacement
                .unwrap_or_else(|| DEFAULT_REPLACEMENT.into()),
            action,
        })
    }
}

/// Applies `configs` in order to `labels` (name -> value). Returns false when a step drops
/// the series; `labels` then holds what it was at that step.
pub fn process(labels: &mut BTreeMap<String, String>, configs: &[RelabelConfig]) -> bool {
    configs.iter().all(|c| step(labels, c))
}

/// Sets `name` to `value`, or removes it when `value` is empty.
fn set(labels: &mut BTreeMap<String, String>, name: String, value: String) {
    if value.is_empty() {
        labels.remove(&name);
    } else {
        labels.insert(name, value);
    }
}

/// One step (Prometheus's `relabel` function).
fn step(labels: &mut BTreeMap<String, String>, c: &RelabelConfig) -> bool {
    let value = c
        .source_labels
        .iter()
        .map(|n| labels.get(n).map(String::as_str).unwrap_or(""))
        .collect::<Vec<_>>()
        .join(&c.separator);
    let target = || {
        labels
            .get(&c.target_label)
            .map(String::as_str)
            .unwrap_or("")
    };
    match c.action {
        Action::Drop => return !c.regex.is_match(&value),
        Action::Keep => return c.regex.is_match(&value),
        Action::DropEqual => return target() != value,
        Action::KeepEqual => return target() == value,
        Action::Replace => {
            let Some(caps) = c.regex.captures(&value) else {
                return true;
            };
            let mut name = String::new();
            caps.expand(&c.target_label, &mut name);
            if name.is_empty() {
                return true;
            }
            let mut out = String::new();
            caps.expand(&c.replacement, &mut out);
            set(labels, name, out);
        }
        Action::Lowercase => set(labels, c.target_label.clone(), value.to_lowercase()),
        Action::Uppercase => set(labels, c.target_label.clone(), value.to_uppercase()),
        Action::HashMod => {
            let hash = Md5::digest(value.as_bytes());
            let mut last = [0u8; 8];
            last.copy_from_slice(&hash[8..]);
            let m = u64::from_be_bytes(last) % c.modulus;
            set(labels, c.target_label.clone(), m.to_string());
        }
        Action::LabelMap => {
            let mapped: Vec<(String, String)> = labels
                .iter()
                .filter(|(n, _)| c.regex.is_match(n))
                .map(|(n, v)| {
                    (
                        c.regex.replace_all(n, c.replacement.as_str()).into_owned(),
                        v.clone(),
                    )
                })
                .collect();
            for (n, v) in mapped {
                set(labels, n, v);
            }
        }
        Action::LabelDrop => labels.retain(|n, _| !c.regex.is_match(n)),
        Action::LabelKeep => labels.retain(|n, _| c.regex.is_match(n)),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> RelabelConfig {
        yaml_serde::from_str(yaml).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn run(pairs: &[(&str, &str)], yaml: &str) -> Option<BTreeMap<String, String>> {
        let configs: Vec<RelabelConfig> = yaml_serde::from_str(yaml).unwrap();
        let mut l = labels(pairs);
        process(&mut l, &configs).then_some(l)
    }

    // Cases from Prometheus's `model/relabel/relabel_test.go` (`TestRelabel`), with their
    // inputs and expected outputs.

    #[test]
    fn replace_with_groups_and_target_expansion() {
        let out = run(
            &[("a", "foo"), ("b", "bar"), ("c", "baz")],
            "- source_labels: [a]\n  regex: f(.*)\n  target_label: d\n  separator: ';'\n  replacement: ch${1}-ch${1}\n  action: replace\n",
        );
        assert_eq!(
            out,
            Some(labels(&[
                ("a", "foo"),
                ("b", "bar"),
                ("c", "baz"),
                ("d", "choo-choo")
            ]))
        );
        let out = run(
            &[("a", "foo"), ("b", "bar"), ("c", "baz")],
            "- source_labels: [a, b]\n  regex: f(.*);(.*)r\n  target_label: a\n  separator: ';'\n  replacement: b${1}${2}m\n- source_labels: [c, a]\n  regex: (b).*b(.*)ba(.*)\n  target_label: d\n  separator: ';'\n  replacement: $1$2$2$3\n",
        );
        assert_eq!(
            out,
            Some(labels(&[
                ("a", "boobam"),
                ("b", "bar"),
                ("c", "baz"),
                ("d", "boooom")
            ]))
        );
        // Target label from the groups; `${1}` vs `$1x` (group `1x`, empty).
        let out = run(
            &[("a", "some-name-value")],
            "- source_labels: [a]\n  regex: some-([^-]+)-([^,]+)\n  target_label: ${1}\n  replacement: ${2}\n",
        );
        assert_eq!(
            out,
            Some(labels(&[("a", "some-name-value"), ("name", "value")]))
        );
        let out = run(
            &[("a", "foo")],
            "- source_labels: [a]\n  regex: (f)oo\n  target_label: b\n  replacement: $1x\n",
        );
        assert_eq!(out, Some(labels(&[("a", "foo")])), "$1x is group 1x: empty");
        // No match: unchanged. An empty result removes the target.
        let out = run(
            &[("a", "boo")],
            "- source_labels: [a]\n  regex: f(.*)\n  target_label: d\n",
        );
        assert_eq!(out, Some(labels(&[("a", "boo")])));
        let out = run(
            &[("a", "foo"), ("b", "bar")],
            "- source_labels: [c]\n  target_label: b\n",
        );
        assert_eq!(out, Some(labels(&[("a", "foo")])));
    }

    #[test]
    fn keep_drop_and_their_equal_forms() {
        let drop = "- source_labels: [a]\n  regex: '.*o.*'\n  action: drop\n";
        assert_eq!(run(&[("a", "foo")], drop), None);
        assert!(run(&[("a", "bar")], drop).is_some());
        let keep = "- source_labels: [a]\n  regex: 'f.*'\n  action: keep\n";
        assert!(run(&[("a", "foo")], keep).is_some());
        assert_eq!(run(&[("a", "xfoo")], keep), None, "anchored");
        // Anchoring: `foo` does not match `foo.bar`... and `(?s)`: `.` matches a newline.
        assert!(run(&[("a", "f\no")], keep).is_some());
        let keepequal =
            "- source_labels: [__tmp_port]\n  target_label: port\n  action: keepequal\n";
        assert!(run(&[("__tmp_port", "1234"), ("port", "1234")], keepequal).is_some());
        assert_eq!(
            run(&[("__tmp_port", "1234"), ("port", "5678")], keepequal),
            None
        );
        let dropequal =
            "- source_labels: [__tmp_port]\n  target_label: port\n  action: dropequal\n";
        assert_eq!(
            run(&[("__tmp_port", "1234"), ("port", "1234")], dropequal),
            None
        );
        assert!(run(&[("__tmp_port", "1234"), ("port", "5678")], dropequal).is_some());
    }

    /// `hashmod` values of Prometheus's `TestRelabel`: `baz` modulo 1000 is 976 (MD5
    /// `73feffa4b7f6bb68e44cf984c85f6e88`: `0xe44cf984c85f6e88 % 1000`), `foo\nbar` 734.
    #[test]
    fn hashmod_takes_the_last_8_bytes_of_md5() {
        let out = run(
            &[("a", "foo"), ("b", "bar"), ("c", "baz")],
            "- source_labels: [c]\n  target_label: d\n  separator: ';'\n  action: hashmod\n  modulus: 1000\n",
        );
        assert_eq!(out.unwrap()["d"], "976");
        let out = run(
            &[("a", "foo\nbar")],
            "- source_labels: [a]\n  target_label: b\n  action: hashmod\n  modulus: 1000\n",
        );
        assert_eq!(out.unwrap()["b"], "734");
    }

    #[test]
    fn labelmap_labeldrop_labelkeep_and_case() {
        let out = run(
            &[("a", "foo"), ("b", "bar"), ("c", "baz")],
            "- regex: '(b.*)'\n  replacement: bar_${1}_bar\n  action: labelmap\n",
        );
        assert_eq!(
            out,
            Some(labels(&[
                ("a", "foo"),
                ("b", "bar"),
                ("bar_b_bar", "bar"),
                ("c", "baz")
            ]))
        );
        let out = run(
            &[("a", "foo"), ("b", "bar"), ("c", "baz")],
            "- regex: '(b|c)'\n  action: labeldrop\n",
        );
        assert_eq!(out, Some(labels(&[("a", "foo")])));
        let out = run(
            &[("a", "foo"), ("b", "bar"), ("c", "baz")],
            "- regex: '(b|c)'\n  action: labelkeep\n",
        );
        assert_eq!(out, Some(labels(&[("b", "bar"), ("c", "baz")])));
        let out = run(
            &[("foo", "bAr123Foo")],
            "- source_labels: [foo]\n  target_label: foo_lower\n  action: lowercase\n- source_labels: [foo]\n  target_label: foo_upper\n  action: uppercase\n",
        );
        assert_eq!(
            out,
            Some(labels(&[
                ("foo", "bAr123Foo"),
                ("foo_lower", "bar123foo"),
                ("foo_upper", "BAR123FOO")
            ]))
        );
    }

    #[test]
    fn invalid_configs_are_refused_with_prometheus_messages() {
        let err = |yaml: &str| {
            yaml_serde::from_str::<RelabelConfig>(yaml)
                .unwrap_err()
                .to_string()
        };
        assert!(err("action: hashmod\ntarget_label: x\n").contains("requires non-zero modulus"));
        assert!(err("action: replace\n").contains("requires 'target_label' value"));
        assert!(
            err("action: labeldrop\nregex: a\nsource_labels: [b]\n")
                .contains("requires only 'regex'")
        );
        assert!(err("action: keepequal\ntarget_label: a\nregex: x\n").contains("no other fields"));
        assert!(err("action: frobnicate\n").contains("unknown relabel action"));
        assert!(err("regex: '('\ntarget_label: a\n").contains("invalid relabel regex"));
        let _ = cfg("action: keep\nsource_labels: [a]\nregex: x\n");
    }
}
