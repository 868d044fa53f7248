//! Which WebAssembly backend runs functions: cranelift (wasmer compiles each module
//! to machine code once) or the interpreter (wasmi: no compiler, slower code, runs on
//! every target Rust does — 32-bit ARM and MIPS routers, where cranelift generates no
//! code). Both give the same answers under the same limits, with the same errors.

/// A backend, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// cranelift where it can generate code for this machine, else the interpreter.
    #[default]
    Auto,
    /// wasmer with cranelift (or singlepass, with that feature).
    Cranelift,
    /// wasmi.
    Interpreter,
}

/// True when this binary has cranelift (the `jit` feature) and cranelift generates
/// code for the machine it runs on.
pub(crate) const CRANELIFT_TARGET: bool = cfg!(all(
    feature = "jit",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )
));

impl Backend {
    /// What `Auto` means here; the others as they are.
    pub fn resolve(self) -> Self {
        match self {
            Self::Auto if CRANELIFT_TARGET => Self::Cranelift,
            Self::Auto => Self::Interpreter,
            other => other,
        }
    }

    /// The advert's bit (`kith_protocol::capacity::backend`).
    pub fn advert_bit(self) -> u8 {
        use kith_protocol::capacity::backend;
        match self.resolve() {
            Self::Interpreter => backend::INTERPRETER,
            _ if cfg!(feature = "singlepass") => backend::SINGLEPASS,
            _ => backend::CRANELIFT,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cranelift => "cranelift",
            Self::Interpreter => "interpreter",
        })
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cranelift" if CRANELIFT_TARGET => Ok(Self::Cranelift),
            "cranelift" => Err(
                "this build has no cranelift backend (built without the `jit` feature, or for a machine cranelift cannot generate code for); use interpreter or auto".into(),
            ),
            "interpreter" => Ok(Self::Interpreter),
            other => Err(format!(
                "{other:?} is not a backend: auto, cranelift or interpreter"
            )),
        }
    }
}
