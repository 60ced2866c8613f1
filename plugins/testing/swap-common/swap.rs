// The `test-swap` provider, shared by swap-v1 and swap-v2 (each sets `VERSION` and `NAME`).
// `validate` makes a few host calls (log, state get, clock) so a call is not instantaneous,
// and answers `name` = `business-name` = "v1"/"v2": a hot-swap test checks each call ran
// entirely on one version.

use posbridge_sdk::provider::*;

include!("../common.rs");

pub struct Swap;

impl Guest for Swap {
    fn info() -> PluginInfo {
        test_info("test-swap", super::VERSION, &[])
    }

    fn validate(connection: Connection) -> Result<LocationInfo, ProviderError> {
        let started = posbridge_sdk::clock::now();
        // At info, so the host's own log shows it too (the plugin-logs tests read both).
        posbridge_sdk::info!("{}: validate {}", super::NAME, connection.location_id);
        let _ = posbridge_sdk::state::get("swap");
        let finished = posbridge_sdk::clock::now();
        Ok(LocationInfo {
            business_name: Some(super::NAME.into()),
            status: Some(format!("{}ms", finished.saturating_sub(started))),
            ..LocationInfo::new(connection.location_id, super::NAME)
        })
    }

    unsupported_operations!();
}
