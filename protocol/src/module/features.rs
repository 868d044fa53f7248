//! The WebAssembly features a kith function may use: one explicit list, the same on
//! every node (a module one node accepts, every node accepts), checked by the
//! validator at publish and again before anything fetched from a peer is stored.
//!
//! The list is what the toolchains people use emit by default (Rust's `wasm32`
//! targets, clang + wasi-libc, Go, Zig's `lime1`, AssemblyScript), and what a small
//! interpreter on a router can also run. Everything else is refused, naming the
//! feature (see `docs/abi.md`, section 5).

use wasmparser::WasmFeatures;

/// One feature, as `docs/abi.md` names it, and whether kith accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// The proposal's usual name.
    pub name: &'static str,
    /// True if and only if kith functions may use it.
    pub accepted: bool,
    /// Why, in a few words.
    pub why: &'static str,
    bits: WasmFeatures,
}

/// Every feature the validator knows that a kith node decides on, in the order
/// `docs/abi.md` lists them.
pub const FEATURES: &[Feature] = &[
    Feature {
        name: "mutable-global",
        accepted: true,
        why: "WebAssembly 1.0",
        bits: WasmFeatures::MUTABLE_GLOBAL,
    },
    Feature {
        name: "sign-extension",
        accepted: true,
        why: "WebAssembly 2.0; every toolchain's default",
        bits: WasmFeatures::SIGN_EXTENSION,
    },
    Feature {
        name: "nontrapping-float-to-int",
        accepted: true,
        why: "WebAssembly 2.0; every toolchain's default",
        bits: WasmFeatures::SATURATING_FLOAT_TO_INT,
    },
    Feature {
        name: "multi-value",
        accepted: true,
        why: "WebAssembly 2.0; Rust's default",
        bits: WasmFeatures::MULTI_VALUE,
    },
    Feature {
        name: "bulk-memory",
        accepted: true,
        why: "WebAssembly 2.0; metered by length (section 5.1)",
        bits: WasmFeatures::BULK_MEMORY,
    },
    Feature {
        name: "reference-types",
        accepted: true,
        why: "WebAssembly 2.0; Rust's default; tables capped by table_elements",
        bits: WasmFeatures::REFERENCE_TYPES,
    },
    Feature {
        name: "extended-const",
        accepted: true,
        why: "part of lime1, Zig's default",
        bits: WasmFeatures::EXTENDED_CONST,
    },
    Feature {
        name: "simd",
        accepted: false,
        why: "not in any toolchain's default, and not on every backend kith targets",
        bits: WasmFeatures::SIMD,
    },
    Feature {
        name: "relaxed-simd",
        accepted: false,
        why: "results differ between machines",
        bits: WasmFeatures::RELAXED_SIMD,
    },
    Feature {
        name: "threads",
        accepted: false,
        why: "a call is one thread; shared memory would outlive it",
        bits: WasmFeatures::THREADS,
    },
    Feature {
        name: "multi-memory",
        accepted: false,
        why: "a function has exactly one memory, capped by memory_bytes",
        bits: WasmFeatures::MULTI_MEMORY,
    },
    Feature {
        name: "memory64",
        accepted: false,
        why: "memories are 32-bit",
        bits: WasmFeatures::MEMORY64,
    },
    Feature {
        name: "exceptions",
        accepted: false,
        why: "not supported by the runtime",
        bits: WasmFeatures::EXCEPTIONS,
    },
    Feature {
        name: "tail-call",
        accepted: false,
        why: "not in any toolchain's default",
        bits: WasmFeatures::TAIL_CALL,
    },
    Feature {
        name: "function-references",
        accepted: false,
        why: "not supported by the runtime",
        bits: WasmFeatures::FUNCTION_REFERENCES,
    },
    Feature {
        name: "gc",
        accepted: false,
        why: "not supported by the runtime",
        bits: WasmFeatures::GC,
    },
    Feature {
        name: "legacy-exceptions",
        accepted: false,
        why: "not supported by the runtime",
        bits: WasmFeatures::LEGACY_EXCEPTIONS,
    },
    Feature {
        name: "shared-everything-threads",
        accepted: false,
        why: "a call is one thread",
        bits: WasmFeatures::SHARED_EVERYTHING_THREADS,
    },
    Feature {
        name: "stack-switching",
        accepted: false,
        why: "not supported by the runtime",
        bits: WasmFeatures::STACK_SWITCHING,
    },
    Feature {
        name: "wide-arithmetic",
        accepted: false,
        why: "not supported by the runtime",
        bits: WasmFeatures::WIDE_ARITHMETIC,
    },
    Feature {
        name: "custom-page-sizes",
        accepted: false,
        why: "pages are 64 KiB",
        bits: WasmFeatures::CUSTOM_PAGE_SIZES,
    },
];

/// The features the validator runs with: WebAssembly 1.0 and every accepted feature.
pub fn accepted() -> WasmFeatures {
    FEATURES
        .iter()
        .filter(|f| f.accepted)
        .fold(WasmFeatures::WASM1, |all, f| all.union(f.bits))
}

/// The names of the accepted features, comma-separated (for error messages).
pub fn accepted_names() -> String {
    FEATURES
        .iter()
        .filter(|f| f.accepted)
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What to name when the validator refuses `bytes` with kith's features: the refused
/// feature whose addition makes it valid, `"several refused features"` when no single
/// one does but all together do, and `None` when the module is simply invalid.
pub(crate) fn needed(bytes: &[u8]) -> Option<&'static str> {
    let valid = |features: WasmFeatures| {
        wasmparser::Validator::new_with_features(features)
            .validate_all(bytes)
            .is_ok()
    };
    // One validation with everything enabled first: most invalid modules are simply
    // invalid, and then there is nothing more to try.
    let everything = FEATURES.iter().fold(accepted(), |all, f| all.union(f.bits));
    if !valid(everything) {
        return None;
    }
    let one = FEATURES
        .iter()
        .filter(|f| !f.accepted)
        .find(|f| valid(accepted().union(f.bits)));
    Some(one.map_or("several refused features", |f| f.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accepted_set_is_lime1_with_reference_types_and_bulk_memory() {
        let set = accepted();
        for f in [
            WasmFeatures::BULK_MEMORY,
            WasmFeatures::REFERENCE_TYPES,
            WasmFeatures::MULTI_VALUE,
            WasmFeatures::EXTENDED_CONST,
            WasmFeatures::FLOATS,
        ] {
            assert!(set.contains(f), "{f:?}");
        }
        for f in [
            WasmFeatures::SIMD,
            WasmFeatures::THREADS,
            WasmFeatures::MULTI_MEMORY,
            WasmFeatures::MEMORY64,
            WasmFeatures::EXCEPTIONS,
            WasmFeatures::GC,
        ] {
            assert!(!set.contains(f), "{f:?}");
        }
        assert!(set.contains(WasmFeatures::LIME1));
        assert!(accepted_names().starts_with("mutable-global, sign-extension"));
    }
}
