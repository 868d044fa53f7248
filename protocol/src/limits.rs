//! Operator caps and the limits a call runs under.
//!
//! A function's manifest says what it needs; the operator's [`Caps`] say what this node
//! will give any one call. A call runs with exactly what its manifest asks for, or not
//! at all: if the manifest asks for more than a cap, the node refuses the call with
//! [`LimitExceeded`], which names the cap. (Running it with less would turn a clear
//! refusal into a confusing failure halfway through.)

use serde::{Deserialize, Serialize};

use crate::manifest::{Manifest, WASM_PAGE};

/// What work costs in fuel beyond one unit per instruction, on every backend: the
/// cranelift path's instrumentation (`node/src/runtime/fuel.rs`) charges exactly these,
/// and the interpreter is configured with them, so a budget buys the same bulk work on
/// both (`docs/node.md`, Backends; measured in `docs/benchmarks.md` (j)).
pub mod costs {
    /// Fuel every bulk memory or table operation costs on top of its length.
    pub const BULK_BASE: u64 = 16;
    /// Bytes of bulk memory work (`memory.fill`, `.copy`, `.init`) per unit of fuel.
    pub const BYTES_PER_FUEL: u64 = 4;
    /// Fuel per table element a bulk table operation touches or `table.grow` adds.
    pub const FUEL_PER_ELEMENT: u64 = 4;
    /// Fuel per page a successful `memory.grow` adds: 3 per byte (the kernel maps and
    /// zeroes every page as it is touched).
    pub const FUEL_PER_PAGE: u64 = 3 * 65_536;
}

/// What this node will give any one call, and the largest module it stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Caps {
    /// Largest module accepted, in bytes.
    pub max_module_bytes: u64,
    /// Largest guest memory ceiling granted, in bytes.
    pub max_memory_bytes: u64,
    /// Largest fuel budget granted per call.
    pub max_fuel: u64,
    /// Longest wall-clock limit granted per call, in milliseconds.
    pub max_timeout_ms: u64,
    /// Largest call input accepted, in bytes.
    pub max_input_bytes: u64,
    /// Largest call output allowed, in bytes.
    pub max_output_bytes: u64,
    /// Most elements granted to each of a call's tables.
    pub max_table_elements: u64,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            max_module_bytes: 16 * 1024 * 1024,
            max_memory_bytes: 256 * 1024 * 1024,
            max_fuel: 10_000_000_000,
            max_timeout_ms: 30_000,
            max_input_bytes: 8 * 1024 * 1024,
            max_output_bytes: 8 * 1024 * 1024,
            max_table_elements: 1024 * 1024,
        }
    }
}

/// The limits one call runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EffectiveLimits {
    /// Guest memory ceiling, in whole pages.
    pub memory_pages: u32,
    /// Fuel budget.
    pub fuel: u64,
    /// Wall-clock limit, in milliseconds.
    pub timeout_ms: u64,
    /// Largest input, in bytes.
    pub max_input_bytes: u64,
    /// Largest output, in bytes.
    pub max_output_bytes: u64,
    /// Most elements of each table.
    pub table_elements: u64,
}

impl EffectiveLimits {
    /// The limits for a call of a function with `manifest` on a node with `caps`.
    ///
    /// # Errors
    /// Fails with the first manifest value that exceeds its cap.
    pub fn new(manifest: &Manifest, caps: &Caps) -> Result<Self, LimitExceeded> {
        let over = |limit: &'static str, asked: u64, cap: u64| {
            if asked > cap {
                Err(LimitExceeded { limit, asked, cap })
            } else {
                Ok(asked)
            }
        };
        let memory = over("memory_bytes", manifest.memory_bytes, caps.max_memory_bytes)?;
        Ok(Self {
            // At most 4 GiB / 64 KiB = 65536 pages, which fits in u32.
            memory_pages: u32::try_from(memory / WASM_PAGE).unwrap_or(u32::MAX),
            fuel: over("fuel", manifest.fuel, caps.max_fuel)?,
            timeout_ms: over("timeout_ms", manifest.timeout_ms, caps.max_timeout_ms)?,
            max_input_bytes: over(
                "max_input_bytes",
                manifest.max_input_bytes,
                caps.max_input_bytes,
            )?,
            max_output_bytes: over(
                "max_output_bytes",
                manifest.max_output_bytes,
                caps.max_output_bytes,
            )?,
            table_elements: over(
                "table_elements",
                manifest.table_elements,
                caps.max_table_elements,
            )?,
        })
    }
}

/// A manifest asks for more than this node's cap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the function's manifest asks for {limit} = {asked}, but this node caps it at {cap}")]
pub struct LimitExceeded {
    /// The manifest key.
    pub limit: &'static str,
    /// What the manifest asks for.
    pub asked: u64,
    /// This node's cap.
    pub cap: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_default_caps() {
        let l = EffectiveLimits::new(&Manifest::default(), &Caps::default()).unwrap();
        assert_eq!(l.memory_pages, 512);
        assert_eq!(l.fuel, Manifest::DEFAULT_FUEL);
    }

    #[test]
    fn over_cap_names_the_cap() {
        let m = Manifest {
            timeout_ms: 60_000,
            ..Manifest::default()
        };
        let e = EffectiveLimits::new(&m, &Caps::default()).unwrap_err();
        assert_eq!(e.limit, "timeout_ms");
        assert!(e.to_string().contains("30000"));
    }
}
