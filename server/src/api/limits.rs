//! Decisions: the audit record and failure count of a rejection
//! (`record_rejection`) and the lockout check (`check_limits`). The
//! credential they name is the one core read from the statement
//! (`Verifier::open_payment`, `RegistrationOutcome::credential_id`): the
//! server parses no statement itself.

use super::*;
use crate::{audit::AuditRecord, shards::ShardVerifier, store::ServerStore, AppState};
use axum::http::StatusCode;
use biopay_core::{crypto, CredentialId, Rejection};

impl AppState {
    /// Audits a rejection on `shard` (unless the store already did, P15/P19) and, when
    /// core says it counts toward lockout ([`Rejection::counts_toward_lockout`]:
    /// it needed the credential key and a live challenge, PROTOCOL.md §9.2),
    /// counts a failure against `credential` and its account: one store
    /// transaction for both.
    pub(crate) fn record_rejection(
        &self,
        shard: &ShardVerifier,
        kind: &str,
        credential: Option<&CredentialId>,
        statement: &[u8],
        r: &Rejection,
    ) {
        self.metrics.decision(kind, "rejected", r.step.code());
        let record = AuditRecord {
            at: crate::now(),
            kind: kind.to_owned(),
            outcome: "rejected".to_owned(),
            step: r.step.code().to_owned(),
            credential: credential.map(CredentialId::to_hex).unwrap_or_default(),
            statement_hash: hex::encode(crypto::sha256(statement)),
            reason: r.reason.to_string(),
        };
        let counted =
            credential.filter(|_| self.lock_after_failures > 0 && r.counts_toward_lockout());
        let audit = (!r.recorded_by_flag()).then_some(&record);
        if audit.is_some() || counted.is_some() {
            if let Err(e) = shard.store().append_rejection(audit, counted, record.at) {
                tracing::error!(error = %e, "recording a rejection failed");
            }
        }
        tracing::info!(
            kind,
            step = r.step.code(),
            credential = record.credential,
            reason = record.reason,
            "rejected"
        );
    }

    /// Refuses statements for a locked credential or account: one that had
    /// `lock_after_failures` counted failures within the window, in any
    /// process on the credential's shard (429 `RATE_LIMITED`). Fails closed
    /// when the store cannot tell. When limits are on, the credential record
    /// is read in the same query as the counts and returned for `P4`, so the
    /// accepted payment path reads once.
    pub(crate) fn check_limits(
        &self,
        shard: &ShardVerifier,
        id: &CredentialId,
    ) -> Result<Option<biopay_core::CredentialRecord>, ApiError> {
        if self.lock_after_failures == 0 {
            return Ok(None);
        }
        let since = crate::now().saturating_sub(self.failure_window_secs);
        let (failures, record) = shard
            .store()
            .failures_and_credential(id, since)
            .map_err(|e| ApiError::unavailable(format!("rate limit state: {e}")))?;
        self.refuse_if_limited(failures)?;
        Ok(record)
    }

    /// 429 `RATE_LIMITED` when `failures` reached the limit.
    fn refuse_if_limited(&self, failures: u64) -> Result<(), ApiError> {
        if failures >= u64::from(self.lock_after_failures) {
            self.metrics.decision("any", "refused", "RATE_LIMITED");
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "too many failed verifications for this credential or account; try later",
            ));
        }
        Ok(())
    }
}
