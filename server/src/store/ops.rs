//! The store's operations, written once for both SQL dialects: every
//! [`Store`] and [`ServerStore`] method of [`SqlStore`], against a
//! [`Backend`] (reads on its pool, writes in its group committer) and a
//! [`Db`] connection. Only SQL text differs per dialect ([`Sql::each`]), and
//! a dialect may fuse a payment's writes into fewer round trips
//! ([`Db::pay`]).
//!
//! Adding an operation: its logic here, its statements as [`Sql`] (one text
//! when both dialects read it alike).

use super::{
    accepted_record, app_attest_conflict, challenge_columns, challenge_entry, challenge_key,
    check_model,
    committer::Head,
    flag_record, i64_of, modalities_str, payment_conflict,
    sql::{Backend, Db, Paid, Param, Payment, Row, Sql},
    u64_of, with_app_attest, AppAttestRow, CredentialRow, PaymentRow, ServerStore,
};
use crate::audit::{AuditEntry, AuditRecord, Checkpoint};
use biopay_core::{
    store::{
        ChallengeEntry, ChallengeLimit, CommitError, CredentialRecord, CredentialStatus, Decision,
        Flag, IssuedChallenge, SpentChallenge, Store, StoreError,
    },
    Challenge, CredentialId,
};
use Param::{Blob, Int, Text};

/// A store on a SQL backend (SQLite or PostgreSQL).
pub struct SqlStore<B> {
    pub(crate) backend: B,
}

impl<B: Backend> SqlStore<B> {
    /// Group commit counters: (transactions, operations, batches re-run with
    /// savepoints after a failed operation) so far.
    pub fn commit_stats(&self) -> (u64, u64, u64) {
        self.backend.commit_stats()
    }

    fn app_attest(&self, id: &CredentialId) -> Result<Option<AppAttestRow>, StoreError> {
        self.backend
            .read(|c| c.query_opt(APP_ATTEST_SELECT, &[Blob(id.as_bytes())]))?
            .map(|r| app_attest_row(&r))
            .transpose()
    }

    /// An accepted payment's commit (`commit_payment`, or with `spend` its
    /// self-authenticating form `commit_payment_spending`): [`Db::pay`], then
    /// the App Attest counter, in one transaction.
    fn pay(
        &self,
        challenge: &Challenge,
        spend: Option<i64>,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        let new = i64_of(new_counter)?;
        let (challenge, id, audit) = (*challenge, id.clone(), accepted_record(decision));
        self.backend.write(true, move |c, head| {
            let payment = Payment {
                challenge: &challenge_key(&challenge),
                spend,
                id: id.as_bytes(),
                new,
                audit: &audit,
            };
            let paid = c.pay(head, &payment)?;
            if !paid.consumed {
                return Err(CommitError::ChallengeUsed);
            }
            if !paid.moved {
                return Err(payment_conflict(payment_row(c, &id)?));
            }
            // The App Attest counter of the assertion (J4), in the same
            // transaction (a failure rolls the operation back): only if the
            // stored one is still below it.
            if let Some(aa) = app_attest_counter {
                let moved = c.execute(
                    Sql::same(
                        "UPDATE app_attest_keys SET counter = ?1
                     WHERE credential_id = ?2 AND counter < ?1",
                    ),
                    &[Int(i64::from(aa)), Blob(id.as_bytes())],
                )?;
                if moved != 1 {
                    let stored = c
                        .query_opt(
                            Sql::same(
                                "SELECT counter FROM app_attest_keys WHERE credential_id = ?1",
                            ),
                            &[Blob(id.as_bytes())],
                        )?
                        .map(|r| r.int(0))
                        .transpose()?;
                    return Err(app_attest_conflict(stored));
                }
            }
            Ok(())
        })
    }

    /// A write that cannot fail a conditional check: only backend errors.
    fn write_plain<T: Send + 'static>(
        &self,
        appends: bool,
        f: impl FnMut(&mut B::Writer, &mut Head) -> Result<T, CommitError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.backend.write(appends, f).map_err(store_error)
    }
}

/// A write that cannot fail a conditional check reports only backend errors.
fn store_error(e: CommitError) -> StoreError {
    match e {
        CommitError::Backend(e) => e,
        other => StoreError(other.to_string()),
    }
}

