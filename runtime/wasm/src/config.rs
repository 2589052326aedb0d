//! Typed configuration of the Wasm host, validated once at construction.
//!
//! ```text
//!   HostConfig::builder() ─ setters ─▶ build() ──▶ HostConfig (valid)
//!        │                                 │
//!        │ PoolLimits: engine-wide          │ ConfigError names the bad item
//!        │ GuestLimits: per event, default  │
//!        ▼                                 ▼
//!   engine.rs (pool, epoch tick)     handler.rs (per-tenant GuestLimits,
//!                                    checked against the pool with
//!                                    HostConfig::check_guest_limits)
//! ```
//!
//! The pool is sized for the whole process; a tenant's [`GuestLimits`] must
//! fit inside one pool slot, which is why overrides are checked against it.

use std::path::PathBuf;
use std::time::Duration;

/// Limits of one event's guest instance. Every field has a documented
/// default; tenants may override them within the pool's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuestLimits {
    /// Wall time a guest may run on one event before it is interrupted
    /// (enforced with epochs, accurate to one epoch tick). Default 20 ms.
    pub deadline: Duration,
    /// Most bytes of linear memory per memory. Growth past it is refused
    /// and reported as [`switchyard_contract::guest::GuestFailure::MemoryCap`] if the
    /// guest then fails. Default 32 MiB.
    pub memory_bytes: u64,
    /// Most elements per table. Default 20 000 (Rust guests with many
    /// indirect calls need a few thousand).
    pub table_elements: u32,
    /// Most core instances per event's store. A Rust `wasm32-wasip2`
    /// component holds a handful. Default 32.
    pub instances: u32,
}

impl Default for GuestLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(20),
            memory_bytes: 32 * MIB,
            table_elements: 20_000,
            instances: 32,
        }
    }
}

/// Sizes of the pooling instance allocator: how many guests may be alive
/// at once in the whole process, and how large one slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Component instances alive at once (= concurrent events). Default 1 000.
    pub component_instances: u32,
    /// Core instances alive at once; a component holds several. Default 8 000.
    pub core_instances: u32,
    /// Linear memories alive at once. Each reserves address space (not RAM)
    /// for bounds-check-free access. Default 2 000.
    pub memories: u32,
    /// Tables alive at once. Default 4 000.
    pub tables: u32,
    /// Largest linear memory any tenant may be granted. Default 256 MiB.
    pub max_memory_bytes: u64,
    /// Largest table any tenant may be granted. Default 20 000.
    pub max_table_elements: u32,
    /// Bytes of a freed memory slot kept resident (reset in place), so the
    /// next event in that slot does not fault its pages in again. Used only
    /// where Linux offers PAGEMAP_SCAN (≥ 6.7), which resets just the dirty
    /// pages; elsewhere slots are decommitted. Default 2 MiB (a Rust
    /// guest's 1 MiB stack plus data and a small heap).
    pub memory_keep_resident: u64,
    /// Bytes of a freed table slot kept resident, as above. Default 64 KiB.
    pub table_keep_resident: u64,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            component_instances: 1_000,
            core_instances: 8_000,
            memories: 2_000,
            tables: 4_000,
            max_memory_bytes: 256 * MIB,
            max_table_elements: 20_000,
            memory_keep_resident: 2 * MIB,
            table_keep_resident: 64 * 1024,
        }
    }
}

/// Configuration of a [`crate::WasmHost`]. Build it with
/// [`HostConfig::builder`]; a built value is always valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    cache_dir: PathBuf,
    pool: PoolLimits,
    default_limits: GuestLimits,
    epoch_tick: Duration,
    invocation_timeout: Duration,
    guest_output_bytes: usize,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            cache_dir: PathBuf::from("./switchyard-data/component-cache"),
            pool: PoolLimits::default(),
            default_limits: GuestLimits::default(),
            epoch_tick: Duration::from_millis(5),
            invocation_timeout: Duration::from_secs(1),
            guest_output_bytes: 64 * 1024,
        }
    }
}

impl HostConfig {
    pub fn builder() -> HostConfigBuilder {
        HostConfigBuilder(HostConfig::default())
    }

