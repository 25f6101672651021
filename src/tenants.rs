//! Tenants: one Strata serving many teams, each with its own tables, limits and tokens.
//!
//! **The model.** With no `[[tenants]]` in the configuration, Strata has one anonymous
//! tenant and behaves as it always has. With tenants, every request names one:
//! - **Which tenant.** `X-Scope-OrgID` (Mimir's and Cortex's header; on gRPC, the
//!   `x-scope-orgid` metadata key) names it, or a token does. Tenant IDs follow Mimir's
//!   rules ([`validate_tenant_id`]). Only tenants declared in the configuration exist; a
//!   request naming another is refused with 401.
//! - **Who may.** A tenant with `tokens` accepts only requests carrying one of them:
//!   `Authorization: Bearer <token>` (Prometheus's `authorization`, Grafana), `Token
//!   <token>` (InfluxDB 2 clients) or `Basic` with the token as password (InfluxDB 1
//!   clients, Flight SQL's handshake). No token: 401. A token of tenant A with
//!   `X-Scope-OrgID: B`: 403. A tenant without tokens trusts the header alone (a gateway in
//!   front authenticates, as with Mimir).
//! - **Isolation.** Each tenant's tables, WAL, head, caches, metadata and rollup tiers live
//!   under `<data_dir>/tenants/<id>/` (WAL under `<wal_dir>/tenants/<id>/`), and each has
//!   its own query engine: no query path (PromQL, the Prometheus API, SQL over Flight SQL)
//!   can name another tenant's tables, because they are not in its catalog.
//! - **Limits.** Per tenant: an ingestion rate (a token bucket of samples, 429 with
//!   `Retry-After`), cardinality limits and retention, each defaulting to the top-level
//!   section.
//!
//! Where data enters and leaves: [`Auth::resolve`] turns request headers into a tenant
//! ID; `crate::server` routes the request to that tenant's stack.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http;
use tonic::body::Body;
use tonic::server::NamedService;

use serde::Deserialize;
use strata_ingest::policy::cardinality::CardinalityConfig;
use strata_ingest::policy::ingestion_rate::IngestionRate;
use strata_ingest::receive::scrape::ScrapeConfig;

/// One `[[tenants]]` entry.
///
/// ```toml
/// [[tenants]]
/// id = "team-a"
/// tokens = ["secret-a"]                # none: X-Scope-OrgID alone (a gateway authenticates)
/// ingestion_rate = { samples_per_second = 100000, burst = 200000 }
/// raw_retention = "7d"                 # default: [rollup] raw_retention
/// tier_retention = { "1m" = "30d" }    # default: each tier's own retention
/// [tenants.cardinality]                # default: the top-level [cardinality]
/// max_series = 500000
/// [[tenants.scrape_configs]]           # this tenant's scrape jobs
/// job_name = "node"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant ID ([`validate_tenant_id`]).
    pub id: String,
    /// Bearer tokens that act for this tenant; empty to trust `X-Scope-OrgID` alone.
    pub tokens: Vec<String>,
    /// Samples per second and burst; no limit by default.
    pub ingestion_rate: IngestionRate,
    /// Cardinality limits; the top-level `[cardinality]` when absent.
    pub cardinality: Option<CardinalityConfig>,
    /// Raw retention; `[rollup] raw_retention` when absent.
    #[serde(with = "humantime_serde")]
    pub raw_retention: Option<Duration>,
    /// Retention per tier name; each tier's configured retention for the others.
    #[serde(deserialize_with = "durations_by_name")]
    pub tier_retention: BTreeMap<String, Duration>,
    /// This tenant's scrape jobs (the top-level `[[scrape_configs]]` need a tenant, so
    /// they are refused when tenants are configured).
    pub scrape_configs: Vec<ScrapeConfig>,
    /// This tenant's rule files (the top-level `rule_files` are refused with tenants).
    pub rule_files: Vec<std::path::PathBuf>,
}

/// A map of names to humantime durations (`{ "1m" = "30d" }`).
fn durations_by_name<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Duration>, D::Error> {
    let m = BTreeMap::<String, humantime_serde::Serde<Duration>>::deserialize(d)?;
    Ok(m.into_iter().map(|(k, v)| (k, v.into_inner())).collect())
}