fn count(n: u64) -> Result<usize, StoreError> {
    usize::try_from(n).map_err(|_| StoreError(format!("row count {n} too large")))
}

macro_rules! credential_columns {
    () => {
        "credential_id, rp_id, account_handle, public_key, modalities, enrollment_epoch,
         security_level, kind, device_model, counter, status, registered_at"
    };
}

const APP_ATTEST_SELECT: Sql = Sql::same(
    "SELECT key_id, public_key, app_id, environment, counter, receipt
     FROM app_attest_keys WHERE credential_id = ?1",
);

/// Inserts a self-authenticating challenge's spent entry (docs/PROTOCOL.md
/// §7.1 rule 5): one row if it was not spent, none if it was.
const SPEND: Sql = Sql::same(
    "INSERT INTO spent_challenges (challenge, expires_at) VALUES (?1, ?2)
     ON CONFLICT (challenge) DO NOTHING",
);

const LAST_CHECKPOINT: Sql = Sql::same(
    "SELECT version, seq, hash, at, prev_hash, public_key, signature
     FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
);

fn app_attest_row(r: &Row) -> Result<AppAttestRow, StoreError> {
    Ok((
        r.blob(0)?,
        r.blob(1)?,
        r.text(2)?,
        r.text(3)?,
        r.int(4)?,
        r.blob(5)?,
    ))
}

fn credential_row(r: &Row) -> Result<CredentialRow, StoreError> {
    Ok(CredentialRow {
        credential_id: r.blob(0)?,
        rp_id: r.text(1)?,
        account_handle: r.blob(2)?,
        public_key: r.blob(3)?,
        modalities: r.text(4)?,
        enrollment_epoch: r.blob(5)?,
        security_level: r.int(6)?,
        kind: r.text(7)?,
        device_model: r.text(8)?,
        counter: r.int(9)?,
        status: r.text(10)?,
        registered_at: r.int(11)?,
    })
}

/// A checkpoint row (`version, seq, hash, at, prev_hash, public_key, signature`).
fn checkpoint_row(r: &Row) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        version: u64_of(r.int(0)?)?,
        seq: u64_of(r.int(1)?)?,
        entry_hash: r.text(2)?,
        at: u64_of(r.int(3)?)?,
        prev_checkpoint_hash: r.text(4)?,
        public_key: r.text(5)?,
        signature: r.text(6)?,
    })
}

/// Appends `record` to the chain inside the batch (which holds the audit
/// head: SQLite's write lock, PostgreSQL's head row lock).
pub(crate) fn append<D: Db + ?Sized>(
    c: &mut D,
    head: &mut Head,
    record: &AuditRecord,
) -> Result<(), StoreError> {
    let e = head.next(record)?;
    c.execute(
        Sql::same(
            "INSERT INTO audit_log (seq, at, kind, outcome, step, credential, statement_hash, reason,
            prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        ),
        &[
            Int(e.seq),
            Int(i64_of(record.at)?),
            Text(&record.kind),
            Text(&record.outcome),
            Text(&record.step),
            Text(&record.credential),
            Text(&record.statement_hash),
            Text(&record.reason),
            Text(&e.prev_hash),
            Text(&e.hash),
        ],
    )?;
    Ok(())
}

/// The writes of an accepted payment as separate statements (see [`Db::pay`]).
pub(crate) fn pay_in_steps<D: Db + ?Sized>(
    c: &mut D,
    head: &mut Head,
    p: &Payment<'_>,
) -> Result<Paid, CommitError> {
    let Payment {
        challenge,
        spend,
        id,
        new,
        audit,
    } = *p;
    let consumed = match spend {
        None => c.execute(
            Sql::same(
                "UPDATE challenges SET consumed = TRUE WHERE challenge = ?1 AND NOT consumed",
            ),
            &[Blob(challenge)],
        )?,
        Some(expires_at) => c.execute(SPEND, &[Blob(challenge), Int(expires_at)])?,
    } == 1;
    if !consumed {
        return Ok(Paid {
            consumed,
            moved: false,
        });
    }
    // The credential still active, its device model not revoked (as
    // persisted by any process) and the counter still below the new one,
    // all inside the write transaction.
    let moved = c.execute(
        Sql::same(
            "UPDATE credentials SET counter = ?1
             WHERE credential_id = ?2 AND counter < ?1 AND status = 'active'
               AND NOT EXISTS (SELECT 1 FROM model_status m
                               WHERE m.model = credentials.device_model
                                 AND m.status <> 'active')",
        ),
        &[Int(new), Blob(id)],
    )? == 1;
    if moved {
        // A success clears the failure counts of the credential and of its
        // account (rate limiting, PROTOCOL.md §9.2).
        c.execute(
            Sql::same(
                "DELETE FROM failures
                 WHERE (kind = 'credential' AND subject = ?1)
                    OR (kind = 'account' AND subject =
                        (SELECT account_handle FROM credentials WHERE credential_id = ?1))",
            ),
            &[Blob(id)],
        )?;
        append(c, head, audit)?;
    }
    Ok(Paid { consumed, moved })
}

