//! Keeps the SIP directory in step with the REST stores: accounts (and
//! their suspension), uploaded component versions and the numbers bound
//! to them, canaries included, SIP users and domains; and rolls a canary back when it fails too
//! often.
//!
//! ```text
//!   PUT /v1/numbers/…  ─┐ Job::Refresh                 Input::Directory
//!   suspend / resume   ─┼──────────────▶ provisioner ───────────────────▶ core task
//!   call ended (CDR)   ─┘ Job::Ended     thread (SQLite,   (Endpoint::set_directory)
//!                                        component loads)
//! ```
//!
//! The provisioner runs on its own thread because rebuilding reads SQLite
//! and may compile components. The directory is rebuilt whole and swapped:
//! calls in progress keep the handlers they were routed to (a tenant keeps
//! its index for the life of the process), new calls see the change. The
//! REST answer goes out only after the new directory is queued to the core
//! task, so an INVITE sent after it is routed by the new directory.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot};

use super::Input;
use crate::deploy::canary::CanaryWatch;
use crate::deploy::{Deployments, Number};
use crate::guest::CallHandler;
use crate::router::{DecisionLog, Entry};
use crate::sip::directory::{Binding, Directory, Limits, Tenant};
use crate::store::Cdr;
use crate::tenancy::{Accounts, SUSPENDED};
use crate::wasm::{GuestLimits, TenantScope, WasmHost, World};

/// What the provisioner thread is asked to do.
enum Job {
    /// Rebuild the directory; answer when it is queued to the core task.
    Refresh(oneshot::Sender<anyhow::Result<()>>),
    /// A call of a REST-bound number ended: count it for its canary.
    Ended {
        tenant: String,
        to: String,
        handler: String,
        failed: bool,
    },
}

/// Handle to the provisioner thread. Cheap to clone.
#[derive(Clone)]
pub struct Provision {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Provision {
    /// What the REST API calls after a change.
    pub fn refresh(&self) -> crate::api::Refresh {
        let jobs = self.jobs.clone();
        Arc::new(move || {
            let jobs = jobs.clone();
            Box::pin(async move {
                let (reply, done) = oneshot::channel();
                jobs.send(Job::Refresh(reply))
                    .map_err(|_| anyhow::anyhow!("the provisioner has stopped"))?;
                done.await
                    .map_err(|_| anyhow::anyhow!("the provisioner has stopped"))?
            })
        })
    }

    /// A call ended; only calls of REST-bound handlers (`name@version`)
    /// can belong to a canary, so others cost nothing here.
    pub fn call_ended(&self, cdr: &Cdr, log: &DecisionLog) {
        if !cdr.handler.contains('@') {
            return;
        }
        let failed = log
            .entries()
            .iter()
            .any(|e| matches!(e.entry, Entry::Fallback { .. } | Entry::Handover { .. }));
        let _ = self.jobs.send(Job::Ended {
            tenant: cdr.tenant.clone(),
            to: cdr.to.clone(),
            handler: cdr.handler.clone(),
            failed,
        });
    }
}

/// Builds directories from the config's tenants plus what the stores hold.
pub struct Provisioner {
    host: WasmHost,
    store: Deployments,
    accounts: Accounts,
    /// The config's tenants, with their config-bound numbers.
    base: HashMap<String, Tenant>,
    /// Tenant ids by directory index; only ever appended to.
    order: Vec<String>,
    /// Guest limits per tenant from the config; others get the host's.
    config_limits: HashMap<String, GuestLimits>,
    /// Admission limits of an account the config does not name.
    defaults: Limits,
    /// Guest limits per tenant for this build: the config's, overridden
    /// by the account's own.
    limits: HashMap<String, GuestLimits>,
    /// Handlers already made, by (tenant, component hash, guest limits).
    handlers: HashMap<(String, String, Option<GuestLimits>), Arc<dyn CallHandler>>,
    /// The REST bindings the current directory was built from.
    numbers: HashMap<(String, String), Number>,
    canaries: CanaryWatch,
    /// Canaries condemned but not yet recorded in the store, by (tenant,
    /// number) with their version: left out of every build so that the
    /// directory drops a canary before the REST API can report it gone.
    condemned: HashMap<(String, String), u32>,
}

impl Provisioner {
    /// `base` in config order: those tenants keep the first indices;
    /// `limits` their guest limits; `defaults` the admission limits of
    /// accounts made over REST.
    pub fn new(
        host: WasmHost,
        store: Deployments,
        accounts: Accounts,
        base: Vec<Tenant>,
        limits: HashMap<String, GuestLimits>,
        defaults: Limits,
    ) -> Self {
        Self {
            host,
            store,
            accounts,
            order: base.iter().map(|t| t.id.clone()).collect(),
            base: base.into_iter().map(|t| (t.id.clone(), t)).collect(),
            config_limits: limits,
            defaults,
            limits: HashMap::new(),
            handlers: HashMap::new(),
            numbers: HashMap::new(),
            canaries: CanaryWatch::default(),
            condemned: HashMap::new(),
        }
    }

