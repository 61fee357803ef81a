//! Percent-encoding and base64, as every part of the service writes them:
//! the Lua SDK's `url_encode` and `base64_*`, the redaction of secrets in
//! those forms, HTTP Basic credentials, the pages' links. One place, so
//! that a secret redacted in its encoded form is encoded as it is sent.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use percent_encoding::{percent_decode, percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// RFC 3986's unreserved characters stay as they are; every other byte is
/// `%XX` (uppercase), as cURL's `curl_easy_escape` and Centreon's
/// `broker.url_encode` write it.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A path keeps its `/` too.
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

pub fn url_encode(bytes: &[u8]) -> String {
    percent_encode(bytes, UNRESERVED).to_string()
}

/// A path and query of this site, to carry in a query parameter
/// (`/login?next=…`) with its slashes readable.
pub fn url_encode_path(text: &str) -> String {
    percent_encode(text.as_bytes(), PATH).to_string()
}

/// `%XX` decoded; anything else, a `%` not followed by two hex digits
/// included, kept as it is.
pub fn url_decode(bytes: &[u8]) -> Vec<u8> {
    percent_decode(bytes).collect()
}

pub fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard base64 the way Centreon's scripts expect it to be
/// taken: whitespace and `=` anywhere are skipped, and a last lone
/// character (six bits, less than a byte) is dropped. `None` when a
/// character is outside the alphabet.
pub fn base64_decode_lenient(text: &[u8]) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let mut symbols: Vec<u8> = text
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    if symbols.len() % 4 == 1 {
        if !base64::alphabet::STANDARD
            .as_str()
            .as_bytes()
            .contains(&symbols[symbols.len() - 1])
        {
            return None;
        }
        symbols.pop();
    }
    LENIENT.decode(&symbols).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_unreserved_bytes_only() {
        assert_eq!(
            url_encode("a b&c/é~-_.".as_bytes()),
            "a%20b%26c%2F%C3%A9~-_."
        );
        assert_eq!(
            url_encode_path("/outputs/new?kind=lua&x"),
            "/outputs/new%3Fkind%3Dlua%26x"
        );
        assert_eq!(url_decode(b"%41%2fb%zz%4"), b"A/b%zz%4");
    }

    #[test]
    fn base64_is_the_standard_alphabet_and_its_decoding_lenient() {
        assert_eq!(base64_encode(b"centreon:s3cret"), "Y2VudHJlb246czNjcmV0");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        for text in ["YWI=", "YWI", "Y W\nI=", "YWI==", "Y=WI"] {
            assert_eq!(
                base64_decode_lenient(text.as_bytes()).as_deref(),
                Some(&b"ab"[..]),
                "{text}"
            );
        }
        // A last lone symbol is less than a byte.
        assert_eq!(
            base64_decode_lenient(b"YWJjZ").as_deref(),
            Some(&b"abc"[..])
        );
        assert_eq!(base64_decode_lenient(b"YW*I"), None);
        assert_eq!(base64_decode_lenient(b"YWJj*"), None);
        assert_eq!(base64_decode_lenient(b"").as_deref(), Some(&b""[..]));
    }
}
