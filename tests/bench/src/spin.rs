//! plugin-spin: gift-card balance reads while plugin guests burn their CPU deadline.
//!
//! Installs the `test-loop` guest (its `validate` never returns), measures balance reads
//! with no guest running, then again while `guests` callers keep one spinning call each in
//! flight. A call ends at the guest's CPU deadline (default 1 s); five failures in a row
//! would quarantine the plugin, so each caller re-activates it after every call (one admin
//! write a second per caller, part of the measured load).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use serde_json::json;

use crate::http::{snippet, Conn, Template};
use crate::load::{self, LoadResult};
use crate::server::Server;
use crate::setup::Tenant;

/// What the scenario measured.
pub struct SpinResult {
    pub idle: LoadResult,
    pub spinning: LoadResult,
    /// Guest calls stopped at their deadline (HTTP 504) during the spinning run.
    pub deadlines: u64,
    /// Guest calls answered otherwise (quarantined between a failure and the re-activation).
    pub other_answers: u64,
}

impl SpinResult {
    pub fn p99_ratio(&self) -> f64 {
        let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99).max(1) as f64;
        p99(&self.spinning.hist) / p99(&self.idle.hist)
    }
}

/// `test_loop.wasm` as host/build.rs leaves it: `<target>/wasm-plugins/wasm32-wasip2/release`,
/// the bench itself being `<target>/<profile>/posbridge-bench`.
pub fn default_wasm() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench executable")?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("bench executable {} has no target dir", exe.display()))?;
    Ok(target.join("wasm-plugins/wasm32-wasip2/release/test_loop.wasm"))
}

async fn admin(server: &Server, tpl: Template, expect: &[StatusCode], what: &str) -> Result<()> {
    let mut conn = Conn::connect(server.addr).await?;
    let tpl = tpl.header(
        "authorization",
        &format!("Bearer {}", server.operator_token),
    )?;
    let (status, body) = conn.send(tpl.build()).await.context(what.to_owned())?;
    if !expect.contains(&status) {
        bail!("{what}: HTTP {status}: {}", snippet(&body));
    }
    Ok(())
}

pub async fn run(
    server: &Server,
    tenant: &Tenant,
    wasm: &Path,
    guests: usize,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<SpinResult> {
    let bytes = std::fs::read(wasm).with_context(|| {
        format!(
            "reading {} (build the host once so its build script compiles the test guests, or pass --loop-wasm)",
            wasm.display()
        )
    })?;
    let addr = server.addr;
    admin(
        server,
        Template::new(Method::POST, addr, "/admin/plugins")?.raw_body(bytes, "application/wasm")?,
        &[StatusCode::CREATED, StatusCode::CONFLICT],
        "installing test-loop",
    )
    .await?;

    let route = format!("/gift-cards/{}/balance", tenant.gift_card);
    let read = |_| tenant.request(Method::GET, addr, &route, &tenant.terminal_key);
    eprintln!("[bench] plugin-spin: balance reads, no guest running…");
    let idle = load::run(server, connections, warmup, duration, read).await?;

    eprintln!("[bench] plugin-spin: balance reads with {guests} guests spinning…");
    let until = Instant::now() + warmup + duration;
    let mut spinners = Vec::with_capacity(guests);
    for i in 0..guests {
        let call = tenant
            .request(Method::POST, addr, "/pos/validate", &tenant.manager_key)?
            .json_body(&json!({"provider": "test-loop", "location_id": format!("spin-{i}")}))?;
        let rearm = Template::new(Method::POST, addr, "/admin/plugins/test-loop/activate")?
            .header(
                "authorization",
                &format!("Bearer {}", server.operator_token),
            )?
            .json_body(&json!({"version": "1.0.0"}))?;
        spinners.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            let (mut deadlines, mut other) = (0u64, 0u64);
            // Bounded by `until`: a call lasts at most the guest's 60 s wall limit.
            while Instant::now() < until {
                let (status, _) = conn.send(call.build()).await?;
                if status == StatusCode::GATEWAY_TIMEOUT {
                    deadlines += 1;
                } else {
                    other += 1;
                }
                let (status, body) = conn.send(rearm.build()).await?;
                if status != StatusCode::OK {
                    bail!("re-activating test-loop: HTTP {status}: {}", snippet(&body));
                }
            }
            Ok::<_, anyhow::Error>((deadlines, other))
        }));
    }
    let spinning = load::run(server, connections, warmup, duration, read).await;
    let (mut deadlines, mut other_answers) = (0, 0);
    for s in spinners {
        let (d, o) = s.await.context("spinner panicked")??;
        deadlines += d;
        other_answers += o;
    }
    Ok(SpinResult {
        idle,
        spinning: spinning?,
        deadlines,
        other_answers,
    })
}
