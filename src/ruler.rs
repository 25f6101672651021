//! The ruler: a tenant's rule groups, from its rule files and from Mimir's ruler
//! configuration API, each evaluated by its own task (`strata_rules::group::run`).
//!
//! **The configuration API** (Mimir's `/prometheus/config/v1/rules`, YAML bodies as
//! `mimirtool` and Grafana send them):
//! - `GET /prometheus/config/v1/rules`: every namespace's groups, `{namespace: [group,
//!   ...]}`;
//! - `GET .../rules/{namespace}`: one namespace's (404 when it has none);
//! - `GET .../rules/{namespace}/{group}`: one group (404 when absent);
//! - `POST .../rules/{namespace}`: one group (a Prometheus rule group in YAML), checked as
//!   a rule file is, stored, and running at once: `202`; `400` naming the problem;
//! - `DELETE .../rules/{namespace}/{group}` and `DELETE .../rules/{namespace}`: `202`.
//!
//! Groups posted through the API are stored before the answer (written to a temporary
//! file, synced, renamed, the directory synced) under `<data_dir>/rules/` (or
//! `<wal_dir>/rules/` when the data directory is not local), one file per group, and
//! loaded again at start. A group posted again unchanged keeps running untouched; a
//! changed one starts anew but keeps the alerts of its unchanged alerting rules (same name,
//! expression, labels and `for`), as Prometheus's `Group.CopyState` does on a reload.
//! Groups from rule files are listed under their file's path and cannot be changed through
//! the API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use strata_rules::Env;
use strata_rules::file::{GroupConfig, RuleFile};
use strata_rules::group::Group;

/// What rule evaluation runs with, apart from the queries of the HTTP API and SQL, shared
/// by every tenant's rules (`[rules]` `threads`, `max_concurrent_evaluations`,
/// `memory_limit_bytes`): its own tokio runtime, evaluation slots, and a DataFusion memory
/// pool. A dashboard's query that keeps the server's runtime busy, or holds its memory,
/// does not hold a rule's evaluation up.
pub struct RulesBudget {
    /// The runtime, shut down (without blocking) when this is dropped.
    runtime: Option<tokio::runtime::Runtime>,
    /// Where group tasks are spawned.
    pub handle: tokio::runtime::Handle,
    /// Evaluation slots, one per group evaluating.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// The rules' memory pool, if limited.
    pool: Option<Arc<dyn datafusion::execution::memory_pool::MemoryPool>>,
}

impl RulesBudget {
    /// The budget `cfg` sets.
    ///
    /// # Errors
    /// A message when the runtime's threads cannot be started.
    pub fn new(cfg: &crate::config::RulesConfig) -> Result<RulesBudget, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads.max(1))
            .thread_name("strata-rules")
            .enable_all()
            .build()
            .map_err(|e| format!("starting the rules runtime: {e}"))?;
        let pool = (cfg.memory_limit_bytes > 0).then(|| {
            Arc::new(datafusion::execution::memory_pool::TrackConsumersPool::new(
                datafusion::execution::memory_pool::FairSpillPool::new(cfg.memory_limit_bytes),
                std::num::NonZeroUsize::new(5).expect("not zero"),
            )) as Arc<dyn datafusion::execution::memory_pool::MemoryPool>
        });
        Ok(RulesBudget {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            slots: Arc::new(tokio::sync::Semaphore::new(
                cfg.max_concurrent_evaluations.max(1),
            )),
            pool,
        })
    }

    /// A PromQL session over `ctx`'s tables in the rules' memory pool.
    ///
    /// # Errors
    /// DataFusion's message when the runtime cannot be built.
    pub fn session(
        &self,
        ctx: &datafusion::prelude::SessionContext,
    ) -> Result<datafusion::prelude::SessionContext, String> {
        let prom = strata_promql::prom_session(ctx);
        let Some(pool) = &self.pool else {
            return Ok(prom);
        };
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::from_runtime_env(
            &prom.runtime_env(),
        )
        .with_memory_pool(pool.clone())
        .build_arc()
        .map_err(|e| e.to_string())?;
        Ok(datafusion::prelude::SessionContext::new_with_state(
            datafusion::execution::SessionStateBuilder::new_from_existing(prom.state())
                .with_runtime_env(runtime)
                .build(),
        ))
    }
}