/// The longest tenant ID, bytes (Mimir's limit).
pub const MAX_TENANT_ID_LENGTH: usize = 150;

/// Checks `id` against Mimir's tenant ID rules (`docs/sources/.../about-tenant-ids.md`,
/// dskit's `tenant.ValidTenantID`): 1 to 150 bytes of `0-9a-zA-Z!-_.*'()`, not `.` or
/// `..`, and not Mimir's reserved `__mimir_cluster`.
///
/// # Errors
/// A message naming the rule `id` breaks.
pub fn validate_tenant_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the tenant ID is empty".into());
    }
    if id.len() > MAX_TENANT_ID_LENGTH {
        return Err(format!(
            "tenant ID too long: {} bytes, at most {MAX_TENANT_ID_LENGTH}",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(*c)))
    {
        return Err(format!(
            "tenant ID {id:?} has the unsupported character {c:?}: use 0-9, a-z, A-Z and !-_.*'()"
        ));
    }
    if id == "." || id == ".." {
        return Err(format!("tenant ID {id:?} is not allowed"));
    }
    if id == "__mimir_cluster" {
        return Err("tenant ID \"__mimir_cluster\" is reserved".into());
    }
    Ok(())
}

/// Why a request may not act for a tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No tenant, an unknown tenant or token, or a tenant that needs a token: HTTP 401,
    /// gRPC `UNAUTHENTICATED`.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token asking for another tenant's data: HTTP 403, gRPC
    /// `PERMISSION_DENIED`.
    #[error("{0}")]
    Forbidden(String),
}

/// Who may act for which tenant: the tenants' IDs and tokens.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Token to tenant ID.
    by_token: HashMap<String, String>,
    /// Tenant ID to whether it needs a token.
    tenants: HashMap<String, bool>,
}

/// The header naming the tenant (Mimir's and Cortex's).
pub const ORG_ID_HEADER: &str = "x-scope-orgid";

impl Auth {
    /// The tenants of `configs`.
    ///
    /// # Errors
    /// A message for an invalid or repeated tenant ID, an empty token, or a token given to
    /// two tenants.
    pub fn new(configs: &[TenantConfig]) -> Result<Auth, String> {
        let mut auth = Auth::default();
        for t in configs {
            validate_tenant_id(&t.id).map_err(|e| format!("[[tenants]]: {e}"))?;
            if auth
                .tenants
                .insert(t.id.clone(), !t.tokens.is_empty())
                .is_some()
            {
                return Err(format!("[[tenants]]: tenant {:?} is declared twice", t.id));
            }
            for token in &t.tokens {
                if token.trim().is_empty() {
                    return Err(format!("[[tenants]]: tenant {:?} has an empty token", t.id));
                }
                if let Some(other) = auth.by_token.insert(token.clone(), t.id.clone()) {
                    return Err(format!(
                        "[[tenants]]: tenants {other:?} and {:?} share a token",
                        t.id
                    ));
                }
            }
        }
        Ok(auth)
    }

