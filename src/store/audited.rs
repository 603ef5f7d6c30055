//! The audit log in the store (`audit`): with auditing on, every append writes its
//! record in its own transaction (`path::append`), and the records of every shard and
//! of the key store can be read back and verified chain by chain.

use super::path::sqlx_rows::SqlxCols;
use super::path::{AuditPlan, Head, OnShard};
use super::{Shard, ShardConn, Store, StoreError, decode::Columns};
use crate::audit::{ChainScope, Draft, Record, Tamper, action, verify};
use crate::domain::{DelayEvent, FlightId, SubjectId};
use futures_util::future::try_join_all;
use std::collections::BTreeMap;

/// Who made a change and in answer to what, for its audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub request_id: String,
    /// The role the change needed (`reporter`), or `anonymous` with auth off.
    pub role: String,
}

impl Change {
    /// A change made outside any request (a test, the load generator's direct store).
    pub fn unattributed() -> Self {
        Self { request_id: "-".into(), role: "anonymous".into() }
    }
}

/// The store's audit settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Auditing {
    pub scope: ChainScope,
    pub key: [u8; 32],
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditReport {
    pub chains: usize,
    pub records: usize,
    /// The first tampering found, chains taken in name order.
    pub tampering: Option<Tamper>,
}

/// Microseconds since the Unix epoch: an audit record's time.
pub use crate::machine::unix_micros as now_micros;

impl Store {
    /// Audits every append from now on, in chains of `scope`. Needs the sealer (the
    /// actor is sealed, and the MAC key is one of its keys); set once.
    pub async fn audit_with(&self, scope: ChainScope) -> Result<(), StoreError> {
        let sealer = self.sealer.get().ok_or_else(|| {
            StoreError::Config("the audit log seals its actors: it needs the key-encryption keys (--kek-file)".into())
        })?;
        let key = sealer.audit_key().await?;
        let _ = self.audit.set(Auditing { scope, key });
        Ok(())
    }

    pub fn audit_scope(&self) -> Option<ChainScope> {
        self.audit.get().map(|a| a.scope)
    }

    /// The append's audit record, when auditing is on: the actor sealed, the rest in
    /// clear (versions are filled in inside the transaction).
    pub(crate) async fn audit_plan(
        &self,
        shard: &Shard,
        id: FlightId,
        event: &DelayEvent,
        change: &Change,
        // The global chain's head, when the caller holds its lock.
        global_head: Option<(i64, String)>,
    ) -> Result<Option<AuditPlan>, StoreError> {
        let Some(auditing) = self.audit.get() else { return Ok(None) };
        let draft = self.draft(change, event.reported_by.as_ref(), action::REPORT, format!("flight/{id}")).await?;
        let (chain, head) = match auditing.scope {
            ChainScope::Flight => (format!("flight-{id}"), Head::InTx { lock: false }),
            ChainScope::Shard => (format!("shard-{}", shard.index), Head::InTx { lock: true }),
            ChainScope::Global => (GLOBAL_CHAIN.to_owned(), Head::Known(global_head)),
        };
        Ok(Some(AuditPlan { chain, head, draft, key: auditing.key }))
    }

