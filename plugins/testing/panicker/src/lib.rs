//! `test-panic`: `validate` panics (a trap) when the location id is "panic", and answers
//! normally otherwise, so a test sees one call fail and the next one work.

use posbridge_sdk::provider::*;

include!("../../common.rs");

struct Panicker;

impl Guest for Panicker {
    fn info() -> PluginInfo {
        test_info("test-panic", "1.0.0", &[])
    }

    fn validate(connection: Connection) -> Result<LocationInfo, ProviderError> {
        if connection.location_id == "panic" {
            panic!("test-panic: asked to panic");
        }
        Ok(LocationInfo::new(connection.location_id, "ok"))
    }

    unsupported_operations!();
}

posbridge_sdk::export_provider!(Panicker);
