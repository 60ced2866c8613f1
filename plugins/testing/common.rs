// Shared by the provider test guests (included with `include!`): the `info` and the
// operations they do not support.

fn test_info(id: &str, version: &str, allowed_hosts: &[&str]) -> PluginInfo {
    PluginInfo {
        id: id.into(),
        name: format!("{id} (test guest)"),
        version: version.into(),
        capabilities: vec![Capability::Validate],
        credential_fields: Vec::new(),
        allowed_hosts: allowed_hosts.iter().map(|h| h.to_string()).collect(),
    }
}

macro_rules! unsupported_operations {
    () => {
        fn fetch_transactions(
            _connection: Connection,
            _request: FetchRequest,
        ) -> Result<TransactionPage, ProviderError> {
            Err(ProviderError::unsupported("fetch-transactions"))
        }

        fn verify_webhook(_webhook: Webhook, _signature_key: String) -> bool {
            false
        }

        fn parse_webhook(_webhook: Webhook) -> Result<WebhookEvent, ProviderError> {
            Err(ProviderError::unsupported("webhooks"))
        }

        fn parse_push(_body: Vec<u8>) -> Result<Vec<Transaction>, ProviderError> {
            Err(ProviderError::unsupported("push"))
        }

        posbridge_sdk::unsupported_two_way!("this test guest");
    };
}
