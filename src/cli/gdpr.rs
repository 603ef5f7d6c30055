//! Field encryption's flags (`--kek-file`, `--key-store`) and the data subject
//! commands: `gdpr erase` and `gdpr export` against a stopped server's dataset. A
//! running server holds the key store's lock and refuses them; erase and export
//! through its admin API instead (`DELETE /admin/subjects/{sub}`, `GET …/export`).

use super::{DatasetArgs, Refused};
use crate::audit::ChainScope;
use crate::domain::SubjectId;
use crate::failure::Failure;
use crate::seal::kek::{KEK_ENV, KekSource};
use crate::seal::{DEFAULT_KEY_STORE, Sealer};
use crate::store::{Change, Store};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the key-encryption keys and the wrapped data keys are.
#[derive(Debug, Clone, Args)]
pub struct SealArgs {
    /// Seal the reason and reporter of every delay report under per-subject data
    /// keys wrapped by the key-encryption keys in FILE (`flightbench keys kek-new`
    /// makes it). Or put the file's text in FLIGHTBENCH_KEK. Without either, events
    /// are stored in clear.
    #[arg(long, value_name = "FILE", env = "FLIGHTBENCH_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
    /// The key store (wrapped data keys): keep it, like the KEK file, apart from the
    /// shards' backups [default: <dataset dir>/data-keys.sqlite].
    #[arg(long, value_name = "FILE", env = "FLIGHTBENCH_KEY_STORE")]
    pub key_store: Option<PathBuf>,
    /// With sealing on, every change is also written to the tamper-evident audit log,
    /// in chains of this scope (per flight: no extra lock; per shard: every write on a
    /// shard takes the chain's head in turn).
    #[arg(long, value_parser = super::choice::<ChainScope>(), default_value_t = ChainScope::Flight)]
    pub audit_chain: ChainScope,
    /// Seal, but keep no audit log.
    #[arg(long)]
    pub no_audit: bool,
}

impl SealArgs {
    fn source(&self) -> Option<KekSource> {
        match (&self.kek_file, std::env::var(KEK_ENV)) {
            (Some(file), _) => Some(KekSource::File(file.clone())),
            (None, Ok(text)) => Some(KekSource::Env(text)),
            (None, Err(_)) => None,
        }
    }

    pub fn key_store_in(&self, dataset_dir: &Path) -> PathBuf {
        self.key_store.clone().unwrap_or_else(|| dataset_dir.join(DEFAULT_KEY_STORE))
    }

    /// The sealer, when a KEK is given; it takes the key store's lock.
    pub fn sealer(&self, dataset_dir: &Path) -> anyhow::Result<Option<Arc<Sealer>>> {
        let Some(source) = self.source() else { return Ok(None) };
        Ok(Some(Arc::new(Sealer::load(source, &self.key_store_in(dataset_dir))?)))
    }

    /// The sealer, which this command cannot do without.
    pub fn required(&self, dataset_dir: &Path, command: &str) -> anyhow::Result<Arc<Sealer>> {
        self.sealer(dataset_dir)?.ok_or_else(|| {
            Refused {
                failure: Failure::Usage,
                message: format!("{command} needs the key-encryption keys: --kek-file or {KEK_ENV}"),
            }
            .into()
        })
    }
}

#[derive(Debug, Args)]
pub struct GdprArgs {
    #[command(subcommand)]
    pub command: GdprCommand,
}

/// The dataset and its keys, for each data subject and audit command.
#[derive(Debug, Args)]
pub struct OnDataset {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    #[command(flatten)]
    pub seal: SealArgs,
}

#[derive(Debug, Subcommand)]
pub enum GdprCommand {
    /// Destroy a subject's data key: their reasons and identity become unreadable in
    /// every copy of the shards; the events still count.
    Erase {
        /// The subject id (`sub` of their tokens).
        subject: String,
        #[command(flatten)]
        on: OnDataset,
    },
    /// Print everything held about a subject, opened, as JSON.
    Export {
        subject: String,
        #[command(flatten)]
        on: OnDataset,
    },
}

pub async fn run(args: GdprArgs) -> anyhow::Result<()> {
    let subject_of =
        |text: &str| SubjectId::parse(text).map_err(|e| Refused { failure: Failure::Usage, message: e.to_string() });
    match &args.command {
        GdprCommand::Erase { subject, on } => {
            let args = on;
            let subject = subject_of(subject)?;
            let sealer = args.seal.required(&args.dataset.dir, "gdpr erase")?;
            let store = Store::open(&args.dataset.dir, &args.dataset.store_config()).await?;
            store.seal_with(sealer);
            if !args.seal.no_audit {
                store.audit_with(args.seal.audit_chain).await?;
            }
            let erasure = store.erase_subject(&subject, &operator(), None).await?;
            let in_clear = erasure.still_in_clear;
            match &erasure.key_id {
                Some(key) => println!("erased data key {key}: every event sealed under it now reads as erased"),
                None => {
                    println!("{} has no data key (never reported with sealing on, or erased before)", subject.as_str())
                }
            }
            if in_clear > 0 {
                println!(
                    "warning: {in_clear} event(s) this subject reported before sealing was turned on are stored in \
                     clear; erasure cannot reach them"
                );
            }
            store.close().await;
        }
        GdprCommand::Export { subject, on } => {
            let args = on;
            let subject = subject_of(subject)?;
            let store = Store::open(&args.dataset.dir, &args.dataset.store_config()).await?;
            if let Some(sealer) = args.seal.sealer(&args.dataset.dir)? {
                store.seal_with(sealer);
            }
            let export = store.subject_export(&subject).await?;
            println!("{}", serde_json::to_string_pretty(&export)?);
            store.close().await;
        }
    }
    Ok(())
}

/// A change made at the console, for its audit record: no token names the operator,
/// so the record has no actor.
pub fn operator() -> Change {
    Change { request_id: "cli".into(), role: "operator".into() }
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every chain of the audit log (every shard's and the key store's) and name
    /// the first altered, deleted, inserted or reordered record. Reads only: it may
    /// run beside the server.
    Verify {
        #[command(flatten)]
        on: OnDataset,
    },
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let AuditCommand::Verify { on: args } = args.command;
    let source = args.seal.source().ok_or_else(|| Refused {
        failure: Failure::Usage,
        message: format!(
            "audit verify needs the key-encryption keys (the chain's key is wrapped by them): --kek-file or {KEK_ENV}"
        ),
    })?;
    let sealer = Sealer::load_read_only(source, &args.seal.key_store_in(&args.dataset.dir))?;
    let store = Store::open(&args.dataset.dir, &args.dataset.store_config()).await?;
    store.seal_with(Arc::new(sealer));
    let report = store.verify_audit().await?;
    store.close().await;
    match report.tampering {
        None => {
            println!("audit log intact: {} records in {} chains verified", report.records, report.chains);
            Ok(())
        }
        Some(tamper) => Err(Refused {
            failure: Failure::BadInput,
            message: format!("audit log tampered with: {tamper} ({} records before it verified)", report.records),
        }
        .into()),
    }
}
