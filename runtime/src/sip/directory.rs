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

use crate::guest::{CallHandler, Handlers};

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
}

#[derive(Clone)]
pub struct Trunk {
    pub name: String,
    pub address: SocketAddr,
    pub transport: Transport,
    pub credentials: Option<(String, String)>,
}

/// A number bound to a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub handler: String,
    /// Content hash of the component: the handler version in CDRs.
    pub version: String,
}

pub struct Tenant {
    pub id: String,
    /// Admission limits of this tenant's calls.
    pub limits: Limits,
    pub domains: Vec<String>,
    /// SIP users: username → password.
    pub users: HashMap<String, String>,
    pub trunks: Vec<Trunk>,
    pub handlers: Handlers,
    numbers: HashMap<String, Binding>,
    catch_all: Option<Binding>,
}

impl Tenant {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            limits: Limits::default(),
            domains: Vec::new(),
            users: HashMap::new(),
            trunks: Vec::new(),
            handlers: Handlers::new(),
            numbers: HashMap::new(),
            catch_all: None,
        }
    }

    /// Binds `number` (`*` for the catch-all) to a handler.
    pub fn bind(&mut self, number: &str, name: &str, version: &str, handler: Arc<dyn CallHandler>) {
        self.handlers.insert(name.into(), handler);
        let binding = Binding {
            handler: name.into(),
            version: version.into(),
        };
        if number == "*" {
            self.catch_all = Some(binding);
        } else {
            self.numbers.insert(number.into(), binding);
        }
    }

    pub fn password(&self, username: &str) -> Option<String> {
        self.users.get(username).cloned()
    }
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

    /// The tenant and handler of an inbound call to `user@host`.
    pub fn route(&self, user: Option<&str>, host: &str) -> Option<Route> {
        if let Some(&tenant) = user.and_then(|u| self.numbers.get(u)) {
            let binding = self.tenants[tenant].numbers.get(user?)?.clone();
            return Some(Route { tenant, binding });
        }
        let tenant = self.domain(host).or(self.catch_all)?;
        let binding = self.tenants[tenant].catch_all.clone()?;
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
    use crate::contract::Plan;
    use crate::guest::NativeHandler;

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
        let route = directory().route(Some("+15550100"), "other.test").unwrap();
        assert_eq!((route.tenant, route.binding.handler.as_str()), (0, "ivr"));
    }

    #[test]
    fn a_domain_routes_unbound_numbers_to_its_catch_all() {
        let route = directory().route(Some("999"), "ACME.test").unwrap();
        assert_eq!((route.tenant, route.binding.handler.as_str()), (0, "main"));
    }

    #[test]
    fn the_domainless_catch_all_takes_the_rest() {
        let route = directory().route(None, "127.0.0.1").unwrap();
        assert_eq!((route.tenant, route.binding.handler.as_str()), (1, "demo"));
    }

    #[test]
    fn without_a_catch_all_unknown_calls_have_no_route() {
        let mut acme = Tenant::new("acme");
        acme.bind("100", "ivr", "v1", handler());
        let directory = Directory::new(vec![acme]);
        assert_eq!(directory.route(Some("200"), "127.0.0.1"), None);
        assert_eq!(directory.registrar_tenant("127.0.0.1"), None);
    }
}
