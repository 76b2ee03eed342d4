//! The HTTP/JSON API (axum). Binary fields are base64url without padding.
//! Every error is `{"error": {"code", "step", "reason"}}`: for a rejected
//! statement `code` is the verification step of docs/PROTOCOL.md §6 (e.g.
//! `"P12"`) and `step` its name (`"transaction-hash"`); other errors carry an
//! upper-case code (`BAD_REQUEST`, `UNAUTHORIZED`, `RATE_LIMITED`, `TIMEOUT`,
//! ...) and a null step.
//!
//! The payment endpoints (challenges and verification) also take
//! `application/cbor` bodies (`body`).
//!
//! Layout: `error` (the envelope), `auth` (API keys, middlewares), `body`
//! (the JSON or CBOR payment bodies), `dto`
//! (bodies), `limits` (rejection audit and lockout), `handlers/` (one file
//! per area), `openapi` (the document).

mod auth;
mod body;
mod dto;
mod error;
mod handlers;
mod limits;
mod openapi;

pub use auth::*;
pub use body::CBOR_MEDIA_TYPE;
use body::*;
pub use dto::*;
pub use error::*;
pub use handlers::*;
pub use openapi::*;