    /// The directory as the stores say now.
    pub fn build(&mut self) -> anyhow::Result<Arc<Directory>> {
        let mut suspended = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.accounts.list(after.as_deref(), 1000)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for account in page {
                if !self.order.contains(&account.id) {
                    self.order.push(account.id.clone());
                }
                suspended.insert(account.id, account.status == SUSPENDED);
            }
        }
        let own = self.store.all_limits()?;
        self.limits = self.config_limits.clone();
        let mut tenants = Vec::with_capacity(self.order.len());
        for id in &self.order {
            let mut tenant = self.base.get(id).cloned().unwrap_or_else(|| {
                let mut tenant = Tenant::new(id);
                tenant.limits = self.defaults;
                tenant
            });
            tenant.suspended = suspended.get(id).copied().unwrap_or(false);
            if let Some(own) = own.get(id) {
                own.apply(&mut tenant.limits);
                if own.sets_guest_limits() {
                    let configured = self.limits.get(id).copied();
                    let guest =
                        own.guest(configured.unwrap_or(self.host.config().default_limits()));
                    self.limits.insert(id.clone(), guest);
                }
            }
            tenants.push(tenant);
        }
        let index: HashMap<String, usize> = self
            .order
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        for (tenant_id, username, password) in self.store.all_sip_users()? {
            let Some(&idx) = index.get(&tenant_id) else {
                continue;
            };
            // The config's users win: a REST user of the same name waits.
            tenants[idx].users.entry(username).or_insert(password);
        }
        // The API refuses config domains; one the config took later waits.
        let configured: std::collections::HashSet<String> = tenants
            .iter()
            .flat_map(|t| t.domains.iter().map(|d| d.to_ascii_lowercase()))
            .collect();
        for (tenant_id, domain) in self.store.all_domains()? {
            match index.get(&tenant_id) {
                Some(_) if configured.contains(&domain) => {
                    tracing::warn!(tenant = %tenant_id, %domain, "SIP domain served by the config file; its REST claim is ignored")
                }
                Some(&idx) => tenants[idx].domains.push(domain),
                None => {}
            }
        }
        self.numbers.clear();
        for (tenant_id, mut number) in self.store.all_numbers()? {
            let key = (tenant_id.clone(), number.number.clone());
            if let (Some(canary), Some(&version)) = (&number.canary, self.condemned.get(&key))
                && canary.version == version
            {
                number.canary = None;
            }
            let Some(&idx) = index.get(&tenant_id) else {
                tracing::warn!(tenant = %tenant_id, number = %number.number, "number of an unknown account ignored");
                continue;
            };
            let tenant = &mut tenants[idx];
            if tenant.has_number(&number.number) {
                tracing::warn!(tenant = %tenant_id, number = %number.number, "number bound in the config file; its REST binding is ignored");
                continue;
            }
            match self.bind(tenant, &number) {
                Ok(()) => {
                    self.numbers
                        .insert((tenant_id, number.number.clone()), number);
                }
                Err(e) => {
                    tracing::error!(tenant = %tenant_id, number = %number.number, "number not served: {e:#}")
                }
            }
        }
        for tenant in &mut tenants {
            self.register_components(tenant)?;
        }
        Ok(Arc::new(Directory::new(tenants)))
    }

