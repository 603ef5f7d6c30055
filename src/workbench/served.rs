//! What a cell is served with beyond its plan: the security part's token, TLS pair and
//! (for its write cells) a store of its own that seals and audits.

use super::WorkbenchError;
use super::cell::{AtRest, CellId, Keeping};
use super::plan::{CellPlan, Plan};
use crate::harness::LocalServer;
use crate::http::ServerConfig;
use crate::store::Store;
use http::HeaderValue;
use std::sync::Arc;

/// What a cell's server and load need beyond the plan (the security part's token and
/// TLS pair).
pub(super) struct Served {
    pub(super) config: ServerConfig,
    /// The `Authorization` header every request carries.
    pub(super) token: Option<HeaderValue>,
    /// The server's acceptor for a certificate made for the cell, and a client that
    /// trusts it.
    pub(super) tls: Option<(tokio_rustls::TlsAcceptor, Arc<rustls::ClientConfig>)>,
}

impl Served {
    pub(super) fn of(cell: &CellPlan) -> Result<Self, WorkbenchError> {
        let problem = |problem: String| WorkbenchError::Plan { cell: cell.id, problem };
        let auth = match cell.signing {
            Some(signing) => {
                let role = if cell.at_rest.is_some() { crate::auth::Role::Reporter } else { crate::auth::Role::Reader };
                super::tokens::auth(signing, role).map_err(problem)?
            }
            None => None,
        };
        let (verifier, token) = auth.unzip();
        let tls = if cell.tls {
            let (cert, key) =
                crate::http::tls::self_signed(&["localhost".to_owned()]).map_err(|e| problem(e.to_string()))?;
            let acceptor = crate::http::tls::acceptor_from_pem(&cert, &key, Default::default())
                .map_err(|e| problem(e.to_string()))?;
            let client = crate::load::conn::tls_config(cert.as_bytes(), cell.wire.protocol())
                .map_err(|e| problem(e.to_string()))?;
            Some((acceptor, client))
        } else {
            None
        };
        let config = ServerConfig {
            default_path: cell.path,
            cache_capacity: if cell.cache { ServerConfig::default().cache_capacity } else { 0 },
            inline_read_models: cell.keeping.map(Keeping::inline_models).unwrap_or_default(),
            auth: verifier,
            ..ServerConfig::default()
        };
        Ok(Served { config, token, tls })
    }

    /// The cell's server on a free loopback port.
    pub(super) fn start(&self, plan: &Plan, store: Arc<Store>, cell: CellId) -> Result<LocalServer, WorkbenchError> {
        let (threads, cores) = (plan.server_threads, &plan.placement.server_cores);
        let acceptor = self.tls.as_ref().map(|(acceptor, _)| acceptor.clone());
        LocalServer::start_tls(store, self.config.clone(), threads, cores, acceptor)
            .map_err(|cause| WorkbenchError::Server { cell, cause })
    }
}

/// The run's main dataset opened again, sealing (and auditing) its writes as `at_rest`
/// says. The KEK and the key store are the workbench's own, kept beside the dataset
/// (`workbench.kek`, `data-keys.sqlite`) so the events the cells seal stay readable
/// later (`serve --kek-file <dir>/workbench.kek`): a benchmark dataset, whose reasons
/// are generated text, not the separation a real deployment keeps.
pub(super) async fn protected_store(plan: &Plan, at_rest: AtRest) -> Result<Arc<Store>, WorkbenchError> {
    let dir = plan.main_dir(&plan.spec());
    let store = Store::open(&dir, &crate::store::StoreConfig::default()).await?;
    if at_rest == AtRest::Clear {
        return Ok(Arc::new(store));
    }
    let problem = |problem: String| WorkbenchError::Plan { cell: CellId::Writes(at_rest), problem };
    let kek = dir.join("workbench.kek");
    if !kek.exists() {
        crate::seal::kek::add_to_file(&kek).map_err(|e| problem(e.to_string()))?;
    }
    let key_store = dir.join(crate::seal::DEFAULT_KEY_STORE);
    let sealer = crate::seal::Sealer::load(crate::seal::kek::KekSource::File(kek), &key_store)
        .map_err(|e| problem(e.to_string()))?;
    store.seal_with(Arc::new(sealer));
    let scope = match at_rest {
        AtRest::AuditFlight => Some(crate::audit::ChainScope::Flight),
        AtRest::AuditShard => Some(crate::audit::ChainScope::Shard),
        AtRest::AuditGlobal => Some(crate::audit::ChainScope::Global),
        AtRest::Clear | AtRest::Sealed => None,
    };
    if let Some(scope) = scope {
        store.audit_with(scope).await?;
    }
    Ok(Arc::new(store))
}
