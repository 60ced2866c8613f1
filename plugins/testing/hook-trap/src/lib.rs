//! `test-hook-trap`: a hook on `new_order` for fault tests. `on-event` traps (panics) when the
//! event data contains `"trap":true`, spins forever when it contains `"spin":true`, and
//! otherwise emits `custom.seen` with `{"seq": <event seq>}`.

use posbridge_sdk::hook::{Action, Event, Guest, HookInfo};
use posbridge_sdk::serde_json::json;

struct HookTrap;

impl Guest for HookTrap {
    fn info() -> HookInfo {
        HookInfo {
            id: "test-hook-trap".into(),
            name: "test-hook-trap (test guest)".into(),
            version: "1.0.0".into(),
            events: vec!["new_order".into()],
            allowed_hosts: Vec::new(),
        }
    }

    fn on_event(event: Event, _config: String) -> Result<Vec<Action>, String> {
        if event.data.contains("\"trap\":true") {
            panic!("test-hook-trap: asked to trap (seq {})", event.seq);
        }
        if event.data.contains("\"spin\":true") {
            let mut n: u64 = 0;
            loop {
                n = core::hint::black_box(n.wrapping_add(1));
            }
        }
        Ok(vec![Action::emit("seen", &json!({ "seq": event.seq }))])
    }
}

posbridge_sdk::export_hook!(HookTrap);
