//! The simulator's opaque page cursors (`after=` in its `next` links):
//! base64url of `v1|<page>|<last id>`, like Okta's own opaque values, so a
//! client that builds cursors itself instead of following links breaks in
//! tests.
//!
//! Invariant: `decode_cursor(encode_cursor(p, id)) == Some((p, id))`; any
//! other text decodes to `None`.

pub(crate) const BASE64URL: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// An opaque cursor: base64url of `v1|<page>|<last id>`.
pub(crate) fn encode_cursor(page: u32, last_id: &str) -> String {
    let plain = format!("v1|{page}|{last_id}");
    let mut out = String::with_capacity(plain.len() * 4 / 3 + 3);
    for chunk in plain.as_bytes().chunks(3) {
        let bytes = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(BASE64URL[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

pub(crate) fn decode_cursor(cursor: &str) -> Option<(u32, String)> {
    let values: Vec<u32> = cursor
        .bytes()
        .map(|c| BASE64URL.iter().position(|&b| b == c).map(|p| p as u32))
        .collect::<Option<_>>()?;
    let mut bytes = Vec::with_capacity(values.len() * 3 / 4);
    for chunk in values.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, v)| n | v << (18 - 6 * i));
        for i in 0..chunk.len() - 1 {
            bytes.push((n >> (16 - 8 * i)) as u8);
        }
    }
    let plain = String::from_utf8(bytes).ok()?;
    let mut parts = plain.splitn(3, '|');
    if parts.next()? != "v1" {
        return None;
    }
    let page = parts.next()?.parse().ok()?;
    let id = parts.next()?.to_owned();
    Some((page, id))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn cursors_are_opaque_and_round_trip() {
        let cursor = encode_cursor(3, "00uAbC123");
        assert!(!cursor.contains("00uAbC123"));
        assert_eq!(decode_cursor(&cursor), Some((3, "00uAbC123".to_owned())));
        assert_eq!(decode_cursor("not base64!"), None);
        assert_eq!(
            decode_cursor(&encode_cursor(1, "")),
            Some((1, String::new()))
        );
        assert_eq!(decode_cursor("QQ"), None, "valid base64, not a cursor");
    }

    proptest! {
        #[test]
        fn any_cursor_round_trips(page in 0u32..100_000, id in "[A-Za-z0-9|]{0,30}") {
            prop_assert_eq!(decode_cursor(&encode_cursor(page, &id)), Some((page, id)));
        }
    }
}
