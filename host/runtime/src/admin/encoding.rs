//! Content coding of the large admin answers: `/metrics` and `/api/v1/services` are sent gzip-compressed when the
//! client's `Accept-Encoding` allows it (Prometheus asks for gzip on every scrape). At 10 000 services the metrics text
//! is ~5 MB and compresses about tenfold; compression runs once per cached rendering (see [`super::cache`]), not per
//! request.

use std::io::Write;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::http::header::ACCEPT_ENCODING;

/// How an answer is coded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
}

impl Coding {
    /// What the request's `Accept-Encoding` allows, gzip preferred (RFC 9110 §12.5.3): `gzip` (or `x-gzip`) with a
    /// non-zero weight, or `*` with a non-zero weight when gzip is not named. Anything unreadable means identity.
    pub fn negotiate(headers: &HeaderMap) -> Coding {
        let mut gzip = None;
        let mut any = None;
        for value in headers.get_all(ACCEPT_ENCODING) {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or_default().trim();
                let weight = parts
                    .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                    gzip = Some(weight > 0.0);
                } else if coding == "*" {
                    any = Some(weight > 0.0);
                }
            }
        }
        if gzip.or(any).unwrap_or(false) { Coding::Gzip } else { Coding::Identity }
    }

    /// The `Content-Encoding` value, none for identity.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some("gzip"),
        }
    }
}

/// `body` gzip-compressed at the fastest level: the scrape's text is repetitive, level 1 already gets most of the
/// size off at a fraction of the time of the default level.
pub fn gzip(body: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 8), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(body);
    Bytes::from(encoder.finish().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use axum::http::HeaderValue;

    use super::*;

    fn coding(accept: &[&str]) -> Coding {
        let mut headers = HeaderMap::new();
        for a in accept {
            headers.append(ACCEPT_ENCODING, HeaderValue::from_str(a).expect("header"));
        }
        Coding::negotiate(&headers)
    }

    #[test]
    fn gzip_is_chosen_only_when_the_client_accepts_it() {
        assert_eq!(coding(&[]), Coding::Identity);
        // What Prometheus sends.
        assert_eq!(coding(&["gzip"]), Coding::Gzip);
        assert_eq!(coding(&["deflate, GZIP;q=0.5"]), Coding::Gzip);
        assert_eq!(coding(&["br", "x-gzip"]), Coding::Gzip);
        assert_eq!(coding(&["gzip;q=0"]), Coding::Identity);
        assert_eq!(coding(&["gzip; q=0.0, identity"]), Coding::Identity);
        assert_eq!(coding(&["*"]), Coding::Gzip);
        assert_eq!(coding(&["*;q=0"]), Coding::Identity);
        assert_eq!(coding(&["*, gzip;q=0"]), Coding::Identity, "gzip named with weight 0 beats *");
        assert_eq!(coding(&["br, deflate"]), Coding::Identity);
        assert_eq!(coding(&["identity"]), Coding::Identity);
    }

    #[test]
    fn gzip_round_trips() {
        let text = "aegis_health_checks_total{service=\"a\",result=\"success\"} 1\n".repeat(1000);
        let packed = gzip(text.as_bytes());
        assert!(packed.len() * 10 < text.len(), "{} of {}", packed.len(), text.len());
        let mut back = String::new();
        flate2::read::GzDecoder::new(&packed[..]).read_to_string(&mut back).expect("gunzip");
        assert_eq!(back, text);
    }
}
