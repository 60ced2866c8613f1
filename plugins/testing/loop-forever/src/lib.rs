//! `test-loop`: `validate` spins forever, so the host's CPU deadline must kill it.

use posbridge_sdk::provider::*;

include!("../../common.rs");

struct LoopForever;

impl Guest for LoopForever {
    fn info() -> PluginInfo {
        test_info("test-loop", "1.0.0", &[])
    }

    fn validate(_connection: Connection) -> Result<LocationInfo, ProviderError> {
        let mut n: u64 = 0;
        loop {
            // black_box: the optimiser may not remove (or prove anything about) the loop.
            n = core::hint::black_box(n.wrapping_add(1));
        }
    }

    unsupported_operations!();
}

posbridge_sdk::export_provider!(LoopForever);
