//! `test-memory-hog`: `validate` allocates and touches 1 MiB blocks up to 1 GiB, so it hits the
//! host's memory cap (64 MiB by default) and traps.

use posbridge_sdk::provider::*;

include!("../../common.rs");

const BLOCK: usize = 1 << 20;
const BLOCKS: usize = 1024;

struct MemoryHog;

impl Guest for MemoryHog {
    fn info() -> PluginInfo {
        test_info("test-memory-hog", "1.0.0", &[])
    }

    fn validate(connection: Connection) -> Result<LocationInfo, ProviderError> {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        for i in 0..BLOCKS {
            let mut block = vec![0u8; BLOCK];
            for byte in block.iter_mut().step_by(4096) {
                *byte = (i as u8) | 1;
            }
            blocks.push(core::hint::black_box(block));
        }
        let touched: usize = blocks.iter().map(|b| usize::from(b[0])).sum();
        Ok(LocationInfo::new(
            connection.location_id,
            format!("allocated {} MiB ({touched})", blocks.len()),
        ))
    }

    unsupported_operations!();
}

posbridge_sdk::export_provider!(MemoryHog);
