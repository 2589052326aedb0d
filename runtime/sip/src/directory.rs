//! Who a SIP request belongs to: tenants, their numbers, domains, SIP users
//! and trunks.
//!
//! Routing rule for an inbound INVITE (`route`): the Request-URI user is
//! looked up among every tenant's numbers first; then the Request-URI host
//! among tenant domains, whose `*` binding takes the call; then the one
//! tenant (if any) with a `*` binding and no domains catches the rest.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use switchyard_contract::guest::{CallHandler, Handlers};
use switchyard_shaken::{Attestation, Signer};

use super::Transport;

/// Index of a tenant in the directory.
pub type TenantIdx = usize;

/// A tenant's admission limits (C7); `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Calls in progress at most.
    pub max_calls: Option<u32>,
    /// New calls per second at most (a token bucket as deep as the rate).
    pub calls_per_second: Option<u32>,
    /// Calls that may wait for a place (above these limits or the
    /// runtime's capacity); more are refused at once. 0: no waiting.
    pub queue: u32,
    /// A waiting call is refused after this long (zero: no waiting), at
    /// most [`Limits::MAX_QUEUE_WAIT_MS`].
    pub queue_wait: std::time::Duration,
}

impl Limits {
    /// The longest a call may be made to wait for admission, whoever sets
    /// the limit (config or REST): callers give up on an INVITE without a
    /// final answer after 32 s (Timer B), and people much sooner.
    pub const MAX_QUEUE_WAIT_MS: u64 = 30_000;
}

#[derive(Clone)]
pub struct Trunk {
    pub name: String,
    pub address: SocketAddr,
    pub transport: Transport,
    pub credentials: Option<(String, String)>,
    /// The attestation of calls placed through this trunk, over the
    /// tenant's [`Signing::attest`].
    pub attest: Option<Attestation>,
}

/// How a tenant's calls through its trunks are signed (STIR/SHAKEN): an
/// `Identity` header with its key and certificate URL.
pub struct Signing {
    pub signer: Signer,
    /// The attestation the account is allowed, unless a trunk or the
    /// caller id's number says other.
    pub attest: Attestation,
    /// Caller ids (numbers, `+` optional) with an attestation of their
    /// own, which wins over the trunk's and the account's.
    pub numbers: HashMap<String, Attestation>,
}

impl Signing {
    /// The attestation of a call from `caller_id` through `trunk`: the
    /// number's own, else the trunk's, else the account's.
    pub fn attest_for(&self, caller_id: &str, trunk: Option<Attestation>) -> Attestation {
        let number = caller_id.trim_start_matches('+');
        (self.numbers.get(number).copied())
            .or(trunk)
            .unwrap_or(self.attest)
    }
}

/// A number bound to a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub handler: String,
    /// Content hash of the component: the handler version in CDRs.
    pub version: String,
    /// Where call status events of this number are POSTed, if anywhere
    /// (http or https; see `crate::callbacks`).
    pub status_callback: Option<String>,
    /// A handler that gets the event when this one fails, before the
    /// static fallback plan (a number's `fallback` component).
    pub fallback: Option<String>,
}

impl Binding {
    pub fn new(handler: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            handler: handler.into(),
            version: version.into(),
            status_callback: None,
            fallback: None,
        }
    }
}

#[derive(Clone)]
pub struct Tenant {
    pub id: String,
    /// A suspended tenant's calls are refused (403).
    pub suspended: bool,
    /// Admission limits of this tenant's calls.
    pub limits: Limits,
    pub domains: Vec<String>,
    /// SIP users: username → password.
    pub users: HashMap<String, String>,
    pub trunks: Vec<Trunk>,
    /// Signing of calls through the trunks; none, they go unsigned.
    pub signing: Option<Arc<Signing>>,
    pub handlers: Handlers,
    /// Content hash of each handler's component, by handler name (the
    /// version in CDRs of calls that start on a handler, not a number).
    pub versions: HashMap<String, String>,
    numbers: HashMap<String, Binding>,
    catch_all: Option<Binding>,
    /// Numbers that send a share of new calls (percent) to another binding.
    canaries: HashMap<String, (u8, Binding)>,
}

