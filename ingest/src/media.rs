//! `GET /media/{id}`: the published derivative, decrypted, for the website to embed. No key:
//! the id is unguessable. Served only while the asset is published and its consent still
//! allows publication, checked on every request; otherwise 404, the same as an unknown id.
//! ETag is the derivative's SHA-256; one byte range is honoured (`Range: bytes=…`).

use asepsis_common::envelope::BlobRole;
use asepsis_common::provenance::{AssetState, EventKind};
use asepsis_store::asset::AssetLog;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use time::OffsetDateTime;

use crate::AppState;
use crate::consents::parse_id;
use crate::error::ApiError;

/// A single byte range, resolved against the length.
fn byte_range(spec: &str, len: u64) -> Option<Result<std::ops::Range<u64>, ()>> {
    let spec = spec.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // several ranges: serve the whole body (allowed by RFC 9110)
    }
    let (start, end) = spec.split_once('-')?;
    let range = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            if n == 0 {
                return Some(Err(()));
            }
            len.saturating_sub(n)..len
        }
        (start, "") => start.parse().ok()?..len,
        (start, end) => {
            let (s, e): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
            if e < s {
                return None;
            }
            s..e.saturating_add(1).min(len)
        }
    };
    Some(if range.start < len && range.start < range.end {
        Ok(range)
    } else {
        Err(())
    })
}

/// The published derivative.
#[utoipa::path(get, path = "/media/{id}",
    params(("Range" = Option<String>, Header, description = "one byte range")),
    responses((status = 200, description = "the image"), (status = 206, description = "a byte range"),
        (status = 304), (status = 404, description = "unknown, not published, or no longer covered by its consent"), (status = 416)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let log = AssetLog::load(&state.storage, parse_id(&id)?).await?;
    let arrival = log.arrival().ok_or(ApiError::NotFound)?;
    if log.state() != Some(AssetState::Published) {
        return Err(ApiError::NotFound);
    }
    let consent = state
        .storage
        .consent(arrival.consent_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if consent
        .check_for_publication(OffsetDateTime::now_utc())
        .is_err()
    {
        return Err(ApiError::NotFound);
    }
    // The derivative is the redacted image when there is one (HEIF/AVIF redacted become
    // JPEG), else the stripped original.
    let derivative = log.events.iter().rev().find_map(|e| match &e.event.what {
        EventKind::Redacted { sha256, format, .. } => Some((sha256, *format)),
        EventKind::Stripped { sha256, .. } => Some((sha256, arrival.format)),
        _ => None,
    });
    let Some((sha256, format)) = derivative else {
        return Err(ApiError::internal("published asset without a derivative"));
    };
    let etag = format!("\"{sha256}\"");
    let content_type = format.content_type();
    let mut common = HeaderMap::new();
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
    common.insert(header::ETAG, value(&etag));
    common.insert(header::CONTENT_TYPE, value(content_type));
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Revalidate every time: a withdrawal must take effect at once.
    common.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    common.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if header_str(header::IF_NONE_MATCH).is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    let not_found = |e| match e {
        asepsis_store::StorageError::NotFound(_) | asepsis_store::StorageError::Erased(_) => {
            ApiError::NotFound
        }
        other => other.into(),
    };
    let blob = state
        .storage
        .open_blob(log.asset, BlobRole::Derivative)
        .await
        .map_err(not_found)?;
    let len = blob.plaintext_len();
    let if_range_ok = header_str(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let range = header_str(header::RANGE)
        .filter(|_| if_range_ok)
        .and_then(|spec| byte_range(spec, len));
    match range {
        None => {
            common.insert(header::CONTENT_LENGTH, value(&len.to_string()));
            crate::telemetry::served(len);
            let stream = blob.stream().await.map_err(not_found)?;
            let body = Body::from_stream(stream.map_err(std::io::Error::other));
            Ok((StatusCode::OK, common, body).into_response())
        }
        Some(Err(())) => {
            common.insert(header::CONTENT_RANGE, value(&format!("bytes */{len}")));
            Ok((StatusCode::RANGE_NOT_SATISFIABLE, common).into_response())
        }
        Some(Ok(range)) => {
            let bytes = blob.range(range.clone()).await.map_err(not_found)?;
            let content_range = format!("bytes {}-{}/{len}", range.start, range.end - 1);
            common.insert(header::CONTENT_RANGE, value(&content_range));
            common.insert(header::CONTENT_LENGTH, value(&bytes.len().to_string()));
            crate::telemetry::served(bytes.len() as u64);
            Ok((StatusCode::PARTIAL_CONTENT, common, bytes).into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn ranges_resolve_like_rfc_9110() {
        assert_eq!(byte_range("bytes=0-9", 100), Some(Ok(0..10)));
        assert_eq!(byte_range("bytes=90-", 100), Some(Ok(90..100)));
        assert_eq!(byte_range("bytes=-10", 100), Some(Ok(90..100)));
        assert_eq!(byte_range("bytes=-500", 100), Some(Ok(0..100)));
        assert_eq!(byte_range("bytes=95-200", 100), Some(Ok(95..100)));
        assert_eq!(byte_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(byte_range("bytes=-0", 100), Some(Err(())));
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
        assert_eq!(byte_range("bytes=9-1", 100), None);
    }
}