    /// Where precompiled components are kept between runs.
    pub fn cache_dir(&self) -> &std::path::Path {
        &self.cache_dir
    }

    pub fn pool(&self) -> &PoolLimits {
        &self.pool
    }

    /// Limits of a tenant that has no override.
    pub fn default_limits(&self) -> GuestLimits {
        self.default_limits
    }

    pub fn epoch_tick(&self) -> Duration {
        self.epoch_tick
    }

    /// Hard wall-clock bound of a whole invocation, host calls included.
    pub fn invocation_timeout(&self) -> Duration {
        self.invocation_timeout
    }

    /// Bytes of guest stdout/stderr forwarded to tracing per invocation.
    pub fn guest_output_bytes(&self) -> usize {
        self.guest_output_bytes
    }

    /// Epoch ticks that make up `deadline` (at least one).
    pub fn deadline_ticks(&self, deadline: Duration) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        deadline
            .as_nanos()
            .div_ceil(tick)
            .clamp(1, u64::MAX as u128) as u64
    }

    /// Checks a tenant's limits against what one pool slot can hold.
    pub fn check_guest_limits(&self, limits: &GuestLimits) -> Result<(), ConfigError> {
        check_guest_limits(
            "guest limits",
            limits,
            &self.pool,
            self.epoch_tick,
            self.invocation_timeout,
        )
    }
}

/// Builder of [`HostConfig`]; each setter documents its default.
#[derive(Debug, Clone)]
pub struct HostConfigBuilder(HostConfig);

impl HostConfigBuilder {
    /// Directory of the precompiled-component cache. Default
    /// `./switchyard-data/component-cache`; created on first use.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.0.cache_dir = dir.into();
        self
    }

    /// Pooling allocator sizes. Default [`PoolLimits::default`]. Larger
    /// pools reserve more address space (not RAM) at start-up.
    pub fn pool(mut self, pool: PoolLimits) -> Self {
        self.0.pool = pool;
        self
    }

    /// Limits of tenants without an override. Default [`GuestLimits::default`].
    pub fn default_limits(mut self, limits: GuestLimits) -> Self {
        self.0.default_limits = limits;
        self
    }

    /// Period of the epoch ticker, i.e. the resolution of deadlines: a
    /// guest is interrupted between one tick before its deadline and the
    /// deadline. Default 5 ms. Every tick wakes a thread that can preempt a
    /// running guest: at 1 ms the `decision` benchmark's p99 was 40–60 µs
    /// on 2 cores, at 5–10 ms about 30 µs (BENCHMARKS.md).
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.0.epoch_tick = tick;
        self
    }

    /// Wall-clock bound of an invocation including host calls, for guests
    /// stuck in a host call where epochs cannot reach them. Default 1 s;
    /// must be at least the deadline.
    pub fn invocation_timeout(mut self, timeout: Duration) -> Self {
        self.0.invocation_timeout = timeout;
        self
    }

    /// Bytes of guest stdout/stderr forwarded to tracing per invocation;
    /// the rest is dropped (and counted). Default 64 KiB.
    pub fn guest_output_bytes(mut self, bytes: usize) -> Self {
        self.0.guest_output_bytes = bytes;
        self
    }

    pub fn build(self) -> Result<HostConfig, ConfigError> {
        let c = self.0;
        if c.cache_dir.as_os_str().is_empty() {
            return Err(invalid("cache_dir", "must not be empty"));
        }
        if c.epoch_tick < Duration::from_micros(100) || c.epoch_tick > Duration::from_millis(100) {
            return Err(invalid(
                "epoch_tick",
                format!("{:?} is outside 100µs..=100ms", c.epoch_tick),
            ));
        }
        let p = &c.pool;
        for (item, value) in [
            ("pool.component_instances", p.component_instances),
            ("pool.core_instances", p.core_instances),
            ("pool.memories", p.memories),
            ("pool.tables", p.tables),
            ("pool.max_table_elements", p.max_table_elements),
        ] {
            if value == 0 {
                return Err(invalid(item, "must be at least 1"));
            }
        }
        if p.core_instances < p.component_instances {
            return Err(invalid(
                "pool.core_instances",
                format!(
                    "{} is less than pool.component_instances ({}); every component holds at least one core instance",
                    p.core_instances, p.component_instances
                ),
            ));
        }
        if p.max_memory_bytes < WASM_PAGE || p.max_memory_bytes > 4 * 1024 * MIB {
            return Err(invalid(
                "pool.max_memory_bytes",
                format!("{} is outside 64 KiB..=4 GiB", p.max_memory_bytes),
            ));
        }
        if p.memory_keep_resident > p.max_memory_bytes {
            return Err(invalid(
                "pool.memory_keep_resident",
                "must not exceed pool.max_memory_bytes",
            ));
        }
        if c.guest_output_bytes > 16 * MIB as usize {
            return Err(invalid("guest_output_bytes", "must be at most 16 MiB"));
        }
        check_guest_limits(
            "default_limits",
            &c.default_limits,
            p,
            c.epoch_tick,
            c.invocation_timeout,
        )?;
        Ok(c)
    }
}