impl Tenant {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            suspended: false,
            limits: Limits::default(),
            domains: Vec::new(),
            users: HashMap::new(),
            trunks: Vec::new(),
            signing: None,
            handlers: Handlers::new(),
            versions: HashMap::new(),
            numbers: HashMap::new(),
            catch_all: None,
            canaries: HashMap::new(),
        }
    }

    /// The tenant's trunk at `peer` (address and transport), if it is one.
    pub fn trunk_at(&self, peer: crate::Peer) -> Option<&Trunk> {
        (self.trunks.iter()).find(|t| t.address == peer.addr && t.transport == peer.transport)
    }

    /// Binds `number` (`*` for the catch-all) to a handler.
    pub fn bind(&mut self, number: &str, name: &str, version: &str, handler: Arc<dyn CallHandler>) {
        self.handlers.insert(name.into(), handler);
        self.versions.insert(name.into(), version.into());
        self.bind_to(number, Binding::new(name, version));
    }

    /// Binds `number` (`*` for the catch-all) to `binding`, whose
    /// handlers must be in [`handlers`](Self::handlers).
    pub fn bind_to(&mut self, number: &str, binding: Binding) {
        if number == "*" {
            self.catch_all = Some(binding);
        } else {
            self.numbers.insert(number.into(), binding);
        }
    }

    /// Sets the status callback URL of a bound `number` (`*` for the
    /// catch-all); false if it is not bound.
    pub fn set_status_callback(&mut self, number: &str, url: Option<String>) -> bool {
        let binding = match number {
            "*" => self.catch_all.as_mut(),
            _ => self.numbers.get_mut(number),
        };
        binding.map(|b| b.status_callback = url).is_some()
    }

    /// Sends `percent` of `number`'s new calls to `binding`.
    pub fn canary(&mut self, number: &str, percent: u8, binding: Binding) {
        self.canaries
            .insert(number.into(), (percent.min(100), binding));
    }

    /// Whether `number` (`*` for the catch-all) is bound.
    pub fn has_number(&self, number: &str) -> bool {
        match number {
            "*" => self.catch_all.is_some(),
            _ => self.numbers.contains_key(number),
        }
    }

    /// The binding of `number` for a call whose dice roll (0..100) is
    /// `roll`: the canary's when the roll falls within its share.
    fn pick(&self, number: &str, binding: &Binding, roll: u8) -> Binding {
        match self.canaries.get(number) {
            Some((percent, canary)) if roll < *percent => canary.clone(),
            _ => binding.clone(),
        }
    }

    pub fn password(&self, username: &str) -> Option<String> {
        self.users.get(username).cloned()
    }
}

/// A call's dice roll for [`Directory::route`]: uniform over 0..100, so a
/// canary of N % gets N % of the calls. (`random::<u8>() % 100` is not:
/// 0..55 come up three times in 256 draws and 56..99 twice, which sent
/// 58.6 % of calls to a 50 % canary.)
pub fn canary_roll(rng: &mut impl rand::Rng) -> u8 {
    rng.random_range(0..100)
}

/// An inbound call's tenant and handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub tenant: TenantIdx,
    pub binding: Binding,
}

#[derive(Default)]
pub struct Directory {
    tenants: Vec<Tenant>,
    numbers: HashMap<String, TenantIdx>,
    domains: HashMap<String, TenantIdx>,
    catch_all: Option<TenantIdx>,
}

impl Directory {
    pub fn new(tenants: Vec<Tenant>) -> Self {
        let mut directory = Directory::default();
        for (idx, tenant) in tenants.iter().enumerate() {
            for number in tenant.numbers.keys() {
                directory.numbers.insert(number.clone(), idx);
            }
            for domain in &tenant.domains {
                directory.domains.insert(domain.to_ascii_lowercase(), idx);
            }
            if tenant.catch_all.is_some() && tenant.domains.is_empty() {
                directory.catch_all = Some(idx);
            }
        }
        directory.tenants = tenants;
        directory
    }

    pub fn tenant(&self, idx: TenantIdx) -> &Tenant {
        &self.tenants[idx]
    }

    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    /// The tenant and handler of an inbound call to `user@host`; `roll`
    /// (0..100, random per call) picks between a number's version and its
    /// canary.
    pub fn route(&self, user: Option<&str>, host: &str, roll: u8) -> Option<Route> {
        if let Some(&tenant) = user.and_then(|u| self.numbers.get(u)) {
            let user = user?;
            let owner = &self.tenants[tenant];
            let binding = owner.pick(user, owner.numbers.get(user)?, roll);
            return Some(Route { tenant, binding });
        }
        let tenant = self.domain(host).or(self.catch_all)?;
        let owner = &self.tenants[tenant];
        let binding = owner.pick("*", owner.catch_all.as_ref()?, roll);
        Some(Route { tenant, binding })
    }

