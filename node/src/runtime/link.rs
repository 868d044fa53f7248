//! The host linked into a wasmer instance: the `kith` functions (`host.rs`) and the
//! WASI ones a module imports (`wasi.rs`), each a wasmer function that hands the
//! guest's memory and the call's state to the shared dispatcher.

use kith_protocol::abi::{self, Signature};
use wasmer::{
    Exports, Function, FunctionEnv, FunctionEnvMut, FunctionType, Imports, Memory, MemoryView,
    RuntimeError, Store, Type, Value,
};

use super::host::{self, HostError, HostState};
use super::wasi::Mem;

/// What a wasmer instance's host functions share: the call's state and the guest's
/// memory (set once the instance exists).
pub(crate) struct Env {
    pub(crate) host: HostState,
    pub(crate) memory: Option<Memory>,
}

/// The guest's memory through wasmer.
struct View<'a>(MemoryView<'a>);

impl Mem for View<'_> {
    fn size(&self) -> u64 {
        self.0.data_size()
    }
    fn read(&self, ptr: u32, len: u32) -> Option<Vec<u8>> {
        let end = u64::from(ptr).checked_add(u64::from(len))?;
        if end > self.0.data_size() {
            return None;
        }
        self.0.copy_range_to_vec(u64::from(ptr)..end).ok()
    }
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Option<()> {
        self.0.write(u64::from(ptr), bytes).ok()
    }
}

fn types(v: &[abi::ValType]) -> Vec<Type> {
    v.iter()
        .map(|t| match t {
            abi::ValType::I32 => Type::I32,
            abi::ValType::I64 => Type::I64,
        })
        .collect()
}

/// A wasmer function of signature `sig` that runs `run` with the call's state, the
/// guest's memory and its arguments (as i64 bits).
fn function(
    store: &mut Store,
    env: &FunctionEnv<Env>,
    sig: &Signature,
    run: impl Fn(&mut HostState, &mut dyn Mem, &[i64]) -> Result<Option<i64>, HostError>
    + Send
    + Sync
    + 'static,
) -> Function {
    let results: Vec<Type> = types(sig.results);
    let ty = FunctionType::new(types(sig.params), results.clone());
    Function::new_with_env(
        store,
        env,
        ty,
        move |mut env: FunctionEnvMut<'_, Env>, args: &[Value]| {
            let args: Vec<i64> = args
                .iter()
                .map(|v| match v {
                    Value::I32(x) => i64::from(*x),
                    Value::I64(x) => *x,
                    _ => 0,
                })
                .collect();
            let (data, store) = env.data_and_store_mut();
            let no_memory = || {
                RuntimeError::user(Box::new(HostError::BadBuffer {
                    func: "(before the memory exists)",
                    ptr: 0,
                    len: 0,
                }))
            };
            let memory = data.memory.clone().ok_or_else(no_memory)?;
            let mut view = View(memory.view(&store));
            let ret = run(&mut data.host, &mut view, &args)
                .map_err(|e| RuntimeError::user(Box::new(e)))?;
            Ok(match (results.first(), ret) {
                (Some(Type::I32), Some(v)) => vec![Value::I32(v as i32)],
                (Some(Type::I64), Some(v)) => vec![Value::I64(v)],
                _ => Vec::new(),
            })
        },
    )
}

/// The import object for one call of a module that imports the WASI functions
/// `wasi_names` (none for most native modules).
pub(crate) fn imports(
    store: &mut Store,
    env: &FunctionEnv<Env>,
    wasi_names: &[&'static str],
) -> Imports {
    let mut kith = Exports::new();
    for (name, sig) in abi::HOST_FUNCTIONS {
        let f = function(store, env, sig, move |host, mem, args| {
            host::dispatch(name, host, mem, args)
        });
        kith.insert(*name, f);
    }
    let mut imports = Imports::new();
    imports.register_namespace(abi::IMPORT_MODULE, kith);
    if !wasi_names.is_empty() {
        let mut functions = Exports::new();
        for (name, sig) in kith_protocol::wasi::FUNCTIONS
            .iter()
            .filter(|(n, _)| wasi_names.contains(n))
        {
            let f = function(store, env, sig, move |host, mem, args| {
                host::dispatch_wasi(name, host, mem, args)
            });
            functions.insert(*name, f);
        }
        imports.register_namespace(kith_protocol::wasi::MODULE, functions);
    }
    imports
}
