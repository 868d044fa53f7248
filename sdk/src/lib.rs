//! The kith SDK.
//!
//! **Guest side** (always available, no dependencies): write a kith function in Rust
//! and build it for `wasm32-unknown-unknown`.
//!
//! ```ignore
//! kith_sdk::function!(greet);
//! kith_sdk::manifest!(fuel = 10_000_000, timeout_ms = 1_000);
//!
//! fn greet(input: &[u8]) -> Result<String, String> {
//!     let name = std::str::from_utf8(input).map_err(|e| e.to_string())?;
//!     Ok(format!("hello, {name}!"))
//! }
//! ```
//!
//! The crate must be a `cdylib`. [`function!`] exports the ABI's `kith_alloc` and
//! `kith_call`; [`manifest!`] embeds the manifest section. `docs/abi.md` describes
//! the ABI for authors in other languages.
//!
//! [`state`] reads and writes application state: Automerge documents the node holds
//! and syncs (ABI 2; the manifest lists the documents with `state_read` and
//! `state_write`).
//!
//! **Client side** (feature `client`): [`client::Client`] publishes and calls
//! functions on a running node over its HTTP API.

#[cfg(feature = "client")]
pub mod client;
mod guest;
#[cfg(feature = "client")]
pub mod http;
pub mod manifest;
pub mod state;

pub use guest::{LogLevel, log, now_ms};

#[doc(hidden)]
pub mod __rt {
    pub use crate::guest::{alloc, call};
}

/// Exports a Rust function as the module's kith entry point.
///
/// The handler is any `fn(&[u8]) -> Result<O, E>` where `O: Into<Vec<u8>>` (e.g.
/// `Vec<u8>` or `String`) and `E: Display`. `Ok` bytes become the call's output; an
/// `Err` becomes a function error whose message is `E`'s `Display`. A panic becomes a
/// trap carrying the panic message.
#[macro_export]
macro_rules! function {
    ($handler:path) => {
        /// ABI export: allocate `len` bytes for the host to write the input into.
        #[unsafe(no_mangle)]
        pub extern "C" fn kith_alloc(len: i32) -> i32 {
            $crate::__rt::alloc(len)
        }

        /// ABI export: the entry point.
        #[unsafe(no_mangle)]
        pub extern "C" fn kith_call(ptr: i32, len: i32) -> i32 {
            $crate::__rt::call(ptr, len, $handler)
        }
    };
}

/// Embeds the function's manifest as the `kith.manifest` custom section.
///
/// Takes `key = value` pairs for the keys of [`manifest::Manifest`]; keys left out take
/// the node's documented defaults. Use it at most once per module.
///
/// ```ignore
/// kith_sdk::manifest!(memory_bytes = 16 << 20, fuel = 50_000_000, timeout_ms = 2_000);
/// ```
#[macro_export]
macro_rules! manifest {
    ($($key:ident = $value:expr),* $(,)?) => {
        const _: () = {
            const MANIFEST: $crate::manifest::Manifest = $crate::manifest::Manifest {
                $($key: ::core::option::Option::Some($value),)*
                ..$crate::manifest::Manifest::DEFAULTS
            };
            const LEN: usize = MANIFEST.encoded_len();
            #[unsafe(link_section = "kith.manifest")]
            #[used]
            static KITH_MANIFEST: [u8; LEN] = MANIFEST.encode::<LEN>();
        };
    };
}
