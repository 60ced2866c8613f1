//! `test-http`: declares `api.example.com`; `validate` sends `GET {base-url}/ping` (base-url
//! defaults to `https://api.example.com`) through the host and answers with the body as the
//! location name. If the connection has a credential named `url`, the GET goes to that URL
//! instead (so a test can make the guest try a host that is not approved, past the host's own
//! base-url check). A host refusal (`denied`) → `permission-denied(<host message>)`; any other
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
        let (url, target) = match connection.credential("url") {
            Some(url) => (url.to_owned(), url.to_owned()),
            None => (
                join_url(&connection.base_url(DEFAULT_BASE, DEFAULT_BASE), "/ping"),
                "/ping".to_owned(),
            ),
        };
        let response = match Request::get(url.as_str()).send() {
            Ok(response) => response,
            Err(HttpError::Denied(message)) => {
                return Err(ProviderError::PermissionDenied(message))
            }
            Err(other) => return Err(ProviderError::Upstream(format!("GET {target}: {other}"))),
        };
        let response = errors::check(response, NotFound::Upstream)?;
        Ok(LocationInfo::new(connection.location_id, response.text()))
    }

    unsupported_operations!();
}

posbridge_sdk::export_provider!(HttpCaller);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use posbridge_sdk::testing;

    fn connection(credentials: &[(&str, &str)], base_url: Option<&str>) -> Connection {
        Connection {
            credentials: credentials
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            location_id: "L1".into(),
            environment: Environment::Production,
            base_url: base_url.map(str::to_owned),
        }
    }

    #[test]
    fn gets_base_url_ping_or_the_url_credential() {
        testing::reset();
        testing::mock_http(|req| Ok(testing::json_response(200, &req.url)));
        let name = |c| HttpCaller::validate(c).map(|l| l.name);
        assert_eq!(
            name(connection(&[], None)),
            Ok("https://api.example.com/ping".into())
        );
        assert_eq!(
            name(connection(&[], Some("http://127.0.0.1:8081/"))),
            Ok("http://127.0.0.1:8081/ping".into())
        );
        assert_eq!(
            name(connection(
                &[("url", "https://not-approved.example/x?y=1")],
                Some("http://127.0.0.1:8081")
            )),
            Ok("https://not-approved.example/x?y=1".into())
        );
        testing::mock_http(|_| Err(HttpError::Denied("not-approved.example".into())));
        assert_eq!(
            HttpCaller::validate(connection(
                &[("url", "https://not-approved.example/")],
                None
            )),
            Err(ProviderError::PermissionDenied(
                "not-approved.example".into()
            ))
        );
        testing::mock_http(|_| Err(HttpError::Timeout));
        assert!(matches!(
            HttpCaller::validate(connection(&[], None)),
            Err(ProviderError::Upstream(m)) if m.starts_with("GET /ping: ")
        ));
    }
}
