//! The plugins shipped inside the binary, built for wasm32-wasip2 by the build script and
//! installed on start (never displacing a version an operator chose).

include!(concat!(env!("OUT_DIR"), "/bundled_plugins.rs"));