fn consume(c: &mut impl Db, challenge: &Challenge) -> Result<(), CommitError> {
    let n = c.execute(
        Sql::same("UPDATE challenges SET consumed = TRUE WHERE challenge = ?1 AND NOT consumed"),
        &[Blob(&challenge_key(challenge))],
    )?;
    if n == 1 {
        Ok(())
    } else {
        Err(CommitError::ChallengeUsed)
    }
}

/// Whether the credential exists.
fn exists(c: &mut impl Db, id: &CredentialId) -> Result<bool, CommitError> {
    Ok(c.query_opt(
        Sql::same("SELECT counter, status FROM credentials WHERE credential_id = ?1"),
        &[Blob(id.as_bytes())],
    )?
    .is_some())
}

/// The persisted status of a device model (`None`: never set by an operator).
fn model_status(c: &mut impl Db, model: &str) -> Result<Option<String>, CommitError> {
    let row = c.query_opt(
        Sql::same("SELECT status FROM model_status WHERE model = ?1"),
        &[Text(model)],
    )?;
    Ok(row.map(|r| r.text(0)).transpose()?)
}

/// What `commit_payment` needs to say why its conditional update touched no row.
fn payment_row(c: &mut impl Db, id: &CredentialId) -> Result<Option<PaymentRow>, CommitError> {
    let row = c.query_opt(
        Sql::same(
            "SELECT c.counter, c.status, m.status FROM credentials c
         LEFT JOIN model_status m ON m.model = c.device_model WHERE c.credential_id = ?1",
        ),
        &[Blob(id.as_bytes())],
    )?;
    Ok(row
        .map(|r| Ok::<_, StoreError>((r.int(0)?, r.text(1)?, r.opt_text(2)?)))
        .transpose()?)
}

/// An operator's status change; deregistration is final.
fn set_status(
    c: &mut impl Db,
    id: &CredentialId,
    status: CredentialStatus,
) -> Result<(), CommitError> {
    let n = c.execute(
        Sql::same(
            "UPDATE credentials SET status = ?1
         WHERE credential_id = ?2 AND status <> 'deregistered'",
        ),
        &[Text(status.as_str()), Blob(id.as_bytes())],
    )?;
    if n == 0 {
        return Err(if exists(c, id)? {
            CommitError::CredentialNotActive(CredentialStatus::Deregistered)
        } else {
            CommitError::UnknownCredential
        });
    }
    Ok(())
}