impl Drop for RulesBudget {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// One running group: its configuration text (for the API), its state, its task.
struct Running {
    yaml: String,
    config: GroupConfig,
    group: Arc<tokio::sync::Mutex<Group>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// `group` of `config` (whose text is `yaml`), not running yet.
    fn new(yaml: String, config: GroupConfig, group: Group) -> Running {
        Running {
            yaml,
            config,
            group: Arc::new(tokio::sync::Mutex::new(group)),
            task: None,
        }
    }
}

/// A tenant's rule groups, by namespace (a rule file's path, or an API namespace) and
/// group name.
pub struct Ruler {
    /// Where API-managed groups are stored.
    dir: PathBuf,
    /// Groups without their own interval run every this.
    default_interval: std::time::Duration,
    /// Namespaces that are rule files (read-only through the API).
    files: Vec<String>,
    groups: tokio::sync::Mutex<BTreeMap<(String, String), Running>>,
    /// Set once the server starts the evaluation tasks.
    env: OnceLock<(
        Arc<Env>,
        tokio::sync::watch::Receiver<bool>,
        tokio::runtime::Handle,
    )>,
}

/// A namespace or group name as a file name: percent-encoded, so that no name reaches
/// outside the rules directory.
fn file_name(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`file_name`].
fn from_file_name(name: &str) -> Option<String> {
    let b = name.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `files` with each glob pattern (`*`, `?`, `[...]`, as Prometheus's `rule_files` take
/// `filepath.Glob` patterns) replaced by the files it matches now, in name order; a
/// pattern that matches nothing adds nothing, as in Prometheus. A path without a pattern
/// stays as it is (a missing one is then an error when read).
///
/// # Errors
/// A message naming a pattern that does not parse.
pub fn expand_globs(files: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = vec![];
    for f in files {
        let text = f.to_string_lossy();
        if !text.contains(['*', '?', '[']) {
            out.push(f.clone());
            continue;
        }
        let matched = glob::glob(&text).map_err(|e| format!("rule_files pattern {text:?}: {e}"))?;
        let mut found: Vec<PathBuf> = matched.flatten().filter(|p| p.is_file()).collect();
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// `g`, marked to restore its alerts' `for` state (a group loaded at start).
fn restoring(mut g: Group) -> Group {
    g.restore_at_start();
    g
}

/// Writes `data` to `path` durably: a temporary file, synced, renamed over `path`, then
/// the directory synced.
fn write_durably(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl Ruler {
    /// The groups of `files`, and those stored in `dir` by the API.
    ///
    /// # Errors
    /// A message naming the file, group and rule that is not valid.
    pub fn load(
        files: &[PathBuf],
        dir: PathBuf,
        default_interval: std::time::Duration,
    ) -> Result<Ruler, String> {
        let mut groups = BTreeMap::new();
        let mut names = vec![];
        for f in &expand_globs(files)? {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("reading rule file {}: {e}", f.display()))?;
            let name = f.display().to_string();
            let file = RuleFile::parse(&name, &text).map_err(|e| e.to_string())?;
            for g in file.groups {
                let group = restoring(Group::new(&name, &g, default_interval));
                groups.insert(
                    (name.clone(), g.name.clone()),
                    Running::new(String::new(), g, group),
                );
            }
            names.push(name);
        }
        if let Ok(namespaces) = std::fs::read_dir(&dir) {
            for ns in namespaces.flatten() {
                let Some(namespace) = ns.file_name().to_str().and_then(from_file_name) else {
                    continue;
                };
                for g in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                    let p = g.path();
                    if p.extension().is_none_or(|e| e != "yml") {
                        continue;
                    }
                    let yaml = std::fs::read_to_string(&p)
                        .map_err(|e| format!("reading {}: {e}", p.display()))?;
                    let config = strata_rules::file::parse_group(&namespace, &yaml)
                        .map_err(|e| format!("{}: {e}", p.display()))?;
                    let group = restoring(Group::new(&namespace, &config, default_interval));
                    groups.insert(
                        (namespace.clone(), config.name.clone()),
                        Running::new(yaml, config, group),
                    );
                }
            }
        }
        Ok(Ruler {
            dir,
            default_interval,
            files: names,
            groups: tokio::sync::Mutex::new(groups),
            env: OnceLock::new(),
        })
    }

    /// Starts every group's evaluation, and those the API adds later, with `env` until
    /// `stop`.
    pub async fn start(
        &self,
        env: Arc<Env>,
        stop: tokio::sync::watch::Receiver<bool>,
        runtime: tokio::runtime::Handle,
    ) {
        let _ = self.env.set((env, stop, runtime));
        let mut groups = self.groups.lock().await;
        for r in groups.values_mut() {
            self.spawn(r);
        }
    }

    fn spawn(&self, r: &mut Running) {
        if let Some((env, stop, runtime)) = self.env.get() {
            r.task = Some(runtime.spawn(strata_rules::group::run(
                r.group.clone(),
                env.clone(),
                crate::server::now_ms,
                stop.clone(),
            )));
        }
    }

    /// Waits for every group's task to end (they end when `stop` turns true).
    pub async fn join(&self) {
        let tasks: Vec<_> = self
            .groups
            .lock()
            .await
            .values_mut()
            .filter_map(|r| r.task.take())
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Every group, in namespace and name order.
    pub async fn groups(&self) -> Vec<Arc<tokio::sync::Mutex<Group>>> {
        self.groups
            .lock()
            .await
            .values()
            .map(|r| r.group.clone())
            .collect()
    }

    /// Whether there is no group.
    pub async fn is_empty(&self) -> bool {
        self.groups.lock().await.is_empty()
    }

    fn group_path(&self, namespace: &str, group: &str) -> PathBuf {
        self.dir
            .join(file_name(namespace))
            .join(format!("{}.yml", file_name(group)))
    }

    /// Stores and runs the group `yaml` in `namespace`, replacing one of its name.
    async fn put(&self, namespace: &str, yaml: &str) -> Result<(), (StatusCode, String)> {
        if self.files.iter().any(|f| f == namespace) {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "namespace {namespace:?} is a rule file of the configuration: edit the file"
                ),
            ));
        }
        if namespace.is_empty() {
            return Err((StatusCode::BAD_REQUEST, "empty namespace".into()));
        }
        let config = strata_rules::file::parse_group(namespace, yaml)
            .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        let mut groups = self.groups.lock().await;
        let key = (namespace.to_string(), config.name.clone());
        if groups.get(&key).is_some_and(|r| r.config == config) {
            return Ok(());
        }
        write_durably(&self.group_path(namespace, &config.name), yaml.as_bytes()).map_err(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing the group: {e}"),
            )
        })?;
        let mut group = Group::new(namespace, &config, self.default_interval);
        if let Some(old) = groups.remove(&key) {
            if let Some(t) = old.task {
                t.abort();
            }
            group.copy_state_from(&*old.group.lock().await);
        }
        let mut r = Running::new(yaml.to_string(), config, group);
        self.spawn(&mut r);
        groups.insert(key, r);
        Ok(())
    }

