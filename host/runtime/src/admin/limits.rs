//! Size limits on admin requests: headers over [`MAX_HEADER_BYTES`] are refused with 431, bodies over
//! [`MAX_BODY_BYTES`] with 413, before any handler (or its extractors) sees the request. Must not know the routes:
//! it applies to the whole router, fallback included.
//!
//! The API's bodies are a few dozen bytes (`{"state": "open"}`), so the limits sit far above real use and far below
//! what would let a client make the admin thread buffer much. Hyper itself refuses more than 100 headers and a head
//! over about 400 KiB (431 too); this layer brings the header limit down to what a browser or curl ever sends. A
//! declared `Content-Length` over the limit is refused without reading the body; a chunked body is read up to the
//! limit and refused as soon as it passes it.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Largest request body accepted.
pub(super) const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest total of header names and values (each line counted as `name: value\r\n`) accepted.
pub(super) const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The middleware: `axum::middleware::from_fn(limits::enforce)`.
pub(super) async fn enforce(request: Request, next: Next) -> Response {
    let header_bytes: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if header_bytes > MAX_HEADER_BYTES {
        return super::error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request headers total {header_bytes} bytes; at most {MAX_HEADER_BYTES} are accepted"),
        )
        .into_response();
    }
    let too_large = || {
        super::error(StatusCode::PAYLOAD_TOO_LARGE, format!("request body over {MAX_BODY_BYTES} bytes")).into_response()
    };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    // `to_bytes` fails on the first chunk past the limit, or on a connection that broke mid-body; either way the
    // request cannot be served, and an oversized body is the cause a client can act on.
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Err(_) => too_large(),
    }
}
