//! Who is calling: the API key in `Authorization: Bearer asp_…`, checked against its stored
//! record, gives a tenant and a role. Handlers say which roles may call them; a tenant sees
//! only its own records (others' answer 404, as if they did not exist). Never logs a key.

use asepsis_common::apikey::{self, Role};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::AppState;
use crate::error::ApiError;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    pub role: Role,
    pub key_id: String,
}

impl Caller {
    /// # Errors
    /// 403 naming the roles that may, when the caller's role is not among `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let name = |r: &Role| {
            serde_json::to_value(r)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
        };
        let wanted: Vec<String> = roles.iter().filter_map(name).collect();
        Err(ApiError::Forbidden(format!(
            "this API key's role ({}) may not do this; it needs: {}",
            name(&self.role).unwrap_or_default(),
            wanted.join(" or ")
        )))
    }

    /// The caller as the rights desk knows it: its key id, acting for its tenant.
    pub fn actor(&self) -> asepsis_rights::Actor {
        asepsis_rights::Actor {
            id: self.key_id.clone(),
            tenant: self.tenant.clone(),
        }
    }

    /// 404 unless the record belongs to the caller's tenant.
    ///
    /// # Errors
    /// [`ApiError::NotFound`].
    pub fn owns(&self, tenant: &str) -> Result<(), ApiError> {
        if self.tenant == tenant {
            Ok(())
        } else {
            Err(ApiError::NotFound)
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized(
                "missing API key: send Authorization: Bearer asp_…",
            ))?;
        authenticate(state, token).await
    }
}

/// The caller an API key (`asp_…`) names.
///
/// # Errors
/// 401 for a key that is not recognised or is disabled.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let bad = ApiError::Unauthorized("API key not recognised");
    let (id, secret) = apikey::parse(token.trim()).ok_or(bad)?;
    let record = state.storage.api_key(id).await?;
    match record {
        Some(record) if record.matches(secret) => match record.disabled {
            Some(disabled) => Err(ApiError::Disabled(format!(
                "this API key was disabled: {}",
                disabled.reason
            ))),
            None => Ok(Caller {
                tenant: record.tenant,
                role: record.role,
                key_id: record.id,
            }),
        },
        _ => Err(ApiError::Unauthorized("API key not recognised")),
    }
}