    /// The tenant a request acts for, from its `X-Scope-OrgID` (`org_id`) and
    /// `Authorization` (`authorization`) header values (rules in the module doc).
    ///
    /// # Errors
    /// [`AuthError::Unauthenticated`] or [`AuthError::Forbidden`], with a message naming
    /// the problem (never the token).
    pub fn resolve(
        &self,
        org_id: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<String, AuthError> {
        let org_id = org_id.map(str::trim).filter(|s| !s.is_empty());
        if let Some(id) = org_id {
            if id.contains('|') {
                return Err(AuthError::Unauthenticated(format!(
                    "X-Scope-OrgID {id:?} names several tenants: queries across tenants are not supported"
                )));
            }
            validate_tenant_id(id)
                .map_err(|e| AuthError::Unauthenticated(format!("X-Scope-OrgID: {e}")))?;
        }
        let token = authorization
            .and_then(token_of)
            .filter(|t| t != ANONYMOUS_FLIGHT_TOKEN);
        match (token, org_id) {
            (Some(token), id) => {
                let Some(tenant) = self.by_token.get(&token) else {
                    return Err(AuthError::Unauthenticated(
                        "the token is not valid for any tenant".into(),
                    ));
                };
                match id {
                    Some(id) if id != tenant => Err(AuthError::Forbidden(format!(
                        "the token is tenant {tenant:?}'s: it may not act for tenant {id:?}"
                    ))),
                    _ => Ok(tenant.clone()),
                }
            }
            (None, Some(id)) => match self.tenants.get(id) {
                None => Err(AuthError::Unauthenticated(format!(
                    "no tenant {id:?} on this server"
                ))),
                Some(true) => Err(AuthError::Unauthenticated(format!(
                    "tenant {id:?} needs a token: send Authorization: Bearer <token>"
                ))),
                Some(false) => Ok(id.to_string()),
            },
            (None, None) => Err(AuthError::Unauthenticated(
                "no tenant: send X-Scope-OrgID or Authorization: Bearer <token>".into(),
            )),
        }
    }
}

/// The token Flight SQL's handshake gives a client that sent no credentials
/// (`strata_flight`): it stands for no token.
const ANONYMOUS_FLIGHT_TOKEN: &str = "strata-anonymous";

/// The token of an `Authorization` value: `Bearer <t>`, `Token <t>`, or `Basic` with
/// base64 `user:<t>` (the password is the token; the user is ignored).
fn token_of(authorization: &str) -> Option<String> {
    use base64::Engine as _;
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        return (!rest.is_empty()).then(|| rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return (!password.is_empty()).then(|| password.to_string());
    }
    None
}

/// A gRPC service routing each call to its tenant's copy of `S` by the call's
/// `x-scope-orgid` and `authorization` metadata ([`Auth::resolve`]); `UNAUTHENTICATED` or
/// `PERMISSION_DENIED` otherwise. Without an [`Auth`] (no tenants), every call goes to the
/// one service.
#[derive(Clone)]
pub struct TenantGrpc<S> {
    auth: Option<Arc<Auth>>,
    services: Arc<HashMap<String, S>>,
}

impl<S> TenantGrpc<S> {
    /// Routes over `services` (tenant ID to service; one entry under any key without
    /// `auth`).
    pub fn new(auth: Option<Arc<Auth>>, services: HashMap<String, S>) -> Self {
        TenantGrpc {
            auth,
            services: Arc::new(services),
        }
    }
}

impl<S: NamedService> NamedService for TenantGrpc<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for TenantGrpc<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let tenant = match &self.auth {
            None => self
                .services
                .keys()
                .next()
                .cloned()
                .ok_or_else(|| tonic::Status::unavailable("no service")),
            Some(auth) => {
                let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
                let resolved = auth
                    .resolve(header(ORG_ID_HEADER), header("authorization"))
                    .map_err(|e| match e {
                        AuthError::Unauthenticated(m) => tonic::Status::unauthenticated(m),
                        AuthError::Forbidden(m) => tonic::Status::permission_denied(m),
                    });
                // The services see the token as `Bearer` whatever the scheme (Flight
                // SQL's handshake returns it to the client for its next calls).
                let bearer = header("authorization")
                    .and_then(token_of)
                    .and_then(|t| http::HeaderValue::try_from(format!("Bearer {t}")).ok());
                if let Some(b) = bearer {
                    req.headers_mut().insert(http::header::AUTHORIZATION, b);
                }
                resolved
            }
        };
        let svc = tenant.and_then(|t| {
            self.services
                .get(&t)
                .cloned()
                .ok_or_else(|| tonic::Status::unauthenticated(format!("no tenant {t:?}")))
        });
        match svc {
            Ok(mut svc) => Box::pin(async move { svc.call(req).await }),
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

/// Serves Flight SQL on `listener` until `shutdown`: each tenant's calls are answered
/// over its own session context (`ctxs`, tenant ID to context; one entry without `auth`).
/// A client authenticates with Flight SQL's handshake (user and token as password: ADBC's
/// `username`/`password`) or sends `authorization` and `x-scope-orgid` on every call.
///
/// # Errors
/// A message when a service cannot be built or the server fails.
pub async fn serve_flight(
    listener: tokio::net::TcpListener,
    ctxs: Vec<(String, datafusion::prelude::SessionContext)>,
    auth: Option<Arc<Auth>>,
    policy: strata_flight::SqlPolicy,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let mut services = HashMap::new();
    for (id, ctx) in ctxs {
        let svc = strata_flight::service(ctx, policy.clone()).map_err(|e| e.to_string())?;
        services.insert(id, svc);
    }
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(TenantGrpc::new(auth, services))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| e.to_string())
}

/// Which tenant a command-line client acts for on a server with `[[tenants]]`
/// (this module): its ID (`X-Scope-OrgID`) and token (`Authorization: Bearer`); both
/// `None` for a server without tenants.
#[derive(Debug, Clone, Default)]
pub struct TenantHeaders {
    /// The tenant ID.
    pub org_id: Option<String>,
    /// The tenant's token.
    pub token: Option<String>,
}

impl TenantHeaders {
    /// The request headers these make.
    ///
    /// # Errors
    /// A message when a value is not a valid header value.
    pub fn headers(&self) -> Result<reqwest::header::HeaderMap, String> {
        let mut h = reqwest::header::HeaderMap::new();
        if let Some(id) = &self.org_id {
            h.insert(
                ORG_ID_HEADER,
                id.parse()
                    .map_err(|_| format!("tenant {id:?}: not a header value"))?,
            );
        }
        if let Some(t) = &self.token {
            let mut v: reqwest::header::HeaderValue = format!("Bearer {t}")
                .parse()
                .map_err(|_| "the token is not a header value".to_string())?;
            v.set_sensitive(true);
            h.insert(reqwest::header::AUTHORIZATION, v);
        }
        Ok(h)
    }

