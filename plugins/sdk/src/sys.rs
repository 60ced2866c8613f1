//! The host imports, or in-process fakes of them outside WebAssembly.

use crate::bindings::imports::http::{HttpError, Request, Response};
use crate::bindings::imports::log::Level;

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;
    use crate::bindings::imports as host;

    pub fn http_send(request: &Request) -> Result<Response, HttpError> {
        host::http::send(request)
    }

    pub fn log(level: Level, message: &str) {
        host::log::log(level, message)
    }

    pub fn now() -> i64 {
        host::clock::now()
    }

    pub fn state_get(key: &str) -> Option<Vec<u8>> {
        host::state::get(key)
    }

    pub fn state_set(key: &str, value: &[u8]) -> Result<(), String> {
        host::state::set(key, value)
    }

    pub fn state_delete(key: &str) {
        host::state::delete(key)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    type Handler = Box<dyn FnMut(&Request) -> Result<Response, HttpError>>;

    #[derive(Default)]
    pub(super) struct Fake {
        pub now: Option<i64>,
        pub state: BTreeMap<String, Vec<u8>>,
        pub logs: Vec<(Level, String)>,
        pub http: Option<Handler>,
        pub requests: Vec<Request>,
    }

    thread_local! {
        pub(super) static FAKE: RefCell<Fake> = RefCell::new(Fake::default());
    }

    pub fn http_send(request: &Request) -> Result<Response, HttpError> {
        // Take the handler out so it may itself use the other fakes.
        let handler = FAKE.with(|f| {
            let mut f = f.borrow_mut();
            f.requests.push(request.clone());
            f.http.take()
        });
        match handler {
            Some(mut handler) => {
                let answer = handler(request);
                FAKE.with(|f| {
                    let mut f = f.borrow_mut();
                    if f.http.is_none() {
                        f.http = Some(handler);
                    }
                });
                answer
            }
            None => Err(HttpError::Denied(format!(
                "no HTTP outside WebAssembly: install a handler with posbridge_sdk::testing::mock_http ({})",
                request.url
            ))),
        }
    }

    pub fn log(level: Level, message: &str) {
        FAKE.with(|f| f.borrow_mut().logs.push((level, message.to_owned())));
    }

    pub fn now() -> i64 {
        FAKE.with(|f| f.borrow().now).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0)
        })
    }

    pub fn state_get(key: &str) -> Option<Vec<u8>> {
        FAKE.with(|f| f.borrow().state.get(key).cloned())
    }

    pub fn state_set(key: &str, value: &[u8]) -> Result<(), String> {
        use crate::state::{MAX_KEYS, MAX_KEY_BYTES, MAX_VALUE_BYTES};
        if key.len() > MAX_KEY_BYTES {
            return Err(format!("state key longer than {MAX_KEY_BYTES} bytes"));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!("state value larger than {MAX_VALUE_BYTES} bytes"));
        }
        FAKE.with(|f| {
            let mut f = f.borrow_mut();
            if !f.state.contains_key(key) && f.state.len() >= MAX_KEYS {
                return Err(format!("more than {MAX_KEYS} state keys"));
            }
            f.state.insert(key.to_owned(), value.to_vec());
            Ok(())
        })
    }

    pub fn state_delete(key: &str) {
        FAKE.with(|f| {
            f.borrow_mut().state.remove(key);
        });
    }
}

pub(crate) use imp::{http_send, log, now, state_delete, state_get, state_set};

/// Fakes of the host imports for native unit tests (only outside WebAssembly).
///
/// Every test thread has its own fakes: the clock reads the system time unless
/// [`set_now`](testing::set_now) fixed it, state starts empty, logs are captured, and HTTP is
/// refused (`denied`) unless [`mock_http`](testing::mock_http) installed a handler.
#[cfg(not(target_arch = "wasm32"))]
pub mod testing {
    use super::imp::FAKE;
    use crate::bindings::imports::http::{HttpError, Request, Response};
    use crate::bindings::imports::log::Level;
    use std::collections::BTreeMap;

    /// Fixes the fake clock at `ms` (milliseconds since the Unix epoch).
    pub fn set_now(ms: i64) {
        FAKE.with(|f| f.borrow_mut().now = Some(ms));
    }

    /// Answers every HTTP request of this thread with `handler`.
    pub fn mock_http(handler: impl FnMut(&Request) -> Result<Response, HttpError> + 'static) {
        FAKE.with(|f| f.borrow_mut().http = Some(Box::new(handler)));
    }

    /// The requests sent so far on this thread (and forgets them).
    pub fn take_requests() -> Vec<Request> {
        FAKE.with(|f| std::mem::take(&mut f.borrow_mut().requests))
    }

    /// The log lines written so far on this thread (and forgets them).
    pub fn take_logs() -> Vec<(Level, String)> {
        FAKE.with(|f| std::mem::take(&mut f.borrow_mut().logs))
    }

    /// A copy of this thread's state store.
    pub fn state() -> BTreeMap<String, Vec<u8>> {
        FAKE.with(|f| f.borrow().state.clone())
    }

    /// Resets every fake of this thread.
    pub fn reset() {
        FAKE.with(|f| *f.borrow_mut() = Default::default());
    }

    /// A response with `status`, a JSON content type and `body`.
    pub fn json_response(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}
