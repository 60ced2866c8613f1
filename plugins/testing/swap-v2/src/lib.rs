//! `test-swap` version 2.0.0 (see `../swap-common/swap.rs`).

const VERSION: &str = "2.0.0";
const NAME: &str = "v2";

#[path = "../../swap-common/swap.rs"]
mod swap;

use swap::Swap;

posbridge_sdk::export_provider!(Swap);
