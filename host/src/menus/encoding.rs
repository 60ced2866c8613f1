//! Content codings of a served menu: which one a request accepts (`Accept-Encoding`,
//! RFC 9110 §12.5.3) and the gzip copy the cache keeps beside the document.
//!
//! A 5,000-item menu is megabytes of JSON that gzips about 13 times smaller; sending the
//! compressed copy is what lets a full `GET` go faster than the socket copies bytes.

use std::io::Write;

use axum::http::{header, HeaderMap};
use flate2::write::GzEncoder;
use flate2::Compression;

/// A content coding the menu is served in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coding {
    /// The document as stored.
    Identity,
    /// The cached gzip copy.
    Gzip,
}

impl Coding {
    /// The `ETag` of the document in this coding, from the stored (strong) one.
    ///
    /// The gzip copy's is the weak form of the same tag. A strong tag promises the same
    /// bytes wherever it is sent, and gzip output is not the same across compression
    /// libraries, levels and versions (two hosts of a cluster, an upgrade), so it cannot
    /// carry the stored strong tag, and a strong tag of its own (`"…-gzip"`) would stop a
    /// client holding the identity tag from getting a 304 for a document it has. The weak
    /// tag says what is true, "the same document", and `If-None-Match` compares weakly
    /// (RFC 9110 §13.1.2), so either tag a client holds matches the current version in
    /// either coding, and a change of version changes both.
    pub(crate) fn etag(self, stored: &str) -> String {
        match self {
            Coding::Identity => stored.to_owned(),
            Coding::Gzip => format!("W/{stored}"),
        }
    }
}

/// The coding to answer `headers` with, or `None` when the request refuses both identity
/// and gzip (`identity;q=0, gzip;q=0`, `*;q=0`), which is a 406.
///
/// Without `Accept-Encoding` the answer is identity: RFC 9110 lets a server pick any coding
/// then, but a client that says nothing may not decode one. With it, gzip (or `x-gzip`, or
/// `*`) at a non-zero weight wins unless identity is named (or `*`) with a higher one;
/// identity is acceptable unless excluded by `identity;q=0` or by `*;q=0` without an
/// identity entry.
/// An entry whose weight is not a valid qvalue is ignored.
pub(crate) fn negotiate(headers: &HeaderMap) -> Option<Coding> {
    let mut values = headers.get_all(header::ACCEPT_ENCODING).iter().peekable();
    if values.peek().is_none() {
        return Some(Coding::Identity);
    }
    let (mut gzip, mut identity, mut any) = (None::<u16>, None::<u16>, None::<u16>);
    for value in values {
        // A value that is not visible ASCII cannot name a coding this server knows.
        let Ok(value) = value.to_str() else { continue };
        for entry in value.split(',') {
            let mut parts = entry.split(';');
            let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            if coding.is_empty() {
                continue;
            }
            let Some(q) = weight(parts) else { continue };
            let slot = match coding.as_str() {
                "gzip" | "x-gzip" => &mut gzip,
                "identity" => &mut identity,
                "*" => &mut any,
                _ => continue,
            };
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    let gzip = gzip.or(any).unwrap_or(0);
    // Identity left unnamed (and no `*`) is acceptable but ranks below any coding named.
    let identity = identity.or(any);
    if gzip > 0 && gzip >= identity.unwrap_or(0) {
        Some(Coding::Gzip)
    } else if identity.is_none_or(|q| q > 0) {
        Some(Coding::Identity)
    } else {
        None
    }
}

/// The `q` parameter among `params` in thousandths (1000 when absent), or `None` when it is
/// not a qvalue (`0`, `0.5`, `0.125`, `1`, `1.000`; RFC 9110 §12.4.2).
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let value = value.trim();
        let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
        if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let thousandths = fraction
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(3)
            .fold(0u16, |n, b| n * 10 + u16::from(b - b'0'));
        return match whole {
            "0" => Some(thousandths),
            "1" if thousandths == 0 => Some(1000),
            _ => None,
        };
    }
    Some(1000)
}