/// Configuration that cannot work, naming the item at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `item` has a value outside its allowed range.
    #[error("invalid Wasm host configuration: {item} {reason}")]
    Invalid { item: String, reason: String },
}

const MIB: u64 = 1024 * 1024;
const WASM_PAGE: u64 = 64 * 1024;

fn invalid(item: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        item: item.into(),
        reason: reason.into(),
    }
}

fn check_guest_limits(
    scope: &str,
    l: &GuestLimits,
    pool: &PoolLimits,
    tick: Duration,
    timeout: Duration,
) -> Result<(), ConfigError> {
    let item = |field: &str| format!("{scope}.{field}");
    if l.deadline < tick {
        return Err(invalid(
            item("deadline"),
            format!("{:?} is shorter than one epoch tick ({tick:?})", l.deadline),
        ));
    }
    if l.deadline > timeout {
        return Err(invalid(
            item("deadline"),
            format!(
                "{:?} exceeds the invocation timeout ({timeout:?})",
                l.deadline
            ),
        ));
    }
    if l.memory_bytes < WASM_PAGE {
        return Err(invalid(
            item("memory_bytes"),
            "must be at least one 64 KiB page",
        ));
    }
    if l.memory_bytes > pool.max_memory_bytes {
        return Err(invalid(
            item("memory_bytes"),
            format!(
                "{} exceeds pool.max_memory_bytes ({})",
                l.memory_bytes, pool.max_memory_bytes
            ),
        ));
    }
    if l.table_elements == 0 || l.table_elements > pool.max_table_elements {
        return Err(invalid(
            item("table_elements"),
            format!(
                "{} is outside 1..={}",
                l.table_elements, pool.max_table_elements
            ),
        ));
    }
    if l.instances == 0 {
        return Err(invalid(item("instances"), "must be at least 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = HostConfig::builder().build().unwrap();
        assert_eq!(config, HostConfig::default());
        assert_eq!(config.default_limits().deadline, Duration::from_millis(20));
        assert_eq!(config.deadline_ticks(Duration::from_millis(20)), 4);
        assert_eq!(config.deadline_ticks(Duration::from_millis(7)), 2);
    }

    #[test]
    fn a_memory_cap_larger_than_a_pool_slot_is_refused_by_name() {
        let err = HostConfig::builder()
            .default_limits(GuestLimits {
                memory_bytes: 512 * MIB,
                ..GuestLimits::default()
            })
            .build()
            .unwrap_err();
        assert!(
            err.to_string().contains("default_limits.memory_bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_deadline_shorter_than_a_tick_is_refused() {
        let config = HostConfig::builder()
            .epoch_tick(Duration::from_millis(5))
            .build()
            .unwrap();
        let err = config
            .check_guest_limits(&GuestLimits {
                deadline: Duration::from_millis(1),
                ..GuestLimits::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("guest limits.deadline"), "{err}");
    }

    #[test]
    fn an_empty_pool_is_refused() {
        let err = HostConfig::builder()
            .pool(PoolLimits {
                memories: 0,
                ..PoolLimits::default()
            })
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("pool.memories"), "{err}");
    }
}
