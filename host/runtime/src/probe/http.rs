//! HTTP probe: GET the endpoint; any 2xx is healthy.

use super::error_chain;

#[derive(Debug, Clone)]
pub struct HttpProbe {
    client: reqwest::Client,
    url: String,
}

impl HttpProbe {
    pub fn new(client: reqwest::Client, url: String) -> Self {
        HttpProbe { client, url }
    }

    pub async fn check(&self) -> (bool, String) {
        match self.client.get(&self.url).send().await {
            Ok(response) => {
                let status = response.status();
                (status.is_success(), format!("HTTP {}", status.as_u16()))
            }
            Err(e) => (false, error_chain(&e)),
        }
    }
}
