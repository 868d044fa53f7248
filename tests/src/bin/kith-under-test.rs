//! The `kith` binary, built inside this package so integration tests can run it as a
//! real process (`CARGO_BIN_EXE_kith-under-test`). Same code as `node/src/main.rs`.

fn main() -> std::process::ExitCode {
    kith_node::cli::main()
}
