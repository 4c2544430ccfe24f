//! Reading a whole HTTP body within a byte cap, for the three places that
//! need one (the prebind request, a CM's handshake answer, a browser's
//! request on the same-origin BOSH path): a `Content-Length` above the cap
//! is refused before anything is read; otherwise http-body-util's `Limited`
//! stops at the cap.

use bytes::Bytes;
use http::{HeaderMap, header};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::transport::BoxError;

/// Why a capped read stopped.
#[derive(Debug)]
pub(crate) enum CappedReadError {
    /// Declared or found to be over the cap.
    TooLarge,
    /// The body failed (a reset connection, a malformed chunk).
    Failed(BoxError),
}

/// Reads `body` whole, at most `limit` bytes.
pub(crate) async fn read_capped<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
) -> Result<Bytes, CappedReadError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(CappedReadError::TooLarge);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(CappedReadError::TooLarge),
        Err(error) => Err(CappedReadError::Failed(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn headers(length: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(length) = length {
            headers.insert(header::CONTENT_LENGTH, length.parse().unwrap());
        }
        headers
    }

    #[tokio::test]
    async fn reads_within_the_cap_and_refuses_above_it() {
        let body = || Full::new(Bytes::from_static(b"0123456789"));
        let read = read_capped(&headers(None), body(), 10).await.unwrap();
        assert_eq!(read, "0123456789");
        // Found over the cap while reading.
        assert!(matches!(
            read_capped(&headers(None), body(), 9).await,
            Err(CappedReadError::TooLarge)
        ));
        // Declared over the cap: refused before reading (the body is fine).
        assert!(matches!(
            read_capped(&headers(Some("11")), body(), 10).await,
            Err(CappedReadError::TooLarge)
        ));
        // A malformed declaration is left to `Limited`.
        let read = read_capped(&headers(Some("ten")), body(), 10)
            .await
            .unwrap();
        assert_eq!(read.len(), 10);
    }
}