    /// Registers every stored call-handler component of `tenant` under
    /// its plain name (its newest version), unless a bound number already
    /// named it: what `redirect` and outbound calls refer to.
    fn register_components(&mut self, tenant: &mut Tenant) -> anyhow::Result<()> {
        let mut after: Option<String> = None;
        loop {
            let page = self.store.components(&tenant.id, after.as_deref(), 1000)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.name.clone());
            for component in page {
                if tenant.handlers.contains_key(&component.name) {
                    continue;
                }
                match self.handler(tenant, &component.name, None) {
                    Ok(binding) => alias(tenant, &component.name, &binding),
                    Err(e) => {
                        tracing::debug!(tenant = %tenant.id, component = %component.name, "not a handler: {e:#}")
                    }
                }
            }
        }
    }

    /// Binds one REST number into its tenant.
    fn bind(&mut self, tenant: &mut Tenant, number: &Number) -> anyhow::Result<()> {
        let mut binding = self.handler(tenant, &number.component, Some(number.version))?;
        // A guest's `redirect` names a component without its version: the
        // version its number is bound to.
        alias(tenant, &number.component, &binding);
        binding.status_callback = number.status_callback.clone();
        if let Some(fallback) = &number.fallback {
            binding.fallback = Some(self.handler(tenant, fallback, None)?.handler);
        }
        if let Some(canary) = &number.canary {
            let mut trial = self.handler(tenant, &number.component, Some(canary.version))?;
            trial.status_callback = binding.status_callback.clone();
            trial.fallback = binding.fallback.clone();
            tenant.canary(&number.number, canary.percent, trial);
        }
        tenant.bind_to(&number.number, binding);
        Ok(())
    }

    /// The binding of a component version (newest with `None`), its
    /// handler registered in the tenant as `name@version`.
    fn handler(
        &mut self,
        tenant: &mut Tenant,
        name: &str,
        version: Option<u32>,
    ) -> anyhow::Result<Binding> {
        let found = self
            .store
            .version(&tenant.id, name, version)?
            .with_context(|| format!("component {name} version {version:?} is not stored"))?;
        anyhow::ensure!(
            found.world == World::CallHandler.name(),
            "component {name} version {} is a {} component",
            found.version,
            found.world
        );
        let key = format!("{name}@{}", found.version);
        let limits = self.limits.get(&tenant.id).copied();
        let cache_key = (tenant.id.clone(), found.hash.clone(), limits);
        let handler = match self.handlers.get(&cache_key) {
            Some(handler) => Arc::clone(handler),
            None => {
                let bytes = self.store.bytes(&found.hash)?;
                let component = self
                    .host
                    .load(&bytes)
                    .map_err(|e| anyhow::anyhow!("component {key}: {e}"))?;
                let mut scope = TenantScope::new(tenant.id.as_str());
                if let Some(limits) = limits {
                    scope = scope.with_limits(limits);
                }
                let handler: Arc<dyn CallHandler> = Arc::new(self.host.handler(&component, scope)?);
                self.handlers.insert(cache_key, Arc::clone(&handler));
                handler
            }
        };
        tenant.handlers.insert(key.clone(), handler);
        tenant.versions.insert(key.clone(), found.hash.clone());
        Ok(Binding::new(key, found.hash))
    }

    /// Counts a finished call for its number's canary; rolls the canary
    /// back when its failure rate is over the threshold. The directory
    /// without the canary is queued before the rollback is stored, so a
    /// client that sees the rollback over REST never reaches the canary.
    fn ended(
        &mut self,
        inputs: &mpsc::UnboundedSender<Input>,
        tenant: &str,
        to: &str,
        handler: &str,
        failed: bool,
    ) -> anyhow::Result<()> {
        let number = self
            .numbers
            .get(&(tenant.to_owned(), to.to_owned()))
            .or_else(|| self.numbers.get(&(tenant.to_owned(), "*".to_owned())));
        let Some(number) = number else { return Ok(()) };
        let Some(canary) = &number.canary else {
            return Ok(());
        };
        if handler != format!("{}@{}", number.component, canary.version) {
            return Ok(());
        }
        let (name, version) = (number.number.clone(), canary.version);
        let Some(verdict) = self.canaries.observe(tenant, &name, canary, failed) else {
            return Ok(());
        };
        tracing::warn!(
            %tenant, number = %name, version, calls = verdict.calls, failures = verdict.failures,
            "canary failed too often; rolled back"
        );
        self.canaries.forget(tenant, &name);
        let key = (tenant.to_owned(), name.clone());
        self.condemned.insert(key.clone(), version);
        self.publish(inputs)?;
        // Until the store says so, the canary stays condemned (left out).
        self.store
            .roll_back_canary(tenant, &name, version, verdict.calls, verdict.failures)
            .context("recording a canary rollback")?;
        self.condemned.remove(&key);
        Ok(())
    }

    /// Runs the provisioner on its own thread; directories go to `inputs`.
    pub fn start(mut self, inputs: mpsc::UnboundedSender<Input>) -> anyhow::Result<Provision> {
        let (jobs, mut queue) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("provisioner".into())
            .spawn(move || {
                while let Some(job) = queue.blocking_recv() {
                    match job {
                        Job::Refresh(reply) => {
                            let _ = reply.send(self.publish(&inputs));
                        }
                        Job::Ended {
                            tenant,
                            to,
                            handler,
                            failed,
                        } => {
                            if let Err(e) = self.ended(&inputs, &tenant, &to, &handler, failed) {
                                tracing::error!(%tenant, number = %to, "rolling a canary back failed: {e:#}");
                            }
                        }
                    }
                }
            })
            .context("starting the provisioner thread")?;
        Ok(Provision { jobs })
    }

    fn publish(&mut self, inputs: &mpsc::UnboundedSender<Input>) -> anyhow::Result<()> {
        let directory = self.build()?;
        inputs
            .send(Input::Directory(directory))
            .map_err(|_| anyhow::anyhow!("the SIP core has stopped"))
    }
}

/// Registers `binding`'s handler in `tenant` under `name` too.
fn alias(tenant: &mut Tenant, name: &str, binding: &Binding) {
    if let Some(handler) = tenant.handlers.get(&binding.handler).cloned() {
        tenant.handlers.insert(name.to_owned(), handler);
        tenant
            .versions
            .insert(name.to_owned(), binding.version.clone());
    }
}