    /// With a global chain: its lock, held by the caller until its append commits,
    /// with the chain's head read from the shards the first time.
    pub(crate) async fn global_chain(
        &self,
    ) -> Result<Option<tokio::sync::MutexGuard<'_, Option<Option<(i64, String)>>>>, StoreError> {
        if self.audit.get().is_none_or(|a| a.scope != ChainScope::Global) {
            return Ok(None);
        }
        let mut head = self.global_head.lock().await;
        if head.is_none() {
            let heads = try_join_all(self.shards.iter().map(global_head_on)).await?;
            *head = Some(heads.into_iter().flatten().max_by_key(|(seq, _)| *seq));
        }
        Ok(Some(head))
    }

    /// The audit record of `action` on `target` by `actor` (sealed) in answer to
    /// `change`. Auditing needs the sealer (`audit_with`), so it is there.
    async fn draft(
        &self,
        change: &Change,
        actor: Option<&SubjectId>,
        action: &str,
        target: String,
    ) -> Result<Draft, StoreError> {
        let actor = match self.sealer.get() {
            Some(sealer) => sealer.seal_actor(actor, &change.request_id, action).await?,
            None => (None, None),
        };
        Ok(Draft::new(&change.request_id, &change.role, action, target, actor))
    }

    /// The audit record of a change to the key store (an erasure, a rotation: the key
    /// store fills in the target) by `actor`, when auditing is on.
    pub async fn key_change_draft(
        &self,
        change: &Change,
        actor: Option<&SubjectId>,
        action: &str,
    ) -> Result<Option<Draft>, StoreError> {
        if self.audit.get().is_none() {
            return Ok(None);
        }
        Ok(Some(self.draft(change, actor, action, String::new()).await?))
    }

    /// Every audit record from `since` (microseconds) on, from every shard and the
    /// key store, each chain in order.
    pub async fn audit_records(&self, since: i64) -> Result<Vec<Record>, StoreError> {
        let per_shard = try_join_all(self.shards.iter().map(|shard| audit_records_on(shard, since))).await?;
        let mut records: Vec<Record> = per_shard.into_iter().flatten().collect();
        if let Some(sealer) = self.sealer.get() {
            records.extend(sealer.audit_records(since).await?);
        }
        Ok(records)
    }

    /// Verifies every chain; stops at the first tampering.
    pub async fn verify_audit(&self) -> Result<AuditReport, StoreError> {
        let sealer = self.sealer.get().ok_or_else(|| {
            StoreError::Config(
                "verifying the audit log needs its key: give the key-encryption keys (--kek-file)".into(),
            )
        })?;
        let key = sealer.audit_key().await?;
        let mut chains: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        for record in self.audit_records(i64::MIN).await? {
            chains.entry(record.chain.clone()).or_default().push(record);
        }
        // A global chain's records come from every shard: put them in chain order.
        chains.values_mut().for_each(|records| records.sort_by_key(|r| r.seq));
        let mut report = AuditReport { chains: chains.len(), records: 0, tampering: None };
        for records in chains.values() {
            match verify(records, &key) {
                Ok(n) => report.records += n,
                Err(tamper) => {
                    report.tampering = Some(tamper);
                    break;
                }
            }
        }
        Ok(report)
    }
}

/// The chain of `ChainScope::Global`, whose records are spread over the shards.
const GLOBAL_CHAIN: &str = "global";

async fn global_head_on(shard: &Shard) -> Result<Option<(i64, String)>, StoreError> {
    with_pool!(shard, |pool| {
        let row = sqlx::query(super::sql::AUDIT_HEAD).bind(GLOBAL_CHAIN).fetch_optional(pool).await.on(shard)?;
        row.map(|r| {
            let c = SqlxCols::new(&r, shard.index);
            Ok((c.int(0)?, c.text(1)?.to_owned()))
        })
        .transpose()
    })
}

async fn audit_records_on(shard: &Shard, since: i64) -> Result<Vec<Record>, StoreError> {
    with_pool!(shard, |pool| {
        let rows = sqlx::query(super::sql::AUDIT_RECORDS).bind(since).fetch_all(pool).await.on(shard)?;
        rows.iter().map(|r| record(&SqlxCols::new(r, shard.index))).collect()
    })
}

fn record(c: &impl Columns) -> Result<Record, StoreError> {
    Ok(Record {
        chain: c.text(0)?.to_owned(),
        seq: c.int(1)?,
        draft: Draft {
            at: c.int(2)?,
            request_id: c.text(3)?.to_owned(),
            actor: c.opt_text(4)?.map(str::to_owned),
            actor_key: c.opt_text(5)?.map(str::to_owned),
            role: c.text(6)?.to_owned(),
            action: c.text(7)?.to_owned(),
            target: c.text(8)?.to_owned(),
            before_version: c.opt_int(9)?,
            after_version: c.opt_int(10)?,
        },
        prev_hash: c.text(11)?.to_owned(),
        hash: c.text(12)?.to_owned(),
    })
}
