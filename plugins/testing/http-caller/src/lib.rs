//! `test-http`: declares `api.example.com`; `validate` sends `GET {base-url}/ping` (base-url
//! defaults to `https://api.example.com`) through the host and answers with the body as the
//! location name. A host refusal (`denied`) → `permission-denied(<host message>)`; any other
//! failure, or a non-2xx answer, → the SDK's mapping (`upstream`, …).

use posbridge_sdk::errors::{self, NotFound};
use posbridge_sdk::http::{join_url, HttpError, Request};
use posbridge_sdk::provider::*;

include!("../../common.rs");

const DEFAULT_BASE: &str = "https://api.example.com";

struct HttpCaller;

impl Guest for HttpCaller {
    fn info() -> PluginInfo {
        test_info("test-http", "1.0.0", &["api.example.com"])
    }

    fn validate(connection: Connection) -> Result<LocationInfo, ProviderError> {
        let base = connection.base_url(DEFAULT_BASE, DEFAULT_BASE);
        let response = match Request::get(join_url(&base, "/ping")).send() {
            Ok(response) => response,
            Err(HttpError::Denied(message)) => {
                return Err(ProviderError::PermissionDenied(message))
            }
            Err(other) => return Err(ProviderError::Upstream(format!("GET /ping: {other}"))),
        };
        let response = errors::check(response, NotFound::Upstream)?;
        Ok(LocationInfo::new(connection.location_id, response.text()))
    }

    unsupported_operations!();
}

posbridge_sdk::export_provider!(HttpCaller);
