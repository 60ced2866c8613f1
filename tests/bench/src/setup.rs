//! Creating the benchmark tenant, its keys and a gift card through the real API.

use std::net::SocketAddr;

use anyhow::{anyhow, bail, Context, Result};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::http::{snippet, Conn, Template};
use crate::server::{random_suffix, Server};

pub struct Tenant {
    pub slug: String,
    pub terminal_key: String,
    pub manager_key: String,
    pub gift_card: String,
}

impl Tenant {
    /// A template for a tenant API route, authenticated with `key` the documented way.
    pub fn request(
        &self,
        method: Method,
        addr: SocketAddr,
        route: &str,
        key: &str,
    ) -> Result<Template> {
        Template::new(method, addr, &format!("/api/{}{route}", self.slug))?
            .header("x-api-key", key)?
            .header("x-tenant-id", &self.slug)
    }
}

async fn call(conn: &mut Conn, tpl: Template, expect: StatusCode, what: &str) -> Result<Value> {
    let (status, body) = conn.send(tpl.build()).await.context(what.to_string())?;
    if status != expect {
        bail!(
            "{what}: expected {expect}, got {status}: {}",
            snippet(&body)
        );
    }
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body).with_context(|| format!("{what}: response is not JSON"))
}

pub async fn create_tenant(server: &Server) -> Result<Tenant> {
    let addr = server.addr;
    let mut conn = Conn::connect(addr).await?;
    let bearer = format!("Bearer {}", server.operator_token);
    let slug = format!("bench-{}", random_suffix());

    let tpl = Template::new(Method::POST, addr, "/admin/tenants")?
        .header("authorization", &bearer)?
        .json_body(&json!({
            "slug": slug,
            "name": "Benchmark Bistro",
            "currency": "USD",
            "timezone": "America/New_York",
            "country": "US",
        }))?;
    call(&mut conn, tpl, StatusCode::CREATED, "POST /admin/tenants").await?;

    let mut keys = Vec::new();
    for role in ["terminal", "manager"] {
        let tpl = Template::new(Method::POST, addr, &format!("/admin/tenants/{slug}/keys"))?
            .header("authorization", &bearer)?
            .json_body(&json!({"role": role, "label": format!("bench {role}")}))?;
        let v = call(
            &mut conn,
            tpl,
            StatusCode::CREATED,
            &format!("POST /admin/tenants/{slug}/keys ({role})"),
        )
        .await?;
        let key = v
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("key response has no \"key\": {v}"))?;
        keys.push(key.to_string());
    }
    let manager_key = keys.pop().ok_or_else(|| anyhow!("no manager key"))?;
    let terminal_key = keys.pop().ok_or_else(|| anyhow!("no terminal key"))?;

    let mut tenant = Tenant {
        slug,
        terminal_key,
        manager_key,
        gift_card: "BENCHCARD0001".to_string(),
    };

    let tpl = tenant
        .request(Method::POST, addr, "/gift-cards", &tenant.manager_key)?
        .json_body(&json!({"code": tenant.gift_card, "amount": 100_000_000}))?;
    let v = call(&mut conn, tpl, StatusCode::CREATED, "POST /gift-cards").await?;
    if let Some(code) = v.get("code").and_then(Value::as_str) {
        tenant.gift_card = code.to_string();
    }

    // Sanity check of the route the balance scenario hammers.
    let tpl = tenant.request(
        Method::GET,
        addr,
        &format!("/gift-cards/{}/balance", tenant.gift_card),
        &tenant.terminal_key,
    )?;
    call(&mut conn, tpl, StatusCode::OK, "GET gift-card balance").await?;
    Ok(tenant)
}
