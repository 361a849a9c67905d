//! TCP probe: a successful connect is healthy.

use super::error_chain;

#[derive(Debug, Clone)]
pub struct TcpProbe {
    address: String,
}

impl TcpProbe {
    pub fn new(address: String) -> Self {
        TcpProbe { address }
    }

    pub async fn check(&self) -> (bool, String) {
        match tokio::net::TcpStream::connect(&self.address).await {
            Ok(_) => (true, "connected".to_owned()),
            Err(e) => (false, error_chain(&e)),
        }
    }
}
