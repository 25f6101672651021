//! `strata promqltest` over Prometheus's own PromQL test scripts (`../shared/promqltest`,
//! or the directory in `STRATA_PROMQLTEST_DIR`) and over Strata's own cases
//! (`tests/promql`), through the real binary, with and without `--persist`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Cases of Prometheus's scripts Strata is known to fail, with the reason. Each is named
/// in docs/promql.md; a failure not listed here fails this test. None at the moment.
const KNOWN_FAILURES: &[(&str, &str)] = &[];

fn scripts_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("STRATA_PROMQLTEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/promqltest"));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but the PromQL test scripts are missing at {} (set STRATA_PROMQLTEST_DIR)",
        dir.display()
    );
    eprintln!("skipping: no PromQL test scripts at {}", dir.display());
    None
}

fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    v.sort();
    v
}

struct Run {
    passed: usize,
    failed: usize,
    skipped: usize,
    failures: Vec<String>,
    skips: Vec<String>,
    out: String,
}

fn run(files: &[PathBuf], persist: bool) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("promqltest");
    if persist {
        cmd.arg("--persist");
    }
    let o = cmd.args(files).output().expect("strata runs");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let last = out
        .lines()
        .rev()
        .find(|l| l.ends_with(" skipped") && !l.contains(".test:"))
        .unwrap_or_else(|| {
            panic!(
                "no totals line in:\n{out}\n{}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
    let n: Vec<usize> = last
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(n.len(), 3, "totals line {last:?}");
    let case_lines = |pred: &dyn Fn(&str) -> bool| -> Vec<String> {
        out.lines()
            .filter(|l| l.starts_with("  "))
            .map(|l| l.trim().to_string())
            .filter(|l| pred(l))
            .collect()
    };
    Run {
        passed: n[0],
        failed: n[1],
        skipped: n[2],
        failures: case_lines(&|l| !l.starts_with("skipped:") && !l.starts_with("error:")),
        skips: case_lines(&|l| l.starts_with("skipped:")),
        out,
    }
}

fn check_prometheus_scripts(persist: bool) {
    let Some(dir) = scripts_dir() else { return };
    let files = test_files(&dir);
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    let r = run(&files, persist);
    let unexpected: Vec<&String> = r
        .failures
        .iter()
        .filter(|l| {
            !KNOWN_FAILURES
                .iter()
                .any(|(k, _)| l.starts_with(&format!("{k} ")))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected failures (persist={persist}):\n{}",
        r.out
    );
    assert_eq!(r.failed, r.failures.len(), "{}", r.out);
    // `skipped` is only for native-histogram cases, each named.
    assert_eq!(r.skipped, r.skips.len(), "{}", r.out);
    assert!(
        r.skips.iter().all(|l| l.ends_with("(native histograms)")),
        "{}",
        r.out
    );
    // The scripts at the pinned commit hold 1,115 eval cases; they all ran.
    assert!(r.passed + r.failed + r.skipped >= 1_000, "{}", r.out);
    eprintln!(
        "promqltest (persist={persist}): {} passed, {} failed, {} skipped",
        r.passed, r.failed, r.skipped
    );
}

#[test]
fn prometheus_scripts_from_the_head() {
    check_prometheus_scripts(false);
}

#[test]
fn prometheus_scripts_from_delta_tables() {
    check_prometheus_scripts(true);
}

#[test]
fn strata_own_cases() {
    let files = test_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql"));
    for persist in [false, true] {
        let r = run(&files, persist);
        assert_eq!(r.failed, 0, "{}", r.out);
        assert_eq!(r.skipped, 0, "{}", r.out);
        assert!(r.passed >= 19, "{}", r.out);
    }
}
