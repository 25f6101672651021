//! The tier list: each tier's name and resolution, each built from the one before it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, RollupError};

/// One tier of the `[rollup]` config: `{ name = "1h", resolution = "1h" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// The tier's name: its table is `rollup_<name>` (lowercase letters and digits).
    pub name: String,
    /// The bucket width (a whole number of seconds; a multiple of the previous tier's).
    #[serde(with = "humantime_serde")]
    pub resolution: Duration,
    /// Whether each series-bucket carries a KLL quantile sketch of its values (the
    /// `sketch` column, [`crate::sketch`]); default false.
    #[serde(default)]
    pub sketch: bool,
    /// How long the tier keeps its buckets (`"90d"`); whole days (the `date` partitions)
    /// older than this are deleted. Absent: kept forever.
    #[serde(default, with = "humantime_serde::option")]
    pub retention: Option<Duration>,
}

impl Tier {
    /// A tier named `name` of `resolution`, without sketches.
    pub fn new(name: &str, resolution: Duration) -> Tier {
        Tier {
            name: name.to_string(),
            resolution,
            sketch: false,
            retention: None,
        }
    }

    /// The same tier keeping its buckets for `retention`.
    pub fn with_retention(mut self, retention: Duration) -> Tier {
        self.retention = Some(retention);
        self
    }

    /// The same tier with quantile sketches on or off.
    pub fn with_sketch(mut self, on: bool) -> Tier {
        self.sketch = on;
        self
    }

    /// The resolution in ms.
    pub fn resolution_ms(&self) -> i64 {
        self.resolution.as_millis() as i64
    }

    /// The tier's Delta table name, `rollup_<name>`.
    pub fn table(&self) -> String {
        format!("rollup_{}", self.name)
    }

    /// The tier's per-metric table of series sketches, `rollup_<name>_series`.
    pub fn series_table(&self) -> String {
        format!("rollup_{}_series", self.name)
    }
}

/// The `date` partition (days since the epoch, UTC) of a bucket of a tier of resolution
/// `resolution_ms` whose first instant falls on day `day`: that day for tiers finer than
/// an hour, the first day of its month for tiers finer than a day, the first day of its
/// year for coarser ones. Coarse tiers hold few rows per day: a partition per day gave the
/// `1d` tier 730 files of a few KB for two years (25 with years; benches/README.md,
/// long-range bench).
pub fn partition_day(resolution_ms: i64, day: i32) -> i32 {
    use chrono::Datelike;
    /// `num_days_from_ce` of 1970-01-01.
    const EPOCH_CE: i32 = 719_163;
    if resolution_ms < 3_600_000 {
        return day;
    }
    let Some(date) = chrono::NaiveDate::from_num_days_from_ce_opt(day.saturating_add(EPOCH_CE))
    else {
        return day;
    };
    let start = if resolution_ms < 86_400_000 {
        date.with_day(1)
    } else {
        date.with_ordinal(1)
    };
    start.map_or(day, |d| d.num_days_from_ce() - EPOCH_CE)
}

/// The default tiers: `1m` without quantile sketches, kept 90 days; `1h` with, kept 2
/// years (730 days); `1d` with, kept 5 years (1,825 days).
pub fn default_tiers() -> Vec<Tier> {
    const DAY: u64 = 86_400;
    vec![
        Tier::new("1m", Duration::from_secs(60)).with_retention(Duration::from_secs(90 * DAY)),
        Tier::new("1h", Duration::from_secs(3600))
            .with_sketch(true)
            .with_retention(Duration::from_secs(730 * DAY)),
        Tier::new("1d", Duration::from_secs(DAY))
            .with_sketch(true)
            .with_retention(Duration::from_secs(1825 * DAY)),
    ]
}

/// Checks a tier list: at least one tier, names of lowercase letters and digits, unique,
/// resolutions whole seconds, each a multiple (larger than 1) of the one before, the
/// coarsest at most 1 day (a bucket must lie in one `date` partition day: coarser
/// buckets would not divide UTC days).
///
/// # Errors
/// [`RollupError::Config`] naming the first problem.
pub fn validate(tiers: &[Tier]) -> Result<()> {
    let bad = |m: String| Err(RollupError::Config(m));
    if tiers.is_empty() {
        return bad("no rollup tier".into());
    }
    let mut prev: Option<&Tier> = None;
    for t in tiers {
        if t.name.is_empty()
            || !t
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return bad(format!(
                "tier name {:?}: lowercase letters and digits only",
                t.name
            ));
        }
        if tiers.iter().filter(|u| u.name == t.name).count() > 1 {
            return bad(format!("tier {:?} is listed twice", t.name));
        }
        let r = t.resolution_ms();
        if r < 1000 || r % 1000 != 0 || 86_400_000 % r != 0 {
            return bad(format!(
                "tier {:?}: the resolution must be whole seconds dividing a day",
                t.name
            ));
        }
        if let Some(p) = prev
            && (r <= p.resolution_ms() || r % p.resolution_ms() != 0)
        {
            return bad(format!(
                "tier {:?}: the resolution must be a multiple of tier {:?}'s",
                t.name, p.name
            ));
        }
        prev = Some(t);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_tiers_partition_by_month_and_year() {
        // 2026-12-06 is day 20,793; 2026-12-01 is 20,788; 2026-01-01 is 20,454.
        let day = 20_793;
        assert_eq!(partition_day(60_000, day), day);
        assert_eq!(partition_day(3_600_000, day), 20_788);
        assert_eq!(partition_day(86_400_000, day), 20_454);
        assert_eq!(partition_day(3_600_000, 0), 0);
        assert_eq!(partition_day(86_400_000, -1), -365, "1969-01-01");
    }

    #[test]
    fn the_defaults_are_valid_and_bad_lists_are_named() {
        validate(&default_tiers()).unwrap();
        let t = |n: &str, s: u64| Tier::new(n, Duration::from_secs(s));
        for (tiers, msg) in [
            (vec![], "no rollup tier"),
            (vec![t("1M", 60)], "lowercase"),
            (vec![t("a", 60), t("a", 120)], "twice"),
            (vec![t("a", 7)], "dividing a day"),
            (vec![t("a", 60), t("b", 90)], "multiple of tier \"a\""),
            (vec![t("a", 3600), t("b", 60)], "multiple"),
        ] {
            let e = validate(&tiers).unwrap_err().to_string();
            assert!(e.contains(msg), "{e}");
        }
    }
}
