//! `test-swap` version 1.0.0 (see `../swap-common/swap.rs`).

const VERSION: &str = "1.0.0";
const NAME: &str = "v1";

#[path = "../../swap-common/swap.rs"]
mod swap;

use swap::Swap;

posbridge_sdk::export_provider!(Swap);
