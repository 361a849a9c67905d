//! TCP probe: a successful connect is healthy.

use super::{Detail, error_chain};

#[derive(Debug, Clone)]
pub struct TcpProbe {
    address: String,
}

impl TcpProbe {
    pub fn new(address: String) -> Self {
        TcpProbe { address }
    }

    pub async fn check(&self) -> (bool, Detail) {
        match tokio::net::TcpStream::connect(&self.address).await {
            Ok(_) => (true, Detail::Borrowed("connected")),
            Err(e) => (false, error_chain(&e).into()),
        }
    }
}