impl<B: Backend> Store for SqlStore<B> {
    fn insert_challenge(
        &self,
        issued: IssuedChallenge,
        limit: Option<ChallengeLimit>,
    ) -> Result<bool, StoreError> {
        let (kind, body, counter_at_issue, expires_at) = challenge_columns(&issued)?;
        let key = challenge_key(issued.challenge());
        let account = issued.account_handle().to_vec();
        let limit = limit.map(|l| Ok::<_, StoreError>((i64::from(l.max), i64_of(l.now)?)));
        let limit = limit.transpose()?;
        self.write_plain(false, move |c, _| {
            let columns = [
                Blob(&key),
                Text(kind),
                Blob(&body),
                Int(counter_at_issue),
                Int(expires_at),
                Blob(&account),
            ];
            let n = match limit {
                None => c.execute(
                    Sql::same(
                        "INSERT INTO challenges
                        (challenge, kind, body, counter_at_issue, expires_at, consumed, account)
                     VALUES (?1, ?2, ?3, ?4, ?5, FALSE, ?6)",
                    ),
                    &columns,
                )?,
                // One statement: the count and the insert. SQLite's single
                // writer: no two inserts can both see room. PostgreSQL under
                // READ COMMITTED: concurrent issuers in several processes can
                // each see room, so the limit may be exceeded by the number
                // of racing processes; it bounds abuse, it is not a quota.
                Some((max, now)) => {
                    let [a, b, c2, d, e, f] = columns;
                    c.execute(
                        Sql::same(
                            "INSERT INTO challenges
                        (challenge, kind, body, counter_at_issue, expires_at, consumed, account)
                     SELECT ?1, ?2, ?3, ?4, ?5, FALSE, ?6
                     WHERE (SELECT COUNT(*) FROM challenges
                            WHERE account = ?6 AND NOT consumed AND expires_at > ?8) < ?7",
                        ),
                        &[a, b, c2, d, e, f, Int(max), Int(now)],
                    )?
                }
            };
            Ok(n == 1)
        })
    }

    fn challenge(&self, challenge: &Challenge) -> Result<Option<ChallengeEntry>, StoreError> {
        let row = self.backend.read(|c| {
            c.query_opt(
                Sql::same(
                    "SELECT kind, body, counter_at_issue, consumed FROM challenges WHERE challenge = ?1",
                ),
                &[Blob(&challenge_key(challenge))],
            )
        })?;
        row.map(|r| challenge_entry(&r.text(0)?, &r.blob(1)?, r.int(2)?, r.bool(3)?))
            .transpose()
    }

    fn credential(&self, id: &CredentialId) -> Result<Option<CredentialRecord>, StoreError> {
        let row = self.backend.read(|c| {
            c.query_opt(
                Sql::same(concat!(
                    "SELECT ",
                    credential_columns!(),
                    " FROM credentials WHERE credential_id = ?1"
                )),
                &[Blob(id.as_bytes())],
            )
        })?;
        row.map(|r| with_app_attest(credential_row(&r)?.into_record()?, |id| self.app_attest(id)))
            .transpose()
    }

    fn credentials_for_account(
        &self,
        rp_id: &str,
        account_handle: &[u8],
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        self.backend
            .read(|c| {
                c.query(
                    Sql::same(concat!(
                        "SELECT ",
                        credential_columns!(),
                        " FROM credentials WHERE rp_id = ?1 AND account_handle = ?2
                     ORDER BY registered_at, credential_id"
                    )),
                    &[Text(rp_id), Blob(account_handle)],
                )
            })?
            .iter()
            .map(|r| with_app_attest(credential_row(r)?.into_record()?, |id| self.app_attest(id)))
            .collect()
    }

    fn commit_registration(
        &self,
        challenge: &Challenge,
        record: &CredentialRecord,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        let (challenge, record, audit) = (*challenge, record.clone(), accepted_record(decision));
        self.backend.write(true, move |c, head| {
            consume(c, &challenge)?;
            // Read inside the commit transaction, after any status change
            // that returned before this statement began (docs/PROTOCOL.md
            // §6.1.1): no process can change it before this commit ends.
            check_model(model_status(c, &record.device_model)?.as_deref())?;
            let n = c.execute(
                Sql::same(concat!(
                    "INSERT INTO credentials (",
                    credential_columns!(),
                    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT (credential_id) DO NOTHING"
                )),
                &[
                    Blob(record.credential_id.as_bytes()),
                    Text(&record.rp_id),
                    Blob(&record.account_handle),
                    Blob(&record.public_key),
                    Text(&modalities_str(&record.modalities)),
                    Blob(record.enrollment_epoch.as_slice()),
                    Int(i64_of(record.security_level.to_u64())?),
                    Text(record.kind.as_str()),
                    Text(&record.device_model),
                    Int(i64_of(record.counter)?),
                    Text(record.status.as_str()),
                    Int(i64_of(record.registered_at)?),
                ],
            )?;
            if n != 1 {
                return Err(CommitError::CredentialExists);
            }
            if let Some(k) = &record.app_attest {
                c.execute(
                    Sql::same(
                        "INSERT INTO app_attest_keys
                        (credential_id, key_id, public_key, app_id, environment, counter, receipt)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    ),
                    &[
                        Blob(record.credential_id.as_bytes()),
                        Blob(k.key_id.as_slice()),
                        Blob(&k.public_key),
                        Text(&k.app_id),
                        Text(k.environment.as_str()),
                        Int(i64::from(k.counter)),
                        Blob(&k.receipt),
                    ],
                )?;
            }
            append(c, head, &audit)?;
            Ok(())
        })
    }

