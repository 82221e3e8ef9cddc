//! HTTP `Range` requests for streaming a friend's file (RFC 9110 §14): one byte range,
//! resolved against the file's size. More than one range, a malformed header or a range
//! that starts past the end is answered 416 with the size, so a player learns the length.

/// A single byte range as the client wrote it, before the size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=FIRST-`
    From(u64),
    /// `bytes=FIRST-LAST` (inclusive)
    FromTo(u64, u64),
    /// `bytes=-N`: the last N bytes
    Suffix(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error(
        "the Range header is not a single byte range (bytes=FIRST-LAST, bytes=FIRST- or bytes=-N)"
    )]
    Malformed,
    #[error("the range is outside the file ({size} bytes)")]
    Unsatisfiable { size: u64 },
}

/// Parses a `Range` header value. Only one range is served; several (overlapping or not)
/// are refused rather than answered with a multipart body.
pub fn parse_range(header: &str) -> Result<ByteRange, RangeError> {
    let spec = header
        .trim()
        .strip_prefix("bytes=")
        .ok_or(RangeError::Malformed)?
        .trim();
    if spec.contains(',') {
        return Err(RangeError::Malformed);
    }
    let (first, last) = spec.split_once('-').ok_or(RangeError::Malformed)?;
    let number = |text: &str| -> Result<u64, RangeError> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RangeError::Malformed);
        }
        text.parse().map_err(|_| RangeError::Malformed)
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => Ok(ByteRange::Suffix(number(suffix)?)),
        (first, "") => Ok(ByteRange::From(number(first)?)),
        (first, last) => {
            let (first, last) = (number(first)?, number(last)?);
            if last < first {
                return Err(RangeError::Malformed);
            }
            Ok(ByteRange::FromTo(first, last))
        }
    }
}

impl ByteRange {
    /// The range as `start..end` (end exclusive) within a file of `size` bytes; a last byte
    /// past the end is cut to the end, as RFC 9110 says.
    pub fn resolve(self, size: u64) -> Result<std::ops::Range<u64>, RangeError> {
        let unsatisfiable = RangeError::Unsatisfiable { size };
        let range = match self {
            ByteRange::From(first) => first..size,
            ByteRange::FromTo(first, last) => first..last.saturating_add(1).min(size),
            ByteRange::Suffix(0) => return Err(unsatisfiable),
            ByteRange::Suffix(n) => size.saturating_sub(n)..size,
        };
        if range.start >= size {
            return Err(unsatisfiable);
        }
        Ok(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges_parse_and_resolve_against_the_size() {
        assert_eq!(parse_range("bytes=0-99"), Ok(ByteRange::FromTo(0, 99)));
        assert_eq!(parse_range(" bytes=100- "), Ok(ByteRange::From(100)));
        assert_eq!(parse_range("bytes=-500"), Ok(ByteRange::Suffix(500)));
        assert_eq!(ByteRange::FromTo(0, 99).resolve(1000), Ok(0..100));
        assert_eq!(ByteRange::FromTo(900, 5000).resolve(1000), Ok(900..1000));
        assert_eq!(ByteRange::From(999).resolve(1000), Ok(999..1000));
        assert_eq!(ByteRange::Suffix(500).resolve(1000), Ok(500..1000));
        assert_eq!(ByteRange::Suffix(5000).resolve(1000), Ok(0..1000));
    }

    #[test]
    fn malformed_several_and_past_the_end_ranges_are_refused() {
        for bad in [
            "",
            "bytes=",
            "bytes=-",
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=0-1,5-9",
            "bytes=0-1, 1-2",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(parse_range(bad), Err(RangeError::Malformed), "{bad:?}");
        }
        let past = RangeError::Unsatisfiable { size: 1000 };
        assert_eq!(ByteRange::From(1000).resolve(1000), Err(past.clone()));
        assert_eq!(ByteRange::Suffix(0).resolve(1000), Err(past));
        assert_eq!(
            ByteRange::From(0).resolve(0),
            Err(RangeError::Unsatisfiable { size: 0 })
        );
    }
}
