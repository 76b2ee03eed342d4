//! # biopay-server-tools
//!
//! What drives a biopay server from the outside and must not be linked into
//! the service a bank deploys: a blocking HTTP client for the API
//! ([`client`]), the simulated phones of the demo vendor ([`demo`], the
//! software TEE of `biopay-tee-stub`) and the load generator ([`load`]). The
//! `biopay-server-tools` binary offers them as `demo-device` and `load`; the
//! server's tests use them as a dev-dependency.
//!
//! Tests, demos and benchmarks only: the demo vendor's PKI seed is public.
#![forbid(unsafe_code)]

pub mod client;
pub mod demo;
pub mod load;