    fn commit_payment(
        &self,
        challenge: &Challenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        self.pay(
            challenge,
            None,
            id,
            new_counter,
            app_attest_counter,
            decision,
        )
    }

    fn commit_payment_spending(
        &self,
        spent: &SpentChallenge,
        id: &CredentialId,
        new_counter: u64,
        app_attest_counter: Option<u32>,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        let expires_at = i64_of(spent.expires_at)?;
        self.pay(
            &spent.challenge,
            Some(expires_at),
            id,
            new_counter,
            app_attest_counter,
            decision,
        )
    }

    fn challenge_spent(&self, challenge: &Challenge) -> Result<bool, StoreError> {
        let row = self.backend.read(|c| {
            c.query_opt(
                Sql::same("SELECT 1 FROM spent_challenges WHERE challenge = ?1"),
                &[Blob(&challenge_key(challenge))],
            )
        })?;
        Ok(row.is_some())
    }

    fn purge_spent_challenges(&self, before: u64) -> Result<usize, StoreError> {
        let before = i64_of(before)?;
        let n = self.write_plain(false, move |c, _| {
            Ok(c.execute(
                Sql::same("DELETE FROM spent_challenges WHERE expires_at < ?1"),
                &[Int(before)],
            )?)
        })?;
        count(n)
    }

    fn commit_status(
        &self,
        id: &CredentialId,
        expected_counter: u64,
        new_counter: u64,
        expected_status: CredentialStatus,
        status: CredentialStatus,
        decision: &Decision,
    ) -> Result<(), CommitError> {
        let (expected, new) = (i64_of(expected_counter)?, i64_of(new_counter)?);
        let (id, audit) = (id.clone(), accepted_record(decision));
        self.backend.write(true, move |c, head| {
            let n = c.execute(
                Sql::same(
                    "UPDATE credentials SET counter = ?1, status = ?2
                 WHERE credential_id = ?3 AND counter = ?4 AND status = ?5",
                ),
                &[
                    Int(new),
                    Text(status.as_str()),
                    Blob(id.as_bytes()),
                    Int(expected),
                    Text(expected_status.as_str()),
                ],
            )?;
            if n != 1 {
                return Err(if exists(c, &id)? {
                    CommitError::CounterConflict
                } else {
                    CommitError::UnknownCredential
                });
            }
            append(c, head, &audit)?;
            Ok(())
        })
    }

    fn flag_credential(&self, flag: &Flag) -> Result<(), CommitError> {
        let (id, status, audit) = (flag.credential_id.clone(), flag.status, flag_record(flag));
        self.backend.write(true, move |c, head| {
            let n = c.execute(
                Sql::same(
                    "UPDATE credentials SET status = ?1 WHERE credential_id = ?2 AND status = 'active'",
                ),
                &[Text(status.as_str()), Blob(id.as_bytes())],
            )?;
            if n == 0 && !exists(c, &id)? {
                return Err(CommitError::UnknownCredential);
            }
            append(c, head, &audit)?;
            Ok(())
        })
    }

    fn set_credential_status(
        &self,
        id: &CredentialId,
        status: CredentialStatus,
    ) -> Result<(), CommitError> {
        let id = id.clone();
        self.backend
            .write(false, move |c, _| set_status(c, &id, status))
    }

    fn purge_expired_challenges(&self, now: u64) -> Result<usize, StoreError> {
        let now = i64_of(now)?;
        let n = self.write_plain(false, move |c, _| {
            Ok(c.execute(
                Sql::same("DELETE FROM challenges WHERE expires_at < ?1"),
                &[Int(now)],
            )?)
        })?;
        count(n)
    }
}

