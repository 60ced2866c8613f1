//! The `hook_bindings` table: creating, listing, changing, resuming and removing a tenant's
//! bindings, with their configuration sealed at rest (`sealed_config`).

use sqlx::Row;

use super::sealed_config;
use super::{
    Binding, BindingChange, BindingStatus, HookError, NewBinding, MAX_BINDINGS_PER_TENANT,
    MAX_CONFIG_BYTES,
};
use crate::auth::TenantScope;
use crate::events::{self, CUSTOM_PREFIX};
use crate::plugins::contract::{ConfigProblem, PluginKind};
use crate::plugins::{CallContext, CallError, Plugins};
use crate::store::{new_id, now_micros, rfc3339, Store, StoreError};
use crate::vault::Vault;

/// The event types `plugin` declares (custom events excluded: hooks never receive them).
fn declared_events(plugins: &Plugins, plugin: &str) -> Result<Vec<String>, HookError> {
    let manifest = plugins
        .manifest(plugin)
        .ok_or_else(|| HookError::UnknownPlugin(plugin.to_owned()))?;
    if manifest.kind != PluginKind::Hook {
        return Err(HookError::NotAHook(plugin.to_owned()));
    }
    Ok(manifest
        .events
        .into_iter()
        .filter(|e| !e.starts_with(CUSTOM_PREFIX))
        .collect())
}

/// `requested` checked against `declared`, deduplicated in the order given.
fn chosen_events(
    plugin: &str,
    declared: &[String],
    requested: Option<Vec<String>>,
) -> Result<Vec<String>, HookError> {
    let mut chosen: Vec<String> = Vec::new();
    for event in requested.unwrap_or_else(|| declared.to_vec()) {
        if !declared.contains(&event) {
            return Err(HookError::InvalidEvents(format!(
                "hook {plugin:?} does not handle {event:?}; it handles {declared:?}"
            )));
        }
        if !chosen.contains(&event) {
            chosen.push(event);
        }
    }
    if chosen.is_empty() {
        return Err(HookError::InvalidEvents(
            "a binding needs at least one event type".into(),
        ));
    }
    Ok(chosen)
}

/// Asks the hook whether `config` suits it (its `validate-config`, contract 0.2 on), so a
/// misspelt key is refused when the binding is made, not on its first event.
async fn check_config(
    plugins: &Plugins,
    scope: &TenantScope,
    plugin: &str,
    config: &str,
) -> Result<(), HookError> {
    let ctx = CallContext {
        tenant_id: scope.tenant_id().to_owned(),
        integration_id: String::new(),
    };
    match plugins.validate_config(plugin, &ctx, config).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(problems)) => Err(HookError::InvalidConfig(describe_problems(
            plugin, &problems,
        ))),
        Err(CallError::NotInstalled(_)) => Err(HookError::UnknownPlugin(plugin.to_owned())),
        Err(err) => Err(HookError::ConfigCheckFailed(err.to_string())),
    }
}

/// The hook's verdict as one message naming every field: `config.threshold: must be >= 0`.
fn describe_problems(plugin: &str, problems: &[ConfigProblem]) -> String {
    if problems.is_empty() {
        return format!("hook {plugin:?} refused the configuration");
    }
    let described: Vec<String> = problems
        .iter()
        .take(20)
        .map(|p| {
            let field = if p.field.is_empty() {
                "config".to_owned()
            } else {
                format!("config.{}", p.field)
            };
            // The hook's text: bounded, as it lands in a response and a manager's screen.
            let message: String = p.message.chars().take(300).collect();
            format!("{field}: {message}")
        })
        .collect();
    format!(
        "hook {plugin:?} refused the configuration: {}",
        described.join("; ")
    )
}

/// The configuration as stored: a JSON object of bounded size.
fn config_text(config: Option<serde_json::Value>) -> Result<String, HookError> {
    let config = match config {
        None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
        Some(v @ serde_json::Value::Object(_)) => v,
        Some(_) => {
            return Err(HookError::InvalidConfig(
                "config must be a JSON object".into(),
            ))
        }
    };
    let text = config.to_string();
    if text.len() > MAX_CONFIG_BYTES {
        return Err(HookError::InvalidConfig(format!(
            "config must be at most {MAX_CONFIG_BYTES} bytes of JSON"
        )));
    }
    Ok(text)
}

const BINDING_COLUMNS: &str = "id, plugin_id, config, config_key_id, config_sealed, events, status, cursor_seq, delivered, failures, last_error, last_delivered_at, next_attempt_at, created_at, updated_at";

