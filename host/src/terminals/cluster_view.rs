//! What the cluster sees of terminals: this host's registry as the heartbeat publishes it
//! ([`crate::cluster`]), `pos-status` across every live host, and `GET /admin/cluster`.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{TerminalStatus, Terminals};
use crate::auth::{AuthState, Operator, Role as KeyRole, TerminalCaller};
use crate::cluster::{self, LiveHost, LocalTerminal, TerminalSource};
use crate::error::ApiResult;
use crate::events;
use crate::locks::lock;
use crate::store::rfc3339;
use crate::terminals::TerminalsState;

impl TerminalSource for Terminals {
    fn snapshot(&self) -> Vec<LocalTerminal> {
        lock(&self.inner.sessions)
            .iter()
            .map(|(&session_id, e)| LocalTerminal {
                session_id,
                tenant_id: e.tenant_id.clone(),
                key_id: e.key_id.clone(),
                label: e.label.clone(),
                role: e.role.as_str(),
                connected_at: e.connected_at,
                last_seq: e.socket.last_seq(),
                remote_addr: e.remote_addr.map(|a| a.to_string()),
            })
            .collect()
    }

    fn changed(&self) -> Arc<tokio::sync::Notify> {
        self.inner.changed.clone()
    }
}

/// `GET /admin/cluster`.
pub(crate) fn admin_routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    TerminalsState: FromRef<S>,
{
    OpenApiRouter::new().routes(routes!(cluster_hosts))
}

/// Answer of `GET /api/{tenant}/pos-status`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct PosStatus {
    /// The tenant's slug.
    tenant: String,
    /// The host that answered.
    host: String,
    /// The tenant's newest event sequence number.
    last_seq: i64,
    /// Connected terminals on every live host, oldest connection first.
    terminals: Vec<TerminalStatus>,
}

/// The tenant's terminals on every live host, oldest connection first. This host's come
/// from its registry (current `last_seq`); other hosts' from their published rows.
#[utoipa::path(get, path = "/pos-status", tag = "terminal", responses(
    (status = 200, description = "The tenant's connected terminals (any key).", body = PosStatus),
))]
pub(super) async fn pos_status(
    State(app): State<TerminalsState>,
    TerminalCaller(caller): TerminalCaller,
) -> ApiResult<Json<PosStatus>> {
    let tenant_id = caller.scope.tenant_id();
    let this_host = app.hub.node_id();
    let mut terminals: Vec<(i64, TerminalStatus)> = lock(&app.terminals.inner.sessions)
        .values()
        .filter(|e| e.tenant_id == tenant_id)
        .map(|e| {
            (
                e.connected_at,
                TerminalStatus {
                    host_id: this_host.to_owned(),
                    key_id: e.key_id.clone(),
                    label: e.label.clone(),
                    role: e.role,
                    connected_at: rfc3339(e.connected_at),
                    last_seq: e.socket.last_seq(),
                    remote_addr: e.remote_addr.map(|a| a.to_string()),
                },
            )
        })
        .collect();
    let remote = cluster::remote_terminals(&app.store, tenant_id, this_host).await?;
    terminals.extend(remote.into_iter().map(|t| {
        (
            t.connected_at,
            TerminalStatus {
                host_id: t.host_id,
                key_id: t.key_id,
                label: t.label,
                // Rows are written from a `Role`; an unknown one cannot be stored.
                role: KeyRole::parse(&t.role).unwrap_or(KeyRole::Terminal),
                connected_at: rfc3339(t.connected_at),
                last_seq: t.last_seq,
                remote_addr: t.remote_addr,
            },
        )
    }));
    terminals.sort_by_key(|(at, _)| *at);
    let terminals = terminals.into_iter().map(|(_, t)| t).collect();
    Ok(Json(PosStatus {
        tenant: caller.scope.slug().to_owned(),
        host: this_host.to_owned(),
        last_seq: events::last_seq(&app.store, tenant_id).await?,
        terminals,
    }))
}

/// Answer of `GET /admin/cluster`.
#[derive(Serialize, utoipa::ToSchema)]
struct ClusterView {
    /// The host that answered.
    answered_by: String,
    /// Every live host.
    hosts: Vec<ClusterHost>,
}

/// A live host.
#[derive(Serialize, utoipa::ToSchema)]
struct ClusterHost {
    #[serde(flatten)]
    host: LiveHost,
    /// Whether this is the host that answered.
    this_host: bool,
}

/// The live hosts of the cluster (one on SQLite) and their terminal counts.
#[utoipa::path(get, path = "/cluster", tag = "operations", responses(
    (status = 200, description = "The hosts.", body = ClusterView),
))]
async fn cluster_hosts(
    _: Operator,
    State(app): State<TerminalsState>,
) -> ApiResult<Json<ClusterView>> {
    let this_host = app.hub.node_id();
    let hosts = cluster::live_hosts(&app.store)
        .await?
        .into_iter()
        .map(|mut host| {
            let this = host.id == this_host;
            if this {
                // This host's own count is known now, not as of its last heartbeat.
                host.terminals = app.terminals.len() as i64;
            }
            ClusterHost {
                host,
                this_host: this,
            }
        })
        .collect();
    Ok(Json(ClusterView {
        answered_by: this_host.to_owned(),
        hosts,
    }))
}