impl<B: Backend> ServerStore for SqlStore<B> {
    fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.write_plain(true, move |c, head| Ok(append(c, head, &record)?))
    }

    fn append_rejection(
        &self,
        record: Option<&AuditRecord>,
        counted: Option<&CredentialId>,
        at: u64,
    ) -> Result<(), StoreError> {
        let (record, counted) = (record.cloned(), counted.cloned());
        let at = i64_of(at)?;
        self.write_plain(record.is_some(), move |c, head| {
            if let Some(id) = &counted {
                c.execute(
                    Sql::same(
                        "INSERT INTO failures (kind, subject, at) VALUES ('credential', ?1, ?2)",
                    ),
                    &[Blob(id.as_bytes()), Int(at)],
                )?;
                c.execute(
                    Sql::same(
                        "INSERT INTO failures (kind, subject, at)
                     SELECT 'account', account_handle, ?2 FROM credentials WHERE credential_id = ?1",
                    ),
                    &[Blob(id.as_bytes()), Int(at)],
                )?;
            }
            if let Some(record) = &record {
                append(c, head, record)?;
            }
            Ok(())
        })
    }

    fn recent_failures(&self, id: &CredentialId, since: u64) -> Result<u64, StoreError> {
        let since = i64_of(since)?;
        let row = self.backend.read(|c| {
            c.query_opt(
                Sql::each(
                    "SELECT MAX(
                (SELECT COUNT(*) FROM failures
                 WHERE kind = 'credential' AND subject = ?1 AND at >= ?2),
                (SELECT COUNT(*) FROM failures
                 WHERE kind = 'account' AND at >= ?2 AND subject =
                    (SELECT account_handle FROM credentials WHERE credential_id = ?1)))",
                    "SELECT GREATEST(
                    (SELECT COUNT(*) FROM failures
                     WHERE kind = 'credential' AND subject = ?1 AND at >= ?2),
                    (SELECT COUNT(*) FROM failures
                     WHERE kind = 'account' AND at >= ?2 AND subject =
                        (SELECT account_handle FROM credentials WHERE credential_id = ?1)))",
                ),
                &[Blob(id.as_bytes()), Int(since)],
            )
        })?;
        let n = row.map(|r| r.opt_int(0)).transpose()?.flatten();
        u64_of(n.unwrap_or(0))
    }

    fn failures_and_credential(
        &self,
        id: &CredentialId,
        since: u64,
    ) -> Result<(u64, Option<CredentialRecord>), StoreError> {
        // recent_failures' count and credential()'s row in one query (an
        // unknown credential has no row, and no account count).
        let row = self.backend.read(|c| {
            c.query_opt(
                Sql::each(
                    concat!(
                        "SELECT ",
                        credential_columns!(),
                        ", MAX(
                        (SELECT COUNT(*) FROM failures
                         WHERE kind = 'credential' AND subject = ?1 AND at >= ?2),
                        (SELECT COUNT(*) FROM failures
                         WHERE kind = 'account' AND at >= ?2 AND subject = account_handle))
                     FROM credentials WHERE credential_id = ?1"
                    ),
                    concat!(
                        "SELECT ",
                        credential_columns!(),
                        ", GREATEST(
                        (SELECT COUNT(*) FROM failures
                         WHERE kind = 'credential' AND subject = ?1 AND at >= ?2),
                        (SELECT COUNT(*) FROM failures
                         WHERE kind = 'account' AND at >= ?2
                           AND subject = credentials.account_handle))
                     FROM credentials WHERE credential_id = ?1"
                    ),
                ),
                &[Blob(id.as_bytes()), Int(i64_of(since)?)],
            )
        })?;
        match row {
            None => Ok((self.recent_failures(id, since)?, None)),
            Some(r) => Ok((
                u64_of(r.int(12)?)?,
                Some(with_app_attest(credential_row(&r)?.into_record()?, |id| {
                    self.app_attest(id)
                })?),
            )),
        }
    }

    fn purge_failures(&self, before: u64) -> Result<usize, StoreError> {
        let before = i64_of(before)?;
        let n = self.write_plain(false, move |c, _| {
            Ok(c.execute(
                Sql::same("DELETE FROM failures WHERE at < ?1"),
                &[Int(before)],
            )?)
        })?;
        count(n)
    }

    fn audit_entries(&self, after: u64, limit: u64) -> Result<Vec<AuditEntry>, StoreError> {
        let (after, limit) = (i64_of(after)?, i64_of(limit)?);
        self.backend
            .read(|c| {
                c.query(
                    Sql::same(
                        "SELECT seq, at, kind, outcome, step, credential, statement_hash, reason,
                        prev_hash, hash FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                    ),
                    &[Int(after), Int(limit)],
                )
            })?
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    seq: u64_of(r.int(0)?)?,
                    record: AuditRecord {
                        at: u64_of(r.int(1)?)?,
                        kind: r.text(2)?,
                        outcome: r.text(3)?,
                        step: r.text(4)?,
                        credential: r.text(5)?,
                        statement_hash: r.text(6)?,
                        reason: r.text(7)?,
                    },
                    prev_hash: r.text(8)?,
                    hash: r.text(9)?,
                })
            })
            .collect()
    }

    fn audit_head(&self) -> Result<(u64, String), StoreError> {
        let r = self
            .backend
            .read(|c| {
                c.query_opt(
                    Sql::same("SELECT seq, hash FROM audit_head WHERE id = 1"),
                    &[],
                )
            })?
            .ok_or_else(|| StoreError("no audit head".into()))?;
        Ok((u64_of(r.int(0)?)?, r.text(1)?))
    }

    fn checkpoints(&self, after: u64, limit: u64) -> Result<Vec<Checkpoint>, StoreError> {
        let (after, limit) = (i64_of(after)?, i64_of(limit)?);
        self.backend
            .read(|c| {
                c.query(
                    Sql::same(
                        "SELECT version, seq, hash, at, prev_hash, public_key, signature
                 FROM audit_checkpoints WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                    ),
                    &[Int(after), Int(limit)],
                )
            })?
            .iter()
            .map(checkpoint_row)
            .collect()
    }

    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.backend
            .read(|c| c.query_opt(LAST_CHECKPOINT, &[]))?
            .as_ref()
            .map(checkpoint_row)
            .transpose()
    }

    fn insert_checkpoint(&self, c: &Checkpoint) -> Result<bool, StoreError> {
        let cp = c.clone();
        let (version, seq, at) = (i64_of(cp.version)?, i64_of(cp.seq)?, i64_of(cp.at)?);
        self.write_plain(false, move |c, _| {
            // Inside the write transaction (SQLite's write lock, PostgreSQL's
            // audit head row lock taken by every batch): no other process's
            // checkpoint can land between this check and the insert.
            let last = c
                .query_opt(LAST_CHECKPOINT, &[])?
                .as_ref()
                .map(checkpoint_row)
                .transpose()?;
            if !super::checkpoint_follows(&cp, last.as_ref()) {
                return Ok(false);
            }
            let n = c.execute(
                Sql::same(
                    "INSERT INTO audit_checkpoints
                    (seq, hash, at, public_key, signature, version, prev_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                ),
                &[
                    Int(seq),
                    Text(&cp.entry_hash),
                    Int(at),
                    Text(&cp.public_key),
                    Text(&cp.signature),
                    Int(version),
                    Text(&cp.prev_checkpoint_hash),
                ],
            )?;
            Ok(n == 1)
        })
    }

    fn set_model_status(
        &self,
        model: &str,
        status: &str,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let (model, status, audit) = (model.to_owned(), status.to_owned(), audit.clone());
        self.write_plain(true, move |c, head| {
            c.execute(
                Sql::same(
                    "INSERT INTO model_status (model, status) VALUES (?1, ?2)
                 ON CONFLICT (model) DO UPDATE SET status = excluded.status",
                ),
                &[Text(&model), Text(&status)],
            )?;
            append(c, head, &audit)?;
            Ok(())
        })
    }

    fn set_credential_status_audited(
        &self,
        id: &CredentialId,
        status: CredentialStatus,
        audit: &AuditRecord,
    ) -> Result<(), CommitError> {
        let (id, audit) = (id.clone(), audit.clone());
        self.backend.write(true, move |c, head| {
            set_status(c, &id, status)?;
            append(c, head, &audit)?;
            Ok(())
        })
    }

    fn model_statuses(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.backend
            .read(|c| {
                c.query(
                    Sql::same("SELECT model, status FROM model_status ORDER BY model"),
                    &[],
                )
            })?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
    }
}