fn binding_from_row(
    vault: &Vault,
    scope: &TenantScope,
    row: &sqlx::any::AnyRow,
) -> Result<Binding, HookError> {
    let corrupt =
        |what: &str| StoreError::Sqlx(sqlx::Error::Decode(format!("corrupt hook {what}").into()));
    let config = sealed_config::open(vault, scope.tenant_id(), row)?;
    let events: String = row.try_get("events")?;
    let status: String = row.try_get("status")?;
    let status = BindingStatus::parse(&status).ok_or_else(|| corrupt("status"))?;
    let failures: i64 = row.try_get("failures")?;
    let next_attempt_at: i64 = row.try_get("next_attempt_at")?;
    let last_delivered_at: Option<i64> = row.try_get("last_delivered_at")?;
    Ok(Binding {
        id: row.try_get("id")?,
        plugin: row.try_get("plugin_id")?,
        config: serde_json::from_str(&config).map_err(|_| corrupt("config"))?,
        events: serde_json::from_str(&events).map_err(|_| corrupt("events"))?,
        status,
        cursor: row.try_get("cursor_seq")?,
        delivered: row.try_get("delivered")?,
        failures,
        last_error: row.try_get("last_error")?,
        last_delivered_at: last_delivered_at.map(rfc3339),
        next_attempt_at: (status == BindingStatus::Active && failures > 0)
            .then(|| rfc3339(next_attempt_at)),
        created_at: rfc3339(row.try_get("created_at")?),
        updated_at: rfc3339(row.try_get("updated_at")?),
    })
}

/// The tenant's hook bindings.
pub(crate) struct Hooks;