    /// Removes `namespace`'s group `group`, or all its groups; whether any was there.
    async fn delete(
        &self,
        namespace: &str,
        group: Option<&str>,
    ) -> Result<bool, (StatusCode, String)> {
        if self.files.iter().any(|f| f == namespace) {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "namespace {namespace:?} is a rule file of the configuration: edit the file"
                ),
            ));
        }
        let mut groups = self.groups.lock().await;
        let keys: Vec<(String, String)> = groups
            .keys()
            .filter(|(ns, g)| ns == namespace && group.is_none_or(|x| x == g))
            .cloned()
            .collect();
        for k in &keys {
            let path = self.group_path(&k.0, &k.1);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err((
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("removing the group: {e}"),
                    ));
                }
            }
            if let Some(r) = groups.remove(k)
                && let Some(t) = r.task
            {
                t.abort();
            }
        }
        if let Some(parent) = self.group_path(namespace, "x").parent() {
            let _ = std::fs::remove_dir(parent);
            if let Ok(d) = std::fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        Ok(!keys.is_empty())
    }

    /// `{namespace: [group, ...]}` of `namespace` (all when `None`), as YAML.
    async fn listing(&self, namespace: Option<&str>, group: Option<&str>) -> Option<String> {
        let groups = self.groups.lock().await;
        let mut out: BTreeMap<String, Vec<yaml_serde::Value>> = BTreeMap::new();
        for ((ns, g), r) in groups.iter() {
            if namespace.is_some_and(|n| n != ns) || group.is_some_and(|x| x != g) {
                continue;
            }
            let v = if self.files.contains(ns) {
                yaml_serde::to_value(config_value(&r.config)).unwrap_or(yaml_serde::Value::Null)
            } else {
                yaml_serde::from_str(&r.yaml).unwrap_or(yaml_serde::Value::Null)
            };
            out.entry(ns.clone()).or_default().push(v);
        }
        if namespace.is_some() && out.is_empty() {
            return None;
        }
        if group.is_some() {
            return out
                .into_values()
                .next()
                .and_then(|mut v| v.pop())
                .map(|v| yaml_serde::to_string(&v).unwrap_or_default());
        }
        Some(yaml_serde::to_string(&out).unwrap_or_default())
    }
}

