//! `GET /.well-known/openid-configuration` and `GET /.well-known/jwks.json`: the issuer's
//! documents, without auth (STS and anyone verifying a token read them). 404 with a JSON
//! error when no issuer is configured or it has no key.

use std::time::SystemTime;

use hyper::{Response, StatusCode};

use super::AppState;
use super::response::{ApiError, Body, json};
use crate::oidc;

fn issuer(state: &AppState) -> Result<std::sync::Arc<crate::oidc::Issuer>, ApiError> {
    state.live.current().broker.issuer().map(|cell| cell.current()).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_issuer",
            "this daemon has no OIDC issuer: configure [oidc] (and a key, `autoheal oidc keygen`)",
        )
    })
}

pub fn discovery(state: &AppState) -> Result<Response<Body>, ApiError> {
    Ok(json(StatusCode::OK, &oidc::discovery(&*issuer(state)?)))
}

pub fn jwks(state: &AppState) -> Result<Response<Body>, ApiError> {
    Ok(json(
        StatusCode::OK,
        &oidc::jwks(&*issuer(state)?, SystemTime::now()),
    ))
}
