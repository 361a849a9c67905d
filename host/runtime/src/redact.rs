//! Hiding secrets in what Aegis shows: logs, events, `check-config` and the admin API. Owns the rules for what is a
//! secret in a URL; must not decide where URLs are shown (callers pass them through here on the way out).
//!
//! A webhook URL may carry credentials (`https://user:pass@host/hook`): the URL is kept whole where it is used (the
//! request, the outbox), and shown with the password replaced by `***`. The user name stays, so an operator can still
//! tell which credential is configured. The text is rewritten as written, not re-serialised through a URL parser, so
//! everything else reads exactly as in the config.

use std::borrow::Cow;

/// What replaces a secret.
pub const MASK: &str = "***";

/// `url` with the password of its user info replaced by [`MASK`]; unchanged when it has none (or is no URL).
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return Cow::Borrowed(url);
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    // The user info ends at the last `@` of the authority; its password starts after its first `:`.
    let Some(at) = authority.rfind('@') else {
        return Cow::Borrowed(url);
    };
    let Some(colon) = authority[..at].find(':') else {
        return Cow::Borrowed(url);
    };
    let password_start = authority_start + colon + 1;
    let password_end = authority_start + at;
    Cow::Owned(format!("{}{MASK}{}", &url[..password_start], &url[password_end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked_and_the_rest_is_kept() {
        let cases = [
            ("https://user:pass@hooks.example/x?y=1", "https://user:***@hooks.example/x?y=1"),
            ("http://u:p%40ss@127.0.0.1:9/hook", "http://u:***@127.0.0.1:9/hook"),
            ("https://u:a:b@h", "https://u:***@h"),
            ("https://:secret@h/", "https://:***@h/"),
            ("https://user@h/path@x", "https://user@h/path@x"),
            ("https://h/p?u=a:b@c", "https://h/p?u=a:b@c"),
            ("http://127.0.0.1:9/hook", "http://127.0.0.1:9/hook"),
            ("not a url", "not a url"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