    /// The tenant owning a SIP domain (REGISTER realm); a catch-all tenant
    /// also takes registrations for hosts no tenant names (the demo).
    pub fn registrar_tenant(&self, host: &str) -> Option<TenantIdx> {
        self.domain(host).or(self.catch_all)
    }

    fn domain(&self, host: &str) -> Option<TenantIdx> {
        self.domains.get(&host.to_ascii_lowercase()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_contract::Plan;
    use switchyard_contract::guest::NativeHandler;

    fn handler() -> Arc<dyn CallHandler> {
        Arc::new(NativeHandler(|_: &_, _: &_, _: &mut _| {
            Ok(Plan { verbs: vec![] })
        }))
    }

    fn directory() -> Directory {
        let mut acme = Tenant::new("acme");
        acme.domains.push("acme.test".into());
        acme.bind("+15550100", "ivr", "v1", handler());
        acme.bind("*", "main", "v1", handler());
        let mut demo = Tenant::new("demo");
        demo.bind("*", "demo", "v2", handler());
        Directory::new(vec![acme, demo])
    }

    #[test]
    fn numbers_win_over_domains() {
        let route = directory()
            .route(Some("+15550100"), "other.test", 0)
            .unwrap();
        assert_eq!((route.tenant, route.binding.handler.as_str()), (0, "ivr"));
    }

    #[test]
    fn a_domain_routes_unbound_numbers_to_its_catch_all() {
        let route = directory().route(Some("999"), "ACME.test", 0).unwrap();
        assert_eq!((route.tenant, route.binding.handler.as_str()), (0, "main"));
    }

    #[test]
    fn the_domainless_catch_all_takes_the_rest() {
        let route = directory().route(None, "127.0.0.1", 0).unwrap();
        assert_eq!((route.tenant, route.binding.handler.as_str()), (1, "demo"));
    }

    #[test]
    fn a_canary_takes_the_calls_whose_roll_is_within_its_share() {
        let mut acme = Tenant::new("acme");
        acme.bind("100", "ivr@1", "h1", handler());
        acme.handlers.insert("ivr@2".into(), handler());
        acme.canary("100", 10, Binding::new("ivr@2", "h2"));
        let directory = Directory::new(vec![acme]);
        let handler_for = |roll| {
            directory
                .route(Some("100"), "x", roll)
                .unwrap()
                .binding
                .handler
        };
        assert_eq!(handler_for(0), "ivr@2");
        assert_eq!(handler_for(9), "ivr@2");
        assert_eq!(handler_for(10), "ivr@1");
        assert_eq!(handler_for(99), "ivr@1");
    }

    #[test]
    fn canary_split_is_within_3_percent_over_10_000_rolls() {
        use rand::SeedableRng;
        let mut acme = Tenant::new("acme");
        acme.bind("100", "ivr@1", "h1", handler());
        acme.handlers.insert("ivr@2".into(), handler());
        acme.canary("100", 50, Binding::new("ivr@2", "h2"));
        let directory = Directory::new(vec![acme]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        let calls = 10_000;
        let to_canary = (0..calls)
            .filter(|_| {
                let roll = canary_roll(&mut rng);
                assert!(roll < 100, "{roll}");
                directory
                    .route(Some("100"), "x", roll)
                    .unwrap()
                    .binding
                    .handler
                    == "ivr@2"
            })
            .count();
        let share = to_canary as f64 / calls as f64;
        assert!((0.47..=0.53).contains(&share), "{share}");
    }

    #[test]
    fn without_a_catch_all_unknown_calls_have_no_route() {
        let mut acme = Tenant::new("acme");
        acme.bind("100", "ivr", "v1", handler());
        let directory = Directory::new(vec![acme]);
        assert_eq!(directory.route(Some("200"), "127.0.0.1", 0), None);
        assert_eq!(directory.registrar_tenant("127.0.0.1"), None);
    }
}