impl Hooks {
    /// Binds `new.plugin` to the tenant; it receives the events appended from now on.
    pub(crate) async fn create(
        store: &Store,
        vault: &Vault,
        plugins: &Plugins,
        scope: &TenantScope,
        new: NewBinding,
    ) -> Result<Binding, HookError> {
        let declared = declared_events(plugins, &new.plugin)?;
        let events = chosen_events(&new.plugin, &declared, new.events)?;
        let config = config_text(new.config)?;
        check_config(plugins, scope, &new.plugin, &config).await?;
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM hook_bindings WHERE tenant_id = $1")
                .bind(scope.tenant_id())
                .fetch_one(store.reader())
                .await?;
        if count >= MAX_BINDINGS_PER_TENANT {
            return Err(HookError::TooMany);
        }
        let id = new_id();
        let sealed = sealed_config::seal(vault, scope.tenant_id(), &id, &config)?;
        let now = now_micros();
        // Committed events up to here happened before the binding existed.
        let cursor = events::last_seq(store, scope.tenant_id()).await?;
        sqlx::query(
            "INSERT INTO hook_bindings (id, tenant_id, plugin_id, config, config_key_id, config_sealed, events, status,
               cursor_seq, created_at, updated_at)
             VALUES ($1, $2, $3, '', $4, $5, $6, 'active', $7, $8, $8)",
        )
        .bind(&id)
        .bind(scope.tenant_id())
        .bind(&new.plugin)
        .bind(&sealed.key_id)
        .bind(&sealed.bytes)
        .bind(serde_json::Value::from(events).to_string())
        .bind(cursor)
        .bind(now)
        .execute(store.writer())
        .await?;
        tracing::info!(tenant = %scope.slug(), binding = %id, plugin = %new.plugin, cursor, "hook bound");
        Self::get(store, vault, scope, &id).await
    }

    /// Every binding of the tenant, oldest first.
    pub(crate) async fn list(
        store: &Store,
        vault: &Vault,
        scope: &TenantScope,
    ) -> Result<Vec<Binding>, HookError> {
        let rows = sqlx::query(&format!(
            "SELECT {BINDING_COLUMNS} FROM hook_bindings WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2"
        ))
        .bind(scope.tenant_id())
        .bind(MAX_BINDINGS_PER_TENANT)
        .fetch_all(store.reader())
        .await?;
        rows.iter()
            .map(|row| binding_from_row(vault, scope, row))
            .collect()
    }

    /// One binding of the tenant.
    pub(crate) async fn get(
        store: &Store,
        vault: &Vault,
        scope: &TenantScope,
        id: &str,
    ) -> Result<Binding, HookError> {
        let row = sqlx::query(&format!(
            "SELECT {BINDING_COLUMNS} FROM hook_bindings WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(scope.tenant_id())
        .bind(id)
        .fetch_optional(store.reader())
        .await?
        .ok_or_else(|| HookError::NotFound(id.to_owned()))?;
        binding_from_row(vault, scope, &row)
    }

    /// Changes configuration, event types or enablement; the cursor never moves here.
    pub(crate) async fn update(
        store: &Store,
        vault: &Vault,
        plugins: &Plugins,
        scope: &TenantScope,
        id: &str,
        change: BindingChange,
    ) -> Result<Binding, HookError> {
        let current = Self::get(store, vault, scope, id).await?;
        let sealed = match change.config {
            Some(c) => {
                let config = config_text(Some(c))?;
                check_config(plugins, scope, &current.plugin, &config).await?;
                Some(sealed_config::seal(vault, scope.tenant_id(), id, &config)?)
            }
            None => None,
        };
        let events = match change.events {
            Some(requested) => {
                let declared = declared_events(plugins, &current.plugin)?;
                Some(chosen_events(&current.plugin, &declared, Some(requested))?)
            }
            None => None,
        };
        let status = match change.enabled {
            Some(true) => Some(BindingStatus::Active),
            Some(false) => Some(BindingStatus::Disabled),
            None => None,
        };
        // Enabling starts retries afresh; anything else keeps the failure count.
        let reset = status == Some(BindingStatus::Active);
        // A new configuration replaces the sealed one, and empties a plaintext one.
        let found = sqlx::query(
            "UPDATE hook_bindings SET config = CASE WHEN $1 IS NULL THEN config ELSE '' END,
               config_key_id = COALESCE($1, config_key_id), config_sealed = COALESCE($2, config_sealed),
               events = COALESCE($3, events), status = COALESCE($4, status),
               failures = CASE WHEN $5 = 1 THEN 0 ELSE failures END,
               next_attempt_at = CASE WHEN $5 = 1 THEN 0 ELSE next_attempt_at END,
               updated_at = $6
             WHERE tenant_id = $7 AND id = $8",
        )
        .bind(sealed.as_ref().map(|s| s.key_id.clone()))
        .bind(sealed.map(|s| s.bytes))
        .bind(events.map(|e| serde_json::Value::from(e).to_string()))
        .bind(status.map(BindingStatus::as_str))
        .bind(i64::from(reset))
        .bind(now_micros())
        .bind(scope.tenant_id())
        .bind(id)
        .execute(store.writer())
        .await?
        .rows_affected();
        if found == 0 {
            return Err(HookError::NotFound(id.to_owned()));
        }
        Self::get(store, vault, scope, id).await
    }

    /// Lifts a quarantine: the held event is retried at once, from the same cursor.
    pub(crate) async fn resume(
        store: &Store,
        vault: &Vault,
        scope: &TenantScope,
        id: &str,
    ) -> Result<Binding, HookError> {
        let resumed = sqlx::query(
            "UPDATE hook_bindings SET status = 'active', failures = 0, next_attempt_at = 0, updated_at = $1
             WHERE tenant_id = $2 AND id = $3 AND status IN ('active', 'quarantined')",
        )
        .bind(now_micros())
        .bind(scope.tenant_id())
        .bind(id)
        .execute(store.writer())
        .await?
        .rows_affected();
        if resumed == 0 {
            // Either unknown (404 from get) or disabled.
            Self::get(store, vault, scope, id).await?;
            return Err(HookError::Disabled(id.to_owned()));
        }
        Self::get(store, vault, scope, id).await
    }

    /// Removes a binding; a delivery in flight for it commits nothing.
    pub(crate) async fn delete(
        store: &Store,
        scope: &TenantScope,
        id: &str,
    ) -> Result<(), HookError> {
        let deleted = sqlx::query("DELETE FROM hook_bindings WHERE tenant_id = $1 AND id = $2")
            .bind(scope.tenant_id())
            .bind(id)
            .execute(store.writer())
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(HookError::NotFound(id.to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn events_default_to_the_declared_ones_and_must_be_a_subset() {
        let declared = s(&["new_order", "tier_unlocked"]);
        assert_eq!(chosen_events("h", &declared, None).unwrap(), declared);
        assert_eq!(
            chosen_events("h", &declared, Some(s(&["tier_unlocked", "tier_unlocked"]))).unwrap(),
            s(&["tier_unlocked"])
        );
        assert!(matches!(
            chosen_events("h", &declared, Some(s(&["gift_card_redeemed"]))),
            Err(HookError::InvalidEvents(_))
        ));
        assert!(matches!(
            chosen_events("h", &declared, Some(vec![])),
            Err(HookError::InvalidEvents(_))
        ));
    }

    #[test]
    fn config_problems_name_their_fields() {
        let problem = |field: &str, message: &str| ConfigProblem {
            field: field.into(),
            message: message.into(),
        };
        assert_eq!(
            describe_problems(
                "flag",
                &[
                    problem("threshhold", "unknown field"),
                    problem("", "not an object")
                ]
            ),
            r#"hook "flag" refused the configuration: config.threshhold: unknown field; config: not an object"#
        );
        assert_eq!(
            describe_problems("flag", &[]),
            r#"hook "flag" refused the configuration"#
        );
    }

    #[test]
    fn config_is_an_object_of_bounded_size() {
        assert_eq!(config_text(None).unwrap(), "{}");
        assert_eq!(config_text(Some(serde_json::Value::Null)).unwrap(), "{}");
        assert_eq!(
            config_text(Some(serde_json::json!({"a": 1}))).unwrap(),
            r#"{"a":1}"#
        );
        assert!(config_text(Some(serde_json::json!([1]))).is_err());
        assert!(config_text(Some(serde_json::json!("x"))).is_err());
        let big = "x".repeat(MAX_CONFIG_BYTES);
        assert!(config_text(Some(serde_json::json!({ "a": big }))).is_err());
    }
}