/// `document` gzipped at the default level (6). On the 2.8 MiB bench menu (flate2's
/// miniz_oxide) level 6 gives 209 KB in 60-95 ms, level 9 4% less in 2.4 times as long, and
/// level 1 a copy 60% larger: the copy is made once per version and sent on every `GET`.
pub(crate) fn gzip(document: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(document.len() / 8),
        Compression::default(),
    );
    encoder.write_all(document)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use axum::http::HeaderValue;

    use super::*;

    fn accepts(values: &[&'static str]) -> Option<Coding> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
        }
        negotiate(&headers)
    }

    #[test]
    fn accept_encoding_picks_gzip_only_where_the_client_allows_it() {
        use Coding::{Gzip, Identity};
        assert_eq!(accepts(&[]), Some(Identity), "no header");
        assert_eq!(accepts(&[""]), Some(Identity), "empty: no coding wanted");
        assert_eq!(accepts(&["gzip"]), Some(Gzip));
        assert_eq!(accepts(&["GZip;Q=0.5"]), Some(Gzip));
        assert_eq!(accepts(&["x-gzip"]), Some(Gzip));
        assert_eq!(accepts(&["br, gzip, deflate"]), Some(Gzip));
        assert_eq!(accepts(&["br", "gzip"]), Some(Gzip), "repeated header");
        assert_eq!(accepts(&["*"]), Some(Gzip));
        assert_eq!(accepts(&["br, deflate"]), Some(Identity));
        assert_eq!(accepts(&["gzip;q=0"]), Some(Identity));
        assert_eq!(accepts(&["gzip;q=0.000"]), Some(Identity));
        assert_eq!(
            accepts(&["*, gzip;q=0"]),
            Some(Identity),
            "explicit beats *"
        );
        assert_eq!(accepts(&["gzip;q=0.5, identity"]), Some(Identity));
        assert_eq!(accepts(&["gzip;q=0.5, identity;q=0.4"]), Some(Gzip));
        assert_eq!(accepts(&["identity;q=0, gzip"]), Some(Gzip));
        assert_eq!(accepts(&["*;q=0"]), None);
        assert_eq!(accepts(&["identity;q=0"]), None);
        assert_eq!(accepts(&["gzip;q=0, identity;q=0"]), None);
        assert_eq!(accepts(&["*;q=0, identity"]), Some(Identity));
        assert_eq!(accepts(&["*;q=0, gzip;q=0.1"]), Some(Gzip));
        // Weights that are not qvalues are ignored, not read as 1.
        assert_eq!(accepts(&["gzip;q=2"]), Some(Identity));
        assert_eq!(accepts(&["gzip;q=0.5x"]), Some(Identity));
        assert_eq!(accepts(&["gzip;q=0.1234"]), Some(Identity));
        assert_eq!(accepts(&["gzip;q=1.001"]), Some(Identity));
        assert_eq!(accepts(&["gzip;q=1.000"]), Some(Gzip));
        assert_eq!(accepts(&["gzip;level=1;q=0.2"]), Some(Gzip));
    }

    #[test]
    fn the_gzip_etag_is_the_weak_form_of_the_stored_one() {
        assert_eq!(Coding::Identity.etag("\"abc\""), "\"abc\"");
        assert_eq!(Coding::Gzip.etag("\"abc\""), "W/\"abc\"");
    }

    #[test]
    fn the_gzip_copy_decodes_to_the_document() {
        let document = br#"{"items":[{"id":"a"},{"id":"b"},{"id":"a"}]}"#.repeat(100);
        let packed = gzip(&document).expect("gzip");
        assert!(packed.len() < document.len() / 10, "{}", packed.len());
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut unpacked)
            .expect("gunzip");
        assert_eq!(unpacked, document);
    }
}
