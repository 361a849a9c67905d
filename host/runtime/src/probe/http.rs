//! HTTP probe: a request per check; healthy when the status is expected (any 2xx unless configured) and the body
//! matches the optional regex. Detail carries the status and, on a body mismatch, says so.

use std::path::PathBuf;

use regex::Regex;
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};

use super::plain::Answer;
use super::{Detail, error_chain};

/// Largest body read for the regex check; the rest is ignored.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct HttpProbe {
    /// Err: the service's TLS client could not be built; every check fails with this text.
    client: Result<reqwest::Client, String>,
    /// Parsed once here rather than by reqwest on every check (URL parsing and IDNA were ~6 % of a check's CPU).
    /// `Err`: the text did not parse; each check hands it to reqwest as before, to fail with reqwest's own error.
    url: Result<reqwest::Url, String>,
    /// Checks go through [`super::plain`]: an `http://` URL without credentials, the shared client, no proxy named in
    /// the environment.
    plain: bool,
    /// `None`: a plain `GET` that any 2xx passes, as most services configure it. Boxed otherwise: every service keeps
    /// its probe, and the parts take ~100 bytes inline.
    request: Option<Box<Request>>,
}

/// What a service's `http:` options ask beyond a plain `GET` that any 2xx passes.
#[derive(Debug, Clone)]
struct Request {
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Empty: any 2xx.
    expected_status: Vec<u16>,
    body: Option<Regex>,
}

/// The validated `http:` options of a service.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    pub method: Option<Method>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub expected_status: Vec<u16>,
    pub body: Option<Regex>,
    /// `None`: the shared client (system roots).
    pub tls: Option<Box<TlsOptions>>,
}

/// `http.tls`: a private CA for this service, or no verification at all.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Where `ca` came from, for messages and config comparison.
    pub ca_file: Option<PathBuf>,
    /// Trusted instead of the system roots when not empty.
    pub ca: Vec<reqwest::Certificate>,
    pub insecure_skip_verify: bool,
}

impl HttpOptions {
    /// Nothing beyond a plain `GET` that any 2xx passes, through the shared client.
    pub fn is_plain(&self) -> bool {
        self.tls.is_none() && Request::from(self).is_plain()
    }
}

impl Request {
    fn is_plain(&self) -> bool {
        self.method == Method::GET && self.headers.is_empty() && self.expected_status.is_empty() && self.body.is_none()
    }
}

impl From<&HttpOptions> for Request {
    fn from(o: &HttpOptions) -> Self {
        Request {
            method: o.method.clone().unwrap_or(Method::GET),
            headers: o.headers.clone(),
            expected_status: o.expected_status.clone(),
            body: o.body.clone(),
        }
    }
}

impl HttpProbe {
    /// `client` is the shared client; a service with `tls` options gets a client of its own (same user agent), since
    /// trust roots are per client. `options`: `None` for a plain `GET`.
    pub fn new(client: reqwest::Client, url: String, options: Option<&HttpOptions>) -> Self {
        let tls = options.and_then(|o| o.tls.as_deref());
        let client = match tls {
            None => Ok(client),
            Some(tls) => tls_client(tls),
        };
        let request = options.map(Request::from).filter(|r| !r.is_plain());
        let url = reqwest::Url::parse(&url).map_err(|_| url);
        // The shared client, and no credentials in the URL (reqwest's to send, as basic auth).
        let plain = tls.is_none()
            && url.as_ref().is_ok_and(|u| u.scheme() == "http" && u.username().is_empty() && u.password().is_none())
            && !super::plain::proxied_by_environment();
        HttpProbe { client, url, plain, request: request.map(Box::new) }
    }

    pub async fn check(&self) -> (bool, Detail) {
        let client = match &self.client {
            Ok(c) => c,
            Err(e) => return (false, e.clone().into()),
        };
        let (method, headers, expected_status, pattern) = match self.request.as_deref() {
            Some(r) => (r.method.clone(), &r.headers[..], &r.expected_status[..], r.body.as_ref()),
            None => (Method::GET, &[][..], &[][..], None),
        };
        if self.plain
            && let Ok(url) = &self.url
        {
            match super::plain::send(url, &method, headers, pattern.is_some(), MAX_BODY).await {
                Ok(Answer::Response { status, body }) => {
                    // Kept only when there is a pattern, which is all `verdict` reads it for.
                    let body = body.unwrap_or(Ok(Vec::new())).map(|b| String::from_utf8_lossy(&b).into_owned());
                    return verdict(status, expected_status, pattern, std::future::ready(body)).await;
                }
                // reqwest follows it.
                Ok(Answer::Redirect) => {}
                Err(e) => return (false, e.into()),
            }
        }
        let mut request = match &self.url {
            Ok(url) => client.request(method, url.clone()),
            Err(text) => client.request(method, text),
        };
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return (false, error_chain(&e.without_url()).into()),
        };
        let status = response.status().as_u16();
        verdict(status, expected_status, pattern, read_body(response)).await
    }
}

/// A response's verdict and detail: its status, then (with a pattern) its body, which `body` reads only when the
/// status passed.
async fn verdict(
    status: u16,
    expected_status: &[u16],
    pattern: Option<&Regex>,
    body: impl Future<Output = Result<String, String>>,
) -> (bool, Detail) {
    let status_ok =
        if expected_status.is_empty() { (200..300).contains(&status) } else { expected_status.contains(&status) };
    if !status_ok {
        return (false, format!("HTTP {status} (expected {})", expected(expected_status)).into());
    }
    let Some(pattern) = pattern else {
        return (true, status_detail(status));
    };
    match body.await {
        Ok(body) if pattern.is_match(&body) => (true, format!("HTTP {status}, body matches").into()),
        Ok(_) => (false, format!("HTTP {status}, body does not match /{}/", pattern.as_str()).into()),
        Err(e) => (false, format!("HTTP {status}, body unreadable: {e}").into()),
    }
}

/// `HTTP <status>`: static text for the statuses a health endpoint usually answers, formatted for the others.
fn status_detail(status: u16) -> Detail {
    Detail::Borrowed(match status {
        200 => "HTTP 200",
        201 => "HTTP 201",
        202 => "HTTP 202",
        204 => "HTTP 204",
        301 => "HTTP 301",
        302 => "HTTP 302",
        304 => "HTTP 304",
        _ => return format!("HTTP {status}").into(),
    })
}

/// The statuses a check accepts, for its detail.
fn expected(statuses: &[u16]) -> String {
    if statuses.is_empty() {
        "2xx".to_owned()
    } else {
        statuses.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ")
    }
}

fn tls_client(tls: &TlsOptions) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().user_agent(super::USER_AGENT);
    if !tls.ca.is_empty() {
        builder = builder.tls_certs_only(tls.ca.iter().cloned());
    }
    if tls.insecure_skip_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| format!("cannot build the TLS client: {}", error_chain(&e)))
}

async fn read_body(mut response: reqwest::Response) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e.without_url()))? {
        let room = MAX_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_BODY {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usual_statuses_need_no_allocation_and_others_read_the_same() {
        assert!(matches!(status_detail(200), Detail::Borrowed("HTTP 200")));
        assert!(matches!(status_detail(204), Detail::Borrowed("HTTP 204")));
        assert_eq!(status_detail(418), "HTTP 418");
    }
}