    /// Sets these on a Flight SQL client: the token as its bearer token, the tenant ID as
    /// `x-scope-orgid` on every call.
    pub fn apply_to_flight(
        &self,
        client: &mut arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>,
    ) {
        if let Some(id) = &self.org_id {
            client.set_header(ORG_ID_HEADER, id);
        }
        if let Some(t) = &self.token {
            client.set_token(t.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(&[
            TenantConfig {
                id: "team-a".into(),
                tokens: vec!["tok-a".into()],
                ..Default::default()
            },
            TenantConfig {
                id: "team-b".into(),
                ..Default::default()
            },
        ])
        .unwrap()
    }

    #[test]
    fn tenant_ids_follow_mimirs_rules() {
        for ok in ["a", "team-a", "A_b.c", "x!*'()", &"z".repeat(150)] {
            assert_eq!(validate_tenant_id(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "é",
            "__mimir_cluster",
            &"z".repeat(151),
        ] {
            assert!(validate_tenant_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_and_org_ids_resolve_as_documented() {
        let a = auth();
        use AuthError::*;
        // A token alone names its tenant; with its own org ID too.
        assert_eq!(a.resolve(None, Some("Bearer tok-a")), Ok("team-a".into()));
        assert_eq!(
            a.resolve(Some("team-a"), Some("Token tok-a")),
            Ok("team-a".into())
        );
        // Basic with the token as password (user ignored): "u:tok-a".
        assert_eq!(
            a.resolve(None, Some("Basic dTp0b2stYQ==")),
            Ok("team-a".into())
        );
        // Another tenant's data with A's token: 403.
        assert!(matches!(
            a.resolve(Some("team-b"), Some("Bearer tok-a")),
            Err(Forbidden(_))
        ));
        // A tenant with tokens needs one; a tenant without trusts the header.
        assert!(matches!(
            a.resolve(Some("team-a"), None),
            Err(Unauthenticated(_))
        ));
        assert_eq!(a.resolve(Some("team-b"), None), Ok("team-b".into()));
        // Nothing, an unknown token, an unknown tenant, several tenants: 401.
        for (org, authz) in [
            (None, None),
            (None, Some("Bearer nope")),
            (Some("team-c"), None),
            (Some("team-a|team-b"), None),
            (Some("a/b"), None),
        ] {
            assert!(
                matches!(a.resolve(org, authz), Err(Unauthenticated(_))),
                "{org:?} {authz:?}"
            );
        }
    }

    #[test]
    fn bad_tenant_declarations_are_refused() {
        let t = |id: &str, tok: &[&str]| TenantConfig {
            id: id.into(),
            tokens: tok.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert!(
            Auth::new(&[t("a", &[]), t("a", &[])])
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            Auth::new(&[t("a", &["x"]), t("b", &["x"])])
                .unwrap_err()
                .contains("share")
        );
        assert!(Auth::new(&[t("a b", &[])]).is_err());
        assert!(
            Auth::new(&[t("a", &[" "])])
                .unwrap_err()
                .contains("empty token")
        );
    }
}
