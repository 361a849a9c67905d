//! gRPC health probe (`grpc.health.v1.Health/Check`), like `grpc_health_probe`: a fresh connection per check,
//! healthy only on `SERVING`. An empty service name asks about the server as a whole.

use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::{Detail, error_chain};

#[derive(Debug, Clone)]
pub struct GrpcProbe {
    uri: String,
    service: String,
}

impl GrpcProbe {
    /// `uri` is `http://host:port`.
    pub fn new(uri: String, service: String) -> Self {
        GrpcProbe { uri, service }
    }

    pub async fn check(&self) -> (bool, Detail) {
        let endpoint = match Endpoint::from_shared(self.uri.clone()) {
            Ok(e) => e,
            Err(e) => return (false, format!("invalid gRPC endpoint {}: {}", self.uri, error_chain(&e)).into()),
        };
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => return (false, error_chain(&e).into()),
        };
        let request = HealthCheckRequest { service: self.service.clone() };
        match HealthClient::new(channel).check(request).await {
            Ok(response) => {
                let status = response.into_inner().status();
                let detail = match status {
                    ServingStatus::Serving => Detail::Borrowed("gRPC SERVING"),
                    other => format!("gRPC {}", other.as_str_name()).into(),
                };
                (status == ServingStatus::Serving, detail)
            }
            Err(status) => (false, format!("gRPC error {:?}: {}", status.code(), status.message()).into()),
        }
    }
}
