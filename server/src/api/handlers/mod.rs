//! The route handlers, by area.

mod admin;
mod payments;
mod registration;

pub use admin::*;
pub use payments::*;
pub use registration::*;