/// A rule file's group as the API shows it (the keys Prometheus's format has).
fn config_value(g: &GroupConfig) -> serde_json::Value {
    let d = |d: Option<std::time::Duration>| d.map(|d| format!("{}s", d.as_secs_f64()));
    serde_json::json!({
        "name": g.name,
        "interval": d(g.interval),
        "rules": g.rules.iter().map(|r| serde_json::json!({
            "record": r.record, "alert": r.alert, "expr": r.expr,
            "for": d(r.for_), "labels": r.labels, "annotations": r.annotations,
        })).collect::<Vec<_>>(),
    })
}

fn yaml_response(body: Option<String>, what: &str) -> Response {
    match body {
        Some(b) => ([(header::CONTENT_TYPE, "application/yaml")], b).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no {what}\n")).into_response(),
    }
}

async fn list_all(State(r): State<Arc<Ruler>>) -> Response {
    yaml_response(r.listing(None, None).await, "rules")
}

async fn list_namespace(State(r): State<Arc<Ruler>>, UrlPath(ns): UrlPath<String>) -> Response {
    yaml_response(r.listing(Some(&ns), None).await, "such namespace")
}

async fn get_group(
    State(r): State<Arc<Ruler>>,
    UrlPath((ns, g)): UrlPath<(String, String)>,
) -> Response {
    yaml_response(r.listing(Some(&ns), Some(&g)).await, "such group")
}

async fn post_group(
    State(r): State<Arc<Ruler>>,
    UrlPath(ns): UrlPath<String>,
    body: Bytes,
) -> Response {
    let Ok(yaml) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not UTF-8\n").into_response();
    };
    match r.put(&ns, yaml).await {
        Ok(()) => (StatusCode::ACCEPTED, "").into_response(),
        Err((s, m)) => (s, format!("{m}\n")).into_response(),
    }
}

async fn delete_namespace(State(r): State<Arc<Ruler>>, UrlPath(ns): UrlPath<String>) -> Response {
    match r.delete(&ns, None).await {
        Ok(_) => (StatusCode::ACCEPTED, "").into_response(),
        Err((s, m)) => (s, format!("{m}\n")).into_response(),
    }
}

async fn delete_group(
    State(r): State<Arc<Ruler>>,
    UrlPath((ns, g)): UrlPath<(String, String)>,
) -> Response {
    match r.delete(&ns, Some(&g)).await {
        Ok(true) => (StatusCode::ACCEPTED, "").into_response(),
        Ok(false) => (StatusCode::NOT_FOUND, "no such group\n").into_response(),
        Err((s, m)) => (s, format!("{m}\n")).into_response(),
    }
}

/// Mimir's ruler configuration API over `ruler`.
pub fn router(ruler: Arc<Ruler>) -> Router {
    Router::new()
        .route("/prometheus/config/v1/rules", get(list_all))
        .route(
            "/prometheus/config/v1/rules/{namespace}",
            get(list_namespace)
                .post(post_group)
                .delete(delete_namespace),
        )
        .route(
            "/prometheus/config/v1/rules/{namespace}/{group}",
            get(get_group).delete(delete_group),
        )
        .with_state(ruler)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_file_globs_expand_to_the_files_they_match() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.yml", "a.yml", "c.txt"] {
            std::fs::write(dir.path().join(f), "groups: []\n").unwrap();
        }
        std::fs::create_dir(dir.path().join("d.yml")).unwrap();
        let got = expand_globs(&[
            dir.path().join("*.yml"),
            dir.path().join("none-*.yml"),
            dir.path().join("plain.yml"),
        ])
        .unwrap();
        assert_eq!(
            got,
            [
                dir.path().join("a.yml"),
                dir.path().join("b.yml"),
                dir.path().join("plain.yml")
            ]
        );
        assert!(expand_globs(&[PathBuf::from("[")]).is_err());
    }
}
